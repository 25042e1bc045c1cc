"""`NodeEngine`: one l2fast node's protocol core, sans-IO (STYLE.md §1).

It combines discovery, any number of sessions (to different peers, keyed by peer MAC and
session id), chat over them and ping, behind the same interface as its parts:

- frames in: `receive_frame(frame, now)`; application calls: `start`, `discover`,
  `open_session`, `send_chat`, `send_chat_all`, `ping`, `close`, `close_all`;
- out: `frames_to_send(now)`, `next_timer()`, `handle_timer(now)`, `next_event()`.

Frames that are bad, unexpected, unsolicited or over a rate limit are dropped and counted in
`drops` by reason (STYLE.md §11); `receive_frame` never raises for anything a peer sends. The
daemon and the one-shot CLI commands are adapters: decode what the raw socket gives, call
`receive_frame`, send what `frames_to_send` returns, sleep until `next_timer()`.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from dataclasses import dataclass

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.node.auth import LanKey
from l2fast.node.chat import ChatInbox, ChatOutbox, to_bytes
from l2fast.node.config import NodeConfig
from l2fast.node.discovery import Discovery
from l2fast.node.events import (
    ChatReceived,
    ControlReceived,
    Event,
    PeerInfo,
    SessionClosed,
    SessionFailed,
    SessionOpened,
    StreamAcked,
    StreamDelivered,
)
from l2fast.node.negotiation import negotiate
from l2fast.node.ping import Pinger
from l2fast.node.pingstats import PingStats
from l2fast.node.ratelimit import ReplyLimiter
from l2fast.node.session import Session, SessionInfo, format_mac, wire_text
from l2fast.node.states import Role, SessionState
from l2fast.wire.auth import NONCE_LEN, NONCE_TYPES, TAG_LEN, UNSEALED_TYPES, TagKey
from l2fast.wire.constants import (
    BROADCAST_MAC,
    MAX_MTU,
    MAX_NAME_BYTES,
    MIN_MTU,
    PING_HEADER,
    Caps,
    ErrorCode,
    FrameType,
)
from l2fast.wire.frames import Body, Chat, Error, Frame, Syn

__all__ = ["NodeEngine"]

_SessionKey = tuple[bytes, int]  # (peer MAC, session id)
_LIVE = frozenset(
    {
        SessionState.SYN_SENT,
        SessionState.SYN_RCVD,
        SessionState.PROBE_WAIT,
        SessionState.PROBING,
        SessionState.OPEN,
    }
)
_DISCOVERY_TYPES = frozenset({FrameType.HELLO, FrameType.HELLO_ACK})
_PING_TYPES = frozenset({FrameType.PING, FrameType.PONG})
# Sealed with the group key whatever their session field says (PROTOCOL.md §Authentication).
_GROUP_SEALED = frozenset({FrameType.HELLO, FrameType.HELLO_ACK, FrameType.SYN})
# Peers whose last refused frame is remembered (`NodeEngine._auth_refused`), at most.
_AUTH_REFUSED_MACS = 256
# What a session that failed after its peer's frames were refused by the key check adds;
# each names KEY_MISMATCH_MARK.
_AUTH_REASONS = {
    "unauthenticated": "its frames were not sealed: it runs without a LAN key (start it with "
    "the same --key as this node)",
    "needs_key": "its frames were sealed with a LAN key and this node has none (l2fast daemon "
    "--key FILE; L2FAST_KEY_FILE for a command that runs without a daemon)",
    "bad_auth": "its frames were sealed with another LAN key (compare the key ids `l2fast "
    "status` shows on both hosts)",
}


# Nodes named in `unheard_text` for each reason, at most.
_UNHEARD_SHOWN = 4


def unheard_text(refusals: dict[bytes, str]) -> str | None:
    """What `NodeEngine.key_refusals` found, for a user who expected an answer, or None."""
    by_reason: dict[str, list[str]] = {}
    for mac, reason in sorted(refusals.items()):
        by_reason.setdefault(reason, []).append(mac.hex(":"))
    parts = []
    for reason, macs in by_reason.items():
        if len(macs) == 1:
            parts.append(f"{macs[0]} was not heard: {_AUTH_REASONS[reason]}")
            continue
        named = ", ".join(macs[:_UNHEARD_SHOWN])
        if len(macs) > _UNHEARD_SHOWN:
            named += f" and {len(macs) - _UNHEARD_SHOWN} more"
        parts.append(
            f"{len(macs)} nodes were not heard ({named}): for each, {_AUTH_REASONS[reason]}"
        )
    return "; ".join(parts) or None


@dataclass(slots=True)
class _Slot:
    session: Session
    outbox: ChatOutbox
    inbox: ChatInbox
    #: A close asked for while the handshake ran with chat waiting: (reason, text), done
    #: right after the chat is queued on the opened session.
    close_when_open: tuple[int, str] | None = None
    #: The session carries a transfer: a FILE_* frame went or came on its control stream.
    bulk: bool = False
    #: With a LAN key: our handshake nonce, the peer's, and the session key once both are
    #: known (PROTOCOL.md §Authentication). Empty and None without a key.
    nonce: bytes = b""
    peer_nonce: bytes = b""
    session_key: TagKey | None = None
    #: SessionOpened was reported: a later failure is not the handshake's.
    opened: bool = False
    #: When the session was created: only a key refusal since then can explain its handshake.
    started: float = 0.0


def _check_unicast(mac: bytes, what: str) -> None:
    if len(mac) != 6 or mac[0] & 1:
        raise LocalProtocolError(f"{what} {mac.hex(':')} is not a unicast MAC address")


def _check_mtu(mtu: int) -> None:
    if not MIN_MTU <= mtu <= MAX_MTU:
        error = LocalProtocolError(f"MTU {mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if mtu > MAX_MTU:  # loopback's 65536: l2fast needs an Ethernet interface
            error.hint = "is this the loopback interface? choose an Ethernet interface"
        raise error


class NodeEngine:
    """One node on one interface: discovery, sessions, chat and ping, without any I/O.

    `rng` is the only source of randomness (node id, session ids, HELLO jitter, ping ident),
    so a seeded `random.Random` makes a whole run reproducible; with a LAN key (`key`), so
    does that key's nonce source.

    With `key`, every frame out is sealed and every frame in must be, with the right key
    (PROTOCOL.md §Authentication); without one, sealed frames are refused (`needs_key`),
    since this node cannot tell a forged one from a true one.
    """

    def __init__(
        self,
        mac: bytes,
        name: str,
        mtu: int,
        *,
        rng: random.Random,
        config: NodeConfig | None = None,
        caps: int = Caps.CHAT | Caps.ZLIB,
        key: LanKey | None = None,
    ) -> None:
        _check_unicast(mac, "node MAC")
        if not 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES:
            raise LocalProtocolError(f"node name {name!r} must be 1..{MAX_NAME_BYTES} bytes")
        _check_mtu(mtu)
        self.mac = bytes(mac)
        self.name = name
        self.mtu = mtu
        self.config = config or NodeConfig()
        self._rng = rng
        #: The LAN key, or None: this node then neither seals nor accepts sealed frames.
        self.key = key
        #: Bytes a sealed frame carries after its layout (0 without a key): control frames
        #: that fill the MTU leave room for them.
        self.trailer_len = TAG_LEN if key is not None else 0
        #: Why the key check refused the last frame it saw from a MAC, and when, until one
        #: from it passes: a handshake with that peer that then fails says so if the refusal
        #: came during it (`_AUTH_REASONS`). Oldest forgotten first.
        self._auth_refused: dict[bytes, tuple[str, float]] = {}
        #: This node's own link, as the adapter reports it (`link_down`, `link_up`): what it
        #: said when the link was last lost, and when the link came back (None while it is
        #: still lost); None if it never was. A session that times out while, or shortly
        #: after, the link was lost says so instead of only blaming its peer.
        self._link_outage: tuple[str, float | None] | None = None
        #: Random id announced in HELLO and SYN; never 0.
        self.node_id = rng.getrandbits(64) or 1
        #: Frames dropped, by reason (`l2fast status`). The adapter adds its decoding drops
        #: (bad_crc, bad_length, ...) with `note_drop`.
        self.drops: Counter[str] = Counter()
        #: Frames handed in (`frames_in`) and out (`frames_out`).
        self.counters: Counter[str] = Counter()
        self.discovery = Discovery(
            local_mac=self.mac,
            node_id=self.node_id,
            name=name,
            mtu=mtu,
            caps=int(caps),
            rng=rng,
            config=self.config,
            drops=self.drops,
        )
        self.pinger = Pinger(self.mac, rng, self.config, self.drops)
        c = self.config
        self._accept_limiter = ReplyLimiter(
            rate_per_peer=c.accept_rate_per_peer,
            burst_per_peer=c.accept_burst_per_peer,
            rate_global=c.accept_rate_global,
            burst_global=c.accept_burst_global,
        )
        self._slots: dict[_SessionKey, _Slot] = {}
        #: With a key: nonces of SYNs that opened a session, oldest first (`syn_nonce_memory`).
        self._syn_nonces_used: dict[bytes, None] = {}
        self._chat_slot_of: dict[bytes, _SessionKey] = {}  # the session our chat to a peer uses
        self._next_msg_id = 1
        self._out: list[Frame] = []
        self._events: deque[Event] = deque()
        self._bulk_version = 0

    # --- inspection ------------------------------------------------------------------------

    def peers(self) -> list[PeerInfo]:
        """The neighbour table, as snapshots."""
        return list(self.discovery.table)

    def link_down(self, what: str) -> None:
        """The adapter saw this node's interface lose its link (down, or no carrier); `what`
        says so for the user ("interface eth0 lost its link (down, or no carrier)"), and is
        added to the error of a session that times out for it. Nothing passes meanwhile."""
        self._link_outage = (what, None)

    def link_up(self, now: float) -> None:
        """The interface has its link back: sessions recover by their own retransmissions."""
        if self._link_outage is not None and self._link_outage[1] is None:
            self._link_outage = (self._link_outage[0], now)

    @property
    def link_lost(self) -> bool:
        """Whether the adapter said the link is lost and not yet that it is back."""
        return self._link_outage is not None and self._link_outage[1] is None

    def _link_was_lost(self, now: float) -> str | None:
        """What the adapter said of the link if it is lost, or came back so recently that a
        session timing out now may have lost its frames to it; else None."""
        if self._link_outage is None:
            return None
        what, back_at = self._link_outage
        c = self.config
        recent = max(c.dead_after, c.handshake_timeout, c.ctrl_give_up)
        return what if back_at is None or now - back_at <= recent else None

    def key_refusals(self, now: float) -> dict[bytes, str]:
        """The MACs whose frames the key check refused lately, with none passing since, and
        why (`bad_auth`, `unauthenticated`, `needs_key`): nodes that are there but not heard,
        which `discover`, `peers` and name lookups report instead of "nobody". Lately is as
        long as the neighbour table keeps a node it hears: a node with the wrong key is
        refused its periodic HELLOs, and refuses our discovery, so it may not answer within
        a discovery's wait."""
        since = now - self.discovery.table.expire_after
        return {mac: reason for mac, (reason, at) in self._auth_refused.items() if at >= since}

    def sessions(self) -> list[SessionInfo]:
        """Every session held, as snapshots."""
        return [slot.session.info() for slot in self._slots.values()]

    def ping_stats(self, peer: bytes) -> PingStats:
        """ping(8)'s summary for `peer`."""
        return self.pinger.stats(peer)

    @property
    def bulk_version(self) -> int:
        """Changes whenever `bulk_sessions()` does (a cheap test for adapters that poll it)."""
        return self._bulk_version

    def bulk_sessions(self) -> frozenset[int]:
        """Ids of the sessions held that carry a transfer, whose DATA and FEEDBACK the data
        path takes (the adapter's kernel filter keeps them away from the controller).

        A session joins when the first FILE_* frame is sent or delivered on its control
        stream, which is before any DATA or FEEDBACK of its transfer can exist (DATA follows
        FILE_ACCEPT, which answers FILE_OFFER); it leaves when the session is forgotten.
        """
        return frozenset(sid for (_, sid), slot in self._slots.items() if slot.bulk)

    def _mark_bulk(self, slot: _Slot) -> None:
        if not slot.bulk:
            slot.bulk = True
            self._bulk_version += 1

    def note_drop(self, reason: str) -> None:
        """Count a frame the adapter dropped before decoding (PROTOCOL.md §Receiving reasons)."""
        self.drops[reason] += 1

    # --- application -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Announce this node (HELLO with REPLY) and start the periodic HELLOs."""
        self.discovery.start(now)

    def discover(self, now: float) -> None:
        """Ask every node on the LAN to answer now; answers arrive as PeerDiscovered/Updated."""
        self.discovery.discover(now)

    def set_mtu(self, mtu: int, now: float) -> None:
        """The interface's MTU changed: sessions opened from now on negotiate `mtu`, and the
        LAN hears it at once (a HELLO). Sessions already open keep theirs. Raises
        LocalProtocolError outside MIN_MTU..MAX_MTU."""
        _check_mtu(mtu)
        if mtu == self.mtu:
            return
        self.mtu = mtu
        self.discovery.mtu = mtu
        self.discovery.announce(now)

    def open_session(self, peer: bytes, now: float) -> int:
        """Start a handshake with `peer`; returns the new session id.

        SessionOpened or SessionFailed follows. Raises LocalProtocolError for a bad MAC or when
        `max_sessions` are held.
        """
        _check_unicast(peer, "peer")
        if peer == self.mac:
            raise LocalProtocolError("cannot open a session with this node itself")
        if len(self._slots) >= self.config.max_sessions:
            raise LocalProtocolError(
                f"{len(self._slots)} sessions open, the limit is {self.config.max_sessions}",
                code=ErrorCode.BUSY,
            )
        session_id = 0
        while session_id == 0 or (peer, session_id) in self._slots:
            session_id = self._rng.getrandbits(32)
        session = Session(
            role=Role.INITIATOR,
            session_id=session_id,
            local_mac=self.mac,
            peer_mac=peer,
            node_id=self.node_id,
            local_mtu=self.mtu,
            config=self.config,
            drops=self.drops,
            now=now,
            trailer_len=self.trailer_len,
        )
        session.open(now)
        slot = self._slot(session, now)
        if self.key is not None:
            slot.nonce = self.key.nonce()
        self._slots[(peer, session_id)] = slot
        return session_id

    def _slot(self, session: Session, now: float) -> _Slot:
        return _Slot(
            session,
            ChatOutbox(session.peer_mac),
            ChatInbox(self.config.chat_cap, self.drops),
            started=now,
        )

    def _chat_slot(self, peer: bytes, now: float) -> _Slot:
        # Every message to one peer goes through one session while it lives, so the control
        # stream's order is the order of our messages.
        key = self._chat_slot_of.get(peer)
        slot = self._slots.get(key) if key is not None else None
        if slot is not None and slot.session.state in _LIVE:
            return slot
        live = [
            s for (mac, _), s in self._slots.items() if mac == peer and s.session.state in _LIVE
        ]
        live.sort(key=lambda s: s.session.state is not SessionState.OPEN)
        slot = live[0] if live else self._slots[(peer, self.open_session(peer, now))]
        self._chat_slot_of[peer] = (peer, slot.session.session_id)
        return slot

    def _new_msg_id(self) -> int:
        msg_id = self._next_msg_id
        self._next_msg_id = msg_id % 0xFFFFFFFF + 1  # u32 on the wire, 0 never used
        return msg_id

    def send_chat(self, peer: bytes, text: str | bytes, now: float) -> int:
        """Send a chat message to `peer`, opening a session if needed; returns its msg_id.

        ChatDelivered or ChatFailed with that msg_id follows. Raises LocalProtocolError for an
        empty message, one over `chat_cap`, text that is not UTF-8, or a bad MAC.
        """
        _check_unicast(peer, "peer")
        data = to_bytes(text, self.config.chat_cap)
        slot = self._chat_slot(peer, now)
        msg_id = self._new_msg_id()
        slot.outbox.submit(msg_id, data, False, now)
        return msg_id

    def send_chat_all(self, text: str | bytes, now: float) -> tuple[int, tuple[bytes, ...]]:
        """Send one message to every chat-capable peer in the neighbour table, reliably per peer.

        Returns the msg_id (the same for every peer) and the peers it went to; one
        ChatDelivered or ChatFailed per peer follows. No peers: nothing is sent.
        """
        data = to_bytes(text, self.config.chat_cap)
        peers = tuple(p.mac for p in self.discovery.table if p.caps & Caps.CHAT)
        msg_id = self._new_msg_id()
        for peer in peers:
            self._chat_slot(peer, now).outbox.submit(msg_id, data, True, now)
        return msg_id, peers

    def ping(self, peer: bytes, now: float, size: int = 56) -> int:
        """Send one PING of `size` payload bytes; returns its sequence number.

        PingReply or PingLost follows. Raises LocalProtocolError for a size that does not fit
        the smaller of our MTU and the peer's (when known).
        """
        _check_unicast(peer, "peer")
        known = self.discovery.table.get(peer)
        mtu = min(self.mtu, known.mtu) if known is not None else self.mtu
        return self.pinger.ping(peer, now, size, mtu)

    def send_control(self, peer: bytes, session: int, body: Body, now: float) -> int:
        """Queue `body` (a FILE_* frame) on the control stream of session `session` with
        `peer`; returns its control-stream sequence number.

        This is how a transfer layer speaks on a session it was told about (SessionOpened);
        the peer's answers come back as ControlReceived, in order and exactly once. Raises
        LocalProtocolError for an unknown session, one that is closing or ended, or a frame
        that does not fit its MTU.
        """
        slot = self._slots.get((peer, session))
        if slot is None:
            raise LocalProtocolError(
                f"no session {session:#x} with {format_mac(peer)}", code=ErrorCode.BAD_REQUEST
            )
        seq = slot.session.send_control(body, now)
        self._mark_bulk(slot)
        return seq

    def close(self, peer: bytes, now: float, reason: int = 0, text: str = "") -> int:
        """Close every session with `peer` in order; returns how many were open or opening.

        Chat already queued is sent before the CLOSE; SessionClosed follows for each.
        """
        count = 0
        for (mac, _), slot in list(self._slots.items()):
            if mac != peer or slot.session.state not in _LIVE:
                continue
            count += 1
            if slot.session.state is not SessionState.OPEN and slot.outbox.pending:
                # Closing mid-handshake abandons the session; with messages waiting for it,
                # deliver them first, as a close on an open session would.
                slot.close_when_open = (reason, text)
            else:
                slot.session.close(now, reason, text)
        self._collect(now)
        return count

    def close_session(
        self, peer: bytes, session: int, now: float, reason: int = 0, text: str = ""
    ) -> bool:
        """Close one open session with `peer` in order (a transfer's own session; `close`
        would end every session with the peer, other transfers' included), with CLOSE's
        `reason` and `text`. Returns whether it was open."""
        slot = self._slots.get((peer, session))
        if slot is None or slot.session.state is not SessionState.OPEN:
            return False
        slot.session.close(now, reason, text)
        self._collect(now)
        return True

    def close_all(self, now: float, reason: int = 0, text: str = "") -> int:
        """Close every session (on shutdown); returns how many were open or opening."""
        peers = {mac for mac, _ in self._slots}
        return sum(self.close(peer, now, reason, text) for peer in peers)

    # --- frames ----------------------------------------------------------------------------

    def receive_frame(self, frame: Frame, now: float, *, arrived: float | None = None) -> None:
        """Take one decoded frame from the wire. Never raises for anything the peer sent.

        `arrived`, when the adapter knows it, is when the frame reached the host (the kernel's
        receive stamp on the engine's clock). It may be earlier than `now`, which only moves
        forward; a PONG's round trip ends there, as ping(8)'s ends at its SO_TIMESTAMP.
        """
        self.counters["frames_in"] += 1
        try:
            self._route(frame, now, arrived)
        except RemoteProtocolError:
            self.drops["protocol_violation"] += 1
        self._collect(now)

    def answer_ping(self, src: bytes, dst: bytes, payload_len: int, now: float) -> bool:
        """Decide on a PING the adapter has not decoded; True: send the PONG now.

        The same checks and counters as `receive_frame` with the decoded PING, whose PONG
        would echo the payload byte for byte (PROTOCOL.md §PING, PONG): so an adapter holding
        the received bytes builds the PONG from them, without decoding the PING or encoding
        the PONG. That is the whole of a responder's work for an echo, and the round trip the
        peer measures, so it is kept short.
        """
        self.counters["frames_in"] += 1
        if src == self.mac:
            self.drops["own_frame"] += 1
        elif len(src) != 6 or src[0] & 1:
            self.drops["bad_source"] += 1
        elif dst != self.mac:
            self.drops["not_for_us"] += 1
        elif payload_len < PING_HEADER:
            self.drops["bad_payload"] += 1
        elif self.pinger.may_answer(src, now):
            self.counters["frames_out"] += 1
            return True
        return False

    def _route(self, frame: Frame, now: float, arrived: float | None) -> None:
        src = frame.src
        if src == self.mac:
            self.drops["own_frame"] += 1
            return
        if len(src) != 6 or src[0] & 1:
            self.drops["bad_source"] += 1  # a group address never sends
            return
        if not self._authentic(frame, now):
            return
        kind = frame.type
        if kind in _DISCOVERY_TYPES:
            if frame.dst == self.mac or frame.dst == BROADCAST_MAC:
                self.discovery.receive_frame(frame, now)
            else:
                self.drops["not_for_us"] += 1
            return
        if frame.dst != self.mac:
            # Everything but HELLO is unicast; answering a broadcast PING or SYN would let one
            # frame draw replies from the whole LAN.
            self.drops["not_for_us"] += 1
            return
        if kind in _PING_TYPES:
            self.pinger.receive_frame(frame, now, arrived=arrived)
            return
        slot = self._slots.get((src, frame.session)) if frame.session else None
        if slot is not None:
            if not self._refuse_oversized(slot, frame, now):
                slot.session.receive_frame(frame, now)
        elif kind is FrameType.SYN and frame.session:
            self._accept(frame, now)
        else:
            self.drops["unknown_session"] += 1

    def _authentic(self, frame: Frame, now: float) -> bool:
        """Whether `frame` may go on: sealed with the right key when this node has a LAN key,
        not sealed when it has none (PROTOCOL.md §Authentication); else counted and False.

        A session frame for a session not held passes: nothing acts on it, and `_route` counts
        it as `unknown_session`.
        """
        kind = frame.type
        trailer = frame.trailer
        if kind in UNSEALED_TYPES:
            return True
        slot = self._slots.get((frame.src, frame.session)) if frame.session else None
        key = self.key
        if key is None:
            if trailer is not None:
                return self._refuse(frame, "needs_key", now)
            return self._passed(frame)
        if trailer is None:
            return self._refuse(frame, "unauthenticated", now)
        seal = key.group
        if kind is FrameType.SYN:
            if slot is not None and trailer.nonce != slot.peer_nonce:
                # Our session already has this id with another nonce: a SYN from another
                # handshake (a recording), not a repeat of this one.
                return self._refuse(frame, "bad_auth", now)
            if slot is None and trailer.nonce in self._syn_nonces_used:
                if not key.verify(seal, trailer.covered, trailer.tag):
                    return self._refuse(frame, "bad_auth", now)
                # A true SYN that already opened a session here, which has ended: a recording
                # played again. Dropped before `_accept` charges its sender's accept budget,
                # so replays cannot lock the real sender out. Not the key's fault: no _refuse.
                self.drops["replayed_syn"] += 1
                return False
        elif kind not in _GROUP_SEALED and frame.session:
            if slot is None:
                return True
            if kind is FrameType.SYN_ACK and slot.session.role is Role.INITIATOR:
                seal = key.session_key(
                    self.mac, frame.src, frame.session, slot.nonce, trailer.nonce
                )
                if slot.session_key not in (None, seal):
                    return self._refuse(frame, "bad_auth", now)  # another handshake's answer
                if not key.verify(seal, trailer.covered, trailer.tag):
                    return self._refuse(frame, "bad_auth", now)
                slot.session_key = seal
                return self._passed(frame)
            if slot.session_key is None and kind is not FrameType.ERROR:
                # Before the SYN_ACK only an ERROR refusing our SYN can come, sealed with the
                # group key; anything else this early was not sent by the peer we asked.
                return self._refuse(frame, "bad_auth", now)
            seal = slot.session_key or key.group
        if not key.verify(seal, trailer.covered, trailer.tag):
            return self._refuse(frame, "bad_auth", now)
        return self._passed(frame)

    def _passed(self, frame: Frame) -> bool:
        """A frame passed the key check: its sender's last refusal no longer explains
        anything; True."""
        self._auth_refused.pop(frame.src, None)
        return True

    def _refuse(self, frame: Frame, reason: str, now: float) -> bool:
        """Count a frame the key check refused, and note why and when for its sender; False."""
        self.drops[reason] += 1
        refused = self._auth_refused
        refused.pop(frame.src, None)
        refused[frame.src] = (reason, now)
        if len(refused) > _AUTH_REFUSED_MACS:
            del refused[next(iter(refused))]
        return False

    def _sealed(self, frame: Frame, slot: _Slot | None) -> Frame:
        """`frame` with the key (and nonce) to seal it with; `slot` is its session's, if any."""
        key = self.key
        kind = frame.type
        if key is None or kind in UNSEALED_TYPES:
            return frame
        seal, nonce = key.group, b""
        if slot is not None and kind in NONCE_TYPES:
            nonce = slot.nonce
            if kind is FrameType.SYN_ACK and slot.session_key is not None:
                seal = slot.session_key
        elif slot is not None and kind not in _GROUP_SEALED and slot.session_key is not None:
            seal = slot.session_key
        assert len(nonce) == (NONCE_LEN if kind in NONCE_TYPES else 0)
        # Built, not dataclasses.replace()d: this runs for every control frame out.
        f = frame
        return Frame(
            f.dst, f.src, f.session, f.seq, f.body, f.flags, None, (seal, nonce), f.encoded
        )

    def _refuse_oversized(self, slot: _Slot, frame: Frame, now: float) -> bool:
        """Refuse a chat message over our cap as soon as any fragment of it arrives.

        Its fragment is never acknowledged and the session ends with ERROR too_large, so the
        sender reports ChatFailed, never ChatDelivered (its later messages on that session fail
        too: they were queued behind the refused one). Deciding on arrival rather than on
        in-order delivery matters: a fragment buffered out of order is acknowledged at once.
        """
        body = frame.body
        cap = self.config.chat_cap
        session = slot.session
        if (
            not isinstance(body, Chat)
            or body.total_len <= cap
            or session.state not in (SessionState.OPEN, SessionState.CLOSING)
        ):
            return False
        self.drops["chat_too_large"] += 1
        error = LocalProtocolError(
            f"refused a chat message of {body.total_len} bytes from {format_mac(frame.src)}: "
            f"this node accepts at most {cap}",
            code=ErrorCode.TOO_LARGE,
        )
        session.refuse(error, now)
        return True

    def _accept(self, frame: Frame, now: float) -> None:
        assert isinstance(frame.body, Syn)
        if not self._accept_limiter.allow(frame.src, now):
            self.drops["rate_limited"] += 1
            return
        try:
            if len(self._slots) >= self.config.max_sessions:
                raise RemoteProtocolError(
                    f"{len(self._slots)} sessions open, no room for another",
                    code=ErrorCode.BUSY,
                )
            theirs = sum(1 for mac, _ in self._slots if mac == frame.src)
            if theirs >= self.config.max_sessions_per_peer:
                raise RemoteProtocolError(
                    f"{theirs} sessions open with {format_mac(frame.src)}, no room for another",
                    code=ErrorCode.BUSY,
                )
            params = negotiate(frame.body, self.config, self.mtu)
        except RemoteProtocolError as exc:
            self.drops["refused_syn"] += 1
            body = Error(code=int(exc.code), text=wire_text(exc.message))
            self._out.append(Frame(frame.src, self.mac, frame.session, 0, body))
            return
        session = Session.accept(
            frame,
            params,
            local_mac=self.mac,
            node_id=self.node_id,
            local_mtu=self.mtu,
            config=self.config,
            drops=self.drops,
            now=now,
            trailer_len=self.trailer_len,
        )
        slot = self._slot(session, now)
        if self.key is not None and frame.trailer is not None:  # checked by _authentic
            self._remember_syn_nonce(frame.trailer.nonce)
            slot.peer_nonce = frame.trailer.nonce
            slot.nonce = self.key.nonce()
            slot.session_key = self.key.session_key(
                frame.src, self.mac, frame.session, slot.peer_nonce, slot.nonce
            )
        self._slots[(frame.src, frame.session)] = slot

    def _remember_syn_nonce(self, nonce: bytes) -> None:
        # Only SYNs that opened a session: one that was rate-limited or refused busy must still
        # pass when its sender repeats it (a repeat carries the same nonce).
        used = self._syn_nonces_used
        used[nonce] = None
        if len(used) > self.config.syn_nonce_memory:
            del used[next(iter(used))]

    def _collect(self, now: float) -> None:
        # Move every part's events to ours, and let chat act on its sessions' events.
        while (d := self.discovery.next_event()) is not None:
            self._events.append(d)
        while (p := self.pinger.next_event()) is not None:
            self._events.append(p)
        for slot in list(self._slots.values()):
            session = slot.session
            while (ev := session.next_event()) is not None:
                if isinstance(ev, StreamAcked):
                    self._events.extend(slot.outbox.on_acked(ev.seq))
                elif isinstance(ev, StreamDelivered):
                    self._deliver(slot, ev.frame, now)
                elif isinstance(ev, SessionOpened):
                    slot.opened = True
                    self._events.append(ev)
                    if session.state is SessionState.OPEN:
                        slot.outbox.attach(session, now)
                        if slot.close_when_open is not None:
                            session.close(now, *slot.close_when_open)
                else:
                    refused = self._auth_refused.get(session.peer_mac)
                    if (
                        isinstance(ev, SessionFailed)
                        and refused is not None
                        and refused[1] >= slot.started
                        and not slot.opened
                    ):
                        # A frame refused before this handshake (a forged HELLO with the
                        # peer's MAC, say) says nothing about why this one failed.
                        ev = self._explained(ev, _AUTH_REASONS[refused[0]])
                    elif (
                        isinstance(ev, SessionFailed)
                        and ev.error.code == ErrorCode.TIMEOUT
                        and (lost := self._link_was_lost(now)) is not None
                    ):
                        # "The peer sent nothing" is what the session saw; the adapter saw
                        # this node's own link go.
                        ev = self._explained(
                            ev, f"this node's {lost} meanwhile, so nothing was sent or heard"
                        )
                    self._events.append(ev)
                    self._ended(slot, ev)

    @staticmethod
    def _explained(ev: SessionFailed, why: str) -> SessionFailed:
        """`ev` with `why` added to its error: what this node saw that the session could not
        (the key check refused the answers, the link was lost)."""
        error = ev.error
        explained = type(error)(f"{error.message}; {why}", code=error.code)
        return dataclasses.replace(ev, error=explained)

    def _deliver(self, slot: _Slot, frame: Frame, now: float) -> None:
        body = frame.body
        session = slot.session
        if isinstance(body, Chat):
            msg = slot.inbox.receive(body, frame.flags)
            if msg is None:
                return
            known = self.discovery.table.get(session.peer_mac)
            self._events.append(
                ChatReceived(
                    peer=session.peer_mac,
                    name=known.name if known is not None else "",
                    msg_id=msg.msg_id,
                    text=msg.data,
                    to_all=msg.to_all,
                    time=now,
                    session=session.session_id,
                )
            )
        else:
            self._mark_bulk(slot)
            self._events.append(ControlReceived(session.session_id, session.peer_mac, body))

    def _ended(self, slot: _Slot, ev: SessionClosed | SessionFailed) -> None:
        error: ProtocolError
        if isinstance(ev, SessionFailed):
            error = ev.error
        else:
            who = "the peer" if ev.by_peer else "this node"
            kind = RemoteProtocolError if ev.by_peer else LocalProtocolError
            error = kind(
                f"session {ev.session:#x} with {format_mac(ev.peer)} was closed by {who} before "
                "the message was acknowledged",
                code=ErrorCode.REFUSED,
            )
        self._events.extend(slot.outbox.fail_all(error))

    def frames_to_send(self, now: float) -> list[Frame]:
        """Every frame to put on the wire now; forgets sessions that are over."""
        out, self._out = self._out, []
        out += self.discovery.frames_to_send(now)
        out += self.pinger.frames_to_send(now)
        if self.key is not None:
            out = [self._sealed(f, self._slots.get((f.dst, f.session))) for f in out]
        for key, slot in list(self._slots.items()):
            frames = slot.session.frames_to_send(now)
            if self.key is not None:
                frames = [self._sealed(f, slot) for f in frames]
            out += frames
            if slot.session.finished:
                del self._slots[key]
                if slot.bulk:
                    self._bulk_version += 1
                if self._chat_slot_of.get(key[0]) == key:
                    del self._chat_slot_of[key[0]]
        self.counters["frames_out"] += len(out)
        return out

    def frames_sent(self, now: float) -> None:
        """The adapter sends what `frames_to_send` returned; `now` is its clock reading right
        before the send system call (it may report after the call, with that earlier time).

        Optional: without it a PING's round trip starts at `frames_to_send`; with it, at the
        send itself, so the adapter's encoding is not counted as network time.
        """
        self.pinger.frames_sent(now)

    def next_timer(self) -> float | None:
        """The earliest time `handle_timer` must run, or None when nothing is scheduled."""
        times = [self.discovery.next_timer(), self.pinger.next_timer()]
        times += [slot.session.next_timer() for slot in self._slots.values()]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        """Run every part whose timer is due."""
        t = self.discovery.next_timer()
        if t is not None and now >= t:
            self.discovery.handle_timer(now)
        t = self.pinger.next_timer()
        if t is not None and now >= t:
            self.pinger.handle_timer(now)
        for slot in list(self._slots.values()):
            t = slot.session.next_timer()
            if t is not None and now >= t:
                slot.session.handle_timer(now)
        self._collect(now)

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
