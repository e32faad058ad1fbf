"""kill -9 the leader, again and again, under an acks=all producer: nothing acknowledged is
lost, order holds, and the three replicas end byte-identical."""

from __future__ import annotations

import time

import pytest
from compat_cluster import assert_replicas_identical, topic_name, wait_for
from numbered import NumberedProducer, check_stream, read_partitions

ROUNDS = 5
PARTITIONS = 3


@pytest.mark.parametrize(
    "idempotent, rounds", [(False, ROUNDS), (True, 3)], ids=["plain", "idempotent"]
)
def test_kill_leader_rounds_lose_nothing_acknowledged(cluster, idempotent, rounds):
    """With enable.idempotence the retried batches are not written twice either."""
    topic = topic_name("kill")
    cluster.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": 2})
    config = {"enable.idempotence": True, "max.in.flight.requests.per.connection": 5}
    producer = NumberedProducer(
        cluster.bootstrap, topic, PARTITIONS, config=config if idempotent else None
    )
    producer.start()
    killed: list[int] = []
    resumes: list[float] = []
    try:
        wait_for(lambda: producer.acked_count() > 1000, 20, "the first acks")
        for _ in range(rounds):
            time.sleep(0.5)
            # a leader other than the last victim, the least killed one first
            leaders = {cluster.leader(topic, p) for p in range(PARTITIONS)} - set(killed[-1:])
            victim = min(sorted(leaders), key=killed.count)
            led = {p for p in range(PARTITIONS) if cluster.leader(topic, p) == victim}
            killed_at = cluster.kill(victim)
            for p in led:
                cluster.wait_leader_not(topic, p, victim)
            resumed = wait_for(
                lambda v=led, t=killed_at: producer.first_ack_after(v, t),
                30,
                f"acks on partitions {sorted(led)} after killing broker {victim}",
            )
            resumes.append(resumed - killed_at)
            cluster.restart(victim)
            cluster.wait_isr(topic, PARTITIONS, {0, 1, 2})
            killed.append(victim)
        time.sleep(0.5)
    finally:
        producer.stop()
    assert producer.errors == [], producer.errors[:5]
    assert producer.acked_count() == producer.sent
    assert all(a != b for a, b in zip(killed, killed[1:], strict=False)), killed
    assert set(killed) == {0, 1, 2}, killed

    records, high = read_partitions(cluster.bootstrap, topic, PARTITIONS)
    lost = check_stream(producer, records)
    assert_replicas_identical(cluster, topic, PARTITIONS, high)
    duplicates = sum(len(r) for r in records.values()) - producer.acked_count()
    if idempotent:
        assert duplicates == 0
    print(
        f"\nkill -9 of the leader: {len(killed)} rounds (brokers {killed}), "
        f"{producer.acked_count()} acknowledged, {lost} lost, "
        f"{duplicates} duplicates (idempotence {'on' if idempotent else 'off'}); "
        f"produce resumed after {', '.join(f'{s:.2f}' for s in resumes)} s "
        f"(session timeout {cluster.brokers[0].settings['zookeeper.session.timeout.ms']} ms)"
    )
