"""Log lifecycle and admin APIs against a broker process, through confluent-kafka's
AdminClient and kafka-python's KafkaAdminClient: retention, compaction, configs that
survive a restart, CreatePartitions, DeleteRecords, DescribeCluster, DescribeLogDirs."""

from __future__ import annotations

import time

import pytest
from compat_helpers import topic_name, wait_for
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

TIMEOUT = 15
FAST = {
    "log.retention.check.interval.ms": 200,
    "log.segment.delete.delay.ms": 500,
    "log.cleaner.backoff.ms": 100,
}


@pytest.fixture
def fast_broker(broker_factory):
    return broker_factory(FAST)


def create(admin, name, partitions=1, **configs):
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                     config={k: str(v) for k, v in configs.items()})
    admin.create_topics([topic], request_timeout=TIMEOUT)[name].result(TIMEOUT)


def produce(bootstrap, name, pairs, partition=0, batch_size=1500):
    """Small batches, so that topics with a small segment.bytes take them."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": batch_size})
    for key, value in pairs:
        producer.produce(name, key=key, value=value, partition=partition)
    assert producer.flush(TIMEOUT) == 0


def watermarks(bootstrap, name, partition=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=TIMEOUT)
    finally:
        consumer.close()


def consume_all(bootstrap, name, start=0, reset="earliest"):
    """(offset, key, value) from ``start`` to the high watermark of partition 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "all",
                         "enable.auto.commit": False, "auto.offset.reset": reset})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=TIMEOUT)
        consumer.assign([TopicPartition(name, 0, start)])
        out = []
        deadline = time.monotonic() + TIMEOUT
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            out.append((message.offset(), message.key(), message.value()))
        return out
    finally:
        consumer.close()


def segment_files(broker, name):
    return sorted(p.name for p in (broker.data_dir / f"{name}-0").iterdir())


def test_retention_moves_the_log_start_and_removes_segment_files(fast_broker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition
    from kafka.errors import OffsetOutOfRangeError

    bootstrap = fast_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = topic_name("retention")
    create(admin, name, **{"segment.bytes": 2000})
    produce(bootstrap, name, [(b"k%d" % i, b"x" * 100) for i in range(200)])
    logs = [f for f in segment_files(fast_broker, name) if f.endswith(".log")]
    assert len(logs) > 5
    assert watermarks(bootstrap, name) == (0, 200)

    # a live retention change: everything is older than 1 s
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    wait_for(lambda: watermarks(bootstrap, name) == (200, 200), what="log start at 200")
    # renamed .deleted first, removed log.segment.delete.delay.ms later
    wait_for(lambda: segment_files(fast_broker, name) == [
        "00000000000000000200.index", "00000000000000000200.log",
        "00000000000000000200.snapshot",  # producer state at the roll, as in Kafka
        "00000000000000000200.timeindex", "leader-epoch-checkpoint"],
        what="old segment files removed")

    produce(bootstrap, name, [(b"new", b"after retention")])
    # a consumer at an old offset is reset to the earliest offset ...
    assert consume_all(bootstrap, name, start=0) == [(200, b"new", b"after retention")]
    # ... or told OFFSET_OUT_OF_RANGE when it has no reset policy
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="none",
                             enable_auto_commit=False)
    partition = KpTopicPartition(name, 0)
    consumer.assign([partition])
    consumer.seek(partition, 5)
    with pytest.raises(OffsetOutOfRangeError):
        for _ in range(20):
            consumer.poll(timeout_ms=500)
    consumer.close()


def test_compaction_keeps_the_latest_value_of_every_live_key(fast_broker):
    bootstrap = fast_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = topic_name("compacted")
    create(admin, name, **{"cleanup.policy": "compact", "segment.bytes": 16384,
                           "segment.ms": 1000, "min.cleanable.dirty.ratio": 0.01,
                           "delete.retention.ms": 1500})
    updates = [(b"key-%d" % (i % 100), b"value-%d" % i) for i in range(10_000)]
    updates += [(b"key-%d" % k, None) for k in range(10)]  # 10 keys deleted
    filler = [(b"key-%d" % (50 + i % 50), b"filler-%d-" % i + b"f" * 200) for i in range(200)]
    produce(bootstrap, name, updates + filler, batch_size=8192)
    expected = {}
    for key, value in updates + filler:
        expected[key] = value
    live = {k: v for k, v in expected.items() if v is not None}

    def compacted():
        records = consume_all(bootstrap, name)
        return records if len(records) < 1000 else None

    records = wait_for(compacted, what="the first cleaning")
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)) and offsets[-1] == 10_209
    state = {}
    for _, key, value in records:
        state[key] = value
    assert {k: v for k, v in state.items() if v is not None} == live
    # after delete.retention.ms and one more cleaning the tombstones are gone too; the
    # next append rolls the segment (segment.ms), so all of the old data is cleanable
    time.sleep(1.6)
    produce(bootstrap, name, [(b"key-99", b"g")])

    def tombstones_gone():
        records = consume_all(bootstrap, name)
        keys = {k for _, k, _ in records}
        return records if not keys & {b"key-%d" % k for k in range(10)} else None

    records = wait_for(tombstones_gone, what="tombstones removed")
    state = {}
    for _, key, value in records:
        assert value is not None
        state[key] = value
    assert state == {**live, b"key-99": b"g"}
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets))


