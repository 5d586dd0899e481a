"""Compiled block matching (numba) on 8-bit luma, in exact integer arithmetic.

A block's cost for vector v = (dx, dy) is

    LENGTH_DIVISOR x SAD(v) + q x n x (|dx| + |dy|)

with SAD the sum of |x(p) - ref(clamp(p + v))| over the block's window (n pixels inside the frame;
reference positions clamped to the frame, i.e. replicate padding) in units of the luma samples,
which are 8-bit levels at full resolution and sums of q = COARSE^2 levels on the coarse grid. That
is the mean absolute difference in levels plus 1/LENGTH_DIVISOR levels per pixel of length, scaled
by LENGTH_DIVISOR x q x n, so comparisons within a block are exact and every CPU picks the same
vector (the float torch search it replaces broke ties by rounding noise, and was 2.8x slower at
1080p, radius 32: `benchmarks/motion_search_speed.py`). A candidate replaces the block's best
only when strictly cheaper: ties keep the first vector tried, which is what the float search did
wherever its rounding left tied costs equal (over 8 frames of bikes against decoded references
it chose differently in 0.03-0.12 % of the blocks; preferring the shorter of tied vectors instead
differed from it three times as often).
Block rows are split over threads (the kernel releases the GIL; `mobilecodec.parallel`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mobilecodec.parallel import run_split

#: Tie-break towards small vectors: 1/LENGTH_DIVISOR levels of mean absolute difference per pixel
#: of |dx| + |dy| (0.05 levels).
LENGTH_DIVISOR = 20
_NO_COST = np.iinfo(np.int64).max


@njit(nogil=True, cache=True, fastmath=True)
def _best_of(c, rp, pad_ref, ya, yb, xa, xb, bx, by, offsets, q, b_cost, b_x, b_y, size):  # pragma: no cover
    """The cheapest of (b_cost, b_x, b_y) and the vectors (bx, by) + offsets[k], k in order, for
    one window (rows [ya, yb), columns [xa, xb)); rp is the reference padded by pad_ref. SADs are
    summed in float32: the samples are integers and every partial sum stays below 2^24, so any
    summation order (fastmath lets LLVM reassociate and vectorise) gives the exact integer. `size` > 0: the window is size x size
    (4 or 8), summed with constant trip counts."""
    n = (yb - ya) * (xb - xa)
    for k in range(offsets.shape[0]):
        vx = bx + offsets[k, 0]
        vy = by + offsets[k, 1]
        sx, sy = vx + pad_ref, vy + pad_ref
        sad = np.float32(0.0)
        if size == 8:
            for y in range(8):
                for x in range(8):
                    sad += abs(c[ya + y, xa + x] - rp[ya + y + sy, xa + x + sx])
        elif size == 4:
            for y in range(4):
                for x in range(4):
                    sad += abs(c[ya + y, xa + x] - rp[ya + y + sy, xa + x + sx])
        else:
            for y in range(ya, yb):
                for x in range(xa, xb):
                    sad += abs(c[y, x] - rp[y + sy, x + sx])
        cost = LENGTH_DIVISOR * np.int64(sad) + q * n * (abs(vx) + abs(vy))
        if cost < b_cost:
            b_cost, b_x, b_y = cost, vx, vy
    return b_cost, b_x, b_y


@njit(nogil=True, cache=True)
def _try_rows(rp, c, pad_ref, stride, window, pad, q, base_x, base_y, offsets, best, best_x, best_y,
              lo, hi):  # pragma: no cover - compiled
    """Block rows [lo, hi): try base + offsets[k] for every k in order; keep strictly cheaper ones.
    rp is the reference replicate-padded by pad_ref on each side (pad_ref >= every |v|)."""
    h, w = c.shape
    for by in range(lo, hi):
        y0 = by * stride - pad
        ya, yb = max(y0, 0), min(y0 + window, h)
        for bx in range(best.shape[1]):
            x0 = bx * stride - pad
            xa, xb = max(x0, 0), min(x0 + window, w)
            size = window if (yb - ya == window and xb - xa == window and (window == 4 or window == 8)) else 0
            best[by, bx], best_x[by, bx], best_y[by, bx] = _best_of(
                c, rp, pad_ref, ya, yb, xa, xb, base_x[by, bx], base_y[by, bx], offsets, q, best[by, bx],
                best_x[by, bx], best_y[by, bx], size)


class _Grid:
    """One search grid: luma (H, W) int32 with its reference, blocks of `stride` pixels whose cost
    window is `window` pixels centred on the block (pad = (window - stride) / 2)."""

    def __init__(self, ref: np.ndarray, x: np.ndarray, stride: int, window: int, q: int, reach: int,
                 threads: int) -> None:
        if window * window * int(x.max(initial=0)) >= 1 << 24:
            raise ValueError("block-matching window too large for exact float32 sums")
        x, ref = x.astype(np.float32), ref.astype(np.float32)  # integers: exact (see _best_of)
        self.x, self.stride, self.window, self.q, self.threads = x, stride, window, q, threads
        self.pad = (window - stride) // 2
        h, w = x.shape
        # avg_pool2d's output size: floor((L + 2 pad - window) / stride) + 1
        self.shape = ((h + 2 * self.pad - window) // stride + 1, (w + 2 * self.pad - window) // stride + 1)
        self.reach = reach
        self.ref = np.pad(ref, reach, mode="edge")

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, np.int32)

    def try_vectors(self, base_x: np.ndarray, base_y: np.ndarray, offsets: np.ndarray,
                    best: np.ndarray, best_x: np.ndarray, best_y: np.ndarray) -> None:
        """Update (best, best_x, best_y) in place with the vectors base + offsets[k]."""
        longest = max(int(np.abs(base_x).max(initial=0)), int(np.abs(base_y).max(initial=0)))
        if longest + int(np.abs(offsets).max(initial=0)) > self.reach:
            raise ValueError("block-matching vector beyond the padded reference")
        run_split(_try_rows, self.shape[0], self.threads, self.ref, self.x, self.reach, self.stride, self.window,
                  self.pad, self.q, base_x, base_y, offsets, best, best_x, best_y)

    def search(self, radius: int, base_x: np.ndarray | None = None, base_y: np.ndarray | None = None,
               best: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every vector within `radius` of base (default 0), dy then dx ascending; returns
        (cost int64, vx, vy), continuing from `best` when given."""
        base_x = self.zeros() if base_x is None else base_x
        base_y = self.zeros() if base_y is None else base_y
        if best is None:
            best = (np.full(self.shape, _NO_COST, np.int64), self.zeros(), self.zeros())
        self.try_vectors(base_x, base_y, _offsets(radius), *best)
        return best

    def cost(self, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
        """Each block's cost at its own vector."""
        best = np.full(self.shape, _NO_COST, np.int64)
        self.try_vectors(vx, vy, _offsets(0), best, self.zeros(), self.zeros())
        return best


def _offsets(radius: int) -> np.ndarray:
    """(K, 2) int32 (dx, dy) of every vector within `radius`, dy outer, dx inner, ascending."""
    r = np.arange(-radius, radius + 1, dtype=np.int32)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    return np.ascontiguousarray(np.stack([dx.ravel(), dy.ravel()], axis=1))


def neighbours(v: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Each block's neighbour's value, (dy, dx) blocks away (edge blocks repeat their own: no
    wrap-around, which would pair the top row with the bottom row)."""
    h, w = v.shape
    padded = np.pad(v, 1, mode="edge")
    return np.ascontiguousarray(padded[1 - dy:1 - dy + h, 1 - dx:1 - dx + w])


def full_search(ref: np.ndarray, x: np.ndarray, block: int, radius: int, threads: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exhaustive full-resolution search of 8-bit luma x (H, W) against ref. Returns per block
    (best cost int64, dx, dy, cost of zero motion)."""
    grid = _Grid(ref, x, block, block, 1, radius, threads)
    best, vx, vy = grid.search(radius)
    return best, vx, vy, grid.cost(grid.zeros(), grid.zeros())


def coarse_to_fine(ref: np.ndarray, x: np.ndarray, block: int, radius: int, coarse: int, refine: int,
                   threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coarse-to-fine search (see `motion_search.block_match`): a full search at 1/coarse
    resolution over windows twice the block, then at full resolution every vector within `refine`
    of zero and of the coarse vector, then two passes over the four neighbours' vectors. Returns
    what `full_search` returns."""
    h, w = x.shape
    hc, wc = h // coarse, w // coarse

    def sums(a: np.ndarray) -> np.ndarray:  # luma summed over coarse x coarse pixels
        return np.ascontiguousarray(a[:hc * coarse, :wc * coarse].reshape(hc, coarse, wc, coarse).sum(axis=(1, 3),
                                                                                                  dtype=np.int32))

    c_radius = -(-radius // coarse)
    cgrid = _Grid(sums(ref), sums(x), block // coarse, 2 * block // coarse, coarse * coarse, c_radius, threads)
    _, cx, cy = cgrid.search(c_radius)
    limit = radius - refine
    cx = np.clip(cx * coarse, -limit, limit).astype(np.int32)
    cy = np.clip(cy * coarse, -limit, limit).astype(np.int32)

    # every vector tried below is within radius of zero: the coarse ones, refine around them, and
    # the neighbours' (which are among those)
    grid = _Grid(ref, x, block, block, 1, radius, threads)
    best = grid.search(refine)
    zero = grid.cost(grid.zeros(), grid.zeros())
    grid.search(refine, cx, cy, best)
    cost, vx, vy = best
    none = _offsets(0)
    for _ in range(2):
        current_x, current_y = vx.copy(), vy.copy()
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            grid.try_vectors(neighbours(current_x, dy, dx), neighbours(current_y, dy, dx), none, cost, vx, vy)
    return cost, vx, vy, zero
