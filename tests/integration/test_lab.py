"""The lab itself (issue 3): frames cross it at every MTU and topology, the relay's faults match
the configured rates and are reproducible, `down` leaves nothing, and the CLI works end to end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from l2fast import cli
from l2fast.lab import cli as lab_cli
from l2fast.lab import iproute, netns, relay, state
from l2fast.lab.iproute import LabError
from l2fast.lab.state import (
    Impairment,
    LabRecord,
    host_mac,
    host_ns,
    record_path,
    relay_status_path,
)

if TYPE_CHECKING:  # the fixture's type; tests/integration is not a package
    from conftest import LabFactory

BROADCAST = "ff:ff:ff:ff:ff:ff"
REPO = Path(__file__).resolve().parents[2]


def l2fast_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real command line, `python -m l2fast ...`, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "l2fast", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"l2fast {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def wait_relay_settled(lab: str, min_rx: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """The relay's published status once it has seen `min_rx` frames and stopped changing."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while time.monotonic() < deadline:
        data: dict[str, Any] = json.loads(relay_status_path(lab).read_text())
        counters = data["counters"]
        if counters["rx"] >= min_rx and previous == counters:
            return data
        previous = counters
        time.sleep(0.4)  # longer than the relay's publishing period
    raise AssertionError(f"relay of {lab} did not settle at >= {min_rx} frames: {previous}")


def within_sigma(observed: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    """|observed - trials*p| within `sigmas` binomial standard deviations."""
    sd = math.sqrt(trials * p * (1 - p))
    return abs(observed - trials * p) <= sigmas * sd


# ---- argument checking (no root needed: it happens before the root check)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mtu", "1279"], "--mtu must be between 1280 and 65535"),
        (["--mtu", "65536"], "--mtu must be between 1280 and 65535"),
        (["--loss", "1.5"], "--loss must be a probability"),
        (["--dup", "-0.1"], "--dup must be a probability"),
        (["--corrupt", "nan"], "--corrupt must be a probability"),
        (["--hosts", "1"], "--hosts must be between 2"),
        (["--rate", "fast"], "bad rate 'fast'"),
        (["--seed", "-1"], "--seed must be between 0"),
    ],
)
def test_up_rejects_bad_options(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["lab", "up", "--name", "x", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "bps"),
    [("1gbit", 10**9), ("10G", 10**10), ("100mbit", 10**8), ("2.5gbit", 2_500_000_000)],
)
def test_rates_are_bits_per_second(text: str, bps: int) -> None:
    assert state.parse_rate(text) == bps
    assert state.parse_rate(state.format_rate(bps)) == bps


def test_up_rejects_names_that_do_not_fit_interface_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["lab", "up", "--name", "averylongname", "--hosts", "3"]) == 1
    err = capsys.readouterr().err
    assert "too long" in err and "15-character" in err
    assert cli.main(["lab", "up", "--name", "bad-name"]) == 1
    assert "bad lab name" in capsys.readouterr().err


def test_not_root_gets_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    # Each says what it needs root for (status only reads, but reads inside the namespaces).
    for argv, doing in (
        (["lab", "up", "--name", "x"], "creates network namespaces and links"),
        (["lab", "status"], "status looks into the lab hosts' network namespaces"),
        (["lab", "down", "--name", "x"], "down removes network namespaces and links"),
        (["lab", "exec", "h1", "--", "true"], "exec enters a lab host's network namespace"),
    ):
        assert cli.main(argv) == 77
        err = capsys.readouterr().err.splitlines()
        assert err[0] == f"l2fast: error: l2fast lab {doing}, which needs root"
        assert err[1].startswith("l2fast: hint: run it with sudo")


def test_exec_host_names_resolve_or_explain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    for name, hosts in (("alpha", 2), ("beta", 3)):
        state.create_record(LabRecord(name=name, hosts=hosts, mtu=1500, topology="pair"))
    assert netns.resolve_host("beta-h3")[1] == "beta-h3"
    assert netns.resolve_host("h3")[1] == "beta-h3"  # only beta has a third host
    assert netns.resolve_host("h1", "alpha")[1] == "alpha-h1"
    with pytest.raises(LabError, match="several labs"):
        netns.resolve_host("h1")
    with pytest.raises(LabError, match="no lab has a host"):
        netns.resolve_host("alpha-h3")
    with pytest.raises(LabError, match="bad host"):
        netns.resolve_host("alpha")


