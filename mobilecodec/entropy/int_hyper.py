"""Exact-integer hyper-synthesis: maps transmitted integer hyper-latents to entropy parameters.

Encoder and decoder must pick identical Gaussian means and scale-table indices on every backend
(DESIGN.md, "Decodable anywhere"), so the hyper-synthesis runs on the host in integer arithmetic:
int8 per-channel weights, integer biases, uint8 activations, fixed-point requantization.

Convolutions are float64 matrix products on integer-valued arrays: one (pixels, Ci) @ (Ci, Co)
product per kernel tap, accumulated (transposed convs in scatter form). Every product and every
partial sum is an integer below 2^52 in magnitude (bounded at construction from the layer sizes:
max|input| x kernel L1 norm + |bias|), so each float64 operation is exact and the result does not
depend on summation order, blocking, FMA or the BLAS library; it is then cast to int64 exactly.
(BLAS dgemm computes plain sums of products; no Strassen-type algorithm is used by numpy.)

Integer recipe (all stored as integers by `state()`):
  input     x: z for the first layer (scale 1), else codes a in [0, 2^act_bits - 1] for the
            activation range [0, A_prev] (scale s_in = A_prev / (2^act_bits - 1)).
  weights   w_q[c] = clip(rint(w[c] / s_c), -qmax, qmax), s_c = max|w[c]| / qmax,
            qmax = 2^(weight_bits-1) - 1; an all-zero channel takes the layer's smallest s_c.
  bias      b_q[c] = rint(b[c] / (s_in * s_c)), in accumulator units.
  acc       conv(x, w_q) + b_q, exact int64.
  requant   q = (acc * M_c + 2^(S_c-1)) >> S_c: arithmetic shift, i.e. round half up of
            acc * M_c / 2^S_c, with M_c * 2^-S_c ~= m_c, M_c in [2^15, 2^16) (relative error
            <= 2^-16, see `fixed_point_multiplier`), where
            m_c = s_in * s_c / s_out  for a hidden layer  -> a = clamp(q, 0, 2^act_bits - 1),
            m_c = s_in * s_c * 2^F    for means (F = mean_frac_bits)
                                                        -> mean_q = clamp(q, +-mean_limit),
            m_c = s_in * s_c          for the scale index -> index = clamp(q, 0, num_levels - 1).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.errors import CheckpointError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

STATE_VERSION = 1
EXACT_LIMIT = 2**52  # accumulators stay below this: float64 sums of integers are then exact
INT64_LIMIT = 2**63
MULT_BITS = 16  # fixed-point multipliers M_c lie in [2^15, 2^16)

KIND_CONV = 0
KIND_CONVT = 1
# geometry row of a layer in state(): see _Layer.geometry()
_GEOM_FIELDS = ("kind", "in_ch", "out_ch", "kh", "kw", "sh", "sw", "pad_top", "pad_bottom",
                "pad_left", "pad_right", "out_pad_h", "out_pad_w", "dil_h", "dil_w", "activated")


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


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(acc * M_c + 2^(S_c-1)) >> S_c in int64, channel c on the LAST axis: round half up of
    acc*M/2^S (>> on int64 is an arithmetic shift, i.e. floor division by 2^S)."""
    m = mult.astype(np.int64)
    s = shift.astype(np.int64)
    return np.right_shift(acc * m + np.left_shift(np.int64(1), s - 1), s)


# ---------------------------------------------------------------------------------------------
# the integer network


