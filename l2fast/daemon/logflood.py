"""`FloodFilter`: the daemon's log keeps what happened, not every repeat of it.

Much of what the daemon logs is caused by others: a peer's HELLO (a peer discovered or
updated), its offers (refused, pending), its chat messages, a local user connecting to the
control socket. Each line is cheap, but a peer that repeats the cause as fast as the LAN
carries it wrote hundreds of megabytes a minute (100,000 refused offers: 200 MB in 7 s), which
fills the disk of the daemon's log or journal and buries everything else in it.

So each kind of line, told by its format string (`record.msg`, the same for every repeat
whatever its arguments), may be written `burst` times per `period` seconds; the repeats past
that are counted, and once the period is over one line says how many were left out and of
which kind. What the counters of `l2fast status` count is unchanged. A record logged with
`extra=AUDIT` (a file received and placed here: the node's record of what it stored, bounded
by what it accepted) is never held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AUDIT", "FLOOD_BURST", "FLOOD_PERIOD_S", "FloodFilter"]

#: Lines of one kind written per period before the rest are counted instead.
FLOOD_BURST = 50
#: Seconds of one period: also how often the daemon calls `FloodFilter.flush`.
FLOOD_PERIOD_S = 10.0
#: `extra=` of a record that is always written.
AUDIT = {"l2fast_audit": True}
#: Kinds tracked at once; past that the ones whose period ended are forgotten, and a line whose
#: kind finds no room is counted under one shared kind (format strings are few, but a caller
#: that logs a formatted string makes every line its own kind).
MAX_KINDS = 256
_OTHER = "(lines of other kinds)"


@dataclass(slots=True)
class _Kind:
    start: float  # when this kind's period began
    written: int = 0
    left_out: int = 0


class FloodFilter(logging.Filter):
    """A handler filter: at most `burst` lines of each kind per `period` seconds (above)."""

    def __init__(
        self,
        *,
        burst: int = FLOOD_BURST,
        period: float = FLOOD_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        logger: str = "l2fast.daemon",
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._clock = clock
        self._log = logging.getLogger(logger)
        self._kinds: dict[str, _Kind] = {}
        #: Lines left out since the daemon started (all kinds).
        self.left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "l2fast_audit", False):
            return True
        now = self._clock()
        key = str(record.msg)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._new_kind(key, now)
        elif now - kind.start >= self.period:
            self._close(key, kind, now)
        if kind.written < self.burst:
            kind.written += 1
            return True
        kind.left_out += 1
        self.left_out += 1
        return False

    def flush(self) -> None:
        """Say what was left out in periods that are over, and forget kinds gone quiet."""
        now = self._clock()
        for key, kind in list(self._kinds.items()):
            if now - kind.start >= self.period:
                self._close(key, kind, now)
                del self._kinds[key]

    def _new_kind(self, key: str, now: float) -> _Kind:
        room = MAX_KINDS - 1  # the last place is the shared kind's
        if len(self._kinds) >= room:
            self.flush()
        if len(self._kinds) >= room:
            key = _OTHER
            kind = self._kinds.get(key)
            if kind is not None:
                return kind
        kind = self._kinds[key] = _Kind(now)
        return kind

    def _close(self, key: str, kind: _Kind, now: float) -> None:
        """End `kind`'s period: report what it left out, and start a new one."""
        left_out, seconds = kind.left_out, now - kind.start
        kind.start, kind.written, kind.left_out = now, 0, 0
        if left_out:
            self._log.warning(
                "%d more lines like %r were not logged in the last %.0f s (repeats past %d "
                "per %.0f s are counted, not written)",
                left_out, key, seconds, self.burst, self.period,
                extra=AUDIT,
            )  # fmt: skip
