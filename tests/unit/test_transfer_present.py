"""Files already at the receiver (PROTOCOL.md §Files already at the receiver), in memory.

Sending a folder a second time must move no data for the files that already arrived and
report them as present on both ends; a file of the same name and size but other content is
offered again and received as usual.
"""

from __future__ import annotations

import random

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.events import SessionOpened
from l2fast.transfer.events import (
    FileCompleted,
    FileFailed,
    FileReceived,
    FileRejected,
    FileReoffered,
    OfferAccepted,
    OfferReceived,
    TransferDone,
    TransferProgress,
)
from l2fast.transfer.protocol import IncomingTransfer
from l2fast.transfer.protocol_states import FileState
from l2fast.wire.constants import Digest, ErrorCode, Features, FileKind
from l2fast.wire.frames import FileAccept, FileEnd, FileOffer, FileResult
from tests.file_harness import Faults, FileRun, Setup, Source, directory, file, of, tap
from tests.node_harness import Lan


def folder(seed: int) -> list[Source]:
    rng = random.Random(seed)
    return [
        directory("d"),
        file("d/big.bin", rng.randbytes(250_001), chunk_size=1000),
        file("d/small.txt", rng.randbytes(999), chunk_size=1000),
        file("d/empty", b""),
        file("d/new.txt", rng.randbytes(4_000), chunk_size=1000),
    ]


@pytest.mark.parametrize("faults", [Faults(), Faults(loss=0.05, duplicate=0.02, reorder=0.05)])
def test_files_already_there_move_no_data_and_are_reported_present(faults: Faults) -> None:
    sources = folder(1)
    already = {s.entry.path: s.data for s in sources[1:4]}  # big, small, empty arrived before
    run = FileRun(Setup(seed=1, receiver_present=already), faults, sources)
    bodies = tap(run)
    assert run.run()
    out, new = run.out, sources[4]
    assert out is not None
    # Only the new file's chunks went over the wire.
    new_chunks = set(range(out.layout(4).first_chunk, out.layout(4).end))
    assert set(run.sent) == new_chunks
    assert run.placed == {"d/new.txt": new.data}  # nothing written for the others
    sent = {ev.path: ev for ev in of(run.out_events, FileCompleted)}
    assert sent["d/big.bin"].present and sent["d/small.txt"].present
    assert (sent["d/big.bin"].needed_bytes, sent["d/big.bin"].bytes_received) == (0, 0)
    assert sent["d/big.bin"].final_name == "d/big.bin"
    # An empty file holds no chunks: its sender cannot tell (its receiver can, below).
    assert not sent["d/empty"].present and not sent["d/new.txt"].present
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_present, done.files_failed) == (5, 2, 0)
    assert done.bytes_sent == len(new.data)
    got = {ev.path: ev for ev in of(run.in_events, FileReceived)}
    assert {p for p, ev in got.items() if ev.present} == set(already)
    assert all(got[p].bytes_received == 0 and got[p].final_name == p for p in already)
    assert not of(run.in_events, FileRejected)
    (rdone,) = of(run.in_events, TransferDone)
    assert (rdone.files_verified, rdone.files_present, rdone.bytes_sent) == (5, 3, 4_000)
    accepts = of(bodies, FileAccept)
    big = out.layout(1)
    assert (big.first_chunk, big.end) in {r for a in accepts for r in a.have}


@pytest.mark.parametrize("faults", [Faults(), Faults(loss=0.05, reorder=0.05)])
def test_same_size_other_content_is_offered_again_and_received(faults: Faults) -> None:
    rng = random.Random(2)
    same = file("a.bin", rng.randbytes(50_000), chunk_size=1000)
    other = rng.randbytes(50_000)  # same name and size, other bytes
    keep = file("b.txt", rng.randbytes(3_000), chunk_size=1000)
    setup = Setup(seed=2, receiver_present={"a.bin": other, "b.txt": keep.data})
    run = FileRun(setup, faults, [same, keep])
    bodies = tap(run)
    assert run.run()
    out = run.out
    assert out is not None
    # The first offer moved nothing; the second (transfer_id 3, after b.txt) moved it all.
    (again,) = of(run.out_events, FileReoffered)
    assert (again.transfer_id, again.index, again.new_index) == (1, 0, 2)
    layout = out.layout(2)
    assert layout.first_chunk >= out.layout(1).end
    assert set(run.sent) == set(range(layout.first_chunk, layout.end))
    assert out.state(1) is FileState.SUPERSEDED and out.state(3) is FileState.VERIFIED
    assert run.placed == {"a.bin": same.data}  # received (the daemon names it `a.bin (1)`)
    done_files = {ev.transfer_id: ev for ev in of(run.out_events, FileCompleted)}
    assert set(done_files) == {2, 3}
    assert done_files[2].present and not done_files[3].present
    assert done_files[3].needed_bytes == 50_000
    assert not of(run.out_events, FileFailed)
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_failed, done.files_present) == (2, 0, 1)
    last = of(run.out_events, TransferProgress)[-1]
    assert (last.files_done, last.files_total) == (2, 2)  # the pair counts as one file
    # The receiver: `differs` for the first offer, the second received, not as present.
    (differs,) = of(run.in_events, FileRejected)
    assert (differs.transfer_id, differs.code, differs.after_accept) == (1, ErrorCode.DIFFERS, True)
    first = next(b for b in of(bodies, FileResult) if b.transfer_id == 1)
    assert (first.status, first.bytes_received) == (ErrorCode.DIFFERS, 0)
    # Nothing about the file already here goes back: its digest would let a peer that guessed
    # its name and size test guesses of its content offline.
    assert first.digest_value == b""
    got = {ev.transfer_id: ev for ev in of(run.in_events, FileReceived)}
    assert not got[3].present and got[3].bytes_received == 50_000
    assert got[2].present
    assert run.inc is not None and run.inc.differing == {"a.bin"}
    (rdone,) = of(run.in_events, TransferDone)
    assert (rdone.files_verified, rdone.files_failed, rdone.files_present) == (2, 0, 1)


