"""Progress of long transfers: a live line on stderr, and NDJSON events for `--json`.

Issue 5 §Progress: percent, bytes, rate and ETA on one line that redraws itself, off when stderr
is not a terminal or with `--quiet`; and with `--json`, one JSON object per line (like
iperf3's `--json-stream`, which its users asked for; FACTS.md), ending with a final event that
holds `bytes`, `seconds`, `gbit_per_s`, `digest` and `verified`.

This module only formats and times: the caller feeds byte counts, and the clock is injectable
so that tests drive time by hand. The rate is smoothed with an exponential moving average over
about `tau` seconds, so the ETA does not jump with every burst and pause of a lossy link, and
the line is redrawn at most every `min_interval` (10 Hz by default) however often it is fed:
a terminal that redraws per chunk would cost more than the transfer.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from l2fast.transfer.names import display_name

__all__ = [
    "JsonProgress",
    "ProgressLine",
    "RateMeter",
    "format_bytes",
    "format_eta",
    "format_rate",
    "gbit_per_s",
]

Clock = Callable[[], float]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_CLEAR_TO_EOL = "\x1b[K"


def format_bytes(n: float) -> str:
    """`512 B`, `1.50 KiB`, `2.00 GiB`: binary units, three significant digits."""
    if n < 1024:
        return f"{int(n)} B"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"


def format_rate(bytes_per_s: float | None) -> str:
    """A rate in bits per second, as network people read it: `941 Mbit/s`, `9.41 Gbit/s`."""
    if bytes_per_s is None or not math.isfinite(bytes_per_s):
        return "-- bit/s"
    bits = bytes_per_s * 8
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            value = bits / scale
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {unit}"
    return f"{bits:.0f} bit/s"


def format_eta(seconds: float | None) -> str:
    """`0:42`, `12:05`, `1:02:03`; `--:--` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    total = int(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class RateMeter:
    """Bytes per second, smoothed exponentially over about `tau` seconds.

    Samples may come at any interval: the weight of a new sample is `1 - exp(-dt / tau)`, so
    the average forgets at the same speed whether it is fed every millisecond or every second.
    """

    def __init__(self, tau: float = 2.0) -> None:
        if tau <= 0:
            raise ValueError("tau must be positive")
        self.tau = tau
        self._last_done: int | None = None
        self._last_time = 0.0
        self._rate: float | None = None

    @property
    def rate(self) -> float | None:
        """The smoothed rate, or None before two samples some time apart."""
        return self._rate

    def update(self, done: int, now: float) -> float | None:
        """Add a sample: `done` bytes in total at time `now`; returns the smoothed rate."""
        if self._last_done is None:
            self._last_done, self._last_time = done, now
            return self._rate
        dt = now - self._last_time
        if dt <= 0:
            return self._rate
        instant = max(0, done - self._last_done) / dt
        if self._rate is None:
            self._rate = instant
        else:
            weight = 1 - math.exp(-dt / self.tau)
            self._rate += weight * (instant - self._rate)
        self._last_done, self._last_time = done, now
        return self._rate


class ProgressLine:
    """The live progress line: `label  42.0%  840 MiB / 2.00 GiB  9.41 Gbit/s  ETA 0:02`.

    Off (every call does nothing) when `quiet` or when the stream is not a terminal, unless
    `enabled` says otherwise. `label` is escaped: it is usually a file name from the command
    line or the wire.
    """

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        stream: TextIO | None = None,
        quiet: bool = False,
        enabled: bool | None = None,
        clock: Clock = time.monotonic,
        min_interval: float = 0.1,
        width: int | None = None,
        tau: float = 2.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = not quiet and _isatty(self.stream)
        self.enabled = enabled and not quiet
        self.total = total
        self.label = display_name(label)
        self._clock = clock
        self._min_interval = min_interval
        self._width = width
        self._meter = RateMeter(tau)
        self._start = clock()
        self._last_draw: float | None = None
        self._drawn = False
        self._meter.update(0, self._start)

    def render(self, done: int, now: float) -> str:
        """The line for `done` bytes at time `now` (no drawing; no side effects)."""
        rate = self._meter.rate
        if rate is None and now > self._start:
            rate = done / (now - self._start)
        share = min(1.0, done / self.total) if self.total > 0 else 1.0
        percent = f"{100.0 * share:5.1f}%"
        remaining = max(0, self.total - done)
        eta = remaining / rate if rate else (0.0 if remaining == 0 else None)
        stats = (
            f"{percent}  {format_bytes(done)} / {format_bytes(self.total)}  "
            f"{format_rate(rate)}  ETA {format_eta(eta)}"
        )
        if not self.label:
            return stats
        width = self._width or shutil.get_terminal_size((80, 24)).columns
        room = width - len(stats) - 3  # two spaces, and one column the cursor may sit in
        label = self.label
        if room < len(label):
            # Keep the end of the name (the file name, not the folders above it).
            label = "..." + label[len(label) - room + 3 :] if room > 8 else ""
        return f"{label}  {stats}" if label else stats

    def update(self, done: int, total: int | None = None) -> bool:
        """Feed the byte count (and a new total, e.g. as a tree's files are accepted); True
        when the line was redrawn."""
        if total is not None:
            self.total = total
        now = self._clock()
        self._meter.update(done, now)
        if not self.enabled:
            return False
        if self._last_draw is not None and now - self._last_draw < self._min_interval:
            return False
        self._draw(self.render(done, now))
        self._last_draw = now
        return True

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line + _CLEAR_TO_EOL)
        self.stream.flush()
        self._drawn = True

    def finish(self, done: int) -> None:
        """Draw the final state and end the line (nothing when disabled)."""
        if not self.enabled:
            return
        now = self._clock()
        self._meter.update(done, now)
        self._draw(self.render(done, now))
        self.stream.write("\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the line, e.g. before printing an error or a chat message."""
        if self.enabled and self._drawn:
            self.stream.write("\r" + _CLEAR_TO_EOL)
            self.stream.flush()
            self._drawn = False
            self._last_draw = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def gbit_per_s(n_bytes: int, seconds: float) -> float:
    """Average rate in Gbit/s (0 for no time)."""
    return n_bytes * 8 / seconds / 1e9 if seconds > 0 else 0.0


class JsonProgress:
    """NDJSON events for `--json`: one object per line, flushed at once.

    `progress` events come at most every `interval` seconds (the last one is never
    swallowed by `final`, which always prints). Every event has `event` and `seconds` (since
    the start); extra keyword fields are passed through, so the caller can add `files`,
    `resent_bytes` or `path` without changing this class.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        clock: Clock = time.monotonic,
        interval: float = 0.5,
        tau: float = 2.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._clock = clock
        self._interval = interval
        self._start = clock()
        self._last: float | None = None
        self._meter = RateMeter(tau)
        self._meter.update(0, self._start)

    def emit(self, event: str, **fields: object) -> dict[str, object]:
        """Print one event now; returns the object printed."""
        record: dict[str, object] = {"event": event}
        record.setdefault("seconds", round(self._clock() - self._start, 6))
        record.update(fields)
        self.stream.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self.stream.flush()
        return record

    def progress(self, done: int, total: int, **extra: object) -> dict[str, object] | None:
        """A `progress` event (rate-limited); the object printed, or None when skipped."""
        now = self._clock()
        rate = self._meter.update(done, now)
        if self._last is not None and now - self._last < self._interval:
            return None
        self._last = now
        remaining = max(0, total - done)
        eta = remaining / rate if rate else None
        return self.emit(
            "progress",
            bytes=done,
            total=total,
            percent=round(100.0 * done / total, 3) if total else 100.0,
            gbit_per_s=round((rate or 0.0) * 8 / 1e9, 6),
            eta_seconds=None if eta is None else round(eta, 3),
            **extra,
        )

    def final(
        self,
        *,
        n_bytes: int,
        digest: str | None,
        verified: bool,
        idle_s: float = 0.0,
        rate_bytes: int | None = None,
        **extra: object,
    ) -> dict[str, object]:
        """The final event: `bytes`, `seconds`, `gbit_per_s` (average), `digest`, `verified`.
        `idle_s` (waiting for a person, say) is left out of `seconds` and the rate; the rate
        counts `rate_bytes` (default `n_bytes`: a send rates only what had to cross)."""
        seconds = max(self._clock() - self._start - idle_s, 0.0)
        rated = n_bytes if rate_bytes is None else rate_bytes
        return self.emit(
            "done",
            seconds=round(seconds, 6),
            bytes=n_bytes,
            gbit_per_s=round(gbit_per_s(rated, seconds), 6),
            digest=digest,
            verified=verified,
            **extra,
        )
