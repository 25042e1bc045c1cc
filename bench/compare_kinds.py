"""What `bench/compare.py` measures: one function per kind of measurement, and the table of kinds.

Each kind is a `Kind` whose `measure(ctx)` runs once inside a two-host lab and returns a
`Sample` (Gbit/s for throughput, microseconds for round-trip time), or raises BenchError when
the run errored or its output failed a sanity check. A kind that needs an l2fast command that
does not exist yet names that command in `probe`; it is then reported as "not available yet"
instead of being run.

A kind whose l2fast command does not exist here (its `--help` fails) is reported as "not
available yet", never as a number; a hook may also raise NotBuilt for the same effect.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from compare_hosts import (
    BenchError,
    LabHosts,
    TestFile,
    TreeMemory,
    ip_addresses,
    last_line,
    read_line,
    run_in,
    sha256_of,
    start_in,
    stop,
    wait_exit,
    wait_listening,
)

from l2fast.lab import iproute
from l2fast.wire.constants import FRAME_OVERHEAD

PY = [sys.executable, "-m"]
RAW_RX_WAIT_S = 20.0  # the receiver gives up if no frame came by then
MARGIN_S = 30.0  # added to every expected duration to make a timeout
GBIT = 1e9


class NotBuilt(Exception):
    """The l2fast side of a measurement is not written yet; the report says "not available"."""


@dataclass
class Sample:
    """One run of one kind."""

    value: float  #: the headline: Gbit/s (throughput kinds) or microseconds (RTT kinds)
    detail: dict[str, Any] = field(default_factory=dict)  #: everything else the run reported


class RunObserver(Protocol):
    """Watches the measured part of one l2fast run (bench/cpu_profile.py profiles through it).

    A kind calls `process` for each process of the run it starts or talks to (role "sender",
    "receiver" or "command"), then `begin` right before the measured command starts and `end`
    right after it exits.
    """

    def process(self, pid: int, role: str) -> None:
        """`pid` is the run's `role` process (a daemon, or the command itself)."""

    def begin(self) -> None:
        """The measured command is about to start."""

    def end(self) -> None:
        """The measured command has exited."""


@dataclass
class RunContext:
    """What a measurement needs to know about the lab and the settings."""

    hosts: LabHosts
    seconds: float  #: length of a timed throughput run
    file: TestFile | None  #: the file for copy kinds
    ping_count: int
    ping_interval: float
    rep: int  #: 0-based repetition index (the first run of a copy kind checks the digest)
    port: int = 5001  #: next TCP port for a baseline; bumped per run so no run meets the last
    daemons: bool = False  #: l2fast daemons are running in h1 and h2
    #: pids of those daemons by host ("h1", "h2") while they run
    daemon_pids: dict[str, int] = field(default_factory=dict)
    #: watches l2fast's own runs (the profiling pass sets it; None when only measuring)
    observer: RunObserver | None = None
    #: sample the receiving daemon's PSS during `l2fast send` (TreeMemory). The comparison's
    #: throughput runs turn it off, so that l2fast's copy bears no more sampling than nc's
    #: (VmHWM reads); the scaling runs, memory.py and small_files.py report PSS and keep it.
    receiver_pss: bool = True

    def next_port(self) -> int:
        """A port no earlier run of this lab used."""
        self.port += 1
        return self.port


@dataclass(frozen=True)
class Kind:
    """One kind of measurement."""

    key: str  #: JSON key
    label: str  #: shown in the table
    unit: str  #: "Gbit/s" or "us"
    measure: Callable[[RunContext], Sample]
    #: l2fast sub-commands whose `--help` must work for this kind to run (empty: always runs)
    probe: tuple[str, ...] = ()
    needs_file: bool = False
    #: compare.py runs `l2fast daemon` in h1 and h2 around each run (kinds that start their
    #: own, as l2fast send does, leave this False)
    daemons: bool = False


# ---- 1. the raw-frame ceiling


def blast_payload_gbit(
    what: str, h: LabHosts, bad: int, frame_size: int, frames: int, seconds: float, got: Any
) -> float:
    """Check what a raw blast's counter reported (nothing corrupted, full-size frames, some
    arrived) and return its payload Gbit/s. Payload bits, like iperf3's TCP goodput and nc's
    file bytes: the l2fast header and the Ethernet header are overhead for every tool alike, so
    they count for none."""
    if bad:
        raise BenchError(f"{what}: {bad} frames arrived corrupted (CRC32C mismatch)")
    if frame_size != h.mtu + 14:
        raise BenchError(f"{what}: frames of {frame_size} B, expected {h.mtu + 14}")
    if not frames or not seconds:
        raise BenchError(f"{what}: nothing arrived in {h.h2} ({json.dumps(got)[:300]})")
    return frames * (frame_size - FRAME_OVERHEAD) * 8 / seconds / GBIT


