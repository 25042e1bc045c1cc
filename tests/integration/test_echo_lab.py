"""The daemon's C echo responder on a real lab (issue 6): PONGs byte for byte, exactly one per
PING, rate limits under a flood, hostile frames dropped and counted in `status --json`, clean
stop, the event-loop fallback, and forked transfer workers that leave the responder alone.

A raw-socket peer in h2 (l2fast's own C core, no daemon) sends the frames and collects what
comes back; the daemon under test runs in h1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from node_helpers import REPO, NodeLab, wait_until

from l2fast import native
from l2fast.lab import netns
from l2fast.node.config import NodeConfig
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType

if TYPE_CHECKING:  # the fixture's type; tests/integration is not a package
    from conftest import LabFactory

PEER_TIMEOUT_S = 60.0

# Runs in h2: sends frames (given as hex, or a flood of PINGs from random MACs) to the daemon's
# MAC and reports every frame that comes back from it.
ECHO_PEER = r"""
import json, random, sys, time
from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType

o = json.loads(sys.argv[1])
sock = native.RawSocket.open("eth0", rcvbuf=64 << 20)
daemon = bytes.fromhex(o["daemon"])
if "flood" in o:
    rng = random.Random(o["seed"])
    frames = []
    for seq in range(o["flood"]):
        src = bytes([rng.randrange(256) & 0xFC | 2]) + rng.randbytes(5)  # unicast, local
        frames.append(native.build_frame(daemon, src, DEFAULT_ETHERTYPE, FrameType.PING, 0, 0,
                                         seq, bytes(56)))
else:
    frames = [bytes.fromhex(f) for f in o["frames"]]
gap = o.get("gap_s", 0.0)
sent = 0
start = time.monotonic()
stalls = 0
while sent < len(frames) and stalls < 100000:
    batch = frames[sent : sent + (1 if gap else 64)]
    took = sock.send_frames(batch)
    if took == 0:
        stalls += 1
        time.sleep(0.0002)
    sent += took
    if gap:
        time.sleep(gap)
took_s = time.monotonic() - start
back = []
deadline = time.monotonic() + o.get("collect_s", 0.5)
while time.monotonic() < deadline:
    for f in sock.recv_frames(20, 64):
        if f[6:12] == daemon:
            back.append(f.hex())
