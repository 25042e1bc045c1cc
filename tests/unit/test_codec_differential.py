"""Differential tests: the C codec (l2fast.native) and the pure-Python one must agree exactly.

Both are fed the same bytes (valid frames, random bytes, valid frames with one byte changed,
truncated frames, frames whose payload_len lies) and must return equal FrameInfo values, build
identical bytes and compute identical CRCs (STYLE.md §9). PROTOCOL.md is the arbiter: the
Python codec is also checked against hand-written vectors in test_wire_header/test_wire_frames.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from l2fast import native
from l2fast.errors import LocalProtocolError
from l2fast.wire import header as py
from l2fast.wire.constants import DEFAULT_ETHERTYPE, KNOWN_TYPES, MAX_PAYLOAD, Verdict
from l2fast.wire.crc32c_ref import crc32c as crc32c_ref
from l2fast.wire.frames import Frame, decode_frame, encode_frame, encode_payload
from tests.strategies import frames, macs, u8, u16, u32, u64

OTHER_ETHERTYPE = 0x88B6


@st.composite
def header_fields(draw: st.DrawFn) -> tuple[bytes, bytes, int, int, int, int, int, bytes]:
    """Arguments for build_header: any type byte (known or not), any values that fit."""
    return (
        draw(macs),
        draw(macs),
        draw(st.sampled_from([DEFAULT_ETHERTYPE, OTHER_ETHERTYPE]) | u16),
        draw(st.sampled_from(sorted(KNOWN_TYPES)) | u8),
        draw(u16),
        draw(u32),
        draw(u64),
        draw(st.binary(max_size=400)),
    )


@st.composite
def valid_frames(draw: st.DrawFn) -> bytes:
    """A correct frame: either a real encoded Frame or raw header fields, maybe padded."""
    if draw(st.booleans()):
        raw = encode_frame(draw(frames()))
    else:
        raw = py.build_frame(*draw(header_fields()))
    return raw + draw(st.binary(max_size=24))


def _fix_crc(raw: bytearray) -> None:
    # Recompute the CRC where the claimed payload fits, so that the checks after the CRC are
    # reached by damaged frames and not only frames failing at step 6.
    (payload_len,) = struct.unpack_from(">H", raw, 20)
    payload = raw[38 : 38 + payload_len]
    struct.pack_into(">I", raw, 34, crc32c_ref(payload, crc32c_ref(raw[14:34])))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame damaged in one way a wire or a hostile peer could damage it."""
    raw = bytearray(draw(valid_frames()))
    damage = draw(
        st.sampled_from(["byte", "header_byte", "truncate", "payload_len", "payload_len_crc"])
    )
    if damage == "byte":
        raw[draw(st.integers(0, len(raw) - 1))] = draw(u8)
    elif damage == "header_byte":
        # EtherType, magic, version, type, flags, payload_len, session or seq, CRC kept valid.
        raw[draw(st.integers(12, 33))] = draw(u8)
        _fix_crc(raw)
    elif damage == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    else:
        struct.pack_into(">H", raw, 20, draw(u16))
        if damage == "payload_len_crc":
            _fix_crc(raw)
    return bytes(raw)


any_frame_bytes = st.one_of(valid_frames(), mutated_frames(), st.binary(max_size=80))
ethertypes = st.sampled_from([DEFAULT_ETHERTYPE, OTHER_ETHERTYPE]) | u16


@st.composite
def frames_and_ethertypes(draw: st.DrawFn) -> tuple[bytes, int]:
    """Frame bytes and the receiver's EtherType, usually the one the frame carries."""
    raw = draw(any_frame_bytes)
    if len(raw) >= 14 and draw(st.integers(0, 3)) > 0:
        (ethertype,) = struct.unpack_from(">H", raw, 12)
        return raw, ethertype
    return raw, draw(ethertypes)


# ---- parse ----


def _damaged_example(offset: int, value: int) -> bytes:
    raw = bytearray(
        py.build_frame(b"\x01" * 6, b"\x02" * 6, DEFAULT_ETHERTYPE, 0x30, 0, 1, 2, b"hi")
    )
    raw[offset] = value
    _fix_crc(raw)
    return bytes(raw)


@given(case=frames_and_ethertypes())
@example(case=(_damaged_example(14, 0x4D), DEFAULT_ETHERTYPE))  # bad magic, CRC valid
@example(case=(_damaged_example(16, 0x02), DEFAULT_ETHERTYPE))  # version 2, CRC valid
@example(case=(_damaged_example(17, 0x03), DEFAULT_ETHERTYPE))  # unknown type, CRC valid
@example(case=(b"", DEFAULT_ETHERTYPE))
@example(case=(bytes(5), DEFAULT_ETHERTYPE))
@example(case=(bytes(11), DEFAULT_ETHERTYPE))
@example(case=(bytes(37), DEFAULT_ETHERTYPE))
@example(case=(bytes(38), 0))
def test_parse_frame_agrees(case: tuple[bytes, int]) -> None:
    raw, ethertype = case
    expected = py.parse_frame(raw, ethertype)
    event(f"verdict {expected.verdict.name}")  # --hypothesis-show-statistics shows the spread
    assert native.parse_frame(raw, ethertype) == expected


