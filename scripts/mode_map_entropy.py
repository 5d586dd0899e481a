"""What do the block-mode maps cost, and what would other models give? Encodes a clip with
--block-modes and prints the maps' bits per P-frame as coded (left + top adaptive contexts,
`codec.block_modes`), under one pmf per frame (the first coder's: 16 bits for the pmf left out), and
the empirical conditional entropies given the top neighbour or the previous P-frame's co-located
block (estimates without the extra pmfs such a coder would send); then the ideal code lengths of
adaptive coders like the shipped one with other contexts: left + top + the previous map's
co-located mode (27 contexts), and left + previous (9), the previous map reset at each I-frame;
the shipped contexts with the counts carried from the previous map (quartered, reset at each
I-frame); and a 16x16 quadtree (per 2x2 blocks a "one mode" flag, then that mode or the four).

  python scripts/mode_map_entropy.py CHECKPOINT CLIP [--frames 64] [--block 8] [--intra-period 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.checkpoint import load_checkpoint  # noqa: E402
from mobilecodec.codec import block_modes  # noqa: E402
from mobilecodec.codec import frame_coding  # noqa: E402
from mobilecodec.cli.common import emit_json, positive_int  # noqa: E402
from mobilecodec.codec.video import encode_video  # noqa: E402
from mobilecodec.errors import InputError  # noqa: E402
from mobilecodec.io import resolve_input  # noqa: E402


def entropy(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum())


def conditional(m: np.ndarray, ctx: np.ndarray) -> float:
    return sum(entropy(np.bincount(m[ctx == c], minlength=len(block_modes.MODES))) for c in range(len(block_modes.MODES)))


def _bits(pmfs: np.ndarray, sym: np.ndarray) -> float:
    """Ideal code length of `sym` under integer pmfs of MAP_PRECISION bits (rows: one per symbol)."""
    return -float(np.log2(pmfs[np.arange(len(sym)), sym] / float(1 << block_modes.MAP_PRECISION)).sum())


def adaptive_bits(maps: list[np.ndarray], context: Callable[..., np.ndarray], contexts: int, period: int,
                  carry: int = 0) -> float:
    """Mean bits per map of an adaptive coder like `block_modes.encode` (its walk, counts and pmfs)
    with `context(known, i, j, prev)`; `prev` is the last map of the same intra period. `carry` > 0:
    each map starts from the previous map's counts divided by `carry` (the coder: from scratch)."""
    total, prev, counts = 0.0, None, None
    for k, m in enumerate(maps):
        if k % (period - 1) == 0:
            prev, counts = None, None  # a new intra period: no earlier map
        start = None
        if carry and counts is not None:
            start = np.maximum(block_modes.CONTEXT_INIT, counts // carry)
        counts = start if start is not None else np.full((contexts, len(block_modes.MODES)), block_modes.CONTEXT_INIT,
                                                         dtype=np.int64)

        def code(i: np.ndarray, j: np.ndarray, pmfs: np.ndarray, m: np.ndarray = m) -> np.ndarray:
            nonlocal total
            total += _bits(pmfs, m[i, j])
            return m[i, j]

        block_modes._walk(m.shape, code, lambda known, i, j, p=prev: context(known, i, j, p), contexts, counts)
        prev = m
    return total / max(len(maps), 1)


def _coded(counts: np.ndarray, ctx: int, sym: int) -> float:
    """Ideal code length of `sym` in context `ctx` under adaptive counts (contexts, symbols), with the
    map coder's pmfs and increment; updates the counts."""
    bits = _bits(block_modes._context_pmfs(counts, np.array([ctx])), np.array([sym]))
    counts[ctx, sym] += block_modes.CONTEXT_STEP
    return bits


def quadtree_bits(maps: list[np.ndarray]) -> float:
    """Mean bits per map of a 16x16 quadtree over the 8x8 maps, each map from fresh counts: per 2x2
    blocks in raster order a flag "one mode" (context: how many of the left and top 2x2s had one; none
    for a group of one block at an edge), then that mode (left + top contexts over the 2x2s; a mixed
    one counts as `full`) or the blocks' modes (the shipped left + top contexts over the blocks). The
    counts learn after every symbol, not every anti-diagonal as the coder's: if anything in the
    quadtree's favour. One such quadtree, an upper bound on what a quadtree could do."""
    total = 0.0
    for m in maps:
        vh, vw = m.shape
        sh, sw = (vh + 1) // 2, (vw + 1) // 2
        init = block_modes.CONTEXT_INIT
        flags, groups, blocks = (np.full((3, 2), init, np.int64), np.full((9, 3), init, np.int64),
                                 np.full((9, 3), init, np.int64))
        one = np.zeros((sh, sw), bool)
        group_known = np.full((sh + 1, sw + 1), -1, np.int64)
        known = np.full((vh + 1, vw + 1), -1, np.int64)
        for si in range(sh):
            for sj in range(sw):
                part = m[2 * si:2 * si + 2, 2 * sj:2 * sj + 2]
                one[si, sj] = bool((part == part.flat[0]).all())
                if part.size > 1:  # a group of one block always holds one mode: no flag
                    total += _coded(flags, int(si > 0 and one[si - 1, sj]) + int(sj > 0 and one[si, sj - 1]),
                                    int(one[si, sj]))
                if one[si, sj]:
                    ctx = int(block_modes._contexts(group_known, np.array([si]), np.array([sj]))[0])
                    total += _coded(groups, ctx, int(part.flat[0]))
                group_known[si + 1, sj + 1] = part.flat[0] if one[si, sj] else 0
                for i in range(2 * si, min(2 * si + 2, vh)):
                    for j in range(2 * sj, min(2 * sj + 2, vw)):
                        if not one[si, sj]:
                            total += _coded(blocks, int(block_modes._contexts(known, np.array([i]), np.array([j]))[0]),
                                            int(m[i, j]))
                        known[i + 1, j + 1] = m[i, j]
    return total / max(len(maps), 1)


def _with_previous(known, i, j, prev):
    own = block_modes._contexts(known, i, j)
    return own + 9 * (prev[i, j] if prev is not None else 0)


def _left_previous(known, i, j, prev):
    left = block_modes._contexts(known, i, j) // 3
    return 3 * left + (prev[i, j] if prev is not None else left)


def _one_mode_share(maps: list[np.ndarray]) -> float:
    """The share of the 2x2 groups of blocks (the quadtree's) whose blocks hold one mode."""
    one = total = 0
    for m in maps:
        for si in range(0, m.shape[0], 2):
            for sj in range(0, m.shape[1], 2):
                part = m[si:si + 2, sj:sj + 2]
                one, total = one + int((part == part.flat[0]).all()), total + 1
    return one / max(total, 1)


def main() -> int:
    from mobilecodec.cli.common import json_target

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint file or shipped name")
    p.add_argument("clip", help="video file or bundled clip name")
    p.add_argument("--frames", type=positive_int, default=64, help="frames from the first (default 64)")
    p.add_argument("--block", type=int, default=8, choices=block_modes.BLOCK_SIZES)
    p.add_argument("--intra-period", type=positive_int, default=32, help="at least 2 (default 32)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the bits per map as JSON ('-' for stdout)")
    a = p.parse_args()
    if a.intra_period < 2:
        p.error("--intra-period must be >= 2: the block-mode maps are the P-frames'")
    maps: list[np.ndarray] = []
    spent: list[float] = []
    coded = block_modes.encode

    def record(enc, modes, geom):  # the encoder's own maps, as it codes them: the picture's blocks
        vh, vw = geom.visible
        maps.append(modes[:vh, :vw].copy())
        spent.append(coded(enc, modes, geom))
        return spent[-1]

    frame_coding.block_modes.encode = record
    model, ck = load_checkpoint(a.checkpoint)
    clip = resolve_input(a.clip)
    if Path(clip).is_dir():
        raise InputError(f"{a.clip} is a folder, not a video file")
    if not Path(clip).is_file():
        raise InputError(f"no such file: {a.clip}")
    with tempfile.TemporaryDirectory() as tmp:  # minutes on bikes at the default 64 frames: a progress bar
        encode_video(model, clip, Path(tmp) / "s.mnvc", intra_period=a.intra_period, max_frames=a.frames,
                     progress=sys.stderr.isatty(), modes=block_modes.BlockModeOptions.for_checkpoint(ck, a.block))
    plain = top = prev = 0.0
    last = None
    for m in maps:
        plain += entropy(np.bincount(m.ravel(), minlength=3))
        top += conditional(m, np.vstack([np.zeros((1, m.shape[1]), m.dtype), m[:-1]]))
        prev += conditional(m, last) if last is not None else entropy(np.bincount(m.ravel(), minlength=3))
        last = m
    n = max(len(maps), 1)
    res = {"checkpoint": a.checkpoint, "clip": a.clip, "frames": a.frames, "block": a.block,
           "intra_period": a.intra_period, "maps": len(maps), "blocks_per_map": maps[0].size if maps else 0,
           "bits_per_map": {
               "coded": sum(spent) / n, "frame_pmf": plain / n, "top_context": top / n, "previous_context": prev / n,
               "adaptive_left_top": adaptive_bits(maps, lambda k, i, j, p: block_modes._contexts(k, i, j), 9,
                                                  a.intra_period),
               "adaptive_left_top_previous": adaptive_bits(maps, _with_previous, 27, a.intra_period),
               "adaptive_left_previous": adaptive_bits(maps, _left_previous, 9, a.intra_period),
               "adaptive_left_top_carried": adaptive_bits(maps, lambda k, i, j, p: block_modes._contexts(k, i, j), 9,
                                                          a.intra_period, carry=4),
               "quadtree_16x16": quadtree_bits(maps)},
           "one_mode_2x2_share": _one_mode_share(maps)}
    b = res["bits_per_map"]
    out = sys.stdout  # with --json -, run_main sends it to stderr: stdout holds the JSON alone
    print(f"{a.checkpoint} on {a.clip}, {a.block}x{a.block} blocks: {len(maps)} maps of "
          f"{res['blocks_per_map']} blocks; bits per map: coded {b['coded']:.0f}, frame pmf "
          f"{b['frame_pmf']:.0f}, top-neighbour "
          f"context {b['top_context']:.0f}, previous-map context {b['previous_context']:.0f}", file=out)
    print(f"adaptive coders, bits per map: left+top (as coded) {b['adaptive_left_top']:.0f}, "
          f"left+top+previous {b['adaptive_left_top_previous']:.0f}, "
          f"left+previous {b['adaptive_left_previous']:.0f}, left+top with the previous map's counts "
          f"{b['adaptive_left_top_carried']:.0f}, 16x16 quadtree {b['quadtree_16x16']:.0f} "
          f"({100 * res['one_mode_2x2_share']:.0f} % of the 2x2 groups hold one mode)", file=out)
    if a.json:
        emit_json(res, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
