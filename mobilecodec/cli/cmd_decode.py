"""`mobilecodec decode`: .mnvc stream -> .y4m/.yuv with the PyTorch model, verifying frame hashes."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, add_threads_argument, emit_json, one_cold_run

HELP = "decode a .mnvc bitstream (PyTorch, or an export package on onnxruntime), checking frame hashes"
OUTPUT = Output("file")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stream", help="input .mnvc stream")
    p.add_argument("-o", "--output", default=None, help="decoded video (.y4m or .yuv); omit to only verify")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint the stream was made with (default: the shipped checkpoint whose "
                        "weights hash the stream names)")
    p.add_argument("--package", metavar="PKG",
                   help="export package folder (or a `mobilecodec compile` folder for --ep qnn): decode with its "
                        "ONNX graphs on onnxruntime; exits 1 when a decoded frame does not reproduce the "
                        "encoder's hash (see --allow-drift)")
    p.add_argument("--ep", choices=("cpu", "qnn"), default=None,
                   help="onnxruntime execution provider for --package (default cpu; qnn: HTP backend, emulated on x86)")
    p.add_argument("--drift", action="store_true",
                   help="with --package: also decode with PyTorch and report per-frame hash matches and the "
                        "PSNR between the two decodes")
    p.add_argument("--allow-drift", action="store_true",
                   help="with --package: exit 0 even when frame hashes differ from the encoder's (expected when "
                        "the stream was encoded on another backend: float/int8 results are not bit-exact across "
                        "backends and CPUs); the mismatch count is still reported")
    p.add_argument("--no-verify", action="store_true",
                   help="write every frame even when a hash differs and report the count (exit 1 when any differs) "
                        "instead of stopping at the first (PyTorch decodes; --package decodes always do, with "
                        "--allow-drift for exit 0)")
    add_threads_argument(p)
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _find_checkpoint(stream: str) -> str:
    from mobilecodec.bitstream.format import read_header
    from mobilecodec.checkpoint import shipped_checkpoint_of
    from mobilecodec.errors import BitstreamError

    hdr = read_header(stream)
    path = shipped_checkpoint_of(hdr.config_id, bytes(hdr.weights_hash))
    if path is not None:
        return str(path)
    raise BitstreamError(f"stream was encoded with model '{hdr.config_id}' weights "
                         f"{bytes(hdr.weights_hash).hex()[:16]}, which is not a shipped checkpoint; "
                         "pass --checkpoint")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.runtime.threads import set_threads

    set_threads(args.threads)
    from pathlib import Path

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video
    from mobilecodec.errors import InputError

    from mobilecodec.fsutil import check_input_file

    check_input_file(args.stream, "stream file")
    if args.output and Path(args.output).suffix.lower() not in (".y4m", ".yuv"):
        raise InputError(f"output must be a .y4m or .yuv video (NAME.y4m), got {args.output}")
    if args.package:
        if args.checkpoint:
            raise InputError("pass either --checkpoint or --package, not both")
        if args.no_verify:
            raise InputError("--no-verify applies to PyTorch decodes; a --package decode writes every frame and "
                             "reports the hashes that match (--allow-drift: exit 0 all the same)")
        return _run_package(args)
    if args.allow_drift:
        raise InputError("--allow-drift applies to --package decodes (use --no-verify with the PyTorch decoder)")
    if args.ep:
        raise InputError("--ep applies to --package decodes (the PyTorch decoder runs on this CPU)")
    if args.drift:
        raise InputError("--drift compares an onnxruntime decode with PyTorch: it needs --package")
    ckpt = args.checkpoint or _find_checkpoint(args.stream)
    model, _ = load_checkpoint(ckpt)
    summary = decode_video(model, args.stream, args.output, progress=not args.no_progress,
                           verify=not args.no_verify, checkpoint=ckpt)
    print(f"{args.stream}: {summary['frames']} frames {summary['width']}x{summary['height']}, "
          f"{summary['hash_matches']}/{summary['frames']} frame hashes match the encoder"
          + (f", written to {args.output}" if args.output else ""))
    emit_json(dict(summary, timing=one_cold_run()), args.json)
    return 0 if summary["hash_matches"] == summary["frames"] else 1


def _run_package(args: argparse.Namespace) -> int:
    """Exit 0 when every frame reproduces the encoder's hash (or with --allow-drift), else 1."""
    import sys

    from mobilecodec.runtime.stream import decode_package, format_drift

    summary = decode_package(args.package, args.stream, args.output, ep=args.ep or "cpu", drift=args.drift,
                             progress=not args.no_progress)
    print(f"{args.stream}: {summary['frames']} frames {summary['width']}x{summary['height']} on "
          f"{summary['backend']}, {summary['hash_matches']}/{summary['frames']} frame hashes match the encoder"
          + (f", written to {args.output}" if args.output else ""))
    if "drift" in summary:
        print(format_drift(summary["drift"]))
    emit_json(dict(summary, timing=one_cold_run()), args.json)
    mismatched = summary["frames"] - summary["hash_matches"]
    if mismatched and not args.allow_drift:
        first = next(f["index"] for f in summary["per_frame"] if not f["hash_match"])
        # "error:" as every command's one-line failure; exit 1 (a verification failed), not 2 (bad input)
        print(f"mobilecodec decode: error: {mismatched} of {summary['frames']} decoded frames (first: frame {first}) "
              "differ from the encoder's reconstruction: a corrupt stream, or one encoded on another backend "
              "(pass --allow-drift if that is expected)", file=sys.stderr)
        return 1
    return 0
