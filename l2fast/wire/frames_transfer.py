"""Payloads of data, chat and file-transfer frames (PROTOCOL.md §Frame types).

DATA, FEEDBACK, CHAT, FILE_OFFER, FILE_INLINE, FILE_ACCEPT, FILE_REJECT, FILE_END, FILE_RESULT
and FILE_HELD.
Import them from `l2fast.wire.frames`. The conventions (`frame_type`, `violation()`, `LAYOUT`)
are those described in `l2fast.wire.frames_session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from l2fast.wire.constants import (
    MAX_CHAT_BYTES,
    MAX_PATH_BYTES,
    MAX_PATH_COMPONENT_BYTES,
    MAX_PAYLOAD,
    MAX_SACK_RANGES,
    MAX_TEXT_BYTES,
    FileKind,
    FrameType,
)
from l2fast.wire.payload_fields import WireRanges, is_single_bit, ranges_violation, utf8_len
from l2fast.wire.payload_layout import Field, Layout, TablePayload, checked_layout

__all__ = [
    "Chat",
    "Data",
    "Feedback",
    "FileAccept",
    "FileEnd",
    "FileHeld",
    "FileInline",
    "FileOffer",
    "FileReject",
    "FileResult",
]

_FILE_KINDS = frozenset(int(kind) for kind in FileKind)
_MODE_MASK = 0o7777


def _digest_violation(digest: int) -> str | None:
    if not is_single_bit(digest):
        return f"digest {digest:#x} must be exactly one digest bit"
    return None


def _text_violation(text: str) -> str | None:
    size = utf8_len(text)
    if size > MAX_TEXT_BYTES:
        return f"text is {size} bytes, more than {MAX_TEXT_BYTES}"
    return None


def path_violation(path: str) -> str | None:
    """Why `path` is not a FILE_OFFER relative path, or None (PROTOCOL.md §Limits).

    1..1000 bytes of UTF-8, `/`-separated components of 1..255 bytes each; an empty component
    (a leading, trailing or doubled `/`) means the path is not a plain relative path. Whether
    a component is `..` or otherwise unsafe is the receiving file layer's decision, not the
    codec's.
    """
    size = utf8_len(path)
    if not 1 <= size <= MAX_PATH_BYTES:
        return f"path is {size} bytes, must be 1..{MAX_PATH_BYTES}"
    for component in path.split("/"):
        part = utf8_len(component)
        if part == 0:
            return "path has an empty component (leading, trailing or doubled '/')"
        if part > MAX_PATH_COMPONENT_BYTES:
            return f"path component is {part} bytes, more than {MAX_PATH_COMPONENT_BYTES}"
    return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Data(TablePayload):
    """DATA (`0x20`): one chunk's bytes, as sent (PROTOCOL.md §DATA).

    `payload` is the whole payload, still zlib-compressed when the frame has flag ZLIB.
    """

    frame_type: ClassVar[FrameType] = FrameType.DATA
    LAYOUT = (Field("payload", "rest"),)  # a DATA payload has no padding of its own
    payload: bytes

    def violation(self) -> str | None:
        """No rule beyond the payload limit."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class Feedback(TablePayload):
    """FEEDBACK (`0x21`): receiver state for the data sender (PROTOCOL.md §FEEDBACK).

    `ranges` are at most 64 received chunk ranges (start, end exclusive) above `cum_ack`:
    non-empty, ascending and not overlapping. Touching ranges (one's end equal to the next
    start) are accepted, though a receiver should merge them.
    """

    frame_type: ClassVar[FrameType] = FrameType.FEEDBACK
    LAYOUT = (
        Field("cum_ack", "u64"),
        Field("credit", "u64"),
        Field("highest", "u64"),
        Field("kernel_drops", "u32"),
        Field("ranges", "ranges", cap=MAX_SACK_RANGES),
    )
    cum_ack: int
    credit: int
    highest: int
    kernel_drops: int
    ranges: WireRanges = ()

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FEEDBACK or §Limits, or None."""
        if len(self.ranges) > MAX_SACK_RANGES:
            return f"{len(self.ranges)} ranges, more than {MAX_SACK_RANGES}"
        return ranges_violation(self.ranges, self.cum_ack, "ranges")


@checked_layout
@dataclass(frozen=True, slots=True)
class Chat(TablePayload):
    """CHAT (`0x30`): one fragment of a chat message (PROTOCOL.md §CHAT).

    `data` is the fragment, which holds message bytes `[frag_offset, frag_offset + len(data))`
    of a `total_len`-byte message (at most 16 MiB, §Limits). UTF-8 is checked only after
    reassembly, since a fragment boundary may split a character.
    """

    frame_type: ClassVar[FrameType] = FrameType.CHAT
    LAYOUT = (
        Field("msg_id", "u32"),
        Field("total_len", "u32"),
        Field("frag_offset", "u32"),
        Field("to_all", "flag"),
        Field("data", "rest"),
    )
    msg_id: int
    total_len: int
    frag_offset: int
    to_all: bool
    data: bytes

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §CHAT or §Limits, or None."""
        if self.total_len > MAX_CHAT_BYTES:
            return f"total_len {self.total_len} exceeds {MAX_CHAT_BYTES}"
        if self.frag_offset + len(self.data) > self.total_len:
            return (
                f"fragment [{self.frag_offset}, {self.frag_offset + len(self.data)}) "
                f"runs past total_len {self.total_len}"
            )
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class FileOffer(TablePayload):
    """FILE_OFFER (`0x40`): one file, directory, symlink or bench stream (PROTOCOL.md §FILE_OFFER).

    `kind` is a FileKind value, `digest` exactly one digest bit, `mode` within 0o7777,
    `chunk_size` 1..65511 when `size` > 0 (a chunk must fit one DATA frame; it may be 0 when
    there are no chunks), and `path` a relative path as `path_violation` describes.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_OFFER
    LAYOUT: ClassVar[Layout] = (
        Field("transfer_id", "u32"),
        Field("kind", "u8"),
        Field("digest", "u8"),
        Field("size", "u64"),
        Field("mode", "u32"),
        Field("mtime_ns", "i64"),
        Field("first_chunk", "u64"),
        Field("chunk_size", "u32"),
        Field("path", "str16"),
    )
    transfer_id: int
    kind: int
    digest: int
    size: int
    mode: int
    mtime_ns: int
    first_chunk: int
    chunk_size: int
    path: str

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FILE_OFFER or §Limits, or None."""
        if self.kind not in _FILE_KINDS:
            return f"kind {self.kind} is not a known file kind"
        if self.mode & ~_MODE_MASK:
            return f"mode {self.mode:#o} has bits outside 0o7777"
        lowest_chunk_size = 1 if self.size > 0 else 0
        if not lowest_chunk_size <= self.chunk_size <= MAX_PAYLOAD:
            return (
                f"chunk_size {self.chunk_size} is outside {lowest_chunk_size}..{MAX_PAYLOAD} "
                f"for size {self.size}"
            )
        return _digest_violation(self.digest) or path_violation(self.path)


