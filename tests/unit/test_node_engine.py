"""NodeEngine as a whole: drop counters, limits, misuse, and property tests over (state, frame).

STYLE.md §14: any frame in any state either makes a valid transition or raises our protocol
error (a Session), and a NodeEngine never raises for anything received: it counts a drop.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.events import ChatDelivered, SessionFailed, SessionOpened
from l2fast.node.negotiation import negotiate
from l2fast.node.node import NodeEngine
from l2fast.node.session import Session
from l2fast.node.states import TRANSITIONS, Role, SessionState
from l2fast.wire.constants import BROADCAST_MAC, ErrorCode, FrameType
from l2fast.wire.frames import (
    Body,
    Chat,
    Close,
    CtrlAck,
    Error,
    Frame,
    Keepalive,
    Probe,
    Syn,
)
from tests.node_harness import pair
from tests.strategies import bodies, u16, u64

A = b"\x02\x00\x00\x00\x00\x01"
B = b"\x02\x00\x00\x00\x00\x02"
SID = 0x1234
CONFIG = NodeConfig()

# --- sessions driven by hand into every state ---------------------------------------------------


def _exchange(x: Session, y: Session, now: float, keep: Callable[[Frame], bool]) -> None:
    for _ in range(20):
        moved = False
        for src, dst in ((x, y), (y, x)):
            for frame in src.frames_to_send(now):
                if keep(frame):
                    moved = True
                    with contextlib.suppress(RemoteProtocolError):
                        dst.receive_frame(frame, now)
        if not moved:
            return


def _pair() -> tuple[Session, Session]:
    ini = Session(
        role=Role.INITIATOR,
        session_id=SID,
        local_mac=A,
        peer_mac=B,
        node_id=1,
        local_mtu=1500,
        config=CONFIG,
        drops=Counter(),
        now=0.0,
    )
    ini.open(0.0)
    (syn,) = ini.frames_to_send(0.0)
    assert isinstance(syn.body, Syn)
    resp = Session.accept(
        syn,
        negotiate(syn.body, CONFIG, 1500),
        local_mac=B,
        node_id=2,
        local_mtu=1500,
        config=CONFIG,
        drops=Counter(),
        now=0.0,
    )
    return ini, resp


def _only(*kinds: FrameType) -> Callable[[Frame], bool]:
    return lambda f: f.type in kinds


def _everything(f: Frame) -> bool:
    return True


def session_in(role: Role, state: SessionState) -> Session:
    """A session of `role` brought into `state` by a real exchange with its peer."""
    ini, resp = _pair()
    me = ini if role is Role.INITIATOR else resp
    if state is SessionState.IDLE:
        return Session(
            role=Role.INITIATOR,
            session_id=SID,
            local_mac=A,
            peer_mac=B,
            node_id=1,
            local_mtu=1500,
            config=CONFIG,
            drops=Counter(),
            now=0.0,
        )
    if state in (SessionState.SYN_SENT, SessionState.SYN_RCVD):
        return me
    if state is SessionState.PROBING:
        (syn_ack,) = resp.frames_to_send(0.0)
        ini.receive_frame(syn_ack, 0.0)
        return ini
    if state is SessionState.PROBE_WAIT:
        _exchange(resp, ini, 0.0, _only(FrameType.SYN_ACK, FrameType.ACK))
        return resp
    _exchange(resp, ini, 0.001, _everything)
    assert me.state is SessionState.OPEN
    if state is SessionState.OPEN:
        me.send_control(Chat(msg_id=1, total_len=2, frag_offset=0, to_all=False, data=b"hi"), 0.0)
        return me
    me.close(0.002)
    if state is SessionState.CLOSING:
        return me
    if state is SessionState.CLOSED:
        _exchange(me, ini if me is resp else resp, 0.003, _everything)
        return me
    me.receive_frame(Frame(me.local_mac, me.peer_mac, SID, 0, Error(code=3)), 0.003)
    assert state is SessionState.FAILED
    return me


ROLE_STATES = [
    (role, state)
    for role in Role
    for state in SessionState
    if state is SessionState.IDLE
    or state in {s for row in TRANSITIONS[role].values() for s in row.values()}
]


@pytest.mark.parametrize(("role", "state"), ROLE_STATES, ids=lambda v: v.value)
def test_session_fixture_reaches_each_state(role: Role, state: SessionState) -> None:
    assert session_in(role, state).state is state


# Frames that get past the first checks more often than random ones do.
_targeted_bodies: st.SearchStrategy[Body] = st.one_of(
    st.builds(Probe, size=st.just(1500), filler_len=st.sampled_from([1472, 1471, 0])),
    st.builds(CtrlAck, cum=st.integers(0, 4), bitmap=st.integers(0, 7)),
    st.builds(
        Chat,
        msg_id=st.integers(0, 3),
        total_len=st.just(4),
        frag_offset=st.just(0),
        to_all=st.booleans(),
        data=st.sampled_from([b"", b"ab", b"abcd"]),
    ),
    st.builds(Close, reason=st.integers(0, 12)),
    st.just(Keepalive()),
    st.builds(Error, code=st.integers(0, 12)),
)
any_bodies = st.one_of(bodies(), _targeted_bodies)
seqs = st.one_of(st.integers(0, 70), u64)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ROLE_STATES),
    st.lists(st.tuples(any_bodies, seqs, u16), min_size=1, max_size=4),
)
def test_any_frame_in_any_session_state_transitions_or_raises_our_error(
    role_state: tuple[Role, SessionState], inputs: list[tuple[Body, int, int]]
) -> None:
    role, state = role_state
    session = session_in(role, state)
    now = 0.01
    for body, seq, flags in inputs:
        frame = Frame(session.local_mac, session.peer_mac, SID, seq, body, flags)
        before = session.state
        try:
            session.receive_frame(frame, now)
        except ProtocolError as exc:
            assert isinstance(exc, RemoteProtocolError)
            assert session.state is before
        else:
            after = session.state
            assert after is before or after in TRANSITIONS[role][before].values()
        session.frames_to_send(now)
        timer = session.next_timer()
        if timer is not None:
            now = max(now, timer)
            session.handle_timer(now)
            session.frames_to_send(now)
        while session.next_event() is not None:
            pass


# --- the engine never raises for received frames ------------------------------------------------


def engine_in(stage: str) -> tuple[object, NodeEngine, NodeEngine]:
    lan, a, b = pair()
    if stage == "fresh":
        return lan, a, b
    a.send_chat(b.mac, "x" * 5000, lan.now)
    if stage == "handshake":
        lan.run_for(0.00006)
    elif stage == "open":
        lan.run(lambda: lan.has(a, SessionOpened), timeout=1)
    elif stage == "closing":
        lan.run(lambda: lan.has(a, ChatDelivered), timeout=1)
        a.close(b.mac, lan.now)
    return lan, a, b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["fresh", "handshake", "open", "closing"]),
    st.lists(
        st.tuples(
            any_bodies,
            seqs,
            u16,
            st.sampled_from(["peer", "stranger", "self", "group"]),
            st.sampled_from(["us", "broadcast", "other"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_engine_never_raises_on_received_frames(stage: str, inputs: list[tuple]) -> None:  # type: ignore[type-arg]
    lan, a, b = engine_in(stage)
    sessions = [s.session for s in a.sessions()] or [SID]
    srcs = {
        "peer": b.mac,
        "stranger": b"\x02\xaa\x00\x00\x00\x01",
        "self": a.mac,
        "group": b"\x03" * 6,
    }
    dsts = {"us": a.mac, "broadcast": BROADCAST_MAC, "other": b"\x02\xbb\x00\x00\x00\x01"}
    now = lan.now  # type: ignore[attr-defined]
    before = a.counters["frames_in"]
    for body, seq, flags, src, dst, known in inputs:
        session = sessions[0] if known else seq & 0xFFFFFFFF
        a.receive_frame(Frame(dsts[dst], srcs[src], session, seq, body, flags), now)
        a.frames_to_send(now)
        timer = a.next_timer()
        if timer is not None:
            now = max(now, timer)
            a.handle_timer(now)
        while a.next_event() is not None:
            pass
    assert a.counters["frames_in"] - before == len(inputs)


# --- counters, limits and misuse ---------------------------------------------------------------


def test_drop_counters_name_the_reason() -> None:
    lan, a, b = pair()
    now = lan.now
    stranger = b"\x02\x00\x00\x00\x00\x55"
    a.receive_frame(Frame(a.mac, b.mac, 77, 1, Keepalive()), now)
    a.receive_frame(Frame(b"\x02\x00\x00\x00\x00\x44", b.mac, 77, 1, Keepalive()), now)
    a.receive_frame(Frame(a.mac, a.mac, 0, 1, Keepalive()), now)
    a.receive_frame(Frame(a.mac, b"\x01\x00\x5e\x00\x00\x01", 0, 1, Keepalive()), now)
    a.receive_frame(Frame(a.mac, stranger, 0, 1, Keepalive()), now)
    a.note_drop("bad_crc")
    assert a.drops == Counter(
        {"unknown_session": 2, "not_for_us": 1, "own_frame": 1, "bad_source": 1, "bad_crc": 1}
    )
    assert a.counters["frames_in"] == 5


def syn(session: int, ver: int = 1) -> Syn:
    return Syn(node_id=9, ver_min=ver, ver_max=ver, mtu=1500, window=64, features=1, digests=1)


def test_syn_flood_is_rate_limited() -> None:
    lan, a, _ = pair()
    attacker = b"\x02\x00\x00\x00\x00\x66"
    for i in range(1, 1001):
        a.receive_frame(Frame(a.mac, attacker, i, 0, syn(i)), lan.now + i * 1e-4)
    config = NodeConfig()
    assert len(a.sessions()) <= config.accept_burst_per_peer + config.accept_rate_per_peer
    assert a.drops["rate_limited"] == 1000 - len(a.sessions())


def test_sessions_over_the_limit_are_refused_busy() -> None:
    lan, a, _ = pair(config=NodeConfig(max_sessions=2))
    peer = b"\x02\x00\x00\x00\x00\x66"
    for i in (1, 2, 3):
        a.receive_frame(Frame(a.mac, peer, i, 0, syn(i)), lan.now)
    out = a.frames_to_send(lan.now)
    errors = [f for f in out if f.type is FrameType.ERROR]
    assert len(a.sessions()) == 2
    assert [(f.session, f.body.code) for f in errors] == [(3, ErrorCode.BUSY)]  # type: ignore[union-attr]
    assert a.drops["refused_syn"] == 1


def test_one_peer_cannot_take_every_session_slot() -> None:
    lan, a, _ = pair(config=NodeConfig(max_sessions=8, max_sessions_per_peer=3))
    greedy, other = b"\x02\x00\x00\x00\x00\x66", b"\x02\x00\x00\x00\x00\x77"
    for i in (1, 2, 3, 4):
        a.receive_frame(Frame(a.mac, greedy, i, 0, syn(i)), lan.now)
    a.receive_frame(Frame(a.mac, other, 9, 0, syn(9)), lan.now)
    errors = [f for f in a.frames_to_send(lan.now) if f.type is FrameType.ERROR]
    assert [(f.session, f.body.code) for f in errors] == [(4, ErrorCode.BUSY)]  # type: ignore[union-attr]
    assert sorted(s.session for s in a.sessions()) == [1, 2, 3, 9]


def test_misuse_raises_local_errors() -> None:
    lan, a, _b = pair()
    with pytest.raises(LocalProtocolError):
        a.open_session(a.mac, lan.now)
    with pytest.raises(LocalProtocolError):
        a.open_session(BROADCAST_MAC, lan.now)
    with pytest.raises(LocalProtocolError):
        a.send_chat(b"\x02\x00", "hi", lan.now)
    with pytest.raises(LocalProtocolError):
        NodeEngine(a.mac, "", 1500, rng=__import__("random").Random(0))
    with pytest.raises(LocalProtocolError):
        NodeEngine(a.mac, "n", 1000, rng=__import__("random").Random(0))
    with pytest.raises(LocalProtocolError) as info:  # the loopback interface's MTU
        NodeEngine(a.mac, "n", 65536, rng=__import__("random").Random(0))
    assert info.value.hint is not None and "loopback" in info.value.hint


def test_sending_on_a_closing_session_is_a_local_error() -> None:
    session = session_in(Role.INITIATOR, SessionState.CLOSING)
    with pytest.raises(LocalProtocolError):
        session.send_control(Keepalive(), 1.0)


def test_forged_error_from_a_stranger_does_not_touch_the_session() -> None:
    lan, a, b = pair()
    sid = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened), timeout=1)
    a.receive_frame(Frame(a.mac, b"\x02\x00\x00\x00\x00\x66", sid, 0, Error(code=3)), lan.now)
    lan.run_for(0.5)
    assert not lan.has(a, SessionFailed)
    assert a.drops["unknown_session"] == 1


def test_an_error_of_code_zero_is_not_reported_as_ok() -> None:
    lan, a, b = pair()
    sid = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened), timeout=1)
    a.receive_frame(Frame(a.mac, b.mac, sid, 0, Error(code=0)), lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=1)
    (failed,) = lan.of(a, SessionFailed)
    assert "code 0" in failed.error.message and "with ok" not in failed.error.message


def test_status_snapshots() -> None:
    lan, a, b = pair()
    sid = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened), timeout=1)
    (info,) = a.sessions()
    assert (info.session, info.peer, info.role, info.state) == (
        sid,
        b.mac,
        Role.INITIATOR,
        SessionState.OPEN,
    )
    assert info.params is not None and info.srtt is not None
    assert [p.name for p in a.peers()] == ["bravo"]
    assert a.counters["frames_out"] > 0 and a.counters["frames_in"] > 0


def test_replace_keeps_frames_comparable() -> None:
    # The harness compares frames after a codec round trip; flags survive `replace`.
    frame = Frame(A, B, 1, 2, Keepalive(), 5)
    assert replace(frame, flags=5) == frame
