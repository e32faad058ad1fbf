"""aiokafka: 10,000 keyed messages with headers, each compression."""

from __future__ import annotations

import time

import pytest
from compat_clients import aiokafka_consume, aiokafka_produce
from compat_helpers import COMPRESSIONS, check_round_trip, make_messages, topic_name


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip(module_broker, compression):
    topic = topic_name(f"aiokafka-{compression}")
    messages = make_messages(source="aiokafka")
    started = int(time.time() * 1000)

    delivered = aiokafka_produce(
        module_broker.bootstrap, topic, messages,
        compression_type=None if compression == "none" else compression)
    consumed = aiokafka_consume(module_broker.bootstrap, topic, len(messages))

    check_round_trip(messages, delivered, consumed, earliest_ts=started)
