"""The transfer cores driven by hand: peer garbage is counted, our misuse raises, sizes hold.

The property test feeds any FILE_* frame, in any state either core can be in, and checks that
each one either moves files along the transition table or is counted as a drop; nothing the
peer sends ever raises.
"""

from __future__ import annotations

import hashlib
import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError
from l2fast.node.node import NodeEngine
from l2fast.transfer.events import (
    FileChunksComplete,
    FileCompleted,
    FileFailed,
    OfferAccepted,
    OfferReceived,
)
from l2fast.transfer.protocol import (
    FileEntry,
    FileState,
    IncomingTransfer,
    OutgoingTransfer,
)
from l2fast.transfer.protocol_config import TransferConfig
from l2fast.transfer.protocol_states import TRANSITIONS, FileRole
from l2fast.wire.constants import Digest, ErrorCode, FileKind
from l2fast.wire.frames import (
    Body,
    Feedback,
    FileAccept,
    FileEnd,
    FileOffer,
    FileReject,
    FileResult,
)

ENTRIES = [
    FileEntry("a", FileKind.FILE, 2500, chunk_size=1000),
    FileEntry("empty", FileKind.FILE, 0),
    FileEntry("dir", FileKind.DIRECTORY),
    FileEntry("bench", FileKind.BENCH, 1500, chunk_size=1000),
]


def offer(transfer_id: int, first: int, size: int = 2500, kind: int = 0) -> FileOffer:
    return FileOffer(transfer_id, kind, 1, size, 0o644, 0, first, 1000 if size else 0, "f")


def events(core: OutgoingTransfer | IncomingTransfer) -> list[object]:
    out: list[object] = []
    while (ev := core.next_event()) is not None:
        out.append(ev)
    return out


# --- the receiver ------------------------------------------------------------------------------


def test_declared_size_is_enforced_and_undecided_files_get_no_data() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(1, 0, size=2500), 0.0)  # chunks 0..2
    inc.receive_control(offer(2, 3, size=1000), 0.0)  # chunk 3, left undecided
    inc.accept(1, 0.0)
    fresh = inc.on_chunks([(0, 6)], 0.001)
    assert fresh == [(0, 3)]
    assert inc.chunks_refused == 3  # file 2 undecided, 4 and 5 past every declared size
    polled = inc.poll_feedback(0.002)
    assert polled is not None
    _, fb = polled
    assert fb.cum_ack == 3 and fb.ranges == ()  # nothing refused was acknowledged
    assert [type(ev) for ev in events(inc)][-2:] == [FileChunksComplete, type(inc.progress())]


def test_offers_that_cannot_be_laid_out_are_refused_and_garbage_is_counted() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(1, 0), 0.0)
    inc.receive_control(offer(2, 1), 0.0)  # overlaps file 1
    inc.receive_control(offer(1, 10), 0.0)  # id already used
    inc.receive_control(FileEnd(9, 1, b"x"), 0.0)  # never offered
    inc.receive_control(FileEnd(1, 1, b"x"), 0.0)  # not accepted yet
    inc.receive_control(FileAccept(1), 0.0)  # a sender-bound frame
    assert inc.drops == {
        "bad_offer": 1,
        "duplicate_offer": 1,
        "protocol_violation": 3,
        "unknown_transfer": 1,
        "not_for_receiver": 1,
    }
    (reject,) = inc.control_to_send()
    assert reject == FileReject(2, ErrorCode.BAD_REQUEST, reject.text)
    assert "inside an earlier file" in reject.text
    assert inc.state(1) is FileState.OFFERED and inc.state(2) is FileState.REJECTED


def test_a_gap_between_files_is_not_waited_for() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=4)
    inc.receive_control(offer(1, 10, size=1000), 0.0)
    inc.accept(1, 0.0)
    inc.on_chunks([(10, 11)], 0.0)
    _, fb = inc.poll_feedback(0.0) or (0, None)
    assert fb is not None and fb.cum_ack == 11 and fb.credit == 15


