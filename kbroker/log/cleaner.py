"""The log cleaner: compaction of ``cleanup.policy=compact`` (and ``compact,delete``) logs.

One cleaning of a log runs in three steps, so the slow part never blocks produce and
fetch:

1. :meth:`LogCleaner.plan` (owner thread, cheap): pick the dirtiest log whose dirty
   ratio reaches ``min.cleanable.dirty.ratio`` (or whose oldest dirty record waited
   ``max.compaction.lag.ms``), and its cleanable range: whole closed segments below the
   high watermark, stopping at the first dirty segment younger than
   ``min.compaction.lag.ms``.
2. :meth:`LogCleaner.prepare` (a worker thread): read the range's files, build the
   map key -> latest offset, and write the retained records, offsets unchanged, to
   ``<base>.log.cleaned`` files (one per group of source segments that fits in
   ``segment.bytes``) with their indexes. The log object is not touched.
3. :meth:`LogCleaner.commit` (owner thread, a few renames): the crash-safe swap.

The cleaned segment's ``.txnindex`` holds the entries of all its sources: control
batches are always kept, so every ABORT marker they index is still there (Kafka's
cleaner, too, indexes each aborted transaction whose marker it keeps). Unlike the other
indexes it cannot be rebuilt from the segment alone, so it is part of the commit.

The swap of a group of source segments for the cleaned segment ``<base>``:

a. ``<base>.txnindex.cleaned`` (if any) -> ``<base>.txnindex.swap``, then
   ``<base>.log.cleaned`` -> ``<base>.log.swap``, directory synced: the commit point.
b. the source segments' files -> ``*.deleted`` (removed ``file.delete.delay.ms`` later,
   so fetches in flight still read them).
c. ``<base>.index.cleaned``/``.timeindex.cleaned`` -> ``.index``/``.timeindex``,
   ``<base>.txnindex.swap`` -> ``.txnindex``, then ``<base>.log.swap`` -> ``<base>.log``.

Recovery (``PartitionLog`` loading): ``.cleaned`` files, and a ``.txnindex.swap`` without
its ``.log.swap``, are dropped (the cleaning is lost, the sources are intact); a
``.log.swap`` file is a committed cleaning, so the segments in its offset range are
removed and it is renamed into place with its ``.txnindex.swap``. At every point
the log is the old one or the new one, and any mix is still a valid log, since the
cleaner only ever removes records that a later record with the same key supersedes.

Which records stay: the latest record of every key (by offset), records without a
key, control batches, and tombstones (null value) until ``delete.retention.ms`` has
passed since their segment's largest timestamp. A batch keeps its base offset, last
offset delta, producer id/epoch/base sequence and codec; a producer's last batch is
kept even when emptied, so idempotence state survives (as Kafka does). The first dirty
offset of each log is kept in the log dir's ``cleaner-offset-checkpoint``.
"""

from __future__ import annotations

import logging
import os
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from crc32c import crc32c

from kbroker.wire.compression import compress
from kbroker.wire.record import Record, decode_records, encode_record
from kbroker.wire.records import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchHeader,
    parse_header,
)

from .checkpoint import CorruptCheckpoint, read_offsets, write_offsets
from .index import OffsetIndex, TimeIndex, write_file
from .partition_log import SWAP_SUFFIX, PartitionLog, _now_ms
from .segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, segment_file_name
from .txn_index import TXN_INDEX_SUFFIX

log = logging.getLogger(__name__)

CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
CLEANED_SUFFIX = ".cleaned"

_INT32_MAX = 2**31 - 1
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_POS = 17
_ATTRIBUTES_POS = 21

TopicPartition = tuple[str, int]


class CleaningAborted(Exception):
    """The cleaner stopped half-way (shutdown); the partial output was removed."""


