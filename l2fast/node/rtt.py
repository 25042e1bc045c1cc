"""Round-trip time estimate and retransmission timeout (RFC 6298 arithmetic).

Used by the handshake (SYN, PROBE retransmission) and by the control stream. Backoff doubles
the timeout on every expiry but never past `rto_max`, so a lossy but live LAN recovers quickly.
"""

from __future__ import annotations

__all__ = ["RttEstimator"]

_ALPHA = 1 / 8
_BETA = 1 / 4


class RttEstimator:
    """Smoothed RTT, its variation and the current retransmission timeout, in seconds."""

    __slots__ = ("_backoff", "rto_initial", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(self, rto_initial: float, rto_min: float, rto_max: float) -> None:
        self.rto_initial = rto_initial
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._backoff = 1.0

    def sample(self, rtt: float) -> None:
        """Feed one measurement, taken only from a frame sent once (Karn's rule)."""
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        # A fresh sample means the path answers again: forget the backoff.
        self._backoff = 1.0

    def back_off(self) -> None:
        """A timer expired: double the timeout (bounded by `rto_max`)."""
        self._backoff = min(self._backoff * 2, 64.0)

    @property
    def rto(self) -> float:
        """The current retransmission timeout."""
        # The 1 ms floor on the variation term keeps a perfectly steady LAN from a zero RTO.
        srtt = self.srtt
        base = self.rto_initial if srtt is None else srtt + max(4 * self.rttvar, 0.001)
        return min(self.rto_max, max(self.rto_min, base) * self._backoff)