@checked_layout
@dataclass(frozen=True, slots=True)
class FileInline(FileOffer):
    """FILE_INLINE (`0x46`): a FILE_OFFER of a file that carries its bytes and its digest
    (PROTOCOL.md §FILE_INLINE), so that a small file costs one frame each way.

    It is a FileOffer (same fields first, same rules) with `digest_value` (the sender's digest
    of the data, raw bytes in the `bytes8` layout) and `data`, every byte of the file; `kind`
    must be a file and `len(data)` equal `size`. A receiver that does not take the data
    answers it as it answers a FILE_OFFER.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_INLINE
    LAYOUT: ClassVar[Layout] = (
        *FileOffer.LAYOUT,
        Field("digest_value", "bytes8"),
        Field("data", "rest"),
    )
    digest_value: bytes
    data: bytes

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FILE_INLINE (or §FILE_OFFER), or None."""
        if self.kind != FileKind.FILE:
            return f"kind {self.kind} cannot carry its data (only a file, kind 0)"
        if len(self.data) != self.size:
            return f"{len(self.data)} bytes of data for a file of size {self.size}"
        if not self.digest_value:
            return "an empty digest_value"
        return FileOffer.violation(self)

    @classmethod
    def carrying(cls, offer: FileOffer, digest_value: bytes, data: bytes) -> FileInline:
        """`offer` with the file's bytes and their digest."""
        fields: dict[str, Any] = {
            field.name: getattr(offer, field.name) for field in FileOffer.LAYOUT
        }
        return cls(**fields, digest_value=digest_value, data=data)

    def as_offer(self) -> FileOffer:
        """The FILE_OFFER part, without the bytes."""
        # Spelled out rather than walked from LAYOUT: this runs for every small file received.
        return FileOffer(
            self.transfer_id,
            self.kind,
            self.digest,
            self.size,
            self.mode,
            self.mtime_ns,
            self.first_chunk,
            self.chunk_size,
            self.path,
        )


