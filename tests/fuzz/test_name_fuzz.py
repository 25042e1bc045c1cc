"""Fuzz invariant for received names (STYLE.md §15, PROTOCOL.md §Receiving files safely).

Any string or bytes offered as a path is either refused with a reason (BadName, ErrorCode
BAD_NAME), or is a plain relative path whose every component is a real name, and which, placed
for real, lands strictly below the receive directory. `display_name` of anything holds no
character a terminal would act on. Then the explicit hostile names of issue 5 and FACTS.md, and
a symlink planted in the receive directory (Warpinator CVE-2022-42725), which must not be
written through.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from l2fast.transfer.names import display_name, name_violation
from l2fast.transfer.placement import BadName, ReceiveDir, checked_components
from l2fast.wire.constants import ErrorCode

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

# Names built from the pieces that matter, so that hypothesis reaches past the first check.
_PIECES = [
    *["..", ".", "/", "//", "\\", "\x00", "\x1b[2J", "\x1b]0;t\x07", "\x9b", "\u202e", "\n"],
    *["a", "b.txt", ".part", ".part.l2fast", "é", "名", "😀", " ", "~", "-", "x" * 120],
]
_pieces = st.sampled_from(_PIECES)
composed = st.lists(_pieces, min_size=0, max_size=12).map("".join)
any_text = st.text(max_size=300) | composed
any_bytes = st.binary(max_size=300) | composed.map(lambda s: s.encode("utf-8", "surrogatepass"))


def assert_safe_components(components: tuple[str, ...]) -> None:
    assert components
    for c in components:
        assert c not in ("", ".", "..")
        assert "/" not in c and "\\" not in c and "\x00" not in c
        assert not any(unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"} for ch in c)
        assert len(c.encode()) <= 255
    root = "/recv/dir"
    resolved = os.path.normpath(os.path.join(root, *components))
    assert resolved.startswith(root + "/")


def assert_displayable(shown: str) -> None:
    assert not any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in shown), repr(shown)


@given(any_text)
@settings(max_examples=1000, deadline=None)
def test_any_text_is_refused_or_safe(name: str) -> None:
    assert_displayable(display_name(name))
    problem = name_violation(name)
    if problem is not None:
        assert isinstance(problem, str) and problem
        with pytest.raises(BadName) as info:
            checked_components(name)
        assert info.value.code == ErrorCode.BAD_NAME
        assert_displayable(info.value.message)
        return
    assert_safe_components(checked_components(name))


@given(any_bytes)
@settings(max_examples=600, deadline=None)
def test_any_bytes_are_refused_or_safe(name: bytes) -> None:
    assert_displayable(display_name(name))
    if name_violation(name) is None:
        assert_safe_components(checked_components(name))
    else:
        with pytest.raises(BadName):
            checked_components(name)


@given(composed)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_placed_for_real_lands_below_the_receive_directory(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "recv"
        root.mkdir()
        (Path(tmp) / "outside").mkdir()
        (root / "link").symlink_to(Path(tmp) / "outside")
        with ReceiveDir(root) as rd:
            try:
                f = rd.receive_file(
                    name, size=3, chunk_size=1000, first_chunk=0, mode=0o644, mtime_ns=0, digest=1
                )
            except BadName:
                placed = None
            else:
                f.write_chunk(0, b"abc")
                digest = hashlib.sha256(b"abc").digest()
                placed = f.complete(digest, digest).final_name
        assert os.listdir(Path(tmp) / "outside") == []
        if placed is not None:
            event("placed")
            final = (root / placed).resolve()
            assert final.is_relative_to(root.resolve()) and final != root.resolve()
            assert final.read_bytes() == b"abc"


HOSTILE = [
    "../x",
    "/etc/x",
    "a/../../x",
    "x\x1b[2J",
    "\x1b]0;title\x07",
    "a\x00b",
    "..",
    ".",
    "a//b",
    "..\\..\\x",
    "a/./b",
    "/",
    "",
    "x/",
    "\u202eexe.txt",
    "line\nbreak",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_explicit_hostile_names_are_refused_and_nothing_is_created(
    tmp_path: Path, name: str
) -> None:
    root = tmp_path / "recv"
    root.mkdir()
    with ReceiveDir(root) as rd:
        with pytest.raises(BadName) as info:
            rd.receive_file(name, size=1, chunk_size=1, first_chunk=0, mode=0, mtime_ns=0, digest=1)
        assert info.value.code == ErrorCode.BAD_NAME
        assert_displayable(info.value.message)
        with pytest.raises(BadName):
            rd.make_directory(name)
    assert os.listdir(root) == []
    assert sorted(os.listdir(tmp_path)) == ["recv"]


def test_a_symlink_inside_the_receive_dir_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"  # stands for /tmp/outside, or ~/.ssh
    outside.mkdir()
    root = tmp_path / "recv"
    root.mkdir()
    (root / "innocent").symlink_to(outside)
    with ReceiveDir(root) as rd:
        for name in ("innocent/authorized_keys", "innocent/deeper/x"):
            with pytest.raises(BadName, match="symlink"):
                rd.receive_file(
                    name, size=4, chunk_size=4, first_chunk=0, mode=0o600, mtime_ns=0, digest=1
                )
    assert os.listdir(outside) == []
    assert (root / "innocent").is_symlink()
