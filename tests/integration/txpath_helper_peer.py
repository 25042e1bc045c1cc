"""Run inside a namespace holding a veth pair va <-> vb: sends chunks with TxPath on va, with and
without the CRC helper thread, and reports what vb received, as JSON on stdout.

    python txpath_helper_peer.py SCENARIO

Scenarios (each prints one JSON object):
- `same`: the same ranges (several windows, out of order, a stop mid-window, RETRANSMIT) sent
  without and with the helper: the received frames must be byte-identical;
- `fork`: a child forked after the parent used the helper sends with it too;
- `backpressure`: va has a small tbf qdisc (set up by the test) and the socket does not bypass
  it, so sendmmsg fills the queue; the sender resumes from whatever count each call returns
  until every chunk has gone: each chunk must arrive exactly once, in order, intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time

from l2fast import native
from l2fast.native import datapath as dp
from l2fast.wire.constants import Verdict

CHUNK = 1400
SESSION = 0x7C2C
DATA = random.Random(7).randbytes(CHUNK * 3000 - 123)  # 3000 chunks, the last one short
NCHUNKS = -(-len(DATA) // CHUNK)


def drain(rx: native.RawSocket, quiet_s: float = 0.3, limit_s: float = 20.0) -> list[bytes]:
    """Every frame vb receives until it has been quiet for `quiet_s` (bounded by `limit_s`)."""
    frames: list[bytes] = []
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        got = rx.recv_frames(int(quiet_s * 1000), 256)
        if not got:
            break
        frames.extend(got)
    return frames


def tx_path(tx: native.RawSocket, rx: native.RawSocket, helper: bool) -> dp.TxPath:
    return dp.TxPath(
        tx,
        tx.ifindex,
        dst=rx.mac,
        src=tx.mac,
        session=SESSION,
        data=DATA,
        chunk_size=CHUNK,
        mark_last=True,
        crc_helper=helper,
    )


def digest(frames: list[bytes]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(len(f).to_bytes(4, "big") + f)
    return h.hexdigest()


def check(frames: list[bytes]) -> tuple[list[int], int]:
    """The seq numbers of the frames, and how many failed verification."""
    seqs, bad = [], 0
    for f in frames:
        info = native.parse_frame(f)
        if info.verdict is not Verdict.OK or info.session != SESSION:
            bad += 1
        else:
            seqs.append(info.seq)
    return seqs, bad


CASES: list[tuple[list[tuple[int, int]], int, bool]] = [
    ([(0, NCHUNKS)], 1 << 30, False),  # six windows, the last chunk short and flagged LAST
    ([(100, 300), (0, 50), (2000, NCHUNKS)], 1 << 30, False),
    ([(0, NCHUNKS)], 777, False),  # stops in the middle of a window and of a group
    ([(5, 6), (9, 700)], 1 << 30, True),  # retransmissions
]


def same() -> dict[str, object]:
    out: dict[str, object] = {"cases": []}
    with native.RawSocket.open("va") as tx, native.RawSocket.open("vb") as rx:
        helper_frames = 0
        for ranges, max_frames, retransmit in CASES:
            results = []
            for helper in (False, True):
                path = tx_path(tx, rx, helper)
                took = path.send(ranges, max_frames, retransmit=retransmit)
                frames = drain(rx)
                seqs, bad = check(frames)
                results.append((took, digest(frames), seqs, bad))
                helper_frames += path.stats().helper_frames
            (t0, d0, s0, b0), (t1, d1, s1, b1) = results
            expect = [c for s, e in ranges for c in range(s, e)][:max_frames]
            out["cases"].append(  # type: ignore[union-attr]
                {
                    "took": [t0, t1],
                    "identical": d0 == d1,
                    "in_order": s0 == expect and s1 == expect,
                    "bad": b0 + b1,
                }
            )
        out["helper_frames"] = helper_frames
    out["helper_policy"] = helper_policy()
    return out


def helper_policy() -> int | None:
    """The scheduling policy of this process's CRC helper thread (l2f-txcrc), or None."""
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="ascii") as f:
                if f.read().strip() == "l2f-txcrc":
                    return os.sched_getscheduler(int(tid))
        except OSError:
            continue
    return None


def fork() -> dict[str, object]:
    with native.RawSocket.open("va") as tx, native.RawSocket.open("vb") as rx:
        tx_path(tx, rx, True).send([(0, 600)])
        drain(rx)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no helper thread survived the fork; it must start its own
            try:
                path = tx_path(tx, rx, True)
                took = path.send([(0, NCHUNKS)])
                os.write(w, json.dumps([took, path.stats().helper_frames]).encode())
            finally:
                os._exit(0)
        os.close(w)
        frames = drain(rx)
        os.waitpid(pid, 0)
        took, helper_frames = json.loads(os.read(r, 4096))
        seqs, bad = check(frames)
        return {
            "took": took,
            "helper_frames": helper_frames,
            "in_order": seqs == list(range(NCHUNKS)),
            "bad": bad,
        }


def backpressure() -> dict[str, object]:
    with (
        native.RawSocket.open("va", qdisc_bypass=False, sndbuf=1 << 20) as tx,
        native.RawSocket.open("vb") as rx,
    ):
        path = tx_path(tx, rx, True)
        frames: list[bytes] = []
        start, calls, short = 0, 0, 0
        deadline = time.monotonic() + 60
        while start < NCHUNKS and time.monotonic() < deadline:
            took = path.send([(start, NCHUNKS)])
            calls += 1
            if took < NCHUNKS - start:
                short += 1
            start += took
            frames.extend(rx.recv_frames(0, 256))
            if took == 0:
                time.sleep(0.001)
        frames.extend(drain(rx))
        seqs, bad = check(frames)
        stats = path.stats()
        return {
            "sent": start,
            "calls": calls,
            "short_calls": short,
            "backpressure": stats.backpressure,
            "helper_frames": stats.helper_frames,
            "in_order": seqs == list(range(NCHUNKS)),
            "received": len(frames),
            "bad": bad,
        }


if __name__ == "__main__":
    result = {"same": same, "fork": fork, "backpressure": backpressure}[sys.argv[1]]()
    print(json.dumps(result))
