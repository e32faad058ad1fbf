"""Record-level codec for RecordBatch v2: decode a batch's records, build a batch.

The produce and fetch paths never come here (batches stay bytes); compaction,
re-compression, the internal topics (``__consumer_offsets``, ``__transaction_state``)
and transaction markers do. A record inside a batch is::

    length: varint            (bytes after this field)
    attributes: int8          (unused, 0)
    timestampDelta: varlong   (from the batch's base timestamp)
    offsetDelta: varint       (from the batch's base offset)
    keyLength: varint, key    (-1: null)
    valueLength: varint, value (-1: null)
    headersCount: varint
    [headerKeyLength: varint, headerKey: utf-8, headerValueLength: varint, value]

All varints are zig-zag (protobuf's sint). Header keys are decoded with
``surrogateescape`` so a key that is not valid UTF-8 still round-trips byte for byte.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from crc32c import crc32c

from kbroker.wire.compression import compress, decompress
from kbroker.wire.primitives import DecodeError, read_varint, write_varint
from kbroker.wire.records import (
    COMPRESSION_MASK,
    CONTROL,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    TIMESTAMP_TYPE_LOG_APPEND,
    TRANSACTIONAL,
    BatchHeader,
    CorruptBatch,
    crc_of,
    parse_header,
)

_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC = struct.Struct(">I")
_CRC_POS = 17
_ATTRIBUTES_POS = 21
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")

# control record types (the key's second int16)
CONTROL_ABORT = 0
CONTROL_COMMIT = 1

Header = tuple[str, bytes | None]


class Record(NamedTuple):
    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]


class ControlMarker(NamedTuple):
    """The key and value of a transaction marker (a control record)."""

    commit: bool
    coordinator_epoch: int


# --- decode -----------------------------------------------------------------------


def decode_records(
    batch, pos: int = 0, *, verify_crc: bool = True
) -> tuple[BatchHeader, list[Record]]:
    """Decode the v2 batch at ``pos`` in ``batch``: its header and its records.

    Decompresses as the attributes say. Checks the CRC unless ``verify_crc`` is false.
    Raises CorruptBatch (or its subclasses from ``compression``) on malformed input.
    """
    header = parse_header(batch, pos)
    end = pos + header.size
    if end > len(batch):
        raise CorruptBatch("record batch is truncated")
    if verify_crc and crc_of(batch, pos, header) != header.crc:
        raise CorruptBatch("record batch CRC mismatch")
    if header.records_count < 0:
        raise CorruptBatch("record batch has a negative record count")
    body = memoryview(batch)[pos + HEADER_SIZE : end]
    codec = header.attributes & COMPRESSION_MASK
    if codec:
        body = decompress(codec, body)
    return header, parse_records(body, header.records_count)


def parse_records(buf, count: int) -> list[Record]:
    """Parse exactly ``count`` records filling all of ``buf`` (uncompressed bytes)."""
    records = []
    append = records.append
    view = memoryview(buf)
    end = len(view)
    pos = 0
    try:
        for _ in range(count):
            length, pos = read_varint(view, pos)
            record_end = pos + length
            if length < 6 or record_end > end:
                raise CorruptBatch("record length is out of bounds")
            pos += 1  # attributes
            timestamp_delta, pos = read_varint(view, pos)
            offset_delta, pos = read_varint(view, pos)
            key, pos = _read_bytes(view, pos, record_end)
            value, pos = _read_bytes(view, pos, record_end)
            n_headers, pos = read_varint(view, pos)
            if n_headers < 0:
                raise CorruptBatch(f"invalid record header count {n_headers}")
            headers = []
            for _ in range(n_headers):
                h_key, pos = _read_bytes(view, pos, record_end)
                if h_key is None:
                    raise CorruptBatch("record header key is null")
                h_value, pos = _read_bytes(view, pos, record_end)
                headers.append((h_key.decode("utf-8", "surrogateescape"), h_value))
            if pos != record_end:
                raise CorruptBatch("record length does not match its fields")
            append(Record(offset_delta, timestamp_delta, key, value, headers))
    except DecodeError as exc:
        raise CorruptBatch(f"malformed record: {exc}") from exc
    if pos != end:
        raise CorruptBatch(f"{end - pos} bytes left over after {count} records")
    return records


def _read_bytes(view, pos: int, limit: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(view, pos)
    if length < 0:
        if length != -1:
            raise CorruptBatch(f"invalid field length {length}")
        return None, pos
    stop = pos + length
    if stop > limit:
        raise CorruptBatch("record field runs past the record")
    return bytes(view[pos:stop]), stop


# --- build ------------------------------------------------------------------------


def encode_record(
    out: bytearray,
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[Header] | None = (),
) -> None:
    """Append one record (length prefix included) to ``out``."""
    body = bytearray(b"\x00")  # attributes
    write_varint(body, timestamp_delta)
    write_varint(body, offset_delta)
    if key is None:
        body.append(1)  # zig-zag -1
    else:
        write_varint(body, len(key))
        body += key
    if value is None:
        body.append(1)
    else:
        write_varint(body, len(value))
        body += value
    headers = list(headers or ())
    write_varint(body, len(headers))
    for h_key, h_value in headers:
        raw = h_key.encode("utf-8", "surrogateescape") if isinstance(h_key, str) else h_key
        write_varint(body, len(raw))
        body += raw
        if h_value is None:
            body.append(1)
        else:
            write_varint(body, len(h_value))
            body += h_value
    write_varint(out, len(body))
    out += body


def build_batch(
    records: Sequence[tuple[bytes | None, bytes | None, Iterable[Header] | None, int | None]],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type_log_append: bool = False,
    compression_level: int | None = None,
) -> bytes:
    """Build a RecordBatch v2 from ``(key, value, headers, timestamp)`` tuples.

    Offset deltas are 0..n-1; a None timestamp means now (ms). The base timestamp is
    the first record's, the max timestamp the largest, as Java's builder does. The
    records are compressed with ``compression`` (always, even when that does not
    shrink them: the attribute must name the codec asked for).
    """
    if not records:
        raise ValueError("a record batch needs at least one record")
    now = None
    stamped = []
    for key, value, headers, timestamp in records:
        if timestamp is None:
            if now is None:
                now = int(time.time() * 1000)
            timestamp = now
        stamped.append((key, value, headers, timestamp))
    base_timestamp = stamped[0][3]
    max_timestamp = max(r[3] for r in stamped)

    body = bytearray()
    for delta, (key, value, headers, timestamp) in enumerate(stamped):
        encode_record(body, delta, timestamp - base_timestamp, key, value, headers)
    if compression:
        body = compress(compression, body, compression_level)

    attributes = compression & COMPRESSION_MASK
    if timestamp_type_log_append:
        attributes |= TIMESTAMP_TYPE_LOG_APPEND
    if transactional:
        attributes |= TRANSACTIONAL
    if control:
        attributes |= CONTROL

    out = bytearray(HEADER_SIZE)
    out += body
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        len(out) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC,
        0,  # crc, below
        attributes,
        len(stamped) - 1,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(stamped),
    )
    _CRC.pack_into(out, _CRC_POS, crc32c(memoryview(out)[_ATTRIBUTES_POS:]))
    return bytes(out)


# --- control records --------------------------------------------------------------


def end_txn_marker(commit: bool, coordinator_epoch: int) -> tuple[bytes, bytes]:
    """Key and value of a COMMIT/ABORT control record (EndTransactionMarker v0)."""
    key = _CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    return key, _END_TXN_VALUE.pack(0, coordinator_epoch)


def parse_end_txn_marker(key: bytes | None, value: bytes | None) -> ControlMarker:
    """Read a COMMIT/ABORT control record's key and value."""
    if key is None or len(key) < 4 or value is None or len(value) < 6:
        raise CorruptBatch("control record is too short")
    _version, kind = _CONTROL_KEY.unpack_from(key)
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise CorruptBatch(f"control record type {kind} is not a transaction marker")
    _version, epoch = _END_TXN_VALUE.unpack_from(value)
    return ControlMarker(kind == CONTROL_COMMIT, epoch)
