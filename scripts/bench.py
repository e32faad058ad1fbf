#!/usr/bin/env python3
"""kbroker's benchmark: throughput, latency, start-up, memory and CPU of a Kafka broker.

What it runs against (one per run; every preset works with each):

* by default our broker, ``python -m kbroker serve``, started as a subprocess on a free
  127.0.0.1 port with a temporary data dir, and stopped with SIGTERM at the end;
* ``--cluster N``: a ZooKeeper (Debian's, via :mod:`kbroker.zk_server`) and N of our
  brokers in a fresh chroot, configured like ``scripts/cluster.py``; topics get replication
  factor min(N, 3);
* ``--broker-cmd 'tansu broker --listener-url tcp://127.0.0.1:{port} ...'``: a peer broker
  started and stopped like ours (``{host}``, ``{port}``, ``{data_dir}`` substituted), so
  its start-up, RSS and CPU are measured the same way;
* ``--bootstrap host:port[,...]``: a broker or cluster already running (``--broker-pid PID``,
  repeatable, gives its RSS and CPU from /proc); replication factor min(brokers, 3).

``--versus CMD`` then runs the same plan against a peer started like ``--broker-cmd`` and
prints both tables and a side-by-side one with kbroker's figure over the peer's.

What it measures (``--preset``):

* ``table`` (the default unless a single-workload flag is given): the rows of the project's
  figure table: produce+consume 1000 B acks=1 uncompressed 1 partition (sized so that, with
  the consume, at least ``--peak-gb`` GB moves before the peak RSS is read), produce 1000 B
  acks=all lz4, produce 100 B acks=1, latency, start-up, idle and peak RSS;
* ``matrix``: produce+consume for 100/1000 B x acks 1/all x none/lz4 x 1/6 partitions,
  kafka-python produce+consume, latency, start-up, RSS;
* ``scale``: produce+consume 1000 B acks=1 to 1, 10, 100, 1000 partitions; 1, 10, 100,
  500 idle consumers; replication's cost: produce 1000 B acks=all on one broker and acks=1 /
  acks=all on three brokers with replication factor 3 (our broker only: for the other side
  the bench starts a kbroker of that size; a peer's row is "not run" unless it has that
  many brokers);
* ``single``: the workload of ``--size --acks --compression --partitions`` (any of them
  selects it), latency, and kafka-python with ``--kafka-python``.

``--quick`` shrinks everything to a few seconds and, without ``--preset``, adds small scale
rows (10 partitions, 20 idle consumers, replication) to the table so every code path runs.

How:

* produce: confluent-kafka with settings that keep the client from being the limit (printed
  with the table); several partitions are filled round robin (``partition=i % P``);
* consume: confluent-kafka, group-less ``assign()`` from offset 0, client default fetch
  settings; the partitions must hold exactly the messages produced;
* latency: one message at a time, producer and consumer with client defaults (acks=all,
  fetch.wait.max.ms 500); latency = receipt time - send time carried in the value;
* idle consumers: raw sockets each holding one Fetch v4 long-poll (max_wait 500 ms,
  min_bytes 1: what an idle consumer sends) on an empty partition, answered and re-sent
  for ``--idle-window`` s; broker CPU seconds per wall second, RSS and polls per second;
* start-up: from launch to the first Metadata answered (a cluster: to a Metadata answer from
  every broker listing all N brokers and a controller; ZooKeeper already running);
* RSS: VmRSS ``--idle-seconds`` after start-up, VmHWM at the end; CPU: utime+stime.
* ``--warm-memory GB``: before each throughput run the bench touches and frees that much
  memory, so the run's page cache and client buffers get pages the VM already backs. On a
  VM whose guest reports free pages to the host (virtio-balloon), writing 1 GB into memory
  freed long ago cost 2.8 s of CPU here, into memory freed a moment ago 0.2 s: without
  warming, the produce rows measure that host cost as much as the broker.
  A cluster's CPU figures are summed over its brokers; its RSS is shown per broker (max)
  and summed.

Every phase is bounded (``--phase-timeout``; latency by ``--latency-seconds``); a phase
with an error, a timeout or a wrong message count is reported as FAILED, never as a
number, and the run goes on; the exit code is then 1. A row that could not be run here
(e.g. no ZooKeeper) says "not run". ``--runs R`` repeats the throughput cells and reports
the median msg/s (of an even R, the mean of the middle two; CPU figures from the lower
middle run). The table goes to stdout (``--json`` prints JSON instead), ``--json-out
FILE`` writes the JSON too. MB = 10^6 bytes of message values, GB = 10^9; MiB for memory.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import queue
import random
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MB = 1e6
GB = 1e9
REPLICATION_BROKERS = 3  # the cluster size of the replication rows
IDLE_MAX_WAIT_MS = 500  # librdkafka's fetch.wait.max.ms default

# Producer settings for the throughput phase: big batches, a deep local queue, a short
# linger, so that librdkafka (not the Python loop or the client queue) is never the
# limit. acks and compression come from the workload.
THROUGHPUT_PRODUCER = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 2_097_151,
    "enable.idempotence": False,
    "delivery.report.only.error": True,  # no per-message callback for successes
}
# Consumers use the client's defaults (fetch.wait.max.ms 500, fetch.min.bytes 1, ...);
# only what a group-less assign() from offset 0 needs is set.
CONSUMER_BASE = {
    "group.id": "kbroker-bench",  # required by the client; never joined (assign() only)
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
}
# A consume() call that waits this long for its next batch while the broker holds the rest
# is a consumer pause; librdkafka makes them when its local queue passes
# queued.max.messages.kbytes (64 MiB): it stops fetching for fetch.queue.backoff.ms (1 s).
CONSUMER_PAUSE_S = 0.3


# --------------------------------------------------------------------------------------
# /proc figures of the broker processes
# --------------------------------------------------------------------------------------
def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_seconds(pid: int, kernel_only: bool = False) -> float | None:
    """utime + stime of the process (all its threads), or stime alone, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
    system = int(fields[12])  # field 15
    return (system if kernel_only else int(fields[11]) + system) / CLK_TCK


def cpu_seconds(pids: list[int], kernel_only: bool = False) -> float | None:
    """CPU seconds summed over the brokers; None if any cannot be read (or no pids)."""
    values = [proc_cpu_seconds(pid, kernel_only) for pid in pids]
    return None if not values or None in values else sum(values)


def memory_mib(pids: list[int], key: str) -> list[float] | None:
    """VmRSS or VmHWM of each broker in MiB; None if any cannot be read (or no pids)."""
    values = [proc_status_kib(pid, key) for pid in pids]
    return None if not values or None in values else [v / 1024 for v in values]


# --------------------------------------------------------------------------------------
# Raw protocol: Metadata to see a broker is up, Fetch long-polls for the idle consumers
# --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def request_frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A request with header v1 (client id 'kbroker-bench'), size-prefixed."""
    client_id = b"kbroker-bench"
    frame = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    frame += body
    return struct.pack(">i", len(frame)) + frame


def fetch_request(topic: str, correlation_id: int = 1) -> bytes:
    """Fetch v4 of partition 0 from offset 0, waiting up to IDLE_MAX_WAIT_MS for 1 byte."""
    name = topic.encode()
    body = struct.pack(">iiiib", -1, IDLE_MAX_WAIT_MS, 1, 52_428_800, 0)
    body += struct.pack(">ih", 1, len(name)) + name
    body += struct.pack(">iiqi", 1, 0, 0, 1_048_576)
    return request_frame(1, 4, correlation_id, body)


