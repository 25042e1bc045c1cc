#!/usr/bin/env python3
"""Where the CPU time of one l2fast transfer goes, for the sender and for the receiver.

It runs `perf record -e cpu-clock -a -g` over every core while one `l2fast send` (a file,
tmpfs -> tmpfs, into a receiving daemon started for it) or one `l2fast bench` (memory to
memory, daemons in both hosts) runs on a two-host veth lab, and prints, for the sender, the
receiver, the softirq and the rest of the machine, one line per role (main loop, SHA-256
thread, receive process, writers, daemon loop, ...): its threads (comm pid/tid), CPU seconds,
share of all cores, CPU seconds per GiB moved and top symbols. The attribution is in
perf_samples.py.

compare.py calls `profile_kind` where a throughput target is not met (or with --profile); run
standalone, this builds its own lab and profiles one send and one bench run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_hosts import (
    BenchError,
    LabHosts,
    TestFile,
    lab,
    lab_prefix,
    teardown,
    write_random_file,
)
from compare_kinds import (
    RunContext,
    l2fast_daemons,
    measure_l2fast_bench,
    send_with_l2fast,
)
from compare_setup import need_space, parse_size, run_main, say
from perf_samples import PerfRecording, ensure_perf, profile_table, read_perf, summarize_profile

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCHEMA = "l2fast-bench-profile/1"
GiB = 1 << 30
MiB = 1 << 20
PROFILED = {"l2fast_send": "l2fast send", "l2fast_bench": "l2fast bench"}

EPILOG = """\
examples:
  sudo .venv/bin/python bench/cpu_profile.py                      send 1 GiB + bench 3 s, MTU 9000
  sudo .venv/bin/python bench/cpu_profile.py --mtu 1500 --size 256M --seconds 2
  sudo .venv/bin/python bench/cpu_profile.py --only l2fast_send --keep-data /tmp/prof
  perf report -i /tmp/prof/perf-l2fast_send-9000.data --sort pid,sym   then dig further

