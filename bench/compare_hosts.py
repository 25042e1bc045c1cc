"""Running things inside the lab hosts of `bench/compare.py`, and cleaning up after them.

Every process the benchmark starts in a lab host goes through `start_in`/`run_in`, which put it
in its own session and remember it, so `kill_all` can end exactly the processes this benchmark
started (never anything found by name). The lab's IPv4 addresses exist only inside a
`with ip_addresses(hosts):` block: the kernel-TCP baselines get them, l2fast never sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from l2fast.errors import L2fastError
from l2fast.lab import iproute, netns
from l2fast.lab.state import LabSpec, host_mac, host_ns

IP_PREFIX = "10.99.0"  # 10.99.0.1 on h1, 10.99.0.2 on h2; only inside the lab namespaces
IP_MASK = 24
LISTEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class BenchError(Exception):
    """A run errored or failed a sanity check: the benchmark stops rather than report a number."""


@dataclass(frozen=True)
class LabHosts:
    """The two hosts of one benchmark lab."""

    lab: str  #: lab name (namespaces LAB-h1, LAB-h2)
    mtu: int  #: MTU of both eth0
    h1: str  #: namespace of the sender
    h2: str  #: namespace of the receiver
    mac1: str  #: MAC of h1's eth0
    mac2: str  #: MAC of h2's eth0

    @property
    def ip1(self) -> str:
        """h1's address while the IP baselines run."""
        return f"{IP_PREFIX}.1"

    @property
    def ip2(self) -> str:
        """h2's address while the IP baselines run."""
        return f"{IP_PREFIX}.2"


# Processes started by this benchmark that may still run; `kill_all` ends them.
_started: list[subprocess.Popen[Any]] = []


def netns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """`ip netns exec NS ARGV...` (ip execs ARGV in place, so the pid is ARGV's own)."""
    return [iproute.tool("ip"), "netns", "exec", ns, *argv]


