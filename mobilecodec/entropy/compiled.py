"""Compiled host loops of the entropy side (numba): the work around the networks and the range
coder, in one pass each instead of numpy's chains of temporaries. Same integers and floats as the
numpy forms, which stay the reference and run below the size thresholds of the callers (small
frames never pay numba's one-time compilation; it is cached on disk).

Integer hyper-synthesis (channels-last MatMulInteger path of `int_hyper`):
  * `patches`: uint8 im2col rows in one pass (numpy: a padded copy plus one strided block copy
    per kernel tap);
  * `requantize_hidden` / `requantize_output`: exactly `int_conv64.requantize(acc + bias)`,
    q = ((acc + b_c) * M_c + 2^(S_c-1)) >> S_c in int64 (the network validates |acc + b| * M +
    2^(S-1) < 2^63; >> on a signed int64 is an arithmetic shift, like numpy's), then the clamps.
    A hidden layer's int32 accumulators become uint8 codes written straight into their (possibly
    strided: polyphase-interleaved) place, the last layer's the NCHW means and scale indices. The
    numpy form spent about 70 of the 130 ms of a 1080p P-frame's hyper-synthesis (one thread) on
    int64 copies, clips, casts and the NHWC -> NCHW transposes.
Gaussian-conditional coding (`gaussian`):
  * `count_indices`: symbols per scale index;
  * `group`: the symbols in the coder's order (grouped by scale index), support-checked;
  * `ungroup`: the decoded groups (one coder call per scale index) back to their positions, by
    running read positions per index (numpy: a stable argsort, then a scatter);
  * `dequantize`: y_hat = float32(float64(symbol) + float64(mean_q) * 2^-F), the decoder's and
    encoder's expression, without the float64 mean array.
Row-parallel kernels split over threads (`mobilecodec.parallel`; they release the GIL).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mobilecodec.parallel import run_split


@njit(nogil=True, cache=True)
def _hidden_rows(acc, bias, mult, rnd, shift, amax, out, lo, hi):  # pragma: no cover - compiled
    """acc (N, H, W, C) int32 -> out (N, H, W, C) uint8 = clamp(requant(acc + bias), 0, amax),
    image rows [lo, hi) of every batch item."""
    n_b, _, w_n, c_n = acc.shape
    for b in range(n_b):
        for y in range(lo, hi):
            for x in range(w_n):
                for c in range(c_n):
                    q = ((np.int64(acc[b, y, x, c]) + bias[c]) * mult[c] + rnd[c]) >> shift[c]
                    out[b, y, x, c] = min(max(q, 0), amax)


@njit(nogil=True, cache=True)
def _output_rows(acc, bias, mult, rnd, shift, mean_limit, top, means, indices, lo, hi):  # pragma: no cover
    """acc (N, H, W, 2C) int32 -> means (N, C, H, W) = clamp(q[..., :C], +-mean_limit) and
    indices (N, C, H, W) = clamp(q[..., C:], 0, top), image rows [lo, hi)."""
    n_b, _, w_n, c2 = acc.shape
    c_n = c2 // 2
    for b in range(n_b):
        for y in range(lo, hi):
            for c in range(c2):
                for x in range(w_n):
                    q = ((np.int64(acc[b, y, x, c]) + bias[c]) * mult[c] + rnd[c]) >> shift[c]
                    if c < c_n:
                        means[b, c, y, x] = min(max(q, -mean_limit), mean_limit)
                    else:
                        indices[b, c - c_n, y, x] = min(max(q, 0), top)


@njit(nogil=True, cache=True)
def _patch_rows(x, kh, kw, sh, sw, dh, dw, pt, pl, zero, out, lo, hi):  # pragma: no cover
    """x (N, H, W, C) uint8 -> out (N, Ho, Wo, kh*kw, C): the input pixel under each kernel tap
    of each output position, `zero` outside the image; output rows [lo, hi)."""
    n_b, h, w, c_n = x.shape
    _, _, wo, _, _ = out.shape
    for b in range(n_b):
        for oy in range(lo, hi):
            for ox in range(wo):
                for u in range(kh):
                    iy = oy * sh + u * dh - pt
                    for v in range(kw):
                        ix = ox * sw + v * dw - pl
                        t = u * kw + v
                        if 0 <= iy < h and 0 <= ix < w:
                            for c in range(c_n):
                                out[b, oy, ox, t, c] = x[b, iy, ix, c]
                        else:
                            for c in range(c_n):
                                out[b, oy, ox, t, c] = zero


def patches(x: np.ndarray, kernel: tuple[int, int], pads: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], out_hw: tuple[int, int], zero: int, threads: int = 1) -> np.ndarray:
    """im2col of uint8 NHWC `x`: (N*Ho*Wo, kh*kw*C) rows in (kh, kw, C) order, `zero` (the input's
    zero point, a real zero) where a tap falls in the padding (`pads` = top, left)."""
    n, _, _, c = x.shape
    (kh, kw), (ho, wo) = kernel, out_hw
    out = np.empty((n, ho, wo, kh * kw, c), np.uint8)
    args = (np.ascontiguousarray(x), kh, kw, *stride, *dilation, *pads, np.uint8(zero), out)
    run_split(lambda lo, hi: _patch_rows(*args, lo, hi), ho, threads)
    return out.reshape(n * ho * wo, kh * kw * c)


def _params(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    s = shift.astype(np.int64)
    return (np.ascontiguousarray(bias, np.int64), np.ascontiguousarray(mult, np.int64),
            np.left_shift(np.int64(1), s - 1), np.ascontiguousarray(s))


def requantize_hidden(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                      amax: int, out: np.ndarray, threads: int = 1) -> None:
    """Write clamp(requantize(acc + bias), 0, amax) of int32 NHWC `acc` into uint8 `out`, a view of
    the same shape (it may be strided, e.g. one polyphase component of the layer's output)."""
    if acc.shape != out.shape or acc.ndim != 4 or out.dtype != np.uint8:
        raise ValueError(f"requantize_hidden: acc {acc.shape} and uint8 out {out.shape} must match")
    args = (acc, *_params(bias, mult, shift), int(amax), out)
    run_split(lambda lo, hi: _hidden_rows(*args, lo, hi), acc.shape[1], threads)


def requantize_output(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                      mean_limit: int, num_levels: int, means: np.ndarray, indices: np.ndarray,
                      threads: int = 1) -> None:
    """The last layer: int32 NHWC `acc` (N, H, W, 2C) -> int32 NCHW `means` (clamped to
    +-mean_limit) and scale `indices` (clamped to [0, num_levels)), views of shape (N, C, H, W)."""
    n, h, w, c2 = acc.shape
    if means.shape != (n, c2 // 2, h, w) or indices.shape != means.shape:
        raise ValueError(f"requantize_output: acc {acc.shape} does not match means {means.shape} "
                         f"and indices {indices.shape}")
    args = (acc, *_params(bias, mult, shift), int(mean_limit), int(num_levels) - 1, means, indices)
    run_split(lambda lo, hi: _output_rows(*args, lo, hi), h, threads)


@njit(nogil=True, cache=True)
def _count(idx, levels):  # pragma: no cover - compiled
    # four interleaved histograms: runs of one index no longer chain every increment through the
    # same counter (2.6M equal indices: 5.9 -> 2.0 ms)
    h = np.zeros((4, levels), np.int64)
    n = idx.size
    m = n - n % 4
    for i in range(0, m, 4):
        h[0, idx[i]] += 1
        h[1, idx[i + 1]] += 1
        h[2, idx[i + 2]] += 1
        h[3, idx[i + 3]] += 1
    for i in range(m, n):
        h[0, idx[i]] += 1
    return h.sum(axis=0)


def count_indices(idx: np.ndarray, levels: int) -> np.ndarray:
    """np.bincount(idx, minlength=levels) of validated indices in [0, levels), without
    numpy's int64 copy of the input."""
    return _count(np.ascontiguousarray(idx).reshape(-1), int(levels))


@njit(nogil=True, cache=True)
def _group(sym, idx, counts, offsets, lengths, out):  # pragma: no cover - compiled
    pos = np.zeros(counts.size, np.int64)
    for v in range(1, counts.size):
        pos[v] = pos[v - 1] + counts[v - 1]
    ok = True
    for i in range(idx.size):
        v = idx[i]
        s = np.int64(sym[i]) - offsets[v]
        ok &= (s >= 0) & (s < lengths[v])
        out[pos[v]] = s
        pos[v] += 1
    return ok


def group(sym: np.ndarray, idx: np.ndarray, counts: np.ndarray, offsets: np.ndarray,
          lengths: np.ndarray) -> np.ndarray | None:
    """The encoder's order: the symbols of index 0 in position order, then index 1, ..., each as
    sym - offsets[index], int32; None if one falls outside [0, lengths[index])."""
    out = np.empty(idx.size, np.int32)
    ok = _group(np.ascontiguousarray(sym).reshape(-1), np.ascontiguousarray(idx).reshape(-1),
                np.ascontiguousarray(counts, np.int64), np.ascontiguousarray(offsets, np.int64),
                np.ascontiguousarray(lengths, np.int64), out)
    return out if ok else None


@njit(nogil=True, cache=True)
def _ungroup(values, idx, counts, out):  # pragma: no cover - compiled
    pos = np.zeros(counts.size, np.int64)
    for v in range(1, counts.size):
        pos[v] = pos[v - 1] + counts[v - 1]
    for i in range(idx.size):
        v = idx[i]
        out[i] = values[pos[v]]
        pos[v] += 1


def ungroup(values: np.ndarray, idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inverse of grouping by index: `values` holds the symbols of index 0 in position order, then
    those of index 1, ... (`counts[v]` each, the coder's order); returns them at their positions.
    The running read positions replace numpy's stable argsort and scatter (reads from the groups
    are sequential per group; the argsort's writes were not)."""
    out = np.empty(idx.size, values.dtype)
    _ungroup(values, np.ascontiguousarray(idx).reshape(-1), np.ascontiguousarray(counts, np.int64), out)
    return out


@njit(nogil=True, cache=True)
def _dequantize(sym, means_q, frac, out):  # pragma: no cover - compiled
    for i in range(sym.size):
        out[i] = np.float32(np.float64(sym[i]) + np.float64(means_q[i]) * frac)


def dequantize(sym: np.ndarray, means_q: np.ndarray, frac: float) -> np.ndarray:
    """float32(float64(sym) + float64(means_q) * frac), elementwise, in sym's shape."""
    out = np.empty(sym.shape, np.float32)
    _dequantize(np.ascontiguousarray(sym).reshape(-1), np.ascontiguousarray(means_q).reshape(-1),
                float(frac), out.reshape(-1))
    return out
