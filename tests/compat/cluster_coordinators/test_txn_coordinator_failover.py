"""Transactions across kill -9 of the transaction coordinator (issues 4 and 7): the
broker that takes over the id's ``__transaction_state`` partition loads the producer's
state from the replicated log, the producer goes on with its epoch, and read_committed
consumers see exactly the committed transactions. The coordinator writes the COMMIT and
ABORT markers of partitions led by other brokers with WriteTxnMarkers."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from coordinators_cluster import TXN_TOPIC

TOPIC = "payments"
PARTITIONS = 3
TXN_ID = "payments-writer"
PER_TXN = 12


def _transaction(producer: Producer, first: int, commit: bool, before_end=None) -> list[int]:
    """One transaction of PER_TXN numbered records over every partition, in the log
    before it ends (``before_end`` runs then, once); its numbers."""
    numbers = list(range(first, first + PER_TXN))
    deadline = time.monotonic() + 60
    while True:
        try:
            producer.begin_transaction()
            for n in numbers:
                producer.produce(TOPIC, str(n).encode(), partition=n % PARTITIONS)
            assert producer.flush(30) == 0
            if before_end is not None:
                before_end()
                before_end = None
            if commit:
                producer.commit_transaction(30)
            else:
                producer.abort_transaction(30)
            return numbers
        except KafkaException as exc:
            error = exc.args[0]
            if time.monotonic() > deadline or not (error.retriable() or error.txn_requires_abort()):
                raise
            # librdkafka's recipe: abort what it could not finish, and do it again
            if error.txn_requires_abort():
                producer.abort_transaction(30)
            time.sleep(0.2)


def _read_committed(bootstrap: str, expected: int) -> list[int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"auditor-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    values: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                values.append(int(msg.value()))
        end = time.monotonic() + 1.5  # nothing more may come (no aborted record, no dup)
        while time.monotonic() < end:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                values.append(int(msg.value()))
    finally:
        consumer.close()
    return values


def test_transactions_survive_kill_of_their_coordinator(coordinator_cluster):
    cluster = coordinator_cluster
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([topic])[TOPIC].result(20)

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": TXN_ID,
            "linger.ms": 5,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    producer.init_transactions(30)
    committed: list[int] = []
    aborted: list[int] = []
    n = 0
    for i in range(4):  # committed and aborted ones, markers on all three brokers
        (committed if i != 2 else aborted).extend(_transaction(producer, n, i != 2))
        n += PER_TXN
    cluster.wait_full_isr(TXN_TOPIC)
    cluster.wait_full_isr(TOPIC)

    old = cluster.coordinator(TXN_TOPIC, TXN_ID)
    killed_at = []

    def kill_coordinator():
        cluster.brokers[old].kill()
        killed_at.append(time.monotonic())

    # killed with a transaction open (its records written, its partitions registered):
    # the producer commits it at the broker that takes over
    committed.extend(_transaction(producer, n, True, before_end=kill_coordinator))
    resumed_after = time.monotonic() - killed_at[0]
    n += PER_TXN
    new = cluster.wait_coordinator_moved(TXN_TOPIC, TXN_ID, old)
    for i in range(4):
        (committed if i != 1 else aborted).extend(_transaction(producer, n, i != 1))
        n += PER_TXN
    producer.flush(10)

    values = _read_committed(cluster.live_bootstrap(), len(committed))
    assert sorted(values) == sorted(committed), (
        f"missing {sorted(set(committed) - set(values))}, "
        f"aborted seen {sorted(set(values) & set(aborted))}, "
        f"duplicates {len(values) - len(set(values))}"
    )
    assert cluster.coordinator(TXN_TOPIC, TXN_ID) == new
    print(
        f"coordinator {old} killed; broker {new} took over; the producer's next "
        f"transaction committed {resumed_after:.1f}s after the kill"
    )
