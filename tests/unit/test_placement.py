"""Receiving below a receive directory: names, symlinks, no overwrite, resume, atomic placement."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2fast.transfer import placement
from l2fast.transfer.names import NAME_MAX, display_name, name_violation, part_name, variant_name
from l2fast.transfer.placement import (
    BadName,
    DigestMismatch,
    IncomingFile,
    NoSpace,
    PlacementError,
    PlacementPolicy,
    ReceiveDir,
)
from l2fast.transfer.ranges import ChunkRanges
from l2fast.transfer.resume import SidecarHeader, offer_identity, sidecar_name
from l2fast.wire.constants import Digest, ErrorCode, FileKind
from l2fast.wire.frames import FileOffer

CHUNK = 1000
MTIME = 1_600_000_000_123_456_789


PARTS = PlacementPolicy(resume_min_bytes=0)  # every file gets a part file and a sidecar


@pytest.fixture
def recv(tmp_path: Path) -> Iterator[ReceiveDir]:
    root = tmp_path / "recv"
    root.mkdir()
    with ReceiveDir(root, PARTS) as rd:
        yield rd


@pytest.fixture
def small(tmp_path: Path) -> Iterator[ReceiveDir]:
    """The default policy: files under 1 MiB go to an unnamed file."""
    root = tmp_path / "small"
    root.mkdir()
    with ReceiveDir(root) as rd:
        yield rd


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    return out


def start(
    rd: ReceiveDir, path: str, data: bytes, *, first: int = 0, mode: int = 0o644, mtime: int = MTIME
) -> IncomingFile:
    return rd.receive_file(
        path,
        size=len(data),
        chunk_size=CHUNK,
        first_chunk=first,
        mode=mode,
        mtime_ns=mtime,
        digest=int(Digest.SHA256),
    )


def write_all(f: IncomingFile, data: bytes, chunks: range | None = None) -> None:
    for k in chunks if chunks is not None else range(f.n_chunks):
        f.write_chunk(f.first_chunk + k, data[k * CHUNK : (k + 1) * CHUNK])


def finish(f: IncomingFile, data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return f.complete(digest, digest).final_name


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x", "'..'"),
        ("/etc/x", "absolute"),
        ("a/../../x", "'..'"),
        ("..", "'..'"),
        (".", "'.'"),
        ("a/./b", "'.'"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("", "empty"),
        ("x\x1b[2J", "escape"),
        ("\x1b]0;title\x07", "escape"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a\x9bb", "control"),  # C1 CSI
        ("a\u2028b", "control"),  # line separator
        ("evil\u202egpj.exe", "bidirectional"),
        ("..\\x", "backslash"),
        ("a\\b", "backslash"),
        ("x.part", "reserved"),
        ("d/x.part.l2fast", "reserved"),
        ("a" * 256, "more than 255"),
        ("a/" * 500 + "b", "must be 1..1000"),
    ],
)
def test_hostile_names_are_refused_with_a_reason(name: str, reason: str) -> None:
    problem = name_violation(name)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "name",
    ["a", "a/b/c.txt", ".bashrc", "...", "..a", "a..", "x.part.txt", "名前/ファイル.txt", "😀.png"],
)
def test_ordinary_names_pass(name: str) -> None:
    assert name_violation(name) is None


def test_reserved_suffix_applies_to_files_only() -> None:
    assert name_violation("x.part", is_file=False) is None
    assert name_violation(b"\xff\xfe") == "name is not valid UTF-8"
    assert name_violation(b"ok/name") is None


def test_display_name_escapes_what_a_terminal_acts_on() -> None:
    assert display_name("x\x1b[2J") == "x\\x1b[2J"
    assert display_name("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert display_name("a\nb") == "a\\nb"
    assert display_name("a\u202eb") == "a\\u202eb"
    assert display_name("a\\x1b") == "a\\\\x1b"  # a literal backslash cannot pose as an escape
    assert display_name("photo é 名.jpg") == "photo é 名.jpg"
    assert display_name(b"a\xffb") == "a\\xffb"
    assert display_name(b"\\udc80") == "\\\\udc80"


def test_name_variants_and_part_names_fit_name_max() -> None:
    assert variant_name("photo.jpg", 0) == "photo.jpg"
    assert variant_name("photo.jpg", 1) == "photo (1).jpg"
    assert variant_name(".bashrc", 2) == ".bashrc (2)"
    assert variant_name("archive.tar.gz", 1) == "archive.tar (1).gz"
    assert variant_name("noext", 3) == "noext (3)"
    long = "é" * 127  # 254 bytes
    assert len(variant_name(long, 12).encode()) <= NAME_MAX
    assert variant_name(long, 12).endswith(" (12)")
    for leaf in (long, "a" * 255, "a" * 200 + ".txt"):
        name = part_name(leaf, 5)
        assert name.endswith(".part")
        assert len(sidecar_name(name).encode()) <= NAME_MAX
        assert part_name(leaf, 5) == name  # the same on every resume
    assert part_name("a" * 255, 0) != part_name("a" * 254 + "b", 0)


# -- placement ---------------------------------------------------------------------------------


def test_a_file_lands_with_mode_and_mtime_and_nothing_else(recv: ReceiveDir) -> None:
    root = Path(recv.path)
    data = os.urandom(10_500)
    f = start(recv, "sub/dir/file.bin", data, mode=0o6755)
    assert f.n_chunks == 11 and not f.have and f.resumed_bytes == 0
    part = root / "sub/dir" / f.part_name
    assert stat.S_IMODE(part.stat().st_mode) == 0o600  # partial data stays private
    assert part.stat().st_size == len(data)  # cut to the declared size at once
    write_all(f, data)
    assert finish(f, data) == "sub/dir/file.bin"
    final = root / "sub/dir/file.bin"
    assert final.read_bytes() == data
    assert stat.S_IMODE(final.stat().st_mode) == 0o755  # setuid and setgid stripped
    assert final.stat().st_mtime_ns == MTIME
    assert listing(root) == ["sub", "sub/dir", "sub/dir/file.bin"]
    assert f.outcome == "placed"


def test_an_existing_file_is_never_overwritten_by_default(recv: ReceiveDir) -> None:
    root = Path(recv.path)
    (root / "x.txt").write_bytes(b"mine")
    (root / "x (1).txt").write_bytes(b"mine too")
    data = b"new data"
    f = start(recv, "x.txt", data)
    write_all(f, data)
    placed = f.complete(hashlib.sha256(data).digest(), hashlib.sha256(data).digest())
    assert placed.final_name == "x (2).txt" and placed.renamed
    assert (root / "x.txt").read_bytes() == b"mine"
    assert (root / "x (2).txt").read_bytes() == data


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "x.txt").write_bytes(b"old")
    with ReceiveDir(root, PlacementPolicy(overwrite=True, resume_min_bytes=0)) as rd:
        data = b"new"
        f = start(rd, "x.txt", data)
        write_all(f, data)
        assert finish(f, data) == "x.txt"
        assert (root / "x.txt").read_bytes() == data
        (root / "d").mkdir()
        f = start(rd, "d", data)
        write_all(f, data)
        with pytest.raises(PlacementError, match="directory"):
            finish(f, data)
        assert f.outcome == "kept"


def test_digest_mismatch_deletes_the_part(recv: ReceiveDir) -> None:
    data = os.urandom(3000)
    f = start(recv, "x.bin", data)
    write_all(f, data)
    with pytest.raises(DigestMismatch) as info:
        f.complete(hashlib.sha256(data).digest(), hashlib.sha256(b"other").digest())
    assert info.value.code == ErrorCode.DIGEST_MISMATCH
    assert listing(Path(recv.path)) == []
    with pytest.raises(PlacementError, match="discarded"):
        f.write_at(0, b"x")


def test_interrupted_file_resumes_with_the_chunks_it_had(recv: ReceiveDir) -> None:
    root = Path(recv.path)
    data = os.urandom(25_300)
    f = start(recv, "big.bin", data, first=100)
    write_all(f, data, range(0, 10))
    write_all(f, data, range(20, 26))
    f.interrupt()
    assert sorted(os.listdir(root)) == ["big.bin.part", "big.bin.part.l2fast"]
    assert not (root / "big.bin").exists()

    g = start(recv, "big.bin", data, first=7)  # another session: another place in its space
    assert g.held == ChunkRanges([(0, 10), (20, 26)])
    assert g.have == ChunkRanges([(7, 17), (27, 33)])
    assert g.resumed_bytes == 15 * CHUNK + 300  # chunk 25, the last, is 300 bytes
    write_all(g, data, range(10, 20))
    assert finish(g, data) == "big.bin"
    assert (root / "big.bin").read_bytes() == data
    assert os.listdir(root) == ["big.bin"]


def test_a_changed_offer_starts_over(recv: ReceiveDir) -> None:
    data = os.urandom(5000)
    f = start(recv, "x.bin", data)
    write_all(f, data, range(3))
    f.interrupt()
    g = start(recv, "x.bin", data, mtime=MTIME + 1)  # another version of the file
    assert not g.have and g.resumed_bytes == 0
    write_all(g, data)
    assert finish(g, data) == "x.bin"


def test_the_same_name_twice_at_once_gets_two_part_files(recv: ReceiveDir) -> None:
    data = b"abc" * 500
    f = start(recv, "x.bin", data)
    g = start(recv, "x.bin", data)  # f's sidecar is locked: g takes the next slot
    assert f.part_name == "x.bin.part" and g.part_name == "x (1).bin.part"
    write_all(f, data)
    write_all(g, data)
    assert finish(g, data) == "x.bin"
    assert finish(f, data) == "x (1).bin"


def test_empty_file(recv: ReceiveDir) -> None:
    f = start(recv, "empty", b"")
    assert f.n_chunks == 0
    assert finish(f, b"") == "empty"
    assert (Path(recv.path) / "empty").read_bytes() == b""


def test_writes_past_the_declared_size_are_refused(recv: ReceiveDir) -> None:
    data = os.urandom(2500)
    f = start(recv, "x.bin", data, first=50)
    with pytest.raises(PlacementError) as info:
        f.write_at(2000, b"z" * 501)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(PlacementError, match="not 500"):
        f.write_chunk(52, b"z" * 1000)  # the last chunk is 500 bytes
    with pytest.raises(PlacementError, match="not one of"):
        f.write_chunk(53, b"z")
    with pytest.raises(PlacementError, match="not one of"):
        f.write_chunk(49, b"z" * 1000)
    f.discard()
    assert listing(Path(recv.path)) == []


def test_no_space_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    with ReceiveDir(root, PlacementPolicy(reserve_bytes=1 << 62, resume_min_bytes=0)) as rd:
        with pytest.raises(NoSpace) as info:
            start(rd, "x.bin", b"data")
        assert info.value.code == ErrorCode.NO_SPACE
        assert "kept free" in info.value.message  # why "0 B available" with space free
        assert "4 B needed, 0 B available" in info.value.message  # units, not raw counts
        assert "4096 PiB kept free" in info.value.message
        with pytest.raises(NoSpace):
            rd.check_space(1)
    assert listing(root) == []


def test_space_promised_to_files_being_received_is_not_offered_again(tmp_path: Path) -> None:
    # Part files are cut to size at once and allocated as they fill, so free space alone let
    # a folder's two 150 MiB files both be accepted on 284 MiB: the disk filled mid-transfer
    # (56 KiB left) and the second file failed. Sparse here, so nothing is really written.
    root = tmp_path / "r"
    root.mkdir()
    policy = PlacementPolicy(reserve_bytes=0, resume_min_bytes=0, preallocate=False)
    with ReceiveDir(root, policy) as rd:
        st = os.statvfs(rd.fd)
        share = st.f_bavail * st.f_frsize * 6 // 10  # each fits alone, not both
        kw = {"chunk_size": 65000, "mode": 0o644, "mtime_ns": MTIME, "digest": 1}
        first = rd.receive_file("a.bin", size=share, first_chunk=0, **kw)
        assert rd.promised_bytes() == share
        with pytest.raises(NoSpace) as info:
            rd.receive_file("b.bin", size=share, first_chunk=1 << 40, **kw)
        assert "for files being received" in info.value.message
        first.discard()  # the first one ended: its promise is gone
        assert rd.promised_bytes() == 0
        second = rd.receive_file("b.bin", size=share, first_chunk=1 << 40, **kw)
        second.discard()
    assert listing(root) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_a_read_only_file_system_is_refused_as_such_not_as_full(tmp_path: Path) -> None:
    # A small read-only mount said "not enough space ... 3 B needed, 0 B available": the
    # sender's user went looking for space, where the receiver's mount was the matter. In a
    # mount namespace of its own, gone with the process.
    ro = tmp_path / "ro"
    ro.mkdir()
    code = (
        "from l2fast.transfer.placement import ReceiveDir, PlacementError, NoSpace\n"
        f"rd = ReceiveDir({str(ro)!r})\n"
        "try:\n"
        "    rd.check_space(3)\n"
        "except NoSpace as exc:\n"
        "    print('no space', exc.message)\n"
        "except PlacementError as exc:\n"
        "    print(int(exc.code), exc.message, '|', exc.hint)\n"
    )
    mount = f"mount -t tmpfs -o ro,size=1m l2fast-test {ro}"
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mount} && exec "{sys.executable}" -c "$0"', code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"{int(ErrorCode.IO_ERROR)} the receive directory {ro} is on a read-only file "
        "system | the receiver must make it writable or choose another receive directory"
    )


def test_directories_count_against_the_free_space_too(tmp_path: Path) -> None:
    # Offers of empty directories (or files deep in new ones) must not fill the file system
    # past the reserve either: each new directory takes a block.
    root = tmp_path / "r"
    root.mkdir()
    (root / "old").mkdir()
    with ReceiveDir(root, PlacementPolicy(reserve_bytes=1 << 62, resume_min_bytes=0)) as rd:
        with pytest.raises(NoSpace) as info:
            rd.make_directory("new")
        assert info.value.code == ErrorCode.NO_SPACE
        with pytest.raises(NoSpace):
            rd.receive_file(
                "deep/x.bin", size=0, chunk_size=0, first_chunk=0, mode=0, mtime_ns=0, digest=1
            )
        assert rd.make_directory("old") == "old"  # an existing one costs nothing
    assert listing(root) == ["old"]


def test_another_peers_part_is_not_resumed(recv: ReceiveDir) -> None:
    # Two peers offering the same path, size and mtime: one's chunks must never become the
    # other's (a peer that planted garbage would make the other's transfer fail its digest).
    data = os.urandom(5000)
    alice, mallory = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"
    f = recv.receive_file(
        "x.bin", size=len(data), chunk_size=CHUNK, first_chunk=0, mode=0o644, mtime_ns=MTIME,
        digest=int(Digest.SHA256), peer=mallory,
    )  # fmt: skip
    write_all(f, b"\xee" * len(data), range(3))
    f.interrupt()
    g = recv.receive_file(
        "x.bin", size=len(data), chunk_size=CHUNK, first_chunk=0, mode=0o644, mtime_ns=MTIME,
        digest=int(Digest.SHA256), peer=alice,
    )  # fmt: skip
    assert not g.have and g.resumed_bytes == 0
    write_all(g, data)
    assert finish(g, data) == "x.bin"
    assert (Path(recv.path) / "x.bin").read_bytes() == data


def test_an_interrupted_part_gives_back_the_space_of_what_never_arrived(tmp_path: Path) -> None:
    # A part file is preallocated whole (its first 64 MiB at once, the rest by a thread) so
    # that writes into it are cheap; kept for a resume after an interruption, it used to keep
    # all of that space too: a peer offering large files and sending nothing filled the disk
    # for good (found by a hostile-peer review). Now it keeps the blocks of what was written.
    chunk = 1 << 20
    size = 100 * chunk + 123  # past the first 64 MiB: the thread preallocates the rest
    with ReceiveDir(tmp_path, PlacementPolicy(resume_min_bytes=0)) as rd:
        f = rd.receive_file(
            "big.bin", size=size, chunk_size=chunk, first_chunk=0, mode=0o644, mtime_ns=MTIME,
            digest=int(Digest.SHA256),
        )  # fmt: skip
        part = tmp_path / "big.bin.part"
        assert part.stat().st_blocks * 512 >= 64 * chunk  # preallocated
        data = os.urandom(chunk)
        written = [0, 1, 2, 50]
        for k in written:
            f.write_chunk(k, data)
        f.interrupt()
        used = part.stat().st_blocks * 512
        assert used < (len(written) + 1) * chunk, used
        assert part.stat().st_size == size
        # What was written is still there, and resumes.
        g = rd.receive_file(
            "big.bin", size=size, chunk_size=chunk, first_chunk=0, mode=0o644, mtime_ns=MTIME,
            digest=int(Digest.SHA256),
        )  # fmt: skip
        assert g.held == ChunkRanges([(0, 3), (50, 51)])
        with part.open("rb") as fh:
            fh.seek(50 * chunk)
            assert fh.read(chunk) == data
        g.interrupt()


def test_too_large_and_bad_sizes(tmp_path: Path) -> None:
    with ReceiveDir(tmp_path, PlacementPolicy(max_file_bytes=10)) as rd:
        with pytest.raises(PlacementError) as info:
            start(rd, "x.bin", b"x" * 11)
        assert info.value.code == ErrorCode.TOO_LARGE
        with pytest.raises(PlacementError) as info:
            rd.receive_file("y", size=5, chunk_size=0, first_chunk=0, mode=0, mtime_ns=0, digest=1)
        assert info.value.code == ErrorCode.BAD_REQUEST
    assert os.listdir(tmp_path) == []


def test_receive_offer(recv: ReceiveDir) -> None:
    data = os.urandom(1500)
    offer = FileOffer(
        transfer_id=1,
        kind=int(FileKind.FILE),
        digest=int(Digest.SHA256),
        size=len(data),
        mode=0o640,
        mtime_ns=MTIME,
        first_chunk=9,
        chunk_size=CHUNK,
        path="o/x.bin",
    )
    f = recv.receive_offer(offer)
    assert f.first_chunk == 9 and f.n_chunks == 2
    write_all(f, data)
    assert finish(f, data) == "o/x.bin"
    assert stat.S_IMODE((Path(recv.path) / "o/x.bin").stat().st_mode) == 0o640
    with pytest.raises(PlacementError) as info:
        recv.receive_offer(FileOffer(1, int(FileKind.DIRECTORY), 1, 0, 0, 0, 0, 0, "d"))
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_directories_and_their_metadata(recv: ReceiveDir) -> None:
    root = Path(recv.path)
    assert recv.make_directory("a/b/empty") == "a/b/empty"
    assert recv.make_directory("a/b") == "a/b"  # merging into an existing one is fine
    recv.set_directory_metadata("a/b/empty", 0o2555, MTIME)
    st = (root / "a/b/empty").stat()
    assert stat.S_IMODE(st.st_mode) == 0o755  # owner rwx kept, setgid stripped
    assert st.st_mtime_ns == MTIME
    with pytest.raises(BadName):
        recv.make_directory("../up")
    (root / "file").write_bytes(b"")
    with pytest.raises(BadName, match="not a directory"):
        recv.make_directory("file/sub")
    with pytest.raises(BadName, match="not a directory"):
        start(recv, "file/x", b"1")


# -- symlinks (Warpinator CVE-2022-42725) ------------------------------------------------------


def test_a_planted_directory_symlink_is_never_followed(recv: ReceiveDir, outside: Path) -> None:
    root = Path(recv.path)
    (root / "evil").symlink_to(outside)
    (root / "d").mkdir()
    (root / "d" / "deeper").symlink_to(outside)
    for path in ("evil/x", "d/deeper/x", "evil/sub/x"):
        with pytest.raises(BadName, match="symlink") as info:
            start(recv, path, b"payload")
        assert info.value.code == ErrorCode.BAD_NAME
    with pytest.raises(BadName, match="symlink"):
        recv.make_directory("evil/new")
    with pytest.raises(BadName, match="symlink"):
        recv.set_directory_metadata("evil", 0o777, 0)
    assert os.listdir(outside) == []
    assert stat.S_IMODE(outside.stat().st_mode) != 0o777


def test_a_symlink_at_the_final_name_is_not_written_through(
    tmp_path: Path, recv: ReceiveDir, outside: Path
) -> None:
    target = outside / "victim"
    target.write_bytes(b"precious")
    root = Path(recv.path)
    (root / "x.bin").symlink_to(target)
    data = b"attacker data"
    f = start(recv, "x.bin", data)
    write_all(f, data)
    assert finish(f, data) == "x (1).bin"
    assert target.read_bytes() == b"precious"
    with ReceiveDir(root, PlacementPolicy(overwrite=True, resume_min_bytes=0)) as rd:
        f = start(rd, "x.bin", data)
        write_all(f, data)
        assert finish(f, data) == "x.bin"  # the link itself is replaced, not its target
    assert target.read_bytes() == b"precious"
    assert not (root / "x.bin").is_symlink()


def test_planted_part_files_are_left_alone(recv: ReceiveDir, outside: Path) -> None:
    root = Path(recv.path)
    target = outside / "victim"
    target.write_bytes(b"precious")
    (root / "x.bin.part").symlink_to(target)  # a part file without a sidecar is not ours
    data = b"data" * 300
    f = start(recv, "x.bin", data)
    assert f.part_name == "x (1).bin.part"
    write_all(f, data)
    assert finish(f, data) == "x.bin"
    assert target.read_bytes() == b"precious"
    assert (root / "x.bin.part").is_symlink()


def test_a_forged_sidecar_over_a_hard_link_is_not_resumed(recv: ReceiveDir, outside: Path) -> None:
    root = Path(recv.path)
    data = b"A" * 3000
    victim = root / "victim"  # hard links need the same file system
    victim.write_bytes(b"V" * 3000)
    os.link(victim, root / "x.bin.part")
    forged = SidecarHeader(3000, CHUNK, 0, offer_identity("x.bin", 3000, MTIME, 1))
    (root / "x.bin.part.l2fast").write_bytes(forged.pack() + b"\x00")
    f = start(recv, "x.bin", data)
    assert not f.have  # nlink 2: discarded, not resumed into
    write_all(f, data)
    finish(f, data)
    assert victim.read_bytes() == b"V" * 3000


CHILD = """
import os, signal, sys
from l2fast.transfer.placement import PlacementPolicy, ReceiveDir
rd = ReceiveDir(sys.argv[1], PlacementPolicy(resume_min_bytes=0))
f = rd.receive_file("k.bin", size=10_000, chunk_size=1000, first_chunk=0, mode=0o644,
                    mtime_ns=5, digest=1)
