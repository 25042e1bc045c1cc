"""The curses shell of `l2fast ui`: the terminal, the node client and the send processes.

One loop: ask the model for requests and send commands, draw it, then wait (at most FRAME_S)
for the node's messages, key presses or a send process's output, and hand each to the model.
Files are sent by `l2fast send --json` child processes, so a transfer started here behaves
exactly as the command does (descriptors, resume, verification), and the interface reads its
NDJSON events for the progress it shows.
"""

from __future__ import annotations

import contextlib
import curses
import json
import locale
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from l2fast.daemon.client import NodeClient
from l2fast.tui.model import (
    DIM,
    ERROR,
    INPUT,
    NORMAL,
    SELECTED,
    TITLE,
    SendJob,
    UiModel,
    fit,
)

__all__ = ["run_screen"]

#: The screen is drawn again at least this often (progress moves without any input).
FRAME_S = 0.1
#: How long a send process gets to stop when the interface quits (then it is killed).
SEND_STOP_S = 3.0
#: Bytes of a send's stderr read for its error line (it prints one line and a hint).
MAX_STDERR = 64 << 10


def _styles() -> dict[str, int]:
    styles = {NORMAL: curses.A_NORMAL, DIM: curses.A_DIM, TITLE: curses.A_BOLD,
              SELECTED: curses.A_REVERSE, ERROR: curses.A_BOLD, INPUT: curses.A_NORMAL}  # fmt: skip
    if curses.has_colors():
        with contextlib.suppress(curses.error):
            curses.start_color()
            curses.use_default_colors()
            curses.init_pair(1, curses.COLOR_RED, -1)
            curses.init_pair(2, curses.COLOR_CYAN, -1)
            styles[ERROR] = curses.color_pair(1) | curses.A_BOLD
            styles[TITLE] = curses.color_pair(2) | curses.A_BOLD
    return styles


def _key_name(key: int | str) -> str:
    """A key as the model names it: a printable character, or curses' name (`KEY_UP`, `^C`)."""
    if isinstance(key, int):
        return curses.keyname(key).decode("ascii", "replace")
    if len(key) == 1 and (ord(key) < 32 or ord(key) == 127):
        return curses.keyname(ord(key)).decode("ascii", "replace")
    return key


class _SendProcess:
    """One `l2fast send --json` child and the part of a line it has printed."""

    def __init__(self, job: SendJob, proc: subprocess.Popen[bytes], errors: Any) -> None:
        self.job = job
        self.proc = proc
        self.errors = errors  # the temporary file its stderr goes to
        self.partial = b""


class _Screen:
    def __init__(self, scr: Any, client: NodeClient, model: UiModel) -> None:
        self.scr = scr
        self.client = client
        self.model = model
        self.styles = _styles()
        self.sends: list[_SendProcess] = []
        self._codeset = locale.nl_langinfo(locale.CODESET).lower() or "ascii"

    def run(self) -> int:
        with contextlib.suppress(curses.error):
            curses.curs_set(1)
        self.scr.nodelay(True)
        self.scr.keypad(True)
        self.client.add_reader(sys.stdin.fileno(), self.on_keys)
        model = self.model
        try:
            while not model.quitting:
                model.tick()
                for request in model.take_requests():
                    self.client.send(request)
                for job, argv in model.take_launches():
                    self.start(job, argv)
                self.draw()
                for msg in self.client.poll(FRAME_S):
                    model.on_message(msg)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how many people leave a full-screen program: not an error
        finally:
            self.stop_sends()
        return 0

    def on_keys(self) -> None:
        while True:
            try:
                key = self.scr.get_wch()
            except curses.error:  # no more input for now
                return
            self.model.on_key(_key_name(key))

    def draw(self) -> None:
        height, width = self.scr.getmaxyx()
        # One column spare: writing the bottom-right cell scrolls some terminals.
        lines = self.model.render(width - 1, height)
        self.scr.erase()
        for y, line in enumerate(lines):
            text = line.text
            if self._codeset not in ("utf-8", "utf8"):
                # A terminal whose character set cannot show a name or message (an ASCII
                # locale, say): such characters are shown as escapes, not dropped.
                shown = text.encode(self._codeset, "backslashreplace")
                text = fit(shown.decode(self._codeset, "replace"), width - 1)
            with contextlib.suppress(curses.error):
                # Cleared first: should a row ever take more cells than counted, what spills
                # onto the next row is wiped when that row is drawn.
                self.scr.move(y, 0)
                self.scr.clrtoeol()
                self.scr.addstr(y, 0, text, self.styles.get(line.style, curses.A_NORMAL))
        if lines and lines[-1].style == INPUT:
            with contextlib.suppress(curses.error):
                self.scr.move(len(lines) - 1, min(self.model.cursor_x, width - 2))
        self.scr.refresh()

    # --- send processes --------------------------------------------------------------------

    def start(self, job: SendJob, argv: list[str]) -> None:
        # Its errors go to a file, read when it ends: a pipe nobody reads while it runs could
        # fill and stop the send. The file lives as long as the send (closed in _close).
        errors = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,  # Ctrl-C in the interface is not the send's signal
            )
        except OSError as exc:
            errors.close()
            self.model.on_send_exit(job, 127, f"could not start l2fast send: {exc}")
            return
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sp = _SendProcess(job, proc, errors)
        self.sends.append(sp)
        self.client.add_reader(proc.stdout.fileno(), lambda: self.on_send_output(sp))

    def on_send_output(self, sp: _SendProcess) -> None:
        assert sp.proc.stdout is not None
        try:
            data = os.read(sp.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if data:
            sp.partial += data
            *lines, sp.partial = sp.partial.split(b"\n")
            for raw in lines:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # not an event (the command prints only NDJSON with --json)
                if isinstance(event, dict):
                    self.model.on_send_event(sp.job, event)
            return
        # End of output: the command is ending; its stderr holds the error, if any.
        self.client.remove_reader(sp.proc.stdout.fileno())
        status = sp.proc.wait()
        sp.errors.seek(0)
        err = sp.errors.read(MAX_STDERR)
        self._close(sp)
        self.model.on_send_exit(sp.job, status, err.decode("utf-8", "replace"))

    def _close(self, sp: _SendProcess) -> None:
        if sp in self.sends:
            self.sends.remove(sp)
        if sp.proc.stdout is not None:
            sp.proc.stdout.close()
        sp.errors.close()

    def stop_sends(self) -> None:
        """Leaving: interrupt the sends still running (the receiver keeps what arrived), all at
        once and against one deadline; a second Ctrl-C meanwhile does not leave them behind."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            running = [sp for sp in self.sends if sp.proc.poll() is None]
            for sp in running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(sp.proc.pid, signal.SIGINT)
            deadline = time.monotonic() + SEND_STOP_S
            for sp in running:
                try:
                    sp.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(sp.proc.pid, signal.SIGKILL)
                    sp.proc.wait()
            for sp in list(self.sends):
                self._close(sp)
        finally:
            signal.signal(signal.SIGINT, previous)


def run_screen(client: NodeClient, model: UiModel) -> int:
    """Run the interface in the terminal until the user leaves; the exit status."""
    status: int = curses.wrapper(lambda scr: _Screen(scr, client, model).run())
    return status
