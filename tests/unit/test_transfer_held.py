"""Offers held for a person at the receiver (PROTOCOL.md §FILE_HELD), in memory.

A receiver that asks a person about each offer (`--accept ask`) tells the sender so with
FILE_HELD, when both ends offered feature HELD: the sender reports `OfferHeld` once and keeps
waiting; the later FILE_ACCEPT or FILE_REJECT ends the wait as before. Without HELD on either
side nothing of this is sent.
"""

from __future__ import annotations

import random

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.transfer.events import (
    FileCompleted,
    OfferHeld,
    OfferReceived,
    OfferRejected,
    TransferDone,
    TransferFailed,
)
from l2fast.transfer.protocol import FileEntry, IncomingTransfer, OutgoingTransfer
from l2fast.transfer.protocol_states import FileState
from l2fast.wire.constants import Digest, ErrorCode, Features, FileKind
from l2fast.wire.frames import Feedback, FileAccept, FileHeld, FileOffer, FileReject
from tests.file_harness import Faults, FileRun, Setup, file, of, tap

LOSSY = Faults(loss=0.1, duplicate=0.1, reorder=0.1)


@pytest.mark.parametrize("faults", [Faults(), LOSSY], ids=["clean", "lossy"])
def test_held_offer_is_reported_once_then_completes_after_a_later_accept(faults: Faults) -> None:
    data = random.Random(1).randbytes(20_000)
    run = FileRun(Setup(seed=1, policy="ask"), faults, [file("report.pdf", data)])
    bodies = tap(run)
    assert run.run(until=lambda: bool(of(run.out_events, OfferHeld)))
    out = run.out
    assert out is not None
    # A person takes their time: longer than the data window's stall timeout, which must not
    # count the wait for the decision as a receiver that stopped answering.
    assert run.setup.config.tx.stall_timeout < 8.0
    run.run(until=lambda: run.lan.now > 8.0)
    (held,) = of(run.out_events, OfferHeld)
    assert (held.transfer_id, held.index, held.path) == (1, 0, "report.pdf")
    assert (held.pending_id, held.text) == (1, "l2fast accept 1")
    assert out.held() == [held]
    assert out.state(1) is FileState.OFFERED and not run.sent and not out.finished
    (offer,) = run.inbox
    run.answer(offer)
    assert run.run()
    assert run.placed == {"report.pdf": data}
    assert len(of(run.out_events, FileCompleted)) == 1
    (done,) = of(run.out_events, TransferDone)
    assert done.files_verified == 1
    # Delivered once whatever the link did (the control stream repairs loss, drops repeats),
    # and nothing about it counted as a violation.
    assert len(of(run.out_events, OfferHeld)) == 1
    assert out.held() == [] and not out.drops
    wire = of(bodies, FileHeld)
    assert wire and {b.transfer_id for b in wire} == {1}
    # FILE_HELD went out before the FILE_ACCEPT of the same offer.
    kinds = [type(b) for b in bodies if isinstance(b, FileHeld | FileAccept)]
    assert kinds.index(FileHeld) < kinds.index(FileAccept)


def test_a_reject_after_held_ends_the_file_with_the_receivers_reason() -> None:
    run = FileRun(Setup(seed=2, policy="ask"), LOSSY, [file("a.bin", b"x" * 5_000)])
    assert run.run(until=lambda: bool(of(run.out_events, OfferHeld)))
    assert run.inc is not None and run.out is not None
    (offer,) = run.inbox
    run.inc.reject(offer.transfer_id, run.lan.now, ErrorCode.REFUSED, "refused by the user")
    assert run.run()
    (rejected,) = of(run.out_events, OfferRejected)
    assert (rejected.reason, rejected.text) == (ErrorCode.REFUSED, "refused by the user")
    assert run.out.held() == [] and not run.out.drops


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [
        (Features.ZLIB | Features.PRESENT, None),  # an older sender
        (None, Features.ZLIB | Features.PRESENT),  # an older receiver
    ],
    ids=["sender_without", "receiver_without"],
)
def test_no_file_held_unless_both_ends_offer_held(
    sender: Features | None, receiver: Features | None
) -> None:
    data = random.Random(3).randbytes(8_000)
    setup = Setup(seed=3, policy="ask", sender_features=sender, receiver_features=receiver)
    run = FileRun(setup, Faults(), [file("a.bin", data)])
    bodies = tap(run)
    assert run.run(until=lambda: len(run.inbox) == 1)
    run.run(until=lambda: run.lan.now > 1.0)
    assert run.out is not None and run.inc is not None
    assert not run.out.features & Features.HELD and not run.inc.features & Features.HELD
    assert not of(bodies, FileHeld) and not of(run.out_events, OfferHeld)
    run.answer(run.inbox[0])
    assert run.run()
    assert run.placed == {"a.bin": data}
    assert not of(bodies, FileHeld) and run.out.held() == []


