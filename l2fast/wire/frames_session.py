"""Payloads of discovery, session and diagnostic frames (PROTOCOL.md §Frame types).

HELLO, HELLO_ACK, SYN, SYN_ACK, ACK, PROBE, PROBE_ACK, CTRL_ACK, KEEPALIVE, CLOSE, PING, PONG and
ERROR. Import them from `l2fast.wire.frames`, which also holds the codec entry points.

Each class is a frozen dataclass whose fields are the spec's fields in wire order, plus:
- `frame_type`, the type byte it travels under;
- `violation()`, why its values break a rule of the spec beyond the field widths (None if they
  do not): the encoder raises LocalProtocolError for it, the decoder MalformedPayload;
- `write_fields(w)` / `read_fields(r)`, the layout itself.
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


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO (`0x01`): a node announcing itself (PROTOCOL.md §Frame types/HELLO).

    `name` is 1..64 bytes of UTF-8 and `mtu` within 1280..65535 (§Limits).
    """

    frame_type: ClassVar[FrameType] = FrameType.HELLO
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.node_id, "node_id")
        w.u64(self.ts_ns, "ts_ns")
        w.u8(self.ver_min, "ver_min")
        w.u8(self.ver_max, "ver_max")
        w.u32(self.mtu, "mtu")
        w.u32(self.caps, "caps")
        w.str8(self.name, "name")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Hello:
        """Read the fields in wire order."""
        return cls(
            node_id=r.u64("node_id"),
            ts_ns=r.u64("ts_ns"),
            ver_min=r.u8("ver_min"),
            ver_max=r.u8("ver_max"),
            mtu=r.u32("mtu"),
            caps=r.u32("caps"),
            name=r.str8("name"),
        )


@dataclass(frozen=True, slots=True)
class HelloAck:
    """HELLO_ACK (`0x02`): the unicast answer to a HELLO (PROTOCOL.md §Frame types/HELLO_ACK).

    Same layout as HELLO with `echo_ts_ns` (the HELLO's `ts_ns`) in place of `ts_ns`.
    """

    frame_type: ClassVar[FrameType] = FrameType.HELLO_ACK
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.node_id, "node_id")
        w.u64(self.echo_ts_ns, "echo_ts_ns")
        w.u8(self.ver_min, "ver_min")
        w.u8(self.ver_max, "ver_max")
        w.u32(self.mtu, "mtu")
        w.u32(self.caps, "caps")
        w.str8(self.name, "name")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> HelloAck:
        """Read the fields in wire order."""
        return cls(
            node_id=r.u64("node_id"),
            echo_ts_ns=r.u64("echo_ts_ns"),
            ver_min=r.u8("ver_min"),
            ver_max=r.u8("ver_max"),
            mtu=r.u32("mtu"),
            caps=r.u32("caps"),
            name=r.str8("name"),
        )


@dataclass(frozen=True, slots=True)
class Syn:
    """SYN (`0x10`): open a session (PROTOCOL.md §Frame types/SYN, SYN_ACK).

    `digests` holds every digest bit the initiator offers; `mtu` is within 1280..65535.
    """

    frame_type: ClassVar[FrameType] = FrameType.SYN
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.node_id, "node_id")
        w.u8(self.ver_min, "ver_min")
        w.u8(self.ver_max, "ver_max")
        w.u32(self.mtu, "mtu")
        w.u32(self.window, "window")
        w.u32(self.features, "features")
        w.u8(self.digests, "digests")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Syn:
        """Read the fields in wire order."""
        return cls(
            node_id=r.u64("node_id"),
            ver_min=r.u8("ver_min"),
            ver_max=r.u8("ver_max"),
            mtu=r.u32("mtu"),
            window=r.u32("window"),
            features=r.u32("features"),
            digests=r.u8("digests"),
        )


