"""Records of Kafka's internal topics: a 2-byte schema version, then the struct.

``__consumer_offsets`` and ``__transaction_state`` keys and values are laid out this way.
Their structs are declared in our schema DSL (each as a ``request`` section) and compiled
by the same codec as the protocol messages.
"""

from __future__ import annotations

import struct

from kbroker.wire.compiler import Decoder, Encoder, compile_struct
from kbroker.wire.primitives import DecodeError
from kbroker.wire.schema import parse_schema
from kbroker.wire.types import Writer

_VERSION = struct.Struct(">h")


def version_of(buf) -> int:
    """The schema version a record key or value starts with."""
    if len(buf) < 2:
        raise DecodeError("record shorter than its 2-byte version")
    return _VERSION.unpack_from(buf, 0)[0]


class VersionedRecords:
    """A family of versioned record types, by name (``offset_key``, ``group_value``...)."""

    def __init__(self, schemas: dict[str, str]) -> None:
        self._apis = {name: parse_schema(text, name) for name, text in schemas.items()}
        self._codecs: dict[tuple[str, int], tuple[Decoder, Encoder]] = {}

    def _codec(self, name: str, version: int) -> tuple[Decoder, Encoder]:
        codec = self._codecs.get((name, version))
        if codec is None:
            api = self._apis[name]
            if version not in api.implemented:
                raise DecodeError(f"unknown {api.name} version {version}")
            codec = compile_struct(api.request, version, api.is_flexible(version))
            self._codecs[(name, version)] = codec
        return codec

    def encode(self, name: str, version: int, body: dict) -> bytes:
        out = Writer()
        out += _VERSION.pack(version)
        self._codec(name, version)[1](out, body)
        return bytes(out)

    def decode(self, name: str, buf) -> dict:
        """Decode at the version the record names."""
        return self._codec(name, version_of(buf))[0](buf, 2)[0]
