"""Exact float64 integer convolutions and fixed-point requantization (the reference kernels of
the exact-integer hyper-synthesis, see `int_hyper`).

Convolutions are float64 matrix products on integer-valued arrays: one (pixels, Ci) @ (Ci, Co)
product per kernel tap, accumulated (transposed convs in scatter form). Every product and every
partial sum is an integer below 2^52 in magnitude (bounded by the caller from the layer sizes),
so each float64 operation is exact and the result does not depend on summation order, blocking,
FMA or the BLAS library. The fast path (`int_kernels`) must reproduce these results bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mobilecodec.errors import CheckpointError, InputError

EXACT_LIMIT = 2**52  # accumulators stay below this: float64 sums of integers are then exact
MULT_BITS = 16  # fixed-point multipliers M_c lie in [2^15, 2^16)


class IntegerHyperError(CheckpointError, ValueError):
    """A float hyper-synthesis or an integer state that cannot be run exactly in integers."""


# ---------------------------------------------------------------------------------------------
# exact convolutions


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise IntegerHyperError(f"expected a pair of ints, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _pad_or_crop(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Zero-pad (positive amounts) or crop (negative amounts) the spatial axes 1, 2 of NHWC `x`."""
    if min(top, bottom, left, right) < 0:
        h, w = x.shape[1:3]
        x = x[:, max(0, -top):h - max(0, -bottom), max(0, -left):w - max(0, -right)]
        top, bottom, left, right = (max(0, v) for v in (top, bottom, left, right))
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return x


