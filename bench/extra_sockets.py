#!/usr/bin/env python3
"""What other packet sockets bound to l2fast's EtherType cost a bulk receiver, on a veth pair.

A receiving daemon has, besides the socket of a transfer's receive process, its control socket
and its PING responder's socket, all bound to the same EtherType on the same interface. The
kernel hands every arriving frame to each of them in turn (their filters drop what is not
theirs), in the veth receive softirq, which runs on the sending CPU: the bottleneck of a bulk
transfer at MTU 1500. And every socket but the last one offered the frame gets it shared, so
the one that accepts it must clone the skb; the last one offered is the oldest socket.

This measures the raw blast (`python -m l2fast.rawblast`, as compare.py's raw ceiling) into a
counting socket with 0 or 2 extra sockets in the receiving namespace, each filtered as the
daemon's control socket is during a transfer (`set_control_filter` keyed on the blast's
session: its DATA is dropped there), opened either before the counting socket (`older`: the
daemon's case, so the counting socket clones every frame) or after it (`newer`: no clone, only
the extra deliveries), or bound to another EtherType (`other_type`, opened before: what the
layout costs when bulk DATA has an EtherType of its own). The cases run interleaved, `--reps`
times each.

    sudo .venv/bin/python bench/extra_sockets.py [--mtu 1500] [--seconds 3] [--reps 3]

Prints one JSON object: frames/s per case (median, all runs) and the ratio to no extra socket.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compare_hosts import LabHosts, lab, lab_prefix, read_line, run_in, start_in, stop  # noqa: E402

from l2fast.rawblast import BLAST_SESSION  # noqa: E402
from l2fast.wire.constants import DEFAULT_ETHERTYPE  # noqa: E402

EXTRAS = r"""
import sys, time
from l2fast import native
socks = [native.RawSocket.open("eth0", int(sys.argv[4])) for _ in range(int(sys.argv[1]))]
for s in socks:
    s.set_control_filter([int(sys.argv[2])])  # drop the blast, as for a transfer's session
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
"""

CASES = ("none", "older", "newer", "other_type")
#: The EtherType of the `other_type` case's extra sockets: the second IEEE 802 local
#: experimental EtherType, beside l2fast's default 0x88B5.
OTHER_ETHERTYPE = 0x88B6


def start_extras(
    ns: str, n: int, seconds: float, ethertype: int = DEFAULT_ETHERTYPE
) -> subprocess.Popen[str]:
    args = [str(n), str(BLAST_SESSION), str(seconds), str(ethertype)]
    proc = start_in(ns, [sys.executable, "-c", EXTRAS, *args])
    if read_line(proc, 10, f"extra sockets in {ns}").strip() != "ready":
        raise SystemExit("the extra sockets did not open")
    return proc


def one_run(hosts: LabHosts, case: str, seconds: float) -> float:
    """Frames per second the counting socket received in one blast."""
    h1, h2 = hosts.h1, hosts.h2
    extras = None
    if case == "older":
        extras = start_extras(h2, 2, seconds + 15)
    elif case == "other_type":
        extras = start_extras(h2, 2, seconds + 15, OTHER_ETHERTYPE)
    rx = start_in(h2, [sys.executable, "-m", "l2fast.rawblast", "rx", "--wait", "10"])
    try:
        if json.loads(read_line(rx, 10, f"blast receiver in {h2}")) != {"ready": True}:
            raise SystemExit("the blast receiver did not start")
        if case == "newer":
            extras = start_extras(h2, 2, seconds + 15)
        tx = [sys.executable, "-m", "l2fast.rawblast", "tx", "--dst", hosts.mac2]
        run_in(h1, [*tx, "--seconds", str(seconds)], timeout=seconds + 30)
        out, _ = rx.communicate(timeout=30)
        got = json.loads(out.strip().splitlines()[-1])
        if not got["frames"]:
            raise SystemExit(f"nothing arrived ({got})")
        return float(got["frames_per_s"])
    finally:
        for proc in (rx, extras):
            if proc is not None:
                stop(proc)


def main() -> int:
    """Build a 2-host lab, run the cases interleaved, tear the lab down."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one blast")
    parser.add_argument("--reps", type=int, default=3, help="runs of each case")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, raw sockets): run it with sudo")
    runs: dict[str, list[float]] = {c: [] for c in CASES}
    with lab(f"{lab_prefix('xs')}0", args.mtu) as hosts:
        for _ in range(args.reps):
            for case in CASES:
                runs[case].append(one_run(hosts, case, args.seconds))
    base = statistics.median(runs["none"])
    result = {
        "mtu": args.mtu,
        "seconds": args.seconds,
        "frames_per_s_median": {c: round(statistics.median(v)) for c, v in runs.items()},
        "frames_per_s_runs": {c: [round(x) for x in v] for c, v in runs.items()},
        "ratio_to_none": {c: round(statistics.median(v) / base, 3) for c, v in runs.items()},
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
