"""One session with one peer: handshake, MTU probe, keepalive, close (PROTOCOL.md §SYN .. §CLOSE).

The state changes come from the table in `l2fast.node.states`; this module turns frames and
timers into inputs for it and does what each transition needs (send SYN_ACK, count a
duplicate, emit SessionOpened...). The session's control stream (`ControlStream`) carries CLOSE
and whatever the node puts on it (CHAT, FILE_*); its deliveries and acknowledgements come out
of `next_event()` next to the session's own events.

Survives the loss of any single handshake frame: the initiator repeats SYN until SYN_ACK and
PROBE until PROBE_ACK; the responder answers a repeated SYN with its SYN_ACK again, answers
every PROBE, and takes a full-size PROBE in place of a lost ACK.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TypeAlias

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.ctrlstream import ControlStream
from l2fast.node.events import (
    SessionClosed,
    SessionFailed,
    SessionOpened,
    SessionParams,
    StreamAcked,
    StreamDelivered,
    StreamGaveUp,
)
from l2fast.node.negotiation import check_syn_ack
from l2fast.node.rtt import RttEstimator
from l2fast.node.states import Role, SessionInput, SessionState, transition
from l2fast.wire.constants import HDR_LEN, MAX_TEXT_BYTES, ErrorCode, FrameType, error_name
from l2fast.wire.frames import (
    Ack,
    Body,
    Close,
    Error,
    Frame,
    Keepalive,
    Probe,
    ProbeAck,
    Syn,
    SynAck,
    encode_payload,
)

__all__ = ["Session", "SessionEvent", "SessionInfo", "format_mac", "wire_text"]

#: What `Session.next_event()` can return.
SessionEvent: TypeAlias = (
    SessionOpened | SessionClosed | SessionFailed | StreamDelivered | StreamAcked
)

_INPUT_OF_TYPE: dict[FrameType, SessionInput] = {
    FrameType.SYN: SessionInput.RECV_SYN,
    FrameType.SYN_ACK: SessionInput.RECV_SYN_ACK,
    FrameType.ACK: SessionInput.RECV_ACK,
    FrameType.PROBE: SessionInput.RECV_PROBE,
    FrameType.PROBE_ACK: SessionInput.RECV_PROBE_ACK,
    FrameType.CTRL_ACK: SessionInput.RECV_CTRL_ACK,
    FrameType.KEEPALIVE: SessionInput.RECV_KEEPALIVE,
    FrameType.CLOSE: SessionInput.RECV_CTRL,
    FrameType.CHAT: SessionInput.RECV_CTRL,
    FrameType.FILE_OFFER: SessionInput.RECV_CTRL,
    FrameType.FILE_ACCEPT: SessionInput.RECV_CTRL,
    FrameType.FILE_REJECT: SessionInput.RECV_CTRL,
    FrameType.FILE_END: SessionInput.RECV_CTRL,
    FrameType.FILE_RESULT: SessionInput.RECV_CTRL,
    FrameType.FILE_HELD: SessionInput.RECV_CTRL,
    FrameType.FILE_INLINE: SessionInput.RECV_CTRL,
    FrameType.DATA: SessionInput.RECV_BULK,
    FrameType.FEEDBACK: SessionInput.RECV_BULK,
    FrameType.ERROR: SessionInput.RECV_ERROR,
}

_HANDSHAKE_STATES = frozenset(
    {SessionState.SYN_SENT, SessionState.SYN_RCVD, SessionState.PROBE_WAIT}
)
_ENDED = frozenset({SessionState.CLOSED, SessionState.FAILED})
_PAST_HANDSHAKE = _ENDED | {SessionState.OPEN, SessionState.CLOSING}


def format_mac(mac: bytes) -> str:
    """`aa:bb:cc:dd:ee:ff`, for messages."""
    return mac.hex(":")


def wire_text(message: str) -> str:
    """`message` cut to fit the free-text field of CLOSE / ERROR (PROTOCOL.md §Limits)."""
    return message.encode("utf-8")[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one session, for `l2fast status`."""

    session: int
    peer: bytes
    role: Role
    state: SessionState
    params: SessionParams | None
    #: Smoothed RTT in seconds, None before the first sample.
    srtt: float | None
    #: Our control frames not yet acknowledged.
    unacked: int


