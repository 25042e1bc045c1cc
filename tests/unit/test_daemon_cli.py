"""The node commands without a network: escaping, interface choice, arguments, privileges."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from l2fast.commands.chat import InteractiveChat, entry_line, result_lines
from l2fast.commands.ping import summary_json, summary_lines
from l2fast.daemon.display import escape_text, looks_like_mac, parse_mac
from l2fast.daemon.interfaces import NoInterface, choose_interface, has_cap_net_raw
from l2fast.errors import UnknownInterface
from l2fast.native import InterfaceInfo
from l2fast.node.pingstats import RttStats

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "l2fast", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)


# --- escaping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, 100% ascii", "plain text, 100% ascii"),
        ("héllo wörld 😀 日本", "héllo wörld 😀 日本"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),  # clear screen, colour
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # window title (OSC ... BEL)
        ("\x9b31m", "\\x9b31m"),  # the one-byte C1 CSI
        ("line1\nline2\r\t", "line1\\nline2\\r\\t"),  # no forged second line
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("sep\u2028x", "sep\\u2028x"),
        ("del\x7f nul\x00", "del\\x7f nul\\x00"),
        (b"bytes \xff\xfe \x1b", "bytes \\xff\\xfe \\x1b"),  # not UTF-8: shown, not decoded
    ],
)
def test_escape_text(raw: str | bytes, shown: str) -> None:
    assert escape_text(raw) == shown


def test_escape_text_output_has_no_control_characters() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    out = escape_text(every)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in out)


def test_parse_mac() -> None:
    assert parse_mac("02:4C:32:00:00:0a") == bytes([2, 0x4C, 0x32, 0, 0, 10])
    assert parse_mac("02-4c-32-00-00-0a") == bytes([2, 0x4C, 0x32, 0, 0, 10])
    assert parse_mac("2:4c:32:0:0:a") == bytes([2, 0x4C, 0x32, 0, 0, 10])  # as `ip` accepts
    for bad in ("h2", "02:4c:32:00:00", "02:4c:32:00:00:0g", "024c3200000a", "", "2::0:0:0:1"):
        assert parse_mac(bad) is None


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("02:4c:32:00:00", True),
        ("02:4c:32:00:00:zz", True),
        ("02-4c-32-00-00-02-07", True),
        ("h2", False),
        ("bob", False),
        ("my:laptop", False),
        ("alice@desk", False),
    ],
)
def test_a_broken_mac_is_told_from_a_name(text: str, meant: bool) -> None:
    assert looks_like_mac(text) is meant


def test_printed_chat_lines_are_escaped() -> None:
    entry = {"mac": "02:00:00:00:00:01", "name": "ev\x1bil", "time": 0.0, "text": "a\nb"}
    line = entry_line(entry)
    assert "\x1b" not in line and "\n" not in line
    assert line.endswith("ev\\x1bil (02:00:00:00:00:01): a\\nb")
    report = result_lines([{"mac": "m", "name": "x\x07", "delivered": False, "error": "timeout"}])
    assert report == ["NOT delivered to x\\x07 (m): timeout"]

    # By name, nameless ones after, failures last: not in the order the answers came.
    def result(name: str, mac: str, delivered: bool = True) -> dict[str, Any]:
        return {"mac": mac, "name": name, "delivered": delivered, "error": "timeout"}

    answers = [result("n10", "0a"), result("", "0c"), result("n2", "02", False), result("n1", "01")]
    assert result_lines(answers) == [
        "delivered to n1 (01)",
        "delivered to n10 (0a)",
        "delivered to 0c",
        "NOT delivered to n2 (02): timeout",
    ]


# --- interface choice ---------------------------------------------------------------------


def iface(name: str, up: bool = True, mac: bytes = b"\x02\0\0\0\0\x01") -> InterfaceInfo:
    return InterfaceInfo(name, 1, 1500, up, mac)


def chooser(infos: list[InterfaceInfo]) -> dict[str, Any]:
    table = {i.name: i for i in infos}

    def info(name: str) -> InterfaceInfo:
        if name not in table:
            raise UnknownInterface(name, sorted(table))
        return table[name]

    return {"names": lambda: sorted(table), "info": info}


def test_the_only_interface_up_is_chosen() -> None:
    infos = [iface("lo", mac=bytes(6)), iface("eth0"), iface("eth1", up=False)]
    assert choose_interface(None, **chooser(infos)) == "eth0"


def test_several_interfaces_up_is_an_error_listing_them() -> None:
    infos = [iface("lo", mac=bytes(6)), iface("eth0"), iface("wlan0")]
    with pytest.raises(NoInterface) as info:
        choose_interface(None, **chooser(infos))
    assert "eth0, wlan0" in info.value.message and "--interface IFACE" in (info.value.hint or "")


def test_no_interface_up_is_an_error_listing_what_exists() -> None:
    infos = [iface("lo", mac=bytes(6)), iface("eth0", up=False), iface("tun0", mac=bytes(6))]
    with pytest.raises(NoInterface) as info:
        choose_interface(None, **chooser(infos))
    assert "eth0 (down, mtu 1500)" in (info.value.hint or "")


def test_a_named_interface_must_exist() -> None:
    infos = [iface("eth0")]
    assert choose_interface("eth0", **chooser(infos)) == "eth0"
    with pytest.raises(UnknownInterface, match="no network interface named 'eth9'"):
        choose_interface("eth9", **chooser(infos))


def test_cap_net_raw_is_read_from_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000002000\n")
    assert has_cap_net_raw(status) is True
    status.write_text("CapEff:\t0000000000001000\n")
    assert has_cap_net_raw(status) is False
    assert has_cap_net_raw(tmp_path / "missing") is None


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ping", "h2", "-c", "0"], "-c/--count: must be between 1 and 1000000"),
        (["ping", "h2", "-i", "0"], "-i/--interval: must be between 0.001"),
        (["ping", "h2", "-s", "4"], "-s/--size: must be between 12"),
        (["discover", "--timeout", "99"], "--timeout: must be between 0 and 60"),
        (["daemon", "--accept", "maybe"], "invalid choice: 'maybe'"),
        (["chat", "--history", "-n", "0"], "-n/--limit: must be between 1 and 1000"),
        (["ping", "h2", "-i", "abc"], "-i/--interval: must be a number between 0.001 and 3600"),
        (["discover", "--timeout", "x"], "--timeout: must be a number between 0 and 60 seconds"),
        (["bench", "h2", "-t", "0"], "-t/--time: must be between 0.1 and 600 seconds"),
        (["bench", "h2", "-i", "nan"], "-i/--interval: must be between 0.05 and 600 seconds"),
        (["demo", "--file-mib", "-5"], "--file-mib: must be between 1 and 65536 MiB, got -5"),
        (["demo", "--seconds", "0"], "--seconds: must be between 0.1 and 600 seconds"),
        (["demo", "--mtu", "100"], "--mtu: must be between 1280 and 65535, got 100"),
        (["selftest", "--seconds", "0"], "--seconds: must be between 0.1 and 60 seconds"),
    ],
)
def test_argument_errors_are_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_history_takes_no_recipient() -> None:
    result = run_cli("chat", "--history", "h2")
    assert result.returncode == 2  # a usage error, as argparse's
    assert result.stderr.splitlines() == ["l2fast: error: --history takes no recipient or text"]


def test_unknown_interface_is_a_clear_error() -> None:
    result = run_cli("status", "-i", "nosuch0")
    assert result.returncode == 1
    assert "no network interface named 'nosuch0'" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_daemon_says_how_to_start_one() -> None:
    result = run_cli("peers", "-i", "lo")
    assert result.returncode == 1
    assert "no l2fast daemon runs on lo" in result.stderr
    assert "l2fast daemon -i lo" in result.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_daemon_refuses_without_privilege() -> None:
    # As root, drop to nobody; as another user, that user lacks CAP_NET_RAW already.
    result = run_cli("daemon", "-i", "lo", user=65534 if os.geteuid() == 0 else None)
    assert result.returncode == 77, result.stderr
    lines = result.stderr.splitlines()
    assert (
        lines[0] == "l2fast: error: l2fast daemon needs raw Ethernet sockets: root or CAP_NET_RAW"
    )
    assert lines[1].startswith("l2fast: hint: run as root") and len(lines) == 2


def test_selftest_without_privilege_says_it_skipped_raw_sockets() -> None:
    # Not "ok": the raw socket check did not run (found by a review).
    result = run_cli("selftest", "--json", user=65534 if os.geteuid() == 0 else None)
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["raw sockets"]["skipped"] is True
    assert all(c["ok"] and not c["skipped"] for n, c in checks.items() if n != "raw sockets")
    text = run_cli("selftest", user=65534 if os.geteuid() == 0 else None)
    assert any(line.startswith("skip  raw sockets") for line in text.stdout.splitlines())


# --- output formats -----------------------------------------------------------------------


def test_ping_summary_like_ping8() -> None:
    stats = RttStats()
    stats.sent = 4
    for rtt_ns in (100_000, 200_000, 300_000):
        stats.add(rtt_ns)
    lines = summary_lines("h2 (02:00:00:00:00:02)", stats, 3.0)
    assert lines[1] == "4 packets transmitted, 3 received, 25% packet loss, time 3000ms"
    assert lines[2] == "rtt min/avg/max/mdev = 0.100/0.200/0.300/0.082 ms"
    js = summary_json("h2", stats, 3.0, deque([100_000, 200_000, 300_000]))
    assert (js["sent"], js["received"]) == (4, 3)
    assert (js["rtt_min_us"], js["rtt_avg_us"], js["rtt_max_us"]) == (100.0, 200.0, 300.0)
    assert js["rtt_median_us"] == 200.0
    # One stalled echo moves the average, not the median.
    js = summary_json("h2", stats, 3.0, deque([100_000, 110_000, 120_000, 9_000_000]))
    assert js["rtt_median_us"] == 115.0


class RecordingClient:
    """Just enough of a NodeClient for the interactive loop's line handling."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._id = 0

    def new_id(self) -> int:
        self._id += 1
        return self._id

    def send(self, request: dict[str, Any]) -> None:
        self.sent.append(request)


