"""`l2fast lab up|down|exec|status`: test hosts in network namespaces, with optional faults.

Argument errors are reported before the root check, so a typo is explained even without sudo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from l2fast.errors import as_root
from l2fast.lab import iproute, netns
from l2fast.lab.iproute import LabError
from l2fast.lab.state import MAX_HOSTS, Impairment, LabSpec, parse_rate

UP_EPILOG = """\
examples:
  sudo l2fast lab up --name demo --hosts 2
      two hosts, demo-h1 and demo-h2, on one veth pair (MTU 1500)
  sudo l2fast lab up --name t --hosts 3 --mtu 9000
      three hosts on a bridge in namespace t-br, jumbo frames
  sudo l2fast lab up --name wan --hosts 2 --rate 1gbit --loss 0.01 --reorder 0.02 --seed 7
      a 1 GbE-like link through the impairment relay: 1 % loss, 2 % reordering, reproducible

Host i is the network namespace NAME-hI; its lab interface is eth0 with MAC 02:4c:32:00:00:0I.
Any of --loss/--dup/--reorder/--corrupt/--seed puts the relay (namespace NAME-relay) between
the hosts. --rate shapes each host's egress qdisc (a tbf), which l2fast's sockets then go
through, however they are started (they bypass only the kernel's default qdiscs).
"""

DOWN_EPILOG = """\
examples:
  sudo l2fast lab down --name demo
      remove lab demo: relay, processes in its namespaces, namespaces, links (idempotent)
"""

EXEC_EPILOG = """\
examples:
  sudo l2fast lab exec h1 -- ip link show eth0
  sudo l2fast lab exec demo-h2 -- l2fast daemon -i eth0
  sudo ip netns exec demo-h1 l2fast selftest       (the same namespace, without l2fast)

HOST is LAB-hI, or hI when only one lab exists (or with --name LAB).
"""

STATUS_EPILOG = """\
examples:
  sudo l2fast lab status
  sudo l2fast lab status --name wan --json
"""


def register(subparsers: Any) -> None:
    """Add `lab` and its sub-commands to the top-level parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    lab = subparsers.add_parser(
        "lab",
        help="test hosts in network namespaces, with an impairment relay",
        description="Test hosts in network namespaces on one Ethernet segment (root only).",
        formatter_class=fmt,
        epilog=UP_EPILOG,
    )
    lab.set_defaults(handler=lambda args: _help(lab))
    sub = lab.add_subparsers(title="lab commands", metavar="ACTION")

    p = sub.add_parser(
        "up", help="create a lab", description=up.__doc__, formatter_class=fmt, epilog=UP_EPILOG
    )
    p.add_argument("--name", required=True, help="lab name (letters, digits, _)")
    p.add_argument("--hosts", type=int, default=2, help=f"number of hosts, 2..{MAX_HOSTS}")
    p.add_argument("--mtu", type=int, default=1500, help="MTU, 1280..65535 (default 1500)")
    p.add_argument("--rate", help="shape each host's egress, e.g. 1gbit or 10gbit")
    p.add_argument("--loss", type=float, help="probability that the relay drops a frame")
    p.add_argument("--dup", type=float, help="probability that the relay duplicates a frame")
    p.add_argument("--reorder", type=float, help="probability that the relay holds a frame back")
    p.add_argument("--corrupt", type=float, help="probability that the relay flips one bit")
    p.add_argument("--seed", type=int, help="seed of the relay's faults (default 1)")
    p.add_argument("--json", action="store_true", help="print the new lab's status as JSON")
    p.set_defaults(handler=up)

    p = sub.add_parser(
        "down",
        help="remove a lab",
        description=down.__doc__,
        formatter_class=fmt,
        epilog=DOWN_EPILOG,
    )
    p.add_argument("--name", required=True, help="lab name")
    p.set_defaults(handler=down)

    p = sub.add_parser(
        "exec",
        help="run a command in a host",
        description=exec_.__doc__,
        formatter_class=fmt,
        epilog=EXEC_EPILOG,
    )
    p.add_argument("--name", help="lab of HOST, when HOST is just hI and several labs exist")
    p.add_argument("host", metavar="HOST", help="h1 or LAB-h1")
    p.add_argument("command", metavar="-- CMD", nargs=argparse.REMAINDER, help="command to run")
    p.set_defaults(handler=exec_)

    p = sub.add_parser(
        "status",
        help="list labs, hosts and relay counters",
        description=status.__doc__,
        formatter_class=fmt,
        epilog=STATUS_EPILOG,
    )
    p.add_argument("--name", help="show only this lab")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=status)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def spec_from_args(args: argparse.Namespace) -> LabSpec:
    """The LabSpec of `lab up`'s arguments, validated (LabError otherwise)."""
    faults = (args.loss, args.dup, args.reorder, args.corrupt, args.seed)
    impairment = None
    if any(v is not None for v in faults):
        impairment = Impairment(
            loss=args.loss or 0.0,
            dup=args.dup or 0.0,
            reorder=args.reorder or 0.0,
            corrupt=args.corrupt or 0.0,
            seed=1 if args.seed is None else args.seed,
        )
    spec = LabSpec(
        name=args.name,
        hosts=args.hosts,
        mtu=args.mtu,
        rate_bps=None if args.rate is None else parse_rate(args.rate),
        impairment=impairment,
    )
    spec.validate()
    return spec


