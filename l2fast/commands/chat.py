"""`l2fast chat`: send a message to one peer or to all, read the history, or chat interactively."""

from __future__ import annotations

import argparse
import os
import shlex
import stat
import sys
import time
from typing import Any

from l2fast.commands.argtypes import number
from l2fast.commands.discover import peers_table, print_json
from l2fast.daemon.client import NodeClient, add_node_arguments, connect
from l2fast.daemon.control import CHAT_GUARD_S, RESOLVE_WAIT_S, SETTLE_WAIT_S
from l2fast.daemon.display import escape_text, format_clock, parse_mac, unheard_of
from l2fast.errors import L2fastError, UsageError

EXAMPLES = """\
examples:
  sudo l2fast chat h2 "hello"            to the peer named h2; exits 0 once acknowledged
  sudo l2fast chat 02:00:00:00:00:02 hi  to a MAC
  sudo l2fast chat --all "lunch?"        to every peer, with a delivery report per peer
                                         (with --all every argument is the message)
  l2fast chat h2 - < notes.txt           the message from stdin (up to the 1 MiB cap)
  l2fast chat --history --json           messages this node's daemon received
  l2fast chat                            interactive: /peers, /to PEER, /all, /quit
  l2fast chat h2                         interactive, talking to h2 (stdin: a terminal or a pipe)

PEER is a MAC or a name from `l2fast discover`. A peer that does not answer makes the command
fail with the reason: after 2 s for a name no node answers to, 5 s for a node that does not
answer, 10 s at most for one that stops answering mid-message. Without a daemon on the interface,
sending runs a node of its own for the command's duration (root or CAP_NET_RAW needed);
--history needs the daemon. Text from peers is shown with control characters escaped.
Interactive chat exits 1 when a message it sent was not delivered (lines piped in from a
script), else 0.
"""

#: How long one send may take in all: finding the peer, the handshake, the engine's give-up,
#: and the service's guard.
SEND_TIMEOUT_S = CHAT_GUARD_S + RESOLVE_WAIT_S + SETTLE_WAIT_S + 10

INTERACTIVE_HELP = (
    "type a message and Enter to send it; /to PEER picks the recipient, /all sends to every "
    "peer, /peers lists them, /quit (or Ctrl-D) leaves"
)


def _message_text(words: list[str]) -> str:
    if words == ["-"]:
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise L2fastError("the message on stdin is not UTF-8 text") from None
    else:
        text = " ".join(words)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise L2fastError("the message is not valid UTF-8 text") from None
    if not text:
        raise L2fastError("the message is empty")
    return text


