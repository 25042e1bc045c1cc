"""File transfers in a node: the adapter between the sans-IO file cores and the data path.

`Transfers` lives beside `NodeService` (in the daemon, or in a one-shot `l2fast send` without
a daemon) and serves the requests `send`, `inbox`, `accept`, `reject` and `transfers`.

Sending (`OutgoingJob`): the command opens the files with its user's rights and passes the
descriptors (SCM_RIGHTS to a daemon; the node never opens user paths). The job opens a
session, runs `OutgoingTransfer` (offers, FILE_END, FILE_RESULT on the control stream), maps
each file and sends the chunk ranges the window asks for with the C `TxPath` (header, CRC32C
and sendmmsg in C, payload straight from the mapping), on a socket of its own that the kernel
filters to FEEDBACK of this session. SHA-256 is computed by `FileDigester` threads beside it.
Python runs per batch of frames and per FEEDBACK, never per frame.

Receiving (`IncomingJob`): one per session the peer offers files on. Offers go through the
`--accept` policy (all, ask: kept for `l2fast inbox` / `accept` / `reject`, none), accepted
files are placed by `ReceiveDir` (part file, sidecar bitmap for resume) and received by a
`ReceiveJob` (receive process + writer processes); the digest of the written prefix is
computed by `PrefixDigester`; the verified file is fsynced and renamed, then FILE_RESULT.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import resource
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from l2fast import native
from l2fast.daemon.display import escape_text, format_mac
from l2fast.daemon.runner import NodeRunner, Timer
from l2fast.errors import L2fastError
from l2fast.native import datapath as dp
from l2fast.node.events import (
    ControlReceived,
    Event,
    SessionClosed,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.states import SessionState
from l2fast.transfer.digest import FileDigester, PrefixDigester, new_hasher
from l2fast.transfer.incoming import IncomingFile, PlacementError
from l2fast.transfer.placement import ReceiveDir
from l2fast.transfer.protocol import (
    FileChunksComplete,
    FileCompleted,
    FileEntry,
    FileFailed,
    FileReceived,
    FileRejected,
    FileVerified,
    IncomingTransfer,
    OfferAccepted,
    OfferReceived,
    OfferRejected,
    OutgoingTransfer,
    TransferDone,
    TransferFailed,
    TransferProgress,
    for_sender,
    is_file_frame,
)
from l2fast.transfer.receiver_proc import (
    BenchReceiver,
    RawCounter,
    ReceiveJob,
    SmallFileReceiver,
)
from l2fast.wire.constants import ETH_HLEN, Digest, ErrorCode, FileKind, FrameType, Verdict
from l2fast.wire.frames import Feedback, FileOffer, decode_payload

__all__ = ["Transfers"]

log = logging.getLogger("l2fast.daemon")

#: Chunks asked of the window per sending turn (then the loop serves everything else).
SEND_BATCH_CHUNKS = 1024
#: The receiver's credit before its first FEEDBACK: none. Its receive path for a file runs
#: only once the file is accepted, and chunks sent before that would be dropped and resent.
INITIAL_CREDIT = 0
# Header bytes a DATA frame adds to a chunk (PROTOCOL.md §Header).
_HDR = 24
_WIRE_OVERHEAD = ETH_HLEN + _HDR  # a DATA frame's bytes on the wire beyond its chunk
_POLL_S = 0.01
_IDLE_S = 0.005  # pump at least this often while waiting on the receiver
_BLOCKED_S = 0.0002  # retry this soon when the kernel queue was full
_PROGRESS_S = 0.25


def raise_fd_limit() -> None:
    """Open files up to the hard limit: a folder is sent with one descriptor per file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _chunk_size(mtu: int) -> int:
    return mtu - _HDR


# --------------------------------------------------------------------------------- sending


@dataclass
class _SourceFile:
    entry: FileEntry
    fd: int
    data: mmap.mmap | None = None
    tx: dp.TxPath | None = None
    digester: FileDigester | None = None


