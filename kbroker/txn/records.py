"""The records of ``__transaction_state`` in Kafka's own key and value formats.

Key: TransactionLogKey v0 (the transactional id). Value: TransactionLogValue v0 (the
producer id and epoch, timeout, state, partitions and timestamps); a null value is a
tombstone (an expired transactional id). Each starts with its int16 version. Kafka 4
writes value v1 (flexible, with tagged fields we do not need); we read v0 and v1 and
write v0, which every Kafka since 0.11 reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kbroker.wire.versioned import VersionedRecords, version_of

_SCHEMAS = {
    "key": """
api TransactionLogKey key=-1 implemented=0
request
transactional_id   string
""",
    "value": """
api TransactionLogValue key=-1 implemented=0-1 flexible=1+
request
producer_id                  int64
previous_producer_id         int64   1+  tag=0  default=-1
next_producer_id             int64   1+  tag=1  default=-1
producer_epoch               int16
transaction_timeout_ms       int32
transaction_status           int8
transaction_partitions       ?[]
  topic                      string
  partition_ids              []int32
last_update_timestamp_ms     int64
start_timestamp_ms           int64
client_transaction_version   int16   1+  tag=2  default=0
""",
}
_RECORDS = VersionedRecords(_SCHEMAS)


@dataclass
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: list[tuple[str, int]] = field(default_factory=list)
    last_update_ms: int = -1
    start_ms: int = -1


def txn_key(transactional_id: str) -> bytes:
    return _RECORDS.encode("key", 0, {"transactional_id": transactional_id})


def txn_value(value: TxnLogValue) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(value.partitions):
        by_topic.setdefault(topic, []).append(partition)
    body = {
        "producer_id": value.producer_id,
        "producer_epoch": value.producer_epoch,
        "transaction_timeout_ms": value.timeout_ms,
        "transaction_status": value.status,
        # Kafka writes null partitions for Empty/Complete* states only when none remain
        "transaction_partitions": [
            {"topic": topic, "partition_ids": ids} for topic, ids in by_topic.items()
        ],
        "last_update_timestamp_ms": value.last_update_ms,
        "start_timestamp_ms": value.start_ms,
    }
    return _RECORDS.encode("value", 0, body)


def decode(key: bytes, value: bytes | None) -> tuple[str, TxnLogValue | None] | None:
    """(transactional id, value or None for a tombstone); None for a key we do not know."""
    if key is None or len(key) < 2 or version_of(key) != 0:
        return None
    transactional_id = _RECORDS.decode("key", key)["transactional_id"]
    if value is None:
        return transactional_id, None
    v = _RECORDS.decode("value", value)
    partitions = [
        (p["topic"], index)
        for p in (v["transaction_partitions"] or [])
        for index in p["partition_ids"]
    ]
    return transactional_id, TxnLogValue(
        v["producer_id"],
        v["producer_epoch"],
        v["transaction_timeout_ms"],
        v["transaction_status"],
        partitions,
        v["last_update_timestamp_ms"],
        v["start_timestamp_ms"],
    )
