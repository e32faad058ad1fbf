"""Kafka property files and overrides become the broker's effective settings."""

from __future__ import annotations

import pytest

from kbroker.cli import build_config, main, make_parser
from kbroker.config import BrokerConfig, ConfigError, parse_properties

PROPERTIES = """\
# A server.properties as written for Apache Kafka
process.roles=broker,controller
node.id=3
listeners=PLAINTEXT://0.0.0.0:19092
advertised.listeners = PLAINTEXT://kafka.example:19092
log.dirs=/var/lib/kafka,/mnt/other
num.partitions: 4
log.retention.hours=24
log.segment.bytes=\\
  1048576
! another comment
"""


def test_properties_parse_like_java():
    values = parse_properties(PROPERTIES)
    assert values["advertised.listeners"] == "PLAINTEXT://kafka.example:19092"
    assert values["num.partitions"] == "4"
    assert values["log.segment.bytes"] == "1048576"
    assert "! another comment" not in values


def test_kafka_server_properties_start_us_and_unknown_keys_are_named(caplog):
    config = BrokerConfig(parse_properties(PROPERTIES))
    assert config.ignored == ["process.roles"]
    assert "process.roles" in caplog.text
    assert config.node_id == 3
    assert config.listener() == ("0.0.0.0", 19092)
    assert config.advertised_listener() == ("kafka.example", 19092)
    assert config.data_dir == "/var/lib/kafka"
    assert config.retention_ms() == 24 * 3_600_000
    assert config.topic_default("segment.bytes") == "1048576"
    assert config.topic_default("retention.ms") == str(24 * 3_600_000)


def test_defaults_are_kafkas():
    config = BrokerConfig()
    assert config.get_int("message.max.bytes") == 1048588
    assert config.get_int("socket.request.max.bytes") == 104857600
    assert config.get_int("log.segment.bytes") == 1073741824
    assert config.roll_ms() == 168 * 3_600_000
    assert config.get_bool("auto.create.topics.enable")


def test_bad_values_are_refused_by_name():
    with pytest.raises(ConfigError, match="num.partitions"):
        BrokerConfig({"num.partitions": "many"})
    with pytest.raises(ConfigError, match="log.message.timestamp.type"):
        BrokerConfig({"log.message.timestamp.type": "Whenever"})


def test_command_line_precedence(tmp_path):
    properties = tmp_path / "server.properties"
    properties.write_text("num.partitions=4\nlisteners=PLAINTEXT://127.0.0.1:1\n")
    args = make_parser().parse_args(
        [
            "serve",
            "--config",
            str(properties),
            "--set",
            "num.partitions=6",
            "--port",
            "2",
            "--data-dir",
            str(tmp_path / "d"),
        ]
    )
    config = build_config(args)
    assert config.get_int("num.partitions") == 6
    assert config.listener() == ("127.0.0.1", 2)
    assert config.data_dir == str(tmp_path / "d")


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("kbroker 0.1.0")
