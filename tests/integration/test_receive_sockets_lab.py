"""The receive pool (`l2fast.transfer.receive_sockets.ReceiveSockets`) across a real veth: lent
sockets get their session's DATA and nothing else; a second borrower of a session and one past
the pool's size get None (they open their own sockets); a socket given back stays routed to its
session until that session borrows it again, another session takes it over, or the session
ends, and comes out drained every time; a process that outlives its kill parks its socket,
unrouted; PINGs follow the responder in and out of the group."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from stepped import REPO, run_in_steps

from l2fast.lab.state import host_mac, host_ns
from l2fast.transfer.receive_sockets import POOL_SIZE

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root

RECEIVER = r"""
import json, sys, time
from l2fast import native
from l2fast.errors import L2fastError
from l2fast.transfer.receive_sockets import ReceiveSockets
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
control = native.RawSocket.open("eth0")
pool = ReceiveSockets(control, size=2)
out = {}

class Process:  # stands in for a receive process that outlives its kill
    alive = True
    def is_alive(self):
        return self.alive

def frames(sock):
    return [[i.type, i.session] for i in map(native.parse_frame, sock.recv_frames(0, 64))]

def step(name, socks):
    # Frames sent before this step are gone; tell the sender to go and collect for a while.
    print(name, flush=True)
    sys.stdin.readline()
    time.sleep(0.5)
    out[name] = {k: frames(s) for k, s in socks.items()}

a = pool.lend(7)
# Routed, a lent socket keeps no filter of its own: the group's program alone feeds it.
out["filter_lent"] = a.sock.filter_length()
out["lend"] = [a.member if a else None, pool.lend(7), None]
b = pool.lend(8)
out["lend"][2] = b.member if b else None
out["past_size"] = pool.lend(9)
out["status_lent"] = pool.status()
step("lent", {"control": control, "a": a.sock, "b": b.sock})
# Given back, a's socket stays routed to session 7 (reserved for its next file): 7's DATA
# queues there, unread.
a.give_back()
a.give_back()  # twice does nothing
out["status_reserved"] = pool.status()
step("reserved", {"control": control, "b": b.sock})
# Session 10 needs a socket and none is free: the reserved one is taken over, its queue of
# session 7's frames discarded.
c = pool.lend(10)
out["loan"] = [c.member, frames(c.sock), pool.status()["idle_frames"]]
step("taken_over", {"control": control, "c": c.sock, "b": b.sock})
# c back, reserved for 10; 10's DATA queues; the next loan for 10 gets the same socket,
# drained, with no route change.
c.give_back()
step("kept", {"control": control, "b": b.sock})
d = pool.lend(10)
status = pool.status()
out["relend"] = [d.member, frames(d.sock), status["reused"], status["idle_frames"]]
# The session ends while lent: freed when it comes back; its DATA goes to member 0 again.
pool.release_session(10)
d.give_back()
out["filter_released"] = d.sock.filter_length()  # idle again: a filter that takes nothing
out["status_released"] = pool.status()
step("released", {"control": control, "d": d.sock, "b": b.sock})
# A process that outlives its kill: its socket is unrouted at once and parked until it is gone.
stuck = Process()
e = pool.lend(11)
e.give_back(stuck)
out["park"] = [e.member, pool.status()["parked"], pool.status()["lent"]]
step("parked", {"control": control, "e": e.sock})
stuck.alive = False
out["unparked"] = pool.status()["parked"]
echo = native.RawSocket.open("eth0")
pool.add_echo(echo.fanout_join, mac)
step("echo", {"control": control, "echo": echo})
pool.remove_echo()
step("no_echo", {"control": control, "echo": echo})
echo.close()
try:  # a second responder's number is not known (forked children may hold the first)
    pool.add_echo(native.RawSocket.open("eth0").fanout_join, mac)
    out["second_echo"] = "joined"
except L2fastError:
    out["second_echo"] = "refused"
b.give_back()
out["status_end"] = pool.status()
pool.close()
# A responder that joins a group whose program then cannot be installed: add_echo says so
# (the daemon then stops it and answers PINGs in its loop), and PINGs go to member 0.
control2 = native.RawSocket.open("eth0")
pool2 = ReceiveSockets(control2, size=1)
echo2 = native.RawSocket.open("eth0")
def refuse(*args, **kwargs):
    raise L2fastError("refused")
