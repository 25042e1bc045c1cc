"""An unreliable blast of maximum-size l2fast frames: the ceiling of a link for our frame size.

No acknowledgements, no retransmission: the sender re-sends one prepared batch of CRC-protected
DATA frames as fast as the kernel takes them, and the receiver counts the frames that arrive and
verify. What arrives per second is the most any reliable protocol over the same frames could
reach. Python runs once per batch on both sides (8-256 frames), never per frame.

`python -m l2fast.rawblast rx|tx ...` runs one side; the demo and the benchmarks start the two
sides inside two lab namespaces with it.
"""

from __future__ import annotations

import argparse
import json
import select
import time
from dataclasses import asdict, dataclass

from l2fast import native
from l2fast.wire.constants import DEFAULT_ETHERTYPE, ETH_HLEN, FRAME_OVERHEAD, FrameType

# DATA frames of a blast carry this session id, so a receiver counts only blast frames.
BLAST_SESSION = 0xB1A57ED0
TX_BATCH = 64
RX_SLOTS = 256
#: The most frame bytes either end cycles through: the sender's prepared frames, and the slots
#: one read of the receiver fills. About one core's L2 cache (1 MiB on the CPUs measured here),
#: so both copies run from and into cache, as the reliable stream's do: its sender sends one
#: payload buffer, its receiver reads into one batch of scratch slots (RxPath `discard`). At
#: MTU 65535 the blast had cycled through 4.4 MiB of prepared frames and read up to 16 MiB at
#: once, and `l2fast bench` then ran at 1.25x this "ceiling" (BENCHMARKS.md "Raw ceiling in
#: cache"). Below ~4 KiB frames the frame counts above bound first, as before.
CACHE_BYTES = 1 << 20


def frames_within(frame_bytes: int, most: int) -> int:
    """How many frames of `frame_bytes` fit CACHE_BYTES: at least 8, at most `most`."""
    return max(8, min(most, CACHE_BYTES // frame_bytes))


@dataclass
class BlastResult:
    """What one side of a blast saw."""

    role: str  #: "tx" or "rx"
    frames: int  #: frames the kernel took (tx) or that arrived and verified (rx)
    bad: int  #: rx: blast frames that failed verification (bad CRC, bad length)
    frame_size: int  #: bytes per frame on the wire, Ethernet header included
    seconds: float  #: from the first frame to the last
    kernel_drops: int  #: rx: frames the kernel dropped for lack of buffer (PACKET_STATISTICS)

    @property
    def gbit_per_s(self) -> float:
        """Frame bytes (Ethernet header included, no FCS) per second, in Gbit/s."""
        return self.frames * self.frame_size * 8 / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def frames_per_s(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict including the derived rates."""
        out: dict[str, object] = asdict(self)
        out["gbit_per_s"] = round(self.gbit_per_s, 3)
        out["frames_per_s"] = round(self.frames_per_s)
        return out


def blast_frames(src: bytes, dst: bytes, frame_size: int, count: int) -> list[bytes]:
    """`count` valid DATA frames of `frame_size` bytes (Ethernet header included)."""
    payload_len = frame_size - FRAME_OVERHEAD
    if payload_len < 0:
        raise ValueError(f"frame size {frame_size} is below the {FRAME_OVERHEAD}-byte overhead")
    return [
        native.build_frame(
            dst,
            src,
            DEFAULT_ETHERTYPE,
            FrameType.DATA,
            0,
            BLAST_SESSION,
            seq,
            bytes([seq & 0xFF]) * payload_len,
        )
        for seq in range(count)
    ]


def send_blast(sock: native.RawSocket, dst: bytes, seconds: float, frame_size: int) -> BlastResult:
    """Send full frames to `dst` for `seconds`; waits for writability on backpressure."""
    count = frames_within(native.TxBatch.stride_for(frame_size), TX_BATCH)
    batch = native.TxBatch(blast_frames(sock.mac, dst, frame_size, count))
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        taken = sock.send_prepared(batch)
        if taken == 0:
            poller.poll(1)
        sent += taken
        now = time.perf_counter()
    return BlastResult("tx", sent, 0, frame_size, now - start, 0)


def receive_blast(sock: native.RawSocket, wait_s: float, idle_s: float = 0.5) -> BlastResult:
    """Count verified blast frames until `idle_s` passes without one (or `wait_s` for the first).

    Frame size is taken from the first blast frame.
    """
    slot = sock.mtu + ETH_HLEN + 64
    arena = native.RxArena(frames_within(slot, RX_SLOTS), slot)
    sock.stats()  # reset the kernel counters: only this blast's drops count
    frames = bad = 0
    frame_size = 0
    first = last = 0.0
    deadline = time.monotonic() + wait_s
    while True:
        n = sock.recv_batch(arena, 100)
        now = time.perf_counter()
        if n > 0:
            # One C call verifies the batch. Control frames that share the EtherType (a few
            # HELLOs per second from daemons) are counted too; they are noise next to a blast.
            ok = arena.verify(n)
            wrong = n - ok
            if ok or wrong:
                if not frames and not bad:
                    first = now
                    frame_size = arena.info(_first_blast(arena, n)).payload_len + FRAME_OVERHEAD
                frames += ok
                bad += wrong
                last = now
            continue
        if frames or bad:
            if now - last >= idle_s:
                break
        elif time.monotonic() >= deadline:
            break
    _, drops = sock.stats()
    return BlastResult("rx", frames, bad, frame_size, last - first, drops)


def _first_blast(arena: native.RxArena, n: int) -> int:
    for i in range(n):
        if arena.info(i).session == BLAST_SESSION:
            return i
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m l2fast.rawblast rx|tx`: one side of a blast, result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m l2fast.rawblast")
    parser.add_argument("role", choices=("rx", "tx"))
    parser.add_argument("-i", "--iface", default="eth0")
    parser.add_argument("--dst", help="tx: destination MAC (aa:bb:cc:dd:ee:ff)")
    parser.add_argument("--seconds", type=float, default=2.0, help="tx: blast length")
    parser.add_argument("--wait", type=float, default=10.0, help="rx: wait for the first frame")
    parser.add_argument("--frame-size", type=int, help="tx: bytes per frame (default: MTU+14)")
    args = parser.parse_args(argv)
    with native.RawSocket.open(args.iface) as sock:
        if args.role == "tx":
            if not args.dst:
                parser.error("tx needs --dst MAC")
            dst = bytes.fromhex(args.dst.replace(":", ""))
            result = send_blast(sock, dst, args.seconds, args.frame_size or sock.mtu + ETH_HLEN)
        else:
            print(json.dumps({"ready": True}), flush=True)
            result = receive_blast(sock, args.wait)
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