@dataclass(frozen=True, slots=True)
class SynAck:
    """SYN_ACK (`0x11`): the responder's choices (PROTOCOL.md §Frame types/SYN, SYN_ACK).

    `ver_max` is the chosen version, `mtu` the smaller of both MTUs (1280..65535), `features`
    the intersection, and `digests` exactly one chosen bit.
    """

    frame_type: ClassVar[FrameType] = FrameType.SYN_ACK
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.node_id, "node_id")
        w.u8(self.ver_min, "ver_min")
        w.u8(self.ver_max, "ver_max")
        w.u32(self.mtu, "mtu")
        w.u32(self.window, "window")
        w.u32(self.features, "features")
        w.u8(self.digests, "digests")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> SynAck:
        """Read the fields in wire order."""
        return cls(
            node_id=r.u64("node_id"),
            ver_min=r.u8("ver_min"),
            ver_max=r.u8("ver_max"),
            mtu=r.u32("mtu"),
            window=r.u32("window"),
            features=r.u32("features"),
            digests=r.u8("digests"),
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK (`0x12`): completes the handshake with the MTU to probe (PROTOCOL.md §ACK)."""

    frame_type: ClassVar[FrameType] = FrameType.ACK
    mtu: int

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _mtu_violation(self.mtu)

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.mtu, "mtu")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Ack:
        """Read the fields in wire order."""
        return cls(mtu=r.u32("mtu"))


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


@dataclass(frozen=True, slots=True)
class ProbeAck:
    """PROBE_ACK (`0x14`): `u32 size`, the probe size that arrived (PROTOCOL.md §PROBE)."""

    frame_type: ClassVar[FrameType] = FrameType.PROBE_ACK
    size: int

    def violation(self) -> str | None:
        """No rule beyond the field width."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.size, "size")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> ProbeAck:
        """Read the fields in wire order."""
        return cls(size=r.u32("size"))


@dataclass(frozen=True, slots=True)
class CtrlAck:
    """CTRL_ACK (`0x15`): control-stream acknowledgement (PROTOCOL.md §CTRL_ACK).

    Every control sequence < `cum` was received; bit i of `bitmap` means `cum + 1 + i` was.
    """

    frame_type: ClassVar[FrameType] = FrameType.CTRL_ACK
    cum: int
    bitmap: int

    def violation(self) -> str | None:
        """No rule beyond the field widths."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.cum, "cum")
        w.u64(self.bitmap, "bitmap")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> CtrlAck:
        """Read the fields in wire order."""
        return cls(cum=r.u64("cum"), bitmap=r.u64("bitmap"))


@dataclass(frozen=True, slots=True)
class Keepalive:
    """KEEPALIVE (`0x18`): empty payload (PROTOCOL.md §KEEPALIVE)."""

    frame_type: ClassVar[FrameType] = FrameType.KEEPALIVE

    def violation(self) -> str | None:
        """Nothing to check."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """No fields."""

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Keepalive:
        """No fields; any bytes are padding (PROTOCOL.md §Receiving)."""
        return cls()


@dataclass(frozen=True, slots=True)
class Close:
    """CLOSE (`0x19`): `u16 reason` (0 or an §ERROR code), `str16 text` of at most 512 bytes.

    PROTOCOL.md §CLOSE.
    """

    frame_type: ClassVar[FrameType] = FrameType.CLOSE
    reason: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _text_violation(self.text)

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u16(self.reason, "reason")
        w.str16(self.text, "text")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Close:
        """Read the fields in wire order."""
        return cls(reason=r.u16("reason"), text=r.str16("text"))


@dataclass(frozen=True, slots=True)
class Ping:
    """PING (`0x38`): `u32 ident`, `u64 ts_ns`, then optional filler (PROTOCOL.md §PING).

    `filler` is kept byte for byte so that a PONG can echo the payload exactly.
    """

    frame_type: ClassVar[FrameType] = FrameType.PING
    ident: int
    ts_ns: int
    filler: bytes = b""

    def violation(self) -> str | None:
        """No rule beyond the field widths and the payload limit."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.ident, "ident")
        w.u64(self.ts_ns, "ts_ns")
        w.raw(self.filler)

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Ping:
        """Read the fields in wire order."""
        return cls(ident=r.u32("ident"), ts_ns=r.u64("ts_ns"), filler=r.rest())


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG (`0x39`): the PING's payload echoed byte for byte (PROTOCOL.md §PING, PONG).

    Build it with `Pong.echo(ping)`.
    """

    frame_type: ClassVar[FrameType] = FrameType.PONG
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.ident, "ident")
        w.u64(self.ts_ns, "ts_ns")
        w.raw(self.filler)

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Pong:
        """Read the fields in wire order."""
        return cls(ident=r.u32("ident"), ts_ns=r.u64("ts_ns"), filler=r.rest())


@dataclass(frozen=True, slots=True)
class Error:
    """ERROR (`0x7F`): `u16 code` (§ERROR codes), `str16 text` of at most 512 bytes.

    PROTOCOL.md §ERROR.
    """

    frame_type: ClassVar[FrameType] = FrameType.ERROR
    code: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _text_violation(self.text)

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u16(self.code, "code")
        w.str16(self.text, "text")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Error:
        """Read the fields in wire order."""
        return cls(code=r.u16("code"), text=r.str16("text"))
