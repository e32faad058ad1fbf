"""The broker's periodic log work, as Kafka's scheduler does it.

Every tick: logs with ``flush.ms`` due are synced. Every
``log.flush.offset.checkpoint.interval.ms``: the recovery-point and high-watermark
checkpoints are written, so a crash recovers only the tail. Every
``log.retention.check.interval.ms``: retention retires old segments (renamed
``.deleted``); every tick, retired files older than ``file.delete.delay.ms`` go.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kbroker.config import BrokerConfig
from kbroker.log.manager import LogManager

log = logging.getLogger("kbroker.maintenance")

TICK_SECONDS = 1.0


async def run_log_maintenance(logs: LogManager, config: BrokerConfig) -> None:
    """Run until cancelled."""
    checkpoint_every = config.get_int("log.flush.offset.checkpoint.interval.ms") / 1000
    retention_every = config.get_int("log.retention.check.interval.ms") / 1000
    last_checkpoint = last_retention = time.monotonic()
    while True:
        await asyncio.sleep(min(TICK_SECONDS, retention_every, checkpoint_every))
        now = time.monotonic()
        try:
            logs.flush_due()
            logs.delete_retired()
            if now - last_checkpoint >= checkpoint_every:
                logs.checkpoint()
                last_checkpoint = now
            if now - last_retention >= retention_every:
                deleted = logs.cleanup()
                if deleted:
                    log.info("retention deleted %d segments", deleted)
                last_retention = now
        except OSError:
            log.exception("periodic log maintenance failed; will retry")
