"""`mobilecodec init`: a randomly initialised checkpoint of a registered config (a starting point
for training, and a model to try the pipeline on before any training)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, add_architecture_arguments, emit_json, seed_int

HELP = "create a randomly initialised checkpoint of a registered config"
OUTPUT = Output("file")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="registered config name (default: tiny)")
    add_architecture_arguments(p)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random initialisation (0..2^64-1, default 0)")
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write (.pt; it replaces an existing "
                   "file only where an earlier init made it, never a trained checkpoint)")
    p.add_argument("--json", metavar="PATH", help="write the summary (config, parameters, weights hash) as "
                   "JSON ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from mobilecodec.checkpoint import save_checkpoint
    from mobilecodec.errors import InputError
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    if Path(args.output).suffix.lower() not in (".pt", ".pth"):  # what --checkpoint reads; an .onnx here is a mistake
        raise InputError(f"output must be a .pt checkpoint, got {args.output} (ONNX graphs come from `mobilecodec export`)")
    _refuse_replacing_weights(Path(args.output))
    overrides = {}
    if args.buffering:
        overrides["buffering"] = args.buffering
    if args.warp:
        overrides["warp_mode"] = args.warp
    cfg = get_config(args.config, **overrides)
    torch.manual_seed(args.seed)
    model = VideoCodec(cfg)
    model.update()
    save_checkpoint(args.output, model, meta={"seed": args.seed, "trained": False})
    n = sum(p.numel() for p in model.parameters())
    digest = model.weights_hash().hex()
    print(f"{args.output}: config {cfg.name} ({cfg.buffering}, warp {cfg.warp.mode}), {n / 1e6:.2f} M parameters, "
          f"weights {digest[:16]}")
    emit_json({"output": str(args.output), "config": cfg.name, "buffering": cfg.buffering, "warp": cfg.warp.mode,
               "seed": args.seed, "parameters": n, "weights_hash": digest}, args.json)
    return 0


def _refuse_replacing_weights(out) -> None:
    """InputError where -o holds a file other than an earlier `init`'s checkpoint: a trained checkpoint was
    replaced by random weights without a word (walk-through audit); an init's own may be made again."""
    from mobilecodec.checkpoint import read_checkpoint
    from mobilecodec.errors import CheckpointError, InputError

    if not out.is_file():
        return
    try:
        made_by_init = (read_checkpoint(out).get("meta") or {}).get("trained") is False
    except CheckpointError:
        made_by_init = False
    if not made_by_init:
        raise InputError(f"{out} exists and is not a checkpoint init made (trained weights, or another file); init "
                         "would replace it with random weights: name a new file")