for k in range(6):
    f.write_chunk(k, bytes([k]) * 1000)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_after_sigkill_nothing_is_at_the_final_name_and_it_resumes(recv: ReceiveDir) -> None:
    root = Path(recv.path)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (root / "k.bin").exists()
    data = b"".join(bytes([k]) * 1000 for k in range(10))
    f = recv.receive_file(
        "k.bin", size=10_000, chunk_size=1000, first_chunk=0, mode=0o644, mtime_ns=5, digest=1
    )
    assert f.held == ChunkRanges([(0, 6)])
    write_all(f, data, range(6, 10))
    assert finish(f, data) == "k.bin"
    assert (root / "k.bin").read_bytes() == data


def test_no_replace_without_renameat2(recv: ReceiveDir, monkeypatch: pytest.MonkeyPatch) -> None:
    from l2fast.transfer import incoming

    monkeypatch.setattr(incoming, "_renameat2", None)  # link + unlink instead
    root = Path(recv.path)
    (root / "x.txt").write_bytes(b"mine")
    data = b"theirs"
    f = start(recv, "x.txt", data)
    write_all(f, data)
    assert finish(f, data) == "x (1).txt"
    assert (root / "x.txt").read_bytes() == b"mine"
    assert sorted(os.listdir(root)) == ["x (1).txt", "x.txt"]


