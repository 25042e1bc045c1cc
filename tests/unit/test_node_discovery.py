"""Discovery: HELLO / HELLO_ACK, the neighbour table, expiry and reply rate limits."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from l2fast.node.config import NodeConfig
from l2fast.node.discovery import Discovery
from l2fast.node.events import PeerDiscovered, PeerExpired, PeerUpdated
from l2fast.wire.constants import BROADCAST_MAC, Caps, Flags, FrameType
from l2fast.wire.frames import Frame, Hello, HelloAck
from tests.node_harness import Lan, pair, triple

ME = b"\x02\x00\x00\x00\x00\x01"


def discovery(config: NodeConfig | None = None) -> Discovery:
    return Discovery(
        local_mac=ME,
        node_id=1,
        name="me",
        mtu=1500,
        caps=int(Caps.CHAT),
        rng=random.Random(0),
        config=config or NodeConfig(),
        drops=Counter(),
    )


def hello(src: bytes, node_id: int = 2, name: str = "peer", reply: bool = True) -> Frame:
    body = Hello(node_id=node_id, ts_ns=1000, ver_min=1, ver_max=1, mtu=9000, caps=1, name=name)
    return Frame(BROADCAST_MAC, src, 0, 7, body, int(Flags.REPLY) if reply else 0)


@pytest.mark.parametrize("seed", range(5))
def test_three_hosts_find_each_other_within_two_seconds(seed: int) -> None:
    lan, a, b, c = triple(seed, wire=True, loss=0.05, dup=0.05, reorder=0.05)
    nodes = (a, b, c)
    assert lan.run(lambda: all(len(n.peers()) == 2 for n in nodes), timeout=2.0)
    names = {n.mac: n.name for n in nodes}
    for node in nodes:
        for peer in node.peers():
            assert peer.name == names[peer.mac]
            assert peer.mtu == 1500 and peer.caps == int(Caps.CHAT | Caps.ZLIB)
            assert peer.node_id == lan.nodes[peer.mac].node_id


def test_start_hello_asks_for_replies_and_ack_is_unicast_with_rtt() -> None:
    lan, a, b = pair(latency=0.001)
    frames: list[Frame] = []
    lan.tap = frames.append
    lan.run_for(0.01)
    hellos = [f for f in frames if f.type is FrameType.HELLO]
    acks = [f for f in frames if f.type is FrameType.HELLO_ACK]
    assert all(f.dst == BROADCAST_MAC and f.flags & Flags.REPLY for f in hellos)
    assert {(f.src, f.dst) for f in acks} == {(a.mac, b.mac), (b.mac, a.mac)}
    for ack in acks:
        assert isinstance(ack.body, HelloAck)
        # The answer echoes the HELLO's counter and timestamp.
        assert ack.seq == 1 and ack.body.echo_ts_ns == 0
    (pa,) = a.peers()
    assert pa.rtt == pytest.approx(0.002)  # two 1 ms hops


def test_periodic_hellos_are_jittered_around_the_interval() -> None:
    lan = Lan()
    a = lan.add()
    times: list[float] = []
    lan.tap = lambda f: times.append(lan.now) if f.type is FrameType.HELLO else None
    lan.run_for(100.0)
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert 25 <= len(gaps) <= 45
    assert all(3.0 * 0.75 <= g <= 3.0 * 1.25 + 1e-9 for g in gaps)
    assert len({round(g, 6) for g in gaps}) > 10  # really jittered, not a fixed period
    assert a.drops["own_hello"] == 0


def test_discover_sends_a_reply_hello_now() -> None:
    lan, a, _b = pair()
    lan.run_for(1.0)
    before = lan.sent[FrameType.HELLO_ACK]
    a.discover(lan.now)
    lan.run_for(0.01)
    assert lan.sent[FrameType.HELLO_ACK] == before + 1


def test_own_hello_is_ignored() -> None:
    d = discovery()
    d.receive_frame(hello(b"\x02\x00\x00\x00\x00\x09", node_id=1), 0.0)
    assert len(d.table) == 0 and d.frames_to_send(0.0) == []
    assert d._drops["own_hello"] == 1


def test_stranger_gets_an_answer_even_without_reply_flag() -> None:
    d = discovery()
    src = b"\x02\x00\x00\x00\x00\x09"
    d.receive_frame(hello(src, reply=False), 0.0)
    assert [f.dst for f in d.frames_to_send(0.0)] == [src]
    d.receive_frame(hello(src, reply=False), 1.0)  # known now: periodic HELLOs get no answer
    assert d.frames_to_send(1.0) == []
    assert isinstance(d.next_event(), PeerDiscovered) and d.next_event() is None


def test_changed_announcement_updates_the_entry() -> None:
    d = discovery()
    src = b"\x02\x00\x00\x00\x00\x09"
    d.receive_frame(hello(src, name="old"), 0.0)
    d.receive_frame(hello(src, name="new", node_id=3), 1.0)
    events = list(iter(d.next_event, None))
    assert [type(e) for e in events] == [PeerDiscovered, PeerUpdated]
    assert isinstance(events[1], PeerUpdated)
    peer = events[1].peer
    assert (peer.name, peer.node_id, peer.first_seen, peer.last_seen) == ("new", 3, 0.0, 1.0)


def test_silent_peer_expires_after_missed_intervals() -> None:
    lan, a, b, c = triple()
    assert lan.run(lambda: len(a.peers()) == 2, timeout=1)
    lan.run_for(5.0)
    lan.unplug(c)
    gone = lan.now
    assert lan.run(lambda: lan.has(a, PeerExpired) and lan.has(b, PeerExpired), timeout=30)
    expired = lan.of(a, PeerExpired)
    assert [e.peer.mac for e in expired] == [c.mac]
    # 3.5 intervals of 3 s after the last HELLO heard, not earlier.
    assert lan.now - expired[0].peer.last_seen == pytest.approx(3.5 * 3.0, abs=0.01)
    assert lan.now - gone <= 3.5 * 3.0 + 0.01
    assert [p.mac for p in a.peers()] == [b.mac]
    lan.run_for(30.0)  # the live peer never expires
    assert len(lan.of(a, PeerExpired)) == 1


def test_hello_flood_from_one_mac_is_rate_limited() -> None:
    d = discovery()
    src = b"\x02\x00\x00\x00\x00\x09"
    for i in range(10_000):
        d.receive_frame(hello(src), i / 10_000)  # 10 000 REPLY HELLOs in one second
    acks = d.frames_to_send(1.0)
    config = NodeConfig()
    assert len(acks) <= config.reply_burst_per_peer + config.reply_rate_per_peer * 1.0
    assert len(acks) >= config.reply_burst_per_peer
    assert d._drops["rate_limited"] == 10_000 - len(acks)
    assert len(d.table) == 1


def test_hello_flood_from_forged_macs_is_capped_globally_and_table_bounded() -> None:
    config = NodeConfig(max_neighbours=100)
    d = discovery(config)
    rng = random.Random(1)
    for i in range(10_000):
        src = bytes([0x02]) + rng.randbytes(5)
        d.receive_frame(hello(src, node_id=i + 10), i / 10_000)
    acks = d.frames_to_send(1.0)
    assert len(acks) <= config.reply_burst_global + config.reply_rate_global * 1.0
    assert len(d.table) == 100
    assert d._drops["table_full"] == 10_000 - 100


def test_node_level_flood_counts_rate_limited() -> None:
    lan, a, _b = pair()
    lan.run_for(0.1)
    attacker = b"\x02\x00\x00\x00\x00\x66"
    for i in range(5_000):
        a.receive_frame(hello(attacker, node_id=99), lan.now + i * 1e-5)
    out = [f for f in a.frames_to_send(lan.now) if f.type is FrameType.HELLO_ACK]
    assert len(out) <= 10
    assert a.drops["rate_limited"] >= 4_990


def test_neighbour_table_find_by_name_or_mac() -> None:
    d = discovery()
    src = b"\x02\x00\x00\x00\x00\x09"
    d.receive_frame(hello(src, name="bravo"), 0.0)
    table = d.table
    found = table.find("bravo")
    assert found is not None and found.mac == src
    assert table.find("02:00:00:00:00:09") == found
    assert table.find("nobody") is None