def measure_raw(ctx: RunContext) -> Sample:
    """The l2fast raw blast h1 -> h2: verified frames that arrived, per second."""
    h = ctx.hosts
    rx = start_in(h.h2, [*PY, "l2fast.rawblast", "rx", "--wait", str(RAW_RX_WAIT_S)])
    try:
        ready = read_line(rx, RAW_RX_WAIT_S, f"raw blast receiver in {h.h2}")
        if json.loads(ready) != {"ready": True}:
            raise BenchError(f"raw blast receiver in {h.h2} said {ready.strip()!r}")
        tx_cmd = [*PY, "l2fast.rawblast", "tx", "--dst", h.mac2, "--seconds", str(ctx.seconds)]
        tx = json.loads(run_in(h.h1, tx_cmd, timeout=ctx.seconds + MARGIN_S).stdout)
        out, err = rx.communicate(timeout=RAW_RX_WAIT_S + MARGIN_S)
        if rx.returncode != 0:
            raise BenchError(f"raw blast receiver in {h.h2} failed: {last_line(err)}")
        got = json.loads(out.strip().splitlines()[-1])
    finally:
        stop(rx)
    payload_gbit = blast_payload_gbit(
        "raw blast", h, got["bad"], got["frame_size"], got["frames"], got["seconds"], got
    )
    return Sample(
        payload_gbit,
        {
            "frames_per_s": got["frames_per_s"],
            "frame_gbit_per_s": got["gbit_per_s"],
            "frame_size": got["frame_size"],
            "frames_received": got["frames"],
            "frames_sent": tx["frames"],
            "kernel_drops": got["kernel_drops"],
            "seconds": got["seconds"],
        },
    )


def measure_raw_daemon(ctx: RunContext) -> Sample:
    """`l2fast bench <h2> --raw` in h1, the daemons running: the same blast, counted by a
    process of h2's daemon on a socket of its receiving fanout group, so the frames take the
    path `l2fast bench`'s do (the group's demultiplexer on the sending core). Next to the raw
    ceiling (no daemon, one lone socket) it shows what that receive path costs by itself."""
    h = ctx.hosts
    argv = [*PY, "l2fast", "bench", h.mac2, "--raw", "-t", str(ctx.seconds), "--json"]
    out = run_in(h.h1, argv, timeout=ctx.seconds + RAW_RX_WAIT_S + MARGIN_S).stdout
    try:
        end = json.loads(out).get("end") or {}
    except json.JSONDecodeError:
        raise BenchError(f"l2fast bench --raw printed no JSON: {out.strip()[-300:]!r}") from None
    if "error" in end:
        raise BenchError(f"l2fast bench --raw failed: {end['error']}")
    payload_gbit = blast_payload_gbit(
        "l2fast bench --raw",
        h,
        end.get("bad_frames", 0),
        end.get("frame_size", 0),
        end.get("frames_arrived", 0),
        end.get("seconds", 0),
        end,
    )
    return Sample(payload_gbit, end)


# ---- 3. iperf3 over kernel TCP


