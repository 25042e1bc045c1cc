"""The daemon's log keeps each kind of line, not every repeat of it (l2fast/daemon/logflood.py).

Found by a hostile-peer review: 100,000 refused offers wrote 200 MB of log in 7 s, a HELLO
flood alternating two names 99,999 "peer updated" lines, and a local user's connect loop
142,000 "refused a client" lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from l2fast.daemon import logflood
from l2fast.daemon.logflood import AUDIT, FloodFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


#: What the `logged` fixture gives: the lines written, the filter, its clock, the logger.
Logged = tuple[list[str], FloodFilter, Clock, logging.Logger]


@pytest.fixture
def logged() -> Iterator[Logged]:
    """A logger whose handler has a flood filter (burst 3 per 10 s) and keeps its lines."""
    lines: list[str] = []
    clock = Clock()
    flood = FloodFilter(burst=3, period=10.0, clock=clock, logger="l2fast.test.flood")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    handler.addFilter(flood)
    log = logging.getLogger("l2fast.test.flood")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield lines, flood, clock, log
    finally:
        log.removeHandler(handler)


def test_repeats_past_the_burst_are_counted_and_summed_up_once_the_period_ends(
    logged: Logged,
) -> None:
    lines, flood, clock, log = logged
    for i in range(1000):
        log.info("peer updated %s", i)
        log.warning("refused %r", f"file{i}")
    assert lines[:6] == [
        "peer updated 0", "refused 'file0'", "peer updated 1", "refused 'file1'",
        "peer updated 2", "refused 'file2'",
    ]  # fmt: skip
    assert len(lines) == 6 and flood.left_out == 2 * 997
    clock.now = 9.9
    flood.flush()
    assert len(lines) == 6  # the period is not over
    clock.now = 10.0
    flood.flush()
    assert len(lines) == 8
    assert "997 more lines like 'peer updated %s' were not logged in the last 10 s" in lines[6]
    assert "997 more lines like 'refused %r'" in lines[7]
    # A new period writes its burst again, and a quiet one says nothing.
    log.info("peer updated %s", "again")
    clock.now = 30.0
    flood.flush()
    assert lines[8:] == ["peer updated again"]


def test_the_summary_comes_before_the_next_line_of_its_kind(
    logged: Logged,
) -> None:
    lines, _flood, clock, log = logged
    for i in range(5):
        log.info("chat from %s", i)
    clock.now = 12.0
    log.info("chat from %s", "later")
    assert lines[3].startswith("2 more lines like 'chat from %s' were not logged in the last 12 s")
    assert lines[4:] == ["chat from later"]


def test_audit_lines_are_never_held_back(
    logged: Logged,
) -> None:
    lines, flood, _clock, log = logged
    for i in range(20):
        log.info("received %r", f"f{i}", extra=AUDIT)
    assert len(lines) == 20 and flood.left_out == 0


def test_kinds_are_bounded_even_for_lines_that_are_each_their_own_kind(
    logged: Logged,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines, flood, clock, log = logged
    monkeypatch.setattr(logflood, "MAX_KINDS", 8)
    for i in range(100):
        log.info(f"formatted by the caller {i}")  # what the bound is for
    assert len(flood._kinds) <= 8
    assert len(lines) == 7 + 3  # seven kinds of their own, then three of the shared kind
    clock.now = 10.0
    flood.flush()
    assert "90 more lines like '(lines of other kinds)'" in lines[-1]
    assert not flood._kinds