def fetch_error_code(frame: bytes, topic: str) -> int:
    """Partition 0's error code in a Fetch v4 response to :func:`fetch_request`."""
    # correlation id, throttle, topics count, topic name, partitions count, partition
    offset = 4 + 4 + 4 + 2 + len(topic.encode()) + 4 + 4
    return struct.unpack_from(">h", frame, offset)[0]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> tuple[int, int] | None:
    """One raw Metadata v1 round trip (all topics): (brokers listed, controller id), or None
    if no well-formed answer came back."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request_frame(3, 1, 7, struct.pack(">i", -1)))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except (OSError, ConnectionError, struct.error):
        return None
    try:
        correlation_id, count = struct.unpack_from(">ii", payload, 0)
        pos = 8
        for _ in range(count):  # node_id, host, port, rack (nullable)
            (host_len,) = struct.unpack_from(">h", payload, pos + 4)
            pos += 4 + 2 + host_len + 4
            (rack_len,) = struct.unpack_from(">h", payload, pos)
            pos += 2 + max(0, rack_len)
        (controller,) = struct.unpack_from(">i", payload, pos)
    except struct.error:
        return None
    return (count, controller) if correlation_id == 7 else None


def split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host, int(port)))
    return out


# --------------------------------------------------------------------------------------
# The brokers under test
# --------------------------------------------------------------------------------------
@dataclass
class BrokerProcess:
    """One broker process started by the bench: ours, a ``--broker-cmd`` peer or a member
    of one of our clusters. It shares the bench's process group, so a Ctrl-C or a kill of
    the group reaches it too."""

    name: str
    cmd: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    def launch(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Target:
    """What the phases run against: one broker or a cluster, started by the bench or not."""

    kind: str  # "kbroker", "kbroker-cluster", "command" (--broker-cmd), "external"
    bootstrap: str
    brokers: int
    replication: int
    procs: list[BrokerProcess] = field(default_factory=list)
    given_pids: list[int] = field(default_factory=list)  # --broker-pid of an external one
    startup_s: float | None = None
    moved_bytes: int = 0  # produced + consumed in cells on this target, failed ones too
    ok_bytes: int = 0  # ... in the phases that succeeded
    ok_cpu_s: float | None = 0.0  # broker CPU of those phases (None once unknown)

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs if p.proc] if self.procs else self.given_pids

    @property
    def is_kbroker(self) -> bool:
        return self.kind in ("kbroker", "kbroker-cluster")

    def dead(self) -> str | None:
        """Why this target can no longer serve (one of its processes exited), or None."""
        for p in self.procs:
            code = p.exit_code()
            if code is not None:
                return f"broker {p.name} exited with {code}: {p.log_tail(3)}"
        return None

    def stop(self) -> list[int | None]:
        return [p.stop() for p in self.procs]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "bootstrap": self.bootstrap, "brokers": self.brokers,
                "replication_factor": self.replication, "pids": self.pids,
                "commands": [p.cmd for p in self.procs]}


class Zoo:
    """The ZooKeeper of the bench's clusters: started on first use, stopped by :meth:`stop`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server = None

    def connect(self, chroot: str) -> str:
        from kbroker.zk_server import ZooKeeperServer

        if self.server is None:
            log("starting ZooKeeper")
            self.server = ZooKeeperServer(self.workdir / "zookeeper")
            self.server.start()
        return self.server.connect_string(chroot)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def wait_ready(procs: list[BrokerProcess], brokers: int, t0: float, timeout: float) -> float:
    """Seconds from ``t0`` until every process answers Metadata listing ``brokers`` brokers
    (and a controller, for a cluster). A process that exits, or the timeout, raises."""
    waiting = list(procs)
    while True:
        for p in list(waiting):
            answer = metadata_brokers(HOST, p.port, timeout=0.5)
            if answer and answer[0] == brokers and (brokers == 1 or answer[1] >= 0):
                waiting.remove(p)
        if not waiting:
            return time.perf_counter() - t0
        for p in procs:
            if p.exit_code() is not None:
                raise RuntimeError(f"broker {p.name} exited with {p.exit_code()} before "
                                   f"answering Metadata:\n{p.log_tail()}")
        if time.perf_counter() - t0 > timeout:
            for p in procs:
                p.stop()
            raise RuntimeError(f"{', '.join(p.name for p in waiting)} did not answer Metadata"
                               f" within {timeout}s:\n{waiting[0].log_tail()}")
        time.sleep(0.002)


