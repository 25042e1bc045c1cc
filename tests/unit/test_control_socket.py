"""The daemon's control socket: framing, access policy, fd passing, hostile clients."""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import socket
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2fast.daemon.control import (
    MAX_MESSAGE,
    AccessPolicy,
    ControlClient,
    ControlConnection,
    ControlRefused,
    ControlServer,
    DaemonNotRunning,
    MessageBuffer,
    PeerCred,
    control_address,
)
from l2fast.errors import L2fastError


class ServerThread:
    """Runs a ControlServer's selector loop in a thread, like the daemon's main loop does."""

    def __init__(self, address: str, policy: AccessPolicy | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server = ControlServer(address, policy or AccessPolicy(os.getuid()), self.handle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def handle(self, conn: ControlConnection, request: dict[str, Any]) -> None:
        self.requests.append(request)
        if request["op"] == "echo":
            conn.send({"ok": True, "echo": request.get("value")})
        elif request["op"] == "read-fd":
            fds = conn.take_fds()
            contents = [os.pread(fd, 100, 0).decode() for fd in fds]
            for fd in fds:
                os.close(fd)
            conn.send({"ok": True, "contents": contents})
        else:
            conn.send({"ok": False, "error": f"unknown op {request['op']!r}"})

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.server.fileno(), selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                if key.data is None:
                    conn = self.server.accept()
                    if conn is not None:
                        sel.register(conn.sock, selectors.EVENT_READ, conn)
                else:
                    conn = key.data
                    self.server.service(conn)
                    if conn.closed:
                        sel.unregister(key.fileobj)
        sel.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


def connect_raw(address: str) -> socket.socket:
    """A hand-driven client: connects and reads the greeting line, as the protocol requires."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.connect(address)
    greeting = b""
    while not greeting.endswith(b"\n"):
        greeting += raw.recv(1)
    assert b'"hello":"l2fast"' in greeting
    return raw


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def address() -> str:
    return control_address(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def server(address: str) -> Iterator[ServerThread]:
    thread = ServerThread(address)
    yield thread
    thread.stop()


def test_request_reply_roundtrip(server: ServerThread, address: str) -> None:
    with ControlClient(address) as client:
        assert client.request({"op": "echo", "value": "héllo"}) == {"ok": True, "echo": "héllo"}
        assert client.request({"op": "echo", "value": [1, 2]})["echo"] == [1, 2]


def test_error_reply_becomes_exception(server: ServerThread, address: str) -> None:
    with ControlClient(address) as client, pytest.raises(ControlRefused, match="unknown op"):
        client.request({"op": "nope"})


def test_second_server_on_same_address_refuses(server: ServerThread, address: str) -> None:
    with pytest.raises(L2fastError, match="already serves"):
        ControlServer(address, AccessPolicy(os.getuid()), lambda c, r: None)


def test_no_daemon_is_a_clear_error(address: str) -> None:
    with pytest.raises(DaemonNotRunning) as info:
        ControlClient(address)
    assert info.value.hint is not None and "l2fast daemon" in info.value.hint


def test_garbage_is_refused_and_server_keeps_serving(server: ServerThread, address: str) -> None:
    for garbage in (b"not json\n", b"[1,2]\n", b'{"no_op": 1}\n', b"\xff\xfe\n"):
        raw = connect_raw(address)
        raw.sendall(garbage)
        assert b'"ok":false' in read_all(raw)
        raw.close()
    assert server.server.bad_requests == 4
    with ControlClient(address) as client:
        assert client.request({"op": "echo", "value": 1})["ok"] is True


def test_over_long_message_is_refused(server: ServerThread, address: str) -> None:
    raw = connect_raw(address)
    # The server may hang up before we finish writing; that is the refusal too.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        raw.sendall(b"x" * (MAX_MESSAGE + 10))
    raw.close()
    with ControlClient(address) as client:
        assert client.request({"op": "echo", "value": 2})["echo"] == 2
    # The server reads the long message in pieces, between serving others: wait for its verdict.
    deadline = time.monotonic() + 10
    while server.server.bad_requests < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.server.bad_requests >= 1


def test_disconnect_mid_request_does_not_hurt(server: ServerThread, address: str) -> None:
    for _ in range(20):
        raw = connect_raw(address)
        raw.sendall(b'{"op": "echo", "val')
        raw.close()
    with ControlClient(address) as client:
        assert client.request({"op": "echo", "value": 3})["echo"] == 3
    assert server.requests[-1] == {"op": "echo", "value": 3}


def test_descriptors_pass_with_scm_rights(server: ServerThread, address: str) -> None:
    with tempfile.TemporaryFile() as a, tempfile.TemporaryFile() as b:
        a.write(b"first")
        b.write(b"second")
        a.flush()
        b.flush()
        with ControlClient(address) as client:
            reply = client.request({"op": "read-fd"}, fds=[a.fileno(), b.fileno()])
    assert reply["contents"] == ["first", "second"]


def test_unclaimed_descriptors_are_closed(server: ServerThread, address: str) -> None:
    with ControlClient(address) as warmup:  # the server loop (and its epoll fd) is running
        warmup.request({"op": "echo", "value": 0})
    time.sleep(0.2)
    before = len(os.listdir("/proc/self/fd"))
    with tempfile.TemporaryFile() as f, ControlClient(address) as client:
        for _ in range(10):
            client.request({"op": "echo", "value": 0}, fds=[f.fileno()])
    # The server thread shares our fd table; it closes unclaimed descriptors just after it
    # replies, so give it a moment before counting.
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_descriptors_reach_a_request_longer_than_one_read(
    server: ServerThread, address: str
) -> None:
    # `l2fast send` of a folder through a daemon: the final request lists every file (700
    # small files made it ~66 KB, more than one read of the socket) and carries the last
    # descriptors. They arrive with its first part and used to be closed as unclaimed before
    # the rest came ("bad send request: StopIteration()").
    with tempfile.TemporaryFile() as a, tempfile.TemporaryFile() as b:
        a.write(b"first")
        b.write(b"second")
        a.flush()
        b.flush()
        padding = "x" * (3 * 65536)
        with ControlClient(address) as client:
            reply = client.request({"op": "read-fd", "pad": padding}, fds=[a.fileno(), b.fileno()])
    assert reply["contents"] == ["first", "second"]


def test_descriptors_belong_to_the_request_they_came_with(
    server: ServerThread, address: str
) -> None:
    # Sent by hand in pieces, each piece read on its own: the descriptors go to the request
    # whose first bytes came with them, not to one that ends in the same read, and descriptors
    # that come with the middle of a request are closed, never handed to a later one.
    raw = connect_raw(address)
    with tempfile.TemporaryFile() as a, tempfile.TemporaryFile() as b:
        a.write(b"A")
        b.write(b"B")
        a.flush()
        b.flush()

        def piece(data: bytes, fds: list[int] | None = None) -> None:
            rights = array.array("i", fds or []).tobytes()
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else []
            raw.sendmsg([data], anc)
            time.sleep(0.15)  # let the server read it alone

        piece(b'{"op": "read-fd", "n": 1', [a.fileno()])  # begins request 1, with A
        piece(b', "more": 1', [b.fileno()])  # the middle of request 1, with B: not B's owner
        piece(b'}\n{"op": "read-fd", "n": 2')  # ends 1, begins 2 (no descriptors)
        piece(b'}\n{"op": "read-fd", "n": 3}\n', [b.fileno()])  # ends 2, then 3 with B
    lines = b""
    while lines.count(b"\n") < 3:
        lines += raw.recv(65536)
    raw.close()
    replies = [json.loads(line) for line in lines.splitlines()]
    assert [r["contents"] for r in replies] == [["A"], [], ["B"]]


def test_filesystem_socket_is_private(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    thread = ServerThread(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, oct(mode)
        with ControlClient(path) as client:
            assert client.request({"op": "echo", "value": 4})["echo"] == 4
    finally:
        thread.stop()
    assert not os.path.exists(path)


def test_policy_rules() -> None:
    policy = AccessPolicy(owner_uid=1234)
    assert policy.allows(PeerCred(1, 0, 0))
    assert policy.allows(PeerCred(1, 1234, 1234))
    assert not policy.allows(PeerCred(1, 4321, 4321))
    assert not AccessPolicy(owner_uid=1234, group="no-such-group-l2fast").allows(
        PeerCred(1, 4321, 4321)
    )


def test_message_buffer_splits_and_bounds() -> None:
    buf = MessageBuffer()
    assert list(buf.feed(b'{"a":1}\n{"b"')) == [{"a": 1}]
    assert list(buf.feed(b":2}\n")) == [{"b": 2}]
    with pytest.raises(ValueError):
        list(MessageBuffer().feed(b"y" * (MAX_MESSAGE + 1)))


@pytest.mark.root
def test_second_uid_is_refused(server: ServerThread, address: str) -> None:
    """A process running as another, unprivileged uid gets one refusal line, then EOF."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, connect, report what the daemon said
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(address)
            data = read_all(sock)  # the refusal line, then EOF
            with contextlib.suppress(OSError):
                sock.sendall(b'{"op": "echo", "value": "intruder"}\n')
            os.write(write_end, data)
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    assert b'"ok":false' in data and b"uid 65534 may not use" in data
    refusal = json.loads(data.splitlines()[0])
    assert "hint" in refusal
    assert server.server.refused == 1
    assert all(r.get("value") != "intruder" for r in server.requests)


def test_a_daemon_that_goes_away_is_a_clear_error_with_what_to_do() -> None:
    address = f"\0l2fast-test-{uuid.uuid4().hex[:12]}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)

    def accept_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.close()  # a daemon that stopped right after accepting, before any greeting

    thread = threading.Thread(target=accept_and_hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(L2fastError) as info:
            ControlClient(address, timeout=5)
        assert info.value.message == "the l2fast daemon closed the connection"
        assert "`l2fast status`" in (info.value.hint or "")
    finally:
        thread.join(5)
        listener.close()


def test_past_max_clients_a_client_is_turned_away_busy_not_refused(
    server: ServerThread, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each client may hold megabytes of input and replies: 30 sending 8 MiB without a newline
    # took a daemon to 694 MB. Past the bound one is told the daemon is busy (exit 1, not the
    # 77 of a user the daemon refuses), and a place frees when a client leaves.
    from l2fast.daemon import control

    monkeypatch.setattr(control, "MAX_CLIENTS", 3)
    held = [ControlClient(address) for _ in range(3)]
    try:
        with pytest.raises(ControlRefused) as caught:
            ControlClient(address)
        assert "serves 3 clients already" in caught.value.message
        assert caught.value.exit_code == 1
        assert server.server.turned_away == 1 and server.server.refused == 0
        held.pop().close()
        deadline = time.monotonic() + 5
        while len(server.server.connections) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        again = ControlClient(address)
        assert again.request({"op": "echo", "value": 1})["echo"] == 1
        held.append(again)
    finally:
        for client in held:
            client.close()
