"""Hypothesis strategies for l2fast wire values, shared by every test that needs frames.

Each `*_bodies()` strategy yields only payloads that the codec must accept (they respect every
rule and limit of PROTOCOL.md §Frame types and §Limits), so `decode(encode(x)) == x` must hold
for all of them. `bodies()` draws from every frame type; `frames()` wraps a body into a Frame.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from l2fast.wire.auth import NONCE_LEN, NONCE_TYPES, UNSEALED_TYPES, TagKey
from l2fast.wire.constants import (
    MAX_CHAT_BYTES,
    MAX_MTU,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_PAYLOAD,
    MAX_SACK_RANGES,
    MIN_MTU,
    FileKind,
    Flags,
)
from l2fast.wire.frames import (
    Ack,
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
    WireRanges,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
macs = st.binary(min_size=6, max_size=6)
mtus = st.integers(MIN_MTU, MAX_MTU)
single_bits = st.sampled_from([1 << i for i in range(8)])

# Any Unicode scalar value that UTF-8 can encode (no lone surrogates).
_chars = st.characters(codec="utf-8")

#: Node names: 1..64 bytes of UTF-8 (16 characters are at most 64 bytes).
names = st.text(_chars, min_size=1, max_size=MAX_NAME_BYTES // 4)
#: Free text of CLOSE / FILE_REJECT / ERROR: at most 512 bytes of UTF-8.
texts = st.text(_chars, max_size=128)
#: One path component: no "/", 1..40 characters, so at most 160 bytes (< 255).
_components = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=40)
#: FILE_OFFER paths: up to 6 components, at most 6 * 160 + 5 = 965 bytes (< 1000).
paths = st.lists(_components, min_size=1, max_size=6).map("/".join)


def chunk_ranges(
    floor: int = 0, max_ranges: int = MAX_SACK_RANGES
) -> st.SearchStrategy[WireRanges]:
    """Valid chunk ranges at or above `floor`: non-empty, ascending, not overlapping.

    Built from (gap, length) pairs so that touching ranges (gap 0) occur too.
    """
    steps = st.lists(
        st.tuples(st.integers(0, 1 << 20), st.integers(1, 1 << 20)), max_size=max_ranges
    )

    def build(pairs: list[tuple[int, int]]) -> WireRanges:
        ranges = []
        position = floor
        for gap, length in pairs:
            start = position + gap
            ranges.append((start, start + length))
            position = start + length
        return tuple(ranges)

    return steps.map(build)


# Floors leave room for 64 ranges of at most 2**21 chunks each below 2**64.
_floors = st.one_of(st.just(0), st.integers(0, (1 << 64) - (1 << 28)))

hello_bodies = st.builds(
    Hello, node_id=u64, ts_ns=u64, ver_min=u8, ver_max=u8, mtu=mtus, caps=u32, name=names
)
hello_ack_bodies = st.builds(
    HelloAck, node_id=u64, echo_ts_ns=u64, ver_min=u8, ver_max=u8, mtu=mtus, caps=u32, name=names
)
syn_bodies = st.builds(
    Syn, node_id=u64, ver_min=u8, ver_max=u8, mtu=mtus, window=u32, features=u32, digests=u8
)
syn_ack_bodies = st.builds(
    SynAck,
    node_id=u64,
    ver_min=u8,
    ver_max=u8,
    mtu=mtus,
    window=u32,
    features=u32,
    digests=single_bits,
)
ack_bodies = st.builds(Ack, mtu=mtus)
probe_bodies = st.builds(Probe, size=u32, filler_len=st.integers(0, 2000))
probe_ack_bodies = st.builds(ProbeAck, size=u32)
ctrl_ack_bodies = st.builds(CtrlAck, cum=u64, bitmap=u64)
keepalive_bodies = st.just(Keepalive())
close_bodies = st.builds(Close, reason=u16, text=texts)
data_bodies = st.builds(Data, payload=st.binary(max_size=2000))
ping_bodies = st.builds(Ping, ident=u32, ts_ns=u64, filler=st.binary(max_size=300))
pong_bodies = st.builds(Pong, ident=u32, ts_ns=u64, filler=st.binary(max_size=300))
error_bodies = st.builds(Error, code=u16, text=texts)


@st.composite
def feedback_bodies(draw: st.DrawFn) -> Feedback:
    """FEEDBACK with up to 64 valid ranges above `cum_ack`."""
    cum_ack = draw(_floors)
    return Feedback(
        cum_ack=cum_ack,
        credit=draw(u64),
        highest=draw(u64),
        kernel_drops=draw(u32),
        ranges=draw(chunk_ranges(cum_ack)),
    )


@st.composite
def chat_bodies(draw: st.DrawFn) -> Chat:
    """CHAT fragments that lie inside their message of at most 16 MiB."""
    data = draw(st.binary(max_size=1500))
    frag_offset = draw(st.integers(0, MAX_CHAT_BYTES - len(data)))
    total_len = draw(st.integers(frag_offset + len(data), MAX_CHAT_BYTES))
    return Chat(
        msg_id=draw(u32),
        total_len=total_len,
        frag_offset=frag_offset,
        to_all=draw(st.booleans()),
        data=data,
    )


@st.composite
def file_offer_bodies(draw: st.DrawFn) -> FileOffer:
    """FILE_OFFER of every kind, with a chunk size that fits one DATA frame."""
    size = draw(u64)
    return FileOffer(
        transfer_id=draw(u32),
        kind=draw(st.sampled_from([int(kind) for kind in FileKind])),
        digest=draw(single_bits),
        size=size,
        mode=draw(st.integers(0, 0o7777)),
        mtime_ns=draw(i64),
        first_chunk=draw(u64),
        chunk_size=draw(st.integers(1 if size > 0 else 0, MAX_PAYLOAD)),
        path=draw(paths),
    )


file_accept_bodies = st.builds(FileAccept, transfer_id=u32, have=chunk_ranges(0, 100))
file_reject_bodies = st.builds(FileReject, transfer_id=u32, reason=u16, text=texts)
file_end_bodies = st.builds(
    FileEnd, transfer_id=u32, digest=single_bits, digest_value=st.binary(max_size=255)
)
file_result_bodies = st.builds(
    FileResult,
    transfer_id=u32,
    status=u16,
    bytes_received=u64,
    digest_value=st.binary(max_size=255),
    final_name=st.text(_chars, max_size=MAX_PATH_BYTES // 4),
)

file_held_bodies = st.builds(FileHeld, transfer_id=u32, pending_id=u32, text=texts)


@st.composite
def file_inline_bodies(draw: st.DrawFn) -> FileInline:
    """FILE_INLINE: a file's offer with its bytes (any size a frame could carry) and digest."""
    offer = draw(file_offer_bodies())
    data = draw(st.binary(max_size=2000))
    chunk = draw(st.integers(1, MAX_PAYLOAD)) if data else 0
    return FileInline.carrying(
        dataclasses.replace(offer, kind=int(FileKind.FILE), size=len(data), chunk_size=chunk),
        draw(st.binary(min_size=1, max_size=255)),
        data,
    )


