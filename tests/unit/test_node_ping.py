"""Ping: PING / PONG echo, ping(8) statistics, loss, rate-limited replies."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.events import PingLost, PingReply
from l2fast.node.ping import Pinger
from l2fast.node.pingstats import RttStats
from l2fast.wire.constants import FrameType
from l2fast.wire.frames import Frame, Ping, Pong
from tests.node_harness import pair

A = b"\x02\x00\x00\x00\x00\x01"
B = b"\x02\x00\x00\x00\x00\x02"


def test_ping_reply_and_stats() -> None:
    lan, a, b = pair(wire=True, latency=0.0005)
    frames: list[Frame] = []
    lan.tap = frames.append
    for _ in range(5):
        a.ping(b.mac, lan.now, size=200)
        lan.run_for(1.0)
    replies = lan.of(a, PingReply)
    assert [r.seq for r in replies] == [1, 2, 3, 4, 5]
    assert all(r.rtt_ns == 1_000_000 and r.size == 200 and not r.duplicate for r in replies)
    stats = a.ping_stats(b.mac)
    assert (stats.sent, stats.received, stats.loss) == (5, 5, 0.0)
    assert stats.rtt_min_ns == stats.rtt_avg_ns == stats.rtt_max_ns == 1_000_000
    assert stats.rtt_mdev_ns == 0
    # The PONG is the PING's payload byte for byte, back to its source, same seq.
    pings = [f for f in frames if f.type is FrameType.PING]
    pongs = [f for f in frames if f.type is FrameType.PONG]
    for ping, pong in zip(pings, pongs, strict=True):
        assert isinstance(ping.body, Ping) and isinstance(pong.body, Pong)
        assert (pong.dst, pong.seq, pong.session) == (ping.src, ping.seq, 0)
        assert (pong.body.ident, pong.body.ts_ns, pong.body.filler) == (
            ping.body.ident,
            ping.body.ts_ns,
            ping.body.filler,
        )
        assert len(ping.body.filler) == 200 - 12


def test_loss_is_reported_like_ping() -> None:
    lan, a, b = pair(seed=3, loss=0.3)
    for _ in range(100):
        a.ping(b.mac, lan.now)
        lan.run_for(0.2)
    lan.run_for(3.0)
    stats = a.ping_stats(b.mac)
    lost = lan.of(a, PingLost)
    assert stats.sent == 100
    assert stats.received + len(lost) == 100
    assert stats.loss == pytest.approx(len(lost) / 100)
    assert 0.3 < stats.loss < 0.7  # a PING and its PONG each cross the lossy LAN


def test_rtt_stats_match_ping8_formulas() -> None:
    rng = random.Random(5)
    samples = [rng.randint(1_000, 90_000) for _ in range(50)]
    acc = RttStats()
    acc.sent = 60
    for s in samples:
        acc.add(s)
    stats = acc.summary()
    assert (stats.rtt_min_ns, stats.rtt_max_ns) == (min(samples), max(samples))
    assert stats.rtt_avg_ns == round(statistics.fmean(samples))
    assert stats.rtt_mdev_ns == pytest.approx(statistics.pstdev(samples), abs=1)
    assert stats.loss == pytest.approx(10 / 60)


def test_size_bounds() -> None:
    lan, a, b = pair()
    with pytest.raises(LocalProtocolError):
        a.ping(b.mac, lan.now, size=11)
    with pytest.raises(LocalProtocolError):
        a.ping(b.mac, lan.now, size=1500 - 24 + 1)
    a.ping(b.mac, lan.now, size=1500 - 24)
    assert lan.run(lambda: lan.has(a, PingReply), timeout=1)


def test_ping_flood_replies_are_rate_limited() -> None:
    config = NodeConfig()
    pinger = Pinger(B, random.Random(0), config, Counter())
    body = Ping(ident=1, ts_ns=0)
    for i in range(10_000):
        pinger.receive_frame(Frame(B, A, 0, i, body), i / 10_000)
    pongs = pinger.frames_to_send(1.0)
    assert len(pongs) <= config.pong_burst_per_peer + config.pong_rate_per_peer
    assert pinger._drops["rate_limited"] == 10_000 - len(pongs)


def test_forged_or_mangled_pongs_are_dropped() -> None:
    pinger = Pinger(A, random.Random(0), NodeConfig(), Counter())
    seq = pinger.ping(B, 0.0, size=40)
    (ping,) = pinger.frames_to_send(0.0)
    assert isinstance(ping.body, Ping)
    good = Pong.echo(ping.body)
    pinger.receive_frame(Frame(A, B, 0, seq, Pong(good.ident + 1, good.ts_ns, good.filler)), 0.1)
    pinger.receive_frame(Frame(A, B, 0, seq, Pong(good.ident, good.ts_ns, b"x" * 28)), 0.1)
    pinger.receive_frame(Frame(A, b"\x02\x00\x00\x00\x00\x07", 0, seq, good), 0.1)
    assert pinger.next_event() is None
    assert pinger._drops == Counter({"ping_unmatched": 1, "bad_pong": 2})
    pinger.receive_frame(Frame(A, B, 0, seq, good), 0.2)
    pinger.receive_frame(Frame(A, B, 0, seq, good), 0.3)
    first, dup = pinger.next_event(), pinger.next_event()
    assert isinstance(first, PingReply) and not first.duplicate
    assert isinstance(dup, PingReply) and dup.duplicate
    assert pinger.stats(B).received == 1 and pinger.stats(B).duplicates == 1


def test_broadcast_ping_is_not_answered() -> None:
    lan, a, b = pair()
    frame = Frame(b"\xff" * 6, a.mac, 0, 1, Ping(ident=1, ts_ns=0))
    b.receive_frame(frame, lan.now)
    assert [f for f in b.frames_to_send(lan.now) if f.type is FrameType.PONG] == []
    assert b.drops["not_for_us"] == 1