def measure_iperf3(ctx: RunContext) -> Sample:
    """One iperf3 TCP stream h1 -> h2 for `seconds`; the receiver's goodput."""
    h = ctx.hosts
    port = ctx.next_port()
    with ip_addresses(h):
        server = start_in(h.h2, ["iperf3", "-s", "-1", "-B", h.ip2, "-p", str(port)])
        try:
            wait_listening(h.h2, port, "iperf3 -s")
            client = run_in(
                h.h1,
                ["iperf3", "-c", h.ip2, "-p", str(port), "-t", str(ctx.seconds), "-J"],
                timeout=ctx.seconds + MARGIN_S,
                check=False,  # on failure iperf3 still prints JSON, with the reason in "error"
            )
            wait_exit(server, MARGIN_S, "iperf3 -s -1")
        finally:
            stop(server)
    try:
        data = json.loads(client.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 printed no JSON: {last_line(client.stderr)}") from None
    if "error" in data or client.returncode != 0:
        raise BenchError(f"iperf3 failed: {data.get('error', last_line(client.stderr))}")
    end = data["end"]
    bps = float(end["sum_received"]["bits_per_second"])
    cpu = end.get("cpu_utilization_percent", {})
    return Sample(
        bps / GBIT,
        {
            "sender_gbit_per_s": float(end["sum_sent"]["bits_per_second"]) / GBIT,
            "retransmits": end["sum_sent"].get("retransmits"),
            "bytes_received": end["sum_received"]["bytes"],
            "seconds": end["sum_received"]["seconds"],
            "cpu_sender_percent": cpu.get("host_total"),
            "cpu_receiver_percent": cpu.get("remote_total"),
        },
    )


# ---- 4. nc copying a file, tmpfs to tmpfs


def copy_with_nc(ctx: RunContext, file: TestFile, check_digest: bool) -> Sample:
    """Copy `file` h1 -> h2 with netcat into tmpfs; time, verify, delete the copy.

    Timed from starting the sender until the receiver exited (its last byte is in the file).
    """
    h = ctx.hosts
    port = ctx.next_port()
    copy = file.path.with_name(f"{file.path.stem}.copy-{h.mtu}-{ctx.rep}-{port}")
    try:
        with ip_addresses(h):
            with open(copy, "wb") as sink:
                receiver = start_in(h.h2, ["nc", "-l", h.ip2, str(port)], stdout=sink)
            try:
                wait_listening(h.h2, port, "nc -l")
                with open(file.path, "rb") as source:
                    start = time.perf_counter()
                    sender = start_in(h.h1, ["nc", "-N", h.ip2, str(port)], stdin=source)
                budget = file.size / 50e6 + MARGIN_S  # even 50 MB/s would finish in time
                code, peak_kib = wait_exit(receiver, budget, "nc -l (receiver)", rss_of="nc")
                seconds = time.perf_counter() - start
                sender_code, _ = wait_exit(sender, MARGIN_S, "nc -N (sender)")
            finally:
                stop(receiver)
        if code or sender_code:
            raise BenchError(f"nc copy failed: receiver exited {code}, sender {sender_code}")
        got = copy.stat().st_size
        if got != file.size:
            raise BenchError(f"nc copy is {got} bytes, the file has {file.size}")
        digest = None
        if check_digest:
            digest = sha256_of(copy)  # outside the timing: SHA-256 costs ~0.7 s per GiB
            if digest != file.sha256:
                raise BenchError(f"nc copy's SHA-256 {digest} differs from the file's")
    finally:
        copy.unlink(missing_ok=True)
    return Sample(
        file.size * 8 / seconds / GBIT,
        {
            "seconds": seconds,
            "bytes": file.size,
            "sha256_checked": digest is not None,
            "receiver_peak_rss_kib": peak_kib,
        },
    )


def measure_nc(ctx: RunContext) -> Sample:
    """nc copy of the comparison file (the first run of each lab also checks the SHA-256)."""
    assert ctx.file is not None
    return copy_with_nc(ctx, ctx.file, check_digest=ctx.rep == 0)


# ---- 6. round-trip time


_PING_TIME = re.compile(r"time=([0-9.]+) ms")


def measure_icmp_ping(ctx: RunContext) -> Sample:
    """ICMP echo h1 -> h2, `ping_count` at `ping_interval`; RTTs in microseconds."""
    h = ctx.hosts
    with ip_addresses(h):
        # One echo first so neighbour discovery (ARP) is not in the measured round trips.
        run_in(h.h1, ["ping", "-n", "-c", "1", "-W", "2", h.ip2], timeout=MARGIN_S)
        count, interval = str(ctx.ping_count), str(ctx.ping_interval)
        out = run_in(
            h.h1,
            ["ping", "-n", "-c", count, "-i", interval, h.ip2],
            timeout=ctx.ping_count * ctx.ping_interval + MARGIN_S,
        ).stdout
    rtts = [float(m) * 1000 for m in _PING_TIME.findall(out)]
    if not rtts:
        raise BenchError(f"ping got no reply from {h.ip2}: {last_line(out)}")
    # The median, as issue 6 states the RTT target (a few scheduling stalls of a loaded
    # machine move an average far more; both are in the detail).
    return Sample(statistics.median(rtts), rtt_detail(rtts, ctx.ping_count))


def rtt_detail(rtts_us: list[float], sent: int) -> dict[str, Any]:
    """The statistics recorded for one ping run."""
    return {
        "rtt_avg_us": statistics.fmean(rtts_us),
        "rtt_median_us": statistics.median(rtts_us),
        "rtt_min_us": min(rtts_us),
        "rtt_max_us": max(rtts_us),
        "sent": sent,
        "received": len(rtts_us),
    }


def measure_l2fast_ping(ctx: RunContext) -> Sample:
    """`l2fast ping` h1 -> h2 (the daemons run), same count and interval as ICMP.

    Its `--json` carries rtt_min/avg/max/median_us; the headline is the median, as for ICMP
    ping (per-reply times parsed), so the ratio compares like with like.
    """
    h = ctx.hosts
    argv = [*PY, "l2fast", "ping", h.mac2, "-c", str(ctx.ping_count)]
    argv += ["-i", str(ctx.ping_interval), "--json"]
    out = run_in(h.h1, argv, timeout=ctx.ping_count * ctx.ping_interval + MARGIN_S).stdout
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"l2fast ping printed no JSON: {out.strip()[-300:]!r}") from None
    median = data.get("rtt_median_us")
    if not median or not data.get("received"):
        raise BenchError(f"l2fast ping got no answer: {out.strip()[-300:]}")
    return Sample(float(median), data)


