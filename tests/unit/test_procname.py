"""Worker processes and threads carry their role in the kernel's task name."""

from __future__ import annotations

import threading
from pathlib import Path

from l2fast.procname import MAX_NAME, name_this_thread
from l2fast.transfer.digest import _Worker


def _comm(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


def test_a_thread_names_itself_and_long_names_are_cut() -> None:
    seen: list[tuple[str, str]] = []

    def body() -> None:
        name_this_thread("l2f-test")
        first = _comm(threading.get_native_id())
        name_this_thread("l2f-a-name-longer-than-the-kernel-keeps")
        seen.append((first, _comm(threading.get_native_id())))

    t = threading.Thread(target=body)
    t.start()
    t.join(5)
    assert seen == [("l2f-test", "l2f-a-name-longer-than-the-kernel-keeps"[:MAX_NAME])]
    # The caller's own name is untouched.
    assert _comm(threading.get_native_id()) != "l2f-test"


def test_digest_threads_name_themselves() -> None:
    """The hashing threads run under the name they were given (`l2f-digest` for the sender's
    FileDigester, `l2f-rx-digest` for the receiver's PrefixDigester)."""
    seen: list[str] = []
    worker = _Worker(lambda: seen.append(_comm(threading.get_native_id())), "l2f-digest")
    worker.start()
    worker.wait(5)
    assert seen == ["l2f-digest"]
