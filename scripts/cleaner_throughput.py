#!/usr/bin/env python3
"""Log cleaner throughput: MB of log compacted per second.

Builds a compacted partition log of ``--mb`` megabytes (keyed updates over ``--keys``
keys, ``--value-size`` byte values, ``--batch`` records per batch, optional codec) in
a temporary directory, then times one full cleaning (offset map, filtered rewrite,
swap) with the same code the broker's cleaner thread runs. Prints MB/s of log read.

    python scripts/cleaner_throughput.py --mb 64
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kbroker.log import LogConfig, LogManager  # noqa: E402
from kbroker.log.cleaner import LogCleaner  # noqa: E402
from kbroker.wire.record import build_batch  # noqa: E402

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=64, help="log size to build (default 64)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys (default 10000)")
    parser.add_argument("--value-size", type=int, default=100, help="value bytes (default 100)")
    parser.add_argument("--batch", type=int, default=100, help="records per batch (default 100)")
    parser.add_argument("--compression", choices=CODECS, default="none")
    parser.add_argument("--segment-mb", type=float, default=16, help="segment.bytes in MB")
    args = parser.parse_args()

    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="kbroker-cleaner-") as tmp:
        config = LogConfig(
            cleanup_policy="compact",
            segment_bytes=int(args.segment_mb * 1e6),
            file_delete_delay_ms=0,
        )
        manager = LogManager(tmp, config)
        manager.startup()
        plog = manager.get_or_create("bench", 0)
        target = args.mb * 1e6
        value = os.urandom(args.value_size)
        records = 0
        while plog.size < target:
            batch = [
                (b"key-%08d" % rng.randrange(args.keys), value, [], None) for _ in range(args.batch)
            ]
            plog.append(build_batch(batch, compression=CODECS[args.compression]))
            records += args.batch
        plog.roll()
        plog.high_watermark = plog.log_end_offset
        plog.flush()
        size = plog.size
        cleaner = LogCleaner(manager)
        started = time.perf_counter()
        result = cleaner.clean_once()
        elapsed = time.perf_counter() - started
        assert result is not None and result.committed
        print(
            f"cleaned {result.bytes_read / 1e6:.1f} MB ({records} records, {args.keys} keys, "
            f"{args.value_size} B values, {args.batch}/batch, {args.compression}) "
            f"in {elapsed:.2f} s: {result.bytes_read / 1e6 / elapsed:.1f} MB/s; "
            f"kept {result.records_kept} records, {plog.size / 1e6:.2f} MB of {size / 1e6:.1f} MB"
        )
        manager.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
