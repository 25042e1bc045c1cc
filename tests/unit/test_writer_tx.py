"""The writer (csrc/writer.c) and the ranged transmitter (csrc/txpath.c), then both ends together.

The transmitter sends over an AF_UNIX datagram pair with ifindex 0 (the socket's own
destination), which runs the same sendmmsg code as on AF_PACKET without privilege.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from l2fast import native
from l2fast.errors import NativeError
from l2fast.native import datapath as dp
from l2fast.wire.constants import Flags, FrameType, Verdict
from tests.datapath_harness import (
    DST,
    SESSION,
    SRC,
    Receiver,
    chunk_bytes,
    dgram_pair,
    file_bytes,
    tmpfile_fd,
)

CS = 100
OFF = 38  # payloads sit after the frame header in a slot, as the receive loop leaves them


def push_chunks(ring: dp.ShmRing, ks: list[int], size: int, first: int = 0, **kw: int) -> int:
    """Publish descriptors for file chunks ks with their real content."""
    descs = b""
    payload = b""
    for k in ks:
        length = kw.get("length", min(CS, size - k * CS) if 0 <= k * CS < size else CS)
        descs += dp.pack_descriptors(
            [first + k],
            payload_off=kw.get("off", OFF),
            payload_len=length,
            flags=kw.get("flags", 0),
        )
        payload += chunk_bytes(max(k, 0), length).ljust(CS + 64, b"\0")
    return ring.push(descs, payload, CS + 64)


# --------------------------------------------------------------------------- writer


def test_contiguous_chunks_go_out_in_one_pwritev(tmp_path: Path) -> None:
    size = 9 * CS + 40
    fd = tmpfile_fd(str(tmp_path / "f"))
    ring = dp.ShmRing(32, 256)
    try:
        assert push_chunks(ring, list(range(10)), size) == 10
        w = dp.Writer(ring, fd, chunk_size=CS, file_size=size)
        assert w.drain() == size
        s = w.stats()
        assert (s.chunks, s.writes, s.batches, s.refused) == (10, 1, 1, 0)
        assert ring.used() == 0
        assert os.pread(fd, size + 1, 0) == file_bytes(size, CS)
    finally:
        ring.close()
        os.close(fd)


def test_gaps_and_skips_split_the_writes(tmp_path: Path) -> None:
    size = 20 * CS
    fd = tmpfile_fd(str(tmp_path / "f"))
    ring = dp.ShmRing(32, 256)
    try:
        push_chunks(ring, [0, 1, 2], size)
        push_chunks(ring, [3], size, flags=dp.DESC_SKIP)  # not for the writer
        push_chunks(ring, [3, 4, 8, 9, 5], size)
        w = dp.Writer(ring, fd, chunk_size=CS, file_size=size)
        assert w.drain() == 8 * CS
        s = w.stats()
        assert (s.chunks, s.skipped) == (8, 1)
        assert s.writes == 3  # 0..4 (the SKIP does not break the run), 8..9, 5
        for k in (0, 1, 2, 3, 4, 5, 8, 9):
            assert os.pread(fd, CS, k * CS) == chunk_bytes(k, CS)
        assert os.pread(fd, CS, 6 * CS) == b"\0" * CS  # the hole stays a hole
    finally:
        ring.close()
        os.close(fd)


def test_nothing_is_ever_written_outside_the_file(tmp_path: Path) -> None:
    size = 5 * CS + 10  # chunks 0..5 of file-relative index; first_chunk 100
    fd = tmpfile_fd(str(tmp_path / "f"))
    ring = dp.ShmRing(32, 256)
    try:
        push_chunks(ring, [6], size, first=100)  # one past the last chunk
        push_chunks(ring, [-1], size, first=100)  # before the first chunk
        push_chunks(ring, [5], size, first=100, length=CS)  # last chunk, too long
        push_chunks(ring, [2], size, first=100, length=CS - 1)  # a middle chunk, too short
        push_chunks(ring, [1], size, first=100)
        # corrupt that descriptor in shared memory: payload_off 200 puts it past its slot
        at = 512 + 4 * dp.DESC_SIZE + 8
        ring._mm[at : at + 4] = (200).to_bytes(4, "little")
        push_chunks(ring, [5], size, first=100)  # the real last chunk: fine
        w = dp.Writer(ring, fd, chunk_size=CS, file_size=size, first_chunk=100)
        assert w.drain() == 10
        s = w.stats()
        assert (s.refused, s.chunks) == (5, 1)
        assert ring.used() == 0  # refused descriptors are released too
        assert os.fstat(fd).st_size == size
        assert os.pread(fd, size, 0) == b"\0" * (5 * CS) + chunk_bytes(5, 10)
    finally:
        ring.close()
        os.close(fd)


def test_bench_mode_releases_without_writing() -> None:
    ring = dp.ShmRing(32, 256)
    try:
        push_chunks(ring, list(range(7)), 10 * CS)
        w = dp.Writer(ring, -1, chunk_size=CS, file_size=10 * CS)
        assert w.drain() == 7 * CS
        assert (w.stats().writes, ring.used()) == (0, 0)
    finally:
        ring.close()


def test_a_write_error_keeps_the_batch_in_the_ring(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    ring = dp.ShmRing(32, 256)
    try:
        push_chunks(ring, [0, 1, 2], 10 * CS)
        w = dp.Writer(ring, fd, chunk_size=CS, file_size=10 * CS)
        with pytest.raises(NativeError, match=r"[Bb]ad file descriptor"):
            w.drain()
        assert ring.used() == 3  # nothing lost: a retry (or a failover) still has them
    finally:
        ring.close()
        os.close(fd)


def test_drain_waits_on_an_empty_ring() -> None:
    ring = dp.ShmRing(8, 256)
    try:
        w = dp.Writer(ring, -1, chunk_size=CS, file_size=CS)
        assert w.drain(wait_s=0.02) == 0
        assert w.stats().waits == 1
    finally:
        ring.close()


# --------------------------------------------------------------------------- transmit


def recv_frames(sock: socket.socket, limit: int = 10_000) -> list[bytes]:
    out = []
    for _ in range(limit):
        try:
            out.append(sock.recv(70_000))
        except BlockingIOError:
            break
    return out


def make_tx(sock: socket.socket, data: bytes, **kw: object) -> dp.TxPath:
    return dp.TxPath(
        sock,
        0,
        dst=DST,
        src=SRC,
        session=SESSION,
        data=data,
        chunk_size=CS,
        **kw,  # type: ignore[arg-type]
    )


def test_ranges_go_out_in_order_with_valid_crc() -> None:
    size = 9 * CS + 33
    data = file_bytes(size, CS)
    with dgram_pair() as (a, b):
        tx = make_tx(a, data, first_chunk=50, mark_last=True)
        assert tx.send([(50, 53), (57, 60), (52, 53)]) == 7
        frames = recv_frames(b)
        infos = [native.parse_frame(f) for f in frames]
        assert [i.verdict for i in infos] == [Verdict.OK] * 7
        assert [i.seq for i in infos] == [50, 51, 52, 57, 58, 59, 52]
        assert all(i.type == FrameType.DATA and i.session == SESSION for i in infos)
        for f, i in zip(frames, infos, strict=True):
            k = i.seq - 50
            assert f[38:] == data[k * CS : (k + 1) * CS]
            assert f[:6] == DST and f[6:12] == SRC
        assert [bool(i.flags & Flags.LAST) for i in infos] == [False] * 5 + [True, False]
        assert len(frames[5]) == 38 + 33  # the short last chunk
        assert tx.stats().frames == 7
        assert tx.stats().bytes == 6 * CS + 33


def test_retransmit_flag_and_bench_payload() -> None:
    with dgram_pair() as (a, b):
        tx = make_tx(a, b"B" * CS, file_size=1000 * CS, bench=True)
        assert tx.send([(998, 1000)], retransmit=True) == 2
        frames = recv_frames(b)
        for f in frames:
            info = native.parse_frame(f)
            assert info.verdict == Verdict.OK
            assert info.flags == Flags.RETRANSMIT
            assert f[38:] == b"B" * CS  # every chunk carries the one buffer


def test_max_frames_cuts_the_ranges_exactly() -> None:
    data = file_bytes(100 * CS, CS)
    with dgram_pair() as (a, b):
        tx = make_tx(a, data)
        assert tx.send([(0, 5), (10, 20)], max_frames=8) == 8
        assert [native.parse_frame(f).seq for f in recv_frames(b)] == [0, 1, 2, 3, 4, 10, 11, 12]


def test_frames_per_sendmmsg() -> None:
    data = file_bytes(100 * CS, CS)
    with dgram_pair() as (a, b):
        tx = make_tx(a, data, batch=10)
        assert tx.send([(0, 95)]) == 95
        assert tx.stats().calls == 10  # 9 full batches and one of 5
        assert len(recv_frames(b)) == 95
    assert dp.tx_batch_for(1476) == dp.TX_BATCH
    assert dp.tx_batch_for(8976) == 58  # ~512 KiB of frames
    assert dp.tx_batch_for(65511) == 7
    with pytest.raises(ValueError):
        make_tx(a, data, batch=dp.TX_BATCH + 1)


def test_bad_ranges_send_nothing() -> None:
    data = file_bytes(10 * CS, CS)
    with dgram_pair() as (a, b):
        tx = make_tx(a, data)
        for bad in ([(0, 11)], [(3, 3)], [(5, 4)], [(0, 2), (9, 12)]):
            with pytest.raises(ValueError):
                tx.send(bad)
        assert recv_frames(b) == []
        with pytest.raises(ValueError, match="needs"):
            make_tx(a, data[:-1], file_size=10 * CS)


def test_backpressure_returns_exactly_what_was_taken() -> None:
    """A tiny send buffer fills: each call reports the frames taken, resuming loses none."""
    data = file_bytes(300 * CS, CS)
    with dgram_pair(sndbuf=4096) as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        tx = make_tx(a, data)
        seqs: list[int] = []
        pos = 0
        calls = 0
        while pos < 300 and calls < 10_000:
            took = tx.send([(pos, 300)])
            assert 0 <= took <= 300 - pos
            pos += took
            calls += 1
            seqs += [native.parse_frame(f).seq for f in recv_frames(b)]
        assert seqs == list(range(300))
        assert tx.stats().backpressure >= 1
        assert calls > 1


def test_a_socket_error_is_raised() -> None:
    with dgram_pair() as (a, b):
        tx = make_tx(a, b"x" * CS)
        b.close()  # the peer is gone: ECONNREFUSED
        with pytest.raises(NativeError):
            tx.send([(0, 1)])


# --------------------------------------------------------------------------- together


def test_tx_to_rx_to_file_with_retransmission(tmp_path: Path) -> None:
    """TxPath -> RxPath -> two writers; lost frames are resent from feedback until complete."""
    size = 500 * CS - 7
    data = os.urandom(size)
    fd = tmpfile_fd(str(tmp_path / "out"))
    written = bytearray(dp.written_bitmap_size(size, CS))
    with dgram_pair() as (a, b):
        r = Receiver(b, CS, size, fd=fd, written=written, nrings=2, nslots=64, batch=16, window=256)
        tx = make_tx(a, data)
        try:
            # a first pass with every 7th chunk left out stands in for loss
            sent = tx.send([(k, k + 1) for k in range(500) if k % 7 != 3][:100])
            rounds = 0
            while rounds < 200:
                rounds += 1
                r.run()
                r.drain()
                fb = r.rx.feedback()
                if fb.complete:
                    break
                holes = []
                lo = fb.cum_ack
                for s, e in fb.ranges:
                    holes.append((lo, s))
                    lo = e
                holes.append((lo, min(fb.credit, 500)))
                holes = [(s, e) for s, e in holes if s < e]
                if holes:
                    sent += tx.send(holes, max_frames=fb.credit - fb.cum_ack)
            r.drain()
            r.rx.feedback()
            assert fb.complete, f"stuck at {fb}"
            c = r.rx.counters()
            assert c.data_new == 500
            assert sent >= 500
            assert written == bytearray(b"\xff" * 62 + b"\x0f")
        finally:
            r.close()
    assert os.pread(fd, size + 1, 0) == data
    os.close(fd)
