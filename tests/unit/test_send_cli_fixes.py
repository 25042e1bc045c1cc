"""`l2fast send` as a user and a script see it: a symlink named as PATH, what a folder leaves
out, the digest's name, failures in the CLI's error format, and a --json final event a
script can trust. The node is a fake that answers the request the way the daemon does
(daemon.outgoing `_finish`, daemon.service `_op_send`)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from l2fast import cli
from l2fast.commands import send
from l2fast.commands.send import NOT_REACHED_HINT, RESUME_HINT, _skipped_line, _summary
from l2fast.daemon.control import DaemonClosed
from l2fast.node.node import _AUTH_REASONS
from l2fast.progress import JsonProgress
from l2fast.transfer.tree import (
    FD_HEADROOM,
    NOT_FOLLOWED,
    SkippedEntry,
    TreeError,
    open_entry,
    plan_tree,
)
from l2fast.wire.constants import ErrorCode, FileKind

Final = Callable[[dict[str, Any]], dict[str, Any]]


class FakeClient:
    """Stands for connect(): takes the request and its descriptors, answers with `final`."""

    via_daemon = False

    def __init__(self, final: Final, events: list[dict[str, Any]] | None = None) -> None:
        self.final = final
        self.events = events or []  # what the node streams before its final message
        self.requests: list[dict[str, Any]] = []
        self.read: list[bytes] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def stream(
        self, request: dict[str, Any], timeout: float, fds: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        self.requests.append(request)
        for fd in fds or []:  # the engine owns what it is given
            self.read.append(os.pread(fd, 100, 0))
            os.close(fd)
        yield from self.events
        yield {"ok": True, "done": True, **self.final(request)}


def verified(request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The node's final message for a send where every entry was confirmed."""
    results = []
    for f in request["files"]:
        is_file = f["kind"] == FileKind.FILE
        results.append(
            {
                "path": f["path"],
                "final_name": f["path"],
                "digest": "ab" * 32 if is_file else "",  # the node: "" for a directory
                "verified": is_file,  # the node: False for kinds without a digest
                "needed_bytes": 0,
                "skipped_bytes": 0,
                "present": False,
            }
        )
    final = {
        "success": True,
        "verified": True,
        "files": results,
        "bytes": 0,
        "bytes_sent": 0,
        "seconds": 0.5,
        "gbit_per_s": 0.0,
        "held_seconds": 0.0,
    }
    if len(results) == 1:
        final["digest"] = results[0]["digest"] or None
    return {**final, **extra}


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Callable[[Final], FakeClient]:
    monkeypatch.delenv("L2FAST_DEBUG", raising=False)

    def install(final: Final) -> FakeClient:
        client = FakeClient(final)
        monkeypatch.setattr(send, "connect", lambda *a, **k: client)
        return client

    return install


def folder(tmp_path: Path) -> Path:
    """3 files and 5 directories, plus a symlink, a dangling symlink and a FIFO."""
    src = tmp_path / "d"
    for sub in ("a", "a/b", "c", "e"):
        (src / sub).mkdir(parents=True)
    for name in ("one", "a/two", "a/b/three"):
        (src / name).write_bytes(b"x" * 10)
    (src / "a.lnk").symlink_to(src / "one")
    (src / "gone").symlink_to(tmp_path / "nowhere")
    os.mkfifo(src / "fifo")
    return src


# --- 1. a symlink named as PATH -----------------------------------------------------------


def test_a_symlink_to_a_file_named_as_path_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(b"hello")
    (tmp_path / "link.txt").symlink_to("real.txt")
    for follow in (False, True):
        (entry,) = plan_tree(tmp_path / "link.txt", 1000, follow_symlinks=follow).entries
        assert entry.path == "link.txt" and entry.kind == FileKind.FILE and entry.followed
        fd = open_entry(entry)
        assert os.read(fd, 10) == b"hello"
        os.close(fd)


