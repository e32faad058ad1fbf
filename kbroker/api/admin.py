"""CreateTopics, DeleteTopics and DescribeConfigs: the topic administration APIs."""

from __future__ import annotations

import logging

from kbroker.config import BROKER_SETTINGS, TOPIC_SETTINGS
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.admin")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
# DescribeConfigs config sources
TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
CONFIG_TYPES = {
    "boolean": 1,
    "string": 2,
    "int": 3,
    "short": 4,
    "long": 5,
    "double": 6,
    "list": 7,
    "class": 8,
    "password": 9,
}


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
                    _config_entry(name, *_topic_value(broker, topic.configs, name))
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


def _topic_value(broker, overrides: dict[str, str], name: str) -> tuple[str | None, int]:
    if name in overrides:
        return overrides[name], TOPIC_CONFIG
    broker_key = TOPIC_SETTINGS[name][1]
    source = STATIC_BROKER_CONFIG if broker_key in broker.config.explicit else DEFAULT_CONFIG
    return broker.config.topic_default(name), source


def _config_entry(name: str, value: str | None, source: int, read_only: bool = False) -> dict:
    return {
        "name": name,
        "value": value,
        "read_only": read_only,
        "is_default": source == DEFAULT_CONFIG,
        "config_source": source,
        "is_sensitive": False,
    }


def _describe_topic(broker, resource: dict, synonyms: bool) -> list[dict]:
    topic = broker.controller.store.topics.get(resource["resource_name"])
    if topic is None:
        raise KafkaError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"Topic {resource['resource_name']} does not exist.",
        )
    entries = []
    for name in sorted(TOPIC_SETTINGS):
        value, source = _topic_value(broker, topic.configs, name)
        entry = _config_entry(name, value, source)
        entry["config_type"] = CONFIG_TYPES[TOPIC_SETTINGS[name][0]]
        if synonyms:
            broker_key = TOPIC_SETTINGS[name][1]
            chain = []
            if name in topic.configs:
                chain.append({"name": name, "value": topic.configs[name], "source": TOPIC_CONFIG})
            chain.append(
                {
                    "name": broker_key,
                    "value": broker.config.topic_default(name),
                    "source": (
                        STATIC_BROKER_CONFIG
                        if broker_key in broker.config.explicit
                        else DEFAULT_CONFIG
                    ),
                }
            )
            entry["synonyms"] = chain
        entries.append(entry)
    return entries


def _describe_broker(broker, resource: dict, synonyms: bool) -> list[dict]:
    if resource["resource_name"] not in ("", str(broker.config.node_id)):
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {broker.config.node_id} or empty string, "
            f"but received {resource['resource_name']}",
        )
    entries = []
    for name, setting in sorted(BROKER_SETTINGS.items()):
        source = STATIC_BROKER_CONFIG if name in broker.config.explicit else DEFAULT_CONFIG
        entry = _config_entry(name, broker.config.get(name), source, read_only=True)
        entry["config_type"] = CONFIG_TYPES[setting.type]
        if synonyms:
            entry["synonyms"] = [{"name": name, "value": entry["value"], "source": source}]
        entries.append(entry)
    return entries


async def describe_configs(broker, request: Request) -> dict:
    body = request.body
    results = []
    for resource in body["resources"]:
        result = {
            "resource_type": resource["resource_type"],
            "resource_name": resource["resource_name"],
        }
        try:
            if resource["resource_type"] == RESOURCE_TOPIC:
                entries = _describe_topic(broker, resource, body["include_synonyms"])
            elif resource["resource_type"] == RESOURCE_BROKER:
                entries = _describe_broker(broker, resource, body["include_synonyms"])
            else:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    f"Unsupported resource type {resource['resource_type']}",
                )
            keys = resource["configuration_keys"]
            result["configs"] = [e for e in entries if keys is None or e["name"] in keys]
        except KafkaError as exc:
            result.update(_error(exc))
        results.append(result)
    return {"results": results}
