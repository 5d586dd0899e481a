"""Where P-frame drift comes from: per P-frame of one intra period, the motion and residual bits
(model likelihoods of the rounded latents), the PSNR of the warped prediction and of the
reconstruction, the luma high-frequency energy of both relative to the source, and the decoded
flow. A reconstruction barely above its prediction means the residual coder has switched off; a
falling high-frequency ratio means the reference blurs along the period. The "oracle 3x3" column
bounds what any linear 3x3 filter of the prediction (plus the decoded residual) could recover: a
least-squares fit per frame and channel to the source itself. A small gain over the reconstruction
means the detail is lost, not merely blurred where the decoder could sharpen it back. The last
columns say what the decoded residual added and how much of it was the correction the frame needed;
`--zero-flow` copies the reference (on a static clip any loss is then the residual's).

Use it on training clips or the drift probe (`scripts/drift_probe.py make`), not on carphone:

  python scripts/drift_diagnose.py out/probe.y4m --checkpoint tiny_b0.0064 [--start 32] --frames 32 [--json d.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, positive_int, thread_count  # noqa: E402
from mobilecodec.metrics.psnr import psnr_from_mse  # noqa: E402
from mobilecodec.train.data import is_held_out  # noqa: E402
from mobilecodec.train.losses import yuv_mse  # noqa: E402


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of packed YUV420 tensors in [0, 1], of the Y:U:V 6:1:1 MSE the training loss uses."""
    return psnr_from_mse(float(yuv_mse(a, b)[0]), 1.0)


def _hf(a: torch.Tensor) -> float:
    """Mean squared 4-neighbour Laplacian of the packed luma phases: the detail left in a frame."""
    y = a[:, :4]
    lap = 4 * y[..., 1:-1, 1:-1] - y[..., :-2, 1:-1] - y[..., 2:, 1:-1] - y[..., 1:-1, :-2] - y[..., 1:-1, 2:]
    return float((lap ** 2).mean())


