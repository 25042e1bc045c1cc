"""`ReceiveDir.find_present`: a file already under an offered name (PROTOCOL.md §Files already
at the receiver) is found only when it is a regular file of the offered size, reached without
following a symlink, and nothing is ever created or written by looking."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2fast.transfer.placement import BadName, ReceiveDir
from l2fast.wire.constants import Digest, FileKind
from l2fast.wire.frames import FileOffer


def offer(path: str, size: int, kind: FileKind = FileKind.FILE) -> FileOffer:
    return FileOffer(
        transfer_id=1,
        kind=int(kind),
        digest=int(Digest.SHA256),
        size=size,
        mode=0o644,
        mtime_ns=0,
        first_chunk=0,
        chunk_size=1000 if size else 0,
        path=path,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "recv"
    r.mkdir()
    return r


@pytest.fixture
def recv(root: Path) -> Iterator[ReceiveDir]:
    with ReceiveDir(root) as rd:
        yield rd


def test_a_regular_file_of_the_offered_size_is_found_and_read_only(
    root: Path, recv: ReceiveDir
) -> None:
    (root / "d").mkdir()
    data = os.urandom(3000)
    (root / "d" / "x.bin").write_bytes(data)
    before = os.stat(root / "d" / "x.bin")
    found = recv.find_present(offer("d/x.bin", 3000))
    assert found is not None
    try:
        assert (found.final_name, found.size) == ("d/x.bin", 3000)
        assert hashlib.sha256(os.pread(found.fd, 3000, 0)).digest() == hashlib.sha256(data).digest()
        with pytest.raises(OSError):
            os.write(found.fd, b"no")  # opened read-only
    finally:
        found.close()
        found.close()  # idempotent
    after = os.stat(root / "d" / "x.bin")
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert sorted(os.listdir(root / "d")) == ["x.bin"]


def test_empty_file(root: Path, recv: ReceiveDir) -> None:
    (root / "e").write_bytes(b"")
    found = recv.find_present(offer("e", 0))
    assert found is not None and found.size == 0
    found.close()


def test_nothing_is_found_nor_created(root: Path, recv: ReceiveDir) -> None:
    (root / "x").write_bytes(b"abc")
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    assert recv.find_present(offer("x", 4)) is None  # another size
    assert recv.find_present(offer("missing", 4)) is None
    assert recv.find_present(offer("no/such/dir/x", 3)) is None
    assert recv.find_present(offer("dir", 0)) is None  # a directory under the name
    assert recv.find_present(offer("fifo", 0)) is None  # never opened, never blocks
    assert recv.find_present(offer("x", 3, FileKind.DIRECTORY)) is None
    assert sorted(os.listdir(root)) == ["dir", "fifo", "x"]  # no directory was created


def test_symlinks_are_never_followed(root: Path, recv: ReceiveDir, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s3cret")
    (root / "link").symlink_to(outside / "secret")
    (root / "dirlink").symlink_to(outside)
    assert recv.find_present(offer("link", 6)) is None
    os.link(outside / "secret", root / "hard")  # a hard link planted to a file elsewhere
    assert recv.find_present(offer("hard", 6)) is None
    with pytest.raises(BadName):  # a symlinked directory on the way is refused, as on receiving
        recv.find_present(offer("dirlink/secret", 6))


def test_refused_names_are_refused(recv: ReceiveDir) -> None:
    for name in ("../x", "a/../../x", "x.part"):
        with pytest.raises(BadName):
            recv.find_present(offer(name, 3))
