"""`l2fast daemon`: one long-lived node on one interface, serving the CLI on its control socket.

The process owns one raw socket and one selector loop (`NodeRunner`): frames, the engine's
timers, the control socket and its clients, and the signal wake-up all arrive there, so nothing
needs a lock. The one other thread is the C echo responder (`l2fast.native.echo`), which
answers PINGs on a socket of its own and shares only counters with the loop.

The control socket's abstract name (`@l2fast/<ifname>`) is scoped to the network namespace,
which makes it the single-instance lock too: a second daemon on the same interface in the same
namespace cannot bind it and refuses to start.

SIGINT, SIGTERM and SIGHUP stop it cleanly: sessions are closed in order (briefly waiting for the
peers' acknowledgements), clients are disconnected, the socket is closed, exit status 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from l2fast import qdisc
from l2fast.daemon.client import default_name
from l2fast.daemon.control import (
    AccessPolicy,
    ControlConnection,
    ControlServer,
    control_address,
    describe_address,
)
from l2fast.daemon.display import escape_text, format_mac
from l2fast.daemon.interfaces import choose_interface, require_raw_sockets
from l2fast.daemon.logflood import FLOOD_PERIOD_S, FloodFilter
from l2fast.daemon.options import (
    ACCEPT_POLICIES,
    DEFAULT_RECV_DIR,
    MAX_KEEP_PARTS_DAYS,
    DaemonOptions,
)
from l2fast.daemon.part_expiry import PartExpiry
from l2fast.daemon.runner import FrameSocket, NodeRunner, keyed_control_filter
from l2fast.daemon.service import NodeService
from l2fast.errors import L2fastError
from l2fast.node.auth import LanKey, load_key_file
from l2fast.node.config import NodeConfig
from l2fast.node.node import NodeEngine, unheard_text
from l2fast.wire.constants import MIN_MTU, Caps, Features

__all__ = ["Daemon", "run_daemon"]

log = logging.getLogger("l2fast.daemon")

#: How long a stopping daemon waits for its peers to acknowledge its CLOSEs.
STOP_CLOSE_WAIT_S = 1.0
#: Seconds the control listener is left alone after accept(2) ran out of descriptors.
ACCEPT_RETRY_S = 0.5
#: How often the daemon reads its interface's link state and MTU (a cable pulled, `ip link
#: set eth0 mtu N` while it runs).
LINK_CHECK_S = 1.0
#: How often the daemon logs the nodes the LAN key check began refusing (one line at most).
REFUSAL_LOG_S = 10.0


class LinkState(Protocol):
    """What `Daemon.watch_link` reads of the interface (`native.InterfaceInfo`)."""

    @property
    def mtu(self) -> int: ...

    @property
    def is_up(self) -> bool: ...


class Daemon:
    """A node on an open socket with its control server; `serve()` runs it until `stop()`.

    `address` (default: the interface's abstract name), `rng` and `config` are for tests.
    `read_link` reads the interface's MTU and whether it has its link now (`watch_link`);
    None: it is not watched.
    """

    def __init__(
        self,
        sock: FrameSocket,
        name: str,
        options: DaemonOptions,
        *,
        address: str | None = None,
        rng: random.Random | None = None,
        config: NodeConfig | None = None,
        key: LanKey | None = None,
        read_link: Callable[[], LinkState] | None = None,
    ) -> None:
        self.options = options
        #: The MTU the daemon started with: its receive buffers hold frames that large.
        self.start_mtu = sock.mtu
        self._read_link = read_link
        self._mtu_seen = sock.mtu  # the interface's MTU when last read
        self._link_up = True  # the interface had its link when last read
        #: The MACs whose refusal by the key check the log has told (`watch_refusals`).
        self._refusals_logged: set[bytes] = set()
        #: The log's flood filter, whose summaries `watch_log_flood` writes (run_daemon's).
        self.log_flood: FloodFilter | None = None
        if config is None and not options.present:
            base = NodeConfig()
            config = dataclasses.replace(base, features=base.features & ~Features.PRESENT)
        engine = NodeEngine(
            sock.mac,
            name,
            sock.mtu,
            rng=rng or random.Random(),
            config=config,
            caps=Caps.CHAT | Caps.ZLIB | Caps.DAEMON,
            key=key,
        )
        self.runner = NodeRunner(sock, engine)
        self.service = NodeService(
            self.runner,
            one_shot=False,
            info=self._info,
            recv_dir=options.recv_dir or DEFAULT_RECV_DIR,
            accept=options.accept,
        )
        self.address = address or control_address(sock.ifname)
        try:
            self.control = ControlServer(
                self.address, AccessPolicy(os.getuid(), options.group), self.service.handle
            )
        except BaseException:
            self.runner.close()
            raise
        self.runner.add_reader(self.control.listener, self._on_accept)
        self._stopping = False
        # Signals only set a flag; this socket pair wakes the selector so the flag is seen now
        # rather than at the next timeout.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.runner.add_reader(self._wake_r, self._drain_wakeup)
        self.part_expiry: PartExpiry | None = None
        if options.keep_parts_days > 0:
            recv_dir = options.recv_dir or DEFAULT_RECV_DIR
            self.part_expiry = PartExpiry(self.runner, recv_dir, options.keep_parts_days)

    def _info(self) -> dict[str, Any]:
        o = self.options
        expiry = self.part_expiry
        return {
            "recv_dir": o.recv_dir or DEFAULT_RECV_DIR,
            "accept": o.accept,
            "part_files": expiry.status() if expiry is not None else {"keep_days": 0},
            "control": {
                "address": describe_address(self.address),
                "group": o.group,
                "clients": len(self.control.connections),
                "refused": self.control.refused,
                "turned_away": self.control.turned_away,
                "bad_requests": self.control.bad_requests,
            },
        }

    def _on_accept(self) -> None:
        refused, turned_away = self.control.refused, self.control.turned_away
        conn = self.control.accept()
        if self.control.starved is not None:
            # No descriptor for the client (a peer may be holding many open files): try again
            # in a moment instead of spinning on a listener that stays readable.
            log.warning(
                "control socket: cannot accept a client (%s); retrying in %.1f s",
                self.control.starved.strerror, ACCEPT_RETRY_S,
            )  # fmt: skip
            self.control.starved = None
            self.runner.remove_reader(self.control.listener)
            self.runner.call_later(
                ACCEPT_RETRY_S,
                lambda: self.runner.add_reader(self.control.listener, self._on_accept),
            )
            return
        if conn is None:
            if self.control.refused > refused:
                log.warning("control socket: refused a client (%d so far)", self.control.refused)
            if self.control.turned_away > turned_away:
                log.warning(
                    "control socket: turned a client away, %d are served already (%d so far)",
                    len(self.control.connections), self.control.turned_away,
                )  # fmt: skip
            return
        log.info("control client pid %d uid %d connected", conn.cred.pid, conn.cred.uid)
        self.runner.add_reader(conn.sock, lambda: self._on_client(conn))
        # Replies the socket cannot take at once wait in the connection; the loop finishes
        # sending them when the client reads, never blocking everyone else meanwhile.
        conn.on_backlog = lambda waiting: self.runner.set_writer(
            conn.sock, conn.flush if waiting else None
        )
        conn.on_close.append(lambda: self.runner.remove_reader(conn.sock))

    def _on_client(self, conn: ControlConnection) -> None:
        try:
            self.control.service(conn)
        except Exception:
            # Whatever a client did, the daemon serves the others.
            log.exception("control client pid %d: dropped after an error", conn.cred.pid)
            self.control.drop(conn)

    def watch_link(self) -> None:
        """Follow the interface (every LINK_CHECK_S): its link, then its MTU.

        A link lost (`ip link set down`, a cable pulled: no carrier) is logged once, and the
        node told, so that the sessions that time out meanwhile say that it was this node's
        link and not only that their peers went silent. A send on a link without carrier
        does not even fail: nothing else would notice."""
        assert self._read_link is not None
        self.runner.call_later(LINK_CHECK_S, self.watch_link)
        try:
            link = self._read_link()
        except (L2fastError, OSError):
            return  # the interface went away: sending fails, and says so, meanwhile
        ifname = self.runner.sock.ifname
        engine = self.runner.engine
        if link.is_up != self._link_up:
            self._link_up = link.is_up
            if link.is_up:
                log.info("%s has its link again", ifname)
                engine.link_up(self.runner.now())
            else:
                log.warning(
                    "%s lost its link (down, or no carrier): nothing is sent or heard until it "
                    "is back; sessions silent for %.0f s end",
                    ifname, engine.config.dead_after,
                )  # fmt: skip
                engine.link_down(f"interface {ifname} lost its link (down, or no carrier)")
        self._follow_mtu(link.mtu)

    def watch_log_flood(self) -> None:
        """Every FLOOD_PERIOD_S: say how many lines the flood filter left out (logflood.py),
        also when the flood that caused them has stopped."""
        self.runner.call_later(FLOOD_PERIOD_S, self.watch_log_flood)
        if self.log_flood is not None:
            self.log_flood.flush()

    def watch_refusals(self) -> None:
        """Log (every REFUSAL_LOG_S, one line at most) the nodes whose frames the LAN key
        check began refusing: the operator of a keyed LAN learns that a node runs with
        another key, or none, which the drop counters alone do not say. A node is told once
        while it stays refused; a flood from made-up MACs costs one line per period."""
        self.runner.call_later(REFUSAL_LOG_S, self.watch_refusals)
        engine = self.runner.engine
        refused = engine.key_refusals(self.runner.now())
        new = {mac: why for mac, why in refused.items() if mac not in self._refusals_logged}
        self._refusals_logged = set(refused)  # one refused again after passing is told again
        text = unheard_text(new)
        if text is not None:
            log.warning("%s; `l2fast status` counts the frames refused", text)

    def _follow_mtu(self, link: int) -> None:
        """Follow the interface's MTU: a smaller one is what new sessions
        negotiate, and the LAN is told (a HELLO). Without this, a daemon kept offering the
        MTU it started with, and every session it opened failed its probes ("the path drops
        frames that large") until it was restarted. A larger one than the daemon started
        with cannot be used (its receive buffers are sized for that): the log says to
        restart it."""
        if link == self._mtu_seen:
            return
        ifname = self.runner.sock.ifname
        log.warning("%s's MTU changed from %d to %d", ifname, self._mtu_seen, link)
        self._mtu_seen = link
        usable = min(link, self.start_mtu)
        if link > self.start_mtu:
            log.warning(
                "this daemon's receive buffers hold frames of MTU %d: restart it to use %d",
                self.start_mtu, link,
            )  # fmt: skip
        if usable < MIN_MTU:
            log.warning(
                "l2fast needs an MTU of %d at least: sessions fail until %s's is raised",
                MIN_MTU, ifname,
            )  # fmt: skip
            return
        engine = self.runner.engine
        if usable != engine.mtu:
            engine.set_mtu(usable, self.runner.now())
            log.info("sessions opened from now on use MTU %d; peers are told", usable)

    def _drain_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def stop(self) -> None:
        """Ask `serve()` to return (safe from a signal handler or another thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def serve(self) -> None:
        """Announce the node and run until `stop()`; then close sessions and everything else."""
        engine = self.runner.engine
        engine.start(self.runner.now())
        if self.part_expiry is not None:
            self.part_expiry.start()
        if self._read_link is not None:
            self.runner.call_later(LINK_CHECK_S, self.watch_link)
        self.runner.call_later(REFUSAL_LOG_S, self.watch_refusals)
        if self.log_flood is not None:
            self.runner.call_later(FLOOD_PERIOD_S, self.watch_log_flood)
        try:
            while not self._stopping:
                self.runner.step(1.0)
            log.info("stopping: closing %d sessions", len(engine.sessions()))
            self.service.transfers.close()
            self.service.close_sessions(STOP_CLOSE_WAIT_S)
        finally:
            self.close()

    def close(self) -> None:
        """Release the control socket, the raw socket and the wake-up pair."""
        if self.part_expiry is not None:
            self.part_expiry.close()
        self.control.close()
        self.runner.close()
        self._wake_r.close()
        self._wake_w.close()


def _check_options(options: DaemonOptions) -> None:
    if options.accept not in ACCEPT_POLICIES:
        raise L2fastError(f"--accept must be one of {', '.join(ACCEPT_POLICIES)}")
    if options.recv_dir is not None and not Path(options.recv_dir).is_dir():
        there = Path(options.recv_dir).exists()
        raise L2fastError(
            f"receive directory {options.recv_dir!r} "
            + ("is not a directory" if there else "does not exist"),
            hint="choose a directory for --recv-dir"
            if there
            else f"create it first: mkdir -p {options.recv_dir}",
        )
    if not 0 <= options.keep_parts_days <= MAX_KEEP_PARTS_DAYS:
        raise L2fastError(
            f"--keep-parts must be 0 to {MAX_KEEP_PARTS_DAYS:g} days, "
            f"not {options.keep_parts_days:g}",
            hint="0 keeps part files until someone removes them",
        )
    if options.group is not None:
        import grp

        try:
            grp.getgrnam(options.group)
        except KeyError:
            raise L2fastError(f"there is no group named {options.group!r}") from None


def receive_dir_problem(path: str) -> str | None:
    """Why received files could not be written into the directory `path` now, or None.

    The directory is made on the first offer when it does not exist: then its nearest
    existing parent is what must be writable.
    """
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    if str(probe) == path:
        where = f"the receive directory {path}"
    else:
        where = f"{probe}, where the receive directory {path} would be made,"
    with contextlib.suppress(OSError):
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{where} is on a read-only file system"
    return f"{where} is not writable by this daemon (uid {os.geteuid()})"


def _log_files_policy(options: DaemonOptions) -> None:
    """Say at start what happens to files offered, and warn when none could be received."""
    accepting = {
        "all": "every file offered is received",
        "ask": "offers wait for `l2fast accept ID` (see `l2fast inbox`)",
        "none": "no file is accepted",
    }[options.accept]
    recv_dir = os.path.abspath(options.recv_dir or DEFAULT_RECV_DIR)
    log.info(
        "files: --accept %s: %s, into %s%s",
        options.accept,
        accepting,
        recv_dir,
        "" if options.present else "; files already here are not recognised (--no-present)",
    )
    problem = receive_dir_problem(recv_dir) if options.accept != "none" else None
    if problem is not None:
        # Chat and sending still work, so the daemon starts; but every offer would be
        # refused one by one with io_error, and only the senders would see why.
        log.warning(
            "%s: every file offered will be refused until it is fixed "
            "(make it writable, or restart with another --recv-dir)",
            problem,
        )


def run_daemon(options: DaemonOptions) -> int:
    """The `l2fast daemon` process: check, open, serve until SIGINT/SIGTERM/SIGHUP; exit status."""
    from l2fast import native

    require_raw_sockets("l2fast daemon")
    _check_options(options)
    key = load_key_file(options.key_file) if options.key_file else None
    ifname = choose_interface(options.interface)
    name = options.name or default_name()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s l2fast[%(process)d] %(levelname)s %(message)s",
    )
    # A peer (or a local user) that repeats what causes a line must not fill the disk with it.
    log_flood = FloodFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_flood)
    # The format shows no source line, thread or process name, so the records need not look
    # them up (the logging HOWTO's "Optimization"): a line per received file then costs ~27
    # us instead of ~42 here, which counts with thousands of small files.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    sock = native.RawSocket.open(ifname)
    # DATA and FEEDBACK go to the transfer processes' own sockets, never through Python here.
    sock.set_filter(native.SocketFilter.CONTROL)
    # Frames are timed when they arrive, not when the loop gets to them (PING round trips).
    sock.enable_rx_timestamps()
    try:
        daemon = Daemon(
            sock, name, options, key=key, read_link=lambda: native.interface_info(ifname)
        )
    except BaseException:
        sock.close()
        raise
    # From the first turn on, only the sessions carrying a transfer lose their DATA and
    # FEEDBACK in the kernel; any other's are counted (no_transfer).
    daemon.runner.on_bulk_sessions = keyed_control_filter(sock)
    # One fanout group for the node's receiving sockets: each arriving frame is handed to the
    # one socket that wants it, not offered to all (a fifth of a bulk receiver's CPU at 1500).
    daemon.runner.open_receive_sockets()
    # PINGs are answered by a C thread, outside this loop and the GIL (the round trip a peer
    # measures); if it cannot start, the loop answers them and the log says why.
    daemon.runner.start_echo_responder()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The terminal it ran in was closed: stop as cleanly as on SIGTERM (sessions closed, so
    # peers hear it at once) rather than die where it stood, SIGHUP's default.
    signal.signal(signal.SIGHUP, on_signal)
    log.info(
        "l2fast daemon on %s (%s, mtu %d) as %r; control socket %s",
        ifname,
        format_mac(sock.mac),
        sock.mtu,
        escape_text(name),
        describe_address(daemon.address),
    )
    _log_files_policy(options)
    shaper = qdisc.shaping_qdisc(ifname)
    if shaper is not None and not qdisc.qdisc_bypass(ifname):
        log.info("%s has a %s qdisc: l2fast's frames go through it, to be shaped", ifname, shaper)
    if key is not None:
        log.info("LAN key %s: frames are sealed, and only sealed ones are heard", key.key_id)
    else:
        log.info("no LAN key: frames are not authenticated (l2fast keygen, then --key FILE)")
    daemon.log_flood = log_flood
    daemon.serve()
    log.info("stopped")
    return 0
