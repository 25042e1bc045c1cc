"""Files in the data space (l2fast.transfer.protocol_space): layout, resume ranges, send map."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError
from l2fast.transfer.protocol_space import (
    FileEntry,
    FileLayout,
    SendSpace,
    chunk_count,
    fit_have,
    held_bytes,
    max_have_ranges,
    split_spans,
)
from l2fast.transfer.ranges import ChunkRanges
from l2fast.wire.constants import FileKind
from l2fast.wire.frames import Feedback, FileAccept, encode_payload


def test_chunk_math_follows_protocol_data_section() -> None:
    assert chunk_count(0, 1000) == 0
    assert chunk_count(1, 1000) == 1
    assert chunk_count(1000, 1000) == 1
    assert chunk_count(1001, 1000) == 2
    layout = FileLayout(7, first_chunk=100, chunk_size=1000, size=2500)
    assert (layout.chunks, layout.end) == (3, 103)
    assert [layout.chunk_len(k) for k in (100, 101, 102)] == [1000, 1000, 500]
    with pytest.raises(LocalProtocolError):
        layout.chunk_len(103)  # past the declared size
    span = layout.span(99, 110)
    assert (span.start, span.end, span.offset, span.length) == (100, 103, 0, 2500)
    assert layout.to_data([(1, 5)]) == [(101, 103)]
    assert layout.to_file([(90, 102), (200, 300)]) == ((0, 2),)


def test_held_bytes_counts_a_short_last_chunk() -> None:
    assert held_bytes([(0, 1), (2, 3)], size=2500, chunk_size=1000) == 1500
    assert held_bytes([(0, 10)], size=2500, chunk_size=1000) == 2500


def test_fit_have_keeps_the_largest_runs_and_fits_one_file_accept() -> None:
    ranges = [(i * 10, i * 10 + 1 + i % 5) for i in range(500)]
    limit = max_have_ranges(1500)
    kept = fit_have(ranges, limit)
    assert len(kept) == limit
    assert list(kept) == sorted(kept)
    assert min(e - s for s, e in kept) == 5  # only the longest runs survive
    assert len(encode_payload(FileAccept(1, kept))) <= 1500 - 24
    assert fit_have([(0, 2), (2, 4)], 1) == ((0, 4),)  # merged first


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (FileEntry("/abs"), "empty component"),
        (FileEntry("d", FileKind.DIRECTORY, size=5), "directory"),
        (FileEntry("f", size=10, chunk_size=0), "chunk size"),
        (FileEntry("f", mode=0o17777), "mode"),
    ],
)
def test_entries_that_cannot_be_offered_are_refused(entry: FileEntry, problem: str) -> None:
    with pytest.raises(LocalProtocolError, match=problem):
        entry.check()


def _space(segments: list[tuple[int, int]]) -> SendSpace:
    space = SendSpace()
    for start, end in segments:
        space.append(start, end)
    return space


def test_send_space_maps_window_ranges_to_data_ranges() -> None:
    space = _space([(0, 10), (10, 12), (20, 25), (40, 41)])  # [0,12) merges
    assert space.length == 18
    assert space.to_data(0, 18) == [(0, 12), (20, 25), (40, 41)]
    assert space.to_data(11, 14) == [(11, 12), (20, 22)]
    assert [space.count_below(k) for k in (0, 12, 15, 20, 22, 30, 41, 99)] == [
        0, 12, 12, 12, 14, 17, 18, 18,
    ]  # fmt: skip
    with pytest.raises(LocalProtocolError):
        space.append(30, 35)  # below what is laid out: the map must stay monotone
    assert space.to_data(0, 18, limit=1) == [(0, 12)]
    assert space.to_data(11, 18, limit=2) == [(11, 12), (20, 25)]


def test_split_spans_can_stop_at_the_first_file() -> None:
    """A streaming burst needs one file of a range that may cover thousands (bench segments)."""
    layouts = [FileLayout(i + 1, 10 * i, 100, 1000) for i in range(5000)]
    assert len(split_spans(layouts, [(0, 50_000)])) == 5000
    (first,) = split_spans(layouts, [(25, 50_000)], limit=1)
    assert (first.transfer_id, first.start, first.end, first.offset, first.length) == (
        3, 25, 30, 500, 500,
    )  # fmt: skip


def test_feedback_about_skipped_chunks_vanishes_and_highest_stays_truthful() -> None:
    space = _space([(0, 10), (20, 30)])  # chunks 10..19 are held or refused: never sent
    # The receiver holds 0..14 (10..14 it had before) and 25..27; its highest (40) is a chunk
    # that is not in the window space at all.
    fb = Feedback(cum_ack=15, credit=35, highest=40, kernel_drops=3, ranges=((25, 28), (39, 40)))
    win = space.to_window(fb)
    assert win.cum_ack == 10
    assert win.ranges == ((15, 18),)
    assert win.highest == 18  # not 20: window chunk 19 (data 29) was not received
    assert win.credit == 20  # data 35 is past everything laid out
    assert win.kernel_drops == 3
    # A range that touches the cumulative ack after mapping folds into it.
    fb = Feedback(cum_ack=12, credit=30, highest=23, kernel_drops=0, ranges=((20, 23),))
    assert space.to_window(fb) == Feedback(13, 20, 13, 0, ())
    fb = Feedback(cum_ack=8, credit=30, highest=23, kernel_drops=0, ranges=((10, 23),))
    assert space.to_window(fb) == Feedback(8, 20, 13, 0, ((10, 13),))  # 8 and 9 still missing


@given(
    segments=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6)), min_size=1, max_size=8),
    received=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), max_size=10),
)
def test_window_feedback_never_claims_an_unreceived_chunk(
    segments: list[tuple[int, int]], received: list[tuple[int, int]]
) -> None:
    space = SendSpace()
    position = 0
    for gap, length in segments:
        space.append(position + gap, position + gap + length)
        position += gap + length
    got = ChunkRanges((s, s + n) for s, n in received)
    cum = got.first_missing(0)
    highest = (got.last() or -1) + 1
    fb = Feedback(cum, cum + 5, max(highest, cum), 0, got.sack(cum))
    win = space.to_window(fb)
    assert win.violation() is None
    window_got = ChunkRanges()
    for w in range(space.length):
        (data,) = space.to_data(w, w + 1)
        if data[0] in got:
            window_got.add(w, w + 1)
    claimed = ChunkRanges.from_sack(win.cum_ack, win.ranges)
    if win.highest:
        claimed.add(win.highest - 1, win.highest)
    for start, end in claimed:
        assert window_got.covers(start, end)
    assert win.cum_ack == window_got.first_missing(0)  # nothing received is lost either
