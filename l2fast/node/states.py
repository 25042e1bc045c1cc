"""The session state machine: every (state, input) -> state transition, in one table.

Everything that changes `Session.state` lives here (the h11 `_state.py` approach, STYLE.md §3);
`l2fast.node.session` only decides which input a frame or a timer is and performs the actions
that go with it. A pair that is not in the table is a protocol error: LocalProtocolError when
this node asked for it (an application call, or a timer of ours), RemoteProtocolError when a
received frame did (the node counts those as drops and carries on).

Handshake (PROTOCOL.md §SYN .. §PROBE): the initiator goes IDLE -> SYN_SENT -> PROBING -> OPEN,
the responder IDLE -> SYN_RCVD (-> PROBE_WAIT) -> OPEN. The responder opens on the first
full-size PROBE, which also stands in for a lost ACK. Both close through CLOSING (our CLOSE in
flight) or straight to CLOSED (the peer's CLOSE delivered); every failure ends in FAILED.
`diagram()` renders the table for the docs.
"""

from __future__ import annotations

from collections.abc import Mapping

from l2fast.enums import StateEnum
from l2fast.errors import LocalProtocolError, RemoteProtocolError
from l2fast.wire.constants import ErrorCode

__all__ = [
    "LOCAL_INPUTS",
    "TRANSITIONS",
    "Role",
    "SessionInput",
    "SessionState",
    "diagram",
    "transition",
]


class Role(StateEnum):
    """Which end of the handshake this node is."""

    INITIATOR = "initiator"  #: sent the SYN
    RESPONDER = "responder"  #: answered it


class SessionState(StateEnum):
    """Where a session is in its life."""

    IDLE = "idle"  #: created, nothing sent yet
    SYN_SENT = "syn_sent"  #: initiator: SYN out, waiting for SYN_ACK
    SYN_RCVD = "syn_rcvd"  #: responder: SYN_ACK out, waiting for ACK or PROBE
    PROBE_WAIT = "probe_wait"  #: responder: ACK in, waiting for a full-size PROBE
    PROBING = "probing"  #: initiator: ACK and PROBE out, waiting for PROBE_ACK
    OPEN = "open"  #: handshake done, MTU confirmed
    CLOSING = "closing"  #: our CLOSE is on the control stream, not yet acknowledged
    CLOSED = "closed"  #: ended in order; lingers to re-acknowledge a retransmitted CLOSE
    FAILED = "failed"  #: ended abnormally; nothing more is sent or delivered


class SessionInput(StateEnum):
    """Everything that can happen to a session."""

    # Asked by the application.
    OPEN = "open"
    SEND = "send"  #: queue a control-stream frame (chat, file offer...)
    CLOSE = "close"
    # A frame arrived from the peer on this session.
    RECV_SYN = "recv_syn"
    RECV_SYN_ACK = "recv_syn_ack"
    RECV_ACK = "recv_ack"
    RECV_PROBE = "recv_probe"
    RECV_PROBE_ACK = "recv_probe_ack"
    RECV_CTRL = "recv_ctrl"  #: CHAT, CLOSE or FILE_* (a control-stream frame)
    RECV_CTRL_ACK = "recv_ctrl_ack"
    RECV_KEEPALIVE = "recv_keepalive"
    RECV_BULK = "recv_bulk"  #: DATA or FEEDBACK (liveness only: the data path is elsewhere)
    RECV_ERROR = "recv_error"
    # Derived from frames or timers.
    BAD_NEGOTIATION = "bad_negotiation"  #: the SYN_ACK's choices are unacceptable
    PEER_CLOSED = "peer_closed"  #: the peer's CLOSE was delivered in order
    CLOSE_ACKED = "close_acked"  #: the peer acknowledged our CLOSE
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    PROBES_EXHAUSTED = "probes_exhausted"  #: PROTOCOL.md §PROBE: three unanswered probes
    PEER_DEAD = "peer_dead"  #: nothing from the peer for `dead_after`
    STREAM_GAVE_UP = "stream_gave_up"  #: a control frame was never acknowledged
    REFUSE = "refuse"  #: we refuse what the peer sent on the stream (a chat over our cap)


