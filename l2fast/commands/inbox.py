"""`l2fast inbox`, `l2fast accept ID...`, `l2fast reject ID...`: answer file offers held by a daemon
that runs with `--accept ask` (issue 5, "Offer")."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from l2fast.commands.discover import print_json
from l2fast.daemon.client import NodeClient, add_node_arguments, connect
from l2fast.daemon.control import DaemonClosed
from l2fast.daemon.display import (
    aligned,
    counted,
    escape_text,
    format_mac,
    offers_by_folder,
    parse_mac,
    peer_label,
)
from l2fast.errors import L2fastError, UsageError
from l2fast.progress import format_bytes

INBOX_EXAMPLES = """\
examples:
  l2fast inbox                 offers waiting for an answer (daemon run with --accept ask)
  l2fast inbox --json          [{id, peer, path, kind, size, waiting_s, folder}, ...]
  l2fast accept 3              receive offer 3 into the daemon's --recv-dir
  l2fast reject 3              refuse it (the sender exits 1 and says so)
  l2fast accept 3 4 7          several at once
  l2fast accept --all --from bob    every offer waiting from bob (a name or a MAC)

Answering a folder answers everything in it that the same send offers, now or later: the
list shows such a folder once, with how many entries wait inside it (`--json` lists each,
with `folder`, the id whose answer covers it). With several IDs or --all, each is answered
in turn: one that cannot be (answered meanwhile, its sender gone) is reported on stderr and
the others are still answered (exit 1 if any could not be); --json then prints
{"answers": [{offer, path, accepted, covered}, ...], "errors": [{offer, error, hint}, ...]}.
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
    """Accept or reject the offers named (or every one waiting, --all, maybe --from a peer)."""
    if bool(args.offers) == args.all:
        raise UsageError(
            f"name the offers to {args.op} (IDs from `l2fast inbox`) or give --all, not both"
            if args.offers
            else "which offers? name their IDs (`l2fast inbox` lists them) or give --all",
            hint=f"l2fast {args.op} 3 4, or l2fast {args.op} --all [--from PEER]",
        )
    if args.peer is not None and not args.all:
        raise UsageError("--from picks among the offers --all answers", hint="add --all")
    with connect(args.interface, local_ok=False) as client:
        if not args.all:
            if len(args.offers) == 1:  # as it always was: one answer, or the error
                return _report_one(args, client.request(_decided(args, args.offers[0]), 10))
            ids = args.offers
        else:
            ids = _waiting(client, args.peer)
            if not ids:
                who = f" from {args.peer}" if args.peer else ""
                if args.json:
                    print_json({"answers": [], "errors": []})
                else:
                    print(f"no offers waiting{who}: nothing to {args.op}")
                return 0
        answers, errors = [], []
        for offer in ids:
            try:
                answers.append(client.request(_decided(args, offer), 10))
            except DaemonClosed:
                raise
            except L2fastError as exc:  # answered meanwhile, or its sender gave up: go on
                errors.append({"offer": offer, "error": exc.message, "hint": exc.hint})
    if args.json:
        print_json({"answers": [_answer_json(a) for a in answers], "errors": errors})
    else:
        for answer in answers:
            print(_answer_line(answer))
        for error in errors:
            print(f"l2fast: error: offer {error['offer']}: {error['error']}", file=sys.stderr)
    return 1 if errors else 0


def _decided(args: argparse.Namespace, offer: int) -> dict[str, Any]:
    return {"op": args.op, "offer": offer}


def _waiting(client: NodeClient, peer: str | None) -> list[int]:
    """The ids of the offers waiting (a folder's, not those its answer covers), oldest
    first; only `peer`'s (a name or a MAC) if given."""
    offers = client.request({"op": "inbox"}, 10)["offers"]
    if peer is not None:
        wanted = _peer_mac(client, peer)
        offers = [o for o in offers if o["peer"] == wanted]
    return sorted(o["id"] for o, _ in offers_by_folder(offers))


def _peer_mac(client: NodeClient, peer: str) -> str:
    """The MAC `peer` names (itself, or a name in the neighbour table). A name is only what a
    node announces: one that two nodes carry picks neither, since accepting the offers of
    whichever node chose that name is what --from must not do."""
    mac = parse_mac(peer)
    if mac is not None:
        return format_mac(mac)
    named = [p["mac"] for p in client.request({"op": "peers"}, 10)["peers"] if p["name"] == peer]
    if len(named) > 1:
        raise L2fastError(
            f"{len(named)} peers are named {escape_text(peer)!r}: {', '.join(named)}",
            hint="name it by its MAC (`l2fast inbox` shows each offer's)",
        )
    if not named:
        raise L2fastError(
            f"no peer named {escape_text(peer)!r} is in the neighbour table",
            hint="name it by its MAC (`l2fast inbox` shows each offer's)",
        )
    return str(named[0])


def _answer_json(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: answer.get(k) for k in ("offer", "path", "accepted", "covered")}


def _answer_line(answer: dict[str, Any]) -> str:
    covered = answer.get("covered") or 0
    also = f" and the {covered} offers waiting under it" if covered else ""
    return f"{'accepted' if answer['accepted'] else 'rejected'} {answer['path']}{also}"


def _report_one(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    if args.json:
        print_json(_answer_json(answer))
    else:
        print(_answer_line(answer))
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
            help=f"{verb} pending file offers (see l2fast inbox)",
            description=f"{verb.capitalize()} the pending offers shown by `l2fast inbox`: by ID, "
            "or every one waiting (--all), maybe only one peer's (--from).",
            epilog=INBOX_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "offers", metavar="ID", type=int, nargs="*", help="offer ids from l2fast inbox"
        )
        p.add_argument("--all", action="store_true", help=f"{op} every offer waiting (see --from)")
        p.add_argument(
            "--from",
            dest="peer",
            metavar="PEER",
            help="with --all: only the offers of PEER (a name or a MAC)",
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        add_node_arguments(p, one_shot=False)
        p.set_defaults(handler=run_decide, op=op)
