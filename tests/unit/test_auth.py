"""Sealed frames and the LAN key (PROTOCOL.md §Authentication).

The codec: a sealed frame survives encoding, its tag checks, and any change an attacker can
make (fixing the CRC afterwards) breaks the tag. The key file: written 0600, read back, refused
with a hint when it is loose or not a key. The engine, in the in-memory LAN: nodes with the
same key find each other and chat through loss, duplication and reordering; nodes without it,
or with another key, are refused and counted; forged, tampered and replayed frames change
nothing.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import random
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2fast import cli
from l2fast.daemon.transfers import Transfers
from l2fast.errors import L2fastError, MalformedPayload
from l2fast.node.auth import KEY_LEN, LanKey, generate_key_file, load_key_file
from l2fast.node.events import (
    ChatDelivered,
    ChatReceived,
    ControlReceived,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.node import NodeEngine, unheard_text
from l2fast.transfer.protocol_space import max_have_ranges
from l2fast.wire.auth import PREFIX_LEN, TAG_LEN, TagKey, open_trailer
from l2fast.wire.constants import (
    BROADCAST_MAC,
    DEFAULT_ETHERTYPE,
    ETH_HLEN,
    HDR_LEN,
    Digest,
    ErrorCode,
    Flags,
    FrameType,
)
from l2fast.wire.crc32c_ref import crc32c
from l2fast.wire.frames import (
    BadFrame,
    Chat,
    Close,
    Data,
    Error,
    Feedback,
    FileAccept,
    FileEnd,
    Frame,
    Hello,
    Keepalive,
    decode_frame,
    encode_frame,
)
from l2fast.wire.header import build_frame
from tests.node_harness import Lan
from tests.strategies import sealed_frames

SECRET = bytes(range(KEY_LEN))
OTHER_SECRET = bytes(range(1, KEY_LEN + 1))


def lan_key(secret: bytes = SECRET, seed: int = 1) -> LanKey:
    """A key whose nonces come from a seeded generator: a run is reproducible."""
    rng = random.Random(seed)
    return LanKey(secret, nonces=rng.randbytes)


def refresh_crc(raw: bytearray) -> None:
    """Recompute the header CRC after a change, as an attacker on the LAN would."""
    payload_len = int.from_bytes(raw[ETH_HLEN + 6 : ETH_HLEN + 8], "big")
    start = ETH_HLEN + HDR_LEN
    crc = crc32c(bytes(raw[start : start + payload_len]), crc32c(bytes(raw[ETH_HLEN : start - 4])))
    raw[start - 4 : start] = crc.to_bytes(4, "big")


# --- the codec ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(sealed_frames())
def test_a_sealed_frame_survives_the_codec_and_its_tag_checks(frame: Frame) -> None:
    assert frame.seal is not None
    key, nonce = frame.seal
    again = decode_frame(encode_frame(frame))
    assert again.flags == frame.flags | Flags.AUTH
    assert again.body == frame.body
    assert again.trailer is not None
    assert again.trailer.nonce == nonce
    assert LanKey.verify(key, again.trailer.covered, again.trailer.tag)
    wrong = TagKey(bytes([key.raw[0] ^ 1]) + key.raw[1:])
    assert not LanKey.verify(wrong, again.trailer.covered, again.trailer.tag)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sealed_frames(), st.data())
def test_any_change_an_attacker_makes_breaks_the_tag(frame: Frame, data: st.DataObject) -> None:
    assert frame.seal is not None
    key = frame.seal[0]
    raw = bytearray(encode_frame(frame))
    # Every byte but the EtherType (another EtherType is another protocol) and the CRC (which
    # refresh_crc rewrites): addresses, header fields, layout, nonce and tag.
    positions = [i for i in range(len(raw)) if i not in (12, 13) and not 34 <= i < 38]
    where = data.draw(st.sampled_from(positions))
    raw[where] ^= data.draw(st.integers(1, 255))
    refresh_crc(raw)
    try:
        again = decode_frame(bytes(raw))
    except (BadFrame, MalformedPayload):
        return  # refused before any key is needed
    if again.trailer is None:
        return  # the AUTH bit itself was cleared: the node refuses it as unauthenticated
    assert not LanKey.verify(key, again.trailer.covered, again.trailer.tag)


def test_a_sealed_payload_too_short_for_its_trailer_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="trailer"):
        open_trailer(FrameType.KEEPALIVE, b"\x00" * (TAG_LEN - 1), b"")
    with pytest.raises(MalformedPayload, match="trailer"):
        open_trailer(FrameType.SYN, b"\x00" * (TAG_LEN + 15), b"")


def test_auth_on_a_type_that_is_never_sealed_is_malformed() -> None:
    frame = Frame(b"\x02" * 6, b"\x04" * 6, 1, 2, Data(payload=b"x" * 40), flags=Flags.AUTH)
    with pytest.raises(MalformedPayload, match="never sealed"):
        decode_frame(encode_frame(frame))
    with pytest.raises(ValueError, match="never sealed"):
        encode_frame(dataclasses.replace(frame, flags=0, seal=(TagKey(SECRET), b"")))


# --- the key file ---------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_that_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "key"
    written = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert len(text.strip()) == 2 * KEY_LEN and text.endswith("\n")
    loaded = load_key_file(path)
    assert loaded.key_id == written.key_id and loaded.group == written.group
    other = generate_key_file(tmp_path / "other")
    assert other.key_id != written.key_id


def test_keygen_never_replaces_a_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = generate_key_file(path)
    with pytest.raises(L2fastError, match="already exists") as caught:
        generate_key_file(path)
    assert caught.value.hint and "remove it first" in caught.value.hint
    assert load_key_file(path).key_id == first.key_id


def test_keygen_into_a_directory_asks_for_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(L2fastError, match="is a directory") as caught:
        generate_key_file(tmp_path)
    assert caught.value.hint == f"name the file to write, e.g. -o {tmp_path / 'l2fast.key'}"


@pytest.mark.parametrize(
    ("setup", "message", "hint"),
    [
        ("missing", "no such file", "l2fast keygen -o"),
        ("loose", "lets other users read or change it", "chmod 600"),
        ("garbage", "not a key", "rm {path}; l2fast keygen -o {path}"),
        ("short", "not a key", "rm {path}; l2fast keygen -o {path}"),
        ("directory", "not a regular file", "l2fast keygen"),
        ("fifo", "not a regular file", "l2fast keygen"),  # refused, not waited on
        ("symlink", "is a symbolic link", "key file itself"),
        ("foreign owner", "owned by uid 4242, who could replace it", "chown root"),
    ],
)
def test_a_key_file_that_is_not_right_is_refused_with_a_hint(
    tmp_path: Path, setup: str, message: str, hint: str
) -> None:
    path = tmp_path / "key"
    if setup == "loose":
        generate_key_file(path)
        path.chmod(0o644)
    elif setup in ("garbage", "short"):
        path.write_text("not hex at all\n" if setup == "garbage" else "ab" * 16 + "\n")
        path.chmod(0o600)
    elif setup == "directory":
        path.mkdir(mode=0o700)
    elif setup == "fifo":
        os.mkfifo(path, 0o600)
    elif setup == "symlink":
        generate_key_file(tmp_path / "real")
        os.symlink(tmp_path / "real", path)
    elif setup == "foreign owner":
        generate_key_file(path)
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(path, 4242, 4242)
    with pytest.raises(L2fastError, match=message) as caught:
        load_key_file(path)
    assert caught.value.hint and hint.format(path=path) in caught.value.hint


def test_a_key_file_owned_by_root_or_by_its_reader_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key"
    made = generate_key_file(path)
    assert load_key_file(path).key_id == made.key_id  # the reader's own file
    if os.stat(path).st_uid == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 4242)  # a user reading root's file
        assert load_key_file(path).key_id == made.key_id
        os.chown(path, 4243, 4243)  # another user's file: that user could replace it
        with pytest.raises(L2fastError, match="owned by uid 4243") as caught:
            load_key_file(path)
        assert caught.value.hint == f"chown 4242 {path}"


def test_a_tag_key_computes_hmac_sha256() -> None:
    # RFC 4231 test case 2 (a short key) and 6 (a key longer than the block, hashed first).
    key = TagKey(b"Jefe")
    assert key.digest(b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    long_key = TagKey(b"\xaa" * 131)
    message = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert long_key.digest(message) == hmac.digest(b"\xaa" * 131, message, "sha256")
    assert long_key.digest(message).hex().startswith("60e431591ee0b67f0d8a26aacbf5b77f")
    assert TagKey(b"k") == TagKey(b"k") != TagKey(b"K") and "k" not in repr(TagKey(b"k"))


def test_a_lan_key_is_32_bytes_and_names_itself_without_revealing_it() -> None:
    with pytest.raises(ValueError):
        LanKey(b"short")
    key = LanKey(SECRET)
    assert len(key.key_id) == 16 and key.key_id not in SECRET.hex()
    assert LanKey(SECRET).key_id == key.key_id != LanKey(OTHER_SECRET).key_id


# --- nodes with and without the key ---------------------------------------------------------------


def keyed_pair(
    seed: int = 0, a_key: LanKey | None = None, b_key: LanKey | None = None, **options: object
) -> tuple[Lan, NodeEngine, NodeEngine]:
    lan = Lan(seed=seed, **options)  # type: ignore[arg-type]
    return lan, lan.add(key=a_key), lan.add(key=b_key)


AUTH_DROPS = ("unauthenticated", "bad_auth", "needs_key")


def auth_drops(node: NodeEngine) -> dict[str, int]:
    return {reason: node.drops[reason] for reason in AUTH_DROPS if node.drops[reason]}


@pytest.mark.parametrize("seed", range(6))
def test_nodes_with_the_same_key_find_each_other_and_chat_through_faults(seed: int) -> None:
    lan, a, b = keyed_pair(seed, lan_key(seed=1), lan_key(seed=2), loss=0.1, dup=0.1, reorder=0.1)
    assert lan.run(lambda: b.mac in {p.mac for p in a.peers()}, timeout=30)
    long_text = "".join(chr(0x41 + i % 26) for i in range(5000))  # several full fragments
    a.send_chat(b.mac, long_text, lan.now)
    b.send_chat(a.mac, "and back", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered) and lan.has(b, ChatDelivered), timeout=60)
    assert [m.text for m in lan.of(b, ChatReceived)] == [long_text.encode()]
    assert [m.text for m in lan.of(a, ChatReceived)] == [b"and back"]
    assert auth_drops(a) == auth_drops(b) == {}
    assert {p.name for p in b.peers()} == {a.name}


@pytest.mark.parametrize("mtu", [1280, 1500, 9000])
def test_sealed_frames_leave_room_for_the_tag_under_the_mtu(mtu: int) -> None:
    # The harness fails any frame over the MTU: full chat fragments and the MTU probe must
    # count the 16-byte tag.
    lan = Lan(seed=mtu)
    a, b = lan.add(key=lan_key(), mtu=mtu), lan.add(key=lan_key(seed=2), mtu=mtu)
    a.send_chat(b.mac, "y" * (3 * mtu), lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=10)
    assert lan.of(b, ChatReceived)[0].text == b"y" * (3 * mtu)


@pytest.mark.parametrize(
    ("a_secret", "b_secret", "a_counts", "b_counts", "explained"),
    [
        (SECRET, None, "unauthenticated", "needs_key", "it runs without a LAN key"),
        (None, SECRET, "needs_key", "unauthenticated", "this node has none"),
        (SECRET, OTHER_SECRET, "bad_auth", "bad_auth", "sealed with another LAN key"),
    ],
)
def test_nodes_without_the_same_key_are_refused_and_counted(
    a_secret: bytes | None, b_secret: bytes | None, a_counts: str, b_counts: str, explained: str
) -> None:
    lan, a, b = keyed_pair(
        3,
        None if a_secret is None else lan_key(a_secret),
        None if b_secret is None else lan_key(b_secret, seed=2),
    )
    lan.run_for(1.0)
    assert a.peers() == [] and b.peers() == []
    a.send_chat(b.mac, "let me in", lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=60)
    assert not lan.has(a, SessionOpened) and not lan.has(b, SessionOpened)
    assert lan.of(b, ChatReceived) == []
    assert a.drops[a_counts] > 0 and b.drops[b_counts] > 0
    (failed,) = lan.of(a, SessionFailed)
    assert "no answer" in failed.error.message and explained in failed.error.message


def test_nodes_the_key_check_refused_are_named_with_what_to_do() -> None:
    # `discover`, `peers` and a name that does not resolve report them (service tests the
    # replies): they are there, but not heard.
    lan, a, b = keyed_pair(3, lan_key(SECRET), lan_key(OTHER_SECRET, seed=2))
    c = lan.add(key=None)
    lan.run_for(10.0)  # several HELLO periods
    assert a.peers() == []
    assert a.key_refusals(lan.now) == {b.mac: "bad_auth", c.mac: "unauthenticated"}
    # Lately: as long as the neighbour table would keep a node it hears.
    assert a.key_refusals(lan.now + a.discovery.table.expire_after + 1.0) == {}
    text = unheard_text(a.key_refusals(lan.now))
    assert text is not None
    assert f"{b.mac.hex(':')} was not heard: its frames were sealed with another LAN key" in text
    assert f"{c.mac.hex(':')} was not heard: its frames were not sealed" in text
    assert unheard_text({}) is None


def test_many_nodes_refused_for_one_reason_are_named_in_one_clause() -> None:
    macs = [bytes([2, 0, 0, 0, 0, n]) for n in range(6, 0, -1)]
    text = unheard_text(dict.fromkeys(macs, "needs_key"))
    assert text == (
        "6 nodes were not heard (02:00:00:00:00:01, 02:00:00:00:00:02, 02:00:00:00:00:03, "
        "02:00:00:00:00:04 and 2 more): for each, its frames were sealed with a LAN key and "
        "this node has none (l2fast daemon --key FILE; L2FAST_KEY_FILE for a command that runs "
        "without a daemon)"
    )


def open_keyed_session(seed: int = 5) -> tuple[Lan, NodeEngine, NodeEngine, int]:
    lan, a, b = keyed_pair(seed, lan_key(seed=1), lan_key(seed=2))
    a.send_chat(b.mac, "hello", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=10)
    (session,) = [s.session for s in a.sessions()]
    return lan, a, b, session


def test_a_forged_unsealed_chat_into_a_keyed_session_is_refused() -> None:
    lan, a, b, session = open_keyed_session()
    forged = Chat(msg_id=99, total_len=6, frag_offset=0, to_all=False, data=b"forged")
    for seq in range(1, 20):  # whatever the control-stream sequence is now
        frame = Frame(b.mac, a.mac, session, seq, forged, int(Flags.LAST))
        b.receive_frame(decode_frame(encode_frame(frame)), lan.now)
    lan.run_for(1.0)
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"hello"]
    assert b.drops["unauthenticated"] == 19


def raw_of(frame: Frame) -> bytearray:
    """The bytes a sealed frame arrived as: its trailer keeps what its tag covers."""
    assert frame.trailer is not None
    payload = frame.trailer.covered[PREFIX_LEN:] + frame.trailer.tag
    return bytearray(
        build_frame(
            frame.dst,
            frame.src,
            DEFAULT_ETHERTYPE,
            int(frame.type),
            frame.flags,
            frame.session,
            frame.seq,
            payload,
        )
    )


def test_a_tampered_sealed_frame_is_refused() -> None:
    lan, a, b, _ = open_keyed_session()
    captured: list[Frame] = []
    lan.tap = lambda f: captured.append(f) if isinstance(f.body, Chat) else None
    a.send_chat(b.mac, "pay alice", lan.now)
    lan.step()  # a's CHAT is on the wire: the attacker copies it and changes the payee
    (chat,) = captured
    raw = raw_of(chat)
    assert decode_frame(bytes(raw)) == chat  # the copy is exact
    at = raw.index(b"alice")
    raw[at : at + 5] = b"mally"
    refresh_crc(raw)
    b.receive_frame(decode_frame(bytes(raw)), lan.now)
    assert b.drops["bad_auth"] == 1
    assert lan.run(lambda: lan.has(a, ChatDelivered, 2), timeout=10)  # the real one arrives
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"hello", b"pay alice"]


@pytest.mark.parametrize("nonce_forgotten", [False, True])
def test_a_recorded_handshake_replayed_later_opens_nothing(nonce_forgotten: bool) -> None:
    # Remembered, its SYN is dropped as a replay; forgotten (past `syn_nonce_memory`), the SYN
    # draws a SYN_ACK with a fresh nonce, which the recorded ACK and CHAT do not fit.
    lan, a, b = keyed_pair(7, lan_key(seed=1), lan_key(seed=2))
    recorded: list[Frame] = []
    lan.tap = lambda f: recorded.append(f) if f.src == a.mac and f.session else None
    a.send_chat(b.mac, "once", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=10)
    a.close(b.mac, lan.now)
    assert lan.run(lambda: not a.sessions() and not b.sessions(), timeout=60)
    lan.tap = None
    if nonce_forgotten:
        b._syn_nonces_used.clear()
    opened_before = len(lan.of(b, SessionOpened))
    for frame in recorded:  # the whole of a's side, in order, again
        b.receive_frame(frame, lan.now)
        lan.run_for(0.001)
    lan.run_for(30.0)
    assert len(lan.of(b, SessionOpened)) == opened_before
    assert [m.text for m in lan.of(b, ChatReceived)] == [b"once"]
    if nonce_forgotten:
        assert b.drops["bad_auth"] > 0  # the old ACK and CHAT do not fit the new nonce
    else:
        assert b.drops["replayed_syn"] == 1 and b.drops["bad_auth"] == 0


def test_recorded_syns_replayed_in_a_flood_cannot_lock_their_sender_out() -> None:
    # An eavesdropper records a's SYNs, then replays them hard once the sessions are over: they
    # are true SYNs, but each opened a session already, so b drops them before they spend a's
    # accept budget (5/s, burst 10) or a session slot, and a's next real SYN gets in at once.
    lan, a, b = keyed_pair(11, lan_key(seed=1), lan_key(seed=2))
    syns: list[Frame] = []
    lan.tap = lambda f: syns.append(f) if f.type is FrameType.SYN and f.src == a.mac else None
    for n in range(3):
        a.send_chat(b.mac, f"message {n}", lan.now)
        assert lan.run(lambda n=n: lan.has(a, ChatDelivered, n + 1), timeout=10)
        a.close(b.mac, lan.now)
        assert lan.run(lambda: not a.sessions() and not b.sessions(), timeout=60)
    lan.tap = None
    assert len({f.trailer.nonce for f in syns if f.trailer}) == 3
    for _ in range(20):  # 60 replays in 0.3 s: far past the burst
        for syn in syns:
            b.receive_frame(syn, lan.now)
            assert b.frames_to_send(lan.now) == []  # no SYN_ACK, no ERROR: nothing to answer
        lan.run_for(0.005)
    assert b.drops["replayed_syn"] == 60
    assert b.drops["rate_limited"] == 0 and b.sessions() == []
    assert auth_drops(b) == {}  # a replay is not a key mismatch
    opened = len(lan.of(b, SessionOpened))
    a.send_chat(b.mac, "still me", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered, 4), timeout=2)
    assert len(lan.of(b, SessionOpened)) == opened + 1


def first_chat_recording(
    seed: int, kind: FrameType
) -> tuple[Lan, NodeEngine, NodeEngine, list[Frame]]:
    """A keyed pair after a's first chat to b, and every `kind` frame put on the wire for it."""
    lan, a, b = keyed_pair(seed, lan_key(seed=1), lan_key(seed=2))
    recorded: list[Frame] = []
    lan.tap = lambda f: recorded.append(f) if f.type is kind else None
    a.send_chat(b.mac, "hello", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=10)
    lan.tap = None
    return lan, a, b, recorded


