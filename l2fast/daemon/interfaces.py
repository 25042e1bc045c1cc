"""Which interface a node runs on when the user does not say (`-i` left out), and who may run it.

The rule from issue 4: the only non-loopback interface that is up; with none or several, an error
that lists them, so the user can pick one with `--interface` (the one spelling every command
accepts: ping and bench use `-i` for the interval and `-I` for the interface).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from l2fast import native
from l2fast.errors import L2fastError, NeedsPrivilege, UnknownInterface
from l2fast.native import InterfaceInfo

__all__ = ["NoInterface", "choose_interface", "has_cap_net_raw", "require_raw_sockets"]

_CAP_NET_RAW = 13  # bit number in the capability sets (linux/capability.h)


class NoInterface(L2fastError):
    """No interface, or more than one, could be the default."""


def _describe(info: InterfaceInfo) -> str:
    state = "up" if info.is_up else "down"
    return f"{info.name} ({state}, mtu {info.mtu})"


def choose_interface(
    requested: str | None,
    names: Callable[[], Sequence[str]] = native.list_interfaces,
    info: Callable[[str], InterfaceInfo] = native.interface_info,
) -> str:
    """The interface to use: `requested` if given (it must exist), else the only candidate.

    A candidate is an interface that is up, is not loopback (no MAC: all zeros) and has an
    Ethernet-sized MAC. `names` and `info` are the kernel queries, replaceable in tests.
    """
    if requested:
        info(requested)  # raises UnknownInterface listing the ones that exist
        return requested
    infos: list[InterfaceInfo] = []
    for name in names():
        try:
            infos.append(info(name))
        except UnknownInterface:
            continue  # it went away between the listing and the query
    candidates = [i for i in infos if i.is_up and i.name != "lo" and any(i.mac)]
    if len(candidates) == 1:
        return candidates[0].name
    listing = ", ".join(_describe(i) for i in infos) or "none"
    if not candidates:
        raise NoInterface(
            "no network interface is up (besides loopback)",
            hint=f"interfaces here: {listing}; bring one up or choose one with --interface IFACE",
        )
    raise NoInterface(
        f"{len(candidates)} interfaces are up: "
        + ", ".join(c.name for c in candidates)
        + "; l2fast does not guess which one",
        hint="choose one with --interface IFACE",
    )


def has_cap_net_raw(status: Path = Path("/proc/self/status")) -> bool | None:
    """Whether this process holds CAP_NET_RAW (effective set); None when it cannot tell."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_NET_RAW & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def require_raw_sockets(what: str) -> None:
    """Raise NeedsPrivilege (one line and a hint) unless raw Ethernet sockets can be opened."""
    if has_cap_net_raw() is False:
        raise NeedsPrivilege(f"{what} needs raw Ethernet sockets: root or CAP_NET_RAW")
