"""Payload and frame codec (l2fast.wire.frames) against PROTOCOL.md §Frame types and §Limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2fast.errors import LocalProtocolError, MalformedPayload, RemoteProtocolError
from l2fast.wire.constants import (
    DEFAULT_ETHERTYPE,
    MAX_CHAT_BYTES,
    MAX_PAYLOAD,
    FrameType,
    Verdict,
)
from l2fast.wire.crc32c_ref import crc32c
from l2fast.wire.frames import (
    BODY_CLASSES,
    Ack,
    BadFrame,
    Body,
    Chat,
    Close,
    CtrlAck,
    Data,
    Error,
    Feedback,
    FileAccept,
    FileEnd,
    FileHeld,
    FileInline,
    FileOffer,
    FileReject,
    FileResult,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Ping,
    Pong,
    Probe,
    ProbeAck,
    Syn,
    SynAck,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
)
from l2fast.wire.header import build_frame
from l2fast.wire.payload_layout import framing_bytes
from tests.strategies import BODY_STRATEGIES, frames

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")

# Layouts whose last field is "rest" (or filler): bytes after the fixed part belong to the body.
REST_LAYOUTS = {Data, Chat, Ping, Pong, Probe, FileInline}

# ---- byte-exact vectors, written field by field from the tables in PROTOCOL.md ----

VECTORS: list[tuple[Body, str]] = [
    (
        Hello(0x0102030405060708, 0x1122334455667788, 1, 1, 1500, 0x3, "ab"),
        "0102030405060708 1122334455667788 01 01 000005dc 00000003 02 6162",
    ),
    (
        HelloAck(0x0102030405060708, 0x99, 1, 2, 65535, 0x10, "é"),
        "0102030405060708 0000000000000099 01 02 0000ffff 00000010 02 c3a9",
    ),
    (
        Syn(0xA, 1, 1, 9000, 0x100, 0x1, 0x3),
        "000000000000000a 01 01 00002328 00000100 00000001 03",
    ),
    (
        SynAck(0xA, 1, 1, 1280, 0x100, 0x1, 0x2),
        "000000000000000a 01 01 00000500 00000100 00000001 02",
    ),
    (Ack(1500), "000005dc"),
    (Probe(1500, filler_len=2), "000005dc 0000"),
    (ProbeAck(1500), "000005dc"),
    (CtrlAck(5, 0b101), "0000000000000005 0000000000000005"),
    (Keepalive(), ""),
    (Close(0, ""), "0000 0000"),
    (Close(10, "idle"), "000a 0004 69646c65"),
    (Data(b"xyz"), "78797a"),
    (
        Feedback(10, 1000, 20, 3, ((12, 15), (17, 20))),
        "000000000000000a 00000000000003e8 0000000000000014 00000003 0002"
        " 000000000000000c 000000000000000f 0000000000000011 0000000000000014",
    ),
    (Chat(1, 5, 0, True, b"hello"), "00000001 00000005 00000000 01 68656c6c6f"),
    (Chat(2, 9, 4, False, b"\xc3"), "00000002 00000009 00000004 00 c3"),
    (Ping(7, 256, b"ab"), "00000007 0000000000000100 6162"),
    (Pong(7, 256, b"ab"), "00000007 0000000000000100 6162"),
    (
        FileOffer(7, 0, 1, 100_000, 0o644, -1, 0, 1400, "dir/f.txt"),
        "00000007 00 01 00000000000186a0 000001a4 ffffffffffffffff 0000000000000000 00000578"
        " 0009 6469722f662e747874",
    ),
    (FileAccept(7, ((0, 4),)), "00000007 0001 0000000000000000 0000000000000004"),
    (FileAccept(8), "00000008 0000"),
    (FileReject(7, 3, "no"), "00000007 0003 0002 6e6f"),
    (FileEnd(7, 2, b"\x01\x02\x03"), "00000007 02 03 010203"),
    (
        FileResult(7, 0, 4096, b"\xaa\xbb", "f.txt"),
        "00000007 0000 0000000000001000 02 aabb 0005 662e747874",
    ),
    # §FILE_HELD: transfer_id 7, pending_id 3, text "ask".
    (FileHeld(7, 3, "ask"), "00000007 00000003 0003 61736b"),
    (FileHeld(0xFFFF_FFFF, 0), "ffffffff 00000000 0000"),
    # §FILE_INLINE: FILE_OFFER's fields, then the digest (bytes8) and every byte of the file.
    (
        FileInline(7, 0, 1, 3, 0o644, 5, 9, 1400, "f", b"\xaa\xbb", b"abc"),
        "00000007 00 01 0000000000000003 000001a4 0000000000000005 0000000000000009 00000578"
        " 0001 66 02 aabb 616263",
    ),
    (
        FileInline(1, 0, 2, 0, 0, 0, 0, 0, "e", b"\x01", b""),  # an empty file
        "00000001 00 02 0000000000000000 00000000 0000000000000000 0000000000000000 00000000"
        " 0001 65 01 01",
    ),
    (Error(1, "v2?"), "0001 0003 76323f"),
]


def test_every_frame_type_has_a_payload_class_and_a_vector() -> None:
    assert set(BODY_CLASSES) == {int(t) for t in FrameType}
    for frame_type, cls in BODY_CLASSES.items():
        assert cls.frame_type == frame_type
    assert {type(body) for body, _ in VECTORS} == set(BODY_CLASSES.values())


@pytest.mark.parametrize(("body", "hex_payload"), VECTORS, ids=lambda v: type(v).__name__)
def test_vector_encodes_byte_exact(body: Body, hex_payload: str) -> None:
    assert encode_payload(body) == bytes.fromhex(hex_payload)


@pytest.mark.parametrize(("body", "hex_payload"), VECTORS, ids=lambda v: type(v).__name__)
def test_vector_decodes(body: Body, hex_payload: str) -> None:
    assert decode_payload(body.frame_type, bytes.fromhex(hex_payload)) == body


def test_whole_frame_vector() -> None:
    # ERROR `busy` to a peer, session 9: Ethernet, header (§Header), payload (§ERROR).
    frame = Frame(dst=MAC_B, src=MAC_A, session=9, seq=0, body=Error(2, "x"))
    payload = bytes.fromhex("0002 0001 78")
    header = bytes.fromhex(
        "020000000002 020000000001 88b5 4c32 01 7f 0000 0005 00000009 0000000000000000"
    )
    crc = crc32c(payload, crc32c(header[14:]))
    assert encode_frame(frame) == header + struct.pack(">I", crc) + payload
    assert frame.type == FrameType.ERROR


# ---- round trips ----


@pytest.mark.parametrize("cls", list(BODY_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_payload_round_trips(cls: type[Body], data: st.DataObject) -> None:
    body = data.draw(BODY_STRATEGIES[cls])
    payload = encode_payload(body)
    assert len(payload) <= MAX_PAYLOAD
    assert decode_payload(cls.frame_type, payload) == body
    assert decode_payload(int(cls.frame_type), memoryview(bytearray(payload))) == body


@pytest.mark.parametrize(
    "cls", [c for c in BODY_STRATEGIES if hasattr(c, "LAYOUT")], ids=lambda c: c.__name__
)
@given(data=st.data())
def test_framing_bytes_and_the_variable_contents_make_the_payload(
    cls: type[Body], data: st.DataObject
) -> None:
    # What a sender computes to know whether strings and data fit a frame (FILE_INLINE).
    body = data.draw(BODY_STRATEGIES[cls])
    contents = 0
    for field in cls.LAYOUT:  # type: ignore[attr-defined]
        value = getattr(body, field.name)
        if field.kind in ("str8", "str16"):
            contents += len(value.encode("utf-8", "surrogateescape"))
        elif field.kind in ("bytes8", "rest"):
            contents += len(value)
        elif field.kind == "ranges":
            contents += 16 * len(value)
    assert len(encode_payload(body)) == framing_bytes(cls.LAYOUT) + contents  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "cls", [c for c in BODY_STRATEGIES if c not in REST_LAYOUTS], ids=lambda c: c.__name__
)
@given(data=st.data())
def test_bytes_after_the_last_field_are_ignored(cls: type[Body], data: st.DataObject) -> None:
    body = data.draw(BODY_STRATEGIES[cls])
    trailing = data.draw(st.binary(min_size=1, max_size=40))
    assert decode_payload(cls.frame_type, encode_payload(body) + trailing) == body


@given(frame=frames(), padding=st.binary(max_size=30))
def test_frame_round_trips(frame: Frame, padding: bytes) -> None:
    raw = encode_frame(frame)
    assert decode_frame(raw + padding) == frame


def test_frame_round_trips_with_other_ethertype() -> None:
    frame = Frame(MAC_A, MAC_B, 1, 2, Keepalive())
    raw = encode_frame(frame, ethertype=0x88B6)
    assert decode_frame(raw, ethertype=0x88B6) == frame
    with pytest.raises(BadFrame) as caught:
        decode_frame(raw)
    assert caught.value.verdict == Verdict.ETHERTYPE


def test_largest_data_payload() -> None:
    body = Data(bytes(MAX_PAYLOAD))
    assert decode_payload(FrameType.DATA, encode_payload(body)) == body


def test_pong_echoes_ping_payload_byte_for_byte() -> None:
    ping = Ping(ident=3, ts_ns=123456789, filler=b"\x00\xffabc")
    assert encode_payload(Pong.echo(ping)) == encode_payload(ping)


def test_probe_filler_content_is_ignored() -> None:
    payload = bytes.fromhex("000005dc") + b"\x99" * 10
    assert decode_payload(FrameType.PROBE, payload) == Probe(size=1500, filler_len=10)


# ---- decode_frame errors ----


def test_decode_frame_raises_bad_frame_with_verdict() -> None:
    raw = bytearray(encode_frame(Frame(MAC_A, MAC_B, 1, 2, Ack(1500))))
    raw[-1] ^= 0x01
    with pytest.raises(BadFrame) as caught:
        decode_frame(raw)
    assert caught.value.verdict == Verdict.BAD_CRC
    assert isinstance(caught.value, RemoteProtocolError)
    assert "bad_crc" in str(caught.value)


def test_decode_frame_short() -> None:
    with pytest.raises(BadFrame) as caught:
        decode_frame(b"\x00" * 20)
    assert caught.value.verdict == Verdict.SHORT


def test_decode_frame_raises_malformed_for_bad_payload() -> None:
    # A valid header and CRC around an ACK payload that is too short for `u32 mtu`.
    raw = build_frame(MAC_A, MAC_B, DEFAULT_ETHERTYPE, FrameType.ACK, 0, 1, 0, b"\x00\x05")
    with pytest.raises(MalformedPayload):
        decode_frame(raw)


# ---- malformed payloads ----

# One sample per class whose encoding has no "rest" bytes, so every strict prefix must fail.
_NO_REST_SAMPLES: list[Body] = [
    Hello(1, 2, 1, 1, 1500, 0, "n"),
    HelloAck(1, 2, 1, 1, 1500, 0, "n"),
    Syn(1, 1, 1, 1500, 64, 0, 1),
    SynAck(1, 1, 1, 1500, 64, 0, 1),
    Ack(1500),
    Probe(1500),
    ProbeAck(1500),
    CtrlAck(1, 2),
    Close(0, "bye"),
    Feedback(0, 10, 10, 0, ((2, 3), (5, 9))),
    Chat(1, 10, 0, False, b""),
    Ping(1, 2),
    Pong(1, 2),
    FileOffer(1, 0, 1, 10, 0o600, 0, 0, 1400, "a"),
    FileAccept(1, ((1, 2),)),
    FileReject(1, 3, "no"),
    FileEnd(1, 1, b"\x01" * 32),
    FileResult(1, 0, 10, b"\x01" * 32, "a"),
    FileHeld(1, 2, "waiting for a person"),
    Error(4, "bad"),
]
# FILE_INLINE's data is the rest of the payload: a truncation is a shorter file, caught by
# the rule that the data is exactly `size` bytes (below), not by the reader.


@pytest.mark.parametrize("body", _NO_REST_SAMPLES, ids=lambda b: type(b).__name__)
def test_every_truncation_is_malformed(body: Body) -> None:
    payload = encode_payload(body)
    assert decode_payload(body.frame_type, payload) == body
    for length in range(len(payload)):
        with pytest.raises(MalformedPayload):
            decode_payload(body.frame_type, payload[:length])


def _hello(name: bytes = b"node", mtu: int = 1500) -> bytes:
    return struct.pack(">QQBBII", 1, 2, 1, 1, mtu, 0) + bytes([len(name)]) + name


def _feedback(cum_ack: int, ranges: list[tuple[int, int]], n_ranges: int | None = None) -> bytes:
    count = len(ranges) if n_ranges is None else n_ranges
    out = struct.pack(">QQQIH", cum_ack, 1000, 1000, 0, count)
    return out + b"".join(struct.pack(">QQ", start, end) for start, end in ranges)


def _offer(
    kind: int = 0,
    digest: int = 1,
    size: int = 10,
    mode: int = 0o644,
    chunk_size: int = 1400,
    path: bytes = b"a/b",
) -> bytes:
    fixed = struct.pack(">IBBQIqQI", 1, kind, digest, size, mode, 0, 0, chunk_size)
    return fixed + struct.pack(">H", len(path)) + path


def _str16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


MALFORMED: list[tuple[str, FrameType, bytes]] = [
    # §Conventions: invalid UTF-8 anywhere the spec says UTF-8.
    ("hello name not utf-8", FrameType.HELLO, _hello(b"\xff\xfe")),
    ("hello_ack name not utf-8", FrameType.HELLO_ACK, _hello(b"a\xc3")),
    ("hello name surrogate", FrameType.HELLO, _hello(b"\xed\xa0\x80")),
    ("close text not utf-8", FrameType.CLOSE, b"\x00\x00" + _str16(b"\x80")),
    ("error text not utf-8", FrameType.ERROR, b"\x00\x01" + _str16(b"\xc0\xaf")),
    ("reject text not utf-8", FrameType.FILE_REJECT, b"\x00\x00\x00\x01\x00\x03" + _str16(b"\xff")),
    ("offer path not utf-8", FrameType.FILE_OFFER, _offer(path=b"a/\xff")),
    (
        "result final_name not utf-8",
        FrameType.FILE_RESULT,
        struct.pack(">IHQ", 1, 0, 0) + b"\x00" + _str16(b"\xfe"),
    ),
    # §Limits: names, MTU, text.
    ("hello empty name", FrameType.HELLO, _hello(b"")),
    ("hello 65-byte name", FrameType.HELLO, _hello(b"n" * 65)),
    ("hello mtu below 1280", FrameType.HELLO, _hello(mtu=1279)),
    ("hello mtu above 65535", FrameType.HELLO, _hello(mtu=65536)),
    ("hello name length past end", FrameType.HELLO, _hello(b"abc")[:-1]),
    ("syn mtu below 1280", FrameType.SYN, struct.pack(">QBBIIIB", 1, 1, 1, 576, 1, 0, 1)),
    ("syn_ack no digest", FrameType.SYN_ACK, struct.pack(">QBBIIIB", 1, 1, 1, 1500, 1, 0, 0)),
    ("syn_ack two digests", FrameType.SYN_ACK, struct.pack(">QBBIIIB", 1, 1, 1, 1500, 1, 0, 3)),
    ("ack mtu 0", FrameType.ACK, struct.pack(">I", 0)),
    ("close 513-byte text", FrameType.CLOSE, b"\x00\x00" + _str16(b"t" * 513)),
    ("error 513-byte text", FrameType.ERROR, b"\x00\x04" + _str16(b"t" * 513)),
    ("close text past end", FrameType.CLOSE, b"\x00\x00" + _str16(b"abc")[:-1]),
    # §FEEDBACK ranges.
    (
        "feedback 65 ranges",
        FrameType.FEEDBACK,
        _feedback(0, [(2 * i + 1, 2 * i + 2) for i in range(65)]),
    ),
    ("feedback n_ranges past end", FrameType.FEEDBACK, _feedback(0, [(1, 2)], n_ranges=2)),
    ("feedback empty range", FrameType.FEEDBACK, _feedback(0, [(5, 5)])),
    ("feedback inverted range", FrameType.FEEDBACK, _feedback(0, [(6, 5)])),
    ("feedback descending", FrameType.FEEDBACK, _feedback(0, [(10, 12), (3, 4)])),
    ("feedback overlapping", FrameType.FEEDBACK, _feedback(0, [(3, 8), (7, 9)])),
    ("feedback below cum_ack", FrameType.FEEDBACK, _feedback(10, [(9, 12)])),
    # §CHAT.
    ("chat to_all 2", FrameType.CHAT, struct.pack(">IIIB", 1, 3, 0, 2) + b"abc"),
    (
        "chat total_len over 16 MiB",
        FrameType.CHAT,
        struct.pack(">IIIB", 1, MAX_CHAT_BYTES + 1, 0, 0),
    ),
    ("chat fragment past total_len", FrameType.CHAT, struct.pack(">IIIB", 1, 4, 2, 0) + b"abc"),
    ("chat header cut", FrameType.CHAT, struct.pack(">III", 1, 4, 0)),
    # §FILE_OFFER.
    ("offer unknown kind", FrameType.FILE_OFFER, _offer(kind=4)),
    ("offer no digest", FrameType.FILE_OFFER, _offer(digest=0)),
    ("offer two digests", FrameType.FILE_OFFER, _offer(digest=3)),
    ("offer mode beyond 0o7777", FrameType.FILE_OFFER, _offer(mode=0o100644)),
    ("offer chunk_size 0 with data", FrameType.FILE_OFFER, _offer(chunk_size=0)),
    ("offer chunk_size over a frame", FrameType.FILE_OFFER, _offer(chunk_size=MAX_PAYLOAD + 1)),
    ("offer empty path", FrameType.FILE_OFFER, _offer(path=b"")),
    ("offer 1001-byte path", FrameType.FILE_OFFER, _offer(path=b"a/" * 500 + b"a")),
    ("offer 256-byte component", FrameType.FILE_OFFER, _offer(path=b"d/" + b"c" * 256)),
    ("offer absolute path", FrameType.FILE_OFFER, _offer(path=b"/etc/passwd")),
    ("offer trailing slash", FrameType.FILE_OFFER, _offer(path=b"dir/")),
    ("offer doubled slash", FrameType.FILE_OFFER, _offer(path=b"a//b")),
    ("offer path past end", FrameType.FILE_OFFER, _offer(path=b"abc")[:-1]),
    # §FILE_ACCEPT, §FILE_END, §FILE_RESULT.
    ("accept n_ranges past end", FrameType.FILE_ACCEPT, struct.pack(">IHQQ", 1, 2, 0, 4)),
    ("accept empty range", FrameType.FILE_ACCEPT, struct.pack(">IHQQ", 1, 1, 4, 4)),
    ("accept overlapping", FrameType.FILE_ACCEPT, struct.pack(">IHQQQQ", 1, 2, 0, 4, 3, 6)),
    ("end no digest bit", FrameType.FILE_END, struct.pack(">IBB", 1, 0, 1) + b"\x00"),
    ("end digest past end", FrameType.FILE_END, struct.pack(">IBB", 1, 1, 32) + bytes(31)),
    (
        "result digest past end",
        FrameType.FILE_RESULT,
        struct.pack(">IHQB", 1, 0, 0, 32) + bytes(10),
    ),
    ("result final_name missing", FrameType.FILE_RESULT, struct.pack(">IHQB", 1, 0, 0, 0)),
    # §FILE_HELD.
    ("held 513-byte text", FrameType.FILE_HELD, struct.pack(">II", 1, 1) + _str16(b"t" * 513)),
    ("held text not utf-8", FrameType.FILE_HELD, struct.pack(">II", 1, 1) + _str16(b"\xff")),
    ("held text missing", FrameType.FILE_HELD, struct.pack(">II", 1, 1)),
    ("held text past end", FrameType.FILE_HELD, struct.pack(">II", 1, 1) + _str16(b"abc")[:-1]),
    ("held pending_id cut", FrameType.FILE_HELD, struct.pack(">IH", 1, 0)),
    # Whole payload.
    ("payload over 65511 bytes", FrameType.DATA, bytes(MAX_PAYLOAD + 1)),
    ("ping too short", FrameType.PING, bytes(11)),
    ("pong too short", FrameType.PONG, bytes(11)),
]


@pytest.mark.parametrize(
    ("frame_type", "payload"), [(t, p) for _, t, p in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_payload(frame_type: FrameType, payload: bytes) -> None:
    with pytest.raises(MalformedPayload):
        decode_payload(frame_type, payload)


@pytest.mark.parametrize("frame_type", [0x00, 0x03, 0x22, 0x7E, 0xFF])
def test_unknown_type_is_malformed(frame_type: int) -> None:
    with pytest.raises(MalformedPayload):
        decode_payload(frame_type, b"")


ACCEPTED_EDGES: list[tuple[str, FrameType, bytes]] = [
    ("hello 64-byte name", FrameType.HELLO, _hello("é".encode() * 32)),
    ("hello mtu 1280", FrameType.HELLO, _hello(mtu=1280)),
    ("hello mtu 65535", FrameType.HELLO, _hello(mtu=65535)),
    ("close 512-byte text", FrameType.CLOSE, b"\x00\x00" + _str16(b"t" * 512)),
    (
        "feedback 64 ranges",
        FrameType.FEEDBACK,
        _feedback(0, [(2 * i + 1, 2 * i + 2) for i in range(64)]),
    ),
    ("feedback touching ranges", FrameType.FEEDBACK, _feedback(0, [(1, 3), (3, 5)])),
    ("feedback range at cum_ack", FrameType.FEEDBACK, _feedback(10, [(10, 12)])),
    (
        "chat at 16 MiB",
        FrameType.CHAT,
        struct.pack(">IIIB", 1, MAX_CHAT_BYTES, MAX_CHAT_BYTES - 1, 1) + b"!",
    ),
    ("offer 1000-byte path", FrameType.FILE_OFFER, _offer(path=b"a/" * 499 + b"ab")),
    ("offer 255-byte component", FrameType.FILE_OFFER, _offer(path=b"d/" + b"c" * 255)),
    ("offer empty file chunk_size 0", FrameType.FILE_OFFER, _offer(size=0, chunk_size=0)),
    ("offer chunk_size 65511", FrameType.FILE_OFFER, _offer(chunk_size=MAX_PAYLOAD)),
    ("offer dotted names left to the file layer", FrameType.FILE_OFFER, _offer(path=b"../x")),
    (
        "result empty final_name",
        FrameType.FILE_RESULT,
        struct.pack(">IHQB", 1, 6, 0, 0) + _str16(b""),
    ),
    ("accept touching ranges", FrameType.FILE_ACCEPT, struct.pack(">IHQQQQ", 1, 2, 0, 4, 4, 6)),
    ("held 512-byte text", FrameType.FILE_HELD, struct.pack(">II", 1, 2) + _str16(b"t" * 512)),
    ("held empty text", FrameType.FILE_HELD, struct.pack(">II", 1, 2) + _str16(b"")),
]


@pytest.mark.parametrize(
    ("frame_type", "payload"),
    [(t, p) for _, t, p in ACCEPTED_EDGES],
    ids=[n for n, _, _ in ACCEPTED_EDGES],
)
def test_edges_that_are_accepted(frame_type: FrameType, payload: bytes) -> None:
    body = decode_payload(frame_type, payload)
    assert encode_payload(body) == payload


# ---- encoding refuses what decoding would refuse ----

_TOO_BIG = [
    Hello(1 << 64, 0, 1, 1, 1500, 0, "n"),
    Hello(0, 0, 256, 1, 1500, 0, "n"),
    Hello(0, 0, 1, 1, 1500, 0, ""),
    Hello(0, 0, 1, 1, 1500, 0, "n" * 65),
    Hello(0, 0, 1, 1, 1279, 0, "n"),
    HelloAck(0, -1, 1, 1, 1500, 0, "n"),
    Hello(0, 0, 1, 1, 1500, 0, "\ud800"),  # a lone surrogate cannot be UTF-8
    SynAck(0, 1, 1, 1500, 0, 0, 3),
    Syn(0, 1, 1, 1500, 1 << 32, 0, 1),
    Ack(100),
    Probe(1500, filler_len=MAX_PAYLOAD - 3),
    Probe(1500, filler_len=-1),
    Probe(1 << 32),
    CtrlAck(0, 1 << 64),
    Close(1 << 16, ""),
    Close(0, "t" * 513),
    Error(0, "é" * 257),
    Data(bytes(MAX_PAYLOAD + 1)),
    Ping(0, 0, bytes(MAX_PAYLOAD - 11)),
    Feedback(0, 0, 0, 0, tuple((2 * i + 1, 2 * i + 2) for i in range(65))),
    Feedback(5, 0, 0, 0, ((4, 6),)),
    Feedback(0, 0, 0, 0, ((3, 3),)),
    Feedback(0, 0, 0, 0, ((1, 1 << 64),)),
    Chat(0, MAX_CHAT_BYTES + 1, 0, False, b""),
    Chat(0, 2, 0, False, b"abc"),
    FileOffer(0, 9, 1, 0, 0, 0, 0, 1, "a"),
    FileOffer(0, 0, 1, 0, 0o10000, 0, 0, 1, "a"),
    FileOffer(0, 0, 1, 5, 0, 0, 0, 0, "a"),
    FileOffer(0, 0, 1, 0, 0, 1 << 63, 0, 1, "a"),
    FileOffer(0, 0, 1, 0, 0, 0, 0, 1, "a/"),
    FileAccept(0, ((5, 6), (1, 2))),
    FileAccept(0, tuple((2 * i, 2 * i + 1) for i in range(1 << 16))),
    FileReject(0, 0, "t" * 513),
    FileEnd(0, 0, b""),
    FileEnd(0, 1, bytes(256)),
    FileResult(0, 0, 0, bytes(256), ""),
    FileHeld(0, 0, "t" * 513),
    FileHeld(0, 1 << 32, ""),
    FileHeld(-1, 0, ""),
    FileInline(0, 1, 1, 0, 0, 0, 0, 0, "d", b"\x01", b""),  # a directory cannot carry data
    FileInline(0, 0, 1, 4, 0, 0, 0, 1400, "a", b"\x01", b"abc"),  # 3 bytes, size 4
    FileInline(0, 0, 1, 2, 0, 0, 0, 1400, "a", b"\x01", b"abc"),  # 3 bytes, size 2
    FileInline(0, 0, 1, 0, 0, 0, 0, 0, "a", b"", b""),  # no digest
    FileInline(0, 0, 3, 0, 0, 0, 0, 0, "a", b"\x01", b""),  # two digest bits
    FileInline(0, 0, 1, 1, 0, 0, 0, 1400, "a/", b"\x01", b"x"),  # FILE_OFFER's rules too
]


@pytest.mark.parametrize("body", _TOO_BIG, ids=lambda b: type(b).__name__)
def test_encode_refuses_invalid_values(body: Body) -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(body)


def test_encode_frame_refuses_bad_header_values() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(Frame(MAC_A, MAC_B, 1 << 32, 0, Keepalive()))
    with pytest.raises(LocalProtocolError):
        encode_frame(Frame(MAC_A[:5], MAC_B, 0, 0, Keepalive()))
    with pytest.raises(LocalProtocolError):
        encode_frame(Frame(MAC_A, MAC_B, 0, 0, Keepalive(), flags=1 << 16))


def test_error_names_as_users_see_them() -> None:
    from l2fast.wire.constants import ErrorCode, error_name

    assert error_name(ErrorCode.NO_SPACE) == "no_space"
    assert error_name(0xBEEF) == "error 48879"  # a newer peer's code, shown by number


def test_errors_in_a_run_of_integer_fields_name_the_field() -> None:
    # FILE_OFFER's transfer_id..chunk_size are one struct in the compiled layout
    # (l2fast.wire.payload_layout); a payload cut inside the run, or a value out of range,
    # is still reported for the field it concerns.
    offer = FileOffer(7, 0, 1, 4096, 0o644, -5, 3, 1400, "a/b")
    payload = encode_payload(offer)
    assert decode_payload(FrameType.FILE_OFFER, payload) == offer
    # transfer_id (4) + kind (1) + digest (1) + size (8) = 14: mode starts at 14.
    with pytest.raises(MalformedPayload, match=r"mode needs 4 bytes at offset 14"):
        decode_payload(FrameType.FILE_OFFER, payload[:16])
    with pytest.raises(LocalProtocolError, match=r"size=-1 does not fit"):
        encode_payload(FileOffer(7, 0, 1, -1, 0o644, 0, 3, 1400, "a/b"))
    with pytest.raises(LocalProtocolError, match=r"mtime_ns=.* does not fit in a signed"):
        encode_payload(FileOffer(7, 0, 1, 4096, 0o644, 1 << 63, 3, 1400, "a/b"))


@given(data=st.data())
def test_file_inline_as_offer_gives_back_the_offer_it_carries(data: st.DataObject) -> None:
    offer = data.draw(BODY_STRATEGIES[FileOffer])
    assert FileInline.carrying(offer, b"\x01", b"xyz").as_offer() == offer
