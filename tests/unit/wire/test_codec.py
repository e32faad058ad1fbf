"""The wire codec: compiled/reference parity over every (API, version), round trips,
hand-checked byte layouts, the schemas against Kafka's own message definitions, varints
and schema parser errors.

The parity tests build pseudo-random messages straight from the schemas, so a new
schema file is covered as soon as it lands in ``protocol/``.
"""

from __future__ import annotations

import json
import random
import re
import struct
from pathlib import Path

import pytest

from kbroker.wire import primitives
from kbroker.wire.primitives import DecodeError
from kbroker.wire.registry import Registry
from kbroker.wire.schema import Field, SchemaError, Versions, load_schemas, parse_schema
from kbroker.wire.types import Writer

REGISTRY = Registry()

# What the broker advertises: (key, implemented, flexible from). ApiVersions is
# generated from the schema files, so these ranges are a promise to clients.
ADVERTISED = {
    "Produce": (0, (3, 11), 9),
    "Fetch": (1, (4, 16), 12),
    "ListOffsets": (2, (1, 8), 6),
    "Metadata": (3, (0, 12), 9),
    "OffsetCommit": (8, (0, 8), 8),
    "OffsetFetch": (9, (0, 8), 6),
    "FindCoordinator": (10, (0, 4), 3),
    "JoinGroup": (11, (0, 9), 6),
    "Heartbeat": (12, (0, 4), 4),
    "LeaveGroup": (13, (0, 5), 4),
    "SyncGroup": (14, (0, 5), 4),
    "DescribeGroups": (15, (0, 5), 5),
    "ListGroups": (16, (0, 4), 3),
    "ApiVersions": (18, (0, 4), 3),
    "CreateTopics": (19, (2, 7), 5),
    "DeleteTopics": (20, (1, 6), 4),
    "DeleteRecords": (21, (0, 2), 2),
    "InitProducerId": (22, (0, 5), 2),
    "OffsetForLeaderEpoch": (23, (0, 4), 4),
    "AddPartitionsToTxn": (24, (0, 5), 3),
    "AddOffsetsToTxn": (25, (0, 4), 3),
    "EndTxn": (26, (0, 4), 3),
    "WriteTxnMarkers": (27, (0, 1), 1),
    "TxnOffsetCommit": (28, (0, 4), 3),
    "DescribeConfigs": (32, (0, 4), 4),
    "AlterConfigs": (33, (0, 2), 2),
    "DescribeLogDirs": (35, (1, 4), 2),
    "CreatePartitions": (37, (0, 3), 2),
    "DeleteGroups": (42, (0, 2), 2),
    "ElectLeaders": (43, (0, 2), 2),
    "IncrementalAlterConfigs": (44, (0, 1), 1),
    "OffsetDelete": (47, (0, 0), Versions.parse("none").low),
    "DescribeCluster": (60, (0, 1), 0),
    "DescribeTransactions": (65, (0, 0), 0),
    "ListTransactions": (66, (0, 1), 0),
}

CASES = [
    pytest.param(api.key, version, response, id=f"{api.name}-v{version}-{kind}")
    for api in sorted(REGISTRY.apis.values(), key=lambda api: api.key)
    for version in range(api.min_version, api.max_version + 1)
    for response, kind in ((False, "request"), (True, "response"))
]

SEEDS = range(12)


# -- random messages from schemas ---------------------------------------------------------
_INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
}
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._ éü€😀"


def _present(field: Field, version: int, flexible: bool) -> bool:
    return version in field.versions and (field.tag is None or flexible)


def random_primitive(type_name: str, rng: random.Random):
    if type_name in _INT_RANGES:
        low, high = _INT_RANGES[type_name]
        # Favour the edges: they are where sign and width mistakes show.
        return rng.choice([low, high, 0, -1 if low < 0 else 1, rng.randint(low, high)])
    if type_name == "bool":
        return rng.random() < 0.5
    if type_name == "float64":
        return rng.choice([0.0, -1.5, rng.uniform(-1e12, 1e12)])
    if type_name == "string":
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))
    if type_name == "uuid":
        return rng.randbytes(16)
    if type_name in ("bytes", "records"):
        return rng.randbytes(rng.randint(0, 40))
    raise AssertionError(type_name)


