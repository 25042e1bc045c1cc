"""Tunables of a node's protocol core, in one frozen dataclass.

Defaults follow docs/PROTOCOL.md where it names a number (KEEPALIVE after 1 s, dead after 5 s,
three PROBEs, the 1 MiB chat cap) and are otherwise chosen for a LAN driven by a Python daemon:
round trips of well under a millisecond on the wire, but scheduling delays of a few
milliseconds, so retransmission timers have floors in the tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2fast.wire.constants import DEFAULT_CHAT_CAP, VERSION, Digest, Features

__all__ = ["NodeConfig"]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Every timing, size and rate that the node's state machines use. Times are in seconds."""

    # --- discovery (PROTOCOL.md §HELLO) ---
    #: Mean time between periodic HELLO broadcasts.
    hello_interval: float = 3.0
    #: Each period is `hello_interval` times a factor drawn from 1 +/- this, so nodes started
    #: together do not keep broadcasting in lock-step.
    hello_jitter: float = 0.25
    #: A neighbour not heard from for this many HELLO intervals is dropped from the table.
    expire_intervals: float = 3.5
    #: Largest neighbour table; HELLOs from further MACs are dropped (spoofed-MAC floods).
    max_neighbours: int = 1024
    #: HELLO_ACK replies to one MAC: sustained rate per second and burst.
    reply_rate_per_peer: float = 2.0
    reply_burst_per_peer: float = 4.0
    #: HELLO_ACK replies to everyone together: rate per second and burst.
    reply_rate_global: float = 50.0
    reply_burst_global: float = 50.0

    # --- ping (PROTOCOL.md §PING, PONG) ---
    #: PONG replies to one MAC, and to everyone together: rate per second and burst.
    pong_rate_per_peer: float = 200.0
    pong_burst_per_peer: float = 50.0
    pong_rate_global: float = 1000.0
    pong_burst_global: float = 200.0
    #: A PING without a PONG after this long counts as lost.
    ping_timeout: float = 2.0

    # --- sessions (PROTOCOL.md §SYN .. §CLOSE) ---
    #: Versions this node speaks.
    ver_min: int = VERSION
    ver_max: int = VERSION
    #: Receive credit offered in SYN / SYN_ACK, in frames.
    window: int = 1024
    #: Feature bits offered: zlib compression of DATA, files already at the receiver
    #: recognised instead of sent again (PRESENT), offers waiting for a person reported
    #: to the sender (HELD), and small files offered with their bytes (INLINE).
    features: Features = Features.ZLIB | Features.PRESENT | Features.HELD | Features.INLINE
    #: Digest bits offered; SHA-256 is preferred when both ends offer it.
    digests: Digest = Digest.SHA256 | Digest.BLAKE2B_256
    #: Give up opening a session after this long without completing the handshake.
    handshake_timeout: float = 5.0
    #: Full-size PROBEs sent before failing with mtu_probe_failed (PROTOCOL.md §PROBE).
    max_probes: int = 3
    #: Send a KEEPALIVE after this long without sending anything (PROTOCOL.md §KEEPALIVE).
    keepalive_after: float = 1.0
    #: A session that received nothing from its peer for this long is dead.
    dead_after: float = 5.0
    #: After a session closed, keep answering the peer's retransmitted CLOSE this long.
    linger: float = 2.0
    #: Sessions (in any state) at once; further SYNs are refused with ERROR busy.
    max_sessions: int = 256
    #: Sessions one MAC may have open with this node (either side opened them); its further
    #: SYNs are refused busy, so that one peer cannot take every slot from the others.
    max_sessions_per_peer: int = 32
    #: New sessions accepted (SYNs answered) from one MAC, and from everyone together: rate per
    #: second and burst. Repeated SYNs of a session already held do not count.
    accept_rate_per_peer: float = 5.0
    accept_burst_per_peer: float = 10.0
    accept_rate_global: float = 50.0
    accept_burst_global: float = 50.0
    #: With a LAN key: the nonces of the last this many SYNs that opened a session here. A SYN
    #: carrying one again is a recording replayed (PROTOCOL.md §Authentication) and is dropped
    #: before it can spend its sender's accept budget or a session slot. About 100 bytes each.
    syn_nonce_memory: int = 65536

    # --- control stream (PROTOCOL.md §CTRL_ACK) ---
    #: Control frames in flight. 64 is the most a CTRL_ACK bitmap can acknowledge beyond `cum`.
    ctrl_window: int = 64
    #: Retransmission timeout before any RTT sample, and its floor and ceiling (bounded backoff).
    rto_initial: float = 0.25
    rto_min: float = 0.05
    rto_max: float = 1.0
    #: A control frame unacknowledged this long after its first sending fails the session.
    ctrl_give_up: float = 10.0

    # --- chat (PROTOCOL.md §CHAT, §Limits) ---
    #: Largest chat message sent or accepted, in bytes.
    chat_cap: int = DEFAULT_CHAT_CAP
