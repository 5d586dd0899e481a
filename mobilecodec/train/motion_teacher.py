"""Auxiliary training loss towards the block-matching motion (`mobilecodec.models.motion_search`):
pulls the decoded flow out of the zero basin where the warp's own gradient (about one pixel
wide) cannot reach; a half-pixel dead zone leaves sub-pixel refinement to the warp."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def teacher_loss(flow: Tensor, teacher: Tensor, confident: Tensor, dead_zone: float = 0.5) -> Tensor:
    """Per-sample (N,) mean over confident blocks of the L1 flow error beyond `dead_zone` pixels
    (summed over dx and dy); 0 for a sample without a confident block."""
    err = F.relu((flow - teacher).abs() - dead_zone).sum(dim=1, keepdim=True) * confident
    n = confident.flatten(1).sum(dim=1).clamp_min(1)
    return err.flatten(1).sum(dim=1) / n
