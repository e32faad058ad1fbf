"""One log segment: ``<base>.log`` with its ``.index``, ``.timeindex`` and ``.txnindex``.

Batches are stored exactly as stamped by the partition log. Reads return a FileSlice
(a byte range of the .log file) that the IO shell can send with ``sendfile``.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kbroker.wire.records import HEADER_SIZE, BatchHeader, CorruptBatch, crc_of, parse_header

from .config import LogConfig
from .errors import CorruptIndex
from .index import OffsetIndex, TimeIndex
from .timestamps import first_record_at_or_after, offset_of_timestamp
from .txn_index import TXN_INDEX_SUFFIX, TransactionIndex

log = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"

_INT32_MAX = 2**31 - 1
_SCAN_CHUNK = 16384  # header scans between index entries
_RECOVER_CHUNK = 4 << 20


def segment_file_name(base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    return f"{base_offset:020d}{suffix}"


class SegmentFile:
    """An open .log file descriptor, shared by the segment and the slices it hands out.

    A deleted segment drops its reference without closing, so a fetch response still
    being sent keeps reading the unlinked file; the descriptor closes with its last user.
    """

    __slots__ = ("path", "fd")

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: str, create: bool = False) -> SegmentFile:
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        return cls(path, os.open(path, flags, 0o644))

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


@dataclass(frozen=True, slots=True)
class FileSlice:
    """``size`` bytes of the file at ``path`` from ``position`` (whole batches first)."""

    path: str
    position: int
    size: int
    file: SegmentFile | None = None

    def fileno(self) -> int:
        """An open descriptor of the file, for ``os.sendfile``."""
        if self.file is None or self.file.closed:
            raise ValueError("file slice has no open file")
        return self.file.fd

    def read_bytes(self) -> bytes:
        if self.size == 0:
            return b""
        if self.file is not None and not self.file.closed:
            data = os.pread(self.file.fd, self.size, self.position)
        else:
            with open(self.path, "rb") as f:
                f.seek(self.position)
                data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path}: short read of {self.size} bytes at {self.position}")
        return data

    def __len__(self) -> int:
        return self.size


EMPTY_SLICE = FileSlice("", 0, 0)


class LogSegment:
    """A segment of a partition's log. Indexes and tail state load lazily."""

    def __init__(
        self,
        directory: str,
        base_offset: int,
        config: LogConfig,
        *,
        create: bool = False,
        now_ms: int = 0,
    ):
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        self.log_path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        self.index_path = os.path.join(directory, segment_file_name(base_offset, INDEX_SUFFIX))
        self.time_index_path = os.path.join(
            directory, segment_file_name(base_offset, TIME_INDEX_SUFFIX)
        )
        txn_index_path = os.path.join(directory, segment_file_name(base_offset, TXN_INDEX_SUFFIX))
        # True while the .txnindex lacks entries (found corrupt, or recovered after an
        # unclean shutdown) until PartitionLog rebuilds them by replaying producer state
        self.txn_index_stale = False
        self._control_batches: bool | None = None  # whether recover() met any (None: no scan)
        self.created_ms = now_ms
        self._file: SegmentFile | None = None
        self._offset_index: OffsetIndex | None = None
        self._time_index: TimeIndex | None = None
        self._next_offset: int | None = None
        self._max_timestamp = -1
        self._offset_of_max_timestamp = base_offset
        self._rolling_timestamp: int | None = None
        self._bytes_since_index = 0
        self._dirty = False
        # (position, header) of the batch appended last: a consumer at the tail asks for
        # it (or for what follows) on every fetch, and needs no index lookup or scan
        self._tail_batch: tuple[int, BatchHeader] | None = None
        if create:
            self._file = SegmentFile.open(self.log_path, create=True)
            self.size = 0
            self._offset_index = OffsetIndex(
                self.index_path, base_offset, config.segment_index_bytes
            )
            self._time_index = TimeIndex(
                self.time_index_path, base_offset, config.segment_index_bytes
            )
            for path in (self.index_path, self.time_index_path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            self.txn_index = TransactionIndex(txn_index_path, base_offset)
            self.txn_index.clear()
            self._next_offset = base_offset
        else:
            self.size = os.stat(self.log_path).st_size
            try:
                self.txn_index = TransactionIndex.load(txn_index_path, base_offset)
            except CorruptIndex as exc:
                log.warning("%s; rebuilding it from the log", exc)
                self.txn_index = TransactionIndex(txn_index_path, base_offset)
                self.drop_txn_index()

    def __repr__(self) -> str:
        return f"LogSegment({self.log_path!r}, size={self.size})"

    # ---- lazily loaded state -------------------------------------------------------

    def _fd(self) -> int:
        if self._file is None or self._file.closed:
            self._file = SegmentFile.open(self.log_path)
        return self._file.fd

    def _load_indexes(self) -> None:
        max_size = self.config.segment_index_bytes
        try:
            offset_index = OffsetIndex.load(self.index_path, self.base_offset, max_size, self.size)
            time_index = TimeIndex.load(self.time_index_path, self.base_offset, max_size)
        except (FileNotFoundError, CorruptIndex):
            self.recover()
            return
        self._offset_index, self._time_index = offset_index, time_index

    @property
    def offset_index(self) -> OffsetIndex:
        if self._offset_index is None:
            self._load_indexes()
        return self._offset_index  # type: ignore[return-value]

    @property
    def time_index(self) -> TimeIndex:
        if self._time_index is None:
            self._load_indexes()
        return self._time_index  # type: ignore[return-value]

    def _load_tail(self) -> None:
        """Find the next offset and max timestamp by scanning after the last entries."""
        offset_index, time_index = self.offset_index, self.time_index
        if self._next_offset is not None:  # recover() ran while loading the indexes
            return
        max_ts, offset_of_max = time_index.last_entry
        start = min(offset_index.lookup(offset_of_max)[1], offset_index.last_position)
        next_offset = self.base_offset
        try:
            for _, header, _ in self._scan(start):
                if header.max_timestamp > max_ts:
                    max_ts, offset_of_max = header.max_timestamp, header.last_offset
                next_offset = header.next_offset
        except CorruptBatch:
            self.recover()
            return
        self._next_offset = next_offset
        self._max_timestamp, self._offset_of_max_timestamp = max_ts, offset_of_max

    @property
    def next_offset(self) -> int:
        """The offset after the last batch (the base offset when empty)."""
        if self._next_offset is None:
            self._load_tail()
        return self._next_offset  # type: ignore[return-value]

    @property
    def max_timestamp(self) -> int:
        """Largest batch max timestamp in the segment (-1 if none)."""
        if self._next_offset is None:
            self._load_tail()
        return self._max_timestamp

    @property
    def offset_of_max_timestamp(self) -> int:
        """Last offset of the batch holding the max timestamp."""
        if self._next_offset is None:
            self._load_tail()
        return self._offset_of_max_timestamp

    @property
    def rolling_timestamp(self) -> int:
        """Max timestamp of the first batch (-1 if empty): segment.ms counts from it."""
        if self._rolling_timestamp is None:
            if self.size < HEADER_SIZE:
                return -1
            first = parse_header(os.pread(self._fd(), HEADER_SIZE, 0))
            self._rolling_timestamp = first.max_timestamp
        return self._rolling_timestamp

    @property
    def last_modified_ms(self) -> int:
        return int(os.stat(self.log_path).st_mtime * 1000)

    @property
    def largest_timestamp(self) -> int:
        """What retention.ms compares: max timestamp, else the file's mtime."""
        ts = self.max_timestamp
        return ts if ts >= 0 else self.last_modified_ms

    # ---- scanning ------------------------------------------------------------------

    def _scan(
        self, position: int = 0, with_data: bool = False, chunk: int = _SCAN_CHUNK
    ) -> Iterator[tuple[int, BatchHeader, memoryview | None]]:
        """(position, header, batch bytes or None) for each batch from ``position``.

        Raises CorruptBatch at a malformed or truncated batch (CRC is not checked here).
        """
        fd = self._fd()
        end = self.size
        buf = b""
        buf_start = position
        pos = position
        while pos < end:
            if end - pos < HEADER_SIZE:
                raise CorruptBatch("truncated record batch header")
            off = pos - buf_start
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(fd, chunk, pos)
                buf_start, off = pos, 0
            header = parse_header(buf, off)
            size = header.size
            if pos + size > end:
                raise CorruptBatch("truncated record batch")
            if with_data:
                if off + size > len(buf):
                    buf = os.pread(fd, max(chunk, size), pos)
                    buf_start, off = pos, 0
                    if len(buf) < size:
                        raise CorruptBatch("truncated record batch")
                yield pos, header, memoryview(buf)[off : off + size]
            else:
                yield pos, header, None
            pos += size

    def batches(self, position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from ``position`` to the end."""
        for pos, header, _ in self._scan(position):
            yield pos, header

    def batches_with_data(self, position: int = 0) -> Iterator[tuple[BatchHeader, bytes]]:
        """(header, batch bytes) of each batch from ``position`` to the end."""
        for _, header, data in self._scan(position, with_data=True, chunk=_RECOVER_CHUNK):
            yield header, bytes(data)  # type: ignore[arg-type]

    def read_at(self, position: int, size: int) -> bytes:
        return os.pread(self._fd(), size, position)

    def translate_offset(
        self, offset: int, start_position: int = 0
    ) -> tuple[int, BatchHeader] | None:
        """(position, header) of the first batch whose last offset >= ``offset``."""
        tail = self._tail_batch
        if tail is not None and offset >= tail[1].base_offset and start_position <= tail[0]:
            return tail if offset <= tail[1].last_offset else None
        position = max(self.offset_index.lookup(offset)[1], start_position)
        for pos, header, _ in self._scan(position):
            if header.last_offset >= offset:
                return pos, header
        return None

    # ---- the append path -----------------------------------------------------------

    def should_roll(
        self, messages_size: int, max_timestamp: int, max_offset: int, now: Callable[[], int]
    ) -> bool:
        """Kafka's roll rule for an append of ``messages_size`` bytes."""
        if self.size == 0:
            return False
        config = self.config
        if self.size > config.segment_bytes - messages_size:
            return True
        first = self.rolling_timestamp
        waited = max_timestamp - first if first >= 0 else now() - self.created_ms
        if waited > config.segment_ms:
            return True
        if self.offset_index.is_full or self.time_index.is_full:
            return True
        return max_offset - self.base_offset > _INT32_MAX

    def append(self, buf, headers: list[BatchHeader]) -> None:
        """Write stamped batches (``headers`` carry their final offsets and timestamps).

        The write is whole or nothing: a failed write is truncated away.
        """
        offset_index, time_index = self.offset_index, self.time_index
        if self._next_offset is None:
            self._load_tail()
        fd = self._fd()
        start = pos = self.size
        view = memoryview(buf)
        try:
            while view:
                written = os.pwrite(fd, view, pos)
                pos += written
                view = view[written:]
        except BaseException:
            os.ftruncate(fd, start)
            raise
        self._dirty = True
        if start == 0:
            self._rolling_timestamp = headers[0].max_timestamp
        interval = self.config.index_interval_bytes
        since = self._bytes_since_index
        max_ts, offset_of_max = self._max_timestamp, self._offset_of_max_timestamp
        pos = start
        for header in headers:
            if header.max_timestamp > max_ts:
                max_ts, offset_of_max = header.max_timestamp, header.last_offset
            if since > interval:
                offset_index.append(header.last_offset, pos)
                time_index.maybe_append(max_ts, offset_of_max)
                since = 0
            size = header.size
            since += size
            pos += size
        self._bytes_since_index = since
        self._max_timestamp, self._offset_of_max_timestamp = max_ts, offset_of_max
        self.size = pos
        self._next_offset = headers[-1].next_offset
        self._tail_batch = (pos - headers[-1].size, headers[-1])

    # ---- reads ---------------------------------------------------------------------

    def read(
        self,
        start_offset: int,
        max_bytes: int,
        max_position: int | None = None,
        min_one_batch: bool = True,
    ) -> FileSlice | None:
        """Bytes from the start of the batch holding ``start_offset``.

        None when no batch in this segment reaches ``start_offset``. At most
        ``max_bytes`` (but the first batch whole if ``min_one_batch``), never past
        ``max_position``; the last batch of the slice may be partial, as in Kafka.
        """
        found = self.translate_offset(start_offset)
        if found is None:
            return None
        position, header = found
        if max_position is None:
            max_position = self.size
        limit = max(max_bytes, header.size) if min_one_batch else max_bytes
        size = min(max_position - position, limit)
        if size < header.size:
            # not even the first batch fits: nothing, as Kafka sends (a consumer given only
            # part of one batch can make no progress and fails)
            return EMPTY_SLICE
        self._fd()
        return FileSlice(self.log_path, position, size, self._file)

    def find_offset_by_timestamp(
        self, timestamp: int, min_offset: int = 0
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``."""
        _, indexed_offset = self.time_index.lookup(timestamp)
        _, position = self.offset_index.lookup(max(indexed_offset, min_offset))
        for pos, header, _ in self._scan(position):
            if header.max_timestamp >= timestamp and header.last_offset >= min_offset:
                batch = self.read_at(pos, header.size)
                return first_record_at_or_after(batch, header, timestamp, min_offset)
        return None

    def max_timestamp_record(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying the segment's max timestamp."""
        ts = self.max_timestamp
        if ts < 0:
            return None
        found = self.translate_offset(self.offset_of_max_timestamp)
        if found is None:
            return None
        pos, header = found
        return offset_of_timestamp(self.read_at(pos, header.size), header, ts), ts

    # ---- recovery and truncation ---------------------------------------------------

    def recover(self) -> int:
        """Validate every batch (header, CRC, offsets), truncate a torn or corrupt tail,
        and rebuild both indexes. Returns the number of bytes truncated."""
        if self._offset_index is not None:
            self._offset_index.close()
        if self._time_index is not None:
            self._time_index.close()
        self.size = os.fstat(self._fd()).st_size
        self._tail_batch = None
        base = self.base_offset
        interval = self.config.index_interval_bytes
        idx_offsets, idx_positions = array("i"), array("i")
        ts_values, ts_offsets = array("q"), array("i")
        max_ts, offset_of_max = -1, base
        next_offset = base
        since = 0
        valid = 0
        first_ts: int | None = None
        control = False
        try:
            for pos, header, data in self._scan(0, with_data=True, chunk=_RECOVER_CHUNK):
                if crc_of(data, 0, header) != header.crc:
                    break
                if (
                    header.base_offset < next_offset
                    or header.last_offset_delta < 0
                    or header.last_offset - base > _INT32_MAX
                ):
                    break
                if first_ts is None:
                    first_ts = header.max_timestamp
                control = control or header.is_control
                if header.max_timestamp > max_ts:
                    max_ts, offset_of_max = header.max_timestamp, header.last_offset
                if since > interval:
                    idx_offsets.append(header.last_offset - base)
                    idx_positions.append(pos)
                    if not ts_values or max_ts > ts_values[-1]:
                        ts_values.append(max_ts)
                        ts_offsets.append(offset_of_max - base)
                    since = 0
                since += header.size
                next_offset = header.next_offset
                valid = pos + header.size
        except CorruptBatch:
            pass
        truncated = self.size - valid
        if truncated:
            os.ftruncate(self._fd(), valid)
            self.size = valid
            self._dirty = True
        max_size = self.config.segment_index_bytes
        self._offset_index = OffsetIndex(self.index_path, base, max_size)
        self._offset_index.replace(idx_offsets, idx_positions)
        self._time_index = TimeIndex(self.time_index_path, base, max_size)
        self._time_index.replace(ts_values, ts_offsets)
        self.txn_index.truncate_to(next_offset)  # aborts whose marker was cut off
        self._control_batches = control
        self._next_offset = next_offset
        self._max_timestamp, self._offset_of_max_timestamp = max_ts, offset_of_max
        self._rolling_timestamp = first_ts
        self._bytes_since_index = since
        return truncated

    def drop_txn_index(self) -> None:
        """Empty the ``.txnindex`` (found corrupt, or recovered after an unclean shutdown)
        for a rebuild from the log. That takes producer state, so the partition log does
        it (:attr:`txn_index_stale`); a segment :meth:`recover` found without any control
        batch has no abort to index and is complete at once."""
        self.txn_index.clear()
        self.txn_index_stale = self._control_batches is not False

    def truncate_to(self, offset: int) -> int:
        """Remove every batch holding offsets >= ``offset`` (the batch containing it too).

        Returns the number of bytes removed.
        """
        found = self.translate_offset(offset)
        if found is None:
            return 0
        position, _ = found
        removed = self.size - position
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        os.ftruncate(self._fd(), position)
        self.size = position
        self._tail_batch = None
        self._dirty = True
        self._bytes_since_index = 0
        self._next_offset = None
        self._rolling_timestamp = None
        self._load_tail()
        return removed

    # ---- lifecycle -----------------------------------------------------------------

    def flush(self) -> None:
        """fsync the log and its indexes."""
        if self._dirty and self._file is not None and not self._file.closed:
            os.fsync(self._file.fd)
            self._dirty = False
        if self._offset_index is not None:
            self._offset_index.flush()
        if self._time_index is not None:
            self._time_index.flush()
        self.txn_index.flush()

    def on_become_inactive(self) -> None:
        """A newer segment took over: record the final max timestamp, sync, close indexes."""
        if self._next_offset is not None and self._max_timestamp >= 0:
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
        self.flush()
        for index in (self._offset_index, self._time_index):
            if index is not None:
                index.close()

    def close(self) -> None:
        if self._next_offset is not None and self._max_timestamp >= 0 and self.size:
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
        for index in (self._offset_index, self._time_index):
            if index is not None:
                index.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def rename_to_deleted(self) -> list[str]:
        """Rename the files to ``<name>.deleted`` (Kafka's asynchronous delete); returns
        the new paths. Slices already handed out stay readable through their descriptor.
        """
        for index in (self._offset_index, self._time_index):
            if index is not None:
                index.close()
        self._offset_index = self._time_index = None
        renamed = []
        for path in (self.log_path, self.index_path, self.time_index_path):
            try:
                os.replace(path, path + DELETED_SUFFIX)
            except FileNotFoundError:
                continue
            renamed.append(path + DELETED_SUFFIX)
        if self.txn_index.rename(self.txn_index.path + DELETED_SUFFIX):
            renamed.append(self.txn_index.path)
        if self._file is not None:
            self._file.path = self.log_path + DELETED_SUFFIX
        self._file = None
        return renamed

    def delete(self) -> None:
        """Unlink the files; slices already handed out stay readable."""
        for index in (self._offset_index, self._time_index):
            if index is not None:
                index.close()
        self._file = None
        self.txn_index.clear()
        for path in (self.log_path, self.index_path, self.time_index_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
