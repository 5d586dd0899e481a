"""Quality and rate metrics (numpy/scipy only, shared by the neural codec and the ffmpeg baselines)."""

from mobilecodec.metrics.bd import bd_psnr, bd_rate
from mobilecodec.metrics.color import MATRICES, psnr_rgb, yuv_to_rgb, yuv_to_rgb8
from mobilecodec.metrics.frames import PSNR_CAP_DB, frame_metrics, mean_metrics, mean_psnr
from mobilecodec.metrics.msssim import check_measurable, ms_ssim, ms_ssim_rgb, ms_ssim_scales
from mobilecodec.metrics.psnr import bpp, mse, psnr, psnr_from_mse, psnr_samples, psnr_yuv

__all__ = [
    "MATRICES",
    "PSNR_CAP_DB",
    "bd_psnr",
    "bd_rate",
    "bpp",
    "check_measurable",
    "frame_metrics",
    "mean_metrics",
    "mean_psnr",
    "ms_ssim",
    "ms_ssim_rgb",
    "ms_ssim_scales",
    "mse",
    "psnr",
    "psnr_from_mse",
    "psnr_samples",
    "psnr_rgb",
    "psnr_yuv",
    "yuv_to_rgb",
    "yuv_to_rgb8",
]
