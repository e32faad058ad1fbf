"""Config, partition and cluster admin handlers against an in-process Broker (no sockets)."""

from __future__ import annotations

import pytest
from api_helpers import call

from kbroker.config import BrokerConfig
from kbroker.server.broker import Broker
from kbroker.wire.errors import ErrorCode
from kbroker.wire.record import build_batch

TOPIC, BROKER = 2, 4
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@pytest.fixture
def make_broker(tmp_path):
    made = []

    def make(**settings):
        values = {"log.dirs": str(tmp_path / "data"), **settings}
        broker = Broker(BrokerConfig({k: str(v) for k, v in values.items()}))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def incremental(broker, kind, name, *ops, validate_only=False):
    configs = [{"name": n, "config_operation": op, "value": v} for op, n, v in ops]
    body = {
        "resources": [{"resource_type": kind, "resource_name": name, "configs": configs}],
        "validate_only": validate_only,
    }
    return call(broker, 44, 1, body)["responses"][0]


def describe(broker, kind, name, synonyms=False):
    body = {
        "resources": [{"resource_type": kind, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": synonyms,
    }
    result = call(broker, 32, 4, body)["results"][0]
    return {c["name"]: c for c in result["configs"]}


def test_incremental_alter_applies_live_and_persists(make_broker):
    broker = make_broker()
    broker.controller.create_topic("t", 2, 1)
    ok = incremental(
        broker, TOPIC, "t", (SET, "retention.ms", "1000"), (SET, "segment.bytes", "4096")
    )
    assert ok["error_code"] == 0
    assert broker.hosted_partition_by_name("t", 1).log.config.retention_ms == 1000
    assert broker.hosted_partition_by_name("t", 0).log.config.segment_bytes == 4096
    entry = describe(broker, TOPIC, "t")["retention.ms"]
    assert (entry["value"], entry["config_source"], entry["is_default"]) == ("1000", 1, False)
    assert incremental(broker, TOPIC, "t", (DELETE, "segment.bytes", None))["error_code"] == 0
    assert broker.hosted_partition_by_name("t", 0).log.config.segment_bytes == 1073741824
    broker.close()
    again = make_broker()
    assert again.controller.store.topics["t"].configs == {"retention.ms": "1000"}
    assert again.hosted_partition_by_name("t", 0).log.config.retention_ms == 1000


def test_append_subtract_and_errors(make_broker):
    broker = make_broker()
    broker.controller.create_topic("t", 1, 1)
    assert incremental(broker, TOPIC, "t", (APPEND, "cleanup.policy", "compact"))["error_code"] == 0
    assert broker.controller.store.topics["t"].configs["cleanup.policy"] == "delete,compact"
    assert broker.hosted_partition_by_name("t", 0).log.config.compact
    incremental(broker, TOPIC, "t", (SUBTRACT, "cleanup.policy", "delete"))
    assert broker.controller.store.topics["t"].configs["cleanup.policy"] == "compact"
    bad = incremental(broker, TOPIC, "t", (SET, "retention.ms", "soon"))
    assert bad["error_code"] == ErrorCode.INVALID_CONFIG and "retention.ms" in bad["error_message"]
    bad = incremental(broker, TOPIC, "t", (SET, "min.cleanable.dirty.ratio", "1.5"))
    assert bad["error_code"] == ErrorCode.INVALID_CONFIG
    assert "min.cleanable.dirty.ratio" in bad["error_message"]
    bad = incremental(broker, TOPIC, "t", (SET, "no.such.key", "1"))
    assert bad == {
        **bad,
        "error_code": ErrorCode.INVALID_CONFIG,
        "error_message": "Unknown topic config name: no.such.key",
    }
    bad = incremental(broker, TOPIC, "t", (APPEND, "retention.ms", "1"))
    assert bad["error_code"] == ErrorCode.INVALID_REQUEST
    assert incremental(broker, TOPIC, "nope", (SET, "retention.ms", "1"))["error_code"] == 3
    # validate_only changes nothing
    incremental(broker, TOPIC, "t", (SET, "retention.ms", "5"), validate_only=True)
    assert "retention.ms" not in broker.controller.store.topics["t"].configs


def test_alter_configs_replaces_the_whole_set(make_broker):
    broker = make_broker()
    broker.controller.create_topic("t", 1, 1, {"retention.ms": "100", "segment.bytes": "2000"})
    body = {
        "resources": [
            {
                "resource_type": TOPIC,
                "resource_name": "t",
                "configs": [{"name": "retention.bytes", "value": "999"}],
            }
        ],
        "validate_only": False,
    }
    assert call(broker, 33, 2, body)["responses"][0]["error_code"] == 0
    assert broker.controller.store.topics["t"].configs == {"retention.bytes": "999"}
    config = broker.hosted_partition_by_name("t", 0).log.config
    assert (config.retention_bytes, config.retention_ms) == (999, 604800000)


def test_dynamic_broker_configs_layer_apply_and_persist(make_broker):
    broker = make_broker(**{"log.retention.hours": "48"})
    broker.controller.create_topic("t", 1, 1)
    assert incremental(broker, BROKER, "", (SET, "log.retention.ms", "7000"))["error_code"] == 0
    assert broker.hosted_partition_by_name("t", 0).log.config.retention_ms == 7000
    entry = describe(broker, TOPIC, "t", synonyms=True)["retention.ms"]
    assert (entry["value"], entry["config_source"]) == ("7000", 3)
    assert [(s["name"], s["value"], s["source"]) for s in entry["synonyms"]] == [
        ("log.retention.ms", "7000", 3),
        ("log.retention.hours", "48", 4),
        ("log.retention.hours", "168", 5),
    ]
    # this broker's own dynamic config beats the cluster default
    assert incremental(broker, BROKER, "1", (SET, "log.retention.ms", "8000"))["error_code"] == 0
    assert describe(broker, BROKER, "1")["log.retention.ms"]["config_source"] == 2
    bad = incremental(broker, BROKER, "1", (SET, "num.partitions", "4"))
    assert bad["error_code"] == ErrorCode.INVALID_REQUEST
    assert "num.partitions" in bad["error_message"]
    assert describe(broker, BROKER, "1")["num.partitions"]["read_only"] is True
    assert incremental(broker, BROKER, "7", (SET, "log.retention.ms", "1"))["error_code"] == 42
    broker.close()
    again = make_broker(**{"log.retention.hours": "48"})
    assert again.hosted_partition_by_name("t", 0).log.config.retention_ms == 8000
    assert incremental(again, BROKER, "1", (DELETE, "log.retention.ms", None))["error_code"] == 0
    assert again.hosted_partition_by_name("t", 0).log.config.retention_ms == 7000


def test_create_partitions(make_broker):
    broker = make_broker()
    broker.controller.create_topic("t", 1, 1)
    log0 = broker.hosted_partition_by_name("t", 0)

    def create(name, count, assignments=None, validate_only=False):
        body = {
            "topics": [{"name": name, "count": count, "assignments": assignments}],
            "timeout_ms": 1000,
            "validate_only": validate_only,
        }
        return call(broker, 37, 3, body)["results"][0]

    assert create("t", 3, validate_only=True)["error_code"] == 0
    assert len(broker.controller.store.topics["t"].partitions) == 1
    assert create("t", 3)["error_code"] == 0
    assert [broker.hosted_partition_by_name("t", i).index for i in range(3)] == [0, 1, 2]
    assert broker.hosted_partition_by_name("t", 0) is log0  # existing partitions untouched
    assert create("t", 2) == {
        "name": "t",
        "error_code": ErrorCode.INVALID_PARTITIONS,
        "error_message": "Topic currently has 3 partitions, which is higher than the requested 2.",
    }
    assert create("t", 3)["error_message"] == "Topic already has 3 partitions."
    assert create("t", 5, [{"broker_ids": [1]}])["error_code"] == 39
    assert create("t", 4, [{"broker_ids": [2]}])["error_code"] == 39
    assert create("missing", 4)["error_code"] == 3


def test_delete_records(make_broker):
    broker = make_broker()
    broker.controller.create_topic("t", 1, 1)
    broker.controller.create_topic("c", 1, 1, {"cleanup.policy": "compact"})
    for name in ("t", "c"):
        partition = broker.hosted_partition_by_name(name, 0)
        for _ in range(3):
            partition.log.append(build_batch([(b"k", b"v", [], None)] * 4))
        partition.appended()

    def delete(name, offset):
        body = {
            "topics": [{"name": name, "partitions": [{"partition_index": 0, "offset": offset}]}]
        }
        return call(broker, 21, 2, body)["topics"][0]["partitions"][0]

    assert delete("t", 5) == {"partition_index": 0, "low_watermark": 5, "error_code": 0}
    assert delete("t", 13)["error_code"] == ErrorCode.OFFSET_OUT_OF_RANGE
    assert delete("t", -1) == {"partition_index": 0, "low_watermark": 12, "error_code": 0}
    assert delete("c", 2)["error_code"] == ErrorCode.POLICY_VIOLATION
    assert delete("x", 2)["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_describe_cluster_and_log_dirs(make_broker, tmp_path):
    broker = make_broker()
    broker.controller.create_topic("t", 2, 1)
    partition = broker.hosted_partition_by_name("t", 1)
    partition.log.append(build_batch([(None, b"x" * 100, [], None)]))
    partition.appended()
    cluster = call(broker, 60, 1, {"include_cluster_authorized_operations": False})
    assert cluster["cluster_id"] == broker.controller.store.cluster_id
    assert cluster["controller_id"] == 1 and cluster["error_code"] == 0
    assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(1, 9092)]
    controllers = call(broker, 60, 1, {"endpoint_type": 2})
    assert controllers["error_code"] == ErrorCode.UNSUPPORTED_ENDPOINT_TYPE
    dirs = call(broker, 35, 4, {"topics": [{"topic": "t", "partitions": [1]}]})["results"]
    assert len(dirs) == 1 and dirs[0]["log_dir"] == str(tmp_path / "data")
    assert dirs[0]["topics"] == [
        {
            "name": "t",
            "partitions": [
                {
                    "partition_index": 1,
                    "partition_size": partition.log.size,
                    "offset_lag": 0,
                    "is_future_key": False,
                }
            ],
        }
    ]
    assert dirs[0]["total_bytes"] > 0
    everything = call(broker, 35, 4, {"topics": None})["results"][0]["topics"]
    assert [(t["name"], len(t["partitions"])) for t in everything] == [("t", 2)]
