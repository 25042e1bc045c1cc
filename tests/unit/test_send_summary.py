"""`l2fast send`'s text summary names what was already at the receiver."""

from __future__ import annotations

from typing import Any

import pytest

from l2fast.commands.send import _summary

MIB = 1 << 20


def result(path: str, size: int, present: bool, skipped: int | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "final_name": path,
        "present": present,
        "needed_bytes": 0 if present else size - (skipped or 0),
        "skipped_bytes": size if present else (skipped or 0),
    }


def test_one_file_already_there(capsys: pytest.CaptureFixture[str]) -> None:
    final = {"files": [result("x.iso", MIB, True)], "files_present": 1, "digest": "ab"}
    _summary({**final, "bytes_sent": 0, "skipped_bytes": MIB, "seconds": 0.01}, "sha256")
    out = capsys.readouterr().out
    assert out == (
        "x.iso is already at the receiver (same size and digest): nothing sent; "
        "verified sha256 ab\n"
    )


def test_a_folder_with_present_and_resumed_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        result("d/a", MIB, True),
        result("d/b", 2 * MIB, False, skipped=MIB),
        result("d/c", 5, False),
    ]
    final = {
        "files": files,
        "files_present": 1,
        "bytes_sent": MIB + 5,
        "skipped_bytes": 2 * MIB,
        "seconds": 0.5,
        "gbit_per_s": 0.02,
    }
    _summary(final, "sha256")
    out = capsys.readouterr().out
    assert out.startswith("sent 3 files: ")
    assert (
        ", 1 already at the receiver (1.00 MiB, not sent), "
        "1.00 MiB already there (resumed); verified" in out
    )
