"""Bjontegaard deltas between two rate-quality curves: BD-rate (%) and BD-PSNR (dB).

Rates are interpolated on log10(rate). Methods:
- "pchip": piecewise cubic Hermite interpolation (scipy ``PchipInterpolator``), integrated over
  the overlapping interval; the VCEG-AI11 / JVET CTC update, equal to the ``bjontegaard``
  package's "pchip". Needs >= 2 points per curve.
- "akima": scipy ``Akima1DInterpolator`` (linear for 2 points). Needs >= 2 points per curve.
- "cubic": the original VCEG-M33 least-squares cubic polynomial fit. Needs >= 4 points per curve.

Points may come in any order; they are sorted by rate. Quality (PSNR, MS-SSIM, ...) must rise
strictly with rate, rates must be positive, all values finite, and the two curves must overlap
(in quality for BD-rate, in rate for BD-PSNR); otherwise ``InputError`` names the problem.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from mobilecodec.errors import InputError

# What each interpolation can fit; a BD-rate the toolkit reports needs more (rdresults.BD_MIN_POINTS).
MIN_POINTS = {"pchip": 2, "akima": 2, "cubic": 4}


def _curve(rate: Sequence[float], dist: Sequence[float], name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; return (log10 rate, quality) sorted by rate."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise InputError(f"bd: {name} curve has {r.size} rates but {d.size} quality values")
    need = MIN_POINTS[method]
    if r.size < need:
        raise InputError(f"bd: {name} curve has {r.size} points, method {method!r} needs at least {need}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        raise InputError(f"bd: {name} curve contains NaN or infinite values")
    if np.any(r <= 0):
        raise InputError(f"bd: {name} curve has a non-positive rate: {r.tolist()}")
    order = np.argsort(r, kind="stable")
    r, d = r[order], d[order]
    if np.any(np.diff(r) <= 0):
        raise InputError(f"bd: {name} curve has repeated rates: {r.tolist()}")
    if np.any(np.diff(d) <= 0):
        i = int(np.flatnonzero(np.diff(d) <= 0)[0])
        raise InputError(
            f"bd: {name} curve is not monotonic, quality must rise strictly with rate: "
            f"{d[i]:.4f} at rate {r[i]:.6g}, then {d[i + 1]:.4f} at rate {r[i + 1]:.6g}"
        )
    return np.log10(r), d


def rd_frontier(rate: Sequence[float], dist: Sequence[float]) -> list[int]:
    """Indices of the points on the RD frontier (sorted by rate): those no other point dominates
    with a lower or equal rate and a higher or equal quality. An operator never picks a dominated
    point, so a BD-rate over the frontier measures the curve a user can actually get."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    keep: list[int] = []
    best = -np.inf
    for i in sorted(range(r.size), key=lambda k: (r[k], -d[k])):
        if d[i] > best:
            keep.append(i)
            best = d[i]
    return keep


def _check_method(method: str) -> None:
    if method not in MIN_POINTS:
        raise InputError(f"bd: unknown method {method!r}; expected one of {sorted(MIN_POINTS)}")


def _interpolant(x: np.ndarray, y: np.ndarray, method: str) -> tuple[Callable, Callable]:
    """(value at t, integral over [lo, hi]) of the curve through (x, y) interpolated by `method`."""
    from scipy.interpolate import Akima1DInterpolator, PchipInterpolator  # lazy: keeps CLI start-up fast

    if method == "cubic":
        coeffs = np.polyfit(x, y, 3)
        p = np.polyint(coeffs)
        return (lambda t: np.polyval(coeffs, t)), (lambda lo, hi: np.polyval(p, hi) - np.polyval(p, lo))
    f = (PchipInterpolator if method == "pchip" else Akima1DInterpolator)(x, y)
    return f, f.integrate


