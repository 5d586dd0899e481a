"""`mobilecodec profile`: complexity (Table 6 layout), buffer (HyTIP Table 7 layout) and, for an
export package, latency on onnxruntime (per graph, per frame, host steps, per-op profile)."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import emit_json, parse_hw, positive_float, positive_int

HELP = "count params, kMACs/px and buffer size/bandwidth; time an export package on onnxruntime"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", nargs="?", default=None,
                   help="export package folder (or a `mobilecodec compile` folder with --ep qnn): counts from "
                        "its ONNX graphs and from PyTorch, and latency on onnxruntime")
    p.add_argument("--config", help="registered config name (e.g. mobilenvc, tiny)")
    p.add_argument("--checkpoint", help="checkpoint file or shipped checkpoint name")
    p.add_argument("--size", type=parse_hw, default=(1080, 1920), metavar="HxW",
                   help="frame size as HEIGHTxWIDTH for --config/--checkpoint (default 1080x1920, as Table 6)")
    p.add_argument("--fps", type=positive_float, default=30.0, help="frame rate for buffer bandwidth (default 30)")
    p.add_argument("--buffer-dtype", choices=("float32", "float16", "int16", "int8"), default="int8",
                   help="storage type of buffered flow/features for --config/--checkpoint (the decoded frame "
                        "is always uint8); default int8 as on the NPU. Packages use their graphs' dtypes")
    p.add_argument("--ep", choices=("cpu", "qnn"), default="cpu",
                   help="onnxruntime execution provider for a package (qnn: HTP backend, emulated on x86)")
    p.add_argument("--runs", type=positive_int, default=5, help="timed runs per graph / frame type (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs first (default 1)")
    p.add_argument("--no-ops", action="store_true", help="skip onnxruntime's per-op profile")
    p.add_argument("-o", "--output", metavar="REPORT", help="report folder: profile.json, profile.md, PNG charts")
    p.add_argument("--json", metavar="PATH", help="write all numbers as JSON ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.errors import InputError

    chosen = [x for x in (args.package, args.config, args.checkpoint) if x]
    if len(chosen) != 1:
        raise InputError("profile needs exactly one of: a package folder, --config NAME, --checkpoint FILE")
    if args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    if args.package:
        report = _package(args)
    else:
        report = _model(args)
    if args.output:
        from runtime.report import write_report

        files = write_report(report, args.output)
        print(f"report written to {args.output}: {', '.join(files)}")
    emit_json(report, args.json)
    return 0


def _model(args: argparse.Namespace) -> dict:
    from runtime.codec_profile import format_buffer, format_table6

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
    from runtime.profiler import profile_model

    report, comp, buf = profile_model(model, h, w, args.fps, args.buffer_dtype)
    print(format_table6(comp))
    print()
    print(format_buffer(buf, model.cfg.name, h, w))
    return report


def _package(args: argparse.Namespace) -> dict:
    from runtime.codec_profile import BufferReport, CodecComplexity, StageCount, format_buffer, format_table6
    from runtime.profiler import profile_package
    from runtime.report import latency_md

    report = profile_package(args.package, ep=args.ep, fps=args.fps, runs=args.runs, warmup=args.warmup,
                             ops=not args.no_ops, progress=True)
    cd = report["complexity"]
    h, w = cd["height"], cd["width"]
    comp = CodecComplexity(cd["config"], h, w, tuple(cd["padded"]),
                           {k: StageCount(**v) for k, v in cd["stages"].items()},
                           {s: {r: (v["params_M"], v["kmacs_per_px"]) for r, v in rows.items()}
                            for s, rows in cd["table6"].items()}, cd["warp_output_elements"])
    print(format_table6(comp).replace("Complexity of", "Complexity (from the ONNX graphs) of", 1))
    agree = report["onnx_vs_pytorch"]
    same = sum(v["equal"] for v in agree.values())
    print(f"ONNX and PyTorch counts agree exactly on {same}/{len(agree)} graphs (MACs and params)")
    print()
    print(format_buffer(BufferReport(**report["buffer"]), cd["config"], h, w))
    print()
    print("\n".join(latency_md(report)))
    return report
