"""`mobilecodec encode`: video file -> .mnvc stream with the PyTorch model."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilecodec.cli.common import (Output, add_block_modes_argument, add_refine_argument, add_threads_argument,
                                    emit_json, frame_rate, intra_period, one_cold_run, parse_wh, positive_int)

HELP = "encode a video into a .mnvc bitstream (PyTorch, or an export package on onnxruntime)"
OUTPUT = Output("file")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file: .y4m, .yuv (with --size), .mp4/.mkv/.mov, or a sample clip name "
                   "(carphone, bikes, bigbuckbunny)")
    p.add_argument("-o", "--output", required=True, help="output stream (.mnvc)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint",
                       help="checkpoint file, or the name of a shipped checkpoint (see `mobilecodec info`)")
    model.add_argument("--package", metavar="PKG",
                       help="export package folder (or a `mobilecodec compile` folder for --ep qnn): run its "
                            "ONNX graphs with onnxruntime; decode the stream with the same package and backend (decode "
                            "--package): other backends' reconstructions differ by rounding, an int8 package's by more")
    p.add_argument("--ep", choices=("cpu", "qnn"), default=None,
                   help="onnxruntime execution provider for --package (default cpu; qnn: HTP backend, emulated "
                        "on x86)")
    p.add_argument("--intra-period", type=intra_period, default=32, help="an I-frame every N frames (default 32)")
    p.add_argument("--frames", type=positive_int, default=None, help="encode only the first N frames")
    p.add_argument("--size", type=parse_wh, default=None, metavar="WxH", help="frame size of a raw .yuv input")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="frame rate to record, e.g. 25 or 30000/1001: a raw .yuv input's (default 30), or instead of a .y4m/.mp4 file's")
    add_threads_argument(p)
    add_refine_argument(p)
    add_block_modes_argument(p)
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_output(args: argparse.Namespace) -> None:
    """The output must be named .mnvc: `-o clip.y4m` (a swapped argument) must not overwrite a video."""
    from pathlib import Path

    from mobilecodec.errors import InputError

    if Path(args.output).suffix.lower() != ".mnvc":  # `.mnvc` alone has none: a name is wanted before it
        raise InputError(f"output must be a .mnvc stream (NAME.mnvc), got {args.output}")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.runtime.threads import set_threads

    _check_output(args)
    from mobilecodec.io import check_size_applies

    check_size_applies(args.size, [args.input])  # by its name: a sample clip's is never .yuv
    set_threads(args.threads)
    from mobilecodec.io import resolve_video

    src = resolve_video(args.input)  # before the model loads; names the clips for a bare name
    if args.ep and not args.package:
        from mobilecodec.errors import InputError

        raise InputError("--ep applies to --package encodes (the PyTorch encoder runs on this CPU)")
    if args.package:
        if args.refine:
            from mobilecodec.errors import InputError

            raise InputError("--refine needs the PyTorch model (--checkpoint), not an export package")
        return _run_package(args, src)
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.block_modes import BlockModeOptions
    from mobilecodec.codec.refine import RefineOptions
    from mobilecodec.codec.video import encode_video

    model, obj = load_checkpoint(args.checkpoint)
    if not model.ready_for_coding:
        from mobilecodec.errors import CheckpointError

        raise CheckpointError(f"checkpoint {args.checkpoint} has no entropy-coding tables "
                              "(it was saved before model.update())")
    summary = encode_video(model, src, args.output, intra_period=args.intra_period,
                           max_frames=args.frames, size=args.size, fps=args.fps, progress=not args.no_progress,
                           refine=RefineOptions.for_checkpoint(obj, args.refine, args.checkpoint) if args.refine else None,
                           modes=BlockModeOptions.for_checkpoint(obj, args.block_modes, args.checkpoint)
                           if args.block_modes else None)
    summary["checkpoint"] = str(args.checkpoint)
    _report(summary, args)
    return 0


def _run_package(args: argparse.Namespace, src: Path) -> int:
    from mobilecodec.runtime.stream import encode_package

    summary = encode_package(args.package, src, args.output, ep=args.ep or "cpu",
                             block_modes=args.block_modes or 0, intra_period=args.intra_period,
                             max_frames=args.frames, size=args.size, fps=args.fps, progress=not args.no_progress)
    _report(summary, args)
    return 0


def _report(summary: dict, args: argparse.Namespace) -> None:
    n = summary["frames"]
    from mobilecodec.io import warn_fewer_frames

    warn_fewer_frames(summary["input"], n, args.frames, "encoded")
    types = "".join(f["type"] for f in summary["per_frame"])
    # one cold run: the time includes opening the input and the first call's setup, which dominate a
    # short clip; warm speeds are what benchmarks/ measure
    summary["timing"] = one_cold_run()
    threads = summary["timing"]["threads"]
    on = f"on {threads} thread{'s' if threads > 1 else ''}" if threads else "at the default thread count"
    print(f"{summary['output']}: {n} frames {summary['width']}x{summary['height']}, "
          f"{summary['file_bytes']} bytes, {summary['bpp']:.4f} bpp, {n / summary['seconds']:.2f} frames/s "
          f"in one cold run {on} ({types[:40]}{'...' if len(types) > 40 else ''})"
          + (f" [{summary['backend']}]" if "backend" in summary else ""))
    emit_json(summary, args.json)
