"""Progress line and NDJSON events, driven by a hand-held clock."""

from __future__ import annotations

import io
import json

import pytest

from l2fast.progress import (
    JsonProgress,
    ProgressLine,
    RateMeter,
    format_bytes,
    format_eta,
    format_rate,
)

GIB = 1 << 30


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"), (GIB * 2, "2.00 GiB")],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (None, "-- bit/s"),
        (float("inf"), "-- bit/s"),
        (10, "80 bit/s"),
        (125_000, "1.00 Mbit/s"),
        (117_625_000, "941 Mbit/s"),
        (1_176_250_000, "9.41 Gbit/s"),
    ],
)
def test_format_rate(rate: float | None, text: str) -> None:
    assert format_rate(rate) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "--:--"),
        (-1, "--:--"),
        (0, "0:00"),
        (42.4, "0:42"),
        (725, "12:05"),
        (3723, "1:02:03"),
    ],
)
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


def test_rate_meter_smooths_and_follows_a_change() -> None:
    meter = RateMeter(tau=1.0)
    assert meter.update(0, 0.0) is None
    done = 0
    for step in range(1, 11):
        done += 100 if step % 2 else 300  # bursty: 100 and 300 bytes per 0.1 s
        meter.update(done, step * 0.1)
    assert meter.rate is not None and 1000 < meter.rate < 3000  # averaged, not the last burst
    for step in range(11, 111):  # 10 s at 10 000 B/s
        done += 1000
        meter.update(done, step * 0.1)
    assert meter.rate == pytest.approx(10_000, rel=0.01)
    assert meter.update(done + 5, 11.0) == meter.rate  # no time passed: unchanged
    with pytest.raises(ValueError):
        RateMeter(tau=0)


def test_progress_line_shows_percent_bytes_rate_and_eta() -> None:
    clock = Clock()
    out = Tty()
    line = ProgressLine(2 * GIB, label="big.iso", stream=out, clock=clock, width=100)
    clock.now += 1.0
    assert line.update(GIB)
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\x1b[K")
    assert "big.iso" in text and "50.0%" in text and "1.00 GiB / 2.00 GiB" in text
    assert "8.59 Gbit/s" in text and "ETA 0:01" in text


def test_progress_line_redraws_at_most_ten_times_a_second() -> None:
    clock = Clock()
    out = Tty()
    line = ProgressLine(10_000, stream=out, clock=clock)
    drawn = 0
    for i in range(1000):  # 1000 updates over 1 s
        clock.now += 0.001
        drawn += line.update(i * 10)
    assert 9 <= drawn <= 11
    assert out.getvalue().count("\r") == drawn
    line.finish(10_000)
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("100.0%  9.77 KiB / 9.77 KiB") and last.endswith("ETA 0:00\x1b[K\n")


def test_progress_line_is_off_without_a_terminal_or_when_quiet() -> None:
    clock = Clock()
    plain = io.StringIO()
    line = ProgressLine(100, stream=plain, clock=clock)
    clock.now += 1
    assert not line.update(50)
    line.finish(100)
    line.clear()
    assert plain.getvalue() == ""
    tty = Tty()
    quiet = ProgressLine(100, stream=tty, clock=clock, quiet=True)
    clock.now += 1
    assert not quiet.update(50)
    quiet.finish(100)
    assert tty.getvalue() == ""
    forced = ProgressLine(100, stream=plain, clock=clock, enabled=True)
    assert forced.update(1)


def test_progress_line_escapes_and_shortens_the_label() -> None:
    clock = Clock()
    out = Tty()
    line = ProgressLine(
        100, label="x\x1b]0;pwned\x07" + "y" * 200, stream=out, clock=clock, width=80
    )
    clock.now += 1
    line.update(10)
    text = out.getvalue()
    assert "\x07" not in text and text.count("\x1b") == 1  # only our own clear-to-end-of-line
    shown = text.removeprefix("\r").removesuffix("\x1b[K")
    assert len(shown) < 80 and shown.startswith("...yyy")
    line.clear()
    assert out.getvalue().endswith("\r\x1b[K")


def test_progress_line_with_a_growing_total_and_an_empty_transfer() -> None:
    clock = Clock()
    line = ProgressLine(0, stream=Tty(), clock=clock, width=200)
    assert "100.0%" in line.render(0, clock.now)
    clock.now += 1
    line.update(50, total=200)
    assert "25.0%" in line.render(50, clock.now)


def test_json_progress_events() -> None:
    clock = Clock()
    out = io.StringIO()
    events = JsonProgress(out, clock=clock, interval=0.5)
    printed = 0
    for step in range(1, 21):  # 2 s in steps of 0.1 s, 125 MB per step = 10 Gbit/s
        clock.now += 0.1
        printed += events.progress(step * 125_000_000, 2_500_000_000, path="f") is not None
    assert printed == 4
    final = events.final(n_bytes=2_500_000_000, digest="ab" * 32, verified=True, resent_bytes=0)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 5
    first = lines[0]
    assert first["event"] == "progress" and first["path"] == "f"
    assert first["bytes"] == 125_000_000 and first["total"] == 2_500_000_000
    assert first["percent"] == 5.0
    assert lines[-2]["gbit_per_s"] == pytest.approx(10.0)
    assert lines[-2]["bytes"] == 2_000_000_000  # at 1.6 s
    assert lines[-2]["eta_seconds"] == pytest.approx(0.4, abs=0.01)
    assert lines[-1] == final
    assert final["event"] == "done" and final["seconds"] == pytest.approx(2.0)
    assert final["bytes"] == 2_500_000_000 and final["gbit_per_s"] == pytest.approx(10.0)
    assert final["digest"] == "ab" * 32 and final["verified"] is True and final["resent_bytes"] == 0


def test_json_final_with_no_time_elapsed() -> None:
    clock = Clock()
    out = io.StringIO()
    record = JsonProgress(out, clock=clock).final(n_bytes=0, digest="", verified=False)
    assert record["gbit_per_s"] == 0.0 and record["seconds"] == 0.0
    assert json.loads(out.getvalue())["verified"] is False
