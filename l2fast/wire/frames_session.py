"""Payloads of discovery, session and diagnostic frames (PROTOCOL.md §Frame types).

HELLO, HELLO_ACK, SYN, SYN_ACK, ACK, PROBE, PROBE_ACK, CTRL_ACK, KEEPALIVE, CLOSE, PING, PONG and
ERROR. Import them from `l2fast.wire.frames`, which also holds the codec entry points.

Each class is a frozen dataclass whose fields are the spec's fields in wire order, plus:
- `frame_type`, the type byte it travels under;
- `violation()`, why its values break a rule of the spec beyond the field widths (None if they
  do not): the encoder raises LocalProtocolError for it, the decoder MalformedPayload;
- `LAYOUT`, the layout itself as a table mirroring PROTOCOL.md, from which `write_fields(w)` /
  `read_fields(r)` follow (l2fast.wire.payload_layout). PROBE, whose filler is a length rather
  than bytes, writes its own.
Field widths are checked by PayloadWriter when encoding; constructors do not validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from l2fast.wire.constants import (
    MAX_MTU,
    MAX_NAME_BYTES,
    MAX_PAYLOAD,
    MAX_TEXT_BYTES,
    MIN_MTU,
    FrameType,
)
from l2fast.wire.payload_fields import PayloadReader, PayloadWriter, is_single_bit, utf8_len
from l2fast.wire.payload_layout import Field, TablePayload, checked_layout

__all__ = [
    "Ack",
    "Close",
    "CtrlAck",
    "Error",
    "Hello",
    "HelloAck",
    "Keepalive",
    "Ping",
    "Pong",
    "Probe",
    "ProbeAck",
    "Syn",
    "SynAck",
]


def _mtu_violation(mtu: int) -> str | None:
    # An interface below the smallest supported MTU cannot run l2fast at all (§Limits), so a
    # peer that announces one is broken or lying.
    if not MIN_MTU <= mtu <= MAX_MTU:
        return f"mtu {mtu} is outside {MIN_MTU}..{MAX_MTU}"
    return None


def _name_violation(name: str) -> str | None:
    size = utf8_len(name)
    if not 1 <= size <= MAX_NAME_BYTES:
        return f"name is {size} bytes, must be 1..{MAX_NAME_BYTES}"
    return None


def _text_violation(text: str) -> str | None:
    size = utf8_len(text)
    if size > MAX_TEXT_BYTES:
        return f"text is {size} bytes, more than {MAX_TEXT_BYTES}"
    return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Hello(TablePayload):
    """HELLO (`0x01`): a node announcing itself (PROTOCOL.md §Frame types/HELLO).

    `name` is 1..64 bytes of UTF-8 and `mtu` within 1280..65535 (§Limits).
    """

    frame_type: ClassVar[FrameType] = FrameType.HELLO
    LAYOUT = (
        Field("node_id", "u64"),
        Field("ts_ns", "u64"),
        Field("ver_min", "u8"),
        Field("ver_max", "u8"),
        Field("mtu", "u32"),
        Field("caps", "u32"),
        Field("name", "str8"),
    )
    node_id: int
    ts_ns: int
    ver_min: int
    ver_max: int
    mtu: int
    caps: int
    name: str

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _mtu_violation(self.mtu) or _name_violation(self.name)


@checked_layout
@dataclass(frozen=True, slots=True)
class HelloAck(TablePayload):
    """HELLO_ACK (`0x02`): the unicast answer to a HELLO (PROTOCOL.md §Frame types/HELLO_ACK).

    Same layout as HELLO with `echo_ts_ns` (the HELLO's `ts_ns`) in place of `ts_ns`.
    """

    frame_type: ClassVar[FrameType] = FrameType.HELLO_ACK
    LAYOUT = (
        Field("node_id", "u64"),
        Field("echo_ts_ns", "u64"),
        Field("ver_min", "u8"),
        Field("ver_max", "u8"),
        Field("mtu", "u32"),
        Field("caps", "u32"),
        Field("name", "str8"),
    )
    node_id: int
    echo_ts_ns: int
    ver_min: int
    ver_max: int
    mtu: int
    caps: int
    name: str

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _mtu_violation(self.mtu) or _name_violation(self.name)


@checked_layout
@dataclass(frozen=True, slots=True)
class Syn(TablePayload):
    """SYN (`0x10`): open a session (PROTOCOL.md §Frame types/SYN, SYN_ACK).

    `digests` holds every digest bit the initiator offers; `mtu` is within 1280..65535.
    """

    frame_type: ClassVar[FrameType] = FrameType.SYN
    LAYOUT = (
        Field("node_id", "u64"),
        Field("ver_min", "u8"),
        Field("ver_max", "u8"),
        Field("mtu", "u32"),
        Field("window", "u32"),
        Field("features", "u32"),
        Field("digests", "u8"),
    )
    node_id: int
    ver_min: int
    ver_max: int
    mtu: int
    window: int
    features: int
    digests: int

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _mtu_violation(self.mtu)


@checked_layout
@dataclass(frozen=True, slots=True)
class SynAck(TablePayload):
    """SYN_ACK (`0x11`): the responder's choices (PROTOCOL.md §Frame types/SYN, SYN_ACK).

    `ver_max` is the chosen version, `mtu` the smaller of both MTUs (1280..65535), `features`
    the intersection, and `digests` exactly one chosen bit.
    """

    frame_type: ClassVar[FrameType] = FrameType.SYN_ACK
    LAYOUT = Syn.LAYOUT  # one table in PROTOCOL.md for both
    node_id: int
    ver_min: int
    ver_max: int
    mtu: int
    window: int
    features: int
    digests: int

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §SYN or §Limits, or None."""
        if not is_single_bit(self.digests):
            return f"digests {self.digests:#x} must be exactly one chosen bit"
        return _mtu_violation(self.mtu)


@checked_layout
@dataclass(frozen=True, slots=True)
class Ack(TablePayload):
    """ACK (`0x12`): completes the handshake with the MTU to probe (PROTOCOL.md §ACK)."""

    frame_type: ClassVar[FrameType] = FrameType.ACK
    LAYOUT = (Field("mtu", "u32"),)
    mtu: int

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _mtu_violation(self.mtu)


@dataclass(frozen=True, slots=True)
class Probe:
    """PROBE (`0x13`): `u32 size` then `filler_len` filler bytes (PROTOCOL.md §PROBE).

    The sender picks `filler_len` so that `24 + payload_len` equals the MTU being probed
    (payload_len = 4 + filler_len). Filler is sent as zeros; its received content is ignored.
    """

    frame_type: ClassVar[FrameType] = FrameType.PROBE
    size: int
    filler_len: int = 0

    def violation(self) -> str | None:
        """Why the values cannot be encoded, or None."""
        # Checked here, before the filler is allocated, rather than after building the payload.
        if not 0 <= self.filler_len <= MAX_PAYLOAD - 4:
            return f"filler_len {self.filler_len} is outside 0..{MAX_PAYLOAD - 4}"
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.size, "size")
        w.raw(bytes(self.filler_len))

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Probe:
        """Read the fields in wire order."""
        return cls(size=r.u32("size"), filler_len=len(r.rest()))