def random_value(field: Field, version: int, flexible: bool, rng: random.Random):
    if field.is_nullable(version) and rng.random() < 0.25:
        return None
    if field.tag is not None and rng.random() < 0.25:
        return field.make_default()  # a tagged field at its default is left off the wire
    if field.type == "struct":
        return random_struct(field.fields, version, flexible, rng)
    if field.type == "array":
        count = rng.randint(0, 3)
        if field.element is not None:
            return [random_primitive(field.element, rng) for _ in range(count)]
        return [random_struct(field.fields, version, flexible, rng) for _ in range(count)]
    return random_primitive(field.type, rng)


def random_struct(fields, version: int, flexible: bool, rng: random.Random) -> dict:
    obj = {}
    for field in fields:
        if _present(field, version, flexible):
            obj[field.name] = random_value(field, version, flexible, rng)
        elif rng.random() < 0.3:
            # Fields not in this version must be ignored by the encoders, whatever they hold.
            obj[field.name] = random_primitive("int16", rng)
    return obj


def expected_struct(fields, obj: dict, version: int, flexible: bool) -> dict:
    """What decode(encode(obj)) must give: present fields as given, the rest defaults."""
    out = {}
    for field in fields:
        if not _present(field, version, flexible):
            out[field.name] = field.make_default()
            continue
        value = obj[field.name]
        if value is not None and field.type == "struct":
            value = expected_struct(field.fields, value, version, flexible)
        elif value is not None and field.type == "array" and field.element is None:
            value = [expected_struct(field.fields, item, version, flexible) for item in value]
        out[field.name] = value
    return out


def _fields(key: int, response: bool):
    api = REGISTRY.apis[key]
    return api.response if response else api.request


def _encode_both(key: int, version: int, response: bool, message: dict) -> bytes:
    out = Writer()
    if response:
        REGISTRY.encode_response(key, version, message, out)
    else:
        REGISTRY.encode_request(key, version, message, out)
    ref_out = Writer()
    REGISTRY.reference_codec(key, version, response)[1](ref_out, message)
    assert bytes(out) == bytes(ref_out)
    return bytes(out)


def _decode_both(key: int, version: int, response: bool, data: bytes) -> dict:
    decode = REGISTRY.decode_response if response else REGISTRY.decode_request
    decoded, end = decode(key, version, data)
    ref_decoded, ref_end = REGISTRY.reference_codec(key, version, response)[0](data)
    assert decoded == ref_decoded
    assert end == ref_end == len(data)
    return decoded


# -- the registry is what we advertise ------------------------------------------------------
def test_registry_holds_exactly_the_advertised_apis():
    found = {
        api.name: (api.key, (api.min_version, api.max_version), api.flexible.low)
        for api in REGISTRY.apis.values()
    }
    assert found == ADVERTISED
    for api in REGISTRY.apis.values():
        assert api.flexible.high is None or api.flexible == Versions.parse("none")


# -- parity and round trips ---------------------------------------------------------------
@pytest.mark.parametrize(("key", "version", "response"), CASES)
def test_random_messages_parity_and_round_trip(key: int, version: int, response: bool):
    api = REGISTRY.apis[key]
    fields = _fields(key, response)
    flexible = api.is_flexible(version)
    for seed in SEEDS:
        rng = random.Random(f"{api.name}/{version}/{response}/{seed}")
        message = random_struct(fields, version, flexible, rng)
        data = _encode_both(key, version, response, message)
        decoded = _decode_both(key, version, response, data)
        assert decoded == expected_struct(fields, message, version, flexible)
        # Re-encoding what was decoded gives the same bytes.
        assert _encode_both(key, version, response, decoded) == data


@pytest.mark.parametrize(("key", "version", "response"), CASES)
def test_empty_message_encodes_defaults(key: int, version: int, response: bool):
    fields = _fields(key, response)
    data = _encode_both(key, version, response, {})
    decoded = _decode_both(key, version, response, data)
    assert decoded == {field.name: field.make_default() for field in fields}


FLEXIBLE_CASES = [
    case for case in CASES if REGISTRY.apis[case.values[0]].is_flexible(case.values[1])
]


@pytest.mark.parametrize(("key", "version", "response"), FLEXIBLE_CASES)
def test_unknown_tagged_fields_are_skipped(key: int, version: int, response: bool):
    data = bytearray(_encode_both(key, version, response, {}))
    assert data[-1] == 0  # everything at its default: an empty top-level tagged section
    data[-1:] = b"\x01\x63\x03xyz"  # one field with an unknown tag (99), 3 bytes
    decoded = _decode_both(key, version, response, bytes(data))
    assert decoded == {field.name: field.make_default() for field in _fields(key, response)}


