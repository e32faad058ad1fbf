"""The records of ``__consumer_offsets`` in Kafka's own key and value formats.

Each key and value starts with an int16 version. Keys of version 0 and 1 are an
offset commit (group, topic, partition), version 2 a group's metadata (group); later
versions belong to the KIP-848 consumer-group protocol, which we skip. A null value is
a tombstone. We write OffsetCommitValue v3 (v1 when the commit carries an expiry, as
OffsetCommit v2-v4 may) and GroupMetadataValue v3, which Kafka 2.4+ reads.

The formats are declared in our schema notation and compiled with the wire codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kbroker.wire.versioned import VersionedRecords, version_of

_SCHEMAS = {
    "offset_key": """
api OffsetCommitKey key=-1 implemented=0-1
request
group       string
topic       string
partition   int32
""",
    "offset_value": """
api OffsetCommitValue key=-1 implemented=0-4 flexible=4+
request
offset             int64
leader_epoch       int32    3+  default=-1
metadata           string
commit_timestamp   int64
expire_timestamp   int64    1   default=-1
""",
    "group_key": """
api GroupMetadataKey key=-1 implemented=2
request
group   string
""",
    "group_value": """
api GroupMetadataValue key=-1 implemented=0-4 flexible=4+
request
protocol_type             string
generation                int32
protocol                  ?string
leader                    ?string
current_state_timestamp   int64     2+  default=-1
members                   []
  member_id               string
  group_instance_id       ?string   3+
  client_id               string
  client_host             string
  rebalance_timeout       int32     1+  default=-1
  session_timeout         int32
  subscription            bytes
  assignment              bytes
""",
}
_RECORDS = VersionedRecords(_SCHEMAS)


@dataclass
class OffsetAndMetadata:
    """One committed offset."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1


@dataclass
class MemberRecord:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass
class GroupRecord:
    """A group's persisted metadata (its members and their assignments)."""

    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: list[MemberRecord] = field(default_factory=list)


def offset_key(group: str, topic: str, partition: int) -> bytes:
    body = {"group": group, "topic": topic, "partition": partition}
    return _RECORDS.encode("offset_key", 1, body)


def offset_value(value: OffsetAndMetadata) -> bytes:
    body = {
        "offset": value.offset,
        "leader_epoch": value.leader_epoch,
        "metadata": value.metadata,
        "commit_timestamp": value.commit_timestamp,
        "expire_timestamp": value.expire_timestamp,
    }
    return _RECORDS.encode("offset_value", 1 if value.expire_timestamp >= 0 else 3, body)


def group_key(group: str) -> bytes:
    return _RECORDS.encode("group_key", 2, {"group": group})


def group_value(value: GroupRecord) -> bytes:
    body = {
        "protocol_type": value.protocol_type,
        "generation": value.generation,
        "protocol": value.protocol,
        "leader": value.leader,
        "current_state_timestamp": value.current_state_timestamp,
        "members": [vars(m).copy() for m in value.members],
    }
    return _RECORDS.encode("group_value", 3, body)


@dataclass
class OffsetRecord:
    group: str
    topic: str
    partition: int
    value: OffsetAndMetadata | None  # None: tombstone


@dataclass
class GroupMetadataRecord:
    group: str
    value: GroupRecord | None  # None: tombstone


def decode(key: bytes | None, value: bytes | None):
    """An OffsetRecord, a GroupMetadataRecord, or None for a record we do not use."""
    if key is None or len(key) < 2:
        return None
    version = version_of(key)
    if version in (0, 1):
        k = _RECORDS.decode("offset_key", key)
        if value is None:
            return OffsetRecord(k["group"], k["topic"], k["partition"], None)
        v = _RECORDS.decode("offset_value", value)
        return OffsetRecord(
            k["group"],
            k["topic"],
            k["partition"],
            OffsetAndMetadata(
                v["offset"],
                v["leader_epoch"],
                v["metadata"],
                v["commit_timestamp"],
                v["expire_timestamp"],
            ),
        )
    if version == 2:
        group = _RECORDS.decode("group_key", key)["group"]
        if value is None:
            return GroupMetadataRecord(group, None)
        v = _RECORDS.decode("group_value", value)
        members = [MemberRecord(**m) for m in v.pop("members")]
        return GroupMetadataRecord(group, GroupRecord(members=members, **v))
    return None


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, as a signed 32-bit int."""
    data = text.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group, as Kafka computes it.

    Kafka's ``Utils.abs`` maps Integer.MIN_VALUE to 0 (not to itself, as Math.abs does).
    """
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions
