"""Range coder over integer probability tables, wrapping `constriction`'s queue range coder.

One `RangeEncoder` per frame holds every payload of that frame (hyper-latents, latents, ...) in one
stream; the `RangeDecoder` consumes symbols in the same order, interleaved with the caller's
computation. Models are built from integer pmfs (sum 2**precision) only, so encoder and decoder
build identical models on every machine: `pmf / 2**precision` is exact in float32 and
constriction's requantization to its 24-bit fixed point is deterministic integer/IEEE code.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mobilecodec.errors import BitstreamError, InputError

# constriction's default range coder works on 32-bit words and 24-bit model precision.
WORD_BYTES = 4
MAX_PRECISION = 24


def _constriction():
    import constriction

    return constriction


def quantize_pmf(pmf: np.ndarray, precision: int = 16) -> np.ndarray:
    """Integer pmf summing exactly to 2**precision with every entry >= 1 (largest-remainder rounding).

    Each symbol first gets 1, the remaining 2**precision - n units are shared in proportion to
    `pmf`; ties in the fractional parts are broken by symbol order, so the result is deterministic.
    """
    p = np.asarray(pmf, dtype=np.float64)
    n = p.size
    total = 1 << precision
    if p.ndim != 1 or n < 2:
        raise ValueError(f"need a 1-D pmf over at least 2 symbols, got shape {p.shape}")
    if n > total:
        raise ValueError(f"{n} symbols do not fit in {precision}-bit precision")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("pmf must be finite, non-negative and not all zero")
    budget = total - n
    share = p / p.sum() * budget
    base = np.floor(share).astype(np.int64)
    left = budget - int(base.sum())
    if left > 0:
        frac = share - base
        order = np.argsort(-frac, kind="stable")
        base[order[:left]] += 1
    out = base + 1
    assert int(out.sum()) == total
    return out


def finite_symbols(symbols: Any) -> np.ndarray:
    """`symbols` (integers, or rounded floats to be clipped to a table's support) as an array; a NaN
    is refused: no symbol stands for it (int32 made it the most negative one)."""
    s = np.asarray(symbols)
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise InputError("a latent to code is NaN: the checkpoint's weights or the frame are not finite")
    return s


def pmf_to_cdf(pmf_int: np.ndarray) -> np.ndarray:
    """Cumulative table [0, p0, p0+p1, ..., total] (length n + 1) of an integer pmf."""
    return np.concatenate([[0], np.cumsum(np.asarray(pmf_int, dtype=np.int64))])


def validate_cdf(cdf: np.ndarray, precision: int) -> None:
    """Raise ValueError unless `cdf` starts at 0, ends at 2**precision and every pmf entry is >= 1."""
    c = np.asarray(cdf, dtype=np.int64)
    if c.ndim != 1 or c.size < 3:
        raise ValueError(f"a CDF needs at least 3 entries (2 symbols), got shape {c.shape}")
    if c[0] != 0 or c[-1] != (1 << precision):
        raise ValueError(f"CDF must run from 0 to 2**{precision}, got {c[0]}..{c[-1]}")
    if np.any(np.diff(c) < 1):
        raise ValueError("CDF must be strictly increasing (every symbol needs probability >= 1)")


def per_symbol_probs(pmfs_int: np.ndarray, precision: int = 16) -> np.ndarray:
    """float32 rows pmf / 2**precision (exact) of integer pmfs (n, k), each row >= 1 and summing to
    2**precision: the per-symbol models of `encode_each` / `decode_each`, and one row of it the
    model of `categorical_model`."""
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    p = np.asarray(pmfs_int, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] < 2 or np.any(p < 1) or np.any(p.sum(1) != (1 << precision)):
        raise ValueError("a pmf must hold >= 2 positive integers summing to 2**precision")
    return (p.astype(np.float64) / float(1 << precision)).astype(np.float32)


def categorical_model(pmf_int: np.ndarray, precision: int = 16):
    """constriction Categorical of an integer pmf; deterministic (exact float32 input, perfect=False)."""
    pmf = np.asarray(pmf_int, dtype=np.int64)
    if pmf.ndim != 1:
        raise ValueError("a pmf must hold >= 2 positive integers summing to 2**precision")
    return _constriction().stream.model.Categorical(per_symbol_probs(pmf[None], precision)[0], perfect=False)


def _categorical_family():
    """constriction's Categorical with its probabilities given per symbol (perfect=False, as above)."""
    return _constriction().stream.model.Categorical(perfect=False)


@dataclass
class CodingTables:
    """Validated integer tables of one entropy model, and its constriction models built once.

    `pmfs[i]` / `offsets[i]`: integer pmf and lowest symbol of table i; `cdfs`, `lengths`: the
    int64 CDF rows (padded) and their lengths, for exact bit counts; `model(i)` is the constriction
    Categorical of table i, built on first use and then reused by every coder call; `costs()` the
    information content of every symbol of every table, the one definition the bit counts use. `certain[i]`:
    table i gives one symbol, `likely[i]`, all the probability but the least every other symbol
    must keep (1 unit each), so coding that symbol costs ~(n-1) / 2**precision / ln 2 bits.
    """

    pmfs: list[np.ndarray]
    offsets: np.ndarray
    cdfs: np.ndarray
    lengths: np.ndarray
    precision: int
    _models: dict[int, Any] = field(default_factory=dict)
    _costs: np.ndarray | None = None
    certain: np.ndarray = field(init=False)
    likely: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        total = 1 << self.precision
        self.certain = np.array([int(p.max()) == total - (len(p) - 1) for p in self.pmfs], dtype=bool)
        self.likely = np.array([int(o) + int(np.argmax(p)) for p, o in zip(self.pmfs, self.offsets)],
                               dtype=np.int64)

    def model(self, i: int):
        m = self._models.get(i)
        if m is None:
            m = self._models[i] = categorical_model(self.pmfs[i], self.precision)
        return m

    def costs(self) -> np.ndarray:
        """(tables, longest table) float64: bits of symbol position k of table i, precision -
        log2(pmfs[i][k]); 0 past a table's end. Built on first use."""
        if self._costs is None:
            c = np.zeros((len(self.pmfs), max(len(p) for p in self.pmfs)))
            for i, p in enumerate(self.pmfs):
                c[i, :len(p)] = self.precision - np.log2(p.astype(np.float64))
            self._costs = c
        return self._costs

    def cost(self, i: int) -> np.ndarray:
        """Bits of each symbol of table i (a row of `costs()`)."""
        return self.costs()[i, :len(self.pmfs[i])]


_TABLES: "weakref.WeakKeyDictionary[Any, tuple[tuple, CodingTables]]" = weakref.WeakKeyDictionary()


def cached_tables(owner: Any, buffers: tuple, build: Callable[[], CodingTables]) -> CodingTables:
    """`build()` once per state of `owner`'s table tensors: rebuilt only when one of `buffers`
    (torch tensors) is replaced or modified in place (data pointer, version counter, shape)."""
    key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in buffers)
    hit = _TABLES.get(owner)
    if hit is not None and hit[0] == key:
        return hit[1]
    tables = build()
    _TABLES[owner] = (key, tables)
    return tables


