"""Payloads of data, chat and file-transfer frames (PROTOCOL.md §Frame types).

DATA, FEEDBACK, CHAT, FILE_OFFER, FILE_ACCEPT, FILE_REJECT, FILE_END and FILE_RESULT. Import them
from `l2fast.wire.frames`. The conventions (`frame_type`, `violation()`, `write_fields()`,
`read_fields()`) are those described in `l2fast.wire.frames_session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
from l2fast.wire.payload_fields import (
    PayloadReader,
    PayloadWriter,
    WireRanges,
    is_single_bit,
    ranges_violation,
    utf8_len,
)

__all__ = [
    "Chat",
    "Data",
    "Feedback",
    "FileAccept",
    "FileEnd",
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


@dataclass(frozen=True, slots=True)
class Data:
    """DATA (`0x20`): one chunk's bytes, as sent (PROTOCOL.md §DATA).

    `payload` is the whole payload, still zlib-compressed when the frame has flag ZLIB.
    """

    frame_type: ClassVar[FrameType] = FrameType.DATA
    payload: bytes

    def violation(self) -> str | None:
        """No rule beyond the payload limit."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.raw(self.payload)

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Data:
        """The whole payload is the chunk; a DATA payload has no padding of its own."""
        return cls(payload=r.rest())


@dataclass(frozen=True, slots=True)
class Feedback:
    """FEEDBACK (`0x21`): receiver state for the data sender (PROTOCOL.md §FEEDBACK).

    `ranges` are at most 64 received chunk ranges (start, end exclusive) above `cum_ack`:
    non-empty, ascending and not overlapping. Touching ranges (one's end equal to the next
    start) are accepted, though a receiver should merge them.
    """

    frame_type: ClassVar[FrameType] = FrameType.FEEDBACK
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u64(self.cum_ack, "cum_ack")
        w.u64(self.credit, "credit")
        w.u64(self.highest, "highest")
        w.u32(self.kernel_drops, "kernel_drops")
        w.u16(len(self.ranges), "n_ranges")
        w.ranges(self.ranges, "ranges")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Feedback:
        """Read the fields in wire order; n_ranges is capped before the ranges are read."""
        cum_ack = r.u64("cum_ack")
        credit = r.u64("credit")
        highest = r.u64("highest")
        kernel_drops = r.u32("kernel_drops")
        n_ranges = r.u16("n_ranges")
        if n_ranges > MAX_SACK_RANGES:
            raise r.malformed(f"n_ranges {n_ranges} exceeds {MAX_SACK_RANGES}")
        return cls(
            cum_ack=cum_ack,
            credit=credit,
            highest=highest,
            kernel_drops=kernel_drops,
            ranges=r.ranges(n_ranges, "ranges"),
        )


@dataclass(frozen=True, slots=True)
class Chat:
    """CHAT (`0x30`): one fragment of a chat message (PROTOCOL.md §CHAT).

    `data` is the fragment, which holds message bytes `[frag_offset, frag_offset + len(data))`
    of a `total_len`-byte message (at most 16 MiB, §Limits). UTF-8 is checked only after
    reassembly, since a fragment boundary may split a character.
    """

    frame_type: ClassVar[FrameType] = FrameType.CHAT
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.msg_id, "msg_id")
        w.u32(self.total_len, "total_len")
        w.u32(self.frag_offset, "frag_offset")
        w.u8(1 if self.to_all else 0, "to_all")
        w.raw(self.data)

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Chat:
        """Read the fields in wire order; `to_all` must be 0 or 1."""
        msg_id = r.u32("msg_id")
        total_len = r.u32("total_len")
        frag_offset = r.u32("frag_offset")
        to_all = r.u8("to_all")
        if to_all > 1:
            raise r.malformed(f"to_all is {to_all}, must be 0 or 1")
        return cls(
            msg_id=msg_id,
            total_len=total_len,
            frag_offset=frag_offset,
            to_all=to_all == 1,
            data=r.rest(),
        )