def test_receiver_misuse_raises_our_error() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(1, 0), 0.0)
    with pytest.raises(LocalProtocolError):
        inc.file_written(1, b"d", 0.0)  # not accepted, and no chunk arrived
    inc.accept(1, 0.0, have=[(0, 1)])
    with pytest.raises(LocalProtocolError):
        inc.accept(1, 0.0)  # answered already
    with pytest.raises(LocalProtocolError, match="misses 2 chunks"):
        inc.file_written(1, b"d", 0.0)
    with pytest.raises(LocalProtocolError):
        inc.file_placed(1, "f", 0.0)  # not verified
    with pytest.raises(LocalProtocolError):
        inc.reject(7, 0.0)  # unknown
    with pytest.raises(LocalProtocolError):
        inc.reject(1, 0.0, reason=0)  # not a refusal
    assert (FileAccept(1, ((0, 1),))) in inc.control_to_send()


def test_a_file_failed_mid_way_tells_the_sender_and_stops_holding_the_ack_back() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(1, 0, size=5000), 0.0)
    inc.receive_control(offer(2, 5, size=1000), 0.0)
    inc.accept(1, 0.0)
    inc.accept(2, 0.0)
    inc.on_chunks([(0, 2), (5, 6)], 0.0)
    inc.file_failed(1, ErrorCode.NO_SPACE, "disk full", 0.0)
    results = [b for b in inc.control_to_send() if isinstance(b, FileResult)]
    # The reason travels in final_name: the file was not placed.
    assert results == [FileResult(1, ErrorCode.NO_SPACE, 2000, b"", "disk full")]
    polled = inc.poll_feedback(0.001)
    assert polled is not None and polled[1].cum_ack == 6  # the rest of file 1 is not awaited
    assert inc.state(1) is FileState.FAILED and inc.state(2) is FileState.ACCEPTED


def test_node_refuses_control_frames_for_an_unknown_session() -> None:
    node = NodeEngine(b"\x02\x00\x00\x00\x00\x01", "a", 1500, rng=random.Random(0))
    with pytest.raises(LocalProtocolError, match="no session"):
        node.send_control(b"\x02\x00\x00\x00\x00\x02", 7, FileAccept(1), 0.0)


def test_file_end_before_the_data_is_written_waits_for_it() -> None:
    data = b"z" * 2500
    digest = hashlib.sha256(data).digest()
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(1, 0), 0.0)
    inc.accept(1, 0.0)
    inc.on_chunks([(0, 3)], 0.0)
    inc.receive_control(FileEnd(1, int(Digest.SHA256), digest), 0.0)
    assert inc.state(1) is FileState.ENDED
    inc.file_written(1, digest, 0.0)
    assert inc.state(1) is FileState.PLACING
    inc.file_placed(1, "f (1)", 0.0)
    results = [b for b in inc.control_to_send() if isinstance(b, FileResult)]
    assert results == [FileResult(1, 0, 2500, digest, "f (1)")]


# --- the sender --------------------------------------------------------------------------------


def test_sender_counts_peer_garbage_and_checks_the_verified_digest() -> None:
    out = OutgoingTransfer(ENTRIES, now=0.0)
    offers = out.control_to_send()
    assert [b.transfer_id for b in offers if isinstance(b, FileOffer)] == [1, 2, 3, 4]
    out.receive_control(FileResult(1, 0, 0, b"", ""), 0.0)  # verified before FILE_END
    out.receive_control(FileAccept(99), 0.0)  # never offered
    out.receive_control(FileOffer(1, 0, 1, 0, 0, 0, 0, 0, "x"), 0.0)  # receiver-bound
    out.receive_control(FileAccept(1, ((1, 2), (50, 60))), 0.0)  # 50..59: not this file's
    assert out.drops == {
        "protocol_violation": 2,
        "unknown_transfer": 1,
        "not_for_sender": 1,
        "have_outside_file": 1,
    }
    accepted = [ev for ev in events(out) if isinstance(ev, OfferAccepted)]
    assert accepted[0].have == ((1, 2),) and accepted[0].skipped_bytes == 1000
    out.on_feedback(Feedback(0, 100, 0, 0), 0.0)
    assert out.next_batch(0.0, 10) == [(0, 1), (2, 3)]  # chunk 1 is held
    out.on_feedback(Feedback(3, 100, 3, 0), 0.001)
    out.digest_ready(1, b"D" * 32, 0.001)
    (end,) = out.control_to_send()
    assert end == FileEnd(1, 1, b"D" * 32)
    out.receive_control(FileResult(1, 0, 2000, b"E" * 32, "a"), 0.002)  # not our digest
    (failed,) = [ev for ev in events(out) if isinstance(ev, FileFailed)]
    assert failed.code == ErrorCode.DIGEST_MISMATCH
    assert out.drops["result_digest"] == 1