real = control2.fanout_route
control2.fanout_route = refuse
out["unrouted_result"] = [
    pool2.add_echo(echo2.fanout_join, mac), pool2.status()["ping_responder_member"]]
control2.fanout_route = real
step("unrouted", {"control": control2, "echo": echo2})
print(json.dumps(out), flush=True)
"""

SENDER = r"""
import sys
from l2fast import native
from l2fast.wire.constants import FrameType as T
s = native.RawSocket.open("eth0")
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
frames = [native.build_frame(dst, s.mac, 0x88B5, T.DATA, 0, sess, 1, b"x" * 16)
          for sess in (7, 8, 9, 10, 11)]
frames += [native.build_frame(dst, s.mac, 0x88B5, T.CHAT, 0, 7, 1, b"hi"),
           native.build_frame(dst, s.mac, 0x88B5, T.PING, 0, 0, 1, b"\0" * 12)]
s.send_frames(frames)
"""

STEPS = ("lent", "reserved", "taken_over", "kept", "released", "parked", "echo", "no_echo",
         "unrouted")  # fmt: skip
DATA, CHAT, PING = 0x20, 0x30, 0x38


def test_the_pool_lends_keeps_drains_and_reuses(labs: LabFactory) -> None:
    lab = labs.up(hosts=2)
    ns1, ns2 = host_ns(lab.name, 1), host_ns(lab.name, 2)
    out = run_in_steps(ns2, ns1, RECEIVER, SENDER, host_mac(2), STEPS)
    others = [(DATA, 9), (DATA, 11), (CHAT, 7), (PING, 0)]

    def kinds(frames: list[list[int]]) -> list[tuple[int, ...]]:
        return sorted(map(tuple, frames))

    # Members 1 and 2 lent; a second borrower of session 7 and a third session get None.
    assert out["lend"] == [1, None, 2]
    assert out["past_size"] is None
    assert out["status_lent"]["lent"] == 2 and out["status_lent"]["unpooled"] == 2
    lent = out["lent"]
    # Unfiltered, each lent socket still gets only its session's DATA (not 7's CHAT).
    assert out["filter_lent"] == 0 and out["filter_released"] > 0
    assert lent["a"] == [[DATA, 7]] and lent["b"] == [[DATA, 8]]
    assert kinds(lent["control"]) == sorted([(DATA, 10), *others])
    # Given back, the socket stays routed to 7: 7's DATA does not reach member 0.
    assert out["status_reserved"]["lent"] == 1 and out["status_reserved"]["reserved"] == 1
    assert kinds(out["reserved"]["control"]) == sorted([(DATA, 10), *others])
    # Taken over for 10 (lowest-used reserved first), empty: 7's queued DATA went with it,
    # counted (`between_files` in the daemon's drops); nothing was counted before it.
    assert out["status_lent"]["idle_frames"] == 0
    assert out["status_reserved"]["idle_frames"] == 0
    assert out["loan"] == [1, [], 1]
    taken = out["taken_over"]
    assert taken["c"] == [[DATA, 10]] and taken["b"] == [[DATA, 8]]
    assert kinds(taken["control"]) == sorted([(DATA, 7), *others])
    # Kept for 10 and lent again to 10: same socket, drained of what queued meanwhile.
    assert kinds(out["kept"]["control"]) == sorted([(DATA, 7), *others])
    assert out["relend"] == [1, [], 1, 2]  # 10's DATA that queued meanwhile: counted
    # Released: 10's DATA reaches member 0 again.
    assert out["status_released"]["reserved"] == 0 and out["status_released"]["lent"] == 1
    released = out["released"]
    assert released["d"] == [] and released["b"] == [[DATA, 8]]
    assert kinds(released["control"]) == sorted([(DATA, 7), (DATA, 10), *others])
    # Parked while its process lives: unrouted at once (11 reaches member 0), freed after.
    assert out["park"] == [1, 1, 1]  # member 1; 1 parked; 1 lent (b)
    parked = out["parked"]
    assert parked["e"] == []
    assert kinds(parked["control"]) == sorted([(DATA, 7), (DATA, 10), *others])
    assert out["unparked"] == 0
    # The responder joined last: PINGs to this node go to it, and back to member 0 after.
    assert out["echo"]["echo"] == [[PING, 0]]
    assert [PING, 0] not in out["echo"]["control"]
    assert out["no_echo"]["echo"] == [] and [PING, 0] in out["no_echo"]["control"]
    assert out["second_echo"] == "refused"
    assert out["status_end"]["lent"] == 0 and out["status_end"]["lent_total"] == 5
    assert out["status_end"]["idle_frames"] == 2 and out["status_end"]["idle_kernel_drops"] == 0
    # Joined but not routed: reported, and PINGs stay with member 0.
    assert out["unrouted_result"] == [False, None]
    assert out["unrouted"]["echo"] == [] and [PING, 0] in out["unrouted"]["control"]


RUNNER = r"""
import json, random
from l2fast import native
from l2fast.daemon.runner import NodeRunner
from l2fast.errors import L2fastError
from l2fast.node.node import NodeEngine
out = {}
for case in ("routed", "unroutable"):
    sock = native.RawSocket.open("eth0")
    sock.set_filter(native.SocketFilter.CONTROL)
    runner = NodeRunner(sock, NodeEngine(sock.mac, "x", sock.mtu, rng=random.Random(1)))
    assert runner.open_receive_sockets()
    if case == "unroutable":
        real = sock.fanout_route
        def route(routes, echo_member=0, echo_mac=None):
            if echo_member:
                raise L2fastError("refused")
            return real(routes, echo_member, echo_mac)
        sock.fanout_route = route
    started = runner.start_echo_responder()
    out[case] = {
        "started": started,
        "responder": runner.echo is not None,
        "control_drops_pings": sock.echo_mac is not None,
        "member": runner.receive_sockets.status()["ping_responder_member"],
    }
    runner.close()