def test_a_forged_syn_with_a_used_nonce_is_a_bad_seal_not_a_replay() -> None:
    lan, a, b, syns = first_chat_recording(12, FrameType.SYN)
    a.close(b.mac, lan.now)
    assert lan.run(lambda: not b.sessions(), timeout=60)
    raw = raw_of(syns[0])
    raw[-1] ^= 1  # the tag no longer matches
    refresh_crc(raw)
    b.receive_frame(decode_frame(bytes(raw)), lan.now)
    assert b.drops["bad_auth"] == 1 and b.drops["replayed_syn"] == 0


def test_a_syn_repeated_while_its_session_is_held_is_answered_not_refused() -> None:
    # The initiator repeats its SYN (same nonce) when the SYN_ACK is lost: still welcome.
    lan, a, b = keyed_pair(13, lan_key(seed=1), lan_key(seed=2))
    lan.drop(FrameType.SYN_ACK, nth=1)
    lan.drop(FrameType.SYN_ACK, nth=2)
    a.send_chat(b.mac, "third time lucky", lan.now)
    assert lan.run(lambda: lan.has(a, ChatDelivered), timeout=20)
    assert b.drops["replayed_syn"] == 0 and auth_drops(b) == {}


def test_the_syn_nonces_remembered_are_bounded() -> None:
    lan, a, b = keyed_pair(14, lan_key(seed=1), lan_key(seed=2))
    b.config = dataclasses.replace(b.config, syn_nonce_memory=2)
    for n in range(4):
        a.send_chat(b.mac, f"m{n}", lan.now)
        assert lan.run(lambda n=n: lan.has(a, ChatDelivered, n + 1), timeout=10)
        a.close(b.mac, lan.now)
        assert lan.run(lambda: not b.sessions(), timeout=60)
    assert len(b._syn_nonces_used) == 2


