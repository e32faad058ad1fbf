"""Aborted transactions in the segments' ``.txnindex`` files, end to end: what the
partition leader indexes, what read_committed fetches get back, and how the files follow
rolls, truncation, retention, compaction, corruption and restarts."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import replace

import pytest

from kbroker.log import LogConfig, LogManager, PartitionLog
from kbroker.log.cleaner import LogCleaner
from kbroker.log.txn_index import ENTRY_SIZE, AbortedTxn
from kbroker.txn.producer_state import ProducerStateTable, rebuild_aborted_index
from kbroker.wire.record import build_batch, end_txn_marker

from .txn_helpers import Owner, record_replays

SMALL = dict(segment_bytes=400, file_delete_delay_ms=0)


class Partition(Owner):
    """Owner, plus what producers and WriteTxnMarkers do: transactional batches and
    their COMMIT/ABORT markers, the aborts indexed as the leader does."""

    def __init__(self, plog: PartitionLog) -> None:
        super().__init__(plog)
        self.sequences: dict[int, int] = {}

    def send(self, pid: int, key: bytes = b"k", records: int = 1) -> None:
        sequence = self.sequences.get(pid, 0)
        self.produce(
            build_batch(
                [(key, b"v%d" % i, None, None) for i in range(records)],
                producer_id=pid,
                producer_epoch=0,
                base_sequence=sequence,
                transactional=True,
            )
        )
        self.log.high_watermark = self.log.log_end_offset
        self.sequences[pid] = sequence + records

    def reload(self) -> None:
        """What the follower fetcher does after truncating; the producers then carry on
        from the sequences the log kept."""
        self.table.load(self.log)
        self.sequences = {
            pid: entry.last_sequence + 1 for pid, entry in self.table.producers.items()
        }

    def end(self, pid: int, commit: bool) -> AbortedTxn | None:
        key, value = end_txn_marker(commit, 0)
        marker = build_batch(
            [(key, value, None, None)],
            producer_id=pid,
            producer_epoch=0,
            transactional=True,
            control=True,
        )
        offset = self.log.append(marker).base_offset
        self.log.high_watermark = self.log.log_end_offset
        aborted = self.table.record_marker(pid, 0, commit, offset, self.log.log_end_offset)
        if aborted is not None:
            assert self.log.append_aborted(aborted)
        return aborted


def traffic(partition: Partition, steps: int = 160, seed: int = 7) -> list[AbortedTxn]:
    """Three transactional producers interleaving batches, commits and aborts; the
    aborted transactions in order."""
    rng = random.Random(seed)
    open_txns: set[int] = set()
    aborted = []
    for step in range(steps):
        pid = rng.choice((1, 2, 3))
        if pid in open_txns and rng.random() < 0.4:
            txn = partition.end(pid, commit=rng.random() < 0.4)
            open_txns.discard(pid)
            if txn is not None:
                aborted.append(txn)
        else:
            partition.send(pid, b"key-%d" % (step % 4), records=1 + step % 2)
            open_txns.add(pid)
    return aborted


def scanned(plog: PartitionLog) -> list[AbortedTxn]:
    """The aborted transactions of a fresh replay of the whole log (what the in-memory
    list held before there were .txnindex files)."""
    table = ProducerStateTable()
    found = []
    for header, data in plog.iter_batches(plog.log_start_offset):
        txn = table.replay(header, data)
        if txn is not None:
            found.append(txn)
    return found


def overlapping(aborted: list[AbortedTxn], start: int, end: int) -> list[AbortedTxn]:
    """The answer a read_committed fetch of [start, end) got from that in-memory list."""
    return [t for t in aborted if t.last_offset >= start and t.first_offset < end]


def assert_answers(plog: PartitionLog, aborted: list[AbortedTxn]) -> None:
    for start in range(plog.log_start_offset, plog.log_end_offset + 1):
        for end in range(start, plog.log_end_offset + 2):
            assert plog.aborted_transactions(start, end) == overlapping(aborted, start, end), (
                start,
                end,
            )


def file_bytes(plog: PartitionLog) -> dict[int, bytes]:
    """Each segment's .txnindex content (segments without a file are left out)."""
    out = {}
    for segment in plog.segments:
        path = os.path.join(plog.directory, f"{segment.base_offset:020d}.txnindex")
        if os.path.exists(path):
            with open(path, "rb") as f:
                out[segment.base_offset] = f.read()
    return out


def expected_files(plog: PartitionLog, aborted: list[AbortedTxn]) -> dict[int, bytes]:
    """Each abort in the file of the segment holding its marker."""
    segments = plog.segments
    out: dict[int, bytes] = {}
    for i, segment in enumerate(segments):
        end = segments[i + 1].base_offset if i + 1 < len(segments) else plog.log_end_offset
        mine = [t for t in aborted if segment.base_offset <= t.last_offset < end]
        if mine:
            out[segment.base_offset] = b"".join(t.encode() for t in mine)
    return out


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "t-0")


