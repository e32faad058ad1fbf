"""The log cleaner: what compaction keeps for keyed input with duplicates and
tombstones, offsets unchanged, when it runs (dirty ratio, compaction lags), and a crash
at every step of the swap recovering to a valid log."""

from __future__ import annotations

import os

import pytest
from log_helpers import FakeClock

from kbroker.log import LogConfig, LogManager, PartitionLog
from kbroker.log.cleaner import CLEANER_CHECKPOINT, LogCleaner
from kbroker.wire.record import build_batch, decode_records
from kbroker.wire.records import parse_header

COMPACT = dict(
    cleanup_policy="compact",
    segment_bytes=600,
    delete_retention_ms=10_000,
    file_delete_delay_ms=0,
)


@pytest.fixture
def manager(tmp_path, clock):
    manager = LogManager(str(tmp_path), LogConfig(**COMPACT), clock=clock)
    manager.startup()
    yield manager
    manager.shutdown()


def _produce(plog, pairs, ts, compression=0, producer_id=-1):
    """One batch of (key, value) records, all with timestamp ``ts``."""
    batch = build_batch(
        [(k, v, [], ts) for k, v in pairs],
        compression=compression,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
    )
    plog.append(batch)
    plog.high_watermark = plog.log_end_offset


def _records(plog, start=0):
    """(offset, key, value) of every record in the log."""
    out = []
    for header, data in plog.iter_batches(start):
        _, records = decode_records(data)
        out += [(header.base_offset + r.offset_delta, r.key, r.value) for r in records]
    return out


def _latest(records):
    latest = {}
    for offset, key, value in records:
        latest[key] = (offset, value)
    return latest


def _live(records):
    return {key: latest for key, latest in _latest(records).items() if latest[1] is not None}


def _updates(plog, clock, rounds=30, keys=5, age_ms=60_000, tombstone_every=0):
    """``rounds`` batches, each updating every key once; the last round is ``age_ms`` old."""
    for i in range(rounds):
        pairs = []
        for k in range(keys):
            tombstone = tombstone_every and (i * keys + k) % tombstone_every == 0
            pairs.append((b"key-%d" % k, None if tombstone else b"value-%d-%d" % (k, i)))
        _produce(plog, pairs, clock.now - age_ms - rounds + i)
    plog.roll()


def test_keeps_the_latest_record_of_every_key_at_its_offset(manager, clock):
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock)
    before = _records(plog)
    assert len(before) == 150
    result = LogCleaner(manager, clock).clean_once()
    assert result is not None and result.committed
    after = _records(plog)
    assert after == sorted((off, key, value) for key, (off, value) in _latest(before).items())
    assert [off for off, _, _ in after] == [145, 146, 147, 148, 149]
    assert result.records_read == 150 and result.records_kept == 5
    # offsets are unchanged: fetching from 0 starts at the first kept batch, the log end
    # and the next append are where they were
    assert plog.log_start_offset == 0 and plog.log_end_offset == 150
    assert parse_header(plog.read(0, 1 << 20).read_bytes()).base_offset == 145
    _produce(plog, [(b"key-0", b"new")], clock.now)
    assert _records(plog, 150) == [(150, b"key-0", b"new")]


def test_duplicates_inside_a_batch_and_unkeyed_records(manager, clock):
    plog = manager.get_or_create("t", 0)
    _produce(
        plog,
        [(b"a", b"1"), (b"a", b"2"), (None, b"x"), (b"b", b"1"), (b"a", b"3")],
        clock.now - 1000,
    )
    _produce(plog, [(b"b", b"2"), (None, b"y")], clock.now - 1000)
    plog.roll()
    LogCleaner(manager, clock).clean_once()
    assert _records(plog) == [(2, None, b"x"), (4, b"a", b"3"), (5, b"b", b"2"), (6, None, b"y")]
    # the partly kept batch keeps its base offset and last offset delta
    first = parse_header(plog.read(0, 1 << 20).read_bytes())
    assert (first.base_offset, first.last_offset_delta, first.records_count) == (0, 4, 2)