@dataclass(frozen=True, slots=True)
class FileOffer:
    """FILE_OFFER (`0x40`): one file, directory, symlink or bench stream (PROTOCOL.md §FILE_OFFER).

    `kind` is a FileKind value, `digest` exactly one digest bit, `mode` within 0o7777,
    `chunk_size` 1..65511 when `size` > 0 (a chunk must fit one DATA frame; it may be 0 when
    there are no chunks), and `path` a relative path as `path_violation` describes.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_OFFER
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

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.transfer_id, "transfer_id")
        w.u8(self.kind, "kind")
        w.u8(self.digest, "digest")
        w.u64(self.size, "size")
        w.u32(self.mode, "mode")
        w.i64(self.mtime_ns, "mtime_ns")
        w.u64(self.first_chunk, "first_chunk")
        w.u32(self.chunk_size, "chunk_size")
        w.str16(self.path, "path")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> FileOffer:
        """Read the fields in wire order."""
        return cls(
            transfer_id=r.u32("transfer_id"),
            kind=r.u8("kind"),
            digest=r.u8("digest"),
            size=r.u64("size"),
            mode=r.u32("mode"),
            mtime_ns=r.i64("mtime_ns"),
            first_chunk=r.u64("first_chunk"),
            chunk_size=r.u32("chunk_size"),
            path=r.str16("path"),
        )


@dataclass(frozen=True, slots=True)
class FileAccept:
    """FILE_ACCEPT (`0x41`): accept an offer, listing chunks held (PROTOCOL.md §FILE_ACCEPT).

    `have` are chunk ranges (start, end exclusive), non-empty, ascending and not overlapping;
    their number is bounded only by the payload size.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_ACCEPT
    transfer_id: int
    have: WireRanges = ()

    def violation(self) -> str | None:
        """Why the ranges break PROTOCOL.md §FILE_ACCEPT, or None."""
        return ranges_violation(self.have, 0, "have")

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.transfer_id, "transfer_id")
        w.u16(len(self.have), "n_ranges")
        w.ranges(self.have, "have")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> FileAccept:
        """Read the fields in wire order."""
        transfer_id = r.u32("transfer_id")
        n_ranges = r.u16("n_ranges")
        return cls(transfer_id=transfer_id, have=r.ranges(n_ranges, "have"))


@dataclass(frozen=True, slots=True)
class FileReject:
    """FILE_REJECT (`0x42`): `u32 transfer_id`, `u16 reason`, `str16 text` (<= 512 bytes).

    PROTOCOL.md §FILE_REJECT; `reason` is an §ERROR code.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_REJECT
    transfer_id: int
    reason: int
    text: str = ""

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §Limits, or None."""
        size = utf8_len(self.text)
        if size > MAX_TEXT_BYTES:
            return f"text is {size} bytes, more than {MAX_TEXT_BYTES}"
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.transfer_id, "transfer_id")
        w.u16(self.reason, "reason")
        w.str16(self.text, "text")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> FileReject:
        """Read the fields in wire order."""
        return cls(transfer_id=r.u32("transfer_id"), reason=r.u16("reason"), text=r.str16("text"))


@dataclass(frozen=True, slots=True)
class FileEnd:
    """FILE_END (`0x43`): `u32 transfer_id`, `u8 digest` (one bit), value (PROTOCOL.md §FILE_END).

    `digest_value` is raw bytes (32 for SHA-256) in the `str8` layout, so at most 255 bytes;
    it is not UTF-8.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_END
    transfer_id: int
    digest: int
    digest_value: bytes

    def violation(self) -> str | None:
        """Why the values break PROTOCOL.md §FILE_END, or None."""
        return _digest_violation(self.digest)

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.transfer_id, "transfer_id")
        w.u8(self.digest, "digest")
        w.bytes8(self.digest_value, "digest_value")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> FileEnd:
        """Read the fields in wire order."""
        return cls(
            transfer_id=r.u32("transfer_id"),
            digest=r.u8("digest"),
            digest_value=r.bytes8("digest_value"),
        )


@dataclass(frozen=True, slots=True)
class FileResult:
    """FILE_RESULT (`0x44`): the receiver's verdict on one file (PROTOCOL.md §FILE_RESULT).

    `status` is 0 (verified) or an §ERROR code; `digest_value` raw bytes in the `str8` layout
    (at most 255); `final_name` UTF-8 in the `str16` layout, possibly empty when nothing landed.
    """

    frame_type: ClassVar[FrameType] = FrameType.FILE_RESULT
    transfer_id: int
    status: int
    bytes_received: int
    digest_value: bytes
    final_name: str

    def violation(self) -> str | None:
        """No rule beyond the field widths and the payload limit."""
        return None

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        w.u32(self.transfer_id, "transfer_id")
        w.u16(self.status, "status")
        w.u64(self.bytes_received, "bytes_received")
        w.bytes8(self.digest_value, "digest_value")
        w.str16(self.final_name, "final_name")

    @classmethod
    def read_fields(cls, r: PayloadReader) -> FileResult:
        """Read the fields in wire order."""
        return cls(
            transfer_id=r.u32("transfer_id"),
            status=r.u16("status"),
            bytes_received=r.u64("bytes_received"),
            digest_value=r.bytes8("digest_value"),
            final_name=r.str16("final_name"),
        )
