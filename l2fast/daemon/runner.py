"""`NodeRunner`: the I/O adapter that drives a sans-IO `NodeEngine` from a raw socket.

One `selectors` loop owns the raw socket and whatever else its owner registers (the control
socket and its clients in `l2fast daemon`, stdin in interactive chat). Each turn it:

1. receives frames in batches (`RawSocket.recv_batch` into an `RxArena`, one `recvmmsg`),
   validates the whole batch in one C call (`RxArena.parse`), counts every rejected frame under
   its verdict's drop reason (`bad_crc`, `bad_length`, `unknown_type`, `short`, ...; PROTOCOL.md
   §Receiving), decodes the payloads of the rest (`bad_payload` when that fails) and hands them
   to `NodeEngine.receive_frame` with the time each frame arrived (the kernel's receive
   timestamp when the socket gives one, so a busy or sleeping loop does not lengthen the round
   trips the engine measures; never earlier than a time the engine was already given);
2. runs the engine's timer when `next_timer()` is due, and its own timers (`call_at`);
3. encodes everything `frames_to_send()` returns and sends it in one `send_frames` batch, and
   hands every event to the subscribers.

The same class runs inside `l2fast daemon` and inside a one-shot command when no daemon serves
the interface. It never raises for anything a peer sends; a failing subscriber is logged and
counted, not allowed to stop the loop.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from l2fast import native, qdisc
from l2fast.errors import L2fastError, MalformedPayload
from l2fast.native import RxArena
from l2fast.native.echo import EchoConfig, EchoCounters, EchoResponder
from l2fast.node.events import Event
from l2fast.node.node import NodeEngine
from l2fast.transfer.receive_sockets import ReceiveSockets
from l2fast.wire.constants import ETH_HLEN, FrameInfo, FrameType, Verdict
from l2fast.wire.frames import Frame, decode_body, wire_payload

__all__ = ["FrameSocket", "NodeRunner", "Timer", "keyed_control_filter"]

log = logging.getLogger("l2fast.daemon")

#: Frames received per system call (arena slots).
RX_BATCH = 64
# Batches taken per wake-up before the loop serves timers and clients again, so a flood of
# frames cannot starve them.
_MAX_BATCHES_PER_WAKE = 32
# Room beyond MTU + Ethernet header in a receive slot: a frame still carrying a VLAN tag fits.
_RX_SLOT_EXTRA = 18
# Frames kept waiting while the kernel pushes back (ENOBUFS); beyond this the oldest go.
_TX_BACKLOG_MAX = 8192
# While frames wait for the kernel, the loop retries this often.
_TX_RETRY_S = 0.001
# Bulk frames: the data path's, never the engine's (the runner counts those that come here).
_BULK_TYPES = frozenset({FrameType.DATA, FrameType.FEEDBACK})
# A kernel receive timestamp further from the clock than this (a clock step) is not trusted.
_MAX_STAMP_AGE_S = 1.0
# Rounds of "send frames, dispatch events" in one flush: subscribers act on events and so make
# new frames and events, but never endlessly.
_MAX_FLUSH_ROUNDS = 64


class FrameSocket(Protocol):
    """What the runner needs of a raw socket (`l2fast.native.RawSocket`, or a test double)."""

    ifname: str
    mac: bytes
    mtu: int
    ethertype: int

    def fileno(self) -> int:
        """Descriptor for the selector."""
        ...

    def recv_batch(self, arena: RxArena, timeout_ms: int, max_frames: int | None = None) -> int:
        """Receive up to `max_frames` into `arena`; 0 when none is waiting."""
        ...

    def send_frames(self, frames: Sequence[bytes]) -> int:
        """Send whole frames; returns how many the kernel took (0: backpressure)."""
        ...

    def stats(self) -> tuple[int, int]:
        """(packets, drops) counted by the kernel since the previous call."""
        ...

    def close(self) -> None:
        """Close the socket."""
        ...


def keyed_control_filter(sock: native.RawSocket) -> Callable[[frozenset[int]], None]:
    """What `NodeRunner.on_bulk_sessions` should call for a node's own socket `sock`.

    The kernel drops DATA and FEEDBACK of the sessions that carry a transfer (their data-path
    sockets consume them) and of the raw blast's reserved session (its counter's); those of
    any other session reach the runner, which counts them as `no_transfer` (PROTOCOL.md
    §Receiving). Keying on sessions rather than on data sockets needs nothing from the
    processes that own those sockets, and a session's transfer lies wholly inside the time
    its id is listed (see `NodeEngine.bulk_sessions`): no DATA of a transfer is ever passed
    here, none is dropped that was not before.
    """
    from l2fast.rawblast import BLAST_SESSION

    def apply(sessions: frozenset[int]) -> None:
        keyed = sessions | {BLAST_SESSION}
        try:
            if len(keyed) > native.MAX_FILTER_SESSIONS:
                raise L2fastError(f"{len(keyed)} sessions are more than the filter holds")
            sock.set_control_filter(keyed)
        except L2fastError as exc:
            # Drop every DATA and FEEDBACK uncounted rather than let transfers' frames flood
            # the loop: what the daemon did before stray frames were counted.
            log.warning("keying the socket filter on sessions failed: %s", exc.message)
            with contextlib.suppress(L2fastError):
                sock.set_filter(native.SocketFilter.CONTROL)

    return apply


@dataclass(slots=True)
class _Watch:
    """What to call when a watched descriptor is readable or writable."""

    reader: Callable[[], None] | None = None
    writer: Callable[[], object] | None = None

    @property
    def events(self) -> int:
        return (selectors.EVENT_READ if self.reader else 0) | (
            selectors.EVENT_WRITE if self.writer else 0
        )


@dataclass(order=True)
class Timer:
    """A callback scheduled with `NodeRunner.call_at`; `cancel()` stops it from running."""

    when: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        """Do not run it."""
        self.cancelled = True


class NodeRunner:
    """Moves frames between one `FrameSocket` and one `NodeEngine`, and runs the loop.

    `clock` is monotonic seconds (the engine's `now`); `wall_clock` is only for converting
    engine times into wall-clock times for users (`wall`).
    """

    def __init__(
        self,
        sock: FrameSocket,
        engine: NodeEngine,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sock = sock
        self.engine = engine
        self.clock = clock
        self.wall_clock = wall_clock
        self.started = clock()
        #: Runner-level counts: `rx_frames` (all received, valid or not), `tx_frames`,
        #: `tx_backpressure`, `tx_overflow`, `tx_dropped` and `sending_errors` /
        #: `receiving_errors` (link down), `kernel_packets`, `kernel_drops`,
        #: `subscriber_errors` (an event, timer or descriptor handler raised).
        self.counters: Counter[str] = Counter()
        self.arena = RxArena(RX_BATCH, sock.mtu + ETH_HLEN + _RX_SLOT_EXTRA)
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock.fileno(), selectors.EVENT_READ, _Watch(self._on_frames))
        self._subscribers: list[Callable[[Event], None]] = []
        self._timers: list[Timer] = []
        self._soon: list[Callable[[], None]] = []
        self._order = itertools.count()
        self._tx_backlog: deque[bytes] = deque()
        self._link_errors: set[str] = set()  # "sending" / "receiving" while they fail
        # The latest time handed to the engine (or to the owner, who hands it on): the time of
        # a received frame is never set before it, so the engine's clock never runs backwards.
        self._engine_time = self.started
        #: Called with `engine.bulk_sessions()` whenever that set changes, before any frame
        #: leaves (the daemon re-keys its socket filter: `RawSocket.set_control_filter`).
        self.on_bulk_sessions: Callable[[frozenset[int]], None] | None = None
        self._bulk_version = -1
        #: The C thread answering PINGs (`start_echo_responder`), or None: the loop answers.
        self.echo: EchoResponder | None = None
        #: The node's fanout group and pool of receive sockets (`open_receive_sockets`), or
        #: None: receive processes open their own sockets.
        self.receive_sockets: ReceiveSockets | None = None
        # Totals of a responder that stopped (the loop answers again), kept for `status`.
        self._echo_past = EchoCounters()
        self._closed = False

    # --- time --------------------------------------------------------------------------------

    def now(self) -> float:
        """The engine's clock (the time to pass to the engine now)."""
        t = self.clock()
        self._engine_time = max(self._engine_time, t)
        return t

    def stamp_time(self, stamp_ns: int, now: float, wall: float) -> float | None:
        """Engine-clock time of the kernel receive stamp `stamp_ns`, or None when unknown.

        `now` and `wall` are the engine clock and the wall clock read together after the frame
        was received. A stamp of 0, one in the future (a wall-clock step) or one more than
        `_MAX_STAMP_AGE_S` old is unknown. The result may be earlier than times the engine was
        already given: it is for measuring (a PONG's round trip), not for the engine's clock.
        """
        if stamp_ns <= 0:
            return None
        age = wall - stamp_ns / 1e9
        if not 0.0 <= age <= _MAX_STAMP_AGE_S:
            return None
        return now - age

    def arrival_time(self, arrived: float | None, now: float) -> float:
        """The engine time to give with a frame that arrived at `arrived` (`stamp_time`).

        Never earlier than the latest time the engine was already given (its clock must not
        run backwards), and `now` when the arrival is unknown.
        """
        if arrived is None:
            return now
        return min(now, max(self._engine_time, arrived))

    def wall(self, t: float) -> float:
        """Engine time `t` as wall-clock seconds since the epoch (for users and JSON)."""
        return self.wall_clock() - (self.clock() - t)

    # --- what the owner plugs in ---------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for every engine event, in order."""
        self._subscribers.append(callback)

    def add_reader(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever `fileobj` (a descriptor or object with fileno) is readable."""
        self.selector.register(fileobj, selectors.EVENT_READ, _Watch(callback))

    def set_writer(self, fileobj: Any, callback: Callable[[], object] | None) -> None:
        """Call `callback()` whenever `fileobj` (already read) is writable; None stops that."""
        try:
            watch: _Watch = self.selector.get_key(fileobj).data
        except (KeyError, ValueError):
            return  # not watched (any more): nothing to write to
        watch.writer = callback
        self.selector.modify(fileobj, watch.events, watch)

    def remove_reader(self, fileobj: Any) -> None:
        """Stop watching `fileobj` at all; nothing happens if it was not watched."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fileobj)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback()` once the clock reaches `when`."""
        timer = Timer(when, next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run `callback()` once every event there is now has been dispatched, before the
        loop waits again: work gathered over a batch of frames is then done once for the
        batch (`Transfers` places the files a batch completed together)."""
        self._soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback()` after `delay` seconds."""
        return self.call_at(self.clock() + delay, callback)

    # --- the loop ------------------------------------------------------------------------------

    def _next_wake(self, now: float, max_wait: float) -> float:
        wake = now + max_wait
        engine_timer = self.engine.next_timer()
        if engine_timer is not None:
            wake = min(wake, engine_timer)
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            wake = min(wake, self._timers[0].when)
        if self._tx_backlog:
            wake = min(wake, now + _TX_RETRY_S)
        if self._soon:  # left by a flush that ran out of rounds
            wake = now
        return max(0.0, wake - now)

    def step(self, max_wait: float) -> None:
        """One turn of the loop: wait (at most `max_wait` s) for I/O or a timer, then serve it."""
        # Whatever the owner asked of the engine since the last turn goes out before waiting
        # (a HELLO stamped now and sent a second later would read as a 1 s round trip).
        self.flush()
        if self.echo is not None and not self.echo.running:
            self._echo_failed()
        timeout = self._next_wake(self.now(), max_wait)
        for key, mask in self.selector.select(timeout):
            watch: _Watch = key.data
            # Guarded like timers and subscribers: an error in one descriptor's handler (a
            # full descriptor table while a peer floods offers, say) is counted and logged,
            # and the loop goes on serving everyone else.
            if mask & selectors.EVENT_READ and watch.reader is not None:
                self._guarded(watch.reader)
            # The reader may have closed it; a writer checks that for itself.
            if mask & selectors.EVENT_WRITE and watch.writer is not None:
                self._guarded(watch.writer)
        now = self.now()
        due = self.engine.next_timer()
        if due is not None and due <= now:
            self.engine.handle_timer(now)
        while self._timers and (self._timers[0].cancelled or self._timers[0].when <= now):
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback)
        self.flush()

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Step until `done()` holds (True) or `timeout` seconds passed (False)."""
        deadline = self.clock() + timeout
        self.flush()
        while not done():
            left = deadline - self.clock()
            if left <= 0:
                return False
            self.step(left)
        return True

    def _guarded(self, callback: Callable[..., object], *args: Any) -> None:
        # A bug in one subscriber, timer or descriptor handler must not stop a daemon that
        # serves everyone else.
        try:
            callback(*args)
        except L2fastError as exc:
            log.warning("%s", exc.message)
        except Exception as exc:
            self.counters["subscriber_errors"] += 1
            log.exception("error in an event handler (the node keeps running)")
            # A handler that belongs to a job (a transfer, a bench run) would leave its client
            # waiting on a job that never moves again: the job fails now, with a reason.
            on_error = getattr(getattr(callback, "__self__", None), "on_handler_error", None)
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception:
                    log.exception("error while failing the job of that handler")

    # --- frames in -----------------------------------------------------------------------------

    def _on_frames(self) -> None:
        arena = self.arena
        ethertype = self.sock.ethertype
        for _ in range(_MAX_BATCHES_PER_WAKE):
            try:
                n = self.sock.recv_batch(arena, 0)
            except L2fastError as exc:  # the socket reports the link going down once
                self.link_trouble("receiving", exc)
                return
            if n <= 0:
                return
            self.link_trouble("receiving", None)
            self.counters["rx_frames"] += n
            # Not now(): the engine has not been given this time yet (see arrival_time). The
            # wall clock first: a stamp's age is then never overstated, so an arrival is never
            # placed earlier than it was (a round trip never reads short).
            wall = self.wall_clock()
            now = self.clock()
            for i, info in enumerate(arena.parse(n, ethertype=ethertype)):
                if info.verdict is not Verdict.OK:
                    self.engine.note_drop(info.verdict.name.lower())
                    continue
                arrived = self.stamp_time(arena.rx_stamp_ns(i), now, wall)
                when = self.arrival_time(arrived, now)
                self._engine_time = when
                if info.type == FrameType.PING:
                    self._answer_ping(info, arena.payload(i), when)
                    continue
                if info.type in _BULK_TYPES:
                    # The data path's sockets take every session that carries a transfer
                    # (the kernel filter keeps those from here): this one has none. Counted
                    # without decoding, so a flood costs no more than the parse.
                    self.engine.note_drop("no_transfer")
                    continue
                try:
                    body, trailer = decode_body(info, arena.payload(i), ethertype)
                except MalformedPayload:
                    self.engine.note_drop("bad_payload")
                    continue
                frame = Frame(info.dst, info.src, info.session, info.seq, body, info.flags, trailer)
                self.engine.receive_frame(frame, when, arrived=arrived)
            # PONGs first (the peer's round trip runs until they leave), then whatever the
            # engine has (acknowledgements...), before taking the next batch.
            if self._tx_backlog:
                self._send_backlog()
            self.flush()
            if n < arena.slots:
                return

    def _answer_ping(self, info: FrameInfo, payload: memoryview, now: float) -> None:
        # The PONG is the PING's payload byte for byte: built from the received bytes, once
        # the engine said yes, with no decode or encode in between (the peer's round trip).
        if not self.engine.answer_ping(info.src, info.dst, len(payload), now):
            return
        try:
            pong = native.build_frame(
                info.src,
                self.sock.mac,
                self.sock.ethertype,
                FrameType.PONG,
                0,
                0,
                info.seq,
                payload,
            )
        except L2fastError as exc:  # a PING as long as the MTU allows still fits: our bug
            self.counters["encode_errors"] += 1
            log.error("could not build a PONG: %s", exc.message)
            return
        self._tx_backlog.append(pong)

    # --- frames and events out -----------------------------------------------------------------

    def _encode(self, frame: Frame) -> bytes | None:
        try:
            flags, payload = wire_payload(frame, self.sock.ethertype)
            return native.build_frame(
                frame.dst,
                frame.src,
                self.sock.ethertype,
                int(frame.type),
                flags,
                frame.session,
                frame.seq,
                payload,
            )
        except L2fastError as exc:  # the engine's bug, not the peer's: say so, keep going
            self.counters["encode_errors"] += 1
            log.error("could not encode a %s frame: %s", frame.type.name, exc.message)
            return None

    def link_trouble(self, direction: str, exc: L2fastError | None) -> None:
        """Note that `direction` ("sending", "receiving") on the interface failed with `exc`,
        or works (None). A link that goes down (cable, `ip link set down`) must not end a
        daemon: frames are dropped meanwhile, and the protocol's retransmissions carry on once
        it is back. Said once per outage, not once per frame; the sending jobs report here too."""
        if exc is not None:
            self.counters[f"{direction}_errors"] += 1
            if direction not in self._link_errors:
                self._link_errors.add(direction)
                log.warning("%s on %s fails: %s", direction, self.sock.ifname, exc.message)
        elif direction in self._link_errors:
            self._link_errors.discard(direction)
            log.info("%s on %s works again", direction, self.sock.ifname)

    def _send_backlog(self) -> float | None:
        """Send the backlog; the clock right before the first send call, None if none ran."""
        first_send: float | None = None
        while self._tx_backlog:
            batch = list(itertools.islice(self._tx_backlog, RX_BATCH))
            if first_send is None:
                first_send = self.now()
            try:
                took = self.sock.send_frames(batch)
            except L2fastError as exc:
                self.link_trouble("sending", exc)
                self.counters["tx_dropped"] += len(self._tx_backlog)
                self._tx_backlog.clear()
                return first_send
            self.link_trouble("sending", None)
            self.counters["tx_frames"] += took
            for _ in range(took):
                self._tx_backlog.popleft()
            if took < len(batch):
                self.counters["tx_backpressure"] += 1
                return first_send  # the kernel queue is full: retry on the next turn
        return first_send

    def flush(self) -> None:
        """Send every frame the engine has for the wire and dispatch every event it has."""
        for _ in range(_MAX_FLUSH_ROUNDS):
            self._sync_bulk_sessions()
            frames = self.engine.frames_to_send(self.now())
            for frame in frames:
                raw = self._encode(frame)
                if raw is not None:
                    self._tx_backlog.append(raw)
            overflow = len(self._tx_backlog) - _TX_BACKLOG_MAX
            for _ in range(max(0, overflow)):
                self._tx_backlog.popleft()
                self.counters["tx_overflow"] += 1
            # A PING's round trip starts right before the send system call, as ping(8)'s
            # does: the clock is read there and handed to the engine once the call is done,
            # so neither the engine's bookkeeping nor the encoding counts as network time. (If
            # the kernel pushes back, the frame leaves later and the round trip reads longer,
            # never shorter.)
            sent_at = self._send_backlog()
            if frames:
                self.engine.frames_sent(sent_at if sent_at is not None else self.now())
            dispatched = False
            while (event := self.engine.next_event()) is not None:
                dispatched = True
                for subscriber in self._subscribers:
                    self._guarded(subscriber, event)
            if self._soon:
                dispatched = True
                soon, self._soon = self._soon, []
                for callback in soon:
                    self._guarded(callback)
            if not frames and not dispatched:
                return

    def _sync_bulk_sessions(self) -> None:
        # Before frames leave: a FILE_OFFER or FILE_ACCEPT about to go out must find the
        # filter already keyed on its session, since the peer's DATA or FEEDBACK may follow.
        version = self.engine.bulk_version
        if self.on_bulk_sessions is None or version == self._bulk_version:
            return
        self._bulk_version = version
        self.on_bulk_sessions(self.engine.bulk_sessions())

    # --- the fanout group of the receiving sockets ---------------------------------------

    def open_receive_sockets(self) -> bool:
        """Put this node's socket at the head of a fanout group with a pool of data sockets
        for its receive processes (`l2fast.transfer.receive_sockets`); True if it did. Call
        it before `start_echo_responder` (the responder's socket joins the group last)."""
        sock = self.sock
        if self.receive_sockets is not None:
            return True
        if not isinstance(sock, native.RawSocket):
            return False
        self.receive_sockets = ReceiveSockets.open(sock)
        return self.receive_sockets is not None

    # --- the C echo responder --------------------------------------------------------------

    def start_echo_responder(self) -> bool:
        """Answer PINGs from a C thread from now on (`l2fast.native.echo`); True if it runs.

        The socket's filters stop passing PINGs addressed to us first, then the thread starts:
        a PING arriving in between goes unanswered, like a lost frame, rather than answered
        twice. The keyed control filter is re-applied before the next frame leaves
        (`on_bulk_sessions`). When the responder cannot start (no raw socket of ours, a
        kernel that refuses it, or `L2FAST_ECHO=python`), the loop keeps answering PINGs, as
        it does without a daemon, and the reason is logged.
        """
        sock = self.sock
        if self.echo is not None:
            return True
        if os.environ.get("L2FAST_ECHO", "c") == "python":
            log.info("PINGs are answered in the event loop (L2FAST_ECHO=python)")
            return False
        if not isinstance(sock, native.RawSocket):
            log.info("PINGs are answered in the event loop (not a raw socket of ours)")
            return False
        cfg = self.engine.config
        try:
            responder = EchoResponder(
                EchoConfig(
                    mac=sock.mac,
                    mtu=sock.mtu,
                    ethertype=sock.ethertype,
                    rate_per_peer=cfg.pong_rate_per_peer,
                    burst_per_peer=cfg.pong_burst_per_peer,
                    rate_global=cfg.pong_rate_global,
                    burst_global=cfg.pong_burst_global,
                    qdisc_bypass=qdisc.qdisc_bypass(sock.ifname),
                )
            )
        except (L2fastError, ValueError) as exc:
            log.warning("PINGs are answered in the event loop: %s", exc)
            return False
        try:
            sock.echo_mac = sock.mac
            sock.set_filter(native.SocketFilter.CONTROL)
            responder.start(sock.ifname)
        except L2fastError as exc:
            responder.close()
            self._answer_pings_here()
            log.warning("PINGs are answered in the event loop: %s", exc.message)
            return False
        self._bulk_version = -1  # re-key the owner's filter, now without our PINGs
        self.echo = responder
        if self.receive_sockets is not None:
            try:
                routed = self.receive_sockets.add_echo(responder.join_fanout, sock.mac)
            except L2fastError as exc:
                # Outside the group the responder still gets every PING (offered separately).
                log.warning("the echo responder stays outside the fanout group: %s", exc.message)
            else:
                if not routed:  # in the group, but no PING would reach it
                    self.stop_echo_responder()
                    log.warning("PINGs are answered in the event loop")
                    return False
        log.info("PINGs to %s are answered by a C thread", sock.ifname)
        return True

    def _answer_pings_here(self) -> None:
        # The control socket takes PINGs again (the keyed filter follows on the next flush).
        sock = self.sock
        if isinstance(sock, native.RawSocket) and sock.echo_mac is not None:
            sock.echo_mac = None
            try:
                sock.set_filter(native.SocketFilter.CONTROL)
            except L2fastError as exc:
                log.error("could not let PINGs through to the event loop: %s", exc.message)
            self._bulk_version = -1

    def _echo_failed(self) -> None:
        echo = self.echo
        assert echo is not None
        log.error(
            "the echo responder stopped (%s): PINGs are answered in the event loop",
            echo.exit_error or "no reason given",
        )
        self.stop_echo_responder()

    def stop_echo_responder(self) -> None:
        """Stop the C responder (if any) and answer PINGs in the loop; its counts are kept."""
        echo, self.echo = self.echo, None
        if echo is None:
            return
        if self.receive_sockets is not None:
            with contextlib.suppress(L2fastError):
                self.receive_sockets.remove_echo()
        self._answer_pings_here()
        with contextlib.suppress(L2fastError):
            packets, drops = echo.kernel_stats()
            self.counters["kernel_packets"] += packets
            self.counters["kernel_drops"] += drops
        echo.close()
        self._echo_past = _sum_counters(self._echo_past, echo.counters())

    def echo_counters(self) -> EchoCounters:
        """What C responders of this runner counted (all zeros if none ever ran)."""
        if self.echo is None:
            return self._echo_past
        return _sum_counters(self._echo_past, self.echo.counters())

    # --- counters ------------------------------------------------------------------------------

    def poll_kernel_stats(self) -> None:
        """Add the kernel's receive counters (PACKET_STATISTICS) since the last call, of the
        echo responder's socket too."""
        packets, drops = self.sock.stats()
        if self.echo is not None:
            try:
                echo_packets, echo_drops = self.echo.kernel_stats()
            except L2fastError:
                echo_packets = echo_drops = 0
            packets += echo_packets
            drops += echo_drops
        self.counters["kernel_packets"] += packets
        self.counters["kernel_drops"] += drops

    def close(self) -> None:
        """Close the selector and the socket; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.stop_echo_responder()
        if self.receive_sockets is not None:
            self.receive_sockets.close()
        self.selector.close()
        self.sock.close()


def _sum_counters(a: EchoCounters, b: EchoCounters) -> EchoCounters:
    verdicts = Counter(dict(a.verdicts))
    verdicts.update(dict(b.verdicts))
    scalars = {
        f: getattr(a, f) + getattr(b, f)
        for f in EchoCounters.__dataclass_fields__
        if f != "verdicts"
    }
    return EchoCounters(**scalars, verdicts=tuple(sorted(verdicts.items())))
