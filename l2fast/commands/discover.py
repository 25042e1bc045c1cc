"""`l2fast discover` (ask the LAN who is there) and `l2fast peers` (the daemon's table)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from l2fast.commands.argtypes import number
from l2fast.daemon.client import add_node_arguments, connect
from l2fast.daemon.display import aligned, counted, escape_text, format_rtt_us, unheard_of

DISCOVER_EXAMPLES = """\
examples:
  sudo l2fast discover                   ask every node on the LAN to answer, wait 1 s
  sudo l2fast discover --timeout 3 --json
  l2fast discover -i eth0                through the daemon on eth0 when one runs

It lists only the nodes that answered this discovery (`l2fast peers` shows the daemon's whole
table, nodes gone quiet included). Without a daemon on the interface, the command runs a node
of its own for its duration (root or CAP_NET_RAW needed). JSON: an array of {mac, name, mtu,
last_seen (Unix time), rtt_us, caps, node_id, daemon}. It exits 0 when at least one node
answered, 1 when none did (like `l2fast ping`). Nodes that answered with frames the LAN key
check refused (another --key, or none) are named in a warning on stderr, with what to do.
"""

PEERS_EXAMPLES = """\
examples:
  l2fast peers                 the neighbour table of the daemon on the default interface
  l2fast peers -i eth0 --json
"""


def print_json(value: Any) -> None:
    """JSON for scripts; ASCII-only, so text from the wire cannot reach the terminal raw."""
    print(json.dumps(value, indent=2, ensure_ascii=True))


def format_age(wall: float) -> str:
    """`1.2 s ago` for a wall-clock time."""
    return f"{max(0.0, time.time() - wall):.1f} s ago"


def peers_table(peers: list[dict[str, Any]]) -> list[str]:
    """The neighbour table as aligned lines, names escaped."""
    rows = [("NAME", "MAC", "MTU", "RTT", "LAST SEEN", "KIND")]
    for p in sorted(peers, key=lambda p: (p["name"], p["mac"])):
        kind = "daemon" if p.get("daemon") else "cli"
        rows.append(
            (
                escape_text(p["name"]),
                p["mac"],
                str(p["mtu"]),
                format_rtt_us(p["rtt_us"]),
                format_age(p["last_seen"]),
                kind,
            )
        )
    return aligned(rows)


def note_unheard(reply: dict[str, Any]) -> None:
    """Name, on stderr, the nodes that are there but whose frames the LAN key check refused
    (the daemon's `unheard`): the usual reason why an expected peer is missing."""
    text = unheard_of(reply)
    if text:
        print(f"l2fast: warning: {text}", file=sys.stderr)


def run_discover(args: argparse.Namespace) -> int:
    """Send a discovery, wait `--timeout` s, print who answered."""
    with connect(args.interface, local_ok=True, name=args.name) as client:
        reply = client.request({"op": "discover", "timeout": args.timeout}, args.timeout + 10)
        ifname = client.ifname
    peers: list[dict[str, Any]] = reply["peers"]
    note_unheard(reply)
    if args.json:
        print_json(peers)
    elif not peers:
        print(f"no l2fast node answered on {ifname} within {args.timeout:g} s")
    else:
        print(f"{counted(len(peers), 'peer')} on {ifname}:")
        print("\n".join(peers_table(peers)))
    # Like ping: finding nobody is a failure a script can test for.
    return 0 if peers else 1


def run_peers(args: argparse.Namespace) -> int:
    """Print the daemon's neighbour table."""
    with connect(args.interface, local_ok=False) as client:
        reply = client.request({"op": "peers"}, 10)
        ifname = client.ifname
    peers: list[dict[str, Any]] = reply["peers"]
    note_unheard(reply)
    if args.json:
        print_json(peers)
    elif not peers:
        print(f"no peers known on {ifname} (try `l2fast discover`)")
    else:
        print("\n".join(peers_table(peers)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast discover` and `l2fast peers`."""
    parser = sub.add_parser(
        "discover",
        help="find the l2fast nodes on the LAN",
        description="Broadcast a HELLO asking every l2fast node to answer, wait, and print "
        "the neighbour table.",
        epilog=DISCOVER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_arguments(parser, one_shot=True)
    parser.add_argument(
        "--timeout",
        type=number(float, 0.0, 60.0, "seconds"),
        default=1.0,
        metavar="S",
        help="seconds to wait for answers (default: 1)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(handler=run_discover)

    parser = sub.add_parser(
        "peers",
        help="show the daemon's neighbour table",
        description="Show the peers the daemon on the interface knows of.",
        epilog=PEERS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_arguments(parser, one_shot=False)
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(handler=run_peers)
