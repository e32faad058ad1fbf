import os

import pytest
from log_helpers import build_batch

from kbroker.log import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    LogConfig,
    OffsetOutOfRange,
    PartitionLog,
    RecordBatchTooLarge,
)
from kbroker.log.checkpoint import LEADER_EPOCH_CHECKPOINT
from kbroker.wire.records import CorruptBatch, parse_header, split_batches


def _append_many(plog, batches, count=5, start_ts=1000, value_size=50, **kw):
    results = []
    for i in range(batches):
        results.append(
            plog.append(build_batch(count, start_ts + 100 * i, value_size=value_size), **kw)
        )
    plog.high_watermark = plog.log_end_offset
    return results


def _headers(data: bytes):
    out, pos = [], 0
    while pos + 61 <= len(data):
        h = parse_header(data, pos)
        if pos + h.size > len(data):
            break
        out.append(h)
        pos += h.size
    return out


def test_offsets_assigned_and_read_back_byte_for_byte(log_dir):
    plog = PartitionLog(log_dir)
    assert (plog.topic, plog.partition) == ("my.topic_name-x", 0)
    b1, b2, b3 = build_batch(3), build_batch(1), build_batch(4)
    assert plog.append(b1) == (0, 2, -1)
    assert plog.append(b2 + b3) == (3, 7, -1)  # one payload, two batches
    assert plog.log_end_offset == 8
    plog.high_watermark = 8
    data = plog.read(0, 1 << 20).read_bytes()
    headers = split_batches(data)
    assert [(h.base_offset, h.last_offset) for h in headers] == [(0, 2), (3, 3), (4, 7)]
    # byte for byte, apart from the stamped base offset
    for original, h, pos in zip(
        (b1, b2, b3), headers, (0, len(b1), len(b1) + len(b2)), strict=True
    ):
        assert data[pos + 8 : pos + h.size] == original[8:]
    assert os.listdir(log_dir) == sorted(os.listdir(log_dir)) or True
    assert os.path.exists(os.path.join(log_dir, "00000000000000000000.log"))


def test_read_inside_batch_returns_containing_batch(log_dir):
    plog = PartitionLog(log_dir)
    _append_many(plog, 3)
    result = plog.read(7, 1)  # offset 7 is inside the batch 5..9
    headers = split_batches(result.read_bytes())
    assert [(h.base_offset, h.last_offset) for h in headers] == [(5, 9)]  # min one batch
    result = plog.read(7, 1 << 20)
    assert [h.base_offset for h in split_batches(result.read_bytes())] == [5, 10]


def test_read_bounds(log_dir):
    plog = PartitionLog(log_dir)
    _append_many(plog, 3)
    assert plog.read(15, 100).size == 0  # at the log end: nothing yet
    with pytest.raises(OffsetOutOfRange):
        plog.read(16, 100)
    plog.high_watermark = 10
    assert [h.base_offset for h in split_batches(plog.read(0, 1 << 20).read_bytes())] == [0, 5]
    assert plog.read(10, 1 << 20).size == 0
    # a follower reads up to the log end
    follower = plog.read(10, 1 << 20, max_offset=plog.log_end_offset)
    assert [h.base_offset for h in split_batches(follower.read_bytes())] == [10]
    # a partial trailing batch is allowed, as Kafka sends it
    partial = plog.read(0, 400, max_offset=15)
    assert partial.size == 400 > split_batches(plog.read(0, 1).read_bytes())[0].size


def test_read_without_room_for_a_whole_first_batch_is_empty(log_dir):
    # a later partition of a fetch whose byte budget is nearly spent: Kafka sends nothing
    # rather than the front of a batch (a consumer could make no progress with it)
    plog = PartitionLog(log_dir)
    _append_many(plog, 2)
    first = split_batches(plog.read(0, 1).read_bytes())[0]
    assert plog.read(0, first.size - 1, min_one_batch=False).size == 0
    exact = plog.read(0, first.size, min_one_batch=False)
    assert [h.base_offset for h in split_batches(exact.read_bytes())] == [0]
    assert plog.read(0, first.size + 10, min_one_batch=False).size == first.size + 10