@pytest.mark.parametrize(
    "argv",
    [
        ["--name", "alpha", "h1", "--", "ip", "link"],
        ["h1", "--name", "alpha", "--", "ip", "link"],  # after HOST: argparse leaves it to us
        ["h1", "--name=alpha", "ip", "link"],
    ],
)
def test_exec_takes_the_lab_name_before_or_after_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    for name in ("alpha", "beta"):
        state.create_record(LabRecord(name=name, hosts=2, mtu=1500, topology="pair"))
    ran: list[list[str]] = []
    monkeypatch.setattr(netns, "require_root", lambda doing="": None)
    monkeypatch.setattr(lab_cli.iproute, "tool", lambda name: "/sbin/ip")
    monkeypatch.setattr(lab_cli.os, "execve", lambda path, args, env: ran.append(args))
    cli.main(["lab", "exec", *argv])
    assert ran == [["/sbin/ip", "netns", "exec", "alpha-h1", "ip", "link"]]


# ---- frames cross the lab


TOPOLOGIES = {
    "pair": {"hosts": 2, "impairment": None},
    "bridge": {"hosts": 3, "impairment": None},
    "relay-hub": {"hosts": 3, "impairment": Impairment(seed=3)},
}


@pytest.mark.root
@pytest.mark.parametrize("mtu", [1500, 9000, 65535])
@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_broadcast_and_unicast_cross_the_lab(
    labs: LabFactory, peers: Any, topology: str, mtu: int
) -> None:
    record = labs.up(mtu=mtu, **TOPOLOGIES[topology])  # type: ignore[arg-type]
    assert record.topology == topology.split("-")[0]
    h1 = host_mac(1)
    receivers = {
        i: peers(host_ns(record.name, i), "recv", src=h1, hello=True, expect=10 if i == 2 else 5)
        for i in range(2, record.hosts + 1)
    }
    for peer in receivers.values():
        peer.wait_ready()
    sender = host_ns(record.name, 1)
    sent = peers(sender, "send", dst=BROADCAST, count=5, payload="max").result()
    assert sent["sent"] == 5
    sent = peers(sender, "send", dst=host_mac(2), count=5, payload="max").result()
    assert sent["sent"] == 5

    full = mtu + 14  # every frame was as large as the MTU allows
    got = receivers[2].result()
    assert got["count"] == 10, got
    assert got["verdicts"] == {"OK": 10}
    assert got["sizes"] == [full]
    assert got["dsts"] == sorted([BROADCAST, host_mac(2)])
    for i in range(3, record.hosts + 1):
        other = receivers[i].result()
        # Broadcast reaches every host; unicast only its owner (the bridge or hub learned it).
        assert other["count"] == 5, other
        assert other["dsts"] == [BROADCAST]
        assert other["sizes"] == [full]


# ---- the relay's faults


FAULTS = Impairment(loss=0.05, dup=0.03, reorder=0.05, corrupt=0.02, seed=20240611)
N_FRAMES = 100_000


