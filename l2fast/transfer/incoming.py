"""One file being received, from its first byte to its final name (`IncomingFile`).

`l2fast.transfer.placement.ReceiveDir` opens it (name checks, the directory walk, the part
file or unnamed file, resume); this module writes into it within the declared size and places
it: digest comparison, mode and mtime, fsync, the never-replacing rename (or `overwrite`), the
directory fsync, the sidecar's removal. See `l2fast.transfer.placement` for the rules and why.
It also holds the errors of receiving, the `PlacementPolicy`, and `PresentFile`: a file already
under the offered name, which is read for its digest and never written.
"""

from __future__ import annotations

import ctypes
import errno
import hmac
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, cast

from l2fast.errors import L2fastError
from l2fast.native import datapath as dp
from l2fast.transfer.names import display_name, variant_name
from l2fast.transfer.ranges import ChunkRanges
from l2fast.transfer.resume import ResumeState, SidecarHeader, chunk_count
from l2fast.wire.constants import ErrorCode

__all__ = [
    "MAX_NAME_ATTEMPTS",
    "PROC_FD",
    "BadName",
    "DigestMismatch",
    "IncomingFile",
    "NoSpace",
    "PlacedFile",
    "PlacementError",
    "PlacementPolicy",
    "PresentFile",
    "place_files",
]

MAX_NAME_ATTEMPTS = 100  # `name (1)` .. `name (99)`, then give up with a clear error


class PlacementError(L2fastError):
    """A file could not be received or placed; `code` is the wire reason (§ERROR)."""

    code: ErrorCode = ErrorCode.IO_ERROR

    def __init__(self, message: str, hint: str | None = None, code: ErrorCode | None = None):
        super().__init__(message, hint)
        if code is not None:
            self.code = code


class BadName(PlacementError):
    """An offered name is refused, or its path runs into a symlink or a non-directory."""

    code = ErrorCode.BAD_NAME


class NoSpace(PlacementError):
    """Not enough free space in the receive directory for the offered file."""

    code = ErrorCode.NO_SPACE


class DigestMismatch(PlacementError):
    """The data does not match the sender's digest; the part file was deleted."""

    code = ErrorCode.DIGEST_MISMATCH


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """How a receive directory places files."""

    overwrite: bool = False  #: replace an existing file instead of choosing `name (1)`
    mode_mask: int = 0o755  #: permission bits kept from the offer (setuid etc. always go)
    preallocate: bool = True  #: posix_fallocate the part file (ENOSPC at accept, not later)
    durable: bool = True  #: fsync part files and directories (off: faster, crash-unsafe)
    reserve_bytes: int = 16 << 20  #: free space to leave untouched
    max_file_bytes: int | None = None  #: refuse larger files with TOO_LARGE
    #: Smaller files get no part file and no sidecar: they are written to an unnamed file
    #: (O_TMPFILE) that is linked under its final name once verified. Resuming them would
    #: save little, and this halves the system calls per file and leaves nothing behind after
    #: a crash (issue 5's 10 000 small files).
    resume_min_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class PlacedFile:
    """A verified file under its final name."""

    final_name: str  #: POSIX path relative to the receive directory (FILE_RESULT `final_name`)
    size: int
    renamed: bool  #: True when the offered name was taken and another was chosen


class PresentFile:
    """A regular file already under an offered name with the offered size, open read-only
    (PROTOCOL.md §Files already at the receiver). Its digest decides whether the offer is this
    file; nothing is ever written to it, renamed or removed. Close it when decided."""

    def __init__(self, fd: int, final_name: str, size: int) -> None:
        self.fd = fd
        #: POSIX path relative to the receive directory (FILE_RESULT `final_name`).
        self.final_name = final_name
        self.size = size

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- renames -----------------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
PROC_FD = os.path.isdir("/proc/self/fd")  # needed to link an O_TMPFILE file into place
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def _rename_noreplace(dir_fd: int, src: str, dst: str) -> None:
    """Rename `src` to `dst` in one directory, atomically failing (FileExistsError) if `dst`
    exists. renameat2(RENAME_NOREPLACE) first; where the file system lacks it, link + unlink,
    which is as atomic about the target (only a crash between the two leaves both names)."""
    if _renameat2 is not None:
        ret = _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE)
        if ret == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=dir_fd)


