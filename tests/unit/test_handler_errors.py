"""A bug in a job's handler fails that job at once, with a reason, instead of leaving its client
waiting until it times out (`send` waits 120 s for any message), while the node keeps serving
everyone else (NodeRunner._guarded)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from l2fast.daemon.outgoing import OutgoingJob
from l2fast.daemon.runner import NodeRunner
from l2fast.daemon.transfers import in_job
from l2fast.errors import L2fastError


def guarded(callback: Any) -> Counter[str]:
    runner = SimpleNamespace(counters=Counter())
    NodeRunner._guarded(runner, callback)  # type: ignore[arg-type]
    return runner.counters


class Owner:
    def __init__(self) -> None:
        self.failures: list[Exception] = []

    def handler(self) -> None:
        raise KeyError("boom")

    def on_handler_error(self, exc: Exception) -> None:
        self.failures.append(exc)


def test_the_handler_owner_hears_of_the_error_and_the_runner_counts_it() -> None:
    owner = Owner()
    assert guarded(owner.handler)["subscriber_errors"] == 1
    assert [type(e) for e in owner.failures] == [KeyError]


def test_a_handler_without_an_owner_to_fail_is_only_counted() -> None:
    def lone() -> None:
        raise ValueError("boom")

    assert guarded(lone)["subscriber_errors"] == 1


def test_a_failing_owner_does_not_escape_the_runner() -> None:
    class Broken(Owner):
        def on_handler_error(self, exc: Exception) -> None:
            raise RuntimeError("worse")

    assert guarded(Broken().handler)["subscriber_errors"] == 1


class Job(SimpleNamespace):
    """An OutgoingJob's state as on_handler_error sees it, with its real method."""

    def __init__(self, *, ended: bool = False, finish_raises: bool = False) -> None:
        super().__init__(out=None, ended=ended, final_sent=False, results=[], replies=[])
        self.finish_raises = finish_raises
        self.closed = 0

    def reply(self, msg: dict[str, Any]) -> None:
        self.replies.append(msg)

    def _finish(self, ok: bool, error: str | None) -> None:
        self.ended = True
        if self.finish_raises:
            raise AttributeError("in the final message")
        self.final_sent = True
        self.reply({"done": True, "ok": ok, "error": error})

    def close(self) -> None:
        self.closed += 1

    def fail(self, exc: Exception) -> None:
        OutgoingJob.on_handler_error(self, exc)  # type: ignore[arg-type]


def test_a_running_job_ends_with_the_error_named() -> None:
    job = Job()
    job.fail(KeyError("x"))
    [final] = job.replies
    assert final["done"] and not final["ok"]
    assert "internal error in the sending node (KeyError" in final["error"]


def test_a_job_whose_final_message_failed_still_answers_once() -> None:
    job = Job(finish_raises=True)
    job.fail(KeyError("x"))
    [final] = job.replies
    assert final["done"] and not final["ok"] and final["files"] == []
    assert job.closed == 1
    job.fail(KeyError("again"))  # a later handler of the same job: nothing more is sent
    assert len(job.replies) == 1


def test_a_job_that_already_answered_sends_nothing_more() -> None:
    job = Job()
    job._finish(True, None)
    job.fail(KeyError("late timer"))
    assert len(job.replies) == 1


def test_a_bug_in_a_job_handled_engine_event_fails_that_job_and_goes_on_up() -> None:
    # Engine events reach a job through Transfers.on_event, whose own owner is not the job.
    owner = Owner()
    with pytest.raises(KeyError):
        in_job(owner, owner.handler)  # type: ignore[arg-type]
    assert [type(e) for e in owner.failures] == [KeyError]


def test_an_l2fast_error_in_an_engine_event_is_not_a_bug() -> None:
    owner = Owner()

    def refused() -> None:
        raise L2fastError("a peer's refusal")

    with pytest.raises(L2fastError):
        in_job(owner, refused)  # type: ignore[arg-type]
    assert owner.failures == []
