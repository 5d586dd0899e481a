"""MS-SSIM (Wang, Simoncelli, Bovik 2003) with the same definition as ``pytorch_msssim.ms_ssim``.

Gaussian window 11 / sigma 1.5 applied as a "valid" separable filter, K1=0.01, K2=0.03,
5 scales weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling between
scales (an odd side is zero-padded by one on both ends, like ``avg_pool2d(padding=1)``),
contrast-structure terms and the last-scale SSIM clamped at 0, per-channel values averaged.

Small frames: 5 scales need the coarsest scale to be at least as large as the window, i.e. a
smaller side > 160 (pytorch_msssim's own limit). Below that (e.g. QCIF 176x144) we use the
largest number of scales L that fits, keep the first L weights renormalised to sum to 1 (the
full 5-scale set is used unchanged, as published, although it sums to 1.0001), and
take the full SSIM at scale L (see ``ms_ssim_scales``). A side below 11 raises ``InputError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.metrics.color import yuv_to_rgb8

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable "valid" correlation over the two leading (spatial) axes."""
    from scipy import ndimage  # lazy: keeps CLI start-up fast

    r = len(win) // 2
    out = ndimage.correlate1d(x, win, axis=0, mode="constant")[r:-r]
    return ndimage.correlate1d(out, win, axis=1, mode="constant")[:, r:-r]


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling; odd sides get one zero on each end (avg_pool2d, count_include_pad)."""
    pads = [(s % 2, s % 2) for s in x.shape[:2]] + [(0, 0)] * (x.ndim - 2)
    if any(p[0] for p in pads):
        x = np.pad(x, pads)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _ssim_cs(x: np.ndarray, y: np.ndarray, win: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure term per channel (trailing axis)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu1, mu2 = _filter(x, win), _filter(y, win)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter(x * x, win) - mu1_sq
    s2 = _filter(y * y, win) - mu2_sq
    s12 = _filter(x * y, win) - mu12
    cs_map = (2.0 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = ((2.0 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))


def ms_ssim_scales(height: int, width: int, max_scales: int = len(WEIGHTS)) -> int:
    """Number of scales used for a ``height x width`` image: most scales <= max_scales that fit."""
    if not 1 <= max_scales <= len(WEIGHTS):
        raise InputError(f"ms_ssim: max_scales must be in 1..{len(WEIGHTS)}, got {max_scales}")
    if min(height, width) < WIN_SIZE:
        raise InputError(
            f"ms_ssim: a {width}x{height} image is too small, both sides must be >= {WIN_SIZE} (the window size)"
        )
    scales, h, w = 1, height, width
    while scales < max_scales:
        h, w = (h + 1) // 2, (w + 1) // 2
        if min(h, w) < WIN_SIZE:
            break
        scales += 1
    return scales


def check_measurable(height: int, width: int, source: Any) -> None:
    """Refuse frames MS-SSIM cannot measure before an RD sweep codes them (eval, baseline), saying
    why a command that only codes would take them: the bare metric's message read as an internal one."""
    try:
        ms_ssim_scales(height, width)
    except InputError:
        raise InputError(f"{source}: {width}x{height} frames are too small to measure: RD points include MS-SSIM-RGB, "
                         f"whose {WIN_SIZE}x{WIN_SIZE} window needs frames of at least {WIN_SIZE}x{WIN_SIZE} "
                         "(encode and decode take any size)") from None


def ms_ssim(a: Any, b: Any, data_range: float = 255.0, max_scales: int = len(WEIGHTS)) -> float:
    """MS-SSIM of two HxW or HxWxC arrays (C channels averaged); see the module docstring for small images."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"ms_ssim: shape mismatch, reference {x.shape} vs distorted {y.shape}")
    if x.ndim not in (2, 3):
        raise InputError(f"ms_ssim: expected HxW or HxWxC arrays, got shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("ms_ssim: inputs contain NaN or infinite values")
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    levels = ms_ssim_scales(x.shape[0], x.shape[1], max_scales)
    weights = np.asarray(WEIGHTS[:levels], dtype=np.float64)
    if levels < len(WEIGHTS):  # the 5 standard weights are used as published (they sum to 1.0001)
        weights /= weights.sum()
    win = _gaussian_window()
    factors = []
    for i in range(levels):
        ssim_c, cs_c = _ssim_cs(x, y, win, data_range)
        if i < levels - 1:
            factors.append(np.maximum(cs_c, 0.0))
            x, y = _avg_pool2(x), _avg_pool2(y)
        else:
            factors.append(np.maximum(ssim_c, 0.0))
    per_channel = np.prod(np.stack(factors) ** weights[:, None], axis=0)
    return float(per_channel.mean())


def ms_ssim_rgb(ref: Any, dist: Any, matrix: str = "bt601", full_range: bool = False) -> float:
    """MS-SSIM averaged over R, G, B of the uint8-rounded RGB conversions of two YUV420 frames."""
    return ms_ssim(yuv_to_rgb8(ref, matrix, full_range), yuv_to_rgb8(dist, matrix, full_range))
