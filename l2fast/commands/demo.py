"""`l2fast demo`: the main job on the built-in lab, end to end, in about ten seconds.

It builds two test hosts (network namespaces joined by a veth pair), starts `l2fast daemon` in
each, runs the real commands between them exactly as a user would type them
(`ip netns exec HOST l2fast discover|chat|ping ...`), measures the link with a CRC-checked
raw-frame blast, prints what each step showed, and removes the lab again, also on failure or
Ctrl-C. File transfer (`l2fast send`) joins the demo when it exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from l2fast.errors import L2fastError, NeedsPrivilege

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


def start_daemon(ns: str, name: str) -> subprocess.Popen[str]:
    """`l2fast daemon` in lab host `ns`, logging to a pipe we drain only on failure."""
    return subprocess.Popen(
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


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
        raise NeedsPrivilege("the demo builds network namespaces, which needs root")
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

        daemons = [start_daemon(h1, "h1"), start_daemon(h2, "h2")]
        try:
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
            say(
                f"  ping h1 -> h2: {ping['received']}/{ping['sent']} replies, "
                f"rtt min/avg/max {ping['rtt_min_us']:.0f}/{ping['rtt_avg_us']:.0f}/"
                f"{ping['rtt_max_us']:.0f} us"
            )
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                try:
                    daemon.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    daemon.kill()

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
    parser.add_argument("--mtu", type=int, default=9000, help="lab MTU (default 9000)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the link test")
    parser.add_argument("--name", help="lab name (default: l2demo<pid>)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)
