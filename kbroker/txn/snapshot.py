"""Producer-state snapshots: Kafka's ``<20-digit offset>.snapshot`` files.

A snapshot holds a partition's idempotent-producer state as of an offset (the log end
when it was written), so start-up replays only the batches after it instead of the
whole log. The format is Kafka's (ProducerStateManager, snapshot version 1)::

    version   int16   = 1
    crc       uint32  CRC32C of everything after this field
    entries   int32 count, then per producer:
        ProducerId int64, Epoch int16, LastSequence int32, LastOffset int64,
        OffsetDelta int32, Timestamp int64, CoordinatorEpoch int32,
        CurrentTxnFirstOffset int64

An entry describes one batch of the producer (its sequence range is
``LastSequence - OffsetDelta .. LastSequence``). Kafka writes one entry per producer, for
its last batch, so after Kafka restarts from a snapshot only a retry of that batch is
recognised as a duplicate. kbroker writes one entry per retained batch (up to 5), oldest
first: the file stays readable by Kafka (its loader keeps the last entry of a producer
id, i.e. the same one it would have written) and a restart loses none of them.

Transactions need nothing more: a snapshot holds each producer's open transaction
(``CurrentTxnFirstOffset``) and the coordinator epoch of its last marker, and the
aborted transactions are in the segments' ``.txnindex`` files (:mod:`kbroker.log.txn_index`),
not in snapshots, as in Kafka. So a snapshot is used whatever the partition's
transactional history; only a log rebuilding the txn index of some segments (after an
unclean shutdown, or a corrupt index) asks for one at or before the first of them.

Written when a segment rolls (at the new segment's base offset) and at a clean
shutdown (at the log end); those below the log start, those above the log end after a
truncation, and all but the newest :data:`KEEP_SNAPSHOTS` are deleted.
"""

from __future__ import annotations

import logging
import os
import struct

from crc32c import crc32c

from kbroker.log.snapshot_files import delete_above, delete_snapshot, list_snapshots, snapshot_path
from kbroker.txn.producer_state import BatchMetadata, ProducerEntry, ProducerStateTable
from kbroker.wire.records import NO_SEQUENCE

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
KEEP_SNAPSHOTS = 3

_HEADER = struct.Struct(">hI")  # version, crc
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_START = 6  # version (2) + crc (4)


class SnapshotEntry:
    """One producer's line of a snapshot file."""

    __slots__ = (
        "producer_id",
        "epoch",
        "last_sequence",
        "last_offset",
        "offset_delta",
        "timestamp",
        "coordinator_epoch",
        "current_txn_first_offset",
    )

    def __init__(
        self,
        producer_id: int,
        epoch: int,
        last_sequence: int,
        last_offset: int,
        offset_delta: int,
        timestamp: int,
        coordinator_epoch: int,
        current_txn_first_offset: int,
    ) -> None:
        self.producer_id = producer_id
        self.epoch = epoch
        self.last_sequence = last_sequence
        self.last_offset = last_offset
        self.offset_delta = offset_delta
        self.timestamp = timestamp
        self.coordinator_epoch = coordinator_epoch
        self.current_txn_first_offset = current_txn_first_offset

    def astuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other) -> bool:
        return isinstance(other, SnapshotEntry) and self.astuple() == other.astuple()

    def __repr__(self) -> str:
        return f"SnapshotEntry{self.astuple()}"


class CorruptSnapshot(ValueError):
    pass


def encode(entries: list[SnapshotEntry]) -> bytes:
    body = bytearray(_COUNT.pack(len(entries)))
    for entry in entries:
        body += _ENTRY.pack(*entry.astuple())
    return _HEADER.pack(SNAPSHOT_VERSION, crc32c(body)) + bytes(body)


