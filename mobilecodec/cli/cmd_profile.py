"""`mobilecodec profile`: complexity (Table 6 layout), buffer (HyTIP Table 7 layout) and, for an
export package, latency on onnxruntime (per graph, per frame, host steps, per-op profile). Also
any ONNX file or `--module package.module:factory`: params, MACs, kMACs/px, per-layer table, state
buffer, DRAM traffic and the HTP op check; `--device` adds an ESTIMATED Snapdragon HTP latency."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilecodec.cli.common import (Output, add_threads_argument, emit_json, frame_rate, given_options, parse_hw,
                                    portrait_note, positive_int)

HELP = ("count params, kMACs/px, buffer and DRAM traffic of a package, config or any ONNX/PyTorch model; "
        "time packages on onnxruntime; estimate Snapdragon NPU latency")
OUTPUT = Output("folder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", nargs="?", default=None,
                   help="export package folder (or a `mobilecodec compile` folder with --ep qnn): counts from "
                        "its ONNX graphs and from PyTorch, and latency on onnxruntime; or any MODEL.onnx file")
    p.add_argument("--module", metavar="PKG.MOD:FACTORY",
                   help="profile a PyTorch model: FACTORY() returns (nn.Module, example inputs); exported "
                        "to ONNX with its inputs named after forward's parameters and its outputs output_0, "
                        "output_1, ... in the order forward returns them (for --state)")
    p.add_argument("--state", nargs="+", metavar="NAME",
                   help="state kept between frames, for the buffer size and bandwidth: a graph input or output name, "
                        "or IN:OUT for the input a frame reads and the output it writes (counted once), split at "
                        "the ':' whose two sides are both graph names, so names with '::' work; with --module, "
                        "e.g. state:output_1 (inputs after forward's parameters, outputs output_N); "
                        "default: buffer_in.* / buffer_out.* graph I/O")
    p.add_argument("--device", choices=("8gen2", "8gen3", "all"),
                   help="add the ESTIMATED NPU latency on a Snapdragon 8 Gen 2 (HTP v73) / 8 Gen 3 (HTP v75)")
    p.add_argument("--precision", choices=("float", "w8a8", "w8a16"),
                   help="precision for the NPU estimate and DRAM traffic (default: from the graph: QDQ -> int8)")
    p.add_argument("--config", help="registered config name (e.g. mobilenvc, tiny)")
    p.add_argument("--checkpoint", help="checkpoint file or shipped checkpoint name")
    p.add_argument("--size", type=parse_hw, default=None, metavar="HxW",
                   help="frame size as HEIGHTxWIDTH for --config/--checkpoint (default 1080x1920, as Table 6); "
                        "for an ONNX file or module, the frame kMACs/px divide by (default: the package's "
                        "frame for a graph file of an export package, else the largest 4-D input, read as NHWC "
                        "when its last dimension holds at most 4 channels)")
    p.add_argument("--fps", type=frame_rate, default=30.0, help="frame rate for buffer bandwidth (default 30)")
    p.add_argument("--buffer-dtype", choices=("float32", "float16", "int16", "int8"), default=None,
                   help="storage type of buffered flow/features for --config/--checkpoint (the decoded frame "
                        "is always uint8); default int8 as the int8 codec keeps it on the NPU, or with --device "
                        "the estimate's precision's activation type (float, the default there: float16; w8a16: "
                        "int16). Packages use their graphs' dtypes")
    p.add_argument("--ep", choices=("cpu", "qnn"), default=None,
                   help="package: onnxruntime execution provider (default cpu; qnn: HTP backend, emulated on x86)")
    p.add_argument("--runs", type=positive_int, default=None,
                   help="package: timed runs per graph / frame type (default 8)")
    p.add_argument("--warmup", type=int, default=None, help="package: untimed warm-up runs first (default 2)")
    p.add_argument("--no-ops", action="store_true", help="package: skip onnxruntime's per-op profile")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_threads_argument(p)
    p.add_argument("-o", "--output", metavar="REPORT", help="report folder: profile.json, profile.md, PNG charts")
    p.add_argument("--json", metavar="PATH", help="write all numbers as JSON ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.errors import InputError
    from mobilecodec.runtime.threads import set_threads

    set_threads(args.threads)

    chosen = [x for x in (args.package, args.config, args.checkpoint, args.module) if x]
    if len(chosen) != 1:
        raise InputError("profile needs exactly one of: a package folder or .onnx file, --config NAME, "
                         "--checkpoint FILE, --module PKG.MOD:FACTORY")
    is_onnx = bool(args.package) and args.package.lower().endswith(".onnx") and not Path(args.package).is_dir()
    latency_only = given_options(args, "ep", "runs", "warmup", "no_ops")
    if latency_only and not (args.package and not is_onnx):
        raise InputError(f"{', '.join(latency_only)} appl{'ies' if len(latency_only) == 1 else 'y'} to a package folder "
                         "(its graphs are run and timed)")
    if args.package and not is_onnx and args.size is not None:
        raise InputError("--size applies to --config/--checkpoint or an ONNX file/module; a package has its size")
    if args.precision and not args.device and not (is_onnx or args.module):
        raise InputError("--precision sets the NPU estimate's precision: give --device too")
    if args.warmup is not None and args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    if args.buffer_dtype is not None and not (args.config or args.checkpoint):
        raise InputError("--buffer-dtype applies to --config/--checkpoint; a package, ONNX file or module "
                         "keeps its state at its graphs' own types")
    if args.state and not (is_onnx or args.module):
        raise InputError("--state applies to an ONNX file or --module (packages name their buffer in the manifest)")
    if args.output:  # before the work: --json or an input in the place of a report file, a folder in one's
        from mobilecodec.fsutil import check_planned_outputs
        from mobilecodec.runtime.report import REPORT_FILES

        check_planned_outputs(args.output, REPORT_FILES, kept=[("the --json file", args.json),
                                                               ("the profiled file", args.package),
                                                               ("the checkpoint", args.checkpoint)])
    if is_onnx or args.module:
        report = _any(args, is_onnx)
    elif args.package:
        report = _package(args)
    else:
        report = _model(args)
    if args.output:
        from mobilecodec.runtime.report import write_report

        files = write_report(report, args.output)
        print(f"report written to {args.output}: {', '.join(files)}")
    emit_json(report, args.json)
    return 0


def _model(args: argparse.Namespace) -> dict:
    from mobilecodec.runtime.codec_profile import PRECISION_BUFFER_DTYPES, format_buffer, format_table6

    if args.config:
        from mobilecodec.models.codec import VideoCodec
        from mobilecodec.models.configs import get_config

        model = VideoCodec(get_config(args.config))
    else:
        from mobilecodec.checkpoint import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint)
    h, w = args.size or (1080, 1920)
    if h % 2 or w % 2:
        from mobilecodec.errors import InputError

        raise InputError(f"YUV420 needs an even frame size, got {h}x{w}")
    portrait_note(args.size)
    from mobilecodec.runtime.profiler import profile_model

    # the buffer at the type the estimate's precision keeps it (the graphs are exported float, so
    # --device alone estimates float: fp16 state), else at the deployed codec's int8
    dtype = args.buffer_dtype or PRECISION_BUFFER_DTYPES[args.precision or ("float" if args.device else "w8a8")]
    report, comp, buf = profile_model(model, h, w, args.fps, dtype)
    print(format_table6(comp))
    print()
    print(format_buffer(buf, model.cfg.name, h, w))
    if args.device:
        from mobilecodec.runtime.npu_profile import estimate_model, format_npu

        report["npu"] = estimate_model(model, h, w, args.device, args.precision, args.fps,
                                       buffer_mb_s=buf.bandwidth_mb_s, progress=not args.no_progress)
        report["npu"]["buffer_dtype"] = dtype
        print()
        print(format_npu(report["npu"]))
    return report


def _any(args: argparse.Namespace, is_onnx: bool) -> dict:
    """Any ONNX file or module factory (runtime.profile_any)."""
    from mobilecodec.runtime.npu_profile import _devices, format_npu
    from mobilecodec.runtime.profile_any import profile_module, profile_onnx

    kw = {"size": args.size, "fps": args.fps, "state": args.state, "precision": args.precision,
          "devices": _devices(args.device) if args.device else None}
    report = profile_onnx(args.package, **kw) if is_onnx else profile_module(args.module, **kw)
    print(_format_any(report))
    if "npu" in report:
        print()
        print(format_npu(report["npu"]))
    return report


def _format_any(report: dict) -> str:
    from mobilecodec.runtime.npu_graph import unsized_note
    from mobilecodec.runtime.onnx_complexity import SHAPES_MEASURED
    from mobilecodec.runtime.report_npu import data_tensors_note

    h, w = report["size"]
    lines = [f"{'graph':20s} {'params [M]':>10s} {'GMACs':>9s} {'kMACs/px':>9s} {'elem/px':>8s} {'resamp/px':>9s}"
             f"   (frame {h}x{w} from {report['source']['frame_size_from']}, precision {report['source']['precision']})"]
    for n, g in report["graphs"].items():
        lines.append(f"{n:20s} {g['params_M']:10.3f} {g['gmacs']:9.4f} {g['kmacs_per_px']:9.2f} "
                     f"{g['elementwise_per_px']:8.2f} {g['resampling_per_px']:9.2f}")
        if "pytorch" in g:
            t = g["pytorch"]
            lines.append(f"{'  (PyTorch count)':20s} {t['params'] / 1e6:10.3f} {t['macs'] / 1e9:9.4f}")
            if t.get("not_counted"):
                lines.append("  PyTorch count: aten ops not counted: "
                             + ", ".join(f"{k} x{v}" for k, v in t["not_counted"].items()))
        if note := data_tensors_note(g):
            lines.append(f"  {note}")
        if g["shapes_measured"]:
            lines.append(f"  {SHAPES_MEASURED.format(n=g['shapes_measured'], on=g['shapes_measured_on'])}")
        if g["unknown_ops"]:
            lines.append("  not counted (unknown ops): " + ", ".join(f"{k} x{v}" for k, v in g["unknown_ops"].items()))
    for n, g in report["graphs"].items():
        lines += ["", f"{n}: layers with the most MACs"]
        for la in g["layers"][:10]:
            lines.append(f"  {la['name'][:40]:40s} {la['op']:14s} {la['macs'] / 1e6:10.2f} MMAC {100 * la['share']:5.1f}%")
    b = report["buffer"]
    stored = ", ".join(f"{e['name']} {e['dtype']}" for e in b["entries"])
    lines += ["", f"state buffer ({b['from']}): {len(b['entries'])} tensors{f' ({stored})' if stored else ''}, "
                  f"{b['full_res_maps']:.4f} full-res maps, {b['bytes_per_frame']} bytes/frame, "
                  f"{b['bandwidth_mb_s']:.2f} MB/s at {b['fps']:g} fps"]
    for n, d in report["dram"].items():
        lines.append(f"DRAM per run of {n} ({d['precision']}: {d['bytes_per_activation']}-byte activations, "
                     f"{d['bytes_per_weight']}-byte weights; VTCM {d['vtcm_bytes'] >> 20} MiB rule): "
                     f"weights {d['weights_bytes'] / 1e6:.2f} MB, graph I/O {d['graph_io_bytes'] / 1e6:.2f} MB, "
                     f"spilled activations {d['activations_bytes'] / 1e6:.2f} MB, total {d['total_bytes'] / 1e6:.2f} MB"
                     + unsized_note(d))
    for n, c in report["htp_check"].items():
        lines.append(f"HTP op check {n}: " + ("ok" if c["ok"] else f"{len(c['issues'])} issue(s): "
                                              + "; ".join(c["issues"][:3])))
    return "\n".join(lines)


def _package(args: argparse.Namespace) -> dict:
    from mobilecodec.runtime.codec_profile import BufferReport, CodecComplexity, StageCount, format_buffer, format_table6
    from mobilecodec.runtime.profiler import profile_package
    from mobilecodec.runtime.report import latency_md

    report = profile_package(args.package, ep=args.ep or "cpu", fps=args.fps, runs=args.runs or 8,
                             warmup=2 if args.warmup is None else args.warmup, ops=not args.no_ops,
                             progress=not args.no_progress)
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
    if args.device:
        from mobilecodec.runtime.npu_profile import estimate_package, format_npu, host_steps

        report["npu"] = estimate_package(args.package, args.device, args.precision, args.fps)
        report["host_steps_measured"] = host_steps(report)
        print()
        print(format_npu(report["npu"], report["host_steps_measured"], report["latency"]["backend"]))
    return report