def test_sender_misuse_raises_our_error() -> None:
    with pytest.raises(LocalProtocolError):
        OutgoingTransfer([FileEntry("a", size=10, first_chunk=5), FileEntry("b", first_chunk=0)],
                         now=0.0)  # fmt: skip
    out = OutgoingTransfer(ENTRIES, now=0.0)
    with pytest.raises(LocalProtocolError):
        out.digest_ready(1, b"d" * 32, 0.0)  # not accepted yet
    out.receive_control(FileAccept(3), 0.0)
    with pytest.raises(LocalProtocolError):
        out.digest_ready(3, b"d" * 32, 0.0)  # a directory has no digest
    out.receive_control(FileAccept(1), 0.0)
    with pytest.raises(LocalProtocolError):
        out.digest_ready(1, b"", 0.0)
    out.digest_ready(1, b"d" * 32, 0.0)
    with pytest.raises(LocalProtocolError):
        out.digest_ready(1, b"d" * 32, 0.0)  # twice


def test_entries_added_later_follow_the_last_and_wait_for_the_offer_limit() -> None:
    # A bench run plans its segments a few at a time (BenchJob._plan_ahead).
    def segment(i: int, first: int | None = None) -> FileEntry:
        return FileEntry(f"bench/{i}", FileKind.BENCH, 3000, chunk_size=1000, first_chunk=first)

    out = OutgoingTransfer([segment(0)], now=0.0, config=TransferConfig(max_offers_outstanding=1))
    (first,) = out.control_to_send()
    assert isinstance(first, FileOffer) and (first.transfer_id, first.first_chunk) == (1, 0)
    assert out.add_entry(segment(1), 0.0) == 1
    assert out.control_to_send() == []  # one offer may be unanswered at a time
    assert out.layout(1).first_chunk == 3
    out.receive_control(FileAccept(1), 0.0)
    (second,) = out.control_to_send()
    assert isinstance(second, FileOffer) and (second.transfer_id, second.first_chunk) == (2, 3)
    with pytest.raises(LocalProtocolError, match="inside the previous file"):
        out.add_entry(segment(2, first=4), 0.0)
    assert out.add_entry(segment(2, first=10), 0.0) == 2  # a gap is allowed, as at the start
    assert not out.finished
    out.cancel(0.0)
    assert out.finished
    with pytest.raises(LocalProtocolError, match="over"):
        out.add_entry(segment(3), 0.0)


def test_a_file_with_every_chunk_held_needs_no_data() -> None:
    out = OutgoingTransfer(ENTRIES[:1], now=0.0)
    out.control_to_send()
    out.receive_control(FileAccept(1, ((0, 3),)), 0.0)
    out.digest_ready(1, b"d" * 32, 0.0)
    assert out.next_batch(0.0, 10) == []
    assert out.control_to_send() == [FileEnd(1, 1, b"d" * 32)]
    out.receive_control(FileResult(1, 0, 0, b"d" * 32, "a"), 0.0)
    (done,) = [ev for ev in events(out) if isinstance(ev, FileCompleted)]
    assert (done.needed_bytes, done.skipped_bytes) == (0, 2500)
    assert out.finished


# --- any FILE_* frame in any state -------------------------------------------------------------

