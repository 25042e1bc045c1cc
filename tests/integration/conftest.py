"""Fixtures for tests that cross a real kernel path: labs in network namespaces, and raw-socket
peers running inside them.

Every lab gets a name unique to this test session (`l2t` + 4 random hex digits + a counter) and
is removed when its test ends, pass or fail; anything still left (Ctrl-C, SIGTERM, a crash in a
fixture) is removed at session end and, failing that, at interpreter exit. Only names with this
session's prefix are ever removed, so concurrent sessions and users' own labs are safe.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from l2fast.lab import iproute, netns
from l2fast.lab.state import Impairment, LabRecord, LabSpec

NOT_ROOT_REASON = "needs root: network namespaces and raw sockets (CI runs as root)"
PEER_READY_TIMEOUT_S = 20.0
PEER_RESULT_TIMEOUT_S = 60.0

# A raw-socket peer that runs inside a lab host (`ip netns exec NS python peer.py MODE JSON`).
# It uses l2fast's own C core (l2fast.native) for the socket and the frames.
PEER_SCRIPT = r'''
import hashlib, json, struct, sys, time
from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType, Verdict


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def recv(opts):
    """Count frames from one source until `expect` arrived (then `linger_s` more) or idle."""
    sock = native.RawSocket.open("eth0", rcvbuf=64 << 20)
    source = mac(opts["src"])
    if opts.get("hello"):
        # One broadcast from this host teaches a bridge or the relay hub where it lives.
        hello = native.build_frame(b"\xff" * 6, sock.mac, DEFAULT_ETHERTYPE, FrameType.HELLO,
                                   0, 0, 0, b"hello")
        sock.send_frames([hello])
    print(json.dumps({"ready": True, "mac": sock.mac.hex(":")}), flush=True)
    expect, idle_s = opts.get("expect"), opts.get("idle_s", 1.0)
    linger_s, max_s = opts.get("linger_s", 0.3), opts.get("max_s", 30.0)
    start = time.monotonic()
    last = done_at = first = None
    count, verdicts, sizes, dsts, hashes, seqs = 0, {}, set(), set(), [], set()
    max_seq, inversions = -1, 0
    while time.monotonic() - start < max_s:
        now = time.monotonic()
        if done_at is not None and now - done_at > linger_s:
            break
        if done_at is None and last is not None and now - last > idle_s:
            break
        for f in sock.recv_frames(20, 64):
            last = time.monotonic()
            if f[6:12] != source:
                continue
            first = last if count == 0 else first
            count += 1
            info = native.parse_frame(f)
            verdicts[info.verdict.name] = verdicts.get(info.verdict.name, 0) + 1
            sizes.add(len(f))
            dsts.add(f[0:6].hex(":"))
            hashes.append(hashlib.blake2b(f, digest_size=8).digest())
            if info.verdict == Verdict.OK:
                seqs.add(info.seq)
                inversions += info.seq < max_seq
                max_seq = max(max_seq, info.seq)
        if expect is not None and count >= expect and done_at is None:
            done_at = time.monotonic()
    _, drops = sock.stats()
    hashes.sort()
    print(json.dumps({
        "count": count, "verdicts": verdicts, "sizes": sorted(sizes), "dsts": sorted(dsts),
        "distinct_ok": len(seqs), "inversions": inversions, "kernel_drops": drops,
        "digest": hashlib.sha256(b"".join(hashes)).hexdigest(),
        "span_s": (last - first) if count else 0.0,
    }), flush=True)


def send(opts):
    """Send `count` DATA frames (seq 0..count-1, deterministic payload) to `dst`."""
    sock = native.RawSocket.open("eth0", qdisc_bypass=opts.get("bypass", True))
    dst, n, fps, batch = mac(opts["dst"]), opts["count"], opts.get("fps", 0), 64
    size = sock.mtu - 24 if opts["payload"] == "max" else opts["payload"]
    fill = bytes(range(256)) * (size // 256 + 1)
    frames = [native.build_frame(dst, sock.mac, DEFAULT_ETHERTYPE, FrameType.DATA, 0, 0, seq,
                                 struct.pack("!Q", seq) + fill[: size - 8]) for seq in range(n)]
    start = time.monotonic()
    i = stalls = 0
    while i < n and stalls < 200000:
        if fps:
            ahead = i / fps - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        took = sock.send_frames(frames[i : i + batch])
        if took == 0:
            stalls += 1  # backpressure (a full qdisc): wait and resend
            time.sleep(0.0002)
        i += took
    print(json.dumps({"sent": i, "seconds": time.monotonic() - start, "stalls": stalls}),
          flush=True)


{"recv": recv, "send": send}[sys.argv[1]](json.loads(sys.argv[2]))
'''


def require_root() -> None:
    """Skip the calling test unless root, with the reason."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT_REASON)