def test_another_size_is_not_present() -> None:
    rng = random.Random(3)
    src = file("a.bin", rng.randbytes(5_000), chunk_size=1000)
    setup = Setup(seed=3, receiver_present={"a.bin": src.data[:4_999]})
    run = FileRun(setup, Faults(), [src])
    assert run.run()
    assert run.placed == {"a.bin": src.data}
    assert len(run.sent) == 5
    assert not of(run.out_events, FileReoffered)
    (done,) = of(run.out_events, FileCompleted)
    assert not done.present


class _StubbornRun(FileRun):
    """A receiver that answers the second offer as present too (a broken peer)."""

    def answer(self, ev: OfferReceived, now: float | None = None) -> None:
        assert self.inc is not None
        self.inc.differing.clear()
        super().answer(ev, now)


def test_a_file_is_offered_again_only_once() -> None:
    rng = random.Random(4)
    src = file("a.bin", rng.randbytes(5_000), chunk_size=1000)
    setup = Setup(seed=4, receiver_present={"a.bin": rng.randbytes(5_000)})
    run = _StubbornRun(setup, Faults(), [src])
    assert run.run()
    assert len(of(run.out_events, FileReoffered)) == 1
    (failed,) = of(run.out_events, FileFailed)
    assert (failed.transfer_id, failed.code) == (2, ErrorCode.DIFFERS)
    assert not run.sent
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_failed) == (0, 1)


def _offer(tid: int, size: int, first: int = 0, kind: FileKind = FileKind.FILE) -> FileOffer:
    return FileOffer(
        transfer_id=tid,
        kind=int(kind),
        digest=int(Digest.SHA256),
        size=size,
        mode=0o644,
        mtime_ns=0,
        first_chunk=first,
        chunk_size=1000 if size else 0,
        path=f"f{tid}",
    )


def test_receiver_core_present_accept_holds_every_chunk_and_checks_the_digest() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=64)
    inc.receive_control(_offer(1, 2_500), 0.0)
    inc.receive_control(_offer(2, 0, first=3, kind=FileKind.DIRECTORY), 0.0)
    assert isinstance(inc.next_event(), OfferReceived)
    with pytest.raises(LocalProtocolError):
        inc.accept(2, 0.0, present=True)  # a directory is never present
    inc.accept(1, 0.0, have=[(0, 1)], present=True)
    (accept,) = inc.control_to_send()
    assert accept == FileAccept(1, ((0, 3),))  # every chunk, whatever `have` said
    assert inc.tracker.cum_ack >= 3
    assert not inc.on_chunks([(0, 3)], 0.0)  # nothing is wanted for it
    inc.file_written(1, b"x" * 32, 0.0)
    inc.receive_control(FileEnd(1, int(Digest.SHA256), b"y" * 32), 0.0)
    (result,) = inc.control_to_send()
    assert isinstance(result, FileResult)
    # Not the digest of the file here (b"x" * 32): nothing to test guesses against offline.
    assert (result.status, result.bytes_received, result.digest_value) == (
        ErrorCode.DIFFERS,
        0,
        b"",
    )
    assert inc.state(1) is FileState.SUPERSEDED and inc.differing == {"f1"}


def test_sender_core_fails_differs_for_a_file_whose_data_was_sent() -> None:
    # `differs` asks again only for a file answered as present; for any other it is a failure.
    run = FileRun(Setup(seed=5), Faults(), [file("a", b"z" * 3_000)])
    run.run(lambda: bool(of(run.out_events, OfferAccepted)))
    out = run.out
    assert out is not None
    out.receive_control(FileResult(1, int(ErrorCode.DIFFERS), 0, b"", "no"), run.lan.now)
    (failed,) = of(list(iter(out.next_event, None)), FileFailed)
    assert failed.code == ErrorCode.DIFFERS
    assert not of(run.out_events, FileReoffered)


@pytest.mark.parametrize(
    ("features_a", "expected"),
    [
        (None, Features.ZLIB | Features.PRESENT | Features.HELD | Features.INLINE),
        (Features.ZLIB, Features.ZLIB),
    ],
)
def test_present_is_offered_by_default_and_only_used_when_both_offer_it(
    features_a: Features | None, expected: Features
) -> None:
    # A peer that does not offer PRESENT (an older one) never gets a file answered as present.
    lan = Lan()
    a = lan.add(config=NodeConfig() if features_a is None else NodeConfig(features=features_a))
    b = lan.add()
    a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened) and lan.has(b, SessionOpened), timeout=1)
    for node in (a, b):
        assert lan.of(node, SessionOpened)[0].params.features == expected