def test_truncated_message_raises():
    data = _encode_both(3, 1, False, {"topics": [{"name": "foo"}]})
    with pytest.raises((DecodeError, struct.error)):
        REGISTRY.decode_request(3, 1, data[:-1])
    with pytest.raises((DecodeError, struct.error)):
        REGISTRY.reference_codec(3, 1, False)[0](data[:-1])


class _Region:
    """Stands in for a slice of a segment file in a fetch response."""

    def __init__(self, size: int) -> None:
        self.size = size


def test_records_region_is_kept_by_reference():
    for version in (4, 12):
        partition = {"partition_index": 0, "records": _Region(100)}
        body = {"responses": [{"topic": "t", "topic_id": bytes(16), "partitions": [partition]}]}
        compiled, ref = Writer(), Writer()
        REGISTRY.encode_response(1, version, body, compiled)
        REGISTRY.reference_codec(1, version, True)[1](ref, body)
        assert bytes(compiled) == bytes(ref)
        # Records end the partition; flexible versions then close three tagged sections
        # (partition, topic, response), one empty-count byte each.
        trailer = 3 if version >= 12 else 0
        assert [offset for offset, _ in compiled.regions] == [len(compiled) - trailer]
        assert [offset for offset, _ in ref.regions] == [len(ref) - trailer]
        assert compiled.total_size() == len(compiled) + 100
        # The records length prefix in front of the region says 100 bytes.
        prefix = compiled[: len(compiled) - trailer]
        if version < 12:
            assert bytes(prefix[-4:]) == (100).to_bytes(4, "big")
        else:
            assert bytes(prefix[-1:]) == bytes([101])  # COMPACT_RECORDS: size + 1


