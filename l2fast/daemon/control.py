"""The daemon's control socket: how the CLI talks to `l2fast daemon`.

Transport: a Unix stream socket. By default its address is in the *abstract* namespace
(`\\0l2fast/<ifname>`), which Linux scopes to the network namespace, so daemons in two lab hosts on
one machine never collide, and a second daemon on the same interface in the same namespace fails
to bind (that is the single-instance lock). A filesystem path can be chosen instead; it is then
created under umask 077 (and opened to a group only when one is configured).

Who may connect: root, the daemon's own uid, or members of a configured group, decided from
`SO_PEERCRED`; everyone else gets one refusal line and is disconnected.

Framing: one JSON object per line (UTF-8), at most `MAX_MESSAGE` bytes. A request is
`{"op": NAME, ...}`; replies are `{"ok": true, ...}` or `{"ok": false, "error": ..., "hint": ...}`;
streaming operations send several objects and end with `"done": true`. File descriptors travel
with a request as `SCM_RIGHTS` ancillary data, so the daemon never opens user paths itself.
"""

from __future__ import annotations

import array
import contextlib
import errno
import grp
import json
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2fast import __version__
from l2fast.errors import L2fastError

# One request or reply line, bounded so a client cannot exhaust memory. It must hold a chat
# message at the default 1 MiB cap even when JSON escapes every character (up to 6 bytes each).
MAX_MESSAGE = 8 << 20
MAX_FDS = 16  # descriptors accepted with one request
#: Clients served at once. Each may hold up to MAX_BACKLOG of unread input and replies: past
#: this a client is turned away (busy), so a local user's connect loop or a pile of forgotten
#: `watch` clients cannot take the daemon's memory (30 clients with 8 MiB each took 694 MB).
MAX_CLIENTS = 64
# Replies waiting for a client that reads slowly; beyond this it is dropped rather than let it
# hold the daemon's memory (one full-size message always fits).
MAX_BACKLOG = 2 * MAX_MESSAGE
#: accept(2) failures that mean "no resources now" rather than a broken listener.
_ACCEPT_STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# How long the node's service takes at most for some requests, which its clients size their own
# timeouts from (l2fast.commands.chat).
#: How long a request naming an unknown peer waits for discovery to find it.
RESOLVE_WAIT_S = 2.0
#: How long a one-shot `chat --all` listens for peers before sending.
SETTLE_WAIT_S = 0.6
#: Backstop for one chat request; the engine normally decides well within it (<= ~10 s).
CHAT_GUARD_S = 30.0


class DaemonNotRunning(L2fastError):
    """No daemon listens on the control socket for this interface."""


class ControlRefused(L2fastError):
    """The daemon refused this user, or the request."""


class DaemonClosed(L2fastError):
    """The daemon closed the connection (it stopped or restarted) before the answer came."""


def control_address(ifname: str, path: str | None = None) -> str:
    """The control socket address for the daemon on `ifname` (abstract unless `path`)."""
    return path if path else f"\0l2fast/{ifname}"


def running_daemons(table: str = "/proc/net/unix") -> list[str]:
    """Interfaces whose daemon listens on its abstract control socket in this network
    namespace (`/proc/net/unix` lists a namespace's own sockets), sorted."""
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return []
    found = set()
    for line in lines:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is a listening socket.
        if len(fields) >= 8 and fields[7].startswith("@l2fast/") and int(fields[3], 16) & 0x10000:
            found.add(fields[7][len("@l2fast/") :])
    return sorted(found)


def describe_address(address: str) -> str:
    """Printable form of an address (abstract names start with '@', as in `ss -x`)."""
    return "@" + address[1:] if address.startswith("\0") else address


