"""Gradient norm of the training loss against the GOP length: does backprop through the temporal
recursion stay bounded? Full backprop through a GOP of G frames, per network group.

  python scripts/grad_probe.py tiny_b0.0064 --gop 2 4 8 12 16 24 [--ref-grad-scale 1 0.5 0.35] \\
      [--crop 128x128 --batch-size 2 --seeds 1 2 --beta 0.0064] [--json out.json]

Each (GOP, scale) runs one batch of real GOPs (bikes and the training stills) per seed through
`GopLoss` in training mode and prints the total gradient norm per seed and, for the first seed,
the norm of each top-level network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.checkpoint import load_checkpoint  # noqa: E402
from mobilecodec.cli.common import emit_json, parse_hw, positive_int, thread_count  # noqa: E402
from mobilecodec.train.data import TrainingData  # noqa: E402
from mobilecodec.train.losses import GopLoss  # noqa: E402
from mobilecodec.train.stages import get_stage  # noqa: E402


def probe(checkpoint: str, gop: int, scale: float, crop: tuple[int, int], batch: int, seeds: list[int],
          beta: float) -> dict:
    model, _ = load_checkpoint(checkpoint)
    model.train()
    st = get_stage(2, gop=gop, crop=crop, batch_size=batch, tau=1.0, ref_grad_scale=scale)
    data = TrainingData(["bikes", "stills"], gop, crop)
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        frames = data.batch(np.random.default_rng(seed), batch)
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss, _ = GopLoss(model, beta, st)(frames)
        loss.backward()
        groups: dict[str, float] = {}
        for name, p in model.named_parameters():
            if p.grad is not None:
                key = name.split(".")[0]
                groups[key] = groups.get(key, 0.0) + float(p.grad.double().pow(2).sum())
        runs.append({"seed": seed, "seconds": time.perf_counter() - t, "loss": float(loss.detach()),
                     "total": sum(groups.values()) ** 0.5, "groups": {k: v ** 0.5 for k, v in groups.items()}})
    return {"gop": gop, "ref_grad_scale": scale, "runs": runs}


def unit_float(text: str) -> float:
    """argparse type: a number in 0..1 (0 cuts the gradient through the reference, as train accepts)."""
    from mobilecodec.cli.common import finite_float

    v = finite_float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}")
    return v


def main() -> int:
    from mobilecodec.cli.common import json_target, positive_float, seed_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="shipped checkpoint name or .pt file")
    p.add_argument("--gop", type=positive_int, nargs="+", default=[2, 4, 8, 12, 16, 24],
                   help="GOP lengths in frames, one gradient norm each (default 2 4 8 12 16 24)")
    p.add_argument("--ref-grad-scale", type=unit_float, nargs="+", default=[1.0],
                   help="per-frame scale of the gradient through the reference, as train --ref-grad-scale (default 1)")
    p.add_argument("--crop", type=parse_hw, default=(128, 128), metavar="HxW", help="crop size (default 128x128)")
    p.add_argument("--batch-size", type=positive_int, default=2, help="GOPs per batch (default 2)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[1, 2], help="batch seeds, one probe each (default 1 2)")
    p.add_argument("--beta", type=positive_float, default=0.0064, help="rate weight of the GOP loss (default 0.0064)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the gradient norms as JSON ('-' for stdout)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    results = []
    for scale in a.ref_grad_scale:
        for gop in a.gop:
            r = probe(a.checkpoint, gop, scale, a.crop, a.batch_size, a.seeds, a.beta)
            results.append(r)
            first = r["runs"][0]["groups"]
            top = ", ".join(f"{k} {v:.2g}" for k, v in sorted(first.items(), key=lambda kv: -kv[1])[:4])
            print(f"GOP {gop:3d}  scale {scale:g}: gradient norm " +
                  " / ".join(f"{x['total']:.3g}" for x in r["runs"]) + f"   largest (seed {a.seeds[0]}): {top}",
                  flush=True)
    if a.json:
        emit_json({"checkpoint": a.checkpoint, "crop": list(a.crop),
                                         "batch_size": a.batch_size, "results": results}, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
