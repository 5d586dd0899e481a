"""What the two complexity counters share (PyTorch modules in `runtime.complexity`, ONNX graphs in
`runtime.onnx_complexity`): element counts, the totals of their results and the plain-text table
layout, so both report work the same way."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Sequence


def numel(shape: Any) -> int:
    """Number of elements of a tensor of `shape`."""
    return int(math.prod(int(d) for d in shape))


class WorkTotals:
    """Totals of a counter result (a dataclass) with `elementwise` and `resampling` dicts of
    output elements per op type."""

    elementwise: dict[str, int]
    resampling: dict[str, int]

    @property
    def elementwise_total(self) -> int:
        """All element-wise output elements, summed over op types."""
        return sum(self.elementwise.values())

    @property
    def resampling_total(self) -> int:
        """All resampling / warp output elements, summed over op types."""
        return sum(self.resampling.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain ints, lists and strings) with the totals."""
        out = asdict(self)  # type: ignore[call-overload]
        out["elementwise_total"] = self.elementwise_total
        out["resampling_total"] = self.resampling_total
        return out


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain-text table: left-aligned columns two spaces apart, a dashed rule under the header."""
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    return lines + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
