"""The broker subprocess the compatibility tests run against (used by conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

# brokers started during the current test (or module), for the failure report
_LIVE: list[Broker] = []


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class BrokerDied(AssertionError):
    pass


class Broker:
    """One ``kbroker serve`` process; restartable on the same data dir and port."""

    def __init__(self, workdir: Path, settings: dict[str, object] | None = None,
                 port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.host = HOST
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.stderr_path = self.workdir / "broker.stderr.log"
        self.stdout_path = self.workdir / "broker.stdout.log"
        self._expected_exit = False

    # -- addresses ---------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- lifecycle ---------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "kbroker", "serve", "--host", self.host,
               "--port", str(self.port), "--data-dir", str(self.data_dir)]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd

    def start(self, timeout: float = START_TIMEOUT) -> Broker:
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        # append: a restarted broker's log follows the previous run's
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            marker = f"----- start #{self.starts}: {' '.join(self.command())}\n".encode()
            err.write(marker)
            err.flush()
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self._expected_exit = False
        if self not in _LIVE:
            _LIVE.append(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BrokerDied(f"broker exited with {self.proc.returncode} before accepting "
                                 f"connections on {self.bootstrap}:\n{self.stderr_tail()}")
            try:
                with socket.create_connection(self.address, timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerDied(f"broker did not accept connections on {self.bootstrap} "
                                 f"within {timeout}s:\n{self.stderr_tail()}")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code (fails if it hangs)."""
        assert self.running, "broker is not running"
        self._expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"broker ignored SIGTERM for {timeout}s:\n"
                                 f"{self.stderr_tail()}") from None

    def kill(self) -> None:
        """SIGKILL (kill -9): no chance to flush or checkpoint anything."""
        if self.proc is None:
            return
        self._expected_exit = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def restart(self, how: str = "term") -> Broker:
        """Stop (``term``: SIGTERM, ``kill``: kill -9) and start again, same dir and port."""
        if how == "term":
            code = self.stop()
            assert code == 0, f"graceful stop exited with {code}:\n{self.stderr_tail()}"
        elif how == "kill":
            self.kill()
        else:
            raise ValueError(how)
        return self.start()

    def close(self) -> None:
        """Teardown: the process is gone afterwards, whatever state it was in."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def assert_alive(self) -> None:
        """The broker must never die of what a client sent it."""
        if self.proc is not None and not self._expected_exit and self.proc.poll() is not None:
            raise BrokerDied(f"broker died (exit code {self.proc.returncode}):\n"
                             f"{self.stderr_tail()}")

    # -- logs ----------------------------------------------------------------------------
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 60) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<Broker {self.bootstrap} data={self.data_dir}>"


def _finish(brokers: list[Broker]) -> None:
    problems = []
    for broker in brokers:
        try:
            broker.assert_alive()
        except BrokerDied as exc:
            problems.append(str(exc))
        finally:
            broker.close()
            if broker in _LIVE:
                _LIVE.remove(broker)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
