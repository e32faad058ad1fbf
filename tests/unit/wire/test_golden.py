"""Golden frames captured from real clients (see golden/README.md, scripts/capture_golden.py).

Each request decodes through :class:`Connection` as the listener would decode it, carries
the fields the capture script made the client send, and re-encodes with the registry's
encoder at the same version to the very bytes the client sent. Each response decodes
with the registry and re-encodes (header included, through ``Connection.send_response``)
byte for byte.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from kbroker.wire.connection import API_VERSIONS_KEY, Connection, Request
from kbroker.wire.registry import default_registry
from kbroker.wire.types import Writer, read_string, skip_tagged_fields

GOLDEN = Path(__file__).resolve().parent / "golden"
TOPIC = "golden-frames"
REGISTRY = default_registry()
BY_FILE_NAME = {
    "".join("_" + c.lower() if c.isupper() else c for c in api.name).lstrip("_"): api
    for api in REGISTRY.apis.values()
}

CLIENT_ID = {
    "kafka-python": "golden-kafka-python",
    "confluent": "golden-confluent",
    "aiokafka": "golden-aiokafka",
    "kafkajs": "kbroker-compat",
    "kcat": "golden-kcat",
}
# ApiVersions v3+ names the client library
SOFTWARE = {
    "kafka-python": ("kafka-python", "3.0.12"),
    "confluent": ("confluent-kafka-python", "2.16.1-rdkafka-2.16.0"),
    "kcat": ("librdkafka", "2.0.2"),
}
# the codec each client was told to use (RecordBatch attributes & 7)
CODEC = {"kafka-python": 1, "confluent": 2, "aiokafka": 3, "kafkajs": 1, "kcat": 4}
# the messages each client produced in its first Produce to partition 0
COUNT = {"kafka-python": 3, "confluent": 3, "aiokafka": 3, "kafkajs": 2, "kcat": 3}
# acks: idempotent producers and librdkafka/kafkajs defaults use all (-1); aiokafka 1
ACKS = {"kafka-python": -1, "confluent": -1, "aiokafka": 1, "kafkajs": -1, "kcat": -1}
IDEMPOTENT = {"kafka-python", "confluent"}
# (producer id, epoch, base sequence) of a non-idempotent batch: librdkafka writes
# (-1, -1, -1) as Java does; aiokafka and kafkajs write a 0 sequence, kafkajs a 0 epoch
NO_PRODUCER = {"aiokafka": (-1, -1, 0), "kafkajs": (-1, 0, 0)}
PARTITIONS = {"kafkajs": 3}
# what librdkafka's all-topics Metadata v9+ leaves after the last field (README.md)
LIBRDKAFKA_METADATA_TRAILER = b"\x01\x00\x00"

REQUESTS = sorted(GOLDEN.glob("*/*.request.bin"))


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name.removesuffix('.request.bin')}"


def parse_name(path: Path) -> tuple[str, int, int, bool]:
    """(client, api_key, version, trailing variant) from ``<client>/<api>_v<N>[.trailing]``."""
    stem = path.name.removesuffix(".request.bin")
    trailing = stem.endswith(".trailing")
    name, _, version = stem.removesuffix(".trailing").rpartition("_v")
    return path.parent.name, BY_FILE_NAME[name].key, int(version), trailing


def decode_request(frame: bytes) -> Request:
    conn = Connection(REGISTRY)
    conn.receive_data(struct.pack(">i", len(frame)) + frame)
    request = conn.next_request()
    assert request is not None and conn.next_request() is None
    assert request.size == len(frame)
    return request


def body_start(frame: bytes, key: int, version: int) -> int:
    _, pos = read_string(frame, 8)
    return skip_tagged_fields(frame, pos) if REGISTRY.apis[key].is_flexible(version) else pos


def request_header(request: Request) -> bytes:
    """The header as Kafka's clients write it: v1, or v2 with no tagged fields."""
    client_id = request.client_id.encode()
    header = struct.pack(">hhih", request.api_key, request.api_version,
                         request.correlation_id, len(client_id)) + client_id
    flexible = REGISTRY.apis[request.api_key].is_flexible(request.api_version)
    return header + (b"\x00" if flexible else b"")


