#!/usr/bin/env python3
"""Capture golden request/response frames from real Kafka clients talking to kbroker.

For each client library a fresh broker is started (a ``kbroker serve`` subprocess) whose
``advertised.listeners`` points at a recording TCP proxy on 127.0.0.1, so every
connection the client opens (bootstrap and the ones it makes after Metadata) passes
through the proxy. The client is then driven through connect (ApiVersions), metadata,
create topic (CreateTopics, where it has an admin API), a produce of a few keyed messages
with headers in one compressed codec, a consume (Fetch) and ListOffsets.

The first request frame of each distinct (api_key, api_version) per client, and the
broker's response to it, are written to::

    tests/unit/wire/golden/<client>/<api_name>_v<N>.request.bin
    tests/unit/wire/golden/<client>/<api_name>_v<N>.response.bin

Both are frames *without* their 4-byte size prefix (see the README.md written beside
them). Run from the repository root::

    python scripts/capture_golden.py                    # every client
    python scripts/capture_golden.py --clients confluent --out /tmp/golden
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kbroker.wire.registry import default_registry  # noqa: E402

HOST = "127.0.0.1"
DEFAULT_OUT = REPO_ROOT / "tests" / "unit" / "wire" / "golden"
KAFKAJS_DIR = REPO_ROOT / "tests" / "compat" / "kafkajs"
TOPIC = "golden-frames"
PARTITIONS = 1
TIMEOUT = 30.0


def api_file_name(api_key: int) -> str:
    """``ApiVersions`` -> ``api_versions`` (the schema's name, snake_cased)."""
    api = default_registry().apis.get(api_key)
    name = api.name if api is not None else f"Api{api_key}"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def trailing_bytes(request: bytes) -> bytes:
    """What is left of a request frame after kbroker's decoder has read its last field."""
    from kbroker.wire.types import read_string, skip_tagged_fields

    registry = default_registry()
    key, version = struct.unpack_from(">hh", request, 0)
    if not registry.supports(key, version):
        return b""
    _, pos = read_string(request, 8)
    if registry.apis[key].is_flexible(version):
        pos = skip_tagged_fields(request, pos)
    _, end = registry.decode_request(key, version, request, pos)
    return request[end:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# -- the broker -----------------------------------------------------------------------------
class BrokerProcess:
    def __init__(self, workdir: Path, port: int, advertised_port: int) -> None:
        self.port = port
        self.log = open(workdir / "broker.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "kbroker", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(workdir / "data"),
               "--set", f"advertised.listeners=PLAINTEXT://{HOST}:{advertised_port}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                tail = (workdir / "broker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{tail}")
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("broker did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# -- the recording proxy --------------------------------------------------------------------
class Recorder:
    """Pairs each request with its response (by connection and correlation id) and keeps,
    per (api_key, api_version), the first pair whose request names the test topic, or
    failing that the first pair (so Metadata is the one asking for the topic rather than
    the bootstrap one asking for none)."""

    def __init__(self, topic: bytes = TOPIC.encode()) -> None:
        self.topic = topic
        self.lock = threading.Lock()
        self.first: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.first_naming_topic: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.order: list[tuple[int, int]] = []
        self.unanswered: dict[tuple[int, int], bytes] = {}
        self.seen: dict[tuple[int, int], int] = {}
        self.log: list[tuple[bytes, bytes | None]] = []  # every pair, for --dump-all

    def request(self, conn: dict, frame: bytes) -> None:
        key, version, correlation_id = struct.unpack_from(">hhi", frame, 0)
        with self.lock:
            conn[correlation_id] = (key, version, frame)
            self.seen[(key, version)] = self.seen.get((key, version), 0) + 1
            self.unanswered.setdefault((key, version), frame)

    def response(self, conn: dict, frame: bytes) -> None:
        (correlation_id,) = struct.unpack_from(">i", frame, 0)
        with self.lock:
            pending = conn.pop(correlation_id, None)
            if pending is None:
                return
            key, version, request = pending
            self.log.append((request, frame))
            if (key, version) not in self.first:
                self.first[(key, version)] = (request, frame)
                self.order.append((key, version))
            if self.topic in request:
                self.first_naming_topic.setdefault((key, version), (request, frame))

    def pairs(self) -> list[tuple[int, int, bytes, bytes | None]]:
        """The chosen pairs in the order first seen, then requests that never got an
        answer (a Produce with acks=0)."""
        with self.lock:
            out = [(k, v, *self.first_naming_topic.get((k, v), self.first[(k, v)]))
                   for k, v in self.order]
            for (k, v), frame in self.unanswered.items():
                if (k, v) not in self.first:
                    out.append((k, v, frame, None))
            return out


class Proxy:
    """Listens on 127.0.0.1:port and forwards each connection to the broker, splitting
    both directions into frames for the recorder."""

    def __init__(self, port: int, upstream: tuple[str, int], recorder: Recorder) -> None:
        self.upstream = upstream
        self.recorder = recorder
        self.server = socket.create_server((HOST, port))
        self.server.settimeout(0.2)
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.sockets += [client, broker]
            conn: dict = {}
            for src, dst, on_frame in ((client, broker, self.recorder.request),
                                       (broker, client, self.recorder.response)):
                threading.Thread(target=self._pump, args=(src, dst, conn, on_frame),
                                 daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, conn: dict, on_frame) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # record before forwarding: once a request is forwarded its response
                # may come back (on the other thread) before we would have noted it
                buf += data
                while len(buf) >= 4:
                    (size,) = struct.unpack_from(">i", buf, 0)
                    if len(buf) < 4 + size:
                        break
                    on_frame(conn, bytes(buf[4:4 + size]))
                    del buf[:4 + size]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(2)
        for sock in self.sockets:
            sock.close()


# -- the clients ----------------------------------------------------------------------------
MESSAGES = [(b"key-%d" % i, b"value %d " % i + b"x" * (i * 7),
             [("idx", b"%d" % i), ("src", b"golden")]) for i in range(3)]


def drive_kafka_python(bootstrap: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="golden-kafka-python")
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="golden-kafka-python",
                             compression_type="gzip", linger_ms=50)
    for key, value, headers in MESSAGES:
        producer.send(TOPIC, key=key, value=value, headers=headers, partition=0)
    producer.flush(TIMEOUT)
    producer.close(10)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="golden-kafka-python",
                             group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = 0
    deadline = time.monotonic() + TIMEOUT
    while got < len(MESSAGES) and time.monotonic() < deadline:
        got += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
    assert got == len(MESSAGES), got
    consumer.end_offsets([tp])
    consumer.beginning_offsets([tp])
    consumer.offsets_for_times({tp: 0})
    consumer.close()


def drive_confluent(bootstrap: str) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    common = {"bootstrap.servers": bootstrap, "client.id": "golden-confluent"}
    admin = AdminClient(common)
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(TIMEOUT)
    admin.list_topics(TOPIC, timeout=TIMEOUT)
    admin.list_topics(timeout=TIMEOUT)  # all topics: librdkafka's Metadata with 3 extra bytes
    producer = Producer({**common, "compression.type": "snappy", "linger.ms": 50,
                         "enable.idempotence": True})
    for key, value, headers in MESSAGES:
        producer.produce(TOPIC, key=key, value=value, headers=headers, partition=0)
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer({**common, "group.id": "golden-no-commit",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    got = 0
    deadline = time.monotonic() + TIMEOUT
    while got < len(MESSAGES) and time.monotonic() < deadline:
        got += sum(1 for m in consumer.consume(10, 0.5) if m.error() is None)
    assert got == len(MESSAGES), got
    consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=TIMEOUT, cached=False)
    consumer.offsets_for_times([TopicPartition(TOPIC, 0, 0)], timeout=TIMEOUT)
    consumer.close()


async def _drive_aiokafka(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="golden-aiokafka")
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="golden-aiokafka",
                                compression_type="lz4", linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(TOPIC, key=k, value=v, headers=h, partition=0)
                   for k, v, h in MESSAGES]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="golden-aiokafka",
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = 0
        while got < len(MESSAGES):
            got += sum(len(b) for b in (await consumer.getmany(timeout_ms=500)).values())
        await consumer.end_offsets([tp])
        await consumer.beginning_offsets([tp])
        await consumer.offsets_for_times({tp: 0})
    finally:
        await consumer.stop()


def drive_aiokafka(bootstrap: str) -> None:
    asyncio.run(asyncio.wait_for(_drive_aiokafka(bootstrap), TIMEOUT * 2))


def drive_kafkajs(bootstrap: str) -> None:
    """tests/compat/kafkajs/roundtrip.js: createTopics (3 partitions), a gzip produce of
    a few keyed messages with headers, fetchTopicOffsets (ListOffsets) and Fetch."""
    node = shutil.which("node")
    if not node or not (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir():
        raise RuntimeError("node or tests/compat/kafkajs/node_modules missing")
    subprocess.run([node, "roundtrip.js", bootstrap, TOPIC, "6", "gzip", "fetch"],
                   cwd=KAFKAJS_DIR, check=True, capture_output=True, timeout=TIMEOUT * 2)


def drive_kcat(bootstrap: str) -> None:
    """kcat (Debian's, on its own librdkafka): -L metadata, a zstd -P produce of keyed
    messages (the topic is auto-created; -H gives every message the same headers: those
    of the first message), -C -e consume, -Q ListOffsets."""
    kcat = shutil.which("kcat")
    if not kcat:
        raise RuntimeError("kcat is not installed")
    base = [kcat, "-b", bootstrap, "-X", "client.id=golden-kcat"]

    def run(*args: str, data: bytes | None = None) -> None:
        subprocess.run(base + list(args), input=data, check=True, capture_output=True,
                       timeout=TIMEOUT)

    run("-L")
    run("-P", "-t", TOPIC, "-p", "0", "-K", "\t", "-z", "zstd",
        *[arg for name, value in MESSAGES[0][2] for arg in ("-H", f"{name}={value.decode()}")],
        data=b"".join(key + b"\t" + value + b"\n" for key, value, _ in MESSAGES))
    run("-C", "-t", TOPIC, "-o", "beginning", "-e", "-q")
    run("-Q", "-t", f"{TOPIC}:0:0")
    run("-L", "-t", TOPIC)


CLIENTS = {
    "kafka-python": drive_kafka_python,
    "confluent": drive_confluent,
    "aiokafka": drive_aiokafka,
    "kafkajs": drive_kafkajs,
    "kcat": drive_kcat,
}


def capture(client: str, out_dir: Path, dump_all: Path | None = None) -> list[str]:
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix=f"golden-{client}-") as workdir:
        broker_port, proxy_port = free_port(), free_port()
        broker = BrokerProcess(Path(workdir), broker_port, proxy_port)
        proxy = Proxy(proxy_port, (HOST, broker_port), recorder)
        try:
            CLIENTS[client](f"{HOST}:{proxy_port}")
            time.sleep(0.3)  # let the last responses pass through the proxy
        except BaseException:
            sys.stderr.write((Path(workdir) / "broker.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            proxy.close()
            broker.stop()
    target = out_dir / client
    if target.exists():
        for old in target.glob("*.bin"):
            old.unlink()
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for key, version, request, response in recorder.pairs():
        stem = f"{api_file_name(key)}_v{version}"
        (target / f"{stem}.request.bin").write_bytes(request)
        if response is not None:
            (target / f"{stem}.response.bin").write_bytes(response)
        written.append(f"{stem} (key {key}, seen {recorder.seen[(key, version)]}x)")
    # A request with bytes after its last field (librdkafka's all-topics Metadata v9+)
    # is kept too, as <api>_v<N>.trailing.*.bin: the first one of each (api, version).
    trailing_seen = set()
    for request, response in recorder.log:
        key, version = struct.unpack_from(">hh", request, 0)
        if (key, version) in trailing_seen or not trailing_bytes(request):
            continue
        trailing_seen.add((key, version))
        stem = f"{api_file_name(key)}_v{version}.trailing"
        (target / f"{stem}.request.bin").write_bytes(request)
        (target / f"{stem}.response.bin").write_bytes(response)
        written.append(f"{stem} ({len(trailing_bytes(request))} bytes after the last field)")
    if dump_all is not None:  # every pair, numbered, for investigations (not fixtures)
        everything = dump_all / client
        everything.mkdir(parents=True, exist_ok=True)
        for n, (request, response) in enumerate(recorder.log):
            key, version = struct.unpack_from(">hh", request, 0)
            stem = f"{n:04d}_{api_file_name(key)}_v{version}"
            (everything / f"{stem}.request.bin").write_bytes(request)
            (everything / f"{stem}.response.bin").write_bytes(response)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--clients", default=",".join(CLIENTS),
                        help=f"comma-separated, from {', '.join(CLIENTS)}")
    parser.add_argument("--dump-all", type=Path, default=None,
                        help="also write every request/response pair, numbered, here")
    args = parser.parse_args(argv)
    failed = False
    for client in args.clients.split(","):
        try:
            written = capture(client, args.out, args.dump_all)
        except Exception as exc:  # report and go on with the other clients
            print(f"{client}: FAILED: {exc!r}", file=sys.stderr)
            failed = True
            continue
        print(f"{client}: " + ", ".join(written))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
