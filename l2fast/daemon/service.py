"""`NodeService`: what a node does for the commands, as JSON requests over a `NodeRunner`.

The daemon serves these requests from its control socket; a one-shot command without a daemon
serves them in-process (`l2fast.daemon.local_client.LocalClient`), so both paths run the same code.

Requests are `{"op": NAME, "id": ANY, ...}`; every reply carries the request's `id` and `ok`.
Operations:

| op | fields | replies |
|---|---|---|
| `status` | | one: interface, MAC, MTU, peers, sessions, counters, drops and transfer_drops |
| `peers` | | one: `peers` (the neighbour table) |
| `discover` | `timeout` | one, after `timeout` s: `peers` |
| `chat` | `peer`, `text` | one, once acknowledged (`ok: true`) or failed (`ok: false`) |
| `chat_all` | `text` | one, once every peer acknowledged or failed: `results` per peer |
| `history` | `limit` | `event: entry` per message received, then `done` |
| `ping` | `peer`, `count`, `interval`, `size` | `start`, a `reply` or `lost` per PING, `done` |
| `watch` | | one, then `event: chat` for every message received while connected |

Peers are named by MAC or by the name they announce; an unknown name triggers a discovery and
a short wait before the request fails. Every operation ends within a bounded time: the engine
fails an unanswered session or message on its own timers, and a guard timer here backs it up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from l2fast.daemon.control import CHAT_GUARD_S, RESOLVE_WAIT_S, SETTLE_WAIT_S
from l2fast.daemon.display import (
    escape_text,
    format_mac,
    looks_like_mac,
    parse_mac,
    peer_label,
)
from l2fast.daemon.pingjob import PingJob
from l2fast.daemon.runner import NodeRunner
from l2fast.daemon.transfers import Transfers
from l2fast.errors import KEY_MISMATCH_MARK, L2fastError
from l2fast.node.events import (
    ChatDelivered,
    ChatFailed,
    ChatReceived,
    Event,
    PeerDiscovered,
    PeerExpired,
    PeerInfo,
    PeerUpdated,
    PingLost,
    PingReply,
    SessionClosed,
    SessionFailed,
    SessionOpened,
)
from l2fast.node.node import unheard_text
from l2fast.node.session import SessionInfo
from l2fast.node.states import SessionState
from l2fast.wire.constants import Caps, Digest, ErrorCode

__all__ = ["DROP_REASONS", "TRANSFER_DROP_REASONS", "NodeService", "Replier"]

log = logging.getLogger("l2fast.daemon")

#: Drop reasons always shown by `status`, even at zero (PROTOCOL.md §Receiving, issue 4).
DROP_REASONS = (
    "short",
    "bad_magic",
    "bad_version",
    "bad_length",
    "bad_crc",
    "unknown_type",
    "bad_payload",
    "unknown_session",
    "rate_limited",
    "not_for_us",
    "no_transfer",
    "between_files",
    "bad_feedback",
    # The key check (PROTOCOL.md §Authentication).
    "unauthenticated",
    "bad_auth",
    "needs_key",
    "replayed_syn",
)
#: Control frames the receiving transfer layer refused, by reason (`IncomingTransfer.drops`),
#: always shown by `status` under `transfer_drops`. The node had accepted these frames (they
#: are in `frames_accepted`), and a refused FILE_OFFER or FILE_END counts under its reason and
#: under `protocol_violation` too, so they are kept apart from `drops` and `frames_dropped`.
TRANSFER_DROP_REASONS = (
    "after_end",
    "bad_offer",
    "bad_payload",
    "duplicate_offer",
    "end_for_directory",
    "not_for_receiver",
    "protocol_violation",
    "unknown_transfer",
)
HISTORY_SIZE = 1000
#: The history also keeps at most this many bytes of text (1000 messages at the 1 MiB cap
#: would be a gigabyte); the oldest messages go first.
HISTORY_BYTES = 64 << 20
# A history reply sends more entries only while less than this waits for the client.
HISTORY_PACE_BYTES = 1 << 20
HISTORY_PACE_S = 0.005
#: After the first answer naming the wanted peer, wait this long for other nodes' answers
#: (they answer a discovery at once) before resolving the name.
RESOLVE_SETTLE_S = 0.25
MAX_DISCOVER_S = 60.0
#: Descriptors the daemon keeps for everything but the files of sends waiting to start
#: (`send_fds`): its sockets, the files it receives, its clients.
STASH_HEADROOM = 256


class Replier(Protocol):
    """Where replies go: a control-socket client (`ControlConnection`) or an in-process one."""

    closed: bool
    on_close: list[Callable[[], None]]

    @property
    def backlog(self) -> int:
        """Bytes sent but not yet taken by the client."""
        ...

    def send(self, obj: dict[str, Any]) -> bool:
        """Send one message; False if the client is gone."""
        ...


class RequestError(L2fastError):
    """A request that cannot be served; becomes an `ok: false` reply."""


def caps_names(caps: int) -> list[str]:
    """Capability bits as names: ["chat", "zlib", ...]."""
    return [c.name.lower() for c in Caps if c and caps & c and c.name]


class NodeService:
    """Serves requests for one node; `handle(conn, request)` is the control socket's handler."""

    def __init__(
        self,
        runner: NodeRunner,
        *,
        one_shot: bool,
        history_size: int = HISTORY_SIZE,
        info: Callable[[], dict[str, Any]] | None = None,
        recv_dir: str | None = None,
        accept: str = "none",
    ) -> None:
        self.runner = runner
        self.engine = runner.engine
        self.one_shot = one_shot
        #: Chat messages received, oldest first, as `history` entries.
        self.history: deque[dict[str, Any]] = deque()
        self._history_size = history_size
        self._history_bytes = 0
        self._info = info  # the daemon's extra status fields (options, control socket)
        self._watchers: list[Replier] = []
        self._chat_waiters: dict[tuple[int, bytes], Callable[[ChatDelivered | ChatFailed], None]]
        self._chat_waiters = {}
        self._ping_jobs: dict[int, PingJob] = {}
        self._peer_waiters: list[Callable[[], bool]] = []
        runner.subscribe(self._on_event)
        #: File transfers (sending, and receiving under the `accept` policy).
        self.transfers = Transfers(runner, recv_dir=recv_dir, accept=accept)
        self._fd_stash: dict[int, list[int]] = {}
        runner.subscribe(self.transfers.on_event)

    # --- formats ---------------------------------------------------------------------------

    def peer_json(self, peer: PeerInfo) -> dict[str, Any]:
        """One neighbour table entry as JSON (`discover --json`, `peers --json`)."""
        return {
            "mac": format_mac(peer.mac),
            "name": peer.name,
            "node_id": f"{peer.node_id:016x}",
            "mtu": peer.mtu,
            "caps": caps_names(peer.caps),
            "daemon": bool(peer.caps & Caps.DAEMON),
            "first_seen": self.runner.wall(peer.first_seen),
            "last_seen": self.runner.wall(peer.last_seen),
            "rtt_us": None if peer.rtt is None else round(peer.rtt * 1e6, 1),
        }

    def _session_json(self, s: SessionInfo) -> dict[str, Any]:
        known = self.engine.discovery.table.get(s.peer)
        params = s.params
        return {
            "session": f"{s.session:#010x}",
            "peer": format_mac(s.peer),
            "peer_name": known.name if known else "",
            "role": s.role.value,
            "state": s.state.value,
            "mtu": params.mtu if params else None,
            "compression": params.compression if params else None,
            "digest": params.digest.name if params and params.digest.name else None,
            "srtt_us": None if s.srtt is None else round(s.srtt * 1e6, 1),
            "unacked": s.unacked,
        }

    def status(self) -> dict[str, Any]:
        """Everything `l2fast status` shows."""
        engine, runner = self.engine, self.runner
        runner.poll_kernel_stats()
        # PINGs the C responder answered or dropped never reached the loop: its counts are
        # folded in, so the totals read the same whichever answered (issue 6).
        echo = runner.echo_counters()
        drops = Counter(dict.fromkeys(DROP_REASONS, 0))
        drops.update(engine.drops)
        drops.update(echo.drops())
        # Frames a pooled socket held while its session was between files: received, and
        # dropped (`between_files`). The kernel's drops there are under receive_sockets.
        pooled = runner.receive_sockets
        idle = pooled.idle_frames if pooled is not None else 0
        drops["between_files"] += idle
        # Frames a sending job's FEEDBACK socket read and refused: received, and dropped.
        feedback_refused = runner.counters["feedback_refused"]
        drops["bad_feedback"] += feedback_refused
        refusals = self.transfers.refusals()
        chunks_refused = refusals.pop("chunks_refused", 0)
        transfer_drops = Counter(dict.fromkeys(TRANSFER_DROP_REASONS, 0))
        transfer_drops.update(refusals)
        counters = {
            "frames_in": runner.counters["rx_frames"] + echo.rx + idle + feedback_refused,
            "frames_out": runner.counters["tx_frames"] + echo.tx,
            "frames_accepted": engine.counters["frames_in"] + echo.accepted,
            "frames_dropped": sum(drops.values()),
            "kernel_packets": runner.counters["kernel_packets"],
            "kernel_drops": runner.counters["kernel_drops"],
            "tx_backpressure": runner.counters["tx_backpressure"],
            "tx_overflow": runner.counters["tx_overflow"],
            "tx_dropped": runner.counters["tx_dropped"] + echo.tx_errors,
            "link_errors": runner.counters["sending_errors"]
            + runner.counters["receiving_errors"]
            + echo.recv_errors,
            # Chunks outside every accepted file: not written, not acknowledged.
            "chunks_refused": chunks_refused,
            # The node's own bugs, caught so that the daemon keeps serving (see the log).
            "subscriber_errors": runner.counters["subscriber_errors"],
            "encode_errors": runner.counters["encode_errors"],
            # Offers refused for this daemon's own bounds (a peer flooding offers), and offers
            # whose file could not be set up (out of descriptors, space, inodes).
            "offers_refused_busy": self.transfers.counters["offers_refused_busy"],
            "offers_failed_io": self.transfers.counters["offers_failed_io"],
            # Sends stopped because a local source file changed under them (or was unmappable).
            "sends_stopped_by_source": self.transfers.counters["sends_stopped_by_source"],
        }
        ping_responder = {
            "thread": "c" if runner.echo is not None else "event_loop",
            "answered": echo.answered,
            "rate_limited": echo.rate_limited,
            "peers_evicted": echo.peers_evicted,
        }
        out: dict[str, Any] = {
            "interface": runner.sock.ifname,
            "mac": format_mac(engine.mac),
            "mtu": engine.mtu,
            # False while the daemon sees the interface down or without carrier.
            "link": not engine.link_lost,
            "name": engine.name,
            "node_id": f"{engine.node_id:016x}",
            # The LAN key's id (never the key): nodes that show the same id talk to each other.
            "auth": {"key_id": engine.key.key_id} if engine.key is not None else None,
            "daemon": not self.one_shot,
            "pid": os.getpid(),
            "uptime_s": round(runner.now() - runner.started, 3),
            "peers": [self.peer_json(p) for p in engine.peers()],
            "unheard": self._unheard_json(),
            "sessions": [self._session_json(s) for s in engine.sessions()],
            "counters": counters,
            "drops": dict(sorted(drops.items())),
            "transfer_drops": dict(sorted(transfer_drops.items())),
            "ping_responder": ping_responder,
            "receive_sockets": pooled.status() if pooled is not None else None,
            "chat_history": len(self.history),
            "transfers": self.transfers.status(),
            "received": list(self.transfers.history)[-10:],
        }
        if self._info is not None:
            out.update(self._info())
        return out

    # --- events ------------------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, ChatReceived):
            self._on_chat(ev)
        elif isinstance(ev, ChatDelivered | ChatFailed):
            waiter = self._chat_waiters.pop((ev.msg_id, ev.peer), None)
            if waiter is not None:
                waiter(ev)
            if isinstance(ev, ChatFailed):
                log.info("message %d to %s failed: %s", ev.msg_id, format_mac(ev.peer), ev.error)
        elif isinstance(ev, PingReply | PingLost):
            job = self._ping_jobs.get(ev.seq)
            if job is not None:
                job.on_event(ev)
        elif isinstance(ev, PeerDiscovered | PeerUpdated):
            what = "discovered" if isinstance(ev, PeerDiscovered) else "updated"
            p = ev.peer
            log.info("peer %s %s %r mtu %d", what, format_mac(p.mac), escape_text(p.name), p.mtu)
            self._peer_waiters = [w for w in self._peer_waiters if not w()]
        elif isinstance(ev, PeerExpired):
            log.info("peer expired %s %r", format_mac(ev.peer.mac), escape_text(ev.peer.name))
        elif isinstance(ev, SessionOpened):
            log.info("session %#010x with %s open", ev.session, format_mac(ev.peer))
        elif isinstance(ev, SessionClosed):
            log.info("session %#010x with %s closed", ev.session, format_mac(ev.peer))
        elif isinstance(ev, SessionFailed):
            log.warning(
                "session %#010x with %s failed: %s", ev.session, format_mac(ev.peer), ev.error
            )

    def _on_chat(self, ev: ChatReceived) -> None:
        entry = {
            "mac": format_mac(ev.peer),
            "name": ev.name,
            "time": self.runner.wall(ev.time),
            "text": ev.text.decode("utf-8", errors="backslashreplace"),
            "bytes": len(ev.text),
            "msg_id": ev.msg_id,
            "to_all": ev.to_all,
        }
        self.history.append(entry)
        self._history_bytes += len(ev.text)
        while len(self.history) > self._history_size or (
            self._history_bytes > HISTORY_BYTES and len(self.history) > 1
        ):
            self._history_bytes -= self.history.popleft()["bytes"]
        log.info("chat from %s %r: %d bytes", entry["mac"], escape_text(ev.name), entry["bytes"])
        self._watchers = [w for w in self._watchers if not w.closed]
        for watcher in self._watchers:
            watcher.send({"ok": True, "event": "chat", **entry})

    # --- requests ----------------------------------------------------------------------------

    def handle(self, conn: Replier, request: dict[str, Any]) -> None:
        """Serve one request; every failure becomes an `ok: false` reply with a hint."""
        op = request.get("op")
        handler = self._OPS.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise RequestError(
                    f"unknown request {op!r}", hint=f"known: {', '.join(sorted(self._OPS))}"
                )
            handler(self, conn, request)
        except L2fastError as exc:
            self._fail(conn, request, exc.message, exc.hint)
        except Exception:
            # A bug here must cost one request, not the daemon that serves everyone.
            log.exception("error while serving %r", op)
            self._fail(conn, request, f"internal error while serving {op!r}; see the daemon log")
        self.runner.flush()

    @staticmethod
    def _reply(conn: Replier, request: dict[str, Any], **fields: Any) -> None:
        conn.send({"ok": True, "id": request.get("id"), **fields})

    @staticmethod
    def _fail(conn: Replier, request: dict[str, Any], error: str, hint: str | None = None) -> None:
        reply: dict[str, Any] = {"ok": False, "id": request.get("id"), "error": error}
        if hint:
            reply["hint"] = hint
        conn.send(reply)

    def _op_status(self, conn: Replier, request: dict[str, Any]) -> None:
        self._reply(conn, request, status=self.status())

    def _op_peers(self, conn: Replier, request: dict[str, Any]) -> None:
        self._reply(
            conn,
            request,
            peers=[self.peer_json(p) for p in self.engine.peers()],
            unheard=self._unheard_json(),
        )

    def _unheard_json(self) -> dict[str, Any]:
        """Nodes whose frames the key check refused lately (`NodeEngine.key_refusals`):
        {macs: {MAC: reason}, text}, where text (None when there are none) says what to do."""
        refusals = self.engine.key_refusals(self.runner.now())
        return {
            "macs": {format_mac(mac): reason for mac, reason in refusals.items()},
            "text": unheard_text(refusals),
        }

    def _op_discover(self, conn: Replier, request: dict[str, Any]) -> None:
        timeout = _number(request, "timeout", 1.0, 0.0, MAX_DISCOVER_S)
        started = self.runner.now()
        self.engine.discover(started)

        def answered() -> None:
            # Only the nodes heard since this discovery began: the table also holds nodes
            # that went quiet a few seconds ago and have not expired yet (`peers` shows those).
            heard = [p for p in self.engine.peers() if p.last_seen >= started]
            self._reply(
                conn,
                request,
                peers=[self.peer_json(p) for p in heard],
                unheard=self._unheard_json(),
            )

        self.runner.call_later(timeout, answered)

    def _op_history(self, conn: Replier, request: dict[str, Any]) -> None:
        limit = int(_number(request, "limit", len(self.history), 0, HISTORY_SIZE))
        # The newest `limit` (all of them when fewer are kept).
        entries = deque(list(self.history)[-limit:] if limit else [])
        count = len(entries)

        def pump() -> None:
            # Paced by the client's reading: a long history never piles up in the daemon twice.
            while entries and conn.backlog < HISTORY_PACE_BYTES:
                message = {"ok": True, "id": request.get("id"), "event": "entry"}
                if not conn.send({**message, "entry": entries.popleft()}):
                    return
            if entries:
                self.runner.call_later(HISTORY_PACE_S, pump)
            else:
                self._reply(conn, request, done=True, count=count)

        pump()

    def _op_watch(self, conn: Replier, request: dict[str, Any]) -> None:
        self._watchers.append(conn)
        self._reply(
            conn,
            request,
            watching=True,
            name=self.engine.name,
            mac=format_mac(self.engine.mac),
            interface=self.runner.sock.ifname,
            daemon=not self.one_shot,
        )

    # --- peers by name ---------------------------------------------------------------------

    def _lookup(self, wanted: str) -> bytes | None:
        mac = parse_mac(wanted)
        if mac is not None:
            return mac
        matches = [p for p in self.engine.peers() if p.name == wanted]
        if len(matches) > 1:
            macs = ", ".join(format_mac(p.mac) for p in matches)
            raise RequestError(
                f"{len(matches)} peers are named {wanted!r}: {macs}", hint="name it by its MAC"
            )
        return matches[0].mac if matches else None

    def _with_peer(
        self, conn: Replier, request: dict[str, Any], then: Callable[[bytes], None]
    ) -> None:
        """Resolve `request["peer"]` (a MAC or a name) and call `then(mac)`, or fail."""
        wanted = request.get("peer")
        if not isinstance(wanted, str) or not wanted:
            raise RequestError("the request names no peer")
        if wanted == self.engine.name or parse_mac(wanted) == self.engine.mac:
            raise RequestError(
                f"{escape_text(wanted)!r} is this node ({format_mac(self.engine.mac)})",
                hint="name another node; `l2fast peers` lists them",
            )
        mac = self._lookup(wanted)
        if mac is not None:
            then(mac)
            return
        if looks_like_mac(wanted):
            raise RequestError(
                f"{escape_text(wanted)!r} is not a MAC address, and no peer has that name",
                hint="write a MAC as six hex bytes, e.g. 02:4c:32:00:00:02 (`l2fast peers` "
                "lists them)",
            )
        # Not known (yet): ask the LAN and wait a little for the name to appear.
        self.engine.discover(self.runner.now())
        done = False

        def found() -> bool:
            nonlocal done
            if done:
                return True
            try:
                mac = self._lookup(wanted)
            except RequestError as exc:
                done = True
                self._fail(conn, request, exc.message, exc.hint)
                return True
            if mac is None:
                return False
            done = True
            # Every node answers the discovery at once, so the first answer may not be the
            # only one with that name: wait a moment for the others, then resolve again. A
            # name two nodes carry is then refused instead of picking whichever answered
            # first (a message or a file for one machine landing on another).
            self.runner.call_later(RESOLVE_SETTLE_S, settle)
            return True

        def settle() -> None:
            try:
                mac = self._lookup(wanted)
            except RequestError as exc:
                self._fail(conn, request, exc.message, exc.hint)
                return
            if mac is None:  # it was there a moment ago: the neighbour table forgot it
                self._fail(conn, request, f"peer {escape_text(wanted)!r} disappeared")
                return
            self._guard(conn, request, lambda: then(mac))

        def give_up() -> None:
            nonlocal done
            if found in self._peer_waiters:
                self._peer_waiters.remove(found)
            if done:
                return
            done = True
            names = ", ".join(sorted(repr(escape_text(p.name)) for p in self.engine.peers()))
            # A node whose answers the key check refused is there: say why it was not heard
            # rather than suggesting that l2fast is not running on it.
            unheard = self._unheard_json()["text"]
            if names:
                hint = f"peers known: {names}"
                if unheard is not None:
                    hint = f"{unheard}; {hint}"
            else:
                hint = unheard or "no peer answered; is l2fast running there?"
            self._fail(
                conn,
                request,
                f"no peer named {escape_text(wanted)!r} answered within {RESOLVE_WAIT_S:.0f} s",
                hint,
            )

        self._peer_waiters.append(found)
        self.runner.call_later(RESOLVE_WAIT_S, give_up)

    def _guard(self, conn: Replier, request: dict[str, Any], action: Callable[[], None]) -> None:
        try:
            action()
        except L2fastError as exc:
            self._fail(conn, request, exc.message, exc.hint)

    def _peer_label(self, mac: bytes) -> str:
        known = self.engine.discovery.table.get(mac)
        return peer_label(format_mac(mac), None if known is None else known.name)

    # --- chat --------------------------------------------------------------------------------

    def _op_chat(self, conn: Replier, request: dict[str, Any]) -> None:
        text = _text(request)
        self._with_peer(conn, request, lambda mac: self._send_chat(conn, request, mac, text))

    def _send_chat(self, conn: Replier, request: dict[str, Any], mac: bytes, text: str) -> None:
        msg_id = self.engine.send_chat(mac, text, self.runner.now())
        key = (msg_id, mac)

        def outcome(ev: ChatDelivered | ChatFailed) -> None:
            guard.cancel()
            if isinstance(ev, ChatDelivered):
                self._reply(conn, request, msg_id=msg_id, peer=format_mac(mac), delivered=True)
            else:
                error = ev.error
                # Silence, not a refusal: whether the peer answers at all is the next question
                # (unless the key check already said why it was not heard).
                silent = error.code == ErrorCode.TIMEOUT and KEY_MISMATCH_MARK not in error.message
                self._fail(
                    conn,
                    request,
                    f"message not delivered to {self._peer_label(mac)}: {error.message}",
                    f"`l2fast ping {format_mac(mac)}` tells whether it answers at all, and "
                    "`l2fast peers` when it was last heard"
                    if silent
                    else None,
                )

        def too_late() -> None:
            if self._chat_waiters.pop(key, None) is not None:
                self._fail(
                    conn,
                    request,
                    f"no acknowledgement from {self._peer_label(mac)} within {CHAT_GUARD_S:.0f} s",
                )

        self._chat_waiters[key] = outcome
        guard = self.runner.call_later(CHAT_GUARD_S, too_late)

    def _op_chat_all(self, conn: Replier, request: dict[str, Any]) -> None:
        text = _text(request)
        if self.one_shot or not self.engine.peers():
            # A fresh engine knows nobody yet: listen for answers to a discovery first.
            self.engine.discover(self.runner.now())
            self.runner.call_later(
                SETTLE_WAIT_S,
                lambda: self._guard(conn, request, lambda: self._send_all(conn, request, text)),
            )
        else:
            self._send_all(conn, request, text)

    def _send_all(self, conn: Replier, request: dict[str, Any], text: str) -> None:
        msg_id, peers = self.engine.send_chat_all(text, self.runner.now())
        if not peers:
            raise RequestError(
                "no peer to send to: none answered discovery",
                hint="check with `l2fast discover`; peers must run l2fast with chat",
            )
        results: dict[bytes, dict[str, Any]] = {}
        # Named as they were when the message left: a peer that does not answer may leave the
        # neighbour table before its failure is known (it then had no name in the reply).
        table = self.engine.discovery.table
        names = {mac: known.name if (known := table.get(mac)) else "" for mac in peers}

        def finish() -> None:
            guard.cancel()
            for mac in peers:
                if mac not in results:
                    self._chat_waiters.pop((msg_id, mac), None)
                    results[mac] = {"delivered": False, "error": "no acknowledgement in time"}
            out = [{"mac": format_mac(mac), "name": names[mac], **results[mac]} for mac in peers]
            self._reply(conn, request, msg_id=msg_id, results=out)

        def outcome(ev: ChatDelivered | ChatFailed) -> None:
            if isinstance(ev, ChatDelivered):
                results[ev.peer] = {"delivered": True, "error": None}
            else:
                results[ev.peer] = {"delivered": False, "error": ev.error.message}
            if len(results) == len(peers):
                finish()

        for mac in peers:
            self._chat_waiters[(msg_id, mac)] = outcome
        guard = self.runner.call_later(CHAT_GUARD_S, finish)

    # --- ping --------------------------------------------------------------------------------

    def _op_ping(self, conn: Replier, request: dict[str, Any]) -> None:
        count = int(_number(request, "count", 0, 0, 1_000_000))
        interval = _number(request, "interval", 1.0, 0.001, 3600.0)
        size = int(_number(request, "size", 56, 0, 65535))

        def start(mac: bytes) -> None:
            job = PingJob(
                self.runner,
                peer=mac,
                count=count,
                interval=interval,
                size=size,
                send=lambda obj: conn.send({"ok": True, "id": request.get("id"), **obj}),
                jobs=self._ping_jobs,
            )
            conn.on_close.append(job.cancel)
            job.start(self._peer_label(mac))

        self._with_peer(conn, request, start)

    # --- shutdown ----------------------------------------------------------------------------

    def close_sessions(self, timeout: float) -> None:
        """Close every session in order and wait (at most `timeout` s) for the peers to agree."""
        if self.engine.close_all(self.runner.now()) == 0:
            return
        ended = (SessionState.CLOSED, SessionState.FAILED)
        self.runner.run_until(
            lambda: all(s.state in ended for s in self.engine.sessions()), timeout
        )

    # --- files -------------------------------------------------------------------------------

    @staticmethod
    def _request_fds(conn: Replier, request: dict[str, Any]) -> list[int]:
        take = getattr(conn, "take_fds", None)
        return list(take()) if take is not None else list(request.pop("_fds", []))

    def _op_send_fds(self, conn: Replier, request: dict[str, Any]) -> None:
        """More descriptors for this client's next `send` (a control message carries at most
        MAX_FDS): kept until it comes, closed if the client leaves first. The reply says how
        many this client has brought so far, or why they were refused, so that a folder too
        large for the daemon fails with that reason before its `send`."""
        fds = self._request_fds(conn, request)
        key = id(conn)
        mine = len(self._fd_stash.get(key, []))
        waiting = sum(len(stash) for stash in self._fd_stash.values())
        room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - STASH_HEADROOM
        if waiting + len(fds) > room:
            # A client that sends descriptors and never the `send` they are for would take
            # every descriptor the daemon may open (20,000 here): no file could be received,
            # no client accepted. What one send may bring is what the daemon can hold.
            for fd in fds:
                os.close(fd)
            others = waiting - mine
            raise RequestError(
                f"this send brings more files than the daemon may keep open for sends that have "
                f"not started ({room:,} descriptors"
                + (f", {others:,} of them held for other clients' sends)" if others else ")"),
                hint="send fewer files at once (a folder at a time), or raise the daemon's limit "
                "on open files (LimitNOFILE= for a systemd service, `ulimit -n` in the shell "
                "that starts it)",
            )
        if key not in self._fd_stash:
            self._fd_stash[key] = []

            def drop() -> None:
                for fd in self._fd_stash.pop(key, []):
                    with contextlib.suppress(OSError):
                        os.close(fd)

            conn.on_close.append(drop)
        self._fd_stash[key].extend(fds)
        self._reply(conn, request, held=len(self._fd_stash[key]))

    def _op_send(self, conn: Replier, request: dict[str, Any]) -> None:
        fds = self._fd_stash.pop(id(conn), []) + self._request_fds(conn, request)
        files = request.get("files")
        if not isinstance(files, list) or not files:
            for fd in fds:
                os.close(fd)
            raise RequestError("the request names no files")
        algo = request.get("digest", "sha256")
        digest = {"sha256": Digest.SHA256, "blake2b": Digest.BLAKE2B_256}.get(algo)
        if digest is None:
            for fd in fds:
                os.close(fd)
            raise RequestError(f"unknown digest {algo!r}", hint="sha256 or blake2b")

        def start(mac: bytes) -> None:
            def reply(obj: dict[str, Any]) -> None:
                final = obj.pop("done", False)
                ok = obj.pop("ok", True)
                message = {"ok": True, "id": request.get("id"), **obj}
                if final:
                    message["done"] = True
                    message["verified"] = obj.get("verified", False) and ok
                    message["success"] = ok
                else:
                    message.setdefault("event", "progress")
                conn.send(message)

            job = self.transfers.start_send(reply, mac, files, fds, digest)
            conn.on_close.append(job.cancel)

        try:
            self._with_peer(conn, request, start)
        except BaseException:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise

    def _op_bench(self, conn: Replier, request: dict[str, Any]) -> None:
        """`l2fast bench`: bench streams to the peer for `seconds`, intervals as events."""
        seconds = _number(request, "seconds", 10.0, 0.1, 600.0)
        interval = _number(request, "interval", 1.0, 0.05, 600.0)

        def start(mac: bytes) -> None:
            def reply(obj: dict[str, Any]) -> None:
                final = obj.pop("done", False)
                ok = obj.pop("ok", True)
                message = {"ok": True, "id": request.get("id"), **obj}
                if final:
                    message["done"] = True
                    message["success"] = ok
                else:
                    message.setdefault("event", "interval")
                conn.send(message)

            if request.get("raw"):
                raw = self.transfers.start_raw_bench(reply, mac, seconds, interval)
                conn.on_close.append(raw.cancel)
                return
            if request.get("reverse"):
                back = self.transfers.start_reverse_bench(reply, mac, seconds, interval)
                conn.on_close.append(back.cancel)
                return
            job = self.transfers.start_bench(reply, mac, seconds, interval)
            conn.on_close.append(job.cancel)

        self._with_peer(conn, request, start)

    def _op_inbox(self, conn: Replier, request: dict[str, Any]) -> None:
        self._reply(conn, request, offers=self.transfers.inbox())

    def _op_decide(self, conn: Replier, request: dict[str, Any]) -> None:
        offer = request.get("offer")
        if not isinstance(offer, int) or isinstance(offer, bool):
            raise RequestError("the request names no offer id")
        answer = self.transfers.decide(offer, request.get("op") == "accept")
        self._reply(conn, request, **answer)

    _OPS: dict[str, Callable[[NodeService, Replier, dict[str, Any]], None]] = {
        "status": _op_status,
        "peers": _op_peers,
        "discover": _op_discover,
        "history": _op_history,
        "watch": _op_watch,
        "chat": _op_chat,
        "chat_all": _op_chat_all,
        "ping": _op_ping,
        "send": _op_send,
        "send_fds": _op_send_fds,
        "bench": _op_bench,
        "inbox": _op_inbox,
        "accept": _op_decide,
        "reject": _op_decide,
    }


def _number(request: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise RequestError(f"{key} must be a number between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def _text(request: dict[str, Any]) -> str:
    text = request.get("text")
    if not isinstance(text, str) or not text:
        raise RequestError("the message is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("the message is not valid UTF-8 text") from None
    return text
