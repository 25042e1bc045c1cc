"""Where l2fast puts bulk frames in its own memory (csrc/l2fast_core.h, "Copy alignment" in
docs/ARCHITECTURE.md): the kernel's copy between user memory and a socket buffer runs ~16x
slower at some distances, so the bench payload, the raw blast's frames, receive arenas and
receive rings are placed at fixed offsets.  These tests pin the placements; the speed itself is
measured in bench/movsb_probe.sh and BENCHMARKS.md, not here.
"""

from __future__ import annotations

import mmap

import pytest

from l2fast import native
from l2fast.native import _ffi
from l2fast.native import datapath as dp
from tests.datapath_harness import SESSION, Receiver, data_frame, dgram_pair, send_all


def address(buf: object) -> int:
    return int(_ffi.cast("uintptr_t", _ffi.from_buffer(buf)))


def test_the_placements_keep_byte_14_and_the_payload_on_a_line() -> None:
    # A frame's byte 14 and a payload sent after its 38-byte header (24 bytes after byte 14)
    # both land on a 64-byte line of the fragment pages the kernel copies them into.
    assert (native.FRAME_PHASE + 14) % 64 == 0
    assert (native.PAYLOAD_PAGE_OFFSET - 24) % 64 == 0
    assert native.PAYLOAD_PAGE_OFFSET != 24  # 24 itself meets MTU 1500's skb heads 30 bytes off


@pytest.mark.parametrize("offset", [0, 88, 4095])
def test_placed_copy_puts_the_bytes_at_that_page_offset(offset: int) -> None:
    data = bytes(range(256)) * 40
    buf, at = native.placed_copy(data, offset)
    assert bytes(buf[at : at + len(data)]) == data
    assert (address(buf) + at) % mmap.PAGESIZE == offset


def test_placed_copy_refuses_an_offset_outside_a_page() -> None:
    for offset in (-1, mmap.PAGESIZE):
        with pytest.raises(ValueError, match="page_offset"):
            native.placed_copy(b"x", offset)


def test_a_bench_payload_is_handed_over_without_a_memoryview() -> None:
    # A memoryview that C code still exported, caught in a reference cycle, crashed the
    # interpreter's last garbage collection as `l2fast bench` exited (SIGSEGV after "memoryview
    # has 13 exported buffers"). The payload goes to TxPath as a bytearray and an offset.
    buf, at = native.placed_copy(b"p" * 9000, native.PAYLOAD_PAGE_OFFSET)
    assert type(buf) is bytearray
    with dgram_pair() as (tx, _):
        path = dp.TxPath(
            tx, 0, dst=b"\x02" * 6, src=b"\x04" * 6, session=SESSION, data=buf,
            data_offset=at, chunk_size=8000, bench=True,
        )  # fmt: skip
        _, _, _, payload, length, *_ = path._sender_args()
        assert int(_ffi.cast("uintptr_t", payload)) % mmap.PAGESIZE == native.PAYLOAD_PAGE_OFFSET
        assert length == len(buf) - at
        with pytest.raises(ValueError, match="data_offset"):
            dp.TxPath(tx, 0, dst=b"\x02" * 6, src=b"\x04" * 6, session=SESSION, data=buf,
                      data_offset=len(buf) + 1, chunk_size=8000, bench=True)  # fmt: skip


@pytest.mark.parametrize("slot_size", [64, 100, 1518, 9018, 65553])
def test_arena_slots_are_whole_lines_starting_at_the_frame_phase(slot_size: int) -> None:
    arena = native.RxArena(5, slot_size)
    assert arena.slot_size % 64 == 0 and slot_size <= arena.slot_size < slot_size + 64
    frame = data_frame(3, b"p" * 20)
    for i in range(5):
        arena.store(i, frame)
        view = arena.frame(i)
        assert view.tobytes() == frame
        assert address(view) % 64 == native.FRAME_PHASE
    assert arena.verify() == 5


def test_an_arena_fits_what_it_was_made_for_after_rounding() -> None:
    # RawSocket.recv_frames keeps its arena while it fits: comparing against the unrounded
    # size allocated (and zeroed) a 4 MiB arena on every FEEDBACK read at MTU 65535.
    arena = native.RxArena(64, 65553)
    assert arena.fits(64, 65553) and arena.fits(8, 65553)
    assert not arena.fits(65, 65553)
    assert not arena.fits(64, 9018)


def test_tx_batch_copies_each_frame_to_the_frame_phase_of_its_own_pages() -> None:
    frames = [data_frame(k, bytes([k]) * (100 + 1000 * k)) for k in range(4)]
    source = [bytearray(f) for f in frames]
    batch = native.TxBatch(source)
    for buf in source:  # the batch holds its own copy
        buf[:] = bytes(len(buf))
    assert (batch.count, batch.largest) == (4, len(frames[-1]))
    for i, frame in enumerate(frames):
        desc = batch._descs[i]
        assert int(_ffi.cast("uintptr_t", desc.hdr)) % mmap.PAGESIZE == native.FRAME_PHASE
        assert _ffi.buffer(desc.hdr, desc.hdr_len)[:] == frame


def test_tx_batch_refuses_what_it_did_before() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        native.TxBatch([])
    with pytest.raises(ValueError, match="shorter than a header"):
        native.TxBatch([b"short"])


def test_ring_receives_each_frame_at_the_frame_phase() -> None:
    chunk = 100
    with dgram_pair() as (tx, rxs):
        r = Receiver(rxs, chunk, 4 * chunk, nrings=1)
        try:
            send_all(tx, [data_frame(k, bytes([k]) * chunk) for k in range(4)])
            r.run()
            descs, payloads = r.rings[0].pop(8, stride=chunk)
            fields = dp.descriptor_fields(descs)
            assert [f[0] for f in fields] == [0, 1, 2, 3]
            # payload_off counts from the slot's start: the frame starts FRAME_PHASE bytes in.
            assert {f[1] for f in fields} == {native.FRAME_PHASE + 38}
            assert payloads == b"".join(bytes([k]) * chunk for k in range(4))
        finally:
            r.close()
