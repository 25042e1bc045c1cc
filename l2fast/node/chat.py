"""Chat messages over a session's control stream: fragmenting and reassembly (PROTOCOL.md §CHAT).

A message of up to `NodeConfig.chat_cap` bytes is cut into CHAT fragments that each fit the
session's MTU, the last one flagged LAST, and queued on the control stream, which makes them
arrive in order and exactly once. So the receiver only ever has one message in progress per
session, and a fragment that does not continue it exactly is the peer's protocol error (the
partial message is dropped and counted). UTF-8 is checked once the message is whole, since a
fragment boundary may split a character.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from l2fast.errors import LocalProtocolError, ProtocolError
from l2fast.node.events import ChatDelivered, ChatFailed
from l2fast.wire.constants import HDR_LEN, MAX_CHAT_BYTES, ErrorCode, Flags
from l2fast.wire.frames import Chat

if TYPE_CHECKING:
    from l2fast.node.session import Session

__all__ = ["CHAT_HEADER", "ChatInbox", "ChatOutbox", "ReceivedMessage", "fragment", "to_bytes"]

#: Bytes of a CHAT payload before the fragment: msg_id, total_len, frag_offset, to_all.
CHAT_HEADER = 13


def to_bytes(text: str | bytes, cap: int) -> bytes:
    """`text` as the UTF-8 bytes to send; LocalProtocolError if empty, over `cap` or not UTF-8."""
    if isinstance(text, str):
        data = text.encode("utf-8", errors="strict")
    else:
        data = bytes(text)
        try:
            data.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise LocalProtocolError(f"chat text is not UTF-8: {exc.reason}") from None
    if not data:
        raise LocalProtocolError("chat message is empty")
    limit = min(cap, MAX_CHAT_BYTES)
    if len(data) > limit:
        raise LocalProtocolError(
            f"chat message is {len(data)} bytes, the limit is {limit}",
            code=ErrorCode.TOO_LARGE,
            hint="longer text goes as a file: l2fast send PEER FILE",
        )
    return data


def fragment(msg_id: int, data: bytes, to_all: bool, mtu: int) -> list[tuple[Chat, int]]:
    """The CHAT bodies and flags that carry `data` in frames of at most `mtu` bytes."""
    room = mtu - HDR_LEN - CHAT_HEADER
    total = len(data)
    pieces: list[tuple[Chat, int]] = []
    for offset in range(0, total, room):
        chunk = data[offset : offset + room]
        last = offset + len(chunk) >= total
        body = Chat(msg_id=msg_id, total_len=total, frag_offset=offset, to_all=to_all, data=chunk)
        pieces.append((body, int(Flags.LAST) if last else 0))
    return pieces


@dataclass(slots=True)
class _Outgoing:
    msg_id: int
    data: bytes
    to_all: bool
    unacked: set[int] = field(default_factory=set)


class ChatOutbox:
    """Our messages to one peer on one session: waiting for it to open, then in flight.

    `submit` before the session is open only queues; `attach` (once open) fragments everything
    queued onto the control stream. `on_acked` turns stream acknowledgements into
    ChatDelivered, in sending order; `fail_all` turns a dead session into one ChatFailed per
    message left.
    """

    def __init__(self, peer: bytes) -> None:
        self.peer = peer
        self._session: Session | None = None
        self._waiting: deque[_Outgoing] = deque()
        self._by_seq: dict[int, _Outgoing] = {}
        self._in_flight: dict[int, _Outgoing] = {}  # msg_id -> message, in sending order

    @property
    def pending(self) -> int:
        """Messages not yet delivered (waiting or in flight)."""
        return len(self._waiting) + len(self._in_flight)

    def submit(self, msg_id: int, data: bytes, to_all: bool, now: float) -> None:
        """Queue one message (already checked by `to_bytes`)."""
        self._waiting.append(_Outgoing(msg_id, data, to_all))
        if self._session is not None:
            self._push(now)

    def attach(self, session: Session, now: float) -> None:
        """The session is open: send everything waiting, and everything submitted later."""
        self._session = session
        self._push(now)

    def _push(self, now: float) -> None:
        session = self._session
        assert session is not None and session.params is not None
        while self._waiting:
            msg = self._waiting.popleft()
            room = session.params.mtu - session.trailer_len  # a sealed frame's tag
            for body, flags in fragment(msg.msg_id, msg.data, msg.to_all, room):
                seq = session.send_control(body, now, flags)
                msg.unacked.add(seq)
                self._by_seq[seq] = msg
            self._in_flight[msg.msg_id] = msg

    def on_acked(self, seq: int) -> list[ChatDelivered]:
        """A control frame was acknowledged; the messages that are now delivered, in order.

        A message counts as delivered only once it and every message before it on this session
        are fully acknowledged. An acknowledgement says a frame *arrived*; the peer hands
        messages over in order, so a later message whose frames arrived while an earlier one
        is still missing a fragment is not delivered yet, and never will be if the peer refuses
        or loses that earlier one and the session ends.
        """
        msg = self._by_seq.pop(seq, None)
        if msg is None:
            return []
        msg.unacked.discard(seq)
        delivered: list[ChatDelivered] = []
        while self._in_flight:
            oldest = next(iter(self._in_flight.values()))
            if oldest.unacked:
                break
            del self._in_flight[oldest.msg_id]
            delivered.append(ChatDelivered(oldest.msg_id, self.peer))
        return delivered

    def fail_all(self, error: ProtocolError) -> list[ChatFailed]:
        """Every message not delivered, as ChatFailed, oldest first; the outbox is emptied."""
        failed = [ChatFailed(m.msg_id, self.peer, error) for m in self._in_flight.values()]
        failed += [ChatFailed(m.msg_id, self.peer, error) for m in self._waiting]
        self._in_flight.clear()
        self._waiting.clear()
        self._by_seq.clear()
        return failed


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One reassembled chat message."""

    msg_id: int
    data: bytes
    to_all: bool