def start_in(
    ns: str,
    argv: Sequence[str],
    *,
    stdout: int | IO[Any] = subprocess.PIPE,
    stdin: int | IO[Any] = subprocess.DEVNULL,
    stderr: int | IO[Any] = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start ARGV in namespace `ns`, in its own session (stderr captured unless redirected)."""
    proc = subprocess.Popen(
        netns_argv(ns, argv),
        stdout=stdout,
        stderr=stderr,
        stdin=stdin,
        text=True,
        start_new_session=True,
    )
    _started.append(proc)
    return proc


def run_in(
    ns: str,
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: int | IO[Any] = subprocess.DEVNULL,
    check: bool = True,
    on_start: Callable[[int], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ARGV in `ns` to completion (bounded by `timeout`); BenchError when it fails.

    `on_start(pid)` is called once it runs (the profiler names the process by its pid).
    """
    proc = start_in(ns, argv, stdin=stdin)
    if on_start is not None:
        on_start(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise BenchError(f"`{' '.join(argv)}` in {ns} did not finish in {timeout:.0f} s") from None
    finally:
        _forget(proc)
    if check and proc.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv)}` in {ns} exited {proc.returncode}: {last_line(err or out)}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def last_line(text: str | None) -> str:
    """The last non-empty line of a command's output, for one-line error messages."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    """The next stdout line of `proc`, waiting at most `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            stop(proc)
            raise BenchError(f"{what} printed nothing in {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        stop(proc)
        raise BenchError(f"{what} exited before it was ready: {last_line(err)}")
    return line


def wait_exit(
    proc: subprocess.Popen[Any], timeout: float, what: str, rss_of: str | None = None
) -> tuple[int, int | None]:
    """Reap `proc` (bounded); return its exit code and, with `rss_of`, its peak RSS in KiB.

    The peak is the last VmHWM read from /proc while the process still runs under the program
    name `rss_of`. The kernel's own ru_maxrss would be wrong here: it keeps the high-water mark
    from before exec, i.e. of the forked copy of this (much larger) Python process. Polling
    every millisecond bounds the error it adds to the timing of a transfer of seconds; VmHWM is
    read every 10th poll, enough for a high-water mark that only grows.
    """
    deadline = time.monotonic() + timeout
    peak: int | None = None
    polls = 0
    while True:
        if rss_of is not None and polls % 10 == 0:
            peak = max(peak or 0, vm_hwm_kib(proc.pid, rss_of) or 0) or None
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            _forget(proc)
            return proc.returncode, peak
        if time.monotonic() > deadline:
            stop(proc)
            raise BenchError(f"{what} did not finish in {timeout:.0f} s")
        time.sleep(0.001)
        polls += 1


def vm_hwm_kib(pid: int, name: str) -> int | None:
    """VmHWM (peak resident memory, KiB) of `pid` if it runs the program `name`, else None."""
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        return None
    if fields.get("Name") != name or "VmHWM" not in fields:
        return None
    return int(fields["VmHWM"].split()[0])


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant still running (from /proc/PID/task/TID/children)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children", encoding="ascii") as f:
                    todo.extend(int(child) for child in f.read().split())
            except OSError:
                continue
    return tree


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled while they run.

    Two numbers, because forked children share pages with their parent:
    - `peak_hwm_kib`: the sum over every process ever seen of its VmHWM (peak RSS). An upper
      bound: a child forked from a Python daemon starts with the parent's resident pages in
      its own VmHWM, so shared pages count once per process.
    - `peak_pss_kib`: the largest sum of PSS (proportional set size: a shared page counts
      1/N in each of its N sharers) over the samples, i.e. the tree's real footprint at its
      fullest moment (within one sampling interval).
    A `with` block runs the sampler thread; every INTERVAL_S it reads /proc only. With
    `pss=False` it reads VmHWM alone and `peak_pss_kib` is None: PSS comes from smaps_rollup,
    which walks every page table of the tree, and that took ~7 % of the lab's two cores during
    a transfer (the profiles in BENCHMARKS.md), a cost the tool being timed pays.
    """

    INTERVAL_S = 0.02

    def __init__(self, pid: int, *, pss: bool = True) -> None:
        self.pid = pid
        self.hwm: dict[int, int] = {}  #: pid -> largest VmHWM seen
        #: None: PSS is not sampled (`pss=False`)
        self.peak_pss_kib: int | None = 0 if pss else None
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    @property
    def peak_hwm_kib(self) -> int:
        """Sum of the peak RSS of every process of the tree."""
        return sum(self.hwm.values())

    def sample(self) -> None:
        """Read every process of the tree once."""
        pids = process_tree(self.pid)
        for pid in pids:
            hwm = _status_kib(pid, "VmHWM")
            if hwm is not None:
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
        if self.peak_pss_kib is not None:
            pss_total = sum(_pss_kib(pid) or 0 for pid in pids)
            self.peak_pss_kib = max(self.peak_pss_kib, pss_total)
        self.peak_processes = max(self.peak_processes, len(pids))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def stop(proc: subprocess.Popen[Any]) -> None:
    """End `proc` and its session: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
    if proc.returncode is None and proc.poll() is None:
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    # Close our ends of its pipes so no descriptor outlives the process.
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    _forget(proc)


def kill_all() -> None:
    """Stop every process this benchmark started that still runs."""
    for proc in list(_started):
        stop(proc)


def _forget(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ValueError):
        _started.remove(proc)


def wait_listening(ns: str, port: int, what: str) -> None:
    """Wait until a TCP socket listens on `port` in `ns` (bounded by LISTEN_TIMEOUT_S)."""
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while time.monotonic() < deadline:
        out = iproute.run(["ip", "netns", "exec", ns, "ss", "-ltnH", f"sport = :{port}"]).stdout
        if out.strip():
            return
        time.sleep(0.01)
    raise BenchError(f"{what} did not listen on port {port} in {ns} in {LISTEN_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def ip_addresses(hosts: LabHosts) -> Iterator[None]:
    """IPv4 addresses on both eth0 for the duration of one kernel-TCP/ICMP baseline run."""
    pairs = ((hosts.h1, hosts.ip1), (hosts.h2, hosts.ip2))
    try:
        for ns, addr in pairs:
            iproute.run(["ip", "-n", ns, "addr", "add", f"{addr}/{IP_MASK}", "dev", "eth0"])
        yield
    finally:
        for ns, addr in pairs:
            # check=False: the namespace may already be gone when this runs during teardown.
            iproute.run(
                ["ip", "-n", ns, "addr", "del", f"{addr}/{IP_MASK}", "dev", "eth0"], check=False
            )


# ---- labs


# Labs this process built that are still up (teardown removes them on any exit).
_labs_up: list[str] = []


def lab_prefix(tag: str = "bc") -> str:
    """Every lab this process builds starts with this: `tag`, the pid, `_` (unique per run).

    compare.py uses `bc`, the other benchmarks their own tag, so a test can tell one run's labs
    from those of every other benchmark running on the machine.
    """
    # Lab names are at most 12 characters (the lab derives interface names from them).
    return f"{tag}{os.getpid() % 100000}_"


@contextlib.contextmanager
def lab(name: str, mtu: int) -> Iterator[LabHosts]:
    """A two-host lab at `mtu`, removed when the block ends (its processes first)."""
    _labs_up.append(name)
    netns.up(LabSpec(name=name, hosts=2, mtu=mtu))
    try:
        yield LabHosts(name, mtu, host_ns(name, 1), host_ns(name, 2), host_mac(1), host_mac(2))
    finally:
        kill_all()
        netns.down(name)
        _labs_up.remove(name)


def teardown(prefix: str, say: Callable[[str], None]) -> list[str]:
    """Remove every lab this run built that is still up; return the names of those left."""
    kill_all()
    for name in list(_labs_up):
        try:
            netns.down(name)
            _labs_up.remove(name)
        except L2fastError as exc:
            say(f"could not remove lab {name}: {exc}")
    return [ns for ns in iproute.netns_list() if ns.startswith(prefix)]


# ---- test files in tmpfs


@dataclass(frozen=True)
class TestFile:
    """A file of random bytes in tmpfs, with its SHA-256 computed when it was written."""

    path: Path
    size: int
    sha256: str


def write_random_file(path: Path, sizes: Sequence[int]) -> dict[int, str]:
    """Write max(sizes) random bytes to `path`; return the SHA-256 of each prefix in `sizes`.

    The prefix digests let one file serve every size of the scaling run: truncating it to a
    smaller size leaves a file whose digest is already known.
    """
    chunk = 16 << 20
    total = max(sizes)
    marks = sorted(set(sizes))
    digests: dict[int, str] = {}
    hasher = hashlib.sha256()
    written = 0
    with open(path, "wb") as out:
        for mark in marks:
            while written < mark:
                block = os.urandom(min(chunk, mark - written))
                out.write(block)
                hasher.update(block)
                written += len(block)
            digests[mark] = hasher.copy().hexdigest()
    assert written == total
    return digests


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 16 MiB blocks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            hasher.update(block)
    return hasher.hexdigest()