print(json.dumps({"sent": sent, "send_s": took_s, "back": back}), flush=True)
"""


def peer_run(lab: NodeLab, opts: dict[str, Any]) -> dict[str, Any]:
    """Run ECHO_PEER in h2 with `opts`; its JSON result."""
    argv = ["ip", "netns", "exec", lab.ns("h2"), sys.executable, "-c", ECHO_PEER, json.dumps(opts)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ping_frame(dst: bytes, src: bytes, seq: int, payload: bytes) -> bytes:
    return native.build_frame(dst, src, DEFAULT_ETHERTYPE, FrameType.PING, 0, 0, seq, payload)


def pong_frame(ping: bytes) -> bytes:
    """What the responder must send for `ping` (PROTOCOL.md §PING, PONG)."""
    info = native.parse_frame(ping)
    payload = ping[38 : 38 + info.payload_len]
    return native.build_frame(
        info.src, info.dst, DEFAULT_ETHERTYPE, FrameType.PONG, 0, 0, info.seq, payload
    )


def pongs(result: dict[str, Any]) -> list[bytes]:
    frames = [bytes.fromhex(f) for f in result["back"]]
    return [f for f in frames if len(f) > 17 and f[17] == FrameType.PONG]


def start_h1(lab: NodeLab, *extra: str) -> None:
    lab.start_daemon("h1", *extra)
    lab.wait_ready("h1")


@pytest.fixture
def echo_lab(labs: LabFactory, tmp_path: Path) -> Iterator[NodeLab]:
    """Two hosts on a bridge; nothing started (each test starts the daemon it needs)."""
    lab = NodeLab(labs.up(hosts=2), tmp_path)
    try:
        yield lab
    finally:
        try:
            lab.stop_all()
        finally:
            netns.down(lab.record.name)


def test_pong_is_byte_for_byte_and_one_per_ping(echo_lab: NodeLab) -> None:
    lab = echo_lab
    start_h1(lab)
    daemon, peer = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    sizes = [12, 56, 200, 1000, 1500 - 24]
    pings = [
        ping_frame(daemon, peer, 1000 + i, bytes((i * 7 + k) & 0xFF for k in range(size)))
        for i, size in enumerate(sizes * 6)
    ]
    result = peer_run(
        lab, {"daemon": daemon.hex(), "frames": [p.hex() for p in pings], "gap_s": 0.002}
    )
    assert result["sent"] == len(pings)
    got = sorted(pongs(result))
    assert got == sorted(pong_frame(p) for p in pings)  # each once, byte for byte
    status = lab.status("h1")
    assert status["ping_responder"]["thread"] == "c"
    assert status["ping_responder"]["answered"] == len(pings)
    assert status["counters"]["frames_out"] >= len(pings)
    assert status["counters"]["frames_in"] >= len(pings)
    assert "answered by a C thread" in lab.log_tail("h1", 100)


def test_hostile_frames_get_no_reply_and_are_counted(echo_lab: NodeLab) -> None:
    lab = echo_lab
    start_h1(lab)
    daemon, peer = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    good = ping_frame(daemon, peer, 1, bytes(56))
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x40
    claims_more = bytearray(ping_frame(daemon, peer, 2, bytes(200)))[:100]  # length 200, has 62
    hostile = {
        "bad_crc": bytes(bad_crc),
        "bad_length": bytes(claims_more),
        "bad_source": ping_frame(daemon, b"\x03\x00\x00\x00\x00\x09", 3, bytes(56)),
        "not_for_us": ping_frame(b"\xff" * 6, peer, 4, bytes(56)),  # the loop's, not C's
        "bad_payload": ping_frame(daemon, peer, 5, bytes(11)),
        "short": good[:30],
    }
    before = lab.status("h1")["drops"]
    result = peer_run(
        lab, {"daemon": daemon.hex(), "frames": [f.hex() for f in hostile.values()], "gap_s": 0.002}
    )
    assert pongs(result) == []
    after = lab.status("h1")["drops"]
    for reason in hostile:
        assert after[reason] - before.get(reason, 0) >= 1, (reason, before, after)
    status = lab.status("h1")
    assert status["ping_responder"]["answered"] == 0


def test_flood_from_random_macs_is_rate_limited_and_counted(echo_lab: NodeLab) -> None:
    lab = echo_lab
    start_h1(lab)
    daemon = mac_bytes(lab.mac("h1"))
    flood = 20_000
    result = peer_run(lab, {"daemon": daemon.hex(), "flood": flood, "seed": 6, "collect_s": 1.0})
    assert result["sent"] == flood
    cfg = NodeConfig()
    cap = cfg.pong_burst_global + cfg.pong_rate_global * (result["send_s"] + 0.5) + 1
    got = len(pongs(result))

    # Frames the veth backlog drops on the way never reach any socket: count what arrived,
    # once the daemon's totals stop moving.
    seen: list[int] = []

    def settled() -> bool:
        seen.append(lab.status("h1")["counters"]["frames_in"])
        return len(seen) > 1 and seen[-1] == seen[-2]

    assert wait_until(settled, 10.0, interval=0.3)
    status = lab.status("h1")
    responder = status["ping_responder"]
    arrived = status["counters"]["frames_in"]
    print(f"flood: {result['send_s']:.3f} s, {got} PONGs seen, {responder}, {status['counters']}")
    assert arrived >= flood // 2, status
    # Every PING that arrived was answered or refused, nothing else (and counted once).
    assert responder["answered"] + responder["rate_limited"] == arrived, status
    assert responder["answered"] <= cap and got <= responder["answered"]
    assert responder["rate_limited"] > 0
    assert status["drops"]["rate_limited"] >= responder["rate_limited"]
    assert responder["peers_evicted"] > 0  # the per-peer table stayed bounded
    # The daemon still serves: a real ping from h2 gets through after the flood.
    summary = lab.json("h2", "ping", lab.mac("h1"), "-c", "3", "-i", "0.05")
    assert summary["received"] == 3


def test_daemon_stops_cleanly_with_the_responder(echo_lab: NodeLab) -> None:
    lab = echo_lab
    start_h1(lab)
    assert lab.status("h1")["ping_responder"]["thread"] == "c"
    assert lab.stop_daemon("h1") == 0


def test_fallback_answers_in_the_event_loop(
    echo_lab: NodeLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = echo_lab
    monkeypatch.setenv("L2FAST_ECHO", "python")
    start_h1(lab)
    daemon, peer = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    pings = [ping_frame(daemon, peer, 50 + i, bytes(range(56))) for i in range(20)]
    result = peer_run(
        lab, {"daemon": daemon.hex(), "frames": [p.hex() for p in pings], "gap_s": 0.002}
    )
    assert sorted(pongs(result)) == sorted(pong_frame(p) for p in pings)
    status = lab.status("h1")
    assert status["ping_responder"] == {
        "thread": "event_loop",
        "answered": 0,
        "rate_limited": 0,
        "peers_evicted": 0,
    }
    assert "answered in the event loop (L2FAST_ECHO=python)" in lab.log_tail("h1", 100)


def test_forked_transfer_workers_leave_the_responder_alone(
    echo_lab: NodeLab, tmp_path: Path
) -> None:
    """A file received by h1's daemon forks its receive and writer processes (which inherit
    the responder's descriptors); afterwards the responder still answers, exactly once."""
    lab = echo_lab
    rx = tmp_path / "rx"
    rx.mkdir()
    start_h1(lab, "--accept", "all", "--recv-dir", str(rx))
    src = tmp_path / "payload.bin"
    src.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    sent = lab.cli("h2", "send", "h1", str(src), "--json", timeout=60)
    assert sent.returncode == 0, sent.stderr + lab.log_tail("h1")
    assert wait_until(lambda: (rx / "payload.bin").exists(), 10.0)
    assert (rx / "payload.bin").read_bytes() == src.read_bytes()
    daemon, peer = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    pings = [ping_frame(daemon, peer, 900 + i, bytes(range(100))) for i in range(10)]
    result = peer_run(
        lab, {"daemon": daemon.hex(), "frames": [p.hex() for p in pings], "gap_s": 0.002}
    )
    assert sorted(pongs(result)) == sorted(pong_frame(p) for p in pings)
    assert lab.status("h1")["ping_responder"]["thread"] == "c"
    assert lab.stop_daemon("h1") == 0


