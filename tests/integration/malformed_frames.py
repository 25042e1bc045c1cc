"""Send malformed l2fast frames at one MAC, from inside a lab host (test_node_lab.py runs it).

    malformed_frames.py DST_MAC COUNT SEED

Four kinds in turn, COUNT/4 each: random bytes after a valid Ethernet header (l2fast's
EtherType, so the target's socket takes them), frames with a broken CRC, frames cut short of
their payload_len (bad_length), and frames of an undefined type. Prints one JSON line with how
many of each were sent. Bounded: COUNT frames, in batches, with a deadline.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import time

from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType

KINDS = ("random", "bad_crc", "bad_length", "unknown_type")
DEADLINE_S = 30.0


def build(kind: str, dst: bytes, src: bytes, seq: int, rng: random.Random) -> bytes:
    """One malformed frame of `kind`."""
    eth = dst + src + struct.pack("!H", DEFAULT_ETHERTYPE)
    if kind == "random":
        return eth + rng.randbytes(rng.randrange(0, 200))
    payload = rng.randbytes(rng.randrange(2, 120))
    frame_type = 0x77 if kind == "unknown_type" else int(FrameType.CHAT)
    frame = bytearray(
        native.build_frame(dst, src, DEFAULT_ETHERTYPE, frame_type, 0, 1, seq, payload)
    )
    if kind == "bad_crc":
        frame[-1] ^= 0x5A  # a payload byte: the CRC no longer matches
    elif kind == "bad_length":
        del frame[38 + len(payload) // 2 :]  # payload_len now points past the end
    return bytes(frame)


def main() -> None:
    dst = bytes.fromhex(sys.argv[1].replace(":", ""))
    count, seed = int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    sent = dict.fromkeys(KINDS, 0)
    with native.RawSocket.open("eth0") as sock:
        frames = []
        for i in range(count):
            kind = KINDS[i % len(KINDS)]
            frames.append(build(kind, dst, sock.mac, i, rng))
            sent[kind] += 1
        done = 0
        deadline = time.monotonic() + DEADLINE_S
        while done < count and time.monotonic() < deadline:
            took = sock.send_frames(frames[done : done + 64])
            if took == 0:
                time.sleep(0.001)  # backpressure: the qdisc is full
            done += took
    print(json.dumps({"sent": done, "kinds": sent}), flush=True)


if __name__ == "__main__":
    main()
