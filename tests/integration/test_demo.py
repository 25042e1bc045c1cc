"""`l2fast demo` (the README's first command) runs end to end and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def test_demo_runs_and_cleans_up() -> None:
    name = f"l2dt{os.getpid() % 100000}"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "l2fast", "demo", "--json", "--seconds", "0.5"),
            *("--file-mib", "16", "--name", name),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    steps = {step["step"]: step for step in report["steps"]}
    assert len(steps["key"]["key_id"]) == 16  # both daemons were checked to use it
    assert [e["name"] for e in steps["discover"]["table"]] == ["h2"]
    assert steps["chat"]["history_entry"]["name"] == "h1"
    assert steps["ping"]["received"] == steps["ping"]["sent"] == 10
    send = steps["send"]
    assert send["result"]["verified"] is True and send["result"]["bytes"] == 16 << 20
    assert send["file_bytes"] == 16 << 20
    raw = steps["raw link h1 -> h2"]
    assert raw["rx"]["frames"] > 0 and raw["rx"]["bad"] == 0
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30
    ).stdout
    assert name not in namespaces
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"{name}-")]
