"""Frame payload codec and whole-frame codec, in pure Python (PROTOCOL.md §Frame types).

The payload classes live in `frames_session` (discovery, session, ping, error) and
`frames_transfer` (data, feedback, chat, files) and are re-exported here; this module owns the
entry points:

- `encode_payload(body)` / `decode_payload(frame_type, payload)` for one payload;
- `encode_frame(frame)` / `decode_frame(raw)` for a whole Ethernet frame, through the header
  codec in `l2fast.wire.header`.

Encoding refuses values that do not fit the layout or the limits with LocalProtocolError (our
misuse); decoding refuses such bytes with MalformedPayload, or BadFrame for a frame that fails
PROTOCOL.md §Receiving (the peer's, or the wire's, fault). Nothing else escapes the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from l2fast.errors import LocalProtocolError, MalformedPayload, RemoteProtocolError
from l2fast.wire.auth import (
    UNSEALED_TYPES,
    TagKey,
    Trailer,
    open_trailer,
    seal_payload,
    signed_prefix,
)
from l2fast.wire.constants import (
    DEFAULT_ETHERTYPE,
    MAX_PAYLOAD,
    Flags,
    FrameInfo,
    FrameType,
    Verdict,
)
from l2fast.wire.frames_session import (
    Ack,
    Close,
    CtrlAck,
    Error,
    Hello,
    HelloAck,
    Keepalive,
    Ping,
    Pong,
    Probe,
    ProbeAck,
    Syn,
    SynAck,
)
from l2fast.wire.frames_transfer import (
    Chat,
    Data,
    Feedback,
    FileAccept,
    FileEnd,
    FileHeld,
    FileInline,
    FileOffer,
    FileReject,
    FileResult,
    path_violation,
)
from l2fast.wire.header import build_frame, parse_frame
from l2fast.wire.payload_fields import PayloadReader, PayloadWriter, WireRanges

__all__ = [
    "BODY_CLASSES",
    "Ack",
    "BadFrame",
    "Body",
    "Chat",
    "Close",
    "CtrlAck",
    "Data",
    "Error",
    "Feedback",
    "FileAccept",
    "FileEnd",
    "FileHeld",
    "FileInline",
    "FileOffer",
    "FileReject",
    "FileResult",
    "Frame",
    "Hello",
    "HelloAck",
    "Keepalive",
    "Ping",
    "Pong",
    "Probe",
    "ProbeAck",
    "Syn",
    "SynAck",
    "WireRanges",
    "decode_body",
    "decode_frame",
    "decode_payload",
    "encode_frame",
    "encode_payload",
    "path_violation",
    "wire_payload",
]

#: Any decoded payload: one class per layout in PROTOCOL.md §Frame types.
Body: TypeAlias = (
    Hello
    | HelloAck
    | Syn
    | SynAck
    | Ack
    | Probe
    | ProbeAck
    | CtrlAck
    | Keepalive
    | Close
    | Data
    | Feedback
    | Chat
    | Ping
    | Pong
    | FileOffer
    | FileAccept
    | FileReject
    | FileEnd
    | FileResult
    | FileHeld
    | FileInline
    | Error
)

#: The payload class of every frame type, keyed by type byte.
BODY_CLASSES: dict[int, type[Body]] = {
    int(cls.frame_type): cls
    for cls in (
        Hello,
        HelloAck,
        Syn,
        SynAck,
        Ack,
        Probe,
        ProbeAck,
        CtrlAck,
        Keepalive,
        Close,
        Data,
        Feedback,
        Chat,
        Ping,
        Pong,
        FileOffer,
        FileAccept,
        FileReject,
        FileEnd,
        FileResult,
        FileHeld,
        FileInline,
        Error,
    )
}


class BadFrame(RemoteProtocolError):
    """A received frame failed PROTOCOL.md §Receiving; `verdict` names the drop reason."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"frame dropped: {verdict.name.lower()}")
        self.verdict = verdict


def encode_payload(body: Body) -> bytes:
    """The payload bytes of `body`, laid out as PROTOCOL.md §Frame types says.

    Raises LocalProtocolError when a value does not fit its field, breaks a rule of its frame
    type or §Limits, or the payload would exceed 65511 bytes.
    """
    name = body.frame_type.name
    reason = body.violation()
    if reason is not None:
        raise LocalProtocolError(f"{name} payload: {reason}")
    writer = PayloadWriter(name)
    body.write_fields(writer)
    payload = writer.getvalue()
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(
            f"{name} payload is {len(payload)} bytes, more than {MAX_PAYLOAD} (§Limits)"
        )
    return payload


def decode_payload(frame_type: int, payload: bytes | bytearray | memoryview) -> Body:
    """Decode the payload of a frame of type `frame_type` (PROTOCOL.md §Frame types).

    `payload` is exactly `payload_len` bytes (Ethernet padding already cut off). Bytes after
    the last field are ignored (§Receiving), except where the layout takes the rest (DATA,
    CHAT, PING, PONG, PROBE filler). Raises MalformedPayload for an unknown type, a payload
    longer than 65511 bytes, a field past the end, invalid UTF-8, or a broken rule or cap
    (§Limits); never any other exception.
    """
    try:
        kind = FrameType(frame_type)
    except ValueError:
        raise MalformedPayload(f"unknown frame type {frame_type:#04x}") from None
    reader = PayloadReader(payload, kind.name)
    if reader.remaining() > MAX_PAYLOAD:
        raise reader.malformed(f"{reader.remaining()} bytes, more than {MAX_PAYLOAD}")
    body = BODY_CLASSES[kind].read_fields(reader)
    reason = body.violation()
    if reason is not None:
        raise reader.malformed(reason)
    return body


