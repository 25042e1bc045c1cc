"""A bug in a receiving job's handler (a receive process's reader, a digest timer, a control
frame) ends that job's session at once with `io_error` and the reason, so that its sender fails
the transfer with that reason instead of waiting on a receiver that will never move again
(Transfers._for, _fail_incoming); a peer's CLOSE with a reason reaches the sending job in the
peer's words (_closed_by_peer)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from l2fast.daemon.transfers import IncomingJob, Transfers, _closed_by_peer
from l2fast.errors import L2fastError, RemoteProtocolError
from l2fast.node.events import ControlReceived, SessionClosed
from l2fast.wire.constants import MAX_TEXT_BYTES, Digest, ErrorCode
from l2fast.wire.frames_transfer import FileEnd

PEER = bytes.fromhex("02aabbccddee")
SESSION = 0x1234


class Engine:
    def __init__(self) -> None:
        self.closed: list[tuple[bytes, int, int, str]] = []

    def close_session(
        self, peer: bytes, session: int, now: float, reason: int = 0, text: str = ""
    ) -> bool:
        self.closed.append((peer, session, reason, text))
        return True


class Runner(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(engine=Engine(), counters=Counter(), receive_sockets=None, flushes=0)
        self.removed: list[Any] = []

    def now(self) -> float:
        return 1.0

    def flush(self) -> None:
        self.flushes += 1

    def remove_reader(self, obj: Any) -> None:
        self.removed.append(obj)


class Incoming(SimpleNamespace):
    """The sans-IO receiving transfer, as far as these paths touch it."""

    def __init__(self) -> None:
        super().__init__(controls=[])

    def receive_control(self, body: Any, now: float) -> None:
        self.controls.append(body)

    def next_event(self) -> None:
        return None

    def control_to_send(self) -> list[Any]:
        return []


class Process:
    def __init__(self) -> None:
        self.conn, self.sentinel, self.stopped = object(), object(), 0

    def stop(self) -> None:
        self.stopped += 1


def setup() -> tuple[Transfers, IncomingJob, Runner]:
    runner = Runner()
    transfers = Transfers(runner, recv_dir=None, accept="all")  # type: ignore[arg-type]
    inc = IncomingJob(transfers, SESSION, PEER, 1500, Incoming())  # type: ignore[arg-type]
    transfers.incoming[SESSION] = inc
    return transfers, inc, runner


def test_a_bug_in_a_receiving_handler_closes_its_session_with_the_reason() -> None:
    transfers, inc, runner = setup()
    bench = inc.bench = Process()  # type: ignore[assignment]

    def broken() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):  # on up to NodeRunner, which logs and counts it
        transfers._for(inc, broken)()
    assert inc.failed
    assert runner.engine.closed == [
        (
            PEER,
            SESSION,
            ErrorCode.IO_ERROR,
            "internal error in the receiving node (KeyError: 'boom'); see its log",
        )
    ]
    # Its receive process is stopped and no longer watched: a handler that failed before
    # reading its pipe cannot spin the loop.
    assert bench.stopped == 1 and inc.bench is None
    assert {id(o) for o in runner.removed} == {id(bench.conn), id(bench.sentinel)}


def test_a_second_failure_of_the_same_job_closes_nothing_more() -> None:
    transfers, inc, runner = setup()

    def broken() -> None:
        raise ValueError("again")

    for _ in range(3):
        with pytest.raises(ValueError):
            transfers._for(inc, broken)()
    assert len(runner.engine.closed) == 1


def test_an_l2fast_error_in_a_receiving_handler_is_not_a_bug() -> None:
    transfers, inc, runner = setup()

    def refused() -> None:
        raise L2fastError("the peer is gone")

    with pytest.raises(L2fastError):
        transfers._for(inc, refused)()
    assert not inc.failed and runner.engine.closed == []


def test_the_close_text_stays_within_the_protocol_limit_and_valid_utf8() -> None:
    transfers, inc, runner = setup()

    def broken() -> None:
        raise RuntimeError("é" * 2000)

    with pytest.raises(RuntimeError):
        transfers._for(inc, broken)()
    (_, _, _, text) = runner.engine.closed[0]
    assert len(text.encode("utf-8")) <= MAX_TEXT_BYTES == 512
    assert text.startswith("internal error in the receiving node (RuntimeError: ééé")


def test_a_bug_while_taking_a_control_frame_fails_the_job_and_later_frames_are_not_taken() -> None:
    transfers, inc, runner = setup()
    incoming: Incoming = inc.incoming  # type: ignore[assignment]
    end = FileEnd(transfer_id=1, digest=int(Digest.SHA256), digest_value=bytes(32))

    def broken(body: Any, now: float) -> None:
        raise AttributeError("in the state machine")

    incoming.receive_control = broken  # type: ignore[method-assign]
    with pytest.raises(AttributeError):
        transfers.on_event(ControlReceived(SESSION, PEER, end))
    assert inc.failed and len(runner.engine.closed) == 1

    taken: list[Any] = []
    incoming.receive_control = lambda body, now: taken.append(body)  # type: ignore[method-assign]
    transfers.on_event(ControlReceived(SESSION, PEER, end))
    assert taken == []


class SendingJob(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(peer=PEER, ended_with=[])

    def on_ended(self, error: Any) -> None:
        self.ended_with.append(error)

    def on_handler_error(self, exc: Exception) -> None:
        raise AssertionError(f"not a handler error: {exc!r}")


def test_the_sending_job_hears_the_receivers_reason() -> None:
    transfers, _, _ = setup()
    job = transfers.outgoing[0x99] = SendingJob()  # type: ignore[assignment]
    text = "internal error in the receiving node (KeyError: 'boom'); see its log\x1b[2J"
    transfers.on_event(SessionClosed(0x99, PEER, int(ErrorCode.IO_ERROR), text, by_peer=True))
    (error,) = job.ended_with
    assert isinstance(error, RemoteProtocolError)
    assert error.code == ErrorCode.IO_ERROR
    assert str(error).startswith("the peer closed the session: io_error (internal error in")
    assert "\x1b" not in str(error)  # the peer's text is shown escaped


@pytest.mark.parametrize(("by_peer", "reason"), [(True, 0), (False, int(ErrorCode.IO_ERROR))])
def test_a_plain_close_or_our_own_carries_no_peer_reason(by_peer: bool, reason: int) -> None:
    assert _closed_by_peer(SessionClosed(1, PEER, reason, "x", by_peer=by_peer)) is None
