"""Expiry of part files nobody resumes: a walk of the receive directory at start and hourly.

A transfer that stops keeps its part file and sidecar so that sending the same file again
resumes (PROTOCOL.md §Resume); one nobody sends again would stay forever. Each walk deletes
the pairs neither written to for `max_age_days` (`l2fast daemon --keep-parts DAYS`) nor held by
a transfer (`l2fast.transfer.resume.expire_pairs`). It runs in a thread of its own: a
receive directory of a million files takes seconds to walk, and the loop serves peers
meanwhile. Only file-system calls run there; its results are plain counters that `status`
reads.

Two limits of the flock(2) it relies on: a worker forked while the walk holds a sidecar's lock
(a few microseconds per pair) inherits that lock until it exits, which can make that one pair
look busy to a resume meanwhile; and on NFS, where flock is emulated per process, the walk's
lock does not exclude the daemon's own transfers. Receive directories belong on a local file
system.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from l2fast.daemon.runner import NodeRunner, Timer
from l2fast.progress import format_bytes
from l2fast.transfer.resume import ExpiryResult, expire_pairs

log = logging.getLogger("l2fast.daemon")

#: Seconds between walks (the first runs as the daemon starts).
SWEEP_INTERVAL_S = 3600.0
#: Directory entries one walk looks at, at most. Every walk starts from the top, so in a
#: receive directory of more entries those past the limit are never looked at (logged).
SWEEP_ENTRIES = 1_000_000
DAY_S = 86400.0


class PartExpiry:
    """Walks `recv_dir` now and every SWEEP_INTERVAL_S; `status()` says what it did."""

    def __init__(self, runner: NodeRunner, recv_dir: str, max_age_days: float) -> None:
        self.runner = runner
        self.recv_dir = recv_dir
        self.max_age_days = max_age_days
        self.sweeps = 0
        self.removed = 0
        self.removed_bytes = 0
        self.last_wall: float | None = None
        self._thread: threading.Thread | None = None
        self._timer: Timer | None = None

    def start(self) -> None:
        """Walk now (in the thread) and schedule the next walk."""
        self._timer = self.runner.call_later(SWEEP_INTERVAL_S, self.start)
        if self._thread is not None and self._thread.is_alive():
            return  # the last walk has not finished: this one is skipped
        self._thread = threading.Thread(target=self._sweep, name="l2f-part-expiry", daemon=True)
        self._thread.start()

    def _sweep(self) -> None:
        try:
            fd = os.open(self.recv_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # nothing received yet: the directory is made with the first file
        except OSError as exc:
            log.warning("part files: cannot read %s: %s", self.recv_dir, exc.strerror)
            return
        try:
            result = expire_pairs(fd, self.max_age_days * DAY_S, time.time(), SWEEP_ENTRIES)
        except OSError as exc:
            log.warning("part files: walking %s failed: %s", self.recv_dir, exc.strerror)
            return
        finally:
            os.close(fd)
        self._record(result)

    def _record(self, result: ExpiryResult) -> None:
        # `sweeps` last: `status` (read from the loop's thread) never shows a finished walk
        # without its counts.
        self.removed += result.removed
        self.removed_bytes += result.removed_bytes
        self.last_wall = time.time()
        self.sweeps += 1
        if result.removed:
            log.info(
                "part files: removed %d not resumed for %g days (%s)",
                result.removed, self.max_age_days, format_bytes(result.removed_bytes),
            )  # fmt: skip
        if result.kept_busy:
            log.info("part files: %d old ones are in use by a transfer: kept", result.kept_busy)
        if result.failed:
            log.warning(
                "part files: %d old ones could not be deleted (read-only or immutable files, or "
                "I/O errors); they are tried again at the next walk", result.failed,
            )  # fmt: skip
        if result.dirs_skipped:
            log.warning(
                "part files: %d directories under %s could not be opened (out of descriptors, "
                "or no permission): part files in them were not looked at",
                result.dirs_skipped, self.recv_dir,
            )  # fmt: skip
        if result.truncated:
            log.warning(
                "part files: the walk of %s stopped after %d entries; every walk starts from the "
                "top, so part files beyond that many entries are not reached",
                self.recv_dir, result.scanned,
            )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """For `l2fast status`."""
        return {
            "keep_days": self.max_age_days,
            "sweeps": self.sweeps,
            "removed": self.removed,
            "removed_bytes": self.removed_bytes,
            "last_sweep": self.last_wall,
        }

    def close(self) -> None:
        """No more walks (one in progress ends with the process: it only deletes whole pairs,
        part file first, and a sidecar left without its part is discarded when next met)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
