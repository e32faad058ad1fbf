"""CreateTopics / DeleteTopics / DescribeConfigs through kafka-python's KafkaAdminClient."""

from __future__ import annotations

import pytest
from compat_helpers import topic_name
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import (
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)


@pytest.fixture
def admin(module_broker):
    client = KafkaAdminClient(bootstrap_servers=module_broker.bootstrap)
    yield client
    client.close()


def topics(admin) -> set[str]:
    return set(admin.list_topics())


def test_create_and_delete(admin):
    name = topic_name("kp-admin")
    result = admin.create_topics({name: {"num_partitions": 2, "replication_factor": 1}})
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(name, 0)]
    assert name in topics(admin)
    result = admin.delete_topics([name])
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(name, 0)]
    assert name not in topics(admin)


def test_errors(admin):
    name = topic_name("kp-errors")
    admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
    other = topic_name("kp-rf")
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({other: {"num_partitions": 1, "replication_factor": 3}})
    assert other not in topics(admin)
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic_name("kp-unknown")])


@pytest.mark.parametrize("bad", ["bad/name", "y" * 250, ".", ".."])
def test_invalid_names(admin, bad):
    with pytest.raises(InvalidTopicError):
        admin.create_topics({bad: {"num_partitions": 1, "replication_factor": 1}})


def test_error_codes_without_raising(admin):
    existing = topic_name("kp-codes")
    admin.create_topics({existing: {"num_partitions": 1, "replication_factor": 1}})
    fresh = topic_name("kp-codes-new")
    result = admin.create_topics(
        {existing: {"num_partitions": 1, "replication_factor": 1},
         "bad/name": {"num_partitions": 1, "replication_factor": 1},
         fresh: {"num_partitions": 1, "replication_factor": 3}},
        raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in result["topics"]}
    assert codes == {existing: 36, "bad/name": 17, fresh: 38}


def test_validate_only(admin):
    name = topic_name("kp-validate")
    result = admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}},
                                 validate_only=True)
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(name, 0)]
    assert name not in topics(admin)


def test_configs(admin):
    name = topic_name("kp-configs")
    configs = {"retention.ms": "86400000", "segment.bytes": "2097152"}
    admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1,
                                "configs": configs}})
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    values = {key: entry["value"] for key, entry in described["topic"][name].items()}
    assert values == configs  # the default filter lists only what was set

    everything = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                        config_filter="all")["topic"][name]
    assert everything["retention.ms"]["value"] == "86400000"
    assert everything["cleanup.policy"]["value"] == "delete"
