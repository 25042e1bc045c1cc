"""The session transition table (l2fast.node.states): shape, error kinds, and a property test."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.node.states import (
    LOCAL_INPUTS,
    TRANSITIONS,
    Role,
    SessionInput,
    SessionState,
    diagram,
    transition,
)
from l2fast.wire.constants import ErrorCode

S, I = SessionState, SessionInput  # noqa: E741 - short names keep the paths readable


@pytest.mark.parametrize("role", list(Role))
def test_every_state_has_a_row(role: Role) -> None:
    rows = TRANSITIONS[role]
    assert set(rows) == set(SessionState)


@pytest.mark.parametrize("role", list(Role))
def test_ended_states_are_absorbing(role: Role) -> None:
    for state in (S.CLOSED, S.FAILED):
        assert set(TRANSITIONS[role][state].values()) == {state}


def _reachable(role: Role, start: SessionState) -> set[SessionState]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in TRANSITIONS[role][todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("role", list(Role))
def test_every_reachable_state_can_still_end(role: Role) -> None:
    # No state may trap a session forever: from each one reachable, an end is reachable.
    live = _reachable(role, S.IDLE) - {S.CLOSED, S.FAILED}
    assert S.OPEN in live
    for state in live:
        assert {S.CLOSED, S.FAILED} & _reachable(role, state), state


def test_roles_have_their_own_handshake_states() -> None:
    assert _reachable(Role.INITIATOR, S.IDLE) >= {S.SYN_SENT, S.PROBING}
    assert not _reachable(Role.INITIATOR, S.IDLE) & {S.SYN_RCVD, S.PROBE_WAIT}
    assert not _reachable(Role.RESPONDER, S.IDLE) & {S.SYN_SENT, S.PROBING}


def test_handshake_paths() -> None:
    path = [I.OPEN, I.RECV_SYN_ACK, I.RECV_PROBE_ACK, I.CLOSE, I.CLOSE_ACKED]
    state = S.IDLE
    for event in path:
        state = transition(Role.INITIATOR, state, event)
    assert state is S.CLOSED
    # The responder opens on a PROBE with or without having seen the ACK.
    assert transition(Role.RESPONDER, S.SYN_RCVD, I.RECV_PROBE) is S.OPEN
    assert transition(Role.RESPONDER, S.PROBE_WAIT, I.RECV_PROBE) is S.OPEN


def test_peer_frame_out_of_place_is_remote_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        transition(Role.INITIATOR, S.OPEN, I.RECV_SYN)
    assert info.value.code == ErrorCode.BAD_REQUEST
    with pytest.raises(RemoteProtocolError):
        transition(Role.RESPONDER, S.SYN_RCVD, I.RECV_CTRL)


def test_our_misuse_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        transition(Role.INITIATOR, S.CLOSING, I.SEND)
    with pytest.raises(LocalProtocolError):
        transition(Role.RESPONDER, S.OPEN, I.OPEN)


def test_diagram_lists_real_moves_only() -> None:
    text = diagram(Role.INITIATOR)
    assert text.startswith("stateDiagram-v2")
    assert "IDLE --> SYN_SENT: open" in text
    assert "OPEN --> OPEN" not in text


@given(st.sampled_from(list(Role)), st.sampled_from(list(S)), st.sampled_from(list(I)))
def test_any_input_in_any_state_transitions_or_raises_our_error(
    role: Role, state: SessionState, event: SessionInput
) -> None:
    try:
        nxt = transition(role, state, event)
    except ProtocolError as exc:
        expected = LocalProtocolError if event in LOCAL_INPUTS else RemoteProtocolError
        assert isinstance(exc, expected)
        assert event not in TRANSITIONS[role][state]
    else:
        assert nxt is TRANSITIONS[role][state][event]
