"""Kafka's transaction index: ``<20-digit base offset>.txnindex``, one per segment.

It lists the aborted transactions whose ABORT marker is in the segment, so that a
read_committed fetch can tell the client which records to drop. Each entry is Kafka's
AbortedTxn, 34 bytes, big-endian::

    version int16 (0) | producerId int64 | firstOffset int64 | lastOffset int64 |
    lastStableOffset int64

``lastOffset`` is the marker's offset, and entries are in its order. ``lastStableOffset``
is the LSO just after the abort: every transaction still open then started at or above
it, so an entry whose LSO reaches the end of a fetched range proves that no later entry,
in this segment or a later one, overlaps the range (Kafka's ``collectAbortedTxns``).

The file exists while the segment has entries (no file: no aborted transaction in the
segment). Its entries are also held in memory as the file's bytes: 34 bytes per aborted
transaction still in the log, no Python object per entry, and a fetch bisects memory
instead of reading files.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left
from typing import NamedTuple

from .errors import CorruptIndex

TXN_INDEX_SUFFIX = ".txnindex"
VERSION = 0
ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = ENTRY.size  # 34
_LAST_OFFSET = struct.Struct(">q")
_LAST_OFFSET_AT = 18  # version (2) + producer id (8) + first offset (8)


class AbortedTxn(NamedTuple):
    """An aborted transaction of a partition (one ``.txnindex`` entry)."""

    producer_id: int
    first_offset: int
    last_offset: int  # the offset of the ABORT marker
    last_stable_offset: int

    def encode(self) -> bytes:
        return ENTRY.pack(VERSION, *self)


class TransactionIndex:
    """The aborted transactions of the segment at ``base_offset``, and their file."""

    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._data = bytearray()  # the file's content
        self._dirty = False  # appended since the last fsync

    @classmethod
    def load(cls, path: str, base_offset: int) -> TransactionIndex:
        """The index in ``path`` (empty if there is no file); CorruptIndex, naming the
        file, if it is not a whole number of valid entries in order."""
        index = cls(path, base_offset)
        try:
            with open(path, "rb") as f:
                index._data = bytearray(f.read())
        except FileNotFoundError:
            return index
        index.sanity_check()
        return index

    def sanity_check(self) -> None:
        size = len(self._data)
        if size % ENTRY_SIZE:
            raise CorruptIndex(f"{self.path}: size {size} is not a multiple of {ENTRY_SIZE}")
        previous = self.base_offset - 1
        for version, _, first, last, _ in ENTRY.iter_unpack(self._data):
            if version != VERSION:
                raise CorruptIndex(f"{self.path}: entry version {version}, expected {VERSION}")
            if last <= previous or first > last:
                raise CorruptIndex(
                    f"{self.path}: entry for offsets {first}..{last} out of order "
                    f"(segment base {self.base_offset}, previous entry ends at {previous})"
                )
            previous = last

    def __len__(self) -> int:
        return len(self._data) // ENTRY_SIZE

    def _last_offset_of(self, i: int) -> int:
        return _LAST_OFFSET.unpack_from(self._data, i * ENTRY_SIZE + _LAST_OFFSET_AT)[0]

    @property
    def last_offset(self) -> int | None:
        """The marker offset of the last entry (None: no entry)."""
        return self._last_offset_of(len(self) - 1) if self._data else None

    def entries(self) -> list[AbortedTxn]:
        return [AbortedTxn(*entry[1:]) for entry in ENTRY.iter_unpack(self._data)]

    def to_bytes(self) -> bytes:
        """The file's content (the cleaner copies it into a cleaned segment)."""
        return bytes(self._data)

    def append(self, txn: AbortedTxn) -> None:
        """Add an entry after the others (ValueError unless its marker is past theirs)."""
        last = self.last_offset
        if txn.last_offset < self.base_offset or (last is not None and txn.last_offset <= last):
            raise ValueError(
                f"aborted transaction ending at {txn.last_offset} cannot follow "
                f"{last} in {self.path} (base {self.base_offset})"
            )
        data = txn.encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._data += data
        self._dirty = True

    def collect(self, start: int, end: int, into: list[AbortedTxn]) -> bool:
        """Add to ``into`` the entries overlapping offsets [start, end) (marker at or past
        ``start``, first offset below ``end``); True when no later entry can overlap."""
        data = self._data
        if not data:
            return False
        count = len(self)
        from_entry = bisect_left(range(count), start, key=self._last_offset_of)
        for i in range(from_entry, count):
            _, producer_id, first, last, stable = ENTRY.unpack_from(data, i * ENTRY_SIZE)
            if first < end:
                into.append(AbortedTxn(producer_id, first, last, stable))
            if stable >= end:
                return True
        return False

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or past ``offset`` (log truncation)."""
        keep = bisect_left(range(len(self)), offset, key=self._last_offset_of)
        if not keep:
            self.clear()
        elif keep < len(self):
            del self._data[keep * ENTRY_SIZE :]
            os.truncate(self.path, len(self._data))

    def clear(self) -> None:
        """Drop every entry and the file (the segment is new, deleted, or has its entries
        rebuilt from the log)."""
        self._data.clear()
        self._dirty = False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def flush(self) -> None:
        """fsync the entries appended since the last flush."""
        if not self._dirty:
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._dirty = False

    def rename(self, path: str) -> bool:
        """Move the file to ``path`` (with its segment); False if there is no file."""
        old, self.path = self.path, path
        try:
            os.replace(old, path)
        except FileNotFoundError:
            return False
        return True
