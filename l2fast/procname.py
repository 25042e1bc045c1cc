"""Names of l2fast's worker processes and threads as the kernel shows them.

To the kernel every l2fast process is `python`. Naming the forked workers and helper threads
by role (`l2f-rx`, `l2f-writer`, `l2f-digest`, ...) lets `ps -L`, `top -H` and perf show which
part of a transfer uses the CPU. Best effort: the kernel keeps 15 bytes of a name, and a name
that cannot be set changes nothing else.
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["name_this_thread"]

#: The kernel's limit for a task name (TASK_COMM_LEN 16, with the terminating NUL).
MAX_NAME = 15


def name_this_thread(name: str) -> None:
    """Name the calling thread (in a process's main thread: the process) for the kernel."""
    with (
        contextlib.suppress(OSError),
        open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f,
    ):
        f.write(name[:MAX_NAME])