def encode_request(key: int, version: int, body: dict) -> bytes:
    out = Writer()
    REGISTRY.encode_request(key, version, body, out)
    assert not out.regions
    return bytes(out)


def decode_response(request: Request, frame: bytes) -> dict:
    (correlation_id,) = struct.unpack_from(">i", frame, 0)
    assert correlation_id == request.correlation_id
    version = request.response_version
    pos = 4
    if request.api_key != API_VERSIONS_KEY and REGISTRY.apis[request.api_key].is_flexible(version):
        pos = skip_tagged_fields(frame, pos)
    body, end = REGISTRY.decode_response(request.api_key, version, frame, pos)
    assert end == len(frame), f"{len(frame) - end} bytes after the response's last field"
    return body


def load(path: Path) -> tuple[Request, bytes, dict | None]:
    frame = path.read_bytes()
    request = decode_request(frame)
    response_path = path.with_name(path.name.replace(".request.bin", ".response.bin"))
    response = (decode_response(request, response_path.read_bytes())
                if response_path.exists() else None)
    return request, frame, response


def batches(records: bytes) -> list[dict]:
    """The v2 RecordBatch headers in ``records``, each checked for magic and CRC32C."""
    out = []
    pos = 0
    while pos < len(records):
        (base_offset, length, epoch, magic, crc, attributes, last_delta, first_ts, max_ts,
         producer_id, producer_epoch, base_sequence,
         count) = struct.unpack_from(">qiibIhiqqqhii", records, pos)
        end = pos + 12 + length
        assert magic == 2 and end <= len(records)
        assert crc32c(records[pos + 21:end]) == crc, "CRC32C mismatch"
        out.append({"base_offset": base_offset, "epoch": epoch, "codec": attributes & 7,
                    "last_delta": last_delta, "producer_id": producer_id,
                    "producer_epoch": producer_epoch, "base_sequence": base_sequence,
                    "count": count, "first_ts": first_ts, "max_ts": max_ts,
                    "bytes": records[pos:end]})
        pos = end
    return out


def golden(client: str, stem: str) -> tuple[Request, bytes, dict | None]:
    paths = [p for p in (GOLDEN / client).glob(f"{stem}_v*.request.bin")
             if not parse_name(p)[3]]
    assert len(paths) == 1, paths
    return load(paths[0])


def clients() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


# -- every frame: decode and re-encode byte for byte ---------------------------------------
def test_every_client_has_the_core_apis():
    assert set(clients()) >= {"kafka-python", "confluent", "aiokafka"}
    for client in clients():
        names = {parse_name(p)[1] for p in (GOLDEN / client).glob("*.request.bin")}
        assert names >= {0, 1, 2, 3, 18}, f"{client}: {names}"


@pytest.mark.parametrize("path", REQUESTS, ids=case_id)
def test_request_decodes_and_reencodes_byte_for_byte(path):
    client, key, version, trailing = parse_name(path)
    request, frame, _ = load(path)
    assert (request.api_key, request.api_version) == (key, version)
    assert request.client_id == CLIENT_ID[client]
    assert REGISTRY.supports(key, version)

    start = body_start(frame, key, version)
    assert frame[:start] == request_header(request)
    encoded = encode_request(key, version, request.body)
    if trailing:
        assert frame[start:] == encoded + LIBRDKAFKA_METADATA_TRAILER
    else:
        assert frame[start:] == encoded
    # the reference codec reads the same message
    reference_decode, _ = REGISTRY.reference_codec(key, version, response=False)
    assert reference_decode(frame, start)[0] == request.body


@pytest.mark.parametrize("path", [p for p in REQUESTS
                                  if p.with_name(p.name.replace(".request.", ".response."))
                                  .exists()], ids=case_id)
def test_response_decodes_and_reencodes_byte_for_byte(path):
    request, _, body = load(path)
    response = path.with_name(path.name.replace(".request.bin", ".response.bin")).read_bytes()
    conn = Connection(REGISTRY)
    parts = conn.send_response(request, body)
    assert all(isinstance(part, bytes) for part in parts)
    assert b"".join(parts) == struct.pack(">i", len(response)) + response
    # the reference codec reads the same message
    version = request.response_version
    pos = 4
    if request.api_key != API_VERSIONS_KEY and REGISTRY.apis[request.api_key].is_flexible(version):
        pos = skip_tagged_fields(response, pos)
    reference_decode, _ = REGISTRY.reference_codec(request.api_key, version, response=True)
    assert reference_decode(response, pos) == (body, len(response))