# Runs in h1: two control sockets (keyed on session 7, one of them with the echo exclusion, one
# with CONTROL's drop-all-bulk and the exclusion) beside a running responder; reports what each
# saw and what the responder counted.
SPLIT_RECEIVER = r"""
import json, time
from l2fast import native
from l2fast.native.echo import EchoConfig, EchoResponder
from l2fast.native import SocketFilter as F
socks = {name: native.RawSocket.open("eth0") for name in ("plain", "echo_keyed", "echo_all")}
socks["plain"].set_control_filter({7})
socks["echo_keyed"].echo_mac = socks["echo_keyed"].mac
socks["echo_keyed"].set_control_filter({7})
socks["echo_all"].echo_mac = socks["echo_all"].mac
socks["echo_all"].set_filter(F.CONTROL)
for s in socks.values():
    while s.recv_frames(0, 64):
        pass  # frames queued before the filter
mac = socks["plain"].mac
responder = EchoResponder(EchoConfig(mac=mac, mtu=socks["plain"].mtu))
responder.start("eth0")
print("ready", flush=True)
seen = {k: [] for k in socks}
deadline = time.monotonic() + 2.0
while time.monotonic() < deadline:
    for k, s in socks.items():
        for f in s.recv_frames(0, 64):
            seen[k].append(f.hex())
    time.sleep(0.01)
c = responder.counters()
responder.close()
print(json.dumps({"seen": seen, "rx": c.rx, "answered": c.answered}), flush=True)
"""


