"""Hyper-analysis (latent /16 -> hyper-latent /64) and hyper-synthesis (hyper-latent -> mean and
scale-table index of every latent element).

The hyper-synthesis is a plain Sequential of Conv/ConvTranspose and bounded ReLUs so that
`mobilecodec.entropy.int_hyper.IntegerHyperSynthesis` can run it in exact integer arithmetic on
the host: entropy parameters must be bit-identical on every backend (DESIGN.md).
"""

from __future__ import annotations

from torch import nn

from mobilecodec.models.configs import HyperConfig
from mobilecodec.models.layers import BoundedReLU, conv, deconv


class HyperAnalysis(nn.Sequential):
    """y (latent, /16) -> z (hyper-latent, /64)."""

    def __init__(self, latent: int, cfg: HyperConfig) -> None:
        super().__init__(
            conv(latent, cfg.channels, 3), nn.ReLU(),
            conv(cfg.channels, cfg.channels, 5, stride=2), nn.ReLU(),
            conv(cfg.channels, cfg.latent, 5, stride=2),
        )


class HyperSynthesis(nn.Sequential):
    """z_hat (/64) -> (N, 2*latent, /16): channels [0, latent) are means, [latent, 2*latent) the
    continuous scale-table index."""

    def __init__(self, latent: int, cfg: HyperConfig) -> None:
        super().__init__(
            deconv(cfg.latent, cfg.channels, 5, stride=2), BoundedReLU(cfg.act_max),
            deconv(cfg.channels, cfg.channels, 5, stride=2), BoundedReLU(cfg.act_max),
            conv(cfg.channels, 2 * latent, 3),
        )
        self.latent = latent
