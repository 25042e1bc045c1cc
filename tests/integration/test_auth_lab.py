"""A LAN key on the namespace lab (PROTOCOL.md §Authentication): daemons started with the same
`--key` find each other, chat and send a verified file; a node without the key is neither heard
nor hears them, and its user is told why; a command without a daemon joins with
L2FAST_KEY_FILE. Every wait is bounded, and the lab and daemons go away whatever happens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from node_helpers import wait_until
from test_send_lab import SendLab, final_event, make_file, make_lab, sha256

from l2fast.lab.state import Impairment

__all__ = ["make_lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.root

MIB = 1 << 20
PEERS_WITHIN_S = 10.0
AUTH_DROPS = ("unauthenticated", "bad_auth", "needs_key")


def keyed_daemon(lab: SendLab, host: str, key: Path | None) -> Path:
    rx = lab.log_dir / f"rx-{host}"
    rx.mkdir(exist_ok=True)
    lab.recv[host] = rx
    extra = ("--key", str(key)) if key is not None else ()
    lab.start_daemon(host, "--accept", "all", "--recv-dir", str(rx), *extra)
    lab.wait_ready(host)
    return rx


def peer_names(lab: SendLab, host: str) -> set[str]:
    return {p["name"] for p in lab.status(host)["peers"]}


def auth_drops(status: dict[str, Any]) -> dict[str, int]:
    return {r: status["drops"].get(r, 0) for r in AUTH_DROPS if status["drops"].get(r, 0)}


def test_keyed_daemons_talk_and_a_node_without_the_key_is_refused(
    make_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab: SendLab = make_lab(hosts=3)
    key = tmp_path / "lan.key"
    made = lab.json("h1", "keygen", "-o", str(key))
    assert made["key_id"] and key.stat().st_mode & 0o777 == 0o600

    rx2 = keyed_daemon(lab, "h2", key)
    keyed_daemon(lab, "h1", key)
    keyed_daemon(lab, "h3", None)
    assert wait_until(lambda: "h2" in peer_names(lab, "h1"), PEERS_WITHIN_S)
    s1, s2, s3 = (lab.status(h) for h in ("h1", "h2", "h3"))
    assert s1["auth"] == s2["auth"] == {"key_id": made["key_id"]}
    assert s3["auth"] is None

    # Keyed: chat and a verified file, with nothing refused between them.
    lab.ok("h1", "chat", "h2", "sealed hello")
    assert [e["text"] for e in lab.history("h2")] == ["sealed hello"]
    src = make_file(tmp_path / "keyed.bin", 24 * MIB + 5, seed=14)
    result = lab.send("h1", "h2", src)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    event = final_event(result.stdout)
    assert event["verified"] is True and event["digest"] == sha256(src) == sha256(rx2 / "keyed.bin")

    # Without the key: not listed, not heard, and the user is told why.
    assert "h3" not in peer_names(lab, "h1") | peer_names(lab, "h2")
    assert peer_names(lab, "h3") == set()
    refused = lab.cli("h3", "chat", lab.mac("h2"), "let me in")
    assert refused.returncode == 1
    assert "sealed with a LAN key and this node has none" in refused.stderr
    assert "let me in" not in json.dumps(lab.history("h2"))
    assert auth_drops(lab.status("h2")).get("unauthenticated", 0) > 0
    assert auth_drops(lab.status("h3")).get("needs_key", 0) > 0
    assert auth_drops(lab.status("h1")).keys() <= {"unauthenticated"}  # h3's HELLOs only
    # discover, peers and a peer's name do not just say "nobody": they name the nodes that
    # are there but not heard, and why.
    keyless = "its frames were sealed with a LAN key and this node has none"
    for command in (("discover",), ("peers",), ("chat", "h2", "by name")):
        answer = lab.cli("h3", *command)
        assert keyless in answer.stderr, (command, answer.stderr)
        assert lab.mac("h1") in answer.stderr and lab.mac("h2") in answer.stderr
        assert answer.returncode == (0 if command == ("peers",) else 1)
    assert "not heard: 2 nodes were not heard" in lab.ok("h3", "status").stdout

    # A command without a daemon joins with the key file named in L2FAST_KEY_FILE.
    lab.stop_daemon("h3")
    monkeypatch.setenv("L2FAST_KEY_FILE", str(key))
    lab.ok("h3", "chat", lab.mac("h2"), "one-shot, sealed")
    assert [e["text"] for e in lab.history("h2")] == ["sealed hello", "one-shot, sealed"]


def test_sealed_frames_through_the_impairment_relay(
    make_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loss, duplication, reordering and corruption across the kernel with a LAN key: every
    retransmitted or duplicated control frame still checks, corrupted ones fail the CRC first."""
    faults = Impairment(loss=0.02, dup=0.01, reorder=0.01, corrupt=0.001, seed=11)
    lab: SendLab = make_lab(mtu=9000, impairment=faults)
    key = tmp_path / "lan.key"
    lab.ok("h1", "keygen", "-o", str(key))
    rx = keyed_daemon(lab, "h2", key)
    monkeypatch.setenv("L2FAST_KEY_FILE", str(key))  # h1 runs its own node, keyed
    src = make_file(tmp_path / "lossy.bin", 24 * MIB + 5, 11)
    result = lab.send("h1", "h2", src)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    event = final_event(result.stdout)
    assert event["digest"] == sha256(src) == sha256(rx / "lossy.bin")
    assert event["retransmitted_frames"] > 0  # the relay did lose frames
    for i in range(5):
        lab.ok("h1", "chat", lab.mac("h2"), f"through the relay {i}")
    got = [e["text"] for e in lab.history("h2")]
    assert got == [f"through the relay {i}" for i in range(5)]
    assert auth_drops(lab.status("h2")) == {}


def test_a_daemon_with_a_loose_key_file_refuses_to_start(make_lab: Any, tmp_path: Path) -> None:
    lab: SendLab = make_lab(hosts=2)
    key = tmp_path / "loose.key"
    lab.ok("h1", "keygen", "-o", str(key))
    key.chmod(0o644)
    result = lab.cli("h1", "daemon", "-i", "eth0", "--key", str(key), timeout=20)
    assert result.returncode != 0
    assert "lets other users read or change it" in result.stderr
    assert f"chmod 600 {key}" in result.stderr
    assert "Traceback" not in result.stderr
