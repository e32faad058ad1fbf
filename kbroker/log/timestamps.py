"""Record-level timestamp search inside one batch (for ListOffsets).

Only the first fields of each record are decoded: length, attributes, timestamp delta,
offset delta. Compressed batches go through ``kbroker.wire.compression.decompress``
when that module is available; otherwise the answer falls back to the batch's
granularity (its base offset and max timestamp).
"""

from __future__ import annotations

from kbroker.wire.records import HEADER_SIZE, TIMESTAMP_TYPE_LOG_APPEND, BatchHeader


def _varint(buf, pos: int) -> tuple[int, int]:
    """Zigzag varint at ``pos``: (value, next position)."""
    shift = 0
    raw = 0
    while True:
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint is too long")


def _decompress(codec: int, data) -> bytes | None:
    try:
        from kbroker.wire.compression import decompress
    except ImportError:
        return None
    return decompress(codec, bytes(data))


def record_timestamps(batch, header: BatchHeader):
    """(offset, timestamp) of each record of the batch; None if it cannot be decoded."""
    if header.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        # LogAppendTime: every record's timestamp is the batch's max timestamp
        return [(header.base_offset, header.max_timestamp)]
    body = memoryview(batch)[HEADER_SIZE : header.size]
    if header.compression:
        body = _decompress(header.compression, body)
        if body is None:
            return None
    out = []
    pos = 0
    base_offset, base_ts = header.base_offset, header.base_timestamp
    for _ in range(header.records_count):
        length, pos = _varint(body, pos)
        end = pos + length
        pos += 1  # attributes
        ts_delta, pos = _varint(body, pos)
        offset_delta, pos = _varint(body, pos)
        out.append((base_offset + offset_delta, base_ts + ts_delta))
        pos = end
    return out


def first_record_at_or_after(
    batch, header: BatchHeader, timestamp: int, min_offset: int = 0
) -> tuple[int, int]:
    """(offset, timestamp) of the first record with timestamp >= ``timestamp``.

    ``batch`` holds the whole batch's bytes; its max timestamp must be >= the target.
    Falls back to (max(base offset, min_offset), max timestamp) when the records
    cannot be decoded.
    """
    if header.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        return max(header.base_offset, min_offset), header.max_timestamp
    try:
        records = record_timestamps(batch, header)
    except Exception:  # undecodable: answer at the batch's granularity
        records = None
    if records:
        for offset, ts in records:
            if ts >= timestamp and offset >= min_offset:
                return offset, ts
    return max(header.base_offset, min_offset), header.max_timestamp


def offset_of_timestamp(batch, header: BatchHeader, timestamp: int) -> int:
    """Offset of the first record carrying exactly ``timestamp`` (batch last offset else)."""
    if header.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        return header.base_offset
    try:
        records = record_timestamps(batch, header)
    except Exception:
        records = None
    for offset, ts in records or ():
        if ts == timestamp:
            return offset
    return header.last_offset
