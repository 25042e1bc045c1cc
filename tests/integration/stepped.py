"""Run a receiving script and a sending script in two lab hosts, step by step.

The receiver (`python -c RECEIVER MAC` in its host) prints a step's name when it is ready for
that step's frames and then reads one line from its stdin; the driver then runs the sender
(`python -c SENDER MAC` in the other host) to completion and writes that line, and the
receiver collects what arrived. After the last step the receiver prints one JSON object (its
results) and exits 0. The receiver is killed on any failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_in_steps(
    rx_ns: str, tx_ns: str, receiver: str, sender: str, mac: str, steps: Sequence[str]
) -> dict[str, Any]:
    """The receiver's JSON result after every step in `steps` ran as described above."""
    rx = subprocess.Popen(
        ["ip", "netns", "exec", rx_ns, sys.executable, "-c", receiver, mac],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert rx.stdout is not None and rx.stdin is not None
        for step in steps:
            assert rx.stdout.readline().strip() == step
            subprocess.run(
                ["ip", "netns", "exec", tx_ns, sys.executable, "-c", sender, mac],
                check=True,
                cwd=REPO,
                timeout=30,
            )
            rx.stdin.write("go\n")
            rx.stdin.flush()
        out: dict[str, Any] = json.loads(rx.stdout.readline())
        assert rx.wait(30) == 0
        return out
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(10)
        for pipe in (rx.stdout, rx.stdin):
            if pipe is not None:
                pipe.close()
