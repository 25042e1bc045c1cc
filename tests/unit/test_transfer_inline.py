"""Small files offered with their bytes (FILE_INLINE, PROTOCOL.md §FILE_INLINE), in memory.

A file that fits one control frame with its offer costs one frame each way: the offer with
its data and digest, and the FILE_RESULT. No FILE_ACCEPT, DATA, FEEDBACK or FILE_END for it,
whatever the link loses, duplicates or reorders; a receiver may still answer such an offer the
usual way, and everything else about a file (present, refused, a digest that differs, a write
that fails) keeps working.
"""

from __future__ import annotations

import random

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.transfer.events import (
    FileCompleted,
    FileFailed,
    FileReceived,
    FileRejected,
    OfferAccepted,
    OfferReceived,
    OfferRejected,
    TransferDone,
)
from l2fast.transfer.protocol import IncomingTransfer, OutgoingTransfer
from l2fast.transfer.protocol_outgoing import inline_fits
from l2fast.transfer.protocol_space import FileEntry
from l2fast.transfer.protocol_states import FileState
from l2fast.wire.constants import Digest, ErrorCode, Features, FileKind, max_payload
from l2fast.wire.frames import (
    Data,
    FileAccept,
    FileEnd,
    FileInline,
    FileOffer,
    FileResult,
)
from tests.file_harness import Faults, FileRun, Setup, Source, digest_of, directory, file, of, tap

MTU = 9000
ALL = Features.ZLIB | Features.PRESENT | Features.HELD | Features.INLINE
FAULTS = [
    Faults(),
    Faults(loss=0.05, duplicate=0.03, reorder=0.05),
    Faults(loss=0.2, duplicate=0.1, reorder=0.1, corrupt=0.02),
]


def small_folder(seed: int, n: int = 40) -> list[Source]:
    rng = random.Random(seed)
    out = [directory("t")]
    out += [file(f"t/s{i:02d}", rng.randbytes(rng.randrange(0, 4000)), 1000) for i in range(n)]
    return out


def test_a_file_fits_when_the_offer_with_its_bytes_fits_the_frame() -> None:
    room = max_payload(MTU)
    # 38 fixed bytes, the path's u16 length, the digest's u8 length and 32 digest bytes.
    largest = room - (38 + 2 + 1 + 32 + len("a/b"))
    assert inline_fits("a/b", largest, room)
    assert not inline_fits("a/b", largest + 1, room)
    assert not inline_fits("a/é", largest, room)  # the path's UTF-8 bytes count
    offer = FileOffer(1, 0, 1, largest, 0o644, 0, 0, room, "a/b")
    encoded = FileInline.carrying(offer, bytes(32), bytes(largest))
    from l2fast.wire.frames import encode_payload

    assert len(encode_payload(encoded)) == room


@pytest.mark.parametrize("faults", FAULTS, ids=["clean", "lossy", "hostile"])
def test_small_files_cost_one_frame_each_way(faults: Faults) -> None:
    sources = small_folder(1)
    big = file("t/big.bin", random.Random(2).randbytes(50_000), 1000)  # too big for a frame
    run = FileRun(Setup(seed=1, mtu=MTU, inline=True), faults, [*sources, big])
    bodies = tap(run)
    assert run.run()
    assert run.placed == run.source_by_path()
    out = run.out
    assert out is not None and out.inline_offered == out.inline_taken == 40
    # The only DATA on the wire is the big file's; the small ones came in their offers.
    big_layout = out.layout(41)
    assert set(run.sent) == set(range(big_layout.first_chunk, big_layout.end))
    inline_ids = {b.transfer_id for b in bodies if isinstance(b, FileInline)}
    assert inline_ids == set(range(2, 42))
    for body in bodies:
        if isinstance(body, FileAccept | FileEnd):
            assert body.transfer_id not in inline_ids, body
    # Each answer is the verified result, with the digest the offer carried.
    results = {b.transfer_id: b for b in bodies if isinstance(b, FileResult)}
    for b in bodies:
        if isinstance(b, FileInline):
            assert (results[b.transfer_id].status, results[b.transfer_id].digest_value) == (
                0,
                b.digest_value,
            )
    (done,) = of(run.out_events, TransferDone)
    total = sum(len(s.data) for s in sources[1:]) + len(big.data)
    assert (done.files_verified, done.files_failed, done.bytes_sent) == (42, 0, total)
    completed = of(run.out_events, FileCompleted)
    assert len(completed) == 42 and not any(ev.present for ev in completed)
    # The sender's digests were all computed for the offers: none was asked for afterwards
    # except the big file's.
    assert [ev.transfer_id for ev in of(run.out_events, OfferAccepted) if ev.needs_digest] == [42]
    (rdone,) = of(run.in_events, TransferDone)
    assert (rdone.files_verified, rdone.bytes_sent) == (42, total)
    assert out.state(2) is FileState.VERIFIED and run.inc is not None
    assert run.inc.state(2) is FileState.VERIFIED
    assert not run.inc.drops and not out.drops


