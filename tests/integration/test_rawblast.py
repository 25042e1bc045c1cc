"""The raw-frame blast across a real veth pair: frames arrive, verify, and are counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.root

PREFIX = f"l2fb{os.getpid() % 100000}"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    a, b = f"{PREFIX}-a", f"{PREFIX}-b"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b)
        for ns in (a, b):
            ip("-n", ns, "link", "set", "eth0", "mtu", "9000", "up")
        wait_for_carrier(a, b)
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def wait_for_carrier(*namespaces: str) -> None:
    """veth reports carrier (LOWER_UP) asynchronously after `up`; raw sockets need it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = [
            subprocess.run(
                ["ip", "-n", ns, "-br", "link", "show", "eth0"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            for ns in namespaces
        ]
        if all("LOWER_UP" in state for state in states):
            return
        time.sleep(0.05)
    raise AssertionError(f"no carrier on eth0 in {namespaces}")


def mac_of(ns: str) -> str:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", "eth0"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return str(json.loads(out)[0]["address"])


def test_blast_frames_arrive_verified(veth_pair: tuple[str, str]) -> None:
    a, b = veth_pair
    blast = [sys.executable, "-m", "l2fast.rawblast"]
    rx = subprocess.Popen(
        ["ip", "netns", "exec", b, *blast, "rx", "--wait", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert rx.stdout is not None
        assert json.loads(rx.stdout.readline()) == {"ready": True}
        time.sleep(0.2)
        tx_out = subprocess.run(
            ["ip", "netns", "exec", a, *blast, "tx", "--dst", mac_of(b), "--seconds", "1"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        tx = json.loads(tx_out)
        rx_result = json.loads(rx.communicate(timeout=60)[0])
    finally:
        rx.kill()
    assert tx["frames"] > 1000 and tx["frame_size"] == 9014
    assert rx_result["frame_size"] == 9014
    assert rx_result["bad"] == 0
    assert 0 < rx_result["frames"] <= tx["frames"]
    # Whatever the sender had taken but did not arrive, the kernel counted as dropped.
    assert rx_result["frames"] + rx_result["kernel_drops"] >= tx["frames"] * 0.99
    assert rx_result["gbit_per_s"] > 0
