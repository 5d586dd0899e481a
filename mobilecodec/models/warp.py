"""Motion-compensation warps for the P-frame: block, block-overlap (OBMC-like), dense, none.

Flow convention: a tensor ``(N, 2, H/B, W/B)`` (channel 0 = dx, channel 1 = dy) in LUMA pixels,
one vector per BxB luma block, used for backward warping: ``warped(p) = ref(p + flow(block(p)))``.
Sample positions are clamped to the frame (border replication), matching ``grid_sample`` with
``padding_mode="border", align_corners=True``. The block warps use integer floor + bilinear
weights + ``torch.gather`` (no GridSample), as a phone's warping core or the host would; ``dense``
(per-pixel flow through ``grid_sample``) is the reference. torch is imported lazily.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "WARP_MODES",
    "WarpConfig",
    "WarpError",
    "block_warp",
    "dense_warp",
    "flow_to_rgb",
    "overlap_weights",
    "upsample_block_flow",
    "warp_features",
    "warp_frame",
]

WARP_MODES = ("block_overlap", "block", "dense", "none")


class WarpError(InputError, ValueError):
    """A warp configuration or tensor shape the warps cannot use (also a ValueError)."""


@dataclass(frozen=True)
class WarpConfig:
    """How the P-frame warps its reference: mode, block size and overlap in LUMA pixels.

    ``overlap`` is the half-width of the blending band around each block boundary; it must be
    even so that the half-resolution grids (chroma, packed features) get an integer overlap.
    """

    mode: str = "block_overlap"
    block_size: int = 8
    overlap: int = 4

    def __post_init__(self) -> None:
        if self.mode not in WARP_MODES:
            raise WarpError(f"warp mode must be one of {', '.join(WARP_MODES)}, got {self.mode!r}")
        b, o = self.block_size, self.overlap
        if isinstance(b, bool) or not isinstance(b, int) or b < 2 or b % 2:
            raise WarpError(f"warp block_size must be an even integer >= 2 (luma pixels), got {b!r}")
        if isinstance(o, bool) or not isinstance(o, int) or o < 0 or 2 * o > b:
            raise WarpError(f"warp overlap must be an integer in [0, block_size/2 = {b // 2}], got {o!r}")
        if o % 2:
            raise WarpError(f"warp overlap must be even (chroma and features use overlap/2), got {o}")

    @property
    def effective_overlap(self) -> int:
        """Overlap actually used on the luma grid (0 unless mode is block_overlap)."""
        return self.overlap if self.mode == "block_overlap" else 0


def _check_block_overlap(block: int, overlap: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise WarpError(f"block must be a positive integer, got {block!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0 or 2 * overlap > block:
        raise WarpError(f"overlap must be an integer in [0, block/2 = {block // 2}], got {overlap!r}")


def overlap_weights(block: int, overlap: int) -> np.ndarray:
    """1-D blending window of one block over its extended footprint (length ``block + 2*overlap``).

    Index ``k`` is the pixel at offset ``k - overlap`` from the block's first pixel. The window is 1
    inside the block and ramps linearly (at pixel centres) across the ``2*overlap`` band centred on
    each block boundary, so windows of adjacent blocks (shifted by ``block``) sum to exactly one.
    The 2-D window is the outer product of this window with itself.
    """
    _check_block_overlap(block, overlap)
    t = np.arange(-overlap, block + overlap, dtype=np.float64)
    if overlap == 0:
        return np.ones(block, dtype=np.float64)
    rise = (t + 0.5 + overlap) / (2 * overlap)
    fall = (block + overlap - 0.5 - t) / (2 * overlap)
    return np.clip(np.minimum(rise, fall), 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def _axis_tables(length: int, block: int, overlap: int) -> tuple[np.ndarray, ...]:
    """Per-pixel tables along one axis: own block index (in the flow padded by one block),
    neighbour block index, own weight, neighbour weight (taken from :func:`overlap_weights`)."""
    win = overlap_weights(block, overlap)
    t = np.arange(block)
    off = np.zeros(block, dtype=np.int64)
    w_nb = np.zeros(block, dtype=np.float64)
    w_own = win[t + overlap]
    if overlap > 0:
        left = t < overlap                # band shared with the previous block
        right = t >= block - overlap      # band shared with the next block
        off[left], off[right] = -1, 1
        w_nb[left] = win[t[left] + block + overlap]    # previous block's window at this pixel
        w_nb[right] = win[t[right] - block + overlap]  # next block's window at this pixel
    pos = np.arange(length)
    own = pos // block + 1
    return own, own + off[pos % block], w_own[pos % block], w_nb[pos % block]


#: image size (H*W) from which block_warp runs the compiled kernel at inference. Below it the
#: torch reference is as fast as the kernel is worth (QCIF luma, 1 thread: 1.7 against 0.7 ms a
#: warp), and the demo's small clip never pays numba's one-time compilation (about 5 s).
COMPILED_MIN_PIXELS = 256 * 256


def _check_x_flow(x: torch.Tensor, flow: torch.Tensor, block: int) -> None:
    if x.dim() != 4:
        raise WarpError(f"warp input must be (N,C,H,W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if h % block or w % block:
        raise WarpError(f"warp input size {h}x{w} (HxW) is not a multiple of the block size {block}")
    want = (n, 2, h // block, w // block)
    if flow.dim() != 4 or tuple(flow.shape) != want:
        raise WarpError(f"block flow must have shape {want} for input {tuple(x.shape)} and block {block}, "
                        f"got {tuple(flow.shape)}")


def _bilinear_gather(flat: torch.Tensor, h: int, w: int, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Bilinear sample at pixel (i + dy, j + dx), positions clamped to the frame (border mode).

    ``flat`` is the image (N,C,H,W) padded by one replicated pixel at the right and bottom and
    flattened to (N,C,(H+1)*(W+1)), so the four taps need no further clamping; ``dx``/``dy`` are
    (N,1,H*W) displacements and the result is (N,C,H*W). Differentiable w.r.t. the image (gather)
    and the displacements (fractional weights), like ``grid_sample`` with border padding.
    """
    import torch

    n, c, _ = flat.shape
    xs = torch.arange(w, device=dx.device, dtype=dx.dtype)
    ys = torch.arange(h, device=dx.device, dtype=dx.dtype).view(h, 1)
    px = torch.clamp(dx.view(n, 1, h, w) + xs, 0, w - 1).view(n, 1, h * w)
    py = torch.clamp(dy.view(n, 1, h, w) + ys, 0, h - 1).view(n, 1, h * w)
    x0, y0 = torch.floor(px.detach()), torch.floor(py.detach())
    fx, fy = px - x0, py - y0
    stride = w + 1
    if (h + 1) * stride < 2 ** 24:  # exact in float32: one conversion instead of two
        idx = torch.addcmul(x0, y0, torch.tensor(float(stride), dtype=y0.dtype, device=y0.device)).long()
    else:
        idx = y0.long() * stride + x0.long()
    idx = idx.expand(n, c, h * w)
    # The four taps are the same indices into views of the padded image shifted by 0, 1, W+1, W+2.
    top = torch.lerp(torch.gather(flat, 2, idx), torch.gather(flat[:, :, 1:], 2, idx), fx)
    bottom = torch.lerp(torch.gather(flat[:, :, stride:], 2, idx),
                        torch.gather(flat[:, :, stride + 1:], 2, idx), fx)
    return torch.lerp(top, bottom, fy)


