"""The controller's decisions, sans-IO: replica assignment and leader election.

Kafka's ``AdminUtils.assignReplicasToBrokers`` (rack-unaware), its
``PartitionLeaderElectionAlgorithms`` and the ISR rules of its ZooKeeper-era partition and
replica state machines, as pure functions. Each decision returns the partition's next
:class:`LeaderAndIsr` (a ZooKeeper controller bumps the leader epoch on every change) or
None when there is nothing to do or no leader can be chosen; the caller writes it to
ZooKeeper with a conditional update and tells the brokers.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kbroker.wire.errors import ErrorCode, KafkaError

NO_LEADER = -1

K = TypeVar("K")


@dataclass(frozen=True)
class LeaderAndIsr:
    """One partition's leadership as ZooKeeper holds it (``.../partitions/<p>/state``)."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int = 0

    def next(self, leader: int, isr: Iterable[int]) -> LeaderAndIsr:
        """Kafka's ``newLeaderAndIsr``: a new leader and ISR at the next leader epoch."""
        return LeaderAndIsr(leader, self.leader_epoch + 1, tuple(isr), self.controller_epoch)


@dataclass(frozen=True)
class PartitionView:
    """What the controller knows of a partition: its assignment and current state."""

    replicas: tuple[int, ...]
    state: LeaderAndIsr


# --- replica assignment ---------------------------------------------------------------


def assign_replicas(
    broker_ids: Iterable[int],
    num_partitions: int,
    replication_factor: int,
    start_index: int = -1,
    start_partition_id: int = -1,
    rng: random.Random | None = None,
) -> dict[int, list[int]]:
    """Kafka's rack-unaware assignment: partition -> replicas, the first the preferred leader.

    Leaders go round-robin over the sorted brokers from ``start_index``; each partition's
    followers sit at a shift from its leader that grows by one every ``len(brokers)``
    partitions, so replicas spread evenly. With ``start_index`` < 0 the start index and
    the initial shift are drawn from ``rng`` (as Kafka does), so a seeded ``rng`` or a
    fixed ``start_index`` makes the result reproducible.
    """
    brokers = sorted(set(broker_ids))
    if num_partitions <= 0:
        raise KafkaError(
            ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
        )
    if replication_factor <= 0:
        raise KafkaError(
            ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
        )
    if replication_factor > len(brokers):
        raise KafkaError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
        )
    n = len(brokers)
    rng = rng or random.Random()
    first_index = start_index if start_index >= 0 else rng.randrange(n)
    shift = start_index if start_index >= 0 else rng.randrange(n)
    partition = max(0, start_partition_id)
    result: dict[int, list[int]] = {}
    for _ in range(num_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + first_index) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            replicas.append(brokers[(first + 1 + (shift + j) % (n - 1)) % n])
        result[partition] = replicas
        partition += 1
    return result


def assign_added_partitions(
    broker_ids: Iterable[int],
    existing: Mapping[int, Sequence[int]],
    count: int,
) -> dict[int, list[int]]:
    """Replicas for ``count`` partitions added to a topic (Kafka's createPartitions): same
    replication factor as partition 0, continuing its round-robin."""
    brokers = sorted(set(broker_ids))
    first = list(existing[0])
    start_index = next((i for i, b in enumerate(brokers) if b >= first[0]), 0)
    return assign_replicas(brokers, count, len(first), start_index, len(existing))


# --- leader election ------------------------------------------------------------------


def initial_leader_and_isr(
    replicas: Sequence[int], live: Collection[int], controller_epoch: int = 0
) -> LeaderAndIsr | None:
    """A new partition: the first live replica leads, every live replica is in the ISR,
    leader epoch 0. None when no replica is alive (the partition stays new)."""
    live_replicas = [r for r in replicas if r in live]
    if not live_replicas:
        return None
    return LeaderAndIsr(live_replicas[0], 0, tuple(live_replicas), controller_epoch)


def elect_offline_leader(
    replicas: Sequence[int],
    state: LeaderAndIsr,
    live: Collection[int],
    unclean: bool = False,
) -> LeaderAndIsr | None:
    """The leader is gone (or there is none): the first live replica, in assignment order,
    that is in the ISR leads; the ISR keeps its live members. Failing that, and only if
    ``unclean`` (``unclean.leader.election.enable``), the first live replica leads alone:
    records it lacks are lost. None when no leader can be chosen."""
    leader = next((r for r in replicas if r in live and r in state.isr), None)
    if leader is not None:
        return state.next(leader, [r for r in state.isr if r in live])
    if unclean:
        leader = next((r for r in replicas if r in live), None)
        if leader is not None:
            return state.next(leader, [leader])
    return None


def elect_preferred_leader(
    replicas: Sequence[int], state: LeaderAndIsr, live: Collection[int]
) -> LeaderAndIsr | None:
    """Move leadership back to the preferred (first assigned) replica if it is alive and in
    the ISR; None if it already leads or cannot."""
    if not replicas:
        return None
    preferred = replicas[0]
    if state.leader == preferred or preferred not in live or preferred not in state.isr:
        return None
    return state.next(preferred, state.isr)


