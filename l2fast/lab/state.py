"""What a lab is: its validated description (`LabSpec`), the names derived from it, and the record
that `lab up` keeps under /run/l2fast/lab so that `down` and `status` work from any process.

The record is written before anything is created and updated as things are, so a `lab up` that
fails half way (or is killed) can still be removed by `lab down`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from l2fast.errors import as_root
from l2fast.lab.iproute import LabError
from l2fast.wire.constants import MAX_MTU, MIN_MTU

STATE_DIR = Path(os.environ.get("L2FAST_LAB_DIR", "/run/l2fast/lab"))
HOST_IFNAME = "eth0"
IFNAMSIZ = 15  # longest interface name Linux accepts
MAX_HOSTS = 64
MIN_RATE_BPS = 1_000_000
MAX_RATE_BPS = 400_000_000_000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit|b|bps)?\s*$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

TOPOLOGY_PAIR = "pair"  # two hosts, one veth pair
TOPOLOGY_BRIDGE = "bridge"  # hosts joined by a Linux bridge in its own namespace
TOPOLOGY_RELAY = "relay"  # hosts joined by the impairment relay in its own namespace


def parse_rate(text: str) -> int:
    """A link rate in bit/s from tc-like text: "1gbit", "10G", "100mbit", "2.5gbit".

    Units are powers of ten and always bits (unlike tc, "bps" is not bytes here: a lab rate
    emulates a link, and links are quoted in bits).
    """
    m = _RATE_RE.match(text)
    if not m:
        raise LabError(f"bad rate {text!r}", hint="write it like 1gbit, 10gbit or 100mbit")
    bps = int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])
    if not MIN_RATE_BPS <= bps <= MAX_RATE_BPS:
        raise LabError(f"rate {text!r} is outside 1mbit..400gbit")
    return bps


def format_rate(bps: int) -> str:
    """bit/s as short text: 1000000000 -> "1gbit"."""
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps % scale == 0:
            return f"{bps // scale}{unit}"
    return f"{bps}bit"


def _probability(name: str, value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise LabError(
            f"--{name} must be a probability between 0 and 1, got {value}",
            hint=f"for 1 % write --{name} 0.01",
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Impairment:
    """The relay's faults: probabilities per frame and the seed that makes them reproducible."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    seed: int = 1

    def validate(self) -> None:
        """Raise LabError for a probability outside [0, 1] or a seed outside 64 bits."""
        for name in ("loss", "dup", "reorder", "corrupt"):
            _probability(name, getattr(self, name))
        if not 0 <= self.seed < 1 << 64:
            raise LabError(f"--seed must be between 0 and 2**64 - 1, got {self.seed}")


@dataclass(frozen=True, slots=True)
class LabSpec:
    """What the user asked `lab up` for."""

    name: str
    hosts: int = 2
    mtu: int = 1500
    rate_bps: int | None = None
    impairment: Impairment | None = None

    def validate(self) -> None:
        """Raise LabError with a hint for the first option that cannot work."""
        if not NAME_RE.match(self.name):
            raise LabError(
                f"bad lab name {self.name!r}",
                hint="use letters, digits and _ (it becomes part of namespace names)",
            )
        if not 2 <= self.hosts <= MAX_HOSTS:
            raise LabError(f"--hosts must be between 2 and {MAX_HOSTS}, got {self.hosts}")
        longest = host_ns(self.name, self.hosts)
        if len(longest) > IFNAMSIZ:
            raise LabError(
                f"lab name {self.name!r} is too long: {longest!r} would exceed the "
                f"{IFNAMSIZ}-character limit of interface names",
                hint=f"use at most {IFNAMSIZ - len(longest) + len(self.name)} characters",
            )
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise LabError(
                f"--mtu must be between {MIN_MTU} and {MAX_MTU}, got {self.mtu}",
                hint="1500 is standard Ethernet, 9000 jumbo frames, 65535 the veth maximum",
            )
        if self.rate_bps is not None and not MIN_RATE_BPS <= self.rate_bps <= MAX_RATE_BPS:
            raise LabError(f"--rate must be between 1mbit and 400gbit, got {self.rate_bps} bit/s")
        if self.impairment is not None:
            self.impairment.validate()

    @property
    def topology(self) -> str:
        """How the hosts are joined: pair, bridge or relay."""
        if self.impairment is not None:
            return TOPOLOGY_RELAY
        return TOPOLOGY_PAIR if self.hosts == 2 else TOPOLOGY_BRIDGE


