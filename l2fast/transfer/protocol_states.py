"""Per-file state machines of the file-transfer protocol: every transition, in one table.

Everything that changes a file's state lives here (the h11 `_state.py` approach, STYLE.md §3);
`l2fast.transfer.protocol_outgoing` and `protocol_incoming` only decide which input a frame, a
report from the adapter or a timer is, and perform the actions that go with it. A pair missing
from the table is a protocol error: LocalProtocolError when this node (or its adapter) asked for
it, RemoteProtocolError when a FILE_* frame from the peer did. The transfer cores count the
peer's errors as drops and carry on; they never raise them into the event loop (STYLE.md §11).

One file's life (PROTOCOL.md §FILE_OFFER .. §FILE_RESULT):

    sender:   OFFERED -> ACCEPTED | REJECTED;  ACCEPTED -> DATA_DONE (every chunk acknowledged)
              -> ENDED (FILE_END sent) -> VERIFIED | FAILED | SUPERSEDED (FILE_RESULT)
    receiver: OFFERED -> ACCEPTED | REJECTED;  ACCEPTED -> DATA_DONE (written, digest known)
              and FILE_END in either order -> CHECKING -> PLACING (digests match) | FAILED
              | SUPERSEDED; PLACING -> VERIFIED (placed under its final name, FILE_RESULT 0 sent)

A file offered with its data (FILE_INLINE, PROTOCOL.md §FILE_INLINE) may skip the middle: the
receiver that takes the data goes OFFERED -> CHECKING (written, and the offer carried the
sender's digest) and on as above, and its sender OFFERED -> VERIFIED | FAILED on the
FILE_RESULT that answers the offer itself. A receiver that answers it with FILE_ACCEPT instead
runs the usual path.

SUPERSEDED is the end of a file the receiver answered as already present (PROTOCOL.md §Files
already at the receiver) whose digest then differed from the file it holds: FILE_RESULT
`differs`, and the sender offers the same entry again as a new file.

A receiver's FILE_END can arrive before its own writers finish (the sender sends FILE_END once
FEEDBACK acknowledged the data, which happens on arrival, before the disk write), so the
receiver has ENDED for "FILE_END first" and DATA_DONE for "data first"; both lead to CHECKING.
Directories and bench streams run the same path, with the steps that have nothing to do taken
at once by the core. `diagram()` renders the table for the docs.
"""

from __future__ import annotations

from collections.abc import Mapping

from l2fast.enums import StateEnum
from l2fast.errors import LocalProtocolError, RemoteProtocolError
from l2fast.wire.constants import ErrorCode

__all__ = [
    "FINAL_STATES",
    "LOCAL_INPUTS",
    "TRANSITIONS",
    "FileInput",
    "FileRole",
    "FileState",
    "diagram",
    "transition",
]


class FileRole(StateEnum):
    """Which end of a file this node is."""

    SENDER = "sender"
    RECEIVER = "receiver"


class FileState(StateEnum):
    """Where one file is in its life."""

    OFFERED = "offered"  #: FILE_OFFER sent / received; waiting for the receiver's decision
    ACCEPTED = "accepted"  #: FILE_ACCEPT sent / received; data flowing
    REJECTED = "rejected"  #: FILE_REJECT sent / received (final)
    #: sender: every chunk acknowledged; receiver: written, digest known, FILE_END not yet in
    DATA_DONE = "data_done"
    #: sender: FILE_END sent, waiting for FILE_RESULT; receiver: FILE_END in, data not yet done
    ENDED = "ended"
    CHECKING = "checking"  #: receiver: FILE_END and the written data's digest are both known
    PLACING = "placing"  #: receiver: digests match; the adapter renames the part file
    VERIFIED = "verified"  #: FILE_RESULT status 0 sent / received (final)
    FAILED = "failed"  #: FILE_RESULT with an error, or the transfer ended first (final)
    #: FILE_RESULT `differs` sent / received: the file is offered again (final)
    SUPERSEDED = "superseded"


class FileInput(StateEnum):
    """Everything that can happen to one file."""

    # The receiving application decides (local on the receiver).
    ACCEPT = "accept"
    REJECT = "reject"
    # Frames from the peer.
    RECV_ACCEPT = "recv_accept"  #: sender: FILE_ACCEPT
    RECV_REJECT = "recv_reject"  #: sender: FILE_REJECT
    RECV_END = "recv_end"  #: receiver: FILE_END
    RECV_RESULT_OK = "recv_result_ok"  #: sender: FILE_RESULT status 0
    RECV_RESULT_ERROR = "recv_result_error"  #: sender: FILE_RESULT with an error code
    #: sender: FILE_RESULT `differs` for a file the receiver said it held
    RECV_RESULT_DIFFERS = "recv_result_differs"
    #: sender: FILE_RESULT status 0 / an error code answering a FILE_INLINE itself
    RECV_INLINE_RESULT_OK = "recv_inline_result_ok"
    RECV_INLINE_RESULT_ERROR = "recv_inline_result_error"
    # Local progress.
    DATA_ACKED = "data_acked"  #: sender: every chunk of the file acknowledged by FEEDBACK
    SEND_END = "send_end"  #: sender: FILE_END goes out (data done and digest known)
    DATA_WRITTEN = "data_written"  #: receiver: the adapter wrote every chunk and has a digest
    #: receiver: the adapter wrote a FILE_INLINE's data (its digest came with the offer)
    INLINE_WRITTEN = "inline_written"
    DIGEST_MATCH = "digest_match"  #: receiver: FILE_END's digest equals ours
    DIGEST_MISMATCH = "digest_mismatch"
    #: receiver: FILE_END's digest differs from that of the file already present
    DIFFERS = "differs"
    PLACED = "placed"  #: receiver: the adapter placed the file under its final name
    #: Either side: the file cannot finish (the adapter failed to write or place it, a timeout,
    #: the session ended, the transfer was cancelled).
    FAIL = "fail"