def decode(data: bytes) -> list[SnapshotEntry]:
    if len(data) < _CRC_START + _COUNT.size:
        raise CorruptSnapshot("snapshot is too short")
    version, crc = _HEADER.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshot(f"snapshot version {version} is not {SNAPSHOT_VERSION}")
    body = memoryview(data)[_CRC_START:]
    computed = crc32c(body)
    if computed != crc:
        raise CorruptSnapshot(f"snapshot crc {crc:#x} does not match {computed:#x}")
    (count,) = _COUNT.unpack_from(body)
    if count < 0 or len(body) != _COUNT.size + count * _ENTRY.size:
        raise CorruptSnapshot(f"snapshot of {len(body)} bytes cannot hold {count} entries")
    return [
        SnapshotEntry(*_ENTRY.unpack_from(body, _COUNT.size + i * _ENTRY.size))
        for i in range(count)
    ]


# -- the table <-> entries ------------------------------------------------------------


def entries_of(table: ProducerStateTable) -> list[SnapshotEntry]:
    """One entry per retained batch of each producer, oldest first (one for a producer
    without batches, e.g. after a marker bumped its epoch)."""
    entries = []
    for producer_id, entry in table.producers.items():
        txn_first = table.ongoing.get(producer_id, -1)
        for batch in entry.batches or [None]:
            entries.append(
                SnapshotEntry(
                    producer_id,
                    entry.epoch,
                    batch.last_sequence if batch else NO_SEQUENCE,
                    batch.last_offset if batch else -1,
                    batch.last_offset - batch.first_offset if batch else 0,
                    batch.timestamp if batch else -1,
                    entry.coordinator_epoch,
                    txn_first,
                )
            )
    return entries


def restore(table: ProducerStateTable, entries: list[SnapshotEntry]) -> None:
    table.producers.clear()
    table.ongoing.clear()
    for e in entries:
        entry = table.producers.get(e.producer_id)
        if entry is None or entry.epoch != e.epoch:
            entry = ProducerEntry(e.epoch, coordinator_epoch=e.coordinator_epoch)
        if e.last_sequence != NO_SEQUENCE:
            first_sequence = e.last_sequence - e.offset_delta
            if first_sequence < 0:  # the batch wrapped past MAX_SEQUENCE
                first_sequence += 0x80000000
            entry.batches.append(
                BatchMetadata(
                    first_sequence,
                    e.last_sequence,
                    e.last_offset - e.offset_delta,
                    e.last_offset,
                    e.timestamp,
                )
            )
        table.producers[e.producer_id] = entry
        if e.current_txn_first_offset >= 0:
            table.ongoing[e.producer_id] = e.current_txn_first_offset


# -- files ---------------------------------------------------------------------------


def write(directory: str, offset: int, table: ProducerStateTable, log_start: int = 0) -> None:
    """Write the snapshot at ``offset`` (durably: temp file, fsync, rename), then drop
    snapshots below ``log_start`` and all but the newest :data:`KEEP_SNAPSHOTS`."""
    path = snapshot_path(directory, offset)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(encode(entries_of(table)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    offsets = list_snapshots(directory)
    for i, snap in enumerate(offsets):
        if snap < log_start or i < len(offsets) - KEEP_SNAPSHOTS:
            delete_snapshot(directory, snap)


def read(directory: str, offset: int) -> list[SnapshotEntry]:
    with open(snapshot_path(directory, offset), "rb") as f:
        return decode(f.read())


def load(table: ProducerStateTable, plog, at_most: int | None = None) -> int | None:
    """Restore ``table`` from the newest usable snapshot of ``plog`` (one between the
    log start and the log end, or ``at_most`` if lower); the offset to replay the log
    from, or None when there is none and the whole log must be scanned."""
    start, end = plog.log_start_offset, plog.log_end_offset
    delete_above(plog.directory, end)  # e.g. recovery cut the log short of them
    limit = end if at_most is None else min(end, at_most)
    for offset in reversed(list_snapshots(plog.directory)):
        if offset < start or offset > limit:
            continue
        try:
            entries = read(plog.directory, offset)
        except (OSError, CorruptSnapshot) as exc:
            log.warning(
                "ignoring producer snapshot %s: %s", snapshot_path(plog.directory, offset), exc
            )
            continue
        restore(table, entries)
        return offset
    return None
