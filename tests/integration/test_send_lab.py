"""`l2fast send` on the lab (issue 5): files and folders between namespaces, verified.

Each test builds its own 2-host lab, starts the daemons it needs with their own receive
directories, drives `l2fast send` (and inbox/accept/status) as CLI subprocesses, and always
stops the daemons and removes the lab. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from node_helpers import REPO, NodeLab, wait_until

from l2fast.lab import netns
from l2fast.lab.state import Impairment
from l2fast.transfer.protocol_outgoing import inline_fits
from l2fast.wire.constants import max_payload

if TYPE_CHECKING:
    from conftest import LabFactory

pytestmark = pytest.mark.root

MIB = 1 << 20
SEND_TIMEOUT = 90.0


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def make_file(path: Path, size: int, seed: int) -> Path:
    """`size` pseudo-random bytes (fast: a random block repeated with a counter)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    with path.open("wb") as f:
        for i in range(size // MIB):
            f.write(i.to_bytes(8, "little") + block[8:])
        f.write(os.urandom(size % MIB))
    return path


def final_event(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines, "no output"
    event: dict[str, Any] = lines[-1]
    assert event["event"] == "done"
    return event


class SendLab(NodeLab):
    def __init__(self, factory: LabFactory, log_dir: Path, hosts: int = 2, **options: Any) -> None:
        super().__init__(factory.up(hosts=hosts, **options), log_dir)
        self.recv: dict[str, Path] = {}

    def daemon(self, host: str, accept: str | None = "all") -> Path:
        """Start `host`'s daemon with its own receive directory (accept None: the default
        policy, ask)."""
        rx = self.log_dir / f"rx-{host}"
        rx.mkdir(exist_ok=True)
        self.recv[host] = rx
        policy = () if accept is None else ("--accept", accept)
        self.start_daemon(host, *policy, "--recv-dir", str(rx))
        self.wait_ready(host)
        return rx

    def send(
        self, host: str, peer: str, path: Path, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return self.cli(host, "send", peer, str(path), "--json", *extra, timeout=SEND_TIMEOUT)

    def send_bg(self, host: str, peer: str, path: Path) -> subprocess.Popen[str]:
        argv = ["ip", "netns", "exec", self.ns(host), sys.executable, "-m", "l2fast"]
        argv += ["send", peer, str(path), "--json"]
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
        )

    @contextlib.contextmanager
    def sending(self, host: str, peer: str, path: Path) -> Iterator[subprocess.Popen[str]]:
        """`send_bg`, killed on the way out if it still runs (a failed check in the block
        must not leave a send behind)."""
        sender = self.send_bg(host, peer, path)
        try:
            yield sender
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.communicate()


@pytest.fixture
def make_lab(labs: LabFactory, tmp_path: Path) -> Iterator[Any]:
    made: list[SendLab] = []

    def make(**options: Any) -> SendLab:
        lab = SendLab(labs, tmp_path, **options)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        try:
            lab.stop_all()
        finally:
            netns.down(lab.record.name)


def no_partials(rx: Path) -> list[str]:
    return [p.name for p in rx.rglob("*") if ".part" in p.name]


def pool_returned(lab: SendLab, host: str) -> dict[str, Any]:
    """The receive pool of `host`'s daemon once every lent socket is back (bounded wait):
    a receive process that ended, however it ended, gives its pooled socket back."""
    pool: dict[str, Any] = {}

    def back() -> bool:
        pool.update(lab.status(host)["receive_sockets"])
        return bool(pool["lent"] == 0)

    assert wait_until(back, 10, 0.1), pool
    return pool


# --- a single file ------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [9000, 1500])
def test_256_mib_file_in_process_sender(make_lab: Any, tmp_path: Path, mtu: int) -> None:
    lab = make_lab(mtu=mtu)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "big.bin", 256 * MIB, mtu)
    result = lab.send("h1", "h2", src)  # no daemon in h1: the command is the sender
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    event = final_event(result.stdout)
    digest = sha256(src)
    assert event["verified"] is True and event["digest"] == digest
    assert event["bytes"] == 256 * MIB and event["gbit_per_s"] > 0
    # resent_bytes counts retransmissions only: far below the file on a clean link (it used
    # to equal the file size), consistent with the frames count.
    assert event["bytes_sent"] == 256 * MIB
    assert 0 <= event["resent_bytes"] < 256 * MIB // 10
    chunk = mtu - 24
    assert event["resent_bytes"] <= event["retransmitted_frames"] * chunk
    assert event["results"][0]["needed_bytes"] == 256 * MIB
    assert event["streaming_bursts"] > 0  # new data went out in C bursts (csrc/txstream.c)
    assert sha256(rx / "big.bin") == digest
    assert no_partials(rx) == []


def test_through_the_sender_daemon_and_refusal(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=9000)
    rx1 = lab.daemon("h1", accept="none")
    rx2 = lab.daemon("h2", accept="all")
    src = make_file(tmp_path / "f.bin", 32 * MIB + 123, 5)
    result = lab.send("h1", "h2", src)  # the descriptor goes to h1's daemon (SCM_RIGHTS)
    assert result.returncode == 0, result.stderr + lab.log_tail("h1")
    event = final_event(result.stdout)
    assert event["verified"] and event["digest"] == sha256(src) == sha256(rx2 / "f.bin")
    # A folder of more files than one control message carries descriptors for.
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):
        (many / f"f{i}").write_bytes(os.urandom(4096))
    result = lab.send("h1", "h2", many)
    assert result.returncode == 0, result.stderr + lab.log_tail("h1")
    assert all((rx2 / "many" / f"f{i}").read_bytes() == (many / f"f{i}").read_bytes()
               for i in range(40))  # fmt: skip
    # A folder whose `send` request (one line listing every file, ~100 bytes each) is longer
    # than one read of the control socket: the last descriptors come with its first part
    # (a 700-file folder failed with "bad send request: StopIteration()").
    large = tmp_path / "large"
    large.mkdir()
    for i in range(1200):
        (large / f"a-file-name-long-enough-{i:04d}").write_bytes(i.to_bytes(2, "big"))
    result = lab.send("h1", "h2", large)
    assert result.returncode == 0, result.stderr + lab.log_tail("h1")
    assert final_event(result.stdout)["files"] == 1200
    assert sorted(p.name for p in (rx2 / "large").iterdir()) == sorted(
        p.name for p in large.iterdir()
    )
    # h1 refuses everything: h2's send fails clearly, nothing lands in h1's directory.
    refused = lab.cli("h2", "send", "h1", str(src))
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "--accept none" in refused.stderr
    assert list(rx1.iterdir()) == []


