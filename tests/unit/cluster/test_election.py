"""Controller decisions: replica assignment and leader election, exact values."""

import random

import pytest

from kbroker.cluster.election import (
    NO_LEADER,
    LeaderAndIsr,
    PartitionView,
    assign_added_partitions,
    assign_replicas,
    controlled_shutdown,
    elect_controlled_shutdown_leader,
    elect_offline_leader,
    elect_preferred_leader,
    initial_leader_and_isr,
    on_brokers_failed,
    on_brokers_started,
    preferred_leader_rebalance,
    remove_replica_from_isr,
)
from kbroker.wire.errors import ErrorCode, KafkaError


def test_assignment_matches_kafka():
    # Kafka's AdminTest.testReplicaAssignment: brokers 0..4, 10 partitions, RF 3, start 0
    assert assign_replicas(range(5), 10, 3, start_index=0) == {
        0: [0, 1, 2],
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 0],
        4: [4, 0, 1],
        5: [0, 2, 3],
        6: [1, 3, 4],
        7: [2, 4, 0],
        8: [3, 0, 1],
        9: [4, 1, 2],
    }


def test_assignment_uses_sorted_broker_ids_and_start_index():
    assert assign_replicas([30, 10, 20], 4, 2, start_index=1) == {
        0: [20, 10],  # first index 1, shift 1: 1 + (1 + 0) % 2 = 2 -> index 0
        1: [30, 20],
        2: [10, 30],
        3: [20, 30],  # partition 3 % 3 == 0: shift 2 -> 1 + 0 = 1 -> index 2
    }


def test_assignment_random_start_is_seeded():
    a = assign_replicas([1, 2, 3], 6, 3, rng=random.Random(42))
    b = assign_replicas([1, 2, 3], 6, 3, rng=random.Random(42))
    assert a == b
    for replicas in a.values():
        assert sorted(replicas) == [1, 2, 3]
    leaders = [a[p][0] for p in range(6)]
    assert sorted(leaders) == [1, 1, 2, 2, 3, 3]  # round-robin leaders


def test_assignment_spreads_evenly():
    result = assign_replicas(range(1, 4), 30, 2, start_index=0)
    counts = {b: sum(b in r for r in result.values()) for b in (1, 2, 3)}
    assert counts == {1: 20, 2: 20, 3: 20}
    assert all(len(set(r)) == 2 for r in result.values())


def test_assignment_errors():
    with pytest.raises(KafkaError) as e:
        assign_replicas([1, 2], 3, 3)
    assert e.value.code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert "Replication factor: 3 larger than available brokers: 2." in str(e.value)
    with pytest.raises(KafkaError) as e:
        assign_replicas([1, 2], 3, 0)
    assert e.value.code == ErrorCode.INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaError) as e:
        assign_replicas([1, 2], 0, 1)
    assert e.value.code == ErrorCode.INVALID_PARTITIONS


def test_assignment_single_broker():
    assert assign_replicas([7], 3, 1) == {0: [7], 1: [7], 2: [7]}


def test_added_partitions_continue_round_robin():
    existing = assign_replicas(range(5), 3, 3, start_index=0)
    added = assign_added_partitions(range(5), existing, 7)
    whole = assign_replicas(range(5), 10, 3, start_index=0)
    assert added == {p: whole[p] for p in range(3, 10)}


def test_initial_leader_and_isr():
    assert initial_leader_and_isr([3, 1, 2], {1, 2, 3}) == LeaderAndIsr(3, 0, (3, 1, 2))
    assert initial_leader_and_isr([3, 1, 2], {1, 2}, controller_epoch=4) == LeaderAndIsr(
        1, 0, (1, 2), 4
    )
    assert initial_leader_and_isr([3], {1, 2}) is None


def test_offline_election_picks_first_live_isr_replica_in_assignment_order():
    state = LeaderAndIsr(1, 4, (1, 3, 2), controller_epoch=2)
    new = elect_offline_leader([1, 2, 3], state, live={2, 3})
    assert new == LeaderAndIsr(2, 5, (3, 2), controller_epoch=2)


def test_offline_election_never_picks_out_of_sync_replica_unless_unclean():
    state = LeaderAndIsr(1, 4, (1,))
    assert elect_offline_leader([1, 2, 3], state, live={2, 3}) is None
    assert elect_offline_leader([1, 2, 3], state, live={2, 3}, unclean=True) == LeaderAndIsr(
        2, 5, (2,)
    )
    assert elect_offline_leader([1, 2, 3], state, live=set(), unclean=True) is None


def test_preferred_election():
    state = LeaderAndIsr(2, 7, (2, 1, 3))
    assert elect_preferred_leader([1, 2, 3], state, {1, 2, 3}) == LeaderAndIsr(1, 8, (2, 1, 3))
    assert elect_preferred_leader([1, 2, 3], state, {2, 3}) is None  # preferred dead
    assert elect_preferred_leader([1, 2, 3], LeaderAndIsr(2, 7, (2, 3)), {1, 2, 3}) is None
    assert elect_preferred_leader([2, 1, 3], state, {1, 2, 3}) is None  # already leads


def test_controlled_shutdown_election():
    state = LeaderAndIsr(1, 3, (1, 2, 3))
    assert elect_controlled_shutdown_leader([1, 2, 3], state, {1}, {1, 2, 3}) == LeaderAndIsr(
        2, 4, (2, 3)
    )
    assert elect_controlled_shutdown_leader([1, 2, 3], state, {1}, {1, 3}) == LeaderAndIsr(
        3, 4, (2, 3)
    )
    assert elect_controlled_shutdown_leader([1, 2], LeaderAndIsr(1, 3, (1,)), {1}, {1, 2}) is None


