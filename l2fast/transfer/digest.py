"""End-to-end file digests, computed beside the data path, not in it (issue 5 §Files).

SHA-256 is the default so that a user can check a received file with `sha256sum`; BLAKE2b-256
(`Digest.BLAKE2B_256`, `b2sum -l 256`) is the faster option. Both are 32 bytes, as FILE_END's
`digest_value` expects (PROTOCOL.md §FILE_END).

Neither side hashes on the per-frame path. Each digester runs in its own thread: hashlib
releases the GIL for updates larger than 2 KiB, so hashing in blocks of 256 KiB proceeds in
parallel with the sender's and receiver's other work. (Larger blocks were measured slower: a
block that no longer fits the CPU cache is read from memory twice, once by the copy and once
by the hash. SHA-256 runs at about 1.2-1.3 GB/s here, about 10 Gbit/s.)

- `FileDigester` (sender): hashes the whole file, from the sender's own mapping or from a
  descriptor, while sending goes on; `result()` waits for the digest.
- `PrefixDigester` (receiver): chunks arrive out of order, so it hashes the part file's
  contiguous prefix as it grows. The receiver tells it "bytes [0, N) are final"; it reads them
  back with `preadv` into one reused buffer (so its memory stays at one block, whatever the file
  size) and finishes after the last byte. The data was just written, so the reads come from
  the page cache.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from l2fast.procname import name_this_thread
from l2fast.wire.constants import Digest

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12 on

__all__ = [
    "DEFAULT_BLOCK",
    "DIGEST_BYTES",
    "DigestResult",
    "FileDigester",
    "PrefixDigester",
    "digest_name",
    "file_digest",
    "new_hasher",
]

DEFAULT_BLOCK = 256 << 10  # GIL released per update; small enough to stay in the CPU cache
DIGEST_BYTES = 32
_MIN_STEP = 1 << 20  # the receiver waits for this much new prefix before reading (or the end)


class Hasher(Protocol):
    """The part of hashlib's hash objects used here."""

    def update(self, data: Buffer, /) -> None:
        """Feed bytes."""

    def digest(self) -> bytes:
        """The digest so far."""


def new_hasher(digest: Digest | int = Digest.SHA256) -> Hasher:
    """A fresh hash object for one digest bit (ValueError for anything else)."""
    if digest == Digest.SHA256:
        return hashlib.sha256()
    if digest == Digest.BLAKE2B_256:
        return hashlib.blake2b(digest_size=DIGEST_BYTES)
    raise ValueError(f"unknown digest {digest:#x}")


def digest_name(digest: Digest | int) -> str:
    """The algorithm's usual name: `sha256` or `blake2b-256`."""
    if digest == Digest.SHA256:
        return "sha256"
    if digest == Digest.BLAKE2B_256:
        return "blake2b-256"
    raise ValueError(f"unknown digest {digest:#x}")


@dataclass(frozen=True, slots=True)
class DigestResult:
    """A finished digest."""

    algorithm: Digest
    raw: bytes  #: the digest bytes (FILE_END / FILE_RESULT `digest_value`)
    size: int  #: bytes hashed
    seconds: float  #: wall time from start to finish (includes waiting for data)

    @property
    def hex(self) -> str:
        """Lower-case hex, as `sha256sum` prints it."""
        return self.raw.hex()


def file_digest(
    source: str | os.PathLike[str] | int, digest: Digest | int = Digest.SHA256
) -> DigestResult:
    """Digest of a whole file, in the calling thread (a path or an open descriptor)."""
    d = FileDigester(source, digest)
    return d.result()


class _Worker:
    """A daemon thread that runs `body` once and keeps its result or error."""

    def __init__(self, body: Callable[[], None], name: str) -> None:
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._body = body
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        name_this_thread(self._thread.name)
        try:
            self._body()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def wait(self, timeout: float | None) -> None:
        if not self._done.wait(timeout):
            raise TimeoutError("digest not finished yet")
        if self._error is not None:
            raise self._error

    @property
    def done(self) -> bool:
        return self._done.is_set()