def elect_controlled_shutdown_leader(
    replicas: Sequence[int],
    state: LeaderAndIsr,
    shutting_down: Collection[int],
    live: Collection[int],
) -> LeaderAndIsr | None:
    """Leadership leaves a broker shutting down: the first live ISR replica not shutting
    down leads, and the brokers shutting down leave the ISR. None if there is no such
    replica (the leader then stays until it goes)."""
    leader = next(
        (r for r in replicas if r in state.isr and r in live and r not in shutting_down), None
    )
    if leader is None:
        return None
    return state.next(leader, [r for r in state.isr if r not in shutting_down])


def remove_replica_from_isr(state: LeaderAndIsr, replica: int) -> LeaderAndIsr | None:
    """A replica went offline (Kafka's removeReplicasFromIsr): it leaves the ISR unless it
    is the last member (kept so that a clean election can pick it when it returns), and if
    it led, the partition has no leader. None when nothing changes."""
    if replica not in state.isr and replica != state.leader:
        return None
    isr = state.isr if len(state.isr) == 1 else tuple(r for r in state.isr if r != replica)
    leader = NO_LEADER if replica == state.leader else state.leader
    if leader == state.leader and isr == state.isr:
        return None
    return state.next(leader, isr)


# --- cluster events -------------------------------------------------------------------


def on_brokers_failed(
    partitions: Mapping[K, PartitionView],
    dead: Collection[int],
    live: Collection[int],
    unclean: bool | Mapping[K, bool] = False,
) -> dict[K, LeaderAndIsr]:
    """Brokers died: new states for the partitions they touched.

    A partition whose leader died (or that had none) gets a leader from its ISR (unclean
    election per ``unclean``, a flag or a flag per partition); if none can be elected it is
    left leaderless with the ISR keeping one member (the old leader if it was in the ISR),
    so a clean election picks it when it returns. A dead follower leaves the ISR.
    """
    dead = set(dead)
    changes: dict[K, LeaderAndIsr] = {}
    for key, view in partitions.items():
        state = view.state
        touched = state.leader in dead or state.leader == NO_LEADER or dead & set(state.isr)
        if not touched:
            continue
        if state.leader in dead or state.leader == NO_LEADER:
            allow = unclean if isinstance(unclean, bool) else unclean.get(key, False)
            new = elect_offline_leader(view.replicas, state, live, allow)
            if new is None:
                if state.leader == NO_LEADER and not (dead & set(state.isr)):
                    continue
                survivors = [r for r in state.isr if r not in dead]
                if not survivors:
                    keep = state.leader if state.leader in state.isr else state.isr[0]
                    survivors = [keep]
                new = state.next(NO_LEADER, survivors)
                if new.isr == state.isr and state.leader == NO_LEADER:
                    continue
        else:
            new = state.next(state.leader, [r for r in state.isr if r not in dead])
        changes[key] = new
    return changes


def on_brokers_started(
    partitions: Mapping[K, PartitionView],
    live: Collection[int],
    unclean: bool | Mapping[K, bool] = False,
) -> dict[K, LeaderAndIsr]:
    """Brokers (re)joined: leaderless partitions that can now elect a leader get one."""
    changes: dict[K, LeaderAndIsr] = {}
    for key, view in partitions.items():
        if view.state.leader != NO_LEADER:
            continue
        allow = unclean if isinstance(unclean, bool) else unclean.get(key, False)
        new = elect_offline_leader(view.replicas, view.state, live, allow)
        if new is not None:
            changes[key] = new
    return changes


def controlled_shutdown(
    partitions: Mapping[K, PartitionView],
    broker_id: int,
    live: Collection[int],
) -> tuple[dict[K, LeaderAndIsr], list[K]]:
    """A broker asks to shut down: move the leadership of its partitions away (those with
    more than one replica) and take it out of the ISRs it follows in.

    Returns the new states and the partitions it still leads (no other ISR member alive),
    which Kafka's ControlledShutdown reports as remaining.
    """
    changes: dict[K, LeaderAndIsr] = {}
    remaining: list[K] = []
    for key, view in partitions.items():
        state = view.state
        if broker_id not in view.replicas:
            continue
        if state.leader == broker_id:
            if len(view.replicas) <= 1:
                continue
            new = elect_controlled_shutdown_leader(view.replicas, state, {broker_id}, live)
            if new is None:
                remaining.append(key)
            else:
                changes[key] = new
        elif broker_id in state.isr:
            new = remove_replica_from_isr(state, broker_id)
            if new is not None:
                changes[key] = new
    return changes, remaining


def preferred_leader_rebalance(
    partitions: Mapping[K, PartitionView],
    live: Collection[int],
    imbalance_per_broker_percentage: int = 10,
) -> dict[K, LeaderAndIsr]:
    """``auto.leader.rebalance.enable``: for each broker whose share of partitions it is
    the preferred leader of but does not lead exceeds
    ``leader.imbalance.per.broker.percentage``, elect it where it is alive and in sync."""
    by_preferred: dict[int, list[K]] = {}
    for key, view in partitions.items():
        if view.replicas:
            by_preferred.setdefault(view.replicas[0], []).append(key)
    changes: dict[K, LeaderAndIsr] = {}
    for broker, keys in by_preferred.items():
        not_led = [k for k in keys if partitions[k].state.leader != broker]
        if len(not_led) / len(keys) <= imbalance_per_broker_percentage / 100:
            continue
        for key in not_led:
            view = partitions[key]
            new = elect_preferred_leader(view.replicas, view.state, live)
            if new is not None:
                changes[key] = new
    return changes
