"""bench/small_files.py end to end on 50 small files: well-formed JSON with non-zero rates for
both tools, every copy verified, nothing left behind; a run that cannot be done fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import REPO, namespaces, run_script

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRIPT = REPO / "bench" / "small_files.py"
RUN_TIMEOUT_S = 300  # only catches a hang: 50 files take a few seconds


def test_fifty_small_files(tmp_path: Path) -> None:
    out = tmp_path / "small.json"
    argv = [sys.executable, str(SCRIPT), "--count", "50", "--size", "3000", "--reps", "2"]
    argv += ["--json-out", str(out)]
    pid, code, stdout, stderr = run_script(argv, RUN_TIMEOUT_S)
    assert code == 0, stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["schema"] == "l2fast-bench-small-files/1" and data["status"] == "ok"
    assert data["settings"]["count"] == 50 and data["settings"]["file_bytes"] == 3000
    assert "small_files.py --count 50" in data["machine"]["command"]
    for key in ("l2fast_send", "tar_nc"):
        row = data["kinds"][key]
        assert row["n"] == 2 == len(row["runs"]), key
        for run in row["runs"]:
            assert run["verified"] is True
            assert run["seconds"] > 0 and run["files_per_s"] > 0 and run["mib_per_s"] > 0
            # MiB/s and files/s describe the same run: 50 files of 3000 bytes.
            assert run["mib_per_s"] == pytest.approx(run["files_per_s"] * 3000 / (1 << 20))
        med = row["files_per_s"]
        assert 0 < med["min"] <= med["median"] <= med["max"]
    for run in data["kinds"]["l2fast_send"]["runs"]:
        assert run["wall_seconds"] >= run["seconds"]
        assert run["files_reported"] >= 50  # the folder itself may count as one more
        assert run["receiver_peak_pss_kib"] > 0
    assert data["ratio"] > 0
    assert "| l2fast send (folder), verified |" in stdout

    prefix = f"sf{pid % 100000}_"
    assert not [ns for ns in namespaces() if ns.startswith(prefix)]
    assert not Path(data["settings"]["workdir"]).exists()


def test_copies_onto_another_directory_with_tar_synced(tmp_path: Path) -> None:
    """--dest puts both tools' copies there (here the test's directory, usually a disk) and
    --sync makes tar's receiver end with `sync -f`; nothing is left in either place."""
    out = tmp_path / "small.json"
    dest = tmp_path / "dest"
    dest.mkdir()
    argv = [sys.executable, str(SCRIPT), "--count", "20", "--reps", "1", "--dest", str(dest)]
    argv += ["--sync", "--json-out", str(out)]
    _, code, stdout, stderr = run_script(argv, RUN_TIMEOUT_S)
    assert code == 0, stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["settings"]["copies_in"] == str(dest) and data["settings"]["tar_synced"]
    assert all(r["verified"] for k in ("l2fast_send", "tar_nc") for r in data["kinds"][k]["runs"])
    assert f"copies in {dest} (tar synced: sync -f)" in stdout
    assert list(dest.iterdir()) == []
    assert not Path(data["settings"]["workdir"]).exists()


def test_impossible_run_fails_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "small.json"
    # 100 million files of 1 GiB cannot fit in any tmpfs: refused before anything is written.
    argv = [sys.executable, str(SCRIPT), "--count", "100000000", "--size", "1G"]
    argv += ["--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bench/small_files.py: FAILED:") and "free" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_profile_of_a_folder_send(tmp_path: Path) -> None:
    code = "import sys; sys.path.insert(0, 'bench'); import perf_samples as p; "
    code += "print(p.perf_problem() or '')"
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert probe.returncode == 0, probe.stderr
    if probe.stdout.strip():
        pytest.skip(f"perf cannot profile here: {probe.stdout.strip()}")
    out = tmp_path / "small.json"
    argv = [sys.executable, str(SCRIPT), "--count", "50", "--reps", "1", "--profile"]
    argv += ["--json-out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads(out.read_text())["profile"]
    assert profile["command"] == "l2fast send of 50 files" and profile["bytes"] == 50 * 4096
    roles = {(r["side"], r["role"]) for r in profile["roles"]}
    assert ("sender", "sender main loop") in roles and ("receiver", "daemon loop") in roles
    assert profile["sides"]["sender"]["cpu_seconds"] > 0
    assert profile["sides"]["receiver"]["cpu_seconds"] > 0
    assert "Profile of `l2fast send of 50 files`" in proc.stdout
