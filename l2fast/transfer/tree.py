"""The sender's view of a folder (or a single file): what to offer, in order, and where each
file's chunks sit in the session's data space (issue 5 §Folders, PROTOCOL.md §DATA).

`plan_tree` walks the source once with `os.scandir` (one `lstat` per entry, no per-file
subprocess or open), sorts names so the plan is the same on every run, and lists directories
before their contents so that the receiver creates each directory before the files in it.
Empty directories are entries of their own. A single file becomes one entry named by its
basename; a directory `photos` becomes `photos`, `photos/a.jpg`, ... (like `scp -r`).

Chunk layout: files are packed one after another in the data space, each starting at a chunk
boundary (`first_chunk`), so that chunk k belongs to exactly one file and the reliability core
sees one contiguous space for the whole tree. Empty files and directories take no chunks.

Symlinks. By default they are not followed and not sent: each is listed in `skipped` with the
reason, so the CLI can say what was left out. The receiver never creates symlinks (a received
symlink is how Warpinator's CVE-2022-42725 wrote outside the receive directory), so FileKind
SYMLINK is never offered. With `follow_symlinks=True` a symlink is sent as what it points to,
with loop protection: a directory already on the current path is skipped as a loop, and a
dangling link is skipped. Sockets, FIFOs and devices are always skipped. The source itself is
always followed when it is a symlink, as cp and rsync follow a source named on the command line.
A source with nothing to offer (a device, a FIFO, a name receivers refuse) is a TreeError.

Names. A path that cannot be put in a FILE_OFFER (over PROTOCOL.md §Limits: 1000 bytes,
components of 255; or not UTF-8) and a name the receiving side refuses (control characters, a
backslash, a `.part` suffix; see `l2fast.transfer.names.safety_violation`) are both skipped
with their reason, so one odd name does not stop a whole tree; the send lists what it left
out. Only a source whose own name is such is a TreeError (there would be nothing to send).
"""

from __future__ import annotations

import contextlib
import os
import resource
import stat
from dataclasses import dataclass

from l2fast.errors import L2fastError
from l2fast.transfer.names import display_name, safety_violation
from l2fast.transfer.resume import chunk_count
from l2fast.wire.constants import MAX_PATH_BYTES, MAX_PATH_COMPONENT_BYTES, FileKind
from l2fast.wire.frames_transfer import path_violation

__all__ = [
    "FD_HEADROOM",
    "NOT_FOLLOWED",
    "SkippedEntry",
    "TreeEntry",
    "TreeError",
    "TreePlan",
    "check_fd_room",
    "open_entry",
    "plan_tree",
    "raise_fd_limit",
]

#: SkippedEntry.reason of a symlink left out because symlinks are not followed.
NOT_FOLLOWED = "symlink, not followed"


class TreeError(L2fastError):
    """The source cannot be sent as it is (missing, not readable, a special file, a name that
    cannot be offered...)."""


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One FILE_OFFER to make: a file or a directory."""

    path: str  #: relative POSIX path, as offered (FILE_OFFER `path`)
    kind: FileKind  #: FILE or DIRECTORY
    size: int  #: bytes (0 for a directory)
    mode: int  #: permission bits (0o7777 mask)
    mtime_ns: int
    first_chunk: int  #: this file's chunk 0 in the session's data space
    n_chunks: int  #: chunks it takes (0 for an empty file or a directory)
    source: str  #: where to read it on this machine
    followed: bool = False  #: reached through a symlink (opened following links)
    dev_ino: tuple[int, int] = (0, 0)  #: identity at listing time, to notice a swapped file


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """Something under the source that is not sent, and why."""

    path: str  #: relative path, escaped for display
    reason: str
    #: Left out for a problem of its own (a name that cannot be sent, a folder that cannot be
    #: read), not by the rules for links and special files: data the user meant to send that
    #: will not arrive, so `l2fast send` does not exit 0.
    lost: bool = False


@dataclass(frozen=True, slots=True)
class TreePlan:
    """Everything to offer for one `l2fast send PEER SOURCE`, in offering order."""

    entries: tuple[TreeEntry, ...]
    skipped: tuple[SkippedEntry, ...]
    chunk_size: int
    first_chunk: int  #: where the plan starts in the data space
    total_bytes: int
    total_chunks: int  #: the data space used is [first_chunk, first_chunk + total_chunks)
    n_files: int = 0
    n_dirs: int = 0

    @property
    def files(self) -> tuple[TreeEntry, ...]:
        """The file entries only."""
        return tuple(e for e in self.entries if e.kind == FileKind.FILE)


def _shown(rel: str) -> str:
    """A listed path, escaped for display; bytes that are not UTF-8 show as `\\xNN`."""
    return display_name(os.fsencode(rel))


def _special(st: os.stat_result) -> str:
    """What a file that is neither a regular file nor a directory is, for a user."""
    mode = st.st_mode
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def _encode_problem(rel: str) -> str | None:
    """Why `rel` cannot be put in a FILE_OFFER at all (§Limits, UTF-8), or None."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    return path_violation(rel)