@dataclass(frozen=True, slots=True)
class PeerCred:
    """The connecting process, from SO_PEERCRED."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """Read SO_PEERCRED of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return PeerCred(pid, uid, gid)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may use the control socket: root, `owner_uid`, and members of `group` if set."""

    owner_uid: int
    group: str | None = None

    def allows(self, cred: PeerCred) -> bool:
        """True when the peer may issue requests."""
        if cred.uid in (0, self.owner_uid):
            return True
        if self.group is None:
            return False
        try:
            group_gid = grp.getgrnam(self.group).gr_gid
            user = pwd.getpwuid(cred.uid).pw_name
        except KeyError:
            return False
        return cred.gid == group_gid or group_gid in os.getgrouplist(user, cred.gid)


def encode_message(obj: dict[str, Any]) -> bytes:
    """One control message as a JSON line."""
    line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    if len(line) > MAX_MESSAGE:
        raise L2fastError(f"control message of {len(line)} bytes exceeds {MAX_MESSAGE}")
    return line


class MessageBuffer:
    """Accumulates bytes from a stream and yields complete JSON objects, bounded in size."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def partial(self) -> bool:
        """True while a message has begun and not yet ended."""
        return bool(self._buf)

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Add received bytes; yield every complete message. Raises ValueError on garbage."""
        for line in self.lines(data):
            yield self.decode(line)

    def lines(self, data: bytes) -> list[bytes]:
        """Add received bytes; the complete lines they end, undecoded. ValueError when a
        message grows past MAX_MESSAGE."""
        self._buf += data
        lines: list[bytes] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_MESSAGE:
                    raise ValueError(f"message longer than {MAX_MESSAGE} bytes")
                return lines
            if end > MAX_MESSAGE:
                raise ValueError(f"message longer than {MAX_MESSAGE} bytes")
            lines.append(bytes(self._buf[:end]))
            del self._buf[: end + 1]

    @staticmethod
    def decode(line: bytes) -> dict[str, Any]:
        """One line as a message. Raises ValueError (or UnicodeDecodeError) on garbage."""
        obj = json.loads(line.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("a control message must be a JSON object")
        return obj


@dataclass
class ControlConnection:
    """One connected client, as the daemon sees it."""

    sock: socket.socket
    cred: PeerCred
    key: int = -1  # the descriptor number it was registered under (fileno() is -1 once closed)
    inbox: MessageBuffer = field(default_factory=MessageBuffer)
    fds: list[int] = field(default_factory=list)  # received with SCM_RIGHTS, not yet claimed
    # Descriptors that came with the first part of a request whose end has not come yet.
    held_fds: list[int] = field(default_factory=list)
    closed: bool = False
    # Streaming operations (chat watch, transfer progress) register here to be told of the close.
    on_close: list[Callable[[], None]] = field(default_factory=list)
    # Bytes sent by `send` that the socket has not taken yet (the socket never blocks).
    outbox: bytearray = field(default_factory=bytearray)
    # Told True when output starts waiting for the socket to become writable, False when it
    # drained: the loop then calls `flush` on writability.
    on_backlog: Callable[[bool], None] | None = None
    write_wanted: bool = False  # what on_backlog was last told

    @property
    def backlog(self) -> int:
        """Bytes of replies not yet taken by the socket."""
        return len(self.outbox)

    def send(self, obj: dict[str, Any]) -> bool:
        """Queue one message and send what the socket takes now, without blocking.

        False (and the connection closed) if the client is gone, or reads so slowly that more
        than MAX_BACKLOG bytes wait for it.
        """
        if self.closed:
            return False
        data = encode_message(obj)
        if self.outbox and len(self.outbox) + len(data) > MAX_BACKLOG:
            self.close()
            return False
        self.outbox += data
        return self.flush()

    def flush(self) -> bool:
        """Send what waits in `outbox` as far as the socket takes it; False if the client left."""
        if self.closed:
            return False
        try:
            while self.outbox:
                sent = self.sock.send(self.outbox)
                del self.outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()
            return False
        waiting = bool(self.outbox)
        if self.on_backlog is not None and waiting != self.write_wanted:
            self.write_wanted = waiting
            self.on_backlog(waiting)
        return True

    def take_fds(self) -> list[int]:
        """Descriptors that came with the current request; the caller owns (and closes) them."""
        fds, self.fds = self.fds, []
        return fds

    def close(self) -> None:
        """Close the connection, any unclaimed descriptors, and notify streaming operations."""
        if self.closed:
            return
        self.closed = True
        _close_all(self.take_fds())
        _close_all(self.held_fds)
        for callback in self.on_close:
            callback()
        self.on_close.clear()
        self.sock.close()


RequestHandler = Callable[[ControlConnection, dict[str, Any]], None]


def _close_all(fds: list[int]) -> None:
    """Close descriptors nobody claimed, and forget them."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