def test_a_replayed_keepalive_does_not_keep_a_dead_peer_alive() -> None:
    # A KEEPALIVE sealed with the session key, recorded and played every 0.5 s after its
    # sender went away: its counter is not newer than the last, so the session still dies.
    lan, a, b, _session = open_keyed_session()
    keepalives: list[Frame] = []
    lan.tap = lambda f: keepalives.append(f) if f.type is FrameType.KEEPALIVE else None
    assert lan.run(lambda: any(f.src == b.mac for f in keepalives), timeout=5)
    recorded = next(f for f in keepalives if f.src == b.mac)
    lan.tap = None
    lan.unplug(b)
    started = lan.now
    while not lan.has(a, SessionFailed) and lan.now - started < 30:
        a.receive_frame(recorded, lan.now)
        lan.run_for(0.5)
    (failed,) = lan.of(a, SessionFailed)
    assert "sent nothing for" in failed.error.message
    assert lan.now - started < 10  # dead_after is 5 s
    assert a.drops["stale_keepalive"] > 0 and auth_drops(a) == {}


def test_fresh_keepalives_keep_an_idle_session_open() -> None:
    lan, a, _b, session = open_keyed_session()
    lan.run_for(30.0)  # idle: only KEEPALIVEs, each with a higher counter
    assert [s.session for s in a.sessions()] == [session]
    assert not lan.has(a, SessionFailed) and a.drops["stale_keepalive"] == 0


