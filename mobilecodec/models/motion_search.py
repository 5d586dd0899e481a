"""Sender-side block-matching motion search: the motion hint of the motion analysis, and the
motion teacher of training.

A small motion autoencoder that must find motion by itself from (x_t, reference) did not learn
to on a CPU budget: tiny-cpu's first P-frame phase (20,000 steps) sent 0 motion bits on moving
stills and on bikes, and its flow recursion grew without bound after ~20 frames. Even trained on
the motion loss alone it did not generalise in 1,000 steps. Given the block-matching vectors
minus the predicted flow (CodecConfig.motion_hint = "block_match"), it learns to code the
correction within a few hundred steps. This is what every classical encoder does: integer
block matching on the sender (coarse to fine for large ranges); the receiver never runs it, so
streams and decoders are unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: A block takes the teacher's vector only when it lowers the block's mean absolute luma
#: difference by more than this many 8-bit levels against zero motion: flat or noisy blocks,
#: where the best match is arbitrary, give no teacher signal. (Strictly more: the float search
#: the checkpoints were trained with rejected a gain of exactly one level, its rounding falling
#: short of the threshold, on every such block measured.)
MIN_GAIN_LEVELS = 1
#: Largest radius searched exhaustively at full resolution; beyond it the search runs coarse to fine.
FULL_SEARCH_RADIUS = 8
#: Coarse-to-fine search: the first pass runs on luma summed over COARSE x COARSE pixels.
COARSE = 4
#: ... and the second pass tries every vector within this many pixels of the coarse one.
REFINE_RADIUS = 3


def packed_luma(x: Tensor) -> Tensor:
    """The full-resolution luma plane (N, 1, H, W) of a packed YUV420 tensor (N, 6, H/2, W/2)."""
    return F.pixel_shuffle(x[:, :4], 2)


def luma_level_tensor(x: Tensor) -> Tensor:
    """The luma of packed frames as 8-bit levels (N, H, W), float on x's device: round(255 x),
    clamped. Frames read from files and decoded buffers lie on this grid already; training crops
    with sub-pixel motion are rounded to it, as a classical encoder's 8-bit search would see them."""
    return torch.clamp(torch.round(packed_luma(x)[:, 0].detach().float() * 255.0), 0, 255)


def luma_levels(x: Tensor) -> np.ndarray:
    """`luma_level_tensor` as an int32 array on the host (the CPU kernel's input)."""
    return luma_level_tensor(x).to(torch.int32).cpu().numpy()


@torch.no_grad()
def block_match(ref: Tensor, x: Tensor, block: int, radius: int) -> tuple[Tensor, Tensor]:
    """Integer block matching of packed frames `x` against `ref`, vectors up to `radius` luma
    pixels each way.

    Costs are exact integers on 8-bit luma (`mobilecodec.models.motion_kernel`): the mean absolute
    difference of a block plus 0.05 levels per pixel of vector length (a tie-break towards small
    vectors), compared scaled by 20 x the pixel count; ties go to the first vector in search order
    (dy, then dx, ascending), so the choice is the same on every CPU. Up to FULL_SEARCH_RADIUS the
    search is exhaustive. Beyond it, a full search at 1/COARSE resolution (cost: the mean absolute
    difference over a window twice the block) finds each block's coarse vector; a full-resolution
    search within REFINE_RADIUS of it and of zero motion, then two passes trying the neighbours'
    vectors, pick the vector. Measured with `scripts/motion_check.py CKPT --clip C --frames 6
    --search 6 32` (training clips; warped-frame PSNR-YUV of frames 1/2/5, float costs, session 8):
    bikes 31.4/30.0/31.3 dB at radius 6, 45.3/45.9/43.6 dB at radius 32 (an exhaustive radius-32
    search: 45.5/46.5/43.9); bigbuckbunny 43.8/35.8/34.1 and 51.4/46.1/44.0 dB.

    Returns (flow (N, 2, H/B, W/B) in luma pixels, channel 0 = dx, 1 = dy, in the warp's
    convention warped(p) = ref(p + flow); confident (N, 1, H/B, W/B) bool: blocks whose best
    vector beats zero motion by more than MIN_GAIN_LEVELS), on x's device and in x's dtype."""
    return _search(ref, x, block, radius, exhaustive=False)


