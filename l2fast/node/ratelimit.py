"""Token buckets that keep a flood of requests (HELLO, PING, SYN) from becoming a flood of replies.

PROTOCOL.md §HELLO_ACK: replies are rate-limited per node and globally. A source MAC is free to
forge, so the per-peer table is bounded and the global bucket is what finally caps the output.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ReplyLimiter", "TokenBucket"]


class TokenBucket:
    """`rate` tokens per second up to `burst`; each allowed action takes one."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the action is refused."""
        # A clock that steps back (a caller mixing clocks) must not mint tokens.
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ReplyLimiter:
    """A global bucket plus one bucket per peer MAC, the per-peer table bounded by LRU eviction.

    Eviction hands a forged MAC a fresh bucket, which is why the global bucket is checked too.
    """

    def __init__(
        self,
        *,
        rate_per_peer: float,
        burst_per_peer: float,
        rate_global: float,
        burst_global: float,
        max_peers: int = 1024,
    ) -> None:
        self._rate = rate_per_peer
        self._burst = burst_per_peer
        self._global: TokenBucket | None = None
        self._global_rate = rate_global
        self._global_burst = burst_global
        self._peers: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._max_peers = max_peers

    def allow(self, peer: bytes, now: float) -> bool:
        """Whether a reply to `peer` may go out now (and account for it if so)."""
        if self._global is None:
            self._global = TokenBucket(self._global_rate, self._global_burst, now)
        bucket = self._peers.get(peer)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, now)
            self._peers[peer] = bucket
            if len(self._peers) > self._max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(peer)
        # Per-peer first: a peer over its own share must not drain the global bucket.
        return bucket.take(now) and self._global.take(now)
