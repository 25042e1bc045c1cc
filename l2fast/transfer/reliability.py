"""The sans-IO reliability core of bulk transfer: `TxWindow` (sender) and `RxTracker` (receiver).

`RxTracker` lives in `l2fast.transfer.receiver` (one concept per module) and is re-exported here.

Neither class touches a socket or a clock: callers pass `now` (seconds, any monotonic origin)
and move chunk *ranges*, never single frames (STYLE.md §1, §4). The C data path sends and
receives the frames; Python runs once per batch and once per FEEDBACK (~1 kHz), so every call
here costs O(ranges touched), not O(chunks).

Design, after FACTS.md "Reliable bulk transfer":

- Flow control is credit based (PROTOCOL.md §FEEDBACK): the receiver grants "send chunks below
  `credit`", with credit = cum_ack + free receive buffer, and never takes a grant back. The
  sender never sends a chunk at or above the credit it holds.
- Acknowledgement is cumulative plus up to 64 SACK ranges plus `highest`.
- Loss detection follows QUIC (RFC 9002 §6.1). Chunk indices are reused by retransmissions, so
  they cannot play the role of QUIC packet numbers: the sender numbers every *transmission* in
  send order (a batch holds consecutive numbers, ascending with the chunk index inside it) and a
  chunk is lost once a transmission numbered `packet_threshold` later was acknowledged
  (§6.1.1), or once `time_threshold` x RTT has passed since it was sent while a later
  transmission was acknowledged (§6.1.2).
- RTT follows RFC 6298 §2 (SRTT/RTTVAR), sampled as RFC 9002 §5.1 says: only when the largest
  acknowledged transmission is newly acknowledged, and (Karn) never from a retransmission.
  FEEDBACK has no ack-delay field, so no sample is taken after a gap in the FEEDBACK counter
  either (lost FEEDBACKs mean the acknowledgement may have waited at the receiver).
- An acknowledged retransmission may be an earlier transmission arriving late. One acknowledged
  sooner than 0.95 x min RTT after it left is counted as spurious and, like RFC 8985 §6.2, does
  not advance the largest acknowledged transmission. An RTO probe, sent an RTO after the
  previous attempt, drives loss detection only when it is the only chunk a FEEDBACK newly
  acknowledges: acknowledged together with older chunks, it is a stalled receiver answering
  from its queue (the first transmission arrived), and the chunks still queued there are not
  lost.
- The retransmission timeout follows RFC 6298 §5, with QUIC's probe behaviour (RFC 9002 §6.2):
  on expiry the lowest unacknowledged chunk is sent again and the timeout doubles, up to
  `max_rto`. After `stall_timeout` without progress the transfer fails with `TransferStalled`
  instead of hanging.
- Receiver kernel drops (PACKET_STATISTICS) mean the receiver's loop was outrun: they set a
  pacing rate at half the recent send rate, at most once per RTT (like RFC 9002 §7.3.2's
  recovery period), and every RTT without drops grows it back by `rate_growth`. The rate is a
  hint for the C sender too (`pacing_rate`); `next_batch` enforces it with a token bucket.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from l2fast.errors import L2fastError
from l2fast.transfer.ranges import ChunkRanges, RangeOwners
from l2fast.transfer.receiver import RxConfig, RxCounters, RxTracker
from l2fast.wire.constants import MAX_SACK_RANGES, ErrorCode
from l2fast.wire.frames import Feedback

__all__ = [
    "Feedback",
    "RxConfig",
    "RxCounters",
    "RxTracker",
    "TransferStalled",
    "TxConfig",
    "TxStats",
    "TxWindow",
    "coalesce_feedback",
]

_UNLIMITED = 1 << 62  # larger than any chunk count that fits a u64 field's useful range
#: An ack this fraction of min RTT after a retransmission cannot be the retransmission's own
#: (a little under 1: RTT samples of the same path differ by rounding and jitter).
_SPURIOUS_RTT = 0.95


class TransferStalled(L2fastError):
    """The peer made no progress for `TxConfig.stall_timeout` seconds: the transfer failed."""

    code = ErrorCode.TIMEOUT

    def __init__(self, idle: float, cum_ack: int) -> None:
        super().__init__(
            f"transfer stalled: no progress from the receiver for {idle:.1f} s "
            f"(all chunks below {cum_ack} were acknowledged)",
            hint="check the link and that the receiving daemon is still running, "
            "then send again: the receiver keeps what it has and only missing chunks are resent",
        )
        self.idle = idle
        self.cum_ack = cum_ack


@dataclass(frozen=True, slots=True)
class TxConfig:
    """Tuning of `TxWindow`. The defaults suit a LAN with FEEDBACK every ~1 ms."""

    #: RFC 9002 §6.1.1 uses 3 packets. Chunks go out by the thousand per millisecond, so a
    #: larger threshold costs almost no detection delay while tolerating a reordering relay.
    packet_threshold: int = 64
    #: RFC 9002 §6.1.2 kTimeThreshold.
    time_threshold: float = 9 / 8
    #: RFC 9002 kGranularity / RFC 6298 G: the feedback interval bounds our timer precision.
    granularity: float = 0.001
    #: RTT assumed before the first sample (RFC 9002 §6.2.2); the session's PROBE RTT is better.
    initial_rtt: float = 0.01
    #: RFC 6298 §2.4 asks for 1 s; a LAN answers in microseconds, so the floor is far lower.
    min_rto: float = 0.005
    #: Upper bound of the backed-off timeout (RFC 6298 §5.5 allows a maximum).
    max_rto: float = 0.5
    #: Seconds without progress while waiting on the receiver before TransferStalled.
    stall_timeout: float = 5.0
    #: Pacing after kernel drops: the rate never falls below this (chunks per second)...
    min_rate: float = 1000.0
    #: ...grows by this fraction per RTT without drops...
    rate_growth: float = 0.25
    #: ...and allows bursts of this many seconds' worth of chunks (at least `min_burst`).
    burst_time: float = 0.0002
    min_burst: int = 8


@dataclass(slots=True)
class TxStats:
    """Counters of a `TxWindow`, in chunks unless named otherwise."""

    new_chunks_sent: int = 0
    retransmitted_chunks: int = 0  #: includes RTO probes
    #: acknowledgements of an RTO probe's chunk that came with older chunks' (the first
    #: transmission arrived; the probe did not drive loss detection)
    ambiguous_probe_acks: int = 0
    probes: int = 0  #: retransmission timeouts that sent a probe
    lost_chunks: int = 0  #: declared lost (RFC 9002 §6.1)
    spurious_losses: int = 0  #: declared lost, then acknowledged before being sent again
    #: retransmissions acknowledged sooner than min RTT after they left: the original arrived.
    spurious_retransmits: int = 0
    feedbacks: int = 0
    rtt_samples: int = 0
    kernel_drops: int = 0  #: sum of the receiver's reported kernel drops
    rate_cuts: int = 0  #: times the pacing rate was halved


@dataclass(slots=True)
class _Batch:
    """One call of `next_batch` (new data and retransmissions are separate batches)."""

    ident: int
    pn0: int  #: transmission number of the batch's first chunk
    size: int
    sent_at: float
    retransmit: bool
    #: sent by the retransmission timeout, at least one RTO after the chunk's previous send, so
    #: an acknowledgement is almost surely its own: trusted for loss detection (not for RTT).
    probe: bool
    starts: list[int]  #: start of each range sent, ascending
    offsets: list[int]  #: transmission-number offset of each range start
    pending: ChunkRanges  #: chunks neither acknowledged nor declared lost

    def pn_of(self, chunk: int) -> int:
        i = bisect_right(self.starts, chunk) - 1
        return self.pn0 + self.offsets[i] + chunk - self.starts[i]

    def chunk_of(self, pn: int) -> int:
        """The chunk sent as transmission `pn`, which must belong to this batch."""
        j = bisect_right(self.offsets, pn - self.pn0) - 1
        return self.starts[j] + pn - self.pn0 - self.offsets[j]

    def chunk_limit(self, pn: int) -> int:
        """Exclusive chunk bound of the transmissions numbered below `pn` in this batch."""
        if pn >= self.pn0 + self.size:
            return _UNLIMITED
        return self.chunk_of(pn)


class TxWindow:
    """Sender side: what to send next, what was lost, when to time out.

    The data space is chunks [0, total); `total=None` leaves it open (bench mode, or a folder
    whose files are offered one after another) until `set_total`. `have` holds chunks the
    receiver already has (FILE_ACCEPT's ranges, PROTOCOL.md §FILE_ACCEPT): they are never sent.
    `credit` is the receiver's first grant (SYN_ACK `window`, or cum_ack + window).
    """

    def __init__(
        self,
        total: int | None,
        *,
        credit: int,
        have: Iterable[tuple[int, int]] = (),
        config: TxConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or TxConfig()
        self.stats = TxStats()
        self._total = total
        self._credit = credit
        self._acked = ChunkRanges(have)  # every chunk known to be at the receiver
        self._lost = ChunkRanges()  # declared lost, waiting to be sent again
        self._probes = ChunkRanges()  # RTO probes, sent before anything else
        self._owners = RangeOwners()  # outstanding chunk -> batch that last sent it
        self._batches: deque[_Batch] = deque()
        self._by_ident: dict[int, _Batch] = {}
        self._next_ident = 0
        self._next_pn = 0
        self._next_new = self._acked.first_missing(0)  # lowest chunk never sent
        self._in_flight = 0
        self._largest_acked_pn = -1
        self._horizon = 0  # chunks at or above have a status the receiver did not report
        self._last_sack: frozenset[tuple[int, int]] = frozenset()
        self._feedback_seq = 0  # the receiver numbers FEEDBACKs from 1
        self._loss_time: float | None = None
        # RFC 6298 §2: no sample yet, so SRTT and RTTVAR come from the initial RTT.
        self._srtt = self.config.initial_rtt
        self._rttvar = self.config.initial_rtt / 2
        self._latest_rtt = 0.0
        self._min_rtt = float("inf")
        self._backoff = 0
        self._rto_base = now
        self._last_progress = now
        self._rate: float | None = None  # pacing rate in chunks/s; None until kernel drops
        self._tokens = 0.0
        self._token_time = now
        self._sent_total = 0
        self._marks = [(now, 0), (now, 0)]  # (time, chunks sent): the last two RTT marks
        self._last_cut = -float("inf")
        self._last_feedback = now
        self._stalled = False

    # -- state ------------------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        """Chunks in the data space, or None while open-ended."""
        return self._total

    @property
    def credit(self) -> int:
        """The sender may send chunks below this index."""
        return self._credit

    @property
    def cum_ack(self) -> int:
        """Every chunk below this index is known to be at the receiver."""
        return self._acked.first_missing(0)

    @property
    def acked_chunks(self) -> int:
        """Chunks known to be at the receiver (including those it had before, `have`)."""
        return self._acked.count

    @property
    def in_flight(self) -> int:
        """Chunks sent and neither acknowledged nor declared lost."""
        return self._in_flight

    @property
    def pacing_rate(self) -> float | None:
        """Chunks per second the sender should not exceed, or None (no drops seen yet)."""
        return self._rate

    @property
    def done(self) -> bool:
        """True once the total is fixed and every chunk is acknowledged."""
        return self._total is not None and self._acked.covers(0, self._total)

    @property
    def stalled(self) -> bool:
        """True once TransferStalled was raised; the window then refuses to go on."""
        return self._stalled

    @property
    def srtt(self) -> float:
        """Smoothed RTT in seconds (RFC 6298 §2)."""
        return self._srtt

    @property
    def rttvar(self) -> float:
        """RTT variation in seconds (RFC 6298 §2)."""
        return self._rttvar

    @property
    def min_rtt(self) -> float | None:
        """Smallest RTT sample, or None before the first."""
        return None if self._min_rtt == float("inf") else self._min_rtt

    @property
    def rto(self) -> float:
        """Current retransmission timeout, backoff included (RFC 6298 §2.3, §5.5)."""
        c = self.config
        base = self._srtt + max(c.granularity, 4 * self._rttvar)
        base = min(max(base, c.min_rto), c.max_rto)
        return min(base * (1 << min(self._backoff, 30)), c.max_rto)

    def acked(self) -> ChunkRanges:
        """A copy of the chunks known to be at the receiver."""
        return self._acked.copy()

    def set_total(self, total: int, now: float | None = None) -> None:
        """Fix (or grow) the end of the data space; it cannot drop below chunks already sent.

        With `now`: when the new end gives an idle window something to wait for (data beyond
        the credit), the stall clock starts now. Idle time, such as a person deciding on an
        offer, is not the receiver failing to make progress.
        """
        if total < self._next_new and total < self._acked.first_missing(self._next_new):
            raise ValueError(f"total {total} is below chunks already sent ({self._next_new})")
        was_idle = not self._waiting_on_peer()
        self._total = total
        if now is not None and was_idle and self._waiting_on_peer():
            self._last_progress = now

    # -- sending ----------------------------------------------------------------------------

    def next_batch(self, now: float, max_chunks: int) -> list[tuple[int, int]]:
        """Chunk ranges to send now, at most `max_chunks` chunks; they count as sent at `now`.

        Probes come first, then retransmissions, then new data; nothing at or above the
        credit or the total. The ranges ascend within each part; the C loop sends them in the
        order given, which is the order transmissions are numbered in.
        """
        if self._stalled:
            raise TransferStalled(now - self._last_progress, self.cum_ack)
        was_idle = not self._waiting_on_peer()
        # Probes ignore pacing: they are how a silent receiver is woken up.
        out = self._probes.take(max_chunks)
        if out:
            self._record(out, now, retransmit=True, probe=True)
        budget = self._paced_budget(now, max_chunks - sum(e - s for s, e in out))
        paced = budget
        lost = self._lost.take(budget)
        if lost:
            budget -= self._record(lost, now, retransmit=True)
            out += lost
        fresh = self._take_new(budget)
        if fresh:
            budget -= self._record(fresh, now, retransmit=False)
            out += fresh
        if self._rate is not None:
            self._tokens -= paced - budget
        if out and was_idle:
            self._last_progress = now  # the wait for the peer starts now, not when we idled
        return out

    def stream_range(self) -> tuple[int, int] | None:
        """The next new chunks [start, end) a streaming sender may send on its own, or None.

        A streaming burst (csrc/txstream.c) sends new data as fast as the receiver's credit
        grows, reading each grant from FEEDBACK itself; `record_streamed` then counts what it
        sent. Only plain new data may go that way: while probes or retransmissions wait, pacing
        is on or the window stalled, `next_batch` decides. The range is the next run of chunks
        that were never sent and that the receiver does not hold, up to the total; the credit is
        not applied here (the burst applies the newest grant).
        """
        if self._stalled or self._probes or self._lost or self._rate is not None:
            return None
        end = _UNLIMITED if self._total is None else self._total
        return next(self._acked.gaps(self._next_new, end), None)

    def record_streamed(self, start: int, end: int, now: float, credit: int) -> None:
        """Count new chunks [start, end), sent at `now` by a streaming burst, as `next_batch`
        would have counted them.

        `credit` is the grant the burst sent under, which may be newer than the window's: the
        FEEDBACKs that raised it are applied next, with `on_feedback`. Raises ValueError unless
        [start, end) begins the range `stream_range` gives and ends within it and the credit.
        """
        gap = self.stream_range()
        if gap is None or not gap[0] == start < end <= gap[1] or end > max(credit, self._credit):
            raise ValueError(
                f"chunks [{start}, {end}) are not the next new ones ({gap}) below the credit "
                f"{max(credit, self._credit)}"
            )
        was_idle = not self._waiting_on_peer()
        self._next_new = end
        self._record([(start, end)], now, retransmit=False)
        if was_idle:
            self._last_progress = now

    def _paced_budget(self, now: float, want: int) -> int:
        """Chunks the token bucket allows now (all of `want` while no rate is set)."""
        if self._rate is None or want <= 0:
            return max(want, 0)
        c = self.config
        burst = max(float(c.min_burst), self._rate * c.burst_time)
        self._tokens = min(burst, self._tokens + (now - self._token_time) * self._rate)
        self._token_time = now
        return min(want, int(self._tokens + 1e-6))  # 1e-6: float dust must not eat a chunk

    def _take_new(self, budget: int) -> list[tuple[int, int]]:
        limit = self._credit if self._total is None else min(self._credit, self._total)
        fresh: list[tuple[int, int]] = []
        if budget <= 0 or self._next_new >= limit:
            return fresh
        for s, e in self._acked.gaps(self._next_new, limit):  # skips chunks the peer has
            e = min(e, s + budget)
            fresh.append((s, e))
            budget -= e - s
            self._next_new = e
            if budget == 0:
                break
        else:
            self._next_new = limit
        return fresh

    def _record(
        self, ranges: list[tuple[int, int]], now: float, *, retransmit: bool, probe: bool = False
    ) -> int:
        starts: list[int] = []
        offsets: list[int] = []
        size = 0
        ident = self._next_ident
        self._next_ident += 1
        for s, e in ranges:
            starts.append(s)
            offsets.append(size)
            size += e - s
            self._owners.assign(s, e, ident)
        batch = _Batch(ident, self._next_pn, size, now, retransmit, probe, starts, offsets,
                       ChunkRanges(ranges))  # fmt: skip
        self._next_pn += size
        self._batches.append(batch)
        self._by_ident[ident] = batch
        if self._in_flight == 0:
            self._rto_base = now  # RFC 6298 §5.1: start the timer when data goes out
        self._in_flight += size
        self._sent_total += size
        if retransmit:
            self.stats.retransmitted_chunks += size
        else:
            self.stats.new_chunks_sent += size
        return size

    # -- feedback ---------------------------------------------------------------------------

    def on_feedback(
        self,
        feedback: Feedback,
        now: float,
        seq: int | None = None,
        *,
        first_seq: int | None = None,
    ) -> int:
        """Apply one FEEDBACK from the receiver; return how many chunks it newly acknowledged.

        Stale or reordered FEEDBACKs are harmless: acknowledgements only add, and the credit
        only grows. Values past what was ever sent are ignored (a confused or hostile peer).
        `seq` is the FEEDBACK header's counter, from 1 (PROTOCOL.md §Frame types). FEEDBACK has no
        ack delay, so after a gap in the counter (FEEDBACKs were lost, as in a blackout) the
        acknowledgements may have waited at the receiver: no RTT sample is taken from them.
        `first_seq`: this FEEDBACK stands for the consecutive ones `first_seq..seq` read together
        (`coalesce_feedback`); the run is timely when it starts right after the last one seen.
        """
        self.stats.feedbacks += 1
        if self._stalled:
            return 0
        start = seq if first_seq is None else first_seq
        timely = start is None or start == self._feedback_seq + 1
        if seq is not None:
            self._feedback_seq = max(seq, self._feedback_seq)
        progress = False
        if feedback.credit > self._credit:
            self._credit = feedback.credit
            progress = True
        sent_end = self._next_new
        parts: list[tuple[int, int]] = []
        if feedback.cum_ack > 0:
            parts.append((0, min(feedback.cum_ack, sent_end)))
        # Most SACK ranges repeat from one FEEDBACK to the next: only new ones cost work.
        seen = self._last_sack
        parts += [(s, min(e, sent_end)) for s, e in feedback.ranges if (s, e) not in seen]
        self._last_sack = frozenset(feedback.ranges)
        if 0 < feedback.highest <= sent_end:  # (above: a chunk the peer had before, `have`)
            parts.append((feedback.highest - 1, feedback.highest))  # it was received
        # With a full SACK list the receiver may have left out ranges between the last one
        # listed and `highest`: those chunks' status is unknown, so they are not declared lost.
        truncated = len(feedback.ranges) >= MAX_SACK_RANGES and (
            feedback.ranges[-1][1] < feedback.highest
        )
        self._horizon = min(feedback.ranges[-1][1], sent_end) if truncated else sent_end
        newly = self._apply_acks(parts, now, timely)
        if newly:
            progress = True
            # RFC 6298 §5.3 restarts the timer on new acknowledgements; RFC 9002 §6.2.1
            # resets the backoff once the peer is heard from again.
            self._backoff = 0
            self._rto_base = now
        if progress:
            self._last_progress = now
        self._adjust_rate(feedback.kernel_drops, now)
        self._detect_losses(now)
        return newly

    def _apply_acks(self, parts: list[tuple[int, int]], now: float, timely: bool) -> int:
        newly = 0
        best_pn = self._largest_acked_pn
        best: _Batch | None = None
        # An RTO probe repeats the lowest unacknowledged chunk, so its acknowledgement may be
        # for the first transmission instead: a receiver that stalled (descheduled, its socket
        # holding the whole window) answers the probe's chunk from its queue, in order, with
        # the chunks sent after it. Then the probe's (late) transmission number would make
        # every chunk still queued there look lost (one 50 ms stall resent ~8,500 frames of a
        # 256 MiB send at MTU 1500). So a probe counts only when it is the only news: the case
        # of a window that was truly lost. (Chunks first sent after the probe and acknowledged
        # with it are later transmissions anyway, and drive loss detection themselves.)
        probe_pn, probe = best_pn, None
        others = False
        for s, e in parts:
            added = self._acked.add(s, e) if s < e else 0
            if not added:
                continue  # owners, losses and probes only hold unacknowledged chunks
            newly += added
            self.stats.spurious_losses += self._lost.remove(s, e)
            self._probes.remove(s, e)
            for ps, pe, ident in self._owners.pop(s, e):
                batch = self._by_ident[ident]
                gone = batch.pending.remove(ps, pe)
                self._in_flight -= gone
                if (
                    batch.retransmit
                    and not batch.probe
                    and now - batch.sent_at < self._fastest_plausible_rtt()
                ):
                    # Faster than any round trip seen: an earlier transmission arrived, not this
                    # one. Its transmission number says nothing about what was delivered, so it
                    # must not drive loss detection (RFC 8985 §6.2 step 2 does the same).
                    self.stats.spurious_retransmits += gone
                    continue
                pn = batch.pn_of(pe - 1)
                if batch.probe:
                    if pn > probe_pn:
                        probe_pn, probe = pn, batch
                    continue
                others = True
                if pn > best_pn:
                    best_pn, best = pn, batch
        if probe is not None and probe_pn > best_pn:
            if others:
                self.stats.ambiguous_probe_acks += 1
            else:
                best_pn, best = probe_pn, probe
        if best is not None:
            self._largest_acked_pn = best_pn
            if timely and not best.retransmit:  # Karn: a retransmission's ack is ambiguous
                self._rtt_sample(now - best.sent_at)
        return newly

    def _fastest_plausible_rtt(self) -> float:
        """An ack sooner than this after a send cannot be that send's ack (0: no RTT yet)."""
        return 0.0 if self._min_rtt == float("inf") else _SPURIOUS_RTT * self._min_rtt

    def _rtt_sample(self, rtt: float) -> None:
        """RFC 6298 §2.2 (first sample) and §2.3 (later samples)."""
        rtt = max(rtt, 0.0)
        self.stats.rtt_samples += 1
        self._latest_rtt = rtt
        if self._min_rtt == float("inf"):
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._min_rtt = min(self._min_rtt, rtt)

    def _adjust_rate(self, drops: int, now: float) -> None:
        c = self.config
        if now - self._marks[1][0] >= self._srtt:
            self._marks = [self._marks[1], (now, self._sent_total)]
        elapsed, self._last_feedback = now - self._last_feedback, now
        if drops > 0:
            self.stats.kernel_drops += drops
            # One cut per RTT: drops reported in the next FEEDBACKs stem from the same burst.
            if now - self._last_cut < self._srtt:
                return
            if self._rate is None:
                # Half of what we sent over the last one to two RTTs, which outran the receiver.
                t0, n0 = self._marks[0]
                sent_rate = (self._sent_total - n0) / max(now - t0, c.granularity)
                self._rate = max(c.min_rate, sent_rate / 2)
                self._tokens = 0.0
                self._token_time = now
            else:
                self._rate = max(c.min_rate, self._rate / 2)
            self._last_cut = now
            self.stats.rate_cuts += 1
        elif self._rate is not None:
            self._rate *= 1 + c.rate_growth * min(1.0, elapsed / self._srtt)

    # -- loss detection (RFC 9002 §6.1) -----------------------------------------------------

    def _loss_delay(self) -> float:
        """RFC 9002 §6.1.2: max(kTimeThreshold * max(smoothed_rtt, latest_rtt), kGranularity)."""
        c = self.config
        return max(c.time_threshold * max(self._srtt, self._latest_rtt), c.granularity)

    def _detect_losses(self, now: float) -> None:
        self._loss_time = None
        largest = self._largest_acked_pn
        batches = self._batches
        if largest >= 0:
            delay = self._loss_delay()
            pn_cut = largest - self.config.packet_threshold  # lost when pn <= pn_cut
            for batch in batches:
                if batch.pn0 >= largest:
                    break  # sent after the largest acknowledged: not a candidate yet
                if not batch.pending:
                    continue
                if batch.sent_at <= now - delay:
                    self._declare_lost(batch, batch.chunk_limit(largest))
                    continue
                if pn_cut >= batch.pn0:
                    self._declare_lost(batch, batch.chunk_limit(pn_cut + 1))
                if pn_cut < batch.pn0 + batch.size - 1:
                    # Neither this batch nor any later one is lost yet; this one will be at
                    # sent_at + delay unless acknowledged first (RFC 9002 §6.1.2 loss timer).
                    limit = min(batch.chunk_limit(largest), self._horizon)
                    if batch.pending.count_in(0, limit):
                        self._loss_time = batch.sent_at + delay
                    break
        while batches and not batches[0].pending:
            del self._by_ident[batches.popleft().ident]

    def _declare_lost(self, batch: _Batch, chunk_limit: int) -> None:
        limit = min(chunk_limit, self._horizon)
        for s, e in list(batch.pending.slice(0, limit)):
            batch.pending.remove(s, e)
            self._owners.pop(s, e)
            self._lost.add(s, e)
            self._in_flight -= e - s
            self.stats.lost_chunks += e - s

    # -- timers -----------------------------------------------------------------------------

    def _waiting_on_peer(self) -> bool:
        """True while progress depends on the receiver: unacknowledged data or no credit."""
        if self.done:
            return False
        if self._in_flight or self._lost or self._probes:
            return True
        end = _UNLIMITED if self._total is None else self._total
        return self._next_new < end and self._next_new >= self._credit

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run, or None when no timer is armed."""
        if self._stalled or not self._waiting_on_peer():
            return None
        deadlines = [self._last_progress + self.config.stall_timeout]
        if self._loss_time is not None:
            deadlines.append(self._loss_time)
        if self._in_flight:
            deadlines.append(self._rto_base + self.rto)
        return min(deadlines)

    def handle_timer(self, now: float) -> None:
        """Run the timers due at `now`; raises TransferStalled when the peer went silent."""
        if self._stalled or not self._waiting_on_peer():
            return
        idle = now - self._last_progress
        if idle >= self.config.stall_timeout:
            self._stalled = True
            raise TransferStalled(idle, self.cum_ack)
        if self._loss_time is not None and now >= self._loss_time:
            self._detect_losses(now)
        if self._in_flight and now >= self._rto_base + self.rto:
            self._fire_rto(now)

    def _fire_rto(self, now: float) -> None:
        """RFC 6298 §5.4-5.6 with RFC 9002 §6.2.4's probe: resend the lowest unacked chunk."""
        chunk = self._acked.first_missing(0)
        for s, e, ident in self._owners.pop(chunk, chunk + 1):
            gone = self._by_ident[ident].pending.remove(s, e)
            self._in_flight -= gone
        self._lost.remove(chunk, chunk + 1)
        self._probes.add(chunk, chunk + 1)
        self.stats.probes += 1
        self._backoff += 1
        self._rto_base = now


def coalesce_feedback(items: Iterable[tuple[int, Feedback]]) -> list[tuple[int, int, Feedback]]:
    """Merge FEEDBACKs read together into one per run of consecutive header counters.

    Returns `(first_seq, seq, feedback)` per run, in the order read, for
    `TxWindow.on_feedback(feedback, now, seq, first_seq=first_seq)`. Within a run (one receive
    process numbers its FEEDBACKs consecutively) the newest one states everything the older
    ones did: cum_ack, `highest` and the received set only grow. What does not carry over is
    summed or kept at its maximum: `kernel_drops` (a count since the previous FEEDBACK) and
    `credit` (a grant is never taken back). A sender that wakes for a burst of FEEDBACKs then
    pays the acknowledgement work once instead of once per FEEDBACK; counters that are not
    consecutive (another file's receive process, a lost FEEDBACK) start a new run.
    """
    runs: list[tuple[int, int, Feedback]] = []
    for seq, fb in items:
        if runs and seq == runs[-1][1] + 1:
            first, _, prev = runs[-1]
            merged = Feedback(
                cum_ack=max(fb.cum_ack, prev.cum_ack),
                credit=max(fb.credit, prev.credit),
                highest=max(fb.highest, prev.highest),
                kernel_drops=fb.kernel_drops + prev.kernel_drops,
                ranges=fb.ranges,
            )
            runs[-1] = (first, seq, merged)
        else:
            runs.append((seq, seq, fb))
    return runs
