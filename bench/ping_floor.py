"""The round-trip floor for any user-space L2 echo on this machine, next to ICMP ping.

`l2fast ping` crosses two processes per round trip (the responder's daemon wakes up, the
pinger wakes up). This benchmark measures that floor without any l2fast protocol logic: one
Python process sends a raw frame and waits for the answer; another, in the other lab host,
echoes every frame it receives, both through the C core's batched I/O. ICMP ping on the same
veth pair (answered in the kernel's softirq, one wake-up) is measured in the same run.

The same pinger is then answered by the daemon's C echo responder (csrc/echo.c, a thread that
never enters Python), which is the floor `l2fast ping` against a daemon can reach.

Two figures for the raw echo: from the send to the pinger's wake-up with the answer (user
space), and from the send to the kernel's receive stamp of the answer (SO_TIMESTAMPNS), which is
how ping(8) and `l2fast ping` end a round trip: the responder's wake-up is in both, the
pinger's only in the first.

    sudo .venv/bin/python bench/ping_floor.py [--count 200] [--mtu 1500]

Prints one JSON object: the median and minimum RTT of both, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from l2fast.lab import netns  # noqa: E402
from l2fast.lab.state import LabSpec, host_mac  # noqa: E402

ECHO = r"""
import sys, time
from l2fast import native
peer = bytes.fromhex(sys.argv[1].replace(":", ""))
with native.RawSocket.open("eth0") as s:
    arena = native.RxArena(8, s.mtu + 64)
    reply = native.build_frame(peer, s.mac, 0x88B5, 0x39, 0, 0, 1, b"x" * 56)
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        if s.recv_batch(arena, 100) > 0:
            s.send_frames([reply])
"""

# The daemon's C echo responder (csrc/echo.c) alone: the same PINGs, answered by its thread.
ECHO_C = r"""
import sys, time
from l2fast import native
from l2fast.native.echo import EchoConfig, EchoResponder
info = native.interface_info("eth0")
with EchoResponder(EchoConfig(mac=info.mac, mtu=info.mtu)) as r:
    r.start("eth0")
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""

PING = r"""
import json, sys, time
from l2fast import native
peer = bytes.fromhex(sys.argv[1].replace(":", ""))
count = int(sys.argv[2])
rtts, stamped = [], []
with native.RawSocket.open("eth0") as s:
    s.enable_rx_timestamps()
    arena = native.RxArena(8, s.mtu + 64)
    frame = native.build_frame(peer, s.mac, 0x88B5, 0x38, 0, 0, 1, b"x" * 56)
    for _ in range(count):
        t0 = time.time_ns()
        s.send_frames([frame])
        if s.recv_batch(arena, 1000) > 0:
            rtts.append((time.time_ns() - t0) / 1e3)
            if arena.rx_stamp_ns(0):
                stamped.append((arena.rx_stamp_ns(0) - t0) / 1e3)
        time.sleep(0.01)
print(json.dumps([rtts, stamped]))
"""


def in_ns(ns: str, *argv: str, **kw: object) -> subprocess.Popen[str]:
    """A process inside namespace `ns`, with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True, env=env, **kw)  # type: ignore[call-overload]


def measure_echo(script: str, h1: str, h2: str, count: int) -> tuple[list[float], list[float]]:
    """Round trips (user space, kernel stamped) of PINGs from h1 answered by `script` in h2."""
    echo = in_ns(
        h2,
        sys.executable,
        "-c",
        script,
        host_mac(1),
        str(count * 0.05 + 10),
        stdout=subprocess.PIPE,
    )
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != "ready":
            raise SystemExit("the echo process did not start")
        pinger = in_ns(
            h1, sys.executable, "-c", PING, host_mac(2), str(count), stdout=subprocess.PIPE
        )
        raw, stamped = json.loads(pinger.communicate(timeout=count * 0.05 + 60)[0])
    finally:
        echo.kill()
        echo.wait()
    return raw, stamped


def main() -> int:
    """Build a 2-host lab, measure both echoes, tear the lab down."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="round trips of each kind")
    parser.add_argument("--mtu", type=int, default=1500)
    args = parser.parse_args()
    name = f"pf{os.getpid() % 100000}"
    netns.up(LabSpec(name=name, hosts=2, mtu=args.mtu))
    h1, h2 = f"{name}-h1", f"{name}-h2"
    try:
        raw, stamped = measure_echo(ECHO, h1, h2, args.count)
        c_raw, c_stamped = measure_echo(ECHO_C, h1, h2, args.count)
        for i, ns in ((1, h1), (2, h2)):
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"10.97.0.{i}/24", "dev", "eth0"], check=True
            )
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                h1,
                "ping",
                "-c",
                str(args.count),
                "-i",
                "0.01",
                "-q",
                "10.97.0.2",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=args.count * 0.05 + 60,
        ).stdout
        icmp_min, icmp_avg = (
            float(x) * 1000 for x in re.search(r"= ([\d.]+)/([\d.]+)/", out).groups()
        )  # type: ignore[union-attr]
    finally:
        netns.down(name)
    if len(raw) < args.count * 0.9:
        raise SystemExit(f"only {len(raw)} of {args.count} raw echoes came back")
    result = {
        "mtu": args.mtu,
        "count": args.count,
        "python_raw_echo_median_us": round(statistics.median(raw), 1),
        "python_raw_echo_min_us": round(min(raw), 1),
        "python_raw_echo_kernel_stamped_median_us": round(statistics.median(stamped), 1)
        if stamped
        else None,
        "c_responder_median_us": round(statistics.median(c_raw), 1) if c_raw else None,
        "c_responder_kernel_stamped_median_us": round(statistics.median(c_stamped), 1)
        if c_stamped
        else None,
        "icmp_avg_us": round(icmp_avg, 1),
        "icmp_min_us": round(icmp_min, 1),
        "floor_ratio_median_over_icmp_avg": round(statistics.median(raw) / icmp_avg, 2),
        "floor_ratio_kernel_stamped_median_over_icmp_avg": round(
            statistics.median(stamped) / icmp_avg, 2
        )
        if stamped
        else None,
        "c_responder_ratio_kernel_stamped_median_over_icmp_avg": round(
            statistics.median(c_stamped) / icmp_avg, 2
        )
        if c_stamped
        else None,
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