def test_forged_unsealed_feedback_does_not_keep_a_sealed_session_alive() -> None:
    lan, a, b, session = open_keyed_session()
    lan.unplug(b)
    started = lan.now
    seq = 0
    while not lan.has(a, SessionFailed) and lan.now - started < 30:
        seq += 1
        forged = Frame(
            a.mac, b.mac, session, seq, Feedback(cum_ack=0, credit=1, highest=0, kernel_drops=0)
        )
        a.receive_frame(forged, lan.now)
        lan.run_for(0.5)
    assert lan.has(a, SessionFailed) and lan.now - started < 10


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sealed_frames(), min_size=1, max_size=6))
def test_a_keyed_node_never_raises_and_never_acts_on_frames_sealed_with_other_keys(
    frames: list[Frame],
) -> None:
    lan, a, b, session = open_keyed_session()
    received = len(lan.of(b, ChatReceived))
    now = lan.now
    for frame in frames:
        aimed = dataclasses.replace(frame, dst=b.mac, src=a.mac, session=session)
        b.receive_frame(decode_frame(encode_frame(aimed)), now)
        b.frames_to_send(now)
    lan.run_for(1.0)
    assert len(lan.of(b, ChatReceived)) == received
    assert [s.session for s in b.sessions()] == [session]


def test_unsealed_types_pass_a_keyed_node_unchecked() -> None:
    # PING and PONG are answered by a C thread without a key, DATA and FEEDBACK are the data
    # path's: none is sealed, and a keyed node does not count them as unauthenticated.
    lan, a, b, session = open_keyed_session()
    b.receive_frame(Frame(b.mac, a.mac, session, 1, Keepalive()), lan.now)
    assert b.drops["unauthenticated"] == 1
    seq = a.ping(b.mac, lan.now)
    assert lan.run(lambda: a.ping_stats(b.mac).received == 1, timeout=5), seq
    data = Frame(b.mac, a.mac, session, 7, Data(payload=b"chunk"))
    feedback = Frame(
        b.mac, a.mac, session, 1, Feedback(cum_ack=0, credit=1, highest=0, kernel_drops=0)
    )
    for frame in (data, feedback):
        b.receive_frame(decode_frame(encode_frame(frame)), lan.now)
    assert b.drops["unauthenticated"] == 1
    assert [s.session for s in b.sessions()] == [session]


