"""The receiving data path of one file: a receive process and its writer processes.

The controller (the daemon's loop) starts a `ReceiveJob` for each accepted file. The job forks
one receive process (multiprocessing, fork) that opens its own raw socket, filtered in the
kernel to DATA of this session only (`SocketFilter.DATA`), and runs the C receive loop
(`RxPath`) over shared-memory rings; it sends FEEDBACK to the sender itself (every 2 ms or
each half of the rings' slots) from `RxPath.feedback()`. The writer processes (children of
the receive process) drain the rings with pwritev into the part file. Python runs per
FEEDBACK and per progress message, never per frame.

The controller hears from the receive process through a Pipe, about every 20 ms:
`{"cum": cum_ack, "drops": n}`, then `{"done": True, ...}` once every chunk is written, or
`{"error": text}`. The process sentinel tells the controller when it died.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import mmap
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from l2fast import native
from l2fast.errors import L2fastError, NativeError
from l2fast.native import datapath as dp
from l2fast.procname import name_this_thread
from l2fast.transfer.receive_sockets import LentSocket, ReceiveSockets
from l2fast.wire.constants import FrameType
from l2fast.wire.frames import encode_payload

__all__ = ["WRITERS", "BenchReceiver", "RawCounter", "ReceiveJob", "SmallFileReceiver"]

#: Writer processes per received file.
WRITERS = 2
#: Shared memory per ring (bounds the receiver's memory whatever the file size).
RING_BYTES = 16 << 20
#: A bench stream's credit: the slots that two rings of half this would hold (256 frames each
#: at MTU 9000), as many frames in flight as when its chunks went through such rings (session
#: 11's `BENCH_RING_BYTES`). They no longer do: a bench stream has no writer, so each chunk is
#: verified, windowed and counted, then its slot is reused by the next read (RxPath `discard`).
#: Its reads land in one read's worth of slots that stay in cache, as iperf3's and the raw
#: ceiling's do, instead of cycling through 4.6 MiB of shared rings: `l2fast bench` +6 % at MTU
#: 9000 and +37 % at 65535, 6 of 6 and 5 of 5 alternating pairs (BENCHMARKS.md "Bench receive
#: scratch slots"). File receives keep their rings: their writers read the slots.
BENCH_CREDIT_BYTES = 8 << 20
#: A FEEDBACK at least this often while frames arrive...
FEEDBACK_INTERVAL_S = 0.002
#: ...and after every this fraction of the rings' slots received, so that credit comes back
#: long before the sender used it up (the rings hold 3-40 ms of data at the link's rate).
#: Measured on veth: a FEEDBACK every 0.5 ms cost the sender ~130 us of Python each (a fifth of
#: its core at MTU 9000) and the receive process a tenth of its own. Half rather than a quarter
#: (session 6): at MTU 65535 the rings hold 256 frames, ~3 ms at the link's rate, so a quarter
#: meant ~1400 FEEDBACKs a second; half made `l2fast bench` +4.7 % there (BENCHMARKS.md §Found
#: while measuring), and at 1500 and 9000 the 2 ms interval comes first either way.
FEEDBACK_SLOT_FRACTION = 2
#: After a read that drained the socket mid-stream, the receive loop sleeps this long so that
#: the next read takes a batch (RxPath `gather_us`). Measured on veth at MTU 9000: 2.6 frames per
#: recvmmsg and ~7,000 poll wake-ups/s without it, ~45 frames per call and ~150 wake-ups/s with
#: it, the receive process using ~15 % less CPU per GiB. It costs at most this much latency.
GATHER_US = 200
REPORT_INTERVAL_S = 0.02
SOCKBUF = 64 << 20
#: Frames per recvmmsg at most (RxPath `batch`).
RX_BATCH = 64
#: Receive window in chunks (RxPath `window`): the credit never reaches past cum_ack + this.
RX_WINDOW = 1 << 17


def _worker_start(name: str) -> None:
    """First thing in every forked worker: its name, and the default signal dispositions.

    The fork copies the controller's handlers, which only ask the controller's loop to stop:
    in a worker they made SIGTERM do nothing, so a worker could be neither terminated nor
    joined (multiprocessing's exit handler terminates daemonic workers, then joins them) and
    the daemon hung on exit, its control address still held by the worker. Now SIGTERM ends a
    worker; SIGINT and SIGHUP (a Ctrl-C, or the terminal closing, to its whole process group)
    are left to the controller, which stops its workers in order.
    """
    name_this_thread(name)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


#: A writer's exit status when the file system is full (or the quota reached), and what the
#: receive process then reports: the sender hears `no_space`, the daemon's log one line.
WRITER_NO_SPACE = 3
NO_SPACE_ERROR = "the receiving file system is full"
#: The errno values that mean the receiving file system is full (or the quota reached).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


#: A writer's exit status when its receive process died before it (the writer's work is moot:
#: the file fails; nobody reads this status, the daemon reports the receive process's death).
WRITER_ORPHANED = 4


def _writer_main(ring: dp.ShmRing, fd: int, o: dict[str, Any], stop: Event, receiver: int) -> None:
    _worker_start("l2f-writer")
    w = dp.Writer(ring, fd, chunk_size=o["chunk"], file_size=o["size"], first_chunk=o["first"])
    try:
        while not (stop.is_set() and ring.used() == 0):
            if os.getppid() != receiver:
                # The receive process died (SIGKILL, OOM killer) without setting `stop`. A
                # writer that went on waiting for it kept, inherited through the fork, the
                # pipes by which the daemon sees that process end: the daemon never noticed,
                # the sender stalled, and the writers lived on as orphans holding the file.
                os._exit(WRITER_ORPHANED)
            w.drain(2048, wait_s=0.005)
    except NativeError as exc:
        # The receive process sees the exit status and reports the failure; a traceback of
        # this process in the daemon's log would say nothing more.
        os._exit(WRITER_NO_SPACE if -exc.code in NO_SPACE_ERRNOS else 1)


def _writer_died(status: int | None) -> str:
    """The receive process's report of a writer that exited with `status`."""
    if status == WRITER_NO_SPACE:
        return NO_SPACE_ERROR
    return f"a writer process died (exit status {status})"


def _ring_slots(ring_bytes: int, slot: int) -> int:
    """Slots of a ring of about `ring_bytes` (at most) for `slot`-byte slots: a power of two,
    at least 64."""
    return max(64, 1 << (ring_bytes // slot).bit_length() - 1)


def _slots(rings: list[dp.ShmRing]) -> int:
    """The slots of all `rings`: what the credit counts."""
    return sum(r.nslots for r in rings)


def _feedback_frames(slots: int) -> int:
    """Frames after which the receive loop returns to send a FEEDBACK, for a credit of `slots`."""
    return max(16, slots // FEEDBACK_SLOT_FRACTION)


def _rx_batch(slots: int) -> int:
    """Frames per recvmmsg: 64, fewer when the credit counts few slots (large MTUs). The credit
    keeps one batch of slots in reserve, so at MTU 65535 (256 slots) a 64-frame batch would
    hold back a quarter of the rings; 16 frames of 64 KiB still make a 1 MiB read."""
    return max(8, min(RX_BATCH, slots // 16))


def _feedback_due(run: dp.RxRun, now: float, last_fb: float) -> bool:
    """A FEEDBACK is due: the interval passed, `_feedback_frames` arrived or the file just
    completed (the sender is waiting for that)."""
    urgent = dp.RxStop.FRAMES | dp.RxStop.COMPLETE
    return bool(run.stop & urgent) or now - last_fb >= FEEDBACK_INTERVAL_S


def _report_failure(conn: Connection, what: str, work: Callable[[], None]) -> None:
    """Run a child process's work; if it fails, tell the controller why over `conn` (the
    controller must hear the reason, not just see the process die)."""
    try:
        work()
    except L2fastError as exc:
        full = isinstance(exc, NativeError) and -exc.code in NO_SPACE_ERRNOS
        with contextlib.suppress(OSError):
            conn.send({"error": NO_SPACE_ERROR if full else exc.message})
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send({"error": f"{what}: {exc!r}"})


def _data_socket(o: dict[str, Any], session: int, sndbuf: int) -> native.RawSocket:
    """The receive process's socket: the pooled one the controller lent it (routed to by the
    node's fanout group, which alone decides what reaches it, `ReceiveSockets.lend`), or else
    one of its own, filtered here to the session's DATA."""
    lent: native.RawSocket | None = o.get("sock")
    if lent is not None:
        return lent
    sock = native.RawSocket.open(o["iface"], sndbuf=sndbuf, rcvbuf=SOCKBUF)
    sock.set_filter(native.SocketFilter.DATA, session)
    return sock


def _receive_main(o: dict[str, Any], fd: int, bitmap: Any, conn: Connection) -> None:
    """The receive process: RxPath, FEEDBACK, writers; reports to the controller."""
    _worker_start("l2f-rx")
    _report_failure(conn, "receive process", lambda: _receive(o, fd, bitmap, conn))


def _receive(o: dict[str, Any], fd: int, bitmap: Any, conn: Connection) -> None:
    started = time.monotonic()
    sock = _data_socket(o, o["session"], 8 << 20)
    slot = dp.slot_size_for_mtu(sock.mtu)
    rings = [dp.ShmRing(_ring_slots(RING_BYTES, slot), slot) for _ in range(WRITERS)]
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    writers = [
        ctx.Process(target=_writer_main, args=(ring, fd, o, stop, os.getpid()), daemon=True)
        for ring in rings
    ]
    for p in writers:
        p.start()
    path = dp.RxPath(
        sock,
        rings,
        session=o["session"],
        chunk_size=o["chunk"],
        file_size=o["size"],
        first_chunk=o["first"],
        window=RX_WINDOW,
        batch=_rx_batch(_slots(rings)),
        written=bitmap,
        gather_us=GATHER_US,
    )
    peer = bytes.fromhex(o["peer"])
    # FEEDBACK seq: microseconds of the monotonic clock, so the receive processes of
    # successive files in one session keep numbering upwards (the sender ignores old ones).
    fb_seq = time.monotonic_ns() // 1000
    drops_total = 0

    def send_feedback() -> dp.RxFeedback:
        nonlocal fb_seq, drops_total
        fb = path.feedback()
        _, drops = sock.stats()
        drops_total += drops
        fb_seq += 1
        wire = fb.to_wire(min(drops, 0xFFFFFFFF))
        # Credit stops at this file's end: the next file's chunks are sent once its receive
        # path runs, rather than dropped now and resent later.
        wire = dataclasses.replace(wire, credit=min(wire.credit, o["end"]))
        payload = encode_payload(wire)
        frame = native.build_frame(
            peer, sock.mac, sock.ethertype, FrameType.FEEDBACK, 0, o["session"], fb_seq, payload
        )
        with contextlib.suppress(L2fastError):
            sock.send_frames([frame])
        return fb

    last_fb = last_report = 0.0
    fb_frames = _feedback_frames(_slots(rings))
    error = None
    while True:
        run = path.run(FEEDBACK_INTERVAL_S, fb_frames)
        if run.stop & dp.RxStop.RING_FULL:
            time.sleep(GATHER_US / 1e6)  # the writers are behind: let them drain, do not spin
        now = time.monotonic()
        if _feedback_due(run, now, last_fb):
            fb = send_feedback()
            last_fb = now
            if fb.complete:
                break
        if now - last_report >= REPORT_INTERVAL_S:
            last_report = now
            if os.getppid() != o["parent"]:
                error = "the controller died"  # a SIGKILLed daemon: nothing is left running
                break
            dead = [p.exitcode for p in writers if p.exitcode is not None]
            if dead:
                error = _writer_died(dead[0])
                break
            conn.send({"cum": fb.cum_ack, "drops": drops_total})
            if conn.poll():  # the controller says stop (transfer cancelled)
                error = "cancelled"
                break
    # Received is not written: wait for the writers to empty every ring.
    while error is None and any(r.used() for r in rings):
        dead = [p.exitcode for p in writers if p.exitcode is not None]
        if dead:
            error = _writer_died(dead[0])
            break
        time.sleep(0.0005)
    stop.set()
    for p in writers:
        p.join(10)
        if p.is_alive():
            p.kill()
    if error is not None:
        conn.send({"error": error})
        return
    fb = send_feedback()  # reclaims the last slots: marks their chunks written
    for _ in range(3):
        time.sleep(0.002)
        fb = send_feedback()
    c = path.counters()
    t = os.times()  # the writers were joined: their CPU time is in the children's fields
    conn.send(
        {
            "cpu_s": t.user + t.system + t.children_user + t.children_system,
            "wall_s": time.monotonic() - started,
            "done": fb.complete,
            "cum": fb.cum_ack,
            "drops": drops_total,
            "duplicates": c.duplicates,
            "frames": c.frames,
        }
    )


class _Borrower:
    """A forked process that may borrow a pooled data socket from the node's fanout group
    (`l2fast.transfer.receive_sockets`) for its life."""

    process: BaseProcess
    #: The pooled socket lent to the process (`_lend`), or None: it opened its own.
    lent: LentSocket | None = None

    def _lend(self, sockets: ReceiveSockets | None, session: int, o: dict[str, Any]) -> None:
        """Borrow a pooled socket for `session` before the fork (the process inherits it as
        `o["sock"]`); without one the process opens its own."""
        self.lent = sockets.lend(session) if sockets is not None else None
        o["sock"] = self.lent.sock if self.lent is not None else None

    def _start(self) -> None:
        """Fork the process; a lent socket goes back if that fails."""
        try:
            self.process.start()
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        """Return the lent socket (the pool parks it while the process is still alive)."""
        lent, self.lent = self.lent, None
        if lent is not None:
            started = self.process.pid is not None
            lent.give_back(self.process if started else None)


class ChildProcess(_Borrower):
    """A forked worker process and the pipe to it, seen from the controller (never per frame:
    messages are per batch, progress report or file)."""

    conn: Connection

    @property
    def sentinel(self) -> int:
        """Readable when the process ended."""
        return self.process.sentinel

    def read(self) -> list[dict[str, Any]]:
        """Messages waiting from the process (never blocks)."""
        out: list[dict[str, Any]] = []
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError):
            pass
        return out

    def end_process(self, grace_s: float) -> None:
        """Ask the process to stop; kill it if it has not within `grace_s` seconds."""
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(grace_s)
        self._give_back()


class ReceiveJob(ChildProcess):
    """One file's receive process, seen from the controller."""

    def __init__(
        self,
        *,
        iface: str,
        session: int,
        peer: bytes,
        fd: int,
        bitmap: Any,
        size: int,
        chunk_size: int,
        first_chunk: int,
        sockets: ReceiveSockets | None = None,
    ) -> None:
        self.size = size
        self.chunk_size = chunk_size
        self.first_chunk = first_chunk
        self.end_chunk = first_chunk + -(-size // chunk_size)
        self._own_bitmap: mmap.mmap | None = None
        if bitmap is None:
            # A small file has no sidecar: an anonymous shared map stands in.
            self._own_bitmap = mmap.mmap(-1, max(1, dp.written_bitmap_size(size, chunk_size)))
            bitmap = self._own_bitmap
        self._bitmap = memoryview(bitmap).cast("B")
        self._full_bytes = 0  # leading bitmap bytes known to be all ones
        o = {
            "iface": iface,
            "session": session,
            "peer": peer.hex(),
            "size": size,
            "chunk": chunk_size,
            "first": first_chunk,
            "parent": os.getpid(),
            "end": self.end_chunk,
        }
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(
            target=_receive_main, args=(o, fd, bitmap, child), daemon=False
        )
        self._lend(sockets, session, o)
        self._start()
        child.close()
        self.cum = first_chunk
        #: Frames the kernel dropped on the receive socket (PACKET_STATISTICS), as reported.
        self.kernel_drops = 0
        self.finished = False

    def written_prefix(self) -> int:
        """Bytes [0, n) of the file that are on disk (from the shared written bitmap: the
        receive process sets a chunk's bit once its writer released the slot)."""
        n = self.end_chunk - self.first_chunk
        whole = n // 8
        i = self._full_bytes
        if i < whole:
            tail = bytes(self._bitmap[i:whole])
            i += len(tail) - len(tail.lstrip(b"\xff"))
            self._full_bytes = i
        k = i * 8
        while k < n and self._bitmap[k >> 3] >> (k & 7) & 1:
            k += 1
        return min(k * self.chunk_size, self.size)

    def stop(self) -> None:
        """Ask the process to stop, and make sure it does."""
        self.end_process(grace_s=2)
        self.close()

    def close(self) -> None:
        """Release the pipe and the stand-in bitmap."""
        self.finished = True
        with contextlib.suppress(OSError):
            self.conn.close()
        self._bitmap.release()
        if self._own_bitmap is not None:
            with contextlib.suppress(BufferError):
                self._own_bitmap.close()


# ------------------------------------------------------------------------- small files


def _small_main(o: dict[str, Any], conn: Connection) -> None:
    _worker_start("l2f-rx-small")
    _report_failure(conn, "receive process", lambda: _small(o, conn))


#: Small files the controller hands the small-file process ahead of the one being received.
#: Small on purpose: both ends write to the same socketpair without waiting to read, so the
#: messages in flight either way (a job is a pickle and an SCM_RIGHTS message, ~1-2 KiB of
#: socket buffer each; a report is one message) must always fit in its ~200 KiB buffer, or
#: the controller blocked on a full pipe and a process blocked on its report would deadlock.
#: A few files ahead is all the pipelining needs.
SMALL_QUEUE = 16


def _small(o: dict[str, Any], conn: Connection) -> None:
    """Small files of one session, one after another, in this process: RxPath, then the
    rings drained by in-process writers (a small file is a few chunks: no writer processes,
    no fork per file). The controller queues files here ahead of time (`SMALL_QUEUE`), so the
    next file's receive path and credit follow the previous file's last chunk at once, with no
    round trip through the controller between files."""
    sock = _data_socket(o, o["session"], 8 << 20)
    slot = dp.slot_size_for_mtu(sock.mtu)
    rings = [dp.ShmRing(_ring_slots(4 << 20, slot), slot)]
    peer = bytes.fromhex(o["peer"])
    fb_seq = time.monotonic_ns() // 1000
    jobs: deque[tuple[dict[str, Any], int]] = deque()
    stopping = False

    def pull() -> bool:
        """Queue what the controller sent, without waiting; True once it said stop."""
        nonlocal stopping
        while not stopping and conn.poll():
            job = conn.recv()
            if job == "stop":
                stopping = True
            else:
                jobs.append((job, reduction.recv_handle(conn)))
        return stopping

    conn.send({"ready": True})
    try:
        while not stopping:
            if not jobs and not conn.poll(REPORT_INTERVAL_S):
                if os.getppid() != o["parent"]:
                    return
                continue
            if pull() or not jobs:
                continue
            job, fd = jobs.popleft()
            try:
                fb_seq = _small_file(
                    sock, rings, peer, o["session"], job, fd, fb_seq, conn, pull,
                    lambda: not pull() and bool(jobs),
                )  # fmt: skip
            finally:
                os.close(fd)
    finally:
        for _, fd in jobs:
            os.close(fd)


def _small_file(
    sock: native.RawSocket,
    rings: list[dp.ShmRing],
    peer: bytes,
    session: int,
    job: dict[str, Any],
    fd: int,
    fb_seq: int,
    conn: Connection,
    pull: Callable[[], bool],
    has_next: Callable[[], bool],
) -> int:
    size, chunk, first = job["size"], job["chunk"], job["first"]
    end = first + -(-size // chunk)
    bitmap = bytearray(max(1, dp.written_bitmap_size(size, chunk)))
    path = dp.RxPath(
        sock,
        rings,
        session=session,
        chunk_size=chunk,
        file_size=size,
        first_chunk=first,
        window=1 << 12,
        written=bitmap,
        publish_bytes=0,
    )
    writers = [
        dp.Writer(ring, fd, chunk_size=chunk, file_size=size, first_chunk=first) for ring in rings
    ]

    def send(fb: dp.RxFeedback) -> None:
        nonlocal fb_seq
        wire = fb.to_wire()
        # Credit stops at this file's end: the next file's chunks come once its receive path
        # is set up, instead of being dropped now and resent later.
        wire = dataclasses.replace(wire, credit=min(wire.credit, end))
        fb_seq += 1
        frame = native.build_frame(
            peer, sock.mac, sock.ethertype, FrameType.FEEDBACK, 0, session, fb_seq,
            encode_payload(wire),
        )  # fmt: skip
        with contextlib.suppress(L2fastError):
            sock.send_frames([frame])

    deadline = time.monotonic() + job.get("timeout", 60.0)
    send(path.feedback())
    last_fb = time.monotonic()
    while time.monotonic() < deadline:
        run = path.run(FEEDBACK_INTERVAL_S)
        for w in writers:
            w.drain(4096)
        now = time.monotonic()
        if _feedback_due(run, now, last_fb):
            fb = path.feedback()
            if fb.complete and not any(r.used() for r in rings):
                break  # its last FEEDBACK goes out below
            send(fb)
            last_fb = now
        if pull():
            break  # the controller stops this process: the file is abandoned
    for w in writers:
        w.drain(4096)
    fb = path.feedback()  # marks the last chunks written
    complete = fb.complete and all(bitmap[k >> 3] >> (k & 7) & 1 for k in range(end - first))
    if not (complete and has_next()):
        # Otherwise the next file's first FEEDBACK, sent as soon as its receive path is set
        # up, acknowledges this file too (its cum_ack starts past this file's end).
        send(fb)
    conn.send({"tid": job["tid"], "done": complete, "cum": fb.cum_ack})
    path.close()
    return fb_seq


class SmallFileReceiver(ChildProcess):
    """One session's receive process for small files, seen from the controller."""

    def __init__(
        self, *, iface: str, session: int, peer: bytes, sockets: ReceiveSockets | None = None
    ) -> None:
        o = {"iface": iface, "session": session, "peer": peer.hex(), "parent": os.getpid()}
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(target=_small_main, args=(o, child), daemon=True)
        self._lend(sockets, session, o)
        self._start()
        child.close()
        #: Transfer ids handed to the process and not reported yet, in the order it takes them.
        self.outstanding: deque[int] = deque()

    def has_room(self) -> bool:
        """Whether another file may be queued (at most `SMALL_QUEUE` outstanding)."""
        return len(self.outstanding) < SMALL_QUEUE

    def start(self, tid: int, fd: int, size: int, chunk_size: int, first_chunk: int) -> None:
        """Queue one file to receive into `fd` (duplicated into the process): it starts as
        soon as the files queued before it are done."""
        self.conn.send({"tid": tid, "size": size, "chunk": chunk_size, "first": first_chunk})
        reduction.send_handle(self.conn, fd, self.process.pid or 0)
        self.outstanding.append(tid)

    def stop(self) -> None:
        """Stop the process and close the pipe."""
        self.end_process(grace_s=1)
        with contextlib.suppress(OSError):
            self.conn.close()


# ------------------------------------------------------------------------- bench streams

#: The data space a bench receive process covers (chunks from the first bench offer on): the
#: credit it grants stops at the end of the last accepted bench offer, which the controller
#: sends as `{"end": chunk}`.
BENCH_SPACE_CHUNKS = 1 << 40


def _bench_main(o: dict[str, Any], conn: Connection) -> None:
    _worker_start("l2f-rx-bench")
    _report_failure(conn, "bench receive process", lambda: _bench(o, conn))


def _bench(o: dict[str, Any], conn: Connection) -> None:
    """Every bench stream of one session, in this process: RxPath verifies, windows and counts
    each chunk, then reuses its slot (a bench stream touches no disk, so there is no writer to
    hand it to); FEEDBACK credit up to the end the controller allows. Reports cum_ack, kernel
    drops and CPU seconds every REPORT_INTERVAL_S, until told to stop."""
    started = time.monotonic()
    sock = _data_socket(o, o["session"], 8 << 20)
    slot = dp.slot_size_for_mtu(sock.mtu)
    credit_slots = 2 * _ring_slots(BENCH_CREDIT_BYTES // 2, slot)  # two rings of half
    batch = _rx_batch(credit_slots)
    # One read's worth of scratch slots, reused by every read (BENCH_CREDIT_BYTES).
    scratch = dp.ShmRing(1 << (batch - 1).bit_length(), slot)
    size = BENCH_SPACE_CHUNKS * o["chunk"]
    path = dp.RxPath(
        sock,
        [scratch],
        session=o["session"],
        chunk_size=o["chunk"],
        file_size=size,
        first_chunk=o["first"],
        window=RX_WINDOW,
        batch=batch,
        gather_us=GATHER_US,
        discard=credit_slots,
    )
    peer = bytes.fromhex(o["peer"])
    fb_seq = time.monotonic_ns() // 1000
    end = int(o["end"])
    drops_total = 0
    fb: dp.RxFeedback | None = None

    def send_feedback() -> dp.RxFeedback:
        nonlocal fb_seq, drops_total
        fb = path.feedback()
        _, drops = sock.stats()
        drops_total += drops
        fb_seq += 1
        wire = fb.to_wire(min(drops, 0xFFFFFFFF))
        wire = dataclasses.replace(wire, credit=min(wire.credit, end))
        frame = native.build_frame(
            peer, sock.mac, sock.ethertype, FrameType.FEEDBACK, 0, o["session"], fb_seq,
            encode_payload(wire),
        )  # fmt: skip
        with contextlib.suppress(L2fastError):
            sock.send_frames([frame])
        return fb

    last_fb = last_report = 0.0
    fb_frames = _feedback_frames(credit_slots)
    error = None
    while True:
        run = path.run(FEEDBACK_INTERVAL_S, fb_frames)
        now = time.monotonic()
        if fb is None or _feedback_due(run, now, last_fb):
            fb = send_feedback()
            last_fb = now
        if now - last_report >= REPORT_INTERVAL_S:
            last_report = now
            if os.getppid() != o["parent"]:
                error = "the controller died"
                break
            t = os.times()
            conn.send(
                {"cum": fb.cum_ack, "drops": drops_total, "cpu_s": t.user + t.system,
                 "wall_s": now - started}
            )  # fmt: skip
            stopping = False
            while conn.poll():
                msg = conn.recv()
                if isinstance(msg, dict) and "end" in msg:
                    end = max(end, int(msg["end"]))
                else:
                    stopping = True
            if stopping:
                break
    path.close()
    if error is not None:
        conn.send({"error": error})


class BenchReceiver(ChildProcess):
    """One session's bench receive process, seen from the controller."""

    def __init__(self, *, iface: str, session: int, peer: bytes, chunk_size: int, first: int,
                 end: int, sockets: ReceiveSockets | None = None) -> None:  # fmt: skip
        o = {
            "iface": iface,
            "session": session,
            "peer": peer.hex(),
            "chunk": chunk_size,
            "first": first,
            "end": end,
            "parent": os.getpid(),
        }
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(target=_bench_main, args=(o, child), daemon=False)
        self._lend(sockets, session, o)
        self._start()
        child.close()
        self.first = first
        self.chunk_size = chunk_size
        self.cum = first
        self.kernel_drops = 0
        #: CPU and wall seconds already given to a FILE_RESULT (the rest is the next segment's).
        self.noted_cpu = 0.0
        self.noted_wall = 0.0
        self.noted_drops = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def allow(self, end: int) -> None:
        """Grant credit up to chunk `end` (the end of the last accepted bench offer)."""
        with contextlib.suppress(OSError):
            self.conn.send({"end": end})

    def stop(self) -> None:
        """Stop the process and close the pipe."""
        self.end_process(grace_s=1)
        with contextlib.suppress(OSError):
            self.conn.close()


# ------------------------------------------------------------------------- raw blast count


def _raw_count_main(o: dict[str, Any], conn: Connection) -> None:
    from l2fast.rawblast import BLAST_SESSION, receive_blast

    _worker_start("l2f-rawcount")
    try:
        with _data_socket(o, BLAST_SESSION, 1 << 20) as sock:
            conn.send({"ready": True})
            conn.send(receive_blast(sock, o["wait_s"]).to_json())
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send({"error": f"raw count: {exc!r}"})


class RawCounter(_Borrower):
    """A process that counts the frames of one raw blast (`l2fast bench --raw` on the peer):
    its socket keeps only DATA of the blast session; it reports once the blast went quiet."""

    def __init__(self, *, iface: str, wait_s: float, sockets: ReceiveSockets | None = None) -> None:
        from l2fast.rawblast import BLAST_SESSION

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        o: dict[str, Any] = {"iface": iface, "wait_s": wait_s}
        self.process: BaseProcess = ctx.Process(
            target=_raw_count_main, args=(o, child), daemon=True
        )
        self._lend(sockets, BLAST_SESSION, o)
        self._start()
        child.close()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """True once the counting socket is open (frames sent from now on are counted)."""
        try:
            return bool(self.conn.poll(timeout) and self.conn.recv().get("ready"))
        except (EOFError, OSError):
            return False

    def read(self) -> dict[str, Any] | None:
        """The result (or `{"error": ...}`), None while counting."""
        try:
            if self.conn.poll():
                msg: dict[str, Any] = self.conn.recv()
                return msg
        except (EOFError, OSError):
            return {"error": "the raw count process died"}
        return None

    def close(self) -> None:
        """Stop the process."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(1)
        self._give_back()
        with contextlib.suppress(OSError):
            self.conn.close()
