"""`mobilecodec qat`: quantization-aware fine-tuning of a PTQ model (Table 5, stage 4)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import (Output, check_not_input, emit_json, finite_float, held_out_note, parse_hw,
                                    positive_float, positive_int, seed_int)

HELP = "int8 quantization-aware training (STE) of a `ptq` output folder on real GOPs"
OUTPUT = Output("folder", marker="quantized.pt")  # replaced whole




def add_arguments(p: argparse.ArgumentParser) -> None:
    d = _defaults()
    p.add_argument("--checkpoint", default=None, metavar="Q",
                   help="quantized folder written by `mobilecodec ptq` (or by an earlier qat); required unless --resume")
    p.add_argument("--data", default=None, nargs="+", metavar="CLIP",
                   help="training clips (.y4m/.mp4/..., sample names such as bikes, or septuplet folders); "
                        "the held-out clip carphone only with --allow-held-out; required unless --resume")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (same layout as ptq: quantized.pt, encodings/, qat.json, qat_state.pt)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help=f"total steps (default {d.steps}, Table 5; with --resume: the run's own; another value there "
                        f"continues on the cosine learning-rate schedule of the new total)")
    p.add_argument("--gop", type=positive_int, default=None, help=f"frames per GOP, at least 2 (default {d.gop})")
    p.add_argument("--batch", type=positive_int, default=None, help=f"GOPs per step (default {d.batch})")
    p.add_argument("--crop", type=parse_hw, default=None, metavar="HxW",
                   help=f"random crop, multiples of 64 (default {d.crop[0]}x{d.crop[1]})")
    p.add_argument("--lr", type=positive_float, default=None, help=f"initial learning rate (default {d.lr:g})")
    p.add_argument("--lr-min", type=finite_float, default=None, help=f"end of the cosine decay (default {d.lr_min:g})")
    p.add_argument("--beta", type=positive_float, default=None,
                   help="rate weight (default: the beta an earlier QAT of the --checkpoint folder trained with, "
                        "else the float checkpoint's)")
    p.add_argument("--tau", type=positive_float, default=None, help=f"P-frame loss modulation (default {d.tau:g})")
    p.add_argument("--range-learning", action=argparse.BooleanOptionalAction, default=None,
                   help="train the quantizers' min/max too (default) or keep the PTQ encodings frozen")
    p.add_argument("--ste", action="store_true", default=None,
                   help="train on the rounded latents the codec codes (straight-through) instead of "
                        "uniform noise, whose rate overstates the coded rate")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help=f"write the output folder every N steps (default {d.checkpoint_every}; may change on --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder: its options, input and data are kept (repeat "
                        "them unchanged or leave them out); only --steps and --checkpoint-every may change")
    p.add_argument("--seed", type=seed_int, default=None, help=f"seed of data sampling and rate noise (default {d.seed})")
    p.add_argument("--max-frames", type=positive_int, default=None, help="read at most N frames of each clip")
    p.add_argument("--allow-held-out", action="store_true",
                   help="let --data name the held-out evaluation clip (carphone); results on it are then no "
                        "longer held-out figures")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _defaults():
    from mobilecodec.quant.qat import QATOptions

    return QATOptions()


def _resolve_data(clips: list[str]) -> list[str]:
    """Each --data entry as the run records it: 'stills' or an absolute path (a relative one made a
    resume from another folder train on whatever file had that name there)."""
    from mobilecodec.train.data import data_identity

    return [data_identity(d) for d in clips]


def _resume_options(args: argparse.Namespace):
    """The saved run's options, with --steps and --checkpoint-every as given; InputError where a
    run-defining option is given with another value than the run's."""
    from mobilecodec.quant.qat import RUN_DEFINING, resume_options

    return resume_options(args.output, args.steps, args.checkpoint_every,
                          **{n: getattr(args, n) for n in RUN_DEFINING if hasattr(args, n)})


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mobilecodec.errors import InputError

    data = _resolve_data(args.data) if args.data else None
    if args.resume:
        opts = _resume_options(args)
    else:
        missing = [f"--{n}" for n in ("checkpoint", "data") if getattr(args, n) is None]
        if missing:
            raise InputError(f"{' and '.join(missing)} required (unless --resume)")
        check_not_input(args.output, args.checkpoint, "quantized folder")
        if not Path(args.checkpoint).exists():
            raise InputError(f"no such quantized folder: {args.checkpoint} (make one with `mobilecodec ptq`)")
        import dataclasses

        from mobilecodec.quant.qat import RUN_DEFINING

        given = {n: getattr(args, n) for n in (*RUN_DEFINING, "checkpoint_every")
                 if getattr(args, n, None) is not None}
        defaults = _defaults()
        opts = dataclasses.replace(defaults, steps=args.steps or defaults.steps, **given)
    opts.validate()  # before the model loads: a bad value is refused in a moment, not after seconds
    from mobilecodec.quant.qat import run_qat

    summary = run_qat(args.checkpoint, data, args.output, opts, resume=args.resume, progress=not args.no_progress,
                      allow_held_out=args.allow_held_out)
    last = summary.get("last") or {}
    rate = "bpp" if summary["options"]["ste"] else "noisy bpp"  # uniform noise overstates the coded rate
    print(f"{args.output}: QAT steps {summary['start_step'] + 1}..{summary['step']} "
          f"(beta {summary['beta']:g}, range learning {'on' if summary['options']['range_learning'] else 'off'}); "
          f"last loss {last.get('loss', float('nan')):.6f}, {rate} {last.get('bpp', float('nan')):.4f}, "
          f"PSNR {last.get('psnr', float('nan')):.2f} dB")
    held_out_note(summary)
    emit_json(summary, args.json)
    return 0
