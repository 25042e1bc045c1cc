"""The thin binding over the C core (csrc/, compiled by cffi as `l2fast._core`).

This package is the only code that touches cffi (STYLE.md §5-6).  It checks lengths and ranges
before calling C, turns negative return codes into l2fast exceptions, and hands back `bytes`,
`memoryview`, ints and dataclasses: no cffi object escapes.

Sibling binding modules in this package (e.g. `l2fast/native/relay.py`) get the compiled module
and the error mapping with::

    from l2fast.native import _check, _ffi, _lib

`_check(rc, what, ifname=None)` returns `rc` when it is >= 0 and otherwise raises the exception
that matches it (see `_raise_for`).  Nothing outside `l2fast/native/` may import those three.

Main entry points: `crc32c`, `build_header`/`build_frame`, `parse_frame`/`parse_batch`,
`RxArena` (caller-owned receive slots, parsed in one C call), `RawSocket` (batched AF_PACKET I/O)
and `interface_info`/`list_interfaces`.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import mmap
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self

from l2fast import qdisc
from l2fast.errors import (
    InterfaceDown,
    MtuTooSmall,
    NativeError,
    NeedsPrivilege,
    UnknownInterface,
)
from l2fast.wire.constants import (
    DEFAULT_ETHERTYPE,
    ETH_HLEN,
    FRAME_OVERHEAD,
    MAX_MTU,
    MIN_MTU,
    FrameInfo,
    Verdict,
)
from l2fast.wire.header import check_header_fields, check_payload_len
from l2fast.wire.header import check_uint as _check_uint

try:
    import l2fast._core as _core
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        f"l2fast's C core (l2fast._core) is not built or failed to load ({exc}); "
        "build it with `make install` or `pip install --no-build-isolation -e .`"
    ) from exc

# Plain assignments (not `import ... as`) so that sibling modules may import them under mypy's
# no-implicit-reexport rule.
_ffi: Any = _core.ffi
_lib: Any = _core.lib

__all__ = [
    "FRAME_PHASE",
    "MAX_FANOUT_ROUTES",
    "MAX_FILTER_SESSIONS",
    "PAYLOAD_PAGE_OFFSET",
    "InterfaceInfo",
    "RawSocket",
    "RxArena",
    "SocketFilter",
    "build_frame",
    "build_header",
    "build_headers",
    "crc32c",
    "crc32c_fold",
    "crc32c_fold128",
    "crc32c_fold128_available",
    "crc32c_fold512",
    "crc32c_fold512_available",
    "crc32c_fold_available",
    "crc32c_hw",
    "crc32c_hw_available",
    "crc32c_impl",
    "crc32c_sw",
    "interface_info",
    "list_interfaces",
    "parse_batch",
    "parse_frame",
    "placed_copy",
]

Buffer = bytes | bytearray | memoryview

_MAC_LEN = 6
#: Most sessions `RawSocket.set_control_filter` takes (csrc L2F_FILTER_MAX_SESSIONS).
MAX_FILTER_SESSIONS: int = _lib.L2F_FILTER_MAX_SESSIONS
#: Routes a fanout group's program holds at most (`RawSocket.fanout_route`).
MAX_FANOUT_ROUTES: int = _lib.L2F_FANOUT_MAX_ROUTES
_VERDICTS = tuple(Verdict)
#: Where bulk frames start in l2fast's own memory, modulo 64, and where a payload sent after its
#: own header starts, modulo 4096: the placements at which the kernel's copies into and out of
#: socket buffers run fastest (csrc/l2fast_core.h, docs/ARCHITECTURE.md "Copy alignment").
FRAME_PHASE: int = _lib.L2F_FRAME_PHASE
PAYLOAD_PAGE_OFFSET: int = _lib.L2F_PAYLOAD_PAGE_OFFSET
_PAGE = mmap.PAGESIZE
# Frames that can come off any interface: Ethernet header + the largest MTU.
_MAX_FRAME = ETH_HLEN + MAX_MTU
# Receive slots a little larger than MTU + 14, so a frame with a VLAN tag left on still fits.
_RX_SLOT_EXTRA = 18
# Arena size cap: large enough for any sensible batch, small enough that a typo cannot ask for
# many gigabytes.
_MAX_ARENA_BYTES = 1 << 30


# --------------------------------------------------------------------------- placement


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def placed_copy(data: Buffer, page_offset: int) -> tuple[bytearray, int]:
    """A copy of `data` in a new bytearray, at an index where its address is `page_offset`
    (0..4095) modulo 4096: (the bytearray, that index).

    For buffers the kernel copies from many times (a bench stream's payload): where they sit
    modulo 4096 decides whether that copy runs at full speed (`PAYLOAD_PAGE_OFFSET`). A
    bytearray and an index, not a memoryview of it: a memoryview that C code still exports can
    crash the interpreter's last garbage collection at exit when it sits in a reference cycle.
    """
    if not 0 <= page_offset < _PAGE:
        raise ValueError(f"page_offset {page_offset} is outside 0..{_PAGE - 1}")
    src = memoryview(data).cast("B")
    buf, at = _placed_bytes(src.nbytes, page_offset)
    buf[at : at + src.nbytes] = src
    return buf, at


def _placed_bytes(nbytes: int, page_offset: int) -> tuple[bytearray, int]:
    """A zeroed bytearray with room for `nbytes` at an address that is `page_offset` modulo
    4096, and where in it that is. Heap memory rather than a mapping of its own: a mapping is
    unmapped when its object goes, even while C code still holds views of it."""
    buf = bytearray(nbytes + _PAGE)
    address = int(_ffi.cast("uintptr_t", _ffi.from_buffer(buf)))
    return buf, (page_offset - address) % _PAGE


# --------------------------------------------------------------------------- errors


def _raise_for(rc: int, what: str, ifname: str | None = None) -> NoReturn:
    """Raise the l2fast exception for the negative C return code `rc`."""
    code = -rc
    if code in (errno.EPERM, errno.EACCES):
        raise NeedsPrivilege(f"{what}: raw Ethernet sockets need root or CAP_NET_RAW")
    if code == errno.ENODEV and ifname is not None:
        raise UnknownInterface(ifname, list_interfaces())
    if code == errno.ENETDOWN and ifname is not None:
        raise InterfaceDown(ifname)
    message = _ffi.string(_lib.l2f_strerror(rc)).decode("utf-8", "replace")
    raise NativeError(rc, message, what)


def _check(rc: int, what: str, ifname: str | None = None) -> int:
    """`rc` when it is >= 0; otherwise raise the matching exception (for sibling modules)."""
    if rc < 0:
        _raise_for(rc, what, ifname)
    return rc


def _cbuf(data: Buffer, what: str) -> Any:
    """A cffi view of a contiguous bytes-like object, without copying."""
    try:
        return _ffi.from_buffer("uint8_t[]", data)
    except (TypeError, BufferError, ValueError) as exc:
        raise TypeError(
            f"{what} must be a contiguous bytes-like object, not {type(data).__name__}"
        ) from exc


# --------------------------------------------------------------------------- CRC32C


def crc32c(data: Buffer, value: int = 0) -> int:
    """CRC-32C of `data` continuing from `value` (zlib.crc32 convention), fastest path.

    `crc32c(b, crc32c(a)) == crc32c(a + b)`; `crc32c(b"123456789") == 0xE3069283`.  Like
    zlib, `value` is taken modulo 2**32.
    """
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_sw(data: Buffer, value: int = 0) -> int:
    """CRC-32C via the portable slicing-by-8 table path (same results as `crc32c`)."""
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c_sw(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_hw(data: Buffer, value: int = 0) -> int:
    """CRC-32C via the SSE4.2 instruction, three lanes for large buffers.

    Raises NativeError when the CPU has no SSE4.2 (see `crc32c_hw_available`).
    """
    if not _lib.l2f_crc32c_hw_available():
        raise NativeError(-errno.ENOTSUP, "this CPU has no SSE4.2 crc32 instruction", "crc32c_hw")
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c_hw(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_hw_available() -> bool:
    """True when the CPU has the SSE4.2 crc32 instruction (checked once by CPUID)."""
    return bool(_lib.l2f_crc32c_hw_available())


def crc32c_fold(data: Buffer, value: int = 0) -> int:
    """CRC-32C via VPCLMULQDQ folding beside three SSE4.2 crc32 lanes (csrc/crc32c.c).

    Raises NativeError when the CPU lacks VPCLMULQDQ, AVX2 or SSE4.2 (see
    `crc32c_fold_available`).
    """
    if not _lib.l2f_crc32c_fold_available():
        raise NativeError(
            -errno.ENOTSUP, "this CPU has no VPCLMULQDQ/AVX2 for the folding path", "crc32c_fold"
        )
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c_fold(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_fold_available() -> bool:
    """True when the CPU (and OS) can run the folding path (checked once by CPUID)."""
    return bool(_lib.l2f_crc32c_fold_available())


def crc32c_fold128(data: Buffer, value: int = 0) -> int:
    """CRC-32C via 128-bit PCLMULQDQ folding (csrc/crc32c.c), the fast path of AMD CPUs
    without VPCLMULQDQ.

    Raises NativeError when the CPU lacks PCLMULQDQ or SSE4.2 (see `crc32c_fold128_available`).
    """
    if not _lib.l2f_crc32c_fold128_available():
        raise NativeError(
            -errno.ENOTSUP,
            "this CPU has no PCLMULQDQ for the 128-bit folding path",
            "crc32c_fold128",
        )
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c_fold128(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_fold128_available() -> bool:
    """True when the CPU can run the 128-bit folding path (checked once by CPUID)."""
    return bool(_lib.l2f_crc32c_fold128_available())


def crc32c_fold512(data: Buffer, value: int = 0) -> int:
    """CRC-32C via VPCLMULQDQ folding on 512-bit registers beside three crc32 lanes
    (csrc/crc32c.c), the fast path of CPUs with AVX-512.

    Raises NativeError when the CPU (or OS) lacks AVX-512 or VPCLMULQDQ (see
    `crc32c_fold512_available`).
    """
    if not _lib.l2f_crc32c_fold512_available():
        raise NativeError(
            -errno.ENOTSUP,
            "this CPU has no AVX-512 with VPCLMULQDQ for the 512-bit folding path",
            "crc32c_fold512",
        )
    buf = _cbuf(data, "data")
    return int(_lib.l2f_crc32c_fold512(value & 0xFFFFFFFF, buf, len(buf)))


def crc32c_fold512_available() -> bool:
    """True when the CPU and OS can run the 512-bit folding path (checked once by CPUID)."""
    return bool(_lib.l2f_crc32c_fold512_available())


def crc32c_impl() -> str:
    """Which path `crc32c` uses here: "avx512-fold" or "vpclmulqdq-fold" (from 4 KiB on;
    shorter buffers take the three lanes, csrc/crc32c.c FOLD_MIN_LEN says why), "pclmul-fold"
    (AMD without VPCLMULQDQ, from 256 bytes on), "sse4.2-3way" or "table": the fastest this CPU
    has, unless the environment variable L2FAST_CRC32C=sse4.2 or =table caps it (=fold256
    picks "vpclmulqdq-fold" on a CPU with AVX-512, =fold128 picks "pclmul-fold" wherever the CPU
    can run it)."""
    names = ("table", "sse4.2-3way", "vpclmulqdq-fold", "pclmul-fold", "avx512-fold")
    return names[_lib.l2f_crc32c_best()]


# --------------------------------------------------------------------------- build


def build_header(
    dst: Buffer,
    src: Buffer,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    payload: Buffer,
) -> bytes:
    """The 38 bytes (Ethernet + l2fast header, CRC included) that precede `payload`.

    PROTOCOL.md §Header: version is 1 and payload_len is len(payload).  `type` may be any byte,
    so tests can build frames a receiver must reject.  Raises LocalProtocolError (like the
    pure-Python codec) when a MAC is not 6 bytes, an integer does not fit its field or the
    payload is longer than 65511 bytes.
    """
    check_header_fields(dst, src, ethertype, type, flags, session, seq)
    pbuf = _cbuf(payload, "payload")
    check_payload_len(len(pbuf))
    out = _ffi.new("uint8_t[]", FRAME_OVERHEAD)
    _check(
        _lib.l2f_build_header(
            out,
            FRAME_OVERHEAD,
            _cbuf(dst, "dst"),
            _cbuf(src, "src"),
            ethertype,
            type,
            flags,
            session,
            seq,
            pbuf,
            len(pbuf),
        ),
        "build_header",
    )
    return bytes(_ffi.buffer(out))


def build_frame(
    dst: Buffer,
    src: Buffer,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    payload: Buffer,
) -> bytes:
    """A complete frame: `build_header(...)` followed by the payload (no padding)."""
    return build_header(dst, src, ethertype, type, flags, session, seq, payload) + bytes(payload)


def build_headers(
    dst: Buffer,
    src: Buffer,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seqs: Sequence[int],
    payloads: Sequence[Buffer],
) -> bytes:
    """Headers for many frames of one session in one C call: 38 bytes per payload, back to back.

    Header i covers `payloads[i]` with sequence `seqs[i]`; pair them with `RawSocket.send_batch`
    (slice header i as `[38 * i : 38 * (i + 1)]`).  Raises like `build_header`.
    """
    n = len(payloads)
    if len(seqs) != n:
        raise ValueError(f"{len(seqs)} sequence numbers but {n} payloads")
    check_header_fields(dst, src, ethertype, type, flags, session)
    if n == 0:
        return b""
    bufs = [_cbuf(p, "payload") for p in payloads]
    c_seq = _ffi.new("uint64_t[]", n)
    c_payload = _ffi.new("uint8_t *[]", n)
    c_len = _ffi.new("uint32_t[]", n)
    for i, (seq, buf) in enumerate(zip(seqs, bufs, strict=True)):
        _check_uint("seq", seq, 64)
        check_payload_len(len(buf), f"payload {i}")
        c_seq[i] = seq
        c_payload[i] = buf
        c_len[i] = len(buf)
    out = _ffi.new("uint8_t[]", n * FRAME_OVERHEAD)
    _check(
        _lib.l2f_build_batch(
            out,
            n * FRAME_OVERHEAD,
            n,
            _cbuf(dst, "dst"),
            _cbuf(src, "src"),
            ethertype,
            type,
            flags,
            session,
            c_seq,
            c_payload,
            c_len,
        ),
        "build_headers",
    )
    return bytes(_ffi.buffer(out))


# --------------------------------------------------------------------------- parse


def _info(c: Any, stored_len: int) -> FrameInfo:
    # The C struct always has 6-byte MAC arrays; a MAC the frame does not hold is b"" here, as
    # in the pure-Python codec (rule in csrc/frame.c).
    return FrameInfo(
        verdict=_VERDICTS[c.verdict],
        type=c.type,
        version=c.version,
        flags=c.flags,
        session=c.session,
        seq=c.seq,
        payload_off=c.payload_off,
        payload_len=c.payload_len,
        dst=bytes(_ffi.buffer(c.dst)) if stored_len >= _MAC_LEN else b"",
        src=bytes(_ffi.buffer(c.src)) if stored_len >= 2 * _MAC_LEN else b"",
    )


def _check_ethertype(ethertype: int) -> None:
    if not 0 <= ethertype <= 0xFFFF:
        raise ValueError(f"ethertype {ethertype:#x} does not fit in 16 bits")


def parse_frame(frame: Buffer, ethertype: int = DEFAULT_ETHERTYPE) -> FrameInfo:
    """Validate one frame in PROTOCOL.md §Receiving order; never raises for any frame bytes.

    The payload of an OK frame is `frame[info.payload_off : info.payload_off +
    info.payload_len]`.
    """
    _check_ethertype(ethertype)
    buf = _cbuf(frame, "frame")
    out = _ffi.new("struct l2f_frame_info *")
    _check(_lib.l2f_parse_frame(buf, len(buf), ethertype, out), "parse_frame")
    return _info(out, len(buf))


def parse_batch(frames: Sequence[Buffer], ethertype: int = DEFAULT_ETHERTYPE) -> list[FrameInfo]:
    """Validate many frames with one C call (they are copied into a temporary RxArena)."""
    if not frames:
        return []
    arena = RxArena(len(frames), max([1, *(memoryview(f).nbytes for f in frames)]))
    arena.load(frames)
    return arena.parse(ethertype=ethertype)


class RxArena:
    """Caller-owned receive buffers: `slots` fixed-size slots of `slot_size` bytes each
    (rounded up to a multiple of 64).

    `RawSocket.recv_batch` fills it (frame i in slot i, `count` frames); `verify`/`parse`
    validate all of them in one C call and count verdicts in `verdict_counts()`.  Views
    returned by `frame`/`payload` point into the arena and change when it is refilled.
    """

    def __init__(self, slots: int, slot_size: int) -> None:
        if slots < 1 or slot_size < 1:
            raise ValueError(
                f"RxArena needs slots >= 1 and slot_size >= 1, got {slots}, {slot_size}"
            )
        # Slots are a whole number of 64-byte lines and each starts at FRAME_PHASE modulo 64,
        # where the kernel's copy of a received frame into it runs fastest.
        slot_size = _round_up(slot_size, 64)
        if slots * slot_size > _MAX_ARENA_BYTES:
            raise ValueError(
                f"RxArena of {slots} x {slot_size} bytes exceeds {_MAX_ARENA_BYTES >> 20} MiB"
            )
        if slot_size > 0xFFFFFFFF or slots > 0x7FFFFFFF:
            raise ValueError("RxArena dimensions do not fit the C core's 32-bit counts")
        self.slots = slots
        self.slot_size = slot_size
        #: frames held: set by RawSocket.recv_batch and load()
        self.count = 0
        self._mem = _ffi.new("uint8_t[]", slots * slot_size + 64)
        lead = (FRAME_PHASE - int(_ffi.cast("uintptr_t", self._mem))) % 64
        self._buf = self._mem + lead
        self._lens = _ffi.new("uint32_t[]", slots)
        self._stamps = _ffi.new("int64_t[]", slots)
        self._infos = _ffi.new("struct l2f_frame_info[]", slots)
        self._counters = _ffi.new("uint64_t[]", _lib.L2F_V_COUNT)
        self._parsed = 0
        self._view = memoryview(_ffi.buffer(self._buf, slots * slot_size))

    def fits(self, slots: int, slot_size: int) -> bool:
        """Whether this arena is what `RxArena(slots, slot_size)` would make, or larger in
        slots: so a caller can keep it rather than allocate (and zero) a new one."""
        return self.slots >= slots and self.slot_size == _round_up(slot_size, 64)

    @property
    def lens(self) -> memoryview:
        """Read-only view of the per-slot frame lengths as received (format "I").

        A length above `slot_size` means the frame was truncated: only `slot_size` bytes of it
        are stored.
        """
        return memoryview(_ffi.buffer(self._lens)).cast("I").toreadonly()

    def rx_stamp_ns(self, i: int) -> int:
        """Kernel receive time of frame i in ns since the epoch; 0 when unknown.

        Known only for frames `RawSocket.recv_batch` took from a socket with
        `enable_rx_timestamps()`, and for frames `store`d with a stamp.
        """
        return int(self._stamps[self._slot(i)])

    def _slot(self, i: int) -> int:
        if not 0 <= i < self.slots:
            raise IndexError(f"slot {i} out of range 0..{self.slots - 1}")
        return i

    def frame(self, i: int) -> memoryview:
        """The stored bytes of frame i (at most `slot_size`; see `lens` for truncation)."""
        i = self._slot(i)
        n = min(int(self._lens[i]), self.slot_size)
        start = i * self.slot_size
        return self._view[start : start + n]

    def store(self, i: int, frame: Buffer, stamp_ns: int = 0) -> None:
        """Copy `frame` into slot i (for tests and `parse_batch`); count grows to cover it.

        `stamp_ns` is the receive time `rx_stamp_ns` reports for it (0: unknown), as a
        socket with receive timestamps would have stamped it.
        """
        i = self._slot(i)
        src = _cbuf(frame, "frame")
        if len(src) > self.slot_size:
            raise ValueError(f"frame of {len(src)} bytes does not fit a {self.slot_size}-byte slot")
        start = i * self.slot_size
        self._view[start : start + len(src)] = _ffi.buffer(src)
        self._lens[i] = len(src)
        self._stamps[i] = stamp_ns
        self.count = max(self.count, i + 1)

    def load(self, frames: Sequence[Buffer]) -> None:
        """Store `frames` in slots 0..len-1 and set `count` to their number."""
        if len(frames) > self.slots:
            raise ValueError(f"{len(frames)} frames do not fit an arena of {self.slots} slots")
        for i, f in enumerate(frames):
            self.store(i, f)
        self.count = len(frames)

    def verify(self, count: int | None = None, ethertype: int = DEFAULT_ETHERTYPE) -> int:
        """Validate frames 0..count-1 (default: `count`) in one C call; return how many are OK.

        Results are read with `info(i)`; verdict totals accumulate in `verdict_counts()`.
        """
        n = self.count if count is None else count
        if not 0 <= n <= self.slots:
            raise ValueError(f"count {n} out of range 0..{self.slots}")
        _check_ethertype(ethertype)
        ok = _check(
            _lib.l2f_parse_batch(
                self._buf,
                self.slots * self.slot_size,
                self.slot_size,
                self._lens,
                n,
                ethertype,
                self._infos,
                self._counters,
            ),
            "parse_batch",
        )
        self._parsed = n
        return ok

    def info(self, i: int) -> FrameInfo:
        """The FrameInfo of frame i from the last `verify`/`parse`."""
        if not 0 <= i < self._parsed:
            raise IndexError(f"frame {i} was not parsed (last verify covered {self._parsed})")
        return _info(self._infos[i], min(int(self._lens[i]), self.slot_size))

    def payload(self, i: int) -> memoryview:
        """View of the payload of frame i, which the last `verify` must have found OK."""
        info = self._infos[self._slot(i)]
        if i >= self._parsed or info.verdict != _lib.L2F_V_OK:
            raise ValueError(f"frame {i} was not verified OK")
        start = i * self.slot_size + info.payload_off
        return self._view[start : start + info.payload_len]

    def parse(
        self, count: int | None = None, ethertype: int = DEFAULT_ETHERTYPE
    ) -> list[FrameInfo]:
        """`verify` then the FrameInfo of every frame verified."""
        self.verify(count, ethertype)
        return [self.info(i) for i in range(self._parsed)]

    def verdict_counts(self) -> dict[Verdict, int]:
        """Frames per verdict over every `verify` since creation or `reset_counts`."""
        return {v: int(self._counters[int(v)]) for v in _VERDICTS}

    def reset_counts(self) -> None:
        """Zero the verdict counters."""
        for k in range(len(_VERDICTS)):
            self._counters[k] = 0


# --------------------------------------------------------------------------- interfaces


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """A network interface as the kernel reports it."""

    name: str
    ifindex: int
    mtu: int  #: bytes after the 14-byte Ethernet header
    is_up: bool  #: administratively up and with carrier (IFF_UP and IFF_RUNNING)
    mac: bytes  #: 6 bytes


def list_interfaces() -> list[str]:
    """Names of the interfaces in this network namespace, sorted."""
    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        return []


def _ifname_bytes(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    # The kernel limit (IFNAMSIZ - 1) and no NUL: such a name cannot exist.
    if not raw or len(raw) > 15 or b"\0" in raw:
        raise UnknownInterface(name, list_interfaces())
    return raw


def interface_info(name: str) -> InterfaceInfo:
    """Index, MTU, up state and MAC of interface `name` (needs no privilege).

    Raises UnknownInterface (listing the interfaces that exist) when there is none by that name.
    """
    out = _ffi.new("struct l2f_ifinfo *")
    _check(_lib.l2f_if_info(_ifname_bytes(name), out), f"interface {name!r}", name)
    return InterfaceInfo(name, out.ifindex, out.mtu, bool(out.is_up), bytes(_ffi.buffer(out.mac)))


# --------------------------------------------------------------------------- raw socket


class TxBatch:
    """Whole frames prepared once and sent many times with `RawSocket.send_prepared`.

    Building the sendmmsg descriptors costs Python per frame; a batch that is re-sent (a raw
    blast, a benchmark) pays it once.  The frames are copied once, each into its own pages at
    FRAME_PHASE, where the kernel's copy from them runs fastest (`placed_copy`).
    """

    @staticmethod
    def stride_for(largest: int) -> int:
        """The memory a batch takes per frame when its largest frame is `largest` bytes.

        A stride of whole pages puts every frame at the same page offset, so a frame below a
        page, copied into an skb head, meets the same distance as the first one."""
        return _round_up(FRAME_PHASE + largest, _PAGE)

    def __init__(self, frames: Sequence[Buffer]) -> None:
        if not frames:
            raise ValueError("a TxBatch needs at least one frame")
        self.count = len(frames)
        self._descs = _ffi.new("struct l2f_txdesc[]", self.count)
        views = [memoryview(f).cast("B") for f in frames]
        for i, view in enumerate(views):
            if view.nbytes < ETH_HLEN:
                raise ValueError(f"frame {i} is {view.nbytes} bytes, shorter than a header")
        self.largest = max(v.nbytes for v in views)
        stride = self.stride_for(self.largest)
        self._region, first = _placed_bytes(stride * self.count, FRAME_PHASE)
        self._base = _cbuf(self._region, "frames")  # holds the export the pointers rely on
        for i, view in enumerate(views):
            at = first + i * stride
            self._region[at : at + view.nbytes] = view
            self._descs[i].hdr = self._base + at
            self._descs[i].hdr_len = view.nbytes


class SocketFilter(enum.IntEnum):
    """What `RawSocket.set_filter` lets through (csrc/l2fast_core.h L2F_FILTER_*)."""

    NONE = 0
    CONTROL = 1  #: everything but DATA and FEEDBACK
    DATA = 2  #: DATA of one session
    FEEDBACK = 3  #: FEEDBACK of one session
    REJECT = 4  #: nothing (an idle socket of the receive pool)


class RawSocket:
    """An AF_PACKET SOCK_RAW socket on one interface and EtherType, with batched I/O.

    Open with `RawSocket.open(...)`; use as a context manager or call `close()`.
    """

    def __init__(
        self, fd: int, ifname: str, ifindex: int, mac: bytes, mtu: int, ethertype: int
    ) -> None:
        """Wrap an already-open descriptor; use `RawSocket.open` instead."""
        self.fd = fd
        self.ifname = ifname
        self.ifindex = ifindex
        self.mac = mac
        self.mtu = mtu
        self.ethertype = ethertype
        self._rx: RxArena | None = None
        #: Set while a C echo responder (`l2fast.native.echo`) answers PINGs to this MAC: the
        #: CONTROL and keyed control filters then also drop those PINGs, so each gets one PONG.
        self.echo_mac: bytes | None = None

    @classmethod
    def open(
        cls,
        ifname: str,
        ethertype: int = DEFAULT_ETHERTYPE,
        *,
        sndbuf: int = 64 << 20,
        rcvbuf: int = 64 << 20,
        qdisc_bypass: bool | None = None,
        min_mtu: int = MIN_MTU,
    ) -> Self:
        """Open a non-blocking raw socket bound to `ifname` and `ethertype`.

        `ethertype=0` opens a transmit-only socket.  `qdisc_bypass` (PACKET_QDISC_BYPASS)
        defaults to on unless the interface has a qdisc someone configured, a shaper
        (`l2fast.qdisc.qdisc_bypass`; L2FAST_QDISC_BYPASS=0/1 decides outright): bypassing
        the qdisc is faster, but it also skips shaping (`tc ... tbf`).  Raises
        UnknownInterface, InterfaceDown, NeedsPrivilege (no CAP_NET_RAW), MtuTooSmall (MTU
        below `min_mtu`) or NativeError.
        """
        if qdisc_bypass is None:
            qdisc_bypass = qdisc.qdisc_bypass(ifname)
        _check_ethertype(ethertype)
        for name, size in (("sndbuf", sndbuf), ("rcvbuf", rcvbuf)):
            if not 0 <= size <= 0x7FFFFFFF:
                raise ValueError(f"{name}={size} must be between 0 and 2**31 - 1")
        info = _ffi.new("struct l2f_ifinfo *")
        fd = _check(
            _lib.l2f_sock_open(
                _ifname_bytes(ifname), ethertype, sndbuf, rcvbuf, 1 if qdisc_bypass else 0, info
            ),
            f"opening a raw socket on {ifname!r}",
            ifname,
        )
        if info.mtu < min_mtu:
            _lib.l2f_close(fd)
            raise MtuTooSmall(ifname, info.mtu, min_mtu)
        return cls(fd, ifname, info.ifindex, bytes(_ffi.buffer(info.mac)), info.mtu, ethertype)

    def _fd(self) -> int:
        if self.fd < 0:
            raise ValueError(f"raw socket on {self.ifname!r} is closed")
        return self.fd

    def _frame_limit(self) -> int:
        return min(self.mtu + ETH_HLEN, _MAX_FRAME)

    def _send(self, descs: Any, n: int) -> int:
        rc = _lib.l2f_send_batch(self._fd(), self.ifindex, descs, n)
        if rc in (-errno.ENOBUFS, -errno.EAGAIN, -errno.EINTR):
            # Backpressure (the kernel queue is full) or a signal: nothing was taken; the
            # caller retries, and Python runs any signal handler when we return.
            return 0
        return _check(rc, f"sending on {self.ifname!r}", self.ifname)

    def send_frames(self, frames: Sequence[Buffer]) -> int:
        """Send whole frames (Ethernet header included) in one sendmmsg batch.

        Returns how many the kernel took, from the start of `frames`; 0 means backpressure
        (poll for writability or wait, then resend the rest).
        """
        n = len(frames)
        if n == 0:
            return 0
        limit = self._frame_limit()
        descs = _ffi.new("struct l2f_txdesc[]", n)
        keep = []
        for i, frame in enumerate(frames):
            buf = _cbuf(frame, "frame")
            if not ETH_HLEN <= len(buf) <= limit:
                raise ValueError(
                    f"frame {i} is {len(buf)} bytes; {self.ifname!r} sends {ETH_HLEN}..{limit}"
                )
            keep.append(buf)
            descs[i].hdr = buf
            descs[i].hdr_len = len(buf)
        return self._send(descs, n)

    def send_prepared(self, batch: TxBatch, start: int = 0) -> int:
        """Send frames `start..` of a prepared batch in one C call (no per-frame Python).

        Returns how many the kernel took (0 means backpressure).
        """
        if not 0 <= start < batch.count:
            raise ValueError(f"start {start} outside a batch of {batch.count} frames")
        if batch.largest > self._frame_limit():
            raise ValueError(
                f"a {batch.largest}-byte frame does not fit {self.ifname!r} "
                f"(at most {self._frame_limit()})"
            )
        return self._send(batch._descs + start, batch.count - start)

    def send_batch(self, headers: Sequence[Buffer], payloads: Sequence[Buffer]) -> int:
        """Send frame i as headers[i] followed by payloads[i], without joining them.

        The payloads may be views into a mapped file; they are handed to the kernel as a second
        iovec.  Returns how many frames the kernel took (0 means backpressure).
        """
        n = len(headers)
        if len(payloads) != n:
            raise ValueError(f"{n} headers but {len(payloads)} payloads")
        if n == 0:
            return 0
        limit = self._frame_limit()
        descs = _ffi.new("struct l2f_txdesc[]", n)
        keep = []
        for i in range(n):
            hdr = _cbuf(headers[i], "header")
            pay = _cbuf(payloads[i], "payload")
            total = len(hdr) + len(pay)
            if len(hdr) < ETH_HLEN or total > limit:
                raise ValueError(
                    f"frame {i} is {len(hdr)}+{len(pay)} bytes; {self.ifname!r} sends "
                    f"a header of >= {ETH_HLEN} and at most {limit} in all"
                )
            keep.append((hdr, pay))
            descs[i].hdr = hdr
            descs[i].hdr_len = len(hdr)
            descs[i].payload = pay
            descs[i].payload_len = len(pay)
        return self._send(descs, n)

    def recv_batch(self, arena: RxArena, timeout_ms: int, max_frames: int | None = None) -> int:
        """Receive up to `max_frames` (default: every slot) frames into `arena`.

        Waits up to `timeout_ms` for the first frame (0: do not wait, -1: forever), then takes
        what is queued without waiting.  Returns the number received (also `arena.count`); 0 on
        timeout or when a signal interrupted the wait.
        """
        n = arena.slots if max_frames is None else max_frames
        if not 0 <= n <= arena.slots:
            raise ValueError(f"max_frames={n} must be between 0 and the arena's {arena.slots}")
        timeout = max(-1, min(int(timeout_ms), 0x7FFFFFFF))
        rc = _lib.l2f_recv_batch(
            self._fd(),
            arena._buf,
            arena.slots * arena.slot_size,
            arena.slot_size,
            n,
            arena._lens,
            arena._stamps,
            timeout,
        )
        if rc == -errno.EINTR:
            rc = 0  # Python runs the signal handler when we return
        got = _check(rc, f"receiving on {self.ifname!r}", self.ifname)
        arena.count = got
        return got

    def recv_frames(self, timeout_ms: int, max_frames: int = 64) -> list[bytes]:
        """Like `recv_batch` but returns copies of the frames (convenient, not for bulk)."""
        if max_frames < 1:
            raise ValueError(f"max_frames={max_frames} must be >= 1")
        slot = self._frame_limit() + _RX_SLOT_EXTRA
        if self._rx is None or not self._rx.fits(max_frames, slot):
            self._rx = RxArena(max_frames, slot)
        n = self.recv_batch(self._rx, timeout_ms, max_frames)
        return [bytes(self._rx.frame(i)) for i in range(n)]

    def stats(self) -> tuple[int, int]:
        """(packets, drops) counted by the kernel since the previous call (PACKET_STATISTICS).

        packets includes the dropped ones.
        """
        packets = _ffi.new("uint64_t *")
        drops = _ffi.new("uint64_t *")
        _check(_lib.l2f_sock_stats(self._fd(), packets, drops), f"stats of {self.ifname!r}")
        return int(packets[0]), int(drops[0])

    def enable_rx_timestamps(self) -> None:
        """Have the kernel stamp every received frame (`RxArena.rx_stamp_ns`), as ping(8) does.

        For a node's control socket, where round trips are measured; each frame then costs a
        clock read in the kernel, so the data-path sockets leave it off.
        """
        _check(_lib.l2f_sock_rx_timestamps(self._fd(), 1), f"timestamping {self.ifname!r}")

    def set_filter(self, mode: SocketFilter, session: int = 0) -> None:
        """Attach a classic-BPF filter so this socket sees only its share of the frames.

        CONTROL drops DATA and FEEDBACK (a controller: the data-path processes read those on
        their own sockets); DATA keeps only DATA of `session` (a receive process); FEEDBACK
        keeps only FEEDBACK of `session` (a sender); NONE removes the filter.  Frames queued
        before the call are not filtered.
        """
        _check_uint("session", session, 32)
        if mode is SocketFilter.CONTROL and self.echo_mac is not None:
            rc = _lib.l2f_sock_filter_control_echo(self._fd(), _ffi.NULL, 0, 1, self.echo_mac)
        else:
            rc = _lib.l2f_sock_filter(self._fd(), int(mode), session)
        _check(rc, f"filtering {self.ifname!r}")

    def set_control_filter(self, bulk_sessions: Collection[int]) -> None:
        """The controller's filter keyed on sessions: drop DATA and FEEDBACK of `bulk_sessions`
        only (data-path sockets consume those); those of any other session pass, to be counted.

        At most `MAX_FILTER_SESSIONS`; the new filter replaces the old one atomically.
        """
        if len(bulk_sessions) > MAX_FILTER_SESSIONS:
            raise ValueError(
                f"{len(bulk_sessions)} sessions exceed the filter's {MAX_FILTER_SESSIONS}"
            )
        for session in bulk_sessions:
            _check_uint("session", session, 32)
        ids = _ffi.new("uint32_t[]", sorted(bulk_sessions)) if bulk_sessions else _ffi.NULL
        if self.echo_mac is not None:
            rc = _lib.l2f_sock_filter_control_echo(
                self._fd(), ids, len(bulk_sessions), 0, self.echo_mac
            )
        else:
            rc = _lib.l2f_sock_filter_control(self._fd(), ids, len(bulk_sessions))
        _check(rc, f"filtering {self.ifname!r}")

    def take_error(self) -> int:
        """Take (and so clear) the socket's pending error: 0, or the errno the next call would
        have failed with (ENETDOWN after the link went down while nobody read the socket)."""
        rc = _lib.l2f_sock_take_error(self._fd())
        _check(rc, f"socket error of {self.ifname!r}")
        return int(rc)

    def filter_length(self) -> int:
        """Instructions of the classic-BPF filter attached to this socket (0: none)."""
        rc = _lib.l2f_sock_filter_len(self._fd())
        _check(rc, f"filter of {self.ifname!r}")
        return int(rc)

    def fanout_create(self) -> int:
        """Make this socket member 0 of a new PACKET_FANOUT_CBPF group with a kernel-chosen
        id, and return the id. Until `fanout_route` installs a program, every frame goes to
        member 0 (see csrc/l2fast_core.h `l2f_fanout_create`)."""
        rc = _lib.l2f_fanout_create(self._fd())
        _check(rc, f"fanout group on {self.ifname!r}")
        return int(rc)

    def fanout_join(self, group_id: int) -> None:
        """Join fanout group `group_id` as its next member (numbered in joining order)."""
        _check_uint("group id", group_id, 16)
        _check(_lib.l2f_fanout_join(self._fd(), group_id), f"fanout group on {self.ifname!r}")

    def fanout_route(
        self, routes: Mapping[int, int], echo_member: int = 0, echo_mac: bytes | None = None
    ) -> None:
        """Install the program of this socket's fanout group: DATA and FEEDBACK of session
        `s` go to member `routes[s]`; with `echo_member`, PINGs at least a header long
        addressed to `echo_mac` go to that member; everything else goes to member 0. At most
        `MAX_FANOUT_ROUTES` routes; the program is replaced atomically."""
        if len(routes) > MAX_FANOUT_ROUTES:
            raise ValueError(f"{len(routes)} routes exceed the group's {MAX_FANOUT_ROUTES}")
        for session, member in routes.items():
            _check_uint("session", session, 32)
            _check_uint("member", member, 16)
        _check_uint("member", echo_member, 16)
        if echo_member and (echo_mac is None or len(echo_mac) != 6):
            raise ValueError("routing PINGs needs the 6-byte MAC they are addressed to")
        n = len(routes)
        sessions = _ffi.new("uint32_t[]", list(routes)) if n else _ffi.NULL
        members = _ffi.new("uint32_t[]", list(routes.values())) if n else _ffi.NULL
        mac = echo_mac if echo_member and echo_mac is not None else _ffi.NULL
        rc = _lib.l2f_fanout_route(self._fd(), sessions, members, n, echo_member, mac)
        _check(rc, f"fanout program on {self.ifname!r}")

    def fileno(self) -> int:
        """The descriptor, for select/poll/selectors."""
        return self._fd()

    def close(self) -> None:
        """Close the socket; calling it again does nothing."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _lib.l2f_close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten socket must not leak its descriptor for the life of a daemon; at
        # interpreter shutdown the C module may already be gone, and then the OS closes it.
        if getattr(self, "fd", -1) >= 0:
            with contextlib.suppress(Exception):
                self.close()

    def __repr__(self) -> str:
        return (
            f"RawSocket(ifname={self.ifname!r}, fd={self.fd}, ethertype={self.ethertype:#06x}, "
            f"mtu={self.mtu})"
        )
