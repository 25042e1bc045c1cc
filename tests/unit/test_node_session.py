"""Sessions through NodeEngines on the in-memory LAN: handshake, negotiation, liveness, close."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.node.auth import KEY_LEN, LanKey
from l2fast.node.config import NodeConfig
from l2fast.node.events import (
    ChatDelivered,
    ChatReceived,
    ControlReceived,
    SessionClosed,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.node import NodeEngine
from l2fast.node.states import SessionState
from l2fast.wire.constants import HDR_LEN, Digest, ErrorCode, Features, FrameType
from l2fast.wire.frames import Frame, encode_payload
from l2fast.wire.frames_transfer import FileHeld, FileInline
from tests.node_harness import Lan, pair, triple

HANDSHAKE = [FrameType.SYN, FrameType.SYN_ACK, FrameType.ACK, FrameType.PROBE, FrameType.PROBE_ACK]


def both_open(lan: Lan, a: NodeEngine, b: NodeEngine) -> bool:
    return lan.has(a, SessionOpened) and lan.has(b, SessionOpened)


def test_handshake_opens_both_ends_with_the_same_session() -> None:
    lan, a, b = pair(wire=True)
    sid = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    (oa,), (ob,) = lan.of(a, SessionOpened), lan.of(b, SessionOpened)
    assert oa.session == ob.session == sid
    assert (oa.peer, ob.peer) == (b.mac, a.mac)
    assert oa.initiator and not ob.initiator
    assert oa.params == replace(ob.params, local_window=oa.params.local_window)
    assert oa.params.mtu == 1500 and oa.params.version == 1
    assert oa.params.digest is Digest.SHA256 and oa.params.compression
    # One of each handshake frame, nothing repeated on a clean LAN.
    assert [lan.sent[t] for t in HANDSHAKE] == [1, 1, 1, 1, 1]


# How many of each handshake frame go out when one is lost: what repairs the loss.
RECOVERY = {
    FrameType.SYN: [2, 1, 1, 1, 1],  # the initiator repeats its SYN
    FrameType.SYN_ACK: [2, 2, 1, 1, 1],  # ... and the responder answers the repeat
    FrameType.ACK: [1, 1, 1, 1, 1],  # the PROBE stands in for the lost ACK
    FrameType.PROBE: [1, 1, 1, 2, 1],  # the initiator repeats its PROBE
    FrameType.PROBE_ACK: [1, 1, 1, 2, 2],  # ... and the responder answers the repeat
}


@pytest.mark.parametrize("lost", HANDSHAKE, ids=lambda t: t.name)
def test_handshake_survives_the_loss_of_any_single_frame(lost: FrameType) -> None:
    lan, a, b = pair(wire=True)
    lan.drop(lost)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=3)
    assert lan.lost[lost] == 1
    assert [lan.sent[t] for t in HANDSHAKE] == RECOVERY[lost]
    assert not lan.has(a, SessionFailed) and not lan.has(b, SessionFailed)
    # And the session works: a message goes both ways.
    a.send_chat(b.mac, "over", lan.now)
    b.send_chat(a.mac, "back", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered) and lan.has(b, ChatDelivered), timeout=3)
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"over"]
    assert [m.text for m in lan.of(a, ChatReceived)] == [b"back"]
    assert len(a.sessions()) == len(b.sessions()) == 1


@pytest.mark.parametrize("first,second", [(0, 3), (1, 4), (3, 4), (1, 2)])
def test_handshake_survives_two_losses(first: int, second: int) -> None:
    lan, a, b = pair()
    lan.drop(HANDSHAKE[first])
    lan.drop(HANDSHAKE[second])
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=5)


@pytest.mark.parametrize("seed", range(20))
def test_handshake_under_random_faults(seed: int) -> None:
    lan, a, b = pair(seed, loss=0.05, dup=0.05, reorder=0.05)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=5)
    assert len(lan.of(a, SessionOpened)) == len(lan.of(b, SessionOpened)) == 1


def test_mtu_is_the_smaller_one_and_probed_at_full_size() -> None:
    lan = Lan(wire=True)
    a, b = lan.add(mtu=9000), lan.add(mtu=4000)
    probes: list[Frame] = []
    lan.tap = lambda f: probes.append(f) if f.type is FrameType.PROBE else None
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    assert lan.of(a, SessionOpened)[0].params.mtu == 4000
    assert lan.of(b, SessionOpened)[0].params.mtu == 4000
    assert [HDR_LEN + len(encode_payload(p.body)) for p in probes] == [4000]


def test_probe_that_cannot_pass_fails_with_mtu_probe_failed() -> None:
    # Both ends say 9000, but a switch in between only passes 1500.
    lan = Lan(path_mtu=1500)
    a, b = lan.add(mtu=9000), lan.add(mtu=9000)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=10)
    (failed,) = lan.of(a, SessionFailed)
    assert failed.error.code == ErrorCode.MTU_PROBE_FAILED
    assert "9000" in failed.error.message
    assert lan.sent[FrameType.PROBE] == 3  # PROTOCOL.md §PROBE: three probes, then give up
    assert not lan.has(a, SessionOpened)
    # The responder hears of it (ERROR mtu_probe_failed) instead of waiting out a timeout.
    assert lan.run(lambda: lan.has(b, SessionFailed), timeout=0.1)
    assert lan.of(b, SessionFailed)[0].error.code == ErrorCode.MTU_PROBE_FAILED


def test_features_and_digest_are_negotiated() -> None:
    lan = Lan()
    a = lan.add(config=NodeConfig(features=Features.NONE))
    b = lan.add(config=NodeConfig(digests=Digest.BLAKE2B_256))
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    for node in (a, b):
        params = lan.of(node, SessionOpened)[0].params
        assert params.features is Features.NONE and not params.compression
        assert params.digest is Digest.BLAKE2B_256


def test_no_common_digest_is_refused() -> None:
    lan = Lan()
    a = lan.add(config=NodeConfig(digests=Digest.SHA256))
    b = lan.add(config=NodeConfig(digests=Digest.BLAKE2B_256))
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=1)
    assert lan.of(a, SessionFailed)[0].error.code == ErrorCode.BAD_REQUEST
    assert b.drops["refused_syn"] == 1 and not b.sessions()


def test_no_common_version_is_refused() -> None:
    lan = Lan()
    a = lan.add(config=NodeConfig(ver_min=2, ver_max=3))
    b = lan.add()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=1)
    error = lan.of(a, SessionFailed)[0].error
    assert error.code == ErrorCode.NO_COMMON_VERSION
    assert "no_common_version" in error.message


def test_absent_peer_fails_after_the_handshake_timeout() -> None:
    lan, a, _ = pair()
    start = lan.now
    a.open_session(b"\x02\x00\x00\x00\x00\x63", lan.now)  # nobody has this MAC
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=30)
    (failed,) = lan.of(a, SessionFailed)
    assert failed.error.code == ErrorCode.TIMEOUT
    assert "no answer" in failed.error.message
    assert lan.now - start == pytest.approx(5.0, abs=0.01)
    assert 3 <= lan.sent[FrameType.SYN] <= 8  # repeated with backoff, not flooded
    lan.run_for(0.1)
    assert a.sessions() == []


def test_idle_session_is_kept_alive_by_keepalives() -> None:
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    lan.run_for(30.0)
    assert not lan.has(a, SessionFailed) and not lan.has(b, SessionFailed)
    # About one KEEPALIVE per second per side (PROTOCOL.md §KEEPALIVE).
    assert 40 <= lan.sent[FrameType.KEEPALIVE] <= 70
    assert [s.state for s in a.sessions()] == [SessionState.OPEN]


def test_dead_peer_is_detected_with_a_clear_error() -> None:
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    lan.run_for(2.0)
    lan.unplug(b)
    gone = lan.now
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=20)
    (failed,) = lan.of(a, SessionFailed)
    assert failed.error.code == ErrorCode.TIMEOUT
    assert "sent nothing for 5.0 s" in failed.error.message
    assert b.mac.hex(":") in failed.error.message
    assert 4.0 <= lan.now - gone <= 5.5
    lan.run_for(0.1)
    assert a.sessions() == []


@pytest.mark.parametrize("back_after", [None, 3.0])
def test_a_session_timing_out_while_this_nodes_link_was_lost_says_so(
    back_after: float | None,
) -> None:
    # Told by the adapter (the daemon reads the interface): down, or no carrier.
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    lan.unplug(a)
    a.link_down("interface eth9 lost its link (down, or no carrier)")
    if back_after is not None:  # back, but too late for this session
        lan.run_for(back_after)
        a.link_up(lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=20)
    (failed,) = lan.of(a, SessionFailed)
    assert failed.error.code == ErrorCode.TIMEOUT
    assert failed.error.message == (
        f"peer {b.mac.hex(':')} sent nothing for 5.0 s: it is down, unplugged or no longer "
        "running l2fast; this node's interface eth9 lost its link (down, or no carrier) "
        "meanwhile, so nothing was sent or heard"
    )
    # The peer's side failed as any peer's does: its link never went.
    assert lan.run(lambda: lan.has(b, SessionFailed), timeout=20)
    assert "this node's" not in lan.of(b, SessionFailed)[0].error.message


def test_a_link_lost_long_before_a_session_failed_is_not_blamed() -> None:
    lan, a, b = pair()
    a.link_down("interface eth9 lost its link (down, or no carrier)")
    lan.run_for(1.0)
    a.link_up(lan.now)
    lan.run_for(15.0)  # longer than any session timeout
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    lan.unplug(b)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=20)
    assert "this node's" not in lan.of(a, SessionFailed)[0].error.message


def test_orderly_close_from_either_side() -> None:
    lan, a, b = pair(wire=True)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    assert b.close(a.mac, lan.now, reason=0, text="bye") == 1
    assert lan.run(lambda: lan.has(a, SessionClosed) and lan.has(b, SessionClosed), timeout=2)
    (ca,), (cb,) = lan.of(a, SessionClosed), lan.of(b, SessionClosed)
    assert ca.by_peer and not cb.by_peer
    assert ca.text == cb.text == "bye"
    assert lan.sent[FrameType.CLOSE] == 1
    # Both forget the session after lingering, and nothing failed.
    lan.run_for(5.0)
    assert a.sessions() == [] and b.sessions() == []
    assert not lan.has(a, SessionFailed) and not lan.has(b, SessionFailed)


def test_close_session_ends_only_that_session() -> None:
    lan, a, b = pair(wire=True)
    first = a.open_session(b.mac, lan.now)
    second = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: len(lan.of(a, SessionOpened)) == 2, timeout=1)
    assert a.close_session(b.mac, first, lan.now)
    assert lan.run(lambda: lan.has(b, SessionClosed), timeout=2)
    assert [c.session for c in lan.of(b, SessionClosed)] == [first]
    lan.run_for(5.0)
    # The other session with the same peer stays open; closing it twice is a no-op.
    assert [s.session for s in a.sessions()] == [second]
    assert not a.close_session(b.mac, first, lan.now)
    assert not a.close_session(b.mac, 0x1234, lan.now)


def test_close_survives_a_lost_close_and_a_lost_ack() -> None:
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    lan.drop(FrameType.CLOSE)
    lan.drop(FrameType.CTRL_ACK, src=b)
    a.close(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionClosed) and lan.has(b, SessionClosed), timeout=3)
    assert lan.sent[FrameType.CLOSE] == 3
    assert len(lan.of(b, SessionClosed)) == 1


def test_chat_queued_before_close_is_delivered_first() -> None:
    lan, a, b = pair()
    for i in range(5):
        a.send_chat(b.mac, f"m{i}" * 1000, lan.now)
    a.close(b.mac, lan.now)
    assert lan.run(lambda: lan.has(b, SessionClosed) and lan.has(a, SessionClosed), timeout=5)
    received = [m.text[:2] for m in lan.of(b, ChatReceived)]
    assert received == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert len(lan.of(a, ChatDelivered)) == 5


def test_sessions_to_several_peers_at_once() -> None:
    lan, a, b, c = triple(seed=2, loss=0.05, dup=0.05, reorder=0.05)
    a.open_session(b.mac, lan.now)
    a.open_session(c.mac, lan.now)
    b.open_session(c.mac, lan.now)
    assert lan.run(lambda: lan.has(c, SessionOpened, 2) and lan.has(a, SessionOpened, 2), 5)
    assert {s.peer for s in a.sessions()} == {b.mac, c.mac}
    assert len(c.sessions()) == 2


def test_simultaneous_open_gives_two_working_sessions() -> None:
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    b.open_session(a.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened, 2) and lan.has(b, SessionOpened, 2), 1)
    for i in range(3):
        a.send_chat(b.mac, f"a{i}", lan.now)
        b.send_chat(a.mac, f"b{i}", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered, 3) and lan.has(b, ChatDelivered, 3), 2)
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"a0", b"a1", b"a2"]
    assert [m.text for m in lan.of(a, ChatReceived)] == [b"b0", b"b1", b"b2"]


def test_close_during_handshake_without_chat_abandons_at_once() -> None:
    lan, a, b = pair()
    a.open_session(b.mac, lan.now)
    a.close(b.mac, lan.now, text="never mind")
    lan.run_for(0.001)
    (closed,) = lan.of(a, SessionClosed)
    assert not closed.by_peer and closed.text == "never mind"
    assert not lan.has(a, SessionOpened)


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "LAN key"])
def test_a_control_frame_is_encoded_once_and_every_copy_sends_those_bytes(keyed: bool) -> None:
    lan = Lan()

    def key() -> LanKey | None:  # each node its own nonce source, the same secret
        return LanKey(bytes(range(KEY_LEN)), nonces=random.Random(len(lan.nodes)).randbytes)

    a = lan.add(mtu=1500, key=key() if keyed else None)
    b = lan.add(mtu=1500, key=key() if keyed else None)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    session = lan.of(a, SessionOpened)[0].session
    sent: list[Frame] = []  # as the engine hands them out (the harness re-decodes sealed ones)
    engine_frames = a.frames_to_send

    def spy(now: float) -> list[Frame]:
        out = engine_frames(now)
        sent.extend(f for f in out if f.type is FrameType.FILE_HELD)
        return out

    a.frames_to_send = spy  # type: ignore[method-assign]
    lan.drop(FrameType.FILE_HELD)  # the first copy is lost: the retransmission goes too
    body = FileHeld(1, 2, "waiting")
    a.send_control(b.mac, session, body, lan.now)
    assert lan.run(lambda: lan.has(b, ControlReceived), timeout=5)
    assert [e.body for e in lan.of(b, ControlReceived)] == [body]
    assert len(sent) == 2
    assert all(f.encoded == encode_payload(body) for f in sent)
    assert all((f.seal is not None) is keyed for f in sent)  # sealing keeps the bytes


def test_a_control_frame_over_the_session_mtu_is_refused_before_it_is_queued() -> None:
    lan = Lan(wire=True)
    a, b = lan.add(mtu=1500), lan.add(mtu=1500)
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: both_open(lan, a, b), timeout=1)
    session = lan.of(a, SessionOpened)[0].session

    def inline(size: int) -> FileInline:
        return FileInline(1, 0, 1, size, 0o644, 0, 0, 1400, "a", bytes(32), bytes(size))

    fits = max(n for n in range(1300, 1500) if HDR_LEN + len(encode_payload(inline(n))) <= 1500)
    a.send_control(b.mac, session, inline(fits), lan.now)
    with pytest.raises(LocalProtocolError, match="FILE_INLINE frame exceeds the session MTU 1500"):
        a.send_control(b.mac, session, inline(fits + 1), lan.now)
    assert lan.run(lambda: lan.has(b, ControlReceived), timeout=5)
    lan.run_for(1.0)
    assert [e.body for e in lan.of(b, ControlReceived)] == [inline(fits)]