def test_remove_replica_from_isr():
    state = LeaderAndIsr(1, 3, (1, 2, 3))
    assert remove_replica_from_isr(state, 2) == LeaderAndIsr(1, 4, (1, 3))
    assert remove_replica_from_isr(state, 1) == LeaderAndIsr(NO_LEADER, 4, (2, 3))
    assert remove_replica_from_isr(LeaderAndIsr(1, 3, (1,)), 1) == LeaderAndIsr(NO_LEADER, 4, (1,))
    assert remove_replica_from_isr(LeaderAndIsr(1, 3, (1,)), 2) is None


def views():
    return {
        ("t", 0): PartitionView((1, 2, 3), LeaderAndIsr(1, 0, (1, 2, 3))),
        ("t", 1): PartitionView((2, 3, 1), LeaderAndIsr(2, 0, (2, 3, 1))),
        ("t", 2): PartitionView((3, 1, 2), LeaderAndIsr(3, 0, (3, 1))),
        ("u", 0): PartitionView((1,), LeaderAndIsr(1, 2, (1,))),
        ("v", 0): PartitionView((2, 3), LeaderAndIsr(3, 1, (3,))),
    }


def test_broker_failure():
    changes = on_brokers_failed(views(), dead={1}, live={2, 3})
    assert changes == {
        ("t", 0): LeaderAndIsr(2, 1, (2, 3)),  # leader 1 died: 2 is first live in ISR
        ("t", 1): LeaderAndIsr(2, 1, (2, 3)),  # follower 1 leaves the ISR
        ("t", 2): LeaderAndIsr(3, 1, (3,)),
        ("u", 0): LeaderAndIsr(NO_LEADER, 3, (1,)),  # offline; ISR keeps its last member
    }


def test_broker_failure_without_clean_candidate():
    parts = {("v", 0): PartitionView((2, 3), LeaderAndIsr(3, 1, (3,)))}
    assert on_brokers_failed(parts, dead={3}, live={2}) == {
        ("v", 0): LeaderAndIsr(NO_LEADER, 2, (3,))
    }
    assert on_brokers_failed(parts, dead={3}, live={2}, unclean={("v", 0): True}) == {
        ("v", 0): LeaderAndIsr(2, 2, (2,))
    }
    # both replicas of an ISR die: the old leader is the one kept
    parts = {("w", 0): PartitionView((1, 2, 3), LeaderAndIsr(2, 5, (1, 2)))}
    assert on_brokers_failed(parts, dead={1, 2}, live={3}) == {
        ("w", 0): LeaderAndIsr(NO_LEADER, 6, (2,))
    }


def test_offline_partition_stays_put_on_unrelated_failure():
    parts = {("u", 0): PartitionView((1,), LeaderAndIsr(NO_LEADER, 3, (1,)))}
    assert on_brokers_failed(parts, dead={2}, live={3}) == {}
    # a second failure of the kept ISR member changes nothing either
    assert on_brokers_failed(parts, dead={1}, live={3}) == {}


def test_broker_restart_brings_offline_partition_back():
    parts = {
        ("u", 0): PartitionView((1,), LeaderAndIsr(NO_LEADER, 3, (1,))),
        ("t", 0): PartitionView((1, 2), LeaderAndIsr(2, 4, (2,))),
    }
    assert on_brokers_started(parts, live={1, 2}) == {("u", 0): LeaderAndIsr(1, 4, (1,))}
    assert on_brokers_started(parts, live={2}) == {}


def test_controlled_shutdown_moves_leaders_and_leaves_isrs():
    changes, remaining = controlled_shutdown(views(), broker_id=3, live={1, 2, 3})
    assert changes == {
        ("t", 0): LeaderAndIsr(1, 1, (1, 2)),
        ("t", 1): LeaderAndIsr(2, 1, (2, 1)),
        ("t", 2): LeaderAndIsr(1, 1, (1,)),
    }
    assert remaining == [("v", 0)]  # 2 is not in the ISR: 3 keeps leading until it goes


def test_controlled_shutdown_single_replica_partitions_stay():
    changes, remaining = controlled_shutdown(views(), broker_id=1, live={1, 2, 3})
    assert ("u", 0) not in changes and remaining == []
    assert changes[("t", 0)] == LeaderAndIsr(2, 1, (2, 3))


def test_preferred_rebalance_over_threshold():
    parts = {
        ("t", 0): PartitionView((1, 2), LeaderAndIsr(2, 3, (2, 1))),
        ("t", 1): PartitionView((2, 1), LeaderAndIsr(2, 3, (2, 1))),
        ("t", 2): PartitionView((1, 2), LeaderAndIsr(1, 3, (1, 2))),
        ("t", 3): PartitionView((1, 2), LeaderAndIsr(2, 3, (2,))),  # 1 not in sync
    }
    # broker 1: 2 of 3 preferred partitions led elsewhere (67% > 10%)
    assert preferred_leader_rebalance(parts, live={1, 2}) == {("t", 0): LeaderAndIsr(1, 4, (2, 1))}
    # with a threshold of 70% nothing moves
    assert preferred_leader_rebalance(parts, live={1, 2}, imbalance_per_broker_percentage=70) == {}
    # the preferred leader must be alive
    assert preferred_leader_rebalance(parts, live={2}) == {}
