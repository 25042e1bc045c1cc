"""Sending a folder again (PROTOCOL.md §Files already at the receiver), on the namespace lab.

The second `send` of a folder whose files already arrived must move no data for them, leave
no `name (1)` copies, and say on both ends that they were already there; a file changed in
place without a size change is received again beside the old one, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_send_lab import final_event, make_file, make_lab, no_partials, sha256

__all__ = ["make_lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.root

MIB = 1 << 20


def make_tree(top: Path) -> dict[str, int]:
    """A folder of large (part-file) and small (unnamed-file) files, nested, one empty."""
    sizes = {
        "big1.bin": 3 * MIB + 11,
        "big2.bin": MIB + 1,
        "sub/big3.bin": 2 * MIB,
        "sub/deeper/zero": 0,
        **{f"sub/s{i}.txt": 4096 + i for i in range(8)},
    }
    for i, (rel, size) in enumerate(sizes.items()):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        make_file(top / rel, size, i)
    return sizes


def copies(rx: Path) -> list[str]:
    """Files placed under a free name (`x (1).txt`) because their own was taken."""
    return sorted(str(p.relative_to(rx)) for p in rx.rglob("*") if " (" in p.name)


def test_sending_a_folder_again_moves_only_what_is_missing(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(mtu=9000)
    rx = lab.daemon("h2")
    top = tmp_path / "tree"
    sizes = make_tree(top)
    # The first run is cut short in effect: two files are not there yet when it is sent.
    late = {"sub/big3.bin", "sub/s7.txt"}
    held = {rel: (top / rel).read_bytes() for rel in late}
    for rel in late:
        (top / rel).unlink()
    first = lab.send("h1", "h2", top)
    assert first.returncode == 0, first.stderr + lab.log_tail("h2")
    for rel, data in held.items():
        (top / rel).write_bytes(data)

    again = lab.send("h1", "h2", top)
    assert again.returncode == 0, again.stderr + lab.log_tail("h2")
    event = final_event(again.stdout)
    assert event["verified"] is True
    # Only the two new files' bytes crossed; everything else was recognised.
    assert event["bytes_sent"] == sum(sizes[rel] for rel in late)
    nonempty = {rel for rel, size in sizes.items() if size} - late
    assert event["files_present"] == len(nonempty)
    by_path = {r["path"].removeprefix("tree/"): r for r in event["results"]}
    assert {rel for rel, r in by_path.items() if r.get("present")} == nonempty
    assert all(by_path[rel]["needed_bytes"] == 0 for rel in nonempty)
    assert all(by_path[rel]["final_name"] == f"tree/{rel}" for rel in sizes)
    assert copies(rx) == [], copies(rx)
    for rel in sizes:
        assert sha256(rx / "tree" / rel) == sha256(top / rel), rel
    assert no_partials(rx) == []
    # The receiver says so too (status `received`, its log).
    received = lab.status("h2")["received"]  # the last 10, all of the second run
    assert len(received) == 10
    for r in received:
        rel = r["path"].removeprefix("tree/")
        assert r["present"] is (rel in nonempty or rel == "sub/deeper/zero"), r
    assert "already present: 'tree/big1.bin'" in lab.log(h := "h2").read_text(), lab.log_tail(h)

    # A third time, as text: the summary names the files that were already there.
    text = lab.cli("h1", "send", "h2", str(top), timeout=90)
    assert text.returncode == 0, text.stderr
    # 15 entries: 12 files and 3 directories; the empty file has no chunks to recognise.
    assert text.stdout.startswith("sent 12 files and 3 folders: 0 B in "), text.stdout
    assert f", {len(sizes) - 1} already at the receiver (" in text.stdout, text.stdout
    assert copies(rx) == []


def test_a_file_changed_without_a_size_change_is_received_beside_it(
    make_lab: Any, tmp_path: Path
) -> None:
    lab = make_lab(mtu=1500)
    rx = lab.daemon("h2")
    top = tmp_path / "tree"
    sizes = make_tree(top)
    first = lab.send("h1", "h2", top)
    assert first.returncode == 0, first.stderr + lab.log_tail("h2")
    old = {rel: sha256(rx / "tree" / rel) for rel in ("big1.bin", "sub/s3.txt")}
    # Same size, other content (and the same mtime, so nothing but the digest can tell).
    for rel in old:
        path = top / rel
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    again = lab.send("h1", "h2", top)
    assert again.returncode == 0, again.stderr + lab.log_tail("h2")
    event = final_event(again.stdout)
    assert event["verified"] is True
    assert event["bytes_sent"] == sizes["big1.bin"] + sizes["sub/s3.txt"]
    by_path = {r["path"].removeprefix("tree/"): r for r in event["results"]}
    assert not by_path["big1.bin"]["present"] and not by_path["sub/s3.txt"]["present"]
    assert by_path["big1.bin"]["final_name"] == "tree/big1 (1).bin"
    assert by_path["sub/s3.txt"]["final_name"] == "tree/sub/s3 (1).txt"
    assert copies(rx) == ["tree/big1 (1).bin", "tree/sub/s3 (1).txt"]
    for rel, digest in old.items():
        assert sha256(rx / "tree" / rel) == digest  # never overwritten
    assert sha256(rx / "tree" / "big1 (1).bin") == sha256(top / "big1.bin")
    assert sha256(rx / "tree" / "sub" / "s3 (1).txt") == sha256(top / "sub" / "s3.txt")
    assert event["files_present"] == len([s for s in sizes.values() if s]) - 2
    assert no_partials(rx) == []