def test_interactive_lines_become_requests(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient()
    chat = InteractiveChat(client, None, False)  # type: ignore[arg-type]
    chat.on_line("hello?")  # no recipient yet
    chat.on_line("/to h2")
    chat.on_line("hi h2")
    chat.on_line("//slash")
    chat.on_line("/all")
    chat.on_line("everyone")
    chat.on_line("/peers")
    chat.on_line("/quit")
    assert [(r["op"], r.get("peer"), r.get("text")) for r in client.sent] == [
        ("chat", "h2", "hi h2"),
        ("chat", "h2", "/slash"),
        ("chat_all", None, "everyone"),
        ("peers", None, None),
    ]
    assert chat.quitting
    chat.on_message({"ok": True, "id": 1, "delivered": True})
    chat.on_message({"ok": False, "id": 2, "error": "no answer"})
    chat.on_message({"ok": True, "event": "chat", "mac": "m", "name": "h3", "time": 0.0,
                     "text": "\x1b[1mbold"})  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[no recipient: /to PEER or /all first]"
    assert "[delivered to h2]" in out and "[not delivered to h2: no answer]" in out
    assert out[-1].endswith("h3 (m): \\x1b[1mbold")
    # The answer to /peers names the nodes the LAN key check refused, escaped.
    unheard = {"macs": {"02:00:00:00:00:0c": "bad_auth"}, "text": "02:00:00:00:00:0c was not "
               "heard: its frames were sealed with another LAN key\x1b[2J"}  # fmt: skip
    chat.on_message({"ok": True, "id": 4, "peers": [], "unheard": unheard})
    assert capsys.readouterr().out.splitlines() == [
        "no peers known",
        "[02:00:00:00:00:0c was not heard: its frames were sealed with another LAN key\\x1b[2J]",
    ]


def test_the_demo_as_a_user_asks_for_sudo_not_a_capability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from l2fast.commands import demo
    from l2fast.errors import NeedsPrivilege

    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)
    with pytest.raises(NeedsPrivilege) as caught:
        demo.run(argparse.Namespace())
    assert caught.value.hint is not None and "sudo l2fast demo" in caught.value.hint
    assert "setcap" not in caught.value.hint


def test_ping_json_without_a_reply_has_no_round_trip_numbers() -> None:
    # They read 0.0, which a script averaging runs took for a very fast link.
    stats = RttStats()
    stats.sent = 3
    js = summary_json("h2", stats, 3.0, deque())
    assert (js["sent"], js["received"], js["loss"]) == (3, 0, 1.0)
    keys = ("rtt_min_us", "rtt_avg_us", "rtt_max_us", "rtt_mdev_us", "rtt_median_us")
    assert all(js[k] is None for k in keys)
