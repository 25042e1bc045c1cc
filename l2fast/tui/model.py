"""What `l2fast ui` shows and does, without a terminal or a socket (sans-IO).

In: `on_hello` (the node's `watch` reply), `on_message` (replies and chat events from the
node), `on_key` (one key press, named as curses names them), `on_send_event` / `on_send_exit`
(an `l2fast send --json` process it asked for), and `tick` (time passing).
Out: `take_requests` (JSON requests for the node, ids already set), `take_launches` (send
commands to start), `render(width, height)` (the screen as lines) and `quitting`.

Everything that came from the wire (names, messages, paths) is shown through `escape_text`,
as every other command shows it (PROTOCOL.md §Field rules), and every line is cut to the
terminal's width in cells, wide characters counted twice.
"""

from __future__ import annotations

import os
import sys
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from l2fast.commands.chat import entry_line, result_lines
from l2fast.daemon.display import (
    counted,
    escape_text,
    format_clock,
    format_rtt_us,
    offers_by_folder,
    parse_mac,
    peer_label,
    unheard_of,
)
from l2fast.progress import format_bytes

__all__ = ["Line", "SendJob", "UiModel", "cells", "fit", "progress_bar", "wrap"]

#: How often peers, transfers and held offers are asked for again.
REFRESH_S = 0.5
#: Messages and notices kept for the log pane.
LOG_LINES = 1000
#: Chat messages read from the daemon's history when the interface starts.
HISTORY_LINES = 50
#: Rows the peers pane may take at most (the log pane keeps the rest).
PEER_ROWS = 8
#: Files a /send says the peer holds, one line each, before one line for the rest.
HELD_LINES = 3
#: Offers listed at most (a folder held for a person offers one per entry).
OFFER_ROWS = 6
#: Characters of one log entry shown (a chat message may hold 1 MiB): the rest is summarised.
LOG_ENTRY_CHARS = 4096

HELP = (
    "Tab / Shift-Tab or Up / Down: pick who you talk to (everyone, or one peer)",
    "PgUp / PgDn: scroll the messages back and forth; End: the newest",
    "Enter: send the typed line as a message to them; Left / Right, Home / Ctrl-A, Ctrl-E, "
    "Backspace, Delete and Ctrl-U edit it",
    "/send PATH: send a file or folder to the picked peer (verified; progress shown above)",
    "/accept ID, /reject ID: answer an offer waiting for you (daemon run with --accept ask)",
    "/to NAME|MAC, /all: pick by name or MAC, or everyone",
    "/discover: ask the LAN who is there now; /help: this; /quit or Ctrl-C: leave",
    "A line that starts with / is sent as a message when it starts with //.",
)

#: Styles a line may have; the screen maps them to terminal attributes.
TITLE, NORMAL, DIM, SELECTED, ERROR, INPUT = "title", "normal", "dim", "selected", "error", "input"


@dataclass(frozen=True)
class Line:
    """One screen row: its text (already cut to width) and its style."""

    text: str
    style: str = NORMAL


def _cells(ch: str) -> int:
    # Nonspacing and enclosing marks take no cell; spacing marks (Mc, such as the spacing
    # viramas) take one, as the C library's wcwidth, which the terminal follows, says.
    if unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(text: str) -> int:
    """Terminal cells `text` takes (wide characters two, combining marks none)."""
    return len(text) if text.isascii() else sum(_cells(ch) for ch in text)


def fit(text: str, width: int) -> str:
    """`text` cut to at most `width` terminal cells (wide characters take two)."""
    if width <= 0:
        return ""
    if text.isascii():
        return text[:width]
    out = []
    used = 0
    for ch in text:
        cells = _cells(ch)
        if used + cells > width:
            break
        out.append(ch)
        used += cells
    return "".join(out)


#: Characters of one log line at most, escapes included (a guard for any text shown).
_LOG_LINE_CAP = 8 * LOG_ENTRY_CHARS


