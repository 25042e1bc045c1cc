"""Files in the session's data space: entries, chunk layout, and the sender's send map.

PROTOCOL.md §DATA: chunk *k* of a file offered with `first_chunk = f` and `chunk_size = c`
holds file bytes `[(k - f)·c, min((k - f + 1)·c, size))`. Every file of one direction of a
session gets its own run of chunk indices; the runs ascend in offer order and never overlap.

The sender drives one `TxWindow` for all its files, but not every chunk of the data space is
to be sent: the receiver may refuse a file, or already hold some of its chunks (resume), and it
says so only after the offer (and the file's chunk run) went out. `TxWindow` learns of held
chunks only at construction, so the sender gives it a *window space* that holds exactly the
chunks to send, in data-space order, and `SendSpace` maps between the two: window ranges to
data-space ranges for the DATA frames, and each FEEDBACK (data space) to what it says about the
window space. The map is monotone, so one data-space range is one window range and FEEDBACK's
SACK list keeps its order and never grows.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from l2fast.errors import LocalProtocolError
from l2fast.transfer.ranges import ChunkRanges
from l2fast.wire.constants import HDR_LEN, MAX_PAYLOAD, Digest, FileKind
from l2fast.wire.frames import Feedback, WireRanges, path_violation

__all__ = [
    "ChunkSpan",
    "FileEntry",
    "FileLayout",
    "SendSpace",
    "chunk_count",
    "fit_have",
    "held_bytes",
    "max_have_ranges",
    "split_spans",
]

#: Bytes of FILE_ACCEPT before its ranges (transfer_id, n_ranges), and per range.
_ACCEPT_FIXED = 6
_RANGE_BYTES = 16


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks a file of `size` bytes takes (0 for an empty file)."""
    if size <= 0:
        return 0
    return -(-size // chunk_size)


def held_bytes(ranges: Iterable[tuple[int, int]], size: int, chunk_size: int) -> int:
    """File bytes covered by file-relative chunk `ranges` (the last chunk may be short)."""
    count = chunk_count(size, chunk_size)
    total = 0
    for start, end in ranges:
        start, end = max(start, 0), min(end, count)
        if start < end:
            total += min(end * chunk_size, size) - start * chunk_size
    return total


def max_have_ranges(mtu: int) -> int:
    """How many `have` ranges one FILE_ACCEPT can carry on a session with this MTU."""
    return max(0, (min(mtu - HDR_LEN, MAX_PAYLOAD) - _ACCEPT_FIXED) // _RANGE_BYTES)


def fit_have(ranges: Iterable[tuple[int, int]], limit: int) -> WireRanges:
    """The `limit` largest ranges of `ranges`, merged and ascending.

    A resumed file with more holes than one FILE_ACCEPT can describe keeps its biggest runs;
    the chunks left out are simply sent again, which costs bandwidth, never correctness.
    """
    merged = list(ChunkRanges(ranges))
    if len(merged) > limit:
        merged = sorted(sorted(merged, key=lambda r: r[0] - r[1])[:limit])
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One thing to send: what the sender puts in FILE_OFFER (PROTOCOL.md §FILE_OFFER).

    `path` is relative and `/`-separated. A symlink's data is its target (size = target
    length); a directory has size 0; a bench stream (kind 3) is `size` bytes that the receiver
    counts and discards. `first_chunk`, when given, places the file in the data space (it must
    not overlap an earlier file); None lets the transfer place it right after the previous one.
    """

    path: str
    kind: FileKind = FileKind.FILE
    size: int = 0
    mode: int = 0o644
    mtime_ns: int = 0
    chunk_size: int = 1024
    digest: Digest = Digest.SHA256
    first_chunk: int | None = None

    def check(self) -> None:
        """Raise LocalProtocolError when the entry cannot be offered as it is."""
        problem = path_violation(self.path)
        if problem is None and self.size < 0:
            problem = f"size {self.size} is negative"
        if problem is None and self.kind is FileKind.DIRECTORY and self.size:
            problem = "a directory has no data (size must be 0)"
        if problem is None and self.size and not 1 <= self.chunk_size <= MAX_PAYLOAD:
            problem = f"chunk size {self.chunk_size} is outside 1..{MAX_PAYLOAD}"
        if problem is None and self.mode & ~0o7777:
            problem = f"mode {self.mode:#o} has bits outside 0o7777"
        if problem is None and (self.digest not in (Digest.SHA256, Digest.BLAKE2B_256)):
            problem = f"digest {self.digest!r} is not one known algorithm"
        if problem is not None:
            raise LocalProtocolError(f"cannot offer {self.path!r}: {problem}")


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Data-space chunks [start, end) of one file, and the file bytes they hold."""

    transfer_id: int
    start: int
    end: int
    #: File offset of chunk `start`, and how many bytes the chunks hold together.
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class FileLayout:
    """Where one file's chunks sit in the data space (PROTOCOL.md §DATA)."""

    transfer_id: int
    first_chunk: int
    chunk_size: int
    size: int

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return chunk_count(self.size, self.chunk_size)

    @property
    def end(self) -> int:
        """One past the file's last chunk index."""
        return self.first_chunk + self.chunks

    def chunk_len(self, chunk: int) -> int:
        """Payload bytes of data-space chunk `chunk` (before compression), which must be ours."""
        if not self.first_chunk <= chunk < self.end:
            raise LocalProtocolError(f"chunk {chunk} is not in file #{self.transfer_id}")
        offset = (chunk - self.first_chunk) * self.chunk_size
        return min(self.chunk_size, self.size - offset)

    def span(self, start: int, end: int) -> ChunkSpan:
        """The file bytes of data-space chunks [start, end), clipped to this file."""
        start, end = max(start, self.first_chunk), min(end, self.end)
        if start >= end:
            return ChunkSpan(self.transfer_id, start, start, 0, 0)
        offset = (start - self.first_chunk) * self.chunk_size
        stop = min((end - self.first_chunk) * self.chunk_size, self.size)
        return ChunkSpan(self.transfer_id, start, end, offset, stop - offset)

    def to_data(self, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """File-relative chunk ranges to data-space ranges, clipped to the file."""
        count = self.chunks
        out = []
        for start, end in ranges:
            start, end = max(start, 0), min(end, count)
            if start < end:
                out.append((self.first_chunk + start, self.first_chunk + end))
        return out

    def to_file(self, ranges: Iterable[tuple[int, int]]) -> WireRanges:
        """Data-space chunk ranges to file-relative ones, clipped to the file."""
        out = []
        for start, end in ranges:
            start, end = max(start, self.first_chunk), min(end, self.end)
            if start < end:
                out.append((start - self.first_chunk, end - self.first_chunk))
        return tuple(out)


def split_spans(
    layouts: Sequence[FileLayout], ranges: Iterable[tuple[int, int]], limit: int | None = None
) -> list[ChunkSpan]:
    """Data-space chunk ranges split per file, with the file bytes behind each piece.

    `layouts` ascend in the data space (offer order). Chunks of no file (gaps) are left out.
    `limit`: only the first that many pieces (a range may cover thousands of files).
    """
    out: list[ChunkSpan] = []
    for start, end in ranges:
        # The last layout starting at or before `start`: an empty one shares its start with
        # the next file and comes before it, so it is never the one picked for a chunk.
        i = max(bisect_right(layouts, start, key=lambda lay: lay.first_chunk) - 1, 0)
        while start < end and i < len(layouts):
            span = layouts[i].span(start, end)
            if span.end > span.start:
                out.append(span)
                if len(out) == limit:
                    return out
                start = span.end
            i += 1
    return out


class SendSpace:
    """Monotone map from the sender's window space onto data-space chunk indices.

    Segments are appended in ascending data-space order (files in offer order, each minus the
    chunks the receiver holds); the window space is their concatenation, from 0.
    """

    __slots__ = ("_data", "_lengths", "_window", "length")

    def __init__(self) -> None:
        self._window: list[int] = []  # window index of each segment's first chunk
        self._data: list[int] = []  # data-space index of each segment's first chunk
        self._lengths: list[int] = []
        #: Chunks in the window space.
        self.length = 0

    def append(self, start: int, end: int) -> None:
        """Add data-space chunks [start, end), which must lie above every chunk added so far."""
        if start >= end:
            return
        if self._data:
            last_end = self._data[-1] + self._lengths[-1]
            if start < last_end:
                raise LocalProtocolError(f"chunks [{start}, {end}) are below {last_end}")
            if start == last_end:
                self._lengths[-1] += end - start
                self.length += end - start
                return
        self._window.append(self.length)
        self._data.append(start)
        self._lengths.append(end - start)
        self.length += end - start

    def count_below(self, chunk: int) -> int:
        """Window chunks whose data-space index is below `chunk`."""
        i = bisect_right(self._data, chunk) - 1
        if i < 0:
            return 0
        return self._window[i] + min(chunk - self._data[i], self._lengths[i])

    def to_data(self, start: int, end: int, limit: int | None = None) -> list[tuple[int, int]]:
        """Window chunks [start, end) as ascending data-space ranges (only the first `limit`)."""
        out: list[tuple[int, int]] = []
        i = max(bisect_right(self._window, start) - 1, 0)
        while start < end and i < len(self._window) and len(out) != limit:
            seg_end = self._window[i] + self._lengths[i]
            if start < seg_end:
                stop = min(end, seg_end)
                base = self._data[i] - self._window[i]
                out.append((base + start, base + stop))
                start = stop
            i += 1
        return out

    def to_window(self, feedback: Feedback) -> Feedback:
        """What a FEEDBACK (data space) says about the window space.

        Received chunks that are not to be sent (held before, of a refused file) simply vanish.
        `highest` becomes the end of the last range reported: the receiver's own `highest`
        may be such a vanished chunk, and `TxWindow` takes `highest - 1` as received.
        """
        cum = self.count_below(feedback.cum_ack)
        ranges: list[tuple[int, int]] = []
        for start, end in feedback.ranges:
            lo, hi = self.count_below(start), self.count_below(end)
            if lo >= hi:
                continue
            if ranges and ranges[-1][1] >= lo:
                ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))  # touching after mapping
            else:
                ranges.append((lo, hi))
        if ranges and ranges[0][0] <= cum:
            cum = max(cum, ranges.pop(0)[1])
        highest = ranges[-1][1] if ranges else cum
        return Feedback(
            cum_ack=cum,
            credit=self.count_below(feedback.credit),
            highest=highest,
            kernel_drops=feedback.kernel_drops,
            ranges=tuple(ranges),
        )
