"""Expiry of part files nobody resumes (`l2fast.transfer.resume.expire_pairs`): old pairs go,
young, busy and foreign ones stay, the walk is bounded."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2fast.cli import build_parser
from l2fast.daemon.client import DaemonClient
from l2fast.daemon.control import ControlClient, control_address
from l2fast.daemon.daemon import Daemon, _check_options
from l2fast.daemon.options import DaemonOptions
from l2fast.errors import L2fastError
from l2fast.transfer.resume import ResumeState, SidecarHeader, expire_pairs, offer_identity
from tests.fake_wire import FakeHub

DAY = 86400.0
NOW = time.time()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The receive directory walked (tmp_path/recv; the rest of tmp_path is outside it)."""
    recv = tmp_path / "recv"
    recv.mkdir()
    fd = os.open(recv, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield recv, fd
    finally:
        os.close(fd)


def make_pair(directory: Path, name: str, *, age_days: float, size: int = 8192) -> ResumeState:
    """A sidecar and its part file under `directory`, last written `age_days` ago; the state
    is returned still holding the sidecar's lock (release it to leave the pair idle)."""
    directory.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        header = SidecarHeader(size, 4096, 0, offer_identity(name, size, 1, 1))
        state = ResumeState.create(dir_fd, f"{name}.part", header)
        (directory / f"{name}.part").write_bytes(os.urandom(size))
        when = NOW - age_days * DAY
        for leaf in (f"{name}.part", f"{name}.part.l2fast"):
            os.utime(directory / leaf, (when, when))
    finally:
        os.close(dir_fd)
    return state


def idle_pair(directory: Path, name: str, *, age_days: float) -> None:
    make_pair(directory, name, age_days=age_days).release()


def test_old_pairs_go_and_young_ones_stay(root: tuple[Path, int]) -> None:
    path, fd = root
    idle_pair(path, "old", age_days=10)
    idle_pair(path / "deep" / "er", "old2", age_days=8)
    idle_pair(path, "young", age_days=1)
    (path / "done.bin").write_bytes(b"a received file")
    result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
    assert (result.removed, result.kept_busy, result.truncated) == (2, 0, False)
    assert result.removed_bytes >= 2 * 8192
    left = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert left == ["done.bin", "young.part", "young.part.l2fast"]


def test_a_recently_written_part_keeps_an_old_sidecar(root: tuple[Path, int]) -> None:
    path, fd = root
    idle_pair(path, "x", age_days=30)
    os.utime(path / "x.part", (NOW, NOW))  # a writer wrote to it just now
    assert expire_pairs(fd, 7 * DAY, NOW, limit=1000).removed == 0
    assert (path / "x.part").exists() and (path / "x.part.l2fast").exists()


def test_a_pair_a_transfer_holds_is_left_alone(root: tuple[Path, int]) -> None:
    path, fd = root
    live = make_pair(path, "live", age_days=30)  # still locked, as a transfer holds it
    try:
        result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
        assert (result.removed, result.kept_busy) == (0, 1)
        assert (path / "live.part").exists() and (path / "live.part.l2fast").exists()
    finally:
        live.release()
    assert expire_pairs(fd, 7 * DAY, NOW, limit=1000).removed == 1  # idle now: it goes


def test_what_is_not_ours_is_never_touched(root: tuple[Path, int], tmp_path: Path) -> None:
    path, fd = root
    when = NOW - 30 * DAY
    # A part file without a sidecar; a "sidecar" that is a symlink; one with a second link.
    (path / "lone.part").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "t.part.l2fast").write_bytes(b"y")
    (path / "link.part.l2fast").symlink_to(outside / "t.part.l2fast")
    idle_pair(path, "two", age_days=30)  # a valid sidecar, but with a second name elsewhere
    os.link(path / "two.part.l2fast", outside / "second-link")
    # A directory link pointing at an old pair elsewhere: not walked into.
    idle_pair(outside / "elsewhere", "far", age_days=30)
    (path / "dirlink").symlink_to(outside / "elsewhere")
    for p in (path / "lone.part", path / "two.part", path / "two.part.l2fast"):
        os.utime(p, (when, when))
    result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
    assert result.removed == 0
    for p in ("lone.part", "two.part.l2fast"):
        assert (path / p).exists()
    assert (path / "link.part.l2fast").is_symlink() and (outside / "t.part.l2fast").exists()
    assert (outside / "elsewhere" / "far.part").exists()


def test_the_walk_stops_at_its_limit(root: tuple[Path, int]) -> None:
    path, fd = root
    for i in range(6):
        idle_pair(path / f"d{i}", "p", age_days=30)
    result = expire_pairs(fd, 7 * DAY, NOW, limit=4)
    # The root's six entries are the six directories: the walk stops before opening any.
    assert (result.truncated, result.scanned, result.removed) == (True, 4, 0)
    again = expire_pairs(fd, 7 * DAY, NOW, limit=10_000)  # a walk with room does all of it
    assert (again.truncated, again.removed) == (False, 6)


def test_no_descriptor_is_left_open(root: tuple[Path, int]) -> None:
    path, fd = root
    for i in range(5):
        idle_pair(path / "a" / f"b{i}" / "c", "p", age_days=30)

    def open_under_root() -> list[str]:
        # Descriptors of this process that point into the walked tree (other threads of the
        # test run open and close their own meanwhile: only these are the walk's).
        out = []
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith(str(path)):
                    out.append(name)
        return out

    before = open_under_root()
    expire_pairs(fd, 7 * DAY, NOW, limit=3)  # truncated mid-walk
    expire_pairs(fd, 7 * DAY, NOW, limit=10_000)
    assert open_under_root() == before


