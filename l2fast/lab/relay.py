"""The impairment relay process: it runs in a lab's middle namespace, forwards every frame between
the hosts' ports through the C pump (csrc/relay.c) and publishes its counters and forwarding rate
in STATE_DIR/NAME.relay.json for `lab status`. SIGTERM or SIGINT stops it.

`lab up` starts it as `ip netns exec NAME-relay python -m l2fast.lab.relay --lab NAME ...
--detach`; `start()` and `stop()` are the parent's side.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2fast.lab import iproute, processes
from l2fast.lab.iproute import LabError
from l2fast.lab.state import (
    Impairment,
    read_json,
    relay_log_path,
    relay_status_path,
    write_json_atomic,
)

MODULE = "l2fast.lab.relay"
PUMP_SLICE_MS = 100  # the C pump returns this often, so signals and status writes stay prompt
STATUS_EVERY_S = 0.25
RATE_WINDOW_S = 1.0  # the reported rate is measured over at least this long
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0


def relay_command(
    lab: str, ports: Sequence[str], mtu: int, impairment: Impairment, status: Path
) -> list[str]:
    """The relay's command line (also how `stop` recognises a relay of this lab)."""
    return [
        sys.executable, "-m", MODULE, "--lab", lab, "--ports", ",".join(ports),
        "--mtu", str(mtu), "--loss", repr(impairment.loss), "--dup", repr(impairment.dup),
        "--reorder", repr(impairment.reorder), "--corrupt", repr(impairment.corrupt),
        "--seed", str(impairment.seed), "--status", str(status),
    ]  # fmt: skip