def entry_line(entry: dict[str, Any], *, with_date: bool = False) -> str:
    """One received message as a line: time, sender, text (all escaped)."""
    when = entry["time"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if with_date else None
    name = escape_text(entry["name"]) or "?"
    to_all = " (to all)" if entry.get("to_all") else ""
    return (
        f"[{stamp or format_clock(when)}] {name} ({entry['mac']}){to_all}: "
        f"{escape_text(entry['text'])}"
    )


def result_lines(results: list[dict[str, Any]]) -> list[str]:
    """The per-peer report of a message sent to all, by name (the order the answers came
    in would change from one run to the next), failures last, where they are seen."""
    lines = []
    for r in sorted(results, key=lambda r: (not r["delivered"], r["name"] or "\uffff", r["mac"])):
        who = f"{escape_text(r['name'])} ({r['mac']})" if r["name"] else r["mac"]
        if r["delivered"]:
            lines.append(f"delivered to {who}")
        else:
            lines.append(f"NOT delivered to {who}: {r['error']}")
    return lines


# --- one-shot modes -------------------------------------------------------------------------


def run_history(args: argparse.Namespace) -> int:
    """Print the messages the daemon received."""
    request: dict[str, Any] = {"op": "history"}
    if args.limit is not None:
        request["limit"] = args.limit
    with connect(args.interface, local_ok=False) as client:
        entries = [m["entry"] for m in client.stream(request, 10) if "entry" in m]
    if args.json:
        print_json(entries)
    elif not entries:
        print("no messages received")
    else:
        for entry in entries:
            print(entry_line(entry, with_date=True))
    return 0


def run_send(args: argparse.Namespace, peer: str | None, words: list[str]) -> int:
    """Send one message to `peer` (or to all when None) and report delivery."""
    text = _message_text(words)
    with connect(args.interface, local_ok=True, name=args.name) as client:
        if peer is None and len(words) > 1 and _names_a_peer(client, words[0]):
            # `chat --all h2 hi` would send "h2 hi" to everyone: refuse rather than guess.
            raise UsageError(
                f"with --all every argument is the message, but {escape_text(words[0])!r} "
                "names a peer",
                hint=f"to send to that peer only: l2fast chat {shlex.quote(words[0])} TEXT; to "
                f"send it all to everyone, quote it: l2fast chat --all {shlex.quote(text)}",
            )
        if peer is None:
            reply = client.request({"op": "chat_all", "text": text}, SEND_TIMEOUT_S)
        else:
            reply = client.request({"op": "chat", "peer": peer, "text": text}, SEND_TIMEOUT_S)
    if peer is not None:
        if args.json:
            print_json({"msg_id": reply["msg_id"], "peer": reply["peer"], "delivered": True})
        else:
            print(f"delivered to {escape_text(peer)} ({reply['peer']})")
        return 0
    results: list[dict[str, Any]] = reply["results"]
    if args.json:
        print_json({"msg_id": reply["msg_id"], "results": results})
    else:
        print("\n".join(result_lines(results)))
    return 0 if all(r["delivered"] for r in results) else 1


def _table_request(client: NodeClient) -> dict[str, Any]:
    """The request for the node's neighbour table, to check a name against."""
    if client.via_daemon:
        return {"op": "peers"}
    # A node of our own may know nobody yet: give the peers the time chat_all gives them.
    return {"op": "discover", "timeout": SETTLE_WAIT_S}


def _names_a_peer(client: NodeClient, word: str) -> bool:
    """Whether `word` is a MAC or the name of a peer the node knows."""
    if parse_mac(word) is not None:
        return True
    peers: list[dict[str, Any]] = client.request(_table_request(client), 10)["peers"]
    return any(word in (p["name"], p["mac"]) for p in peers)


# --- interactive ----------------------------------------------------------------------------


class InteractiveChat:
    """Lines from stdin become messages; messages from peers are printed as they arrive."""

    def __init__(self, client: NodeClient, target: str | None, to_all: bool) -> None:
        self.client = client
        self.target = target
        self.to_all = to_all
        self.quitting = False
        self._buffer = b""
        self._pending: dict[int, tuple[str, str]] = {}  # request id -> (op, recipient label)
        # Names and MACs of the peers in the node's table when last read (run() reads it first);
        # None: not read, so /to cannot check a name.
        self.known: set[str] | None = None
        #: Messages that were not delivered: a script piping lines in learns it from the exit
        #: status (1), as from `l2fast chat PEER TEXT`.
        self.undelivered = 0

    def say(self, line: str) -> None:
        """Print one line at once (output may be a pipe)."""
        print(line, flush=True)

    def _recipient(self) -> str:
        if self.to_all:
            return "everyone"
        return escape_text(self.target) if self.target else "nobody (use /to PEER or /all)"

    def _send(self, request: dict[str, Any], label: str, kind: str | None = None) -> None:
        request_id = self.client.new_id()
        self._pending[request_id] = (kind or request["op"], label)
        self.client.send({**request, "id": request_id})

    def learn(self, peers: list[dict[str, Any]]) -> None:
        """Remember the names and MACs of a neighbour table the node sent."""
        self.known = {p["name"] for p in peers} | {p["mac"] for p in peers}

    def check_target(self, peer: str) -> None:
        """Say at once when `peer` is no MAC and no known name (a send to it would fail).

        An unknown name is checked again against a fresh table before the warning: the node
        may have met the peer since the table was read.
        """
        if self.known is None or parse_mac(peer) is not None or peer in self.known:
            return
        self._send(_table_request(self.client), peer, kind="lookup")

    def on_line(self, line: str) -> None:
        """One line typed by the user."""
        line = line.rstrip("\r")
        if not line:
            return
        if line.startswith("/") and not line.startswith("//"):
            self._command(line)
            return
        text = line[1:] if line.startswith("//") else line
        if self.to_all:
            self._send({"op": "chat_all", "text": text}, "everyone")
        elif self.target:
            self._send({"op": "chat", "peer": self.target, "text": text}, self.target)
        else:
            self.say("[no recipient: /to PEER or /all first]")

    def _command(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "/quit":
            self.quitting = True
        elif word == "/peers":
            self._send({"op": "peers"}, "")
        elif word == "/all":
            self.to_all, self.target = True, None
            self.say("[sending to everyone]")
        elif word == "/to" and rest:
            self.to_all, self.target = False, rest
            self.say(f"[sending to {escape_text(rest)}]")
            self.check_target(rest)
        elif word == "/to":
            self.say("[/to needs a peer: /to NAME or /to MAC]")
        elif word in ("/help", "/?"):
            self.say(f"[{INTERACTIVE_HELP}]")
        else:
            self.say(
                f"[unknown command {escape_text(word)}; to send a line that starts with /, "
                "begin it with //]"
            )
            self.say(f"[{INTERACTIVE_HELP}]")

    def on_stdin(self) -> None:
        """stdin is readable: take whole lines; end of input means quit."""
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            self.quitting = True
            self.client.remove_reader(sys.stdin.fileno())
            if self._buffer:
                self.on_line(self._buffer.decode("utf-8", errors="replace"))
                self._buffer = b""
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self.on_line(raw.decode("utf-8", errors="replace"))

    def on_message(self, msg: dict[str, Any]) -> None:
        """A message from the node: an incoming chat, or the reply to one of our requests."""
        if msg.get("event") == "chat":
            self.say(entry_line(msg))
            return
        pending = self._pending.pop(msg.get("id", -1), None)
        if pending is None:
            return
        op, label = pending
        if op == "lookup":
            self._on_lookup(msg, label)
        elif not msg.get("ok"):
            if op in ("chat", "chat_all"):
                self.undelivered += 1
            self.say(f"[not delivered to {escape_text(label)}: {msg.get('error')}]")
        elif op == "peers":
            self.learn(msg["peers"])
            table = peers_table(msg["peers"]) if msg["peers"] else ["no peers known"]
            for row in table:
                self.say(row)
            unheard = unheard_of(msg)
            if unheard:  # there, but refused by the LAN key check
                self.say(f"[{unheard}]")
        elif op == "chat_all":
            if not all(r["delivered"] for r in msg["results"]):
                self.undelivered += 1
            for line in result_lines(msg["results"]) or ["nobody to deliver to"]:
                self.say(f"[{line}]")
        else:
            self.say(f"[delivered to {escape_text(label)}]")

    def _on_lookup(self, msg: dict[str, Any], peer: str) -> None:
        if not msg.get("ok"):
            return  # only a check: the send itself will say what is wrong
        self.learn(msg["peers"])
        if self.known is not None and peer not in self.known and self.target == peer:
            # Kept as the recipient: a send asks the LAN again, and a peer that has just
            # started may still answer.
            self.say(
                f"[no known peer is named {escape_text(peer)} (/peers lists them); messages "
                f"to it fail unless it answers within {RESOLVE_WAIT_S:g} s]"
            )

    def run(self) -> int:
        """Until /quit or end of input (then until every send is answered, bounded)."""
        hello = self.client.request({"op": "watch"}, 10)
        how = "through the daemon" if hello.get("daemon") else "with a node of its own"
        self.say(
            f"[chat on {hello['interface']} as {escape_text(hello['name'])} ({hello['mac']}), "
            f"{how}; to {self._recipient()}]"
        )
        self.say(f"[{INTERACTIVE_HELP}]")
        self.learn(self.client.request({"op": "peers"}, 10)["peers"])
        if self.target:
            self.check_target(self.target)
        self.client.add_reader(sys.stdin.fileno(), self.on_stdin)
        give_up: float | None = None
        while not self.quitting or self._pending:
            if self.quitting and give_up is None:
                give_up = time.monotonic() + SEND_TIMEOUT_S
            if give_up is not None and time.monotonic() > give_up:
                self.say(f"[gave up waiting for {len(self._pending)} replies]")
                return 1
            for msg in self.client.poll(0.5):
                self.on_message(msg)
        return 1 if self.undelivered else 0


def run(args: argparse.Namespace) -> int:
    """Dispatch between history, one-shot sends and interactive chat."""
    if args.history:
        if args.all or args.words:
            raise UsageError("--history takes no recipient or text")
        return run_history(args)
    if args.limit is not None:
        raise UsageError("-n/--limit applies only to --history", hint="l2fast chat --history -n N")
    words: list[str] = list(args.words)
    peer = None if args.all else (words.pop(0) if words else None)
    if peer == "-" and not words:
        raise UsageError(
            "- (the message from stdin) needs a recipient before it",
            hint="l2fast chat PEER - < FILE, or l2fast chat --all - < FILE",
        )
    if words:
        return run_send(args, peer, words)
    if args.json:
        raise UsageError(
            "--json applies to --history and to a message given on the command line, "
            "not to interactive chat"
        )
    _check_interactive_stdin(peer, args.all)
    with connect(args.interface, local_ok=True, name=args.name, chats=True) as client:
        try:
            return InteractiveChat(client, peer, args.all).run()
        except KeyboardInterrupt:
            return 0


def _check_interactive_stdin(peer: str | None, to_all: bool) -> None:
    """Interactive chat watches stdin beside the node (epoll): it needs a terminal, a pipe or a
    socket. epoll refuses a regular file or /dev/null (EPERM), so say what to do instead."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError):  # stdin closed (None) or not a real file
        fd, mode = -1, 0
    if (fd >= 0 and os.isatty(fd)) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return
    to = "--all" if to_all else (shlex.quote(peer) if peer else "PEER")
    if stat.S_ISREG(mode):
        raise UsageError(
            "no message given, and standard input is a file",
            hint=f"to send a file's text, use l2fast chat {to} - < FILE",
        )
    raise UsageError(
        "no message given, and standard input is not a terminal or a pipe (interactive chat "
        "reads from one)",
        hint=f"give the message as arguments (l2fast chat {to} TEXT) or from a file "
        f"(l2fast chat {to} - < FILE)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast chat`."""
    parser = sub.add_parser(
        "chat",
        help="send chat messages (to one peer or all), read the history, or chat live",
        description="Send a chat message reliably to a peer or to every peer, list received "
        "messages, or chat interactively.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "words",
        nargs="*",
        metavar="[PEER] TEXT",
        help="recipient (MAC or name; not with --all) and the message; - reads it from stdin",
    )
    parser.add_argument("--all", action="store_true", help="send to every known peer")
    parser.add_argument(
        "--history", action="store_true", help="list the messages the daemon received"
    )
    parser.add_argument(
        "-n", "--limit", type=number(int, 1, 1000), help="with --history: only the last N messages"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (history or report)")
    add_node_arguments(parser, one_shot=True)
    parser.set_defaults(handler=run)
