"""Fast inference path of the block warps: bilinear sampling per cell of constant motion.

Bit-identical to the per-pixel reference `warp._block_warp_reference` (no autograd). With overlap
o = B/2 (or o = 0) every c x c cell (c = o, or B without overlap) uses ONE vector in each of the
(up to) four combinations own/neighbour x own/neighbour, so per cell and combination:
  * the reference's per-pixel positions px = clamp(dx + j), py = clamp(dy + i) (the very same
    float additions) are computed on c columns and c rows only, not on c x c pixels;
  * a cell is *regular* when floor(px) steps by exactly 1 along its columns with a constant
    fraction fx = px - floor(px), and likewise for rows. Then the reference's per-pixel
    lerp(lerp(a, b, fx), lerp(c, d, fx), fy) takes its taps from ONE (c+1) x (c+1) crop: the
    horizontal lerps of crop rows 0..c serve as both `top` (row r) and `bottom` (row r-1), so
    each cell costs one small gather and about 2.25 lerps per pixel instead of 4 gathers, 3 lerps
    and an int64 index per pixel. Inputs to every lerp are the same floats, so results are equal.
  * irregular cells (clamped at the frame border, or a float addition that rounded, e.g. a flow
    with more fraction bits than dx + j can hold) are recomputed per pixel exactly like the
    reference.
The blend then applies the reference's weights in the reference's order (s*w, then addcmul).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def supported(block: int, overlap: int) -> bool:
    """True for the layouts this path covers: overlap 0 or exactly half a block."""
    return overlap == 0 or 2 * overlap == block


@functools.lru_cache(maxsize=16)
def _cell_sources(length: int, block: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell along one axis: own and neighbour block index in the flow padded by one block."""
    c = overlap or block
    start = np.arange(length // c) * c
    own = start // block + 1
    nb = own + np.where(start % block < overlap, -1, 1) if overlap else own
    return own, nb


def _bilinear_cells(flat: "torch.Tensor", h: int, w: int, c: int, dx: "torch.Tensor",
                    dy: "torch.Tensor") -> "torch.Tensor":
    """Reference bilinear samples of every cell, cell-major: `flat` (N,C,(H+1)*(W+1)) is the
    replicate-padded image, dx / dy (N, Hc, Wc) one vector per c x c cell; returns
    (c, c, N, C, Hc, Wc): [row in cell, column in cell, ...]."""
    import torch

    n, ch, _ = flat.shape
    hc, wc = dx.shape[1:]
    dt = flat.dtype
    stride = w + 1
    # positions of the c columns / rows of each cell: px[t] = clamp(dx + (cx*c + t)), as the
    # reference computes them (same float additions), laid out (c, N, Hc, Wc)
    xs = torch.arange(w, dtype=dt).view(1, wc, c).permute(2, 0, 1).unsqueeze(1)  # (c,1,1,Wc)
    ys = torch.arange(h, dtype=dt).view(hc, c).t().reshape(c, 1, hc, 1)  # (c,1,Hc,1)
    px = torch.clamp(dx + xs, 0, w - 1)
    py = torch.clamp(dy + ys, 0, h - 1)
    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = px - x0, py - y0
    # regular: one fraction for the whole cell and floor stepping by one (see module docstring)
    regular = (x0[c - 1] - x0[0] == c - 1) & (y0[c - 1] - y0[0] == c - 1)
    for t in range(1, c):
        regular &= (fx[t] == fx[0]) & (fy[t] == fy[0])
    # crop origin; clamped so that irregular cells (recomputed below) stay inside the image too
    ys0 = torch.clamp(y0[0], max=h - c).to(torch.int32)
    xs0 = torch.clamp(x0[0], max=w - c).to(torch.int32)
    base = (ys0 * stride + xs0).numpy()  # (N, Hc, Wc)
    r = np.arange(c + 1, dtype=np.int32)
    offs = (r.reshape(-1, 1) * stride + r).reshape(c + 1, c + 1, 1, 1)
    crop = torch.empty((c + 1, c + 1, n, ch, hc, wc), dtype=dt)
    crop_np, flat_np = crop.numpy(), flat.numpy()  # numpy's take: a plain exact copy, faster
    idx = np.empty((c + 1, c + 1, hc, wc), dtype=np.int32)
    for i in range(n):
        np.add(offs, base[i], out=idx)
        for k in range(ch):
            np.take(flat_np[i, k], idx, out=crop_np[:, :, i, k])
    fxc = fx[0].view(n, 1, hc, wc)
    fyc = fy[0].view(n, 1, hc, wc)
    rows = torch.lerp(crop[:, :c], crop[:, 1:], fxc)  # (c+1, c, ..): top of row r = row r
    out = torch.lerp(rows[:c], rows[1:], fyc)  # (c, c, N, C, Hc, Wc)
    bad = (~regular).nonzero(as_tuple=True)
    if bad[0].numel():  # per pixel, exactly as the reference
        bx0, bfx = x0[(slice(None),) + bad].t().unsqueeze(1), fx[(slice(None),) + bad].t().unsqueeze(1)
        by0, bfy = y0[(slice(None),) + bad].t().unsqueeze(2), fy[(slice(None),) + bad].t().unsqueeze(2)
        pidx = (by0.long() * stride + bx0.long())  # (k, c rows, c cols)
        src = flat.permute(0, 2, 1)  # (N, L, C)
        b = bad[0].view(-1, 1, 1)

        def tap(o: int) -> "torch.Tensor":
            return src[b, pidx + o].permute(0, 3, 1, 2)  # (k, C, c, c)

        shape = (bad[0].numel(), ch, c, c)
        top = torch.lerp(tap(0), tap(1), bfx.unsqueeze(1).expand(shape))
        bottom = torch.lerp(tap(stride), tap(stride + 1), bfx.unsqueeze(1).expand(shape))
        vals = torch.lerp(top, bottom, bfy.unsqueeze(1).expand(shape))  # (k, C, c, c)
        out.permute(2, 4, 5, 3, 0, 1)[bad] = vals
    return out


@functools.lru_cache(maxsize=8)
def _cell_weights(h: int, w: int, block: int, overlap: int, axis_tables, dtype) -> tuple:
    """The reference's blending weights (wy x wx in float64, then cast), per combination, in the
    cell-major layout (c, c, 1, 1, Hc, Wc)."""
    import torch

    c = overlap
    ty, tx = axis_tables(h, block, overlap), axis_tables(w, block, overlap)
    out = []
    for wy_k in (2, 3):
        for wx_k in (2, 3):
            wy, wx = torch.from_numpy(ty[wy_k]), torch.from_numpy(tx[wx_k])
            weight = (wy.view(h, 1) * wx).to(dtype)
            out.append(weight.view(h // c, c, w // c, c).permute(1, 3, 0, 2).reshape(
                c, c, 1, 1, h // c, w // c).contiguous())
    return tuple(out)


def block_warp_cells(x: "torch.Tensor", flow: "torch.Tensor", block: int, overlap: int,
                     axis_tables) -> "torch.Tensor":
    """`block_warp` for `supported` layouts, no autograd; `axis_tables(length, block, overlap)`
    gives the reference's per-pixel blending weights (own, neighbour)."""
    import torch
    import torch.nn.functional as F

    n, ch, h, w = x.shape
    c = overlap or block
    hc, wc = h // c, w // c
    with torch.no_grad():
        flat = F.pad(x, (0, 1, 0, 1), mode="replicate").reshape(n, ch, (h + 1) * (w + 1))
        padded = F.pad(flow.to(x.dtype), (1, 1, 1, 1), mode="replicate")
        own_y, nb_y = (torch.from_numpy(a) for a in _cell_sources(h, block, overlap))
        own_x, nb_x = (torch.from_numpy(a) for a in _cell_sources(w, block, overlap))
        weights = _cell_weights(h, w, block, overlap, axis_tables, x.dtype) if overlap else ()
        out = None
        combo = 0
        for ry in [own_y] + ([nb_y] if overlap else []):
            sub = padded.index_select(2, ry)
            for cx in [own_x] + ([nb_x] if overlap else []):
                vec = sub.index_select(3, cx)  # (N, 2, Hc, Wc)
                s = _bilinear_cells(flat, h, w, c, vec[:, 0], vec[:, 1])
                if overlap:  # the reference's blend: s * w, then addcmul, same order
                    wk = weights[combo]
                    out = s * wk if out is None else torch.addcmul(out, s, wk)
                    combo += 1
                else:
                    out = s
        return out.permute(2, 3, 4, 0, 5, 1).reshape(n, ch, h, w)