def block_warp(x: torch.Tensor, flow: torch.Tensor, block: int, overlap: int = 0) -> torch.Tensor:
    """Backward-warp ``x`` (N,C,H,W) with one vector per ``block`` x ``block`` pixels.

    ``flow`` is (N,2,H/block,W/block) in pixels of x's grid. ``overlap == 0``: each pixel uses its
    own block's vector. ``overlap > 0``: block-overlap warp, each block is fetched with ``overlap``
    extra pixels on every side and blended with its neighbours using the separable window of
    :func:`overlap_weights` (so a pixel mixes at most 4 vectors); at frame borders the missing
    neighbour is the block itself (flow padded by replication), so weights still sum to one.
    Without autograd, float32/float64 CPU images of at least ``COMPILED_MIN_PIXELS`` take the
    compiled kernel of :mod:`mobilecodec.models.warp_kernel` (bit-identical, rows split over
    torch's thread count).
    """
    import torch

    _check_block_overlap(block, overlap)
    _check_x_flow(x, flow, block)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or flow.requires_grad)
    if (not needs_grad and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and x.shape[-2] * x.shape[-1] >= COMPILED_MIN_PIXELS):
        from mobilecodec.models import warp_kernel  # imports numba: inference only

        return warp_kernel.block_warp_compiled(x, flow, block, overlap, _axis_tables, torch.get_num_threads())
    return _block_warp_reference(x, flow, block, overlap)


