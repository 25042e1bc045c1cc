"""A daemon logs the nodes the LAN key check refuses: once each, a line per period at most.

Found probing a keyed lab: a node started with another key was refused and counted
(`bad_auth`), but the log of the daemons it could not talk to said nothing about it.
Two daemons with different keys on the in-memory segment; the period is shortened.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2fast.daemon import daemon as daemon_module
from l2fast.daemon.control import control_address
from l2fast.daemon.daemon import Daemon
from l2fast.daemon.options import DaemonOptions
from l2fast.node.auth import LanKey
from tests.fake_wire import FakeHub
from tests.unit.test_daemon_service import FAST, wait_for


@pytest.fixture
def keyed_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Daemon]]:
    monkeypatch.setattr(daemon_module, "REFUSAL_LOG_S", 0.3)
    # HELLOs every 0.2 s: each period of the log sees several refused ones.
    config = dataclasses.replace(FAST, hello_interval=0.2)
    hub = FakeHub()
    daemons: list[Daemon] = []
    threads: list[threading.Thread] = []
    for index, secret in ((1, b"a" * 32), (2, b"b" * 32)):
        rng = random.Random(index)
        daemon = Daemon(
            hub.socket(index),
            f"node{index}",
            DaemonOptions(recv_dir=str(tmp_path / str(index)), keep_parts_days=0),
            address=control_address(f"test-{uuid.uuid4().hex[:12]}"),
            config=config,
            key=LanKey(secret, nonces=rng.randbytes),
            rng=rng,
        )
        thread = threading.Thread(target=daemon.serve, daemon=True)
        thread.start()
        daemons.append(daemon)
        threads.append(thread)
    try:
        yield daemons
    finally:
        for d in daemons:
            d.stop()
        for t in threads:
            t.join(10)
            assert not t.is_alive(), "a daemon did not stop"
        hub.close()


def test_a_node_with_another_key_is_logged_once_while_it_stays_refused(
    keyed_pair: list[Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="l2fast.daemon")
    told = (
        "02:00:00:00:00:02 was not heard: its frames were sealed with another LAN key (compare "
        "the key ids `l2fast status` shows on both hosts); `l2fast status` counts the frames "
        "refused"
    )
    assert wait_for(lambda: told in caplog.text, 5.0), caplog.text
    refused_before = keyed_pair[0].runner.engine.drops["bad_auth"]
    # Several more periods, each with refused HELLOs: told once, not once a period.
    assert wait_for(
        lambda: keyed_pair[0].runner.engine.drops["bad_auth"] >= refused_before + 5, 5.0
    )
    assert caplog.text.count(told) == 1
