"""Malformed input over a raw socket: Kafka's answer, and the broker keeps serving.

After each bad frame another client (confluent-kafka) produces and consumes on the
same topic, and the topic holds exactly the records that were acknowledged.
"""

from __future__ import annotations

import struct

import pytest
from compat_clients import confluent_consume, confluent_produce
from compat_helpers import Message, topic_name
from compat_wire import (
    API_PRODUCE,
    RawConnection,
    api_versions_v0,
    corrupt_crc,
    fetch_v4,
    parse_api_versions_v0,
    parse_fetch_v4,
    parse_produce_v3,
    produce_v3,
    read_batches,
    record_batch,
    request,
)

REQUEST_MAX = 64 * 1024
UNSUPPORTED_VERSION = 35
CORRUPT_MESSAGE = 2


@pytest.fixture(scope="module")
def raw_broker(tmp_path_factory):
    from compat_broker import Broker, _finish

    broker = Broker(tmp_path_factory.mktemp("raw-broker"),
                    {"socket.request.max.bytes": REQUEST_MAX, "num.partitions": 2})
    broker.start()
    yield broker
    _finish([broker])


class Topic:
    """A topic and everything acknowledged on it, to check the log against."""

    def __init__(self, broker) -> None:
        from confluent_kafka import Producer

        self.broker = broker
        self.name = topic_name("raw")
        self.acked: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}
        # Metadata with auto-creation allowed creates it (num.partitions=2)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        metadata = producer.list_topics(self.name, timeout=10)
        assert metadata.topics[self.name].error is None, metadata.topics[self.name].error
        assert sorted(metadata.topics[self.name].partitions) == [0, 1]

    def check_healthy(self) -> None:
        """Another client still produces and consumes; the log is exactly what was acked."""
        self.broker.assert_alive()
        index = len(self.acked)
        message = Message(index, b"healthy-%d" % index, b"value-%d" % index, ())
        delivered = confluent_produce(self.broker.bootstrap, self.name, [message],
                                      partition=index % 2)
        partition, offset = delivered[index]
        self.acked[(partition, offset)] = (message.key, message.value)
        records = confluent_consume(self.broker.bootstrap, self.name, len(self.acked),
                                    partitions=2)
        got = {(r.partition, r.offset): (r.key, r.value) for r in records}
        assert len(records) == len(got), "duplicate records"
        assert got == self.acked


@pytest.fixture
def topic(raw_broker):
    topic = Topic(raw_broker)
    topic.check_healthy()
    return topic


def test_api_versions_v0(raw_broker):
    with RawConnection(raw_broker.address) as conn:
        error, apis = parse_api_versions_v0(conn.call(api_versions_v0(7)))
    assert error == 0
    # the ranges: Produce v3+, Fetch v4+, Metadata v0+, ApiVersions v0-v4
    assert apis[0][0] == 3 and apis[0][1] >= 9, apis.get(0)
    assert apis[1][0] == 4 and apis[1][1] >= 12, apis.get(1)
    assert apis[3][0] == 0 and apis[3][1] >= 9, apis.get(3)
    assert apis[18] == (0, 4), apis.get(18)


def test_newer_api_versions_gets_error_35_and_our_ranges(raw_broker, topic):
    """Kafka answers an ApiVersions version it does not know in v0 format, error 35."""
    with RawConnection(raw_broker.address) as conn:
        error, apis = parse_api_versions_v0(conn.call(api_versions_v0(9, version=127)))
        assert error == UNSUPPORTED_VERSION
        assert apis[18][0] == 0 and apis[18][1] >= 3, apis.get(18)
        # and the connection stays usable
        error, _ = parse_api_versions_v0(conn.call(api_versions_v0(10)))
        assert error == 0
    topic.check_healthy()


def test_frame_larger_than_socket_request_max_bytes_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        # only the size prefix: the broker must close before reading a body
        conn.send(struct.pack(">i", REQUEST_MAX + 1))
        assert conn.closed_by_peer(), "connection left open after an oversized frame size"
    topic.check_healthy()


