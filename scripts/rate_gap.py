"""How far is the rate that training minimises from the bits the coder spends? Per P-frame of a clip,
the motion and residual latents (y and hyper-latent z) priced three ways:

  train   -log2 of training's likelihoods: y + U(-.5, .5) and z + U(-.5, .5) (train mode, seeded);
  round   -log2 of the float model's likelihoods on the rounded latents (eval mode);
  coder   the bits of the integer tables the range coder uses (`HyperpriorCoder.quantize`).

  python scripts/rate_gap.py tiny_b0.0064 bikes [--frames 8] [--json out.json]

The frames are coded in eval mode from the clip's first frame (an I-frame), each P-frame on the
buffer the decoder would hold; a latent rounded to its mean at the smallest scale costs the coder
nothing, while the noisy likelihood charges it a fraction of a bit, so `train` can exceed `coder`
by far on content that needs few bits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.checkpoint import load_checkpoint  # noqa: E402
from mobilecodec.cli.common import emit_json, positive_int, seed_int, thread_count  # noqa: E402
from mobilecodec.codec.frame_coding import HyperpriorCoder  # noqa: E402
from mobilecodec.entropy.gaussian import bits_from_likelihood  # noqa: E402
from mobilecodec.errors import InputError  # noqa: E402
from mobilecodec.io import pad_frame, read_frames, resolve_input  # noqa: E402
from mobilecodec.models.yuv import frame_to_tensor  # noqa: E402

PARTS = ("m", "r")


def _bits(likelihoods: dict[str, torch.Tensor], prefix: str) -> float:
    return float(sum(bits_from_likelihood(likelihoods[f"{prefix}_{k}"]) for k in ("y", "z")))


def rate_gap(model, frames: list[torch.Tensor], seed: int = 0) -> list[dict]:
    """Per P-frame: {part: {train, round, coder}} bits, for the motion (m) and residual (r) latents."""
    latents: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, f"{p}_hyper_analysis").register_forward_pre_hook(
        lambda _module, inputs, p=p: latents.__setitem__(p, inputs[0])) for p in PARTS]  # y, for the tables
    rows = []
    try:
        with torch.no_grad():
            model.eval()
            buf = model.forward_iframe(frames[0])["buffer"]
            for t in range(1, len(frames)):
                model.train()
                torch.manual_seed(seed + t)
                tr = model.forward_pframe(frames[t], buf)
                model.eval()
                latents.clear()
                ev = model.forward_pframe(frames[t], buf)
                row: dict = {"frame": t}
                for p in PARTS:
                    if p in latents:
                        y = latents[p]
                        coder = HyperpriorCoder(model, p)
                        row[p] = {"train": _bits(tr["likelihoods"], p), "round": _bits(ev["likelihoods"], p),
                                  "coder": float(sum(coder.quantize(y[i:i + 1])[1] for i in range(len(y))))}
                rows.append(row)
                buf = ev["buffer"]
    finally:
        for h in hooks:
            h.remove()
    return rows


def main(argv: list[str] | None = None) -> int:
    from mobilecodec.cli.common import json_target

    ap = argparse.ArgumentParser(description="\n\n".join(__doc__.split("\n\n")[:2]),  # with the three ways
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a checkpoint file or a shipped name (tiny_b0.0064)")
    ap.add_argument("clip", help="a video file or a bundled clip name (bikes, bigbuckbunny)")
    ap.add_argument("--frames", type=positive_int, default=8, help="frames from the first, an I-frame (8)")
    ap.add_argument("--seed", type=seed_int, default=0, help="seed of training's noise (0)")
    ap.add_argument("--threads", type=thread_count, default=1,
                    help="torch threads (1: the figures of docs/results/training.md; more threads sum in another order)")
    ap.add_argument("--json", type=json_target, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.frames < 2:
        ap.error("--frames must be at least 2 (an I-frame and a P-frame)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, _ = load_checkpoint(args.checkpoint)
    frames = [frame_to_tensor(pad_frame(f)) for f in read_frames(resolve_input(args.clip), args.frames)]
    if len(frames) < 2:
        raise InputError(f"{args.clip} has {len(frames)} frame(s); rate_gap needs at least 2 (an I-frame and a P-frame)")
    rows = rate_gap(model, frames, args.seed)
    print(f"{'frame':>5} | {'motion: train':>13} {'round':>7} {'coder':>7} | {'residual: train':>15} {'round':>7} "
          f"{'coder':>7} | train / coder")
    for r in rows:
        m, res = r.get("m", {}), r["r"]
        total_train = m.get("train", 0.0) + res["train"]
        total_coder = m.get("coder", 0.0) + res["coder"]
        print(f"{r['frame']:>5} | {m.get('train', 0):>13.0f} {m.get('round', 0):>7.0f} {m.get('coder', 0):>7.0f} | "
              f"{res['train']:>15.0f} {res['round']:>7.0f} {res['coder']:>7.0f} | x{total_train / max(total_coder, 1.0):.1f}")
    if args.json:
        emit_json({"checkpoint": args.checkpoint, "clip": args.clip, "frames": args.frames,
                                      "seed": args.seed, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
