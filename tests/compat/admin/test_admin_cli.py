"""``kbroker topics ...`` and ``kbroker configs ...`` against a broker process."""

from __future__ import annotations

import subprocess
import sys

from compat_broker import REPO_ROOT
from compat_helpers import topic_name


def kb(broker, *args):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kbroker",
            *args[:1],
            "--bootstrap-server",
            broker.bootstrap,
            *args[1:],
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout, result.stderr


def test_topics_and_configs_commands(broker):
    name = topic_name("cli")
    assert kb(
        broker,
        "topics",
        "create",
        "--topic",
        name,
        "--partitions",
        "2",
        "--config",
        "retention.ms=60000",
    ) == (0, f"Created topic {name}.\n", "")
    code, _, err = kb(broker, "topics", "create", "--topic", name)
    assert code == 1 and "TOPIC_ALREADY_EXISTS" in err
    assert kb(broker, "topics", "create", "--topic", name, "--if-not-exists")[0] == 0
    assert kb(broker, "topics", "list")[1].split() == [name]
    assert kb(broker, "topics", "alter", "--topic", name, "--partitions", "3")[0] == 0
    code, out, _ = kb(broker, "topics", "describe", "--topic", name)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].startswith(f"Topic: {name}\tTopicId: ")
    assert lines[0].endswith("PartitionCount: 3\tReplicationFactor: 1\tConfigs: retention.ms=60000")
    assert lines[3] == f"\tTopic: {name}\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1"

    assert (
        kb(
            broker,
            "configs",
            "alter",
            "--entity-type",
            "topics",
            "--entity-name",
            name,
            "--add-config",
            "segment.bytes=1048576,cleanup.policy=compact",
            "--delete-config",
            "retention.ms",
        )[0]
        == 0
    )
    code, out, _ = kb(
        broker, "configs", "describe", "--entity-type", "topics", "--entity-name", name
    )
    assert code == 0 and out.splitlines()[2:] == [
        "cleanup.policy  compact  TOPIC_CONFIG  false",
        "segment.bytes   1048576  TOPIC_CONFIG  false",
    ]
    code, _, err = kb(
        broker,
        "configs",
        "alter",
        "--entity-type",
        "topics",
        "--entity-name",
        name,
        "--add-config",
        "retention.ms=soon",
    )
    assert code == 1 and "INVALID_CONFIG" in err and "retention.ms" in err
    assert (
        kb(
            broker,
            "configs",
            "alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--add-config",
            "log.retention.ms=86400000",
        )[0]
        == 0
    )
    code, out, _ = kb(
        broker, "configs", "describe", "--entity-type", "brokers", "--entity-name", "1"
    )
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["log.retention.ms"] == ["86400000", "DYNAMIC_DEFAULT_BROKER_CONFIG", "false"]
    assert "num.partitions" not in rows  # defaults only with --all

    assert kb(broker, "topics", "delete", "--topic", name) == (0, f"Deleted topic {name}.\n", "")
    assert kb(broker, "topics", "delete", "--topic", name)[0] == 1
    assert kb(broker, "topics", "delete", "--topic", name, "--if-exists")[0] == 0
    broker.stop()
    code, _, err = kb(broker, "topics", "list")
    assert code == 2 and "cannot reach" in err