print(json.dumps(out))
"""


def test_the_runner_answers_pings_itself_when_the_responder_cannot_be_routed(
    labs: LabFactory,
) -> None:
    """The responder joined the group but the program routing PINGs to it could not be
    installed: the runner stops it and its control socket takes PINGs again (the event loop
    answers them), rather than leave them to a filter that drops them."""
    lab = labs.up(hosts=2)
    result = subprocess.run(
        ["ip", "netns", "exec", host_ns(lab.name, 2), sys.executable, "-c", RUNNER],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["routed"] == {
        "started": True, "responder": True, "control_drops_pings": True, "member": POOL_SIZE + 1
    }  # fmt: skip
    assert out["unroutable"] == {
        "started": False, "responder": False, "control_drops_pings": False, "member": None
    }  # fmt: skip


# A reserved socket whose queue overflows while its session is between files: what it held and
# what the kernel dropped there are both counted when it is lent again, and add up to what came.
# The pool's receive buffer is made small (the kernel rounds it up to its minimum) so that a
# burst of 300 frames overflows it.
OVERFLOW_RECEIVER = r"""
import json, sys, time
from l2fast import native
from l2fast.transfer import receive_sockets
receive_sockets.POOL_RCVBUF = 64 << 10
control = native.RawSocket.open("eth0")
pool = receive_sockets.ReceiveSockets(control, size=1)
lent = pool.lend(7)
lent.give_back()  # reserved for session 7's next file
print("burst", flush=True)
sys.stdin.readline()
time.sleep(0.5)  # as step() above: the burst is still arriving
again = pool.lend(7)
status = pool.status()
print(json.dumps({"member": again.member, "idle_frames": status["idle_frames"],
                  "idle_kernel_drops": status["idle_kernel_drops"]}), flush=True)
again.give_back()
pool.close()
"""

OVERFLOW_SENDER = r"""
import sys
from l2fast import native
from l2fast.wire.constants import FrameType as T
s = native.RawSocket.open("eth0")
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
frame = native.build_frame(dst, s.mac, 0x88B5, T.DATA, 0, 7, 1, b"x" * 1400)
sent = 0
while sent < 300:
    sent += s.send_frames([frame] * min(50, 300 - sent))
"""


def test_an_overflowing_reserved_socket_counts_what_it_held_and_dropped(
    labs: LabFactory,
) -> None:
    lab = labs.up(hosts=2)
    ns1, ns2 = host_ns(lab.name, 1), host_ns(lab.name, 2)
    out = run_in_steps(ns2, ns1, OVERFLOW_RECEIVER, OVERFLOW_SENDER, host_mac(2), ("burst",))
    assert out["member"] == 1
    assert out["idle_kernel_drops"] > 0, out  # the burst did overflow the small queue
    assert out["idle_frames"] > 0, out
    assert out["idle_frames"] + out["idle_kernel_drops"] == 300, out