def test_a_session_that_had_opened_and_then_fails_is_not_blamed_on_the_key() -> None:
    lan, a, b, session = open_keyed_session()
    b.send_chat(a.mac, "still here", lan.now)
    assert lan.run(lambda: lan.has(b, ChatDelivered, 1), timeout=10)
    lan.unplug(b)  # now the open session dies of silence: not a key problem
    stranger = Frame(a.mac, b.mac, session, 50, Keepalive())  # unsealed, b's MAC
    a.receive_frame(stranger, lan.now)  # refused during the session, and never cleared
    assert a.drops["unauthenticated"] == 1
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=120)
    (failed,) = lan.of(a, SessionFailed)
    assert "LAN key" not in failed.error.message


def test_a_forged_hello_before_a_handshake_does_not_take_the_blame_for_it() -> None:
    # Someone sends an unsealed HELLO with b's MAC; later a's handshake with b fails because b
    # is unplugged. The refusal came before the handshake, so it explains nothing.
    lan, a, b = keyed_pair(15, lan_key(seed=1), lan_key(seed=2))
    assert lan.run(lambda: b.mac in {p.mac for p in a.peers()}, timeout=30)
    lan.unplug(b)
    lan.run_for(1.0)  # what b had in flight has landed
    forged = Frame(
        BROADCAST_MAC,
        b.mac,
        0,
        1,
        Hello(node_id=9, ts_ns=0, ver_min=1, ver_max=1, mtu=1500, caps=0, name="b"),
    )
    a.receive_frame(forged, lan.now)
    assert a.drops["unauthenticated"] == 1
    lan.run_for(0.1)
    a.send_chat(b.mac, "are you there", lan.now)
    assert lan.run(lambda: lan.has(a, SessionFailed), timeout=60)
    (failed,) = lan.of(a, SessionFailed)
    assert "no answer" in failed.error.message and "LAN key" not in failed.error.message


