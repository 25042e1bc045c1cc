"""`IncomingTransfer`: the receiver's file-transfer core, sans-IO (PROTOCOL.md §FILE_OFFER ..).

One instance receives every file the peer offers on one session. It asks the application about
each offer (`OfferReceived`, answered by `accept` or `reject`, at once or later), tracks the
accepted files' chunks in one `RxTracker` over the session's data space, builds FEEDBACK, and
when a file's FILE_END has arrived and the adapter reports the file written with its digest,
compares the digests and answers FILE_RESULT.

The adapter drives it:

- control: hand every FILE_OFFER / FILE_END that arrives (`ControlReceived`) to
  `receive_control`; send every body of `control_to_send()` with `Session.send_control`;
- data: report verified chunk ranges in batches with `on_chunks` (only the returned, new
  ranges go to the writers), free ring space with `set_buffer_space`, kernel drops with
  `add_kernel_drops`; send what `poll_feedback` returns as FEEDBACK;
- files: on `FileChunksComplete` finish writing and digesting, then `file_written`; on
  `FileVerified` fsync and rename, then `file_placed`; on a write failure `file_failed`;
- time: `handle_timer(now)` at `next_timer()`; `session_ended` when the session ends.

A FILE_INLINE (feature INLINE, PROTOCOL.md §FILE_INLINE) carries the file's bytes and the
sender's digest: `inline_offer` hands them to the adapter, which may write them and report
`inline_written` (the core compares the digests, and FileVerified / `file_placed` answer with
FILE_RESULT, no FILE_ACCEPT), or answer it as any offer. The bytes are let go of once the
offer is answered either way.

An offer the application keeps for a person to decide (`ask`) may be reported to the sender
with `hold` (FILE_HELD, PROTOCOL.md §FILE_HELD): only in a session that negotiated feature
HELD, at most once per offer, and only before it is answered.

A file already here under the offered name, with the offered size, is accepted as present
(`accept(..., present=True)`, PROTOCOL.md §Files already at the receiver): FILE_ACCEPT holds
every chunk, nothing is sent, the adapter reports the digest of the file it holds, and FILE_END
decides: the same digest is FILE_RESULT 0 (`FileReceived.present`, nothing is written), another
is FILE_RESULT `differs` and the sender offers the file again, which is then received as usual.

Chunks outside every accepted file (a refused or undecided file, past a declared size, never
offered) are refused: not recorded, not acknowledged, counted in `chunks_refused`. Chunks the
receiver does not want sent (held before, of a refused file, gaps between files) are recorded
as received at once, so the cumulative ack and the credit move past them.

A session may carry any number of files, so what it keeps per file is bounded by the files in
flight, not by the files it ever saw: an offer's `transfer_id` must be above every earlier one
(the sender numbers them 1, 2, 3, ...), so telling a repeat needs no record of the files that
ended; a file that ends is folded into the session's totals and forgotten, but for its state,
which the last `RECENT_ENDED` ended files keep for `state`. A peer that makes offers as fast as
it can, each refused at once, then costs a few counters, not a record each.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.node.session import wire_text
from l2fast.transfer.events import (
    FileChunksComplete,
    FileReceived,
    FileRejected,
    FileVerified,
    IncomingEvent,
    OfferReceived,
    TransferDone,
    TransferFailed,
    TransferProgress,
)
from l2fast.transfer.protocol_config import TransferConfig
from l2fast.transfer.protocol_space import FileLayout, fit_have, held_bytes, max_have_ranges
from l2fast.transfer.protocol_states import (
    FINAL_STATES,
    FileInput,
    FileRole,
    FileState,
    transition,
)
from l2fast.transfer.ranges import ChunkRanges
from l2fast.transfer.receiver import RxTracker
from l2fast.wire.constants import Digest, ErrorCode, Features, FileKind
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
)

__all__ = ["IncomingTransfer"]

_MAX_CHUNK = 1 << 62  # a data space this large is a confused or hostile peer

#: Ended files whose final state `IncomingTransfer.state` still tells (a FILE_END that comes
#: after its file failed here is told from one never offered by the ids alone).
RECENT_ENDED = 4096


@dataclass(slots=True)
class _InFile:
    """One offer received."""

    offer: FileOffer
    kind: FileKind
    layout: FileLayout
    state: FileState = FileState.OFFERED
    got: int = 0  #: chunks held, before (resume) or since
    bytes_in: int = 0  #: file bytes that arrived over the wire
    skipped_bytes: int = 0
    end_digest: bytes | None = None  #: from FILE_END
    end_algo: int = 0
    our_digest: bytes | None = None  #: of the written data, from the adapter
    final_name: str = ""
    present: bool = False  #: accepted as already here: nothing is sent or written
    held: bool = False  #: FILE_HELD was sent for it (at most once)
    #: A FILE_INLINE's bytes and digest, until the offer is answered (then None).
    inline: FileInline | None = None

    @property
    def transfer_id(self) -> int:
        return self.offer.transfer_id

    @property
    def path(self) -> str:
        return self.offer.path


class IncomingTransfer:
    """Receives every file the peer offers on one session (see the module docstring).

    `buffer_chunks` is the receive rings' free space in chunks (the credit is cum_ack plus
    it); `mtu` the session's, which bounds the `have` ranges one FILE_ACCEPT can carry;
    `features` the session's negotiated feature bits (HELD allows `hold` to tell the sender).
    """

    def __init__(
        self,
        *,
        now: float,
        buffer_chunks: int,
        mtu: int = 1500,
        session: int = 0,
        peer: bytes = b"",
        config: TransferConfig | None = None,
        features: Features = Features.NONE,
    ) -> None:
        self.config = config or TransferConfig()
        self.features = features
        self.session = session
        self.peer = peer
        self._max_have = max_have_ranges(mtu)
        #: Peer frames dropped, by reason (for `l2fast status`).
        self.drops: Counter[str] = Counter()
        #: Chunks that arrived outside every accepted file, and were not acknowledged.
        self.chunks_refused = 0
        # total=None: the sender keeps offering files, so the data space has no known end.
        self._tracker = RxTracker(None, buffer_chunks=buffer_chunks, config=self.config.rx, now=now)
        self._files: dict[int, _InFile] = {}  # offers that have not ended (see `_retire`)
        self._ordered: list[_InFile] = []  # valid offers, ascending in the data space
        self._starts: list[int] = []
        self._retired_in_order = 0  # ended files still in `_ordered`
        self._last_id = 0  # the highest transfer_id offered: offers must ascend
        self._offered = 0  # offers received, ended or not
        self._recent_ended: OrderedDict[int, FileState] = OrderedDict()
        # Totals of the verified files that were forgotten, for TransferDone.
        self._verified = 0
        self._verified_bytes = 0
        self._verified_skipped = 0
        self._verified_present = 0
        self._space_end = 0  # end of the last valid offer's chunks
        self._accepted = ChunkRanges()  # chunks of accepted files
        self._control: list[Body] = []
        self._events: deque[IncomingEvent] = deque()
        self._counts: Counter[FileState] = Counter()
        self._incomplete = 0  # accepted files still missing chunks
        self._dirty = False  # chunks or drops arrived since the last FEEDBACK
        self._force_at: float | None = None  # send a FEEDBACK at once (new credit is useful)
        self._credit_sent = 0  # the credit the sender was last told
        self._linger_until = now
        self._bytes_total = 0
        self._bytes_done = 0
        self._last_progress: float | None = None
        #: True once the session ended and TransferDone or TransferFailed was given.
        self.finished = False
        #: transfer_id -> text for the FILE_RESULT `final_name` of a bench stream (kind 3),
        #: set by the adapter before its last chunks are reported (the receiver's CPU time
        #: and kernel drops for `l2fast bench`; see docs/PROTOCOL.md §FILE_RESULT).
        self.bench_notes: dict[int, str] = {}
        #: Bench offers whose FILE_RESULT waits for `release_bench` (a raw-blast count).
        self.bench_held: set[int] = set()
        #: Paths accepted as present whose digest then differed (FILE_RESULT `differs`): the
        #: sender offers them again, and the adapter must not answer those as present.
        self.differing: set[str] = set()

    # --- inspection ------------------------------------------------------------------------

    def layout(self, transfer_id: int) -> FileLayout | None:
        """Where an offered file's chunks sit in the data space, or None if unknown."""
        f = self._files.get(transfer_id)
        return f.layout if f is not None else None

    def state(self, transfer_id: int) -> FileState | None:
        """The state of an offered file, or None when it is unknown (never offered, or one of
        more than `RECENT_ENDED` files that ended since it did)."""
        f = self._files.get(transfer_id)
        return f.state if f is not None else self._recent_ended.get(transfer_id)

    @property
    def tracker(self) -> RxTracker:
        """The reliability tracker (counters, cum_ack, credit), in data-space chunks."""
        return self._tracker

    def progress(self) -> TransferProgress:
        """The progress now (the same numbers TransferProgress events carry)."""
        # A superseded file comes again as a new offer: the pair counts as one file.
        again = self._counts[FileState.SUPERSEDED]
        done = sum(self._counts[s] for s in FINAL_STATES) - again
        return TransferProgress(self._bytes_done, self._bytes_total, done, self._offered - again)

    # --- control stream --------------------------------------------------------------------

    def control_to_send(self) -> list[Body]:
        """FILE_HELD / FILE_ACCEPT / FILE_REJECT / FILE_RESULT bodies for the control stream,
        in order."""
        out, self._control = self._control, []
        return out

    def _move(self, f: _InFile, event: FileInput) -> FileState:
        old = f.state
        f.state = transition(FileRole.RECEIVER, old, event)
        self._counts[old] -= 1
        self._counts[f.state] += 1
        f.inline = None  # answered: a session of many files keeps none of their bytes
        if f.state in FINAL_STATES:
            self._retire(f)
        return old

    def _retire(self, f: _InFile) -> None:
        """`f` ended: fold it into the totals and forget it (the module docstring says why).
        The caller may go on using `f` for the frames and events that announce its end."""
        del self._files[f.transfer_id]
        self._recent_ended[f.transfer_id] = f.state
        if len(self._recent_ended) > RECENT_ENDED:
            self._recent_ended.popitem(last=False)
        if f.state is FileState.VERIFIED:
            self._verified += 1
            self._verified_bytes += f.bytes_in
            self._verified_skipped += f.skipped_bytes
            self._verified_present += f.present
        # Dropped from the data space's index in batches: an ended file's chunks are all in
        # the tracker already (received, or recorded as such), so none comes back as fresh.
        self._retired_in_order += 1
        if self._retired_in_order > max(64, len(self._ordered) // 2):
            self._ordered = [g for g in self._ordered if g.state not in FINAL_STATES]
            self._starts = [g.layout.first_chunk for g in self._ordered]
            self._retired_in_order = 0

    def receive_control(self, body: Body, now: float) -> None:
        """Take a FILE_OFFER or FILE_END from the peer (in stream order). Never raises."""
        if self.finished:
            self.drops["after_end"] += 1
            return
        if body.violation() is not None:
            self.drops["bad_payload"] += 1  # the codec drops these; a body built by hand may not
            return
        try:
            if isinstance(body, FileOffer):
                self._on_offer(body, now)
            elif isinstance(body, FileEnd):
                self._on_end(body, now)
            else:
                self.drops["not_for_receiver"] += 1
        except RemoteProtocolError:
            self.drops["protocol_violation"] += 1

    def _on_offer(self, body: FileOffer, now: float) -> None:
        if body.transfer_id <= self._last_id:
            self.drops["duplicate_offer"] += 1
            raise RemoteProtocolError(
                f"file #{body.transfer_id} was already offered, or comes after #{self._last_id}"
            )
        self._last_id = body.transfer_id
        self._offered += 1
        kind = FileKind(body.kind)
        layout = FileLayout(body.transfer_id, body.first_chunk, body.chunk_size, body.size)
        f = _InFile(body, kind, layout)
        if isinstance(body, FileInline):
            # Kept apart, and only in a session that negotiated it (otherwise it is an offer
            # like any other): `offer` lives as long as the session, the bytes do not.
            f.offer = body.as_offer()
            if self.features & Features.INLINE:
                f.inline = body
        self._files[body.transfer_id] = f
        self._counts[FileState.OFFERED] += 1
        problem = None
        if layout.chunks and body.first_chunk < self._space_end:
            problem = f"its chunks start at {body.first_chunk}, inside an earlier file"
        elif layout.end > _MAX_CHUNK:
            problem = f"its chunks end at {layout.end}, past any data space"
        elif kind is FileKind.DIRECTORY and body.size:
            problem = f"a directory of {body.size} bytes"
        elif layout.chunks and body.chunk_size < self.config.min_chunk_size:
            problem = (
                f"chunks of {body.chunk_size} bytes: this receiver takes "
                f"{self.config.min_chunk_size} at least"
            )
        if problem is not None:
            # The offer is well formed but cannot be laid out: refuse it as a bad request.
            self.drops["bad_offer"] += 1
            self._refuse(f, ErrorCode.BAD_REQUEST, f"offer refused: {problem}", now)
            return
        if layout.chunks:
            if body.first_chunk > self._space_end:
                # A gap the sender will never fill: received as far as the credit goes.
                self._tracker.on_chunks([(self._space_end, body.first_chunk)], now)
            self._space_end = layout.end
        self._ordered.append(f)
        self._starts.append(layout.first_chunk)
        self._events.append(
            OfferReceived(
                self.session,
                self.peer,
                body.transfer_id,
                kind,
                body.path,
                body.size,
                body.mode,
                body.mtime_ns,
                Digest(body.digest),
                body.chunk_size,
                layout.chunks,
                body.first_chunk,
            )
        )

    def _ended(self, transfer_id: int) -> bool:
        """`transfer_id` was offered and has ended (so it is no longer in `_files`)."""
        return transfer_id not in self._files and 0 < transfer_id <= self._last_id

    def _known(self, transfer_id: int) -> _InFile:
        f = self._files.get(transfer_id)
        if f is None:
            if self._ended(transfer_id):
                raise LocalProtocolError(f"file #{transfer_id} has ended already")
            raise LocalProtocolError(f"no file #{transfer_id} was offered")
        return f

    def accept(
        self,
        transfer_id: int,
        now: float,
        have: Iterable[tuple[int, int]] = (),
        final_name: str = "",
        present: bool = False,
    ) -> None:
        """Accept an offer; `have` are file-relative chunk ranges already held (resume).

        Only as many `have` ranges as fit one FILE_ACCEPT are kept (the largest). For a
        directory, create it first: `final_name` is where it landed, and the file is complete
        at once. `present`: a file of this name and size is already here; every chunk counts
        as held (`have` is ignored) and the adapter reports that file's digest with
        `file_written`. Raises LocalProtocolError when the offer is unknown or already
        answered, or `present` is given for anything but a file.
        """
        f = self._known(transfer_id)
        if present and f.kind is not FileKind.FILE:
            raise LocalProtocolError(f"only a file can be present, not a {f.kind.name.lower()}")
        self._move(f, FileInput.ACCEPT)
        layout = f.layout
        held: tuple[tuple[int, int], ...] = ()
        f.present = present
        if present:
            held = ((layout.first_chunk, layout.end),) if layout.chunks else ()
        elif f.kind in (FileKind.FILE, FileKind.SYMLINK):
            held = fit_have(layout.to_data(ChunkRanges(have)), self._max_have)
        self._control.append(FileAccept(transfer_id, held))
        if not layout.chunks:
            self._after_accept_empty(f, final_name, now)
            return
        self._accepted.add(layout.first_chunk, layout.end)
        if held:
            self._tracker.on_chunks(held, now)
        f.got = sum(end - start for start, end in held)
        f.skipped_bytes = held_bytes(layout.to_file(held), layout.size, layout.chunk_size)
        self._bytes_total += f.offer.size - f.skipped_bytes
        if layout.end > self._credit_sent:
            self._force_at = now  # the sender may be waiting for credit that reaches this file
        if f.got < layout.chunks:
            self._incomplete += 1
        else:
            self._chunks_complete(f, now)

    def hold(self, transfer_id: int, now: float, pending_id: int, text: str = "") -> bool:
        """Tell the sender that the offer waits for a person here (FILE_HELD): `pending_id`
        is its inbox number (what `l2fast accept` takes), `text` a note for the sender (cut
        to 512 bytes). True when FILE_HELD was queued; False when the session did not
        negotiate HELD or the offer was already reported held (the sender hears nothing new).
        The offer stays undecided: answer it later with `accept` or `reject`.

        Raises LocalProtocolError when the offer is unknown or already answered, or
        `pending_id` does not fit u32.
        """
        f = self._known(transfer_id)
        if f.state is not FileState.OFFERED:
            raise LocalProtocolError(f"file #{transfer_id} was already answered")
        if not 0 <= pending_id <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"pending id {pending_id} does not fit u32")
        # A person may take minutes: the answer then takes the usual path, and the bytes of
        # offers kept waiting are not held meanwhile (a peer could fill the memory with them).
        f.inline = None
        if f.held or not self.features & Features.HELD or self.finished:
            return False
        f.held = True
        self._control.append(FileHeld(transfer_id, pending_id, wire_text(text)))
        return True

    def inline_offer(self, transfer_id: int) -> FileInline | None:
        """The FILE_INLINE of an offer not yet answered, whose bytes the adapter may write
        and report with `inline_written`; None for any other offer."""
        f = self._files.get(transfer_id)
        return f.inline if f is not None else None

    def inline_written(
        self, transfer_id: int, digest: bytes, now: float, present: bool = False
    ) -> None:
        """The adapter wrote the bytes of a FILE_INLINE (`inline_offer`) and `digest` is
        theirs; with `present`, it wrote nothing: a file with that digest is already here
        under the offered name. The digests are compared as a FILE_END's would be:
        FileVerified (then `file_placed` answers FILE_RESULT 0) or FILE_RESULT
        `digest_mismatch`. Raises LocalProtocolError for an offer that has no inline bytes
        (any more), or `present` with another digest.
        """
        f = self._known(transfer_id)
        inline = f.inline
        if inline is None:
            raise LocalProtocolError(f"file #{transfer_id} has no inline data to write")
        if present and digest != inline.digest_value:
            raise LocalProtocolError(f"file #{transfer_id}: the file here is another file")
        self._move(f, FileInput.INLINE_WRITTEN)
        layout = f.layout
        if layout.chunks:
            # Never sent as DATA: recorded as received so the cumulative ack passes the file.
            self._tracker.on_chunks([(layout.first_chunk, layout.end)], now)
        f.present = present
        f.bytes_in = 0 if present else layout.size
        f.skipped_bytes = layout.size - f.bytes_in
        self._bytes_total += f.bytes_in
        self._bytes_done += f.bytes_in
        f.our_digest = bytes(digest)
        f.end_digest, f.end_algo = inline.digest_value, inline.digest
        self._check(f, now)

    def _after_accept_empty(self, f: _InFile, final_name: str, now: float) -> None:
        if f.kind is FileKind.DIRECTORY:
            # No data and no digest: the FILE_END is implicit and the directory is done.
            self._move(f, FileInput.DATA_WRITTEN)
            self._move(f, FileInput.RECV_END)
            self._move(f, FileInput.DIGEST_MATCH)
            f.our_digest = b""
            self._placed(f, final_name)
        else:
            self._chunks_complete(f, now)

    def reject(
        self,
        transfer_id: int,
        now: float,
        reason: int = ErrorCode.REFUSED,
        text: str = "",
    ) -> None:
        """Refuse an offer with an §ERROR code (refused, no_space, bad_name, ...).

        Raises LocalProtocolError when the offer is unknown or already answered, or for
        reason 0 (that is not a refusal).
        """
        if not 0 < reason <= 0xFFFF:
            raise LocalProtocolError(f"reject reason {reason} is not an error code")
        f = self._known(transfer_id)
        transition(FileRole.RECEIVER, f.state, FileInput.REJECT)
        if f.layout.chunks:
            # Never sent: recorded as received so the cumulative ack passes the file.
            self._tracker.on_chunks([(f.layout.first_chunk, f.layout.end)], now)
        self._refuse(f, reason, text, now)

    def _refuse(self, f: _InFile, reason: int, text: str, now: float) -> None:
        self._move(f, FileInput.REJECT)
        text = wire_text(text)
        self._control.append(FileReject(f.transfer_id, int(reason), text))
        self._events.append(FileRejected(f.transfer_id, f.path, int(reason), text, False))

    def _on_end(self, body: FileEnd, now: float) -> None:
        f = self._files.get(body.transfer_id)
        if self._ended(body.transfer_id):
            # It ended here first (failed, say): as for any input a final state has no use for.
            raise RemoteProtocolError(f"FILE_END for file #{body.transfer_id}, which has ended")
        if f is None:
            self.drops["unknown_transfer"] += 1
            raise RemoteProtocolError(f"FILE_END for file #{body.transfer_id}, never offered")
        if f.kind is FileKind.DIRECTORY:
            self.drops["end_for_directory"] += 1
            raise RemoteProtocolError("FILE_END for a directory")
        self._move(f, FileInput.RECV_END)
        f.end_digest, f.end_algo = body.digest_value, body.digest
        if f.state is FileState.CHECKING:
            self._check(f, now)

    # --- data ------------------------------------------------------------------------------

    def on_chunks(self, ranges: Iterable[tuple[int, int]], now: float) -> list[tuple[int, int]]:
        """Record one batch of verified chunk ranges; return the new ones to write.

        Chunks outside every accepted file are refused (counted, not acknowledged); repeats
        are counted as duplicates. The returned ranges ascend and were never returned before.
        """
        wanted: list[tuple[int, int]] = []
        if self.finished:
            self.chunks_refused += sum(end - start for start, end in ranges)
            return []
        for start, end in ranges:
            self._dirty = True
            inside = list(self._accepted.slice(start, end))
            self.chunks_refused += (end - start) - sum(e - s for s, e in inside)
            wanted += inside
        if not wanted:
            return []
        fresh = self._tracker.on_chunks(wanted, now)
        for start, end in fresh:
            self._credit_files(start, end, now)
        self._progress(now)
        return fresh

    def _credit_files(self, start: int, end: int, now: float) -> None:
        i = max(bisect_right(self._starts, start) - 1, 0)
        files = self._ordered
        while i < len(files) and files[i].layout.first_chunk < end:
            f = files[i]
            i += 1
            span = f.layout.span(start, end)
            if span.end <= span.start:
                continue
            f.got += span.end - span.start
            f.bytes_in += span.length
            self._bytes_done += span.length
            # Fresh chunks are never counted twice, so a file reaches its count exactly once.
            if f.got == f.layout.chunks and f.state in (FileState.ACCEPTED, FileState.ENDED):
                self._incomplete -= 1
                if not self._incomplete:
                    self._linger_until = now + self.config.rx.linger
                self._chunks_complete(f, now)

    def _chunks_complete(self, f: _InFile, now: float) -> None:
        if f.kind is FileKind.BENCH:
            self._written(f, b"", now)  # a memory sink: nothing to write, no digest
        else:
            self._events.append(FileChunksComplete(f.transfer_id, f.path))

    def set_buffer_space(self, chunks: int) -> None:
        """Free receive-ring space, in chunks, as the writers drain it (sets the credit)."""
        self._tracker.set_buffer_space(chunks)

    def add_kernel_drops(self, drops: int) -> None:
        """Frames the kernel dropped (PACKET_STATISTICS) since the last call."""
        if drops > 0:
            self._dirty = True
            self._tracker.add_kernel_drops(drops)

    def _feedback_timer(self) -> float | None:
        """When the tracker wants a FEEDBACK, masked to the times one matters."""
        timer = self._tracker.next_timer()
        if timer is None:
            return None
        # FEEDBACK matters while data is expected, right after data came, and for a while
        # after the last file's data, in case the final FEEDBACK was lost; an idle session
        # sends none (the tracker, whose data space has no end, would repeat it forever).
        if self._incomplete or self._dirty or timer < self._linger_until:
            return timer
        return None

    def poll_feedback(self, now: float) -> tuple[int, Feedback] | None:
        """(header seq, FEEDBACK) to send now, or None when none is due."""
        if self.finished:
            return None
        timer = self._feedback_timer()
        # `timer <= now` as well as `feedback_due`: at exactly the time the tracker asked to be
        # woken, float rounding can make its own test fail, and the adapter would spin.
        due = timer is not None and (timer <= now or self._tracker.feedback_due(now))
        if self._force_at is None and not due:
            return None
        feedback = self._tracker.make_feedback(now)
        self._credit_sent = feedback.credit
        self._force_at = None
        self._dirty = False
        return self._tracker.counters.feedbacks, feedback

    # --- the adapter's reports -------------------------------------------------------------

    def file_written(self, transfer_id: int, digest: bytes, now: float) -> None:
        """Every chunk of the file is on disk and `digest` is the digest of what was written.

        Raises LocalProtocolError when chunks are still missing or the file is not in a state
        that waits for its data.
        """
        f = self._known(transfer_id)
        if f.got < f.layout.chunks:
            raise LocalProtocolError(
                f"file #{transfer_id} still misses {f.layout.chunks - f.got} chunks"
            )
        self._written(f, bytes(digest), now)

    def _written(self, f: _InFile, digest: bytes, now: float) -> None:
        self._move(f, FileInput.DATA_WRITTEN)
        f.our_digest = digest
        if f.state is FileState.CHECKING:
            self._check(f, now)

    def _check(self, f: _InFile, now: float) -> None:
        """FILE_END and the written data's digest are both known: compare and answer."""
        ours = f.our_digest or b""
        if f.kind is FileKind.BENCH and f.transfer_id in self.bench_held:
            return  # answered by release_bench
        if f.kind is FileKind.BENCH or (f.end_algo == f.offer.digest and f.end_digest == ours):
            self._move(f, FileInput.DIGEST_MATCH)
            if f.kind is FileKind.BENCH:
                self._placed(f, self.bench_notes.pop(f.transfer_id, ""))
            else:
                self._events.append(FileVerified(f.transfer_id, f.path, ours))
            return
        if f.present:
            # Not the same file: the sender offers it again and sends its data (§Files
            # already at the receiver). The file here is left as it is.
            text = "another file of that name and size is already here"
            self._move(f, FileInput.DIFFERS)
            self.differing.add(f.path)
            # No digest: the file here is not the sender's to learn about. Its digest would
            # let a peer that offers a guessed name and size test guesses of a small file's
            # content offline (PROTOCOL.md §Files already at the receiver).
            self._control.append(FileResult(f.transfer_id, int(ErrorCode.DIFFERS), 0, b"", text))
            self._events.append(FileRejected(f.transfer_id, f.path, ErrorCode.DIFFERS, text, True))
            return
        text = "the digest of the data received differs from the sender's"
        self._move(f, FileInput.DIGEST_MISMATCH)
        self._control.append(
            FileResult(f.transfer_id, int(ErrorCode.DIGEST_MISMATCH), f.bytes_in, ours, text)
        )
        self._events.append(
            FileRejected(f.transfer_id, f.path, ErrorCode.DIGEST_MISMATCH, text, True)
        )

    def release_bench(self, transfer_id: int, note: str, now: float) -> None:
        """Answer a held bench offer: FILE_RESULT with `note` as its text once it is due."""
        self.bench_held.discard(transfer_id)
        self.bench_notes[transfer_id] = note
        f = self._files.get(transfer_id)
        if f is not None and f.state is FileState.CHECKING:
            self._check(f, now)

    def file_placed(self, transfer_id: int, final_name: str, now: float) -> None:
        """The verified file is placed under `final_name` (relative to the receive directory).

        Sends FILE_RESULT status 0. Raises LocalProtocolError unless FileVerified asked for it.
        """
        f = self._known(transfer_id)
        self._placed(f, final_name)

    def _placed(self, f: _InFile, final_name: str) -> None:
        self._move(f, FileInput.PLACED)
        f.final_name = final_name
        digest = f.our_digest or b""
        self._control.append(FileResult(f.transfer_id, 0, f.bytes_in, digest, final_name))
        self._events.append(
            FileReceived(
                f.transfer_id,
                f.path,
                f.kind,
                final_name,
                digest,
                f.bytes_in,
                f.offer.size,
                f.present,
            )
        )

    def file_failed(self, transfer_id: int, code: int, text: str, now: float) -> None:
        """The file cannot be received (io_error, no_space, bad_name...): tell the sender.

        Before acceptance this is a refusal (FILE_REJECT); after it, FILE_RESULT with `code`.
        A file that already ended is left as it is.
        """
        if not 0 < code <= 0xFFFF:
            raise LocalProtocolError(f"failure code {code} is not an error code")
        if self._ended(transfer_id):
            return
        f = self._known(transfer_id)
        if f.state is FileState.OFFERED:
            self.reject(transfer_id, now, code, text)
            return
        self._fail(f, code, text, now, notify=True)

    def _fail(self, f: _InFile, code: int, text: str, now: float, notify: bool) -> None:
        old = self._move(f, FileInput.FAIL)
        if old in (FileState.ACCEPTED, FileState.ENDED) and f.got < f.layout.chunks:
            self._incomplete -= 1
            # The sender may still send the rest: take it as received so it is acknowledged
            # (and dropped), and the cumulative ack moves on to the next file.
            self._tracker.on_chunks([(f.layout.first_chunk, f.layout.end)], now)
        if notify:
            # A failed file was not placed: `final_name` carries the reason (§FILE_RESULT).
            self._control.append(
                FileResult(f.transfer_id, int(code), f.bytes_in, b"", wire_text(text))
            )
        after = old is not FileState.OFFERED
        self._events.append(FileRejected(f.transfer_id, f.path, int(code), text, after))

    # --- the end ---------------------------------------------------------------------------

    def session_ended(
        self, now: float, error: ProtocolError | None = None, close_reason: int = 0
    ) -> None:
        """The session failed (`error`) or closed (CLOSE `close_reason`): running files fail."""
        if self.finished:
            return
        # Closed in order with files unfinished: the peer gave up on them, for its reason.
        code = int(error.code) if error is not None else close_reason or int(ErrorCode.REFUSED)
        unfinished = [f for f in self._files.values() if f.state not in FINAL_STATES]
        text = "the session ended before the file was complete"
        for f in unfinished:
            self._fail(f, code, text, now, notify=False)
        self.finished = True
        self._control.clear()
        self._events.append(self.progress())
        if unfinished:
            failure = error or RemoteProtocolError(
                f"the peer closed the session with {len(unfinished)} files unfinished",
                code=code,
            )
            self._events.append(TransferFailed("session", code, failure, len(unfinished)))
            return
        self._events.append(
            TransferDone(
                files_verified=self._verified,
                files_failed=self._counts[FileState.FAILED],
                files_rejected=self._counts[FileState.REJECTED],
                bytes_sent=self._verified_bytes,
                bytes_skipped=self._verified_skipped,
                files_present=self._verified_present,
            )
        )

    def _progress(self, now: float) -> None:
        last = self._last_progress
        if last is None or now >= last + self.config.progress_interval:
            self._last_progress = now
            self._events.append(self.progress())

    # --- timers and events -----------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` (a FEEDBACK poll) must next run, or None."""
        if self.finished:
            return None
        if self._force_at is not None:
            return self._force_at
        return self._feedback_timer()

    def handle_timer(self, now: float) -> None:
        """Nothing runs on a timer but FEEDBACK, which `poll_feedback` builds: kept for the
        adapter's uniform loop (call `poll_feedback` after it)."""

    def next_event(self) -> IncomingEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
