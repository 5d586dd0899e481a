"""YUV420 frames <-> packed network tensors.

The codec works on YUV420 natively (as MobileNVC does): the luma plane is packed by 2x2
space-to-depth (``pixel_unshuffle``, torch's channel order) into 4 channels at H/2 x W/2 and
concatenated with U and V, giving a float tensor ``(N, 6, H/2, W/2)`` with values in [0, 1].
torch is imported lazily so that config code importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "frame_to_tensor",
    "frames_to_tensor",
    "pack_yuv",
    "quantize_to_uint8_levels",
    "read_packed_frames",
    "tensor_to_frame",
    "tensor_to_frames",
    "uint8_levels",
    "unpack_yuv",
]


def _check_planes(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (y, u, v) of a YUVFrame-like object after checking dtype and yuv420 shapes."""
    try:
        y, u, v = frame.y, frame.u, frame.v
    except AttributeError as exc:
        raise InputError(f"expected a YUVFrame with .y .u .v planes, got {type(frame).__name__}") from exc
    for name, plane in (("y", y), ("u", u), ("v", v)):
        if not isinstance(plane, np.ndarray) or plane.dtype != np.uint8 or plane.ndim != 2:
            raise InputError(f"plane {name} must be a 2-D uint8 numpy array")
    h, w = y.shape
    if h <= 0 or w <= 0 or h % 2 or w % 2:
        raise InputError(f"luma plane must have a positive even size for yuv420, got {w}x{h} (WxH)")
    if u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
        raise InputError(f"chroma planes must be {h // 2}x{w // 2} (HxW) for a {w}x{h} frame, "
                         f"got u {u.shape[0]}x{u.shape[1]}, v {v.shape[0]}x{v.shape[1]}")
    return y, u, v


def pack_yuv(y: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Pack luma ``(N,1,H,W)`` and chroma ``(N,2,H/2,W/2)`` into ``(N,6,H/2,W/2)`` (space-to-depth)."""
    import torch
    import torch.nn.functional as F

    if y.dim() != 4 or y.shape[1] != 1:
        raise InputError(f"luma tensor must be (N,1,H,W), got {tuple(y.shape)}")
    n, _, h, w = y.shape
    if h % 2 or w % 2:
        raise InputError(f"luma tensor must have an even size, got {h}x{w} (HxW)")
    if uv.dim() != 4 or tuple(uv.shape) != (n, 2, h // 2, w // 2):
        raise InputError(f"chroma tensor must be {(n, 2, h // 2, w // 2)}, got {tuple(uv.shape)}")
    return torch.cat([F.pixel_unshuffle(y, 2), uv], dim=1)


def unpack_yuv(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_yuv`: ``(N,6,h,w)`` -> luma ``(N,1,2h,2w)``, chroma ``(N,2,h,w)``."""
    import torch.nn.functional as F

    if t.dim() != 4 or t.shape[1] != 6:
        raise InputError(f"packed YUV tensor must be (N,6,H/2,W/2), got {tuple(t.shape)}")
    return F.pixel_shuffle(t[:, :4], 2), t[:, 4:]


def frames_to_tensor(frames: Sequence[Any], device: Any = None, dtype: Any = None) -> torch.Tensor:
    """Stack YUVFrames of one size into a packed float tensor ``(N,6,H/2,W/2)`` in [0, 1]."""
    import torch

    if len(frames) == 0:
        raise InputError("frames_to_tensor needs at least one frame")
    planes = [_check_planes(f) for f in frames]
    shape = planes[0][0].shape
    for i, (y, _, _) in enumerate(planes):
        if y.shape != shape:
            raise InputError(f"frame {i} is {y.shape[1]}x{y.shape[0]}, expected {shape[1]}x{shape[0]} like frame 0")
    dtype = torch.float32 if dtype is None else dtype
    y = torch.from_numpy(np.stack([p[0] for p in planes])[:, None])
    uv = torch.from_numpy(np.stack([np.stack([p[1], p[2]]) for p in planes]))
    y = y.to(device=device, dtype=dtype) / 255.0
    uv = uv.to(device=device, dtype=dtype) / 255.0
    return pack_yuv(y, uv)


def frame_to_tensor(frame: Any, device: Any = None, dtype: Any = None) -> torch.Tensor:
    """Convert one YUVFrame (uint8 planes) into a packed float tensor ``(1,6,H/2,W/2)`` in [0, 1]."""
    return frames_to_tensor([frame], device=device, dtype=dtype)


def read_packed_frames(path: Any, count: int) -> list[torch.Tensor]:
    """The first `count` frames of a video file as packed tensors ``(1,6,H/2,W/2)``, each padded to
    a multiple of 64 (what the networks take; `mobilecodec.io.read_frames` reads them)."""
    from mobilecodec.io import pad_frame, read_frames

    return [frame_to_tensor(pad_frame(f)) for f in read_frames(path, count)]


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Round to nearest, clamp to 0..255 and return a uint8 numpy array (on the host)."""
    import torch

    return torch.clamp(torch.round(t.detach().float() * 255.0), 0, 255).to(torch.uint8).cpu().numpy()


def _make_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> Any:
    try:
        from mobilecodec.io import YUVFrame
    except ImportError:  # io package not available: a plain (y, u, v) tuple is duck-compatible
        return (y, u, v)
    return YUVFrame(y, u, v)


def tensor_to_frames(t: torch.Tensor) -> list[Any]:
    """Convert a packed tensor ``(N,6,H/2,W/2)`` into N uint8 YUVFrames (rounded, clamped)."""
    y, uv = unpack_yuv(t)
    y8, uv8 = to_uint8(y), to_uint8(uv)
    return [_make_frame(np.ascontiguousarray(y8[i, 0]), np.ascontiguousarray(uv8[i, 0]),
                        np.ascontiguousarray(uv8[i, 1])) for i in range(y8.shape[0])]


def tensor_to_frame(t: torch.Tensor) -> Any:
    """Convert a packed tensor ``(1,6,H/2,W/2)`` or ``(6,H/2,W/2)`` into one uint8 YUVFrame."""
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1:
        raise InputError(f"tensor_to_frame needs one frame (1,6,H/2,W/2), got {tuple(t.shape)}; "
                         "use tensor_to_frames for a batch")
    return tensor_to_frames(t)[0]


def uint8_levels(t: torch.Tensor) -> torch.Tensor:
    """Exactly ``clamp(round(t*255), 0, 255)/255``: the decoder's 8-bit grid (the buffered frame,
    the output), with no straight-through arithmetic that could leave it."""
    import torch

    return torch.clamp(torch.round(t * 255.0), 0.0, 255.0) / 255.0


def quantize_to_uint8_levels(t: torch.Tensor) -> torch.Tensor:
    """Snap values to the 8-bit grid ``clamp(round(t*255), 0, 255)/255``.

    The gradient is passed straight through (identity), so training sees the decoder's exact
    8-bit reconstruction in the forward pass without a zero gradient from ``round``.
    """
    return t + (uint8_levels(t) - t).detach()