def test_a_syn_with_another_nonce_for_a_held_session_is_refused() -> None:
    lan, a, b, (syn,) = first_chat_recording(16, FrameType.SYN)
    other = dataclasses.replace(syn, trailer=None, seal=(lan_key().group, bytes(16)))
    b.receive_frame(decode_frame(encode_frame(other)), lan.now)
    assert b.drops["bad_auth"] == 1
    assert [s.session for s in b.sessions()] == [syn.session]
    a.send_chat(b.mac, "and again", lan.now)  # the session is unharmed
    assert lan.run(lambda: lan.has(a, ChatDelivered, 2), timeout=10)


def test_a_second_syn_ack_cannot_change_an_initiators_session_key() -> None:
    # Sealed under the key its own nonce would give, a SYN_ACK from another handshake verifies;
    # the initiator holds the first one's key and refuses it, and the session carries on.
    lan, a, b, (syn_ack,) = first_chat_recording(17, FrameType.SYN_ACK)
    session = syn_ack.session
    nonce = bytes(range(16))
    key = lan_key().session_key(a.mac, b.mac, session, a._slots[(b.mac, session)].nonce, nonce)
    forged = dataclasses.replace(syn_ack, trailer=None, seal=(key, nonce))
    a.receive_frame(decode_frame(encode_frame(forged)), lan.now)
    assert a.drops["bad_auth"] == 1
    b.send_chat(a.mac, "unharmed", lan.now)
    assert lan.run(lambda: lan.has(b, ChatDelivered, 1), timeout=10)


