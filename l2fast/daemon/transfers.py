"""File transfers in a node: the adapter between the sans-IO file cores and the data path.

`Transfers` lives beside `NodeService` (in the daemon, or in a one-shot `l2fast send` without
a daemon) and serves the requests `send`, `inbox`, `accept`, `reject` and `transfers`.
Sending is `OutgoingJob` (outgoing.py); bench runs are in benchjobs.py.

Receiving (`IncomingJob`): one per session the peer offers files on. Offers go through the
`--accept` policy (all, ask: kept for `l2fast inbox` / `accept` / `reject`, none), accepted
files are placed by `ReceiveDir` (part file, sidecar bitmap for resume) and received by a
`ReceiveJob` (receive process + writer processes); the digest of the written prefix is
computed by `PrefixDigester`; the verified file is fsynced and renamed, then FILE_RESULT.
A file already here under the offered name and size (`ReceiveDir.find_present`, when the
session negotiated PRESENT) is accepted as present: only its digest is computed, off the loop
when it is large, and nothing is written (PROTOCOL.md §Files already at the receiver).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from l2fast.daemon.benchjobs import (
    BENCH_RAW_PATH,
    BENCH_REVERSE_PATH,
    BenchJob,
    RawBenchJob,
    ReverseBenchJob,
    bench_note,
    sender_note,
)
from l2fast.daemon.display import escape_text, format_mac
from l2fast.daemon.logflood import AUDIT
from l2fast.daemon.outgoing import POLL_S, OutgoingJob, SourceFile
from l2fast.daemon.runner import NodeRunner
from l2fast.errors import L2fastError, RemoteProtocolError
from l2fast.node.events import (
    ControlReceived,
    Event,
    SessionClosed,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.session import wire_text
from l2fast.transfer.digest import PrefixDigester, new_hasher
from l2fast.transfer.incoming import (
    IncomingFile,
    PlacedFile,
    PlacementError,
    PresentFile,
    place_files,
)
from l2fast.transfer.placement import ReceiveDir
from l2fast.transfer.protocol import (
    FileChunksComplete,
    FileEntry,
    FileReceived,
    FileRejected,
    FileVerified,
    IncomingTransfer,
    OfferReceived,
    for_sender,
    is_file_frame,
)
from l2fast.transfer.protocol_config import TransferConfig
from l2fast.transfer.receiver_proc import (
    NO_SPACE_ERRNOS,
    NO_SPACE_ERROR,
    BenchReceiver,
    RawCounter,
    ReceiveJob,
    SmallFileReceiver,
)
from l2fast.transfer.tree import raise_fd_limit
from l2fast.wire.constants import (
    MIN_MTU,
    Digest,
    ErrorCode,
    Features,
    FileKind,
    error_name,
    max_payload,
)
from l2fast.wire.frames import FileInline, FileOffer

log = logging.getLogger("l2fast.daemon")

#: The smallest chunk of a file's data this receiver takes: what one DATA frame carries at
#: the smallest MTU, so the least any sender uses (PROTOCOL.md §Limits). No l2fast sender
#: splits a file finer, and a file's bookkeeping grows with its chunk count (its resume
#: bitmap is read whole when it is accepted and when it stops): a 2.6 GB offer of 1-byte
#: chunks held the loop for 21 s.
MIN_CHUNK = max_payload(MIN_MTU)
#: The receiving transfers' configuration: the defaults, but for MIN_CHUNK.
RECEIVING = TransferConfig(min_chunk_size=MIN_CHUNK)


def _failing_on_bug(call: Callable[[], object], on_bug: Callable[[Exception], None]) -> None:
    """Run `call`; a bug in it (any exception but an L2fastError) is handed to `on_bug`, which
    fails the job it belongs to, then goes on up to NodeRunner, which logs and counts it as for
    any handler."""
    try:
        call()
    except L2fastError:
        raise
    except Exception as exc:
        on_bug(exc)
        raise


def in_job(job: OutgoingJob, call: Callable[[], object]) -> None:
    """Run one of `job`'s handlers for an engine event. A bug in it fails that job at once
    (`on_handler_error`: its client gets the reason rather than a silence)."""
    _failing_on_bug(call, job.on_handler_error)


__all__ = ["Transfers"]

#: Files one session may hold accepted and not yet ended. A sender keeps to this itself
#: (`TransferConfig.max_unfinished`); a peer that does not is refused `busy` here, since each
#: such file holds a part file (two descriptors) open in this daemon.
MAX_OPEN_FILES_PER_SESSION = TransferConfig().max_unfinished
#: ... and every session together: well inside the descriptor limit `raise_fd_limit` sets.
MAX_OPEN_FILES = 2048
#: Offers waiting for a person (--accept ask) in one session: the sender's own bound on
#: unanswered offers (`TransferConfig.max_offers_outstanding`) ...
MAX_PENDING_PER_SESSION = TransferConfig().max_offers_outstanding
#: ... and in all: `l2fast inbox` lists them in one control message.
MAX_PENDING = 1024
#: Raw blasts counted at once (`l2fast bench --raw` from a peer): each is a process, and two
#: blasts at once would only measure each other.
MAX_RAW_COUNTS = 1
#: Bench runs sent back at a peer's request (`l2fast bench -R` there), all peers together;
#: one per peer at a time. Each opens a session of this node's own.
MAX_REVERSE_RUNS = 4
#: Sessions receiving bench streams at once (a receive process each).
MAX_BENCH_RECEIVERS = 4


# ------------------------------------------------------------------------------- receiving


def _closed_by_peer(ev: SessionClosed) -> RemoteProtocolError | None:
    """The peer's reason for closing a session, when it gave one (CLOSE with a non-zero
    `reason`): what a transfer on it failed of, in the peer's words (shown escaped)."""
    if not ev.by_peer or not ev.reason:
        return None
    text = f" ({escape_text(ev.text)})" if ev.text else ""
    return RemoteProtocolError(
        f"the peer closed the session: {error_name(ev.reason)}{text}", code=ev.reason
    )


