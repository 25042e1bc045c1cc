"""Pure-Python CRC32C and header codec against PROTOCOL.md §Header, §CRC and §Receiving."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError
from l2fast.wire.constants import (
    DEFAULT_ETHERTYPE,
    FRAME_OVERHEAD,
    KNOWN_TYPES,
    MAX_PAYLOAD,
    FrameInfo,
    FrameType,
    Verdict,
)
from l2fast.wire.crc32c_ref import crc32c
from l2fast.wire.header import build_frame, build_header, parse_frame
from tests.strategies import macs, u16, u32, u64

DST = bytes.fromhex("ffffffffffff")
SRC = bytes.fromhex("020000000001")


def bitwise_crc32c(data: bytes, value: int = 0) -> int:
    """CRC-32C one bit at a time, straight from the parameters in PROTOCOL.md §CRC.

    Independent of the table in crc32c_ref, so the table is checked against the definition.
    """
    reg = value ^ 0xFFFFFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ (0x82F63B78 if reg & 1 else 0)
    return reg ^ 0xFFFFFFFF


def good_frame(
    payload: bytes = b"", type: int = FrameType.DATA, ethertype: int = DEFAULT_ETHERTYPE
) -> bytearray:
    return bytearray(build_frame(DST, SRC, ethertype, type, 0x0003, 77, 1234, payload))


def fix_crc(frame: bytearray) -> bytearray:
    """Recompute the CRC after a test edited the header, so only the intended check fails."""
    (payload_len,) = struct.unpack_from(">H", frame, 20)
    crc = crc32c(frame[38 : 38 + payload_len], crc32c(frame[14:34]))
    struct.pack_into(">I", frame, 34, crc)
    return frame


# ---- CRC32C ----


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"123456789", 0xE3069283),  # PROTOCOL.md §CRC check value
        (b"", 0x00000000),
        # RFC 3720 appendix B.4 test vectors.
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_check_values(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert bitwise_crc32c(data) == expected


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32c_is_incremental_like_zlib(first: bytes, second: bytes) -> None:
    assert crc32c(second, crc32c(first)) == crc32c(first + second)


@given(st.binary(max_size=300), u32)
def test_crc32c_table_matches_bitwise_definition(data: bytes, start: int) -> None:
    assert crc32c(data, start) == bitwise_crc32c(data, start)


def test_crc32c_accepts_bytearray_and_memoryview() -> None:
    assert crc32c(bytearray(b"123456789")) == 0xE3069283
    assert crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283


# ---- build: byte-exact vectors written from the tables in PROTOCOL.md ----


def test_build_header_keepalive_vector() -> None:
    # KEEPALIVE, flags LAST, session 0x01020304, seq 0x0A0B0C0D0E0F1011, empty payload.
    # The CRC covers header offsets 0..19 only; 0x986EFFEA was computed with bitwise_crc32c.
    header = build_header(
        DST, SRC, DEFAULT_ETHERTYPE, 0x18, 0x0002, 0x01020304, 0x0A0B0C0D0E0F1011, b""
    )
    expected = bytes.fromhex(
        "ffffffffffff"  # destination MAC
        "020000000001"  # source MAC
        "88b5"  # EtherType
        "4c32"  # magic "L2"
        "01"  # version
        "18"  # type KEEPALIVE
        "0002"  # flags LAST
        "0000"  # payload_len
        "01020304"  # session
        "0a0b0c0d0e0f1011"  # seq
        "986effea"  # crc
    )
    assert header == expected
    assert bitwise_crc32c(expected[14:34]) == 0x986EFFEA


def test_build_frame_ping_vector() -> None:
    # PING ident 7, ts_ns 256, filler "ab": the CRC runs over header bytes 0..19 then the payload.
    payload = bytes.fromhex("000000070000000000000100") + b"ab"
    frame = build_frame(bytes(6), SRC, DEFAULT_ETHERTYPE, 0x38, 0, 0, 5, payload)
    expected = (
        bytes.fromhex(
            "000000000000"
            "020000000001"
            "88b5"
            "4c32"
            "01"
            "38"
            "0000"
            "000e"  # payload_len 14
            "00000000"
            "0000000000000005"
            "ccf11e11"
        )
        + payload
    )
    assert frame == expected
    assert bitwise_crc32c(payload, bitwise_crc32c(expected[14:34])) == 0xCCF11E11


def test_build_header_uses_given_ethertype() -> None:
    header = build_header(DST, SRC, 0x88B6, 0x18, 0, 0, 0, b"")
    assert header[12:14] == b"\x88\xb6"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dst", b"\x00" * 5),
        ("src", b"\x00" * 7),
        ("ethertype", 0x10000),
        ("type", 256),
        ("type", -1),
        ("flags", 0x10000),
        ("session", 1 << 32),
        ("seq", 1 << 64),
        ("seq", -1),
        ("payload", bytes(MAX_PAYLOAD + 1)),
    ],
)
def test_build_header_refuses_values_that_do_not_fit(field: str, value: object) -> None:
    args: dict[str, object] = {
        "dst": DST,
        "src": SRC,
        "ethertype": DEFAULT_ETHERTYPE,
        "type": 0x20,
        "flags": 0,
        "session": 1,
        "seq": 1,
        "payload": b"",
    }
    args[field] = value
    with pytest.raises(LocalProtocolError):
        build_header(**args)  # type: ignore[arg-type]


def test_build_largest_payload() -> None:
    frame = build_frame(DST, SRC, DEFAULT_ETHERTYPE, 0x20, 0, 1, 2, bytes(MAX_PAYLOAD))
    info = parse_frame(frame)
    assert info.verdict == Verdict.OK
    assert info.payload_len == MAX_PAYLOAD


# ---- parse: every verdict, in the order of §Receiving ----


def test_parse_ok_fills_every_field() -> None:
    frame = build_frame(DST, SRC, DEFAULT_ETHERTYPE, 0x30, 0x000A, 0xDEADBEEF, 1 << 63, b"hello")
    assert parse_frame(frame) == FrameInfo(
        verdict=Verdict.OK,
        type=0x30,
        version=1,
        flags=0x000A,
        session=0xDEADBEEF,
        seq=1 << 63,
        payload_off=38,
        payload_len=5,
        dst=DST,
        src=SRC,
    )


def test_parse_ignores_padding_after_payload() -> None:
    # NICs pad short frames to 60 bytes (§Ethernet framing); padding is not covered by the CRC.
    frame = good_frame(b"abc") + b"\x55" * 19
    info = parse_frame(frame)
    assert info.verdict == Verdict.OK
    assert info.payload_len == 3


@pytest.mark.parametrize("length", [0, 1, 5, 6, 11, 12, 13, 37])
def test_parse_short(length: int) -> None:
    frame = good_frame(b"payload")[:length]
    info = parse_frame(frame)
    assert info.verdict == Verdict.SHORT
    # MACs are reported as far as the frame holds them; nothing else is read.
    assert info.dst == (DST if length >= 6 else b"")
    assert info.src == (SRC if length >= 12 else b"")
    assert (info.type, info.version, info.flags, info.session, info.seq) == (0, 0, 0, 0, 0)
    assert (info.payload_off, info.payload_len) == (0, 0)


def test_parse_wrong_ethertype_reads_no_header_field() -> None:
    info = parse_frame(good_frame(b"x", ethertype=0x0800))
    assert info.verdict == Verdict.ETHERTYPE
    assert (info.dst, info.src) == (DST, SRC)
    assert (info.type, info.version, info.session, info.seq, info.payload_off) == (0, 0, 0, 0, 0)


def test_parse_uses_configured_ethertype() -> None:
    frame = good_frame(b"x", ethertype=0x88B6)
    assert parse_frame(frame, ethertype=0x88B6).verdict == Verdict.OK
    assert parse_frame(frame).verdict == Verdict.ETHERTYPE


def test_parse_bad_magic_reads_no_header_field() -> None:
    frame = good_frame(b"x")
    frame[14] = 0x4D
    info = parse_frame(fix_crc(frame))
    assert info.verdict == Verdict.BAD_MAGIC
    assert (info.type, info.version, info.payload_len, info.payload_off) == (0, 0, 0, 0)


def test_parse_bad_version_reports_the_header() -> None:
    frame = good_frame(b"x")
    frame[16] = 2
    info = parse_frame(fix_crc(frame))
    assert info.verdict == Verdict.BAD_VERSION
    assert (info.version, info.type, info.session, info.seq) == (2, FrameType.DATA, 77, 1234)
    assert (info.payload_off, info.payload_len) == (38, 1)


def test_parse_bad_length_reports_the_claimed_length() -> None:
    frame = good_frame(b"abcd")[:-1]  # payload_len says 4, only 3 bytes arrived
    info = parse_frame(frame)
    assert info.verdict == Verdict.BAD_LENGTH
    assert info.payload_len == 4


def test_parse_bad_crc() -> None:
    frame = good_frame(b"abcd")
    frame[34] ^= 0x01
    assert parse_frame(frame).verdict == Verdict.BAD_CRC


def test_parse_unknown_type() -> None:
    info = parse_frame(good_frame(b"", type=0x03))
    assert info.verdict == Verdict.UNKNOWN_TYPE
    assert info.type == 0x03


@pytest.mark.parametrize(
    ("flips", "expected"),
    [
        # Each case breaks two checks (offset: XOR mask); the earlier one in §Receiving must win.
        # Editing any covered byte also breaks the CRC, which must not win either.
        ({12: 0x01, 14: 0x01}, Verdict.ETHERTYPE),  # ethertype before magic
        ({14: 0x01, 16: 0x08}, Verdict.BAD_MAGIC),  # magic before version
        ({16: 0x08, 20: 0x80}, Verdict.BAD_VERSION),  # version before length
        ({20: 0x80, 34: 0x01}, Verdict.BAD_LENGTH),  # length before crc
        ({17: 0x23}, Verdict.BAD_CRC),  # crc before type: DATA 0x20 becomes unknown 0x03
    ],
)
def test_parse_stops_at_first_failure(flips: dict[int, int], expected: Verdict) -> None:
    frame = good_frame(b"ab")
    for offset, mask in flips.items():
        frame[offset] ^= mask
    assert parse_frame(frame).verdict == expected


def test_parse_short_wins_over_everything() -> None:
    assert parse_frame(bytes(37)).verdict == Verdict.SHORT


def test_crc_covers_header_and_payload_but_not_ethernet() -> None:
    frame = good_frame(b"payload")
    for offset in range(12):  # MACs are not covered
        mutated = bytearray(frame)
        mutated[offset] ^= 0xFF
        assert parse_frame(mutated).verdict == Verdict.OK
    for offset in range(14, len(frame)):  # every header and payload byte is
        mutated = bytearray(frame)
        mutated[offset] ^= 0x01
        assert parse_frame(mutated).verdict != Verdict.OK, offset


@given(
    dst=macs,
    src=macs,
    ethertype=u16,
    type=st.sampled_from(sorted(KNOWN_TYPES)),
    flags=u16,
    session=u32,
    seq=u64,
    payload=st.binary(max_size=600),
    padding=st.binary(max_size=30),
)
def test_build_then_parse_round_trips(
    dst: bytes,
    src: bytes,
    ethertype: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    payload: bytes,
    padding: bytes,
) -> None:
    frame = build_frame(dst, src, ethertype, type, flags, session, seq, payload)
    assert len(frame) == FRAME_OVERHEAD + len(payload)
    assert frame[:FRAME_OVERHEAD] == build_header(
        dst, src, ethertype, type, flags, session, seq, payload
    )
    info = parse_frame(frame + padding, ethertype)
    assert info == FrameInfo(Verdict.OK, type, 1, flags, session, seq, 38, len(payload), dst, src)


@given(st.binary(max_size=120), u16)
def test_parse_never_raises(frame: bytes, ethertype: int) -> None:
    info = parse_frame(frame, ethertype)
    assert isinstance(info.verdict, Verdict)
    if info.verdict == Verdict.OK:
        assert info.payload_off + info.payload_len <= len(frame)