def test_a_folder_larger_than_the_daemon_may_hold_fails_before_any_offer(
    make_lab: Any, tmp_path: Path
) -> None:
    # The sending daemon may keep only so many descriptors for sends that have not started
    # (its open-file limit less a headroom). A folder over that used to fail after the daemon
    # had quietly refused a `send_fds`, with "bad send request: it lists more files than the
    # N descriptors that came with it". Now the refusal itself is the error, nothing is
    # offered, and the daemon still sends the next folder.
    import resource

    from l2fast.daemon.service import STASH_HEADROOM

    lab = make_lab(mtu=9000)
    lab.daemon("h1", accept="none")
    rx2 = lab.daemon("h2", accept="all")
    limit = STASH_HEADROOM + 144
    resource.prlimit(lab.daemons["h1"].pid, resource.RLIMIT_NOFILE, (limit, limit))
    big = tmp_path / "big"
    big.mkdir()
    for i in range(200):
        (big / f"f{i:03d}").write_bytes(bytes([i]))
    result = lab.send("h1", "h2", big)
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert "may keep open for sends that have not started (144 descriptors)" in error["error"]
    assert "a folder at a time" in error["hint"] and "LimitNOFILE=" in error["hint"]
    assert list(rx2.iterdir()) == []
    small = tmp_path / "small"
    small.mkdir()
    for i in range(100):
        (small / f"f{i:03d}").write_bytes(bytes([i]))
    result = lab.send("h1", "h2", small)
    assert result.returncode == 0, result.stderr + lab.log_tail("h1")
    assert final_event(result.stdout)["files"] == 100
    assert sorted(p.name for p in (rx2 / "small").iterdir()) == sorted(
        p.name for p in small.iterdir()
    )


