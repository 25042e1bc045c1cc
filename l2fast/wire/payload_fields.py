"""Field-level readers and writers for frame payloads (PROTOCOL.md §Conventions).

Every read from a received payload goes through `PayloadReader._take`, the one bounds guard
(STYLE.md §8): a field that runs past the end of the payload raises MalformedPayload, never
IndexError or struct.error. Every write goes through `PayloadWriter`, which refuses a value that
does not fit its field with LocalProtocolError, so we never put a truncated number on the wire.
"""

from __future__ import annotations

import struct

from l2fast.errors import LocalProtocolError, MalformedPayload

__all__ = [
    "PayloadReader",
    "PayloadWriter",
    "WireRanges",
    "is_single_bit",
    "ranges_violation",
    "utf8_len",
]

#: Chunk ranges as carried on the wire by FEEDBACK and FILE_ACCEPT: (start, end) pairs, end
#: exclusive. (The mutable set of ranges used by the transfer layer is transfer.ranges.ChunkRanges.)
WireRanges = tuple[tuple[int, int], ...]

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_RANGE = struct.Struct(">QQ")


class PayloadReader:
    """Reads the fields of one payload in order; raises MalformedPayload on any overrun.

    `what` names the frame type in error messages (for example "FEEDBACK").
    """

    def __init__(self, payload: bytes | bytearray | memoryview, what: str) -> None:
        self._buf = memoryview(payload).cast("B")
        self._off = 0
        self.what = what

    def malformed(self, reason: str) -> MalformedPayload:
        """A MalformedPayload naming the frame type, for the caller to raise."""
        return MalformedPayload(f"{self.what} payload: {reason}")

    def _take(self, size: int, field: str) -> memoryview:
        # The single bounds check for every field read (STYLE.md §8).
        end = self._off + size
        if end > len(self._buf):
            raise self.malformed(
                f"{field} needs {size} bytes at offset {self._off}, payload has {len(self._buf)}"
            )
        chunk = self._buf[self._off : end]
        self._off = end
        return chunk

    def u8(self, field: str) -> int:
        """An unsigned 8-bit integer."""
        return int(_U8.unpack(self._take(1, field))[0])

    def u16(self, field: str) -> int:
        """An unsigned big-endian 16-bit integer."""
        return int(_U16.unpack(self._take(2, field))[0])

    def u32(self, field: str) -> int:
        """An unsigned big-endian 32-bit integer."""
        return int(_U32.unpack(self._take(4, field))[0])

    def u64(self, field: str) -> int:
        """An unsigned big-endian 64-bit integer."""
        return int(_U64.unpack(self._take(8, field))[0])

    def i64(self, field: str) -> int:
        """A signed (two's complement) big-endian 64-bit integer."""
        return int(_I64.unpack(self._take(8, field))[0])

    def fixed(self, codec: struct.Struct) -> tuple[int, ...] | None:
        """The integers of `codec` (several fixed-width fields at once), or None, having read
        nothing, when fewer than `codec.size` bytes are left (the caller then reads field by
        field, so that the error names the field that runs past the end)."""
        end = self._off + codec.size
        if end > len(self._buf):
            return None
        values: tuple[int, ...] = codec.unpack_from(self._buf, self._off)
        self._off = end
        return values

    def bytes8(self, field: str) -> bytes:
        """The `str8` layout holding raw bytes (a u8 length, then that many bytes)."""
        return bytes(self._take(self.u8(field), field))

    def str8(self, field: str) -> str:
        """A `str8`: u8 length, then that many bytes of UTF-8 (PROTOCOL.md §Conventions)."""
        return self._utf8(self._take(self.u8(field), field), field)

    def str16(self, field: str) -> str:
        """A `str16`: u16 length, then that many bytes of UTF-8 (PROTOCOL.md §Conventions)."""
        return self._utf8(self._take(self.u16(field), field), field)

    def ranges(self, count: int, field: str) -> WireRanges:
        """`count` pairs of (u64 start, u64 end) as used by FEEDBACK and FILE_ACCEPT."""
        raw = self._take(count * _RANGE.size, field)
        return tuple((int(start), int(end)) for start, end in _RANGE.iter_unpack(raw))

    def rest(self) -> bytes:
        """Every remaining byte ("rest" in a layout)."""
        return bytes(self._take(len(self._buf) - self._off, "rest"))

    def remaining(self) -> int:
        """How many bytes are left after the fields read so far."""
        return len(self._buf) - self._off

    def _utf8(self, raw: memoryview, field: str) -> str:
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            # A string that is not valid UTF-8 makes the whole frame malformed (§Conventions).
            raise self.malformed(f"{field} is not valid UTF-8") from exc


