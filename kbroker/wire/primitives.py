"""Kafka's primitive wire types: fixed-width integers, varints and their sizes.

Everything here works on ``bytes``/``bytearray``/``memoryview`` and an integer
position, so both codecs (compiled and reference) share one definition of each type.
"""

from __future__ import annotations

import struct

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
UINT16 = struct.Struct(">H")
INT32 = struct.Struct(">i")
UINT32 = struct.Struct(">I")
INT64 = struct.Struct(">q")
FLOAT64 = struct.Struct(">d")

ZERO_UUID = bytes(16)


class DecodeError(ValueError):
    """The bytes do not form a valid message for the schema being decoded."""


def write_uvarint(out: bytearray, value: int) -> None:
    """Append an unsigned LEB128 varint (Kafka's UNSIGNED_VARINT)."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return (value, new position)."""
    result = 0
    shift = 0
    while True:
        try:
            byte = buf[pos]
        except IndexError:
            raise DecodeError("truncated varint") from None
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def write_varint(out: bytearray, value: int) -> None:
    """Append a zig-zag signed varint (Kafka's VARINT/VARLONG, as used in records)."""
    write_uvarint(out, (value << 1) ^ (value >> 63))


def read_varint(buf, pos: int) -> tuple[int, int]:
    """Read a zig-zag signed varint at ``pos``; return (value, new position)."""
    raw, pos = read_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def uvarint_size(value: int) -> int:
    """Number of bytes ``write_uvarint`` uses for ``value``."""
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size
