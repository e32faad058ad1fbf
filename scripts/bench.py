#!/usr/bin/env python3
"""kbroker's benchmark: throughput, latency, start-up, memory and CPU of a Kafka broker.

By default it starts our broker (``python -m kbroker serve``) as a subprocess on a free
127.0.0.1 port with a temporary data dir, measures, and stops it with SIGTERM. The same
run can measure any other broker:

* ``--bootstrap host:port``: a broker that is already running (add ``--broker-pid PID``
  to get its RSS and CPU figures from /proc);
* ``--broker-cmd 'tansu broker --listener-url tcp://127.0.0.1:{port} ...'``: a peer
  broker started (and stopped) by the script like ours, ``{port}``/``{host}``/``{data_dir}``
  substituted, so start-up, RSS and CPU are measured the same way.

Phases of one run (each bounded by ``--phase-timeout``; a phase with delivery errors or a
wrong message count is reported as FAILED, never as a number):

1. produce N messages of S bytes with confluent-kafka to a fresh topic (client settings
   chosen so the client is not the bottleneck; printed with the results);
2. consume them back with confluent-kafka, group-less ``assign()`` from offset 0, client
   default fetch settings;
3. produce->consume latency: messages sent one at a time (each flushed and waited for)
   with client default settings; latency = receipt time - send time carried in the value;
4. optionally (``--kafka-python``) the same produce/consume with kafka-python.

Broker-wide figures: start-up to the first Metadata answered (a raw-socket Metadata v1
request polled from the moment the process is launched), idle RSS (VmRSS once started),
peak RSS (VmHWM at the end), broker CPU seconds (utime+stime) per GB moved.

``--runs R`` repeats the phases on fresh topics and reports the median of each figure.
``--json`` prints JSON instead of the table; ``--json-out FILE`` writes it as well.
Figures: MB = 10^6 bytes of message values, GB = 10^9; MiB for memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
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
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MB = 1e6
GB = 1e9
MIB = 1024 * 1024

# Producer settings for the throughput phase: big batches, a deep local queue, a short
# linger, so that librdkafka (not the Python loop or the client queue) is never the
# limit. acks and compression come from the command line.
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


# --------------------------------------------------------------------------------------
# /proc figures of the broker process
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


def proc_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of the process (all its threads), in seconds."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15


def rss_mib(pid: int | None) -> float | None:
    kib = proc_status_kib(pid, "VmRSS") if pid else None
    return None if kib is None else kib / 1024


def hwm_mib(pid: int | None) -> float | None:
    kib = proc_status_kib(pid, "VmHWM") if pid else None
    return None if kib is None else kib / 1024


# --------------------------------------------------------------------------------------
# The broker under test
# --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def metadata_request(correlation_id: int) -> bytes:
    """A Metadata v1 request for all topics (header v1, client id 'kbroker-bench')."""
    client_id = b"kbroker-bench"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)  # topics: null = all
    return struct.pack(">i", len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def try_metadata(host: str, port: int, timeout: float = 1.0) -> bool:
    """One raw-socket Metadata round trip; True if a well-formed answer came back."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(metadata_request(7))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
            return struct.unpack(">i", payload[:4])[0] == 7
    except (OSError, ConnectionError, struct.error):
        return False


@dataclass
class BrokerInfo:
    kind: str  # "kbroker" (started by us), "command" (--broker-cmd), "external"
    bootstrap: str
    pid: int | None = None
    command: list[str] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)
    idle_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    exit_code: int | None = None


