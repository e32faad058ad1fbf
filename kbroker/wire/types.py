"""Readers and writers for each schema type, in classic and compact (flexible) form.

Readers take ``(buf, pos)`` and return ``(value, pos)``; writers take ``(out, value)``
where ``out`` is a :class:`Writer`. Both codecs are built from these.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kbroker.wire.primitives import (
    INT16,
    INT32,
    DecodeError,
    read_uvarint,
    write_uvarint,
)
from kbroker.wire.schema import FIXED_FORMATS


class Writer(bytearray):
    """An output buffer that can also hold records regions (file slices) by reference.

    ``regions`` lists ``(offset, region)``: the region's bytes belong at that offset of
    the buffer. Fetch responses use this to send log segments with sendfile rather than
    copying them through Python.
    """

    def __init__(self) -> None:
        super().__init__()
        self.regions: list[tuple[int, object]] = []

    def total_size(self) -> int:
        return len(self) + sum(region.size for _, region in self.regions)

    def parts(self) -> list:
        """The output in order: bytes chunks interleaved with regions."""
        if not self.regions:
            return [bytes(self)]
        parts: list = []
        start = 0
        for offset, region in self.regions:
            if offset > start:
                parts.append(bytes(self[start:offset]))
            parts.append(region)
            start = offset
        if start < len(self):
            parts.append(bytes(self[start:]))
        return parts


def _need(buf, pos: int, size: int) -> None:
    if size < 0 or pos + size > len(buf):
        raise DecodeError(f"length {size} runs past the end of the message")


def _fixed_reader(fmt: str) -> Callable:
    packer = struct.Struct(">" + fmt)
    size = packer.size

    def read(buf, pos: int):
        return packer.unpack_from(buf, pos)[0], pos + size

    return read


def _fixed_writer(fmt: str) -> Callable:
    pack = struct.Struct(">" + fmt).pack

    def write(out: Writer, value) -> None:
        out += pack(value)

    return write


# -- strings and bytes ----------------------------------------------------------------
def read_string(buf, pos: int):
    (size,) = INT16.unpack_from(buf, pos)
    pos += 2
    if size < 0:
        return None, pos
    _need(buf, pos, size)
    return str(buf[pos : pos + size], "utf-8"), pos + size


def read_compact_string(buf, pos: int):
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    _need(buf, pos, size)
    return str(buf[pos : pos + size], "utf-8"), pos + size


def read_bytes(buf, pos: int):
    (size,) = INT32.unpack_from(buf, pos)
    pos += 4
    if size < 0:
        return None, pos
    _need(buf, pos, size)
    return bytes(buf[pos : pos + size]), pos + size


def read_compact_bytes(buf, pos: int):
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    _need(buf, pos, size)
    return bytes(buf[pos : pos + size]), pos + size


def read_records(buf, pos: int):
    """Records stay a view into the request frame: stamped in place, written from there."""
    (size,) = INT32.unpack_from(buf, pos)
    pos += 4
    if size < 0:
        return None, pos
    _need(buf, pos, size)
    return buf[pos : pos + size], pos + size


def read_compact_records(buf, pos: int):
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    _need(buf, pos, size)
    return buf[pos : pos + size], pos + size


def write_string(out: Writer, value) -> None:
    if value is None:
        out += b"\xff\xff"
        return
    data = value.encode()
    out += INT16.pack(len(data))
    out += data


def write_compact_string(out: Writer, value) -> None:
    if value is None:
        out.append(0)
        return
    data = value.encode()
    write_uvarint(out, len(data) + 1)
    out += data


def write_bytes(out: Writer, value) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
        return
    out += INT32.pack(len(value))
    out += value


def write_compact_bytes(out: Writer, value) -> None:
    if value is None:
        out.append(0)
        return
    write_uvarint(out, len(value) + 1)
    out += value


def _is_inline(value) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


def write_records(out: Writer, value) -> None:
    if value is None or _is_inline(value):
        write_bytes(out, value)
        return
    out += INT32.pack(value.size)
    out.regions.append((len(out), value))


def write_compact_records(out: Writer, value) -> None:
    if value is None or _is_inline(value):
        write_compact_bytes(out, value)
        return
    write_uvarint(out, value.size + 1)
    out.regions.append((len(out), value))


# -- array lengths --------------------------------------------------------------------
def read_array_length(buf, pos: int):
    (size,) = INT32.unpack_from(buf, pos)
    pos += 4
    if size > len(buf) - pos:
        raise DecodeError(f"array length {size} exceeds the message")
    return size, pos


def read_compact_array_length(buf, pos: int):
    size, pos = read_uvarint(buf, pos)
    size -= 1
    if size > len(buf) - pos:
        raise DecodeError(f"array length {size} exceeds the message")
    return size, pos


def write_array_length(out: Writer, size: int) -> None:
    out += INT32.pack(size)


def write_compact_array_length(out: Writer, size: int) -> None:
    write_uvarint(out, size + 1)


def skip_tagged_fields(buf, pos: int) -> int:
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        _need(buf, pos, size)
        pos += size
    return pos


def write_tagged_fields(out: Writer, tagged: list) -> None:
    """Write ``[(tag, writer, value), ...]`` (sorted by tag) as a tagged-field section."""
    write_uvarint(out, len(tagged))
    for tag, writer, value in tagged:
        body = Writer()
        writer(body, value)
        write_uvarint(out, tag)
        write_uvarint(out, len(body))
        out += body


def primitive_reader(type_name: str, flexible: bool) -> Callable:
    """The reader function for one primitive type in classic or compact form."""
    if type_name in FIXED_FORMATS:
        return FIXED_READERS[type_name]
    if type_name == "string":
        return read_compact_string if flexible else read_string
    if type_name == "records":
        return read_compact_records if flexible else read_records
    return read_compact_bytes if flexible else read_bytes


def primitive_writer(type_name: str, flexible: bool) -> Callable:
    """The writer function for one primitive type in classic or compact form."""
    if type_name in FIXED_FORMATS:
        return FIXED_WRITERS[type_name]
    if type_name == "string":
        return write_compact_string if flexible else write_string
    if type_name == "records":
        return write_compact_records if flexible else write_records
    return write_compact_bytes if flexible else write_bytes


FIXED_READERS = {name: _fixed_reader(fmt) for name, fmt in FIXED_FORMATS.items()}
FIXED_WRITERS = {name: _fixed_writer(fmt) for name, fmt in FIXED_FORMATS.items()}
