"""What a receiving daemon does with FILE_INLINE (PROTOCOL.md §FILE_INLINE), in memory.

The offer carries the file's bytes and digest: with `--accept all` the daemon writes them
itself (no receive process), places the file as any small file (never visible before it is
verified, never over another file) and answers FILE_RESULT at once. A file with the same
bytes already there is reported present and left alone; another file of that name is kept
and the new one lands beside it. Bytes whose digest is not the offer's are never placed.
Held for a person, or refused, the offer is answered as any offer.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from l2fast.daemon import transfers as transfers_module
from l2fast.node.events import ControlReceived, Event, SessionOpened
from l2fast.transfer.incoming import IncomingFile
from l2fast.transfer.protocol_incoming import IncomingTransfer
from l2fast.wire.constants import Digest, ErrorCode, FileKind
from l2fast.wire.frames import decode_frame
from l2fast.wire.frames_transfer import (
    FileAccept,
    FileHeld,
    FileInline,
    FileOffer,
    FileReject,
    FileResult,
)
from tests.fake_wire import FakeHub
from tests.service_harness import Nodes, make_runner, pump

MakeNodes = Callable[[str], Nodes]


def inline(tid: int, path: str, data: bytes, digest: bytes | None = None) -> FileInline:
    first = 10 * tid  # each offer's chunks after the one before
    offer = FileOffer(
        tid, int(FileKind.FILE), int(Digest.SHA256), len(data), 0o640, 10**18, first, 1400, path
    )
    return FileInline.carrying(offer, digest or hashlib.sha256(data).digest(), data)


def answered(nodes: Nodes, n: int) -> None:
    kinds = (FileAccept, FileReject, FileHeld, FileResult)
    assert pump([nodes.a, nodes.b], lambda: sum(isinstance(b, kinds) for b in nodes.answers) >= n)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_an_inline_file_is_placed_and_answered_with_its_result(
    make_nodes: MakeNodes, tmp_path: Path
) -> None:
    nodes = make_nodes("all")
    sid = nodes.open()
    data = os.urandom(1000)
    nodes.send(sid, inline(1, "notes.txt", data), inline(2, "empty", b""))
    answered(nodes, 2)
    assert not nodes.answers_of(FileAccept)  # answered by the result alone
    results = {r.transfer_id: r for r in nodes.answers_of(FileResult)}
    one = results[1]
    assert (one.status, one.bytes_received, one.final_name) == (0, 1000, "notes.txt")
    assert one.digest_value == hashlib.sha256(data).digest()
    assert (results[2].status, results[2].final_name) == (0, "empty")
    assert (tmp_path / "notes.txt").read_bytes() == data
    assert (tmp_path / "empty").read_bytes() == b""
    st = (tmp_path / "notes.txt").stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 10**18)
    assert listing(tmp_path) == ["empty", "notes.txt"]  # no part file, no sidecar
    history = nodes.status()["received"]
    assert [h["path"] for h in history] == ["notes.txt", "empty"]  # type: ignore[index]
    assert not nodes.service.transfers.incoming[sid].files  # nothing kept open


def test_the_same_file_is_present_and_another_lands_beside_it(
    make_nodes: MakeNodes, tmp_path: Path
) -> None:
    same, other = os.urandom(500), os.urandom(500)
    (tmp_path / "same.bin").write_bytes(same)
    (tmp_path / "other.bin").write_bytes(os.urandom(500))  # same size, other bytes
    before = (tmp_path / "same.bin").stat()
    nodes = make_nodes("all")
    sid = nodes.open()
    nodes.send(sid, inline(1, "same.bin", same), inline(2, "other.bin", other))
    answered(nodes, 2)
    results = {r.transfer_id: r for r in nodes.answers_of(FileResult)}
    assert len(results) == 2, nodes.answers
    assert (results[1].status, results[1].bytes_received, results[1].final_name) == (
        0,
        0,
        "same.bin",
    )
    assert (results[2].status, results[2].bytes_received) == (0, 500)
    assert results[2].final_name == "other (1).bin"
    assert (tmp_path / "other (1).bin").read_bytes() == other
    after = (tmp_path / "same.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert listing(tmp_path) == ["other (1).bin", "other.bin", "same.bin"]


def test_bytes_that_do_not_match_the_digest_are_never_placed(
    make_nodes: MakeNodes, tmp_path: Path
) -> None:
    nodes = make_nodes("all")
    sid = nodes.open()
    nodes.send(sid, inline(1, "lie.txt", b"what was sent", digest=bytes(32)))
    answered(nodes, 1)
    (result,) = nodes.answers_of(FileResult)
    assert result.status == ErrorCode.DIGEST_MISMATCH
    assert "differs" in result.final_name
    assert listing(tmp_path) == []


def test_a_held_offer_is_answered_the_usual_way(make_nodes: MakeNodes, tmp_path: Path) -> None:
    ask = make_nodes("ask")
    sid = ask.open()
    ask.send(sid, inline(1, "wait.txt", b"later"))
    answered(ask, 1)
    (held,) = ask.answers_of(FileHeld)
    pending = ask.service.transfers.pending
    (pid,) = pending
    assert ask.service.transfers.incoming[sid].incoming.inline_offer(1) is None  # not kept
    ask.service.transfers.decide(pid, True)
    answered(ask, 2)
    (accepted,) = ask.answers_of(FileAccept)  # the data comes as DATA now
    assert (held.transfer_id, accepted.transfer_id) == (1, 1)
    # Nothing is placed from the bytes it dropped: no result before the accept, and no
    # success after it (here no DATA can come: the fake wire has no interface for the
    # receive process, so the file fails once the accept is out).
    results = ask.answers_of(FileResult)
    assert all(ask.answers.index(r) > ask.answers.index(accepted) for r in results)
    assert all(r.status != 0 for r in results)


@pytest.mark.parametrize(
    ("accept", "path", "reason", "says"),
    [
        ("none", "x.txt", ErrorCode.REFUSED, "--accept none"),  # a daemon that takes nothing
        ("all", "x.part", ErrorCode.BAD_NAME, "reserved"),  # a name it cannot receive
    ],
)
def test_a_refused_inline_offer_is_refused_as_an_offer(
    make_nodes: MakeNodes, tmp_path: Path, accept: str, path: str, reason: int, says: str
) -> None:
    nodes = make_nodes(accept)
    sid = nodes.open()
    nodes.send(sid, inline(1, path, b"x"))
    answered(nodes, 1)
    (reject,) = nodes.answers_of(FileReject)
    assert reject.reason == reason and says in reject.text, reject
    assert listing(tmp_path) == []


def test_files_verified_together_are_placed_together_and_answered_after(
    make_nodes: MakeNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offers of one batch of frames are placed in one `place_files` call (one
    durability barrier), and no FILE_RESULT leaves before it: a result still means placed."""
    nodes = make_nodes("all")
    sid = nodes.open()
    batches: list[tuple[int, int]] = []  # (files placed, FILE_RESULTs sent before)
    real = transfers_module.place_files

    def spy(batch: list[tuple[IncomingFile, bytes, bytes]]) -> list[object]:
        sent = [decode_frame(raw).body for raw in nodes.b.sock.sent]
        batches.append((len(batch), sum(isinstance(body, FileResult) for body in sent)))
        return real(batch)  # type: ignore[return-value]

    monkeypatch.setattr(transfers_module, "place_files", spy)
    payloads = {f"f{i}.bin": os.urandom(200 + i) for i in range(6)}
    nodes.send(sid, *(inline(i + 1, path, data) for i, (path, data) in enumerate(payloads.items())))
    assert pump([nodes.a, nodes.b], lambda: len(nodes.answers_of(FileResult)) == 6)

    assert batches == [(6, 0)]
    assert all(r.status == 0 for r in nodes.answers_of(FileResult))
    for path, data in payloads.items():
        assert (tmp_path / path).read_bytes() == data


