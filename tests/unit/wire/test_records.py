import struct
import types

import cramjam
import kafka.codec
import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from kbroker.wire.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD, CompressionError
from kbroker.wire.record import (
    Record,
    build_batch,
    decode_records,
    encode_record,
    end_txn_marker,
    parse_end_txn_marker,
    parse_records,
)
from kbroker.wire.records import (
    HEADER_SIZE,
    CorruptBatch,
    crc_of,
    parse_header,
    split_batches,
    stamp,
)

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
T0 = 1_700_000_000_000

# (key, value, headers, timestamp): nulls, empties, binary, unicode keys, big values,
# timestamps out of order (negative deltas), duplicate header keys
RECORDS = [
    (b"key-0", b"value-0", [], T0),
    (None, b"no key", [("h1", b"v1")], T0 + 5),
    (b"no value", None, [("h1", None), ("h1", b"again")], T0 + 3),
    (None, None, [], T0 - 100),
    (b"", b"", [("", b"")], T0 + 1),
    (b"\x00\xff" * 50, bytes(range(256)) * 40, [("ünïcødé ✓", b"\x00\x01")], T0 + 2000),
] + [
    (b"k%d" % i, b"repeated value %d " % (i % 7) * 20, [("n", b"%d" % i)], T0 + i)
    for i in range(300)
]


@pytest.fixture(autouse=True)
def kafka_python_snappy(monkeypatch):
    """kafka-python wants python-snappy; give it cramjam's raw snappy instead."""
    shim = types.SimpleNamespace(
        compress=lambda b: bytes(cramjam.snappy.compress_raw(b)),
        decompress=lambda b: bytes(cramjam.snappy.decompress_raw(b)),
    )
    monkeypatch.setattr(kafka.codec, "snappy", shim)


def kafka_python_batch(records, codec, **producer):
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=producer.get("transactional", False),
        producer_id=producer.get("producer_id", -1),
        producer_epoch=producer.get("producer_epoch", -1),
        base_sequence=producer.get("base_sequence", -1),
        batch_size=1 << 30,
    )
    for offset, (key, value, headers, timestamp) in enumerate(records):
        assert builder.append(offset, timestamp, key, value, headers) is not None
    return bytes(builder.build())


# --- interop with a real client's codec ----------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_decode_batch_built_by_kafka_python(codec):
    batch = kafka_python_batch(RECORDS, codec, producer_id=42, producer_epoch=3, base_sequence=7)
    header, records = decode_records(batch)
    assert header.compression == codec  # kafka-python kept the codec: the data compresses
    assert header.records_count == len(RECORDS)
    assert header.last_offset_delta == len(RECORDS) - 1
    assert header.base_timestamp == T0
    assert header.max_timestamp == max(r[3] for r in RECORDS)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 7)
    assert len(records) == len(RECORDS)
    for i, (record, (key, value, headers, ts)) in enumerate(zip(records, RECORDS, strict=True)):
        assert record == Record(i, ts - T0, key, value, headers)
    assert split_batches(batch) == [header]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_reads_our_batch(codec):
    batch = build_batch(
        RECORDS,
        base_offset=1000,
        compression=codec,
        producer_id=42,
        producer_epoch=3,
        base_sequence=7,
        transactional=True,
        partition_leader_epoch=5,
    )
    theirs = DefaultRecordBatch(batch)
    assert theirs.validate_crc()
    assert theirs.base_offset == 1000
    assert theirs.compression_type == codec
    assert theirs.is_transactional and not theirs.is_control_batch
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (42, 3, 7)
    assert theirs.leader_epoch == 5
    assert theirs.last_offset_delta == len(RECORDS) - 1
    assert theirs.first_timestamp == T0
    assert theirs.max_timestamp == max(r[3] for r in RECORDS)
    assert theirs.size_in_bytes == len(batch)
    got = list(theirs)
    assert len(got) == len(RECORDS)
    for i, (record, (key, value, headers, ts)) in enumerate(zip(got, RECORDS, strict=True)):
        assert record.offset == 1000 + i
        assert record.timestamp == ts
        assert record.key == key
        assert record.value == value
        assert list(record.headers) == headers


