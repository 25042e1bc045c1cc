"""A file offered to a daemon that asks a person (PROTOCOL.md §FILE_HELD), on the namespace lab.

With the receiver's default policy (`ask`) the sender is told at once that a person must
decide, with the inbox number to accept there, and hears that it is still waiting every few
seconds (so its silence timeout never fires); `l2fast accept ID` there completes the send,
verified, and `l2fast reject ID` ends it with exit status 1 and the receiver's reason; Ctrl-C
while it waits cancels cleanly and withdraws the offer.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from node_helpers import wait_until
from test_send_lab import SendLab, make_file, make_lab, sha256

__all__ = ["make_lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.root

MIB = 1 << 20
HELD_WITHIN_S = 8.0  # the offer goes out once the session is open: well under a second
WAITING_WITHIN_S = 8.0  # the node repeats `waiting` every 5 s while the offer is held
DONE_WITHIN_S = 20.0


class Events:
    """The NDJSON events of a running `send --json`, read as they come (bounded waits)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self.seen: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                self.seen.append(event)
                if event["event"] == kind:
                    return event
        raise AssertionError(f"no {kind!r} event within {timeout} s; seen: {self.seen}")

    def finish(self, timeout: float) -> tuple[int, dict[str, Any], str]:
        """Exit status, final event and stderr once the command ends."""
        done = self.wait_for("done", timeout)
        code = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        return code, done, self.proc.stderr.read()

    def close(self) -> None:
        """Kill the command if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def held_send(lab: SendLab, src: Path) -> tuple[Events, dict[str, Any], int]:
    """Start `send h2 SRC --json` from h1; wait for its `held` event and return it with the
    matching offer id in h2's inbox."""
    events = Events(lab.send_bg("h1", "h2", src))
    held = events.wait_for("held", HELD_WITHIN_S)
    (offer,) = lab.json("h2", "inbox")
    assert offer["path"] == src.name
    assert held["path"] == src.name and held["pending_id"] == offer["id"], held
    assert f"l2fast accept {offer['id']}" in held["text"]
    return events, held, int(offer["id"])


def test_held_offer_is_reported_then_accepted(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    lab.daemon("h1")  # the sending daemon forwards FILE_HELD and repeats `waiting`
    rx = lab.daemon("h2", accept=None)  # the default policy: ask
    src = make_file(tmp_path / "held.bin", 3 * MIB + 5, 41)
    events, held, pid = held_send(lab, src)
    try:
        waiting = events.wait_for("waiting", WAITING_WITHIN_S)
        assert waiting["held"] == [{"path": "held.bin", "pending_id": pid}], waiting
        assert not (rx / "held.bin").exists()
        held_for = time.monotonic() - events.started
        lab.ok("h2", "accept", str(pid))
        code, done, err = events.finish(DONE_WITHIN_S)
    finally:
        events.close()
    assert code == 0, err + lab.log_tail("h2")
    assert done["verified"] is True and done["digest"] == sha256(src)
    # The wait for the person is reported apart and left out of the transfer's time and rate.
    assert done["held_seconds"] >= held_for - 1.0, (done, held_for)
    assert done["seconds"] < done["held_seconds"], done
    assert [e for e in events.seen if e["event"] == "held"] == [held]  # once per file
    assert sha256(rx / "held.bin") == sha256(src)


def test_held_offer_rejected_ends_the_send_with_the_reason(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2", accept=None)
    src = make_file(tmp_path / "nope.bin", MIB, 42)
    events, _, pid = held_send(lab, src)  # no daemon in h1: the command is the sender
    try:
        lab.ok("h2", "reject", str(pid))
        code, done, err = events.finish(DONE_WITHIN_S)
    finally:
        events.close()
    assert code == 1, err
    assert done["verified"] is False
    assert "refused" in done["error"] and "refused by the user" in done["error"], done
    assert "refused by the user" in err
    assert not (rx / "nope.bin").exists()


def test_ctrl_c_while_held_cancels_cleanly(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    lab.daemon("h1")
    lab.daemon("h2", accept=None)
    src = make_file(tmp_path / "later.bin", MIB, 43)
    events, _, _ = held_send(lab, src)
    try:
        events.proc.send_signal(signal.SIGINT)
        code = events.proc.wait(DONE_WITHIN_S)
        assert events.proc.stderr is not None
        err = events.proc.stderr.read()
    finally:
        events.close()
    assert code == 130, err
    assert "l2fast: error: interrupted" in err and "Traceback" not in err, err
    assert "send it again" in err, err  # what to do next
    # The sender's session closed, so the receiver forgets the offer.
    assert wait_until(lambda: lab.json("h2", "inbox") == [], 10, 0.2), lab.log_tail("h2")


@pytest.mark.parametrize("change", ["truncated", "modified"])
def test_a_source_changed_while_held_fails_the_send_not_the_daemon(
    make_lab: Any, tmp_path: Path, change: str
) -> None:
    """The sending daemon reads a source through a mapping. A file truncated under it made
    the next read of a page past its new end a SIGBUS, which killed the daemon (and every
    transfer and chat with it): now the send fails, saying what happened, and the daemon
    goes on. A file modified before its digest is taken fails the same way, rather than as a
    digest mismatch at the receiver. Holding the offer makes the change land before a byte
    is read."""
    lab = make_lab(mtu=9000)
    lab.daemon("h1")
    rx = lab.daemon("h2", accept=None)
    src = make_file(tmp_path / "moving.bin", 8 * MIB, 44)
    events, _, pid = held_send(lab, src)
    try:
        if change == "truncated":
            os.truncate(src, MIB)
        else:
            with src.open("r+b") as f:
                f.seek(3 * MIB)
                f.write(b"\x00" * 4096)
            os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))  # mtime surely moves
        lab.ok("h2", "accept", str(pid))
        code, done, err = events.finish(DONE_WITHIN_S)
    finally:
        events.close()
    assert code == 1, err
    assert f"it was {change} while it was being sent" in done["error"], done
    assert "Traceback" not in err and "send it again once nothing writes to it" in err, err
    assert "what arrived is kept" not in err, err  # resuming would not help: no such hint
    assert lab.daemons["h1"].poll() is None, lab.log_tail("h1")  # the sending daemon lives
    assert not (rx / "moving.bin").exists()
    # The same daemon sends the file once it is whole again, verified.
    make_file(src, 2 * MIB, 45)
    events, _, pid = held_send(lab, src)
    try:
        lab.ok("h2", "accept", str(pid))
        code, done, err = events.finish(DONE_WITHIN_S)
    finally:
        events.close()
    assert code == 0, err + lab.log_tail("h1")
    assert done["verified"] is True and sha256(rx / "moving.bin") == sha256(src)