def _entry(path: str = "a", size: int = 3_000) -> FileEntry:
    return FileEntry(path, FileKind.FILE, size, chunk_size=1000)


def test_sender_counts_file_held_for_unknown_or_answered_offers_as_violations() -> None:
    out = OutgoingTransfer([_entry("a"), _entry("b")], now=0.0, features=Features.HELD)
    assert len(out.control_to_send()) == 2  # both offers
    out.receive_control(FileHeld(9, 1, "who?"), 0.0)  # never offered
    assert out.drops["unknown_transfer"] == 1 and out.drops["protocol_violation"] == 1
    out.receive_control(FileHeld(1, 4, "l2fast accept 4"), 0.0)
    (held,) = list(iter(out.next_event, None))
    assert held == OfferHeld(1, 0, "a", 4, "l2fast accept 4")
    out.receive_control(FileHeld(1, 4, "again"), 0.0)  # at most once per offer
    assert out.drops["held_twice"] == 1
    out.receive_control(FileAccept(1, ()), 0.0)
    out.receive_control(FileReject(2, int(ErrorCode.REFUSED), "no"), 0.0)
    assert out.held() == []
    before = list(iter(out.next_event, None))
    out.receive_control(FileHeld(1, 5, "late"), 0.0)  # after FILE_ACCEPT
    out.receive_control(FileHeld(2, 6, "late"), 0.0)  # after FILE_REJECT
    assert out.drops["held_after_answer"] == 2
    assert out.drops["protocol_violation"] == 4
    # Nothing changed: no event, the states stay, the held list stays empty.
    assert out.next_event() is None and out.held() == []
    assert out.state(1) is FileState.ACCEPTED and out.state(2) is FileState.REJECTED
    assert not of(before, OfferHeld)


def test_an_accept_long_after_the_offer_is_not_a_stall() -> None:
    # The daemon's order: FILE_ACCEPT is taken and the timers run before the receiver's first
    # FEEDBACK (its credit) arrives. The data window had nothing to wait for while a person
    # decided, so its stall clock starts at the accept, not at the offer.
    out = OutgoingTransfer([_entry()], now=0.0, features=Features.HELD)
    out.control_to_send()
    out.receive_control(FileHeld(1, 1, "l2fast accept 1"), 0.001)
    later = 10 * out.config.tx.stall_timeout
    out.receive_control(FileAccept(1, ()), later)
    timer = out.next_timer()
    assert timer is not None and timer > later  # the stall timeout runs from the accept
    out.handle_timer(later)
    assert not out.finished
    out.on_feedback(Feedback(0, 3, 0, 0), later + 0.001, 1)
    assert out.next_batch(later + 0.001, 16) == [(0, 3)]
    assert not of(list(iter(out.next_event, None)), TransferFailed)


def test_sender_without_held_counts_file_held_as_a_violation() -> None:
    out = OutgoingTransfer([_entry()], now=0.0, features=Features.ZLIB | Features.PRESENT)
    out.control_to_send()
    out.receive_control(FileHeld(1, 1, "x"), 0.0)
    assert out.drops["held_not_negotiated"] == 1 and out.drops["protocol_violation"] == 1
    assert out.next_event() is None and out.held() == []
    assert out.state(1) is FileState.OFFERED


def _offer(tid: int) -> FileOffer:
    return FileOffer(tid, int(FileKind.FILE), int(Digest.SHA256), 2_000, 0o644, 0, 0, 1000, "f")


def test_receiver_core_hold_sends_file_held_once_and_only_before_the_answer() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=64, features=Features.HELD)
    inc.receive_control(_offer(1), 0.0)
    assert isinstance(inc.next_event(), OfferReceived)
    with pytest.raises(LocalProtocolError):
        inc.hold(2, 0.0, 1, "never offered")
    with pytest.raises(LocalProtocolError):
        inc.hold(1, 0.0, 1 << 32, "pending id beyond u32")
    assert inc.hold(1, 0.0, 7, "t" * 600)
    assert not inc.hold(1, 0.0, 7, "again")  # at most once per offer
    assert inc.state(1) is FileState.OFFERED  # still undecided
    inc.accept(1, 0.0)
    held, accept = inc.control_to_send()
    assert held == FileHeld(1, 7, "t" * 512)  # the note is cut to the 512-byte cap
    assert isinstance(accept, FileAccept)
    with pytest.raises(LocalProtocolError):
        inc.hold(1, 0.0, 7, "after the answer")


def test_receiver_core_without_held_sends_nothing() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=64, features=Features.ZLIB | Features.PRESENT)
    inc.receive_control(_offer(1), 0.0)
    assert not inc.hold(1, 0.0, 1, "l2fast accept 1")
    assert inc.control_to_send() == []
    inc.reject(1, 0.0)
    assert [type(b) for b in inc.control_to_send()] == [FileReject]
