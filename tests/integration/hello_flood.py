"""Send HELLOs at one MAC from a made-up one whose name changes every frame, from inside a lab
host (test_node_lab.py runs it): each is a "peer updated" for the target's log.

    hello_flood.py DST_MAC COUNT

Prints one JSON line with how many were sent. Bounded: COUNT frames, in batches, with a
deadline.
"""

from __future__ import annotations

import json
import sys
import time

from l2fast import native
from l2fast.wire.frames import Frame, Hello, encode_frame

#: Locally administered, and no lab host's (those are 02:4c:32:...).
FAKE_MAC = bytes.fromhex("02666c6f6f64")
DEADLINE_S = 30.0


def main() -> None:
    dst = bytes.fromhex(sys.argv[1].replace(":", ""))
    count = int(sys.argv[2])
    frames = [
        encode_frame(
            Frame(dst, FAKE_MAC, 0, i, Hello(0xF1, i, 1, 1, 1500, 0, f"flood-{'ab'[i % 2]}"))
        )
        for i in range(count)
    ]
    done = 0
    deadline = time.monotonic() + DEADLINE_S
    with native.RawSocket.open("eth0") as sock:
        while done < count and time.monotonic() < deadline:
            took = sock.send_frames(frames[done : done + 64])
            if took == 0:
                time.sleep(0.001)  # backpressure: the qdisc is full
            done += took
    print(json.dumps({"sent": done}))


if __name__ == "__main__":
    main()
