"""kafka-python 3 (idempotent by default): 10,000 keyed messages with headers."""

from __future__ import annotations

import time

import pytest
from compat_clients import kafka_python_consume, kafka_python_produce
from compat_helpers import COMPRESSIONS, check_round_trip, make_messages, topic_name


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip(module_broker, compression):
    topic = topic_name(f"kafka-python-{compression}")
    messages = make_messages(source="kafka-python")
    started = int(time.time() * 1000)

    # the producer's defaults (enable_idempotence=True, acks=all) apart from compression
    delivered = kafka_python_produce(
        module_broker.bootstrap, topic, messages,
        compression_type=None if compression == "none" else compression)
    consumed = kafka_python_consume(module_broker.bootstrap, topic, len(messages))

    check_round_trip(messages, delivered, consumed, earliest_ts=started)
