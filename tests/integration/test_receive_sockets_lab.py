"""The receive pool (`l2fast.transfer.receive_sockets.ReceiveSockets`) across a real veth: lent
sockets get their session's DATA and nothing else, a second borrower of a session and one past
the pool's size get None (they open their own sockets), a socket given back comes out drained
for its next session, and PINGs follow the responder in and out of the group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from l2fast.lab.state import host_mac, host_ns

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]

RECEIVER = r"""
import json, sys, time
from l2fast import native
from l2fast.errors import L2fastError
from l2fast.transfer.receive_sockets import ReceiveSockets
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
control = native.RawSocket.open("eth0")
pool = ReceiveSockets(control, size=2)
out = {}

def frames(sock):
    return [[i.type, i.session] for i in map(native.parse_frame, sock.recv_frames(0, 64))]

def step(name, socks):
    # Frames sent before this step are gone; tell the sender to go and collect for a while.
    print(name, flush=True)
    sys.stdin.readline()
    time.sleep(0.5)
    out[name] = {k: frames(s) for k, s in socks.items()}

a = pool.lend(7)
out["lend"] = [a.member if a else None, pool.lend(7), None]
b = pool.lend(8)
out["lend"][2] = b.member if b else None
out["past_size"] = pool.lend(9)
out["status_lent"] = pool.status()
step("lent", {"control": control, "a": a.sock, "b": b.sock})
# DATA of 7 is queued on a's socket again (left unread); giving it back must discard it.
step("queued", {"control": control, "b": b.sock})
a.give_back()
a.give_back()  # twice does nothing
c = pool.lend(10)
out["loan"] = [c.member, frames(c.sock)]
step("reused", {"control": control, "c": c.sock, "b": b.sock})
echo = native.RawSocket.open("eth0")
pool.add_echo(echo.fanout_join, mac)
step("echo", {"control": control, "echo": echo})
pool.remove_echo()
step("no_echo", {"control": control, "echo": echo})
echo.close()  # the responder stopped: its socket, the last member, left
# A new responder joins, but its route cannot be installed: add_echo says so (the daemon then
# stops it), and PINGs keep going to member 0.
echo2 = native.RawSocket.open("eth0")
def refuse(*args, **kwargs):
    raise L2fastError("refused")
real = control.fanout_route
control.fanout_route = refuse
out["unrouted"] = [pool.add_echo(echo2.fanout_join, mac), pool.status()["ping_responder_member"]]
control.fanout_route = real
echo2.close()
c.give_back(); b.give_back()
out["status_end"] = pool.status()
pool.close()
print(json.dumps(out), flush=True)
"""

SENDER = r"""
import sys
from l2fast import native
from l2fast.wire.constants import FrameType as T
s = native.RawSocket.open("eth0")
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
frames = [native.build_frame(dst, s.mac, 0x88B5, T.DATA, 0, sess, 1, b"x" * 16)
          for sess in (7, 8, 9, 10)]
frames += [native.build_frame(dst, s.mac, 0x88B5, T.CHAT, 0, 7, 1, b"hi"),
           native.build_frame(dst, s.mac, 0x88B5, T.PING, 0, 0, 1, b"\0" * 12)]
s.send_frames(frames)
"""

DATA, CHAT, PING = 0x20, 0x30, 0x38


def test_the_pool_lends_routes_drains_and_reuses(labs: LabFactory) -> None:
    lab = labs.up(hosts=2)
    ns1, ns2 = host_ns(lab.name, 1), host_ns(lab.name, 2)
    rx = subprocess.Popen(
        ["ip", "netns", "exec", ns2, sys.executable, "-c", RECEIVER, host_mac(2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert rx.stdout is not None and rx.stdin is not None
        for step in ("lent", "queued", "reused", "echo", "no_echo"):
            assert rx.stdout.readline().strip() == step
            subprocess.run(
                ["ip", "netns", "exec", ns1, sys.executable, "-c", SENDER, host_mac(2)],
                check=True,
                cwd=REPO,
                timeout=30,
            )
            rx.stdin.write("go\n")
            rx.stdin.flush()
        out = json.loads(rx.stdout.readline())
        assert rx.wait(30) == 0
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(10)
        for pipe in (rx.stdout, rx.stdin):
            if pipe is not None:
                pipe.close()
    # Members 1 and 2 lent; a second borrower of session 7 and a third session get None.
    assert out["lend"] == [1, None, 2]
    assert out["past_size"] is None
    assert out["status_lent"]["lent"] == 2 and out["status_lent"]["unpooled"] == 2
    lent = out["lent"]
    assert lent["a"] == [[DATA, 7]] and lent["b"] == [[DATA, 8]]
    assert sorted(map(tuple, lent["control"])) == [(DATA, 9), (DATA, 10), (CHAT, 7), (PING, 0)]
    # The given-back socket is lent again (lowest number first), empty: session 7's DATA
    # queued on it went with it. It now takes 10 only; 7 goes to member 0, 8 stays with b.
    assert out["loan"] == [1, []]
    reused = out["reused"]
    assert reused["c"] == [[DATA, 10]] and reused["b"] == [[DATA, 8]]
    assert sorted(map(tuple, reused["control"])) == [(DATA, 7), (DATA, 9), (CHAT, 7), (PING, 0)]
    # The responder joined last: PINGs to this node go to it, and back to member 0 after.
    assert out["echo"]["echo"] == [[PING, 0]]
    assert [PING, 0] not in out["echo"]["control"]
    assert out["no_echo"]["echo"] == [] and [PING, 0] in out["no_echo"]["control"]
    assert out["unrouted"] == [False, None]
    assert out["status_end"]["lent"] == 0 and out["status_end"]["lent_total"] == 3