# ---- names derived from a lab name (the only place that spells them)


def host_ns(lab: str, index: int) -> str:
    """Namespace of host `index` (1-based): NAME-hI. Also the name of its port in the middle."""
    return f"{lab}-h{index}"


def bridge_ns(lab: str) -> str:
    """Namespace that holds the bridge of a lab with more than two hosts."""
    return f"{lab}-br"


def relay_ns(lab: str) -> str:
    """Namespace that holds the impairment relay's ports."""
    return f"{lab}-relay"


def host_mac(index: int) -> str:
    """Fixed, locally administered MAC of host `index`: 02:4c:32:00:HH:LL ("L2")."""
    return f"02:4c:32:00:{index >> 8:02x}:{index & 0xFF:02x}"


def lab_namespaces_in(lab: str, existing: list[str]) -> list[str]:
    """The namespaces among `existing` that belong to lab `lab` by their name alone."""
    host_re = re.compile(rf"^{re.escape(lab)}-h\d+$")
    return [ns for ns in existing if host_re.match(ns) or ns in (bridge_ns(lab), relay_ns(lab))]


# ---- the record


@dataclass(slots=True)
class LabRecord:
    """What `lab up` created, as kept in STATE_DIR/NAME.json."""

    name: str
    hosts: int
    mtu: int
    topology: str
    rate_bps: int | None = None
    impairment: dict[str, Any] | None = None
    namespaces: list[str] = field(default_factory=list)  #: in creation order
    middle: str | None = None  #: bridge or relay namespace
    relay_pid: int | None = None
    created: float = field(default_factory=time.time)
    complete: bool = False  #: False while `up` is still building (or if it died doing so)

    @property
    def host_namespaces(self) -> list[str]:
        """NAME-h1 .. NAME-hN."""
        return [host_ns(self.name, i) for i in range(1, self.hosts + 1)]

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as written to the record file."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabRecord:
        """Inverse of to_json; unknown keys (from a newer l2fast) are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def record_path(lab: str) -> Path:
    """STATE_DIR/NAME.json."""
    return STATE_DIR / f"{lab}.json"


def relay_status_path(lab: str) -> Path:
    """Where the relay process publishes its counters and forwarding rate."""
    return STATE_DIR / f"{lab}.relay.json"


def relay_log_path(lab: str) -> Path:
    """The relay process's stderr."""
    return STATE_DIR / f"{lab}.relay.log"


def create_record(record: LabRecord) -> None:
    """Write a new record; LabError when the lab exists already (O_EXCL makes this the lock)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        fd = os.open(record_path(record.name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise LabError(
            f"lab {record.name!r} exists already",
            hint=f"remove it first: {as_root(f'l2fast lab down --name {record.name}')}",
        ) from None
    with os.fdopen(fd, "w") as f:
        json.dump(record.to_json(), f, indent=1)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def save_record(record: LabRecord) -> None:
    """Update an existing record."""
    write_json_atomic(record_path(record.name), record.to_json())


def load_record(lab: str) -> LabRecord | None:
    """The record of lab `lab`, or None when there is none (or it is unreadable)."""
    try:
        return LabRecord.from_json(json.loads(record_path(lab).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_labs() -> list[str]:
    """Names of the labs that have a record, sorted."""
    if not STATE_DIR.is_dir():
        return []
    return sorted(
        p.name[: -len(".json")]
        for p in STATE_DIR.iterdir()
        if p.name.endswith(".json") and not p.name.endswith(".relay.json")
    )


def remove_files(lab: str) -> None:
    """Delete the record and the relay's files of `lab` (missing ones are fine)."""
    for path in (record_path(lab), relay_status_path(lab), relay_log_path(lab)):
        path.unlink(missing_ok=True)
