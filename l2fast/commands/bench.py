"""`l2fast bench PEER`: iperf3-style memory-to-memory throughput over the real protocol (issue 6).

The node (the daemon on the interface, or this command's own engine) opens a session to PEER
and sends bench streams (FILE_OFFER kind 3: the receiver counts and discards, no disk, no
digest) with everything a file transfer has: CRC32C per frame, FEEDBACK credit and SACK,
retransmission. The bench run is a pipeline of 128 MiB segments (one offer each, all received
by one bench receive process on the peer): every segment ends with a FILE_RESULT whose text
carries the receiver's CPU seconds and kernel drops, which is how the receiver's CPU use
reaches this side. After `-t` seconds the rest is cancelled and the session closed.

`-R` and `--raw` are requests carried by zero-size bench offers (`bench/reverse`,
`bench/raw`; docs/PROTOCOL.md §FILE_OFFER): the peer sends bench streams back, or counts a
raw blast and returns the count in its FILE_RESULT.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from l2fast.commands.argtypes import number
from l2fast.commands.send import NOT_REACHED_HINT
from l2fast.daemon.client import add_node_arguments, connect
from l2fast.errors import UsageError

EXAMPLES = """\
examples:
  l2fast bench h2                          10 s to the peer named h2, a line per second
  l2fast bench 02:00:00:00:00:02 -t 2 -i 0.5
  l2fast bench h2 -t 2 --json              one JSON object at the end: intervals + end
  l2fast bench h2 --json-stream            one JSON object per interval, then the summary
  l2fast bench h2 -R                       reverse: h2 sends, this node receives and measures
  l2fast bench h2 --raw -t 2               unreliable blast of full-size frames; h2 counts them

The peer only needs its daemon (`l2fast daemon`): it accepts bench streams under any --accept
policy except `none` (a bench stream touches no disk). Throughput counts payload bytes the
receiver acknowledged (wire_gbit_per_s: the same frames with their headers, as --raw counts);
frames/s counts acknowledged DATA frames. Per interval and at the end: retransmitted frames,
kernel drops at the receiver (from its FEEDBACK), this node's CPU (sender_cpu_pct: the
daemon's, or this command's, whole process), and the receiver's CPU (receiver_cpu_pct: its
bench receive process and writers, reported in each 128 MiB segment's FILE_RESULT; null in an
interval in which no segment ended). 100 % is one core.

--raw asks the peer's node to count (a zero-size bench offer named `bench/raw`; its FILE_RESULT
text carries the count), then blasts full-size DATA frames at it for -t seconds:
no acknowledgements, no retransmission. It reports what was sent per interval, and at the end
what arrived: the ceiling of the link for l2fast's frame size.

-R asks the peer's node to send bench streams back (a zero-size bench offer named
`bench/reverse` carrying the duration; docs/PROTOCOL.md §FILE_OFFER) and measures them as
they arrive here: Gbit/s, frames/s, kernel drops and this node's receive CPU. The sender's
retransmissions and CPU are null in the intervals; the summary has them from the peer's
FILE_RESULT once its run ended.