def run_faulty_transfer(labs: LabFactory, peers: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send N_FRAMES through a fresh relay lab; the relay's h1 port counters and the receiver."""
    record = labs.up(hosts=2, impairment=FAULTS)
    receiver = peers(host_ns(record.name, 2), "recv", src=host_mac(1), idle_s=1.5, max_s=60)
    receiver.wait_ready()
    # Paced well below what the relay and the receiver sustain, so that no frame is lost in a
    # kernel queue: every difference must come from the relay's faults.
    sent = peers(
        host_ns(record.name, 1), "send", dst=host_mac(2), count=N_FRAMES, payload=64, fps=120_000
    ).result()
    assert sent["sent"] == N_FRAMES
    got = receiver.result()
    status = wait_relay_settled(record.name, N_FRAMES)
    ingress = status["ports"][host_ns(record.name, 1)]
    egress = status["ports"][host_ns(record.name, 2)]
    assert status["counters"]["kernel_drops"] == 0, "the relay was overloaded"
    assert got["kernel_drops"] == 0, "the receiver was overloaded"
    assert egress["tx"] == got["count"]
    # `lab status` shows the same counters and a forwarding rate.
    shown = netns.lab_status(record.name)
    assert shown is not None and shown["relay"]["running"]
    assert shown["relay"]["counters"] == status["counters"]
    assert shown["relay"]["rate"]["peak_fps"] > 0
    text = l2fast_cli("lab", "status", "--name", record.name).stdout
    assert f"dropped {status['counters']['dropped']} " in text and "frames/s" in text
    netns.down(record.name)
    return ingress, got


@pytest.mark.root
@pytest.mark.slow
def test_relay_faults_match_rates_and_are_reproducible(labs: LabFactory, peers: Any) -> None:
    c, got = run_faulty_transfer(labs, peers)
    n = c["rx"]
    assert n == N_FRAMES
    survivors = n - c["dropped"]
    # Loss applies to every frame; the other faults to the frames that were not lost.
    assert within_sigma(c["dropped"], n, FAULTS.loss), c
    assert within_sigma(c["duplicated"], survivors, FAULTS.dup), c
    assert within_sigma(c["reordered"], survivors, FAULTS.reorder), c
    assert within_sigma(c["corrupted"], survivors, FAULTS.corrupt), c
    assert c["hold_full"] == 0 and c["tx_errors"] == 0 and c["truncated"] == 0

    # What the receiver saw agrees with the counters.
    assert got["count"] == survivors + c["duplicated"]
    bad = got["count"] - got["verdicts"].get("OK", 0)
    assert c["corrupted"] <= bad <= 2 * c["corrupted"]  # a corrupted frame may also be doubled
    assert got["distinct_ok"] < survivors
    # Each held frame arrives after 3 later ones: one inversion per held copy.
    assert 0.9 * c["reordered"] <= got["inversions"] <= 1.2 * c["reordered"]

    # Same seed, same input: the same faults, frame for frame.
    c2, got2 = run_faulty_transfer(labs, peers)
    assert c2 == c
    assert got2["digest"] == got["digest"]
    assert got2["count"] == got["count"]


# ---- shaping


@pytest.mark.root
@pytest.mark.parametrize("bypass", [False, None], ids=["no-bypass", "left-to-l2fast"])
def test_rate_shapes_each_host_egress(labs: LabFactory, peers: Any, bypass: bool | None) -> None:
    rate_bps = 200_000_000
    record = labs.up(hosts=2, rate_bps=rate_bps)
    for i in (1, 2):
        qdisc = iproute.qdisc_info(host_ns(record.name, i), "eth0")
        assert qdisc is not None and qdisc["kind"] == "tbf"
        assert qdisc["options"]["rate"] * 8 == rate_bps
    n, size = 2000, 1500 - 24
    receiver = peers(host_ns(record.name, 2), "recv", src=host_mac(1), expect=n, linger_s=0.1)
    receiver.wait_ready()
    # A qdisc only shapes sockets that do not bypass it. Left to l2fast (None), a socket goes
    # through a qdisc someone set up, however it was started (l2fast/qdisc.py): one bypassed
    # the lab's tbf unless started by `lab exec`, and ran at 2 Gbit/s through 200 Mbit/s.
    sent = peers(
        host_ns(record.name, 1), "send", dst=host_mac(2), count=n, payload=size, bypass=bypass
    ).result()
    got = receiver.result()
    assert sent["sent"] == n and got["count"] == n
    # Arrivals are spread at the shaped rate once the first bucketful (10 ms) has gone through;
    # the sender's own time says less, because the qdisc queues the last 20 ms of traffic.
    bits = n * (size + 38) * 8
    burst_bits = 10e-3 * rate_bps
    assert got["span_s"] >= 0.9 * (bits - burst_bits) / rate_bps, got


# ---- down


@pytest.mark.root
def test_down_leaves_nothing_behind(labs: LabFactory) -> None:
    record: LabRecord = labs.up(
        hosts=3, rate_bps=1_000_000_000, impairment=Impairment(loss=0.1, seed=9)
    )
    name = record.name
    assert relay.is_running(record.relay_pid, name)
    # A process started in a host must not keep the namespace alive.
    sleeper = subprocess.Popen(
        [sys.executable, "-m", "l2fast", "lab", "exec", f"{name}-h2", "--", "sleep", "60"],
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not iproute.netns_pids(f"{name}-h2") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert iproute.netns_pids(f"{name}-h2"), "lab exec did not start"

    assert netns.down(name) is True
    assert sleeper.wait(timeout=10) != 0
    assert [ns for ns in iproute.netns_list() if ns.startswith(f"{name}-")] == []
    assert iproute.root_links_with_prefix(name) == []
    assert relay.find_relays(name) == []
    assert not relay.is_running(record.relay_pid, name)
    assert not record_path(name).exists() and not relay_status_path(name).exists()
    assert netns.down(name) is False  # idempotent
    assert l2fast_cli("lab", "down", "--name", name).returncode == 0


@pytest.mark.root
def test_failed_up_removes_what_it_built(labs: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_tbf(*args: object) -> None:
        raise LabError("tc failed (simulated)")

    monkeypatch.setattr(iproute, "tbf", broken_tbf)
    with pytest.raises(LabError, match="simulated"):
        labs.up(hosts=3, rate_bps=10**9, impairment=Impairment(seed=1))
    name = labs.created[-1]
    assert [ns for ns in iproute.netns_list() if ns.startswith(f"{name}-")] == []
    assert not record_path(name).exists()
    assert relay.find_relays(name) == []


@pytest.mark.root
def test_up_refuses_an_existing_lab(labs: LabFactory, capsys: pytest.CaptureFixture[str]) -> None:
    record = labs.up()
    assert cli.main(["lab", "up", "--name", record.name]) == 1
    assert f"lab {record.name!r} exists already" in capsys.readouterr().err
    assert netns.lab_status(record.name) is not None  # the failed `up` did not remove it


# ---- the real CLI, as a user runs it


@pytest.mark.root
def test_cli_up_status_exec_down(labs: LabFactory) -> None:
    name = labs.new_name()
    said = l2fast_cli("lab", "up", "--name", name, "--hosts", "3", "--mtu", "9000").stdout
    # What to try next, as root runs it: no sudo, which a root shell may not even have.
    assert f"  remove: l2fast lab down --name {name}" in said.splitlines() and "sudo" not in said

    data = json.loads(l2fast_cli("lab", "status", "--json").stdout)
    (lab,) = [entry for entry in data["labs"] if entry["name"] == name]
    assert lab["topology"] == "bridge" and lab["complete"]
    assert [h["namespace"] for h in lab["hosts"]] == [f"{name}-h{i}" for i in (1, 2, 3)]
    assert [h["mtu"] for h in lab["hosts"]] == [9000, 9000, 9000]
    assert [h["mac"] for h in lab["hosts"]] == [host_mac(i) for i in (1, 2, 3)]
    assert {h["state"] for h in lab["hosts"]} == {"UP"}

    text = l2fast_cli("lab", "status", "--name", name).stdout
    assert host_mac(3) in text and "9000" in text

    out = l2fast_cli("lab", "exec", f"{name}-h2", "--", "cat", "/sys/class/net/eth0/mtu").stdout
    assert out.strip() == "9000"
    out = l2fast_cli(
        "lab", "exec", "--name", name, "h3", "--", "cat", "/sys/class/net/eth0/address"
    ).stdout
    assert out.strip() == host_mac(3)
    # IPv6 is off, so hosts stay silent unless a test sends something.
    out = l2fast_cli(
        "lab", "exec", f"{name}-h1", "--", "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"
    ).stdout
    assert out.strip() == "1"

    l2fast_cli("lab", "down", "--name", name)
    assert [ns for ns in iproute.netns_list() if ns.startswith(f"{name}-")] == []
    assert "did not exist" in l2fast_cli("lab", "down", "--name", name).stdout