# -- small files: an unnamed file, linked into place -------------------------------------------


def test_a_small_file_is_invisible_until_placed(small: ReceiveDir) -> None:
    root = Path(small.path)
    data = os.urandom(2500)
    f = start(small, "d/s.bin", data, mode=0o4644)
    assert f.resume is None and f.part_name is None and not f.have
    write_all(f, data)
    assert listing(root) == ["d"]  # nothing under any name yet
    assert finish(f, data) == "d/s.bin"
    assert (root / "d/s.bin").read_bytes() == data
    assert stat.S_IMODE((root / "d/s.bin").stat().st_mode) == 0o644
    assert (root / "d/s.bin").stat().st_mtime_ns == MTIME
    assert listing(root) == ["d", "d/s.bin"]


def test_a_small_file_never_overwrites_nor_follows_a_symlink(
    small: ReceiveDir, outside: Path
) -> None:
    root = Path(small.path)
    target = outside / "victim"
    target.write_bytes(b"precious")
    (root / "s.txt").symlink_to(target)
    (root / "s (1).txt").write_bytes(b"mine")
    data = b"new"
    f = start(small, "s.txt", data)
    write_all(f, data)
    assert finish(f, data) == "s (2).txt"
    assert target.read_bytes() == b"precious" and (root / "s (1).txt").read_bytes() == b"mine"