def open_log(directory: str, **config) -> PartitionLog:
    return PartitionLog(
        directory, LogConfig(**{**SMALL, **config}), rebuild_txn_index=rebuild_aborted_index
    )


def test_an_abort_is_indexed_in_the_segment_of_its_marker(log_dir):
    partition = Partition(open_log(log_dir))
    partition.send(7, records=3)  # offsets 0-2
    partition.send(8)  # 3, still open when 7 aborts
    assert partition.end(7, commit=False) == AbortedTxn(7, 0, 4, 3)
    assert partition.end(8, commit=True) is None
    assert os.listdir(log_dir).count("00000000000000000000.txnindex") == 1
    with open(os.path.join(log_dir, "00000000000000000000.txnindex"), "rb") as f:
        assert f.read() == bytes.fromhex(
            "0000"  # version
            "0000000000000007"  # producer id
            "0000000000000000"  # first offset
            "0000000000000004"  # last offset: the ABORT marker
            "0000000000000003"  # last stable offset: producer 8's transaction
        )
    assert partition.log.aborted_transactions(0, 6) == [AbortedTxn(7, 0, 4, 3)]
    partition.log.close()


def test_entries_across_rolls_and_read_committed_answers(log_dir):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    plog = partition.log
    assert len(plog.segments) > 10 and len(aborted) >= 10
    files = file_bytes(plog)
    assert files == expected_files(plog, aborted)
    assert 1 < len(files) < len(plog.segments)  # absent where a segment had no abort
    assert aborted == scanned(plog)
    assert_answers(plog, aborted)
    plog.close()


