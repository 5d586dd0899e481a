"""Compiled inference path of the block warps (numba): one pass per pixel, no temporaries.

Bit-identical to the per-pixel reference `warp._block_warp_reference` (no autograd), because it
performs the same float operations in the same order:
  * positions px = clamp(dx + j, 0, W-1), py = clamp(dy + i, 0, H-1) as single float additions
    in the input's dtype, floor, fraction px - floor(px), border taps replicated;
  * torch's x86-64 CPU kernels (AVX2 and AVX-512) compute `torch.lerp` as
    fma(w or w-1, end-start, start or end) (ATen's vectorised lerp, w < 0.5 or not) and
    `torch.addcmul` with a fused multiply-add (measured: 100 % of 10^6 random triples match the
    fused result, 76 % the unfused one), so the kernel calls LLVM's fma intrinsic: one rounding,
    on any x86-64 (FMA3, or a correctly rounded fmaf where a CPU lacks it);
  * the blend is the reference's: s * w for the first of the four vector combinations, then
    fma(s, w, out), with w = the float64 window product cast to the input's dtype.
Within a run of rows (columns) that share their own and neighbour block, a vector combination's
x position depends on the column only and its y position on the row only, so positions are
computed per run, once for all channels, and the frame is read in place, where the torch path
materialises indices, gathers and lerps per combination over the whole frame.
Rows are split over `threads` threads (the kernel releases the GIL). Compiled on first call and
cached on disk by numba (`NUMBA_CACHE_DIR` moves the cache); this module imports numba, so
`warp.py` imports it only on the inference path.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from mobilecodec.parallel import run_split

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: output samples per thread below which the hand-off to a worker costs more than it saves
_MIN_SAMPLES_PER_THREAD = 64 * 1024


@intrinsic
def _fma(typingctx, a, b, c):  # noqa: ARG001 - numba's intrinsic signature
    """a * b + c with one rounding (LLVM's llvm.fma), for three floats of the same type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.fma(*args)

    return a(a, a, a), codegen


@njit(nogil=True, cache=True, inline="always")
def _lerp(a, b, w, one):
    """ATen's vectorised torch.lerp: fma(w, b-a, a) for |w| < 0.5, else fma(w-1, b-a, b)
    (selects rather than branches: w is a random fraction)."""
    small = abs(w) < 0.5
    coeff = w if small else w - one
    base = a if small else b
    return _fma(coeff, b - a, base)


@njit(nogil=True, cache=True)
def _axis_positions(d, coords, lo, hi, top, pos, pos1, frac):
    """Reference positions of coordinates lo..hi-1 displaced by d: clamp(d + c, 0, top), floor
    (truncation: the position is >= 0), fraction, and the next tap clamped to the frame."""
    last = int(top)
    for t in range(hi - lo):
        p = min(max(d + coords[lo + t], coords[0]), top)
        ip = int(p)
        pos[t] = ip
        pos1[t] = min(ip + 1, last)
        frac[t] = p - coords[ip]


@njit(nogil=True, cache=True)
def _warp_rows(x, flow, xs, ys, ry_tab, wy_tab, cx_tab, wx_tab, ncomb, yseg, xseg, seg0, seg1, out):
    """out for the row segments seg0..seg1-1. Segments (yseg / xseg: start offsets, then the end)
    are runs of rows / columns whose own and neighbour block are the same, so within a segment
    and a vector combination the reference's x position depends on the column only and its y
    position on the row only."""
    n_img, n_ch, h, w = x.shape
    one = xs[1] - xs[0]
    seg_max = max(np.max(np.diff(yseg)), np.max(np.diff(xseg)))
    # positions are clamped to >= 0: unsigned indices spare numba's negative-index wraparound on
    # every read (about a tenth of the kernel's time at 1080p)
    ix = np.empty(seg_max, dtype=np.uint64)
    ix1 = np.empty(seg_max, dtype=np.uint64)
    fx = np.empty(seg_max, dtype=x.dtype)
    iy = np.empty(seg_max, dtype=np.uint64)
    iy1 = np.empty(seg_max, dtype=np.uint64)
    fy = np.empty(seg_max, dtype=x.dtype)
    wgt = np.empty(1, dtype=x.dtype)  # float64 window product -> x's dtype, rounded to nearest
    for n in range(n_img):
        for sy in range(seg0, seg1):
            i0, i1 = yseg[sy], yseg[sy + 1]
            for sx in range(len(xseg) - 1):
                j0, j1 = xseg[sx], xseg[sx + 1]
                for a in range(ncomb):
                    by = ry_tab[a, i0]
                    for b in range(ncomb):
                        bx = cx_tab[b, j0]
                        _axis_positions(flow[n, 0, by, bx], xs, j0, j1, xs[w - 1], ix, ix1, fx)
                        _axis_positions(flow[n, 1, by, bx], ys, i0, i1, ys[h - 1], iy, iy1, fy)
                        for k in range(n_ch):
                            src = x[n, k]
                            dst = out[n, k]
                            for r in range(i1 - i0):
                                row0 = src[iy[r]]
                                row1 = src[iy1[r]]
                                wy = wy_tab[a, i0 + r]
                                for t in range(j1 - j0):
                                    top = _lerp(row0[ix[t]], row0[ix1[t]], fx[t], one)
                                    bottom = _lerp(row1[ix[t]], row1[ix1[t]], fx[t], one)
                                    s = _lerp(top, bottom, fy[r], one)
                                    if ncomb == 1:
                                        dst[i0 + r, j0 + t] = s
                                    else:
                                        wgt[0] = wy * wx_tab[b, j0 + t]
                                        if a == 0 and b == 0:
                                            dst[i0 + r, j0 + t] = s * wgt[0]
                                        else:
                                            dst[i0 + r, j0 + t] = _fma(s, wgt[0], dst[i0 + r, j0 + t])


@functools.lru_cache(maxsize=32)
def _tables(length: int, block: int, overlap: int, axis_tables, dtype: str) -> tuple[np.ndarray, ...]:
    """Coordinates in `dtype`, own/neighbour padded-flow indices (2, L), float64 windows (2, L) and
    the segments: start of every run of equal (own, neighbour), then `length`."""
    own, nb, w_own, w_nb = axis_tables(length, block, overlap)
    coords = np.arange(max(length, 2), dtype=dtype)
    change = np.flatnonzero((np.diff(own) != 0) | (np.diff(nb) != 0)) + 1
    seg = np.concatenate([[0], change, [length]]).astype(np.int64)
    return (coords, np.ascontiguousarray(np.stack([own, nb])),
            np.ascontiguousarray(np.stack([w_own, w_nb])), seg)


def block_warp_compiled(x: "torch.Tensor", flow: "torch.Tensor", block: int, overlap: int,
                        axis_tables, threads: int = 1) -> "torch.Tensor":
    """`block_warp` without autograd for float32/float64 CPU tensors, rows split over `threads`;
    `axis_tables(length, block, overlap)` gives the reference's per-pixel tables."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    dt = str(x.dtype).removeprefix("torch.")
    xs_np = np.ascontiguousarray(x.detach().numpy())
    padded = np.ascontiguousarray(F.pad(flow.detach().to(x.dtype), (1, 1, 1, 1), mode="replicate").numpy())
    xs, cx, wx, xseg = _tables(w, block, overlap, axis_tables, dt)
    ys, ry, wy, yseg = _tables(h, block, overlap, axis_tables, dt)
    out = np.empty_like(xs_np)
    n_seg = len(yseg) - 1
    parts = max(1, min(int(threads), n_seg, n * c * h * w // _MIN_SAMPLES_PER_THREAD))
    run_split(lambda lo, hi: _warp_rows(xs_np, padded, xs, ys, ry, wy, cx, wx, 2 if overlap else 1,
                                        yseg, xseg, lo, hi, out), n_seg, parts)
    return torch.from_numpy(out)
