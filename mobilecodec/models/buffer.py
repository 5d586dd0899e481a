"""The recurrent buffer (HyTIP): one explicit object of named tensors passed into and returned
from every P-frame step. No state hides inside modules.

- explicit: previous decoded frame (6 x H/2 x W/2) and flow (2 x H/B x W/B);
- implicit: learned motion features (C_m x H/B x W/B) and residual features (C_r x H/2 x W/2);
- hybrid:   both.
With warp mode `none` there is no flow and no motion feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mobilecodec.models.configs import CodecConfig
from mobilecodec.models.yuv import uint8_levels


#: The block flow is stored in int16 at 1/FLOW_SCALE luma pixel (range +-128 px).
FLOW_SCALE = 256.0
#: Storage type of each buffered tensor: what crosses from one frame to the next, on every backend.
STORAGE_DTYPES = {"frame": "uint8", "flow": "int16", "motion_feat": "float16", "residual_feat": "float16"}


def snap_to_storage(name: str, t: torch.Tensor) -> torch.Tensor:
    """`t` rounded to the grid of its storage type (STORAGE_DTYPES), as float32.

    Every value carried from one frame to the next, and the flow the warp uses, goes through here
    on every backend: two backends whose float outputs differ by rounding noise then carry and
    warp with identical values (unless a difference straddles a grid step), instead of
    integrating the noise over the GOP through the recurrent motion predictor. In training the
    gradient passes straight through."""
    dtype = STORAGE_DTYPES[name]
    if dtype == "uint8":
        q = uint8_levels(t)
    elif dtype == "int16":
        q = torch.clamp(torch.round(t * FLOW_SCALE), -32768.0, 32767.0) / FLOW_SCALE
    else:
        q = t.to(torch.float16).to(t.dtype)
    return t + (q - t).detach() if t.requires_grad else q


@dataclass(frozen=True)
class BufferEntry:
    """One buffered tensor: name, channels and its size as a fraction of the luma frame."""

    name: str
    channels: int
    stride: int  # spatial down-sampling relative to luma (2 for packed YUV, B for block flow)

    def shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        return (1, self.channels, height // self.stride, width // self.stride)

    @property
    def full_res_maps(self) -> float:
        """Size in full-resolution feature maps, as HyTIP counts it (a YUV420 frame is 1.5)."""
        return self.channels / (self.stride * self.stride)


def buffer_layout(cfg: CodecConfig) -> list[BufferEntry]:
    """The buffer entries of `cfg`, in their fixed order (also the order of graph I/O)."""
    b = cfg.warp.block_size
    explicit = cfg.buffering in ("explicit", "hybrid")
    implicit = cfg.buffering in ("implicit", "hybrid")
    entries = []
    if explicit:
        entries.append(BufferEntry("frame", 6, 2))
        if cfg.uses_motion:
            entries.append(BufferEntry("flow", 2, b))
    if implicit:
        if cfg.uses_motion:
            entries.append(BufferEntry("motion_feat", cfg.implicit_motion_channels, b))
        entries.append(BufferEntry("residual_feat", cfg.implicit_residual_channels, 2))
    return entries


class Buffer:
    """Named tensors carried from one frame to the next, in `buffer_layout` order."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def detach(self) -> "Buffer":
        return Buffer({k: v.detach() for k, v in self.tensors.items()})

    def nbytes(self, bytes_per_element: int = 4) -> int:
        return sum(t.numel() for t in self.tensors.values()) * bytes_per_element

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.tensors.items())
        return f"Buffer({inner})"
