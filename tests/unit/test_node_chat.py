"""Chat: fragmenting, reassembly, exactly-once in-order delivery under faults, --all, caps."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from l2fast.errors import LocalProtocolError
from l2fast.node.chat import CHAT_HEADER, ChatInbox, fragment, to_bytes
from l2fast.node.config import NodeConfig
from l2fast.node.events import ChatDelivered, ChatFailed, ChatReceived, SessionFailed
from l2fast.wire.constants import DEFAULT_CHAT_CAP, HDR_LEN, Caps, ErrorCode, Flags, FrameType
from l2fast.wire.frames import Chat
from tests.node_harness import Lan, pair, triple

FAULTS = {"loss": 0.05, "dup": 0.05, "reorder": 0.05}


def text_of(size: int, seed: int) -> str:
    """`size` bytes of UTF-8 with multi-byte characters, so fragments split characters."""
    rng = random.Random(seed)
    alphabet = "abcdefghij klmnö€😀\n"
    out, n = [], 0
    while n < size:
        ch = rng.choice(alphabet)
        if n + len(ch.encode()) > size:
            ch = "x"
        out.append(ch)
        n += len(ch.encode())
    return "".join(out)


# --- fragmenting and reassembly, directly ---------------------------------------------------


@pytest.mark.parametrize("size", [1, 1462, 1463, 1464, 100 * 1024])
def test_fragments_fit_the_mtu_and_rebuild_the_message(size: int) -> None:
    data = text_of(size, size).encode()  # the inbox delivers only UTF-8 (PROTOCOL.md §CHAT)
    pieces = fragment(9, data, True, 1500)
    assert all(HDR_LEN + CHAT_HEADER + len(body.data) <= 1500 for body, _ in pieces)
    assert b"".join(body.data for body, _ in pieces) == data
    assert [flags for _, flags in pieces] == [0] * (len(pieces) - 1) + [int(Flags.LAST)]
    assert all(b.total_len == size and b.msg_id == 9 and b.to_all for b, _ in pieces)
    inbox = ChatInbox(DEFAULT_CHAT_CAP, Counter())
    results = [inbox.receive(body, flags) for body, flags in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] is not None and results[-1].data == data and results[-1].to_all


def test_to_bytes_refuses_empty_oversized_and_non_utf8() -> None:
    assert to_bytes("é", 10) == "é".encode()
    with pytest.raises(LocalProtocolError):
        to_bytes("", 10)
    with pytest.raises(LocalProtocolError) as info:
        to_bytes("x" * 11, 10)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(LocalProtocolError):
        to_bytes(b"\xff\xfe", 10)


def chat(msg_id: int, total: int, offset: int, data: bytes) -> Chat:
    return Chat(msg_id=msg_id, total_len=total, frag_offset=offset, to_all=False, data=data)


def test_inbox_drops_fragments_that_do_not_continue_the_message() -> None:
    drops: Counter[str] = Counter()
    inbox = ChatInbox(100, drops)
    assert inbox.receive(chat(1, 6, 0, b"abc"), 0) is None
    assert inbox.receive(chat(1, 6, 4, b"ef"), int(Flags.LAST)) is None  # a gap: dropped
    assert drops["bad_chat"] == 1
    assert inbox.receive(chat(2, 4, 2, b"zz"), int(Flags.LAST)) is None  # starts mid-message
    assert inbox.receive(chat(3, 4, 0, b"ab"), int(Flags.LAST)) is None  # LAST too early
    assert inbox.receive(chat(4, 0, 0, b""), int(Flags.LAST)) is None  # empty message
    assert drops["bad_chat"] == 4
    # Still works afterwards.
    msg = inbox.receive(chat(5, 2, 0, b"ok"), int(Flags.LAST))
    assert msg is not None and msg.data == b"ok"


def test_outbox_reports_delivery_in_sending_order() -> None:
    # Frames of message 2 acknowledged before the last of message 1: both are reported only
    # once message 1 is complete, message 1 first (the peer hands them over in that order).
    lan, a, b = pair()
    assert lan.run(lambda: bool(a.peers()), timeout=2)
    first = a.send_chat(b.mac, "x" * 4000, lan.now)  # three fragments at MTU 1500
    second = a.send_chat(b.mac, "y", lan.now)
    lan.drop(FrameType.CHAT, nth=3, src=a)  # the last fragment of the first message
    assert lan.run(lambda: lan.has(a, ChatDelivered, 2), timeout=5)
    assert [d.msg_id for d in lan.of(a, ChatDelivered)] == [first, second]
    assert [m.msg_id for m in lan.of(b, ChatReceived)] == [first, second]


def test_inbox_refuses_a_message_over_its_cap_once() -> None:
    drops: Counter[str] = Counter()
    inbox = ChatInbox(10, drops)
    pieces = fragment(1, b"y" * 30, False, HDR_LEN + CHAT_HEADER + 8)
    assert [inbox.receive(b, f) for b, f in pieces] == [None] * len(pieces)
    assert drops == Counter({"chat_too_large": 1})
    msg = inbox.receive(chat(2, 3, 0, b"fit"), int(Flags.LAST))
    assert msg is not None and msg.data == b"fit"


# --- through the engines ------------------------------------------------------------------------


def test_short_message_round_trip_with_sender_name() -> None:
    lan, a, b = pair(wire=True)
    lan.run_for(0.01)  # discovery first, so b knows a's name
    msg_id = a.send_chat(b.mac, "héllo \x1b[31m", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=2)
    (got,) = lan.of(b, ChatReceived)
    assert (got.peer, got.name, got.msg_id) == (a.mac, "alpha", msg_id)
    assert got.text == "héllo \x1b[31m".encode() and not got.to_all
    assert lan.of(a, ChatDelivered) == [ChatDelivered(msg_id, b.mac)]


@pytest.mark.parametrize("seed", range(8))
def test_100_kib_exactly_once_under_faults(seed: int) -> None:
    lan, a, b = pair(seed, wire=seed == 0, **FAULTS)
    text = text_of(100 * 1024, seed)
    a.send_chat(b.mac, text, lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=30)
    lan.run_for(1.0)  # late duplicates must not deliver it again
    (got,) = lan.of(b, ChatReceived)
    assert got.text.decode() == text
    assert lan.lost[FrameType.CHAT] > 0  # the faults really hit it


@pytest.mark.parametrize("seed", range(3))
def test_1_mib_exactly_once_under_faults(seed: int) -> None:
    lan, a, b = pair(seed, **FAULTS)
    text = text_of(DEFAULT_CHAT_CAP, seed)
    assert len(text.encode()) == DEFAULT_CHAT_CAP
    a.send_chat(b.mac, text, lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=60)
    lan.run_for(1.0)
    (got,) = lan.of(b, ChatReceived)
    assert got.text.decode() == text


@pytest.mark.parametrize("seed", range(5))
def test_many_messages_both_ways_in_order_exactly_once(seed: int) -> None:
    lan, a, b = pair(seed, **FAULTS)
    rng = random.Random(seed)
    sent_a = [text_of(rng.choice([1, 50, 3000, 20000]), seed * 100 + i) for i in range(30)]
    sent_b = [text_of(rng.choice([1, 700, 5000]), seed * 100 + 50 + i) for i in range(30)]
    for ta, tb in zip(sent_a, sent_b, strict=True):
        a.send_chat(b.mac, ta, lan.now)
        b.send_chat(a.mac, tb, lan.now)
        lan.run_for(rng.choice([0.0, 0.0001, 0.01]))
    done = lambda: lan.has(a, ChatDelivered, 30) and lan.has(b, ChatDelivered, 30)  # noqa: E731
    assert lan.run(done, timeout=60)
    lan.run_for(1.0)
    assert [m.text.decode() for m in lan.of(b, ChatReceived)] == sent_a
    assert [m.text.decode() for m in lan.of(a, ChatReceived)] == sent_b
    assert sorted(d.msg_id for d in lan.of(a, ChatDelivered)) == list(range(1, 31))


def test_chat_all_reaches_every_peer_once() -> None:
    lan, a, b, c = triple(seed=4, **FAULTS)
    assert lan.run(lambda: len(a.peers()) == 2, timeout=5)
    msg_id, peers = a.send_chat_all("to everyone", lan.now)
    assert set(peers) == {b.mac, c.mac}
    assert lan.run(lambda: lan.has(a, ChatDelivered, 2), timeout=10)
    lan.run_for(1.0)
    assert {(d.msg_id, d.peer) for d in lan.of(a, ChatDelivered)} == {
        (msg_id, b.mac),
        (msg_id, c.mac),
    }
    for node in (b, c):
        (got,) = lan.of(node, ChatReceived)
        assert got.text == b"to everyone" and got.to_all and got.msg_id == msg_id


def test_chat_all_skips_peers_without_chat() -> None:
    lan = Lan()
    a = lan.add()
    b = lan.add()
    lan.add("sensor", caps=int(Caps.FILE))
    assert lan.run(lambda: len(a.peers()) == 2, timeout=2)
    _, peers = a.send_chat_all("hi all", lan.now)
    assert peers == (b.mac,)


def test_chat_all_without_peers_sends_nothing() -> None:
    lan = Lan()
    a = lan.add()
    _, peers = a.send_chat_all("anyone?", lan.now)
    assert peers == ()
    lan.run_for(1.0)
    assert a.sessions() == [] and lan.sent[FrameType.SYN] == 0


def test_message_over_the_cap_is_refused_by_the_sender() -> None:
    lan, a, b = pair()
    with pytest.raises(LocalProtocolError) as info:
        a.send_chat(b.mac, "x" * (DEFAULT_CHAT_CAP + 1), lan.now)
    assert info.value.code == ErrorCode.TOO_LARGE
    assert a.sessions() == []


def test_receiver_with_a_smaller_cap_refuses_and_the_sender_fails() -> None:
    lan = Lan()
    a = lan.add()
    b = lan.add(config=NodeConfig(chat_cap=1000))
    big = a.send_chat(b.mac, "x" * 5000, lan.now)
    queued = a.send_chat(b.mac, "small", lan.now)  # behind the refused one on that session
    assert lan.run(lambda: lan.has(a, ChatFailed, 2), timeout=5)
    assert lan.of(a, ChatDelivered) == []
    failed = {f.msg_id: f.error for f in lan.of(a, ChatFailed)}
    assert set(failed) == {big, queued}
    assert all(e.code == ErrorCode.TOO_LARGE for e in failed.values())
    assert "accepts at most 1000" in failed[big].message
    assert lan.of(b, ChatReceived) == []
    assert b.drops["chat_too_large"] == 1
    # The refusal ended only that session: the next message opens a new one and arrives.
    again = a.send_chat(b.mac, "small again", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=5)
    assert lan.of(a, ChatDelivered) == [ChatDelivered(again, b.mac)]
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"small again"]


@pytest.mark.parametrize("seed", range(12))
def test_refusal_under_faults_never_reports_a_refused_message_delivered(seed: int) -> None:
    # Whatever is lost, duplicated or reordered (the ERROR too), the sender's view matches the
    # receiver's: delivered means received; the oversized message is never delivered.
    lan = Lan(seed=seed, **FAULTS)  # type: ignore[arg-type]
    a = lan.add()
    b = lan.add(config=NodeConfig(chat_cap=3000))
    sizes = [10, 2000, 9000, 10, 1500]
    ids = [a.send_chat(b.mac, text_of(n, seed + n), lan.now) for n in sizes]
    settled = lambda: len(lan.of(a, ChatDelivered)) + len(lan.of(a, ChatFailed)) == 5  # noqa: E731
    assert lan.run(settled, timeout=30)
    lan.run_for(2.0)
    delivered = [d.msg_id for d in lan.of(a, ChatDelivered)]
    failed = [f.msg_id for f in lan.of(a, ChatFailed)]
    received = [m.msg_id for m in lan.of(b, ChatReceived)]
    assert ids[2] in failed and ids[2] not in received
    assert not set(delivered) & set(failed)
    assert set(delivered) <= set(received) <= set(ids[:2])
    assert b.drops["chat_too_large"] == 1


def test_chat_to_an_absent_peer_fails_in_bounded_time() -> None:
    lan, a, _ = pair()
    ghost = b"\x02\x00\x00\x00\x00\x42"
    msg_id = a.send_chat(ghost, "hello?", lan.now)
    assert lan.run(lambda: lan.has(a, ChatFailed), timeout=30)
    (failed,) = lan.of(a, ChatFailed)
    assert (failed.msg_id, failed.peer) == (msg_id, ghost)
    assert failed.error.code == ErrorCode.TIMEOUT
    assert lan.now <= 6.0


def test_chat_in_flight_when_peer_dies_fails() -> None:
    lan, a, b = pair()
    a.send_chat(b.mac, "first", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=2)
    lan.unplug(b)
    msg_id = a.send_chat(b.mac, "second", lan.now)
    assert lan.run(lambda: lan.has(a, ChatFailed), timeout=20)
    assert [f.msg_id for f in lan.of(a, ChatFailed)] == [msg_id]
    assert lan.has(a, SessionFailed)
    # A new message after the failure opens a new session attempt rather than using the dead one.
    a.send_chat(b.mac, "third", lan.now)
    assert len(a.sessions()) == 1 and a.sessions()[0].peer == b.mac
