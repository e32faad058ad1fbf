"""What the client tests share: the messages they send and how a round trip is judged.

A round trip is judged on the *delivery reports* (partition and offset the broker
acknowledged for each message) against the *consumed* records: the same set of
(partition, offset), the same key, value and headers at each, per-partition order equal
to send order, offsets contiguous from 0, no duplicates, every key in one partition.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"]
N_MESSAGES = 10_000
PARTITIONS = 3


def wait_for(condition, timeout: float = 15.0, what: str = "condition", interval: float = 0.05):
    """Poll ``condition()`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Message:
    index: int
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def make_messages(n: int = N_MESSAGES, source: str = "compat") -> list[Message]:
    """Keyed messages, 10 per key, with headers; values of mixed size and compressibility.

    Every 1000th value is null (a tombstone) and every 7th message carries an empty
    header value, so record encodings of nulls and empties travel too.
    """
    messages = []
    for i in range(n):
        key = b"key-%04d" % (i % (n // 10 or 1))
        if i % 1000 == 999:
            value = None
        elif i % 3 == 0:
            value = (b"value %d " % i) * (1 + i % 13)  # compressible
        elif i % 3 == 1:
            value = hashlib.sha256(b"%d" % i).digest() * (1 + i % 5)  # not compressible
        else:
            value = b""
        headers = [("idx", b"%d" % i), ("src", source.encode())]
        if i % 7 == 0:
            headers.append(("empty", b""))
        messages.append(Message(i, key, value, tuple(headers)))
    return messages


@dataclass(frozen=True)
class Record:
    """A consumed record, normalised across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = 0


def norm_headers(headers) -> tuple[tuple[str, bytes], ...]:
    if not headers:
        return ()
    return tuple((k if isinstance(k, str) else k.decode(), bytes(v) if v is not None else None)
                 for k, v in headers)


def check_round_trip(messages: list[Message], delivered: dict[int, tuple[int, int]],
                     consumed: list[Record], partitions: int = PARTITIONS,
                     earliest_ts: int | None = None) -> None:
    """Assert that what was consumed is exactly what was acknowledged.

    ``delivered`` maps message index -> (partition, offset) from the delivery reports.
    ``consumed`` is every record read, in the order each partition delivered them.
    """
    assert len(delivered) == len(messages), (
        f"{len(messages) - len(delivered)} of {len(messages)} messages were not acknowledged")

    # acknowledged offsets: per partition contiguous from 0, in send order
    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for index in sorted(delivered):
        partition, offset = delivered[index]
        assert 0 <= partition < partitions, (index, partition)
        by_partition[partition].append((offset, index))
    for partition, pairs in by_partition.items():
        offsets = [offset for offset, _ in pairs]
        assert offsets == list(range(len(pairs))), (
            f"partition {partition}: acknowledged offsets are not 0..{len(pairs) - 1} in send "
            f"order (first differences: "
            f"{[(i, o) for i, o in enumerate(offsets) if i != o][:5]})")
    assert len(by_partition) == partitions, (
        f"keys spread over {sorted(by_partition)} only, expected all {partitions} partitions")

    # the same key always lands in the same partition
    key_partition: dict[bytes, int] = {}
    for message in messages:
        partition = delivered[message.index][0]
        assert key_partition.setdefault(message.key, partition) == partition, message.key

    # consumed: no duplicates, per-partition order, exactly the acknowledged set
    seen: set[tuple[int, int]] = set()
    last_offset: dict[int, int] = {}
    for record in consumed:
        position = (record.partition, record.offset)
        assert position not in seen, f"duplicate record at partition/offset {position}"
        seen.add(position)
        assert record.offset > last_offset.get(record.partition, -1), (
            f"partition {record.partition} went back from {last_offset[record.partition]} "
            f"to {record.offset}")
        last_offset[record.partition] = record.offset
    expected = {position: index for index, position in delivered.items()}
    missing = sorted(set(expected) - seen)
    extra = sorted(seen - set(expected))
    assert not missing and not extra, (
        f"consumed {len(consumed)} records; missing {len(missing)} (first {missing[:5]}), "
        f"unexpected {len(extra)} (first {extra[:5]})")

    for record in consumed:
        message = messages[expected[(record.partition, record.offset)]]
        got = (record.key, record.value, record.headers)
        want = (message.key, message.value, message.headers)
        assert got == want, (
            f"partition {record.partition} offset {record.offset}: got {got!r:.300}, "
            f"expected message {message.index} {want!r:.300}")
        if earliest_ts is not None:
            now = int(time.time() * 1000)
            assert earliest_ts - 1000 <= record.timestamp <= now + 1000, (
                f"timestamp {record.timestamp} not within the test's run "
                f"[{earliest_ts}, {now}]")


# -- a partition with known timestamps, for ListOffsets -----------------------------------
TS_COUNT = 200
TS_STEP = 10


def produce_timestamped(bootstrap: str, topic: str) -> int:
    """200 messages to partition 0 with CreateTime base + 10*i, in batches of 20.

    Returns the base timestamp. Several batches, so a timestamp lookup has to find the
    right batch through the time index and then the right record inside it.
    """
    from compat_clients import confluent_produce

    base = int(time.time() * 1000) - 3_600_000
    messages = [Message(i, b"ts-%d" % i, b"at %d" % (base + TS_STEP * i), ())
                for i in range(TS_COUNT)]
    delivered = confluent_produce(
        bootstrap, topic, messages, {"batch.num.messages": 20, "linger.ms": 50},
        partition=0, timestamps=[base + TS_STEP * i for i in range(TS_COUNT)])
    assert sorted(delivered.values()) == [(0, i) for i in range(TS_COUNT)]
    return base
