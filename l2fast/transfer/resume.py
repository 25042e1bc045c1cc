"""Resume state of one incoming file: the sidecar `<part>.l2fast` and its chunk bitmap.

Issue 5 asks that the receiver keep a part file and its chunk bitmap across a daemon restart or
crash, so that sending the same file again moves only the missing chunks. The bitmap lives in a
small sidecar file beside the part file (`x.part` has `x.part.l2fast`), laid out so that the C
receive loop can map it shared (MAP_SHARED) and set one bit per chunk as chunks reach the part
file, with no Python per chunk and no separate "save state" step: whatever bits reached the page
cache survive a SIGKILL of the daemon.

Layout (all integers big-endian, like the wire):

| offset | size | field |
|---|---|---|
| 0 | 8 | magic `L2FPART\\0` |
| 8 | 2 | version (1) |
| 10 | 2 | header length (64) |
| 12 | 4 | flags (0) |
| 16 | 8 | file size in bytes |
| 24 | 4 | chunk size |
| 28 | 4 | reserved (0) |
| 32 | 8 | `first_chunk` of the current session's offer (DATA `seq` of bit 0) |
| 40 | 16 | offer identity (`offer_identity`) |
| 56 | 4 | CRC-32 of bytes 0..56 |
| 60 | 4 | reserved (0) |
| 64 | ceil(n/8) | bitmap, one bit per chunk |

Chunk i (counted from the file's start) is bit `i & 7` (least significant first) of byte
`64 + i // 8`.

Bits are file-relative, so a resumed file may sit at another `first_chunk` in the new session's
data space; the header's `first_chunk` is rewritten on resume so that a C loop can compute
`bit = seq - first_chunk`. The C loop must set a bit only after the chunk's `pwritev` returned,
and with an atomic OR when several writers share the map.

Crash consistency. The header carries a CRC, so a torn or garbage sidecar is recognised and the
pair is discarded (start over; never a crash). The bitmap cannot be checksummed (it changes in
place), and after a power loss (not a process crash) a bit may outlive its data; the end-to-end
digest catches that, and a digest mismatch deletes the part (see `l2fast.transfer.placement`).

Ownership and locking. The `.part.l2fast` name is reserved: the receiving file layer refuses to
place a file under a name ending `.part` or `.part.l2fast`, so anything found under it is ours.
The sidecar is created first (fully written, then published under its name with one `linkat`),
then the part file; so a part file without a sidecar is never ours and is never touched. A live
transfer holds an exclusive `flock` on its sidecar for its whole life; a second transfer that
finds the lock taken treats the name as busy. The kernel drops the lock when the daemon dies.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import mmap
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass

from l2fast.transfer.ranges import ChunkRanges

__all__ = [
    "BITMAP_OFFSET",
    "SIDECAR_SUFFIX",
    "ExpiryResult",
    "Lookup",
    "ResumeState",
    "SidecarHeader",
    "SidecarLookup",
    "chunk_count",
    "expire_pairs",
    "is_ours",
    "offer_identity",
    "open_sidecar",
    "prefix_bytes",
    "sidecar_name",
]

MAGIC = b"L2FPART\x00"
VERSION = 1
_HEADER = struct.Struct(">8sHHIQIIQ16sI4x")
BITMAP_OFFSET = _HEADER.size  # 64
_CRC_END = 56
SIDECAR_SUFFIX = ".l2fast"  # appended to the part file's name
IDENTITY_BYTES = 16

# Runs of fully held bytes, or one mixed byte; runs of 0x00 bytes cost nothing to skip.
_HELD_RUNS = re.compile(rb"\xff+|[^\x00\xff]")
_NOT_FULL = re.compile(rb"[^\xff]")
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def sidecar_name(part_name: str) -> str:
    """The sidecar's file name for a part file's name (`x.part` -> `x.part.l2fast`)."""
    return part_name + SIDECAR_SUFFIX


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a `size`-byte file (PROTOCOL.md §DATA); an empty file has none."""
    if size == 0:
        return 0
    if chunk_size <= 0:
        raise ValueError(f"chunk size {chunk_size} must be positive for a {size}-byte file")
    return -(-size // chunk_size)


def prefix_bytes(chunks: int, chunk_size: int, size: int) -> int:
    """Bytes held by the first `chunks` chunks of a `size`-byte file (the last may be short)."""
    return min(chunks * chunk_size, size)


def offer_identity(path: str, size: int, mtime_ns: int, digest: int, peer: bytes = b"") -> bytes:
    """16 bytes that name "the same file, offered again by the same peer": path, size, mtime,
    digest algorithm and the sender's MAC.

    FILE_OFFER carries no file id that outlives a session (`transfer_id` and `first_chunk` are
    per session), so the offer's stable fields stand in for one. The mode is left out (a chmod
    does not change the bytes). Content changed without a size or mtime change slips through;
    the end-to-end digest then fails and the part is deleted, so it costs a resend, never a
    wrong file. The peer is in it so that one peer's part file is never resumed by another's
    offer of the same name, size and mtime: a peer that planted chunks would make the other's
    transfer fail its digest. (A peer that forges the other's MAC is not stopped by this.)
    """
    h = hashlib.sha256(b"l2fast offer identity v2\x00")
    h.update(struct.pack(">QqB", size, mtime_ns, digest & 0xFF))
    h.update(struct.pack(">B", len(peer)) + peer)
    h.update(path.encode("utf-8", "surrogatepass"))
    return h.digest()[:IDENTITY_BYTES]


@dataclass(frozen=True, slots=True)
class SidecarHeader:
    """The fixed header of a sidecar: which file the bitmap describes."""

    size: int  #: file size in bytes
    chunk_size: int  #: bytes per chunk (0 only for an empty file)
    first_chunk: int  #: DATA `seq` of the file's chunk 0 in the current session
    identity: bytes  #: `offer_identity` of the offer that started it (16 bytes)

    @property
    def n_chunks(self) -> int:
        """Number of chunks, hence of bits in the bitmap."""
        return chunk_count(self.size, self.chunk_size)

    @property
    def bitmap_bytes(self) -> int:
        """Length of the bitmap in bytes."""
        return (self.n_chunks + 7) // 8

    def pack(self) -> bytes:
        """The 64 header bytes, CRC included."""
        if len(self.identity) != IDENTITY_BYTES:
            raise ValueError(f"identity must be {IDENTITY_BYTES} bytes")
        body = _HEADER.pack(
            MAGIC,
            VERSION,
            BITMAP_OFFSET,
            0,
            self.size,
            self.chunk_size,
            0,
            self.first_chunk,
            self.identity,
            0,
        )
        crc = zlib.crc32(body[:_CRC_END])
        return body[:_CRC_END] + struct.pack(">I", crc) + body[_CRC_END + 4 :]

    @classmethod
    def unpack(cls, data: bytes) -> SidecarHeader | None:
        """The header in `data`, or None when it is short, foreign, corrupt or another version."""
        if len(data) < BITMAP_OFFSET:
            return None
        magic, version, hlen, _flags, size, chunk_size, _r, first, ident, crc = _HEADER.unpack(
            data[:BITMAP_OFFSET]
        )
        if magic != MAGIC or version != VERSION or hlen != BITMAP_OFFSET:
            return None
        if crc != zlib.crc32(data[:_CRC_END]):
            return None
        if size > 0 and chunk_size == 0:
            return None
        return cls(size=size, chunk_size=chunk_size, first_chunk=first, identity=ident)

    def same_file(self, other: SidecarHeader) -> bool:
        """True when `other` describes the same bytes cut the same way (first_chunk may differ)."""
        return (
            self.size == other.size
            and self.chunk_size == other.chunk_size
            and self.identity == other.identity
        )


class Lookup(enum.Enum):
    """What `open_sidecar` found under a part file's name."""

    MISSING = "missing"  #: no sidecar (a stale or broken one was removed together with its part)
    BUSY = "busy"  #: a live transfer holds it, or the part name is taken by something not ours
    RESUMABLE = "resumable"  #: a sidecar of the same offer, now locked by us


@dataclass(frozen=True, slots=True)
class SidecarLookup:
    """Result of `open_sidecar`: the status, the opened state when resumable, and why."""

    status: Lookup
    state: ResumeState | None = None
    note: str = ""  #: what was found and done, for logs


def _unlink_quiet(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _same_inode(dir_fd: int, name: str, fd: int) -> bool:
    """True when `name` still names the inode open as `fd` (lock-file check after flock)."""
    try:
        named = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino) and held.st_nlink > 0


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


class ResumeState:
    """An open, locked sidecar whose bitmap is mapped shared.

    Build one with `create` (a new transfer) or `open_sidecar` (resume). The holder owns the
    part file's name until `release` (keep both files, for a later resume), `remove` (delete
    both) or `finish` (the part was renamed away: delete the sidecar).
    """

    __slots__ = ("_dir_fd", "_fd", "_map", "header", "part_name")

    def __init__(
        self, dir_fd: int, part_name: str, fd: int, header: SidecarHeader, mapped: mmap.mmap
    ) -> None:
        self._dir_fd = dir_fd
        self._fd = fd
        self._map = mapped
        self.header = header
        self.part_name = part_name

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls, dir_fd: int, part_name: str, header: SidecarHeader) -> ResumeState:
        """Publish a new, empty sidecar for `part_name`, locked; FileExistsError if one exists.

        The file is written in full before it gets its name (an O_TMPFILE inode linked into
        place), so another process never sees a half-written header under the name.
        """
        name = sidecar_name(part_name)
        size = BITMAP_OFFSET + header.bitmap_bytes
        fd = _anonymous_file(dir_fd)
        if fd >= 0:
            try:
                _write_new(fd, header)
                linked = _link_anonymous(fd, dir_fd, name)
                mapped = mmap.mmap(fd, size, mmap.MAP_SHARED) if linked else None
            except BaseException:
                os.close(fd)
                raise
            if mapped is not None:
                return cls(dir_fd, part_name, fd, header, mapped)
            os.close(fd)
        # No O_TMPFILE (or no /proc to link it): an exclusive create. A peer may glimpse the
        # file before its header is written, but it can only discard what it can lock, and we
        # take the lock before writing.
        fd = os.open(name, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
        try:
            _write_new(fd, header)
            mapped = mmap.mmap(fd, size, mmap.MAP_SHARED)
        except BaseException:
            _unlink_quiet(dir_fd, name)
            os.close(fd)
            raise
        return cls(dir_fd, part_name, fd, header, mapped)

    # -- the bitmap -------------------------------------------------------------------------

    @property
    def mapping(self) -> mmap.mmap:
        """The whole sidecar, mapped shared; the bitmap starts at `BITMAP_OFFSET`."""
        return self._map

    @property
    def bitmap(self) -> memoryview:
        """The chunk bitmap alone, writable and shared: bit k (LSB first) is file chunk k.

        This is the layout of the C receive loop's written bitmap (`RxPath(written=...)` in
        `l2fast.native.datapath`), so the loop marks the sidecar directly. Release the view
        (and drop any cffi pointer into it) before `release`, `remove` or `finish`; a view
        still held only delays the unmapping until it is gone.
        """
        return memoryview(self._map)[BITMAP_OFFSET : BITMAP_OFFSET + self.header.bitmap_bytes]

    @property
    def n_chunks(self) -> int:
        """Chunks in the file."""
        return self.header.n_chunks

    def mark(self, start: int, end: int) -> None:
        """Record file-relative chunks [start, end) as written (one process at a time)."""
        if not 0 <= start <= end <= self.n_chunks:
            raise ValueError(f"chunks [{start}, {end}) outside 0..{self.n_chunks}")
        if start == end:
            return
        m = self._map
        first_byte, last_byte = start >> 3, (end - 1) >> 3
        if first_byte == last_byte:
            m[BITMAP_OFFSET + first_byte] |= ((1 << (end - start)) - 1) << (start & 7)
            return
        m[BITMAP_OFFSET + first_byte] |= (0xFF << (start & 7)) & 0xFF
        full = last_byte - first_byte - 1
        if full:
            lo = BITMAP_OFFSET + first_byte + 1
            m[lo : lo + full] = b"\xff" * full
        m[BITMAP_OFFSET + last_byte] |= (1 << (((end - 1) & 7) + 1)) - 1

    def mark_session(self, start: int, end: int) -> None:
        """Record chunks [start, end) given as DATA `seq` numbers of the current session."""
        first = self.header.first_chunk
        self.mark(start - first, end - first)

    def held(self) -> ChunkRanges:
        """The chunks held, file-relative (chunk 0 is the file's first)."""
        held = ChunkRanges()
        n = self.n_chunks
        end = BITMAP_OFFSET + self.header.bitmap_bytes
        for match in _HELD_RUNS.finditer(self._map, BITMAP_OFFSET, end):
            lo, hi = match.span()
            base = (lo - BITMAP_OFFSET) * 8
            if hi - lo > 1 or self._map[lo] == 0xFF:
                held.add(base, min((hi - BITMAP_OFFSET) * 8, n))
                continue
            byte = self._map[lo]
            for bit in range(8):
                if byte >> bit & 1 and base + bit < n:
                    held.add(base + bit, base + bit + 1)
        return held

    def held_in_session(self) -> ChunkRanges:
        """The chunks held as DATA `seq` numbers of the current session (FILE_ACCEPT `have`)."""
        first = self.header.first_chunk
        return ChunkRanges((s + first, e + first) for s, e in self.held())

    def contiguous(self) -> int:
        """How many chunks from the file's start are all held (the first missing chunk)."""
        end = BITMAP_OFFSET + self.header.bitmap_bytes
        match = _NOT_FULL.search(self._map, BITMAP_OFFSET, end)
        if match is None:
            return self.n_chunks
        pos = match.start()
        byte = self._map[pos]
        bit = 0
        while byte >> bit & 1:
            bit += 1
        return min((pos - BITMAP_OFFSET) * 8 + bit, self.n_chunks)

    def is_complete(self) -> bool:
        """True when every chunk is held."""
        return self.contiguous() == self.n_chunks

    def flush(self) -> None:
        """Write the bitmap back to the file (msync); a process crash needs no flush."""
        self._map.flush()

    # -- closing ----------------------------------------------------------------------------

    def _close(self) -> None:
        if self._fd < 0:
            return
        try:
            self._map.close()
        except BufferError:
            pass  # a `bitmap` view is still out: the mapping goes when it does
        finally:
            os.close(self._fd)
            self._fd = -1

    def release(self) -> None:
        """Close, keeping the part file and the sidecar for a later resume."""
        if self._fd >= 0:
            self._map.flush()
        self._close()

    def remove(self) -> None:
        """Delete the part file and the sidecar (while still holding the lock), then close."""
        if self._fd >= 0:
            _unlink_part(self._dir_fd, self.part_name)
            if _same_inode(self._dir_fd, sidecar_name(self.part_name), self._fd):
                _unlink_quiet(self._dir_fd, sidecar_name(self.part_name))
        self._close()

    def finish(self) -> None:
        """The part file was renamed to its final name: delete the sidecar and close."""
        if self._fd >= 0 and _same_inode(self._dir_fd, sidecar_name(self.part_name), self._fd):
            _unlink_quiet(self._dir_fd, sidecar_name(self.part_name))
        self._close()

    @property
    def closed(self) -> bool:
        """True after release, remove or finish."""
        return self._fd < 0


def _unlink_part(dir_fd: int, part_name: str) -> None:
    """Remove our part file; never a directory (whatever sits there then is not ours)."""
    st = _stat_or_none(dir_fd, part_name)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        _unlink_quiet(dir_fd, part_name)


def _write_new(fd: int, header: SidecarHeader) -> None:
    """Lock a new sidecar and write its header and an empty bitmap."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, BITMAP_OFFSET + header.bitmap_bytes)
    os.pwrite(fd, header.pack(), 0)


def _anonymous_file(dir_fd: int) -> int:
    """An unnamed file in the directory (O_TMPFILE), or -1 where the file system has none."""
    try:
        return os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return -1
        raise


def _link_anonymous(fd: int, dir_fd: int, name: str) -> bool:
    """Give the O_TMPFILE inode `fd` its name; False when /proc is not there to do it."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.ENOTDIR):
            return False
        raise
    return True


def open_sidecar(dir_fd: int, part_name: str, expected: SidecarHeader) -> SidecarLookup:
    """Look for a resumable sidecar of `part_name` matching the offer `expected`.

    A sidecar of another offer, a corrupt or truncated one, or one whose part file is missing
    or of the wrong size is discarded together with its part (start over), and the result is
    MISSING. A matching one comes back RESUMABLE, locked, with its header's `first_chunk` set
    to `expected.first_chunk`. Never raises for what it finds on disk, only for I/O errors.
    """
    name = sidecar_name(part_name)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return SidecarLookup(Lookup.MISSING)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            return SidecarLookup(Lookup.BUSY, note=f"{name} is not a regular file")
        raise
    try:
        info = os.fstat(fd)
        if not is_ours(info):
            os.close(fd)
            return SidecarLookup(Lookup.BUSY, note=f"{name} is not a sidecar we wrote")
        if not _try_lock(fd):
            os.close(fd)
            return SidecarLookup(Lookup.BUSY, note=f"{name} is in use by another transfer")
        if not _same_inode(dir_fd, name, fd):  # removed or replaced before we got the lock
            os.close(fd)
            return open_sidecar(dir_fd, part_name, expected)
        found = SidecarHeader.unpack(os.pread(fd, BITMAP_OFFSET, 0))
        problem = _mismatch(found, expected, info.st_size, dir_fd, part_name)
        if problem is not None:
            _unlink_part(dir_fd, part_name)
            _unlink_quiet(dir_fd, name)
            os.close(fd)
            return SidecarLookup(Lookup.MISSING, note=f"discarded {name}: {problem}")
        header = SidecarHeader(
            size=expected.size,
            chunk_size=expected.chunk_size,
            first_chunk=expected.first_chunk,
            identity=expected.identity,
        )
        os.pwrite(fd, header.pack(), 0)
        mapped = mmap.mmap(fd, BITMAP_OFFSET + header.bitmap_bytes, mmap.MAP_SHARED)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    state = ResumeState(dir_fd, part_name, fd, header, mapped)
    return SidecarLookup(Lookup.RESUMABLE, state, note=f"resuming from {name}")


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    """What one `expire_pairs` walk did."""

    removed: int = 0  #: pairs (part file and sidecar) deleted
    removed_bytes: int = 0  #: blocks the deleted part files held, in bytes
    kept_busy: int = 0  #: old pairs a transfer holds now (locked): left alone
    scanned: int = 0  #: directory entries looked at
    truncated: bool = False  #: the walk stopped at its entry limit
    #: subdirectories that could not be opened (out of descriptors, gone, no permission)
    dirs_skipped: int = 0
    #: pairs whose deletion failed (a read-only or immutable file, an I/O error): left
    failed: int = 0


def expire_pairs(dir_fd: int, max_age_s: float, now: float, limit: int) -> ExpiryResult:
    """Delete the resume pairs under the directory `dir_fd` that nobody wrote to for
    `max_age_s` seconds before the wall-clock time `now`; look at `limit` entries at most.

    A pair is a sidecar `x.part.l2fast` this process's user owns, with its part file `x.part`;
    it is old when neither file changed for `max_age_s`. Each is deleted while holding the
    sidecar's lock, part file first (the order `ResumeState.create` reverses), so a transfer
    that holds a pair, or takes it meanwhile, is never touched. Symbolic links and anything
    that is not ours are left alone; subdirectories are walked (one descriptor per level
    open), links to them are not. Never raises for what it finds on disk.
    """
    removed = removed_bytes = kept_busy = scanned = dirs_skipped = failed = 0
    truncated = False
    # Depth first: each frame is an open directory and the subdirectories still to visit.
    frames: list[tuple[int, list[str]]] = []
    fd = os.dup(dir_fd)
    try:
        while fd >= 0:
            subdirs: list[str] = []
            sidecars: list[str] = []
            with contextlib.suppress(OSError), os.scandir(fd) as entries:
                for entry in entries:
                    if scanned >= limit:
                        truncated = True
                        break
                    scanned += 1
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(entry.name)
                        elif entry.name.endswith(".part" + SIDECAR_SUFFIX):
                            sidecars.append(entry.name)
            for name in sidecars:
                try:
                    outcome = _expire_one(fd, name, max_age_s, now)
                except OSError:
                    # One pair that cannot be deleted must not stop the walk (the same pair
                    # would stop every walk after it, in the same order).
                    failed += 1
                    continue
                if outcome == _BUSY:
                    kept_busy += 1
                elif outcome is not None:
                    removed += 1
                    removed_bytes += outcome
            frames.append((fd, subdirs))
            fd = -1
            while frames and fd < 0:
                parent, pending = frames[-1]
                if pending and not truncated:
                    try:
                        fd = os.open(pending.pop(), _DIR_FLAGS, dir_fd=parent)
                    except OSError:
                        dirs_skipped += 1
                else:
                    frames.pop()
                    os.close(parent)
    finally:
        if fd >= 0:
            os.close(fd)
        for parent, _ in frames:
            os.close(parent)
    return ExpiryResult(removed, removed_bytes, kept_busy, scanned, truncated, dirs_skipped, failed)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BUSY = -1


def _expire_one(dir_fd: int, name: str, max_age_s: float, now: float) -> int | None:
    """Delete the pair of sidecar `name` if it is ours and old: the part's bytes freed; -1 when
    it is old but locked by a transfer; None when it is young or not ours."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not is_ours(info):
            return None
        part = name[: -len(SIDECAR_SUFFIX)]
        part_info = _stat_or_none(dir_fd, part)
        if now - _last_write(info, part_info) < max_age_s:
            return None
        if not _try_lock(fd):
            return _BUSY
        if not _same_inode(dir_fd, name, fd):  # removed or replaced before we got the lock
            return None
        # Resumed and released again between the first look and the lock: young again.
        info, part_info = os.fstat(fd), _stat_or_none(dir_fd, part)
        if now - _last_write(info, part_info) < max_age_s:
            return None
        # Only what is provably a pair we wrote: a sidecar with a valid header and the size
        # it implies, and (when there is one) a part file that is a plain file of ours, with
        # one link, of the header's size. Anything else under these names is left alone.
        header = SidecarHeader.unpack(os.pread(fd, BITMAP_OFFSET, 0))
        if header is None or info.st_size != BITMAP_OFFSET + header.bitmap_bytes:
            return None
        if part_info is not None and not (is_ours(part_info) and part_info.st_size == header.size):
            return None
        freed = part_info.st_blocks * 512 if part_info is not None else 0
        _unlink_part(dir_fd, part)
        _unlink_quiet(dir_fd, name)
        return freed
    finally:
        os.close(fd)


def is_ours(info: os.stat_result) -> bool:
    """A plain file this process's user owns, under one name only: what a sidecar or part
    file must be before it is trusted (a hard link could be someone else's file elsewhere)."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_uid == os.geteuid()


def _last_write(sidecar: os.stat_result, part: os.stat_result | None) -> float:
    """When either file of a pair last changed (wall clock)."""
    return max(sidecar.st_mtime, part.st_mtime if part is not None else 0.0)


def _stat_or_none(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mismatch(
    found: SidecarHeader | None,
    expected: SidecarHeader,
    file_size: int,
    dir_fd: int,
    part_name: str,
) -> str | None:
    """Why a found sidecar cannot resume `expected`, or None when it can."""
    if found is None:
        return "not a valid sidecar (truncated, corrupt or another version)"
    if not found.same_file(expected):
        return "it belongs to another offer"
    if file_size != BITMAP_OFFSET + found.bitmap_bytes:
        return f"its bitmap is {file_size - BITMAP_OFFSET} bytes, not {found.bitmap_bytes}"
    part = _stat_or_none(dir_fd, part_name)
    if part is None:
        return "its part file is gone"
    if not stat.S_ISREG(part.st_mode) or part.st_nlink != 1:
        return "its part file is not a plain file"
    if part.st_size != expected.size:
        return f"its part file is {part.st_size} bytes, not {expected.size}"
    return None
