#!/usr/bin/env python3
"""l2fast against kernel TCP and the raw-frame ceiling, in one run, on a two-host veth lab.

For each MTU it builds a two-host lab (network namespaces joined by a veth pair) and measures,
each kind `--reps` times, interleaved (run 1 of every kind, then run 2 of every kind, ...):

  1. the raw-frame ceiling: the l2fast raw blast h1 -> h2 (verified frames that arrived);
  2. `l2fast bench` (reliable, memory to memory)            - "not available yet" if not built;
  3. iperf3, one TCP stream (IPv4 addresses on the lab's veth only while it runs);
  4. nc copying a file of random bytes, tmpfs -> tmpfs (size checked, SHA-256 checked once);
  5. `l2fast send` of the same file, verified, with the receiver's memory;
  6. round-trip time: ICMP ping against `l2fast ping`.

It prints Markdown tables of medians (min-max) and of ratios of medians, and writes the JSON
(every sample, machine info, the command line) and a PNG bar chart under bench/results/.
`--scaling` adds a run that copies files of growing size (time against size must be linear,
with the receiver's peak memory) with nc and `l2fast send`.

It stops with a non-zero exit status and one clear message, rather than print a number, when a
run errors, a copy's size or digest is wrong, or a throughput comes out zero. Labs, daemons,
addresses and tmpfs files it created are removed at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from compare_hosts import (
    BenchError,
    TestFile,
    lab,
    lab_prefix,
    teardown,
    write_random_file,
)
from compare_kinds import (
    KINDS,
    KINDS_BY_KEY,
    Kind,
    NotBuilt,
    RunContext,
    Sample,
    copy_with_nc,
    l2fast_daemons,
    send_with_l2fast,
)
from compare_report import (
    BUSY_LOAD,
    NOT_BUILT,
    NOT_RUN,
    PROFILED_RATIOS,
    comparison_chart,
    format_ratio,
    linear_fit,
    machine_info,
    measurement_table,
    missed_targets,
    ratio_table,
    ratios_for,
    scaling_chart,
    scaling_table,
    summarize,
)
from compare_setup import (
    ensure_matplotlib,
    ensure_tools,
    need_space,
    parse_size,
    parse_sizes,
    probe_kinds,
    run_main,
    say,
)
from cpu_profile import PROFILED, profile_kind
from perf_samples import ensure_perf, profile_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCHEMA = "l2fast-bench-compare/1"
GiB = 1 << 30
MiB = 1 << 20

DEFAULTS = {
    "mtu": [1500, 9000, 65535],
    "reps": 3,
    "seconds": 5.0,
    "file_size": 2 * GiB,
    "ping_count": 200,
    "scaling_sizes": [64 * MiB, 256 * MiB, GiB, 4 * GiB],
}
QUICK = {
    "reps": 3,
    "seconds": 1.0,
    "file_size": 64 * MiB,
    "ping_count": 50,
    "scaling_sizes": [16 * MiB, 32 * MiB, 64 * MiB, 128 * MiB],
}

# The tools the scaling run copies with (nc alone, as a stand-in, if `send` is not built).
SCALING_KINDS: dict[str, Callable[[RunContext, TestFile], Sample]] = {
    "nc": lambda ctx, file: copy_with_nc(ctx, file, check_digest=ctx.rep == 0),
    "l2fast_send": send_with_l2fast,
}

EPILOG = """\
examples:
  sudo .venv/bin/python bench/compare.py                  all MTUs, 3 runs of 5 s, 2 GiB file
  sudo .venv/bin/python bench/compare.py --scaling        ... plus the 64 MiB..4 GiB scaling run
  sudo .venv/bin/python bench/compare.py --quick --mtu 9000 --no-chart   smoke run, ~20 s
  sudo .venv/bin/python bench/compare.py --mtu 1500 --mtu 65535 --reps 5 --seconds 10
  sudo .venv/bin/python bench/compare.py --no-compare --scaling --scaling-sizes 64M,1G
  make bench                                              what the Makefile runs

