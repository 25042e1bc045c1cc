"""`l2fast ping PEER`: the L2 echo, printed like ping(8) (PROTOCOL.md §PING, PONG)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque
from typing import Any

from l2fast.commands.argtypes import number
from l2fast.commands.discover import print_json
from l2fast.daemon.client import add_node_arguments, connect
from l2fast.node.pingstats import RttStats
from l2fast.wire.constants import MAX_PAYLOAD, PING_HEADER

EXAMPLES = """\
examples:
  sudo l2fast ping h2 -c 5                   five PINGs to the peer named h2, one per second
  sudo l2fast ping 02:00:00:00:00:02 -c 100 -i 0.01 -s 1400
  l2fast ping h2 -c 3 --json                 {sent, received, rtt_min_us, rtt_median_us, ...}

PEER is a MAC or a name from `l2fast discover`. Without -c it runs until Ctrl-C. It exits 0
when at least one answer came back, 1 when none did. Without a daemon on the interface it
runs a node of its own (root or CAP_NET_RAW needed).
"""


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


#: RTTs kept for the median: the most recent ones (8 bytes each, so a ping left running for
#: days at -i 0.001 stays bounded).
MEDIAN_SAMPLES = 100_000


def summary_json(
    peer: str, stats: RttStats, elapsed: float, recent_ns: deque[int] | None = None
) -> dict[str, Any]:
    """The --json summary; `recent_ns` (the last RTTs) gives `rtt_median_us`, the statistic
    least moved by a few scheduling stalls (ping(8) has none, so it is JSON only)."""
    s = stats.summary()
    median = statistics.median(recent_ns) if recent_ns else 0.0

    def us(ns: float) -> float | None:
        # No reply, no round trip: null, not a 0 a script would average in.
        return round(ns / 1000, 3) if s.received else None

    return {
        "peer": peer,
        "sent": s.sent,
        "received": s.received,
        "duplicates": s.duplicates,
        "loss": round(s.loss, 6),
        "rtt_min_us": us(s.rtt_min_ns),
        "rtt_avg_us": us(s.rtt_avg_ns),
        "rtt_max_us": us(s.rtt_max_ns),
        "rtt_mdev_us": us(s.rtt_mdev_ns),
        "rtt_median_us": us(median),
        "time_s": round(elapsed, 3),
    }


def summary_lines(label: str, stats: RttStats, elapsed: float) -> list[str]:
    """ping(8)'s closing lines."""
    s = stats.summary()
    dup = f", +{s.duplicates} duplicates" if s.duplicates else ""
    lines = [
        f"--- {label} l2fast ping statistics ---",
        f"{s.sent} packets transmitted, {s.received} received{dup}, "
        f"{s.loss * 100:.4g}% packet loss, time {elapsed * 1000:.0f}ms",
    ]
    if s.received:
        lines.append(
            f"rtt min/avg/max/mdev = {_ms(s.rtt_min_ns)}/{_ms(s.rtt_avg_ns)}/"
            f"{_ms(s.rtt_max_ns)}/{_ms(s.rtt_mdev_ns)} ms"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    """PING the peer, print each answer, then the statistics."""
    stats = RttStats()
    recent_ns: deque[int] = deque(maxlen=MEDIAN_SAMPLES)
    label = args.peer
    request = {
        "op": "ping",
        "peer": args.peer,
        "count": args.count,
        "interval": args.interval,
        "size": args.size,
    }
    start = time.monotonic()
    interrupted = False
    with connect(args.interface, local_ok=True, name=args.name) as client:
        try:
            for msg in client.stream(request, args.interval + 15):
                event = msg.get("event")
                if event == "start":
                    label = msg["label"]
                    if not args.json:
                        print(f"PING {label} {msg['size']} bytes on {client.ifname}")
                elif event == "sent":
                    stats.sent += 1
                elif event == "reply":
                    _on_reply(msg, stats, recent_ns, label, args.json)
                elif event == "lost" and not args.json:
                    print(f"no answer from {label}: seq={msg['seq']}")
                elif event == "error":
                    print(f"l2fast: {msg['error']}")
        except KeyboardInterrupt:
            interrupted = True  # ping(8): Ctrl-C ends the run and prints the summary
    elapsed = time.monotonic() - start
    if args.json:
        print_json(summary_json(label, stats, elapsed, recent_ns))
    else:
        print()
        print("\n".join(summary_lines(label, stats, elapsed)))
    if interrupted and not stats.received:
        return 130
    return 0 if stats.received else 1


def _on_reply(
    msg: dict[str, Any], stats: RttStats, recent_ns: deque[int], label: str, quiet: bool
) -> None:
    rtt_ns = round(msg["rtt_us"] * 1000)
    if msg["duplicate"]:
        stats.duplicates += 1
    else:
        stats.add(rtt_ns)
        recent_ns.append(rtt_ns)
    if not quiet:
        dup = " (DUP!)" if msg["duplicate"] else ""
        print(f"{msg['size']} bytes from {label}: seq={msg['seq']} time={_ms(rtt_ns)} ms{dup}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast ping`."""
    parser = sub.add_parser(
        "ping",
        help="measure the round trip to a peer (L2 echo, like ping(8))",
        description="Send PING frames to a peer and print each PONG's round-trip time, then "
        "min/avg/max/mdev and loss.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("peer", metavar="PEER", help="MAC address or name of the peer")
    parser.add_argument(
        "-c",
        "--count",
        type=number(int, 1, 1_000_000),
        default=0,
        help="stop after N PINGs (default: Ctrl-C)",
    )
    parser.add_argument(
        "-i",
        "--interval",
        type=number(float, 0.001, 3600.0, "seconds"),
        default=1.0,
        metavar="SECONDS",
        help="seconds between PINGs (default: 1)",
    )
    parser.add_argument(
        "-s",
        "--size",
        type=number(int, PING_HEADER, MAX_PAYLOAD, "bytes (and fit the MTU)"),
        default=56,
        help="PING payload bytes (default: 56)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary only")
    # ping(8) has -i for the interval, so the interface is -I here.
    add_node_arguments(parser, one_shot=True, interface_flag="-I")
    parser.set_defaults(handler=run)
