"""An in-memory lossy link between a TxWindow and an RxTracker, on a virtual clock.

It plays the parts the C data path and the kernel play in production, so the reliability core
can be tested under every fault in milliseconds (STYLE.md §13):

- the sender's C loop: each step it asks `TxWindow.next_batch` for up to `chunks_per_step`
  chunks (one sendmmsg batch) and puts one frame per chunk on the wire. With `burst_steps` it
  streams instead, as csrc/txstream.c does: while `TxWindow.stream_range` allows, a burst sends
  new chunks up to the credit of the FEEDBACKs it reads itself, for up to that many steps (or
  until a FEEDBACK reports SACK ranges or drops), and only then does the window see the sends
  (`record_streamed`) and the FEEDBACKs (coalesced), as the daemon replays a burst;
- the wire: seeded loss, duplication, reordering, corruption, blackouts (both directions dead)
  and FEEDBACK loss, plus a one-way latency;
- the receiver's C loop: each step it takes the frames that arrived (one recvmmsg batch), drops
  those whose CRC fails (a corrupted frame becomes a loss and never reaches the tracker), drops
  frames when its receive capacity or the ring is exhausted (reported as kernel drops), and
  hands the rest to `RxTracker.on_chunks` as chunk ranges;
- the writer: it takes each new chunk's payload exactly once and drains the ring at a bounded
  rate, which is what the credit is computed from.

Every frame carries its chunk's bytes and a CRC, so the test can check that every chunk was
delivered exactly once and that no corrupted payload was ever written.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from l2fast.transfer.receiver import RxConfig, RxTracker
from l2fast.transfer.reliability import TransferStalled, TxConfig, TxWindow, coalesce_feedback
from l2fast.wire.frames import Feedback

FOREVER = math.inf


@dataclass(frozen=True)
class Faults:
    """What the link does wrong. Probabilities are per frame."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.002  #: a reordered frame is held up to this much longer
    corrupt: float = 0.0
    feedback_loss: float = 0.0
    #: (start, end) in seconds: frames sent or arriving inside are lost, both directions.
    blackouts: tuple[tuple[float, float], ...] = ()
    #: frames the receiver's loop can take per step; the rest are kernel drops (None: all)
    rx_frames_per_step: int | None = None

    def dead(self, t: float) -> bool:
        """True when the link is down at time t."""
        return any(start <= t < end for start, end in self.blackouts)


@dataclass(frozen=True)
class Setup:
    """The transfer and the machines at both ends."""

    total: int | None = 1500
    seed: int = 0
    step: float = 0.0001  #: one turn of both C loops, in seconds
    chunks_per_step: int = 32  #: the sender's batch size and the link's capacity per step
    latency: float = 0.0005  #: one way
    buffer_chunks: int = 512  #: receive ring capacity
    drain_per_step: int | None = None  #: the writers' speed (None: the ring drains at once)
    have: tuple[tuple[int, int], ...] = ()  #: chunks the receiver holds before the start
    sender_knows_have: bool = True  #: FILE_ACCEPT's ranges reached the sender
    tx_config: TxConfig = field(default_factory=TxConfig)
    rx_config: RxConfig = field(default_factory=RxConfig)
    max_time: float = 30.0  #: virtual seconds before the harness gives up (a hang)
    stop_after_chunks: int | None = None  #: open-ended runs: stop when this many arrived
    #: Stream new data in bursts of up to this many steps (0: ask next_batch every step).
    burst_steps: int = 0


@dataclass
class Result:
    """What happened, for assertions."""

    tx: TxWindow
    rx: RxTracker
    elapsed: float = 0.0
    completed: bool = False
    stalled: TransferStalled | None = None
    delivered: dict[int, int] = field(default_factory=dict)  #: chunk -> times written
    bad_payloads: int = 0  #: written payloads that differ from the source (must stay 0)
    sent: dict[int, int] = field(default_factory=dict)  #: chunk -> times sent
    frames_sent: int = 0
    lost: int = 0  #: dropped by random loss
    blackout_lost: int = 0
    corrupted: int = 0  #: corrupted on the wire
    crc_dropped: int = 0  #: dropped by the receiver's CRC check (corrupted frames that arrived)
    duplicated: int = 0
    reordered: int = 0
    kernel_drops: int = 0  #: receiver loop over capacity
    overflow_drops: int = 0  #: ring full (the credit should prevent this)
    over_credit: list[int] = field(default_factory=list)  #: chunks sent >= credit granted
    feedbacks_sent: int = 0
    feedbacks_lost: int = 0
    max_ring: int = 0  #: highest ring occupancy seen
    bursts: int = 0  #: streaming bursts replayed into the window
    streamed_chunks: int = 0  #: chunks those bursts sent

    @property
    def wire_losses(self) -> int:
        """Data frames that never reached the tracker for any reason."""
        return (
            self.lost
            + self.blackout_lost
            + self.corrupted
            + self.kernel_drops
            + self.overflow_drops
        )


def payload_of(chunk: int, seed: int) -> bytes:
    """The source bytes of one chunk (small: the harness moves indices, not megabytes)."""
    return chunk.to_bytes(8, "big") + (seed * 0x9E3779B97F4A7C15 % (1 << 64)).to_bytes(8, "big")


