"""A ZooKeeper-coordinated cluster of three ``kbroker serve`` processes for the tests here.

Each broker is a :class:`compat_broker.Broker` given the cluster settings (``broker.id``,
``zookeeper.connect`` with a chroot of the test's own, short session and lag timeouts).
The test reads the partition states straight from ZooKeeper (Kafka's znode layout) to
find leaders and wait for ISR changes, and reads the replicas' segment files to compare
them byte for byte.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from compat_broker import Broker
from compat_helpers import wait_for

from kbroker.cluster.election import LeaderAndIsr
from kbroker.cluster.zookeeper import ZkStore
from kbroker.wire.records import HEADER_SIZE, parse_header

SESSION_TIMEOUT_MS = 3000
LAG_TIME_MAX_MS = 3000
CLUSTER_SETTINGS = {
    "zookeeper.session.timeout.ms": SESSION_TIMEOUT_MS,
    "replica.lag.time.max.ms": LAG_TIME_MAX_MS,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "default.replication.factor": 3,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "num.partitions": 3,
}


class Cluster:
    """Three brokers (ids 0, 1, 2) in one ZooKeeper chroot."""

    def __init__(self, zookeeper, workdir: Path, size: int = 3, settings: dict | None = None):
        self.connect = zookeeper.connect_string(f"/{type(self).__name__}-{uuid.uuid4().hex[:8]}")
        self.brokers: list[Broker] = []
        for broker_id in range(size):
            config = dict(CLUSTER_SETTINGS, **(settings or {}))
            config.update({"broker.id": broker_id, "zookeeper.connect": self.connect})
            self.brokers.append(Broker(Path(workdir) / f"broker{broker_id}", config))
        self.zk = ZkStore(self.connect, 10_000)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Cluster:
        for broker in self.brokers:
            broker.start()
        self.zk.start()
        self.wait_registered(set(range(len(self.brokers))))
        wait_for(lambda: self.zk.get_controller() is not None, 10, "a controller")
        return self

    def close(self) -> None:
        try:
            self.zk.close()
        except Exception:
            pass

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def wait_registered(self, ids: set[int], timeout: float = 15) -> None:
        wait_for(lambda: set(self.zk.broker_ids()) == ids, timeout, f"brokers {sorted(ids)}")

    def kill(self, broker_id: int) -> float:
        """kill -9 a broker; returns the monotonic time of the kill."""
        self.brokers[broker_id].kill()
        return time.monotonic()

    def restart(self, broker_id: int) -> None:
        """Start a stopped broker again (same port and data) and wait for its registration
        (its previous session must have expired first: that is the controller's signal)."""
        live = set(self.zk.broker_ids())
        self.brokers[broker_id].start()
        self.wait_registered(live | {broker_id}, timeout=SESSION_TIMEOUT_MS / 1000 + 15)

    def pause(self, broker_id: int) -> None:
        os.kill(self.brokers[broker_id].proc.pid, signal.SIGSTOP)

    def resume(self, broker_id: int) -> None:
        os.kill(self.brokers[broker_id].proc.pid, signal.SIGCONT)

    # -- partition states in ZooKeeper ---------------------------------------------------
    def state(self, topic: str, partition: int) -> LeaderAndIsr:
        found = self.zk.get_partition_state(topic, partition)
        assert found is not None, f"no state for {topic}-{partition}"
        return found[0]

    def leader(self, topic: str, partition: int) -> int:
        return self.state(topic, partition).leader

    def wait_leader_not(self, topic: str, partition: int, old: int, timeout: float = 20) -> int:
        """Wait for a live leader other than ``old``; returns it."""

        def moved():
            leader = self.leader(topic, partition)
            return leader not in (old, -1) and (leader,)

        found = wait_for(moved, timeout, f"{topic}-{partition} to get a leader other than {old}")
        return found[0]

    def wait_isr(self, topic: str, partitions: int, isr: set[int], timeout: float = 20) -> None:
        def complete():
            return all(set(self.state(topic, p).isr) == isr for p in range(partitions))

        wait_for(complete, timeout, f"ISR {sorted(isr)} on every partition of {topic}")

    def wait_broker_sees_isr(
        self, broker_id: int, topic: str, partition: int, isr: set[int], timeout: float = 10
    ) -> None:
        """Wait until a broker's own Metadata answer shows the ISR (its local view, which
        follows ZooKeeper by a watch)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": self.brokers[broker_id].bootstrap, "log_level": 2}
        )

        def seen():
            found = admin.list_topics(topic, timeout=2).topics[topic].partitions[partition]
            return set(found.isrs) == isr

        wait_for(seen, timeout, f"broker {broker_id} to see ISR {sorted(isr)}")

    def create_topic(
        self, topic: str, partitions: int, replication: int = 3, config: dict | None = None
    ) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [
                NewTopic(
                    topic,
                    partitions,
                    replication,
                    config={k: str(v) for k, v in (config or {}).items()},
                )
            ],
            request_timeout=15,
        )
        futures[topic].result(20)
        replicas = set(range(replication)) if replication == len(self.brokers) else None
        for p in range(partitions):
            wait_for(lambda p=p: self.zk.get_partition_state(topic, p), 10, f"{topic}-{p}")
        if replicas is not None:
            self.wait_isr(topic, partitions, replicas)
        # every broker has loaded the topic once Metadata from each names a leader
        for broker in self.brokers:
            wait_for(
                lambda b=broker: _leaders_known(b.bootstrap, topic, partitions),
                10,
                f"{broker.bootstrap} to know {topic}",
            )

    # -- the replicas' logs ----------------------------------------------------------------
    def replica_batches(self, broker_id: int, topic: str, partition: int) -> list[bytes]:
        """The whole batches in this replica's segment files, in offset order."""
        return read_batches(self.brokers[broker_id].data_dir / f"{topic}-{partition}")


def _leaders_known(bootstrap: str, topic: str, partitions: int) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=2)
    except Exception:
        return False
    found = metadata.topics.get(topic)
    return (
        found is not None
        and found.error is None
        and len(found.partitions) == partitions
        and all(p.leader >= 0 for p in found.partitions.values())
    )


