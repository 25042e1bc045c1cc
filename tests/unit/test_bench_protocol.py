"""The sans-IO side of `l2fast bench` (issue 6): bench FILE_RESULT texts and held results."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any, cast

from l2fast.daemon.benchjobs import BENCH_SEGMENTS_AHEAD, BenchJob, bench_note, parse_bench_note
from l2fast.daemon.outgoing import SourceFile
from l2fast.transfer.protocol import FileEntry, IncomingTransfer, OutgoingTransfer
from l2fast.wire.constants import Digest, FileKind
from l2fast.wire.frames import FileEnd, FileOffer, FileResult

PEER = b"\x02\x00\x00\x00\x00\x01"


def _incoming() -> IncomingTransfer:
    return IncomingTransfer(now=0.0, buffer_chunks=1 << 12, mtu=1500, session=7, peer=PEER)


def _offer(tid: int, size: int, path: str, first: int = 0) -> FileOffer:
    return FileOffer(tid, int(FileKind.BENCH), int(Digest.SHA256), size, 0, 0, first, 1000, path)


def _results(inc: IncomingTransfer) -> list[FileResult]:
    return [b for b in inc.control_to_send() if isinstance(b, FileResult)]


def test_note_round_trip() -> None:
    note = bench_note({"cpu_s": 0.25, "wall_s": 1.5, "drops": 3})
    assert note.startswith("bench ")
    assert parse_bench_note(note) == {"cpu_s": 0.25, "wall_s": 1.5, "drops": 3.0}
    assert parse_bench_note("") == {} and parse_bench_note("some/file.bin") == {}
    assert parse_bench_note("bench cpu_s=x drops=2 junk") == {"drops": 2.0}


def test_bench_stream_result_carries_the_note() -> None:
    inc = _incoming()
    inc.receive_control(_offer(1, 5000, "bench/0"), 0.0)
    inc.accept(1, 0.0)
    inc.bench_notes[1] = "bench cpu_s=0.1000 wall_s=0.2000 drops=0"
    inc.on_chunks([(0, 5)], 0.1)
    inc.receive_control(FileEnd(1, int(Digest.SHA256), b""), 0.2)
    (result,) = _results(inc)
    assert result.status == 0 and result.digest_value == b""
    assert parse_bench_note(result.final_name)["cpu_s"] == 0.1
    assert 1 not in inc.bench_notes


def test_held_bench_request_answers_on_release() -> None:
    inc = _incoming()
    inc.receive_control(_offer(1, 0, "bench/raw"), 0.0)
    inc.bench_held.add(1)
    inc.accept(1, 0.0)
    inc.receive_control(FileEnd(1, int(Digest.SHA256), b""), 0.1)
    assert _results(inc) == []  # the count is not there yet
    inc.release_bench(1, "bench frames=10 bad=0", 0.5)
    (result,) = _results(inc)
    assert result.status == 0 and parse_bench_note(result.final_name)["frames"] == 10
    inc.release_bench(1, "again", 0.6)  # a late second release changes nothing
    assert _results(inc) == []


def test_a_bench_run_plans_segments_ahead_of_the_finished_ones() -> None:
    # A run lasts -t seconds however fast the link: segments are added as others finish. It
    # used to plan every segment for 50 Gbit/s at the start, and a faster run ran out early.
    def segment(i: int) -> FileEntry:
        return FileEntry(f"bench/{i}", FileKind.BENCH, 4000, chunk_size=1000)

    first = [segment(i) for i in range(BENCH_SEGMENTS_AHEAD)]
    out = OutgoingTransfer(first, now=0.0)
    job = SimpleNamespace(
        out=out,
        files=[SourceFile(e, -1) for e in first],
        n_entries=len(first),
        segments_done=0,
        ended=False,
        segment_bytes=4000,
        chunk=1000,
        digest=Digest.SHA256,
    )
    job._segment = partial(cast(Any, BenchJob._segment), job)
    plan = cast(Any, BenchJob._plan_ahead)
    plan(job, 0.0)
    assert len(job.files) == BENCH_SEGMENTS_AHEAD  # none finished: none added
    job.segments_done = 5
    plan(job, 0.0)
    n = BENCH_SEGMENTS_AHEAD + 5
    assert len(job.files) == job.n_entries == n
    assert [f.entry.path for f in job.files[-5:]] == [f"bench/{i}" for i in range(16, n)]
    assert out.layout(n - 1).first_chunk == 4 * (n - 1)  # after the last, one chunk size
    assert all(isinstance(b, FileOffer) for b in out.control_to_send())
    job.ended = True  # the run is over: nothing more is planned
    job.segments_done = n
    plan(job, 0.0)
    assert len(job.files) == n
