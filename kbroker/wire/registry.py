"""All APIs we speak: schemas loaded from ``protocol/`` and codecs compiled per version.

Each (API, version) is compiled the first time it is used and then cached, so start-up
pays only for parsing the schema files and a client pays once per version it uses.
"""

from __future__ import annotations

from pathlib import Path

import kbroker
from kbroker.wire import reference
from kbroker.wire.compiler import Decoder, Encoder, compile_struct
from kbroker.wire.schema import ApiSchema, load_schemas
from kbroker.wire.types import Writer


def protocol_dir() -> Path:
    """Where the schema files are: beside the package in a source tree, inside it when installed."""
    package = Path(kbroker.__file__).resolve().parent
    installed = package / "protocol"
    return installed if installed.is_dir() else package.parent / "protocol"


class Registry:
    """The schemas of every API (or of the ``keys`` given) and their compiled codecs."""

    def __init__(self, directory: Path | None = None, keys: set[int] | None = None) -> None:
        apis = load_schemas(directory or protocol_dir())
        self.apis: dict[int, ApiSchema] = {
            key: api for key, api in apis.items() if keys is None or key in keys
        }
        self.by_name: dict[str, ApiSchema] = {api.name: api for api in self.apis.values()}
        self._codecs: dict[tuple[int, int, bool], tuple[Decoder, Encoder]] = {}

    def codec(self, key: int, version: int, response: bool) -> tuple[Decoder, Encoder]:
        """The compiled (decoder, encoder) for one API's request or response at a version."""
        cache_key = (key, version, response)
        codec = self._codecs.get(cache_key)
        if codec is None:
            api = self.apis[key]
            fields = api.response if response else api.request
            codec = compile_struct(fields, version, api.is_flexible(version))
            self._codecs[cache_key] = codec
        return codec

    def supports(self, key: int, version: int) -> bool:
        api = self.apis.get(key)
        return api is not None and version in api.implemented

    def decode_request(self, key: int, version: int, buf, pos: int = 0) -> tuple[dict, int]:
        return self.codec(key, version, False)[0](buf, pos)

    def decode_response(self, key: int, version: int, buf, pos: int = 0) -> tuple[dict, int]:
        return self.codec(key, version, True)[0](buf, pos)

    def encode_request(self, key: int, version: int, body: dict, out: Writer) -> None:
        self.codec(key, version, False)[1](out, body)

    def encode_response(self, key: int, version: int, body: dict, out: Writer) -> None:
        self.codec(key, version, True)[1](out, body)

    def reference_codec(self, key: int, version: int, response: bool):
        """(decode, encode) of the reference codec, for parity tests."""
        api = self.apis[key]
        fields = api.response if response else api.request
        flexible = api.is_flexible(version)

        def decode(buf, pos=0):
            return reference.decode_struct(fields, buf, pos, version, flexible)

        def encode(out, body):
            reference.encode_struct(fields, body, out, version, flexible)

        return decode, encode


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry over the shipped schema files."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
