"""The asyncio listener: moves bytes between sockets and each connection's protocol state.

Like Kafka's network layer, a connection's requests are handled one at a time in
arrival order, so pipelined requests are answered in order. A peer that breaks the
protocol gets one log line and a closed connection; nothing it sends reaches the log.
"""

from __future__ import annotations

import asyncio
import logging

from kbroker.server.broker import Broker
from kbroker.wire.connection import Connection, ProtocolError

log = logging.getLogger("kbroker.listener")

READ_CHUNK = 256 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0
WRITE_HIGH_WATER = 1024 * 1024  # responses buffered before the session waits for the socket


class _ClientSession(asyncio.BufferedProtocol):
    """One accepted connection and whether it is mid-request (for graceful shutdown).

    Bytes are read straight into the request frames (a ``BufferedProtocol``: a large
    produce request lands in its own buffer with no intermediate copy). Reading pauses
    while a whole request waits to be handled, so a client that pipelines cannot make
    the broker buffer more than the request in hand and the one arriving.
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.broker = broker = listener.broker
        self.protocol = Connection(
            broker.registry, broker.config.get_int("socket.request.max.bytes")
        )
        self.busy = False
        self.closing = False
        self.peer = "?"
        self.client_host = ""
        self.transport: asyncio.Transport | None = None
        self._buffer: memoryview | None = None
        self._wakeup: asyncio.Future | None = None  # the session waits for data
        self._drained: asyncio.Future | None = None  # the session waits for the socket
        self._eof = False
        self._lost: Exception | None = None
        self._paused = False

    # -- protocol callbacks (the event loop calls these) --

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
            self.client_host = f"/{peer[0]}"
        task = asyncio.get_running_loop().create_task(self._serve())
        self.listener.sessions[task] = self

    def get_buffer(self, sizehint: int) -> memoryview:
        self._buffer = self.protocol.get_buffer(self.listener.scratch)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.protocol.buffer_updated(self._buffer, nbytes)
        self._buffer = None
        if self.protocol.has_request:
            if not self._paused:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return True  # half-closed: requests already received are still answered

    def connection_lost(self, exc) -> None:
        self._eof = True
        self._lost = ConnectionResetError(f"connection lost: {exc}" if exc else "connection lost")
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # -- the session task: requests one at a time, answered in order --

    async def _serve(self) -> None:
        task = asyncio.current_task()
        try:
            await self.run()
        finally:
            self.listener.sessions.pop(task, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closing:
                request = self.protocol.next_request()
                if request is None:
                    if self._eof:
                        return
                    if self._paused:
                        self._paused = False
                        self.transport.resume_reading()
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                self.busy = True
                request.client_host = self.client_host
                try:
                    body = await self.broker.handle(request)
                    if body is not None:
                        await self._write(self.protocol.send_response(request, body))
                finally:
                    self.busy = False
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", self.peer, exc)
        except ConnectionError:
            pass
        except Exception:
            log.exception("closing connection from %s after an internal error", self.peer)
        finally:
            self._wake()
            self.transport.close()

    async def _write(self, parts: list) -> None:
        transport = self.transport
        if self._lost is not None:
            raise self._lost
        for part in parts:
            if isinstance(part, bytes):
                transport.write(part)
            else:
                transport.write(part.read_bytes())
        while self._drained is not None:
            await self._drained
            if self._lost is not None:
                raise self._lost


class Listener:
    """Accepts connections for a broker and shuts down gracefully."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sessions: dict[asyncio.Task, _ClientSession] = {}
        self.server: asyncio.Server | None = None
        # Reads between frames land here and are parsed at once, before the loop reads
        # another socket: one buffer serves every connection (idle ones cost no memory).
        self.scratch = bytearray(READ_CHUNK)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and start accepting; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _ClientSession(self), host, port, reuse_address=True
        )
        bound = self.server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, then close every connection."""
        if self.server is not None:
            self.server.close()
        for task, session in list(self.sessions.items()):
            session.closing = True
            if not session.busy:
                task.cancel()
        pending = list(self.sessions)
        if pending:
            _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in late:
                task.cancel()
