"""RecordBatch v2 framing: the 61-byte header, CRC32C, and in-place offset stamping.

The broker never rewrites records on the produce or fetch path: it validates the
header, stamps the base offset (and LogAppendTime) into it, and stores the batch bytes
as they came. Record-level decoding lives in ``kbroker.wire.record``.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from crc32c import crc32c

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base offset + batch length: the bytes not counted in batch_length
MAGIC = 2

# attribute bits
COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_LOG_APPEND = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET = struct.Struct(">q")
_TIMES = struct.Struct(">qq")
_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")


class CorruptBatch(ValueError):
    """The bytes are not a valid RecordBatch v2 (Kafka's CORRUPT_MESSAGE)."""


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies in a log, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Read a batch header at ``pos`` without validating the CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatch("record batch shorter than its 61-byte header")
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptBatch(f"unsupported record batch magic {header.magic}")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptBatch(f"record batch length {header.batch_length} is too small")
    return header


def crc_of(buf, pos: int, header: BatchHeader) -> int:
    """CRC32C over attributes..end of the batch at ``pos``."""
    return crc32c(memoryview(buf)[pos + 21 : pos + header.size])


def split_batches(buf) -> list[BatchHeader]:
    """Validate a produce payload: whole v2 batches, CRCs right, nothing left over.

    Returns the headers in order. Raises CorruptBatch naming the first problem found.
    """
    headers = []
    pos = 0
    end = len(buf)
    while pos < end:
        header = parse_header(buf, pos)
        if pos + header.size > end:
            raise CorruptBatch("record batch is truncated")
        if crc_of(buf, pos, header) != header.crc:
            raise CorruptBatch("record batch CRC mismatch")
        if header.last_offset_delta < 0 or header.records_count < 0:
            raise CorruptBatch("record batch has a negative record count")
        headers.append(header)
        pos += header.size
    if not headers:
        raise CorruptBatch("produce request carries no record batch")
    return headers


def stamp(
    buf: bytearray,
    pos: int,
    base_offset: int,
    log_append_time: int | None = None,
    leader_epoch: int | None = None,
) -> None:
    """Write the assigned base offset (and LogAppendTime, leader epoch) into a batch.

    The base offset and leader epoch sit outside the CRC; setting LogAppendTime changes
    attributes and max timestamp, so the CRC is recomputed only then.
    """
    _OFFSET.pack_into(buf, pos, base_offset)
    if leader_epoch is not None:
        _EPOCH.pack_into(buf, pos + 12, leader_epoch)
    if log_append_time is not None:
        header = parse_header(buf, pos)
        struct.pack_into(">h", buf, pos + 21, header.attributes | TIMESTAMP_TYPE_LOG_APPEND)
        _TIMES.pack_into(buf, pos + 27, header.base_timestamp, log_append_time)
        _CRC.pack_into(buf, pos + 17, crc_of(buf, pos, header))
