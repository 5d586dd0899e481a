"""Exact-integer hyper-synthesis: maps transmitted integer hyper-latents to entropy parameters.

Encoder and decoder must pick identical Gaussian means and scale-table indices on every backend
(DESIGN.md, "Decodable anywhere"), so the hyper-synthesis runs on the host in integer arithmetic:
int8 per-channel weights, integer biases, uint8 activations, fixed-point requantization.

Two interchangeable, bit-identical ways to compute the convolutions:
  * fast (default): onnxruntime integer GEMMs (`int_kernels`): each layer one MatMulInteger of
    uint8 im2col patches by int8 weights (u8 x s8, CPUs with VNNI) or uint8 weights + 128 (u8 x
    u8, elsewhere: onnxruntime's u8 x s8 saturates int16 pairs on AVX2), channels last from layer
    to layer, the stride-2 transposed convolutions split into their polyphase components (no
    inserted zeros multiplied). Exact by construction: every product is <= 255^2 and K x 255^2 <
    2^31 (K = Ci x taps) plus the validated accumulator bound below keep every int32 partial sum
    and zero-point correction exact in any summation order. Each kernel is also checked once
    against the float64 path on worst-case probes; any mismatch (or operands wider than 8 bits)
    falls back.
  * reference (`use_int_gemm = False`, `int_conv64`): float64 matrix products on integer-valued
    arrays, one (pixels, Ci) @ (Ci, Co) product per kernel tap. Every product and partial sum is an
    integer below 2^52 in magnitude (bounded at construction from the layer sizes: max|input| x
    kernel L1 norm + |bias|), so each float64 operation is exact whatever the summation order,
    blocking, FMA or BLAS library; it is then cast to int64 exactly.
Bias, requantization and clamps run in int64 on both paths: numpy, or at frame sizes on the
channels-last fast path one compiled pass per layer (`compiled`, the same integers).

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
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.entropy.int_conv64 import (EXACT_LIMIT, MULT_BITS, IntegerHyperError,
                                            _as_int_array, _pair, conv2d_exact,
                                            conv_transpose2d_exact, fixed_point_multiplier,
                                            requantize, requantize_nchw, requantize_nhwc)
from mobilecodec.entropy.int_layers import KIND_CONV, KIND_CONVT, _Layer, _parse_float
from mobilecodec.errors import InputError
from mobilecodec.tensors import to_numpy

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

STATE_VERSION = 1
INT64_LIMIT = 2**63
#: outputs per layer from which the channels-last path requantizes with the compiled kernels
_COMPILED_MIN_OUTPUTS = 1 << 16
# geometry row of a layer in state(): see _Layer.geometry()
_GEOM_FIELDS = ("kind", "in_ch", "out_ch", "kh", "kw", "sh", "sw", "pad_top", "pad_bottom",
                "pad_left", "pad_right", "out_pad_h", "out_pad_w", "dil_h", "dil_w", "activated")
__all__ = ["EXACT_LIMIT", "MULT_BITS", "IntegerHyperError", "IntegerHyperSynthesis",
           "conv2d_exact", "conv_transpose2d_exact", "fixed_point_multiplier", "reference_float",
           "requantize", "requantize_nchw"]



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
        self.use_int_gemm = True  # False: always the float64 reference path
        # Integer kernel form, read when kernels are built (benchmarks compare them): int_gemm
        # None / True = MatMulInteger on im2col patches, channels last; False = ConvInteger u8 x u8,
        # NCHW. int_signed: MatMulInteger's weights int8 (u8 x s8) / uint8 (u8 x u8); None = int8
        # where the CPU has VNNI (u8 x s8 is exact there and onnxruntime's fast path).
        self.int_gemm: bool | None = None
        self.int_signed: bool | None = None
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
        out = self._run_int8(z) if self.use_int_gemm else None
        return out if out is not None else self._split(self._run_float64(z))

    def _split(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last layer's requantized q (N, 2C, H, W) -> clamped (means_q, indices), int32."""
        c = self.latent_channels
        means = np.clip(q[:, :c], -self.mean_limit, self.mean_limit).astype(np.int32)
        indices = np.clip(q[:, c:], 0, self.num_levels - 1).astype(np.int32)
        return np.ascontiguousarray(means), np.ascontiguousarray(indices)

    def _run_float64(self, z: np.ndarray) -> np.ndarray:
        """The reference path: float64 per-tap products (exact below 2^52), NHWC inside.
        Returns the last layer's requantized output q (N, 2C, H, W), int64."""
        amax = 2**self.act_bits - 1
        x = z.astype(np.int64).transpose(0, 2, 3, 1)  # NHWC inside: channels on the last axis
        for layer in self.layers[:-1]:
            x = np.clip(requantize(layer.accumulate(x), layer.mult, layer.shift), 0, amax)
        last = self.layers[-1]
        return requantize(last.accumulate(x), last.mult, last.shift).transpose(0, 3, 1, 2)

    def _kernels(self) -> list | None:
        """One `IntConvKernel` per layer, or None if some layer's operands do not fit 8 bits."""
        form = (self.int_gemm, self.int_signed)
        if "_int_kernels" not in self.__dict__ or self.__dict__.get("_int_kernels_form") != form:
            from mobilecodec.entropy.int_kernels import IntConvKernel

            amax = 2**self.act_bits - 1
            try:
                ks = [IntConvKernel(layer, self.z_bound if i == 0 else 0,
                                    2 * self.z_bound if i == 0 else amax, gemm=self.int_gemm,
                                    signed=self.int_signed)
                      for i, layer in enumerate(self.layers)]
            except ValueError:
                ks = None
            self._int_kernels, self._int_kernels_form = ks, form
        return self._int_kernels

    def _run_int8(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The fast path: integer-GEMM kernels per layer (exact, see int_kernels), channels-last
        MatMulInteger (NCHW ConvInteger u8 x u8 with `int_gemm = False`); returns (means_q,
        indices) like the reference path, or None when it cannot run exactly."""
        kernels = self._kernels()
        if kernels is None:
            return None
        amax = 2**self.act_bits - 1
        if all(k.gemm for k in kernels):  # channels last throughout, like _run_float64
            return self._run_nhwc(z, kernels)
        x = (z.astype(np.int16) + self.z_bound).astype(np.uint8)
        for i, (layer, kern) in enumerate(zip(self.layers, kernels)):
            acc = kern(x)
            if acc is None:
                return None
            q = requantize_nchw(acc, layer.bias, layer.mult, layer.shift)
            if i == len(self.layers) - 1:
                return self._split(q)
            x = np.clip(q, 0, amax).astype(np.uint8)
        return None

    def _run_nhwc(self, z: np.ndarray, kernels: list) -> tuple[np.ndarray, np.ndarray] | None:
        """Channels-last MatMulInteger layers; each layer's accumulators (per polyphase part) are
        requantized by the compiled kernels of `compiled` straight into the next layer's uint8
        input, and the last layer's into the NCHW means and indices (same integers as
        `requantize_nhwc`; the numpy form below 2^16 outputs per layer, which skips numba's
        one-time compilation on small frames)."""
        from mobilecodec.entropy.int_kernels import host_threads

        amax, threads = 2**self.act_bits - 1, host_threads()
        x = (z.astype(np.int16) + self.z_bound).astype(np.uint8).transpose(0, 2, 3, 1)
        n = x.shape[0]
        for i, (layer, kern) in enumerate(zip(self.layers, kernels)):
            parts = kern.nhwc_parts(x)
            if parts is None:
                return None
            ho, wo = layer.out_size(*x.shape[1:3])
            compiled = n * ho * wo * layer.out_ch >= _COMPILED_MIN_OUTPUTS
            if compiled:
                from mobilecodec.entropy import compiled
            if i == len(self.layers) - 1:
                c = self.latent_channels
                means = np.empty((n, c, ho, wo), np.int32)
                indices = np.empty((n, c, ho, wo), np.int32)
                for acc, rows, cols in parts:
                    acc = np.zeros((n, *means[0, 0, rows, cols].shape, 2 * c), np.int32) if acc is None else acc
                    if compiled:
                        compiled.requantize_output(acc, layer.bias, layer.mult, layer.shift,
                                                      self.mean_limit, self.num_levels,
                                                      means[:, :, rows, cols], indices[:, :, rows, cols],
                                                      threads)
                    else:
                        m, ix = self._split(requantize_nhwc(acc, layer.bias, layer.mult,
                                                            layer.shift).transpose(0, 3, 1, 2))
                        means[:, :, rows, cols], indices[:, :, rows, cols] = m, ix
                return means, indices
            y = np.empty((n, ho, wo, layer.out_ch), np.uint8)
            for acc, rows, cols in parts:
                acc = np.zeros(y[:, rows, cols].shape, np.int32) if acc is None else acc
                if compiled:
                    compiled.requantize_hidden(acc, layer.bias, layer.mult, layer.shift, amax,
                                                  y[:, rows, cols], threads)
                else:
                    y[:, rows, cols] = np.clip(requantize_nhwc(acc, layer.bias, layer.mult,
                                                               layer.shift), 0, amax)
            x = y
        return None

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
            arr = to_numpy(v)
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