class BrokerProcess:
    """A broker started by the script: ours or any ``--broker-cmd``."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.data_dir = workdir

    def command(self, port: int, data_dir: Path) -> list[str]:
        if self.args.broker_cmd:
            text = self.args.broker_cmd.format(host=HOST, port=port, data_dir=data_dir)
            return shlex.split(text)
        cmd = [sys.executable, "-m", "kbroker", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(data_dir)]
        for setting in self.args.broker_set:
            cmd += ["--set", setting]
        return cmd

    def start(self, name: str) -> float:
        """Launch on a fresh port and data dir; seconds to the first Metadata answered."""
        self.port = free_port()
        self.data_dir = self.workdir / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        cmd = self.command(self.port, self.data_dir)
        self.cmd = cmd
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the proc
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = t0 + self.args.start_timeout
        while True:
            if try_metadata(HOST, self.port, timeout=0.5):
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} before answering"
                                   f" Metadata:\n{self.log_tail(name)}")
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"broker did not answer Metadata within "
                                   f"{self.args.start_timeout}s:\n{self.log_tail(name)}")
            time.sleep(0.002)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return self.proc.returncode


# --------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------
@dataclass
class Phase:
    """What one measured phase gives; ``ok`` False means the figures are not figures."""
    name: str
    ok: bool = False
    error: str | None = None
    messages: int = 0  # delivered (produce) / received (consume)
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
        if cpu_s is not None and self.bytes:
            self.broker_cpu_s_per_gb = cpu_s / (self.bytes / GB)
        return self


class CpuMeter:
    """Broker CPU seconds over a phase; the bench's own (client) CPU goes in ``client_s``."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start = proc_cpu_seconds(pid)
        self.client_start = time.process_time()
        self.client_s = 0.0

    def elapsed(self) -> float | None:
        end = proc_cpu_seconds(self.pid)
        self.client_s = time.process_time() - self.client_start
        return None if end is None or self.start is None else end - self.start


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


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int,
                 timeout: float) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, replication)],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout)
    # wait until the topic's leaders are known
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {topic} has no leaders after {timeout}s")


def producer_settings(args: argparse.Namespace) -> dict[str, Any]:
    conf = dict(THROUGHPUT_PRODUCER)
    conf["acks"] = args.acks
    conf["compression.type"] = args.compression
    for setting in args.producer_set:
        key, _, value = setting.partition("=")
        conf[key] = value
    return conf


def phase_produce(args, bootstrap: str, topic: str, pid: int | None) -> Phase:
    from confluent_kafka import KafkaException, Producer

    phase = Phase("produce", expected=args.messages)
    errors: list[str] = []

    def on_error(err, _msg=None):
        if err is not None:
            errors.append(str(err))

    conf = producer_settings(args)
    conf.update({"bootstrap.servers": bootstrap, "on_delivery": on_error,
                 "error_cb": lambda err: err.fatal() and errors.append(str(err))})
    producer = Producer(conf)
    producer.list_topics(topic, timeout=10)  # connected before the clock starts
    payloads = make_payloads(args.size)
    npay = len(payloads)
    produce, poll = producer.produce, producer.poll
    n = args.messages
    deadline = time.monotonic() + args.phase_timeout
    cpu = CpuMeter(pid)
    t0 = time.perf_counter()
    try:
        i = 0
        while i < n:
            try:
                produce(topic, payloads[i % npay])
            except BufferError:
                poll(0.005)
                if time.monotonic() > deadline:
                    raise TimeoutError("produce phase timed out (client queue full)") from None
                continue
            i += 1
            if not i & 0x3FFF:
                poll(0)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"produce phase timed out after {i} messages")
        remaining = producer.flush(max(0.0, deadline - time.monotonic()))
        seconds = time.perf_counter() - t0
        if remaining:
            phase.error = f"{remaining} messages still undelivered at the phase timeout"
        phase.messages = n - remaining - len(errors)
    except (TimeoutError, KafkaException) as exc:
        seconds = time.perf_counter() - t0
        phase.error = str(exc)
        producer.purge()
        producer.flush(1)
    if errors:
        phase.error = f"{len(errors)} delivery errors, first: {errors[0]}"
    phase.bytes = phase.messages * args.size
    phase.finish(seconds, cpu.elapsed())
    phase.extra["client_cpu_s"] = cpu.client_s
    return phase


