"""`l2fast daemon`: run one node on one interface until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os

from l2fast.daemon.options import ACCEPT_POLICIES, DEFAULT_KEEP_PARTS_DAYS, DaemonOptions

EXAMPLES = """\
examples:
  sudo l2fast daemon                          the only interface that is up, named after the host
  sudo l2fast daemon -i eth0 --name alice     a chosen interface and name
  sudo l2fast daemon -i eth0 --group l2fast   members of group l2fast may use it too
  sudo l2fast daemon --accept all --no-present    take every file; confirm none already here
  sudo l2fast daemon --keep-parts 1           part files not resumed within a day are deleted
  sudo l2fast daemon --key /etc/l2fast/key    only nodes with this LAN key are heard

The daemon logs to stderr and stops cleanly on Ctrl-C, SIGTERM or SIGHUP. Other commands (status,
peers, discover, chat, ping) talk to it over the control socket @l2fast/IFACE, which only
root, the daemon's user and --group members may use. Only one daemon runs per interface and
network namespace.

Files sent with `l2fast send` land in --recv-dir (default /var/lib/l2fast/received, created
on the first file) under the --accept policy: all accepts, none refuses, ask keeps each offer
pending until `l2fast accept ID` or `l2fast reject ID` (`l2fast inbox` lists them). A transfer
that stops keeps its part file there, so that sending the same file again resumes; part files
nobody resumes are deleted after --keep-parts days (checked at start and hourly).

With --key, every control frame is sealed (HMAC-SHA256) and frames from nodes without the
key are dropped and counted (`l2fast status`); such nodes are named in the log (once each) and
by discover, peers and status, as "not heard". File contents are checked end to end against
the digest in a sealed FILE_END. Frames are authenticated, not encrypted: anyone on the LAN can
still read them. Commands that run their own node (no daemon) read the key file named by
L2FAST_KEY_FILE, which is also this command's default for --key.
"""


def run(args: argparse.Namespace) -> int:
    """Start the daemon with the parsed options."""
    # Imported here: the node and its services are most of l2fast's start-up time, and only a
    # running daemon needs them (not `l2fast --help`; tests/unit/test_cli_startup.py).
    from l2fast.daemon.daemon import run_daemon

    options = DaemonOptions(
        interface=args.interface,
        name=args.name,
        recv_dir=args.recv_dir,
        accept=args.accept,
        group=args.group,
        present=args.present,
        keep_parts_days=args.keep_parts,
        key_file=args.key,
    )
    return run_daemon(options)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast daemon`."""
    parser = sub.add_parser(
        "daemon",
        help="run a node on one interface (discovery, chat, ping) for the other commands",
        description="Run one l2fast node on one network interface: it answers discovery, "
        "keeps the neighbour table and chat history, and serves the other commands over a "
        "Unix socket.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-i",
        "--interface",
        metavar="IFACE",
        help="network interface (default: the only non-loopback interface that is up)",
    )
    parser.add_argument("--name", help="name announced to peers (default: the host name)")
    parser.add_argument(
        "--recv-dir",
        metavar="DIR",
        help="where received files are placed (default: /var/lib/l2fast/received)",
    )
    parser.add_argument(
        "--accept",
        choices=ACCEPT_POLICIES,
        default="ask",
        help="which file offers to accept: all, ask (l2fast inbox / accept / reject) or none "
        "(default: ask)",
    )
    parser.add_argument(
        "--group",
        metavar="GROUP",
        help="also let members of GROUP use the control socket (default: root and this user)",
    )
    parser.add_argument(
        "--no-present",
        dest="present",
        action="store_false",
        help="receive every offered file even when the same file is already here, so that a "
        "sender cannot test guesses of a file's content in --recv-dir (default: a file already "
        "here, same name, size and content, is reported present and not sent again)",
    )
    parser.add_argument(
        "--keep-parts",
        metavar="DAYS",
        type=float,
        default=DEFAULT_KEEP_PARTS_DAYS,
        help="delete part files of interrupted transfers that nobody resumed (sent again) for "
        f"DAYS days; 0 keeps them (default: {DEFAULT_KEEP_PARTS_DAYS:g})",
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        default=os.environ.get("L2FAST_KEY_FILE") or None,
        help="LAN key file written by `l2fast keygen` (mode 600): frames are sealed with it, "
        "and only nodes holding the same key are heard (default: $L2FAST_KEY_FILE if set, "
        "else no key: nothing is authenticated)",
    )
    parser.set_defaults(handler=run)
