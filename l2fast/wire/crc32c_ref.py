"""Pure-Python CRC-32C (Castagnoli), the reference for PROTOCOL.md §Header/CRC.

This is the readable definition the C core (csrc/, SSE4.2 and table paths) is tested against and
the fallback the pure-Python codec uses. It handles about ten megabytes per second, which is
plenty for control frames and tests, and far too slow for the data path: DATA frames are checked
in C.
"""

from __future__ import annotations

__all__ = ["CRC32C_POLY", "crc32c"]

#: The Castagnoli polynomial 0x1EDC6F41, bit-reversed because CRC-32C feeds bytes in
#: least-significant-bit first (PROTOCOL.md §Header/CRC).
CRC32C_POLY = 0x82F63B78


def _make_table() -> tuple[int, ...]:
    # Entry i is the CRC register after shifting the byte value i through eight rounds of the
    # bitwise algorithm; the byte loop below then does one lookup per byte instead of eight.
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            if reg & 1:
                reg = (reg >> 1) ^ CRC32C_POLY
            else:
                reg >>= 1
        table.append(reg)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of `data`, continuing from `value`, with the `zlib.crc32` calling convention.

    Start with `value=0`; to continue over more bytes pass the previous result back, so that
    `crc32c(b, crc32c(a)) == crc32c(a + b)`. Initial register and final XOR are both 0xFFFFFFFF
    (PROTOCOL.md §Header/CRC); the check value is `crc32c(b"123456789") == 0xE3069283`.
    """
    # Undo the final XOR of the previous call (or apply the initial value 0xFFFFFFFF for 0).
    reg = (value & 0xFFFFFFFF) ^ 0xFFFFFFFF
    table = _TABLE
    for byte in memoryview(data).cast("B"):
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF
