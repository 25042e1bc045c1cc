"""ChunkRanges and RangeOwners: unit tests and a model test against a plain Python set."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from l2fast.transfer.ranges import ChunkRanges, RangeOwners, ranges_from_indices
from l2fast.wire.constants import MAX_SACK_RANGES
from l2fast.wire.frames import Feedback


def test_add_merges_overlapping_and_touching_intervals() -> None:
    r = ChunkRanges()
    assert r.add(10, 20) == 10
    assert r.add(30, 40) == 10
    assert list(r) == [(10, 20), (30, 40)]
    assert r.add(20, 30) == 10  # touches both sides: one interval
    assert list(r) == [(10, 40)]
    assert r.add(5, 45) == 10  # only the new chunks count
    assert r.add(12, 14) == 0
    assert list(r) == [(5, 45)]
    assert r.count == 40 and len(r) == 1


def test_add_new_returns_exactly_the_missing_pieces() -> None:
    r = ChunkRanges([(10, 20), (30, 40)])
    assert r.add_new(0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert r.add_new(0, 50) == []
    assert r.add_new(50, 51) == [(50, 51)]
    assert list(r) == [(0, 51)]


def test_remove_splits_and_counts() -> None:
    r = ChunkRanges([(0, 100)])
    assert r.remove(10, 20) == 10
    assert r.remove(15, 30) == 10
    assert list(r) == [(0, 10), (30, 100)]
    assert r.remove(200, 300) == 0
    assert r.remove(0, 1000) == 80
    assert not r and r.count == 0


def test_queries() -> None:
    r = ChunkRanges([(0, 5), (10, 15), (20, 25)])
    assert 0 in r and 4 in r and 5 not in r and 10 in r and 25 not in r
    assert "x" not in r
    assert r.first_missing() == 5
    assert r.first_missing(7) == 7
    assert r.first_missing(12) == 15
    assert list(r.gaps(0, 30)) == [(5, 10), (15, 20), (25, 30)]
    assert list(r.gaps(3, 12)) == [(5, 10)]
    assert list(r.gaps(11, 14)) == []
    assert list(r.gaps(7, 7)) == []
    assert list(r.slice(3, 22)) == [(3, 5), (10, 15), (20, 22)]
    assert r.covers(10, 15) and not r.covers(10, 16) and r.covers(3, 3)
    assert r.count_in(3, 22) == 9
    assert r.first() == 0 and r.last() == 24
    assert ChunkRanges().first() is None and ChunkRanges().last() is None
    assert r == ChunkRanges([(20, 25), (0, 5), (10, 15)])
    assert r != ChunkRanges([(0, 5)])
    assert repr(ChunkRanges([(1, 2)])) == "ChunkRanges([1, 2))"


def test_copy_is_independent() -> None:
    r = ChunkRanges([(0, 10)])
    c = r.copy()
    c.add(10, 20)
    assert list(r) == [(0, 10)] and list(c) == [(0, 20)]


def test_take_removes_the_lowest_chunks() -> None:
    r = ChunkRanges([(0, 3), (10, 20)])
    assert r.take(5) == [(0, 3), (10, 12)]
    assert list(r) == [(12, 20)] and r.count == 8
    assert r.take(0) == []
    assert r.take(100) == [(12, 20)]
    assert not r


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4)])
def test_bad_ranges_are_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        ChunkRanges().add(start, end)
    with pytest.raises(ValueError):
        ChunkRanges().remove(start, end)


def test_sack_lists_lowest_ranges_above_cum_ack() -> None:
    r = ChunkRanges([(0, 10)])
    for k in range(12, 12 + 3 * 100, 3):  # 100 isolated chunks above a hole at 10
        r.add(k, k + 1)
    cum = r.first_missing()
    assert cum == 10
    sack = r.sack(cum)
    assert len(sack) == MAX_SACK_RANGES
    assert sack[0] == (12, 13) and sack[-1] == (12 + 3 * 63, 13 + 3 * 63)
    assert Feedback(cum, cum, (r.last() or 0) + 1, 0, sack).violation() is None
    assert r.sack(cum, limit=2) == ((12, 13), (15, 16))
    assert ChunkRanges().sack(0) == ()
    assert ChunkRanges([(0, 5)]).sack(5) == ()


def test_sack_round_trip() -> None:
    r = ChunkRanges([(0, 7), (9, 12), (20, 21)])
    cum = r.first_missing()
    assert ChunkRanges.from_sack(cum, r.sack(cum)) == r
    assert ChunkRanges.from_sack(0, ()) == ChunkRanges()


def test_ranges_from_indices() -> None:
    assert ranges_from_indices([5, 3, 4, 4, 9, 0]) == [(0, 1), (3, 6), (9, 10)]
    assert ranges_from_indices([]) == []


def test_owners_keep_labels_apart_and_pop_pieces() -> None:
    o = RangeOwners()
    o.assign(0, 10, 1)
    o.assign(10, 20, 1)  # extends the same owner
    o.assign(20, 30, 2)
    o.assign(40, 50, 2)
    o.assign(30, 40, 2)  # joins both neighbours of owner 2
    assert list(o) == [(0, 20, 1), (20, 50, 2)]
    assert o.pop(15, 25) == [(15, 20, 1), (20, 25, 2)]
    assert list(o) == [(0, 15, 1), (25, 50, 2)]
    assert o.pop(100, 200) == [] and o.pop(5, 5) == []
    with pytest.raises(ValueError):
        o.assign(10, 12, 3)
    with pytest.raises(ValueError):
        o.assign(20, 30, 3)
    o.assign(15, 25, 3)
    assert len(o) == 3


class ChunkRangesModel(RuleBasedStateMachine):
    """Every operation agrees with the same operation on a set of ints."""

    @initialize()
    def start(self) -> None:
        self.ranges = ChunkRanges()
        self.model: set[int] = set()

    span = st.tuples(st.integers(0, 300), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1]))

    @rule(r=span)
    def add(self, r: tuple[int, int]) -> None:
        new = set(range(*r)) - self.model
        assert self.ranges.add(*r) == len(new)
        self.model |= new

    @rule(r=span)
    def add_new(self, r: tuple[int, int]) -> None:
        new = set(range(*r)) - self.model
        pieces = self.ranges.add_new(*r)
        assert {k for s, e in pieces for k in range(s, e)} == new
        assert all(s < e for s, e in pieces) and pieces == sorted(pieces)
        self.model |= new

    @rule(r=span)
    def remove(self, r: tuple[int, int]) -> None:
        gone = set(range(*r)) & self.model
        assert self.ranges.remove(*r) == len(gone)
        self.model -= gone

    @rule(n=st.integers(0, 50))
    def take(self, n: int) -> None:
        taken = self.ranges.take(n)
        expected = sorted(self.model)[:n]
        assert [k for s, e in taken for k in range(s, e)] == expected
        self.model -= set(expected)

    @rule(r=span, lo=st.integers(0, 350))
    def queries(self, r: tuple[int, int], lo: int) -> None:
        inside = set(range(*r))
        assert self.ranges.count_in(*r) == len(inside & self.model)
        assert self.ranges.covers(*r) == (inside <= self.model)
        assert {k for s, e in self.ranges.gaps(*r) for k in range(s, e)} == inside - self.model
        assert {k for s, e in self.ranges.slice(*r) for k in range(s, e)} == inside & self.model
        missing = lo
        while missing in self.model:
            missing += 1
        assert self.ranges.first_missing(lo) == missing
        assert (lo in self.ranges) == (lo in self.model)

    @invariant()
    def canonical(self) -> None:
        intervals = list(self.ranges)
        assert {k for s, e in intervals for k in range(s, e)} == self.model
        assert self.ranges.count == len(self.model)
        for (_, e1), (s2, _) in itertools.pairwise(intervals):
            assert e1 < s2  # disjoint and never touching: always merged
        assert all(s < e for s, e in intervals)

    @invariant()
    def sack_is_valid(self) -> None:
        cum = self.ranges.first_missing()
        sack = self.ranges.sack(cum)
        assert len(sack) <= MAX_SACK_RANGES
        above = sorted(k for k in self.model if k >= cum)
        listed = [k for s, e in sack for k in range(s, e)]
        assert listed == above[: len(listed)]  # lowest first, nothing skipped
        if len(sack) < MAX_SACK_RANGES:
            assert listed == above
        assert Feedback(cum, cum, cum + 1000, 0, sack).violation() is None


TestChunkRangesModel = ChunkRangesModel.TestCase
TestChunkRangesModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 30)), max_size=60))
def test_owners_pop_returns_what_was_assigned(spans: list[tuple[int, int]]) -> None:
    owners = RangeOwners()
    model: dict[int, int] = {}
    for label, (start, length) in enumerate(spans):
        chunks = set(range(start, start + length))
        if chunks & model.keys():
            with pytest.raises(ValueError):
                owners.assign(start, start + length, label)
            continue
        owners.assign(start, start + length, label)
        model.update(dict.fromkeys(chunks, label))
    popped = owners.pop(100, 400)
    assert {k: o for s, e, o in popped for k in range(s, e)} == {
        k: o for k, o in model.items() if 100 <= k < 400
    }
    left = {k: o for s, e, o in owners for k in range(s, e)}
    assert left == {k: o for k, o in model.items() if not 100 <= k < 400}
