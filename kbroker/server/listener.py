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


class _ClientSession:
    """One accepted connection and whether it is mid-request (for graceful shutdown)."""

    def __init__(self, broker: Broker, reader, writer) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.protocol = Connection(
            broker.registry, broker.config.get_int("socket.request.max.bytes")
        )
        self.busy = False
        self.closing = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.client_host = f"/{peer[0]}" if peer else ""

    async def run(self) -> None:
        try:
            while not self.closing:
                request = self.protocol.next_request()
                if request is None:
                    data = await self.reader.read(READ_CHUNK)
                    if not data:
                        return
                    self.protocol.receive_data(data)
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
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("closing connection from %s after an internal error", self.peer)
        finally:
            self.writer.close()

    async def _write(self, parts: list) -> None:
        for part in parts:
            if isinstance(part, bytes):
                self.writer.write(part)
            else:
                self.writer.write(part.read_bytes())
        await self.writer.drain()


class Listener:
    """Accepts connections for a broker and shuts down gracefully."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sessions: dict[asyncio.Task, _ClientSession] = {}
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and start accepting; returns the bound (host, port)."""
        self.server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        bound = self.server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def _accept(self, reader, writer) -> None:
        session = _ClientSession(self.broker, reader, writer)
        task = asyncio.current_task()
        self.sessions[task] = session
        try:
            await session.run()
        finally:
            self.sessions.pop(task, None)

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
