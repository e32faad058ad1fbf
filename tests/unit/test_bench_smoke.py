"""scripts/bench.py runs end to end (``--quick``) so it cannot rot, and its figures are honest:
counts and byte totals add up, every row ran, failures are reported as failures, never as
numbers. No timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.zk_server import zookeeper_available

pytest.importorskip("confluent_kafka")

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: float = 100) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--quick", "--json", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def check_cell(cell: dict) -> None:
    w = cell["workload"]
    prod = cell["produce"]
    assert prod["ok"] and prod["error"] is None, prod
    assert prod["messages"] == prod["expected"] == w["messages"] == 2000
    assert prod["bytes"] == prod["messages"] * w["size"]
    assert prod["msgs_per_s"] > 0 and prod["mb_per_s"] > 0
    assert prod["broker_cpu_s_per_gb"] is not None
    for run in cell["runs"]:
        assert all(phase["ok"] for phase in run.values())
    cons = cell["consume"]
    if not w["consume"]:
        assert cons is None
        return
    assert cons["ok"] and cons["error"] is None, cons
    assert cons["messages"] == cons["expected"] == prod["messages"]
    assert cons["bytes"] == cons["messages"] * w["size"]
    assert cons["extra"]["log_end_offsets_sum"] == prod["messages"]


@pytest.mark.timeout(120)
def test_bench_quick_table():
    code, report, stderr = run_bench()
    assert code == 0, f"bench failed:\n{stderr[-4000:]}"
    for key in ("ok", "label", "preset", "config", "machine", "broker", "client_settings",
                "startup", "memory", "cells", "latency", "idle_connections",
                "cpu_s_per_gb_moved"):
        assert key in report, key
    assert report["ok"] is True and report["preset"] == "table"

    cells = report["cells"]
    shapes = [(c["group"], w["size"], w["acks"], w["compression"], w["partitions"], w["consume"])
              for c in cells for w in [c["workload"]]]
    assert shapes[:3] == [("throughput", 1000, "1", "none", 1, True),
                          ("throughput", 1000, "all", "lz4", 1, False),
                          ("throughput", 100, "1", "none", 1, False)]
    assert ("partitions", 1000, "1", "none", 10, True) in shapes
    assert [c["brokers"] for c in cells if c["group"] == "replication"] == [1, 3, 3]
    for cell in cells:
        if cell["not_run"]:  # only a cluster the bench cannot start here
            assert cell["brokers"] == 3 and not zookeeper_available(), cell
            continue
        assert cell["status"] == "ok" and cell["ok"], cell
        check_cell(cell)
        replication = cell["replication_factor"]
        assert replication == cell["brokers"] == cell["target"]["brokers"]

    latency = report["latency"]
    assert latency["ok"] and latency["messages"] == latency["expected"] == 50
    extra = latency["extra"]
    assert 0 < extra["p50_ms"] <= extra["p99_ms"] <= extra["max_ms"]

    startup = report["startup"]
    assert startup["ok"] and len(startup["seconds"]) == 1 and startup["seconds"][0] > 0
    memory = report["memory"]
    (idle,), (peak,) = memory["idle_rss_mib"], memory["peak_rss_mib"]
    assert 0 < idle <= peak  # VmHWM is the maximum of VmRSS
    assert memory["moved_gb"] > 0
    assert memory["exit_codes"] == [0]  # a clean shutdown on SIGTERM

    (idle_row,) = report["idle_connections"]
    assert idle_row["ok"], idle_row
    assert idle_row["messages"] == idle_row["expected"] == idle_row["extra"]["connections"] == 20
    assert idle_row["extra"]["cpu_s_per_s"] is not None
    assert idle_row["extra"]["rss_mib"] > 0
    assert idle_row["extra"]["polls_per_s_per_connection"] > 0

    broker = report["broker"]
    assert broker["kind"] == "kbroker" and broker["brokers"] == 1 and len(broker["pids"]) == 1


def assert_all_failed(report: dict) -> None:
    assert report["ok"] is False
    assert report["startup"]["ok"] is False and report["startup"]["error"]
    for cell in report["cells"]:
        assert cell["status"] == "FAILED" and not cell["ok"], cell
        assert cell["produce"]["error"] and cell["produce"]["msgs_per_s"] is None
    assert report["latency"]["ok"] is False and "p50_ms" not in report["latency"]["extra"]
    assert all(not p["ok"] for p in report["idle_connections"])
    assert report["memory"]["idle_rss_mib"] is None and report["cpu_s_per_gb_moved"] is None


@pytest.mark.timeout(60)
def test_bench_broker_that_does_not_start_fails():
    code, report, _ = run_bench("--broker-cmd", "false", "--label", "broken")
    assert code == 1
    assert report["label"] == "broken"
    assert "exited with 1" in report["startup"]["error"]
    assert_all_failed(report)


@pytest.mark.timeout(60)
def test_bench_unreachable_bootstrap_fails():
    code, report, _ = run_bench("--bootstrap", "127.0.0.1:1", "--start-timeout", "1")
    assert code == 1
    assert_all_failed(report)


@pytest.mark.timeout(60)
def test_bench_failed_phase_is_failed_and_the_run_goes_on():
    # 1000-byte values cannot fit a 1000-byte message.max.bytes: produce fails at once
    code, report, _ = run_bench("--preset", "single", "--size", "1000", "--phase-timeout", "5",
                                "--producer-set", "message.max.bytes=1000")
    assert code == 1 and report["ok"] is False
    (cell,) = report["cells"]
    assert cell["status"] == "FAILED"
    assert "MSG_SIZE_TOO_LARGE" in cell["produce"]["error"]
    assert cell["produce"]["msgs_per_s"] is None and cell["produce"]["mb_per_s"] is None
    assert cell["consume"]["error"] and cell["consume"]["msgs_per_s"] is None
    assert report["latency"]["ok"]  # the phases after a failed one still ran
    assert report["startup"]["ok"] and report["memory"]["peak_rss_mib"]
