"""A leader's unreplicated tail (acks=1) is cut when it returns as a follower of a newer
leader; consumers never read above the high watermark; acks=all needs min.insync.replicas.

The followers are frozen with SIGSTOP (after their pending long-polls are answered), so
the leader's appends reach no one while both stay in the ISR: exactly the window in
which an acks=1 write exists on the leader alone.
"""

from __future__ import annotations

import time

from compat_cluster import (
    SESSION_TIMEOUT_MS,
    assert_replicas_identical,
    batch_offsets,
    topic_name,
    wait_for,
)
from confluent_kafka import KafkaError
from numbered import high_watermark, produce_values, read_partitions

FETCH_WAIT_S = 0.2  # replica.fetch.wait.max.ms in the cluster settings


def values(prefix: str, n: int) -> list[bytes]:
    return [b"%s-%d" % (prefix.encode(), i) for i in range(n)]


def test_divergent_tail_is_truncated(cluster):
    topic = topic_name("diverge")
    cluster.create_topic(topic, 1, 3, {"min.insync.replicas": 1})
    base = produce_values(cluster.bootstrap, topic, values("base", 100), "all")
    assert [r for r in base] == [(None, i) for i in range(100)]
    old = cluster.leader(topic, 0)
    followers = [b for b in range(3) if b != old]
    assert_replicas_identical(cluster, topic, 1, {0: 100})

    # the followers freeze; the leader takes acks=1 writes nobody else has
    for b in followers:
        cluster.pause(b)
    paused_at = time.monotonic()
    time.sleep(FETCH_WAIT_S * 2)  # their outstanding fetches are answered (empty)
    lone = produce_values(cluster.brokers[old].bootstrap, topic, values("lone", 50), "1")
    assert lone == [(None, 100 + i) for i in range(50)]
    assert high_watermark(cluster.bootstrap, topic) == 100  # the tail is not committed
    cluster.kill(old)
    for b in followers:
        cluster.resume(b)
    frozen_for = time.monotonic() - paused_at
    assert frozen_for < SESSION_TIMEOUT_MS / 1000 - 0.5, frozen_for  # their sessions live on

    new = cluster.wait_leader_not(topic, 0, old)
    assert new in followers
    after = produce_values(cluster.bootstrap, topic, values("after", 70), "all")
    assert after == [(None, 100 + i) for i in range(70)]
    stale = cluster.replica_batches(old, topic, 0)
    assert batch_offsets(stale[-1])[1] == 150  # the old leader's log still has its tail
    assert stale != cluster.replica_batches(new, topic, 0)[: len(stale)]

    cluster.restart(old)
    cluster.wait_isr(topic, 1, {0, 1, 2})
    assert_replicas_identical(cluster, topic, 1, {0: 170})
    assert "truncating" in cluster.brokers[old].stderr_text()
    records, high = read_partitions(cluster.bootstrap, topic, 1)
    assert high == {0: 170}
    assert [v for _, v in records[0]] == values("base", 100) + values("after", 70)
    epochs = [
        (cluster.brokers[b].data_dir / f"{topic}-0" / "leader-epoch-checkpoint").read_text()
        for b in range(3)
    ]
    assert epochs[0] == epochs[1] == epochs[2], epochs


def test_consumers_never_read_above_the_high_watermark(cluster):
    topic = topic_name("hw")
    cluster.create_topic(topic, 1, 3, {"min.insync.replicas": 2})
    assert produce_values(cluster.bootstrap, topic, values("a", 20), "all") == [
        (None, i) for i in range(20)
    ]
    leader = cluster.leader(topic, 0)
    followers = [b for b in range(3) if b != leader]
    for b in followers:
        cluster.pause(b)
    try:
        time.sleep(FETCH_WAIT_S * 2)
        lone = produce_values(cluster.bootstrap, topic, values("b", 10), "1")
        assert lone == [(None, 20 + i) for i in range(10)]
        assert high_watermark(cluster.bootstrap, topic) == 20
        records, high = read_partitions(cluster.bootstrap, topic, 1, timeout=5)
        assert high == {0: 20}
        assert [v for _, v in records[0]] == values("a", 20)
    finally:
        for b in followers:
            cluster.resume(b)
    wait_for(lambda: high_watermark(cluster.bootstrap, topic) == 30, 10, "the HW to reach 30")
    records, _ = read_partitions(cluster.bootstrap, topic, 1)
    assert [v for _, v in records[0]] == values("a", 20) + values("b", 10)


def test_not_enough_replicas_below_min_insync(cluster):
    topic = topic_name("minisr")
    cluster.create_topic(topic, 1, 3, {"min.insync.replicas": 2})
    leader = cluster.leader(topic, 0)
    followers = [b for b in range(3) if b != leader]
    for b in followers:
        cluster.kill(b)
    cluster.wait_isr(topic, 1, {leader})
    cluster.wait_broker_sees_isr(leader, topic, 0, {leader})
    no_retries = {"retries": 0, "message.timeout.ms": 10_000}
    refused = produce_values(cluster.bootstrap, topic, values("x", 3), "all", no_retries)
    assert [(err.code() if err else None, off) for err, off in refused] == [
        (KafkaError.NOT_ENOUGH_REPLICAS, -1)
    ] * 3
    assert produce_values(cluster.bootstrap, topic, values("one", 2), "1") == [
        (None, 0),
        (None, 1),
    ]
    cluster.restart(followers[0])
    cluster.wait_isr(topic, 1, {leader, followers[0]})
    cluster.wait_broker_sees_isr(leader, topic, 0, {leader, followers[0]})
    assert produce_values(cluster.bootstrap, topic, values("all", 2), "all", no_retries) == [
        (None, 2),
        (None, 3),
    ]
    records, high = read_partitions(cluster.bootstrap, topic, 1)
    assert high == {0: 4}
    assert [v for _, v in records[0]] == values("one", 2) + values("all", 2)
