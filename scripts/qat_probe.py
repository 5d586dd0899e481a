"""The QAT objective on a fixed set of training GOPs, for a float checkpoint and int8 folders.

QAT's own log reports the loss of each step's random batch, too noisy to say whether the
optimiser made progress. This evaluates the very loss QAT minimises (`GopLoss`: D + beta R, P-frames
weighted tau^(t-1)) in eval mode on the same GOPs for every model, so a PTQ folder and its QAT
folders can be compared: if QAT lowers this loss while the real codec (`check-int8`) gets worse,
the training forward and the codec disagree; if it does not lower it, the optimisation failed.

  python scripts/qat_probe.py --float tiny_b0.0064 --int8 int8/w8a8,int8/qat8 --data bikes bigbuckbunny \\
      --gops 16 --gop 8 --crop 128x128 [--json probe.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, parse_hw, positive_int  # noqa: E402


def objective(model, beta: float, gops: list, stage, train_mode: bool = False) -> dict:
    """Mean loss, bpp and PSNR of `model` over `gops` (each (G, 1, 6, h, w)), no grad; eval mode
    (rounded latents, as the codec codes them) or train mode (what QAT's steps see)."""
    import torch

    from mobilecodec.quant.sim import quiet_aimet
    from mobilecodec.train.losses import GopLoss, summarize

    loss_fn = GopLoss(model, beta, stage)
    model.train(train_mode)
    losses, bpps, psnrs = [], [], []
    with torch.no_grad(), quiet_aimet():
        for i, frames in enumerate(gops):
            torch.manual_seed(i)
            loss, stats = loss_fn(frames)
            s = summarize(stats)
            losses.append(float(loss))
            bpps.append(s["bpp"])
            psnrs.append(s["psnr"])
    return {"loss": float(np.mean(losses)), "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
            "loss_per_gop": losses}


def main() -> int:
    from mobilecodec.cli.common import json_target, seed_int

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--float", dest="float_ckpt", required=True, help="float checkpoint (name or path)")
    ap.add_argument("--int8", required=True, help="int8 folders, comma-separated")
    ap.add_argument("--data", nargs="+", default=["bikes", "bigbuckbunny"], help="training clips the GOPs come from (default bikes bigbuckbunny)")
    ap.add_argument("--gops", type=positive_int, default=16, help="GOPs the objective is averaged over (default 16)")
    ap.add_argument("--gop", type=positive_int, default=8, help="frames per GOP (default 8)")
    ap.add_argument("--crop", type=parse_hw, default=(128, 128), metavar="HxW")
    ap.add_argument("--seed", type=seed_int, default=12345, help="seed of the GOPs (default 12345)")
    ap.add_argument("--train-mode", action="store_true", help="the forward QAT's steps see (rate noise)")
    ap.add_argument("--json", type=json_target, metavar="PATH", help="write the objectives as JSON ('-' for stdout)")
    ap.add_argument("--allow-held-out", action="store_true", help="accept carphone among --data (final reporting only)")
    a = ap.parse_args()

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.quant.qat import QATOptions
    from mobilecodec.train.data import TrainingData

    h, w = a.crop
    data = TrainingData(a.data, a.gop, (h, w), allow_held_out=a.allow_held_out)
    rng = np.random.default_rng(a.seed)
    gops = [data.batch(rng, 1) for _ in range(a.gops)]
    stage = QATOptions(gop=a.gop, crop=(h, w)).stage()
    fmodel, meta = load_checkpoint(a.float_ckpt)
    if not isinstance(meta.get("beta"), (int, float)):  # a KeyError or TypeError traceback (scripts audit)
        from mobilecodec.errors import InputError

        raise InputError(f"{a.float_ckpt} records no beta: QAT's loss D + beta R needs the float checkpoint's "
                         "(a shipped or trained one)")
    beta = float(meta["beta"])
    rows = {"float " + str(a.float_ckpt): objective(fmodel, beta, gops, stage, a.train_mode)}
    for q in a.int8.split(","):
        rows[q] = objective(load_quantized(q), beta, gops, stage, a.train_mode)
    base = rows["float " + str(a.float_ckpt)]["loss"]
    print(f"{a.gops} GOPs of {a.gop} frames, {w}x{h} crops of {' '.join(a.data)} (seed {a.seed}), beta {beta:g}, "
          f"{'train' if a.train_mode else 'eval'} mode")
    for name, r in rows.items():
        print(f"{name:<60} loss {r['loss']:.6f} ({100 * (r['loss'] / base - 1):+.2f} % vs float)  "
              f"bpp {r['bpp']:.4f}  PSNR {r['psnr']:.3f} dB")
    if a.json:
        emit_json({"train_mode": a.train_mode, "gops": a.gops, "gop": a.gop, "crop": [h, w],
                                   "data": a.data, "seed": a.seed, "beta": beta, "models": rows}, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
