"""kafka-python and aiokafka follow a leader change by themselves: one producer and one
consumer of each, never restarted, keep going across a kill -9 of a partition leader; the
consumer ends up with every acknowledged message, in order."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from compat_cluster import topic_name, wait_for
from numbered import check_stream

PARTITIONS = 3
RATE = 1000  # messages per second


class Stream:
    """What one client pair did: sends, acks and reads of the numbered messages."""

    def __init__(self) -> None:
        self.partitions = PARTITIONS
        self.lock = threading.Lock()
        self.sent = 0
        self.sent_at: dict[int, float] = {}
        self.acked: dict[int, tuple[int, int]] = {}
        self.acked_at: dict[int, float] = {}
        self.errors: list[tuple[int, str]] = []
        self.consumed: list[tuple[int, int, bytes, float]] = []
        self.producing = threading.Event()
        self.consuming = threading.Event()
        self.producing.set()
        self.consuming.set()
        self.failure: BaseException | None = None

    def sending(self, n: int) -> None:
        with self.lock:
            self.sent_at[n] = time.monotonic()
            self.sent = n + 1

    def ack(self, n: int, partition: int, offset: int) -> None:
        with self.lock:
            self.acked[n] = (partition, offset)
            self.acked_at[n] = time.monotonic()

    def fail(self, n: int, error: object) -> None:
        with self.lock:
            self.errors.append((n, repr(error)))

    def got(self, partition: int, offset: int, value: bytes) -> None:
        with self.lock:
            self.consumed.append((partition, offset, value, time.monotonic()))

    def first_ack_after(self, partitions: set[int], since: float) -> float | None:
        with self.lock:
            times = [
                at
                for n, at in self.acked_at.items()
                if n % PARTITIONS in partitions and self.sent_at[n] >= since
            ]
        return min(times) if times else None

    def first_read_after(self, partitions: set[int], since: float) -> float | None:
        with self.lock:
            times = [
                at
                for p, _, value, at in self.consumed
                if p in partitions and self.sent_at[int(value)] >= since
            ]
        return min(times) if times else None

    def read_everything_acked(self) -> bool:
        with self.lock:
            read = {(p, offset) for p, offset, _, _ in self.consumed}
            return set(self.acked.values()) <= read

    def records(self) -> dict[int, list[tuple[int, bytes]]]:
        out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
        for p, offset, value, _ in self.consumed:
            out[p].append((offset, value))
        return out


def paced(stream: Stream):
    """Message numbers at RATE per second while the stream is producing."""
    start = time.monotonic()
    n = 0
    while stream.producing.is_set():
        if n > (time.monotonic() - start) * RATE:
            yield None
            continue
        stream.sending(n)
        yield n
        n += 1


def run_kafka_python(bootstrap: str, topic: str, stream: Stream) -> list[threading.Thread]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    servers = bootstrap.split(",")
    common = {
        "reconnect_backoff_ms": 50,
        "reconnect_backoff_max_ms": 200,
        "metadata_max_age_ms": 1000,
        "retry_backoff_ms": 50,
    }

    def produce():
        producer = KafkaProducer(
            bootstrap_servers=servers,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
            delivery_timeout_ms=120_000,
            request_timeout_ms=10_000,
            **common,
        )
        for n in paced(stream):
            if n is None:
                time.sleep(0.002)
                continue
            future = producer.send(topic, value=b"%d" % n, partition=n % PARTITIONS)
            future.add_callback(lambda md, n=n: stream.ack(n, md.partition, md.offset))
            future.add_errback(lambda exc, n=n: stream.fail(n, exc))
        producer.flush(120)
        producer.close()

    def consume():
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
            **common,
        )
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        while stream.consuming.is_set():
            for records in consumer.poll(200).values():
                for record in records:
                    stream.got(record.partition, record.offset, record.value)
        consumer.close()

    return [threading.Thread(target=guarded(stream, f), daemon=True) for f in (produce, consume)]


def run_aiokafka(bootstrap: str, topic: str, stream: Stream) -> list[threading.Thread]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    common = {
        "bootstrap_servers": bootstrap,
        "metadata_max_age_ms": 1000,
        "retry_backoff_ms": 50,
        "request_timeout_ms": 30_000,
    }

    async def produce():
        producer = AIOKafkaProducer(acks="all", linger_ms=5, **common)
        await producer.start()
        try:
            for n in paced(stream):
                if n is None:
                    await asyncio.sleep(0.002)
                    continue
                future = await producer.send(topic, value=b"%d" % n, partition=n % PARTITIONS)
                future.add_done_callback(lambda f, n=n: report(n, f))
            await producer.flush()
        finally:
            await producer.stop()

    def report(n, future):
        if future.exception() is not None:
            stream.fail(n, future.exception())
        else:
            stream.ack(n, future.result().partition, future.result().offset)

    async def consume():
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100, **common
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            await consumer.seek_to_beginning()
            while stream.consuming.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        stream.got(record.partition, record.offset, record.value)
        finally:
            await consumer.stop()

    return [
        threading.Thread(target=guarded(stream, lambda f=f: asyncio.run(f())), daemon=True)
        for f in (produce, consume)
    ]


def guarded(stream: Stream, target):
    def run():
        try:
            target()
        except BaseException as exc:
            stream.failure = exc

    return run


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_clients_follow_a_leader_change(cluster, client):
    topic = topic_name(client)
    cluster.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": 2})
    stream = Stream()
    runner = run_kafka_python if client == "kafka-python" else run_aiokafka
    threads = runner(cluster.bootstrap, topic, stream)
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: len(stream.acked) > 300 and len(stream.consumed) > 300,
            30,
            "the first acks and reads",
        )
        victim = cluster.leader(topic, 0)
        led = {p for p in range(PARTITIONS) if cluster.leader(topic, p) == victim}
        killed_at = cluster.kill(victim)
        for p in led:
            cluster.wait_leader_not(topic, p, victim)
        acked = wait_for(lambda: stream.first_ack_after(led, killed_at), 40, "produce to resume")
        read = wait_for(lambda: stream.first_read_after(led, killed_at), 40, "reads to resume")
        cluster.restart(victim)
        cluster.wait_isr(topic, PARTITIONS, {0, 1, 2})
        time.sleep(0.5)
        stream.producing.clear()
        threads[0].join(150)
        assert not threads[0].is_alive(), "the producer did not finish"
        wait_for(stream.read_everything_acked, 30, "the consumer to read every acked message")
    finally:
        stream.producing.clear()
        stream.consuming.clear()
        for thread in threads:
            thread.join(60)
    if stream.failure is not None:
        raise stream.failure
    assert stream.errors == [], stream.errors[:5]
    assert len(stream.acked) == stream.sent
    lost = check_stream(stream, stream.records())
    print(
        f"\n{client}: leader {victim} killed; {len(stream.acked)} acknowledged, {lost} lost; "
        f"produce resumed after {acked - killed_at:.2f} s, consume after {read - killed_at:.2f} s"
    )
