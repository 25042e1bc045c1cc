"""The node on a 3-host lab (issue 4): daemons, discovery, chat, ping, status, the control
socket's access rules, malformed frames, the impairment relay, and commands without a daemon.

One lab and three daemons serve the whole module (they are started once, in the fixture, and
always stopped and removed at its end); the impairment test builds its own relay lab. Every
wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from node_helpers import NodeLab, wait_until

from l2fast.lab import netns
from l2fast.lab.state import Impairment

if TYPE_CHECKING:  # the fixture's type; tests/integration is not a package
    from conftest import LabFactory

pytestmark = pytest.mark.root

MALFORMED = Path(__file__).resolve().parent / "malformed_frames.py"
HELLO_FLOOD = Path(__file__).resolve().parent / "hello_flood.py"
PEER_FIELDS = {"mac", "name", "mtu", "last_seen", "rtt_us"}


def text_of(size: int, seed: int) -> str:
    """`size` bytes of UTF-8: multi-byte characters, newlines and an escape sequence."""
    rng = random.Random(seed)
    alphabet = "abcdefghij klmnö€😀\n\x1b"
    out, n = [], 0
    while n < size:
        ch = rng.choice(alphabet)
        if n + len(ch.encode()) > size:
            ch = "x"
        out.append(ch)
        n += len(ch.encode())
    return "".join(out)


def start_lab(factory: LabFactory, log_dir: Path, **options: Any) -> NodeLab:
    """A 3-host lab with a daemon in each host, all ready."""
    lab = NodeLab(factory.up(hosts=3, **options), log_dir)
    try:
        for host in lab.hosts:
            lab.start_daemon(host)
        for host in lab.hosts:
            lab.wait_ready(host)
        lab.ready_at = time.monotonic()
    except BaseException:
        lab.stop_all()
        netns.down(lab.record.name)
        raise
    return lab


def stop_lab(lab: NodeLab) -> None:
    """Stop the daemons, then remove the lab."""
    try:
        lab.stop_all()
    finally:
        netns.down(lab.record.name)


@pytest.fixture(scope="module")
def node_lab(
    lab_session: LabFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeLab]:
    """Hosts h1, h2, h3 on a bridge, each running `l2fast daemon -i eth0 --name hN`."""
    lab = start_lab(lab_session, tmp_path_factory.mktemp("daemons"))
    try:
        yield lab
    finally:
        stop_lab(lab)


def others(lab: NodeLab, host: str) -> set[str]:
    return {lab.mac(h) for h in lab.hosts if h != host}


# --- discovery --------------------------------------------------------------------------------


def test_each_host_finds_both_others_within_2_s(node_lab: NodeLab) -> None:
    lab = node_lab
    deadline = lab.ready_at + 2.0

    def everyone_known() -> bool:
        return all({p["mac"] for p in lab.json(h, "peers")} == others(lab, h) for h in lab.hosts)

    assert wait_until(everyone_known, max(0.0, deadline - time.monotonic()))
    for host in lab.hosts:
        start = time.monotonic()
        peers = lab.json(host, "discover", "--timeout", "1")
        assert time.monotonic() - start < 5  # 1 s of listening plus the command's start-up
        assert {p["mac"] for p in peers} == others(lab, host)
        for peer in peers:
            assert set(peer) >= PEER_FIELDS
            assert peer["name"] == "h" + peer["mac"][-1] and peer["mtu"] == 1500
            assert abs(peer["last_seen"] - time.time()) < 5
            assert peer["rtt_us"] is not None and 0 < peer["rtt_us"] < 1_000_000


# --- chat -------------------------------------------------------------------------------------


def test_chat_one_to_one_by_name_and_mac(node_lab: NodeLab) -> None:
    lab = node_lab
    before = len(lab.history("h2"))
    result = lab.ok("h1", "chat", "h2", "hello h2")
    assert result.stdout.strip() == f"delivered to h2 ({lab.mac('h2')})"
    lab.ok("h3", "chat", "-i", "eth0", lab.mac("h2"), "from", "h3", "by", "MAC")
    got = [(e["mac"], e["name"], e["text"]) for e in lab.history("h2")[before:]]
    assert got == [(lab.mac("h1"), "h1", "hello h2"), (lab.mac("h3"), "h3", "from h3 by MAC")]


def test_chat_to_all_reports_every_peer(node_lab: NodeLab) -> None:
    lab = node_lab
    report = lab.json("h2", "chat", "--all", "lunch?")
    assert {(r["mac"], r["delivered"]) for r in report["results"]} == {
        (lab.mac("h1"), True),
        (lab.mac("h3"), True),
    }
    text = lab.ok("h2", "chat", "--all", "again").stdout.splitlines()
    assert sorted(text) == [
        f"delivered to h1 ({lab.mac('h1')})",
        f"delivered to h3 ({lab.mac('h3')})",
    ]
    for host in ("h1", "h3"):
        last = lab.history(host)[-2:]
        assert [(e["text"], e["to_all"], e["mac"]) for e in last] == [
            ("lunch?", True, lab.mac("h2")),
            ("again", True, lab.mac("h2")),
        ]


def test_100_kib_message_arrives_whole_and_is_shown_escaped(node_lab: NodeLab) -> None:
    lab = node_lab
    text = text_of(100 * 1024, seed=1)
    lab.ok("h1", "chat", "h3", "-", stdin=text)
    entry = lab.history("h3")[-1]
    assert entry["text"] == text and entry["bytes"] == 100 * 1024
    assert entry["mac"] == lab.mac("h1")
    shown = lab.ok("h3", "chat", "--history", "-n", "1").stdout
    assert "\x1b" not in shown and "\\x1b" in shown and shown.count("\n") == 1


def test_chat_to_a_silent_peer_fails_in_bounded_time(node_lab: NodeLab) -> None:
    lab = node_lab
    start = time.monotonic()
    result = lab.cli("h1", "chat", "02:4c:32:00:00:42", "anyone there?")
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert result.stderr.startswith("l2fast: error: message not delivered to 02:4c:32:00:00:42")
    assert "no answer" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1] == (  # what to find out next
        "l2fast: hint: `l2fast ping 02:4c:32:00:00:42` tells whether it answers at all, and "
        "`l2fast peers` when it was last heard"
    )
    assert elapsed < 15


def test_interactive_chat_shows_messages_as_they_arrive(node_lab: NodeLab) -> None:
    lab = node_lab
    argv = ["ip", "netns", "exec", lab.ns("h2"), sys.executable, "-m", "l2fast", "chat"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen: list[str] = []
    partial = b""

    def line_with(needle: str) -> bool:
        # Raw reads, split here: a buffered readline() could pull two lines into Python's
        # buffer, and the second would then never make the pipe readable again.
        nonlocal partial
        if sel.select(0.1):
            partial += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            *lines, partial = partial.split(b"\n")
            seen.extend(line.decode() + "\n" for line in lines)
        return any(needle in line for line in seen)

    try:
        assert wait_until(lambda: line_with("through the daemon"), 10), seen
        lab.ok("h1", "chat", "h2", "live \x1b[31m message")
        assert wait_until(lambda: line_with("live"), 10), seen
        (shown,) = [line for line in seen if "live" in line]
        assert re.fullmatch(
            rf"\[\d\d:\d\d:\d\d\] h1 \({lab.mac('h1')}\): live \\x1b\[31m message\n", shown
        ), shown
        proc.stdin.write("/quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


# --- ping and status --------------------------------------------------------------------------


def test_ping(node_lab: NodeLab) -> None:
    lab = node_lab
    summary = lab.json("h1", "ping", "h3", "-c", "5", "-i", "0.05", "-s", "1000")
    assert (summary["sent"], summary["received"], summary["loss"]) == (5, 5, 0.0)
    assert 0 < summary["rtt_min_us"] <= summary["rtt_avg_us"] <= summary["rtt_max_us"]
    assert summary["rtt_min_us"] <= summary["rtt_median_us"] <= summary["rtt_max_us"]
    assert summary["rtt_max_us"] < 1_000_000
    out = lab.ok("h2", "ping", lab.mac("h1"), "-c", "2", "-i", "0.05").stdout.splitlines()
    assert out[0] == f"PING h1 ({lab.mac('h1')}) 56 bytes on eth0"
    assert "2 packets transmitted, 2 received, 0% packet loss" in out[-2]
    assert out[-1].startswith("rtt min/avg/max/mdev = ")


def test_status_shows_interface_peers_sessions_and_drops(node_lab: NodeLab) -> None:
    lab = node_lab
    lab.ok("h1", "chat", "h2", "a session for status to show")
    status = lab.status("h1")
    assert (status["interface"], status["mac"], status["mtu"]) == ("eth0", lab.mac("h1"), 1500)
    assert {p["mac"] for p in status["peers"]} == others(lab, "h1")
    assert any(s["peer"] == lab.mac("h2") for s in status["sessions"])  # from the chat tests
    for reason in ("bad_crc", "bad_length", "unknown_type", "unknown_session", "rate_limited"):
        assert reason in status["drops"]
    assert status["counters"]["frames_in"] > 0 and status["counters"]["frames_out"] > 0
    text = lab.ok("h1", "status").stdout
    assert text.startswith(f"interface  eth0  {lab.mac('h1')}  mtu 1500")
    assert "drops      " in text and "sessions   " in text


# --- access and single instance ---------------------------------------------------------------


def test_another_uid_is_refused_on_the_control_socket(node_lab: NodeLab) -> None:
    lab = node_lab
    refused_before = lab.status("h2")["control"]["refused"]
    result = lab.cli("h2", "status", as_nobody=True)
    assert result.returncode == 77  # a permission error, as for raw sockets
    assert result.stderr.splitlines()[0] == (
        "l2fast: error: uid 65534 may not use this l2fast daemon"
    )
    assert "Traceback" not in result.stderr
    assert lab.status("h2")["control"]["refused"] == refused_before + 1


def test_a_second_daemon_on_the_interface_refuses_to_start(node_lab: NodeLab) -> None:
    lab = node_lab
    result = lab.cli("h1", "daemon", "-i", "eth0", "--name", "again", timeout=20)
    assert result.returncode == 1
    assert "another l2fast daemon already serves @l2fast/eth0" in result.stderr
    assert lab.status("h1")["name"] == "h1"  # the first one is untouched


# --- malformed frames -------------------------------------------------------------------------


def test_10000_malformed_frames_are_counted_and_the_daemon_still_answers(
    node_lab: NodeLab,
) -> None:
    lab = node_lab
    before = lab.status("h1")
    argv = ["ip", "netns", "exec", lab.ns("h3"), sys.executable, str(MALFORMED)]
    sent = subprocess.run(
        [*argv, lab.mac("h1"), "10000", "7"], capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 10000

    def counted() -> bool:
        dropped: int = lab.status("h1")["counters"]["frames_dropped"]
        return bool(dropped - before["counters"]["frames_dropped"] >= 10000)

    assert wait_until(counted, 15, 0.2), lab.log_tail("h1")
    after = lab.status("h1")
    grew = {k: after["drops"][k] - before["drops"].get(k, 0) for k in after["drops"]}
    assert after["counters"]["kernel_drops"] == 0
    assert grew["bad_crc"] >= 2500 and grew["unknown_type"] >= 2500
    assert grew["bad_length"] >= 2500
    assert after["counters"]["frames_dropped"] - before["counters"]["frames_dropped"] == 10000
    assert lab.daemons["h1"].poll() is None
    summary = lab.json("h2", "ping", "h1", "-c", "3", "-i", "0.05")
    assert summary["received"] == 3


# --- without a daemon -------------------------------------------------------------------------


def test_commands_without_a_daemon_run_their_own_engine(node_lab: NodeLab) -> None:
    lab = node_lab
    # SIGHUP (its terminal closed) stops it as cleanly as SIGTERM (test_echo_lab stops with
    # that): exit 0, its sessions closed, not killed where it stood.
    assert lab.stop_daemon("h3", signal.SIGHUP) == 0
    log_text = lab.log("h3").read_text()
    assert "received SIGHUP" in log_text and "stopped" in log_text
    result = lab.cli("h3", "status")
    assert result.returncode == 1 and "no l2fast daemon runs on eth0" in result.stderr

    peers = lab.json("h3", "discover", "--name", "h3cli")
    assert {p["mac"] for p in peers} == others(lab, "h3")
    assert all(set(p) >= PEER_FIELDS for p in peers)
    # That command's node is gone, and it never took chat: h1's message to all is not sent
    # to it (it was, and failed after 5 s, for as long as h1 remembered its HELLO).
    assert lab.mac("h3") in {p["mac"] for p in lab.json("h1", "peers")}
    report = lab.json("h1", "chat", "--all", "to the daemons")
    assert [r["mac"] for r in report["results"]] == [lab.mac("h2")], report
    assert report["results"][0]["delivered"]

    text = text_of(100 * 1024, seed=2)
    lab.ok("h3", "chat", "--name", "h3cli", "h1", "-", stdin=text)
    entry = lab.history("h1")[-1]
    assert (entry["mac"], entry["name"], entry["text"]) == (lab.mac("h3"), "h3cli", text)

    report = lab.json("h3", "chat", "--name", "h3cli", "--all", "one-shot to all")
    assert {r["mac"] for r in report["results"] if r["delivered"]} == others(lab, "h3")

    summary = lab.json("h3", "ping", "h2", "-c", "3", "-i", "0.05")
    assert summary["received"] == 3

    out = lab.ok("h3", "chat", "--name", "h3cli", stdin="/to h2\nlive one-shot\n/quit\n")
    assert "with a node of its own" in out.stdout and "[delivered to h2]" in out.stdout
    assert lab.history("h2")[-1]["text"] == "live one-shot"

    def closed_by_h3() -> bool:
        # Its sessions were closed in order when it ended, not left to time out.
        sessions = lab.status("h2")["sessions"]
        return all(s["state"] == "closed" for s in sessions if s["peer"] == lab.mac("h3"))

    assert wait_until(closed_by_h3, 3)


# --- a flood in the log (last of the shared lab: h1 then knows a made-up peer) -------------


def test_a_hello_flood_costs_the_log_a_burst_and_one_summary(node_lab: NodeLab) -> None:
    # Every HELLO with another name was one "peer updated" line: 100,000 of them, 14.5 MB.
    from l2fast.daemon.logflood import FLOOD_BURST, FLOOD_PERIOD_S

    lab = node_lab
    argv = ["ip", "netns", "exec", lab.ns("h3"), sys.executable, str(HELLO_FLOOD)]
    sent = subprocess.run(
        [*argv, lab.mac("h1"), "5000"], capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 5000

    def told() -> bool:
        return "more lines like 'peer %s %s %r mtu %d'" in lab.log("h1").read_text(errors="replace")

    assert wait_until(told, FLOOD_PERIOD_S + 10, 0.5), lab.log_tail("h1")
    log = lab.log("h1").read_text(errors="replace")
    flood_lines = [ln for ln in log.splitlines() if "02:66:6c:6f:6f:64" in ln]
    assert 1 <= len(flood_lines) <= FLOOD_BURST  # of 5000 updates (some may coalesce)
    (summary,) = [ln for ln in log.splitlines() if "more lines like 'peer %s" in ln]
    # The kind is the line's format, whoever it is about: the other peers' updates share it.
    assert int(summary.split(" WARNING ")[1].split()[0]) > 4000
    assert lab.daemons["h1"].poll() is None
    assert lab.json("h2", "ping", "h1", "-c", "2", "-i", "0.05")["received"] == 2


# --- through the impairment relay -------------------------------------------------------------


def test_chat_through_loss_duplication_and_reordering_is_exactly_once_in_order(
    lab_session: LabFactory, tmp_path: Path
) -> None:
    faults = Impairment(loss=0.05, dup=0.05, reorder=0.05, seed=11)
    lab = start_lab(lab_session, tmp_path, impairment=faults)
    try:
        # Every host must know both others before `chat --all` from h3 below (HELLOs cross the
        # same 5 % loss, so the tables fill at different moments).
        for host in ("h1", "h2", "h3"):
            assert wait_until(lambda h=host: len(lab.json(h, "peers")) == 2, 15, 0.2), host
        # Many messages in flight at once on one session: the interactive mode sends each line
        # without waiting for the previous one's acknowledgement.
        lines = [f"m{i:02d} " + text_of(40 * i, seed=i).replace("\n", " ") for i in range(40)]
        script = "/to h2\n" + "".join(line + "\n" for line in lines) + "/quit\n"
        out = lab.ok("h1", "chat", stdin=script, timeout=120).stdout
        assert out.count("[delivered to h2]") == len(lines), out
        big = text_of(100 * 1024, seed=99)
        lab.ok("h1", "chat", "h2", "-", stdin=big)
        report = lab.json("h3", "chat", "--all", "all, through faults")
        assert all(r["delivered"] for r in report["results"]) and len(report["results"]) == 2

        def from_host(host: str) -> list[str]:
            return [e["text"] for e in lab.history("h2") if e["mac"] == lab.mac(host)]

        assert from_host("h1") == [*lines, big]
        assert from_host("h3") == ["all, through faults"]
        assert [e["text"] for e in lab.history("h1")] == ["all, through faults"]
        relay = netns.lab_status(lab.record.name)
        assert relay is not None and relay["relay"]["running"]
    finally:
        stop_lab(lab)
