"""ListOffsets and offset-out-of-range handling through kafka-python."""

from __future__ import annotations

import time

import pytest
from compat_helpers import TS_COUNT, TS_STEP, produce_timestamped, topic_name
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import OffsetOutOfRangeError


@pytest.fixture(scope="module")
def timestamped(module_broker):
    topic = topic_name("kafka-python-ts")
    return topic, produce_timestamped(module_broker.bootstrap, topic)


def consumer(broker, **config):
    return KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                         enable_auto_commit=False, **config)


def test_beginning_end_offsets_and_offsets_for_times(module_broker, timestamped):
    topic, base = timestamped
    c = consumer(module_broker)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        assert c.beginning_offsets(tps) == dict.fromkeys(tps, 0)
        assert c.end_offsets(tps) == {tps[0]: TS_COUNT, tps[1]: 0, tps[2]: 0}
        tp = tps[0]
        cases = {
            base - 1: (0, base),
            base + 55 * TS_STEP: (55, base + 55 * TS_STEP),
            base + 55 * TS_STEP + 1: (56, base + 56 * TS_STEP),
            base + 160 * TS_STEP - 9: (160, base + 160 * TS_STEP),
        }
        for target, (offset, timestamp) in cases.items():
            result = c.offsets_for_times({tp: target})[tp]
            assert (result.offset, result.timestamp) == (offset, timestamp), target - base
        assert c.offsets_for_times({tp: base + TS_COUNT * TS_STEP})[tp] is None
    finally:
        c.close()


def _poll(c, count, timeout=20.0):
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=300, max_records=count - len(records)).values():
            records.extend(batch)
    return records


def test_out_of_range_resets_to_earliest(module_broker, timestamped):
    topic, _ = timestamped
    c = consumer(module_broker, auto_offset_reset="earliest")
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, TS_COUNT + 1000)
        records = _poll(c, 2)
        assert [(r.offset, r.key) for r in records] == [(0, b"ts-0"), (1, b"ts-1")]
    finally:
        c.close()


def test_out_of_range_without_reset_policy_raises(module_broker, timestamped):
    topic, _ = timestamped
    c = consumer(module_broker, auto_offset_reset="none")
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, TS_COUNT + 1000)
        with pytest.raises(OffsetOutOfRangeError) as info:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                c.poll(timeout_ms=300)
        assert info.value.args[0] == {tp: TS_COUNT + 1000}
    finally:
        c.close()
