"""Sending files: `OutgoingJob`, one `send` request over its own session.

The command opens the files with its user's rights and passes the descriptors (SCM_RIGHTS to
a daemon; the node never opens user paths). The job opens a session, runs `OutgoingTransfer`
(offers, FILE_END, FILE_RESULT on the control stream), maps each file and sends the chunk
ranges the window asks for with the C `TxPath` (header, CRC32C and sendmmsg in C, payload
straight from the mapping), on a socket of its own that the kernel filters to FEEDBACK of this
session. SHA-256 is computed by `FileDigester` threads beside it. New data goes out in
streaming bursts (`TxPath.stream`, csrc/txstream.c) that read the FEEDBACK credit in C and are
replayed into the window afterwards; resends go batch by batch. Python runs per burst, or per
batch of frames and per FEEDBACK, never per frame.

An offer the receiver keeps for a person to decide (FILE_HELD, PROTOCOL.md §FILE_HELD) is
told to the client as a `held` event, and then, while any offer is held and unanswered, a
`waiting` event every HELD_REPEAT_S: the client's silence timeout is for a node that stopped
answering, not for a person who has not decided yet.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from l2fast import native
from l2fast.daemon.display import escape_text, format_mac
from l2fast.daemon.runner import NodeRunner, Timer
from l2fast.errors import L2fastError, is_link_down
from l2fast.native import datapath as dp
from l2fast.native import mapguard
from l2fast.native.mapguard import GuardedMap, SourceError
from l2fast.transfer.digest import FileDigester, new_hasher
from l2fast.transfer.protocol import (
    FileCompleted,
    FileEntry,
    FileFailed,
    FileReoffered,
    OfferAccepted,
    OfferHeld,
    OfferRejected,
    OutgoingTransfer,
    TransferDone,
    TransferFailed,
    TransferProgress,
)
from l2fast.transfer.protocol_space import ChunkSpan
from l2fast.transfer.reliability import coalesce_feedback
from l2fast.wire.constants import (
    ETH_HLEN,
    HDR_LEN,
    Digest,
    Features,
    FrameType,
    Verdict,
    error_name,
    max_payload,
)
from l2fast.wire.frames import Feedback, decode_payload

if TYPE_CHECKING:
    from l2fast.daemon.transfers import Transfers

log = logging.getLogger("l2fast.daemon")

#: Chunks asked of the window per sending turn (then the loop serves everything else): at
#: least SEND_BATCH_CHUNKS, and as many as make SEND_BATCH_BYTES. Each turn costs the loop
#: ~0.1 ms of Python; with 1024 small chunks (MTU 1500, ~2 ms of sending) that was ~4 % of
#: the sending core: ~2900 chunks per turn made `l2fast bench` 3.9 % faster at 1500 (4.92 ->
#: 5.11 Gbit/s medians of 4, bench/env_ab.sh, 12:37 UTC 2026-11-22), while twice the chunks at
#: 9000 changed nothing. A turn stays ~6 ms at most at 1500 (a PING or chat waits that long).
SEND_BATCH_CHUNKS = 1024
SEND_BATCH_BYTES = 4 << 20
#: The receiver's credit before its first FEEDBACK: none. Its receive path for a file runs
#: only once the file is accepted, and chunks sent before that would be dropped and resent.
INITIAL_CREDIT = 0
WIRE_OVERHEAD = ETH_HLEN + HDR_LEN  # a DATA frame's bytes on the wire beyond its chunk
POLL_S = 0.01  # how often a digest computed in a thread is looked at (here and in transfers)
_IDLE_S = 0.005  # pump at least this often while waiting on the receiver
_BLOCKED_S = 0.0002  # retry this soon when the kernel queue was full
#: While the interface is down, sending is tried again this often (`_link_lost`).
_LINK_DOWN_RETRY_S = 0.05
_PROGRESS_S = 0.25
#: The longest streaming burst (csrc/txstream.c): new data goes out as the receiver's FEEDBACKs
#: extend the credit, read in C, and the window hears of it all when the burst returns. Each
#: return costs a turn of Python (~0.24 ms at MTU 65535, BENCHMARKS.md "Session 9") that used
#: to be paid per FEEDBACK (~620 a second); a chat or control frame to this daemon waits up to
#: this long (PINGs are answered by the C echo responder's own thread).
BURST_S = 0.02
#: ...for runs of at least this many new chunks, and only with credit to start on. A burst pays
#: off over several FEEDBACKs (one comes every half of the receiver's rings, 128 frames at MTU
#: 65535); for a small file, or one whose first FEEDBACK has not come yet, it would only hold
#: the loop (waiting for credit) that serves the next file's offer and result: streaming those
#: made 3000 files of 4 KiB go at ~620 files/s against ~750 (bench/small_files.py, session 10).
STREAM_MIN_CHUNKS = 256
#: Files up to this size are hashed in the event loop when accepted (~0.2 ms of SHA-256).
INLINE_DIGEST_BYTES = 256 << 10
#: While an offer is held for a person at the receiver, the client hears from the job at
#: least this often (`waiting`), well inside its silence timeout (send.SILENCE_S).
HELD_REPEAT_S = 5.0
#: How long releasing a file waits for its cancelled digest thread to stop reading the
#: mapping (it stops at its next 256 KiB block), so that the mapping can be closed.
DIGEST_STOP_WAIT_S = 0.5


# --------------------------------------------------------------------------------- sending


@dataclass
class SourceFile:
    """One entry to send and what the sender holds for it (descriptor, mapping, C sender)."""

    entry: FileEntry
    fd: int
    #: The file's modification time when the send request came (None: when it is mapped).
    mtime_ns: int | None = None
    #: The file mapped read-only on first use, guarded: another process may truncate it.
    mapped: GuardedMap | None = None
    tx: dp.TxPath | None = None
    digester: FileDigester | None = None
    #: The file ended (verified, refused, failed or offered again): its descriptor and
    #: mapping are gone, and chunks of it the window still hands out are not sent (`_pump`).
    ended: bool = False


class OutgoingJob:
    """One `send` request: a session, its `OutgoingTransfer` and the C sender."""

    def __init__(
        self,
        owner: Transfers,
        reply: Any,
        peer: bytes,
        files: list[SourceFile],
        digest: Digest,
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply  # callable(dict)
        self.peer = peer
        self.files = files
        #: Entries asked for; `files` grows past it when one is offered again (FileReoffered).
        self.n_entries = len(files)
        self.digest = digest
        #: The session's negotiated feature bits, set when it opens (before `on_opened`).
        self.features = Features.NONE
        self.kernel_drops = 0  # summed from the receiver's FEEDBACK
        self._txs: list[dp.TxPath] = []  # every C sender this job made (bench sums their stats)
        self.session = self.runner.engine.open_session(peer, self.runner.now())
        self.out: OutgoingTransfer | None = None
        self.sock: native.RawSocket | None = None  # FEEDBACK of this session arrives here
        self.tx_sock: native.RawSocket | None = None  # DATA leaves here (opened on first use)
        self.pending: deque[tuple[int, int, int]] = deque()  # (index, start, end) not yet taken
        self.started = 0.0
        self.bytes_sent_frames = 0
        self.ended = False
        self._pump_timer: Timer | None = None
        self._poll_timer: Timer | None = None
        self._held_timer: Timer | None = None  # `waiting` events while offers are held
        self.batch_chunks = SEND_BATCH_CHUNKS  # per sending turn, sized when the session opens
        #: Stream new data in C bursts (csrc/txstream.c); L2FAST_TX_STREAM=0 turns it off, for
        #: comparing (bench/env_ab.sh) or should a kernel misbehave with it.
        self.streaming = os.environ.get("L2FAST_TX_STREAM", "1") != "0"
        self._burst_log: dp.BurstLog | None = None
        self.bursts = 0
        self.feedback_refused = 0  # frames on the FEEDBACK socket that were not a valid one
        self.final_sent = False  # the client has its final message
        #: Seconds the transfer waited with some offer held for a person (and since when, while
        #: one is): not transfer time, so not in `seconds` or the rate of the final message.
        self.held_s = 0.0
        self._held_since: float | None = None
        self._last_progress = 0.0
        self.skipped_bytes = 0
        self.results: list[dict[str, Any]] = []
        #: Why a source file stopped the transfer (truncated, modified, cannot be mapped): the
        #: final message says so, and the command knows sending again as is would not help.
        self.source_error: str | None = None
        #: The map guard's process-wide fault count when this job last looked (`_check_sources`).
        self._faults_seen = mapguard.faults_total()

    # --- session -----------------------------------------------------------------------------

    def on_opened(self, mtu: int) -> None:
        now = self.runner.now()
        chunk = max_payload(mtu)
        self.batch_chunks = max(SEND_BATCH_CHUNKS, SEND_BATCH_BYTES // chunk)
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
        self.out = OutgoingTransfer(
            entries,
            now=now,
            initial_credit=INITIAL_CREDIT,
            features=self.features,
            # Small files go with their offer (FILE_INLINE) where the peer takes them;
            # L2FAST_INLINE=0 offers every file the usual way, for comparing.
            inline=self._read_inline if os.environ.get("L2FAST_INLINE", "1") != "0" else None,
            # A sealed frame's tag shortens what a control frame may carry.
            control_payload=max_payload(mtu) - self.runner.engine.trailer_len,
        )
        self.sock = native.RawSocket.open(self.runner.sock.ifname, sndbuf=1 << 20, rcvbuf=16 << 20)
        self.sock.set_filter(native.SocketFilter.FEEDBACK, self.session)
        self.runner.add_reader(self.sock, self._on_feedback)
        self.started = now
        self.reply({"event": "start", "session": f"{self.session:#010x}", "mtu": mtu})
        self._after(now)

    def _read_inline(self, index: int) -> tuple[bytes, bytes] | None:
        """Entry `index`'s bytes and digest for its FILE_INLINE, or None to offer it the
        usual way (unreadable, or not its announced size: that path reports what it finds)."""
        f = self.files[index]
        try:
            data = os.pread(f.fd, f.entry.size + 1, 0)  # a byte more: a file that grew is seen
        except OSError:
            return None
        if len(data) != f.entry.size:
            return None
        hasher = new_hasher(self.digest)
        hasher.update(data)
        return data, hasher.digest()

    def on_ended(self, error: Any) -> None:
        if self.out is None:
            self._finish(False, f"the session failed: {error}" if error else "session closed")
            return
        self.out.session_ended(self.runner.now(), error)
        self._after(self.runner.now())

    # --- data --------------------------------------------------------------------------------

    def _on_feedback(self) -> None:
        assert self.sock is not None
        now = self.runner.now()
        try:
            frames = self.sock.recv_frames(0, 256)
        except L2fastError as exc:
            if not is_link_down(exc):
                raise
            # The link went down: the socket reports it once (its pending error), and no
            # frame was lost with the report.
            frames = []
        read = [self._decode_feedback(raw) for raw in frames]
        self._apply_feedback(read, now)
        self._after(now)

    def _refuse_feedback(self, n: int = 1) -> None:
        """Count frames on this job's FEEDBACK socket that were not a valid FEEDBACK of its
        session (a forged or corrupted one: the socket filter lets only its session's FEEDBACK
        type through). `status` shows them as received and dropped (`bad_feedback`)."""
        self.feedback_refused += n
        self.runner.counters["feedback_refused"] += n

    def _decode_feedback(self, raw: bytes) -> tuple[int, Feedback] | None:
        """(header seq, FEEDBACK) of a frame, or None for anything else (dropped, counted)."""
        info = native.parse_frame(raw)
        if info.verdict is not Verdict.OK or info.type != FrameType.FEEDBACK:
            self._refuse_feedback()
            return None
        off = ETH_HLEN + HDR_LEN
        try:
            body = decode_payload(FrameType.FEEDBACK, raw[off : off + info.payload_len])
        except L2fastError:
            self._refuse_feedback()
            return None
        if not isinstance(body, Feedback):
            self._refuse_feedback()
            return None
        # Drops the receiver's kernel reported (PACKET_STATISTICS): shown by status and bench;
        # the TxWindow also paces on them.
        self.kernel_drops += body.kernel_drops
        return info.seq, body

    def _apply_feedback(self, read: Iterable[tuple[int, Feedback] | None], now: float) -> None:
        """Apply FEEDBACKs read together (None: a frame that was not one) at `now`."""
        assert self.out is not None
        # A wake-up often finds several FEEDBACKs of one receive process: the window's
        # acknowledgement work (~70 us of Python each) is done once per run of them.
        runs = coalesce_feedback(item for item in read if item is not None)
        for first, seq, body in runs:
            self.out.on_feedback(body, now, seq, first_seq=first)

    def _tx_for(self, index: int) -> dp.TxPath:
        f = self.files[index]
        assert self.out is not None
        if self.tx_sock is None:
            # DATA goes out on a transmit-only socket, apart from the one the loop polls for
            # FEEDBACK: every sent frame's buffer is released in the veth receive softirq on
            # this CPU, and releasing it wakes whoever waits on the sending socket. With the
            # event loop's epoll registered on it, that was a wait-queue lock round per frame
            # (~4 % of the sending core at MTU 1500); nobody waits on this one.
            self.tx_sock = native.RawSocket.open(
                self.runner.sock.ifname, 0, sndbuf=64 << 20, rcvbuf=0
            )
        if f.tx is None:
            layout = self.out.layout(index)
            f.tx = dp.TxPath(
                self.tx_sock,
                self.tx_sock.ifindex,
                dst=self.peer,
                src=self.tx_sock.mac,
                session=self.session,
                data=self._payload_source(f),
                data_offset=self.payload_offset,
                chunk_size=layout.chunk_size,
                file_size=layout.size,
                first_chunk=layout.first_chunk,
                bench=self.bench_payload,
                crc_helper=os.environ.get("L2FAST_TX_CRC_HELPER", "1") != "0",
            )
            self._txs.append(f.tx)
        return f.tx

    #: True when every chunk's payload is the same buffer (bench streams), not file data.
    bench_payload = False
    #: Where in `_payload_source`'s buffer the data starts.
    payload_offset = 0

    def _payload_source(self, f: SourceFile) -> Any:
        """What the C sender reads chunks from: the file, mapped read-only on first use."""
        return self._map(f)

    @staticmethod
    def _map(f: SourceFile) -> Any:
        """`f`'s mapping (made on first use): the buffer the C sender and the hashers read.
        SourceError, naming the file, when it cannot be sent as it stands."""
        if f.mapped is None:
            try:
                f.mapped = GuardedMap(f.fd, f.entry.size, f.mtime_ns)
            except SourceError as exc:
                raise _named(f, exc) from None
        return f.mapped.data

    def _source_changed(self, index: int, now: float) -> bool:
        """If entry `index`'s source shows that what was read of it may not be the file (it
        shrank under its mapping, or was modified), cancel the transfer saying so: its digest
        or its data would not be the file's. True when it did."""
        f = self.files[index]
        try:
            if f.mapped is not None:
                f.mapped.check()
        except SourceError as exc:
            self._stop_for_source(_named(f, exc), now)
            return True
        return False

    def _stop_for_source(self, exc: SourceError, now: float) -> None:
        log.warning("%s; the transfer stops", escape_text(exc.message))
        if self.source_error is None:
            self.source_error = exc.message
            self.owner.counters["sends_stopped_by_source"] += 1
        if self.out is not None:
            self.out.cancel(now, exc.message)

    def _check_sources(self, now: float) -> None:
        """Cancel the transfer when one of its mappings read past the end of its file, which
        the map guard answered with zeros (csrc/mapguard.h): one C call while nothing
        happened, a look at each mapped file when something did (in any job)."""
        faults = mapguard.faults_total()
        if faults == self._faults_seen:
            return
        self._faults_seen = faults
        for index, f in enumerate(self.files):
            if f.mapped is not None and f.mapped.truncated and self._source_changed(index, now):
                return

    def _link_lost(self, exc: L2fastError) -> bool:
        """True when `exc` says the interface is down, which the runner then logs (once per
        outage) and counts. The frames are lost, as on a cable pulled out: the window sends
        them again once the link is back, and a session that hears nothing from its peer for
        its timeout ends as always. A brief outage (a cable moved, a switch port
        renegotiating) used to fail every send at once ("Network is down")."""
        if not is_link_down(exc):
            return False
        self.runner.link_trouble("sending", exc)
        return True

    def _pump(self) -> None:
        self._pump_timer = None
        out = self.out
        if out is None or self.ended:
            return
        now = self.runner.now()
        span = out.stream_target() if self.streaming and not self.pending else None
        if (
            span is not None
            and span.end - span.start >= STREAM_MIN_CHUNKS
            and out.data_credit > span.start
            and not self.files[span.transfer_id - 1].ended
        ):
            self._after(self.runner.now(), self._burst(out, span, now))
            return
        if not self.pending:
            for start, end in out.next_batch(now, self.batch_chunks):
                for span in out.spans([(start, end)]):
                    self.pending.append((span.transfer_id - 1, span.start, span.end))
        sent = bool(self.pending)
        delay = 0.0 if sent else None  # when to pump next
        while self.pending:
            index, start, end = self.pending[0]
            if self.files[index].ended:
                # The window may still hand out chunks of a file that ended: ones taken before
                # it was verified, or ones of a file the receiver failed, which it counts as
                # received (and acknowledges) from then on. There is nothing to read them from
                # and nobody to write them: they are dropped, as the receiver would drop them.
                self.pending.popleft()
                continue
            try:
                took = self._tx_for(index).send([(start, end)])
            except SourceError as exc:
                self._stop_for_source(exc, now)
                self.pending.clear()
                break
            except L2fastError as exc:
                self.pending.clear()
                if self._link_lost(exc):
                    delay = _LINK_DOWN_RETRY_S
                else:
                    out.cancel(now, f"sending failed: {exc.message}")
                break
            if took < end - start:
                self.pending[0] = (index, start + took, end)
                delay = _BLOCKED_S
                break
            self.pending.popleft()
        self._after(now, delay)

    def _burst(self, out: OutgoingTransfer, span: ChunkSpan, now: float) -> float | None:
        """Stream `span`'s new chunks in one C burst, then replay it into the window: its sends
        as sent when they went, then its FEEDBACKs as read at the last one's arrival (they are
        cumulative, `coalesce_feedback`). Returns when to pump next (None: on FEEDBACK)."""
        assert self.sock is not None
        if self._burst_log is None:
            self._burst_log = dp.BurstLog()
        timer = out.next_timer()
        try:
            burst = self._tx_for(span.transfer_id - 1).stream(
                self._burst_log,
                self.sock,
                next_chunk=span.start,
                end=span.end,
                credit=out.data_credit,
                deadline=now + BURST_S,
                # The window's timers (retransmission, loss, stall) restart on every new
                # acknowledgement, which the burst sees: it returns when they could fire.
                quiet=None if timer is None else max(timer - now, 0.0),
                turn_frames=self.batch_chunks,
            )
        except SourceError as exc:
            self._stop_for_source(exc, now)
            return None
        except L2fastError as exc:
            if self._link_lost(exc):
                return _LINK_DOWN_RETRY_S
            out.cancel(now, f"sending failed: {exc.message}")
            return None
        self.bursts += 1
        for start, end, sent_at in burst.sends:
            out.record_streamed(start, end, sent_at, burst.credit)
        if burst.ignored:  # dropped in C: not this session's FEEDBACK, or not verified
            self._refuse_feedback(burst.ignored)
        if burst.feedback:
            # A plain FEEDBACK's fields were read in C; any other is decoded here.
            read = [fb.plain or self._decode_feedback(fb.frame) for fb in burst.feedback]
            self._apply_feedback(read, burst.feedback[-1].arrived)
        if burst.error is not None:
            if self._link_lost(burst.error):
                return _LINK_DOWN_RETRY_S
            out.cancel(now, f"sending failed: {burst.error.message}")
            return None
        if burst.stop is dp.BurstStop.BLOCKED:
            return _BLOCKED_S
        if burst.stop is dp.BurstStop.DEADLINE and burst.next >= burst.credit:
            return None  # out of credit: the next FEEDBACK (or a timer) pumps again
        return 0.0

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
                    if not self._source_changed(index, now):
                        with contextlib.suppress(L2fastError):
                            out.digest_ready(index + 1, result.raw, now)
                except Exception as exc:  # an I/O error reading the source
                    out.cancel(now, f"reading {f.entry.path!r} failed: {exc}")
                f.digester = None
            else:
                waiting = True
        if waiting:
            self._poll_timer = self.runner.call_later(POLL_S, self._poll_digests)
        self._after(now)

    # --- events ------------------------------------------------------------------------------

    def _after(self, now: float, delay: float | None = 0.0) -> None:
        out = self.out
        if out is None:
            return
        self._check_sources(now)
        engine = self.runner.engine
        for body in out.control_to_send():
            try:
                engine.send_control(self.peer, self.session, body, now)
            except L2fastError as exc:
                out.cancel(now, exc.message)
        while (ev := out.next_event()) is not None:
            self._on_event(ev, now)
        self._schedule(now, delay)

    def _held_tick(self) -> None:
        """While offers are held for a person at the receiver: say so to the client again."""
        self._held_timer = None
        out = self.out
        if out is None or self.ended or out.finished:
            return
        held = out.held()
        if not held:
            return
        now = self.runner.now()
        self.reply(
            {
                "event": "waiting",
                "held": [{"path": h.path, "pending_id": h.pending_id} for h in held],
                "seconds": round(now - self.started, 3),
            }
        )
        self._held_timer = self.runner.call_later(HELD_REPEAT_S, self._held_tick)

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, OfferHeld):
            log.info(
                "offer %r held by %s for a person (its offer %d)",
                escape_text(ev.path),
                format_mac(self.peer),
                ev.pending_id,
            )
            self.reply(
                {"event": "held", "path": ev.path, "pending_id": ev.pending_id, "text": ev.text}
            )
            if self._held_timer is None:
                self._held_timer = self.runner.call_later(HELD_REPEAT_S, self._held_tick)
            if self._held_since is None:
                self._held_since = now
            return
        if self._held_since is not None and self.out is not None and not self.out.held():
            self.held_s += now - self._held_since  # the last held offer was answered
            self._held_since = None
        if isinstance(ev, OfferAccepted):
            f = self.files[ev.index]
            self.skipped_bytes += ev.skipped_bytes
            if ev.needs_digest:
                try:
                    data = self._map(f) if f.entry.size else b""
                except SourceError as exc:
                    self._stop_for_source(exc, now)
                    return
                if f.entry.size <= INLINE_DIGEST_BYTES:
                    # A small file hashes in microseconds: here, at once, rather than in a
                    # thread of its own polled every POLL_S (for a folder of 4 KiB files,
                    # starting a thread per file cost more than the rest of the send).
                    hasher = new_hasher(self.digest)
                    hasher.update(data)
                    if self.out is not None and not self._source_changed(ev.index, now):
                        with contextlib.suppress(L2fastError):
                            self.out.digest_ready(ev.index + 1, hasher.digest(), now)
                else:
                    f.digester = FileDigester(data, self.digest)
                    if self._poll_timer is None:
                        self._poll_timer = self.runner.call_later(POLL_S, self._poll_digests)
        if isinstance(ev, FileReoffered):
            # The receiver holds another file of that name: the same source goes again.
            old = self.files[ev.index]
            assert ev.new_index == len(self.files)
            self.files.append(SourceFile(old.entry, os.dup(old.fd), old.mtime_ns))
            self._release(old)
            self.skipped_bytes -= old.entry.size  # counted as held when it was accepted
            log.info("%r differs from the receiver's file of that name: sending it", ev.path)
        if isinstance(ev, OfferRejected | FileCompleted | FileFailed):
            self._release(self.files[ev.index])
        if isinstance(ev, OfferRejected):
            self.results.append(
                {"path": ev.path, "rejected": True, "reason": ev.reason, "text": ev.text}
            )
            reason = error_name(ev.reason)
            self.reply({"event": "rejected", "path": ev.path, "reason": reason, "text": ev.text})
        elif isinstance(ev, FileCompleted):
            self.results.append(
                {
                    "path": ev.path,
                    "final_name": ev.final_name,
                    "digest": ev.digest.hex(),
                    "verified": ev.verified,
                    "needed_bytes": ev.needed_bytes,
                    "skipped_bytes": ev.skipped_bytes,
                    "present": ev.present,
                }
            )
        elif isinstance(ev, FileFailed):
            error = str(ev.error) + (f" ({escape_text(ev.text)})" if ev.text else "")
            self.results.append({"path": ev.path, "failed": True, "error": error})
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
        held_s = self.held_s + (now - self._held_since if self._held_since is not None else 0.0)
        seconds = max(now - self.started - held_s, 1e-9) if self.started else 0.0
        total = sum(f.entry.size for f in self.files[: self.n_entries])
        sent = done.bytes_sent if done is not None else 0
        final: dict[str, Any] = {
            "done": True,
            "ok": ok,
            "files": self.results,
            "bytes": total,
            "bytes_sent": sent,
            # Retransmissions only (loss, RTO probes); the bytes every file needed are
            # bytes_sent, and what the receiver already held (resume) is skipped_bytes.
            "resent_bytes": self.out.retransmitted_bytes if self.out is not None else 0,
            "retransmitted_frames": self.out.retransmitted_frames if self.out is not None else 0,
            "skipped_bytes": self.skipped_bytes,
            # Files the receiver already held (same name, size and digest): nothing was sent.
            "files_present": done.files_present if done is not None else 0,
            # Small files the receiver took from their offer (FILE_INLINE): no DATA of theirs.
            "files_inline": self.out.inline_taken if self.out is not None else 0,
            "seconds": round(seconds, 6),
            # Waiting for a person to accept (FILE_HELD) is not transfer time.
            "held_seconds": round(held_s, 3),
            "gbit_per_s": round(sent * 8 / seconds / 1e9, 3) if seconds else 0.0,
            "verified": ok and done is not None and done.files_verified == self.n_entries,
            # New data sent in C streaming bursts (csrc/txstream.c): 0 when every file was
            # small, or with L2FAST_TX_STREAM=0.
            "streaming_bursts": self.bursts,
            # Frames on this transfer's FEEDBACK socket refused as not a valid FEEDBACK of
            # its session (corrupted or forged), also under the node's drops (bad_feedback).
            "feedback_refused": self.feedback_refused,
        }
        digests = [r.get("digest") for r in self.results if r.get("digest")]
        if self.n_entries == 1:
            final["digest"] = digests[0] if digests else None
        if self.source_error is not None:
            final["error"] = self.source_error
            final["source_error"] = True
        elif error:
            final["error"] = error
        elif not ok:
            rejected = [r for r in self.results if r.get("rejected")]
            if rejected:
                r = rejected[0]
                reason = error_name(r["reason"])
                final["error"] = f"the receiver refused {r['path']!r}: {reason}" + (
                    f" ({escape_text(r['text'])})" if r["text"] else ""
                )
            else:
                failed = [r for r in self.results if r.get("failed")]
                final["error"] = failed[0]["error"] if failed else "the transfer failed"
        self.final_sent = True
        self.reply(final)
        self.close()
        close_own_session(self.runner, self.peer, self.session, now)

    def on_handler_error(self, exc: Exception) -> None:
        """One of this job's handlers raised (a bug; NodeRunner logged it): fail the transfer
        now, with a reason, instead of leaving the client to time out on a job that will never
        move again."""
        if self.final_sent:
            return
        error = f"internal error in the sending node ({type(exc).__name__}: {exc}); see its log"
        if not self.ended:
            try:
                if self.out is not None:
                    self.out.cancel(self.runner.now(), error)
                self._finish(False, error)
            except Exception:
                log.exception("the transfer could not be ended in order")
        if not self.final_sent:  # _finish raised, or the job had ended without its reply
            self.final_sent = True
            self.reply({"done": True, "ok": False, "error": error, "files": self.results})
            with contextlib.suppress(Exception):
                self.close()

    def cancel(self) -> None:
        if self.out is not None and not self.ended:
            self.out.cancel(self.runner.now(), "the client went away")
        self._finish(False, "cancelled")

    @staticmethod
    def _release(f: SourceFile) -> None:
        """A file that ended: its mapping and descriptor go (a folder may hold thousands)."""
        f.ended = True
        if f.digester is not None:
            f.digester.cancel()
            # Its thread reads the mapping until its next block: wait, so the mapping closes.
            with contextlib.suppress(Exception):
                f.digester.result(DIGEST_STOP_WAIT_S)
            f.digester = None
        if f.tx is not None:
            f.tx.release()  # the C sender holds the mapping's buffer until told
            f.tx = None
        if f.mapped is not None:
            try:
                f.mapped.close()
                f.mapped = None
            except BufferError:  # still read (a digest thread that did not stop): kept guarded
                log.warning("the mapping of %r is still in use", escape_text(f.entry.path))
        if f.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(f.fd)
            f.fd = -1

    def close(self) -> None:
        self.ended = True
        for t in (self._pump_timer, self._poll_timer, self._held_timer):
            if t is not None:
                t.cancel()
        if self.sock is not None:
            self.runner.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        for f in self.files:
            self._release(f)
        if self.tx_sock is not None:
            self.tx_sock.close()
            self.tx_sock = None
        self.owner.outgoing.pop(self.session, None)

    def status(self) -> dict[str, Any]:
        p = self.out.progress() if self.out is not None else None
        return {
            "direction": "send",
            "peer": format_mac(self.peer),
            "session": f"{self.session:#010x}",
            "files": self.n_entries,
            "files_present": sum(1 for r in self.results if r.get("present")),
            "bytes_done": p.bytes_done if p else 0,
            "bytes_total": p.bytes_total if p else 0,
            "seconds": round(self.runner.now() - self.started, 3) if self.started else 0.0,
        }


def _named(f: SourceFile, exc: SourceError) -> SourceError:
    """`exc` with the file it is about."""
    return SourceError(f"{f.entry.path!r}: {exc.message}")


def close_own_session(runner: NodeRunner, peer: bytes, session: int, now: float) -> None:
    """Close this job's own session in order (other transfers with the peer go on)."""
    with contextlib.suppress(L2fastError):
        runner.engine.close_session(peer, session, now)