@torch.no_grad()
def exhaustive_search(ref: Tensor, x: Tensor, block: int, radius: int) -> Tensor:
    """Every integer vector within `radius` at full resolution, whatever the radius (the yardstick
    of the coarse-to-fine search; slow beyond FULL_SEARCH_RADIUS). Returns the flow of `block_match`."""
    return _search(ref, x, block, radius, exhaustive=True)[0]


def _search(ref: Tensor, x: Tensor, block: int, radius: int, exhaustive: bool) -> tuple[Tensor, Tensor]:
    """(flow, confident) of `block_match`, image by image; `exhaustive` forces the full search."""
    h, w = x.shape[-2] * 2, x.shape[-1] * 2
    if x.is_cuda and radius <= FULL_SEARCH_RADIUS and h % block == 0 and w % block == 0:
        return full_search_torch(ref, x, block, radius)
    from mobilecodec.models import motion_kernel  # imports numba

    threads = torch.get_num_threads()
    flows, confident = [], []
    for ri, ci in zip(luma_levels(ref), luma_levels(x)):
        if exhaustive or radius <= FULL_SEARCH_RADIUS:
            best, vx, vy, zero = motion_kernel.full_search(ri, ci, block, radius, threads)
        else:
            best, vx, vy, zero = motion_kernel.coarse_to_fine(ri, ci, block, radius, COARSE, REFINE_RADIUS, threads)
        flows.append(np.stack([vx, vy]))
        confident.append((zero - best > MIN_GAIN_LEVELS * motion_kernel.LENGTH_DIVISOR * block * block)[None])
    flow = torch.from_numpy(np.stack(flows)).to(device=x.device, dtype=x.dtype)
    return flow, torch.from_numpy(np.stack(confident)).to(x.device)


@torch.no_grad()
def full_search_torch(ref: Tensor, x: Tensor, block: int, radius: int) -> tuple[Tensor, Tensor]:
    """The exhaustive search of `block_match` in torch, on the frames' device: what a GPU trainer
    uses instead of copying every P-frame to the CPU's kernel (31 searches per GOP of 32 frames).
    The same exact integer costs (float32 holds them exactly: at most 20 x 64 x 255 + 64 x 2 x 8)
    and the same tie rule (argmin returns the first minimum, in the kernel's search order), so the
    vectors equal the kernel's. Frames whose sides are multiples of `block` only."""
    from mobilecodec.models.motion_kernel import LENGTH_DIVISOR

    c, r = luma_level_tensor(x), luma_level_tensor(ref)
    n, h, w = c.shape
    if h % block or w % block:
        raise ValueError(f"frame {w}x{h} is not a multiple of the block size {block}")
    padded = F.pad(r[:, None], (radius,) * 4, mode="replicate")[:, 0]
    steps = torch.arange(-radius, radius + 1, device=c.device)
    costs = []
    for dy in range(-radius, radius + 1):  # search order: dy outer, dx inner, ascending
        rows = padded[:, dy + radius:dy + radius + h]
        shifted = torch.stack([rows[:, :, dx + radius:dx + radius + w] for dx in range(-radius, radius + 1)], 1)
        sad = (c[:, None] - shifted).abs().view(n, -1, h // block, block, w // block, block).sum((3, 5))
        length = (steps.abs() + abs(dy)).to(sad.dtype).view(1, -1, 1, 1)
        costs.append(LENGTH_DIVISOR * sad + block * block * length)
    cost = torch.cat(costs, 1)  # (N, K, H/B, W/B)
    best = cost.amin(1)
    k = torch.argmin(cost, 1)  # ties: the first index, i.e. the first vector in search order
    vx = (k % (2 * radius + 1) - radius).to(x.dtype)
    vy = (k // (2 * radius + 1) - radius).to(x.dtype)
    zero = cost[:, (2 * radius + 1) * radius + radius]
    confident = (zero - best > MIN_GAIN_LEVELS * LENGTH_DIVISOR * block * block)[:, None]
    return torch.stack([vx, vy], 1), confident