def start(lab: str, ns: str, ports: Sequence[str], mtu: int, impairment: Impairment) -> int:
    """Start the relay in namespace `ns` and wait until it forwards; returns its pid.

    The relay detaches (forks, and the parent exits at once), so it is nobody's child: it
    outlives `lab up`, gets no terminal signals, and leaves no process for `up` to wait on.
    Raises LabError with the relay's own error when it does not come up.
    """
    status = relay_status_path(lab)
    status.unlink(missing_ok=True)
    log_path = relay_log_path(lab)
    command = relay_command(lab, ports, mtu, impairment, status)
    argv = [iproute.tool("ip"), "netns", "exec", ns, *command, "--detach"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        code = proc.wait(timeout=READY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -1
    deadline = time.monotonic() + READY_TIMEOUT_S
    while code == 0 and time.monotonic() < deadline:
        data = read_json(status) or {}
        if data.get("state") == "running":
            return int(data["pid"])
        if data.get("state") == "failed":
            raise LabError(f"the relay of lab {lab!r} failed to start: {data.get('error')}")
        time.sleep(0.02)
    lines = log_path.read_text(errors="replace").strip().splitlines()
    reason = lines[-1] if lines else f"no answer within {READY_TIMEOUT_S:.0f} s"
    raise LabError(f"the relay of lab {lab!r} failed to start: {reason}")


def _is_relay_of(pid: int, lab: str) -> bool:
    """True when `pid` runs this module for lab `lab` (pids are reused; never kill blindly)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if MODULE.encode() not in argv:
        return False
    try:
        return argv[argv.index(b"--lab") + 1] == lab.encode()
    except (ValueError, IndexError):
        return False


def find_relays(lab: str) -> list[int]:
    """Pids of every relay process of lab `lab`, found by command line (no record needed)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _is_relay_of(int(entry), lab):
            pids.append(int(entry))
    return pids


def stop(lab: str, pid: int | None = None) -> None:
    """Stop the relay(s) of `lab`: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
    pids = set(find_relays(lab))
    if pid is not None and _is_relay_of(pid, lab):
        pids.add(pid)
    processes.terminate(pids, STOP_TIMEOUT_S)


def is_running(pid: int | None, lab: str) -> bool:
    """True when `pid` is a live relay of `lab`."""
    return pid is not None and _is_relay_of(pid, lab)


# ---- the relay process itself


class _RateMeter:
    """Forwarding rate over a sliding window of at least RATE_WINDOW_S, and its peak."""

    def __init__(self) -> None:
        self._mark: tuple[float, int, int] | None = None
        self.fps = 0.0
        self.gbps = 0.0
        self.peak_fps = 0.0
        self.peak_gbps = 0.0

    def update(self, now: float, tx: int, tx_bytes: int) -> None:
        if self._mark is None:
            self._mark = (now, tx, tx_bytes)
            return
        t0, f0, b0 = self._mark
        if now - t0 < RATE_WINDOW_S:
            return
        dt = now - t0
        self.fps = (tx - f0) / dt
        # On-wire bits: each frame also costs preamble, FCS and inter-frame gap (24 bytes) on a
        # real link, but veth has none of that, so frame bytes are what the relay moved.
        self.gbps = (tx_bytes - b0) * 8 / dt / 1e9
        self.peak_fps = max(self.peak_fps, self.fps)
        self.peak_gbps = max(self.peak_gbps, self.gbps)
        self._mark = (now, tx, tx_bytes)

    def as_dict(self) -> dict[str, float]:
        return {
            "fps": round(self.fps, 1),
            "gbps": round(self.gbps, 4),
            "peak_fps": round(self.peak_fps, 1),
            "peak_gbps": round(self.peak_gbps, 4),
        }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    p.add_argument("--lab", required=True)
    p.add_argument("--ports", required=True, help="comma-separated interface names")
    p.add_argument("--mtu", type=int, required=True)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--dup", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--corrupt", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--detach", action="store_true", help="fork into the background first")
    return p.parse_args(argv)


def _detach() -> None:
    """Become a daemon: the parent returns to `lab up` at once; the child leads a new session."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the relay until SIGTERM/SIGINT; returns the exit status.

    A failure is published in the status file (state "failed") and logged on stderr, so that
    `lab up` can show why.
    """
    args = _parse_args(argv)
    if args.detach:
        _detach()
    try:
        return _serve(args)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        write_json_atomic(
            args.status,
            {"state": "failed", "pid": os.getpid(), "error": message, "updated": time.time()},
        )
        print(f"relay: {type(exc).__name__}: {message}", file=sys.stderr, flush=True)
        return 1


def _serve(args: argparse.Namespace) -> int:
    # Imported here so that `lab status` and `lab down` work even without the C core built.
    from l2fast.native.relay import Relay, RelayConfig

    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    config = RelayConfig(
        seed=args.seed,
        loss=args.loss,
        dup=args.dup,
        reorder=args.reorder,
        corrupt=args.corrupt,
        mtu=args.mtu,
    )
    ports = args.ports.split(",")
    started = time.time()
    meter = _RateMeter()

    def publish(state: str) -> None:
        totals = relay.counters()
        meter.update(time.monotonic(), totals.tx, totals.tx_bytes)
        write_json_atomic(
            args.status,
            {
                "state": state,
                "pid": os.getpid(),
                "lab": args.lab,
                "started": started,
                "updated": time.time(),
                "config": {
                    "loss": config.loss,
                    "dup": config.dup,
                    "reorder": config.reorder,
                    "corrupt": config.corrupt,
                    "seed": config.seed,
                    "reorder_depth": config.reorder_depth,
                    "hold_us": config.hold_us,
                },
                "counters": totals.as_dict(),
                "ports": {name: relay.counters(i).as_dict() for i, name in enumerate(relay.ports)},
                "rate": meter.as_dict(),
            },
        )

    with Relay(config) as relay:
        for name in ports:
            relay.add_port(name)
        publish("running")
        last = time.monotonic()
        while not stopping:
            relay.run(PUMP_SLICE_MS)
            now = time.monotonic()
            if now - last >= STATUS_EVERY_S:
                publish("running")
                last = now
        relay.release_held()
        publish("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
