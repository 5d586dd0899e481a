"""`mobilecodec profile`: complexity (Table 6 layout) and buffer (HyTIP Table 7 layout)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import emit_json, parse_hw, positive_float

HELP = "count params, kMACs/px and buffer size/bandwidth of a config or checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="registered config name (e.g. mobilenvc, tiny)")
    src.add_argument("--checkpoint", help="checkpoint file or shipped checkpoint name")
    p.add_argument("--size", type=parse_hw, default=(1080, 1920), metavar="HxW",
                   help="frame size as HEIGHTxWIDTH (default 1080x1920, as Table 6)")
    p.add_argument("--fps", type=positive_float, default=30.0, help="frame rate for buffer bandwidth (default 30)")
    p.add_argument("--buffer-dtype", choices=("float32", "float16", "int16", "int8"), default="int8",
                   help="storage type of buffered flow/features (the decoded frame is always uint8); "
                        "default int8 as on the NPU")
    p.add_argument("--json", metavar="PATH", help="write all numbers as JSON ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from runtime.codec_profile import buffer_report, count_codec, format_buffer, format_table6

    if args.config:
        from mobilecodec.models.codec import VideoCodec
        from mobilecodec.models.configs import get_config

        model = VideoCodec(get_config(args.config))
    else:
        from mobilecodec.checkpoint import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint)
    h, w = args.size
    if h % 2 or w % 2:
        from mobilecodec.errors import InputError

        raise InputError(f"YUV420 needs an even frame size, got {h}x{w}")
    c = count_codec(model, h, w)
    print(format_table6(c))
    print()
    b = buffer_report(model, h, w, args.fps, dtype=args.buffer_dtype)
    print(format_buffer(b, model.cfg.name, h, w))
    emit_json({"complexity": c.to_dict(), "buffer": b.to_dict()}, args.json)
    return 0
