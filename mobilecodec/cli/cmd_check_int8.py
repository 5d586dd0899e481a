"""`mobilecodec check-int8`: float vs int8 through the real encoder and decoder (file bits,
hash-verified decode): RD points, BD-rate of int8 against float, drift along the GOP and the
stages most sensitive to quantization. Exit 0 = pass, 1 = BD-rate loss above --max-bdrate,
2 = bad input or no BD-rate (a single float/int8 pair gives one RD point per curve; BD-rate
with pchip needs >= 2, so give several checkpoints comma-separated)."""

from __future__ import annotations

import argparse
import sys

from mobilecodec.cli.common import emit_json, positive_int

HELP = "int8 vs float through real encode/decode: RD, BD-rate (exit 1 above --max-bdrate), drift, sensitive stages"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos (.y4m/.yuv/.mp4 or sample names)")
    p.add_argument("--float", dest="floats", required=True, metavar="C[,C...]",
                   help="float checkpoints (files or shipped names), comma-separated, one per RD point")
    p.add_argument("--int8", dest="int8s", required=True, metavar="Q[,Q...]",
                   help="int8 folders from ptq/qat, comma-separated, paired with --float by order")
    p.add_argument("--intra-period", type=positive_int, default=32, help="I-frame every N frames (default 32)")
    p.add_argument("--frames", type=positive_int, default=None, help="code only the first N frames of each input")
    p.add_argument("--max-bdrate", type=float, default=5.0,
                   help="allowed BD-rate loss of int8 vs float in %% (worst of PSNR-YUV, PSNR-RGB; default 5)")
    p.add_argument("--sensitivity-frames", type=int, default=3,
                   help="frames of the first input for the per-stage ablation (0 = skip; default 3)")
    p.add_argument("--no-frontier", action="store_true",
                   help="compute BD-rate on all RD points (fails on a non-monotonic curve) instead of each "
                        "curve's RD frontier (dominated points left out and listed)")
    p.add_argument("--matrix", choices=("bt601", "bt709"), default="bt601", help="YUV->RGB matrix (default bt601)")
    p.add_argument("-o", "--output", metavar="OUT", help="report folder: check_int8.json/.md, RD JSONs, PNG plots")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.errors import InputError
    from quant.check import CheckOptions, check_int8, load_pairs, split_list

    opts = CheckOptions(intra_period=args.intra_period, frames=args.frames, max_bdrate=args.max_bdrate,
                        matrix=args.matrix, sensitivity_frames=args.sensitivity_frames,
                        frontier=not args.no_frontier, progress=not args.no_progress)
    opts.validate()
    from mobilecodec.io import resolve_input
    from pathlib import Path

    for i in args.inputs:
        if not Path(resolve_input(i)).is_file():
            raise InputError(f"no such input video: {i}")
    pairs = load_pairs(split_list(args.floats), split_list(args.int8s))
    report = check_int8(pairs, args.inputs, opts, args.output)
    for res in report["results"]:
        for a, b in zip(res["float"]["points"], res["int8"]["points"]):
            print(f"{Path(res['source']).name}: {a['label']}: float {a['bpp']:.4f} bpp {a['psnr_yuv']:.3f} dB | "
                  f"int8 {b['bpp']:.4f} bpp {b['psnr_yuv']:.3f} dB")
    sens = report.get("sensitivity") or {}
    if sens.get("rows"):
        top = ", ".join(f"{r['stage']} ({r['d_psnr_yuv']:+.3f} dB)" for r in sens["rows"][:3])
        print(f"most sensitive stages: {top}")
    print(f"verdict: {report['verdict']}")
    emit_json(report, args.json)
    if report["passed"] is None:
        print("mobilecodec check-int8: error: no BD-rate could be computed; see the verdict above", file=sys.stderr)
        return 2
    return 0 if report["passed"] else 1