def _clipped_entry_line(entry: dict[str, Any]) -> str:
    """A chat entry's line, its text cut to LOG_ENTRY_CHARS *before* escaping: escaping a
    1 MiB message of control characters took ~0.7 s, and a peer could send many."""
    text = str(entry.get("text", ""))
    more = len(text) - LOG_ENTRY_CHARS
    if more <= 0:
        return entry_line(entry)
    line = entry_line({**entry, "text": text[:LOG_ENTRY_CHARS]})
    return f"{line}... ({more} more characters: `l2fast chat --history`)"


def wrap(text: str, width: int) -> list[str]:
    """`text` as rows of at most `width` cells (a message is never cut off, only wrapped)."""
    if width <= 0:
        return []
    rows = []
    while True:
        row = fit(text, width) or text[:1]  # a wide character in a 1-cell terminal: overflow
        rows.append(row)
        text = text[len(row) :]
        if not text:
            return rows


def progress_bar(done: int, total: int, width: int) -> str:
    """`[#####-----]` filled in proportion, `width` cells in all (at least the brackets)."""
    inner = max(0, width - 2)
    filled = 0 if total <= 0 else min(inner, inner * max(done, 0) // total)
    return "[" + "#" * filled + "-" * (inner - filled) + "]"


@dataclass
class SendJob:
    """One `l2fast send` the interface started, and what it has said so far."""

    number: int
    path: str
    peer: str  #: MAC
    label: str  #: how the peer is shown
    bytes_done: int = 0
    total: int = 0
    gbit_per_s: float = 0.0
    finished: bool = False
    #: The receiver's offer ids this send was told to wait on (a folder's entries share one).
    held_ids: set[object] = field(default_factory=set)


class UiModel:
    """The interface's state; see the module docstring for what goes in and out."""

    def __init__(
        self,
        *,
        new_id: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        python: str = sys.executable,
    ) -> None:
        self._new_id = new_id
        self._clock = clock
        self._wall = wall
        self._python = python
        self.me: dict[str, Any] = {}
        self.interface = ""
        self.peers: list[dict[str, Any]] = []
        self.transfers: list[dict[str, Any]] = []
        self.offers: list[dict[str, Any]] = []
        self.sends: list[SendJob] = []
        self.log: deque[Line] = deque(maxlen=LOG_LINES)
        #: Who a typed line goes to: None for everyone, else a peer's MAC (`aa:bb:..`).
        self.target: str | None = None
        self.input = ""
        self.cursor = 0  #: where in `input` the next character goes
        self.cursor_x = 0  #: the terminal column of the cursor on the input line, when drawn
        self.notice = Line("")
        self.quitting = False
        self._requests: list[dict[str, Any]] = []
        self._launches: list[tuple[SendJob, list[str]]] = []
        self._pending: dict[int, tuple[str, str]] = {}  # request id -> (kind, label)
        self._refresh_due = 0.0
        self._refreshing: set[str] = set()  # kinds asked for and not answered yet
        self._send_numbers = 0
        #: Offers cannot be listed (a node without a daemon has no inbox): stop asking.
        self._no_inbox = False
        #: The `n` of the newest received file already told (None: status not read yet).
        self._received_seen: int | None = None
        #: Per transfer (session, direction): the last (time, bytes_done) and the rate seen.
        self._rates: dict[tuple[str, str], tuple[float, int, float]] = {}
        #: Rows of the message log scrolled back over (0: the newest are shown).
        self.scroll = 0
        self._page = 10  # rows one PgUp moves, from the last frame drawn
        self._width = 80  # of the last frame drawn
        self._wrap_cache: dict[tuple[Line, int], list[Line]] = {}

    # --- in ------------------------------------------------------------------------------------

    def on_hello(self, hello: dict[str, Any]) -> None:
        """The node's reply to `watch`: who we are; ask for the history and the tables."""
        self.me = hello
        self.interface = str(hello.get("interface", ""))
        how = "through the daemon" if hello.get("daemon") else "with a node of its own"
        self._say(f"l2fast ui on {self.interface} {how}; /help lists the keys", DIM)
        if hello.get("daemon"):
            self._request({"op": "history", "limit": HISTORY_LINES}, "history")
        else:
            self._no_inbox = True
        self.tick()

    def tick(self) -> None:
        """Ask for fresh peers, transfers and offers when they are due (and not still asked)."""
        now = self._clock()
        if now < self._refresh_due:
            return
        self._refresh_due = now + REFRESH_S
        for kind, request in (("peers", {"op": "peers"}), ("status", {"op": "status"})):
            if kind not in self._refreshing:
                self._refreshing.add(kind)
                self._request(request, kind)
        if not self._no_inbox and "inbox" not in self._refreshing:
            self._refreshing.add("inbox")
            self._request({"op": "inbox"}, "inbox")

    def on_message(self, msg: dict[str, Any]) -> None:
        """One message from the node: a chat event, or a reply to one of our requests."""
        if msg.get("event") == "chat":
            self._say(_clipped_entry_line(msg))
            return
        pending = self._pending.get(msg.get("id", -1))
        if pending is None:
            return
        kind, label = pending
        if not (msg.get("event") == "entry" and kind == "history"):
            self._pending.pop(msg["id"], None)
        self._refreshing.discard(kind)
        if not msg.get("ok"):
            self._refused(kind, label, msg)
        elif kind == "history":
            if "entry" in msg:
                self._say(_clipped_entry_line(msg["entry"]), DIM)
        elif kind == "peers":
            self.peers = sorted(msg["peers"], key=lambda p: (p["name"], p["mac"]))
        elif kind == "status":
            self._on_status(msg["status"])
        elif kind == "inbox":
            self.offers = list(msg["offers"])
        elif kind == "discover":
            self.peers = sorted(msg["peers"], key=lambda p: (p["name"], p["mac"]))
            self._note(f"{counted(len(self.peers), 'peer')} answered")
            unheard = unheard_of(msg)
            if unheard:  # there, but refused by the LAN key check
                self._say(f"[{unheard}]", ERROR)
        elif kind == "chat":
            self._say(f"[delivered to {label}]", DIM)
        elif kind == "chat_all":
            lines = result_lines(msg["results"]) or ["nobody to deliver to"]
            for line in lines:
                self._say(f"[{line}]", DIM if line.startswith("delivered") else ERROR)
        elif kind in ("accept", "reject"):
            covered = msg.get("covered") or 0
            also = f" and the {covered} offers waiting under it" if covered else ""
            verb = "accepted" if msg.get("accepted") else "rejected"
            self._say(f"[{verb} {escape_text(msg.get('path', '?'))}{also}]", DIM)
            self._refresh_due = 0.0  # the inbox changed: show it now

    def _on_status(self, status: dict[str, Any]) -> None:
        now = self._clock()
        self.transfers = list(status.get("transfers", []))
        rates = {}
        for t in self.transfers:
            key = (str(t.get("session")), str(t.get("direction")))
            done = int(t.get("bytes_done", 0))
            before = self._rates.get(key)
            rate = 0.0
            if before is not None and now > before[0]:
                sample = max(0, done - before[1]) * 8 / (now - before[0]) / 1e9
                rate = sample if before[2] == 0.0 else 0.5 * before[2] + 0.5 * sample
            rates[key] = (now, done, rate)
            t["gbit_per_s"] = rate
        self._rates = rates
        if "received" in status:  # an older daemon does not number its received files
            self._told_received([e for e in status["received"] if isinstance(e.get("n"), int)])

    def _told_received(self, entries: list[dict[str, Any]]) -> None:
        """Say which files arrived since the last status (not the ones from before we started)."""
        newest = max((e["n"] for e in entries), default=0)
        if self._received_seen is None:
            self._received_seen = newest
            return
        new = [e for e in entries if e["n"] > self._received_seen]
        if not new:
            return
        # `status` lists the newest few only: how many arrived is told by the numbers.
        arrived = newest - self._received_seen
        self._received_seen = newest
        if arrived > 3 or arrived > len(new):
            last = new[-1]
            peers = {str(e.get("peer")) for e in new}
            who = self._label_of(str(last.get("peer"))) if len(peers) == 1 else "peers"
            name = escape_text(str(last.get("final_name", "?")))
            self._say(f"[received {counted(arrived, 'file')} from {who}, the last {name}]")
            return
        for e in new:
            who = self._label_of(str(e.get("peer")))
            path = escape_text(str(e.get("path", "?")))
            if e.get("present"):
                self._say(f"[{path} from {who} was already here]", DIM)
            else:
                final = escape_text(str(e.get("final_name", "?")))
                size = format_bytes(int(e.get("bytes", 0)))
                self._say(f"[received {path} from {who} as {final} ({size}, verified)]")

    def _refused(self, kind: str, label: str, msg: dict[str, Any]) -> None:
        error = escape_text(str(msg.get("error", "refused")))
        hint = msg.get("hint")
        text = error + (f" ({escape_text(str(hint))})" if hint else "")
        if kind == "inbox":
            # A node of the command's own, or an old daemon: no offers to list; say it once.
            self._no_inbox = True
            self._note(f"offers cannot be listed here: {text}", ERROR)
        elif kind in ("peers", "status", "history"):
            self._note(f"{kind}: {text}", ERROR)
        elif kind in ("chat", "chat_all"):
            self._say(f"[NOT delivered to {label}: {text}]", ERROR)
        else:
            self._say(f"[{kind} {label}: {text}]" if label else f"[{kind}: {text}]", ERROR)

    def on_key(self, key: str) -> None:
        """One key press: a printable character, or a curses key name (`KEY_UP`, `^C`...)."""
        at = self.cursor
        if key in ("\n", "\r", "KEY_ENTER", "^J", "^M"):
            line, self.input, self.cursor = self.input, "", 0
            self._submit(line)
        elif key in ("KEY_BACKSPACE", "\x7f", "\b", "^?", "^H"):
            if at > 0:
                self.input, self.cursor = self.input[: at - 1] + self.input[at:], at - 1
        elif key in ("KEY_DC", "^D") and self.input:
            self.input = self.input[:at] + self.input[at + 1 :]
        elif key == "KEY_LEFT":
            self.cursor = max(0, at - 1)
        elif key == "KEY_RIGHT":
            self.cursor = min(len(self.input), at + 1)
        elif key in ("KEY_HOME", "^A"):
            self.cursor = 0
        elif key == "^E":
            self.cursor = len(self.input)
        elif key in ("\t", "^I") and self.input:
            # A Tab in a line being typed (or pasted) is part of the message: it must not
            # send the rest of the line to someone else.
            self._insert("\t")
        elif key in ("\t", "^I", "KEY_DOWN", "KEY_BTAB", "KEY_UP"):
            if self.input:
                self._note("finish or clear the line (Ctrl-U) before picking someone else")
            else:
                self._move_target(1 if key in ("\t", "^I", "KEY_DOWN") else -1)
        elif key in ("^C", "^D"):  # Ctrl-D on an empty line, as a shell reads it
            self.quitting = True
        elif key == "^U":
            self.input, self.cursor = "", 0
        elif key == "KEY_PPAGE":
            self.scroll += self._page
        elif key == "KEY_NPAGE":
            self.scroll = max(0, self.scroll - self._page)
        elif key == "KEY_END":
            self.scroll = 0
        elif len(key) == 1 and key.isprintable():
            self._insert(key)
        # Anything else (function keys, a resize) changes nothing here.

    def _insert(self, text: str) -> None:
        at = self.cursor
        self.input = self.input[:at] + text + self.input[at:]
        self.cursor = at + len(text)

    def on_send_event(self, job: SendJob, event: dict[str, Any]) -> None:
        """One NDJSON line of a send process this interface started."""
        if event.get("event") == "progress":
            job.bytes_done = int(event.get("bytes", 0))
            job.total = int(event.get("total", 0))
            job.gbit_per_s = float(event.get("gbit_per_s", 0.0))
        elif event.get("event") == "held":
            # One line per offer id to answer, for a few (the entries of a folder that waits
            # all name the folder's id: one line), then the rest once (as `l2fast send` does).
            pending_id = event.get("pending_id")
            if pending_id in job.held_ids:
                return
            job.held_ids.add(pending_id)
            if len(job.held_ids) <= HELD_LINES:
                self._say(
                    f"[{job.label} holds {escape_text(str(event.get('path', job.path)))} until "
                    f"someone there accepts it (offer {event.get('pending_id', '?')} there)]",
                    DIM,
                )
            elif len(job.held_ids) == HELD_LINES + 1:
                self._say(f"[{job.label} holds more of /send #{job.number} for a person: "
                          "`l2fast inbox` there lists them]", DIM)  # fmt: skip
        elif event.get("event") == "done":
            job.finished = True
            job.bytes_done = int(event.get("bytes", job.bytes_done))
            path = escape_text(job.path)
            skipped = event.get("skipped") or []
            # Those left out for a problem of their own (`lost`) first, and as an error: they
            # were meant to arrive (the command exits 1 for them).
            lost = [s for s in skipped if s.get("lost")]
            shown = lost or skipped
            if shown:
                what = escape_text(str(shown[0].get("path")))
                why = escape_text(str(shown[0].get("reason")))
                n = counted(len(shown), "entry", "entries")
                verb = "could not send" if lost else "left out"
                self._say(
                    f"[/send #{job.number} {verb} {n}, such as {what} ({why})]",
                    ERROR if lost else DIM,
                )
            if event.get("verified"):
                self._say(
                    f"[sent {path} to {job.label}: {format_bytes(job.bytes_done)} in "
                    f"{float(event.get('seconds', 0.0)):.2f} s, "
                    f"{float(event.get('gbit_per_s', 0.0)):.2f} Gbit/s, verified]"
                )
            else:
                error = escape_text(str(event.get("error", "the transfer failed")))
                self._say(f"[sending {path} to {job.label} FAILED: {error}]", ERROR)

    def on_send_exit(self, job: SendJob, status: int, stderr: str) -> None:
        """The send process ended with `status`; `stderr` is what it printed there."""
        if job in self.sends:
            self.sends.remove(job)
        if job.finished:
            return
        job.finished = True
        lines = [escape_text(s) for s in stderr.strip().splitlines() if s.strip()]
        why = " ".join(lines[-2:]) if lines else f"it exited with status {status}"
        self._say(f"[sending {escape_text(job.path)} to {job.label} FAILED: {why}]", ERROR)

    # --- out -----------------------------------------------------------------------------------

    def take_requests(self) -> list[dict[str, Any]]:
        """Requests to send to the node, in order (their ids are set)."""
        out, self._requests = self._requests, []
        return out

    def take_launches(self) -> list[tuple[SendJob, list[str]]]:
        """`l2fast send` commands to start: the job to report to, and its argv."""
        out, self._launches = self._launches, []
        return out

    def target_label(self) -> str:
        """Who a typed line goes to, as shown."""
        if self.target is None:
            return "everyone"
        peer = self._peer(self.target)
        return escape_text(peer["name"]) if peer is not None else self.target

    def render(self, width: int, height: int) -> list[Line]:
        """The screen: at most `height` lines of at most `width` cells."""
        if width < 20 or height < 6:
            return [Line(fit("l2fast ui: make the terminal larger", width), ERROR)][:height]
        top: list[Line] = [self._title(width)]
        top += self._peer_lines(width)
        top += self._transfer_lines(width)
        top += self._offer_lines(width)
        bottom = [
            Line(fit(f" {self.notice.text}", width), self.notice.style),
            self._input_line(width),
        ]
        room = height - len(bottom)
        top = top[: max(1, room - 2)]
        log_rows = max(0, room - len(top) - 1)
        self._page = max(1, log_rows - 1)
        self._width = width
        # The newest rows, wrapped, as many as fit plus those scrolled back over.
        wanted = log_rows + self.scroll
        rows: list[Line] = []
        for line in reversed(self.log):
            if len(rows) >= wanted:
                break
            rows[:0] = self._wrapped(line, width)
        # Scrolled back past the oldest row kept: stop at the top.
        self.scroll = max(0, min(self.scroll, len(rows) - log_rows))
        end = len(rows) - self.scroll
        shown = rows[max(0, end - log_rows) : end]
        title = "MESSAGES"
        if self.scroll:
            title += f"  (scrolled back {self.scroll} rows: PgDn or End for the newest)"
        middle = [Line(fit(title, width), TITLE)]
        middle += shown + [Line("")] * max(0, log_rows - len(shown))
        return (top + middle + bottom)[:height]

    def _input_line(self, width: int) -> Line:
        """The prompt and what is typed (tabs shown as `\\t`, as the message will show). A line
        longer than the screen is shown around the cursor, with `<` when its start is cut;
        `cursor_x` is where the terminal's cursor goes."""
        prompt = f"to {self.target_label()}> "
        before = self.input[: self.cursor].replace("\t", "\\t")
        typed = before + self.input[self.cursor :].replace("\t", "\\t")
        if cells(prompt + typed) < width:
            self.cursor_x = cells(prompt + before)
            return Line(prompt + typed, INPUT)
        room = max(1, width - cells(prompt) - 2)  # "<" and a cell for the cursor at the end
        start = 0
        while cells(before[start:]) > room:
            start += 1
        shown = ("<" if start else "") + fit(typed[start:], room)
        self.cursor_x = min(width - 1, cells(prompt) + (1 if start else 0) + cells(before[start:]))
        return Line(fit(prompt + shown, width), INPUT)

    def _wrapped(self, line: Line, width: int) -> list[Line]:
        """`line` as rows of `width` cells, remembered (a frame is drawn ten times a second)."""
        key = (line, width)
        rows = self._wrap_cache.get(key)
        if rows is None:
            if len(self._wrap_cache) > 4 * LOG_LINES:
                self._wrap_cache.clear()
            rows = [Line(row, line.style) for row in wrap(line.text, width)]
            self._wrap_cache[key] = rows
        return rows

    # --- internals -----------------------------------------------------------------------------

    def _title(self, width: int) -> Line:
        name = escape_text(str(self.me.get("name", "?")))
        text = f"l2fast ui - {name} ({self.me.get('mac', '?')}) on {self.interface}"
        return Line(fit(text + "   Tab: next peer  /help  /quit", width), TITLE)

    def _peer_lines(self, width: int) -> list[Line]:
        lines = [Line(fit(f"PEERS ({len(self.peers)})", width), TITLE)]
        rows: list[tuple[str | None, str]] = [
            (None, f"everyone ({counted(len(self.peers), 'peer')})")
        ]
        for p in self.peers:
            kind = "daemon" if p.get("daemon") else "cli"
            rows.append(
                (
                    p["mac"],
                    f"{escape_text(p['name'])}  {p['mac']}  mtu {p['mtu']}  "
                    f"rtt {format_rtt_us(p.get('rtt_us'))}  {kind}",
                )
            )
        if self.target is not None and self._peer(self.target) is None:
            rows.append((self.target, f"{self.target}  (not in the neighbour table)"))
        # Keep the picked row visible when there are more peers than rows.
        index = next(i for i, (mac, _) in enumerate(rows) if mac == self.target)
        start = max(0, min(index - PEER_ROWS + 1, len(rows) - PEER_ROWS))
        for mac, text in rows[start : start + PEER_ROWS]:
            picked = mac == self.target
            lines.append(Line(fit(("> " if picked else "  ") + text, width),
                              SELECTED if picked else NORMAL))  # fmt: skip
        if len(rows) > PEER_ROWS:
            lines.append(Line(fit(f"  ... {len(rows)} in all (Tab moves)", width), DIM))
        return lines

    def _transfer_lines(self, width: int) -> list[Line]:
        running = list(self.transfers)
        # A /send through the daemon is also one of the daemon's transfers: its row (the
        # daemon's own count) stands for it; a /send's row is for one that has none yet, or
        # runs a node of its own.
        daemon_sends = {str(t.get("peer")) for t in running if t.get("direction") == "send"}
        own = [j for j in self.sends if not j.finished and j.peer not in daemon_sends]
        if not running and not own:
            return []
        lines = [Line(fit("TRANSFERS", width), TITLE)]
        bar = max(10, min(30, width // 4))
        for t in running:
            arrow = "->" if t.get("direction") == "send" else "<-"
            who = self._label_of(str(t.get("peer", "?")))
            done, total = int(t.get("bytes_done", 0)), int(t.get("bytes_total", 0))
            files = counted(int(t.get("files", 0)), "file")
            head = f"  {t.get('direction', '?')} {arrow} {who}  {files}  "
            rate = float(t.get("gbit_per_s", 0.0))
            lines.append(Line(fit(head + self._progress(done, total, bar, rate), width)))
        for j in own:
            name = escape_text(os.path.basename(j.path) or j.path)
            head = f"  /send #{j.number} {name} -> {j.label}  "
            progress = self._progress(j.bytes_done, j.total, bar, j.gbit_per_s)
            lines.append(Line(fit(head + progress, width)))
        return lines

    @staticmethod
    def _progress(done: int, total: int, bar: int, gbit_per_s: float) -> str:
        if total <= 0:
            return "offered, waiting for the peer's answer"
        pct = 100.0 * done / total
        return (
            f"{progress_bar(done, total, bar)} {pct:5.1f}%  {format_bytes(done)} / "
            f"{format_bytes(total)}  {gbit_per_s:.2f} Gbit/s"
        )

    def _offer_lines(self, width: int) -> list[Line]:
        if not self.offers:
            return []
        lines = [Line(fit("OFFERS WAITING: /accept ID or /reject ID", width), TITLE)]
        # An entry of a waiting folder is answered with the folder: one row for the lot.
        rows = offers_by_folder(self.offers)
        for o, count in rows[:OFFER_ROWS]:
            entries = f" (and {counted(count, 'entry', 'entries')} inside)" if count else ""
            text = (
                f"  {o['id']:>4}  {self._label_of(str(o['peer']))}  {o['kind']}  "
                f"{format_bytes(int(o['size']))}  {escape_text(str(o['path']))}{entries}  "
                f"(waiting {float(o.get('waiting_s', 0)):.0f} s)"
            )
            lines.append(Line(fit(text, width)))
        if len(rows) > OFFER_ROWS:
            more = len(rows) - OFFER_ROWS
            text = f"  ... and {more} more (`l2fast inbox` lists them all)"
            lines.append(Line(fit(text, width), DIM))
        return lines

    def _peer(self, mac: str) -> dict[str, Any] | None:
        return next((p for p in self.peers if p["mac"] == mac), None)

    def _label_of(self, mac: str) -> str:
        peer = self._peer(mac)
        return peer_label(mac, None if peer is None else peer["name"])

    def _move_target(self, step: int) -> None:
        choices: list[str | None] = [None, *(p["mac"] for p in self.peers)]
        if self.target not in choices:
            choices.append(self.target)
        self.target = choices[(choices.index(self.target) + step) % len(choices)]
        self._note(f"talking to {self.target_label()}")

    def _request(self, request: dict[str, Any], kind: str, label: str = "") -> None:
        request_id = self._new_id()
        self._pending[request_id] = (kind, label)
        self._requests.append({**request, "id": request_id})

    def _say(self, text: str, style: str = NORMAL) -> None:
        if len(text) > _LOG_LINE_CAP:  # a last guard; messages are cut before escaping
            text = text[:_LOG_LINE_CAP] + "..."
        line = Line(text, style)
        self.log.append(line)
        if self.scroll:  # scrolled back: what is on the screen stays there
            self.scroll += len(self._wrapped(line, self._width))

    def _note(self, text: str, style: str = DIM) -> None:
        self.notice = Line(f"[{format_clock(self._wall())}] {text}", style)

    def _submit(self, line: str) -> None:
        line = line.strip("\r\n")
        if not line.strip():
            return
        if line.startswith("/") and not line.startswith("//"):
            self._command(line)
            return
        text = line[1:] if line.startswith("//") else line
        if self.target is None:
            self._say(f"[you to everyone] {escape_text(text)}")
            self._request({"op": "chat_all", "text": text}, "chat_all", "everyone")
        else:
            label = self.target_label()
            self._say(f"[you to {label}] {escape_text(text)}")
            self._request({"op": "chat", "peer": self.target, "text": text}, "chat", label)

    def _command(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "/quit":
            self.quitting = True
        elif word in ("/help", "/?"):
            for text in HELP:
                self._say(f"[{text}]", DIM)
        elif word == "/all":
            self.target = None
            self._note("talking to everyone")
        elif word == "/to":
            self._pick(rest)
        elif word == "/discover":
            self._request({"op": "discover", "timeout": 1.0}, "discover")
            self._note("asking the LAN who is there...")
        elif word in ("/accept", "/reject"):
            self._decide(word[1:], rest)
        elif word == "/send":
            self._send(rest)
        else:
            self._say(f"[unknown command {escape_text(word)}: /help lists them]", ERROR)

    def _pick(self, wanted: str) -> None:
        if not wanted:
            self._say("[/to needs a peer: /to NAME or /to MAC]", ERROR)
            return
        mac = parse_mac(wanted)
        if mac is not None:
            self.target = mac.hex(":")
        else:
            named = [p for p in self.peers if p["name"] == wanted]
            if len(named) != 1:
                why = "no peer is" if not named else f"{len(named)} peers are"
                self._say(f"[{why} named {escape_text(wanted)}: pick one by its MAC]", ERROR)
                return
            self.target = named[0]["mac"]
        self._note(f"talking to {self.target_label()}")

    def _decide(self, op: str, rest: str) -> None:
        if self._no_inbox:
            self._say(
                "[no offers wait here: offers are held by a daemon run with --accept ask, and "
                f"this interface is not talking to one on {self.interface}]",
                ERROR,
            )
            return
        try:
            offer = int(rest)
        except ValueError:
            self._say(f"[/{op} needs the offer's number, as listed under OFFERS WAITING]", ERROR)
            return
        self._request({"op": op, "offer": offer}, op, f"offer {offer}")

    def _send(self, path: str) -> None:
        if self.target is None:
            self._say("[/send goes to one peer: pick it with Tab or /to first]", ERROR)
            return
        if not path:
            self._say("[/send needs a path: /send FILE or /send FOLDER]", ERROR)
            return
        path = os.path.expanduser(path)
        self._send_numbers += 1
        job = SendJob(self._send_numbers, path, self.target, self.target_label())
        self.sends.append(job)
        argv = [self._python, "-m", "l2fast", "send", "--json"]
        if self.interface:
            argv += ["--interface", self.interface]
        if not self.me.get("daemon") and self.me.get("name"):
            # No daemon: the command runs a node of its own, announced as this one is.
            argv += ["--name", str(self.me["name"])]
        argv += ["--", self.target, path]  # a path that starts with "-" is still a path
        self._launches.append((job, argv))
        self._say(f"[/send #{job.number}: {escape_text(path)} to {job.label}...]", DIM)
