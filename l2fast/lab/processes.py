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
    """True while `pid` exists and is not a zombie."""
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


def terminate(pids: Iterable[int], timeout_s: float) -> list[int]:
    """SIGTERM `pids`, wait up to `timeout_s`, SIGKILL the survivors and wait for them too.

    Returns the pids still alive at the end (normally none).
    """
    own = os.getpid()
    waiting = [p for p in set(pids) if p != own and alive(p)]
    for pid in waiting:
        _signal(pid, signal.SIGTERM)
    for sig_deadline, sig in ((timeout_s, signal.SIGKILL), (timeout_s, None)):
        deadline = time.monotonic() + sig_deadline
        while waiting and time.monotonic() < deadline:
            _reap(waiting)
            waiting = [p for p in waiting if alive(p)]
            if waiting:
                time.sleep(POLL_S)
        if not waiting or sig is None:
            break
        for pid in waiting:
            _signal(pid, sig)
    return waiting


def _reap(pids: list[int]) -> None:
    """Collect our own exited children so they do not linger as zombies."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
