"""int8-friendly building blocks: plain convolutions, transposed convolutions and ReLU-family activations.

No GDN, no division, exp or log inside network graphs (DESIGN.md): every block here maps to an
HTP-supported ONNX op (Conv, ConvTranspose, Relu, Clip) with static shapes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class BoundedReLU(nn.Hardtanh):
    """ReLU clamped at `max_val` (ReLU6 for 6): a fixed activation range that int8 and the
    exact-integer hyper-synthesis can represent without calibration."""

    def __init__(self, max_val: float = 6.0) -> None:
        super().__init__(min_val=0.0, max_val=float(max_val))


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """Convolution with 'same' padding (output = input / stride)."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the spatial size exactly by `stride`."""
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                              output_padding=stride - 1)


def down_stages(cin: int, channels: tuple[int, ...], extra: tuple[int, ...], kernel: int,
                act: type[nn.Module] = nn.ReLU) -> tuple[list[nn.Module], int]:
    """Stride-2 convolutions (one per entry of `channels`), each followed by `extra[i]` 3x3
    convolutions at that resolution; activations after every layer. Returns (layers, cout)."""
    return _stages(conv, cin, channels, extra, kernel, act)


def up_stages(cin: int, channels: tuple[int, ...], extra: tuple[int, ...], kernel: int,
              act: type[nn.Module] = nn.ReLU) -> tuple[list[nn.Module], int]:
    """Stride-2 transposed convolutions, each followed by `extra[i]` 3x3 convolutions."""
    return _stages(deconv, cin, channels, extra, kernel, act)


def _stages(resample: Callable[..., nn.Module], cin: int, channels: tuple[int, ...], extra: tuple[int, ...],
            kernel: int, act: type[nn.Module]) -> tuple[list[nn.Module], int]:
    """Per entry of `channels`: `resample` (stride 2), then `extra[i]` 3x3 convolutions, each with an activation."""
    layers: list[nn.Module] = []
    for c, n in zip(channels, extra, strict=True):
        layers += [resample(cin, c, kernel, stride=2), act()]
        for _ in range(n):
            layers += [conv(c, c, 3), act()]
        cin = c
    return layers, cin


def fan_in_init(module: nn.Module, zero: tuple[nn.Module, ...] = ()) -> None:
    """Variance-preserving (He, fan-in) initialisation of every (transposed) convolution in
    `module`, zero biases; the convolutions in `zero` start at exactly zero.

    PyTorch's default initialisation shrinks activations by about 1/sqrt(3) per ReLU layer, so
    an analysis transform starts with latents of std ~0.03 that all round to the mean: a motion
    autoencoder initialised that way learned to send nothing (motion_teacher.py)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            with torch.no_grad():
                if any(m is z for z in zero):
                    m.weight.zero_()
                else:
                    # fan-in of one output sample: Cin * k * k (stride^2 fewer taps for a transposed conv)
                    k = m.weight[0, 0].numel()
                    cin = m.in_channels // m.groups
                    fan_in = cin * k / (m.stride[0] * m.stride[1] if isinstance(m, nn.ConvTranspose2d) else 1)
                    m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