# ---- 2. and 5.: l2fast's own transfer


def measure_l2fast_bench(ctx: RunContext) -> Sample:
    """`l2fast bench <h2's MAC> -t SECONDS --json` in h1, memory to memory, reliable (issue 6).

    The daemons in h1 and h2 are running (ctx.daemons). The headline is the summary's
    `end.gbit_per_s`: payload bytes the receiver acknowledged, like iperf3's goodput.
    """
    h = ctx.hosts
    argv = [*PY, "l2fast", "bench", h.mac2, "-t", str(ctx.seconds), "--json"]
    obs = ctx.observer
    if obs is None:
        out = run_in(h.h1, argv, timeout=ctx.seconds + MARGIN_S).stdout
    else:
        # The sending is done by h1's daemon, the receiving by h2's; the command only asks.
        obs.process(ctx.daemon_pids["h1"], "sender")
        obs.process(ctx.daemon_pids["h2"], "receiver")
        obs.begin()
        command = functools.partial(obs.process, role="command")
        out = run_in(h.h1, argv, timeout=ctx.seconds + MARGIN_S, on_start=command).stdout
        obs.end()
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"l2fast bench printed no JSON: {out.strip()[-300:]!r}") from None
    end = data.get("end") or {}
    if "error" in data or "error" in end:
        raise BenchError(f"l2fast bench failed: {data.get('error') or end.get('error')}")
    if data.get("mtu") != h.mtu:
        raise BenchError(f"l2fast bench negotiated MTU {data.get('mtu')}, the lab has {h.mtu}")
    gbit = end.get("gbit_per_s")
    if not isinstance(gbit, (int, float)) or gbit <= 0 or not end.get("bytes"):
        raise BenchError(f"l2fast bench moved nothing: {json.dumps(end)[:300]}")
    return Sample(float(gbit), {"mtu": data["mtu"], "chunk_size": data.get("chunk_size"), **end})


def measure_l2fast_send(ctx: RunContext) -> Sample:
    """`l2fast send` of the comparison file h1 -> h2, verified (issue 5)."""
    assert ctx.file is not None
    return send_with_l2fast(ctx, ctx.file)


@dataclass
class SendRun:
    """One `l2fast send` into a receiving daemon started for it, checked (`l2fast_send_run`)."""

    event: dict[str, Any]  #: the final `done` event: verified, nothing skipped, sizes positive
    wall_seconds: float  #: the whole command, Python start-up included
    memory: TreeMemory  #: the receiving daemon's process tree, sampled while it ran
    recv_dir: Path  #: where the daemon placed what it received