HOSTILE = r"""
import json, sys
from l2fast.daemon.local_client import LocalClient
from l2fast.node.events import ControlReceived, SessionOpened
from l2fast.wire.frames import FileOffer

peer = bytes.fromhex(sys.argv[1].replace(":", ""))
names = json.loads(sys.argv[2])
c = LocalClient("eth0", "evil")
eng, run = c.runner.engine, c.runner
got, opened = [], []
run.subscribe(lambda ev: got.append(ev) if isinstance(ev, ControlReceived) else
              opened.append(ev) if isinstance(ev, SessionOpened) else None)
sid = eng.open_session(peer, run.now())
run.run_until(lambda: bool(opened), 5)
sent = 0
for i, name in enumerate(names):
    offer = FileOffer(transfer_id=i + 1, kind=0, digest=1, size=10, mode=0o644, mtime_ns=0,
                      first_chunk=i * 10, chunk_size=1400, path=name)
    try:
        eng.send_control(peer, sid, offer, run.now())
        sent += 1
    except Exception as exc:
        print(json.dumps({"local_refusal": name, "error": str(exc)}), flush=True)
run.run_until(lambda: len(got) >= sent, 5)
print(json.dumps({"answers": [[type(e.body).__name__, e.body.transfer_id] for e in got]}))
c.close()
"""


def test_hostile_names_are_refused(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    names = ["../x", "/etc/x", "a/../../x", "evil\x1b]0;pwned\x07.txt", "..", "a/\x00b"]
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.ns("h1"), sys.executable, "-c", HOSTILE, lab.mac("h2"),
         json.dumps(names)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    answers = out[-1]["answers"]
    # Whatever reached the daemon was answered with FILE_REJECT (or dropped as malformed):
    # never accepted.
    assert all(kind == "FileReject" for kind, _ in answers), answers
    assert list(rx.iterdir()) == []
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()
    assert lab.daemons["h2"].poll() is None


# --- a folder -----------------------------------------------------------------------------


def test_folder_with_nested_and_empty_directories(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=9000)
    rx = lab.daemon("h2")
    top = tmp_path / "tree"
    (top / "a" / "b" / "c").mkdir(parents=True)
    (top / "empty").mkdir()
    make_file(top / "a" / "big.bin", 5 * MIB + 7, 1)
    (top / "a" / "b" / "small.txt").write_text("hello\n")
    (top / "a" / "b" / "c" / "zero").write_bytes(b"")
    make_file(top / "run.sh", 3000, 2).chmod(0o750)
    result = lab.send("h1", "h2", top)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    got = rx / "tree"
    for rel in ("a/big.bin", "a/b/small.txt", "a/b/c/zero", "run.sh"):
        assert sha256(got / rel) == sha256(top / rel), rel
    assert (got / "empty").is_dir() and list((got / "empty").iterdir()) == []
    assert (got / "run.sh").stat().st_mode & 0o777 == 0o750
    assert no_partials(rx) == []


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", ["bursts", "batches"])
def test_through_the_impairment_relay(
    make_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streaming: str
) -> None:
    """Loss, duplication, reordering and corruption across the kernel, with new data sent in
    streaming bursts (replayed into the window afterwards) or batch by batch."""
    if streaming == "batches":
        monkeypatch.setenv("L2FAST_TX_STREAM", "0")
    faults = Impairment(loss=0.02, dup=0.01, reorder=0.01, corrupt=0.001, seed=7)
    lab = make_lab(mtu=9000, impairment=faults)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "lossy.bin", 24 * MIB + 5, 3)
    result = lab.send("h1", "h2", src)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    event = final_event(result.stdout)
    assert event["digest"] == sha256(src) == sha256(rx / "lossy.bin")
    assert event["retransmitted_frames"] > 0  # the relay did lose frames
    assert (event["streaming_bursts"] > 0) == (streaming == "bursts")


def test_receiver_killed_then_resumed(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "resume.bin", 512 * MIB, 9)
    with lab.sending("h1", "h2", src) as sender:
        sidecar = rx / "resume.bin.part.l2fast"
        assert wait_until(sidecar.exists, 30, 0.01), lab.log_tail("h2")
        time.sleep(0.4)
        os.killpg(lab.daemons["h2"].pid, signal.SIGKILL)  # the daemon and its processes
        lab.daemons.pop("h2").wait(10)
        sender.communicate(timeout=60)
        assert sender.returncode != 0
    assert not (rx / "resume.bin").exists()  # nothing partial at the final name
    assert (rx / "resume.bin.part").exists()
    lab.daemon("h2")
    result = lab.send("h1", "h2", src)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    event = final_event(result.stdout)
    assert event["verified"] and event["digest"] == sha256(src) == sha256(rx / "resume.bin")
    assert event["skipped_bytes"] > 0 and event["bytes_sent"] < 512 * MIB
    assert no_partials(rx) == []


