"""The lab's only way to change the system: iproute2 (`ip`, `tc`) and `sysctl`, run as commands.

Commands rather than netlink code keep the lab short and let users replay any step by hand; each
call is bounded by a timeout and a failure becomes one L2fastError naming the command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from l2fast.errors import L2fastError, as_root

COMMAND_TIMEOUT_S = 20.0
NETNS_DIR = "/run/netns"


class LabError(L2fastError):
    """Building, inspecting or removing a lab failed."""


def tool(name: str) -> str:
    """Path of the command `name`, also found in /usr/sbin when PATH lacks it (sudo, cron)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise LabError(
            f"the lab needs the `{name}` command, which is not installed",
            hint=f"install iproute2 and procps: {as_root('apt-get install iproute2 procps')}",
        )
    return path


def run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command (args[0] looked up on PATH and in /usr/sbin), capturing its output.

    Raises LabError with the command and its first error line when it fails and `check` is set.
    """
    argv = [tool(args[0]), *args[1:]]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(args)}` did not finish in {COMMAND_TIMEOUT_S:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[0] if detail else f"exit status {proc.returncode}"
        raise LabError(f"`{' '.join(args)}` failed: {reason}")
    return proc


def ip_json(args: Sequence[str]) -> Any:
    """`ip -j ARGS` parsed; [] when ip prints nothing."""
    out = run(["ip", "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


# ---- namespaces


def netns_list() -> list[str]:
    """Names of the named network namespaces (those under /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_add(ns: str) -> None:
    """Create the named network namespace `ns`."""
    run(["ip", "netns", "add", ns])


def netns_delete(ns: str) -> None:
    """Delete `ns` if it exists (its interfaces go with it)."""
    if ns in netns_list():
        run(["ip", "netns", "delete", ns])


def netns_pids(ns: str) -> list[int]:
    """Processes whose network namespace is `ns`."""
    if ns not in netns_list():
        return []
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def sysctl(ns: str, settings: dict[str, str]) -> None:
    """Set sysctls inside namespace `ns`."""
    pairs = [f"{key}={value}" for key, value in settings.items()]
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *pairs])


# ---- links


def veth_pair(name_a: str, ns_a: str, name_b: str, ns_b: str) -> None:
    """Create a veth pair with one end in each namespace, never touching the root namespace."""
    run(
        [
            "ip",
            "link",
            "add",
            name_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            name_b,
            "netns",
            ns_b,
        ]
    )


def link_set(ns: str, ifname: str, *settings: str) -> None:
    """`ip -n NS link set IFNAME SETTINGS...`."""
    run(["ip", "-n", ns, "link", "set", "dev", ifname, *settings])


def bridge_add(ns: str, ifname: str) -> None:
    """A Linux bridge that forwards at once: no STP (nothing loops) and no multicast snooping
    (every host must see every multicast frame, like on a hub)."""
    run(
        [
            "ip",
            "-n",
            ns,
            "link",
            "add",
            ifname,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]
    )


def link_info(ns: str, ifname: str) -> dict[str, Any] | None:
    """`ip -j link show` of one interface in `ns`, or None when it does not exist."""
    if ns not in netns_list():
        return None
    proc = run(["ip", "-j", "-n", ns, "link", "show", "dev", ifname], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    entries = json.loads(proc.stdout)
    return entries[0] if entries else None


def root_links_with_prefix(prefix: str) -> list[str]:
    """Interfaces of the root namespace whose name starts with `prefix` (leak detection)."""
    return [str(e["ifname"]) for e in ip_json(["link", "show"]) if e["ifname"].startswith(prefix)]


# ---- traffic control


def tbf(ns: str, ifname: str, rate_bps: int, mtu: int) -> None:
    """Shape `ifname`'s egress to `rate_bps` with a token bucket.

    The bucket holds 10 ms of traffic (at least two full frames): enough to absorb the 4 ms timer
    granularity of a HZ=250 kernel, small enough that bursts look like a real link.
    """
    frame = mtu + 14
    burst = max(2 * frame, rate_bps // 8 // 100)
    run(
        [
            "tc",
            "-n",
            ns,
            "qdisc",
            "replace",
            "dev",
            ifname,
            "root",
            "tbf",
            "rate",
            f"{rate_bps}bit",
            "burst",
            str(burst),
            "latency",
            "20ms",
        ]
    )


def qdisc_info(ns: str, ifname: str) -> dict[str, Any] | None:
    """The root qdisc of `ifname` in `ns` as `tc -j` reports it, or None."""
    proc = run(["tc", "-j", "-n", ns, "qdisc", "show", "dev", ifname], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    for entry in json.loads(proc.stdout):
        if entry.get("root"):
            return dict(entry)
    return None
