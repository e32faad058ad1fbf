"""kcat (librdkafka's command-line client): -L metadata, -P produce, -C -e consume."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest
from compat_helpers import topic_name

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(broker, *args: str, data: bytes | None = None, timeout: float = 30) -> bytes:
    assert KCAT, "kcat is not installed (apt-get install kcat)"
    result = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=data,
                            capture_output=True, timeout=timeout)
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return result.stdout


@pytest.fixture
def topic(module_broker):
    name = topic_name("kcat")
    # -L on a topic name: a Metadata request that auto-creates it (num.partitions=3)
    kcat(module_broker, "-L", "-t", name)
    return name


def test_metadata_lists_broker_and_topic(module_broker, topic):
    metadata = json.loads(kcat(module_broker, "-L", "-J"))
    assert [b["name"] for b in metadata["brokers"]] == [module_broker.bootstrap]
    broker_id = metadata["brokers"][0]["id"]
    [entry] = [t for t in metadata["topics"] if t["topic"] == topic]
    assert "error" not in entry or not entry["error"], entry
    partitions = sorted(entry["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    for p in partitions:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]

    text = kcat(module_broker, "-L", "-t", topic).decode()
    assert f"at {module_broker.bootstrap}" in text
    assert f'topic "{topic}" with 3 partitions' in text


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_lines(module_broker, topic, compression):
    lines = b"".join(b"key-%d:value %d \xe2\x9c\x93 %s\n" % (i, i, b"x" * (i % 50))
                     for i in range(500))
    kcat(module_broker, "-P", "-t", topic, "-p", "1", "-K", ":", "-z", compression,
         "-H", "origin=kcat", data=lines)
    out = kcat(module_broker, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e",
               "-K", ":")
    assert out == lines

    envelopes = [json.loads(line) for line in kcat(
        module_broker, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-J").splitlines()]
    assert [(e["partition"], e["offset"], e["key"]) for e in envelopes] == [
        (1, i, f"key-{i}") for i in range(500)]
    assert all(e["headers"] == ["origin", "kcat"] for e in envelopes)


def test_binary_file_round_trip(module_broker, topic, tmp_path):
    blob = b"".join(hashlib.sha512(b"%d" % i).digest() for i in range(2000)) + b"\n\x00\r\n"
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    kcat(module_broker, "-P", "-t", topic, "-p", "2", str(path))  # file mode: one message
    out = kcat(module_broker, "-C", "-t", topic, "-p", "2", "-o", "beginning", "-e", "-c", "1",
               "-f", "%s")
    assert out == blob
    meta = kcat(module_broker, "-C", "-t", topic, "-p", "2", "-o", "beginning", "-e",
                "-f", "%p %o %S\n")
    assert meta == b"2 0 %d\n" % len(blob)
