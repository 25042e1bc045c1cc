"""Names of received files: which offered paths are refused, and how names are shown.

The checks follow what other tools got wrong (FACTS.md): croc (CVE-2023-43616..43621) and
LocalSend (CVE-2025-27142) wrote wherever a peer's `../` or absolute path pointed, and croc
printed ANSI escapes in names raw, letting a sender rewrite the receiver's terminal.
`name_violation` refuses absolute paths, `.`/`..` and empty components, backslashes, NUL,
control characters (C0, DEL and C1: every terminal escape starts with ESC or a C1 byte), line
separators, lone surrogates and bidirectional overrides. A refused name is never "cleaned" into
another one: the sender learns why (ErrorCode.BAD_NAME) and the user can rename.

Names are only checked here; where a file lands (symlinks, existing files) is the business of
`l2fast.transfer.placement`, which also uses the name variants below (`name (1).ext`, part file
names that fit NAME_MAX).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from l2fast.daemon.display import escape_text
from l2fast.transfer.resume import SIDECAR_SUFFIX
from l2fast.wire.frames_transfer import path_violation

__all__ = [
    "NAME_MAX",
    "PART_SUFFIX",
    "display_name",
    "name_violation",
    "part_name",
    "safety_violation",
    "variant_name",
]

PART_SUFFIX = ".part"
_RESERVED_SUFFIXES = (PART_SUFFIX, PART_SUFFIX + SIDECAR_SUFFIX)
NAME_MAX = 255  # bytes in one file name on Linux file systems
_PART_OVERHEAD = len((PART_SUFFIX + SIDECAR_SUFFIX).encode())

# Bidirectional controls make a name read differently from what it is ("gpj.exe" shown as
# "exe.jpg"); they have no place in a file name.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Cc holds C0, DEL and C1 (so ESC and CSI, which start every terminal escape), Cs lone
# surrogates (not UTF-8), Zl/Zp line and paragraph separators (they break lines in listings).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def display_name(name: str | bytes) -> str:
    """`name` as it may be printed to a terminal: like repr(), without the quotes.

    Control, format and separator characters become visible escapes (`\\x1b`, `\\u202e`), and
    backslashes are doubled so that a literal `\\x1b` in a name cannot pass for an escaped ESC.
    Bytes that are not UTF-8 are shown as `\\xNN`. Printable text of any script is kept.
    """
    if isinstance(name, bytes | bytearray):
        text = bytes(name).decode("utf-8", "surrogateescape")
        escaped = escape_text(text.replace("\\", "\\\\"))
        # escape_text shows an undecodable byte (a lone surrogate here) as \udcNN: show \xNN.
        return _SURROGATE_ESCAPE.sub(_byte_escape, escaped)
    return escape_text(name.replace("\\", "\\\\"))


_SURROGATE_ESCAPE = re.compile(r"(\\\\)|\\udc([89a-f][0-9a-f])")


def _byte_escape(match: re.Match[str]) -> str:
    return match.group(1) or f"\\x{match.group(2)}"


def _char_violation(text: str) -> str | None:
    if text.isascii() and text.isprintable():
        return None  # the common case: no control character, nothing bidirectional
    for ch in text:
        if ch in _BIDI_CONTROLS:
            return f"a bidirectional control U+{ord(ch):04X}"
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            if ch == "\x1b":
                return "a terminal escape (ESC)"
            return f"a control character U+{ord(ch):04X}"
    return None


def name_violation(path: str | bytes, *, is_file: bool = True) -> str | None:
    """Why the offered relative path `path` is refused, or None when it is safe to place.

    Both the protocol's limits (PROTOCOL.md §Limits) and the receiver's safety rules
    (`safety_violation`). Bytes must be UTF-8, as on the wire.
    """
    if isinstance(path, bytes | bytearray):
        try:
            path = bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return "name is not valid UTF-8"
    if not path:
        return "name is empty"
    if path.startswith("/"):
        return "absolute path"
    problem = safety_violation(path, is_file=is_file)
    if problem is not None:
        return problem
    try:
        return path_violation(path)
    except UnicodeEncodeError:
        return "name is not valid UTF-8"


def safety_violation(path: str, *, is_file: bool = True) -> str | None:
    """Why a receiver refuses `path`, leaving aside the protocol's length limits, or None.

    `is_file` adds the rule that the last component may not end `.part` or `.part.l2fast`
    (reserved for partial files).
    """
    if path.startswith("/"):
        return "absolute path"
    if "\x00" in path:
        return "name contains NUL"
    if "\\" in path:
        # A backslash is a separator on Windows; refusing it keeps `..\\x` from meaning
        # anything to any tool that later handles the tree.
        return "name contains a backslash"
    problem = _char_violation(path)
    if problem is not None:
        return f"name contains {problem}"
    components = path.split("/")
    for component in components:
        if component in (".", ".."):
            return f"path has a {component!r} component"
    if is_file and components[-1].endswith(_RESERVED_SUFFIXES):
        return "names ending .part or .part.l2fast are reserved for partial files"
    return None


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _split_ext(leaf: str) -> tuple[str, str]:
    """`photo.jpg` -> (`photo`, `.jpg`); a leading dot or a long tail is not an extension."""
    dot = leaf.rfind(".")
    if dot <= 0 or len(leaf) - dot > 16 or " " in leaf[dot:]:
        return leaf, ""
    return leaf[:dot], leaf[dot:]


def variant_name(leaf: str, n: int, limit: int = NAME_MAX) -> str:
    """The n-th name for `leaf`: itself, then `stem (n).ext`, cut to `limit` bytes."""
    if n == 0 and len(leaf.encode()) <= limit:
        return leaf
    stem, ext = _split_ext(leaf)
    tail = (f" ({n})" if n else "") + ext
    return _cut_utf8(stem, limit - len(tail.encode())) + tail


def part_name(leaf: str, n: int) -> str:
    """The part file name of slot n. Long names are cut and tagged with a hash, so that the
    sidecar name (`+ .part.l2fast`) still fits NAME_MAX and stays the same on every resume."""
    base = variant_name(leaf, n)
    if len(base.encode()) + _PART_OVERHEAD > NAME_MAX:
        tag = "~" + hashlib.sha256(base.encode()).hexdigest()[:8]
        base = _cut_utf8(base, NAME_MAX - _PART_OVERHEAD - len(tag)) + tag
    return base + PART_SUFFIX
