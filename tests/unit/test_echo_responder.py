"""The C echo responder's per-frame decision (csrc/echo.c), without sockets: PONG bytes, the
drop reasons and the rate limits, against the Python path (`NodeEngine.answer_ping`,
`ReplyLimiter`) it replaces in the daemon."""

from __future__ import annotations

import random

import pytest

from l2fast import native
from l2fast.errors import NativeError
from l2fast.native.echo import PEER_SLOTS, EchoConfig, EchoCounters, EchoResponder
from l2fast.node.ratelimit import ReplyLimiter
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType, Verdict

US = b"\x02\x00\x00\x00\x00\x01"
PEER = b"\x02\x00\x00\x00\x00\x02"
BROADCAST = b"\xff" * 6
MS = 1_000_000


def ping(src: bytes = PEER, dst: bytes = US, seq: int = 7, payload: bytes | None = None) -> bytes:
    if payload is None:
        payload = bytes(range(56))
    return native.build_frame(dst, src, DEFAULT_ETHERTYPE, FrameType.PING, 0, 0, seq, payload)


def responder(**kw: float) -> EchoResponder:
    return EchoResponder(EchoConfig(mac=US, mtu=1500, **kw))  # type: ignore[arg-type]


def test_pong_is_the_ping_echoed_byte_for_byte() -> None:
    payload = bytes(random.Random(1).randbytes(300))
    frame = ping(seq=0x0102030405060708, payload=payload)
    with responder() as r:
        pong = r.handle_frame(frame, 0)
        # What the Python path (runner._answer_ping) builds for the same PING.
        expected = native.build_frame(
            PEER, US, DEFAULT_ETHERTYPE, FrameType.PONG, 0, 0, 0x0102030405060708, payload
        )
        assert pong == expected
        assert native.parse_frame(pong).verdict is Verdict.OK
        c = r.counters()
        assert (c.rx, c.accepted, c.answered) == (1, 1, 1)
        assert c.drops() == {}


def test_padding_after_the_payload_is_not_echoed() -> None:
    frame = ping(payload=bytes(12)) + b"\xaa" * 20  # a short frame padded to Ethernet's 60
    with responder() as r:
        pong = r.handle_frame(frame, 0)
        assert pong is not None and len(pong) == 38 + 12