def test_uncompressed_batch_is_byte_identical_to_kafka_python():
    ours = build_batch(RECORDS, producer_id=42, producer_epoch=3, base_sequence=7)
    theirs = kafka_python_batch(RECORDS, NONE, producer_id=42, producer_epoch=3, base_sequence=7)
    # kafka-python writes leader epoch 0 (the broker sets it); ours defaults to -1
    ours = bytearray(ours)
    ours[12:16] = b"\x00\x00\x00\x00"
    assert bytes(ours) == theirs


# --- build / decode ---------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip(codec):
    batch = build_batch(RECORDS, compression=codec, base_offset=77)
    header, records = decode_records(batch)
    assert header.compression == codec
    assert header.base_offset == 77
    assert header.size == len(batch)
    assert [(r.key, r.value, r.headers, T0 + r.timestamp_delta) for r in records] == RECORDS
    assert [r.offset_delta for r in records] == list(range(len(RECORDS)))


def test_attributes_and_defaults():
    key, value = end_txn_marker(True, 9)
    batch = build_batch(
        [(key, value, None, T0)],
        control=True,
        transactional=True,
        producer_id=1,
        producer_epoch=0,
        timestamp_type_log_append=True,
    )
    header, (record,) = decode_records(batch)
    assert header.is_control and header.is_transactional
    assert header.attributes & 0x08
    assert header.partition_leader_epoch == -1
    assert header.base_sequence == -1
    assert parse_end_txn_marker(record.key, record.value) == (True, 9)
    assert DefaultRecordBatch(batch).is_control_batch
    assert end_txn_marker(False, 1)[0] == b"\x00\x00\x00\x00"


def test_none_timestamp_means_now():
    header, _ = decode_records(build_batch([(b"k", b"v", [], None)]))
    assert header.base_timestamp > T0


def test_empty_batch_refused():
    with pytest.raises(ValueError):
        build_batch([])


def test_non_utf8_header_key_round_trips():
    raw_key = b"\xff\xfe bad utf-8"
    batch = bytearray(build_batch([(b"k", b"v", [("placeholder!", b"x")], T0)]))
    # splice a non-UTF-8 key of the same length in and fix the CRC
    pos = batch.index(b"placeholder!")
    batch[pos : pos + len(raw_key)] = raw_key
    assert len(raw_key) == len(b"placeholder!")
    struct.pack_into(">I", batch, 17, crc_of(batch, 0, parse_header(batch)))
    _, (record,) = decode_records(batch)
    rebuilt = build_batch([(record.key, record.value, record.headers, T0)])
    assert rebuilt == bytes(batch)


def test_decode_at_position():
    a = build_batch(RECORDS[:3])
    b = build_batch(RECORDS[3:6], compression=ZSTD, base_offset=3)
    log = a + b
    header, records = decode_records(log, len(a))
    assert header.base_offset == 3 and len(records) == 3


def test_decode_rejects_bad_crc_unless_told_not_to():
    batch = bytearray(build_batch(RECORDS[:5]))
    batch[-1] ^= 1
    with pytest.raises(CorruptBatch, match="CRC"):
        decode_records(batch)
    header, _ = decode_records(batch, verify_crc=False)
    assert header.records_count == 5


def _with_count(batch, count):
    batch = bytearray(batch)
    struct.pack_into(">i", batch, 57, count)
    struct.pack_into(">I", batch, 17, crc_of(batch, 0, parse_header(batch)))
    return batch


def test_decode_rejects_wrong_record_count():
    batch = build_batch(RECORDS[:5])
    with pytest.raises(CorruptBatch, match="left over"):
        decode_records(_with_count(batch, 4))
    with pytest.raises(CorruptBatch):
        decode_records(_with_count(batch, 6))
    with pytest.raises(CorruptBatch):
        decode_records(_with_count(batch, -1))


def test_decode_rejects_corrupt_compressed_body():
    batch = bytearray(build_batch(RECORDS, compression=LZ4))
    batch[HEADER_SIZE + 10 : HEADER_SIZE + 30] = bytes(20)
    struct.pack_into(">I", batch, 17, crc_of(batch, 0, parse_header(batch)))
    with pytest.raises(CompressionError):
        decode_records(batch)