class Session:
    """One session, sans-IO: `receive_frame`, `frames_to_send`, `next_timer`, `handle_timer`,
    `next_event`, plus the application's `open`, `send_control` and `close`.

    Build an initiator with `Session(role=Role.INITIATOR, ...)` then call `open(now)`; build a
    responder with `Session.accept(syn_frame, params, ...)`. `receive_frame` raises
    RemoteProtocolError for a frame the table does not allow, or whose contents break the
    handshake rules (the node counts those as drops); the session itself is unchanged then.
    """

    def __init__(
        self,
        *,
        role: Role,
        session_id: int,
        local_mac: bytes,
        peer_mac: bytes,
        node_id: int,
        local_mtu: int,
        config: NodeConfig,
        drops: Counter[str],
        now: float,
        trailer_len: int = 0,
    ) -> None:
        self.role = role
        #: Bytes every frame of this session carries after its payload's layout: the tag of a
        #: sealed frame (PROTOCOL.md §Authentication), 0 without a LAN key. Frames that must
        #: fit the MTU (PROBE, chat fragments, FILE_* frames) leave room for it.
        self.trailer_len = trailer_len
        self.session_id = session_id
        self.local_mac = local_mac
        self.peer_mac = peer_mac
        self.node_id = node_id
        self.local_mtu = local_mtu
        self.config = config
        self._drops = drops
        self.state = SessionState.IDLE
        #: What the handshake settled; None until SYN_ACK was sent (responder) or received.
        self.params: SessionParams | None = None
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.stream = ControlStream(
            session_id=session_id,
            local_mac=local_mac,
            peer_mac=peer_mac,
            rtt=self.rtt,
            drops=drops,
            window=config.ctrl_window,
            give_up=config.ctrl_give_up,
        )
        self._out: list[Frame] = []
        self._events: deque[SessionEvent] = deque()
        self._last_rx = now
        self._last_tx = now
        #: KEEPALIVEs sent, and the highest counter seen in the peer's (PROTOCOL.md
        #: §KEEPALIVE): one that does not raise it is a repeat, which proves nothing alive.
        self._keepalives_sent = 0
        self._keepalive_seen = 0
        self._handshake_deadline = now + config.handshake_timeout
        # Initiator: the SYN and the PROBEs, each with when it was last sent.
        self._syn_sent_at = 0.0
        self._syn_sends = 0
        self._retransmit_at: float | None = None
        self._probe_sent_at: dict[int, float] = {}
        # Responder: the SYN_ACK, repeated for a repeated SYN.
        self._syn_ack: SynAck | None = None
        self._syn_ack_sent_at = 0.0
        self._syn_ack_sends = 0
        self._close_seq: int | None = None
        self._close_reason = 0
        self._close_text = ""
        self._linger_until: float | None = None

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def accept(
        cls,
        syn: Frame,
        params: SessionParams,
        *,
        local_mac: bytes,
        node_id: int,
        local_mtu: int,
        config: NodeConfig,
        drops: Counter[str],
        now: float,
        trailer_len: int = 0,
    ) -> Session:
        """A responder session for a SYN already checked by `negotiate()`; queues the SYN_ACK."""
        session = cls(
            role=Role.RESPONDER,
            session_id=syn.session,
            local_mac=local_mac,
            peer_mac=syn.src,
            node_id=node_id,
            local_mtu=local_mtu,
            config=config,
            drops=drops,
            now=now,
            trailer_len=trailer_len,
        )
        session._apply(SessionInput.RECV_SYN)
        session.params = params
        session._syn_ack = SynAck(
            node_id=node_id,
            ver_min=params.version,
            ver_max=params.version,
            mtu=params.mtu,
            window=params.local_window,
            features=int(params.features),
            digests=int(params.digest),
        )
        session._send_syn_ack(now)
        return session

    def open(self, now: float) -> None:
        """Start the handshake (initiator): send the SYN."""
        self._apply(SessionInput.OPEN)
        self._handshake_deadline = now + self.config.handshake_timeout
        self._send_syn(now)

    # --- helpers ---------------------------------------------------------------------------

    def _apply(self, event: SessionInput) -> SessionState:
        old = self.state
        self.state = transition(self.role, old, event)
        return old

    def _send(self, body: Body, now: float, seq: int = 0) -> None:
        self._out.append(Frame(self.peer_mac, self.local_mac, self.session_id, seq, body))
        self._last_tx = now

    def _send_syn(self, now: float) -> None:
        c = self.config
        self._send(
            Syn(
                node_id=self.node_id,
                ver_min=c.ver_min,
                ver_max=c.ver_max,
                mtu=self.local_mtu,
                window=c.window,
                features=int(c.features),
                digests=int(c.digests),
            ),
            now,
        )
        self._syn_sends += 1
        self._syn_sent_at = now
        self._retransmit_at = now + self.rtt.rto

    def _send_syn_ack(self, now: float) -> None:
        assert self._syn_ack is not None
        self._send(self._syn_ack, now)
        self._syn_ack_sends += 1
        self._syn_ack_sent_at = now

    def _send_probe(self, now: float) -> None:
        assert self.params is not None
        seq = len(self._probe_sent_at) + 1
        # PROTOCOL.md §PROBE: 24 + payload_len == the negotiated MTU, payload = u32 + filler
        # (+ the trailer of a sealed frame).
        filler = self.params.mtu - HDR_LEN - 4 - self.trailer_len
        self._send(Probe(size=self.params.mtu, filler_len=filler), now, seq=seq)
        self._probe_sent_at[seq] = now
        self._retransmit_at = now + max(self.rtt.rto, self.config.rto_initial)

    def _fail(self, event: SessionInput, error: ProtocolError, now: float, notify: bool) -> None:
        self._apply(event)
        self._retransmit_at = None
        if notify:
            # Best effort, once: the peer learns at once instead of after its own timeout.
            self._send(Error(code=int(error.code), text=wire_text(error.message)), now)
        self._events.append(SessionFailed(self.session_id, self.peer_mac, error))

    def _opened(self, now: float) -> None:
        assert self.params is not None
        self._retransmit_at = None
        self._last_rx = now
        self.stream.resume()
        self._events.append(
            SessionOpened(self.session_id, self.peer_mac, self.params, self.role is Role.INITIATOR)
        )

    def _closed(self, reason: int, text: str, by_peer: bool, now: float) -> None:
        self._linger_until = now + self.config.linger
        # Our frames still in flight cannot be delivered any more (the peer only re-acknowledges
        # now); the stream keeps answering the peer's retransmissions while lingering.
        self.stream.paused = True
        self._events.append(SessionClosed(self.session_id, self.peer_mac, reason, text, by_peer))

    # --- application -----------------------------------------------------------------------

    def send_control(self, body: Body, now: float, flags: int = 0) -> int:
        """Queue `body` on the control stream (sent once open); returns its sequence number.

        Raises LocalProtocolError when the session is closing or ended, or the frame would not
        fit the negotiated MTU.
        """
        self._apply(SessionInput.SEND)
        encoded = None
        if self.params is not None:
            # Encoded once: what checks the MTU is what goes out (and goes out again).
            encoded = encode_payload(body)
            if HDR_LEN + len(encoded) + self.trailer_len > self.params.mtu:
                raise LocalProtocolError(
                    f"{body.frame_type.name} frame exceeds the session MTU {self.params.mtu}"
                )
        return self.stream.send(body, flags, encoded)

    def close(self, now: float, reason: int = 0, text: str = "") -> None:
        """Close in order: CLOSE goes on the control stream after everything queued before it.

        During the handshake the session is abandoned at once. Closing an ended session does
        nothing. Raises LocalProtocolError for a text over 512 bytes.
        """
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise LocalProtocolError(f"close text is over {MAX_TEXT_BYTES} bytes")
        old = self._apply(SessionInput.CLOSE)
        if old in _ENDED or old is SessionState.CLOSING:
            return
        if self.state is SessionState.CLOSING:
            self._close_seq = self.stream.send(Close(reason=reason, text=text))
            self._close_reason, self._close_text = reason, text
        else:
            self._retransmit_at = None
            self._closed(reason, text, by_peer=False, now=now)

    def refuse(self, error: ProtocolError, now: float) -> None:
        """End the session because we refuse a control frame the peer sent (not yet taken).

        The peer gets a CTRL_ACK for what arrived before that frame, then an ERROR with
        `error.code`: since the refused frame is never acknowledged, the peer cannot take
        its message for delivered, whichever of the two frames is lost.
        """
        self._out.append(self.stream.ack_now())
        self._fail(SessionInput.REFUSE, error, now, notify=True)

    # --- frames ----------------------------------------------------------------------------

    def receive_frame(self, frame: Frame, now: float) -> None:
        """Take one frame the peer sent on this session (the node has matched MAC and id)."""
        event = _INPUT_OF_TYPE.get(frame.type)
        if event is None:
            raise RemoteProtocolError(
                f"{frame.type.name} does not belong to a session", code=ErrorCode.BAD_REQUEST
            )
        body = frame.body
        if isinstance(body, SynAck) and self.state is SessionState.SYN_SENT:
            try:
                params = check_syn_ack(body, self.config, self.local_mtu)
            except RemoteProtocolError as exc:
                self._fail(SessionInput.BAD_NEGOTIATION, exc, now, notify=True)
                return
            self._apply(event)
            self._last_rx = now
            self._on_syn_ack(params, now)
            return
        transition(self.role, self.state, event)  # raises before anything is touched
        self._validate(frame)
        old = self._apply(event)
        if self._dispatch(event, frame, old, now):
            self._last_rx = now
        self._pump(now)

    def _validate(self, frame: Frame) -> None:
        # Checks that must pass before the table may move, so a bad frame changes nothing.
        body = frame.body
        if isinstance(body, Probe) and self.params is not None:
            arrived = HDR_LEN + 4 + body.filler_len + self.trailer_len
            if self.state not in _ENDED:
                # PROTOCOL.md §PROBE: acknowledge the size that arrived, whatever it is.
                ack = ProbeAck(size=arrived)
                self._out.append(
                    Frame(self.peer_mac, self.local_mac, self.session_id, frame.seq, ack)
                )
            if arrived != self.params.mtu:
                raise RemoteProtocolError(
                    f"PROBE of {arrived} bytes, negotiated MTU is {self.params.mtu}",
                    code=ErrorCode.BAD_REQUEST,
                )
        elif isinstance(body, ProbeAck) and self.state is SessionState.PROBING:
            assert self.params is not None
            if frame.seq not in self._probe_sent_at or body.size != self.params.mtu:
                raise RemoteProtocolError(
                    f"PROBE_ACK #{frame.seq} for {body.size} bytes answers no probe of ours",
                    code=ErrorCode.BAD_REQUEST,
                )
        elif isinstance(body, Ack) and self.params is not None and body.mtu != self.params.mtu:
            raise RemoteProtocolError(
                f"ACK names MTU {body.mtu}, we chose {self.params.mtu}",
                code=ErrorCode.BAD_REQUEST,
            )

    def _dispatch(self, event: SessionInput, frame: Frame, old: SessionState, now: float) -> bool:
        """Act on a frame the table allowed; returns whether it shows the peer alive now.

        A frame that moves nothing (a KEEPALIVE not newer than the last, a handshake frame
        once open, a control frame or acknowledgement already taken) may be a recording
        replayed by someone else, even sealed with the session key: it does not put off the
        dead-peer timeout (`dead_after`). Neither does an unsealed DATA or FEEDBACK on a
        sealed session, which anyone can forge. A live peer sends a new KEEPALIVE every
        `keepalive_after` it has nothing else to send.
        """
        state = self.state
        if event is SessionInput.RECV_KEEPALIVE:
            if frame.seq <= self._keepalive_seen:
                self._drops["stale_keepalive"] += 1
                return False
            self._keepalive_seen = frame.seq
            return True
        if event is SessionInput.RECV_BULK:
            return self.trailer_len == 0
        if event in (SessionInput.RECV_CTRL, SessionInput.RECV_CTRL_ACK):
            return self._dispatch_stream(event, frame, state, now)
        if event is SessionInput.RECV_SYN:
            if old is SessionState.SYN_RCVD:
                self._send_syn_ack(now)
            else:
                self._drops["duplicate"] += 1
        elif event is SessionInput.RECV_SYN_ACK:
            if old is SessionState.PROBING:
                assert self.params is not None
                self._send(Ack(mtu=self.params.mtu), now)
            else:
                self._drops["duplicate"] += 1
        elif event is SessionInput.RECV_ACK:
            if old is SessionState.SYN_RCVD:
                self._sample_syn_ack(now)
        elif event is SessionInput.RECV_PROBE:
            if old in (SessionState.SYN_RCVD, SessionState.PROBE_WAIT):
                if old is SessionState.SYN_RCVD:
                    self._sample_syn_ack(now)
                self._opened(now)
        elif event is SessionInput.RECV_PROBE_ACK:
            if old is SessionState.PROBING:
                if len(self._probe_sent_at) == 1:  # Karn: only an unrepeated probe times RTT
                    self.rtt.sample(now - self._probe_sent_at[frame.seq])
                self._opened(now)
        elif event is SessionInput.RECV_ERROR:
            if old not in _ENDED:
                assert isinstance(frame.body, Error)
                self._on_error(frame.body, now)
            else:
                self._drops["late"] += 1
        return old not in _PAST_HANDSHAKE  # the handshake's frames show life only during it

    def _dispatch_stream(
        self, event: SessionInput, frame: Frame, state: SessionState, now: float
    ) -> bool:
        if state in (SessionState.OPEN, SessionState.CLOSING):
            return self.stream.receive_frame(frame, now)
        if state is SessionState.CLOSED and event is SessionInput.RECV_CTRL:
            self.stream.receive_frame(frame, now, accept_new=False)
        else:
            self._drops["early_control" if state is SessionState.PROBING else "late"] += 1
        return False

    def _sample_syn_ack(self, now: float) -> None:
        if self._syn_ack_sends == 1:
            self.rtt.sample(now - self._syn_ack_sent_at)

    def _on_syn_ack(self, params: SessionParams, now: float) -> None:
        self.params = params
        if self._syn_sends == 1:
            self.rtt.sample(now - self._syn_sent_at)
        self._send(Ack(mtu=params.mtu), now)
        self._send_probe(now)

    def _on_error(self, body: Error, now: float) -> None:
        # Code 0 is `ok`, which no ERROR can mean: say what arrived rather than "with ok".
        name = error_name(body.code) if body.code else "an ERROR of code 0 (no error code)"
        # The text is the peer's: repr() keeps terminal escapes in it from doing anything.
        detail = f" ({body.text!r})" if body.text else ""
        error = RemoteProtocolError(
            f"peer {format_mac(self.peer_mac)} ended session {self.session_id:#x} with "
            f"{name}{detail}",
            code=body.code,
        )
        self._retransmit_at = None
        self._events.append(SessionFailed(self.session_id, self.peer_mac, error))

    def _pump(self, now: float) -> None:
        # Move the stream's events up, acting on the ones that concern the session itself.
        while (ev := self.stream.next_event()) is not None:
            if isinstance(ev, StreamDelivered) and isinstance(ev.frame.body, Close):
                old = self._apply(SessionInput.PEER_CLOSED)
                if old not in _ENDED:
                    body = ev.frame.body
                    self._closed(body.reason, body.text, by_peer=True, now=now)
            elif isinstance(ev, StreamAcked) and ev.seq == self._close_seq:
                old = self._apply(SessionInput.CLOSE_ACKED)
                if old is SessionState.CLOSING:
                    self._closed(self._close_reason, self._close_text, by_peer=False, now=now)
            elif isinstance(ev, StreamGaveUp):
                if self.state not in _ENDED:
                    error = RemoteProtocolError(
                        f"peer {format_mac(self.peer_mac)} acknowledged nothing for "
                        f"{ev.waited:.1f} s",
                        code=ErrorCode.TIMEOUT,
                    )
                    self._fail(SessionInput.STREAM_GAVE_UP, error, now, notify=True)
            else:
                self._events.append(ev)

    # --- output, timers, events ------------------------------------------------------------

    def frames_to_send(self, now: float) -> list[Frame]:
        """Frames to put on the wire now, in order."""
        out, self._out = self._out, []
        if self.state is SessionState.FAILED:
            return out
        stream_frames = self.stream.frames_to_send(now)
        if stream_frames:
            self._last_tx = now
            out.extend(stream_frames)
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run, or None."""
        state = self.state
        if state is SessionState.FAILED:
            return None
        if state is SessionState.CLOSED:
            return self._linger_until
        deadlines: list[float] = []
        if self._retransmit_at is not None:
            deadlines.append(self._retransmit_at)
        if state in _HANDSHAKE_STATES:
            deadlines.append(self._handshake_deadline)
        if state in (SessionState.OPEN, SessionState.CLOSING):
            deadlines.append(self._last_tx + self.config.keepalive_after)
            deadlines.append(self._last_rx + self.config.dead_after)
            stream = self.stream.next_timer()
            if stream is not None:
                deadlines.append(stream)
        return min(deadlines) if deadlines else None

    @property
    def finished(self) -> bool:
        """True once the node can forget this session (failed, or closed and lingered)."""
        return self.state is SessionState.FAILED or (
            self.state is SessionState.CLOSED and self._linger_until is None
        )

    def handle_timer(self, now: float) -> None:
        """Retransmit, probe, keep alive, detect a dead peer, or end the linger, as due."""
        state = self.state
        if state is SessionState.CLOSED:
            if self._linger_until is not None and now >= self._linger_until:
                self._linger_until = None
            return
        if state in _HANDSHAKE_STATES and now >= self._handshake_deadline:
            who = format_mac(self.peer_mac)
            error = RemoteProtocolError(
                f"no answer from {who} to open a session within "
                f"{self.config.handshake_timeout:.0f} s",
                code=ErrorCode.TIMEOUT,
            )
            self._fail(SessionInput.HANDSHAKE_TIMEOUT, error, now, notify=False)
            return
        if self._retransmit_at is not None and now >= self._retransmit_at:
            if state is SessionState.SYN_SENT:
                self.rtt.back_off()
                self._send_syn(now)
            elif state is SessionState.PROBING:
                self._on_probe_timeout(now)
        if state in (SessionState.OPEN, SessionState.CLOSING):
            if now >= self._last_rx + self.config.dead_after:
                error = RemoteProtocolError(
                    f"peer {format_mac(self.peer_mac)} sent nothing for "
                    f"{now - self._last_rx:.1f} s: it is down, unplugged or no longer running "
                    "l2fast",
                    code=ErrorCode.TIMEOUT,
                )
                self._fail(SessionInput.PEER_DEAD, error, now, notify=True)
                return
            self.stream.handle_timer(now)
            self._pump(now)
            if self.state in (SessionState.OPEN, SessionState.CLOSING) and (
                now >= self._last_tx + self.config.keepalive_after
            ):
                self._keepalives_sent += 1
                self._send(Keepalive(), now, seq=self._keepalives_sent)

    def _on_probe_timeout(self, now: float) -> None:
        assert self.params is not None
        if len(self._probe_sent_at) >= self.config.max_probes:
            error = LocalProtocolError(
                f"none of {self.config.max_probes} probes of {self.params.mtu} bytes to "
                f"{format_mac(self.peer_mac)} was answered: the path drops frames that large "
                "(check every MTU on the way) or the peer went away",
                code=ErrorCode.MTU_PROBE_FAILED,
            )
            self._fail(SessionInput.PROBES_EXHAUSTED, error, now, notify=True)
            return
        self.rtt.back_off()
        self._send_probe(now)

    def next_event(self) -> SessionEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def info(self) -> SessionInfo:
        """A snapshot for status displays."""
        return SessionInfo(
            self.session_id,
            self.peer_mac,
            self.role,
            self.state,
            self.params,
            self.rtt.srtt,
            self.stream.unacked,
        )
