"""The `l2fast` command line: one argparse sub-command per module, each registered here.

A command module exposes `register(subparsers)`, which adds its parser and sets
`handler=<function(args) -> int>` with `set_defaults`. This module owns only the dispatch and the
rule that users see one clear line (and a hint), never a traceback (STYLE.md §12).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from l2fast import __version__
from l2fast.errors import L2fastError

#: Exit status for a bug in l2fast itself (sysexits.h EX_SOFTWARE; 77 is EX_NOPERM, already used
#: for missing privileges).
EX_SOFTWARE = 70

# Order is the order shown in --help.
COMMAND_MODULES = (
    "l2fast.commands.daemon",
    "l2fast.commands.status",
    "l2fast.commands.discover",
    "l2fast.commands.chat",
    "l2fast.commands.ui",
    "l2fast.commands.ping",
    "l2fast.commands.send",
    "l2fast.commands.bench",
    "l2fast.commands.inbox",
    "l2fast.commands.keygen",
    "l2fast.commands.demo",
    "l2fast.commands.selftest",
    "l2fast.lab.cli",
)

EPILOG = """\
examples:
  sudo l2fast demo                              l2fast between two lab namespaces, measured
  sudo l2fast daemon -i eth0 --name alice       run a node on eth0 (logs to stderr)
  sudo l2fast keygen                            a LAN key: then daemon --key /etc/l2fast/key
  l2fast discover                               who runs l2fast on this LAN
  l2fast chat bob "hello"                       a message, acknowledged end to end
  l2fast chat                                   interactive chat (/peers, /to, /all, /quit)
  l2fast ui                                     full screen: peers, transfers, offers, chat
  l2fast ping bob -c 5                          round trips over the L2 echo
  l2fast send bob ./photos                      a file or folder, verified (resumes if cut)
  l2fast bench bob -t 10                        throughput to bob, iperf3-style
  l2fast inbox                                  offers waiting here (daemon --accept ask)
  l2fast status                                 interface, peers, sessions, drop counters
  sudo l2fast lab up --name demo --hosts 2      two test hosts in network namespaces
  sudo l2fast selftest                          loopback check of the C core and raw sockets
  l2fast COMMAND --help                         options and examples for one command

exit status: 0 done, 1 failed (the error says why), 2 usage (nothing was done), 70 a bug in
l2fast, 77 not permitted (root, CAP_NET_RAW or the daemon's --group needed), 130 interrupted.
With --json, an error is also one JSON object on stdout: {"error", "hint", "exit_code"}.

docs: docs/PROTOCOL.md (wire format), docs/ARCHITECTURE.md (processes and rings)
"""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, remembering its usage error for `main` (--json: one JSON object on
    stdout for those too). Every command's parser is one (subparsers take their parent's
    class)."""

    #: (message, command) of the last usage error, for `main`.
    last_error: tuple[str, str] | None = None

    def error(self, message: str) -> NoReturn:
        _Parser.last_error = (message, self.prog)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered command."""
    parser = _Parser(
        prog="l2fast",
        description="Chat and fast verified file transfer directly over Ethernet (no IP).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"l2fast {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _debug_anywhere(sub)
    return parser


def _usage_error_as_json(exc: SystemExit, words: list[str]) -> None:
    """A usage error (exit 2) of a command asked for --json also prints the JSON error object
    on stdout, as every other error does: a script reads that rather than an empty output."""
    if exc.code != 2 or _Parser.last_error is None:
        return
    options = words[: words.index("--")] if "--" in words else words
    if not {"--json", "--json-stream"} & set(options):
        return
    message, command = _Parser.last_error
    report = {"error": message, "hint": f"`{command} --help` lists its options", "exit_code": 2}
    print(json.dumps(report, ensure_ascii=True), flush=True)


def _debug_anywhere(sub: argparse._SubParsersAction[Any]) -> None:
    """Let `--debug` follow the command too (`l2fast send ... --debug`, what people type after
    an error): every command parser takes it, unlisted, and leaves it unset unless given."""
    for command in set(sub.choices.values()):
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _debug_anywhere(action)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `l2fast` console script; returns the process exit code."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    _Parser.last_error = None
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:
        _usage_error_as_json(exc, words)
        raise
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    debug = bool(args.debug or os.environ.get("L2FAST_DEBUG"))
    try:
        code: int = handler(args)
        return code
    except L2fastError as exc:
        if debug:
            raise
        print(f"l2fast: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"l2fast: hint: {exc.hint}", file=sys.stderr)
        if (getattr(args, "json", False) or getattr(args, "json_stream", False)) and not (
            exc.reported_as_json
        ):
            # A script that asked for JSON gets JSON on stdout whatever happened, not an empty
            # output to tell from a crash.
            report = {"error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
            print(json.dumps(report, ensure_ascii=True), flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("l2fast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:
        # A bug, not a user error: still one line (the rule above), plus how to see the rest.
        if debug:
            raise
        detail = " ".join(str(exc).split())
        print(
            f"l2fast: internal error: {type(exc).__name__}" + (f": {detail}" if detail else ""),
            file=sys.stderr,
        )
        print(
            "l2fast: hint: this is a bug in l2fast; rerun as `l2fast --debug ...` for the "
            "traceback, and please report it",
            file=sys.stderr,
        )
        return EX_SOFTWARE