def test_a_file_the_disk_refuses_fails_alone_with_its_reason(
    make_nodes: MakeNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error placing one file of a batch answers that file with io_error and the step;
    the others are placed and the session goes on."""
    nodes = make_nodes("all")
    sid = nodes.open()
    real_fsync = os.fsync
    doomed: list[int] = []

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if info.st_size == 333 and not doomed:  # the file "bad.bin", whatever its descriptor
            doomed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    nodes.send(sid, inline(1, "ok.bin", b"a" * 100), inline(2, "bad.bin", b"b" * 333))
    assert pump([nodes.a, nodes.b], lambda: len(nodes.answers_of(FileResult)) == 2)

    results = {r.transfer_id: r for r in nodes.answers_of(FileResult)}
    assert results[1].status == 0
    assert results[2].status == ErrorCode.IO_ERROR
    assert listing(tmp_path) == ["ok.bin"]
    nodes.send(sid, inline(3, "later.bin", b"c" * 10))  # the session still takes files
    assert pump([nodes.a, nodes.b], lambda: len(nodes.answers_of(FileResult)) == 3)
    assert (tmp_path / "later.bin").read_bytes() == b"c" * 10


def test_a_batch_of_offers_does_not_deepen_the_stack_per_offer(
    make_nodes: MakeNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each offer of a batch is handled at the same depth: the answers leave with the
    runner's flush, not with one nested inside every handler (that was ~6 frames a file,
    toward the recursion limit on a big enough batch)."""
    nodes = make_nodes("all")
    sid = nodes.open()
    depths: list[int] = []
    real = transfers_module.Transfers._after_incoming

    def recording(self: transfers_module.Transfers, inc: transfers_module.IncomingJob) -> None:
        depths.append(len(inspect.stack(0)))
        real(self, inc)

    monkeypatch.setattr(transfers_module.Transfers, "_after_incoming", recording)
    nodes.send(sid, *(inline(i + 1, f"f{i}", b"x" * i) for i in range(40)))
    assert pump([nodes.a, nodes.b], lambda: len(nodes.answers_of(FileResult)) == 40)
    assert len(depths) >= 40
    assert max(depths) - min(depths) <= 3


def test_a_bug_answering_one_peers_file_fails_only_that_peers_session(
    make_nodes: MakeNodes, hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two peers' files placed in one batch: a bug while answering the first peer's fails
    that peer's session (io_error), and the second peer's file is still answered."""
    nodes = make_nodes("all")
    sid_a = nodes.open()
    c = make_runner(hub, 3, "charlie")
    c_events: list[Event] = []
    c.subscribe(c_events.append)
    sid_c = c.engine.open_session(nodes.b.engine.mac, c.now())
    opened = lambda: any(isinstance(e, SessionOpened) for e in c_events)  # noqa: E731
    assert pump([nodes.a, nodes.b, c], opened)
    real = IncomingTransfer.file_placed

    def buggy(self: IncomingTransfer, transfer_id: int, final_name: str, now: float) -> None:
        if self.session == sid_a:
            raise RuntimeError("a bug")
        real(self, transfer_id, final_name, now)

    monkeypatch.setattr(IncomingTransfer, "file_placed", buggy)
    a_body, c_body = inline(1, "from-a", b"a" * 10), inline(1, "from-c", b"c" * 10)
    nodes.a.engine.send_control(nodes.b.engine.mac, sid_a, a_body, nodes.a.now())
    c.engine.send_control(nodes.b.engine.mac, sid_c, c_body, c.now())
    nodes.a.flush()
    c.flush()  # both offers wait in b's queue: one batch

    def c_results() -> list[FileResult]:
        bodies = [e.body for e in c_events if isinstance(e, ControlReceived)]
        return [b for b in bodies if isinstance(b, FileResult)]

    assert pump([nodes.a, nodes.b, c], lambda: bool(c_results()))
    (result,) = c_results()
    assert (result.status, result.final_name) == (0, "from-c")
    assert nodes.service.transfers.incoming[sid_a].failed
    assert not nodes.service.transfers.incoming[sid_c].failed
    assert nodes.b.counters["subscriber_errors"] == 1
