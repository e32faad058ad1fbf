"""ListOffsets and offset-out-of-range handling through confluent-kafka."""

from __future__ import annotations

import pytest
from compat_clients import confluent_consumer, confluent_produce
from compat_helpers import (
    TS_COUNT,
    TS_STEP,
    Message,
    produce_timestamped,
    topic_name,
)
from confluent_kafka import OFFSET_END, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


@pytest.fixture(scope="module")
def timestamped(module_broker):
    topic = topic_name("confluent-ts")
    return topic, produce_timestamped(module_broker.bootstrap, topic)


def test_watermarks(module_broker, timestamped):
    topic, _ = timestamped
    consumer = confluent_consumer(module_broker.bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10,
                                              cached=False) == (0, TS_COUNT)
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10,
                                              cached=False) == (0, 0)
    finally:
        consumer.close()


def test_offsets_for_times(module_broker, timestamped):
    topic, base = timestamped
    cases = {
        base - 60_000: 0,  # before everything: the first offset
        base: 0,
        base + 1: 1,  # first offset whose timestamp >= target
        base + 55 * TS_STEP: 55,  # exactly a record's timestamp
        base + 55 * TS_STEP + 5: 56,
        base + 99 * TS_STEP + 1: 100,  # crosses into the next batch
        base + (TS_COUNT - 1) * TS_STEP: TS_COUNT - 1,
        base + TS_COUNT * TS_STEP + 1: OFFSET_END,  # after everything: -1
    }
    consumer = confluent_consumer(module_broker.bootstrap)
    try:
        for target, expected in cases.items():
            [result] = consumer.offsets_for_times([TopicPartition(topic, 0, target)],
                                                  timeout=10)
            assert result.error is None, result.error
            assert result.offset == expected, (target - base, result.offset, expected)
    finally:
        consumer.close()


def test_admin_list_offsets(module_broker, timestamped):
    topic, base = timestamped
    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap})
    tp = TopicPartition(topic, 0)
    specs = {
        "earliest": (OffsetSpec.earliest(), 0),
        "latest": (OffsetSpec.latest(), TS_COUNT),
        "timestamp": (OffsetSpec.for_timestamp(base + 123 * TS_STEP - 3), 123),
        "max_timestamp": (OffsetSpec.max_timestamp(), TS_COUNT - 1),
    }
    for name, (spec, expected) in specs.items():
        result = admin.list_offsets({tp: spec}, request_timeout=10)[tp].result(timeout=15)
        assert result.offset == expected, (name, result.offset)
        if name == "max_timestamp":
            assert result.timestamp == base + (TS_COUNT - 1) * TS_STEP
        if name == "timestamp":
            assert result.timestamp == base + 123 * TS_STEP


def _first_records(consumer, count, timeout=20.0):
    import time

    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for msg in consumer.consume(count - len(records), 0.5):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                continue
            records.append(msg)
    return records


def test_fetch_beyond_log_end_resets_to_earliest(module_broker, timestamped):
    topic, _ = timestamped
    consumer = confluent_consumer(module_broker.bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, TS_COUNT + 500)])
        records = _first_records(consumer, 3)
        assert [(m.error(), m.offset(), m.key()) for m in records] == [
            (None, i, b"ts-%d" % i) for i in range(3)]
    finally:
        consumer.close()


def test_fetch_beyond_log_end_resets_to_latest(module_broker):
    topic = topic_name("confluent-oor-latest")
    first = [Message(i, b"k%d" % i, b"old %d" % i, ()) for i in range(5)]
    confluent_produce(module_broker.bootstrap, topic, first, partition=0)
    consumer = confluent_consumer(module_broker.bootstrap, **{"auto.offset.reset": "latest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        # wait until the reset happened: the position is the log end
        assert _first_records(consumer, 1, timeout=3) == []
        later = [Message(5, b"k5", b"new", ())]
        assert confluent_produce(module_broker.bootstrap, topic, later, partition=0) == {
            5: (0, 5)}
        records = _first_records(consumer, 1)
        assert [(m.error(), m.offset(), m.value()) for m in records] == [(None, 5, b"new")]
    finally:
        consumer.close()


def test_fetch_beyond_log_end_without_reset_policy_is_an_error(module_broker, timestamped):
    topic, _ = timestamped
    consumer = confluent_consumer(module_broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, TS_COUNT + 500)])
        records = _first_records(consumer, 1)
        assert len(records) == 1
        err = records[0].error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "out of range" in err.str().lower(), err.str()
    finally:
        consumer.close()
