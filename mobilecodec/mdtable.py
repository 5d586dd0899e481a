"""Markdown tables for the reports (demo, int8 check, profiler): one cell format everywhere."""

from __future__ import annotations

import math
import numbers
from typing import Any


def fmt(v: Any, nd: int = 3) -> str:
    """A table cell: '-' for None, floats with `nd` decimals (inf stays 'inf'; a value from 1e-6 that
    those would show as 0 with the decimals of two significant digits, at most six: a small model's
    0.000072 M params), anything else str()."""
    if v is None:
        return "-"
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):  # numpy floats too
        v = float(v)
        if 1e-6 <= abs(v) < 0.5 * 10.0 ** -nd:
            nd = min(6, 1 - math.floor(math.log10(abs(v))))
        return f"{v:.{nd}f}"
    return str(v)


def md_table(head: list[str], rows: list[list[Any]], nd: int = 3) -> list[str]:
    """Lines of a Markdown table with header `head`; cells through `fmt(cell, nd)`."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(fmt(c, nd) for c in r) + " |" for r in rows]