def test_append_validates(log_dir):
    plog = PartitionLog(log_dir, LogConfig(segment_bytes=1000))
    batch = bytearray(build_batch(2))
    batch[-1] ^= 1
    with pytest.raises(CorruptBatch):
        plog.append(bytes(batch))
    with pytest.raises(RecordBatchTooLarge):
        plog.append(build_batch(10, value_size=200))
    assert plog.log_end_offset == 0


def test_segment_roll_and_reads_across_segments(log_dir):
    config = LogConfig(segment_bytes=1000, index_interval_bytes=100)
    plog = PartitionLog(log_dir, config)
    results = _append_many(plog, 20)
    assert results[-1].last_offset == 99
    segments = plog.segments
    assert len(segments) > 3
    assert all(s.size <= 1000 for s in segments)
    names = sorted(n for n in os.listdir(log_dir) if n.endswith(".log"))
    assert names == [f"{s.base_offset:020d}.log" for s in segments]
    for s in segments:
        assert os.path.exists(s.index_path) and os.path.exists(s.time_index_path)
    # every offset is readable and starts the slice at its batch
    for offset in range(0, 100, 3):
        first = split_batches(_headers_bytes(plog.read(offset, 200)))[0]
        assert first.base_offset <= offset <= first.last_offset
    # consecutive reads walk the whole log
    offset, seen = 0, []
    while offset < plog.log_end_offset:
        headers = _headers(plog.read(offset, 1 << 20).read_bytes())
        seen += [h.base_offset for h in headers]
        offset = headers[-1].next_offset
    assert seen == list(range(0, 100, 5))
    assert plog.recovery_point == segments[-1].base_offset  # rolled segments were synced


def _read_all(plog, max_offset=None):
    """The whole log's bytes, fetched as a consumer would (a segment per read)."""
    data, offset = b"", plog.log_start_offset
    end = plog.log_end_offset if max_offset is None else max_offset
    while offset < end:
        chunk = plog.read(offset, 1 << 30, max_offset=end).read_bytes()
        data += chunk
        offset = _headers(chunk)[-1].next_offset
    return data


def _headers_bytes(slice_):
    data = slice_.read_bytes()
    end = 0
    for h in _headers(data):
        end += h.size
    return data[:end]


def test_roll_on_segment_ms(log_dir, clock):
    plog = PartitionLog(log_dir, LogConfig(segment_ms=1000), clock=clock)
    plog.append(build_batch(1, timestamp=10_000))
    plog.append(build_batch(1, timestamp=10_500))
    assert len(plog.segments) == 1
    plog.append(build_batch(1, timestamp=11_001))  # > segment.ms after the first batch
    assert [s.base_offset for s in plog.segments] == [0, 2]


def test_offset_for_timestamp(log_dir):
    plog = PartitionLog(log_dir, LogConfig(segment_bytes=1000, index_interval_bytes=100))
    _append_many(plog, 20, count=5, start_ts=1000)  # batch i: ts 1000+100i .. +4
    assert plog.offset_for_timestamp(0) == (0, 1000)
    assert plog.offset_for_timestamp(1502) == (27, 1502)  # first record, not first batch
    assert plog.offset_for_timestamp(1505) == (30, 1600)
    assert plog.offset_for_timestamp(2904) == (99, 2904)
    assert plog.offset_for_timestamp(2905) is None
    assert plog.offset_for_timestamp(LATEST_TIMESTAMP) == (100, -1)
    assert plog.offset_for_timestamp(EARLIEST_TIMESTAMP) == (0, -1)
    assert plog.offset_for_timestamp(MAX_TIMESTAMP) == (99, 2904)
    assert plog.offset_for_timestamp(1502, max_offset=20) is None


def test_log_append_time(log_dir, clock):
    plog = PartitionLog(log_dir, LogConfig(message_timestamp_type="LogAppendTime"), clock=clock)
    result = plog.append(build_batch(3, timestamp=5))
    assert result == (0, 2, clock.now)
    plog.high_watermark = plog.log_end_offset
    header = split_batches(plog.read(0, 1000).read_bytes())[0]
    assert header.max_timestamp == clock.now and header.attributes & 0x08
    assert plog.offset_for_timestamp(clock.now - 1) == (0, clock.now)
    explicit = plog.append(build_batch(1), log_append_time=clock.now + 7)
    assert explicit.log_append_time == clock.now + 7


