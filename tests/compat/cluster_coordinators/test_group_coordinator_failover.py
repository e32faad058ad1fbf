"""A consumer group keeps consuming, and keeps its committed offsets, across kill -9 of the
broker that coordinates it (issue 4): ``__consumer_offsets`` is replicated, and the
broker that takes over the group's partition loads the group and its offsets from it."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from coordinators_cluster import OFFSETS_TOPIC, wait_for

TOPIC = "orders"
PARTITIONS = 6
MESSAGES = 600
GROUP = "billing"


def _produce(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for n in range(MESSAGES):
        producer.produce(TOPIC, str(n).encode(), partition=n % PARTITIONS)
    assert producer.flush(30) == 0


def _consumer(bootstrap: str, name: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def _poll_round(consumers, seen: list, commits: dict) -> None:
    """One poll of each member; what it got is committed synchronously."""
    for consumer in consumers:
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        seen.append((msg.partition(), msg.offset(), int(msg.value())))
        try:
            done = consumer.commit(message=msg, asynchronous=False)
        except Exception:
            continue  # the coordinator is moving: a later commit carries this one
        for tp in done:
            if tp.error is None:
                commits[tp.partition] = max(commits.get(tp.partition, 0), tp.offset)


def test_group_survives_kill_of_its_coordinator(coordinator_cluster):
    cluster = coordinator_cluster
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])[TOPIC].result(20)
    _produce(cluster.bootstrap)

    members = [_consumer(cluster.bootstrap, f"member-{i}") for i in range(2)]
    try:
        for member in members:
            member.subscribe([TOPIC])
        seen: list[tuple[int, int, int]] = []
        commits: dict[int, int] = {}
        # both members in the group, each with its share of the partitions
        wait_for(
            lambda: _poll_round(members, seen, commits) or all(m.assignment() for m in members),
            30,
            "both members to get partitions",
        )
        wait_for(
            lambda: _poll_round(members, seen, commits) or len(seen) >= MESSAGES // 2,
            30,
            "half of the messages",
        )
        cluster.wait_full_isr(OFFSETS_TOPIC)
        before = {}
        for member in members:
            for tp in member.committed(member.assignment(), timeout=10):
                before[tp.partition] = tp.offset
        assert before == {p: commits.get(p, -1001) for p in before}, (before, commits)
        assert sum(o for o in before.values() if o > 0) == len(seen)

        old = cluster.coordinator(OFFSETS_TOPIC, GROUP)
        cluster.brokers[old].kill()
        killed_at = time.monotonic()
        new = cluster.wait_coordinator_moved(OFFSETS_TOPIC, GROUP, old)

        # the members go on where they were: every message, none re-read below a commit
        phase_one = len(seen)
        wait_for(
            lambda: _poll_round(members, seen, commits) or len({v for *_, v in seen}) == MESSAGES,
            60,
            "the rest of the messages after the coordinator's kill",
        )
        resumed_after = time.monotonic() - killed_at
        for partition, offset, _ in seen[phase_one:]:
            assert offset >= before.get(partition, 0), (
                f"partition {partition} re-read offset {offset} below its commit "
                f"{before.get(partition)}: the committed offsets were lost"
            )
        assert sorted(v for *_, v in seen) == list(range(MESSAGES))

        # the new coordinator holds every commit, old and new
        per_partition = MESSAGES // PARTITIONS
        everything = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        wait_for(
            lambda: (
                _poll_round(members, seen, commits)
                or all(
                    tp.offset == per_partition
                    for tp in members[0].committed(everything, timeout=10)
                )
            ),
            30,
            "the last commits at the new coordinator",
        )
        assert cluster.coordinator(OFFSETS_TOPIC, GROUP) == new
        print(
            f"coordinator {old} killed; broker {new} took over; "
            f"consumption complete {resumed_after:.1f}s after the kill"
        )
    finally:
        for member in members:
            member.close()
