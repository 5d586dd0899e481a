"""How high can a checkpoint's I-frame codec go with more rate? Per clip, PSNR-YUV of its I-frames
decoded from the analysis latents y quantized four ways, and how many latent channels carry anything:

  round     the codec: y as the encoder codes it (its integer hyperprior mean's grid, step 1);
  half      y rounded to a grid twice as fine (what more rate could buy);
  quarter   four times as fine;
  exact     y not quantized: what any finer grid for these latents tends to (other latents, such as
            those the encoder's `--refine` searches for, can decode better);
  KLT       a linear reference: the top-C components (C = the latent's channels) of a PCA of the
            stride x stride YUV420 blocks of training clips, unquantized, as many numbers a block as
            the codec's latent has.

  python scripts/latent_ceiling.py tiny_b0.0004 carphone bikes [--frames 4] [--every 1] [--json out.json]

A channel is live where more than 10 % of its samples round away from the mean (they cost bits and
reach the synthesis). The KLT is fitted on --fit clips (bikes and bigbuckbunny), never a held-out one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.checkpoint import load_checkpoint  # noqa: E402
from mobilecodec.cli.common import emit_json, positive_int, thread_count  # noqa: E402
from mobilecodec.codec.frame_coding import HyperpriorCoder  # noqa: E402
from mobilecodec.errors import InputError  # noqa: E402
from mobilecodec.io import crop_frame, pad_frame, read_frames, resolve_input  # noqa: E402
from mobilecodec.io.frame import YUVFrame  # noqa: E402
from mobilecodec.metrics import psnr_yuv  # noqa: E402
from mobilecodec.models.yuv import frame_to_tensor, tensor_to_frame  # noqa: E402

GRIDS = {"round": 1, "half": 2, "quarter": 4}
LIVE_SHARE = 0.1


def iframe_ceiling(model, frame: YUVFrame) -> dict:
    """PSNR-YUV of one I-frame at each latent grid and unquantized, and each channel's share of
    samples that round away from the mean."""
    h, w = frame.y.shape
    out: dict = {}
    with torch.no_grad():
        y = model.i_analysis(frame_to_tensor(pad_frame(frame)))
        coder = HyperpriorCoder(model, "i")
        mean_np, idx = coder.entropy_params(y)  # the integer hyper-synthesis both sides run
        mean = torch.from_numpy(mean_np.astype(np.float32))
        for name, k in [*GRIDS.items(), ("exact", None)]:
            if k is None:
                y_hat = y
            elif k == 1:
                y_hat = coder.dequantize(y.numpy(), mean_np, idx)  # what the decoder gets, bit for bit
            else:
                y_hat = torch.round(k * (y - mean)) / k + mean
            x_hat = model.i_synthesis(y_hat)[0]  # tensor_to_frame rounds and clamps to 0..255
            out[name] = psnr_yuv(frame, crop_frame(tensor_to_frame(x_hat), w, h))["yuv"]
        out["nonzero_share"] = ((y - mean).abs() > 0.5).float().mean((0, 2, 3)).tolist()
    return out


def _blocks(frame: YUVFrame, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    f = pad_frame(frame, s)
    hh, ww = f.y.shape
    planes = [(np.asarray(p, np.float64), s // (1 if i == 0 else 2)) for i, p in enumerate((f.y, f.u, f.v))]
    rows = [p.reshape(hh // s, b, -1, b).transpose(0, 2, 1, 3).reshape(-1, b * b) for p, b in planes]
    return np.concatenate(rows, 1), (hh, ww)


def _unblocks(b: np.ndarray, s: int, hh: int, ww: int, h: int, w: int) -> YUVFrame:
    planes, at = [], 0
    for i in range(3):
        k = s if i == 0 else s // 2
        n = k * k
        p = b[:, at:at + n].reshape(hh // s, ww // s, k, k).transpose(0, 2, 1, 3).reshape(hh // s * k, ww // s * k)
        at += n
        hp, wp = (h, w) if i == 0 else (h // 2, w // 2)
        planes.append(np.clip(np.round(p[:hp, :wp]), 0, 255).astype(np.uint8))
    return YUVFrame(*planes)


class BlockKLT:
    """PCA of stride x stride YUV420 blocks minimising the 6:1:1 plane-weighted MSE (the MSE analogue
    of PSNR-YUV, which weighs the planes' PSNRs)."""

    def __init__(self, frames: list[YUVFrame], stride: int) -> None:
        x = np.concatenate([_blocks(f, stride)[0] for f in frames])
        n = stride * stride
        self.stride = stride
        self.weight = np.sqrt(np.concatenate([np.full(n, 6 / n), np.full(2 * n // 4, 4 / n)]))
        self.mean = x.mean(0)
        self.basis = np.linalg.svd((x - self.mean) * self.weight, full_matrices=False)[2]

    def psnr(self, frame: YUVFrame, components: int) -> float:
        b, (hh, ww) = _blocks(frame, self.stride)
        p = self.basis[:components]
        rec = ((b - self.mean) * self.weight) @ p.T @ p / self.weight + self.mean
        h, w = frame.y.shape
        return psnr_yuv(frame, _unblocks(rec, self.stride, hh, ww, h, w))["yuv"]


def latent_ceiling(model, clips: dict[str, list[YUVFrame]], klt: BlockKLT | None) -> dict:
    """Per clip: the mean PSNR-YUV of its frames at each grid, unquantized and by the KLT, and the
    live channels."""
    channels = model.cfg.iframe.latent
    res = {}
    for name, frames in clips.items():
        rows = [iframe_ceiling(model, f) for f in frames]
        share = np.mean([r["nonzero_share"] for r in rows], 0)
        res[name] = {k: float(np.mean([r[k] for r in rows])) for k in [*GRIDS, "exact"]}
        if klt is not None:
            res[name]["klt"] = float(np.mean([klt.psnr(f, channels) for f in frames]))
        res[name].update(live_channels=int((share > LIVE_SHARE).sum()), channels=channels,
                         nonzero_share=[round(float(v), 4) for v in share])
    return res


def main(argv: list[str] | None = None) -> int:
    from mobilecodec.cli.common import json_target
    from mobilecodec.train.data import is_held_out

    ap = argparse.ArgumentParser(description="\n\n".join(__doc__.split("\n\n")[:2]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a checkpoint file or a shipped name (tiny_b0.0004)")
    ap.add_argument("clips", nargs="+", help="video files or bundled clip names (carphone, bikes, ...)")
    ap.add_argument("--frames", type=positive_int, default=4, help="I-frames of each clip (4)")
    ap.add_argument("--every", type=positive_int, default=1,
                    help="take every K-th frame from the first (1); e.g. --frames 4 --every 32: the I-frames of "
                         "four 32-frame intra periods")
    ap.add_argument("--fit", nargs="+", default=["bikes", "bigbuckbunny"],
                    help="clips the KLT is fitted on, 16 frames each, every fourth (bikes bigbuckbunny)")
    ap.add_argument("--no-klt", action="store_true", help="skip the linear reference")
    ap.add_argument("--threads", type=thread_count, default=1, help="torch threads (1)")
    ap.add_argument("--json", type=json_target, help="also write the figures here")
    args = ap.parse_args(argv)
    fit = [] if args.no_klt else [resolve_input(c) for c in args.fit]
    held = [c for c, path in zip(args.fit, fit) if is_held_out(path)]
    if held:
        raise InputError(f"--fit {held[0]} is the held-out evaluation clip: fit the KLT on training clips")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    clips = {c: read_frames(resolve_input(c), 1 + (args.frames - 1) * args.every)[::args.every] for c in args.clips}
    klt = None
    if fit:
        ph, _ = model.latent_shapes(64, 64)["i"][0][2:]
        klt = BlockKLT([f for path in fit for f in read_frames(path, 16)[::4]], 64 // ph)
    res = latent_ceiling(model, clips, klt)
    print(f"{'clip':<14} {'round':>7} {'half':>7} {'quarter':>7} {'exact':>7} {'KLT':>7}  live channels  (PSNR-YUV dB)")
    for c, r in res.items():
        print(f"{Path(c).name:<14} {r['round']:7.2f} {r['half']:7.2f} {r['quarter']:7.2f} {r['exact']:7.2f} "
              f"{r['klt'] if 'klt' in r else float('nan'):7.2f}  {r['live_channels']} of {r['channels']}")
    if args.json:
        emit_json({"checkpoint": args.checkpoint, "frames": args.frames, "every": args.every,
                   "fit": None if klt is None else args.fit, "clips": res}, args.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
