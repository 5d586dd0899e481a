"""Log-spaced table of Gaussian scales: the latent entropy model codes with one CDF per table index.

Training maps the hyper-synthesis output to a continuous index `u` and uses
`scale_from_index(u)`; at coding time the index is an integer computed elsewhere in exact integer
arithmetic, so encoder and decoder pick the same table on every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class ScaleTable:
    """`levels` scales from `min_scale` to `max_scale`, equally spaced in log domain."""

    min_scale: float = 0.11
    max_scale: float = 64.0
    levels: int = 64

    def __post_init__(self) -> None:
        if not (self.min_scale > 0 and self.max_scale > self.min_scale):
            raise ValueError(f"need 0 < min_scale < max_scale, got {self.min_scale}, {self.max_scale}")
        if self.levels < 2:
            raise ValueError(f"a scale table needs at least 2 levels, got {self.levels}")

    @property
    def log_min(self) -> float:
        return math.log(self.min_scale)

    @property
    def step(self) -> float:
        """Distance between neighbouring levels in log(scale)."""
        return (math.log(self.max_scale) - math.log(self.min_scale)) / (self.levels - 1)

    def scales(self) -> np.ndarray:
        """The `levels` scales as float64, increasing; scales()[0] == min_scale."""
        return np.exp(self.log_min + np.arange(self.levels, dtype=np.float64) * self.step)

    def nearest_index(self, scale: np.ndarray) -> np.ndarray:
        """Float reference: index whose scale is nearest in log domain (not bit-exact; for tests/tools)."""
        s = np.maximum(np.asarray(scale, dtype=np.float64), 1e-12)
        u = np.rint((np.log(s) - self.log_min) / self.step)
        return np.clip(u, 0, self.levels - 1).astype(np.int64)

    def scale_from_index(self, u: "torch.Tensor") -> "torch.Tensor":
        """Differentiable scale of a fractional index u: exp(log min_scale + clamp(u, 0, L-1) * step)."""
        import torch

        return torch.exp(self.log_min + torch.clamp(u, 0.0, float(self.levels - 1)) * self.step)


def scale_from_index(u: "torch.Tensor", table: ScaleTable | None = None) -> "torch.Tensor":
    """Module-level form of `ScaleTable.scale_from_index` (default table when `table` is None)."""
    return (table or ScaleTable()).scale_from_index(u)