# -- hand-checked wire layouts --------------------------------------------------------------
# Built from Kafka's protocol guide (primitive types: INT16/INT32 big-endian, STRING is
# an INT16 length then UTF-8, ARRAY an INT32 count with -1 for null, COMPACT_* lengths are
# UNSIGNED_VARINT length+1 with 0 for null, flexible structs end in a tagged-field
# section: UNSIGNED_VARINT count, then tag, size, value) and the field order of each
# message in Kafka's definitions.
VECTORS = [
    pytest.param(
        18,
        3,
        False,
        {"client_software_name": "kafka-python", "client_software_version": "2.0.2"},
        b"\x0dkafka-python" + b"\x062.0.2" + b"\x00",
        id="ApiVersions-v3-request",
    ),
    pytest.param(18, 0, False, {}, b"", id="ApiVersions-v0-request-empty"),
    pytest.param(
        18,
        0,
        True,
        {"error_code": 0, "api_keys": [{"api_key": 3, "min_version": 0, "max_version": 12}]},
        b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x03\x00\x00\x00\x0c",
        id="ApiVersions-v0-response",
    ),
    pytest.param(
        18,
        3,
        True,
        {
            "error_code": 35,
            "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}],
            "throttle_time_ms": 0,
            "finalized_features_epoch": 5,
        },
        b"\x00\x23"  # error_code UNSUPPORTED_VERSION
        + b"\x02"  # compact array, 1 element
        + b"\x00\x12\x00\x00\x00\x04\x00"  # api_key 18, 0..4, no tagged fields
        + b"\x00\x00\x00\x00"  # throttle_time_ms
        + b"\x01"  # one tagged field
        + b"\x01\x08\x00\x00\x00\x00\x00\x00\x00\x05",  # tag 1, 8 bytes: epoch 5
        id="ApiVersions-v3-response-tagged",
    ),
    pytest.param(
        3,
        1,
        False,
        {"topics": [{"name": "foo"}]},
        b"\x00\x00\x00\x01" + b"\x00\x03foo",
        id="Metadata-v1-request",
    ),
    pytest.param(
        3,
        1,
        False,
        {"topics": None},
        b"\xff\xff\xff\xff",  # null array: all topics
        id="Metadata-v1-request-all-topics",
    ),
    pytest.param(
        3,
        0,
        False,
        {"topics": []},
        b"\x00\x00\x00\x00",  # v0 has no null: an empty array means all topics
        id="Metadata-v0-request",
    ),
    pytest.param(
        3,
        9,
        False,
        {"topics": [{"name": "foo"}], "allow_auto_topic_creation": True},
        b"\x02"  # compact array, 1 topic
        + b"\x04foo\x00"  # compact string, no tagged fields
        + b"\x01"  # allow_auto_topic_creation
        + b"\x00"  # include_cluster_authorized_operations (8-10)
        + b"\x00"  # include_topic_authorized_operations
        + b"\x00",  # no tagged fields
        id="Metadata-v9-request",
    ),
    pytest.param(
        3,
        1,
        True,
        {
            "brokers": [{"node_id": 1, "host": "h", "port": 9092, "rack": None}],
            "controller_id": 1,
            "topics": [
                {
                    "error_code": 0,
                    "name": "t",
                    "is_internal": False,
                    "partitions": [
                        {
                            "error_code": 0,
                            "partition_index": 0,
                            "leader_id": 1,
                            "replica_nodes": [1],
                            "isr_nodes": [1],
                        }
                    ],
                }
            ],
        },
        b"\x00\x00\x00\x01"  # brokers
        + b"\x00\x00\x00\x01\x00\x01h\x00\x00\x23\x84\xff\xff"  # node 1, "h", 9092, rack null
        + b"\x00\x00\x00\x01"  # controller_id
        + b"\x00\x00\x00\x01"  # topics
        + b"\x00\x00\x00\x01t\x00"  # error_code, "t", is_internal
        + b"\x00\x00\x00\x01"  # partitions
        + b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"  # error, index 0, leader 1
        + b"\x00\x00\x00\x01\x00\x00\x00\x01"  # replicas [1]
        + b"\x00\x00\x00\x01\x00\x00\x00\x01",  # isr [1]
        id="Metadata-v1-response",
    ),
    pytest.param(
        12,
        4,
        False,
        {"group_id": "g", "generation_id": 7, "member_id": "m", "group_instance_id": None},
        b"\x02g" + b"\x00\x00\x00\x07" + b"\x02m" + b"\x00" + b"\x00",
        id="Heartbeat-v4-request",
    ),
    pytest.param(
        1,
        12,
        False,
        {
            "cluster_id": "abc",
            "max_wait_ms": 500,
            "min_bytes": 1,
            "isolation_level": 1,
            "topics": [],
            "forgotten_topics_data": [],
        },
        b"\xff\xff\xff\xff"  # replica_id -1 (its default)
        + b"\x00\x00\x01\xf4"  # max_wait_ms
        + b"\x00\x00\x00\x01"  # min_bytes
        + b"\x7f\xff\xff\xff"  # max_bytes default
        + b"\x01"  # isolation_level
        + b"\x00\x00\x00\x00"  # session_id
        + b"\xff\xff\xff\xff"  # session_epoch default -1
        + b"\x01"  # topics: empty compact array
        + b"\x01"  # forgotten_topics_data: empty
        + b"\x01"  # rack_id: empty compact string
        + b"\x01\x00\x04\x04abc",  # tagged: 1 field, tag 0 (cluster_id), 4 bytes
        id="Fetch-v12-request-tagged-cluster-id",
    ),
    pytest.param(
        0,
        3,
        False,
        {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 30000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"RB"}]}],
        },
        b"\xff\xff"  # transactional_id null
        + b"\xff\xff"  # acks -1
        + b"\x00\x00\x75\x30"  # timeout_ms
        + b"\x00\x00\x00\x01\x00\x01t"  # one topic "t"
        + b"\x00\x00\x00\x01\x00\x00\x00\x00"  # one partition, index 0
        + b"\x00\x00\x00\x02RB",  # records: INT32 size, bytes
        id="Produce-v3-request",
    ),
]


@pytest.mark.parametrize(("key", "version", "response", "message", "wire"), VECTORS)
def test_hand_checked_vectors(key, version, response, message, wire):
    assert _encode_both(key, version, response, message) == wire
    assert _matches(_decode_both(key, version, response, wire), message)


def _matches(decoded, given) -> bool:
    """Decoded structs hold every field of the version; the given ones must match."""
    if isinstance(given, dict):
        return all(_matches(decoded[name], value) for name, value in given.items())
    if isinstance(given, list):
        return len(decoded) == len(given) and all(map(_matches, decoded, given))
    return decoded == given


