"""What do the block-mode maps cost, and what would other models give? Encodes a clip with
--block-modes and prints the maps' bits per P-frame as coded (left + top adaptive contexts,
`codec.block_modes`), under one pmf per frame (the first coder's: 16 bits for the pmf left out), and
the empirical conditional entropies given the top neighbour or the previous P-frame's co-located
block (estimates without the extra pmfs such a coder would send); then the ideal code lengths of
adaptive coders like the shipped one with other contexts: left + top + the previous map's
co-located mode (27 contexts), and left + previous (9), the previous map reset at each I-frame.

  python scripts/mode_map_entropy.py CHECKPOINT CLIP [--frames 64] [--block 8] [--intra-period 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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


def adaptive_bits(maps: list[np.ndarray], context, contexts: int, period: int) -> float:
    """Mean bits per map of an adaptive coder like `block_modes.encode` (its walk, counts and pmfs)
    with `context(known, i, j, prev)`; `prev` is the last map of the same intra period."""
    total, prev = 0.0, None
    for k, m in enumerate(maps):
        if k % (period - 1) == 0:
            prev = None  # a new intra period: no earlier map

        def code(i: np.ndarray, j: np.ndarray, pmfs: np.ndarray, m: np.ndarray = m) -> np.ndarray:
            nonlocal total
            sym = m[i, j]
            total -= float(np.log2(pmfs[np.arange(len(sym)), sym] / float(1 << block_modes.MAP_PRECISION)).sum())
            return sym

        block_modes._walk(m.shape, code, lambda known, i, j, p=prev: context(known, i, j, p), contexts)
        prev = m
    return total / max(len(maps), 1)


def _with_previous(known, i, j, prev):
    own = block_modes._contexts(known, i, j)
    return own + 9 * (prev[i, j] if prev is not None else 0)


def _left_previous(known, i, j, prev):
    left = block_modes._contexts(known, i, j) // 3
    return 3 * left + (prev[i, j] if prev is not None else left)


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
               "adaptive_left_previous": adaptive_bits(maps, _left_previous, 9, a.intra_period)}}
    b = res["bits_per_map"]
    out = sys.stdout  # with --json -, run_main sends it to stderr: stdout holds the JSON alone
    print(f"{a.checkpoint} on {a.clip}, {a.block}x{a.block} blocks: {len(maps)} maps of "
          f"{res['blocks_per_map']} blocks; bits per map: coded {b['coded']:.0f}, frame pmf "
          f"{b['frame_pmf']:.0f}, top-neighbour "
          f"context {b['top_context']:.0f}, previous-map context {b['previous_context']:.0f}", file=out)
    print(f"adaptive coders, bits per map: left+top (as coded) {b['adaptive_left_top']:.0f}, "
          f"left+top+previous {b['adaptive_left_top_previous']:.0f}, "
          f"left+previous {b['adaptive_left_previous']:.0f}", file=out)
    if a.json:
        emit_json(res, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
