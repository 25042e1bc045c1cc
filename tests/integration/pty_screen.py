"""A full-screen program in a pseudo-terminal, read back as the screen a person would see.

`PtyScreen` starts a command with a pty of a fixed size as its terminal, feeds everything it
prints to a `pyte` terminal emulator, and lets a test type keys and wait (bounded) for text to
appear on the emulated screen. Used for `l2fast ui` (tests/integration/test_ui_lab.py).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import pyte


def _controlling_terminal() -> None:
    # A session of its own with the pty as its controlling terminal, as a login shell has:
    # then Ctrl-C typed into the pty is SIGINT to the program, as in a real terminal.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyScreen:
    """`argv` running on a `columns` x `lines` pseudo-terminal."""

    def __init__(self, argv: list[str], *, columns: int = 100, lines: int = 30,
                 cwd: str | None = None) -> None:  # fmt: skip
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm", "LINES": str(lines), "COLUMNS": str(columns)}
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
            preexec_fn=_controlling_terminal,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def text(self) -> str:
        """The screen as it is now, one line per row."""
        return "\n".join(self.screen.display)

    def joined(self, width: int) -> str:
        """The rows run together, each cut to `width` columns: text a program wrapped at that
        width reads whole again."""
        return "".join(row[:width] for row in self.screen.display)

    def pump(self, timeout: float) -> None:
        """Read what the program printed within `timeout` seconds."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed the terminal (it exited)
                return
            self.raw += data
            self.stream.feed(data)

    def wait_for(self, needle: str, timeout: float = 10.0) -> bool:
        """Wait until `needle` is on the screen (True), or `timeout` seconds (False)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.1))
        return True

    def wait_match(self, pattern: str, timeout: float = 10.0) -> re.Match[str] | None:
        """Wait until a line of the screen matches `pattern` (re.MULTILINE); the match or None."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text(), re.M)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.pump(min(left, 0.1))
        return found

    def type(self, keys: str) -> None:
        """Type `keys` (a str: "\\t" is Tab, "\\r" Enter)."""
        os.write(self.master, keys.encode())

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        """The program's exit status once it ended within `timeout` s, else None."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.05)
        return self.proc.poll()

    def close(self) -> None:
        """End the program (its whole process group) if it still runs; free the terminal."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        os.close(self.master)