def up(args: argparse.Namespace) -> int:
    """Create N test hosts on one Ethernet segment (a veth pair, a bridge, or the relay)."""
    spec = spec_from_args(args)
    started = time.monotonic()
    netns.up(spec)
    if args.json:
        print(json.dumps(netns.status(spec.name)[0], indent=1))
        return 0
    took = time.monotonic() - started
    hosts = ", ".join(f"{spec.name}-h{i}" for i in range(1, spec.hosts + 1))
    print(f"lab {spec.name} is up in {took:.1f} s: {hosts} ({spec.topology}, MTU {spec.mtu})")
    print(f"  try: {as_root(f'l2fast lab exec {spec.name}-h1 -- ip link show eth0')}")
    print(f"  remove: {as_root(f'l2fast lab down --name {spec.name}')}")
    return 0


def down(args: argparse.Namespace) -> int:
    """Remove everything `lab up` created for a lab; succeeds when there is nothing to remove."""
    removed = netns.down(args.name)
    print(f"lab {args.name} {'removed' if removed else 'did not exist: nothing to do'}")
    return 0


def exec_(args: argparse.Namespace) -> int:
    """Run a command inside a lab host's network namespace (replaces this process)."""
    command = list(args.command)
    lab = args.name
    # argparse hands everything after HOST to the command, `--name LAB` included: take it
    # here too, so that `lab exec h1 --name demo -- CMD` means what it says.
    if command[:1] == ["--name"] and len(command) >= 2:
        lab, command = command[1], command[2:]
    elif command and command[0].startswith("--name="):
        lab, command = command[0].partition("=")[2], command[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise LabError(  # a usage error: exit 2, as argparse's
            "no command given", hint=as_root("l2fast lab exec h1 -- ip link show eth0"), exit_code=2
        )
    netns.require_root("exec enters a lab host's network namespace")
    record, ns = netns.resolve_host(args.host, lab)
    env = dict(os.environ, L2FAST_LAB=record.name, L2FAST_LAB_HOST=ns)
    ip = iproute.tool("ip")
    sys.stdout.flush()
    os.execve(ip, [ip, "netns", "exec", ns, *command], env)
    return 127  # not reached: execve replaces the process or raises OSError


def status(args: argparse.Namespace) -> int:
    """Show labs, their hosts (MAC, MTU, state) and the relay's counters and forwarding rate."""
    labs = netns.status(args.name)
    if args.json:
        print(json.dumps({"labs": labs}, indent=1))
        return 0
    if not labs:
        print(f"no labs (create one: {as_root('l2fast lab up --name NAME')})")
        return 0
    for i, lab in enumerate(labs):
        if i:
            print()
        print(format_lab(lab))
    return 0


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f} %" if whole else "-"


def format_lab(lab: dict[str, Any]) -> str:
    """The human-readable status of one lab."""
    extra = [] if lab["complete"] else ["INCOMPLETE: run lab down"]
    if lab["rate"]:
        extra.append(f"rate {lab['rate']}")
    where = f" via {lab['middle']}" if lab["middle"] else ""
    lines = [
        f"lab {lab['name']}: {len(lab['hosts'])} hosts, MTU {lab['mtu']}, "
        f"{lab['topology']}{where}" + "".join(f", {e}" for e in extra)
    ]
    lines.append(f"  {'host':<6}{'namespace':<17}{'interface':<11}{'MAC':<19}{'MTU':>6}  state")
    for h in lab["hosts"]:
        lines.append(
            f"  {h['host']:<6}{h['namespace']:<17}{h['interface']:<11}{h['mac'] or '-':<19}"
            f"{h['mtu'] or '-':>6}  {h['state']}"
            + (f" (shaped to {h['rate']})" if h["rate"] else "")
        )
    relay = lab["relay"]
    if relay is not None:
        lines.append(_format_relay(relay, lab["impairment"] or {}))
    return "\n".join(lines)


def _format_relay(relay: dict[str, Any], imp: dict[str, Any]) -> str:
    c = relay["counters"]
    rx = int(c.get("rx", 0))
    survived = rx - int(c.get("dropped", 0))
    state = "running" if relay["running"] else "NOT RUNNING"
    rate = relay["rate"]
    lines = [
        f"  relay (pid {relay['pid']}, {state}) in {relay['namespace']}: "
        f"loss {imp.get('loss', 0)}, dup {imp.get('dup', 0)}, reorder {imp.get('reorder', 0)}, "
        f"corrupt {imp.get('corrupt', 0)}, seed {imp.get('seed', 1)}",
        f"    frames  rx {rx}  tx {c.get('tx', 0)}  tx errors {c.get('tx_errors', 0)}  "
        f"kernel drops {c.get('kernel_drops', 0)}"
        + (" (the relay was overloaded)" if c.get("kernel_drops") else ""),
        f"    dropped {c.get('dropped', 0)} ({_pct(int(c.get('dropped', 0)), rx)})  "
        f"duplicated {c.get('duplicated', 0)} ({_pct(int(c.get('duplicated', 0)), survived)})  "
        f"reordered {c.get('reordered', 0)} ({_pct(int(c.get('reordered', 0)), survived)})  "
        f"corrupted {c.get('corrupted', 0)} ({_pct(int(c.get('corrupted', 0)), survived)})",
        f"    forwarding {rate.get('fps', 0):.0f} frames/s, {rate.get('gbps', 0):.3f} Gbit/s "
        f"(peak {rate.get('peak_fps', 0):.0f} frames/s, {rate.get('peak_gbps', 0):.3f} Gbit/s)",
    ]
    return "\n".join(lines)
