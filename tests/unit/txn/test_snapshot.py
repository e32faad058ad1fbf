"""Producer-state snapshots (Kafka's ``.snapshot`` files): format, loading, truncation."""

from __future__ import annotations

import logging

import pytest

from kbroker.log.config import LogConfig
from kbroker.log.partition_log import PartitionLog
from kbroker.txn import snapshot
from kbroker.txn.producer_state import ProducerStateTable
from kbroker.txn.snapshot import CorruptSnapshot, SnapshotEntry
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.record import build_batch, end_txn_marker
from kbroker.wire.records import split_batches

from .txn_helpers import Owner, record_replays

# version 1 | crc32c | count 1 | pid 1, epoch 2, last seq 4, last offset 10, delta 2,
# timestamp 1000, coordinator epoch -1, current txn first offset -1
ONE_ENTRY = bytes.fromhex(
    "0001"
    "29dade2f"
    "00000001"
    "0000000000000001"
    "0002"
    "00000004"
    "000000000000000a"
    "00000002"
    "00000000000003e8"
    "ffffffff"
    "ffffffffffffffff"
)


def test_the_file_format_round_trips_with_kafkas_layout():
    entry = SnapshotEntry(1, 2, 4, 10, 2, 1000, -1, -1)
    assert snapshot.encode([entry]) == ONE_ENTRY
    assert snapshot.decode(ONE_ENTRY) == [entry]
    assert snapshot.encode([]) == bytes.fromhex("000148674bc700000000")
    entries = [SnapshotEntry(9, 0, 0, 0, 0, 5, 3, 7), entry]
    assert snapshot.decode(snapshot.encode(entries)) == entries


def test_each_retained_batch_is_an_entry_and_kafkas_last_entry_wins():
    table = ProducerStateTable()
    for sequence, offset in ((0, 0), (2, 5), (4, 9)):
        header = split_batches(batch(7, sequence, 2))[0]
        table.record(header, offset)
    entries = snapshot.entries_of(table)
    assert [(e.last_sequence, e.last_offset, e.offset_delta) for e in entries] == [
        (1, 1, 1),
        (3, 6, 1),
        (5, 10, 1),
    ]
    restored = ProducerStateTable()
    snapshot.restore(restored, snapshot.decode(snapshot.encode(entries)))
    assert state(restored) == state(table)


def test_a_corrupt_file_is_refused():
    bad = bytearray(ONE_ENTRY)
    bad[-9] ^= 1
    with pytest.raises(CorruptSnapshot, match="crc"):
        snapshot.decode(bytes(bad))
    with pytest.raises(CorruptSnapshot):
        snapshot.decode(ONE_ENTRY[:-1])
    with pytest.raises(CorruptSnapshot, match="version"):
        snapshot.decode(b"\x00\x02" + ONE_ENTRY[2:])


# -- against a log -------------------------------------------------------------------


def batch(pid: int, sequence: int, records: int = 1, epoch: int = 0) -> bytes:
    return build_batch(
        [(None, b"v%d" % i, None, None) for i in range(records)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=sequence,
    )


def open_log(directory: str) -> PartitionLog:
    return PartitionLog(directory, LogConfig(segment_bytes=300))


def state(table: ProducerStateTable) -> tuple:
    """Each producer's epoch, coordinator epoch and retained batches; open transactions."""
    producers = {
        pid: (entry.epoch, entry.coordinator_epoch, list(entry.batches))
        for pid, entry in table.producers.items()
    }
    return producers, dict(table.ongoing)


def full_scan(plog: PartitionLog) -> ProducerStateTable:
    table = ProducerStateTable()
    for header, data in plog.iter_batches(plog.log_start_offset):
        table.replay(header, data)
    return table


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "t-0")


def fill(owner: Owner) -> dict[int, int]:
    sequences = {1: 0, 2: 0, 3: 0}
    for round_ in range(12):
        for pid in sequences:
            if pid == 3 and round_ > 2:
                continue  # producer 3 stops early: only the snapshot remembers it
            records = 1 + (round_ + pid) % 3
            owner.produce(batch(pid, sequences[pid], records))
            sequences[pid] += records
    return sequences


def test_rolls_and_close_write_snapshots_and_restart_replays_only_the_tail(log_dir, monkeypatch):
    owner = Owner(open_log(log_dir))
    sequences = fill(owner)
    plog = owner.log
    assert len(plog.segments) > 3
    rolled = snapshot.list_snapshots(log_dir)
    assert rolled == [s.base_offset for s in plog.segments[-snapshot.KEEP_SNAPSHOTS :]]
    before = state(owner.table)
    plog.close()
    assert snapshot.list_snapshots(log_dir)[-1] == plog.log_end_offset
    assert len(snapshot.list_snapshots(log_dir)) == snapshot.KEEP_SNAPSHOTS

    replayed = record_replays(monkeypatch)
    restarted = Owner(open_log(log_dir))
    assert replayed == []  # the clean-shutdown snapshot is at the log end
    assert state(restarted.table) == before

    # retries of each producer's last 5 batches are still duplicates, gaps still refused
    for pid in (1, 2, 3):
        retained = restarted.table.producers[pid].batches
        assert len(retained) == (3 if pid == 3 else 5)
        for old in retained:
            records = old.last_sequence - old.first_sequence + 1
            retry = split_batches(batch(pid, old.first_sequence, records))[0]
            assert restarted.table.find_duplicate(retry) == old
    with pytest.raises(KafkaError) as caught:
        restarted.table.check(split_batches(batch(1, sequences[1] + 1))[0])
    assert caught.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    restarted.produce(batch(1, sequences[1]))
    restarted.log.close()


