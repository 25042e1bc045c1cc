#!/usr/bin/env python3
"""Benchmark of the C core: CRC32C against zlib.crc32, and batch parse + verify rates.

    python bench/core.py            # table
    python bench/core.py --json     # one JSON object

CRC: every function hashes the same 64 MiB random buffer; the best of several runs counts.  The
target (issue "Foundation") is CRC32C >= 4x zlib.crc32.

Parse: frames of 1514, 9014 and 65014 bytes (full frames at MTU 1500, 9000 and 65000) are built
once, then validated with one `RxArena.verify` call per batch (one l2f_parse_batch call: every
check of PROTOCOL.md §Receiving, CRC included).  Two cases: a 64-frame batch parsed again and
again ("hot": in cache, as right after recvmmsg) and an arena of ~64 MiB parsed once per run
("cold": limited by memory bandwidth).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
import zlib
from collections.abc import Callable

from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FRAME_OVERHEAD, FrameType

CRC_BUFFER = 64 << 20
FRAME_SIZES = (1514, 9014, 65014)
HOT_BATCH = 64
COLD_BYTES = 64 << 20


def best_seconds(fn: Callable[[], object], repeats: int, min_time: float = 0.0) -> float:
    """Best wall time of `fn()` over `repeats` runs (and at least `min_time` seconds in all)."""
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_crc(repeats: int) -> dict[str, object]:
    data = random.Random(1).randbytes(CRC_BUFFER)
    funcs: dict[str, Callable[[bytes], int]] = {"zlib.crc32": zlib.crc32}
    funcs["crc32c"] = native.crc32c
    if native.crc32c_hw_available():
        funcs["crc32c_hw"] = native.crc32c_hw
    if native.crc32c_fold_available():
        funcs["crc32c_fold"] = native.crc32c_fold
    if native.crc32c_fold512_available():
        funcs["crc32c_fold512"] = native.crc32c_fold512
    if native.crc32c_fold128_available():
        funcs["crc32c_fold128"] = native.crc32c_fold128
    funcs["crc32c_sw"] = native.crc32c_sw
    rates = {}
    for name, fn in funcs.items():
        fn(data)  # warm up: page faults, table init
        seconds = best_seconds(lambda fn=fn: fn(data), repeats)  # type: ignore[misc]
        rates[name] = CRC_BUFFER / seconds / 1e9
    zlib_rate = rates["zlib.crc32"]
    return {
        "buffer_bytes": CRC_BUFFER,
        "impl": native.crc32c_impl(),
        "gb_per_s": {k: round(v, 2) for k, v in rates.items()},
        "ratio_vs_zlib": {k: round(v / zlib_rate, 2) for k, v in rates.items()},
        "target_ratio": 4.0,
        "meets_target": rates["crc32c"] / zlib_rate >= 4.0,
    }


def make_arena(size: int, count: int) -> native.RxArena:
    rng = random.Random(size)
    payload_len = size - FRAME_OVERHEAD
    distinct = [rng.randbytes(payload_len) for _ in range(min(count, 8))]
    payloads = [distinct[i % len(distinct)] for i in range(count)]
    headers = native.build_headers(
        b"\x02" * 6,
        b"\x04" * 6,
        DEFAULT_ETHERTYPE,
        FrameType.DATA,
        0,
        1,
        range(count),
        payloads,
    )
    arena = native.RxArena(count, size)
    for i, payload in enumerate(payloads):
        arena.store(i, headers[FRAME_OVERHEAD * i : FRAME_OVERHEAD * (i + 1)] + payload)
    return arena


def bench_parse(repeats: int) -> list[dict[str, object]]:
    results = []
    for size in FRAME_SIZES:
        for case, count in (("hot", HOT_BATCH), ("cold", max(HOT_BATCH, COLD_BYTES // size))):
            arena = make_arena(size, count)
            if arena.verify(count) != count:
                raise SystemExit(f"bench frames of {size} bytes did not verify OK")
            if case == "hot":
                # Many batches per timing so the per-call overhead is measured as it occurs.
                rounds = max(1, (16 << 20) // (size * count))

                def run(arena: native.RxArena = arena, n: int = count, r: int = rounds) -> None:
                    for _ in range(r):
                        arena.verify(n)

            else:
                rounds = 1

                def run(arena: native.RxArena = arena, n: int = count, r: int = rounds) -> None:
                    arena.verify(n)

            seconds = best_seconds(run, repeats, min_time=0.3) / rounds
            results.append(
                {
                    "frame_bytes": size,
                    "case": case,
                    "frames_per_batch": count,
                    "frames_per_s": round(count / seconds),
                    "gb_per_s": round(count * size / seconds / 1e9, 2),
                }
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (best)")
    args = parser.parse_args()

    result = {
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "crc": bench_crc(args.repeats),
        "parse": bench_parse(args.repeats),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    crc = result["crc"]
    assert isinstance(crc, dict)
    print(f"CPU: {result['cpu']}   crc32c impl: {crc['impl']}")
    print(f"\nCRC over the same {CRC_BUFFER >> 20} MiB buffer (best of {args.repeats}):")
    for name, rate in crc["gb_per_s"].items():
        print(f"  {name:12} {rate:7.2f} GB/s   {crc['ratio_vs_zlib'][name]:5.2f}x zlib")
    verdict = "meets" if crc["meets_target"] else "MISSES"
    print(f"  crc32c {verdict} the >= 4x zlib target")
    print("\nBatch parse + verify (l2f_parse_batch, CRC included):")
    print(f"  {'frame':>7} {'case':5} {'batch':>6} {'frames/s':>12} {'GB/s':>7}")
    for row in result["parse"]:
        assert isinstance(row, dict)
        print(
            f"  {row['frame_bytes']:>7} {row['case']:5} {row['frames_per_batch']:>6} "
            f"{row['frames_per_s']:>12,} {row['gb_per_s']:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
