"""Run each libFuzzer target for a short, bounded time (STYLE.md §15).

- `fuzz_parse_batch`: the C batch parser (tests/fuzz/fuzz_parse_batch.c).
- `fuzz_rxwindow`: the receive path's bookkeeping (tests/fuzz/fuzz_rxwindow.c): the receive
  window, ring publish/reclaim, FEEDBACK and the writers, with frames from a hostile wire and a
  process scribbling on the shared rings.
- `fuzz_echo`: the echo responder's per-frame decision (tests/fuzz/fuzz_echo.c): PONGs echo
  their PING byte for byte, every frame lands in exactly one counter, the rate limits hold.
- `fuzz_txstream`: the sender's streaming burst (tests/fuzz/fuzz_txstream.c) fed hostile and
  forged FEEDBACK frames: it sends exactly what it logs, never past the credit, and takes credit
  only from this session's plain FEEDBACKs.

All are built with ASan and UBSan. `make fuzz` (or `tests/fuzz/run.sh SECONDS [TARGET]`) runs
them for longer; this keeps every test run fuzzing a little. Any finding (crash, sanitizer
report, broken invariant, timeout) fails the test, with the input left in tests/fuzz/build/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUN = HERE / "run.sh"
FUZZ_SECONDS = 15
# Targets fuzzed for less (their input space is small): seconds per run.
FUZZ_SECONDS_FOR = {"fuzz_echo": 10, "fuzz_txstream": 10}
ARTIFACTS = ("crash-*", "leak-*", "timeout-*", "oom-*", "slow-unit-*")


def _libfuzzer_missing() -> str | None:
    """None when clang can build a libFuzzer binary, else the reason it cannot."""
    cc = shutil.which("clang") or shutil.which("clang-14")
    if cc is None:
        return "clang is not installed (apt-get install clang libclang-rt-14-dev)"
    probe = subprocess.run(
        [cc, "-fsanitize=fuzzer", "-x", "c", "-", "-o", os.devnull],
        input=b"#include <stdint.h>\n#include <stddef.h>\n"
        b"int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        return "clang has no libFuzzer runtime (apt-get install libclang-rt-14-dev)"
    return None


def _artifacts() -> set[Path]:
    return {p for pattern in ARTIFACTS for p in (HERE / "build").glob(pattern)}


@pytest.mark.parametrize(
    "target", ["fuzz_parse_batch", "fuzz_rxwindow", "fuzz_echo", "fuzz_txstream"]
)
def test_fuzz_target_runs_clean(target: str) -> None:
    missing = _libfuzzer_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must fuzz: {missing}")
        pytest.skip(missing)
    before = _artifacts()
    seconds = FUZZ_SECONDS_FOR.get(target, FUZZ_SECONDS)
    proc = subprocess.run(
        [str(RUN), str(seconds), target],
        capture_output=True,
        text=True,
        timeout=seconds + 240,  # includes the build
        check=False,
    )
    new = sorted(_artifacts() - before)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"fuzzer finding (artifacts: {new}):\n{tail}"
    assert not new, f"fuzzer left artifacts {new}:\n{tail}"
    # A clean run must really have executed inputs, not exited early.
    assert "Done " in proc.stderr and "number_of_executed_units" in proc.stderr, tail
