"""An in-memory LAN for NodeEngines: seeded loss, duplication, reordering and a virtual clock.

STYLE.md §13: protocol tests run here in milliseconds, without sockets. The clock jumps
straight to the next frame delivery or node timer, so a test that waits out a 5 s dead-peer
timeout costs no real time.

    lan, a, b = pair(seed=3, loss=0.05, dup=0.05, reorder=0.05)
    msg = a.send_chat(b.mac, "hi", lan.now)
    lan.run(until=lambda: lan.has(a, ChatDelivered))

Every frame a node sends is checked against its MTU (and, with `wire=True`, encoded and decoded
by the real codec, and the decoded frame delivered; a sealed frame always is, since its tag
exists only in bytes) before the LAN applies faults to it. A broadcast reaches every other
node, each copy faulted independently; a unicast reaches the node with that MAC, if any.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from l2fast.node.auth import LanKey
from l2fast.node.config import NodeConfig
from l2fast.node.events import Event
from l2fast.node.node import NodeEngine
from l2fast.wire.constants import BROADCAST_MAC, HDR_LEN, FrameType
from l2fast.wire.frames import Frame, decode_frame, encode_frame, wire_payload

E = TypeVar("E")

NAMES = ("alpha", "bravo", "charlie", "delta", "echo")


def mac_of(index: int) -> bytes:
    """A locally administered unicast MAC for node number `index` (1-based)."""
    return bytes([0x02, 0, 0, 0, 0, index])


@dataclass
class _DropRule:
    kind: FrameType
    nth: int
    src: bytes | None
    seen: int = 0


@dataclass
class Lan:
    """The shared medium, its fault model and the virtual clock."""

    seed: int = 0
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    #: One-way delivery time of every frame, in seconds.
    latency: float = 50e-6
    #: Frames longer than this (l2fast header + payload) vanish, like a smaller switch MTU.
    path_mtu: int = 65535
    #: Encode and decode every frame with the real codec (slower; proves wire validity).
    wire: bool = False
    now: float = 0.0
    nodes: dict[bytes, NodeEngine] = field(default_factory=dict)
    #: Every event each node gave, in order, keyed by node MAC.
    events: dict[bytes, list[Event]] = field(default_factory=dict)
    #: Frames put on the wire, by type (before faults).
    sent: Counter[FrameType] = field(default_factory=Counter)
    #: Frames the fault model or a drop rule removed, by type.
    lost: Counter[FrameType] = field(default_factory=Counter)
    #: If set, called with every frame a node sends (before faults), for tests that inspect.
    tap: Callable[[Frame], None] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, bytes, Frame]] = []
        self._counter = 0
        self._rules: list[_DropRule] = []
        self._blackholed: set[bytes] = set()

    # --- building ---------------------------------------------------------------------------

    def add(
        self,
        name: str | None = None,
        *,
        mtu: int = 1500,
        config: NodeConfig | None = None,
        caps: int | None = None,
        start: bool = True,
        key: LanKey | None = None,
    ) -> NodeEngine:
        """A new node on this LAN (started: its first HELLO goes out on the next step); with
        `key`, it seals its frames and accepts only sealed ones."""
        index = len(self.nodes) + 1
        rng = random.Random(self.rng.getrandbits(64))
        name = name or NAMES[index - 1]
        extra = {} if caps is None else {"caps": caps}
        node = NodeEngine(mac_of(index), name, mtu, rng=rng, config=config, key=key, **extra)
        self.nodes[node.mac] = node
        self.events[node.mac] = []
        if start:
            node.start(self.now)
        return node

    def drop(self, kind: FrameType, nth: int = 1, src: NodeEngine | None = None) -> None:
        """Drop the `nth` frame of type `kind` put on the wire (only from `src`, if given)."""
        self._rules.append(_DropRule(kind, nth, src.mac if src else None))

    def unplug(self, node: NodeEngine) -> None:
        """From now on, nothing `node` sends or should receive gets through (a dead host)."""
        self._blackholed.add(node.mac)

    # --- the medium ---------------------------------------------------------------------------

    def _check(self, node: NodeEngine, frame: Frame) -> tuple[int, Frame]:
        assert frame.src == node.mac, f"{node.name} sent a frame with source {frame.src.hex(':')}"
        flags, payload = wire_payload(frame)
        size = HDR_LEN + len(payload)
        assert size <= node.mtu, f"{node.name} sent a {size}-byte {frame.type.name}, MTU {node.mtu}"
        if self.wire or frame.seal is not None:
            again = decode_frame(encode_frame(frame))
            expected = dataclasses.replace(frame, flags=flags)
            assert again == expected, f"{frame} did not survive the codec: {again}"
            return size, again
        return size, frame

    def _ruled_out(self, frame: Frame) -> bool:
        for rule in self._rules:
            if rule.kind is frame.type and (rule.src is None or rule.src == frame.src):
                rule.seen += 1
                if rule.seen == rule.nth:
                    return True
        return False

    def _schedule(self, at: float, dst: bytes, frame: Frame) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, dst, frame))

    def _transmit(self, node: NodeEngine) -> None:
        for sent in node.frames_to_send(self.now):
            size, frame = self._check(node, sent)
            self.sent[frame.type] += 1
            if self.tap is not None:
                self.tap(frame)
            if self._ruled_out(frame) or size > self.path_mtu or node.mac in self._blackholed:
                self.lost[frame.type] += 1
                continue
            if frame.dst == BROADCAST_MAC:
                targets = [mac for mac in self.nodes if mac != node.mac]
            else:
                targets = [frame.dst] if frame.dst in self.nodes else []
            for dst in targets:
                self._fault(dst, frame)

    def _fault(self, dst: bytes, frame: Frame) -> None:
        rng = self.rng
        if rng.random() < self.loss:
            self.lost[frame.type] += 1
            return
        at = self.now + self.latency
        if rng.random() < self.reorder:
            # Held back long enough for frames sent after it to overtake it.
            at += self.latency * rng.uniform(1.0, 40.0)
        self._schedule(at, dst, frame)
        if rng.random() < self.dup:
            self._schedule(at + self.latency * rng.uniform(0.0, 10.0), dst, frame)

    def _drain(self, node: NodeEngine) -> None:
        log = self.events[node.mac]
        while (ev := node.next_event()) is not None:
            log.append(ev)

    # --- running ------------------------------------------------------------------------------

    def step(self, limit: float = float("inf")) -> bool:
        """Jump to the next delivery or timer (at most to `limit`) and process everything due.

        Returns False when nothing at all is scheduled.
        """
        for node in self.nodes.values():
            self._drain(node)
            self._transmit(node)
        timers = [t for n in self.nodes.values() if (t := n.next_timer()) is not None]
        candidates = timers + ([self._queue[0][0]] if self._queue else [])
        if not candidates:
            return False
        self.now = max(self.now, min(*candidates, limit))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, dst, frame = heapq.heappop(self._queue)
            node = self.nodes[dst]
            if dst in self._blackholed:
                continue
            node.receive_frame(frame, self.now)
            self._drain(node)
            self._transmit(node)
        for node in self.nodes.values():
            t = node.next_timer()
            if t is not None and t <= self.now:
                node.handle_timer(self.now)
            self._drain(node)
            self._transmit(node)
        return True

    def run(self, until: Callable[[], bool] | None = None, timeout: float = 60.0) -> bool:
        """Step until `until()` holds (True) or `timeout` virtual seconds pass (False).

        Without `until`, runs for `timeout` seconds and returns True.
        """
        deadline = self.now + timeout
        for node in self.nodes.values():
            self._drain(node)
        while True:
            if until is not None and until():
                return True
            if self.now >= deadline or not self.step(deadline):
                return until is None

    def run_for(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass."""
        self.run(None, timeout=seconds)

    # --- looking at events ----------------------------------------------------------------------

    def of(self, node: NodeEngine, kind: type[E]) -> list[E]:
        """`node`'s events of class `kind`, in order."""
        return [ev for ev in self.events[node.mac] if isinstance(ev, kind)]

    def has(self, node: NodeEngine, kind: type[object], count: int = 1) -> bool:
        """Whether `node` gave at least `count` events of class `kind`."""
        return sum(isinstance(ev, kind) for ev in self.events[node.mac]) >= count


def pair(seed: int = 0, **lan_options: object) -> tuple[Lan, NodeEngine, NodeEngine]:
    """A LAN with two started nodes, alpha and bravo; keyword options go to `Lan`."""
    config = lan_options.pop("config", None)
    lan = Lan(seed=seed, **lan_options)  # type: ignore[arg-type]
    return lan, lan.add(config=config), lan.add(config=config)  # type: ignore[arg-type]


def triple(seed: int = 0, **lan_options: object) -> tuple[Lan, NodeEngine, NodeEngine, NodeEngine]:
    """A LAN with three started nodes, alpha, bravo and charlie."""
    config = lan_options.pop("config", None)
    lan = Lan(seed=seed, **lan_options)  # type: ignore[arg-type]
    return (
        lan,
        lan.add(config=config),  # type: ignore[arg-type]
        lan.add(config=config),  # type: ignore[arg-type]
        lan.add(config=config),  # type: ignore[arg-type]
    )
