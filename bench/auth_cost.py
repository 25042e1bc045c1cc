#!/usr/bin/env python3
"""What a LAN key costs: the same transfers with and without `--key`, interleaved, one run.

On a two-host veth lab (tmpfs to tmpfs), each round runs every kind twice, once with both ends
holding a LAN key and once with neither, alternating which goes first:

  folder:  `l2fast send <h2 MAC> DIR --json` of `--count` files of `--size` bytes (default
           2000 x 4 KiB) into a daemon started in h2 for the run; the sender runs its own node
           in h1 (keyed through L2FAST_KEY_FILE). Control frames dominate here: every file
           has its FILE_OFFER, FILE_ACCEPT, FILE_END, FILE_RESULT and their acknowledgements,
           each sealed (HMAC-SHA256) and checked when keyed. Files/s from the final `done`
           event, which must say verified, and the copy is checked byte for byte.
  bench:   `l2fast bench <h2 MAC> -t SECONDS --json` between two daemons: the data path,
           whose DATA and FEEDBACK are never sealed, so the two should not differ.

It prints medians (min-max) and the ratio keyed / unkeyed per kind, and writes JSON under
bench/results/. A run that fails a check stops the benchmark with exit status 1; the lab,
daemons and files are removed on every exit.

    sudo .venv/bin/python bench/auth_cost.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare_hosts import BenchError, LabHosts, lab, lab_prefix, run_in, start_in, stop, teardown
from compare_report import machine_info
from compare_setup import parse_size, run_main, say

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCHEMA = "l2fast-bench-auth-cost/1"
PY = [sys.executable, "-m"]
DAEMON_READY_S = 15.0
KINDS = ("folder", "bench")


def write_tree(root: Path, count: int, size: int) -> None:
    """`count` files of `size` random bytes under `root`, 100 per directory."""
    for i in range(count):
        sub = root / f"d{i // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}").write_bytes(os.urandom(size))


def same_tree(a: Path, b: Path) -> bool:
    """Every file of `a` in `b` with the same bytes, and nothing else."""
    left = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    right = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return left == right and all((a / p).read_bytes() == (b / p).read_bytes() for p in left)


class Daemons:
    """Daemons started for one run, stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, ns: str, name: str, key: Path | None, *extra: str) -> None:
        log = self.workdir / f"daemon-{name}.log"
        argv = [*PY, "l2fast", "daemon", "-i", "eth0", "--name", name, "--keep-parts", "0"]
        argv += [*extra, *(("--key", str(key)) if key else ())]
        with log.open("w") as err:
            proc = start_in(ns, argv, stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(proc)
        deadline = time.monotonic() + DAEMON_READY_S
        while run_in(ns, [*PY, "l2fast", "status", "--json"], timeout=20, check=False).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"daemon {name} did not start: {log.read_text()[-300:]}")
            time.sleep(0.1)
        status = json.loads(run_in(ns, [*PY, "l2fast", "status", "--json"], timeout=20).stdout)
        if (status["auth"] is not None) != (key is not None):
            raise BenchError(f"daemon {name} runs with auth {status['auth']}, asked key={key}")

    def __enter__(self) -> Daemons:
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs:
            stop(proc)


def folder_run(h: LabHosts, key: Path | None, tree: Path, count: int, work: Path) -> float:
    """Files per second of one verified folder send."""
    recv = work / "recv"
    recv.mkdir(parents=True)
    try:
        with Daemons(work) as daemons:
            daemons.start(h.h2, "h2", key, "--accept", "all", "--recv-dir", str(recv))
            env = ["env", f"L2FAST_KEY_FILE={key}"] if key else []
            argv = [*env, *PY, "l2fast", "send", h.mac2, str(tree), "--json", "-i", "eth0"]
            out = run_in(h.h1, argv, timeout=60 + count * 0.02).stdout
        done = json.loads(out.strip().splitlines()[-1])
        if not done.get("verified") or not same_tree(tree, recv / tree.name):
            raise BenchError(f"the folder did not arrive intact (keyed={key is not None}): {done}")
        return count / float(done["seconds"])
    finally:
        shutil.rmtree(recv, ignore_errors=True)


def bench_run(h: LabHosts, key: Path | None, seconds: float, work: Path) -> float:
    """Gbit/s of one `l2fast bench` between two daemons."""
    with Daemons(work) as daemons:
        daemons.start(h.h2, "h2", key)
        daemons.start(h.h1, "h1", key)
        argv = [*PY, "l2fast", "bench", h.mac2, "-t", str(seconds), "--json"]
        result = json.loads(run_in(h.h1, argv, timeout=seconds + 60).stdout)
    end = result.get("end") or {}
    gbit = end.get("gbit_per_s")
    if "error" in result or not isinstance(gbit, (int, float)) or gbit <= 0:
        raise BenchError(f"l2fast bench failed (keyed={key is not None}): {str(result)[:300]}")
    return float(gbit)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> int:
    prefix = lab_prefix("ba")
    runs: dict[str, dict[str, list[float]]] = {k: {"keyed": [], "unkeyed": []} for k in KINDS}
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}", dir="/dev/shm"))
    try:
        key = work / "lan.key"
        subprocess.run([*PY, "l2fast", "keygen", "-o", str(key)], check=True, capture_output=True)
        tree = work / "tree"
        write_tree(tree, args.count, args.size)
        with lab(f"{prefix}a", args.mtu) as h:
            for rep in range(args.reps):
                order = [key, None] if rep % 2 == 0 else [None, key]
                for use in order:
                    which = "keyed" if use else "unkeyed"
                    files_s = folder_run(h, use, tree, args.count, work / "run")
                    gbit = bench_run(h, use, args.seconds, work)
                    runs["folder"][which].append(files_s)
                    runs["bench"][which].append(gbit)
                    say(f"round {rep + 1} {which:>8}: {files_s:8.0f} files/s  {gbit:6.2f} Gbit/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        teardown(prefix, say)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": machine_info(shlex.join(sys.orig_argv)),
        "mtu": args.mtu,
        "count": args.count,
        "size": args.size,
        "seconds": args.seconds,
        "runs": runs,
        "summary": {},
    }
    units = {"folder": "files/s", "bench": "Gbit/s"}
    for kind in KINDS:
        keyed, unkeyed = summary(runs[kind]["keyed"]), summary(runs[kind]["unkeyed"])
        ratio = keyed["median"] / unkeyed["median"]
        report["summary"][kind] = {"keyed": keyed, "unkeyed": unkeyed, "ratio": ratio}
        print(
            f"{kind:>6}: keyed {keyed['median']:.2f} ({keyed['min']:.2f}-{keyed['max']:.2f}) "
            f"unkeyed {unkeyed['median']:.2f} ({unkeyed['min']:.2f}-{unkeyed['max']:.2f}) "
            f"{units[kind]}; keyed / unkeyed {ratio:.3f}x"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.json_out or RESULTS / f"auth-cost-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--count", type=int, default=2000, help="files in the folder (default 2000)"
    )
    parser.add_argument("--size", type=parse_size, default=4096, help="bytes per file (default 4K)")
    parser.add_argument("--seconds", type=float, default=3.0, help="l2fast bench -t (default 3)")
    parser.add_argument("--mtu", type=int, default=9000, help="lab MTU (default 9000)")
    parser.add_argument(
        "--json-out", type=Path, help="where to write the JSON (default: bench/results/)"
    )
    return run_main("auth_cost", run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