@dataclass
class LabFactory:
    """Builds labs named with this session's prefix and removes them again."""

    prefix: str = field(default_factory=lambda: f"l2t{secrets.token_hex(2)}")
    created: list[str] = field(default_factory=list)
    _counter: int = 0

    def new_name(self) -> str:
        """A fresh lab name with this session's prefix."""
        self._counter += 1
        name = f"{self.prefix}{self._counter}"
        self.created.append(name)
        return name

    def up(
        self,
        hosts: int = 2,
        mtu: int = 1500,
        rate_bps: int | None = None,
        impairment: Impairment | None = None,
    ) -> LabRecord:
        """Build a lab through the library API (the CLI has its own test)."""
        spec = LabSpec(self.new_name(), hosts, mtu, rate_bps, impairment)
        return netns.up(spec)

    def down_all(self) -> None:
        """Remove every lab this factory named, and any namespace with its prefix."""
        names = set(self.created)
        names.update(
            ns.rsplit("-", 1)[0] for ns in iproute.netns_list() if ns.startswith(self.prefix)
        )
        for name in sorted(names):
            try:
                netns.down(name)
            except Exception as exc:  # keep removing the others; report at the end
                print(f"lab cleanup: {name}: {exc}", file=sys.stderr)
        self.created.clear()


_factory = LabFactory()


def _cleanup_at_exit() -> None:
    if os.geteuid() == 0:
        _factory.down_all()


atexit.register(_cleanup_at_exit)


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabFactory]:
    """The session's LabFactory; turns SIGTERM into KeyboardInterrupt so teardown still runs."""
    require_root()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield _factory
    finally:
        signal.signal(signal.SIGTERM, previous)
        _factory.down_all()


@pytest.fixture
def labs(lab_session: LabFactory) -> Iterator[LabFactory]:
    """A LabFactory whose labs are removed when the test ends, pass or fail."""
    try:
        yield lab_session
    finally:
        lab_session.down_all()


# ---- peers inside lab hosts


@pytest.fixture(scope="session")
def peer_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEER_SCRIPT written to a file."""
    path = tmp_path_factory.mktemp("peer") / "peer.py"
    path.write_text(PEER_SCRIPT)
    return path


class Peer:
    """A peer process in a lab host; `result()` is its JSON summary line."""

    def __init__(self, script: Path, ns: str, mode: str, opts: dict[str, Any]) -> None:
        argv = ["ip", "netns", "exec", ns, sys.executable, str(script), mode, json.dumps(opts)]
        self.ns = ns
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )

    def wait_ready(self) -> dict[str, Any]:
        """Block until the peer printed its ready line (bounded)."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(PEER_READY_TIMEOUT_S):
                self.kill()
                raise AssertionError(f"peer in {self.ns} not ready in {PEER_READY_TIMEOUT_S} s")
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        if not line:
            raise AssertionError(f"peer in {self.ns} failed: {self._stderr()}")
        ready: dict[str, Any] = json.loads(line)
        return ready

    def result(self) -> dict[str, Any]:
        """Wait for the peer to finish; its last stdout line as JSON."""
        try:
            out, err = self.proc.communicate(timeout=PEER_RESULT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"peer in {self.ns} did not finish") from None
        if self.proc.returncode != 0:
            raise AssertionError(f"peer in {self.ns} exited {self.proc.returncode}: {err}")
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return data

    def _stderr(self) -> str:
        self.kill()
        return self.proc.stderr.read() if self.proc.stderr else ""

    def kill(self) -> None:
        """End the peer (it is in its own session: kill only its process group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def peers(peer_script: Path) -> Iterator[Any]:
    """`peers(ns, mode, **opts)` starts a Peer; every peer is killed when the test ends."""
    started: list[Peer] = []

    def start(ns: str, mode: str, **opts: Any) -> Peer:
        peer = Peer(peer_script, ns, mode, opts)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.kill()