def test_snapshot_plus_tail_equals_a_full_scan(log_dir, monkeypatch):
    owner = Owner(open_log(log_dir))
    fill(owner)
    owner.log.on_snapshot = None  # a crash: no snapshot at the log end
    owner.log.close()
    snapshots = snapshot.list_snapshots(log_dir)

    replayed = record_replays(monkeypatch)
    plog = open_log(log_dir)
    table = ProducerStateTable()
    table.load(plog)
    assert replayed and min(h.base_offset for h in replayed) == snapshots[-1]
    monkeypatch.undo()  # the real replay again, for the full scan
    assert state(table) == state(full_scan(plog))
    plog.close()


def test_a_corrupt_snapshot_is_ignored_with_a_log_line(log_dir, caplog):
    owner = Owner(open_log(log_dir))
    fill(owner)
    owner.log.close()
    expected = state(owner.table)
    for offset in snapshot.list_snapshots(log_dir):
        path = snapshot.snapshot_path(log_dir, offset)
        with open(path, "r+b") as f:
            f.seek(10)
            f.write(b"\xff")
    plog = open_log(log_dir)
    table = ProducerStateTable()
    with caplog.at_level(logging.WARNING, logger="kbroker.txn.snapshot"):
        table.load(plog)
    assert "crc" in caplog.text and "ignoring producer snapshot" in caplog.text
    assert state(table) == expected  # from the full scan
    plog.close()


def test_truncation_deletes_snapshots_above_the_new_end(log_dir):
    owner = Owner(open_log(log_dir))
    fill(owner)
    plog = owner.log
    snapshots = snapshot.list_snapshots(log_dir)
    cut = snapshots[-2] + 1
    plog.truncate_to(cut)
    assert snapshot.list_snapshots(log_dir) == snapshots[:-1]
    owner.table.load(plog)  # what the follower fetcher does after truncating
    assert state(owner.table) == state(full_scan(plog))
    plog.truncate_fully_and_start_at(plog.log_end_offset + 100)
    assert snapshot.list_snapshots(log_dir) == []
    plog.close()


def test_snapshots_above_the_log_end_at_start_up_are_removed(log_dir):
    owner = Owner(open_log(log_dir))
    owner.produce(batch(1, 0))
    owner.log.close()
    snapshot.write(log_dir, 50, ProducerStateTable())
    plog = open_log(log_dir)
    table = ProducerStateTable()
    table.load(plog)
    assert snapshot.list_snapshots(log_dir) == [1]
    assert table.producers[1].last_sequence == 0
    plog.close()


def test_transactional_history_restarts_from_the_snapshot(log_dir, monkeypatch):
    owner = Owner(open_log(log_dir))
    plog = owner.log
    data = build_batch(
        [(None, b"t", None, None)],
        producer_id=5,
        producer_epoch=0,
        base_sequence=0,
        transactional=True,
    )
    owner.produce(data)
    key, value = end_txn_marker(False, 3)
    marker = build_batch(
        [(key, value, None, None)],
        producer_id=5,
        producer_epoch=0,
        transactional=True,
        control=True,
    )
    appended = plog.append(marker)
    aborted = owner.table.record_marker(5, 0, False, appended.base_offset, plog.log_end_offset, 3)
    plog.append_aborted(aborted)
    fill(owner)
    owner.produce(
        build_batch(
            [(None, b"open", None, None)],
            producer_id=6,
            producer_epoch=0,
            base_sequence=0,
            transactional=True,
        )
    )
    open_at = plog.log_end_offset - 1
    plog.close()
    entries = snapshot.read(log_dir, plog.log_end_offset)
    (entry,) = [e for e in entries if e.producer_id == 5]
    assert entry.coordinator_epoch == 3
    (entry,) = [e for e in entries if e.producer_id == 6]
    assert entry.current_txn_first_offset == open_at

    replayed = record_replays(monkeypatch)
    plog = open_log(log_dir)
    table = ProducerStateTable()
    table.load(plog)
    assert replayed == []  # the clean-shutdown snapshot at the log end was used
    assert state(table) == state(owner.table)
    assert table.last_stable_offset(plog.log_end_offset) == open_at
    # the aborted transaction comes from the first segment's .txnindex
    assert plog.aborted_transactions(0, open_at) == [aborted]
    assert aborted == (5, 0, 1, 2)
    plog.close()
