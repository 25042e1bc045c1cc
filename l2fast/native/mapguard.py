"""A file mapped read-only for sending that may shrink under us without killing the process.

The sender reads each source file in place through one mapping (the C sender's CRC32C, the
kernel's sendmmsg and the digest thread). Reading a mapped page past the end of a file that
another process truncated raises SIGBUS, whose default action would end the daemon and every
transfer it runs; csrc/mapguard.h turns such a fault into zero pages and a count. `GuardedMap`
registers its mapping there and answers `changed()`: whoever is about to trust what was read
(send a digest, report a file as sent) asks it first.
"""

from __future__ import annotations

import mmap
import os

from l2fast.errors import L2fastError
from l2fast.native import _check, _ffi, _lib

#: Mappings that can be guarded at once (csrc/mapguard.h).
MAX_GUARDED: int = _lib.L2F_MAPGUARD_SLOTS


def faults_total() -> int:
    """Faults the guard absorbed in this process so far: unchanged means no guarded file
    shrank, a one-call check before asking each mapping."""
    return int(_lib.l2f_mapguard_faults_total())


def guarded_count() -> int:
    """Mappings guarded now."""
    return int(_lib.l2f_mapguard_in_use())


class SourceError(L2fastError):
    """The file cannot be sent as it stands: it is no longer the one the send began with, or
    it cannot be mapped (its message says which, and what to do)."""


class GuardedMap:
    """`size` bytes of the file open on `fd`, mapped read-only and guarded.

    `data` is the mapping (a buffer: pass it to the C sender or a hasher). The descriptor
    stays the caller's; it is read only by `changed()` (fstat).
    """

    def __init__(self, fd: int, size: int, mtime_ns: int | None = None) -> None:
        """`size` and `mtime_ns` are the file as it was when the send began (by default: as
        it is now); `changed()` compares the file with them.

        Raises SourceError when the file already differs from them (a mapping longer than
        the file is refused; one that grew would not be the file offered)."""
        if size <= 0:
            raise ValueError("an empty file is not mapped")
        self.fd = fd
        self.size = size
        st = os.fstat(fd)
        self._seen = (size, st.st_mtime_ns if mtime_ns is None else mtime_ns)
        self._slot = -1
        self.data: mmap.mmap | None = None
        why = self._differs(st)
        if why is not None:
            raise _refusal(why)
        try:
            self.data = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        except OSError as exc:  # ENODEV: a /sys file, say, which cannot be mapped
            raise SourceError(
                f"it cannot be read through a mapping ({exc.strerror}): l2fast sends regular "
                "files of disk file systems; copy it to one first (cp FILE COPY) and send that"
            ) from None
        try:
            self._guard()
        except BaseException:
            self.data.close()
            self.data = None
            raise

    def _guard(self) -> None:
        assert self.data is not None
        ptr = _ffi.from_buffer(self.data)
        try:
            addr = int(_ffi.cast("uintptr_t", ptr))
        finally:
            _ffi.release(ptr)  # the mapping does not move; holding the export would pin it open
        self._slot = _check(_lib.l2f_mapguard_add(addr, self.size), "guarding a mapped file")

    @property
    def truncated(self) -> bool:
        """True once a read of the mapping found no file under it (truncated, or a read error
        of the disk): from that page on, what was read is zeros, not the file."""
        return self._slot >= 0 and _lib.l2f_mapguard_faulted(self._slot) > 0

    def changed(self) -> str | None:
        """Why what was read from the mapping may not be the file as it was when the send
        began, or None when nothing shows that it changed (same size and modification time,
        and no read past its end)."""
        if self.truncated:
            return "it was truncated (or could not be read) while it was being sent"
        try:
            st = os.fstat(self.fd)
        except OSError as exc:
            return f"it could not be checked while it was being sent ({exc.strerror})"
        return self._differs(st)

    def check(self) -> None:
        """Raise SourceError, saying what to do, when `changed()` has a reason."""
        why = self.changed()
        if why is not None:
            raise _refusal(why)

    def _differs(self, st: os.stat_result) -> str | None:
        if st.st_size < self.size:
            return "it was truncated while it was being sent"
        if (st.st_size, st.st_mtime_ns) != self._seen:
            return "it was modified while it was being sent"
        return None

    def close(self) -> None:
        """Unmap, then unguard (before the range can be mapped again: mappings are made on
        the thread that closes them). Raises BufferError, still mapped and guarded, while
        something holds an export of `data`: a reader (a digest thread) may still fault in
        it, so the guard never lapses while it is mapped."""
        if self.data is None:
            return
        self.data.close()
        self.data = None
        if self._slot >= 0:
            _lib.l2f_mapguard_remove(self._slot)
            self._slot = -1

    def __enter__(self) -> GuardedMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusal(why: str) -> SourceError:
    return SourceError(f"{why}; send it again once nothing writes to it")