def test_configs_round_trip_and_survive_a_restart(fast_broker):
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    bootstrap = fast_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = topic_name("configs")
    create(admin, name, **{"retention.ms": 3_600_000})
    # confluent: incremental SET / APPEND, and a bad value naming the key
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("segment.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    bad = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "forever", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as excinfo:
        admin.incremental_alter_configs([bad])[bad].result(TIMEOUT)
    assert excinfo.value.args[0].code() == 40 and "retention.ms" in excinfo.value.args[0].str()
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    # kafka-python: legacy AlterConfigs replaces the topic's whole set
    kp.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, name, configs={
        "segment.bytes": "65536", "cleanup.policy": "delete,compact",
        "retention.ms": "7200000"})], incremental=False)
    # dynamic configs of this broker (neither client names the cluster-wide default "")
    this_broker = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.bytes", "123456789",
                    incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([this_broker])[this_broker].result(TIMEOUT)
    kp.alter_configs([KpConfigResource(ConfigResourceType.BROKER, "1", configs={
        "log.cleaner.delete.retention.ms": "5000"})], raise_on_unknown=False)
    kp.close()

    def described():
        admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
        topic = ConfigResource(ResourceType.TOPIC, name)
        entries = admin.describe_configs([topic])[topic].result(TIMEOUT)
        return {k: (e.value, e.source) for k, e in entries.items()
                if k in ("segment.bytes", "cleanup.policy", "retention.ms", "retention.bytes",
                         "delete.retention.ms")}

    expected = {
        "segment.bytes": ("65536", 1),
        "cleanup.policy": ("delete,compact", 1),
        "retention.ms": ("7200000", 1),
        "retention.bytes": ("123456789", 2),  # DYNAMIC_BROKER_CONFIG
        "delete.retention.ms": ("5000", 2),
    }
    assert described() == expected
    fast_broker.restart()
    assert described() == expected
    kp = KafkaAdminClient(bootstrap_servers=fast_broker.bootstrap)
    modified = kp.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, name)])
    kp.close()
    # "modified": everything not at its default, the topic's and the broker's dynamic configs
    assert {k: v["value"] for k, v in modified["topic"][name].items()} == {
        "segment.bytes": "65536", "cleanup.policy": "delete,compact", "retention.ms": "7200000",
        "retention.bytes": "123456789", "delete.retention.ms": "5000"}


def test_partitions_records_cluster_and_log_dirs(broker):
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewPartitions as KpNewPartitions
    from kafka.structs import TopicPartition as KpTopicPartition

    bootstrap = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = topic_name("parts")
    create(admin, name, partitions=1)
    admin.create_partitions([NewPartitions(name, 3)])[name].result(TIMEOUT)
    assert sorted(admin.list_topics(name, timeout=TIMEOUT).topics[name].partitions) == [0, 1, 2]
    with pytest.raises(KafkaException) as excinfo:
        admin.create_partitions([NewPartitions(name, 2)])[name].result(TIMEOUT)
    assert excinfo.value.args[0].code() == 37  # INVALID_PARTITIONS
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    kp.create_partitions({name: KpNewPartitions(total_count=4)})
    assert sorted(admin.list_topics(name, timeout=TIMEOUT).topics[name].partitions) == [0, 1, 2, 3]
    produce(bootstrap, name, [(b"k", b"v%d" % i) for i in range(10)], partition=3)

    # DeleteRecords through confluent, then kafka-python
    deleted = admin.delete_records([TopicPartition(name, 3, 4)])
    assert deleted[TopicPartition(name, 3, 4)].result(TIMEOUT).low_watermark == 4
    assert watermarks(bootstrap, name, 3) == (4, 10)
    result = kp.delete_records({KpTopicPartition(name, 3): 7})
    assert result[KpTopicPartition(name, 3)]["low_watermark"] == 7
    assert watermarks(bootstrap, name, 3) == (7, 10)

    cluster = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
    assert cluster.controller.id == 1
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, broker.host, broker.port)]
    assert cluster.cluster_id == kp.describe_cluster()["cluster_id"]

    dirs = kp.describe_log_dirs({name: [3]})
    assert len(dirs) == 1 and dirs[0]["broker"] == 1
    [log_dir] = dirs[0]["log_dirs"]
    assert log_dir["log_dir"] == str(broker.data_dir)
    [topic] = log_dir["topics"]
    [partition] = topic["partitions"]
    size = sum(p.stat().st_size for p in (broker.data_dir / f"{name}-3").glob("*.log"))
    assert (topic["name"], partition["partition_index"], partition["partition_size"]) == (
        name, 3, size)
    kp.close()
