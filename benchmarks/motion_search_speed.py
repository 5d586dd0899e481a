"""The encoder's block-matching motion search at 1080p: the previous float torch search (kept
below as the "before" reference, as it was at commit edae0af) against the compiled exact-integer
search (`mobilecodec.models.motion_search.block_match`), same frames, same process, medians over
--runs. Frames: consecutive bigbuckbunny frames (a training clip) resized to 1088x1920 and
rounded to 8 bits, as decoded buffers are. Also reports how often the two pick the same vector
(they differ only where float rounding broke a tie or the confidence threshold).

Roofline: the float32 conv roofline at the same thread count, measured in the same run (the better
of onnxruntime's and PyTorch's float32 3x3 conv GMAC/s, `_common.roofline`). Both searches compute
in float32 (the compiled kernel sums integer samples in float32, the old one in torch float32) and
the compiled one does not stream memory (each block's window and candidates stay in cache), so the
machine's float32 arithmetic rate is its ceiling. The work is counted in SAD terms, |x - ref| added
once per candidate vector and window pixel, as `block_match` searches (`sad_terms`: every vector
and the zero vector at full resolution up to radius 8; beyond, the coarse grid's windows, then
the refinement around zero and the coarse vector and the neighbours' vectors); the old search
tries the same vectors over the same windows (bar the zero vector's separate cost), so both sides
are counted alike. A SAD term is a
subtract, an absolute value and an add where a conv MAC is one fused multiply-add, so a search at
the arithmetic limit would reach roughly a third to a half of the conv rate: the printed fraction
(GSAD/s over the conv's GMAC/s) is to be read against that. (The old search writes and reads a
difference plane for every vector: memory bound at large frames, as its code notes.)"""

from __future__ import annotations

from _common import add_roofline_argument, add_runs_argument, compare, conv_roof, emit, fraction, parser, \
    roofline, roofline_line, run_main  # first: it sets OMP_WAIT_POLICY, read once when torch loads

import torch  # noqa: E402 (after _common, see above)
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from mobilecodec.cli.common import positive_int, positive_ints, thread_count  # noqa: E402
from mobilecodec.models.motion_search import packed_luma  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    add_runs_argument(p)
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--radius", type=positive_ints, default=[32, 6], help="search radii, comma-separated (default 32,6)")
    add_roofline_argument(p)
    args = p.parse_args()
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.models.motion_search import block_match
    from mobilecodec.models.yuv import read_packed_frames

    torch.set_num_threads(args.threads)
    frames = read_packed_frames(sample_clip("bigbuckbunny"), 2)
    ref, x = (torch.round(F.interpolate(f, size=(544, 960), mode="bilinear", align_corners=False)
                          .clamp(0, 1) * 255) / 255 for f in frames)
    res: dict = {"size": [1088, 1920], "threads": args.threads, "runs": args.runs, "radii": {}}
    # the float32 conv roofline at the search's thread count (it sets torch's threads to the same)
    roof = res["roofline"] = None if args.no_roofline else roofline(args.threads, copy=False)
    torch.set_num_threads(args.threads)
    roof_rate = conv_roof(roof, "best_float32")
    print(f"motion search, 1088x1920 luma, 8x8 blocks, {args.threads} thread(s), medians of {args.runs}:")
    for radius in args.radius:
        c = compare({"before": lambda: old_block_match(ref, x, 8, radius),
                     "after": lambda: block_match(ref, x, 8, radius)}, args.runs)
        before, after = c["before"]["median_s"], c["after"]["median_s"]
        (fo, co), (fn, cn) = old_block_match(ref, x, 8, radius), block_match(ref, x, 8, radius)
        same = float((fo == fn).all(dim=1).float().mean())
        same_conf = float((co == cn).float().mean())
        terms = sad_terms(1088, 1920, 8, radius)
        res["radii"][radius] = {"before_ms": 1e3 * before, "after_ms": 1e3 * after, "speedup": before / after,
                                "before": c["before"], "after": c["after"],
                                "same_vector": same, "same_confident": same_conf,
                                "sad_terms": terms, "before_gsad_per_s": terms / before / 1e9,
                                "after_gsad_per_s": terms / after / 1e9,
                                "before_fraction_of_float32_roofline": fraction(terms / before / 1e9, roof_rate),
                                "after_fraction_of_float32_roofline": fraction(terms / after / 1e9, roof_rate)}
        print(f"  radius {radius:2d}: float torch {1e3 * before:7.1f} ms ({1e3 * c['before']['min_s']:.1f}-"
              f"{1e3 * c['before']['max_s']:.1f}) -> exact integer {1e3 * after:6.1f} ms ({1e3 * c['after']['min_s']:.1f}-"
              f"{1e3 * c['after']['max_s']:.1f}) "
              f"({before / after:.1f}x); same vector in {100 * same:.2f} % of blocks, same confidence in "
              f"{100 * same_conf:.2f} %")
        r = res["radii"][radius]
        if roof_rate:
            print(f"            {terms / 1e6:.0f} M SAD terms: {r['before_gsad_per_s']:.2f} -> {r['after_gsad_per_s']:.2f} "
                  f"GSAD/s = {r['before_fraction_of_float32_roofline']:.3f} -> "
                  f"{r['after_fraction_of_float32_roofline']:.3f} of the float32 conv roofline "
                  f"{roof_rate:.1f} GMAC/s (a SAD term is 2-3 vector ops to a MAC's one)")
    print(roofline_line(roof))
    emit(res, args.json)