def _held_bytes(held: ChunkRanges, chunk_size: int, size: int) -> int:
    """Bytes in the held file-relative chunks (the last chunk may be short)."""
    total = held.count * chunk_size
    last = chunk_count(size, chunk_size) - 1
    if held.count and last in held:
        total -= last * chunk_size + chunk_size - size
    return total


#: Holes are punched in whole blocks of this size (a partial block would only be zeroed).
_HOLE_ALIGN = 4096


class _Preallocating(Protocol):
    """The thread preallocating the rest of a part file (`placement.Preallocation`)."""

    def stop(self, timeout: float = ...) -> None: ...


class IncomingFile:
    """One file being received; finish with `complete`, `interrupt` or `discard` (as a
    context manager, an exception interrupts it).

    The C writers use `fd` (the part file, already at its declared size) and, when `resume`
    is not None, `resume.mapping` (the chunk bitmap to mark). `have` is FILE_ACCEPT's `have`
    in the session's chunk numbers. Files under `resume_min_bytes` have no part file name
    and no bitmap (`resume` and `part_name` are None): interrupting one drops its data.
    """

    def __init__(
        self,
        policy: PlacementPolicy,
        parent_fd: int,
        components: tuple[str, ...],
        header: SidecarHeader,
        fd: int,
        mode: int,
        mtime_ns: int,
        state: ResumeState | None,
        preallocation: _Preallocating | None = None,
    ) -> None:
        self.policy = policy
        self._preallocation = preallocation
        self._parent = parent_fd
        self.components = components
        self.resume = state
        self.fd = fd
        self.mode = mode
        self.mtime_ns = mtime_ns
        self.size = header.size
        self.chunk_size = header.chunk_size
        self.first_chunk = header.first_chunk
        self.n_chunks = header.n_chunks
        held = state.held() if state is not None else ChunkRanges()
        #: Chunks already in the part file (resume), file-relative: chunk 0 is the file's first.
        self.held = held
        #: Bytes those chunks hold: what resume saves.
        self.resumed_bytes = _held_bytes(held, self.chunk_size, self.size)
        #: The same chunks as DATA `seq` numbers of this session (FILE_ACCEPT `have`).
        self.have = ChunkRanges((s + self.first_chunk, e + self.first_chunk) for s, e in held)
        #: "placed", "kept" (part kept for resume), "dropped" (an unnamed file interrupted)
        #: or "discarded" once finished.
        self.outcome: str | None = None

    @property
    def rel_path(self) -> str:
        """The offered path, relative to the receive directory."""
        return "/".join(self.components)

    @property
    def display(self) -> str:
        """The offered path, escaped for a terminal."""
        return display_name(self.rel_path)

    @property
    def part_name(self) -> str | None:
        """The part file's name in its directory (None for an unnamed small file)."""
        return self.resume.part_name if self.resume is not None else None

    def _check_open(self) -> None:
        if self.outcome is not None:
            raise PlacementError(f"{self.display} is already {self.outcome}")

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write bytes at `offset` of the part file; never past the declared size."""
        self._check_open()
        end = offset + len(data)
        if offset < 0 or end > self.size:
            raise PlacementError(
                f"write [{offset}, {end}) is outside the declared size {self.size} of "
                f"{self.display}",
                code=ErrorCode.TOO_LARGE,
            )
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written

    def write_chunk(self, seq: int, data: bytes | memoryview) -> None:
        """Write chunk `seq` (a DATA `seq` of this session) and record it in the bitmap."""
        index = seq - self.first_chunk
        if not 0 <= index < self.n_chunks:
            raise PlacementError(
                f"chunk {seq} is not one of {self.display}", code=ErrorCode.BAD_REQUEST
            )
        start = index * self.chunk_size
        expected = min(self.chunk_size, self.size - start)
        if len(data) != expected:
            raise PlacementError(
                f"chunk {seq} of {self.display} is {len(data)} bytes, not {expected}",
                code=ErrorCode.BAD_REQUEST,
            )
        self.write_at(start, data)
        if self.resume is not None:
            self.resume.mark(index, index + 1)

    def complete(self, expected_digest: bytes, actual_digest: bytes) -> PlacedFile:
        """Place the file if the digests match: mode and mtime, fsync, rename, fsync the
        directory, drop the sidecar. On a mismatch the part is deleted and DigestMismatch
        raised; on an I/O error the part is kept for a resume and the error raised
        (PlacementError). `place_files` does the same for several files at once."""
        result = place_files([(self, expected_digest, actual_digest)])[0]
        if isinstance(result, PlacementError):
            raise result
        return result

    # The steps of placing, in order (`place_files` runs each step over a whole batch).

    def _ready(self, expected_digest: bytes, actual_digest: bytes) -> None:
        """Compare the digests (a mismatch discards the part: DigestMismatch), check the size
        and apply mode and mtime."""
        self._check_open()
        if not hmac.compare_digest(expected_digest, actual_digest):
            self.discard()
            raise DigestMismatch(
                f"{self.display}: digest mismatch ({actual_digest.hex()} received, "
                f"{expected_digest.hex()} sent); the partial file was deleted",
                hint="send it again",
            )
        info = os.fstat(self.fd)
        if info.st_size != self.size:
            raise PlacementError(
                f"{self.display}: part file is {info.st_size} bytes, not the declared {self.size}"
            )
        os.fchmod(self.fd, self.mode & 0o777 & self.policy.mode_mask)
        os.utime(self.fd, ns=(time.time_ns(), self.mtime_ns))

    def _name(self) -> str:
        """Give the data its final name (data already durable when the policy is): the
        offered one, replaced under `overwrite`, else the first free variant."""
        leaf = self.components[-1]
        if not self.policy.overwrite:
            return self._rename_to_free_name(leaf)
        source = self.part_name
        if source is None:  # give the unnamed file a private name first
            source = f".l2fast-{secrets.token_hex(8)}.tmp"
            self._move(source)
        try:
            os.rename(source, leaf, src_dir_fd=self._parent, dst_dir_fd=self._parent)
        except IsADirectoryError:
            if self.part_name is None:
                os.unlink(source, dir_fd=self._parent)
            raise PlacementError(
                f"{self.display}: a directory of that name is in the way"
            ) from None
        return leaf

    def _placed(self, final: str) -> PlacedFile:
        """The name is durable: drop the sidecar and close."""
        if self.resume is not None:
            self.resume.finish()
        self._close("placed")
        rel = "/".join((*self.components[:-1], final))
        return PlacedFile(final_name=rel, size=self.size, renamed=final != self.components[-1])

    def _rename_to_free_name(self, leaf: str) -> str:
        for n in range(MAX_NAME_ATTEMPTS):
            candidate = variant_name(leaf, n)
            try:
                self._move(candidate)
            except FileExistsError:
                continue
            return candidate
        last = display_name(variant_name(leaf, MAX_NAME_ATTEMPTS - 1))
        raise PlacementError(
            f"{self.display}: names up to {last} are all taken",
            hint="move files out of the way and send again",
        )

    def _move(self, name: str) -> None:
        """Give the data the name `name`, atomically, never replacing (FileExistsError)."""
        if self.part_name is not None:
            _rename_noreplace(self._parent, self.part_name, name)
        else:  # linkat of an O_TMPFILE file: fails with EEXIST rather than replace
            os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=self._parent, follow_symlinks=True)

    def interrupt(self) -> None:
        """Stop, keeping the part file and its sidecar for a later resume (an unnamed small
        file just vanishes). The space preallocated for chunks that never arrived is given
        back: a part file costs the disk what was received, not what was offered (a peer that
        offers large files and sends nothing must not fill the receive directory for good)."""
        if self.outcome is None:
            self._stop_preallocating()
            if self.resume is not None:
                self._give_back_unwritten(self.resume)
                self.resume.release()
            self._close("kept" if self.resume is not None else "dropped")

    def discard(self) -> None:
        """Stop, deleting the part file and its sidecar."""
        if self.outcome is None:
            if self.resume is not None:
                self.resume.remove()
            self._close("discarded")

    def _stop_preallocating(self) -> None:
        preallocation, self._preallocation = self._preallocation, None
        if preallocation is not None:
            preallocation.stop()

    def _give_back_unwritten(self, resume: ResumeState) -> None:
        """Punch holes where no chunk was written (best effort: the part is good without)."""
        for start, end in resume.held().gaps(0, self.n_chunks):
            lo = -(-start * self.chunk_size // _HOLE_ALIGN) * _HOLE_ALIGN
            hi = min(end * self.chunk_size, self.size)
            if hi < self.size:
                hi = hi // _HOLE_ALIGN * _HOLE_ALIGN
            if hi <= lo:
                continue
            try:
                if not dp.punch_hole(self.fd, lo, hi - lo):
                    return  # the file system cannot: nothing more to try
            except L2fastError:
                return

    def _close(self, outcome: str) -> None:
        self._stop_preallocating()
        self.outcome = outcome
        os.close(self.fd)
        os.close(self._parent)

    def __enter__(self) -> IncomingFile:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.interrupt()


def place_files(
    batch: Sequence[tuple[IncomingFile, bytes, bytes]],
) -> list[PlacedFile | PlacementError]:
    """Place verified files, each as `IncomingFile.complete` places one, paying the file
    system's durability barriers once for the batch rather than twice per file.

    `batch` holds (file, the sender's digest, ours). In order: every file's digests compared
    and its mode and mtime applied; under a durable policy, every file's data queued for
    writing before the first fsync, so that a journaling file system commits them together
    (each fsync after the first then finds its file committed); each file named; each
    directory among them fsynced once. A file counts as placed only after that, so a
    FILE_RESULT sent for it still means its data and its name survive a crash.

    Returns the PlacedFile or the PlacementError of each file, in order: DigestMismatch (the
    part was deleted), or another (the part kept for a resume, as `interrupt` keeps it; an
    OSError of the file system becomes a PlacementError naming the file and the step). Any
    other exception interrupts every file not yet placed and propagates.
    """
    results: list[PlacedFile | PlacementError | None] = [None] * len(batch)

    def fail(i: int, exc: PlacementError | OSError, step: str) -> None:
        f = batch[i][0]
        if isinstance(exc, OSError):
            exc = PlacementError(f"{f.display}: {step} failed: {exc.strerror or exc}")
        f.interrupt()  # nothing to do after a DigestMismatch, which discarded it
        results[i] = exc

    def going() -> list[int]:
        return [i for i, result in enumerate(results) if result is None]

    try:
        for i, (f, expected, actual) in enumerate(batch):
            try:
                f._ready(expected, actual)
            except (PlacementError, OSError) as exc:
                fail(i, exc, "setting its mode and time")
        durable = [i for i in going() if batch[i][0].policy.durable]
        if len(durable) > 1:
            for i in durable:
                dp.start_writeback(batch[i][0].fd)
        for i in durable:
            try:
                os.fsync(batch[i][0].fd)
            except OSError as exc:
                fail(i, exc, "writing its data to disk")
        names: dict[int, str] = {}
        for i in going():
            try:
                names[i] = batch[i][0]._name()
            except (PlacementError, OSError) as exc:
                fail(i, exc, "naming it")
        # Each directory once: files of a folder mostly share theirs (each holds its own
        # descriptor of it, so the directory is known by device and inode).
        synced: dict[tuple[int, int], OSError | None] = {}
        for i in going():
            f = batch[i][0]
            if not f.policy.durable:
                continue
            try:
                info = os.fstat(f._parent)
            except OSError as exc:
                fail(i, exc, "writing its directory to disk")
                continue
            key = (info.st_dev, info.st_ino)
            if key not in synced:
                synced[key] = _fsync_error(f._parent)
            if (error := synced[key]) is not None:
                fail(i, error, "writing its directory to disk")
        for i in going():
            results[i] = batch[i][0]._placed(names[i])
    except BaseException:
        for f, _, _ in batch:
            f.interrupt()  # only those not placed yet
        raise
    return cast(list[PlacedFile | PlacementError], results)


def _fsync_error(fd: int) -> OSError | None:
    """fsync `fd`; the error, if it failed (every file in that directory fails with it)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None