@checked_layout
@dataclass(frozen=True, slots=True)
class ProbeAck(TablePayload):
    """PROBE_ACK (`0x14`): `u32 size`, the probe size that arrived (PROTOCOL.md §PROBE)."""

    frame_type: ClassVar[FrameType] = FrameType.PROBE_ACK
    LAYOUT = (Field("size", "u32"),)
    size: int

    def violation(self) -> str | None:
        """No rule beyond the field width."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class CtrlAck(TablePayload):
    """CTRL_ACK (`0x15`): control-stream acknowledgement (PROTOCOL.md §CTRL_ACK).

    Every control sequence < `cum` was received; bit i of `bitmap` means `cum + 1 + i` was.
    """

    frame_type: ClassVar[FrameType] = FrameType.CTRL_ACK
    LAYOUT = (Field("cum", "u64"), Field("bitmap", "u64"))
    cum: int
    bitmap: int

    def violation(self) -> str | None:
        """No rule beyond the field widths."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Keepalive(TablePayload):
    """KEEPALIVE (`0x18`): empty payload; any bytes are padding (PROTOCOL.md §KEEPALIVE)."""

    frame_type: ClassVar[FrameType] = FrameType.KEEPALIVE
    LAYOUT = ()

    def violation(self) -> str | None:
        """Nothing to check."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Close(TablePayload):
    """CLOSE (`0x19`): `u16 reason` (0 or an §ERROR code), `str16 text` of at most 512 bytes.

    PROTOCOL.md §CLOSE.
    """

    frame_type: ClassVar[FrameType] = FrameType.CLOSE
    LAYOUT = (Field("reason", "u16"), Field("text", "str16"))
    reason: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _text_violation(self.text)


@checked_layout
@dataclass(frozen=True, slots=True)
class Ping(TablePayload):
    """PING (`0x38`): `u32 ident`, `u64 ts_ns`, then optional filler (PROTOCOL.md §PING).

    `filler` is kept byte for byte so that a PONG can echo the payload exactly.
    """

    frame_type: ClassVar[FrameType] = FrameType.PING
    LAYOUT = (Field("ident", "u32"), Field("ts_ns", "u64"), Field("filler", "rest"))
    ident: int
    ts_ns: int
    filler: bytes = b""

    def violation(self) -> str | None:
        """No rule beyond the field widths and the payload limit."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Pong(TablePayload):
    """PONG (`0x39`): the PING's payload echoed byte for byte (PROTOCOL.md §PING, PONG).

    Build it with `Pong.echo(ping)`.
    """

    frame_type: ClassVar[FrameType] = FrameType.PONG
    LAYOUT = Ping.LAYOUT
    ident: int
    ts_ns: int
    filler: bytes = b""

    @classmethod
    def echo(cls, ping: Ping) -> Pong:
        """The PONG that answers `ping`: the same fields, so the same payload bytes."""
        return cls(ident=ping.ident, ts_ns=ping.ts_ns, filler=ping.filler)

    def violation(self) -> str | None:
        """No rule beyond the field widths and the payload limit."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Error(TablePayload):
    """ERROR (`0x7F`): `u16 code` (§ERROR codes), `str16 text` of at most 512 bytes.

    PROTOCOL.md §ERROR.
    """

    frame_type: ClassVar[FrameType] = FrameType.ERROR
    LAYOUT = (Field("code", "u16"), Field("text", "str16"))
    code: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _text_violation(self.text)