Needs root and perf (Debian: apt-get install -y linux-perf). Results:
bench/results/profile-<UTC time>.json, or --json-out.
"""


# ---- one profiled run


def profile_kind(
    kind: str, ctx: RunContext, file: TestFile | None, workdir: Path, keep: Path | None = None
) -> dict[str, Any]:
    """Run `kind` ("l2fast_send" or "l2fast_bench") once under perf in `ctx`'s lab.

    `l2fast send` copies `file` into a daemon started for the run; `l2fast bench` runs
    ctx.seconds against daemons in both hosts. perf.data is deleted unless `keep` names a
    directory to keep it in.
    """

    def send() -> tuple[int, float | None]:
        assert file is not None
        sample = send_with_l2fast(ctx, file, check_digest=False)
        return int(sample.detail["bytes"]), sample.value

    def bench() -> tuple[int, float | None]:
        with l2fast_daemons(ctx.hosts, workdir) as pids:
            ctx.daemon_pids = pids
            try:
                sample = measure_l2fast_bench(ctx)
            finally:
                ctx.daemon_pids = {}
        return int(sample.detail["bytes"]), sample.value

    runs = {"l2fast_send": send, "l2fast_bench": bench}
    if kind not in runs:
        raise BenchError(f"cannot profile {kind!r}: only {', '.join(PROFILED)}")
    data = (keep or workdir) / f"perf-{kind}-{ctx.hosts.mtu}.data"
    return profiled(ctx, PROFILED[kind], runs[kind], data, keep is not None)


def profiled(
    ctx: RunContext,
    command: str,
    run: Callable[[], tuple[int, float | None]],
    data: Path,
    keep: bool = False,
) -> dict[str, Any]:
    """`run()` once with perf recording through ctx.observer; its profile (see perf_samples).

    `run` is a measuring function that reports its processes to ctx.observer (the l2fast kinds
    of compare_kinds.py do) and returns (bytes moved, Gbit/s or None). perf.data goes to
    `data` and is deleted afterwards unless `keep`.
    """
    data.parent.mkdir(parents=True, exist_ok=True)
    recording = PerfRecording(data)
    ctx.observer = recording
    try:
        moved, gbit = run()
    finally:
        ctx.observer = None
        recording.stop()
    try:
        parsed = read_perf(data)
        profile = summarize_profile(parsed, recording, command, ctx.hosts.mtu, moved, gbit)
    finally:
        if not keep:
            data.unlink(missing_ok=True)
            data.with_suffix(".log").unlink(missing_ok=True)
    profile["perf_data"] = str(data) if keep else None
    if not profile["samples"]:
        raise BenchError(f"perf took no sample while `{command}` ran")
    return profile


# ---- standalone


def build_parser() -> argparse.ArgumentParser:
    """The command line of bench/cpu_profile.py."""
    parser = argparse.ArgumentParser(
        prog="bench/cpu_profile.py",
        description="Profile one `l2fast send` and one `l2fast bench` on a two-host veth lab "
        "with `perf record -e cpu-clock -a -g`: CPU share, top symbols and CPU seconds per "
        "GiB of every sender and receiver role. Needs root and perf.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mtu", type=int, default=9000, help="lab MTU (default 9000)")
    parser.add_argument(
        "--size", type=parse_size, default=GiB, help="file size for `l2fast send` (default 1G)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of the `l2fast bench` run (default 3)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(PROFILED),
        help="profile only this kind (repeatable; default both)",
    )
    parser.add_argument("--json-out", type=Path, help="default bench/results/profile-<time>.json")
    parser.add_argument("--keep-data", type=Path, help="keep the perf.data files in this directory")
    parser.add_argument(
        "--tmpdir", type=Path, default=Path("/dev/shm"), help="tmpfs for the files (/dev/shm)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the lab, profile each kind, print the tables, write the JSON."""
    if os.geteuid() != 0:
        raise BenchError("profiling builds network namespaces and runs perf: needs root (sudo)")
    if not 576 <= args.mtu <= 65535 or args.seconds <= 0:
        raise BenchError("--mtu must lie in 576..65535 and --seconds be positive")
    ensure_perf()
    kinds = args.only or list(PROFILED)
    json_path: Path = args.json_out or RESULTS / time.strftime(
        "profile-%Y%m%d-%H%M%S.json", time.gmtime()
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.tmpdir / f"l2fast-profile-{os.getpid()}"
    load_start = [round(x, 2) for x in os.getloadavg()]
    profiles: list[dict[str, Any]] = []
    workdir.mkdir(mode=0o700)
    prefix = lab_prefix("pf")
    try:
        file = None
        if "l2fast_send" in kinds:
            need_space(args.tmpdir, 2 * args.size)
            path = workdir / "profile.bin"
            say(f"writing {args.size >> 20} MiB of random bytes to {path}")
            file = TestFile(path, args.size, write_random_file(path, [args.size])[args.size])
        with lab(f"{prefix}p", args.mtu) as hosts:
            ctx = _context(hosts, args.seconds, file)
            for kind in kinds:
                say(f"profiling {PROFILED[kind]} at MTU {args.mtu}")
                profiles.append(profile_kind(kind, ctx, file, workdir, args.keep_data))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        left = teardown(prefix, say)
    if left:
        raise BenchError(f"lab namespaces were left behind: {', '.join(left)}")
    result = {
        "schema": SCHEMA,
        "status": "ok",
        "command": shlex.join(sys.orig_argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "profiles": profiles,
    }
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(json_path)
    print(f"Command: {result['command']}; load average before {load_start}\n")
    for profile in profiles:
        print(profile_table(profile) + "\n")
    print(f"JSON: {json_path}")
    return 0


def _context(hosts: LabHosts, seconds: float, file: TestFile | None) -> RunContext:
    # As compare.py's profiling pass: no PSS sampling, whose page-table walks would show up
    # in the profile as work the transfer does not do.
    return RunContext(hosts, seconds, file, 1, 0.01, 0, receiver_pss=False)


def main(argv: list[str] | None = None) -> int:
    """Parse options and run; every failure is one line and exit status 1."""
    args = build_parser().parse_args(argv)
    return run_main("bench/cpu_profile.py", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
