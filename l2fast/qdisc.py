"""Whether l2fast's raw sockets may bypass an interface's queueing discipline.

l2fast's sockets skip the qdisc (PACKET_QDISC_BYPASS): a default qdisc only queues, and going
around it saves the sending core a lock and a dequeue per frame. But a qdisc someone set up on
purpose, a `tc ... tbf` or `htb` that shapes the link, is what they want every frame to obey:
bypassed, l2fast ran at 2 Gbit/s through a lab shaped to 200 Mbit/s, and only commands started
through `l2fast lab exec` (which set L2FAST_QDISC_BYPASS=0) were shaped. So the root qdisc is
read over rtnetlink (RTM_GETQDISC), and frames go through any that is not one of the kernel's
defaults. L2FAST_QDISC_BYPASS=0 or 1 still decides outright.
"""

from __future__ import annotations

import os
import socket
import struct
import time

__all__ = ["DEFAULT_QDISCS", "qdisc_bypass", "root_qdisc", "shaping_qdisc"]

#: Root qdiscs the kernel attaches by itself (or that only queue): bypassing them loses nothing.
DEFAULT_QDISCS = frozenset({"noqueue", "noop", "pfifo_fast", "fq_codel", "fq", "mq", "pfifo"})

_RTM_NEWQDISC = 36
_RTM_GETQDISC = 38
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCA_KIND = 1
_TC_H_ROOT = 0xFFFFFFFF
_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_RTATTR = struct.Struct("=HH")  # len, type
#: Replies of one dump to read at most (a host with thousands of interfaces has that many
#: qdiscs and more; past this the answer is "unknown", and the default holds).
_MAX_REPLIES = 4096
_CACHE_S = 1.0
_cache: dict[int, tuple[float, str | None]] = {}


def root_qdisc(ifindex: int) -> str | None:
    """The kind of interface `ifindex`'s root qdisc ("tbf", "noqueue", ...), or None when it
    cannot be read (no rtnetlink, an answer not understood)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
            nl.settimeout(1.0)
            body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, 0, 0)
            flags = _NLM_F_REQUEST | _NLM_F_DUMP
            nl.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _RTM_GETQDISC, flags, 1, 0) + body)
            for _ in range(_MAX_REPLIES):
                data = nl.recv(1 << 16)
                for kind, found in _qdiscs(data):
                    if kind is None:
                        return found  # the dump ended
                    if found is not None and kind == ifindex:
                        return found
    except (OSError, struct.error):
        return None
    return None


def _qdiscs(data: bytes) -> list[tuple[int | None, str | None]]:
    """(ifindex, kind) of each root qdisc in one netlink datagram; (None, None) at its end."""
    out: list[tuple[int | None, str | None]] = []
    pos = 0
    while pos + _NLMSG_HDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, pos)
        if length < _NLMSG_HDR.size or pos + length > len(data):
            break
        if mtype in (_NLMSG_DONE, _NLMSG_ERROR):
            out.append((None, None))
            break
        if mtype == _RTM_NEWQDISC and length >= _NLMSG_HDR.size + _TCMSG.size:
            start = pos + _NLMSG_HDR.size
            _family, ifindex, _handle, parent, _info = _TCMSG.unpack_from(data, start)
            if parent == _TC_H_ROOT:
                out.append((ifindex, _kind(data[start + _TCMSG.size : pos + length])))
        pos += (length + 3) & ~3
    return out


def _kind(attrs: bytes) -> str | None:
    pos = 0
    while pos + _RTATTR.size <= len(attrs):
        length, atype = _RTATTR.unpack_from(attrs, pos)
        if length < _RTATTR.size:
            return None
        if atype == _TCA_KIND:
            value = attrs[pos + _RTATTR.size : pos + length]
            return value.split(b"\0", 1)[0].decode("ascii", errors="replace")
        pos += (length + 3) & ~3
    return None


def qdisc_bypass(ifname: str) -> bool:
    """Whether raw sockets on `ifname` should bypass its qdisc: L2FAST_QDISC_BYPASS (0 or 1)
    if set, else yes unless the root qdisc is one someone configured (a shaper)."""
    forced = os.environ.get("L2FAST_QDISC_BYPASS")
    if forced in ("0", "1"):
        return forced == "1"
    return shaping_qdisc(ifname) is None


def shaping_qdisc(ifname: str) -> str | None:
    """The kind of `ifname`'s root qdisc when it is not a kernel default (see DEFAULT_QDISCS),
    else None. Read at most once a second per interface (sockets open in bursts)."""
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError:
        return None
    now = time.monotonic()
    cached = _cache.get(ifindex)
    if cached is None or now - cached[0] > _CACHE_S:
        cached = _cache[ifindex] = (now, root_qdisc(ifindex))
    kind = cached[1]
    return kind if kind is not None and kind not in DEFAULT_QDISCS else None
