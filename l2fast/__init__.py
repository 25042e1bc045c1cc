"""l2fast: chat and high-throughput file transfer directly over Ethernet, no IP.

Public API: `crc32c(data, value=0)` (zlib.crc32 calling convention) and `__version__`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "crc32c"]


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from `value` like `zlib.crc32`.

    Uses the C core (SSE4.2, three lanes, when the CPU has it). `crc32c(b"123456789") ==
    0xE3069283`.
    """
    from l2fast import native

    return native.crc32c(data, value)
