"""The L2 echo: PING / PONG outside any session, with ping(8)-style statistics.

PROTOCOL.md §PING, PONG: PING's payload is `u32 ident`, `u64 ts_ns` and optional filler; the
responder echoes it byte for byte to the PING's source MAC. Replies are rate-limited (per peer
and globally) so a PING flood cannot turn this node into a frame cannon. RTT is measured on our
own clock from our own record of the sending time: the echoed `ts_ns` is the peer's to forge.

The sending time is taken when the PING leaves the engine (`frames_to_send`), and moved to the
moment the adapter reports it started sending those frames (`frames_sent`, right before its
send system call, after encoding them), never when `ping()` queued it: whatever the adapter
does in between (answering its client, other timers, encoding) is not the network's round
trip, and ping(8) too stamps right before `sendmsg`. The receiving
time is when the PONG arrived: the daemon passes the kernel's receive timestamp as `arrived`,
as ping(8) uses SO_TIMESTAMP, even when its loop had already read a later time before it got
to the frame (the sending turn's own bookkeeping, after the PONG had come in, must not count).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass

from l2fast.errors import LocalProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.events import PingLost, PingReply
from l2fast.node.pingstats import PingStats, RttStats
from l2fast.node.ratelimit import ReplyLimiter
from l2fast.wire.constants import MAX_PAYLOAD, PING_HEADER, max_payload
from l2fast.wire.frames import Frame, Ping, Pong

__all__ = ["Pinger"]

_U64 = (1 << 64) - 1
# How many answered sequence numbers are remembered to recognise duplicates.
_ANSWERED_MEMORY = 1024


@dataclass(slots=True)
class _Outstanding:
    peer: bytes
    sent_at: float
    size: int


class Pinger:
    """Both ends of the echo, sans-IO: `ping()` and `receive_frame()` (PING or PONG) in,
    `frames_to_send()`, `next_timer()`, `handle_timer()` and `next_event()` out.
    """

    def __init__(
        self, local_mac: bytes, rng: random.Random, config: NodeConfig, drops: Counter[str]
    ) -> None:
        self.local_mac = local_mac
        #: Our PING identifier, like ping(8)'s process id: PONGs with another one are not ours.
        self.ident = rng.getrandbits(32)
        self.config = config
        self._drops = drops
        self._limiter = ReplyLimiter(
            rate_per_peer=config.pong_rate_per_peer,
            burst_per_peer=config.pong_burst_per_peer,
            rate_global=config.pong_rate_global,
            burst_global=config.pong_burst_global,
        )
        self._next_seq = 1
        self._outstanding: dict[int, _Outstanding] = {}
        # PINGs queued by ping() but not yet handed out: their sending time is stamped then.
        self._unsent: list[_Outstanding] = []
        # Handed out by frames_to_send; frames_sent stamps them again.
        self._handed: list[_Outstanding] = []
        self._answered: dict[int, bytes] = {}  # seq -> peer, oldest first
        self._stats: dict[bytes, RttStats] = {}
        self._out: list[Frame] = []
        self._events: deque[PingReply | PingLost] = deque()

    @staticmethod
    def filler(size: int) -> bytes:
        """The filler of a PING of `size` payload bytes: a counting pattern, checked on return."""
        return bytes(i & 0xFF for i in range(size - PING_HEADER))

    def ping(self, peer: bytes, now: float, size: int = 56, mtu: int | None = None) -> int:
        """Send one PING of `size` payload bytes to `peer`; returns its sequence number.

        `mtu` (the smaller of ours and the peer's, when known) bounds `size`. Raises
        LocalProtocolError for a size outside 12..MTU-24.
        """
        limit = MAX_PAYLOAD if mtu is None else max_payload(mtu)
        if not PING_HEADER <= size <= limit:
            error = LocalProtocolError(f"ping size {size} is outside {PING_HEADER}..{limit}")
            if size > limit and mtu is not None:
                error.hint = (
                    f"a PING must fit one frame: the MTU on the way is {mtu}, so -s {limit} "
                    "at most (a larger MTU needs `ip link set IFACE mtu N` on both hosts)"
                )
            raise error
        seq = self._next_seq
        self._next_seq += 1
        body = Ping(ident=self.ident, ts_ns=int(now * 1e9) & _U64, filler=self.filler(size))
        self._out.append(Frame(peer, self.local_mac, 0, seq, body))
        entry = _Outstanding(peer, now, size)
        self._outstanding[seq] = entry
        self._unsent.append(entry)
        self._stats.setdefault(peer, RttStats()).sent += 1
        return seq

    def stats(self, peer: bytes) -> PingStats:
        """ping(8)'s summary for `peer` (zeros if we never pinged it)."""
        return self._stats.get(peer, RttStats()).summary()

    def may_answer(self, peer: bytes, now: float) -> bool:
        """Whether a PING from `peer` gets its PONG now (the rate limits); counts a refusal."""
        if self._limiter.allow(peer, now):
            return True
        self._drops["rate_limited"] += 1
        return False

    def receive_frame(self, frame: Frame, now: float, *, arrived: float | None = None) -> None:
        """Answer a PING (if the rate limit allows) or match a PONG to one of ours.

        A PONG's round trip ends at `arrived` when given (the kernel's receive stamp, possibly
        earlier than `now`) and not earlier than the PING's send, else at `now`.
        """
        body = frame.body
        if isinstance(body, Ping):
            if self.may_answer(frame.src, now):
                self._out.append(Frame(frame.src, self.local_mac, 0, frame.seq, Pong.echo(body)))
        elif isinstance(body, Pong):
            self._on_pong(frame, body, now, arrived)

    def _on_pong(self, frame: Frame, body: Pong, now: float, arrived: float | None) -> None:
        seq = frame.seq
        if body.ident != self.ident:
            self._drops["ping_unmatched"] += 1
            return
        entry = self._outstanding.get(seq)
        if entry is None:
            if self._answered.get(seq) == frame.src:
                self._stats[frame.src].duplicates += 1
                self._events.append(PingReply(frame.src, seq, 0, 0, duplicate=True))
            else:
                self._drops["ping_unmatched"] += 1
            return
        if frame.src != entry.peer or body.filler != self.filler(entry.size):
            # An answer from someone else, or a payload not echoed byte for byte.
            self._drops["bad_pong"] += 1
            return
        del self._outstanding[seq]
        self._answered[seq] = entry.peer
        if len(self._answered) > _ANSWERED_MEMORY:
            del self._answered[next(iter(self._answered))]
        # The kernel's stamp, unless it reads earlier than the send (a wall-clock step, since
        # the adapter converts it through the wall clock): then `now`, which never does.
        end = arrived if arrived is not None and arrived >= entry.sent_at else now
        rtt_ns = max(0, round((end - entry.sent_at) * 1e9))
        self._stats[entry.peer].add(rtt_ns)
        self._events.append(PingReply(entry.peer, seq, rtt_ns, entry.size))

    def frames_to_send(self, now: float) -> list[Frame]:
        """PINGs and PONGs to put on the wire; a PING's round trip starts now."""
        for entry in self._unsent:
            entry.sent_at = max(entry.sent_at, now)
        self._handed += self._unsent
        self._unsent.clear()
        out, self._out = self._out, []
        return out

    def frames_sent(self, now: float) -> None:
        """The adapter starts sending what `frames_to_send` handed out: their round trip starts
        `now` (the time taken right before the send system call)."""
        for entry in self._handed:
            entry.sent_at = max(entry.sent_at, now)
        self._handed.clear()

    def next_timer(self) -> float | None:
        """When the oldest unanswered PING counts as lost, or None."""
        if not self._outstanding:
            return None
        oldest = next(iter(self._outstanding.values()))
        return oldest.sent_at + self.config.ping_timeout

    def handle_timer(self, now: float) -> None:
        """Report PINGs unanswered for `ping_timeout` as lost."""
        timeout = self.config.ping_timeout
        for seq, entry in list(self._outstanding.items()):
            if now < entry.sent_at + timeout:
                break  # outstanding PINGs are in sending order
            del self._outstanding[seq]
            self._events.append(PingLost(entry.peer, seq))

    def next_event(self) -> PingReply | PingLost | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
