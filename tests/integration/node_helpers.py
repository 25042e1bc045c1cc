"""Daemons and commands inside lab hosts, for tests/integration/test_node_lab.py.

`NodeLab` wraps a lab record: it starts `l2fast daemon` in host namespaces as subprocesses
(`ip netns exec NS python -m l2fast daemon -i eth0 --name hN`), runs commands there, and stops
every daemon it started (SIGTERM, then SIGKILL of its process group) whatever happens. Waits are
on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2fast.lab.state import LabRecord, host_mac, host_ns

REPO = Path(__file__).resolve().parents[2]
DAEMON_READY_TIMEOUT_S = 20.0
DAEMON_STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class NodeLab:
    """Daemons and commands in the hosts of one lab."""

    def __init__(self, record: LabRecord, log_dir: Path) -> None:
        self.record = record
        self.log_dir = log_dir
        self.hosts = [f"h{i}" for i in range(1, record.hosts + 1)]
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        #: When every daemon first answered (time.monotonic()).
        self.ready_at = 0.0

    def ns(self, host: str) -> str:
        """The namespace of `host` (h1, h2, ...)."""
        return host_ns(self.record.name, int(host[1:]))

    def mac(self, host: str) -> str:
        """The MAC of `host`'s eth0."""
        return host_mac(int(host[1:]))

    def log(self, host: str) -> Path:
        """Where the daemon of `host` logs."""
        return self.log_dir / f"{self.record.name}-{host}.log"

    def log_tail(self, host: str, lines: int = 30) -> str:
        """The end of a daemon's log, for assertion messages."""
        path = self.log(host)
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    # --- commands ----------------------------------------------------------------------------

    def cli(
        self,
        host: str,
        *args: str,
        stdin: str | bytes | None = None,
        timeout: float = CLI_TIMEOUT_S,
        as_nobody: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run `l2fast ARGS` in `host` and return what happened (never raises on exit status)."""
        argv = ["ip", "netns", "exec", self.ns(host)]
        if as_nobody:
            argv += NOBODY
        argv += [sys.executable, "-m", "l2fast", *args]
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            argv, input=data, capture_output=True, timeout=timeout, cwd=REPO, check=False
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def ok(self, host: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`cli` that must exit 0."""
        result = self.cli(host, *args, **kwargs)
        assert result.returncode == 0, (
            f"l2fast {' '.join(args)} in {host} exited {result.returncode}:\n{result.stderr}\n"
            f"daemon log:\n{self.log_tail(host)}"
        )
        return result

    def json(self, host: str, *args: str, **kwargs: Any) -> Any:
        """`ok` with --json, parsed."""
        return json.loads(self.ok(host, *args, "--json", **kwargs).stdout)

    def status(self, host: str) -> dict[str, Any]:
        """The daemon's `status --json`."""
        status: dict[str, Any] = self.json(host, "status")
        return status

    def history(self, host: str) -> list[dict[str, Any]]:
        """The daemon's `chat --history --json`."""
        entries: list[dict[str, Any]] = self.json(host, "chat", "--history")
        return entries

    # --- daemons -----------------------------------------------------------------------------

    def start_daemon(self, host: str, *extra: str) -> subprocess.Popen[bytes]:
        """Start `l2fast daemon` in `host` (not waiting for it to be ready)."""
        argv = ["ip", "netns", "exec", self.ns(host), sys.executable, "-m", "l2fast", "daemon"]
        argv += ["-i", "eth0", "--name", host, *extra]
        if "--keep-parts" not in extra:
            # Lab daemons share the machine's file system: they must not walk (and expire
            # part files in) its real receive directory.
            argv += ["--keep-parts", "0"]
        with self.log(host).open("ab") as log:
            # `ip netns exec` execs the command, so this pid is the daemon's; its own session
            # lets the teardown kill it and nothing else.
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                start_new_session=True,
            )
        self.daemons[host] = proc
        return proc

    def wait_ready(self, host: str) -> None:
        """Block until the daemon of `host` answers `status` (bounded)."""
        proc = self.daemons[host]

        def answers() -> bool:
            assert proc.poll() is None, f"daemon {host} exited:\n{self.log_tail(host)}"
            return self.cli(host, "status", "--json", timeout=10).returncode == 0

        assert wait_until(answers, DAEMON_READY_TIMEOUT_S, 0.1), (
            f"daemon {host} not ready in {DAEMON_READY_TIMEOUT_S} s:\n{self.log_tail(host)}"
        )

    def stop_daemon(self, host: str, signum: int = signal.SIGTERM) -> int | None:
        """Signal (SIGTERM) the daemon of `host` and wait; SIGKILL if it does not stop. Its
        exit status."""
        proc = self.daemons.pop(host, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                return proc.wait(DAEMON_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(DAEMON_STOP_TIMEOUT_S)
                return None
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every daemon started here."""
        for host in list(self.daemons):
            self.stop_daemon(host)
