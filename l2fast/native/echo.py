"""Binding for the echo responder of csrc/echo.c: PONGs sent from a C thread, not from Python.

The daemon's event loop answered PINGs itself, so a peer's round trip included the loop's
wake-up, its Python turn and the GIL. `EchoResponder.start(ifname)` opens a socket of its own
that sees only PINGs addressed to this node (csrc/echo.h lists the checks, the same as
`NodeEngine.answer_ping`'s) and answers them from a thread that never touches Python. The
control socket must then stop seeing those PINGs: `RawSocket.echo_mac` switches its filters to
`l2f_sock_filter_control_echo`.

After `fork` (the daemon's multiprocessing workers) the child has no responder thread, only
copies of its two descriptors: a fork hook closes those copies in the child, never touching the
parent's thread or its eventfd (see `l2f_echo_stop`).

Like `l2fast.native`, this is the only place that touches cffi for the echo (STYLE.md §6).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import weakref
from dataclasses import dataclass, fields
from typing import Any

from l2fast.errors import L2fastError
from l2fast.native import _check, _ffi, _lib
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FRAME_OVERHEAD, MAX_MTU, MIN_MTU, Verdict

__all__ = ["PEER_SLOTS", "EchoConfig", "EchoCounters", "EchoResponder"]

#: Per-peer rate-limit buckets the responder keeps (csrc L2F_ECHO_PEER_SLOTS).
PEER_SLOTS: int = _lib.L2F_ECHO_PEER_SLOTS
MAX_BATCH: int = _lib.L2F_ECHO_MAX_BATCH
_MAC_LEN = 6
# A receive slot's room beyond MTU + Ethernet header (csrc/echo.c SLOT_EXTRA - 14).
_SLOT_EXTRA = 18 + 14


@dataclass(frozen=True, slots=True)
class EchoConfig:
    """What the responder answers and how often (rates as `NodeConfig.pong_*`)."""

    mac: bytes
    mtu: int
    ethertype: int = DEFAULT_ETHERTYPE
    rate_per_peer: float = 200.0
    burst_per_peer: float = 50.0
    rate_global: float = 1000.0
    burst_global: float = 200.0
    batch: int = 32
    qdisc_bypass: bool = True


@dataclass(frozen=True, slots=True)
class EchoCounters:
    """Totals of one responder (csrc/echo.h `struct l2f_echo_counters`)."""

    rx: int = 0  #: frames its socket received
    accepted: int = 0  #: frames that parsed (what `NodeEngine.counters["frames_in"]` counts)
    answered: int = 0  #: PONGs built
    tx: int = 0  #: PONGs the kernel took
    tx_errors: int = 0  #: PONGs the kernel refused
    rate_limited: int = 0
    own_frame: int = 0
    bad_source: int = 0
    not_for_us: int = 0
    bad_payload: int = 0
    not_ping: int = 0  #: impossible behind the socket filter; counted for completeness
    peers_evicted: int = 0  #: per-peer buckets handed to another peer
    recv_errors: int = 0
    wakeups: int = 0
    #: Frames the parser rejected, by verdict name in lower case (`short`, `bad_crc`, ...).
    verdicts: tuple[tuple[str, int], ...] = ()

    def drops(self) -> dict[str, int]:
        """Dropped frames by reason, under the names `l2fast status` shows (non-zero only)."""
        out = dict(self.verdicts)
        for name in (
            "rate_limited",
            "own_frame",
            "bad_source",
            "not_for_us",
            "bad_payload",
            "not_ping",
        ):
            out[name] = getattr(self, name)
        return {k: v for k, v in out.items() if v}


_SCALARS = tuple(f.name for f in fields(EchoCounters) if f.name != "verdicts")
_VERDICT_NAMES = tuple(v.name.lower() for v in Verdict)

# Responders alive in this process, so a fork hook can drop their descriptors in the child.
_live: weakref.WeakSet[EchoResponder] = weakref.WeakSet()


def _forget_in_child() -> None:
    for responder in list(_live):
        responder._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class EchoResponder:
    """One node's PING answering thread: `start(ifname)`, `counters()`, `stop()`.

    `handle_frame` runs the per-frame decision without any socket (tests, fuzzing); it must
    not be called while the thread runs.
    """

    def __init__(self, config: EchoConfig) -> None:
        self._echo: Any = None  # set first: __del__ runs even when __init__ fails
        if len(config.mac) != _MAC_LEN:
            raise ValueError(f"mac must be {_MAC_LEN} bytes")
        if not MIN_MTU <= config.mtu <= MAX_MTU:
            raise ValueError(f"mtu must be in {MIN_MTU}..{MAX_MTU}, got {config.mtu}")
        if not 1 <= config.batch <= MAX_BATCH:
            raise ValueError(f"batch must be in 1..{MAX_BATCH}, got {config.batch}")
        if not 0 < config.ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be in 1..0xffff, got {config.ethertype:#x}")
        self.config = config
        self.ifname: str | None = None
        self._pid = os.getpid()
        self._final: EchoCounters | None = None
        cfg = _ffi.new("struct l2f_echo_config *")
        _ffi.memmove(cfg.mac, config.mac, _MAC_LEN)
        cfg.ethertype = config.ethertype
        cfg.mtu = config.mtu
        cfg.batch = config.batch
        cfg.qdisc_bypass = 1 if config.qdisc_bypass else 0
        cfg.rate_per_peer = float(config.rate_per_peer)
        cfg.burst_per_peer = float(config.burst_per_peer)
        cfg.rate_global = float(config.rate_global)
        cfg.burst_global = float(config.burst_global)
        cfg.hash_seed = secrets.randbits(64)
        out = _ffi.new("struct l2f_echo **")
        _check(_lib.l2f_echo_new(cfg, out), "creating the echo responder")
        self._echo = out[0]
        self._slot = config.mtu + _SLOT_EXTRA
        self._buf = _ffi.new("uint8_t[]", self._slot)
        _live.add(self)

    def _handle(self) -> Any:
        if self._echo is None:
            raise L2fastError("the echo responder is closed")
        return self._echo

    def handle_frame(self, frame: bytes, now_ns: int) -> bytes | None:
        """The responder's decision on one received frame at `now_ns` (monotonic): the PONG it
        would send, or None (the frame is counted under its drop reason)."""
        n = min(len(frame), self._slot)  # what a receive slot would have stored
        _ffi.memmove(self._buf, frame[:n], n)
        rc = _lib.l2f_echo_handle_frame(self._handle(), self._buf, n, self._slot, now_ns)
        _check(rc, "echo responder")
        return bytes(_ffi.buffer(self._buf, rc)) if rc > 0 else None

    def start(self, ifname: str) -> None:
        """Open the responder's socket on `ifname` and start its thread.

        Raises NeedsPrivilege, UnknownInterface or NativeError (already started, ...).
        """
        name = ifname.encode()
        _check(_lib.l2f_echo_start(self._handle(), name), f"echo responder on {ifname!r}", ifname)
        self.ifname = ifname

    def join_fanout(self, group_id: int) -> None:
        """Make the started responder's socket the next member of fanout group `group_id`
        (`RawSocket.fanout_create`); the group's program must then route PINGs to it."""
        _check(_lib.l2f_echo_join_fanout(self._handle(), group_id), "echo responder fanout")

    @property
    def running(self) -> bool:
        """Whether the thread runs (it stops on `stop()`, or on a failure: `exit_error`)."""
        return self._echo is not None and bool(_lib.l2f_echo_running(self._echo))

    @property
    def exit_error(self) -> str | None:
        """Why the thread ended on its own, or None."""
        if self._echo is None:
            return None
        code = int(_lib.l2f_echo_exit_code(self._echo))
        if code == 0:
            return None
        return str(_ffi.string(_lib.l2f_strerror(code)).decode("utf-8", "replace"))

    def counters(self) -> EchoCounters:
        """The totals so far (the final ones once closed)."""
        if self._echo is None:
            return self._final or EchoCounters()
        c = _ffi.new("struct l2f_echo_counters *")
        _check(_lib.l2f_echo_counters(self._echo, c), "echo counters")
        verdicts = tuple(
            (_VERDICT_NAMES[i], int(c.verdicts[i]))
            for i in range(1, len(_VERDICT_NAMES))
            if c.verdicts[i]
        )
        return EchoCounters(**{k: int(getattr(c, k)) for k in _SCALARS}, verdicts=verdicts)

    def kernel_stats(self) -> tuple[int, int]:
        """(packets, drops) the kernel counted on the responder's socket since the last call."""
        if self._echo is None or self.ifname is None:
            return 0, 0
        packets = _ffi.new("uint64_t *")
        drops = _ffi.new("uint64_t *")
        _check(_lib.l2f_echo_sock_stats(self._echo, packets, drops), "echo socket stats")
        return int(packets[0]), int(drops[0])

    def close(self) -> None:
        """Stop the thread (joined: bounded by one batch of frames), close its socket and free
        it; the counters stay readable. Calling it again does nothing."""
        echo, self._echo = self._echo, None
        if echo is None:
            return
        if os.getpid() != self._pid:
            _lib.l2f_echo_stop(echo)  # only closes this process's copies of the descriptors
            return  # the memory is the parent's copy: freeing it here is harmless but pointless
        self._final = self._snapshot(echo)
        _lib.l2f_echo_free(echo)
        _live.discard(self)

    def _snapshot(self, echo: Any) -> EchoCounters:
        self._echo = echo
        try:
            return self.counters()
        finally:
            self._echo = None

    def _forget_after_fork(self) -> None:
        # In a forked child: close the inherited descriptors (so a long-lived worker does not
        # keep the parent's PING socket alive after the parent is gone) and never stop or join
        # a thread that exists only in the parent.
        if self._echo is not None and os.getpid() != self._pid:
            _lib.l2f_echo_stop(self._echo)
            self._echo = None

    def __enter__(self) -> EchoResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_echo", None) is not None:
            with contextlib.suppress(Exception):
                self.close()


#: Shortest frame a responder can answer: header plus the PING's ident and ts_ns.
MIN_PING_FRAME = FRAME_OVERHEAD + 12
