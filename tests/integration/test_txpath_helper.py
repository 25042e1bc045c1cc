"""TxPath with the CRC helper thread (csrc/txpath.c) across a real kernel.

A namespace named l2txh<pid>-<n> holds a veth pair va <-> vb; txpath_helper_peer.py runs inside
it and sends on va what it then reads on vb. The helper must change nothing on the wire: the
frames are the same bytes as without it, in range order, each counted once, through windows, a
stop mid-window, retransmissions, a fork, and backpressure from a full qdisc. The namespace is
removed whatever happens.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "txpath_helper_peer.py"
NCHUNKS = 3000

pytestmark = pytest.mark.root
_names = itertools.count()


def sh(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


@pytest.fixture
def veth_ns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and raw sockets")
    ns = f"l2txh{os.getpid()}-{next(_names)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for dev in ("va", "vb", "lo"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


def run_peer(ns: str, scenario: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(PEER), scenario],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_helper_sends_the_same_frames(veth_ns: str) -> None:
    # Retried a few times only for the last assertion: on a loaded machine the helper thread
    # may not get a CPU during a whole call, and then the sender builds every header itself.
    for _ in range(5):
        out = run_peer(veth_ns, "same")
        for case in out["cases"]:
            assert case["bad"] == 0
            assert case["identical"], case
            assert case["in_order"], case
        took = [c["took"] for c in out["cases"]]
        assert took == [[3000, 3000], [1250, 1250], [777, 777], [692, 692]]
        if out["helper_frames"] > 0:
            break
    assert out["helper_frames"] > 0, "the helper thread never built a header"
    # A batch thread: woken by the sender, it must not preempt it on its own CPU.
    assert out["helper_policy"] == os.SCHED_BATCH


def test_forked_child_starts_its_own_helper(veth_ns: str) -> None:
    out = run_peer(veth_ns, "fork")
    assert out["took"] == NCHUNKS
    assert out["bad"] == 0
    assert out["in_order"]


def test_backpressure_resumes_exactly(veth_ns: str) -> None:
    # A queue of ~20 frames drained at 200 Mbit/s: most calls stop early.
    sh("tc", "-n", veth_ns, "qdisc", "add", "dev", "va", "root", "tbf", "rate", "200mbit",
       "burst", "16kb", "limit", "30kb")  # fmt: skip
    out = run_peer(veth_ns, "backpressure")
    assert out["sent"] == NCHUNKS
    assert out["short_calls"] > 0 and out["backpressure"] > 0, out
    assert out["bad"] == 0
    assert out["received"] == NCHUNKS, out
    assert out["in_order"], out
