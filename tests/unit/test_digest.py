"""File digests beside the data path: same bytes as hashlib and sha256sum, in any arrival order."""

from __future__ import annotations

import hashlib
import mmap
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from l2fast.transfer.digest import (
    FileDigester,
    PrefixDigester,
    digest_name,
    file_digest,
    new_hasher,
)
from l2fast.wire.constants import Digest

BLOCK = 64 << 10  # small blocks, so that a few hundred KiB exercise every loop


def reference(data: bytes, alg: Digest) -> bytes:
    if alg == Digest.SHA256:
        return hashlib.sha256(data).digest()
    return hashlib.blake2b(data, digest_size=32).digest()


def write(tmp_path: Path, data: bytes, name: str = "f") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_algorithms() -> None:
    assert digest_name(Digest.SHA256) == "sha256"
    assert digest_name(Digest.BLAKE2B_256) == "blake2b-256"
    h = new_hasher(Digest.BLAKE2B_256)
    h.update(b"abc")
    assert h.digest() == hashlib.blake2b(b"abc", digest_size=32).digest()
    with pytest.raises(ValueError):
        new_hasher(0x4)
    with pytest.raises(ValueError):
        digest_name(0)


@pytest.mark.parametrize("alg", [Digest.SHA256, Digest.BLAKE2B_256])
@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 123])
def test_file_digester_matches_hashlib(tmp_path: Path, alg: Digest, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = write(tmp_path, data)
    want = reference(data, alg)
    assert FileDigester(path, alg, block=BLOCK).result(10).raw == want
    fd = os.open(path, os.O_RDONLY)
    try:
        result = FileDigester(fd, alg, block=BLOCK).result(10)
        assert os.fstat(fd)  # the digester used its own copy of the descriptor
    finally:
        os.close(fd)
    assert result.raw == want and result.size == size and result.algorithm == alg
    assert result.hex == want.hex()
    if size:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            assert FileDigester(m, alg, block=BLOCK).result(10).raw == want


def test_matches_sha256sum(tmp_path: Path) -> None:
    tool = shutil.which("sha256sum")
    if tool is None:
        pytest.skip("sha256sum not installed")
    path = write(tmp_path, os.urandom(300_000))
    printed = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True)
    assert file_digest(path).hex == printed.stdout.split()[0]


def test_file_digester_can_be_cancelled(tmp_path: Path) -> None:
    path = write(tmp_path, os.urandom(4 * BLOCK))
    d = FileDigester(path, block=BLOCK, start=False)
    d.cancel()
    d.start()
    with pytest.raises(RuntimeError, match="cancelled"):
        d.result(10)
    assert d.done


@pytest.mark.parametrize("alg", [Digest.SHA256, Digest.BLAKE2B_256])
@pytest.mark.parametrize("seed", range(4))
def test_prefix_digester_in_random_completion_order(tmp_path: Path, alg: Digest, seed: int) -> None:
    """Chunks land in a random order; the prefix is reported as it grows, as a receiver would."""
    rng = random.Random(seed)
    chunk = rng.choice([1000, 1458, 8972])
    size = rng.randrange(1, 400_000)
    data = rng.randbytes(size)
    path = tmp_path / "part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, size)
        n = -(-size // chunk)
        order = list(range(n))
        rng.shuffle(order)
        d = PrefixDigester(fd, size, alg, block=BLOCK, min_step=rng.choice([1, 4096, 1 << 20]))
        have = [False] * n
        contiguous = 0
        for k in order:
            os.pwrite(fd, data[k * chunk : (k + 1) * chunk], k * chunk)
            have[k] = True
            while contiguous < n and have[contiguous]:
                contiguous += 1
            d.advance(contiguous * chunk)  # past the size on the last chunk: clipped
            if rng.random() < 0.1:
                d.advance(0)  # going back is ignored
        result = d.result(10)
    finally:
        os.close(fd)
    assert result.raw == reference(data, alg)
    assert result.size == size


def test_prefix_digester_waits_for_the_whole_file(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    fd = os.open(write(tmp_path, data), os.O_RDONLY)
    try:
        d = PrefixDigester(fd, len(data), min_step=1)
        d.advance(5000)
        with pytest.raises(TimeoutError):
            d.result(0.05)
        assert not d.done
        d.advance(len(data))
        assert d.result(10).raw == hashlib.sha256(data).digest()
    finally:
        os.close(fd)


def test_prefix_digester_of_an_empty_file(tmp_path: Path) -> None:
    fd = os.open(write(tmp_path, b""), os.O_RDONLY)
    try:
        assert PrefixDigester(fd, 0).result(10).raw == hashlib.sha256(b"").digest()
    finally:
        os.close(fd)


def test_prefix_digester_reports_a_short_file(tmp_path: Path) -> None:
    fd = os.open(write(tmp_path, b"x" * 100), os.O_RDONLY)
    try:
        d = PrefixDigester(fd, 200)
        d.advance(200)
        with pytest.raises(OSError, match="ends at 100 bytes"):
            d.result(10)
    finally:
        os.close(fd)


def test_prefix_digester_cancel(tmp_path: Path) -> None:
    fd = os.open(write(tmp_path, b"x" * 100), os.O_RDONLY)
    try:
        d = PrefixDigester(fd, 100)
        d.cancel()
        with pytest.raises(RuntimeError, match="cancelled"):
            d.result(10)
    finally:
        os.close(fd)