def test_a_symlinked_folder_named_as_path_still_skips_the_symlinks_inside(
    tmp_path: Path,
) -> None:
    src = folder(tmp_path)
    (tmp_path / "dlink").symlink_to(src)
    plan = plan_tree(tmp_path / "dlink", 1000)
    assert "dlink/one" in [e.path for e in plan.entries]
    assert {s.path for s in plan.skipped} == {"dlink/a.lnk", "dlink/gone", "dlink/fifo"}
    inner = next(e for e in plan.entries if e.path == "dlink/one")
    assert not inner.followed  # opened with O_NOFOLLOW, as any file inside a tree


def test_send_of_a_symlink_to_a_file(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "real.txt").write_bytes(b"hello")
    (tmp_path / "link.txt").symlink_to("real.txt")
    client = node(verified)
    assert cli.main(["send", "h2", str(tmp_path / "link.txt")]) == 0
    assert [f["path"] for f in client.requests[0]["files"]] == ["link.txt"]
    assert client.read == [b"hello"]
    assert capsys.readouterr().out.startswith("sent link.txt: ")


# --- 2. what is left out ------------------------------------------------------------------


def test_skipped_entries_are_named_before_the_transfer(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    node(verified)
    assert cli.main(["send", "h2", str(folder(tmp_path))]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"skipped 3 entries, not sent: d/a.lnk ({NOT_FOLLOWED}), d/fifo (FIFO), "
        f"d/gone ({NOT_FOLLOWED}) (use --follow-symlinks to send what links point to)"
    ]


def test_the_skipped_line_is_bounded() -> None:
    assert _skipped_line(()) is None
    many = [SkippedEntry(f"d/s{i:02d}", "socket") for i in range(14)]
    line = _skipped_line(many)
    assert line is not None
    assert line.startswith("skipped 14 entries, not sent: d/s00 (socket), ")
    assert line.endswith("d/s09 (socket) and 4 more")  # no --follow-symlinks tip: no link
    assert "d/s10" not in line
    assert _skipped_line([SkippedEntry("d/x", "FIFO")]) == "skipped 1 entry, not sent: d/x (FIFO)"


def test_json_lists_what_was_skipped(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    node(verified)
    assert cli.main(["send", "h2", str(folder(tmp_path)), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    done = json.loads(out.splitlines()[-1])
    # Left out by the rules for links and special files: not `lost`, and exit status 0.
    assert done["skipped"] == [
        {"path": "d/a.lnk", "reason": NOT_FOLLOWED, "lost": False},
        {"path": "d/fifo", "reason": "FIFO", "lost": False},
        {"path": "d/gone", "reason": NOT_FOLLOWED, "lost": False},
    ]


@pytest.mark.parametrize("json_mode", [False, True])
def test_entries_left_out_for_a_problem_of_their_own_make_the_send_fail_after_it(
    json_mode: bool,
    tmp_path: Path,
    node: Callable[[Final], FakeClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A name no receiver takes: the rest is sent and verified, but a script must not read
    # exit status 0 as "everything arrived".
    src = folder(tmp_path)
    os.close(os.open(os.fsencode(src) + b"/caf\xe9", os.O_CREAT | os.O_WRONLY, 0o644))
    node(verified)
    assert cli.main(["send", "h2", str(src), *(["--json"] if json_mode else [])]) == 1
    out, err = capsys.readouterr()
    why = (
        "everything sent was verified, but 1 entry could not be sent: d/caf\\xe9 (each is in "
        "the list of skipped entries, with why)"
    )
    assert f"l2fast: error: {why}" in err.splitlines()
    assert "l2fast: hint: rename them or make them readable" in err
    if json_mode:  # the final event says it too, and stays the last line on stdout
        done = json.loads(out.splitlines()[-1])
        assert done["verified"] is True and done["error"] == why
        lost = [s for s in done["skipped"] if s["lost"]]
        assert lost == [{"path": "d/caf\\xe9", "reason": "cannot be offered: name is not "
                         "valid UTF-8", "lost": True}]  # fmt: skip
    else:
        assert "d/caf\\xe9 (cannot be offered: name is not valid UTF-8)" in err.splitlines()[0]


@pytest.mark.parametrize("what", ["/dev/null", "fifo"])
def test_a_device_or_fifo_as_path_is_one_clear_error(
    what: str,
    tmp_path: Path,
    node: Callable[[Final], FakeClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.mkfifo(tmp_path / "fifo")
    path = what if what.startswith("/") else str(tmp_path / what)
    client = node(verified)
    assert cli.main(["send", "h2", path]) == 1
    err = capsys.readouterr().err.splitlines()
    kind = "character device" if what == "/dev/null" else "FIFO"
    assert err[0] == (
        f"l2fast: error: cannot send {path}: it is a {kind}, not a regular file or directory"
    )
    assert err[1].startswith("l2fast: hint: ")
    assert client.requests == []  # nothing was asked of the node


def test_more_files_than_descriptors_is_one_clear_error_before_anything_opens(
    tmp_path: Path,
    node: Callable[[Final], FakeClient],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every file is opened before its offer goes out: a folder of more files than the process
    # may keep open failed half-way with "cannot open huge/f19995: Too many open files".
    src = tmp_path / "huge"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(b"x")
    monkeypatch.setattr(send, "raise_fd_limit", lambda: 8 + FD_HEADROOM - 1)
    opened: list[object] = []
    monkeypatch.setattr(send, "open_entry", lambda e: opened.append(e) or os.open("/", 0))
    client = node(verified)
    assert cli.main(["send", "h2", str(src)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "l2fast: error: 8 files to send, more than this system lets one process keep open at "
        f"once ({8 + FD_HEADROOM - 1} descriptors, {FD_HEADROOM} of them kept for other uses)"
    )
    assert err[1].startswith("l2fast: hint: send its folders one at a time")
    assert (opened, client.requests) == ([], [])
    # One more descriptor allowed, and it goes.
    monkeypatch.setattr(send, "open_entry", open_entry)
    monkeypatch.setattr(send, "raise_fd_limit", lambda: 8 + FD_HEADROOM)
    assert cli.main(["send", "h2", str(src)]) == 0
    assert len(client.read) == 8


def test_a_source_whose_own_name_receivers_refuse_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.part").write_bytes(b"1")
    with pytest.raises(TreeError, match=r"cannot send .*x\.part: a receiver refuses it"):
        plan_tree(tmp_path / "x.part", 1000)


# --- 3. the digest's name -----------------------------------------------------------------


def test_the_summary_names_the_digest_used(capsys: pytest.CaptureFixture[str]) -> None:
    final = {
        "files": [{"path": "f", "final_name": "f", "kind": "file"}],
        "digest": "fef0",
        "bytes_sent": 5,
        "seconds": 0.1,
        "gbit_per_s": 0.0,
    }
    _summary(final, "blake2b")
    assert capsys.readouterr().out.endswith("; verified blake2b fef0\n")


def test_send_digest_blake2b_prints_blake2b(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    client = node(verified)
    assert cli.main(["send", "h2", str(tmp_path / "f"), "--digest", "blake2b"]) == 0
    assert client.requests[0]["digest"] == "blake2b"
    out = capsys.readouterr().out
    assert f"verified blake2b {'ab' * 32}" in out and "sha256" not in out


# --- 4. failures in the CLI's error format ------------------------------------------------


def failed(request: dict[str, Any], message: str, **result: Any) -> dict[str, Any]:
    """The node's final message for a send that failed with `message`; one entry `result`."""
    entry = {"path": request["files"][0]["path"], **result}
    return {
        **verified(request),
        "success": False,
        "verified": False,
        "error": message,
        "files": [entry],
    }


SESSION_CLOSED = "the session closed before every file was confirmed"


def test_a_send_that_reached_nobody_is_not_told_to_resume(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped MAC: no file got as far as an answer, so nothing is kept to resume from.
    (tmp_path / "f").write_bytes(b"hello")
    message = "the session failed: no answer from 02:4c:32:00:00:63 to open a session within 5 s"
    node(lambda r: {**failed(r, message), "files": [], "bytes_sent": 0})
    assert cli.main(["send", "02:4c:32:00:00:63", str(tmp_path / "f")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"l2fast: error: {message}",
        f"l2fast: hint: {NOT_REACHED_HINT}",
    ]


def test_a_session_refused_by_the_lan_key_check_gets_no_resume_hint(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    # Sending again cannot help: the error's own advice (compare the key ids) is the hint.
    (tmp_path / "f").write_bytes(b"hello")
    for reason in _AUTH_REASONS.values():
        message = f"the session failed: no answer from 02:00:00:00:00:02 within 5 s; {reason}"
        node(lambda r, m=message: failed(r, m, failed=True, error=m))  # type: ignore[misc]
        assert cli.main(["send", "h2", str(tmp_path / "f")]) == 1
        assert capsys.readouterr().err.splitlines() == [f"l2fast: error: {message}"]


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_failed_session_is_an_error_with_the_resume_hint(
    json_mode: bool,
    tmp_path: Path,
    node: Callable[[Final], FakeClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    node(lambda r: failed(r, SESSION_CLOSED, failed=True, error=SESSION_CLOSED))
    argv = ["send", "h2", str(tmp_path / "f"), *(["--json"] if json_mode else [])]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"l2fast: error: {SESSION_CLOSED}", f"l2fast: hint: {RESUME_HINT}"]
    if json_mode:  # the final event still comes first, for scripts
        done = json.loads(out.splitlines()[-1])
        assert done["verified"] is False and done["error"] == SESSION_CLOSED
    else:
        assert out == ""


def test_a_refusal_is_an_error_without_the_resume_hint(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    error = "the receiver refused 'f': no_space"
    node(lambda r: failed(r, error, rejected=True, reason=int(ErrorCode.NO_SPACE), text=""))
    assert cli.main(["send", "h2", str(tmp_path / "f")]) == 1
    assert capsys.readouterr().err.splitlines() == [f"l2fast: error: {error}"]


def test_a_source_that_changed_is_an_error_without_the_resume_hint(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """The node stopped because the file changed under it: its error says what to do, and
    "what arrived is kept and the transfer resumes" would not help."""
    (tmp_path / "f").write_bytes(b"hello")
    error = "'f': it was truncated while it was being sent; send it again once nothing writes"
    node(lambda r: {**failed(r, error, failed=True, error="cancelled"), "source_error": True})
    assert cli.main(["send", "h2", str(tmp_path / "f")]) == 1
    assert capsys.readouterr().err.splitlines() == [f"l2fast: error: {error}"]


# --- 5. a --json final event a script can trust --------------------------------------------


def test_json_counts_files_and_directories_and_every_result_is_verified(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    # Everything already at the receiver: 30 bytes in all, none of them crossed.
    node(lambda r: verified(r, bytes=30, bytes_sent=0, skipped_bytes=30, files_present=3))
    assert cli.main(["send", "h2", str(folder(tmp_path)), "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (done["files"], done["directories"]) == (3, 5)
    assert done["bytes"] == 30 and done["bytes_sent"] == 0 and done["gbit_per_s"] == 0
    assert all(r["verified"] for r in done["results"])
    kinds = {r["path"]: r["kind"] for r in done["results"]}
    assert kinds["d"] == "directory" and kinds["d/a/b/three"] == "file"
    assert sorted(kinds.values()).count("directory") == 5
    dirs = [r for r in done["results"] if r["kind"] == "directory"]
    assert all(r["digest"] is None for r in dirs)


def test_json_rate_is_of_the_bytes_sent(
    tmp_path: Path,
    node: Callable[[Final], FakeClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100)
    clock = itertools.chain([10.0], itertools.repeat(12.0))  # the command took 2 s
    monkeypatch.setattr(send, "JsonProgress", lambda: JsonProgress(clock=lambda: next(clock)))
    node(lambda r: verified(r, bytes=1_000_000_000, bytes_sent=250_000_000))
    assert cli.main(["send", "h2", str(tmp_path / "f"), "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["seconds"] == 2.0 and done["gbit_per_s"] == 1.0  # 2 Gbit in 2 s


def test_text_counts_files_and_folders(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    node(verified)
    assert cli.main(["send", "h2", str(folder(tmp_path))]) == 0
    assert capsys.readouterr().out.startswith("sent 3 files and 5 folders: ")


def test_json_refusals_name_their_reason(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    error = "the receiver refused 'f': no_space"
    node(lambda r: failed(r, error, rejected=True, reason=int(ErrorCode.NO_SPACE), text="full"))
    assert cli.main(["send", "h2", str(tmp_path / "f"), "--json"]) == 1
    (result,) = json.loads(capsys.readouterr().out.splitlines()[-1])["results"]
    assert result == {
        "path": "f",
        "kind": "file",
        "rejected": True,
        "reason": "no_space",
        "text": "full",
        "verified": False,
    }


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_during_a_send_says_that_sending_again_resumes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    as_json: bool,
) -> None:
    def interrupted(request: dict[str, Any]) -> dict[str, Any]:
        raise KeyboardInterrupt

    (tmp_path / "big").write_bytes(b"x" * 1000)
    moving = [{"event": "progress", "bytes": 500, "total": 1000, "files_done": 0}]
    monkeypatch.setattr(send, "connect", lambda *a, **k: FakeClient(interrupted, moving))
    argv = ["send", "02:00:00:00:00:02", str(tmp_path / "big")] + (["--json"] if as_json else [])
    assert cli.main(argv) == 130
    out = capsys.readouterr()
    assert "l2fast: error: interrupted" in out.err and RESUME_HINT in out.err
    if as_json:
        report = json.loads(out.out.splitlines()[-1])
        assert report == {"error": "interrupted", "hint": RESUME_HINT, "exit_code": 130}


def test_ctrl_c_while_the_receiver_holds_the_offer_is_not_told_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Nothing was sent: "what arrived is kept and the transfer resumes" said otherwise.
    def interrupted(request: dict[str, Any]) -> dict[str, Any]:
        raise KeyboardInterrupt

    (tmp_path / "big").write_bytes(b"x" * 1000)
    held = [{"event": "held", "pending_id": 3, "path": "big", "text": "waiting"}]
    monkeypatch.setattr(send, "connect", lambda *a, **k: FakeClient(interrupted, held))
    assert cli.main(["send", "h2", str(tmp_path / "big")]) == 130
    err = capsys.readouterr().err
    assert "l2fast accept 3" in err and RESUME_HINT not in err
    assert "hint: nothing was sent yet (the receiver had not accepted it)" in err


def test_a_failed_folder_send_says_which_files_arrived_all_the_same(
    tmp_path: Path, node: Callable[[Final], FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    # The disk filled under the second file: the first had arrived, verified, and the text
    # output said nothing of it.
    def second_fails(request: dict[str, Any]) -> dict[str, Any]:
        final = verified(request)
        last = next(r for r in reversed(final["files"]) if r["verified"])
        last.update(verified=False, failed=True, error="no_space", digest="")
        return {**final, "success": False, "verified": False, "error": "the receiver failed"}

    node(second_fails)
    assert cli.main(["send", "h2", str(folder(tmp_path))]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == (
        "verified at the receiver before the failure: 2 of 3 files (d/a/b/three, d/a/two)"
    )
    assert "l2fast: error: the receiver failed" in err


def test_a_daemon_that_stops_mid_send_says_the_send_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The daemon (sending for this command) stopped with SIGTERM mid-transfer: the receiver
    # keeps its part file, so sending again resumes, which the error now says.
    class Stopping(FakeClient):
        via_daemon = True

        def send(self, request: dict[str, Any], fds: list[int] | None = None) -> None:
            for fd in fds or []:
                os.close(fd)

        def stream(
            self, request: dict[str, Any], timeout: float, fds: list[int] | None = None
        ) -> Iterator[dict[str, Any]]:
            for fd in fds or []:
                os.close(fd)
            yield {"event": "progress", "bytes": 5, "total": 10}
            raise DaemonClosed("the l2fast daemon closed the connection", hint="(generic)")

    (tmp_path / "f").write_bytes(b"x" * 10)
    monkeypatch.setattr(send, "connect", lambda *a, **k: Stopping(verified))
    assert cli.main(["send", "h2", str(tmp_path / "f")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("l2fast:")]
    assert err[0] == "l2fast: error: the l2fast daemon closed the connection during the transfer"
    assert err[1].startswith("l2fast: hint: it stopped or restarted")
    assert err[1].endswith(
        "once it runs, send it again: what arrived is kept and the transfer resumes"
    )
