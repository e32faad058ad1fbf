"""Conditions the log reports; each maps to one Kafka error code."""

from __future__ import annotations


class LogError(Exception):
    """Base of the log's errors."""


class OffsetOutOfRange(LogError):
    """OFFSET_OUT_OF_RANGE (1): the offset is before the log start or past its end."""

    error_code = 1

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int):
        super().__init__(f"offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class RecordBatchTooLarge(LogError):
    """RECORD_LIST_TOO_LARGE (18): the payload exceeds the segment size."""

    error_code = 18


class CorruptIndex(LogError):
    """An index file failed its sanity check (it is rebuilt from the log)."""
