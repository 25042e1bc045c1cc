"""`l2fast bench` in a node: the reliable bench stream, the raw blast and the reverse run.

A bench stream is a zero-byte `bench` offer whose chunks come from memory instead of a file
(`BenchJob`, an `OutgoingJob`); the receiving node verifies and counts them without writing.
`RawBenchJob` blasts unreliable frames the peer only counts; `ReverseBenchJob` asks the peer to
run a `BenchJob` back here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from l2fast import native
from l2fast.daemon.display import escape_text
from l2fast.daemon.outgoing import (
    WIRE_OVERHEAD,
    OutgoingJob,
    SourceFile,
    close_own_session,
)
from l2fast.daemon.runner import Timer
from l2fast.procname import name_this_thread
from l2fast.transfer.protocol import (
    FileCompleted,
    FileEntry,
    FileFailed,
    OfferAccepted,
    OfferRejected,
    TransferDone,
    TransferProgress,
)
from l2fast.transfer.receiver_proc import (
    BenchReceiver,
)
from l2fast.wire.constants import ETH_HLEN, Digest, FileKind, error_name, max_payload

if TYPE_CHECKING:
    from l2fast.daemon.transfers import Transfers

log = logging.getLogger("l2fast.daemon")

#: Bytes of one bench segment (one FILE_OFFER of kind bench). A bench run is a pipeline of
#: segments, so each one ends with a FILE_RESULT carrying the receiver's CPU time and drops.
BENCH_SEGMENT_BYTES = 128 << 20
#: Segments planned beyond the last one the receiver finished. A run lasts a time, not a size,
#: so segments are added as others finish (`OutgoingTransfer.add_entry`) instead of planned for
#: the fastest link imaginable: planned for 50 Gbit/s, a `bench -t 5` at MTU 65535 ran out of
#: segments after ~3 s on a CPU where the lab reaches 80 (BENCHMARKS.md "Session 25"). 16
#: segments are 2 GiB, ~170 ms at 100 Gbit/s: far more than a segment's end takes to be told.
BENCH_SEGMENTS_AHEAD = 16


class BenchJob(OutgoingJob):
    """One `bench` request: bench streams (FILE_OFFER kind 3) sent for `seconds` over the
    real protocol (credit, SACK, retransmission, CRC32C), from one buffer, to a memory sink.

    Replies `{"event": "interval", ...}` every `interval` seconds and a final `done` message
    with the summary; then the remaining segments are cancelled and the session closed.
    """

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.seconds = seconds
        self.interval = interval
        files = [
            SourceFile(FileEntry(path=f"bench/{i}", kind=FileKind.BENCH), -1)
            for i in range(BENCH_SEGMENTS_AHEAD)
        ]
        super().__init__(owner, reply, peer, files, Digest.SHA256)
        self.mtu = 0
        self.chunk = 0
        self.segment_bytes = 0
        self.segments_done = 0
        self._buf = bytearray()
        self.intervals: list[dict[str, Any]] = []
        self.rx_cpu_s = 0.0
        self.rx_wall_s = 0.0
        self.rx_segments = 0
        self._tick_timer: Timer | None = None
        self._end_timer: Timer | None = None
        self._last: dict[str, float] = {}
        self._rx_interval = [0.0, 0.0]
        self._cpu0 = 0.0

    def on_opened(self, mtu: int) -> None:
        self.mtu = mtu
        self.chunk = max_payload(mtu)
        # Where the payload sits modulo 4096 decides how fast the kernel copies it into every
        # frame: a heap buffer's address was a lottery that halved some runs (BENCHMARKS.md
        # "Copy alignment"), so it is placed where that copy runs fastest.
        pattern = bytes(range(256)) * (self.chunk // 256 + 1)
        self._buf, self.payload_offset = native.placed_copy(pattern, native.PAYLOAD_PAGE_OFFSET)
        self.segment_bytes = max(1, BENCH_SEGMENT_BYTES // self.chunk) * self.chunk
        for i, f in enumerate(self.files):
            f.entry = self._segment(i)
        self._cpu0 = time.process_time()
        super().on_opened(mtu)
        self._last = self._counters(self.started)
        self._tick_timer = self.runner.call_later(self.interval, self._tick)
        self._end_timer = self.runner.call_later(self.seconds, self._end)

    bench_payload = True

    def _payload_source(self, f: SourceFile) -> Any:
        """Bench chunks all carry the same in-memory buffer: no file is read."""
        return self._buf

    def _segment(self, i: int) -> FileEntry:
        """Segment `i` of the run, once the session's chunk size is known."""
        return FileEntry(
            path=f"bench/{i}",
            kind=FileKind.BENCH,
            size=self.segment_bytes,
            mode=0,
            chunk_size=self.chunk,
            digest=self.digest,
        )

    def _plan_ahead(self, now: float) -> None:
        """Add segments until BENCH_SEGMENTS_AHEAD are planned beyond the finished ones."""
        out = self.out
        while out is not None and not out.finished and not self.ended:
            planned = len(self.files)
            if planned - self.segments_done >= BENCH_SEGMENTS_AHEAD:
                return
            entry = self._segment(planned)
            self.files.append(SourceFile(entry, -1))
            self.n_entries += 1
            out.add_entry(entry, now)

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, FileCompleted):
            self.segments_done += 1
            note = parse_bench_note(ev.final_name)
            if note:
                self.rx_segments += 1
                self.rx_cpu_s += note.get("cpu_s", 0.0)
                self.rx_wall_s += note.get("wall_s", 0.0)
                self._rx_interval[0] += note.get("cpu_s", 0.0)
                self._rx_interval[1] += note.get("wall_s", 0.0)
            if self.out is not None:
                self._release(self.files[ev.index])
            self._plan_ahead(now)
            return
        if isinstance(ev, TransferProgress):
            return
        if isinstance(ev, OfferRejected):
            text = f" ({escape_text(ev.text)})" if ev.text else ""
            self._finish(False, f"the peer refused the bench stream: {error_name(ev.reason)}{text}")
            return
        if isinstance(ev, FileFailed):
            self._finish(False, f"the bench stream failed: {ev.error}")
            return
        if isinstance(ev, TransferDone):  # segments are planned ahead: not before the end
            self._end()
            return
        super()._on_event(ev, now)

    # --- measuring ---------------------------------------------------------------------------

    def _counters(self, now: float) -> dict[str, float]:
        out = self.out
        frames = sum(t.stats().frames for t in self._txs)
        acked = out.window.acked_chunks if out is not None else 0
        retrans = out.window.stats.retransmitted_chunks if out is not None else 0
        return {
            "t": now,
            "bytes": acked * self.chunk,
            "acked_frames": acked,
            "frames": frames,
            "retransmits": retrans,
            "drops": self.kernel_drops,
            "cpu": time.process_time(),
        }

    def _report(self, a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        dt = max(b["t"] - a["t"], 1e-9)
        return {
            "start": round(a["t"] - self.started, 3),
            "end": round(b["t"] - self.started, 3),
            "seconds": round(dt, 3),
            "bytes": int(b["bytes"] - a["bytes"]),
            "gbit_per_s": round((b["bytes"] - a["bytes"]) * 8 / dt / 1e9, 3),
            # The same frames counted as `bench --raw` counts them (headers included, no FCS).
            "wire_gbit_per_s": round(
                (b["acked_frames"] - a["acked_frames"]) * (self.chunk + WIRE_OVERHEAD) * 8e-9 / dt,
                3,
            ),
            "frames_per_s": round((b["acked_frames"] - a["acked_frames"]) / dt),
            "frames_sent": int(b["frames"] - a["frames"]),
            "retransmits": int(b["retransmits"] - a["retransmits"]),
            "kernel_drops": int(b["drops"] - a["drops"]),
            "sender_cpu_pct": round((b["cpu"] - a["cpu"]) / dt * 100, 1),
        }

    def _tick(self) -> None:
        self._tick_timer = None
        if self.ended:
            return
        now = self.runner.now()
        cur = self._counters(now)
        rep = self._report(self._last, cur)
        cpu, wall = self._rx_interval
        rep["receiver_cpu_pct"] = round(cpu / wall * 100, 1) if wall else None
        self._rx_interval = [0.0, 0.0]
        self._last = cur
        self.intervals.append(rep)
        self.reply({"event": "interval", **rep})
        if now - self.started + self.interval <= self.seconds + 1e-3:
            self._tick_timer = self.runner.call_later(self.interval, self._tick)

    def _end(self) -> None:
        if self.ended:
            return
        now = self.runner.now()
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        cur = self._counters(now)
        if cur["t"] - self._last["t"] > self.interval * 0.2:
            self._tick_last(cur)
        first = {"t": self.started, "bytes": 0, "acked_frames": 0, "frames": 0,
                 "retransmits": 0, "drops": 0, "cpu": self._cpu0}  # fmt: skip
        summary = self._report(first, cur)
        summary["receiver_cpu_pct"] = (
            round(self.rx_cpu_s / self.rx_wall_s * 100, 1) if self.rx_wall_s else None
        )
        summary["receiver_cpu_s"] = round(self.rx_cpu_s, 3)
        summary["receiver_segments"] = self.rx_segments
        summary["sender_cpu_s"] = round(cur["cpu"] - self._cpu0, 3)
        self.ended = True
        self.reply(
            {
                "done": True,
                "ok": True,
                "mtu": self.mtu,
                "chunk_size": self.chunk,
                "session": f"{self.session:#010x}",
                "intervals": self.intervals,
                "end": summary,
            }
        )
        if self.out is not None:
            self.out.cancel(now, "bench over")
        self.close()
        close_own_session(self.runner, self.peer, self.session, now)

    def _tick_last(self, cur: dict[str, float]) -> None:
        rep = self._report(self._last, cur)
        cpu, wall = self._rx_interval
        rep["receiver_cpu_pct"] = round(cpu / wall * 100, 1) if wall else None
        self._last = cur
        self.intervals.append(rep)
        self.reply({"event": "interval", **rep})

    def close(self) -> None:
        for t in (self._tick_timer, self._end_timer):
            if t is not None:
                t.cancel()
        self._tick_timer = self._end_timer = None
        super().close()


#: Seconds `bench -R` waits, after the stream ended, for the sender's totals (FILE_RESULT).
SENDER_NOTE_WAIT_S = 3.0
#: Once a `bench -R` run's time is up, how often its end looks for the stream's last frames,
#: and how long no new frame must arrive before the stream counts as over. The run ends at
#: the last frame seen, not at the next interval's tick: that tick added a near-empty interval
#: and stretched the summary by up to a whole interval (`-t 1`: 2 s, half the throughput).
REVERSE_TAIL_POLL_S = 0.01
REVERSE_TAIL_QUIET_S = 0.1
#: FILE_OFFER path of a bench request (`l2fast bench -R`, docs/PROTOCOL.md §FILE_OFFER).
BENCH_REVERSE_PATH = "bench/reverse"
#: FILE_OFFER path of a raw-blast count request (`l2fast bench --raw`).
BENCH_RAW_PATH = "bench/raw"


class _RawRequest(OutgoingJob):
    """The zero-size `bench/raw` offer of a `RawBenchJob`: tells it when the peer is ready
    (FILE_ACCEPT) and what the peer counted (FILE_RESULT text)."""

    def __init__(self, owner: Transfers, job: RawBenchJob, peer: bytes, seconds: float) -> None:
        entry = FileEntry(
            path=BENCH_RAW_PATH, kind=FileKind.BENCH, mode=0, mtime_ns=int(seconds * 1e9)
        )
        super().__init__(owner, job.on_request, peer, [SourceFile(entry, -1)], Digest.SHA256)
        self.job = job

    def on_opened(self, mtu: int) -> None:
        self.job.mtu = mtu
        super().on_opened(mtu)

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, OfferAccepted):
            self.job.on_accepted()
        elif isinstance(ev, FileCompleted):
            self.job.note = parse_bench_note(ev.final_name)
        super()._on_event(ev, now)


