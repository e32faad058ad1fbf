"""``kbroker topics ...`` and ``kbroker configs ...``: Kafka's kafka-topics.sh and
kafka-configs.sh for a running broker, speaking our own codec.

Flags follow Kafka's tools where they make sense (``--bootstrap-server``, ``--topic``,
``--partitions``, ``--replication-factor``, ``--config k=v``, ``--entity-type``,
``--entity-name``, ``--entity-default``, ``--add-config``, ``--delete-config``).
Exit codes: 0 done, 1 the broker refused (its error is printed), 2 bad usage or no
connection.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from kbroker.groups_cli import BrokerConnection
from kbroker.wire.errors import ErrorCode

RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
SET, DELETE = 0, 1
TOPIC_CONFIG_SOURCE = 1
DEFAULT_SOURCE = 5


class Refused(Exception):
    """The broker answered with an error code."""


def _check(error_code: int, message: str | None, what: str) -> None:
    if error_code:
        try:
            name = ErrorCode(error_code).name
        except ValueError:
            name = str(error_code)
        raise Refused(f"{what}: {name}" + (f": {message}" if message else ""))


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{flag} expects key=value, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# ---- topics ------------------------------------------------------------------------


def _metadata(conn: BrokerConnection, names: list[str] | None) -> list[dict]:
    topics = None if names is None else [{"topic_id": bytes(16), "name": n} for n in names]
    body = {"topics": topics, "allow_auto_topic_creation": False}
    return conn.call(3, 12, body)["topics"]


def _topic_overrides(conn: BrokerConnection, name: str) -> dict[str, str]:
    body = {
        "resources": [
            {"resource_type": RESOURCE_TOPIC, "resource_name": name, "configuration_keys": None}
        ]
    }
    (result,) = conn.call(32, 4, body)["results"]
    _check(result["error_code"], result["error_message"], f"describe configs of {name}")
    return {
        c["name"]: c["value"]
        for c in result["configs"]
        if c["config_source"] == TOPIC_CONFIG_SOURCE
    }


def topics_command(conn: BrokerConnection, args) -> int:
    command = args.topics_command
    if command == "list":
        names = sorted(
            t["name"]
            for t in _metadata(conn, None)
            if not (args.exclude_internal and t["is_internal"])
        )
        print("\n".join(names))
        return 0
    if command == "describe":
        topics = _metadata(conn, [args.topic] if args.topic else None)
        status = 0
        for topic in sorted(topics, key=lambda t: t["name"]):
            if topic["error_code"]:
                name = ErrorCode(topic["error_code"]).name
                print(f"Error: topic {topic['name']}: {name}", file=sys.stderr)
                status = 1
                continue
            partitions = sorted(topic["partitions"], key=lambda p: p["partition_index"])
            overrides = _topic_overrides(conn, topic["name"])
            replication = len(partitions[0]["replica_nodes"]) if partitions else 0
            print(
                f"Topic: {topic['name']}\tTopicId: {_topic_id(topic['topic_id'])}\t"
                f"PartitionCount: {len(partitions)}\tReplicationFactor: {replication}\t"
                f"Configs: {','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}"
            )
            for p in partitions:
                print(
                    f"\tTopic: {topic['name']}\tPartition: {p['partition_index']}\t"
                    f"Leader: {p['leader_id']}\t"
                    f"Replicas: {','.join(map(str, p['replica_nodes']))}\t"
                    f"Isr: {','.join(map(str, p['isr_nodes']))}"
                )
        return status
    if command == "create":
        configs = _pairs(args.config, "--config")
        body = {
            "topics": [
                {
                    "name": args.topic,
                    "num_partitions": -1 if args.partitions is None else args.partitions,
                    "replication_factor": (
                        -1 if args.replication_factor is None else args.replication_factor
                    ),
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in configs.items()],
                }
            ],
            "timeout_ms": 30000,
            "validate_only": False,
        }
        (result,) = conn.call(19, 7, body)["topics"]
        if args.if_not_exists and result["error_code"] == ErrorCode.TOPIC_ALREADY_EXISTS:
            return 0
        _check(result["error_code"], result["error_message"], f"create topic {args.topic}")
        print(f"Created topic {args.topic}.")
        return 0
    if command == "delete":
        body = {"topics": [{"name": args.topic, "topic_id": bytes(16)}], "timeout_ms": 30000}
        (result,) = conn.call(20, 6, body)["responses"]
        if args.if_exists and result["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            return 0
        _check(result["error_code"], result["error_message"], f"delete topic {args.topic}")
        print(f"Deleted topic {args.topic}.")
        return 0
    # alter: the partition count (as kafka-topics.sh --alter)
    body = {
        "topics": [{"name": args.topic, "count": args.partitions, "assignments": None}],
        "timeout_ms": 30000,
        "validate_only": False,
    }
    (result,) = conn.call(37, 3, body)["results"]
    _check(result["error_code"], result["error_message"], f"alter topic {args.topic}")
    print(f"Topic {args.topic} now has {args.partitions} partitions.")
    return 0


def _topic_id(raw: bytes) -> str:
    """Kafka's form: base64url of the 16 bytes, no padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.UUID(bytes=raw).bytes).rstrip(b"=").decode()