def test_before_its_syn_ack_an_initiator_takes_only_an_error_sealed_with_the_group_key() -> None:
    lan, a, b = keyed_pair(18, lan_key(seed=1), lan_key(seed=2))
    lan.unplug(b)
    a.send_chat(b.mac, "hi", lan.now)
    lan.step()
    ((_, session),) = a._slots
    group = lan_key().group
    for body in (Keepalive(), Close(reason=0, text="")):
        seq = 1 if isinstance(body, Close) else 0
        frame = Frame(a.mac, b.mac, session, seq, body, seal=(group, b""))
        a.receive_frame(decode_frame(encode_frame(frame)), lan.now)
    assert a.drops["bad_auth"] == 2
    error = Frame(a.mac, b.mac, session, 0, Error(code=int(ErrorCode.BUSY), text="full"))
    a.receive_frame(
        decode_frame(encode_frame(dataclasses.replace(error, seal=(group, b"")))), lan.now
    )
    lan.run_for(0.01)
    (failed,) = lan.of(a, SessionFailed)
    assert "busy" in failed.error.message


@pytest.mark.parametrize("mtu", [1280, 1500, 9000])
def test_a_sealed_file_accept_with_the_most_ranges_still_fits_the_mtu(mtu: int) -> None:
    # The daemon sizes FILE_ACCEPT's `have` for the MTU less the tag (daemon/transfers.py).
    count = max_have_ranges(mtu - TAG_LEN)
    have = tuple((2 * i, 2 * i + 1) for i in range(count))
    frame = Frame(b"\x02" * 6, b"\x04" * 6, 9, 1, FileAccept(transfer_id=1, have=have))
    sealed = encode_frame(dataclasses.replace(frame, seal=(TagKey(SECRET), b"")))
    assert len(sealed) - ETH_HLEN <= mtu
    more = FileAccept(transfer_id=1, have=(*have, (2 * count, 2 * count + 1)))
    bigger = encode_frame(dataclasses.replace(frame, body=more, seal=(TagKey(SECRET), b"")))
    assert len(bigger) - ETH_HLEN > mtu  # the bound is tight, not merely safe


