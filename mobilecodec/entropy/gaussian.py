"""Gaussian conditional entropy model over a fixed scale table (latents of every autoencoder).

Training uses a differentiable likelihood of the quantized residual; coding uses one integer CDF
per table index, built once at construction and stored as int32 buffers, so the tables travel in
checkpoints and are identical at encoder and decoder. Symbols outside an index's support are
clamped by the encoder (`clamp_symbols`), which reconstructs with the clamped values; the tails
beyond the support are folded into the two end symbols of each table.

A table that leaves its other symbols only the minimum (the smallest scale: [1, 65534, 1]) is not
range-coded at all (stream format 4): its support is its likely symbol, 0, which the decoder
writes without reading. Coding it cost 4.4e-5 bits a symbol, but a range-coder step each, and
most latents of a trained model sit there (82 % of a 1080p I-frame latent of `tiny_b0.0064`).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor

from mobilecodec.entropy.cdf_tables import CdfTableModule, pack_cdf_rows
from mobilecodec.entropy.coder import (CodingTables, RangeDecoder, RangeEncoder, finite_symbols, pmf_to_cdf,
                                       quantize_pmf)
from mobilecodec.entropy.scale_table import ScaleTable
from mobilecodec.errors import BitstreamError

#: symbols per call from which decoding puts the groups back with a compiled loop (`compiled`) and
#: the coder dequantizes with one; below it numpy's forms (small frames never pay numba's
#: one-time compilation)
COMPILED_MIN_SYMBOLS = 1 << 16


class _LowerBoundFn(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would push x up (CompressAI's LowerBound)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp_min(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """Differentiable lower bound: forward max(x, bound); gradient not killed when it increases x."""
    return _LowerBoundFn.apply(x, float(bound))


def standard_normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) through erfc, accurate in the lower tail (the only tail the likelihoods evaluate)."""
    return 0.5 * torch.erfc(-x * (2.0 ** -0.5))


