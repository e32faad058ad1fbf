"""Three ``kbroker serve`` processes in one ZooKeeper chroot, for the coordinator tests.

The cluster is the replication tests' (``compat_cluster.Cluster``). The tests read
partition states straight from ZooKeeper (Kafka's znode layout) to find which broker leads
the internal partition of a group or transactional id, i.e. its coordinator.
"""

from __future__ import annotations

from pathlib import Path

from compat_cluster import Cluster, wait_for

from kbroker.group.records import partition_for

SETTINGS = {
    "zookeeper.session.timeout.ms": 4000,
    "replica.lag.time.max.ms": 4000,
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.num.partitions": 3,
    "transaction.state.log.min.isr": 2,
    "group.initial.rebalance.delay.ms": 0,
}
OFFSETS_TOPIC = "__consumer_offsets"
TXN_TOPIC = "__transaction_state"


class CoordinatorCluster(Cluster):
    """Brokers 0, 1 and 2 whose internal topics have three replicas and partitions."""

    def __init__(self, zookeeper, workdir: Path) -> None:
        super().__init__(zookeeper, workdir, settings=SETTINGS)

    def live_bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers if b.running)

    def leader(self, topic: str, partition: int) -> int:
        """-1 also while the internal topic does not exist yet."""
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
