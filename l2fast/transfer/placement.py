"""Receiving files safely below a receive directory (PROTOCOL.md §Receiving files safely).

What other tools got wrong (FACTS.md) shapes every rule here:

- **Names are checked, not repaired** (croc CVE-2023-43616..43621, LocalSend CVE-2025-27142):
  `checked_components` applies `l2fast.transfer.names.name_violation` and raises BadName.
- **A lexical check is not enough when symlinks exist** (Warpinator CVE-2022-42725). Every path
  is resolved `openat`-style: one directory file descriptor per component, opened with
  O_DIRECTORY | O_NOFOLLOW, files created relative to the last one with O_EXCL | O_NOFOLLOW.
  A symlink anywhere below the receive directory, even one planted there to point outside, is
  refused, never followed. Renames use the same directory descriptor, so a directory swapped
  for a symlink mid-transfer does not redirect the final rename either.
- **A file already here is not received twice.** When the session negotiated it, an offered
  file whose name holds a regular file of the offered size is answered as already present
  (`find_present`): the file is only read, for its digest, and FILE_END decides (PROTOCOL.md
  §Files already at the receiver); if the digests differ it is offered again and received
  under the rules below (with `overwrite` too: the same bytes need no replacing). The lookup
  walks the path like every other (no symlink followed, no directory created) and opens the
  leaf O_NOFOLLOW after an lstat found a regular file with one link.
- **Never overwrite by default** (magic-wormhole refuses to). The finished part file is renamed
  with RENAME_NOREPLACE (or link + unlink, also atomic) and, when the name is taken, to
  `name (1).ext`, `name (2).ext`, ... `overwrite=True` replaces the old file atomically instead.
- **Nothing partial under the final name.** Data goes to `<name>.part` (mode 0600, so partial
  data is private), next to its resume sidecar `<name>.part.l2fast` (`l2fast.transfer.resume`).
  On completion with a matching digest: mode and mtime applied, the part fsynced, renamed,
  the directory fsynced, the sidecar removed. Files completed together
  (`incoming.place_files`) share those barriers: every file's data is fsynced before any
  of them is named, and each directory once after. Names ending `.part` or `.part.l2fast` are
  refused for received files, so a sender cannot clobber another transfer's part or sidecar.
- **Small files** (under `resume_min_bytes`, 1 MiB) skip the part file and the sidecar: their
  data goes to an unnamed file (O_TMPFILE) in the target directory, linked under its final
  name once verified (linkat, which never replaces). Nothing of them is ever visible before,
  nor left after a crash; they are simply sent again.
- **What happens to a part file.** Interrupted (abort, peer gone, daemon killed): kept with its
  sidecar, so sending the same file again resumes. Digest mismatch: deleted with its sidecar,
  because which chunks are wrong is unknown and resuming would keep them. Refused: nothing is
  created.
- **Space and size.** Free space is checked (statvfs on the directory fd) before anything is
  created, minus what a resumed part already holds on disk. The part file is cut to the
  declared size at once (ftruncate), so the C writer's `pwritev` never extends it and holes read
  as zeros, and then preallocated with posix_fallocate when `preallocate` is on: its first
  64 MiB before the offer is accepted, the rest by a thread while the data arrives (so a large
  file's first frame does not wait for it), and the file is less fragmented. Where the file
  system cannot preallocate, the sparse file is kept. `write_at` refuses bytes past the
  size, and the size is checked again before the rename.
- **Modes.** Only permission bits survive (`mode & 0o777 & mode_mask`): setuid, setgid and
  sticky are always stripped, since a daemon running as root would otherwise create setuid-root
  programs for any peer. The default mask 0o755 also drops group and world write.

Names are shown to users through `display_name`, which escapes everything a terminal would act on.

Use: `ReceiveDir(path)` once; per DIRECTORY offer `make_directory`; per FILE offer
`receive_offer` (or `receive_file`), which returns an `IncomingFile`
(`l2fast.transfer.incoming`) whose `fd` the writers fill and whose `resume` bitmap (when there
is one) they mark; then `complete(expected, actual)` (or `place_files` for several) or
`interrupt()`; after a tree, `set_directory_metadata` deepest first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from types import TracebackType

from l2fast.procname import name_this_thread
from l2fast.progress import format_bytes
from l2fast.transfer.incoming import (
    MAX_NAME_ATTEMPTS,
    PROC_FD,
    BadName,
    DigestMismatch,
    IncomingFile,
    NoSpace,
    PlacedFile,
    PlacementError,
    PlacementPolicy,
    PresentFile,
)
from l2fast.transfer.names import (
    PART_SUFFIX,
    display_name,
    name_violation,
    part_name,
)
from l2fast.transfer.resume import (
    Lookup,
    ResumeState,
    SidecarHeader,
    is_ours,
    offer_identity,
    open_sidecar,
)
from l2fast.wire.constants import ErrorCode, FileKind
from l2fast.wire.frames import FileOffer

__all__ = [
    "PART_SUFFIX",
    "BadName",
    "DigestMismatch",
    "IncomingFile",
    "NoSpace",
    "PlacedFile",
    "PlacementError",
    "PlacementPolicy",
    "PresentFile",
    "ReceiveDir",
    "checked_components",
    "display_name",
    "name_violation",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PART_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a FIFO replace the file between lstat and open, the open does not hang.
_PRESENT_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Space counted for one new directory (a block on most file systems).
DIRECTORY_BYTES = 4096
#: Bytes of a new part file preallocated before its offer is accepted (the writers start there);
#: the rest is preallocated beside the transfer, a slice at a time (`_size_part`).
PREALLOCATE_AHEAD = 64 << 20
PREALLOCATE_SLICE = 64 << 20


# -- names -------------------------------------------------------------------------------------


def checked_components(path: str | bytes, *, is_file: bool = True) -> tuple[str, ...]:
    """The components of a safe offered path; BadName (ErrorCode.BAD_NAME) with the reason."""
    problem = name_violation(path, is_file=is_file)
    if problem is not None:
        raise BadName(f"refused name {display_name(path)}: {problem}")
    text = path.decode("utf-8") if isinstance(path, bytes | bytearray) else path
    return tuple(text.split("/"))


# -- the receive directory ---------------------------------------------------------------------


class ReceiveDir:
    """An open receive directory: every file and directory lands strictly below it.

    The directory itself is opened once (following symlinks: it is the user's choice); below
    it nothing is ever followed. Close it, or use it as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], policy: PlacementPolicy | None = None) -> None:
        self.policy = policy or PlacementPolicy()
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        #: Files being received that may still take space (see `promised_bytes`).
        self._filling: list[IncomingFile] = []

    @property
    def fd(self) -> int:
        """The receive directory's file descriptor."""
        return self._fd

    def close(self) -> None:
        """Close the directory descriptor (open IncomingFiles keep their own)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ReceiveDir:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- space ------------------------------------------------------------------------------

    def check_space(self, needed: int) -> None:
        """NoSpace unless `needed` bytes fit, leaving `reserve_bytes` free (use it for a tree).
        PlacementError (io_error) first when the file system is mounted read-only: nothing
        fits there, and "not enough space" would send the sender's user the wrong way."""
        st = os.statvfs(self._fd)
        if st.f_flag & os.ST_RDONLY:
            raise PlacementError(
                f"the receive directory {display_name(self.path)} is on a read-only file system",
                hint="the receiver must make it writable or choose another receive directory",
            )
        free = st.f_bavail * st.f_frsize
        promised = self.promised_bytes()
        reserve = self.policy.reserve_bytes
        if needed + promised + reserve > free:
            taken = f", {format_bytes(promised)} for files being received" if promised else ""
            raise NoSpace(
                f"not enough space in {display_name(self.path)}: {format_bytes(needed)} "
                f"needed, {format_bytes(max(0, free - reserve - promised))} available (of "
                f"{format_bytes(free)} free, {format_bytes(reserve)} kept free{taken})",
                hint="free some space or choose another receive directory",
            )

    def promised_bytes(self) -> int:
        """Bytes that files being received here will still take: each part file is cut to its
        size at once but allocated as it fills (its first 64 MiB before the offer is accepted,
        the rest by a thread or by the writes), so free space alone let a folder's files be
        accepted together when only one of them fit, and the disk filled up mid-transfer."""
        promised, filling = 0, []
        for f in self._filling:
            if f.outcome is not None:
                continue  # ended: whatever it took is taken, or given back
            try:
                info = os.fstat(f.fd)
            except OSError:
                continue
            holes = max(0, info.st_size - info.st_blocks * 512)
            if holes:  # one without holes takes nothing more: no need to look again
                promised += holes
                filling.append(f)
        self._filling = filling
        return promised

    # -- directories ------------------------------------------------------------------------

    def _open_dir(self, components: tuple[str, ...], *, create: bool) -> int:
        """A descriptor of the directory `components` below the receive directory, walking one
        component at a time without following symlinks, creating what is missing."""
        fd = os.dup(self._fd)
        try:
            for i, name in enumerate(components):
                child = self._open_child(fd, name, components[: i + 1], create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child(self, parent: int, name: str, where: tuple[str, ...], create: bool) -> int:
        shown = display_name("/".join(where))
        for _ in range(3):  # a concurrent mkdir or rmdir can race us; retry a little
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                # A directory costs a block too: offers of empty directories alone must not
                # fill the file system past the reserve either.
                self.check_space(DIRECTORY_BYTES)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700 | (0o755 & self.policy.mode_mask), dir_fd=parent)
                    if self.policy.durable:
                        os.fsync(parent)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise BadName(
                    f"refused {shown}: it is {what} in the receive directory",
                    hint="l2fast never writes through symlinks; remove or rename it",
                ) from None
        raise PlacementError(f"could not create directory {shown}")

    def make_directory(self, path: str | bytes) -> str:
        """Create the offered directory `path` (and its parents) if missing; its relative name.

        An existing directory is merged into; a symlink or a file in the way is refused.
        """
        components = checked_components(path, is_file=False)
        os.close(self._open_dir(components, create=True))
        return "/".join(components)

    def set_directory_metadata(self, path: str | bytes, mode: int, mtime_ns: int) -> None:
        """Apply an offered directory's mode and mtime; call it after the tree's files, deepest
        first, since adding a file changes a directory's mtime. Owner rwx is always kept so
        that the directory stays usable for later transfers."""
        components = checked_components(path, is_file=False)
        fd = self._open_dir(components, create=True)
        try:
            os.fchmod(fd, (mode & 0o777 & self.policy.mode_mask) | 0o700)
            os.utime(fd, ns=(time.time_ns(), mtime_ns))
        finally:
            os.close(fd)

    # -- files ------------------------------------------------------------------------------

    def find_present(self, offer: FileOffer) -> PresentFile | None:
        """The regular file already under the offered name, when it has the offered size.

        None when there is none: no such path, a directory, symlink, FIFO or device under the
        name, a file with more than one link, another size, an unreadable file, or an offer
        that is not a plain file. Creates
        nothing, follows no symlink (a symlinked directory on the way is BadName, as it is for
        `receive_offer`), and never writes. Raises BadName for a refused name.
        """
        if offer.kind != FileKind.FILE:
            return None
        components = checked_components(offer.path, is_file=True)
        try:
            parent = self._open_dir(components[:-1], create=False)
        except OSError:
            return None
        leaf = components[-1]
        try:
            seen = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
            # A second link may be one planted to a file elsewhere: its digest is nobody's
            # business (the sender would learn whether it guessed the content).
            if not stat.S_ISREG(seen.st_mode) or seen.st_nlink != 1 or seen.st_size != offer.size:
                return None
            fd = os.open(leaf, _PRESENT_FLAGS, dir_fd=parent)
        except OSError:
            return None
        finally:
            os.close(parent)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino) or info.st_size != offer.size:
            os.close(fd)  # replaced between the lstat and the open
            return None
        return PresentFile(fd, "/".join(components), offer.size)

    def receive_offer(self, offer: FileOffer, peer: bytes = b"") -> IncomingFile:
        """`receive_file` for a FILE_OFFER of kind FILE from `peer` (its MAC)."""
        if offer.kind != FileKind.FILE:
            raise PlacementError(
                f"offer of kind {offer.kind} is not a file", code=ErrorCode.BAD_REQUEST
            )
        return self.receive_file(
            offer.path,
            size=offer.size,
            chunk_size=offer.chunk_size,
            first_chunk=offer.first_chunk,
            mode=offer.mode,
            mtime_ns=offer.mtime_ns,
            digest=offer.digest,
            peer=peer,
        )

    def receive_file(
        self,
        path: str | bytes,
        *,
        size: int,
        chunk_size: int,
        first_chunk: int,
        mode: int,
        mtime_ns: int,
        digest: int,
        peer: bytes = b"",
    ) -> IncomingFile:
        """Open the part file for an offered file, resuming an earlier part of the same offer
        from the same `peer` (`offer_identity`).

        Raises BadName, NoSpace or PlacementError (TOO_LARGE, BAD_REQUEST, IO_ERROR) before
        anything is created. The result's `have` lists the chunks already held.
        """
        components = checked_components(path, is_file=True)
        limit = self.policy.max_file_bytes
        if limit is not None and size > limit:
            raise PlacementError(
                f"{display_name(path)} is {size} bytes, more than the {limit} accepted",
                code=ErrorCode.TOO_LARGE,
            )
        if size < 0 or (size > 0 and chunk_size <= 0):
            raise PlacementError(
                f"bad size {size} or chunk size {chunk_size}", code=ErrorCode.BAD_REQUEST
            )
        rel = "/".join(components)
        expected = SidecarHeader(
            size=size,
            chunk_size=chunk_size if size else 0,
            first_chunk=first_chunk,
            identity=offer_identity(rel, size, mtime_ns, digest, peer),
        )
        parent = self._open_dir(components[:-1], create=True)
        try:
            state: ResumeState | None = None
            preallocation = None
            fd = self._open_unnamed(parent, size)
            if fd < 0:
                state, fd, preallocation = self._open_part(parent, components[-1], expected)
        except BaseException:
            os.close(parent)
            raise
        incoming = IncomingFile(
            self.policy, parent, components, expected, fd, mode, mtime_ns, state, preallocation
        )
        self._filling.append(incoming)
        return incoming

    def _open_unnamed(self, parent: int, size: int) -> int:
        """An unnamed file (O_TMPFILE) for a small file, or -1 to use a part file instead."""
        if size >= self.policy.resume_min_bytes or not PROC_FD:
            return -1
        self.check_space(size)
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return -1
            raise
        try:
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_part(
        self, parent: int, leaf: str, expected: SidecarHeader
    ) -> tuple[ResumeState, int, Preallocation | None]:
        """Find the slot for `leaf`'s part file: a resumable one, or the first free one (with
        the thread preallocating the rest of it, if any)."""
        for n in range(MAX_NAME_ATTEMPTS):
            part = part_name(leaf, n)
            found = open_sidecar(parent, part, expected)
            if found.status is Lookup.BUSY:
                continue
            if found.state is not None:
                part_fd = self._reopen_part(parent, found.state)
                if part_fd >= 0:
                    return found.state, part_fd, None
            if _exists(parent, part):
                continue  # a part file without a sidecar is not ours: leave it alone
            self.check_space(expected.size)
            try:
                state = ResumeState.create(parent, part, expected)
            except FileExistsError:
                continue
            try:
                part_fd = os.open(part, _PART_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=parent)
            except FileExistsError:
                state.finish()  # drop only our sidecar: the part name was taken meanwhile
                continue
            except BaseException:
                state.finish()
                raise
            try:
                preallocation = self._size_part(part_fd, expected.size)
            except BaseException:
                os.close(part_fd)
                state.remove()
                raise
            return state, part_fd, preallocation
        raise PlacementError(
            f"no free name for the part file of {display_name(leaf)} after "
            f"{MAX_NAME_ATTEMPTS} tries",
            hint="remove old .part files from the receive directory",
        )

    def _reopen_part(self, parent: int, state: ResumeState) -> int:
        """The resumed part file's descriptor, or -1 after discarding a pair that will not do."""
        try:
            fd = os.open(state.part_name, _PART_FLAGS, dir_fd=parent)
        except OSError:
            state.remove()
            return -1
        info = os.fstat(fd)
        if not is_ours(info) or info.st_size != state.header.size:
            os.close(fd)
            state.remove()
            return -1
        try:
            self.check_space(max(0, info.st_size - info.st_blocks * 512))
        except NoSpace:
            os.close(fd)
            state.release()
            raise
        return fd

    def _size_part(self, fd: int, size: int) -> Preallocation | None:
        """Cut the new part file to the declared size, and preallocate it when asked.

        Only the first `PREALLOCATE_AHEAD` bytes are allocated before the offer is accepted;
        a background thread allocates the rest while the data arrives. fallocate zeroes the
        pages it allocates (tmpfs: ~0.3 s per GiB here), which used to delay the first frame
        of a large file by that much; run beside the transfer it costs no extra CPU (the
        writes into allocated pages are cheaper by as much). fallocate never changes data, so
        it may run under the writers. Free space was checked before; should it run out anyway,
        the writer's pwritev reports ENOSPC as before.
        """
        os.ftruncate(fd, size)
        if not (self.policy.preallocate and size):
            return None
        first = min(size, PREALLOCATE_AHEAD)
        try:
            os.posix_fallocate(fd, 0, first)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NoSpace(f"not enough space for {size} bytes") from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            return None
        return Preallocation(os.dup(fd), first, size) if first < size else None


class Preallocation:
    """The thread that preallocates the rest of a part file; `stop()` ends it after its slice."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=_preallocate_rest, args=(fd, start, size, self._stopped), name="l2f-fallocate",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop allocating and wait (at most `timeout` s) for the slice in progress."""
        self._stopped.set()
        self._thread.join(timeout)


def _preallocate_rest(fd: int, start: int, size: int, stopped: threading.Event) -> None:
    """Allocate bytes [start, size) of a part file in slices, then close `fd` (a duplicate).

    Stops early when told to (the transfer stopped: see `IncomingFile.interrupt`), when the file
    was removed meanwhile (an abandoned or failed transfer) or when fallocate fails: a write
    that then lacks space reports it itself.
    """
    name_this_thread("l2f-fallocate")
    try:
        pos = start
        while pos < size and not stopped.is_set() and os.fstat(fd).st_nlink:
            n = min(PREALLOCATE_SLICE, size - pos)
            os.posix_fallocate(fd, pos, n)
            pos += n
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