def test_recovery_after_torn_write(log_dir):
    config = LogConfig(segment_bytes=2000, index_interval_bytes=100)
    plog = PartitionLog(log_dir, config)
    _append_many(plog, 10)
    active = plog.active_segment
    expected = _read_all(plog)
    last_batch = split_batches(active.read(active.base_offset, 1 << 30).read_bytes())[-1]
    plog.close()
    # kill -9 in the middle of the last write
    with open(active.log_path, "r+b") as f:
        f.truncate(active.size - last_batch.size // 2)
    reopened = PartitionLog(log_dir, config, recover=True, recovery_point=active.base_offset)
    assert reopened.log_end_offset == last_batch.base_offset == 45
    reopened.high_watermark = reopened.log_end_offset
    assert _read_all(reopened) == expected[: len(expected) - last_batch.size]
    assert reopened.append(build_batch(2)) == (45, 46, -1)
    reopened.high_watermark = reopened.log_end_offset
    offsets = [h.base_offset for h in split_batches(reopened.read(40, 1 << 20).read_bytes())]
    assert offsets == [40, 45]


def test_recovery_of_torn_tail_without_hint(log_dir):
    """A clean-looking open still repairs a torn tail in the active segment."""
    plog = PartitionLog(log_dir)
    _append_many(plog, 4)
    plog.close()
    path = plog.active_segment.log_path
    with open(path, "ab") as f:
        f.write(b"\x00" * 30)
    reopened = PartitionLog(log_dir)
    assert reopened.log_end_offset == 20
    assert os.path.getsize(path) == reopened.active_segment.size


def test_indexes_rebuilt_when_missing(log_dir):
    config = LogConfig(segment_bytes=3000, index_interval_bytes=100)
    plog = PartitionLog(log_dir, config)
    _append_many(plog, 20)
    entries = [(s.offset_index.entries(), s.time_index.entries()) for s in plog.segments]
    plog.close()
    for name in os.listdir(log_dir):
        if name.endswith((".index", ".timeindex")):
            os.unlink(os.path.join(log_dir, name))
    reopened = PartitionLog(log_dir, config, high_watermark=100)
    assert reopened.log_end_offset == 100
    rebuilt = [(s.offset_index.entries(), s.time_index.entries()) for s in reopened.segments]
    for (offsets, times), (new_offsets, new_times) in zip(entries, rebuilt, strict=True):
        assert new_offsets == offsets
        assert set(new_times) <= set(times)  # close() adds one final entry
    assert reopened.offset_for_timestamp(1502) == (27, 1502)
    first = split_batches(_headers_bytes(reopened.read(63, 100)))[0]
    assert first.base_offset == 60


def test_reopen_after_clean_close(log_dir):
    config = LogConfig(segment_bytes=1500)
    plog = PartitionLog(log_dir, config)
    _append_many(plog, 10, leader_epoch=3)
    data = _read_all(plog)
    bases = [s.base_offset for s in plog.segments]
    plog.close()
    reopened = PartitionLog(log_dir, config, high_watermark=50)
    assert [s.base_offset for s in reopened.segments] == bases
    assert reopened.log_end_offset == 50 and reopened.high_watermark == 50
    assert _read_all(reopened) == data
    assert reopened.append(build_batch(1)).base_offset == 50
    assert reopened.latest_epoch == 3


def test_leader_epoch_checkpoint(log_dir):
    plog = PartitionLog(log_dir)
    plog.append(build_batch(2), leader_epoch=0)
    plog.append(build_batch(2), leader_epoch=0)
    plog.append(build_batch(3), leader_epoch=2)
    path = os.path.join(log_dir, LEADER_EPOCH_CHECKPOINT)
    assert open(path).read() == "0\n2\n0 0\n2 4\n"
    header = split_batches(plog.read(4, 1000, max_offset=7).read_bytes())[0]
    assert header.partition_leader_epoch == 2
    assert plog.end_offset_for_epoch(2) == (2, 7)
    assert plog.end_offset_for_epoch(1) == (0, 4)
    assert plog.end_offset_for_epoch(0) == (0, 4)
    assert plog.end_offset_for_epoch(5) == (-1, -1)
    plog.truncate_to(4)
    assert open(path).read() == "0\n1\n0 0\n"


def test_truncate_to_across_segments(log_dir):
    config = LogConfig(segment_bytes=1000)
    plog = PartitionLog(log_dir, config)
    _append_many(plog, 20)
    assert len(plog.segments) > 2
    plog.truncate_to(33)  # inside batch 30..34: the whole batch goes
    assert plog.log_end_offset == 30
    assert plog.high_watermark == 30
    assert plog.segments[-1].base_offset <= 30
    names = {n for n in os.listdir(log_dir) if n.endswith(".log")}
    assert names == {f"{s.base_offset:020d}.log" for s in plog.segments}
    assert plog.append(build_batch(1)).base_offset == 30
    plog.truncate_fully_and_start_at(500)
    assert (plog.log_start_offset, plog.log_end_offset) == (500, 500)
    assert plog.append(build_batch(1)).base_offset == 500
    assert os.listdir(log_dir).count("00000000000000000500.log") == 1


def test_follower_append_keeps_offsets(log_dir, tmp_path):
    leader = PartitionLog(str(tmp_path / "t-1"))
    leader.append(build_batch(3), leader_epoch=4)
    leader.append(build_batch(2), leader_epoch=5)
    data = leader.read(0, 1 << 20, max_offset=leader.log_end_offset).read_bytes()
    follower = PartitionLog(log_dir)
    assert follower.append_as_follower(data) == (0, 4, -1)
    assert follower.log_end_offset == 5
    assert follower.read(0, 1 << 20, max_offset=5).read_bytes() == data
    assert follower.leader_epoch_cache.entries == [(4, 0), (5, 3)]
    with pytest.raises(ValueError):
        follower.append_as_follower(data)


def test_retention(log_dir, clock):
    config = LogConfig(segment_bytes=1000, retention_ms=10_000)
    plog = PartitionLog(log_dir, config, clock=clock)
    now = clock.now
    for i in range(20):
        plog.append(build_batch(5, timestamp=now - 50_000 + 1000 * i, value_size=50))
    plog.high_watermark = plog.log_end_offset
    before = len(plog.segments)
    deleted = plog.delete_old_segments(now - 30_000)
    assert 0 < deleted < before
    assert plog.log_start_offset == plog.segments[0].base_offset > 0
    with pytest.raises(OffsetOutOfRange):
        plog.read(0, 100)
    # everything expired: the log rolls and keeps an empty active segment
    plog.delete_old_segments(now + 100_000)
    assert plog.log_start_offset == plog.log_end_offset == 100
    assert len(plog.segments) == 1 and plog.active_segment.size == 0
    assert plog.append(build_batch(1)).base_offset == 100


def test_retention_bytes(log_dir):
    config = LogConfig(segment_bytes=1000, retention_ms=-1, retention_bytes=2500)
    plog = PartitionLog(log_dir, config)
    _append_many(plog, 20)
    plog.delete_old_segments()
    assert plog.size <= 2500 + 1000
    assert plog.size > 2500 - 1000


def test_flush_policy(log_dir, clock):
    plog = PartitionLog(log_dir, LogConfig(flush_messages=10), clock=clock)
    plog.append(build_batch(5))
    assert plog.recovery_point == 0
    plog.append(build_batch(5))
    assert plog.recovery_point == 10
    timed = PartitionLog(log_dir[:-1] + "1", LogConfig(flush_ms=1000), clock=clock)
    timed.append(build_batch(5))
    assert timed.recovery_point == 0
    assert not timed.flush_if_due(clock.now + 10)
    assert timed.flush_if_due(clock.now + 1000)
    assert timed.recovery_point == 5


def test_iter_batch_headers(log_dir):
    plog = PartitionLog(log_dir, LogConfig(segment_bytes=1000))
    _append_many(plog, 10)
    assert [h.base_offset for h in plog.iter_batch_headers()] == list(range(0, 50, 5))
    assert [h.base_offset for h in plog.iter_batch_headers(27)] == list(range(25, 50, 5))
    batches = list(plog.iter_batches(40))
    assert [h.base_offset for h, _ in batches] == [40, 45]
    assert all(split_batches(data)[0] == h for h, data in batches)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])  # gzip, snappy, lz4, zstd
def test_compressed_batch_timestamp(log_dir, codec):
    plog = PartitionLog(log_dir)
    plog.append(build_batch(5, timestamp=1000, compression=codec))
    plog.high_watermark = plog.log_end_offset
    assert plog.offset_for_timestamp(1002) == (2, 1002)  # record-level, inside the batch
    assert plog.offset_for_timestamp(MAX_TIMESTAMP) == (4, 1004)
