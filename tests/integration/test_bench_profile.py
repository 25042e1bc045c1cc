"""bench/cpu_profile.py on a short `l2fast send` (32 MiB): perf's samples are attributed to the
sender's and the receiver's roles, with CPU seconds, shares, per-GiB costs and top symbols that
add up; skipped, with the command that installs it, when perf cannot sample here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "cpu_profile.py"
RUN_TIMEOUT_S = 300  # only catches a hang
MiB = 1 << 20


def perf_problem() -> str | None:
    """cpu_profile's own check, so the skip reason is the one the script would print."""
    code = "import sys; sys.path.insert(0, 'bench'); import perf_samples as p; "
    code += "print(p.perf_problem() or '')"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() or None


def test_profile_of_a_short_send(tmp_path: Path) -> None:
    problem = perf_problem()
    if problem:
        pytest.skip(f"perf cannot profile here: {problem}")
    out = tmp_path / "profile.json"
    argv = [sys.executable, str(SCRIPT), "--only", "l2fast_send", "--size", "32M"]
    argv += ["--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["schema"] == "l2fast-bench-profile/1" and data["status"] == "ok"
    (profile,) = data["profiles"]
    assert profile["command"] == "l2fast send" and profile["mtu"] == 9000
    assert profile["bytes"] == 32 * MiB and profile["seconds"] > 0 and profile["samples"] > 0
    roles = {(r["side"], r["role"]): r for r in profile["roles"]}
    # The sender's main loop and the receive process always work during a transfer.
    for key in (("sender", "sender main loop"), ("receiver", "receive process")):
        assert key in roles, sorted(roles)
        role = roles[key]
        assert role["cpu_seconds"] > 0 and role["cpu_seconds_per_gib"] > 0
        assert role["threads"] and all(t["pid"] > 0 for t in role["threads"])
        assert role["top_symbols"] and role["top_symbols"][0]["share_of_role"] > 0
    sender, receiver = roles[("sender", "sender main loop")], roles[("receiver", "receive process")]
    # The two are different processes, told apart by pid and perf's fork events.
    assert {t["pid"] for t in sender["threads"]}.isdisjoint(t["pid"] for t in receiver["threads"])
    shares = [r["share_of_all_cores"] for r in profile["roles"]]
    assert all(0 <= s <= 1 for s in shares)
    # Every sample of the window went to one role, and no more CPU than the cores had.
    total = sum(r["cpu_seconds"] for r in profile["roles"])
    assert total == pytest.approx(profile["sampled_cpu_seconds"])
    assert total <= profile["seconds"] * profile["cores"] * 1.1
    for side in ("sender", "receiver"):
        assert profile["sides"][side]["cpu_seconds"] > 0
        assert profile["sides"][side]["cpu_seconds_per_gib"] > 0
    assert "| sender | sender main loop |" in proc.stdout
    assert profile["perf_data"] is None  # deleted without --keep-data