def _as_int_array(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise InputError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a


def _check_exact(x: np.ndarray, l1: np.ndarray, what: str) -> None:
    """Raise unless every partial sum of the convolution is an integer below 2^52 in magnitude."""
    xmax = int(np.max(np.abs(x.astype(np.int64)))) if x.size else 0
    wsum = int(np.max(l1)) if l1.size else 0
    if xmax * wsum >= EXACT_LIMIT:
        raise IntegerHyperError(f"{what}: max|x| {xmax} x max kernel L1 norm {wsum} >= 2^52, "
                                f"float64 sums would not be exact")


def _conv_nhwc(x: np.ndarray, wk: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
               pads: tuple[int, int, int, int]) -> np.ndarray:
    """Convolution of float64 integer-valued NHWC `x` with `wk` (kh, kw, Ci, Co): for each kernel
    tap, one (N*Ho*Wo, Ci) @ (Ci, Co) product accumulated into the output. Returns (N,Ho,Wo,Co),
    exact when the caller has bounded the partial sums below 2^53."""
    kh, kw, ci, co = wk.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = _pad_or_crop(x, *pads)
    n, hp, wp, _ = xp.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise InputError(f"input {x.shape[1:3]} too small for kernel {(kh, kw)} "
                         f"(dilation {dilation}, padding {pads})")
    out = np.zeros((n * ho * wo, co), dtype=np.float64)
    tmp = np.empty_like(out)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            taps = xp[:, y0:y0 + (ho - 1) * sh + 1:sh, x0:x0 + (wo - 1) * sw + 1:sw]
            np.matmul(taps.reshape(-1, ci), wk[ky, kx], out=tmp)
            out += tmp
    return out.reshape(n, ho, wo, co)


def _convt_out_size(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _convt_nhwc(x: np.ndarray, wk: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
                padding: tuple[int, int], output_padding: tuple[int, int]) -> np.ndarray:
    """Transposed convolution of float64 integer-valued NHWC `x` with `wk` (kh, kw, Ci, Co).

    Computed by its definition (scatter form): each input pixel times each kernel tap lands on
    output row iy*s - p + ky*d. This equals zero insertion + padding d*(k-1)-p (+ output_padding at
    the bottom/right) + conv with the flipped, in/out-swapped kernel, without multiplying the
    inserted zeros (s^2 times fewer products). Returns (N,Ho,Wo,Co), exact like `_conv_nhwc`.
    """
    kh, kw, ci, co = wk.shape
    (sh, sw), (dh, dw) = stride, dilation
    n, h, w, _ = x.shape
    ho = _convt_out_size(h, kh, sh, padding[0], output_padding[0], dh)
    wo = _convt_out_size(w, kw, sw, padding[1], output_padding[1], dw)
    if ho < 1 or wo < 1:
        raise InputError(f"transposed conv output would be {ho}x{wo} for input {h}x{w}")
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1
    buf = np.zeros((n, max(full_h, padding[0] + ho), max(full_w, padding[1] + wo), co))
    xm = x.reshape(-1, ci)
    tmp = np.empty((xm.shape[0], co), dtype=np.float64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            np.matmul(xm, wk[ky, kx], out=tmp)
            dst = buf[:, y0:y0 + (h - 1) * sh + 1:sh, x0:x0 + (w - 1) * sw + 1:sw]
            dst += tmp.reshape(n, h, w, co)
    return buf[:, padding[0]:padding[0] + ho, padding[1]:padding[1] + wo]


def conv2d_exact(x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
                 dilation: int | tuple[int, int] = 1) -> np.ndarray:
    """Exact integer conv2d (groups=1, zero padding, no bias) of int `x` (N,Ci,H,W) with int `w`
    (Co,Ci,kh,kw), like `torch.nn.functional.conv2d`. `padding` is p, (ph, pw) or
    (top, bottom, left, right). Returns int64 (N,Co,Ho,Wo)."""
    x = _as_int_array(x, "x")
    w = _as_int_array(w, "w")
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise InputError(f"conv2d_exact: incompatible shapes x {x.shape}, w {w.shape}")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        pads = tuple(int(p) for p in padding)
    else:
        ph, pw = _pair(padding)
        pads = (ph, ph, pw, pw)
    _check_exact(x, np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)), "conv2d_exact")
    out = _conv_nhwc(x.transpose(0, 2, 3, 1).astype(np.float64),
                     w.transpose(2, 3, 1, 0).astype(np.float64), _pair(stride), _pair(dilation),
                     pads)
    return np.ascontiguousarray(out.astype(np.int64).transpose(0, 3, 1, 2))


def conv_transpose2d_exact(x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int] = 1,
                           padding: int | tuple[int, int] = 0,
                           output_padding: int | tuple[int, int] = 0,
                           dilation: int | tuple[int, int] = 1) -> np.ndarray:
    """Exact integer transposed conv (groups=1, no bias) of int `x` (N,Ci,H,W) with int `w`
    (Ci,Co,kh,kw), like `torch.nn.functional.conv_transpose2d`. Returns int64 (N,Co,Ho,Wo)."""
    x = _as_int_array(x, "x")
    w = _as_int_array(w, "w")
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[0]:
        raise InputError(f"conv_transpose2d_exact: incompatible shapes x {x.shape}, w {w.shape}")
    _check_exact(x, np.abs(w.astype(np.int64)).sum(axis=(0, 2, 3)), "conv_transpose2d_exact")
    out = _convt_nhwc(x.transpose(0, 2, 3, 1).astype(np.float64),
                      w.transpose(2, 3, 0, 1).astype(np.float64), _pair(stride), _pair(dilation),
                      _pair(padding), _pair(output_padding))
    return np.ascontiguousarray(out.astype(np.int64).transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------
# fixed-point multipliers


def fixed_point_multiplier(m: float, bits: int = MULT_BITS) -> tuple[int, int]:
    """Integers (M, S) with M * 2^-S ~= m, M in [2^(bits-1), 2^bits), S >= 1.

    m = f * 2^e with f in [0.5, 1) (frexp); M = floor(f * 2^bits + 1/2) (round half up), S = bits-e;
    if that rounds up to 2^bits, M = 2^(bits-1) and S -= 1. Relative error <= 2^-bits. If S would
    be < 1 (m >= 2^(bits-1)), M is shifted left so that S = 1 (then M may exceed 2^bits, exactly).
    """
    if not (math.isfinite(m) and m > 0):
        raise IntegerHyperError(f"requantization multiplier must be finite and > 0, got {m!r}")
    f, e = math.frexp(m)
    mult = math.floor(f * (1 << bits) + 0.5)
    shift = bits - e
    if mult == 1 << bits:
        mult >>= 1
        shift -= 1
    if shift < 1:
        mult <<= 1 - shift
        shift = 1
    return mult, shift


def _requantize_inplace(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                        channel_shape: tuple[int, ...]) -> np.ndarray:
    """`requantize(acc + bias)` on one int64 copy of `acc`, in place (the out-of-place form
    allocates a temporary per operation: 4x slower on a 1080p hyper-latent); the per-channel
    parameters are reshaped to `channel_shape` to broadcast over acc's channel axis."""
    q = acc.astype(np.int64)
    q += bias.reshape(channel_shape)
    q *= mult.astype(np.int64).reshape(channel_shape)
    s = shift.astype(np.int64).reshape(channel_shape)
    q += np.left_shift(np.int64(1), s - 1)
    return np.right_shift(q, s, out=q)


def requantize_nchw(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray,
                    shift: np.ndarray) -> np.ndarray:
    """`requantize(acc + bias)` with channel c on axis 1 (NCHW), in place on one int64 copy."""
    return _requantize_inplace(acc, bias, mult, shift, (1, -1, 1, 1))


def requantize_nhwc(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray,
                    shift: np.ndarray) -> np.ndarray:
    """`requantize(acc + bias)` with channel c on the last axis, in place on one int64 copy."""
    return _requantize_inplace(acc, bias, mult, shift, (-1,))


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(acc * M_c + 2^(S_c-1)) >> S_c in int64, channel c on the LAST axis: round half up of
    acc*M/2^S (>> on int64 is an arithmetic shift, i.e. floor division by 2^S)."""
    m = mult.astype(np.int64)
    s = shift.astype(np.int64)
    return np.right_shift(acc * m + np.left_shift(np.int64(1), s - 1), s)
