"""Cooperative rebalancing with librdkafka, and group admin through both admin clients."""

from __future__ import annotations

import pytest
from compat_helpers import topic_name
from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.error import KafkaException
from group_helpers import BROKER_SETTINGS, Member, create_topic, produce, wait_until
from kafka import KafkaAdminClient
from kafka.errors import GroupSubscribedToTopicError, NoError
from kafka.structs import TopicPartition as KPTopicPartition


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(BROKER_SETTINGS)


@pytest.fixture
def members():
    started: list[Member] = []
    yield started
    for member in started:
        member.cleanup()


def test_cooperative_sticky_revokes_only_moved_partitions(group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name("coop")
    create_topic(bootstrap, topic, 6)
    options = {"assignor": "cooperative-sticky"}
    a = Member("confluent", bootstrap, topic, "coop", **options)
    members.append(a)
    a.wait_for(lambda: a.assignment == list(range(6)), what="all six partitions")
    b = Member("confluent", bootstrap, topic, "coop", **options)
    members.append(b)
    wait_until(
        lambda: b.assignment is not None and len(b.assignment) == 3 and len(a.assignment) == 3,
        30,
        "three partitions each",
        [a, b],
    )
    kept = a.assignment
    moved = b.assignment
    assert sorted(kept + moved) == list(range(6))
    # incremental: a gave up exactly what moved to b, and never the partitions it kept
    assert a.revoked() == [moved]
    assert a.assignments() == [list(range(6)), kept]
    b.close()
    a.wait_for(lambda: a.assignment == list(range(6)), what="all six partitions back")
    assert a.revoked() == [moved]  # nothing revoked when partitions come back
    a.close()


def _committed_group(bootstrap: str, topic: str, group: str, counts: list[int]) -> None:
    """Commit offsets for ``group`` without joining it (a simple commit)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, n) for p, n in enumerate(counts)],
            asynchronous=False,
        )
    finally:
        consumer.close()


def test_confluent_admin_list_describe_lag_delete(group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name("admin")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [str(i) for i in range(20)], 2)
    live = Member("confluent", bootstrap, topic, "live-group")
    members.append(live)
    live.wait_for(lambda: len(live.committed()) == 20, what="20 committed records")
    _committed_group(bootstrap, topic, "idle-group", [4, 7])
    admin = AdminClient({"bootstrap.servers": bootstrap})

    listed = admin.list_consumer_groups().result(30)
    states = {g.group_id: g.state for g in listed.valid}
    assert states == {
        "live-group": ConsumerGroupState.STABLE,
        "idle-group": ConsumerGroupState.EMPTY,
    }

    described = admin.describe_consumer_groups(["live-group"])["live-group"].result(30)
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"
    assert len(described.members) == 1
    member = described.members[0]
    assert member.client_id == "rdkafka"
    assert member.host == "/127.0.0.1"
    assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
    assert {tp.topic for tp in member.assignment.topic_partitions} == {topic}

    # lag: committed offsets against the log end (10 records in each partition)
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = [
        ConsumerGroupTopicPartitions(
            "idle-group", [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        )
    ]
    offsets = admin.list_consumer_group_offsets(request)["idle-group"].result(30)
    committed = {tp.partition: tp.offset for tp in offsets.topic_partitions}
    assert committed == {0: 4, 1: 7}
    assert {p: 10 - committed[p] for p in committed} == {0: 6, 1: 3}

    results = admin.delete_consumer_groups(["live-group", "idle-group"])
    with pytest.raises(KafkaException) as failure:
        results["live-group"].result(30)
    assert failure.value.args[0].code() == 68  # NON_EMPTY_GROUP
    assert results["idle-group"].result(30) is None
    remaining = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    assert remaining == {"live-group"}
    live.close()


def test_kafka_python_admin_list_describe_delete(group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name("kp-admin")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [str(i) for i in range(10)], 2)
    live = Member("kafka-python", bootstrap, topic, "kp-live")
    members.append(live)
    live.wait_for(lambda: len(live.committed()) == 10, what="10 committed records")
    _committed_group(bootstrap, topic, "kp-idle", [2, 3])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert sorted((g["group_id"], g["group_state"]) for g in admin.list_groups()) == [
            ("kp-idle", "Empty"),
            ("kp-live", "Stable"),
        ]
        assert [g["group_id"] for g in admin.list_groups(states_filter=["Empty"])] == ["kp-idle"]
        # kafka-python may rejoin once after its first metadata refresh: describe the group
        # once that settled (Stable, partitions assigned), as a user would look at it
        settled = {}

        def stable() -> bool:
            settled.update(admin.describe_groups(["kp-live"])["kp-live"])
            members_ = settled["members"]
            return settled["group_state"] == "Stable" and bool(
                members_ and members_[0]["member_assignment"]["assigned_partitions"]
            )

        wait_until(stable, 30, "kp-live to settle")
        description = settled
        assert description["group_state"] == "Stable"
        assert description["protocol_type"] == "consumer"
        assert description["protocol_data"] == "range"
        assert len(description["members"]) == 1
        member = description["members"][0]
        assert member["client_host"] == "/127.0.0.1"
        assert member["member_metadata"]["topics"] == [topic]
        assert member["member_assignment"]["assigned_partitions"] == [
            {"topic": topic, "partitions": [0, 1]}
        ]

        offsets = admin.list_group_offsets({"kp-idle": None})["kp-idle"]
        assert {tp: o.offset for tp, o in offsets.items()} == {
            KPTopicPartition(topic, 0): 2,
            KPTopicPartition(topic, 1): 3,
        }
        live_offsets = admin.list_group_offsets({"kp-live": None})["kp-live"]
        assert {tp.partition: o.offset for tp, o in live_offsets.items()} == {0: 5, 1: 5}

        # OffsetDelete: refused for a topic the live group consumes, done for an idle group
        refused = admin.delete_group_offsets("kp-live", [KPTopicPartition(topic, 0)])
        assert refused == {KPTopicPartition(topic, 0): GroupSubscribedToTopicError}
        deleted = admin.delete_group_offsets("kp-idle", [KPTopicPartition(topic, 0)])
        assert deleted == {KPTopicPartition(topic, 0): NoError}
        remaining = admin.list_group_offsets({"kp-idle": None})["kp-idle"]
        assert {tp.partition: o.offset for tp, o in remaining.items()} == {1: 3}

        result = admin.delete_groups(["kp-live", "kp-idle"])
        assert result == {"kp-live": "NonEmptyGroupError", "kp-idle": "OK"}
        assert [g["group_id"] for g in admin.list_groups()] == ["kp-live"]
    finally:
        admin.close()
    live.close()


def test_kbroker_groups_cli_shows_members_assignment_and_lag(group_broker, members):
    import subprocess
    import sys

    from compat_broker import REPO_ROOT

    bootstrap = group_broker.bootstrap
    topic = topic_name("cli")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [str(i) for i in range(6)], 2)
    live = Member("kafka-python", bootstrap, topic, "cli-live")
    members.append(live)
    live.wait_for(lambda: len(live.committed()) == 6, what="6 committed records")
    produce(bootstrap, topic, ["late"], 2)  # one record more in partition 0: lag 1 there
    _committed_group(bootstrap, topic, "cli-idle", [1, 0])
    live.close()
    live2 = Member("kafka-python", bootstrap, topic, "cli-live")
    members.append(live2)
    live2.wait_for(lambda: live2.assignment == [0, 1], what="assignment")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "kbroker", "groups", "--port", str(group_broker.port), *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[1:3] == [
        "cli-idle  Empty",  # a group that only commits has no protocol type
        "cli-live  Stable  consumer",
    ]
    described = cli("describe", "cli-idle")
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines() == [
        "group cli-idle: Empty (-/-), 0 members",
        "TOPIC" + " " * (len(topic) - 3) + "PARTITION  COMMITTED  LOG-END  LAG  MEMBER",
        f"{topic}  0          1          4        3    -",
        f"{topic}  1          0          3        3    -",
        "",
    ]
    live_described = cli("describe", "cli-live").stdout
    assert "group cli-live: Stable (consumer/range), 1 members" in live_described
    assert f"{topic}-0, {topic}-1" in live_described
    assert "/127.0.0.1" in live_described
    assert cli("describe", "missing").returncode == 1
