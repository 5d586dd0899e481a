"""`mobilecodec decode`: .mnvc stream -> .y4m/.yuv with the PyTorch model, verifying frame hashes."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import emit_json

HELP = "decode a .mnvc bitstream (PyTorch path), checking every frame's hash"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stream", help="input .mnvc stream")
    p.add_argument("-o", "--output", default=None, help="decoded video (.y4m or .yuv); omit to only verify")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint the stream was made with (default: the shipped checkpoint whose "
                        "weights hash the stream names)")
    p.add_argument("--no-verify", action="store_true",
                   help="write frames even when a hash differs (report the mismatch instead of failing)")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _find_checkpoint(stream: str) -> str:
    from mobilecodec.bitstream.format import read_header
    from mobilecodec.checkpoint import load_checkpoint, shipped_checkpoints
    from mobilecodec.errors import BitstreamError

    hdr = read_header(stream)
    for name, path in shipped_checkpoints().items():
        model, _ = load_checkpoint(path)
        if model.cfg.name == hdr.config_id and model.weights_hash() == bytes(hdr.weights_hash):
            return str(path)
    raise BitstreamError(f"stream was encoded with model '{hdr.config_id}' weights "
                         f"{bytes(hdr.weights_hash).hex()[:16]}, which is not a shipped checkpoint; "
                         "pass --checkpoint")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video
    from mobilecodec.errors import InputError

    if not Path(args.stream).is_file():
        raise InputError(f"no such file: {args.stream}")
    if args.output and Path(args.output).suffix.lower() not in (".y4m", ".yuv"):
        raise InputError(f"output must be .y4m or .yuv, got {args.output}")
    ckpt = args.checkpoint or _find_checkpoint(args.stream)
    model, _ = load_checkpoint(ckpt)
    summary = decode_video(model, args.stream, args.output, progress=not args.no_progress,
                           verify=not args.no_verify, checkpoint=ckpt)
    print(f"{args.stream}: {summary['frames']} frames {summary['width']}x{summary['height']}, "
          f"{summary['hash_matches']}/{summary['frames']} frame hashes match the encoder"
          + (f", written to {args.output}" if args.output else ""))
    emit_json(summary, args.json)
    return 0 if summary["hash_matches"] == summary["frames"] else 1
