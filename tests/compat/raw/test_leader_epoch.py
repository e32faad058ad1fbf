"""OffsetForLeaderEpoch (API 23), as a consumer validating its position (KIP-320) sends it."""

from __future__ import annotations

import struct

from compat_clients import confluent_produce
from compat_helpers import Message, topic_name
from compat_wire import RawConnection, Reader, request, string

OFFSET_FOR_LEADER_EPOCH = 23
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
UNKNOWN_TOPIC_OR_PARTITION = 3


def offset_for_leader_epoch_v3(topic: str, queries: list[tuple[int, int, int]], cid: int) -> bytes:
    """queries: (partition, current_leader_epoch, leader_epoch); replica id -2 (a consumer)."""
    body = struct.pack(">i", -2) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", len(queries))
    for partition, current, epoch in queries:
        body += struct.pack(">iii", partition, current, epoch)
    return request(OFFSET_FOR_LEADER_EPOCH, 3, cid, body)


def parse_v3(body: bytes) -> list[tuple[int, int, int, int]]:
    """[(error_code, partition, leader_epoch, end_offset)] of the single topic."""
    r = Reader(body)
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    r.string()
    return [r.take(">hiiq") for _ in range(r.take(">i"))]


def test_end_offsets_of_leader_epochs(broker):
    topic = topic_name("epoch")
    messages = [Message(i, b"k%d" % i, b"v%d" % i, ()) for i in range(7)]
    confluent_produce(broker.bootstrap, topic, messages, partition=0)
    with RawConnection(broker.address) as conn:
        queries = [(0, -1, 0), (0, 0, 0), (0, -1, 3), (0, 1, 0), (5, -1, 0)]
        answers = parse_v3(conn.call(offset_for_leader_epoch_v3(topic, queries, 1)))
    assert answers == [
        (0, 0, 0, 7),  # the current epoch ends at the log end
        (0, 0, 0, 7),  # the consumer knows the current leader epoch
        (0, 0, -1, -1),  # an epoch after the latest is unknown
        (UNKNOWN_LEADER_EPOCH, 0, -1, -1),  # the consumer has heard of a newer leader
        (UNKNOWN_TOPIC_OR_PARTITION, 5, -1, -1),
    ]
