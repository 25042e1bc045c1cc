"""What the end-to-end tests of the bench/ scripts share: running one script to its end (bounded)
and listing the network namespaces it may have left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def namespaces() -> list[str]:
    """Every network namespace on the machine, by name."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=30
    )
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def run_script(argv: list[str], timeout: float) -> tuple[int, int, str, str]:
    """Run a benchmark from the repository root: (pid, exit status, stdout, stderr).

    The pid names the run's labs (`lab_prefix` in bench/compare_hosts.py). A run still going
    after `timeout` seconds is killed, and the timeout is then the test's failure.
    """
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        finally:
            proc.kill()  # only if it hung
    return proc.pid, proc.returncode, stdout, stderr
