"""A sending job refuses frames on its FEEDBACK socket that are not a valid FEEDBACK of its
session, and counts them: per transfer (`feedback_refused` in `send --json`'s final event) and
per node (`bad_feedback` among `status`'s drops, tests/unit/test_daemon_service.py).  The C
burst drops such frames itself and reports how many (`Burst.ignored`,
tests/unit/test_tx_stream.py); the job adds those to the same counts.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from l2fast.daemon.outgoing import OutgoingJob
from l2fast.wire.constants import FrameType
from l2fast.wire.frames import Feedback, encode_payload
from tests.datapath_harness import SESSION, corrupt, data_frame


class Job(SimpleNamespace):
    """The parts of an OutgoingJob that reading FEEDBACK touches, with its real methods."""

    def __init__(self) -> None:
        super().__init__(runner=SimpleNamespace(counters=Counter()), kernel_drops=0)
        self.feedback_refused = 0

    def decode(self, raw: bytes) -> Any:
        return OutgoingJob._decode_feedback(self, raw)  # type: ignore[arg-type]

    def _refuse_feedback(self, n: int = 1) -> None:
        OutgoingJob._refuse_feedback(self, n)  # type: ignore[arg-type]


def feedback_frame(body: Feedback, seq: int = 9) -> bytes:
    return data_frame(seq, encode_payload(body), ftype=FrameType.FEEDBACK)


def test_a_valid_feedback_is_read_and_nothing_is_counted() -> None:
    job = Job()
    body = Feedback(cum_ack=5, credit=64, highest=7, kernel_drops=2, ranges=((6, 7),))
    assert job.decode(feedback_frame(body)) == (9, body)
    assert job.kernel_drops == 2
    assert job.feedback_refused == 0 and job.runner.counters["feedback_refused"] == 0


def test_corrupted_forged_and_malformed_frames_are_refused_and_counted() -> None:
    job = Job()
    good = feedback_frame(Feedback(cum_ack=1, credit=8, highest=1, kernel_drops=0))
    refused = [
        corrupt(good),  # CRC32C no longer matches
        good[:30],  # shorter than a header
        data_frame(3, b"not feedback"),  # another type with the session's id
        # A FEEDBACK whose CRC is right but whose body breaks its layout (too short).
        data_frame(4, b"\x00" * 5, ftype=FrameType.FEEDBACK, session=SESSION),
    ]
    assert [job.decode(raw) for raw in refused] == [None] * len(refused)
    assert job.feedback_refused == len(refused)
    assert job.runner.counters["feedback_refused"] == len(refused)


def test_frames_a_burst_dropped_in_c_join_the_same_counts() -> None:
    job = Job()
    job._refuse_feedback(3)  # what _burst does with Burst.ignored
    job._refuse_feedback()
    assert job.feedback_refused == 4 and job.runner.counters["feedback_refused"] == 4
