import os

from log_helpers import build_batch

from kbroker.log.config import LogConfig
from kbroker.log.segment import LogSegment
from kbroker.wire.records import parse_header, split_batches, stamp


def _stamped(base_offset: int, count: int, timestamp: int, value_size: int = 10):
    buf = bytearray(build_batch(count, timestamp, value_size=value_size))
    stamp(buf, 0, base_offset)
    return buf, split_batches(buf)


def _fill(segment: LogSegment, batches: int = 50, count: int = 4, value_size: int = 100):
    offset = segment.base_offset
    payload = bytearray()
    for i in range(batches):
        buf, headers = _stamped(offset, count, 1000 + 10 * i, value_size)
        segment.append(buf, headers)
        payload += buf
        offset += count
    return bytes(payload)


def test_append_read_and_index(tmp_path):
    config = LogConfig(index_interval_bytes=1024)
    segment = LogSegment(str(tmp_path), 100, config, create=True)
    payload = _fill(segment)
    assert os.path.basename(segment.log_path) == "00000000000000000100.log"
    assert segment.next_offset == 300
    assert segment.size == len(payload)
    assert len(segment.offset_index) > 5
    assert segment.read(100, 1 << 20).read_bytes() == payload
    # every entry points at the start of a batch whose last offset is the entry's offset
    for offset, position in segment.offset_index.entries():
        header = parse_header(payload, position)
        assert header.last_offset == offset
    # an offset inside a batch is answered from the start of that batch
    slice_ = segment.read(102, 10)
    assert slice_.position == 0 and slice_.size == len(payload) // 50  # one whole batch
    slice_ = segment.read(205, 1 << 20)
    first = split_batches(slice_.read_bytes())[0]
    assert first.base_offset == 204 and first.last_offset == 207
    assert segment.read(300, 100) is None
    assert segment.max_timestamp == 1000 + 10 * 49 + 3
    segment.close()


def test_find_offset_by_timestamp(tmp_path):
    config = LogConfig(index_interval_bytes=512)
    segment = LogSegment(str(tmp_path), 0, config, create=True)
    _fill(segment)
    # batch i holds offsets 4i..4i+3 with timestamps 1000+10i .. 1000+10i+3
    assert segment.find_offset_by_timestamp(0) == (0, 1000)
    assert segment.find_offset_by_timestamp(1250) == (100, 1250)
    assert segment.find_offset_by_timestamp(1252) == (102, 1252)  # first record >= ts
    assert segment.find_offset_by_timestamp(1251) == (101, 1251)
    assert segment.find_offset_by_timestamp(1254) == (104, 1260)
    assert segment.find_offset_by_timestamp(99999) is None
    segment.close()


def test_recover_truncates_torn_tail_and_rebuilds(tmp_path):
    config = LogConfig(index_interval_bytes=1024)
    segment = LogSegment(str(tmp_path), 0, config, create=True)
    payload = _fill(segment)
    entries = segment.offset_index.entries()
    segment.close()
    batch_size = len(payload) // 50
    with open(segment.log_path, "r+b") as f:
        f.truncate(len(payload) - batch_size // 2)
    os.unlink(segment.index_path)
    reopened = LogSegment(str(tmp_path), 0, config)
    truncated = reopened.recover()
    assert truncated == batch_size - batch_size // 2
    assert reopened.size == len(payload) - batch_size
    assert reopened.next_offset == 196
    assert reopened.offset_index.entries() == [e for e in entries if e[0] < 196]
    assert reopened.read(0, 1 << 20).read_bytes() == payload[: len(payload) - batch_size]


def test_recover_stops_at_crc_mismatch(tmp_path):
    segment = LogSegment(str(tmp_path), 0, LogConfig(), create=True)
    payload = _fill(segment, batches=5)
    segment.close()
    batch_size = len(payload) // 5
    with open(segment.log_path, "r+b") as f:
        f.seek(3 * batch_size + 70)  # inside the 4th batch's records
        f.write(b"\xff")
    reopened = LogSegment(str(tmp_path), 0, LogConfig())
    assert reopened.recover() == 2 * batch_size
    assert reopened.next_offset == 12


def test_corrupt_index_is_rebuilt_on_load(tmp_path):
    config = LogConfig(index_interval_bytes=1024)
    segment = LogSegment(str(tmp_path), 0, config, create=True)
    _fill(segment)
    entries = segment.offset_index.entries()
    time_entries = segment.time_index.entries()
    segment.close()
    with open(segment.index_path, "ab") as f:
        f.write(b"\x01\x02\x03")
    reopened = LogSegment(str(tmp_path), 0, config)
    assert reopened.offset_index.entries() == entries
    # close() added the final max-timestamp entry; a rebuild lists the indexed ones
    assert reopened.time_index.entries() == time_entries
    assert reopened.next_offset == 200


def test_truncate_to(tmp_path):
    config = LogConfig(index_interval_bytes=1024)
    segment = LogSegment(str(tmp_path), 0, config, create=True)
    payload = _fill(segment)
    batch_size = len(payload) // 50
    assert segment.truncate_to(42) == len(payload) - 10 * batch_size  # batch 40..43 goes
    assert segment.next_offset == 40
    assert segment.size == 10 * batch_size
    assert all(offset < 40 for offset, _ in segment.offset_index.entries())
    assert segment.max_timestamp == 1000 + 90 + 3
