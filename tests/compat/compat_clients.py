"""Produce and consume with each Python client, returning what the round-trip check needs.

Consumers read without a consumer group: assign() and seek to the beginning (or to
explicit offsets), never committing. confluent-kafka insists on a ``group.id`` setting;
with assign() and explicit offsets librdkafka fetches without joining the group.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from compat_helpers import PARTITIONS, Message, Record, norm_headers

TIMEOUT = 60.0


# -- confluent-kafka ------------------------------------------------------------------------
def confluent_produce(bootstrap: str, topic: str, messages: list[Message],
                      config: dict | None = None, partition: int | None = None,
                      timestamps: list[int] | None = None) -> dict[int, tuple[int, int]]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **(config or {})})
    delivered: dict[int, tuple[int, int]] = {}
    errors: list = []

    def report(index, err, msg):
        if err is not None:
            errors.append((index, err))
        else:
            delivered[index] = (msg.partition(), msg.offset())

    for position, message in enumerate(messages):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[position]
        while True:
            try:
                producer.produce(topic, key=message.key, value=message.value,
                                 headers=list(message.headers),
                                 on_delivery=partial(report, message.index), **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(TIMEOUT)
    assert remaining == 0, f"{remaining} messages still queued after flush({TIMEOUT})"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return delivered


def confluent_consumer(bootstrap: str, **config):
    from confluent_kafka import Consumer

    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": "compat-no-commit",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }
    settings.update(config)
    return Consumer(settings)


def confluent_consume(bootstrap: str, topic: str, expected: int,
                      partitions: int = PARTITIONS, offsets: dict[int, int] | None = None,
                      timeout: float = TIMEOUT, **config) -> list[Record]:
    """Read every partition from its start (or ``offsets``) up to its end."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    consumer = confluent_consumer(bootstrap, **config)
    try:
        consumer.assign([TopicPartition(topic, p, (offsets or {}).get(p, OFFSET_BEGINNING))
                         for p in range(partitions)])
        records: list[Record] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while not (len(at_end) == partitions and len(records) >= expected):
            assert time.monotonic() < deadline, (
                f"consumed {len(records)}/{expected} records in {timeout}s; "
                f"partitions at end: {sorted(at_end)}")
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise AssertionError(f"consumer error: {err}")
                at_end.discard(msg.partition())
                records.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                      norm_headers(msg.headers()), msg.timestamp()[1]))
        return records
    finally:
        consumer.close()


# -- kafka-python -------------------------------------------------------------------------
def kafka_python_produce(bootstrap: str, topic: str, messages: list[Message],
                         **config) -> dict[int, tuple[int, int]]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
    try:
        futures = [(m.index, producer.send(topic, key=m.key, value=m.value,
                                           headers=list(m.headers)))
                   for m in messages]
        producer.flush(TIMEOUT)
        delivered = {}
        for index, future in futures:
            metadata = future.get(timeout=0)
            delivered[index] = (metadata.partition, metadata.offset)
        return delivered
    finally:
        producer.close(timeout=10)


def kafka_python_consume(bootstrap: str, topic: str, expected: int,
                         partitions: int = PARTITIONS, timeout: float = TIMEOUT,
                         **config) -> list[Record]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest", **config)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"consumed {len(records)}/{expected} in {timeout}s; ends {ends}")
            for tp, batch in consumer.poll(timeout_ms=500, max_records=5000).items():
                for r in batch:
                    records.append(Record(tp.partition, r.offset, r.key, r.value,
                                          norm_headers(r.headers), r.timestamp))
        return records
    finally:
        consumer.close()


# -- aiokafka -----------------------------------------------------------------------------
async def _aiokafka_produce(bootstrap, topic, messages, config):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **config)
    await producer.start()
    try:
        futures = []
        for m in messages:
            future = await producer.send(topic, key=m.key, value=m.value,
                                         headers=list(m.headers))
            futures.append((m.index, future))
        await producer.flush()
        delivered = {}
        for index, future in futures:
            metadata = await future
            delivered[index] = (metadata.partition, metadata.offset)
        return delivered
    finally:
        await producer.stop()


def aiokafka_produce(bootstrap: str, topic: str, messages: list[Message],
                     **config) -> dict[int, tuple[int, int]]:
    return asyncio.run(asyncio.wait_for(
        _aiokafka_produce(bootstrap, topic, messages, config), TIMEOUT))


async def _aiokafka_consume(bootstrap, topic, expected, partitions, config):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **config)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return records
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                for r in batch:
                    records.append(Record(tp.partition, r.offset, r.key, r.value,
                                          norm_headers(r.headers), r.timestamp))
    finally:
        await consumer.stop()


def aiokafka_consume(bootstrap: str, topic: str, expected: int,
                     partitions: int = PARTITIONS, **config) -> list[Record]:
    return asyncio.run(asyncio.wait_for(
        _aiokafka_consume(bootstrap, topic, expected, partitions, config), TIMEOUT))
