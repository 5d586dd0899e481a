"""How strongly does a change of the buffered frame carry into the next reconstructions? The true
decoder (eval mode: rounded latents, 8-bit frames) against the straight-through linearisation that
training backpropagates through.

  python scripts/recursion_gain.py tiny_b0.0064 [--depth 0 8 16] [--horizon 6] [--json out.json]

For GOPs of bikes and the training stills (128x128, seeded), the codec runs `depth` P-frames from
its I-frame, then the buffered frame gets a perturbation of +-1 to +-3 levels on 25 % of its
samples. Forward gain after k frames: RMS change of reconstruction t+k over the RMS perturbation,
decoding both buffers. Backward gain: the norm of the gradient of <v, x_hat(t+1)> with respect to
the buffered frame, over |v| (v Gaussian), through the straight-through rounding of training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.checkpoint import load_checkpoint  # noqa: E402
from mobilecodec.cli.common import emit_json, positive_int  # noqa: E402
from mobilecodec.models.buffer import Buffer  # noqa: E402
from mobilecodec.train.data import TrainingData  # noqa: E402


def _run(model, frames, depth):
    out = model.forward_iframe(frames[0])
    buf = out["buffer"]
    for t in range(1, depth + 1):
        buf = model.forward_pframe(frames[t], buf)["buffer"]
    return buf


def _with_frame(buf: Buffer, frame: torch.Tensor) -> Buffer:
    return Buffer({k: (frame if k == "frame" else buf[k]) for k in buf.names()})


def measure(model, frames, depth: int, horizon: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        buf = _run(model, frames, depth)
        frame = buf["frame"]
        levels = torch.randint(1, 4, frame.shape, generator=g) * (torch.randint(0, 2, frame.shape, generator=g) * 2 - 1)
        mask = torch.rand(frame.shape, generator=g) < 0.25
        delta = torch.clamp(frame + levels * mask / 255.0, 0, 1) - frame
        a, b = buf, _with_frame(buf, frame + delta)
        forward = []
        for k in range(1, horizon + 1):
            x = frames[depth + k]
            oa, ob = model.forward_pframe(x, a), model.forward_pframe(x, b)
            forward.append(float((ob["x_hat"] - oa["x_hat"]).pow(2).mean().sqrt() / delta.pow(2).mean().sqrt()))
            a, b = oa["buffer"], ob["buffer"]
    model.train()
    torch.manual_seed(seed)  # the training-mode pass draws its quantization noise: one draw per --seed
    ref = buf["frame"].clone().requires_grad_(True)
    out = model.forward_pframe(frames[depth + 1], _with_frame(buf, ref))
    v = torch.randn(out["x_hat"].shape, generator=g)
    (grad,) = torch.autograd.grad((v * out["x_hat"]).sum(), ref)
    backward = float(grad.norm() / v.norm())
    return {"depth": depth, "forward": forward, "backward": backward}


def main() -> int:
    from mobilecodec.cli.common import json_target, seed_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="shipped checkpoint name or .pt file")
    p.add_argument("--depth", type=int, nargs="+", default=[0, 8, 16],
                   help="P-frames coded before the perturbation, each >= 0 (default 0 8 16)")
    p.add_argument("--horizon", type=positive_int, default=6, help="P-frames coded after the perturbation (default 6)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="GOPs (default 4)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the GOPs and perturbations (default 0)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the gains as JSON ('-' for stdout)")
    a = p.parse_args()
    if min(a.depth) < 0:
        p.error(f"--depth must be >= 0 (P-frames before the perturbation), got {min(a.depth)}")
    torch.set_num_threads(1)
    model, _ = load_checkpoint(a.checkpoint)
    length = max(a.depth) + a.horizon + 1
    data = TrainingData(["bikes", "stills"], length, (128, 128))
    frames = data.batch(np.random.default_rng(a.seed), a.batch_size)
    results = [measure(model, frames, d, a.horizon, a.seed + d) for d in a.depth]
    for r in results:
        print(f"after {r['depth']:2d} P-frames: forward gain after 1..{a.horizon} frames "
              + " ".join(f"{x:.3f}" for x in r["forward"]) + f"; straight-through backward gain {r['backward']:.3f}")
    if a.json:
        emit_json({"checkpoint": a.checkpoint, "results": results}, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
