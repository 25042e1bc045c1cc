"""Chat UTF-8 is checked on the reassembled message (PROTOCOL.md §CHAT, §Field rules).

A fragment boundary may split a character, so a valid message split that way is delivered;
a message that is not UTF-8 once whole is dropped as `bad_payload` and never delivered.
"""

from __future__ import annotations

from collections import Counter

import pytest

from l2fast.node import node as node_module
from l2fast.node.chat import CHAT_HEADER, ChatInbox, fragment
from l2fast.node.events import ChatDelivered, ChatFailed, ChatReceived
from l2fast.wire.constants import DEFAULT_CHAT_CAP, HDR_LEN
from tests.node_harness import pair

MTU = 1500
#: Message bytes one CHAT fragment carries at this MTU.
ROOM = MTU - HDR_LEN - CHAT_HEADER


def split_at_room(head: bytes) -> bytes:
    """`ROOM - 1` ASCII bytes then `head`, so `head`'s first byte ends the first fragment."""
    return b"a" * (ROOM - 1) + head


def fragments_of(data: bytes) -> list[bytes]:
    return [body.data for body, _ in fragment(1, data, False, MTU)]


def test_the_test_messages_really_split_a_character() -> None:
    valid = split_at_room("é😀 done".encode())
    first, second = fragments_of(valid)
    for piece in (first, second):
        with pytest.raises(UnicodeDecodeError):
            piece.decode("utf-8")
    assert valid.decode("utf-8")


def test_inbox_delivers_a_split_character_and_drops_invalid_utf8() -> None:
    drops: Counter[str] = Counter()
    inbox = ChatInbox(DEFAULT_CHAT_CAP, drops)
    good = split_at_room("é tail".encode())
    bad = split_at_room(b"\xc3(")  # a lead byte, then no continuation byte
    for msg_id, data in ((1, good), (2, bad), (3, good)):
        pieces = fragment(msg_id, data, False, MTU)
        results = [inbox.receive(body, flags) for body, flags in pieces]
        assert results[:-1] == [None] * (len(pieces) - 1)
        if data is bad:
            assert results[-1] is None
        else:
            assert results[-1] is not None and results[-1].data == data
    assert drops == Counter({"bad_payload": 1})


def test_valid_message_with_a_character_across_fragments_is_delivered() -> None:
    lan, a, b = pair(wire=True)
    text = (b"a" * (ROOM - 2)).decode() + "😀 and é"  # the emoji spans the boundary
    msg_id = a.send_chat(b.mac, text, lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=2)
    (got,) = lan.of(b, ChatReceived)
    assert got.msg_id == msg_id and got.text.decode("utf-8") == text
    assert b.drops["bad_payload"] == 0


def test_invalid_utf8_is_dropped_counted_once_and_not_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sender that skips the UTF-8 check (ours refuses such text in `to_bytes`).
    def unchecked(text: str | bytes, cap: int) -> bytes:
        return text.encode() if isinstance(text, str) else bytes(text)

    monkeypatch.setattr(node_module, "to_bytes", unchecked)
    lan, a, b = pair(wire=True)
    lan.run_for(0.01)
    before = b.drops["bad_payload"]
    bad = a.send_chat(b.mac, split_at_room(b"\xa9\x80 stray continuation bytes"), lan.now)
    after = a.send_chat(b.mac, "still talking", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered, 2), timeout=5)
    assert b.drops["bad_payload"] == before + 1
    # Not delivered; the message after it on the same session is.
    assert [(m.msg_id, m.text) for m in lan.of(b, ChatReceived)] == [(after, b"still talking")]
    # Its fragments were acknowledged as they arrived (PROTOCOL.md §CHAT): the sender does not
    # retransmit them, and the session goes on.
    assert lan.of(a, ChatDelivered) == [ChatDelivered(bad, b.mac), ChatDelivered(after, b.mac)]
    assert lan.of(a, ChatFailed) == []
    lan.run_for(1.0)
    assert b.drops["bad_payload"] == before + 1
    assert len(lan.of(b, ChatReceived)) == 1
