"""bench/memory.py end to end on a 64 MiB sparse source: the receiver's tree was sampled, the
copy verified, the JSON well-formed and its verdict consistent with its own numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "memory.py"
RUN_TIMEOUT_S = 300  # only catches a hang: 64 MiB take seconds
MiB = 1 << 20


def test_sparse_64m(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    argv = [sys.executable, str(SCRIPT), "--size", "64M", "--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["schema"] == "l2fast-bench-memory/1" and data["status"] == "ok"
    assert data["settings"]["size"] == 64 * MiB and data["settings"]["mtu"] == 9000
    t = data["transfer"]
    assert t["bytes"] == 64 * MiB
    assert t["seconds"] > 0 and t["gbit_per_s"] > 0 and t["wall_seconds"] >= t["seconds"]
    assert t["sha256_checked"] is True
    r = data["receiver"]
    # The daemon and at least the receive process it forks were seen, more than once.
    assert r["processes"] >= 2 and r["samples"] >= 2
    assert 0 < r["peak_pss_kib"] <= r["sum_vmhwm_kib"]
    limit_kib = data["settings"]["limit_bytes"] // 1024
    assert data["verdict"] == {
        "peak_pss_within_limit": r["peak_pss_kib"] <= limit_kib,
        "sum_vmhwm_within_limit": r["sum_vmhwm_kib"] <= limit_kib,
    }
    assert "peak PSS" in proc.stdout and "target <= 256 MiB" in proc.stdout
    # The source, the copy and the lab are gone.
    assert not Path(data["settings"]["workdir"]).exists()
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    assert f"mem{data['machine']['pid'] % 100000}_" not in ns.stdout


def test_a_size_beyond_memory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    argv = [sys.executable, str(SCRIPT), "--size", "64T", "--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bench/memory.py: FAILED:") and "free" in proc.stderr
    assert not out.exists()
