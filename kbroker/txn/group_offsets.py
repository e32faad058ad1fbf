"""Offsets committed inside a transaction (TxnOffsetCommit), pending until it ends.

As in Kafka's GroupMetadataManager, the offsets are written to ``__consumer_offsets`` at
once, in a transactional batch of the producer, but kept aside per producer id: they
become the group's committed offsets when the COMMIT marker is written to that
partition, and are dropped on ABORT. At start-up the partition is replayed the same
way: transactional records are held until their producer's marker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from kbroker.group import records as group_records
from kbroker.wire.record import decode_records, parse_end_txn_marker
from kbroker.wire.records import BatchHeader

log = logging.getLogger("kbroker.txn")

TopicPartition = tuple[str, int]


class PendingTxnOffsets:
    """Per producer id, per group: the offsets of its open transaction."""

    def __init__(self) -> None:
        self.pending: dict[int, dict[str, dict[TopicPartition, object]]] = {}

    def add(self, producer_id: int, group_id: str, offsets: dict[TopicPartition, object]) -> None:
        self.pending.setdefault(producer_id, {}).setdefault(group_id, {}).update(offsets)

    def has_pending(self, group_id: str, tp: TopicPartition) -> bool:
        """Whether an open transaction commits an offset of ``tp`` (UNSTABLE_OFFSET_COMMIT)."""
        return any(tp in groups.get(group_id, ()) for groups in self.pending.values())

    def drop(self, owned) -> None:
        """Forget the pending offsets of the groups ``owned`` selects (unloaded groups)."""
        for producer_id in list(self.pending):
            groups = self.pending[producer_id]
            for group_id in [g for g in groups if owned(g)]:
                del groups[group_id]
            if not groups:
                del self.pending[producer_id]

    def complete(
        self, producer_id: int, commit: bool, in_partition=lambda group_id: True
    ) -> dict[str, dict[TopicPartition, object]]:
        """End the producer's transaction for the groups ``in_partition`` accepts (those of
        the offsets partition the marker went to): the offsets to apply (none on abort)."""
        groups = self.pending.get(producer_id, {})
        done = {
            group_id: groups.pop(group_id) for group_id in list(groups) if in_partition(group_id)
        }
        if not groups:
            self.pending.pop(producer_id, None)
        return done if commit else {}


def replay(
    batches: Iterable[tuple[BatchHeader, bytes]], pending: PendingTxnOffsets, name: str = ""
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The (key, value) records of an offsets partition in the order they took effect.

    Records of committed transactions come at their COMMIT marker, those of aborted ones
    never; the offsets of transactions still open at the end go into ``pending``.
    """
    held: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for header, data in batches:
        try:
            _, batch_records = decode_records(data)
        except Exception as exc:
            log.warning("skipping unreadable batch of %s: %s", name, exc)
            continue
        if header.is_control:
            try:
                marker = parse_end_txn_marker(batch_records[0].key, batch_records[0].value)
            except Exception:
                continue
            done = held.pop(header.producer_id, [])
            if marker.commit:
                yield from done
            continue
        pairs = [(record.key, record.value) for record in batch_records]
        if header.is_transactional:
            held.setdefault(header.producer_id, []).extend(pairs)
        else:
            yield from pairs
    for producer_id, pairs in held.items():
        for key, value in pairs:
            try:
                record = group_records.decode(key, value)
            except Exception:
                continue
            if isinstance(record, group_records.OffsetRecord) and record.value is not None:
                pending.add(
                    producer_id, record.group, {(record.topic, record.partition): record.value}
                )
