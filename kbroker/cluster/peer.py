"""A broker's own client connection to another broker (followers fetching from leaders).

Requests are encoded with the same compiled schemas the server uses; one request is in
flight at a time, as Kafka's replica fetchers have it. Responses are read like requests
on the listener (a ``BufferedProtocol`` filling each frame's own buffer), so a megabyte
of replicated records crosses into Python once, with one wake-up when it is whole.
"""

from __future__ import annotations

import asyncio
import struct

from kbroker.wire.framing import FrameError, FrameReader
from kbroker.wire.primitives import INT32
from kbroker.wire.registry import Registry
from kbroker.wire.types import Writer, skip_tagged_fields, write_string

MAX_RESPONSE_BYTES = 1 << 30  # a guard against a garbled size prefix, not a setting
READ_CHUNK = 64 * 1024


class PeerError(ConnectionError):
    """The peer closed the connection or answered something we cannot read."""


class _ResponseReader(asyncio.BufferedProtocol):
    """Collects response frames; the request side waits on :meth:`next_frame`."""

    def __init__(self) -> None:
        self.frames = FrameReader(MAX_RESPONSE_BYTES, "the response size guard")
        self.scratch = bytearray(READ_CHUNK)
        self.lost: Exception | None = None
        self._buffer: memoryview | None = None
        self._waiter: asyncio.Future | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        self._buffer = self.frames.get_buffer(self.scratch)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.frames.buffer_updated(self._buffer, nbytes)
        self._buffer = None
        if self.frames.has_frame:
            self._wake()

    def eof_received(self) -> bool:
        self.lost = ConnectionResetError("closed by the peer")
        self._wake()
        return False

    def connection_lost(self, exc) -> None:
        self.lost = self.lost or exc or ConnectionResetError("connection lost")
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_frame(self) -> bytearray:
        while True:
            frame = self.frames.next_frame()
            if frame is not None:
                return frame
            if self.lost is not None:
                raise self.lost
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class PeerConnection:
    """A connection to one broker at ``host:port``."""

    def __init__(self, registry: Registry, host: str, port: int, client_id: str) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.client_id = client_id
        self._transport: asyncio.Transport | None = None
        self._reader: _ResponseReader | None = None
        self._correlation_id = 0

    async def request(self, api_key: int, version: int, body: dict, timeout: float) -> dict:
        """Send one request and return the decoded response body."""
        self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
        flexible = self.registry.apis[api_key].is_flexible(version)
        out = Writer()
        out += b"\0\0\0\0"
        out += struct.pack(">hhi", api_key, version, self._correlation_id)
        write_string(out, self.client_id)
        if flexible:
            out.append(0)
        self.registry.encode_request(api_key, version, body, out)
        INT32.pack_into(out, 0, len(out) - 4)
        try:
            async with asyncio.timeout(timeout):
                if self._transport is None:
                    loop = asyncio.get_running_loop()
                    self._transport, self._reader = await loop.create_connection(
                        _ResponseReader, self.host, self.port
                    )
                if self._reader.lost is not None:
                    raise self._reader.lost
                self._transport.write(out)
                frame = memoryview(await self._reader.next_frame())
        except (OSError, FrameError, TimeoutError) as exc:
            self.close()
            raise PeerError(f"{self.host}:{self.port}: {exc or type(exc).__name__}") from None
        except asyncio.CancelledError:
            self.close()  # its answer would otherwise be read as the next request's
            raise
        if len(frame) < 4 or INT32.unpack_from(frame, 0)[0] != self._correlation_id:
            self.close()
            raise PeerError(f"{self.host}:{self.port}: response out of order")
        pos = skip_tagged_fields(frame, 4) if flexible else 4
        return self.registry.decode_response(api_key, version, frame, pos)[0]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._reader = None
