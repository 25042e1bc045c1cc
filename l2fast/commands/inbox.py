"""`l2fast inbox`, `l2fast accept ID`, `l2fast reject ID`: answer file offers held by a daemon
that runs with `--accept ask` (issue 5, "Offer")."""

from __future__ import annotations

import argparse

from l2fast.commands.discover import print_json
from l2fast.daemon.client import add_node_arguments, connect
from l2fast.daemon.display import aligned, counted, offers_by_folder, peer_label
from l2fast.progress import format_bytes

INBOX_EXAMPLES = """\
examples:
  l2fast inbox                 offers waiting for an answer (daemon run with --accept ask)
  l2fast inbox --json          [{id, peer, path, kind, size, waiting_s, folder}, ...]
  l2fast accept 3              receive offer 3 into the daemon's --recv-dir
  l2fast reject 3              refuse it (the sender exits 1 and says so)

Answering a folder answers everything in it that the same send offers, now or later: the
list shows such a folder once, with how many entries wait inside it (`--json` lists each,
with `folder`, the id whose answer covers it).
"""


def run_inbox(args: argparse.Namespace) -> int:
    """List pending offers."""
    with connect(args.interface, local_ok=False) as client:
        offers = client.request({"op": "inbox"}, 10)["offers"]
        names = {p["mac"]: p["name"] for p in client.request({"op": "peers"}, 10)["peers"]}
    if args.json:
        print_json(offers)
        return 0
    if not offers:
        print("no offers waiting")
        return 0
    rows = [("ID", "PEER", "KIND", "SIZE", "PATH", "WAITING")]
    for o, inside in offers_by_folder(offers):
        path = o["path"]
        if inside:
            path += f"  (and {counted(inside, 'entry', 'entries')} inside)"
        rows.append(
            (
                str(o["id"]),
                peer_label(o["peer"], names.get(o["peer"])),
                o["kind"],
                format_bytes(o["size"]),
                path,
                f"{o['waiting_s']:.0f} s",
            )
        )
    print("\n".join(aligned(rows)))
    return 0


def run_decide(args: argparse.Namespace) -> int:
    """Accept or reject one offer."""
    with connect(args.interface, local_ok=False) as client:
        answer = client.request({"op": args.op, "offer": args.offer}, 10)
    if args.json:
        print_json({k: answer.get(k) for k in ("offer", "path", "accepted", "covered")})
    else:
        covered = answer.get("covered") or 0
        also = f" and the {covered} offers waiting under it" if covered else ""
        print(f"{'accepted' if answer['accepted'] else 'rejected'} {answer['path']}{also}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast inbox`, `l2fast accept` and `l2fast reject`."""
    parser = sub.add_parser(
        "inbox",
        help="file offers waiting for an answer (--accept ask)",
        description="List the file offers the daemon holds until you accept or reject them.",
        epilog=INBOX_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_node_arguments(parser, one_shot=False)
    parser.set_defaults(handler=run_inbox)
    for op, verb in (("accept", "receive"), ("reject", "refuse")):
        p = sub.add_parser(
            op,
            help=f"{verb} a pending file offer (see l2fast inbox)",
            description=f"{verb.capitalize()} the pending offer ID shown by `l2fast inbox`.",
            epilog=INBOX_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("offer", metavar="ID", type=int, help="offer id from l2fast inbox")
        p.add_argument("--json", action="store_true", help="print JSON")
        add_node_arguments(p, one_shot=False)
        p.set_defaults(handler=run_decide, op=op)
