"""Hand-built Kafka frames for the raw-socket tests.

Written here with ``struct`` from Kafka's message definitions, independently of the
broker's own codec, so a codec bug cannot hide itself: ApiVersions v0, Produce v3,
Fetch v4 and ListOffsets v1 (all non-flexible: request header v1, response header v0),
and a RecordBatch v2 builder/reader for uncompressed batches.
"""

from __future__ import annotations

import socket
import struct
import time

from crc32c import crc32c

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_VERSIONS = 18


# -- primitives ---------------------------------------------------------------------------
def string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def bytes_(value: bytes | None) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(value)) + value


def varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)  # zigzag
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


class Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str):
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        size = self.take(">h")
        if size < 0:
            return None
        value = self.buf[self.pos:self.pos + size].decode()
        self.pos += size
        return value

    def bytes(self) -> bytes | None:
        size = self.take(">i")
        if size < 0:
            return None
        value = self.buf[self.pos:self.pos + size]
        self.pos += size
        return value


# -- RecordBatch v2 -----------------------------------------------------------------------
def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int = 0,
                 producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1) -> bytes:
    """An uncompressed v2 batch of (key, value) records with a correct CRC32C."""
    base_timestamp = base_timestamp or int(time.time() * 1000)
    body = bytearray()
    for delta, (key, value) in enumerate(records):
        rec = bytearray(b"\x00")  # attributes
        rec += varint(0) + varint(delta)  # timestamp delta, offset delta
        rec += varint(-1) if key is None else varint(len(key)) + key
        rec += varint(-1) if value is None else varint(len(value)) + value
        rec += varint(0)  # headers
        body += varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, len(records) - 1, base_timestamp, base_timestamp,
                            producer_id, producer_epoch, base_sequence, len(records)) + body
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # leader epoch, magic, crc, rest
    return struct.pack(">qiibI", 0, batch_length, -1, 2, crc) + after_crc


def corrupt_crc(batch: bytes) -> bytes:
    """The same batch with one payload byte flipped (the CRC no longer matches)."""
    data = bytearray(batch)
    data[-1] ^= 0xFF
    return bytes(data)


def read_batches(buf: bytes) -> list[dict]:
    """Parse the v2 batches of a fetch response's records (whole batches only)."""
    batches = []
    pos = 0
    while pos + 61 <= len(buf):
        (base_offset, batch_length, _epoch, magic, crc, attributes, last_delta,
         _first_ts, _max_ts, producer_id, _producer_epoch, _base_seq,
         count) = struct.unpack_from(">qiibIhiqqqhii", buf, pos)
        end = pos + 12 + batch_length
        if end > len(buf):
            break  # a partial batch at the end of a fetch is allowed
        assert magic == 2, magic
        assert crc32c(buf[pos + 21:end]) == crc, f"CRC mismatch in batch at {base_offset}"
        records = []
        if attributes & 0x07 == 0:
            rpos = pos + 61
            for _ in range(count):
                length, rpos = read_varint(buf, rpos)
                rend = rpos + length
                rpos += 1
                _ts, rpos = read_varint(buf, rpos)
                delta, rpos = read_varint(buf, rpos)
                klen, rpos = read_varint(buf, rpos)
                key = None if klen < 0 else buf[rpos:rpos + klen]
                rpos += max(klen, 0)
                vlen, rpos = read_varint(buf, rpos)
                value = None if vlen < 0 else buf[rpos:rpos + vlen]
                records.append((base_offset + delta, key, value))
                rpos = rend
        batches.append({"base_offset": base_offset, "last_offset": base_offset + last_delta,
                        "count": count, "producer_id": producer_id,
                        "compression": attributes & 0x07, "records": records})
        pos = end
    return batches


# -- requests -----------------------------------------------------------------------------
def request(api_key: int, version: int, correlation_id: int, body: bytes,
            client_id: str | None = "compat-raw") -> bytes:
    """A size-prefixed request with header v1."""
    payload = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0(correlation_id: int = 1, version: int = 0) -> bytes:
    return request(API_VERSIONS, version, correlation_id, b"")


def produce_v3(topic: str, partitions: dict[int, bytes], correlation_id: int = 1,
               acks: int = -1, timeout_ms: int = 10_000) -> bytes:
    body = string(None) + struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partitions))
    for partition, records in partitions.items():
        body += struct.pack(">i", partition) + bytes_(records)
    return request(API_PRODUCE, 3, correlation_id, body)


def fetch_v4(topic: str, partitions: dict[int, int], correlation_id: int = 1,
             max_wait_ms: int = 0, max_bytes: int = 10 << 20) -> bytes:
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partitions))
    for partition, offset in partitions.items():
        body += struct.pack(">iqi", partition, offset, 1 << 20)
    return request(API_FETCH, 4, correlation_id, body)


def list_offsets_v1(topic: str, partitions: dict[int, int], correlation_id: int = 1) -> bytes:
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", len(partitions))
    for partition, timestamp in partitions.items():
        body += struct.pack(">iq", partition, timestamp)
    return request(API_LIST_OFFSETS, 1, correlation_id, body)


# -- responses ----------------------------------------------------------------------------
def parse_api_versions_v0(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    r = Reader(body)
    error = r.take(">h")
    apis = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">hhh")
        apis[key] = (low, high)
    return error, apis


def parse_produce_v3(body: bytes) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (error_code, base_offset)."""
    r = Reader(body)
    result = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, error, base_offset, _log_append_time = r.take(">ihqq")
            result[(topic, partition)] = (error, base_offset)
    r.take(">i")  # throttle
    assert r.pos == len(body), "trailing bytes in Produce v3 response"
    return result


def parse_fetch_v4(body: bytes) -> dict[tuple[str, int], dict]:
    r = Reader(body)
    r.take(">i")  # throttle
    result = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, error, high_watermark, last_stable = r.take(">ihqq")
            aborted = r.take(">i")
            for _ in range(max(aborted, 0)):
                r.take(">qq")
            records = r.bytes()
            result[(topic, partition)] = {"error": error, "high_watermark": high_watermark,
                                          "last_stable_offset": last_stable,
                                          "records": records}
    assert r.pos == len(body), "trailing bytes in Fetch v4 response"
    return result


def parse_list_offsets_v1(body: bytes) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (error_code, timestamp, offset)."""
    r = Reader(body)
    result = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, error, timestamp, offset = r.take(">ihqq")
            result[(topic, partition)] = (error, timestamp, offset)
    assert r.pos == len(body), "trailing bytes in ListOffsets v1 response"
    return result


# -- a connection -------------------------------------------------------------------------
class RawConnection:
    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {size} bytes")
            data += chunk
        return bytes(data)

    def response(self, correlation_id: int) -> bytes:
        """The next response's body (after the v0 header), checking the correlation id."""
        size = struct.unpack(">i", self.recv_exact(4))[0]
        frame = self.recv_exact(size)
        got = struct.unpack_from(">i", frame)[0]
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        return frame[4:]

    def call(self, frame: bytes) -> bytes:
        correlation_id = struct.unpack_from(">i", frame, 8)[0]
        self.send(frame)
        return self.response(correlation_id)

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True when the broker closes the connection (EOF or reset) within ``timeout``
        without sending anything; False if it stays open that long. Bytes received
        instead are an error."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        assert data == b"", f"expected the connection closed, got {len(data)} bytes {data[:40]!r}"
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
