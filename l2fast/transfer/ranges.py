"""Sets of chunk indices kept as sorted, disjoint half-open intervals [start, end).

The data path reports and acknowledges chunks by the thousand, so the reliability core never
holds one Python object per chunk: a transfer of a million chunks with a few holes is a handful
of intervals. `ChunkRanges` keeps two parallel sorted lists (starts and ends) and finds its place
with `bisect`, so every operation costs O(log n) plus the intervals it touches (list inserts and
deletes are C memmoves). `RangeOwners` is the same structure with an owner label per interval;
the sender uses it to find which transmission batch a newly acknowledged chunk belongs to.

Conversion to and from the FEEDBACK frame's SACK list follows PROTOCOL.md §FEEDBACK: at most
`MAX_SACK_RANGES` ascending ranges, all above the cumulative ack.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from l2fast.wire.constants import MAX_SACK_RANGES

__all__ = ["ChunkRanges", "RangeOwners", "ranges_from_indices"]


def _check(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"bad chunk range [{start}, {end})")


class ChunkRanges:
    """An ordered set of chunk indices stored as merged half-open intervals.

    Adjacent and overlapping intervals are always merged, so iteration yields the canonical
    (shortest) list of ranges. `len()` is the number of intervals; `count` the number of chunks.
    """

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for start, end in ranges:
            self.add(start, end)

    # -- mutation ---------------------------------------------------------------------------

    def add(self, start: int, end: int) -> int:
        """Insert [start, end); return how many of its chunks were not already present."""
        return self._insert(start, end, None)

    def add_new(self, start: int, end: int) -> list[tuple[int, int]]:
        """Insert [start, end); return the ranges inside it that were not already present."""
        fresh: list[tuple[int, int]] = []
        self._insert(start, end, fresh)
        return fresh

    def _insert(self, start: int, end: int, fresh: list[tuple[int, int]] | None) -> int:
        if start < 0 or end < start:
            raise ValueError(f"bad chunk range [{start}, {end})")
        if start == end:
            return 0
        starts, ends = self._starts, self._ends
        # First interval that could touch [start, end): the last one starting at or before
        # `start`, when it reaches `start` (touching intervals merge too).
        lo = bisect_right(starts, start)
        if lo and ends[lo - 1] >= start:
            lo -= 1
        hi = bisect_right(starts, end)  # intervals [lo, hi) overlap or touch
        if lo == hi:
            starts.insert(lo, start)
            ends.insert(lo, end)
            self._count += end - start
            if fresh is not None:
                fresh.append((start, end))
            return end - start
        new_start = min(start, starts[lo])
        new_end = max(end, ends[hi - 1])
        covered = 0
        pos = start
        for i in range(lo, hi):
            covered += ends[i] - starts[i]
            if fresh is not None:
                if starts[i] > pos:
                    fresh.append((pos, min(starts[i], end)))
                pos = max(pos, ends[i])
        if fresh is not None and pos < end:
            fresh.append((pos, end))
        added = (new_end - new_start) - covered
        if added or hi - lo > 1:
            starts[lo:hi] = [new_start]
            ends[lo:hi] = [new_end]
            self._count += added
        return added

    def remove(self, start: int, end: int) -> int:
        """Delete [start, end); return how many of its chunks were present."""
        _check(start, end)
        if start == end or not self._starts:
            return 0
        starts, ends = self._starts, self._ends
        lo = bisect_right(starts, start)
        if lo and ends[lo - 1] > start:
            lo -= 1
        hi = bisect_left(starts, end)  # intervals [lo, hi) overlap [start, end)
        if lo >= hi:
            return 0
        removed = 0
        keep_s: list[int] = []
        keep_e: list[int] = []
        for i in range(lo, hi):
            s, e = starts[i], ends[i]
            removed += min(e, end) - max(s, start)
            if s < start:
                keep_s.append(s)
                keep_e.append(start)
            if e > end:
                keep_s.append(end)
                keep_e.append(e)
        starts[lo:hi] = keep_s
        ends[lo:hi] = keep_e
        self._count -= removed
        return removed

    def update(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Add every range; return how many chunks were new."""
        return sum(self.add(s, e) for s, e in ranges)

    def clear(self) -> None:
        """Remove everything."""
        self._starts.clear()
        self._ends.clear()
        self._count = 0

    def copy(self) -> ChunkRanges:
        """An independent copy."""
        other = ChunkRanges()
        other._starts = self._starts.copy()
        other._ends = self._ends.copy()
        other._count = self._count
        return other

    # -- queries ----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of chunks in the set."""
        return self._count

    def __len__(self) -> int:
        """Number of intervals (not chunks; see `count`)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """The intervals in ascending order, as (start, end) with end exclusive."""
        return zip(self._starts, self._ends, strict=True)

    def __contains__(self, chunk: object) -> bool:
        if not isinstance(chunk, int):
            return False
        i = bisect_right(self._starts, chunk)
        return bool(i) and chunk < self._ends[i - 1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChunkRanges):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"[{s}, {e})" for s, e in self)
        return f"ChunkRanges({inner})"

    def covers(self, start: int, end: int) -> bool:
        """True when every chunk of [start, end) is present (an empty range is covered)."""
        if start >= end:
            return True
        i = bisect_right(self._starts, start)
        return bool(i) and self._ends[i - 1] >= end

    def count_in(self, start: int, end: int) -> int:
        """How many chunks of [start, end) are present."""
        if start >= end:
            return 0
        starts, ends = self._starts, self._ends
        lo = bisect_right(starts, start)
        if lo and ends[lo - 1] > start:
            lo -= 1
        hi = bisect_left(starts, end)
        return sum(min(ends[i], end) - max(starts[i], start) for i in range(lo, hi))

    def first_missing(self, lo: int = 0) -> int:
        """The smallest chunk index >= lo that is not in the set."""
        i = bisect_right(self._starts, lo)
        if i and self._ends[i - 1] > lo:
            return self._ends[i - 1]  # merged intervals: the end is never present
        return lo

    def first(self) -> int | None:
        """The smallest chunk in the set, or None when empty."""
        return self._starts[0] if self._starts else None

    def last(self) -> int | None:
        """The largest chunk in the set, or None when empty."""
        return self._ends[-1] - 1 if self._ends else None

    def gaps(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """The missing intervals inside [lo, hi), ascending."""
        if lo >= hi:
            return
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, lo)
        pos = lo
        if i and ends[i - 1] > lo:
            pos = ends[i - 1]
        while pos < hi:
            if i < len(starts) and starts[i] < hi:
                if starts[i] > pos:
                    yield (pos, starts[i])
                pos = max(pos, ends[i])
                i += 1
            else:
                yield (pos, hi)
                return

    def slice(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """The present intervals clipped to [lo, hi), ascending."""
        if lo >= hi:
            return
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, lo)
        if i and ends[i - 1] > lo:
            i -= 1
        while i < len(starts) and starts[i] < hi:
            yield (max(starts[i], lo), min(ends[i], hi))
            i += 1

    def take(self, max_chunks: int) -> list[tuple[int, int]]:
        """Remove and return the lowest chunks, at most `max_chunks` of them, as ranges."""
        taken: list[tuple[int, int]] = []
        budget = max_chunks
        while budget > 0 and self._starts:
            s, e = self._starts[0], self._ends[0]
            if e - s <= budget:
                del self._starts[0]
                del self._ends[0]
                taken.append((s, e))
                budget -= e - s
                self._count -= e - s
            else:
                self._starts[0] = s + budget
                self._count -= budget
                taken.append((s, s + budget))
                budget = 0
        return taken

    # -- FEEDBACK SACK lists (PROTOCOL.md §FEEDBACK) ----------------------------------------

    def sack(self, cum_ack: int, limit: int = MAX_SACK_RANGES) -> tuple[tuple[int, int], ...]:
        """The received ranges above `cum_ack`, lowest first, at most `limit` of them.

        The lowest ranges matter most: they border the holes nearest the cumulative ack, which
        hold back the sender's credit (credit = cum_ack + buffer space) and are the oldest
        losses. The sender learns about higher ranges from later FEEDBACKs as holes fill.
        """
        out: list[tuple[int, int]] = []
        for start, end in self.slice(cum_ack, self._ends[-1] if self._ends else cum_ack):
            out.append((start, end))
            if len(out) == limit:
                break
        return tuple(out)

    @classmethod
    def from_sack(cls, cum_ack: int, ranges: Iterable[tuple[int, int]]) -> ChunkRanges:
        """The set a FEEDBACK describes: [0, cum_ack) plus its SACK ranges."""
        result = cls()
        if cum_ack:
            result.add(0, cum_ack)
        result.update(ranges)
        return result


class RangeOwners:
    """Disjoint chunk intervals, each labelled with an owner (an int such as a batch id).

    Unlike `ChunkRanges`, neighbouring intervals with different owners stay separate. Every
    chunk has at most one owner: `assign` requires the chunks to be unowned.
    """

    __slots__ = ("_ends", "_owners", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._owners: list[int] = []

    def __len__(self) -> int:
        """Number of intervals."""
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """(start, end, owner) in ascending order."""
        return zip(self._starts, self._ends, self._owners, strict=True)

    def assign(self, start: int, end: int, owner: int) -> None:
        """Give the unowned chunks [start, end) to `owner`."""
        _check(start, end)
        if start == end:
            return
        i = bisect_right(self._starts, start)
        if (i and self._ends[i - 1] > start) or (i < len(self._starts) and self._starts[i] < end):
            raise ValueError(f"chunks [{start}, {end}) already have an owner")
        if i and self._ends[i - 1] == start and self._owners[i - 1] == owner:
            self._ends[i - 1] = end  # extend the neighbour instead of adding an interval
            if i < len(self._starts) and self._starts[i] == end and self._owners[i] == owner:
                self._ends[i - 1] = self._ends[i]
                del self._starts[i], self._ends[i], self._owners[i]
            return
        if i < len(self._starts) and self._starts[i] == end and self._owners[i] == owner:
            self._starts[i] = start
            return
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._owners.insert(i, owner)

    def pop(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Unassign the owned chunks inside [start, end); return them as (start, end, owner)."""
        if start >= end or not self._starts:
            return []
        starts, ends, owners = self._starts, self._ends, self._owners
        lo = bisect_right(starts, start)
        if lo and ends[lo - 1] > start:
            lo -= 1
        hi = bisect_left(starts, end)
        if lo >= hi:
            return []
        popped: list[tuple[int, int, int]] = []
        keep_s: list[int] = []
        keep_e: list[int] = []
        keep_o: list[int] = []
        for i in range(lo, hi):
            s, e, o = starts[i], ends[i], owners[i]
            popped.append((max(s, start), min(e, end), o))
            if s < start:
                keep_s.append(s)
                keep_e.append(start)
                keep_o.append(o)
            if e > end:
                keep_s.append(end)
                keep_e.append(e)
                keep_o.append(o)
        starts[lo:hi] = keep_s
        ends[lo:hi] = keep_e
        owners[lo:hi] = keep_o
        return popped


def ranges_from_indices(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Turn chunk indices (any order, duplicates allowed) into merged ascending ranges."""
    out: list[tuple[int, int]] = []
    for k in sorted(set(indices)):
        if out and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
    return out