def test_tombstones_stay_until_delete_retention_has_passed(manager, clock):
    plog = manager.get_or_create("t", 0)
    plog.update_config(LogConfig(**{**COMPACT, "min_cleanable_dirty_ratio": 0.01}))
    _produce(plog, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")], clock.now - 3_000)
    _produce(plog, [(b"a", None), (b"b", b"2")], clock.now - 2_000)  # a deleted
    _produce(plog, [(b"c", None)], clock.now - 2_000)  # c deleted
    plog.roll()
    cleaner = LogCleaner(manager, clock)
    cleaner.clean_once()
    # delete.retention.ms (10 s) has not passed: consumers still see the tombstones
    assert _records(plog) == [(3, b"a", None), (4, b"b", b"2"), (5, b"c", None)]
    # 10 s later, with new dirty data to trigger a cleaning, the tombstones go
    clock.now += 10_000
    _produce(plog, [(b"b", b"3"), (b"d", b"1")], clock.now)
    plog.roll()
    cleaner.clean_once()
    assert _records(plog) == [(6, b"b", b"3"), (7, b"d", b"1")]


@pytest.mark.parametrize("codec", [1, 3, 4], ids=["gzip", "lz4", "zstd"])
def test_compressed_batches_are_recompressed_with_their_codec(manager, clock, codec):
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock, rounds=4, keys=3)
    _produce(
        plog,
        [(b"key-0", b"z0"), (b"key-9", b"z9"), (b"key-0", b"z1")],
        clock.now - 50_000,
        compression=codec,
    )
    plog.roll()
    LogCleaner(manager, clock).clean_once()
    assert [(k, v) for _, k, v in _records(plog)] == [
        (b"key-1", b"value-1-3"),
        (b"key-2", b"value-2-3"),
        (b"key-9", b"z9"),
        (b"key-0", b"z1"),
    ]
    last = list(plog.iter_batch_headers())[-1]
    assert last.compression == codec and last.records_count == 2 and last.base_offset == 12


def test_dirty_ratio_decides_when_to_clean(manager, clock):
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock, rounds=20)
    cleaner = LogCleaner(manager, clock)
    assert cleaner.plan().dirty_ratio == 1.0
    cleaner.clean_once()
    assert cleaner.first_dirty[("t", 0)] == 100
    assert cleaner.plan() is None  # nothing dirty
    # a little new data: dirty ratio below 0.5, no cleaning
    _produce(plog, [(b"key-0", b"x")], clock.now - 60_000)
    plog.roll()
    plan = cleaner.plan()
    assert plan is None
    plog.update_config(LogConfig(**{**COMPACT, "min_cleanable_dirty_ratio": 0.1}))
    plan = cleaner.plan()
    assert plan is not None and plan.first_dirty == 100 and plan.end_offset == 101
    assert 0.1 <= plan.dirty_ratio < 0.5


def test_min_compaction_lag_keeps_young_segments_dirty(manager, clock):
    plog = manager.get_or_create("t", 0)
    plog.update_config(LogConfig(**{**COMPACT, "min_compaction_lag_ms": 30_000}))
    _updates(plog, clock, rounds=10, age_ms=60_000)
    _updates(plog, clock, rounds=10, age_ms=10_000)  # too young
    plan = LogCleaner(manager, clock).plan()
    assert plan.end_offset == 50  # only the old half
    LogCleaner(manager, clock).clean_once()
    offsets = [off for off, _, _ in _records(plog)]
    assert offsets == [45, 46, 47, 48, 49] + list(range(50, 100))


def test_max_compaction_lag_forces_a_cleaning_below_the_ratio(manager, clock):
    plog = manager.get_or_create("t", 0)
    cleaner = LogCleaner(manager, clock)
    _updates(plog, clock, rounds=20)
    cleaner.clean_once()
    _produce(plog, [(b"key-0", b"late")], clock.now - 5_000)
    plog.roll()
    assert cleaner.plan() is None  # ratio well below 0.5
    plog.update_config(LogConfig(**{**COMPACT, "max_compaction_lag_ms": 4_000}))
    assert cleaner.plan() is not None
    cleaner.clean_once()
    assert [off for off, _, _ in _records(plog)] == [96, 97, 98, 99, 100]


def test_a_producers_last_batch_survives_empty(manager, clock):
    plog = manager.get_or_create("t", 0)
    _produce(plog, [(b"a", b"1")], clock.now - 9_000, producer_id=7)
    _produce(plog, [(b"a", b"2")], clock.now - 9_000, producer_id=7)
    _produce(plog, [(b"a", b"3")], clock.now - 9_000)  # supersedes producer 7's batches
    plog.roll()
    LogCleaner(manager, clock).clean_once()
    headers = list(plog.iter_batch_headers())
    assert [(h.base_offset, h.producer_id, h.records_count) for h in headers] == [
        (1, 7, 0),
        (2, -1, 1),
    ]
    assert _records(plog) == [(2, b"a", b"3")]


