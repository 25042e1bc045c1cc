"""The resume sidecar: bitmap marking, held ranges, and what a crash or garbage leaves behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2fast.transfer.ranges import ChunkRanges, ranges_from_indices
from l2fast.transfer.resume import (
    BITMAP_OFFSET,
    Lookup,
    ResumeState,
    SidecarHeader,
    chunk_count,
    offer_identity,
    open_sidecar,
    prefix_bytes,
    sidecar_name,
)

PART = "f.bin.part"
SIDE = sidecar_name(PART)


@pytest.fixture
def dir_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def header(
    size: int = 100_000, chunk: int = 1000, first: int = 0, path: str = "f.bin"
) -> SidecarHeader:
    return SidecarHeader(size, chunk, first, offer_identity(path, size, 1234, 1))


def make_part(tmp_path: Path, size: int) -> None:
    with open(tmp_path / PART, "wb") as f:
        f.truncate(size)


def test_chunk_count_and_prefix_bytes() -> None:
    assert chunk_count(0, 0) == 0
    assert chunk_count(1, 1000) == 1
    assert chunk_count(1000, 1000) == 1
    assert chunk_count(1001, 1000) == 2
    assert prefix_bytes(2, 1000, 1500) == 1500
    assert prefix_bytes(1, 1000, 1500) == 1000
    with pytest.raises(ValueError):
        chunk_count(10, 0)


def test_identity_depends_on_path_size_mtime_and_digest() -> None:
    base = offer_identity("a/b", 10, 5, 1)
    assert len(base) == 16
    assert base == offer_identity("a/b", 10, 5, 1)
    others = {
        offer_identity("a/c", 10, 5, 1),
        offer_identity("a/b", 11, 5, 1),
        offer_identity("a/b", 10, 6, 1),
        offer_identity("a/b", 10, 5, 2),
    }
    assert base not in others and len(others) == 4


def test_header_round_trip_and_crc() -> None:
    h = header(first=77)
    packed = h.pack()
    assert len(packed) == BITMAP_OFFSET
    assert SidecarHeader.unpack(packed) == h
    for pos in (0, 9, 17, 33, 45, 57):
        damaged = bytearray(packed)
        damaged[pos] ^= 0x40
        assert SidecarHeader.unpack(bytes(damaged)) is None
    assert SidecarHeader.unpack(packed[:-1]) is None


def test_mark_and_held_match_a_reference_set(dir_fd: int) -> None:
    rng = random.Random(5)
    state = ResumeState.create(dir_fd, PART, header(size=1_000_003, chunk=997))
    n = state.n_chunks
    marked: set[int] = set()
    for _ in range(120):
        start = rng.randrange(n)
        end = min(n, start + rng.choice([1, 2, 7, 8, 9, 17, 64, 200]))
        state.mark(start, end)
        marked.update(range(start, end))
        assert list(state.held()) == ranges_from_indices(marked)
    first_missing = next(i for i in range(n + 1) if i not in marked)
    assert state.contiguous() == first_missing
    assert state.is_complete() == (len(marked) == n)
    state.remove()
    state = ResumeState.create(dir_fd, PART, header(size=1_000_003, chunk=997))
    state.mark(0, n - 1)
    assert not state.is_complete() and state.contiguous() == n - 1
    state.mark(0, n)
    assert state.is_complete() and state.contiguous() == n
    assert list(state.held()) == [(0, n)]
    state.remove()


def test_mark_refuses_chunks_outside_the_file(dir_fd: int) -> None:
    state = ResumeState.create(dir_fd, PART, header(size=10_000, chunk=1000))
    with pytest.raises(ValueError):
        state.mark(9, 11)
    with pytest.raises(ValueError):
        state.mark(-1, 1)
    state.remove()


def test_bits_are_lsb_first_and_visible_in_the_file_without_flush(
    tmp_path: Path, dir_fd: int
) -> None:
    state = ResumeState.create(dir_fd, PART, header(size=20_000, chunk=1000))
    state.mark(0, 1)
    state.mark(9, 11)
    raw = (tmp_path / SIDE).read_bytes()  # same page cache as the shared mapping
    assert raw[BITMAP_OFFSET] == 0b0000_0001
    assert raw[BITMAP_OFFSET + 1] == 0b0000_0110
    assert len(raw) == BITMAP_OFFSET + 3
    state.remove()


def test_release_then_resume_in_another_session(tmp_path: Path, dir_fd: int) -> None:
    state = ResumeState.create(dir_fd, PART, header(first=10))
    make_part(tmp_path, 100_000)
    state.mark(0, 30)
    state.mark(50, 60)
    state.release()
    assert (tmp_path / PART).exists() and (tmp_path / SIDE).exists()

    found = open_sidecar(dir_fd, PART, header(first=500))
    assert found.status is Lookup.RESUMABLE and found.state is not None
    assert list(found.state.held()) == [(0, 30), (50, 60)]
    assert found.state.header.first_chunk == 500
    assert found.state.held_in_session() == ChunkRanges([(500, 530), (550, 560)])
    found.state.mark_session(530, 550)
    assert found.state.contiguous() == 60
    found.state.finish()  # as after the rename: the sidecar goes, the part is not ours to touch
    assert not (tmp_path / SIDE).exists() and (tmp_path / PART).exists()


def test_a_live_sidecar_is_busy(tmp_path: Path, dir_fd: int) -> None:
    state = ResumeState.create(dir_fd, PART, header())
    make_part(tmp_path, 100_000)
    assert open_sidecar(dir_fd, PART, header()).status is Lookup.BUSY
    with pytest.raises(FileExistsError):
        ResumeState.create(dir_fd, PART, header())
    state.release()
    again = open_sidecar(dir_fd, PART, header())
    assert again.status is Lookup.RESUMABLE and again.state is not None
    again.state.remove()
    assert not (tmp_path / PART).exists() and not (tmp_path / SIDE).exists()


@pytest.mark.parametrize(
    "damage",
    ["garbage", "empty", "truncated_header", "short_bitmap", "long_bitmap", "crc", "version"],
)
def test_a_broken_sidecar_is_discarded_with_its_part(
    tmp_path: Path, dir_fd: int, damage: str
) -> None:
    state = ResumeState.create(dir_fd, PART, header())
    make_part(tmp_path, 100_000)
    state.mark(0, 50)
    state.release()
    raw = bytearray((tmp_path / SIDE).read_bytes())
    if damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    elif damage == "empty":
        raw = bytearray()
    elif damage == "truncated_header":
        raw = raw[:40]
    elif damage == "short_bitmap":
        raw = raw[:-1]
    elif damage == "long_bitmap":
        raw += b"\x00"
    elif damage == "crc":
        raw[20] ^= 1
    elif damage == "version":
        raw[9] = 2
    (tmp_path / SIDE).write_bytes(bytes(raw))
    found = open_sidecar(dir_fd, PART, header())
    assert found.status is Lookup.MISSING
    assert "discarded" in found.note
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("change", ["identity", "size", "chunk_size"])
def test_a_sidecar_of_another_offer_is_discarded(tmp_path: Path, dir_fd: int, change: str) -> None:
    ResumeState.create(dir_fd, PART, header()).release()
    make_part(tmp_path, 100_000)
    new = {
        "identity": header(path="other"),
        "size": header(size=100_001),
        "chunk_size": header(chunk=500),
    }[change]
    assert open_sidecar(dir_fd, PART, new).status is Lookup.MISSING
    assert os.listdir(tmp_path) == []


def test_missing_or_resized_part_file_means_start_over(tmp_path: Path, dir_fd: int) -> None:
    ResumeState.create(dir_fd, PART, header()).release()
    found = open_sidecar(dir_fd, PART, header())  # crash after the rename: part is gone
    assert found.status is Lookup.MISSING and "gone" in found.note
    assert os.listdir(tmp_path) == []
    ResumeState.create(dir_fd, PART, header()).release()
    make_part(tmp_path, 99_999)
    assert open_sidecar(dir_fd, PART, header()).status is Lookup.MISSING
    assert os.listdir(tmp_path) == []


def test_a_symlinked_sidecar_is_not_followed(tmp_path: Path, dir_fd: int) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"precious")
    (tmp_path / SIDE).symlink_to(outside)
    assert open_sidecar(dir_fd, PART, header()).status is Lookup.BUSY
    assert outside.read_bytes() == b"precious"
    assert (tmp_path / SIDE).is_symlink()


def test_empty_file_has_an_empty_bitmap(dir_fd: int) -> None:
    state = ResumeState.create(dir_fd, PART, SidecarHeader(0, 0, 3, offer_identity("e", 0, 0, 1)))
    assert state.n_chunks == 0
    assert state.is_complete()
    assert not state.held()
    state.remove()
    assert state.closed


CHILD = """
import os, signal, sys
from l2fast.transfer.resume import ResumeState, SidecarHeader, offer_identity
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
h = SidecarHeader(100_000, 1000, 0, offer_identity("f.bin", 100_000, 1234, 1))
state = ResumeState.create(fd, "f.bin.part", h)
with open(os.path.join(sys.argv[1], "f.bin.part"), "wb") as f:
    f.truncate(100_000)
state.mark(0, 20)
state.mark(40, 41)
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no release: the bits must survive anyway
"""


def test_bits_survive_a_sigkill(tmp_path: Path, dir_fd: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    found = open_sidecar(dir_fd, PART, header())  # the kernel dropped the dead child's lock
    assert found.status is Lookup.RESUMABLE and found.state is not None
    assert list(found.state.held()) == [(0, 20), (40, 41)]
    found.state.remove()


def test_the_bitmap_view_is_the_shared_bitmap(tmp_path: Path, dir_fd: int) -> None:
    state = ResumeState.create(dir_fd, PART, header(size=20_000, chunk=1000))
    view = state.bitmap
    assert len(view) == 3 and not view.readonly
    view[1] |= 0b100  # as the C loop would: chunk 10
    assert list(state.held()) == [(10, 11)]
    state.release()  # the view is still out: closing must not fail
    assert (tmp_path / SIDE).read_bytes()[BITMAP_OFFSET + 1] == 0b100
    view.release()
