"""Stray DATA and FEEDBACK across a real kernel: a daemon counts them (`no_transfer` in
`l2fast status --json`) while a transfer into it runs, and the transfer still completes.

The count must be exact up to what the kernel itself dropped (its `kernel_drops`): above the
number injected would mean the transfer's own DATA leaked to the control socket, below it that
frames vanished uncounted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from node_helpers import REPO, NodeLab

from l2fast.lab import netns

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root

SEND_TIMEOUT_S = 120.0

# DATA and FEEDBACK for sessions nobody holds, well formed (magic, CRC): the kernel filter used
# to drop them without a trace. Paced so the daemon's socket never overflows; bounded in count
# and time.
INJECT = r"""
import json, random, sys, time
from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
count = int(sys.argv[2])
rng = random.Random(int(sys.argv[3]))
sent = 0
deadline = time.monotonic() + 30
with native.RawSocket.open("eth0") as s:
    while sent < count and time.monotonic() < deadline:
        batch = []
        for _ in range(min(50, count - sent)):
            kind = FrameType.DATA if rng.random() < 0.7 else FrameType.FEEDBACK
            session = rng.randrange(1, 1 << 32)
            payload = rng.randbytes(rng.randrange(1, 1400))
            batch.append(native.build_frame(dst, s.mac, DEFAULT_ETHERTYPE, kind, 0, session,
                                            rng.randrange(1 << 32), payload))
        sent += s.send_frames(batch)
        time.sleep(0.005)
print(json.dumps({"sent": sent}))
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def test_stray_bulk_frames_are_counted_and_a_transfer_completes(
    labs: LabFactory, tmp_path: Path
) -> None:
    lab = NodeLab(labs.up(hosts=2, mtu=9000), tmp_path)
    try:
        rx = tmp_path / "rx"
        rx.mkdir()
        lab.start_daemon("h2", "--accept", "all", "--recv-dir", str(rx))
        lab.wait_ready("h2")
        before = lab.status("h2")
        assert before["drops"]["no_transfer"] == 0
        src = tmp_path / "payload.bin"
        src.write_bytes(os.urandom(48 << 20))
        # No daemon in h1: the command is the sender, with its own keyed filter.
        argv = ["ip", "netns", "exec", lab.ns("h1"), sys.executable, "-m", "l2fast"]
        sender = subprocess.Popen(
            [*argv, "send", lab.mac("h2"), str(src), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            inject = [sys.executable, "-c", INJECT, lab.mac("h2"), "3000", "7"]
            injector = subprocess.run(
                ["ip", "netns", "exec", lab.ns("h1"), *inject],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
                check=True,
            )
            out, err = sender.communicate(timeout=SEND_TIMEOUT_S)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait(10)
        injected = json.loads(injector.stdout)["sent"]
        assert injected == 3000
        assert sender.returncode == 0, err + lab.log_tail("h2")
        final = json.loads(out.strip().splitlines()[-1])
        assert final["event"] == "done" and final["verified"] is True
        assert sha256(rx / "payload.bin") == sha256(src)
        after = lab.status("h2")
        counted = after["drops"]["no_transfer"]
        kernel_drops = after["counters"]["kernel_drops"]
        assert injected - kernel_drops <= counted <= injected, (counted, kernel_drops)
    finally:
        try:
            lab.stop_all()
        finally:
            netns.down(lab.record.name)