def _corrupt(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[-1] ^= 1
    return bytes(b)


HOSTILE = {
    "bad_crc": _corrupt(ping()),
    "short": ping()[:30],
    "bad_length": ping()[:50],  # claims 56 payload bytes, holds 12
    "bad_source": ping(src=b"\x03\x00\x00\x00\x00\x09"),
    "own_frame": ping(src=US),
    "not_for_us": ping(dst=BROADCAST),
    "bad_payload": ping(payload=bytes(11)),
    "not_ping": native.build_frame(US, PEER, DEFAULT_ETHERTYPE, FrameType.PONG, 0, 0, 1, bytes(12)),
    "bad_magic": US + PEER + DEFAULT_ETHERTYPE.to_bytes(2, "big") + b"\x00" * 40,
}


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_hostile_frames_get_no_reply_and_are_counted(reason: str) -> None:
    frame = HOSTILE[reason]
    with responder() as r:
        assert r.handle_frame(frame, 0) is None
        c = r.counters()
        assert c.drops() == {reason: 1}
        assert (c.rx, c.answered) == (1, 0)


def test_oversized_frame_is_cut_to_the_slot_and_rejected() -> None:
    with responder() as r:
        # 9000 payload bytes at MTU 1500: the slot keeps 1532 bytes, the claimed length lies
        # beyond them (as recvmmsg with MSG_TRUNC delivers it).
        assert r.handle_frame(ping(payload=bytes(9000)), 0) is None
        assert r.counters().drops() == {"bad_length": 1}


def test_handle_frame_survives_every_prefix_and_bit_flip() -> None:
    frame = ping()
    with responder(burst_per_peer=1e6, burst_global=1e6) as r:
        for n in range(len(frame) + 1):
            r.handle_frame(frame[:n], 0)
        for bit in range(len(frame) * 8):
            b = bytearray(frame)
            b[bit // 8] ^= 1 << (bit % 8)
            r.handle_frame(bytes(b), 0)
        c = r.counters()
        assert c.rx == len(frame) + 1 + len(frame) * 8
        assert c.rx == c.answered + sum(c.drops().values())


def test_rate_limits_match_the_python_limiter() -> None:
    """Same peers, same times: the C buckets and ReplyLimiter decide alike (no eviction)."""
    rng = random.Random(5)
    peers = [bytes([2, 0, 0, 0, 1, i]) for i in range(8)]
    kw = dict(rate_per_peer=50.0, burst_per_peer=5.0, rate_global=120.0, burst_global=20.0)
    limiter = ReplyLimiter(**kw)
    now_ns = 10**12
    with responder(**kw) as r:
        for i in range(5000):
            # Odd steps: a bucket landing exactly on 1.0 token would be decided by float
            # rounding, which differs between ns integers (C) and float seconds (Python).
            now_ns += rng.choice((0, 10_000, 300_000, 2 * MS, 20 * MS)) + rng.randrange(1, 997)
            peer = rng.choice(peers)
            want = limiter.allow(peer, now_ns / 1e9)
            got = r.handle_frame(ping(src=peer, seq=i), now_ns) is not None
            assert got == want, f"frame {i}"
        c = r.counters()
        assert c.answered + c.rate_limited == 5000
        assert c.rate_limited > 0 and c.answered > 0


def test_flood_from_random_macs_is_capped_by_the_global_bucket() -> None:
    rng = random.Random(9)
    with responder(rate_global=1000.0, burst_global=200.0) as r:
        now_ns = 10**12
        answered = 0
        for i in range(20_000):
            mac = bytes([rng.randrange(256) & 0xFE]) + rng.randbytes(5)  # unicast, random
            now_ns += 10_000  # 100 kpps for 0.2 s
            answered += r.handle_frame(ping(src=mac, seq=i), now_ns) is not None
        c = r.counters()
        # Burst plus what the rate refills over 0.2 s, nothing more.
        assert answered == c.answered <= 200 + 1000 * 0.2 + 1
        assert c.rate_limited == 20_000 - answered
        assert c.peers_evicted > 0  # the table stayed bounded
        assert c.peers_evicted <= 20_000 - PEER_SLOTS


def test_a_real_peer_keeps_its_share_during_a_flood() -> None:
    """Forged MACs evict only within their probe window, so a steady peer's bucket survives
    (or is handed back full): it is never refused more than the global bucket forces."""
    rng = random.Random(11)
    with responder(
        rate_global=1e6, burst_global=1e6, rate_per_peer=100.0, burst_per_peer=10.0
    ) as r:
        now_ns = 10**12
        real_answered = 0
        for i in range(20_000):
            now_ns += 50_000
            if i % 200 == 0:  # the real peer: 100 PINGs/s, within its rate
                real_answered += r.handle_frame(ping(src=PEER, seq=i), now_ns) is not None
            mac = bytes([rng.randrange(256) & 0xFE]) + rng.randbytes(5)
            r.handle_frame(ping(src=mac, seq=i), now_ns)
        assert real_answered == 100


def test_counters_default_and_after_close() -> None:
    r = responder()
    r.handle_frame(ping(), 0)
    r.close()
    assert r.counters().answered == 1
    r.close()
    assert EchoCounters().drops() == {}


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        EchoResponder(EchoConfig(mac=b"\x00", mtu=1500))
    with pytest.raises(ValueError):
        EchoResponder(EchoConfig(mac=US, mtu=1500, batch=0))
    with pytest.raises(NativeError):
        EchoResponder(EchoConfig(mac=US, mtu=1500, rate_global=float("nan")))


def test_verdict_names_follow_the_runner() -> None:
    with responder() as r:
        r.handle_frame(HOSTILE["bad_crc"], 0)
        assert dict(r.counters().verdicts) == {"bad_crc": 1}


def test_runner_without_a_raw_socket_keeps_answering_in_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from l2fast.daemon.runner import NodeRunner
    from l2fast.node.node import NodeEngine
    from tests.fake_wire import FakeHub

    sock = FakeHub().socket(0)
    runner = NodeRunner(sock, NodeEngine(sock.mac, "a", sock.mtu, rng=random.Random(1)))
    with caplog.at_level("INFO", logger="l2fast.daemon"):
        assert runner.start_echo_responder() is False
    assert runner.echo is None
    assert runner.echo_counters() == EchoCounters()
    assert "answered in the event loop" in caplog.text
    runner.close()
