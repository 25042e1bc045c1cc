"""The receive processes (l2fast/transfer/receiver_proc.py): their FEEDBACK policy and recvmmsg
batch (pure functions), how a writer reports a failed write, and how a writer ends with its
receive process (forked processes, no socket)."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import wait
from pathlib import Path

import pytest

from l2fast.errors import NativeError
from l2fast.native import datapath as dp
from l2fast.transfer import receiver_proc as rp


def test_feedback_is_due_on_frames_completion_or_interval_only() -> None:
    def due(stop: dp.RxStop, age: float) -> bool:
        return rp._feedback_due(dp.RxRun(stop, [], False), 10.0, 10.0 - age)

    assert due(dp.RxStop.FRAMES, 0.0) and due(dp.RxStop.COMPLETE, 0.0)
    assert due(dp.RxStop.BUDGET, rp.FEEDBACK_INTERVAL_S)
    assert not due(dp.RxStop.BUDGET, rp.FEEDBACK_INTERVAL_S / 2)
    # Full rings alone do not repeat FEEDBACK: the credit cannot grow until the writers drain.
    assert not due(dp.RxStop.RING_FULL, 0.0)


def test_rx_batch_shrinks_with_few_slots() -> None:
    rings = [dp.ShmRing(128, 65600), dp.ShmRing(128, 65600)]
    try:
        assert rp._slots(rings) == 256
    finally:
        for r in rings:
            r.close()
    assert rp._rx_batch(256) == 16
    assert rp._rx_batch(2048) == rp.RX_BATCH
    assert rp._feedback_frames(256) == 256 // rp.FEEDBACK_SLOT_FRACTION == 128


class _FullDisk:
    """A Writer whose file system is full (or that fails otherwise) on the first drain."""

    def __init__(self, err: int) -> None:
        self.err = err

    def __call__(self, *args: object, **kwargs: object) -> _FullDisk:
        return self

    def drain(self, *args: object, **kwargs: object) -> int:
        raise NativeError(-self.err, os.strerror(self.err), "writing received chunks")


@pytest.mark.parametrize(("err", "status"), [(errno.ENOSPC, rp.WRITER_NO_SPACE), (errno.EIO, 1)])
def test_a_writer_that_cannot_write_exits_with_a_status_that_says_why(
    monkeypatch: pytest.MonkeyPatch, err: int, status: int
) -> None:
    # A full disk mid-transfer reached the sender as "io_error (a writer process died (exit
    # status 1))" and left two tracebacks in the daemon's log (found by a review).
    monkeypatch.setattr(rp.dp, "Writer", _FullDisk(err))
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    ring = dp.ShmRing(64, dp.slot_size_for_mtu(1500))
    proc = ctx.Process(
        target=rp._writer_main,
        args=(ring, -1, {"chunk": 1, "size": 1, "first": 0}, stop, os.getpid()),
    )
    proc.start()
    proc.join(10)
    assert proc.exitcode == status
    assert rp._writer_died(status) == (
        rp.NO_SPACE_ERROR if err == errno.ENOSPC else "a writer process died (exit status 1)"
    )


def test_a_full_disk_in_a_receive_process_is_reported_as_such() -> None:
    def full() -> None:
        raise NativeError(-errno.ENOSPC, "No space left on device", "writing received chunks")

    def other() -> None:
        raise NativeError(-errno.EIO, "Input/output error", "writing received chunks")

    here, there = mp.Pipe()
    rp._report_failure(there, "receive process", full)
    rp._report_failure(there, "receive process", other)
    assert here.recv() == {"error": rp.NO_SPACE_ERROR}
    assert here.recv() == {"error": "writing received chunks: Input/output error"}


def _gone(pid: int) -> bool:
    """`pid` ended (an orphan's zombie, not yet reaped by init, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_writers_end_with_their_receive_process_so_the_daemon_sees_it_die(
    tmp_path: Path,
) -> None:
    # A receive process killed (SIGKILL, the OOM killer) never sets its writers' stop event.
    # They waited for it for ever, holding the pipes they inherited through the fork, among
    # them the one whose end tells the daemon the receive process is gone (its sentinel): the
    # daemon never saw the death, the sender's transfer stalled, and the writers lived on.
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()

    def receive_process() -> None:
        ring = dp.ShmRing(64, dp.slot_size_for_mtu(1500))
        fd = os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT, 0o600)
        o = {"chunk": 1024, "size": 1 << 20, "first": 0}
        writer = ctx.Process(
            target=rp._writer_main, args=(ring, fd, o, ctx.Event(), os.getpid()), daemon=True
        )
        writer.start()
        there.send(writer.pid)
        time.sleep(60)  # killed long before

    rx = ctx.Process(target=receive_process)
    rx.start()
    writer = None
    try:
        assert here.poll(10)
        writer = here.recv()
        os.kill(rx.pid, signal.SIGKILL)
        # What the daemon waits on (the runner watches the sentinel) is ready at once...
        assert wait([rx.sentinel], timeout=10) == [rx.sentinel]
        # ...because the orphaned writer ended.
        deadline = time.monotonic() + 10
        while not _gone(writer) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _gone(writer)
    finally:
        rx.kill()
        rx.join(10)
        if writer is not None and not _gone(writer):
            # Should this regress, the orphan must not outlive the test (it holds pytest's
            # output, and a pipeline reading it would wait for ever).
            os.kill(writer, signal.SIGKILL)
