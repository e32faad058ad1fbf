"""kbroker.cluster.zookeeper against a real ZooKeeper server, in Kafka's znode layout.

Each test works under a chroot of its own on the session's server; the raw kazoo client
``raw`` (no chroot) reads what the store wrote, byte for byte.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from kazoo.client import KazooClient

from kbroker.cluster.election import LeaderAndIsr
from kbroker.cluster.zookeeper import (
    BrokerRegistration,
    ControllerMoved,
    NodeExists,
    TopicAssignment,
    ZkStore,
    decode_topic_id,
    encode_topic_id,
    split_connect,
)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def chroot():
    return f"/kbroker-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stores(zookeeper, chroot):
    """``stores()`` opens a started ZkStore on this test's chroot; all closed at teardown."""
    opened: list[ZkStore] = []

    def make(session_timeout_ms: int = 6000) -> ZkStore:
        store = ZkStore(zookeeper.connect_string(chroot), session_timeout_ms=session_timeout_ms)
        store.start()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def raw(zookeeper, chroot):
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=10)
    yield lambda path: client.get(chroot + path)
    client.stop()
    client.close()


def test_split_connect():
    assert split_connect("a:1,b:2/kafka/x") == ("a:1,b:2", "/kafka/x")
    assert split_connect("a:1/") == ("a:1", "")
    assert split_connect("a:1") == ("a:1", "")


def test_topic_id_is_kafka_base64url():
    topic_id = uuid.UUID("8f6f2a0e-53a5-4b0e-9d6b-1a2b3c4d5e6f")
    text = encode_topic_id(topic_id)
    assert len(text) == 22 and "=" not in text
    assert text == "j28qDlOlSw6daxorPE1ebw"
    assert decode_topic_id(text) == topic_id


def test_chroot_and_persistent_paths_are_created(stores, raw, chroot, zookeeper):
    stores()
    for path in ("/brokers/ids", "/brokers/topics", "/config/topics", "/admin/delete_topics"):
        raw(path)  # raises NoNodeError if missing
    data, _ = raw("/latest_producer_id_block")
    assert data == b""


def test_cluster_id_is_created_once(stores, raw):
    a, b = stores(), stores()
    assert a.get_or_create_cluster_id("first-id") == "first-id"
    assert b.get_or_create_cluster_id("second-id") == "first-id"
    data, _ = raw("/cluster/id")
    assert json.loads(data) == {"version": "1", "id": "first-id"}


def test_broker_registration_is_kafkas_json_and_ephemeral(stores, raw):
    store = stores()
    store.register_broker(BrokerRegistration(1, "127.0.0.1", 9093, timestamp="1700000000000"))
    data, stat = raw("/brokers/ids/1")
    assert json.loads(data) == {
        "version": 5,
        "host": "127.0.0.1",
        "port": 9093,
        "endpoints": ["PLAINTEXT://127.0.0.1:9093"],
        "jmx_port": -1,
        "timestamp": "1700000000000",
        "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
        "rack": None,
        "features": {},
    }
    assert stat.ephemeralOwner == store.session_id
    other = stores()
    assert other.broker_ids() == [1]
    registration = other.get_broker(1)
    assert (registration.broker_id, registration.host, registration.port) == (1, "127.0.0.1", 9093)
    assert other.get_broker(2) is None
    # registering again in the same session is fine
    store.register_broker(BrokerRegistration(1, "127.0.0.1", 9093))


def test_broker_id_held_by_another_session(stores):
    first, second = stores(), stores()
    first.register_broker(BrokerRegistration(1, "h", 1))
    with pytest.raises(NodeExists):
        second.register_broker(BrokerRegistration(1, "h", 2))
    # it waits for the old session's znode to go
    threading.Timer(0.3, first.close).start()
    started = time.monotonic()
    second.register_broker(BrokerRegistration(1, "h", 2), wait_s=10)
    assert time.monotonic() - started < 5
    assert second.get_broker(1).port == 2


def test_watch_brokers(stores):
    watcher = stores()
    seen: list[list[int]] = []
    watcher.watch_brokers(seen.append)
    wait_for(lambda: seen == [[]], what="initial broker list")
    a, b = stores(), stores()
    a.register_broker(BrokerRegistration(1, "h", 1))
    wait_for(lambda: seen[-1] == [1], what="broker 1")
    b.register_broker(BrokerRegistration(2, "h", 2))
    wait_for(lambda: seen[-1] == [1, 2], what="broker 2")
    a.close()
    wait_for(lambda: seen[-1] == [2], what="broker 1 gone")
    assert watcher.get_brokers().keys() == {2}


