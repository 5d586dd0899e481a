"""8-bit YUV420 -> RGB conversion (BT.601 / BT.709, limited or full range) and PSNR-RGB.

Chroma is upsampled by nearest neighbour (each chroma sample covers its 2x2 luma block), as DCVC's
default; chroma siting is ignored. It matches ffmpeg's swscale to 1 level with
`scale=in_color_matrix=bt601:in_range=tv:flags=neighbor+accurate_rnd+full_chroma_int`
(`tests/test_metrics.py`); ffmpeg's default `-pix_fmt rgb24` path converts with other rounding and
gives other PSNR-RGB values. One fixed choice keeps RGB metrics comparable between the neural codec
and the ffmpeg baselines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.metrics.psnr import _check_frame, psnr

# (Kr, Kb) luma coefficients of each matrix (ITU-R BT.601 and BT.709).
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
}


def _coefficients(matrix: str) -> tuple[float, float, float]:
    try:
        kr, kb = MATRICES[matrix]
    except (KeyError, TypeError):
        raise InputError(f"unknown colour matrix {matrix!r}; expected one of {sorted(MATRICES)}") from None
    return kr, kb, 1.0 - kr - kb


def yuv_to_rgb(frame: Any, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """Convert an 8-bit YUV420 frame to a float64 HxWx3 RGB array in [0, 255] (clipped, not rounded).

    ``full_range=False`` reads limited ("TV") range: Y 16..235, U/V 16..240 centred on 128.
    """
    kr, kb, kg = _coefficients(matrix)
    _check_frame(frame, "yuv_to_rgb")
    y = np.asarray(frame.y, dtype=np.float64)
    h, w = y.shape
    u = np.asarray(frame.u, dtype=np.float64)
    v = np.asarray(frame.v, dtype=np.float64)
    # Nearest-neighbour chroma upsampling (crop handles odd luma sizes).
    u = u.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    v = v.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    if full_range:
        yn, cb, cr = y / 255.0, (u - 128.0) / 255.0, (v - 128.0) / 255.0
    else:
        yn, cb, cr = (y - 16.0) / 219.0, (u - 128.0) / 224.0, (v - 128.0) / 224.0
    r = yn + 2.0 * (1.0 - kr) * cr
    b = yn + 2.0 * (1.0 - kb) * cb
    g = (yn - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(rgb, 0.0, 255.0, out=rgb)


def yuv_to_rgb8(frame: Any, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """``yuv_to_rgb`` rounded to the nearest integer as uint8 (what an RGB image file would hold)."""
    return np.rint(yuv_to_rgb(frame, matrix, full_range)).astype(np.uint8)


def psnr_rgb(ref: Any, dist: Any, matrix: str = "bt601", full_range: bool = False) -> float:
    """PSNR over R, G and B together (one MSE over all 3 channels) of the uint8-rounded RGB frames."""
    return psnr(yuv_to_rgb8(ref, matrix, full_range), yuv_to_rgb8(dist, matrix, full_range))