class RangeEncoder:
    """Appends groups of symbols, each group coded with one integer pmf; `get_bytes()` gives the stream."""

    def __init__(self) -> None:
        self._enc = _constriction().stream.queue.RangeEncoder()
        self.num_symbols = 0

    def encode(self, symbols: np.ndarray, pmf_int: np.ndarray, precision: int = 16,
               model: Any = None) -> None:
        """Code every entry of `symbols` (ints in [0, len(pmf_int))) with the same pmf, in order;
        `model`: the pmf's prebuilt constriction model (`CodingTables.model`), else built here."""
        s = np.asarray(symbols).reshape(-1)
        if s.size == 0:
            return
        n = len(pmf_int)
        if s.min() < 0 or s.max() >= n:
            raise ValueError(f"symbols must lie in [0, {n}), got range [{s.min()}, {s.max()}]")
        self._enc.encode(s.astype(np.int32),
                         model if model is not None else categorical_model(pmf_int, precision))
        self.num_symbols += s.size

    def encode_each(self, symbols: np.ndarray, pmfs_int: np.ndarray, precision: int = 16) -> None:
        """Code symbols[i] with its own integer pmf pmfs_int[i] (rows summing to 2**precision), in order."""
        s = np.asarray(symbols).reshape(-1)
        if s.size == 0:
            return
        probs = per_symbol_probs(pmfs_int, precision)
        if probs.shape[0] != s.size or s.min() < 0 or s.max() >= probs.shape[1]:
            raise ValueError(f"need one pmf per symbol and symbols in [0, {probs.shape[1]})")
        self._enc.encode(s.astype(np.int32), _categorical_family(), probs)
        self.num_symbols += s.size

    def get_bytes(self) -> bytes:
        """The stream so far (little-endian 32-bit words); does not end the encoder."""
        words = self._enc.get_compressed()
        return words.astype("<u4").tobytes()

    @property
    def num_bytes(self) -> int:
        """Size in bytes `get_bytes()` would return now."""
        return int(self._enc.num_words()) * WORD_BYTES


