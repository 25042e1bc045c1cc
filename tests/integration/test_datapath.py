"""The bulk data path across a real kernel: a veth pair between two namespaces created here.

In one namespace a receive process runs the C receive loop (RxPath) with two writer processes
(multiprocessing, fork) draining shared-memory rings into a file on tmpfs; in the other a sender
process runs TxPath over an mmap'd 64 MiB random file.  A minimal feedback loop (in
datapath_peer.py; the real protocol is l2fast.transfer's) resends what the receiver's SACK ranges
say is missing.  The received file must hash like the source.

The sender also injects frames that must never be written: a corrupted copy of chunk 5 (bad CRC)
and valid DATA frames beyond the file's last chunk.  If the corrupted chunk had been accepted, the
real chunk 5 would be dropped as a duplicate and the digest would differ.

Namespaces are named l2fd-<pid>-a/b and removed in the fixture finalizer whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "datapath_peer.py"
SIZE = 64 << 20
SESSION = 0xDA7A
READY_TIMEOUT_S = 20.0
RESULT_TIMEOUT_S = 60.0

pytestmark = pytest.mark.root


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Veth:
    ns_a: str
    ns_b: str
    workdir: Path

    def set_mtu(self, mtu: int) -> None:
        sh("ip", "-n", self.ns_a, "link", "set", "va", "mtu", str(mtu))
        sh("ip", "-n", self.ns_b, "link", "set", "vb", "mtu", str(mtu))

    def mac(self, ns: str, dev: str) -> str:
        address: str = json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]["address"]
        return address


@pytest.fixture(scope="module")
def veth() -> Iterator[Veth]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2 (`ip`) is needed for the namespace tests")
    pid = os.getpid()
    lab = Veth(f"l2fd-{pid}-a", f"l2fd-{pid}-b", Path(f"/dev/shm/l2fd-{pid}"))
    created: list[str] = []
    try:
        for ns in (lab.ns_a, lab.ns_b):
            sh("ip", "netns", "add", ns)
            created.append(ns)
        sh("ip", "-n", lab.ns_a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
           "netns", lab.ns_b)  # fmt: skip
        sh("ip", "-n", lab.ns_a, "link", "set", "va", "up")
        sh("ip", "-n", lab.ns_b, "link", "set", "vb", "up")
        lab.workdir.mkdir()  # tmpfs: the transfer is file-to-tmpfs, as in the benchmark
        yield lab
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(lab.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def source(veth: Veth) -> tuple[Path, str]:
    path = veth.workdir / "source"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class Peer:
    """datapath_peer.py ROLE in a namespace; stdout is JSON lines."""

    def __init__(self, ns: str, role: str, opts: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        argv = ["ip", "netns", "exec", ns, sys.executable, str(PEER), role, json.dumps(opts)]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )

    def ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(READY_TIMEOUT_S):
                self.kill()
                raise AssertionError("peer not ready in time")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"peer failed: {self._stderr()}")
        info: dict[str, Any] = json.loads(line)
        return info

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=RESULT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("peer did not finish in time") from None
        assert self.proc.returncode == 0, err[-3000:]
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return data

    def _stderr(self) -> str:
        self.kill()
        return self.proc.stderr.read() if self.proc.stderr else ""

    def kill(self) -> None:
        """End the peer and its writer children (its own process group only)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.mark.parametrize(("mtu", "skip_every"), [(9000, 0), (1500, 97)])
def test_file_arrives_intact_over_veth(
    veth: Veth, source: tuple[Path, str], mtu: int, skip_every: int
) -> None:
    """64 MiB at MTU 9000 and 1500; at 1500 every 97th chunk is left out of the first pass, so
    it arrives only through a retransmission driven by the receiver's SACK ranges."""
    src, digest = source
    veth.set_mtu(mtu)
    out = veth.workdir / f"received-{mtu}"
    mac_a, mac_b = veth.mac(veth.ns_a, "va"), veth.mac(veth.ns_b, "vb")
    peers: list[Peer] = []
    try:
        rx = Peer(
            veth.ns_b,
            "rx",
            {"iface": "vb", "size": SIZE, "session": SESSION, "peer": mac_a, "out": str(out),
             "writers": 2, "timeout": 45},
        )  # fmt: skip
        peers.append(rx)
        ready = rx.ready()
        assert ready["mtu"] == mtu
        tx = Peer(
            veth.ns_a,
            "tx",
            {"iface": "va", "session": SESSION, "peer": mac_b, "src": str(src), "bad": True,
             "initial_credit": ready["credit"], "skip_every": skip_every, "timeout": 45},
        )  # fmt: skip
        peers.append(tx)
        tx.ready()
        sent = tx.result()
        got = rx.result()
    finally:
        for p in peers:
            p.kill()

    chunks = -(-SIZE // (mtu - 24))
    assert sent["done"], sent
    assert got["complete"] and got["error"] is None, got
    assert got["file_size"] == SIZE  # nothing landed beyond the end
    assert got["sha256"] == digest
    assert got["bitmap_complete"]  # every chunk marked written, for resume
    c = got["counters"]
    assert c["data_new"] == chunks == c["written"]
    assert c["verdicts"]["BAD_CRC"] >= 1  # the corrupted chunk 5 was seen and dropped
    assert c["out_of_range"] >= 3  # the frames beyond the file
    assert c["refused"] == 0
    assert all(w["ok"] and w["refused"] == 0 for w in got["writers"])
    assert sum(w["bytes"] for w in got["writers"]) == SIZE
    assert all(w["chunks"] > 0 for w in got["writers"])  # both writers took batches
    if skip_every:
        assert sent["resent"] >= chunks // skip_every  # the holes came back via SACK
    # handed over in batches: far fewer head updates than chunks
    assert c["batches"] * 8 < chunks
