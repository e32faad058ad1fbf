"""The sans-IO Connection: framing, header versions, and refusals that close."""

from __future__ import annotations

import struct

import pytest

from kbroker.wire.connection import Connection, ProtocolError
from kbroker.wire.registry import default_registry
from kbroker.wire.types import Writer, write_compact_string


def frame(api_key: int, version: int, correlation_id: int, body: bytes, flexible: bool) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test"
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_v3_body() -> bytes:
    out = Writer()
    write_compact_string(out, "kbroker-test")
    write_compact_string(out, "1.0")
    out.append(0)
    return bytes(out)


def test_pipelined_requests_come_out_whole_and_in_order():
    conn = Connection(default_registry())
    data = frame(18, 0, 1, b"", False) + frame(18, 3, 2, api_versions_v3_body(), True)
    conn.receive_data(data[:7])
    assert conn.next_request() is None
    conn.receive_data(data[7:])
    first, second = conn.next_request(), conn.next_request()
    assert (first.correlation_id, first.api_version, first.client_id) == (1, 0, "test")
    assert (second.correlation_id, second.api_version) == (2, 3)
    assert second.body["client_software_name"] == "kbroker-test"
    assert conn.next_request() is None


def test_buffered_reads_fill_a_large_frame_in_place():
    """The BufferedProtocol path: mid-frame reads land in the frame's own buffer."""
    conn = Connection(default_registry())
    big = frame(18, 3, 9, api_versions_v3_body() + b"\0" * 5000, True)
    data = frame(18, 0, 1, b"", False) + big + frame(18, 0, 2, b"", False)
    scratch = bytearray(64)
    pos, direct = 0, 0
    while pos < len(data):
        buffer = conn.get_buffer(scratch)
        n = min(len(buffer), len(data) - pos)
        buffer[:n] = data[pos : pos + n]
        direct += buffer.obj is not scratch
        conn.buffer_updated(buffer, n)
        pos += n
    assert direct  # the large frame's tail bypassed the scratch buffer
    assert conn.has_request
    ids = [conn.next_request().correlation_id for _ in range(3)]
    assert ids == [1, 9, 2] and conn.next_request() is None and not conn.has_request


def test_flexible_response_has_header_v1_except_api_versions():
    conn = Connection(default_registry())
    conn.receive_data(frame(18, 3, 7, api_versions_v3_body(), True))
    request = conn.next_request()
    response = b"".join(conn.send_response(request, {"api_keys": []}))
    size, correlation_id = struct.unpack_from(">ii", response)
    assert size == len(response) - 4 and correlation_id == 7
    # ApiVersions keeps response header v0: the body (error_code int16) follows directly
    assert response[8:10] == b"\x00\x00"


def test_newer_api_versions_is_answered_in_v0_layout():
    conn = Connection(default_registry())
    conn.receive_data(frame(18, 99, 5, b"\x01\x02garbage", True))
    request = conn.next_request()
    assert request.body is None and request.response_version == 0
    response = b"".join(conn.send_response(request, {"error_code": 35, "api_keys": []}))
    assert response == struct.pack(">iihi", 10, 5, 35, 0)


def test_oversized_frame_is_refused_before_its_body_arrives():
    conn = Connection(default_registry(), max_request_size=1000)
    conn.receive_data(struct.pack(">i", 1001))
    with pytest.raises(ProtocolError, match="socket.request.max.bytes"):
        conn.next_request()


@pytest.mark.parametrize(
    "data, reason",
    [
        (frame(9999, 0, 1, b"", False), "unknown API key"),
        (frame(3, 77, 1, b"", False), "unsupported version"),
        (frame(3, 1, 1, b"\x00\x00\x00\x05", False), "malformed"),
        (struct.pack(">i", 3) + b"abc", "header truncated"),
    ],
)
def test_protocol_violations_raise(data, reason):
    conn = Connection(default_registry())
    conn.receive_data(data)
    with pytest.raises(ProtocolError, match=reason):
        conn.next_request()
