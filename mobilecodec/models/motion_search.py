"""Sender-side block-matching motion search: the motion hint of the motion analysis, and the
motion teacher of training.

A small motion autoencoder that must find motion by itself from (x_t, reference) did not learn
to on a CPU budget: tiny-cpu's first P-frame phase (20,000 steps) sent 0 motion bits on moving
stills and on bikes, and its flow recursion grew without bound after ~20 frames. Even trained on
the motion loss alone it did not generalise in 1,000 steps. Given the block-matching vectors
minus the predicted flow (CodecConfig.motion_hint = "block_match"), it learns to code the
correction within a few hundred steps. This is what every classical encoder does: integer
full-search block matching on the sender; the receiver never runs it, so streams and decoders
are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: A block takes the teacher's vector only when it lowers the block's mean absolute luma
#: difference by at least this much against zero motion (levels of 1/255): flat or noisy blocks,
#: where the best match is arbitrary, give no teacher signal.
MIN_GAIN = 1.0 / 255.0
#: Tie-break towards small vectors: cost added per luma pixel of |dx| + |dy|.
LENGTH_COST = 0.05 / 255.0


def packed_luma(x: Tensor) -> Tensor:
    """The full-resolution luma plane (N, 1, H, W) of a packed YUV420 tensor (N, 6, H/2, W/2)."""
    return F.pixel_shuffle(x[:, :4], 2)


@torch.no_grad()
def block_match(ref: Tensor, x: Tensor, block: int, radius: int) -> tuple[Tensor, Tensor]:
    """Integer full-search block matching of packed frames `x` against `ref`.

    Returns (flow (N, 2, H/B, W/B) in luma pixels, channel 0 = dx, 1 = dy, in the warp's
    convention warped(p) = ref(p + flow); confident (N, 1, H/B, W/B) bool: blocks whose best
    vector beats zero motion by MIN_GAIN)."""
    r, c = packed_luma(ref), packed_luma(x)
    h, w = c.shape[-2:]
    padded = F.pad(r, (radius, radius, radius, radius), mode="replicate")
    side = 2 * radius + 1
    cost = torch.empty(c.shape[0], side * side, h // block, w // block, dtype=c.dtype, device=c.device)
    diff = torch.empty_like(c)  # reused: the search is memory-bound at large frames
    vectors = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            k = len(vectors)
            torch.sub(c, padded[..., radius + dy: radius + dy + h, radius + dx: radius + dx + w], out=diff)
            torch.add(F.avg_pool2d(diff.abs_(), block), LENGTH_COST * (abs(dx) + abs(dy)), out=cost[:, k:k + 1])
            vectors.append((dx, dy))
    best_cost, best = cost.min(dim=1)
    table = torch.tensor(vectors, dtype=ref.dtype, device=ref.device)  # (K, 2)
    flow = table[best].permute(0, 3, 1, 2).contiguous()
    zero = cost[:, len(vectors) // 2]  # (0, 0) is the middle of the search order
    confident = (zero - best_cost >= MIN_GAIN).unsqueeze(1)
    return flow, confident