def test_negative_frame_size_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        conn.send(struct.pack(">i", -5) + b"\x00" * 8)
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_http_garbage_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_garbage_inside_a_valid_size_frame_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        # ApiVersions v0 header whose client id claims 30000 bytes in a 20-byte frame
        payload = struct.pack(">hhih", 18, 0, 3, 30000) + b"\xab" * 10
        conn.send(struct.pack(">i", len(payload)) + payload)
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_frame_shorter_than_a_request_header_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        conn.send(struct.pack(">i", 3) + b"\x00\x12\x00")
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_truncated_request_then_client_closes(raw_broker, topic):
    frame = produce_v3(topic.name, {0: record_batch([(b"never", b"acked")])}, 5)
    with RawConnection(raw_broker.address) as conn:
        conn.send(frame[: len(frame) // 2])
        # the broker waits for the rest: nothing is sent back, the socket stays open
        assert not conn.closed_by_peer(timeout=0.5)
    topic.check_healthy()  # nothing of the half-sent produce was appended


def test_unknown_api_key_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        conn.send(request(9999, 0, 4, b"\x00" * 8))
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_unsupported_version_of_a_known_api_is_closed(raw_broker, topic):
    with RawConnection(raw_broker.address) as conn:
        conn.send(request(API_PRODUCE, 99, 4, b"\x00" * 16))
        assert conn.closed_by_peer()
    topic.check_healthy()


def test_wrong_crc_gives_corrupt_message_for_that_partition_only(raw_broker, topic):
    good = record_batch([(b"good-1", b"first"), (b"good-2", None), (None, b"third")])
    bad = corrupt_crc(record_batch([(b"bad", b"never appended")]))
    with RawConnection(raw_broker.address) as conn:
        result = parse_produce_v3(conn.call(produce_v3(topic.name, {0: good, 1: bad}, 11)))
        assert set(result) == {(topic.name, 0), (topic.name, 1)}
        error, base_offset = result[(topic.name, 0)]
        assert error == 0
        first = base_offset
        assert first == sum(1 for p, _ in topic.acked if p == 0)
        assert result[(topic.name, 1)] == (CORRUPT_MESSAGE, -1)

        # the connection is still good: fetch both partitions raw
        ends = {p: sum(1 for q, _ in topic.acked if q == p) for p in (0, 1)}
        fetched = parse_fetch_v4(conn.call(fetch_v4(topic.name, {0: first, 1: ends[1]}, 12)))
    p0 = fetched[(topic.name, 0)]
    assert p0["error"] == 0 and p0["high_watermark"] == first + 3
    records = [r for b in read_batches(p0["records"]) for r in b["records"]]
    assert records == [(first, b"good-1", b"first"), (first + 1, b"good-2", None),
                       (first + 2, None, b"third")]
    p1 = fetched[(topic.name, 1)]
    assert p1["error"] == 0 and p1["high_watermark"] == ends[1]
    assert p1["records"] == b"", "empty fetch must carry empty (not null) records"

    for i, (key, value) in enumerate(records_kv(records)):
        topic.acked[(0, first + i)] = (key, value)
    topic.check_healthy()


def test_corrupt_batch_among_several_is_refused_whole(raw_broker, topic):
    """Two batches for one partition, the second corrupt: nothing of either is appended."""
    payload = (record_batch([(b"a", b"1")]) + corrupt_crc(record_batch([(b"b", b"2")])))
    with RawConnection(raw_broker.address) as conn:
        result = parse_produce_v3(conn.call(produce_v3(topic.name, {1: payload}, 13)))
    assert result == {(topic.name, 1): (CORRUPT_MESSAGE, -1)}
    topic.check_healthy()


def test_pipelined_requests_are_answered_in_order(raw_broker, topic):
    frames = [api_versions_v0(100 + i) for i in range(20)]
    with RawConnection(raw_broker.address) as conn:
        conn.send(b"".join(frames))
        for i in range(20):
            error, _ = parse_api_versions_v0(conn.response(100 + i))
            assert error == 0
    topic.check_healthy()


def records_kv(records):
    return [(key, value) for _, key, value in records]
