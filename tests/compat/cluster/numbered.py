"""A numbered stream for the failover tests: a confluent-kafka producer on a thread, and a
reader that checks what the partitions hold against what was acknowledged.

Message ``n`` carries the value ``b"<n>"`` and goes to partition ``n % partitions``, so
every partition holds an increasing sequence; the producer keeps one request in flight
per connection, so a retried batch lands before the next one and the order of first
occurrences holds even where a retry wrote a batch twice.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition


class NumberedProducer(threading.Thread):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        rate: int = 3000,
        config: dict | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.config = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "max.in.flight.requests.per.connection": 1,
            "message.timeout.ms": 120_000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 200,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 2,  # the disconnects from the kills are expected
            **(config or {}),
        }
        self.lock = threading.Lock()
        self.sent = 0
        self.sent_at: dict[int, float] = {}
        self.acked: dict[int, tuple[int, int]] = {}  # n -> (partition, offset)
        self.acked_at: dict[int, float] = {}
        self.errors: list[tuple[int, str]] = []
        self._halt = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by stop()
            self.failure = exc

    def _report(self, n: int, err, msg) -> None:
        now = time.monotonic()
        with self.lock:
            if err is not None:
                self.errors.append((n, str(err)))
            else:
                self.acked[n] = (msg.partition(), msg.offset())
                self.acked_at[n] = now

    def _run(self) -> None:
        producer = Producer(self.config)
        start = time.monotonic()
        n = 0
        while not self._halt.is_set():
            if n > (time.monotonic() - start) * self.rate:
                producer.poll(0.005)
                continue
            try:
                producer.produce(
                    self.topic,
                    value=b"%d" % n,
                    partition=n % self.partitions,
                    on_delivery=lambda err, msg, n=n: self._report(n, err, msg),
                )
            except BufferError:
                producer.poll(0.05)
                continue
            self.sent_at[n] = time.monotonic()
            n += 1
            self.sent = n
            producer.poll(0)
        remaining = producer.flush(150)
        assert remaining == 0, f"{remaining} messages still unacknowledged after 150 s"

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def first_ack_after(self, partitions: set[int], since: float) -> float | None:
        """When the first message sent after ``since`` to one of ``partitions`` was acked."""
        with self.lock:
            times = [
                at
                for n, at in self.acked_at.items()
                if n % self.partitions in partitions and self.sent_at[n] >= since
            ]
        return min(times) if times else None

    def stop(self) -> None:
        self._halt.set()
        self.join(180)
        assert not self.is_alive(), "producer did not finish"
        if self.failure is not None:
            raise self.failure


def read_partitions(
    bootstrap: str, topic: str, partitions: int, timeout: float = 60
) -> tuple[dict[int, list[tuple[int, bytes]]], dict]:
    """Everything below each partition's high watermark: ({partition: [(offset, value)]},
    {partition: high watermark})."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "log_level": 2,
        }
    )
    try:
        high = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        done = {p for p in range(partitions) if high[p] == 0}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"read only {[len(records[p]) for p in high]}"
            for msg in consumer.consume(10_000, 0.5):
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        if msg.offset() >= high[msg.partition()]:
                            done.add(msg.partition())
                        continue
                    raise AssertionError(f"consumer error: {msg.error()}")
                records[msg.partition()].append((msg.offset(), msg.value()))
                if msg.offset() + 1 >= high[msg.partition()]:
                    done.add(msg.partition())
        return dict(records), high
    finally:
        consumer.close()


def check_stream(
    producer: NumberedProducer,
    records: dict[int, list[tuple[int, bytes]]],
    idempotent: bool = False,
) -> int:
    """Every acknowledged message at its acknowledged offset, per-partition order of first
    occurrences increasing, nothing that was never sent; returns how many were lost."""
    lost = []
    for p in range(producer.partitions):
        at = dict(records.get(p, []))
        offsets = [offset for offset, _ in records.get(p, [])]
        assert offsets == sorted(set(offsets)), f"partition {p}: offsets not increasing"
        numbers = [int(value) for _, value in records.get(p, [])]
        assert all(n % producer.partitions == p for n in numbers), f"partition {p}: misplaced"
        assert all(0 <= n < producer.sent for n in numbers), f"partition {p}: never sent"
        first: list[int] = []
        seen: set[int] = set()
        for n in numbers:
            if n not in seen:
                seen.add(n)
                first.append(n)
        assert first == sorted(first), (
            f"partition {p}: order broken at "
            f"{[(a, b) for a, b in zip(first, first[1:], strict=False) if a > b][:5]}"
        )
        if idempotent:
            assert len(numbers) == len(seen), (
                f"partition {p}: {len(numbers) - len(seen)} duplicates with idempotence on"
            )
        for n, (partition, offset) in producer.acked.items():
            if partition == p and at.get(offset) != b"%d" % n:
                lost.append((n, partition, offset, at.get(offset)))
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    return len(lost)


def produce_values(
    bootstrap: str, topic: str, values: list[bytes], acks: str, config: dict | None = None
) -> list[tuple[object, int]]:
    """Send ``values`` to partition 0 and wait: [(error or None, offset)] in send order."""
    results: list[tuple[object, int]] = [(None, -1)] * len(values)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "linger.ms": 0,
            "log_level": 2,
            **(config or {}),
        }
    )

    def report(i, err, msg):
        results[i] = (err, -1 if err else msg.offset())

    for i, value in enumerate(values):
        producer.produce(
            topic, value=value, partition=0, on_delivery=lambda err, msg, i=i: report(i, err, msg)
        )
    assert producer.flush(60) == 0
    return results


def high_watermark(bootstrap: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "log_level": 2})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()
