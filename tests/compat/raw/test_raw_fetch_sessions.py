"""Fetch sessions (KIP-227) on the wire: Fetch v7, the first version with sessions,
hand-built (non-flexible: request header v1, response header v0)."""

from __future__ import annotations

import struct

from compat_helpers import topic_name
from compat_wire import (
    API_FETCH,
    RawConnection,
    Reader,
    fetch_v4,
    parse_fetch_v4,
    parse_produce_v3,
    produce_v3,
    read_batches,
    record_batch,
    request,
    string,
)
from kafka.admin import KafkaAdminClient, NewTopic

FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71


def fetch_v7(
    correlation_id: int,
    session_id: int,
    epoch: int,
    topic: str,
    partitions: dict[int, int],
    forgotten: tuple[int, ...] = (),
) -> bytes:
    """A consumer's Fetch v7 of ``partitions`` {partition: fetch offset} of one topic;
    max_wait 0, so it answers at once."""
    body = struct.pack(">iiiibii", -1, 0, 1, 10 << 20, 0, session_id, epoch)
    if partitions:
        body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partitions))
        for partition, offset in partitions.items():
            body += struct.pack(">iqqi", partition, offset, -1, 1 << 20)
    else:
        body += struct.pack(">i", 0)
    if forgotten:
        body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(forgotten))
        body += b"".join(struct.pack(">i", p) for p in forgotten)
    else:
        body += struct.pack(">i", 0)
    return request(API_FETCH, 7, correlation_id, body)


def parse_fetch_v7(body: bytes) -> tuple[int, int, dict[tuple[str, int], dict]]:
    """(error_code, session_id, {(topic, partition): {error, high_watermark, values}})."""
    r = Reader(body)
    r.take(">i")  # throttle
    error, session_id = r.take(">hi")
    result = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, part_error, high_watermark, _lso, _log_start = r.take(">ihqqq")
            for _ in range(max(r.take(">i"), 0)):  # aborted transactions
                r.take(">qq")
            records = r.bytes() or b""
            values = [v for batch in read_batches(records) for _, _, v in batch["records"]]
            assert (topic, partition) not in result, f"{topic}-{partition} answered twice"
            result[(topic, partition)] = {
                "error": part_error,
                "high_watermark": high_watermark,
                "values": values,
            }
    assert r.pos == len(body), "trailing bytes in Fetch v7 response"
    return error, session_id, result


def test_session_on_the_wire_errors_and_the_connection_afterwards(broker):
    topic = topic_name("raw-sessions")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()

    with RawConnection(broker.address) as conn:
        batch = record_batch([(None, b"a0"), (None, b"a1\x00\xff"), (None, b"")])
        assert parse_produce_v3(conn.call(produce_v3(topic, {0: batch}, 1))) == {(topic, 0): (0, 0)}

        # a full fetch with epoch 0 opens a session and answers both partitions
        error, session_id, parts = parse_fetch_v7(conn.call(fetch_v7(2, 0, 0, topic, {0: 0, 1: 0})))
        assert error == 0 and session_id > 0
        assert parts == {
            (topic, 0): {"error": 0, "high_watermark": 3, "values": [b"a0", b"a1\x00\xff", b""]},
            (topic, 1): {"error": 0, "high_watermark": 0, "values": []},
        }

        # epoch 1: partition 0 read to its end, nothing new anywhere: an empty answer
        error, sid, parts = parse_fetch_v7(conn.call(fetch_v7(3, session_id, 1, topic, {0: 3})))
        assert (error, sid, parts) == (0, session_id, {})

        # a wrong epoch (neither the expected 2 nor one already used) and unknown ids
        other = session_id % 0x7FFFFFFF + 1
        refused = [
            (4, session_id, 5, INVALID_FETCH_SESSION_EPOCH),
            (5, session_id, 1, INVALID_FETCH_SESSION_EPOCH),
            (6, other, 2, FETCH_SESSION_ID_NOT_FOUND),
            (7, 0, 2, FETCH_SESSION_ID_NOT_FOUND),
        ]
        for cid, sid, epoch, code in refused:
            answer = parse_fetch_v7(conn.call(fetch_v7(cid, sid, epoch, topic, {0: 0})))
            assert answer == (code, 0, {}), (sid, epoch, answer)

        # the connection still serves requests, and the session was left as it was:
        # epoch 2 expected, partition 0 still at offset 3
        error, sid, parts = parse_fetch_v7(conn.call(fetch_v7(8, session_id, 2, topic, {})))
        assert (error, sid, parts) == (0, session_id, {})
        batch = record_batch([(None, b"b0"), (None, b"b1")])
        assert parse_produce_v3(conn.call(produce_v3(topic, {1: batch}, 9))) == {(topic, 1): (0, 0)}
        error, sid, parts = parse_fetch_v7(conn.call(fetch_v7(10, session_id, 3, topic, {})))
        assert (error, sid) == (0, session_id)
        assert parts == {(topic, 1): {"error": 0, "high_watermark": 2, "values": [b"b0", b"b1"]}}

        # forgotten: partition 1 leaves the session; its news no longer comes
        error, sid, parts = parse_fetch_v7(
            conn.call(fetch_v7(11, session_id, 4, topic, {}, forgotten=(1,)))
        )
        assert (error, sid, parts) == (0, session_id, {})
        batch = record_batch([(None, b"b2")])
        assert parse_produce_v3(conn.call(produce_v3(topic, {1: batch}, 12))) == {
            (topic, 1): (0, 2)
        }
        error, sid, parts = parse_fetch_v7(conn.call(fetch_v7(13, session_id, 5, topic, {})))
        assert (error, sid, parts) == (0, session_id, {})

        # sessionless fetches on the same connection are untouched
        part = parse_fetch_v4(conn.call(fetch_v4(topic, {0: 0, 1: 0}, 14)))
        assert {key: value["high_watermark"] for key, value in part.items()} == {
            (topic, 0): 3,
            (topic, 1): 3,
        }

        # epoch -1 closes the session (a sessionless full answer), then its id is unknown
        error, sid, parts = parse_fetch_v7(conn.call(fetch_v7(15, session_id, -1, topic, {0: 3})))
        assert (error, sid) == (0, 0)
        assert parts == {(topic, 0): {"error": 0, "high_watermark": 3, "values": []}}
        answer = parse_fetch_v7(conn.call(fetch_v7(16, session_id, 6, topic, {})))
        assert answer == (FETCH_SESSION_ID_NOT_FOUND, 0, {})
