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

Every control frame is encoded and decoded in Python, once per file for a folder of small
files, so each table is compiled once into steps: a run of fixed-width integers becomes one
`struct.Struct` (one bounds check and one unpack instead of one per field), the other kinds go
field by field. A run that does not fit (a payload cut short, a value out of range) is done
again field by field, so errors name the field exactly as before.
"""

from __future__ import annotations

import dataclasses
import struct
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


#: struct codes of the fixed-width integer kinds (big-endian, PROTOCOL.md §Conventions).
_FIXED_CODES: dict[str, str] = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i64": "q"}
#: Bytes a field of a variable kind takes besides its contents: its length (or count).
_LENGTH_BYTES: dict[str, int] = {"str8": 1, "bytes8": 1, "str16": 2, "ranges": 2, "rest": 0}


def framing_bytes(layout: Layout) -> int:
    """Bytes a payload of `layout` takes besides the contents of its variable fields (its
    strings, byte strings, ranges and rest): what a sender adds to those to know whether
    they fit a frame."""
    return sum(
        struct.calcsize("!" + _FIXED_CODES[f.kind]) if f.kind in _FIXED_CODES
        else 1 if f.kind == "flag"
        else _LENGTH_BYTES[f.kind]
        for f in layout
    )  # fmt: skip


class _Run(NamedTuple):
    """Consecutive fixed-width integer fields, packed and unpacked as one struct."""

    codec: struct.Struct
    fields: Layout
    names: tuple[str, ...]


_Step = _Run | Field


def _compile(layout: Layout) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    run: list[Field] = []

    def close_run() -> None:
        if len(run) == 1:
            steps.append(run[0])
        elif run:
            codes = "".join(_FIXED_CODES[field.kind] for field in run)
            fields = tuple(run)
            steps.append(_Run(struct.Struct(">" + codes), fields, tuple(f.name for f in fields)))
        run.clear()

    for field in layout:
        if field.kind in _FIXED_CODES:
            run.append(field)
        else:
            close_run()
            steps.append(field)
    close_run()
    return tuple(steps)


#: Compiled steps per payload class (a subclass has its own LAYOUT, so its own entry).
_STEPS: dict[type, tuple[_Step, ...]] = {}


def _steps(cls: type[TablePayload]) -> tuple[_Step, ...]:
    steps = _STEPS.get(cls)
    if steps is None:
        steps = _STEPS[cls] = _compile(cls.LAYOUT)
    return steps


class TablePayload:
    """Base of the payload dataclasses whose wire layout is exactly their `LAYOUT` table."""

    __slots__ = ()
    LAYOUT: ClassVar[Layout]

    def write_fields(self, w: PayloadWriter) -> None:
        """Append the fields in wire order."""
        for step in _steps(type(self)):
            if isinstance(step, Field):
                _write(w, step, getattr(self, step.name))
                continue
            values = [getattr(self, name) for name in step.names]
            try:
                packed = step.codec.pack(*values)
            except struct.error:
                # Out of range or not an integer: field by field, which says which one.
                for field, value in zip(step.fields, values, strict=True):
                    _write(w, field, value)
                continue
            w.raw(packed)

    @classmethod
    def read_fields(cls, r: PayloadReader) -> Self:
        """Read the fields in wire order; bytes after the last one are padding (§Receiving)."""
        values: list[object] = []
        for step in _steps(cls):
            if isinstance(step, Field):
                values.append(_read(r, step))
                continue
            fixed = r.fixed(step.codec)
            if fixed is None:  # cut short: field by field, so the error names the field
                values.extend(_read(r, field) for field in step.fields)
            else:
                values.extend(fixed)
        # Positional: @checked_layout makes LAYOUT's order the dataclass's field order.
        return cls(*values)


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
