"""The shared-memory SPSC ring of csrc/ring.c through l2fast.native.datapath.ShmRing.

Geometry limits, full/empty edges, FIFO order across many wraparounds (against a deque model),
and the real use: a producer process and a consumer process moving millions of descriptors with
their payloads through one ring, nothing lost, duplicated or reordered.
"""

from __future__ import annotations

import os
import pickle
import random
import time
from array import array
from collections import deque
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from l2fast.errors import NativeError
from l2fast.native import datapath as dp

PAYLOAD_OFF = 38


def payloads_of(seqs: range) -> bytes:
    """8 bytes per descriptor: the seq itself, so a consumer can tell slots apart."""
    return array("Q", seqs).tobytes()


# --------------------------------------------------------------------------- geometry


def test_ring_size_layout() -> None:
    # header 512 + 8 descriptors of 24 bytes (192), rounded to 64 -> 704, then the slots
    assert dp.ring_size(8, 128) == 704 + 8 * 128
    assert dp.ring_size(1024, 1536) == 512 + 1024 * 24 + 1024 * 1536


@pytest.mark.parametrize(
    ("nslots", "slot_size"),
    [(0, 128), (1, 128), (3, 128), (1000, 128), (1 << 21, 128), (8, 32), (8, 100), (8, 65728)],
)
def test_ring_size_refuses_bad_geometry(nslots: int, slot_size: int) -> None:
    with pytest.raises(NativeError):
        dp.ring_size(nslots, slot_size)


def test_ring_size_caps_the_region() -> None:
    with pytest.raises(NativeError, match="larger"):
        dp.ring_size(1 << 20, 65536)


def test_slot_size_for_mtu() -> None:
    assert dp.slot_size_for_mtu(1500) == 1600  # 50 + 1500 + 14 + 4 -> 1568 -> 1600
    assert dp.slot_size_for_mtu(9000) == 9088
    assert dp.slot_size_for_mtu(65535) == dp.RING_MAX_SLOT
    assert dp.slot_size_for_mtu(1500) % 64 == 0