def launch(args: argparse.Namespace, workdir: Path, zoo: Zoo, kind: str, brokers: int,
           name: str) -> Target:
    """Start a broker (``kind`` kbroker or command) or a kbroker cluster of ``brokers`` on
    fresh ports and data dirs; the Target's ``startup_s`` is its time to be ready."""
    base = workdir / name
    base.mkdir(parents=True)
    procs = []
    if kind == "kbroker-cluster":
        from cluster import cluster_settings  # scripts/cluster.py, beside this file

        connect = zoo.connect(f"/bench-{name}-{uuid.uuid4().hex[:8]}")
        settings = cluster_settings(brokers, args.broker_set)
        for index in range(brokers):
            port = free_port()
            cmd = [sys.executable, "-m", "kbroker", "serve", "--host", HOST, "--port", str(port),
                   "--broker-id", str(index), "--zookeeper", connect,
                   "--data-dir", str(base / f"broker-{index}")]
            cmd += [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
            procs.append(BrokerProcess(f"{name}/{index}", cmd, port, base / f"broker-{index}.log"))
    else:
        port = free_port()
        if kind == "command":
            cmd = shlex.split(args.broker_cmd.format(host=HOST, port=port, data_dir=base))
        else:
            cmd = [sys.executable, "-m", "kbroker", "serve", "--host", HOST, "--port", str(port),
                   "--data-dir", str(base)]
            cmd += [arg for setting in args.broker_set for arg in ("--set", setting)]
        procs.append(BrokerProcess(name, cmd, port, workdir / f"{name}.log"))
    t0 = time.perf_counter()
    try:
        for p in procs:
            p.launch()
        startup = wait_ready(procs, brokers, t0, args.start_timeout)
    except BaseException:
        for p in procs:
            p.stop()
        raise
    bootstrap = ",".join(f"{HOST}:{p.port}" for p in procs)
    return Target(kind, bootstrap, brokers, min(brokers, REPLICATION_BROKERS), procs,
                  startup_s=startup)


def attach(args: argparse.Namespace) -> Target:
    """A broker or cluster already running at ``--bootstrap``: wait (``--start-timeout``) for
    a Metadata answer; its broker count sets the replication factor."""
    host, port = split_bootstrap(args.bootstrap)[0]
    deadline = time.monotonic() + args.start_timeout
    while (answer := metadata_brokers(host, port)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no Metadata answer from {host}:{port} within "
                               f"{args.start_timeout}s")
        time.sleep(0.1)
    brokers = max(1, answer[0])
    return Target("external", args.bootstrap, brokers, min(brokers, REPLICATION_BROKERS),
                  given_pids=list(args.broker_pid))


# --------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------
@dataclass
class Phase:
    """What one measured phase gives; ``ok`` False means the figures are not figures."""

    name: str
    ok: bool = False
    error: str | None = None
    messages: int = 0  # delivered (produce) / received (consume) / answered (idle)
    expected: int = 0
    bytes: int = 0
    seconds: float = 0.0
    msgs_per_s: float | None = None
    mb_per_s: float | None = None
    broker_cpu_s: float | None = None
    broker_cpu_s_per_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def finish(self, seconds: float, cpu_s: float | None) -> Phase:
        self.seconds = seconds
        if self.error is None and self.messages != self.expected:
            self.error = f"{self.messages} messages, expected {self.expected}"
        self.ok = self.error is None
        if self.ok and seconds > 0:
            self.msgs_per_s = self.messages / seconds
            self.mb_per_s = self.bytes / seconds / MB
        self.broker_cpu_s = cpu_s
        if self.ok and cpu_s is not None and self.bytes:
            self.broker_cpu_s_per_gb = cpu_s / (self.bytes / GB)
        return self


class CpuMeter:
    """Broker CPU seconds over a phase; the bench's own (client) CPU goes in ``client_s``."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = cpu_seconds(pids)
        self.kernel_start = cpu_seconds(pids, kernel_only=True)
        self.client_start = time.process_time()
        self.client_s = 0.0
        self.kernel_s: float | None = None  # of the broker's, in system calls (copies)

    def elapsed(self) -> float | None:
        end = cpu_seconds(self.pids)
        kernel_end = cpu_seconds(self.pids, kernel_only=True)
        self.client_s = time.process_time() - self.client_start
        if kernel_end is not None and self.kernel_start is not None:
            self.kernel_s = kernel_end - self.kernel_start
        return None if end is None or self.start is None else end - self.start


@dataclass(frozen=True)
class Workload:
    """One throughput measurement: what is produced, and whether it is consumed back."""

    size: int
    acks: str
    compression: str
    partitions: int
    messages: int
    consume: bool = True
    client: str = "confluent-kafka"  # or "kafka-python"


def overdue(deadline: float, target: Target) -> str | None:
    """Why a phase must stop now: its deadline passed or the broker died."""
    if time.monotonic() > deadline:
        return "phase timed out"
    return target.dead()


def make_payloads(size: int, count: int = 256, seed: int = 1) -> list[bytes]:
    """Distinct values, text-like (compressible about as much as JSON-ish data)."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(512)]
    out = []
    for _ in range(count):
        buf = bytearray()
        while len(buf) < size:
            buf += rng.choice(words) + b" "
        out.append(bytes(buf[:size]))
    return out


def topic_ready(bootstrap: str, topic: str, partitions: int, replication: int) -> bool:
    """This broker's Metadata names a leader (and, replicated, a full ISR) for every partition."""
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    t = md.topics.get(topic)
    return (t is not None and t.error is None and len(t.partitions) == partitions
            and all(p.leader >= 0 and (replication == 1 or len(p.isrs) == replication)
                    for p in t.partitions.values()))


def create_topic(target: Target, topic: str, partitions: int, timeout: float = 60) -> None:
    """Create the topic and wait until every broker of the target knows its leaders."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, target.replication)],
                                  operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[topic].result(timeout)
    except TimeoutError:
        raise RuntimeError(f"CreateTopics not answered within {timeout}s") from None
    deadline = time.monotonic() + timeout
    for host, port in split_bootstrap(target.bootstrap):
        while not topic_ready(f"{host}:{port}", topic, partitions, target.replication):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}:{port} has no leaders (or ISR) for {topic} after"
                                   f" {timeout}s")
            time.sleep(0.05)


def consumer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The throughput consumer's: client defaults, plus ``--consumer-set`` overrides."""
    return {**CONSUMER_BASE, **dict(s.partition("=")[::2] for s in args.consumer_set)}


def producer_settings(args: argparse.Namespace, w: Workload) -> dict[str, Any]:
    conf: dict[str, Any] = dict(THROUGHPUT_PRODUCER)
    conf["acks"] = w.acks
    conf["compression.type"] = w.compression
    for setting in args.producer_set:
        key, _, value = setting.partition("=")
        conf[key] = value
    return conf


def phase_produce(args, w: Workload, target: Target, topic: str) -> Phase:
    from confluent_kafka import KafkaException, Producer

    phase = Phase("produce", expected=w.messages)
    errors: list[str] = []

    def on_error(err, _msg=None):
        if err is not None:
            errors.append(str(err))

    conf = producer_settings(args, w)
    conf.update({"bootstrap.servers": target.bootstrap, "on_delivery": on_error,
                 "error_cb": lambda err: err.fatal() and errors.append(str(err))})
    producer = Producer(conf)
    producer.list_topics(topic, timeout=10)  # connected before the clock starts
    payloads = make_payloads(w.size)
    npay, parts = len(payloads), w.partitions
    produce, poll = producer.produce, producer.poll
    n = w.messages
    deadline = time.monotonic() + args.phase_timeout
    cpu = CpuMeter(target.pids)
    t0 = time.perf_counter()
    try:
        i = 0
        while i < n:
            try:  # partition -1: the client's partitioner (one partition anyway)
                produce(topic, payloads[i % npay], partition=i % parts if parts > 1 else -1)
            except BufferError:
                poll(0.005)
                if reason := overdue(deadline, target):
                    raise TimeoutError(f"{reason} (client queue full after {i})") from None
                continue
            i += 1
            if not i & 0x3FFF:
                poll(0)
                if reason := overdue(deadline, target):
                    raise TimeoutError(f"{reason} after {i} messages")
        remaining = len(producer)
        while remaining and not overdue(deadline, target):
            remaining = producer.flush(0.5)
        seconds = time.perf_counter() - t0
        if remaining:
            phase.error = f"{remaining} messages undelivered: {overdue(deadline, target)}"
        phase.messages = n - remaining - len(errors)
    except (TimeoutError, KafkaException) as exc:
        seconds = time.perf_counter() - t0
        phase.error = str(exc)
        reported = len(errors)
        producer.purge()
        producer.flush(1)
        del errors[reported:]  # "purged" reports of what was never sent say nothing more
    if errors:
        phase.error = f"{len(errors)} delivery errors, first: {errors[0]}"
    phase.bytes = phase.messages * w.size
    phase.finish(seconds, cpu.elapsed())
    phase.extra["client_cpu_s"] = cpu.client_s
    phase.extra["broker_kernel_s"] = cpu.kernel_s
    return phase


def high_watermarks(target: Target, topic: str, partitions: int) -> int:
    """The sum of the partitions' high watermarks (ListOffsets latest), on connections of
    their own: a consumer's would queue it behind its Fetch long-polls."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest()
                                  for p in range(partitions)}, request_timeout=10)
    return sum(f.result(15).offset for f in futures.values())


def settle_replication(target: Target, topic: str, partitions: int, produced: int,
                       timeout: float = 60) -> None:
    """Wait (untimed) until the high watermarks reach what was produced: an acks=1 cell's
    followers still copying must not slow the next cell down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and high_watermarks(target, topic, partitions) < produced:
        time.sleep(0.05)


def phase_consume(args, w: Workload, target: Target, topic: str, expected: int) -> Phase:
    from confluent_kafka import Consumer, Message, TopicPartition

    message_error = Message.error
    phase = Phase("consume", expected=expected)
    consumer = Consumer({"bootstrap.servers": target.bootstrap, **consumer_settings(args)})
    try:
        count = nbytes = 0
        errors: list[str] = []
        deadline = time.monotonic() + args.phase_timeout
        cpu = CpuMeter(target.pids)
        t0 = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(w.partitions)])
        consume = consumer.consume
        # as timeit does: every consumed Message is a GC-tracked object, and the collector
        # would otherwise walk all of the bench's objects every few thousand of them
        gc.disable()
        first = None
        pauses: list[float] = []  # consume() calls that waited >= 0.3 s for the next batch
        while count < expected and not overdue(deadline, target):
            # consume() waits for num_messages or the timeout: never ask for more than is left
            asked = time.perf_counter()
            batch = consume(num_messages=min(10_000, expected - count), timeout=0.5)
            waited = time.perf_counter() - asked
            if first is None and batch:
                first = time.perf_counter() - t0
            elif first is not None and waited >= CONSUMER_PAUSE_S:
                pauses.append(waited)
            # C-level passes over the batch: the loop must drain faster than librdkafka fills
            # its queue, or librdkafka pauses fetching for fetch.queue.backoff.ms (1 s)
            failed = list(filter(None, map(message_error, batch)))
            errors.extend(map(str, failed))
            count += len(batch) - len(failed)
            nbytes += sum(map(len, batch))
        seconds = time.perf_counter() - t0
        cpu_s = cpu.elapsed()
        # read after the messages (a replicated high watermark may lag an acks=1 produce)
        hw = high_watermarks(target, topic, w.partitions)
        phase.extra["log_end_offsets_sum"] = hw
        phase.extra["first_batch_s"] = first
        phase.extra["client_cpu_s"] = cpu.client_s
        phase.extra["broker_kernel_s"] = cpu.kernel_s
        phase.extra["consumer_pauses"] = len(pauses)
        phase.extra["consumer_paused_s"] = sum(pauses)
        if count < expected:
            phase.error = f"{overdue(deadline, target)}: {count} of {expected} messages received"
        elif hw != expected:  # duplicates (retries) or losses are a wrong count too
            phase.error = (f"all {count} messages read, but the high watermarks (ListOffsets"
                           f" latest) sum to {hw}, not {expected}")
        if errors:
            phase.error = f"{len(errors)} consume errors, first: {errors[0]}"
        phase.messages, phase.bytes = count, nbytes
        return phase.finish(seconds, cpu_s)
    finally:
        gc.enable()
        consumer.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def phase_latency(args, target: Target, topic: str) -> Phase:
    """One message at a time, client defaults; value carries perf_counter_ns at send."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    n, warmup = args.latency_messages, 5
    phase = Phase("latency", expected=n)
    received: queue.Queue = queue.Queue()
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": target.bootstrap, **CONSUMER_BASE})
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer_errors: list[str] = []

    def consume_loop():
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            now = time.perf_counter_ns()
            if msg.error() is not None:
                consumer_errors.append(str(msg.error()))
                continue
            stamp, seq = struct.unpack_from(">qi", msg.value())
            received.put((seq, now - stamp))

    thread = threading.Thread(target=consume_loop, name="latency-consumer", daemon=True)
    thread.start()
    producer = Producer({"bootstrap.servers": target.bootstrap})  # client defaults
    pad = b"x" * max(0, min(args.latency_size, 1000) - 12)
    latencies: list[float] = []
    t0 = time.perf_counter()
    deadline = time.monotonic() + args.latency_seconds
    try:
        for seq in range(-warmup, n):
            if seq >= 0 and time.monotonic() > deadline:
                phase.extra["stopped_early"] = f"latency phase bounded at {args.latency_seconds}s"
                phase.expected = seq
                break
            producer.produce(topic, struct.pack(">qi", time.perf_counter_ns(), seq) + pad)
            producer.flush(10)  # send now (no linger); returns once acknowledged
            while True:
                try:
                    got, lat_ns = received.get(timeout=10 if seq >= 0 else 30)
                except queue.Empty:
                    raise TimeoutError(f"message {seq} not received within 10 s") from None
                if got == seq:
                    break
            if seq >= 0:
                latencies.append(lat_ns / 1e6)
    except TimeoutError as exc:
        phase.error = str(exc)
    finally:
        stop.set()
        thread.join(5)
        consumer.close()
    phase.messages = len(latencies)
    if consumer_errors:
        phase.error = f"{len(consumer_errors)} consume errors, first: {consumer_errors[0]}"
    phase.finish(time.perf_counter() - t0, None)
    phase.msgs_per_s = phase.mb_per_s = None
    if latencies:
        s = sorted(latencies)
        phase.extra.update(p50_ms=percentile(s, 50), p99_ms=percentile(s, 99),
                           max_ms=s[-1], mean_ms=statistics.fmean(s))
    return phase


def phase_kafka_python(args, w: Workload, target: Target, topic: str) -> list[Phase]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    n = w.messages
    conf = {
        "acks": 1 if w.acks == "1" else "all",
        "compression_type": None if w.compression == "none" else w.compression,
        "linger_ms": 5,
        "batch_size": 1_000_000,
        "max_request_size": 1_048_576,
        "enable_idempotence": False,
    }
    prod = Phase("produce", expected=n, extra={"settings": dict(conf)})
    errors: list[str] = []
    producer = KafkaProducer(bootstrap_servers=target.bootstrap, **conf)
    producer.partitions_for(topic)
    payloads = make_payloads(w.size)
    cpu = CpuMeter(target.pids)
    t0 = time.perf_counter()
    try:
        for i in range(n):
            producer.send(topic, payloads[i % len(payloads)],
                          partition=i % w.partitions).add_errback(
                lambda exc: errors.append(repr(exc)))
        producer.flush(timeout=args.phase_timeout)
        prod.messages = n - len(errors)
    except Exception as exc:  # noqa: BLE001 - reported as a failed phase
        prod.error = repr(exc)
    seconds = time.perf_counter() - t0
    producer.close(timeout=5)
    if errors:
        prod.error = f"{len(errors)} delivery errors, first: {errors[0]}"
    prod.bytes = prod.messages * w.size
    prod.finish(seconds, cpu.elapsed())

    cons = Phase("consume", expected=n)
    consumer = KafkaConsumer(bootstrap_servers=target.bootstrap, enable_auto_commit=False,
                             group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(w.partitions)]
        cpu = CpuMeter(target.pids)
        t0 = time.perf_counter()
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        count = nbytes = 0
        deadline = time.monotonic() + args.phase_timeout
        while count < cons.expected and not overdue(deadline, target):
            for records in consumer.poll(timeout_ms=500, max_records=100_000).values():
                count += len(records)
                nbytes += sum(len(r.value) for r in records)
        seconds = time.perf_counter() - t0
        cons.messages, cons.bytes = count, nbytes
        cons.finish(seconds, cpu.elapsed())
    finally:
        consumer.close()
    return [prod, cons]


def phase_idle(args, target: Target, topic: str, connections: int) -> Phase:
    """``connections`` idle consumers: sockets each holding one Fetch long-poll on the empty
    partition 0 of ``topic`` (at its leader), re-sent as soon as it is answered. After one
    round, broker CPU seconds per wall second over ``--idle-window`` s, and RSS."""
    from confluent_kafka.admin import AdminClient

    phase = Phase("idle", expected=connections, extra={"connections": connections})
    md = AdminClient({"bootstrap.servers": target.bootstrap}).list_topics(topic, timeout=10)
    leader = md.brokers[md.topics[topic].partitions[0].leader]
    request = fetch_request(topic)
    sel = selectors.DefaultSelector()
    answers = [0] * connections
    socks = []
    try:
        for i in range(connections):
            sock = socket.create_connection((leader.host, leader.port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, (i, bytearray()))
            socks.append(sock)

        def pump(until: float) -> None:
            while (left := until - time.monotonic()) > 0:
                for key, _ in sel.select(timeout=min(0.1, left)):
                    index, buf = key.data
                    data = key.fileobj.recv(65536)
                    if not data:
                        raise ConnectionError(f"the broker closed idle connection {index}")
                    buf += data
                    while len(buf) >= 4 and len(buf) >= 4 + (size := int.from_bytes(buf[:4])):
                        code = fetch_error_code(bytes(buf[4:4 + size]), topic)
                        del buf[:4 + size]
                        if code:
                            raise RuntimeError(f"Fetch answered with error code {code}")
                        answers[index] += 1
                        key.fileobj.sendall(request)  # a few dozen bytes: never blocks

        warmup_end = time.monotonic() + 2 * IDLE_MAX_WAIT_MS / 1000 + 10
        while min(answers) == 0 and time.monotonic() < warmup_end:
            pump(time.monotonic() + 0.1)
        if min(answers) == 0:
            raise TimeoutError(f"{answers.count(0)} connections never answered")
        before = list(answers)
        cpu = CpuMeter(target.pids)
        t0 = time.perf_counter()
        pump(time.monotonic() + args.idle_window)
        seconds = time.perf_counter() - t0
        cpu_s = cpu.elapsed()
        rss = memory_mib(target.pids, "VmRSS")
    finally:
        for sock in socks:
            sock.close()
        sel.close()
    polls = sum(answers) - sum(before)
    phase.messages = sum(a > b for a, b in zip(answers, before, strict=True))
    phase.finish(seconds, cpu_s)
    phase.msgs_per_s = phase.mb_per_s = None
    phase.extra.update(
        cpu_s_per_s=None if cpu_s is None else cpu_s / seconds,
        polls_per_s_per_connection=polls / seconds / connections,
        rss_mib=None if rss is None else sum(rss),
        client_cpu_s=cpu.client_s,
        max_wait_ms=IDLE_MAX_WAIT_MS)
    return phase


# --------------------------------------------------------------------------------------
# What a run measures
# --------------------------------------------------------------------------------------
@dataclass
class Cell:
    """A workload produced (and consumed back) on a target, ``--runs`` times."""

    group: str  # "throughput", "kafka-python", "partitions", "replication"
    workload: Workload
    brokers: int | None = None  # None: the run's target; else a kbroker target of this size
    runs: list[dict[str, Phase]] = field(default_factory=list)
    not_run: str | None = None
    target: dict[str, Any] | None = None  # where it ran


@dataclass
class Plan:
    preset: str
    cells: list[Cell]
    latency: bool
    idle_connections: list[int]


def messages_for(args: argparse.Namespace, size: int) -> int:
    """-n, or by default 200,000 at 1000 B and ~100 MB of values for smaller messages."""
    return args.messages or max(200_000, 100_000_000 // size)


def replication_cells(args: argparse.Namespace) -> list[Cell]:
    n = messages_for(args, 1000)
    return [Cell("replication", Workload(1000, "all", "none", 1, n, consume=False), brokers=1),
            Cell("replication", Workload(1000, "1", "none", 1, n, consume=False),
                 brokers=REPLICATION_BROKERS),
            Cell("replication", Workload(1000, "all", "none", 1, n, consume=False),
                 brokers=REPLICATION_BROKERS)]


def make_plan(args: argparse.Namespace) -> Plan:
    """The cells and phases of ``--preset`` (see the module docstring)."""
    def n(size: int) -> int:
        return messages_for(args, size)

    kp = Cell("kafka-python", Workload(1000, "1", "none", 1, args.kafka_python_messages,
                                       client="kafka-python"))
    if args.preset == "single":
        cells = [Cell("throughput", Workload(args.size, args.acks, args.compression,
                                             args.partitions, n(args.size)))]
        return Plan("single", cells + [kp] * args.kafka_python, args.latency_messages > 0, [])
    if args.preset == "matrix":
        cells = [Cell("throughput", Workload(size, acks, comp, parts, n(size)))
                 for size, acks, comp, parts in itertools.product(
                     (100, 1000), ("1", "all"), ("none", "lz4"), (1, 6))]
        return Plan("matrix", cells + [kp], True, [])
    if args.preset == "scale":
        sizes = (1, 10) if args.quick else (1, 10, 100, 1000)
        cells = [Cell("partitions", Workload(1000, "1", "none", p, n(1000))) for p in sizes]
        idle = [1, 20] if args.quick else [1, 10, 100, 500]
        return Plan("scale", cells + replication_cells(args), False, idle)
    # table: the first cell moves --peak-gb before the peak RSS is read
    first = max(n(1000), math.ceil(args.peak_gb * GB / (2 * 1000)))
    cells = [Cell("throughput", Workload(1000, "1", "none", 1, first)),
             Cell("throughput", Workload(1000, "all", "lz4", 1, n(1000), consume=False)),
             Cell("throughput", Workload(100, "1", "none", 1, n(100), consume=False))]
    cells += [kp] * args.kafka_python
    idle = []
    if args.quick:  # every code path of the bench in a few seconds
        cells.append(Cell("partitions", Workload(1000, "1", "none", 10, n(1000))))
        cells += replication_cells(args)
        idle = [20]
    return Plan("table", cells, True, idle)


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bounded(names: list[str], seconds: float, fn, *args) -> list[Phase]:
    """Run a phase function in a thread for at most ``seconds``: an exception, or a phase
    still running then (left behind), gives failed phases instead of ending the bench."""
    result: list[Any] = []

    def work() -> None:
        try:
            value = fn(*args)
            result.append(value if isinstance(value, list) else [value])
        except Exception as exc:  # noqa: BLE001 - reported as a failed phase
            result.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=work, name=f"phase-{names[0]}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # left behind; the process exits without waiting for it
        return [Phase(name, error=f"still running after {seconds:.0f} s") for name in names]
    if isinstance(result[0], str):
        return [Phase(name, error=result[0]) for name in names]
    return result[0]


def new_topic(args: argparse.Namespace, target: Target, prefix: str, partitions: int) -> str:
    """A fresh topic on the target; RuntimeError saying why if it cannot be created."""
    topic = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        create_topic(target, topic, partitions, timeout=min(60.0, args.phase_timeout))
    except Exception as exc:  # noqa: BLE001 - the caller reports failed phases
        raise RuntimeError(f"topic creation failed: {type(exc).__name__}: {exc}") from exc
    return topic


def warm_memory(gib: float) -> None:
    """Touch and free ``gib`` GiB (see ``--warm-memory``): freed pages go back to the
    guest's free lists, where the next run's allocations find them already backed."""
    bytearray(round(gib * (1 << 30)))  # zero-filled, so every page is written; then freed


def run_cell(args: argparse.Namespace, w: Workload, target: Target) -> dict[str, Phase]:
    names = ["produce", "consume"] if w.consume else ["produce"]
    if reason := target.dead():
        return {name: Phase(name, error=reason) for name in names}
    if args.warm_memory:
        warm_memory(args.warm_memory)
    bound = args.phase_timeout + 30
    try:
        topic = new_topic(args, target, f"{w.size}-{w.partitions}", w.partitions)
    except RuntimeError as exc:
        return {name: Phase(name, error=str(exc)) for name in names}
    if w.client == "kafka-python":
        phases = bounded(names, 2 * bound, phase_kafka_python, args, w, target, topic)
    else:
        phases = bounded(["produce"], bound, phase_produce, args, w, target, topic)
        if w.consume and not phases[0].ok:  # it would only wait for what never came
            phases.append(Phase("consume", error="not measured: the produce phase failed"))
        elif w.consume:
            phases += bounded(["consume"], bound, phase_consume, args, w, target, topic,
                              w.messages)
        elif phases[0].ok and target.brokers > 1:
            settle_replication(target, topic, w.partitions, w.messages)
    for phase in phases:
        target.moved_bytes += phase.bytes
        if phase.ok:
            target.ok_bytes += phase.bytes
            if target.ok_cpu_s is not None and phase.broker_cpu_s is not None:
                target.ok_cpu_s += phase.broker_cpu_s
            else:
                target.ok_cpu_s = None
    return {p.name: p for p in phases[:len(names)]}


def cell_target(args: argparse.Namespace, cell: Cell, main: Target, spares: dict[int, Target],
                workdir: Path, zoo: Zoo) -> Target | str:
    """The target a cell runs on, or why it cannot run here. Cells of a given size that the
    run's target is not get a kbroker (cluster) of that size, started once, if the run's
    target is ours."""
    if cell.brokers is None or cell.brokers == main.brokers:
        return main
    if cell.brokers in spares:
        return spares[cell.brokers]
    if not main.is_kbroker:
        return f"needs a {cell.brokers}-broker target; the bench starts only kbroker ones"
    kind = "kbroker" if cell.brokers == 1 else "kbroker-cluster"
    if kind == "kbroker-cluster":
        from kbroker.zk_server import zookeeper_available

        if not zookeeper_available():
            return "ZooKeeper is not installed (apt-get install zookeeper)"
    log(f"starting a {cell.brokers}-broker kbroker target for the {cell.group} rows")
    try:
        spares[cell.brokers] = launch(args, workdir, zoo, kind, cell.brokers,
                                      f"spare{cell.brokers}")
    except (RuntimeError, OSError) as exc:
        return f"could not start it: {exc}"
    return spares[cell.brokers]


def run_plan(args: argparse.Namespace, plan: Plan, main: Target, workdir: Path,
             zoo: Zoo) -> dict[str, Any]:
    """Run every cell and phase of the plan on the target (and spare targets)."""
    spares: dict[int, Target] = {}
    try:
        for cell in plan.cells:
            target = cell_target(args, cell, main, spares, workdir, zoo)
            if isinstance(target, str):
                cell.not_run = target
                log(f"{cell.group} row not run: {target}")
                continue
            cell.target = target.describe()
            for run in range(args.runs):
                w = cell.workload
                log(f"{cell.group} run {run + 1}: {w.client} {w.messages} x {w.size} B, "
                    f"acks={w.acks}, {w.compression}, {w.partitions} partition(s) on "
                    f"{target.kind} ({target.brokers} broker(s), RF {target.replication})")
                cell.runs.append(run_cell(args, cell.workload, target))
                for name, phase in cell.runs[-1].items():
                    if not phase.ok:
                        log(f"  {name} FAILED: {phase.error}")
    finally:
        for spare in spares.values():
            spare.stop()

    out: dict[str, Any] = {"latency": None, "idle_connections": []}
    if plan.latency:
        log(f"latency: {args.latency_messages} messages one at a time")
        try:
            topic = new_topic(args, main, "latency", 1)
            (out["latency"],) = bounded(["latency"], args.latency_seconds + 60, phase_latency,
                                        args, main, topic)
        except RuntimeError as exc:
            out["latency"] = Phase("latency", error=str(exc))
    if plan.idle_connections:
        topic, error = None, None
        try:
            topic = new_topic(args, main, "idle", 1)
        except RuntimeError as exc:
            error = str(exc)
        for connections in plan.idle_connections:
            log(f"idle consumers: {connections} connections for {args.idle_window} s")
            if topic is None:
                phase = Phase("idle", error=error, extra={"connections": connections})
            else:
                (phase,) = bounded(["idle"], args.idle_window + 60, phase_idle, args, main,
                                   topic, connections)
                phase.extra["connections"] = connections
            out["idle_connections"].append(phase)
    return out


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------
def cell_phase(cell: Cell, name: str) -> dict[str, Any] | None:
    """A cell's figure for one phase: the first failed run, else the median msg/s and MB/s
    with the other figures of the (lower) median run, and every run's msg/s beside it."""
    phases = [r[name] for r in cell.runs if name in r]
    if not phases:
        return None
    failed = [p for p in phases if not p.ok]
    chosen = failed[0] if failed else sorted(phases, key=lambda p: p.msgs_per_s or 0)[
        (len(phases) - 1) // 2]
    report = dict(asdict(chosen), runs_msgs_per_s=[p.msgs_per_s for p in phases])
    if not failed:  # the median rate (of an even count: the mean of the middle two)
        report["msgs_per_s"] = statistics.median(p.msgs_per_s for p in phases)
        report["mb_per_s"] = statistics.median(p.mb_per_s for p in phases)
    return report


def cell_report(cell: Cell) -> dict[str, Any]:
    phases = {name: cell_phase(cell, name) for name in ("produce", "consume")}
    ran = [p for p in phases.values() if p is not None]
    return {
        "group": cell.group,
        "workload": asdict(cell.workload),
        "brokers": cell.target["brokers"] if cell.target else cell.brokers,
        "replication_factor": cell.target["replication_factor"] if cell.target else None,
        "target": cell.target,
        "status": "not run" if cell.not_run else (
            "ok" if ran and all(p["ok"] for p in ran) else "FAILED"),
        "ok": cell.not_run is None and bool(ran) and all(p["ok"] for p in ran),
        "not_run": cell.not_run,
        **phases,
        "runs": [{name: asdict(p) for name, p in r.items()} for r in cell.runs],
    }


def fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def cell_label(cell: dict[str, Any], name: str) -> str:
    w = cell["workload"]
    parts = "1 partition" if w["partitions"] == 1 else f"{w['partitions']} partitions"
    client = "kafka-python " if w["client"] == "kafka-python" else ""
    if name == "consume":
        text = f"{client}consume {w['size']} B from offset 0, {w['compression']}, {parts}"
    else:
        text = f"{client}produce {w['size']} B, acks={w['acks']}, {w['compression']}, {parts}"
    if cell["group"] == "replication":
        n = cell["brokers"]
        text += ", 1 broker" if n == 1 else f", {n} brokers RF {cell['replication_factor'] or n}"
    return text


def failed_row(label: str, error: str | None) -> tuple[str, str, str]:
    return label, "FAILED", (error or "")[:100].replace("\n", " ")


def render_table(report: dict[str, Any]) -> str:
    b = report["broker"]
    title = f"kbroker bench, preset {report['preset']}"
    if report["label"]:
        title = f"{report['label']}: {title}"
    lines = [title, f"broker: {b['kind']}, {b['brokers']} broker(s), replication factor "
             f"{b['replication_factor'] or '-'}, at {b['bootstrap'] or '-'}"
             + (f" (pids {', '.join(map(str, b['pids']))})" if b.get("pids") else ""), ""]
    rows: list[tuple[str, str, str]] = []
    titles = {"throughput": "throughput (confluent-kafka)", "kafka-python": "kafka-python",
              "partitions": "scale: partitions", "replication": "replication"}
    group = None
    for cell in report["cells"]:
        if cell["group"] != group:
            group = cell["group"]
            rows.append((f"-- {titles[group]}", "", ""))
        for name in ("produce", "consume"):
            label = cell_label(cell, name)
            if cell["not_run"]:
                if name == "produce":
                    rows.append((label, "not run", cell["not_run"]))
                continue
            e = cell[name]
            if e is None:
                continue
            if not e["ok"]:
                rows.append(failed_row(label, e["error"]))
                continue
            spread = ""
            if len(e["runs_msgs_per_s"]) > 1:
                runs = [r for r in e["runs_msgs_per_s"] if r is not None]
                spread = f"  (runs {min(runs):,.0f}..{max(runs):,.0f})"
            pauses = ""
            if e["extra"].get("consumer_pauses"):
                pauses = (f"; consumer paused {e['extra']['consumer_pauses']}x, "
                          f"{e['extra']['consumer_paused_s']:.1f} s in all")
            kernel = ""
            if e["extra"].get("broker_kernel_s") is not None and e["broker_cpu_s"]:
                kernel = f" ({e['extra']['broker_kernel_s'] / e['broker_cpu_s']:.0%} kernel)"
            rows.append((label, f"{fmt(e['msgs_per_s'])} msg/s",
                         f"{fmt(e['mb_per_s'], ',.1f')} MB/s, broker "
                         f"{fmt(e['broker_cpu_s_per_gb'], '.1f')} CPU s/GB{kernel}"
                         f"{spread}{pauses}"))
    if report["idle_connections"]:
        rows.append(("-- scale: idle consumers (Fetch long-polls, max_wait "
                     f"{IDLE_MAX_WAIT_MS} ms)", "", ""))
    for p in report["idle_connections"]:
        label = f"{p['extra']['connections']} idle consumer connection(s)"
        if not p["ok"]:
            rows.append(failed_row(label, p["error"]))
            continue
        x = p["extra"]
        rows.append((label, f"{fmt(x['cpu_s_per_s'], '.4f')} CPU s/s",
                     f"RSS{' sum' if b['brokers'] > 1 else ''} {fmt(x['rss_mib'], '.1f')} MiB, "
                     f"{x['polls_per_s_per_connection']:.2f} polls/s each"))
    rows.append(("-- broker", "", ""))
    lat = report["latency"]
    if lat is not None:
        label = "produce->consume latency p50 / p99"
        if lat["ok"]:
            x = lat["extra"]
            rows.append((label, f"{fmt(x['p50_ms'], '.2f')} / {fmt(x['p99_ms'], '.2f')} ms",
                         f"max {fmt(x['max_ms'], '.2f')} ms, n={lat['messages']}, "
                         "client defaults (fetch.wait.max.ms 500)"))
        else:
            rows.append(failed_row(label, lat["error"]))
    st = report["startup"]
    label = ("start-up to first Metadata answered" if b["brokers"] == 1 else
             f"start-up to Metadata listing all {b['brokers']} brokers")
    if not st["ok"]:
        rows.append(failed_row(label, st["error"]))
    elif st["seconds"]:
        s = st["seconds"]
        rows.append((label, f"{statistics.median(s):.3f} s",
                     f"median of {len(s)}, min {min(s):.3f}, max {max(s):.3f}"))
    else:
        rows.append((label, "n/a", "broker not started by the bench"))
    m = report["memory"]
    idle, peak = m["idle_rss_mib"], m["peak_rss_mib"]
    moved = f"peak after {m['moved_gb']:.2f} GB produced+consumed"
    if idle is None or peak is None:
        why = "no pid to read (--broker-pid)" if st["ok"] else "the broker did not start"
        rows.append(("broker RSS idle / peak", "n/a", why))
    elif len(idle) == 1:
        rows.append(("broker RSS idle / peak", f"{idle[0]:.1f} / {peak[0]:.1f} MiB", moved))
    else:
        rows.append(("broker RSS idle / peak, max per broker",
                     f"{max(idle):.1f} / {max(peak):.1f} MiB",
                     f"sum {sum(idle):.1f} / {sum(peak):.1f} MiB; {moved}"))
    rows.append(("broker CPU per GB moved (cells that passed)",
                 fmt(report["cpu_s_per_gb_moved"], ".1f", " s/GB"),
                 "summed over brokers" if b["brokers"] > 1 else ""))
    w0 = max(len(r[0]) for r in rows if r[1])
    w1 = max(len(r[1]) for r in rows)
    lines.append(f"{'figure':<{w0}}  {'value':<{w1}}  detail")
    lines.append(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    for a, v, c in rows:
        lines.append(a if not v else f"{a:<{w0}}  {v:<{w1}}  {c}".rstrip())
    lines.append("")
    cs = report["client_settings"]
    lines.append("producer (throughput): " + ", ".join(
        f"{k}={v}" for k, v in cs["producer"].items()) + "; acks, compression per row; "
        "P partitions filled round robin")
    lines.append("consumer: client defaults + "
                 + ", ".join(f"{k}={v}" for k, v in cs["consumer"].items())
                 + "; assign() from offset 0, consume(num_messages=10000), each batch "
                   "checked and counted with map(), garbage collection off as in timeit")
    lines.append("latency: producer and consumer client defaults; one message at a time, "
                 "flush() after each, next sent after receipt")
    mc = report["machine"]
    warmed = report["config"]["warm_memory"]
    lines.append(f"client: confluent-kafka {cs['confluent_kafka']} (librdkafka "
                 f"{cs['librdkafka']}); machine: {mc['cpus']} CPUs, load "
                 f"{mc['loadavg_start']:.2f} at start; MB = 10^6 B of values"
                 + (f"; {warmed:g} GiB touched and freed before each throughput run"
                    if warmed else ""))
    lines.append(f"result: {'OK' if report['ok'] else 'FAILED'}")
    return "\n".join(lines)


def render_comparison(ours: dict[str, Any], peer: dict[str, Any]) -> str:
    """Both runs' headline figures side by side, with kbroker's figure over the peer's."""
    names = (ours["label"] or "kbroker", peer["label"] or "peer")
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, a: float | None, b: float | None, spec: str, better: str) -> None:
        ratio = "n/a" if a is None or not b else f"{a / b:.3g}x"
        rows.append((f"{label} ({better} is better)", fmt(a, spec), fmt(b, spec), ratio))

    def rate(phase: dict[str, Any] | None) -> float | None:
        return phase["msgs_per_s"] if phase and phase["ok"] else None

    for a, b in zip(ours["cells"], peer["cells"], strict=True):
        for name in ("produce", "consume"):
            if a[name] is not None or b[name] is not None:
                add(f"{cell_label(a, name)}, msg/s", rate(a[name]), rate(b[name]), ",.0f",
                    "higher")
    lat = [r["latency"]["extra"] if r["latency"] and r["latency"]["ok"] else {}
           for r in (ours, peer)]
    for key in ("p50_ms", "p99_ms"):
        add(f"latency {key[:3]}, ms", lat[0].get(key), lat[1].get(key), ".2f", "lower")
    starts = [statistics.median(r["startup"]["seconds"]) if r["startup"]["seconds"] else None
              for r in (ours, peer)]
    add("start-up, s", starts[0], starts[1], ".3f", "lower")
    for key, label in (("idle_rss_mib", "RSS idle, MiB"), ("peak_rss_mib", "RSS peak, MiB")):
        mem = [max(r["memory"][key]) if r["memory"].get(key) else None for r in (ours, peer)]
        add(label, mem[0], mem[1], ".1f", "lower")
    idle = [{p["extra"]["connections"]: p["extra"].get("cpu_s_per_s") for p in
             r["idle_connections"] if p["ok"]} for r in (ours, peer)]
    for connections in sorted(idle[0]):
        add(f"{connections} idle consumers, CPU s/s", idle[0][connections],
            idle[1].get(connections), ".4f", "lower")
    header = ("figure", *names, f"{names[0]} / {names[1]}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [f"side by side: {names[0]} vs {names[1]} (same plan, one run after the other)", ""]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def build_report(args: argparse.Namespace, plan: Plan, target: Target | None,
                 startup: dict[str, Any], memory: dict[str, Any], extras: dict[str, Any],
                 machine: dict[str, Any]) -> dict[str, Any]:
    import confluent_kafka

    cells = [cell_report(c) for c in plan.cells]
    latency = extras["latency"]
    idle = extras["idle_connections"]
    ok = (startup["ok"] and all(c["ok"] or c["not_run"] for c in cells)
          and (latency is None or latency.ok) and all(p.ok for p in idle))
    cpu = None
    if target is not None and target.ok_bytes and target.ok_cpu_s is not None:
        cpu = target.ok_cpu_s / (target.ok_bytes / GB)
    broker = target.describe() if target else {
        "kind": args.kind, "bootstrap": args.bootstrap or "", "brokers": args.cluster or 1,
        "replication_factor": None, "pids": [], "commands": []}
    producer = dict(THROUGHPUT_PRODUCER)
    producer.update(s.partition("=")[::2] for s in args.producer_set)
    return {
        "ok": ok,
        "label": args.label,
        "preset": plan.preset,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine,
        "broker": broker,
        "client_settings": {
            "producer": producer,
            "consumer": consumer_settings(args),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
        },
        "startup": startup,
        "memory": memory,
        "cells": cells,
        "latency": None if latency is None else asdict(latency),
        "idle_connections": [asdict(p) for p in idle],
        "cpu_s_per_gb_moved": cpu,
    }


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["table", "matrix", "scale", "single"],
                   help="what to measure (default: table, or single if --size, --acks, "
                        "--compression or --partitions is given)")
    p.add_argument("--messages", "-n", type=int,
                   help="messages per throughput cell (default 200,000 at 1000 B, "
                        "~100 MB at smaller sizes)")
    single = p.add_argument_group("single workload (--preset single)")
    single.add_argument("--size", "-s", type=int, help="value bytes per message (1000)")
    single.add_argument("--partitions", "-p", type=int, help="partitions (1)")
    single.add_argument("--acks", choices=["0", "1", "all", "-1"], help="acks (1)")
    single.add_argument("--compression", choices=["none", "gzip", "snappy", "lz4", "zstd"],
                        help="compression (none)")
    p.add_argument("--replication-factor", type=int,
                   help="of the run's topics (default: min(brokers, 3))")
    p.add_argument("--runs", type=int, default=1,
                   help="repeat each throughput cell and report the median run")
    p.add_argument("--peak-gb", type=float, default=1.0,
                   help="table: GB produced+consumed by its first cell, before the peak RSS")
    p.add_argument("--latency-messages", type=int, default=1000,
                   help="messages in the latency phase (0 skips it in --preset single)")
    p.add_argument("--latency-size", type=int, default=1000, help="latency message bytes")
    p.add_argument("--latency-seconds", type=float, default=60.0,
                   help="bound on the latency phase; it reports what it measured so far")
    p.add_argument("--startup-trials", type=int, default=3,
                   help="launches timed to the first Metadata (median reported)")
    p.add_argument("--kafka-python", action="store_true",
                   help="table/single: also produce/consume with kafka-python (matrix has it)")
    p.add_argument("--kafka-python-messages", type=int,
                   help="messages for the kafka-python cell (default min(N, 50000))")
    p.add_argument("--idle-window", type=float, default=10.0,
                   help="seconds each idle-consumer measurement lasts (at least 1)")
    p.add_argument("--idle-seconds", type=float, default=1.0,
                   help="wait after start-up before reading the idle RSS")
    p.add_argument("--phase-timeout", type=float, default=120.0,
                   help="seconds a produce, consume or topic creation may take (a phase "
                        "still running 30 s later is left behind as FAILED)")
    p.add_argument("--warm-memory", type=float, default=0.0, metavar="GB",
                   help="touch and free this many GiB before each throughput run, so the "
                        "run gets memory the VM already backs (see the module docstring)")
    p.add_argument("--start-timeout", type=float, default=30.0,
                   help="seconds a broker may take to answer Metadata")
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: 2000 messages per cell, 50 latency messages, 1 "
                        "start-up trial, 1 s idle windows; with the table preset also "
                        "small scale rows")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bootstrap", help="measure a running broker or cluster at host:port")
    where.add_argument("--broker-cmd",
                       help="start this broker instead of ours ({host} {port} {data_dir})")
    where.add_argument("--cluster", type=int, metavar="N",
                       help="start ZooKeeper and N of our brokers (replication factor "
                            "min(N, 3))")
    p.add_argument("--versus", metavar="CMD",
                   help="then run the same plan against this peer broker command (as "
                        "--broker-cmd) and print both tables and a side-by-side comparison")
    p.add_argument("--versus-label", default="peer", help="the peer's name in the tables")
    p.add_argument("--broker-pid", type=int, action="append", default=[],
                   help="with --bootstrap: a broker's pid, for RSS/CPU (repeatable)")
    p.add_argument("--broker-set", action="append", default=[], metavar="KEY=VALUE",
                   help="--set for our broker(s) (repeatable)")
    p.add_argument("--producer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a throughput producer setting (repeatable)")
    p.add_argument("--consumer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a throughput consumer setting (repeatable), e.g. "
                        "fetch.queue.backoff.ms=10 to see past librdkafka's queue-full pauses")
    p.add_argument("--label", default="", help="a name for this run in the table and JSON")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    args = p.parse_args(argv)
    if args.preset is None:
        flags = (args.size, args.partitions, args.acks, args.compression)
        args.preset = "single" if any(f is not None for f in flags) else "table"
    args.size = args.size or 1000
    args.partitions = args.partitions or 1
    args.acks = "all" if args.acks in ("-1", "all") else (args.acks or "1")
    args.compression = args.compression or "none"
    if args.quick:
        args.messages = args.messages or 2000
        args.latency_messages = min(args.latency_messages, 50)
        args.startup_trials, args.idle_seconds, args.runs, args.peak_gb = 1, 0.2, 1, 0.0
        args.idle_window = min(args.idle_window, 1.0)
    args.idle_window = max(1.0, args.idle_window)
    if args.kafka_python_messages is None:
        args.kafka_python_messages = min(messages_for(args, 1000), 50_000)
    args.kind = ("external" if args.bootstrap else "command" if args.broker_cmd
                 else "kbroker-cluster" if args.cluster else "kbroker")
    return args


