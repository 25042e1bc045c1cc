"""ping(8)-style round-trip statistics: what `l2fast ping` prints and the node's Pinger keeps.

Pure arithmetic on nanosecond round trips, apart from l2fast.node.ping (which builds and reads
the frames) so that the command line can use it without importing the wire codecs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PingStats", "RttStats"]


@dataclass(frozen=True, slots=True)
class PingStats:
    """ping(8)'s summary for one peer; RTTs in nanoseconds, 0 when nothing was received."""

    sent: int
    received: int
    duplicates: int
    #: Fraction of PINGs lost, 0.0..1.0 (PINGs still awaiting an answer count as lost).
    loss: float
    rtt_min_ns: int
    rtt_avg_ns: int
    rtt_max_ns: int
    #: Standard deviation of the RTTs, as ping(8)'s "mdev".
    rtt_mdev_ns: int


class RttStats:
    """Running RTT figures for one peer."""

    __slots__ = ("_max", "_min", "_sum", "_sumsq", "duplicates", "received", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.duplicates = 0
        self._sum = 0
        self._sumsq = 0
        self._min = 0
        self._max = 0

    def add(self, rtt_ns: int) -> None:
        """Count one answered PING."""
        self._min = rtt_ns if self.received == 0 else min(self._min, rtt_ns)
        self._max = max(self._max, rtt_ns)
        self.received += 1
        self._sum += rtt_ns
        self._sumsq += rtt_ns * rtt_ns

    def summary(self) -> PingStats:
        """The figures so far."""
        n = self.received
        avg = self._sum / n if n else 0.0
        # ping(8): mdev = sqrt(mean(x^2) - mean(x)^2), exact here thanks to integer sums.
        mdev = math.sqrt(max(0.0, self._sumsq / n - avg * avg)) if n else 0.0
        loss = 1.0 - n / self.sent if self.sent else 0.0
        return PingStats(
            sent=self.sent,
            received=n,
            duplicates=self.duplicates,
            loss=max(0.0, loss),
            rtt_min_ns=self._min,
            rtt_avg_ns=round(avg),
            rtt_max_ns=self._max,
            rtt_mdev_ns=round(mdev),
        )
