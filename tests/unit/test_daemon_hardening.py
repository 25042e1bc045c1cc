"""The daemon's loop and processes outlive what a hostile LAN peer can provoke (found by a
hostile-peer review): a descriptor handler that raises is counted and the loop goes on; a
control listener out of descriptors is left alone for a moment instead of ending (or spinning)
the loop; forked workers end on SIGTERM whatever handlers the daemon had; `--no-present`
takes feature PRESENT out of what the node offers.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from l2fast.cli import build_parser
from l2fast.daemon import daemon as daemon_mod
from l2fast.daemon.client import DaemonClient
from l2fast.daemon.control import ControlClient, control_address
from l2fast.daemon.daemon import Daemon, _check_options, receive_dir_problem
from l2fast.daemon.options import DaemonOptions
from l2fast.errors import L2fastError
from l2fast.transfer import receiver_proc
from l2fast.wire.constants import Digest, Features
from tests.fake_wire import FakeHub
from tests.service_harness import make_runner


def test_a_descriptor_handler_that_raises_is_counted_and_the_loop_goes_on(hub: FakeHub) -> None:
    runner = make_runner(hub, 1, "alpha")
    bad_r, bad_w = socket.socketpair()
    good_r, good_w = socket.socketpair()
    served: list[bytes] = []

    def broken() -> None:
        bad_r.recv(16)
        raise OSError(errno.EMFILE, "Too many open files")

    runner.add_reader(bad_r, broken)
    runner.add_reader(good_r, lambda: served.append(good_r.recv(16)))
    try:
        bad_w.send(b"x")
        good_w.send(b"y")
        for _ in range(3):
            runner.step(0.01)
        assert runner.counters["subscriber_errors"] == 1
        assert served == [b"y"]
        good_w.send(b"z")  # and the loop still serves
        runner.step(0.01)
        assert served == [b"y", b"z"]
    finally:
        for s in (bad_r, bad_w, good_r, good_w):
            s.close()


class _StarvedListener:
    """The daemon's listening socket, whose accept(2) fails with EMFILE `failures` times."""

    def __init__(self, real: socket.socket, failures: int) -> None:
        self.real = real
        self.failures = failures

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_control_listener_out_of_descriptors_pauses_and_recovers(
    hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    address = control_address(f"test-{uuid.uuid4().hex[:12]}")
    daemon = Daemon(hub.socket(1), "alpha", DaemonOptions(keep_parts_days=0), address=address)
    real = daemon.control.listener
    daemon.runner.remove_reader(real)
    starved = _StarvedListener(real, failures=2)
    daemon.control.listener = starved  # type: ignore[assignment]
    daemon.runner.add_reader(starved, daemon._on_accept)
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with DaemonClient("fake0", ControlClient(address, timeout=10)) as client:
            status = client.request({"op": "status"}, 10)["status"]
        assert status["interface"]
        # Served after two pauses, not by a loop that spun on the readable listener.
        assert time.monotonic() - started >= 0.9
        assert daemon.control.accept_failures == 2
        assert sum("cannot accept a client" in r.getMessage() for r in caplog.records) == 2
        assert thread.is_alive()
    finally:
        daemon.stop()
        thread.join(10)
    assert not thread.is_alive()


def _worker(ready: Any) -> None:
    receiver_proc._worker_start("l2f-test")
    ready.set()
    time.sleep(30)


def test_a_forked_worker_ends_on_sigterm_whatever_the_daemons_handlers() -> None:
    # The daemon's handlers only ask its loop to stop; inherited by a worker they made SIGTERM
    # do nothing there, so neither the daemon nor multiprocessing's exit handler could end it.
    old_term = signal.signal(signal.SIGTERM, lambda *_: None)
    old_int = signal.signal(signal.SIGINT, lambda *_: None)
    # Whatever the worker inherits for SIGHUP (here the default, which ends a process), the
    # terminal closing is the controller's to act on, like a Ctrl-C.
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_worker, args=(ready,), daemon=True)
    try:
        proc.start()
        assert ready.wait(10)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGINT)  # a Ctrl-C is the controller's to act on
        os.kill(proc.pid, signal.SIGHUP)  # and so is the terminal closing
        proc.join(0.3)
        assert proc.is_alive()
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(5)
        assert proc.exitcode == -signal.SIGTERM
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGHUP, old_hup)