def bits_from_likelihood(likelihoods: Tensor) -> Tensor:
    """Total information content -sum(log2 p) of a likelihood tensor (differentiable)."""
    return -torch.log2(likelihoods).sum()


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF in float64 via math.erfc (no scipy at runtime)."""
    return np.vectorize(lambda t: 0.5 * math.erfc(-t / math.sqrt(2.0)), otypes=[np.float64])(x)


def gaussian_table_pmf(scale: float, tail_mass: float) -> tuple[int, np.ndarray]:
    """(K, pmf over [-K, K]) of a zero-mean quantized Gaussian, tails folded into the end symbols."""
    multiplier = -NormalDist().inv_cdf(tail_mass / 2.0)
    k = max(1, int(math.ceil(multiplier * scale)))
    v = np.abs(np.arange(-k, k + 1, dtype=np.float64))
    # Evaluate both bin edges on the negative side, where erfc is accurate (symmetric trick).
    upper = _phi((0.5 - v) / scale)
    lower = _phi((-0.5 - v) / scale)
    pmf = upper - lower
    pmf[0] = pmf[-1] = _phi(np.array([(0.5 - k) / scale]))[0]
    return k, pmf


class GaussianConditional(CdfTableModule):
    """Zero-mean Gaussian over quantized residuals; scale chosen by an integer index into a ScaleTable."""

    table_name = "Gaussian CDF"

    def __init__(self, table: ScaleTable | None = None, precision: int = 16,
                 tail_mass: float = 1e-9, likelihood_bound: float = 1e-9) -> None:
        super().__init__()
        self.table = table or ScaleTable()
        if not 8 <= precision <= 16:
            raise ValueError(f"precision must be in [8, 16] bits, got {precision}")
        self.precision = precision
        self.tail_mass = tail_mass
        self.likelihood_bound = likelihood_bound
        cdfs, lengths, offsets = self._build_tables()
        self.register_buffer("cdfs", torch.from_numpy(cdfs))
        self.register_buffer("cdf_lengths", torch.from_numpy(lengths))
        self.register_buffer("offsets", torch.from_numpy(offsets))

    # --- tables -----------------------------------------------------------------------------

    def _build_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, offsets = [], []
        for s in self.table.scales():
            k, pmf = gaussian_table_pmf(float(s), self.tail_mass)
            rows.append(pmf_to_cdf(quantize_pmf(pmf, self.precision)))
            offsets.append(-k)
        cdfs, lengths = pack_cdf_rows(rows, self.precision)
        return cdfs, lengths, np.array(offsets, dtype=np.int32)

    @property
    def num_levels(self) -> int:
        return int(self.cdf_lengths.shape[0])

    # --- training ---------------------------------------------------------------------------

    def likelihood(self, residual: Tensor, scale: Tensor) -> Tensor:
        """P(residual) = Phi((r+.5)/s) - Phi((r-.5)/s), evaluated on the lower tail, bounded below.

        Scales are lower-bounded at the table's min_scale and likelihoods at `likelihood_bound`, both
        with CompressAI's gradient-preserving LowerBound.
        """
        scale = lower_bound(scale, self.table.min_scale)
        values = torch.abs(residual)
        upper = standard_normal_cdf((0.5 - values) / scale)
        lower = standard_normal_cdf((-0.5 - values) / scale)
        return lower_bound(upper - lower, self.likelihood_bound)

    @staticmethod
    def quantize(y: Tensor, mean: Tensor | None, mode: str) -> Tensor:
        """Quantize for training: "noise" adds U(-.5, .5); "round" is mean + round(y - mean) (STE)."""
        if mode == "noise":
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        if mode == "round":
            m = 0.0 if mean is None else mean
            r = y - m
            return m + r + (torch.round(r) - r).detach()
        raise ValueError(f'quantize mode must be "noise" or "round", got {mode!r}')

    # --- coding -----------------------------------------------------------------------------

    def _check_indices(self, indices: np.ndarray, err: type[Exception]) -> np.ndarray:
        idx = np.asarray(indices).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.dtype not in (np.int32, np.int64):
            idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_levels):
            raise err(f"scale index out of range [0, {self.num_levels}): "
                      f"got [{idx.min()}, {idx.max()}]")
        return idx

    def support(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) codable symbol for each index; a certain table's only symbol is its
        likely one (it is not range-coded)."""
        t = self.coding_tables()
        idx = self._check_indices(indices, ValueError)
        low, high = self._table_support(t)
        return low[idx], high[idx]

    @staticmethod
    def _table_support(t: CodingTables) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) codable symbol per table."""
        low = np.where(t.certain, t.likely, t.offsets)
        high = np.where(t.certain, t.likely, t.offsets + t.lengths - 2)
        return low, high

    def clamp_symbols(self, symbols: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Clip each symbol to its index's support (same shape as `symbols`, int32). Give rounded
        floats rather than int32: a latent past int32's range wrapped to the other end before the clip."""
        s = finite_symbols(symbols)
        low, high = self.support(np.asarray(indices).reshape(-1))
        if s.size != low.size:
            raise ValueError(f"{s.size} symbols but {low.size} indices")
        return np.clip(s.reshape(-1), low, high).astype(np.int32).reshape(s.shape)

    @staticmethod
    def _groups(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stable order grouping equal indices (ascending), the distinct indices and group bounds."""
        # indices are validated to [0, num_levels): a 16-bit key makes numpy's stable sort a
        # radix sort (same unique stable order), bincount replaces a second sort in np.unique
        key = idx.astype(np.int16) if idx.size and idx.max() < 2**15 else idx
        order = np.argsort(key, kind="stable")
        counts = np.bincount(idx, minlength=1) if idx.size else np.zeros(0, dtype=np.int64)
        uniq = np.flatnonzero(counts)
        bounds = np.concatenate([[0], np.cumsum(counts[uniq])])
        return order, uniq, bounds

    def encode(self, enc: RangeEncoder, symbols: np.ndarray, indices: np.ndarray) -> float:
        """Code `symbols` (ints inside each index's support) grouped by index: one coder call per
        index. Returns their information content in bits under the tables (what `bits` computes),
        counted per group on the way."""
        t = self.coding_tables()
        pmfs, offsets = t.pmfs, t.offsets
        idx = self._check_indices(indices, ValueError)
        sym = np.asarray(symbols).reshape(-1)
        sym = sym if sym.dtype in (np.int32, np.int64) else sym.astype(np.int64)
        if sym.size != idx.size:
            raise ValueError(f"{sym.size} symbols but {idx.size} indices")
        if idx.size >= COMPILED_MIN_SYMBOLS:  # one pass: grouped, offset and support-checked
            from mobilecodec.entropy.compiled import count_indices, group

            counts = count_indices(idx, self.num_levels)
            grouped = group(sym, idx, counts, offsets, np.array([len(p) for p in pmfs]))
            if grouped is None:
                raise ValueError("symbol outside the support of its scale index; call clamp_symbols first")
            uniq = np.flatnonzero(counts)
            bounds = np.concatenate([[0], np.cumsum(counts[uniq])])
            segments = ((i, grouped[bounds[j]:bounds[j + 1]]) for j, i in enumerate(uniq))
        else:
            low, high = self._table_support(t)
            if np.any(sym < low[idx]) or np.any(sym > high[idx]):
                raise ValueError("symbol outside the support of its scale index; call clamp_symbols first")
            order, uniq, bounds = self._groups(idx)
            segments = ((i, sym[order[bounds[j]:bounds[j + 1]]] - offsets[i]) for j, i in enumerate(uniq))
        bits = 0.0
        for i, seg in segments:
            if t.certain[i]:  # not coded; the compiled grouping checked the table's range, not its one symbol
                if np.any(seg != t.likely[i] - offsets[i]):
                    raise ValueError(f"symbol outside the support of scale index {i} (only "
                                     f"{t.likely[i]}, not coded); call clamp_symbols first")
                continue
            enc.encode(seg, pmfs[i], self.precision, model=t.model(int(i)))
            bits += float(np.bincount(seg, minlength=len(pmfs[i])) @ t.cost(int(i)))
        return bits

    def decode(self, dec: RangeDecoder, indices: np.ndarray) -> np.ndarray:
        """Decode one symbol per entry of `indices` (flattened), in the order `encode` wrote them."""
        t = self.coding_tables()
        idx = self._check_indices(indices, BitstreamError)
        compiled = idx.size >= COMPILED_MIN_SYMBOLS
        if compiled:  # no sort: `ungroup` reads the groups back by running positions
            from mobilecodec.entropy.compiled import count_indices, ungroup

            counts = count_indices(idx, self.num_levels)
            uniq = np.flatnonzero(counts)
            bounds = np.concatenate([[0], np.cumsum(counts[uniq])])
        else:
            order, uniq, bounds = self._groups(idx)
        values = np.empty(idx.size, dtype=np.int32)  # in group order, as encoded
        for j, i in enumerate(uniq):
            seg = values[bounds[j]:bounds[j + 1]]
            if t.certain[i]:  # not coded (format 4)
                seg[:] = t.likely[i]
                continue
            seg[:] = dec.decode(seg.size, t.pmfs[i], self.precision, model=t.model(int(i)))
            seg += t.offsets[i]
        if compiled:
            return ungroup(values, idx, counts)
        out = np.empty(idx.size, dtype=np.int32)
        out[order] = values
        return out

    def bits(self, symbols: np.ndarray, indices: np.ndarray) -> float:
        """Exact information content -sum log2(pmf_int / 2**precision) of `symbols` under the tables."""
        t = self.coding_tables()
        idx = self._check_indices(indices, ValueError)
        sym = np.asarray(symbols).reshape(-1).astype(np.int64)
        if sym.size != idx.size:
            raise ValueError(f"{sym.size} symbols but {idx.size} indices")
        low, high = self._table_support(t)
        if np.any(sym < low[idx]) or np.any(sym > high[idx]):
            raise ValueError("symbol outside the support of its scale index; call clamp_symbols first")
        coded = ~t.certain[idx]  # a certain table's symbol costs nothing: it is not coded
        idx = idx[coded]
        return float(np.sum(t.costs()[idx, sym[coded] - t.offsets[idx]]))
