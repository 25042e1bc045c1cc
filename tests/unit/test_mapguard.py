"""The map guard (csrc/mapguard.h, l2fast/native/mapguard.py): a guarded mapping whose file
shrinks reads zeros and says so instead of killing the process with SIGBUS; every other SIGBUS
still does what it did before the guard.

Each case that can raise SIGBUS runs in a fresh interpreter: should the guard fail, that
interpreter dies, not pytest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from l2fast.native import datapath as dp
from l2fast.native import mapguard
from l2fast.native.mapguard import GuardedMap, SourceError

PAGE = os.sysconf("SC_PAGESIZE")


def run_py(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def make(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def test_truncated_under_a_guarded_map_reads_zeros_and_says_so(tmp_path: Path) -> None:
    src = make(tmp_path / "f", 64 * PAGE)
    result = run_py(
        f"""
        import hashlib, os, threading
        from l2fast.native import mapguard
        fd = os.open({str(src)!r}, os.O_RDONLY)
        m = mapguard.GuardedMap(fd, {64 * PAGE})
        head = bytes(m.data[:{PAGE}])
        assert m.changed() is None and not m.truncated
        os.truncate({str(src)!r}, {8 * PAGE} + 100)
        # A read past the new end, in this thread and in another one (a digest thread).
        tail = bytes(m.data[{9 * PAGE}:{11 * PAGE}])  # from the first page past the end
        t = threading.Thread(target=lambda: hashlib.sha256(m.data).digest())
        t.start(); t.join()
        assert tail == bytes({2 * PAGE}), "zeros past the end"
        assert bytes(m.data[:{PAGE}]) == head, "the file's own pages are untouched"
        assert m.truncated
        print(m.changed())
        print(mapguard.faults_total())
        m.close()
        print(mapguard.guarded_count())
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    why, faults, left = result.stdout.splitlines()
    assert why == "it was truncated (or could not be read) while it was being sent"
    # One fault maps zeros over the rest of the range (the hash reads it all after that):
    # not one fault per page.
    assert faults == "1"
    assert left == "0"


def test_a_sigbus_elsewhere_still_kills(tmp_path: Path) -> None:
    """An unguarded mapping in a process with the guard installed dies as it always did;
    the negative control shows the same read without the guard is fatal too."""
    src = make(tmp_path / "f", 16 * PAGE)
    code = f"""
        import mmap, os
        from l2fast.native import mapguard
        fd = os.open({str(src)!r}, os.O_RDONLY)
        guarded = mapguard.GuardedMap(fd, {16 * PAGE}) if GUARD else None
        plain = mmap.mmap(fd, {16 * PAGE}, access=mmap.ACCESS_READ)
        os.truncate({str(src)!r}, {PAGE})
        bytes(plain[{4 * PAGE}:{5 * PAGE}])
        print("survived")
        """
    for guard in (True, False):
        make(src, 16 * PAGE)
        result = run_py(f"GUARD = {guard}\n" + textwrap.dedent(code), tmp_path)
        assert result.returncode == -signal.SIGBUS, (guard, result)
        assert "survived" not in result.stdout


def test_a_sigbus_sent_by_a_process_still_kills(tmp_path: Path) -> None:
    src = make(tmp_path / "f", PAGE)
    result = run_py(
        f"""
        import os, signal
        from l2fast.native import mapguard
        m = mapguard.GuardedMap(os.open({str(src)!r}, os.O_RDONLY), {PAGE})
        os.kill(os.getpid(), signal.SIGBUS)
        print("survived")
        """,
        tmp_path,
    )
    assert result.returncode == -signal.SIGBUS, result
    assert "survived" not in result.stdout