def test_truncation_removes_entries_at_or_past_the_new_end(log_dir):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    plog = partition.log
    cut = aborted[len(aborted) // 2].last_offset  # an ABORT marker goes, with its entry
    plog.truncate_to(cut)
    partition.reload()
    kept = [t for t in aborted if t.last_offset < cut]
    assert file_bytes(plog) == expected_files(plog, kept)
    assert sum(len(b) for b in file_bytes(plog).values()) == len(kept) * ENTRY_SIZE
    assert_answers(plog, kept)
    more = traffic(partition, steps=40, seed=8)  # appends go on after the cut
    assert file_bytes(plog) == expected_files(plog, kept + more)
    assert_answers(plog, kept + more)
    plog.close()


def test_retention_and_delete_records_remove_the_segments_indexes(log_dir):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    plog = partition.log
    first_files = file_bytes(plog)
    doomed = [
        base for base in first_files if base < plog.segments[len(plog.segments) // 2].base_offset
    ]
    assert doomed
    plog.advance_log_start_offset(
        plog.segments[len(plog.segments) // 2].base_offset
    )  # DeleteRecords
    names = os.listdir(log_dir)
    for base in doomed:
        assert f"{base:020d}.txnindex" not in names
        assert f"{base:020d}.txnindex.deleted" in names
    assert plog.delete_retired() > 0
    assert not [n for n in os.listdir(log_dir) if n.endswith(".deleted")]
    plog.update_config(LogConfig(**SMALL, retention_bytes=plog.size // 4))
    assert plog.delete_old_segments() > 0  # retention.bytes
    plog.delete_retired()
    first = plog.segments[0].base_offset
    left = [t for t in aborted if t.last_offset >= first]
    assert file_bytes(plog) == expected_files(plog, left)
    assert not [n for n in os.listdir(log_dir) if n.endswith(".txnindex") and int(n[:20]) < first]
    assert_answers(plog, left)
    plog.close()


def test_compaction_keeps_the_entries_of_the_segments_it_replaces(tmp_path):
    config = LogConfig(**SMALL, cleanup_policy="compact", min_cleanable_dirty_ratio=0.01)
    manager = LogManager(str(tmp_path), config, rebuild_txn_index=rebuild_aborted_index)
    manager.startup()
    partition = Partition(manager.get_or_create("t", 0))
    aborted = traffic(partition)
    plog = partition.log
    plog.roll()
    segments_before = len(plog.segments)
    result = LogCleaner(manager).clean_once()
    assert result is not None and result.committed
    assert len(plog.segments) < segments_before  # sources were merged
    assert result.records_kept < result.records_read
    assert file_bytes(plog) == expected_files(plog, aborted)
    assert_answers(plog, aborted)
    manager.shutdown()
    reopened = PartitionLog(str(tmp_path / "t-0"), config)  # the files, read back
    assert file_bytes(reopened) == expected_files(reopened, aborted)
    assert_answers(reopened, aborted)
    reopened.close()


def test_a_crash_at_every_step_of_the_compaction_swap_keeps_the_entries(tmp_path):
    config = LogConfig(**SMALL, cleanup_policy="compact", min_cleanable_dirty_ratio=0.01)
    crash_after = 0
    while True:
        manager = LogManager(
            str(tmp_path / f"crash{crash_after}"), config, rebuild_txn_index=rebuild_aborted_index
        )
        manager.startup()
        partition = Partition(manager.get_or_create("t", 0))
        aborted = traffic(partition, steps=80)
        plog = partition.log
        plog.roll()
        plog.flush()
        plog.update_config(replace(config, segment_bytes=2000))  # groups of segments
        cleaner = LogCleaner(manager)
        swap = cleaner.swap_steps(cleaner.prepare(cleaner.plan()))
        finished = any(next(swap, None) is None for _ in range(crash_after))
        # kill -9 after ``crash_after`` steps: start again from the files
        recovered = PartitionLog(
            plog.directory,
            config,
            recover=True,
            recovery_point=plog.recovery_point,
            rebuild_txn_index=rebuild_aborted_index,
        )
        names = os.listdir(recovered.directory)
        assert not [n for n in names if n.endswith((".cleaned", ".swap"))], crash_after
        assert file_bytes(recovered) == expected_files(recovered, aborted), crash_after
        recovered.close()
        if finished:
            break
        crash_after += 1
    assert crash_after > 6  # several groups of several segments, each swapped in steps
    assert len(aborted) > 3


def test_a_corrupt_index_is_rebuilt_from_the_log_with_a_log_line(log_dir, caplog):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    partition.log.close()
    files = file_bytes(partition.log)
    damaged = sorted(files)[1:3]
    paths = [os.path.join(log_dir, f"{base:020d}.txnindex") for base in damaged]
    with open(paths[0], "ab") as f:
        f.write(b"\x00" * 5)  # size no longer a multiple of 34
    with open(paths[1], "r+b") as f:
        f.write(b"\x00\x03")  # version 3
    with caplog.at_level(logging.WARNING, logger="kbroker.log.segment"):
        plog = open_log(log_dir)
    for path in paths:
        assert path in caplog.text
    assert "not a multiple of 34" in caplog.text and "entry version 3" in caplog.text
    assert file_bytes(plog) == files  # rebuilt byte for byte
    restarted = Partition(plog)
    assert_answers(plog, aborted)
    assert restarted.table.ongoing == partition.table.ongoing
    plog.close()


def test_an_unclean_shutdown_rebuilds_the_index_of_the_recovered_segments(log_dir):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    plog = partition.log
    plog.flush()
    recovery_point = plog.segments[-3].base_offset
    files = file_bytes(plog)
    last_base = max(files)
    # a crash lost the last index's entries and tore the last batch (an ABORT marker)
    torn = partition.end(1, commit=False) or partition.end(2, commit=False)
    assert torn is not None and torn.last_offset >= plog.active_segment.base_offset
    for base in files:
        if base >= recovery_point:
            os.truncate(os.path.join(log_dir, f"{base:020d}.txnindex"), 0)
    os.truncate(plog.active_segment.log_path, plog.active_segment.size - 3)
    assert last_base >= recovery_point
    # kill -9: nothing closed; start again from the files
    recovered = PartitionLog(
        log_dir,
        LogConfig(**SMALL),
        recover=True,
        recovery_point=recovery_point,
        rebuild_txn_index=rebuild_aborted_index,
    )
    assert recovered.log_end_offset == torn.last_offset
    assert file_bytes(recovered) == expected_files(recovered, aborted)
    assert file_bytes(recovered) == files
    assert_answers(recovered, aborted)
    recovered.close()


def test_a_restart_uses_the_snapshot_and_answers_as_before(log_dir, monkeypatch):
    partition = Partition(open_log(log_dir))
    aborted = traffic(partition)
    partition.send(1)  # a transaction open across the restart
    plog = partition.log
    answers = {
        (start, end): plog.aborted_transactions(start, end)
        for start in range(plog.log_end_offset + 1)
        for end in range(start, plog.log_end_offset + 2)
    }
    lso = partition.table.last_stable_offset(plog.log_end_offset)
    plog.close()

    replayed = record_replays(monkeypatch)
    restarted = Partition(open_log(log_dir))
    assert replayed == []  # the snapshot at the log end: no scan of the log
    plog = restarted.log
    assert restarted.table.last_stable_offset(plog.log_end_offset) == lso
    assert {key: plog.aborted_transactions(*key) for key in answers} == answers
    assert_answers(plog, aborted)
    plog.close()
