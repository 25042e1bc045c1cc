"""Exceptions. Every error a user can meet carries one clear line and a hint for what to do next.

The CLI prints `error: <message>` and, when present, `hint: <hint>`; never a traceback
(STYLE.md §12).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

#: Named in every explanation of a session that failed because the LAN key check refused
#: its peer's frames (`l2fast.node.node`): such a failure is not mended by trying again, so
#: `l2fast send` gives no resume hint for it. Here, not there: commands must not import the node.
KEY_MISMATCH_MARK = "LAN key"


def as_root(command: str) -> str:
    """`command` as this user runs it with root's rights: root needs no sudo in a hint, and a
    machine where everyone is root may not have sudo installed at all."""
    return command if os.geteuid() == 0 else f"sudo {command}"


class L2fastError(Exception):
    """Base class: an error with a user-facing message and an optional next step."""

    exit_code = 1
    #: The command already printed this error in its --json output (a send's final event):
    #: `l2fast.cli.main` then prints it on stderr only.
    reported_as_json = False

    def __init__(
        self, message: str, hint: str | None = None, *, exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code  # this one only (a Ctrl-C, a usage error of a command)


class UsageError(L2fastError):
    """Options that do not go together, or a command line that says too little: exit 2, as
    argparse's own usage errors (the command did nothing)."""

    exit_code = 2


class NeedsPrivilege(L2fastError):
    """Raw sockets or namespaces need root or CAP_NET_RAW/CAP_NET_ADMIN."""

    exit_code = 77

    def __init__(
        self, what: str = "raw Ethernet sockets need CAP_NET_RAW", hint: str | None = None
    ) -> None:
        super().__init__(
            what,
            hint=hint
            # Not `setcap` on the system python3 (an earlier hint): every Python program of
            # every user would get raw sockets.
            or "run as root (sudo l2fast ...), or give the capability to a private copy of "
            "Python with setcap as docs/PHYSICAL-LAN.md §3 shows (never to the system python3)",
        )


class UnknownInterface(L2fastError):
    """The named interface does not exist."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        listing = ", ".join(available) if available else "none"
        # --interface, not -i: every command accepts the long form, while ping and bench use
        # -i for the interval (their interface is -I).
        super().__init__(
            f"no network interface named {name!r}",
            hint=f"interfaces here: {listing}; choose one with --interface IFACE",
        )
        self.name = name
        self.available = list(available)


class InterfaceDown(L2fastError):
    """The interface exists but is not up."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"interface {name!r} is down or has no carrier",
            hint=f"bring it up ({as_root(f'ip link set {name} up')}) and check its cable, or "
            "for a veth pair, that the peer end is up too",
        )


class MtuTooSmall(L2fastError):
    """The interface MTU is below what l2fast needs (PROTOCOL.md §Limits)."""

    def __init__(self, name: str, mtu: int, minimum: int) -> None:
        super().__init__(
            f"interface {name!r} has MTU {mtu}; l2fast needs at least {minimum}",
            hint=f"raise it: {as_root(f'ip link set {name} mtu {minimum}')}",
        )


class NativeError(L2fastError):
    """A negative return code from the C core, turned into an exception by l2fast.native."""

    def __init__(self, code: int, message: str, what: str = "") -> None:
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{message}")
        self.code = code


class ProtocolError(L2fastError):
    """A protocol rule was broken; carries the wire error code (PROTOCOL.md §ERROR)."""

    def __init__(self, message: str, code: int = 4, *, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow (our misuse)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


class MalformedPayload(RemoteProtocolError):
    """A frame payload does not match its layout; the frame is dropped as `bad_payload`."""


def is_link_down(exc: BaseException) -> bool:
    """`exc` is what a socket says while its interface is down (ENETDOWN): frames are lost
    meanwhile, as on a cable pulled out, and nothing else is wrong."""
    if isinstance(exc, InterfaceDown):
        return True
    return isinstance(exc, NativeError) and -exc.code == errno.ENETDOWN
