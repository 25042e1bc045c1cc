"""`status` shows what the transfer layer refused and the runner's own errors.

A receiving node (a NodeService over a NodeRunner on the fake segment of tests/fake_wire.py) is
sent FILE_* frames its transfer layer refuses; `status` reports them under `transfer_drops`
while the session lives and keeps them once it ended and Transfers forgot its job.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from l2fast.daemon import service
from l2fast.node.events import Event
from l2fast.wire.constants import Digest, FileKind
from l2fast.wire.frames_transfer import FileEnd, FileOffer
from tests.service_harness import Nodes


@pytest.fixture
def nodes(make_nodes: Callable[[str], Nodes]) -> Nodes:
    return make_nodes("none")


def offer(transfer_id: int) -> FileOffer:
    return FileOffer(
        transfer_id=transfer_id,
        kind=int(FileKind.FILE),
        digest=int(Digest.SHA256),
        size=10,
        mode=0o644,
        mtime_ns=0,
        first_chunk=0,
        chunk_size=1000,
        path="notes.txt",
    )


def end_for(transfer_id: int) -> FileEnd:
    return FileEnd(transfer_id=transfer_id, digest=int(Digest.SHA256), digest_value=bytes(32))


def transfer_drops(status: dict[str, object]) -> dict[str, int]:
    drops = status["transfer_drops"]
    assert isinstance(drops, dict)
    return drops


def counters(status: dict[str, object]) -> dict[str, int]:
    c = status["counters"]
    assert isinstance(c, dict)
    return c


def test_every_transfer_drop_reason_is_shown_at_zero(nodes: Nodes) -> None:
    status = nodes.status()
    assert transfer_drops(status) == dict.fromkeys(service.TRANSFER_DROP_REASONS, 0)
    c = counters(status)
    assert (c["chunks_refused"], c["subscriber_errors"], c["encode_errors"]) == (0, 0, 0)


def test_transfer_refusals_show_while_the_session_lives_and_after_it_ended(
    nodes: Nodes,
) -> None:
    sid = nodes.open()
    # A FILE_END for a file never offered, then the same offer twice.
    nodes.send(sid, end_for(7), offer(1), offer(1))
    live = nodes.settle(lambda s: transfer_drops(s)["duplicate_offer"] == 1)
    assert transfer_drops(live)["unknown_transfer"] == 1
    # Each refused FILE_* is also a protocol violation to the transfer layer.
    assert transfer_drops(live)["protocol_violation"] == 2
    # Chunks outside every accepted file (the offer was refused: accept none).
    job = nodes.service.transfers.incoming[sid]
    job.incoming.on_chunks([(0, 5)], nodes.b.now())
    assert counters(nodes.status())["chunks_refused"] == 5
    # The node accepted those frames: they are not among its frame drops.
    frame_drops = live["drops"]
    assert isinstance(frame_drops, dict)
    assert not {"duplicate_offer", "unknown_transfer"} & set(frame_drops)

    nodes.close(sid)
    ended = nodes.status()
    assert transfer_drops(ended) == transfer_drops(live)
    assert counters(ended)["chunks_refused"] == 5

    # A later session adds to the totals of the ended one.
    again = nodes.open()
    assert again != sid
    nodes.send(again, end_for(9))
    both = nodes.settle(lambda s: transfer_drops(s)["unknown_transfer"] == 2)
    assert transfer_drops(both)["duplicate_offer"] == 1
    nodes.close(again)
    assert transfer_drops(nodes.status()) == transfer_drops(both)


def test_runner_errors_are_in_the_counters(nodes: Nodes) -> None:
    def broken(_event: Event) -> None:
        raise RuntimeError("bug in a subscriber")

    nodes.b.subscribe(broken)
    nodes.open()  # events on the receiver: each one reaches the broken subscriber
    assert counters(nodes.status())["subscriber_errors"] == nodes.b.counters["subscriber_errors"]
    assert counters(nodes.status())["subscriber_errors"] >= 1
    # A frame the engine cannot encode is the node's bug, counted by the runner (no engine
    # frame fails to encode, so the count is set here): status shows it.
    nodes.b.counters["encode_errors"] += 2
    assert counters(nodes.status())["encode_errors"] == 2
