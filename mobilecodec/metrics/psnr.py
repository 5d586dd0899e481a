"""MSE / PSNR on planes and YUV420 frames, and bits per pixel.

PSNR of identical inputs is ``float('inf')``. When aggregating over frames, average the MSE
(``mse``) and convert once with ``psnr_from_mse``, or average per-frame PSNR, but say which:
the two differ. These functions only compute; they do not choose the aggregation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mobilecodec.errors import InputError

# Weights of the common 6:1:1 PSNR-YUV (JVET CTC, MobileNVC): (6*Y + U + V) / 8.
YUV_WEIGHTS = (6.0, 1.0, 1.0)
#: a frame's PSNR counts at most this much in a sequence mean, as x264 reports a lossless frame: an
#: identical plane (a black frame, grey content, lossless coding) would otherwise make the mean inf
PSNR_CAP_DB = 100.0


def _pair(ref: Any, dist: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(ref)
    b = np.asarray(dist)
    if a.shape != b.shape:
        raise InputError(f"{what}: shape mismatch, reference {a.shape} vs distorted {b.shape}")
    if a.size == 0:
        raise InputError(f"{what}: empty arrays")
    return a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)


def mse(ref: Any, dist: Any) -> float:
    """Mean squared error between two arrays of the same shape (computed in float64)."""
    a, b = _pair(ref, dist, "mse")
    d = a - b
    return float(np.mean(d * d))


def psnr_from_mse(mse_value: float, max_val: float = 255.0) -> float:
    """PSNR in dB for a given MSE: 10*log10(max_val^2 / mse); ``inf`` when mse == 0."""
    if not math.isfinite(mse_value) or mse_value < 0:
        raise InputError(f"psnr: MSE must be a finite non-negative number, got {mse_value!r}")
    if mse_value == 0:
        return float("inf")
    return 10.0 * math.log10(max_val * max_val / mse_value)


def psnr(ref: Any, dist: Any, max_val: float = 255.0) -> float:
    """PSNR in dB between two arrays; ``float('inf')`` for identical inputs."""
    return psnr_from_mse(mse(ref, dist), max_val)


def _check_frame(frame: Any, name: str) -> None:
    for plane in ("y", "u", "v"):
        if not hasattr(frame, plane):
            raise InputError(f"{name}: expected a YUVFrame with .y .u .v planes, got {type(frame).__name__}")
    y, u, v = (np.asarray(frame.y), np.asarray(frame.u), np.asarray(frame.v))
    if y.ndim != 2 or u.ndim != 2 or v.ndim != 2:
        raise InputError(f"{name}: Y, U, V planes must be 2-D, got shapes {y.shape}, {u.shape}, {v.shape}")
    h, w = y.shape
    want = ((h + 1) // 2, (w + 1) // 2)
    if u.shape != want or v.shape != want:
        raise InputError(
            f"{name}: chroma planes must be {want[0]}x{want[1]} (4:2:0 of a {h}x{w} luma), "
            f"got U {u.shape} and V {v.shape}"
        )


def psnr_yuv(ref: Any, dist: Any) -> dict[str, float]:
    """Per-plane PSNR of two YUV420 frames and the 6:1:1 weighted PSNR-YUV.

    Returns ``{"y", "u", "v", "yuv"}`` with yuv = (6*psnr_y + psnr_u + psnr_v) / 8 (a weighting of
    per-plane PSNR, not of MSE; inf if any plane is identical).
    """
    _check_frame(ref, "psnr_yuv reference")
    _check_frame(dist, "psnr_yuv distorted")
    out = {p: psnr(getattr(ref, p), getattr(dist, p)) for p in ("y", "u", "v")}
    out["yuv"] = weighted_psnr_yuv(out["y"], out["u"], out["v"])
    return out


def psnr_samples(ref: Any, dist: Any, max_val: float = 255.0) -> float:
    """PSNR over every Y, U and V sample of two YUV420 frames together (one pooled MSE).

    For the distance between two decodes of one stream: it is finite as soon as any sample
    differs, where the 6:1:1 PSNR-YUV is inf when one plane is identical (a luma difference hides
    behind identical chroma)."""
    _check_frame(ref, "psnr_samples reference")
    _check_frame(dist, "psnr_samples distorted")
    pairs = [_pair(getattr(ref, p), getattr(dist, p), "psnr_samples") for p in ("y", "u", "v")]
    squared = sum(float(np.sum((a - b) ** 2)) for a, b in pairs)
    return psnr_from_mse(squared / sum(a.size for a, _ in pairs), max_val)


def weighted_psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """The 6:1:1 PSNR-YUV of per-plane PSNRs (dB): (6*Y + U + V) / 8."""
    wy, wu, wv = YUV_WEIGHTS
    return (wy * psnr_y + wu * psnr_u + wv * psnr_v) / (wy + wu + wv)


def capped_psnr(value: float | None) -> float:
    """A PSNR as sequence means count it: at most `PSNR_CAP_DB`; None is an infinite one as JSON
    records it (identical planes: `fsutil.json_finite`)."""
    return PSNR_CAP_DB if value is None else min(float(value), PSNR_CAP_DB)


def frame_psnr(f: dict[str, Any], key: str = "psnr_yuv") -> float:
    """One frame's PSNR (`key` of a per-frame record) as sequence means and drift figures count it:
    at most `PSNR_CAP_DB`, and PSNR-YUV as the 6:1:1 weighting of its planes capped one by one."""
    planes = ("psnr_y", "psnr_u", "psnr_v")
    if key == "psnr_yuv" and all(p in f for p in planes):
        return weighted_psnr_yuv(*(capped_psnr(f[p]) for p in planes))
    return capped_psnr(f[key])


def bpp(bits: float, frames: int, width: int, height: int) -> float:
    """Bits per pixel: total bits / (frames * width * height), pixels counted on luma."""
    if frames <= 0 or width <= 0 or height <= 0:
        raise InputError(f"bpp: frames, width and height must be positive, got {frames}, {width}, {height}")
    if not math.isfinite(bits) or bits < 0:
        raise InputError(f"bpp: bits must be a finite non-negative number, got {bits!r}")
    return float(bits) / (frames * width * height)
