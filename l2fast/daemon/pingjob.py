"""One `l2fast ping` run inside a node: PINGs at an interval, each answer or loss reported.

ping(8)'s loop, sans socket: the job asks the engine for a PING every `interval` seconds (forever
when `count` is 0, until the client goes away), reports each `PingReply` and `PingLost` as a
message, and ends with `done` once the last PING is answered or declared lost (the engine's
`ping_timeout`). Statistics are the client's to compute from these messages, so a run stopped
with Ctrl-C still prints its summary.

Latency: each PING goes to the wire at once (the job flushes the runner), before the client
hears of it, and the client's `sent` message waits until the answer (or the loss) is reported,
or `SENT_NOTICE_DELAY` at most. A client woken while the PING is in flight competes for the
CPU with the two nodes that carry it (on a 2-core machine that alone added ~0.1-0.2 ms to every
round trip).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from l2fast.daemon.display import format_mac
from l2fast.daemon.runner import NodeRunner, Timer
from l2fast.errors import L2fastError
from l2fast.node.events import PingLost, PingReply

__all__ = ["PingJob"]

# Sequence numbers remembered after their PING was answered, to report late duplicates (DUP!);
# older ones are forgotten so a ping without -c runs in constant memory.
_REMEMBERED = 4096
#: Longest time a PING's `sent` message waits for the answer to go out with it; a PING still
#: unanswered then is announced on its own (so a client stopped with Ctrl-C counts it).
SENT_NOTICE_DELAY = 0.1


class PingJob:
    """PINGs to one peer; messages go to `send`; `jobs` maps our sequence numbers to us."""

    def __init__(
        self,
        runner: NodeRunner,
        *,
        peer: bytes,
        count: int,
        interval: float,
        size: int,
        send: Callable[[dict[str, Any]], bool],
        jobs: dict[int, PingJob],
    ) -> None:
        self.runner = runner
        self.peer = peer
        self.count = count
        self.interval = interval
        self.size = size
        self._send = send
        self._jobs = jobs
        self.sent = 0
        #: The node's sequence of each PING remembered (oldest first) -> this run's number for
        #: it: the node numbers every PING it sends, the client is told this run's own numbers,
        #: from 1, as ping(8) counts.
        self._numbers: dict[int, int] = {}
        self._outstanding: set[int] = set()
        self._timer: Timer | None = None
        # (seq, time sent) of PINGs sent but not yet told to the client, oldest first.
        self._unannounced: deque[tuple[int, float]] = deque()
        self._notice_timer: Timer | None = None
        self.finished = False

    def start(self, label: str) -> None:
        """Send the first PING, then announce the run (raises L2fastError for a bad size or
        peer before anything is announced: the client then prints the error alone, not a
        header followed by the error)."""
        self._ping_once(first=True)
        self._send(
            {"event": "start", "peer": format_mac(self.peer), "label": label, "size": self.size}
        )

    def _ping_once(self, first: bool = False) -> None:
        self._timer = None
        if self.finished:
            return
        try:
            seq = self.runner.engine.ping(self.peer, self.runner.now(), self.size)
        except L2fastError as exc:
            if first:
                raise
            self._send({"event": "error", "error": exc.message})
            self._finish()
            return
        self.sent += 1
        # On the wire now, before anything else this turn (the round trip starts when the
        # engine hands the PING out).
        self.runner.flush()
        self._unannounced.append((seq, self.runner.now()))
        if self._notice_timer is None:
            self._notice_timer = self.runner.call_later(SENT_NOTICE_DELAY, self._announce_late)
        self._numbers[seq] = self.sent
        self._outstanding.add(seq)
        self._jobs[seq] = self
        oldest = next(iter(self._numbers))
        if len(self._numbers) > _REMEMBERED and oldest not in self._outstanding:
            del self._numbers[oldest]
            self._jobs.pop(oldest, None)
        if self.count == 0 or self.sent < self.count:
            self._timer = self.runner.call_later(self.interval, self._ping_once)

    def on_event(self, ev: PingReply | PingLost) -> None:
        """An answer to, or the loss of, one of our PINGs."""
        if self.finished:
            return
        self._announce(upto=ev.seq)
        if isinstance(ev, PingReply):
            self._send(
                {
                    "event": "reply",
                    "seq": self._number(ev.seq),
                    "rtt_us": round(ev.rtt_ns / 1000, 3),
                    "size": ev.size,
                    "duplicate": ev.duplicate,
                }
            )
        else:
            self._send({"event": "lost", "seq": self._number(ev.seq)})
        if not (isinstance(ev, PingReply) and ev.duplicate):
            self._outstanding.discard(ev.seq)
        if self._timer is None and not self._outstanding:
            self._finish()

    def _announce(self, upto: int | None = None) -> None:
        """Tell the client of the PINGs sent so far (up to sequence `upto`, when given)."""
        while self._unannounced and (upto is None or self._unannounced[0][0] <= upto):
            self._send({"event": "sent", "seq": self._number(self._unannounced.popleft()[0])})

    def _announce_late(self) -> None:
        # Only PINGs unanswered for SENT_NOTICE_DELAY: one sent a moment ago is likely in flight.
        self._notice_timer = None
        if self.finished:
            return
        old = self.runner.now() - SENT_NOTICE_DELAY
        while self._unannounced and self._unannounced[0][1] <= old:
            self._send({"event": "sent", "seq": self._number(self._unannounced.popleft()[0])})
        if self._unannounced:
            due = self._unannounced[0][1] + SENT_NOTICE_DELAY
            self._notice_timer = self.runner.call_at(due, self._announce_late)

    def _number(self, seq: int) -> int:
        return self._numbers.get(seq, seq)

    def _finish(self) -> None:
        if self.finished:
            return
        self._announce()
        self.cancel()
        self._send({"event": "done", "done": True, "sent": self.sent})

    def cancel(self) -> None:
        """Stop sending and forget our sequence numbers (the client went away, or we are done)."""
        self.finished = True
        for timer in (self._timer, self._notice_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._notice_timer = None
        for seq in self._numbers:
            self._jobs.pop(seq, None)