def test_checkpoint_survives_a_restart(tmp_path, clock):
    manager = LogManager(str(tmp_path), LogConfig(**COMPACT), clock=clock)
    manager.startup()
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock, rounds=10)
    LogCleaner(manager, clock).clean_once()
    manager.shutdown()
    assert (tmp_path / CLEANER_CHECKPOINT).read_text() == "0\n1\nt 0 50\n"
    manager = LogManager(str(tmp_path), LogConfig(**COMPACT), clock=clock)
    manager.startup()
    assert LogCleaner(manager, clock).first_dirty == {("t", 0): 50}
    assert [off for off, _, _ in _records(manager.get("t", 0))] == [45, 46, 47, 48, 49]
    manager.shutdown()


def test_a_fetch_in_flight_reads_the_replaced_segment(manager, clock):
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock, rounds=10)
    in_flight = plog.read(0, 1 << 20)
    expected = in_flight.read_bytes()
    LogCleaner(manager, clock).clean_once()
    manager.delete_retired(clock.now)  # file.delete.delay.ms=0: the old files are gone
    assert not [n for n in os.listdir(plog.directory) if n.endswith(".deleted")]
    assert in_flight.read_bytes() == expected


def test_the_log_moving_on_discards_the_cleaning(manager, clock):
    plog = manager.get_or_create("t", 0)
    plog.update_config(
        LogConfig(**{**COMPACT, "cleanup_policy": "compact,delete", "retention_ms": 30_000})
    )
    _updates(plog, clock, rounds=10, age_ms=60_000)
    _updates(plog, clock, rounds=10, age_ms=0)
    cleaner = LogCleaner(manager, clock)
    result = cleaner.prepare(cleaner.plan())
    assert plog.delete_old_segments() > 0  # retention removed some sources meanwhile
    assert not cleaner.commit(result)
    assert not [n for n in os.listdir(plog.directory) if ".cleaned" in n]
    assert cleaner.first_dirty == {}


def _swap_step_count(tmp_path, clock):
    manager = LogManager(str(tmp_path / "count"), LogConfig(**COMPACT), clock=clock)
    manager.startup()
    plog = manager.get_or_create("t", 0)
    _updates(plog, clock, rounds=40)
    cleaner = LogCleaner(manager, clock)
    steps = list(cleaner.swap_steps(cleaner.prepare(cleaner.plan())))
    manager.shutdown()
    return len(steps)


def test_a_crash_at_every_step_of_the_swap_recovers_a_valid_log(tmp_path):
    clock = FakeClock()
    steps = _swap_step_count(tmp_path, clock)
    assert steps > 6  # several groups, each with its own swap
    for crash_after in range(-1, steps + 1):
        directory = tmp_path / f"crash{crash_after}"
        manager = LogManager(str(directory), LogConfig(**COMPACT), clock=clock)
        manager.startup()
        plog = manager.get_or_create("t", 0)
        _updates(plog, clock, rounds=40, tombstone_every=7)
        plog.flush()
        original = _records(plog)
        cleaner = LogCleaner(manager, clock)
        if crash_after >= 0:  # -1: crash with the .cleaned files written, nothing swapped
            swap = cleaner.swap_steps(cleaner.prepare(cleaner.plan()))
            for _ in range(crash_after):
                next(swap, None)
        else:
            cleaner.prepare(cleaner.plan())
        # kill -9: no close, no checkpoints; start again from the files
        recovered = PartitionLog(
            str(directory / "t-0"), LogConfig(**COMPACT), recover=True, clock=clock
        )
        names = os.listdir(recovered.directory)
        assert not [n for n in names if n.endswith((".cleaned", ".swap"))], crash_after
        records = _records(recovered)
        offsets = [off for off, _, _ in records]
        assert offsets == sorted(set(offsets)), crash_after
        assert recovered.log_end_offset == 200
        # nothing a consumer needs was lost: every key's latest value is there, and
        # every record left is one of the originals at its own offset
        # (a deleted key may have lost its tombstone, which is older than delete.retention.ms)
        assert _live(records) == _live(original), crash_after
        assert set(records) <= set(original)
        if crash_after >= 1:
            assert len(records) < len(original)
        if crash_after in (-1, 0):
            assert records == original
        if crash_after == steps:
            assert offsets == [195, 197, 198, 199]  # 196 was an expired tombstone
        for segment in recovered.segments:  # the indexes are sound
            for pos, header in segment.batches():
                assert segment.translate_offset(header.base_offset)[0] == pos
        recovered.close()
        # the crashed manager is abandoned, as a killed process would leave it


def test_the_throughput_script_runs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "scripts" / "cleaner_throughput.py"
    out = subprocess.run(
        [sys.executable, str(script), "--mb", "0.3", "--keys", "50", "--segment-mb", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.startswith("cleaned 0.3 MB") and "kept 50 records" in out
