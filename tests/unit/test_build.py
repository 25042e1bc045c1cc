"""The C core builds from scratch with -O2 -Wall -Wextra and not one compiler warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMPILE = """
import runpy, sys
ns = runpy.run_path(sys.argv[2])
ns["ffibuilder"].compile(tmpdir=sys.argv[1], verbose=True)
"""


def test_core_compiles_without_warnings(tmp_path: Path) -> None:
    # A fresh tmpdir forces every file to compile (nothing is reused from an earlier build).
    result = subprocess.run(
        [sys.executable, "-c", COMPILE, str(tmp_path), str(ROOT / "csrc" / "build_ffi.py")],
        # Run outside the repository so the build script uses absolute source paths.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # gcc writes its diagnostics to the stderr it inherits, which this test captures.
    warnings = [line for line in output.splitlines() if "warning:" in line.lower()]
    assert warnings == [], "\n".join(warnings)
    assert list(tmp_path.rglob("_core*.so")), "no extension module was produced"


def test_build_flags_are_strict() -> None:
    import runpy

    flags = runpy.run_path(str(ROOT / "csrc" / "build_ffi.py"))["EXTRA_COMPILE_ARGS"]
    assert {"-O2", "-Wall", "-Wextra"} <= set(flags)
