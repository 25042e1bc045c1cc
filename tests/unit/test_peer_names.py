"""A peer named by its name resolves to one machine or to an error, never to whichever node
answered first (found by a review: without a daemon, `l2fast chat dup hi` with two nodes named
`dup` delivered to one of them two runs in three)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from l2fast.daemon.runner import NodeRunner
from l2fast.daemon.service import NodeService
from tests.fake_wire import FakeHub
from tests.service_harness import make_runner, pump


class Inbox:
    """An in-process client of NodeService: the replies it got."""

    closed = False
    backlog = 0

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.on_close: list[Any] = []

    def send(self, obj: dict[str, Any]) -> bool:
        self.replies.append(obj)
        return True


def one_shot(hub: FakeHub, tmp_path: Path) -> tuple[NodeRunner, NodeService]:
    runner = make_runner(hub, 1, "asker")
    return runner, NodeService(runner, one_shot=True, recv_dir=str(tmp_path), accept="none")


def ping_reply(runners: list[NodeRunner], service: NodeService, peer: str) -> dict[str, Any]:
    inbox = Inbox()
    service.handle(inbox, {"op": "ping", "id": 1, "peer": peer, "count": 1, "interval": 0.01})
    assert pump(runners, lambda: any("ok" in r for r in inbox.replies), timeout=5)
    return next(r for r in inbox.replies if "ok" in r)


def test_a_name_two_nodes_carry_is_refused_even_when_one_answers_first(
    hub: FakeHub, tmp_path: Path
) -> None:
    runner, service = one_shot(hub, tmp_path)
    first, late = make_runner(hub, 2, "dup"), make_runner(hub, 3, "dup")
    try:
        inbox = Inbox()
        request = {"op": "ping", "id": 1, "peer": "dup", "count": 1, "interval": 0.01}
        service.handle(inbox, request)
        # One twin answers the discovery before the other's loop gets to it.
        assert pump([runner, first], lambda: bool(runner.engine.peers()))
        assert pump([runner, first, late], lambda: any("ok" in r for r in inbox.replies))
        reply = next(r for r in inbox.replies if "ok" in r)
        assert reply["ok"] is False, reply
        assert "2 peers are named 'dup'" in reply["error"] and "MAC" in reply["hint"]
    finally:
        service.transfers.close()


def test_a_name_one_node_carries_resolves(hub: FakeHub, tmp_path: Path) -> None:
    runner, service = one_shot(hub, tmp_path)
    others = [make_runner(hub, 2, "solo"), make_runner(hub, 3, "other")]
    try:
        reply = ping_reply([runner, *others], service, "solo")
        assert reply["ok"] is True, reply
    finally:
        service.transfers.close()


@pytest.mark.parametrize("peer", ["asker", "02:00:00:00:00:01"])
def test_naming_this_node_itself_is_a_clear_error(hub: FakeHub, tmp_path: Path, peer: str) -> None:
    runner, service = one_shot(hub, tmp_path)
    try:
        peer = peer if peer == "asker" else runner.engine.mac.hex(":")
        reply = ping_reply([runner], service, peer)
        assert reply["ok"] is False and "is this node" in reply["error"], reply
    finally:
        service.transfers.close()