class RawBenchJob:
    """`bench --raw`: the peer's node opens a counting socket (a `bench/raw` offer), this node
    blasts full-size DATA frames at it for `seconds` (l2fast.rawblast, in a thread), and the
    peer's FILE_RESULT says what arrived. No acknowledgement, no retransmission."""

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply
        self.peer = peer
        self.seconds = seconds
        self.interval = interval
        self.mtu = 0
        self.note: dict[str, float] = {}
        self.results: list[Any] = []
        self.reported = 0
        self.blast_done = False
        self.request_done: dict[str, Any] | None = None
        self.stopped = False
        self.ended = False
        self.started = 0.0
        self.intervals: list[dict[str, Any]] = []
        self.request = _RawRequest(owner, self, peer, seconds)
        owner.outgoing[self.request.session] = self.request
        self._timer: Timer | None = None

    def on_accepted(self) -> None:
        import threading

        self.started = self.runner.now()
        self.reply({"event": "start", "session": f"{self.request.session:#010x}", "mtu": self.mtu})
        threading.Thread(target=self._blast, daemon=True).start()
        self._timer = self.runner.call_later(0.05, self._poll)

    def _blast(self) -> None:
        from l2fast.rawblast import BLAST_SESSION, send_blast

        name_this_thread("l2f-rawblast")
        try:
            with native.RawSocket.open(self.runner.sock.ifname, sndbuf=8 << 20) as sock:
                sock.set_filter(native.SocketFilter.FEEDBACK, BLAST_SESSION)  # hears nothing
                size = min(sock.mtu, self.mtu) + ETH_HLEN
                left = self.seconds
                while left > 1e-3 and not self.stopped:
                    r = send_blast(sock, self.peer, min(self.interval, left), size)
                    self.results.append(r)
                    left -= r.seconds
        finally:
            self.blast_done = True

    def on_request(self, obj: dict[str, Any]) -> None:
        if obj.get("done"):
            self.request_done = obj
            if not obj.get("ok", True) and not self.started:
                self._fail(f"the peer refused the raw count: {obj.get('error')}")

    def _poll(self) -> None:
        self._timer = None
        if self.ended:
            return
        t = 0.0
        for r in self.results[: self.reported]:
            t += r.seconds
        while self.reported < len(self.results):
            r = self.results[self.reported]
            self.reported += 1
            rep = {
                "start": round(t, 3),
                "end": round(t + r.seconds, 3),
                "seconds": round(r.seconds, 3),
                "frames_sent": r.frames,
                "gbit_per_s": round(r.gbit_per_s, 3),
                "frames_per_s": round(r.frames_per_s),
            }
            t += r.seconds
            self.intervals.append(rep)
            self.reply({"event": "interval", **rep})
        if self.blast_done and self.request_done is not None:
            self._end()
            return
        self._timer = self.runner.call_later(0.05, self._poll)

    def _end(self) -> None:
        sent = sum(r.frames for r in self.results)
        secs = sum(r.seconds for r in self.results)
        size = self.results[0].frame_size if self.results else 0
        note = self.note
        arrived = int(note.get("frames", 0)) if note else None
        rx_s = note.get("seconds", 0.0) if note else 0.0
        end = {
            "seconds": round(secs, 3),
            "frame_size": size,
            "frames_sent": sent,
            "sent_gbit_per_s": round(sent * size * 8 / secs / 1e9, 3) if secs else 0.0,
            "frames_arrived": arrived,
            "bad_frames": int(note.get("bad", 0)) if note else None,
            "kernel_drops": int(note.get("kernel_drops", 0)) if note else None,
            "gbit_per_s": round(arrived * size * 8 / rx_s / 1e9, 3) if arrived and rx_s else 0.0,
            "frames_per_s": round(arrived / rx_s) if arrived and rx_s else 0,
            "lost_frames": sent - arrived if arrived is not None else None,
        }
        ok = bool(note) and bool(self.request_done and self.request_done.get("ok"))
        self.ended = True
        error = None if ok else (self.request_done or {}).get("error") or "no count came back"
        self.reply(
            {
                "done": True,
                "ok": ok,
                "mtu": self.mtu,
                "session": f"{self.request.session:#010x}",
                "intervals": self.intervals,
                "end": end,
                **({"error": error} if error else {}),
            }
        )

    def _fail(self, error: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        self.reply({"done": True, "ok": False, "error": error})

    def cancel(self) -> None:
        self.stopped = True
        self.request.cancel()
        self.ended = True


class ReverseBenchJob:
    """`bench -R`: ask the peer to send bench streams back and measure them arriving here.

    The request is a zero-size bench offer whose path is `bench/reverse` and whose
    `mtime_ns` is the wanted duration; the peer's node accepts it and runs a `BenchJob` back
    to this node, whose bench receive process this job samples every `interval`. The
    sender's retransmissions, frames sent and CPU come back once, at the end, in the request's
    FILE_RESULT (`sender_note`): the summary has them, the intervals report them as null.
    """

    def __init__(
        self, owner: Transfers, reply: Any, peer: bytes, seconds: float, interval: float
    ) -> None:
        self.owner = owner
        self.runner = owner.runner
        self.reply = reply
        self.peer = peer
        self.seconds = seconds
        self.interval = interval
        self.ended = False
        self.started = 0.0
        self.intervals: list[dict[str, Any]] = []
        self.bench: BenchReceiver | None = None
        self.mtu = 0
        self.session = 0
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._sender: dict[str, float] | None = None  # the peer's sender_note, once it came
        self._tail: dict[str, float] | None = None  # once the time is up: the last sample to grow
        self._wait_sender: float | None = None  # when _end gives up waiting for it
        owner.bench_expected[peer] = owner.bench_expected.get(peer, 0) + 1
        entry = FileEntry(
            path=BENCH_REVERSE_PATH, kind=FileKind.BENCH, mode=0, mtime_ns=int(seconds * 1e9)
        )
        self.request = OutgoingJob(owner, self._on_request, peer, [SourceFile(entry, -1)],
                                   Digest.SHA256)  # fmt: skip
        owner.outgoing[self.request.session] = self.request
        self._timer: Timer | None = self.runner.call_later(0.02, self._watch)
        self._give_up = self.runner.call_later(seconds + 15.0, self._no_data)

    def _on_request(self, obj: dict[str, Any]) -> None:
        if not obj.get("done"):
            return
        if not obj.get("ok", True) and self.bench is None:
            self._fail(f"the peer refused the bench request: {obj.get('error')}")
            return
        notes = [parse_bench_note(str(r.get("final_name", ""))) for r in obj.get("files", [])]
        self._sender = next((n for n in notes if "sender_cpu_s" in n), {})

    def _no_data(self) -> None:
        if self.bench is None:
            self._fail("the peer sent no bench stream")
        else:
            self._last_interval()
            self._end()

    def _watch(self) -> None:
        self._timer = None
        if self.ended:
            return
        for inc in self.owner.incoming.values():
            if inc.peer == self.peer and inc.bench is not None:
                self.bench = inc.bench
                self.mtu = inc.mtu
                self.session = inc.session
                break
        if self.bench is None:
            self._timer = self.runner.call_later(0.02, self._watch)
            return
        now = self.runner.now()
        self.started = now
        self.reply({"event": "start", "session": f"{self.session:#010x}", "mtu": self.mtu})
        self._first = self._last = self._sample(now)
        self._timer = self.runner.call_later(self._next_tick(now), self._tick)

    def _next_tick(self, now: float) -> float:
        """Seconds to the next tick: an interval, or less where the run's time is up sooner."""
        return max(0.0, min(self.interval, self.started + self.seconds - now))

    def _sample(self, now: float) -> dict[str, float]:
        b = self.bench
        assert b is not None
        return {
            "t": now,
            "frames": b.cum - b.first,
            "bytes": (b.cum - b.first) * b.chunk_size,
            "drops": b.kernel_drops,
            "rx_cpu": b.cpu_s,
        }

    def _report(self, a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        dt = max(b["t"] - a["t"], 1e-9)
        return {
            "start": round(a["t"] - self.started, 3),
            "end": round(b["t"] - self.started, 3),
            "seconds": round(dt, 3),
            "bytes": int(b["bytes"] - a["bytes"]),
            "gbit_per_s": round((b["bytes"] - a["bytes"]) * 8 / dt / 1e9, 3),
            "frames_per_s": round((b["frames"] - a["frames"]) / dt),
            "frames_sent": None,
            "retransmits": None,
            "kernel_drops": int(b["drops"] - a["drops"]),
            "sender_cpu_pct": None,
            "receiver_cpu_pct": round((b["rx_cpu"] - a["rx_cpu"]) / dt * 100, 1),
        }

    def _live(self) -> bool:
        return any(inc.bench is self.bench for inc in self.owner.incoming.values())

    def _tick(self) -> None:
        self._timer = None
        if self.ended:
            return
        now = self.runner.now()
        if now - self.started >= self.seconds - 0.01:  # (a timer may fire a little early)
            # The time is up. The peer's sender stops on its own clock, with frames still
            # on the way.
            self._tail = self._sample(now)
            self._wait_for_tail()
            return
        cur = self._sample(now)
        rep = self._report(self._last, cur)
        if rep["bytes"] or self._live():
            self._last = cur
            self.intervals.append(rep)
            self.reply({"event": "interval", **rep})
        if self._live():
            self._timer = self.runner.call_later(self._next_tick(now), self._tick)
        else:
            self._end()

    def _wait_for_tail(self) -> None:
        """Poll until the stream is over (closed, or quiet: the first tail sample is taken when
        the time is up, so quiet is after it), then report the last interval up to the last
        sample that grew."""
        self._timer = None
        if self.ended or self._tail is None:
            return
        now = self.runner.now()
        cur = self._sample(now)
        if cur["frames"] > self._tail["frames"]:
            self._tail = cur
        if self._live() and now - self._tail["t"] < REVERSE_TAIL_QUIET_S:
            self._timer = self.runner.call_later(REVERSE_TAIL_POLL_S, self._wait_for_tail)
            return
        self._last_interval()
        self._end()

    def _last_interval(self) -> None:
        """Report the interval from the last tick to the tail, if anything arrived in it."""
        tail = self._tail
        if tail is None or tail is self._last:
            return
        rep = self._report(self._last, tail)
        self._last = tail
        if rep["bytes"]:
            self.intervals.append(rep)
            self.reply({"event": "interval", **rep})

    def _end(self) -> None:
        if self.ended:
            return
        now = self.runner.now()
        if self._sender is None and self._last:
            # The peer's totals come in the request's FILE_RESULT, after its run ended.
            if self._wait_sender is None:
                self._wait_sender = now + SENDER_NOTE_WAIT_S
            if now < self._wait_sender:
                self._timer = self.runner.call_later(0.05, self._end)
                return
        last = self._last if self._last else {}
        summary = self._report(self._first, last) if last else {}
        if summary and self._sender:
            s = self._sender
            seconds = s.get("seconds", 0.0)
            summary["frames_sent"] = int(s.get("frames_sent", 0))
            summary["retransmits"] = int(s.get("retransmits", 0))
            summary["sender_cpu_s"] = round(s.get("sender_cpu_s", 0.0), 3)
            summary["sender_cpu_pct"] = (
                round(s.get("sender_cpu_s", 0.0) / seconds * 100, 1) if seconds else None
            )
        self._close()
        self.reply(
            {
                "done": True,
                "ok": bool(last),
                "reverse": True,
                "mtu": self.mtu,
                "chunk_size": self.bench.chunk_size if self.bench else None,
                "session": f"{self.session:#010x}",
                "intervals": self.intervals,
                "end": summary,
            }
        )

    def _fail(self, error: str) -> None:
        if self.ended:
            return
        self._close()
        self.reply({"done": True, "ok": False, "error": error})

    def _close(self) -> None:
        self.ended = True
        for t in (self._timer, self._give_up):
            if t is not None:
                t.cancel()
        self._timer = None
        n = self.owner.bench_expected.get(self.peer, 0) - 1
        if n > 0:
            self.owner.bench_expected[self.peer] = n
        else:
            self.owner.bench_expected.pop(self.peer, None)

    def cancel(self) -> None:
        self.request.cancel()
        self._close()


def bench_note(msg: dict[str, Any]) -> str:
    """The FILE_RESULT `final_name` text of a bench stream: `bench cpu_s=.. wall_s=.. drops=..`."""
    return (
        f"bench cpu_s={float(msg.get('cpu_s', 0.0)):.4f} wall_s={float(msg.get('wall_s', 0.0)):.4f}"
        f" drops={int(msg.get('drops', 0))}"
    )


def sender_note(end: dict[str, Any]) -> str:
    """The FILE_RESULT text of a bench request (`bench -R`): what the sending side measured
    over the whole run (`bench sender_cpu_s=.. seconds=.. retransmits=.. frames_sent=..`)."""
    return (
        f"bench sender_cpu_s={float(end.get('sender_cpu_s') or 0.0):.4f}"
        f" seconds={float(end.get('seconds') or 0.0):.4f}"
        f" retransmits={int(end.get('retransmits') or 0)}"
        f" frames_sent={int(end.get('frames_sent') or 0)}"
    )


def parse_bench_note(text: str) -> dict[str, float]:
    """The numbers of a `bench_note` (empty when the peer sent none)."""
    out: dict[str, float] = {}
    if not text.startswith("bench "):
        return out
    for part in text.split()[1:]:
        key, _, value = part.partition("=")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out