Ctrl-C prints the summary of the intervals measured so far (with --json, `"interrupted": true`)
and exits 130, as iperf3 does.
"""

#: Seconds without any message from the node before the command gives up (beyond -t).
SILENCE_S = 30.0


def run(args: argparse.Namespace) -> int:
    """Run one bench and report."""
    if args.reverse and args.raw:
        raise UsageError("--raw cannot be reversed (-R): the peer's daemon does not blast")
    request = {
        "op": "bench",
        "peer": args.peer,
        "seconds": args.time,
        "interval": args.interval,
        "reverse": args.reverse,
        "raw": args.raw,
    }
    final: dict[str, Any] = {}
    quiet = args.json or args.json_stream
    intervals: list[dict[str, Any]] = []
    try:
        _stream(args, request, quiet, intervals, final)
    except KeyboardInterrupt:
        # As iperf3 does on Ctrl-C: the summary of the intervals measured so far.
        if args.raw or not intervals:
            raise
        _report(args, {"intervals": intervals, "end": _partial(intervals)}, interrupted=True)
        return 130
    return _report(args, final)


def _stream(
    args: argparse.Namespace,
    request: dict[str, Any],
    quiet: bool,
    intervals: list[dict[str, Any]],
    final: dict[str, Any],
) -> None:
    """Ask the node for the run; print (or collect) its intervals; `final` gets the summary."""
    with connect(args.interface, local_ok=True, name=args.name) as client:
        for msg in client.stream(request, SILENCE_S + args.time):
            if msg.get("done"):
                final.update(msg)
                break
            if msg.get("event") == "start":
                final["reached"] = True  # the session opened: the peer is there
            if msg.get("event") == "start" and not quiet and args.raw:
                print(f"raw blast to {args.peer}: MTU {msg.get('mtu')}")
            elif msg.get("event") == "start" and not quiet:
                way = "from" if args.reverse else "to"
                print(
                    f"bench {way} {args.peer}: session {msg.get('session')}, MTU {msg.get('mtu')}"
                )
            elif msg.get("event") == "interval":
                rep = _clean(msg)
                intervals.append(rep)
                if args.json_stream:
                    print(json.dumps({"event": "interval", "data": rep}), flush=True)
                elif not args.json:
                    if not args.raw and len(intervals) == 1:
                        # With the first numbers: a peer that refuses the stream (--accept
                        # none) leaves no table header above its error.
                        print(_HEADER)
                    print(_raw_line(rep) if args.raw else _line(rep), flush=True)


def _report(args: argparse.Namespace, final: dict[str, Any], interrupted: bool = False) -> int:
    """Print the run's result (text, --json or --json-stream's end); the exit status."""
    ok = bool(final.get("success")) or interrupted
    result = _result(args, final)
    if interrupted:
        result["interrupted"] = True
    if args.json_stream:
        print(json.dumps({"event": "end", "data": result}), flush=True)
    elif args.json:
        print(json.dumps(result, indent=2))
    elif ok and args.raw:
        print(_raw_summary(result))
    elif interrupted:
        print(_SEP)
        print(_line(result["end"], summary=True) + " interrupted")
    elif ok:
        print(_SEP)
        print(_line(result["end"], summary=True))
        print(f"negotiated MTU {result['mtu']} (chunk {result['chunk_size']} bytes)")
    if not ok:
        print(f"l2fast: error: {final.get('error') or 'the bench failed'}", file=sys.stderr)
        if not final.get("reached"):
            print(f"l2fast: hint: {NOT_REACHED_HINT}", file=sys.stderr)
    return 0 if ok else 1


def _partial(intervals: list[dict[str, Any]]) -> dict[str, Any]:
    """A summary of the intervals received (an interrupted run has no summary of the node's)."""
    seconds = sum(float(r.get("seconds", 0.0)) for r in intervals)
    n_bytes = sum(int(r.get("bytes", 0)) for r in intervals)

    def weighted(key: str) -> float | None:
        values = [(r.get(key), float(r.get("seconds", 0.0))) for r in intervals]
        if not seconds or any(v is None for v, _ in values):
            return None
        return round(sum(float(v) * w for v, w in values if v is not None) / seconds, 1)

    return {
        "start": intervals[0].get("start", 0.0),
        "end": intervals[-1].get("end", 0.0),
        "seconds": round(seconds, 3),
        "bytes": n_bytes,
        "gbit_per_s": round(n_bytes * 8 / seconds / 1e9, 3) if seconds else 0.0,
        "frames_per_s": round(weighted("frames_per_s") or 0),
        "retransmits": _total(intervals, "retransmits"),
        "kernel_drops": _total(intervals, "kernel_drops"),
        "sender_cpu_pct": weighted("sender_cpu_pct"),
        "receiver_cpu_pct": weighted("receiver_cpu_pct"),
    }


def _clean(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k not in ("ok", "id", "event")}


def _result(args: argparse.Namespace, final: dict[str, Any]) -> dict[str, Any]:
    """The iperf3-like result: start (parameters), intervals, end (summary)."""
    return {
        "start": {
            "peer": args.peer,
            "mode": "raw" if args.raw else "reliable",
            "reverse": bool(args.reverse),
            "seconds": args.time,
            "interval": args.interval,
            "session": final.get("session"),
        },
        "mtu": final.get("mtu"),
        "chunk_size": final.get("chunk_size"),
        "intervals": final.get("intervals", []),
        "end": final.get("end", {}),
        **({"error": final["error"]} if final.get("error") else {}),
    }


_HEADER = "  interval s     Gbit/s   frames/s   retrans   drops  cpu tx %  cpu rx %"
_SEP = "-" * len(_HEADER)


def _opt(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _line(rep: dict[str, Any], summary: bool = False) -> str:
    span = f"{rep.get('start', 0):5.2f}-{rep.get('end', 0):5.2f}"
    return (
        f"{span:>12} {rep.get('gbit_per_s', 0):10.3f} {rep.get('frames_per_s', 0):10.0f}"
        f" {_opt(rep.get('retransmits'), 'd'):>9} {_opt(rep.get('kernel_drops'), 'd'):>7}"
        f" {_opt(rep.get('sender_cpu_pct'), '.1f'):>9}"
        f" {_opt(rep.get('receiver_cpu_pct'), '.1f'):>9}" + ("  (summary)" if summary else "")
    )


def _raw_line(rep: dict[str, Any]) -> str:
    return (
        f"{rep.get('start', 0):5.2f}-{rep.get('end', 0):5.2f} s  sent "
        f"{rep.get('gbit_per_s', 0):.3f} Gbit/s  {rep.get('frames_per_s', 0)} frames/s"
    )


def _raw_summary(result: dict[str, Any]) -> str:
    end = result["end"]
    return (
        f"raw blast, MTU {result['mtu']}, {end.get('frame_size')}-byte frames: sent "
        f"{end.get('frames_sent')} ({end.get('sent_gbit_per_s')} Gbit/s), arrived "
        f"{end.get('frames_arrived')} ({end.get('gbit_per_s')} Gbit/s, "
        f"{end.get('frames_per_s')} frames/s), lost {end.get('lost_frames')}, "
        f"kernel drops {end.get('kernel_drops')}"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast bench`."""
    parser = sub.add_parser(
        "bench",
        help="memory-to-memory throughput to a peer over the reliable protocol (iperf3-style)",
        description="Measure throughput to PEER over the real l2fast protocol (CRC32C, credit, "
        "acknowledgements, retransmission) from memory to memory: no disk on either side.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("peer", metavar="PEER", help="MAC address or name of the peer")
    parser.add_argument(
        "-t",
        "--time",
        type=number(float, 0.1, 600.0, "seconds"),
        default=10.0,
        metavar="SECONDS",
        help="length (default 10)",
    )
    parser.add_argument(
        "-i",
        "--interval",
        type=number(float, 0.05, 600.0, "seconds"),
        default=1.0,
        metavar="INTERVAL",
        help="seconds between reports (default 1)",
    )
    parser.add_argument(
        "-R", "--reverse", action="store_true", help="reverse: the peer sends, this node receives"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object at the end")
    out.add_argument(
        "--json-stream", action="store_true", help="one JSON object per interval, then the end"
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="unreliable blast of full-size frames, counted by the peer",
    )
    add_node_arguments(parser, one_shot=True, interface_flag="-I")
    parser.set_defaults(handler=run)


def _total(intervals: list[dict[str, Any]], key: str) -> int | None:
    """The sum of `key` over the intervals; None when one of them did not know it (-R)."""
    values = [r.get(key) for r in intervals]
    if any(v is None for v in values):
        return None
    return sum(int(v) for v in values if v is not None)
