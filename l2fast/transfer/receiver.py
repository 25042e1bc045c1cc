"""The receiver half of the reliability core: `RxTracker` (sans-IO, PROTOCOL.md §FEEDBACK).

The receiver's C loop verifies frames and hands over batches of chunk ranges; `RxTracker`
records them (counting duplicates once), grants credit = cum_ack + free receive-ring space (never
taking a grant back), and says when a FEEDBACK is due: every `interval` (~1 ms) or every
`every_chunks` chunks while something changed, like UDT's timer-based ACK (FACTS.md), and every
`idle_interval` while incomplete (and for `linger` seconds after) so that a lost FEEDBACK or
credit update is repaired without waiting for the sender's backed-off probes.
The sender half is `l2fast.transfer.reliability.TxWindow`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from l2fast.transfer.ranges import ChunkRanges
from l2fast.wire.frames import Feedback

__all__ = ["RxConfig", "RxCounters", "RxTracker"]

_UNLIMITED = 1 << 62  # an open-ended data space


@dataclass(frozen=True, slots=True)
class RxConfig:
    """Tuning of `RxTracker`: when FEEDBACK is sent (PROTOCOL.md §FEEDBACK, FACTS.md)."""

    #: Send FEEDBACK at most this often while something changed (UDT-style timer ACK).
    interval: float = 0.001
    #: ...or at once after this many chunks arrived, whichever comes first.
    every_chunks: int = 256
    #: Repeat FEEDBACK this often while incomplete even if nothing changed, so a lost FEEDBACK
    #: (or a lost credit update) is repaired without the sender timing out.
    idle_interval: float = 0.05
    #: Keep repeating the final FEEDBACK this long after the last chunk arrived: if it is lost,
    #: the sender would otherwise learn of completion only from its backed-off RTO probes.
    linger: float = 1.0


@dataclass(slots=True)
class RxCounters:
    """Counters of an `RxTracker`, in chunks unless named otherwise."""

    chunks: int = 0  #: chunks that arrived, duplicates included
    duplicates: int = 0
    out_of_range: int = 0  #: chunks at or past the total: ignored
    over_credit: int = 0  #: chunks at or past the credit granted: the sender broke the rules
    feedbacks: int = 0
    kernel_drops: int = 0


class RxTracker:
    """Receiver side: which chunks arrived, the credit, and when to send FEEDBACK.

    `have` resumes from chunks already on disk. `buffer_chunks` is the free space of the
    receive rings in chunks; the caller updates it with `set_buffer_space` as they drain.
    The data path must not put duplicates into the rings (its chunk bitmap filters them), or
    the credit would overstate the space left.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        buffer_chunks: int,
        have: Iterable[tuple[int, int]] = (),
        config: RxConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or RxConfig()
        self.counters = RxCounters()
        self._total = total
        self._received = ChunkRanges(have)
        self._space = buffer_chunks
        self._credit = 0
        self._credit = self._grant()
        self._highest = (self._received.last() or -1) + 1
        self._pending_chunks = 0
        self._pending_drops = 0
        self._sent_credit = self._credit
        self._last_fb_at = now
        self._completed_at: float | None = None  # when the last missing chunk arrived

    @property
    def total(self) -> int | None:
        """Chunks in the data space, or None while open-ended."""
        return self._total

    def set_total(self, total: int) -> None:
        """Fix or grow the end of the data space."""
        self._total = total

    @property
    def cum_ack(self) -> int:
        """Every chunk below this index has arrived."""
        return self._received.first_missing(0)

    @property
    def highest(self) -> int:
        """Highest chunk index received + 1 (PROTOCOL.md §FEEDBACK)."""
        return self._highest

    @property
    def credit(self) -> int:
        """The credit granted so far (it never shrinks)."""
        return self._credit

    @property
    def count(self) -> int:
        """Distinct chunks held."""
        return self._received.count

    @property
    def complete(self) -> bool:
        """True once the total is fixed and every chunk has arrived."""
        return self._total is not None and self._received.covers(0, self._total)

    def received(self) -> ChunkRanges:
        """A copy of the chunks held (for the resume bitmap)."""
        return self._received.copy()

    def missing(self) -> list[tuple[int, int]]:
        """The chunk ranges still missing below the total (or below `highest` if open)."""
        end = self._highest if self._total is None else self._total
        return list(self._received.gaps(0, end))

    def _grant(self) -> int:
        credit = max(self._credit, self.cum_ack + self._space)
        return credit if self._total is None else min(credit, max(self._total, self._credit))

    def set_buffer_space(self, chunks: int) -> None:
        """Free receive-ring space, in chunks, as the writers drain it."""
        self._space = max(chunks, 0)

    def add_kernel_drops(self, drops: int) -> None:
        """Frames the kernel dropped (PACKET_STATISTICS tp_drops) since the last call."""
        self._pending_drops += drops
        self.counters.kernel_drops += drops

    def on_chunks(self, ranges: Iterable[tuple[int, int]], now: float) -> list[tuple[int, int]]:
        """Record one batch of verified chunks; return the ranges that were new.

        Only the new ranges go to the application (written once); duplicates are counted.
        Ranges may overlap each other or repeat: each chunk arrival counts once.
        """
        fresh: list[tuple[int, int]] = []
        end = _UNLIMITED if self._total is None else self._total
        for s, e in ranges:
            self.counters.chunks += e - s
            self._pending_chunks += e - s
            if e > end:
                self.counters.out_of_range += e - max(s, end)
                e = end
                if s >= e:
                    continue
            if e > self._credit:
                self.counters.over_credit += e - max(s, self._credit)
            pieces = self._received.add_new(s, e)
            if not pieces:
                self.counters.duplicates += e - s
                continue
            new = sum(pe - ps for ps, pe in pieces)
            self.counters.duplicates += e - s - new
            fresh += pieces
            if e > self._highest:
                self._highest = e
        if fresh and self._completed_at is None and self.complete:
            self._completed_at = now
        if len(fresh) > 1:
            return list(ChunkRanges(fresh))  # ranges of one batch may come in any order
        return fresh

    def feedback_due(self, now: float) -> bool:
        """True when a FEEDBACK should be sent now (every `interval` or `every_chunks`)."""
        c = self.config
        if self._pending_chunks >= c.every_chunks:
            return True
        since = now - self._last_fb_at
        if since >= c.interval and (
            self._pending_chunks or self._pending_drops or self._grant() > self._sent_credit
        ):
            return True
        return since >= c.idle_interval and self._repeating(now)

    def _repeating(self, now: float) -> bool:
        """True while idle FEEDBACKs are still worth sending at `now`."""
        if self._completed_at is None and not self.complete:
            return True
        return self._completed_at is not None and now < self._completed_at + self.config.linger

    def next_timer(self) -> float | None:
        """When `feedback_due` next becomes true by itself, or None."""
        c = self.config
        if self._pending_chunks or self._pending_drops or self._grant() > self._sent_credit:
            return self._last_fb_at + c.interval
        if self._repeating(self._last_fb_at + c.idle_interval):
            return self._last_fb_at + c.idle_interval
        return None

    def make_feedback(self, now: float) -> Feedback:
        """Build the FEEDBACK to send now and reset the counters it reports.

        Send it with `counters.feedbacks` (1 for the first) as the header's `seq`: the sender
        uses gaps in that counter to ignore RTT samples from delayed acknowledgements.
        """
        self._credit = self._grant()
        cum = self.cum_ack
        drops = min(self._pending_drops, 0xFFFFFFFF)  # u32 field
        feedback = Feedback(
            cum_ack=cum,
            credit=self._credit,
            highest=max(self._highest, cum),
            kernel_drops=drops,
            ranges=self._received.sack(cum),
        )
        self._pending_chunks = 0
        self._pending_drops -= drops
        self._sent_credit = self._credit
        self._last_fb_at = now
        self.counters.feedbacks += 1
        return feedback

    def poll_feedback(self, now: float) -> Feedback | None:
        """`make_feedback(now)` when one is due, else None."""
        return self.make_feedback(now) if self.feedback_due(now) else None
