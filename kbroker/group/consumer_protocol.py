"""Reading the ``consumer`` protocol's member metadata and assignments.

The broker treats both as opaque bytes except where Kafka looks inside: the topics a
consumer group subscribes to (offset expiry, OffsetDelete) and the partitions each
member was assigned (``kbroker groups describe``). Both layouts are classic (never
flexible): ConsumerProtocolSubscription v0-v3 and ConsumerProtocolAssignment v0-v3.
"""

from __future__ import annotations

import struct

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int16(self) -> int:
        (value,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return value

    def int32(self) -> int:
        (value,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return value

    def string(self) -> str:
        size = self.int16()
        if size < 0:
            return ""
        value = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return value

    def array(self, read) -> list:
        count = self.int32()
        return [read() for _ in range(max(count, 0))]


def subscribed_topics(metadata: bytes) -> list[str] | None:
    """The topics of a ConsumerProtocolSubscription, or None if it does not parse."""
    try:
        reader = _Reader(bytes(metadata))
        reader.int16()
        return reader.array(reader.string)
    except (struct.error, UnicodeDecodeError, IndexError):
        return None


def assigned_partitions(assignment: bytes) -> dict[str, list[int]] | None:
    """The partitions of a ConsumerProtocolAssignment by topic, or None if it does not parse."""
    if not assignment:
        return {}
    try:
        reader = _Reader(bytes(assignment))
        reader.int16()
        result: dict[str, list[int]] = {}
        for _ in range(max(reader.int32(), 0)):
            topic = reader.string()
            result.setdefault(topic, []).extend(reader.array(reader.int32))
        return result
    except (struct.error, UnicodeDecodeError, IndexError):
        return None
