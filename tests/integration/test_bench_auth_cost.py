"""bench/auth_cost.py end to end, small: both kinds measured with and without a LAN key, every
folder copy verified, well-formed JSON with non-zero rates, nothing left behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_helpers import REPO, namespaces, run_script

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRIPT = REPO / "bench" / "auth_cost.py"
RUN_TIMEOUT_S = 300  # only catches a hang: this takes well under a minute


def test_keyed_and_unkeyed_runs_are_measured_and_compared(tmp_path: Path) -> None:
    out = tmp_path / "auth.json"
    argv = [sys.executable, str(SCRIPT), "--reps", "1", "--count", "30", "--seconds", "1"]
    argv += ["--json-out", str(out)]
    pid, code, stdout, stderr = run_script(argv, RUN_TIMEOUT_S)
    assert code == 0, stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["schema"] == "l2fast-bench-auth-cost/1" and data["count"] == 30
    assert "auth_cost.py --reps 1" in data["machine"]["command"]
    for kind in ("folder", "bench"):
        for which in ("keyed", "unkeyed"):
            (value,) = data["runs"][kind][which]
            assert value > 0, (kind, which)
        assert data["summary"][kind]["ratio"] > 0
    assert "keyed / unkeyed" in stdout  # the summary; progress goes to stderr
    prefix = f"ba{pid % 100000}_"
    assert not [ns for ns in namespaces() if ns.startswith(prefix)]
    assert not list(Path("/dev/shm").glob(f"{prefix}*"))
