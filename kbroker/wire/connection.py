"""One client connection's protocol state, with no IO (h11 is the model).

The listener feeds bytes in with :meth:`Connection.receive_data`, takes whole decoded
requests out with :meth:`Connection.next_request`, and turns each response body into
frame parts with :meth:`Connection.send_response`. Everything a misbehaving client can
do ends in a :class:`ProtocolError`, after which the caller closes the connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kbroker.wire.framing import FrameError, FrameReader
from kbroker.wire.primitives import INT32, DecodeError
from kbroker.wire.registry import Registry
from kbroker.wire.types import Writer, read_string, skip_tagged_fields

API_VERSIONS_KEY = 18
_REQUEST_HEADER = struct.Struct(">hhi")


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be closed (as Kafka does)."""


@dataclass(slots=True)
class Request:
    """A decoded request. ``body`` is None for an ApiVersions request of a version newer
    than ours: Kafka answers that with UNSUPPORTED_VERSION in the v0 layout."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict | None
    size: int
    client_host: str = ""  # the peer's address as Kafka shows it ("/127.0.0.1")

    @property
    def response_version(self) -> int:
        return 0 if self.body is None else self.api_version


class Connection:
    """Frames and decodes requests; encodes responses with the right header."""

    def __init__(self, registry: Registry, max_request_size: int = 104857600) -> None:
        self.registry = registry
        self.frames = FrameReader(max_request_size, "socket.request.max.bytes")

    def receive_data(self, data) -> None:
        """Take bytes from the socket; each byte is copied once, into its frame's buffer.

        A size prefix beyond ``socket.request.max.bytes`` stops reception at once (the
        body is never buffered); the error surfaces from the next ``next_request``.
        """
        self.frames.receive_data(data)

    def get_buffer(self, scratch: bytearray) -> memoryview:
        """Where the next socket read should land (see :meth:`FrameReader.get_buffer`)."""
        return self.frames.get_buffer(scratch)

    def buffer_updated(self, buffer: memoryview, nbytes: int) -> None:
        """``nbytes`` arrived in ``buffer`` (the last :meth:`get_buffer` answer)."""
        self.frames.buffer_updated(buffer, nbytes)

    @property
    def has_request(self) -> bool:
        """A whole request (or a protocol error) is waiting for :meth:`next_request`."""
        return self.frames.has_frame

    def next_request(self) -> Request | None:
        """The next whole request, or None until more data arrives."""
        try:
            frame = self.frames.next_frame()
        except FrameError as exc:
            raise ProtocolError(f"request refused: {exc}") from None
        return None if frame is None else self._decode(memoryview(frame))

    def _decode(self, frame: memoryview) -> Request:
        if len(frame) < _REQUEST_HEADER.size:
            raise ProtocolError(f"request header truncated ({len(frame)} bytes)")
        key, version, correlation_id = _REQUEST_HEADER.unpack_from(frame, 0)
        api = self.registry.apis.get(key)
        if api is None:
            raise ProtocolError(f"unknown API key {key}")
        try:
            client_id, pos = read_string(frame, 8)
            if version not in api.implemented:
                if key == API_VERSIONS_KEY and version > api.max_version:
                    return Request(key, version, correlation_id, client_id, None, len(frame))
                raise ProtocolError(f"unsupported version {version} of {api.name}")
            if api.is_flexible(version):
                pos = skip_tagged_fields(frame, pos)
            body, _ = self.registry.decode_request(key, version, frame, pos)
        except (DecodeError, struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"malformed {api.name} v{version} request: {exc}") from None
        # Like Kafka, bytes after the last field are ignored (librdkafka sends some).
        return Request(key, version, correlation_id, client_id, body, len(frame))

    def send_response(self, request: Request, body: dict) -> list:
        """Encode a response frame; returns parts (bytes and file regions) to write."""
        out = Writer()
        out += b"\0\0\0\0"
        out += INT32.pack(request.correlation_id)
        version = request.response_version
        api = self.registry.apis[request.api_key]
        if request.api_key != API_VERSIONS_KEY and api.is_flexible(version):
            out.append(0)  # response header v1: no tagged fields
        self.registry.encode_response(request.api_key, version, body, out)
        INT32.pack_into(out, 0, out.total_size() - 4)
        return out.parts()
