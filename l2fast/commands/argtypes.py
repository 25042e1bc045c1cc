"""Bounded number options for argparse.

argparse names a failing `type=` callable by its `__name__` ("invalid _interval value: 'abc'"),
so every number option uses `number()` instead: a value that is not a number, or is out of
range, is refused as "must be ... between LO and HI UNIT, got TEXT" before anything runs
(before a lab is built or a banner printed).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["number"]

T = TypeVar("T", int, float)


def number(kind: type[T], lo: T, hi: T, unit: str = "") -> Callable[[str], T]:
    """An argparse `type=` that takes a `kind` (int or float) in lo..hi, inclusive."""
    what = "a whole number" if kind is int else "a number"
    low, high = (f"{lo}", f"{hi}") if kind is int else (f"{lo:g}", f"{hi:g}")
    span = f"between {low} and {high}{' ' + unit if unit else ''}"

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} {span}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    parse.__name__ = what  # what argparse would print, were the message ever its own
    return parse