def test_parse_records_rejects_malformed():
    good = bytearray()
    encode_record(good, 0, 0, b"key", b"value", [("h", b"v")])
    assert parse_records(good, 1) == [Record(0, 0, b"key", b"value", [("h", b"v")])]
    for cut in range(1, len(good)):
        with pytest.raises(CorruptBatch):
            parse_records(good[:cut], 1)
    with pytest.raises(CorruptBatch):
        parse_records(good + b"\x00", 1)
    bad_len = bytearray(good)
    bad_len[0] += 2  # record length larger than its fields
    with pytest.raises(CorruptBatch):
        parse_records(bad_len + b"\x00", 1)
    with pytest.raises(CorruptBatch):  # varint that never ends
        parse_records(b"\xff" * 20, 1)
    negative_headers = bytearray()
    encode_record(negative_headers, 0, 0, None, None, [])
    negative_headers[-1] = 3  # zig-zag -2
    with pytest.raises(CorruptBatch, match="header count"):
        parse_records(negative_headers, 1)


# --- records.split_batches / stamp ---------------------------------------------------


def test_split_batches_accepts_several():
    batches = [build_batch(RECORDS[i : i + 2], compression=c) for i, c in enumerate(CODECS)]
    headers = split_batches(b"".join(batches))
    assert [h.size for h in headers] == [len(b) for b in batches]


def test_split_batches_rejects_wrong_crc():
    batch = bytearray(build_batch(RECORDS[:4]))
    batch[HEADER_SIZE + 3] ^= 0x40
    with pytest.raises(CorruptBatch, match="CRC"):
        split_batches(batch)
    batch = bytearray(build_batch(RECORDS[:4]))
    batch[17] ^= 1  # the CRC field itself
    with pytest.raises(CorruptBatch, match="CRC"):
        split_batches(batch)


def test_split_batches_rejects_truncated():
    batch = build_batch(RECORDS[:4])
    with pytest.raises(CorruptBatch, match="truncated"):
        split_batches(batch[:-1])
    with pytest.raises(CorruptBatch):
        split_batches(batch[:30])  # not even a header
    with pytest.raises(CorruptBatch):
        split_batches(batch + batch[:-5])


def test_split_batches_rejects_magic_other_than_2():
    batch = bytearray(build_batch(RECORDS[:4]))
    for magic in (0, 1, 3):
        batch[16] = magic
        with pytest.raises(CorruptBatch, match="magic"):
            split_batches(batch)


def test_split_batches_rejects_trailing_garbage():
    batch = build_batch(RECORDS[:4])
    for garbage in (b"\x00", b"junk" * 5, bytes(HEADER_SIZE + 10)):
        with pytest.raises(CorruptBatch):
            split_batches(batch + garbage)


def test_split_batches_rejects_empty():
    with pytest.raises(CorruptBatch):
        split_batches(b"")


def test_stamp_log_append_time_keeps_crc_valid():
    first = build_batch(RECORDS[:3], compression=GZIP)
    second = build_batch(RECORDS[3:8], compression=SNAPPY)
    buf = bytearray(first + second)
    stamp(buf, 0, 500, log_append_time=T0 + 999_999, leader_epoch=4)
    stamp(buf, len(first), 503, log_append_time=T0 + 999_999, leader_epoch=4)
    h1, h2 = split_batches(buf)  # CRCs still valid
    assert (h1.base_offset, h2.base_offset) == (500, 503)
    assert h1.max_timestamp == h2.max_timestamp == T0 + 999_999
    assert h1.base_timestamp == T0 and h1.attributes & 0x08 and h1.compression == GZIP
    assert h2.partition_leader_epoch == 4
    theirs = DefaultRecordBatch(bytes(buf[len(first) :]))
    assert theirs.validate_crc()
    assert theirs.timestamp_type == 1  # LogAppendTime
    assert [r.offset for r in theirs] == list(range(503, 508))
    # records themselves untouched
    _, records = decode_records(buf, len(first))
    assert [r.value for r in records] == [r[1] for r in RECORDS[3:8]]


def test_stamp_offset_only_keeps_bytes_and_crc():
    batch = build_batch(RECORDS[:3])
    buf = bytearray(batch)
    stamp(buf, 0, 123456789)
    assert buf[8:] == batch[8:]
    assert split_batches(buf)[0].base_offset == 123456789
