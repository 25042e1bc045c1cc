#!/usr/bin/env python3
"""Throughput of the bulk data path primitives (csrc/datapath.h) on a 2-namespace veth pair.

    sudo .venv/bin/python bench/datapath.py                    # table, MTU 1500/9000/65535
    sudo .venv/bin/python bench/datapath.py --json --size 256 --repeat 3 --mtu 9000

For each MTU, three cases run interleaved `--repeat` times, each moving `--size` MiB:

- `raw`: the ceiling. sendmmsg of one prebuilt frame (no CRC, no header per frame) against
  recvmmsg into ring slots that only counts: no per-frame work on either side.
- `mem`: memory to memory through the real path: TxPath builds headers and CRC32C per chunk
  from a fixed buffer; RxPath verifies, windows and publishes to the rings; the writers release
  without writing (bench mode).  Flow control by the receiver's credit (FEEDBACK ~every 0.5 ms).
- `file`: file to tmpfs: TxPath over an mmap'd tmpfs file, writers pwritev into a tmpfs file,
  whose SHA-256 is checked against the source after the run (outside the timing).

Rates are payload bytes over the receiver's time from its first new chunk until the writers have
emptied the rings (every chunk written or, for `mem`, released); `raw`
counts the same payload per frame.  The table shows the best and the median run and the CPU
seconds each side spent per GiB (user + system; the veth receive softirq runs on the sending
CPU, so it lands in the sender's share).  The peers are tests/integration/datapath_peer.py, the
same minimal transfer loop the integration test uses.  Needs root (namespaces, raw sockets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "tests" / "integration" / "datapath_peer.py"
SESSION = 0xBE7C
CASES = ("raw", "mem", "file")


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Lab:
    """Two namespaces joined by a veth pair, and a tmpfs work directory."""

    ns_a: str
    ns_b: str
    workdir: Path
    mac_a: str = ""
    mac_b: str = ""

    def up(self) -> None:
        sh("ip", "netns", "add", self.ns_a)
        sh("ip", "netns", "add", self.ns_b)
        sh("ip", "-n", self.ns_a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
           "netns", self.ns_b)  # fmt: skip
        sh("ip", "-n", self.ns_a, "link", "set", "va", "up")
        sh("ip", "-n", self.ns_b, "link", "set", "vb", "up")
        self.mac_a = json.loads(sh("ip", "-n", self.ns_a, "-j", "link", "show", "va"))[0]["address"]
        self.mac_b = json.loads(sh("ip", "-n", self.ns_b, "-j", "link", "show", "vb"))[0]["address"]
        self.workdir.mkdir(exist_ok=True)

    def set_mtu(self, mtu: int) -> None:
        sh("ip", "-n", self.ns_a, "link", "set", "va", "mtu", str(mtu))
        sh("ip", "-n", self.ns_b, "link", "set", "vb", "mtu", str(mtu))

    def down(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Peer:
    """datapath_peer.py ROLE inside a namespace."""

    def __init__(self, ns: str, role: str, opts: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PEER), role, json.dumps(opts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )

    def ready(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError("peer not ready")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"peer failed: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        info: dict[str, Any] = json.loads(line)
        return info

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"peer exited {self.proc.returncode}: {err[-2000:]}")
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=10)


@dataclass
class Run:
    """One measured run."""

    mtu: int
    case: str
    payload_bytes: int
    frames: int
    seconds: float
    cpu_tx: float
    cpu_rx: float
    cpu_writers: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gbit_s(self) -> float:
        return self.payload_bytes * 8 / self.seconds / 1e9

    @property
    def frames_s(self) -> float:
        return self.frames / self.seconds


def _cpu(d: dict[str, float] | None) -> float:
    return (d or {}).get("user", 0.0) + (d or {}).get("sys", 0.0)


def run_case(lab: Lab, mtu: int, case: str, size: int, args: argparse.Namespace) -> Run:
    chunk = mtu - 24
    nchunks = -(-size // chunk)
    peers: list[Peer] = []
    try:
        if case == "raw":
            rx = Peer(lab.ns_b, "rawrx", {"iface": "vb", "session": SESSION, "frames": nchunks})
            peers.append(rx)
            rx.ready()
            tx = Peer(lab.ns_a, "rawtx", {"iface": "va", "session": SESSION,
                                           "peer": lab.mac_b, "frames": nchunks})  # fmt: skip
            peers.append(tx)
            tx.ready()
            t, r = tx.result(), rx.result()
            if not r["seconds"]:
                raise RuntimeError(f"raw run at MTU {mtu} received nothing: {r}")
            return Run(mtu, case, r["frames"] * chunk, r["frames"], r["seconds"],
                       _cpu(t.get("cpu_tx")), _cpu(r.get("cpu_rx")), 0.0,
                       {"kernel_drops": r["kernel_drops"], "sent": t["sent"]})  # fmt: skip
        out = str(lab.workdir / "received") if case == "file" else None
        rx_opts = {"iface": "vb", "size": size, "session": SESSION, "peer": lab.mac_a,
                   "out": out, "writers": args.writers, "publish_bytes": args.publish_bytes,
                   "timeout": 90}  # fmt: skip
        if args.rx_batch:
            rx_opts["batch"] = args.rx_batch
        rx = Peer(lab.ns_b, "rx", rx_opts)
        peers.append(rx)
        ready = rx.ready()
        tx_opts: dict[str, Any] = {"iface": "va", "session": SESSION, "peer": lab.mac_b,
                                   "initial_credit": ready["credit"], "timeout": 90}  # fmt: skip
        if args.tx_batch:
            tx_opts["tx_batch"] = args.tx_batch
        if case == "file":
            tx_opts["src"] = str(lab.workdir / "source")
        else:
            tx_opts["size"] = size
        tx = Peer(lab.ns_a, "tx", tx_opts)
        peers.append(tx)
        tx.ready()
        t, r = tx.result(), rx.result()
        if not (t["done"] and r["complete"] and r["seconds"]):
            raise RuntimeError(f"{case} run at MTU {mtu} did not complete: {t} {r}")
        extra = {"resent": t["resent"], "kernel_drops": r["kernel_drops"],
                 "ring_full": r["counters"]["ring_full"],
                 "batches": r["counters"]["batches"]}  # fmt: skip
        if case == "file":
            extra["sha256_ok"] = r["sha256"] == args.source_digest
            if not extra["sha256_ok"]:
                raise RuntimeError(f"file run at MTU {mtu}: received file differs from source")
        return Run(mtu, case, size, nchunks, r["seconds"], _cpu(t.get("cpu_tx")),
                   _cpu(r.get("cpu_rx")), _cpu(r.get("cpu_writers")), extra)  # fmt: skip
    finally:
        for p in peers:
            p.kill()


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (MTU, case): best and median rate, CPU per GiB of the best run."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(r.mtu, r.case) for r in runs}, key=lambda k: (k[0], CASES.index(k[1])))
    for mtu, case in keys:
        rs = [r for r in runs if r.mtu == mtu and r.case == case]
        best = max(rs, key=lambda r: r.gbit_s)
        gib = best.payload_bytes / (1 << 30)
        rows.append({
            "mtu": mtu,
            "case": case,
            "runs": len(rs),
            "best_gbit_s": round(best.gbit_s, 2),
            "median_gbit_s": round(statistics.median(r.gbit_s for r in rs), 2),
            "best_frames_s": round(best.frames_s),
            "cpu_s_per_gib": {
                "tx": round(best.cpu_tx / gib, 2),
                "rx": round(best.cpu_rx / gib, 2),
                "writers": round(best.cpu_writers / gib, 2),
            },
            "best_extra": best.extra,
        })  # fmt: skip
    for row in rows:
        raw = next((x for x in rows if x["mtu"] == row["mtu"] and x["case"] == "raw"), None)
        if raw:
            row["vs_raw"] = round(row["best_gbit_s"] / raw["best_gbit_s"], 2)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"data path on veth, {args.size} MiB per run, best of {args.repeat}, "
          f"{args.writers} writers, publish_bytes={args.publish_bytes}")  # fmt: skip
    head = ("MTU", "case", "Gbit/s best", "median", "frames/s", "x raw", "CPU s/GiB tx/rx/wr")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        c = r["cpu_s_per_gib"]
        print(
            f"| {r['mtu']} | {r['case']} | {r['best_gbit_s']:.2f} | {r['median_gbit_s']:.2f} | "
            f"{r['best_frames_s']:,} | {r.get('vs_raw', 0):.2f} | "
            f"{c['tx']:.2f} / {c['rx']:.2f} / {c['writers']:.2f} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mtu", default="1500,9000,65535", help="comma-separated MTUs")
    ap.add_argument("--size", type=int, default=256, help="MiB per run (default 256)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument("--cases", default=",".join(CASES), help="subset of raw,mem,file")
    ap.add_argument("--writers", type=int, default=2, help="writer processes (default 2)")
    ap.add_argument(
        "--publish-bytes",
        type=int,
        default=256 << 10,
        help="receive batch hand-over size in bytes (0: every recvmmsg)",
    )
    ap.add_argument("--tx-batch", type=int, default=0, help="frames per sendmmsg (0: default)")
    ap.add_argument("--rx-batch", type=int, default=0, help="frames per recvmmsg (0: default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/datapath.py needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 77
    mtus = [int(m) for m in args.mtu.split(",")]
    cases = [c for c in args.cases.split(",") if c]
    size = args.size << 20
    pid = os.getpid()
    lab = Lab(f"l2fd-{pid}-a", f"l2fd-{pid}-b", Path(f"/dev/shm/l2fd-{pid}"))
    runs: list[Run] = []
    t0 = time.monotonic()
    try:
        lab.up()
        if "file" in cases:
            data = os.urandom(size)
            (lab.workdir / "source").write_bytes(data)
            args.source_digest = hashlib.sha256(data).hexdigest()
            del data
        for mtu in mtus:
            lab.set_mtu(mtu)
            for _ in range(args.repeat):
                for case in cases:  # interleaved, so a noisy neighbour hits every case alike
                    runs.append(run_case(lab, mtu, case, size, args))
                    (lab.workdir / "received").unlink(missing_ok=True)
                    (lab.workdir / "received.map").unlink(missing_ok=True)
    finally:
        lab.down()
    rows = summarize(runs)
    if args.json:
        print(json.dumps({
            "size_mib": args.size, "repeat": args.repeat, "writers": args.writers,
            "publish_bytes": args.publish_bytes, "seconds": round(time.monotonic() - t0, 1),
            "loadavg": os.getloadavg(), "results": rows,
        }, indent=2))  # fmt: skip
    else:
        print_table(rows, args)
        print(f"(load average during the run: {os.getloadavg()[0]:.2f}; "
              f"{time.monotonic() - t0:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
