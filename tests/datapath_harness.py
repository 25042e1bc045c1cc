"""Shared helpers for the data-path unit tests: frames, a datagram socket pair standing in for the
AF_PACKET socket (recvmmsg/sendmmsg behave the same on it, and no privilege is needed), and a
receiver made of an RxPath plus its rings and writers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from l2fast import native
from l2fast.native import datapath as dp
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType

DST = bytes.fromhex("02aabbccddee")
SRC = bytes.fromhex("0211223344ff")
SESSION = 0x5EED
ET = DEFAULT_ETHERTYPE


def chunk_bytes(k: int, length: int) -> bytes:
    """Deterministic content of chunk k (file-relative), distinct per chunk."""
    return (k.to_bytes(4, "big") * (length // 4 + 1))[:length]


def file_bytes(size: int, chunk_size: int) -> bytes:
    """A file whose chunk k is chunk_bytes(k, ...)."""
    return b"".join(
        chunk_bytes(k, min(chunk_size, size - k * chunk_size))
        for k in range(-(-size // chunk_size))
    )[:size]


def data_frame(
    seq: int,
    payload: bytes,
    *,
    session: int = SESSION,
    flags: int = 0,
    ftype: int = FrameType.DATA,
) -> bytes:
    """A valid frame (CRC included)."""
    return native.build_frame(DST, SRC, ET, ftype, flags, session, seq, payload)


def corrupt(frame: bytes, at: int = -1) -> bytes:
    """The frame with one byte flipped (the CRC no longer matches)."""
    b = bytearray(frame)
    b[at] ^= 0x40
    return bytes(b)


@contextmanager
def dgram_pair(sndbuf: int = 8 << 20) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sender, receiver): a non-blocking AF_UNIX datagram pair."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
        yield a, b
    finally:
        a.close()
        b.close()


@dataclass
class Receiver:
    """An RxPath over `sock` with `nrings` rings and one Writer per ring (same process)."""

    sock: socket.socket
    chunk_size: int
    file_size: int
    first_chunk: int = 0
    nrings: int = 2
    nslots: int = 256
    window: int = 64
    batch: int = 16
    fd: int = -1
    written: bytearray | None = None
    ctrl_slots: int = 16
    publish_bytes: int = 256 << 10
    publish_us: int = 200
    gather_us: int = 0
    discard: int = 0
    rings: list[dp.ShmRing] = field(default_factory=list)

    def __post_init__(self) -> None:
        slot = max(dp.RING_MIN_SLOT, (dp.FRAME_PHASE + self.chunk_size + 38 + 63) // 64 * 64)
        self.rings = [dp.ShmRing(self.nslots, slot) for _ in range(self.nrings)]
        self.rx = dp.RxPath(
            self.sock,
            self.rings,
            session=SESSION,
            chunk_size=self.chunk_size,
            file_size=self.file_size,
            first_chunk=self.first_chunk,
            window=self.window,
            batch=self.batch,
            written=self.written,
            ctrl_slots=self.ctrl_slots,
            publish_bytes=self.publish_bytes,
            publish_us=self.publish_us,
            gather_us=self.gather_us,
            discard=self.discard,
        )
        self.writers = [
            dp.Writer(
                r,
                self.fd,
                chunk_size=self.chunk_size,
                file_size=self.file_size,
                first_chunk=self.first_chunk,
            )
            for r in self.rings
        ]

    def run(self, budget_s: float = 0.0, max_frames: int = 1 << 20) -> dp.RxRun:
        return self.rx.run(budget_s, max_frames)

    def drain(self) -> int:
        return sum(w.drain(4096) for w in self.writers)

    def published(self) -> list[int]:
        """Pop every descriptor still in the rings (instead of a writer): their seqs."""
        out: list[int] = []
        for r in self.rings:
            descs, _ = r.pop(r.nslots)
            out += [f[0] for f in dp.descriptor_fields(descs) if not f[3] & dp.DESC_SKIP]
        return out

    def close(self) -> None:
        self.rx.close()
        for r in self.rings:
            r.close()


def send_all(sock: socket.socket, frames: list[bytes]) -> None:
    for f in frames:
        sock.send(f)


def tmpfile_fd(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
