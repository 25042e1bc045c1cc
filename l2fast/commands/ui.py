"""`l2fast ui`: peers, transfers, offers and chat on one full-screen terminal interface."""

from __future__ import annotations

import argparse
import sys

from l2fast.daemon.client import add_node_arguments, connect
from l2fast.errors import L2fastError
from l2fast.tui.model import HELP, UiModel

EXAMPLES = (
    """\
examples:
  l2fast ui                    the daemon on the default interface, full screen
  l2fast ui -i eth0
  sudo l2fast ui --name alice  no daemon here: the interface runs a node of its own
                               (no offers to answer then: a node that receives files is a daemon)

keys:
"""
    + "".join(f"  {line}\n" for line in HELP)
    + """
Peers, transfers in flight and offers waiting for you are refreshed twice a second; messages
appear as they arrive. Files sent with /send go through `l2fast send` (verified, resumable),
and its progress is shown under TRANSFERS. Names and texts from the LAN are shown escaped.
For scripts, use the commands themselves (`l2fast status --json`, `chat`, `send --json`).
"""
)


def run(args: argparse.Namespace) -> int:
    """Open the interface on a terminal; exit 0 when the user leaves."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise L2fastError(
            "l2fast ui needs a terminal on stdin and stdout",
            hint="for scripts use `l2fast chat`, `l2fast send --json` or `l2fast status --json`",
        )
    # Imported here, not with the module: every command's parser loads this module, and a
    # Python built without curses must still run the others.
    import curses

    hint = "set TERM to your terminal's type (for example TERM=xterm-256color)"
    try:
        curses.setupterm()
    except curses.error as exc:
        raise L2fastError(
            f"this terminal cannot run a full-screen interface: {exc}", hint=hint
        ) from None
    if curses.tigetstr("cup") is None:  # TERM=dumb and the like: no cursor addressing
        raise L2fastError("this terminal cannot move its cursor (TERM has no 'cup')", hint=hint)
    from l2fast.tui.screen import run_screen  # curses' window code only once it is needed

    with connect(args.interface, local_ok=True, name=args.name, chats=True) as client:
        model = UiModel(new_id=client.new_id)
        model.on_hello(client.request({"op": "watch"}, 10))
        return run_screen(client, model)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast ui`."""
    parser = sub.add_parser(
        "ui",
        help="full-screen terminal interface: peers, transfers, offers and chat",
        description="A full-screen terminal interface to the node on an interface: who is on "
        "the LAN, transfers in flight, offers waiting for you, and chat with one peer or "
        "everyone; files are sent from it with /send.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_arguments(parser, one_shot=True)
    parser.set_defaults(handler=run)
