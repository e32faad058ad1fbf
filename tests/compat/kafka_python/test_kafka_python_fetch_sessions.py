"""kafka-python 3 consuming through a fetch session (KIP-227).

kafka-python opens a session with its first Fetch (v12 against kbroker) and then sends
only the partitions whose position moved, forgetting the ones whose records it still
buffers and adding them back later; it trusts the broker to answer every partition with
news and leaves the rest where they were. A broker that left out a partition with records
stalls the consumer; one that read from a stale position or forgot a partition it was
told about loses or repeats records. A small ``max_partition_fetch_bytes`` makes the
consumer go through many incremental rounds, each response carrying at most one whole
batch per partition.

The fetcher's DEBUG log says what the broker answered: the session id of the full
response that opened the session, and per incremental response how many partitions it
carried; without those lines the test would pass against a broker with no sessions.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time

from compat_helpers import topic_name
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 6
BATCH = 4  # messages per produce batch (one flush each)
DEADLINE = 15.0  # seconds for a round to arrive (a stalled session never does)

FETCHER_LOG = "kafka.consumer.fetcher"
CREATED = re.compile(
    r"sent a full fetch response that created a new incremental fetch session (-?\d+)"
    r" with (\d+) response partitions"
)
INCREMENTAL = re.compile(
    r"sent an incremental fetch response for session (-?\d+)"
    r" with (\d+) response partitions \((-?\d+) implied\)"
)
BUILT = re.compile(r"Added (set\(\)|\{.*?\}), altered (set\(\)|\{.*?\}), removed (set\(\)|\{.*?\})")
# what kafka-python logs when the broker's session answers don't add up
TROUBLE = (
    "unable to process the fetch request",  # a session error (70, 71, ...)
    "invalid full fetch response",
    "invalid incremental fetch response",
    "incremental fetch response closing session",
    "sent a full fetch response with",  # a full response without a session
    "Fetch to node",  # the fetch failed
)


def value(partition: int, round_: int, i: int) -> bytes:
    """A distinct value per message: binary (NUL, 0xFF, hash bytes), 0 to ~110 bytes."""
    if i == 1:
        return b""
    seed = b"p%d r%d m%d" % (partition, round_, i)
    return seed + b"\x00\xff" + hashlib.sha256(seed).digest() * (i % 4)


def produce(producer, topic: str, round_: int, counts: dict[int, int]) -> dict:
    """``counts[p]`` messages to partition ``p`` in batches of BATCH.

    Returns {partition: [(offset, value)]} as acknowledged.
    """
    sent: dict[int, list[tuple[int, bytes]]] = {}
    for partition, count in counts.items():
        for start in range(0, count, BATCH):
            values = [value(partition, round_, i) for i in range(start, min(start + BATCH, count))]
            futures = [producer.send(topic, value=v, partition=partition) for v in values]
            producer.flush(10)
            for future, v in zip(futures, values, strict=True):
                metadata = future.get(timeout=0)
                assert metadata.partition == partition
                sent.setdefault(partition, []).append((metadata.offset, v))
    return sent


def consume_round(consumer, tps, expected: dict, max_records: int = 500) -> None:
    """Poll until every position reaches the end of ``expected``; check what came:
    exactly the acknowledged records, once each, per partition in offset order, values
    byte for byte. Then a few more polls must bring nothing.

    With a small ``max_records`` records stay buffered in the consumer, which leaves
    those partitions out of its next fetches (forgotten) and adds them back later."""
    ends = {tp: consumer.position(tp) + len(expected.get(tp.partition, [])) for tp in tps}
    got: dict[int, list[tuple[int, bytes]]] = {}
    deadline = time.monotonic() + DEADLINE
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        assert time.monotonic() < deadline, (
            f"stalled: positions {[consumer.position(tp) for tp in tps]}, ends "
            f"{[ends[tp] for tp in tps]}; got {[(p, len(r)) for p, r in sorted(got.items())]}"
        )
        for tp, records in consumer.poll(timeout_ms=200, max_records=max_records).items():
            got.setdefault(tp.partition, []).extend((r.offset, r.value) for r in records)
    for _ in range(3):  # idle rounds: incremental responses with nothing in them
        for tp, records in consumer.poll(timeout_ms=150).items():
            got.setdefault(tp.partition, []).extend((r.offset, r.value) for r in records)
    for partition in range(PARTITIONS):
        want = expected.get(partition, [])
        have = got.get(partition, [])
        assert have == want, (
            f"partition {partition}: got {len(have)} records (offsets "
            f"{[o for o, _ in have][:20]}), expected {len(want)} (offsets "
            f"{[o for o, _ in want][:20]}); first difference "
            f"{next(((h, w) for h, w in zip(have, want, strict=False) if h != w), None)}"
        )


def test_consumer_reads_every_partition_exactly_once_through_a_session(broker, caplog):
    topic = topic_name("kp-sessions")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    caplog.set_level(logging.DEBUG, logger=FETCHER_LOG)

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        # one whole batch (about 350 bytes) per partition per response: many rounds
        max_partition_fetch_bytes=512,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)

        # round 1: half the partitions; each fetch moves the positions of those with
        # records, the broker reads on from there
        sent = produce(producer, topic, 1, {0: 40, 2: 40, 4: 24})
        consume_round(consumer, tps, sent)
        # round 2: the quiet ones, and two of the first ones again; three records per
        # poll, so partitions leave the session and come back
        sent = produce(producer, topic, 2, {1: 40, 3: 12, 5: 40, 0: 24, 2: 4})
        assert [offset for offset, _ in sent[0]] == list(range(40, 64))
        consume_round(consumer, tps, sent, max_records=3)
        # round 3: a single record in one partition, after idle rounds
        sent = produce(producer, topic, 3, {5: 1})
        consume_round(consumer, tps, sent)

        assert [consumer.position(tp) for tp in tps] == [64, 40, 44, 12, 24, 41]
        log = [r.getMessage() for r in caplog.records if r.name == FETCHER_LOG]
    finally:
        consumer.close()
        producer.close(timeout=10)

    # the broker opened a session with the first fetch, for all six partitions, and
    # answered every later fetch in it (no error, no new session, nothing invalid)
    created = [m.groups() for m in map(CREATED.search, log) if m]
    assert len(created) == 1, created
    session_id, partitions = int(created[0][0]), int(created[0][1])
    assert session_id > 0 and partitions == PARTITIONS
    trouble = [line for line in log if any(t in line for t in TROUBLE)]
    assert not trouble, trouble[:5]
    incremental = [tuple(map(int, m.groups())) for m in map(INCREMENTAL.search, log) if m]
    assert len(incremental) >= 10, incremental
    assert {sid for sid, _, _ in incremental} == {session_id}
    # incremental responses left out the partitions without news (the idle rounds
    # answered none of the six): a broker answering every partition fails here
    assert any(carried == 0 and implied == PARTITIONS for _, carried, implied in incremental)
    assert max(carried for _, carried, _ in incremental) < PARTITIONS
    # the consumer did move positions, forget partitions and add them back
    built = [m.groups() for m in map(BUILT.search, log) if m]
    assert any(altered != "set()" for _, altered, _ in built)
    assert any(removed != "set()" for _, _, removed in built)
    assert any(added != "set()" for added, _, _ in built)
