"""Where the CPU went while one l2fast run was recorded by perf, by sender and receiver role.

`PerfRecording` runs `perf record -e cpu-clock -a -g` (a software event: it works on VMs without
hardware counters) around the measured command of one run; the measuring code names the run's
root processes to it (the send process, the daemons, the bench command; `RunObserver` in
compare_kinds.py). `read_perf` reads the samples with their call stacks and perf's fork events,
`attribute` gives every sample taken while the command ran to one role:

  sender:   the sender's main loop (the `l2fast send` process, or h1's daemon for `l2fast
            bench`), its SHA-256 thread, other threads, child processes; the bench command;
  receiver: h2's daemon loop, its SHA-256 thread, the receive process it forks, the writers
            that process forks;
  softirq:  network receive softirq (on veth it runs on the *sending* CPU, inside whatever
            thread sent the frame: it is counted here, not in that thread);
  other:    idle, perf itself, this benchmark's own work (its memory sampler, probes) and
            every other process of the (shared) machine.

Processes are told apart by pid and fork events (every l2fast process is called `python`); a
thread other than the main one is the SHA-256 thread when most of its samples are in a digest.
`summarize_profile` turns that into CPU seconds, shares of all cores, CPU seconds per GiB and
top symbols per role; `profile_table` prints it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compare_hosts import BenchError, last_line
from compare_setup import say

GiB = 1 << 30
MiB = 1 << 20
FREQ_HZ = 999  # not 1000: a rate in step with the kernel's timer would sample it in lockstep
PERF_INSTALL = "apt-get install -y linux-perf"
PERF_READY_S = 0.5  # perf synthesizes the existing tasks before its first sample
PERF_STOP_TIMEOUT_S = 60.0
PERF_SCRIPT_TIMEOUT_S = 600.0
TOP_SYMBOLS = 5
# A sample whose stack holds one of these ran in softirq context: on veth that is the receive
# half of the link (netif_receive_skb, packet_rcv) done on the sending CPU.
SOFTIRQ_FRAMES = frozenset({"handle_softirqs", "__do_softirq", "net_rx_action", "do_softirq"})
# Where a digest thread spends its time: hashlib's SHA-256 is OpenSSL's libcrypto (stripped
# here, so its samples have no symbol), BLAKE2 is CPython's own.
DIGEST_SYMBOL = re.compile(r"sha256|sha2_|blake2|blake3", re.IGNORECASE)
DIGEST_DSO = re.compile(r"libcrypto|_blake2|_sha2|_hashlib")


# ---- perf


def perf_problem() -> str | None:
    """Why `perf record -e cpu-clock` cannot run here, with the fix; None when it can."""
    perf = shutil.which("perf")
    if perf is None:
        return f"perf is not installed: run `{PERF_INSTALL}` (as root)"
    probe = Path(f"/tmp/l2fast-perf-probe-{os.getpid()}.data")
    try:
        proc = subprocess.run(
            [perf, "record", "-q", "-e", "cpu-clock", "-o", str(probe), "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"perf record failed to run: {exc}"
    finally:
        probe.unlink(missing_ok=True)
    if proc.returncode != 0:
        return (
            f"perf cannot sample cpu-clock here ({last_line(proc.stderr)}); run as root, or "
            "lower /proc/sys/kernel/perf_event_paranoid"
        )
    return None


def ensure_perf() -> None:
    """Install perf (Debian package linux-perf) as root if missing; BenchError if unusable."""
    if shutil.which("perf") is None and os.geteuid() == 0:
        command = f"apt-get update -qq && {PERF_INSTALL} -qq"
        say(f"perf is missing; installing it: {command}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=900)
    problem = perf_problem()
    if problem:
        raise BenchError(problem)


class PerfRecording:
    """`perf record` over all cores around the measured command of one run (a RunObserver).

    The kind names the run's processes (`process`), calls `begin` before its command starts
    (perf starts then, so every fork of the run is in perf's events) and `end` after it exits.
    Timestamps are CLOCK_MONOTONIC on both sides, so samples outside the command are dropped.
    """

    def __init__(self, data: Path, freq: int = FREQ_HZ) -> None:
        self.data = data
        self.freq = freq
        self.roots: dict[int, str] = {}  #: pid -> "sender", "receiver" or "command"
        self.begin_t: float | None = None
        self.end_t: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.perf_pid: int | None = None  #: perf record's pid once started
        self._log = data.with_suffix(".log")

    def process(self, pid: int, role: str) -> None:
        """`pid` is the run's `role` process."""
        self.roots[pid] = role

    @property
    def all_roots(self) -> dict[int, str]:
        """The run's roots, and perf itself (its samples are the profiler's own cost)."""
        if self.perf_pid is None:
            return dict(self.roots)
        return {self.perf_pid: "profiler", **self.roots}

    def begin(self) -> None:
        """Start perf and wait until it samples."""
        perf = shutil.which("perf") or "perf"
        argv = [perf, "record", "-e", "cpu-clock", "-F", str(self.freq), "-a", "-g"]
        argv += ["-k", "CLOCK_MONOTONIC", "-o", str(self.data)]
        with open(self._log, "wb") as log:
            # Its own session: a Ctrl-C meant for the benchmark must not stop it early.
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.perf_pid = self._proc.pid
        deadline = time.monotonic() + 10.0
        while not (self.data.exists() and self.data.stat().st_size > 0):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"perf record did not start: {last_line(self._log_text())}")
            time.sleep(0.02)
        time.sleep(PERF_READY_S)
        self.begin_t = time.monotonic()

    def end(self) -> None:
        """The command exited: stop perf."""
        self.end_t = time.monotonic()
        self.stop()

    def stop(self) -> None:
        """Stop perf (SIGINT makes it write its data); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=PERF_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_text(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""


# ---- reading perf's samples


@dataclass
class PerfSample:
    """One cpu-clock sample."""

    comm: str
    pid: int
    tid: int
    time: float  #: CLOCK_MONOTONIC seconds
    period_ns: int  #: CPU time this sample stands for
    stack: list[tuple[str, str]] = field(default_factory=list)  #: (symbol, dso), leaf first


@dataclass
class PerfData:
    """The samples and the process tree from one perf.data."""

    samples: list[PerfSample]
    parent: dict[int, int]  #: pid of a process -> pid of the process that forked it


_HEADER = re.compile(
    r"^(?P<comm>\S.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+\[\d+\]\s+(?P<time>\d+\.\d+):\s*(?P<rest>.*)$"
)
_FORK = re.compile(r"PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)")
_PERIOD = re.compile(r"^(\d+)\s+cpu-clock")
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(?P<sym>.*?)\s+\((?P<dso>[^()]*)\)$")
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


def read_perf(data: Path) -> PerfData:
    """Parse `perf script --show-task-events` of `data` (samples with call stacks, forks)."""
    perf = shutil.which("perf") or "perf"
    argv = [perf, "script", "-i", str(data), "--show-task-events"]
    argv += ["-F", "comm,pid,tid,cpu,time,period,event,ip,sym,dso"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PERF_SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"perf script did not finish in {PERF_SCRIPT_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"perf script failed: {last_line(proc.stderr)}")
    samples: list[PerfSample] = []
    parent: dict[int, int] = {}
    current: PerfSample | None = None
    for line in proc.stdout.splitlines():
        if not line.strip():
            current = None
            continue
        if current is not None and line[0].isspace():
            frame = _FRAME.match(line)
            if frame:
                current.stack.append((_OFFSET.sub("", frame["sym"]), frame["dso"]))
            continue
        head = _HEADER.match(line)
        if not head:
            continue
        current = None
        rest = head["rest"]
        fork = _FORK.search(rest)
        if fork:
            child, child_tid, par = int(fork[1]), int(fork[2]), int(fork[3])
            if child == child_tid and child != par:  # a new process, not a new thread
                parent[child] = par
            continue
        period = _PERIOD.match(rest)
        if period:
            current = PerfSample(
                head["comm"],
                int(head["pid"]),
                int(head["tid"]),
                float(head["time"]),
                int(period[1]),
            )
            samples.append(current)
    return PerfData(samples, parent)


# ---- attributing samples to roles


SIDES = ("sender", "receiver", "softirq", "other")


@dataclass
class Role:
    """CPU time of one role, while being summed."""

    side: str
    name: str
    ns: int = 0
    threads: Counter[tuple[str, int, int]] = field(default_factory=Counter)  #: (comm,pid,tid)
    symbols: Counter[tuple[str, str]] = field(default_factory=Counter)
    ran_in: Counter[str] = field(default_factory=Counter)  #: softirq: the role it interrupted


def _root_of(pid: int, roots: dict[int, str], parent: dict[int, int]) -> tuple[int, int] | None:
    """(root pid, depth below it) when `pid` is a root or descends from one."""
    depth, current = 0, pid
    while depth < 16:
        if current in roots:
            return current, depth
        if current not in parent:
            return None
        current, depth = parent[current], depth + 1
    return None


def _process_role(s: PerfSample, roots: dict[int, str], data: PerfData) -> tuple[str, str]:
    """(side, role) of a sample by the process and thread it ran in."""
    if s.pid == 0:
        return "other", "idle"
    found = _root_of(s.pid, roots, data.parent)
    if found is None:
        return "other", "other processes on the machine"
    root, depth = found
    what = roots[root]
    if what == "profiler":
        return "other", "perf (the profiler)"
    if what == "harness":
        return "other", "benchmark harness (memory sampler, probes)"
    if what == "command":
        return "sender", "l2fast bench command (asks h1's daemon, prints)"
    if depth == 0:
        if s.tid == s.pid:
            return what, "sender main loop" if what == "sender" else "daemon loop"
        return what, "threads"  # named by their symbols once all samples are in
    if what == "receiver":
        return what, "receive process" if depth == 1 else "writer processes"
    return what, "child processes"


def attribute(data: PerfData, roots: dict[int, str], start: float, end: float) -> list[Role]:
    """Sum the samples taken in [start, end] by role; threads split into digest / other.

    This process is a root too ("harness"): its memory sampler and the probes it runs are
    the benchmark's own cost, not the machine's other work. The run's own processes are
    children of it as well, but as roots of their own they are found first.
    """
    roots = {os.getpid(): "harness", **roots}
    roles: dict[tuple[str, str], Role] = {}

    def role(side: str, name: str) -> Role:
        return roles.setdefault((side, name), Role(side, name))

    # Per thread first, so a thread can be named by where its samples are.
    threads: dict[tuple[str, int, int], Role] = {}
    for s in data.samples:
        if not start <= s.time <= end:
            continue
        side, name = _process_role(s, roots, data)
        leaf = s.stack[0] if s.stack else ("[unknown]", "[unknown]")
        if any(sym in SOFTIRQ_FRAMES for sym, _ in s.stack):
            target = role("softirq", "network receive softirq")
            target.ran_in[f"{side}: {name}"] += s.period_ns
        elif name == "threads":
            target = threads.setdefault((side, s.pid, s.tid), Role(side, name))
        else:
            target = role(side, name)
        target.ns += s.period_ns
        # perf names a thread caught while it exits ":-1", tid -1: say so instead.
        comm = "(exiting thread)" if s.tid < 0 else s.comm
        target.threads[(comm, s.pid, s.tid)] += s.period_ns
        target.symbols[leaf] += s.period_ns
    for (side, _, _), thread in threads.items():
        digest = sum(ns for (sym, dso), ns in thread.symbols.items() if _is_digest(sym, dso))
        name = "SHA-256 thread" if digest * 2 > thread.ns else "other threads"
        merged = role(side, name)
        merged.ns += thread.ns
        merged.threads.update(thread.threads)
        merged.symbols.update(thread.symbols)
    return sorted(roles.values(), key=lambda r: (SIDES.index(r.side), -r.ns))


def _is_digest(symbol: str, dso: str) -> bool:
    return bool(DIGEST_SYMBOL.search(symbol) or DIGEST_DSO.search(Path(dso).name))


# ---- the result


def summarize_profile(
    data: PerfData,
    recording: PerfRecording,
    command: str,
    mtu: int,
    moved_bytes: int,
    gbit_per_s: float | None,
) -> dict[str, Any]:
    """The JSON-ready profile of one run: roles with CPU seconds, shares, top symbols."""
    assert recording.begin_t is not None and recording.end_t is not None
    start, end = recording.begin_t, recording.end_t
    cores = os.cpu_count() or 1
    capacity_ns = (end - start) * cores * 1e9
    gib = moved_bytes / GiB
    roles = attribute(data, recording.all_roots, start, end)
    in_window = sum(r.ns for r in roles)
    out_roles = []
    for r in roles:
        entry: dict[str, Any] = {
            "side": r.side,
            "role": r.name,
            "cpu_seconds": r.ns / 1e9,
            "share_of_all_cores": r.ns / capacity_ns,
            "cpu_seconds_per_gib": r.ns / 1e9 / gib if gib else None,
            "threads": [
                {"comm": comm, "pid": pid, "tid": tid, "cpu_seconds": ns / 1e9}
                for (comm, pid, tid), ns in r.threads.most_common(8)
            ],
            "thread_count": len(r.threads),
            "top_symbols": [
                {"symbol": sym, "dso": dso, "share_of_role": ns / r.ns}
                for (sym, dso), ns in r.symbols.most_common(TOP_SYMBOLS)
            ],
        }
        if r.ran_in:
            entry["ran_in"] = {k: ns / r.ns for k, ns in r.ran_in.most_common()}
        out_roles.append(entry)
    sides = {}
    for side in SIDES:
        ns = sum(r.ns for r in roles if r.side == side)
        sides[side] = {
            "cpu_seconds": ns / 1e9,
            "share_of_all_cores": ns / capacity_ns,
            "cpu_seconds_per_gib": ns / 1e9 / gib if gib else None,
        }
    return {
        "command": command,
        "mtu": mtu,
        "bytes": moved_bytes,
        "seconds": end - start,
        "gbit_per_s": gbit_per_s,
        "cores": cores,
        "event": "cpu-clock",
        "frequency_hz": recording.freq,
        "samples": sum(1 for s in data.samples if start <= s.time <= end),
        "sampled_cpu_seconds": in_window / 1e9,
        "roots": {str(pid): what for pid, what in recording.roots.items()},
        "sides": sides,
        "roles": out_roles,
    }


def _short_dso(dso: str) -> str:
    if dso.startswith("[kernel"):
        return "kernel"
    name = Path(dso).name
    return name.split(".so")[0] if ".so" in name else name


def profile_table(profile: dict[str, Any]) -> str:
    """Markdown: one line per role (sender, receiver, softirq, other), then per-side totals."""
    p = profile
    rate = f", {p['gbit_per_s']:.2f} Gbit/s" if p.get("gbit_per_s") else ""
    lines = [
        f"Profile of `{p['command']}` at MTU {p['mtu']}: {p['bytes'] / MiB:.0f} MiB in "
        f"{p['seconds']:.2f} s{rate}; {p['samples']} {p['event']} samples at "
        f"{p['frequency_hz']} Hz over all {p['cores']} cores while the command ran.",
        "",
        "| side | role | threads (comm pid/tid) | CPU s | share of all cores | CPU s/GiB "
        "| top symbols (share of the role's samples) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in p["roles"]:
        threads = ", ".join(f"{t['comm']} {t['pid']}/{t['tid']}" for t in r["threads"][:3])
        if r["thread_count"] > 3:
            threads += f" (+{r['thread_count'] - 3})"
        symbols = ", ".join(
            f"{s['symbol']} ({_short_dso(s['dso'])}) {s['share_of_role'] * 100:.0f}%"
            for s in r["top_symbols"]
        )
        if r.get("ran_in"):
            where = ", ".join(f"{k} {v * 100:.0f}%" for k, v in list(r["ran_in"].items())[:2])
            symbols += f"; ran in: {where}"
        per_gib = r["cpu_seconds_per_gib"]
        lines.append(
            f"| {r['side']} | {r['role']} | {threads} | {r['cpu_seconds']:.2f} | "
            f"{r['share_of_all_cores'] * 100:.1f} % | "
            f"{'-' if per_gib is None else f'{per_gib:.2f}'} | {symbols} |"
        )
    totals = ", ".join(
        f"{side} {v['cpu_seconds']:.2f} CPU s ({v['share_of_all_cores'] * 100:.1f} %"
        + (f", {v['cpu_seconds_per_gib']:.2f} s/GiB)" if v["cpu_seconds_per_gib"] else ")")
        for side, v in p["sides"].items()
    )
    lines += ["", f"Per side: {totals}."]
    return "\n".join(lines)
