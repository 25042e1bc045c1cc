"""`l2fast keygen`: write a new LAN key, the secret every node of one LAN shares."""

from __future__ import annotations

import argparse
import os

from l2fast.commands.discover import print_json
from l2fast.errors import L2fastError
from l2fast.node.auth import generate_key_file

DEFAULT_KEY_FILE = "/etc/l2fast/key"

EXAMPLES = """\
examples:
  sudo l2fast keygen                      write /etc/l2fast/key (mode 600)
  l2fast keygen -o lan.key --json         {"path": ..., "key_id": ...}

Copy the file to every host of the LAN (scp, keeping mode 600) and start each daemon with
`--key FILE`. Nodes holding the same key seal their frames (HMAC-SHA256) and hear only each
other; `l2fast status` shows the key's id, the same on every host that holds it. An existing
file is never replaced: remove it first to change the LAN's key. Frames are authenticated,
not encrypted (docs/PROTOCOL.md §Authentication).
"""


def run(args: argparse.Namespace) -> int:
    """Write the key and say where it is and what to do with it."""
    path = args.output
    parent = os.path.dirname(path)
    if parent and path == DEFAULT_KEY_FILE:
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise L2fastError(
                f"cannot create {parent}: {exc.strerror}",
                hint="run as root (sudo l2fast keygen), or write elsewhere with -o FILE",
            ) from None
    key = generate_key_file(path)
    if args.json:
        print_json({"path": os.path.abspath(path), "key_id": key.key_id})
    else:
        print(f"wrote LAN key {key.key_id} to {path} (mode 600)")
        # A root daemon refuses a key file another user owns (that user could replace it).
        own = "" if os.geteuid() == 0 else f"sudo chown root {path}; "
        print(f"next: copy it to every host, then: {own}sudo l2fast daemon --key {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast keygen`."""
    parser = sub.add_parser(
        "keygen",
        help="write a new LAN key for `l2fast daemon --key` (authenticated frames)",
        description="Write a new random 32-byte LAN key, as 64 hex digits, to a file only its "
        "owner can read.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=DEFAULT_KEY_FILE,
        help=f"where to write it (default: {DEFAULT_KEY_FILE}); never over an existing file",
    )
    parser.add_argument("--json", action="store_true", help="print the path and key id as JSON")
    parser.set_defaults(handler=run)