def test_new_session_after_expiry_lets_broker_register_again(stores, zookeeper, chroot):
    store = stores(session_timeout_ms=4000)
    store.register_broker(BrokerRegistration(3, "h", 3))
    states: list[str] = []
    store.on_state_change(states.append)
    renewed = threading.Event()

    def again():
        store.register_broker(BrokerRegistration(3, "h", 3))
        renewed.set()

    store.on_new_session(again)
    old_session = store.session_id
    # expire the session: another client takes it over and closes it
    session_id, password = store.client.client_id
    thief = KazooClient(hosts=zookeeper.connect_string(chroot), client_id=(session_id, password))
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    assert renewed.wait(20), f"no new session; states {states}"
    assert "LOST" in states
    assert store.session_id != old_session
    watcher = stores()
    assert watcher.broker_ids() == [3]


def test_controller_election_and_epochs(stores, raw):
    a, b = stores(), stores()
    assert a.get_controller() is None
    assert a.get_controller_epoch() == (0, -1)
    claim = a.elect_controller(1)
    assert (claim.broker_id, claim.epoch) == (1, 1)
    assert b.elect_controller(2) is None
    data, _ = raw("/controller")
    doc = json.loads(data)
    assert doc["version"] == 2 and doc["brokerid"] == 1 and doc["timestamp"].isdigit()
    assert raw("/controller_epoch")[0] == b"1"
    seen: list[int | None] = []
    b.watch_controller(seen.append)
    wait_for(lambda: seen == [1], what="controller 1")
    a.close()
    wait_for(lambda: seen[-1] is None, what="controller gone")
    claim2 = b.elect_controller(2)
    assert claim2.epoch == 2 and claim2.epoch_version == claim.epoch_version + 1
    wait_for(lambda: seen[-1] == 2, what="controller 2")
    assert b.get_controller_epoch() == (2, claim2.epoch_version)
    b.resign_controller(claim2)
    assert b.get_controller() is None


def test_topics_in_kafkas_layout(stores, raw):
    store = stores()
    seen: list[list[str]] = []
    store.watch_topics(seen.append)
    topic_id = uuid.uuid4()
    created = store.create_topic(
        "orders", {0: [1, 2, 3], 1: [2, 3, 1]}, {"min.insync.replicas": "2"}, topic_id
    )
    assert created.version == 0
    data, _ = raw("/brokers/topics/orders")
    assert json.loads(data) == {
        "version": 3,
        "partitions": {"0": [1, 2, 3], "1": [2, 3, 1]},
        "adding_replicas": {},
        "removing_replicas": {},
        "topic_id": encode_topic_id(topic_id),
    }
    data, _ = raw("/config/topics/orders")
    assert json.loads(data) == {"version": 1, "config": {"min.insync.replicas": "2"}}
    with pytest.raises(NodeExists):
        store.create_topic("orders", {0: [1]})
    wait_for(lambda: seen and seen[-1] == ["orders"], what="topic watch")
    topic = store.get_topic("orders")
    assert topic.partitions == {0: (1, 2, 3), 1: (2, 3, 1)}
    assert topic.topic_id == topic_id and topic.version == 0
    assert store.get_topic("missing") is None
    assert store.topic_names() == ["orders"]
    assert store.get_topic_config("orders") == {"min.insync.replicas": "2"}
    # adding a partition: a conditional rewrite
    grown = TopicAssignment("orders", {**topic.partitions, 2: (3, 1, 2)}, topic_id)
    assert store.set_topic_assignment(grown, topic.version) == 1
    assert store.set_topic_assignment(grown, topic.version) == -1
    assert store.get_topic("orders").partitions[2] == (3, 1, 2)


def test_topic_watch_sees_changes(stores):
    store = stores()
    store.create_topic("t", {0: [1]})
    seen: list[TopicAssignment | None] = []
    store.watch_topic("t", seen.append)
    wait_for(lambda: len(seen) == 1)
    topic = seen[0]
    store.set_topic_assignment(TopicAssignment("t", {0: (1,), 1: (1,)}, topic.topic_id), 0)
    wait_for(lambda: len(seen) == 2 and len(seen[1].partitions) == 2, what="assignment change")
    store.delete_topic("t")
    wait_for(lambda: seen[-1] is None, what="deletion")


def test_topic_config_change_notification(stores, raw):
    store = stores()
    store.create_topic("t", {0: [1]}, {"retention.ms": "1000"})
    changes: list[list[str]] = []
    store.watch_config_changes(changes.append)
    store.set_topic_config("t", {"retention.ms": "2000"})
    wait_for(lambda: changes and changes[-1], what="config change")
    name = changes[-1][-1]
    assert name.startswith("config_change_") and len(name) == len("config_change_") + 10
    assert store.get_config_change(name) == "topics/t"
    assert json.loads(raw("/config/changes/" + name)[0]) == {
        "version": 2,
        "entity_path": "topics/t",
    }
    assert store.get_topic_config("t") == {"retention.ms": "2000"}


