"""The streaming burst (csrc/txstream.c, `TxPath.stream`): new DATA up to the credit, with the
FEEDBACK frames that extend it read in C.

DATA goes out on one AF_UNIX datagram pair and FEEDBACK comes back on another (ifindex 0: the
same sendmmsg/recvmmsg code as on AF_PACKET, without privilege).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from l2fast import native
from l2fast.errors import NativeError
from l2fast.native import datapath as dp
from l2fast.wire.constants import FrameType, Verdict
from l2fast.wire.frames import Feedback, encode_payload
from tests.datapath_harness import DST, ET, SESSION, SRC, corrupt, dgram_pair, file_bytes

CS = 100
FB_DEADLINE = 0.05  # seconds a burst that runs out of credit waits for a FEEDBACK


def data_seqs(sock: socket.socket) -> list[int]:
    seqs: list[int] = []
    while True:
        try:
            frame = sock.recv(70_000)
        except BlockingIOError:
            return seqs
        info = native.parse_frame(frame)
        assert info.verdict == Verdict.OK and info.type == FrameType.DATA
        seqs.append(info.seq)


def feedback_frame(
    credit: int,
    *,
    cum: int = 0,
    seq: int = 1,
    session: int = SESSION,
    drops: int = 0,
    ranges: tuple[tuple[int, int], ...] = (),
) -> bytes:
    body = Feedback(cum_ack=cum, credit=credit, highest=cum, kernel_drops=drops, ranges=ranges)
    return native.build_frame(
        SRC,
        DST,
        ET,
        FrameType.FEEDBACK,
        0,
        session,
        seq,
        encode_payload(body),
    )


class Lab:
    """A TxPath over a datagram pair, and a second pair its FEEDBACK arrives on."""

    def __init__(
        self,
        data_pair: tuple[socket.socket, socket.socket],
        fb_pair: tuple[socket.socket, socket.socket],
        chunks: int = 100,
        first: int = 0,
    ) -> None:
        self.tx_sock, self.rx_sock = data_pair
        self.fb_peer, self.fb_sock = fb_pair
        self.tx = dp.TxPath(
            self.tx_sock,
            0,
            dst=DST,
            src=SRC,
            session=SESSION,
            data=file_bytes(chunks * CS, CS),
            chunk_size=CS,
            first_chunk=first,
        )
        self.log = dp.BurstLog(max_sends=16, max_feedback=8)

    def feed(self, *frames: bytes) -> None:
        for f in frames:
            self.fb_peer.send(f)

    def stream(
        self,
        next_chunk: int,
        end: int,
        credit: int,
        *,
        wait: float = FB_DEADLINE,
        turn: int = 10,
        quiet: float | None = None,
    ) -> dp.Burst:
        return self.tx.stream(
            self.log,
            self.fb_sock,
            next_chunk=next_chunk,
            end=end,
            credit=credit,
            deadline=time.monotonic() + wait,
            turn_frames=turn,
            quiet=quiet,
        )


@pytest.fixture
def lab() -> Iterator[Lab]:
    with dgram_pair() as data, dgram_pair() as fb:
        yield Lab(data, fb)


def test_sends_up_to_the_credit_then_waits_until_the_deadline(lab: Lab) -> None:
    t0 = time.monotonic()
    burst = lab.stream(0, 100, 25, turn=10)
    waited = time.monotonic() - t0
    assert burst.stop is dp.BurstStop.DEADLINE
    assert data_seqs(lab.rx_sock) == list(range(25))
    assert [(s, e) for s, e, _ in burst.sends] == [(0, 10), (10, 20), (20, 25)]
    assert all(t0 <= t <= t0 + waited for _, _, t in burst.sends)
    assert (burst.next, burst.credit, burst.feedback, burst.error) == (25, 25, [], None)
    assert waited >= FB_DEADLINE * 0.9  # it waited for credit rather than spin back


def test_a_quiet_receiver_ends_the_burst_when_the_callers_timer_could_fire(lab: Lab) -> None:
    """`quiet` is the window's retransmission timer: it restarts on each FEEDBACK that
    acknowledges something new, and without one the burst returns when it runs out."""
    t0 = time.monotonic()
    burst = lab.stream(0, 100, 20, wait=5.0, quiet=0.03)
    assert burst.stop is dp.BurstStop.DEADLINE and burst.next == 20
    assert 0.025 <= time.monotonic() - t0 < 2.0  # the quiet time, not the 5 s deadline
    lab.feed(feedback_frame(40, cum=20, seq=1))
    t0 = time.monotonic()
    burst = lab.stream(20, 100, 20, wait=5.0, quiet=0.03)
    assert burst.next == 40 and len(burst.feedback) == 1
    assert 0.025 <= time.monotonic() - t0 < 2.0


def test_plain_feedback_extends_the_credit_and_is_kept_for_the_window(lab: Lab) -> None:
    fb1, fb2 = feedback_frame(40, cum=5, seq=7), feedback_frame(60, cum=20, seq=8)
    lab.feed(fb1, fb2)
    burst = lab.stream(0, 60, 10)
    assert burst.stop is dp.BurstStop.END
    assert data_seqs(lab.rx_sock) == list(range(60))
    assert burst.credit == 60 and burst.next == 60
    assert [f.frame for f in burst.feedback] == [fb1, fb2]
    assert burst.feedback[0].arrived <= burst.feedback[1].arrived <= time.monotonic()
    # Their fields were read in C: the window needs no decoding of a plain FEEDBACK.
    assert [f.plain for f in burst.feedback] == [
        (7, Feedback(cum_ack=5, credit=40, highest=5, kernel_drops=0)),
        (8, Feedback(cum_ack=20, credit=60, highest=20, kernel_drops=0)),
    ]


def test_a_smaller_credit_never_shrinks_the_grant(lab: Lab) -> None:
    lab.feed(feedback_frame(5))
    burst = lab.stream(0, 100, 30, wait=0.01)
    assert burst.credit == 30 and burst.next == 30
    assert data_seqs(lab.rx_sock) == list(range(30))


@pytest.mark.parametrize(
    "news",
    [
        feedback_frame(90, cum=3, ranges=((5, 9),)),  # the receiver misses chunks 3-4
        feedback_frame(90, cum=3, drops=2),  # the receiver's kernel dropped frames
    ],
    ids=["sack", "drops"],
)
def test_feedback_with_news_ends_the_burst_without_taking_its_credit(lab: Lab, news: bytes) -> None:
    lab.feed(news)
    burst = lab.stream(0, 100, 20)
    assert burst.stop is dp.BurstStop.NEWS
    assert burst.credit == 20 and burst.next <= 20
    assert [f.frame for f in burst.feedback] == [news]
    assert burst.feedback[0].plain is None  # the caller decodes it in full


def test_frames_that_are_not_this_sessions_feedback_are_dropped_and_counted(lab: Lab) -> None:
    good = feedback_frame(50, seq=3)
    junk = [
        corrupt(feedback_frame(99)),  # bad CRC: its credit must not count
        feedback_frame(99, session=SESSION + 1),
        native.build_frame(SRC, DST, ET, FrameType.PING, 0, SESSION, 1, b"\0" * 16),
        b"\xff" * 10,
    ]
    lab.feed(junk[0], junk[1], good, junk[2], junk[3])
    burst = lab.stream(0, 100, 10, wait=0.02)
    assert burst.stop is dp.BurstStop.DEADLINE
    assert burst.credit == 50 and burst.next == 50
    assert [f.frame for f in burst.feedback] == [good]
    assert burst.ignored == 4 and lab.log.ignored == 4


def test_a_full_log_returns_early_with_everything_it_holds(lab: Lab) -> None:
    lab.log = dp.BurstLog(max_sends=3, max_feedback=8)
    lab.feed(feedback_frame(100))
    burst = lab.stream(0, 100, 100, turn=10)
    assert burst.stop is dp.BurstStop.FULL
    assert [(s, e) for s, e, _ in burst.sends] == [(0, 10), (10, 20), (20, 30)]
    assert data_seqs(lab.rx_sock) == list(range(30))


def test_end_and_first_chunk_bound_the_burst() -> None:
    with dgram_pair() as data, dgram_pair() as fb:
        lab = Lab(data, fb, chunks=10, first=500)
        burst = lab.stream(503, 508, 10_000)
        assert burst.stop is dp.BurstStop.END
        assert data_seqs(lab.rx_sock) == list(range(503, 508))
        for bad in ((499, 505), (505, 511), (506, 505)):
            with pytest.raises(ValueError):
                lab.stream(*bad, 10_000)
        assert data_seqs(lab.rx_sock) == []


def test_backpressure_reports_exactly_what_went() -> None:
    with dgram_pair(sndbuf=4096) as data, dgram_pair() as fb:
        data[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        lab = Lab(data, fb, chunks=300)
        pos, seqs, calls = 0, [], 0
        while pos < 300 and calls < 10_000:
            burst = lab.stream(pos, 300, 300, turn=64)
            assert burst.stop in (dp.BurstStop.BLOCKED, dp.BurstStop.END)
            assert burst.sends == [] or burst.sends[0][0] == pos
            pos = burst.next
            calls += 1
            seqs += data_seqs(lab.rx_sock)
        assert seqs == list(range(300))
        assert calls > 1


def test_a_send_error_after_sending_began_is_reported_with_the_sends() -> None:
    with dgram_pair() as data, dgram_pair() as fb:
        lab = Lab(data, fb)
        lab.feed(feedback_frame(100))
        lab.rx_sock.close()  # the peer goes away: the next send fails
        burst = lab.stream(0, 100, 10, turn=10)
        assert burst.stop is dp.BurstStop.ERROR
        assert isinstance(burst.error, NativeError) and burst.error.code < 0  # ECONNREFUSED
        assert burst.next == sum(e - s for s, e, _ in burst.sends)