@pytest.mark.parametrize("key", [None, SECRET], ids=["no key", "key"])
def test_the_daemon_sizes_file_accept_for_the_mtu_less_the_tag(key: bytes | None) -> None:
    # The receiving daemon builds its IncomingTransfer with the session's MTU less the trailer
    # its engine seals with, so the most `have` ranges still fit (the test above).
    engine = NodeEngine(
        bytes.fromhex("020000000001"),
        "r",
        9000,
        rng=random.Random(1),
        key=None if key is None else lan_key(key),
    )
    runner = SimpleNamespace(
        engine=engine, receive_sockets=None, now=lambda: 1.0, flush=lambda: None, counters={}
    )
    transfers = Transfers(runner, recv_dir=None, accept="all")  # type: ignore[arg-type]
    peer, session = bytes.fromhex("020000000002"), 0x77
    transfers._session_mtu[session] = 1500
    end = FileEnd(transfer_id=1, digest=int(Digest.SHA256), digest_value=bytes(32))
    transfers.on_event(ControlReceived(session, peer, end))
    incoming = transfers.incoming[session].incoming
    assert incoming._max_have == max_have_ranges(1500 - (TAG_LEN if key else 0))


# --- the command ----------------------------------------------------------------------------------


def test_keygen_command_writes_json_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lan.key"
    assert cli.main(["keygen", "-o", str(path), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made == {"path": str(path), "key_id": load_key_file(path).key_id}
    assert cli.main(["keygen", "-o", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"l2fast: error: LAN key {path}: already exists",
        "l2fast: hint: keep it, or remove it first to replace the LAN's key",
    ]


@pytest.mark.parametrize("uid", [0, 1000])
def test_keygen_names_the_next_step_a_root_daemon_needs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uid: int,
) -> None:
    # Run as a user, the file is theirs: a root daemon refuses it until root owns it.
    from l2fast.commands import keygen

    monkeypatch.setattr(keygen.os, "geteuid", lambda: uid)
    path = tmp_path / "lan.key"
    assert cli.main(["keygen", "-o", str(path)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    chown = f"sudo chown root {path}; " if uid else ""
    assert last == f"next: copy it to every host, then: {chown}sudo l2fast daemon --key {path}"


def test_daemon_refuses_a_bad_key_before_anything_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root it would open the interface next; the key is read first, so no socket is needed
    # to see the refusal, and $L2FAST_KEY_FILE is the default for --key.
    monkeypatch.setenv("L2FAST_KEY_FILE", str(tmp_path / "missing.key"))
    if os.geteuid() != 0:
        pytest.skip("l2fast daemon checks for raw-socket rights before its options; not root")
    assert cli.main(["daemon", "-i", "lo"]) == 1
    err = capsys.readouterr().err
    assert "LAN key" in err and "no such file" in err and "l2fast keygen -o" in err
