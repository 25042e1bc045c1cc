"""Ending the processes a lab leaves running (its relay, and whatever `lab exec` started).

Only the pids handed in are signalled, never processes matched by a broad name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

POLL_S = 0.02


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie.

    A zombie has ended; it is its parent's to reap (reaping it here would steal the exit status
    from a caller that owns it, such as a subprocess.Popen).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the parenthesised command name, which may contain spaces.
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Poll until none of `pids` is alive or `timeout_s` passed; returns the survivors."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [p for p in pids if alive(p)]
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(POLL_S)


def terminate(pids: Iterable[int], timeout_s: float) -> list[int]:
    """SIGTERM `pids`, wait up to `timeout_s`, SIGKILL the survivors and wait for them too.

    Returns the pids still alive at the end (normally none).
    """
    own = os.getpid()
    waiting = [p for p in set(pids) if p != own and alive(p)]
    for pid in waiting:
        _signal(pid, signal.SIGTERM)
    waiting = _wait_gone(waiting, timeout_s)
    for pid in waiting:
        _signal(pid, signal.SIGKILL)
    return _wait_gone(waiting, timeout_s)