def test_control_filter_and_responder_split_the_frames(echo_lab: NodeLab) -> None:
    """Every frame reaches exactly one of the control socket (with the echo exclusion) and the
    responder: the PINGs the responder takes are exactly those the control socket drops."""
    lab = echo_lab
    h1, h2 = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    rx = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("h1"), sys.executable, "-c", SPLIT_RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "ready"
        good_ping = ping_frame(h1, h2, 1, bytes(56))
        bad_crc_ping = bytearray(ping_frame(h1, h2, 2, bytes(56)))
        bad_crc_ping[-1] ^= 1
        other = native.build_frame
        frames = {
            "ping": good_ping,
            "ping_bad_crc": bytes(bad_crc_ping),  # the responder's to count
            "ping_broadcast": ping_frame(b"\xff" * 6, h2, 3, bytes(56)),
            "ping_other_dst": ping_frame(b"\x02" + bytes(5), h2, 4, bytes(56)),
            "ping_short": good_ping[:30],
            "pong": other(h1, h2, DEFAULT_ETHERTYPE, FrameType.PONG, 0, 0, 5, bytes(12)),
            "chat": other(h1, h2, DEFAULT_ETHERTYPE, FrameType.CHAT, 0, 9, 6, bytes(16)),
            "data_7": other(h1, h2, DEFAULT_ETHERTYPE, FrameType.DATA, 0, 7, 7, bytes(16)),
            "data_8": other(h1, h2, DEFAULT_ETHERTYPE, FrameType.DATA, 0, 8, 8, bytes(16)),
        }
        peer_run(
            lab,
            {
                "daemon": h1.hex(),
                "frames": [f.hex() for f in frames.values()],
                "gap_s": 0.001,
                "collect_s": 0.1,
            },
        )
        out = json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1])
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    name_of = {f.hex(): name for name, f in frames.items()}

    def names(key: str) -> set[str]:
        return {name_of[f] for f in out["seen"][key] if f in name_of}

    taken = {"ping", "ping_bad_crc"}  # PINGs at least a header long, to h1
    assert names("plain") == set(frames) - {"data_7"}
    assert names("echo_keyed") == set(frames) - {"data_7"} - taken
    assert names("echo_all") == set(frames) - {"data_7", "data_8"} - taken
    assert (out["rx"], out["answered"]) == (len(taken), 1)


def test_forked_child_neither_runs_nor_stops_the_responder(echo_lab: NodeLab) -> None:
    """A child forked from a process with a running responder has no responder thread, and
    closing it there (or the fork hook) leaves the parent's thread running and answering."""
    script = r"""
import json, os, time
from l2fast import native
from l2fast.native.echo import EchoConfig, EchoResponder
info = native.interface_info("eth0")
r = EchoResponder(EchoConfig(mac=info.mac, mtu=info.mtu))
r.start("eth0")
pid = os.fork()
if pid == 0:
    # The fork hook already dropped the child's copies; an explicit close must be harmless.
    ok = not r.running and r._echo is None
    r.close()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
time.sleep(0.1)
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "running": r.running}), flush=True)
time.sleep(1.5)  # the peer pings now
c = r.counters()
t = time.monotonic()
r.close()
print(json.dumps({"answered": c.answered, "stop_s": time.monotonic() - t}), flush=True)
"""
    lab = echo_lab
    h1, h2 = mac_bytes(lab.mac("h1")), mac_bytes(lab.mac("h2"))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("h1"), sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first == {"child": 0, "running": True}
        pings = [ping_frame(h1, h2, 700 + i, bytes(range(20))) for i in range(5)]
        result = peer_run(
            lab, {"daemon": h1.hex(), "frames": [p.hex() for p in pings], "gap_s": 0.002}
        )
        assert sorted(pongs(result)) == sorted(pong_frame(p) for p in pings)
        last = json.loads(proc.communicate(timeout=30)[0].strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert last["answered"] == 5
    assert last["stop_s"] < 1.0
