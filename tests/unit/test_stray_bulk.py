"""DATA and FEEDBACK for a session with no transfer: counted as `no_transfer`, never silently
lost; the sessions that carry a transfer, and when the runner re-keys its filter on them."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator

import pytest

from l2fast import native
from l2fast.daemon.runner import NodeRunner
from l2fast.daemon.service import DROP_REASONS
from l2fast.errors import LocalProtocolError
from l2fast.node.events import ControlReceived, SessionOpened
from l2fast.node.node import NodeEngine
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FileKind, FrameType
from l2fast.wire.frames import FileAccept, FileOffer
from tests.fake_wire import FakeHub
from tests.node_harness import pair


def offer(transfer_id: int = 1) -> FileOffer:
    return FileOffer(
        transfer_id=transfer_id,
        kind=int(FileKind.FILE),
        digest=1,
        size=10,
        mode=0o644,
        mtime_ns=0,
        first_chunk=0,
        chunk_size=10,
        path="a.txt",
    )


def test_a_session_carries_a_transfer_from_its_first_file_frame_until_it_is_forgotten() -> None:
    lan, a, b = pair()
    sid = a.open_session(b.mac, lan.now)
    assert lan.run(lambda: lan.has(a, SessionOpened) and lan.has(b, SessionOpened), timeout=5)
    # An open session without FILE_* traffic (a chat session) carries no transfer.
    assert a.bulk_sessions() == b.bulk_sessions() == frozenset()
    versions = (a.bulk_version, b.bulk_version)
    a.send_control(b.mac, sid, offer(), lan.now)
    assert a.bulk_sessions() == {sid} and a.bulk_version != versions[0]
    assert lan.run(lambda: lan.has(b, ControlReceived), timeout=5)
    assert b.bulk_sessions() == {sid} and b.bulk_version != versions[1]
    before = a.bulk_version
    b.send_control(a.mac, sid, FileAccept(transfer_id=1), lan.now)
    lan.run_for(0.5)
    assert a.bulk_version == before  # already listed: no change, no filter rebuild
    assert a.close_session(b.mac, sid, lan.now)
    assert lan.run(lambda: not a.bulk_sessions() and not b.bulk_sessions(), timeout=10)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    segment = FakeHub()
    yield segment
    segment.close()


def bulk_frame(dst: bytes, src: bytes, kind: FrameType, session: int, payload: bytes) -> bytes:
    return native.build_frame(dst, src, DEFAULT_ETHERTYPE, kind, 0, session, 1, payload)


def test_stray_data_and_feedback_are_counted_without_decoding(hub: FakeHub) -> None:
    sock, stranger = hub.socket(2), hub.socket(9)
    engine = NodeEngine(sock.mac, "bravo", sock.mtu, rng=random.Random(1))
    runner = NodeRunner(sock, engine)
    frames = [bulk_frame(sock.mac, stranger.mac, FrameType.DATA, 77, bytes(100))] * 40
    # Payloads no decoder would accept: counted as strays all the same, not as bad_payload.
    frames += [bulk_frame(sock.mac, stranger.mac, FrameType.FEEDBACK, 78, b"\x01")] * 30
    broken = bytearray(frames[0])
    broken[-1] ^= 1  # a bad CRC is still a bad CRC
    for frame in [*frames, bytes(broken)]:
        sock.inject(frame)
    for _ in range(10):
        runner.step(0.0)
    assert engine.drops["no_transfer"] == 70
    assert engine.drops["bad_crc"] == 1
    assert engine.drops["bad_payload"] == engine.drops["unknown_session"] == 0
    assert engine.counters["frames_in"] == 0  # never handed to the engine
    assert "no_transfer" in DROP_REASONS  # `l2fast status` shows it, even at zero
    runner.close()


def test_the_filter_is_keyed_on_a_session_before_its_offer_leaves(hub: FakeHub) -> None:
    a_sock, b_sock = hub.socket(1), hub.socket(2)
    a = NodeRunner(a_sock, NodeEngine(a_sock.mac, "alpha", 1500, rng=random.Random(1)))
    b = NodeRunner(b_sock, NodeEngine(b_sock.mac, "bravo", 1500, rng=random.Random(2)))
    keyed: list[tuple[frozenset[int], int]] = []  # (sessions, frames sent by then)
    a.on_bulk_sessions = lambda ids: keyed.append((ids, len(a_sock.sent)))
    a.flush()
    assert keyed == [(frozenset(), len(a_sock.sent))]  # installed on the first turn
    sid = a.engine.open_session(b_sock.mac, a.now())
    for _ in range(200):
        if any(s.state.name == "OPEN" for s in a.engine.sessions()):
            break
        a.step(0.001)
        b.step(0.0)
    sent_before_offer = len(a_sock.sent)
    a.engine.send_control(b_sock.mac, sid, offer(), a.now())
    a.flush()
    assert keyed[-1] == (frozenset({sid}), sent_before_offer)
    offers = [native.parse_frame(f) for f in a_sock.sent[sent_before_offer:]]
    assert [f.type for f in offers] == [FrameType.FILE_OFFER]
    a.close()
    b.close()


def test_control_filter_bounds_are_checked_before_the_kernel() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        # Any socket takes a classic-BPF program (no root needed); the wrapper owns a copy.
        sock = native.RawSocket(os.dup(udp.fileno()), "lo", 1, bytes(6), 1500, DEFAULT_ETHERTYPE)
    with sock:
        sock.set_control_filter({1, 2, 0xFFFFFFFF})
        sock.set_control_filter(set(range(native.MAX_FILTER_SESSIONS)))
        with pytest.raises(ValueError, match="exceed"):
            sock.set_control_filter(set(range(native.MAX_FILTER_SESSIONS + 1)))
        with pytest.raises(LocalProtocolError):
            sock.set_control_filter({1 << 32})
