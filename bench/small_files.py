#!/usr/bin/env python3
"""Many small files: `l2fast send` of a folder against `tar | nc` over kernel TCP, one run.

A folder of `--count` files of `--size` random bytes each (default 10 000 x 4 KiB) is copied
h1 -> h2 on a two-host veth lab, tmpfs to tmpfs (or to `--dest`, a disk), `--reps` times by
each tool, interleaved (run 1 of each, then run 2 of each, ...):

  l2fast: `l2fast send <h2 MAC> DIR --json` in h1 (no daemon there: the command is the
          sender) into a daemon started in h2 for the run (`--accept all`, fresh tmpfs
          `--recv-dir`); time = the final `done` event's `seconds` (which must say verified),
          the command's wall time in the JSON too;
  tar|nc: `tar c DIR | nc -N` in h1 -> `nc -l | tar x` in h2 over IPv4 addresses that exist
          on the lab's veth only while it runs; time = sender start to receiver exit.

Each copy is checked outside the timing: every file present with the source's exact bytes,
nothing else. It prints files per second and MiB/s (medians, min-max) and the ratio of
medians, and writes the JSON under bench/results/. A run that fails a check, errors or
overruns its time stops the benchmark (exit status 1, one line); the lab, the daemons, the
addresses and the tmpfs files are removed on every exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from compare_hosts import (
    BenchError,
    ip_addresses,
    lab,
    lab_prefix,
    start_in,
    stop,
    teardown,
    wait_exit,
    wait_listening,
)
from compare_kinds import MARGIN_S, RunContext, l2fast_send_run
from compare_report import machine_info
from compare_setup import ensure_tools, need_space, parse_size, run_main, say
from cpu_profile import profiled
from perf_samples import ensure_perf, profile_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCHEMA = "l2fast-bench-small-files/1"
MiB = 1 << 20
TREE = "tree"  # the folder's name on both sides
# Per-run time bound: start-up plus a rate no working copy falls below (1 ms per file).
PER_FILE_S = 0.001
KINDS = {
    "l2fast_send": "l2fast send (folder), verified",
    "tar_nc": "tar c, nc -N -> nc -l, tar x (kernel TCP)",
}

EPILOG = """\
examples:
  sudo .venv/bin/python bench/small_files.py                      10 000 x 4 KiB, MTU 9000, 3 runs
  sudo .venv/bin/python bench/small_files.py --count 50 --reps 1  smoke run, a few seconds
  sudo .venv/bin/python bench/small_files.py --count 2000 --size 64K --mtu 1500
  sudo .venv/bin/python bench/small_files.py --count 2000 --reps 1 --profile   where the time goes
  sudo .venv/bin/python bench/small_files.py --dest /var/tmp --sync   copies onto a disk, tar's
                                                                  made durable too (sync -f)
  make bench                                                      runs it after compare.py

