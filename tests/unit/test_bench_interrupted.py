"""`l2fast bench` interrupted (Ctrl-C) prints the summary of the intervals measured so far, as
iperf3 does, instead of nothing (found by a review: with --json stdout stayed empty)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from l2fast import cli
from l2fast.commands import bench

INTERVALS = [
    {"start": 0.0, "end": 1.0, "seconds": 1.0, "bytes": 1_250_000_000, "gbit_per_s": 10.0,
     "frames_per_s": 100_000, "retransmits": 2, "kernel_drops": 0, "sender_cpu_pct": 90.0,
     "receiver_cpu_pct": 50.0},
    {"start": 1.0, "end": 2.0, "seconds": 1.0, "bytes": 2_500_000_000, "gbit_per_s": 20.0,
     "frames_per_s": 200_000, "retransmits": 1, "kernel_drops": 3, "sender_cpu_pct": 100.0,
     "receiver_cpu_pct": None},
]  # fmt: skip


def interrupted_after_two(
    args: Any, request: Any, quiet: bool, intervals: list[dict[str, Any]], final: Any
) -> None:
    intervals.extend(INTERVALS)
    raise KeyboardInterrupt


@pytest.mark.parametrize("mode", ["text", "--json", "--json-stream"])
def test_an_interrupted_run_prints_what_it_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    monkeypatch.setattr(bench, "_stream", interrupted_after_two)
    argv = ["bench", "h2", "-t", "10"] + ([] if mode == "text" else [mode])
    assert cli.main(argv) == 130
    out = capsys.readouterr().out
    if mode == "text":
        assert "interrupted" in out.splitlines()[-1] and "15.000" in out.splitlines()[-1]
        return
    last = out.strip().splitlines()[-1] if mode == "--json-stream" else out
    result = json.loads(last)
    result = result["data"] if mode == "--json-stream" else result
    end = result["end"]
    assert result["interrupted"] is True and len(result["intervals"]) == 2
    assert (end["seconds"], end["bytes"], end["gbit_per_s"]) == (2.0, 3_750_000_000, 15.0)
    assert (end["retransmits"], end["kernel_drops"]) == (3, 3)
    assert end["sender_cpu_pct"] == 95.0 and end["receiver_cpu_pct"] is None


class StreamClient:
    """The node's side of one bench request: the messages it streams back."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def stream(self, request: Any, silence: float) -> Any:
        return iter(self.messages)


def test_a_refused_bench_prints_no_table_header_above_its_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    start = {"event": "start", "session": "0x00000009", "mtu": 9000}
    refused = {"done": True, "success": False, "error": "peer refused the stream: refused"}
    monkeypatch.setattr(bench, "connect", lambda *a, **k: StreamClient([start, refused]))
    assert cli.main(["bench", "h2", "-t", "1"]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == ["bench to h2: session 0x00000009, MTU 9000"]
    assert "refused" in out.err and "hint" not in out.err


def test_the_table_header_comes_with_the_first_interval(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    start = {"event": "start", "session": "0x00000009", "mtu": 9000}
    messages = [start, *({"event": "interval", **i} for i in INTERVALS)]
    messages.append({"done": True, "success": True, "mtu": 9000, "end": INTERVALS[1]})
    monkeypatch.setattr(bench, "connect", lambda *a, **k: StreamClient(messages))
    assert cli.main(["bench", "h2", "-t", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["interval", "s"] and lines.count(lines[1]) == 1


def test_a_bench_that_reached_nobody_says_how_to_check_the_peer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped MAC: no session opened. A refusal after one opened (above) gets no such hint.
    error = "the session failed: no answer from 02:4c:32:00:00:63 to open a session within 5 s"
    failed = {"done": True, "success": False, "error": error}
    monkeypatch.setattr(bench, "connect", lambda *a, **k: StreamClient([failed]))
    assert cli.main(["bench", "02:4c:32:00:00:63", "-t", "1"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"l2fast: error: {error}",
        f"l2fast: hint: {bench.NOT_REACHED_HINT}",
    ]