# -- what each client said, checked by hand -------------------------------------------------
@pytest.mark.parametrize("client", clients())
def test_api_versions(client):
    request, _, response = golden(client, "api_versions")
    if request.api_version >= 3:
        assert (request.body["client_software_name"],
                request.body["client_software_version"]) == SOFTWARE[client]
    assert response["error_code"] == 0
    advertised = {a["api_key"]: (a["min_version"], a["max_version"])
                  for a in response["api_keys"]}
    # every version the client went on to use was advertised to it
    for path in (GOLDEN / client).glob("*.request.bin"):
        _, key, version, _ = parse_name(path)
        low, high = advertised[key]
        assert low <= version <= high, (path.name, advertised[key])


@pytest.mark.parametrize("client", clients())
def test_metadata(client):
    request, _, response = golden(client, "metadata")
    assert [t["name"] for t in request.body["topics"]] == [TOPIC]
    assert [b["node_id"] for b in response["brokers"]] == [response["controller_id"]]
    assert response["brokers"][0]["host"] == "127.0.0.1"
    [topic] = response["topics"]
    assert (topic["name"], topic["error_code"]) == (TOPIC, 0)
    partitions = sorted(p["partition_index"] for p in topic["partitions"])
    assert partitions == list(range(PARTITIONS.get(client, 1)))
    for p in topic["partitions"]:
        node = response["brokers"][0]["node_id"]
        assert (p["error_code"], p["leader_id"], p["replica_nodes"], p["isr_nodes"]) == \
            (0, node, [node], [node])
    if request.api_version >= 10:
        assert topic["topic_id"] != bytes(16)


def test_librdkafka_all_topics_metadata_has_three_bytes_after_its_last_field():
    [path] = (GOLDEN / "confluent").glob("metadata_v*.trailing.request.bin")
    request, frame, response = load(path)
    assert request.api_version >= 9
    start = body_start(frame, request.api_key, request.api_version)
    # null compact array, the 3 unerased bytes of librdkafka's int32 placeholder, then
    # AllowAutoTopicCreation=1, IncludeTopicAuthorizedOperations=0, no tagged fields
    assert frame[start:] == b"\x00" + b"\x00\x00\x00" + LIBRDKAFKA_METADATA_TRAILER
    assert request.body["topics"] is None  # all topics, as librdkafka meant
    assert request.body["allow_auto_topic_creation"] is False  # read from the placeholder
    assert request.body["include_topic_authorized_operations"] is False
    assert TOPIC in [t["name"] for t in response["topics"]]


@pytest.mark.parametrize("client", [c for c in clients()
                                    if list((GOLDEN / c).glob("create_topics_v*"))])
def test_create_topics(client):
    request, _, response = golden(client, "create_topics")
    [topic] = request.body["topics"]
    assert (topic["name"], topic["num_partitions"], topic["replication_factor"]) == \
        (TOPIC, PARTITIONS.get(client, 1), 1)
    assert topic["assignments"] == [] and topic["configs"] == []
    assert request.body["validate_only"] is False
    assert [(t["name"], t["error_code"]) for t in response["topics"]] == [(TOPIC, 0)]
    if request.api_version >= 5:
        [created] = response["topics"]
        assert (created["num_partitions"], created["replication_factor"]) == (1, 1)
        configs = {c["name"]: c["value"] for c in created["configs"]}
        assert configs["cleanup.policy"] == "delete"


@pytest.mark.parametrize("client", sorted(IDEMPOTENT))
def test_init_producer_id(client):
    request, _, response = golden(client, "init_producer_id")
    assert request.body["transactional_id"] is None
    assert (request.body["producer_id"], request.body["producer_epoch"]) == (-1, -1)
    assert response["error_code"] == 0 and response["producer_id"] >= 0


