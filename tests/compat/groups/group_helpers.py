"""Group members as subprocesses (see group_member.py) and a steady producer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")
SESSION_MS = 2000
HEARTBEAT_MS = 200
# the broker settings the group tests run with: sessions as short as the tests want
BROKER_SETTINGS = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 500,
    "offsets.topic.num.partitions": 5,
}
CLIENTS = ["confluent", "kafka-python", "aiokafka"]


class Member:
    """A consumer in its own process; its events arrive in ``events``."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, **options) -> None:
        config = {
            "client": client,
            "bootstrap": bootstrap,
            "topic": topic,
            "group": group,
            "session_ms": SESSION_MS,
            "heartbeat_ms": HEARTBEAT_MS,
            **options,
        }
        self.name = f"{client}/{options.get('instance') or group}"
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER_SCRIPT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    # -- what it saw -----------------------------------------------------------------
    @property
    def assignment(self) -> list[int] | None:
        with self.cond:
            found = [e["partitions"] for e in self.events if e["event"] == "assigned"]
        return found[-1] if found else None

    def assignments(self) -> list[list[int]]:
        with self.cond:
            return [e["partitions"] for e in self.events if e["event"] == "assigned"]

    def revoked(self) -> list[list[int]]:
        with self.cond:
            return [e["partitions"] for e in self.events if e["event"] == "revoked"]

    def committed(self) -> list[tuple[int, int, str]]:
        with self.cond:
            return [
                tuple(r) for e in self.events if e["event"] == "committed" for r in e["records"]
            ]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not predicate():
                    break
                self.cond.wait(min(left, 0.2))
        if not predicate():
            raise AssertionError(
                f"{self.name}: timed out waiting for {what}; events: {self.events[-5:]}; "
                f"stderr: {''.join(self.stderr[-20:])}"
            )

    # -- ending it ---------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Graceful: the client closes (and leaves the group)."""
        if self.proc.poll() is None:
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9: no LeaveGroup, the coordinator must notice the silence."""
        self.proc.kill()
        self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(predicate, timeout: float = 30.0, what: str = "", members=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    if not predicate():
        detail = "; ".join(f"{m.name}: {m.assignments()[-3:]}" for m in members)
        raise AssertionError(f"timed out waiting for {what}: {detail}")


class SteadyProducer:
    """Produces "0", "1", ... to a topic round-robin over its partitions until stopped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int = 200) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.sent = 0
        self.errors: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _report(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err)

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(max(self.rate // 20, 1)):
                self.producer.produce(
                    self.topic,
                    value=str(self.sent).encode(),
                    partition=self.sent % self.partitions,
                    on_delivery=self._report,
                )
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        assert self.producer.flush(30) == 0
        assert not self.errors, self.errors[:3]
        return self.sent


def produce(bootstrap: str, topic: str, values: list[str], partitions: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % partitions)
    assert producer.flush(30) == 0


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    futures[topic].result(30)
