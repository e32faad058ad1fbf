"""Helpers for the log tests: v2 record batches built with kafka-python's builder."""

from __future__ import annotations

from kafka.record.default_records import DefaultRecordBatchBuilder


def build_batch(
    count: int = 1,
    timestamp: int = 1_000,
    ts_step: int = 1,
    value_size: int = 10,
    compression: int = 0,
    timestamps: list[int] | None = None,
) -> bytes:
    """One v2 batch of ``count`` records (base offset 0, as producers send it)."""
    builder = DefaultRecordBatchBuilder(2, compression, False, -1, -1, -1, 1 << 24)
    stamps = timestamps or [timestamp + i * ts_step for i in range(count)]
    for i, ts in enumerate(stamps):
        builder.append(i, ts, b"k%d" % i, b"v" * value_size, [])
    return bytes(builder.build())


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now
