"""One topic-partition's log: offset assignment, segments, reads, recovery, truncation.

The directory is ``<log.dir>/<topic>-<partition>`` and holds Kafka's files:
``<20-digit base offset>.log/.index/.timeindex/.txnindex`` and ``leader-epoch-checkpoint``.
Plain synchronous file IO; nothing here waits on anything.

Aborted transactions are indexed per segment (``.txnindex``, :mod:`kbroker.log.txn_index`)
by whoever appends their ABORT marker (:meth:`PartitionLog.append_aborted`), and read
back for read_committed fetches by :meth:`PartitionLog.aborted_transactions`.
"""

from __future__ import annotations

import os
import shutil
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import NamedTuple

from kbroker.wire.records import HEADER_SIZE, BatchHeader, parse_header, split_batches, stamp

from .config import LOG_APPEND_TIME, LogConfig
from .epoch import LeaderEpochCache
from .errors import OffsetOutOfRange, RecordBatchTooLarge
from .segment import (
    EMPTY_SLICE,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    FileSlice,
    LogSegment,
)
from .snapshot_files import delete_above as delete_snapshots_above
from .snapshot_files import delete_below as delete_snapshots_below
from .txn_index import TXN_INDEX_SUFFIX, AbortedTxn

# Re-indexes the aborted transactions of a log's segments from an offset on by replaying
# producer state: the txn layer's work, handed down by whoever builds the logs.
TxnIndexRebuilder = Callable[["PartitionLog", int], None]

# ListOffsets special timestamps
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3

_STALE_SUFFIXES = (".deleted", ".cleaned", ".swap", ".tmp")
SWAP_SUFFIX = ".swap"
_INDEX_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)
_SEGMENT_SUFFIXES = (LOG_SUFFIX, *_INDEX_SUFFIXES)


def complete_swaps(directory: str, names: list[str]) -> None:
    """Finish cleaner swaps a crash interrupted (see ``kbroker.log.cleaner``).

    A ``<base>.log.swap`` file is a cleaned segment that was committed: it replaces
    every segment whose base offset lies in its offset range. Those (if still there)
    are removed, the stale indexes of ``base`` too (they are rebuilt on first use),
    the cleaned ``<base>.txnindex.swap`` (if any) and the swap file take their places.
    """
    for name in sorted(names):
        if not name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
            continue
        swap = os.path.join(directory, name)
        base = int(name.split(".", 1)[0])
        end = _end_offset_of(swap, base)
        for other in names:
            stem, dot, suffix = other.partition(".")
            if (
                dot
                and "." + suffix in _SEGMENT_SUFFIXES
                and len(stem) == 20
                and stem.isdigit()
                and base <= int(stem) < max(end, base + 1)
            ):
                os.unlink(os.path.join(directory, other))
        txn_swap = os.path.join(directory, name.split(".", 1)[0] + TXN_INDEX_SUFFIX + SWAP_SUFFIX)
        if os.path.exists(txn_swap):
            os.replace(txn_swap, txn_swap[: -len(SWAP_SUFFIX)])
        os.replace(swap, swap[: -len(SWAP_SUFFIX)])


def _end_offset_of(path: str, base: int) -> int:
    """The offset after the last whole batch of a segment file (``base`` if none)."""
    end = base
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        header = parse_header(data, pos)
        if pos + header.size > len(data):
            break
        end = header.next_offset
        pos += header.size
    return end


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``<topic>-<partition>`` split at the last '-'; None if it is not one."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit() or "." in partition:
        return None
    return topic, int(partition)


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless LogAppendTime was stamped


