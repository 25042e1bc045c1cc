"""Pure-Python Ethernet + l2fast header codec (PROTOCOL.md §Ethernet framing, §Header, §Receiving).

The reference twin of `l2f_build_header` / `l2f_parse_frame` in csrc/: tests feed both the same
bytes and require identical results (tests/unit/test_codec_differential.py). The controller uses
it for control frames; the data path never does.

Layout of the 38 bytes before the payload:

    0  dst MAC (6)   6  src MAC (6)   12  EtherType (2)
    14 magic (2)     16 version (1)   17  type (1)   18 flags (2)   20 payload_len (2)
    22 session (4)   26 seq (8)       34  crc (4)

The CRC covers frame bytes 14..33 (header offsets 0..19) followed by the payload.
"""

from __future__ import annotations

import struct

from l2fast.errors import LocalProtocolError
from l2fast.wire.constants import (
    DEFAULT_ETHERTYPE,
    ETH_HLEN,
    FRAME_OVERHEAD,
    KNOWN_TYPES,
    MAGIC,
    MAX_PAYLOAD,
    VERSION,
    FrameInfo,
    Verdict,
)
from l2fast.wire.crc32c_ref import crc32c

__all__ = [
    "build_frame",
    "build_header",
    "check_header_fields",
    "check_payload_len",
    "check_uint",
    "parse_frame",
]

_MAC_LEN = 6
# Ethernet part: dst, src, EtherType.
_ETH = struct.Struct(">6s6sH")
# l2fast header without the crc: magic, version, type, flags, payload_len, session, seq.
_HDR_NO_CRC = struct.Struct(">HBBHHIQ")
_CRC = struct.Struct(">I")
_CRC_OFF = ETH_HLEN + _HDR_NO_CRC.size  # 34

Buffer = bytes | bytearray | memoryview


def check_uint(name: str, value: int, bits: int) -> None:
    """Raise LocalProtocolError unless `value` fits an unsigned `bits`-bit header field."""
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{name}={value} does not fit in an unsigned {bits}-bit field")


def check_header_fields(
    dst: Buffer,
    src: Buffer,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int | None = None,
) -> None:
    """Refuse header values that do not fit PROTOCOL.md §Ethernet framing and §Header.

    Raises LocalProtocolError when a MAC is not 6 bytes or an integer does not fit its field;
    `seq` is checked when given. Both codecs call it (l2fast.native before calling C), so they
    refuse the same values with the same words.
    """
    if len(dst) != _MAC_LEN or len(src) != _MAC_LEN:
        raise LocalProtocolError(f"MAC addresses are 6 bytes, got {len(dst)} and {len(src)}")
    check_uint("ethertype", ethertype, 16)
    check_uint("type", type, 8)
    check_uint("flags", flags, 16)
    check_uint("session", session, 32)
    if seq is not None:
        check_uint("seq", seq, 64)


def check_payload_len(size: int, what: str = "payload") -> None:
    """Raise LocalProtocolError when a payload of `size` bytes exceeds 65511 (§Limits)."""
    if size > MAX_PAYLOAD:
        raise LocalProtocolError(f"{what} of {size} bytes exceeds the {MAX_PAYLOAD}-byte maximum")


def build_header(
    dst: bytes,
    src: bytes,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    payload: Buffer,
) -> bytes:
    """The 38 bytes (Ethernet header + l2fast header with CRC) that precede `payload`.

    PROTOCOL.md §Ethernet framing and §Header: `version` is always 1, `payload_len` is
    `len(payload)`, and the CRC (§Header/CRC) covers header offsets 0..19 then the payload.
    `type` may be any byte, so tests can build frames the receiver must reject as
    `unknown_type`. Raises LocalProtocolError when a MAC is not 6 bytes, an integer does not
    fit its field or the payload is longer than 65511 bytes (§Limits).
    """
    check_header_fields(dst, src, ethertype, type, flags, session, seq)
    check_payload_len(len(payload))
    hdr = _HDR_NO_CRC.pack(MAGIC, VERSION, type, flags, len(payload), session, seq)
    crc = crc32c(payload, crc32c(hdr))
    return _ETH.pack(bytes(dst), bytes(src), ethertype) + hdr + _CRC.pack(crc)


