"""The control stream (l2fast.node.ctrlstream): exactly-once, in-order delivery under faults."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter

import pytest

from l2fast.errors import RemoteProtocolError
from l2fast.node.ctrlstream import BITMAP_BITS, ControlStream
from l2fast.node.events import StreamAcked, StreamDelivered, StreamGaveUp
from l2fast.node.rtt import RttEstimator
from l2fast.wire.constants import FrameType
from l2fast.wire.frames import Chat, CtrlAck, Frame

A = b"\x02\x00\x00\x00\x00\x01"
B = b"\x02\x00\x00\x00\x00\x02"


def stream(local: bytes, peer: bytes, give_up: float = 10.0) -> ControlStream:
    s = ControlStream(
        session_id=7,
        local_mac=local,
        peer_mac=peer,
        rtt=RttEstimator(0.25, 0.05, 1.0),
        drops=Counter(),
        give_up=give_up,
    )
    s.resume()
    return s


def msg(i: int) -> Chat:
    data = i.to_bytes(4, "big")
    return Chat(msg_id=i, total_len=4, frag_offset=0, to_all=False, data=data)


def link(
    a: ControlStream,
    b: ControlStream,
    *,
    seed: int,
    loss: float = 0.0,
    dup: float = 0.0,
    reorder: float = 0.0,
    until: float = 60.0,
) -> tuple[list[int], list[int], float, int]:
    """Run both ends over a faulty wire; (seqs b delivered, seqs a saw acked, time, max flight)."""
    rng = random.Random(seed)
    now = 0.0
    wire: list[tuple[float, int, Frame]] = []
    n = 0
    delivered: list[int] = []
    acked: list[int] = []
    max_flight = 0
    ends = {A: a, B: b}
    while now < until:
        for end in (a, b):
            for frame in end.frames_to_send(now):
                if frame.type is FrameType.CHAT:
                    max_flight = max(max_flight, frame.seq - min(a._inflight, default=frame.seq))
                if rng.random() < loss:
                    continue
                at = now + 0.0001 + (rng.uniform(0.0001, 0.003) if rng.random() < reorder else 0)
                copies = 2 if rng.random() < dup else 1
                for _ in range(copies):
                    n += 1
                    heapq.heappush(wire, (at, n, frame))
                    at += 0.0002
        for end, log in ((b, delivered), (a, acked)):
            while (ev := end.next_event()) is not None:
                if isinstance(ev, StreamDelivered):
                    log.append(ev.frame.seq)
                elif isinstance(ev, StreamAcked):
                    log.append(ev.seq)
        if a.unacked == 0 and not wire:
            break
        times = [t for t in (a.next_timer(), b.next_timer()) if t is not None]
        if wire:
            times.append(wire[0][0])
        if not times:
            break
        now = max(now, min(times))
        while wire and wire[0][0] <= now:
            _, _, frame = heapq.heappop(wire)
            ends[frame.dst].receive_frame(frame, now)
        for end in (a, b):
            t = end.next_timer()
            if t is not None and t <= now:
                end.handle_timer(now)
    return delivered, acked, now, max_flight


def test_clean_link_delivers_in_order_and_acks_everything() -> None:
    a, b = stream(A, B), stream(B, A)
    for i in range(200):
        assert a.send(msg(i)) == i + 1  # sequence numbers start at 1 (PROTOCOL.md §CTRL_ACK)
    delivered, acked, _, flight = link(a, b, seed=0)
    assert delivered == list(range(1, 201))
    assert sorted(acked) == list(range(1, 201))
    assert flight < BITMAP_BITS


@pytest.mark.parametrize("seed", range(12))
def test_exactly_once_in_order_under_loss_duplication_reordering(seed: int) -> None:
    a, b = stream(A, B), stream(B, A)
    for i in range(300):
        a.send(msg(i))
    delivered, acked, now, flight = link(a, b, seed=seed, loss=0.05, dup=0.05, reorder=0.05)
    assert delivered == list(range(1, 301))
    assert sorted(acked) == list(range(1, 301))  # each acknowledged once
    assert flight < BITMAP_BITS
    assert now < 30


def test_heavy_loss_still_exactly_once() -> None:
    a, b = stream(A, B, give_up=120), stream(B, A, give_up=120)
    for i in range(100):
        a.send(msg(i))
    delivered, _, _, _ = link(a, b, seed=99, loss=0.3, dup=0.2, reorder=0.2, until=120)
    assert delivered == list(range(1, 101))


def test_ack_reports_cum_and_bitmap() -> None:
    a, b = stream(A, B), stream(B, A)
    for i in range(6):
        a.send(msg(i))
    sent = a.frames_to_send(0.0)
    for frame in sent:
        if frame.seq in (1, 3, 5):
            b.receive_frame(frame, 0.0)
    (ack,) = b.frames_to_send(0.0)  # one CTRL_ACK covers everything received so far
    assert isinstance(ack.body, CtrlAck)
    # 1 arrived -> cum 2; 3 and 5 are bits 0 and 2 (cum + 1 + i).
    assert (ack.body.cum, ack.body.bitmap) == (2, 0b101)
    a.receive_frame(ack, 0.001)
    acked = []
    while (ev := a.next_event()) is not None:
        assert isinstance(ev, StreamAcked)
        acked.append(ev.seq)
    assert acked == [1, 3, 5]
    assert a.unacked == 3


def test_duplicate_is_counted_and_acknowledged_again() -> None:
    a, b = stream(A, B), stream(B, A)
    a.send(msg(0))
    (frame,) = a.frames_to_send(0.0)
    b.receive_frame(frame, 0.0)
    b.frames_to_send(0.0)
    b.receive_frame(frame, 0.1)
    (again,) = b.frames_to_send(0.1)
    assert isinstance(again.body, CtrlAck) and again.body.cum == 2
    assert b._drops["duplicate"] == 1
    assert [type(e) for e in iter(b.next_event, None)] == [StreamDelivered]


def test_window_limits_frames_in_flight() -> None:
    a = stream(A, B)
    for i in range(200):
        a.send(msg(i))
    first = a.frames_to_send(0.0)
    assert len(first) == BITMAP_BITS
    assert a.frames_to_send(0.0) == []
    a.receive_frame(Frame(A, B, 7, 0, CtrlAck(cum=11, bitmap=0)), 0.01)
    assert [f.seq for f in a.frames_to_send(0.01)] == list(range(65, 75))


def test_ack_of_frames_never_sent_is_a_remote_error() -> None:
    a = stream(A, B)
    a.send(msg(0))
    a.frames_to_send(0.0)
    with pytest.raises(RemoteProtocolError):
        a.receive_frame(Frame(A, B, 7, 0, CtrlAck(cum=5, bitmap=0)), 0.0)
    with pytest.raises(RemoteProtocolError):
        a.receive_frame(Frame(A, B, 7, 0, CtrlAck(cum=0, bitmap=0)), 0.0)


def test_frame_far_beyond_window_is_dropped_not_buffered() -> None:
    b = stream(B, A)
    b.receive_frame(Frame(B, A, 7, 1 + BITMAP_BITS + 1, msg(0)), 0.0)
    assert b._drops["ctrl_window"] == 1
    assert b.next_event() is None


def test_retransmission_backs_off_within_bound_then_gives_up() -> None:
    a = stream(A, B, give_up=10.0)
    a.send(msg(0))
    now, sends = 0.0, []
    while True:
        if a.frames_to_send(now):
            sends.append(now)
        t = a.next_timer()
        if t is None:
            break
        now = t
        a.handle_timer(now)
    gaps = [round(y - x, 6) for x, y in itertools.pairwise(sends)]
    # Initial RTO 0.25 s, doubled each time, never above rto_max = 1 s.
    assert gaps[:3] == [0.25, 0.5, 1.0]
    assert max(gaps) == 1.0
    events = list(iter(a.next_event, None))
    assert len(events) == 1 and isinstance(events[0], StreamGaveUp)
    assert events[0].seq == 1 and events[0].waited == pytest.approx(10.0)
    assert a.dead and a.frames_to_send(now + 5) == []


def test_lost_frame_is_resent_early_when_later_ones_are_acked() -> None:
    a = stream(A, B)
    for i in range(5):
        a.send(msg(i))
    a.frames_to_send(0.0)
    # The peer got 2..5 but not 1: bits 0..3 above cum 1.
    a.receive_frame(Frame(A, B, 7, 0, CtrlAck(cum=1, bitmap=0b1111)), 0.001)
    resent = a.frames_to_send(0.001)
    assert [f.seq for f in resent] == [1]  # long before the 0.25 s timeout
    # It is not resent again for the same evidence.
    a.receive_frame(Frame(A, B, 7, 0, CtrlAck(cum=1, bitmap=0b1111)), 0.002)
    assert a.frames_to_send(0.002) == []


def test_rtt_sample_shortens_the_timeout() -> None:
    a, b = stream(A, B), stream(B, A)
    a.send(msg(0))
    (frame,) = a.frames_to_send(0.0)
    b.receive_frame(frame, 0.002)
    (ack,) = b.frames_to_send(0.002)
    a.receive_frame(ack, 0.004)
    assert a.rtt.srtt == pytest.approx(0.004)
    assert a.rtt.rto == pytest.approx(0.05)  # floor rto_min: a 4 ms LAN RTT


class _CheckedTimers(ControlStream):
    """next_timer() compared, on every call, with the deadlines recomputed from scratch."""

    def next_timer(self) -> float | None:
        kept = super().next_timer()
        if self.dead or not self._inflight:
            fresh = None
        else:
            rto = self.rtt.rto
            waiting = [e.last_sent + rto for e in self._inflight.values() if not e.retransmit_due]
            oldest = min(e.first_sent for e in self._inflight.values())
            fresh = min([*waiting, oldest + self.give_up])
        assert kept == fresh
        return kept

    # Checked after every change too, not only when the harness happens to ask.
    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        self.next_timer()

    def receive_frame(self, frame: Frame, now: float, *, accept_new: bool = True) -> bool:
        fresh = super().receive_frame(frame, now, accept_new=accept_new)
        self.next_timer()
        return fresh

    def frames_to_send(self, now: float) -> list[Frame]:
        out = super().frames_to_send(now)
        self.next_timer()
        return out


@pytest.mark.parametrize("seed", range(6))
def test_kept_timer_deadlines_match_a_fresh_computation(seed: int) -> None:
    a, b = (
        _CheckedTimers(
            session_id=7,
            local_mac=local,
            peer_mac=peer,
            rtt=RttEstimator(0.25, 0.05, 1.0),
            drops=Counter(),
        )
        for local, peer in ((A, B), (B, A))
    )
    a.resume()
    b.resume()
    for i in range(1, 301):
        a.send(msg(i))
    delivered, _, _, _ = link(a, b, seed=seed, loss=0.2, dup=0.05, reorder=0.2)
    assert delivered == list(range(1, 301))