def test_partition_states_conditional_and_fenced(stores, raw):
    controller, leader = stores(), stores()
    claim = controller.elect_controller(1)
    controller.create_topic("t", {0: [1, 2], 1: [2, 1]})
    versions = controller.create_partition_states(
        "t",
        {0: LeaderAndIsr(1, 0, (1, 2), claim.epoch), 1: LeaderAndIsr(2, 0, (2, 1), claim.epoch)},
        fence=claim,
    )
    assert versions == {0: 0, 1: 0}
    data, _ = raw("/brokers/topics/t/partitions/0/state")
    assert json.loads(data) == {
        "controller_epoch": 1,
        "leader": 1,
        "version": 1,
        "leader_epoch": 0,
        "isr": [1, 2],
    }
    with pytest.raises(NodeExists):
        controller.create_partition_states("t", {0: LeaderAndIsr(1, 0, (1,))})
    seen: list[tuple[LeaderAndIsr | None, int]] = []
    leader.watch_partition_state("t", 0, lambda state, version: seen.append((state, version)))
    wait_for(lambda: seen == [(LeaderAndIsr(1, 0, (1, 2), 1), 0)], what="initial state")
    assert leader.get_partition_states("t") == {
        0: (LeaderAndIsr(1, 0, (1, 2), 1), 0),
        1: (LeaderAndIsr(2, 0, (2, 1), 1), 0),
    }
    assert leader.get_partition_state("t", 5) is None
    # the leader shrinks the ISR with a conditional write
    shrunk = LeaderAndIsr(1, 0, (1,), 1)
    assert leader.update_partition_state("t", 0, shrunk, expected_version=0) == 1
    assert leader.update_partition_state("t", 0, shrunk, expected_version=0) == -1
    wait_for(lambda: seen[-1] == (shrunk, 1), what="watched ISR change")
    # the controller's fenced write: right version, current epoch
    moved = LeaderAndIsr(2, 1, (2,), 1)
    assert controller.update_partition_state("t", 0, moved, 1, fence=claim) == 2
    assert controller.update_partition_state("t", 0, moved, 1, fence=claim) == -1
    # a new controller takes over: the old one's writes are fenced off
    controller.close()
    successor = stores()
    new_claim = successor.elect_controller(2)
    assert new_claim.epoch == 2
    with pytest.raises(ControllerMoved):
        successor.update_partition_state("t", 0, moved, 2, fence=claim)
    with pytest.raises(ControllerMoved):
        successor.create_partition_states("t", {7: LeaderAndIsr(2, 0, (2,))}, fence=claim)
    assert successor.update_partition_state("t", 0, moved, 2, fence=new_claim) == 3


def test_topic_deletion(stores):
    admin, controller = stores(), stores()
    admin.create_topic("gone", {0: [1]}, {"cleanup.policy": "compact"})
    controller.create_partition_states("gone", {0: LeaderAndIsr(1, 0, (1,))})
    marked: list[list[str]] = []
    controller.watch_topic_deletions(marked.append)
    admin.mark_topic_for_deletion("gone")
    admin.mark_topic_for_deletion("gone")  # idempotent
    wait_for(lambda: marked and marked[-1] == ["gone"], what="deletion mark")
    assert controller.topics_marked_for_deletion() == ["gone"]
    controller.delete_topic("gone")
    assert controller.get_topic("gone") is None
    assert controller.get_topic_config("gone") == {}
    assert controller.get_partition_states("gone") == {}
    wait_for(lambda: marked[-1] == [], what="deletion mark removed")
    controller.delete_topic("gone")  # nothing left: no error


def test_producer_id_blocks_are_disjoint(stores, raw):
    a, b = stores(), stores()
    assert a.allocate_producer_id_block(1) == (0, 999)
    assert json.loads(raw("/latest_producer_id_block")[0]) == {
        "version": 1,
        "broker": 1,
        "block_start": "0",
        "block_end": "999",
    }
    blocks: list[tuple[int, int]] = []
    lock = threading.Lock()

    def claim(store, broker_id):
        for _ in range(5):
            block = store.allocate_producer_id_block(broker_id)
            with lock:
                blocks.append(block)

    threads = [threading.Thread(target=claim, args=(s, i)) for i, s in ((1, a), (2, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(blocks) == [(1000 * i, 1000 * i + 999) for i in range(1, 11)]