#: Inputs this node originates; an invalid one is our misuse (LocalProtocolError).
LOCAL_INPUTS = frozenset(
    {
        FileInput.ACCEPT,
        FileInput.REJECT,
        FileInput.DATA_ACKED,
        FileInput.SEND_END,
        FileInput.DATA_WRITTEN,
        FileInput.INLINE_WRITTEN,
        FileInput.DIGEST_MATCH,
        FileInput.DIGEST_MISMATCH,
        FileInput.DIFFERS,
        FileInput.PLACED,
        FileInput.FAIL,
    }
)

#: States a file never leaves.
FINAL_STATES = frozenset(
    {FileState.REJECTED, FileState.VERIFIED, FileState.FAILED, FileState.SUPERSEDED}
)

S = FileState
I = FileInput  # noqa: E741 - a one-letter alias keeps the table below readable

_SENDER: dict[FileState, dict[FileInput, FileState]] = {
    S.OFFERED: {
        I.RECV_ACCEPT: S.ACCEPTED,
        I.RECV_REJECT: S.REJECTED,
        # Only for a FILE_INLINE (the core tells which input a FILE_RESULT is): its offer
        # carried the data and the digest, so the receiver may answer it with the result.
        I.RECV_INLINE_RESULT_OK: S.VERIFIED,
        I.RECV_INLINE_RESULT_ERROR: S.FAILED,
        I.FAIL: S.FAILED,
    },
    # The receiver may give up on a file before FILE_END (io_error, no_space): FILE_RESULT
    # with an error code is allowed from acceptance on. A verified result is not: it needs
    # the digest that only FILE_END carries.
    S.ACCEPTED: {I.DATA_ACKED: S.DATA_DONE, I.RECV_RESULT_ERROR: S.FAILED, I.FAIL: S.FAILED},
    S.DATA_DONE: {I.SEND_END: S.ENDED, I.RECV_RESULT_ERROR: S.FAILED, I.FAIL: S.FAILED},
    S.ENDED: {
        I.RECV_RESULT_OK: S.VERIFIED,
        I.RECV_RESULT_ERROR: S.FAILED,
        I.RECV_RESULT_DIFFERS: S.SUPERSEDED,
        I.FAIL: S.FAILED,
    },
    # Final states take nothing: a late or repeated FILE_* frame is the peer's error (the
    # control stream delivers each frame once), and the cores count it.
    S.REJECTED: {},
    S.VERIFIED: {},
    S.FAILED: {},
    S.SUPERSEDED: {},
    # Receiver-only states.
    S.CHECKING: {},
    S.PLACING: {},
}

_RECEIVER: dict[FileState, dict[FileInput, FileState]] = {
    S.OFFERED: {
        I.ACCEPT: S.ACCEPTED,
        I.REJECT: S.REJECTED,
        I.INLINE_WRITTEN: S.CHECKING,
        I.FAIL: S.FAILED,
    },
    S.ACCEPTED: {I.DATA_WRITTEN: S.DATA_DONE, I.RECV_END: S.ENDED, I.FAIL: S.FAILED},
    S.DATA_DONE: {I.RECV_END: S.CHECKING, I.FAIL: S.FAILED},
    S.ENDED: {I.DATA_WRITTEN: S.CHECKING, I.FAIL: S.FAILED},
    S.CHECKING: {
        I.DIGEST_MATCH: S.PLACING,
        I.DIGEST_MISMATCH: S.FAILED,
        I.DIFFERS: S.SUPERSEDED,
        I.FAIL: S.FAILED,
    },
    S.PLACING: {I.PLACED: S.VERIFIED, I.FAIL: S.FAILED},
    S.REJECTED: {},
    S.VERIFIED: {},
    S.FAILED: {},
    S.SUPERSEDED: {},
}

#: role -> state -> input -> next state. Anything missing is a protocol error.
TRANSITIONS: Mapping[FileRole, Mapping[FileState, Mapping[FileInput, FileState]]] = {
    FileRole.SENDER: _SENDER,
    FileRole.RECEIVER: _RECEIVER,
}


def transition(role: FileRole, state: FileState, event: FileInput) -> FileState:
    """The state after `event` happens in `state`, or a protocol error if it may not happen.

    Raises LocalProtocolError for our own inputs and RemoteProtocolError (code bad_request) for
    a frame the peer should not have sent in this state.
    """
    nxt = TRANSITIONS[role][state].get(event)
    if nxt is not None:
        return nxt
    what = f"{event.value} for a file in state {state.value} ({role.value})"
    if event in LOCAL_INPUTS:
        raise LocalProtocolError(f"cannot {what}", code=ErrorCode.BAD_REQUEST)
    raise RemoteProtocolError(f"unexpected {what}", code=ErrorCode.BAD_REQUEST)


def diagram(role: FileRole) -> str:
    """The table for `role` as a Mermaid state diagram, for the docs."""
    lines = ["stateDiagram-v2", f"    [*] --> {FileState.OFFERED.name}"]
    for state, moves in TRANSITIONS[role].items():
        targets: dict[FileState, list[str]] = {}
        for event, nxt in moves.items():
            targets.setdefault(nxt, []).append(event.value)
        for nxt, events in targets.items():
            lines.append(f"    {state.name} --> {nxt.name}: {', '.join(events)}")
    for state in FileState:
        if state in FINAL_STATES:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines)
