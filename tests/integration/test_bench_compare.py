"""bench/compare.py end to end: a quick run on one MTU produces well-formed JSON with real
baseline numbers and a verified `l2fast send` copy (with the receiver's memory), marks what
l2fast has not built yet (`l2fast bench`, maybe) as not available, and leaves no lab, no
address and no tmpfs file behind. A run that cannot be done fails loudly instead of reporting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import namespaces, run_script

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COMPARE = REPO / "bench" / "compare.py"
# The quick run takes ~15 s on the 2-core lab machine. The bound only catches a hang; it leaves
# room for a first run that apt-installs a missing baseline tool (iputils-ping) itself.
RUN_TIMEOUT_S = 300
NOT_AVAILABLE = "not available yet"
L2FAST_KINDS = {"l2fast_bench": "bench", "l2fast_send": "send", "l2fast_ping": "ping"}


def l2fast_has(command: str) -> bool:
    """Whether `l2fast COMMAND` exists here, probed the way compare.py probes it."""
    probe = [sys.executable, "-m", "l2fast", command, "--help"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


def test_quick_run_on_one_mtu(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    argv = [sys.executable, str(COMPARE), "--quick", "--mtu", "9000", "--ping-count", "20"]
    argv += ["--no-chart", "--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["schema"] == "l2fast-bench-compare/1"
    assert data["status"] == "ok"
    for key in ("cpu_model", "cores", "kernel", "python", "date", "command"):
        assert data["machine"][key], key
    assert "compare.py --quick --mtu 9000" in data["machine"]["command"]
    assert data["settings"]["mtus"] == [9000]
    reps = data["settings"]["reps"]
    assert reps >= 3

    mtu = data["mtus"]["9000"]
    rows = mtu["rows"]
    for key in ("raw", "iperf3", "nc", "icmp_ping"):
        row = rows[key]
        assert row["status"] == "ok", (key, row)
        assert row["n"] == reps == len(row["samples"])
        assert all(s["value"] > 0 for s in row["samples"]), (key, row["samples"])
        assert 0 < row["min"] <= row["median"] <= row["max"]
    raw = rows["raw"]["samples"]
    assert all(s["frames_per_s"] > 0 and s["frame_size"] == 9014 for s in raw)
    # The same blast through the daemons (`l2fast bench --raw`): counted, nothing corrupted.
    assert rows["raw_daemon"]["status"] == "ok", rows["raw_daemon"]
    through = rows["raw_daemon"]["samples"]
    assert len(through) == reps and all(s["value"] > 0 for s in through)
    assert all(s["frame_size"] == 9014 and s["bad_frames"] == 0 for s in through)
    assert mtu["ratios"]["raw_daemon_over_raw"]["value"] > 0
    nc = rows["nc"]["samples"]
    assert all(s["bytes"] == data["settings"]["file_bytes"] for s in nc)
    assert nc[0]["sha256_checked"] is True  # the first copy of each MTU is digest-checked
    assert all(s["receiver_peak_rss_kib"] > 0 for s in nc)

    # l2fast send is built (issue 5): measured every run, verified, its receiver's memory known.
    assert rows["l2fast_send"]["status"] == "ok", rows["l2fast_send"]
    send = rows["l2fast_send"]["samples"]
    assert len(send) == reps
    assert all(s["bytes"] == data["settings"]["file_bytes"] for s in send)
    assert all(s["seconds"] > 0 and s["wall_seconds"] >= s["seconds"] for s in send)
    assert send[0]["sha256_checked"] is True
    for s in send:
        # The daemon, its receive process and its writers were all sampled, for their peak RSS
        # only: PSS (smaps_rollup, a page-table walk of the tree every 20 ms) would take CPU
        # from the transfer being timed against nc, whose runs get VmHWM reads alone. The
        # scaling run and bench/memory.py report PSS (tests/integration/test_bench_memory.py).
        assert s["receiver_processes"] >= 2 and s["memory_samples"] >= 2, s
        assert s["receiver_peak_rss_kib"] > 0 and s["receiver_peak_pss_kib"] is None, s

    ratios = mtu["ratios"]
    assert ratios["send_over_nc"]["status"] == "ok" and ratios["send_over_nc"]["value"] > 0
    assert ratios["raw_over_iperf3"]["status"] == "ok"
    assert ratios["raw_over_iperf3"]["value"] > 0
    assert ratios["raw_over_nc"]["value"] > 0
    for key, command in L2FAST_KINDS.items():
        if l2fast_has(command):
            # Built meanwhile: then it must have been measured, or say why it was not.
            assert rows[key]["status"] in ("ok", NOT_AVAILABLE), rows[key]
            if rows[key]["status"] == "ok":
                assert rows[key]["median"] > 0
        else:
            assert rows[key]["status"] == NOT_AVAILABLE, rows[key]
            assert rows[key]["reason"], key
            assert "median" not in rows[key]
    if rows["l2fast_bench"]["status"] == "ok":
        # `l2fast bench --json`'s summary, at the lab's MTU.
        assert all(s["mtu"] == 9000 and s["bytes"] > 0 for s in rows["l2fast_bench"]["samples"])
        assert ratios["bench_over_raw"]["status"] == "ok"
    else:
        assert ratios["bench_over_raw"] == {**ratios["bench_over_raw"], "value": None}
        assert ratios["bench_over_raw"]["status"] == "n/a (not built yet)"

    # A throughput target missed at this MTU brought a profile of the l2fast command behind it.
    profiles = {p["command"]: p for p in mtu["profiles"]}
    if ratios["send_over_nc"]["met"] is False:
        assert "l2fast send" in profiles, ratios["send_over_nc"]
        assert "l2fast send / nc" in profiles["l2fast send"]["reason"]
    for profile in profiles.values():
        assert "error" not in profile, profile
        assert profile["reason"].startswith("target not met: ") and profile["mtu"] == 9000
        assert profile["samples"] > 0 and profile["bytes"] > 0
        assert profile["sides"]["sender"]["cpu_seconds"] > 0
        assert profile["sides"]["receiver"]["cpu_seconds"] > 0
        assert "| side | role |" in proc.stdout

    # The printed tables carry the same verdicts.
    assert "| iperf3, kernel TCP, 1 stream | Gbit/s |" in proc.stdout
    assert "raw ceiling / iperf3" in proc.stdout
    assert "| l2fast send / nc | " in proc.stdout

    # Nothing is left behind: no lab namespace, no tmpfs working directory.
    lab = mtu["lab"]
    assert not [ns for ns in namespaces() if ns.startswith(lab)]
    assert not Path(data["settings"]["workdir"]).exists()


def own_labs(pid: int) -> list[str]:
    """Namespaces of the labs of the compare.py run with process id `pid`.

    compare.py names every lab it builds `bc<pid % 100000>_...` (its `lab_prefix`), so this
    sees that run's labs only: other compare runs on the machine build and remove their own
    labs meanwhile, and counting those would make the check race with them.
    """
    prefix = f"bc{pid % 100000}_"
    return [ns for ns in namespaces() if ns.startswith(prefix)]


def test_a_run_that_cannot_be_done_fails_loudly(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    argv = [sys.executable, str(COMPARE), "--quick", "--mtu", "1500", "--no-chart"]
    argv += ["--file-size", "64T", "--json-out", str(out)]
    pid, code, _, stderr = run_script(argv, RUN_TIMEOUT_S)
    assert code == 1
    assert "FAILED" in stderr and "free" in stderr
    assert not out.exists()  # no result file, so no number to misread
    assert not own_labs(pid)  # this run's labs, whatever other runs do meanwhile


def test_only_runs_the_kinds_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    argv = [sys.executable, str(COMPARE), "--quick", "--mtu", "1500", "--reps", "1"]
    argv += ["--only", "raw", "--only", "nc", "--file-size", "16M", "--no-chart"]
    argv += ["--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["settings"]["only"] == ["raw", "nc"]
    rows = data["mtus"]["1500"]["rows"]
    for key in ("raw", "nc"):
        assert rows[key]["status"] == "ok" and rows[key]["n"] == 1, rows[key]
        assert rows[key]["median"] > 0
    for key in ("l2fast_bench", "iperf3", "l2fast_send", "icmp_ping", "l2fast_ping"):
        assert rows[key]["status"] == "not run (--only)", (key, rows[key])
        assert "median" not in rows[key]
    ratios = data["mtus"]["1500"]["ratios"]
    assert ratios["raw_over_nc"]["status"] == "ok" and ratios["raw_over_nc"]["value"] > 0
    assert ratios["send_over_nc"]["status"] == "n/a (not run)"
    assert ratios["send_over_nc"]["met"] is None  # no verdict without a number
    # No l2fast kind ran, so no target was missed and nothing was profiled.
    assert data["mtus"]["1500"]["profiles"] == []
    assert "| iperf3, kernel TCP, 1 stream | Gbit/s | not run |" in proc.stdout


def test_only_rejects_an_unknown_kind() -> None:
    argv = [sys.executable, str(COMPARE), "--only", "scp"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert "invalid choice: 'scp'" in proc.stderr


def test_scaling_run_reports_the_receivers_pss(tmp_path: Path) -> None:
    # The scaling run is where compare.py reports the receiver's memory by size, so its
    # `l2fast send` copies sample PSS (smaps_rollup), unlike the runs timed against nc above.
    out = tmp_path / "compare.json"
    argv = [sys.executable, str(COMPARE), "--quick", "--no-compare", "--scaling"]
    argv += ["--scaling-sizes", "16M,32M", "--no-chart", "--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    scaling = json.loads(out.read_text())["scaling"]
    assert scaling["sizes"] == [16 << 20, 32 << 20]
    send = scaling["kinds"]["l2fast_send"]
    assert send["status"] == "ok", send
    for size in scaling["sizes"]:
        samples = send["sizes"][str(size)]["samples"]
        assert samples and all(s["bytes"] == size for s in samples)
        for s in samples:
            assert s["receiver_processes"] >= 2, s
            assert 0 < s["receiver_peak_pss_kib"] <= s["receiver_peak_rss_kib"], s
    nc = scaling["kinds"]["nc"]["sizes"][str(16 << 20)]["samples"]
    assert all(s["receiver_peak_rss_kib"] > 0 for s in nc)
    assert "receiver peak PSS" in proc.stdout
    assert not [ns for ns in namespaces() if ns.startswith(scaling["lab"])]
