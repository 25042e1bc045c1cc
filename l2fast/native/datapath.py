"""Binding for the bulk data path of csrc/datapath.h: shared-memory rings, the receive loop, the
writers and the ranged transmitter (issue 5, docs/ARCHITECTURE.md "A file").

Like `l2fast.native`, this is the only place that touches cffi for these primitives: it checks
arguments before calling C, turns negative return codes into exceptions and hands back plain
Python values (STYLE.md §6).  Nothing here runs per frame: every call moves a batch.

- `ShmRing`: one single-producer single-consumer ring in shared memory (an anonymous MAP_SHARED
  mapping inherited across `fork`, or a file on tmpfs that any process can `ShmRing.open`).
- `RxPath`: the receive loop (recvmmsg straight into ring slots, verification, receive window,
  duplicates) and the FEEDBACK content (cumulative ack, SACK ranges, credit).
- `Writer`: drains one ring into the file with pwritev.
- `TxPath` / `tx_ranges`: sends ranges of chunks of a mapped file as DATA frames.

A typical receiver: the parent makes W rings, forks W writer processes (each `Writer(...).drain`
in a loop) and a receive process that builds an `RxPath` over the socket and the W rings and
calls `run` / `feedback` about every millisecond.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import mmap
import os
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from l2fast.errors import L2fastError
from l2fast.native import FRAME_PHASE, _check, _ffi, _lib
from l2fast.wire.constants import DEFAULT_ETHERTYPE, ETH_HLEN, MAX_PAYLOAD, Flags, Verdict
from l2fast.wire.frames import Feedback

__all__ = [
    "DESC_LAST",
    "DESC_REFUSED",
    "DESC_SIZE",
    "DESC_SKIP",
    "FRAME_PHASE",
    "RING_MAX_SLOT",
    "RING_MAX_SLOTS",
    "RING_MIN_SLOT",
    "TX_BATCH",
    "Burst",
    "BurstFeedback",
    "BurstLog",
    "BurstStop",
    "RxCounters",
    "RxFeedback",
    "RxPath",
    "RxRun",
    "RxStop",
    "ShmRing",
    "TxPath",
    "TxStats",
    "Writer",
    "WriterStats",
    "descriptor_fields",
    "descriptor_seqs",
    "pack_descriptors",
    "punch_hole",
    "ring_size",
    "slot_size_for_mtu",
    "start_writeback",
    "tx_batch_for",
    "tx_ranges",
    "written_bitmap_size",
]

Buffer = bytes | bytearray | memoryview | mmap.mmap

RING_MIN_SLOT: int = _lib.L2F_RING_MIN_SLOT
RING_MAX_SLOT: int = _lib.L2F_RING_MAX_SLOT
RING_MAX_SLOTS: int = _lib.L2F_RING_MAX_SLOTS
RX_MAX_RINGS: int = _lib.L2F_RX_MAX_RINGS
RX_MAX_BATCH: int = _lib.L2F_RX_MAX_BATCH
RX_MAX_WINDOW: int = _lib.L2F_RX_MAX_WINDOW
TX_BATCH: int = _lib.L2F_TX_BATCH
DESC_SKIP: int = _lib.L2F_DESC_SKIP
DESC_REFUSED: int = _lib.L2F_DESC_REFUSED
DESC_LAST: int = _lib.L2F_DESC_LAST
#: Bytes of one packed descriptor: u64 seq, u32 payload_off, u32 payload_len, u32 flags,
#: u32 session, in native byte order (what `pack_descriptors` builds and `ShmRing.pop` returns).
DESC_SIZE: int = _ffi.sizeof("struct l2f_desc")

# A receive slot holds the Ethernet header, the MTU and a VLAN tag that a NIC may leave on,
# after the FRAME_PHASE bytes the frame starts at (csrc/l2fast_core.h: where the kernel's copy
# into the slot runs fastest).
_SLOT_HEADROOM = FRAME_PHASE + ETH_HLEN + 4
_MAX_U32 = 0xFFFFFFFF
_MAX_INDEX = 1 << 62  # chunk indices and sizes the C side accepts
# C ints that carry a count back: keep every batch within them.
_MAX_BATCH = 1 << 30


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _fd_of(sock: int | _HasFileno) -> int:
    fd = sock if isinstance(sock, int) else sock.fileno()
    if fd < 0:
        raise ValueError(f"file descriptor {fd} is not open")
    return fd


def _uint(name: str, value: int, hi: int, lo: int = 0) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} must be between {lo} and {hi}")
    return value


# --------------------------------------------------------------------------- ring


def ring_size(nslots: int, slot_size: int) -> int:
    """Bytes of a ring region for `nslots` slots (a power of two) of `slot_size` bytes."""
    _uint("nslots", nslots, _MAX_U32)
    _uint("slot_size", slot_size, _MAX_U32)
    return _check(_lib.l2f_ring_size(nslots, slot_size), f"ring of {nslots} x {slot_size}")


def slot_size_for_mtu(mtu: int) -> int:
    """The ring slot size that holds any frame of an interface with this MTU (multiple of 64)."""
    _uint("mtu", mtu, 65535, 68)
    return (mtu + _SLOT_HEADROOM + 63) // 64 * 64


def pack_descriptors(
    seqs: Iterable[int],
    *,
    payload_off: int = 0,
    payload_len: int = 0,
    flags: int = 0,
    session: int = 0,
) -> bytes:
    """Packed descriptors (DESC_SIZE bytes each) for `seqs`, all with the same other fields.

    For `ShmRing.push` in tests and tools; the receive loop fills descriptors itself, in C.
    """
    seq_words = array("Q", seqs)
    n = len(seq_words)
    for name, value in (
        ("payload_off", payload_off),
        ("payload_len", payload_len),
        ("flags", flags),
        ("session", session),
    ):
        _uint(name, value, _MAX_U32)
    if sys.byteorder != "little":  # pragma: no cover - the word trick below assumes LE
        one = struct.Struct("=QIIII")
        return b"".join(one.pack(q, payload_off, payload_len, flags, session) for q in seq_words)
    # Three u64 words per descriptor: seq, then the (payload_off, payload_len) pair, then
    # (flags, session); on a little-endian CPU the low half of each word comes first.
    words = array("Q", [0]) * (3 * n)
    words[0::3] = seq_words
    words[1::3] = array("Q", [payload_off | payload_len << 32]) * n
    words[2::3] = array("Q", [flags | session << 32]) * n
    return words.tobytes()


def descriptor_seqs(descs: Buffer) -> list[int]:
    """The seq field of each packed descriptor in `descs`."""
    view = memoryview(descs).cast("B")
    if view.nbytes % DESC_SIZE:
        raise ValueError(f"{view.nbytes} bytes is not a whole number of descriptors")
    seqs: list[int] = view.cast("Q")[0::3].tolist()
    return seqs


def descriptor_fields(descs: Buffer) -> list[tuple[int, int, int, int, int]]:
    """Each packed descriptor as (seq, payload_off, payload_len, flags, session)."""
    view = memoryview(descs).cast("B")
    if view.nbytes % DESC_SIZE:
        raise ValueError(f"{view.nbytes} bytes is not a whole number of descriptors")
    one = struct.Struct("=QIIII")
    return [one.unpack_from(view, i) for i in range(0, view.nbytes, DESC_SIZE)]


class ShmRing:
    """A single-producer single-consumer descriptor ring in shared memory (csrc/ring.c).

    The default region is an anonymous MAP_SHARED mapping: make the ring before `fork` (for
    example before starting multiprocessing "fork" children) and both processes use the same
    object.  With `path` the region is a file (put it on tmpfs, e.g. /dev/shm) that another
    process, even a spawned one, attaches with `ShmRing.open(path)`.
    """

    def __init__(self, nslots: int, slot_size: int, *, path: str | None = None) -> None:
        """Create and initialise an empty ring of `nslots` slots of `slot_size` bytes."""
        size = ring_size(nslots, slot_size)
        if path is None:
            mm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, size)
                mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
            finally:
                os.close(fd)
        self._setup(mm, path)
        _check(_lib.l2f_ring_init(self._buf, size, nslots, slot_size), "initialising a shared ring")
        self.attach()

    @classmethod
    def open(cls, path: str) -> ShmRing:
        """Attach to a ring another process created with `ShmRing(..., path=path)`."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise ValueError(f"{path} is empty, not a ring")
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        ring = cls.__new__(cls)
        ring._setup(mm, path)
        ring.attach()
        return ring

    def _setup(self, mm: mmap.mmap, path: str | None) -> None:
        self._mm = mm
        self.path = path
        self._buf = _ffi.from_buffer("uint8_t[]", mm, require_writable=True)
        self._ring = _ffi.new("struct l2f_ring *")
        self._closed = False

    def attach(self) -> None:
        """(Re)check the shared header and refresh this process's handle.

        Not needed after `fork` (the child inherits a valid handle), but harmless.
        """
        self._live()
        _check(
            _lib.l2f_ring_attach(self._ring, self._buf, len(self._mm)), "attaching a shared ring"
        )

    def _live(self) -> None:
        if self._closed:
            raise ValueError("the ring is closed")

    @property
    def nslots(self) -> int:
        """Slots in the ring (a power of two)."""
        return int(self._ring.nslots)

    @property
    def slot_size(self) -> int:
        """Bytes per slot."""
        return int(self._ring.slot_size)

    @property
    def size(self) -> int:
        """Bytes of the shared region."""
        return len(self._mm)

    def counts(self) -> tuple[int, int]:
        """(head, tail): descriptors published and released since the ring was made."""
        self._live()
        head = _ffi.new("uint64_t *")
        tail = _ffi.new("uint64_t *")
        _check(_lib.l2f_ring_counts(self._ring, head, tail), "ring counts")
        return int(head[0]), int(tail[0])

    def used(self) -> int:
        """Slots published and not yet released."""
        self._live()
        return _check(_lib.l2f_ring_counts(self._ring, _ffi.NULL, _ffi.NULL), "ring counts")

    def push(self, descs: Buffer, payload: Buffer | None = None, stride: int = 0) -> int:
        """Publish packed descriptors (see `pack_descriptors`) as one batch; returns how many fit.

        With `payload`, descriptor i's slot gets `payload[i*stride : i*stride + payload_len]`
        at its payload_off (payload_len capped at `stride`).  Producer side only.
        """
        self._live()
        dview = memoryview(descs).cast("B")
        if dview.nbytes % DESC_SIZE:
            raise ValueError(f"{dview.nbytes} bytes is not a whole number of descriptors")
        n = _uint("descriptors", dview.nbytes // DESC_SIZE, _MAX_BATCH)
        cdesc = _ffi.from_buffer("struct l2f_desc[]", dview)
        if payload is None:
            cpay, plen = _ffi.NULL, 0
        else:
            cpay = _ffi.from_buffer("uint8_t[]", payload)
            plen = len(cpay)
            _uint("stride", stride, _MAX_U32)
        return _check(_lib.l2f_ring_push(self._ring, cdesc, n, cpay, plen, stride), "ring push")

    def pop(self, max_n: int, stride: int = 0) -> tuple[bytes, bytes]:
        """Take and release up to `max_n` descriptors: (packed descriptors, payloads).

        Payload i is copied to `payloads[i*stride : (i+1)*stride]` (0: no payloads).  Consumer
        side only.
        """
        self._live()
        _uint("max_n", max_n, _MAX_BATCH, 1)
        _uint("stride", stride, _MAX_U32)
        out = _ffi.new("struct l2f_desc[]", max_n)
        pay = _ffi.new("uint8_t[]", max_n * stride) if stride else _ffi.NULL
        n = _check(
            _lib.l2f_ring_pop(self._ring, out, max_n, pay, max_n * stride, stride), "ring pop"
        )
        descs = bytes(_ffi.buffer(out, n * DESC_SIZE))
        return descs, bytes(_ffi.buffer(pay, n * stride)) if stride else b""

    def wait(self, timeout_s: float) -> int:
        """Consumer: sleep until something is published or `timeout_s` passes; how many wait."""
        self._live()
        us = max(0, min(int(timeout_s * 1e6), 0x7FFFFFFF))
        rc = _lib.l2f_ring_wait(self._ring, us)
        return _check(rc, "ring wait")

    def close(self) -> None:
        """Unmap this process's view (other processes keep theirs); idempotent."""
        if self._closed:
            return
        self._closed = True
        _ffi.release(self._buf)
        self._mm.close()

    def unlink(self) -> None:
        """Remove the backing file of a path ring (the mapping stays valid until closed)."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __getstate__(self) -> Any:
        # An anonymous mapping cannot travel to a spawned process: say so instead of pickling
        # something that would attach to nothing.
        raise TypeError(
            "a ShmRing cannot be pickled: fork after creating it, or create it with path= and "
            "ShmRing.open(path) in the other process"
        )

    def __repr__(self) -> str:
        where = self.path or "anonymous"
        return f"ShmRing(nslots={self.nslots}, slot_size={self.slot_size}, {where})"


# --------------------------------------------------------------------------- receive


class RxStop(enum.IntFlag):
    """Why `RxPath.run` returned (csrc/datapath.h L2F_RX_STOP_*)."""

    NONE = 0
    BUDGET = _lib.L2F_RX_STOP_BUDGET  #: the time budget ran out
    FRAMES = _lib.L2F_RX_STOP_FRAMES  #: max_frames were read
    RING_FULL = _lib.L2F_RX_STOP_RING_FULL  #: every ring was full: the socket was left alone
    CTRL_FULL = _lib.L2F_RX_STOP_CTRL_FULL  #: the control arena filled up
    COMPLETE = _lib.L2F_RX_STOP_COMPLETE  #: every chunk of the file has been received


@dataclass(frozen=True, slots=True)
class RxRun:
    """The result of one `RxPath.run`."""

    stop: RxStop  #: why it returned
    control: list[bytes]  #: verified non-DATA frames, whole (Ethernet header included)
    interrupted: bool = False  #: a signal cut the wait short


@dataclass(frozen=True, slots=True)
class RxFeedback:
    """The receiver's view for a FEEDBACK frame (PROTOCOL.md §FEEDBACK), from C."""

    cum_ack: int  #: every chunk below it was received (or was on disk already)
    credit: int  #: the sender may send chunks below it (not monotonic: see RxTracker)
    highest: int  #: highest chunk received + 1
    free_slots: int  #: free ring slots across every ring
    end_chunk: int  #: first_chunk + the file's number of chunks
    ranges: tuple[tuple[int, int], ...]  #: up to 64 received ranges above cum_ack, lowest first

    @property
    def complete(self) -> bool:
        """Every chunk of the file has been received."""
        return self.cum_ack >= self.end_chunk

    def to_wire(self, kernel_drops: int = 0) -> Feedback:
        """The FEEDBACK payload body with these values."""
        return Feedback(self.cum_ack, self.credit, self.highest, kernel_drops, self.ranges)


@dataclass(frozen=True, slots=True)
class RxCounters:
    """Counters of an `RxPath` since it was made (csrc/datapath.h struct l2f_rx_counters)."""

    frames: int  #: frames read from the socket
    bytes: int
    verdicts: dict[Verdict, int]  #: frames per PROTOCOL.md §Receiving verdict
    data_new: int  #: chunks accepted and handed to a writer
    data_bytes: int
    duplicates: int
    out_of_window: int  #: at or beyond cum_ack + window
    out_of_range: int  #: outside the file
    bad_size: int  #: payload length not the chunk's (or a ZLIB payload)
    other_session: int
    control: int  #: non-DATA frames returned by `run`
    control_dropped: int  #: non-DATA frames dropped (no control arena)
    ring_full: int  #: times reading stopped because every ring was full
    batches: int  #: descriptor batches published
    recv_calls: int
    polls: int
    written: int  #: chunks marked in the written bitmap
    refused: int  #: descriptors a writer refused
    gathers: int  #: sleeps of `gather_us` after a short read

    @classmethod
    def _from_c(cls, c: Any) -> RxCounters:
        verdicts = {v: int(c.verdicts[int(v)]) for v in Verdict}
        names = [f.name for f in fields(cls) if f.name != "verdicts"]
        return cls(verdicts=verdicts, **{name: int(getattr(c, name)) for name in names})


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Give back the blocks of bytes [offset, offset + length) of a file, keeping its size.

    False where the file system cannot (EOPNOTSUPP); NativeError for any other failure.
    """
    rc = _lib.l2f_punch_hole(
        fd, _uint("offset", offset, _MAX_INDEX), _uint("length", length, _MAX_INDEX)
    )
    if rc == -errno.EOPNOTSUPP:
        return False
    _check(rc, "punching a hole")
    return True


def start_writeback(fd: int) -> bool:
    """Queue a file's dirty pages for writing, without waiting (sync_file_range WRITE).

    Only a head start for the fsync that must follow: it makes nothing durable. False when
    the call failed (a file system or descriptor that cannot; nothing to do about it).
    """
    return _lib.l2f_start_writeback(fd) == 0


def written_bitmap_size(file_size: int, chunk_size: int) -> int:
    """Bytes of the written bitmap of a file: one bit per chunk, LSB first."""
    _uint("chunk_size", chunk_size, MAX_PAYLOAD, 1)
    nchunks = -(-file_size // chunk_size)
    return (nchunks + 7) // 8


class RxPath:
    """The C receive loop of one file transfer, over a socket and the writers' rings.

    `written` (optional, writable, e.g. an mmap of `<name>.part.map` of
    `written_bitmap_size(...)` bytes) gets bit k set once chunk `first_chunk + k` is in the file;
    chunks it already marks are treated as received (resume).  Use the object in one process
    only: it owns the producer side of every ring.
    """

    def __init__(
        self,
        sock: int | _HasFileno,
        rings: Sequence[ShmRing],
        *,
        session: int,
        chunk_size: int,
        file_size: int,
        first_chunk: int = 0,
        window: int = 1 << 16,
        batch: int = 64,
        written: Buffer | None = None,
        ethertype: int = DEFAULT_ETHERTYPE,
        raw: bool = False,
        discard: int = 0,
        ctrl_slots: int = 64,
        publish_bytes: int = 256 << 10,
        publish_us: int = 200,
        gather_us: int = 0,
    ) -> None:
        """Validate and build the receive state; raises ValueError or NativeError.

        A ring's batch is handed to its writer once it holds `publish_bytes` of chunks (0: after
        every recvmmsg), or when the socket is empty and its oldest frame waited `publish_us`.
        `gather_us` > 0: after a read that drained the socket mid-stream, sleep that long so the
        next read takes a batch, rather than being woken for each frame (bulk receivers only: it
        adds up to that much latency).
        `discard` > 0 (a bench stream): every chunk is verified, windowed and counted as usual,
        then its slot is reused at once; frames land in the first ring's first slots, which
        stay in cache, nothing is ever published, and the credit counts `discard` slots free
        (more than `batch`; size it to what the socket's buffer holds).
        """
        if not 1 <= len(rings) <= RX_MAX_RINGS:
            raise ValueError(f"{len(rings)} rings; between 1 and {RX_MAX_RINGS} are supported")
        _uint("session", session, _MAX_U32)
        _uint("chunk_size", chunk_size, MAX_PAYLOAD, 1)
        _uint("file_size", file_size, _MAX_INDEX - 1)
        _uint("first_chunk", first_chunk, _MAX_INDEX - 1)
        _uint("window", window, RX_MAX_WINDOW, 64)
        if window & (window - 1):
            raise ValueError(f"window={window} must be a power of two")
        _uint("batch", batch, RX_MAX_BATCH, 1)
        _uint("ethertype", ethertype, 0xFFFF)
        _uint("ctrl_slots", ctrl_slots, 4096)
        _uint("publish_bytes", publish_bytes, _MAX_U32)
        _uint("publish_us", publish_us, 1_000_000)
        _uint("gather_us", gather_us, 10_000)
        _uint("discard", discard, RX_MAX_WINDOW)
        if discard:
            if raw or written is not None:
                raise ValueError("discard cannot be combined with raw or a written bitmap")
            if discard <= batch:
                raise ValueError(f"discard={discard} must be more than batch={batch}")
        cfg = _ffi.new("struct l2f_rx_config *")
        cfg.fd = _fd_of(sock)
        cfg.ethertype = ethertype
        cfg.flags = _lib.L2F_RX_RAW if raw else (_lib.L2F_RX_DISCARD if discard else 0)
        cfg.credit_slots = discard
        cfg.session = session
        cfg.chunk_size = chunk_size
        cfg.first_chunk = first_chunk
        cfg.file_size = file_size
        cfg.window = window
        cfg.batch = batch
        cfg.publish_bytes = publish_bytes
        cfg.publish_us = publish_us
        cfg.gather_us = gather_us
        self._written = None
        if written is not None:
            need = written_bitmap_size(file_size, chunk_size)
            try:
                self._written = _ffi.from_buffer("uint8_t[]", written, require_writable=True)
            except (TypeError, BufferError) as exc:
                raise TypeError("written must be a writable bytes-like object (an mmap)") from exc
            if len(self._written) < need:
                raise ValueError(f"written bitmap of {len(self._written)} bytes; needs {need}")
            cfg.written = self._written
            cfg.written_len = len(self._written)
        out = _ffi.new("struct l2f_rx **")
        _check(_lib.l2f_rx_new(cfg, out), "creating the receive path")
        self._rx = _ffi.gc(out[0], _lib.l2f_rx_free)
        self._rings = list(rings)  # keeps the shared regions mapped while C points into them
        for ring in self._rings:
            ring._live()
            _check(_lib.l2f_rx_add_ring(self._rx, ring._buf, ring.size), f"adding {ring!r}")
        self.first_chunk = first_chunk
        self.chunk_size = chunk_size
        self.file_size = file_size
        slot = max(ring.slot_size for ring in self._rings)
        self._ctrl_slot = slot
        self._ctrl_max = ctrl_slots
        self._ctrl = _ffi.new("uint8_t[]", max(1, ctrl_slots * slot))
        self._ctrl_lens = _ffi.new("uint32_t[]", max(1, ctrl_slots))
        self._ctrl_count = _ffi.new("uint32_t *")
        self._fb = _ffi.new("struct l2f_rx_feedback *")
        self._counters = _ffi.new("struct l2f_rx_counters *")

    def run(self, budget_s: float = 0.001, max_frames: int = 1 << 20) -> RxRun:
        """Receive for up to `budget_s` seconds (waiting for frames within it) or `max_frames`.

        Returns the stop reason and the control frames read; a signal ends the call early
        (`interrupted`), with nothing lost.
        """
        self._live()
        self._rings_live()
        _uint("max_frames", max_frames, _MAX_BATCH, 1)
        us = int(max(0.0, min(budget_s, 60.0)) * 1e6)
        rc = _lib.l2f_rx_run(
            self._rx,
            max_frames,
            us,
            self._ctrl,
            self._ctrl_max * self._ctrl_slot,
            self._ctrl_slot,
            self._ctrl_lens,
            self._ctrl_max,
            self._ctrl_count,
        )
        interrupted = rc == -errno.EINTR
        if interrupted:
            rc = 0
        stop = RxStop(_check(rc, "receiving"))
        n = int(self._ctrl_count[0])
        view = _ffi.buffer(self._ctrl)
        control = []
        for i in range(n):
            start = i * self._ctrl_slot
            length = min(int(self._ctrl_lens[i]), self._ctrl_slot)
            control.append(bytes(view[start : start + length]))
        return RxRun(stop, control, interrupted)

    def feedback(self) -> RxFeedback:
        """Reclaim released slots (marking written chunks), then the FEEDBACK values."""
        self._live()
        self._rings_live()
        n = _check(_lib.l2f_rx_feedback(self._rx, self._fb), "feedback")
        fb = self._fb
        ranges = tuple((int(fb.ranges[2 * i]), int(fb.ranges[2 * i + 1])) for i in range(n))
        return RxFeedback(
            int(fb.cum_ack),
            int(fb.credit),
            int(fb.highest),
            int(fb.free_slots),
            int(fb.end_chunk),
            ranges,
        )

    def counters(self) -> RxCounters:
        """A snapshot of the counters."""
        self._live()
        _check(_lib.l2f_rx_counters(self._rx, self._counters), "counters")
        return RxCounters._from_c(self._counters)

    def _live(self) -> None:
        if self._rx is None:
            raise ValueError("the receive path is closed")

    def _rings_live(self) -> None:
        # C holds pointers into every ring's mapping: a closed (unmapped) ring must stop the call
        # here, or C would read and write memory that is no longer there.
        for ring in self._rings:
            ring._live()

    def close(self) -> None:
        """Free the C state now (rings and the written bitmap stay with their owners)."""
        rx, self._rx = self._rx, None
        if rx is not None:
            _ffi.release(rx)


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of a `Writer` (csrc/datapath.h struct l2f_writer_stats)."""

    bytes: int  #: payload bytes written (in bench mode: that would have been)
    chunks: int
    writes: int  #: pwritev calls
    refused: int  #: descriptors outside the file or their slot: never written
    skipped: int  #: SKIP descriptors (frames that were not new chunks)
    batches: int
    waits: int  #: sleeps on an empty ring


class Writer:
    """Consumer of one ring: writes chunks to `fd` with pwritev (`fd` < 0: bench, no writes)."""

    def __init__(
        self,
        ring: ShmRing,
        fd: int,
        *,
        chunk_size: int,
        file_size: int,
        first_chunk: int = 0,
    ) -> None:
        """Check the arguments; `fd` stays owned by the caller."""
        ring._live()
        _uint("chunk_size", chunk_size, MAX_PAYLOAD, 1)
        _uint("file_size", file_size, _MAX_INDEX - 1)
        _uint("first_chunk", first_chunk, _MAX_INDEX - 1)
        self.ring = ring
        self.fd = fd if fd >= 0 else -1
        self.chunk_size = chunk_size
        self.file_size = file_size
        self.first_chunk = first_chunk
        self._stats = _ffi.new("struct l2f_writer_stats *")

    def drain(self, max_batch: int = 1024, wait_s: float = 0.0) -> int:
        """Write and release up to `max_batch` descriptors; returns the bytes written.

        When the ring is empty, sleeps up to `wait_s` for the receive loop to publish.  Returns 0
        when nothing came or a signal interrupted; raises NativeError on a write error (the
        failed descriptors stay in the ring).
        """
        self.ring._live()  # a closed ring is unmapped: C must not touch it
        _uint("max_batch", max_batch, _MAX_BATCH, 1)
        us = max(0, min(int(wait_s * 1e6), 0x7FFFFFFF))
        rc = _lib.l2f_writer_drain(
            self.ring._ring,
            self.fd,
            self.first_chunk,
            self.chunk_size,
            self.file_size,
            max_batch,
            us,
            self._stats,
        )
        if rc == -errno.EINTR:
            return 0
        return _check(rc, "writing received chunks")

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        s = self._stats
        return WriterStats(
            int(s.bytes),
            int(s.chunks),
            int(s.writes),
            int(s.refused),
            int(s.skipped),
            int(s.batches),
            int(s.waits),
        )


# --------------------------------------------------------------------------- transmit


@dataclass(frozen=True, slots=True)
class TxStats:
    """Counters of a `TxPath` (csrc/datapath.h struct l2f_tx_stats)."""

    frames: int  #: frames the kernel took
    bytes: int  #: their payload bytes
    calls: int  #: sendmmsg calls
    backpressure: int  #: times the kernel queue was full
    helper_frames: int = 0  #: headers the CRC helper thread built (the rest: the caller's thread)


#: Bytes of frames per sendmmsg that `tx_batch_for` aims at.
TX_BATCH_BYTES = 512 << 10


def tx_batch_for(chunk_size: int) -> int:
    """Frames per sendmmsg for chunks of `chunk_size` bytes: ~TX_BATCH_BYTES, 4..TX_BATCH.

    Measured on veth (bench/datapath.py): at MTU 65535, 64 frames (4 MiB) per call gave half the
    throughput of 4-16 frames, both for the raw ceiling and for the data path; a 4 MiB call lets
    the receiver start only when the whole batch has been queued, and the headers' CRC pass has
    evicted the first payloads from the cache before the kernel copies them.  At MTU 1500 and
    9000 the bytes rule gives 64 and 58 frames, where no size in 16..64 measured differently.
    """
    return max(4, min(TX_BATCH, TX_BATCH_BYTES // (chunk_size + 38)))


def _mac(name: str, value: bytes) -> bytes:
    if len(value) != 6:
        raise ValueError(f"{name} MAC must be 6 bytes, got {len(value)}")
    return bytes(value)


class BurstStop(enum.IntEnum):
    """Why `TxPath.stream` returned (csrc/datapath.h L2F_BURST_*)."""

    END = _lib.L2F_BURST_END  #: every chunk up to `end` went
    DEADLINE = _lib.L2F_BURST_DEADLINE  #: the deadline passed (perhaps waiting for credit)
    BLOCKED = _lib.L2F_BURST_BLOCKED  #: the kernel queue was full: retry soon
    NEWS = _lib.L2F_BURST_NEWS  #: a FEEDBACK with SACK ranges or kernel drops arrived
    FULL = _lib.L2F_BURST_FULL  #: a log filled up
    ERROR = _lib.L2F_BURST_ERROR  #: a send or receive failed after the burst began


@dataclass(frozen=True, slots=True)
class BurstFeedback:
    """One FEEDBACK frame a burst read."""

    frame: bytes
    arrived: float  #: `time.monotonic()` seconds
    #: A plain FEEDBACK (no SACK ranges, no kernel drops) as read in C, with its header seq;
    #: None for any other, which the caller decodes from `frame`.
    plain: tuple[int, Feedback] | None


@dataclass(frozen=True, slots=True)
class Burst:
    """What one `TxPath.stream` call did, for the caller to replay into its window.

    Times are `time.monotonic()` seconds (the C side reads CLOCK_MONOTONIC, the same clock).
    """

    stop: BurstStop
    next: int  #: the first chunk not sent
    credit: int  #: the grant after the plain FEEDBACKs read (never below the one passed in)
    sends: list[tuple[int, int, float]]  #: (start, end, sent at): consecutive chunk ranges
    feedback: list[BurstFeedback]  #: every FEEDBACK frame read, in order
    error: L2fastError | None  #: with stop ERROR: what failed (the sends before it stand)
    ignored: int  #: frames read that were not a valid FEEDBACK of the session (dropped)


class BurstLog:
    """The arrays one `TxPath.stream` call logs into, allocated once and reused.

    `max_sends` sends and `max_feedback` FEEDBACK frames of up to `slot` bytes each (a FEEDBACK
    holds at most 30 + 64 * 16 bytes of payload, PROTOCOL.md §FEEDBACK, so 2 KiB is ample).
    """

    def __init__(self, max_sends: int = 256, max_feedback: int = 64, slot: int = 2048) -> None:
        _uint("max_sends", max_sends, 1 << 16, 1)
        _uint("max_feedback", max_feedback, 1 << 12, 1)
        _uint("slot", slot, 1 << 16, 64)
        self.max_sends = max_sends
        self.max_feedback = max_feedback
        self.slot = slot
        self.send_start = _ffi.new("uint64_t[]", max_sends)
        self.send_count = _ffi.new("uint32_t[]", max_sends)
        self.send_ns = _ffi.new("int64_t[]", max_sends)
        self.arena = _ffi.new("uint8_t[]", max_feedback * slot)
        self.fb_len = _ffi.new("uint32_t[]", max_feedback)
        self.fb_ns = _ffi.new("int64_t[]", max_feedback)
        self.fb_plain = _ffi.new("uint8_t[]", max_feedback)
        self.fb_fields = [_ffi.new("uint64_t[]", max_feedback) for _ in range(4)]
        self.ignored = 0

    def burst(self, fb_fd: int, *, next_chunk: int, end: int, credit: int, deadline: float,
              quiet: float | None, turn_frames: int) -> Any:  # fmt: skip
        """A filled `struct l2f_tx_burst` pointing at these arrays."""
        b = _ffi.new("struct l2f_tx_burst *")
        b.fb_fd = fb_fd
        b.turn_frames = _uint("turn_frames", turn_frames, _MAX_BATCH, 1)
        b.next = _uint("next_chunk", next_chunk, _MAX_INDEX - 1)
        b.end = _uint("end", end, _MAX_INDEX - 1, next_chunk)
        b.credit = _uint("credit", credit, (1 << 64) - 1)
        b.deadline_ns = int(deadline * 1e9)
        b.quiet_ns = 0 if quiet is None else max(1, int(quiet * 1e9))
        b.send_start, b.send_count, b.send_ns = self.send_start, self.send_count, self.send_ns
        b.max_sends = self.max_sends
        b.fb_arena, b.fb_arena_len = self.arena, self.max_feedback * self.slot
        b.fb_slot, b.max_fb = self.slot, self.max_feedback
        b.fb_len, b.fb_ns, b.fb_plain = self.fb_len, self.fb_ns, self.fb_plain
        b.fb_seq, b.fb_cum_ack, b.fb_credit, b.fb_highest = self.fb_fields
        return b

    def result(self, b: Any) -> Burst:
        """The `Burst` a finished call logged in `b`."""
        sends = [
            (int(self.send_start[i]), int(self.send_start[i]) + int(self.send_count[i]),
             self.send_ns[i] / 1e9)
            for i in range(b.n_sends)
        ]  # fmt: skip
        slot = self.slot
        seq, cum, credit, highest = self.fb_fields
        feedback = [
            BurstFeedback(
                bytes(_ffi.buffer(self.arena + i * slot, min(int(self.fb_len[i]), slot))),
                self.fb_ns[i] / 1e9,
                (int(seq[i]), Feedback(int(cum[i]), int(credit[i]), int(highest[i]), 0))
                if self.fb_plain[i] else None,
            )
            for i in range(b.n_fb)
        ]  # fmt: skip
        error = None
        if b.stop == _lib.L2F_BURST_ERROR:
            try:
                _check(b.error, "streaming DATA frames")
            except L2fastError as exc:  # NativeError, or NeedsPrivilege for EPERM
                error = exc
        self.ignored += int(b.ignored)
        return Burst(BurstStop(b.stop), int(b.next), int(b.credit), sends, feedback, error,
                     int(b.ignored))  # fmt: skip


class TxPath:
    """Sends ranges of chunks of a mapped file as DATA frames (csrc/txpath.c).

    `data` is the file's mapping (or, with `bench=True`, one chunk's worth of bytes sent as
    every chunk).  `ifindex` 0 sends through the socket's own binding.  `raw=True` is the
    benchmark ceiling: one header for every frame, no CRC (receivers drop those frames).
    """

    def __init__(
        self,
        sock: int | _HasFileno,
        ifindex: int,
        *,
        dst: bytes,
        src: bytes,
        session: int,
        data: Buffer,
        chunk_size: int,
        file_size: int | None = None,
        first_chunk: int = 0,
        ethertype: int = DEFAULT_ETHERTYPE,
        bench: bool = False,
        raw: bool = False,
        mark_last: bool = False,
        batch: int | None = None,
        crc_helper: bool = True,
        data_offset: int = 0,
    ) -> None:
        """Build the header template and pin `data`; raises ValueError on bad arguments.

        The data (a file's mapping, or a bench stream's one chunk) starts `data_offset` bytes
        into `data`.

        `batch` is the number of frames per sendmmsg (at most TX_BATCH); by default about
        512 KiB of frames (`tx_batch_for`). `crc_helper` lets the process's CRC helper thread
        build headers (CRC32C over each payload) ahead of the sendmmsg calls, off the sending
        core (csrc/txpath.c); the frames are the same either way.
        """
        self.fd = _fd_of(sock)
        self.ifindex = _uint("ifindex", ifindex, 0x7FFFFFFF)
        _uint("session", session, _MAX_U32)
        _uint("ethertype", ethertype, 0xFFFF)
        self.chunk_size = _uint("chunk_size", chunk_size, MAX_PAYLOAD, 1)
        self._data = _ffi.from_buffer("uint8_t[]", data)  # holds the export
        _uint("data_offset", data_offset, len(self._data))
        self._payload = self._data + data_offset
        self._payload_len = len(self._data) - data_offset
        self.file_size = self._payload_len if file_size is None else file_size
        _uint("file_size", self.file_size, _MAX_INDEX - 1)
        self.first_chunk = _uint("first_chunk", first_chunk, _MAX_INDEX - 1)
        self.end_chunk = first_chunk + -(-self.file_size // chunk_size)
        need = chunk_size if (bench or raw) else self.file_size
        if self.end_chunk > first_chunk and self._payload_len < need:
            raise ValueError(f"data holds {self._payload_len} bytes; needs {need}")
        t = _ffi.new("struct l2f_tx_template *")
        t.dst = _mac("dst", dst)
        t.src = _mac("src", src)
        t.ethertype = ethertype
        t.session = session
        t.mode = (
            (_lib.L2F_TX_BENCH if bench else 0)
            | (_lib.L2F_TX_RAW if raw else 0)
            | (_lib.L2F_TX_MARK_LAST if mark_last else 0)
            | (_lib.L2F_TX_CRC_HELPER if crc_helper else 0)
        )
        t.batch = _uint("batch", tx_batch_for(chunk_size) if batch is None else batch, TX_BATCH, 1)
        self._t = t
        self._stats = _ffi.new("struct l2f_tx_stats *")

    def send(
        self,
        ranges: Iterable[tuple[int, int]],
        max_frames: int = 1 << 30,
        *,
        retransmit: bool = False,
    ) -> int:
        """Send the chunks of `ranges` in order, at most `max_frames`; how many were taken.

        Fewer than asked means the kernel queue is full: resume after that many frames later.
        Raises ValueError for a range outside the file, NativeError for a socket error.
        """
        flat = [v for pair in ranges for v in pair]
        n = len(flat) // 2
        _uint("ranges", n, _MAX_BATCH)
        _uint("max_frames", max_frames, 1 << 62)
        for start, end in zip(flat[0::2], flat[1::2], strict=True):
            if not self.first_chunk <= start < end <= self.end_chunk:
                raise ValueError(
                    f"range [{start}, {end}) is empty or outside the file's chunks "
                    f"[{self.first_chunk}, {self.end_chunk})"
                )
        self._t.flags = int(Flags.RETRANSMIT) if retransmit else 0
        c_ranges = _ffi.new("uint64_t[]", flat) if flat else _ffi.NULL
        rc = _lib.l2f_tx_ranges(*self._sender_args(), c_ranges, n, max_frames, self._stats)
        if rc == -errno.EINTR:
            return 0
        return _check(rc, "sending DATA frames")

    def release(self) -> None:
        """Let go of `data` (its mapping can then be closed); `stats()` still answers, and a
        later `send` or `stream` raises ValueError. The C sender keeps no pointer past a call."""
        if self._payload_len >= 0:
            self._payload_len = -1
            self._payload = _ffi.NULL
            _ffi.release(self._data)

    def _sender_args(self) -> tuple[Any, ...]:
        """The socket, template and file arguments every C sender call starts with."""
        if self._payload_len < 0:
            raise ValueError("this sender was released: its data is gone")
        return (self.fd, self.ifindex, self._t, self._payload, self._payload_len,
                self.file_size, self.first_chunk, self.chunk_size)  # fmt: skip

    def stream(
        self,
        log: BurstLog,
        fb_sock: int | _HasFileno,
        *,
        next_chunk: int,
        end: int,
        credit: int,
        deadline: float,
        turn_frames: int,
        quiet: float | None = None,
    ) -> Burst:
        """Send new chunks [next_chunk, end) below the credit, reading FEEDBACK from `fb_sock`.

        The streaming burst of csrc/txstream.c: up to `turn_frames` frames at a time, then the
        FEEDBACK frames queued on `fb_sock` (waiting for one while the credit is used up); each
        one without SACK ranges or kernel drops raises the credit, any other ends the burst. It
        returns by `deadline` (`time.monotonic()` seconds), and once `quiet` seconds passed
        without a FEEDBACK acknowledging something new, and reports what it sent and read,
        which the caller must replay into its window. Raises ValueError for a range outside the
        file; a failure after sending began comes back as `Burst.error`.
        """
        if not self.first_chunk <= next_chunk <= end <= self.end_chunk:
            raise ValueError(
                f"chunks [{next_chunk}, {end}) are not inside the file's chunks "
                f"[{self.first_chunk}, {self.end_chunk})"
            )
        b = log.burst(_fd_of(fb_sock), next_chunk=next_chunk, end=end, credit=credit,
                      deadline=deadline, quiet=quiet, turn_frames=turn_frames)  # fmt: skip
        self._t.flags = 0
        _check(_lib.l2f_tx_stream(*self._sender_args(), b, self._stats), "streaming DATA frames")
        return log.result(b)

    def stats(self) -> TxStats:
        """A snapshot of the counters."""
        s = self._stats
        return TxStats(
            int(s.frames), int(s.bytes), int(s.calls), int(s.backpressure), int(s.helper_frames)
        )


def tx_ranges(
    sock: int | _HasFileno,
    ifindex: int,
    ranges: Iterable[tuple[int, int]],
    *,
    dst: bytes,
    src: bytes,
    session: int,
    data: Buffer,
    chunk_size: int,
    file_size: int | None = None,
    first_chunk: int = 0,
    max_frames: int = 1 << 30,
    retransmit: bool = False,
    ethertype: int = DEFAULT_ETHERTYPE,
) -> int:
    """One-shot `TxPath(...).send(ranges, ...)`: frames taken, in range order."""
    path = TxPath(
        sock,
        ifindex,
        dst=dst,
        src=src,
        session=session,
        data=data,
        chunk_size=chunk_size,
        file_size=file_size,
        first_chunk=first_chunk,
        ethertype=ethertype,
    )
    return path.send(ranges, max_frames, retransmit=retransmit)
