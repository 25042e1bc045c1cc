"""Every event the node's state machines hand out, as frozen dataclasses (STYLE.md §2).

The first section is what `NodeEngine.next_event()` gives the application (the daemon, the
CLI). The last section holds the events a `ControlStream` gives the session that owns it; they
never reach the application.

MACs are 6 raw bytes; times are the caller's monotonic clock in float seconds (the same `now`
the caller passes in), so an adapter that wants wall-clock time converts once, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from l2fast.errors import ProtocolError
from l2fast.wire.constants import Digest, Features
from l2fast.wire.frames import Body, Frame

__all__ = [
    "ChatDelivered",
    "ChatFailed",
    "ChatReceived",
    "ControlReceived",
    "Event",
    "PeerDiscovered",
    "PeerExpired",
    "PeerInfo",
    "PeerUpdated",
    "PingLost",
    "PingReply",
    "SessionClosed",
    "SessionFailed",
    "SessionOpened",
    "SessionParams",
    "StreamAcked",
    "StreamDelivered",
    "StreamEvent",
    "StreamGaveUp",
]


# --- discovery -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one neighbour table entry (PROTOCOL.md §HELLO, §HELLO_ACK)."""

    #: The peer's MAC, as the source of its HELLO / HELLO_ACK (a hint, not an identity).
    mac: bytes
    #: The name it announces (1..64 bytes of UTF-8 on the wire).
    name: str
    #: The random id it chose at start; changes when the peer restarts.
    node_id: int
    #: Its interface MTU.
    mtu: int
    #: Its capability bits (`l2fast.wire.constants.Caps`).
    caps: int
    #: When it was first heard of, and last heard from.
    first_seen: float
    last_seen: float
    #: Last round-trip time measured by a HELLO / HELLO_ACK exchange, in seconds; None before
    #: the first HELLO_ACK from it arrived.
    rtt: float | None


@dataclass(frozen=True, slots=True)
class PeerDiscovered:
    """A MAC we had no entry for sent a HELLO or HELLO_ACK."""

    #: The new entry.
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class PeerUpdated:
    """A known peer announced a different name, node id, MTU or capabilities."""

    #: The entry after the change.
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class PeerExpired:
    """A peer was not heard from for `NodeConfig.expire_intervals` HELLO intervals."""

    #: The entry as it was last seen.
    peer: PeerInfo


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionParams:
    """What a handshake settled (PROTOCOL.md §SYN, SYN_ACK)."""

    #: Protocol version both ends speak on this session.
    version: int
    #: Negotiated MTU (the smaller of both), confirmed by a full-size PROBE.
    mtu: int
    #: Receive credit, in frames, that we offered and that the peer offered.
    local_window: int
    peer_window: int
    #: Feature bits both ends offered.
    features: Features
    #: True when DATA may be zlib-compressed (the ZLIB feature was negotiated).
    compression: bool
    #: The one digest algorithm chosen for file checks.
    digest: Digest


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A session finished its handshake and MTU probe; chat and control frames can flow."""

    #: Session id (the header's `session`).
    session: int
    #: The peer's MAC.
    peer: bytes
    #: What the handshake settled.
    params: SessionParams
    #: True when this node sent the SYN.
    initiator: bool


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """A session ended in order: a CLOSE was sent and acknowledged, or one was received."""

    session: int
    peer: bytes
    #: CLOSE `reason`: 0 for a normal close, otherwise an `ErrorCode`.
    reason: int
    #: CLOSE `text` (untrusted when `by_peer`).
    text: str
    #: True when the peer closed it, False when we did.
    by_peer: bool


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """A session ended abnormally: handshake timeout, refused, MTU probe failed, peer dead...

    Nothing more will be delivered or acknowledged on it.
    """

    session: int
    peer: bytes
    #: What went wrong, with the wire error code in `error.code` (`ErrorCode`). A
    #: RemoteProtocolError when the peer refused or broke the protocol or went silent, a
    #: LocalProtocolError when this node gave up on its own rules.
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class ControlReceived:
    """A control-stream frame other than CHAT or CLOSE (FILE_*) arrived, in order, once."""

    session: int
    peer: bytes
    #: The frame's payload.
    body: Body


# --- chat ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatReceived:
    """A whole chat message arrived: exactly once and in order per sender (PROTOCOL.md §CHAT)."""

    #: Sender's MAC.
    peer: bytes
    #: Sender's name from the neighbour table, or "" when it is not (yet) in it.
    name: str
    #: The sender's message counter.
    msg_id: int
    #: The message bytes as sent: valid UTF-8 (the inbox drops any other message as
    #: `bad_payload`); a display must still escape control characters.
    text: bytes
    #: True when the sender addressed it to every peer.
    to_all: bool
    #: When the last fragment arrived (the caller's monotonic clock).
    time: float
    #: Session it came on.
    session: int


@dataclass(frozen=True, slots=True)
class ChatDelivered:
    """Every fragment of one of our messages was acknowledged by the peer."""

    msg_id: int
    peer: bytes


@dataclass(frozen=True, slots=True)
class ChatFailed:
    """One of our messages will not be delivered: its session failed or closed first."""

    msg_id: int
    peer: bytes
    #: Why (from the session's failure), with the wire error code in `error.code`.
    error: ProtocolError


# --- ping ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingReply:
    """A PONG answered one of our PINGs."""

    peer: bytes
    #: The PING's sequence number.
    seq: int
    #: Round-trip time in nanoseconds, measured on our own clock.
    rtt_ns: int
    #: PING payload bytes (as `l2fast ping -s` counts them).
    size: int
    #: True when this PING had already been answered (ping(8)'s "DUP!"); not in the stats.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class PingLost:
    """No PONG came back for a PING within `NodeConfig.ping_timeout`."""

    peer: bytes
    seq: int


#: Everything `NodeEngine.next_event()` can return.
Event: TypeAlias = (
    PeerDiscovered
    | PeerUpdated
    | PeerExpired
    | SessionOpened
    | SessionClosed
    | SessionFailed
    | ControlReceived
    | ChatReceived
    | ChatDelivered
    | ChatFailed
    | PingReply
    | PingLost
)


# --- control stream (internal to a session) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamDelivered:
    """The next control frame from the peer, in sequence order, handed over exactly once."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class StreamAcked:
    """The peer acknowledged one of our control frames."""

    #: Its control-stream sequence number.
    seq: int


@dataclass(frozen=True, slots=True)
class StreamGaveUp:
    """A control frame stayed unacknowledged for `NodeConfig.ctrl_give_up`; the stream stops."""

    seq: int
    #: Seconds since it was first sent.
    waited: float


#: What `ControlStream.next_event()` can return.
StreamEvent: TypeAlias = StreamDelivered | StreamAcked | StreamGaveUp
