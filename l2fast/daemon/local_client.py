"""`LocalClient`: a node of its own inside a command, for when no daemon runs on the interface.

It runs the daemon's own `NodeEngine`, `NodeRunner` and `NodeService` for the command's
duration and answers the same JSON requests in-process, so a command's code does not care
whether it got this or a `DaemonClient` (l2fast.daemon.client). `connect()` imports this
module only when it needs it: the engine and its layers are most of a command's start-up time.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from l2fast import native
from l2fast.daemon.client import CLOSE_WAIT_S, NodeClient
from l2fast.daemon.runner import NodeRunner, keyed_control_filter
from l2fast.daemon.service import NodeService
from l2fast.errors import L2fastError
from l2fast.node.auth import LanKey
from l2fast.node.node import NodeEngine
from l2fast.wire.constants import Caps

__all__ = ["LocalClient"]


class _LocalConnection:
    """The in-process stand-in for a control-socket client: replies queue up in `outbox`."""

    def __init__(self) -> None:
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        self.outbox: deque[dict[str, Any]] = deque()

    @property
    def backlog(self) -> int:
        """Nothing waits on a socket in-process."""
        return 0

    def send(self, obj: dict[str, Any]) -> bool:
        if self.closed:
            return False
        self.outbox.append(obj)
        return True

    def close(self) -> None:
        self.closed = True
        for callback in self.on_close:
            callback()
        self.on_close.clear()


class LocalClient(NodeClient):
    """A node of its own inside this command (no daemon runs on the interface).

    It opens the raw socket (root or CAP_NET_RAW), announces itself with a HELLO asking for
    answers, and serves requests with the daemon's code until closed. It announces the chat
    capability only with `chats` (a command that stays to take messages): a one-shot command
    that did was a target of every `chat --all` on the LAN until its HELLO expired (~17 s after
    it ended), each failing after 5 s of silence.
    """

    def __init__(
        self, ifname: str, name: str, key: LanKey | None = None, *, chats: bool = False
    ) -> None:
        super().__init__(ifname)
        sock = native.RawSocket.open(ifname)
        try:
            # DATA and FEEDBACK go to the transfer sockets, never through this loop.
            sock.set_filter(native.SocketFilter.CONTROL)
            sock.enable_rx_timestamps()  # round trips end when the frame arrives
            caps = Caps.CHAT | Caps.ZLIB if chats else Caps.ZLIB
            engine = NodeEngine(sock.mac, name, sock.mtu, rng=random.Random(), caps=caps, key=key)
        except L2fastError:
            sock.close()
            raise
        self.runner = NodeRunner(sock, engine)
        self.runner.on_bulk_sessions = keyed_control_filter(sock)
        self.service = NodeService(self.runner, one_shot=True)
        self._conn = _LocalConnection()
        engine.start(self.runner.now())
        self.runner.flush()

    def send(self, request: dict[str, Any], fds: list[int] | None = None) -> None:
        """Serve one request in-process (`fds`: descriptors, as SCM_RIGHTS would pass them)."""
        if fds:
            request = {**request, "_fds": list(fds)}
        self.service.handle(self._conn, request)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Run the node until a reply is ready or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        while not self._conn.outbox and not self._held:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.runner.step(left)
        messages = [*self._held, *self._conn.outbox]
        self._held.clear()
        self._conn.outbox.clear()
        return messages

    def add_reader(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Watch `fileobj` in the node's own loop."""
        self.runner.add_reader(fileobj, callback)

    def remove_reader(self, fileobj: Any) -> None:
        """Stop watching `fileobj`."""
        self.runner.remove_reader(fileobj)

    def close(self) -> None:
        """Close sessions in order (briefly waiting for the peers), then the socket."""
        self._conn.close()
        try:
            self.service.close_sessions(CLOSE_WAIT_S)
        finally:
            self.runner.close()