class PartitionLog:
    """A partition's log in ``directory`` (created if missing).

    ``recover``: validate segments from the one holding ``recovery_point`` onwards
    (unclean shutdown). ``clock`` returns milliseconds (tests pass a fake one).
    """

    def __init__(
        self,
        directory: str,
        config: LogConfig | None = None,
        *,
        recover: bool = False,
        recovery_point: int | None = None,
        log_start_offset: int | None = None,
        high_watermark: int | None = None,
        clock: Callable[[], int] | None = None,
        rebuild_txn_index: TxnIndexRebuilder | None = None,
    ):
        self.directory = directory
        self.config = config or LogConfig()
        self.clock = clock or _now_ms
        parsed = parse_partition_dir(os.path.basename(os.path.normpath(directory)))
        if parsed is None:
            raise ValueError(f"{directory!r} is not named <topic>-<partition>")
        self.topic, self.partition = parsed
        os.makedirs(directory, exist_ok=True)
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._closed = False
        self._load(recover, recovery_point or 0, log_start_offset)
        active = self._segments[-1]
        self._active = active
        self._leo = active.next_offset
        self._log_start = min(max(log_start_offset or 0, self._bases[0]), self._leo)
        if recover:
            self._recovery_point = self._leo
        else:
            rp = self._leo if recovery_point is None else recovery_point
            self._recovery_point = min(rp, self._leo)
        self._hw = self._log_start
        self.high_watermark = self._log_start if high_watermark is None else high_watermark
        self.leader_epoch_cache = LeaderEpochCache(directory)
        self.leader_epoch_cache.truncate_from_end(self._leo)
        self.leader_epoch_cache.truncate_from_start(self._log_start)
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock()
        self._limit_cache: tuple[int, int, int] | None = None  # (offset, seg base, position)
        self._retired: list[tuple[int, list[str]]] = []  # (delete at ms, .deleted paths)
        # called with the log end when a segment rolls and at close: the owner writes its
        # producer-state snapshot there (kbroker.txn.snapshot)
        self.on_snapshot: Callable[[int], None] | None = None
        stale = [segment.base_offset for segment in self._segments if segment.txn_index_stale]
        if stale:
            self._rebuild_txn_indexes(stale[0], rebuild_txn_index)

    # ---- loading -------------------------------------------------------------------

    def _load(self, recover: bool, recovery_point: int, log_start_offset: int | None) -> None:
        directory = self.directory
        names = os.listdir(directory)
        if any(name.endswith(LOG_SUFFIX + SWAP_SUFFIX) for name in names):
            complete_swaps(directory, names)
            names = os.listdir(directory)
        bases = []
        for name in names:
            if name.endswith(_STALE_SUFFIXES):
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    os.unlink(path)
                continue
            stem, dot, suffix = name.partition(".")
            if dot and "." + suffix == LOG_SUFFIX and len(stem) == 20 and stem.isdigit():
                bases.append(int(stem))
        logs = {f"{b:020d}" for b in bases}
        for name in names:
            stem, dot, suffix = name.partition(".")
            if "." + suffix in _INDEX_SUFFIXES and stem not in logs:
                os.unlink(os.path.join(directory, name))  # an index without its log
        now = self.clock()
        for base in sorted(bases):
            self._add_segment(LogSegment(directory, base, self.config, now_ms=now))
        if recover and self._segments:
            first = max(0, bisect_right(self._bases, recovery_point) - 1)
            expected = None
            for i in range(first, len(self._segments)):
                segment = self._segments[i]
                truncated = segment.recover()
                segment.drop_txn_index()  # rebuilt below, as Kafka's recovery does
                segment.flush()
                broken = expected is not None and segment.base_offset < expected
                if truncated or broken:
                    # everything after a torn write is suspect: drop later segments
                    doomed = self._segments[i + 1 :] if not broken else self._segments[i:]
                    for seg in doomed:
                        seg.delete()
                    del self._segments[len(self._segments) - len(doomed) :]
                    del self._bases[len(self._bases) - len(doomed) :]
                    break
                expected = segment.next_offset
        if not self._segments:
            self._add_segment(self._new_segment(log_start_offset or 0))

    def _rebuild_txn_indexes(self, from_offset: int, rebuild: TxnIndexRebuilder | None) -> None:
        """Re-index the aborted transactions of the segments from ``from_offset`` on (their
        ``.txnindex`` was found corrupt, or they were recovered after an unclean shutdown).

        An entry needs its transaction's first offset and the LSO at the abort: producer
        state, replayed from a snapshot at or before ``from_offset`` (or the log start), as
        Kafka's LogLoader does. It happens here, while loading, so that no log is ever
        served or closed with a half-built index.
        """
        if rebuild is None:
            raise ValueError(
                f"{self.directory}: its .txnindex files need rebuilding from offset "
                f"{from_offset}, and no rebuild_txn_index was given"
            )
        rebuild(self, from_offset)
        for segment in self._segments:
            segment.txn_index.flush()
            segment.txn_index_stale = False

    def _add_segment(self, segment: LogSegment) -> None:
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    def _new_segment(self, base_offset: int) -> LogSegment:
        return LogSegment(
            self.directory, base_offset, self.config, create=True, now_ms=self.clock()
        )

    # ---- offsets -------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._hw

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        self._hw = min(max(offset, self._log_start), self._leo)

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._active

    @property
    def size(self) -> int:
        """Bytes in all segments."""
        return sum(segment.size for segment in self._segments)

    @property
    def latest_epoch(self) -> int:
        return self.leader_epoch_cache.latest_epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetsForLeaderEpoch answer: (epoch, end offset), (-1, -1) if unknown."""
        return self.leader_epoch_cache.end_offset_for(epoch, self._leo)

    # ---- appends -------------------------------------------------------------------

    def append(
        self,
        batch_bytes,
        log_append_time: int | None = None,
        leader_epoch: int | None = None,
        *,
        headers: list[BatchHeader] | None = None,
    ) -> AppendResult:
        """Assign offsets from the log end, stamp them, and write the batches.

        ``batch_bytes`` is a produce payload of one or more v2 batches; pass ``headers``
        from ``split_batches`` if the caller already validated it (else it is validated
        here, raising CorruptBatch). A ``bytearray`` or writable memoryview is stamped in
        place; ``bytes`` are copied once. With ``message.timestamp.type=LogAppendTime`` and no
        ``log_append_time`` given, the current time is used.
        """
        if headers is None:
            headers = split_batches(batch_bytes)
        writable = isinstance(batch_bytes, bytearray) or (
            isinstance(batch_bytes, memoryview) and not batch_bytes.readonly
        )
        buf = batch_bytes if writable else bytearray(batch_bytes)
        size = len(buf)
        if size > self.config.segment_bytes:
            raise RecordBatchTooLarge(
                f"{size} bytes exceed segment.bytes={self.config.segment_bytes}"
            )
        if log_append_time is None and self.config.message_timestamp_type == LOG_APPEND_TIME:
            log_append_time = self.clock()
        base_offset = offset = self._leo
        pos = 0
        stamped = []
        max_timestamp = -1
        for header in headers:
            stamp(buf, pos, offset, log_append_time, leader_epoch)
            header = header._replace(
                base_offset=offset,
                max_timestamp=(
                    header.max_timestamp if log_append_time is None else log_append_time
                ),
            )
            if header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
            stamped.append(header)
            offset = header.next_offset
            pos += header.size
        self._write(buf, stamped, max_timestamp)
        if leader_epoch is not None and leader_epoch > self.leader_epoch_cache.latest_epoch:
            self.leader_epoch_cache.assign(leader_epoch, base_offset)
        self._after_append(offset - base_offset)
        return AppendResult(
            base_offset, offset - 1, -1 if log_append_time is None else log_append_time
        )

    def append_as_follower(
        self, batch_bytes, headers: list[BatchHeader] | None = None
    ) -> AppendResult:
        """Append batches that already carry their offsets (replication from a leader)."""
        if headers is None:
            headers = split_batches(batch_bytes)
        if headers[0].base_offset < self._leo:
            raise ValueError(
                f"follower append at {headers[0].base_offset} is below log end {self._leo}"
            )
        size = len(batch_bytes)
        if size > self.config.segment_bytes:
            raise RecordBatchTooLarge(
                f"{size} bytes exceed segment.bytes={self.config.segment_bytes}"
            )
        max_timestamp = max(h.max_timestamp for h in headers)
        if self._active.size == 0 and headers[0].base_offset != self._active.base_offset:
            # empty active segment at the wrong base: start the segment where data starts
            self._replace_empty_active(headers[0].base_offset)
        appended_records = headers[-1].next_offset - self._leo
        self._write(batch_bytes, headers, max_timestamp)
        cache = self.leader_epoch_cache
        for header in headers:
            if header.partition_leader_epoch > cache.latest_epoch:
                cache.assign(header.partition_leader_epoch, header.base_offset)
        self._after_append(appended_records)
        return AppendResult(headers[0].base_offset, headers[-1].last_offset, -1)

    def _write(self, buf, headers: list[BatchHeader], max_timestamp: int) -> None:
        segment = self._active
        if segment.should_roll(len(buf), max_timestamp, headers[-1].last_offset, self.clock):
            segment = self.roll(headers[0].base_offset)
        segment.append(buf, headers)
        self._leo = headers[-1].next_offset

    def _after_append(self, messages: int) -> None:
        config = self.config
        self._unflushed_messages += messages
        if config.flush_messages is not None and self._unflushed_messages >= config.flush_messages:
            self.flush()
        elif config.flush_ms is not None and self.clock() - self._last_flush_ms >= config.flush_ms:
            self.flush()

    def _replace_empty_active(self, base_offset: int) -> None:
        old = self._segments.pop()
        self._bases.pop()
        old.delete()
        self._active = self._new_segment(base_offset)
        self._add_segment(self._active)

    def roll(self, base_offset: int | None = None) -> LogSegment:
        """Start a new active segment at the log end (no-op if the active one is empty).

        The old segment is synced to disk, so the recovery point moves to its end.
        """
        active = self._active
        if base_offset is None:
            base_offset = self._leo
        if active.size == 0:
            if active.base_offset != base_offset:
                self._replace_empty_active(base_offset)
            return self._active
        active.on_become_inactive()
        self._recovery_point = self._leo
        self._unflushed_messages = 0
        self._active = self._new_segment(base_offset)
        self._add_segment(self._active)
        if self.on_snapshot is not None:
            self.on_snapshot(self._leo)
        return self._active

    # ---- reads ---------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        max_offset: int | None = None,
        min_one_batch: bool = True,
    ) -> FileSlice:
        """Batches from the one holding ``offset``, up to ``max_bytes``, below ``max_offset``.

        ``max_offset`` defaults to the high watermark (pass ``log_end_offset`` for a
        follower). Raises OffsetOutOfRange if ``offset`` is before the log start or
        past the log end. An empty slice means nothing to return yet.
        """
        if offset < self._log_start or offset > self._leo:
            raise OffsetOutOfRange(offset, self._log_start, self._leo)
        limit = self._hw if max_offset is None else min(max_offset, self._leo)
        if offset >= limit:
            return EMPTY_SLICE
        segments, bases = self._segments, self._bases
        i = max(0, bisect_right(bases, offset) - 1)
        while i < len(segments):
            segment = segments[i]
            if segment.base_offset >= limit:
                break
            end = bases[i + 1] if i + 1 < len(segments) else self._leo
            max_position = segment.size if limit >= end else self._position_of(segment, limit)
            result = segment.read(offset, max_bytes, max_position, min_one_batch)
            if result is not None:
                return result
            i += 1
        return EMPTY_SLICE

    def _position_of(self, segment: LogSegment, offset: int) -> int:
        """Start position in ``segment`` of the batch holding ``offset`` (its size if none)."""
        cached = self._limit_cache
        if cached is not None and cached[0] == offset and cached[1] == segment.base_offset:
            return cached[2]
        found = segment.translate_offset(offset)
        position = segment.size if found is None else found[0]
        self._limit_cache = (offset, segment.base_offset, position)
        return position

    def offset_for_timestamp(
        self, timestamp: int, max_offset: int | None = None
    ) -> tuple[int, int] | None:
        """ListOffsets: (offset, timestamp) of the first record with timestamp >= ``timestamp``.

        Handles the special timestamps -1 (latest: the log end, or ``max_offset``),
        -2 (earliest: the log start) and -3 (the record with the max timestamp).
        None when no record qualifies (or the answer is not below ``max_offset``).
        """
        if timestamp == LATEST_TIMESTAMP:
            end = self._leo if max_offset is None else min(max_offset, self._leo)
            return end, -1
        if timestamp == EARLIEST_TIMESTAMP:
            return self._log_start, -1
        found = None
        if timestamp == MAX_TIMESTAMP:
            best = None
            for segment in self._segments:
                if segment.size and (best is None or segment.max_timestamp > best.max_timestamp):
                    best = segment
            if best is not None:
                found = best.max_timestamp_record()
        else:
            for segment in self._segments:
                if segment.size and segment.max_timestamp >= timestamp:
                    found = segment.find_offset_by_timestamp(timestamp, self._log_start)
                    if found is not None:
                        break
        if found is not None and max_offset is not None and found[0] >= max_offset:
            return None
        return found

    def iter_batch_headers(self, start_offset: int = 0) -> Iterator[BatchHeader]:
        """Headers of the batches holding offsets >= ``start_offset``, in order."""
        for segment in self._segments_from(start_offset):
            start = segment.offset_index.lookup(start_offset)[1]
            for _, header in segment.batches(start):
                if header.last_offset >= start_offset:
                    yield header

    def iter_batches(self, start_offset: int = 0) -> Iterator[tuple[BatchHeader, bytes]]:
        """(header, batch bytes) of the batches holding offsets >= ``start_offset``."""
        for segment in self._segments_from(start_offset):
            start = segment.offset_index.lookup(start_offset)[1]
            for header, data in segment.batches_with_data(start):
                if header.last_offset >= start_offset:
                    yield header, data

    # ---- aborted transactions --------------------------------------------------------

    def append_aborted(self, txn: AbortedTxn) -> bool:
        """Index an aborted transaction in the segment holding its ABORT marker (Kafka's
        ``updateTxnIndex``). False, and nothing written, when that index already lists it
        or a later abort: a replay over markers that were indexed before (start-up,
        truncation) leaves the files as they are."""
        index = self._segments[max(0, bisect_right(self._bases, txn.last_offset) - 1)].txn_index
        last = index.last_offset
        if last is not None and last >= txn.last_offset:
            return False
        index.append(txn)
        return True

    def aborted_transactions(self, start: int, end: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping offsets [start, end), for a read_committed
        fetch: the segments' indexes from the one holding ``start`` on, until an entry
        shows that no later one can overlap (Kafka's ``collectAbortedTransactions``)."""
        found: list[AbortedTxn] = []
        segments = self._segments  # not sliced: a consumer far behind walks many of them
        for i in range(max(0, bisect_right(self._bases, start) - 1), len(segments)):
            if segments[i].txn_index.collect(start, end, found):
                break
        return found

    def _segments_from(self, offset: int) -> list[LogSegment]:
        i = max(0, bisect_right(self._bases, offset) - 1)
        return self._segments[i:]

    # ---- truncation and retention --------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Remove everything at or after ``offset`` (replication). True if anything went."""
        if offset >= self._leo:
            return False
        if offset < self._bases[0]:
            self.truncate_fully_and_start_at(offset)
            return True
        while len(self._segments) > 1 and self._bases[-1] > offset:
            self._segments.pop().delete()
            self._bases.pop()
        self._active = self._segments[-1]
        self._active.truncate_to(offset)
        self._leo = self._active.next_offset
        self._after_truncation()
        return True

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop every segment; the log restarts empty at ``offset``."""
        for segment in self._segments:
            segment.delete()
        self._segments, self._bases = [], []
        self._active = self._new_segment(offset)
        self._add_segment(self._active)
        self._leo = self._log_start = offset
        self.leader_epoch_cache.clear()
        delete_snapshots_above(self.directory, -1)  # they describe the old log
        self._after_truncation()

    def _after_truncation(self) -> None:
        self._log_start = min(self._log_start, self._leo)
        self._hw = min(max(self._hw, self._log_start), self._leo)
        self._recovery_point = min(self._recovery_point, self._leo)
        self._limit_cache = None
        self.leader_epoch_cache.truncate_from_end(self._leo)
        delete_snapshots_above(self.directory, self._leo)

    def advance_log_start_offset(self, offset: int) -> bool:
        """DeleteRecords: records before ``offset`` become invisible (bounded by the HW)."""
        offset = min(offset, self._hw)
        if offset <= self._log_start:
            return False
        self._log_start = offset
        self.leader_epoch_cache.truncate_from_start(offset)
        self._delete_segments_below(offset)
        return True

    def _delete_segments_below(self, offset: int) -> int:
        """Retire whole segments whose every offset is below ``offset``."""
        doomed = []
        while len(self._segments) > 1 and self._bases[1] <= offset:
            doomed.append(self._segments.pop(0))
            self._bases.pop(0)
        self.retire_segments(doomed)
        if doomed:
            delete_snapshots_below(self.directory, offset)  # producer state below the start
        return len(doomed)

    def retire_segments(self, segments: list[LogSegment]) -> None:
        """Rename segments (already out of the segment list) to ``.deleted``; their files
        are removed ``file.delete.delay.ms`` later by :meth:`delete_retired`, so a fetch
        still reading them does not fail."""
        if not segments:
            return
        self._limit_cache = None
        self.schedule_delete([path for s in segments for path in s.rename_to_deleted()])

    def schedule_delete(self, paths: list[str]) -> None:
        """Remove these (``.deleted``) files ``file.delete.delay.ms`` from now."""
        self._retired.append((self.clock() + self.config.file_delete_delay_ms, paths))

    def delete_retired(self, now_ms: int | None = None) -> int:
        """Remove the ``.deleted`` files whose delay has passed; returns how many."""
        if not self._retired:
            return 0
        now = self.clock() if now_ms is None else now_ms
        removed = 0
        while self._retired and self._retired[0][0] <= now:
            _, paths = self._retired.pop(0)
            for path in paths:
                try:
                    os.unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    @property
    def closed(self) -> bool:
        return self._closed

    def has_segments(self, segments: list[LogSegment]) -> bool:
        """Whether these are (still) consecutive closed segments of this log."""
        if self._closed or not segments or segments[0] not in self._segments:
            return False
        i = self._segments.index(segments[0])
        return self._segments[i : i + len(segments)] == segments and (
            segments[-1] is not self._active
        )

    def replace_segments(self, old: list[LogSegment], new: LogSegment | None) -> None:
        """Put ``new`` (a cleaned segment, or nothing) where the consecutive closed
        segments ``old`` were. The cleaner has already renamed the files: ``old``'s to
        ``.deleted`` (removed after ``file.delete.delay.ms``) and ``new``'s into place."""
        if not self.has_segments(old):
            raise ValueError("segments to replace are not consecutive closed segments")
        i = self._segments.index(old[0])
        replacement = [] if new is None else [new]
        self._segments[i : i + len(old)] = replacement
        self._bases[i : i + len(old)] = [s.base_offset for s in replacement]
        self._limit_cache = None

    def update_config(self, config: LogConfig) -> None:
        """Apply changed topic settings live (AlterConfigs): retention, rolling, ..."""
        self.config = config
        for segment in self._segments:
            segment.config = config

    def delete_old_segments(self, now_ms: int | None = None) -> int:
        """Apply retention.ms and retention.bytes (``cleanup.policy`` with delete); returns
        the number of segments retired (renamed ``.deleted``).

        Only segments wholly below the high watermark go; the active segment goes too
        (after a roll) when it has expired.
        """
        now = self.clock() if now_ms is None else now_ms
        config = self.config
        count = 0
        segments = self._segments
        if not config.delete_enabled:
            return 0
        if config.retention_ms >= 0:
            while count < len(segments) and segments[count].size:
                segment = segments[count]
                end = self._bases[count + 1] if count + 1 < len(segments) else self._leo
                if end > self._hw or now - segment.largest_timestamp <= config.retention_ms:
                    break
                count += 1
        if config.retention_bytes >= 0:
            excess = self.size - config.retention_bytes
            i = 0
            while i < len(segments) and excess - segments[i].size >= 0:
                end = self._bases[i + 1] if i + 1 < len(segments) else self._leo
                if end > self._hw or not segments[i].size:
                    break
                excess -= segments[i].size
                i += 1
            count = max(count, i)
        if not count:
            return 0
        if count == len(segments):
            self.roll()
        new_start = self._bases[count]
        deleted = self._delete_segments_below(new_start)
        if new_start > self._log_start:
            self._log_start = new_start
            self.leader_epoch_cache.truncate_from_start(new_start)
        return deleted

    # ---- durability and lifecycle --------------------------------------------------

    def flush(self) -> None:
        """fsync what was appended since the last flush; moves the recovery point."""
        if self._recovery_point < self._leo:
            for segment in self._segments_from(self._recovery_point):
                segment.flush()
        self._recovery_point = self._leo
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock()

    def flush_if_due(self, now_ms: int | None = None) -> bool:
        """Apply ``flush.ms`` (call periodically, as Kafka's flush scheduler does)."""
        flush_ms = self.config.flush_ms
        if flush_ms is None or self._recovery_point >= self._leo:
            return False
        now = self.clock() if now_ms is None else now_ms
        if now - self._last_flush_ms < flush_ms:
            return False
        self.flush()
        return True

    def close(self) -> None:
        """Flush and close every file."""
        if self._closed:
            return
        self.flush()
        if self.on_snapshot is not None:
            self.on_snapshot(self._leo)
        for segment in self._segments:
            segment.close()
        self._closed = True

    def delete(self) -> None:
        """Remove the partition's directory and everything in it."""
        for segment in self._segments:
            segment.delete()
        self._segments, self._bases = [], []
        self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)
