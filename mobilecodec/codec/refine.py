"""Sender-side latent refinement: the encoder searches for latents that code the frame at a lower
rate-distortion cost than the analysis transform's output, as classical encoders search modes.

The decoder, the stream format and the entropy parameters are unchanged: the hyper-latent z is
taken from the analysis as usual (so the exact-integer hyper-synthesis gives the same means and
scale indices), and only the latent y coded under them is optimized. The search is stochastic
Gumbel annealing (SGA; Yang, Bamler and Mandt, "Improving Inference for Neural Image Compression",
NeurIPS 2020): y moves by Adam on D + w R, where y's rounding is relaxed to a two-way Gumbel-softmax
between floor and ceil whose temperature anneals towards hard rounding. Every `check_every` steps
the candidate is scored exactly (rounded symbols, the coder's integer tables, the uint8 frame the
decoder outputs), and the best candidate, the analysis output included, is the one coded: for the
frame at hand the refined latent never costs more than the plain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mobilecodec.errors import InputError
from mobilecodec.models.yuv import uint8_levels


@dataclass(frozen=True)
class RefineOptions:
    """How the encoder refines latents. `beta` is the rate weight the model was trained with (the
    I-frame cost is MSE + beta * bpp, a P-frame's MSE + p_rate_factor * beta * bpp, as in
    `train.losses.GopLoss`); `steps` SGA steps per latent, learning rate `lr` decaying linearly."""

    beta: float
    steps: int = 100
    lr: float = 0.02
    p_rate_factor: float = 2.0
    t_start: float = 0.5    # Gumbel-softmax temperature at the first step ...
    t_end: float = 0.05     # ... annealed geometrically to this one at the last
    check_every: int = 10
    seed: int = 0
    motion: bool = True     # also refine the motion latent, scored by the whole P-step

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"refinement steps must be >= 1, got {self.steps}")
        if not self.beta > 0:
            raise InputError(f"refinement needs the model's positive rate weight beta, got {self.beta}")
        if not self.lr > 0 or self.check_every < 1:
            raise InputError("refinement lr must be > 0 and check_every >= 1")

    @classmethod
    def for_checkpoint(cls, checkpoint: dict, steps: int, where: str = "the checkpoint") -> "RefineOptions":
        """Options at the beta a checkpoint (`read_checkpoint`'s dict) records; InputError without one."""
        beta = checkpoint.get("beta")
        if beta is None:
            raise InputError(f"{where} does not record the beta it was trained with; latent refinement needs it "
                             "(code without it: leave --refine out)")
        return cls(beta=float(beta), steps=steps)


@dataclass
class RefineResult:
    """What one refinement did: exact costs (MSE + w * bpp) before and after, at which step."""

    cost_before: float
    cost_after: float
    best_step: int


Synth = Callable[[Tensor], "tuple[Tensor, Tensor | float]"]


def refine_latent(y0: Tensor, mean: np.ndarray, idx: np.ndarray, gaussian, synth: Synth, x: Tensor,
                  rate_weight: float, opts: RefineOptions, exact_synth: Callable[[Tensor], tuple[Tensor, float]] | None = None,
                  picture: tuple[int, int] | None = None) -> tuple[Tensor, RefineResult]:
    """The latent to code in place of `y0`: minimizes MSE(x, x_hat) + rate_weight * (bits + extra) / pixels,
    where y_hat = mean + symbols, the symbols are coded under the Gaussian tables `idx` (bits) and
    `synth(y_hat)` -> (x_hat (N, 6, H/2, W/2) in [0, 1], extra bits) is differentiable: extra bits
    are what y_hat costs elsewhere (the motion latent: the residual it leaves). `exact_synth` scores a
    candidate the way the coder will code it (default: `synth` without gradients). MSE and pixels are
    the `picture`'s, (height, width) before padding (None: all of x): nobody sees the padding, a third
    of a 176x144 frame's padded 192x192; counting it cost 5-25 % more bits (BD-rate) on two such clips."""
    from mobilecodec.train.losses import yuv_mse  # the training distortion (Y:U:V 6:1:1, PSNR-YUV's)

    ph, pw = (x.shape[-2], x.shape[-1]) if picture is None else (picture[0] // 2, picture[1] // 2)  # packed planes
    pixels = 4 * ph * pw

    def distortion(x_hat: Tensor) -> Tensor:
        return yuv_mse(x_hat[..., :ph, :pw], x[..., :ph, :pw]).mean()

    mean64 = np.asarray(mean, dtype=np.float64)
    mean_t = torch.from_numpy(mean64.astype(np.float32))
    scale = torch.from_numpy(gaussian.table.scales()[idx].astype(np.float32))
    idx_flat = np.asarray(idx).reshape(-1)
    score = exact_synth or synth

    def exact(y: Tensor) -> float:
        sym = gaussian.clamp_symbols(np.rint(y.detach().numpy().astype(np.float64) - mean64), idx)
        bits = gaussian.bits(sym.ravel(), idx_flat)
        with torch.no_grad():
            x_hat, extra = score(torch.from_numpy((sym.astype(np.float64) + mean64).astype(np.float32)))
            mse = float(distortion(uint8_levels(x_hat)))
        return mse + rate_weight * (bits + float(extra)) / pixels

    gen = torch.Generator().manual_seed(opts.seed)
    best_cost = before = exact(y0)
    best, best_step = y0.detach().clone(), 0
    y = y0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=opts.lr)
    with torch.enable_grad():
        for step in range(1, opts.steps + 1):
            temp = opts.t_start * (opts.t_end / opts.t_start) ** (step / opts.steps)
            r = y - mean_t
            low = torch.floor(r).detach()
            frac = (r - low).clamp(1e-4, 1.0 - 1e-4)
            logits = torch.stack([-torch.atanh(frac), -torch.atanh(1.0 - frac)], dim=-1) / temp
            u = torch.rand(logits.shape, generator=gen).clamp(1e-10, 1.0 - 1e-10)
            soft = torch.softmax((logits - torch.log(-torch.log(u))) / temp, dim=-1)[..., 1]
            r_soft = low + soft
            bits = -torch.log2(gaussian.likelihood(r_soft, scale)).sum()
            x_hat, extra = synth(mean_t + r_soft)
            loss = distortion(x_hat) + rate_weight * (bits + extra) / pixels
            (grad,) = torch.autograd.grad(loss, [y])
            y.grad = grad
            opt.step()
            for group in opt.param_groups:
                group["lr"] = opts.lr * (1.0 - step / opts.steps) + 1e-4
            if step % opts.check_every == 0 or step == opts.steps:
                cost = exact(y)
                if cost < best_cost:
                    best_cost, best, best_step = cost, y.detach().clone(), step
    return best, RefineResult(before, best_cost, best_step)