class ChatInbox:
    """Reassembles the peer's messages on one session from in-order, exactly-once fragments.

    Messages announced larger than `cap` are refused: counted once as `chat_too_large`, their
    fragments skipped. (`NodeEngine` refuses them earlier, as they arrive, and ends the session
    so the sender learns of it; this is the inbox's own guard.) A fragment that does not
    continue the message in progress exactly drops that message (`bad_chat`). A whole message
    that is not UTF-8 is dropped as `bad_payload` (PROTOCOL.md §CHAT); its fragments were
    acknowledged as they arrived, so the sender does not send it again.
    """

    def __init__(self, cap: int, drops: Counter[str]) -> None:
        self.cap = cap
        self._drops = drops
        self._msg_id: int | None = None
        self._total = 0
        self._to_all = False
        self._buf = bytearray()
        self._refused: int | None = None

    def _abandon(self, reason: str) -> None:
        self._drops[reason] += 1
        self._msg_id = None
        self._buf = bytearray()

    def receive(self, chat: Chat, flags: int) -> ReceivedMessage | None:
        """Take the next CHAT fragment; the whole message once it is complete."""
        if self._msg_id is not None and chat.msg_id != self._msg_id:
            self._abandon("bad_chat")
        if self._msg_id is None:
            if chat.frag_offset != 0:
                if chat.msg_id != self._refused:
                    self._drops["bad_chat"] += 1
                return None
            if chat.total_len == 0:
                self._drops["bad_chat"] += 1
                return None
            if chat.total_len > self.cap:
                self._drops["chat_too_large"] += 1
                self._refused = chat.msg_id
                return None
            self._refused = None
            self._msg_id, self._total, self._to_all = chat.msg_id, chat.total_len, chat.to_all
        if (
            chat.total_len != self._total
            or chat.to_all != self._to_all
            or chat.frag_offset != len(self._buf)
        ):
            self._abandon("bad_chat")
            return None
        self._buf += chat.data
        done = len(self._buf) >= self._total
        if bool(flags & Flags.LAST) != done:
            # LAST on a fragment that does not end the message, or an end without LAST.
            self._abandon("bad_chat")
            return None
        if not done:
            return None
        data = bytes(self._buf)
        self._msg_id = None
        self._buf = bytearray()
        try:
            # Only here, on the whole message: a fragment boundary may split a character.
            data.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            self._drops["bad_payload"] += 1  # PROTOCOL.md §CHAT: dropped, never delivered
            return None
        return ReceivedMessage(chat.msg_id, data, self._to_all)
