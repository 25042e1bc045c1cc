"""Under --accept ask, a person's answer to a folder answers everything under it that the same
send offers, waiting or still to come (found by a review: a folder of 1000 files took 1000
`l2fast accept`, and rejecting the folder left the sender waiting for the rest)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from l2fast import cli
from l2fast.commands import inbox
from l2fast.errors import L2fastError
from l2fast.wire.constants import Digest, ErrorCode, FileKind
from l2fast.wire.frames_transfer import FileAccept, FileHeld, FileOffer, FileReject
from tests.service_harness import Nodes, pump


@pytest.fixture
def nodes(make_nodes: Callable[[str], Nodes]) -> Nodes:
    return make_nodes("ask")


def folder(tid: int, path: str) -> FileOffer:
    return FileOffer(tid, int(FileKind.DIRECTORY), int(Digest.SHA256), 0, 0o755, 0, 0, 0, path)


def empty(tid: int, path: str) -> FileOffer:
    return FileOffer(tid, int(FileKind.FILE), int(Digest.SHA256), 0, 0o644, 0, 0, 1000, path)


def pending_paths(nodes: Nodes) -> dict[str, int]:
    return {o["path"]: o["id"] for o in nodes.service.transfers.inbox()}


def test_rejecting_a_folder_rejects_what_is_under_it_now_and_later(nodes: Nodes) -> None:
    sid = nodes.open()
    offers = [folder(1, "tree"), folder(2, "tree/a"), empty(3, "tree/a/x"), empty(4, "treeX")]
    nodes.send(sid, *offers, empty(5, "other"))
    nodes.wait_answers(5)
    held = pending_paths(nodes)
    assert set(held) == {"tree", "tree/a", "tree/a/x", "treeX", "other"}

    answer = nodes.service.transfers.decide(held["tree"], accept=False)
    assert (answer["accepted"], answer["covered"]) == (False, 2)
    assert set(pending_paths(nodes)) == {"treeX", "other"}  # `treeX` is not in `tree`
    nodes.send(sid, empty(6, "tree/b"))  # offered after the answer: answered at once
    assert pump(
        [nodes.a, nodes.b],
        lambda: {r.transfer_id for r in nodes.answers if isinstance(r, FileReject)} == {1, 2, 3, 6},
    )
    for r in (b for b in nodes.answers if isinstance(b, FileReject)):
        assert r.reason == ErrorCode.REFUSED
        assert r.text in ("refused by the user", "refused by the user (folder tree)")
    assert set(pending_paths(nodes)) == {"treeX", "other"}


def test_accepting_a_folder_accepts_what_is_under_it(nodes: Nodes, tmp_path: Path) -> None:
    sid = nodes.open()
    nodes.send(sid, folder(1, "tree"), folder(2, "tree/a"), empty(3, "tree/a/x"), empty(4, "y"))
    nodes.wait_answers(4)
    answer = nodes.service.transfers.decide(pending_paths(nodes)["tree"], accept=True)
    assert answer["covered"] == 2
    assert pump(
        [nodes.a, nodes.b],
        lambda: {r.transfer_id for r in nodes.answers if isinstance(r, FileAccept)} == {1, 2, 3},
    )
    assert (tmp_path / "tree" / "a").is_dir()
    assert set(pending_paths(nodes)) == {"y"}


def test_the_entries_of_a_waiting_folder_point_at_the_folder(nodes: Nodes) -> None:
    # The sender is told which one `l2fast accept` answers the lot: the outermost folder that
    # waits, not one id per entry (300 files printed 300 ids), and the inbox lists it once.
    sid = nodes.open()
    offers = [folder(1, "tree"), folder(2, "tree/a"), empty(3, "tree/a/x"), empty(4, "y")]
    nodes.send(sid, *offers)
    nodes.wait_answers(4)
    held = {h.transfer_id: h for h in nodes.answers_of(FileHeld)}
    tree = pending_paths(nodes)["tree"]
    assert [held[t].pending_id for t in (1, 2, 3)] == [tree] * 3
    assert "folder 'tree'" in held[3].text and f"l2fast accept {tree}" in held[3].text
    assert held[4].pending_id == pending_paths(nodes)["y"]  # not in the folder
    folders = {o["path"]: o["folder"] for o in nodes.service.transfers.inbox()}
    assert folders == {"tree": None, "tree/a": tree, "tree/a/x": tree, "y": None}


def test_inbox_text_shows_a_waiting_folder_once_with_its_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    offers = [
        {"id": 1, "peer": "02:00:00:00:00:01", "kind": "directory", "size": 0, "path": "tree",
         "waiting_s": 3.0, "folder": None},
        *[
            {"id": 2 + i, "peer": "02:00:00:00:00:01", "kind": "file", "size": 10,
             "path": f"tree/{i}", "waiting_s": 3.0, "folder": 1}
            for i in range(300)
        ],
        {"id": 400, "peer": "02:00:00:00:00:01", "kind": "file", "size": 5, "path": "y",
         "waiting_s": 1.0, "folder": None},
    ]  # fmt: skip

    monkeypatch.setattr(inbox, "connect", lambda *a, **k: FakeNode(offers, peers=[]))
    assert inbox.run_inbox(argparse.Namespace(interface=None, json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[:2] == ["ID", "PEER"]
    assert "tree  (and 300 entries inside)" in lines[1] and lines[2].split()[0] == "400"


class FakeNode:
    """The daemon as `l2fast inbox` sees it: its offers and its neighbour table."""

    def __init__(self, offers: list[dict[str, object]], peers: list[dict[str, object]]) -> None:
        self.replies = {"inbox": {"offers": list(offers)}, "peers": {"peers": peers}}
        self.decided: list[tuple[str, int]] = []

    def __enter__(self) -> FakeNode:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def request(self, request: dict[str, object], timeout: float) -> dict[str, object]:
        op = str(request["op"])
        if op in ("accept", "reject"):  # as Transfers.decide: a folder's answer covers its own
            offers: list[dict[str, object]] = self.replies["inbox"]["offers"]  # type: ignore[assignment]
            (offer,) = [o for o in offers if o["id"] == request["offer"]] or [None]
            if offer is None:
                raise L2fastError(f"no pending offer {request['offer']}", hint="see inbox")
            gone = [o for o in offers if o is offer or o["folder"] == offer["id"]]
            self.replies["inbox"]["offers"] = [o for o in offers if o not in gone]
            self.decided.append((op, int(offer["id"])))  # type: ignore[call-overload]
            answer = {"offer": offer["id"], "path": offer["path"], "covered": len(gone) - 1}
            return {**answer, "accepted": op == "accept"}
        return self.replies[op]


def test_inbox_names_a_known_sender_beside_its_mac(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A person deciding whether to accept sees who sent it by name (with the MAC, since a name
    # is only what the peer announced), escaped like every text from the wire.
    def offer(oid: int, mac: str) -> dict[str, object]:
        return {"id": oid, "peer": mac, "kind": "file", "size": 5, "path": f"f{oid}",
                "waiting_s": 1.0, "folder": None}  # fmt: skip

    offers = [offer(1, "02:00:00:00:00:01"), offer(2, "02:00:00:00:00:09")]
    peers = [{"mac": "02:00:00:00:00:01", "name": "alice\x1b[2J"}]
    monkeypatch.setattr(inbox, "connect", lambda *a, **k: FakeNode(offers, peers))
    assert inbox.run_inbox(argparse.Namespace(interface=None, json=False)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\x1b" not in out
    assert "alice\\x1b[2J (02:00:00:00:00:01)" in lines[1]
    assert lines[2].split()[1] == "02:00:00:00:00:09"  # not in the table: the MAC alone
    assert inbox.run_inbox(argparse.Namespace(interface=None, json=True)) == 0
    assert '"peer": "02:00:00:00:00:01"' in capsys.readouterr().out  # JSON keeps the MAC


def waiting(oid: int, mac: str, folder: int | None = None) -> dict[str, object]:
    return {"id": oid, "peer": mac, "kind": "file", "size": 5, "path": f"p{oid}",
            "waiting_s": 1.0, "folder": folder}  # fmt: skip


ALICE, BOB = "02:00:00:00:00:01", "02:00:00:00:00:02"
NAMES = [{"mac": ALICE, "name": "alice"}, {"mac": BOB, "name": "bob"}]


@pytest.fixture
def nine(monkeypatch: pytest.MonkeyPatch) -> FakeNode:
    """Offers 1..7 from alice and bob, 8 and 9 inside folder 7 (answered with it)."""
    offers = [waiting(i, ALICE if i % 2 else BOB) for i in range(1, 8)]
    node = FakeNode([*offers, waiting(8, BOB, 7), waiting(9, BOB, 7)], NAMES)
    monkeypatch.setattr(inbox, "connect", lambda *a, **k: node)
    return node


@pytest.mark.parametrize("who", [None, "alice", ALICE])
def test_accept_all_answers_every_offer_waiting_or_one_peers(
    nine: FakeNode, who: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nine peers' offers took nine `l2fast accept ID`.
    assert cli.main(["accept", "--all", *(["--from", who] if who else [])]) == 0
    if who is None:
        assert nine.decided == [("accept", i) for i in range(1, 8)]  # 8, 9: with folder 7
        assert capsys.readouterr().out.splitlines()[-1] == (
            "accepted p7 and the 2 offers waiting under it"
        )
    else:
        assert nine.decided == [("accept", i) for i in (1, 3, 5, 7)]
    assert cli.main(["reject", "--all"]) == 0  # what is left, then nothing
    assert cli.main(["reject", "--all", "--from", "bob"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "no offers waiting from bob: nothing to reject"
    )


def test_several_ids_are_each_answered_and_a_missing_one_does_not_stop_the_rest(
    nine: FakeNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["reject", "2", "99", "4"]) == 1
    assert nine.decided == [("reject", 2), ("reject", 4)]
    out, err = capsys.readouterr()
    assert out.splitlines() == ["rejected p2", "rejected p4"]
    assert err.splitlines() == ["l2fast: error: offer 99: no pending offer 99"]
    assert cli.main(["accept", "6", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "answers": [
            {"offer": 6, "path": "p6", "accepted": True, "covered": 0},
            {"offer": 3, "path": "p3", "accepted": True, "covered": 0},
        ],
        "errors": [],
    }
    assert cli.main(["accept", "1", "--json"]) == 0  # one id: one object, as before
    assert json.loads(capsys.readouterr().out)["offer"] == 1


def test_from_refuses_a_name_two_peers_carry_or_none_does(
    nine: FakeNode, capsys: pytest.CaptureFixture[str]
) -> None:
    # A name is only what a node announces: another "alice" must not get its offers accepted.
    nine.replies["peers"]["peers"] = [*NAMES, {"mac": "02:00:00:00:00:66", "name": "alice"}]
    assert cli.main(["accept", "--all", "--from", "alice"]) == 1
    err = capsys.readouterr().err
    assert "2 peers are named 'alice': 02:00:00:00:00:01, 02:00:00:00:00:66" in err
    assert cli.main(["accept", "--all", "--from", "carol"]) == 1
    assert "no peer named 'carol' is in the neighbour table" in capsys.readouterr().err
    assert nine.decided == []
    assert cli.main(["accept", "--all", "--from", ALICE]) == 0  # by MAC: no doubt
    assert nine.decided == [("accept", i) for i in (1, 3, 5, 7)]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["accept"], "which offers? name their IDs"),
        (["accept", "3", "--all"], "or give --all, not both"),
        (["reject", "3", "--from", "bob"], "--from picks among the offers --all answers"),
    ],
)
def test_accept_and_reject_say_what_they_need(
    nine: FakeNode, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert says in capsys.readouterr().err and nine.decided == []
