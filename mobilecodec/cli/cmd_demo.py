"""`mobilecodec demo`: the whole pipeline (PTQ, int8 ONNX export, QNN compile, onnxruntime encode
and decode, x264/x265 on the same frames, int8 vs float check, profile with the ESTIMATED NPU time)
on a shipped `tiny` checkpoint and a bundled clip, written as one report folder with the source and
decoded frames side by side."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, emit_json, intra_period, parse_crf_list, parse_hw, positive_int
from mobilecodec.demo_report import FORMAT, REPORT_MARKER

HELP = "run the whole pipeline on the built-in defaults and write a report folder (start here)"
OUTPUT = Output("folder", marker=REPORT_MARKER, marker_format=FORMAT)  # replaced whole, if a demo report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="demo_report", metavar="REPORT",
                   help="report folder to write (replaced atomically; default ./demo_report)")
    p.add_argument("--frames", type=positive_int, default=32, help="code the first N frames of the clip (default 32)")
    p.add_argument("--clip", default="carphone", help="sample clip name or video file (default carphone)")
    p.add_argument("--calib-clip", default=None,
                   help="clip the int8 PTQ calibrates on (default bikes, a training clip, or bigbuckbunny when "
                        "--clip is bikes); neither the clip the demo evaluates nor the held-out carphone")
    p.add_argument("--checkpoint", default=None,
                   help="float checkpoint (shipped name or file); default: the middle-beta shipped tiny checkpoint")
    p.add_argument("--json", metavar="PATH", help="also write report.json here ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the stage lines and progress bars")
    adv = p.add_argument_group("advanced (budgets of the steps)")
    adv.add_argument("--intra-period", type=intra_period, default=32, help="an I-frame every N frames (default 32)")
    adv.add_argument("--block-modes", type=int, choices=(0, 8, 16, 32), default=8, metavar="B",
                     help="P-frame block modes of the int8 encode, BxB blocks (0: off; default 8): the sender keeps "
                          "the residual, the prediction or the reference per block, so quality holds along the "
                          "intra period")
    adv.add_argument("--pairs", type=int, choices=(1, 2), default=2,
                     help="float/int8 pairs for the check; BD-rate needs 2 (default 2)")
    adv.add_argument("--ptq-steps", type=positive_int, default=10, help="PTQ calibration steps (default 10)")
    adv.add_argument("--ptq-gop", type=positive_int, default=3, help="frames per calibration GOP, at least 3 (default 3)")
    adv.add_argument("--ptq-batch", type=positive_int, default=2, help="GOPs per calibration step (default 2)")
    adv.add_argument("--ptq-crop", type=parse_hw, default=(128, 128), metavar="HxW",
                     help="calibration crop, multiples of 64 (default 128x128)")
    adv.add_argument("--ptq-eval-gops", type=int, default=2, help="held-out GOPs for PTQ's PSNR (default 2)")
    adv.add_argument("--sensitivity-frames", type=int, default=3,
                     help="frames for the per-stage int8 ablation (0 = skip; default 3)")
    adv.add_argument("--profile-runs", type=positive_int, default=8,
                     help="timed runs per graph/frame, after 2 warm-up runs (default 8)")
    adv.add_argument("--no-qnn-decode", action="store_true", help="skip decoding on the (emulated) QNN HTP")
    adv.add_argument("--no-ops", action="store_true", help="skip onnxruntime's per-op profile")
    adv.add_argument("--baseline-crf", type=parse_crf_list, default=None, metavar="C[,C...]",
                     help="x264/x265 CRF sweep of the RD plot (default 33,39,45,51)")
    adv.add_argument("--no-baselines", action="store_true", help="skip the x264/x265 sweeps")
    adv.add_argument("--npu-device", choices=("8gen2", "8gen3"), default="8gen2",
                     help="Snapdragon SoC of the ESTIMATED NPU time (default 8gen2)")
    adv.add_argument("--big-size", type=parse_hw, default=(1080, 1920), metavar="HxW",
                     help="frame size of the mobilenvc complexity/buffer tables (default 1080x1920)")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.demo import DemoOptions, run_demo

    if args.no_baselines and args.baseline_crf is not None:
        from mobilecodec.errors import InputError

        raise InputError("--baseline-crf sets the x264/x265 sweep that --no-baselines skips: give one of them")

    opts = DemoOptions(clip=args.clip, calib_clip=args.calib_clip, frames=args.frames, intra_period=args.intra_period, checkpoint=args.checkpoint,
                       block_modes=args.block_modes,
                       pairs=args.pairs, ptq_steps=args.ptq_steps, ptq_gop=args.ptq_gop, ptq_batch=args.ptq_batch,
                       ptq_crop=args.ptq_crop, ptq_eval_gops=args.ptq_eval_gops,
                       sensitivity_frames=args.sensitivity_frames, qnn_decode=not args.no_qnn_decode,
                       profile_runs=args.profile_runs, profile_ops=not args.no_ops, big_size=args.big_size,
                       baselines=() if args.no_baselines else ("x264", "x265"), baseline_crfs=tuple(args.baseline_crf or (33, 39, 45, 51)),
                       npu_device=args.npu_device, progress=not args.no_progress)
    report = run_demo(args.output, opts)
    p = report["runtime"]["point"]
    print(f"{args.output}: {report['clip']['frames']} frames of {report['clip']['name']} on "
          f"{report['runtime']['backend']}: {p['bpp']:.4f} bpp, PSNR-YUV {p['psnr_yuv']:.2f} dB; "
          f"int8 check: {report['check_int8']['verdict']}; {report['timings']['total_s']:.0f} s")
    from pathlib import Path

    from mobilecodec.demo_report import npu_summary

    print("\n".join(npu_summary(report["npu_estimate"], args.npu_device)))
    print(f"report: {Path(args.output) / 'report.md'}")
    emit_json(report, args.json)
    return 0
