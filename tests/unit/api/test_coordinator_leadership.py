"""The group and transaction coordinators follow the leadership of their internal
partitions: a broker serves a group / transactional id only while it leads (and has
loaded) the id's ``__consumer_offsets`` / ``__transaction_state`` partition, loads it when
it becomes leader and unloads it when it stops leading. In-process broker, no sockets;
leadership changes are played through the broker's partition listeners as cluster mode
plays them."""

from __future__ import annotations

import pytest
from api_helpers import call

from kbroker.config import BrokerConfig
from kbroker.group.records import partition_for
from kbroker.server.broker import Broker
from kbroker.wire.errors import ErrorCode

OFFSETS, TXNS = "__consumer_offsets", "__transaction_state"
OFFSET_COMMIT, OFFSET_FETCH, HEARTBEAT = 8, 9, 12
INIT_PRODUCER_ID, DESCRIBE_TRANSACTIONS = 22, 65


@pytest.fixture
def broker(tmp_path):
    broker = Broker(
        BrokerConfig(
            {
                "log.dirs": str(tmp_path / "data"),
                "offsets.topic.num.partitions": "3",
                "transaction.state.log.num.partitions": "3",
            }
        )
    )
    broker.groups.offsets_topic()
    broker.transactions.state_topic()
    # as in cluster mode, with every internal partition led and loaded at epoch 0
    for service in (broker.groups, broker.transactions):
        service.partitions.track_leadership = True
        service.partitions.loaded = {0: 0, 1: 0, 2: 0}
    yield broker
    broker.close()


def lead(broker, topic: str, index: int, leading: bool, epoch: int) -> None:
    """What the broker does on a partition-state change: lead or follow, then tell the
    coordinators."""
    partition = broker.replicas.get(topic, index)
    if leading:
        partition.make_leader()
    else:
        partition.make_follower()
    for listener in broker.partition_listeners:
        listener(topic, index, leading, epoch)


def group_in(index: int, prefix: str = "group") -> str:
    return next(f"{prefix}-{n}" for n in range(1000) if partition_for(f"{prefix}-{n}", 3) == index)


def commit(broker, group: str, offset: int) -> ErrorCode:
    body = {
        "group_id": group,
        "generation_id_or_member_epoch": -1,
        "retention_time_ms": -1,
        "member_id": "",
        "topics": [
            {
                "name": OFFSETS,
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": offset,
                        "committed_leader_epoch": -1,
                        "committed_metadata": None,
                    }
                ],
            }
        ],
    }
    return call(broker, OFFSET_COMMIT, 8, body)["topics"][0]["partitions"][0]["error_code"]


def fetch(broker, group: str) -> tuple[ErrorCode, int | None]:
    body = {"groups": [{"group_id": group, "topics": None}]}
    result = call(broker, OFFSET_FETCH, 8, body)["groups"][0]
    offsets = [p["committed_offset"] for t in result["topics"] for p in t["partitions"]]
    return result["error_code"], offsets[0] if offsets else None


def test_groups_move_with_their_offsets_partition(broker):
    moving, staying = group_in(1), group_in(2)
    assert commit(broker, moving, 11) == ErrorCode.NONE
    assert commit(broker, staying, 22) == ErrorCode.NONE

    lead(broker, OFFSETS, 1, False, 1)  # another broker leads partition 1 now
    assert 1 not in broker.groups.partitions.loaded
    assert moving not in broker.groups.coordinator.groups
    assert fetch(broker, moving) == (ErrorCode.NOT_COORDINATOR, None)
    assert commit(broker, moving, 12) == ErrorCode.NOT_COORDINATOR
    heartbeat = {"group_id": moving, "generation_id": 1, "member_id": "m"}
    assert call(broker, HEARTBEAT, 4, heartbeat)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert fetch(broker, staying) == (ErrorCode.NONE, 22)  # other partitions: untouched

    lead(broker, OFFSETS, 1, True, 2)  # led again: loaded from the log
    assert broker.groups.partitions.loaded[1] == 2
    assert fetch(broker, moving) == (ErrorCode.NONE, 11)
    assert commit(broker, moving, 13) == ErrorCode.NONE
    assert fetch(broker, moving) == (ErrorCode.NONE, 13)


def test_an_isr_change_does_not_reload_but_a_new_epoch_does(broker):
    group = group_in(0)
    assert commit(broker, group, 5) == ErrorCode.NONE
    loaded = broker.groups.coordinator.groups[group]
    lead(broker, OFFSETS, 0, True, 0)  # same epoch: the same group object
    assert broker.groups.coordinator.groups[group] is loaded
    lead(broker, OFFSETS, 0, True, 1)
    assert broker.groups.coordinator.groups[group] is not loaded
    assert fetch(broker, group) == (ErrorCode.NONE, 5)


def test_transactional_ids_move_with_their_state_partition(broker):
    txn_id = group_in(2, "txn")
    body = {"transactional_id": txn_id, "transaction_timeout_ms": 60000}
    first = call(broker, INIT_PRODUCER_ID, 4, body)
    assert first["error_code"] == ErrorCode.NONE

    lead(broker, TXNS, 2, False, 1)
    assert broker.transactions.coordinator.describe(txn_id) is None
    moved = call(broker, INIT_PRODUCER_ID, 4, body)
    assert moved["error_code"] == ErrorCode.NOT_COORDINATOR
    described = call(broker, DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [txn_id]})
    assert described["transaction_states"][0]["error_code"] == ErrorCode.NOT_COORDINATOR

    lead(broker, TXNS, 2, True, 2)
    meta = broker.transactions.coordinator.describe(txn_id)
    assert (meta.producer_id, meta.producer_epoch) == (first["producer_id"], 0)
    again = call(broker, INIT_PRODUCER_ID, 4, body)
    assert (again["error_code"], again["producer_id"], again["producer_epoch"]) == (
        ErrorCode.NONE,
        first["producer_id"],
        1,
    )


def test_single_broker_serves_everything_without_tracking(tmp_path):
    broker = Broker(BrokerConfig({"log.dirs": str(tmp_path / "data")}))
    try:
        assert not broker.groups.track_leadership and not broker.transactions.track_leadership
        assert broker.groups.check("any") == ErrorCode.NONE
        assert broker.transactions.check_coordinator("any") == ErrorCode.NONE
    finally:
        broker.close()
