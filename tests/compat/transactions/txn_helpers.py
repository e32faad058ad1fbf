"""Helpers of the transaction compatibility tests: confluent-kafka producers and consumers."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 20.0


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT)


def txn_producer(bootstrap: str, transactional_id: str, **config) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            **config,
        }
    )
    producer.init_transactions(TIMEOUT)
    return producer


def read_all(
    bootstrap: str, topic: str, partitions: int, isolation: str, expected: int | None = None
) -> list[tuple[int, int, bytes]]:
    """Every record of ``topic`` as (partition, offset, value), read to the end (the
    high watermark for read_uncommitted; the LSO for read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    at_end: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    at_end.add(msg.partition())
                    if len(at_end) == partitions and (expected is None or len(out) >= expected):
                        break
                    continue
                raise KafkaException(msg.error())
            at_end.discard(msg.partition())
            out.append((msg.partition(), msg.offset(), msg.value()))
    finally:
        consumer.close()
    return sorted(out)


def commit_one_by_one(producer: Producer, topic: str, *values: bytes) -> None:
    """One transaction writing ``values`` to partition 0, committed."""
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, partition=0)
    producer.commit_transaction(TIMEOUT)


def values_of(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[bytes]:
    """The values a consumer at ``isolation`` reads from partition 0 of ``topic``."""
    return [value for _, _, value in read_all(bootstrap, topic, 1, isolation)]
