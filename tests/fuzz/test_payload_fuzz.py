"""Fuzz invariant for the pure-Python payload and frame decoders (STYLE.md §15).

Any bytes either decode or are refused with our own error (MalformedPayload, or BadFrame for a
whole frame); never another exception. Whatever decodes must also encode again, to the same
body, so the decoder never accepts what the encoder would refuse. Example counts are bounded so
the whole module runs in a few seconds; the C parser has its own libFuzzer target.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast.errors import MalformedPayload
from l2fast.wire.auth import NONCE_LEN, NONCE_TYPES, TAG_LEN
from l2fast.wire.constants import Flags, FrameType
from l2fast.wire.frames import (
    BODY_CLASSES,
    BadFrame,
    Body,
    Frame,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
)
from l2fast.wire.header import build_frame
from tests.strategies import BODY_STRATEGIES, bodies, frames, sealed_frames

FRAME_TYPES = list(FrameType)


def check_decodes_or_is_malformed(frame_type: int, payload: bytes) -> None:
    """The fuzz invariant for one payload."""
    try:
        body = decode_payload(frame_type, payload)
    except MalformedPayload:
        return
    assert type(body) is BODY_CLASSES[frame_type]
    assert decode_payload(frame_type, encode_payload(body)) == body


@st.composite
def damaged_payloads(draw: st.DrawFn, cls: type[Body]) -> bytes:
    """A valid payload of `cls` with a few bytes changed, cut, inserted or appended.

    Starting from valid bytes gets past the first length checks, into strings, ranges and caps,
    which random bytes rarely reach.
    """
    payload = bytearray(encode_payload(draw(BODY_STRATEGIES[cls])))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "cut", "insert", "append"]))
        position = draw(st.integers(0, len(payload)))
        if action == "set" and payload:
            payload[min(position, len(payload) - 1)] = draw(st.integers(0, 255))
        elif action == "cut":
            del payload[position:]
        elif action == "insert":
            payload[position:position] = draw(st.binary(min_size=1, max_size=4))
        else:
            payload += draw(st.binary(min_size=1, max_size=20))
    return bytes(payload)


@pytest.mark.parametrize("frame_type", FRAME_TYPES, ids=lambda t: t.name)
@settings(max_examples=150)
@given(payload=st.binary(max_size=160))
def test_random_payload_decodes_or_is_malformed(frame_type: FrameType, payload: bytes) -> None:
    check_decodes_or_is_malformed(frame_type, payload)


@pytest.mark.parametrize("frame_type", FRAME_TYPES, ids=lambda t: t.name)
@settings(max_examples=150)
@given(data=st.data())
def test_damaged_payload_decodes_or_is_malformed(
    frame_type: FrameType, data: st.DataObject
) -> None:
    payload = data.draw(damaged_payloads(BODY_CLASSES[frame_type]))
    check_decodes_or_is_malformed(frame_type, payload)


@settings(max_examples=300)
@given(frame_type=st.integers(0, 255), payload=st.binary(max_size=64))
def test_any_type_byte_decodes_or_is_malformed(frame_type: int, payload: bytes) -> None:
    try:
        body = decode_payload(frame_type, payload)
    except MalformedPayload:
        return
    assert body.frame_type == frame_type


@settings(max_examples=300)
@given(raw=st.binary(max_size=120) | frames().map(encode_frame))
def test_any_frame_bytes_decode_or_are_refused(raw: bytes) -> None:
    try:
        frame = decode_frame(raw)
    except (BadFrame, MalformedPayload):
        return
    assert decode_frame(encode_frame(frame)) == frame


@settings(max_examples=300)
@given(body=bodies())
def test_decode_inverts_encode(body: Body) -> None:
    assert decode_payload(body.frame_type, encode_payload(body)) == body


@settings(max_examples=200)
@given(frame=frames())
def test_frame_decode_inverts_encode(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


@settings(max_examples=300)
@given(
    frame_type=st.sampled_from(FRAME_TYPES),
    flags=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=120) | sealed_frames().map(lambda f: encode_frame(f)[38:]),
)
def test_any_payload_with_flag_auth_decodes_or_is_refused(
    frame_type: FrameType, flags: int, payload: bytes
) -> None:
    # A valid CRC around any payload under any flags: the trailer split (PROTOCOL.md
    # §Authentication) is reached with every length, including too short for a trailer.
    raw = build_frame(
        b"\x02" * 6, b"\x04" * 6, 0x88B5, frame_type, flags | Flags.AUTH, 1, 2, payload
    )
    try:
        frame = decode_frame(raw)
    except (BadFrame, MalformedPayload):
        return
    assert frame.trailer is not None and len(frame.trailer.tag) == TAG_LEN
    assert len(frame.trailer.nonce) == (NONCE_LEN if frame_type in NONCE_TYPES else 0)
