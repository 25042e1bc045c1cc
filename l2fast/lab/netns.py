"""Lab topologies in network namespaces: build (`up`), remove (`down`), inspect (`status`), and
find the namespace of a host for `lab exec`.

Host i of lab NAME is the namespace NAME-hI with one interface, eth0. Two hosts without faults
share one veth pair; more hosts meet on a Linux bridge in NAME-br; with faults every host's link
ends in NAME-relay, where the relay (l2fast.lab.relay) forwards between them. Every link is
created directly inside its namespaces, so the root namespace never sees a lab interface.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from l2fast.errors import NeedsPrivilege, as_root
from l2fast.lab import iproute, processes, relay
from l2fast.lab.iproute import LabError
from l2fast.lab.state import (
    HOST_IFNAME,
    TOPOLOGY_BRIDGE,
    TOPOLOGY_PAIR,
    TOPOLOGY_RELAY,
    LabRecord,
    LabSpec,
    bridge_ns,
    create_record,
    format_rate,
    host_mac,
    host_ns,
    lab_namespaces_in,
    list_labs,
    load_record,
    read_json,
    relay_ns,
    relay_status_path,
    remove_files,
    save_record,
)

BRIDGE_IFNAME = "br0"
PROCESS_STOP_TIMEOUT_S = 3.0
CARRIER_TIMEOUT_S = 5.0
_HOST_RE = re.compile(r"^h(\d+)$")


class LabNeedsRoot(NeedsPrivilege):
    """Namespaces, links and qdiscs can only be made (and looked into) by root."""

    def __init__(self, doing: str = "creates network namespaces and links") -> None:
        super().__init__(
            f"l2fast lab {doing}, which needs root", hint="run it with sudo: sudo l2fast lab ..."
        )


def require_root(doing: str = "creates network namespaces and links") -> None:
    """Raise LabNeedsRoot (saying what needs root: `doing`) unless this process is root."""
    if os.geteuid() != 0:
        raise LabNeedsRoot(doing)


def _ipv6_off(ns: str) -> None:
    # Without IPv6 a lab host sends nothing by itself (no router solicitations, no DAD, no MLD),
    # so every frame on the lab segment is one a test or a user sent.
    if Path("/proc/sys/net/ipv6").is_dir():
        iproute.sysctl(
            ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
        )


def _add_namespace(record: LabRecord, ns: str) -> None:
    # Recorded before it exists, so a failure right after still gets it removed.
    record.namespaces.append(ns)
    save_record(record)
    iproute.netns_add(ns)
    iproute.link_set(ns, "lo", "up")
    _ipv6_off(ns)


def up(spec: LabSpec) -> LabRecord:
    """Build the lab `spec` describes and return its record.

    Raises LabError (bad options, lab exists, a command failed) after removing whatever it had
    created, so a failed `up` leaves nothing behind.
    """
    spec.validate()
    require_root()
    leftovers = lab_namespaces_in(spec.name, iproute.netns_list())
    if leftovers and load_record(spec.name) is None:
        raise LabError(
            f"namespaces of a lab {spec.name!r} exist already: {', '.join(leftovers)}",
            hint=f"remove them: {as_root(f'l2fast lab down --name {spec.name}')}",
        )
    imp = spec.impairment
    record = LabRecord(
        name=spec.name,
        hosts=spec.hosts,
        mtu=spec.mtu,
        topology=spec.topology,
        rate_bps=spec.rate_bps,
        impairment=None
        if imp is None
        else {
            "loss": imp.loss,
            "dup": imp.dup,
            "reorder": imp.reorder,
            "corrupt": imp.corrupt,
            "seed": imp.seed,
        },
    )
    create_record(record)
    try:
        _build(spec, record)
    except BaseException:
        # Includes KeyboardInterrupt: a half-built lab is removed, then the error is shown.
        down(spec.name)
        raise
    record.complete = True
    save_record(record)
    return record


def _build(spec: LabSpec, record: LabRecord) -> None:
    hosts = record.host_namespaces
    mtu = str(spec.mtu)
    middle: str | None = None
    if spec.topology == TOPOLOGY_BRIDGE:
        middle = bridge_ns(spec.name)
    elif spec.topology == TOPOLOGY_RELAY:
        middle = relay_ns(spec.name)
    record.middle = middle
    if middle is not None:
        _add_namespace(record, middle)
    for ns in hosts:
        _add_namespace(record, ns)

    if spec.topology == TOPOLOGY_PAIR:
        iproute.veth_pair(HOST_IFNAME, hosts[0], HOST_IFNAME, hosts[1])
    else:
        assert middle is not None
        if spec.topology == TOPOLOGY_BRIDGE:
            iproute.bridge_add(middle, BRIDGE_IFNAME)
            # The bridge takes the smallest MTU of its ports; set it first so none is lowered.
            iproute.link_set(middle, BRIDGE_IFNAME, "mtu", mtu)
        for ns in hosts:
            # The host's peer in the middle carries the host's name: `ip -n NAME-br link` reads
            # like a patch panel.
            iproute.veth_pair(HOST_IFNAME, ns, ns, middle)
            iproute.link_set(middle, ns, "mtu", mtu)
            if spec.topology == TOPOLOGY_BRIDGE:
                iproute.link_set(middle, ns, "master", BRIDGE_IFNAME)
            iproute.link_set(middle, ns, "up")
        if spec.topology == TOPOLOGY_BRIDGE:
            iproute.link_set(middle, BRIDGE_IFNAME, "up")

    for i, ns in enumerate(hosts, start=1):
        iproute.link_set(ns, HOST_IFNAME, "address", host_mac(i), "mtu", mtu)
        iproute.link_set(ns, HOST_IFNAME, "up")
        if spec.rate_bps is not None:
            iproute.tbf(ns, HOST_IFNAME, spec.rate_bps, spec.mtu)

    _wait_running(hosts)
    if spec.topology == TOPOLOGY_RELAY:
        assert middle is not None and spec.impairment is not None
        record.relay_pid = relay.start(spec.name, middle, hosts, spec.mtu, spec.impairment)
        save_record(record)


def _wait_running(namespaces: list[str]) -> None:
    """Wait until every host's eth0 reports carrier (operstate UP).

    The kernel announces carrier from a work queue that can lag by up to a second; a raw socket
    opened before that sees the interface as down.
    """
    deadline = time.monotonic() + CARRIER_TIMEOUT_S
    waiting = list(namespaces)
    while waiting:
        waiting = [
            ns
            for ns in waiting
            if (iproute.link_info(ns, HOST_IFNAME) or {}).get("operstate") != "UP"
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"no carrier on eth0 of {', '.join(waiting)} after {CARRIER_TIMEOUT_S} s"
            )
        time.sleep(0.02)


def down(name: str) -> bool:
    """Remove lab `name`: its relay, every process in its namespaces, the namespaces (and with
    them every link) and its files. Idempotent; returns False when there was nothing to remove.

    Works from the namespace names alone when the record is missing (e.g. `up` was killed).
    """
    require_root("down removes network namespaces and links")
    record = load_record(name)
    existing = iproute.netns_list()
    namespaces = lab_namespaces_in(name, existing)
    if record is not None:
        namespaces += [ns for ns in record.namespaces if ns in existing and ns not in namespaces]
    relay_pid = record.relay_pid if record is not None else None
    relays = relay.find_relays(name)
    if record is None and not namespaces and not relays:
        remove_files(name)
        return False
    relay.stop(name, relay_pid)
    # A namespace lives on while a process is in it, and its links with it: end them first.
    pids = [pid for ns in namespaces for pid in iproute.netns_pids(ns)]
    survivors = processes.terminate(pids, PROCESS_STOP_TIMEOUT_S)
    for ns in namespaces:
        iproute.netns_delete(ns)
    remove_files(name)
    left = lab_namespaces_in(name, iproute.netns_list())
    if left or survivors:
        raise LabError(
            f"lab {name!r} was not fully removed: namespaces {left or 'none'}, "
            f"processes {survivors or 'none'}",
            hint="look with `ip netns list` and `ps`, then run `l2fast lab down` again",
        )
    return True


# ---- status


def _host_status(record: LabRecord, index: int) -> dict[str, Any]:
    ns = host_ns(record.name, index)
    info = iproute.link_info(ns, HOST_IFNAME)
    qdisc = iproute.qdisc_info(ns, HOST_IFNAME) if info is not None else None
    shaping = None
    if qdisc is not None and qdisc.get("kind") == "tbf":
        rate_bytes = int(qdisc.get("options", {}).get("rate", 0))
        shaping = format_rate(rate_bytes * 8)
    return {
        "host": f"h{index}",
        "namespace": ns,
        "interface": HOST_IFNAME,
        "mac": info.get("address") if info else None,
        "mtu": info.get("mtu") if info else None,
        "state": info.get("operstate", "?") if info else "missing",
        "rate": shaping,
    }


def _relay_status(record: LabRecord) -> dict[str, Any] | None:
    if record.topology != TOPOLOGY_RELAY:
        return None
    published = read_json(relay_status_path(record.name)) or {}
    running = relay.is_running(record.relay_pid, record.name)
    return {
        "pid": record.relay_pid,
        "running": running,
        "namespace": record.middle,
        "updated": published.get("updated"),
        "counters": published.get("counters", {}),
        "ports": published.get("ports", {}),
        "rate": published.get("rate", {}),
    }


def lab_status(name: str) -> dict[str, Any] | None:
    """Everything `lab status` shows about lab `name` (JSON-ready), or None if it has no record."""
    record = load_record(name)
    if record is None:
        return None
    return {
        "name": record.name,
        "topology": record.topology,
        "complete": record.complete,
        "mtu": record.mtu,
        "rate": format_rate(record.rate_bps) if record.rate_bps else None,
        "impairment": record.impairment,
        "middle": record.middle,
        "created": record.created,
        "hosts": [_host_status(record, i) for i in range(1, record.hosts + 1)],
        "relay": _relay_status(record),
    }


def status(name: str | None = None) -> list[dict[str, Any]]:
    """`lab_status` of every lab (or of lab `name` only, raising LabError if it is unknown)."""
    require_root("status looks into the lab hosts' network namespaces")
    if name is not None:
        one = lab_status(name)
        if one is None:
            raise LabError(f"there is no lab {name!r}", hint=_labs_hint())
        return [one]
    return [s for s in (lab_status(n) for n in list_labs()) if s is not None]


def _labs_hint() -> str:
    labs = list_labs()
    if labs:
        return f"labs here: {', '.join(labs)}"
    return f"create one: {as_root('l2fast lab up --name NAME')}"


# ---- exec


def resolve_host(host: str, lab: str | None = None) -> tuple[LabRecord, str]:
    """The lab record and namespace of HOST, given as NAME-hI or (with one lab, or `lab`) hI."""
    match = _HOST_RE.match(host)
    if match is None:
        # NAME-hI: the lab is everything before the last "-h".
        lab_name, sep, index = host.rpartition("-h")
        if not sep or not index.isdigit() or (lab is not None and lab_name != lab):
            raise LabError(f"bad host {host!r}", hint="name a host as h1 or LAB-h1")
        candidates = [lab_name]
        number = int(index)
    else:
        number = int(match.group(1))
        candidates = [lab] if lab is not None else list_labs()
    found = []
    for candidate in candidates:
        record = load_record(candidate)
        if record is not None and 1 <= number <= record.hosts:
            found.append(record)
    if not found:
        raise LabError(f"no lab has a host {host!r}", hint=_labs_hint())
    if len(found) > 1:
        names = ", ".join(r.name for r in found)
        raise LabError(
            f"host {host!r} exists in several labs ({names})",
            hint=f"say which: {found[0].name}-h{number} or --name {found[0].name}",
        )
    record = found[0]
    return record, host_ns(record.name, number)
