"""`mobilecodec eval`: real encode + hash-verified decode of each checkpoint, RD JSON, plots, BD-rate."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import (Output, add_block_modes_argument, add_refine_argument, add_threads_argument,
                                    display_name, emit_json, frame_rate, intra_period, parse_wh, positive_int)
from mobilecodec.rdresults import BD_MIN_POINTS

HELP = "evaluate checkpoints or export packages with the real encoder and decoder: RD JSON, plots, I/P costs, BD-rate"
OUTPUT = Output("folder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files (.y4m, .mp4, ...) or sample clip names (carphone, bikes, bigbuckbunny)")
    p.add_argument("--checkpoint", metavar="C[,C2,...]", action="append", default=[],
                   help="checkpoint files or shipped checkpoint names, comma-separated (one RD point each)")
    p.add_argument("--package", metavar="P[,P2,...]", action="append", default=[],
                   help="export package folders (`mobilecodec export`, float or --int8; for --ep qnn also "
                        "`mobilecodec compile` folders), comma-separated: one RD point each, encoded and decoded by "
                        "the package's graphs on onnxruntime (--ep); the package must be exported at the input's size")
    p.add_argument("--ep", choices=("cpu", "qnn"), default=None,
                   help="onnxruntime execution provider of the --package points (default cpu; qnn: the HTP "
                        "backend, emulated on x86, which needs int8 graphs): the RD the NPU would give")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder: <input>_eval.json, plots, streams/")
    p.add_argument("--intra-period", type=intra_period, default=32, help="an I-frame every N frames (default 32)")
    p.add_argument("--frames", type=positive_int, default=None, help="code only the first N frames")
    p.add_argument("--anchor", metavar="JSON", help="RD result JSON (e.g. from `mobilecodec baseline`) to plot "
                   f"and compute BD-rate against (pchip; as for `mobilecodec bdrate`, the BD-rate needs >= "
                   f"{BD_MIN_POINTS} points per curve: with fewer checkpoints the points are plotted and the "
                   "report says why no BD-rate)")
    p.add_argument("--matrix", choices=("bt601", "bt709"), default="bt601",
                   help="YUV->RGB matrix for PSNR-RGB and MS-SSIM-RGB (default bt601)")
    p.add_argument("--name", type=display_name, metavar="CODEC", help="codec name in the results (default: the config name)")
    add_refine_argument(p)
    add_block_modes_argument(p)
    p.add_argument("--save-decoded", action="store_true", help="also keep the decoded videos in OUT/streams/")
    p.add_argument("--size", type=parse_wh, default=None, metavar="WxH", help="frame size of raw .yuv inputs")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="frame rate to record, e.g. 25 or 30000/1001: a raw .yuv input's (default 30), or instead of "
                        "a .y4m/.mp4 file's")
    add_threads_argument(p)
    p.add_argument("--json", metavar="PATH", help="write the whole report as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.evaluate import EvalOptions, check_before_loading, evaluate, format_report
    from mobilecodec.runtime.threads import set_threads

    set_threads(args.threads)
    checkpoints = [s.strip() for text in args.checkpoint for s in text.split(",") if s.strip()]
    packages = [s.strip() for text in args.package for s in text.split(",") if s.strip()]
    if args.ep and not packages:  # the list, not the text: `--package ,` names none
        from mobilecodec.errors import InputError

        raise InputError("--ep applies to --package points (checkpoints are coded by PyTorch on this CPU)")
    opts = EvalOptions(intra_period=args.intra_period, frames=args.frames, matrix=args.matrix,
                       save_decoded=args.save_decoded, codec_name=args.name, progress=not args.no_progress,
                       refine_steps=args.refine or 0, block_modes=args.block_modes or 0, raw_size=args.size,
                       fps=args.fps)
    check_before_loading(args.inputs, opts, bool(checkpoints), bool(packages))  # before any session opens
    engines = _engines(packages, args.ep or "cpu")
    report = evaluate(checkpoints, args.inputs, opts, args.output, anchor=args.anchor, engines=engines,
                      kept=[("the --json file", args.json)])
    print(format_report(report), end="")
    emit_json(report, args.json)
    return 0


def _engines(packages: list[str], ep: str) -> list:
    """An onnxruntime engine on `ep` per package folder (its own threads: `--threads`); a folder that
    is missing or not a package, or float graphs on qnn, is refused by the package loader."""
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.threads import get_threads

    return [OnnxEngine(p, ep=ep, threads=get_threads()) for p in packages]