def test_no_present_takes_the_feature_out_of_what_the_node_offers(hub: FakeHub) -> None:
    args = build_parser().parse_args(["daemon", "--no-present"])
    assert args.present is False
    assert build_parser().parse_args(["daemon"]).present is True
    for present in (True, False):
        address = control_address(f"test-{uuid.uuid4().hex[:12]}")
        daemon = Daemon(
            hub.socket(2 + present),
            "n",
            DaemonOptions(present=present, keep_parts_days=0),
            address=address,
        )
        try:
            offered = daemon.runner.engine.config.features
            assert bool(offered & Features.PRESENT) is present
            assert offered & Features.HELD  # the rest as before
        finally:
            daemon.close()


def test_a_recv_dir_that_is_a_file_is_not_told_to_be_created(tmp_path: Path) -> None:
    afile = tmp_path / "big.txt"
    afile.write_text("x")
    with pytest.raises(L2fastError) as info:
        _check_options(DaemonOptions(recv_dir=str(afile)))
    assert "is not a directory" in info.value.message and "mkdir" not in (info.value.hint or "")
    with pytest.raises(L2fastError) as info:
        _check_options(DaemonOptions(recv_dir=str(tmp_path / "missing")))
    assert "does not exist" in info.value.message and "mkdir -p" in (info.value.hint or "")


def _problem_as(path: Path, *, wrapper: list[str], setup: str = "") -> str:
    """receive_dir_problem(path) in a fresh interpreter run under `wrapper` (another mount
    namespace, another user), after the shell commands `setup`."""
    code = f"from l2fast.daemon.daemon import receive_dir_problem as p; print(p({str(path)!r}))"
    script = f'{setup} exec "{sys.executable}" -c "$0"'
    out = subprocess.run(
        [*wrapper, "sh", "-c", script, code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_writable_receive_dir_or_parent_has_no_problem(tmp_path: Path) -> None:
    assert receive_dir_problem(str(tmp_path)) is None
    # The default directory is made on the first offer: its parent must be writable.
    assert receive_dir_problem(str(tmp_path / "not" / "yet")) is None


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="a read-only mount and another user need root (CI runs as root)"
)


@needs_root
def test_a_receive_dir_on_a_read_only_file_system_is_named(tmp_path: Path) -> None:
    # A private mount namespace: the read-only mount is gone with the process.
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = f"mount -t tmpfs -o ro,size=1m l2fast-test {ro} &&"
    problem = _problem_as(ro, wrapper=["unshare", "-m"], setup=mount)
    assert problem == f"the receive directory {ro} is on a read-only file system"
    problem = _problem_as(ro / "sub", wrapper=["unshare", "-m"], setup=mount)
    assert problem == (
        f"{ro}, where the receive directory {ro / 'sub'} would be made, "
        "is on a read-only file system"
    )


def test_a_receive_dir_this_user_cannot_write_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write anywhere a mount allows, so the permission case is what access(2) says
    # for another user (the venv need not be readable by one, to run it as one).
    monkeypatch.setattr(daemon_mod.os, "access", lambda path, mode: False)
    assert receive_dir_problem(str(tmp_path)) == (
        f"the receive directory {tmp_path} is not writable by this daemon (uid {os.geteuid()})"
    )


def test_the_daemon_warns_at_start_when_no_file_could_be_received(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level("INFO", logger="l2fast.daemon")
    monkeypatch.setattr(daemon_mod, "receive_dir_problem", lambda path: f"{path} is broken")
    daemon_mod._log_files_policy(DaemonOptions(recv_dir="/srv/in"))
    assert "/srv/in is broken: every file offered will be refused until it is fixed" in (
        caplog.text
    )
    caplog.clear()
    # Nothing is to be received: nothing to warn about.
    daemon_mod._log_files_policy(DaemonOptions(recv_dir="/srv/in", accept="none"))
    assert "files: --accept none" in caplog.text and "broken" not in caplog.text


def test_a_send_with_fewer_descriptors_than_files_says_so_and_closes_them(
    make_nodes: Any, tmp_path: Path
) -> None:
    # What a lost descriptor looked like to the user: "bad send request: StopIteration()".
    nodes = make_nodes("all")
    fd = os.open(tmp_path / "one", os.O_CREAT | os.O_RDWR, 0o600)
    files = [{"path": "a", "kind": 0}, {"path": "b", "kind": 0}]
    with pytest.raises(L2fastError, match="lists more files than the 1 descriptors"):
        nodes.service.transfers.start_send(
            lambda _obj: None, nodes.b.engine.mac, files, [fd], Digest.SHA256
        )
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the daemon, which owned it
