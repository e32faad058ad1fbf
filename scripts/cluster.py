#!/usr/bin/env python3
"""A local kbroker cluster: one ZooKeeper and N brokers on 127.0.0.1.

    python scripts/cluster.py                    # 3 brokers on ports 9092, 9093, 9094
    python scripts/cluster.py -n 5 --base-port 19092 --dir /tmp/kc
    python scripts/cluster.py --set min.insync.replicas=2 --set default.replication.factor=3

ZooKeeper is Debian's (``apt-get install zookeeper``), run by
:class:`kbroker.zk_server.ZooKeeperServer`. Broker ``i`` gets ``broker.id`` i, port
``base-port + i`` and data directory ``<dir>/broker-<i>``; every broker joins the
chroot ``/kbroker`` of that ZooKeeper. The script prints the bootstrap string, watches
its children (a broker that exits is reported), and on Ctrl-C or SIGTERM stops
everything it started: brokers first (SIGTERM: controlled shutdown), then ZooKeeper.
The data stay in ``--dir`` (a temporary directory, removed at exit, when not given).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kbroker.zk_server import ZooKeeperServer, zookeeper_available  # noqa: E402

CHROOT = "/kbroker"
DEFAULTS = {  # a replicated cluster out of the box (Kafka's own defaults are 1)
    "default.replication.factor": "3",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
}


class Stop(Exception):
    pass


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def cluster_settings(brokers: int, overrides: list[str]) -> dict[str, str]:
    """DEFAULTS capped at the cluster's size, then the ``KEY=VALUE`` overrides (also used by
    scripts/bench.py, so its clusters are configured like this script's)."""
    settings = {key: str(min(int(value), brokers)) for key, value in DEFAULTS.items()}
    for item in overrides:
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    return settings


def broker_command(args, index: int, connect: str, base: Path) -> list[str]:
    settings = cluster_settings(args.brokers, args.set)
    cmd = [
        sys.executable, "-m", "kbroker", "serve",
        "--host", "127.0.0.1",
        "--port", str(args.base_port + index),
        "--broker-id", str(index),
        "--zookeeper", connect,
        "--data-dir", str(base / f"broker-{index}"),
        "--log-level", args.log_level,
    ]  # fmt: skip
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--brokers", type=int, default=3, help="number of brokers")
    parser.add_argument("--base-port", type=int, default=9092, help="first broker's port")
    parser.add_argument("--zk-port", type=int, default=0, help="ZooKeeper's port (default: free)")
    parser.add_argument("--dir", help="where data and logs go (default: a temporary directory)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a broker setting"
    )
    parser.add_argument("--log-level", default="INFO", help="brokers' logging level")
    args = parser.parse_args(argv)
    if not zookeeper_available():
        print("ZooKeeper is not installed: apt-get install zookeeper", file=sys.stderr)
        return 2

    temporary = args.dir is None
    base = Path(args.dir or tempfile.mkdtemp(prefix="kbroker-cluster-"))
    base.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, frame):
        raise Stop

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    zk = ZooKeeperServer(base / "zookeeper", port=args.zk_port or None)
    brokers: list[subprocess.Popen] = []
    logs = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        zk.start()
        connect = zk.connect_string(CHROOT)
        print(f"zookeeper: {connect} (log {zk.log_path})", flush=True)
        for index in range(args.brokers):
            log_path = base / f"broker-{index}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115  (closed at exit)
            logs.append(log_file)
            brokers.append(
                subprocess.Popen(
                    broker_command(args, index, connect, base),
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                )
            )
            print(f"broker {index}: 127.0.0.1:{args.base_port + index} (log {log_path})")
        deadline = time.monotonic() + 30
        waiting = set(range(args.brokers))
        while waiting and time.monotonic() < deadline:
            for index in list(waiting):
                if brokers[index].poll() is not None:
                    raise SystemExit(f"broker {index} exited; see {base}/broker-{index}.log")
                if port_open(args.base_port + index):
                    waiting.discard(index)
            time.sleep(0.1)
        if waiting:
            raise SystemExit(f"brokers {sorted(waiting)} did not start within 30 s")
        bootstrap = ",".join(f"127.0.0.1:{args.base_port + i}" for i in range(args.brokers))
        print(f"bootstrap: {bootstrap}", flush=True)
        print("Ctrl-C stops the cluster.", flush=True)
        reported: set[int] = set()
        while True:
            for index, proc in enumerate(brokers):
                if proc.poll() is not None and index not in reported:
                    reported.add(index)
                    print(f"broker {index} exited with {proc.returncode}", flush=True)
            time.sleep(0.5)
    except Stop:
        print("stopping", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in brokers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in brokers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        zk.stop()
        for log_file in logs:
            log_file.close()
        if temporary:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
