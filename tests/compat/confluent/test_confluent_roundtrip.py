"""confluent-kafka (librdkafka): 10,000 keyed messages with headers, each compression."""

from __future__ import annotations

import time

import pytest
from compat_clients import confluent_consume, confluent_produce
from compat_helpers import COMPRESSIONS, check_round_trip, make_messages, topic_name


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("idempotence", [False, True], ids=["defaults", "idempotent"])
def test_round_trip(module_broker, compression, idempotence):
    topic = topic_name(f"confluent-{compression}")
    messages = make_messages(source="confluent")
    config = {"compression.type": compression}
    if idempotence:
        config["enable.idempotence"] = True
    started = int(time.time() * 1000)

    delivered = confluent_produce(module_broker.bootstrap, topic, messages, config)
    consumed = confluent_consume(module_broker.bootstrap, topic, len(messages))

    check_round_trip(messages, delivered, consumed, earliest_ts=started)
