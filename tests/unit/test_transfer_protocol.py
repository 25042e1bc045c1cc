"""File transfer end to end: OutgoingTransfer -> IncomingTransfer over the in-memory pair.

Every completed run must meet the same contract: each file lands byte-exact under its name,
its digest matches on both ends, each chunk is written exactly once, a corrupted frame is never
written, and each entry gets exactly one outcome event on each side.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter

import pytest

from l2fast.transfer.events import (
    FileCompleted,
    FileFailed,
    FileReceived,
    FileRejected,
    OfferRejected,
    TransferDone,
    TransferFailed,
    TransferProgress,
)
from l2fast.transfer.protocol import FileEntry, TransferConfig
from l2fast.wire.constants import Digest, ErrorCode, FileKind, FrameType
from tests.file_harness import Faults, FileRun, Setup, Source, bench, directory, file, of

FILE_FRAMES = (
    FrameType.FILE_OFFER,
    FrameType.FILE_ACCEPT,
    FrameType.FILE_REJECT,
    FrameType.FILE_END,
    FrameType.FILE_RESULT,
)


def tree(seed: int, files: int = 24) -> list[Source]:
    """Nested directories, an empty one, files of awkward sizes, a large file, a bench stream."""
    rng = random.Random(seed)
    out = [directory("top"), directory("top/sub"), directory("top/empty")]
    for i in range(files):
        size = rng.choice([0, 1, 999, 1000, 1001, 4096, 20_000, 65_000])
        folder = "top/sub" if i % 3 else "top"
        chunk = rng.choice([1000, 1400, 8976])
        out.append(file(f"{folder}/f{i}", rng.randbytes(size), chunk_size=chunk))
    out.append(file("big.bin", rng.randbytes(700_000), chunk_size=8000))
    out.append(bench("bench", 300_000, chunk_size=8000))
    return out


def assert_all_arrived(run: FileRun) -> None:
    """The contract of a run in which every file should arrive."""
    assert run.out is not None and run.inc is not None
    assert of(run.out_events, TransferFailed) == [], of(run.out_events, TransferFailed)
    assert run.placed == run.source_by_path((FileKind.FILE,))
    assert run.dirs == {s.entry.path for s in run.sources if s.entry.kind is FileKind.DIRECTORY}
    benches = [s for s in run.sources if s.entry.kind is FileKind.BENCH]
    assert run.bench_bytes == sum(s.entry.size for s in benches)
    assert run.bad_writes == 0, "a corrupted or misplaced chunk was written"
    assert set(run.written.values()) <= {1}, "a chunk was written twice"
    completed = of(run.out_events, FileCompleted)
    assert Counter(ev.path for ev in completed) == Counter(s.entry.path for s in run.sources)
    by_path = {s.entry.path: s for s in run.sources}
    for ev in completed:
        source = by_path[ev.path]
        if source.entry.kind is FileKind.FILE:
            assert ev.verified
            assert ev.digest == hashlib.sha256(source.data).digest()
            assert ev.final_name == ev.path
        assert ev.needed_bytes + ev.skipped_bytes == source.entry.size
        assert ev.bytes_received == ev.needed_bytes
    received = of(run.in_events, FileReceived)
    assert Counter(ev.path for ev in received) == Counter(s.entry.path for s in run.sources)
    (done,) = of(run.out_events, TransferDone)
    assert done.files_verified == len(run.sources)
    (rx_done,) = of(run.in_events, TransferDone)
    assert rx_done.files_verified == len(run.sources)
    assert not run.out.drops and not run.inc.drops and run.inc.chunks_refused == 0


def test_single_file_takes_one_exchange() -> None:
    data = random.Random(1).randbytes(250_000)
    run = FileRun(Setup(seed=1), Faults(), [file("report.pdf", data, chunk_size=8000)])
    assert run.run()
    assert_all_arrived(run)
    for kind in (FrameType.FILE_OFFER, FrameType.FILE_ACCEPT, FrameType.FILE_END):
        assert run.lan.sent[kind] == 1
    assert run.lan.sent[FrameType.FILE_RESULT] == 1
    assert run.out is not None and run.out.window.stats.retransmitted_chunks == 0
    assert set(run.sent.values()) == {1}
    progress = of(run.out_events, TransferProgress)
    assert progress[-1].bytes_done == progress[-1].bytes_total == len(data)


@pytest.mark.parametrize("digest", [Digest.SHA256, Digest.BLAKE2B_256])
def test_empty_file_and_both_digests(digest: Digest) -> None:
    run = FileRun(
        Setup(seed=2),
        Faults(),
        [file("empty", b"", digest=digest), file("x", b"abc", digest=digest)],
    )
    assert run.run()
    assert run.placed == {"empty": b"", "x": b"abc"}
    (first, _) = of(run.out_events, FileCompleted)
    expected = hashlib.blake2b(b"", digest_size=32) if digest is Digest.BLAKE2B_256 else None
    assert first.digest == (expected or hashlib.sha256(b"")).digest()
    assert run.sent == Counter({0: 1})  # "empty" has no chunk; "x" has one


def test_folder_with_nested_and_empty_directories() -> None:
    run = FileRun(Setup(seed=3), Faults(), tree(3))
    assert run.run()
    assert_all_arrived(run)
    assert "top/empty" in run.dirs
    # A directory costs an offer, an accept and a result; no FILE_END, no data.
    dirs = sum(s.entry.kind is FileKind.DIRECTORY for s in run.sources)
    assert run.lan.sent[FrameType.FILE_END] == len(run.sources) - dirs


def test_ten_thousand_tiny_files_are_pipelined() -> None:
    rng = random.Random(4)
    count = 10_000
    sources = [file(f"many/{i:05d}", rng.randbytes(4096), chunk_size=8976) for i in range(count)]
    run = FileRun(Setup(seed=4), Faults(), sources)
    started = time.perf_counter()
    assert run.run()
    wall = time.perf_counter() - started
    assert len(run.placed) == count and run.placed == run.source_by_path()
    # Four control frames per file (offer, accept, end, result), each acknowledged once.
    file_frames = sum(run.lan.sent[t] for t in FILE_FRAMES)
    assert file_frames == 4 * count
    assert run.lan.sent[FrameType.CTRL_ACK] <= file_frames + 10
    assert run.lan.sent[FrameType.SYN] == 1  # one handshake for all of them
    # Sequentially, each file would cost at least two round trips (offer/accept, end/result).
    rtt = 2 * run.setup.latency
    assert run.elapsed < count * 2 * rtt / 20, f"{run.elapsed:.3f} s of virtual time"
    assert wall < 25, f"{wall:.1f} s of real time"


FAULTS: dict[str, Faults] = {
    "loss-5%": Faults(loss=0.05),
    "loss-20%": Faults(loss=0.20),
    "duplicate-10%": Faults(duplicate=0.10),
    "reorder-10%": Faults(reorder=0.10),
    "corrupt-5%": Faults(corrupt=0.05),
    "feedback-loss-30%": Faults(feedback_loss=0.30),
    "blackout": Faults(blackouts=((0.0006, 0.3),)),
    "data-blackout": Faults(data_blackouts=((0.0008, 0.6),)),
    "everything": Faults(
        loss=0.05,
        duplicate=0.03,
        reorder=0.03,
        corrupt=0.02,
        feedback_loss=0.1,
        blackouts=((0.001, 0.05),),
    ),
}


@pytest.mark.parametrize("burst_steps", [0, 30], ids=["batches", "bursts"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("profile", FAULTS)
def test_every_fault_delivers_every_file_exactly_once(
    profile: str, seed: int, burst_steps: int
) -> None:
    """Every file of a tree, under each fault; the sender asks the window for a batch every
    step, or streams new data in bursts the window learns of afterwards (csrc/txstream.c)."""
    setup = Setup(seed=seed, buffer_chunks=256, drain_per_step=32, burst_steps=burst_steps)
    run = FileRun(setup, FAULTS[profile], tree(seed))
    assert run.run(), f"not done after {run.elapsed:.3f} s of virtual time"
    assert_all_arrived(run)
    assert (run.streamed_chunks > 0) == bool(burst_steps)
    if profile.startswith(("loss", "corrupt", "everything", "data-blackout")):
        assert run.data_lost + run.crc_dropped > 0  # the faults did hit the data
    if profile == "corrupt-5%":
        assert run.crc_dropped > 0


def test_policy_none_refuses_every_offer_clearly() -> None:
    run = FileRun(Setup(seed=5, policy="none"), Faults(loss=0.05), tree(5, files=6))
    assert run.run()
    rejected = of(run.out_events, OfferRejected)
    assert len(rejected) == len(run.sources)
    assert {ev.reason for ev in rejected} == {ErrorCode.REFUSED}
    assert {ev.text for ev in rejected} == {"this node accepts no files"}
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_rejected, done.files_verified, done.bytes_sent) == (len(run.sources), 0, 0)
    assert not run.sent and not run.placed  # not one chunk went out
    assert len(of(run.in_events, FileRejected)) == len(run.sources)


def test_refused_files_and_gaps_do_not_hold_back_a_small_receive_ring() -> None:
    # The receiver grants credit up to cum_ack + free ring space (64 chunks here). A refused
    # file of 500 chunks, and a gap of 300 chunks the sender left in the data space, are never
    # sent: unless they count as received, the credit could never reach the files after them.
    rng = random.Random(14)
    first = file("first", rng.randbytes(20_000))
    refused = file("refused.iso", rng.randbytes(500_000))
    gap = Source(FileEntry("after-gap", FileKind.FILE, 30_000, chunk_size=1000, first_chunk=900),
                 rng.randbytes(30_000))  # fmt: skip
    last = file("last", rng.randbytes(50_000))
    setup = Setup(seed=14, buffer_chunks=64, drain_per_step=8, refuse=frozenset({"refused.iso"}))
    run = FileRun(setup, Faults(loss=0.05), [first, refused, gap, last])
    assert run.run()
    assert run.placed == {s.entry.path: s.data for s in (first, gap, last)}
    (rejected,) = of(run.out_events, OfferRejected)
    assert (rejected.path, rejected.reason) == ("refused.iso", ErrorCode.NO_SPACE)
    assert run.out is not None
    refused_chunks = range(run.out.layout(1).first_chunk, run.out.layout(1).end)
    assert not set(refused_chunks) & set(run.sent)


def test_ask_is_answered_later_and_offers_stay_bounded() -> None:
    config = TransferConfig(max_offers_outstanding=4)
    sources = tree(6, files=8)
    run = FileRun(Setup(seed=6, policy="ask", config=config), Faults(), sources)
    assert run.run(until=lambda: len(run.inbox) == 4)
    run.run(until=lambda: run.lan.now > 2.0)  # a person takes their time
    assert len(run.inbox) == 4 and not run.sent  # nothing more offered, nothing sent
    assert run.out is not None and not run.out.finished
    refused = sources[5].entry.path
    while not run.finished() and run.lan.now < 10:
        pending, run.inbox = run.inbox, []
        for offer in reversed(pending):  # answered out of order
            if offer.path == refused:
                assert run.inc is not None
                run.inc.reject(offer.transfer_id, run.lan.now, ErrorCode.BAD_NAME, "no")
            else:
                run.answer(offer)
        run.run(until=lambda: bool(run.inbox) or run.finished())
    assert run.finished()
    (rejected,) = of(run.out_events, OfferRejected)
    assert (rejected.path, rejected.reason) == (refused, ErrorCode.BAD_NAME)
    expected = run.source_by_path()
    expected.pop(refused, None)
    assert run.placed == expected
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_rejected) == (len(sources) - 1, 1)


@pytest.mark.parametrize(
    ("faults", "buffer_chunks"),
    [
        (Faults(), 4096),
        (Faults(loss=0.1, reorder=0.05), 4096),
        # A receive ring much smaller than the held runs: the credit (cum_ack + free space)
        # only reaches the missing chunks if held chunks count as received.
        (Faults(loss=0.05), 64),
    ],
)
@pytest.mark.parametrize("burst_steps", [0, 30], ids=["batches", "bursts"])
def test_resume_sends_only_missing_chunks_and_reports_needed_bytes(
    faults: Faults, buffer_chunks: int, burst_steps: int
) -> None:
    rng = random.Random(7)
    big = file("big.iso", rng.randbytes(1_000_003), chunk_size=1000)  # 1001 chunks
    whole = file("whole.txt", rng.randbytes(5_000), chunk_size=1000)
    fresh = file("fresh.txt", rng.randbytes(3_000), chunk_size=1000)
    have = {"big.iso": ((0, 400), (500, 900), (1000, 1001)), "whole.txt": ((0, 5),)}
    setup = Setup(seed=7, receiver_has=have, buffer_chunks=buffer_chunks, drain_per_step=16,
                  burst_steps=burst_steps)  # fmt: skip
    run = FileRun(setup, faults, [big, whole, fresh])
    assert run.run()
    assert (run.streamed_chunks > 0) == bool(burst_steps)
    assert run.placed == run.source_by_path()
    assert run.out is not None
    first = run.out.layout(0).first_chunk
    held = {first + k for start, end in have["big.iso"] for k in range(start, end)}
    held |= {run.out.layout(1).first_chunk + k for k in range(5)}
    assert not held & set(run.sent), "a chunk the receiver held was sent"
    missing = {first + k for k in [*range(400, 500), *range(900, 1000)]}
    assert missing <= set(run.sent)
    done = {ev.path: ev for ev in of(run.out_events, FileCompleted)}
    # 200 full chunks were missing; the short last chunk (3 bytes) was held.
    assert done["big.iso"].needed_bytes == done["big.iso"].bytes_received == 200_000
    assert done["big.iso"].skipped_bytes == 800_003
    assert (done["whole.txt"].needed_bytes, done["whole.txt"].skipped_bytes) == (0, 5_000)
    assert done["fresh.txt"].needed_bytes == 3_000
    (total,) = of(run.out_events, TransferDone)
    assert (total.bytes_sent, total.bytes_skipped) == (203_000, 805_003)


def test_digest_mismatch_fails_the_file_on_both_ends() -> None:
    sources = tree(8, files=5)
    liar = sources[4].entry.path
    run = FileRun(Setup(seed=8, wrong_digest=frozenset({liar})), Faults(loss=0.02), sources)
    assert run.run()
    (failed,) = of(run.out_events, FileFailed)
    assert (failed.path, failed.code) == (liar, ErrorCode.DIGEST_MISMATCH)
    assert failed.text == "the digest of the data received differs from the sender's"
    assert liar not in run.placed  # never renamed into place
    (refused,) = of(run.in_events, FileRejected)
    assert (refused.path, refused.code, refused.after_accept) == (
        liar,
        ErrorCode.DIGEST_MISMATCH,
        True,
    )
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_failed, done.files_verified) == (1, len(sources) - 1)


def test_receiver_write_failure_is_reported_to_the_sender() -> None:
    sources = tree(9, files=5)
    broken = sources[6].entry.path
    run = FileRun(Setup(seed=9, fail_write=frozenset({broken})), Faults(), sources)
    assert run.run()
    (failed,) = of(run.out_events, FileFailed)
    assert (failed.path, failed.code) == (broken, ErrorCode.IO_ERROR)
    assert "io_error" in failed.error.message
    assert failed.text == "disk on fire"  # the receiver's own words come with the code


def test_a_late_digest_holds_file_end_back() -> None:
    run = FileRun(Setup(seed=10, digest_delay=0.2), Faults(), tree(10, files=4))
    assert run.run()
    assert_all_arrived(run)
    assert run.elapsed >= 0.2


def test_a_stalled_data_path_fails_the_transfer_instead_of_hanging() -> None:
    # Control frames (and so the session) live on; DATA and FEEDBACK are gone for good.
    faults = Faults(data_blackouts=((0.0007, 1e9),))
    run = FileRun(Setup(seed=11), faults, tree(11, files=4))
    assert run.run()
    (failed,) = of(run.out_events, TransferFailed)
    assert (failed.reason, failed.code) == ("stalled", ErrorCode.TIMEOUT)
    assert failed.unfinished > 0
    assert run.elapsed < run.setup.config.tx.stall_timeout + 2
    assert of(run.out_events, FileFailed)  # every running file got its own event
    assert not of(run.out_events, TransferDone)
    # The sender's adapter closed the session: the receiver keeps its part files for a resume.
    (rx_failed,) = of(run.in_events, TransferFailed)
    assert rx_failed.reason == "session" and rx_failed.unfinished > 0
    assert all(ev.code == ErrorCode.TIMEOUT for ev in of(run.in_events, FileRejected))


def test_a_dead_link_fails_both_ends() -> None:
    run = FileRun(Setup(seed=12), Faults(blackouts=((0.0007, 1e9),)), tree(12, files=4))
    assert run.run()
    (failed,) = of(run.out_events, TransferFailed)
    assert failed.reason in ("stalled", "session")
    assert failed.code == ErrorCode.TIMEOUT
    assert run.elapsed < 12


def test_cancel_stops_everything() -> None:
    sources = tree(13, files=10)
    run = FileRun(Setup(seed=13), Faults(), sources)
    assert run.run(until=lambda: bool(run.placed))
    assert run.out is not None
    run.out.cancel(run.lan.now, "stopped by the user")
    assert run.run()
    (failed,) = of(run.out_events, TransferFailed)
    assert failed.reason == "cancelled"
    outcomes = of(run.out_events, FileCompleted) + of(run.out_events, FileFailed)
    assert len(outcomes) == len(run.out._files)  # every offered file ended exactly once
    assert run.out.next_batch(run.lan.now, 10) == [] and run.out.control_to_send() == []


@pytest.mark.parametrize("faults", [Faults(), Faults(loss=0.05, reorder=0.03)])
def test_retransmissions_are_counted_in_frames_and_file_bytes(faults: Faults) -> None:
    """`retransmitted_frames`/`retransmitted_bytes` count DATA sent more than once (what
    `l2fast send --json` reports as resent_bytes), not the bytes every file needed."""
    setup = Setup(seed=3, buffer_chunks=256, drain_per_step=32)
    run = FileRun(setup, faults, tree(3, files=8))
    assert run.run()
    assert_all_arrived(run)
    out = run.out
    assert out is not None
    again = {k: n - 1 for k, n in run.sent.items() if n > 1}
    assert out.retransmitted_frames == sum(again.values())
    assert out.retransmitted_bytes == sum(
        n * out.spans([(k, k + 1)])[0].length for k, n in again.items()
    )
    if faults.loss:
        assert out.retransmitted_frames > 0
    else:
        assert out.retransmitted_bytes == 0
