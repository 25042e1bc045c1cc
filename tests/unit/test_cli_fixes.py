"""User-facing fixes in the command line: no tracebacks, the right flag in hints, chat's edges.

Most run `python -m l2fast` as a subprocess. Where a node must answer, a fake daemon serves the
control socket of `lo` in this test process (canned replies per request, requests recorded), so
no raw socket, root or network is needed.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from l2fast import cli
from l2fast.commands.chat import INTERACTIVE_HELP, InteractiveChat
from l2fast.daemon import client
from l2fast.daemon.control import (
    DaemonNotRunning,
    MessageBuffer,
    control_address,
    encode_message,
    running_daemons,
)
from l2fast.daemon.interfaces import NoInterface, choose_interface
from l2fast.errors import UnknownInterface
from l2fast.native import InterfaceInfo

REPO = Path(__file__).resolve().parents[2]
H2_MAC = "02:00:00:00:00:02"
H2 = {
    "mac": H2_MAC,
    "name": "h2",
    "node_id": "0" * 16,
    "mtu": 1500,
    "caps": ["chat"],
    "daemon": True,
    "first_seen": 0.0,
    "last_seen": 0.0,
    "rtt_us": 100.0,
}


def run_cli(
    *args: str, stdin: int | IO[Any] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2fast", *args],
        stdin=stdin,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


class FakeDaemon:
    """Just enough of `l2fast daemon` on lo's control socket: one canned reply per op."""

    def __init__(self) -> None:
        self.replies: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(control_address("lo"))
        except OSError as exc:
            self.listener.close()
            if exc.errno == errno.EADDRINUSE:
                pytest.skip("a daemon already serves lo in this network namespace")
            raise
        self.listener.listen()
        self.listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def ops(self) -> list[str]:
        return [r["op"] for r in self.requests]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        conn.sendall(encode_message({"ok": True, "hello": "l2fast", "version": "fake"}))
        inbox = MessageBuffer()
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for request in inbox.feed(data):
                self.requests.append(request)
                canned = self.replies.get(request["op"])
                reply = {"ok": canned is not None, "id": request.get("id"), **(canned or {})}
                if canned is None:
                    reply["error"] = f"the fake daemon has no reply to {request['op']!r}"
                try:
                    conn.sendall(encode_message(reply))
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    fake = FakeDaemon()
    fake.replies["watch"] = {
        "watching": True,
        "name": "fake",
        "mac": "02:00:00:00:00:01",
        "interface": "lo",
        "daemon": True,
    }
    fake.replies["peers"] = {"peers": [H2]}
    try:
        yield fake
    finally:
        fake.close()


