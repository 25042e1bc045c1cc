"""Numbers from docs/PROTOCOL.md, shared by the C binding and the pure-Python codec.

The C core (csrc/l2fast_core.h) defines the same values; tests/unit check that both agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ETH_HLEN = 14
HDR_LEN = 24
FRAME_OVERHEAD = ETH_HLEN + HDR_LEN  # 38: Ethernet + l2fast header before the payload
MAGIC = 0x4C32
VERSION = 1
DEFAULT_ETHERTYPE = 0x88B5
BROADCAST_MAC = b"\xff" * 6

MIN_MTU = 1280  # PROTOCOL.md §Limits
MAX_MTU = 65535
MAX_PAYLOAD = MAX_MTU - HDR_LEN  # 65511
MAX_NAME_BYTES = 64
MAX_PATH_BYTES = 1000
MAX_PATH_COMPONENT_BYTES = 255
DEFAULT_CHAT_CAP = 1 << 20
MAX_CHAT_BYTES = 16 << 20
MAX_SACK_RANGES = 64
MAX_TEXT_BYTES = 512
#: Bytes of a PING payload before the filler: u32 ident, u64 ts_ns (PROTOCOL.md §PING, PONG).
PING_HEADER = 12


def max_payload(mtu: int) -> int:
    """Largest l2fast payload on an interface with this MTU (PROTOCOL.md §Limits)."""
    return min(mtu, MAX_MTU) - HDR_LEN


class Verdict(enum.IntEnum):
    """Outcome of validating one received frame, in PROTOCOL.md §Receiving order."""

    OK = 0
    SHORT = 1
    ETHERTYPE = 2
    BAD_MAGIC = 3
    BAD_VERSION = 4
    BAD_LENGTH = 5
    BAD_CRC = 6
    UNKNOWN_TYPE = 7


class FrameType(enum.IntEnum):
    """PROTOCOL.md §Frame types."""

    HELLO = 0x01
    HELLO_ACK = 0x02
    SYN = 0x10
    SYN_ACK = 0x11
    ACK = 0x12
    PROBE = 0x13
    PROBE_ACK = 0x14
    CTRL_ACK = 0x15
    KEEPALIVE = 0x18
    CLOSE = 0x19
    DATA = 0x20
    FEEDBACK = 0x21
    CHAT = 0x30
    PING = 0x38
    PONG = 0x39
    FILE_OFFER = 0x40
    FILE_ACCEPT = 0x41
    FILE_REJECT = 0x42
    FILE_END = 0x43
    FILE_RESULT = 0x44
    FILE_HELD = 0x45
    FILE_INLINE = 0x46
    ERROR = 0x7F


KNOWN_TYPES = frozenset(int(t) for t in FrameType)


class Flags(enum.IntFlag):
    """PROTOCOL.md §Flags."""

    NONE = 0
    ZLIB = 0x0001
    LAST = 0x0002
    REPLY = 0x0004
    RETRANSMIT = 0x0008
    #: The payload ends with an authentication trailer (PROTOCOL.md §Authentication).
    AUTH = 0x0010


class Caps(enum.IntFlag):
    """Capability bits carried in HELLO/HELLO_ACK (PROTOCOL.md §HELLO)."""

    NONE = 0
    CHAT = 0x1
    FILE = 0x2
    BENCH = 0x4
    ZLIB = 0x8
    DAEMON = 0x10


class Features(enum.IntFlag):
    """Feature bits negotiated by SYN/SYN_ACK."""

    NONE = 0
    ZLIB = 0x1
    #: The receiver may answer an offer of a file it already holds (same name and size) as
    #: held (FILE_ACCEPT `have` = every chunk), and the sender offers it again when FILE_RESULT
    #: says `differs` (PROTOCOL.md §Files already at the receiver).
    PRESENT = 0x2
    #: The receiver tells the sender that an offer waits for a person to decide (FILE_HELD,
    #: PROTOCOL.md §FILE_HELD); without it the sender hears nothing until FILE_ACCEPT or
    #: FILE_REJECT.
    HELD = 0x4
    #: A file small enough to fit one control frame may be offered with its bytes and digest
    #: (FILE_INLINE): the receiver can place it and answer FILE_RESULT at once, with no
    #: FILE_ACCEPT, DATA, FEEDBACK or FILE_END (PROTOCOL.md §FILE_INLINE).
    INLINE = 0x8


class Digest(enum.IntFlag):
    """End-to-end digest algorithms (one bit each)."""

    NONE = 0
    SHA256 = 0x1
    BLAKE2B_256 = 0x2


class ErrorCode(enum.IntEnum):
    """PROTOCOL.md §ERROR codes; also used by CLOSE, FILE_REJECT and FILE_RESULT."""

    OK = 0
    NO_COMMON_VERSION = 1
    BUSY = 2
    REFUSED = 3
    BAD_REQUEST = 4
    MTU_PROBE_FAILED = 5
    DIGEST_MISMATCH = 6
    IO_ERROR = 7
    NO_SPACE = 8
    BAD_NAME = 9
    TIMEOUT = 10
    TOO_LARGE = 11
    #: FILE_RESULT only: the receiver holds another file of that name and size (the sender
    #: offers the file again; PROTOCOL.md §Files already at the receiver).
    DIFFERS = 12


def error_name(code: int) -> str:
    """The §ERROR name of `code` as users see it (`no_space`), or `error N` for an unknown one
    (a newer peer's code)."""
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"error {code}"


class FileKind(enum.IntEnum):
    """FILE_OFFER `kind`."""

    FILE = 0
    DIRECTORY = 1
    SYMLINK = 2
    BENCH = 3


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What validating one frame found; identical from the C and the Python codec.

    Which fields a rejected frame fills (the C and the Python codec agree; the differential
    test enforces it): `dst` is filled when the frame holds at least 6 bytes and `src` at least
    12 (else `b""`); the header fields (`type`, `version`, `flags`, `session`, `seq`,
    `payload_off`, `payload_len`) are filled from verdict BAD_VERSION on, i.e. once the
    EtherType and magic have been accepted, and are 0 for SHORT, ETHERTYPE and BAD_MAGIC.
    """

    verdict: Verdict
    type: int  #: l2fast frame type byte (not yet checked against FrameType unless verdict is OK)
    version: int
    flags: int
    session: int
    seq: int
    payload_off: int  #: offset of the payload in the frame (38 once the header was read)
    payload_len: int
    dst: bytes  #: destination MAC (6 bytes)
    src: bytes  #: source MAC (6 bytes)
