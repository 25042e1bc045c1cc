"""`l2fast selftest`: prove on this machine that the C core, both codecs and raw sockets work.

Everything stays on the loopback interface: frames are sent with l2fast's EtherType on `lo`,
which hands them straight back to our own receiving socket. No other host sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

from l2fast.commands.argtypes import number
from l2fast.errors import L2fastError
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FRAME_OVERHEAD, FrameType, Verdict

# Test frames carry this session id so they are recognisable in a capture.
SELFTEST_SESSION = 0x5E1F7E57


@dataclass
class Check:
    """The outcome of one self-test step."""

    name: str
    ok: bool
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)
    #: Not run here (raw sockets without root): not a failure, and not a pass either.
    skipped: bool = False


def check_crc() -> Check:
    """CRC32C check value, and the SSE4.2 and table paths agree on random buffers."""
    from l2fast import native

    value = native.crc32c(b"123456789")
    rng = random.Random(1)
    data = rng.randbytes(1 << 20)
    agree = True
    if native.crc32c_hw_available():
        for length in (0, 1, 7, 63, 4095, 65537, len(data)):
            if native.crc32c_hw(data[:length]) != native.crc32c_sw(data[:length]):
                agree = False
    ok = value == 0xE3069283 and agree
    detail = f"crc32c('123456789') = {value:#010x} via {native.crc32c_impl()}"
    if not agree:
        detail += "; SSE4.2 and table paths DISAGREE"
    return Check("crc32c", ok, detail)


def check_codecs() -> Check:
    """The C and the pure-Python codec build identical bytes and give identical verdicts."""
    from l2fast import native
    from l2fast.wire import header as pyheader

    rng = random.Random(2)
    mismatches = 0
    frames = 0
    for frame_type in FrameType:
        payload = rng.randbytes(rng.randrange(0, 1500))
        args = (
            b"\x02" * 6,
            b"\x04" * 6,
            DEFAULT_ETHERTYPE,
            int(frame_type),
            0,
            SELFTEST_SESSION,
            rng.getrandbits(64),
            payload,
        )
        built_c = native.build_frame(*args)
        built_py = pyheader.build_frame(*args)
        mutated = bytearray(built_c)
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        for raw in (built_c, bytes(mutated), built_c[: rng.randrange(len(built_c))]):
            frames += 1
            if native.parse_frame(raw) != pyheader.parse_frame(raw):
                mismatches += 1
        if built_c != built_py:
            mismatches += 1
    return Check(
        "codecs",
        mismatches == 0,
        f"C and Python codecs agree on {frames} frames"
        if mismatches == 0
        else f"{mismatches} disagreements between the C and Python codecs",
    )


def check_loopback(iface: str, seconds: float, frame_size: int) -> Check:
    """Blast CRC-checked frames through `iface` (normally `lo`) and verify every one received."""
    from l2fast import native

    name = f"raw frames {frame_size} B on {iface}"
    with native.RawSocket.open(iface, min_mtu=frame_size - 14) as sock:
        payload_len = frame_size - FRAME_OVERHEAD
        batch = [
            native.build_frame(
                sock.mac,
                sock.mac,
                DEFAULT_ETHERTYPE,
                FrameType.DATA,
                0,
                SELFTEST_SESSION,
                seq,
                bytes([seq & 0xFF]) * payload_len,
            )
            for seq in range(32)
        ]
        arena = native.RxArena(64, frame_size + 64)
        sent = received = bad = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            sent += sock.send_frames(batch)
            # Drain what has looped back so far; lo delivers within the send call.
            while True:
                n = sock.recv_batch(arena, 0)
                if n <= 0:
                    break
                for info in arena.parse(n):
                    if info.session != SELFTEST_SESSION:
                        continue  # someone else's frame with our EtherType
                    received += 1
                    if info.verdict is not Verdict.OK:
                        bad += 1
        elapsed = time.perf_counter() - start
        _, kernel_drops = sock.stats()
    gbit = received * frame_size * 8 / elapsed / 1e9
    ok = received > 0 and bad == 0
    detail = (
        f"sent {sent}, received {received} ({received / elapsed / 1e3:.0f} kframes/s, "
        f"{gbit:.2f} Gbit/s), bad {bad}, kernel drops {kernel_drops}"
    )
    return Check(
        name,
        ok,
        detail,
        {"sent": sent, "received": received, "bad": bad, "gbit_per_s": round(gbit, 3)},
    )


def run(args: argparse.Namespace) -> int:
    """Run every check; exit 0 only when all pass."""
    checks = [check_crc(), check_codecs()]
    if os.geteuid() == 0:
        try:
            for size in (1514, 9014):
                checks.append(check_loopback("lo", args.seconds, size))
        except L2fastError as exc:
            checks.append(Check("raw sockets", False, f"{exc.message} ({exc.hint or ''})"))
    else:
        checks.append(
            Check("raw sockets", True, "not root (needs CAP_NET_RAW); run as root", skipped=True)
        )
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            label = "skip" if check.skipped else "ok  " if check.ok else "FAIL"
            print(f"{label}  {check.name:28}  {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast selftest`."""
    parser = sub.add_parser(
        "selftest",
        help="check the C core, the codecs and raw sockets on loopback",
        description="Check the C core (CRC32C paths), the C and Python codecs, and raw "
        "Ethernet sockets, by sending l2fast frames through the loopback interface.",
        epilog="examples:\n  sudo l2fast selftest\n  sudo l2fast selftest --seconds 3 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seconds",
        type=number(float, 0.1, 60.0, "seconds"),
        default=1.0,
        help="length of each blast (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.set_defaults(handler=run)