def test_source_truncated_mid_send_fails_the_send_not_the_daemon(
    make_lab: Any, tmp_path: Path
) -> None:
    """The sending daemon reads a source through a mapping: reading a page past the end of
    a file truncated under it was a SIGBUS that killed the daemon (and every transfer and
    chat with it). The map guard (csrc/mapguard.h) turns that into a failed send that says
    what happened, and the daemon goes on."""
    lab = make_lab(mtu=1500)
    lab.daemon("h1")
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "shrinks.bin", 256 * MIB, 10)
    other = make_file(tmp_path / "steady.bin", 128 * MIB, 13)
    with lab.sending("h1", "h2", src) as sender, lab.sending("h1", "h2", other) as beside:
        assert wait_until((rx / "shrinks.bin.part").exists, 30, 0.01), lab.log_tail("h2")
        time.sleep(0.2)  # data is flowing: the file is mapped and read
        os.truncate(src, MIB)
        out, err = sender.communicate(timeout=60)
        beside_out, beside_err = beside.communicate(timeout=60)
    # The send beside it, through the same daemon, is not disturbed.
    assert beside.returncode == 0, beside_err + lab.log_tail("h1")
    assert final_event(beside_out)["verified"] and sha256(rx / "steady.bin") == sha256(other)
    assert sender.returncode == 1, err + lab.log_tail("h1")
    done = final_event(out)
    assert "truncated" in done["error"] and "while it was being sent" in done["error"], done
    assert "Traceback" not in err and "what arrived is kept" not in err, err
    assert lab.daemons["h1"].poll() is None, lab.log_tail("h1")  # the sending daemon lives
    assert "the transfer stops" in lab.log_tail("h1")
    assert not (rx / "shrinks.bin").exists()
    status = lab.status("h1")
    assert status["transfers"] == [], status  # and is idle again
    assert status["counters"]["sends_stopped_by_source"] == 1, status["counters"]
    text = lab.ok("h1", "status").stdout
    assert "1 sends stopped: a source file changed while it was sent" in text, text


# --- several at once, status, ask ---------------------------------------------------------


