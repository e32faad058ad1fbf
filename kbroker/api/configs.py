"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers.

Topic overrides live in the topic's metadata; dynamic broker configs (this broker's,
resource name = its id, or the cluster-wide defaults, resource name "") in the
embedded metadata file as well. Both are validated as Kafka does (INVALID_CONFIG naming
the key), persisted, and applied to the logs at once: a retention change takes effect
at the next retention check, without a restart.
"""

from __future__ import annotations

import logging

from kbroker.config import (
    BROKER_SETTINGS,
    DYNAMIC_BROKER_KEYS,
    SOURCE_DEFAULT,
    TOPIC_SETTINGS,
    ConfigError,
    validate,
)
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.configs")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
# config sources (DescribeConfigs v1+)
TOPIC_CONFIG = 1
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
# IncrementalAlterConfigs operations
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _error(exc: KafkaError) -> dict:
    return {"error_code": exc.code, "error_message": exc.message}


# ---- describing ---------------------------------------------------------------------


def topic_value(broker, overrides: dict[str, str], name: str) -> tuple[str | None, int]:
    """A topic key's effective value and its source (used by CreateTopics too)."""
    if name in overrides:
        return overrides[name], TOPIC_CONFIG
    broker_key = TOPIC_SETTINGS[name][1]
    chain = broker.config.synonyms(broker_key)
    source = chain[0][2] if chain else SOURCE_DEFAULT
    return broker.config.topic_default(name), source


def config_entry(name: str, value: str | None, source: int, read_only: bool = False) -> dict:
    return {
        "name": name,
        "value": value,
        "read_only": read_only,
        "is_default": source == SOURCE_DEFAULT,
        "config_source": source,
        "is_sensitive": False,
    }


def _check_topic(broker, name: str):
    topic = broker.controller.store.topics.get(name)
    if topic is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist.")
    return topic


def _check_broker(broker, name: str) -> None:
    if name not in ("", str(broker.config.node_id)):
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {broker.config.node_id} or empty string, "
            f"but received {name}",
        )


def describe_topic(broker, name: str, synonyms: bool = False) -> list[dict]:
    topic = _check_topic(broker, name)
    entries = []
    for key in sorted(TOPIC_SETTINGS):
        value, source = topic_value(broker, topic.configs, key)
        entry = config_entry(key, value, source)
        entry["config_type"] = CONFIG_TYPES[TOPIC_SETTINGS[key][0]]
        if synonyms:
            chain = []
            if key in topic.configs:
                chain.append({"name": key, "value": topic.configs[key], "source": TOPIC_CONFIG})
            chain += [
                {"name": n, "value": v, "source": s}
                for n, v, s in broker.config.synonyms(TOPIC_SETTINGS[key][1])
            ]
            entry["synonyms"] = chain
        entries.append(entry)
    return entries


def describe_broker(broker, name: str, synonyms: bool = False) -> list[dict]:
    _check_broker(broker, name)
    config = broker.config
    entries = []
    for key, setting in sorted(BROKER_SETTINGS.items()):
        entry = config_entry(
            key, config.get(key), config.source(key), read_only=key not in DYNAMIC_BROKER_KEYS
        )
        entry["config_type"] = CONFIG_TYPES[setting.type]
        if synonyms:
            entry["synonyms"] = [
                {"name": n, "value": v, "source": s} for n, v, s in config.synonyms(key)
            ]
        entries.append(entry)
    return entries


async def describe_configs(broker, request: Request) -> dict:
    body = request.body
    results = []
    for resource in body["resources"]:
        kind, name = resource["resource_type"], resource["resource_name"]
        result = {"resource_type": kind, "resource_name": name}
        try:
            if kind == RESOURCE_TOPIC:
                entries = describe_topic(broker, name, body["include_synonyms"])
            elif kind == RESOURCE_BROKER:
                entries = describe_broker(broker, name, body["include_synonyms"])
            else:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {kind}")
            keys = resource["configuration_keys"]
            result["configs"] = [e for e in entries if keys is None or e["name"] in keys]
        except KafkaError as exc:
            result.update(_error(exc))
        results.append(result)
    return {"results": results}


# ---- altering -----------------------------------------------------------------------


def _check_value(name: str, kind: str, value: str | None) -> None:
    try:
        validate(name, kind, value)
    except ConfigError as exc:
        raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None


