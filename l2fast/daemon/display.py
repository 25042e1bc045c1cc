"""Text from the wire, made safe to print, and the small formats every command shares.

Names and chat messages come from other machines. Printed raw, an ESC or CSI sequence in them
would be executed by the terminal (recolouring, moving the cursor, rewriting earlier lines,
setting the window title), a bidirectional override would make text read differently from what
it is, and a newline would let a sender forge a line that looks like a second message (croc's
CVE-2023-43621 is this bug). `escape_text` shows every such character as a visible escape
instead (PROTOCOL.md §Field rules: "Names and texts are shown to users escaped").
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["counted", "escape_text", "format_clock", "format_mac", "format_rtt_us", "parse_mac"]

# Unicode categories never printed raw: C0/C1 controls with DEL (Cc, which holds ESC and CSI),
# format characters such as bidi overrides and zero-width joiners (Cf), lone surrogates from
# undecodable input (Cs), and the line and paragraph separators (Zl, Zp).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: str | bytes) -> str:
    """`text` with every control, format or separator character shown as an escape.

    Bytes are decoded as UTF-8; bytes that are not UTF-8 appear as `\\xNN`. Printable text,
    including non-Latin scripts and emoji, is left as it is.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="backslashreplace")
    if text.isprintable() and text.isascii():
        return text  # the common case, without a per-character walk
    return "".join(
        _escape_char(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )


def format_mac(mac: bytes) -> str:
    """`aa:bb:cc:dd:ee:ff`."""
    return mac.hex(":")


def peer_label(mac: str, name: str | None) -> str:
    """`alice (02:4c:32:00:00:01)`: a peer as people are shown it, its announced name escaped
    and always with its MAC, since a name is whatever the peer chose to announce."""
    return f"{escape_text(name)} ({mac})" if name is not None else mac


def parse_mac(text: str) -> bytes | None:
    """The 6 bytes of a MAC written `aa:bb:cc:dd:ee:ff` (or with `-`; a byte may drop its
    leading zero, as `ip link` prints none but accepts `2:0:...`), or None if it is not one."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def looks_like_mac(text: str) -> bool:
    """Whether `text` was meant as a MAC address (short groups between `:` or `-`) even when
    it is not a valid one: such a peer is refused at once, not looked up as a name."""
    return _MAC_LIKE.fullmatch(text) is not None


_MAC_LIKE = re.compile(r"[0-9A-Za-z]{0,3}(?:[:-][0-9A-Za-z]{0,3}){3,8}")


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def offers_by_folder(offers: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The pending offers (`inbox` replies) to list, each with how many entries wait inside
    it: an offer inside a waiting folder (its `folder` set) is answered with that folder, so
    it is counted on the folder's row rather than listed."""
    inside = Counter(o["folder"] for o in offers if o.get("folder") is not None)
    return [(o, inside[o["id"]]) for o in offers if o.get("folder") is None]


def unheard_of(reply: dict[str, Any]) -> str | None:
    """The `unheard` text of a peers, discover or status reply (the nodes the LAN key check
    refused lately, and what to do), escaped for the terminal; None when there are none."""
    text = (reply.get("unheard") or {}).get("text")
    return escape_text(text) if text else None


def format_clock(wall: float) -> str:
    """A wall-clock time as local `HH:MM:SS`, for lines printed as things happen."""
    return time.strftime("%H:%M:%S", time.localtime(wall))


def counted(n: int, word: str, plural: str | None = None) -> str:
    """`1 file`, `2 files` (`plural` for words that do not take an s: `2 entries`)."""
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def format_rtt_us(rtt_us: float | None) -> str:
    """A round-trip time for tables: `0.123 ms`, or `-` when not measured."""
    return "-" if rtt_us is None else f"{rtt_us / 1000:.3f} ms"