def test_two_at_once_status_and_ask(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    lab.daemon("h1", accept="all")
    rx2 = lab.daemon("h2", accept="ask")
    # Large enough that the two accepted transfers stay in flight across several `status`
    # polls (each poll is a CLI process, ~0.3 s on a loaded machine).
    a = make_file(tmp_path / "a.bin", 256 * MIB, 11)
    b = make_file(tmp_path / "b.bin", 256 * MIB, 12)
    # h2 asks: both offers wait in its inbox, h2 sends to h1 meanwhile.
    first = lab.send_bg("h1", "h2", a)
    second = lab.send_bg("h1", "h2", b)
    back = lab.send_bg("h2", "h1", b)
    try:
        offers: list[dict[str, Any]] = []

        def two_waiting() -> bool:
            nonlocal offers
            offers = lab.json("h2", "inbox")
            return len(offers) == 2

        assert wait_until(two_waiting, 20, 0.1), lab.log_tail("h2")
        assert {o["path"] for o in offers} == {"a.bin", "b.bin"}
        seen: list[dict[str, Any]] = []
        # h1's daemon (which sends both files) is stopped while they are accepted and
        # `status` is read: on a loaded machine both could arrive before one `status` process
        # has started (CI saw that). Stopped for at most 2 s, well inside the sessions' 5 s
        # liveness and the data's 5 s stall limit, everything goes on after.
        sending_daemon = lab.daemons["h1"].pid
        os.kill(sending_daemon, signal.SIGSTOP)
        try:
            for o in offers:
                lab.ok("h2", "accept", str(o["id"]))

            def in_flight() -> bool:
                seen.extend(lab.status("h2")["transfers"])
                return any(t["direction"] == "receive" for t in seen)

            wait_until(in_flight, 2, 0.01)
        finally:
            os.kill(sending_daemon, signal.SIGCONT)
        outs = [p.communicate(timeout=SEND_TIMEOUT) for p in (first, second, back)]
    finally:
        for p in (first, second, back):
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip((first, second, back), outs, strict=True):
        assert p.returncode == 0, err + lab.log_tail("h2")
        assert final_event(out)["verified"]
    assert any(t["direction"] == "receive" for t in seen), seen
    assert sha256(rx2 / "a.bin") == sha256(a) and sha256(rx2 / "b.bin") == sha256(b)
    assert sha256(lab.recv["h1"] / "b.bin") == sha256(b)


def test_to_and_from_different_peers_at_once(make_lab: Any, tmp_path: Path) -> None:
    """Three hosts on a bridge: h1 and h2 both send to h3 while h3 sends to h1."""
    lab = make_lab(mtu=9000, hosts=3)
    rx = {"h1": lab.daemon("h1"), "h2": lab.daemon("h2"), "h3": lab.daemon("h3", accept="ask")}
    files = {n: make_file(tmp_path / f"{n}.bin", 128 * MIB, 20 + i) for i, n in enumerate("abc")}
    runs = [("h1", "h3", files["a"]), ("h2", "h3", files["b"]), ("h3", "h1", files["c"])]
    # h3 asks: both offers wait in its inbox at the same time, one session from each peer,
    # while h3's own send to h1 starts beside them; then h3 accepts both.
    procs = [lab.send_bg(src, dst, path) for src, dst, path in runs]
    try:
        offers: list[dict[str, Any]] = []

        def both_waiting() -> bool:
            nonlocal offers
            offers = lab.json("h3", "inbox")
            return len(offers) == 2

        assert wait_until(both_waiting, 20, 0.1), lab.log_tail("h3")
        assert {o["peer"] for o in offers} == {lab.mac("h1"), lab.mac("h2")}
        # One peer's offers by its name, then whatever else waits.
        (h1_offer,) = [o["id"] for o in offers if o["peer"] == lab.mac("h1")]
        picked = lab.json("h3", "accept", "--all", "--from", "h1")
        assert [a["offer"] for a in picked["answers"]] == [h1_offer], picked
        assert len(lab.json("h3", "accept", "--all")["answers"]) == 1
        outs = [p.communicate(timeout=SEND_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for (src, dst, path), p, (out, err) in zip(runs, procs, outs, strict=True):
        assert p.returncode == 0, f"{src} -> {dst}: {err}" + lab.log_tail(dst)
        done = final_event(out)
        assert done["verified"] and done["bytes"] == path.stat().st_size
        assert sha256(rx[dst] / path.name) == sha256(path)
    assert not no_partials(rx["h1"]) and not no_partials(rx["h3"])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "(gone)"


def _written(pid: int) -> int:
    """Bytes `pid` has written with write-family calls (`wchar` of /proc/PID/io); 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return int(fields.get("wchar", "0"))


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_writer_death_fails_the_file_cleanly(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "w.bin", 512 * MIB, 4)
    daemon = lab.daemons["h2"].pid
    writers: list[int] = []
    with lab.sending("h1", "h2", src) as sender:

        def writers_running() -> bool:
            writers[:] = [w for r in _children(daemon) for w in _children(r)]
            return len(writers) >= 2

        assert wait_until(writers_running, 30, 0.01), lab.log_tail("h2")
        # The workers carry their role as the kernel's task name (ps, top, perf show it),
        # set as each one starts (just after the fork that made it visible here).
        receiver = _children(daemon)[0]
        assert wait_until(
            lambda: _comm(receiver) == "l2f-rx" and {_comm(w) for w in writers} == {"l2f-writer"},
            5,
            0.01,
        ), [_comm(p) for p in (receiver, *writers)]
        os.kill(writers[0], signal.SIGKILL)
        _, err = sender.communicate(timeout=60)
    assert sender.returncode == 1 and "io_error" in err, err
    # The receiver's reason reaches the sender in its FILE_RESULT, not only the code.
    assert "writer process died" in err, err
    assert "writer process died" in lab.log_tail("h2")
    assert not (rx / "w.bin").exists()
    assert pool_returned(lab, "h2")["lent_total"] == 1
    assert lab.daemons["h2"].poll() is None  # the daemon carries on
    assert wait_until(lambda: _children(daemon) == [], 10, 0.05)  # nothing left hanging


def test_a_stalled_receive_process_costs_the_sender_only_its_probes(
    make_lab: Any, tmp_path: Path
) -> None:
    # The receive process is stopped for 0.6 s mid-file (as a descheduled or swapped-out one
    # would be): the window waits in its socket, the sender's RTO fires and probes. When it
    # runs again it acknowledges the queued first transmissions with the probe's chunk, and
    # those must not be taken for losses (they were: ~8,500 frames resent for 50 ms). Only
    # the probes are sent again (the timeout doubles from 5 ms: a handful in 0.6 s). The stop
    # outlasts the largest RTO (0.5 s): on a loaded machine the measured RTT, and so the RTO,
    # grew past a 150 ms stop and CI saw no probe at all.
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "stall.bin", 512 * MIB, 5)
    daemon = lab.daemons["h2"].pid
    receivers: list[int] = []
    with lab.sending("h1", "h2", src) as sender:

        def receiving() -> bool:
            receivers[:] = [r for r in _children(daemon) if _comm(r) == "l2f-rx"]
            return bool(receivers)

        assert wait_until(receiving, 30, 0.005), lab.log_tail("h2")
        receiver = receivers[0]

        def data_flowing() -> bool:
            # Not a fixed sleep: on a loaded machine the first DATA can come well after the
            # receive process exists, and a stop before it catches nothing in flight. The
            # writers' pwritev bytes show chunks have crossed the link.
            return sum(_written(w) for w in _children(receiver)) >= 16 * MIB

        assert wait_until(data_flowing, 30, 0.002), lab.log_tail("h2")
        os.kill(receiver, signal.SIGSTOP)
        try:
            time.sleep(0.6)
        finally:
            os.kill(receiver, signal.SIGCONT)
        out, err = sender.communicate(timeout=SEND_TIMEOUT)
    assert sender.returncode == 0, err + lab.log_tail("h2")
    event = final_event(out)
    assert event["verified"] is True and event["bytes"] == 512 * MIB
    assert sha256(rx / "stall.bin") == sha256(src)
    # The stall happened while frames were in flight: the RTO fired at least once...
    assert event["retransmitted_frames"] >= 1, event
    # ...and what went again is the probes, not the window queued at the receiver.
    assert event["retransmitted_frames"] <= 16, event


def test_a_file_failed_with_chunks_in_flight_ends_alone(make_lab: Any, tmp_path: Path) -> None:
    """The receive process of the first of two files is stopped mid-file, so the sender's
    window holds its chunks unacknowledged and keeps probing them, then killed: the receiver
    fails that file. The sender had closed the file's mapping and descriptor when it heard
    so, and its next probe of those chunks mapped a closed descriptor (EBADF): "internal
    error in the sending node", and the second file never went. Now such chunks are dropped
    (the receiver counts them as received) and the second file arrives verified."""
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    top = tmp_path / "two"
    top.mkdir()
    first = make_file(top / "a.bin", 256 * MIB, 6)
    second = make_file(top / "b.bin", 16 * MIB + 7, 7)
    daemon = lab.daemons["h2"].pid
    receivers: list[int] = []
    with lab.sending("h1", "h2", top) as sender:

        def receiving() -> bool:
            receivers[:] = [r for r in _children(daemon) if _comm(r) == "l2f-rx"]
            return bool(receivers) and sum(_written(w) for w in _children(receivers[0])) > 0

        assert wait_until(receiving, 30, 0.002), lab.log_tail("h2")
        os.kill(receivers[0], signal.SIGSTOP)
        time.sleep(0.3)  # the sender's RTO fires: it probes the file's unacknowledged chunks
        os.kill(receivers[0], signal.SIGKILL)
        out, err = sender.communicate(timeout=SEND_TIMEOUT)
    assert "internal error" not in err and "event handler" not in err, err
    assert sender.returncode == 1 and "receive process died" in err, err + lab.log_tail("h2")
    results = {Path(r["path"]).name: r for r in final_event(out)["results"]}
    assert results["a.bin"].get("failed"), results
    assert results["b.bin"].get("digest") == sha256(second) == sha256(rx / "two" / "b.bin")
    assert not (rx / "two" / "a.bin").exists() and first.exists()
    assert lab.daemons["h2"].poll() is None


def test_many_small_files_around_a_large_one(make_lab: Any, tmp_path: Path) -> None:
    """Runs of small files go through the session's small-file process queued ahead (or with
    their offers, when they fit one frame), a large file between them through its own receive
    process: every byte lands in the right file."""
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    top = tmp_path / "many"
    top.mkdir()
    for i in range(150):
        # 1..3 chunks each at MTU 1500, sizes that end mid-chunk and on a chunk boundary.
        (top / f"a{i:03d}").write_bytes(os.urandom(1 + i * 29))
    make_file(top / "m-large.bin", 3 * MIB + 5, 7)
    for i in range(150):
        (top / f"z{i:03d}").write_bytes(os.urandom(1476 * (1 + i % 3)))
    result = lab.send("h1", "h2", top)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    done = final_event(result.stdout)
    assert done["verified"] and (done["files"], done["directories"]) == (301, 1)
    # The files whose offer and bytes fit one 1500-byte frame went as FILE_INLINE (the small
    # `a` ones); the others, through the small-file process.
    fits = [
        p.name
        for p in top.iterdir()
        if inline_fits(f"many/{p.name}", p.stat().st_size, max_payload(1500))
    ]
    assert 0 < len(fits) < 300 and done["files_inline"] == len(fits), done
    names = sorted(p.name for p in top.iterdir())
    assert sorted(p.name for p in (rx / "many").iterdir()) == names
    for name in names:
        assert (rx / "many" / name).read_bytes() == (top / name).read_bytes(), name
    # The small-file process and the large file's process each borrowed a pooled socket (or,
    # while both ran on the one session, the second opened its own).
    pool = pool_returned(lab, "h2")
    assert pool["lent_total"] >= 1 and pool["lent_total"] + pool["unpooled"] >= 2, pool


def test_send_after_the_link_went_down_and_up(make_lab: Any, tmp_path: Path) -> None:
    """A receiving daemon whose link went down and up again receives the next file: the pooled
    socket lent for it must not hand its receive process the ENETDOWN it was told while idle
    (it failed the file with "Network is down" before the pool cleared it), and PINGs still
    reach the responder: the flap unlinked and relinked every fanout member, and their numbers
    must come out as before, or the session's DATA and the PINGs would go astray."""
    lab = make_lab(mtu=9000)
    rx = lab.daemon("h2")
    first = make_file(tmp_path / "before.bin", 4 * MIB + 1, 3)
    result = lab.send("h1", "h2", first)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    for state in ("down", "up"):
        subprocess.run(
            ["ip", "netns", "exec", lab.ns("h2"), "ip", "link", "set", "eth0", state],
            check=True,
            timeout=10,
        )
        time.sleep(0.3)
    second = make_file(tmp_path / "after.bin", 4 * MIB + 7, 4)
    result = lab.send("h1", "h2", second)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    assert final_event(result.stdout)["digest"] == sha256(second) == sha256(rx / "after.bin")
    assert lab.json("h1", "ping", lab.mac("h2"), "-c", "3", "-i", "0.05")["received"] == 3
    assert pool_returned(lab, "h2")["lent_total"] == 2


@pytest.mark.parametrize("stream", ["1", "0"], ids=["bursts", "batches"])
def test_a_send_rides_out_its_own_link_going_down_briefly(
    make_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: str
) -> None:
    """The sender's interface goes down for a second mid-send (a cable moved, a switch port
    renegotiating): the frames sent meanwhile are lost, the window sends them again once the
    link is back, and the file arrives verified. Sending failed at once with "sending failed:
    streaming DATA frames: Network is down" before; the daemon's control frames already rode
    such outages out. Both ways of sending DATA: C bursts, and the batches the window hands
    out (L2FAST_TX_STREAM=0, and what retransmissions always use)."""
    monkeypatch.setenv("L2FAST_TX_STREAM", stream)
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "flap.bin", 256 * MIB, 8)
    daemon = lab.daemons["h2"].pid
    with lab.sending("h1", "h2", src) as sender:

        def data_flowing() -> bool:
            receivers = [r for r in _children(daemon) if _comm(r) == "l2f-rx"]
            return sum(_written(w) for r in receivers for w in _children(r)) >= 8 * MIB

        assert wait_until(data_flowing, 30, 0.002), lab.log_tail("h2")
        link = ["ip", "netns", "exec", lab.ns("h1"), "ip", "link", "set", "eth0"]
        subprocess.run([*link, "down"], check=True, timeout=10)
        try:
            time.sleep(1.0)  # well inside the sessions' 5 s of silence
        finally:
            subprocess.run([*link, "up"], check=True, timeout=10)
        out, err = sender.communicate(timeout=SEND_TIMEOUT)
    assert sender.returncode == 0, err + lab.log_tail("h2")
    event = final_event(out)
    assert event["verified"] is True and event["bytes"] == 256 * MIB
    assert event["digest"] == sha256(src) == sha256(rx / "flap.bin")
    # The outage is logged once (as the node's own frames' is), not once per frame.
    assert err.count("sending on eth0 fails") == 1, err


def test_send_both_ways_after_an_interface_mtu_dropped(make_lab: Any, tmp_path: Path) -> None:
    """`ip link set eth0 mtu 1500` under a daemon started at 9000: it used to keep offering
    9000, so every session it opened (and every session opened to it) failed its probes
    ("the path drops frames that large") until it was restarted. It now follows its
    interface: its own sessions use 1500, and its peer hears so at once."""
    lab = make_lab(mtu=9000)
    rx1 = lab.daemon("h1")
    rx2 = lab.daemon("h2")
    subprocess.run(
        ["ip", "netns", "exec", lab.ns("h1"), "ip", "link", "set", "eth0", "mtu", "1500"],
        check=True,
        timeout=10,
    )

    def h2_sees_1500() -> bool:
        peers = lab.json("h2", "peers")
        return lab.status("h1")["mtu"] == 1500 and [p["mtu"] for p in peers] == [1500]

    assert wait_until(h2_sees_1500, 10, 0.2), lab.log_tail("h1")
    out = make_file(tmp_path / "out.bin", 4 * MIB + 3, 11)
    result = lab.send("h1", "h2", out)
    assert result.returncode == 0, result.stderr + lab.log_tail("h1")
    assert sha256(rx2 / "out.bin") == sha256(out)
    back = make_file(tmp_path / "back.bin", 4 * MIB + 5, 12)
    result = lab.send("h2", "h1", back)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    assert sha256(rx1 / "back.bin") == sha256(back)
    assert "eth0's MTU changed from 9000 to 1500" in lab.log_tail("h1", 100)


def test_separate_sockets_without_the_fanout_group(
    make_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L2FAST_FANOUT=0: no group, each receive process opens its own socket, and a transfer
    is as correct as with the pool."""
    monkeypatch.setenv("L2FAST_FANOUT", "0")
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    src = make_file(tmp_path / "sep.bin", 8 * MIB + 3, 5)
    result = lab.send("h1", "h2", src)
    assert result.returncode == 0, result.stderr + lab.log_tail("h2")
    assert final_event(result.stdout)["digest"] == sha256(src) == sha256(rx / "sep.bin")
    assert lab.status("h2")["receive_sockets"] is None
    assert "no fanout group" in lab.ok("h2", "status").stdout


def test_small_file_process_death_fails_only_its_file(make_lab: Any, tmp_path: Path) -> None:
    """SIGKILL of the small-file receive process: the file it was receiving (if any) fails
    with the reason, the files queued behind it go to a new process, the daemon carries on."""
    lab = make_lab(mtu=9000)
    rx = lab.daemon("h2")
    top = tmp_path / "lots"
    top.mkdir()
    for i in range(1500):
        # 12 KiB: more than one 9000-byte frame holds, so not offered inline (FILE_INLINE
        # never reaches a receive process); still a small file.
        (top / f"f{i:04d}").write_bytes(os.urandom(12 << 10))
    daemon = lab.daemons["h2"].pid
    with lab.sending("h1", "h2", top) as sender:
        victims: list[int] = []

        def receiving() -> bool:
            victims[:] = _children(daemon)
            return bool(victims) and len(list((rx / "lots").glob("f*"))) >= 50

        assert wait_until(receiving, 30, 0.005), lab.log_tail("h2")
        os.kill(victims[0], signal.SIGKILL)
        out, err = sender.communicate(timeout=120)
    done = final_event(out)
    failed = [r for r in done["results"] if r.get("error")]
    assert len(failed) <= 1, failed
    if failed:
        assert sender.returncode == 1 and "receive process died" in err, err
    else:
        assert sender.returncode == 0, err
    failed_names = {Path(r["path"]).name for r in failed}
    for i in range(1500):
        name = f"f{i:04d}"
        if name not in failed_names:
            assert (rx / "lots" / name).read_bytes() == (top / name).read_bytes(), name
    assert lab.daemons["h2"].poll() is None  # the daemon carries on
    # The killed process's socket came back, and its successor borrowed one too.
    assert pool_returned(lab, "h2")["lent_total"] >= 2
    assert wait_until(lambda: _children(daemon) == [], 10, 0.05)  # nothing left hanging
