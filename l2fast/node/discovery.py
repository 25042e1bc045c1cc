"""Discovery: HELLO / HELLO_ACK and the neighbour table (PROTOCOL.md §HELLO, §HELLO_ACK).

A node broadcasts HELLO with flag REPLY at start and whenever asked (`discover`), and a plain
HELLO every `hello_interval` seconds with jitter. Receivers answer a REPLY HELLO, and the first
HELLO of a stranger, with a unicast HELLO_ACK, within per-peer and global rate limits. Our own
HELLOs (same node id) are ignored. A neighbour not heard from for `expire_intervals` intervals
is dropped. The table is bounded: a flood of forged source MACs cannot grow it without end.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TypeAlias

from l2fast.node.config import NodeConfig
from l2fast.node.events import PeerDiscovered, PeerExpired, PeerInfo, PeerUpdated
from l2fast.node.ratelimit import ReplyLimiter
from l2fast.wire.constants import BROADCAST_MAC, Flags
from l2fast.wire.frames import Frame, Hello, HelloAck

__all__ = ["Discovery", "DiscoveryEvent", "NeighbourTable"]

#: What `Discovery.next_event()` can return.
DiscoveryEvent: TypeAlias = PeerDiscovered | PeerUpdated | PeerExpired

_U64 = (1 << 64) - 1
# A HELLO_ACK echoing a timestamp older than this answers no HELLO we still care about.
_MAX_RTT = 10.0


@dataclass(frozen=True, slots=True)
class _Announcement:
    node_id: int
    name: str
    mtu: int
    caps: int


class NeighbourTable:
    """Peers heard from, keyed by MAC: name, node id, MTU, capabilities, last seen, RTT."""

    def __init__(self, max_entries: int, expire_after: float) -> None:
        self.max_entries = max_entries
        self.expire_after = expire_after
        self._peers: dict[bytes, PeerInfo] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[PeerInfo]:
        return iter(list(self._peers.values()))

    def __contains__(self, mac: object) -> bool:
        return mac in self._peers

    def get(self, mac: bytes) -> PeerInfo | None:
        """The entry for `mac`, or None."""
        return self._peers.get(mac)

    def find(self, name_or_mac: str) -> PeerInfo | None:
        """The entry whose name, or MAC written `aa:bb:..`, is `name_or_mac`, or None."""
        wanted = name_or_mac.lower()
        for peer in self._peers.values():
            if peer.name == name_or_mac or peer.mac.hex(":") == wanted:
                return peer
        return None

    def update(
        self, mac: bytes, what: _Announcement, now: float, rtt: float | None = None
    ) -> DiscoveryEvent | None:
        """Record that `mac` announced `what`; the event it makes, or None (seen again).

        Returns None too when the table is full and `mac` is new (the caller counts it).
        """
        old = self._peers.get(mac)
        if old is None:
            if len(self._peers) >= self.max_entries:
                return None
            new = PeerInfo(mac, what.name, what.node_id, what.mtu, what.caps, now, now, rtt)
            self._peers[mac] = new
            return PeerDiscovered(new)
        new = replace(
            old,
            name=what.name,
            node_id=what.node_id,
            mtu=what.mtu,
            caps=what.caps,
            last_seen=max(old.last_seen, now),
            rtt=old.rtt if rtt is None else rtt,
        )
        self._peers[mac] = new
        changed = (old.name, old.node_id, old.mtu, old.caps) != (
            new.name,
            new.node_id,
            new.mtu,
            new.caps,
        )
        return PeerUpdated(new) if changed else None

    def expire(self, now: float) -> list[PeerInfo]:
        """Remove and return the entries not heard from for `expire_after` seconds."""
        gone = [p for p in self._peers.values() if now >= p.last_seen + self.expire_after]
        for peer in gone:
            del self._peers[peer.mac]
        return gone

    def next_expiry(self) -> float | None:
        """When the stalest entry expires, or None when the table is empty."""
        if not self._peers:
            return None
        return min(p.last_seen for p in self._peers.values()) + self.expire_after


class Discovery:
    """Sans-IO discovery: `start`, `discover`, `receive_frame` (HELLO, HELLO_ACK) in;
    `frames_to_send`, `next_timer`, `handle_timer`, `next_event` out; `table` to read.
    """

    def __init__(
        self,
        *,
        local_mac: bytes,
        node_id: int,
        name: str,
        mtu: int,
        caps: int,
        rng: random.Random,
        config: NodeConfig,
        drops: Counter[str],
    ) -> None:
        self.local_mac = local_mac
        self.node_id = node_id
        self.name = name
        self.mtu = mtu
        self.caps = caps
        self.config = config
        self._rng = rng
        self._drops = drops
        self.table = NeighbourTable(
            config.max_neighbours, config.expire_intervals * config.hello_interval
        )
        self._limiter = ReplyLimiter(
            rate_per_peer=config.reply_rate_per_peer,
            burst_per_peer=config.reply_burst_per_peer,
            rate_global=config.reply_rate_global,
            burst_global=config.reply_burst_global,
            max_peers=config.max_neighbours,
        )
        self._hello_seq = 0
        self._next_hello: float | None = None
        self._out: list[Frame] = []
        self._events: deque[DiscoveryEvent] = deque()

    def _schedule(self, now: float) -> None:
        jitter = self.config.hello_jitter
        factor = 1.0 + self._rng.uniform(-jitter, jitter)
        self._next_hello = now + self.config.hello_interval * factor

    def _hello(self, now: float, reply: bool) -> None:
        self._hello_seq += 1
        body = Hello(
            node_id=self.node_id,
            ts_ns=int(now * 1e9) & _U64,
            ver_min=self.config.ver_min,
            ver_max=self.config.ver_max,
            mtu=self.mtu,
            caps=self.caps,
            name=self.name,
        )
        flags = int(Flags.REPLY) if reply else 0
        self._out.append(Frame(BROADCAST_MAC, self.local_mac, 0, self._hello_seq, body, flags))

    def start(self, now: float) -> None:
        """Announce ourselves and ask everyone to answer; start the periodic HELLOs."""
        self._hello(now, reply=True)
        self._schedule(now)

    def discover(self, now: float) -> None:
        """Ask every node on the LAN to answer now (a HELLO with REPLY)."""
        self._hello(now, reply=True)

    def announce(self, now: float) -> None:
        """Tell the LAN what changed (a HELLO out of turn, asking no answer)."""
        self._hello(now, reply=False)

    def receive_frame(self, frame: Frame, now: float) -> None:
        """Take a HELLO or HELLO_ACK; other frames are not for discovery and are ignored."""
        body = frame.body
        if not isinstance(body, Hello | HelloAck):
            return
        if body.node_id == self.node_id:
            # Our own broadcast looped back, or a node that drew the same id: not a neighbour.
            self._drops["own_hello"] += 1
            return
        rtt: float | None = None
        if isinstance(body, HelloAck):
            sample = now - body.echo_ts_ns / 1e9
            if 0.0 <= sample <= _MAX_RTT:
                rtt = sample
        stranger = frame.src not in self.table
        what = _Announcement(body.node_id, body.name, body.mtu, body.caps)
        event = self.table.update(frame.src, what, now, rtt)
        if event is None and stranger:
            self._drops["table_full"] += 1
            return
        if event is not None:
            self._events.append(event)
        # A stranger's periodic HELLO gets an answer too, so it learns of us now rather than at
        # our next HELLO.
        if isinstance(body, Hello) and (frame.flags & Flags.REPLY or stranger):
            if self._limiter.allow(frame.src, now):
                ack = HelloAck(
                    node_id=self.node_id,
                    echo_ts_ns=body.ts_ns,
                    ver_min=self.config.ver_min,
                    ver_max=self.config.ver_max,
                    mtu=self.mtu,
                    caps=self.caps,
                    name=self.name,
                )
                self._out.append(Frame(frame.src, self.local_mac, 0, frame.seq, ack))
            else:
                self._drops["rate_limited"] += 1

    def frames_to_send(self, now: float) -> list[Frame]:
        """HELLOs and HELLO_ACKs to put on the wire."""
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """The next periodic HELLO or table expiry, or None before `start`."""
        times = [t for t in (self._next_hello, self.table.next_expiry()) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Send the periodic HELLO and expire silent neighbours, as due."""
        if self._next_hello is not None and now >= self._next_hello:
            self._hello(now, reply=False)
            self._schedule(now)
        for peer in self.table.expire(now):
            self._events.append(PeerExpired(peer))

    def next_event(self) -> DiscoveryEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
