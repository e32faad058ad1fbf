"""scripts/bench.py runs end to end against our broker (figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("confluent_kafka")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_smoke():
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--messages", "2000",
         "--size", "100", "--runs", "1", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, f"bench failed:\n{proc.stderr[-4000:]}\n{proc.stdout[-4000:]}"
    report = json.loads(proc.stdout)

    for key in ("ok", "config", "broker", "client_settings", "summary", "runs", "moved_gb"):
        assert key in report, key
    assert report["ok"] is True
    summary = report["summary"]
    for key in ("produce", "consume", "latency", "cpu_s_per_gb_moved"):
        assert key in summary, key
    for key in ("msgs_per_s", "mb_per_s", "broker_cpu_s_per_gb"):
        assert key in summary["produce"] and key in summary["consume"], key
    assert "p50_ms" in summary["latency"] and "p99_ms" in summary["latency"]
    broker = report["broker"]
    for key in ("startup_s", "idle_rss_mib", "peak_rss_mib", "pid", "bootstrap"):
        assert key in broker, key
    assert broker["startup_s"] and broker["idle_rss_mib"] and broker["peak_rss_mib"]

    (run,) = report["runs"]
    assert run["produce"]["ok"] and run["consume"]["ok"]
    assert run["produce"]["messages"] == 2000
    assert run["consume"]["messages"] == run["produce"]["messages"]
    assert run["consume"]["bytes"] == run["produce"]["bytes"] == 2000 * 100
    assert run["consume"]["extra"]["log_end_offsets_sum"] == 2000
    assert run["latency"]["messages"] == run["latency"]["expected"] > 0