def test_only_provable_pairs_are_deleted(root: tuple[Path, int], tmp_path: Path) -> None:
    """Right names are not enough: the sidecar must have a valid header and its size, and the
    part must be a plain file of ours, with one link, of the header's size."""
    path, fd = root
    when = NOW - 30 * DAY
    outside = tmp_path / "outside-file"
    outside.write_bytes(b"precious" * 1024)

    def old(p: Path) -> None:
        os.utime(p, (when, when), follow_symlinks=False)

    # A garbage "sidecar" beside a plain part file.
    (path / "garbage.part").write_bytes(b"x" * 8192)
    (path / "garbage.part.l2fast").write_bytes(b"not a sidecar at all" * 10)
    # Valid pairs whose part is not what the sidecar says or not ours to delete.
    idle_pair(path, "wrongsize", age_days=30)
    (path / "wrongsize.part").write_bytes(b"y" * 100)
    idle_pair(path, "hardlink", age_days=30)
    (path / "hardlink.part").unlink()
    os.link(outside, path / "hardlink.part")
    idle_pair(path, "fifo", age_days=30)
    (path / "fifo.part").unlink()
    os.mkfifo(path / "fifo.part")
    idle_pair(path, "symlink", age_days=30)
    (path / "symlink.part").unlink()
    (path / "symlink.part").symlink_to(outside)
    idle_pair(path, "other", age_days=30)
    os.chown(path / "other.part", 65534, 65534)
    # A sidecar whose part file is gone: ours, and useless; it goes.
    idle_pair(path, "orphan", age_days=30)
    (path / "orphan.part").unlink()
    for p in path.iterdir():
        old(p)
    result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
    assert result.removed == 1
    assert not (path / "orphan.part.l2fast").exists()
    for name in ("garbage", "wrongsize", "hardlink", "fifo", "symlink", "other"):
        assert (path / f"{name}.part.l2fast").exists(), name
        assert os.path.lexists(path / f"{name}.part"), name
    assert outside.read_bytes() == b"precious" * 1024


def test_directories_that_cannot_be_opened_are_counted(
    root: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = root
    for i in range(3):
        idle_pair(path / f"d{i}", "p", age_days=30)
    real_open = os.open

    def out_of_descriptors(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if name == "d1" and flags & os.O_DIRECTORY:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", out_of_descriptors)
    result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
    monkeypatch.undo()
    assert (result.removed, result.dirs_skipped) == (2, 1)
    assert (path / "d1" / "p.part").exists()


def test_a_pair_that_cannot_be_deleted_does_not_stop_the_walk(
    root: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = root
    for name in ("a", "b", "c"):
        idle_pair(path, name, age_days=30)
    real_unlink = os.unlink

    def immutable_b(name: Any, *args: Any, **kwargs: Any) -> None:
        if str(name).startswith("b.part"):
            raise OSError(errno.EPERM, "Operation not permitted")
        real_unlink(name, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", immutable_b)
    result = expire_pairs(fd, 7 * DAY, NOW, limit=1000)
    monkeypatch.undo()
    assert (result.removed, result.failed) == (2, 1)
    assert (path / "b.part.l2fast").exists()
    assert not (path / "a.part").exists() and not (path / "c.part").exists()


# --- in the daemon ---------------------------------------------------------------------------


def serve(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    return thread


def part_status(address: str) -> dict[str, Any]:
    with DaemonClient("fake0", ControlClient(address, timeout=10)) as client:
        status: dict[str, Any] = client.request({"op": "status"}, 10)["status"]["part_files"]
    return status


def test_the_daemon_walks_its_receive_directory_at_start(hub: FakeHub, tmp_path: Path) -> None:
    recv = tmp_path / "recv"
    idle_pair(recv / "sub", "stale", age_days=8)
    idle_pair(recv, "fresh", age_days=1)
    address = control_address(f"test-{uuid.uuid4().hex[:12]}")
    daemon = Daemon(hub.socket(1), "n", DaemonOptions(recv_dir=str(recv)), address=address)
    thread = serve(daemon)
    try:
        deadline = time.monotonic() + 10
        while (status := part_status(address))["sweeps"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status["keep_days"] == 7.0
        assert (status["sweeps"], status["removed"]) == (1, 1)
        assert status["removed_bytes"] >= 8192 and status["last_sweep"] is not None
        assert not (recv / "sub" / "stale.part").exists()
        assert (recv / "fresh.part").exists()
    finally:
        daemon.stop()
        thread.join(10)


def test_keep_parts_0_keeps_them(hub: FakeHub, tmp_path: Path) -> None:
    idle_pair(tmp_path, "stale", age_days=400)
    address = control_address(f"test-{uuid.uuid4().hex[:12]}")
    options = DaemonOptions(recv_dir=str(tmp_path), keep_parts_days=0)
    daemon = Daemon(hub.socket(1), "n", options, address=address)
    thread = serve(daemon)
    try:
        assert part_status(address) == {"keep_days": 0}
        time.sleep(0.2)
        assert (tmp_path / "stale.part").exists()
    finally:
        daemon.stop()
        thread.join(10)


def test_keep_parts_option() -> None:
    assert build_parser().parse_args(["daemon"]).keep_parts == 7.0
    assert build_parser().parse_args(["daemon", "--keep-parts", "0.5"]).keep_parts == 0.5
    for bad in (-1.0, float("nan"), 1e9):
        with pytest.raises(L2fastError) as info:
            _check_options(DaemonOptions(keep_parts_days=bad))
        assert "--keep-parts must be 0 to" in info.value.message