class FileDigester:
    """Sender side: the digest of a whole file, hashed in a background thread.

    `source` is the sender's own mapping (or any buffer: hashed in place, nothing copied), or
    a descriptor (duplicated) or a path, read with `preadv` into one reused block. Reading
    rather than mapping a descriptor keeps resident memory at one block whatever the file
    size, and turns a file truncated under us into an error instead of a SIGBUS that would
    kill the sender.
    """

    def __init__(
        self,
        source: Buffer | int | str | os.PathLike[str],
        digest: Digest | int = Digest.SHA256,
        *,
        block: int = DEFAULT_BLOCK,
        start: bool = True,
    ) -> None:
        self.algorithm = Digest(digest)
        self._hasher = new_hasher(digest)
        self._block = max(1, block)
        self._hashed = 0
        self._cancelled = False
        self._raw = b""
        self._started = 0.0
        self._finished = 0.0
        self._fd = -1
        self._view: memoryview | None = None
        if isinstance(source, int):
            self._fd = os.dup(source)
        elif isinstance(source, str | os.PathLike):
            self._fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        else:
            self._view = memoryview(source).cast("B")
        self._worker = _Worker(self._run, "l2f-digest")
        if start:
            self.start()

    def start(self) -> None:
        """Start hashing (done by the constructor unless `start=False`)."""
        self._started = time.monotonic()
        self._worker.start()

    @property
    def hashed(self) -> int:
        """Bytes hashed so far."""
        return self._hashed

    @property
    def done(self) -> bool:
        """True once the digest is known (or hashing failed)."""
        return self._worker.done

    def cancel(self) -> None:
        """Stop at the next block; `result()` then raises."""
        self._cancelled = True

    def result(self, timeout: float | None = None) -> DigestResult:
        """Wait for the digest (TimeoutError after `timeout` seconds; the hashing error if any)."""
        self._worker.wait(timeout)
        return DigestResult(self.algorithm, self._raw, self._hashed, self._finished - self._started)

    def _run(self) -> None:
        try:
            if self._view is not None:
                self._hash_view(self._view)
            else:
                self._hash_fd(self._fd)
            self._raw = self._hasher.digest()
        finally:
            if self._view is not None:
                self._view.release()
            if self._fd >= 0:
                os.close(self._fd)
            self._finished = time.monotonic()

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise RuntimeError("digest cancelled")

    def _hash_view(self, view: memoryview) -> None:
        size = len(view)
        for pos in range(0, size, self._block):
            self._check_cancelled()
            with view[pos : pos + self._block] as piece:
                self._hasher.update(piece)
            self._hashed = min(pos + self._block, size)

    def _hash_fd(self, fd: int) -> None:
        size = os.fstat(fd).st_size  # the size listed and offered; growth after it is ignored
        with memoryview(bytearray(max(1, min(self._block, size)))) as buf:
            while self._hashed < size:
                self._check_cancelled()
                want = min(len(buf), size - self._hashed)
                got = os.preadv(fd, [buf[:want]], self._hashed)
                if got <= 0:
                    raise OSError(f"file shrank to {self._hashed} bytes while being hashed")
                self._hasher.update(buf[:got])
                self._hashed += got


class PrefixDigester:
    """Receiver side: hashes a part file's contiguous prefix as it becomes complete.

    Call `advance(n)` whenever bytes [0, n) of the file are written and final (from the
    receiver's cumulative ack, PROTOCOL.md §FEEDBACK `cum_ack`, in bytes). Smaller values than
    before are ignored. The digest is ready once `advance(size)` was called and the thread
    caught up; `result()` waits for it.
    """

    def __init__(
        self,
        fd: int,
        size: int,
        digest: Digest | int = Digest.SHA256,
        *,
        block: int = DEFAULT_BLOCK,
        min_step: int = _MIN_STEP,
    ) -> None:
        if size < 0:
            raise ValueError(f"size {size} is negative")
        self.algorithm = Digest(digest)
        self.size = size
        self._hasher = new_hasher(digest)
        self._fd = os.dup(fd)
        self._buffer = bytearray(max(1, min(block, size)))
        self._min_step = min_step
        self._hashed = 0
        self._target = 0
        self._cancelled = False
        self._raw = b""
        self._cond = threading.Condition()
        self._started = time.monotonic()
        self._finished = 0.0
        self._worker = _Worker(self._run, "l2f-rx-digest")
        self._worker.start()

    @property
    def hashed(self) -> int:
        """Bytes of the prefix hashed so far."""
        return self._hashed

    @property
    def done(self) -> bool:
        """True once the whole file is hashed (or hashing failed or was cancelled)."""
        return self._worker.done

    def advance(self, contiguous: int) -> None:
        """Bytes [0, contiguous) of the part file are final (clipped to the size)."""
        contiguous = min(contiguous, self.size)
        with self._cond:
            if contiguous > self._target:
                self._target = contiguous
                self._cond.notify()

    def cancel(self) -> None:
        """Stop hashing; `result()` then raises."""
        with self._cond:
            self._cancelled = True
            self._cond.notify()

    def result(self, timeout: float | None = None) -> DigestResult:
        """Wait for the digest of the whole file (TimeoutError after `timeout` seconds)."""
        self._worker.wait(timeout)
        return DigestResult(self.algorithm, self._raw, self._hashed, self._finished - self._started)

    def _next_target(self) -> int:
        """Wait until enough new prefix is there (or the end); the byte to hash up to."""
        with self._cond:
            while not self._cancelled:
                ready = self._target - self._hashed
                if self._target == self.size or ready >= self._min_step:
                    return self._target
                self._cond.wait()
        raise RuntimeError("digest cancelled")

    def _run(self) -> None:
        view = memoryview(self._buffer)
        try:
            while self._hashed < self.size:
                target = self._next_target()
                while self._hashed < target:
                    if self._cancelled:
                        raise RuntimeError("digest cancelled")
                    want = min(len(view), target - self._hashed)
                    got = os.preadv(self._fd, [view[:want]], self._hashed)
                    if got <= 0:
                        raise OSError(
                            f"part file ends at {self._hashed} bytes, before its declared "
                            f"size {self.size}"
                        )
                    self._hasher.update(view[:got])
                    self._hashed += got
            self._raw = self._hasher.digest()
        finally:
            view.release()
            os.close(self._fd)
            self._finished = time.monotonic()
