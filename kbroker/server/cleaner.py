"""The log cleaner's schedule: compaction in a worker thread, swaps on the event loop.

Every ``log.cleaner.backoff.ms`` (at once again after a cleaning), the dirtiest
compacted log is planned on the loop, cleaned in the worker thread (reading segment
files and writing ``.cleaned`` ones, so produce and fetch go on), and swapped in on
the loop. ``log.cleaner.enable=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from kbroker.config import BrokerConfig
from kbroker.log.cleaner import LogCleaner

log = logging.getLogger("kbroker.cleaner")


async def run_log_cleaner(cleaner: LogCleaner, config: BrokerConfig) -> None:
    """Run until cancelled."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-log-cleaner-thread")
    try:
        while True:
            backoff = config.get_int("log.cleaner.backoff.ms") / 1000
            plan = cleaner.plan() if config.get_bool("log.cleaner.enable") else None
            if plan is None:
                await asyncio.sleep(backoff)
                continue
            cleaner.busy.add(plan.tp)
            started = time.monotonic()
            try:
                result = await loop.run_in_executor(executor, cleaner.prepare, plan)
                if cleaner.commit(result):
                    elapsed = time.monotonic() - started
                    log.info(
                        "cleaned %s-%d up to offset %d: %d of %d records kept, %.1f MB "
                        "read in %.2fs (%.1f MB/s)",
                        *plan.tp,
                        plan.end_offset,
                        result.records_kept,
                        result.records_read,
                        result.bytes_read / 1e6,
                        elapsed,
                        result.bytes_read / 1e6 / max(elapsed, 1e-9),
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cleaning %s-%d failed; will retry", *plan.tp)
                await asyncio.sleep(backoff)
            finally:
                cleaner.busy.discard(plan.tp)
    finally:
        cleaner.stopping = True  # a cleaning in the worker gives up at its next segment
        executor.shutdown(wait=False, cancel_futures=True)
