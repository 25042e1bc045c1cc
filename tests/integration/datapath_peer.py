"""One end of a data-path transfer inside a network namespace, for tests/integration/
test_datapath.py and bench/datapath.py (`ip netns exec NS python datapath_peer.py ROLE JSON`).

    rx   receive process: RxPath over the socket, writer processes (multiprocessing, fork) each
         draining one shared-memory ring into the output file (or nowhere: memory sink), and a
         minimal FEEDBACK every ~0.5 ms
    tx   sender: TxPath over the mmap'd source file (or one fixed chunk: bench), new chunks up to
         the receiver's credit, holes resent from the SACK ranges, until cum_ack reaches the end
    rawrx / rawtx   the ceiling: recvmmsg / sendmmsg of prebuilt frames, no per-frame work

The reliability loop here is deliberately minimal (the real one is l2fast.transfer): enough to
finish a transfer over a lossless veth and to resend what the receiver reports missing.  Every
role prints one JSON line `{"ready": ...}` once its socket is open, then one result line; every
loop is bounded by a deadline.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import asdict
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from l2fast import native
from l2fast.errors import L2fastError
from l2fast.native import datapath as dp
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType
from l2fast.wire.frames import Feedback, decode_payload, encode_payload

ET = DEFAULT_ETHERTYPE
SOCKBUF = 128 << 20


def emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def cpu(
    who: int = resource.RUSAGE_SELF, since: resource.struct_rusage | None = None
) -> dict[str, float]:
    """CPU seconds (user, sys) of this process or of its reaped children, after `since`
    (interpreter start-up and imports would otherwise swamp a short run)."""
    r = resource.getrusage(who)
    u0, s0 = (since.ru_utime, since.ru_stime) if since else (0.0, 0.0)
    return {"user": round(r.ru_utime - u0, 3), "sys": round(r.ru_stime - s0, 3)}


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


# --------------------------------------------------------------------------- receiver


def writer_main(
    ring: dp.ShmRing, fd: int, o: dict[str, Any], stop: Event, conn: Connection
) -> None:
    """A writer process: drain one ring until told to stop and the ring is empty."""
    w = dp.Writer(ring, fd, chunk_size=o["chunk"], file_size=o["size"], first_chunk=o["first"])
    try:
        while not (stop.is_set() and ring.used() == 0):
            w.drain(2048, wait_s=0.005)
        conn.send({"ok": True, **asdict(w.stats())})
    except L2fastError as exc:
        conn.send({"ok": False, "error": str(exc)})


def rx(o: dict[str, Any]) -> None:
    sock = native.RawSocket.open(o["iface"], ET, sndbuf=8 << 20, rcvbuf=SOCKBUF)
    chunk = o.get("chunk") or sock.mtu - 24
    o = {**o, "chunk": chunk, "first": o.get("first", 0)}
    size, first = o["size"], o["first"]
    end = first + -(-size // chunk)
    slot = dp.slot_size_for_mtu(sock.mtu)
    nslots = o.get("nslots") or max(64, 1 << ((32 << 20) // slot).bit_length() - 1)
    rings = [dp.ShmRing(nslots, slot) for _ in range(o.get("writers", 2))]
    fd = -1
    bitmap: mmap.mmap | None = None
    if o.get("out"):
        fd = os.open(o["out"], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        mfd = os.open(o["out"] + ".map", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(mfd, max(1, dp.written_bitmap_size(size, chunk)))
        bitmap = mmap.mmap(mfd, max(1, dp.written_bitmap_size(size, chunk)))
        os.close(mfd)

    ctx = mp.get_context("fork")
    stop = ctx.Event()
    procs, conns = [], []
    for ring in rings:
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=writer_main, args=(ring, fd, o, stop, child), daemon=True)
        p.start()
        procs.append(p)
        conns.append(parent)

    path = dp.RxPath(
        sock,
        rings,
        session=o["session"],
        chunk_size=chunk,
        file_size=size,
        first_chunk=first,
        window=o.get("window", 1 << 17),
        batch=o.get("batch", 64),
        written=bitmap,
        publish_bytes=o.get("publish_bytes", 256 << 10),
    )
    peer = mac(o["peer"])
    emit(
        {
            "ready": True,
            "mac": sock.mac.hex(":"),
            "mtu": sock.mtu,
            "chunk": chunk,
            "credit": path.feedback().credit,
        }
    )
    base = resource.getrusage(resource.RUSAGE_SELF)

    fb_counter = 0
    drops_total = 0

    def send_feedback() -> dp.RxFeedback:
        nonlocal fb_counter, drops_total
        fb = path.feedback()
        _, drops = sock.stats()
        drops_total += drops
        payload = encode_payload(fb.to_wire(min(drops, 0xFFFFFFFF)))
        fb_counter += 1
        frame = native.build_frame(
            peer, sock.mac, ET, FrameType.FEEDBACK, 0, o["session"], fb_counter, payload
        )
        sock.send_frames([frame])
        return fb

    deadline = time.monotonic() + o.get("timeout", 60.0)
    interval = o.get("fb_interval", 0.0005)
    t_first = t_done = None
    last_fb = last_check = 0.0
    error = None
    fb = path.feedback()
    while time.monotonic() < deadline:
        run = path.run(interval)
        now = time.monotonic()
        if t_first is None and path.feedback().highest > first:
            t_first = now
        if now - last_fb >= interval or run.stop & (dp.RxStop.RING_FULL | dp.RxStop.COMPLETE):
            fb = send_feedback()
            last_fb = now
            if fb.complete:
                t_done = now
                break
        if now - last_check > 0.1:
            last_check = now
            dead = [p.exitcode for p in procs if p.exitcode is not None]
            if dead:
                error = f"a writer process exited early ({dead})"
                break
    # Received is not written: the run ends when the writers have emptied every ring.
    drain_deadline = time.monotonic() + 30
    while any(r.used() for r in rings) and time.monotonic() < drain_deadline and not error:
        time.sleep(0.0002)
    t_written = time.monotonic()
    stop.set()
    results = [c.recv() if c.poll(30) else {"ok": False, "error": "no report"} for c in conns]
    for p in procs:
        p.join(10)
    fb = send_feedback()  # reclaims the last slots: marks their chunks written
    for _ in range(3):
        time.sleep(0.005)
        send_feedback()
    counters = path.counters()
    out: dict[str, Any] = {
        "complete": fb.complete,
        "error": error,
        "cum_ack": fb.cum_ack,
        "end": end,
        "seconds": (t_written - t_first) if (t_done and t_first) else None,
        "seconds_received": (t_done - t_first) if (t_done and t_first) else None,
        "writers": results,
        "kernel_drops": drops_total,
        "cpu_rx": cpu(since=base),
        "cpu_writers": cpu(resource.RUSAGE_CHILDREN),
        "counters": {
            **asdict(counters),
            "verdicts": {v.name: n for v, n in counters.verdicts.items()},
        },
    }
    if fd >= 0:
        out["file_size"] = os.fstat(fd).st_size
        out["sha256"] = _sha256_fd(fd)
        assert bitmap is not None
        nchunks = end - first
        out["bitmap_complete"] = all(bitmap[k >> 3] >> (k & 7) & 1 for k in range(nchunks))
        os.close(fd)
    emit(out)


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
        h.update(m)
    return h.hexdigest()


# --------------------------------------------------------------------------- sender


def gaps(lo: int, hi: int, have: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """The missing ranges in [lo, hi) given ascending received ranges."""
    out = []
    pos = lo
    for s, e in have:
        if s >= hi:
            break
        if s > pos:
            out.append((pos, min(s, hi)))
        pos = max(pos, e)
    if pos < hi:
        out.append((pos, hi))
    return out


def new_ranges(lo: int, hi: int, first: int, skip: int) -> list[tuple[int, int]]:
    """[lo, hi) as ranges, without the chunks a first pass leaves out (see `skip_every`)."""
    if not skip:
        return [(lo, hi)]
    out = []
    start = lo
    for k in range(lo, hi):
        if (k - first) % skip == skip // 2:
            if start < k:
                out.append((start, k))
            start = k + 1
    if start < hi:
        out.append((start, hi))
    return out


def position_after(ranges: list[tuple[int, int]], took: int, lo: int, hi: int) -> int:
    """Where the first pass stands after `took` chunks of `ranges` (which cover [lo, hi))."""
    for s, e in ranges:
        if took < e - s:
            return s + took
        took -= e - s
    return hi  # all taken: skipped chunks at the end are passed over too


def tx(o: dict[str, Any]) -> None:
    sock = native.RawSocket.open(o["iface"], ET, sndbuf=SOCKBUF, rcvbuf=8 << 20)
    chunk = o.get("chunk") or sock.mtu - 24
    first = o.get("first", 0)
    if o.get("src"):
        fd = os.open(o["src"], os.O_RDONLY)
        size = os.fstat(fd).st_size
        data: Any = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        os.close(fd)
        bench = False
    else:
        size = o["size"]
        data = os.urandom(chunk)
        bench = True
    end = first + -(-size // chunk)
    peer = mac(o["peer"])
    path = dp.TxPath(
        sock,
        sock.ifindex,
        dst=peer,
        src=sock.mac,
        session=o["session"],
        data=data,
        chunk_size=chunk,
        file_size=size,
        first_chunk=first,
        bench=bench,
        mark_last=True,
        batch=o.get("tx_batch", dp.TX_BATCH),
    )
    emit({"ready": True, "mac": sock.mac.hex(":"), "mtu": sock.mtu, "chunk": chunk})
    base = resource.getrusage(resource.RUSAGE_SELF)

    bad = 0
    if o.get("bad"):
        # Frames the receiver must never write: a corrupted copy of chunk 5 and two valid DATA
        # frames beyond the file.
        k = min(5, end - first - 1)
        payload = bytes(data[k * chunk : (k + 1) * chunk]) if not bench else bytes(data)
        frame = bytearray(
            native.build_frame(
                peer, sock.mac, ET, FrameType.DATA, 0, o["session"], first + k, payload
            )
        )
        frame[40] ^= 0xFF  # a payload byte: the CRC no longer matches
        beyond = [
            native.build_frame(peer, sock.mac, ET, FrameType.DATA, 0, o["session"], s, b"E" * n)
            for s, n in ((end, chunk), (end + 1_000_000, chunk), (end, 10))
        ]
        bad = sock.send_frames([bytes(frame), *beyond])

    credit = first + o.get("initial_credit", 1024)
    cum_ack, highest = first, first
    sack: tuple[tuple[int, int], ...] = ()
    next_new = first
    last_fb_seq = -1
    last_progress = time.monotonic()
    last_hole_resend = 0.0
    resent = sent = stalls = feedbacks = 0
    rto = o.get("rto", 0.004)
    # skip > 0 leaves chunk k out of the first pass when k % skip == skip // 2, standing in for
    # loss: those chunks reach the receiver only when the SACK holes are resent.
    skip = o.get("skip_every", 0)
    hole_rto = o.get("hole_rto", 0.02)
    hole_sent: dict[int, float] = {}
    t0 = time.monotonic()
    deadline = t0 + o.get("timeout", 60.0)
    while cum_ack < end and time.monotonic() < deadline:
        now = time.monotonic()
        limit = min(credit, end)
        took = 0
        if next_new < limit:
            hi = min(limit, next_new + 4096)
            fresh = new_ranges(next_new, hi, first, skip)
            took = path.send(fresh, max_frames=4096) if fresh else 0
            next_new = position_after(fresh, took, next_new, hi)
            sent += took
        # Holes the receiver reported (below its highest), and after a quiet spell anything
        # not acknowledged (the tail), are sent again.
        quiet = now - last_progress > o.get("tail_timeout", 0.05)
        if now - last_hole_resend > rto and (highest > cum_ack or quiet):
            hi = next_new if quiet else min(highest, next_new)
            # a hole is resent at most once per `hole_rto` (its resend needs a round trip
            # through the rings before the SACK can show it)
            holes = [
                (s, e)
                for s, e in gaps(cum_ack, hi, sack)[:64]
                if now - hole_sent.get(s, 0.0) > hole_rto
            ]
            if holes:
                n = path.send(holes, max_frames=max(64, limit - cum_ack), retransmit=True)
                resent += n
                last_hole_resend = now
                for s, _ in holes:
                    hole_sent[s] = now
                for s in [s for s in hole_sent if s < cum_ack]:
                    del hole_sent[s]
        # FEEDBACK: wait a little only when there is nothing to send
        wait_ms = 0 if (next_new < min(credit, end) and took) else 1
        if took == 0 and next_new < limit:
            stalls += 1
        for f in sock.recv_frames(wait_ms, 64):
            info = native.parse_frame(f)
            if info.type != FrameType.FEEDBACK or info.session != o["session"]:
                continue
            if info.seq <= last_fb_seq:
                continue
            body = decode_payload(FrameType.FEEDBACK, f[38 : 38 + info.payload_len])
            assert isinstance(body, Feedback)
            feedbacks += 1
            last_fb_seq = info.seq
            if body.cum_ack > cum_ack:
                last_progress = time.monotonic()
            cum_ack, credit, highest, sack = body.cum_ack, body.credit, body.highest, body.ranges
    seconds = time.monotonic() - t0
    emit(
        {
            "done": cum_ack >= end,
            "cum_ack": cum_ack,
            "end": end,
            "sent": sent,
            "resent": resent,
            "bad_sent": bad,
            "stalls": stalls,
            "feedbacks": feedbacks,
            "seconds": seconds,
            "tx": asdict(path.stats()),
            "cpu_tx": cpu(since=base),
        }
    )


# --------------------------------------------------------------------------- ceiling


def rawtx(o: dict[str, Any]) -> None:
    """Send `frames` prebuilt frames as fast as sendmmsg takes them (no CRC, no per-frame work)."""
    sock = native.RawSocket.open(o["iface"], 0, sndbuf=SOCKBUF)
    chunk = o.get("chunk") or sock.mtu - 24
    n = o["frames"]
    path = dp.TxPath(
        sock,
        sock.ifindex,
        dst=mac(o["peer"]),
        src=sock.mac,
        session=o["session"],
        data=os.urandom(chunk),
        chunk_size=chunk,
        file_size=n * chunk,
        raw=True,
    )
    emit({"ready": True, "mac": sock.mac.hex(":"), "mtu": sock.mtu, "chunk": chunk})
    base = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    deadline = t0 + o.get("timeout", 30.0)
    pos = 0
    while pos < n and time.monotonic() < deadline:
        took = path.send([(pos, n)], max_frames=4096)
        pos += took
        if took == 0:
            time.sleep(0.00005)  # queue full: let the receiving side drain it
    emit(
        {
            "sent": pos,
            "seconds": time.monotonic() - t0,
            "tx": asdict(path.stats()),
            "cpu_tx": cpu(since=base),
        }
    )


def rawrx(o: dict[str, Any]) -> None:
    """Count frames with recvmmsg into ring slots until `frames` arrived or the link is idle."""
    sock = native.RawSocket.open(o["iface"], ET, rcvbuf=SOCKBUF)
    ring = dp.ShmRing(1024, dp.slot_size_for_mtu(sock.mtu))
    path = dp.RxPath(
        sock,
        [ring],
        session=o["session"],
        chunk_size=sock.mtu - 24,
        file_size=1 << 40,
        raw=True,
        batch=64,
        ctrl_slots=0,
    )
    emit({"ready": True, "mac": sock.mac.hex(":"), "mtu": sock.mtu})
    base = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.monotonic() + o.get("timeout", 30.0)
    t_first = t_last = None
    seen = 0
    while time.monotonic() < deadline:
        path.run(0.001)
        frames = path.counters().frames
        now = time.monotonic()
        if frames != seen:
            if t_first is None:
                t_first = now
            seen, t_last = frames, now
            if seen >= o["frames"]:
                break
        elif t_last is not None and now - t_last > o.get("idle", 0.3):
            break
    c = path.counters()
    _, drops = sock.stats()
    emit(
        {
            "frames": c.frames,
            "bytes": c.bytes,
            "kernel_drops": drops,
            "cpu_rx": cpu(since=base),
            "seconds": (t_last - t_first) if (t_first and t_last) else None,
        }
    )


if __name__ == "__main__":
    {"rx": rx, "tx": tx, "rawtx": rawtx, "rawrx": rawrx}[sys.argv[1]](json.loads(sys.argv[2]))
