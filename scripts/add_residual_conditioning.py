"""Give a trained checkpoint residual conditioning (the residual coder also sees the warped frame)
without changing what it decodes, as the start of a fine-tuning run.

`CodecConfig.residual_conditioning` adds the warped reference as input to the residual analysis
(first conv) and to the residual synthesis' output conv. This copies every trained weight and sets
the weights on the new inputs to zero, so the converted model computes what the original did, up to
the float summation order of the wider convolutions (the I-frame codec is the same; P-frames are
not promised byte-equal), until training moves them; the synthesis can then learn, for example, to
sharpen a reference that repeated sub-pixel warps have blurred.

  python scripts/add_residual_conditioning.py tiny_b0.0064 cond_init.pt
  mobilecodec train --stage 2 --beta 0.0064 --init cond_init.pt ... -o RUN
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def add_residual_conditioning(model):
    """A copy of `model` (a VideoCodec with explicit buffering, no conditioning) with residual
    conditioning whose new input weights are zero; entropy tables rebuilt (update())."""
    import torch

    from mobilecodec.errors import InputError
    from mobilecodec.models.codec import VideoCodec

    if model.cfg.conditional:
        raise InputError(f"config {model.cfg.name!r} already conditions its residual coder")
    cond = VideoCodec(model.cfg.replace(residual_conditioning=True))
    old = dict(model.named_parameters())
    unplaced = sorted(set(old) - {n for n, _ in cond.named_parameters()})
    lacking = sorted({n for n, _ in cond.named_parameters()} - set(old))
    if unplaced or lacking:  # every trained weight is kept, and every new one widens a trained one
        raise InputError(f"cannot convert {model.cfg.name!r}: " + "; ".join(
            f"{what}: {', '.join(names[:3])}" for what, names in (("trained weights with no place", unplaced),
                                                                  ("new weights of no trained one", lacking)) if names))
    new = {}
    for name, p in cond.named_parameters():
        w = old[name].detach()
        if w.shape != p.shape:  # [trained inputs, conditioning inputs] along the input axis
            if w.dim() != 4 or w.shape[0] != p.shape[0] or w.shape[2:] != p.shape[2:]:
                raise InputError(f"cannot widen {name}: {tuple(w.shape)} -> {tuple(p.shape)}")
            wide = torch.zeros_like(p)
            wide[:, :w.shape[1]] = w
            w = wide
        new[name] = w
    missing, _ = cond.load_state_dict(new, strict=False)
    assert set(missing) <= {n for n, _ in cond.named_buffers()}, missing  # only buffers, rebuilt by update()
    cond.update()
    return cond.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="shipped name or .pt file (explicit buffering, no residual conditioning)")
    ap.add_argument("out", type=Path, help="converted checkpoint to write (.pt)")
    a = ap.parse_args()

    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint

    model, obj = load_checkpoint(a.checkpoint)  # a missing one: CheckpointError, one line (run_main)
    cond = add_residual_conditioning(model)
    held = bool((obj.get("meta") or {}).get("trained_on_held_out"))  # the source's exposure stays with it
    save_checkpoint(a.out, cond, beta=obj.get("beta"),
                    meta={"converted_from": str(a.checkpoint), "conversion": "residual_conditioning, zero-initialised",
                          "trained_on_held_out": held})
    print(f"wrote {a.out}: {a.checkpoint} with residual conditioning (new input weights zero)")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
