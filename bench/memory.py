#!/usr/bin/env python3
"""Receiver memory of one large `l2fast send`: issue 5's "resident memory stays <= 256 MiB
across its processes whatever the size", shown with an 8 GiB sparse source.

The source is a sparse file of `--size` bytes (made with truncate: it costs no memory and reads
as zeros), sent once h1 -> h2 at `--mtu` (9000) on a two-host veth lab into a daemon started in
h2 for the run (`--accept all`, a fresh tmpfs `--recv-dir`). While the transfer runs, the
daemon's whole process tree (the daemon, the receive process it forks, that process's writers)
is sampled every 20 ms from /proc (TreeMemory in compare_hosts.py, the sampler compare.py's
scaling run uses):

  peak PSS:       the largest sum of `Pss` (smaps_rollup) over the tree at one moment: its real
                  footprint, a page shared by N processes counted 1/N in each;
  sum of VmHWM:   each process's peak RSS, summed: an upper bound (a forked child starts with
                  its parent's resident pages in its own VmHWM).

The verdict compares both with `--limit` (256 MiB). The copy's size and SHA-256 are checked
against the source's after the transfer (outside the timing), then the copy and the source are
deleted. It needs the copy's size free in --tmpdir (tmpfs: RAM), checked before it starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from compare_hosts import BenchError, TestFile, lab, lab_prefix, teardown
from compare_kinds import RunContext, send_with_l2fast
from compare_report import machine_info
from compare_setup import need_space, parse_size, run_main, say

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCHEMA = "l2fast-bench-memory/1"
GiB = 1 << 30
MiB = 1 << 20
ZEROS = bytes(16 << 20)

EPILOG = """\
examples:
  sudo .venv/bin/python bench/memory.py                       8 GiB sparse source, MTU 9000
  sudo .venv/bin/python bench/memory.py --size 64M            smoke run, a few seconds
  sudo .venv/bin/python bench/memory.py --size 16G --mtu 65535 --limit 256M

