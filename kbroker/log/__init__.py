"""The log: segments, indexes, one partition's log, and the manager of all of them."""

from .config import LogConfig
from .errors import CorruptIndex, LogError, OffsetOutOfRange, RecordBatchTooLarge
from .manager import LogManager
from .partition_log import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    AppendResult,
    PartitionLog,
    parse_partition_dir,
    partition_dir_name,
)
from .segment import EMPTY_SLICE, FileSlice, LogSegment

__all__ = [
    "EARLIEST_TIMESTAMP",
    "EMPTY_SLICE",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "AppendResult",
    "CorruptIndex",
    "FileSlice",
    "LogConfig",
    "LogError",
    "LogManager",
    "LogSegment",
    "OffsetOutOfRange",
    "PartitionLog",
    "RecordBatchTooLarge",
    "parse_partition_dir",
    "partition_dir_name",
]
