"""CRC-32C of the C core (csrc/crc32c.c) through l2fast.native: every path (table, SSE4.2 three
lanes, VPCLMULQDQ folding on 256- and 512-bit registers, 128-bit PCLMULQDQ folding), against a
bitwise reference written here from the definition (PROTOCOL.md §CRC)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import l2fast
from l2fast import native
from l2fast.errors import NativeError

HW = native.crc32c_hw_available()
NO_HW_REASON = "this CPU has no SSE4.2 crc32 instruction; only the table path can run"
FOLD = native.crc32c_fold_available()
NO_FOLD_REASON = "this CPU has no VPCLMULQDQ/AVX2: the folding path cannot run here"
FOLD128 = native.crc32c_fold128_available()
NO_FOLD128_REASON = "this CPU has no PCLMULQDQ: the 128-bit folding path cannot run here"
FOLD512 = native.crc32c_fold512_available()
NO_FOLD512_REASON = "this CPU has no AVX-512 with VPCLMULQDQ: the 512-bit fold cannot run here"

CrcFn = Callable[..., int]

# Every implementation under test.  A hardware one is skipped, with its reason, only when the
# CPU lacks its instructions; the table path runs everywhere.
IMPLS = [
    pytest.param(native.crc32c, id="best"),
    pytest.param(native.crc32c_sw, id="table"),
    pytest.param(
        native.crc32c_hw, id="sse42", marks=pytest.mark.skipif(not HW, reason=NO_HW_REASON)
    ),
    pytest.param(
        native.crc32c_fold, id="fold", marks=pytest.mark.skipif(not FOLD, reason=NO_FOLD_REASON)
    ),
    pytest.param(
        native.crc32c_fold128,
        id="fold128",
        marks=pytest.mark.skipif(not FOLD128, reason=NO_FOLD128_REASON),
    ),
    pytest.param(
        native.crc32c_fold512,
        id="fold512",
        marks=pytest.mark.skipif(not FOLD512, reason=NO_FOLD512_REASON),
    ),
    pytest.param(l2fast.crc32c, id="public"),
]


def ref_bitwise(data: bytes, value: int = 0) -> int:
    """CRC-32C one bit at a time: reflected polynomial 0x82F63B78, init/final XOR 0xFFFFFFFF."""
    crc = value ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# Derived from the bitwise reference (starting from a zero register, one byte value each), so the
# fast reference below inherits its correctness; used where bitwise would take seconds.
_TABLE = [(ref_bitwise(bytes([b]), 0xFFFFFFFF) ^ 0xFFFFFFFF) for b in range(256)]


def ref_bytewise(data: bytes, value: int = 0) -> int:
    """Same function, one table lookup per byte."""
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def test_references_agree_and_give_check_value() -> None:
    assert ref_bitwise(b"123456789") == 0xE3069283
    rng = random.Random(0)
    for n in (0, 1, 2, 7, 64, 1000):
        data = rng.randbytes(n)
        assert ref_bytewise(data) == ref_bitwise(data)


# RFC 3720 appendix B.4 (iSCSI) test vectors, as CRC values.
RFC3720 = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("fn", IMPLS)
def test_check_values(fn: CrcFn) -> None:
    assert fn(b"123456789") == 0xE3069283
    assert fn(b"") == 0
    assert fn(b"", 0x12345678) == 0x12345678
    for data, expected in RFC3720:
        assert ref_bitwise(data) == expected
        assert fn(data) == expected, data.hex()


@pytest.mark.parametrize("fn", IMPLS)
def test_random_lengths_and_unaligned_offsets(fn: CrcFn) -> None:
    rng = random.Random(1234)
    block = rng.randbytes(5100)
    lengths = [*range(0, 80), *(rng.randrange(0, 5001) for _ in range(40)), 5000]
    for n in lengths:
        off = rng.randrange(0, 64)
        view = memoryview(block)[off : off + n]
        assert fn(view) == ref_bitwise(bytes(view)), (n, off)


# Lane lengths of the hardware path's tiers (csrc/crc32c.c L2F_CRC_TIERS); a tier takes blocks of
# three lanes.
LANE_TIERS = (16384, 2048, 192)


@pytest.mark.parametrize("fn", IMPLS)
def test_three_lane_boundaries(fn: CrcFn) -> None:
    # Probe each tier's block edge, several blocks of every tier plus a tail, and odd offsets.
    rng = random.Random(5)
    blocks = [3 * lane for lane in LANE_TIERS]
    data = rng.randbytes(2 * sum(blocks) + 200)
    lengths = {len(data)}
    for block in blocks:
        lengths |= {block - 1, block, block + 1, block + 8, 2 * block + 7}
    lengths.add(blocks[0] + blocks[1] + blocks[2] + 5)
    for n in sorted(lengths):
        for off in (0, 3):
            chunk = data[off : off + n]
            assert fn(chunk) == ref_bytewise(chunk), (n, off)


# The folding path (csrc/crc32c.c): a step is 128 folded bytes plus three crc32 lanes of 48; a
# call of at least 6 steps runs steps (at most 1024 at a time), the rest folds alone from 256
# bytes on, and words and bytes finish.  The 128-bit fold folds alone from 256 bytes on, 128 at
# a time, so the 128-byte edges probe its tail too.
FOLD_STEP, FOLD_MIN_STEPS, FOLD_MAX_STEPS = 128 + 3 * 48, 6, 1024
# The 512-bit fold's step folds 256 bytes beside the same lanes; its tail goes to the 256-bit path.
FOLD512_STEP = 256 + 3 * 48
# From this length on, both folds' steps prefetch ahead (taken to come from memory, not cache).
FAR_MIN_LEN = 256 << 10


@pytest.mark.parametrize("fn", IMPLS)
def test_fold_boundaries(fn: CrcFn) -> None:
    rng = random.Random(11)
    biggest = FOLD_MAX_STEPS * FOLD_STEP
    data = rng.randbytes(2 * biggest + 1000)
    lengths = {len(data) - 3, 2 * biggest, 2 * biggest + 1, FAR_MIN_LEN - 1, FAR_MIN_LEN}
    for edge in (128, 256, 384, FOLD_MIN_STEPS * FOLD_STEP, biggest):
        lengths |= {edge - 1, edge, edge + 1, edge + 8, edge + 255, edge + 256, edge + 257}
    for steps in (FOLD_MIN_STEPS, FOLD_MIN_STEPS + 1, 33, 241, FOLD_MAX_STEPS - 1):
        lengths |= {steps * FOLD_STEP + tail for tail in (0, 7, 127, 128, 200, 271)}
    for steps in (FOLD_MIN_STEPS, FOLD_MIN_STEPS + 1, 22, 164, FOLD_MAX_STEPS - 1, FOLD_MAX_STEPS):
        lengths |= {steps * FOLD512_STEP + tail for tail in (0, 9, 255, 256, 399, 1631, 1632)}
    for n in sorted(lengths):
        for off in (0, 5):
            chunk = data[off : off + n]
            assert fn(chunk, 0x5A5A5A5A) == ref_bytewise(chunk, 0x5A5A5A5A), (n, off)


@pytest.mark.parametrize("fn", IMPLS)
def test_chaining_is_zlib_convention(fn: CrcFn) -> None:
    rng = random.Random(7)
    data = rng.randbytes(40000)
    whole = ref_bytewise(data)
    for _ in range(30):
        cut = rng.randrange(0, len(data) + 1)
        assert fn(data[cut:], fn(data[:cut])) == whole, cut
    # Three pieces, including empty ones.
    assert fn(data[100:], fn(b"", fn(data[:100]))) == whole


@pytest.mark.parametrize("fn", IMPLS)
def test_value_is_taken_modulo_2_32_like_zlib(fn: CrcFn) -> None:
    assert fn(b"abc", 0x1_0000_0005) == fn(b"abc", 5)
    assert fn(b"abc", -1) == fn(b"abc", 0xFFFFFFFF)
    # The same convention as zlib.crc32 on the value argument.
    assert zlib.crc32(b"", 0x1_0000_0005) == 5


@pytest.mark.parametrize("fn", IMPLS)
def test_accepts_bytes_like(fn: CrcFn) -> None:
    data = bytes(range(256)) * 5
    expected = ref_bytewise(data)
    assert fn(bytearray(data)) == expected
    assert fn(memoryview(data)) == expected
    assert fn(memoryview(data)[1:]) == ref_bytewise(data[1:])
    # A memoryview of wider items is hashed as its raw bytes.
    assert fn(memoryview(data).cast("I")) == expected


@pytest.mark.parametrize("fn", IMPLS)
def test_rejects_non_buffers(fn: CrcFn) -> None:
    with pytest.raises(TypeError):
        fn("text")
    with pytest.raises(TypeError):
        fn(memoryview(bytes(100))[::2])  # not contiguous


def test_large_buffers_hw_equals_sw() -> None:
    rng = random.Random(99)
    big = rng.randbytes((1 << 20) + 12345)
    expected = ref_bytewise(big)
    assert native.crc32c_sw(big) == expected
    assert native.crc32c(big) == expected
    many = rng.randbytes(8 << 20)
    if HW:
        assert native.crc32c_hw(big) == expected
        assert native.crc32c_hw(big[5:]) == native.crc32c_sw(big[5:])
        assert native.crc32c_hw(many) == native.crc32c_sw(many)
    if FOLD:
        assert native.crc32c_fold(big) == expected
        assert native.crc32c_fold(big[5:]) == native.crc32c_sw(big[5:])
        assert native.crc32c_fold(many) == native.crc32c_sw(many)
    if FOLD128:
        assert native.crc32c_fold128(big) == expected
        assert native.crc32c_fold128(big[5:]) == native.crc32c_sw(big[5:])
        assert native.crc32c_fold128(many) == native.crc32c_sw(many)
    if FOLD512:
        assert native.crc32c_fold512(big) == expected
        assert native.crc32c_fold512(big[5:]) == native.crc32c_sw(big[5:])
        assert native.crc32c_fold512(many) == native.crc32c_sw(many)


def _is_amd() -> bool:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        return any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in f)


def test_impl_name_is_the_fastest_path_this_cpu_has() -> None:
    # The 128-bit fold is chosen only on AMD CPUs without VPCLMULQDQ (where it was measured).
    fold128 = FOLD128 and _is_amd()
    expected = (
        "avx512-fold"
        if FOLD512
        else "vpclmulqdq-fold"
        if FOLD
        else "pclmul-fold"
        if fold128
        else "sse4.2-3way"
        if HW
        else "table"
    )
    assert native.crc32c_impl() == expected
    assert not FOLD or HW  # folding needs the crc32 instruction too
    assert not FOLD128 or HW
    assert not FOLD512 or FOLD  # the 512-bit fold's tail is the 256-bit one's


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("sse4.2", "sse4.2-3way" if HW else "table"),
        ("table", "table"),
        ("fold128", "pclmul-fold" if FOLD128 else None),
        ("fold256", "vpclmulqdq-fold" if FOLD else None),
        ("bogus", None),
    ],
)
def test_environment_caps_the_path(cap: str, expected: str | None) -> None:
    # The choice is made once per process, so ask a fresh interpreter.
    code = "from l2fast import native as n; print(n.crc32c_impl(), hex(n.crc32c(b'123456789')))"
    env = {**os.environ, "L2FAST_CRC32C": cap}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [expected or native.crc32c_impl(), "0xe3069283"]


@pytest.mark.skipif(HW, reason="this CPU has SSE4.2: the no-hardware error cannot occur")
def test_hw_without_sse42_raises() -> None:
    with pytest.raises(NativeError):
        native.crc32c_hw(b"x")


@pytest.mark.skipif(FOLD, reason="this CPU has VPCLMULQDQ: the no-folding error cannot occur")
def test_fold_without_vpclmulqdq_raises() -> None:
    with pytest.raises(NativeError):
        native.crc32c_fold(b"x")


@pytest.mark.skipif(FOLD128, reason="this CPU has PCLMULQDQ: the no-folding error cannot occur")
def test_fold128_without_pclmulqdq_raises() -> None:
    with pytest.raises(NativeError):
        native.crc32c_fold128(b"x")


@pytest.mark.skipif(FOLD512, reason="this CPU has AVX-512: the no-folding error cannot occur")
def test_fold512_without_avx512_raises() -> None:
    with pytest.raises(NativeError):
        native.crc32c_fold512(b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_property_paths_agree(data: bytes, value: int) -> None:
    expected = ref_bytewise(data, value)
    assert native.crc32c_sw(data, value) == expected
    assert native.crc32c(data, value) == expected
    if HW:
        assert native.crc32c_hw(data, value) == expected
    if FOLD:
        assert native.crc32c_fold(data, value) == expected
    if FOLD128:
        assert native.crc32c_fold128(data, value) == expected
    if FOLD512:
        assert native.crc32c_fold512(data, value) == expected