def compile_bytecode() -> None:
    """Compile kbroker's modules once, as ``pip install`` does for an installed package:
    where PYTHONDONTWRITEBYTECODE is set (or the tree is fresh), every launch would
    otherwise compile ~70 modules from source and start-up would time the compiler."""
    import compileall

    compileall.compile_dir(REPO_ROOT / "kbroker", quiet=1)


def start_main(args: argparse.Namespace, workdir: Path, zoo: Zoo,
               startup: dict[str, Any]) -> Target:
    """The run's target, after ``--startup-trials`` timed launches (the last one stays)."""
    if args.kind == "external":
        target = attach(args)
        target.replication = args.replication_factor or target.replication
        return target
    if args.kind != "command":
        compile_bytecode()
    brokers = args.cluster or 1
    for trial in range(1, max(1, args.startup_trials) + 1):
        target = launch(args, workdir, zoo, args.kind, brokers, f"broker{trial}")
        startup["seconds"].append(target.startup_s)
        if trial < args.startup_trials:
            target.stop()
    target.replication = args.replication_factor or target.replication
    log(f"{args.kind} at {target.bootstrap} (pids {target.pids}), start-up "
        + ", ".join(f"{t:.3f}" for t in startup["seconds"]) + " s")
    return target


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One whole run of the plan against the target ``args`` name; its report."""
    plan = make_plan(args)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
               "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]}
    # up to 500 idle connections, plus the clients' own sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    workdir = Path(tempfile.mkdtemp(prefix="kbroker-bench-"))
    zoo = Zoo(workdir)
    target: Target | None = None
    startup: dict[str, Any] = {"ok": True, "error": None, "seconds": []}
    memory: dict[str, Any] = {"idle_rss_mib": None, "peak_rss_mib": None, "moved_gb": 0.0}
    extras: dict[str, Any] = {"latency": None, "idle_connections": []}
    try:
        try:
            target = start_main(args, workdir, zoo, startup)
        except (RuntimeError, OSError) as exc:
            startup.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            log(f"the broker did not start: {exc}")
        if target is not None:
            time.sleep(args.idle_seconds)
            memory["idle_rss_mib"] = memory_mib(target.pids, "VmRSS")
            extras = run_plan(args, plan, target, workdir, zoo)
            memory["peak_rss_mib"] = memory_mib(target.pids, "VmHWM")
            memory["moved_gb"] = target.moved_bytes / GB
            memory["exit_codes"] = target.stop()
            if any(code not in (0, None) for code in memory["exit_codes"]):
                log(f"broker exit codes {memory['exit_codes']}")
        else:  # nothing could run: every figure is a failure, none a number
            error = "the broker did not start (see start-up)"
            for cell in plan.cells:
                cell.runs.append({"produce": Phase("produce", error=error)})
            extras["latency"] = Phase("latency", error=error) if plan.latency else None
            extras["idle_connections"] = [Phase("idle", error=error, extra={"connections": c})
                                          for c in plan.idle_connections]
    finally:
        if target is not None:
            target.stop()
        zoo.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    return build_report(args, plan, target, startup, memory, extras, machine)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    text = render_table(report)
    output: dict[str, Any] = report
    if args.versus:  # the same plan against the peer, right after ours
        peer_args = argparse.Namespace(**vars(args))
        peer_args.broker_cmd, peer_args.kind = args.versus, "command"
        peer_args.cluster, peer_args.bootstrap = None, None
        peer_args.label = args.versus_label
        peer = measure(peer_args)
        text += "\n\n" + render_table(peer) + "\n\n" + render_comparison(report, peer)
        output = {"ok": report["ok"], "kbroker": report, "versus": peer}
    if args.json_out:
        args.json_out.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2) if args.json else text, flush=True)
    return 0 if report["ok"] else 1  # a peer's failed rows are its own, shown as FAILED


def on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # run the clean-up of main() (brokers, ZooKeeper, temp dir)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = main()
    except KeyboardInterrupt:
        log("interrupted: the brokers and ZooKeeper it started are stopped")
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # a phase left running past its bound may sit in a client call that would block the
    # interpreter's exit: leave without waiting for it
    os._exit(code)
