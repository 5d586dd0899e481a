"""`mobilecodec check-int8`: float vs int8 through the real encoder and decoder (file bits,
hash-verified decode): RD points, per-point deltas, BD-rate of int8 against float where the curves
can be judged, drift along the GOP and the stages most sensitive to quantization.

Exit codes: 0 PASS (BD-rate loss within --max-bdrate), 1 FAIL (above it), 2 bad input or an error,
3 INCONCLUSIVE (a curve spans < 1 dB, the curves share < half of their quality ranges, a curve is
not monotonic, or there is a single float/int8 pair: no BD-rate is judged)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import (Output, add_block_modes_argument, emit_json, finite_float, frame_rate,
                                    intra_period, parse_wh, positive_int)

HELP = ("int8 vs float through real encode/decode: per-point deltas, BD-rate (exit 0 pass, 1 fail, 3 inconclusive), "
        "drift, sensitive stages")
EPILOG = """exit codes:
  0  PASS: int8 BD-rate loss (worst of PSNR-YUV, PSNR-RGB, mean over inputs) <= --max-bdrate
  1  FAIL: the loss is above --max-bdrate (also when another metric cannot be judged, if a metric
     judged on every input is already above it)
  2  bad input (missing file, unpaired --float/--int8, ...) or an error
  3  INCONCLUSIVE: no BD-rate is judged because a curve spans < 1 dB of quality, the float and int8
     curves share < 50 % of each one's quality range, a curve is not monotonic (see --frontier),
     or there is only one float/int8 pair; the report still lists the per-point deltas
  141  stdout was closed early (e.g. piped into head)"""
OUTPUT = Output("folder", json_outside=True)  # its report writes check_int8.json and RD results there


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos (.y4m, .yuv with --size, .mp4, ... or sample names)")
    p.add_argument("--float", dest="floats", required=True, metavar="C[,C...]",
                   help="float checkpoints (files or shipped names), comma-separated, one per RD point")
    p.add_argument("--int8", dest="int8s", required=True, metavar="Q[,Q...]",
                   help="int8 folders from ptq/qat, comma-separated, paired with --float by order")
    p.add_argument("--intra-period", type=intra_period, default=32, help="I-frame every N frames (default 32)")
    p.add_argument("--frames", type=positive_int, default=None, help="code only the first N frames of each input")
    p.add_argument("--max-bdrate", type=finite_float, default=5.0,
                   help="allowed BD-rate loss of int8 vs float in %% (worst of PSNR-YUV, PSNR-RGB; default 5)")
    p.add_argument("--sensitivity-frames", type=int, default=3,
                   help="frames of the first input for the per-stage ablation (0 = skip; default 3)")
    p.add_argument("--frontier", action="store_true",
                   help="compute BD-rate over each curve's RD frontier: points another point of the same curve "
                        "beats on rate and quality are dropped (and listed). Off by default: dropping a point "
                        "can hide int8 damage, so a non-monotonic curve makes the check inconclusive")
    p.add_argument("--backend", choices=("sim", "onnxruntime"), default="sim",
                   help="what codes the int8 side: sim = the aimet simulation in PyTorch (default), onnxruntime = "
                        "each int8 folder exported as a QDQ package at the input's size and run on onnxruntime "
                        "CPU, the graphs you deploy (slower: one export per point and input)")
    add_block_modes_argument(p)
    p.add_argument("--matrix", choices=("bt601", "bt709"), default="bt601", help="YUV->RGB matrix (default bt601)")
    p.add_argument("-o", "--output", metavar="OUT", help="report folder: check_int8.json/.md, RD JSONs, PNG plots")
    p.add_argument("--size", type=parse_wh, default=None, metavar="WxH", help="frame size of raw .yuv inputs")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="frame rate to record, e.g. 25 or 30000/1001: a raw .yuv input's (default 30), or instead of "
                        "a .y4m/.mp4 file's")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from mobilecodec.quant.check import (EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, CheckOptions, check_inputs,
                                         check_int8, load_pairs, split_list)
    from mobilecodec.quant.check_report import bd_lines, fitted_note

    opts = CheckOptions(intra_period=args.intra_period, frames=args.frames, max_bdrate=args.max_bdrate,
                        matrix=args.matrix, sensitivity_frames=args.sensitivity_frames,
                        frontier=args.frontier, progress=not args.no_progress,
                        block_modes=args.block_modes or 0, raw_size=args.size, fps=args.fps)
    opts.validate()
    check_inputs(args.inputs, opts)  # before the models load, as eval's check_before_loading
    pairs = load_pairs(split_list(args.floats), split_list(args.int8s))
    engine = None
    if args.backend == "onnxruntime":
        from mobilecodec.runtime.stream import int8_package_engine

        def engine(pair, source, workdir):
            return int8_package_engine(pair.float_model, pair.int8_model, source, workdir,
                                       quantized_dir=pair.int8_path)
    report = check_int8(pairs, args.inputs, opts, args.output, int8_engine=engine)
    for res in report["results"]:
        name = Path(res["source"]).name
        for a, b in zip(res["float"]["points"], res["int8"]["points"]):
            print(f"{name}: {a['label']}: float {a['bpp']:.4f} bpp {a['psnr_yuv']:.3f} dB | "
                  f"int8 {b['bpp']:.4f} bpp {b['psnr_yuv']:.3f} dB")
        for line in bd_lines(res["comparison"]):
            print(f"{name}: {line}")
    sens = report.get("sensitivity") or {}
    if sens.get("rows"):
        top = ", ".join(f"{r['stage']} ({r['d_psnr_yuv']:+.3f} dB)" for r in sens["rows"][:3])
        print(f"most sensitive stages: {top}")
    print(f"int8 side coded by: {report['int8_backend']}")
    print(f"verdict: {report['verdict']}")
    for f in report["fitted_on_input"]:
        print(f"note: {fitted_note(f)}", file=sys.stderr)
    emit_json(report, args.json)
    if report["passed"] is None:
        return EXIT_INCONCLUSIVE
    return EXIT_PASS if report["passed"] else EXIT_FAIL
