"""The per-frame quality of a decode and its mean over a sequence, one definition for the neural codec,
the ffmpeg baselines, the int8 check and the demo."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from mobilecodec.metrics.color import psnr_rgb
from mobilecodec.metrics.msssim import ms_ssim_rgb
from mobilecodec.metrics.psnr import PSNR_CAP_DB, capped_psnr, frame_psnr, psnr_yuv
from mobilecodec.rdresults import QUALITY_METRICS


def frame_metrics(ref: Any, dist: Any, matrix: str) -> dict[str, float]:
    """PSNR Y/U/V/YUV, PSNR-RGB and MS-SSIM-RGB (`rdresults.QUALITY_METRICS`) of one decoded frame
    against its source (a PSNR is inf where the planes are identical)."""
    p = psnr_yuv(ref, dist)
    return {"psnr_y": p["y"], "psnr_u": p["u"], "psnr_v": p["v"], "psnr_yuv": p["yuv"],
            "psnr_rgb": psnr_rgb(ref, dist, matrix=matrix), "ms_ssim_rgb": ms_ssim_rgb(ref, dist, matrix=matrix)}


def mean_psnr(values: Iterable[float]) -> float:
    """The mean of per-frame PSNRs (dB), each capped at `PSNR_CAP_DB`."""
    return float(np.mean([capped_psnr(v) for v in values]))


def mean_metrics(per_frame: Sequence[dict[str, Any]], keys: Sequence[str] = QUALITY_METRICS) -> dict[str, float]:
    """The sequence means of `keys` over per-frame results: PSNRs by `mean_psnr`, others plainly. A
    frame's PSNR-YUV counts as the 6:1:1 weighting of its planes capped one by one, so that one
    identical plane (a grey clip's chroma) caps that plane, not the whole frame (grey carphone
    through x264: 100 dB at every CRF where its own planes give 52.9 dB)."""
    out = {}
    for k in keys:
        if k.startswith("psnr"):
            out[k] = mean_psnr(frame_psnr(f, k) for f in per_frame)
        else:
            out[k] = float(np.mean([f[k] for f in per_frame]))
    return out