class RangeDecoder:
    """Reads back groups of symbols in the order they were encoded; errors become BitstreamError."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if len(data) % WORD_BYTES:
            raise BitstreamError(
                f"entropy-coded payload has {len(data)} bytes, not a multiple of {WORD_BYTES}")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self.num_bytes = len(data)
        try:
            self._dec = _constriction().stream.queue.RangeDecoder(words)
        except Exception as exc:  # constriction rejects some malformed inputs up front
            raise BitstreamError(f"entropy-coded payload is corrupt: {exc}") from exc
        self.num_symbols = 0

    def decode(self, count: int, pmf_int: np.ndarray, precision: int = 16,
               model: Any = None) -> np.ndarray:
        """Decode `count` symbols, all with the same pmf; returns int32 values in [0, len(pmf_int)).
        `model`: the pmf's prebuilt constriction model, else built here."""
        count = int(count)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return np.zeros(0, dtype=np.int32)
        if model is None:
            model = categorical_model(pmf_int, precision)
        try:
            out = self._dec.decode(model, count)
        except Exception as exc:
            raise BitstreamError(f"entropy-coded payload is corrupt: {exc}") from exc
        out = np.asarray(out, dtype=np.int32)
        if out.shape != (count,) or (out.size and (out.min() < 0 or out.max() >= len(pmf_int))):
            raise BitstreamError("entropy-coded payload is corrupt: decoder returned invalid symbols")
        self.num_symbols += count
        return out

    def decode_each(self, pmfs_int: np.ndarray, precision: int = 16) -> np.ndarray:
        """Decode one symbol per row of `pmfs_int` (integer pmfs summing to 2**precision), each with its row."""
        probs = per_symbol_probs(pmfs_int, precision)
        if probs.shape[0] == 0:
            return np.zeros(0, dtype=np.int32)
        try:
            out = self._dec.decode(_categorical_family(), probs)
        except Exception as exc:
            raise BitstreamError(f"entropy-coded payload is corrupt: {exc}") from exc
        out = np.asarray(out, dtype=np.int32)
        if out.shape != (probs.shape[0],) or out.min() < 0 or out.max() >= probs.shape[1]:
            raise BitstreamError("entropy-coded payload is corrupt: decoder returned invalid symbols")
        self.num_symbols += probs.shape[0]
        return out

    def finish(self) -> None:
        """Check that the whole payload was consumed (best effort).

        constriction cannot always detect end-of-stream: data two or more words longer than what was
        decoded, and most truncations, are detected; a single extra word may not be. The frame hash
        in the container is the complete check.
        """
        try:
            exhausted = bool(self._dec.maybe_exhausted())
        except Exception as exc:  # pragma: no cover - defensive
            raise BitstreamError(f"entropy-coded payload is corrupt: {exc}") from exc
        if not exhausted:
            raise BitstreamError(
                f"entropy-coded payload ({self.num_bytes} bytes) does not match the "
                f"{self.num_symbols} symbols decoded from it: data left over or missing")

