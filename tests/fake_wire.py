"""A stand-in for raw sockets, so the daemon's I/O adapter is tested without root.

`FakeHub` is a shared Ethernet segment in memory: `FakeSocket.send_frames` hands whole frames
to it, and it queues a copy for the socket with the destination MAC (every other socket for a
broadcast). Each socket has a socketpair whose readable end is what the selector waits on: a
byte is written to it whenever a frame is queued, so `NodeRunner`'s loop wakes up exactly as it
does on a real AF_PACKET socket. Queues are plain deques (append/popleft are atomic), so a
daemon may run in another thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Sequence

from l2fast.errors import InterfaceDown
from l2fast.native import RxArena
from l2fast.wire.constants import BROADCAST_MAC, DEFAULT_ETHERTYPE


class FakeHub:
    """The segment: delivers frames between FakeSockets by destination MAC."""

    def __init__(self) -> None:
        self.sockets: dict[bytes, FakeSocket] = {}
        #: When set, send_frames takes only this many frames per call (kernel backpressure).
        self.accept_per_send: int | None = None
        self._lock = threading.Lock()

    def socket(self, index: int, mtu: int = 1500, ifname: str = "fake0") -> FakeSocket:
        """A new socket with MAC 02:00:00:00:00:<index>."""
        sock = FakeSocket(self, bytes([2, 0, 0, 0, 0, index]), mtu, ifname)
        self.sockets[sock.mac] = sock
        return sock

    def close(self) -> None:
        """Close every socket (tests call it at teardown)."""
        for sock in list(self.sockets.values()):
            sock.close()

    def deliver(self, sender: FakeSocket, frame: bytes) -> None:
        """Queue `frame` for its destination(s)."""
        dst = frame[:6]
        with self._lock:
            targets = [
                s
                for s in self.sockets.values()
                if s is not sender
                and (dst == BROADCAST_MAC or dst == s.mac)
                and not s.closed
                and not s.no_carrier
            ]
        for target in targets:
            target.inject(frame)


class FakeSocket:
    """What `NodeRunner` needs of `RawSocket`, in memory."""

    def __init__(self, hub: FakeHub, mac: bytes, mtu: int, ifname: str) -> None:
        self.hub = hub
        self.mac = mac
        self.mtu = mtu
        self.ifname = ifname
        self.ethertype = DEFAULT_ETHERTYPE
        self.closed = False
        #: While True, sending fails like a real socket on an interface that went down.
        self.link_down = False
        #: While True, frames sent vanish and none arrive, and sending does not fail: a
        #: pulled cable (no carrier).
        self.no_carrier = False
        self.sent: list[bytes] = []
        self._queue: deque[tuple[bytes, int]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def inject(self, frame: bytes, stamp_ns: int = 0) -> None:
        """A frame arrives from the wire; `stamp_ns` is its kernel receive stamp (0: none)."""
        self._queue.append((bytes(frame), stamp_ns))
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def fileno(self) -> int:
        """The descriptor the selector waits on."""
        return self._wake_r.fileno()

    def recv_batch(self, arena: RxArena, timeout_ms: int, max_frames: int | None = None) -> int:
        """Move queued frames into the arena, like recvmmsg (never waits)."""
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        limit = arena.slots if max_frames is None else max_frames
        n = 0
        while n < limit and self._queue:
            frame, stamp_ns = self._queue.popleft()
            arena.store(n, frame[: arena.slot_size], stamp_ns)
            n += 1
        arena.count = n
        if self._queue:  # more than one batch waiting: stay readable
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")
        return n

    def send_frames(self, frames: Sequence[bytes]) -> int:
        """Put frames on the segment; maybe fewer than asked (backpressure)."""
        if self.link_down:
            raise InterfaceDown(self.ifname)
        if self.no_carrier:
            return len(frames)
        limit = self.hub.accept_per_send
        taken = list(frames) if limit is None else list(frames)[:limit]
        for frame in taken:
            self.sent.append(bytes(frame))
            self.hub.deliver(self, bytes(frame))
        return len(taken)

    def stats(self) -> tuple[int, int]:
        """(packets, drops) since the last call: this segment never drops."""
        return 0, 0

    def close(self) -> None:
        """Stop receiving."""
        if not self.closed:
            self.closed = True
            self._wake_r.close()
            self._wake_w.close()
