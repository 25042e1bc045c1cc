"""`OutgoingTransfer`: the sender's file-transfer core, sans-IO (PROTOCOL.md §FILE_OFFER ..).

One instance sends a list of `FileEntry`s over one session. It offers them on the control
stream (a bounded number unanswered at a time, so thousands of small files pipeline instead of
costing a round trip each), lays the accepted ones out in one `TxWindow` (through `SendSpace`,
which leaves out chunks the receiver already holds and files it refused), sends FILE_END when
a file's data is acknowledged and its digest is known, and ends each file on FILE_RESULT.
A file the receiver answered as already present (every chunk held) whose FILE_RESULT says
`differs` is offered once more as a new entry at the end (`FileReoffered`; PROTOCOL.md §Files
already at the receiver). A receiver that keeps an offer for a person to decide may say so
with FILE_HELD (feature HELD, PROTOCOL.md §FILE_HELD): that gives `OfferHeld` and changes
nothing else; `held()` lists the offers held and not yet answered.

In a session with feature INLINE, a file whose bytes fit one control frame with its offer is
offered as FILE_INLINE, with its data and digest (PROTOCOL.md §FILE_INLINE): the adapter's
`inline` callback reads it when the offer goes out. The receiver may answer it with
FILE_RESULT alone (the file is then done, no DATA or FILE_END), or as any offer.

The adapter drives it:

- control: send every body of `control_to_send()` with `Session.send_control` (through
  `NodeEngine.send_control`); hand every FILE_ACCEPT / FILE_REJECT / FILE_RESULT / FILE_HELD
  that arrives (`ControlReceived`) to `receive_control`;
- data: ask `next_batch(now, max_chunks)` for data-space chunk ranges and send them as DATA
  (`spans()` maps them to file bytes); give every FEEDBACK to `on_feedback`;
- digests: compute each file's digest beside the data path once `OfferAccepted` says so, and
  report it with `digest_ready` (a file offered inline already has one);
- time: call `handle_timer(now)` at `next_timer()`; on SessionClosed/SessionFailed call
  `session_ended`;
- events: `next_event()` (see `l2fast.transfer.events`).

Anything the peer sends that does not fit is counted in `drops`, never raised.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from l2fast.errors import L2fastError, LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.transfer.events import (
    FileCompleted,
    FileFailed,
    FileReoffered,
    OfferAccepted,
    OfferHeld,
    OfferRejected,
    OutgoingEvent,
    TransferDone,
    TransferFailed,
    TransferProgress,
)
from l2fast.transfer.protocol_config import TransferConfig
from l2fast.transfer.protocol_space import (
    ChunkSpan,
    FileEntry,
    FileLayout,
    SendSpace,
    held_bytes,
    split_spans,
)
from l2fast.transfer.protocol_states import (
    FINAL_STATES,
    FileInput,
    FileRole,
    FileState,
    transition,
)
from l2fast.transfer.ranges import ChunkRanges
from l2fast.transfer.reliability import TransferStalled, TxWindow
from l2fast.wire.constants import ErrorCode, Features, FileKind, error_name
from l2fast.wire.frames import (
    Body,
    Feedback,
    FileAccept,
    FileEnd,
    FileHeld,
    FileInline,
    FileOffer,
    FileReject,
    FileResult,
    WireRanges,
)
from l2fast.wire.payload_layout import framing_bytes

__all__ = ["InlineReader", "OutgoingTransfer", "inline_fits"]

#: The adapter's reader for FILE_INLINE: entry index -> (its bytes, their digest), or None to
#: offer the file as usual (it could not be read, or its size changed).
InlineReader = Callable[[int], "tuple[bytes, bytes] | None"]

_MAX_TRANSFER_ID = 0xFFFF_FFFF  # u32 on the wire
_DIGESTLESS = frozenset({FileKind.DIRECTORY, FileKind.BENCH})
_NUDGE = 1e-9  # seconds: far below any timer's precision, far above float rounding
_INLINE_DIGEST = 32  # bytes of a SHA-256 or BLAKE2b-256 digest
# FILE_INLINE's bytes besides the path and the data: its fixed fields, the path's and the
# digest's lengths (`framing_bytes`), and the digest.
_INLINE_OVERHEAD = framing_bytes(FileInline.LAYOUT) + _INLINE_DIGEST


def inline_fits(path: str, size: int, control_payload: int) -> bool:
    """True when a file of `size` bytes offered as `path` fits one FILE_INLINE whose payload
    may take `control_payload` bytes (the session's MTU less the header and any seal)."""
    return _INLINE_OVERHEAD + len(path.encode("utf-8", "surrogateescape")) + size <= control_payload


@dataclass(slots=True)
class _OutFile:
    """One offered entry."""

    index: int
    entry: FileEntry
    layout: FileLayout
    state: FileState = FileState.OFFERED
    have: WireRanges = ()  #: file-relative chunks the receiver holds
    skipped_bytes: int = 0
    needed: list[tuple[int, int]] | None = None  #: data-space ranges to send
    window_end: int = 0  #: the window-space end of its chunks, once laid out
    digest: bytes | None = None
    #: The entry this one offers again after FILE_RESULT `differs` (None: a first offer).
    reoffer_of: int | None = None
    inline: bool = False  #: offered as FILE_INLINE (data and digest in the offer)
    #: A FILE_INLINE the receiver answered as already there (FILE_RESULT 0, no bytes received).
    inline_present: bool = False

    @property
    def transfer_id(self) -> int:
        return self.layout.transfer_id

    @property
    def needs_digest(self) -> bool:
        return self.entry.kind not in _DIGESTLESS

    @property
    def needed_bytes(self) -> int:
        return self.entry.size - self.skipped_bytes

    @property
    def present(self) -> bool:
        """Accepted with every chunk held: nothing of it is sent (PROTOCOL.md §Files already
        at the receiver)."""
        if self.inline_present:
            return True
        return self.needs_digest and self.entry.size > 0 and self.needed == []


class OutgoingTransfer:
    """Sends `entries` over one session (see the module docstring for how to drive it).

    `initial_credit` is the receiver's first grant in data-space chunks, if known (0: wait for
    its first FEEDBACK). Entries are checked and laid out at once: `layout(index)` tells where
    each file's chunks sit even before it is offered, and entry `index` is offered as
    transfer_id `index + 1`, in list order. `features` are the session's negotiated feature
    bits (FILE_HELD is taken only with HELD). With INLINE among them and an `inline` reader,
    files that fit a FILE_INLINE of `control_payload` bytes (`inline_fits`) are offered with
    their data. Raises LocalProtocolError for an entry that cannot be offered or a layout
    that overlaps.
    """

    def __init__(
        self,
        entries: Sequence[FileEntry],
        *,
        now: float,
        config: TransferConfig | None = None,
        initial_credit: int = 0,
        features: Features = Features.NONE,
        inline: InlineReader | None = None,
        control_payload: int = 0,
    ) -> None:
        if len(entries) > _MAX_TRANSFER_ID:
            raise LocalProtocolError(f"{len(entries)} entries do not fit u32 transfer ids")
        self.config = config or TransferConfig()
        self.features = features
        self._inline = inline if features & Features.INLINE else None
        self._control_payload = control_payload
        #: Files offered as FILE_INLINE, and those of them the receiver took from the offer.
        self.inline_offered = 0
        self.inline_taken = 0
        #: Peer frames dropped, by reason (for `l2fast status`).
        self.drops: Counter[str] = Counter()
        self._entries: list[FileEntry] = []
        self._layouts: list[FileLayout] = []
        for entry in entries:
            self._lay_entry(entry)
        self._files: list[_OutFile] = []  # offered, in order; transfer_id = position + 1
        # Entries added by `_reoffer`: new index -> (the index offered again, its digest).
        self._reoffers: dict[int, tuple[int, bytes | None]] = {}
        self._control: list[Body] = []
        self._events: deque[OutgoingEvent] = deque()
        self._space = SendSpace()
        self._window = TxWindow(0, credit=0, config=self.config.tx, now=now)
        self._credit = initial_credit  # data-space credit, the largest granted
        self._frontier = 0  # files before it are laid out in the window space (or skipped)
        self._sending: deque[_OutFile] = deque()  # laid out, data not yet all acknowledged
        self._deadlines: list[tuple[float, int, FileState]] = []
        self._outstanding = 0  # offers unanswered
        self._held: dict[int, OfferHeld] = {}  # transfer_id -> FILE_HELD, offers unanswered
        self._unfinished = 0  # offered, not final
        self._counts: Counter[FileState] = Counter()
        self._bytes_total = 0  # bytes to send for files accepted so far
        self._bytes_acked = 0  # of files whose data is all acknowledged
        #: DATA frames sent again (loss, RTO probes) and the file bytes they carried.
        self.retransmitted_frames = 0
        self.retransmitted_bytes = 0
        self._last_progress: float | None = None
        self._progress_bytes = -1
        self._timers_ran_at = -float("inf")
        #: True once TransferDone or TransferFailed was given; nothing more happens then.
        self.finished = False
        self._pump_offers(now)
        self._check_done()

    def _lay_entry(self, entry: FileEntry) -> int:
        """Check `entry` and place it after the last one in the data space (or at its own
        `first_chunk`, never inside the file before); its index."""
        if len(self._entries) >= _MAX_TRANSFER_ID:
            raise LocalProtocolError("no transfer id is left for another entry")
        entry.check()
        index = len(self._entries)
        position = self._layouts[-1].end if self._layouts else 0
        first = position if entry.first_chunk is None else entry.first_chunk
        if first < position:
            raise LocalProtocolError(
                f"{entry.path!r} starts at chunk {first}, inside the previous file"
            )
        self._entries.append(entry)
        self._layouts.append(FileLayout(index + 1, first, entry.chunk_size, entry.size))
        return index

    def add_entry(self, entry: FileEntry, now: float) -> int:
        """One more entry after the last, offered as the next transfer id as soon as the offer
        limits allow; its index. A stream of unknown length (a bench run, which lasts a time,
        not a size) plans a few entries ahead of what is done instead of all of them at once.
        Raises LocalProtocolError once the transfer is over, or as the constructor would."""
        if self.finished:
            raise LocalProtocolError("the transfer is over: no entry can be added")
        index = self._lay_entry(entry)
        self._pump_offers(now)
        return index

    # --- inspection ------------------------------------------------------------------------

    def layout(self, index: int) -> FileLayout:
        """Where entry `index` sits in the data space."""
        return self._layouts[index]

    def state(self, transfer_id: int) -> FileState | None:
        """The state of an offered file, or None when it was not offered (yet)."""
        f = self._file(transfer_id)
        return f.state if f is not None else None

    @property
    def window(self) -> TxWindow:
        """The reliability window (its stats, RTT and pacing), in window-space chunks."""
        return self._window

    @property
    def pacing_rate(self) -> float | None:
        """Chunks per second the C sender should not exceed, or None (no drops seen)."""
        return self._window.pacing_rate

    def progress(self) -> TransferProgress:
        """The progress now (the same numbers TransferProgress events carry)."""
        done = self._bytes_acked
        if self._sending:
            head = self._sending[0]
            before = self._space.count_below(head.layout.first_chunk)
            chunks = max(0, self._window.cum_ack - before)
            done += min(chunks * head.layout.chunk_size, head.needed_bytes)
        # A superseded file is offered again as a new entry: the pair counts as one file.
        again = self._counts[FileState.SUPERSEDED]
        finished = sum(self._counts[s] for s in FINAL_STATES) - again
        return TransferProgress(done, self._bytes_total, finished, len(self._entries) - again)

    def held(self) -> list[OfferHeld]:
        """The offers the receiver holds for a person (FILE_HELD) and has not answered yet,
        in the order it said so."""
        return list(self._held.values())

    def _file(self, transfer_id: int) -> _OutFile | None:
        i = transfer_id - 1
        return self._files[i] if 0 <= i < len(self._files) else None

    # --- control stream --------------------------------------------------------------------

    def control_to_send(self) -> list[Body]:
        """FILE_OFFER / FILE_END bodies to put on the session's control stream, in order."""
        out, self._control = self._control, []
        return out

    def _pump_offers(self, now: float) -> None:
        c = self.config
        while (
            not self.finished
            and len(self._files) < len(self._entries)
            and self._outstanding < c.max_offers_outstanding
            and self._unfinished < c.max_unfinished
        ):
            index = len(self._files)
            entry, layout = self._entries[index], self._layouts[index]
            f = _OutFile(index, entry, layout)
            if index in self._reoffers:
                f.reoffer_of, f.digest = self._reoffers.pop(index)
            self._files.append(f)
            self._counts[FileState.OFFERED] += 1
            self._outstanding += 1
            self._unfinished += 1
            offer = FileOffer(
                transfer_id=layout.transfer_id,
                kind=int(entry.kind),
                digest=int(entry.digest),
                size=entry.size,
                mode=entry.mode,
                mtime_ns=entry.mtime_ns,
                first_chunk=layout.first_chunk,
                chunk_size=entry.chunk_size if entry.size else 0,
                path=entry.path,
            )
            self._control.append(self._with_data(f, offer))
            if c.decision_timeout is not None:
                deadline = now + c.decision_timeout
                heapq.heappush(self._deadlines, (deadline, layout.transfer_id, FileState.OFFERED))

    def _with_data(self, f: _OutFile, offer: FileOffer) -> FileOffer:
        """`offer` as FILE_INLINE when the session allows it and the file fits one, else as
        it is. An entry offered again (`differs`) goes the usual way: its receiver holds
        another file of that name, and it wants the data for the name it picks."""
        entry = f.entry
        if (
            self._inline is None
            or entry.kind is not FileKind.FILE
            or f.reoffer_of is not None
            or not inline_fits(entry.path, entry.size, self._control_payload)
        ):
            return offer
        got = self._inline(f.index)
        if got is None:
            return offer
        data, digest = got
        if len(data) != entry.size or len(digest) != _INLINE_DIGEST:
            return offer  # the file changed under us: the usual path reports what it finds
        f.inline = True
        f.digest = bytes(digest)
        self.inline_offered += 1
        return FileInline.carrying(offer, f.digest, bytes(data))

    def _move(self, f: _OutFile, event: FileInput) -> FileState:
        old = f.state
        f.state = transition(FileRole.SENDER, old, event)
        self._counts[old] -= 1
        self._counts[f.state] += 1
        if old is FileState.OFFERED:
            self._outstanding -= 1
            self._held.pop(f.transfer_id, None)
        if f.state in FINAL_STATES:
            self._unfinished -= 1
        return old

    def receive_control(self, body: Body, now: float) -> None:
        """Take a FILE_ACCEPT, FILE_REJECT, FILE_RESULT or FILE_HELD from the peer (in stream
        order).

        Never raises for what the peer sent: frames that do not fit are counted in `drops`.
        """
        if self.finished:
            self.drops["after_end"] += 1
            return
        if body.violation() is not None:
            self.drops["bad_payload"] += 1  # the codec drops these; a body built by hand may not
            return
        try:
            if isinstance(body, FileAccept):
                self._on_accept(body, now)
            elif isinstance(body, FileReject):
                self._on_reject(body, now)
            elif isinstance(body, FileResult):
                self._on_result(body, now)
            elif isinstance(body, FileHeld):
                self._on_held(body)
                return  # no state changes: nothing to lay out, offer or report
            else:
                self.drops["not_for_sender"] += 1
                return
        except RemoteProtocolError:
            self.drops["protocol_violation"] += 1
            return
        self._after_change(now)

    def _known(self, transfer_id: int) -> _OutFile:
        f = self._file(transfer_id)
        if f is None:
            self.drops["unknown_transfer"] += 1
            raise RemoteProtocolError(f"no file #{transfer_id} was offered")
        return f

    def _on_accept(self, body: FileAccept, now: float) -> None:
        f = self._known(body.transfer_id)
        self._move(f, FileInput.RECV_ACCEPT)
        layout = f.layout
        have = ChunkRanges(body.have)
        inside = ChunkRanges(have.slice(layout.first_chunk, layout.end))
        if inside.count != have.count:
            self.drops["have_outside_file"] += 1  # a confused peer; what is outside is moot
        f.have = layout.to_file(inside)
        f.skipped_bytes = held_bytes(f.have, layout.size, layout.chunk_size)
        f.needed = list(inside.gaps(layout.first_chunk, layout.end))
        self._bytes_total += f.needed_bytes
        self._events.append(
            OfferAccepted(
                layout.transfer_id,
                f.index,
                f.entry.path,
                f.entry.kind,
                f.entry.size,
                f.have,
                f.skipped_bytes,
                # An entry offered again keeps the digest already computed for it.
                f.needs_digest and f.digest is None,
            )
        )
        if not f.needed:
            self._data_done(f, now)

    def _on_held(self, body: FileHeld) -> None:
        """FILE_HELD: a person at the receiver must decide on the offer (PROTOCOL.md
        §FILE_HELD). Valid once per offer, before its answer, in a session with HELD."""
        if not self.features & Features.HELD:
            self.drops["held_not_negotiated"] += 1
            raise RemoteProtocolError("FILE_HELD in a session without feature HELD")
        f = self._known(body.transfer_id)
        if f.state is not FileState.OFFERED:
            self.drops["held_after_answer"] += 1
            raise RemoteProtocolError(f"FILE_HELD for file #{f.transfer_id}, already answered")
        if f.transfer_id in self._held:  # still OFFERED, so still listed
            self.drops["held_twice"] += 1
            raise RemoteProtocolError(f"a second FILE_HELD for file #{f.transfer_id}")
        ev = OfferHeld(f.transfer_id, f.index, f.entry.path, body.pending_id, body.text)
        self._held[f.transfer_id] = ev
        self._events.append(ev)

    def _on_reject(self, body: FileReject, now: float) -> None:
        f = self._known(body.transfer_id)
        self._move(f, FileInput.RECV_REJECT)
        self._events.append(
            OfferRejected(body.transfer_id, f.index, f.entry.path, body.reason, body.text)
        )

    def _on_result(self, body: FileResult, now: float) -> None:
        f = self._known(body.transfer_id)
        if f.state is FileState.OFFERED and f.inline:
            self._on_inline_result(f, body)
            return
        if (
            body.status == ErrorCode.DIFFERS
            and f.present
            and f.reoffer_of is None  # once: a receiver never answers a re-offer as present
            and len(self._entries) < _MAX_TRANSFER_ID
        ):
            self._reoffer(f)
            return
        if body.status != ErrorCode.OK:
            self._move(f, FileInput.RECV_RESULT_ERROR)
            # The code names the failure; the peer's own words (in `final_name`) travel in
            # the event's `text`, for the adapter to escape before it prints them.
            error = RemoteProtocolError(
                f"the receiver refused {f.entry.path!r} after accepting it: "
                f"{error_name(body.status)}",
                code=body.status,
            )
            self._events.append(
                FileFailed(
                    f.transfer_id, f.index, f.entry.path, body.status, error, body.final_name
                )
            )
            return
        transition(FileRole.SENDER, f.state, FileInput.RECV_RESULT_OK)  # raises when early
        if f.needs_digest and body.digest_value != (f.digest or b""):
            self._other_digest(f, body, FileInput.RECV_RESULT_ERROR)
            return
        self._move(f, FileInput.RECV_RESULT_OK)
        self._completed(f, body)

    def _on_inline_result(self, f: _OutFile, body: FileResult) -> None:
        """FILE_RESULT answering a FILE_INLINE itself: the receiver took the data from the
        offer (status 0; `bytes_received` 0 when it already held the same file) or failed
        with it."""
        if body.status != ErrorCode.OK:
            self._move(f, FileInput.RECV_INLINE_RESULT_ERROR)
            code = body.status
            error = RemoteProtocolError(
                f"the receiver refused {f.entry.path!r}: {error_name(code)}", code=code
            )
            self._events.append(
                FileFailed(f.transfer_id, f.index, f.entry.path, code, error, body.final_name)
            )
            return
        if body.digest_value != f.digest:
            self._other_digest(f, body, FileInput.RECV_INLINE_RESULT_ERROR)
            return
        self._move(f, FileInput.RECV_INLINE_RESULT_OK)
        self.inline_taken += 1
        size = f.entry.size
        f.inline_present = size > 0 and body.bytes_received == 0
        f.skipped_bytes = size if f.inline_present else 0
        self._bytes_total += f.needed_bytes
        self._bytes_acked += f.needed_bytes
        self._completed(f, body)

    def _other_digest(self, f: _OutFile, body: FileResult, failed: FileInput) -> None:
        """FILE_RESULT 0 with a digest that is not ours: the peer checked something else."""
        self.drops["result_digest"] += 1
        self._move(f, failed)
        error = RemoteProtocolError(
            f"the receiver reported {f.entry.path!r} verified with digest "
            f"{body.digest_value.hex()}, ours is {(f.digest or b'').hex()}",
            code=ErrorCode.DIGEST_MISMATCH,
        )
        self._events.append(FileFailed(f.transfer_id, f.index, f.entry.path, error.code, error))

    def _completed(self, f: _OutFile, body: FileResult) -> None:
        self._events.append(
            FileCompleted(
                f.transfer_id,
                f.index,
                f.entry.path,
                f.entry.kind,
                f.needs_digest,
                f.digest or b"",
                body.final_name,
                f.needed_bytes,
                f.skipped_bytes,
                body.bytes_received,
                f.present,
            )
        )

    def _reoffer(self, f: _OutFile) -> None:
        """FILE_RESULT `differs`: the receiver holds another file of this name and size. The
        entry is offered again, once, after the last file of the data space; the receiver
        then receives it as usual (under a free name). Its digest is already known."""
        self._move(f, FileInput.RECV_RESULT_DIFFERS)
        index = self._lay_entry(dataclasses.replace(f.entry, first_chunk=None))
        self._reoffers[index] = (f.index, f.digest)
        self._events.append(FileReoffered(f.transfer_id, f.index, f.entry.path, index))

    # --- the adapter's reports -----------------------------------------------------------

    def digest_ready(self, transfer_id: int, digest: bytes, now: float) -> None:
        """The digest of an accepted file's source, computed beside the data path.

        Ignored for a file that already ended (the digest thread may lose a race with a
        failure). Raises LocalProtocolError for a file that was never accepted or needs none.
        """
        f = self._file(transfer_id)
        if f is None or f.state in (FileState.OFFERED, FileState.REJECTED) or not f.needs_digest:
            raise LocalProtocolError(f"file #{transfer_id} does not wait for a digest")
        if not 1 <= len(digest) <= 255:
            raise LocalProtocolError(f"a digest of {len(digest)} bytes does not fit FILE_END")
        if f.state in FINAL_STATES or self.finished:
            return
        if f.digest is not None:
            raise LocalProtocolError(f"the digest of file #{transfer_id} was already given")
        f.digest = bytes(digest)
        if f.state is FileState.DATA_DONE:
            self._send_end(f, now)
        self._after_change(now)

    # --- data ------------------------------------------------------------------------------

    def _data_done(self, f: _OutFile, now: float) -> None:
        self._move(f, FileInput.DATA_ACKED)
        self._bytes_acked += f.needed_bytes
        if f.digest is not None or not f.needs_digest:
            self._send_end(f, now)

    def _send_end(self, f: _OutFile, now: float) -> None:
        self._move(f, FileInput.SEND_END)
        if f.entry.kind is not FileKind.DIRECTORY:
            # A directory has no data and no digest: its FILE_END is implicit, the receiver
            # answers its FILE_ACCEPT with FILE_RESULT straight away.
            body = FileEnd(f.transfer_id, int(f.entry.digest), f.digest or b"")
            self._control.append(body)
        deadline = now + self._result_wait(f)
        heapq.heappush(self._deadlines, (deadline, f.transfer_id, FileState.ENDED))

    def _result_wait(self, f: _OutFile) -> float:
        """How long to wait for a file's FILE_RESULT after its FILE_END. A bench request (a
        zero-size bench offer: `bench/reverse`, `bench/raw`) is answered only when the run it
        asks for ends, `mtime_ns` after it is accepted (PROTOCOL.md §FILE_OFFER), so its wait
        adds that run's length."""
        wait = self.config.result_timeout
        if f.entry.kind is FileKind.BENCH and not f.entry.size:
            wait += max(0, f.entry.mtime_ns) / 1e9
        return wait

    def _lay_out(self, now: float) -> None:
        """Put decided files into the window space, in offer order (the map is monotone)."""
        grew = False
        files = self._files
        while self._frontier < len(files) and files[self._frontier].state is not (
            FileState.OFFERED
        ):
            f = files[self._frontier]
            self._frontier += 1
            if f.needed and f.state is FileState.ACCEPTED:
                for start, end in f.needed:
                    self._space.append(start, end)
                f.window_end = self._space.length
                self._sending.append(f)
                grew = True
        if grew:
            self._window.set_total(self._space.length, now)
            self._update_credit(now)

    def _update_credit(self, now: float) -> None:
        # A grant made earlier may cover chunks that were only now laid out: tell the window
        # at once rather than wait for the receiver's next FEEDBACK.
        credit = self._space.count_below(self._credit)
        if credit > self._window.credit:
            self._window.on_feedback(Feedback(0, credit, 0, 0), now)

    def next_batch(self, now: float, max_chunks: int) -> list[tuple[int, int]]:
        """Data-space chunk ranges to send as DATA now, at most `max_chunks` chunks.

        They count as sent at `now`, in the order given. Empty when there is nothing to send
        (or the transfer ended; a stall ends it with TransferFailed).
        """
        if self.finished or max_chunks <= 0:
            return []
        try:
            batch = self._window.next_batch(now, max_chunks)
        except TransferStalled as stalled:
            self._fail_transfer("stalled", stalled, now)
            return []
        out: list[tuple[int, int]] = []
        for start, end in batch:
            out += self._space.to_data(start, end)
        resent = self._window.stats.retransmitted_chunks - self.retransmitted_frames
        if resent:
            # The window puts probes and retransmissions before new data in a batch.
            self.retransmitted_frames += resent
            self.retransmitted_bytes += sum(s.length for s in self.spans(_first(out, resent)))
        return out

    @property
    def data_credit(self) -> int:
        """The receiver's largest grant: data-space chunks below it may be sent."""
        return self._credit

    def stream_target(self) -> ChunkSpan | None:
        """New data a streaming burst may send now: data-space chunks of one file, or None.

        The first contiguous run of `TxWindow.stream_range` that lies in one file (the C sender
        streams one mapping); the burst stops at the data credit itself. None when the window
        must choose (probes, retransmissions, pacing), nothing new is laid out, or the transfer
        ended.
        """
        if self.finished:
            return None
        gap = self._window.stream_range()
        if gap is None:
            return None
        data = self._space.to_data(*gap, limit=1)  # the window's total is the space's length
        spans = split_spans(self._layouts, data, limit=1)
        return spans[0] if spans else None

    def record_streamed(self, start: int, end: int, now: float, credit: int) -> None:
        """Count data-space chunks [start, end), sent at `now` by a streaming burst under the
        data-space `credit`, as `next_batch` would have; the burst's FEEDBACKs come next
        (`on_feedback`). Raises ValueError unless they continue `stream_target`."""
        w0, w1 = self._space.count_below(start), self._space.count_below(end)
        if w1 - w0 != end - start:
            raise ValueError(f"chunks [{start}, {end}) are not all to be sent")
        self._window.record_streamed(w0, w1, now, self._space.count_below(credit))

    def spans(self, ranges: Sequence[tuple[int, int]]) -> list[ChunkSpan]:
        """The file bytes behind data-space chunk ranges, split per file (for the C sender)."""
        return split_spans(self._layouts, ranges)

    def on_feedback(
        self,
        feedback: Feedback,
        now: float,
        seq: int | None = None,
        *,
        first_seq: int | None = None,
    ) -> None:
        """Apply one FEEDBACK (data space) from the receiver; `seq` is its header counter
        (`first_seq`: it stands for FEEDBACKs first_seq..seq, see `coalesce_feedback`)."""
        if self.finished:
            return
        self._credit = max(self._credit, feedback.credit)
        self._window.on_feedback(self._space.to_window(feedback), now, seq, first_seq=first_seq)
        cum = self._window.cum_ack
        while self._sending and self._sending[0].window_end <= cum:
            f = self._sending.popleft()
            if f.state is FileState.ACCEPTED:
                self._data_done(f, now)
        self._after_change(now)

    # --- the end ---------------------------------------------------------------------------

    def _after_change(self, now: float) -> None:
        if self.finished:
            return
        self._lay_out(now)
        self._pump_offers(now)
        self._progress(now)
        self._check_done()

    def _progress(self, now: float, force: bool = False) -> None:
        last = self._last_progress
        if not force and last is not None and now < last + self.config.progress_interval:
            return
        progress = self.progress()
        if progress.bytes_done != self._progress_bytes or force:
            self._progress_bytes = progress.bytes_done
            self._last_progress = now
            self._events.append(progress)

    def _check_done(self) -> None:
        if self.finished or len(self._files) < len(self._entries) or self._unfinished:
            return
        self.finished = True
        self._events.append(self.progress())
        verified = [f for f in self._files if f.state is FileState.VERIFIED]
        self._events.append(
            TransferDone(
                files_verified=len(verified),
                files_failed=self._counts[FileState.FAILED],
                files_rejected=self._counts[FileState.REJECTED],
                bytes_sent=sum(f.needed_bytes for f in verified),
                bytes_skipped=sum(f.skipped_bytes for f in verified),
                files_present=sum(f.present for f in verified),
            )
        )

    def _fail_file(self, f: _OutFile, error: L2fastError, code: int) -> None:
        self._move(f, FileInput.FAIL)
        self._events.append(FileFailed(f.transfer_id, f.index, f.entry.path, code, error))

    def _fail_transfer(self, reason: str, error: L2fastError, now: float) -> None:
        code = int(getattr(error, "code", 0) or ErrorCode.REFUSED)
        unfinished = len(self._entries) - sum(self._counts[s] for s in FINAL_STATES)
        for f in self._files:
            if f.state not in FINAL_STATES:
                self._fail_file(f, error, code)
        self.finished = True
        self._control.clear()
        self._events.append(TransferFailed(reason, code, error, unfinished))

    def cancel(self, now: float, text: str = "cancelled") -> None:
        """Stop: every file not yet ended fails, then TransferFailed("cancelled").

        The adapter then closes the session, which tells the receiver (it keeps its part files
        for a later resume). Does nothing once the transfer ended.
        """
        if not self.finished:
            self._fail_transfer("cancelled", LocalProtocolError(text, code=ErrorCode.REFUSED), now)

    def session_ended(
        self, now: float, error: ProtocolError | None = None, close_reason: int = 0
    ) -> None:
        """The session failed (`error`) or closed (CLOSE `close_reason`): unfinished files fail."""
        if self.finished:
            return
        if error is None:
            error = RemoteProtocolError(
                "the session closed before every file was confirmed",
                code=close_reason or ErrorCode.REFUSED,
            )
        self._fail_transfer("session", error, now)

    # --- timers and events -----------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run, or None."""
        if self.finished:
            return None
        times = []
        window = self._window.next_timer()
        if window is not None:
            # The window compares `sent_at <= now - delay` but reports `sent_at + delay`: float
            # rounding can leave that deadline due right after handle_timer(now) ran. Waking a
            # nanosecond later settles it, where reporting `now` again would make the adapter spin.
            times.append(max(window, self._timers_ran_at + _NUDGE))
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run the window's timers (loss, retransmission, stall) and the per-file timeouts."""
        if self.finished:
            return
        self._timers_ran_at = now
        timer = self._window.next_timer()
        if timer is not None and now >= timer:
            try:
                self._window.handle_timer(now)
            except TransferStalled as stalled:
                self._fail_transfer("stalled", stalled, now)
                return
        while self._deadlines and self._deadlines[0][0] <= now:
            _, transfer_id, expected = heapq.heappop(self._deadlines)
            f = self._file(transfer_id)
            if f is None or f.state is not expected:
                continue
            if expected is FileState.OFFERED:
                what = "no answer to the offer"
                limit = self.config.decision_timeout
            else:
                what = "no FILE_RESULT"
                limit = self._result_wait(f)
            error = RemoteProtocolError(
                f"{what} for {f.entry.path!r} within {limit:.0f} s", code=ErrorCode.TIMEOUT
            )
            self._fail_file(f, error, ErrorCode.TIMEOUT)
        self._after_change(now)

    def next_event(self) -> OutgoingEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None


def _first(ranges: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The first `n` chunks of `ranges`, as ranges in the same order."""
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        if n <= 0:
            break
        take = min(e - s, n)
        out.append((s, s + take))
        n -= take
    return out
