"""Calibration data (random crops of real GOPs) and the PTQ calibration loop (Table 5, stage 3)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mobilecodec.errors import InputError


def _crop(frame, top: int, left: int, h: int, w: int):
    from mobilecodec.io import YUVFrame

    return YUVFrame(frame.y[top:top + h, left:left + w], frame.u[top // 2:(top + h) // 2, left // 2:(left + w) // 2],
                    frame.v[top // 2:(top + h) // 2, left // 2:(left + w) // 2])


def _read_gops(clips: Sequence[str | Path], gop: int, crop: tuple[int, int], count: int, seed: int,
               max_frames: int | None) -> tuple[list[torch.Tensor], list[int]]:
    """Up to `count` distinct GOPs (`load_gops`), each with its crop: up to count / len(clips)
    (rounded up) from each clip, taken from the clips in turn (the first GOP of each, then the second
    of each, ...), so that every clip is calibrated on (the first `count` of the clips one after the
    other left the last clip out whenever the count did not divide evenly); with the index of each
    GOP's clip."""
    from itertools import zip_longest

    from mobilecodec.io import open_video, resolve_input
    from mobilecodec.models.yuv import frame_to_tensor
    from mobilecodec.train.data import data_identity

    h, w = crop
    if gop < 1:
        raise InputError(f"GOP length must be >= 1, got {gop}")
    if h % 64 or w % 64 or h <= 0 or w <= 0:
        raise InputError(f"crop size must be a positive multiple of 64 (the codec's padding), got {h}x{w}")
    if not clips:
        raise InputError("no calibration clips given")
    seen: dict[str, str] = {}
    for clip in clips:  # a clip twice: GOPs kept apart for evaluation were calibration GOPs too
        key = data_identity(resolve_input(clip), strict=False)
        if key in seen:
            raise InputError(f"calibration clip {clip} is given twice (as {seen[key]} before)")
        seen[key] = str(clip)
    rng = random.Random(seed)
    per_clip = math.ceil(count / len(clips))
    per: list[list[torch.Tensor]] = []
    for clip in clips:
        path = resolve_input(clip)
        per.append([])
        with open_video(path, max_frames=max_frames, rate_unused=True) as reader:
            if reader.width < w or reader.height < h:
                raise InputError(f"{path}: frames are {reader.width}x{reader.height}, smaller than the "
                                 f"crop {w}x{h} (HxW {h}x{w})")
            window: list = []
            n_clip = 0
            for frame in reader:
                window.append(frame)
                if len(window) < gop:
                    continue
                top = 2 * rng.randrange((reader.height - h) // 2 + 1)
                left = 2 * rng.randrange((reader.width - w) // 2 + 1)
                per[-1].append(torch.cat([frame_to_tensor(_crop(f, top, left, h, w)) for f in window]))
                window = []
                n_clip += 1
                if n_clip >= per_clip:
                    break
    turns = [(g, k) for turn in zip_longest(*per) for k, g in enumerate(turn) if g is not None][:count]
    if not turns:
        raise InputError(f"the calibration clips hold no complete GOP of {gop} frames")
    return [g for g, _ in turns], [k for _, k in turns]


def _repeat(found: list[torch.Tensor], count: int) -> torch.Tensor:
    return torch.stack([found[i % len(found)] for i in range(count)])


def load_gops(clips: Sequence[str | Path], gop: int, crop: tuple[int, int], count: int, *, seed: int = 0,
              max_frames: int | None = None) -> torch.Tensor:
    """`count` GOPs of `gop` consecutive frames, each randomly cropped to crop=(H, W), as a float
    tensor (count, gop, 6, H/2, W/2) in [0, 1]. The clips take turns (non-overlapping GOPs, `_read_gops`);
    if they hold fewer GOPs than asked, the GOPs found are reused."""
    return _repeat(_read_gops(clips, gop, crop, count, seed, max_frames)[0], count)


def load_split(clips: Sequence[str | Path], gop: int, crop: tuple[int, int], calibration: int, held_out: int, *,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(calibration GOPs, held-out GOPs or None, distinct calibration GOPs): as `load_gops` for
    `calibration + held_out`, the last `held_out` distinct GOPs kept apart, so that short clips
    repeat calibration GOPs and never evaluate on one; InputError if nothing is left to calibrate on."""
    if calibration < len(clips):  # the clips take turns: the last ones would give none
        raise InputError(f"{calibration} calibration GOPs cannot take one from each of the {len(clips)} clips")
    found, source = _read_gops(clips, gop, crop, calibration + held_out, seed, None)
    held = None
    if held_out:
        if len(found) <= held_out:
            raise InputError(f"the clips hold {len(found)} GOPs of {gop} frames: too few to keep {held_out} apart "
                             f"for the evaluation and calibrate on the rest; lower --eval-gops or --gop, or add clips")
        held, found, source = torch.stack(found[-held_out:]), found[:-held_out], source[:-held_out]
    unused = [str(c) for k, c in enumerate(clips) if k not in source]
    if unused:  # a short clip's GOPs all went to the evaluation (the held-out ones are the last read)
        raise InputError(f"no calibration GOP comes from {', '.join(unused)}: its GOPs of {gop} frames were all kept "
                         f"apart for the evaluation; lower --eval-gops or --gop, or give more --steps x --batch")
    return _repeat(found, calibration), held, len(found)


def batches(gops: torch.Tensor, steps: int, batch: int) -> list[torch.Tensor]:
    """`steps` batches of `batch` GOPs, walking through the GOPs in order and wrapping around."""
    n = gops.shape[0]
    return [gops[[(s * batch + i) % n for i in range(batch)]] for s in range(steps)]


def run_gop(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Eval-mode training forward over one batch of GOPs (N, G, 6, h, w): I-frame, then P-frames
    with the buffer carried over. Returns the reconstructions."""
    out = model.forward_iframe(x[:, 0])
    recs = [out["x_hat"]]
    buf = out["buffer"]
    for t in range(1, x.shape[1]):
        out = model.forward_pframe(x[:, t], buf)
        recs.append(out["x_hat"])
        buf = out["buffer"]
    return recs


def calibrate(qmodel, gops: torch.Tensor, *, steps: int, batch: int, progress: bool = True) -> None:
    """Compute the encodings of every sim of `qmodel` by running the codec GOP by GOP."""
    from mobilecodec.progress import progress_bar
    from mobilecodec.quant.sim import computing_encodings, quiet_aimet

    qmodel.eval()
    with quiet_aimet(), computing_encodings(qmodel.sims):
        for x in progress_bar(batches(gops, steps, batch), desc="calibrate", unit="step", enabled=progress,
                              leave=False):
            run_gop(qmodel, x)


def _psnr_planes(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """PSNR of packed YUV tensors in [0, 1] (channels 0-3 luma, 4 U, 5 V), each plane capped at the
    metrics' PSNR_CAP_DB (identical frames would make the means inf), YUV weighted 6:1:1."""
    from mobilecodec.metrics.psnr import PSNR_CAP_DB, psnr_from_mse, weighted_psnr_yuv

    d = (a.double() - b.double()) ** 2
    y, u, v = (min(PSNR_CAP_DB, psnr_from_mse(float(m), 1.0))
               for m in (d[:, :4].mean(), d[:, 4].mean(), d[:, 5].mean()))
    return {"y": y, "u": u, "v": v, "yuv": weighted_psnr_yuv(y, u, v)}


@torch.no_grad()
def evaluate(float_model, qmodel, gops: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) over the frames of `gops`: float vs source, int8 vs source, int8 vs float, of
    the networks' eval-mode forward (rounded latents, unclamped reconstructions that are not rounded
    to 8-bit levels): a quick check, not coded quality, which `check-int8` measures on real streams."""
    from mobilecodec.quant.sim import quiet_aimet

    acc: dict[str, list[float]] = {"float_psnr_yuv": [], "int8_psnr_yuv": [], "int8_vs_float_psnr_yuv": []}
    with quiet_aimet():
        for g in gops:
            x = g.unsqueeze(0)
            rf, rq = run_gop(float_model, x), run_gop(qmodel, x)
            for t in range(x.shape[1]):
                acc["float_psnr_yuv"].append(_psnr_planes(rf[t], x[:, t])["yuv"])
                acc["int8_psnr_yuv"].append(_psnr_planes(rq[t], x[:, t])["yuv"])
                acc["int8_vs_float_psnr_yuv"].append(_psnr_planes(rq[t], rf[t])["yuv"])
    return {k: float(np.mean(v)) for k, v in acc.items()}
