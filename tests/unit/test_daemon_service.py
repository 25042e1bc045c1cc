"""The daemon without root: two `Daemon`s on a fake segment, driven through their control sockets.

Everything the commands ask (status, peers, discover, chat, chat --all, history, ping, watch)
goes through the real control socket, the real NodeService and the real NodeRunner; only the
raw socket is the in-memory stand-in from tests/fake_wire.py.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2fast.commands.status import status_lines
from l2fast.daemon import service
from l2fast.daemon.client import DaemonClient
from l2fast.daemon.control import ControlClient, ControlRefused, control_address
from l2fast.daemon.daemon import Daemon
from l2fast.daemon.options import DaemonOptions
from l2fast.errors import L2fastError
from l2fast.node.config import NodeConfig
from tests.fake_wire import FakeHub

FAST = NodeConfig(handshake_timeout=0.5, ctrl_give_up=1.0, dead_after=1.0)


@dataclass
class Node:
    """A daemon serving in a thread, and how to reach it."""

    daemon: Daemon
    thread: threading.Thread
    address: str
    mac: str

    def client(self) -> DaemonClient:
        return DaemonClient("fake0", ControlClient(self.address, timeout=10))


def start_node(
    hub: FakeHub, index: int, name: str, options: DaemonOptions, config: NodeConfig = FAST
) -> Node:
    sock = hub.socket(index)
    address = control_address(f"test-{uuid.uuid4().hex[:12]}")
    daemon = Daemon(sock, name, options, address=address, config=config)
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    return Node(daemon, thread, address, sock.mac.hex(":"))


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    hub = FakeHub()
    # A receive directory of the test's own: the daemon walks it for old part files.
    a = start_node(hub, 1, "alpha", DaemonOptions(recv_dir=str(tmp_path), accept="none"))
    b = start_node(hub, 2, "bravo", DaemonOptions(keep_parts_days=0))
    try:
        with a.client() as ca, b.client() as cb:

            def known() -> bool:
                peers_a = ca.request({"op": "peers"}, 5)["peers"]
                return bool(peers_a) and bool(cb.request({"op": "peers"}, 5)["peers"])

            assert wait_for(known), "the daemons did not discover each other"
        yield a, b
    finally:
        for node in (a, b):
            node.daemon.stop()
        for node in (a, b):
            node.thread.join(10)
            assert not node.thread.is_alive(), "a daemon did not stop"
        hub.close()


def history(node: Node) -> list[dict[str, Any]]:
    with node.client() as c:
        return [m["entry"] for m in c.stream({"op": "history"}, 5) if "entry" in m]


def test_status_has_interface_peers_and_drop_reasons(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with a.client() as c:
        status = c.request({"op": "status"}, 5)["status"]
    assert (status["interface"], status["mac"], status["mtu"]) == ("fake0", a.mac, 1500)
    assert status["name"] == "alpha" and status["daemon"] is True
    assert [p["mac"] for p in status["peers"]] == [b.mac]
    assert set(service.DROP_REASONS) <= set(status["drops"])
    assert status["counters"]["frames_in"] >= 1 and status["counters"]["frames_out"] >= 1
    assert (Path(status["recv_dir"]).is_dir(), status["accept"]) == (True, "none")
    assert status["transfers"] == []
    assert status["control"]["clients"] == 1 and status["control"]["refused"] == 0
    # The text form carries the same: every drop reason and the PING responder's counts.
    text = "\n".join(status_lines(status))
    assert all(reason in text for reason in service.DROP_REASONS)
    echo = status["ping_responder"]
    assert f"answered {echo['answered']} (event loop)" in text  # a fake socket: no C thread
    assert f"rate-limited {echo['rate_limited']}" in text
    # A fake socket has no fanout group: receivers open their own sockets, and both say so.
    assert status["receive_sockets"] is None
    assert "no fanout group" in text
    assert status["part_files"]["keep_days"] == 7.0
    assert "part files kept 7 days, " in text
    assert status["auth"] is None and "auth       none: frames are not authenticated" in text
    keyed = "\n".join(status_lines({**status, "auth": {"key_id": "0123456789abcdef"}}))
    assert "LAN key 0123456789abcdef: only nodes with this key are heard" in keyed
    pooled = {"fanout_group": 0x1F, "pool": 8, "lent": 1, "reserved": 2, "parked": 0,
              "lent_total": 5, "reused": 3, "unpooled": 2, "ping_responder_member": 9}  # fmt: skip
    text = "\n".join(status_lines({**status, "receive_sockets": pooled}))
    assert "fanout group 0x001f: 1 of 8 pooled sockets lent, 2 kept for their session" in text
    assert "(5 loans, 3 reused; 2 receivers used their own)" in text


class IdlePool:
    """What the status reads of a `ReceiveSockets` whose pooled sockets held frames."""

    idle_frames = 3
    idle_kernel_drops = 2

    def status(self) -> dict[str, int]:
        return {"idle_frames": self.idle_frames, "idle_kernel_drops": self.idle_kernel_drops}


def test_frames_a_pooled_socket_held_between_files_are_drops(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    with a.client() as c:
        before = c.request({"op": "status"}, 5)["status"]
        runner = a.daemon.runner
        runner.receive_sockets = IdlePool()  # type: ignore[assignment]
        try:
            after = c.request({"op": "status"}, 5)["status"]
        finally:
            runner.receive_sockets = None
    assert before["drops"]["between_files"] == 0
    assert after["drops"]["between_files"] == 3
    # Received as well as dropped: dropped frames never outnumber received ones (other frames
    # may arrive between the two reads, which only adds to frames_in).
    grown = {k: after["counters"][k] - before["counters"][k] for k in after["counters"]}
    assert grown["frames_dropped"] >= 3 and grown["frames_in"] >= grown["frames_dropped"]
    # The pool's kernel drops are its own, not the control socket's.
    assert after["receive_sockets"] == {"idle_frames": 3, "idle_kernel_drops": 2}


def test_feedback_a_sending_job_refused_is_received_and_dropped(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    runner = a.daemon.runner
    with a.client() as c:
        before = c.request({"op": "status"}, 5)["status"]
        runner.counters["feedback_refused"] += 4  # as OutgoingJob._refuse_feedback counts
        after = c.request({"op": "status"}, 5)["status"]
    assert before["drops"]["bad_feedback"] == 0
    assert after["drops"]["bad_feedback"] == 4
    grown = {k: after["counters"][k] - before["counters"][k] for k in after["counters"]}
    assert grown["frames_dropped"] >= 4 and grown["frames_in"] >= grown["frames_dropped"]


def test_peers_and_discover_show_the_required_fields(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with a.client() as c:
        (peer,) = c.request({"op": "discover", "timeout": 0.2}, 5)["peers"]
    assert {"mac", "name", "mtu", "last_seen", "rtt_us"} <= set(peer)
    assert (peer["mac"], peer["name"], peer["mtu"]) == (b.mac, "bravo", 1500)
    assert abs(peer["last_seen"] - time.time()) < 5  # wall clock, not the monotonic one
    assert peer["rtt_us"] is not None and peer["rtt_us"] > 0  # the discovery measured it
    assert peer["daemon"] is True


def test_discover_lists_only_nodes_that_answered_it(nodes: tuple[Node, Node]) -> None:
    # b stops; a's table still holds it for a few HELLO intervals, but it answers no discovery.
    a, b = nodes
    b.daemon.stop()
    b.thread.join(10)
    with a.client() as c:
        assert [p["mac"] for p in c.request({"op": "peers"}, 5)["peers"]] == [b.mac]
        assert c.request({"op": "discover", "timeout": 0.3}, 5)["peers"] == []


def test_chat_by_name_and_by_mac_reaches_the_history(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with a.client() as c:
        first = c.request({"op": "chat", "peer": "bravo", "text": "hi \x1b[2J bravo"}, 10)
        second = c.request({"op": "chat", "peer": b.mac.upper(), "text": "é" * 30_000}, 10)
    assert first["delivered"] and first["peer"] == b.mac
    assert second["msg_id"] == first["msg_id"] + 1
    entries = history(b)
    assert [(e["mac"], e["name"], e["text"]) for e in entries] == [
        (a.mac, "alpha", "hi \x1b[2J bravo"),
        (a.mac, "alpha", "é" * 30_000),
    ]
    assert all(abs(e["time"] - time.time()) < 10 for e in entries)
    with b.client() as c:
        (last,) = [m["entry"] for m in c.stream({"op": "history", "limit": 1}, 5) if "entry" in m]
        # More asked for than kept: every message, oldest first (it used to be the newest
        # `limit - kept` of them).
        more = [m["entry"] for m in c.stream({"op": "history", "limit": 3}, 5) if "entry" in m]
    assert last["text"] == "é" * 30_000
    assert [e["text"] for e in more] == ["hi \x1b[2J bravo", "é" * 30_000]


def test_unknown_name_fails_after_a_bounded_wait(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = nodes
    monkeypatch.setattr(service, "RESOLVE_WAIT_S", 0.3)
    start = time.monotonic()
    with a.client() as c, pytest.raises(ControlRefused, match="no peer named 'nobody'") as info:
        c.request({"op": "chat", "peer": "nobody", "text": "hello?"}, 10)
    assert time.monotonic() - start < 3
    assert info.value.hint is not None and "bravo" in info.value.hint


def test_a_malformed_mac_is_refused_at_once_not_looked_up_as_a_name(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    start = time.monotonic()
    with a.client() as c, pytest.raises(ControlRefused, match="is not a MAC address") as info:
        c.request({"op": "chat", "peer": b.mac[:-3], "text": "hello?"}, 10)
    assert time.monotonic() - start < 1  # no 3 s wait for a name to appear
    assert info.value.hint is not None and "six hex bytes" in info.value.hint


def test_chat_to_an_absent_mac_fails_with_the_reason(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    with a.client() as c, pytest.raises(ControlRefused, match=r"not delivered.*no answer"):
        c.request({"op": "chat", "peer": "02:00:00:00:00:42", "text": "anyone?"}, 10)


def test_chat_all_reports_per_peer(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with b.client() as c:
        reply = c.request({"op": "chat_all", "text": "to everyone"}, 10)
    assert reply["results"] == [{"mac": a.mac, "name": "alpha", "delivered": True, "error": None}]
    (entry,) = history(a)
    assert entry["to_all"] is True and entry["text"] == "to everyone"


def test_chat_all_names_a_peer_that_left_while_it_waited(tmp_path: Path) -> None:
    """A peer that stopped answering leaves the neighbour table (here after ~0.5 s) before
    the session to it gives up (2 s): the reply still names it (its name was "")."""
    quick = NodeConfig(hello_interval=0.2, expire_intervals=2.5, handshake_timeout=2.0)
    hub = FakeHub()
    a = start_node(hub, 1, "alpha", DaemonOptions(keep_parts_days=0), quick)
    c = start_node(hub, 3, "charlie", DaemonOptions(keep_parts_days=0), quick)
    try:
        with a.client() as ca:
            assert wait_for(lambda: bool(ca.request({"op": "peers"}, 5)["peers"]))
            c.daemon.stop()
            c.thread.join(10)
            reply = ca.request({"op": "chat_all", "text": "anyone?"}, 15)
            assert ca.request({"op": "peers"}, 5)["peers"] == []  # it did leave the table
    finally:
        for node in (a, c):
            node.daemon.stop()
            node.thread.join(10)
        hub.close()
    (result,) = reply["results"]
    assert (result["mac"], result["name"], result["delivered"]) == (c.mac, "charlie", False)


def test_watch_streams_incoming_messages(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with b.client() as watcher, a.client() as sender:
        hello = watcher.request({"op": "watch"}, 5)
        assert (hello["name"], hello["mac"], hello["daemon"]) == ("bravo", b.mac, True)
        sender.request({"op": "chat", "peer": "bravo", "text": "live"}, 10)
        events: list[dict[str, Any]] = []

        def arrived() -> bool:
            events.extend(watcher.poll(0.05))
            return bool(events)

        assert wait_for(arrived)
    assert events[0]["event"] == "chat" and events[0]["text"] == "live"
    assert events[0]["name"] == "alpha"


def test_ping_streams_replies_then_done(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    request = {"op": "ping", "peer": "bravo", "count": 3, "interval": 0.01, "size": 100}
    with a.client() as c:
        messages = list(c.stream(request, 5))
    kinds = [m["event"] for m in messages]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("sent") == 3 and kinds.count("reply") == 3
    replies = [m for m in messages if m["event"] == "reply"]
    assert [r["seq"] for r in replies] == [1, 2, 3]
    assert all(r["rtt_us"] > 0 and r["size"] == 100 for r in replies)
    # A second run counts from 1 too, as ping(8) does, though the node numbers its PINGs on.
    with a.client() as c:
        again = [m for m in c.stream(request, 5) if m["event"] in ("sent", "reply")]
    assert [m["seq"] for m in again if m["event"] == "reply"] == [1, 2, 3]
    assert [m["seq"] for m in again if m["event"] == "sent"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("peer", "size", "error", "hint"),
    [
        ("ff:ff:ff:ff:ff:ff", 56, "is not a unicast MAC address", None),
        ("bravo", 9000, "ping size 9000 is outside 12..1476", "the MTU on the way is 1500"),
    ],
)
def test_a_ping_that_cannot_start_is_refused_before_any_header(
    nodes: tuple[Node, Node], peer: str, size: int, error: str, hint: str | None
) -> None:
    a, _ = nodes
    request = {"op": "ping", "peer": peer, "count": 1, "interval": 0.01, "size": size}
    messages: list[dict[str, Any]] = []
    with a.client() as c, pytest.raises(ControlRefused, match=error) as info:
        messages.extend(c.stream(request, 5))
    assert messages == []  # no "start": the client prints the error alone
    if hint is not None:
        assert info.value.hint is not None and hint in info.value.hint


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"op": "fly"}, "unknown request 'fly'"),
        ({"op": "chat", "peer": "bravo", "text": ""}, "the message is empty"),
        ({"op": "chat", "text": "x"}, "names no peer"),
        ({"op": "ping", "peer": "bravo", "count": "many"}, "count must be a number"),
        ({"op": "ping", "peer": "bravo", "size": 5}, "ping size 5"),
        ({"op": "discover", "timeout": 1e9}, "timeout must be a number"),
        ({"op": "chat", "peer": "bravo", "text": "x" * (1 << 20 | 1)}, "the limit is"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    nodes: tuple[Node, Node], request_: dict[str, Any], error: str
) -> None:
    a, _ = nodes
    with a.client() as c, pytest.raises(ControlRefused, match=error) as refused:
        c.request(request_, 10)
    if error == "the limit is":  # and says where longer text can go
        assert refused.value.hint == "longer text goes as a file: l2fast send PEER FILE"
    with a.client() as c:  # and the daemon carries on
        assert c.request({"op": "status"}, 5)["status"]["name"] == "alpha"


def test_garbage_and_vanishing_clients_do_not_hurt_the_daemon(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    for garbage in (b"\xff\xfe\n", b"[]\n", b'{"op": 7}\n', b"x" * 5000):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(5)
        raw.connect(a.address)
        raw.recv(4096)  # the greeting
        raw.sendall(garbage)
        raw.close()  # some mid-request, without reading the answer
    with a.client() as c:
        c.send({"op": "ping", "peer": "bravo", "count": 0, "interval": 0.01, "id": 99})
    # The client left in the middle of an endless ping; the daemon stops it and serves on.
    with a.client() as c:
        status = c.request({"op": "status"}, 5)["status"]
        assert status["control"]["bad_requests"] >= 3
        sent = status["counters"]["frames_out"]
        time.sleep(0.1)
        assert c.request({"op": "status"}, 5)["status"]["counters"]["frames_out"] < sent + 5


def test_a_second_daemon_on_the_same_address_refuses(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    hub = FakeHub()
    try:
        with pytest.raises(L2fastError, match="another l2fast daemon already serves"):
            Daemon(hub.socket(7), "again", DaemonOptions(keep_parts_days=0), address=a.address)
    finally:
        hub.close()


def test_stop_closes_sessions_in_order(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with a.client() as c:
        c.request({"op": "chat", "peer": "bravo", "text": "before stopping"}, 10)
    a.daemon.stop()
    a.thread.join(10)
    assert not a.thread.is_alive()
    with b.client() as c:
        sessions = c.request({"op": "status"}, 5)["status"]["sessions"]
    assert [s["state"] for s in sessions] == ["closed"]  # by a CLOSE, not a timeout


def test_a_client_that_reads_slowly_does_not_stall_the_daemon(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    text = "w" * 200_000
    with a.client() as c:
        for _ in range(15):
            c.request({"op": "chat", "peer": "bravo", "text": text}, 10)
    slow = ControlClient(b.address, timeout=10)
    try:
        slow.send({"op": "history", "id": 1})  # 3 MB of replies, and nobody reads them yet
        with b.client() as c:
            start = time.monotonic()
            assert c.request({"op": "status"}, 5)["status"]["chat_history"] == 15
            assert time.monotonic() - start < 2
        replies: list[dict[str, Any]] = []
        while not replies or not replies[-1].get("done"):
            replies.append(slow.receive())
    finally:
        slow.close()
    assert [r["entry"]["text"] for r in replies[:-1]] == [text] * 15
    assert replies[-1]["count"] == 15


def test_history_is_bounded_in_count_and_bytes(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = nodes
    monkeypatch.setattr(service, "HISTORY_BYTES", 25_000)
    b.daemon.service._history_size = 3
    with a.client() as c:
        for i in range(5):
            c.request({"op": "chat", "peer": "bravo", "text": f"{i}" * 10_000}, 10)
    assert [e["text"][0] for e in history(b)] == ["3", "4"]  # 2 x 10 kB fit in 25 kB
    with a.client() as c:
        for i in range(5, 9):
            c.request({"op": "chat", "peer": "bravo", "text": f"{i}"}, 10)
    assert [e["text"] for e in history(b)] == ["6", "7", "8"]