# --- 1: interactive chat needs a terminal or a pipe ---------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin_kind", "lines"),
    [
        (
            ["chat", "h2"],
            "file",
            [
                "l2fast: error: no message given, and standard input is a file",
                "l2fast: hint: to send a file's text, use l2fast chat h2 - < FILE",
            ],
        ),
        (
            ["chat"],
            "file",
            [
                "l2fast: error: no message given, and standard input is a file",
                "l2fast: hint: to send a file's text, use l2fast chat PEER - < FILE",
            ],
        ),
        (
            ["chat", "--all"],
            "devnull",
            [
                "l2fast: error: no message given, and standard input is not a terminal or a "
                "pipe (interactive chat reads from one)",
                "l2fast: hint: give the message as arguments (l2fast chat --all TEXT) or from a "
                "file (l2fast chat --all - < FILE)",
            ],
        ),
        (
            ["chat", "--json"],
            "devnull",
            [
                "l2fast: error: --json applies to --history and to a message given on the "
                "command line, not to interactive chat",
            ],
        ),
        (
            ["chat", "-"],
            "file",
            [
                "l2fast: error: - (the message from stdin) needs a recipient before it",
                "l2fast: hint: l2fast chat PEER - < FILE, or l2fast chat --all - < FILE",
            ],
        ),
    ],
)
def test_chat_without_a_message_and_a_file_on_stdin_is_one_error(
    tmp_path: Path, args: list[str], stdin_kind: str, lines: list[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello from a file\n")
    with notes.open("rb") as file:
        result = run_cli(*args, stdin=file if stdin_kind == "file" else subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr  # a usage error, as argparse's
    assert result.stderr.splitlines() == lines


def test_chat_dash_still_reads_the_message_from_a_file(tmp_path: Path, daemon: FakeDaemon) -> None:
    daemon.replies["chat"] = {"msg_id": 7, "peer": H2_MAC, "delivered": True}
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two\n")
    with notes.open("rb") as file:
        result = run_cli("chat", "-i", "lo", "h2", "-", stdin=file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"delivered to h2 ({H2_MAC})\n"
    assert daemon.requests[-1]["text"] == "line one\nline two\n"


# --- 2: a bug is one line, not a traceback ------------------------------------------------


def _failing_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_args: argparse.Namespace) -> int:
        raise RuntimeError("boom\nsecond line")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(handler=failing)


def test_an_unexpected_exception_is_one_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("L2FAST_DEBUG", raising=False)
    _failing_parser(monkeypatch)
    assert cli.main([]) == 70
    assert capsys.readouterr().err.splitlines() == [
        "l2fast: internal error: RuntimeError: boom second line",
        "l2fast: hint: this is a bug in l2fast; rerun as `l2fast --debug ...` for the "
        "traceback, and please report it",
    ]


def test_debug_still_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L2FAST_DEBUG", raising=False)
    _failing_parser(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug"])
    monkeypatch.setenv("L2FAST_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main([])


# --- 3: the interface hint names a flag the command has -----------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "h2", "-I", "nosuch0"],
        ["ping", "h2", "-I", "nosuch0"],
        ["discover", "-i", "nosuch0"],
    ],
)
def test_unknown_interface_hint_names_a_flag_the_command_has(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    error, hint = result.stderr.splitlines()
    assert error == "l2fast: error: no network interface named 'nosuch0'"
    assert hint.endswith("; choose one with --interface IFACE")


def test_every_command_with_an_interface_accepts_the_long_flag() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with_interface = []
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.dest == "interface":
                assert "--interface" in action.option_strings, name
                with_interface.append(name)
    assert {"daemon", "discover", "chat", "ping", "bench", "send", "status"} <= set(with_interface)


def test_interface_choice_hints_name_the_long_flag() -> None:
    infos = {
        "lo": InterfaceInfo("lo", 1, 65536, True, bytes(6)),
        "eth0": InterfaceInfo("eth0", 2, 1500, True, b"\x02\0\0\0\0\x01"),
        "eth1": InterfaceInfo("eth1", 3, 1500, True, b"\x02\0\0\0\0\x02"),
    }

    def info(name: str) -> InterfaceInfo:
        if name not in infos:
            raise UnknownInterface(name, sorted(infos))
        return infos[name]

    with pytest.raises(NoInterface) as several:
        choose_interface(None, lambda: sorted(infos), info)
    assert several.value.hint == "choose one with --interface IFACE"
    del infos["eth0"], infos["eth1"]
    with pytest.raises(NoInterface) as none:
        choose_interface(None, lambda: sorted(infos), info)
    assert (none.value.hint or "").endswith("bring one up or choose one with --interface IFACE")


# --- 4: interactive chat commands, --all and -n -------------------------------------------


class RecordingClient:
    """Just enough of a NodeClient (a daemon's) for the interactive loop's line handling."""

    via_daemon = True

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def new_id(self) -> int:
        return len(self.sent) + 1

    def send(self, request: dict[str, Any]) -> None:
        self.sent.append(request)


def test_an_unknown_slash_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    chat = InteractiveChat(RecordingClient(), None, False)  # type: ignore[arg-type]
    chat.on_line("/bogus")
    chat.on_line("/to")
    chat.on_line("/help")
    assert capsys.readouterr().out.splitlines() == [
        "[unknown command /bogus; to send a line that starts with /, begin it with //]",
        f"[{INTERACTIVE_HELP}]",
        "[/to needs a peer: /to NAME or /to MAC]",
        f"[{INTERACTIVE_HELP}]",
    ]


def test_to_an_unknown_name_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient()
    chat = InteractiveChat(client, None, False)  # type: ignore[arg-type]
    chat.learn([H2])
    chat.on_line("/to h2")  # known by name
    chat.on_line("/to 02:00:00:00:00:09")  # a MAC is always allowed
    assert client.sent == []
    chat.on_line("/to nobody")
    assert client.sent == [{"op": "peers", "id": 1}]  # checked against a fresh table
    chat.on_message({"ok": True, "id": 1, "peers": [H2]})
    assert chat.target == "nobody"
    assert capsys.readouterr().out.splitlines() == [
        "[sending to h2]",
        "[sending to 02:00:00:00:00:09]",
        "[sending to nobody]",
        "[no known peer is named nobody (/peers lists them); messages to it fail unless it "
        "answers within 2 s]",
    ]
    # The peer turned up meanwhile: no warning.
    chat.on_line("/to h3")
    chat.on_message({"ok": True, "id": 2, "peers": [H2, {**H2, "name": "h3"}]})
    assert capsys.readouterr().out.splitlines() == ["[sending to h3]"]


def test_interactive_chat_through_a_pipe(daemon: FakeDaemon) -> None:
    result = run_cli("chat", "-i", "lo", input="/bogus\n/to h2\n/to nobody\n/quit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "[chat on lo as fake (02:00:00:00:00:01), through the daemon; to nobody " + (
        "(use /to PEER or /all)]"
    )
    assert out[2:] == [
        "[unknown command /bogus; to send a line that starts with /, begin it with //]",
        f"[{INTERACTIVE_HELP}]",
        "[sending to h2]",
        "[sending to nobody]",
        "[no known peer is named nobody (/peers lists them); messages to it fail unless it "
        "answers within 2 s]",
    ]
    assert daemon.ops() == ["watch", "peers", "peers"]


@pytest.mark.parametrize("first", ["h2", H2_MAC])
def test_chat_all_refuses_a_peer_as_the_first_word(daemon: FakeDaemon, first: str) -> None:
    result = run_cli("chat", "-i", "lo", "--all", first, "hi")
    assert result.returncode == 2  # a usage error, as argparse's
    assert result.stderr.splitlines() == [
        f"l2fast: error: with --all every argument is the message, but {first!r} names a peer",
        f"l2fast: hint: to send to that peer only: l2fast chat {first} TEXT; to send it all "
        f"to everyone, quote it: l2fast chat --all '{first} hi'",
    ]
    assert "chat_all" not in daemon.ops()


def test_chat_all_sends_quoted_or_unambiguous_text(daemon: FakeDaemon) -> None:
    daemon.replies["chat_all"] = {
        "msg_id": 3,
        "results": [{"mac": H2_MAC, "name": "h2", "delivered": True, "error": None}],
    }
    for args in (["h2 hi"], ["lunch", "at", "noon"]):
        result = run_cli("chat", "-i", "lo", "--all", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"delivered to h2 ({H2_MAC})\n"
    assert [r["text"] for r in daemon.requests if r["op"] == "chat_all"] == [
        "h2 hi",
        "lunch at noon",
    ]


@pytest.mark.parametrize("args", [["-n", "2", "h1", "hello"], ["--all", "-n", "2", "hi"]])
def test_limit_without_history_is_refused(args: list[str]) -> None:
    result = run_cli("chat", *args)
    assert result.returncode == 2  # a usage error, as argparse's
    assert result.stderr.splitlines() == [
        "l2fast: error: -n/--limit applies only to --history",
        "l2fast: hint: l2fast chat --history -n N",
    ]


# --- 5: discover fails when nobody answered -----------------------------------------------


def test_discover_exits_1_when_nobody_answered(daemon: FakeDaemon) -> None:
    daemon.replies["discover"] = {"peers": []}
    result = run_cli("discover", "-i", "lo", "--timeout", "0")
    assert result.returncode == 1, result.stderr
    assert result.stdout == "no l2fast node answered on lo within 0 s\n"
    result = run_cli("discover", "-i", "lo", "--timeout", "0", "--json")
    assert (result.returncode, result.stdout) == (1, "[]\n")
    daemon.replies["discover"] = {"peers": [{**H2, "last_seen": time.time()}]}
    result = run_cli("discover", "-i", "lo", "--timeout", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 peer on lo:\n")


def test_discover_help_documents_the_exit_status() -> None:
    result = run_cli("discover", "--help")
    assert "exits 0 when at least one node answered, 1 when none did" in " ".join(
        result.stdout.split()
    )


UNIX_TABLE = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 2276219 @l2fast/eth3
0000000000000000: 00000003 00000000 00000000 0001 03 2276230 @l2fast/eth3
0000000000000000: 00000002 00000000 00010000 0001 01 2276231 /run/other.sock
0000000000000000: 00000002 00000000 00010000 0001 01 2276232 @l2fast-lab/x
"""


def test_running_daemons_are_the_listening_l2fast_sockets(tmp_path: Path) -> None:
    table = tmp_path / "unix"
    table.write_text(UNIX_TABLE)
    assert running_daemons(str(table)) == ["eth3"]  # a connected client is not a daemon
    assert running_daemons(str(tmp_path / "missing")) == []


def test_with_no_interface_up_the_only_daemon_is_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # `l2fast status` while the daemon's link is down (found by a review): the daemon still
    # serves it, so the client should find it rather than say no interface is up.
    def nothing_up(requested: str | None) -> str:
        if requested:
            return requested
        raise NoInterface("no network interface is up (besides loopback)")

    monkeypatch.setattr(client, "choose_interface", nothing_up)
    monkeypatch.setattr(client, "running_daemons", lambda: ["eth3"])
    assert client.interface_of_node(None) == "eth3"
    assert client.interface_of_node("eth9") == "eth9"
    monkeypatch.setattr(client, "running_daemons", lambda: ["eth3", "eth4"])
    with pytest.raises(NoInterface):
        client.interface_of_node(None)


class ScriptedClient(RecordingClient):
    """A RecordingClient whose node answers every chat of the interactive loop's run: the
    first one delivered, the others not."""

    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.fail = fail

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if request["op"] == "watch":
            return {"ok": True, "interface": "eth0", "name": "me", "mac": "02:00:00:00:00:01"}
        return {"ok": True, "peers": [H2]}

    def add_reader(self, fd: int, callback: Any) -> None:
        self.on_stdin = callback

    def remove_reader(self, fd: int) -> None:
        pass

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        if not self.sent:
            self.on_stdin()  # the piped lines arrive
            return []
        replies = []
        for n, request in enumerate(self.sent, start=1):
            ok = n == 1 or not self.fail
            replies.append({"id": request["id"], "ok": ok, "error": None if ok else "timeout"})
        self.sent = []
        return replies


@pytest.mark.parametrize("fail", [False, True])
def test_interactive_chat_exits_1_when_a_message_was_not_delivered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fail: bool
) -> None:
    # A script piping lines into `l2fast chat h2` learns of a lost message from the exit
    # status, as it does from `l2fast chat h2 TEXT` (found by a review: it was always 0).
    r, w = os.pipe()
    os.write(w, b"first\nsecond\n")
    os.close(w)
    with os.fdopen(r) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        chat = InteractiveChat(ScriptedClient(fail), "h2", False)  # type: ignore[arg-type]
        assert chat.run() == (1 if fail else 0)
    out = capsys.readouterr().out
    assert ("[not delivered to h2: timeout]" in out) is fail


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--json", "-i", "nosuch0"],
        ["peers", "--json", "-i", "nosuch0"],
        ["inbox", "--json", "-i", "nosuch0"],
        ["bench", "h2", "--json-stream", "-I", "nosuch0"],
        ["send", "02:00:00:00:00:09", "/nonexistent/file", "--json"],
    ],
)
def test_an_error_under_json_is_json_on_stdout_too(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 1
    assert "l2fast: error:" in result.stderr  # for people, as without --json
    (line,) = result.stdout.splitlines()
    report = json.loads(line)
    assert report["exit_code"] == 1 and report["error"] in result.stderr
    assert set(report) == {"error", "hint", "exit_code"}


def test_an_error_without_json_prints_nothing_on_stdout() -> None:
    result = run_cli("status", "-i", "nosuch0")
    assert result.returncode == 1 and result.stdout == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_or_after_the_command(where: str) -> None:
    command = ["status", "-i", "nosuch0"]
    argv = ["--debug", *command] if where == "before" else [*command, "--debug"]
    result = run_cli(*argv)
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "UnknownInterface" in result.stderr


def test_the_top_level_help_shows_send_bench_and_inbox() -> None:
    out = run_cli("--help").stdout
    for example in ("l2fast send bob", "l2fast bench bob", "l2fast inbox"):
        assert example in out


@pytest.mark.parametrize("uid", [0, 1000])
def test_hints_carry_sudo_only_for_a_user_who_is_not_root(
    monkeypatch: pytest.MonkeyPatch, uid: int
) -> None:
    # Root needs no sudo, and a machine where everyone works as root may not have it: a hint
    # telling root to run `sudo l2fast daemon` fails there with "sudo: command not found".
    from l2fast import errors
    from l2fast.lab import netns

    monkeypatch.setattr(errors.os, "geteuid", lambda: uid)
    monkeypatch.setattr(netns, "list_labs", lambda: [])
    sudo = "sudo " if uid else ""
    assert errors.InterfaceDown("eth0").hint.startswith(f"bring it up ({sudo}ip link set eth0 up)")
    assert (
        errors.MtuTooSmall("eth0", 1000, 1280).hint == f"raise it: {sudo}ip link set eth0 mtu 1280"
    )
    monkeypatch.setattr(client, "choose_interface", lambda interface: interface)
    monkeypatch.setattr(client, "control_address", lambda ifname: "\0l2fast-test-nobody-listens")
    with pytest.raises(DaemonNotRunning) as caught:
        client.connect("eth0", local_ok=False)
    assert caught.value.hint == f"start one: {sudo}l2fast daemon -i eth0"
    assert netns._labs_hint() == f"create one: {sudo}l2fast lab up --name NAME"


@pytest.mark.parametrize(
    "words",
    [
        ["ping", "bob", "-c", "0", "--json"],
        ["accept", "abc", "--json"],
        ["bench", "bob", "-t", "-1", "--json-stream"],
        ["send", "--json"],
    ],
)
def test_a_usage_error_with_json_is_a_json_object_too(
    capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    # `l2fast --help`: "With --json, an error is also one JSON object on stdout"; argparse's
    # own errors left stdout empty.
    with pytest.raises(SystemExit) as caught:
        cli.main(words)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["exit_code"] == 2 and report["error"] in err
    assert report["hint"] == f"`l2fast {words[0]} --help` lists its options"
    with pytest.raises(SystemExit):
        cli.main([w for w in words if not w.startswith("--json")])
    assert capsys.readouterr().out == ""
