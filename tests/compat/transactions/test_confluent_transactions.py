"""confluent-kafka (librdkafka) transactional producers against the broker."""

from __future__ import annotations

import pytest
from compat_helpers import topic_name
from confluent_kafka import KafkaException, TopicPartition
from txn_helpers import (
    TIMEOUT,
    commit_one_by_one,
    create_topic,
    read_all,
    txn_producer,
    values_of,
)


def test_commit_visible_to_read_committed_abort_never(broker):
    topic = topic_name("txn-confluent")
    create_topic(broker.bootstrap, topic, 2)
    producer = txn_producer(broker.bootstrap, "txn-confluent-1")
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=b"committed-%d" % i, partition=i % 2)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic, value=b"aborted-%d" % i, partition=i % 2)
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)
    commit_one_by_one(producer, topic, b"last")

    committed = read_all(broker.bootstrap, topic, 2, "read_committed", expected=11)
    assert sorted(v for _, _, v in committed) == sorted(
        [b"committed-%d" % i for i in range(10)] + [b"last"]
    )
    # partition 0: 5 committed (0-4), COMMIT marker (5), 3 aborted (6-8), ABORT (9), last (10)
    assert [(p, o) for p, o, v in committed if p == 0] == [(0, i) for i in range(5)] + [(0, 10)]
    everything = read_all(broker.bootstrap, topic, 2, "read_uncommitted", expected=17)
    assert sorted(v for _, _, v in everything) == sorted(
        [b"committed-%d" % i for i in range(10)] + [b"aborted-%d" % i for i in range(6)] + [b"last"]
    )
    producer.flush(TIMEOUT)


def test_open_transaction_holds_back_read_committed(broker):
    topic = topic_name("txn-open")
    create_topic(broker.bootstrap, topic, 1)
    plain = txn_producer(broker.bootstrap, "txn-open-a")
    commit_one_by_one(plain, topic, b"before")
    open_txn = txn_producer(broker.bootstrap, "txn-open-b")
    open_txn.begin_transaction()
    open_txn.produce(topic, value=b"pending", partition=0)
    open_txn.flush(TIMEOUT)
    # "before" at 0, its COMMIT marker at 1, "pending" at 2: the LSO stays at 2
    assert values_of(broker.bootstrap, topic) == [b"before"]
    assert values_of(broker.bootstrap, topic, "read_uncommitted") == [b"before", b"pending"]
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "lso",
            "isolation.level": "read_committed",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT, cached=False)
        assert (low, high) == (0, 2)  # read_committed's "latest" is the LSO, not the HW (3)
    finally:
        consumer.close()
    open_txn.commit_transaction(TIMEOUT)
    assert values_of(broker.bootstrap, topic) == [b"before", b"pending"]


def test_zombie_is_fenced(broker):
    topic = topic_name("txn-zombie")
    create_topic(broker.bootstrap, topic, 1)
    zombie = txn_producer(broker.bootstrap, "txn-zombie")
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    zombie.flush(TIMEOUT)
    # a new instance with the same transactional.id fences the old one and aborts its txn
    fresh = txn_producer(broker.bootstrap, "txn-zombie")
    commit_one_by_one(fresh, topic, b"fresh")
    with pytest.raises(KafkaException) as caught:
        zombie.produce(topic, value=b"zombie-2", partition=0)
        zombie.commit_transaction(TIMEOUT)
    assert caught.value.args[0].fatal()
    assert values_of(broker.bootstrap, topic) == [b"fresh"]


def test_transactions_survive_a_broker_restart(broker):
    topic = topic_name("txn-restart")
    create_topic(broker.bootstrap, topic, 1)
    first = txn_producer(broker.bootstrap, "txn-restart")
    commit_one_by_one(first, topic, b"committed")
    first.begin_transaction()
    first.produce(topic, value=b"open-at-restart", partition=0)
    first.flush(TIMEOUT)
    broker.restart("kill")
    # the open transaction, rebuilt from the log, still holds read_committed back
    assert values_of(broker.bootstrap, topic) == [b"committed"]
    # the coordinator's state came back from __transaction_state: a new instance fences
    # the old producer and aborts its transaction
    second = txn_producer(broker.bootstrap, "txn-restart")
    commit_one_by_one(second, topic, b"after-restart")
    assert values_of(broker.bootstrap, topic) == [b"committed", b"after-restart"]


def test_aborted_records_stay_hidden_after_restarts(broker):
    topic = topic_name("txn-abort-restart")
    create_topic(broker.bootstrap, topic, 1)
    producer = txn_producer(broker.bootstrap, "txn-abort-restart")
    commit_one_by_one(producer, topic, b"kept")
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, value=b"aborted-%d" % i, partition=0)
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)
    commit_one_by_one(producer, topic, b"after")
    # kept 0, COMMIT 1, aborted 2-4, ABORT 5, after 6, COMMIT 7: the abort is indexed
    index = broker.data_dir / f"{topic}-0" / "00000000000000000000.txnindex"
    entry = index.read_bytes()
    assert len(entry) == 34 and entry[:2] == b"\x00\x00"  # version 0
    assert [int.from_bytes(entry[i : i + 8], "big") for i in (10, 18)] == [2, 5]
    for how in ("term", "kill"):  # the snapshot and .txnindex; then recovery's rebuild
        broker.restart(how)
        committed = read_all(broker.bootstrap, topic, 1, "read_committed", expected=2)
        assert [(o, v) for _, o, v in committed] == [(0, b"kept"), (6, b"after")], how
        assert index.read_bytes() == entry, how
