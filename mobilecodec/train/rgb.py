"""RGB to YUV420 conversion of training images (Vimeo-90K septuplets, still images)."""

from __future__ import annotations

import numpy as np

from mobilecodec.errors import InputError

BT601 = (0.299, 0.114)  # (Kr, Kb)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert uint8 RGB (H, W, 3) to BT.601 limited-range YUV420 planes (Y: HxW, U/V: H/2xW/2).

    Odd sizes are cropped to even; chroma is the mean of each 2x2 block (co-sited with the block
    centre), the inverse of the nearest-neighbour upsampling `mobilecodec.metrics.yuv_to_rgb` uses.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    if h == 0 or w == 0:
        raise InputError(f"image too small for YUV420: {rgb.shape[1]}x{rgb.shape[0]}")
    x = rgb[:h, :w].astype(np.float64) / 255.0
    kr, kb = BT601
    kg = 1.0 - kr - kb
    yn = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    cb = (x[..., 2] - yn) / (2.0 * (1.0 - kb))
    cr = (x[..., 0] - yn) / (2.0 * (1.0 - kr))

    def sub(p: np.ndarray) -> np.ndarray:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def u8(p: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(p), 0, 255).astype(np.uint8)

    return u8(16.0 + 219.0 * yn), u8(128.0 + 224.0 * sub(cb)), u8(128.0 + 224.0 * sub(cr))
