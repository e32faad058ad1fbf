"""The clock of a sans-IO coordinator: ``poll()`` called every tick on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("kbroker.ticker")


class Ticker:
    """Runs ``poll`` every ``seconds`` (session expiry, rebalance and transaction timeouts)."""

    def __init__(self, poll: Callable[[], None], seconds: float, name: str) -> None:
        self.poll = poll
        self.seconds = seconds
        self.name = name
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start on the running loop (once: at start-up, or the first request)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            try:
                self.poll()
            except Exception:
                log.exception("%s timer failed", self.name)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
