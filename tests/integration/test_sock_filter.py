"""The classic-BPF socket filters (RawSocket.set_filter, set_control_filter) across a real veth:
h1 sends DATA and FEEDBACK of two sessions and a CHAT frame; five sockets in h2 each see only
their share."""

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
from l2fast.native import SocketFilter as F
socks = {}
for name, mode in (("none", F.NONE), ("control", F.CONTROL), ("data", F.DATA),
                   ("feedback", F.FEEDBACK)):
    s = native.RawSocket.open("eth0")
    s.set_filter(mode, 7)
    while s.recv_frames(0, 64):
        pass  # frames queued before the filter
    socks[name] = s
keyed = native.RawSocket.open("eth0")
keyed.set_control_filter({7, 0xFFFFFFFF})  # session 7 carries a transfer here, 8 does not
while keyed.recv_frames(0, 64):
    pass
socks["keyed"] = keyed
print("ready", flush=True)
seen = {k: [] for k in socks}
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    for k, s in socks.items():
        for f in s.recv_frames(0, 64):
            info = native.parse_frame(f)
            seen[k].append([info.type, info.session])
    time.sleep(0.01)
print(json.dumps(seen), flush=True)
"""

SENDER = r"""
import sys
from l2fast import native
from l2fast.wire.constants import FrameType as T
s = native.RawSocket.open("eth0")
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
frames = [native.build_frame(dst, s.mac, 0x88B5, t, 0, sess, 1, b"x" * 16)
          for t, sess in ((T.DATA, 7), (T.DATA, 8), (T.FEEDBACK, 7), (T.FEEDBACK, 8),
                          (T.CHAT, 7))]
eth = dst + s.mac + b"\x88\xb5"
# Hostile frames must reach the control socket to be counted: one too short to hold a header,
# and one without the magic whose "type" byte says DATA.
frames += [eth + b"\x01\x02", eth + b"\x00\x00\x01\x20" + b"\x00" * 30]
s.send_frames(frames)
"""


def test_filters_split_the_frames(labs: LabFactory) -> None:
    lab = labs.up(hosts=2)
    ns1, ns2 = host_ns(lab.name, 1), host_ns(lab.name, 2)
    rx = subprocess.Popen(
        ["ip", "netns", "exec", ns2, sys.executable, "-c", RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "ready"
        subprocess.run(
            ["ip", "netns", "exec", ns1, sys.executable, "-c", SENDER, host_mac(2)],
            check=True,
            cwd=REPO,
            timeout=30,
        )
        seen = json.loads(rx.stdout.readline())
    finally:
        rx.kill()
        rx.wait(10)
        if rx.stdout is not None:
            rx.stdout.close()
    data, feedback, chat = 0x20, 0x21, 0x30
    assert sorted(map(tuple, seen["none"])) == sorted(
        [(data, 7), (data, 8), (feedback, 7), (feedback, 8), (chat, 7), (0, 0), (0, 0)]
    )
    # The short and the magic-less frame are not dropped by the filter: the parser counts them
    # (their verdicts, SHORT and BAD_MAGIC, fill no header fields, hence (0, 0)).
    assert [tuple(x) for x in seen["control"]] == [(chat, 7), (0, 0), (0, 0)]
    assert [tuple(x) for x in seen["data"]] == [(data, 7)]
    assert [tuple(x) for x in seen["feedback"]] == [(feedback, 7)]
    # Keyed on session 7: only 7's DATA and FEEDBACK stay in the kernel; session 8's, which no
    # data socket takes, reach the controller to be counted.
    assert [tuple(x) for x in seen["keyed"]] == [
        (data, 8),
        (feedback, 8),
        (chat, 7),
        (0, 0),
        (0, 0),
    ]
