"""What one LAN peer can make a daemon hold is bounded (found by a hostile-peer review).

Each offer the daemon accepts holds a part file open until the file ends, and each offer held
for a person (--accept ask) waits in its inbox: a peer that offers without end used to exhaust
the daemon's descriptors (and then crash its loop) or its inbox. Past the bounds of
`l2fast.daemon.transfers` such offers are refused `busy`, counted, and logged once per
session; an offer whose file cannot be set up (out of descriptors or space) is answered
`io_error` / `no_space` instead of being left unanswered; bench offers, which need no person,
are bounded too. In memory: empty files and held offers need no receive process.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from l2fast.daemon import transfers as transfers_mod
from l2fast.daemon.benchjobs import BENCH_RAW_PATH, BENCH_REVERSE_PATH
from l2fast.transfer.placement import ReceiveDir
from l2fast.wire.constants import Digest, ErrorCode, FileKind
from l2fast.wire.frames_transfer import FileAccept, FileEnd, FileHeld, FileOffer, FileReject
from tests.service_harness import Nodes, pump

MakeNodes = Callable[[str], Nodes]


def empty_file(tid: int) -> FileOffer:
    return FileOffer(tid, int(FileKind.FILE), int(Digest.SHA256), 0, 0o644, 0, 0, 1000, f"e{tid}")


def bench(tid: int, path: str, size: int = 0) -> FileOffer:
    return FileOffer(tid, int(FileKind.BENCH), int(Digest.SHA256), size, 0, 10**9, 0, 8000, path)


def busy(nodes: Nodes) -> list[FileReject]:
    return [r for r in nodes.answers_of(FileReject) if r.reason == ErrorCode.BUSY]


def test_open_files_of_one_session_are_bounded(
    make_nodes: MakeNodes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transfers_mod, "MAX_OPEN_FILES_PER_SESSION", 6)
    nodes = make_nodes("all")
    sid = nodes.open()
    nodes.send(sid, *(empty_file(t) for t in range(1, 11)))
    nodes.wait_answers(10)
    assert len(nodes.answers_of(FileAccept)) == 6
    refused = busy(nodes)
    assert [r.transfer_id for r in refused] == [7, 8, 9, 10]
    assert "busy" in refused[0].text
    assert len(nodes.service.transfers.incoming[sid].files) == 6
    assert nodes.service.status()["counters"]["offers_refused_busy"] == 4
    # Logged once for the session, not once per offer.
    assert sum("refusing offers from" in r.getMessage() for r in caplog.records) == 1
    # A file that ends makes room for the next offer.
    nodes.send(sid, FileEnd(1, int(Digest.SHA256), hashlib.sha256(b"").digest()))
    assert pump([nodes.a, nodes.b], lambda: 1 not in nodes.service.transfers.incoming[sid].files)
    nodes.send(sid, empty_file(11))
    nodes.wait_answers(11)
    assert nodes.answers_of(FileAccept)[-1].transfer_id == 11


def test_open_files_of_all_sessions_are_bounded(
    make_nodes: MakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfers_mod, "MAX_OPEN_FILES_PER_SESSION", 6)
    monkeypatch.setattr(transfers_mod, "MAX_OPEN_FILES", 8)
    nodes = make_nodes("all")
    first, second = nodes.open(), nodes.open()
    nodes.send(first, *(empty_file(t) for t in range(1, 7)))
    nodes.wait_answers(6)
    nodes.send(second, *(empty_file(t) for t in range(1, 5)))
    nodes.wait_answers(10)
    assert len(nodes.answers_of(FileAccept)) == 8
    assert len(busy(nodes)) == 2
    files = [len(job.files) for job in nodes.service.transfers.incoming.values()]
    assert sorted(files) == [2, 6]


def test_offers_waiting_for_a_person_are_bounded(
    make_nodes: MakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfers_mod, "MAX_PENDING_PER_SESSION", 5)
    monkeypatch.setattr(transfers_mod, "MAX_PENDING", 7)
    nodes = make_nodes("ask")
    first, second = nodes.open(), nodes.open()
    nodes.send(first, *(empty_file(t) for t in range(1, 9)))
    nodes.wait_answers(8)
    assert (len(nodes.answers_of(FileHeld)), len(busy(nodes))) == (5, 3)
    nodes.send(second, *(empty_file(t) for t in range(1, 5)))
    nodes.wait_answers(12)
    assert (len(nodes.answers_of(FileHeld)), len(busy(nodes))) == (7, 5)
    assert len(nodes.service.transfers.inbox()) == 7
    assert nodes.service.status()["counters"]["offers_refused_busy"] == 5


@pytest.mark.parametrize(
    ("err", "code"), [(errno.EMFILE, ErrorCode.IO_ERROR), (errno.ENOSPC, ErrorCode.NO_SPACE)]
)
def test_an_offer_whose_file_cannot_be_set_up_is_answered(
    make_nodes: MakeNodes, monkeypatch: pytest.MonkeyPatch, err: int, code: ErrorCode
) -> None:
    def fails(self: ReceiveDir, offer: FileOffer, peer: bytes = b"") -> None:
        raise OSError(err, "the system says no")

    nodes = make_nodes("all")
    sid = nodes.open()
    with monkeypatch.context() as m:
        m.setattr(ReceiveDir, "receive_offer", fails)
        nodes.send(sid, FileOffer(1, int(FileKind.FILE), 1, 10, 0o644, 0, 0, 8000, "x"))
        nodes.wait_answers(1)
    (reject,) = nodes.answers_of(FileReject)
    assert (reject.transfer_id, reject.reason) == (1, code)
    assert "the system says no" in reject.text
    assert nodes.service.status()["counters"]["offers_failed_io"] == 1
    nodes.send(sid, empty_file(2))  # and the daemon goes on
    nodes.wait_answers(2)
    assert nodes.answers_of(FileAccept)[-1].transfer_id == 2


def test_bench_work_a_peer_can_start_is_bounded(
    make_nodes: MakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bench offers need no person, even under --accept ask: each raw count is a process,
    # each reverse run a session of this node's own, each bench stream a receive process.
    monkeypatch.setattr(transfers_mod, "MAX_BENCH_RECEIVERS", 0)
    nodes = make_nodes("ask")
    transfers = nodes.service.transfers
    transfers._raw_counts = transfers_mod.MAX_RAW_COUNTS  # one is being counted
    transfers._reverse_peers.add(nodes.a.engine.mac)  # a run back to this peer is going on
    sid = nodes.open()
    nodes.send(sid, bench(1, BENCH_RAW_PATH), bench(2, BENCH_REVERSE_PATH))
    nodes.send(sid, bench(3, "bench/0", size=1 << 20))
    nodes.wait_answers(3)
    texts = {r.transfer_id: r.text for r in busy(nodes)}
    assert set(texts) == {1, 2, 3}
    assert "raw blast" in texts[1] and "to this peer" in texts[2] and "bench streams" in texts[3]
    assert not nodes.answers_of(FileAccept)


def test_an_offer_cut_into_chunks_smaller_than_any_sender_uses_is_refused(
    make_nodes: MakeNodes,
) -> None:
    # A file's bookkeeping grows with its chunks (a resume bitmap of one bit each, read whole
    # when the file is accepted and when it stops): 2.6 GB of 1-byte chunks held a daemon's
    # loop for 21 s, its other peers' sessions timing out meanwhile.
    nodes = make_nodes("all")
    sid = nodes.open()
    smallest = transfers_mod.MIN_CHUNK
    assert smallest == 1280 - 24  # what a DATA frame carries at the smallest MTU
    size = 2600 << 20
    for tid, first, chunk in ((1, 0, 1), (2, size, smallest - 1)):
        nodes.send(sid, FileOffer(tid, int(FileKind.FILE), 1, size, 0o644, 0, first, chunk, "f"))
    nodes.send(sid, FileOffer(3, int(FileKind.FILE), 1, 10, 0o644, 0, 2 * size, smallest, "g"))
    nodes.wait_answers(3)
    refused = nodes.answers_of(FileReject)
    assert [(r.transfer_id, r.reason) for r in refused] == [
        (1, ErrorCode.BAD_REQUEST),
        (2, ErrorCode.BAD_REQUEST),
    ]
    assert all("this receiver takes 1256 at least" in r.text for r in refused)
    assert [a.transfer_id for a in nodes.answers_of(FileAccept)] == [3]
    assert nodes.service.status()["transfer_drops"]["bad_offer"] == 2


def test_descriptors_a_client_leaves_for_a_send_it_never_makes_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,300 `send_fds` of 16 descriptors each and no `send`: the daemon held 20,000, its limit,
    # and could then receive no file and accept no client. Past what it may hold for sends,
    # the descriptors are closed at once and the client told why.
    import os

    from l2fast.daemon import service as service_mod
    from l2fast.daemon.control import MAX_FDS
    from tests.fake_wire import FakeHub
    from tests.service_harness import make_runner

    limit = service_mod.STASH_HEADROOM + 40  # room for two messages' worth, not three
    monkeypatch.setattr(service_mod.resource, "getrlimit", lambda which: (limit, limit))
    runner = make_runner(FakeHub(), 1, "holder")
    service = service_mod.NodeService(runner, one_shot=False, recv_dir=str(tmp_path), accept="none")

    class Conn:
        closed, backlog = False, 0

        def __init__(self) -> None:
            self.replies: list[dict[str, object]] = []
            self.on_close: list[Callable[[], None]] = []

        def send(self, obj: dict[str, object]) -> bool:
            self.replies.append(obj)
            return True

    conn = Conn()
    opened: list[int] = []
    try:
        for i in range(3):
            fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(MAX_FDS)]
            opened += fds
            service.handle(conn, {"op": "send_fds", "id": i, "_fds": fds})
        first, second, refusal = conn.replies
        # The first two are taken, and each answer says how many the client has brought.
        assert (first["ok"], first["id"], first["held"]) == (True, 0, MAX_FDS)
        assert (second["ok"], second["id"], second["held"]) == (True, 1, 2 * MAX_FDS)
        assert refusal["ok"] is False and refusal["id"] == 2
        assert "may keep open for sends that have not started (40 descriptors)" in str(
            refusal["error"]
        )
        assert "a folder at a time" in str(refusal["hint"])
        closed = [fd for fd in opened[2 * MAX_FDS :] if not _is_open(fd)]
        assert len(closed) == MAX_FDS  # the third message's, closed at once
        # Another client's batch: the refusal says how many are held for this one's.
        other = Conn()
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(MAX_FDS)]
        opened += fds
        service.handle(other, {"op": "send_fds", "id": 7, "_fds": fds})
        (refused,) = other.replies
        assert refused["ok"] is False
        assert f"{2 * MAX_FDS} of them held for other clients' sends" in str(refused["error"])
        for callback in conn.on_close:  # the client leaves: what it left is closed too
            callback()
        assert not any(_is_open(fd) for fd in opened)
    finally:
        runner.close()


def _is_open(fd: int) -> bool:
    import os

    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
