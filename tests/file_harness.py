"""Two nodes sending files to each other in memory: OutgoingTransfer -> IncomingTransfer.

It plays every part the adapter, the C data path, the kernel and the disk play in production,
so the file-transfer protocol can be tested under every fault in milliseconds (STYLE.md §13):

- control frames (FILE_*, CTRL_ACK, the handshake) cross the node harness's LAN
  (`tests.node_harness`), with seeded loss, duplication and reordering; a corrupted control
  frame is dropped by its CRC, so corruption is more loss there;
- DATA and FEEDBACK cross a link in the transfer harness's style: each step the sender's "C
  loop" sends one batch from `OutgoingTransfer.next_batch`, every frame carries its chunk's real
  bytes and a CRC, the receiver's loop drops frames whose CRC fails and hands the rest to
  `IncomingTransfer.on_chunks` in one batch; FEEDBACK goes back with its own loss;
- blackouts cut everything (`blackouts`) or only the data path (`data_blackouts`, so the
  session stays alive and the data window must notice the stall itself);
- the disk is a dict of bytearrays (part files) and a dict of placed files; digests are real
  `hashlib` digests; the application answers offers by policy (`all`, `none`, or `ask`:
  collected in `inbox` for the test to answer later, and reported to the sender with `hold`
  as the daemon does, which sends FILE_HELD only when the session negotiated HELD).

    run = FileRun(Setup(seed=3), Faults(loss=0.05), files(...))
    run.run()
    assert run.placed == run.source_by_path()
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from l2fast.node.config import NodeConfig
from l2fast.node.events import (
    ControlReceived,
    SessionClosed,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.node import NodeEngine
from l2fast.transfer.events import (
    FileChunksComplete,
    FileReoffered,
    FileVerified,
    IncomingEvent,
    OfferAccepted,
    OfferReceived,
    OutgoingEvent,
    TransferDone,
    TransferFailed,
)
from l2fast.transfer.protocol import (
    FileEntry,
    IncomingTransfer,
    OutgoingTransfer,
    TransferConfig,
    for_sender,
    is_file_frame,
)
from l2fast.wire.constants import Digest, ErrorCode, Features, FileKind, max_payload
from l2fast.wire.frames import Feedback, Frame
from tests.node_harness import Lan
from tests.transfer_harness import StreamBurst

_HASHES = {Digest.SHA256: "sha256", Digest.BLAKE2B_256: "blake2b"}


def digest_of(algo: Digest, data: bytes) -> bytes:
    """The FILE_END digest of `data` (BLAKE2b-256 is BLAKE2b with a 32-byte output)."""
    if algo is Digest.BLAKE2B_256:
        return hashlib.blake2b(data, digest_size=32).digest()
    return hashlib.new(_HASHES[algo], data).digest()


@dataclass(frozen=True)
class Source:
    """One entry to send and its bytes (a symlink's target; zeros for a bench stream)."""

    entry: FileEntry
    data: bytes = b""


def file(path: str, data: bytes, chunk_size: int = 1000, digest: Digest = Digest.SHA256) -> Source:
    """A regular file."""
    entry = FileEntry(path, FileKind.FILE, len(data), chunk_size=chunk_size, digest=digest)
    return Source(entry, data)


def directory(path: str) -> Source:
    """A directory (no data)."""
    return Source(FileEntry(path, FileKind.DIRECTORY, 0, mode=0o755))


def bench(path: str, size: int, chunk_size: int = 1000) -> Source:
    """A bench stream of `size` bytes."""
    return Source(FileEntry(path, FileKind.BENCH, size, chunk_size=chunk_size), bytes(size))


@dataclass(frozen=True)
class Faults:
    """What the link does wrong. Probabilities are per frame (control and data alike)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    feedback_loss: float = 0.0
    #: (start, end) virtual seconds when every frame is lost, control and data.
    blackouts: tuple[tuple[float, float], ...] = ()
    #: (start, end) when DATA and FEEDBACK are lost but control frames get through.
    data_blackouts: tuple[tuple[float, float], ...] = ()

    def dead(self, t: float, data: bool) -> bool:
        """True when a frame sent at `t` is lost to a blackout."""
        spans = self.blackouts + (self.data_blackouts if data else ())
        return any(start <= t < end for start, end in spans)


@dataclass(frozen=True)
class Setup:
    """Both machines and the application's choices."""

    seed: int = 0
    mtu: int = 9000
    step: float = 20e-6  #: one turn of the sender's C loop
    chunks_per_step: int = 64
    latency: float = 50e-6  #: one way, data and control
    buffer_chunks: int = 4096  #: receive ring capacity
    drain_per_step: int | None = None  #: writer speed in chunks per step (None: at once)
    policy: str = "all"  #: "all", "none" or "ask"
    config: TransferConfig = field(default_factory=TransferConfig)
    max_time: float = 30.0  #: virtual seconds before the run gives up (a hang)
    digest_delay: float = 0.0  #: the sender's digest arrives this long after acceptance
    #: Paths whose receiver digest the adapter reports wrongly (a disk that lied).
    wrong_digest: frozenset[str] = frozenset()
    #: Paths the application refuses (no_space) whatever the policy.
    refuse: frozenset[str] = frozenset()
    #: Paths the receiver's writers fail on (the adapter reports io_error instead).
    fail_write: frozenset[str] = frozenset()
    #: Path -> file-relative chunk ranges the receiver holds before the transfer (resume).
    receiver_has: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    #: Path -> bytes of a file already at the receiver under that name: an offer of the same
    #: size is accepted as present (PROTOCOL.md §Files already at the receiver).
    receiver_present: dict[str, bytes] = field(default_factory=dict)
    #: The sender's application closes the session once its transfer ended.
    close_when_done: bool = True
    #: Feature bits each node offers in SYN / SYN_ACK (None: NodeConfig's default).
    sender_features: Features | None = None
    receiver_features: Features | None = None
    #: The sender streams new data in bursts of up to this many steps (0: a batch every step),
    #: as the daemon does with csrc/txstream.c (tests/transfer_harness.StreamBurst).
    burst_steps: int = 0
    #: The sender offers files that fit one control frame with their bytes (FILE_INLINE) when
    #: the session negotiated INLINE, as the daemon does; the receiver takes them as its
    #: `answer` says (policy `all`).
    inline: bool = False


class _FaultyLan(Lan):
    """The node harness's LAN with blackouts and CRC-dropped corruption on control frames."""

    faults: Faults = Faults()

    def _fault(self, dst: bytes, frame: Frame) -> None:
        f = self.faults
        if f.dead(self.now, data=False) or self.rng.random() < f.corrupt:
            self.lost[frame.type] += 1
            return
        super()._fault(dst, frame)


class FileRun:
    """One sender, one receiver, one session, the given files, the given faults."""

    def __init__(self, setup: Setup, faults: Faults, sources: Sequence[Source]) -> None:
        self.setup, self.faults, self.sources = setup, faults, list(sources)
        self.rng = random.Random(setup.seed ^ 0x5EED)
        lan = _FaultyLan(
            seed=setup.seed,
            loss=faults.loss,
            dup=faults.duplicate,
            reorder=faults.reorder,
            latency=setup.latency,
        )
        lan.faults = faults
        self.lan = lan

        def config(features: Features | None) -> NodeConfig | None:
            return None if features is None else NodeConfig(features=features)

        self.a: NodeEngine = lan.add(mtu=setup.mtu, config=config(setup.sender_features))
        self.b: NodeEngine = lan.add(mtu=setup.mtu, config=config(setup.receiver_features))
        self.session = self.a.open_session(self.b.mac, lan.now)
        self.out: OutgoingTransfer | None = None
        self.inc: IncomingTransfer | None = None
        self.out_events: list[OutgoingEvent] = []
        self.in_events: list[IncomingEvent] = []
        self._seen = {self.a.mac: 0, self.b.mac: 0}
        #: `ask` policy: offers waiting for the test's answer.
        self.inbox: list[OfferReceived] = []
        #: Optional hook called with each receiver event (after the harness's own handling).
        self.on_incoming: Callable[[IncomingEvent], None] | None = None
        # The receiver's disk and its map of the data space.
        self.parts: dict[int, bytearray] = {}
        self.offers: dict[int, OfferReceived] = {}
        self._rx_starts: list[int] = []
        self._rx_ids: list[int] = []
        self.placed: dict[str, bytes] = {}
        self.present_ids: set[int] = set()  #: transfer ids accepted as present
        self.dirs: set[str] = set()
        self.bench_bytes = 0
        self.written: Counter[int] = Counter()  #: data-space chunk -> times written
        self.bad_writes = 0  #: writes whose bytes differ from the source (must stay 0)
        # The wire.
        self.sent: Counter[int] = Counter()  #: data-space chunk -> times sent
        self.data_lost = 0
        self.corrupted = 0
        self.crc_dropped = 0
        self.feedbacks_lost = 0
        self.burst: StreamBurst | None = None  # the sender's streaming burst under way
        self.streamed_chunks = 0  # chunks sent by bursts
        self._data: list[tuple[float, int, int, bytes, int]] = []
        self._back: list[tuple[float, int, int, Feedback]] = []
        self._digests: list[tuple[float, int, int]] = []  # (due, tiebreak, transfer_id)
        self._tiebreak = 0
        self._ring = 0
        self._busy = False
        self.elapsed = 0.0
        self.inline_reads = 0  #: calls of the sender's FILE_INLINE reader

    # --- the applications ----------------------------------------------------------------------

    def source_by_path(self, kinds: tuple[FileKind, ...] = (FileKind.FILE,)) -> dict[str, bytes]:
        """What the receiver should end up with: path -> bytes, for the given kinds."""
        return {s.entry.path: s.data for s in self.sources if s.entry.kind in kinds}

    def _node_events(self, now: float) -> None:
        for node in (self.a, self.b):
            log = self.lan.events[node.mac]
            while self._seen[node.mac] < len(log):
                ev = log[self._seen[node.mac]]
                self._seen[node.mac] += 1
                if isinstance(ev, SessionOpened) and ev.session == self.session:
                    if node is self.a:
                        entries = [s.entry for s in self.sources]
                        self.out = OutgoingTransfer(
                            entries,
                            now=now,
                            config=self.setup.config,
                            features=Features(ev.params.features),
                            inline=self._read_inline if self.setup.inline else None,
                            control_payload=max_payload(ev.params.mtu),
                        )
                    else:
                        self.inc = IncomingTransfer(
                            now=now,
                            buffer_chunks=self.setup.buffer_chunks,
                            mtu=ev.params.mtu,
                            session=ev.session,
                            peer=ev.peer,
                            config=self.setup.config,
                            features=Features(ev.params.features),
                        )
                elif isinstance(ev, ControlReceived) and is_file_frame(ev.body):
                    if node is self.a and self.out is not None and for_sender(ev.body):
                        self.out.receive_control(ev.body, now)
                    elif node is self.b and self.inc is not None and not for_sender(ev.body):
                        self.inc.receive_control(ev.body, now)
                    else:
                        raise AssertionError(f"{ev.body} reached the wrong side")
                elif isinstance(ev, SessionClosed | SessionFailed):
                    side = self.out if node is self.a else self.inc
                    if side is not None and isinstance(ev, SessionFailed):
                        side.session_ended(now, ev.error)
                    elif side is not None and isinstance(ev, SessionClosed):
                        side.session_ended(now, close_reason=ev.reason)

    def _read_inline(self, index: int) -> tuple[bytes, bytes] | None:
        """The sending adapter's FILE_INLINE reader: the source's bytes and digest."""
        self.inline_reads += 1
        source = self.sources[index]
        return source.data, digest_of(source.entry.digest, source.data)

    def _sender_events(self, now: float) -> None:
        out = self.out
        if out is None:
            return
        while (ev := out.next_event()) is not None:
            self.out_events.append(ev)
            if isinstance(ev, FileReoffered):
                self.sources.append(self.sources[ev.index])  # the adapter's same source
            if isinstance(ev, OfferAccepted) and ev.needs_digest:
                self._tiebreak += 1
                due = now + self.setup.digest_delay
                heapq.heappush(self._digests, (due, self._tiebreak, ev.transfer_id))
            elif isinstance(ev, TransferDone | TransferFailed) and self.setup.close_when_done:
                reason = 0 if isinstance(ev, TransferDone) else ev.code
                self.a.close(self.b.mac, now, reason, ev.__class__.__name__)
        while self._digests and self._digests[0][0] <= now:
            _, _, transfer_id = heapq.heappop(self._digests)
            index = transfer_id - 1
            entry = self.sources[index].entry
            out.digest_ready(transfer_id, digest_of(entry.digest, self.sources[index].data), now)

    def _receiver_events(self, now: float) -> None:
        inc = self.inc
        if inc is None:
            return
        while (ev := inc.next_event()) is not None:
            self.in_events.append(ev)
            if isinstance(ev, OfferReceived):
                self._offered(ev, now)
            elif isinstance(ev, FileChunksComplete) and ev.path in self.setup.fail_write:
                inc.file_failed(ev.transfer_id, ErrorCode.IO_ERROR, "disk on fire", now)
            elif isinstance(ev, FileChunksComplete):
                offer = self.offers[ev.transfer_id]
                data = bytes(self.parts[ev.transfer_id])
                digest = digest_of(offer.digest, data)
                if ev.path in self.setup.wrong_digest:
                    digest = bytes(32)
                inc.file_written(ev.transfer_id, digest, now)
            elif isinstance(ev, FileVerified) and ev.transfer_id in self.present_ids:
                self.parts.pop(ev.transfer_id)  # already there: nothing is placed
                inc.file_placed(ev.transfer_id, ev.path, now)
            elif isinstance(ev, FileVerified):
                self.placed[ev.path] = bytes(self.parts.pop(ev.transfer_id))
                inc.file_placed(ev.transfer_id, ev.path, now)
            if self.on_incoming is not None:
                self.on_incoming(ev)

    def _offered(self, ev: OfferReceived, now: float) -> None:
        inc = self.inc
        assert inc is not None
        self.offers[ev.transfer_id] = ev
        i = bisect_right(self._rx_starts, ev.first_chunk)
        self._rx_starts.insert(i, ev.first_chunk)
        self._rx_ids.insert(i, ev.transfer_id)
        policy = self.setup.policy
        if ev.path in self.setup.refuse:
            inc.reject(ev.transfer_id, now, ErrorCode.NO_SPACE, "not enough space")
        elif policy == "none":
            inc.reject(ev.transfer_id, now, ErrorCode.REFUSED, "this node accepts no files")
        elif policy == "ask":
            self.inbox.append(ev)
            # What the daemon does: the inbox number, and a note (PROTOCOL.md §FILE_HELD).
            pending_id = len(self.inbox)
            inc.hold(ev.transfer_id, now, pending_id, f"l2fast accept {pending_id}")
        else:
            self.answer(ev, now)

    def answer(self, ev: OfferReceived, now: float | None = None) -> None:
        """Accept an offer the way policy `all` does (with resume ranges, if any)."""
        inc = self.inc
        assert inc is not None
        now = self.lan.now if now is None else now
        if ev.kind is FileKind.DIRECTORY:
            self.dirs.add(ev.path)
            inc.accept(ev.transfer_id, now, final_name=ev.path)
            return
        here = self.setup.receiver_present.get(ev.path)
        inline = inc.inline_offer(ev.transfer_id)
        if inline is not None:
            # What the daemon does (`Transfers._receive_inline`): the same file already here
            # is present; otherwise the bytes are written and their digest reported.
            digest = digest_of(ev.digest, inline.data)
            if ev.path in self.setup.fail_write:
                inc.file_failed(ev.transfer_id, ErrorCode.IO_ERROR, "disk on fire", now)
                return
            if ev.path in self.setup.wrong_digest:
                digest = bytes(32)
            same = here is not None and digest_of(ev.digest, here) == digest
            self.parts[ev.transfer_id] = bytearray(inline.data)
            if same:
                self.present_ids.add(ev.transfer_id)  # nothing is placed (the FileVerified)
            inc.inline_written(ev.transfer_id, digest, now, present=same)
            return
        if (
            ev.kind is FileKind.FILE
            and here is not None
            and len(here) == ev.size
            and ev.path not in inc.differing
        ):
            # What the daemon does when ReceiveDir.find_present finds the file: its digest is
            # the FILE_END check's "written data".
            self.parts[ev.transfer_id] = bytearray(here)
            self.present_ids.add(ev.transfer_id)
            inc.accept(ev.transfer_id, now, present=True)
            return
        part = bytearray(ev.size) if ev.kind is not FileKind.BENCH else bytearray()
        have = self.setup.receiver_has.get(ev.path, ())
        if have:
            source = self.source_by_path()[ev.path]
            for start, end in have:
                lo, hi = start * ev.chunk_size, min(end * ev.chunk_size, ev.size)
                part[lo:hi] = source[lo:hi]
        self.parts[ev.transfer_id] = part
        inc.accept(ev.transfer_id, now, have=have)

    def _move_control(self, now: float) -> None:
        if self.out is not None:
            for body in self.out.control_to_send():
                self.a.send_control(self.b.mac, self.session, body, now)
        if self.inc is not None and not self.inc.finished:
            for body in self.inc.control_to_send():
                self.b.send_control(self.a.mac, self.session, body, now)

    def _applications(self, now: float) -> None:
        for _ in range(100):  # events cause calls, which cause events: run until quiet
            before = len(self.out_events) + len(self.in_events)
            self._node_events(now)
            self._sender_events(now)
            self._receiver_events(now)
            self._move_control(now)
            if len(self.out_events) + len(self.in_events) == before:
                return

    # --- the data path -------------------------------------------------------------------------

    def _send_data(self, now: float) -> None:
        out = self.out
        if out is None:
            self._busy = False
            return
        burst = self.burst
        timer = out.next_timer()
        # The daemon runs due timers before it pumps (OutgoingJob._pump_and_timers); this loop
        # runs them after sending, so a burst waits for the step after them.
        due = timer is not None and timer <= now
        if burst is None and self.setup.burst_steps and not due and (span := out.stream_target()):
            length = self.setup.burst_steps * self.setup.step
            burst = StreamBurst.start((span.start, span.end), out.data_credit, now, length, timer)
            self.burst = burst
        if burst is not None:
            batch = burst.take(self.setup.chunks_per_step, now)
        else:
            batch = out.next_batch(now, self.setup.chunks_per_step)
        self._busy = bool(batch) or burst is not None
        f, rng = self.faults, self.rng
        for span in out.spans(batch):
            index = span.transfer_id - 1
            layout = out.layout(index)
            data = self.sources[index].data
            for k in range(span.start, span.end):
                self.sent[k] += 1
                if f.dead(now, data=True) or rng.random() < f.loss:
                    self.data_lost += 1
                    continue
                offset = (k - layout.first_chunk) * layout.chunk_size
                payload = data[offset : offset + layout.chunk_size]
                crc = zlib.crc32(payload)
                if f.corrupt and rng.random() < f.corrupt:
                    self.corrupted += 1
                    flipped = bytearray(payload)
                    bit = rng.randrange(len(payload) * 8)
                    flipped[bit // 8] ^= 1 << (bit % 8)
                    payload = bytes(flipped)
                at = now + self.setup.latency
                if f.reorder and rng.random() < f.reorder:
                    at += rng.uniform(self.setup.step, 20 * self.setup.latency)
                self._tiebreak += 1
                heapq.heappush(self._data, (at, self._tiebreak, k, payload, crc))
                if f.duplicate and rng.random() < f.duplicate:
                    self._tiebreak += 1
                    again = at + rng.uniform(0, 10 * self.setup.step)
                    heapq.heappush(self._data, (again, self._tiebreak, k, payload, crc))

    def _receive_data(self, now: float) -> None:
        inc = self.inc
        arrived: list[tuple[int, int]] = []
        payloads: dict[int, bytes] = {}
        while self._data and self._data[0][0] <= now:
            _, _, k, payload, crc = heapq.heappop(self._data)
            if zlib.crc32(payload) != crc:
                self.crc_dropped += 1  # bad_crc: dropped and counted, never handed over
                continue
            payloads.setdefault(k, payload)
            arrived.append((k, k + 1))
        if inc is None:
            return
        if arrived:
            for start, end in inc.on_chunks(arrived, now):
                for k in range(start, end):
                    self._write(k, payloads[k])
        setup = self.setup
        drain = self._ring if setup.drain_per_step is None else setup.drain_per_step
        self._ring -= min(self._ring, drain)
        inc.set_buffer_space(setup.buffer_chunks - self._ring)

    def _write(self, chunk: int, payload: bytes) -> None:
        self.written[chunk] += 1
        self._ring += 1
        i = bisect_right(self._rx_starts, chunk) - 1
        transfer_id = self._rx_ids[i]
        offer = self.offers[transfer_id]
        offset = (chunk - offer.first_chunk) * offer.chunk_size
        expected = self.sources[transfer_id - 1].data[offset : offset + offer.chunk_size]
        if payload != expected:
            self.bad_writes += 1
        if offer.kind is FileKind.BENCH:
            self.bench_bytes += len(payload)
        else:
            self.parts[transfer_id][offset : offset + len(payload)] = payload

    def _feedback(self, now: float) -> None:
        inc, out = self.inc, self.out
        if inc is not None:
            polled = inc.poll_feedback(now)
            if polled is not None:
                seq, feedback = polled
                assert feedback.violation() is None, feedback.violation()
                if self.faults.dead(now, data=True) or self.rng.random() < (
                    self.faults.feedback_loss + self.faults.loss
                ):
                    self.feedbacks_lost += 1
                else:
                    self._tiebreak += 1
                    item = (now + self.setup.latency, self._tiebreak, seq, feedback)
                    heapq.heappush(self._back, item)
        while self._back and self._back[0][0] <= now:
            _, _, seq, feedback = heapq.heappop(self._back)
            if self.burst is not None:
                self.burst.read(seq, feedback, now)
            elif out is not None:
                out.on_feedback(feedback, now, seq)

    # --- running -------------------------------------------------------------------------------

    def finished(self) -> bool:
        """Both transfers ended (the receiver's when its session ended)."""
        return (
            self.out is not None
            and self.out.finished
            and (not self.setup.close_when_done or (self.inc is not None and self.inc.finished))
        )

    def run(self, until: Callable[[], bool] | None = None) -> bool:
        """Run until `until()` (default: both ends finished) or `max_time`; True if it held."""
        until = until or self.finished
        lan = self.lan
        while lan.now <= self.setup.max_time:
            now = lan.now
            burst = self.burst
            if burst is not None and self.out is not None and (burst.over or now >= burst.deadline):
                self.streamed_chunks += burst.replay(self.out)
                self.burst = None
            self._applications(now)
            if until():
                self.elapsed = now
                return True
            self._send_data(now)
            self._receive_data(now)
            self._feedback(now)
            for side in (self.out, self.inc):
                timer = side.next_timer() if side is not None else None
                if side is self.out and self.burst is not None:
                    continue  # the sender's Python waits for its burst to return
                if side is not None and timer is not None and timer <= now:
                    side.handle_timer(now)
            self._applications(now)
            lan.step(limit=self._next_time(now))
        self.elapsed = lan.now
        return until()

    def _next_time(self, now: float) -> float:
        wake = [now + self.setup.step] if self._busy or self._ring else []
        for side in (self.out, self.inc):
            timer = side.next_timer() if side is not None else None
            if timer is not None:
                wake.append(timer)
        for queue in (self._data, self._back, self._digests):
            if queue:
                wake.append(queue[0][0])
        target = max(min(wake), now) if wake else math.inf
        return min(target, self.setup.max_time + 1.0)


def of(events: Sequence[object], kind: type) -> list:  # type: ignore[type-arg]
    """The events of one kind, in order."""
    return [ev for ev in events if isinstance(ev, kind)]


def tap(run: FileRun) -> list[object]:
    """Every control body either node puts on the wire (retransmissions included)."""
    bodies: list[object] = []
    run.lan.tap = lambda frame: bodies.append(frame.body)
    return bodies