def test_a_small_file_with_overwrite(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    target = outside / "victim"
    target.write_bytes(b"precious")
    (root / "s.txt").symlink_to(target)
    (root / "dir").mkdir()
    data = b"new"
    with ReceiveDir(root, PlacementPolicy(overwrite=True)) as rd:
        f = start(rd, "s.txt", data)
        write_all(f, data)
        assert finish(f, data) == "s.txt"
        f = start(rd, "dir", data)
        write_all(f, data)
        with pytest.raises(PlacementError, match="directory"):
            finish(f, data)
        assert f.outcome == "dropped"
    assert target.read_bytes() == b"precious"
    assert (root / "s.txt").read_bytes() == data and not (root / "s.txt").is_symlink()
    assert sorted(os.listdir(root)) == ["dir", "s.txt"]  # no temporary name left behind


def test_a_small_file_interrupted_or_corrupt_leaves_nothing(small: ReceiveDir) -> None:
    data = b"x" * 1500
    f = start(small, "a", data)
    write_all(f, data, range(1))
    f.interrupt()
    assert f.outcome == "dropped"
    g = start(small, "b", data)
    write_all(g, data)
    with pytest.raises(DigestMismatch):
        g.complete(b"1" * 32, b"2" * 32)
    assert os.listdir(small.path) == []


def test_preallocation_goes_on_beside_the_writes(
    recv: ReceiveDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the head of a part file is preallocated before the offer is accepted; the rest is
    allocated by a thread while chunks are written, and no written byte is disturbed."""
    probe = Path(recv.path) / "probe"
    with probe.open("wb") as p:
        try:
            os.posix_fallocate(p.fileno(), 0, 4096)
        except OSError:
            pytest.skip("this file system cannot preallocate")
    probe.unlink()
    monkeypatch.setattr(placement, "PREALLOCATE_AHEAD", 64 * CHUNK)
    monkeypatch.setattr(placement, "PREALLOCATE_SLICE", 16 * CHUNK)
    data = os.urandom(2000 * CHUNK + 17)
    f = start(recv, "big.bin", data)
    part = Path(recv.path) / f.part_name
    write_all(f, data, range(10))  # while the thread allocates
    deadline = time.monotonic() + 10
    while part.stat().st_blocks * 512 < len(data) - CHUNK:  # the last block may be partial
        assert time.monotonic() < deadline, "the rest was never preallocated"
        time.sleep(0.01)
    write_all(f, data, range(10, f.n_chunks))
    assert part.read_bytes() == data
    assert finish(f, data) == "big.bin"
    assert (Path(recv.path) / "big.bin").read_bytes() == data