@checked_layout
@dataclass(frozen=True, slots=True)
class FileAccept(TablePayload):
    """FILE_ACCEPT (`0x41`): accept an offer, listing chunks held (PROTOCOL.md §FILE_ACCEPT).

    `have` are chunk ranges (start, end exclusive), non-empty, ascending and not overlapping;
    their number is bounded only by the payload size.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_ACCEPT
    LAYOUT = (Field("transfer_id", "u32"), Field("have", "ranges"))
    transfer_id: int
    have: WireRanges = ()

    def violation(self) -> str | None:
        """Why the ranges break PROTOCOL.md §FILE_ACCEPT, or None."""
        return ranges_violation(self.have, 0, "have")


@checked_layout
@dataclass(frozen=True, slots=True)
class FileReject(TablePayload):
    """FILE_REJECT (`0x42`): `u32 transfer_id`, `u16 reason`, `str16 text` (<= 512 bytes).

    PROTOCOL.md §FILE_REJECT; `reason` is an §ERROR code.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_REJECT
    LAYOUT = (Field("transfer_id", "u32"), Field("reason", "u16"), Field("text", "str16"))
    transfer_id: int
    reason: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        return _text_violation(self.text)


@checked_layout
@dataclass(frozen=True, slots=True)
class FileEnd(TablePayload):
    """FILE_END (`0x43`): `u32 transfer_id`, `u8 digest` (one bit), value (PROTOCOL.md §FILE_END).

    `digest_value` is raw bytes (32 for SHA-256) in the `str8` layout, so at most 255 bytes;
    it is not UTF-8.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_END
    LAYOUT = (Field("transfer_id", "u32"), Field("digest", "u8"), Field("digest_value", "bytes8"))
    transfer_id: int
    digest: int
    digest_value: bytes

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FILE_END, or None."""
        return _digest_violation(self.digest)


@checked_layout
@dataclass(frozen=True, slots=True)
class FileResult(TablePayload):
    """FILE_RESULT (`0x44`): the receiver's verdict on one file (PROTOCOL.md §FILE_RESULT).

    `status` is 0 (verified) or an §ERROR code; `digest_value` raw bytes in the `str8` layout
    (at most 255); `final_name` UTF-8 in the `str16` layout, possibly empty when nothing landed.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_RESULT
    LAYOUT = (
        Field("transfer_id", "u32"),
        Field("status", "u16"),
        Field("bytes_received", "u64"),
        Field("digest_value", "bytes8"),
        Field("final_name", "str16"),
    )
    transfer_id: int
    status: int
    bytes_received: int
    digest_value: bytes
    final_name: str

    def violation(self) -> str | None:
        """No rule beyond the field widths and the payload limit."""
        return None


@checked_layout
@dataclass(frozen=True, slots=True)
class FileHeld(TablePayload):
    """FILE_HELD (`0x45`): an offer waits for a person at the receiver (PROTOCOL.md §FILE_HELD).

    `u32 transfer_id`, `u32 pending_id` (the receiver's inbox number, what `l2fast accept`
    takes there), `str16 text` (<= 512 bytes, the receiver's note). Sent only in a session that
    negotiated feature HELD, at most once per offer and before its FILE_ACCEPT / FILE_REJECT.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_HELD
    LAYOUT = (Field("transfer_id", "u32"), Field("pending_id", "u32"), Field("text", "str16"))
    transfer_id: int
    pending_id: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FILE_HELD or §Limits, or None."""
        return _text_violation(self.text)