class _Walker:
    """One walk; collects entries and skips."""

    def __init__(self, chunk_size: int, first_chunk: int, follow: bool) -> None:
        self.chunk_size = chunk_size
        self.next_chunk = first_chunk
        self.follow = follow
        self.entries: list[TreeEntry] = []
        self.skipped: list[SkippedEntry] = []
        self.total_bytes = 0

    def skip(self, rel: str, reason: str, *, lost: bool = False) -> None:
        self.skipped.append(SkippedEntry(_shown(rel), reason, lost))

    def admit(self, rel: str, kind: FileKind) -> bool:
        """Check a name; False (and noted) when it is not sent."""
        problem = _encode_problem(rel)
        if problem is not None:
            # What is below goes with it.
            self.skip(rel, f"cannot be offered: {problem}", lost=True)
            return False
        problem = safety_violation(rel, is_file=kind == FileKind.FILE)
        if problem is not None:
            self.skip(rel, f"a receiver refuses it: {problem}", lost=True)
            return False
        return True

    def add(
        self, rel: str, kind: FileKind, st: os.stat_result, source: str, followed: bool
    ) -> None:
        size = st.st_size if kind == FileKind.FILE else 0
        n = chunk_count(size, self.chunk_size)
        self.entries.append(
            TreeEntry(
                path=rel,
                kind=kind,
                size=size,
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                first_chunk=self.next_chunk,
                n_chunks=n,
                source=source,
                followed=followed,
                dev_ino=(st.st_dev, st.st_ino),
            )
        )
        self.next_chunk += n
        self.total_bytes += size

    def walk_dir(self, rel: str, source: str, ancestors: frozenset[tuple[int, int]]) -> None:
        """Add the contents of directory `source` (offered as `rel`), depth first, sorted."""
        try:
            with os.scandir(source) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            self.skip(rel, f"cannot list it: {exc.strerror}", lost=True)
            return
        for child in children:
            child_rel = f"{rel}/{child.name}"
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                self.skip(child_rel, f"cannot stat it: {exc.strerror}", lost=True)
                continue
            self.visit(child_rel, child.path, st, ancestors)

    def visit(
        self,
        rel: str,
        source: str,
        st: os.stat_result,
        ancestors: frozenset[tuple[int, int]],
        followed: bool = False,
    ) -> None:
        """Add one entry found with lstat `st` (`followed`: the caller already followed it)."""
        if stat.S_ISLNK(st.st_mode):
            if not self.follow:
                self.skip(rel, NOT_FOLLOWED)
                return
            try:
                st = os.stat(source)
            except OSError:
                self.skip(rel, "dangling symlink")
                return
            followed = True
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                self.skip(rel, "symlink loop: it leads back to a directory above it")
                return
            if self.admit(rel, FileKind.DIRECTORY):
                self.add(rel, FileKind.DIRECTORY, st, source, followed)
                self.walk_dir(rel, source, ancestors | {key})
        elif stat.S_ISREG(st.st_mode):
            if "/" in rel and not _readable(source):
                # Inside a folder, as one that cannot be listed: left out and reported, the
                # rest sent (it stopped the whole send, while an unreadable folder did not).
                # The source itself fails when it is opened, with the system's reason.
                self.skip(rel, "cannot read it: permission denied", lost=True)
            elif self.admit(rel, FileKind.FILE):
                self.add(rel, FileKind.FILE, st, source, followed)
        else:
            self.skip(rel, _special(st))