def phase_consume(args, bootstrap: str, topic: str, partitions: int, expected: int,
                  pid: int | None) -> Phase:
    from confluent_kafka import Consumer, TopicPartition

    phase = Phase("consume", expected=expected)
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_BASE})
    try:
        hw = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                 for p in range(partitions))
        phase.extra["log_end_offsets_sum"] = hw
        count = nbytes = 0
        errors: list[str] = []
        deadline = time.monotonic() + args.phase_timeout
        cpu = CpuMeter(pid)
        t0 = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        consume = consumer.consume
        first = None
        while count < expected and time.monotonic() < deadline:
            # consume() waits for num_messages or the timeout: never ask for more than is left
            batch = consume(num_messages=min(10_000, expected - count), timeout=0.5)
            if first is None and batch:
                first = time.perf_counter() - t0
            for msg in batch:
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    continue
                count += 1
                nbytes += len(msg)
        seconds = time.perf_counter() - t0
        cpu_s = cpu.elapsed()
        phase.extra["first_batch_s"] = first
        phase.extra["client_cpu_s"] = cpu.client_s
        if count < expected:
            phase.error = f"timed out: {count} of {expected} messages received"
        if errors:
            phase.error = f"{len(errors)} consume errors, first: {errors[0]}"
        phase.messages, phase.bytes = count, nbytes
        return phase.finish(seconds, cpu_s)
    finally:
        consumer.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def phase_latency(args, bootstrap: str, topic: str) -> Phase:
    """One message at a time, client defaults; value carries perf_counter_ns at send."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    n, warmup = args.latency_messages, 5
    phase = Phase("latency", expected=n)
    received: queue.Queue = queue.Queue()
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_BASE})
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
    producer = Producer({"bootstrap.servers": bootstrap})  # client defaults
    pad = b"x" * max(0, min(args.size, 1000) - 12)
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


def phase_kafka_python(args, bootstrap: str, topic: str, partitions: int,
                       pid: int | None) -> list[Phase]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    n = args.kafka_python_messages
    conf = {
        "acks": 1 if args.acks == "1" else "all",
        "compression_type": None if args.compression == "none" else args.compression,
        "linger_ms": 5,
        "batch_size": 1_000_000,
        "max_request_size": 1_048_576,
        "enable_idempotence": False,
    }
    prod = Phase("kafka-python produce", expected=n, extra={"settings": dict(conf)})
    errors: list[str] = []
    producer = KafkaProducer(bootstrap_servers=bootstrap, **conf)
    producer.partitions_for(topic)
    payloads = make_payloads(args.size)
    cpu = CpuMeter(pid)
    t0 = time.perf_counter()
    try:
        for i in range(n):
            producer.send(topic, payloads[i % len(payloads)]).add_errback(
                lambda exc: errors.append(repr(exc)))
        producer.flush(timeout=args.phase_timeout)
        prod.messages = n - len(errors)
    except Exception as exc:  # noqa: BLE001 - reported as a failed phase
        prod.error = repr(exc)
    seconds = time.perf_counter() - t0
    producer.close(timeout=5)
    if errors:
        prod.error = f"{len(errors)} delivery errors, first: {errors[0]}"
    prod.bytes = prod.messages * args.size
    prod.finish(seconds, cpu.elapsed())

    cons = Phase("kafka-python consume", expected=prod.messages)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        cpu = CpuMeter(pid)
        t0 = time.perf_counter()
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        count = nbytes = 0
        deadline = time.monotonic() + args.phase_timeout
        while count < cons.expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=100_000).values():
                count += len(records)
                nbytes += sum(len(r.value) for r in records)
        seconds = time.perf_counter() - t0
        cons.messages, cons.bytes = count, nbytes
        cons.finish(seconds, cpu.elapsed())
    finally:
        consumer.close()
    return [prod, cons]


# --------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def guarded(name: str, fn, *args) -> Any:
    """Run a phase; an exception makes it a failed phase instead of ending the bench."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - reported as a failed phase
        return Phase(name, error=f"{type(exc).__name__}: {exc}")


