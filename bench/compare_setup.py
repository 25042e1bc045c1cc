"""What the machine needs before `bench/compare.py` measures anything, checked up front.

Missing baseline tools are installed with apt-get (as root) and a missing chart library from the
`bench` extra, before the first measurement, so a ten-minute run cannot fail at its end for
want of either; l2fast commands that do not exist yet are found here too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from compare_hosts import BenchError
from compare_kinds import KINDS, missing_commands
from compare_report import NOT_BUILT

from l2fast.errors import L2fastError

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
# The baseline tools and the Debian package of each.
BASELINE_TOOLS = (("iperf3", "iperf3"), ("nc", "netcat-openbsd"), ("ping", "iputils-ping"))


def _is_openbsd_nc() -> bool:
    # -N (shut the socket down at end of input) is netcat-openbsd's; other netcats lack it.
    proc = subprocess.run(["nc", "-h"], capture_output=True, text=True, timeout=10)
    return "OpenBSD" in proc.stdout + proc.stderr


def ensure_tools() -> None:
    """Install missing baseline tools with apt-get (as root), or say exactly what will."""
    missing = [pkg for tool, pkg in BASELINE_TOOLS if shutil.which(tool) is None]
    if "netcat-openbsd" not in missing and shutil.which("nc") and not _is_openbsd_nc():
        missing.append("netcat-openbsd")
    if not missing:
        return
    command = "apt-get update -qq && apt-get install -y -qq " + " ".join(missing)
    if os.geteuid() != 0:
        raise BenchError(f"baseline tools are missing; install them with: sudo sh -c '{command}'")
    say(f"installing the baseline tools: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or any(shutil.which(t) is None for t, _ in BASELINE_TOOLS):
        raise BenchError(f"`{command}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    if not _is_openbsd_nc():
        raise BenchError("`nc` is not netcat-openbsd: run `update-alternatives --config nc`")


def ensure_matplotlib() -> None:
    """Install the `bench` extra (matplotlib) into this interpreter's environment if missing.

    Done before any measurement, so a missing chart library cannot waste a ten-minute run.
    """
    if importlib.util.find_spec("matplotlib") is not None:
        return
    with open(REPO / "pyproject.toml", "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["bench"]
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    command += extra
    say(f"matplotlib (the `bench` extra) is missing; installing it: {shlex.join(command)}")
    if subprocess.run(command).returncode != 0:
        raise BenchError(
            f"could not install matplotlib: run `{shlex.join(command)}` yourself, "
            "or pass --no-chart"
        )


def probe_kinds() -> dict[str, dict[str, Any]]:
    """Which kinds can run: those whose l2fast commands exist (`--help` works)."""
    status: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        entry: dict[str, Any] = {"label": kind.label, "unit": kind.unit, "status": "ok"}
        missing = missing_commands(kind)
        if missing:
            names = ", ".join(f"`l2fast {c}`" for c in missing)
            entry.update(status=NOT_BUILT, reason=f"not built yet: {names} (--help fails)")
        status[kind.key] = entry
    return status


def say(text: str) -> None:
    """Progress and notes go to stderr; stdout carries only the tables."""
    print(text, file=sys.stderr, flush=True)


def need_space(directory: Path, size: int) -> None:
    """Fail before writing if `directory` cannot hold `size` bytes and a margin of 512 MiB."""
    free = shutil.disk_usage(directory).free
    if free < size + 512 * MiB:
        raise BenchError(
            f"{directory} has {free >> 20} MiB free, the files need {(size >> 20) + 512} MiB: "
            "use a smaller --file-size / --scaling-sizes, or another --tmpdir"
        )


def parse_size(text: str) -> int:
    """`2G`, `64M`, `512K` or a byte count (binary units) as bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (try 2G, 64M, 1048576)")
    value = (
        int(match.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[match.group(2).lower()]
    )
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes."""
    return [parse_size(part) for part in text.split(",") if part.strip()]


def run_main(prog: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`run(args)`, with every failure turned into one line on stderr and a non-zero exit.

    SIGTERM becomes KeyboardInterrupt, so the same `finally` blocks that end a normal run
    (labs, daemons, tmpfs files) also run when the benchmark is stopped.
    """

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args)
    except (BenchError, L2fastError) as exc:
        hint = getattr(exc, "hint", None)
        print(f"{prog}: FAILED: {exc}", file=sys.stderr)
        if hint:
            print(f"{prog}: hint: {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; labs removed", file=sys.stderr)
        return 130
