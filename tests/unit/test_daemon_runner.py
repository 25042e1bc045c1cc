"""NodeRunner, the I/O adapter: frames through a fake raw socket, drops by reason, events."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from l2fast import native
from l2fast.daemon.runner import NodeRunner
from l2fast.errors import InterfaceDown, NativeError, is_link_down
from l2fast.node.events import ChatDelivered, ChatReceived, Event, PeerDiscovered
from l2fast.node.node import NodeEngine
from l2fast.wire.constants import DEFAULT_ETHERTYPE, FrameType
from l2fast.wire.frames import Chat, Hello, encode_payload
from tests.fake_wire import FakeHub, FakeSocket
from tests.service_harness import pump


def make_runner(hub: FakeHub, index: int, name: str) -> tuple[NodeRunner, list[Event]]:
    sock = hub.socket(index)
    engine = NodeEngine(sock.mac, name, sock.mtu, rng=random.Random(index))
    runner = NodeRunner(sock, engine)
    events: list[Event] = []
    runner.subscribe(events.append)
    return runner, events


@pytest.fixture
def pair(hub: FakeHub) -> tuple[FakeHub, NodeRunner, list[Event], NodeRunner, list[Event]]:
    a, a_events = make_runner(hub, 1, "alpha")
    b, b_events = make_runner(hub, 2, "bravo")
    a.engine.start(a.now())
    b.engine.start(b.now())
    return hub, a, a_events, b, b_events


def test_discovery_and_chat_cross_the_adapter(
    pair: tuple[FakeHub, NodeRunner, list[Event], NodeRunner, list[Event]],
) -> None:
    _, a, a_events, b, b_events = pair
    assert pump([a, b], lambda: len(a.engine.peers()) == 1 and len(b.engine.peers()) == 1)
    assert any(isinstance(e, PeerDiscovered) and e.peer.name == "bravo" for e in a_events)
    text = "é" * 40_000  # 80 000 bytes: many fragments, each one real frame through the codec
    msg_id = a.engine.send_chat(b.engine.mac, text, a.now())
    assert pump([a, b], lambda: any(isinstance(e, ChatDelivered) for e in a_events))
    (got,) = [e for e in b_events if isinstance(e, ChatReceived)]
    assert got.text.decode() == text and got.msg_id == msg_id and got.name == "alpha"
    assert a.counters["tx_frames"] > 55 and b.counters["rx_frames"] > 55
    assert b.engine.counters["frames_in"] == b.counters["rx_frames"]


def test_hello_is_sent_before_the_first_wait(hub: FakeHub) -> None:
    # The HELLO queued by start() must leave at once, not after the first select timeout.
    a, _ = make_runner(hub, 1, "alpha")
    a.engine.start(a.now())
    sock = a.sock
    assert isinstance(sock, FakeSocket)
    a.step(0.0)
    assert [f[14 + 3] for f in sock.sent] == [FrameType.HELLO]


def frame(dst: bytes, src: bytes, kind: int, payload: bytes, session: int = 0) -> bytes:
    return native.build_frame(dst, src, DEFAULT_ETHERTYPE, kind, 0, session, 1, payload)


def test_bad_frames_are_counted_by_reason_and_never_raise(hub: FakeHub) -> None:
    b, b_events = make_runner(hub, 2, "bravo")
    sock = b.sock
    assert isinstance(sock, FakeSocket)
    dst, src = sock.mac, bytes([2, 0, 0, 0, 0, 9])
    eth = dst + src + struct.pack("!H", DEFAULT_ETHERTYPE)
    chat = Chat(msg_id=1, total_len=2, frag_offset=0, to_all=False, data=b"hi")
    good = frame(dst, src, FrameType.CHAT, encode_payload(chat), session=77)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    bad_length = bytearray(good[:45])
    bad_magic = eth + b"\x00" * 30
    unknown_type = frame(dst, src, 0x77, b"")
    bad_payload = frame(dst, src, FrameType.HELLO, b"\x01\x02")  # far too short for a HELLO
    rng = random.Random(3)
    sent = {
        "bad_crc": [bytes(bad_crc)] * 7,
        "bad_length": [bytes(bad_length)] * 5,
        "short": [eth + b"\x4c"] * 3,
        "bad_magic": [bad_magic] * 4,
        "unknown_type": [unknown_type] * 6,
        "bad_payload": [bad_payload] * 2,
        "unknown_session": [good] * 3,  # well-formed CHAT for a session bravo does not hold
    }
    for frames in sent.values():
        for f in frames:
            sock.inject(f)
    for _ in range(200):  # plus random bytes behind a valid Ethernet header
        sock.inject(eth + rng.randbytes(rng.randrange(0, 120)))
    for _ in range(20):
        b.step(0.0)
    for reason, frames in sent.items():
        assert b.engine.drops[reason] >= len(frames), reason
    assert b.counters["rx_frames"] == sum(map(len, sent.values())) + 200
    assert sum(b.engine.drops.values()) == b.counters["rx_frames"]
    assert b_events == []
    # Still a working node afterwards.
    hello = Hello(node_id=5, ts_ns=1, ver_min=1, ver_max=1, mtu=1500, caps=1, name="x")
    sock.inject(frame(dst, src, FrameType.HELLO, encode_payload(hello)))
    b.step(0.0)
    assert [p.name for p in b.engine.peers()] == ["x"]


def test_backpressure_keeps_frames_and_retries(
    pair: tuple[FakeHub, NodeRunner, list[Event], NodeRunner, list[Event]],
) -> None:
    hub, a, a_events, b, b_events = pair
    hub.accept_per_send = 1  # the kernel takes one frame per call
    a.engine.send_chat(b.engine.mac, "z" * 20_000, a.now())
    assert pump([a, b], lambda: any(isinstance(e, ChatDelivered) for e in a_events))
    assert a.counters["tx_backpressure"] > 0 and a.counters["tx_overflow"] == 0
    assert [e.text for e in b_events if isinstance(e, ChatReceived)] == [b"z" * 20_000]


def test_a_failing_subscriber_does_not_stop_the_loop(
    pair: tuple[FakeHub, NodeRunner, list[Event], NodeRunner, list[Event]],
) -> None:
    _, a, _, b, _ = pair

    def broken(_event: Event) -> None:
        raise RuntimeError("bug in a subscriber")

    a.subscribe(broken)
    assert pump([a, b], lambda: bool(a.engine.peers()))
    assert a.counters["subscriber_errors"] >= 1


def test_timers_run_in_order_and_can_be_cancelled(hub: FakeHub) -> None:
    a, _ = make_runner(hub, 1, "alpha")
    ran: list[str] = []
    a.call_later(0.02, lambda: ran.append("second"))
    a.call_later(0.01, lambda: ran.append("first"))
    a.call_later(0.015, lambda: ran.append("cancelled")).cancel()
    assert a.run_until(lambda: len(ran) == 2, timeout=2)
    assert ran == ["first", "second"]


def test_wall_clock_conversion(hub: FakeHub) -> None:
    sock = hub.socket(1)
    engine = NodeEngine(sock.mac, "a", 1500, rng=random.Random(1))
    runner = NodeRunner(sock, engine, clock=lambda: 100.0, wall_clock=lambda: 1_000_000.0)
    assert runner.wall(99.5) == 999_999.5


def test_a_link_that_goes_down_and_up_does_not_stop_the_node(
    pair: tuple[FakeHub, NodeRunner, list[Event], NodeRunner, list[Event]],
) -> None:
    _, a, a_events, b, _ = pair
    assert pump([a, b], lambda: bool(a.engine.peers()))
    sock = a.sock
    assert isinstance(sock, FakeSocket)
    sock.link_down = True
    msg_id = a.engine.send_chat(b.engine.mac, "sent while the cable is out", a.now())
    for _ in range(5):
        a.step(0.01)  # would raise InterfaceDown out of the loop without the guard
    assert a.counters["sending_errors"] >= 1 and a.counters["tx_dropped"] >= 1
    sock.link_down = False
    # The engine's retransmissions deliver it once the link is back.
    assert pump([a, b], lambda: ChatDelivered(msg_id, b.engine.mac) in a_events)


def test_only_a_link_that_is_down_counts_as_an_outage() -> None:
    # What a sending job rides out (frames lost, sent again later) and what still fails it.
    assert is_link_down(InterfaceDown("eth0"))
    assert is_link_down(NativeError(-errno.ENETDOWN, "Network is down", "sending DATA frames"))
    assert not is_link_down(NativeError(-errno.EMSGSIZE, "Message too long", "sending"))
    assert not is_link_down(NativeError(-errno.ENXIO, "No such device or address", "sending"))
    assert not is_link_down(OSError(errno.ENETDOWN, "Network is down"))


def test_call_soon_runs_once_the_events_of_a_batch_are_dispatched(hub: FakeHub) -> None:
    """Work gathered while a batch's events are dispatched runs once, after all of them and
    before the loop waits (Transfers places a batch's files together this way)."""
    b, _ = make_runner(hub, 2, "bravo")
    sock = b.sock
    assert isinstance(sock, FakeSocket)
    seen: list[str] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, PeerDiscovered):
            if not seen:
                b.call_soon(lambda: seen.append(f"soon after {len(seen)}"))
            seen.append(ev.peer.name)

    b.subscribe(on_event)
    for n in range(3):  # three nodes' HELLOs in one batch of frames
        hello = Hello(node_id=n, ts_ns=1, ver_min=1, ver_max=1, mtu=1500, caps=1, name=f"n{n}")
        src = bytes([2, 0, 0, 0, 9, n])
        sock.inject(frame(b"\xff" * 6, src, FrameType.HELLO, encode_payload(hello)))
    b.step(0.0)
    assert seen == ["n0", "n1", "n2", "soon after 3"]
    assert b._next_wake(b.now(), 5.0) > 0  # nothing left to run at once
    b.call_soon(lambda: seen.append("later"))
    assert b._next_wake(b.now(), 5.0) == 0  # a pending callback does not wait
    b.step(0.0)
    assert seen[-1] == "later"