def test_tagged_struct_default_is_omitted_and_set_is_written():
    partition = {"partition_index": 0, "records": None}
    body = {"responses": [{"topic": "t", "partitions": [partition]}]}
    without = _encode_both(1, 12, True, body)
    partition["current_leader"] = {"leader_id": 2, "leader_epoch": 9}
    with_leader = _encode_both(1, 12, True, body)
    # The partition's tagged section grows from "count 0" to: count 1, tag 1, size 9,
    # leader_id 2, leader_epoch 9, the nested struct's own empty tagged section.
    section = b"\x01\x01\x09" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x09" + b"\x00"
    assert len(with_leader) == len(without) + len(section) - 1
    assert b"\x00" + section + b"\x00\x00" == with_leader[-len(section) - 3 :]
    decoded = _decode_both(1, 12, True, with_leader)
    assert decoded["responses"][0]["partitions"][0]["current_leader"] == partition["current_leader"]
    decoded = _decode_both(1, 12, True, without)
    assert decoded["responses"][0]["partitions"][0]["current_leader"] == {
        "leader_id": -1,
        "leader_epoch": -1,
    }


# -- the schemas agree with Kafka's message definitions ----------------------------------------
KAFKA_SPECS = Path("/work/shared/reference/kafka-message-specs")
_DEFAULT_BY_TYPE = {"bool": False, "string": "", "bytes": b"", "records": b"", "float64": 0.0}


def _kafka_json(name: str) -> dict:
    text = (KAFKA_SPECS / f"{name}.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))


def _snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _kafka_view(fields: list, common: dict, version: int) -> list:
    """(name, type, nullable, tag, default, children) of the fields present at ``version``."""
    view = []
    for spec in fields:
        if version not in Versions.parse(spec["versions"]):
            continue
        kind = spec["type"]
        element = kind.removeprefix("[]")
        nullable = version in Versions.parse(spec.get("nullableVersions", "none"))
        children = []
        if element[0].isupper():
            kind = "[]" if kind.startswith("[]") else "{}"
            children = _kafka_view(spec.get("fields") or common[element], common, version)
        default = spec.get("default")
        if kind.startswith(("[]", "{}")) or kind == "uuid" or (nullable and default is None):
            # Arrays, structs and uuids default to their zero values; a nullable field
            # without an explicit default is null in our schemas where Kafka's is "".
            default = None
        elif default is None:
            default = _DEFAULT_BY_TYPE.get(kind, 0)
        elif default == "null":
            default = None
        elif kind == "bool":
            default = str(default) == "true"
        elif kind.startswith(("int", "uint")):
            default = int(str(default), 0)
        view.append((_snake(spec["name"]), kind, nullable, spec.get("tag"), default, children))
    return view


def _our_view(fields, version: int) -> list:
    view = []
    for field in fields:
        if version not in field.versions:
            continue
        kind = field.type
        if kind == "array":
            kind = "[]" + (field.element or "")
        elif kind == "struct":
            kind = "{}"
        nullable = field.is_nullable(version)
        default = field.make_default()
        if kind.startswith(("[]", "{}")) or kind == "uuid" or (nullable and default in ("", b"")):
            default = None  # see _kafka_view
        children = _our_view(field.fields, version)
        view.append((field.name, kind, nullable, field.tag, default, children))
    return view


@pytest.mark.skipif(not KAFKA_SPECS.is_dir(), reason="Kafka's message definitions not present")
@pytest.mark.parametrize(("key", "version", "response"), CASES)
def test_schema_matches_kafka_definition(key: int, version: int, response: bool):
    api = REGISTRY.apis[key]
    spec = _kafka_json(api.name + ("Response" if response else "Request"))
    assert spec["apiKey"] == key
    assert Versions.parse(spec["flexibleVersions"]) == api.flexible
    assert version in Versions.parse(spec["validVersions"])
    common = {struct["name"]: struct["fields"] for struct in spec.get("commonStructs", [])}
    kafka = _kafka_view(spec["fields"], common, version)
    ours = _our_view(_fields(key, response), version)
    assert ours == kafka


# -- varints --------------------------------------------------------------------------------
UVARINTS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    ((1 << 31) - 1, b"\xff\xff\xff\xff\x07"),
    ((1 << 64) - 1, b"\xff" * 9 + b"\x01"),
]

VARINTS = [
    (0, b"\x00"),
    (-1, b"\x01"),
    (1, b"\x02"),
    (-2, b"\x03"),
    (63, b"\x7e"),
    (-64, b"\x7f"),
    (64, b"\x80\x01"),
    (-65, b"\x81\x01"),
    ((1 << 31) - 1, b"\xfe\xff\xff\xff\x0f"),
    (-(1 << 31), b"\xff\xff\xff\xff\x0f"),
    ((1 << 63) - 1, b"\xfe" + b"\xff" * 8 + b"\x01"),
    (-(1 << 63), b"\xff" * 9 + b"\x01"),
]


