"""Metadata: brokers, topics and partition leadership; auto-creates topics when allowed."""

from __future__ import annotations

import uuid

from kbroker.cluster.metadata import Topic
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode

# AclOperation bits a topic allows when no authorizer is configured:
# READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
CLUSTER_OPERATIONS = sum(1 << op for op in (4, 5, 7, 8, 9, 10, 11, 12))
NOT_REQUESTED = -(2**31)


def _describe_partition(index: int, state, live: set[int]) -> dict:
    leader = state.leader if state.leader in live else -1
    return {
        "error_code": ErrorCode.NONE if leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
        "partition_index": index,
        "leader_id": leader,
        "leader_epoch": state.leader_epoch,
        "replica_nodes": state.replicas,
        "isr_nodes": state.isr,
        "offline_replicas": [r for r in state.replicas if r not in live],
    }


def describe_topic(topic: Topic, with_operations: bool, live: set[int]) -> dict:
    """A topic as Metadata shows it; ``live`` are the brokers registered now."""
    return {
        "name": topic.name,
        "topic_id": topic.topic_id.bytes,
        "is_internal": topic.internal,
        "partitions": [
            _describe_partition(index, state, live) for index, state in enumerate(topic.partitions)
        ],
        "topic_authorized_operations": TOPIC_OPERATIONS if with_operations else NOT_REQUESTED,
    }


def _missing(name: str | None, topic_id: bytes, code: ErrorCode) -> dict:
    return {"error_code": code, "name": name, "topic_id": topic_id, "partitions": []}


async def handle(broker, request: Request) -> dict:
    body = request.body
    store = broker.controller.store
    with_operations = body["include_topic_authorized_operations"]
    brokers = broker.controller.live_brokers()
    live = {b.node_id for b in brokers}
    wanted = body["topics"]
    topics = []
    if wanted is None or (request.api_version == 0 and not wanted):
        topics = [describe_topic(t, with_operations, live) for t in store.topics.values()]
    for entry in wanted or ():
        name, topic_id = entry["name"], entry["topic_id"]
        if name is None:
            topic = store.by_id.get(uuid.UUID(bytes=topic_id))
            if topic is None:
                topics.append(_missing(None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID))
                continue
        else:
            topic = store.topics.get(name)
        if topic is None:
            topic, code = broker.auto_create(name, body["allow_auto_topic_creation"])
            if topic is None:
                topics.append(_missing(name, topic_id, code))
                continue
        topics.append(describe_topic(topic, with_operations, live))
    return {
        "brokers": [
            {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack} for b in brokers
        ],
        "cluster_id": store.cluster_id,
        "controller_id": broker.controller.controller_id,
        "topics": topics,
        "cluster_authorized_operations": (
            CLUSTER_OPERATIONS if body["include_cluster_authorized_operations"] else NOT_REQUESTED
        ),
    }
