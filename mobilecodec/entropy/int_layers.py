"""Layers of the exact-integer hyper-synthesis: the integer layer record and the parser of the
float hyper-synthesis it is quantized from (see `int_hyper`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mobilecodec.entropy.int_conv64 import (IntegerHyperError, _conv_nhwc, _convt_nhwc, _pair)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

KIND_CONV = 0
KIND_CONVT = 1


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