#: Inputs this node originates; an invalid one is our misuse (LocalProtocolError).
LOCAL_INPUTS = frozenset(
    {
        SessionInput.OPEN,
        SessionInput.SEND,
        SessionInput.CLOSE,
        SessionInput.BAD_NEGOTIATION,
        SessionInput.CLOSE_ACKED,
        SessionInput.HANDSHAKE_TIMEOUT,
        SessionInput.PROBES_EXHAUSTED,
        SessionInput.PEER_DEAD,
        SessionInput.STREAM_GAVE_UP,
        SessionInput.REFUSE,
    }
)

S = SessionState
I = SessionInput  # noqa: E741 - a one-letter alias keeps the table below readable

# Frames the peer may legitimately send in each role: an initiator only ever receives what a
# responder sends, and the other way round.
_FROM_RESPONDER = (I.RECV_SYN_ACK, I.RECV_PROBE_ACK)
_FROM_INITIATOR = (I.RECV_SYN, I.RECV_ACK, I.RECV_PROBE)
_STREAM = (I.RECV_CTRL, I.RECV_CTRL_ACK, I.RECV_KEEPALIVE, I.RECV_BULK)

# What every live state after the handshake shares: failures and the peer's close.
_LIVE_ENDINGS: dict[SessionInput, SessionState] = {
    I.RECV_ERROR: S.FAILED,
    I.PEER_CLOSED: S.CLOSED,
    I.PEER_DEAD: S.FAILED,
    I.STREAM_GAVE_UP: S.FAILED,
    I.REFUSE: S.FAILED,
}


def _absorbing(
    state: SessionState, peer_frames: tuple[SessionInput, ...]
) -> dict[SessionInput, SessionState]:
    # An ended session swallows late frames (a retransmitted CLOSE must still be acknowledged)
    # and repeated close requests; sending on it is still an error.
    table = dict.fromkeys((*peer_frames, *_STREAM, I.RECV_ERROR, I.CLOSE), state)
    table[I.PEER_CLOSED] = state
    table[I.CLOSE_ACKED] = state
    return table


_INITIATOR: dict[SessionState, dict[SessionInput, SessionState]] = {
    S.IDLE: {I.OPEN: S.SYN_SENT, I.SEND: S.IDLE, I.CLOSE: S.CLOSED},
    S.SYN_SENT: {
        I.RECV_SYN_ACK: S.PROBING,
        I.BAD_NEGOTIATION: S.FAILED,
        I.RECV_ERROR: S.FAILED,
        I.HANDSHAKE_TIMEOUT: S.FAILED,
        I.SEND: S.SYN_SENT,
        I.CLOSE: S.CLOSED,
    },
    S.PROBING: {
        I.RECV_SYN_ACK: S.PROBING,  # duplicate: our ACK may have been lost, send it again
        I.RECV_PROBE_ACK: S.OPEN,
        # The responder opened on our PROBE and may already talk while its PROBE_ACK is lost;
        # its control frames are dropped unacknowledged here and retransmitted later.
        I.RECV_CTRL: S.PROBING,
        I.RECV_KEEPALIVE: S.PROBING,
        I.RECV_ERROR: S.FAILED,
        I.PROBES_EXHAUSTED: S.FAILED,
        I.SEND: S.PROBING,
        I.CLOSE: S.CLOSED,
    },
    S.OPEN: {
        **dict.fromkeys((*_FROM_RESPONDER, *_STREAM, I.SEND), S.OPEN),
        **_LIVE_ENDINGS,
        I.CLOSE: S.CLOSING,
    },
    S.CLOSING: {
        **dict.fromkeys((*_FROM_RESPONDER, *_STREAM, I.CLOSE), S.CLOSING),
        **_LIVE_ENDINGS,
        I.CLOSE_ACKED: S.CLOSED,
    },
    S.CLOSED: _absorbing(S.CLOSED, _FROM_RESPONDER),
    S.FAILED: _absorbing(S.FAILED, _FROM_RESPONDER),
    # The responder's handshake states: an initiator is never in them.
    S.SYN_RCVD: {},
    S.PROBE_WAIT: {},
}

