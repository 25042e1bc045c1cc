"""A daemon follows its interface's MTU (`ip link set eth0 mtu N` while it runs), and its link.

It used to keep offering the MTU it started with: after a drop from 9000 to 1500 every session
it opened failed its 9000-byte probes ("the path drops frames that large") until a restart.
Two daemons on the in-memory segment; the first one's interface MTU is a value the test sets.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from l2fast.commands.status import status_lines
from l2fast.daemon.client import DaemonClient
from l2fast.daemon.control import ControlClient, control_address
from l2fast.daemon.daemon import Daemon
from l2fast.daemon.options import DaemonOptions
from l2fast.errors import L2fastError
from l2fast.node.config import NodeConfig
from tests.fake_wire import FakeHub
from tests.unit.test_daemon_service import wait_for

# Periodic HELLOs every 30 s: a peer that hears of a new MTU within seconds heard it from
# the HELLO sent when it changed.
FAST = NodeConfig(handshake_timeout=0.5, ctrl_give_up=1.0, dead_after=1.0, hello_interval=30.0)


class Pair:
    def __init__(self, tmp_path: Path) -> None:
        self.hub = FakeHub()
        self.link = 9000  # what "the interface" of the first daemon says now: its MTU,
        self.up = True  # and whether it has its link
        self.daemons: list[Daemon] = []
        self.addresses: list[str] = []
        self.threads: list[threading.Thread] = []
        for index, name in ((1, "alpha"), (2, "bravo")):
            address = control_address(f"test-{uuid.uuid4().hex[:12]}")
            daemon = Daemon(
                self.hub.socket(index, mtu=9000),
                name,
                DaemonOptions(recv_dir=str(tmp_path / name), keep_parts_days=0),
                address=address,
                config=FAST,
                read_link=self.read_link if index == 1 else None,
            )
            thread = threading.Thread(target=daemon.serve, daemon=True)
            thread.start()
            self.daemons.append(daemon)
            self.addresses.append(address)
            self.threads.append(thread)

    def read_link(self) -> SimpleNamespace:
        return SimpleNamespace(mtu=self.link, is_up=self.up)

    def request(self, index: int, op: str, **fields: Any) -> dict[str, Any]:
        with DaemonClient("fake0", ControlClient(self.addresses[index], timeout=10)) as c:
            reply: dict[str, Any] = c.request({"op": op, **fields}, 5)
            return reply

    def own_mtu(self) -> int:
        return int(self.request(0, "status")["status"]["mtu"])

    def mtu_bravo_sees(self) -> int | None:
        peers = self.request(1, "peers")["peers"]
        return int(peers[0]["mtu"]) if peers else None

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for t in self.threads:
            t.join(10)
            assert not t.is_alive(), "a daemon did not stop"
        self.hub.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        assert wait_for(lambda: p.mtu_bravo_sees() == 9000), "bravo never heard alpha"
        yield p
    finally:
        p.close()


def test_a_smaller_mtu_is_used_and_announced_then_restored(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="l2fast.daemon")
    pair.link = 1500
    # Within LINK_CHECK_S (1 s), not at the next periodic HELLO.
    assert wait_for(lambda: pair.own_mtu() == 1500 and pair.mtu_bravo_sees() == 1500, 3.0)
    assert "eth0" not in caplog.text and "fake0's MTU changed from 9000 to 1500" in caplog.text
    assert "sessions opened from now on use MTU 1500" in caplog.text
    pair.link = 9000
    assert wait_for(lambda: pair.own_mtu() == 9000 and pair.mtu_bravo_sees() == 9000, 3.0)


def test_a_larger_or_too_small_mtu_is_reported_not_used(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="l2fast.daemon")
    pair.link = 16000  # its receive buffers hold 9000-byte frames
    assert wait_for(lambda: "restart it to use 16000" in caplog.text, 3.0)
    assert pair.own_mtu() == 9000
    pair.link = 1000  # below MIN_MTU (1280)
    assert wait_for(lambda: "l2fast needs an MTU of 1280 at least" in caplog.text, 3.0)
    assert pair.own_mtu() == 9000 and pair.mtu_bravo_sees() == 9000


def test_the_node_refuses_an_mtu_outside_the_protocol_range(pair: Pair) -> None:
    engine = pair.daemons[1].runner.engine
    with pytest.raises(L2fastError, match=r"outside 1280\.\.65535"):
        engine.set_mtu(1279, 0.0)
    with pytest.raises(L2fastError, match=r"outside 1280\.\.65535"):
        engine.set_mtu(65536, 0.0)


def test_a_lost_link_is_logged_and_named_by_the_sessions_that_time_out(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    # A pulled cable: sending does not even fail, so only reading the interface tells.
    caplog.set_level(logging.INFO, logger="l2fast.daemon")
    assert pair.request(0, "chat", peer="bravo", text="before")["delivered"]
    alpha = pair.hub.sockets[bytes([2, 0, 0, 0, 0, 1])]
    alpha.no_carrier, pair.up = True, False
    assert wait_for(lambda: "fake0 lost its link (down, or no carrier)" in caplog.text, 3.0)
    blamed = "this node's interface fake0 lost its link (down, or no carrier) meanwhile"
    assert wait_for(lambda: blamed in caplog.text, 5.0)  # the chat session timed out
    assert caplog.text.count("lost its link (down, or no carrier): nothing is sent") == 1
    status = pair.request(0, "status")["status"]
    assert status["link"] is False and "NO LINK" in status_lines(status)[0]
    alpha.no_carrier, pair.up = False, True
    assert wait_for(lambda: "fake0 has its link again" in caplog.text, 3.0)
    assert pair.request(0, "chat", peer="bravo", text="after")["delivered"]
    status = pair.request(0, "status")["status"]
    assert status["link"] is True and "LINK" not in status_lines(status)[0]