Needs root and --size free in --tmpdir (/dev/shm) for the copy (the sparse source takes no
space). Results: bench/results/memory-<UTC time>.json, or --json-out.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of bench/memory.py."""
    parser = argparse.ArgumentParser(
        prog="bench/memory.py",
        description="Send one sparse file of --size with `l2fast send` on a veth lab and "
        "sample the receiving daemon's process tree: peak PSS and the sum of VmHWM against "
        "--limit, the copy's SHA-256 checked. Needs root.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=parse_size, default=8 * GiB, help="default 8G")
    parser.add_argument("--mtu", type=int, default=9000, help="lab MTU (default 9000)")
    parser.add_argument(
        "--limit", type=parse_size, default=256 * MiB, help="the bound to meet (default 256M)"
    )
    parser.add_argument("--json-out", type=Path, help="default bench/results/memory-<time>.json")
    parser.add_argument(
        "--tmpdir", type=Path, default=Path("/dev/shm"), help="tmpfs for the files (/dev/shm)"
    )
    return parser


def zeros_sha256(size: int) -> str:
    """SHA-256 of `size` zero bytes: what a sparse file of that size reads as."""
    hasher = hashlib.sha256()
    left = size
    while left:
        block = memoryview(ZEROS)[: min(left, len(ZEROS))]
        hasher.update(block)
        left -= len(block)
    return hasher.hexdigest()


def mem_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise BenchError("/proc/meminfo has no MemAvailable")


def run(args: argparse.Namespace) -> int:
    """Make the sparse source, send it once under the memory sampler, check, report."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark builds network namespaces, which needs root: use sudo")
    if not 576 <= args.mtu <= 65535:
        raise BenchError("--mtu must lie in 576..65535")
    # The copy is written for real (zeros too take pages in tmpfs): room for it, and RAM.
    need_space(args.tmpdir, args.size)
    if mem_available() < args.size + GiB:
        raise BenchError(
            f"only {mem_available() >> 20} MiB of memory available, the copy in tmpfs needs "
            f"{(args.size + GiB) >> 20} MiB: use a smaller --size"
        )
    json_path: Path = args.json_out or RESULTS / time.strftime(
        "memory-%Y%m%d-%H%M%S.json", time.gmtime()
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info(shlex.join(sys.orig_argv))
    machine["pid"] = os.getpid()  # names its lab (mem<pid>_l): a test checks it is gone
    workdir = args.tmpdir / f"l2fast-memory-{os.getpid()}"
    prefix = lab_prefix("mem")
    workdir.mkdir(mode=0o700)
    try:
        source = workdir / "sparse.bin"
        with open(source, "wb") as f:
            f.truncate(args.size)
        allocated = os.stat(source).st_blocks * 512
        say(f"sparse source {source}: {args.size >> 20} MiB, {allocated >> 20} MiB allocated")
        say("SHA-256 of the source (zeros)")
        file = TestFile(source, args.size, zeros_sha256(args.size))
        with lab(f"{prefix}l", args.mtu) as hosts:
            ctx = RunContext(hosts, 0.0, file, 1, 0.01, 0)
            say(f"sending {args.size >> 20} MiB at MTU {args.mtu}")
            sample = send_with_l2fast(ctx, file, check_digest=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        left = teardown(prefix, say)
    if left:
        raise BenchError(f"lab namespaces were left behind: {', '.join(left)}")
    d = sample.detail
    if not d["receiver_peak_pss_kib"] or not d["receiver_peak_rss_kib"] or d["memory_samples"] < 2:
        raise BenchError(f"the receiver's memory was not sampled ({d})")
    limit_kib = args.limit // 1024
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "ok",
        "machine": machine,
        "settings": {
            "size": args.size,
            "mtu": args.mtu,
            "limit_bytes": args.limit,
            "source": "sparse file (truncate), reads as zeros",
            "sampling_interval_s": 0.02,
            "workdir": str(workdir),
        },
        "transfer": {
            "bytes": d["bytes"],
            "seconds": d["seconds"],
            "wall_seconds": d["wall_seconds"],
            "gbit_per_s": sample.value,
            "sha256_checked": d["sha256_checked"],
            "sha256": file.sha256,
        },
        "receiver": {
            "peak_pss_kib": d["receiver_peak_pss_kib"],
            "sum_vmhwm_kib": d["receiver_peak_rss_kib"],
            "processes": d["receiver_processes"],
            "samples": d["memory_samples"],
        },
        "verdict": {
            "peak_pss_within_limit": d["receiver_peak_pss_kib"] <= limit_kib,
            "sum_vmhwm_within_limit": d["receiver_peak_rss_kib"] <= limit_kib,
        },
    }
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(json_path)
    print(report(result))
    print(f"JSON: {json_path}")
    return 0


def report(result: dict[str, Any]) -> str:
    """The numbers and the verdict, ready for BENCHMARKS.md."""
    m, s, t, r, v = (result[k] for k in ("machine", "settings", "transfer", "receiver", "verdict"))
    limit = s["limit_bytes"] / MiB
    met = {True: "**met**", False: "**NOT MET**"}
    return "\n".join(
        [
            f"Command: {m['command']}; {m['date']}; load average before "
            f"{m['load_average_start']}, after {m['load_average_end']}",
            "",
            f"- transfer: {t['bytes'] / MiB:.0f} MiB sparse source at MTU {s['mtu']} in "
            f"{t['seconds']:.2f} s ({t['gbit_per_s']:.2f} Gbit/s; whole command "
            f"{t['wall_seconds']:.2f} s); verified by l2fast, and the copy's SHA-256 "
            f"{'matches' if t['sha256_checked'] else 'was not checked against'} the source's",
            f"- receiver (daemon tree, {r['processes']} processes at most, {r['samples']} samples "
            f"every {s['sampling_interval_s'] * 1000:.0f} ms): peak PSS "
            f"{r['peak_pss_kib'] / 1024:.1f} MiB, sum of VmHWM {r['sum_vmhwm_kib'] / 1024:.1f} MiB",
            f"- target <= {limit:.0f} MiB: {met[v['peak_pss_within_limit']]} on peak PSS, "
            f"{met[v['sum_vmhwm_within_limit']]} on the sum of VmHWM (an upper bound)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse options and run; every failure is one line and exit status 1."""
    return run_main("bench/memory.py", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