@dataclass(frozen=True, slots=True)
class Frame:
    """One l2fast frame: addressing, header fields and the decoded payload.

    `flags` is the raw 16-bit flags field (PROTOCOL.md §Flags); reserved bits are kept as
    received. The frame type is the body's (`frame.type`).
    """

    dst: bytes
    src: bytes
    session: int
    seq: int
    body: Body
    flags: int = 0
    #: Received with flag AUTH: its nonce, tag and the bytes the tag covers (the node checks
    #: them; PROTOCOL.md §Authentication). None for a frame that was not sealed.
    trailer: Trailer | None = field(default=None, compare=False, repr=False)
    #: To send sealed: (key, nonce), the nonce empty except for SYN and SYN_ACK. Set by the
    #: node that holds a LAN key; the encoder appends the trailer.
    seal: tuple[TagKey, bytes] | None = field(default=None, compare=False, repr=False)
    #: `encode_payload(body)`, when the sender already computed it (a session encodes each
    #: control frame once, to check it against the MTU, and sends those bytes); None on
    #: received frames. Sealing still happens on the way out (`wire_payload`).
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> FrameType:
        """The frame type byte this frame travels under."""
        return self.body.frame_type


def wire_payload(frame: Frame, ethertype: int = DEFAULT_ETHERTYPE) -> tuple[int, bytes]:
    """The flags and payload bytes `frame` travels with: its encoded body, plus the
    authentication trailer when it is to be sealed (`frame.seal`).

    Raises LocalProtocolError as `encode_payload` does, and when the sealed payload would
    exceed 65511 bytes.
    """
    payload = frame.encoded if frame.encoded is not None else encode_payload(frame.body)
    if frame.seal is None:
        return frame.flags, payload
    key, nonce = frame.seal
    flags, sealed = seal_payload(
        key,
        nonce,
        dst=frame.dst,
        src=frame.src,
        ethertype=ethertype,
        frame_type=int(frame.type),
        flags=frame.flags,
        session=frame.session,
        seq=frame.seq,
        payload=payload,
    )
    if len(sealed) > MAX_PAYLOAD:
        raise LocalProtocolError(
            f"{frame.type.name} payload with its trailer is {len(sealed)} bytes, more than "
            f"{MAX_PAYLOAD} (§Limits)"
        )
    return flags, sealed


def encode_frame(frame: Frame, ethertype: int = DEFAULT_ETHERTYPE) -> bytes:
    """The complete Ethernet frame for `frame` (PROTOCOL.md §Ethernet framing, §Header),
    sealed when `frame.seal` is set (§Authentication).

    Raises LocalProtocolError for a value that does not fit (see `encode_payload` and
    `l2fast.wire.header.build_header`).
    """
    flags, payload = wire_payload(frame, ethertype)
    return build_frame(
        frame.dst,
        frame.src,
        ethertype,
        int(frame.type),
        flags,
        frame.session,
        frame.seq,
        payload,
    )


def decode_body(
    info: FrameInfo, payload: bytes | bytearray | memoryview, ethertype: int = DEFAULT_ETHERTYPE
) -> tuple[Body, Trailer | None]:
    """Decode the payload of the frame `info` describes (verdict OK), which may be sealed: the
    body, and the trailer when flag AUTH is set.

    Raises MalformedPayload as `decode_payload` does, for a sealed payload too short for its
    trailer, and for flag AUTH on a type that is never sealed (§Authentication).
    """
    if not info.flags & Flags.AUTH:
        return decode_payload(info.type, payload), None
    if info.type in UNSEALED_TYPES:
        raise MalformedPayload(f"frame type {info.type:#04x} is never sealed, but has flag AUTH")
    prefix = signed_prefix(
        info.dst, info.src, ethertype, info.type, info.flags, info.session, info.seq
    )
    inner, trailer = open_trailer(info.type, payload, prefix)
    return decode_payload(info.type, inner), trailer


def decode_frame(raw: bytes | bytearray | memoryview, ethertype: int = DEFAULT_ETHERTYPE) -> Frame:
    """Validate (PROTOCOL.md §Receiving) and decode one received frame.

    Raises BadFrame carrying the Verdict when a header check fails, and MalformedPayload when
    the payload does not match its layout (`bad_payload`). Padding after the payload is ignored.
    A sealed frame's trailer is split off into `trailer`, unchecked: the node holds the keys.
    """
    info = parse_frame(raw, ethertype)
    if info.verdict != Verdict.OK:
        raise BadFrame(info.verdict)
    view = memoryview(raw).cast("B")
    payload = view[info.payload_off : info.payload_off + info.payload_len]
    body, trailer = decode_body(info, payload, ethertype)
    return Frame(
        dst=info.dst,
        src=info.src,
        session=info.session,
        seq=info.seq,
        body=body,
        flags=info.flags,
        trailer=trailer,
    )