#: One valid-body strategy per payload class.
BODY_STRATEGIES: dict[type[Body], st.SearchStrategy[Body]] = {
    Hello: hello_bodies,
    HelloAck: hello_ack_bodies,
    Syn: syn_bodies,
    SynAck: syn_ack_bodies,
    Ack: ack_bodies,
    Probe: probe_bodies,
    ProbeAck: probe_ack_bodies,
    CtrlAck: ctrl_ack_bodies,
    Keepalive: keepalive_bodies,
    Close: close_bodies,
    Data: data_bodies,
    Feedback: feedback_bodies(),
    Chat: chat_bodies(),
    Ping: ping_bodies,
    Pong: pong_bodies,
    FileOffer: file_offer_bodies(),
    FileAccept: file_accept_bodies,
    FileReject: file_reject_bodies,
    FileEnd: file_end_bodies,
    FileResult: file_result_bodies,
    FileHeld: file_held_bodies,
    FileInline: file_inline_bodies(),
    Error: error_bodies,
}


def bodies() -> st.SearchStrategy[Body]:
    """A valid payload of any frame type."""
    return st.one_of(*BODY_STRATEGIES.values())


def frames(body: st.SearchStrategy[Body] | None = None) -> st.SearchStrategy[Frame]:
    """A Frame with any addressing and header values around `body` (default: any body), not
    sealed: flag AUTH, which says a trailer follows the layout, is left clear."""
    return st.builds(
        Frame,
        dst=macs,
        src=macs,
        session=u32,
        seq=u64,
        body=bodies() if body is None else body,
        flags=u16.map(lambda f: f & ~Flags.AUTH),
    )


@st.composite
def sealed_frames(draw: st.DrawFn) -> Frame:
    """A Frame of a type that is sealed, to be sent sealed with a random key (and a nonce for
    SYN and SYN_ACK); its flags may already have AUTH set."""
    sealable = [cls for cls in BODY_STRATEGIES if cls.frame_type not in UNSEALED_TYPES]
    cls = draw(st.sampled_from(sealable))
    frame = draw(frames(BODY_STRATEGIES[cls]))
    with_nonce = cls.frame_type in NONCE_TYPES
    nonce = draw(st.binary(min_size=NONCE_LEN, max_size=NONCE_LEN)) if with_nonce else b""
    key = TagKey(draw(st.binary(min_size=32, max_size=32)))
    return dataclasses.replace(frame, seal=(key, nonce))