def _refusals_of(incoming: IncomingTransfer) -> Counter[str]:
    """One receiving transfer's refused frames by reason, and its `chunks_refused`."""
    out = Counter(incoming.drops)
    out["chunks_refused"] += incoming.chunks_refused
    return out


def _under(path: str, folder: str) -> bool:
    """Whether `path` lies below `folder` (component by component: `a/bc` is not in `a/b`)."""
    return path.startswith(folder + "/")


def _answered_folder(inc: IncomingJob, path: str) -> str | None:
    """The deepest folder a person answered in `inc`'s session that holds `path`, or None."""
    held = [folder for folder in inc.folder_answers if _under(path, folder)]
    return max(held, key=len) if held else None


@dataclass
class _Receiving:
    transfer_id: int
    offer: OfferReceived
    file: IncomingFile | None = None
    job: ReceiveJob | None = None
    digester: PrefixDigester | None = None
    written: bool = False
    digest: bytes = b""
    present: PresentFile | None = None  #: the file already here (accepted as present)


@dataclass
class _Pending:
    """An offer waiting for `l2fast accept` / `reject` (--accept ask)."""

    id: int
    session: int
    peer: bytes
    offer: OfferReceived
    since: float
    #: The id of the waiting folder of the same session this offer lies in (its outermost),
    #: or None: accepting that folder answers this offer too, so it is what people are told.
    folder: int | None = None


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
    files_present: int = 0  #: files found already here (a count: a session may hold many)
    started: float = 0.0
    bench: BenchReceiver | None = None  # the bench streams' receive process
    bench_ends: deque[tuple[int, int]] = field(default_factory=deque)  # (transfer_id, end chunk)
    busy_refusals: int = 0  #: offers refused `busy` (`Transfers._full_for`)
    #: A person's answer to a folder (--accept ask), by its path: it also answers every offer
    #: under that folder in this session, those waiting and those still to come.
    folder_answers: dict[str, bool] = field(default_factory=dict)
    #: Folders of this session that wait for a person, by path: their pending ids.
    waiting_folders: dict[str, int] = field(default_factory=dict)
    failed: bool = False  #: a handler of this job raised; its session is being closed


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
        #: Offers this daemon refused for its own load (`offers_refused_busy`) or failed to
        #: set up (`offers_failed_io`), and sends stopped because a source file was truncated,
        #: modified or could not be mapped (`sends_stopped_by_source`); shown by `l2fast status`.
        self.counters: Counter[str] = Counter()
        #: What the receiving transfers of ended sessions refused (see `refusals`).
        self._ended_refusals: Counter[str] = Counter()
        self._raw_counts = 0  # raw blasts being counted
        self._reverse_peers: set[bytes] = set()  # peers a bench run is being sent back to
        self._recv: ReceiveDir | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=100)
        #: Files received since the daemon started: each `history` entry's `n` (1, 2, ...),
        #: so a client polling `status` tells new entries from ones it has seen.
        self.received_count = 0
        self._session_mtu: dict[int, int] = {}
        #: The feature bits each open session negotiated (PRESENT: files already here are not
        #: received; HELD: offers kept for a person are reported to the sender with FILE_HELD).
        self._features: dict[int, Features] = {}
        #: Peers asked to send bench streams here (`bench -R`): accepted whatever the policy.
        self.bench_expected: dict[bytes, int] = {}
        #: Files verified in this batch of frames, placed together once it is handled
        #: (`_place_verified`): their jobs, transfer ids and the senders' digests.
        self._to_place: list[tuple[IncomingJob, int, bytes]] = []

    # --- node events -------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        """Route session and control events to the jobs."""
        if isinstance(ev, SessionOpened):
            self._session_mtu[ev.session] = ev.params.mtu
            self._features[ev.session] = Features(ev.params.features)
            job = self.outgoing.get(ev.session)
            if job is not None and job.peer == ev.peer:
                job.features = Features(ev.params.features)
                in_job(job, partial(job.on_opened, ev.params.mtu))
        elif isinstance(ev, SessionClosed | SessionFailed):
            if self.runner.receive_sockets is not None:
                # Its pooled socket stops being reserved: the session's DATA is stray now.
                self.runner.receive_sockets.release_session(ev.session)
            self._session_mtu.pop(ev.session, None)
            self._features.pop(ev.session, None)
            error = ev.error if isinstance(ev, SessionFailed) else _closed_by_peer(ev)
            job = self.outgoing.get(ev.session)
            if job is not None:
                in_job(job, partial(job.on_ended, error))
            inc = self.incoming.pop(ev.session, None)
            if inc is not None:
                self._end_incoming(inc, error)
        elif isinstance(ev, ControlReceived) and is_file_frame(ev.body):
            now = self.runner.now()
            if for_sender(ev.body):
                job = self.outgoing.get(ev.session)
                if job is not None and job.out is not None:
                    out = job.out

                    def deliver() -> None:
                        out.receive_control(ev.body, now)
                        job._after(now)

                    in_job(job, deliver)
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
                        # FILE_ACCEPT's ranges fill what a control frame may carry, which
                        # a sealed frame's tag shortens (DATA is never sealed).
                        mtu=self._session_mtu.get(ev.session, 1500)
                        - self.runner.engine.trailer_len,
                        session=ev.session,
                        peer=ev.peer,
                        features=self._features.get(ev.session, Features.NONE),
                        config=RECEIVING,
                    ),
                    started=now,
                )
                self.incoming[ev.session] = inc
            if inc.failed:
                return  # its session is closing: nothing more is taken on it
            if isinstance(ev.body, FileInline):
                # Its bytes stay with the core until answered (`_receive_inline`), not here.
                inc.offers[ev.body.transfer_id] = ev.body.as_offer()
            elif isinstance(ev.body, FileOffer):
                inc.offers[ev.body.transfer_id] = ev.body

            def deliver() -> None:
                inc.incoming.receive_control(ev.body, now)
                self._after_incoming(inc)

            self._for(inc, deliver)()

    # --- receiving ---------------------------------------------------------------------------

    def _for(self, inc: IncomingJob, handler: Callable[[], object]) -> Callable[[], None]:
        """`handler`, to run on `inc`'s behalf (a reader, a timer, a control frame). A bug in it
        ends `inc`'s session at once (`_fail_incoming`), so that its sender hears why rather
        than waiting for a receiver that will never move again; the exception then goes on up to
        NodeRunner, which logs and counts it as for any handler."""
        return partial(_failing_on_bug, handler, partial(self._fail_incoming, inc))

    def _fail_incoming(self, inc: IncomingJob, exc: Exception) -> None:
        """Stop `inc`'s receive processes (their readers go with them, so a handler that fails
        before reading cannot spin the loop) and close its session with `io_error` and the
        reason. Part files are kept for a resume when the session's end is handled."""
        if inc.failed:
            return
        inc.failed = True
        reason = f"internal error in the receiving node ({type(exc).__name__}: {exc}); see its log"
        log.error("receiving from %s failed: %s", format_mac(inc.peer), reason)
        try:
            self._stop_processes(inc)
        except Exception:
            log.exception("the receive processes of that session could not all be stopped")
        text = wire_text(reason)
        try:
            self.runner.engine.close_session(
                inc.peer, inc.session, self.runner.now(), reason=ErrorCode.IO_ERROR, text=text
            )
            self.runner.flush()
        except Exception:
            log.exception("the failed session could not be closed in order")

    def _receive_dir(self) -> ReceiveDir:
        if self._recv is None:
            path = self.recv_dir or os.path.abspath("l2fast-received")
            os.makedirs(path, mode=0o755, exist_ok=True)
            self._recv = ReceiveDir(path)
        return self._recv

    def _after_incoming(self, inc: IncomingJob) -> None:
        """Handle what `inc`'s transfer has to say after an input, and queue its control
        frames. They leave with the runner's flush that follows every handler (the one
        dispatching this event, or the end of the loop's turn): flushing here as well made
        each event of a batch one level deeper in the stack, and each answer its own send."""
        now = self.runner.now()
        engine = self.runner.engine
        while (ev := inc.incoming.next_event()) is not None:
            self._on_incoming_event(inc, ev, now)
        for body in inc.incoming.control_to_send():
            with contextlib.suppress(L2fastError):
                engine.send_control(inc.peer, inc.session, body, now)
        self._start_next(inc)

    def _on_incoming_event(self, inc: IncomingJob, ev: Any, now: float) -> None:
        if isinstance(ev, OfferReceived):
            self._decide(inc, ev, now)
        elif isinstance(ev, FileChunksComplete):
            rec = inc.files.get(ev.transfer_id)
            if rec is not None and rec.written and rec.digester is not None:
                self._wait_digest(inc, rec)
        elif isinstance(ev, FileVerified):
            rec = inc.files.get(ev.transfer_id)
            if rec is not None and rec.present is not None:
                rec.present.close()  # the same file: nothing to write or place
                inc.incoming.file_placed(ev.transfer_id, rec.present.final_name, now)
                return
            if rec is None or rec.file is None:
                return
            # Placed with every other file this batch of frames verified: their fsyncs then
            # cost the disk one commit, not two per file (a folder of small files).
            if not self._to_place:
                self.runner.call_soon(self._place_verified)
            self._to_place.append((inc, ev.transfer_id, ev.digest))
        elif isinstance(ev, FileReceived | FileRejected):
            # The file ended here: its offer is not needed again (a `differs` file comes back
            # as a new offer), so a long session keeps no more offers than files in flight.
            inc.offers.pop(ev.transfer_id, None)
            self._on_file_ended(inc, ev)

    def _place_verified(self) -> None:
        """Place the files verified since the last call together (`place_files`), then
        answer each one's sender (FILE_RESULT) and move its job on."""
        batch, self._to_place = self._to_place, []
        files: list[tuple[IncomingJob, int, IncomingFile, bytes, bytes]] = []
        for inc, tid, expected in batch:
            rec = inc.files.get(tid)
            # Its session may have ended, or its job failed, since (its files were dropped).
            if self.incoming.get(inc.session) is not inc or inc.failed:
                continue
            if rec is not None and rec.file is not None and rec.file.outcome is None:
                files.append((inc, tid, rec.file, expected, rec.digest))
        jobs = {id(inc): inc for inc, *_ in files}
        try:
            results = place_files([(f, expected, ours) for _, _, f, expected, ours in files])
        except Exception as exc:  # a bug: every file was interrupted; so are their sessions
            for inc in jobs.values():
                self._fail_incoming(inc, exc)
            raise
        now = self.runner.now()
        # Each answer is a runner callback of its own, guarded there and tied to its job
        # (`_for`): one that raises fails only its job, and the rest of the batch is still
        # answered (in this flush, before the loop waits).
        for (inc, tid, *_), result in zip(files, results, strict=True):
            answer = partial(self._answer_placed, inc, tid, result, now)
            self.runner.call_soon(self._for(inc, answer))
        for inc in jobs.values():
            self.runner.call_soon(self._for(inc, partial(self._after_placed, inc)))

    def _after_placed(self, inc: IncomingJob) -> None:
        if not inc.failed:
            self._after_incoming(inc)

    def _answer_placed(
        self, inc: IncomingJob, tid: int, result: PlacedFile | PlacementError, now: float
    ) -> None:
        if inc.failed:
            return  # failed by an earlier call of this batch: its session is closing
        if isinstance(result, PlacementError):
            code = int(result.code or ErrorCode.IO_ERROR)
            inc.incoming.file_failed(tid, code, result.message, now)
        else:
            inc.incoming.file_placed(tid, result.final_name, now)

    def _on_file_ended(self, inc: IncomingJob, ev: FileReceived | FileRejected) -> None:
        if isinstance(ev, FileReceived) and ev.kind is FileKind.BENCH:
            inc.files.pop(ev.transfer_id, None)
        elif isinstance(ev, FileReceived):
            self.received_count += 1
            entry = {
                "n": self.received_count,
                "peer": format_mac(inc.peer),
                "path": ev.path,
                "final_name": ev.final_name,
                "bytes": ev.size,
                "digest": ev.digest.hex(),
                "present": ev.present,
            }
            inc.files_present += ev.present
            self.history.append(entry)
            log.info(
                "%s %r from %s as %r (%d bytes, digest %s)",
                "already present:" if ev.present else "received",
                escape_text(ev.path),
                format_mac(inc.peer),
                escape_text(ev.final_name),
                ev.size,
                ev.digest.hex(),
                extra=AUDIT,  # what this node stored: never held back as a flood
            )
            inc.files.pop(ev.transfer_id, None)
        elif isinstance(ev, FileRejected) and ev.code == ErrorCode.DIFFERS:
            log.info(
                "%r from %s differs from the file already here: the sender sends it again",
                escape_text(ev.path),
                format_mac(inc.peer),
            )
            rec = inc.files.pop(ev.transfer_id, None)
            if rec is not None:
                self._drop_file(rec, keep=True)
        else:
            if ev.code != ErrorCode.BUSY:  # `_refuse_busy` logged the first of those
                log.info(
                    "file %r from %s refused: %s %s",
                    escape_text(ev.path),
                    format_mac(inc.peer),
                    error_name(ev.code),
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
        full = self._full_for(inc)
        if full is not None:
            self._refuse_busy(inc, ev, full, now)
            return
        if self.accept_policy == "ask":
            folder = _answered_folder(inc, ev.path)
            if folder is not None:
                self._answer(inc, ev, inc.folder_answers[folder], now, folder)
                return
            pid = self._next_pending
            self._next_pending += 1
            waiting = self._waiting_folder(inc, ev.path)
            self.pending[pid] = _Pending(pid, inc.session, inc.peer, ev, now, waiting)
            log.info("offer %d pending: %s", pid, label)
            # The sender learns that a person must decide, and how (PROTOCOL.md §FILE_HELD);
            # a peer without feature HELD hears nothing until the answer, as before. An entry
            # of a folder that waits names the folder: one answer there covers the lot.
            if waiting is None:
                note = f"waiting for a person to accept it: l2fast accept {pid}"
                if ev.kind is FileKind.DIRECTORY:
                    inc.waiting_folders[ev.path] = pid
            else:
                where = escape_text(self.pending[waiting].offer.path)
                note = f"waiting for a person to accept folder '{where}': l2fast accept {waiting}"
            inc.incoming.hold(ev.transfer_id, now, pid if waiting is None else waiting, note)
            return
        self._accept(inc, ev, now)

    def _waiting_folder(self, inc: IncomingJob, path: str) -> int | None:
        """The pending id of the outermost folder of `inc`'s session that holds `path` and
        still waits for a person, or None (looked up by the path's ancestors: O(depth))."""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            pid = inc.waiting_folders.get("/".join(parts[:depth]))
            if pid is not None and pid in self.pending:
                return pid
        return None

    def _full_for(self, inc: IncomingJob) -> str | None:
        """Why this daemon takes no more offers from `inc`'s session now, or None.

        The bounds a well-behaved sender keeps to anyway (one session), and the daemon's
        own (all sessions): a peer that floods offers is refused `busy` instead of using up
        the daemon's descriptors or memory (a root daemon must outlive a hostile LAN peer).
        """
        if len(inc.files) >= MAX_OPEN_FILES_PER_SESSION:
            return f"{len(inc.files)} files of this session are open here"
        if sum(len(job.files) for job in self.incoming.values()) >= MAX_OPEN_FILES:
            return f"{MAX_OPEN_FILES} files are being received here"
        if self.accept_policy == "ask":
            mine = sum(1 for p in self.pending.values() if p.session == inc.session)
            if mine >= MAX_PENDING_PER_SESSION:
                return f"{mine} offers of this session wait for a person"
            if len(self.pending) >= MAX_PENDING:
                return f"{len(self.pending)} offers wait for a person"
        return None

    def _refuse_busy(self, inc: IncomingJob, ev: OfferReceived, why: str, now: float) -> None:
        self.counters["offers_refused_busy"] += 1
        inc.busy_refusals += 1
        if inc.busy_refusals == 1:  # once per session: a flood must not flood the log too
            log.warning(
                "refusing offers from %s (busy: %s); counted as offers_refused_busy",
                format_mac(inc.peer), why,
            )  # fmt: skip
        inc.incoming.reject(ev.transfer_id, now, ErrorCode.BUSY, f"the receiver is busy: {why}")

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
            present = None
            if inc.incoming.features & Features.PRESENT and ev.path not in inc.incoming.differing:
                present = recv.find_present(offer)
            inline = inc.incoming.inline_offer(ev.transfer_id)
            if inline is not None:
                self._receive_inline(inc, ev, inline, present, now)
                return
            if present is not None:
                self._accept_present(inc, ev, present, now)
                return
            incoming_file = recv.receive_offer(offer, inc.peer)
        except PlacementError as exc:
            log.info("refused %r: %s", escape_text(ev.path), exc.message)
            inc.incoming.reject(
                ev.transfer_id, now, int(exc.code or ErrorCode.REFUSED), exc.message
            )
            return
        except OSError as exc:
            # Out of descriptors, space or inodes (ENOSPC from a mkdir, say): the offer is
            # answered all the same, so the sender is not left waiting for it.
            code = ErrorCode.NO_SPACE if exc.errno in NO_SPACE_ERRNOS else ErrorCode.IO_ERROR
            self.counters["offers_failed_io"] += 1
            log.warning("refused %r: %s", escape_text(ev.path), exc.strerror or exc)
            inc.incoming.reject(ev.transfer_id, now, code, f"the receiver failed: {exc.strerror}")
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

    def _receive_inline(
        self,
        inc: IncomingJob,
        ev: OfferReceived,
        inline: FileInline,
        present: PresentFile | None,
        now: float,
    ) -> None:
        """Take a FILE_INLINE's bytes (PROTOCOL.md §FILE_INLINE): written and hashed here,
        then placed as a received small file is (FileVerified), and FILE_RESULT answers the
        offer; no receive process, DATA or FILE_END. A file with the same digest already
        under that name is reported present and nothing is written; another one is kept, and
        this one lands beside it under a free name. Raises PlacementError or OSError as
        `receive_offer` does (the caller refuses the offer)."""
        digest = _small_digest(ev.digest, inline.data)
        if present is not None:
            try:
                same = _small_digest(ev.digest, os.pread(present.fd, present.size, 0)) == digest
            except OSError:
                same = False  # unreadable here: receive it beside that file
            if same:
                inc.files[ev.transfer_id] = _Receiving(
                    ev.transfer_id, ev, present=present, written=True, digest=digest
                )
                inc.incoming.inline_written(ev.transfer_id, digest, now, present=True)
                return
            present.close()
        incoming_file = self._receive_dir().receive_offer(inline, inc.peer)
        try:
            if inline.data:
                incoming_file.write_at(0, inline.data)
        except BaseException:
            incoming_file.discard()
            raise
        rec = _Receiving(ev.transfer_id, ev, incoming_file, written=True, digest=digest)
        inc.files[ev.transfer_id] = rec
        inc.incoming.inline_written(ev.transfer_id, digest, now)

    def _accept_present(
        self, inc: IncomingJob, ev: OfferReceived, present: PresentFile, now: float
    ) -> None:
        """Accept as present (every chunk held, no data comes) and digest the file here: at
        once when small, like a received small file, else in a `PrefixDigester` thread."""
        rec = _Receiving(ev.transfer_id, ev, present=present, written=True)
        inc.files[ev.transfer_id] = rec
        inc.incoming.accept(ev.transfer_id, now, present=True)
        if present.size >= self._receive_dir().policy.resume_min_bytes:
            rec.digester = PrefixDigester(present.fd, present.size, ev.digest)
            rec.digester.advance(present.size)
            return  # FileChunksComplete, which accept() gave, waits for it
        try:
            rec.digest = _small_digest(ev.digest, os.pread(present.fd, present.size, 0))
        except OSError as exc:
            inc.files.pop(ev.transfer_id, None)
            present.close()
            text = f"reading the file already here failed: {exc}"
            inc.incoming.file_failed(ev.transfer_id, int(ErrorCode.IO_ERROR), text, now)
            return
        inc.incoming.file_written(ev.transfer_id, rec.digest, now)

    def _accept_bench(self, inc: IncomingJob, ev: OfferReceived, now: float) -> None:
        """A bench stream: received by the session's bench receive process (one for every
        bench stream of the session), whose writers release without writing; no file, no
        digest. Its credit grows to the end of each accepted stream."""
        full = self._bench_full_for(inc, ev)
        if full is not None:
            self._refuse_busy(inc, ev, full, now)
            return
        counter = None
        if not ev.size and ev.path == BENCH_RAW_PATH:
            # Count a raw blast: ready before the FILE_ACCEPT (which starts the blast); the
            # FILE_RESULT waits for the count.
            counter = RawCounter(
                iface=self.runner.sock.ifname, wait_s=10.0, sockets=self.runner.receive_sockets
            )
            if not counter.wait_ready():
                counter.close()
                inc.incoming.reject(ev.transfer_id, now, ErrorCode.IO_ERROR, "no raw counter")
                return
            self._raw_counts += 1
            inc.incoming.bench_held.add(ev.transfer_id)
        elif not ev.size and ev.path == BENCH_REVERSE_PATH:
            # The FILE_RESULT of a bench request waits for the bench run it starts: its text
            # carries this (sending) side's retransmissions and CPU back to the requester.
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
            sockets=self.runner.receive_sockets,
        )
        self.runner.add_reader(bench.conn, self._for(inc, lambda: self._on_bench(inc)))
        self.runner.add_reader(
            bench.sentinel, self._for(inc, lambda: self._on_bench(inc, died=True))
        )

    def _bench_full_for(self, inc: IncomingJob, ev: OfferReceived) -> str | None:
        """Why this daemon takes no more bench work of this kind now, or None (bench offers
        need no person, so these bounds are all that stands between a peer and the
        processes and sessions they start)."""
        if not ev.size and ev.path == BENCH_RAW_PATH:
            if self._raw_counts >= MAX_RAW_COUNTS:
                return "another raw blast is being counted here"
        elif not ev.size and ev.path == BENCH_REVERSE_PATH:
            if inc.peer in self._reverse_peers:
                return "a bench run to this peer is going on"
            if len(self._reverse_peers) >= MAX_REVERSE_RUNS:
                return f"{MAX_REVERSE_RUNS} bench runs to other peers are going on"
        elif inc.bench is None:
            receiving = sum(1 for job in self.incoming.values() if job.bench is not None)
            if receiving >= MAX_BENCH_RECEIVERS:
                return f"{receiving} bench streams are being received here"
        return None

    def _raw_count(self, inc: IncomingJob, tid: int, counter: RawCounter) -> None:
        def done() -> None:
            msg = counter.read()
            if msg is None:
                return
            self.runner.remove_reader(counter.conn)
            counter.close()
            self._raw_counts -= 1
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

        self.runner.add_reader(counter.conn, self._for(inc, done))

    def _bench_back(self, inc: IncomingJob, ev: OfferReceived) -> None:
        """A bench request (`bench -R` on the peer): send bench streams back for the
        requested time (FILE_OFFER `mtime_ns`, at most 600 s)."""
        seconds = min(max(ev.mtime_ns / 1e9, 0.1), 600.0)
        peer = format_mac(inc.peer)
        log.info("bench request from %s: sending for %.1f s", peer, seconds)
        self._reverse_peers.add(inc.peer)

        def reply(obj: dict[str, Any]) -> None:
            if obj.get("done"):
                self._reverse_peers.discard(inc.peer)
                end = obj.get("end") or {}
                log.info(
                    "bench to %s: %s Gbit/s%s",
                    peer,
                    end.get("gbit_per_s", 0),
                    f" ({obj['error']})" if obj.get("error") else "",
                )
                inc.files.pop(ev.transfer_id, None)
                if not inc.incoming.finished:
                    inc.incoming.release_bench(ev.transfer_id, sender_note(end), self.runner.now())
                    self._after_incoming(inc)

        try:
            self.start_bench(reply, inc.peer, seconds, 1.0)
        except L2fastError as exc:  # no session to the peer (the table is full, say)
            log.warning("bench request from %s not served: %s", peer, exc.message)
            reply({"done": True, "ok": False, "error": exc.message})

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
        """Start receiving the accepted files in order, one receive socket per session at a
        time: a run of small files goes to the session's small-file process together (it
        takes them one after another with no round trip through here between them); a large
        file waits until that process has none left, and the files after it wait for it."""
        while inc.active is None and inc.queue:
            tid = inc.queue[0]
            rec = inc.files.get(tid)
            if rec is None or rec.file is None:
                inc.queue.popleft()
                continue
            f = rec.file
            if f.resume is None:
                small = inc.small
                if small is not None and not (small.has_room() and small.process.is_alive()):
                    return  # more once it reports some done, or once its end is handled
                inc.queue.popleft()
                if not self._start_small(inc, tid, f):
                    inc.queue.appendleft(tid)  # for the process that replaces it
                    return
                continue
            if inc.small is not None and inc.small.outstanding:
                return  # the small files queued before it first
            inc.queue.popleft()
            self._start_large(inc, rec, f)

    def _start_large(self, inc: IncomingJob, rec: _Receiving, f: IncomingFile) -> None:
        """A file with a part file: its own receive process and writers (`ReceiveJob`)."""
        bitmap = f.resume.bitmap if f.resume is not None else None
        rec.job = ReceiveJob(
            iface=self.runner.sock.ifname,
            session=inc.session,
            peer=inc.peer,
            fd=f.fd,
            bitmap=bitmap,
            size=f.size,
            chunk_size=f.chunk_size,
            first_chunk=f.first_chunk,
            sockets=self.runner.receive_sockets,
        )
        # Threads start only after the fork.
        rec.digester = PrefixDigester(f.fd, f.size, rec.offer.digest)
        inc.active = rec.transfer_id
        job = rec.job
        self.runner.add_reader(job.conn, self._for(inc, lambda: self._on_job(inc, rec)))
        self.runner.add_reader(
            job.sentinel, self._for(inc, lambda: self._on_job(inc, rec, died=True))
        )

    def _start_small(self, inc: IncomingJob, tid: int, f: IncomingFile) -> bool:
        """Queue a small file (no part file, no resume) to the session's small-file process.
        False when that process just died (its sentinel handler replaces it)."""
        small = inc.small
        if small is None:
            small = inc.small = SmallFileReceiver(
                iface=self.runner.sock.ifname,
                session=inc.session,
                peer=inc.peer,
                sockets=self.runner.receive_sockets,
            )
            self.runner.add_reader(small.conn, self._for(inc, lambda: self._on_small(inc)))
            self.runner.add_reader(
                small.sentinel, self._for(inc, lambda: self._on_small(inc, died=True))
            )
        try:
            small.start(tid, f.fd, f.size, f.chunk_size, f.first_chunk)
        except OSError:
            return False
        return True

    def _on_small(self, inc: IncomingJob, died: bool = False) -> None:
        small = inc.small
        if small is None:
            return
        now = self.runner.now()
        for msg in small.read():
            if "error" in msg:
                self._small_failed(inc, msg["error"])
                return
            tid = int(msg.get("tid", -1))
            with contextlib.suppress(ValueError):
                small.outstanding.remove(tid)  # the head: the process takes them in order
            rec = inc.files.get(tid)
            if rec is None or rec.file is None:
                continue
            if not msg.get("done"):
                self._job_failed(inc, rec, "the file's data did not all arrive")
                continue
            f = rec.file
            inc.incoming.on_chunks([(f.first_chunk, f.first_chunk + f.n_chunks)], now)
            # A small file is hashed at once, here (at most resume_min_bytes).
            rec.written = True
            rec.digest = _small_digest(rec.offer.digest, os.pread(f.fd, f.size, 0))
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
        """The small-file process failed: the file it was receiving fails; the files queued
        behind it go back to the head of the queue, for a new process."""
        pending = list(inc.small.outstanding) if inc.small is not None else []
        self._stop_small(inc)
        inc.queue.extendleft(reversed(pending[1:]))
        rec = inc.files.get(pending[0]) if pending else None
        if rec is not None:
            self._job_failed(inc, rec, error)
        else:
            self._after_incoming(inc)

    def _stop_processes(self, inc: IncomingJob) -> None:
        """Stop every receive process of `inc` (small files, bench, each large file's), and
        stop watching them."""
        self._stop_small(inc)
        self._stop_bench(inc)
        for rec in list(inc.files.values()):
            self._stop_job(inc, rec)

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
        code = ErrorCode.IO_ERROR
        if error == NO_SPACE_ERROR:
            code = ErrorCode.NO_SPACE
            error = f"{error}: {self._receive_dir().path}"
        with contextlib.suppress(L2fastError):
            inc.incoming.file_failed(rec.transfer_id, int(code), error, now)
        inc.files.pop(rec.transfer_id, None)
        self._drop_file(rec, keep=True)
        self._after_incoming(inc)

    def _wait_digest(self, inc: IncomingJob, rec: _Receiving) -> None:
        d = rec.digester
        if d is None:
            return
        if not d.done:
            self.runner.call_later(POLL_S, self._for(inc, lambda: self._wait_digest(inc, rec)))
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
        if rec.present is not None:
            rec.present.close()  # the file already here stays as it is
        f = rec.file
        rec.file = None
        if f is None or f.outcome is not None:
            return
        with contextlib.suppress(Exception):
            if keep:
                f.interrupt()
            else:
                f.discard()

    def refusals(self) -> Counter[str]:
        """What the receiving transfers refused, ended sessions included: frames by reason
        (`IncomingTransfer.drops`), and `chunks_refused`."""
        total = Counter(self._ended_refusals)
        for inc in self.incoming.values():
            total.update(_refusals_of(inc.incoming))
        return total

    def _end_incoming(self, inc: IncomingJob, error: Any) -> None:
        self._ended_refusals.update(_refusals_of(inc.incoming))  # the job is forgotten now
        now = self.runner.now()
        self._stop_processes(inc)
        for rec in list(inc.files.values()):
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
        sources: list[SourceFile] = []
        fd_iter = iter(fds)
        try:
            for item in files:
                kind = FileKind(int(item.get("kind", FileKind.FILE)))
                fd = next(fd_iter) if kind is FileKind.FILE else -1
                st = os.fstat(fd) if fd >= 0 else None
                size = st.st_size if st is not None else 0
                entry = FileEntry(
                    path=str(item["path"]),
                    kind=kind,
                    size=size,
                    mode=int(item.get("mode", 0o644)) & 0o7777,
                    mtime_ns=int(item.get("mtime_ns", 0)),
                    digest=digest,
                )
                # The size and time it has now are what `send` promises (GuardedMap checks).
                sources.append(SourceFile(entry, fd, st.st_mtime_ns if st is not None else None))
        except (StopIteration, KeyError, ValueError, TypeError, OSError) as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if isinstance(exc, StopIteration):
                raise L2fastError(
                    f"bad send request: it lists more files than the {len(fds)} descriptors "
                    "that came with it"
                ) from None
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
                # The waiting folder whose answer covers this offer, if any.
                "folder": p.folder if p.folder in self.pending else None,
            }
            for p in self.pending.values()
        ]

    def decide(self, pid: int, accept: bool) -> dict[str, Any]:
        """Answer a pending offer. The answer to a folder answers everything under it in the
        same session too, waiting now or offered later (`covered`: how many were waiting)."""
        p = self.pending.pop(pid, None)
        if p is None:
            raise L2fastError(f"no pending offer {pid}", hint="see `l2fast inbox`")
        inc = self.incoming.get(p.session)
        if inc is None:
            raise L2fastError(f"offer {pid}: the sender is gone")
        now = self.runner.now()
        self._answer(inc, p.offer, accept, now)
        covered = 0
        if p.offer.kind is FileKind.DIRECTORY:
            inc.folder_answers[p.offer.path] = accept
            under = [
                q for q in self.pending.values()
                if q.session == p.session and _under(q.offer.path, p.offer.path)
            ]  # fmt: skip
            for q in under:
                del self.pending[q.id]
                self._answer(inc, q.offer, accept, now, p.offer.path)
            covered = len(under)
        self._after_incoming(inc)
        path = escape_text(p.offer.path)
        return {"offer": pid, "path": path, "accepted": accept, "covered": covered}

    def _answer(
        self, inc: IncomingJob, ev: OfferReceived, accept: bool, now: float, folder: str = ""
    ) -> None:
        if accept:
            self._accept(inc, ev, now)
            return
        why = f"refused by the user (folder {folder})" if folder else "refused by the user"
        inc.incoming.reject(ev.transfer_id, now, ErrorCode.REFUSED, why)

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
                    "files_present": inc.files_present,
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


def _small_digest(algo: Digest, data: bytes) -> bytes:
    """The `algo` digest of a small file's bytes, computed at once."""
    hasher = new_hasher(algo)
    hasher.update(data)
    return hasher.digest()
