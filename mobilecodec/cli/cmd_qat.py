"""`mobilecodec qat`: quantization-aware fine-tuning of a PTQ model (Table 5, stage 4)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, check_not_input, emit_json, parse_hw, positive_float, positive_int

HELP = "int8 quantization-aware training (STE) of a `ptq` output folder on real GOPs"
OUTPUT = Output("folder", marker="quantized.pt")  # replaced whole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="Q",
                   help="quantized folder written by `mobilecodec ptq` (or by an earlier qat)")
    p.add_argument("--data", required=True, nargs="+", metavar="CLIP",
                   help="training clips (.y4m/.mp4/..., sample names such as bikes, or septuplet folders); "
                        "the held-out clip carphone only with --allow-held-out")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (same layout as ptq: quantized.pt, encodings/, qat.json, qat_state.pt)")
    p.add_argument("--steps", type=positive_int, default=100_000, help="total steps (default 100000, Table 5)")
    p.add_argument("--gop", type=positive_int, default=4, help="frames per GOP (default 4)")
    p.add_argument("--batch", type=positive_int, default=16, help="GOPs per step (default 16)")
    p.add_argument("--crop", type=parse_hw, default=(256, 256), metavar="HxW",
                   help="random crop, multiples of 64 (default 256x256)")
    p.add_argument("--lr", type=positive_float, default=5e-7, help="initial learning rate (default 5e-7)")
    p.add_argument("--lr-min", type=float, default=1e-9, help="end of the cosine decay (default 1e-9)")
    p.add_argument("--beta", type=positive_float, default=None,
                   help="rate weight (default: the float checkpoint's beta)")
    p.add_argument("--tau", type=positive_float, default=1.2, help="P-frame loss modulation (default 1.2)")
    p.add_argument("--range-learning", action=argparse.BooleanOptionalAction, default=True,
                   help="train the quantizers' min/max too (default) or keep the PTQ encodings frozen")
    p.add_argument("--ste", action="store_true",
                   help="train on the rounded latents the codec codes (straight-through) instead of "
                        "uniform noise, whose rate overstates the coded rate")
    p.add_argument("--checkpoint-every", type=positive_int, default=1000,
                   help="write the output folder every N steps (default 1000)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of data sampling and rate noise (default 0)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="read at most N frames of each clip")
    p.add_argument("--allow-held-out", action="store_true",
                   help="let --data name the held-out evaluation clip (carphone); results on it are then no "
                        "longer held-out figures")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mobilecodec.errors import InputError
    from mobilecodec.io import resolve_input

    data = []
    for d in args.data:
        p = Path(d) if Path(d).is_dir() else Path(resolve_input(d))
        if not p.exists():
            raise InputError(f"no such training clip: {d}")
        data.append(str(p))
    if not args.resume:
        check_not_input(args.output, args.checkpoint, "quantized folder")
    if not args.resume and not Path(args.checkpoint).exists():
        raise InputError(f"no such quantized folder: {args.checkpoint} (make one with `mobilecodec ptq`)")
    from mobilecodec.quant.qat import QATOptions, run_qat

    opts = QATOptions(steps=args.steps, gop=args.gop, batch=args.batch, crop=args.crop, lr=args.lr,
                      lr_min=args.lr_min, beta=args.beta, tau=args.tau, range_learning=args.range_learning,
                      ste=args.ste,
                      checkpoint_every=args.checkpoint_every, seed=args.seed, max_frames=args.max_frames)
    summary = run_qat(args.checkpoint, data, args.output, opts, resume=args.resume, progress=not args.no_progress,
                      allow_held_out=args.allow_held_out)
    last = summary.get("last") or {}
    print(f"{args.output}: QAT steps {summary['start_step'] + 1}..{summary['step']} "
          f"(beta {summary['beta']:g}, range learning {'on' if summary['options']['range_learning'] else 'off'}); "
          f"last loss {last.get('loss', float('nan')):.6f}, bpp {last.get('bpp', float('nan')):.4f}, "
          f"PSNR {last.get('psnr', float('nan')):.2f} dB")
    emit_json(summary, args.json)
    return 0
