"""`l2fast chat`: send a message to one peer or to all, read the history, or chat interactively."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from l2fast.commands.discover import peers_table, print_json
from l2fast.daemon.client import NodeClient, add_node_arguments, connect
from l2fast.daemon.display import escape_text, format_clock
from l2fast.daemon.service import CHAT_GUARD_S, RESOLVE_WAIT_S, SETTLE_WAIT_S
from l2fast.errors import L2fastError

EXAMPLES = """\
examples:
  sudo l2fast chat h2 "hello"            to the peer named h2; exits 0 once acknowledged
  sudo l2fast chat 02:00:00:00:00:02 hi  to a MAC
  sudo l2fast chat --all "lunch?"        to every peer, with a delivery report per peer
  l2fast chat h2 - < notes.txt           the message from stdin (up to the 1 MiB cap)
  l2fast chat --history --json           messages this node's daemon received
  l2fast chat                            interactive: /peers, /to PEER, /all, /quit
  l2fast chat h2                         interactive, talking to h2

PEER is a MAC or a name from `l2fast discover`. A peer that does not answer makes the command
fail after a bounded time (about 10 s) with the reason. Without a daemon on the interface,
sending runs a node of its own for the command's duration (root or CAP_NET_RAW needed);
--history needs the daemon. Text from peers is shown with control characters escaped.
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
    """The per-peer report of a message sent to all."""
    lines = []
    for r in results:
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

    def say(self, line: str) -> None:
        """Print one line at once (output may be a pipe)."""
        print(line, flush=True)

    def _recipient(self) -> str:
        if self.to_all:
            return "everyone"
        return escape_text(self.target) if self.target else "nobody (use /to PEER or /all)"

    def _send(self, request: dict[str, Any], label: str) -> None:
        request_id = self.client.new_id()
        self._pending[request_id] = (request["op"], label)
        self.client.send({**request, "id": request_id})

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
        else:
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
        if not msg.get("ok"):
            self.say(f"[not delivered to {escape_text(label)}: {msg.get('error')}]")
        elif op == "peers":
            table = peers_table(msg["peers"]) if msg["peers"] else ["no peers known"]
            for row in table:
                self.say(row)
        elif op == "chat_all":
            for line in result_lines(msg["results"]) or ["nobody to deliver to"]:
                self.say(f"[{line}]")
        else:
            self.say(f"[delivered to {escape_text(label)}]")

    def run(self) -> int:
        """Until /quit or end of input (then until every send is answered, bounded)."""
        hello = self.client.request({"op": "watch"}, 10)
        how = "through the daemon" if hello.get("daemon") else "with a node of its own"
        self.say(
            f"[chat on {hello['interface']} as {escape_text(hello['name'])} ({hello['mac']}), "
            f"{how}; to {self._recipient()}]"
        )
        self.say(f"[{INTERACTIVE_HELP}]")
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
        return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch between history, one-shot sends and interactive chat."""
    if args.history:
        if args.all or args.words:
            raise L2fastError("--history takes no recipient or text")
        return run_history(args)
    words: list[str] = list(args.words)
    peer = None if args.all else (words.pop(0) if words else None)
    if words:
        return run_send(args, peer, words)
    with connect(args.interface, local_ok=True, name=args.name) as client:
        try:
            return InteractiveChat(client, peer, args.all).run()
        except KeyboardInterrupt:
            return 0


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {text}")
    return value


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
        "-n", "--limit", type=_limit, help="with --history: only the last N messages"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (history or report)")
    add_node_arguments(parser, one_shot=True)
    parser.set_defaults(handler=run)