def _ranges(chunks: list[int]) -> list[tuple[int, int]]:
    """Sorted chunks to ranges like the C loop would hand over; repeats stay separate."""
    out: list[tuple[int, int]] = []
    for k in sorted(chunks):
        if out and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
    return out


class _Streamed(Protocol):
    """What a burst is replayed into: a `TxWindow` or an `OutgoingTransfer` (data space)."""

    def record_streamed(self, start: int, end: int, now: float, credit: int) -> None: ...

    def on_feedback(
        self,
        feedback: Feedback,
        now: float,
        seq: int | None = None,
        *,
        first_seq: int | None = None,
    ) -> Any: ...


@dataclass
class StreamBurst:
    """A streaming burst under way (csrc/txstream.c): what the C loop knows; the window learns
    it when the burst ends (`replay`), as the daemon's OutgoingJob does."""

    next: int
    end: int
    credit: int
    hard_deadline: float  #: the daemon's BURST_S after the start
    quiet: float | None  #: the window's timer, restarted by each new cum_ack (`quiet_ns`)
    deadline: float = 0.0  #: when the burst returns, as it stands
    sends: list[tuple[int, int, float]] = field(default_factory=list)
    feedback: list[tuple[int, Feedback]] = field(default_factory=list)
    last_arrival: float = 0.0
    cum_seen: int = 0
    over: bool = False  #: reached `end`, or a FEEDBACK with news arrived

    @classmethod
    def start(
        cls, span: tuple[int, int], credit: int, now: float, length: float, timer: float | None
    ) -> StreamBurst:
        """A burst of new chunks `span` from `now`, as OutgoingJob._burst starts one."""
        quiet = None if timer is None else max(timer - now, 0.0)
        burst = cls(span[0], span[1], credit, now + length, quiet)
        burst.deadline = (
            burst.hard_deadline if quiet is None else min(now + quiet, burst.hard_deadline)
        )
        return burst

    def read(self, seq: int, feedback: Feedback, now: float) -> None:
        """One FEEDBACK read in C: a plain one's credit is taken (and a new cum_ack restarts
        the quiet time), any other ends the burst."""
        self.feedback.append((seq, feedback))
        self.last_arrival = now
        if feedback.ranges or feedback.kernel_drops:
            self.over = True
            return
        self.credit = max(self.credit, feedback.credit)
        if self.quiet is not None and feedback.cum_ack > self.cum_seen:
            self.cum_seen = feedback.cum_ack
            self.deadline = min(now + self.quiet, self.hard_deadline)

    def take(self, max_chunks: int, now: float) -> list[tuple[int, int]]:
        """This step's sendmmsg: new chunks below the credit and `end`."""
        n = min(min(self.credit, self.end) - self.next, max_chunks)
        if n <= 0:
            return []
        self.sends.append((self.next, self.next + n, now))
        self.next += n
        self.over = self.over or self.next >= self.end
        return [(self.next - n, self.next)]

    def replay(self, window: _Streamed) -> int:
        """What the daemon does when the burst returns: the sends first, then the FEEDBACKs,
        coalesced, at the last one's arrival. Returns the chunks the burst sent."""
        for s, e, t in self.sends:
            window.record_streamed(s, e, t, self.credit)
        for first, seq, fb in coalesce_feedback(self.feedback):
            window.on_feedback(fb, self.last_arrival, seq, first_seq=first)
        return sum(e - s for s, e, _ in self.sends)