class OutgoingJob:
    """One `send` request: a session, its `OutgoingTransfer` and the C sender."""

    def __init__(
        self,
        owner: Transfers,
        reply: Any,
        peer: bytes,
        files: list[_SourceFile],
        digest: Digest,
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply  # callable(dict)
        self.peer = peer
        self.files = files
        self.digest = digest
        self.kernel_drops = 0  # summed from the receiver's FEEDBACK
        self._txs: list[dp.TxPath] = []  # every C sender this job made (bench sums their stats)
        self.session = self.runner.engine.open_session(peer, self.runner.now())
        self.out: OutgoingTransfer | None = None
        self.sock: native.RawSocket | None = None
        self.pending: deque[tuple[int, int, int]] = deque()  # (index, start, end) not yet taken
        self.started = 0.0
        self.bytes_sent_frames = 0
        self.ended = False
        self._pump_timer: Timer | None = None
        self._poll_timer: Timer | None = None
        self._last_progress = 0.0
        self.resent_bytes = 0
        self.skipped_bytes = 0
        self.results: list[dict[str, Any]] = []

    # --- session -----------------------------------------------------------------------------

    def on_opened(self, mtu: int) -> None:
        now = self.runner.now()
        chunk = _chunk_size(mtu)
        entries = []
        for f in self.files:
            f.entry = FileEntry(
                path=f.entry.path,
                kind=f.entry.kind,
                size=f.entry.size,
                mode=f.entry.mode,
                mtime_ns=f.entry.mtime_ns,
                chunk_size=chunk,
                digest=self.digest,
            )
            entries.append(f.entry)
        self.out = OutgoingTransfer(entries, now=now, initial_credit=INITIAL_CREDIT)
        self.sock = native.RawSocket.open(self.runner.sock.ifname, sndbuf=64 << 20, rcvbuf=16 << 20)
        self.sock.set_filter(native.SocketFilter.FEEDBACK, self.session)
        self.runner.add_reader(self.sock, self._on_feedback)
        self.started = now
        self.reply({"event": "start", "session": f"{self.session:#010x}", "mtu": mtu})
        self._after(now)

    def on_ended(self, error: Any) -> None:
        if self.out is None:
            self._finish(False, f"the session failed: {error}" if error else "session closed")
            return
        self.out.session_ended(self.runner.now(), error)
        self._after(self.runner.now())

    # --- data --------------------------------------------------------------------------------

    def _on_feedback(self) -> None:
        assert self.sock is not None and self.out is not None
        now = self.runner.now()
        for raw in self.sock.recv_frames(0, 256):
            info = native.parse_frame(raw)
            if info.verdict is not Verdict.OK or info.type != FrameType.FEEDBACK:
                continue
            off = ETH_HLEN + _HDR
            try:
                body = decode_payload(FrameType.FEEDBACK, raw[off : off + info.payload_len])
            except L2fastError:
                continue
            if isinstance(body, Feedback):
                # Drops the receiver's kernel reported (PACKET_STATISTICS): shown by status
                # and bench; the TxWindow also paces on them.
                self.kernel_drops += body.kernel_drops
                self.out.on_feedback(body, now, info.seq)
        self._after(now)

    def _tx_for(self, index: int) -> dp.TxPath:
        f = self.files[index]
        assert self.out is not None and self.sock is not None
        if f.tx is None:
            layout = self.out.layout(index)
            f.tx = dp.TxPath(
                self.sock,
                self.sock.ifindex,
                dst=self.peer,
                src=self.sock.mac,
                session=self.session,
                data=self._payload_source(f),
                chunk_size=layout.chunk_size,
                file_size=layout.size,
                first_chunk=layout.first_chunk,
                bench=self.bench_payload,
            )
            self._txs.append(f.tx)
        return f.tx

    #: True when every chunk's payload is the same buffer (bench streams), not file data.
    bench_payload = False

    def _payload_source(self, f: _SourceFile) -> Any:
        """What the C sender reads chunks from: the file, mapped read-only on first use."""
        if f.data is None:
            f.data = mmap.mmap(f.fd, f.entry.size, access=mmap.ACCESS_READ)
        return f.data

    def _pump(self) -> None:
        self._pump_timer = None
        out = self.out
        if out is None or self.ended:
            return
        now = self.runner.now()
        if not self.pending:
            for start, end in out.next_batch(now, SEND_BATCH_CHUNKS):
                for span in out.spans([(start, end)]):
                    self.pending.append((span.transfer_id - 1, span.start, span.end))
        blocked = False
        sent = bool(self.pending)
        while self.pending:
            index, start, end = self.pending[0]
            try:
                took = self._tx_for(index).send([(start, end)])
            except L2fastError as exc:
                out.cancel(now, f"sending failed: {exc.message}")
                self.pending.clear()
                break
            if took < end - start:
                self.pending[0] = (index, start + took, end)
                blocked = True
                break
            self.pending.popleft()
        self._after(now, _BLOCKED_S if blocked else (0.0 if sent else None))

    def _schedule(self, now: float, delay: float | None) -> None:
        """Pump again after `delay` s; None: when a timer is due (FEEDBACK wakes it sooner)."""
        out = self.out
        if out is None or out.finished or self.ended:
            return
        if self._pump_timer is not None:
            self._pump_timer.cancel()
        if delay is None:
            timer = out.next_timer()
            if timer is None and out.pacing_rate is None:
                # Nothing can become sendable without an event (FEEDBACK, control, digest),
                # and each of those pumps at once: no polling while, say, a person decides.
                self._pump_timer = None
                return
            when = min(timer if timer is not None else now + _IDLE_S, now + _IDLE_S)
        else:
            when = now + delay
        self._pump_timer = self.runner.call_at(when, self._pump_and_timers)

    def _pump_and_timers(self) -> None:
        out = self.out
        if out is None:
            return
        now = self.runner.now()
        timer = out.next_timer()
        if timer is not None and timer <= now:
            out.handle_timer(now)
        self._pump()

    # --- digests -----------------------------------------------------------------------------

    def _poll_digests(self) -> None:
        self._poll_timer = None
        out = self.out
        if out is None or self.ended:
            return
        now = self.runner.now()
        waiting = False
        for index, f in enumerate(self.files):
            d = f.digester
            if d is None:
                continue
            if d.done:
                try:
                    result = d.result(0)
                    with contextlib.suppress(L2fastError):
                        out.digest_ready(index + 1, result.raw, now)
                except Exception as exc:  # an I/O error reading the source
                    out.cancel(now, f"reading {f.entry.path!r} failed: {exc}")
                f.digester = None
            else:
                waiting = True
        if waiting:
            self._poll_timer = self.runner.call_later(_POLL_S, self._poll_digests)
        self._after(now)

    # --- events ------------------------------------------------------------------------------

    def _after(self, now: float, delay: float | None = 0.0) -> None:
        out = self.out
        if out is None:
            return
        engine = self.runner.engine
        for body in out.control_to_send():
            try:
                engine.send_control(self.peer, self.session, body, now)
            except L2fastError as exc:
                out.cancel(now, exc.message)
        while (ev := out.next_event()) is not None:
            self._on_event(ev, now)
        self._schedule(now, delay)

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, OfferAccepted):
            f = self.files[ev.index]
            self.skipped_bytes += ev.skipped_bytes
            if ev.needs_digest:
                if f.data is None and f.entry.size:
                    f.data = mmap.mmap(f.fd, f.entry.size, access=mmap.ACCESS_READ)
                f.digester = FileDigester(f.data if f.data is not None else b"", self.digest)
                if self._poll_timer is None:
                    self._poll_timer = self.runner.call_later(_POLL_S, self._poll_digests)
        if isinstance(ev, OfferRejected | FileCompleted | FileFailed):
            self._release(self.files[ev.index])
        if isinstance(ev, OfferRejected):
            self.results.append(
                {"path": ev.path, "rejected": True, "reason": ev.reason, "text": ev.text}
            )
            self.reply(
                {"event": "rejected", "path": ev.path, "reason": _code(ev.reason), "text": ev.text}
            )
        elif isinstance(ev, FileCompleted):
            self.resent_bytes += ev.resent_bytes
            self.results.append(
                {
                    "path": ev.path,
                    "final_name": ev.final_name,
                    "digest": ev.digest.hex(),
                    "verified": ev.verified,
                    "resent_bytes": ev.resent_bytes,
                    "skipped_bytes": ev.skipped_bytes,
                }
            )
        elif isinstance(ev, FileFailed):
            self.results.append({"path": ev.path, "failed": True, "error": str(ev.error)})
        elif isinstance(ev, TransferProgress):
            if now - self._last_progress >= _PROGRESS_S:
                self._last_progress = now
                self.reply(
                    {
                        "event": "progress",
                        "bytes": ev.bytes_done,
                        "total": ev.bytes_total,
                        "files_done": ev.files_done,
                        "files": ev.files_total,
                        "seconds": round(now - self.started, 3),
                    }
                )
        elif isinstance(ev, TransferDone):
            self._finish(
                ev.files_failed == 0 and ev.files_rejected == 0,
                None,
                done=ev,
            )
        elif isinstance(ev, TransferFailed):
            self._finish(False, str(ev.error))

    def _finish(self, ok: bool, error: str | None, done: TransferDone | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        now = self.runner.now()
        seconds = max(now - self.started, 1e-9) if self.started else 0.0
        total = sum(f.entry.size for f in self.files)
        sent = done.bytes_sent if done is not None else 0
        final: dict[str, Any] = {
            "done": True,
            "ok": ok,
            "files": self.results,
            "bytes": total,
            "bytes_sent": sent,
            "resent_bytes": self.resent_bytes,
            "skipped_bytes": self.skipped_bytes,
            "seconds": round(seconds, 6),
            "gbit_per_s": round(sent * 8 / seconds / 1e9, 3) if seconds else 0.0,
            "verified": ok and done is not None and done.files_verified == len(self.files),
        }
        digests = [r.get("digest") for r in self.results if r.get("digest")]
        if len(self.files) == 1:
            final["digest"] = digests[0] if digests else None
        if error:
            final["error"] = error
        elif not ok:
            rejected = [r for r in self.results if r.get("rejected")]
            if rejected:
                r = rejected[0]
                final["error"] = f"the receiver refused {r['path']!r}: {_code(r['reason'])}" + (
                    f" ({escape_text(r['text'])})" if r["text"] else ""
                )
            else:
                failed = [r for r in self.results if r.get("failed")]
                final["error"] = failed[0]["error"] if failed else "the transfer failed"
        self.reply(final)
        self.close()
        _close_session(self.runner, self.peer, self.session, now)

    def cancel(self) -> None:
        if self.out is not None and not self.ended:
            self.out.cancel(self.runner.now(), "the client went away")
        self._finish(False, "cancelled")

    @staticmethod
    def _release(f: _SourceFile) -> None:
        """A file that ended: its mapping and descriptor go (a folder may hold thousands)."""
        if f.digester is not None:
            f.digester.cancel()
            f.digester = None
        f.tx = None
        if f.data is not None:
            with contextlib.suppress(BufferError):
                f.data.close()
                f.data = None
        if f.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(f.fd)
            f.fd = -1

    def close(self) -> None:
        self.ended = True
        for t in (self._pump_timer, self._poll_timer):
            if t is not None:
                t.cancel()
        if self.sock is not None:
            self.runner.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        for f in self.files:
            self._release(f)
        self.owner.outgoing.pop(self.session, None)

    def status(self) -> dict[str, Any]:
        p = self.out.progress() if self.out is not None else None
        return {
            "direction": "send",
            "peer": format_mac(self.peer),
            "session": f"{self.session:#010x}",
            "files": len(self.files),
            "bytes_done": p.bytes_done if p else 0,
            "bytes_total": p.bytes_total if p else 0,
            "seconds": round(self.runner.now() - self.started, 3) if self.started else 0.0,
        }


#: Bytes of one bench segment (one FILE_OFFER of kind bench). A bench run is a pipeline of
#: segments, so each one ends with a FILE_RESULT carrying the receiver's CPU time and drops.
BENCH_SEGMENT_BYTES = 128 << 20
#: The fastest link a bench run plans segments for (Gbit/s); a faster one ends the run early.
BENCH_MAX_GBIT = 50.0


class BenchJob(OutgoingJob):
    """One `bench` request: bench streams (FILE_OFFER kind 3) sent for `seconds` over the
    real protocol (credit, SACK, retransmission, CRC32C), from one buffer, to a memory sink.

    Replies `{"event": "interval", ...}` every `interval` seconds and a final `done` message
    with the summary; then the remaining segments are cancelled and the session closed.
    """

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.seconds = seconds
        self.interval = interval
        n = int(seconds * BENCH_MAX_GBIT * 1e9 / 8 / BENCH_SEGMENT_BYTES) + 2
        files = [
            _SourceFile(FileEntry(path=f"bench/{i}", kind=FileKind.BENCH), -1) for i in range(n)
        ]
        super().__init__(owner, reply, peer, files, Digest.SHA256)
        self.mtu = 0
        self.chunk = 0
        self._buf = b""
        self.intervals: list[dict[str, Any]] = []
        self.rx_cpu_s = 0.0
        self.rx_wall_s = 0.0
        self.rx_segments = 0
        self._tick_timer: Timer | None = None
        self._end_timer: Timer | None = None
        self._last: dict[str, float] = {}
        self._rx_interval = [0.0, 0.0]
        self._cpu0 = 0.0

    def on_opened(self, mtu: int) -> None:
        self.mtu = mtu
        self.chunk = _chunk_size(mtu)
        self._buf = bytes(range(256)) * (self.chunk // 256 + 1)
        size = max(1, BENCH_SEGMENT_BYTES // self.chunk) * self.chunk
        for f in self.files:
            f.entry = FileEntry(path=f.entry.path, kind=FileKind.BENCH, size=size, mode=0)
        self._cpu0 = time.process_time()
        super().on_opened(mtu)
        self._last = self._counters(self.started)
        self._tick_timer = self.runner.call_later(self.interval, self._tick)
        self._end_timer = self.runner.call_later(self.seconds, self._end)

    bench_payload = True

    def _payload_source(self, f: _SourceFile) -> Any:
        """Bench chunks all carry the same in-memory buffer: no file is read."""
        return self._buf

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, FileCompleted):
            note = parse_bench_note(ev.final_name)
            if note:
                self.rx_segments += 1
                self.rx_cpu_s += note.get("cpu_s", 0.0)
                self.rx_wall_s += note.get("wall_s", 0.0)
                self._rx_interval[0] += note.get("cpu_s", 0.0)
                self._rx_interval[1] += note.get("wall_s", 0.0)
            if self.out is not None:
                self._release(self.files[ev.index])
            return
        if isinstance(ev, TransferProgress):
            return
        if isinstance(ev, OfferRejected):
            text = f" ({escape_text(ev.text)})" if ev.text else ""
            self._finish(False, f"the peer refused the bench stream: {_code(ev.reason)}{text}")
            return
        if isinstance(ev, FileFailed):
            self._finish(False, f"the bench stream failed: {ev.error}")
            return
        if isinstance(ev, TransferDone):  # every planned segment went: a very fast link
            self._end()
            return
        super()._on_event(ev, now)

    # --- measuring ---------------------------------------------------------------------------

    def _counters(self, now: float) -> dict[str, float]:
        out = self.out
        frames = sum(t.stats().frames for t in self._txs)
        acked = out.window.acked_chunks if out is not None else 0
        retrans = out.window.stats.retransmitted_chunks if out is not None else 0
        return {
            "t": now,
            "bytes": acked * self.chunk,
            "acked_frames": acked,
            "frames": frames,
            "retransmits": retrans,
            "drops": self.kernel_drops,
            "cpu": time.process_time(),
        }

    def _report(self, a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        dt = max(b["t"] - a["t"], 1e-9)
        return {
            "start": round(a["t"] - self.started, 3),
            "end": round(b["t"] - self.started, 3),
            "seconds": round(dt, 3),
            "bytes": int(b["bytes"] - a["bytes"]),
            "gbit_per_s": round((b["bytes"] - a["bytes"]) * 8 / dt / 1e9, 3),
            # The same frames counted as `bench --raw` counts them (headers included, no FCS).
            "wire_gbit_per_s": round(
                (b["acked_frames"] - a["acked_frames"]) * (self.chunk + _WIRE_OVERHEAD) * 8e-9 / dt,
                3,
            ),
            "frames_per_s": round((b["acked_frames"] - a["acked_frames"]) / dt),
            "frames_sent": int(b["frames"] - a["frames"]),
            "retransmits": int(b["retransmits"] - a["retransmits"]),
            "kernel_drops": int(b["drops"] - a["drops"]),
            "sender_cpu_pct": round((b["cpu"] - a["cpu"]) / dt * 100, 1),
        }

    def _tick(self) -> None:
        self._tick_timer = None
        if self.ended:
            return
        now = self.runner.now()
        cur = self._counters(now)
        rep = self._report(self._last, cur)
        cpu, wall = self._rx_interval
        rep["receiver_cpu_pct"] = round(cpu / wall * 100, 1) if wall else None
        self._rx_interval = [0.0, 0.0]
        self._last = cur
        self.intervals.append(rep)
        self.reply({"event": "interval", **rep})
        if now - self.started + self.interval <= self.seconds + 1e-3:
            self._tick_timer = self.runner.call_later(self.interval, self._tick)

    def _end(self) -> None:
        if self.ended:
            return
        now = self.runner.now()
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        cur = self._counters(now)
        if cur["t"] - self._last["t"] > self.interval * 0.2:
            self._tick_last(cur)
        first = {"t": self.started, "bytes": 0, "acked_frames": 0, "frames": 0,
                 "retransmits": 0, "drops": 0, "cpu": self._cpu0}  # fmt: skip
        summary = self._report(first, cur)
        summary["receiver_cpu_pct"] = (
            round(self.rx_cpu_s / self.rx_wall_s * 100, 1) if self.rx_wall_s else None
        )
        summary["receiver_cpu_s"] = round(self.rx_cpu_s, 3)
        summary["receiver_segments"] = self.rx_segments
        summary["sender_cpu_s"] = round(cur["cpu"] - self._cpu0, 3)
        self.ended = True
        self.reply(
            {
                "done": True,
                "ok": True,
                "mtu": self.mtu,
                "chunk_size": self.chunk,
                "session": f"{self.session:#010x}",
                "intervals": self.intervals,
                "end": summary,
            }
        )
        if self.out is not None:
            self.out.cancel(now, "bench over")
        self.close()
        _close_session(self.runner, self.peer, self.session, now)

    def _tick_last(self, cur: dict[str, float]) -> None:
        rep = self._report(self._last, cur)
        cpu, wall = self._rx_interval
        rep["receiver_cpu_pct"] = round(cpu / wall * 100, 1) if wall else None
        self._last = cur
        self.intervals.append(rep)
        self.reply({"event": "interval", **rep})

    def close(self) -> None:
        for t in (self._tick_timer, self._end_timer):
            if t is not None:
                t.cancel()
        self._tick_timer = self._end_timer = None
        super().close()


#: FILE_OFFER path of a bench request (`l2fast bench -R`, docs/PROTOCOL.md §FILE_OFFER).
BENCH_REVERSE_PATH = "bench/reverse"
#: FILE_OFFER path of a raw-blast count request (`l2fast bench --raw`).
BENCH_RAW_PATH = "bench/raw"


class _RawRequest(OutgoingJob):
    """The zero-size `bench/raw` offer of a `RawBenchJob`: tells it when the peer is ready
    (FILE_ACCEPT) and what the peer counted (FILE_RESULT text)."""

    def __init__(self, owner: Transfers, job: RawBenchJob, peer: bytes, seconds: float) -> None:
        entry = FileEntry(
            path=BENCH_RAW_PATH, kind=FileKind.BENCH, mode=0, mtime_ns=int(seconds * 1e9)
        )
        super().__init__(owner, job.on_request, peer, [_SourceFile(entry, -1)], Digest.SHA256)
        self.job = job

    def on_opened(self, mtu: int) -> None:
        self.job.mtu = mtu
        super().on_opened(mtu)

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, OfferAccepted):
            self.job.on_accepted()
        elif isinstance(ev, FileCompleted):
            self.job.note = parse_bench_note(ev.final_name)
        super()._on_event(ev, now)


class RawBenchJob:
    """`bench --raw`: the peer's node opens a counting socket (a `bench/raw` offer), this node
    blasts full-size DATA frames at it for `seconds` (l2fast.rawblast, in a thread), and the
    peer's FILE_RESULT says what arrived. No acknowledgement, no retransmission."""

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply
        self.peer = peer
        self.seconds = seconds
        self.interval = interval
        self.mtu = 0
        self.note: dict[str, float] = {}
        self.results: list[Any] = []
        self.reported = 0
        self.blast_done = False
        self.request_done: dict[str, Any] | None = None
        self.stopped = False
        self.ended = False
        self.started = 0.0
        self.intervals: list[dict[str, Any]] = []
        self.request = _RawRequest(owner, self, peer, seconds)
        owner.outgoing[self.request.session] = self.request
        self._timer: Timer | None = None

    def on_accepted(self) -> None:
        import threading

        self.started = self.runner.now()
        self.reply({"event": "start", "session": f"{self.request.session:#010x}", "mtu": self.mtu})
        threading.Thread(target=self._blast, daemon=True).start()
        self._timer = self.runner.call_later(0.05, self._poll)

    def _blast(self) -> None:
        from l2fast.rawblast import BLAST_SESSION, send_blast

        try:
            with native.RawSocket.open(self.runner.sock.ifname, sndbuf=8 << 20) as sock:
                sock.set_filter(native.SocketFilter.FEEDBACK, BLAST_SESSION)  # hears nothing
                size = min(sock.mtu, self.mtu) + ETH_HLEN
                left = self.seconds
                while left > 1e-3 and not self.stopped:
                    r = send_blast(sock, self.peer, min(self.interval, left), size)
                    self.results.append(r)
                    left -= r.seconds
        finally:
            self.blast_done = True

    def on_request(self, obj: dict[str, Any]) -> None:
        if obj.get("done"):
            self.request_done = obj
            if not obj.get("ok", True) and not self.started:
                self._fail(f"the peer refused the raw count: {obj.get('error')}")

    def _poll(self) -> None:
        self._timer = None
        if self.ended:
            return
        t = 0.0
        for r in self.results[: self.reported]:
            t += r.seconds
        while self.reported < len(self.results):
            r = self.results[self.reported]
            self.reported += 1
            rep = {
                "start": round(t, 3),
                "end": round(t + r.seconds, 3),
                "seconds": round(r.seconds, 3),
                "frames_sent": r.frames,
                "gbit_per_s": round(r.gbit_per_s, 3),
                "frames_per_s": round(r.frames_per_s),
            }
            t += r.seconds
            self.intervals.append(rep)
            self.reply({"event": "interval", **rep})
        if self.blast_done and self.request_done is not None:
            self._end()
            return
        self._timer = self.runner.call_later(0.05, self._poll)

    def _end(self) -> None:
        sent = sum(r.frames for r in self.results)
        secs = sum(r.seconds for r in self.results)
        size = self.results[0].frame_size if self.results else 0
        note = self.note
        arrived = int(note.get("frames", 0)) if note else None
        rx_s = note.get("seconds", 0.0) if note else 0.0
        end = {
            "seconds": round(secs, 3),
            "frame_size": size,
            "frames_sent": sent,
            "sent_gbit_per_s": round(sent * size * 8 / secs / 1e9, 3) if secs else 0.0,
            "frames_arrived": arrived,
            "bad_frames": int(note.get("bad", 0)) if note else None,
            "kernel_drops": int(note.get("kernel_drops", 0)) if note else None,
            "gbit_per_s": round(arrived * size * 8 / rx_s / 1e9, 3) if arrived and rx_s else 0.0,
            "frames_per_s": round(arrived / rx_s) if arrived and rx_s else 0,
            "lost_frames": sent - arrived if arrived is not None else None,
        }
        ok = bool(note) and bool(self.request_done and self.request_done.get("ok"))
        self.ended = True
        error = None if ok else (self.request_done or {}).get("error") or "no count came back"
        self.reply(
            {
                "done": True,
                "ok": ok,
                "mtu": self.mtu,
                "session": f"{self.request.session:#010x}",
                "intervals": self.intervals,
                "end": end,
                **({"error": error} if error else {}),
            }
        )

    def _fail(self, error: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        self.reply({"done": True, "ok": False, "error": error})

    def cancel(self) -> None:
        self.stopped = True
        self.request.cancel()
        self.ended = True


class ReverseBenchJob:
    """`bench -R`: ask the peer to send bench streams back and measure them arriving here.

    The request is a zero-size bench offer whose path is `bench/reverse` and whose
    `mtime_ns` is the wanted duration; the peer's node accepts it and runs a `BenchJob` back
    to this node, whose bench receive process this job samples every `interval`. The
    sender's retransmissions and CPU stay on the peer (reported as null here).
    """

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply
        self.peer = peer
        self.seconds = seconds
        self.interval = interval
        self.ended = False
        self.started = 0.0
        self.intervals: list[dict[str, Any]] = []
        self.bench: BenchReceiver | None = None
        self.mtu = 0
        self.session = 0
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        owner.bench_expected[peer] = owner.bench_expected.get(peer, 0) + 1
        entry = FileEntry(
            path=BENCH_REVERSE_PATH, kind=FileKind.BENCH, mode=0, mtime_ns=int(seconds * 1e9)
        )
        self.request = OutgoingJob(owner, self._on_request, peer, [_SourceFile(entry, -1)],
                                   Digest.SHA256)  # fmt: skip
        owner.outgoing[self.request.session] = self.request
        self._timer: Timer | None = self.runner.call_later(0.02, self._watch)
        self._give_up = self.runner.call_later(seconds + 15.0, self._no_data)

    def _on_request(self, obj: dict[str, Any]) -> None:
        if obj.get("done") and not obj.get("ok", True) and self.bench is None:
            self._fail(f"the peer refused the bench request: {obj.get('error')}")

    def _no_data(self) -> None:
        if self.bench is None:
            self._fail("the peer sent no bench stream")
        else:
            self._end()

    def _watch(self) -> None:
        self._timer = None
        if self.ended:
            return
        for inc in self.owner.incoming.values():
            if inc.peer == self.peer and inc.bench is not None:
                self.bench = inc.bench
                self.mtu = inc.mtu
                self.session = inc.session
                break
        if self.bench is None:
            self._timer = self.runner.call_later(0.02, self._watch)
            return
        now = self.runner.now()
        self.started = now
        self.reply({"event": "start", "session": f"{self.session:#010x}", "mtu": self.mtu})
        self._first = self._last = self._sample(now)
        self._timer = self.runner.call_later(self.interval, self._tick)

    def _sample(self, now: float) -> dict[str, float]:
        b = self.bench
        assert b is not None
        return {
            "t": now,
            "frames": b.cum - b.first,
            "bytes": (b.cum - b.first) * b.chunk_size,
            "drops": b.kernel_drops,
            "rx_cpu": b.cpu_s,
        }

    def _report(self, a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        dt = max(b["t"] - a["t"], 1e-9)
        return {
            "start": round(a["t"] - self.started, 3),
            "end": round(b["t"] - self.started, 3),
            "seconds": round(dt, 3),
            "bytes": int(b["bytes"] - a["bytes"]),
            "gbit_per_s": round((b["bytes"] - a["bytes"]) * 8 / dt / 1e9, 3),
            "frames_per_s": round((b["frames"] - a["frames"]) / dt),
            "frames_sent": None,
            "retransmits": None,
            "kernel_drops": int(b["drops"] - a["drops"]),
            "sender_cpu_pct": None,
            "receiver_cpu_pct": round((b["rx_cpu"] - a["rx_cpu"]) / dt * 100, 1),
        }

    def _live(self) -> bool:
        return any(inc.bench is self.bench for inc in self.owner.incoming.values())

    def _tick(self) -> None:
        self._timer = None
        if self.ended:
            return
        now = self.runner.now()
        cur = self._sample(now)
        rep = self._report(self._last, cur)
        if rep["bytes"] or self._live():
            self._last = cur
            self.intervals.append(rep)
            self.reply({"event": "interval", **rep})
        if self._live() and now - self.started < self.seconds + 0.5 * self.interval:
            self._timer = self.runner.call_later(self.interval, self._tick)
        else:
            self._end()

    def _end(self) -> None:
        if self.ended:
            return
        last = self._last if self._last else {}
        summary = self._report(self._first, last) if last else {}
        self._close()
        self.reply(
            {
                "done": True,
                "ok": bool(last),
                "reverse": True,
                "mtu": self.mtu,
                "chunk_size": self.bench.chunk_size if self.bench else None,
                "session": f"{self.session:#010x}",
                "intervals": self.intervals,
                "end": summary,
            }
        )

    def _fail(self, error: str) -> None:
        if self.ended:
            return
        self._close()
        self.reply({"done": True, "ok": False, "error": error})

    def _close(self) -> None:
        self.ended = True
        for t in (self._timer, self._give_up):
            if t is not None:
                t.cancel()
        self._timer = None
        n = self.owner.bench_expected.get(self.peer, 0) - 1
        if n > 0:
            self.owner.bench_expected[self.peer] = n
        else:
            self.owner.bench_expected.pop(self.peer, None)

    def cancel(self) -> None:
        self.request.cancel()
        self._close()


def _close_session(runner: NodeRunner, peer: bytes, session: int, now: float) -> None:
    """Close this one session in order (NodeEngine.close would close every session with the
    peer, including other transfers'). NodeEngine has no per-session close yet: this reaches
    its slot table, to be replaced by such a method."""
    engine = runner.engine
    slot = engine._slots.get((peer, session))
    if slot is None or slot.session.state is not SessionState.OPEN:
        return
    with contextlib.suppress(L2fastError):
        slot.session.close(now)
    engine._collect(now)


def bench_note(msg: dict[str, Any]) -> str:
    """The FILE_RESULT `final_name` text of a bench stream: `bench cpu_s=.. wall_s=.. drops=..`."""
    return (
        f"bench cpu_s={float(msg.get('cpu_s', 0.0)):.4f} wall_s={float(msg.get('wall_s', 0.0)):.4f}"
        f" drops={int(msg.get('drops', 0))}"
    )


def parse_bench_note(text: str) -> dict[str, float]:
    """The numbers of a `bench_note` (empty when the peer sent none)."""
    out: dict[str, float] = {}
    if not text.startswith("bench "):
        return out
    for part in text.split()[1:]:
        key, _, value = part.partition("=")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def _code(code: int) -> str:
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"error {code}"


# ------------------------------------------------------------------------------- receiving


@dataclass
class _Receiving:
    transfer_id: int
    offer: OfferReceived
    file: IncomingFile | None = None
    job: ReceiveJob | None = None
    digester: PrefixDigester | None = None
    written: bool = False
    digest: bytes = b""


@dataclass
class _Pending:
    """An offer waiting for `l2fast accept` / `reject` (--accept ask)."""

    id: int
    session: int
    peer: bytes
    offer: OfferReceived
    since: float


@dataclass
class IncomingJob:
    owner: Transfers
    session: int
    peer: bytes
    mtu: int
    incoming: IncomingTransfer
    offers: dict[int, FileOffer] = field(default_factory=dict)
    files: dict[int, _Receiving] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)  # accepted, waiting for the receiver
    active: int | None = None
    small: SmallFileReceiver | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    bench: BenchReceiver | None = None  # the bench streams' receive process
    bench_ends: deque[tuple[int, int]] = field(default_factory=deque)  # (transfer_id, end chunk)


class Transfers:
    """The node's file transfers (see the module docstring)."""

    def __init__(self, runner: NodeRunner, *, recv_dir: str | None, accept: str) -> None:
        raise_fd_limit()
        self.runner = runner
        self.recv_dir = recv_dir
        self.accept_policy = accept
        self.outgoing: dict[int, OutgoingJob] = {}
        self.incoming: dict[int, IncomingJob] = {}
        self.pending: dict[int, _Pending] = {}
        self._next_pending = 1
        self._recv: ReceiveDir | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=100)
        self._session_mtu: dict[int, int] = {}
        #: Peers asked to send bench streams here (`bench -R`): accepted whatever the policy.
        self.bench_expected: dict[bytes, int] = {}

    # --- node events -------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        """Route session and control events to the jobs."""
        if isinstance(ev, SessionOpened):
            self._session_mtu[ev.session] = ev.params.mtu
            job = self.outgoing.get(ev.session)
            if job is not None and job.peer == ev.peer:
                job.on_opened(ev.params.mtu)
        elif isinstance(ev, SessionClosed | SessionFailed):
            self._session_mtu.pop(ev.session, None)
            error = ev.error if isinstance(ev, SessionFailed) else None
            job = self.outgoing.get(ev.session)
            if job is not None:
                job.on_ended(error)
            inc = self.incoming.pop(ev.session, None)
            if inc is not None:
                self._end_incoming(inc, error)
        elif isinstance(ev, ControlReceived) and is_file_frame(ev.body):
            now = self.runner.now()
            if for_sender(ev.body):
                job = self.outgoing.get(ev.session)
                if job is not None and job.out is not None:
                    job.out.receive_control(ev.body, now)
                    job._after(now)
                return
            inc = self.incoming.get(ev.session)
            if inc is None:
                inc = IncomingJob(
                    self,
                    ev.session,
                    ev.peer,
                    self._session_mtu.get(ev.session, 1500),
                    IncomingTransfer(
                        now=now,
                        buffer_chunks=1 << 16,
                        mtu=self._session_mtu.get(ev.session, 1500),
                        session=ev.session,
                        peer=ev.peer,
                    ),
                    started=now,
                )
                self.incoming[ev.session] = inc
            if isinstance(ev.body, FileOffer):
                inc.offers[ev.body.transfer_id] = ev.body
            inc.incoming.receive_control(ev.body, now)
            self._after_incoming(inc)

    # --- receiving ---------------------------------------------------------------------------

    def _receive_dir(self) -> ReceiveDir:
        if self._recv is None:
            path = self.recv_dir or os.path.abspath("l2fast-received")
            os.makedirs(path, mode=0o755, exist_ok=True)
            self._recv = ReceiveDir(path)
        return self._recv

    def _after_incoming(self, inc: IncomingJob) -> None:
        now = self.runner.now()
        engine = self.runner.engine
        while (ev := inc.incoming.next_event()) is not None:
            self._on_incoming_event(inc, ev, now)
        for body in inc.incoming.control_to_send():
            with contextlib.suppress(L2fastError):
                engine.send_control(inc.peer, inc.session, body, now)
        self._start_next(inc)
        self.runner.flush()

    def _on_incoming_event(self, inc: IncomingJob, ev: Any, now: float) -> None:
        if isinstance(ev, OfferReceived):
            self._decide(inc, ev, now)
        elif isinstance(ev, FileChunksComplete):
            rec = inc.files.get(ev.transfer_id)
            if rec is not None and rec.written and rec.digester is not None:
                self._wait_digest(inc, rec)
        elif isinstance(ev, FileVerified):
            rec = inc.files.get(ev.transfer_id)
            if rec is None or rec.file is None:
                return
            try:
                placed = rec.file.complete(ev.digest, rec.digest)
            except PlacementError as exc:
                inc.incoming.file_failed(
                    ev.transfer_id, int(exc.code or ErrorCode.IO_ERROR), exc.message, now
                )
                return
            inc.incoming.file_placed(ev.transfer_id, placed.final_name, now)
        elif isinstance(ev, FileReceived) and ev.kind is FileKind.BENCH:
            inc.files.pop(ev.transfer_id, None)
        elif isinstance(ev, FileReceived):
            entry = {
                "peer": format_mac(inc.peer),
                "path": ev.path,
                "final_name": ev.final_name,
                "bytes": ev.size,
                "digest": ev.digest.hex(),
            }
            inc.received.append(entry)
            self.history.append(entry)
            log.info(
                "received %r from %s as %r (%d bytes, digest %s)",
                escape_text(ev.path),
                format_mac(inc.peer),
                escape_text(ev.final_name),
                ev.size,
                ev.digest.hex(),
            )
            inc.files.pop(ev.transfer_id, None)
        elif isinstance(ev, FileRejected):
            log.info(
                "file %r from %s refused: %s %s",
                escape_text(ev.path),
                format_mac(inc.peer),
                _code(ev.code),
                escape_text(ev.text),
            )
            rec = inc.files.pop(ev.transfer_id, None)
            if rec is not None:
                self._drop_file(rec, keep=ev.code != ErrorCode.DIGEST_MISMATCH)

    def _decide(self, inc: IncomingJob, ev: OfferReceived, now: float) -> None:
        label = f"{escape_text(ev.path)!r} ({ev.size} bytes) from {format_mac(inc.peer)}"
        if ev.kind is FileKind.BENCH and inc.peer in self.bench_expected:
            self._accept_bench(inc, ev, now)
            return
        if self.accept_policy == "none":
            log.info("refused %s: --accept none", label)
            inc.incoming.reject(
                ev.transfer_id, now, ErrorCode.REFUSED, "this node accepts no files (--accept none)"
            )
            return
        if ev.kind is FileKind.BENCH:
            # A bench stream (l2fast bench) touches no disk: accepted unless --accept none.
            self._accept_bench(inc, ev, now)
            return
        if self.accept_policy == "ask":
            pid = self._next_pending
            self._next_pending += 1
            self.pending[pid] = _Pending(pid, inc.session, inc.peer, ev, now)
            log.info("offer %d pending: %s", pid, label)
            return
        self._accept(inc, ev, now)

    def _accept(self, inc: IncomingJob, ev: OfferReceived, now: float) -> None:
        offer = inc.offers.get(ev.transfer_id)
        if offer is None:
            return
        try:
            recv = self._receive_dir()
            if ev.kind is FileKind.DIRECTORY:
                name = recv.make_directory(ev.path)
                inc.incoming.accept(ev.transfer_id, now, final_name=name)
                return
            if ev.kind is not FileKind.FILE:
                raise PlacementError(
                    f"{escape_text(ev.path)!r}: only files and directories are received",
                    code=ErrorCode.BAD_REQUEST,
                )
            incoming_file = recv.receive_offer(offer)
        except PlacementError as exc:
            log.info("refused %r: %s", escape_text(ev.path), exc.message)
            inc.incoming.reject(
                ev.transfer_id, now, int(exc.code or ErrorCode.REFUSED), exc.message
            )
            return
        rec = _Receiving(ev.transfer_id, ev, incoming_file)
        inc.files[ev.transfer_id] = rec
        held = [(s - ev.first_chunk, e - ev.first_chunk) for s, e in incoming_file.have]
        inc.incoming.accept(ev.transfer_id, now, have=held)
        if ev.size == 0:
            rec.written = True
            rec.digester = PrefixDigester(incoming_file.fd, 0, ev.digest)
            self._wait_digest(inc, rec)
            return
        inc.queue.append(ev.transfer_id)

    def _accept_bench(self, inc: IncomingJob, ev: OfferReceived, now: float) -> None:
        """A bench stream: received by the session's bench receive process (one for every
        bench stream of the session), whose writers release without writing; no file, no
        digest. Its credit grows to the end of each accepted stream."""
        counter = None
        if not ev.size and ev.path == BENCH_RAW_PATH:
            # Count a raw blast: ready before the FILE_ACCEPT (which starts the blast); the
            # FILE_RESULT waits for the count.
            counter = RawCounter(iface=self.runner.sock.ifname, wait_s=10.0)
            if not counter.wait_ready():
                counter.close()
                inc.incoming.reject(ev.transfer_id, now, ErrorCode.IO_ERROR, "no raw counter")
                return
            inc.incoming.bench_held.add(ev.transfer_id)
        inc.files[ev.transfer_id] = _Receiving(ev.transfer_id, ev)
        inc.incoming.accept(ev.transfer_id, now)
        if counter is not None:
            self._raw_count(inc, ev.transfer_id, counter)
            return
        if not ev.size:
            if ev.path == BENCH_REVERSE_PATH:
                self._bench_back(inc, ev)
            return
        end = ev.first_chunk + -(-ev.size // ev.chunk_size)
        inc.bench_ends.append((ev.transfer_id, end))
        if inc.bench is not None:
            inc.bench.allow(end)
            return
        bench = inc.bench = BenchReceiver(
            iface=self.runner.sock.ifname,
            session=inc.session,
            peer=inc.peer,
            chunk_size=ev.chunk_size,
            first=ev.first_chunk,
            end=end,
        )
        self.runner.add_reader(bench.conn, lambda: self._on_bench(inc))
        self.runner.add_reader(bench.sentinel, lambda: self._on_bench(inc, died=True))

    def _raw_count(self, inc: IncomingJob, tid: int, counter: RawCounter) -> None:
        def done() -> None:
            msg = counter.read()
            if msg is None:
                return
            self.runner.remove_reader(counter.conn)
            counter.close()
            if "error" in msg:
                note = "bench error=1"
                log.warning("raw blast count failed: %s", msg["error"])
            else:
                keys = ("frames", "bad", "frame_size", "seconds", "kernel_drops")
                note = "bench " + " ".join(f"{k}={msg.get(k, 0)}" for k in keys)
            inc.files.pop(tid, None)
            if not inc.incoming.finished:
                inc.incoming.release_bench(tid, note, self.runner.now())
                self._after_incoming(inc)

        self.runner.add_reader(counter.conn, done)

    def _bench_back(self, inc: IncomingJob, ev: OfferReceived) -> None:
        """A bench request (`bench -R` on the peer): send bench streams back for the
        requested time (FILE_OFFER `mtime_ns`, at most 600 s)."""
        seconds = min(max(ev.mtime_ns / 1e9, 0.1), 600.0)
        peer = format_mac(inc.peer)
        log.info("bench request from %s: sending for %.1f s", peer, seconds)

        def reply(obj: dict[str, Any]) -> None:
            if obj.get("done"):
                end = obj.get("end") or {}
                log.info(
                    "bench to %s: %s Gbit/s%s",
                    peer,
                    end.get("gbit_per_s", 0),
                    f" ({obj['error']})" if obj.get("error") else "",
                )

        self.start_bench(reply, inc.peer, seconds, 1.0)

    def _on_bench(self, inc: IncomingJob, died: bool = False) -> None:
        b = inc.bench
        if b is None:
            return
        now = self.runner.now()
        for msg in b.read():
            if "error" in msg:
                self._bench_failed(inc, str(msg["error"]))
                return
            b.kernel_drops = int(msg.get("drops", b.kernel_drops))
            b.cpu_s = float(msg.get("cpu_s", b.cpu_s))
            b.wall_s = float(msg.get("wall_s", b.wall_s))
            cum = int(msg.get("cum", b.cum))
            while inc.bench_ends and inc.bench_ends[0][1] <= cum:
                # The FILE_RESULT of a bench stream carries the receiving CPU time and kernel
                # drops since the previous one (docs/PROTOCOL.md §FILE_RESULT).
                tid, _ = inc.bench_ends.popleft()
                inc.incoming.bench_notes[tid] = bench_note(
                    {
                        "cpu_s": b.cpu_s - b.noted_cpu,
                        "wall_s": b.wall_s - b.noted_wall,
                        "drops": b.kernel_drops - b.noted_drops,
                    }
                )
                b.noted_cpu, b.noted_wall, b.noted_drops = b.cpu_s, b.wall_s, b.kernel_drops
            if cum > b.cum:
                inc.incoming.on_chunks([(b.cum, cum)], now)
                b.cum = cum
        else:
            if died:
                self._bench_failed(inc, f"the bench receive process died ({b.process.exitcode})")
                return
        self._after_incoming(inc)

    def _stop_bench(self, inc: IncomingJob) -> None:
        bench, inc.bench = inc.bench, None
        if bench is not None:
            self.runner.remove_reader(bench.conn)
            self.runner.remove_reader(bench.sentinel)
            bench.stop()

    def _bench_failed(self, inc: IncomingJob, error: str) -> None:
        log.warning("bench stream from %s failed: %s", format_mac(inc.peer), error)
        self._stop_bench(inc)
        now = self.runner.now()
        while inc.bench_ends:
            tid, _ = inc.bench_ends.popleft()
            inc.files.pop(tid, None)
            with contextlib.suppress(L2fastError):
                inc.incoming.file_failed(tid, int(ErrorCode.IO_ERROR), error, now)
        self._after_incoming(inc)

    def _start_next(self, inc: IncomingJob) -> None:
        """Start the receive process of the next accepted file (one at a time per session)."""
        if inc.active is not None or not inc.queue:
            return
        tid = inc.queue.popleft()
        rec = inc.files.get(tid)
        if rec is None or rec.file is None:
            self._start_next(inc)
            return
        f = rec.file
        if f.resume is None:
            self._start_small(inc, rec, f)
            return
        bitmap = f.resume.bitmap
        rec.job = ReceiveJob(
            iface=self.runner.sock.ifname,
            session=inc.session,
            peer=inc.peer,
            fd=f.fd,
            bitmap=bitmap,
            size=f.size,
            chunk_size=f.chunk_size,
            first_chunk=f.first_chunk,
        )
        # Threads start only after the fork.
        rec.digester = PrefixDigester(f.fd, f.size, rec.offer.digest)
        inc.active = tid
        job = rec.job
        self.runner.add_reader(job.conn, lambda: self._on_job(inc, rec))
        self.runner.add_reader(job.sentinel, lambda: self._on_job(inc, rec, died=True))

    def _start_small(self, inc: IncomingJob, rec: _Receiving, f: IncomingFile) -> None:
        """A small file (no part file, no resume) goes to the session's small-file process."""
        small = inc.small
        if small is None:
            small = inc.small = SmallFileReceiver(
                iface=self.runner.sock.ifname, session=inc.session, peer=inc.peer
            )
            self.runner.add_reader(small.conn, lambda: self._on_small(inc))
            self.runner.add_reader(small.sentinel, lambda: self._on_small(inc, died=True))
        inc.active = rec.transfer_id
        small.start(rec.transfer_id, f.fd, f.size, f.chunk_size, f.first_chunk)

    def _on_small(self, inc: IncomingJob, died: bool = False) -> None:
        small = inc.small
        if small is None:
            return
        now = self.runner.now()
        for msg in small.read():
            if "error" in msg:
                self._small_failed(inc, msg["error"])
                return
            rec = inc.files.get(int(msg.get("tid", -1)))
            if rec is None or rec.file is None:
                continue
            inc.active = None
            if not msg.get("done"):
                self._job_failed(inc, rec, "the file's data did not all arrive")
                continue
            f = rec.file
            inc.incoming.on_chunks([(f.first_chunk, f.first_chunk + f.n_chunks)], now)
            # A small file is hashed at once, here (at most resume_min_bytes).
            hasher = new_hasher(rec.offer.digest)
            hasher.update(os.pread(f.fd, f.size, 0))
            rec.written = True
            rec.digest = hasher.digest()
            try:
                inc.incoming.file_written(rec.transfer_id, rec.digest, now)
            except L2fastError as exc:
                log.warning("file %r: %s", escape_text(rec.offer.path), exc.message)
        else:
            if died:
                self._small_failed(inc, f"the receive process died ({small.process.exitcode})")
                return
        self._after_incoming(inc)

    def _small_failed(self, inc: IncomingJob, error: str) -> None:
        self._stop_small(inc)
        rec = inc.files.get(inc.active) if inc.active is not None else None
        inc.active = None
        if rec is not None:
            self._job_failed(inc, rec, error)
        else:
            self._after_incoming(inc)

    def _stop_small(self, inc: IncomingJob) -> None:
        small, inc.small = inc.small, None
        if small is not None:
            self.runner.remove_reader(small.conn)
            self.runner.remove_reader(small.sentinel)
            small.stop()

    def _on_job(self, inc: IncomingJob, rec: _Receiving, died: bool = False) -> None:
        job = rec.job
        if job is None:
            return
        now = self.runner.now()
        for msg in job.read():
            if "error" in msg:
                self._job_failed(inc, rec, msg["error"])
                return
            job.kernel_drops = int(msg.get("drops", job.kernel_drops))
            cum = int(msg.get("cum", job.first_chunk))
            if cum > job.cum:
                inc.incoming.on_chunks([(job.cum, cum)], now)
                job.cum = cum
            if rec.digester is not None:
                # Received is not written: only the prefix on disk may be hashed.
                rec.digester.advance(job.written_prefix())
            if msg.get("done"):
                self._job_done(inc, rec)
                break
        else:
            if died and not job.finished:
                code = job.process.exitcode
                self._job_failed(inc, rec, f"the receive process died (exit status {code})")
                return
        self._after_incoming(inc)

    def _stop_job(self, inc: IncomingJob, rec: _Receiving) -> None:
        job = rec.job
        if job is None:
            return
        self.runner.remove_reader(job.conn)
        self.runner.remove_reader(job.sentinel)
        job.stop()
        rec.job = None
        if inc.active == rec.transfer_id:
            inc.active = None

    def _job_done(self, inc: IncomingJob, rec: _Receiving) -> None:
        self._stop_job(inc, rec)
        rec.written = True
        if rec.digester is not None:
            rec.digester.advance(rec.offer.size)
        self._wait_digest(inc, rec)

    def _job_failed(self, inc: IncomingJob, rec: _Receiving, error: str) -> None:
        log.warning("receiving %r failed: %s", escape_text(rec.offer.path), error)
        self._stop_job(inc, rec)
        now = self.runner.now()
        with contextlib.suppress(L2fastError):
            inc.incoming.file_failed(rec.transfer_id, int(ErrorCode.IO_ERROR), error, now)
        inc.files.pop(rec.transfer_id, None)
        self._drop_file(rec, keep=True)
        self._after_incoming(inc)

    def _wait_digest(self, inc: IncomingJob, rec: _Receiving) -> None:
        d = rec.digester
        if d is None:
            return
        if not d.done:
            self.runner.call_later(_POLL_S, lambda: self._wait_digest(inc, rec))
            return
        rec.digester = None
        now = self.runner.now()
        try:
            rec.digest = d.result(0).raw
            inc.incoming.file_written(rec.transfer_id, rec.digest, now)
        except L2fastError as exc:
            log.warning("file %r: %s", escape_text(rec.offer.path), exc.message)
        except Exception as exc:
            self._job_failed(inc, rec, f"hashing the received data failed: {exc}")
            return
        self._after_incoming(inc)

    def _drop_file(self, rec: _Receiving, keep: bool) -> None:
        if rec.digester is not None:
            rec.digester.cancel()
        f = rec.file
        rec.file = None
        if f is None or f.outcome is not None:
            return
        with contextlib.suppress(Exception):
            if keep:
                f.interrupt()
            else:
                f.discard()

    def _end_incoming(self, inc: IncomingJob, error: Any) -> None:
        now = self.runner.now()
        self._stop_small(inc)
        self._stop_bench(inc)
        for rec in list(inc.files.values()):
            self._stop_job(inc, rec)
            self._drop_file(rec, keep=True)
        inc.incoming.session_ended(now, error)
        while inc.incoming.next_event() is not None:
            pass
        for pid in [p.id for p in self.pending.values() if p.session == inc.session]:
            del self.pending[pid]

    # --- requests ----------------------------------------------------------------------------

    def start_send(
        self, reply: Any, peer: bytes, files: list[dict[str, Any]], fds: list[int], digest: Digest
    ) -> OutgoingJob:
        """Start sending: `files` describe the entries, `fds` hold one descriptor per regular
        file, in order (directories have none)."""
        sources: list[_SourceFile] = []
        fd_iter = iter(fds)
        try:
            for item in files:
                kind = FileKind(int(item.get("kind", FileKind.FILE)))
                fd = next(fd_iter) if kind is FileKind.FILE else -1
                size = os.fstat(fd).st_size if fd >= 0 else 0
                entry = FileEntry(
                    path=str(item["path"]),
                    kind=kind,
                    size=size,
                    mode=int(item.get("mode", 0o644)) & 0o7777,
                    mtime_ns=int(item.get("mtime_ns", 0)),
                    digest=digest,
                )
                sources.append(_SourceFile(entry, fd))
        except (StopIteration, KeyError, ValueError, TypeError, OSError) as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise L2fastError(f"bad send request: {exc!r}") from None
        job = OutgoingJob(self, reply, peer, sources, digest)
        self.outgoing[job.session] = job
        return job

    def start_bench(self, reply: Any, peer: bytes, seconds: float, interval: float) -> BenchJob:
        """Start a bench run to `peer` (see `BenchJob`)."""
        job = BenchJob(self, reply, peer, seconds, interval)
        self.outgoing[job.session] = job
        return job

    def start_raw_bench(self, reply: Any, peer: bytes, seconds: float, interval: float) -> Any:
        """Blast raw frames at `peer`, which counts them (see `RawBenchJob`)."""
        return RawBenchJob(self, reply, peer, seconds, interval)

    def start_reverse_bench(
        self, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> ReverseBenchJob:
        """Ask `peer` to send bench streams here (see `ReverseBenchJob`)."""
        return ReverseBenchJob(self, reply, peer, seconds, interval)

    def inbox(self) -> list[dict[str, Any]]:
        """Offers waiting for a decision (--accept ask)."""
        now = self.runner.now()
        return [
            {
                "id": p.id,
                "peer": format_mac(p.peer),
                "path": escape_text(p.offer.path),
                "kind": p.offer.kind.name.lower(),
                "size": p.offer.size,
                "waiting_s": round(now - p.since, 1),
            }
            for p in self.pending.values()
        ]

    def decide(self, pid: int, accept: bool) -> dict[str, Any]:
        """Answer a pending offer."""
        p = self.pending.pop(pid, None)
        if p is None:
            raise L2fastError(f"no pending offer {pid}", hint="see `l2fast inbox`")
        inc = self.incoming.get(p.session)
        if inc is None:
            raise L2fastError(f"offer {pid}: the sender is gone")
        now = self.runner.now()
        if accept:
            self._accept(inc, p.offer, now)
        else:
            inc.incoming.reject(p.offer.transfer_id, now, ErrorCode.REFUSED, "refused by the user")
        self._after_incoming(inc)
        return {"offer": pid, "path": escape_text(p.offer.path), "accepted": accept}

    def status(self) -> list[dict[str, Any]]:
        """Transfers in flight, for `l2fast status`."""
        out = [job.status() for job in self.outgoing.values()]
        now = self.runner.now()
        for inc in self.incoming.values():
            p = inc.incoming.progress()
            if inc.incoming.finished or (not inc.files and not inc.queue):
                continue
            out.append(
                {
                    "direction": "receive",
                    "peer": format_mac(inc.peer),
                    "session": f"{inc.session:#010x}",
                    "files": p.files_total,
                    "bytes_done": p.bytes_done,
                    "bytes_total": p.bytes_total,
                    "seconds": round(now - inc.started, 3),
                    "kernel_drops": sum(
                        r.job.kernel_drops for r in inc.files.values() if r.job is not None
                    ),
                }
            )
        return out

    def close(self) -> None:
        """Stop everything (the node is stopping): part files are kept for a resume."""
        for job in list(self.outgoing.values()):
            job.close()
        for inc in list(self.incoming.values()):
            self._end_incoming(inc, None)
        self.incoming.clear()
