"""Per-log configuration, with Kafka's topic-level names and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"

# Kafka topic-level config key -> LogConfig field
TOPIC_KEYS = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "index.interval.bytes": "index_interval_bytes",
    "segment.index.bytes": "segment_index_bytes",
    "flush.messages": "flush_messages",
    "flush.ms": "flush_ms",
    "message.timestamp.type": "message_timestamp_type",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "cleanup.policy": "cleanup_policy",
    "file.delete.delay.ms": "file_delete_delay_ms",
    "delete.retention.ms": "delete_retention_ms",
    "min.cleanable.dirty.ratio": "min_cleanable_dirty_ratio",
    "min.compaction.lag.ms": "min_compaction_lag_ms",
    "max.compaction.lag.ms": "max_compaction_lag_ms",
}

# Kafka's "never" for flush.messages / flush.ms
_LONG_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10485760
    flush_messages: int | None = None  # None: never fsync on a message count
    flush_ms: int | None = None  # None: never fsync on elapsed time
    message_timestamp_type: str = CREATE_TIME
    retention_ms: int = 604800000  # -1: keep forever
    retention_bytes: int = -1  # -1: no size limit
    cleanup_policy: str = "delete"  # "delete", "compact" or "compact,delete"
    file_delete_delay_ms: int = 60000  # a deleted segment's files linger this long
    delete_retention_ms: int = 86400000  # tombstones survive cleaning this long
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = _LONG_MAX

    @property
    def delete_enabled(self) -> bool:
        """Retention by time and size applies (``cleanup.policy`` includes delete)."""
        return "delete" in self.cleanup_policy

    @property
    def compact(self) -> bool:
        """The log cleaner compacts this log (``cleanup.policy`` includes compact)."""
        return "compact" in self.cleanup_policy

    def with_overrides(self, configs: Mapping[str, object]) -> LogConfig:
        """Apply Kafka topic-level keys (``segment.bytes``, ``retention.ms``, ...).

        Unknown keys are ignored; values may be strings as they come from requests.
        """
        changes: dict[str, object] = {}
        types = {f.name: f.type for f in fields(self)}
        for key, value in configs.items():
            name = TOPIC_KEYS.get(key)
            if name is None or value is None:
                continue
            if types[name] == "str":
                changes[name] = str(value).replace(" ", "")
                continue
            if types[name] == "float":
                changes[name] = float(value)
                continue
            number = int(value)
            if name in ("flush_messages", "flush_ms") and number >= _LONG_MAX:
                changes[name] = None
            else:
                changes[name] = number
        return replace(self, **changes) if changes else self
