"""Placing several verified files at once (`place_files`): one durability barrier per batch.

A daemon receiving a folder of small files placed each with two fsyncs of its own (the file,
then its directory); on ext4 that is two journal commits a file. `place_files` keeps the
order that makes a placed file survive a crash (every file's data durable before any name
appears, every name durable before the batch counts as placed) and pays it once per batch:
each file's data fsynced once, each directory once. A file that fails any step fails alone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2fast.native import datapath as dp
from l2fast.transfer.incoming import DigestMismatch, PlacedFile, PlacementError, place_files
from l2fast.transfer.placement import IncomingFile, PlacementPolicy, ReceiveDir
from l2fast.wire.constants import Digest

MTIME = 1_600_000_000_123_456_789


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "recv"
    path.mkdir()
    return path


@pytest.fixture
def rd(root: Path) -> Iterator[ReceiveDir]:
    with ReceiveDir(root) as receive_dir:
        yield receive_dir


def start(rd: ReceiveDir, path: str, data: bytes) -> IncomingFile:
    f = rd.receive_file(
        path,
        size=len(data),
        chunk_size=1000,
        first_chunk=0,
        mode=0o640,
        mtime_ns=MTIME,
        digest=int(Digest.SHA256),
    )
    if data:
        f.write_at(0, data)
    return f


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verified(
    files: list[IncomingFile], payloads: list[bytes]
) -> list[tuple[IncomingFile, bytes, bytes]]:
    """Each file with its bytes' digest as both the sender's and ours."""
    return [(f, digest(d), digest(d)) for f, d in zip(files, payloads, strict=True)]


class Syncs:
    """Every fsync and writeback hint, with what each descriptor was at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_inode: int | None = None) -> None:
        self.calls: list[tuple[str, int, bool, int]] = []  # (call, inode, is dir, link count)
        self.hinted: list[int] = []
        self.fail_inode = fail_inode
        real_fsync, real_hint = os.fsync, dp.start_writeback

        def fsync(fd: int) -> None:
            info = os.fstat(fd)
            self.calls.append(("fsync", info.st_ino, stat.S_ISDIR(info.st_mode), info.st_nlink))
            if info.st_ino == self.fail_inode:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_fsync(fd)

        def hint(fd: int) -> bool:
            self.hinted.append(os.fstat(fd).st_ino)
            return real_hint(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(dp, "start_writeback", hint)

    def files(self) -> list[tuple[int, int]]:
        """(inode, link count) of every file fsynced, in order."""
        return [(ino, links) for _, ino, is_dir, links in self.calls if not is_dir]

    def dirs(self) -> list[int]:
        return [ino for _, ino, is_dir, _ in self.calls if is_dir]


def test_a_batch_syncs_each_file_once_then_each_directory_once(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = {f"d{i % 2}/f{i}.bin": os.urandom(100 + i) for i in range(6)}
    payloads["top.txt"] = b"at the top"
    files = [start(rd, path, data) for path, data in payloads.items()]
    inodes = [os.fstat(f.fd).st_ino for f in files]
    syncs = Syncs(monkeypatch)

    results = place_files(verified(files, list(payloads.values())))

    assert all(isinstance(r, PlacedFile) for r in results)
    assert [r.final_name for r in results if isinstance(r, PlacedFile)] == list(payloads)
    for path, data in payloads.items():
        assert (root / path).read_bytes() == data
        assert (root / path).stat().st_mtime_ns == MTIME
    assert sorted(syncs.hinted) == sorted(inodes)  # every file's writeback started first
    # Each file once, while it still had no name (the unnamed file is linked after) ...
    assert sorted(ino for ino, _ in syncs.files()) == sorted(inodes)
    assert all(links == 0 for _, links in syncs.files())
    # ... then each of the three directories once, after every file.
    expected_dirs = {(root / d).stat().st_ino for d in ("d0", "d1", ".")}
    assert sorted(syncs.dirs()) == sorted(expected_dirs)
    kinds = [is_dir for _, _, is_dir, _ in syncs.calls]
    assert kinds == [False] * len(files) + [True] * 3
    assert all(f.outcome == "placed" for f in files)


def test_one_file_alone_gets_no_writeback_hint(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = start(rd, "one", b"one")
    syncs = Syncs(monkeypatch)
    assert f.complete(digest(b"one"), digest(b"one")).final_name == "one"
    assert syncs.hinted == []  # nothing to overlap: the fsync alone
    assert [is_dir for _, _, is_dir, _ in syncs.calls] == [False, True]


def test_a_file_whose_data_cannot_be_synced_fails_alone(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = {name: os.urandom(50) for name in ("a", "b", "c")}
    files = [start(rd, path, data) for path, data in payloads.items()]
    syncs = Syncs(monkeypatch, fail_inode=os.fstat(files[1].fd).st_ino)

    results = place_files(verified(files, list(payloads.values())))

    assert isinstance(results[0], PlacedFile) and isinstance(results[2], PlacedFile)
    failed = results[1]
    assert isinstance(failed, PlacementError)
    assert failed.message == "b: writing its data to disk failed: Input/output error"
    assert sorted(p.name for p in root.iterdir()) == ["a", "c"]  # b never got a name
    assert files[1].outcome == "dropped"
    assert len(syncs.dirs()) == 1


def test_a_directory_that_cannot_be_synced_fails_its_files_only_and_is_tried_once(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = {"bad/a": b"a", "bad/b": b"b", "good/c": b"c"}
    files = [start(rd, path, data) for path, data in payloads.items()]
    syncs = Syncs(monkeypatch, fail_inode=(root / "bad").stat().st_ino)

    results = place_files(verified(files, list(payloads.values())))

    assert [type(r) for r in results] == [PlacementError, PlacementError, PlacedFile]
    assert [r.message for r in results[:2] if isinstance(r, PlacementError)] == [
        f"{name}: writing its directory to disk failed: Input/output error"
        for name in ("bad/a", "bad/b")
    ]
    assert sorted(syncs.dirs()) == sorted((root / d).stat().st_ino for d in ("bad", "good"))


def test_a_digest_mismatch_in_a_batch_discards_only_that_file(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = os.urandom(80), os.urandom(80)
    f_good, f_bad = start(rd, "good", good), start(rd, "bad", bad)
    Syncs(monkeypatch)

    results = place_files([(f_bad, digest(b"not it"), digest(bad)), (f_good, *[digest(good)] * 2)])

    assert isinstance(results[0], DigestMismatch)
    assert isinstance(results[1], PlacedFile)
    assert [p.name for p in root.iterdir()] == ["good"]
    assert (f_bad.outcome, f_good.outcome) == ("discarded", "placed")


def test_an_unexpected_error_interrupts_every_file_not_yet_placed(
    rd: ReceiveDir, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [start(rd, name, b"x") for name in ("a", "b")]

    def broken(fd: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(RuntimeError):
        place_files([(f, digest(b"x"), digest(b"x")) for f in files])
    assert [f.outcome for f in files] == ["dropped", "dropped"]
    assert list(root.iterdir()) == []


def test_without_durability_nothing_is_synced(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ReceiveDir(root, PlacementPolicy(durable=False)) as rd:
        files = [start(rd, name, name.encode()) for name in ("a", "b")]
        syncs = Syncs(monkeypatch)
        results = place_files(verified(files, [b"a", b"b"]))
    assert all(isinstance(r, PlacedFile) for r in results)
    assert syncs.calls == [] and syncs.hinted == []