def _block_warp_reference(x: torch.Tensor, flow: torch.Tensor, block: int, overlap: int) -> torch.Tensor:
    """The per-pixel definition of :func:`block_warp` (differentiable; the training path and the
    reference the compiled inference path in :mod:`warp_kernel` reproduces bit for bit)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    flat = F.pad(x, (0, 1, 0, 1), mode="replicate").reshape(n, c, (h + 1) * (w + 1))
    padded = F.pad(flow.to(x.dtype), (1, 1, 1, 1), mode="replicate").reshape(n, 2, -1)
    pw = w // block + 2
    axis = [[torch.from_numpy(a).to(x.device) for a in _axis_tables(length, block, overlap)] for length in (h, w)]
    (own_y, nb_y, wo_y, wn_y), (own_x, nb_x, wo_x, wn_x) = axis
    rows = [(own_y, wo_y)] + ([(nb_y, wn_y)] if overlap else [])
    cols = [(own_x, wo_x)] + ([(nb_x, wn_x)] if overlap else [])
    out = None
    for ry, wy in rows:  # at most 2 x 2 = 4 vectors per pixel: own, horizontal, vertical, diagonal
        for cx, wx in cols:
            bidx = (ry.view(h, 1) * pw + cx).view(1, 1, h * w).expand(n, 2, h * w)
            f = torch.gather(padded, 2, bidx)  # (N,2,H*W): this combination's vector at every pixel
            sample = _bilinear_gather(flat, h, w, f[:, :1], f[:, 1:])
            if not overlap:
                return sample.view(n, c, h, w)
            weight = (wy.view(h, 1) * wx).to(x.dtype).view(1, 1, h * w)  # separable window
            out = sample * weight if out is None else torch.addcmul(out, sample, weight)
    return out.view(n, c, h, w)


def upsample_block_flow(flow: torch.Tensor, block: int) -> torch.Tensor:
    """Repeat a block flow (N,2,h,w) to one vector per pixel (N,2,h*block,w*block) (nearest)."""
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise WarpError(f"block flow must be (N,2,h,w), got {tuple(flow.shape)}")
    _check_block_overlap(block, 0)
    return flow.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)


def dense_warp(x: torch.Tensor, flow_px: torch.Tensor) -> torch.Tensor:
    """Reference backward warp with a per-pixel flow (N,2,H,W) through ``grid_sample``.

    Bilinear, ``padding_mode="border"`` and ``align_corners=True`` so that pixel centres sit on
    integer coordinates and out-of-frame positions clamp to the border, like :func:`block_warp`.
    """
    import torch
    import torch.nn.functional as F

    if x.dim() != 4:
        raise WarpError(f"warp input must be (N,C,H,W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if flow_px.dim() != 4 or tuple(flow_px.shape) != (n, 2, h, w):
        raise WarpError(f"dense flow must have shape {(n, 2, h, w)}, got {tuple(flow_px.shape)}")
    flow_px = flow_px.to(x.dtype)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    gx = (xs + flow_px[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow_px[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _warp(x: torch.Tensor, flow: torch.Tensor, block: int, overlap: int, mode: str) -> torch.Tensor:
    if mode == "dense":
        _check_x_flow(x, flow, block)
        return dense_warp(x, upsample_block_flow(flow, block))
    return block_warp(x, flow, block, overlap if mode == "block_overlap" else 0)


def warp_frame(ref: torch.Tensor, flow_luma: torch.Tensor, cfg: WarpConfig) -> torch.Tensor:
    """Warp a packed YUV420 tensor (N,6,H/2,W/2) with a luma block flow (N,2,H/B,W/B).

    Y is warped at full resolution (block B, overlap o, flow as is), U and V at half resolution
    (block B/2, overlap o/2, flow/2), all with ``cfg.mode``; ``none`` returns ``ref`` unchanged.
    """
    from mobilecodec.models.yuv import pack_yuv, unpack_yuv

    if cfg.mode == "none":
        return ref
    y, uv = unpack_yuv(ref)
    b, o = cfg.block_size, cfg.overlap
    return pack_yuv(_warp(y, flow_luma, b, o, cfg.mode), _warp(uv, flow_luma * 0.5, b // 2, o // 2, cfg.mode))


def warp_features(feat: torch.Tensor, flow_luma: torch.Tensor, cfg: WarpConfig) -> torch.Tensor:
    """Warp features (N,C,H/2,W/2) at the packed resolution: block B/2, overlap o/2, flow/2."""
    if cfg.mode == "none":
        return feat
    return _warp(feat, flow_luma * 0.5, cfg.block_size // 2, cfg.overlap // 2, cfg.mode)


def flow_to_rgb(flow: Any, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel visualisation of a flow (2,H,W) or (1,2,H,W) as uint8 RGB (H,W,3).

    Hue is the direction (0 deg = +x is red, +y (down) is 90 deg), saturation the magnitude
    divided by ``max_magnitude`` (default: the largest magnitude), value is 1 (zero flow is white).
    """
    if hasattr(flow, "detach"):
        flow = flow.detach().cpu().numpy()
    f = np.asarray(flow, dtype=np.float64)
    if f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3 or f.shape[0] != 2:
        raise WarpError(f"flow_to_rgb needs a flow of shape (2,H,W) or (1,2,H,W), got {f.shape}")
    dx, dy = f[0], f[1]
    mag = np.hypot(dx, dy)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    sat = np.clip(mag / max_magnitude, 0.0, 1.0) if max_magnitude > 0 else np.zeros_like(mag)
    hue = (np.arctan2(dy, dx) / (2 * math.pi)) % 1.0 * 6.0
    # HSV -> RGB with V = 1: each channel is 1 - S * clamp(2 - |(hue - k) mod 6 - 3| ... ) form.
    rgb = np.empty(f.shape[1:] + (3,), dtype=np.float64)
    for ch, k in enumerate((5.0, 3.0, 1.0)):  # standard hsv2rgb: c = v - v*s*max(0, min(m, 4-m, 1))
        m = (k + hue) % 6.0
        rgb[..., ch] = 1.0 - sat * np.clip(np.minimum(m, 4.0 - m), 0.0, 1.0)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