def _mean_difference(
    xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, method: str, axis_name: str
) -> float:
    """Mean of (curve b - curve a) over the overlapping x interval, each interpolated by `method`."""
    lo = max(xa[0], xb[0])
    hi = min(xa[-1], xb[-1])
    if not hi > lo:
        raise InputError(
            f"bd: the anchor and test curves do not overlap in {axis_name} "
            f"(anchor {xa[0]:.6g}..{xa[-1]:.6g}, test {xb[0]:.6g}..{xb[-1]:.6g})"
        )
    integrals = [float(_interpolant(x, y, method)[1](lo, hi)) for x, y in ((xa, ya), (xb, yb))]
    return (integrals[1] - integrals[0]) / (hi - lo)


#: below this share of both curves' ranges, a BD figure averages over too little of either to mean much
MIN_BD_OVERLAP = 0.5


def curve_overlap(anchor: Sequence[float], test: Sequence[float]) -> dict[str, float]:
    """The range two curves share on one axis (quality for BD-rate, log10 rate for BD-quality) and the
    share of each curve's own range it is: a BD figure averages over that shared range alone, so two
    curves that meet at their ends give a number (bjontegaard flags it) that describes neither.
    `low` is True when it covers less than `MIN_BD_OVERLAP` of both curves."""
    lo, hi = max(min(anchor), min(test)), min(max(anchor), max(test))
    shared = max(0.0, float(hi - lo))

    def share(v: Sequence[float]) -> float:
        span = float(max(v) - min(v))
        return shared / span if span > 0 else 0.0

    a, t = share(anchor), share(test)
    return {"shared": shared, "of_anchor": a, "of_test": t, "low": max(a, t) < MIN_BD_OVERLAP}


def rate_overlap(rate_anchor: Sequence[float], rate_test: Sequence[float]) -> dict[str, float]:
    """`curve_overlap` on the axis a BD-quality figure integrates over: log10 of the (positive) rates."""
    return curve_overlap([math.log10(r) for r in rate_anchor], [math.log10(r) for r in rate_test])


def overlap_note(o: dict[str, float], what: str, unit: str) -> str:
    """One line saying how little of the curves a BD figure covers (for `curve_overlap(..)['low']`)."""
    return (f"the curves share {o['shared']:.3g}{unit} of {what}, {100 * o['of_anchor']:.0f} % of the anchor's range "
            f"and {100 * o['of_test']:.0f} % of the test's: the figure averages over that alone")


def _curves(rate_anchor: Sequence[float], dist_anchor: Sequence[float], rate_test: Sequence[float],
            dist_test: Sequence[float], method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log rate, quality) of the anchor, then of the test, after checking both and the method."""
    _check_method(method)
    return (*_curve(rate_anchor, dist_anchor, "anchor", method), *_curve(rate_test, dist_test, "test", method))


def quality_at_rate(rate: Sequence[float], dist: Sequence[float], at: Sequence[float],
                    method: str = "pchip") -> list[float | None]:
    """The (rate, dist) curve's quality interpolated at each rate of `at` (over log10 rate, as for
    BD); None outside the curve's rate range (no extrapolation). The curve must rise with rate."""
    _check_method(method)
    x, y = _curve(rate, dist, "reference", method)
    f, _ = _interpolant(x, y, method)
    out: list[float | None] = []
    for r in at:
        lr = np.log10(r) if r > 0 else -np.inf
        out.append(float(f(lr)) if x[0] <= lr <= x[-1] else None)
    return out


def bd_rate(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent (negative = test saves bits)."""
    la, da, lt, dt = _curves(rate_anchor, dist_anchor, rate_test, dist_test, method)
    avg = _mean_difference(da, la, dt, lt, method, "quality")
    return float((10.0**avg - 1.0) * 100.0)


def bd_psnr(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average quality difference of test vs anchor at equal rate (dB for PSNR; positive = test better)."""
    la, da, lt, dt = _curves(rate_anchor, dist_anchor, rate_test, dist_test, method)
    return float(_mean_difference(la, da, lt, dt, method, "log rate"))
