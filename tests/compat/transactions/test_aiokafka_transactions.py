"""aiokafka transactional producers; the transaction timeout; the admin view."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from compat_helpers import topic_name
from confluent_kafka import KafkaException
from txn_helpers import TIMEOUT, create_topic, read_all, txn_producer


async def _aiokafka_flow(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio-txn")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send_and_wait(topic, b"kept-%d" % i, partition=i % 2)
        await producer.begin_transaction()
        for i in range(3):
            await producer.send_and_wait(topic, b"dropped-%d" % i, partition=i % 2)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept-last", partition=1)
        # a second instance with the same transactional id fences this one
        zombie_txn_open = producer.transaction()
        await zombie_txn_open.__aenter__()
        await producer.send_and_wait(topic, b"zombie", partition=0)
        fresh = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio-txn")
        await fresh.start()
        try:
            async with fresh.transaction():
                await fresh.send_and_wait(topic, b"fresh", partition=0)
        finally:
            await fresh.stop()
        with pytest.raises(AIOKafkaError):
            await zombie_txn_open.__aexit__(None, None, None)
    finally:
        await producer.stop()


def test_aiokafka_commit_abort_and_fencing(broker):
    topic = topic_name("txn-aio")
    create_topic(broker.bootstrap, topic, 2)
    asyncio.run(_aiokafka_flow(broker.bootstrap, topic))
    committed = read_all(broker.bootstrap, topic, 2, "read_committed", expected=7)
    assert sorted(v for _, _, v in committed) == sorted(
        [b"kept-%d" % i for i in range(5)] + [b"kept-last", b"fresh"]
    )
    everything = read_all(broker.bootstrap, topic, 2, "read_uncommitted", expected=11)
    assert sorted(v for _, _, v in everything) == sorted(
        [b"kept-%d" % i for i in range(5)]
        + [b"dropped-%d" % i for i in range(3)]
        + [b"kept-last", b"fresh", b"zombie"]
    )


def test_transaction_timeout_aborts_and_fences(broker_factory):
    broker = broker_factory({"transaction.abort.timed.out.transaction.cleanup.interval.ms": 100})
    topic = topic_name("txn-timeout")
    create_topic(broker.bootstrap, topic, 1)
    slow = txn_producer(broker.bootstrap, "txn-slow", **{"transaction.timeout.ms": 1000})
    slow.begin_transaction()
    slow.produce(topic, value=b"too-slow", partition=0)
    slow.flush(TIMEOUT)
    time.sleep(1.6)  # past the timeout: the coordinator aborts it with a bumped epoch
    assert read_all(broker.bootstrap, topic, 1, "read_committed") == []
    with pytest.raises(KafkaException):
        slow.commit_transaction(TIMEOUT)
    # the abort marker made the partition stable again: offset 0 aborted, 1 the marker
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "t",
            "isolation.level": "read_committed",
        }
    )
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT, cached=False) == (
            0,
            2,
        )
    finally:
        consumer.close()
