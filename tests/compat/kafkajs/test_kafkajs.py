"""kafkajs (Node): admin createTopics, producer, fetchTopicOffsets and a read-back.

Read back twice: through kafkajs's own Fetch request and record decoding without a
consumer group (``fetch``), and with its public consumer, which always joins a group
(``group``: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetFetch/Commit).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from compat_helpers import Message, Record, check_round_trip, topic_name

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
NPM = shutil.which("npm")
COUNT = 3000


@pytest.fixture(scope="module")
def kafkajs_installed():
    assert NODE and NPM, "node and npm are needed for the kafkajs tests"
    if not (HERE / "node_modules" / "kafkajs" / "package.json").exists():
        result = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=HERE,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"npm ci failed:\n{result.stderr[-3000:]}"
    return HERE


def expected_messages(count: int) -> list[Message]:
    return [Message(i, b"key-%d" % (i % 99),
                    (f"value {i} \u2713 " + "x" * (i % 40)).encode(),
                    (("idx", b"%d" % i), ("src", b"kafkajs")))
            for i in range(count)]


def run_script(broker, topic: str, compression: str, mode: str) -> dict:
    result = subprocess.run(
        [NODE, str(HERE / "roundtrip.js"), broker.bootstrap, topic, str(COUNT), compression,
         mode],
        cwd=HERE, capture_output=True, text=True, timeout=180,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"})
    assert result.returncode == 0, f"roundtrip.js failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


def decode(value):
    return None if value is None else base64.b64decode(value)


@pytest.mark.parametrize(("compression", "mode"),
                         [("none", "fetch"), ("gzip", "fetch"), ("gzip", "group")])
def test_kafkajs_round_trip(module_broker, kafkajs_installed, compression, mode):
    topic = topic_name(f"kafkajs-{compression}-{mode}")
    started = int(time.time() * 1000)
    out = run_script(module_broker, topic, compression, mode)

    messages = expected_messages(COUNT)
    delivered = {i: (partition, offset) for i, partition, offset in out["produced"]}
    consumed = [Record(r["partition"], r["offset"], decode(r["key"]), decode(r["value"]),
                       tuple((k, v.encode()) for k, v in r["headers"].items()), r["timestamp"])
                for r in out["consumed"]]
    check_round_trip(messages, delivered, consumed, earliest_ts=started)

    per_partition = [len(range(p, COUNT, 3)) for p in range(3)]
    offsets = sorted(out["topicOffsets"], key=lambda o: o["partition"])
    assert [(o["partition"], o["low"], o["high"], o["offset"]) for o in offsets] == [
        (p, "0", str(n), str(n)) for p, n in enumerate(per_partition)]
