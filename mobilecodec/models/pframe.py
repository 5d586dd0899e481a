"""P-frame stages: motion predictor, motion AE, residual predictor and residual AE.

Each stage is its own nn.Module taking and returning tensors (aimet traces them; export cuts the
graph at these borders). The warp between motion synthesis and residual coding runs outside the
networks (host / warping core), see `mobilecodec.models.warp`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mobilecodec.models.configs import AEConfig, PredictorConfig
from mobilecodec.models.iframe import YUV_CHANNELS
from mobilecodec.models.layers import conv, deconv, down_stages, up_stages

LATENT_STRIDE = 16  # latents live at H/16 x W/16 (luma pixels)


def _stages_to(block: int) -> int:
    """Number of stride-2 steps from the packed resolution (/2) to block resolution (/block)."""
    return int(math.log2(block)) - 1


class MotionPredictor(nn.Module):
    """Predicts this frame's block flow from the motion buffer (previous flow and/or features).

    Input (N, in_channels, H/B, W/B); output flow (N, 2, H/B, W/B) in luma pixels. With a flow
    in the buffer (explicit/hybrid) the network predicts a correction of the previous flow."""

    def __init__(self, cfg: PredictorConfig, in_channels: int, has_flow: bool) -> None:
        super().__init__()
        c, cc = cfg.channels, cfg.coarse_channels
        fine: list[nn.Module] = [conv(in_channels, c, 3), nn.ReLU()]
        for _ in range(cfg.layers - 1):
            fine += [conv(c, c, 3), nn.ReLU()]
        self.fine = nn.Sequential(*fine)
        self.coarse = nn.Sequential(conv(c, cc, 3, stride=2), nn.ReLU(), conv(cc, cc, 3), nn.ReLU(),
                                    deconv(cc, c, 3, stride=2), nn.ReLU())
        self.out = conv(2 * c, 2, 3)
        self.has_flow = has_flow

    def forward(self, motion_state: torch.Tensor) -> torch.Tensor:
        f = self.fine(motion_state)
        delta = self.out(torch.cat([f, self.coarse(f)], dim=1))
        return motion_state[:, :2] + delta if self.has_flow else delta


class MotionAnalysis(nn.Module):
    """(x_t, reference, predicted flow) -> motion latent (N, latent, H/16, W/16)."""

    def __init__(self, cfg: AEConfig, ref_channels: int, block: int) -> None:
        super().__init__()
        n_fine = _stages_to(block)
        if len(cfg.enc_channels) != _stages_to(LATENT_STRIDE):
            raise ValueError("motion encoder needs one stage per stride-2 step from /2 to /16")
        layers, c = down_stages(YUV_CHANNELS + ref_channels, cfg.enc_channels[:n_fine],
                                cfg.enc_extra[:n_fine], cfg.kernel)
        self.fine = nn.Sequential(*layers)
        layers, c = down_stages(c + 2, cfg.enc_channels[n_fine:], cfg.enc_extra[n_fine:], cfg.kernel)
        self.coarse = nn.Sequential(*layers)
        self.out = conv(c, cfg.latent, 3)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, flow_pred: torch.Tensor) -> torch.Tensor:
        f = self.fine(torch.cat([x, ref], dim=1))
        return self.out(self.coarse(torch.cat([f, flow_pred], dim=1)))


class MotionSynthesis(nn.Module):
    """(motion latent, predicted flow) -> (flow (N, 2, H/B, W/B), motion features for the buffer)."""

    def __init__(self, cfg: AEConfig, block: int, feat_channels: int) -> None:
        super().__init__()
        n_up = int(math.log2(LATENT_STRIDE // block))
        if len(cfg.dec_channels) != n_up:
            raise ValueError(f"block size {block} needs {n_up} motion decoder stage(s), "
                             f"config has {len(cfg.dec_channels)}")
        layers, c = up_stages(cfg.latent, cfg.dec_channels, cfg.dec_extra, cfg.kernel)
        if n_up == 0:
            layers, c = [conv(cfg.latent, cfg.latent, 3), nn.ReLU()], cfg.latent
        self.body = nn.Sequential(*layers)
        self.out = conv(c + 2, 2 + feat_channels, 3)

    def forward(self, m_hat: torch.Tensor, flow_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(torch.cat([self.body(m_hat), flow_pred], dim=1))
        return flow_pred + out[:, :2], out[:, 2:]


class ResidualPredictor(nn.Module):
    """Implicit buffering only: the warped feature buffer -> a frame prediction (Table 6 'Residual pred.')."""

    def __init__(self, feat_channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(conv(feat_channels, hidden, 3), nn.ReLU(), conv(hidden, YUV_CHANNELS, 3))

    def forward(self, warped: torch.Tensor) -> torch.Tensor:
        return self.net(warped)


class ResidualAnalysis(nn.Module):
    """(x_t, prediction[, condition]) -> residual latent. Codes x_t - prediction; with conditioning
    the warped reference (frame and/or features) is concatenated."""

    def __init__(self, cfg: AEConfig, cond_channels: int) -> None:
        super().__init__()
        layers, c = down_stages(YUV_CHANNELS + cond_channels, cfg.enc_channels, cfg.enc_extra, cfg.kernel)
        self.body = nn.Sequential(*layers)
        self.out = conv(c, cfg.latent, 3)
        self.conditional = cond_channels > 0

    def forward(self, x: torch.Tensor, pred: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        # a fixed signature, not *cond: torch.fx (aimet's model preparer) cannot trace varargs
        inp = torch.cat([x - pred, cond], dim=1) if self.conditional else x - pred
        return self.out(self.body(inp))


class ResidualSynthesis(nn.Module):
    """(residual latent, prediction[, condition]) -> (x_hat clamped to [0, 1], residual features)."""

    def __init__(self, cfg: AEConfig, cond_channels: int, feat_channels: int) -> None:
        super().__init__()
        layers, c = up_stages(cfg.latent, cfg.dec_channels, cfg.dec_extra, cfg.kernel)
        for _ in range(cfg.out_extra):
            layers += [conv(c, c, 3), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = conv(c + cond_channels, YUV_CHANNELS + feat_channels, 3)
        self.conditional = cond_channels > 0

    def forward(self, r_hat: torch.Tensor, pred: torch.Tensor,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(r_hat)
        out = self.out(torch.cat([f, cond], dim=1) if self.conditional else f)
        x_hat = torch.clamp(pred + out[:, :YUV_CHANNELS], 0.0, 1.0)
        return x_hat, out[:, YUV_CHANNELS:]