def read_batches(directory: Path) -> list[bytes]:
    batches = []
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while len(data) - pos >= HEADER_SIZE:
            header = parse_header(data, pos)
            if header.batch_length <= 0 or pos + header.size > len(data):
                break
            batches.append(data[pos : pos + header.size])
            pos += header.size
    return batches


def batch_offsets(batch: bytes) -> tuple[int, int]:
    """(base offset, next offset) of one batch."""
    header = parse_header(batch, 0)
    return header.base_offset, header.base_offset + header.last_offset_delta + 1


def up_to(batches: list[bytes], high_watermark: int) -> list[bytes]:
    return [b for b in batches if batch_offsets(b)[1] <= high_watermark]


def assert_replicas_identical(
    cluster: Cluster,
    topic: str,
    partitions: int,
    high_watermarks: dict[int, int],
    timeout: float = 20,
) -> None:
    """Every replica holds byte-identical batches up to the high watermark, and the high
    watermark is each replica's log end (nothing beyond it anywhere)."""
    for p in range(partitions):
        hw = high_watermarks[p]

        def identical(p=p, hw=hw):
            logs = [cluster.replica_batches(b, topic, p) for b in range(len(cluster.brokers))]
            ends = [batch_offsets(log[-1])[1] if log else 0 for log in logs]
            return ends == [hw] * len(logs) and all(log == logs[0] for log in logs)

        try:
            wait_for(identical, timeout, f"{topic}-{p} replicas identical up to {hw}", 0.2)
        except AssertionError:
            logs = [cluster.replica_batches(b, topic, p) for b in range(len(cluster.brokers))]
            summary = [
                (
                    len(log),
                    batch_offsets(log[-1])[1] if log else 0,
                    sum(len(b) for b in up_to(log, hw)),
                )
                for log in logs
            ]
            raise AssertionError(
                f"{topic}-{p}: replicas differ (batches, log end, bytes below HW {hw}): {summary}"
            ) from None


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
