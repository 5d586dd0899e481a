"""Markdown tables for the reports (demo, int8 check, profiler): one cell format everywhere."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, nd: int = 3) -> str:
    """A table cell: '-' for None, floats with `nd` decimals (inf stays 'inf'), anything else str()."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def md_table(head: list[str], rows: list[list[Any]], nd: int = 3) -> list[str]:
    """Lines of a Markdown table with header `head`; cells through `fmt(cell, nd)`."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(fmt(c, nd) for c in r) + " |" for r in rows]