def test_without_the_feature_files_go_the_usual_way() -> None:
    sources = small_folder(3, n=5)
    setup = Setup(seed=3, mtu=MTU, inline=True, receiver_features=ALL & ~Features.INLINE)
    run = FileRun(setup, Faults(), sources)
    bodies = tap(run)
    assert run.run()
    assert run.placed == run.source_by_path()
    assert run.inline_reads == 0  # not even read for it
    assert not [b for b in bodies if isinstance(b, FileInline)]
    assert run.out is not None and run.out.inline_offered == 0
    nonempty = sum(1 for s in sources[1:] if s.data)
    assert len({b.transfer_id for b in bodies if isinstance(b, FileEnd)}) == 5
    assert len({c for c in run.sent}) >= nonempty


def test_a_held_inline_offer_is_answered_the_usual_way() -> None:
    # --accept ask: the bytes are not kept while a person decides; accepting later asks for
    # the data as DATA, and FILE_END carries the digest the sender computed for the offer.
    src = file("note.txt", b"hello, held world" * 10, 1000)
    run = FileRun(Setup(seed=4, mtu=MTU, inline=True, policy="ask"), Faults(), [src])
    bodies = tap(run)
    assert run.run(until=lambda: bool(run.inbox))
    inc = run.inc
    assert inc is not None
    (offer,) = run.inbox
    assert inc.inline_offer(offer.transfer_id) is None  # let go of on hold
    run.answer(offer)
    assert run.run()
    assert run.placed == {"note.txt": src.data}
    assert len(run.sent) == 1  # one chunk of DATA
    (end,) = of(bodies, FileEnd)
    assert end.digest_value == digest_of(Digest.SHA256, src.data)
    (done,) = of(run.out_events, FileCompleted)
    assert done.verified and done.needed_bytes == len(src.data)


def test_the_same_file_already_there_is_present_and_another_lands_beside_it() -> None:
    rng = random.Random(5)
    same, other = file("a.txt", rng.randbytes(900)), file("b.txt", rng.randbytes(900))
    here = {"a.txt": same.data, "b.txt": rng.randbytes(900)}
    run = FileRun(
        Setup(seed=5, mtu=MTU, inline=True, receiver_present=here), Faults(), [same, other]
    )
    assert run.run()
    assert run.placed == {"b.txt": other.data}  # a.txt: nothing written
    got = {ev.path: ev for ev in of(run.out_events, FileCompleted)}
    assert got["a.txt"].present and got["a.txt"].bytes_received == 0
    assert not got["b.txt"].present and got["b.txt"].bytes_received == 900
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_present, done.bytes_sent) == (2, 1, 900)
    received = {ev.path: ev for ev in of(run.in_events, FileReceived)}
    assert received["a.txt"].present and not received["b.txt"].present


def test_a_digest_that_differs_fails_the_file_on_both_ends() -> None:
    good, bad = file("good", b"g" * 100), file("bad", b"b" * 100)
    run = FileRun(
        Setup(seed=6, mtu=MTU, inline=True, wrong_digest=frozenset({"bad"})),
        Faults(),
        [good, bad],
    )
    assert run.run()
    assert run.placed == {"good": good.data}
    (failed,) = of(run.out_events, FileFailed)
    assert (failed.path, failed.code) == ("bad", ErrorCode.DIGEST_MISMATCH)
    assert run.out is not None and run.out.state(2) is FileState.FAILED
    (rejected,) = of(run.in_events, FileRejected)
    assert (rejected.path, rejected.code) == ("bad", ErrorCode.DIGEST_MISMATCH)
    (done,) = of(run.out_events, TransferDone)
    assert (done.files_verified, done.files_failed) == (1, 1)


def test_a_write_that_fails_refuses_the_offer() -> None:
    src = file("x", b"x" * 10)
    setup = Setup(seed=7, mtu=MTU, inline=True, fail_write=frozenset({"x"}))
    run = FileRun(setup, Faults(), [src])
    assert run.run()
    (rejected,) = of(run.out_events, OfferRejected)
    assert rejected.reason == ErrorCode.IO_ERROR and run.placed == {}


# --- the cores, frame by frame ----------------------------------------------------------------


def _incoming(features: Features = ALL) -> IncomingTransfer:
    return IncomingTransfer(now=0.0, buffer_chunks=64, mtu=MTU, features=features)


