"""The per-file transition table (l2fast.transfer.protocol_states): shape and error kinds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from l2fast.transfer.protocol_states import (
    FINAL_STATES,
    LOCAL_INPUTS,
    TRANSITIONS,
    FileInput,
    FileRole,
    FileState,
    diagram,
    transition,
)
from l2fast.wire.constants import ErrorCode

S, I = FileState, FileInput  # noqa: E741 - short names keep the paths readable


def _reachable(role: FileRole, start: FileState) -> set[FileState]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in TRANSITIONS[role][todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("role", list(FileRole))
def test_every_state_has_a_row_and_final_states_take_nothing(role: FileRole) -> None:
    rows = TRANSITIONS[role]
    assert set(rows) == set(FileState)
    for state in FINAL_STATES:
        assert rows[state] == {}


@pytest.mark.parametrize("role", list(FileRole))
def test_every_live_state_can_fail_and_can_end(role: FileRole) -> None:
    # No state traps a file: FAIL is always possible, and every reachable state leads to an end.
    live = _reachable(role, S.OFFERED) - FINAL_STATES
    for state in live:
        assert TRANSITIONS[role][state].get(I.FAIL) is S.FAILED, state
        assert FINAL_STATES & _reachable(role, state), state
    assert S.VERIFIED in _reachable(role, S.OFFERED)
    assert S.REJECTED in _reachable(role, S.OFFERED)


def test_sender_path_in_order() -> None:
    path = [I.RECV_ACCEPT, I.DATA_ACKED, I.SEND_END, I.RECV_RESULT_OK]
    state = S.OFFERED
    for event in path:
        state = transition(FileRole.SENDER, state, event)
    assert state is S.VERIFIED


@pytest.mark.parametrize(
    "order",
    [
        [I.DATA_WRITTEN, I.RECV_END],  # the writers finished first
        [I.RECV_END, I.DATA_WRITTEN],  # FILE_END came first
    ],
)
def test_receiver_reaches_checking_in_either_order(order: list[FileInput]) -> None:
    state = transition(FileRole.RECEIVER, S.OFFERED, I.ACCEPT)
    for event in order:
        state = transition(FileRole.RECEIVER, state, event)
    assert state is S.CHECKING
    assert transition(FileRole.RECEIVER, state, I.DIGEST_MISMATCH) is S.FAILED
    placing = transition(FileRole.RECEIVER, state, I.DIGEST_MATCH)
    assert transition(FileRole.RECEIVER, placing, I.PLACED) is S.VERIFIED


def test_verified_result_before_file_end_is_the_peers_error() -> None:
    # A receiver cannot have checked a digest it was never sent.
    for state in (S.OFFERED, S.ACCEPTED, S.DATA_DONE):
        with pytest.raises(RemoteProtocolError) as info:
            transition(FileRole.SENDER, state, I.RECV_RESULT_OK)
        assert info.value.code == ErrorCode.BAD_REQUEST
    # An error result may come any time after acceptance (the receiver's disk failed).
    for state in (S.ACCEPTED, S.DATA_DONE, S.ENDED):
        assert transition(FileRole.SENDER, state, I.RECV_RESULT_ERROR) is S.FAILED


def test_roles_do_not_share_their_own_states() -> None:
    assert not _reachable(FileRole.SENDER, S.OFFERED) & {S.CHECKING, S.PLACING}


@given(
    role=st.sampled_from(list(FileRole)),
    state=st.sampled_from(list(FileState)),
    event=st.sampled_from(list(FileInput)),
)
def test_any_input_in_any_state_transitions_or_raises_our_error(
    role: FileRole, state: FileState, event: FileInput
) -> None:
    try:
        nxt = transition(role, state, event)
    except ProtocolError as exc:
        assert event not in TRANSITIONS[role][state]
        expected = LocalProtocolError if event in LOCAL_INPUTS else RemoteProtocolError
        assert type(exc) is expected
        assert exc.code == ErrorCode.BAD_REQUEST
    else:
        assert nxt is TRANSITIONS[role][state][event]


def test_diagram_names_every_move() -> None:
    text = diagram(FileRole.RECEIVER)
    assert text.startswith("stateDiagram-v2")
    assert "ENDED --> CHECKING: data_written" in text
    assert "VERIFIED --> [*]" in text
