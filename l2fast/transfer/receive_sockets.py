"""A receiving node's sockets in one fanout group, and the pool of data sockets it lends.

Every AF_PACKET socket bound to l2fast's EtherType on an interface is offered every arriving
frame: the daemon's control socket, its PING responder's and each receive process's. The
offers run in the veth receive softirq on the sending CPU, the bottleneck of a bulk transfer,
and the socket offered a frame first must clone it; with the daemon's two sockets beside a
receive process's, a bulk receiver ran at ~0.8x of a lone socket (bench/extra_sockets.py).

So the daemon puts its sockets in one PACKET_FANOUT_CBPF group: the kernel offers each frame
to the group once, and the group's program (`RawSocket.fanout_route`) hands it to one member:
DATA and FEEDBACK of a routed session to the data socket lent for it, PINGs to this node to
the C responder, everything else to member 0, the control socket, whose own filter then
treats it as it would without a group (bench/fanout_probe.sh measured 0.90-0.95x of a lone
socket).

Members are numbered in joining order, and when one leaves the kernel moves the last member
into its place. So that no number ever changes under the program, the members never leave
while the daemon runs, except the PING responder, which joins last:

    0            the control socket (the group's creator)
    1 .. size    the pool: data sockets opened at start, idle with a filter that takes nothing
    size + 1     the PING responder's socket, if it runs

A link that goes down and up again unlinks every member and links them back in the order the
sockets were created (the kernel walks its per-namespace socket list, appended to on creation
in `packet_create`); the daemon creates them in joining order (control, pool, responder), so
the numbers survive that too (tests/integration/test_send_lab.py sends and pings after a flap).

A receive process borrows a pool socket (`lend`: filtered to its session's DATA, then routed)
and inherits it when it is forked; once the process has ended the controller gives it back
(`LentSocket.give_back`: route removed, filter back to nothing, queue drained, kernel counters
reset). When the pool is empty, or the kernel refuses fanout, a receive process opens its own
socket as before: the control socket's filter drops its session's bulk frames either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from l2fast import native
from l2fast.errors import L2fastError

__all__ = ["POOL_SIZE", "LentSocket", "ReceiveSockets"]

log = logging.getLogger(__name__)

#: Data sockets in the pool: concurrent receive processes that get a routed socket (more
#: still work, with a socket of their own beside the group).
POOL_SIZE = 8
#: Receive buffer of a pool socket (as a receive process's own: bursts at 10+ Gbit/s).
POOL_RCVBUF = 64 << 20
#: Send buffer (a receive process sends FEEDBACK on it).
POOL_SNDBUF = 8 << 20
#: Frames read at most when draining a returned socket (its 64 MiB buffer holds fewer).
_DRAIN_LIMIT = 1 << 20


@dataclass(eq=False)
class LentSocket:
    """A pool socket lent to one receive process for `session`'s DATA."""

    sock: native.RawSocket
    member: int
    session: int
    _pool: ReceiveSockets | None = field(repr=False)

    def give_back(self) -> None:
        """Return the socket (call it once the process that used it has ended); calling it
        again does nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._give_back(self)


class ReceiveSockets:
    """The fanout group of one interface's control socket, its pool and the PING responder.

    Build it with `ReceiveSockets.open` (None when the kernel refuses fanout). Only the
    controller's thread may call it; forked processes only use the sockets they were lent.
    """

    def __init__(self, control: native.RawSocket, size: int = POOL_SIZE) -> None:
        self.control = control
        self.group_id = control.fanout_create()
        self._pool: dict[int, native.RawSocket] = {}
        self._free: list[int] = []
        self._routes: dict[int, int] = {}  # session -> member
        self._echo_member = 0
        self._echo_mac: bytes | None = None
        self._owner = os.getpid()
        #: Sockets lent so far, and receive processes that opened their own instead (the pool
        #: was empty, or its session already had a pooled socket).
        self.lent_total = 0
        self.unpooled = 0
        try:
            for member in range(1, size + 1):
                sock = native.RawSocket.open(
                    control.ifname, control.ethertype, sndbuf=POOL_SNDBUF, rcvbuf=POOL_RCVBUF
                )
                self._pool[member] = sock
                sock.set_filter(native.SocketFilter.REJECT)
                sock.fanout_join(self.group_id)
                self._drain(sock)
        except BaseException:
            self.close()
            raise
        self._free = sorted(self._pool, reverse=True)  # pop() lends the lowest number first
        self._apply()

    @classmethod
    def open(cls, control: native.RawSocket, size: int = POOL_SIZE) -> ReceiveSockets | None:
        """The group for `control`, or None (logged) when the kernel refuses it or
        `L2FAST_FANOUT=0` asks for separate sockets."""
        if os.environ.get("L2FAST_FANOUT", "1") == "0":
            log.info("receive processes open their own sockets (L2FAST_FANOUT=0)")
            return None
        try:
            group = cls(control, size)
        except L2fastError as exc:
            log.warning("receive processes open their own sockets: %s", exc.message)
            return None
        log.info("fanout group %#06x: %d pooled data sockets", group.group_id, size)
        return group

    # --- the PING responder --------------------------------------------------------------

    def add_echo(self, join: Callable[[int], None], mac: bytes) -> bool:
        """Make the (started) PING responder the last member: `join(group_id)` joins its
        socket (`EchoResponder.join_fanout`); then PINGs to `mac` are routed to it.

        Returns True when PINGs now go to it. Raises what `join` raises when its socket
        could not join (it stays outside the group and still gets every PING). Returns False
        when it joined but the program routing PINGs to it could not be installed: PINGs then
        reach member 0, whose filter drops them while a responder runs, so the caller must
        stop the responder (its socket, the last member, leaves without renumbering anyone).
        """
        join(self.group_id)
        self._echo_member = len(self._pool) + 1
        self._echo_mac = mac
        try:
            self._apply()
        except L2fastError as exc:
            log.warning("PINGs could not be routed to the responder: %s", exc.message)
            self._echo_member = 0
            self._echo_mac = None
            return False
        return True

    def remove_echo(self) -> None:
        """The responder stops: PINGs go to the control socket again (before its socket
        leaves; it is the last member, so no other number changes)."""
        if self._echo_member:
            self._echo_member = 0
            self._echo_mac = None
            self._apply()

    # --- lending ----------------------------------------------------------------------------

    def lend(self, session: int) -> LentSocket | None:
        """A pool socket filtered to DATA of `session` and routed to, or None when all are
        lent (the caller opens a socket of its own)."""
        if not self._free or session in self._routes:
            self.unpooled += 1
            return None
        member = self._free.pop()
        sock = self._pool[member]
        try:
            # Idle in the pool it took nothing (REJECT) but may hold a link-down error since.
            sock.take_error()
            sock.set_filter(native.SocketFilter.DATA, session)
            self._routes[session] = member
            self._apply()
        except (L2fastError, ValueError) as exc:
            self._routes.pop(session, None)
            self._free.append(member)
            log.warning("could not lend a pooled socket for session %#x: %s", session, exc)
            return None
        self.lent_total += 1
        return LentSocket(sock, member, session, self)

    def _give_back(self, lent: LentSocket) -> None:
        if self._owner != os.getpid() or lent.member not in self._pool:
            return  # a forked child's copy, or the group is closed
        self._routes.pop(lent.session, None)
        with contextlib.suppress(L2fastError):
            self._apply()
        sock = lent.sock
        try:
            sock.set_filter(native.SocketFilter.REJECT)
            self._drain(sock)
        except L2fastError as exc:
            log.warning("pooled socket %d not reused: %s", lent.member, exc.message)
            return  # stays a member, never lent again: the numbering must not change
        self._free.append(lent.member)
        self._free.sort(reverse=True)

    @staticmethod
    def _drain(sock: native.RawSocket) -> None:
        """Discard what is queued (frames of the previous session), the kernel's counters, and
        a pending error: a socket that sat in the pool while the link went down and up again
        holds ENETDOWN, which would fail its next borrower's first read (a process that opens
        its own socket after the link came back never sees it)."""
        sock.take_error()
        got = errors = 0
        while got < _DRAIN_LIMIT and errors < 2:
            try:
                n = len(sock.recv_frames(0, 64))
            except L2fastError:
                errors += 1  # an error raised while reading: taken now, read on
                sock.take_error()
                continue
            if not n:
                break
            got += n
        sock.stats()

    def _apply(self) -> None:
        self.control.fanout_route(self._routes, self._echo_member, self._echo_mac)

    # --- status and end -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For `l2fast status`: the group, the pool and its use."""
        return {
            "fanout_group": self.group_id,
            "pool": len(self._pool),
            "lent": len(self._pool) - len(self._free),
            "lent_total": self.lent_total,
            "unpooled": self.unpooled,
            "ping_responder_member": self._echo_member or None,
        }

    def close(self) -> None:
        """Close the pool's sockets (the daemon stops; the control socket is the runner's)."""
        pool, self._pool = self._pool, {}
        self._free = []
        self._routes = {}
        for sock in pool.values():
            sock.close()
