"""A broker's own client connection to another broker (followers fetching from leaders).

Requests are encoded with the same compiled schemas the server uses; one request is in
flight at a time, as Kafka's replica fetchers have it.
"""

from __future__ import annotations

import asyncio
import struct

from kbroker.wire.primitives import INT32
from kbroker.wire.registry import Registry
from kbroker.wire.types import Writer, skip_tagged_fields, write_string


class PeerError(ConnectionError):
    """The peer closed the connection or answered something we cannot read."""


class PeerConnection:
    """A connection to one broker at ``host:port``."""

    def __init__(self, registry: Registry, host: str, port: int, client_id: str) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.client_id = client_id
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation_id = 0

    async def request(self, api_key: int, version: int, body: dict, timeout: float) -> dict:
        """Send one request and return the decoded response body."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout
            )
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
            self._writer.write(out)
            await self._writer.drain()
            size = INT32.unpack(await asyncio.wait_for(self._reader.readexactly(4), timeout))[0]
            frame = memoryview(await asyncio.wait_for(self._reader.readexactly(size), timeout))
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.close()
            raise PeerError(f"{self.host}:{self.port}: {exc or type(exc).__name__}") from None
        if INT32.unpack_from(frame, 0)[0] != self._correlation_id:
            self.close()
            raise PeerError(f"{self.host}:{self.port}: response out of order")
        pos = skip_tagged_fields(frame, 4) if flexible else 4
        return self.registry.decode_response(api_key, version, frame, pos)[0]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