def _validate_topic_configs(configs: dict[str, str]) -> None:
    for name, value in configs.items():
        if name not in TOPIC_SETTINGS:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
        _check_value(name, TOPIC_SETTINGS[name][0], value)


def _validate_broker_configs(configs: dict[str, str]) -> None:
    unknown = sorted(k for k in configs if k not in BROKER_SETTINGS)
    if unknown:
        raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown broker configs: {', '.join(unknown)}")
    static = sorted(k for k in configs if k not in DYNAMIC_BROKER_KEYS)
    if static:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Cannot update these configs dynamically: {', '.join(static)}",
        )
    for name, value in configs.items():
        _check_value(name, BROKER_SETTINGS[name].type, value)


def _current(broker, kind: int, name: str) -> dict[str, str]:
    """The resource's own (dynamic) configs now."""
    if kind == RESOURCE_TOPIC:
        return dict(_check_topic(broker, name).configs)
    if kind == RESOURCE_BROKER:
        _check_broker(broker, name)
        store = broker.controller.store
        return dict(store.broker_configs.get(name, {}))
    raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {kind}")


def _apply(broker, kind: int, name: str, configs: dict[str, str], validate_only: bool) -> None:
    """Validate the resource's complete new config set, then persist and apply it."""
    if kind == RESOURCE_TOPIC:
        _validate_topic_configs(configs)
    else:
        _validate_broker_configs(configs)
    if validate_only:
        return
    store = broker.controller.store
    if kind == RESOURCE_TOPIC:
        topic = store.topics[name]
        topic.configs = configs
        store.save()
        broker.apply_topic_configs(topic)
        log.info("topic %s configs are now %s", name, configs)
    else:
        if configs:
            store.broker_configs[name] = configs
        else:
            store.broker_configs.pop(name, None)
        store.save()
        broker.apply_broker_configs()
        log.info("dynamic broker configs %r are now %s", name or "<default>", configs)


def _alter_all(broker, resources: list[dict], validate_only: bool, update) -> dict:
    responses = []
    seen = set()
    for resource in resources:
        kind, name = resource["resource_type"], resource["resource_name"]
        response = {"resource_type": kind, "resource_name": name}
        try:
            if (kind, name) in seen:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate resource in the request")
            seen.add((kind, name))
            names = [c["name"] for c in resource["configs"]]
            if len(set(names)) != len(names):
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
            configs = update(broker, kind, name, resource["configs"])
            _apply(broker, kind, name, configs, validate_only)
            response.update(error_code=ErrorCode.NONE, error_message=None)
        except KafkaError as exc:
            log.info("altering configs of %r refused: %s", name, exc)
            response.update(_error(exc))
        responses.append(response)
    return {"responses": responses}


def _replace(broker, kind: int, name: str, configs: list[dict]) -> dict[str, str]:
    _current(broker, kind, name)  # the resource must exist
    return {c["name"]: c["value"] for c in configs if c["value"] is not None}


def _incremental(broker, kind: int, name: str, ops: list[dict]) -> dict[str, str]:
    configs = _current(broker, kind, name)
    types = {k: t for k, (t, _) in TOPIC_SETTINGS.items()}
    if kind == RESOURCE_BROKER:
        types = {k: s.type for k, s in BROKER_SETTINGS.items()}
    for op in ops:
        key, value, operation = op["name"], op["value"], op["config_operation"]
        if operation == SET:
            if value is None:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Null value not supported for {key}")
            configs[key] = value
        elif operation == DELETE:
            configs.pop(key, None)
        elif operation in (APPEND, SUBTRACT):
            if types.get(key) != "list":
                verb = "append" if operation == APPEND else "subtract"
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    f"Config value {verb} is not allowed for config key: {key}",
                )
            if key in configs:
                current = configs[key]
            elif kind == RESOURCE_TOPIC:
                current = broker.config.topic_default(key) or ""
            else:
                current = broker.config.get(key) or ""
            items = [v.strip() for v in current.split(",") if v.strip()]
            given = [v.strip() for v in (value or "").split(",") if v.strip()]
            if operation == APPEND:
                items += [v for v in given if v not in items]
            else:
                items = [v for v in items if v not in given]
            configs[key] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {operation}")
    return configs


async def alter_configs(broker, request: Request) -> dict:
    body = request.body
    return _alter_all(broker, body["resources"], body["validate_only"], _replace)


async def incremental_alter_configs(broker, request: Request) -> dict:
    body = request.body
    return _alter_all(broker, body["resources"], body["validate_only"], _incremental)
