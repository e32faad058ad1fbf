"""SIGTERM a leader: it hands its leadership to in-sync replicas before it stops, so an
acks=all producer sees no failed produce and the partitions never go leaderless."""

from __future__ import annotations

import time

from compat_cluster import SESSION_TIMEOUT_MS, assert_replicas_identical, topic_name, wait_for
from numbered import NumberedProducer, check_stream, read_partitions

PARTITIONS = 3


def test_controlled_shutdown_moves_leadership_without_failed_produce(cluster):
    topic = topic_name("ctrl")
    cluster.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": 2})
    # idempotent: without it librdkafka may resend a batch the old leader refused after
    # newer ones already went to the new leader, and order is not kept (Kafka alike)
    producer = NumberedProducer(
        cluster.bootstrap,
        topic,
        PARTITIONS,
        config={"enable.idempotence": True, "max.in.flight.requests.per.connection": 5},
    )
    producer.start()
    stopped: list[int] = []
    moves: list[float] = []
    resumes: list[float] = []
    try:
        wait_for(lambda: producer.acked_count() > 500, 20, "the first acks")
        for _ in range(2):
            leaders = {cluster.leader(topic, p) for p in range(PARTITIONS)} - set(stopped)
            victim = min(leaders)
            led = {p for p in range(PARTITIONS) if cluster.leader(topic, p) == victim}
            began = time.monotonic()
            assert cluster.brokers[victim].stop() == 0
            # leadership moved during the shutdown itself, not after a session expiry
            moved = time.monotonic() - began
            assert all(cluster.leader(topic, p) not in (victim, -1) for p in led)
            assert moved < SESSION_TIMEOUT_MS / 1000, moved
            moves.append(moved)
            resumed = wait_for(
                lambda v=led, t=began: producer.first_ack_after(v, t),
                20,
                "acks after the controlled shutdown",
            )
            resumes.append(resumed - began)
            stopped.append(victim)
            time.sleep(0.5)
            cluster.restart(victim)
            cluster.wait_isr(topic, PARTITIONS, {0, 1, 2})
        time.sleep(0.5)
    finally:
        producer.stop()
    assert producer.errors == []
    assert producer.acked_count() == producer.sent
    records, high = read_partitions(cluster.bootstrap, topic, PARTITIONS)
    lost = check_stream(producer, records, idempotent=True)
    assert_replicas_identical(cluster, topic, PARTITIONS, high)
    print(
        f"\ncontrolled shutdown of brokers {stopped}: {producer.acked_count()} acknowledged, "
        f"{lost} lost, 0 failed; SIGTERM to exit {', '.join(f'{s:.2f}' for s in moves)} s, "
        f"produce resumed after {', '.join(f'{s:.2f}' for s in resumes)} s"
    )