def _readable(path: str) -> bool:
    """This process may open `path` for reading (by its effective ids, as `open` decides)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.R_OK, effective_ids=True)
    return os.access(path, os.R_OK)


def plan_tree(
    source: str | os.PathLike[str],
    chunk_size: int,
    *,
    first_chunk: int = 0,
    follow_symlinks: bool = False,
) -> TreePlan:
    """List `source` (a file or a directory) as FILE_OFFER entries with their chunk ranges.

    Raises TreeError when the source is missing, unusable or not a regular file or directory,
    or when its own name cannot be offered; names below it that cannot be are skipped. A
    symlink given as the source itself is followed (it is what the user typed);
    below it, `follow_symlinks` applies.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size {chunk_size} must be positive")
    path = os.fspath(source)
    try:
        # The source itself is followed: its entry must be opened following the link too,
        # or open_entry's O_NOFOLLOW refuses a symlink to a file named as PATH.
        named_link = stat.S_ISLNK(os.lstat(path).st_mode)
        st = os.stat(path)
    except OSError as exc:
        raise TreeError(f"cannot send {display_name(path)}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
        raise TreeError(
            f"cannot send {display_name(path)}: it is a {_special(st)}, "
            "not a regular file or directory",
            hint="send a file or a folder (copy what it yields into a file first)",
        )
    top = os.path.basename(os.path.normpath(os.path.abspath(path)))
    if not top:
        raise TreeError(
            f"cannot send {display_name(path)}: it has no name to offer",
            hint="send a directory below /, or its contents one by one",
        )
    walker = _Walker(chunk_size, first_chunk, follow_symlinks)
    walker.visit(top, path, st, frozenset(), followed=named_link)
    unlisted = [s for s in walker.skipped if s.path == _shown(top) and s.lost]
    if unlisted and walker.entries:
        # The folder named itself cannot be listed: sending it would make an empty folder.
        raise TreeError(f"cannot send {display_name(path)}: {unlisted[0].reason}")
    if not walker.entries:
        # The source itself was skipped (a name receivers refuse): a send of nothing.
        raise TreeError(
            f"cannot send {display_name(path)}: {walker.skipped[0].reason}",
            hint=f"rename it, then send it again (paths are limited to {MAX_PATH_BYTES} bytes "
            f"of UTF-8, components to {MAX_PATH_COMPONENT_BYTES})",
        )
    entries = tuple(walker.entries)
    n_files = sum(1 for e in entries if e.kind == FileKind.FILE)
    return TreePlan(
        entries=entries,
        skipped=tuple(walker.skipped),
        chunk_size=chunk_size,
        first_chunk=first_chunk,
        total_bytes=walker.total_bytes,
        total_chunks=walker.next_chunk - first_chunk,
        n_files=n_files,
        n_dirs=len(entries) - n_files,
    )


def raise_fd_limit() -> int:
    """Open files up to the hard limit: a folder is sent with one descriptor per file.
    Returns how many descriptors this process may now hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


#: Descriptors a sending process needs besides one per file (stdio, sockets, pipes, rings).
FD_HEADROOM = 64


def check_fd_room(plan: TreePlan, limit: int) -> None:
    """TreeError, before anything is opened, when the plan has more files than a process may
    hold descriptors for (every file is opened before its offer goes out, and stays open
    until its transfer ends)."""
    if plan.n_files + FD_HEADROOM > limit:
        raise TreeError(
            f"{plan.n_files:,} files to send, more than this system lets one process keep open "
            f"at once ({limit:,} descriptors, {FD_HEADROOM} of them kept for other uses)",
            hint="send its folders one at a time, or raise the hard limit on open files for "
            "this command and the daemon (`ulimit -Hn` shows it; root sets it in "
            "/etc/security/limits.conf, or with LimitNOFILE= for a systemd service)",
        )


def open_entry(entry: TreeEntry) -> int:
    """Open a planned file for reading, checking it is still the file that was listed.

    Opened with O_NOFOLLOW unless it was reached through a symlink on purpose, so a file
    swapped for a symlink after listing is not read. TreeError when it changed (another
    inode, size or mtime): its offer would promise bytes it no longer has.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if entry.followed else os.O_NOFOLLOW)
    try:
        fd = os.open(entry.source, flags)
    except OSError as exc:
        raise TreeError(f"cannot open {display_name(entry.path)}: {exc.strerror}") from None
    st = os.fstat(fd)
    if (
        not stat.S_ISREG(st.st_mode)
        or (st.st_dev, st.st_ino) != entry.dev_ino
        or st.st_size != entry.size
        or st.st_mtime_ns != entry.mtime_ns
    ):
        os.close(fd)
        raise TreeError(
            f"{display_name(entry.path)} changed since it was listed",
            hint="send it again once it is no longer being written",
        )
    if st.st_size == 0 and _reads_a_byte(fd):
        os.close(fd)
        raise TreeError(
            f"{display_name(entry.path)} has a size of 0 but reads as more (a /proc file?): "
            "its size is what would be sent",
            hint="copy it to a regular file first (cat FILE > COPY) and send that",
        )
    return fd


def _reads_a_byte(fd: int) -> bool:
    """True when the file gives a byte at offset 0 (an empty regular file gives none)."""
    try:
        return bool(os.pread(fd, 1, 0))
    except OSError:
        return False