_RESPONDER: dict[SessionState, dict[SessionInput, SessionState]] = {
    S.IDLE: {I.RECV_SYN: S.SYN_RCVD},
    S.SYN_RCVD: {
        I.RECV_SYN: S.SYN_RCVD,  # duplicate: our SYN_ACK may have been lost, send it again
        I.RECV_ACK: S.PROBE_WAIT,
        I.RECV_PROBE: S.OPEN,  # the ACK was lost; a full-size PROBE proves the rest
        I.RECV_ERROR: S.FAILED,
        I.HANDSHAKE_TIMEOUT: S.FAILED,
        I.SEND: S.SYN_RCVD,
        I.CLOSE: S.CLOSED,
    },
    S.PROBE_WAIT: {
        I.RECV_SYN: S.PROBE_WAIT,
        I.RECV_ACK: S.PROBE_WAIT,
        I.RECV_PROBE: S.OPEN,
        I.RECV_ERROR: S.FAILED,
        I.HANDSHAKE_TIMEOUT: S.FAILED,
        I.SEND: S.PROBE_WAIT,
        I.CLOSE: S.CLOSED,
    },
    S.OPEN: {
        # A repeated PROBE means our PROBE_ACK was lost: answer it again.
        **dict.fromkeys((*_FROM_INITIATOR, *_STREAM, I.SEND), S.OPEN),
        **_LIVE_ENDINGS,
        I.CLOSE: S.CLOSING,
    },
    S.CLOSING: {
        **dict.fromkeys((*_FROM_INITIATOR, *_STREAM, I.CLOSE), S.CLOSING),
        **_LIVE_ENDINGS,
        I.CLOSE_ACKED: S.CLOSED,
    },
    S.CLOSED: _absorbing(S.CLOSED, _FROM_INITIATOR),
    S.FAILED: _absorbing(S.FAILED, _FROM_INITIATOR),
    # The initiator's handshake states: a responder is never in them.
    S.SYN_SENT: {},
    S.PROBING: {},
}

#: role -> state -> input -> next state. Anything missing is a protocol error.
TRANSITIONS: Mapping[Role, Mapping[SessionState, Mapping[SessionInput, SessionState]]] = {
    Role.INITIATOR: _INITIATOR,
    Role.RESPONDER: _RESPONDER,
}


def transition(role: Role, state: SessionState, event: SessionInput) -> SessionState:
    """The state after `event` happens in `state`, or a protocol error if it may not happen.

    Raises LocalProtocolError for our own inputs (application calls, timers) and
    RemoteProtocolError (code bad_request) for a frame the peer should not have sent.
    """
    nxt = TRANSITIONS[role][state].get(event)
    if nxt is not None:
        return nxt
    what = f"{event.value} in state {state.value} ({role.value})"
    if event in LOCAL_INPUTS:
        raise LocalProtocolError(f"cannot {what}", code=ErrorCode.BAD_REQUEST)
    raise RemoteProtocolError(f"unexpected {what}", code=ErrorCode.BAD_REQUEST)


def diagram(role: Role) -> str:
    """The table for `role` as a Mermaid state diagram (self-loops left out), for the docs."""
    lines = ["stateDiagram-v2"]
    for state, moves in TRANSITIONS[role].items():
        targets: dict[SessionState, list[str]] = {}
        for event, nxt in moves.items():
            if nxt is not state:
                targets.setdefault(nxt, []).append(event.value)
        for nxt, events in targets.items():
            lines.append(f"    {state.name} --> {nxt.name}: {', '.join(events)}")
    return "\n".join(lines)
