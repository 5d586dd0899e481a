"""Quality and rate metrics (numpy/scipy only, shared by the neural codec and the ffmpeg baselines)."""

from mobilecodec.metrics.bd import bd_psnr, bd_rate
from mobilecodec.metrics.color import MATRICES, psnr_rgb, yuv_to_rgb, yuv_to_rgb8
from mobilecodec.metrics.msssim import ms_ssim, ms_ssim_rgb, ms_ssim_scales
from mobilecodec.metrics.psnr import bpp, mse, psnr, psnr_from_mse, psnr_samples, psnr_yuv

__all__ = [
    "MATRICES",
    "bd_psnr",
    "bd_rate",
    "bpp",
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