def _inline(tid: int = 1, data: bytes = b"abc", first: int = 0) -> FileInline:
    offer = FileOffer(tid, 0, 1, len(data), 0o644, 0, first, 1000 if data else 0, f"f{tid}")
    return FileInline.carrying(offer, digest_of(Digest.SHA256, data), data)


def test_a_receiver_without_the_feature_takes_it_as_a_plain_offer() -> None:
    inc = _incoming(ALL & ~Features.INLINE)
    inc.receive_control(_inline(), 0.0)
    ev = inc.next_event()
    assert isinstance(ev, OfferReceived) and ev.size == 3
    assert inc.inline_offer(1) is None
    with pytest.raises(LocalProtocolError):
        inc.inline_written(1, digest_of(Digest.SHA256, b"abc"), 0.0)
    inc.accept(1, 0.0)
    assert [type(b) for b in inc.control_to_send()] == [FileAccept]


def test_the_receiver_keeps_no_bytes_once_answered() -> None:
    inc = _incoming()
    for tid in (1, 2, 3):
        inc.receive_control(_inline(tid, bytes([tid]) * 50, first=tid * 10), 0.0)
    assert all(inc.inline_offer(t) is not None for t in (1, 2, 3))
    inc.inline_written(1, digest_of(Digest.SHA256, bytes([1]) * 50), 0.0)
    inc.reject(2, 0.0)
    inc.accept(3, 0.0)
    assert [inc.inline_offer(t) for t in (1, 2, 3)] == [None, None, None]
    with pytest.raises(LocalProtocolError):  # taken once only
        inc.inline_written(1, digest_of(Digest.SHA256, bytes([1]) * 50), 0.0)
    # The written one's chunks count as received: the cumulative ack passes it.
    assert inc.tracker.cum_ack >= 11


def test_present_must_be_the_same_file() -> None:
    inc = _incoming()
    inc.receive_control(_inline(), 0.0)
    with pytest.raises(LocalProtocolError):
        inc.inline_written(1, bytes(32), 0.0, present=True)
    assert inc.state(1) is FileState.OFFERED


def _outgoing(data: bytes = b"abc", features: Features = ALL) -> OutgoingTransfer:
    entry = FileEntry("f", FileKind.FILE, len(data), chunk_size=1000)
    return OutgoingTransfer(
        [entry],
        now=0.0,
        features=features,
        inline=lambda i: (data, digest_of(Digest.SHA256, data)),
        control_payload=max_payload(MTU),
    )


def test_a_verified_result_is_taken_for_an_inline_offer_only() -> None:
    out = _outgoing(features=ALL & ~Features.INLINE)
    (offer,) = out.control_to_send()
    assert type(offer) is FileOffer
    good = digest_of(Digest.SHA256, b"abc")
    out.receive_control(FileResult(1, 0, 3, good, "f"), 0.0)  # no FILE_END yet: not allowed
    assert out.drops["protocol_violation"] == 1 and out.state(1) is FileState.OFFERED


def test_a_result_with_another_digest_fails_the_inline_file() -> None:
    out = _outgoing()
    (offer,) = out.control_to_send()
    assert isinstance(offer, FileInline)
    out.receive_control(FileResult(1, 0, 3, bytes(32), "f"), 0.0)
    assert out.state(1) is FileState.FAILED and out.drops["result_digest"] == 1
    events = []
    while (ev := out.next_event()) is not None:
        events.append(ev)
    (failed,) = of(events, FileFailed)
    assert failed.code == ErrorCode.DIGEST_MISMATCH


def test_a_reader_that_cannot_read_leaves_the_usual_offer() -> None:
    entry = FileEntry("f", FileKind.FILE, 3, chunk_size=1000)
    for got in (None, (b"ab", bytes(32)), (b"abc", bytes(5))):  # unreadable, shrunk, bad digest
        out = OutgoingTransfer(
            [entry],
            now=0.0,
            features=ALL,
            inline=lambda i, got=got: got,  # type: ignore[misc]
            control_payload=max_payload(MTU),
        )
        (offer,) = out.control_to_send()
        assert type(offer) is FileOffer, got


def test_data_for_an_inline_file_taken_from_its_offer_is_refused() -> None:
    inc = _incoming()
    inc.receive_control(_inline(data=b"x" * 2500), 0.0)  # chunks 0..2
    inc.inline_written(1, digest_of(Digest.SHA256, b"x" * 2500), 0.0)
    assert inc.on_chunks([(0, 3)], 0.0) == []
    assert inc.chunks_refused == 3
    assert not any(isinstance(b, Data) for b in inc.control_to_send())
