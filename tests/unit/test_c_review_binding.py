"""Review tests for the data-path binding (l2fast/native/datapath.py).

STYLE.md §6: the binding checks before calling C.  A closed `ShmRing` has been unmapped, so any
C call still pointing into it would read freed memory (a SIGSEGV, not an exception); these run in
a child interpreter so that such a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
    import socket
    from l2fast.native import datapath as dp
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = dp.ShmRing(64, 256)
"""

CASES = {
    "writer": """
        w = dp.Writer(ring, -1, chunk_size=100, file_size=1000)
        ring.close()
        w.drain()
    """,
    "rx_run": """
        rx = dp.RxPath(a, [ring], session=1, chunk_size=100, file_size=1000)
        ring.close()
        rx.run(0.0)
    """,
    "rx_feedback": """
        rx = dp.RxPath(a, [ring], session=1, chunk_size=100, file_size=1000)
        ring.close()
        rx.feedback()
    """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_closed_ring_raises_instead_of_crashing(case: str) -> None:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(CASES[case])
    code += "\nprint('no error')\n"
    wrapped = (
        "try:\n"
        + textwrap.indent(code, "    ")
        + "\nexcept ValueError as e:\n    print('ValueError', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapped],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("ValueError"), proc.stdout