@dataclass
class _Layer:
    """One integer conv / transposed conv, with its requantization and output clamp."""

    kind: int
    weight: np.ndarray  # int64, torch layout: conv (Co,Ci,kh,kw), convT (Ci,Co,kh,kw)
    bias: np.ndarray  # int64 (Co,), accumulator units
    mult: np.ndarray  # int64 (Co,)
    shift: np.ndarray  # int64 (Co,)
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # conv: (top, bottom, left, right); convT: (ph, ph, pw, pw)
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    activated: bool  # hidden layer followed by a bounded activation

    def __post_init__(self) -> None:
        if self.weight.ndim != 4:
            raise IntegerHyperError(f"layer weight must be 4-D, got shape {self.weight.shape}")
        conv = self.kind == KIND_CONV
        # (kh, kw, Ci, Co) float64 taps for the NHWC kernels; L1 norm of each output's kernel
        self.taps = np.ascontiguousarray(
            self.weight.transpose((2, 3, 1, 0) if conv else (2, 3, 0, 1)).astype(np.float64))
        self.l1 = np.abs(self.weight).sum(axis=(1, 2, 3) if conv else (0, 2, 3))

    @property
    def in_ch(self) -> int:
        return int(self.taps.shape[2])

    @property
    def out_ch(self) -> int:
        return int(self.taps.shape[3])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def geometry(self) -> np.ndarray:
        """Metadata row, fields `_GEOM_FIELDS`."""
        return np.array([self.kind, self.in_ch, self.out_ch, *self.kernel, *self.stride, *self.pads,
                         *self.output_padding, *self.dilation, int(self.activated)], dtype=np.int64)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel
        (sh, sw), (dh, dw) = self.stride, self.dilation
        pt, pb, pl, pr = self.pads
        if self.kind == KIND_CONV:
            return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
                    (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)
        return ((h - 1) * sh - pt - pb + dh * (kh - 1) + self.output_padding[0] + 1,
                (w - 1) * sw - pl - pr + dw * (kw - 1) + self.output_padding[1] + 1)

    def accumulate(self, x: np.ndarray) -> np.ndarray:
        """conv(x, w_q) + b_q as exact int64, NHWC in and out; x must respect the layer's bound."""
        xf = x.astype(np.float64)
        if self.kind == KIND_CONV:
            out = _conv_nhwc(xf, self.taps, self.stride, self.dilation, self.pads)
        else:
            out = _convt_nhwc(xf, self.taps, self.stride, self.dilation,
                              (self.pads[0], self.pads[2]), self.output_padding)
        return out.astype(np.int64) + self.bias


def _flatten_modules(module: "nn.Module", prefix: str = "") -> list[tuple[str, "nn.Module"]]:
    from torch import nn

    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            out.extend(_flatten_modules(child, path + "."))
        else:
            out.append((path, child))
    return out


def _parse_float(seq: "nn.Module") -> list[tuple[str, "nn.Module", float | None]]:
    """[(name, conv module, activation bound A or None)], validating the supported structure."""
    from torch import nn

    if not isinstance(seq, nn.Sequential):
        raise IntegerHyperError(f"hyper-synthesis must be an nn.Sequential, "
                                f"got {type(seq).__name__}")
    items = _flatten_modules(seq)
    if not items:
        raise IntegerHyperError("hyper-synthesis Sequential is empty")
    parsed: list[tuple[str, nn.Module, float | None]] = []
    for name, mod in items:
        desc = f"layer {name} ({type(mod).__name__})"
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            if mod.groups != 1:
                raise IntegerHyperError(f"{desc}: groups={mod.groups} is not supported (need 1)")
            if mod.padding_mode != "zeros":
                raise IntegerHyperError(f"{desc}: padding_mode={mod.padding_mode!r} is not "
                                        f"supported (need 'zeros')")
            if isinstance(mod.padding, str) and mod.padding == "same" and any(
                    s != 1 for s in _pair(mod.stride)):
                raise IntegerHyperError(f"{desc}: padding='same' needs stride 1")
            if not bool(np.all(np.isfinite(mod.weight.detach().cpu().double().numpy()))):
                raise IntegerHyperError(f"{desc}: weights are not finite")
            parsed.append((name, mod, None))
        elif isinstance(mod, nn.Hardtanh):  # includes nn.ReLU6 and models.layers.BoundedReLU
            if not parsed or parsed[-1][2] is not None:
                raise IntegerHyperError(f"{desc}: a bounded activation must directly follow a "
                                        f"conv / transposed conv")
            lo, hi = float(mod.min_val), float(mod.max_val)
            if lo != 0.0 or not (math.isfinite(hi) and hi > 0):
                raise IntegerHyperError(f"{desc}: need Hardtanh(min_val=0, max_val=A>0), got "
                                        f"min_val={lo}, max_val={hi}")
            parsed[-1] = (parsed[-1][0], parsed[-1][1], hi)
        else:
            hint = " (unbounded: use nn.Hardtanh(0, A))" if isinstance(mod, nn.ReLU) else ""
            raise IntegerHyperError(f"{desc}: unsupported layer type for the integer "
                                    f"hyper-synthesis{hint}; allowed: Conv2d, ConvTranspose2d, "
                                    f"Hardtanh(0, A), ReLU6")
    for name, mod, act in parsed[:-1]:
        if act is None:
            raise IntegerHyperError(f"layer {name} ({type(mod).__name__}): hidden layers must be "
                                    f"followed by a bounded activation Hardtanh(0, A)")
    name, mod, act = parsed[-1]
    if act is not None:
        raise IntegerHyperError(f"layer {name}: the last layer must have no activation")
    if mod.out_channels % 2:
        raise IntegerHyperError(f"layer {name}: the last layer needs 2*C output channels "
                                f"(means, scale index), got {mod.out_channels}")
    return parsed


