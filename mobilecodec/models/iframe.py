"""I-frame autoencoder stages: analysis (packed YUV /2 -> latent /16) and synthesis (back)."""

from __future__ import annotations

import torch
from torch import nn

from mobilecodec.models.configs import AEConfig
from mobilecodec.models.layers import conv, down_stages, up_stages

YUV_CHANNELS = 6  # 4 packed luma + U + V at H/2 x W/2


class IFrameAnalysis(nn.Module):
    """x (N, 6, H/2, W/2) -> y (N, latent, H/16, W/16)."""

    def __init__(self, cfg: AEConfig) -> None:
        super().__init__()
        layers, c = down_stages(YUV_CHANNELS, cfg.enc_channels, cfg.enc_extra, cfg.kernel)
        self.body = nn.Sequential(*layers)
        self.out = conv(c, cfg.latent, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class IFrameSynthesis(nn.Module):
    """y_hat -> (x_hat (N, 6, H/2, W/2), features (N, feat_channels, H/2, W/2)).

    The features start the implicit residual buffer (hybrid/implicit buffering); with explicit
    buffering `feat_channels` is 0 and an empty tensor is returned, so the signature is fixed."""

    def __init__(self, cfg: AEConfig, feat_channels: int = 0) -> None:
        super().__init__()
        layers, c = up_stages(cfg.latent, cfg.dec_channels, cfg.dec_extra, cfg.kernel)
        for _ in range(cfg.out_extra):
            layers += [conv(c, c, 3), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = conv(c, YUV_CHANNELS + feat_channels, 3)
        self.feat_channels = feat_channels

    def forward(self, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(self.body(y_hat))
        return torch.clamp(out[:, :YUV_CHANNELS], 0.0, 1.0), out[:, YUV_CHANNELS:]
