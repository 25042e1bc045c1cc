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

A receive process borrows a pool socket (`lend`: filtered to its session's DATA, drained,
routed, and then unfiltered, since the group's program alone decides what reaches it) and
inherits it when it is forked; once the process has ended the controller gives it back
(`LentSocket.give_back`). It then stays routed to its session for the session's next file
(changing the program costs the loop an RCU grace period) until the session ends
(`release_session`) or another session needs it; before each loan its queue is drained and its
kernel counters and pending error are taken. A process that outlives its kill parks its socket,
unrouted, until it is gone. When the pool is empty, or the kernel refuses fanout, a receive
process opens its own socket as before: the control socket's filter drops its session's bulk
frames either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
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

    def give_back(self, process: BaseProcess | None = None) -> None:
        """Return the socket once `process`, the one that used it, has ended; a process still
        alive (it survived a kill) parks it until it has. Calling it again does nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._give_back(self, process)


class ReceiveSockets:
    """The fanout group of one interface's control socket, its pool and the PING responder.

    Build it with `ReceiveSockets.open` (None when the kernel refuses fanout). Only the
    controller's thread may call it; forked processes only use the sockets they were lent.

    Changing the group's program waits for an RCU grace period in the kernel (`synchronize_net`
    in `PACKET_FANOUT_DATA`: ~8 ms here, on the controller's loop), so a socket given back
    stays routed to its session (*reserved*) and the session's next file (a folder's files
    follow each other on one session) borrows it again with no program change; a reserved
    socket is freed when its session ends (`release_session`) or taken over, least recently
    used first, when no socket is free. Measured: a folder of 60 x 2 MiB files took 4.0-4.1 s
    with a route change per file, 3.25 s with separate sockets.
    """

    def __init__(self, control: native.RawSocket, size: int = POOL_SIZE) -> None:
        self.control = control
        self.group_id = control.fanout_create()
        self._pool: dict[int, native.RawSocket] = {}
        self._free: set[int] = set()  # lent lowest number first
        self._routes: dict[int, int] = {}  # session -> member: lent and reserved
        self._lent: dict[int, int] = {}  # member -> session, while a process has it
        self._reserved: OrderedDict[int, int] = OrderedDict()  # session -> member, idle
        self._parked: list[tuple[int, BaseProcess]] = []  # members whose process lives on
        self._ended: set[int] = set()  # sessions that ended while their socket was lent
        self._echo_member = 0
        self._echo_mac: bytes | None = None
        self._echo_joined = False
        self._owner = os.getpid()
        #: Loans so far, those that took a socket still reserved for their session, and
        #: receive processes that opened their own instead (the pool was empty, or their
        #: session already had a pooled socket lent).
        self.lent_total = 0
        self.reused = 0
        self.unpooled = 0
        #: Frames found queued on a pooled socket when it was next lent or freed: they came
        #: while no receive process read it (the session between files: late retransmissions
        #: of its previous file, or DATA forged with its id), and the kernel's drops there.
        self.idle_frames = 0
        self.idle_kernel_drops = 0
        try:
            for member in range(1, size + 1):
                sock = native.RawSocket.open(
                    control.ifname, control.ethertype, sndbuf=POOL_SNDBUF, rcvbuf=POOL_RCVBUF
                )
                self._pool[member] = sock
                sock.set_filter(native.SocketFilter.REJECT)
                sock.fanout_join(self.group_id)
                # Not counted: before its filter and the group it saw copies of what the
                # control socket got and counts.
                self._drain(sock, count=False)
            self._free = set(self._pool)
            self._apply()
        except BaseException:
            self.close()
            raise

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

        Returns True when PINGs now go to it. Raises L2fastError (what `join` raises, or
        for a second responder) when its socket did not join: it stays outside the group and
        still gets every PING. Returns False when it joined but the program routing PINGs to
        it could not be installed: PINGs then reach member 0, whose filter drops them while
        a responder runs, so the caller must stop the responder.
        """
        if self._echo_joined:
            # An earlier responder's socket may still be a member (forked children hold a
            # copy until they exit), so the new one's number is not known.
            raise L2fastError("a responder joined this group before")
        join(self.group_id)
        self._echo_joined = True
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
        """The responder stops: PINGs go to the control socket again. Its socket is the last
        member, so when it leaves (once no forked child holds a copy) no number changes."""
        if self._echo_member:
            self._echo_member = 0
            self._echo_mac = None
            self._apply()

    # --- lending ----------------------------------------------------------------------------

    def lend(self, session: int) -> LentSocket | None:
        """A pool socket filtered to DATA of `session` and routed to, or None when none can
        be had (the caller opens a socket of its own)."""
        self._reap_parked()
        member = self._reserved.pop(session, None)
        if member is not None:
            # Still routed and filtered for this session: only what its previous file left
            # queued (late retransmissions) goes.
            try:
                self._drain(self._pool[member])
            except L2fastError as exc:
                log.warning("pooled socket %d not reused: %s", member, exc.message)
                self._retire(member, session)
                self.unpooled += 1
                return None
            self.reused += 1
            return self._loan(member, session)
        if session in self._routes or not (self._free or self._reserved):
            self.unpooled += 1
            return None
        evicted = None
        if self._free:
            member = min(self._free)
            self._free.remove(member)
        else:
            evicted, member = self._reserved.popitem(last=False)  # least recently used
        sock = self._pool[member]
        try:
            # The filter first, then the queue (the evicted session's frames, or nothing, and
            # a pending error), then the route: nothing of the new session can arrive before
            # it exists.
            sock.set_filter(native.SocketFilter.DATA, session)
            self._drain(sock)
            if evicted is not None:
                del self._routes[evicted]
            self._routes[session] = member
            self._apply()
            # Routed, the socket gets only what the group's program sends it: this session's
            # DATA and FEEDBACK (the receive loop checks and counts every frame anyway). Its own
            # filter would be a second BPF run per frame on the sending core: without it
            # `l2fast bench` ran 4.6 % faster at MTU 1500 and 5.2 % at 9000 (4 runs each,
            # bench/env_ab.sh, 12:18 UTC 2026-11-22).
            sock.set_filter(native.SocketFilter.NONE)
        except (L2fastError, ValueError) as exc:
            log.warning("could not lend a pooled socket for session %#x: %s", session, exc)
            self._routes.pop(session, None)
            with contextlib.suppress(L2fastError):
                sock.set_filter(native.SocketFilter.REJECT)
                self._apply()
            self._free.add(member)
            self.unpooled += 1
            return None
        return self._loan(member, session)

    def _loan(self, member: int, session: int) -> LentSocket:
        self._lent[member] = session
        self.lent_total += 1
        return LentSocket(self._pool[member], member, session, self)

    def release_session(self, session: int) -> None:
        """`session` ended: its reserved socket is freed now (its DATA goes to the control
        socket again, to be counted), a lent one when it comes back."""
        member = self._reserved.pop(session, None)
        if member is not None:
            self._retire(member, session)
            self._free_member(member)
        elif session in self._routes:
            self._ended.add(session)

    def _give_back(self, lent: LentSocket, process: BaseProcess | None) -> None:
        member, session = lent.member, lent.session
        if self._owner != os.getpid() or self._lent.get(member) != session:
            return  # a forked child's copy, or the group is closed
        del self._lent[member]
        if process is not None and process.is_alive():
            # It survived a kill: nothing of this session may reach its socket any more, and
            # the socket waits until the process is gone.
            self._retire(member, session)
            self._ended.discard(session)
            self._parked.append((member, process))
            return
        if session in self._ended:
            self._ended.discard(session)
            self._retire(member, session)
            self._free_member(member)
            return
        self._reserved[session] = member  # routed still, for the session's next file

    def _retire(self, member: int, session: int) -> None:
        """Stop routing `session` to `member` and make its socket take nothing."""
        if self._routes.get(session) == member:
            del self._routes[session]
            with contextlib.suppress(L2fastError):
                self._apply()
        with contextlib.suppress(L2fastError):
            self._pool[member].set_filter(native.SocketFilter.REJECT)

    def _free_member(self, member: int) -> None:
        try:
            self._drain(self._pool[member])
        except L2fastError as exc:
            log.warning("pooled socket %d not reused: %s", member, exc.message)
            return  # stays a member, never lent again: the numbering must not change
        self._free.add(member)

    def _reap_parked(self) -> None:
        for item in list(self._parked):
            member, process = item
            if not process.is_alive():
                self._parked.remove(item)
                self._free_member(member)

    def _drain(self, sock: native.RawSocket, *, count: bool = True) -> None:
        """Discard (and count, `idle_frames`) what is queued, take the kernel's counters and
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
        drops = sock.stats()[1]
        if count:
            self.idle_frames += got
            self.idle_kernel_drops += drops

    def _apply(self) -> None:
        self.control.fanout_route(self._routes, self._echo_member, self._echo_mac)

    # --- status and end -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For `l2fast status`: the group, the pool and its use."""
        self._reap_parked()
        return {
            "fanout_group": self.group_id,
            "pool": len(self._pool),
            "lent": len(self._lent),
            "reserved": len(self._reserved),
            "parked": len(self._parked),
            "lent_total": self.lent_total,
            "reused": self.reused,
            "unpooled": self.unpooled,
            "idle_frames": self.idle_frames,
            "idle_kernel_drops": self.idle_kernel_drops,
            "ping_responder_member": self._echo_member or None,
        }

    def close(self) -> None:
        """Close the pool's sockets (the daemon stops; the control socket is the runner's)."""
        pool, self._pool = self._pool, {}
        self._free = set()
        self._routes = {}
        self._lent = {}
        self._reserved = OrderedDict()
        self._parked = []
        for sock in pool.values():
            sock.close()