def l2fast_send_run(ctx: RunContext, path: Path, size: int, run_dir: Path) -> SendRun:
    """`l2fast send <h2> PATH --json` in h1 into a daemon started in h2 for this run only.

    The daemon (`--accept all`, `--recv-dir run_dir/recv`, log in run_dir) runs for this
    transfer alone, so its peak memory belongs to it and no resume state of an earlier run can
    shorten it; it is stopped before this returns. h1 runs no daemon: `l2fast send` is the
    sender itself. The receiver's memory is sampled over the daemon's whole process tree
    (receive process and writers included) while the command runs; see TreeMemory. `size`
    (bytes to send) bounds the time allowed. The caller removes `run_dir`.
    """
    h = ctx.hosts
    recv_dir = run_dir / "recv"
    recv_dir.mkdir(parents=True)
    log = run_dir / "daemon-h2.log"
    with open(log, "w") as err:
        argv = [*PY, "l2fast", "daemon", "-i", "eth0", "--name", "h2"]
        argv += ["--accept", "all", "--recv-dir", str(recv_dir)]
        daemon = start_in(h.h2, argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_daemon(h.h2, daemon, log)
        send = [*PY, "l2fast", "send", h.mac2, str(path), "--json", "-i", "eth0", "--name", "h1"]
        budget = size / 10e6 + MARGIN_S  # even 10 MB/s would finish in time
        obs = ctx.observer
        sender = None
        if obs is not None:
            obs.process(daemon.pid, "receiver")
            sender = functools.partial(obs.process, role="sender")
            obs.begin()
        with TreeMemory(daemon.pid, pss=ctx.receiver_pss) as memory:
            start = time.perf_counter()
            proc = run_in(h.h1, send, timeout=budget, check=False, on_start=sender)
            wall = time.perf_counter() - start
        if obs is not None:
            obs.end()
        if daemon.poll() is not None:
            raise BenchError(f"the receiving daemon exited {daemon.returncode}")
    except BenchError as exc:
        raise BenchError(f"{exc}; receiving daemon: {last_line(log.read_text())}") from None
    finally:
        stop(daemon)
    return SendRun(_final_send_event(proc, log), wall, memory, recv_dir)


def send_with_l2fast(ctx: RunContext, file: TestFile, check_digest: bool | None = None) -> Sample:
    """Send `file` h1 -> h2 with `l2fast send` into tmpfs; verify; delete the copy.

    See `l2fast_send_run` for the daemon and the memory sampling. Throughput, seconds and
    bytes are those of the sender's final NDJSON event (`done`); the wall time of the whole
    command (Python start-up, socket set-up included) is in the detail. The received file's
    size is checked every run, its SHA-256 on the first run of each MTU and scaling size
    (`check_digest`, default `ctx.rep == 0`), outside the timing.
    """
    h = ctx.hosts
    if check_digest is None:
        check_digest = ctx.rep == 0
    run_dir = file.path.with_name(f"l2fast-rx-{h.mtu}-{ctx.rep}-{ctx.next_port()}")
    try:
        run = l2fast_send_run(ctx, file.path, file.size, run_dir)
        event, recv_dir = run.event, run.recv_dir
        if event["bytes"] != file.size:
            raise BenchError(f"l2fast send reports {event['bytes']} bytes, not {file.size}")
        copy = recv_dir / file.path.name
        leftovers = sorted(p.name for p in recv_dir.iterdir() if p != copy)
        if leftovers:
            raise BenchError(f"l2fast send left other files in the receive directory: {leftovers}")
        got = copy.stat().st_size if copy.exists() else None
        if got != file.size:
            raise BenchError(f"l2fast send's copy is {got} bytes, the file has {file.size}")
        digest = None
        if check_digest:
            digest = sha256_of(copy)  # outside the timing: SHA-256 costs ~0.7 s per GiB
            if digest != file.sha256:
                raise BenchError(f"l2fast send's copy has SHA-256 {digest}, the file {file.sha256}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    seconds = float(event["seconds"])
    memory = run.memory
    return Sample(
        float(event["gbit_per_s"]),
        {
            "seconds": seconds,
            "wall_seconds": run.wall_seconds,
            "bytes": int(event["bytes"]),
            "bytes_sent": event.get("bytes_sent"),
            "resent_bytes": event.get("resent_bytes"),
            "sha256_checked": digest is not None,
            "receiver_peak_rss_kib": memory.peak_hwm_kib,
            "receiver_peak_pss_kib": memory.peak_pss_kib,
            "receiver_processes": memory.peak_processes,
            "memory_samples": memory.samples,
        },
    )


def _final_send_event(proc: subprocess.CompletedProcess[str], log: Path) -> dict[str, Any]:
    """The `done` event of `l2fast send --json`, checked: verified, whole file, no skipping."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        event = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        event = {}
    if proc.returncode != 0 or event.get("event") != "done":
        raise BenchError(
            f"l2fast send exited {proc.returncode}: {last_line(proc.stderr or proc.stdout)}; "
            f"receiving daemon: {last_line(log.read_text())}"
        )
    if event.get("verified") is not True:
        raise BenchError(f"l2fast send: the receiver did not verify the file ({event})")
    if event.get("skipped_bytes"):
        raise BenchError(f"l2fast send skipped {event['skipped_bytes']} bytes (resumed?)")
    for key in ("seconds", "bytes", "gbit_per_s"):
        if not isinstance(event.get(key), (int, float)) or event[key] <= 0:
            raise BenchError(f"l2fast send's final event has {key}={event.get(key)!r}")
    return event


# The order here is the order of the rotation within one repetition and of the table.
KINDS: tuple[Kind, ...] = (
    Kind("raw", "raw-frame ceiling (l2fast raw blast)", "Gbit/s", measure_raw),
    Kind(
        "raw_daemon",
        "raw blast through the daemons (l2fast bench --raw)",
        "Gbit/s",
        measure_raw_daemon,
        daemons=True,
    ),
    Kind(
        "l2fast_bench",
        "l2fast bench (reliable, memory to memory)",
        "Gbit/s",
        measure_l2fast_bench,
        probe=("bench", "daemon"),
        daemons=True,
    ),
    Kind("iperf3", "iperf3, kernel TCP, 1 stream", "Gbit/s", measure_iperf3),
    Kind("nc", "nc file copy, tmpfs -> tmpfs", "Gbit/s", measure_nc, needs_file=True),
    Kind(
        "l2fast_send",
        "l2fast send, tmpfs -> tmpfs, verified",
        "Gbit/s",
        measure_l2fast_send,
        probe=("send", "daemon"),
        needs_file=True,
    ),
    Kind("icmp_ping", "ICMP ping RTT (median)", "us", measure_icmp_ping),
    Kind(
        "l2fast_ping",
        "l2fast ping RTT (median)",
        "us",
        measure_l2fast_ping,
        probe=("ping", "daemon"),
        daemons=True,
    ),
)
KINDS_BY_KEY = {kind.key: kind for kind in KINDS}


def missing_commands(kind: Kind) -> list[str]:
    """The l2fast sub-commands `kind` needs that do not exist here (`--help` fails)."""
    missing = []
    for command in kind.probe:
        probe = subprocess.run(
            [*PY, "l2fast", command, "--help"], capture_output=True, timeout=MARGIN_S
        )
        if probe.returncode != 0:
            missing.append(command)
    return missing


# ---- the l2fast daemons that l2fast's own kinds talk to

DAEMON_READY_TIMEOUT_S = 10.0


@contextlib.contextmanager
def l2fast_daemons(hosts: LabHosts, log_dir: Path) -> Iterator[dict[str, int]]:
    """`l2fast daemon -i eth0 --name hN` in both hosts while the block runs; stopped after.

    The block gets their pids by host name ("h1", "h2").

    Ready means its control socket (abstract `@l2fast/eth0`, scoped to the namespace) listens.
    Their stderr goes to files in `log_dir`: a pipe nobody reads would stall a chatty daemon.
    """
    started: list[tuple[str, subprocess.Popen[str], Path]] = []
    pids: dict[str, int] = {}
    try:
        for ns, name in ((hosts.h1, "h1"), (hosts.h2, "h2")):
            log = log_dir / f"daemon-{hosts.lab}-{name}.log"
            with open(log, "w") as err:
                argv = [*PY, "l2fast", "daemon", "-i", "eth0", "--name", name]
                proc = start_in(ns, argv, stdout=subprocess.DEVNULL, stderr=err)
            started.append((ns, proc, log))
            pids[name] = proc.pid
        for ns, proc, log in started:
            _wait_daemon(ns, proc, log)
        yield pids
    finally:
        for _, proc, _ in started:
            stop(proc)


def _wait_daemon(ns: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + DAEMON_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"l2fast daemon in {ns} exited {proc.returncode}: {last_line(log.read_text())}"
            )
        out = iproute.run(["ip", "netns", "exec", ns, "ss", "-xlH"]).stdout
        if "@l2fast/eth0" in out:
            return
        time.sleep(0.05)
    raise BenchError(f"l2fast daemon in {ns} not ready in {DAEMON_READY_TIMEOUT_S:.0f} s")
