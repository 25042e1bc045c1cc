"""Payload layouts declared once, as tables (PROTOCOL.md §Frame types).

A payload class lists its fields in wire order in `LAYOUT`, one `Field(name, kind)` per row of
its table in PROTOCOL.md, and inherits `write_fields` / `read_fields`, which walk that table
through PayloadWriter / PayloadReader (so the bounds guard and the width checks stay theirs).
`@checked_layout` makes sure at import time that the table names the dataclass's fields exactly
and in order, so a typo fails when the module loads rather than on the wire.

Kinds:
- `u8`, `u16`, `u32`, `u64`, `i64`, `str8`, `str16`, `bytes8`: as PROTOCOL.md §Conventions;
  each is also the name of the PayloadReader / PayloadWriter method that handles it;
- `flag`: a u8 that must be 0 or 1, held as a bool (CHAT `to_all`);
- `ranges`: `u16 n_ranges`, then that many (u64 start, u64 end) pairs; `cap`, when given,
  bounds `n_ranges` before any range is read (FEEDBACK);
- `rest`: every remaining byte (DATA, CHAT, PING, PONG).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, NamedTuple, Self, TypeVar

from l2fast.wire.payload_fields import PayloadReader, PayloadWriter

__all__ = ["Field", "Kind", "Layout", "TablePayload", "checked_layout"]

Kind = Literal[
    "u8", "u16", "u32", "u64", "i64", "str8", "str16", "bytes8", "flag", "ranges", "rest"
]


class Field(NamedTuple):
    """One row of a payload layout: the dataclass field `name`, carried as `kind`."""

    name: str
    kind: Kind
    cap: int | None = None


Layout = tuple[Field, ...]


def _write(w: PayloadWriter, field: Field, value: Any) -> None:
    if field.kind == "ranges":
        w.u16(len(value), "n_ranges")
        w.ranges(value, field.name)
    elif field.kind == "flag":
        w.u8(1 if value else 0, field.name)
    elif field.kind == "rest":
        w.raw(value)
    else:
        getattr(w, field.kind)(value, field.name)


def _read(r: PayloadReader, field: Field) -> object:
    if field.kind == "ranges":
        count = r.u16("n_ranges")
        if field.cap is not None and count > field.cap:
            raise r.malformed(f"n_ranges {count} exceeds {field.cap}")
        return r.ranges(count, field.name)
    if field.kind == "flag":
        flag = r.u8(field.name)
        if flag > 1:
            raise r.malformed(f"{field.name} is {flag}, must be 0 or 1")
        return flag == 1
    if field.kind == "rest":
        return r.rest()
    value: object = getattr(r, field.kind)(field.name)
    return value


class TablePayload:
    """Base of the payload dataclasses whose wire layout is exactly their `LAYOUT` table."""

    __slots__ = ()
    LAYOUT: ClassVar[Layout]

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        for field in self.LAYOUT:
            _write(w, field, getattr(self, field.name))

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Self:
        """Read the fields in wire order; bytes after the last one are padding (§Receiving)."""
        values = {field.name: _read(r, field) for field in cls.LAYOUT}
        return cls(**values)


_P = TypeVar("_P", bound=type[TablePayload])


def checked_layout(cls: _P) -> _P:
    """Class decorator (above `@dataclass`): fail at import unless LAYOUT names the fields."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__}: put @checked_layout above @dataclass")
    fields = tuple(field.name for field in dataclasses.fields(cls))
    layout = tuple(field.name for field in cls.LAYOUT)
    if layout != fields:
        raise TypeError(f"{cls.__name__}.LAYOUT names {layout}, but its fields are {fields}")
    return cls