def build_frame(
    dst: bytes,
    src: bytes,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    payload: Buffer,
) -> bytes:
    """A complete frame: `build_header(...)` followed by the payload, without padding.

    PROTOCOL.md §Ethernet framing; the kernel or NIC pads frames shorter than 60 bytes, and the
    receiver ignores padding. Raises LocalProtocolError like `build_header`.
    """
    return build_header(dst, src, ethertype, type, flags, session, seq, payload) + bytes(payload)


def _info(
    verdict: Verdict,
    dst: bytes = b"",
    src: bytes = b"",
    type: int = 0,
    version: int = 0,
    flags: int = 0,
    session: int = 0,
    seq: int = 0,
    payload_off: int = 0,
    payload_len: int = 0,
) -> FrameInfo:
    return FrameInfo(
        verdict=verdict,
        type=type,
        version=version,
        flags=flags,
        session=session,
        seq=seq,
        payload_off=payload_off,
        payload_len=payload_len,
        dst=dst,
        src=src,
    )


def parse_frame(frame: Buffer, ethertype: int = DEFAULT_ETHERTYPE) -> FrameInfo:
    """Validate one received frame in exactly the order of PROTOCOL.md §Receiving a frame.

    The checks stop at the first failure: short, ethertype, bad_magic, bad_version, bad_length,
    bad_crc, unknown_type. Never raises for any frame bytes; raises ValueError when `ethertype`
    itself does not fit 16 bits.

    Which fields are filled, identically to the C core (csrc/frame.c): `dst` once the frame
    holds 6 bytes and `src` once it holds 12 (else `b""`), whatever the verdict. The header
    fields (type, version, flags, session, seq, payload_len as on the wire) and
    `payload_off = 38` only once the magic matched, that is for BAD_VERSION and every later
    verdict: before that the bytes are not known to be an l2fast header. Unfilled fields are 0.
    The payload is `frame[payload_off : payload_off + payload_len]`; any bytes after it are
    padding (§Ethernet framing).
    """
    if not 0 <= ethertype <= 0xFFFF:
        # Configuration, not frame bytes: the same ValueError as l2fast.native.parse_frame.
        raise ValueError(f"ethertype {ethertype:#x} does not fit in 16 bits")
    view = memoryview(frame).cast("B")
    n = len(view)
    dst = bytes(view[0:_MAC_LEN]) if n >= _MAC_LEN else b""
    src = bytes(view[_MAC_LEN : 2 * _MAC_LEN]) if n >= 2 * _MAC_LEN else b""
    if n < FRAME_OVERHEAD:
        return _info(Verdict.SHORT, dst, src)

    (frame_ethertype,) = struct.unpack_from(">H", view, 2 * _MAC_LEN)
    if frame_ethertype != ethertype:
        return _info(Verdict.ETHERTYPE, dst, src)
    magic, version, ftype, flags, payload_len, session, seq = _HDR_NO_CRC.unpack_from(
        view, ETH_HLEN
    )
    if magic != MAGIC:
        return _info(Verdict.BAD_MAGIC, dst, src)
    (crc,) = _CRC.unpack_from(view, _CRC_OFF)

    def result(verdict: Verdict) -> FrameInfo:
        return _info(
            verdict, dst, src, ftype, version, flags, session, seq, FRAME_OVERHEAD, payload_len
        )

    if version != VERSION:
        return result(Verdict.BAD_VERSION)
    if FRAME_OVERHEAD + payload_len > n:
        return result(Verdict.BAD_LENGTH)
    payload = view[FRAME_OVERHEAD : FRAME_OVERHEAD + payload_len]
    if crc32c(payload, crc32c(view[ETH_HLEN:_CRC_OFF])) != crc:
        return result(Verdict.BAD_CRC)
    if ftype not in KNOWN_TYPES:
        return result(Verdict.UNKNOWN_TYPE)
    return result(Verdict.OK)
