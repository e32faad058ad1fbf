"""Retention by time and size, with a fake clock: which segments go, the ``.deleted``
renames and ``file.delete.delay.ms``, cleanup.policy, and live config changes."""

from __future__ import annotations

import os

import pytest
from log_helpers import build_batch

from kbroker.log import LogConfig, LogManager, OffsetOutOfRange, PartitionLog

BATCH = len(build_batch(5, value_size=50))


def _one_batch_per_segment(log_dir, clock, count=10, step=1000, **config):
    """``count`` closed segments of one 5-record batch each, timestamps ``step`` apart
    ending ``step`` ms before now, plus an empty active segment."""
    config.setdefault("segment_bytes", BATCH + 10)
    plog = PartitionLog(log_dir, LogConfig(**config), clock=clock)
    start = clock.now - count * step
    for i in range(count):
        plog.append(build_batch(5, timestamp=start + i * step, value_size=50))
    plog.roll()
    plog.high_watermark = plog.log_end_offset
    assert [s.base_offset for s in plog.segments] == list(range(0, 5 * count + 1, 5))
    return plog


def _files(log_dir):
    return sorted(os.listdir(log_dir))


def test_time_retention_retires_segments_by_their_largest_timestamp(log_dir, clock):
    # segment i's largest timestamp is now - 10000 + 1000 * i + 4 (5 records, 1 ms apart)
    plog = _one_batch_per_segment(log_dir, clock, retention_ms=5_000, file_delete_delay_ms=60_000)
    assert plog.delete_old_segments() == 5  # i = 0..4 are more than 5 s old; i = 5 is not
    assert plog.log_start_offset == 25
    assert plog.segments[0].base_offset == 25
    with pytest.raises(OffsetOutOfRange):
        plog.read(24, 100)
    deleted = [name for name in _files(log_dir) if name.endswith(".deleted")]
    assert deleted == sorted(
        f"{base:020d}{suffix}.deleted"
        for base in range(0, 25, 5)
        for suffix in (".index", ".log", ".timeindex")
    )
    # the files stay for file.delete.delay.ms, then go
    assert plog.delete_retired(clock.now + 59_999) == 0
    assert plog.delete_retired(clock.now + 60_000) == 15
    assert not [name for name in _files(log_dir) if name.endswith(".deleted")]
    # a second later one more segment has expired
    assert plog.delete_old_segments(clock.now + 1_000) == 1
    assert plog.log_start_offset == 30


def test_time_retention_stops_at_the_first_young_segment(log_dir, clock):
    plog = PartitionLog(
        log_dir, LogConfig(segment_bytes=BATCH + 10, retention_ms=5_000), clock=clock
    )
    old, young = clock.now - 60_000, clock.now
    for ts in (old, young, old, old):
        plog.append(build_batch(5, timestamp=ts, value_size=50))
    plog.high_watermark = plog.log_end_offset
    assert plog.delete_old_segments() == 1
    assert plog.log_start_offset == 5


def test_size_retention_keeps_at_most_retention_bytes(log_dir, clock):
    plog = _one_batch_per_segment(log_dir, clock, retention_bytes=3 * BATCH + 1)
    # a segment goes only if the log stays at least retention.bytes without it (Kafka)
    assert plog.delete_old_segments() == 6
    assert plog.size == 4 * BATCH
    plog.update_config(LogConfig(segment_bytes=BATCH + 10, retention_bytes=3 * BATCH))
    assert plog.delete_old_segments() == 1
    assert plog.size == 3 * BATCH
    assert plog.log_start_offset == 35
    assert plog.delete_old_segments() == 0


def test_both_limits_take_the_larger_deletion(log_dir, clock):
    plog = _one_batch_per_segment(log_dir, clock, retention_ms=7_500, retention_bytes=8 * BATCH)
    assert plog.delete_old_segments() == 3  # time: 3 segments; size: 2
    assert plog.log_start_offset == 15


def test_segments_above_the_high_watermark_are_kept(log_dir, clock):
    plog = _one_batch_per_segment(log_dir, clock, retention_ms=0)
    plog.high_watermark = 12  # inside segment 10-14: only 0-4 and 5-9 are below it
    assert plog.delete_old_segments() == 2
    assert plog.log_start_offset == 10


def test_everything_expired_rolls_and_keeps_the_new_empty_segment(log_dir, clock):
    plog = PartitionLog(log_dir, LogConfig(retention_ms=1_000), clock=clock)
    plog.append(build_batch(5, timestamp=clock.now - 5_000))
    plog.high_watermark = plog.log_end_offset
    assert plog.delete_old_segments() == 1
    assert plog.log_start_offset == plog.log_end_offset == 5
    assert [s.base_offset for s in plog.segments] == [5]
    # the unflushed data of the old active segment was synced by the roll, then retired
    assert plog.recovery_point == 5


def test_compact_policy_is_not_deleted_by_retention(log_dir, clock):
    plog = _one_batch_per_segment(
        log_dir, clock, retention_ms=0, retention_bytes=0, cleanup_policy="compact"
    )
    assert plog.delete_old_segments() == 0
    assert plog.log_start_offset == 0
    plog.update_config(LogConfig(retention_ms=0, cleanup_policy="compact,delete"))
    assert plog.delete_old_segments() == 10


def test_retention_change_applies_live(log_dir, clock):
    plog = _one_batch_per_segment(log_dir, clock, retention_ms=-1)
    assert plog.delete_old_segments() == 0
    plog.update_config(plog.config.__class__(segment_bytes=BATCH + 10, retention_ms=2_500))
    assert plog.delete_old_segments() == 8
    assert plog.log_start_offset == 40


def test_a_fetch_in_flight_still_reads_a_retired_segment(log_dir, clock):
    plog = _one_batch_per_segment(log_dir, clock, retention_ms=0, file_delete_delay_ms=0)
    in_flight = plog.read(0, 1 << 20)
    expected = in_flight.read_bytes()
    assert plog.delete_old_segments() == 10
    assert plog.delete_retired() == 30  # even with the files unlinked
    assert in_flight.read_bytes() == expected


def test_log_manager_removes_retired_files_and_restart_forgets_them(tmp_path, clock):
    config = LogConfig(segment_bytes=BATCH + 10, retention_ms=1_000, file_delete_delay_ms=10_000)
    manager = LogManager(str(tmp_path), config, clock=clock)
    manager.startup()
    plog = manager.get_or_create("t", 0)
    for _ in range(3):
        plog.append(build_batch(5, timestamp=clock.now - 10_000, value_size=50))
    plog.high_watermark = plog.log_end_offset
    assert manager.cleanup() == 3
    partition_dir = tmp_path / "t-0"
    assert len([n for n in os.listdir(partition_dir) if n.endswith(".deleted")]) == 9
    assert manager.delete_retired(clock.now + 9_999) == 0
    manager.shutdown()
    # a restart before the delay has passed removes the leftovers at load
    manager = LogManager(str(tmp_path), config, clock=clock)
    manager.startup()
    assert not [n for n in os.listdir(partition_dir) if n.endswith(".deleted")]
    assert manager.get("t", 0).log_start_offset == 15
    manager.shutdown()