@dataclass
class CleanPlan:
    """What one cleaning of one log covers (decided on the owner thread)."""

    tp: TopicPartition
    log: PartitionLog
    groups: list[list[LogSegment]]  # consecutive source segments, one output each
    sources: list[tuple[int, int, str, int]]  # (base, size, path, largest ts) snapshot
    aborted: dict[int, bytes]  # base -> the source's .txnindex entries (snapshot)
    first_dirty: int
    end_offset: int  # the first offset not cleaned (a segment base)
    dirty_ratio: float
    delete_horizon_ms: int  # tombstones in segments with largest timestamp below go
    index_interval_bytes: int
    segment_index_bytes: int


@dataclass
class CleanedGroup:
    base: int
    sources: list[LogSegment]
    size: int  # bytes of the cleaned segment; 0: nothing kept, no file


@dataclass
class CleanResult:
    plan: CleanPlan
    groups: list[CleanedGroup] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_kept: int = 0
    committed: bool = False


class LogCleaner:
    """Compacts the compacted logs of a LogManager.

    ``clock`` returns milliseconds (tests pass a fake one). Tests and scripts call
    :meth:`clean_once`; the broker runs :meth:`prepare` in a worker thread.
    """

    def __init__(self, manager, clock: Callable[[], int] | None = None) -> None:
        self.manager = manager
        self.clock = clock or _now_ms
        self.first_dirty: dict[TopicPartition, int] = {}
        for log_dir in manager.log_dirs:
            try:
                self.first_dirty.update(read_offsets(os.path.join(log_dir, CLEANER_CHECKPOINT)))
            except CorruptCheckpoint as exc:
                log.warning("ignoring corrupt cleaner checkpoint: %s", exc)
        self.busy: set[TopicPartition] = set()
        self.stopping = False  # set at shutdown: a cleaning in progress gives up

    # ---- 1. planning (owner thread) --------------------------------------------------

    def plan(self, now_ms: int | None = None) -> CleanPlan | None:
        """The dirtiest log due for cleaning, or None."""
        now = self.clock() if now_ms is None else now_ms
        best: CleanPlan | None = None
        forced = False
        logs = self.manager.logs()
        for tp in [tp for tp in self.first_dirty if tp not in logs]:
            del self.first_dirty[tp]  # deleted topics
        for tp, plog in sorted(logs.items()):
            if tp in self.busy or not plog.config.compact:
                continue
            plan, must = self._plan_log(tp, plog, now)
            if plan is None:
                continue
            if best is None or (must, plan.dirty_ratio) > (forced, best.dirty_ratio):
                best, forced = plan, must
        return best

    def _plan_log(
        self, tp: TopicPartition, plog: PartitionLog, now: int
    ) -> tuple[CleanPlan | None, bool]:
        config = plog.config
        segments = plog.segments[:-1]  # never the active segment
        limit = plog.high_watermark
        first_dirty = max(self.first_dirty.get(tp, 0), plog.log_start_offset)
        if first_dirty > plog.log_end_offset:  # the log was truncated or recreated
            first_dirty = plog.log_start_offset
        cleanable: list[LogSegment] = []
        ends: list[int] = []
        for i, segment in enumerate(segments):
            end = (
                segments[i + 1].base_offset
                if i + 1 < len(segments)
                else plog.active_segment.base_offset
            )
            if end > limit:
                break
            if (
                config.min_compaction_lag_ms > 0
                and end > first_dirty
                and now - segment.largest_timestamp < config.min_compaction_lag_ms
            ):
                break  # too young to compact, and so is everything after it
            cleanable.append(segment)
            ends.append(end)
        if not cleanable or ends[-1] <= first_dirty:
            return None, False
        clean_bytes = sum(s.size for s, e in zip(cleanable, ends, strict=True) if e <= first_dirty)
        total = sum(s.size for s in cleanable)
        ratio = (total - clean_bytes) / total if total else 0.0
        must = any(
            0 <= s.rolling_timestamp <= now - config.max_compaction_lag_ms
            for s, e in zip(cleanable, ends, strict=True)
            if e > first_dirty
        )
        if ratio < config.min_cleanable_dirty_ratio and not must:
            return None, False
        groups = _group(cleanable, ends, config.segment_bytes, config.segment_index_bytes)
        plan = CleanPlan(
            tp=tp,
            log=plog,
            groups=groups,
            sources=[(s.base_offset, s.size, s.log_path, s.largest_timestamp) for s in cleanable],
            aborted={s.base_offset: s.txn_index.to_bytes() for s in cleanable},
            first_dirty=first_dirty,
            end_offset=ends[-1],
            dirty_ratio=ratio,
            delete_horizon_ms=now - config.delete_retention_ms,
            index_interval_bytes=config.index_interval_bytes,
            segment_index_bytes=config.segment_index_bytes,
        )
        return plan, must

    # ---- 2. cleaning (worker thread: reads files, writes .cleaned files) ---------------

    def prepare(self, plan: CleanPlan) -> CleanResult:
        """Write the cleaned segments of ``plan`` next to the log; touches no log state."""
        result = CleanResult(plan)
        latest, last_batch_of = self._offset_map(plan, result)
        info = {base: (path, size, ts) for base, size, path, ts in plan.sources}
        directory = plan.log.directory
        try:
            for group in plan.groups:
                base = group[0].base_offset
                writer = _SegmentWriter(
                    directory, base, plan.index_interval_bytes, plan.segment_index_bytes
                )
                for segment in group:
                    if self.stopping:
                        raise CleaningAborted("the broker is shutting down")
                    path, size, largest_ts = info[segment.base_offset]
                    drop_tombstones = largest_ts < plan.delete_horizon_ms
                    for header, data in _read_batches(path, size):
                        kept = _filter_batch(
                            header, data, latest, last_batch_of, drop_tombstones, result
                        )
                        if kept is not None:
                            writer.write(kept)
                result.bytes_written += writer.size
                writer.finish(b"".join(plan.aborted[s.base_offset] for s in group))
                result.groups.append(CleanedGroup(base, group, writer.size))
        except BaseException:
            self.discard(result)
            raise
        return result

    def _offset_map(
        self, plan: CleanPlan, result: CleanResult
    ) -> tuple[dict[bytes, int], dict[int, int]]:
        """key -> offset of its latest record; producer id -> base offset of its last batch."""
        latest: dict[bytes, int] = {}
        last_batch_of: dict[int, int] = {}
        for _base, size, path, _ts in plan.sources:
            result.bytes_read += size
            for header, data in _read_batches(path, size):
                if header.producer_id >= 0:
                    last_batch_of[header.producer_id] = header.base_offset
                if header.is_control:
                    continue
                _, records = decode_records(data, verify_crc=False)
                result.records_read += len(records)
                base = header.base_offset
                for record in records:
                    if record.key is not None:
                        latest[record.key] = base + record.offset_delta
        return latest, last_batch_of

    def discard(self, result: CleanResult) -> None:
        """Remove the ``.cleaned`` files of a cleaning that will not be committed."""
        directory = result.plan.log.directory
        for group in result.plan.groups:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                path = os.path.join(
                    directory, segment_file_name(group[0].base_offset, suffix) + CLEANED_SUFFIX
                )
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    # ---- 3. the swap (owner thread) -----------------------------------------------------

    def commit(self, result: CleanResult) -> bool:
        """Swap the cleaned segments into the log; False (and nothing changed) if the
        log moved on meanwhile (deleted, truncated, retention removed a source)."""
        for _ in self.swap_steps(result):
            pass
        return result.committed

    def swap_steps(self, result: CleanResult) -> Iterator[str]:
        """The swap, one crash-safe step per iteration (tests stop it half-way)."""
        plan = result.plan
        plog = plan.log
        current = self.manager.get(*plan.tp)
        if current is not plog or not all(plog.has_segments(g.sources) for g in result.groups):
            self.discard(result)
            return
        directory = plog.directory
        for group in result.groups:
            if group.size:
                log_path = os.path.join(directory, segment_file_name(group.base, LOG_SUFFIX))
                txn_path = os.path.join(directory, segment_file_name(group.base, TXN_INDEX_SUFFIX))
                _replace_if_there(txn_path + CLEANED_SUFFIX, txn_path + SWAP_SUFFIX)
                os.replace(log_path + CLEANED_SUFFIX, log_path + SWAP_SUFFIX)
                _sync_dir(directory)
                yield "swap file committed"
            retired = [path for s in group.sources for path in s.rename_to_deleted()]
            yield "sources renamed .deleted"
            new = None
            if group.size:
                for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                    path = os.path.join(directory, segment_file_name(group.base, suffix))
                    os.replace(path + CLEANED_SUFFIX, path)
                _replace_if_there(txn_path + SWAP_SUFFIX, txn_path)
                os.replace(log_path + SWAP_SUFFIX, log_path)
                _sync_dir(directory)
                new = LogSegment(directory, group.base, plog.config)
            plog.replace_segments(group.sources, new)
            plog.schedule_delete(retired)
            yield "segment replaced"
        self.first_dirty[plan.tp] = plan.end_offset
        result.committed = True
        self.checkpoint()

    def checkpoint(self) -> None:
        """Write ``cleaner-offset-checkpoint`` in every log dir."""
        dir_of = getattr(self.manager, "_dir_of", {})
        live = self.manager.logs()
        for log_dir in self.manager.log_dirs:
            offsets = {
                tp: offset
                for tp, offset in self.first_dirty.items()
                if tp in live and dir_of.get(tp, log_dir) == log_dir
            }
            write_offsets(os.path.join(log_dir, CLEANER_CHECKPOINT), offsets)

    # ---- all three at once --------------------------------------------------------------

    def clean_once(self, now_ms: int | None = None) -> CleanResult | None:
        """Plan, clean and swap the dirtiest log; None if no log needs cleaning."""
        plan = self.plan(now_ms)
        if plan is None:
            return None
        result = self.prepare(plan)
        self.commit(result)
        return result