Results: bench/results/compare-<UTC time>.json and .png (and -scaling.png), or --json-out.
"""


# ---- options


def build_parser() -> argparse.ArgumentParser:
    """The command line of bench/compare.py."""
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description="Compare l2fast with kernel TCP (iperf3, nc, ping) and the raw-frame "
        "ceiling on a two-host veth lab, per MTU, with interleaved repeated runs. Needs root.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mtu",
        type=int,
        action="append",
        help="lab MTU to measure; repeat for several (default: 1500, 9000 and 65535)",
    )
    parser.add_argument("--reps", type=int, help="runs of every kind per MTU (default 3)")
    parser.add_argument("--seconds", type=float, help="length of a timed run (default 5)")
    parser.add_argument(
        "--file-size", type=parse_size, help="size of the copied file (default 2G; --quick 64M)"
    )
    parser.add_argument("--ping-count", type=int, help="echoes per ping run (default 200)")
    parser.add_argument(
        "--ping-interval", type=float, default=0.01, help="seconds between echoes (default 0.01)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 s runs, a 64 MiB file, 50 echoes (explicit options still win)",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="also copy files of growing size (time vs size)"
    )
    parser.add_argument(
        "--scaling-sizes",
        type=parse_sizes,
        help="file sizes of the scaling run (default 64M,256M,1G,4G; --quick 16M..128M)",
    )
    parser.add_argument(
        "--scaling-mtu", type=int, default=9000, help="MTU of the scaling run (default 9000)"
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="skip the per-MTU comparison (with --scaling)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[k.key for k in KINDS],
        metavar="KIND",
        help="run only this kind (repeatable): " + ", ".join(k.key for k in KINDS),
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile `l2fast send` and `l2fast bench` (perf) at every MTU, targets met or not",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="never profile, not even where a throughput target is not met",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        help="where to write the JSON (default bench/results/compare-<UTC time>.json); the "
        "charts go beside it with the same name and .png / -scaling.png",
    )
    parser.add_argument("--no-chart", action="store_true", help="write no PNG (no matplotlib)")
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=Path("/dev/shm"),
        help="tmpfs directory for the files (default /dev/shm)",
    )
    return parser


def resolve_options(args: argparse.Namespace) -> None:
    """Fill unset options from QUICK (with --quick) or DEFAULTS, then check them."""
    preset = {**DEFAULTS, **QUICK} if args.quick else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.mtu = list(dict.fromkeys(args.mtu))  # keep the order, drop repeats
    problems = []
    if args.reps < 1:
        problems.append("--reps must be at least 1")
    if args.seconds <= 0 or args.ping_interval <= 0 or args.ping_count < 1:
        problems.append("--seconds, --ping-interval and --ping-count must be positive")
    if any(not 576 <= m <= 65535 for m in [*args.mtu, args.scaling_mtu]):
        problems.append("MTUs must lie in 576..65535 (veth accepts up to 65535)")
    if args.no_compare and not args.scaling:
        problems.append("--no-compare leaves nothing to do without --scaling")
    if args.profile and args.no_profile:
        problems.append("--profile and --no-profile contradict each other")
    if args.only:
        args.only = list(dict.fromkeys(args.only))
    if problems:
        raise SystemExit("bench/compare.py: error: " + "; ".join(problems))


# ---- labs


@contextlib.contextmanager
def maybe_daemons(ctx: RunContext, needed: bool, log_dir: Path) -> Iterator[None]:
    """The l2fast daemons in both hosts when an available kind needs them (ctx says which)."""
    if not needed:
        yield
        return
    with l2fast_daemons(ctx.hosts, log_dir) as pids:
        ctx.daemons, ctx.daemon_pids = True, pids
        try:
            yield
        finally:
            ctx.daemons, ctx.daemon_pids = False, {}


# ---- measuring


def check_sample(kind: Kind, sample: Sample, where: str) -> None:
    """A run that yields zero, a negative number or NaN is an error, never a result."""
    if not math.isfinite(sample.value) or sample.value <= 0:
        raise BenchError(f"{kind.label} {where}: the run gave {sample.value} {kind.unit}")


def measure_once(
    kind: Kind,
    measure: Callable[[], Sample],
    ctx: RunContext,
    status: dict[str, dict[str, Any]],
    where: str,
    log_dir: Path,
) -> Sample | None:
    """One run of `kind`; None (and the kind marked not available) if its hook is not built.

    l2fast daemons run only around the runs of kinds that need them: a daemon's socket gets a
    copy of every l2fast frame, so one left running would tax the raw-blast ceiling it is
    measured against (and idle daemons have no business in the kernel-TCP baselines).
    """
    try:
        with maybe_daemons(ctx, kind.daemons, log_dir):
            sample = measure()
    except NotBuilt as exc:
        status[kind.key].update(status=NOT_BUILT, reason=str(exc))
        say(f"  {where} {kind.label}: {NOT_BUILT} ({exc})")
        return None
    except BenchError as exc:
        raise BenchError(f"{kind.label} {where}: {exc}") from None
    check_sample(kind, sample, where)
    return sample


def run_compare(
    args: argparse.Namespace,
    status: dict[str, dict[str, Any]],
    file: TestFile | None,
    workdir: Path,
) -> dict[str, Any]:
    """Every MTU: a lab, then reps x (every available kind in turn). Returns result["mtus"]."""
    out: dict[str, Any] = {}
    for index, mtu in enumerate(args.mtu):
        name = f"{lab_prefix()}m{index}"
        samples: dict[str, list[Sample]] = {k.key: [] for k in KINDS}
        say(f"MTU {mtu}: lab {name}")
        with lab(name, mtu) as hosts:
            ctx = RunContext(hosts, args.seconds, file, args.ping_count, args.ping_interval, 0)
            ctx.receiver_pss = False  # timed against nc: sample only what nc's runs sample
            for rep in range(args.reps):
                ctx.rep = rep
                for kind in KINDS:
                    if status[kind.key]["status"] != "ok":
                        continue
                    where = f"[MTU {mtu}, run {rep + 1}/{args.reps}]"
                    measure = functools.partial(kind.measure, ctx)
                    sample = measure_once(kind, measure, ctx, status, where, workdir)
                    if sample is not None:
                        samples[kind.key].append(sample)
                        say(f"  {where} {kind.label}: {sample.value:.2f} {kind.unit}")
            rows: dict[str, dict[str, Any]] = {}
            for kind in KINDS:
                entry = status[kind.key]
                if entry["status"] == "ok" and samples[kind.key]:
                    summary = summarize(samples[kind.key])
                    rows[kind.key] = {"status": "ok", "unit": kind.unit, **summary}
                else:
                    rows[kind.key] = {
                        "status": NOT_RUN if entry["status"] == NOT_RUN else NOT_BUILT,
                        "reason": entry.get("reason", ""),
                    }
            ratios = ratios_for(rows, mtu)
            # After every measurement of this MTU, so perf's overhead touches none of them.
            profiles = profile_mtu(args, status, ratios, ctx, file, workdir)
        out[str(mtu)] = {"lab": name, "rows": rows, "ratios": ratios, "profiles": profiles}
    return out


def profile_mtu(
    args: argparse.Namespace,
    status: dict[str, dict[str, Any]],
    ratios: dict[str, dict[str, Any]],
    ctx: RunContext,
    file: TestFile | None,
    workdir: Path,
) -> list[dict[str, Any]]:
    """Profile the l2fast kinds behind the throughput targets this MTU missed (all with
    --profile): issue 5 wants the output to say where the time goes when a target is not met.
    """
    if args.no_profile:
        return []
    if args.profile:
        wanted = set(PROFILED_RATIOS.values())
    else:
        wanted = {PROFILED_RATIOS[k] for k in missed_targets(ratios) if k in PROFILED_RATIOS}
    out = []
    for kind in sorted(wanted, reverse=True):  # send, then bench
        if status[kind]["status"] != "ok" or (kind == "l2fast_send" and file is None):
            continue
        missed = [
            f"{ratios[k]['label']} {format_ratio(k, ctx.hosts.mtu, ratios[k]['value'])}"
            for k in missed_targets(ratios)
            if PROFILED_RATIOS.get(k) == kind
        ]
        why = "--profile" if args.profile else "target not met: " + ", ".join(missed)
        say(f"  [MTU {ctx.hosts.mtu}] profiling {PROFILED[kind]} ({why})")
        try:
            profile = profile_kind(kind, ctx, file, workdir)
        except BenchError as exc:
            # The measurements of this MTU are done and valid: a failed profile is reported
            # with them (and names its cause) instead of discarding the whole run.
            say(f"  [MTU {ctx.hosts.mtu}] profiling {PROFILED[kind]} FAILED: {exc}")
            profile = {"command": PROFILED[kind], "mtu": ctx.hosts.mtu, "error": str(exc)}
        profile["reason"] = why
        out.append(profile)
    return out


def run_scaling(
    args: argparse.Namespace, status: dict[str, dict[str, Any]], workdir: Path
) -> dict[str, Any]:
    """Copy files of every scaling size (largest first, the file truncated in place)."""
    sizes = sorted(set(args.scaling_sizes))
    need_space(args.tmpdir, 2 * max(sizes))
    path = workdir / "scaling.bin"
    say(f"scaling: writing {max(sizes) >> 20} MiB of random bytes to {path}")
    digests = write_random_file(path, sizes)
    name = f"{lab_prefix()}s"
    samples: dict[str, dict[int, list[Sample]]] = {k: {} for k in SCALING_KINDS}
    say(f"scaling at MTU {args.scaling_mtu}: lab {name}")
    kinds = [KINDS_BY_KEY[k] for k in SCALING_KINDS if not args.only or k in args.only]
    with lab(name, args.scaling_mtu) as hosts:
        ctx = RunContext(hosts, args.seconds, None, args.ping_count, args.ping_interval, 0)
        for size in reversed(sizes):
            os.truncate(path, size)
            file = TestFile(path, size, digests[size])
            for rep in range(args.reps):
                ctx.rep = rep
                for kind in kinds:
                    if status[kind.key]["status"] != "ok":
                        continue
                    where = f"[scaling {size >> 20} MiB, run {rep + 1}/{args.reps}]"
                    copy = functools.partial(SCALING_KINDS[kind.key], ctx, file)
                    sample = measure_once(kind, copy, ctx, status, where, workdir)
                    if sample is not None:
                        samples[kind.key].setdefault(size, []).append(sample)
                        say(
                            f"  {where} {kind.label}: {sample.detail['seconds']:.2f} s, "
                            f"{sample.value:.2f} Gbit/s"
                        )
    path.unlink(missing_ok=True)
    result: dict[str, Any] = {"mtu": args.scaling_mtu, "lab": name, "sizes": sizes, "kinds": {}}
    for key, by_size in samples.items():
        entry = status[key]
        if entry["status"] != "ok" or not by_size:
            not_ok = NOT_RUN if entry["status"] == NOT_RUN else NOT_BUILT
            result["kinds"][key] = {"status": not_ok, "reason": entry.get("reason", "")}
            continue
        points = [(s, x.detail["seconds"]) for s in sizes for x in by_size[s]]
        result["kinds"][key] = {
            "status": "ok",
            "label": _scaling_label(key, status),
            "sizes": {str(s): summarize(by_size[s]) for s in sizes},
            "fit": linear_fit([float(p[0]) for p in points], [p[1] for p in points]),
        }
    return result


def _scaling_label(key: str, status: dict[str, dict[str, Any]]) -> str:
    if key != "nc":
        return KINDS_BY_KEY[key].label
    # A stand-in only where l2fast send is not built (not where --only left it out).
    return "nc" if status["l2fast_send"]["status"] != NOT_BUILT else "nc (stand-in for l2fast send)"


# ---- main


def output_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The JSON path and the two chart paths beside it."""
    json_path: Path = args.json_out or RESULTS / time.strftime(
        "compare-%Y%m%d-%H%M%S.json", time.gmtime()
    )
    return (
        json_path,
        json_path.with_suffix(".png"),
        json_path.with_name(json_path.stem + "-scaling.png"),
    )


