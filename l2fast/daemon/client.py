"""How a command reaches a node: the daemon on its interface if one runs, else an engine of its own.

`connect()` picks the interface (`-i`, or the only one that is up), tries the daemon's control
socket and, for commands that may run without one (`discover`, `ping`, `chat`), falls back to a
`LocalClient` (l2fast.daemon.local_client): the same `NodeEngine`, `NodeRunner` and
`NodeService` as the daemon, inside the command for its duration (issue 4, "Without a daemon").
Both speak the same JSON requests, so a command's code does not care which it got.
"""

from __future__ import annotations

import argparse
import itertools
import os
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from l2fast.daemon.control import (
    ControlClient,
    DaemonNotRunning,
    check_reply,
    control_address,
    running_daemons,
)
from l2fast.daemon.interfaces import NoInterface, choose_interface
from l2fast.errors import L2fastError, as_root
from l2fast.node.auth import load_key_file
from l2fast.wire.constants import MAX_NAME_BYTES

__all__ = [
    "DaemonClient",
    "NodeClient",
    "add_node_arguments",
    "connect",
    "default_name",
]

#: How long a one-shot engine waits, when it is done, for its peers to acknowledge its CLOSEs.
CLOSE_WAIT_S = 1.0


def default_name() -> str:
    """The name a node announces unless told otherwise: the host name, cut to 64 bytes."""
    raw = socket.gethostname().encode("utf-8")[:MAX_NAME_BYTES]
    return raw.decode("utf-8", errors="ignore") or "l2fast"


def add_node_arguments(
    parser: argparse.ArgumentParser, *, one_shot: bool, interface_flag: str = "-i"
) -> None:
    """`-i IFACE`, and `--name` for commands that run their own engine without a daemon."""
    parser.add_argument(
        interface_flag,
        "--interface",
        metavar="IFACE",
        help="network interface (default: the only non-loopback interface that is up)",
    )
    if one_shot:
        parser.add_argument(
            "--name",
            help="name to announce when no daemon runs here and this command runs its own "
            "engine (default: the host name)",
        )


class NodeClient:
    """One conversation with a node: send requests, receive their replies and events."""

    #: True when a daemon serves the requests, False for an in-process engine.
    via_daemon = False

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self._ids = itertools.count(1)
        # Messages read while waiting for another request's reply, returned by the next poll.
        self._held: deque[dict[str, Any]] = deque()

    def send(self, request: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send one request, with descriptors for the node to use (SCM_RIGHTS)."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Messages that arrived within `timeout` seconds (maybe none), running readers."""
        raise NotImplementedError

    def add_reader(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Call `callback()` from `poll` whenever `fileobj` is readable (e.g. stdin)."""
        raise NotImplementedError

    def remove_reader(self, fileobj: Any) -> None:
        """Stop watching `fileobj`."""
        raise NotImplementedError

    def close(self) -> None:
        """End the conversation (and a local engine, with its sessions closed in order)."""
        raise NotImplementedError

    def new_id(self) -> int:
        """A request id not used before on this client."""
        return next(self._ids)

    def stream(
        self, request: dict[str, Any], timeout: float, fds: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Send `request`; yield its replies until one is final (`done`, or without `event`).

        Raises the node's refusal as ControlRefused, and L2fastError when nothing comes for
        `timeout` seconds.
        """
        request = {**request, "id": self.new_id()}
        self.send(request, fds)
        mine: deque[dict[str, Any]] = deque()  # this request's replies, read but not yet yielded
        strays: list[dict[str, Any]] = []  # other requests' replies and events, kept for later
        try:
            while True:
                message = self._next_for(request, timeout, mine, strays)
                check_reply(message)
                yield message
                if message.get("done") or "event" not in message:
                    return
        finally:
            self._held.extend(strays)

    def _next_for(
        self,
        request: dict[str, Any],
        timeout: float,
        mine: deque[dict[str, Any]],
        strays: list[dict[str, Any]],
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not mine:
            left = deadline - time.monotonic()
            if left <= 0:
                raise L2fastError(
                    f"no answer to {request['op']!r} within {timeout:g} s",
                    hint="the node may be overloaded; see the daemon log",
                )
            for msg in self.poll(left):
                (mine if msg.get("id") == request["id"] else strays).append(msg)
        return mine.popleft()

    def request(
        self, request: dict[str, Any], timeout: float, fds: list[int] | None = None
    ) -> dict[str, Any]:
        """Send `request` (with `fds`) and return its single reply (raises on `ok: false`)."""
        *_, last = self.stream(request, timeout, fds=fds)
        return last

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class DaemonClient(NodeClient):
    """Requests to `l2fast daemon` over its control socket."""

    via_daemon = True

    def __init__(self, ifname: str, control: ControlClient) -> None:
        super().__init__(ifname)
        self.control = control
        self._selector = selectors.DefaultSelector()
        self._selector.register(control.fileno(), selectors.EVENT_READ, None)

    def send(self, request: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send one request to the daemon (`fds` go along with SCM_RIGHTS)."""
        self.control.send(request, fds)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Messages from the daemon within `timeout` s; runs the readers that became ready."""
        if self._held:
            held = list(self._held)
            self._held.clear()
            return held
        if self.control.has_pending:
            return self.control.read_ready()
        messages: list[dict[str, Any]] = []
        for key, _ in self._selector.select(max(0.0, timeout)):
            if key.data is None:
                messages.extend(self.control.read_ready())
            else:
                key.data()
        return messages

    def add_reader(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Watch `fileobj` beside the control socket."""
        self._selector.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj: Any) -> None:
        """Stop watching `fileobj`."""
        self._selector.unregister(fileobj)

    def close(self) -> None:
        """Close the connection (the daemon carries on)."""
        self._selector.close()
        self.control.close()


def interface_of_node(interface: str | None) -> str:
    """`interface`, else the only interface that is up, else the interface of the only daemon
    running here: a daemon keeps serving `status` while its link is down, and with several
    links up the one a daemon serves is the one meant."""
    try:
        return choose_interface(interface)
    except NoInterface:
        daemons = running_daemons()
        if interface is None and len(daemons) == 1:
            return daemons[0]
        raise


def connect(
    interface: str | None,
    *,
    local_ok: bool,
    name: str | None = None,
    timeout: float = 10.0,
    chats: bool = False,
) -> NodeClient:
    """A client for the node on `interface` (or the default interface).

    The daemon if one runs there; otherwise, with `local_ok`, a LocalClient, and without it
    DaemonNotRunning. A daemon that refuses this user raises ControlRefused (no fallback: the
    user asked that node, and it said no). `chats`: the command stays to take messages
    (interactive chat, the UI), so a LocalClient tells the LAN it takes chat.
    """
    ifname = interface_of_node(interface)
    try:
        control = ControlClient(control_address(ifname), timeout=timeout)
    except DaemonNotRunning:
        if not local_ok:
            raise DaemonNotRunning(
                f"no l2fast daemon runs on {ifname} in this network namespace",
                hint=f"start one: {as_root(f'l2fast daemon -i {ifname}')}",
            ) from None
        # Imported here, not at the top: the engine, runner and service are most of what a
        # command would import, and commands served by a daemon (and every --help) never use
        # them (tests/unit/test_cli_startup.py).
        from l2fast.daemon.local_client import LocalClient

        key_file = os.environ.get("L2FAST_KEY_FILE")
        key = load_key_file(key_file) if key_file else None
        return LocalClient(ifname, name or default_name(), key=key, chats=chats)
    return DaemonClient(ifname, control)
