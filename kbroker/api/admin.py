"""CreateTopics and DeleteTopics: the topic administration APIs (configs: ``configs``)."""

from __future__ import annotations

import logging

from kbroker.api.configs import config_entry, topic_value
from kbroker.config import TOPIC_SETTINGS
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.admin")


def _error(exc: KafkaError) -> dict:
    return {"error_code": exc.code, "error_message": exc.message}


async def create_topics(broker, request: Request) -> dict:
    body = request.body
    names = [t["name"] for t in body["topics"]]
    results = []
    for topic_request in body["topics"]:
        name = topic_request["name"]
        result = {"name": name}
        try:
            if names.count(name) > 1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST, f"Duplicate topic name {name} in the request"
                )
            partitions = topic_request["num_partitions"]
            replication = topic_request["replication_factor"]
            topic = broker.controller.create_topic(
                name,
                broker.config.get_int("num.partitions") if partitions == -1 else partitions,
                (
                    broker.config.get_int("default.replication.factor")
                    if replication == -1
                    else replication
                ),
                {c["name"]: c["value"] for c in topic_request["configs"]},
                {a["partition_index"]: a["broker_ids"] for a in topic_request["assignments"]},
                validate_only=body["validate_only"],
            )
        except KafkaError as exc:
            log.info("create topic %r refused: %s", name, exc)
            result.update(_error(exc))
        else:
            result.update(
                topic_id=topic.topic_id.bytes,
                num_partitions=len(topic.partitions),
                replication_factor=len(topic.partitions[0].replicas),
                configs=[
                    config_entry(name, *topic_value(broker, topic.configs, name))
                    for name in sorted(TOPIC_SETTINGS)
                ],
            )
        results.append(result)
    return {"topics": results}


async def delete_topics(broker, request: Request) -> dict:
    body = request.body
    store = broker.controller.store
    wanted = [(name, None) for name in body["topic_names"]] + [
        (t["name"], t["topic_id"]) for t in body["topics"]
    ]
    responses = []
    for name, topic_id in wanted:
        result = {"name": name, "topic_id": topic_id}
        try:
            if name is None:
                topic = next(
                    (t for t in store.topics.values() if t.topic_id.bytes == topic_id), None
                )
                if topic is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID)
                name = result["name"] = topic.name
            if not broker.config.get_bool("delete.topic.enable"):
                raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
            topic = broker.controller.delete_topic(name)
            result["topic_id"] = topic.topic_id.bytes
        except KafkaError as exc:
            result.update(_error(exc))
        responses.append(result)
    return {"responses": responses}
