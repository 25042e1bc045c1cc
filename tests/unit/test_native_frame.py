"""Frame build/parse of the C core (csrc/frame.c) through l2fast.native.

Expected bytes are assembled here with `struct` from PROTOCOL.md §Header, and the CRC with a
local bitwise reference, so these tests do not lean on the pure-Python codec.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast import native
from l2fast.errors import LocalProtocolError
from l2fast.native import _ffi, _lib
from l2fast.wire import constants as C
from l2fast.wire.constants import FrameInfo, FrameType, Verdict

DST = bytes.fromhex("02aabbccddee")
SRC = bytes.fromhex("0211223344ff")
ET = C.DEFAULT_ETHERTYPE


def ref_crc(data: bytes, value: int = 0) -> int:
    crc = value ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def ref_frame(
    ftype: int,
    payload: bytes,
    *,
    flags: int = 0,
    session: int = 0,
    seq: int = 0,
    ethertype: int = ET,
    magic: int = C.MAGIC,
    version: int = C.VERSION,
    plen: int | None = None,
) -> bytes:
    """A frame built from the spec by hand; fields may be broken on purpose (CRC kept valid)."""
    hdr = struct.pack(
        ">HBBHHIQ",
        magic,
        version,
        ftype,
        flags,
        len(payload) if plen is None else plen,
        session,
        seq,
    )
    # With a bitwise CRC over 65 KB payloads being slow, hash big payloads via the checked C path.
    crc = ref_crc(hdr)
    crc = ref_crc(payload, crc) if len(payload) <= 2048 else native.crc32c_sw(payload, crc)
    return DST + SRC + struct.pack(">H", ethertype) + hdr + struct.pack(">I", crc) + payload


def test_constants_match_the_header() -> None:
    assert _lib.L2F_ETH_HLEN == C.ETH_HLEN
    assert _lib.L2F_HDR_LEN == C.HDR_LEN
    assert _lib.L2F_FRAME_OVERHEAD == C.FRAME_OVERHEAD == 38
    assert _lib.L2F_MAGIC == C.MAGIC
    assert _lib.L2F_VERSION == C.VERSION
    assert _lib.L2F_MAX_PAYLOAD == C.MAX_PAYLOAD
    assert _lib.L2F_DEFAULT_ETHERTYPE == C.DEFAULT_ETHERTYPE
    # The C echo responder refuses PINGs shorter than the Python node does.
    assert _lib.L2F_ECHO_PING_HEADER == C.PING_HEADER
    assert len(Verdict) == _lib.L2F_V_COUNT
    for v in Verdict:
        assert getattr(_lib, f"L2F_V_{v.name}") == v.value
    known = {t for t in range(256) if _lib.l2f_type_known(t)}
    assert known == set(C.KNOWN_TYPES)


@pytest.mark.parametrize("ftype", list(FrameType), ids=lambda t: t.name)
def test_round_trip_every_type(ftype: FrameType) -> None:
    rng = random.Random(int(ftype))
    for size in (0, 1, rng.randrange(2, 1500), C.MAX_PAYLOAD):
        payload = rng.randbytes(size)
        flags, session, seq = rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(64)
        args = (DST, SRC, ET, int(ftype), flags, session, seq, payload)
        header = native.build_header(*args)
        frame = native.build_frame(*args)
        assert len(header) == 38
        assert frame == header + payload
        expected = ref_frame(int(ftype), payload, flags=flags, session=session, seq=seq)
        assert frame == expected
        info = native.parse_frame(frame)
        assert info == FrameInfo(
            verdict=Verdict.OK,
            type=int(ftype),
            version=1,
            flags=flags,
            session=session,
            seq=seq,
            payload_off=38,
            payload_len=size,
            dst=DST,
            src=SRC,
        )
        assert frame[info.payload_off : info.payload_off + info.payload_len] == payload


def test_golden_bytes() -> None:
    frame = native.build_frame(
        b"\x01" * 6, b"\x02" * 6, 0x88B5, 0x20, 2, 7, 99, memoryview(b"hello")
    )
    covered = bytes.fromhex("4c32 01 20 0002 0005 00000007 0000000000000063")
    eth = bytes.fromhex("010101010101 020202020202 88b5")
    crc = ref_crc(covered + b"hello")
    assert frame == eth + covered + struct.pack(">I", crc) + b"hello"


def _hdr_fields(info: FrameInfo) -> tuple[int, ...]:
    return (info.type, info.version, info.flags, info.session, info.seq, info.payload_off)


def test_short_frames_fill_only_present_macs() -> None:
    frame = ref_frame(0x20, b"abc")
    for n in range(38):
        info = native.parse_frame(frame[:n])
        assert info.verdict is Verdict.SHORT, n
        assert info.dst == (DST if n >= 6 else b"")
        assert info.src == (SRC if n >= 12 else b"")
        assert _hdr_fields(info) == (0, 0, 0, 0, 0, 0)
        assert info.payload_len == 0


def test_ethertype_mismatch() -> None:
    frame = ref_frame(0x20, b"abc", ethertype=0x0800, session=5, seq=6)
    info = native.parse_frame(frame)
    assert info.verdict is Verdict.ETHERTYPE
    assert (info.dst, info.src) == (DST, SRC)
    assert _hdr_fields(info) == (0, 0, 0, 0, 0, 0) and info.payload_len == 0
    # The same frame is fine for a node configured with that EtherType.
    assert native.parse_frame(frame, ethertype=0x0800).verdict is Verdict.OK
    assert native.parse_frame(ref_frame(0x20, b"abc"), ethertype=0x0800).verdict is (
        Verdict.ETHERTYPE
    )


def test_bad_magic() -> None:
    info = native.parse_frame(ref_frame(0x20, b"abc", magic=0x4C33, session=5))
    assert info.verdict is Verdict.BAD_MAGIC
    assert (info.dst, info.src) == (DST, SRC)
    assert _hdr_fields(info) == (0, 0, 0, 0, 0, 0) and info.payload_len == 0


def test_bad_version_reports_the_header() -> None:
    info = native.parse_frame(ref_frame(0x20, b"abc", version=2, flags=3, session=5, seq=6))
    assert info.verdict is Verdict.BAD_VERSION
    assert _hdr_fields(info) == (0x20, 2, 3, 5, 6, 38) and info.payload_len == 3


def test_bad_length() -> None:
    frame = ref_frame(0x20, b"abc", plen=4)  # claims one byte more than the frame holds
    info = native.parse_frame(frame)
    assert info.verdict is Verdict.BAD_LENGTH
    assert info.payload_len == 4 and info.payload_off == 38
    huge = ref_frame(0x20, b"abc", plen=0xFFFF)
    assert native.parse_frame(huge).verdict is Verdict.BAD_LENGTH
    # Version is checked before length.
    assert native.parse_frame(ref_frame(0x20, b"", version=9, plen=100)).verdict is (
        Verdict.BAD_VERSION
    )


# Flipping bit 4 of one header or payload byte; the verdict is the first check that notices.
FLIP_VERDICT = {
    12: Verdict.ETHERTYPE,
    14: Verdict.BAD_MAGIC,
    15: Verdict.BAD_MAGIC,
    16: Verdict.BAD_VERSION,
    17: Verdict.BAD_CRC,  # type
    19: Verdict.BAD_CRC,  # flags
    20: Verdict.BAD_LENGTH,  # payload_len high byte: 30 + 4096 does not fit
    21: Verdict.BAD_CRC,  # payload_len 30 -> 14 fits, but the CRC covers it
    25: Verdict.BAD_CRC,  # session
    33: Verdict.BAD_CRC,  # seq
    34: Verdict.BAD_CRC,  # crc field itself
    37: Verdict.BAD_CRC,
    38: Verdict.BAD_CRC,  # payload
    67: Verdict.BAD_CRC,  # last payload byte
}


@pytest.mark.parametrize(("pos", "verdict"), sorted(FLIP_VERDICT.items()))
def test_bit_flip_verdicts(pos: int, verdict: Verdict) -> None:
    frame = bytearray(ref_frame(0x20, bytes(range(30)), session=1, seq=2))
    assert len(frame) == 68
    frame[pos] ^= 0x10
    assert native.parse_frame(frame).verdict is verdict


def test_uncovered_bytes_do_not_matter() -> None:
    frame = bytearray(ref_frame(0x20, b"payload") + b"\x55" * 30)
    for pos in (0, 5, 6, 11, len(frame) - 1):  # MACs and padding are not covered by the CRC
        mutated = bytearray(frame)
        mutated[pos] ^= 0xFF
        assert native.parse_frame(mutated).verdict is Verdict.OK, pos


def test_unknown_type_after_crc() -> None:
    for t in (0x00, 0x03, 0x22, 0x80, 0xFF):
        info = native.parse_frame(ref_frame(t, b"x", seq=9))
        assert info.verdict is Verdict.UNKNOWN_TYPE
        assert info.type == t and info.seq == 9 and info.payload_len == 1
    # A bad CRC wins over an unknown type (step 6 before step 7).
    broken = bytearray(ref_frame(0x03, b"x"))
    broken[-1] ^= 1
    assert native.parse_frame(broken).verdict is Verdict.BAD_CRC


def test_padding_accepted() -> None:
    frame = ref_frame(FrameType.KEEPALIVE, b"")
    assert len(frame) == 38
    padded = frame + bytes(60 - len(frame))
    info = native.parse_frame(padded)
    assert info.verdict is Verdict.OK and info.payload_len == 0
    info = native.parse_frame(ref_frame(0x20, b"abc") + b"\xff" * 1000)
    assert info.verdict is Verdict.OK and info.payload_len == 3


def test_parse_accepts_bytes_like() -> None:
    frame = ref_frame(0x30, b"chat")
    for form in (frame, bytearray(frame), memoryview(frame), memoryview(b"zz" + frame)[2:]):
        assert native.parse_frame(form).verdict is Verdict.OK


def _mixed_frames() -> list[bytes]:
    good = [ref_frame(int(t), bytes([int(t)]) * (int(t) % 50), seq=int(t)) for t in FrameType]
    bad = [
        b"",
        good[0][:20],
        ref_frame(0x20, b"a", ethertype=0x1234),
        ref_frame(0x20, b"a", magic=0),
        ref_frame(0x20, b"a", version=0),
        ref_frame(0x20, b"a", plen=2),
        good[1][:-1] + bytes([good[1][-1] ^ 1]),
        ref_frame(0x05, b"a"),
        ref_frame(0x20, b"pad") + bytes(40),
    ]
    frames = good + bad
    random.Random(3).shuffle(frames)
    return frames


def test_batch_agrees_with_single_and_counts() -> None:
    frames = _mixed_frames()
    infos = native.parse_batch(frames)
    assert infos == [native.parse_frame(f) for f in frames]
    counts = Counter(i.verdict for i in infos)
    assert counts[Verdict.OK] == len(FrameType) + 1
    for v in Verdict:
        if v is not Verdict.OK:
            assert counts[v] >= 1, v

    arena = native.RxArena(len(frames) + 3, 2048)
    arena.load(frames)
    assert arena.count == len(frames)
    assert arena.verify() == counts[Verdict.OK]
    assert arena.verdict_counts() == {v: counts[v] for v in Verdict}
    assert [arena.info(i) for i in range(len(frames))] == infos
    # Counters accumulate over calls until reset.
    arena.verify(ethertype=0x1234)
    after = arena.verdict_counts()
    assert sum(after.values()) == 2 * len(frames)
    assert after[Verdict.OK] == counts[Verdict.OK] + 1
    arena.reset_counts()
    assert set(arena.verdict_counts().values()) == {0}
    # Payload views point at the verified payload.
    arena.verify()
    for i, info in enumerate(infos):
        if info.verdict is Verdict.OK:
            assert bytes(arena.payload(i)) == frames[i][38 : 38 + info.payload_len]
            assert bytes(arena.frame(i)) == frames[i]
        else:
            with pytest.raises(ValueError):
                arena.payload(i)
    assert list(arena.lens[: len(frames)]) == [len(f) for f in frames]


def test_arena_parse_subset_and_empty() -> None:
    frames = _mixed_frames()
    arena = native.RxArena(len(frames), 2048)
    arena.load(frames)
    assert arena.parse(count=3) == [native.parse_frame(f) for f in frames[:3]]
    with pytest.raises(IndexError):
        arena.info(3)
    assert arena.parse(count=0) == []
    assert native.parse_batch([]) == []


def test_truncated_frame_in_a_slot() -> None:
    # recv reports a frame's full length even when the slot cut it (MSG_TRUNC): the parser looks
    # only at the stored bytes and rejects a payload that did not fit.
    frame = ref_frame(0x20, bytes(200))
    slot = 100
    arena = _ffi.new("uint8_t[]", slot)
    _ffi.memmove(arena, frame[:slot], slot)
    lens = _ffi.new("uint32_t[]", [len(frame)])
    out = _ffi.new("struct l2f_frame_info[]", 1)
    counters = _ffi.new("uint64_t[]", len(Verdict))
    assert _lib.l2f_parse_batch(arena, slot, slot, lens, 1, ET, out, counters) == 0
    assert out[0].verdict == Verdict.BAD_LENGTH and counters[Verdict.BAD_LENGTH] == 1
    # A frame whose payload fits the slot (only padding was cut) is whole and accepted.
    small = ref_frame(0x20, b"ok") + bytes(500)
    _ffi.memmove(arena, small[:slot], slot)
    lens[0] = len(small)
    assert _lib.l2f_parse_batch(arena, slot, slot, lens, 1, ET, out, _ffi.NULL) == 1


def test_c_argument_checks() -> None:
    out = _ffi.new("uint8_t[]", 38)
    mac = _ffi.new("uint8_t[]", 6)
    assert _lib.l2f_build_header(out, 37, mac, mac, ET, 1, 0, 0, 0, _ffi.NULL, 0) == (
        -_lib.L2F_E_ARG
    )
    assert _lib.l2f_build_header(out, 38, mac, mac, ET, 1, 0, 0, 0, _ffi.NULL, 1) == (
        -_lib.L2F_E_ARG
    )
    big = _ffi.new("uint8_t[]", 65512)
    assert _lib.l2f_build_header(out, 38, mac, mac, ET, 1, 0, 0, 0, big, 65512) == (
        -_lib.L2F_E_TOOBIG
    )
    assert _lib.l2f_build_header(out, 38, mac, mac, ET, 1, 0, 0, 0, big, 65511) == 38
    info = _ffi.new("struct l2f_frame_info *")
    assert _lib.l2f_parse_frame(_ffi.NULL, 0, ET, info) == Verdict.SHORT
    assert _lib.l2f_parse_frame(_ffi.NULL, 0, ET, _ffi.NULL) == -_lib.L2F_E_ARG
    # An arena shorter than n * slot_size is refused rather than read past.
    arena = _ffi.new("uint8_t[]", 100)
    lens = _ffi.new("uint32_t[]", [10, 10])
    outs = _ffi.new("struct l2f_frame_info[]", 2)
    assert _lib.l2f_parse_batch(arena, 100, 51, lens, 2, ET, outs, _ffi.NULL) == -_lib.L2F_E_ARG
    assert _lib.l2f_parse_batch(arena, 100, 0, lens, 2, ET, outs, _ffi.NULL) == -_lib.L2F_E_ARG
    assert _lib.l2f_parse_batch(arena, 100, 50, lens, 0, ET, outs, _ffi.NULL) == 0


def test_c_build_batch_is_all_or_nothing() -> None:
    payloads = [_ffi.new("uint8_t[]", b"abc"), _ffi.new("uint8_t[]", 65512)]
    ptrs = _ffi.new("uint8_t *[]", payloads)
    lens = _ffi.new("uint32_t[]", [3, 65512])
    seqs = _ffi.new("uint64_t[]", [1, 2])
    arena = _ffi.new("uint8_t[]", 76)
    mac = _ffi.new("uint8_t[]", 6)
    rc = _lib.l2f_build_batch(arena, 76, 2, mac, mac, ET, 0x20, 0, 1, seqs, ptrs, lens)
    assert rc == -_lib.L2F_E_TOOBIG
    assert bytes(_ffi.buffer(arena)) == bytes(76)  # nothing written
    assert _lib.l2f_build_batch(arena, 75, 1, mac, mac, ET, 0x20, 0, 1, seqs, ptrs, lens) == 1
    assert _lib.l2f_build_batch(arena, 37, 1, mac, mac, ET, 0x20, 0, 1, seqs, ptrs, lens) == (
        -_lib.L2F_E_ARG
    )


def test_build_headers_matches_build_header() -> None:
    rng = random.Random(8)
    payloads = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(20)]
    seqs = [rng.getrandbits(64) for _ in payloads]
    headers = native.build_headers(DST, SRC, ET, 0x20, 8, 77, seqs, payloads)
    assert len(headers) == 38 * len(payloads)
    for i, (seq, payload) in enumerate(zip(seqs, payloads, strict=True)):
        assert headers[38 * i : 38 * (i + 1)] == native.build_header(
            DST, SRC, ET, 0x20, 8, 77, seq, payload
        )
    assert native.build_headers(DST, SRC, ET, 0x20, 0, 0, [], []) == b""
    with pytest.raises(ValueError, match="2 sequence numbers but 1 payloads"):
        native.build_headers(DST, SRC, ET, 0x20, 0, 0, [1, 2], [b""])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dst": b"\x00" * 5}, "MAC addresses are 6 bytes"),
        ({"src": b"\x00" * 7}, "MAC addresses are 6 bytes"),
        ({"ethertype": 0x10000}, "ethertype=65536 does not fit"),
        ({"type": 256}, "type=256 does not fit"),
        ({"type": -1}, "type=-1 does not fit"),
        ({"flags": 1 << 16}, "flags=65536 does not fit"),
        ({"session": 1 << 32}, "session=4294967296 does not fit"),
        ({"seq": 1 << 64}, "seq=18446744073709551616 does not fit"),
        ({"payload": bytes(65512)}, "payload of 65512 bytes exceeds the 65511-byte maximum"),
    ],
)
def test_build_rejects_bad_arguments(change: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {
        "dst": DST,
        "src": SRC,
        "ethertype": ET,
        "type": 0x20,
        "flags": 0,
        "session": 0,
        "seq": 0,
        "payload": b"",
    }
    kwargs.update(change)
    with pytest.raises(LocalProtocolError, match=message):
        native.build_header(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match=message):
        native.build_frame(**kwargs)  # type: ignore[arg-type]


def test_binding_length_checks() -> None:
    with pytest.raises(TypeError, match="frame must be a contiguous bytes-like object"):
        native.parse_frame("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ethertype"):
        native.parse_frame(b"", ethertype=0x10000)
    with pytest.raises(ValueError, match="slots >= 1"):
        native.RxArena(0, 100)
    with pytest.raises(ValueError, match="exceeds"):
        native.RxArena(1 << 16, 1 << 16)
    arena = native.RxArena(2, 64)
    with pytest.raises(ValueError, match="does not fit a 64-byte slot"):
        arena.store(0, bytes(65))
    with pytest.raises(IndexError):
        arena.store(2, b"")
    with pytest.raises(IndexError):
        arena.frame(-1)
    with pytest.raises(ValueError, match="do not fit an arena of 2 slots"):
        arena.load([b"", b"", b""])
    with pytest.raises(ValueError, match="count 3 out of range"):
        arena.verify(3)
    with pytest.raises(TypeError):
        native.build_frame(DST, SRC, ET, 0x20, 0, 0, 0, "text")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([ET, 0x0800, 0]))
def test_property_any_bytes_parse_without_raising(data: bytes, ethertype: int) -> None:
    info = native.parse_frame(data, ethertype)
    assert isinstance(info.verdict, Verdict)
    if info.verdict is Verdict.OK:
        assert info.payload_off + info.payload_len <= len(data)
    assert native.parse_batch([data], ethertype) == [info]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(C.KNOWN_TYPES)),
    st.binary(max_size=300),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, 37 + 300),
    st.integers(0, 7),
)
def test_property_single_bit_flip_is_caught(
    ftype: int, payload: bytes, flags: int, session: int, seq: int, pos: int, bit: int
) -> None:
    frame = bytearray(native.build_frame(DST, SRC, ET, ftype, flags, session, seq, payload))
    pos %= len(frame)
    frame[pos] ^= 1 << bit
    verdict = native.parse_frame(frame).verdict
    if pos < 12:
        assert verdict is Verdict.OK  # MACs are outside the CRC
    else:
        assert verdict is not Verdict.OK  # any other flipped bit is detected
