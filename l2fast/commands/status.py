"""`l2fast status`: what the daemon on an interface is doing, and what it dropped and why."""

from __future__ import annotations

import argparse
from typing import Any

from l2fast.commands.discover import peers_table, print_json
from l2fast.daemon.client import add_node_arguments, connect
from l2fast.daemon.display import escape_text, format_rtt_us, unheard_of
from l2fast.progress import format_bytes

EXAMPLES = """\
examples:
  l2fast status                 the daemon on the default interface
  l2fast status -i eth0 --json  everything, for scripts (counters, drops by reason)

Drop reasons (docs/PROTOCOL.md §Receiving): short, bad_magic, bad_version, bad_length,
bad_crc, unknown_type, bad_payload, unknown_session, rate_limited, not_for_us,
unauthenticated (no seal, and this node has a LAN key), bad_auth (sealed with another key, or
changed on the way), needs_key (sealed, and this node has no key), replayed_syn (a recorded
SYN played again), and the engine's own (duplicate, late, stale_keepalive, ...).
"""


def status_lines(s: dict[str, Any]) -> list[str]:
    """The status reply as text."""
    c = s["counters"]
    lines = [
        f"interface  {s['interface']}  {s['mac']}  mtu {s['mtu']}"
        + ("" if s.get("link", True) else "  NO LINK (down, or no carrier): nothing passes"),
        f"node       {escape_text(s['name'])}  id {s['node_id']}  "
        f"{'daemon pid ' + str(s['pid']) if s['daemon'] else 'in-process'}  "
        f"up {s['uptime_s']:.1f} s",
    ]
    auth = s.get("auth")
    lines.append(
        f"auth       LAN key {auth['key_id']}: only nodes with this key are heard"
        if auth
        else "auth       none: frames are not authenticated (l2fast daemon --key FILE)"
    )
    control = s.get("control")
    if control:
        lines.append(
            f"control    {control['address']}  clients {control['clients']}  "
            f"refused {control['refused']}  bad requests {control['bad_requests']}"
        )
    if "accept" in s:
        lines.append(f"files      recv-dir {s['recv_dir'] or '-'}  accept {s['accept']}")
        parts = s.get("part_files") or {}
        if parts.get("keep_days"):
            lines.append(
                f"           part files kept {parts['keep_days']:g} days, "
                f"{parts.get('removed', 0)} removed ({format_bytes(parts.get('removed_bytes', 0))})"
            )
    transfers = s.get("transfers", [])
    lines.append(f"transfers  {len(transfers)} in flight")
    for t in transfers:
        pct = 100.0 * t["bytes_done"] / t["bytes_total"] if t["bytes_total"] else 0.0
        present = t.get("files_present", 0)
        already = f" ({present} already there)" if present else ""
        lines.append(
            f"  {t['direction']:<7}  {t['peer']}  {t['session']}  {t['files']} file(s){already}  "
            f"{t['bytes_done']}/{t['bytes_total']} bytes ({pct:.1f}%)  {t['seconds']:.1f} s"
        )
    lines.append(f"peers      {len(s['peers'])}")
    if s["peers"]:
        lines += ["  " + line for line in peers_table(s["peers"])]
    unheard = unheard_of(s)
    if unheard:  # there, but refused by the LAN key check
        lines.append(f"  not heard: {unheard}")
    lines.append(f"sessions   {len(s['sessions'])}")
    for x in s["sessions"]:
        who = f"{escape_text(x['peer_name'])} ({x['peer']})" if x["peer_name"] else x["peer"]
        lines.append(
            f"  {x['session']}  {who}  {x['state']}  {x['role']}  mtu {x['mtu'] or '-'}  "
            f"srtt {format_rtt_us(x['srtt_us'])}  unacked {x['unacked']}"
        )
    lines.append(
        f"frames     in {c['frames_in']}  out {c['frames_out']}  accepted {c['frames_accepted']}"
        f"  dropped {c['frames_dropped']}"
    )
    lines.append(f"kernel     packets {c['kernel_packets']}  drops {c['kernel_drops']}")
    echo = s.get("ping_responder")
    if echo:
        where = "C thread" if echo["thread"] == "c" else "event loop"
        lines.append(
            f"pings      answered {echo['answered']} ({where})  rate-limited "
            f"{echo['rate_limited']}  peers evicted {echo['peers_evicted']}"
        )
    pool = s.get("receive_sockets")
    if pool:
        lines.append(
            f"receiving  fanout group {pool['fanout_group']:#06x}: {pool['lent']} of "
            f"{pool['pool']} pooled sockets lent, {pool.get('reserved', 0)} kept for their "
            f"session ({pool['lent_total']} loans, {pool.get('reused', 0)} reused; "
            f"{pool['unpooled']} receivers used their own)"
        )
    elif "receive_sockets" in s:
        lines.append("receiving  no fanout group: each receiver opens its own socket")
    drops = s["drops"]
    lines.append("drops      " + "  ".join(f"{k} {v}" for k, v in drops.items()))
    refused = {k: v for k, v in s.get("transfer_drops", {}).items() if v}
    for key in ("chunks_refused", "offers_refused_busy", "offers_failed_io"):
        if c.get(key):
            refused[key] = c[key]
    if refused:  # a quiet line on a healthy node; shown once a peer did something refused
        lines.append("refused    " + "  ".join(f"{k} {v}" for k, v in sorted(refused.items())))
    errors = {k: c[k] for k in ("subscriber_errors", "encode_errors") if c.get(k)}
    if c.get("sends_stopped_by_source"):  # not the node's fault: files that changed under it
        lines.append(f"sending    {c['sends_stopped_by_source']} sends stopped: a source file "
                     "changed while it was sent (see the log)")  # fmt: skip
    if errors:
        lines.append(
            "errors     " + "  ".join(f"{k} {v}" for k, v in errors.items()) + "  (see the log)"
        )
    lines.append(f"chat       {s['chat_history']} messages received (l2fast chat --history)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Ask the daemon for its status and print it."""
    with connect(args.interface, local_ok=False) as client:
        status: dict[str, Any] = client.request({"op": "status"}, 10)["status"]
    if args.json:
        print_json(status)
    else:
        print("\n".join(status_lines(status)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast status`."""
    parser = sub.add_parser(
        "status",
        help="show the daemon's interface, peers, sessions and counters",
        description="Show the daemon on an interface: interface, MAC and MTU, peers, "
        "sessions, frames in and out, and dropped frames by reason.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_arguments(parser, one_shot=False)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)