def _oracle_filter_psnr(pred: torch.Tensor, rec: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR of the best per-channel linear map (least squares, fitted to x itself) of the 3x3
    neighbourhoods of all prediction channels, the decoded residual and a constant."""
    import torch.nn.functional as F

    p, r, t = pred.double(), (rec - pred).double(), x.double()
    cols = F.unfold(F.pad(p, (1, 1, 1, 1), mode="replicate"), 3)[0].T  # (pixels, 9 * channels)
    a = torch.cat([cols, r[0].reshape(r.shape[1], -1).T, torch.ones(cols.shape[0], 1, dtype=torch.float64)], 1)
    fit = torch.empty_like(t)
    for c in range(t.shape[1]):
        w = torch.linalg.lstsq(a, t[0, c].reshape(-1, 1)).solution
        fit[0, c] = (a @ w)[:, 0].reshape(t.shape[2:])
    return _psnr(fit.clamp(0, 1).to(x.dtype), x)


def _bits(lik: dict, prefix: str) -> float:
    return sum(float(-torch.log2(lik[k]).sum()) for k in (f"{prefix}_y", f"{prefix}_z") if k in lik)


def _residual_stats(x_hat: torch.Tensor, pred: torch.Tensor, x: torch.Tensor) -> dict:
    """What the decoded residual added (RMS in 8-bit levels) and which part of it points along the
    correction the frame needed (x - pred): the projection <added, needed> / |needed|^2 (1: the
    residual coded the needed correction, 0: what it added is unrelated to it)."""
    added, needed = (x_hat - pred).double(), (x - pred).double()
    return {"added_rms_levels": float(added.pow(2).mean().sqrt()) * 255,
            "needed_rms_levels": float(needed.pow(2).mean().sqrt()) * 255,
            "projection": float((added * needed).sum() / needed.pow(2).sum().clamp_min(1e-12))}


def _picture(t: torch.Tensor, frame: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """The part of a tensor of the padded frame (any resolution of it) that covers the picture: the
    padding repeats the edge (bikes 640x272 codes 640x320, 15 % of its rows), which no one sees."""
    (h, w), (ph, pw) = frame, padded
    return t[..., :-(-h * t.shape[-2] // ph), :-(-w * t.shape[-1] // pw)]


def diagnose(clip: str, checkpoint: str, frames: int, start: int = 0, zero_flow: bool = False) -> dict:
    """Per P-frame figures of one intra period, measured on the picture (not the padding);
    `zero_flow`: the decoded flow replaced by zero (on a static clip the warp then copies the
    reference exactly, so any loss is the residual's)."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.errors import InputError
    from mobilecodec.io import open_video, pad_frame, resolve_input
    from mobilecodec.models.yuv import frame_to_tensor

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    if zero_flow:
        decoded = model.decoded_motion
        model.decoded_motion = lambda flow, feat: (torch.zeros_like(flow), decoded(flow, feat)[1])
    rows, iframe, read = [], None, 0
    with open_video(resolve_input(clip), max_frames=start + frames) as r, torch.no_grad():
        for t, f in enumerate(r, start=-start):
            read += 1
            if t < 0:
                continue  # before the intra period under study
            xp = frame_to_tensor(pad_frame(f))
            size, padded = f.y.shape, (2 * xp.shape[-2], 2 * xp.shape[-1])

            def pic(a: torch.Tensor) -> torch.Tensor:
                return _picture(a, size, padded)

            x = pic(xp)
            if t == 0:
                out = model.forward_iframe(xp)
                x_hat = pic(out["x_hat"])
                iframe = {"bits": _bits(out["likelihoods"], "i"), "rec_psnr": _psnr(x_hat, x), "hf_rec": _hf(x_hat) / _hf(x)}
            else:
                out = model.forward_pframe(xp, buf)
                lik, flow, pred, x_hat = out["likelihoods"], pic(out["flow"]), pic(out["pred"]), pic(out["x_hat"])
                rows.append({"t": t, "m_bits": _bits(lik, "m"), "r_bits": _bits(lik, "r"),
                             "pred_psnr": _psnr(pred, x), "rec_psnr": _psnr(x_hat, x),
                             "oracle_filter_psnr": _oracle_filter_psnr(pred, x_hat, x),
                             "hf_pred": _hf(pred) / _hf(x), "hf_rec": _hf(x_hat) / _hf(x),
                             "flow_mean": [float(v) for v in flow.mean(dim=(0, 2, 3))],
                             "flow_std": float(flow.std()), **_residual_stats(x_hat, pred, x)})
            buf = out["buffer"]
    if not rows:  # no I-frame and P-frame after it: --start at or past the clip's last frame
        raise InputError(f"{clip} has {read} frames: from --start {start} there is no I-frame and P-frame to diagnose")
    return {"clip": str(clip), "checkpoint": checkpoint, "zero_flow": zero_flow, "iframe": iframe, "pframes": rows}


def main() -> int:
    from mobilecodec.cli.common import json_target

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", help="video file or bundled clip name (not carphone: it is held out)")
    ap.add_argument("--checkpoint", default="tiny_b0.0064", help="shipped checkpoint name or .pt file (default tiny_b0.0064)")
    ap.add_argument("--start", type=int, default=0, help="first frame (coded as the I-frame)")
    ap.add_argument("--frames", type=int, default=32, help="frames from --start: one I-frame, then P-frames")
    ap.add_argument("--zero-flow", action="store_true",
                    help="replace the decoded flow by zero (for static clips: `drift_probe.py make --max-speed 0`)")
    ap.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--json", type=json_target, metavar="PATH", help="write the per-frame rows as JSON ('-' for stdout)")
    ap.add_argument("--allow-held-out", action="store_true", help="accept carphone (final reporting only)")
    args = ap.parse_args()

    if args.start < 0:
        ap.error("--start must be >= 0")
    if args.frames < 2:
        ap.error("--frames must be >= 2 (an I-frame and at least one P-frame)")
    if is_held_out(args.clip) and not args.allow_held_out:
        ap.error("carphone is the held-out evaluation clip; diagnose on training clips or the "
                 "drift probe (or pass --allow-held-out)")
    torch.set_num_threads(args.threads)
    res = diagnose(args.clip, args.checkpoint, args.frames, args.start, args.zero_flow)
    i = res["iframe"]
    print(f"I-frame: {i['bits']:.0f} bits, PSNR {i['rec_psnr']:.2f} dB, detail {i['hf_rec']:.2f} of the source")
    print("  t  motion bits  residual bits  pred PSNR  rec PSNR  oracle 3x3  detail pred/rec  flow mean (dx, dy) px  flow sd"
          "  residual added / needed RMS (levels), projection")
    for r in res["pframes"]:
        print(f"{r['t']:3d} {r['m_bits']:12.0f} {r['r_bits']:14.0f} {r['pred_psnr']:10.2f} {r['rec_psnr']:9.2f} "
              f"{r['oracle_filter_psnr']:11.2f} "
              f"{r['hf_pred']:8.2f} / {r['hf_rec']:.2f} {r['flow_mean'][0]:+9.2f}, {r['flow_mean'][1]:+.2f} "
              f"{r['flow_std']:8.2f}  {r['added_rms_levels']:12.2f} / {r['needed_rms_levels']:.2f}, {r['projection']:+.3f}")
    if args.json:
        emit_json(res, args.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
