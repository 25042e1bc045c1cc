"""Raw sockets across a real kernel: a veth pair between two network namespaces created here.

Each end runs in its namespace as a subprocess (`ip netns exec NS python rawsock_peer.py ...`),
so the frames really cross veth.  Namespaces are named l2fc-<pid>-a/b and removed in the fixture
finalizer whatever happens.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2fast import native
from l2fast.errors import UnknownInterface

REPO = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "rawsock_peer.py"
NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: network namespaces and raw sockets"
)


def sh(command: str) -> None:
    """Run a command given as one line (no argument here contains spaces)."""
    proc = subprocess.run(command.split(), capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed: {proc.stderr.strip()}")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


@dataclass
class Lab:
    ns_a: str
    ns_b: str

    def set_mtu(self, mtu: int) -> None:
        sh(f"ip -n {self.ns_a} link set va mtu {mtu}")
        sh(f"ip -n {self.ns_b} link set vb mtu {mtu}")

    def cmd(self, ns: str, *args: str, python: str = sys.executable) -> list[str]:
        return ["ip", "netns", "exec", ns, python, str(PEER), *args]

    def run(self, ns: str, *args: str, timeout: float = 60) -> dict[str, Any]:
        proc = subprocess.run(
            self.cmd(ns, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return result


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2 (`ip`) is needed for the namespace tests")
    pid = os.getpid()
    lab = Lab(f"l2fc-{pid}-a", f"l2fc-{pid}-b")
    created: list[str] = []
    try:
        for ns in (lab.ns_a, lab.ns_b):
            sh(f"ip netns add {ns}")
            created.append(ns)
        a, b = lab.ns_a, lab.ns_b
        # The veth pair is created inside the namespaces: nothing appears in the host's.
        sh(f"ip -n {a} link add va type veth peer name vb netns {b}")
        sh(f"ip -n {a} link set va up")
        sh(f"ip -n {b} link set vb up")
        # More veth pairs (this kernel may lack the dummy driver): dn0/dn1 stay down; sm0/sm1
        # are up (so sm0 has carrier) with an MTU below l2fast's minimum.
        sh(f"ip -n {a} link add dn0 type veth peer name dn1")
        sh(f"ip -n {a} link add sm0 type veth peer name sm1")
        sh(f"ip -n {a} link set sm0 mtu 1000 up")
        sh(f"ip -n {a} link set sm1 mtu 1000 up")
        yield lab
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _transfer(
    lab: Lab, mtu: int, count: int, slot: int, mode: str = "batch"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Receiver in namespace b, sender in a; returns both JSON results."""
    lab.set_mtu(mtu)
    receiver = subprocess.Popen(
        lab.cmd(lab.ns_b, "recv", "vb", str(count), str(slot), "15"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert receiver.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(receiver.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "receiver did not start"
        ready = json.loads(receiver.stdout.readline())
        assert ready["ready"] and ready["mtu"] == mtu
        sent = lab.run(lab.ns_a, "send", "va", ready["mac"], str(count), str(mtu - 24), mode)
        out, err = receiver.communicate(timeout=60)
        assert receiver.returncode == 0, err
        return sent, json.loads(out.splitlines()[-1])
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait(timeout=10)


@needs_root
@pytest.mark.root
@pytest.mark.parametrize("mtu", [1500, 9000])
def test_batch_transfer_at_mtu(lab: Lab, mtu: int) -> None:
    count = 256
    sent, got = _transfer(lab, mtu, count, slot=mtu + 14 + 18)
    assert sent["sent"] == count
    frames = got["frames"]
    assert len(frames) == count, f"received {len(frames)} of {count}, drops {got['drops']}"
    assert [f["verdict"] for f in frames] == ["OK"] * count
    assert [f["seq"] for f in frames] == list(range(count))  # veth keeps order
    assert [f["payload_crc"] for f in frames] == sent["payload_crcs"]
    assert {f["wire_len"] for f in frames} == {mtu + 14}  # full-MTU frames
    assert {f["src"] for f in frames} == {sent["mac"]}
    assert got["packets"] >= count and got["drops"] == 0


@needs_root
@pytest.mark.root
def test_send_frames_whole(lab: Lab) -> None:
    sent, got = _transfer(lab, 1500, 64, slot=1600, mode="frames")
    assert sent["sent"] == 64
    assert [f["payload_crc"] for f in got["frames"]] == sent["payload_crcs"]


@needs_root
@pytest.mark.root
def test_truncated_frames_are_reported_and_rejected(lab: Lab) -> None:
    # Slots smaller than the frames: recv reports the real length, the parser says BAD_LENGTH.
    _, got = _transfer(lab, 1500, 16, slot=512)
    frames = got["frames"]
    assert len(frames) == 16
    assert {(f["wire_len"], f["stored_len"], f["verdict"]) for f in frames} == {
        (1514, 512, "BAD_LENGTH")
    }


@needs_root
@pytest.mark.root
def test_unknown_interface_lists_existing(lab: Lab) -> None:
    res = lab.run(lab.ns_a, "open", "nosuch0")
    assert res["error"] == "UnknownInterface"
    assert res["available"] == ["dn0", "dn1", "lo", "sm0", "sm1", "va"]
    assert "dn0, dn1, lo, sm0, sm1, va" in res["hint"]


@needs_root
@pytest.mark.root
def test_interface_down(lab: Lab) -> None:
    res = lab.run(lab.ns_a, "open", "dn0")
    assert res["error"] == "InterfaceDown"
    assert res["message"] == "interface 'dn0' is down or has no carrier"
    assert "ip link set dn0 up" in res["hint"]


@needs_root
@pytest.mark.root
def test_mtu_too_small(lab: Lab) -> None:
    res = lab.run(lab.ns_a, "open", "sm0")
    assert res["error"] == "MtuTooSmall"
    assert "MTU 1000" in res["message"] and "1280" in res["message"]


@needs_root
@pytest.mark.root
def test_oversize_frame_refused_before_the_kernel(lab: Lab) -> None:
    lab.set_mtu(1500)
    res = lab.run(lab.ns_a, "oversize", "va")
    assert res["error"] == "ValueError"
    assert "1515 bytes" in res["message"] and "14..1514" in res["message"]


def _python_for_nobody() -> str | None:
    """An interpreter that uid 65534 can run and that can load the C core, if there is one."""
    if shutil.which("setpriv") is None:
        return None
    for py in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            ["setpriv", *NOBODY, py, "-c", "import l2fast.native"],
            capture_output=True,
            timeout=30,
            env=env(),
            check=False,
        )
        if probe.returncode == 0:
            return py
    return None


@needs_root
@pytest.mark.root
def test_not_root_needs_privilege(lab: Lab) -> None:
    py = _python_for_nobody()
    if py is not None:
        cmd = ["ip", "netns", "exec", lab.ns_a, "setpriv", *NOBODY, py, str(PEER), "open", "va"]
    else:
        # No interpreter is readable by nobody here (e.g. it lives under /root): the peer drops
        # to uid/gid 65534 and no groups itself, after its imports.
        cmd = lab.cmd(lab.ns_a, "open", "va", "drop")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env(), check=False)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["euid"] == 65534
    assert res["error"] == "NeedsPrivilege"
    assert "CAP_NET_RAW" in res["message"]
    assert "private copy of Python" in res["hint"] and "PHYSICAL-LAN.md" in res["hint"]
    assert "which python3" not in res["hint"]  # the system interpreter: every program


def test_unknown_interface_here_needs_no_privilege() -> None:
    # Interface lookups work for any user and list this namespace's interfaces.
    with pytest.raises(UnknownInterface) as info:
        native.interface_info("l2fc-none0")
    assert info.value.available == native.list_interfaces()
    assert "lo" in info.value.available
    with pytest.raises(UnknownInterface):
        native.interface_info("x" * 16)  # longer than IFNAMSIZ allows
    lo = native.interface_info("lo")
    assert lo.ifindex >= 1 and lo.mtu >= 1280 and len(lo.mac) == 6