def produced_batch(client: str) -> tuple[Request, bytes, dict]:
    request, frame, response = golden(client, "produce")
    [topic] = request.body["topic_data"]
    assert topic["name"] == TOPIC
    [records] = [p["records"] for p in topic["partition_data"] if p["index"] == 0]
    return request, frame, records


@pytest.mark.parametrize("client", clients())
def test_produce(client):
    request, frame, records = produced_batch(client)
    assert request.body["acks"] == ACKS[client]
    assert request.body["transactional_id"] is None
    # the records field is the client's bytes, length-prefixed in place in the frame
    at = frame.index(records)
    if REGISTRY.apis[0].is_flexible(request.api_version):
        assert frame[at - 2] == len(records) + 1  # compact bytes: uvarint length + 1
    else:
        assert struct.unpack_from(">i", frame, at - 4)[0] == len(records)
    [batch] = batches(records)
    assert batch["base_offset"] == 0
    assert batch["codec"] == CODEC[client]
    assert batch["count"] == COUNT[client] and batch["last_delta"] == COUNT[client] - 1
    assert batch["first_ts"] <= batch["max_ts"]
    if client in IDEMPOTENT:
        _, _, pid = golden(client, "init_producer_id")
        assert (batch["producer_id"], batch["producer_epoch"], batch["base_sequence"]) == \
            (pid["producer_id"], pid["producer_epoch"], 0)
    else:
        assert (batch["producer_id"], batch["producer_epoch"], batch["base_sequence"]) == \
            NO_PRODUCER.get(client, (-1, -1, -1))
    partitions = {p["index"] for p in request.body["topic_data"][0]["partition_data"]}
    assert partitions == set(range(PARTITIONS.get(client, 1)))


@pytest.mark.parametrize("client", clients())
def test_produce_response(client):
    request, _, response = golden(client, "produce")
    [topic] = response["responses"]
    assert topic["name"] == TOPIC
    for p in topic["partition_responses"]:
        assert (p["error_code"], p["base_offset"], p["log_append_time_ms"]) == (0, 0, -1)


@pytest.mark.parametrize("client", clients())
def test_fetch_returns_the_produced_batch(client):
    request, _, response = golden(client, "fetch")
    [topic] = request.body["topics"]
    if request.api_version >= 13:  # by id: the one Metadata gave this client
        _, _, metadata = golden(client, "metadata")
        assert topic["topic"] == "" and topic["topic_id"] == metadata["topics"][0]["topic_id"]
    else:
        assert topic["topic"] == TOPIC
    [partition] = topic["partitions"]
    assert (partition["partition"], partition["fetch_offset"]) == (0, 0)
    assert request.body["replica_id"] == -1 and request.body["max_wait_ms"] > 0

    assert response["error_code"] == 0
    [answer] = response["responses"]
    [part] = answer["partitions"]
    assert (part["partition_index"], part["error_code"], part["log_start_offset"]) == (0, 0, 0)
    assert part["preferred_read_replica"] == -1
    assert part["high_watermark"] >= COUNT[client]
    # the stored batch is the producer's, with only the partition leader epoch stamped
    _, _, produced = produced_batch(client)
    served = batches(part["records"])
    assert served[0]["epoch"] == 0
    assert served[0]["bytes"] == bytes(produced[:12]) + b"\x00\x00\x00\x00" + produced[16:]
    assert sum(b["count"] for b in served) == part["high_watermark"]


@pytest.mark.parametrize("client", clients())
def test_list_offsets(client):
    request, _, response = golden(client, "list_offsets")
    [topic] = request.body["topics"]
    assert topic["name"] == TOPIC
    [answer] = response["topics"]
    assert answer["name"] == TOPIC
    asked = {p["partition_index"]: p["timestamp"] for p in topic["partitions"]}
    for p in answer["partitions"]:
        assert p["error_code"] == 0
        if asked[p["partition_index"]] == -2:  # earliest
            assert p["offset"] == 0
        elif asked[p["partition_index"]] == -1:  # latest
            assert p["offset"] >= 1


def test_confluent_find_coordinator():
    request, _, response = golden("confluent", "find_coordinator")
    assert (request.body["key"], request.body["key_type"]) == ("golden-no-commit", 0)
    assert response["error_code"] == 0 and response["host"] == "127.0.0.1"