class IntegerHyperSynthesis:
    """Integer twin of a float hyper-synthesis; `__call__(z)` gives (means_q, indices) exactly.

    means_q are in units of 2^-mean_frac_bits latent units; indices are scale-table indices in
    [0, num_levels). Build with `from_float` (once, from a trained model) or `from_state`.
    """

    def __init__(self, layers: list[_Layer], z_bound: int, num_levels: int, act_bits: int,
                 weight_bits: int, mean_frac_bits: int, mean_limit: int) -> None:
        self.layers = layers
        self.z_bound = int(z_bound)
        self.num_levels = int(num_levels)
        self.act_bits = int(act_bits)
        self.weight_bits = int(weight_bits)
        self.mean_frac_bits = int(mean_frac_bits)
        self.mean_limit = int(mean_limit)
        self._validate()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_float(cls, seq: "nn.Sequential", z_bound: int, num_levels: int, act_bits: int = 8,
                   weight_bits: int = 8, mean_frac_bits: int = 4,
                   mean_limit: int = 2**15 - 1) -> "IntegerHyperSynthesis":
        """Quantize a float hyper-synthesis (Conv2d / ConvTranspose2d / Hardtanh(0, A) only).

        Scales are computed once here in float64; only the resulting integers are used at run
        time, so the integer network is bit-identical wherever its `state()` is loaded.
        """
        from torch import nn

        if not (1 <= act_bits <= 16 and 2 <= weight_bits <= 16 and 0 <= mean_frac_bits <= 16):
            raise IntegerHyperError(f"unsupported bit widths act_bits={act_bits}, "
                                    f"weight_bits={weight_bits}, mean_frac_bits={mean_frac_bits}")
        if z_bound < 1 or num_levels < 1 or mean_limit < 1:
            raise IntegerHyperError(f"need z_bound, num_levels, mean_limit >= 1, got {z_bound}, "
                                    f"{num_levels}, {mean_limit}")
        parsed = _parse_float(seq)
        qmax = 2 ** (weight_bits - 1) - 1
        amax = 2**act_bits - 1
        s_in = 1.0  # z is already an integer
        layers: list[_Layer] = []
        for i, (name, mod, act) in enumerate(parsed):
            w = mod.weight.detach().cpu().double().numpy()
            is_t = isinstance(mod, nn.ConvTranspose2d)
            # per output channel: conv weight (Co,Ci,kh,kw), transposed conv weight (Ci,Co,kh,kw)
            wmax = np.abs(w).max(axis=(0, 2, 3) if is_t else (1, 2, 3))
            s = wmax / qmax
            positive = s[s > 0]
            s = np.where(s > 0, s, positive.min() if positive.size else 1.0 / qmax)
            s_b = s[None, :, None, None] if is_t else s[:, None, None, None]
            w_q = np.clip(np.rint(w / s_b), -qmax, qmax).astype(np.int64)
            b = (mod.bias.detach().cpu().double().numpy() if mod.bias is not None
                 else np.zeros(mod.out_channels))
            acc_scale = s_in * s
            b_real = np.rint(b / acc_scale)
            if not np.all(np.abs(b_real) < EXACT_LIMIT):
                raise IntegerHyperError(f"layer {name}: bias too large for the accumulator "
                                        f"(|b_q| >= 2^52)")
            b_q = b_real.astype(np.int64)
            if act is not None:
                s_out = act / amax
                m = acc_scale / s_out
            else:
                c = mod.out_channels // 2
                m = np.concatenate([acc_scale[:c] * 2.0**mean_frac_bits, acc_scale[c:]])
            ms = [fixed_point_multiplier(float(v)) for v in m]
            mult = np.array([p[0] for p in ms], dtype=np.int64)
            shift = np.array([p[1] for p in ms], dtype=np.int64)
            stride, dil = _pair(mod.stride), _pair(mod.dilation)
            if is_t:
                ph, pw = _pair(mod.padding)
                pads, out_pad = (ph, ph, pw, pw), _pair(mod.output_padding)
            elif isinstance(mod.padding, str):
                kh, kw = mod.kernel_size
                if mod.padding == "valid":
                    pads = (0, 0, 0, 0)
                else:  # 'same', stride 1: torch puts the extra row/column at the bottom/right
                    th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
                    pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
                out_pad = (0, 0)
            else:
                ph, pw = _pair(mod.padding)
                pads, out_pad = (ph, ph, pw, pw), (0, 0)
            layers.append(_Layer(KIND_CONVT if is_t else KIND_CONV, w_q, b_q, mult, shift, stride,
                                 pads, out_pad, dil, act is not None))
            if act is not None:
                s_in = act / amax
        return cls(layers, z_bound, num_levels, act_bits, weight_bits, mean_frac_bits, mean_limit)

    def _validate(self) -> None:
        """Check the chain of channels and that no layer can leave exact float64 / int64 range."""
        if not self.layers:
            raise IntegerHyperError("integer hyper-synthesis has no layers")
        amax = 2**self.act_bits - 1
        x_max = self.z_bound
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            if layer.activated == last:
                raise IntegerHyperError(f"layer {i}: only hidden layers carry an activation")
            if i and layer.in_ch != self.layers[i - 1].out_ch:
                raise IntegerHyperError(f"layer {i}: {layer.in_ch} input channels after "
                                        f"{self.layers[i - 1].out_ch} output channels")
            n = layer.out_ch
            for arr, nm in ((layer.bias, "bias"), (layer.mult, "mult"), (layer.shift, "shift")):
                if arr.shape != (n,):
                    raise IntegerHyperError(f"layer {i}: {nm} shape {arr.shape}, expected ({n},)")
            if np.any(layer.mult < 1) or np.any(layer.shift < 1) or np.any(layer.shift > 62):
                raise IntegerHyperError(f"layer {i}: multipliers must be >= 1 and shifts in "
                                        f"[1, 62]")
            if (min(*layer.stride, *layer.dilation) < 1
                    or min(*layer.output_padding, *layer.pads) < 0
                    or (layer.kind == KIND_CONVT and (layer.pads[0] != layer.pads[1]
                                                      or layer.pads[2] != layer.pads[3]))):
                raise IntegerHyperError(f"layer {i}: invalid stride {layer.stride}, dilation "
                                        f"{layer.dilation}, padding {layer.pads} or output "
                                        f"padding {layer.output_padding}")
            acc = [x_max * int(l1) + abs(int(b)) for l1, b in zip(layer.l1, layer.bias)]
            worst = max(acc)
            if worst >= EXACT_LIMIT:
                raise IntegerHyperError(
                    f"layer {i} ({'ConvTranspose2d' if layer.kind else 'Conv2d'} "
                    f"{layer.in_ch}->{layer.out_ch}): accumulator bound {worst} "
                    f"(max|input| {x_max} x kernel L1 norm + |bias|) >= 2^52: float64 sums would "
                    f"not be exact")
            for a, m, s in zip(acc, layer.mult, layer.shift):
                if a * int(m) + (1 << (int(s) - 1)) >= INT64_LIMIT:
                    raise IntegerHyperError(f"layer {i}: requantization acc*M could overflow int64")
            x_max = amax
        last = self.layers[-1]
        if last.out_ch % 2:
            raise IntegerHyperError(f"last layer has {last.out_ch} channels, need 2*C")

    # -- running -----------------------------------------------------------------------------

    @property
    def in_channels(self) -> int:
        return self.layers[0].in_ch

    @property
    def latent_channels(self) -> int:
        return self.layers[-1].out_ch // 2

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of the mean / index maps for a hyper-latent of size h x w."""
        for layer in self.layers:
            h, w = layer.out_size(h, w)
        return h, w

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer hyper-latents z (N, Cz, h, w), |z| <= z_bound -> (means_q, indices), int32
        (N, C, H, W) each; means_q in units of 2^-mean_frac_bits."""
        z = _as_int_array(z, "hyper-latent z")
        if z.ndim != 4 or z.shape[1] != self.in_channels:
            raise InputError(f"hyper-latent z must be (N, {self.in_channels}, h, w), got {z.shape}")
        if z.size and int(np.max(np.abs(z.astype(np.int64)))) > self.z_bound:
            raise InputError(f"hyper-latent z has |z| = {int(np.max(np.abs(z.astype(np.int64))))} "
                             f"> z_bound {self.z_bound}")
        amax = 2**self.act_bits - 1
        x = z.astype(np.int64).transpose(0, 2, 3, 1)  # NHWC inside: channels on the last axis
        for layer in self.layers[:-1]:
            x = np.clip(requantize(layer.accumulate(x), layer.mult, layer.shift), 0, amax)
        last = self.layers[-1]
        q = requantize(last.accumulate(x), last.mult, last.shift).transpose(0, 3, 1, 2)
        c = self.latent_channels
        means = np.clip(q[:, :c], -self.mean_limit, self.mean_limit).astype(np.int32)
        indices = np.clip(q[:, c:], 0, self.num_levels - 1).astype(np.int32)
        return np.ascontiguousarray(means), np.ascontiguousarray(indices)

    # -- serialization -----------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """All integers needed to run, as int64 arrays (store them as checkpoint buffers)."""
        st: dict[str, np.ndarray] = {
            "meta": np.array([STATE_VERSION, len(self.layers), self.z_bound, self.num_levels,
                              self.act_bits, self.weight_bits, self.mean_frac_bits,
                              self.mean_limit], dtype=np.int64)}
        for i, layer in enumerate(self.layers):
            st[f"layer{i}.geometry"] = layer.geometry()
            st[f"layer{i}.weight"] = layer.weight.astype(np.int64).copy()
            st[f"layer{i}.bias"] = layer.bias.copy()
            st[f"layer{i}.mult"] = layer.mult.copy()
            st[f"layer{i}.shift"] = layer.shift.copy()
        return st

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "IntegerHyperSynthesis":
        """Rebuild from `state()` (numpy arrays or CPU tensors); validates every field."""

        def get(key: str) -> np.ndarray:
            if key not in state:
                raise IntegerHyperError(f"integer hyper-synthesis state lacks {key!r}")
            v = state[key]
            arr = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            if arr.dtype.kind not in "iu":
                raise IntegerHyperError(f"state {key!r} must be an integer array, got {arr.dtype}")
            return arr.astype(np.int64)

        meta = get("meta")
        if meta.shape != (8,) or int(meta[0]) != STATE_VERSION:
            raise IntegerHyperError(f"integer hyper-synthesis state: unsupported meta "
                                    f"{meta.tolist()}")
        _, n_layers, z_bound, levels, act_bits, weight_bits, frac, limit = (int(v) for v in meta)
        layers: list[_Layer] = []
        qmax = 2 ** (weight_bits - 1) - 1
        for i in range(n_layers):
            g = get(f"layer{i}.geometry")
            if g.shape != (len(_GEOM_FIELDS),) or int(g[0]) not in (KIND_CONV, KIND_CONVT):
                raise IntegerHyperError(f"state layer{i}.geometry is malformed: {g.tolist()}")
            kind, ci, co, kh, kw, sh, sw, pt, pb, pl, pr, oph, opw, dh, dw, act = map(int, g)
            w = get(f"layer{i}.weight")
            expect = (co, ci, kh, kw) if kind == KIND_CONV else (ci, co, kh, kw)
            if w.shape != expect:
                raise IntegerHyperError(f"state layer{i}.weight shape {w.shape}, expected {expect}")
            if np.any(np.abs(w) > qmax):
                raise IntegerHyperError(f"state layer{i}.weight exceeds {weight_bits}-bit range")
            layers.append(_Layer(kind, w, get(f"layer{i}.bias"), get(f"layer{i}.mult"),
                                 get(f"layer{i}.shift"), (sh, sw), (pt, pb, pl, pr), (oph, opw),
                                 (dh, dw), bool(act)))
        return cls(layers, z_bound, levels, act_bits, weight_bits, frac, limit)

    def describe(self) -> str:
        """Human-readable summary: layers, shapes, requantization and exactness bounds."""
        amax = 2**self.act_bits - 1
        lines = [f"IntegerHyperSynthesis: z in [-{self.z_bound}, {self.z_bound}] "
                 f"({self.in_channels} ch) -> means (x2^-{self.mean_frac_bits}, clamp "
                 f"+-{self.mean_limit}) + indices [0, {self.num_levels - 1}] "
                 f"({self.latent_channels} ch each); w{self.weight_bits} a{self.act_bits}"]
        x_max = self.z_bound
        for i, layer in enumerate(self.layers):
            acc = int(max(x_max * int(l1) + abs(int(b)) for l1, b in zip(layer.l1, layer.bias)))
            eff = layer.mult.astype(np.float64) * np.exp2(-layer.shift.astype(np.float64))
            kind = "ConvTranspose2d" if layer.kind == KIND_CONVT else "Conv2d"
            out = f"clamp[0,{amax}]" if layer.activated else "means/indices"
            lines.append(
                f"  {i}: {kind} {layer.in_ch}->{layer.out_ch} k{layer.kernel} s{layer.stride} "
                f"pad{layer.pads} outpad{layer.output_padding} dil{layer.dilation}; "
                f"|in|<={x_max}, |acc|<={acc} (2^{math.log2(max(acc, 1)):.1f} < 2^52); "
                f"M*2^-S in [{eff.min():.3g}, {eff.max():.3g}]; -> {out}")
            x_max = amax
        return "\n".join(lines)


def reference_float(seq: "nn.Module", z: np.ndarray,
                    dtype: "torch.dtype | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the float hyper-synthesis on z: (means, u) as float64 numpy arrays (N, C, H, W).

    Runs a float64 copy by default (pass dtype to run in another precision); `seq` is unchanged.
    Table indices of the float model are clip(round(u), 0, L-1).
    """
    import torch

    dtype = torch.float64 if dtype is None else dtype
    model = copy.deepcopy(seq).to(dtype=dtype, device="cpu").eval()
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(z), dtype=dtype))
    out = out.double().numpy()
    c = out.shape[1] // 2
    return out[:, :c], out[:, c:]