@given(raw=valid_frames())
def test_valid_frames_are_ok_in_both(raw: bytes) -> None:
    (ethertype,) = struct.unpack_from(">H", raw, 12)
    (frame_type,) = struct.unpack_from(">B", raw, 17)
    expected = Verdict.OK if frame_type in KNOWN_TYPES else Verdict.UNKNOWN_TYPE
    assert native.parse_frame(raw, ethertype).verdict == expected
    assert py.parse_frame(raw, ethertype).verdict == expected


@given(cases=st.lists(frames_and_ethertypes(), max_size=12), ethertype=ethertypes)
def test_parse_batch_agrees_with_python_per_frame(
    cases: list[tuple[bytes, int]], ethertype: int
) -> None:
    # One batch has one EtherType: take the first frame's when there is one.
    batch = [raw for raw, _ in cases]
    if cases:
        ethertype = cases[0][1]
    assert native.parse_batch(batch, ethertype) == [py.parse_frame(f, ethertype) for f in batch]


def test_parse_rejects_out_of_range_ethertype_in_both() -> None:
    with pytest.raises(ValueError):
        native.parse_frame(bytes(60), 0x10000)
    with pytest.raises(ValueError):
        py.parse_frame(bytes(60), 0x10000)


# ---- build ----


@given(fields=header_fields())
def test_build_header_and_frame_agree(
    fields: tuple[bytes, bytes, int, int, int, int, int, bytes],
) -> None:
    assert native.build_header(*fields) == py.build_header(*fields)
    assert native.build_frame(*fields) == py.build_frame(*fields)


def test_build_largest_payload_agrees() -> None:
    fields = (b"\x01" * 6, b"\x02" * 6, DEFAULT_ETHERTYPE, 0x20, 1, 2, 3, bytes(MAX_PAYLOAD))
    assert native.build_header(*fields) == py.build_header(*fields)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, b"\x00" * 5),
        (1, b"\x00" * 7),
        (2, 0x10000),
        (3, 256),
        (4, -1),
        (5, 1 << 32),
        (6, 1 << 64),
        (7, bytes(MAX_PAYLOAD + 1)),
    ],
)
def test_build_refuses_the_same_values(index: int, value: object) -> None:
    fields: list[object] = [b"\x01" * 6, b"\x02" * 6, DEFAULT_ETHERTYPE, 0x20, 0, 1, 1, b""]
    fields[index] = value
    with pytest.raises(LocalProtocolError):
        native.build_header(*fields)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        py.build_header(*fields)  # type: ignore[arg-type]


@given(frame=frames())
def test_frames_built_in_c_decode_in_python(frame: Frame) -> None:
    raw = native.build_frame(
        frame.dst,
        frame.src,
        DEFAULT_ETHERTYPE,
        int(frame.type),
        frame.flags,
        frame.session,
        frame.seq,
        encode_payload(frame.body),
    )
    assert decode_frame(raw) == frame


# ---- CRC32C ----

# Lengths around the word boundaries and the blocks of the C paths (csrc/crc32c.c: three lanes
# of 16384, 2048 and 192 bytes; folding steps of 272 bytes from 6 steps on, folding alone from
# 256 bytes; then words and single bytes).
_BOUNDARY_LENGTHS = [
    *(0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 257, 383, 384, 385),
    *(575, 576, 577, 1023, 1024, 1025, 1631, 1632, 1633, 1904, 4096, 6143, 6144, 6145),
    *(49151, 49152, 49153, 3 * 16384 + 3 * 2048 + 3 * 192 + 5, MAX_PAYLOAD),
]


@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.sampled_from(_BOUNDARY_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    ),
    value=u32,
)
def test_crc32c_agrees(data: bytes, value: int) -> None:
    expected = crc32c_ref(data, value)
    assert native.crc32c(data, value) == expected
    assert native.crc32c_sw(data, value) == expected
    if native.crc32c_hw_available():
        assert native.crc32c_hw(data, value) == expected
    if native.crc32c_fold_available():
        assert native.crc32c_fold(data, value) == expected


def test_crc32c_check_value_in_every_path() -> None:
    assert native.crc32c(b"123456789") == 0xE3069283
    assert native.crc32c_sw(b"123456789") == 0xE3069283
    if native.crc32c_hw_available():
        assert native.crc32c_hw(b"123456789") == 0xE3069283
    if native.crc32c_fold_available():
        assert native.crc32c_fold(b"123456789") == 0xE3069283


@given(data=st.binary(min_size=1, max_size=3000), offset=st.integers(0, 15))
def test_crc32c_agrees_on_unaligned_views(data: bytes, offset: int) -> None:
    view = memoryview(bytes(offset) + data)[offset:]
    assert native.crc32c(view) == crc32c_ref(data)
