"""What `l2fast daemon` was asked for, and the limits of its options.

Apart from l2fast.daemon.daemon so that the command line can build its parser (choices and
defaults) without importing the node, its runner and its services, which only a running daemon
needs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACCEPT_POLICIES",
    "DEFAULT_KEEP_PARTS_DAYS",
    "DEFAULT_RECV_DIR",
    "MAX_KEEP_PARTS_DAYS",
    "DaemonOptions",
]

ACCEPT_POLICIES = ("all", "ask", "none")
#: Where received files land without --recv-dir (created when the first file arrives).
DEFAULT_RECV_DIR = "/var/lib/l2fast/received"
#: `l2fast daemon --keep-parts` by default: a week to send an interrupted file again.
DEFAULT_KEEP_PARTS_DAYS = 7.0
MAX_KEEP_PARTS_DAYS = 36500.0


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """What `l2fast daemon` was asked for."""

    interface: str | None = None
    name: str | None = None
    #: Where received files go, and which offers are accepted (all, ask, none).
    recv_dir: str | None = None
    accept: str = "ask"
    #: Members of this group may use the control socket besides root and the daemon's uid.
    group: str | None = None
    #: Offer feature PRESENT: a file already here (same name, size and content) is not sent
    #: again. Off, a sender learns nothing about the files already here (PROTOCOL.md §Files
    #: already at the receiver).
    present: bool = True
    #: Part files (and their sidecars) nobody wrote to for this many days are deleted; 0
    #: keeps them until someone removes them.
    keep_parts_days: float = DEFAULT_KEEP_PARTS_DAYS
    #: The LAN key file (`l2fast keygen`): frames are sealed and only sealed ones heard.
    key_file: str | None = None
