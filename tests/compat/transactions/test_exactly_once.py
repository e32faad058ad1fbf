"""Exactly once with confluent-kafka: consume-transform-produce across a crash, and an
idempotent producer whose responses get lost."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from compat_broker import free_port
from compat_helpers import topic_name
from confluent_kafka import Producer
from txn_helpers import TIMEOUT, create_topic, read_all, txn_producer, values_of

APP = Path(__file__).with_name("ctp_app.py")
N = 60


def run_app(broker, source, sink, crash_at=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(APP), broker.bootstrap, source, sink, str(N)]
    if crash_at is not None:
        cmd.append(str(crash_at))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_consume_transform_produce_survives_a_crash_exactly_once(broker):
    source, sink = topic_name("ctp-in"), topic_name("ctp-out")
    create_topic(broker.bootstrap, source, 2)
    create_topic(broker.bootstrap, sink, 2)
    feeder = txn_producer(broker.bootstrap, "ctp-feeder")
    feeder.begin_transaction()
    for i in range(N):
        feeder.produce(source, value=b"%03d" % i, partition=i % 2)
    feeder.commit_transaction(TIMEOUT)

    crashed = run_app(broker, source, sink, crash_at=25)
    assert crashed.returncode == 3, crashed.stderr[-3000:]
    # the crashed transaction's output is in the log, but not committed
    partial = read_all(broker.bootstrap, sink, 2, "read_uncommitted")
    committed_before = read_all(broker.bootstrap, sink, 2, "read_committed")
    assert len(partial) > len(committed_before)

    finished = run_app(broker, source, sink)
    assert finished.returncode == 0, finished.stderr[-3000:]
    out = read_all(broker.bootstrap, sink, 2, "read_committed", expected=N)
    values = sorted(v for _, _, v in out)
    assert values == [b"out-%03d" % i for i in range(N)]  # each input exactly once
    # and in input order within each partition
    for p in (0, 1):
        assert [v for q, _, v in out if q == p] == [b"out-%03d" % i for i in range(p, N, 2)]
    everything = read_all(broker.bootstrap, sink, 2, "read_uncommitted")
    assert len(everything) > N  # the aborted output is there, hidden from read_committed


class DroppingProxy:
    """Forwards a client's connections to the broker; every ``every``-th Produce request
    is forwarded, and the client's connection closed before the response comes back."""

    def __init__(self, target: tuple[str, int], every: int, port: int = 0) -> None:
        self.target = target
        self.every = every
        self.produce_seen = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.running = False
        self.server.close()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read_exact(sock, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        try:
            while True:
                size = self._read_exact(client, 4)
                body = self._read_exact(client, int.from_bytes(size, "big"))
                api_key = int.from_bytes(body[:2], "big")
                upstream.sendall(size + body)
                rsize = self._read_exact(upstream, 4)
                response = self._read_exact(upstream, int.from_bytes(rsize, "big"))
                if api_key == 0:
                    with self.lock:
                        self.produce_seen += 1
                        drop = self.produce_seen % self.every == 0
                        self.dropped += drop
                    if drop:  # written by the broker, the answer lost
                        return
                client.sendall(rsize + response)
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()
            upstream.close()


def test_idempotent_producer_with_lost_responses_writes_each_message_once_in_order(
    broker_factory,
):
    # the client must reach the broker only through the proxy: the broker advertises the
    # proxy's address in Metadata
    port = free_port()
    broker = broker_factory({"advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}"})
    proxy = DroppingProxy(broker.address, every=3, port=port)
    topic = topic_name("idem-lost")
    create_topic(f"127.0.0.1:{port}", topic, 1)
    try:
        producer = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{proxy.port}",
                "enable.idempotence": True,
                "linger.ms": 2,
                "batch.num.messages": 10,
                "retry.backoff.ms": 20,
                "message.timeout.ms": 30000,
            }
        )
        errors = []
        for i in range(300):
            producer.produce(
                topic,
                value=b"%04d" % i,
                partition=0,
                on_delivery=lambda err, msg: err and errors.append(err),
            )
            if i % 25 == 0:
                producer.poll(0.01)
        assert producer.flush(60) == 0
        assert errors == []
        assert proxy.dropped >= 3
        values = values_of(f"127.0.0.1:{port}", topic, "read_uncommitted")
    finally:
        proxy.close()
    assert values == [b"%04d" % i for i in range(300)]
