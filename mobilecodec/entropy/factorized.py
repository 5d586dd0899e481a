"""Factorized prior of Balle et al. 2018 (CompressAI's EntropyBottleneck) for the hyper-latents.

Each channel has a learned univariate density (a small monotone network giving its CDF). Training
adds uniform noise; eval mode rounds around 0 (no learned medians, so no aux loss is needed).
`update()` turns the learned density into per-channel integer CDFs over the smallest support
[lo_c, hi_c] (possibly asymmetric, at least [-1, 1], at most [-max_support, max_support]) that
leaves at most `tail_mass` outside; the tails are folded into the end symbols. The tables are
int32 buffers, so they travel in checkpoints and encoder and decoder use identical ones.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mobilecodec.entropy.cdf_tables import CdfTableModule, pack_cdf_rows
from mobilecodec.entropy.coder import (CodingTables, RangeDecoder, RangeEncoder, finite_symbols, pmf_to_cdf,
                                       quantize_pmf)
from mobilecodec.entropy.gaussian import lower_bound
from mobilecodec.errors import CheckpointError

class FactorizedPrior(CdfTableModule):
    """Per-channel learned density over integer hyper-latents z (N, C, H, W) or (C, H, W)."""

    table_name = "factorized-prior"

    def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0,
                 precision: int = 16, tail_mass: float = 1e-9, likelihood_bound: float = 1e-9,
                 max_support: int = 128) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if not 8 <= precision <= 16:
            raise ValueError(f"precision must be in [8, 16] bits, got {precision}")
        if max_support < 1 or 2 * max_support + 1 > (1 << precision):
            raise ValueError(f"max_support {max_support} does not fit {precision}-bit tables")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.precision = precision
        self.tail_mass = tail_mass
        self.likelihood_bound = likelihood_bound
        self.max_support = max_support

        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        # Empty until update(): coding without tables is an error.
        self.register_buffer("cdfs", torch.zeros(0, 0, dtype=torch.int32))
        self.register_buffer("cdf_lengths", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("offsets", torch.zeros(0, dtype=torch.int32))

    # --- density ----------------------------------------------------------------------------

    def _logits_cumulative(self, x: Tensor) -> Tensor:
        """Logit of the CDF at x (C, 1, M), in x's dtype."""
        logits = x
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix.to(x.dtype)), logits) + self.biases[i].to(x.dtype)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(logits)
        return logits

    def _likelihood_cm(self, values: Tensor) -> Tensor:
        """P(bin of width 1 around each value) for values shaped (C, 1, M)."""
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, z_hat: Tensor) -> Tensor:
        """Likelihood of each (quantized or noisy) value of z_hat (N, C, H, W), bounded below."""
        if z_hat.dim() != 4 or z_hat.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(z_hat.shape)}")
        n, c, h, w = z_hat.shape
        v = z_hat.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lik = self._likelihood_cm(v).reshape(c, n, h, w).permute(1, 0, 2, 3)
        return lower_bound(lik, self.likelihood_bound)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(z_hat, likelihoods): uniform noise in training mode, rounding (around 0) in eval mode;
        rounding passes gradients straight through when they are recorded (QAT `--ste` trains the
        hyper-analysis in eval mode), with the same values."""
        if self.training:
            z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        elif torch.is_grad_enabled() and z.requires_grad:
            z_hat = z + (torch.round(z) - z).detach()
        else:
            z_hat = torch.round(z)
        return z_hat, self.likelihood(z_hat)

    # --- tables -----------------------------------------------------------------------------

    @torch.no_grad()
    def update(self) -> None:
        """Build the per-channel integer CDF tables from the current density (float64)."""
        r = self.max_support
        grid = torch.arange(-r, r + 1, dtype=torch.float64, device=self.matrices[0].device)
        edges = (grid + 0.5).expand(self.channels, 1, -1)  # upper edge of each symbol's bin
        logit_hi = self._logits_cumulative(edges)[:, 0, :].cpu().numpy()  # logit CDF(v + .5)
        with np.errstate(over="ignore"):  # exp overflows to inf far in the tails: the mass is then exactly 0
            below = 1.0 / (1.0 + np.exp(-logit_hi))  # mass below v + .5
            above = 1.0 / (1.0 + np.exp(logit_hi))  # mass above v + .5 (accurate in the upper tail)
        lik = self._likelihood_cm(grid.expand(self.channels, 1, -1))[:, 0, :].cpu().numpy()
        half = self.tail_mass / 2.0
        rows, offsets = [], []
        for c in range(self.channels):
            # lo: largest v <= -1 with mass below v - .5 (= below[v - 1]) <= half.
            lo = -r
            for v in range(-1, -r - 1, -1):
                if v - 1 >= -r and below[c, v - 1 + r] <= half:
                    lo = v
                    break
            hi = r
            for v in range(1, r + 1):
                if above[c, v + r] <= half:
                    hi = v
                    break
            pmf = lik[c, lo + r: hi + r + 1].astype(np.float64)
            pmf[0] = float(below[c, lo + r])  # tail folded into the end symbols
            pmf[-1] = float(above[c, hi - 1 + r])
            rows.append(pmf_to_cdf(quantize_pmf(pmf, self.precision)))
            offsets.append(lo)
        cdfs, lengths = pack_cdf_rows(rows, self.precision)
        dev = self.cdfs.device
        self.cdfs = torch.from_numpy(cdfs).to(dev)
        self.cdf_lengths = torch.from_numpy(lengths).to(dev)
        self.offsets = torch.tensor(offsets, dtype=torch.int32, device=dev)

    def coding_tables(self) -> CodingTables:
        """Validated tables and constriction models, built once per state of the buffers."""
        if self.cdfs.numel() == 0:
            raise RuntimeError("FactorizedPrior has no CDF tables: call update() before coding")
        return super().coding_tables()

    def _build_coding(self) -> CodingTables:
        if self.cdfs.shape[0] != self.channels or tuple(self.cdf_lengths.shape) != (self.channels,) \
                or tuple(self.offsets.shape) != (self.channels,):
            raise CheckpointError(f"factorized-prior tables do not match {self.channels} channels")
        return super()._build_coding()

    # --- coding -----------------------------------------------------------------------------

    def _as_nchw(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim == 3:
            z = z[None]
        if z.ndim != 4 or z.shape[1] != self.channels:
            raise ValueError(f"expected (C, H, W) or (N, C, H, W) with C={self.channels}, got {z.shape}")
        return z

    def clamp_symbols(self, z_int: np.ndarray) -> np.ndarray:
        """Clip each channel's symbols to its table's support (same shape, int32; give rounded
        floats rather than int32, as `GaussianConditional.clamp_symbols`)."""
        t = self.coding_tables()
        offsets, lengths = t.offsets, t.lengths
        z = finite_symbols(z_int)
        z4 = self._as_nchw(z)
        low = offsets.reshape(1, -1, 1, 1)
        high = (offsets + lengths - 2).reshape(1, -1, 1, 1)
        return np.clip(z4, low, high).astype(np.int32).reshape(z.shape)

    def encode(self, enc: RangeEncoder, z_int: np.ndarray) -> None:
        """Code integer hyper-latents channel by channel (one coder call per channel)."""
        t = self.coding_tables()
        pmfs, offsets = t.pmfs, t.offsets
        z = self._as_nchw(z_int).astype(np.int64)
        for c in range(self.channels):
            seg = z[:, c].reshape(-1) - offsets[c]
            if seg.size and (seg.min() < 0 or seg.max() >= len(pmfs[c])):
                raise ValueError(f"hyper-latent outside the support of channel {c}; call clamp_symbols first")
            enc.encode(seg, pmfs[c], self.precision, model=t.model(c))

    def decode(self, dec: RangeDecoder, shape: Sequence[int]) -> np.ndarray:
        """Decode hyper-latents of `shape` ((C, H, W) or (N, C, H, W)) as int32, in encode order."""
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (3, 4) or shape[-3] != self.channels or min(shape) < 0:
            raise ValueError(f"expected (C, H, W) or (N, C, H, W) with C={self.channels}, got {shape}")
        t = self.coding_tables()
        n = 1 if len(shape) == 3 else shape[0]
        h, w = shape[-2:]
        out = np.empty((n, self.channels, h, w), dtype=np.int32)
        for c in range(self.channels):
            out[:, c] = (dec.decode(n * h * w, t.pmfs[c], self.precision, model=t.model(c))
                         + t.offsets[c]).reshape(n, h, w)
        return out.reshape(shape)

    def bits(self, z_int: np.ndarray) -> float:
        """Exact information content -sum log2(pmf_int / 2**precision) of z_int under the tables."""
        t = self.coding_tables()
        z = self._as_nchw(z_int).astype(np.int64)
        total = 0.0
        for c in range(self.channels):
            pos = z[:, c].reshape(-1) - t.offsets[c]
            if pos.size and (pos.min() < 0 or pos.max() >= len(t.pmfs[c])):
                raise ValueError(f"hyper-latent outside the support of channel {c}; call clamp_symbols first")
            total += float(np.sum(t.cost(c)[pos]))
        return total

