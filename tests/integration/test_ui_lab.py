"""`l2fast ui` on a real terminal (a pty read back through a terminal emulator) in a 2-host lab:
chat both ways, a file sent with /send and accepted from the other side's interface with
/accept, and leaving with /quit and with Ctrl-C."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from node_helpers import REPO, NodeLab
from pty_screen import PtyScreen

from l2fast.lab import netns

if TYPE_CHECKING:  # the fixture's type; tests/integration is not a package
    from conftest import LabFactory

pytestmark = pytest.mark.root

#: pyte, the emulator the screen is read back with, does not implement the parameterised
#: scroll sequences xterm's terminfo offers curses (CSI n S / T); vt100's has only the
#: single-line ones it does implement. The interface itself runs on any terminfo entry.
TERM = "vt100"


@dataclass
class UiLab:
    nodes: NodeLab
    recv_dir: Path  #: where h2's daemon puts what it accepts


@pytest.fixture(scope="module")
def ui_lab(lab_session: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiLab]:
    """h1 and h2 with daemons; h2 holds offers for a person (`--accept ask`) and receives into
    a directory of the test's own."""
    lab = NodeLab(lab_session.up(hosts=2), tmp_path_factory.mktemp("ui-daemons"))
    recv = tmp_path_factory.mktemp("ui-received")
    try:
        lab.start_daemon("h1")
        lab.start_daemon("h2", "--accept", "ask", "--recv-dir", str(recv))
        for host in lab.hosts:
            lab.wait_ready(host)
        yield UiLab(lab, recv)
    finally:
        try:
            lab.stop_all()
        finally:
            netns.down(lab.record.name)


def ui(lab: NodeLab, host: str, *, columns: int = 110, lines: int = 30) -> PtyScreen:
    argv = ["ip", "netns", "exec", lab.ns(host), "env", f"TERM={TERM}", sys.executable, "-m",
            "l2fast", "ui"]  # fmt: skip
    return PtyScreen(argv, columns=columns, lines=lines, cwd=str(REPO))


def test_chat_send_accept_and_leave_from_the_interface(ui_lab: UiLab, tmp_path: Path) -> None:
    lab = ui_lab.nodes
    source = tmp_path / "photo.bin"
    source.write_bytes(os.urandom(3 << 20))
    one, two = ui(lab, "h1"), ui(lab, "h2", columns=100, lines=26)
    try:
        assert one.wait_for(f"h2  {lab.mac('h2')}  mtu", 15), one.text()
        assert two.wait_for(f"h1  {lab.mac('h1')}  mtu", 15), two.text()
        assert "through the daemon" in one.text()

        # A message to the peer picked with Tab, and one back from the command line.
        one.type("\t")
        assert one.wait_for("to h2>", 5), one.text()
        one.type("hello from the interface\r")
        assert one.wait_for("[delivered to h2]", 15), one.text()
        assert two.wait_for(f"h1 ({lab.mac('h1')}): hello from the interface", 10), two.text()
        lab.ok("h2", "chat", "h1", "back \x1b[31m at you")
        assert one.wait_for(f"h2 ({lab.mac('h2')}): back \\x1b[31m at you", 10), one.text()

        # A file: offered from h1's interface, held at h2, accepted from h2's interface.
        one.type(f"/send {source}\r")
        match = two.wait_match(r"^\s+(\d+)\s+h1 \(.*photo\.bin", 15)
        assert match is not None, two.text()
        assert "OFFERS WAITING" in two.text()
        assert one.wait_for("h2 holds photo.bin until someone there accepts it", 10), one.text()
        two.type(f"/accept {match.group(1)}\r")
        assert two.wait_for("[accepted photo.bin]", 10), two.text()
        assert one.wait_for("Gbit/s, verified]", 30), one.text()
        # The interface draws 109 columns of the 110 and wraps longer lines.
        assert re.search(
            rf"\[sent {re.escape(str(source))} to h2: 3\.00 MiB in [\d.]+ s, [\d.]+ Gbit/s, "
            r"verified\]",
            one.joined(109),
        ), one.text()
        received = ui_lab.recv_dir / "photo.bin"
        assert received.read_bytes() == source.read_bytes()
        # The receiving side's interface tells of the file once it is placed.
        assert two.wait_match(
            r"\[received .*photo\.bin from h1 .* \(3\.00 MiB, verified\)\]", 10
        ), two.text()

        # Leaving: /quit, and Ctrl-C (SIGINT from the terminal), both exit 0.
        one.type("/quit\r")
        two.type("\x03")
        assert one.wait_exit(10) == 0
        assert two.wait_exit(10) == 0
    finally:
        one.close()
        two.close()


def test_a_send_of_a_missing_path_is_shown_as_failed(ui_lab: UiLab) -> None:
    lab = ui_lab.nodes
    screen = ui(lab, "h1")
    try:
        assert screen.wait_for("h2  ", 15), screen.text()
        screen.type("/to h2\r/send /nonexistent/file.bin\r")
        assert screen.wait_for("FAILED", 30), screen.text()
        (line,) = [x for x in screen.text().splitlines() if "FAILED" in x]
        assert "sending /nonexistent/file.bin to h2 FAILED:" in line
        assert "Traceback" not in screen.text()
        screen.type("/quit\r")
        assert screen.wait_exit(10) == 0
    finally:
        screen.close()


def test_a_terminal_that_cannot_address_its_cursor_is_refused() -> None:
    screen = PtyScreen(["env", "TERM=dumb", sys.executable, "-m", "l2fast", "ui"], cwd=str(REPO))
    try:
        assert screen.wait_exit(30) == 1
        assert "this terminal cannot move its cursor (TERM has no 'cup')" in screen.text()
        assert "Traceback" not in screen.text()
    finally:
        screen.close()
