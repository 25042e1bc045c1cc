"""`l2fast bench PEER` on the lab (issue 6): the CI smoke test and the output formats.

A 2-host lab with a daemon in h2 only: h1's command runs its own engine (no daemon there), as
a user with nothing set up on h1 would. Every test stops the daemons and removes its lab.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from node_helpers import NodeLab

from l2fast.lab import netns

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root

INTERVAL_KEYS = {
    "start",
    "end",
    "seconds",
    "bytes",
    "gbit_per_s",
    "frames_per_s",
    "frames_sent",
    "retransmits",
    "kernel_drops",
    "sender_cpu_pct",
    "receiver_cpu_pct",
}


@pytest.fixture
def lab(labs: LabFactory, tmp_path: Path) -> Iterator[NodeLab]:
    node = NodeLab(labs.up(hosts=2, mtu=9000), tmp_path)
    try:
        rx = tmp_path / "rx-h2"
        rx.mkdir()
        node.start_daemon("h2", "--accept", "ask", "--recv-dir", str(rx))
        node.wait_ready("h2")
        yield node
    finally:
        try:
            node.stop_all()
        finally:
            netns.down(node.record.name)


def test_bench_json_smoke(lab: NodeLab, tmp_path: Path) -> None:
    """The CI smoke test: 2 s, one JSON object, non-zero throughput, the MTU, every field."""
    result = lab.cli("h1", "bench", "h2", "-t", "2", "--json", "-I", "eth0", timeout=40)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    out: dict[str, Any] = json.loads(result.stdout)
    assert out["mtu"] == 9000
    assert out["start"]["mode"] == "reliable"
    intervals = out["intervals"]
    assert len(intervals) >= 2
    for rep in intervals:
        assert rep.keys() >= INTERVAL_KEYS, rep
    end = out["end"]
    assert end.keys() >= INTERVAL_KEYS
    assert end["gbit_per_s"] > 0 and end["bytes"] > 0 and end["frames_per_s"] > 0
    assert end["wire_gbit_per_s"] > end["gbit_per_s"]  # headers counted as --raw counts them
    assert end["wire_gbit_per_s"] > end["gbit_per_s"]  # headers counted as --raw counts them
    assert end["retransmits"] >= 0 and end["kernel_drops"] >= 0
    assert 1.8 <= end["seconds"] <= 3.0
    assert end["sender_cpu_pct"] > 0
    # The receiver's CPU comes back in the bench segments' FILE_RESULT.
    assert end["receiver_segments"] >= 1 and end["receiver_cpu_pct"] > 0
    # Nothing was written, and nothing waits in the inbox under --accept ask.
    assert not list((tmp_path / "rx-h2").iterdir())
    assert lab.json("h2", "inbox", "--json") == []


def test_bench_json_stream_and_text(lab: NodeLab) -> None:
    result = lab.cli("h1", "bench", "h2", "-t", "1", "-i", "0.25", "--json-stream", "-I", "eth0")
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [x["event"] for x in lines[:-1]] == ["interval"] * (len(lines) - 1)
    assert len(lines) - 1 >= 3
    assert lines[-1]["event"] == "end" and lines[-1]["data"]["end"]["gbit_per_s"] > 0
    assert all(x["data"].keys() >= INTERVAL_KEYS for x in lines[:-1])
    text = lab.cli("h1", "bench", "h2", "-t", "0.5", "-I", "eth0")
    assert text.returncode == 0, text.stderr
    assert "(summary)" in text.stdout and "MTU 9000" in text.stdout


def test_bench_reverse_and_raw(lab: NodeLab) -> None:
    # -R: h2's daemon sends back to h1's command (its own engine, which accepts no files).
    rev = lab.cli("h1", "bench", "h2", "-R", "-t", "1.5", "-i", "0.5", "--json", "-I", "eth0")
    assert rev.returncode == 0, rev.stderr + lab.log_tail("h2")
    back = json.loads(rev.stdout)
    assert back["start"]["reverse"] is True and back["mtu"] == 9000
    assert len(back["intervals"]) >= 2
    assert back["end"]["gbit_per_s"] > 0 and back["end"]["receiver_cpu_pct"] > 0
    assert all(iv["start"] < 1.4 for iv in back["intervals"]), back["intervals"]
    assert back["end"]["end"] < 1.95, back["end"]
    # A run ends with the stream's last frames, not at one more interval's tick: `-R -t 1`
    # reported a near-empty second interval and a summary over 2 s, half the throughput.
    one = lab.cli("h1", "bench", "h2", "-R", "-t", "1", "--json", "-I", "eth0")
    assert one.returncode == 0, one.stderr + lab.log_tail("h2")
    short = json.loads(one.stdout)
    assert [iv["start"] for iv in short["intervals"]] == [0.0], short["intervals"]
    assert short["end"]["end"] < 1.45, short["end"]
    assert back["end"].keys() >= INTERVAL_KEYS
    # The sending side's totals came back in the bench request's FILE_RESULT.
    assert back["end"]["frames_sent"] > 0 and back["end"]["retransmits"] >= 0
    assert back["end"]["sender_cpu_pct"] > 0 and back["end"]["sender_cpu_s"] > 0
    assert "bench request from" in lab.log("h2").read_text()
    # --raw: h2's daemon counts the blast (a bench/raw offer), h1 blasts full-size frames.
    raw = lab.cli("h1", "bench", "h2", "--raw", "-t", "1", "-i", "0.5", "--json", "-I", "eth0")
    assert raw.returncode == 0, raw.stderr + lab.log_tail("h2")
    out = json.loads(raw.stdout)
    assert out["start"]["mode"] == "raw" and out["mtu"] == 9000
    end = out["end"]
    assert end["frames_sent"] > 0 and end["frame_size"] == 9014
    assert 0 < end["frames_arrived"] <= end["frames_sent"] and end["gbit_per_s"] > 0
    assert end["lost_frames"] == end["frames_sent"] - end["frames_arrived"]
    assert end["kernel_drops"] >= 0 and end["bad_frames"] == 0
    assert len(out["intervals"]) >= 2


def test_bench_refused_by_accept_none(labs: LabFactory, tmp_path: Path) -> None:
    node = NodeLab(labs.up(hosts=2), tmp_path)
    try:
        rx = tmp_path / "rx"
        rx.mkdir()
        node.start_daemon("h2", "--accept", "none", "--recv-dir", str(rx))
        node.wait_ready("h2")
        result = node.cli("h1", "bench", "h2", "-t", "1", "-I", "eth0")
        assert result.returncode == 1
        assert "refused the bench stream" in result.stderr, result.stderr
        back = node.cli("h1", "bench", "h2", "-R", "-t", "1", "-I", "eth0")
        assert back.returncode == 1
        assert "refused the bench request" in back.stderr, back.stderr
    finally:
        try:
            node.stop_all()
        finally:
            netns.down(node.record.name)


def test_bench_between_daemons(lab: NodeLab, tmp_path: Path) -> None:
    """With a daemon on h1 too (accepting no files), its node sends and, with -R, receives."""
    rx1 = tmp_path / "rx-h1"
    rx1.mkdir()
    lab.start_daemon("h1", "--accept", "none", "--recv-dir", str(rx1))
    lab.wait_ready("h1")
    fwd = lab.cli("h1", "bench", "h2", "-t", "1", "-i", "0.5", "--json")
    assert fwd.returncode == 0, fwd.stderr + lab.log_tail("h1")
    assert json.loads(fwd.stdout)["end"]["gbit_per_s"] > 0
    rev = lab.cli("h1", "bench", "h2", "-R", "-t", "1", "-i", "0.5", "--json")
    assert rev.returncode == 0, rev.stderr + lab.log_tail("h1") + lab.log_tail("h2")
    assert json.loads(rev.stdout)["end"]["gbit_per_s"] > 0
    assert not list(rx1.iterdir())
