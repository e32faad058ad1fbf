"""CreateTopics / DeleteTopics / DescribeConfigs through confluent-kafka's AdminClient."""

from __future__ import annotations

import time

import pytest
from compat_clients import confluent_consume, confluent_produce
from compat_helpers import Message, topic_name
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

TIMEOUT = 15


@pytest.fixture
def admin(module_broker):
    return AdminClient({"bootstrap.servers": module_broker.bootstrap})


def create(admin, *topics, **kwargs):
    futures = admin.create_topics(list(topics), request_timeout=TIMEOUT, **kwargs)
    return {name: future.exception(timeout=TIMEOUT + 5) for name, future in futures.items()}


def error_code(exc) -> int | None:
    if exc is None:
        return None
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0].code()


def listed(admin) -> dict:
    return admin.list_topics(timeout=TIMEOUT).topics


def test_create_describe_delete(admin, module_broker):
    name = topic_name("cfl-admin")
    assert create(admin, NewTopic(name, num_partitions=4, replication_factor=1)) == {name: None}
    metadata = listed(admin)[name]
    assert metadata.error is None
    assert sorted(metadata.partitions) == [0, 1, 2, 3]
    for partition in metadata.partitions.values():
        assert (partition.leader, partition.replicas, partition.isrs) == (1, [1], [1]) or (
            partition.leader == partition.replicas[0] == partition.isrs[0])

    # the new topic works
    delivered = confluent_produce(module_broker.bootstrap, name,
                                  [Message(0, b"k", b"v", ())], partition=3)
    assert delivered == {0: (3, 0)}

    futures = admin.delete_topics([name], request_timeout=TIMEOUT)
    assert futures[name].result(timeout=TIMEOUT + 5) is None
    deadline = time.monotonic() + 10
    while name in listed(admin) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in listed(admin)
    partition_dirs = [d.name for d in module_broker.data_dir.rglob(f"{name}-*") if d.is_dir()]
    assert [d for d in partition_dirs if not d.endswith("-delete")] == []

    # re-created under the same name, it starts empty
    assert create(admin, NewTopic(name, num_partitions=1)) == {name: None}
    assert confluent_consume(module_broker.bootstrap, name, 0, partitions=1) == []


def test_default_partitions_and_replication(admin, module_broker):
    name = topic_name("cfl-defaults")
    assert create(admin, NewTopic(name)) == {name: None}  # -1, -1: the broker's defaults
    assert sorted(listed(admin)[name].partitions) == [0, 1, 2]  # num.partitions=3


def test_topic_already_exists(admin):
    name = topic_name("cfl-exists")
    assert create(admin, NewTopic(name, 1, 1)) == {name: None}
    assert error_code(create(admin, NewTopic(name, 1, 1))[name]) == (
        KafkaError.TOPIC_ALREADY_EXISTS)


def test_invalid_replication_factor(admin):
    name = topic_name("cfl-rf")
    result = create(admin, NewTopic(name, num_partitions=1, replication_factor=3))
    assert error_code(result[name]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert name not in listed(admin)


def test_invalid_partitions(admin):
    name = topic_name("cfl-parts")
    assert error_code(create(admin, NewTopic(name, num_partitions=0))[name]) == (
        KafkaError.INVALID_PARTITIONS)


@pytest.mark.parametrize("bad", ["bad/name", "x" * 250, ".", "..", "sp ace", "ü"])
def test_invalid_topic_names(admin, bad):
    result = create(admin, NewTopic(bad, 1, 1))
    assert error_code(result[bad]) == KafkaError.TOPIC_EXCEPTION, result[bad]


def test_longest_legal_name(admin):
    name = topic_name("cfl-long")
    name = name + "x" * (249 - len(name))
    assert create(admin, NewTopic(name, 1, 1)) == {name: None}
    assert name in listed(admin)


def test_validate_only(admin):
    name = topic_name("cfl-validate")
    assert create(admin, NewTopic(name, 2, 1), validate_only=True) == {name: None}
    assert name not in listed(admin)
    # errors are still reported when only validating
    assert error_code(create(admin, NewTopic(name, 2, 3), validate_only=True)[name]) == (
        KafkaError.INVALID_REPLICATION_FACTOR)
    existing = topic_name("cfl-validate-existing")
    assert create(admin, NewTopic(existing, 1, 1)) == {existing: None}
    assert error_code(create(admin, NewTopic(existing, 1, 1), validate_only=True)[existing]) \
        == KafkaError.TOPIC_ALREADY_EXISTS


def test_topic_configs_visible_in_describe_configs(admin):
    name = topic_name("cfl-configs")
    configs = {"retention.ms": "123456789", "segment.bytes": "1048576"}
    assert create(admin, NewTopic(name, 1, 1, config=configs)) == {name: None}
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    described = admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(
        timeout=TIMEOUT + 5)
    for key, value in configs.items():
        assert described[key].value == value, key
        assert described[key].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
        assert not described[key].is_default
    # the defaults are listed too, as Kafka does
    assert described["cleanup.policy"].value == "delete"
    assert described["cleanup.policy"].is_default


def test_invalid_config_value(admin):
    name = topic_name("cfl-badconfig")
    result = create(admin, NewTopic(name, 1, 1, config={"retention.ms": "soon"}))
    assert error_code(result[name]) == KafkaError.INVALID_CONFIG
    assert name not in listed(admin)


def test_delete_unknown_topic(admin):
    name = topic_name("cfl-unknown")
    futures = admin.delete_topics([name], request_timeout=TIMEOUT)
    assert error_code(futures[name].exception(timeout=TIMEOUT + 5)) == (
        KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_describe_configs_of_unknown_topic(admin):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name("cfl-nope"))
    future = admin.describe_configs([resource], request_timeout=TIMEOUT)[resource]
    assert error_code(future.exception(timeout=TIMEOUT + 5)) == (
        KafkaError.UNKNOWN_TOPIC_OR_PART)
