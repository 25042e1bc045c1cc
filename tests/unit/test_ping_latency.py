"""Where `l2fast ping`'s round trip is measured and what may delay it (behaviour, not speed).

A PONG must leave in the loop turn that received the PING, the round trip must start when the
PING leaves the engine and end when the PONG arrived (the kernel's receive stamp), and the
client must hear of a PING only after the PING is on the wire.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from l2fast import native
from l2fast.daemon.pingjob import SENT_NOTICE_DELAY, PingJob
from l2fast.daemon.runner import NodeRunner
from l2fast.node.config import NodeConfig
from l2fast.node.events import PingReply
from l2fast.node.node import NodeEngine
from l2fast.node.ping import Pinger
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType
from l2fast.wire.frames import Frame, Ping, Pong, encode_payload
from tests.fake_wire import FakeHub, FakeSocket

A = b"\x02\x00\x00\x00\x00\x01"
B = b"\x02\x00\x00\x00\x00\x02"


class FakeClock:
    """A monotonic clock and a wall clock that tests move by hand."""

    def __init__(self) -> None:
        self.t = 100.0
        self.wall_offset = 1_700_000_000.0

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.wall_offset


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    segment = FakeHub()
    yield segment
    segment.close()


def ping_frame(dst: bytes, src: bytes, seq: int) -> bytes:
    body = Ping(ident=7, ts_ns=1, filler=bytes(20))
    payload = encode_payload(body)
    return native.build_frame(dst, src, DEFAULT_ETHERTYPE, FrameType.PING, 0, 0, seq, payload)


def test_pong_leaves_in_the_turn_that_received_the_ping(hub: FakeHub) -> None:
    sock = hub.socket(2)
    runner = NodeRunner(sock, NodeEngine(sock.mac, "bravo", sock.mtu, rng=random.Random(1)))
    peer = hub.socket(1)
    for seq in (1, 2, 3):
        sock.inject(ping_frame(sock.mac, peer.mac, seq))
        sent_before = len(sock.sent)
        # One turn: no timer is due, so only the frame can make it answer.
        runner.step(0.0)
        pongs = [native.parse_frame(f) for f in sock.sent[sent_before:]]
        assert [(p.type, p.seq) for p in pongs] == [(FrameType.PONG, seq)]
        assert pongs[0].dst == peer.mac
        # PROTOCOL.md §PING, PONG: the payload comes back byte for byte.
        ping_bytes = ping_frame(sock.mac, peer.mac, seq)
        ping = native.parse_frame(ping_bytes)
        pong = pongs[0]
        assert ping.payload_len == pong.payload_len
        assert (
            sock.sent[-1][pong.payload_off : pong.payload_off + pong.payload_len]
            == ping_bytes[ping.payload_off : ping.payload_off + ping.payload_len]
        )
    assert runner.engine.counters["frames_in"] == 3
    runner.close()


def test_an_undecoded_ping_meets_the_same_checks_as_a_decoded_one() -> None:
    config = NodeConfig(pong_burst_per_peer=2, pong_rate_per_peer=0.001)
    engine = NodeEngine(B, "bravo", 1500, rng=random.Random(1), config=config)
    other = b"\x02\x00\x00\x00\x00\x07"
    assert not engine.answer_ping(B, B, 20, 0.0)  # our own frame, looped back
    assert not engine.answer_ping(b"\x03" + A[1:], B, 20, 0.0)  # a group address as source
    assert not engine.answer_ping(A, b"\xff" * 6, 20, 0.0)  # broadcast: no amplification
    assert not engine.answer_ping(A, other, 20, 0.0)  # for another node
    assert not engine.answer_ping(A, B, 11, 0.0)  # too short to hold ident and ts_ns
    assert [engine.answer_ping(A, B, 12, 0.0) for _ in range(4)] == [True, True, False, False]
    assert engine.drops == Counter(
        own_frame=1, bad_source=1, not_for_us=2, bad_payload=1, rate_limited=2
    )
    assert engine.counters["frames_in"] == 9 and engine.counters["frames_out"] == 2


def test_round_trip_starts_when_the_ping_leaves_the_engine() -> None:
    pinger = Pinger(A, random.Random(0), NodeConfig(), Counter())
    seq = pinger.ping(B, 10.0, size=40)
    # The adapter was busy for 0.3 s before it took the PING for the wire.
    (ping,) = pinger.frames_to_send(10.3)
    assert isinstance(ping.body, Ping)
    pinger.receive_frame(Frame(A, B, 0, seq, Pong.echo(ping.body)), 10.35)
    reply = pinger.next_event()
    assert isinstance(reply, PingReply)
    assert reply.rtt_ns == pytest.approx(50_000_000, abs=1)


def test_round_trip_starts_at_the_send_the_adapter_reports() -> None:
    pinger = Pinger(A, random.Random(0), NodeConfig(), Counter())
    first = pinger.ping(B, 10.0, size=40)
    (ping,) = pinger.frames_to_send(10.3)
    pinger.frames_sent(10.32)  # encoded; the send system call comes next
    second = pinger.ping(B, 10.4, size=40)  # not handed out yet: the report is not about it
    pinger.frames_sent(10.45)
    assert isinstance(ping.body, Ping)
    pinger.receive_frame(Frame(A, B, 0, first, Pong.echo(ping.body)), 10.35)
    (ping2,) = pinger.frames_to_send(10.5)
    assert isinstance(ping2.body, Ping)
    pinger.receive_frame(Frame(A, B, 0, second, Pong.echo(ping2.body)), 10.6)
    replies = [pinger.next_event(), pinger.next_event()]
    assert [r.rtt_ns for r in replies if isinstance(r, PingReply)] == [
        pytest.approx(30_000_000, abs=1),
        pytest.approx(100_000_000, abs=1),
    ]


def test_unsent_ping_is_still_declared_lost_on_time() -> None:
    config = NodeConfig()
    pinger = Pinger(A, random.Random(0), config, Counter())
    pinger.ping(B, 10.0)
    pinger.frames_to_send(10.5)
    timer = pinger.next_timer()
    assert timer == pytest.approx(10.5 + config.ping_timeout)


def test_arrival_time_is_the_kernel_stamp_within_bounds(hub: FakeHub) -> None:
    clock = FakeClock()
    sock = hub.socket(1)
    engine = NodeEngine(sock.mac, "alpha", sock.mtu, rng=random.Random(1))
    runner = NodeRunner(sock, engine, clock=clock.mono, wall_clock=clock.wall)
    runner.now()  # the engine was given t=100.0
    clock.t = 100.010
    wall = clock.wall()
    stamp = round((wall - 0.004) * 1e9)  # arrived 4 ms ago, while the loop was asleep
    arrived = runner.stamp_time(stamp, clock.t, wall)
    assert arrived == pytest.approx(100.006, abs=1e-6)
    assert runner.arrival_time(arrived, clock.t) == pytest.approx(100.006, abs=1e-6)
    assert runner.stamp_time(0, clock.t, wall) is None  # no stamp
    assert runner.arrival_time(None, clock.t) == clock.t  # ... is now
    future = round((wall + 0.5) * 1e9)
    assert runner.stamp_time(future, clock.t, wall) is None  # a clock step
    ancient = round((wall - 30) * 1e9)
    assert runner.stamp_time(ancient, clock.t, wall) is None
    # Never before a time the engine already had: its clock must not run backwards. The stamp
    # itself is still what it was (a PONG's round trip ends there).
    runner.now()
    assert runner.arrival_time(arrived, clock.t) == clock.t
    assert runner.stamp_time(stamp, clock.t, wall) == pytest.approx(100.006, abs=1e-6)
    runner.close()


def test_round_trip_ends_at_the_pong_stamp_even_after_the_loop_moved_on(hub: FakeHub) -> None:
    # The PONG can arrive while the sending turn is still busy after its send call (on one
    # core the responder even runs inside it); that turn's later clock reads must not count.
    clock = FakeClock()
    sock, peer = hub.socket(1), hub.socket(2)
    engine = NodeEngine(sock.mac, "alpha", sock.mtu, rng=random.Random(1))
    runner = NodeRunner(sock, engine, clock=clock.mono, wall_clock=clock.wall)
    replies: list[PingReply] = []
    runner.subscribe(lambda ev: replies.append(ev) if isinstance(ev, PingReply) else None)
    seq = engine.ping(peer.mac, runner.now(), 40)
    runner.flush()  # on the wire at t=100.000
    ping = native.parse_frame(sock.sent[-1])
    payload = sock.sent[-1][ping.payload_off : ping.payload_off + ping.payload_len]
    clock.t = 100.003
    runner.now()  # the turn's bookkeeping after the send, 3 ms later
    pong = native.build_frame(
        sock.mac, peer.mac, DEFAULT_ETHERTYPE, FrameType.PONG, 0, 0, seq, payload
    )
    sock.inject(pong, stamp_ns=round((100.001 + clock.wall_offset) * 1e9))  # 1 ms after
    clock.t = 100.005
    runner.step(0.0)
    assert [r.seq for r in replies] == [seq]
    assert replies[0].rtt_ns == pytest.approx(1_000_000, abs=2_000)
    runner.close()


def test_an_arrival_before_the_send_is_not_believed() -> None:
    # A wall-clock step between the send and the PONG can turn the kernel's stamp into an
    # engine time before the PING left: the round trip then ends at `now`, never at 0.
    pinger = Pinger(A, random.Random(0), NodeConfig(), Counter())
    seq = pinger.ping(B, 10.0, size=40)
    (ping,) = pinger.frames_to_send(10.0)
    assert isinstance(ping.body, Ping)
    pong = Frame(A, B, 0, seq, Pong.echo(ping.body))
    pinger.receive_frame(pong, 10.002, arrived=9.999)
    reply = pinger.next_event()
    assert isinstance(reply, PingReply)
    assert reply.rtt_ns == pytest.approx(2_000_000, abs=1)


class Recorder:
    """A ping client: the messages, and how many frames were on the wire at each."""

    def __init__(self, sock: FakeSocket) -> None:
        self.sock = sock
        self.messages: list[tuple[dict[str, Any], int]] = []

    def send(self, obj: dict[str, Any]) -> bool:
        self.messages.append((obj, len(self.sock.sent)))
        return True

    def events(self) -> list[str]:
        return [m["event"] for m, _ in self.messages]


def test_client_hears_of_a_ping_only_after_it_is_on_the_wire(hub: FakeHub) -> None:
    a_sock, b_sock = hub.socket(1), hub.socket(2)
    a = NodeRunner(a_sock, NodeEngine(a_sock.mac, "alpha", 1500, rng=random.Random(1)))
    b = NodeRunner(b_sock, NodeEngine(b_sock.mac, "bravo", 1500, rng=random.Random(2)))
    client = Recorder(a_sock)
    jobs: dict[int, PingJob] = {}
    job = PingJob(a, peer=b_sock.mac, count=3, interval=0.01, size=56, send=client.send, jobs=jobs)

    def to_job(ev: object) -> None:
        if isinstance(ev, PingReply) and ev.seq in jobs:
            jobs[ev.seq].on_event(ev)

    a.subscribe(to_job)
    job.start("bravo")
    # The first PING left inside start(), before the loop turned at all.
    assert [native.parse_frame(f).type for f in a_sock.sent] == [FrameType.PING]
    for _ in range(2000):
        if job.finished:
            break
        a.step(0.002)
        b.step(0.0)
    assert job.finished
    events = client.events()
    assert events[0] == "start" and events[-1] == "done"
    assert events.count("sent") == events.count("reply") == 3
    order = [(m["event"], m.get("seq")) for m, _ in client.messages]
    for seq in (1, 2, 3):  # the client hears of each PING before its answer
        assert order.index(("sent", seq)) < order.index(("reply", seq))
    for obj, on_wire in client.messages:
        if obj["event"] == "sent":
            pings = [native.parse_frame(f) for f in a_sock.sent[:on_wire]]
            assert obj["seq"] in [p.seq for p in pings if p.type == FrameType.PING]
    a.close()
    b.close()


def test_unanswered_ping_is_announced_after_the_notice_delay(hub: FakeHub) -> None:
    clock = FakeClock()
    a_sock = hub.socket(1)
    engine = NodeEngine(a_sock.mac, "alpha", 1500, rng=random.Random(1))
    a = NodeRunner(a_sock, engine, clock=clock.mono, wall_clock=clock.wall)
    client = Recorder(a_sock)
    absent = b"\x02\x00\x00\x00\x00\x09"
    job = PingJob(a, peer=absent, count=0, interval=10.0, size=56, send=client.send, jobs={})
    job.start("nobody")
    a.step(0.0)
    assert client.events() == ["start"]  # in flight: the client is not woken yet
    clock.t += SENT_NOTICE_DELAY / 2
    a.step(0.0)
    assert client.events() == ["start"]
    clock.t += SENT_NOTICE_DELAY
    a.step(0.0)
    assert client.events() == ["start", "sent"]
    job.cancel()
    a.close()


def test_runner_stamps_a_ping_right_before_its_send_call(hub: FakeHub) -> None:
    # Every clock read advances this clock by 1 ms and the engine's bookkeeping by 5 ms, so
    # the stamp the engine gets tells which read it was: it must be the clock's reading right
    # before the send system call, with neither the bookkeeping nor the encoding before it.
    ticks = [100.0]

    def ticking() -> float:
        ticks[0] += 0.001
        return ticks[0]

    a_sock, b_sock = hub.socket(1), hub.socket(2)
    engine = NodeEngine(a_sock.mac, "alpha", 1500, rng=random.Random(1))
    runner = NodeRunner(a_sock, engine, clock=ticking)
    at_send: list[float] = []
    stamps: list[float] = []
    real_send, real_sent = a_sock.send_frames, engine.frames_sent

    def send_frames(frames: list[bytes]) -> int:
        at_send.append(ticks[0])  # the clock's last reading before this call
        return real_send(frames)

    def frames_sent(now: float) -> None:
        stamps.append(now)
        real_sent(now)
        ticks[0] += 0.005  # the engine's bookkeeping takes time: it must not be in the trip

    a_sock.send_frames = send_frames  # type: ignore[method-assign]
    engine.frames_sent = frames_sent  # type: ignore[method-assign]
    engine.ping(b_sock.mac, runner.now())
    runner.flush()
    assert len(a_sock.sent) == 1 and native.parse_frame(a_sock.sent[0]).type == FrameType.PING
    assert stamps == at_send
    runner.close()