# ---- configs -----------------------------------------------------------------------


def _resource(args) -> tuple[int, str]:
    kind = RESOURCE_TOPIC if args.entity_type in ("topics", "topic") else RESOURCE_BROKER
    if args.entity_default:
        if kind != RESOURCE_BROKER:
            raise ValueError("--entity-default applies to brokers only")
        return kind, ""
    if args.entity_name is None:
        raise ValueError("give --entity-name (or --entity-default for brokers)")
    return kind, args.entity_name


def configs_command(conn: BrokerConnection, args) -> int:
    kind, name = _resource(args)
    label = f"{'topic' if kind == RESOURCE_TOPIC else 'broker'} {name or '<default>'}"
    if args.configs_command == "describe":
        body = {
            "resources": [
                {"resource_type": kind, "resource_name": name, "configuration_keys": None}
            ],
            "include_synonyms": True,
        }
        (result,) = conn.call(32, 4, body)["results"]
        _check(result["error_code"], result["error_message"], f"describe configs of {label}")
        entries = [c for c in result["configs"] if args.all or c["config_source"] != DEFAULT_SOURCE]
        print(f"Configs for {label} are:")
        rows = [["NAME", "VALUE", "SOURCE", "READ-ONLY"]]
        for c in sorted(entries, key=lambda c: c["name"]):
            rows.append(
                [
                    c["name"],
                    "null" if c["value"] is None else c["value"],
                    _SOURCES.get(c["config_source"], str(c["config_source"])),
                    "true" if c["read_only"] else "false",
                ]
            )
        print(_table(rows))
        return 0
    ops = [
        {"name": k, "config_operation": SET, "value": v}
        for k, v in _pairs(args.add_config, "--add-config").items()
    ]
    ops += [
        {"name": k.strip(), "config_operation": DELETE, "value": None}
        for item in args.delete_config
        for k in item.split(",")
        if k.strip()
    ]
    if not ops:
        raise ValueError("give --add-config and/or --delete-config")
    body = {
        "resources": [{"resource_type": kind, "resource_name": name, "configs": ops}],
        "validate_only": False,
    }
    (result,) = conn.call(44, 1, body)["responses"]
    _check(result["error_code"], result["error_message"], f"alter configs of {label}")
    print(f"Completed updating config for {label}.")
    return 0


_SOURCES = {
    1: "TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
}


# ---- the parsers ---------------------------------------------------------------------


def _bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        default="127.0.0.1:9092",
        help="the broker, host:port (default 127.0.0.1:9092)",
    )


def add_parsers(commands) -> None:
    topics = commands.add_parser("topics", help="list, describe, create, delete, alter topics")
    _bootstrap(topics)
    sub = topics.add_subparsers(dest="topics_command", required=True)
    listing = sub.add_parser("list", help="topic names")
    listing.add_argument("--exclude-internal", action="store_true")
    describe = sub.add_parser("describe", help="partitions, leaders, replicas, overrides")
    describe.add_argument("--topic", help="one topic (default: all)")
    create = sub.add_parser("create", help="create a topic")
    create.add_argument("--topic", required=True)
    create.add_argument("--partitions", type=int, help="default: num.partitions")
    create.add_argument("--replication-factor", type=int, help="default: broker's")
    create.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--if-not-exists", action="store_true")
    delete = sub.add_parser("delete", help="delete a topic")
    delete.add_argument("--topic", required=True)
    delete.add_argument("--if-exists", action="store_true")
    alter = sub.add_parser("alter", help="raise the partition count")
    alter.add_argument("--topic", required=True)
    alter.add_argument("--partitions", type=int, required=True)

    configs = commands.add_parser("configs", help="describe or alter topic and broker configs")
    _bootstrap(configs)
    sub = configs.add_subparsers(dest="configs_command", required=True)
    for verb in ("describe", "alter"):
        cmd = sub.add_parser(verb, help=f"{verb} configs")
        cmd.add_argument("--entity-type", required=True, choices=["topics", "brokers"])
        cmd.add_argument("--entity-name", help="topic name or broker id")
        cmd.add_argument(
            "--entity-default", action="store_true", help="the cluster-wide broker defaults"
        )
        if verb == "describe":
            cmd.add_argument("--all", action="store_true", help="defaults too")
        else:
            cmd.add_argument("--add-config", action="append", default=[], metavar="K=V[,K=V]")
            cmd.add_argument("--delete-config", action="append", default=[], metavar="K[,K]")


def run(args) -> int:
    """Exit status: 0 done, 1 refused by the broker, 2 usage or connection error."""
    host, _, port = args.bootstrap_server.rpartition(":")
    try:
        conn = BrokerConnection(host or "127.0.0.1", int(port))
    except (OSError, ValueError) as exc:
        print(
            f"kbroker {args.command}: cannot reach {args.bootstrap_server}: {exc}", file=sys.stderr
        )
        return 2
    try:
        if args.command == "topics":
            return topics_command(conn, args)
        return configs_command(conn, args)
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"kbroker {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kbroker {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