class ControlServer:
    """Listening side, driven by the daemon's selector loop (it never blocks).

    `handler(conn, request)` is called for every well-formed request from an allowed peer; it
    answers with `conn.send(...)`, now or later.
    """

    def __init__(self, address: str, policy: AccessPolicy, handler: RequestHandler) -> None:
        self.address = address
        self.policy = policy
        self.handler = handler
        self.connections: dict[int, ControlConnection] = {}
        self.refused = 0  # peers turned away by the access policy
        self.turned_away = 0  # allowed clients turned away because MAX_CLIENTS are served
        self.accept_failures = 0  # accept(2) out of descriptors or memory
        #: The resource error of the last failed accept, for the daemon to act on and clear.
        self.starved: OSError | None = None
        self.bad_requests = 0  # garbage, over-long or non-object messages
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            self._bind()
        except BaseException:
            self.listener.close()
            raise
        self.listener.listen(16)

    def _bind(self) -> None:
        if self.address.startswith("\0"):
            try:
                self.listener.bind(self.address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise L2fastError(
                        f"another l2fast daemon already serves "
                        f"{describe_address(self.address)} in this network namespace",
                        hint="stop it first, or use `l2fast status` to talk to it",
                    ) from None
                raise
            return
        # Filesystem socket: refuse to clobber a live daemon; replace a stale socket file.
        if os.path.exists(self.address):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.address)
                raise L2fastError(
                    f"another l2fast daemon is listening on {self.address}",
                    hint="stop it first, or choose another --control path",
                )
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(self.address)
            finally:
                probe.close()
        old_umask = os.umask(0o077)
        try:
            self.listener.bind(self.address)
        finally:
            os.umask(old_umask)
        if self.policy.group is not None:
            os.chown(self.address, -1, grp.getgrnam(self.policy.group).gr_gid)
            os.chmod(self.address, 0o660)

    def fileno(self) -> int:
        """The listening socket's descriptor, for the selector."""
        return self.listener.fileno()

    def accept(self) -> ControlConnection | None:
        """Accept one client (call when the listener is readable); None if refused or none."""
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno not in _ACCEPT_STARVED:
                raise
            # Out of descriptors or memory: the client waits in the backlog. The listener
            # stays readable, so the daemon stops watching it for a moment (`starved`) rather
            # than spin on it.
            self.accept_failures += 1
            self.starved = exc
            return None
        cred = peer_credentials(sock)
        # The server speaks first (a greeting or the refusal), and clients send nothing before
        # reading it: closing a Unix socket that holds unread data would reset the connection
        # and lose the refusal line.
        allowed = self.policy.allows(cred)
        if allowed and len(self.connections) >= MAX_CLIENTS:
            allowed = False
            self.turned_away += 1
            greeting: dict[str, Any] = {
                "ok": False,
                "busy": True,
                "error": f"this l2fast daemon serves {MAX_CLIENTS} clients already",
                "hint": "end some of its clients (interactive chats, UIs, watching commands), "
                "then try again",
            }
        elif allowed:
            greeting = {"ok": True, "hello": "l2fast", "version": __version__}
        else:
            self.refused += 1
            greeting = {
                "ok": False,
                "error": f"uid {cred.uid} may not use this l2fast daemon",
                "hint": "run as root or as the daemon's user, or ask for the daemon to be "
                "started with --group GROUP that you belong to",
            }
        try:
            sock.settimeout(0.5)
            sock.sendall(encode_message(greeting))
        except OSError:
            allowed = False
        if not allowed:
            sock.close()
            return None
        sock.setblocking(False)
        conn = ControlConnection(sock, cred, key=sock.fileno())
        self.connections[conn.key] = conn
        return conn

    def service(self, conn: ControlConnection) -> None:
        """Read what a client sent (call when its socket is readable) and dispatch requests."""
        fds = array.array("i")
        try:
            data, ancdata, _flags, _addr = conn.sock.recvmsg(
                65536, socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(conn)
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % fds.itemsize
                fds.frombytes(payload[:usable])
        arrived = list(fds)
        if not data:
            _close_all(arrived)
            self.drop(conn)
            return
        try:
            self._dispatch(conn, data, arrived)
        except (ValueError, UnicodeDecodeError) as exc:
            self.bad_requests += 1
            conn.send({"ok": False, "error": f"bad request: {exc}"})
            self.drop(conn)
        finally:
            # Descriptors not claimed by the request they came with must not leak.
            _close_all(arrived)
            _close_all(conn.take_fds())

    def _dispatch(self, conn: ControlConnection, data: bytes, arrived: list[int]) -> None:
        """Handle the requests `data` completes, each with the descriptors it came with.

        A client sends a request and its descriptors in one sendmsg, so they come with the
        request's first bytes, and the kernel ends a read after the part that carried them
        (unix(7): "ancillary data forms a kind of barrier"). The descriptors of a
        read therefore belong to the last request that begins in it, even when that request
        ends in a later read (a long one, such as `send` of a large folder); until it ends they
        wait in `held_fds`. Descriptors that come with the middle of a request have no request
        and are closed (`arrived` is emptied as requests take their share).
        """
        continued = conn.inbox.partial  # a request begun in an earlier read ends here, or later
        lines = conn.inbox.lines(data)
        # Who owns what: the request that ends first here (if it began earlier) the held
        # descriptors, the last request that begins here those that arrived now.
        owners: dict[int, list[int]] = {}
        if continued and lines:
            owners[0], conn.held_fds = conn.held_fds, []
        if conn.inbox.partial and (lines or not continued):  # the last request begins here
            conn.held_fds, arrived[:] = list(arrived), []
        elif lines and not (continued and len(lines) == 1):  # the last complete one began here
            owners[len(lines) - 1], arrived[:] = list(arrived), []
        try:
            for i, line in enumerate(lines):
                request = conn.inbox.decode(line)
                if not isinstance(request.get("op"), str):
                    raise ValueError("a request needs a string 'op'")
                conn.fds = owners.pop(i, [])
                self.handler(conn, request)
                _close_all(conn.fds)
                if conn.closed:
                    break
        finally:  # requests not reached (garbage, a closed connection) leave theirs behind
            for fds in owners.values():
                _close_all(fds)

    def drop(self, conn: ControlConnection) -> None:
        """Forget and close a client."""
        self.connections.pop(conn.key, None)
        conn.close()

    def close(self) -> None:
        """Close every client and the listener; remove a filesystem socket."""
        for conn in list(self.connections.values()):
            conn.close()
        self.connections.clear()
        self.listener.close()
        if not self.address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


def _closed() -> DaemonClosed:
    return DaemonClosed(
        "the l2fast daemon closed the connection",
        hint="it stopped or restarted: `l2fast status` tells whether one runs now; its log "
        "(stderr) says why",
    )


class ControlClient:
    """CLI side: one connection to the daemon, blocking, with a timeout."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self._inbox = MessageBuffer()
        self._pending: list[dict[str, Any]] = []
        try:
            self.sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise DaemonNotRunning(
                f"no l2fast daemon at {describe_address(address)}",
                hint="start one with `l2fast daemon -i IFACE`",
            ) from None
        try:
            self.greeting = self.receive()  # the daemon speaks first: hello or refusal
            try:
                check_reply(self.greeting)
            except ControlRefused as refused:
                # This user may not use the daemon: a permission error (exit 77, as for raw
                # sockets without the capability), not a failed request. A busy daemon is not.
                if not self.greeting.get("busy"):
                    refused.exit_code = 77
                raise
        except BaseException:
            self.sock.close()
            raise

    def send(self, request: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send one request, with descriptors passed by SCM_RIGHTS."""
        data = encode_message(request)
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            sent = self.sock.sendmsg([data], ancillary)
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)

    def receive(self) -> dict[str, Any]:
        """The next message from the daemon. Raises ControlRefused for a refusal at connect."""
        while not self._pending:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise L2fastError(
                    "the l2fast daemon did not answer in time",
                    hint="check it is alive with `l2fast status`; see its log on stderr",
                ) from None
            if not data:
                raise _closed()
            self._pending.extend(self._inbox.feed(data))
        return self._pending.pop(0)

    @property
    def has_pending(self) -> bool:
        """True when messages already read are waiting for `receive` or `read_ready`."""
        return bool(self._pending)

    def fileno(self) -> int:
        """The socket's descriptor, for a caller that waits on it beside other things."""
        return self.sock.fileno()

    def read_ready(self) -> list[dict[str, Any]]:
        """Call when the socket is readable: every complete message so far (maybe none).

        Raises L2fastError when the daemon closed the connection.
        """
        if not self._pending:
            data = self.sock.recv(65536)
            if not data:
                raise _closed()
            self._pending.extend(self._inbox.feed(data))
        messages, self._pending = self._pending, []
        return messages

    def request(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        """Send a request and return its (single) reply; raise on `ok: false`."""
        self.send(request, fds)
        reply = self.receive()
        check_reply(reply)
        return reply

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def check_reply(reply: dict[str, Any]) -> None:
    """Raise the daemon's error as ours when a reply says `ok: false`."""
    if reply.get("ok") is False:
        raise ControlRefused(str(reply.get("error", "request failed")), reply.get("hint"))
