"""Sparse offset and time indexes in Kafka's on-disk format.

``.index`` entries are 8 bytes: relative offset (int32) and file position (int32).
``.timeindex`` entries are 12 bytes: timestamp (int64) and relative offset (int32).
All big-endian. Entries are kept in memory (``array``) and appended to the file; the
file is never preallocated, so its size is always a whole number of entries.
"""

from __future__ import annotations

import os
import sys
from array import array
from bisect import bisect_left, bisect_right

from .errors import CorruptIndex

_SWAP = sys.byteorder == "little"
_WRITE_BLOCK = 4096  # bytes of new entries gathered before one write


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_file(path: str, data: bytes, sync: bool = False) -> None:
    """Write a whole index file; ``sync`` makes it durable (the cleaner's copy for a
    cleaned segment, which replaces the originals)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _strictly_increasing(values: array) -> bool:
    as_list = values.tolist()
    return as_list == sorted(set(as_list))


def _non_decreasing(values: array) -> bool:
    as_list = values.tolist()
    return as_list == sorted(as_list)


class _IndexFile:
    """The append/truncate file handling both indexes share."""

    ENTRY_SIZE = 0

    def __init__(self, path: str, base_offset: int, max_index_size: int):
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_size // self.ENTRY_SIZE)
        self._fd: int | None = None
        # New entries reach the file in blocks (and at flush/close), not one write each:
        # a file missing its last entries is still a valid sparse index after a crash.
        self._written = 0  # entries in the file
        self._pending = bytearray()  # entries after those, not yet written

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def _append_bytes(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= _WRITE_BLOCK:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            os.pwrite(self._file(), self._pending, self._written * self.ENTRY_SIZE)
            self._written += len(self._pending) // self.ENTRY_SIZE
            self._pending.clear()

    def _truncate_file(self, entries: int) -> None:
        if entries >= self._written:
            del self._pending[(entries - self._written) * self.ENTRY_SIZE :]
        else:
            self._pending.clear()
            os.ftruncate(self._file(), entries * self.ENTRY_SIZE)
            self._written = entries

    def _rewritten(self, entries: int) -> None:
        """The whole file now holds ``entries`` entries (after load or replace)."""
        self._written = entries
        self._pending.clear()

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def flush(self) -> None:
        self._write_pending()
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        self._write_pending()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def delete(self) -> None:
        self._pending.clear()
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class OffsetIndex(_IndexFile):
    """Maps offsets to file positions, one entry every ``index.interval.bytes``."""

    ENTRY_SIZE = 8

    def __init__(self, path: str, base_offset: int, max_index_size: int = 10485760):
        super().__init__(path, base_offset, max_index_size)
        self._offsets = array("i")  # relative offsets
        self._positions = array("i")

    @classmethod
    def load(
        cls, path: str, base_offset: int, max_index_size: int = 10485760, log_size: int = -1
    ) -> OffsetIndex:
        """Read an existing index file; raise CorruptIndex (or FileNotFoundError)."""
        index = cls(path, base_offset, max_index_size)
        data = _read_file(path)
        if len(data) % cls.ENTRY_SIZE:
            raise CorruptIndex(f"{path}: size {len(data)} is not a multiple of 8")
        flat = array("i")
        flat.frombytes(data)
        if _SWAP:
            flat.byteswap()
        index._offsets = flat[0::2]
        index._positions = flat[1::2]
        index._rewritten(len(index._offsets))
        index.sanity_check(log_size)
        return index

    def sanity_check(self, log_size: int = -1) -> None:
        offsets, positions = self._offsets, self._positions
        if not offsets:
            return
        if offsets[0] < 0 or positions[0] < 0:
            raise CorruptIndex(f"{self.path}: negative first entry")
        if not _strictly_increasing(offsets):
            raise CorruptIndex(f"{self.path}: offsets are not increasing")
        if not _non_decreasing(positions):
            raise CorruptIndex(f"{self.path}: positions are not increasing")
        if log_size >= 0 and positions[-1] >= log_size:
            raise CorruptIndex(f"{self.path}: position {positions[-1]} past the log's end")

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def last_offset(self) -> int:
        """Absolute offset of the last entry (the base offset when empty)."""
        return self.base_offset + (self._offsets[-1] if self._offsets else 0)

    @property
    def last_position(self) -> int:
        return self._positions[-1] if self._positions else 0

    def entries(self) -> list[tuple[int, int]]:
        """(absolute offset, position) pairs, for tests and tools."""
        base = self.base_offset
        return [(base + o, p) for o, p in zip(self._offsets, self._positions, strict=True)]

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self._offsets and relative <= self._offsets[-1]:
            raise ValueError(f"index offset {offset} is not above {self.last_offset}")
        self._offsets.append(relative)
        self._positions.append(position)
        self._append_bytes(relative.to_bytes(4, "big") + position.to_bytes(4, "big"))

    def lookup(self, offset: int) -> tuple[int, int]:
        """The largest entry with offset <= ``offset``: (offset, position).

        (base offset, 0) when no entry qualifies.
        """
        i = bisect_right(self._offsets, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._offsets[i], self._positions[i]

    def truncate_to(self, offset: int) -> None:
        """Drop every entry with offset >= ``offset``."""
        n = bisect_left(self._offsets, offset - self.base_offset)
        if n < len(self._offsets):
            del self._offsets[n:]
            del self._positions[n:]
            self._truncate_file(n)

    def replace(self, offsets: array, positions: array) -> None:
        """Install rebuilt entries (relative offsets) and rewrite the file."""
        self._pending.clear()  # the whole file is rewritten below
        self.close()
        self._offsets, self._positions = offsets, positions
        flat = array("i", bytes(8 * len(offsets)))
        flat[0::2] = offsets
        flat[1::2] = positions
        if _SWAP:
            flat.byteswap()
        write_file(self.path, flat.tobytes())
        self._rewritten(len(offsets))


class TimeIndex(_IndexFile):
    """Maps timestamps to offsets: an entry whenever the max timestamp grows."""

    ENTRY_SIZE = 12

    def __init__(self, path: str, base_offset: int, max_index_size: int = 10485760):
        super().__init__(path, base_offset, max_index_size)
        self._timestamps = array("q")
        self._offsets = array("i")  # relative offsets

    @classmethod
    def load(cls, path: str, base_offset: int, max_index_size: int = 10485760) -> TimeIndex:
        index = cls(path, base_offset, max_index_size)
        data = _read_file(path)
        if len(data) % cls.ENTRY_SIZE:
            raise CorruptIndex(f"{path}: size {len(data)} is not a multiple of 12")
        n = len(data) // 12
        # split the 12-byte records into an 8-byte column and a 4-byte column
        ts_bytes = bytearray(8 * n)
        off_bytes = bytearray(4 * n)
        for k in range(8):
            ts_bytes[k::8] = data[k::12]
        for k in range(4):
            off_bytes[k::4] = data[8 + k :: 12]
        index._timestamps.frombytes(bytes(ts_bytes))
        index._offsets.frombytes(bytes(off_bytes))
        if _SWAP:
            index._timestamps.byteswap()
            index._offsets.byteswap()
        index._rewritten(n)
        index.sanity_check()
        return index

    def sanity_check(self) -> None:
        if not self._offsets:
            return
        if self._offsets[0] < 0:
            raise CorruptIndex(f"{self.path}: negative relative offset")
        if not _strictly_increasing(self._timestamps):
            raise CorruptIndex(f"{self.path}: timestamps are not increasing")
        if not _non_decreasing(self._offsets):
            raise CorruptIndex(f"{self.path}: offsets are not increasing")

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def last_entry(self) -> tuple[int, int]:
        """(timestamp, absolute offset) of the last entry; (-1, base offset) if empty."""
        if not self._offsets:
            return -1, self.base_offset
        return self._timestamps[-1], self.base_offset + self._offsets[-1]

    def entries(self) -> list[tuple[int, int]]:
        base = self.base_offset
        return [(t, base + o) for t, o in zip(self._timestamps, self._offsets, strict=True)]

    def maybe_append(self, timestamp: int, offset: int) -> bool:
        """Append (timestamp, offset) if the timestamp is above the last entry's."""
        if self._timestamps and timestamp <= self._timestamps[-1]:
            return False
        relative = offset - self.base_offset
        if self._offsets and relative < self._offsets[-1]:
            return False
        self._timestamps.append(timestamp)
        self._offsets.append(relative)
        self._append_bytes(timestamp.to_bytes(8, "big", signed=True) + relative.to_bytes(4, "big"))
        return True

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """The largest entry with timestamp <= ``timestamp``: (timestamp, offset).

        (-1, base offset) when no entry qualifies: scan from the segment's start.
        """
        i = bisect_right(self._timestamps, timestamp) - 1
        if i < 0:
            return -1, self.base_offset
        return self._timestamps[i], self.base_offset + self._offsets[i]

    def truncate_to(self, offset: int) -> None:
        """Drop every entry with offset >= ``offset``."""
        n = bisect_left(self._offsets, offset - self.base_offset)
        if n < len(self._offsets):
            del self._timestamps[n:]
            del self._offsets[n:]
            self._truncate_file(n)

    def replace(self, timestamps: array, offsets: array) -> None:
        self._pending.clear()  # the whole file is rewritten below
        self.close()
        self._timestamps, self._offsets = timestamps, offsets
        ts = array("q", timestamps)
        rel = array("i", offsets)
        if _SWAP:
            ts.byteswap()
            rel.byteswap()
        n = len(rel)
        out = bytearray(12 * n)
        ts_view, rel_view = ts.tobytes(), rel.tobytes()
        for k in range(8):
            out[k::12] = ts_view[k::8]
        for k in range(4):
            out[8 + k :: 12] = rel_view[k::4]
        write_file(self.path, bytes(out))
        self._rewritten(n)
