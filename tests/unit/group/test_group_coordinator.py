"""The group coordinator state machine, driven directly with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from kbroker.group import records as rec
from kbroker.group.coordinator import GroupConfig, GroupCoordinator, GroupState, JoinRequest
from kbroker.group.records import OffsetAndMetadata
from kbroker.wire.errors import ErrorCode, KafkaError

E = ErrorCode
SESSION = 10_000
REBALANCE = 30_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class Harness:
    """A coordinator with a fake clock, predictable member ids and recorded writes."""

    def __init__(self, **config) -> None:
        self.clock = Clock()
        self.written: list[tuple[str, bytes, bytes | None]] = []
        self.fail_writes: ErrorCode | None = None
        ids = itertools.count(1)
        self.gc = GroupCoordinator(
            GroupConfig(**config), self.clock, self.persist, new_id=lambda: f"id{next(ids)}"
        )

    def persist(self, group_id, records):
        if self.fail_writes is not None:
            raise KafkaError(self.fail_writes)
        self.written.extend((group_id, k, v) for k, v in records)

    def advance(self, ms: int) -> None:
        self.clock.now += ms
        self.gc.poll()

    def join(
        self,
        member_id="",
        group="g",
        instance=None,
        protocols=(("range", b"m"),),
        require_known=True,
        session=SESSION,
        rebalance=REBALANCE,
        protocol_type="consumer",
        client_id="client",
    ) -> list[dict]:
        out: list[dict] = []
        request = JoinRequest(
            group,
            member_id,
            instance,
            client_id,
            "/127.0.0.1",
            session,
            rebalance,
            protocol_type,
            list(protocols),
            require_known,
        )
        self.gc.join(request, out.append)
        return out

    def join_new(self, **kwargs) -> list[dict]:
        """The v4+ two-step join: MEMBER_ID_REQUIRED, then the join with that id."""
        first = self.join(**kwargs)
        assert first[0]["error_code"] == E.MEMBER_ID_REQUIRED
        return self.join(member_id=first[0]["member_id"], **kwargs)

    def sync(self, member_id, generation, assignments=None, group="g", instance=None):
        out: list[dict] = []
        self.gc.sync(
            group, generation, member_id, instance, None, None, assignments or {}, out.append
        )
        return out

    def state(self, group="g") -> GroupState:
        return self.gc.groups[group].state


def stable_group(h: Harness, n: int) -> list[str]:
    """Bring group "g" to Stable with ``n`` members; their ids (leader first)."""
    pending = [h.join_new() for _ in range(n)]
    # With the default (no) initial delay the first member forms generation 1 alone;
    # the others joined a rebalance that the first member must rejoin.
    first = pending[0][0]
    if n > 1:
        rejoin = h.join(member_id=first["member_id"])
        pending[0] = rejoin
    results = [p[0] for p in pending]
    generation = results[0]["generation_id"]
    leader = results[0]["leader"]
    ids = [r["member_id"] for r in results]
    assert all(r["generation_id"] == generation for r in results)
    syncs = {m: h.sync(m, generation, {x: x.encode() for x in ids}) for m in ids if m != leader}
    leader_sync = h.sync(leader, generation, {x: x.encode() for x in ids})
    assert leader_sync == [
        {
            "error_code": 0,
            "protocol_type": "consumer",
            "protocol_name": "range",
            "assignment": leader.encode(),
        }
    ]
    for member, out in syncs.items():
        assert out[0]["assignment"] == member.encode()
    assert h.state() is GroupState.STABLE
    return [leader] + [m for m in ids if m != leader]


# -- hashing and record formats -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 99162322),
        ("Aa", 2112),
        ("BB", 2112),
        ("polygenelubricants", -(2**31)),
        ("\U0001f600", 31 * 0xD83D + 0xDE00),
    ],
)
def test_java_string_hash(text, expected):
    assert rec.java_string_hash(text) == expected


def test_partition_for_uses_kafka_abs():
    assert rec.partition_for("hello", 50) == 99162322 % 50 == 22
    assert rec.partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) == 0
    # a negative hash is made positive first: 1906497762 % 50 == 12
    assert rec.java_string_hash("my-group") == -1906497762
    assert rec.partition_for("my-group", 50) == 12


def test_offset_record_bytes_are_kafkas():
    key = rec.offset_key("g", "t", 3)
    assert key == bytes.fromhex("000100016700017400000003")
    value = rec.offset_value(OffsetAndMetadata(5, 2, "m", 100))
    assert value == bytes.fromhex("000300000000000000050000000200016d0000000000000064")
    expiring = rec.offset_value(OffsetAndMetadata(5, 2, "m", 100, 200))
    assert expiring == bytes.fromhex("0001000000000000000500016d000000000000006400000000000000c8")
    assert rec.decode(key, value) == rec.OffsetRecord(
        "g", "t", 3, OffsetAndMetadata(5, 2, "m", 100)
    )
    assert rec.decode(key, None) == rec.OffsetRecord("g", "t", 3, None)
    assert rec.group_key("g") == bytes.fromhex("0002000167")


def test_group_record_round_trip():
    member = rec.MemberRecord("m1", "i1", "c", "/h", 30000, 10000, b"sub", b"asg")
    value = rec.GroupRecord("consumer", 4, "range", "m1", 1234, [member])
    decoded = rec.decode(rec.group_key("g"), rec.group_value(value))
    assert decoded == rec.GroupMetadataRecord("g", value)
    assert rec.decode(rec.group_key("g"), None) == rec.GroupMetadataRecord("g", None)
    # keys of KIP-848 records (version 3+) are not ours to read
    assert rec.decode(b"\x00\x03abc", b"x") is None


# -- joining -----------------------------------------------------------------------------
def test_first_join_requires_member_id_then_forms_generation_one():
    h = Harness()
    first = h.join(client_id="cli")
    assert first == [
        {
            "error_code": E.MEMBER_ID_REQUIRED,
            "generation_id": -1,
            "protocol_type": None,
            "protocol_name": None,
            "leader": "",
            "skip_assignment": False,
            "member_id": "cli-id1",
            "members": [],
        }
    ]
    second = h.join(member_id="cli-id1", client_id="cli")
    assert second == [
        {
            "error_code": 0,
            "generation_id": 1,
            "protocol_type": "consumer",
            "protocol_name": "range",
            "leader": "cli-id1",
            "skip_assignment": False,
            "member_id": "cli-id1",
            "members": [{"member_id": "cli-id1", "group_instance_id": None, "metadata": b"m"}],
        }
    ]
    assert h.state() is GroupState.COMPLETING_REBALANCE
    assert h.sync("cli-id1", 1, {"cli-id1": b"a"})[0]["assignment"] == b"a"
    assert h.state() is GroupState.STABLE


def test_join_without_member_id_requirement_joins_at_once():
    h = Harness()
    out = h.join(require_known=False)
    assert out[0]["error_code"] == 0 and out[0]["member_id"] == "client-id1"


def test_join_validation_errors():
    h = Harness(min_session_timeout_ms=6000, max_session_timeout_ms=300000)
    assert h.join(session=5999)[0]["error_code"] == E.INVALID_SESSION_TIMEOUT
    assert h.join(session=300001)[0]["error_code"] == E.INVALID_SESSION_TIMEOUT
    assert h.join(group="")[0]["error_code"] == E.INVALID_GROUP_ID
    assert h.join(member_id="nobody")[0]["error_code"] == E.UNKNOWN_MEMBER_ID
    stable_group(h, 1)
    assert h.join(protocol_type="connect")[0]["error_code"] == E.INCONSISTENT_GROUP_PROTOCOL
    other = h.join(protocols=[("roundrobin", b"")])
    assert other[0]["error_code"] == E.INCONSISTENT_GROUP_PROTOCOL


def test_second_member_triggers_rebalance_and_leader_gets_all_metadata():
    h = Harness()
    (leader,) = stable_group(h, 1)
    pending = h.join_new(protocols=[("range", b"m2")])
    assert pending == []  # waits for the leader to rejoin
    assert h.state() is GroupState.PREPARING_REBALANCE
    assert h.gc.heartbeat("g", 1, leader, None) == E.REBALANCE_IN_PROGRESS
    rejoined = h.join(member_id=leader)
    assert rejoined[0]["generation_id"] == 2
    assert rejoined[0]["members"] == [
        {"member_id": leader, "group_instance_id": None, "metadata": b"m"},
        {"member_id": "client-id2", "group_instance_id": None, "metadata": b"m2"},
    ]
    assert pending[0]["generation_id"] == 2
    assert pending[0]["leader"] == leader
    assert pending[0]["members"] == []
    follower_sync = h.sync("client-id2", 2)
    assert follower_sync == []  # waits for the leader's assignment
    assert h.gc.heartbeat("g", 2, "client-id2", None) == E.NONE
    h.sync(leader, 2, {leader: b"A", "client-id2": b"B"})
    assert follower_sync[0]["assignment"] == b"B"
    assert h.state() is GroupState.STABLE


def test_sync_errors():
    h = Harness()
    leader, follower = stable_group(h, 2)
    assert h.sync(follower, 1)[0]["error_code"] == E.ILLEGAL_GENERATION
    assert h.sync("ghost", 2)[0]["error_code"] == E.UNKNOWN_MEMBER_ID
    assert h.sync(follower, 2, group="nope")[0]["error_code"] == E.UNKNOWN_MEMBER_ID
    out: list = []
    h.gc.sync("g", 2, follower, None, "consumer", "roundrobin", {}, out.append)
    assert out[0]["error_code"] == E.INCONSISTENT_GROUP_PROTOCOL
    # a stable group answers a late SyncGroup with the member's assignment
    assert h.sync(follower, 2)[0]["assignment"] == follower.encode()
    h.join_new()
    assert h.sync(follower, 2)[0]["error_code"] == E.REBALANCE_IN_PROGRESS


def test_protocol_chosen_by_votes_among_common_protocols():
    h = Harness()
    a = h.join(require_known=False, protocols=[("sticky", b""), ("range", b"")])
    assert a[0]["protocol_name"] == "sticky"
    h.sync(a[0]["member_id"], 1, {})
    b = h.join(require_known=False, protocols=[("range", b""), ("roundrobin", b"")])
    c = h.join(require_known=False, protocols=[("range", b""), ("sticky", b"")])
    h.join(member_id=a[0]["member_id"], protocols=[("sticky", b""), ("range", b"")])
    # only "range" is common to all three
    assert b[0]["protocol_name"] == c[0]["protocol_name"] == "range"


def test_follower_rejoining_a_stable_group_unchanged_gets_current_generation():
    h = Harness()
    leader, follower = stable_group(h, 2)
    again = h.join(member_id=follower)
    assert again[0]["generation_id"] == 2 and again[0]["members"] == []
    assert h.state() is GroupState.STABLE
    # the leader's JoinGroup always forces a rebalance
    assert h.join(member_id=leader) == []
    assert h.state() is GroupState.PREPARING_REBALANCE


# -- leaving and timeouts ----------------------------------------------------------------
def test_leave_triggers_rebalance_for_the_rest():
    h = Harness()
    leader, follower = stable_group(h, 2)
    assert h.gc.leave("g", [(leader, None)]) == (E.NONE, [E.NONE])
    assert h.state() is GroupState.PREPARING_REBALANCE
    out = h.join(member_id=follower)
    assert out[0]["generation_id"] == 3 and out[0]["leader"] == follower
    assert h.gc.leave("g", [("ghost", None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
    assert h.gc.leave("nope", [("a", None), ("b", None)]) == (
        E.NONE,
        [E.UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID],
    )


def test_last_member_leaving_empties_the_group():
    h = Harness()
    (leader,) = stable_group(h, 1)
    h.gc.leave("g", [(leader, None)])
    assert h.state() is GroupState.EMPTY
    assert h.gc.groups["g"].generation == 2
    assert h.gc.heartbeat("g", 2, leader, None) == E.UNKNOWN_MEMBER_ID


def test_session_timeout_removes_silent_member():
    h = Harness()
    leader, follower = stable_group(h, 2)
    h.advance(SESSION - 1)
    assert h.gc.heartbeat("g", 2, leader, None) == E.NONE
    h.advance(1)
    # the follower's session expired; the leader's was renewed
    assert list(h.gc.groups["g"].members) == [leader]
    assert h.state() is GroupState.PREPARING_REBALANCE
    assert h.gc.heartbeat("g", 2, leader, None) == E.REBALANCE_IN_PROGRESS
    assert h.gc.heartbeat("g", 2, follower, None) == E.UNKNOWN_MEMBER_ID
    out = h.join(member_id=leader)
    assert out[0]["generation_id"] == 3
    assert [m["member_id"] for m in out[0]["members"]] == [leader]


def test_rebalance_timeout_drops_members_that_do_not_rejoin():
    h = Harness()
    leader, follower = stable_group(h, 2)
    newcomer = h.join_new()
    waiting = h.join(member_id=leader)
    assert waiting == [] and newcomer == []
    # the follower keeps heartbeating but never rejoins
    for _ in range(REBALANCE // 5000):
        h.advance(5000)
        assert h.gc.heartbeat("g", 2, follower, None) in (
            E.REBALANCE_IN_PROGRESS,
            E.UNKNOWN_MEMBER_ID,
        )
    assert waiting[0]["generation_id"] == 3
    assert [m["member_id"] for m in waiting[0]["members"]] == [leader, newcomer_id(h, leader)]
    assert follower not in h.gc.groups["g"].members


def newcomer_id(h: Harness, leader: str) -> str:
    return next(m for m in h.gc.groups["g"].members if m != leader)


def test_sync_timeout_removes_members_that_never_sync():
    h = Harness()
    a = h.join(require_known=False, rebalance=5000)
    h.sync(a[0]["member_id"], 1, {})
    b = h.join(require_known=False, rebalance=5000)
    h.join(member_id=a[0]["member_id"], rebalance=5000)
    follower_sync = h.sync(b[0]["member_id"], 2)
    h.advance(4999)
    assert follower_sync == []
    h.advance(1)
    # the leader never sent SyncGroup: it is removed, the waiting follower told to rejoin
    assert follower_sync[0]["error_code"] == E.REBALANCE_IN_PROGRESS
    assert list(h.gc.groups["g"].members) == [b[0]["member_id"]]
    assert h.state() is GroupState.PREPARING_REBALANCE


def test_pending_member_id_expires_after_session_timeout():
    h = Harness()
    (leader,) = stable_group(h, 1)
    first = h.join()
    assert h.gc.groups["g"].pending_members
    waiting = h.join(member_id=leader)
    assert waiting == []  # the pending member may still join
    h.advance(SESSION)
    assert waiting[0]["generation_id"] == 2
    assert h.join(member_id=first[0]["member_id"])[0]["error_code"] == E.UNKNOWN_MEMBER_ID


def test_initial_rebalance_delay_collects_members():
    h = Harness(initial_rebalance_delay_ms=3000)
    a = h.join(require_known=False)
    assert a == []
    h.advance(2000)
    b = h.join(require_known=False)
    h.advance(1000)  # a new member arrived during the delay: wait another 3000
    assert a == [] and b == []
    h.advance(2999)
    assert a == []
    h.advance(1)
    assert a[0]["generation_id"] == b[0]["generation_id"] == 1
    assert len(a[0]["members"]) == 2


# -- static membership ---------------------------------------------------------------------
def test_static_member_restart_keeps_assignment_without_rebalance():
    h = Harness()
    a = h.join(instance="i-a")  # static members need no member id round trip
    assert a[0]["error_code"] == 0 and a[0]["member_id"] == "i-a-id1"
    b = h.join(instance="i-b")
    h.join(member_id="i-a-id1", instance="i-a")
    h.sync("i-b-id2", 2)
    h.sync("i-a-id1", 2, {"i-a-id1": b"A", "i-b-id2": b"B"})
    assert b[0]["leader"] == "i-a-id1"
    # i-b restarts: a new JoinGroup without member id but with its instance id
    again = h.join(instance="i-b")
    assert again[0]["error_code"] == 0
    assert again[0]["generation_id"] == 2
    assert again[0]["member_id"] == "i-b-id3"
    assert again[0]["leader"] == "i-a-id1"
    assert h.state() is GroupState.STABLE
    assert h.sync("i-b-id3", 2, instance="i-b")[0]["assignment"] == b"B"
    # the old incarnation is fenced
    assert h.gc.heartbeat("g", 2, "i-b-id2", "i-b") == E.FENCED_INSTANCE_ID
    assert h.sync("i-b-id2", 2, instance="i-b")[0]["error_code"] == E.FENCED_INSTANCE_ID
    assert h.join(member_id="i-b-id2", instance="i-b")[0]["error_code"] == E.FENCED_INSTANCE_ID
    assert h.gc.commit_offsets("g", 2, "i-b-id2", "i-b", {("t", 0): OffsetAndMetadata(1)}) == {
        ("t", 0): E.FENCED_INSTANCE_ID
    }


def test_static_leader_restart_keeps_leadership_without_assigning():
    h = Harness()
    h.join(instance="i-a")
    h.sync("i-a-id1", 1, {"i-a-id1": b"A"})
    again = h.join(instance="i-a")
    assert again[0]["member_id"] == "i-a-id2"
    assert again[0]["leader"] == "i-a-id1"  # the old id: the new member does not assign
    assert again[0]["members"] == []
    assert h.gc.groups["g"].leader_id == "i-a-id2"
    assert h.sync("i-a-id2", 1, instance="i-a")[0]["assignment"] == b"A"


def test_static_member_not_removed_at_join_deadline_but_by_session_timeout():
    h = Harness()
    h.join(instance="i-a", rebalance=5000)
    h.join(instance="i-b", rebalance=5000)
    h.join(member_id="i-a-id1", instance="i-a", rebalance=5000)
    h.sync("i-a-id1", 2, {})
    h.sync("i-b-id2", 2, {})
    # i-b goes silent; a dynamic member arrives
    c = h.join(require_known=False, rebalance=5000)
    h.join(member_id="i-a-id1", instance="i-a", rebalance=5000)
    h.advance(5000)
    assert c[0]["generation_id"] == 3
    assert "i-b-id2" in h.gc.groups["g"].members  # static: kept past the join phase
    h.sync("i-a-id1", 3, {})
    h.gc.heartbeat("g", 3, "client-id3", None)
    h.advance(SESSION - 1)
    h.gc.heartbeat("g", 3, "i-a-id1", "i-a")
    h.gc.heartbeat("g", 3, "client-id3", None)
    assert "i-b-id2" in h.gc.groups["g"].members
    h.advance(1)
    assert "i-b-id2" not in h.gc.groups["g"].members


def test_batch_leave_by_instance_id():
    h = Harness()
    h.join(instance="i-a")
    h.join(instance="i-b")
    h.join(member_id="i-a-id1", instance="i-a")
    top, errors = h.gc.leave("g", [("", "i-a"), ("", "i-x"), ("wrong-id", "i-b")])
    assert top == E.NONE
    assert errors == [E.NONE, E.UNKNOWN_MEMBER_ID, E.FENCED_INSTANCE_ID]
    assert list(h.gc.groups["g"].members) == ["i-b-id2"]


# -- offsets -------------------------------------------------------------------------------
def test_simple_commit_creates_an_empty_group_and_persists():
    h = Harness()
    result = h.gc.commit_offsets("solo", -1, "", None, {("t", 0): OffsetAndMetadata(42, 3, "md")})
    assert result == {("t", 0): E.NONE}
    assert h.state("solo") is GroupState.EMPTY
    assert h.gc.fetch_offsets("solo", [("t", 0), ("t", 1)]) == {
        ("t", 0): OffsetAndMetadata(42, 3, "md", h.clock.now, -1),
        ("t", 1): None,
    }
    assert h.written == [
        (
            "solo",
            rec.offset_key("solo", "t", 0),
            rec.offset_value(OffsetAndMetadata(42, 3, "md", h.clock.now)),
        )
    ]
    assert h.gc.commit_offsets("other", 5, "m", None, {("t", 0): OffsetAndMetadata(1)}) == {
        ("t", 0): E.ILLEGAL_GENERATION
    }


def test_commit_checks_member_and_generation():
    h = Harness()
    leader, follower = stable_group(h, 2)
    tp = ("t", 0)
    assert h.gc.commit_offsets("g", 2, follower, None, {tp: OffsetAndMetadata(5)}) == {tp: E.NONE}
    assert h.gc.commit_offsets("g", 1, follower, None, {tp: OffsetAndMetadata(6)}) == {
        tp: E.ILLEGAL_GENERATION
    }
    assert h.gc.commit_offsets("g", 2, "ghost", None, {tp: OffsetAndMetadata(6)}) == {
        tp: E.UNKNOWN_MEMBER_ID
    }
    assert h.gc.commit_offsets("g", -1, "", None, {tp: OffsetAndMetadata(6)}) == {
        tp: E.UNKNOWN_MEMBER_ID
    }
    big = OffsetAndMetadata(7, -1, "x" * 4097)
    assert h.gc.commit_offsets("g", 2, leader, None, {tp: big}) == {tp: E.OFFSET_METADATA_TOO_LARGE}
    # during PreparingRebalance the current generation may still commit (on revocation)
    h.join_new()
    assert h.gc.commit_offsets("g", 2, leader, None, {tp: OffsetAndMetadata(8)}) == {tp: E.NONE}
    assert h.gc.fetch_offsets("g", None)[tp].offset == 8


def test_commit_store_failure_maps_error():
    h = Harness()
    h.fail_writes = E.NOT_ENOUGH_REPLICAS
    tp = ("t", 0)
    assert h.gc.commit_offsets("g", -1, "", None, {tp: OffsetAndMetadata(1)}) == {
        tp: E.COORDINATOR_NOT_AVAILABLE
    }
    assert h.gc.fetch_offsets("g", [tp]) == {tp: None}


def test_state_survives_reload_from_records():
    h = Harness()
    leader, follower = stable_group(h, 2)
    h.gc.commit_offsets("g", 2, leader, None, {("t", 0): OffsetAndMetadata(10, 1, "a")})
    h.gc.commit_offsets("g", 2, leader, None, {("t", 0): OffsetAndMetadata(11, 1, "b")})
    h.gc.commit_offsets("solo", -1, "", None, {("t", 1): OffsetAndMetadata(3)})
    h.gc.delete_groups(["solo"])
    fresh = GroupCoordinator(GroupConfig(), h.clock)
    fresh.load([(k, v) for _, k, v in h.written])
    assert set(fresh.groups) == {"g"}
    group = fresh.groups["g"]
    assert group.state is GroupState.STABLE
    assert group.generation == 2
    assert group.leader_id == leader
    assert list(group.members) == [leader, follower]
    assert group.members[follower].assignment == follower.encode()
    assert fresh.fetch_offsets("g", None) == {("t", 0): OffsetAndMetadata(11, 1, "b", h.clock.now)}
    # loaded members that stay silent expire like any other
    h.clock.now += SESSION
    fresh.poll()
    assert fresh.groups["g"].state is GroupState.EMPTY
    assert fresh.groups["g"].members == {}
    assert fresh.groups["g"].generation == 3


def test_delete_groups():
    h = Harness()
    stable_group(h, 1)
    h.gc.commit_offsets("empty", -1, "", None, {("t", 0): OffsetAndMetadata(1)})
    assert h.gc.delete_groups(["g", "empty", "missing"]) == {
        "g": E.NON_EMPTY_GROUP,
        "empty": E.NONE,
        "missing": E.GROUP_ID_NOT_FOUND,
    }
    assert "empty" not in h.gc.groups
    assert h.written[-2:] == [
        ("empty", rec.offset_key("empty", "t", 0), None),
        ("empty", rec.group_key("empty"), None),
    ]


def test_offset_delete_refuses_subscribed_topics():
    h = Harness()
    subscription = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x02t1" + b"\xff\xff\xff\xff"
    out = h.join(require_known=False, protocols=[("range", subscription)])
    h.sync(out[0]["member_id"], 1, {})
    for tp in (("t1", 0), ("t2", 0)):
        h.gc.commit_offsets("g", 1, out[0]["member_id"], None, {tp: OffsetAndMetadata(1)})
    top, results = h.gc.delete_offsets("g", [("t1", 0), ("t2", 0)])
    assert top == E.NONE
    assert results == {("t1", 0): E.GROUP_SUBSCRIBED_TO_TOPIC, ("t2", 0): E.NONE}
    assert list(h.gc.groups["g"].offsets) == [("t1", 0)]
    assert h.gc.delete_offsets("nope", [("t1", 0)]) == (E.GROUP_ID_NOT_FOUND, {})


def test_offsets_expire_after_retention_once_group_is_empty():
    h = Harness(offsets_retention_ms=60_000, offsets_retention_check_interval_ms=1000)
    h.gc.commit_offsets("g", -1, "", None, {("t", 0): OffsetAndMetadata(1)})
    h.advance(59_000)
    assert ("t", 0) in h.gc.groups["g"].offsets
    h.advance(1_000)
    assert "g" not in h.gc.groups  # no offsets left: the empty group is gone too
    assert h.written[-2:] == [
        ("g", rec.offset_key("g", "t", 0), None),
        ("g", rec.group_key("g"), None),
    ]


def test_list_and_describe():
    h = Harness()
    stable_group(h, 1)
    h.gc.commit_offsets("solo", -1, "", None, {("t", 0): OffsetAndMetadata(1)})
    assert [(g.group_id, g.state.value) for g in h.gc.list_groups()] == [
        ("g", "Stable"),
        ("solo", "Empty"),
    ]
    assert [g.group_id for g in h.gc.list_groups(["empty"])] == ["solo"]
    assert h.gc.describe("missing") is None


# -- coordination moving to another broker --------------------------------------------------
def test_unload_answers_waiting_members_not_coordinator_and_load_restores_the_group():
    h = Harness()
    leader, follower = stable_group(h, 2)
    generation = h.gc.groups["g"].generation
    assert (
        h.gc.commit_offsets("g", generation, leader, None, {("t", 0): OffsetAndMetadata(42)})[
            ("t", 0)
        ]
        == E.NONE
    )
    h.gc.commit_offsets("other", -1, "", None, {("t", 0): OffsetAndMetadata(7)})
    newcomer = h.join()[0]["member_id"]
    waiting = h.join(member_id=newcomer)  # a rebalance: it waits for the others to rejoin
    assert waiting == []
    assert h.gc.unload(lambda group_id: group_id == "g") == ["g"]
    assert waiting[0]["error_code"] == E.NOT_COORDINATOR
    assert "g" not in h.gc.groups and "other" in h.gc.groups
    # the new coordinator reads the group and its offsets from the replicated records
    taken_over = GroupCoordinator(GroupConfig(), h.clock)
    assert taken_over.load((k, v) for g, k, v in h.written if g == "g") == 1
    assert taken_over.fetch_offsets("g", [("t", 0)])[("t", 0)].offset == 42
    assert set(taken_over.groups["g"].members) == {leader, follower}
    assert taken_over.heartbeat("g", generation, leader, None) == E.NONE