def run(setup: Setup, faults: Faults = Faults()) -> Result:
    """Run one transfer to completion, stall or `setup.max_time`."""
    rng = random.Random(setup.seed)
    now = 0.0
    rx = RxTracker(setup.total, buffer_chunks=setup.buffer_chunks, have=setup.have,
                   config=setup.rx_config, now=now)  # fmt: skip
    tx_have = setup.have if setup.sender_knows_have else ()
    tx = TxWindow(setup.total, credit=rx.credit, have=tx_have, config=setup.tx_config, now=now)
    res = Result(tx=tx, rx=rx)
    granted = rx.credit
    held: set[int] = set()  # chunks the writer has (mirrors the on-disk bitmap)
    for s, e in setup.have:
        held.update(range(s, e))
    ring = 0
    data: list[tuple[float, int, int, bytes, int]] = []  # (arrival, tiebreak, chunk, payload, crc)
    back: list[tuple[float, int, int, Feedback]] = []  # (arrival, tiebreak, seq, feedback)
    tiebreak = 0
    burst: StreamBurst | None = None

    while now <= setup.max_time:
        while back and back[0][0] <= now:
            _, _, seq, feedback = heapq.heappop(back)
            if burst is None:
                tx.on_feedback(feedback, now, seq)
            else:
                burst.read(seq, feedback, now)
        if burst is not None and (burst.over or now >= burst.deadline):
            res.streamed_chunks += burst.replay(tx)
            res.bursts += 1
            burst = None
        if tx.done:
            res.completed = True
            break
        if setup.stop_after_chunks is not None and rx.count >= setup.stop_after_chunks:
            break
        timer = tx.next_timer()
        if burst is None and timer is not None and timer <= now:
            try:
                tx.handle_timer(now)
            except TransferStalled as stalled:
                res.stalled = stalled
                break

        # The sender's C loop: one batch, one frame per chunk.
        if burst is None and setup.burst_steps and (span := tx.stream_range()) is not None:
            length = setup.burst_steps * setup.step
            burst = StreamBurst.start(span, tx.credit, now, length, tx.next_timer())
        if burst is not None:
            batch = burst.take(setup.chunks_per_step, now)
            credit = burst.credit
        else:
            batch = tx.next_batch(now, setup.chunks_per_step)
            credit = tx.credit
        for s, e in batch:
            for k in range(s, e):
                res.frames_sent += 1
                res.sent[k] = res.sent.get(k, 0) + 1
                if k >= granted or k >= credit:
                    res.over_credit.append(k)
                if faults.dead(now):
                    res.blackout_lost += 1
                    continue
                if rng.random() < faults.loss:
                    res.lost += 1
                    continue
                payload = payload_of(k, setup.seed)
                crc = zlib.crc32(payload)
                if rng.random() < faults.corrupt:
                    res.corrupted += 1
                    bit = rng.randrange(len(payload) * 8)
                    flipped = bytearray(payload)
                    flipped[bit // 8] ^= 1 << (bit % 8)
                    payload = bytes(flipped)
                delay = setup.latency
                if rng.random() < faults.reorder:
                    res.reordered += 1
                    delay += rng.uniform(setup.step, faults.reorder_delay)
                tiebreak += 1
                heapq.heappush(data, (now + delay, tiebreak, k, payload, crc))
                if rng.random() < faults.duplicate:
                    res.duplicated += 1
                    tiebreak += 1
                    again = now + delay + rng.uniform(0, 4 * setup.step)
                    heapq.heappush(data, (again, tiebreak, k, payload, crc))

        # The receiver's C loop: verify, filter, hand over one batch of ranges.
        arrived: list[int] = []
        payloads: dict[int, bytes] = {}
        fresh_in_batch = 0
        taken = 0
        while data and data[0][0] <= now:
            t, _, k, payload, crc = heapq.heappop(data)
            if faults.dead(t):
                res.blackout_lost += 1
                continue
            if faults.rx_frames_per_step is not None and taken >= faults.rx_frames_per_step:
                res.kernel_drops += 1
                rx.add_kernel_drops(1)
                continue
            taken += 1
            if zlib.crc32(payload) != crc:
                res.crc_dropped += 1
                continue  # bad_crc: dropped and counted, never handed over
            if k not in held and k not in payloads:
                if ring + fresh_in_batch >= setup.buffer_chunks:
                    res.overflow_drops += 1
                    rx.add_kernel_drops(1)
                    continue
                fresh_in_batch += 1
                payloads[k] = payload
            arrived.append(k)
        if arrived:
            for s, e in rx.on_chunks(_ranges(arrived), now):
                for k in range(s, e):
                    res.delivered[k] = res.delivered.get(k, 0) + 1
                    if payloads.get(k) != payload_of(k, setup.seed):
                        res.bad_payloads += 1
                    held.add(k)
                    ring += 1
        res.max_ring = max(res.max_ring, ring)

        # The writers drain the ring; the free space feeds the credit.
        ring -= ring if setup.drain_per_step is None else min(ring, setup.drain_per_step)
        rx.set_buffer_space(setup.buffer_chunks - ring)

        if rx.feedback_due(now):
            fb = rx.make_feedback(now)
            assert fb.violation() is None, fb.violation()
            granted = max(granted, fb.credit)
            res.feedbacks_sent += 1
            dead = faults.dead(now) or faults.dead(now + setup.latency)
            if dead or rng.random() < faults.feedback_loss:
                res.feedbacks_lost += 1
            else:
                tiebreak += 1
                seq = rx.counters.feedbacks
                heapq.heappush(back, (now + setup.latency, tiebreak, seq, fb))

        now = _next_time(now, setup, tx, rx, batch, ring, data, back, burst)
    res.elapsed = now
    return res


def _next_time(
    now: float,
    setup: Setup,
    tx: TxWindow,
    rx: RxTracker,
    batch: list[tuple[int, int]],
    ring: int,
    data: list[tuple[float, int, int, bytes, int]],
    back: list[tuple[float, int, int, Feedback]],
    burst: StreamBurst | None,
) -> float:
    """The next step, skipping ahead over idle time (timeouts last seconds of virtual time)."""
    step = now + setup.step
    if batch or ring:
        return step
    wake = [t for t in (tx.next_timer(), rx.next_timer()) if t is not None]
    if burst is not None:
        wake.append(burst.deadline)
    if data:
        wake.append(data[0][0])
    if back:
        wake.append(back[0][0])
    if not wake:
        return step
    # Stay on the step grid so batching looks the same whether or not time was skipped.
    target = max(min(wake), step)
    return math.ceil(round(target / setup.step, 6)) * setup.step
