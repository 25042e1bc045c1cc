"""Which qdiscs l2fast's sockets go around (l2fast/qdisc.py): the parser of rtnetlink's answer,
and the choice. A qdisc someone configured (a shaper) is obeyed; the kernel's defaults are not
worth a lock per frame."""

from __future__ import annotations

import struct

import pytest

from l2fast import qdisc


def newqdisc(ifindex: int, kind: str, parent: int = 0xFFFFFFFF) -> bytes:
    name = kind.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(name), 1) + name
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxxxiIII", 0, ifindex, 0x8001_0000, parent, 1) + attr
    return struct.pack("=IHHII", 16 + len(body), 36, 2, 1, 0) + body


DONE = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0\0\0\0"


def test_the_root_qdisc_of_each_interface_is_read_from_a_dump() -> None:
    data = newqdisc(1, "noqueue") + newqdisc(7, "tbf") + newqdisc(7, "pfifo", parent=0x10001)
    assert qdisc._qdiscs(data) == [(1, "noqueue"), (7, "tbf")]
    assert qdisc._qdiscs(data + DONE)[-1] == (None, None)
    # Cut short or nonsense: what was whole is read, the rest ignored, nothing raises.
    assert qdisc._qdiscs((newqdisc(1, "noqueue") + newqdisc(7, "tbf"))[:-3]) == [(1, "noqueue")]
    assert qdisc._qdiscs(b"\xff" * 40) == []
    assert qdisc._qdiscs(struct.pack("=IHHII", 0, 36, 0, 0, 0)) == []


@pytest.mark.parametrize(
    ("kind", "env", "bypass"),
    [
        ("noqueue", None, True),
        ("fq_codel", None, True),
        ("tbf", None, False),
        ("htb", None, False),
        (None, None, True),  # unreadable: the default holds
        ("tbf", "1", True),  # the environment decides outright
        ("noqueue", "0", False),
    ],
)
def test_sockets_go_through_a_configured_qdisc_only(
    monkeypatch: pytest.MonkeyPatch, kind: str | None, env: str | None, bypass: bool
) -> None:
    monkeypatch.setattr(qdisc.socket, "if_nametoindex", lambda name: 9)
    monkeypatch.setattr(qdisc, "root_qdisc", lambda ifindex: kind)
    monkeypatch.setattr(qdisc, "_cache", {})
    if env is None:
        monkeypatch.delenv("L2FAST_QDISC_BYPASS", raising=False)
    else:
        monkeypatch.setenv("L2FAST_QDISC_BYPASS", env)
    assert qdisc.qdisc_bypass("eth9") is bypass


def test_this_hosts_loopback_reads_as_a_default_qdisc() -> None:
    # The real rtnetlink: lo has noqueue in any network namespace.
    assert qdisc.root_qdisc(1) in ("noqueue", None)
