"""`mobilecodec ptq`: post-training int8 quantization with aimet (Table 5, stage 3)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, emit_json, held_out_note, parse_hw, positive_int, seed_int

HELP = "int8 post-training quantization with aimet: calibrate per-stage QuantSims on real GOPs"
OUTPUT = Output("folder", marker="quantized.pt")  # replaced whole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="float checkpoint (file or shipped name), saved after update()")
    p.add_argument("--data", required=True, nargs="+", metavar="CLIP",
                   help="calibration clips (.y4m/.mp4/... or sample names such as bikes); the held-out "
                        "evaluation clip carphone only with --allow-held-out")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder: quantized.pt, encodings/<stage>.encodings, ptq.json")
    p.add_argument("--steps", type=positive_int, default=30, help="calibration steps (default 30)")
    p.add_argument("--gop", type=positive_int, default=3, help="frames per calibration GOP, at least 3 (default 3)")
    p.add_argument("--batch", type=positive_int, default=2, help="GOPs per step (default 2)")
    p.add_argument("--crop", type=parse_hw, default=None, metavar="HxW",
                   help="random crop of each GOP, multiples of 64 (default 256x256, clamped to the largest "
                        "multiple of 64 the smallest clip holds, e.g. 128x128 for 176x144 carphone)")
    p.add_argument("--eval-gops", type=int, default=4, help="GOPs of the calibration clips kept out of calibration for the float/int8 PSNR "
                        "report (default 4; not the held-out clip carphone)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the crop positions (default 0)")
    p.add_argument("--scheme", choices=("tf", "tf_enhanced"), default="tf",
                   help="activation range estimator: tf = min/max (default), tf_enhanced = SQNR search")
    p.add_argument("--aimet-config", default="htp_v73",
                   help="aimet quantsim config alias or JSON file (default htp_v73: per-channel weights)")
    p.add_argument("--w8a16", metavar="LAYERS.json|receiver",
                   help="layers with 16-bit activations: a JSON/YAML list ('stage' or 'stage.module'), or "
                        "'receiver' (every stage the decoder runs; recommended for decoding on another backend "
                        "than the encoder's, see docs/results/complexity.md)")
    p.add_argument("--cle", action="store_true", help="cross-layer equalization before quantizing")
    p.add_argument("--calibrate-frames", action="store_true",
                   help="give frame inputs and reconstructed-frame outputs the calibration data's range "
                        "instead of [0, 1] at the frame's own 1/255 steps (default: [0, 1], frozen)")
    p.add_argument("--adaround", action="store_true",
                   help="AdaRound the weights (aimet) on each stage's inputs captured from the calibration GOPs; "
                        "the weight encodings are then frozen during activation calibration")
    p.add_argument("--adaround-iters", type=int, default=None, metavar="N",
                   help="AdaRound optimization iterations per layer (default 300; aimet's own default of 10000 "
                        "takes hours for the whole codec on a 2-core CPU)")
    p.add_argument("--adaround-batches", type=int, default=None, metavar="N",
                   help="captured input batches per stage AdaRound optimizes on (default 16)")
    p.add_argument("--allow-held-out", action="store_true",
                   help="let --data name the held-out evaluation clip (carphone); int8 figures measured on it "
                        "are then no longer held-out figures (recorded in ptq.json)")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mobilecodec.checkpoint import load_checkpoint, resolve_checkpoint
    from mobilecodec.errors import CheckpointError, InputError
    from mobilecodec.io import resolve_input
    from mobilecodec.train.data import is_held_out, refuse_held_out

    from mobilecodec.quant.ptq import check_calibration_gop, check_not_a_qat_run

    check_not_a_qat_run(args.output)
    check_calibration_gop(args.gop)
    if args.steps * args.batch < len(args.data):
        raise InputError(f"--steps x --batch = {args.steps * args.batch} calibration GOPs cannot take one from each "
                         f"of the {len(args.data)} --data clips; give more steps or fewer clips")
    clips = [resolve_input(c) for c in args.data]
    held_out = False  # some clip is the held-out one (so --allow-held-out was given); also ptq.json's flag
    for c in clips:
        if not Path(c).is_file():
            raise InputError(f"calibration clip {c} is a folder: ptq calibrates on video files (.y4m/.mp4/... or a "
                             f"sample name such as bikes)" if Path(c).is_dir() else f"no such calibration clip: {c}"
                             + (" (the still images are training data of `train` and `qat`; ptq calibrates on video files)"
                                if Path(c).name == "stills" else ""))
        # is_held_out may decode the clip to compare content: once per clip, none after the first held-out one
        if not held_out and is_held_out(c):
            held_out = True  # refuse_held_out raises unless allowed (checking `c` once more, on the way out)
            refuse_held_out(c, "calibrate on training clips (e.g. --data bikes bigbuckbunny) or pass --allow-held-out",
                            allow=args.allow_held_out)
    if args.eval_gops < 0:
        raise InputError(f"--eval-gops must be >= 0, got {args.eval_gops}")
    for flag, default in (("adaround_iters", 300), ("adaround_batches", 16)):
        value, opt = getattr(args, flag), f"--{flag.replace('_', '-')}"
        if value is not None and not args.adaround:
            raise InputError(f"{opt} applies with --adaround")
        if value is not None and value < 1:
            raise InputError(f"{opt} must be >= 1, got {value}")
        setattr(args, flag, default if value is None else value)
    from mobilecodec.quant.config import QuantConfig, load_layer_overrides
    from mobilecodec.quant.sim import check_aimet_config

    w8a16 = load_layer_overrides(args.w8a16) if args.w8a16 else ()
    args.aimet_config = check_aimet_config(args.aimet_config)  # before the checkpoint and the clips load
    model, ckpt = load_checkpoint(args.checkpoint)
    if not model.ready_for_coding:
        raise CheckpointError(f"checkpoint {args.checkpoint} has no entropy-coding tables "
                              "(it was saved before model.update())")
    if args.crop is None:  # after the checks: it may print a note, which must not precede an error
        args.crop = default_crop(clips)
    from mobilecodec.quant.ptq import PTQOptions, held_out_record, run_ptq, save_quantized

    qcfg = QuantConfig(aimet_config=args.aimet_config, quant_scheme=args.scheme, w8a16=w8a16, cle=args.cle,
                       pin_frames=not args.calibrate_frames, adaround=args.adaround, adaround_iters=args.adaround_iters,
                       adaround_batches=args.adaround_batches)
    opts = PTQOptions(steps=args.steps, gop=args.gop, batch=args.batch, crop=args.crop, seed=args.seed,
                      eval_gops=args.eval_gops)
    qmodel, summary = run_ptq(model, clips, qcfg, opts, progress=not args.no_progress,
                              allow_held_out=args.allow_held_out)
    summary["checkpoint"] = str(resolve_checkpoint(args.checkpoint))
    summary["output"] = str(args.output)
    summary.update(held_out_record(ckpt.get("meta"), held_out))
    save_quantized(args.output, qmodel, checkpoint=resolve_checkpoint(args.checkpoint), summary=summary)
    psnr = ""
    if "int8_psnr_yuv" in summary:
        psnr = (f", PSNR-YUV float {summary['float_psnr_yuv']:.2f} dB / int8 {summary['int8_psnr_yuv']:.2f} dB"
                f" (int8 vs float {summary['int8_vs_float_psnr_yuv']:.2f} dB) on {args.eval_gops} GOPs kept out of "
                "calibration, network forward (coded quality: check-int8)")
    ada = ""
    if "adaround" in summary:
        done = [n for n, e in summary["adaround"].items() if e["adaround"]]
        ada = f", AdaRound on {len(done)}/{len(summary['adaround'])} stages ({args.adaround_iters} iterations/layer)"
    distinct = summary.get("calibration_gops_distinct", args.steps * args.batch)
    repeats = (f" ({distinct} distinct: the clips hold no more GOPs of {args.gop} frames, so they repeat)"
               if distinct < args.steps * args.batch else "")
    qc = summary.get("quant_config", {})
    # what was quantized how: the line said W8A8 of a W8A16 folder as of any other (found by the quant audit)
    how = (f"W{qc.get('param_bw', 8)}A{qc.get('act_bw', 8)}, scheme {qc.get('quant_scheme', '?')}"
           + (f", W8A16 in {len(summary.get('w8a16_layers') or [])} layers ({', '.join(qc['w8a16'])})"
              if qc.get("w8a16") else "") + (", CLE" if qc.get("cle") else ""))
    print(f"{args.output}: {len(summary['stages'])} stages quantized ({qmodel.cfg.name}; {how}), "
          f"{args.steps} steps x {args.batch} GOPs of {args.gop}{repeats}{ada}{psnr}")
    held_out_note(summary)
    emit_json(summary, args.json)
    return 0


DEFAULT_CROP = (256, 256)


def default_crop(clips: list) -> tuple[int, int]:
    """DEFAULT_CROP clamped to the largest multiples of 64 that every clip holds (said on stderr)."""
    import sys

    from mobilecodec.errors import InputError
    from mobilecodec.io import open_video

    h, w = DEFAULT_CROP
    for c in clips:
        with open_video(c, rate_unused=True) as r:
            h, w = min(h, r.height // 64 * 64), min(w, r.width // 64 * 64)
            if h == 0 or w == 0:
                raise InputError(f"{c}: frames are {r.width}x{r.height}, smaller than the codec's 64x64 block")
    if (h, w) != DEFAULT_CROP:
        print(f"note: calibration crop {h}x{w} (HxW), the largest multiple of 64 the clips hold; "
              f"set it with --crop", file=sys.stderr)
    return h, w
