"""One end of a raw-socket test, run by tests/integration/test_rawsock.py inside a namespace.

    rawsock_peer.py recv IFACE COUNT SLOT_SIZE TIMEOUT_S
    rawsock_peer.py send IFACE DST_MAC_HEX COUNT PAYLOAD_LEN batch|frames
    rawsock_peer.py open IFACE [drop]
    rawsock_peer.py oversize IFACE

Every mode prints JSON lines on stdout; `recv` prints {"ready": ...} once its socket is open, then
one result line.  Loops are bounded by count and time.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib

from l2fast import native
from l2fast.errors import L2fastError
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType, Verdict

SESSION = 0x7E57
SEND_DEADLINE_S = 20.0


def emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def payload_for(seq: int, size: int) -> bytes:
    # A distinct, cheap pattern per frame; the other end only compares zlib.crc32 values.
    return (seq.to_bytes(8, "big") * (size // 8 + 1))[:size]


def recv(iface: str, count: int, slot_size: int, timeout_s: float) -> None:
    with native.RawSocket.open(iface) as sock:
        emit({"ready": True, "mac": sock.mac.hex(), "mtu": sock.mtu})
        arena = native.RxArena(64, slot_size)
        frames: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout_s
        while len(frames) < count and time.monotonic() < deadline:
            n = sock.recv_batch(arena, 200, min(64, count - len(frames)))
            if n == 0:
                continue
            infos = arena.parse(n)
            lens = arena.lens
            for i, info in enumerate(infos):
                ok = info.verdict is Verdict.OK
                frames.append(
                    {
                        "verdict": info.verdict.name,
                        "seq": info.seq,
                        "session": info.session,
                        "wire_len": lens[i],
                        "stored_len": len(arena.frame(i)),
                        "payload_crc": zlib.crc32(arena.payload(i)) if ok else None,
                        "src": info.src.hex(),
                    }
                )
        packets, drops = sock.stats()
        emit({"frames": frames, "packets": packets, "drops": drops})


def send(iface: str, dst_hex: str, count: int, payload_len: int, mode: str) -> None:
    dst = bytes.fromhex(dst_hex)
    with native.RawSocket.open(iface) as sock:
        # Payloads live in separate buffers (bytes and bytearray views), as file chunks would.
        payloads = [payload_for(seq, payload_len) for seq in range(count)]
        views = [memoryview(bytearray(p)) if seq % 2 else p for seq, p in enumerate(payloads)]
        headers = native.build_headers(
            dst, sock.mac, DEFAULT_ETHERTYPE, FrameType.DATA, 0, SESSION, range(count), views
        )
        hdr_views = [memoryview(headers)[38 * i : 38 * (i + 1)] for i in range(count)]
        sent = 0
        backpressure = 0
        deadline = time.monotonic() + SEND_DEADLINE_S
        while sent < count and time.monotonic() < deadline:
            end = min(count, sent + 64)
            if mode == "batch":
                took = sock.send_batch(hdr_views[sent:end], views[sent:end])
            else:
                took = sock.send_frames(
                    [bytes(hdr_views[i]) + bytes(views[i]) for i in range(sent, end)]
                )
            if took == 0:
                backpressure += 1
                time.sleep(0.001)
            sent += took
        emit(
            {
                "sent": sent,
                "backpressure": backpressure,
                "mac": sock.mac.hex(),
                "payload_crcs": [zlib.crc32(p) for p in payloads],
            }
        )


def open_only(iface: str, drop: bool) -> None:
    if drop:
        # Fallback for machines where no interpreter is usable by an unprivileged user: drop to
        # nobody here, after every import, exactly as setpriv would before exec.
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    result: dict[str, object] = {"euid": os.geteuid()}
    try:
        with native.RawSocket.open(iface) as sock:
            result.update(ok=True, mtu=sock.mtu)
    except L2fastError as exc:
        result.update(
            ok=False,
            error=type(exc).__name__,
            message=exc.message,
            hint=exc.hint,
            available=getattr(exc, "available", None),
        )
    emit(result)


def oversize(iface: str) -> None:
    with native.RawSocket.open(iface) as sock:
        try:
            sock.send_frames([bytes(sock.mtu + 15)])
        except ValueError as exc:
            emit({"error": "ValueError", "message": str(exc)})
            return
    emit({"error": None})


def main(argv: list[str]) -> None:
    mode, iface, *rest = argv
    if mode == "recv":
        recv(iface, int(rest[0]), int(rest[1]), float(rest[2]))
    elif mode == "send":
        send(iface, rest[0], int(rest[1]), int(rest[2]), rest[3])
    elif mode == "open":
        open_only(iface, bool(rest and rest[0] == "drop"))
    elif mode == "oversize":
        oversize(iface)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