def _window_pixels(h: int, w: int, stride: int, window: int) -> int:
    """Pixels in all the cost windows of a search grid (`motion_kernel._Grid`): blocks every `stride`
    pixels, windows of `window` pixels centred on them, clipped to the h x w frame."""
    pad = (window - stride) // 2

    def along(n: int) -> int:
        return sum(min(b * stride - pad + window, n) - max(b * stride - pad, 0)
                   for b in range((n + 2 * pad - window) // stride + 1))

    return along(h) * along(w)


def sad_terms(h: int, w: int, block: int, radius: int) -> int:
    """SAD terms (one |x - ref| per candidate vector and window pixel) of `block_match` on h x w luma,
    as `motion_kernel.full_search` / `coarse_to_fine` try them."""
    from mobilecodec.models import motion_search as ms

    full = _window_pixels(h, w, block, block)  # every pixel once per vector
    if radius <= ms.FULL_SEARCH_RADIUS:
        return full * ((2 * radius + 1) ** 2 + 1)  # every vector, then the zero vector's cost
    c = ms.COARSE
    cr = -(-radius // c)
    coarse = _window_pixels(h // c, w // c, block // c, 2 * block // c) * (2 * cr + 1) ** 2
    refine = (2 * ms.REFINE_RADIUS + 1) ** 2
    # around zero, the zero vector's cost, around the coarse vector, 2 passes x 4 neighbours
    return coarse + full * (2 * refine + 1 + 8)


# --- the previous implementation (float costs), unchanged but for names ---------------------------

#: A block takes the teacher's vector only when it lowers the block's mean absolute luma
#: difference by at least this much against zero motion (levels of 1/255): flat or noisy blocks,
#: where the best match is arbitrary, give no teacher signal.
MIN_GAIN = 1.0 / 255.0
#: Tie-break towards small vectors: cost added per luma pixel of |dx| + |dy|.
LENGTH_COST = 0.05 / 255.0


#: Largest radius searched exhaustively at full resolution; beyond it the search runs coarse to fine.
FULL_SEARCH_RADIUS = 8
#: Coarse-to-fine search: the first pass runs on luma averaged over COARSE x COARSE pixels.
COARSE = 4
#: ... and the second pass tries every vector within this many pixels of the coarse one.
REFINE_RADIUS = 3


@torch.no_grad()
def old_block_match(ref: Tensor, x: Tensor, block: int, radius: int) -> tuple[Tensor, Tensor]:
    """Integer block matching of packed frames `x` against `ref`, vectors up to `radius` luma
    pixels each way.

    Up to FULL_SEARCH_RADIUS the search is exhaustive. Beyond it, a full search at 1/COARSE
    resolution (cost: the mean absolute difference over a window twice the block) finds each
    block's coarse vector; a full-resolution search within REFINE_RADIUS of it and of zero motion,
    then two passes trying the neighbours' vectors, pick the vector. Measured with
    `scripts/motion_check.py CKPT --clip C --frames 6 --search 6 32` (training clips; warped-frame
    PSNR-YUV of frames 1/2/5): bikes 31.4/30.0/31.3 dB at radius 6, 45.3/45.9/43.6 dB at radius 32
    (an exhaustive radius-32 search: 45.5/46.5/43.9); bigbuckbunny 43.8/35.8/34.1 and
    51.4/46.1/44.0 dB. Time at 720p, one thread: 315-395 ms against 143-156 ms for radius 6.

    Returns (flow (N, 2, H/B, W/B) in luma pixels, channel 0 = dx, 1 = dy, in the warp's
    convention warped(p) = ref(p + flow); confident (N, 1, H/B, W/B) bool: blocks whose best
    vector beats zero motion by MIN_GAIN)."""
    r, c = packed_luma(ref), packed_luma(x)
    if radius <= FULL_SEARCH_RADIUS:
        best_cost, flow, zero = _cheapest(*_full_search(r, c, block, radius, window=block))
    else:
        f = COARSE
        coarse_cost, table = _full_search(F.avg_pool2d(r, f), F.avg_pool2d(c, f), block // f,
                                          -(-radius // f), window=2 * block // f)
        centre = table[coarse_cost.argmin(dim=1)].permute(0, 3, 1, 2) * f  # (N, 2, H/B, W/B)
        centre = centre.clamp(-radius + REFINE_RADIUS, radius - REFINE_RADIUS)
        best_cost, flow, zero = _refine(r, c, block, centre, REFINE_RADIUS)
    confident = (zero - best_cost >= MIN_GAIN).unsqueeze(1)
    return flow, confident


def _full_search(r: Tensor, c: Tensor, block: int, radius: int, window: int) -> tuple[Tensor, Tensor]:
    """Cost (N, K, H/block, W/block) of every integer vector within `radius` (K = (2r+1)^2, in
    the order of `table` (K, 2) = (dx, dy)): the mean absolute luma difference over a `window`
    centred on each block (window = block: the block itself), plus LENGTH_COST per pixel of length."""
    h, w = c.shape[-2:]
    padded = F.pad(r, (radius, radius, radius, radius), mode="replicate")
    side = 2 * radius + 1
    cost = torch.empty(c.shape[0], side * side, h // block, w // block, dtype=c.dtype, device=c.device)
    diff = torch.empty_like(c)  # reused: the search is memory-bound at large frames
    pad = (window - block) // 2
    vectors = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            k = len(vectors)
            torch.sub(c, padded[..., radius + dy: radius + dy + h, radius + dx: radius + dx + w], out=diff)
            sad = F.avg_pool2d(diff.abs_(), window, stride=block, padding=pad, count_include_pad=False)
            torch.add(sad, LENGTH_COST * (abs(dx) + abs(dy)), out=cost[:, k:k + 1])
            vectors.append((dx, dy))
    return cost, torch.tensor(vectors, dtype=r.dtype, device=r.device)


def _cheapest(cost: Tensor, table: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(best cost, best vector (N, 2, H/B, W/B), cost of zero motion) of a `_full_search` result."""
    best_cost, best = cost.min(dim=1)
    zero = cost[:, len(table) // 2]  # (0, 0) is the middle of the search order
    return best_cost, table[best].permute(0, 3, 1, 2).contiguous(), zero


def _refine(r: Tensor, c: Tensor, block: int, centre: Tensor, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Full-resolution search within `radius` of each block's `centre` vector and of zero motion.
    Returns (best cost, best vector (N, 2, H/B, W/B), cost of zero motion), costs (N, H/B, W/B)."""
    best_cost, best, zero = _cheapest(*_full_search(r, c, block, radius, window=block))
    # Around the coarse vector, then the neighbours' vectors (two passes: motion is coherent, and
    # in smooth regions a block's own coarse vector is often wrong). One gather per candidate from
    # a replicate-padded reference (padding = clamping the position).
    n, _, h, w = c.shape
    pad = max(int(centre.abs().max()), radius) + radius
    wp = w + 2 * pad
    flat = F.pad(r, (pad, pad, pad, pad), mode="replicate").reshape(n, -1)
    ys = torch.arange(h, device=c.device).view(1, h, 1)
    xs = torch.arange(w, device=c.device).view(1, 1, w)
    diff = torch.empty_like(c)

    def index_of(vec: Tensor) -> Tensor:
        v = vec.to(torch.int64).repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
        return ((ys + pad + v[:, 1]) * wp + (xs + pad + v[:, 0])).view(n, -1)

    def try_vectors(vec: Tensor, idx: Tensor) -> None:
        nonlocal best_cost, best
        torch.sub(c, torch.gather(flat, 1, idx).view(n, 1, h, w), out=diff)
        cost = F.avg_pool2d(diff.abs_(), block)[:, 0] + LENGTH_COST * vec.abs().sum(dim=1)
        better = cost < best_cost
        best_cost = torch.where(better, cost, best_cost)
        best = torch.where(better.unsqueeze(1), vec, best)

    base = index_of(centre)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):  # an offset only adds a constant to the index
            vec = centre + torch.tensor([dx, dy], dtype=centre.dtype, device=centre.device).view(1, 2, 1, 1)
            try_vectors(vec, base + (dy * wp + dx))
    # every vector tried so far is within `pad` of zero, so the neighbours' are too
    for _ in range(2):
        current = best
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            moved = _neighbours(current, dy, dx)
            try_vectors(moved, index_of(moved))
    return best_cost, best.contiguous(), zero


def _neighbours(vectors: Tensor, dy: int, dx: int) -> Tensor:
    """Each block's neighbour's vector, (dy, dx) blocks away (edge blocks repeat their own: no
    wrap-around, which would pair the top row with the bottom row)."""
    padded = F.pad(vectors, (1, 1, 1, 1), mode="replicate")
    h, w = vectors.shape[-2:]
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


if __name__ == "__main__":
    run_main(main)