def run_once(args, bootstrap: str, pid: int | None, run: int) -> dict[str, Phase]:
    tag = uuid.uuid4().hex[:8]
    phases: dict[str, Phase] = {}
    topic = f"bench-{run}-{tag}"
    try:
        create_topic(bootstrap, topic, args.partitions, args.replication_factor, 30)
    except Exception as exc:  # noqa: BLE001 - reported as failed phases
        log(f"run {run}: cannot create topic {topic}: {exc}")
        error = f"topic creation failed: {type(exc).__name__}: {exc}"
        return {name: Phase(name, error=error) for name in ("produce", "consume")}
    log(f"run {run}: produce {args.messages} x {args.size} B to {topic}")
    phases["produce"] = guarded("produce", phase_produce, args, bootstrap, topic, pid)
    log(f"run {run}: consume")
    phases["consume"] = guarded("consume", phase_consume, args, bootstrap, topic,
                                args.partitions, phases["produce"].expected, pid)
    if args.latency_messages > 0:
        lat_topic = f"bench-latency-{run}-{tag}"
        create_topic(bootstrap, lat_topic, 1, args.replication_factor, 30)
        log(f"run {run}: latency ({args.latency_messages} messages one at a time)")
        phases["latency"] = guarded("latency", phase_latency, args, bootstrap, lat_topic)
    if args.kafka_python:
        kp_topic = f"bench-kp-{run}-{tag}"
        create_topic(bootstrap, kp_topic, args.partitions, args.replication_factor, 30)
        log(f"run {run}: kafka-python produce/consume {args.kafka_python_messages} messages")
        pair = guarded("kafka-python", phase_kafka_python, args, bootstrap, kp_topic,
                       args.partitions, pid)
        if isinstance(pair, Phase):
            pair = [pair, Phase("kafka-python consume", error="produce phase failed")]
        phases["kafka_python_produce"], phases["kafka_python_consume"] = pair
    for name, phase in phases.items():
        if not phase.ok:
            log(f"run {run}: phase {name} FAILED: {phase.error}")
    return phases


def median_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict[str, Phase]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    names = [n for n in runs[0]] if runs else []
    for name in names:
        phases = [r[name] for r in runs if name in r]
        ok = all(p.ok for p in phases)
        entry: dict[str, Any] = {
            "ok": ok,
            "errors": [p.error for p in phases if p.error],
            "messages": [p.messages for p in phases],
            "expected": [p.expected for p in phases],
        }
        if name == "latency":
            for key in ("p50_ms", "p99_ms", "max_ms"):
                entry[key] = median_or_none([p.extra.get(key) for p in phases]) if ok else None
        else:
            for key in ("msgs_per_s", "mb_per_s", "broker_cpu_s", "broker_cpu_s_per_gb"):
                entry[key] = median_or_none([getattr(p, key) for p in phases]) if ok else None
            entry["msgs_per_s_all"] = [p.msgs_per_s for p in phases]
            entry["client_cpu_s"] = median_or_none([p.extra.get("client_cpu_s") for p in phases])
        summary[name] = entry
    moved = sum(p.bytes for r in runs for n, p in r.items() if n in ("produce", "consume"))
    cpu = [p.broker_cpu_s for r in runs for n, p in r.items() if n in ("produce", "consume")]
    summary["cpu_s_per_gb_moved"] = (
        sum(cpu) / (moved / GB) if moved and cpu and None not in cpu else None)
    return summary


def fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def render_table(report: dict[str, Any]) -> str:
    cfg, s, b = report["config"], report["summary"], report["broker"]
    runs = cfg["runs"]
    lines = [
        f"broker: {b['kind']} at {b['bootstrap']}"
        + (f" (pid {b['pid']})" if b.get("pid") else ""),
        f"workload: {cfg['messages']:,} messages x {cfg['size']} B, {cfg['partitions']} "
        f"partition(s), acks={cfg['acks']}, compression={cfg['compression']}, "
        f"{runs} run(s){' (median)' if runs > 1 else ''}",
        "",
    ]
    rows: list[tuple[str, str, str]] = []

    def thr(name: str, label: str) -> None:
        e = s.get(name)
        if e is None:
            return
        if not e["ok"]:
            rows.append((label, "FAILED", "; ".join(e["errors"])[:60]))
            return
        spread = ""
        if len(e["msgs_per_s_all"]) > 1:
            spread = (f"  (runs {min(e['msgs_per_s_all']):,.0f}"
                      f"..{max(e['msgs_per_s_all']):,.0f})")
        rows.append((label, f"{fmt(e['msgs_per_s'])} msg/s",
                     f"{fmt(e['mb_per_s'], ',.1f')} MB/s{spread}"))

    thr("produce", "produce (confluent-kafka)")
    thr("consume", "consume (confluent-kafka)")
    thr("kafka_python_produce", "produce (kafka-python)")
    thr("kafka_python_consume", "consume (kafka-python)")
    lat = s.get("latency")
    if lat is not None:
        if lat["ok"]:
            rows.append(("produce->consume latency", f"p50 {fmt(lat['p50_ms'], '.2f')} ms",
                         f"p99 {fmt(lat['p99_ms'], '.2f')} ms  "
                         f"(max {fmt(lat['max_ms'], '.2f')}, n={lat['messages'][0]})"))
        else:
            rows.append(("produce->consume latency", "FAILED", "; ".join(lat["errors"])[:60]))
    st = b.get("startup_s") or []
    if st:
        rows.append(("start-up to first Metadata", f"{statistics.median(st):.3f} s",
                     f"(n={len(st)}, min {min(st):.3f}, max {max(st):.3f})"))
    else:
        rows.append(("start-up to first Metadata", "n/a", "(broker not started by bench)"))
    rows.append(("broker RSS idle / peak",
                 f"{fmt(b.get('idle_rss_mib'), '.1f')} / {fmt(b.get('peak_rss_mib'), '.1f')} MiB",
                 f"(after {report['moved_gb']:.2f} GB moved)"))
    prod_cpu = s.get("produce", {}).get("broker_cpu_s_per_gb")
    cons_cpu = s.get("consume", {}).get("broker_cpu_s_per_gb")
    rows.append(("broker CPU per GB moved", fmt(s.get("cpu_s_per_gb_moved"), ".1f", " s/GB"),
                 f"(produce {fmt(prod_cpu, '.1f')}, consume {fmt(cons_cpu, '.1f')} s/GB)"))
    if "produce" in s and "consume" in s:
        p, c = s["produce"], s["consume"]
        rows.append(("CPU s: broker / bench client",
                     f"produce {fmt(p.get('broker_cpu_s'), '.2f')} / "
                     f"{fmt(p.get('client_cpu_s'), '.2f')}",
                     f"consume {fmt(c.get('broker_cpu_s'), '.2f')} / "
                     f"{fmt(c.get('client_cpu_s'), '.2f')}  ({os.cpu_count()} CPUs)"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines.append(f"{'figure':<{w0}}  {'value':<{w1}}")
    lines.append(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    lines += [f"{a:<{w0}}  {v:<{w1}}  {c}".rstrip() for a, v, c in rows]
    lines.append("")
    cs = report["client_settings"]
    lines.append("producer (throughput): "
                 + ", ".join(f"{k}={v}" for k, v in cs["producer"].items()))
    lines.append("consumer: client defaults + "
                 + ", ".join(f"{k}={v}" for k, v in cs["consumer"].items())
                 + "; assign() from offset 0, consume(num_messages=10000)")
    lines.append("latency: producer and consumer client defaults; one message at a time, "
                 "flush() after each, next sent after receipt")
    lines.append(f"client: confluent-kafka {cs['confluent_kafka']} "
                 f"(librdkafka {cs['librdkafka']}); MB = 10^6 B of values")
    lines.append(f"result: {'OK' if report['ok'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=200_000)
    p.add_argument("--size", "-s", type=int, default=1000, help="value bytes per message")
    p.add_argument("--partitions", "-p", type=int, default=1)
    p.add_argument("--replication-factor", type=int, default=1)
    p.add_argument("--acks", choices=["0", "1", "all", "-1"], default="1")
    p.add_argument("--compression", default="none",
                   choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--runs", type=int, default=1, help="repeat and report the median")
    p.add_argument("--latency-messages", type=int, default=1000,
                   help="messages in the latency phase (0 skips it)")
    p.add_argument("--latency-seconds", type=float, default=60.0,
                   help="bound on the latency phase; it reports what it measured so far")
    p.add_argument("--startup-trials", type=int, default=3,
                   help="broker launches timed to the first Metadata (median reported)")
    p.add_argument("--kafka-python", action="store_true",
                   help="also produce/consume with kafka-python")
    p.add_argument("--kafka-python-messages", type=int, default=None,
                   help="messages for the kafka-python phases (default min(N, 50000))")
    p.add_argument("--phase-timeout", type=float, default=180.0)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: 2000 x 100 B, 50 latency messages, 1 start-up trial")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bootstrap", help="measure a running broker at host:port")
    where.add_argument("--broker-cmd",
                       help="start this broker instead of ours ({host} {port} {data_dir})")
    p.add_argument("--broker-pid", type=int, help="with --bootstrap: its pid, for RSS/CPU")
    p.add_argument("--broker-set", action="append", default=[], metavar="KEY=VALUE",
                   help="--set for our broker (repeatable)")
    p.add_argument("--producer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a throughput producer setting (repeatable)")
    p.add_argument("--idle-seconds", type=float, default=1.0,
                   help="wait after start-up before reading the idle RSS")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    args = p.parse_args(argv)
    if args.acks == "-1":
        args.acks = "all"
    if args.quick:
        args.messages, args.size = min(args.messages, 2000), min(args.size, 100)
        args.latency_messages = min(args.latency_messages, 50)
        args.startup_trials, args.idle_seconds, args.runs = 1, 0.2, 1
    if args.kafka_python_messages is None:
        args.kafka_python_messages = min(args.messages, 50_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import confluent_kafka

    workdir = Path(tempfile.mkdtemp(prefix="kbroker-bench-"))
    broker_proc: BrokerProcess | None = None
    try:
        if args.bootstrap:
            info = BrokerInfo("external", args.bootstrap, pid=args.broker_pid)
            info.idle_rss_mib = rss_mib(info.pid)
        else:
            broker_proc = BrokerProcess(args, workdir)
            info = BrokerInfo("kbroker" if not args.broker_cmd else "command", "")
            for trial in range(1, max(1, args.startup_trials)):
                info.startup_s.append(broker_proc.start(f"startup{trial}"))
                broker_proc.stop()
            info.startup_s.append(broker_proc.start("broker"))
            info.bootstrap = f"{HOST}:{broker_proc.port}"
            info.pid, info.command = broker_proc.pid, broker_proc.cmd
            log(f"broker pid {info.pid} at {info.bootstrap}, start-up "
                + ", ".join(f"{t:.3f}" for t in info.startup_s) + " s")
            time.sleep(args.idle_seconds)
            info.idle_rss_mib = rss_mib(info.pid)

        runs = [run_once(args, info.bootstrap, info.pid, r + 1) for r in range(args.runs)]
        info.peak_rss_mib = hwm_mib(info.pid)
        if broker_proc is not None:
            info.exit_code = broker_proc.stop()
            if info.exit_code not in (0, None):
                log(f"broker exited with {info.exit_code}:\n{broker_proc.log_tail('broker')}")
    finally:
        if broker_proc is not None:
            broker_proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs)
    moved = sum(p.bytes for r in runs for n, p in r.items() if n in ("produce", "consume"))
    ok = all(e.get("ok", True) for e in summary.values() if isinstance(e, dict))
    report = {
        "ok": ok,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "broker": asdict(info),
        "client_settings": {
            "producer": producer_settings(args),
            "consumer": dict(CONSUMER_BASE),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": sys.platform},
        "moved_gb": moved / GB,
        "summary": summary,
        "runs": [{name: asdict(p) for name, p in r.items()} for r in runs],
    }
    text = json.dumps(report, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text if args.json else render_table(report))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
