"""bench/compare_report.py prints a ratio so that its figure never contradicts its verdict.

A median ratio of 1.1998 against a ">= 1.2" target is not met, and a table cell reading
"1.20x **NOT MET**" made that look like a bug in the verdict (session 7's 15:35 run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CASES = [
    # (ratio key, MTU, value, printed)
    ("bench_over_iperf3", 65535, 1.1997551293394249, "1.1998x"),  # just under >= 1.2
    ("bench_over_iperf3", 65535, 1.2003, "1.20x"),  # just over: two decimals are true
    ("bench_over_iperf3", 65535, 1.26, "1.26x"),
    ("bench_over_iperf3", 1500, 0.2112, "0.21x"),  # no target at 1500: two decimals
    ("bench_over_raw", 9000, 0.79996, "0.79996x"),  # >= 0.8 missed by 0.00004: 5 places
    ("rtt_ratio", 1500, 5.004, "5.004x"),  # <= 5 missed
    ("rtt_ratio", 1500, 4.996, "5.00x"),  # <= 5 met, and 5.00 is still <= 5
    ("raw_over_nc", 9000, 3.456, "3.46x"),  # no target anywhere
    # Closer to the target than six decimals can round away from: cut toward the value's side.
    ("bench_over_iperf3", 65535, 1.19999996, "1.199999x"),
    ("rtt_ratio", 1500, 5.0000004, "5.000001x"),
]


def test_printed_ratio_sits_on_the_side_of_its_target() -> None:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import compare_report as r; "
        f"print(json.dumps([r.format_ratio(k, m, v) for k, m, v, _ in {CASES!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [printed for *_, printed in CASES]