def test_changed_before_mapping_is_refused(tmp_path: Path) -> None:
    src = make(tmp_path / "f", 4 * PAGE)
    fd = os.open(src, os.O_RDONLY)
    try:
        mtime = os.fstat(fd).st_mtime_ns
        with pytest.raises(SourceError, match="it was truncated while it was being sent"):
            GuardedMap(fd, 5 * PAGE, mtime)  # the send began with a longer file
        with pytest.raises(SourceError, match="it was modified while it was being sent"):
            GuardedMap(fd, 4 * PAGE, mtime - 1)
        with pytest.raises(ValueError):
            GuardedMap(fd, 0)
        assert mapguard.guarded_count() == 0
        with GuardedMap(fd, 4 * PAGE, mtime) as m:
            assert m.changed() is None
            assert mapguard.guarded_count() == 1
            os.utime(src, ns=(mtime, mtime + 10**9))
            assert m.changed() == "it was modified while it was being sent"
        assert mapguard.guarded_count() == 0
    finally:
        os.close(fd)


def test_a_file_that_cannot_be_mapped_is_refused_clearly() -> None:
    path = Path("/sys/class/net/lo/address")  # sysfs: a size of 4096, and no mmap
    if not path.exists():
        pytest.skip("no /sys/class/net/lo/address here")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(SourceError, match=r"cannot be read through a mapping \(No such dev"):
            GuardedMap(fd, os.fstat(fd).st_size)
        assert mapguard.guarded_count() == 0
    finally:
        os.close(fd)


def test_close_while_exported_keeps_the_guard(tmp_path: Path) -> None:
    src = make(tmp_path / "f", 2 * PAGE)
    fd = os.open(src, os.O_RDONLY)
    try:
        m = GuardedMap(fd, 2 * PAGE)
        assert m.data is not None
        view = memoryview(m.data)
        with pytest.raises(BufferError):
            m.close()
        assert mapguard.guarded_count() == 1 and m.data is not None
        view.release()
        m.close()
        m.close()  # twice is harmless
        assert mapguard.guarded_count() == 0 and m.data is None
    finally:
        os.close(fd)


def test_a_released_c_sender_lets_the_mapping_close(tmp_path: Path) -> None:
    """The C sender pins the mapping's buffer; the daemon releases it when a file ends, so
    the mapping closes then (it used to stay open until the whole send ended)."""
    src = make(tmp_path / "f", 4 * PAGE)
    fd = os.open(src, os.O_RDONLY)
    try:
        m = GuardedMap(fd, 4 * PAGE)
        assert m.data is not None
        tx = dp.TxPath(fd, 1, dst=b"\x02" * 6, src=b"\x02" * 6, session=1, data=m.data,
                       chunk_size=1000)  # fmt: skip
        with pytest.raises(BufferError):
            m.close()
        tx.release()
        tx.release()
        m.close()
        assert mapguard.guarded_count() == 0
        with pytest.raises(ValueError, match="released"):
            tx.send([(0, 1)])
        assert tx.stats().frames == 0
    finally:
        os.close(fd)


def test_the_table_is_bounded(tmp_path: Path) -> None:
    """Every slot in use: the next one is refused with ENOSPC, and a freed slot is reused
    (ranges only: nothing is mapped, in a fresh interpreter)."""
    result = run_py(
        """
        from l2fast.native import _lib, mapguard
        n = mapguard.MAX_GUARDED
        base = 1 << 44
        slots = [_lib.l2f_mapguard_add(base + i * 4096, 4096) for i in range(n)]
        assert sorted(slots) == list(range(n)), slots[:5]
        print(_lib.l2f_mapguard_add(base - 4096, 4096))
        _lib.l2f_mapguard_remove(slots[7])
        print(_lib.l2f_mapguard_add(base - 4096, 4096))
        print(_lib.l2f_mapguard_add(base, 0), _lib.l2f_mapguard_add(0, 1))
        for s in range(n):
            _lib.l2f_mapguard_remove(s)
        print(mapguard.guarded_count())
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    full, reused, bad, left = result.stdout.splitlines()
    assert int(full) == -28  # -ENOSPC
    assert reused == "7"
    assert bad == "-22 -22"  # -EINVAL
    assert left == "0"