# ---- helpers --------------------------------------------------------------------------


def _group(
    segments: list[LogSegment], ends: list[int], max_bytes: int, max_index_bytes: int
) -> list[list[LogSegment]]:
    """Consecutive segments whose sum fits one segment (size, offsets, index), as Kafka."""
    groups: list[list[LogSegment]] = []
    current: list[LogSegment] = []
    size = 0
    for segment, end in zip(segments, ends, strict=True):
        if current and (
            size + segment.size > max_bytes
            or end - 1 - current[0].base_offset > _INT32_MAX
            or (size + segment.size) // 8 > max_index_bytes  # entries cannot overflow
        ):
            groups.append(current)
            current, size = [], 0
        current.append(segment)
        size += segment.size
    if current:
        groups.append(current)
    return groups


def _read_batches(path: str, size: int) -> Iterator[tuple[BatchHeader, bytes]]:
    """(header, bytes) of each whole batch in the first ``size`` bytes of a segment file."""
    with open(path, "rb") as f:
        data = f.read(size)
    pos = 0
    view = memoryview(data)
    while pos + HEADER_SIZE <= len(data):
        header = parse_header(data, pos)
        end = pos + header.size
        if end > len(data):
            break
        yield header, view[pos:end]
        pos = end


def _filter_batch(
    header: BatchHeader,
    data,
    latest: dict[bytes, int],
    last_batch_of: dict[int, int],
    drop_tombstones: bool,
    result: CleanResult,
):
    """The batch with only the records to keep (the same bytes when all stay), or None."""
    if header.is_control:
        return data
    _, records = decode_records(data, verify_crc=False)
    base = header.base_offset
    kept = [
        r
        for r in records
        if r.key is None
        or (
            latest.get(r.key) == base + r.offset_delta and not (r.value is None and drop_tombstones)
        )
    ]
    result.records_kept += len(kept)
    if len(kept) == len(records):
        return data
    if not kept and not (header.producer_id >= 0 and last_batch_of.get(header.producer_id) == base):
        return None
    return _rebuild(header, kept)