def test_open_refuses_a_region_that_is_not_a_ring(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(NativeError):
        dp.ShmRing.open(str(junk))
    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(ValueError):
        dp.ShmRing.open(str(empty))


def test_a_truncated_region_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    ring = dp.ShmRing(8, 128, path=str(path))
    ring.close()
    os.truncate(path, 1024)  # the header claims more than the file holds
    with pytest.raises(NativeError):
        dp.ShmRing.open(str(path))


# --------------------------------------------------------------------------- edges


def test_empty_and_full_edges() -> None:
    ring = dp.ShmRing(8, 128)
    try:
        assert ring.pop(4) == (b"", b"")
        assert ring.used() == 0
        assert ring.push(dp.pack_descriptors(range(8))) == 8
        assert ring.used() == 8
        assert ring.push(dp.pack_descriptors([8])) == 0  # full: nothing taken
        descs, _ = ring.pop(3)
        assert dp.descriptor_seqs(descs) == [0, 1, 2]
        # only the 3 released slots are free again
        assert ring.push(dp.pack_descriptors(range(8, 13))) == 3
        descs, _ = ring.pop(100)
        assert dp.descriptor_seqs(descs) == [3, 4, 5, 6, 7, 8, 9, 10]
        assert ring.counts() == (11, 11)
        assert ring.pop(1) == (b"", b"")
    finally:
        ring.close()


def test_descriptor_fields_and_payload_round_trip() -> None:
    ring = dp.ShmRing(4, 128)
    try:
        descs = dp.pack_descriptors(
            [7, 8], payload_off=PAYLOAD_OFF, payload_len=50, flags=dp.DESC_LAST, session=99
        )
        payload = bytes(range(50)) + bytes(range(100, 150))
        assert ring.push(descs, payload, 50) == 2
        out, pay = ring.pop(2, 64)
        assert dp.descriptor_fields(out) == [
            (7, PAYLOAD_OFF, 50, dp.DESC_LAST, 99),
            (8, PAYLOAD_OFF, 50, dp.DESC_LAST, 99),
        ]
        assert pay[:50] == bytes(range(50))
        assert pay[64:114] == bytes(range(100, 150))
    finally:
        ring.close()


def test_push_refuses_a_payload_outside_its_slot() -> None:
    ring = dp.ShmRing(4, 128)
    try:
        bad = dp.pack_descriptors([1], payload_off=100, payload_len=29)  # 129 > 128
        with pytest.raises(NativeError):
            ring.push(bad, b"x" * 29, 29)
        with pytest.raises(NativeError):  # payload source shorter than n * stride
            ring.push(dp.pack_descriptors([1, 2], payload_len=8), b"x" * 8, 8)
        assert ring.used() == 0
    finally:
        ring.close()


def test_a_path_ring_is_shared_by_two_handles(tmp_path: Path) -> None:
    path = str(tmp_path / "ring")
    producer = dp.ShmRing(16, 128, path=path)
    consumer = dp.ShmRing.open(path)
    try:
        assert producer.push(dp.pack_descriptors(range(5), payload_len=8), payloads_of(range(5)), 8)
        descs, pay = consumer.pop(16, 8)
        assert dp.descriptor_seqs(descs) == list(range(5))
        assert pay == payloads_of(range(5))
        assert producer.counts() == (5, 5)
        with pytest.raises(FileExistsError):
            dp.ShmRing(16, 128, path=path)
    finally:
        consumer.close()
        producer.unlink()
        producer.close()


def test_an_anonymous_ring_refuses_to_be_pickled() -> None:
    ring = dp.ShmRing(4, 64)
    try:
        with pytest.raises(TypeError, match="fork"):
            pickle.dumps(ring)
    finally:
        ring.close()


def test_a_closed_ring_refuses_use() -> None:
    ring = dp.ShmRing(4, 64)
    ring.close()
    ring.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        ring.used()


class RingModel(RuleBasedStateMachine):
    """Random pushes and pops on a small ring agree with a deque, across many wraparounds."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = dp.ShmRing(8, 64)
        self.model: deque[int] = deque()
        self.next_seq = 0

    @rule(n=st.integers(1, 12))
    def push(self, n: int) -> None:
        seqs = range(self.next_seq, self.next_seq + n)
        took = self.ring.push(dp.pack_descriptors(seqs, payload_len=8), payloads_of(seqs), 8)
        assert took == min(n, 8 - len(self.model))
        self.model.extend(seqs[:took])
        self.next_seq += took

    @rule(n=st.integers(1, 12))
    def pop(self, n: int) -> None:
        descs, pay = self.ring.pop(n, 8)
        want = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert dp.descriptor_seqs(descs) == want
        assert pay == array("Q", want).tobytes()

    @invariant()
    def used_matches(self) -> None:
        assert self.ring.used() == len(self.model)

    def teardown(self) -> None:
        self.ring.close()


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)


# --------------------------------------------------------------------------- across a fork


def _fork(child: object) -> int:
    """Run `child()` in a forked process that never returns into pytest."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child()  # type: ignore[operator]
            code = 0
        finally:
            os._exit(code)
    return pid


def _reap(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish in {timeout_s} s")


def test_millions_of_descriptors_across_a_fork() -> None:
    """Producer child, consumer parent: 2M descriptors + payloads in random batches."""
    total = 2_000_000
    ring = dp.ShmRing(1024, 64)
    deadline_s = 60.0

    def produce() -> None:
        rng = random.Random(1)
        seq = 0
        end = time.monotonic() + deadline_s
        while seq < total and time.monotonic() < end:
            n = min(rng.randint(1, 300), total - seq)
            seqs = range(seq, seq + n)
            took = ring.push(dp.pack_descriptors(seqs, payload_len=8), payloads_of(seqs), 8)
            seq += took
            if took < n:
                os.sched_yield()  # full: let the consumer run
        if seq != total:
            raise SystemExit(1)

    try:
        pid = _fork(produce)
        expected = 0
        batches = 0
        end = time.monotonic() + deadline_s
        while expected < total and time.monotonic() < end:
            descs, pay = ring.pop(512, 8)
            if not descs:
                ring.wait(0.05)
                continue
            seqs = dp.descriptor_seqs(descs)
            want = range(expected, expected + len(seqs))
            assert seqs == list(want), f"order broken near {expected}"
            assert pay == payloads_of(want), f"payload mixed up near {expected}"
            expected += len(seqs)
            batches += 1
        assert _reap(pid, 10.0) == 0
        assert expected == total
        assert ring.counts() == (total, total)
        assert batches < total  # handed over in batches, not one by one
    finally:
        ring.close()


def test_a_sleeping_consumer_is_woken_by_a_publish() -> None:
    ring = dp.ShmRing(16, 64)
    try:
        t0 = time.monotonic()
        assert ring.wait(0.05) == 0  # empty: waits out the timeout
        assert 0.04 <= time.monotonic() - t0 < 1.0

        def produce_late() -> None:
            time.sleep(0.1)
            ring.push(dp.pack_descriptors([42]))

        pid = _fork(produce_late)
        t0 = time.monotonic()
        got = ring.wait(10.0)
        waited = time.monotonic() - t0
        assert _reap(pid, 10.0) == 0
        assert got == 1
        assert waited < 5.0  # woken by the publish, not by the 10 s timeout
        descs, _ = ring.pop(1)
        assert dp.descriptor_seqs(descs) == [42]
    finally:
        ring.close()
