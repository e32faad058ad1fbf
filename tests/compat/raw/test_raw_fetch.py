"""Fetch and ListOffsets at the edges of the log, checked on the wire."""

from __future__ import annotations

from compat_clients import confluent_produce
from compat_helpers import Message, topic_name
from compat_wire import (
    RawConnection,
    fetch_v4,
    list_offsets_v1,
    parse_fetch_v4,
    parse_list_offsets_v1,
    read_batches,
)

OFFSET_OUT_OF_RANGE = 1
EARLIEST = -2
LATEST = -1


def test_fetch_outside_the_log_gives_offset_out_of_range(broker):
    topic = topic_name("raw-fetch")
    messages = [Message(i, b"k%d" % i, b"v%d" % i, ()) for i in range(10)]
    confluent_produce(broker.bootstrap, topic, messages, partition=0)

    with RawConnection(broker.address) as conn:
        offsets = parse_list_offsets_v1(
            conn.call(list_offsets_v1(topic, {0: EARLIEST}, 1)))
        assert offsets[(topic, 0)] == (0, -1, 0)
        offsets = parse_list_offsets_v1(conn.call(list_offsets_v1(topic, {0: LATEST}, 2)))
        assert offsets[(topic, 0)] == (0, -1, 10)

        for correlation, offset in ((3, -1), (4, -100), (5, 11), (6, 1000)):
            result = parse_fetch_v4(conn.call(fetch_v4(topic, {0: offset}, correlation)))
            part = result[(topic, 0)]
            assert part["error"] == OFFSET_OUT_OF_RANGE, (offset, part)
            assert part["records"] == b"", (offset, part["records"])

        # at the log end: no error, no records, the high watermark
        part = parse_fetch_v4(conn.call(fetch_v4(topic, {0: 10}, 7)))[(topic, 0)]
        assert (part["error"], part["high_watermark"], part["records"]) == (0, 10, b"")

        # inside the log: whole batches from the one holding the offset
        part = parse_fetch_v4(conn.call(fetch_v4(topic, {0: 4}, 8)))[(topic, 0)]
        assert part["error"] == 0 and part["high_watermark"] == 10
        records = [r for b in read_batches(part["records"]) for r in b["records"]]
        assert records[0][0] <= 4
        assert [r for r in records if r[0] >= 4] == [
            (i, b"k%d" % i, b"v%d" % i) for i in range(4, 10)]