Needs root (network namespaces), tar and nc (netcat-openbsd), twice the folder's size free in
--tmpdir (once with --dest, and once in --dest). l2fast's daemon fsyncs what it receives
before it reports a file received; tar does not, so on a disk --sync makes tar's time end
only once `sync -f` has made its copy durable too (on tmpfs neither costs anything).
Results: bench/results/small-files-<UTC time>.json, or --json-out.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of bench/small_files.py."""
    parser = argparse.ArgumentParser(
        prog="bench/small_files.py",
        description="Copy a folder of many small files h1 -> h2 on a veth lab with `l2fast "
        "send` and with `tar | nc` over kernel TCP, interleaved; files per second and MiB/s, "
        "every copy verified. Needs root.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=10_000, help="files (default 10000)")
    parser.add_argument("--size", type=parse_size, default=4096, help="bytes per file (default 4K)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each tool (default 3)")
    parser.add_argument("--mtu", type=int, default=9000, help="lab MTU (default 9000)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, one more l2fast send of the folder under perf: where the "
        "sender's and the receiver's CPU goes (bench/cpu_profile.py; needs linux-perf)",
    )
    parser.add_argument(
        "--json-out", type=Path, help="default bench/results/small-files-<UTC time>.json"
    )
    parser.add_argument(
        "--tmpdir", type=Path, default=Path("/dev/shm"), help="tmpfs for the files (/dev/shm)"
    )
    parser.add_argument(
        "--dest",
        type=Path,
        help="where both tools write their copies (default: --tmpdir); a disk shows what "
        "making every file durable costs",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="tar's receiver runs `sync -f` on its copy before its time stops, as l2fast "
        "makes each file durable before reporting it",
    )
    return parser


def make_tree(root: Path, count: int, size: int) -> None:
    """`count` files of `size` random bytes in `root` (f000000, f000001, ...)."""
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"f{i:06d}").write_bytes(os.urandom(size))


def check_copy(source: Path, copy: Path, count: int) -> None:
    """Every file of `source` in `copy` with the same bytes, and nothing else; else BenchError."""
    if not copy.is_dir():
        raise BenchError(f"no folder {copy.name!r} arrived")
    names = sorted(p.name for p in copy.iterdir())
    expected = sorted(p.name for p in source.iterdir())
    if names != expected:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        raise BenchError(
            f"{len(names)} of {count} files arrived; missing {missing[:3]}, extra {extra[:3]}"
        )
    for name in expected:
        if (copy / name).read_bytes() != (source / name).read_bytes():
            raise BenchError(f"{name} arrived with different content")


def copy_with_l2fast(
    ctx: RunContext, source: Path, count: int, size: int, run_dir: Path
) -> dict[str, Any]:
    """One `l2fast send` of the folder into a fresh daemon; checked; the copy removed."""
    try:
        # The time allowed scales with bytes (10 MB/s): count each file as 200 kB more, i.e.
        # 20 ms per file, ~10x what it takes on this machine today.
        run = l2fast_send_run(ctx, source, count * (size + 200_000), run_dir)
        event = run.event
        if event.get("bytes") != count * size:
            raise BenchError(f"l2fast send reports {event.get('bytes')} bytes, not {count * size}")
        check_copy(source, run.recv_dir / TREE, count)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    seconds = float(event["seconds"])
    return {
        "seconds": seconds,
        "wall_seconds": run.wall_seconds,
        "files_reported": event.get("files"),
        "receiver_peak_pss_kib": run.memory.peak_pss_kib,
        "verified": True,
    }


def copy_with_tar_nc(
    ctx: RunContext, source: Path, count: int, dest: Path, sync: bool = False
) -> dict[str, Any]:
    """`tar c | nc -N` h1 -> `nc -l | tar x` h2 into `dest`; checked; the copy removed.

    Timed from starting the sender until the receiving shell exited (tar has written the last
    file and closed it; with `sync`, `sync -f` has then made the copy durable).
    """
    h = ctx.hosts
    port = ctx.next_port()
    dest.mkdir(parents=True)
    budget = MARGIN_S + count * PER_FILE_S
    rx_cmd = f"nc -l {h.ip2} {port} | tar x -C {shlex.quote(str(dest))}"
    if sync:
        rx_cmd += f" && sync -f {shlex.quote(str(dest))}"
    tx_cmd = f"tar c -C {shlex.quote(str(source.parent))} {TREE} | nc -N {h.ip2} {port}"
    try:
        with ip_addresses(h):
            receiver = start_in(h.h2, ["sh", "-c", rx_cmd])
            try:
                wait_listening(h.h2, port, "nc -l | tar x")
                start = time.perf_counter()
                sender = start_in(h.h1, ["sh", "-c", tx_cmd])
                code, _ = wait_exit(receiver, budget, "nc -l | tar x (receiver)")
                seconds = time.perf_counter() - start
                sender_code, _ = wait_exit(sender, MARGIN_S, "tar c | nc -N (sender)")
            finally:
                stop(receiver)
        if code or sender_code:
            err = receiver.stderr.read() if receiver.stderr and not receiver.stderr.closed else ""
            raise BenchError(f"tar | nc failed: receiver exited {code}, sender {sender_code} {err}")
        check_copy(source, dest / TREE, count)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return {"seconds": seconds, "verified": True}


def profile_tree(
    ctx: RunContext, source: Path, count: int, size: int, workdir: Path
) -> dict[str, Any]:
    """One more `l2fast send` of the folder, checked like the others, under perf."""

    def send() -> tuple[int, float | None]:
        r = copy_with_l2fast(ctx, source, count, size, workdir / "l2fast-profiled")
        return count * size, count * size * 8 / r["seconds"] / 1e9

    return profiled(ctx, f"l2fast send of {count} files", send, workdir / "perf-small.data")


def summarize_runs(runs: list[dict[str, Any]], count: int, size: int) -> dict[str, Any]:
    """Files/s and MiB/s per run, medians (min, max)."""
    for r in runs:
        r["files_per_s"] = count / r["seconds"]
        r["mib_per_s"] = count * size / MiB / r["seconds"]
    out: dict[str, Any] = {"n": len(runs), "runs": runs}
    for key in ("files_per_s", "mib_per_s", "seconds"):
        values = [r[key] for r in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def report(result: dict[str, Any]) -> str:
    """Markdown: one row per tool, then the ratio."""
    s = result["settings"]
    lines = [
        f"{s['count']} files x {s['file_bytes']} B ({s['count'] * s['file_bytes'] / MiB:.1f} "
        f"MiB), MTU {s['mtu']}, copies in {s['copies_in']}"
        f"{' (tar synced: sync -f)' if s['tar_synced'] else ''}, medians (min-max) of "
        f"{s['reps']} interleaved runs:",
        "",
        "| tool | files/s | MiB/s | seconds |",
        "|---|---|---|---|",
    ]
    for key, label in KINDS.items():
        row = result["kinds"][key]
        cells = []
        for field, fmt in (("files_per_s", ",.0f"), ("mib_per_s", ".1f"), ("seconds", ".2f")):
            v = row[field]
            cells.append(f"{v['median']:{fmt}} ({v['min']:{fmt}}-{v['max']:{fmt}})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"l2fast send / tar+nc (files/s, ratio of medians): {result['ratio']:.2f}x"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Build the tree and the lab, copy interleaved, verify, print, write the JSON."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark builds network namespaces, which needs root: use sudo")
    if args.count < 1 or args.reps < 1 or not 576 <= args.mtu <= 65535:
        raise BenchError("--count and --reps must be at least 1, --mtu in 576..65535")
    ensure_tools()
    if args.profile:
        ensure_perf()
    if shutil.which("tar") is None:
        raise BenchError("tar is missing: apt-get install -y tar")
    json_path: Path = args.json_out or RESULTS / time.strftime(
        "small-files-%Y%m%d-%H%M%S.json", time.gmtime()
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info(shlex.join(sys.orig_argv))
    # Every file takes at least a page in tmpfs: the source and one copy at a time.
    footprint = args.count * max(args.size, 4096)
    need_space(args.tmpdir, footprint if args.dest else 2 * footprint)
    workdir = args.tmpdir / f"l2fast-small-{os.getpid()}"
    copies = workdir
    if args.dest is not None:
        if not args.dest.is_dir():
            raise BenchError(f"--dest {args.dest} is not a directory")
        need_space(args.dest, footprint)
        copies = args.dest / f"l2fast-small-{os.getpid()}"
    prefix = lab_prefix("sf")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    profile = None
    workdir.mkdir(mode=0o700)
    if copies != workdir:
        copies.mkdir(mode=0o700)
    try:
        source = workdir / "src" / TREE
        say(f"writing {args.count} files of {args.size} random bytes to {source}")
        make_tree(source, args.count, args.size)
        with lab(f"{prefix}l", args.mtu) as hosts:
            ctx = RunContext(hosts, 0.0, None, 1, 0.01, 0)
            for rep in range(args.reps):
                ctx.rep = rep
                where = f"[run {rep + 1}/{args.reps}]"
                r = copy_with_tar_nc(ctx, source, args.count, copies / f"tar-{rep}", args.sync)
                runs["tar_nc"].append(r)
                say(f"  {where} tar | nc: {r['seconds']:.2f} s, {args.count / r['seconds']:,.0f}/s")
                run_dir = copies / f"l2fast-{rep}"
                r = copy_with_l2fast(ctx, source, args.count, args.size, run_dir)
                runs["l2fast_send"].append(r)
                say(f"  {where} l2fast: {r['seconds']:.2f} s, {args.count / r['seconds']:,.0f}/s")
            if args.profile:
                say("  profiling one more l2fast send of the folder")
                profile = profile_tree(ctx, source, args.count, args.size, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if copies != workdir:
            shutil.rmtree(copies, ignore_errors=True)
        left = teardown(prefix, say)
    if left:
        raise BenchError(f"lab namespaces were left behind: {', '.join(left)}")
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    kinds = {k: summarize_runs(v, args.count, args.size) for k, v in runs.items()}
    for key, row in kinds.items():
        if not all(r["files_per_s"] > 0 for r in row["runs"]):
            raise BenchError(f"{KINDS[key]}: a run gave no files per second")
    result = {
        "schema": SCHEMA,
        "status": "ok",
        "machine": machine,
        "settings": {
            "count": args.count,
            "file_bytes": args.size,
            "reps": args.reps,
            "mtu": args.mtu,
            "interleaved": "tar | nc, then l2fast send, per run",
            "workdir": str(workdir),
            "copies_in": str(copies.parent),
            "tar_synced": args.sync,
        },
        "kinds": kinds,
        "ratio": kinds["l2fast_send"]["files_per_s"]["median"]
        / kinds["tar_nc"]["files_per_s"]["median"],
        "profile": profile,
    }
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(json_path)
    print(
        f"Command: {machine['command']}; {machine['date']}; load average before "
        f"{machine['load_average_start']}, after {machine['load_average_end']}\n"
    )
    print(report(result) + "\n")
    if profile:
        print(profile_table(profile) + "\n")
    print(f"JSON: {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse options and run; every failure is one line and exit status 1."""
    return run_main("bench/small_files.py", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