_ids = st.integers(0, 6)
_have = st.lists(st.tuples(st.integers(0, 12), st.integers(1, 4)), max_size=3).map(
    lambda pairs: tuple(sorted({(s, s + n) for s, n in pairs}))
)
peer_bodies = st.one_of(
    st.builds(FileAccept, _ids, _have.filter(lambda r: all(a[1] < b[0] for a, b in pairwise(r)))),
    st.builds(FileReject, _ids, st.sampled_from([3, 8, 9]), st.just("no")),
    st.builds(
        FileResult,
        _ids,
        st.sampled_from([0, 0, 6, 7]),
        st.integers(0, 5000),
        st.sampled_from([b"", b"D" * 32]),
        st.just("f"),
    ),
    st.builds(FileEnd, _ids, st.sampled_from([1, 2]), st.sampled_from([b"", b"D" * 32])),
    st.builds(
        FileOffer,
        _ids,
        st.sampled_from([0, 1, 3]),
        st.just(1),
        st.sampled_from([0, 1500, 2500]),
        st.just(0o644),
        st.just(0),
        st.integers(0, 12),
        st.just(1000),
        st.just("p"),
    ),
)
local_steps = st.sampled_from(
    ["digest", "ack_all", "accept", "reject", "chunks", "written", "placed"]
)
#: A run where everything goes right, for both cores at once (each ignores, and counts, the
#: other's frames); the property test cuts it anywhere and continues at random from there, so
#: the random frames meet files in every state, not only fresh offers.
HAPPY: list[object] = [
    FileOffer(1, 0, 1, 2500, 0o644, 0, 0, 1000, "a"),
    FileOffer(2, 3, 1, 1500, 0o644, 0, 3, 1000, "b"),
    "accept",
    FileAccept(1),
    FileAccept(2),
    FileAccept(3),
    FileReject(4, 3, "no"),
    "ack_all",
    "digest",
    "chunks",
    FileEnd(1, 1, b"D" * 32),
    FileEnd(2, 1, b""),
    "written",
    FileResult(1, 0, 2500, b"D" * 32, "a"),
    FileResult(2, 0, 0, b"", ""),
    "placed",
    FileResult(3, 0, 0, b"", "dir"),
]
steps = st.builds(
    lambda cut, rest: HAPPY[:cut] + rest,
    st.integers(0, len(HAPPY)),
    st.lists(st.one_of(peer_bodies, local_steps), max_size=20),
)


def _states(core: OutgoingTransfer | IncomingTransfer) -> dict[int, FileState]:
    return {t: s for t in range(8) if (s := core.state(t)) is not None}


def _reachable(role: FileRole, start: FileState, end: FileState) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for nxt in TRANSITIONS[role][todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return end in seen


def _feed(
    core: OutgoingTransfer | IncomingTransfer, role: FileRole, body: Body, now: float
) -> None:
    before, drops = _states(core), sum(core.drops.values())
    core.receive_control(body, now)  # must never raise
    after = _states(core)
    changed = {t for t in after if before.get(t) is not after[t]}
    for t in changed:
        if t in before:
            assert _reachable(role, before[t], after[t]), (before[t], after[t], body)
    assert changed or sum(core.drops.values()) > drops, f"{body} neither moved nor counted"


def _local(out: OutgoingTransfer, inc: IncomingTransfer, step: str, now: float) -> None:
    # Our own calls: valid ones act, invalid ones raise our error; never anything else.
    for t in range(1, 7):
        try:
            if step == "digest":
                out.digest_ready(t, b"D" * 32, now)
            elif step == "ack_all":
                out.next_batch(now, 100)
                out.on_feedback(Feedback(1 << 20, 1 << 21, 1 << 20, 0), now)
            elif step == "accept":
                inc.accept(t, now, have=[(0, 1)])
            elif step == "reject":
                inc.reject(t, now)
            elif step == "chunks":
                inc.on_chunks([(0, 20)], now)
            elif step == "written":
                inc.file_written(t, b"D" * 32, now)
            elif step == "placed":
                inc.file_placed(t, "f", now)
        except LocalProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_any_file_frame_in_any_state_moves_validly_or_is_counted(steps: list[object]) -> None:
    out = OutgoingTransfer(ENTRIES, now=0.0)
    inc = IncomingTransfer(now=0.0, buffer_chunks=64)
    now = 0.0
    for step in steps:
        now += 0.001
        if isinstance(step, str):
            _local(out, inc, step, now)
        else:
            assert isinstance(step, FileAccept | FileReject | FileResult | FileEnd | FileOffer)
            _feed(out, FileRole.SENDER, step, now)
            _feed(inc, FileRole.RECEIVER, step, now)
        events(out)
        for ev in events(inc):
            assert not isinstance(ev, OfferReceived) or ev.chunks >= 0
        out.control_to_send()
        inc.control_to_send()


@pytest.mark.parametrize("seconds", [0.0, 120.0])
def test_a_bench_request_waits_for_its_run_before_the_result_times_out(seconds: float) -> None:
    """A zero-size bench offer is answered when the run it asks for ends: its FILE_RESULT is
    awaited `mtime_ns` longer than a file's (a 120 s `bench -R` must not fail at 60 s)."""
    request = FileEntry("bench/reverse", FileKind.BENCH, 0, mtime_ns=int(seconds * 1e9))
    out = OutgoingTransfer([request], now=0.0)
    out.control_to_send()
    out.receive_control(FileAccept(1), 0.0)
    out.control_to_send()  # its FILE_END
    limit = out.config.result_timeout + seconds
    out.handle_timer(limit - 1.0)
    assert not [ev for ev in events(out) if isinstance(ev, FileFailed)]
    out.handle_timer(limit + 1.0)
    (failed,) = [ev for ev in events(out) if isinstance(ev, FileFailed)]
    assert failed.code == ErrorCode.TIMEOUT and f"within {limit:.0f} s" in failed.error.message


def test_offer_ids_must_ascend_and_ended_files_keep_only_their_state() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=100)
    inc.receive_control(offer(5, 0), 0.0)
    inc.receive_control(offer(3, 10), 0.0)  # below an earlier id: a repeat, or out of order
    assert inc.drops["duplicate_offer"] == 1 and inc.state(3) is None
    inc.reject(5, 0.0)
    assert inc.state(5) is FileState.REJECTED  # ended: its state is still told
    inc.receive_control(FileEnd(5, 1, b"x"), 0.0)  # for a file that ended here first
    assert inc.drops["protocol_violation"] == 2 and not inc.drops["unknown_transfer"]
    inc.file_failed(5, ErrorCode.IO_ERROR, "late", 0.0)  # ended already: nothing happens
    with pytest.raises(LocalProtocolError, match="has ended already"):
        inc.accept(5, 0.0)
    assert inc.progress().files_total == 1


