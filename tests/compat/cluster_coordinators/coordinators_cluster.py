"""Three ``kbroker serve`` processes in one ZooKeeper chroot, for the coordinator tests.

Self-contained (the replication tests in ``tests/compat/cluster/`` have their own): the
test reads partition states straight from ZooKeeper (Kafka's znode layout) to find which
broker leads the internal partition of a group or transactional id, i.e. its coordinator.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from compat_broker import Broker

from kbroker.cluster.zookeeper import ZkStore
from kbroker.group.records import partition_for

SETTINGS = {
    "zookeeper.session.timeout.ms": 4000,
    "replica.lag.time.max.ms": 4000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "default.replication.factor": 3,
    "num.partitions": 3,
    "offsets.topic.replication.factor": 3,
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.num.partitions": 3,
    "transaction.state.log.min.isr": 2,
    "group.initial.rebalance.delay.ms": 0,
}
OFFSETS_TOPIC = "__consumer_offsets"
TXN_TOPIC = "__transaction_state"


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class CoordinatorCluster:
    """Brokers 0, 1 and 2."""

    def __init__(self, zookeeper, workdir: Path, size: int = 3) -> None:
        self.connect = zookeeper.connect_string(f"/coordinators-{uuid.uuid4().hex[:8]}")
        self.brokers = [
            Broker(
                Path(workdir) / f"broker{i}",
                dict(SETTINGS, **{"broker.id": i, "zookeeper.connect": self.connect}),
            )
            for i in range(size)
        ]
        self.zk = ZkStore(self.connect, 10_000)

    def start(self) -> CoordinatorCluster:
        for broker in self.brokers:
            broker.start()
        self.zk.start()
        ids = set(range(len(self.brokers)))
        wait_for(lambda: set(self.zk.broker_ids()) == ids, 20, "all brokers registered")
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

    def live_bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers if b.running)

    def leader(self, topic: str, partition: int) -> int:
        found = self.zk.get_partition_state(topic, partition)
        return -1 if found is None else found[0].leader

    def isr(self, topic: str, partition: int) -> set[int]:
        found = self.zk.get_partition_state(topic, partition)
        return set() if found is None else set(found[0].isr)

    def coordinator(self, internal_topic: str, key: str) -> int:
        """The broker leading the internal partition of a group id or transactional id."""
        count = len(self.zk.get_topic(internal_topic).partitions)
        return self.leader(internal_topic, partition_for(key, count))

    def wait_full_isr(self, topic: str, timeout: float = 20) -> None:
        count = len(wait_for(lambda: self.zk.get_topic(topic), timeout, topic).partitions)
        everyone = set(range(len(self.brokers)))
        wait_for(
            lambda: all(self.isr(topic, p) == everyone for p in range(count)),
            timeout,
            f"every replica of {topic} in sync",
        )

    def wait_coordinator_moved(self, internal_topic: str, key: str, old: int) -> int:
        def moved():
            leader = self.coordinator(internal_topic, key)
            return leader not in (old, -1) and (leader,)

        return wait_for(moved, 20, f"the coordinator of {key!r} to move off broker {old}")[0]