def _rebuild(header: BatchHeader, records: list[Record]) -> bytes:
    """A batch of ``records`` keeping the header's offsets, producer fields and codec."""
    body = bytearray()
    for r in records:
        encode_record(body, r.offset_delta, r.timestamp_delta, r.key, r.value, r.headers)
    attributes = header.attributes
    codec = attributes & COMPRESSION_MASK
    if records and codec:
        body = compress(codec, body)
    elif not records:
        attributes &= ~COMPRESSION_MASK  # an empty batch carries no compressed stream
    if attributes & TIMESTAMP_TYPE_LOG_APPEND or not records:
        max_timestamp = header.max_timestamp
    else:
        max_timestamp = header.base_timestamp + max(r.timestamp_delta for r in records)
    out = bytearray(HEADER_SIZE)
    out += body
    _HEADER.pack_into(
        out,
        0,
        header.base_offset,
        len(out) - LOG_OVERHEAD,
        header.partition_leader_epoch,
        header.magic,
        0,
        attributes,
        header.last_offset_delta,
        header.base_timestamp,
        max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        len(records),
    )
    struct.pack_into(">I", out, _CRC_POS, crc32c(memoryview(out)[_ATTRIBUTES_POS:]))
    return bytes(out)


class _SegmentWriter:
    """Writes ``<base>.log.cleaned`` and its ``.index.cleaned``/``.timeindex.cleaned``
    (and ``.txnindex.cleaned`` when the sources indexed aborted transactions)."""

    def __init__(self, directory: str, base: int, interval: int, index_bytes: int) -> None:
        self.base = base
        self.path = os.path.join(directory, segment_file_name(base, LOG_SUFFIX)) + CLEANED_SUFFIX
        self.index_path = (
            os.path.join(directory, segment_file_name(base, INDEX_SUFFIX)) + CLEANED_SUFFIX
        )
        self.time_index_path = (
            os.path.join(directory, segment_file_name(base, TIME_INDEX_SUFFIX)) + CLEANED_SUFFIX
        )
        self.txn_index_path = (
            os.path.join(directory, segment_file_name(base, TXN_INDEX_SUFFIX)) + CLEANED_SUFFIX
        )
        self.interval = interval
        self.index_bytes = index_bytes
        self.file = open(self.path, "wb")  # closed in finish()
        self.size = 0
        self.since = 0
        self.offsets, self.positions = array("i"), array("i")
        self.timestamps, self.ts_offsets = array("q"), array("i")
        self.max_ts, self.offset_of_max = -1, base

    def write(self, batch) -> None:
        header = parse_header(batch, 0)
        if header.max_timestamp > self.max_ts:
            self.max_ts, self.offset_of_max = header.max_timestamp, header.last_offset
        if self.since > self.interval:
            self.offsets.append(header.last_offset - self.base)
            self.positions.append(self.size)
            if not self.timestamps or self.max_ts > self.timestamps[-1]:
                self.timestamps.append(self.max_ts)
                self.ts_offsets.append(self.offset_of_max - self.base)
            self.since = 0
        self.file.write(batch)
        self.size += header.size
        self.since += header.size

    def finish(self, aborted: bytes) -> None:
        """Sync the log file and write the indexes, ``aborted`` being the txn index's
        entries (no files at all if nothing was kept)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if not self.size:
            os.unlink(self.path)
            return
        if self.max_ts >= 0 and (not self.timestamps or self.max_ts > self.timestamps[-1]):
            self.timestamps.append(self.max_ts)
            self.ts_offsets.append(self.offset_of_max - self.base)
        offset_index = OffsetIndex(self.index_path, self.base, self.index_bytes)
        offset_index.replace(self.offsets, self.positions)
        time_index = TimeIndex(self.time_index_path, self.base, self.index_bytes)
        time_index.replace(self.timestamps, self.ts_offsets)
        if aborted:
            write_file(self.txn_index_path, aborted, sync=True)


def _replace_if_there(source: str, target: str) -> None:
    try:
        os.replace(source, target)
    except FileNotFoundError:
        pass


def _sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