def test_a_session_of_many_refused_offers_holds_no_record_of_each() -> None:
    # A peer offering as fast as it can, each offer refused at once (--accept none), grew the
    # receiver by ~1.3 kB per offer for as long as the session lasted: 100,000 offers of long
    # names took a daemon from 28 to 174 MB. Ended files are now folded into totals.
    import tracemalloc

    from l2fast.transfer.protocol_incoming import RECENT_ENDED

    inc = IncomingTransfer(now=0.0, buffer_chunks=1 << 16, mtu=9000)
    path = "/".join(["d" * 200] * 4)

    def offer_and_refuse(tid: int) -> None:
        body = FileOffer(tid, 0, 1, 100, 0o644, 0, tid, 1000, f"{path}/{tid:012d}")
        inc.receive_control(body, 0.0)
        events(inc)
        inc.reject(tid, 0.0)
        inc.control_to_send()

    tracemalloc.start()
    try:
        for tid in range(1, RECENT_ENDED + 1):  # fills the memory of recently ended files
            offer_and_refuse(tid)
        before = tracemalloc.get_traced_memory()[0]
        for tid in range(RECENT_ENDED + 1, RECENT_ENDED + 20_001):
            offer_and_refuse(tid)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # ~26 MB before; what remains is the bounded memory of recently ended files, resized.
    assert grown < 2_000_000, f"{grown} bytes kept for 20,000 refused offers"
    assert inc.state(1) is None and inc.state(RECENT_ENDED + 20_000) is FileState.REJECTED
    assert inc.progress().files_total == RECENT_ENDED + 20_000


def test_totals_of_a_long_session_count_every_verified_file() -> None:
    inc = IncomingTransfer(now=0.0, buffer_chunks=1 << 16)
    n = 300  # more than one batch of `_ordered` compaction
    for tid in range(1, n + 1):
        inc.receive_control(offer(tid, (tid - 1) * 3), 0.0)
        inc.accept(tid, 0.0)
    for tid in range(1, n + 1):
        first = (tid - 1) * 3
        inc.on_chunks([(first, first + 3)], 0.0)
        digest = hashlib.sha256(b"%d" % tid).digest()
        inc.file_written(tid, digest, 0.0)
        inc.receive_control(FileEnd(tid, 1, digest), 0.0)
        inc.file_placed(tid, f"f{tid}", 0.0)
    inc.session_ended(0.0)
    done = events(inc)[-1]
    assert type(done).__name__ == "TransferDone"
    assert (done.files_verified, done.bytes_sent) == (n, n * 2500)
    assert not inc.drops