@pytest.mark.parametrize(("value", "wire"), UVARINTS)
def test_uvarint(value: int, wire: bytes):
    out = bytearray()
    primitives.write_uvarint(out, value)
    assert bytes(out) == wire
    assert primitives.uvarint_size(value) == len(wire)
    assert primitives.read_uvarint(b"\xaa" + wire + b"\xbb", 1) == (value, 1 + len(wire))


@pytest.mark.parametrize(("value", "wire"), VARINTS)
def test_zigzag_varint(value: int, wire: bytes):
    out = bytearray()
    primitives.write_varint(out, value)
    assert bytes(out) == wire
    assert primitives.read_varint(wire, 0) == (value, len(wire))
    assert primitives.read_varint(memoryview(wire), 0) == (value, len(wire))


def test_varint_round_trip_random():
    rng = random.Random(7)
    for _ in range(2000):
        value = rng.randint(-(1 << 63), (1 << 63) - 1) >> rng.randint(0, 63)
        out = bytearray()
        primitives.write_varint(out, value)
        assert len(out) <= 10
        assert primitives.read_varint(out, 0) == (value, len(out))


def test_varint_errors():
    with pytest.raises(DecodeError, match="truncated"):
        primitives.read_uvarint(b"\x80\x80", 0)
    with pytest.raises(DecodeError, match="truncated"):
        primitives.read_uvarint(b"", 0)
    with pytest.raises(DecodeError, match="too long"):
        primitives.read_uvarint(b"\xff" * 10 + b"\x01", 0)


# -- schema parser --------------------------------------------------------------------------
GOOD = """\
# comment line
api Example key=99 implemented=1-3 flexible=2+

request
name        ?string                 # nullable in every version
ids         []int32   1+
items       []        0-2
  value     int64     default=-1
extra       {}        2+  tag=0
  flag      bool      2+  default=true
level       string    nullable=3+

response
error_code  int16
"""


def test_parse_schema_good():
    api = parse_schema(GOOD)
    assert (api.key, api.name, api.min_version, api.max_version) == (99, "Example", 1, 3)
    assert api.is_flexible(2) and not api.is_flexible(1)
    name, ids, items, extra, level = api.request
    assert name.is_nullable(0) and name.make_default() is None
    assert (ids.type, ids.element, ids.versions.low) == ("array", "int32", 1)
    assert (items.versions.low, items.versions.high) == (0, 2)
    assert items.fields[0].make_default() == -1
    assert extra.tag == 0 and extra.make_default() == {"flag": True}
    assert level.is_nullable(3) and not level.is_nullable(2) and level.make_default() == ""
    assert [f.name for f in api.response] == ["error_code"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("request\nx int32\n", "missing 'api' line"),
        ("api A key=1 implemented=0\nx int32\n", "field outside request/response"),
        ("api A key=1 implemented=0\nrequest\nx int33\n", "line 3: unknown type 'int33'"),
        ("api A key=1 implemented=0\nrequest\nx []int33\n", "unknown array element type"),
        ("api A key=1 implemented=0\nrequest\nx int32 1+2\n", "bad version range"),
        ("api A key=1 implemented=0\nrequest\nx int32 bogus=1\n", "unknown options"),
        ("api A key=1 implemented=0\nrequest\nx []\n", "struct fields need indented children"),
        ("api A key=1 implemented=0\nrequest\nx {}\n", "struct fields need indented children"),
        ("api A key=1 implemented=0\nrequest\nx int32\n  y int32\n", "need indented children"),
        ("api A key=1 implemented=0\nrequest\n  x int32\n", "unexpected indentation"),
        ("api A key=1 implemented=0\nrequest\nx []\n    y int32\n", "unexpected indentation"),
        ("api A key=1 implemented=0\nrequest\nx int32 tag=a\n", "line 3"),
    ],
)
def test_parse_schema_errors(text: str, message: str):
    with pytest.raises(SchemaError, match=message) as info:
        parse_schema(text, "bad.schema")
    assert "bad.schema" in str(info.value)


def test_load_schemas_rejects_duplicate_keys(tmp_path: Path):
    (tmp_path / "a.schema").write_text("api A key=7 implemented=0\nrequest\nresponse\n")
    (tmp_path / "b.schema").write_text("api B key=7 implemented=0\nrequest\nresponse\n")
    with pytest.raises(SchemaError, match="declared twice"):
        load_schemas(tmp_path)
