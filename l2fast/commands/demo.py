"""`l2fast demo`: the main job on the built-in lab, end to end, in about ten seconds.

It builds two test hosts (network namespaces joined by a veth pair), starts `l2fast daemon` in
each with one LAN key for both, runs the real commands between them exactly as a user would
type them (`ip netns exec HOST l2fast discover|chat|ping|send ...`): discovery, an acknowledged chat
message, ping, a file sent with `l2fast send` (SHA-256 verified by the receiver and re-checked
here) with its throughput, then a CRC-checked raw-frame blast that measures the link itself.
It prints what each step showed and removes the lab again, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from l2fast.commands.argtypes import number
from l2fast.errors import L2fastError, NeedsPrivilege
from l2fast.node.auth import generate_key_file
from l2fast.wire.constants import MAX_MTU, MIN_MTU

IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"


@dataclass
class DemoReport:
    """What the demo measured, for `--json`."""

    lab: str
    mtu: int
    steps: list[dict[str, Any]] = field(default_factory=list)


def in_host(ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `l2fast ARGS` inside lab host `ns`; raise with its stderr when it fails."""
    cmd = [IP, "netns", "exec", ns, sys.executable, "-m", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise L2fastError(
            f"demo step failed: {' '.join(args)} in {ns}: "
            f"{(result.stderr.strip().splitlines() or ['(no output)'])[-1]}"
        )
    return result


@dataclass
class LabDaemon:
    """`l2fast daemon` running in a lab host, logging to a temporary file.

    A file, not a pipe: nobody drains a pipe during the demo, and a full one would block the
    daemon's logging. The log is read only when something fails.
    """

    ns: str
    proc: subprocess.Popen[str]
    log: IO[str]

    @classmethod
    def start(cls, ns: str, name: str, *extra: str) -> LabDaemon:
        """Start one in host `ns`, as node `name`, with `extra` daemon options."""
        log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by stop())
        proc = subprocess.Popen(
            [
                IP,
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "l2fast",
                "daemon",
                "-i",
                "eth0",
                "--name",
                name,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        return cls(ns, proc, log)

    def tail(self) -> str:
        """The end of its log."""
        self.log.seek(0)
        return self.log.read()[-500:].strip()

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it hangs; close the log."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def wait_for_daemon(daemon: LabDaemon, deadline_s: float = 15.0) -> None:
    """Until the daemon answers on its control socket.

    Without this, a command could start before the daemon listens and quietly run a node of its
    own instead (which is what commands do when no daemon runs).
    """
    deadline = time.monotonic() + deadline_s
    while True:
        ns = daemon.ns
        if daemon.proc.poll() is not None:
            raise L2fastError(f"the daemon in {ns} exited: {daemon.tail()}")
        result = subprocess.run(
            [IP, "netns", "exec", ns, sys.executable, "-m", "l2fast", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise L2fastError(f"the daemon in {ns} did not answer within {deadline_s:.0f} s")
        time.sleep(0.1)


def wait_for_peer(ns: str, peer: str, deadline_s: float = 10.0) -> list[dict[str, Any]]:
    """Discovery from `ns` until `peer` is in the table (daemons start in well under a second)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = subprocess.run(
            [
                IP,
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "l2fast",
                "discover",
                "--json",
                "--timeout",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode == 0:
            table: list[dict[str, Any]] = json.loads(result.stdout)
            if any(entry.get("name") == peer for entry in table):
                return table
        if time.monotonic() >= deadline:
            raise L2fastError(f"{ns} did not discover {peer} within {deadline_s:.0f} s")
        time.sleep(0.2)


def file_step(h1: str, workdir: Path, recv_dir: Path, size_mib: int) -> dict[str, Any]:
    """`l2fast send h2 FILE` from h1 (through its daemon); check the copy's SHA-256 ourselves."""
    source = workdir / "demo-file.bin"
    with source.open("wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(1 << 20))
    lines = in_host(h1, "l2fast", "send", "h2", str(source), "--json", timeout=300).stdout
    done = json.loads(lines.strip().splitlines()[-1])
    received = recv_dir / source.name
    same = received.is_file() and file_sha256(received) == file_sha256(source)
    if not (done.get("verified") and same):
        raise L2fastError(f"the demo file did not arrive intact: {done}")
    return {"step": "send", "file_bytes": source.stat().st_size, "result": done}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def raw_link_step(h1: str, h2: str, h2_mac: str, seconds: float) -> dict[str, Any]:
    """Blast CRC-checked frames h1 -> h2 and report what arrived verified."""
    rx = subprocess.Popen(
        [IP, "netns", "exec", h2, sys.executable, "-m", "l2fast.rawblast", "rx", "--wait", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rx.stdout is not None
        if rx.stdout.readline().strip() != '{"ready": true}':
            raise L2fastError(f"the receiver in {h2} did not start: {rx.communicate()[1]}")
        tx = json.loads(
            in_host(h1, "l2fast.rawblast", "tx", "--dst", h2_mac, "--seconds", str(seconds)).stdout
        )
        out, err = rx.communicate(timeout=60)
        if rx.returncode != 0:
            raise L2fastError(f"the receiver in {h2} failed: {err.strip()}")
        received = json.loads(out)
    finally:
        if rx.poll() is None:
            rx.kill()
    return {"step": "raw link h1 -> h2", "tx": tx, "rx": received}


def run(args: argparse.Namespace) -> int:
    """Build the lab, run each step, always tear down."""
    if os.geteuid() != 0:
        raise NeedsPrivilege(
            "the demo builds network namespaces, which needs root",
            hint="run it with sudo: sudo l2fast demo (a capability on python3 is not enough)",
        )
    from l2fast.lab import netns
    from l2fast.lab.state import LabSpec, host_mac

    name = args.name or f"l2demo{os.getpid() % 10000}"
    report = DemoReport(lab=name, mtu=args.mtu)
    say = (lambda *_a: None) if args.json else print
    say(f"l2fast demo: two hosts in network namespaces, a veth pair, MTU {args.mtu}")
    started = time.monotonic()
    netns.up(LabSpec(name=name, hosts=2, mtu=args.mtu))
    try:
        h1, h2 = f"{name}-h1", f"{name}-h2"
        say(f"  lab up: {h1} ({host_mac(1)}) <-> {h2} ({host_mac(2)})")

        # tmpfs on both sides: the demo measures l2fast, not a disk. /dev/shm is shared by the
        # lab's namespaces (they share the mount namespace).
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/dev/shm"))
        recv_dir = workdir / "received"
        recv_dir.mkdir()
        # The lab's two hosts share one LAN key, as every host of a real LAN should: every
        # control frame between them is sealed (PROTOCOL.md §Authentication).
        key_file = workdir / "lan.key"
        key = generate_key_file(key_file)
        keyed = ("--key", str(key_file))
        daemons = [
            LabDaemon.start(h1, "h1", *keyed),
            LabDaemon.start(h2, "h2", "--accept", "all", "--recv-dir", str(recv_dir), *keyed),
        ]
        try:
            for daemon in daemons:
                wait_for_daemon(daemon)
            for ns in (h1, h2):
                status = json.loads(in_host(ns, "l2fast", "status", "--json").stdout)
                if status.get("auth") != {"key_id": key.key_id}:
                    raise L2fastError(f"the daemon in {ns} does not use the demo's LAN key")
            report.steps.append({"step": "key", "key_id": key.key_id})
            say(
                f"  LAN key {key.key_id} on both daemons: control frames sealed "
                "(HMAC-SHA256), a node without the key is not heard"
            )
            table = wait_for_peer(h1, "h2")
            report.steps.append({"step": "discover", "table": table})
            seen = ", ".join(f"{entry['name']} ({entry['mac']})" for entry in table)
            say(f"  discover from h1: {seen}")

            text = "hello from h1 over raw Ethernet"
            sent_at = time.monotonic()
            in_host(h1, "l2fast", "chat", "h2", text)
            delivered_ms = (time.monotonic() - sent_at) * 1e3
            history = json.loads(in_host(h2, "l2fast", "chat", "--history", "--json").stdout)
            got = [m for m in history if m.get("text") == text]
            if not got:
                raise L2fastError("the chat message did not show up in h2's history")
            report.steps.append({"step": "chat", "text": text, "history_entry": got[0]})
            say(
                f"  chat h1 -> h2: {text!r} acknowledged (command took {delivered_ms:.0f} ms); "
                f"h2's history shows it from {got[0]['name']} ({got[0]['mac']})"
            )

            ping = json.loads(
                in_host(h1, "l2fast", "ping", "h2", "-c", "10", "-i", "0.02", "--json").stdout
            )
            report.steps.append({"step": "ping", **ping})
            rtt = (
                f", rtt min/avg/max {ping['rtt_min_us']:.0f}/{ping['rtt_avg_us']:.0f}/"
                f"{ping['rtt_max_us']:.0f} us"
                if ping["received"]
                else ""
            )
            say(f"  ping h1 -> h2: {ping['received']}/{ping['sent']} replies{rtt}")

            try:
                step = file_step(h1, workdir, recv_dir, args.file_mib)
            except L2fastError as exc:
                logs = "; ".join(f"{d.ns}: {d.tail()[-300:]}" for d in daemons)
                raise L2fastError(f"{exc.message} (daemon logs: {logs})") from None
            report.steps.append(step)
            result = step["result"]
            say(
                f"  send h1 -> h2: {args.file_mib} MiB in {result['seconds']:.2f} s "
                f"({result['gbit_per_s']:.2f} Gbit/s), SHA-256 verified by the receiver "
                f"and re-checked here ({str(result['digest'])[:16]}...)"
            )
        finally:
            for daemon in daemons:
                daemon.stop()
            shutil.rmtree(workdir, ignore_errors=True)

        step = raw_link_step(h1, h2, host_mac(2), args.seconds)
        report.steps.append(step)
        rx = step["rx"]
        say(
            f"  raw link {h1} -> {h2}: {rx['gbit_per_s']:.2f} Gbit/s verified "
            f"({rx['frames_per_s'] / 1e3:.0f} k frames/s of {rx['frame_size']} B, "
            f"CRC32C-checked in C; bad {rx['bad']}, kernel drops {rx['kernel_drops']})"
        )
    finally:
        netns.down(name)
        say(f"  lab down: {name} removed ({time.monotonic() - started:.1f} s in all)")
    if args.json:
        print(json.dumps({"lab": report.lab, "mtu": report.mtu, "steps": report.steps}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast demo`."""
    parser = sub.add_parser(
        "demo",
        help="run l2fast between two lab namespaces and show what it measures",
        description="Build a two-host lab (network namespaces joined by a veth pair), run "
        "l2fast between the hosts, print the results and the throughput, and remove the lab.",
        epilog="examples:\n  sudo l2fast demo\n  sudo l2fast demo --mtu 1500 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mtu",
        type=number(int, MIN_MTU, MAX_MTU),
        default=9000,
        help=f"lab MTU, {MIN_MTU}..{MAX_MTU} (default 9000)",
    )
    parser.add_argument(
        "--seconds",
        type=number(float, 0.1, 600.0, "seconds"),
        default=2.0,
        help="length of the link test (default 2)",
    )
    parser.add_argument(
        "--file-mib",
        type=number(int, 1, 65536, "MiB"),
        default=256,
        help="size of the demo file transfer in MiB (default 256)",
    )
    parser.add_argument("--name", help="lab name (default: l2demo<pid>)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)
