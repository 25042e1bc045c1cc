"""The fanout group's demultiplexing program (RawSocket.fanout_create/join/route) across a real
veth: h1 sends DATA, FEEDBACK, CHAT, PINGs and hostile frames; each frame lands on exactly the
member the routes name, everything else on member 0. Then a member leaves, and the kernel moves
the last member into its place (what the receive pool's numbering relies on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from stepped import run_in_steps

from l2fast.lab.state import host_mac, host_ns

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root

RECEIVER = r"""
import json, sys, time
from l2fast import native
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
control = native.RawSocket.open("eth0")
gid = control.fanout_create()
members = [control]
for _ in range(3):
    m = native.RawSocket.open("eth0")
    m.fanout_join(gid)
    members.append(m)
names = {id(s): n for s, n in zip(members, ("control", "m1", "m2", "m3"))}

SENT = 9  # frames the sender sends each time
out = {}

def collect(step):
    for s in members:
        while s.recv_frames(0, 64):
            pass
    print(step, flush=True)
    sys.stdin.readline()  # the sender has sent
    seen = {names[id(s)]: [] for s in members}
    # Until every frame landed somewhere (each lands once), then a little longer for any
    # duplicate; bounded for a loaded machine.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for s in members:
            for f in s.recv_frames(0, 64):
                info = native.parse_frame(f)
                seen[names[id(s)]].append([info.type, info.session, f[:6].hex()])
        if sum(map(len, seen.values())) >= SENT:
            deadline = min(deadline, time.monotonic() + 0.3)
        time.sleep(0.01)
    out[step] = seen

# Members: control 0, m1 1, m2 2, m3 3.
control.fanout_route({7: 1, 9: 3}, echo_member=2, echo_mac=mac)
collect("first")
# m1 leaves: the kernel moves the last member (m3) to number 1.
members.pop(1).close()
control.fanout_route({9: 1}, echo_member=2, echo_mac=mac)
collect("second")
print(json.dumps(out), flush=True)
"""

SENDER = r"""
import sys
from l2fast import native
from l2fast.wire.constants import FrameType as T
s = native.RawSocket.open("eth0")
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
other = bytes.fromhex("020000000099")
frames = [native.build_frame(dst, s.mac, 0x88B5, t, 0, sess, 1, b"x" * 16)
          for t, sess in ((T.DATA, 7), (T.DATA, 8), (T.FEEDBACK, 7), (T.FEEDBACK, 9),
                          (T.CHAT, 7))]
ping = b"\x00" * 12
frames += [native.build_frame(dst, s.mac, 0x88B5, T.PING, 0, 0, 1, ping),
           native.build_frame(other, s.mac, 0x88B5, T.PING, 0, 0, 2, ping)]
eth = dst + s.mac + b"\x88\xb5"
frames += [eth + b"\x01\x02", eth + b"\x00\x00\x01\x20" + b"\x00" * 30]
s.send_frames(frames)
"""

DATA, FEEDBACK, CHAT, PING = 0x20, 0x21, 0x30, 0x38


def _kinds(frames: list[list[object]]) -> list[tuple[object, ...]]:
    return sorted(tuple(f) for f in frames)


def test_the_demux_program_hands_each_frame_to_one_member(labs: LabFactory) -> None:
    lab = labs.up(hosts=2)
    ns1, ns2 = host_ns(lab.name, 1), host_ns(lab.name, 2)
    me, other = host_mac(2).replace(":", ""), "020000000099"
    out = run_in_steps(ns2, ns1, RECEIVER, SENDER, host_mac(2), ("first", "second"))
    first, second = out["first"], out["second"]
    # The short and the magic-less frame go to member 0 (their verdicts fill no header fields,
    # hence type 0, session 0), as does a PING for another MAC and any unrouted session.
    hostile = [(0, 0, me), (0, 0, me)]
    assert _kinds(first["control"]) == sorted(
        [(DATA, 8, me), (CHAT, 7, me), (PING, 0, other), *hostile]
    )
    assert _kinds(first["m1"]) == sorted([(DATA, 7, me), (FEEDBACK, 7, me)])
    assert _kinds(first["m2"]) == [(PING, 0, me)]
    assert _kinds(first["m3"]) == [(FEEDBACK, 9, me)]
    # After m1 left, m3 is member 1: session 9 reaches it there; session 7 is unrouted now.
    assert _kinds(second["control"]) == sorted(
        [(DATA, 7, me), (DATA, 8, me), (FEEDBACK, 7, me), (CHAT, 7, me), (PING, 0, other),
         *hostile]
    )  # fmt: skip
    assert _kinds(second["m3"]) == [(FEEDBACK, 9, me)]
    assert _kinds(second["m2"]) == [(PING, 0, me)]
