#!/usr/bin/env python3
"""Write the libFuzzer seed inputs in tests/fuzz/seeds/ (committed; rerun after a format change).

Self-contained on purpose (no l2fast import, no build needed): the seeds must not depend on the
code they are meant to test.  The input format is described at the top of fuzz_parse_batch.c.
"""

from __future__ import annotations

import struct
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seeds"
ETHERTYPE = 0x88B5


def crc32c(data: bytes, crc: int = 0) -> int:
    """Bitwise CRC-32C (PROTOCOL.md §CRC), zlib convention."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(
    ftype: int,
    payload: bytes,
    *,
    ethertype: int = ETHERTYPE,
    magic: int = 0x4C32,
    version: int = 1,
    seq: int = 1,
    plen: int | None = None,
    crc_xor: int = 0,
) -> bytes:
    """One Ethernet + l2fast frame, optionally with a broken field."""
    hdr = struct.pack(
        ">HBBHHIQ", magic, version, ftype, 0x2, len(payload) if plen is None else plen, 7, seq
    )
    crc = crc32c(payload, crc32c(hdr)) ^ crc_xor
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + struct.pack(">H", ethertype)
    return eth + hdr + struct.pack(">I", crc) + payload


def seed(slot_size: int, frames: list[tuple[int, bytes]], ethertype: int | None = None) -> bytes:
    """Fuzzer input: slot selector, EtherType mode, then (claimed length, bytes) records."""
    head = struct.pack("<H", slot_size - 1)
    head += b"\x01\x00\x00" if ethertype is None else b"\x00" + struct.pack(">H", ethertype)
    return head + b"".join(struct.pack("<H", claimed) + data for claimed, data in frames)


def whole(f: bytes) -> tuple[int, bytes]:
    return len(f), f


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    data = frame(0x20, bytes(range(200)))
    hello = frame(0x01, b"\x00" * 26 + b"\x04node")
    seeds = {
        "one_data.bin": seed(2048, [whole(data)]),
        "mixed.bin": seed(
            2048,
            [
                whole(hello),
                whole(data[:30]),  # short
                whole(frame(0x20, b"x" * 40, crc_xor=1)),  # bad crc
                whole(frame(0x20, b"x" * 40, magic=0x4C33)),  # bad magic
                whole(frame(0x20, b"x" * 40, version=2)),  # bad version
                whole(frame(0x20, b"x" * 40, plen=41)),  # bad length
                whole(frame(0x03, b"")),  # unknown type
                whole(frame(0x12, b"\x00\x00\x05\xdc") + b"\x00" * 20),  # padding
                whole(frame(0x20, b"y", ethertype=0x0800)),  # other ethertype
            ],
        ),
        "truncated_slot.bin": seed(64, [(len(data), data[:64]), whole(frame(0x18, b""))]),
        "tiny_slot.bin": seed(20, [whole(hello[:20]), (5, hello[:5])]),
        "custom_ethertype.bin": seed(512, [whole(frame(0x38, b"ping", ethertype=0x1234))], 0x1234),
        "empty_types.bin": seed(
            128, [whole(frame(t, b"")) for t in (0x02, 0x10, 0x15, 0x19, 0x21, 0x30, 0x44, 0x7F)]
        ),
    }
    for name, blob in seeds.items():
        (SEEDS / name).write_bytes(blob)
    print(f"wrote {len(seeds)} seeds to {SEEDS}")


if __name__ == "__main__":
    main()