def profiling_possible(args: argparse.Namespace, status: dict[str, dict[str, Any]]) -> bool:
    """Whether this run may profile (perf must then be there before anything is measured)."""
    if args.no_profile or args.no_compare:
        return False
    return any(status[k]["status"] == "ok" for k in PROFILED)


def run(args: argparse.Namespace) -> int:
    """Everything after option parsing; raises BenchError/L2fastError on failure."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark builds network namespaces, which needs root: use sudo")
    ensure_tools()
    if not args.no_chart:
        ensure_matplotlib()
    status = probe_kinds()
    for key, entry in status.items():
        if args.only and key not in args.only:
            entry.update(status=NOT_RUN, reason="not among --only " + ",".join(args.only))
        elif entry["status"] != "ok":
            say(f"{KINDS_BY_KEY[key].label}: {NOT_BUILT} ({entry['reason']})")
    if profiling_possible(args, status):
        try:
            ensure_perf()
        except BenchError as exc:
            raise BenchError(f"{exc}; or pass --no-profile") from None
    json_path, chart_path, scaling_path = output_paths(args)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.tmpdir) / f"l2fast-bench-{os.getpid()}"
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "ok",
        "machine": machine_info(shlex.join(sys.orig_argv)),
        "settings": {
            "mtus": args.mtu,
            "reps": args.reps,
            "seconds": args.seconds,
            "file_bytes": args.file_size,
            "ping_count": args.ping_count,
            "ping_interval": args.ping_interval,
            "quick": args.quick,
            "scaling_sizes": args.scaling_sizes if args.scaling else None,
            "scaling_mtu": args.scaling_mtu if args.scaling else None,
            "only": args.only,
            "profile": "always" if args.profile else "never" if args.no_profile else "when missed",
            "interleaved": "each run of every kind in turn, then the next run",
            "throughput_basis": "payload bits per second (no Ethernet/l2fast/TCP headers)",
            "workdir": str(workdir),
        },
        "kinds": status,
        "mtus": {},
        "scaling": None,
    }
    workdir.mkdir(mode=0o700)
    try:
        if not args.no_compare:
            file = None
            # l2fast send's profile copies this file too, and runs only where l2fast send ran.
            if any(k.needs_file and status[k.key]["status"] == "ok" for k in KINDS):
                need_space(args.tmpdir, 2 * args.file_size)
                path = workdir / "compare.bin"
                say(f"writing {args.file_size >> 20} MiB of random bytes to {path}")
                digest = write_random_file(path, [args.file_size])[args.file_size]
                file = TestFile(path, args.file_size, digest)
            result["mtus"] = run_compare(args, status, file, workdir)
            if file is not None:
                file.path.unlink()  # its space is the scaling run's
        if args.scaling:
            result["scaling"] = run_scaling(args, status, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        left = teardown(lab_prefix(), say)
    if left:
        raise BenchError(f"lab namespaces were left behind: {', '.join(left)}")
    result["kinds"] = status  # a hook found unbuilt while running changed it
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["charts"] = {}
    if not args.no_chart:
        if result["mtus"]:
            comparison_chart(result, chart_path)
            result["charts"]["comparison"] = str(chart_path)
        if result["scaling"]:
            scaling_chart(result["scaling"], scaling_path)
            result["charts"]["scaling"] = str(scaling_path)
    write_json(json_path, result)
    print_report(result, json_path)
    return 0


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a result."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def print_report(result: dict[str, Any], json_path: Path) -> None:
    """The tables (stdout), then where the files are."""
    m = result["machine"]
    print(
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, {m['os']}, Python {m['python']}; l2fast {m['l2fast_commit']}; "
        f"{m['date']}"
    )
    print(f"Command: {m['command']}\n")
    load = m["load_average_start"][0]
    if load > BUSY_LOAD:
        print(
            f"NOTE: the machine was busy before this run (1-min load average {load:.2f} on "
            f"{m['cores']} cores): other processes shared the cores with both ends of the lab. "
            "Ratios within this run still compare like with like; absolute numbers need a "
            "quiet machine.\n"
        )
    if result["mtus"]:
        settings = result["settings"]
        print(
            f"Medians (min-max) of {settings['reps']} interleaved runs; {settings['seconds']:g} s "
            f"per timed run, {settings['file_bytes'] >> 20} MiB file, "
            f"{settings['ping_count']} echoes per ping run.\n"
        )
        print(measurement_table(result) + "\n")
        print(ratio_table(result) + "\n")
        for mtu, entry in result["mtus"].items():
            for profile in entry.get("profiles", []):
                print(f"Where the time goes at MTU {mtu} ({profile['reason']}):\n")
                if "error" in profile:
                    print(f"Profile of `{profile['command']}` FAILED: {profile['error']}\n")
                else:
                    print(profile_table(profile) + "\n")
    if result["scaling"]:
        print(f"Scaling run (MTU {result['scaling']['mtu']}):\n")
        print(scaling_table(result["scaling"]) + "\n")
    print(f"JSON: {json_path}")
    for chart in result["charts"].values():
        print(f"chart: {chart}")


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, and turn every failure into one line and a non-zero exit."""
    args = build_parser().parse_args(argv)
    resolve_options(args)
    return run_main("bench/compare.py", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
