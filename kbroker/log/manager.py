"""The log manager: every partition log under ``log.dirs``, checkpoints, recovery.

Each log dir holds ``<topic>-<partition>/`` directories and Kafka's checkpoint files
(``recovery-point-offset-checkpoint``, ``replication-offset-checkpoint``,
``log-start-offset-checkpoint``). A clean shutdown leaves ``.kafka_cleanshutdown``;
without it, start-up recovers each partition's segments from its recovery point.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable

from .checkpoint import (
    LOG_START_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_CHECKPOINT,
    CorruptCheckpoint,
    read_offsets,
    write_offsets,
)
from .config import LogConfig
from .partition_log import (
    PartitionLog,
    TxnIndexRebuilder,
    _now_ms,
    parse_partition_dir,
    partition_dir_name,
)

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
_DELETED_DIR = re.compile(r"^.+-\d+\.[0-9a-f]{32}-(delete|future|stray)$")

TopicPartition = tuple[str, int]


class LogManager:
    """Creates, loads, checkpoints and deletes PartitionLogs.

    ``log_dirs``: one directory or several (``log.dirs``). ``config_for(topic)`` gives
    a topic's LogConfig (default: ``config`` for every topic).
    """

    def __init__(
        self,
        log_dirs: str | Iterable[str],
        config: LogConfig | None = None,
        *,
        config_for: Callable[[str], LogConfig] | None = None,
        clock: Callable[[], int] | None = None,
        rebuild_txn_index: TxnIndexRebuilder | None = None,
    ):
        self.log_dirs = [log_dirs] if isinstance(log_dirs, str) else list(log_dirs)
        if not self.log_dirs:
            raise ValueError("log.dirs is empty")
        self.default_config = config or LogConfig()
        self._config_for = config_for
        self.clock = clock or _now_ms
        self.rebuild_txn_index = rebuild_txn_index
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, str] = {}
        self.recovered: list[TopicPartition] = []  # partitions recovered at start-up
        self._started = False

    def config_for(self, topic: str) -> LogConfig:
        if self._config_for is not None:
            return self._config_for(topic)
        return self.default_config

    # ---- start-up ------------------------------------------------------------------

    def startup(self) -> list[TopicPartition]:
        """Load every partition directory; returns the (topic, partition)s found."""
        for log_dir in self.log_dirs:
            os.makedirs(log_dir, exist_ok=True)
            self._load_dir(log_dir)
        self._started = True
        return sorted(self._logs)

    def _read_checkpoint(self, path: str) -> dict[TopicPartition, int]:
        try:
            return read_offsets(path)
        except CorruptCheckpoint as exc:
            log.warning("ignoring corrupt checkpoint: %s", exc)
            return {}

    def _load_dir(self, log_dir: str) -> None:
        marker = os.path.join(log_dir, CLEAN_SHUTDOWN_FILE)
        clean = os.path.exists(marker)
        recovery_points = self._read_checkpoint(os.path.join(log_dir, RECOVERY_POINT_CHECKPOINT))
        high_watermarks = self._read_checkpoint(os.path.join(log_dir, REPLICATION_CHECKPOINT))
        log_starts = self._read_checkpoint(os.path.join(log_dir, LOG_START_CHECKPOINT))
        for name in sorted(os.listdir(log_dir)):
            path = os.path.join(log_dir, name)
            if not os.path.isdir(path):
                continue
            if _DELETED_DIR.match(name):
                if name.endswith("-delete"):
                    shutil.rmtree(path, ignore_errors=True)
                continue
            tp = parse_partition_dir(name)
            if tp is None:
                continue
            if tp in self._logs:
                log.error("%s-%d is in two log dirs; keeping %s", *tp, self._dir_of[tp])
                continue
            recovery_point = recovery_points.get(tp, 0)
            partition_log = PartitionLog(
                path,
                self.config_for(tp[0]),
                recover=not clean,
                recovery_point=recovery_point,
                log_start_offset=log_starts.get(tp),
                high_watermark=high_watermarks.get(tp),
                clock=self.clock,
                rebuild_txn_index=self.rebuild_txn_index,
            )
            if not clean:
                self.recovered.append(tp)
            self._logs[tp] = partition_log
            self._dir_of[tp] = log_dir
        if clean:
            os.unlink(marker)
        else:
            # the recovered logs are synced: record that before anything else happens
            self._checkpoint_dir(log_dir)

    # ---- lookup and lifecycle ------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def log_dir_of(self, topic: str, partition: int) -> str | None:
        """The log dir holding a partition (None if it is not here)."""
        return self._dir_of.get((topic, partition))

    def partitions(self) -> list[TopicPartition]:
        return sorted(self._logs)

    def logs(self) -> dict[TopicPartition, PartitionLog]:
        return dict(self._logs)

    def get_or_create(
        self, topic: str, partition: int, config: LogConfig | None = None
    ) -> PartitionLog:
        tp = (topic, partition)
        existing = self._logs.get(tp)
        if existing is not None:
            return existing
        log_dir = self._pick_dir()
        partition_log = PartitionLog(
            os.path.join(log_dir, partition_dir_name(topic, partition)),
            config or self.config_for(topic),
            clock=self.clock,
            rebuild_txn_index=self.rebuild_txn_index,
        )
        self._logs[tp] = partition_log
        self._dir_of[tp] = log_dir
        return partition_log

    def _pick_dir(self) -> str:
        """The log dir holding the fewest partitions (Kafka's rule)."""
        counts = {d: 0 for d in self.log_dirs}
        for d in self._dir_of.values():
            counts[d] += 1
        return min(self.log_dirs, key=lambda d: counts[d])

    def delete(self, topic: str, partition: int) -> bool:
        tp = (topic, partition)
        partition_log = self._logs.pop(tp, None)
        if partition_log is None:
            return False
        self._dir_of.pop(tp, None)
        partition_log.delete()
        return True

    def delete_topic(self, topic: str) -> int:
        doomed = [tp for tp in self._logs if tp[0] == topic]
        for tp in doomed:
            self.delete(*tp)
        return len(doomed)

    # ---- periodic work -------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write the recovery-point, replication (HW) and log-start checkpoints."""
        for log_dir in self.log_dirs:
            self._checkpoint_dir(log_dir)

    def _checkpoint_dir(self, log_dir: str) -> None:
        logs = {tp: plog for tp, plog in self._logs.items() if self._dir_of[tp] == log_dir}
        write_offsets(
            os.path.join(log_dir, RECOVERY_POINT_CHECKPOINT),
            {tp: plog.recovery_point for tp, plog in logs.items()},
        )
        write_offsets(
            os.path.join(log_dir, REPLICATION_CHECKPOINT),
            {tp: plog.high_watermark for tp, plog in logs.items()},
        )
        write_offsets(
            os.path.join(log_dir, LOG_START_CHECKPOINT),
            {
                tp: plog.log_start_offset
                for tp, plog in logs.items()
                if plog.log_start_offset > plog.segments[0].base_offset
            },
        )

    def flush_due(self, now_ms: int | None = None) -> int:
        """Apply each log's ``flush.ms``; returns how many logs were synced."""
        now = self.clock() if now_ms is None else now_ms
        return sum(1 for plog in self._logs.values() if plog.flush_if_due(now))

    def cleanup(self, now_ms: int | None = None) -> int:
        """Apply retention to every log; returns how many segments were deleted."""
        now = self.clock() if now_ms is None else now_ms
        return sum(plog.delete_old_segments(now) for plog in self._logs.values())

    def delete_retired(self, now_ms: int | None = None) -> int:
        """Remove the ``.deleted`` segment files whose ``file.delete.delay.ms`` passed."""
        now = self.clock() if now_ms is None else now_ms
        return sum(plog.delete_retired(now) for plog in self._logs.values())

    def shutdown(self) -> None:
        """Flush and close every log, write the checkpoints and the clean-shutdown mark."""
        if not self._started:
            return  # never started, or already shut down: leave the checkpoints alone
        self._started = False
        for plog in self._logs.values():
            plog.close()
        for log_dir in self.log_dirs:
            self._checkpoint_dir(log_dir)
            with open(os.path.join(log_dir, CLEAN_SHUTDOWN_FILE), "w"):
                pass
        self._logs.clear()
        self._dir_of.clear()
