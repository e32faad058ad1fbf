"""Replay each client's golden request frames (tests/unit/wire/golden) to a fresh broker.

The frames go over a raw socket as the client sent them, with two patches: a fresh
correlation id, and for requests that address the topic by id (Fetch v13+) the id the
new broker gave the topic in place of the one in the capture. They are sent in the
order a client sends them (ApiVersions, CreateTopics, Metadata, InitProducerId, Produce,
ListOffsets, Fetch, the rest), each response must decode with our registry with nothing
left over and carry no error code, and the Fetch must serve the very batch the replayed
Produce wrote.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from compat_wire import RawConnection

from kbroker.wire.registry import default_registry
from kbroker.wire.types import skip_tagged_fields

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "wire" / "golden"
REGISTRY = default_registry()
ORDER = [18, 19, 3, 22, 0, 2, 1]  # then any other API, by key
API_VERSIONS, METADATA, PRODUCE, FETCH = 18, 3, 0, 1


def frames(client: str) -> list[tuple[int, int, bytes, bytes]]:
    """(api_key, version, request, captured response) in replay order."""
    out = []
    for path in (GOLDEN / client).glob("*.request.bin"):
        request = path.read_bytes()
        response = path.with_name(path.name.replace(".request.", ".response.")).read_bytes()
        key, version = struct.unpack_from(">hh", request, 0)
        rank = ORDER.index(key) if key in ORDER else len(ORDER) + key
        out.append((rank, ".trailing" in path.name, key, version, request, response))
    return [(key, version, request, response)
            for _, _, key, version, request, response in sorted(out)]


def decode_response(key: int, version: int, frame: bytes) -> dict:
    pos = 4
    if key != API_VERSIONS and REGISTRY.apis[key].is_flexible(version):
        pos = skip_tagged_fields(frame, pos)
    body, end = REGISTRY.decode_response(key, version, frame, pos)
    assert end == len(frame), f"{len(frame) - end} bytes after the response's last field"
    return body


def error_codes(value, path: str = "") -> list[tuple[str, int]]:
    """Every error_code in a decoded message, with where it was."""
    found = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "error_code":
                found.append((path or "/", item))
            else:
                found += error_codes(item, f"{path}/{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += error_codes(item, f"{path}[{index}]")
    return found


def fetched_records(body: dict) -> list[bytes]:
    return [p["records"] for t in body["responses"] for p in t["partitions"]]


def topic_ids(metadata: dict) -> dict[str, bytes]:
    return {t["name"]: t["topic_id"] for t in metadata["topics"]}


def clients() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


@pytest.mark.parametrize("client", clients())
def test_replayed_golden_requests_are_answered_without_error(broker, client):
    replayed = []
    id_map: dict[bytes, bytes] = {}
    with RawConnection(broker.address) as conn:
        for correlation_id, (key, version, request, captured) in enumerate(frames(client), 1):
            frame = bytearray(request)
            struct.pack_into(">i", frame, 4, correlation_id)
            for old, new in id_map.items():
                frame = bytearray(bytes(frame).replace(old, new))
            conn.send(struct.pack(">i", len(frame)) + frame)
            (size,) = struct.unpack(">i", conn.recv_exact(4))
            response = conn.recv_exact(size)
            assert struct.unpack_from(">i", response, 0)[0] == correlation_id
            body = decode_response(key, version, response)
            name = f"{REGISTRY.apis[key].name} v{version}"
            assert [e for e in error_codes(body) if e[1] != 0] == [], name
            if key == METADATA and version >= 10:
                # the captured topic id becomes the one this broker gave the topic
                new_ids = topic_ids(body)
                for topic, old in topic_ids(decode_response(key, version, captured)).items():
                    assert new_ids.get(topic, bytes(16)) != bytes(16), (name, topic)
                    id_map[old] = new_ids[topic]
            if key == FETCH:
                # the batch the replayed Produce stored, served as it was in the capture
                assert fetched_records(body) == fetched_records(
                    decode_response(key, version, captured)), name
                assert all(fetched_records(body)), name
            replayed.append(name)
    broker.assert_alive()
    assert {"ApiVersions", "Metadata", "Produce", "Fetch"} <= {n.split()[0] for n in replayed}
