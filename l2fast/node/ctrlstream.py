"""The reliable, in-order, exactly-once control stream of one session (PROTOCOL.md §CTRL_ACK).

Each direction of a session is its own stream. Sequence numbers start at 1. The receiver
acknowledges with CTRL_ACK (`cum`: everything below was received; bit i of `bitmap`:
`cum + 1 + i` was), buffers out-of-order frames, hands them over in order exactly once, and
acknowledges duplicates again (the ACK that answered them the first time may have been lost).

The sender keeps at most `window` frames in flight (64: a bitmap cannot acknowledge more beyond
`cum`), retransmits on a timeout derived from measured RTT with bounded exponential backoff,
retransmits early a frame three sequence numbers behind one already acknowledged (the QUIC
packet threshold), and gives up with `StreamGaveUp` when a frame stays unacknowledged for
`give_up` seconds after it was first sent.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from l2fast.errors import LocalProtocolError, RemoteProtocolError
from l2fast.node.events import StreamAcked, StreamDelivered, StreamEvent, StreamGaveUp
from l2fast.node.rtt import RttEstimator
from l2fast.wire.constants import ErrorCode
from l2fast.wire.frames import Body, CtrlAck, Frame

__all__ = ["BITMAP_BITS", "ControlStream"]

#: Sequence numbers beyond `cum` that one CTRL_ACK can acknowledge.
BITMAP_BITS = 64
# PROTOCOL.md §CTRL_ACK leaves a frame "lost" to the sender's judgement; three later frames
# acknowledged before it is what QUIC (RFC 9002 kPacketThreshold) uses.
_REORDER_THRESHOLD = 3


@dataclass(slots=True)
class _Outgoing:
    seq: int
    body: Body
    flags: int
    encoded: bytes | None  # the body's payload bytes, if the session encoded it already
    first_sent: float = -1.0  # -1 until first sent
    last_sent: float = -1.0
    transmissions: int = 0
    # Position in our sending order: frames sent in one batch share `now`, so time cannot
    # tell which went out first.
    sent_order: int = 0
    retransmit_due: bool = False


class ControlStream:
    """Both directions of one session's control stream, sans-IO.

    Inputs: `send()` (queue a frame of ours), `receive_frame()` (a CTRL_ACK, or a control frame
    of the peer's), `handle_timer()`. Outputs: `frames_to_send()`, `next_timer()`,
    `next_event()` (StreamDelivered, StreamAcked, StreamGaveUp). Sending starts paused until
    the session is open (`resume()`); frames queued before then keep their order.
    """

    def __init__(
        self,
        *,
        session_id: int,
        local_mac: bytes,
        peer_mac: bytes,
        rtt: RttEstimator,
        drops: Counter[str],
        window: int = BITMAP_BITS,
        give_up: float = 10.0,
    ) -> None:
        if not 1 <= window <= BITMAP_BITS:
            raise LocalProtocolError(f"control window {window} is outside 1..{BITMAP_BITS}")
        self.session_id = session_id
        self.local_mac = local_mac
        self.peer_mac = peer_mac
        self.rtt = rtt
        self.window = window
        self.give_up = give_up
        self._drops = drops
        self._events: deque[StreamEvent] = deque()
        self.paused = True
        #: True once the stream gave up; it then sends and acknowledges nothing more.
        self.dead = False
        # Sender side.
        self._next_seq = 1
        self._queue: deque[_Outgoing] = deque()  # not sent yet
        self._inflight: dict[int, _Outgoing] = {}  # sent, unacknowledged; ascending seq
        self._largest_acked = 0
        self._largest_acked_order = 0
        self._sent_count = 0
        # next_timer() runs on every turn of the loop; the two oldest times it needs are kept
        # and recomputed only after a transmission, an acknowledgement or a timeout changed
        # the frames in flight (a window of 64 is otherwise walked on every turn).
        self._deadlines_stale = True
        self._oldest_wait: float | None = None  # min last_sent of those not marked for resend
        self._oldest_first = 0.0  # min first_sent in flight
        # Receiver side.
        self._rcv_next = 1  # == the `cum` we report
        self._out_of_order: dict[int, Frame] = {}
        self._ack_due = False

    # --- sending -------------------------------------------------------------------------

    def send(self, body: Body, flags: int = 0, encoded: bytes | None = None) -> int:
        """Queue `body` as the next control frame; returns its sequence number. `encoded`,
        when given, is `encode_payload(body)`: every transmission sends those bytes."""
        if self.dead:
            raise LocalProtocolError("the control stream gave up", code=ErrorCode.TIMEOUT)
        seq = self._next_seq
        self._next_seq += 1
        self._queue.append(_Outgoing(seq, body, flags, encoded))
        return seq

    def resume(self) -> None:
        """Let queued frames go out (the session is open)."""
        self.paused = False

    @property
    def unacked(self) -> int:
        """Frames queued or in flight that the peer has not acknowledged yet."""
        return len(self._queue) + len(self._inflight)

    def _snd_una(self) -> int:
        if self._inflight:
            return next(iter(self._inflight))
        return self._queue[0].seq if self._queue else self._next_seq

    def _frame(self, seq: int, body: Body, flags: int = 0, encoded: bytes | None = None) -> Frame:
        return Frame(
            self.peer_mac, self.local_mac, self.session_id, seq, body, flags, encoded=encoded
        )

    def frames_to_send(self, now: float) -> list[Frame]:
        """The CTRL_ACK if one is due, retransmissions, then new frames the window allows."""
        out: list[Frame] = []
        if self.dead:
            return out
        if self._ack_due:
            self._ack_due = False
            out.append(self._frame(0, self._ack_body()))
        if self.paused:
            return out
        for entry in self._inflight.values():
            if entry.retransmit_due:
                entry.retransmit_due = False
                out.append(self._transmit(entry, now))
        limit = self._snd_una() + self.window
        while self._queue and self._queue[0].seq < limit:
            entry = self._queue.popleft()
            self._inflight[entry.seq] = entry
            out.append(self._transmit(entry, now))
        return out

    def _transmit(self, entry: _Outgoing, now: float) -> Frame:
        self._deadlines_stale = True
        if entry.transmissions == 0:
            entry.first_sent = now
        entry.last_sent = now
        entry.transmissions += 1
        self._sent_count += 1
        entry.sent_order = self._sent_count
        return self._frame(entry.seq, entry.body, entry.flags, entry.encoded)

    def _on_ack(self, ack: CtrlAck, now: float) -> bool:
        if ack.cum > self._next_seq or ack.cum == 0:
            # cum may equal _next_seq (everything acknowledged) but never pass what we sent.
            raise RemoteProtocolError(
                f"CTRL_ACK cum={ack.cum} acknowledges control frames never sent",
                code=ErrorCode.BAD_REQUEST,
            )
        newly: list[_Outgoing] = []
        for seq, entry in self._inflight.items():
            offset = seq - ack.cum - 1
            if seq < ack.cum or (0 <= offset < BITMAP_BITS and ack.bitmap >> offset & 1):
                newly.append(entry)
        if not newly:
            return False
        self._deadlines_stale = True
        for entry in newly:
            del self._inflight[entry.seq]
            self._events.append(StreamAcked(entry.seq))
        newest = newly[-1]
        # Karn's rule: a retransmitted frame's acknowledgement cannot tell which copy it answers.
        if newest.transmissions == 1:
            self.rtt.sample(now - newest.last_sent)
        if newest.seq > self._largest_acked:
            self._largest_acked = newest.seq
            self._largest_acked_order = newest.sent_order
        for entry in self._inflight.values():
            if (
                entry.seq + _REORDER_THRESHOLD <= self._largest_acked
                and entry.sent_order < self._largest_acked_order
                and not entry.retransmit_due
            ):
                # Sent before a frame that got through three places later: lost, not late.
                entry.retransmit_due = True
        return True

    # --- receiving -----------------------------------------------------------------------

    def receive_frame(self, frame: Frame, now: float, *, accept_new: bool = True) -> bool:
        """Take a CTRL_ACK or one of the peer's control frames; returns whether it brought
        anything new (a frame not yet received, an acknowledgement of one not yet acknowledged),
        which a replayed recording cannot.

        With `accept_new` False (a session that has ended) only duplicates are acknowledged
        again; new frames are ignored, so their sender learns nothing was delivered. Raises
        RemoteProtocolError for an acknowledgement of frames never sent or sequence 0.
        """
        if self.dead:
            return False
        if isinstance(frame.body, CtrlAck):
            return self._on_ack(frame.body, now)
        seq = frame.seq
        if seq == 0:
            raise RemoteProtocolError("control frame with sequence 0", code=ErrorCode.BAD_REQUEST)
        if seq < self._rcv_next or seq in self._out_of_order:
            self._drops["duplicate"] += 1
            self._ack_due = True
            return False
        if seq > self._rcv_next + BITMAP_BITS:
            # Beyond what an acknowledgement could report: a sender that ignores the window.
            self._drops["ctrl_window"] += 1
            return False
        if not accept_new:
            self._drops["after_close"] += 1
            return False
        self._ack_due = True
        self._out_of_order[seq] = frame
        while self._rcv_next in self._out_of_order:
            self._events.append(StreamDelivered(self._out_of_order.pop(self._rcv_next)))
            self._rcv_next += 1
        return True

    def ack_now(self) -> Frame:
        """The CTRL_ACK for everything received so far, to send at once.

        For a session that is about to stop sending (it refuses the frame that just came): the
        peer still learns which of its earlier frames got through.
        """
        self._ack_due = False
        return self._frame(0, self._ack_body())

    def _ack_body(self) -> CtrlAck:
        cum = self._rcv_next
        bitmap = 0
        for seq in self._out_of_order:
            bitmap |= 1 << (seq - cum - 1)
        return CtrlAck(cum=cum, bitmap=bitmap)

    # --- timers and events ---------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run (retransmission or give-up), or None."""
        if self.dead or not self._inflight:
            return None
        if self._deadlines_stale:
            self._deadlines_stale = False
            waiting = [e.last_sent for e in self._inflight.values() if not e.retransmit_due]
            self._oldest_wait = min(waiting) if waiting else None
            self._oldest_first = min(e.first_sent for e in self._inflight.values())
        due = self._oldest_first + self.give_up
        if self._oldest_wait is not None:
            due = min(due, self._oldest_wait + self.rtt.rto)  # the RTO may have moved since
        return due

    def handle_timer(self, now: float) -> None:
        """Give up on a frame unacknowledged too long, or mark overdue frames for resending."""
        if self.dead or not self._inflight:
            return
        oldest = min(self._inflight.values(), key=lambda e: e.first_sent)
        if now >= oldest.first_sent + self.give_up:
            self.dead = True
            self._events.append(StreamGaveUp(oldest.seq, now - oldest.first_sent))
            return
        rto = self.rtt.rto
        expired = [
            e for e in self._inflight.values() if not e.retransmit_due and now >= e.last_sent + rto
        ]
        if expired:
            self.rtt.back_off()
            self._deadlines_stale = True
            for entry in expired:
                entry.retransmit_due = True

    def next_event(self) -> StreamEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