class PayloadWriter:
    """Builds one payload field by field; raises LocalProtocolError for a value that does not fit.

    `what` names the frame type in error messages.
    """

    def __init__(self, what: str) -> None:
        self._parts: list[bytes] = []
        self.what = what

    def _error(self, reason: str) -> LocalProtocolError:
        return LocalProtocolError(f"{self.what} payload: {reason}")

    def _uint(self, codec: struct.Struct, bits: int, value: int, field: str) -> None:
        if not 0 <= value < (1 << bits):
            raise self._error(f"{field}={value} does not fit in an unsigned {bits}-bit field")
        self._parts.append(codec.pack(value))

    def u8(self, value: int, field: str) -> None:
        """An unsigned 8-bit integer."""
        self._uint(_U8, 8, value, field)

    def u16(self, value: int, field: str) -> None:
        """An unsigned big-endian 16-bit integer."""
        self._uint(_U16, 16, value, field)

    def u32(self, value: int, field: str) -> None:
        """An unsigned big-endian 32-bit integer."""
        self._uint(_U32, 32, value, field)

    def u64(self, value: int, field: str) -> None:
        """An unsigned big-endian 64-bit integer."""
        self._uint(_U64, 64, value, field)

    def i64(self, value: int, field: str) -> None:
        """A signed (two's complement) big-endian 64-bit integer."""
        if not -(1 << 63) <= value < (1 << 63):
            raise self._error(f"{field}={value} does not fit in a signed 64-bit field")
        self._parts.append(_I64.pack(value))

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes written as they are ("rest" or filler)."""
        self._parts.append(bytes(data))

    def bytes8(self, data: bytes, field: str) -> None:
        """The `str8` layout holding raw bytes (at most 255)."""
        self.u8(len(data), f"length of {field}")
        self._parts.append(bytes(data))

    def str8(self, text: str, field: str) -> None:
        """A `str8` (UTF-8, at most 255 bytes)."""
        data = self._encode_utf8(text, field)
        self.u8(len(data), f"length of {field}")
        self._parts.append(data)

    def str16(self, text: str, field: str) -> None:
        """A `str16` (UTF-8, at most 65535 bytes)."""
        data = self._encode_utf8(text, field)
        self.u16(len(data), f"length of {field}")
        self._parts.append(data)

    def ranges(self, ranges: WireRanges, field: str) -> None:
        """(u64 start, u64 end) pairs; the count is written separately by the caller."""
        for start, end in ranges:
            self.u64(start, f"{field} start")
            self.u64(end, f"{field} end")

    def getvalue(self) -> bytes:
        """The payload built so far."""
        return b"".join(self._parts)

    def _encode_utf8(self, text: str, field: str) -> bytes:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Lone surrogates cannot be encoded; sending them would make the frame malformed.
            raise self._error(f"{field} cannot be encoded as UTF-8") from exc


def utf8_len(text: str) -> int:
    """Length in bytes of `text` as UTF-8; lone surrogates count 3 bytes, like the encoder."""
    return len(text.encode("utf-8", "surrogatepass"))


def is_single_bit(value: int) -> bool:
    """True when exactly one bit is set (a chosen digest, PROTOCOL.md §SYN)."""
    return value > 0 and value & (value - 1) == 0


def ranges_violation(ranges: WireRanges, floor: int, field: str) -> str | None:
    """Why `ranges` are not valid chunk ranges, or None when they are.

    Valid means (PROTOCOL.md §FEEDBACK, §FILE_ACCEPT): every range is non-empty (start < end,
    end exclusive), the ranges ascend without overlapping (each start >= the previous end), and
    the first start is >= `floor` (FEEDBACK's ranges lie above `cum_ack`).
    """
    previous_end = floor
    for index, (start, end) in enumerate(ranges):
        if start >= end:
            return f"{field}[{index}] = [{start}, {end}) is empty"
        if start < previous_end:
            if index == 0:
                return f"{field}[0] starts at {start}, below {floor}"
            return f"{field}[{index}] = [{start}, {end}) overlaps or precedes the range before it"
        previous_end = end
    return None
