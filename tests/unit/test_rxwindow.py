"""The receive loop of csrc/rxpath.c through RxPath: verification, the receive window (duplicates,
out-of-window, cumulative ack, SACK ranges, credit), control frames, ring-full flow control and
the written bitmap used for resume.

Frames travel over an AF_UNIX datagram pair: the loop runs its real recvmmsg on it, and the tests
need no privilege.  The model test compares the C window with a plain Python set.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast.errors import NativeError
from l2fast.native import datapath as dp
from l2fast.transfer.ranges import ChunkRanges
from l2fast.wire.constants import Flags, FrameType, Verdict
from l2fast.wire.frames import Feedback, decode_payload, encode_payload
from tests.datapath_harness import (
    SESSION,
    Receiver,
    chunk_bytes,
    corrupt,
    data_frame,
    dgram_pair,
    file_bytes,
    send_all,
    tmpfile_fd,
)

CS = 100  # chunk size


def chunk_frame(k: int, file_size: int, first: int = 0, **kw: int) -> bytes:
    """The valid DATA frame of file chunk k (absolute index first + k; k may lie outside)."""
    length = min(CS, file_size - k * CS) if 0 <= k * CS < file_size else CS
    return data_frame(first + k, chunk_bytes(max(k, 0), length), **kw)


def bits(bitmap: bytes | bytearray, n: int) -> set[int]:
    return {k for k in range(n) if bitmap[k >> 3] >> (k & 7) & 1}


# --------------------------------------------------------------------------- basics


def test_in_order_chunks_reach_the_file_and_the_written_bitmap(tmp_path: Path) -> None:
    size = 25 * CS + 37  # 26 chunks, the last one short
    fd = tmpfile_fd(str(tmp_path / "out"))
    written = bytearray(dp.written_bitmap_size(size, CS))
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, fd=fd, written=written, window=64)
        try:
            send_all(tx, [chunk_frame(k, size) for k in range(26)])
            run = r.run()
            assert run.stop & dp.RxStop.COMPLETE
            fb = r.rx.feedback()
            assert (fb.cum_ack, fb.highest, fb.ranges, fb.end_chunk) == (26, 26, (), 26)
            assert fb.complete
            assert bits(written, 26) == set()  # nothing written yet: the writers have not run
            assert r.drain() == size
            fb = r.rx.feedback()  # reclaims the released slots: marks them written
            assert bits(written, 26) == set(range(26))
            c = r.rx.counters()
            assert (c.data_new, c.written, c.duplicates, c.refused) == (26, 26, 0, 0)
            assert c.verdicts[Verdict.OK] == 26
            assert c.batches <= 26 // r.batch + 2  # one head update per batch, not per frame
        finally:
            r.close()
    assert os.pread(fd, size + 10, 0) == file_bytes(size, CS)
    os.close(fd)


def test_duplicates_are_dropped_and_counted() -> None:
    size = 10 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size)
        try:
            send_all(tx, [chunk_frame(k, size) for k in (0, 1, 3, 3, 1, 0, 5)])
            r.run()
            c = r.rx.counters()
            assert c.data_new == 4
            assert c.duplicates == 3  # 3 again (in the window), 1 and 0 (below cum_ack)
            assert sorted(r.published()) == [0, 1, 3, 5]
            fb = r.rx.feedback()
            assert fb.cum_ack == 2
            assert fb.ranges == ((3, 4), (5, 6))
            assert fb.highest == 6
        finally:
            r.close()


def test_out_of_window_and_out_of_range() -> None:
    size = 1000 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, first_chunk=500, window=64)
        try:
            frames = [
                chunk_frame(63, size, 500),  # last chunk inside the window [500, 564)
                chunk_frame(64, size, 500),  # first one beyond it
                data_frame(499, chunk_bytes(0, CS)),  # before the file's first chunk
                data_frame(1500, chunk_bytes(0, CS)),  # at the file's end
                data_frame(2**64 - 1, chunk_bytes(0, CS)),
            ]
            send_all(tx, frames)
            r.run()
            c = r.rx.counters()
            assert (c.data_new, c.out_of_window, c.out_of_range) == (1, 1, 3)
            fb = r.rx.feedback()
            assert (fb.cum_ack, fb.highest, fb.ranges) == (500, 564, ((563, 564),))
        finally:
            r.close()


def test_bad_frames_are_never_published() -> None:
    size = 10 * CS
    good = chunk_frame(0, size)
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size)
        try:
            send_all(
                tx,
                [
                    corrupt(good),  # payload byte flipped: bad CRC
                    corrupt(good, 20),  # header byte (payload_len) flipped: bad length
                    good[:30],  # short
                    corrupt(good, 14),  # magic
                    data_frame(1, chunk_bytes(1, CS), session=SESSION + 1),  # other session
                    data_frame(2, chunk_bytes(2, CS - 1)),  # short payload, not the last chunk
                    data_frame(3, chunk_bytes(3, CS), flags=Flags.ZLIB),
                ],
            )
            r.run()
            c = r.rx.counters()
            assert c.verdicts[Verdict.BAD_CRC] == 1
            assert c.verdicts[Verdict.BAD_LENGTH] == 1
            assert c.verdicts[Verdict.SHORT] == 1
            assert c.verdicts[Verdict.BAD_MAGIC] == 1
            assert (c.other_session, c.bad_size, c.data_new) == (1, 2, 0)
            assert r.published() == []
            # the real chunk 0 is still welcome: the corrupt copy did not mark it received
            tx.send(good)
            r.run()
            assert r.rx.counters().data_new == 1
            assert r.rx.feedback().cum_ack == 1
        finally:
            r.close()


def test_control_frames_are_returned_whole() -> None:
    size = 10 * CS
    fb_payload = encode_payload(Feedback(1, 2, 3, 0, ((5, 6),)))
    ctrl = data_frame(7, fb_payload, ftype=FrameType.FEEDBACK)
    ping = data_frame(1, b"\0" * 12, ftype=FrameType.PING, session=0)
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size)
        try:
            send_all(tx, [chunk_frame(0, size), ctrl, chunk_frame(1, size), ping])
            run = r.run()
            assert run.control == [ctrl, ping]
            assert decode_payload(FrameType.FEEDBACK, run.control[0][38:]) == Feedback(
                1, 2, 3, 0, ((5, 6),)
            )
            c = r.rx.counters()
            assert (c.control, c.data_new) == (2, 2)
        finally:
            r.close()


def test_control_arena_full_stops_the_loop_without_losing_frames() -> None:
    size = 10 * CS
    pings = [data_frame(i, b"p" * 12, ftype=FrameType.PING, session=0) for i in range(5)]
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, ctrl_slots=2)
        try:
            send_all(tx, pings)
            got: list[bytes] = []
            for _ in range(5):
                run = r.run()
                got += run.control
                if len(got) == 5:
                    break
                assert run.stop & dp.RxStop.CTRL_FULL
            assert got == pings
        finally:
            r.close()


def test_without_a_control_arena_control_frames_are_counted() -> None:
    size = 10 * CS
    ping = data_frame(1, b"p" * 12, ftype=FrameType.PING, session=0)
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, ctrl_slots=0)
        try:
            send_all(tx, [ping, chunk_frame(0, size)])
            assert r.run().control == []
            c = r.rx.counters()
            assert (c.control_dropped, c.data_new) == (1, 1)
        finally:
            r.close()


def test_full_rings_stop_reading_and_nothing_is_lost() -> None:
    size = 40 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=2, nslots=8, batch=4, window=64)
        try:
            send_all(tx, [chunk_frame(k, size) for k in range(40)])
            run = r.run()
            assert run.stop & dp.RxStop.RING_FULL
            assert r.rx.counters().data_new == 16  # 2 rings x 8 slots
            assert r.rx.counters().ring_full == 1
            fb = r.rx.feedback()
            assert fb.free_slots == 0
            assert fb.credit == fb.cum_ack == 16  # no room: no credit beyond what arrived
            seen: list[int] = []
            for _ in range(20):
                seen += r.published()  # frees the rings, like a writer
                run = r.run()
                if run.stop & dp.RxStop.COMPLETE:
                    break
            seen += r.published()
            assert sorted(seen) == list(range(40))
            assert r.rx.counters().data_new == 40
        finally:
            r.close()


def test_credit_is_free_slots_minus_a_batch_bounded_by_the_window() -> None:
    size = 10_000 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=2, nslots=64, batch=16, window=1024)
        try:
            fb = r.rx.feedback()
            assert fb.free_slots == 128
            assert fb.credit == 128 - 16
            send_all(tx, [chunk_frame(k, size) for k in (0, 1, 2, 9)])
            r.run()
            fb = r.rx.feedback()
            assert fb.free_slots == 124
            assert fb.credit == 3 + 124 - 16
        finally:
            r.close()
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=1, nslots=1024, batch=16, window=64)
        try:
            assert r.rx.feedback().credit == 64  # the window is the tighter bound
        finally:
            r.close()


@pytest.mark.parametrize(("publish_bytes", "batches"), [(0, 5), (10 * CS, 2), (1 << 20, 1)])
def test_batches_are_published_by_the_byte(publish_bytes: int, batches: int) -> None:
    """20 queued chunks, 4 per recvmmsg: one head update per recvmmsg only when asked."""
    size = 100 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=2, batch=4, publish_bytes=publish_bytes)
        try:
            send_all(tx, [chunk_frame(k, size) for k in range(20)])
            r.run()
            c = r.rx.counters()
            assert c.recv_calls >= 5
            assert c.batches == batches
            assert sorted(r.published()) == list(range(20))  # all published when run returns
        finally:
            r.close()


def test_a_quiet_link_does_not_hold_a_batch_back() -> None:
    """Below publish_bytes, a batch is published publish_us after the socket went quiet, not
    only when the call ends (the writer must not wait for the next feedback tick)."""
    size = 100 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=1, publish_bytes=1 << 20, publish_us=1000)
        try:
            result: list[dp.RxRun] = []
            worker = threading.Thread(target=lambda: result.append(r.run(budget_s=0.8)))
            worker.start()  # cffi releases the GIL while the loop waits in C
            time.sleep(0.05)
            t0 = time.monotonic()
            send_all(tx, [chunk_frame(k, size) for k in range(3)])
            while r.rings[0].used() == 0 and time.monotonic() - t0 < 0.7:
                time.sleep(0.0005)
            latency = time.monotonic() - t0
            worker.join(5)
            assert r.rings[0].used() == 3
            assert latency < 0.4  # published well before the 0.8 s budget ran out
            assert result and result[0].stop & dp.RxStop.BUDGET
        finally:
            r.close()


def test_gather_takes_a_trickle_in_few_reads() -> None:
    """With gather_us, a read that drains the socket mid-stream is followed by a sleep, so the
    frames that arrive meanwhile come in one recvmmsg instead of one wake-up each; nothing is
    lost or held back."""
    size = 40 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=1, window=64, gather_us=5000)
        try:
            frames = [chunk_frame(k, size) for k in range(40)]

            def trickle() -> None:
                for f in frames:
                    tx.send(f)
                    time.sleep(0.001)

            sender = threading.Thread(target=trickle)
            sender.start()
            deadline = time.monotonic() + 10
            while not r.run(budget_s=0.5).stop & dp.RxStop.COMPLETE:
                assert time.monotonic() < deadline
            sender.join(5)
            c = r.rx.counters()
            assert c.data_new == 40 and c.frames == 40
            assert c.gathers >= 1
            # Without gathering the loop reads each frame on its own (about 40 reads and as
            # many poll wake-ups); with it, each read after a sleep takes several.
            assert c.recv_calls < 30
            assert sorted(r.published()) == list(range(40))
        finally:
            r.close()


def test_gather_us_is_bounded() -> None:
    with dgram_pair() as (_, rxs), pytest.raises(ValueError):
        Receiver(rxs, CS, 10 * CS, gather_us=10_001)


# --------------------------------------------------------------------------- resume


def test_resume_from_the_written_bitmap() -> None:
    size = 100 * CS
    written = bytearray(dp.written_bitmap_size(size, CS))
    for k in (0, 1, 2, 5, 70):
        written[k >> 3] |= 1 << (k & 7)
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, window=64, written=written)
        try:
            fb = r.rx.feedback()
            assert (fb.cum_ack, fb.highest) == (3, 71)
            assert fb.ranges == ((5, 6),)  # chunk 70 is beyond the window: not in SACK yet
            send_all(tx, [chunk_frame(k, size) for k in (1, 5, 3, 4)])
            r.run()
            c = r.rx.counters()
            assert (c.duplicates, c.data_new) == (2, 2)
            # cum_ack went 3 -> 6; bits recycled from the window now stand for 64..69, and 70
            # is seeded from the bitmap as the window slides over it
            send_all(tx, [chunk_frame(k, size) for k in range(6, 70)])
            r.run()
            fb = r.rx.feedback()
            assert fb.cum_ack == 71
            tx.send(chunk_frame(70, size))
            r.run()
            assert r.rx.counters().duplicates == 3
        finally:
            r.close()


def test_a_refused_descriptor_is_never_marked_written(tmp_path: Path) -> None:
    """A writer that refuses (here: told a smaller file) leaves the bitmap bit clear."""
    size = 10 * CS
    fd = tmpfile_fd(str(tmp_path / "out"))
    written = bytearray(dp.written_bitmap_size(size, CS))
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=1, fd=fd, written=written)
        try:
            r.writers = [dp.Writer(r.rings[0], fd, chunk_size=CS, file_size=5 * CS)]
            send_all(tx, [chunk_frame(k, size) for k in range(8)])
            r.run()
            assert r.drain() == 5 * CS
            r.rx.feedback()
            assert bits(written, 10) == set(range(5))
            c = r.rx.counters()
            assert (c.refused, c.written) == (3, 5)
            assert r.writers[0].stats().refused == 3
        finally:
            r.close()
    assert os.fstat(fd).st_size == 5 * CS
    os.close(fd)


def test_bad_arguments_are_refused() -> None:
    with dgram_pair() as (_, rxs):
        ring = dp.ShmRing(8, 128)
        try:
            for kw in ({"window": 100}, {"window": 32}, {"batch": 0}, {"chunk_size": 0}):
                args = {"session": 1, "chunk_size": 50, "file_size": 1000} | kw
                with pytest.raises(ValueError):
                    dp.RxPath(rxs, [ring], **args)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="bitmap"):  # 100 chunks need 13 bytes
                dp.RxPath(
                    rxs, [ring], session=1, chunk_size=10, file_size=1000, written=bytearray(12)
                )
            with pytest.raises(TypeError, match="writable"):
                dp.RxPath(rxs, [ring], session=1, chunk_size=10, file_size=1000, written=b"x" * 13)
            with pytest.raises(NativeError):  # a 128-byte slot cannot hold a 100-byte chunk
                dp.RxPath(rxs, [ring], session=1, chunk_size=100, file_size=1000)
            with pytest.raises(ValueError):
                dp.RxPath(rxs, [], session=1, chunk_size=10, file_size=1000)
            # a ring still holding an earlier file's descriptors is refused until drained
            ring.push(dp.pack_descriptors([3], payload_len=10))
            with pytest.raises(NativeError, match="busy"):
                dp.RxPath(rxs, [ring], session=1, chunk_size=10, file_size=1000)
            ring.pop(1)
            dp.RxPath(rxs, [ring], session=1, chunk_size=10, file_size=1000).close()
        finally:
            ring.close()


# --------------------------------------------------------------------------- model


class WindowModel:
    """The receive window in plain Python: a set of received chunks."""

    def __init__(self, first: int, nchunks: int, window: int) -> None:
        self.first, self.end, self.window = first, first + nchunks, window
        self.received: set[int] = set()
        self.base = first
        self.dup = self.oow = self.oor = self.new = 0

    def feed(self, c: int) -> None:
        if not self.first <= c < self.end:
            self.oor += 1
        elif c < self.base or c in self.received:
            self.dup += 1
        elif c >= self.base + self.window:
            self.oow += 1
        else:
            self.received.add(c)
            self.new += 1
            while self.base in self.received:
                self.base += 1

    def sack(self) -> tuple[tuple[int, int], ...]:
        return ChunkRanges(ranges_of(self.received)).sack(self.base)

    def check_counters(self, cnt: dp.RxCounters) -> None:
        """The C loop counted what this model counted."""
        got = (cnt.data_new, cnt.duplicates, cnt.out_of_window, cnt.out_of_range)
        assert got == (self.new, self.dup, self.oow, self.oor)


def ranges_of(chunks: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(chunks):
        if out and out[-1][1] == c:
            out[-1] = (out[-1][0], c + 1)
        else:
            out.append((c, c + 1))
    return out


FIRST = 1000
NCHUNKS = 300


@settings(max_examples=80, deadline=None)
@given(
    groups=st.lists(
        st.lists(st.integers(FIRST - 5, FIRST + NCHUNKS + 5), max_size=60), min_size=1, max_size=6
    ),
    window=st.sampled_from([64, 128]),
)
def test_window_matches_a_set_model(groups: list[list[int]], window: int) -> None:
    size = NCHUNKS * CS - 17
    model = WindowModel(FIRST, NCHUNKS, window)
    written = bytearray(dp.written_bitmap_size(size, CS))
    with dgram_pair() as (tx, rxs):
        r = Receiver(
            rxs,
            CS,
            size,
            first_chunk=FIRST,
            nrings=3,
            nslots=512,
            batch=8,
            window=window,
            written=written,
        )
        try:
            for group in groups:
                send_all(tx, [chunk_frame(c - FIRST, size, FIRST) for c in group])
                for c in group:
                    model.feed(c)
                r.run()
                fb = r.rx.feedback()
                assert fb.cum_ack == model.base
                assert fb.highest == max([model.base, *(c + 1 for c in model.received)])
                assert fb.ranges == model.sack()
                assert fb.credit == model.base + min(fb.free_slots - 8, window)
                model.check_counters(r.rx.counters())
            r.drain()  # bench writers: release everything
            r.rx.feedback()
            assert bits(written, NCHUNKS) == {c - FIRST for c in model.received}
        finally:
            r.close()


# --------------------------------------------------------------------------- discarding (bench)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(
        st.lists(st.integers(FIRST - 5, FIRST + NCHUNKS + 5), max_size=60), min_size=1, max_size=6
    ),
    window=st.sampled_from([64, 128]),
)
def test_a_discarding_path_keeps_the_same_window_and_publishes_nothing(
    groups: list[list[int]], window: int
) -> None:
    """A bench stream's path (discard=): every chunk is verified, windowed and counted exactly
    as in a file's path, through 8 scratch slots that each read reuses, and no slot is ever
    handed to a writer; the credit counts `discard` slots free."""
    size = NCHUNKS * CS - 17
    model = WindowModel(FIRST, NCHUNKS, window)
    with dgram_pair() as (tx, rxs):
        r = Receiver(
            rxs, CS, size, first_chunk=FIRST, nrings=1, nslots=8, batch=8, window=window,
            discard=300,
        )  # fmt: skip
        try:
            for group in groups:
                send_all(tx, [chunk_frame(c - FIRST, size, FIRST) for c in group])
                for c in group:
                    model.feed(c)
                run = r.run()
                assert not run.stop & dp.RxStop.RING_FULL  # 60 frames through 8 slots
                fb = r.rx.feedback()
                assert fb.cum_ack == model.base
                assert fb.ranges == model.sack()
                assert fb.free_slots == 300
                assert fb.credit == model.base + min(300 - 8, window)
                model.check_counters(r.rx.counters())
                assert r.rings[0].counts() == (0, 0)  # head and tail: nothing published
            assert r.published() == []
        finally:
            r.close()


def ring_slot(ring: dp.ShmRing, i: int) -> bytes:
    """Slot i's bytes: the slots end the ring's region (csrc/ring.c `layout`)."""
    start = ring.size - ring.nslots * ring.slot_size + i * ring.slot_size
    return bytes(ring._mm[start : start + ring.slot_size])


def test_a_discarding_path_refuses_bad_frames_and_lands_reads_in_its_first_slots() -> None:
    size = 10 * CS
    good = chunk_frame(0, size)
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=1, nslots=16, batch=4, discard=64)
        try:
            send_all(tx, [corrupt(good), data_frame(1, chunk_bytes(1, CS), session=SESSION + 1)])
            r.run()
            c = r.rx.counters()
            assert (c.verdicts[Verdict.BAD_CRC], c.other_session, c.data_new) == (1, 1, 0)
            assert r.rx.feedback().cum_ack == 0  # the corrupt copy did not count as chunk 0
            send_all(tx, [chunk_frame(k, size) for k in range(10)])
            r.run()
            assert r.rx.feedback().cum_ack == 10
            # Ten frames in reads of at most 4, each from slot 0: chunk 8 (the third read's
            # first frame) is in slot 0, and slots past the batch were never written.
            assert chunk_bytes(8, CS) in ring_slot(r.rings[0], 0)
            assert not any(ring_slot(r.rings[0], 4))
        finally:
            r.close()


def test_discard_arguments_are_checked() -> None:
    with dgram_pair() as (_, rxs):
        ring = dp.ShmRing(8, 256)
        try:
            base = {"session": 1, "chunk_size": 50, "file_size": 1000, "batch": 8}
            for kw in ({"discard": 8}, {"discard": 64, "raw": True}, {"discard": -1}):
                with pytest.raises(ValueError):
                    dp.RxPath(rxs, [ring], **(base | kw))  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="written"):
                dp.RxPath(rxs, [ring], **base, discard=64, written=bytearray(3))  # type: ignore[arg-type]
            dp.RxPath(rxs, [ring], **base, discard=9).close()  # type: ignore[arg-type]
        finally:
            ring.close()


def test_sack_lists_at_most_64_ranges_lowest_first() -> None:
    size = 1000 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size, nrings=2, nslots=256, window=256, batch=32)
        try:
            send_all(tx, [chunk_frame(k, size) for k in range(1, 200, 2)])  # 100 islands
            r.run()
            fb = r.rx.feedback()
            assert fb.cum_ack == 0
            assert len(fb.ranges) == 64
            assert fb.ranges == tuple((k, k + 1) for k in range(1, 129, 2))
            wire = fb.to_wire(kernel_drops=3)
            assert wire.violation() is None
        finally:
            r.close()


def test_the_loop_honours_its_time_budget() -> None:
    with dgram_pair() as (_, rxs):
        r = Receiver(rxs, CS, 10 * CS)
        try:
            t0 = time.monotonic()
            run = r.run(budget_s=0.05)
            took = time.monotonic() - t0
            assert run.stop == dp.RxStop.BUDGET
            assert 0.04 <= took < 1.0
            assert r.rx.counters().polls >= 1
        finally:
            r.close()


def test_a_frame_longer_than_its_slot_is_dropped_as_truncated() -> None:
    size = 10 * CS
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, CS, size)  # slots of 192 bytes
        try:
            big = data_frame(0, b"z" * 400)  # a valid frame, but longer than any slot
            tx.send(big)
            tx.send(chunk_frame(0, size))
            r.run()
            c = r.rx.counters()
            assert c.verdicts[Verdict.BAD_LENGTH] == 1  # only 192 bytes were stored
            assert c.bytes == len(big) + 138  # the real length was seen (MSG_TRUNC)
            assert c.data_new == 1
        finally:
            r.close()
