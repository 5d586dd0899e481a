"""`mobilecodec baseline`: x264 / x265 CRF sweep through ffmpeg (appendix A.1), measured like ours."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilecodec.baselines.ffmpeg import ENCODERS, PRESETS
from mobilecodec.cli.common import Output, emit_json, frame_rate, parse_crf_list, parse_wh, positive_int

HELP = "encode a clip with x264/x265 (ffmpeg, B-frames off) over a CRF sweep and measure RD points"
OUTPUT = Output("folder", dest="out")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="video to encode (.y4m, .yuv, .mp4, .mkv, .mov), or a bundled "
                   "sample clip name: carphone, bikes, bigbuckbunny")
    p.add_argument("-o", "--out", required=True, metavar="OUT",
                   help="output folder for the .mp4 files, <codec>_<preset>.json and <codec>_<preset>_rd.png "
                        "(with --intra-period N: <codec>_<preset>_ipN.json, ...)")
    p.add_argument("--codec", required=True, choices=sorted(ENCODERS), help="standard codec")
    p.add_argument("--preset", default="medium", choices=PRESETS, help="x264/x265 preset (default: medium)")
    p.add_argument("--crf", type=parse_crf_list, default=[23, 28, 33, 38], metavar="LIST",
                   help="comma-separated CRF values in 0..51 (default 23,28,33,38)")
    p.add_argument("--frames", type=positive_int, metavar="N", help="encode only the first N frames")
    p.add_argument("--size", type=parse_wh, metavar="WxH", help="frame size of a raw .yuv input")
    p.add_argument("--fps", type=frame_rate, metavar="F",
                   help="frame rate of a raw .yuv input, e.g. 25, 29.97 or 30000/1001 (overrides the file's rate otherwise)")
    p.add_argument("--matrix", choices=("bt601", "bt709"), default="bt601",
                   help="YUV->RGB matrix for PSNR-RGB and MS-SSIM-RGB (default bt601)")
    p.add_argument("--intra-period", type=positive_int, metavar="N",
                   help="an I-frame every N frames and nowhere else (keyint=N:min-keyint=N:scenecut=0; not the "
                        "appendix command): the GOPs `mobilecodec eval --intra-period N` codes, with the same "
                        "P-frame drift report (default: the appendix command's GOPs)")
    p.add_argument("--json", metavar="PATH", help="also write the results JSON here ('-' = stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.baselines.runner import BaselineConfig, format_table, run_baseline
    from mobilecodec.io import check_size_applies, resolve_input

    check_size_applies(args.size, [args.input])  # by its name: a sample clip's is never .yuv
    cfg = BaselineConfig(codec=args.codec, preset=args.preset, crfs=args.crf,
                         input=resolve_input(args.input), out_dir=Path(args.out), frames=args.frames,
                         size=args.size, fps=args.fps, matrix=args.matrix,
                         progress=not args.no_progress, intra_period=args.intra_period)
    results = run_baseline(cfg, kept=[("the --json file", args.json)])
    # With --json - the JSON owns stdout, so the table goes to stderr.
    print(format_table(results))
    emit_json(results, args.json)
    return 0
