"""Binding for the impairment relay of csrc/relay.c (the lab's frame forwarder with faults).

Like `l2fast.native`, this is the only place that touches cffi for the relay: it validates
arguments before calling C, turns negative return codes into exceptions and hands back plain
Python values (STYLE.md §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from l2fast.errors import L2fastError
from l2fast.native import _check, _ffi, _lib

MAX_PORTS: int = _lib.L2F_RELAY_MAX_PORTS
MAX_BATCH: int = _lib.L2F_RELAY_MAX_BATCH
MAX_HOLD: int = _lib.L2F_RELAY_MAX_HOLD
MAX_DEPTH: int = _lib.L2F_RELAY_MAX_DEPTH
MIN_SLOT: int = _lib.L2F_RELAY_MIN_SLOT
MAX_SLOT: int = _lib.L2F_RELAY_MAX_SLOT
MAX_RUN_MS: int = _lib.L2F_RELAY_MAX_RUN_MS

# Room for the Ethernet header and one VLAN tag above the interface MTU.
FRAME_HEADROOM = 18


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What the relay does to each frame (csrc/relay.h documents the fault model)."""

    seed: int = 1
    loss: float = 0.0  #: probability that a frame is dropped
    dup: float = 0.0  #: probability that a frame is sent twice
    reorder: float = 0.0  #: probability that a frame is held back
    corrupt: float = 0.0  #: probability that one payload bit is flipped
    reorder_depth: int = 3  #: later frames that overtake a held frame
    hold_us: int = 2000  #: a held frame goes out after this long even without later frames
    hold_slots: int = 64
    mtu: int = 1500  #: the largest interface MTU among the ports
    batch: int = 64
    sndbuf: int = 32 << 20
    rcvbuf: int = 64 << 20

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range."""
        for name in ("loss", "dup", "reorder", "corrupt"):
            p = getattr(self, name)
            if not (isinstance(p, float | int) and math.isfinite(p) and 0.0 <= p <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        if not 0 <= self.seed < 1 << 64:
            raise ValueError(f"seed must fit in 64 bits, got {self.seed}")
        checks = (
            ("reorder_depth", self.reorder_depth, 1, MAX_DEPTH),
            ("hold_us", self.hold_us, 0, 10_000_000),
            ("hold_slots", self.hold_slots, 1, MAX_HOLD),
            ("mtu", self.mtu, MIN_SLOT, MAX_SLOT - FRAME_HEADROOM),
            ("batch", self.batch, 1, MAX_BATCH),
            ("sndbuf", self.sndbuf, 0, 1 << 30),
            ("rcvbuf", self.rcvbuf, 0, 1 << 30),
        )
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high}, got {value}")


@dataclass(frozen=True, slots=True)
class RelayCounters:
    """Frame counters of the relay or of one port (csrc/relay.h `struct l2f_relay_counters`)."""

    rx: int = 0
    rx_bytes: int = 0
    tx: int = 0
    tx_bytes: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    tx_errors: int = 0
    truncated: int = 0
    filtered: int = 0
    hold_full: int = 0
    kernel_drops: int = 0

    def as_dict(self) -> dict[str, int]:
        """Field name -> value, for JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COUNTER_NAMES = tuple(f.name for f in fields(RelayCounters))


class Relay:
    """A frame forwarder between AF_PACKET ports that applies seeded faults.

    Use: `relay = Relay(config)`, `relay.add_port("eth0")` for each port, then call
    `relay.run(200)` in a loop (it returns after at most that many milliseconds, or earlier on a
    signal) and read `relay.counters()`. `close()` (or `with`) frees the sockets.
    """

    def __init__(self, config: RelayConfig) -> None:
        self._relay = None  # set first: __del__ runs even when __init__ fails
        config.validate()
        self.config = config
        self.ports: list[str] = []
        cfg = _ffi.new("struct l2f_relay_config *")
        cfg.seed = config.seed
        cfg.loss = float(config.loss)
        cfg.dup = float(config.dup)
        cfg.reorder = float(config.reorder)
        cfg.corrupt = float(config.corrupt)
        cfg.reorder_depth = config.reorder_depth
        cfg.hold_us = config.hold_us
        cfg.hold_slots = config.hold_slots
        cfg.slot_size = config.mtu + FRAME_HEADROOM
        cfg.batch = config.batch
        cfg.sndbuf = config.sndbuf
        cfg.rcvbuf = config.rcvbuf
        out = _ffi.new("struct l2f_relay **")
        _check(_lib.l2f_relay_new(cfg, out), "creating the relay")
        self._relay = out[0]

    def _handle(self):  # type: ignore[no-untyped-def]
        if self._relay is None:
            raise L2fastError("the relay is closed")
        return self._relay

    def add_port(self, ifname: str) -> int:
        """Attach the interface `ifname` (in the current namespace); returns its port index."""
        name = ifname.encode()
        if not 0 < len(name) < 16:
            raise ValueError(f"bad interface name {ifname!r}")
        rc = _check(_lib.l2f_relay_add_port(self._handle(), name), f"relay port {ifname!r}", ifname)
        self.ports.append(ifname)
        return int(rc)

    def run(self, duration_ms: int) -> int:
        """Forward frames for up to `duration_ms` ms; returns the number of frames received.

        Returns early when a signal arrives, so Python signal handlers run promptly.
        """
        if not 0 <= duration_ms <= MAX_RUN_MS:
            raise ValueError(f"duration_ms must be in 0..{MAX_RUN_MS}")
        return int(_check(_lib.l2f_relay_run(self._handle(), duration_ms), "relay"))

    def release_held(self) -> int:
        """Send every frame held for reordering now; returns how many there were."""
        return int(_check(_lib.l2f_relay_release_held(self._handle()), "relay"))

    def counters(self, port: int | None = None) -> RelayCounters:
        """Totals over all ports, or the counters of port index `port`."""
        out = _ffi.new("struct l2f_relay_counters *")
        index = -1 if port is None else port
        if port is not None and not 0 <= port < len(self.ports):
            raise ValueError(f"no port {port}")
        _check(_lib.l2f_relay_counters(self._handle(), index, out), "relay counters")
        return RelayCounters(**{name: int(getattr(out, name)) for name in _COUNTER_NAMES})

    def close(self) -> None:
        """Close the sockets and free the C state (idempotent)."""
        if self._relay is not None:
            _lib.l2f_relay_free(self._relay)
            self._relay = None

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten relay must not leak raw sockets for the life of the process.
        self.close()
