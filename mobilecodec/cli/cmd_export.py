"""`mobilecodec export`: one ONNX graph per NPU stage (buffer as named graph I/O) plus a manifest;
`--check PKG` proves the graphs run on the Qualcomm HTP."""

from __future__ import annotations

import argparse
import sys

from mobilecodec.cli.common import Output, emit_json, given_options, parse_hw, portrait_note, seed_int
from mobilecodec.export.formats import MANIFEST, PACKAGE_FORMAT

HELP = "export ONNX graphs per network stage (static shapes, buffer as graph I/O) or --check a package for the HTP"
OUTPUT = Output("folder", marker=MANIFEST, marker_format=PACKAGE_FORMAT)  # replaced whole, if a package


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or shipped checkpoint name")
    src.add_argument("--config", help="registered config name with random weights (size and op checks)")
    src.add_argument("--check", metavar="PKG", help="check a package folder (or one .onnx file) for the QNN HTP: "
                     "op histogram, static rules, QDQ compile with CPU fallback disabled; exit 1 if incompatible")
    p.add_argument("--size", type=parse_hw, metavar="HxW",
                   help="frame size HEIGHTxWIDTH; padded up to a multiple of 64 for the graphs, the real size "
                        "recorded in the manifest (e.g. 1080x1920 -> graphs at 1088x1920)")
    p.add_argument("--original-size", type=parse_hw, metavar="HxW",
                   help="unpadded frame size to record when --size is already padded (default: --size)")
    p.add_argument("-o", "--output", metavar="PKG", help="package folder to write (replaced atomically)")
    p.add_argument("--int8", metavar="Q", help="a `mobilecodec ptq` output folder made from this checkpoint: "
                   "export the quantized stages as aimet QDQ int8 graphs (per-channel int8 weights, "
                   "uint8/uint16 activations from the aimet encodings)")
    p.add_argument("--seed", type=seed_int, default=None, help="seed of the random weights with --config (default 0)")
    p.add_argument("--no-compile", action="store_true", help="with --check: static rules only, no QNN compile")
    p.add_argument("--soc", type=int, default=None, help="with --check: QNN soc_model to compile for (default 43)")
    p.add_argument("--json", metavar="PATH", help="write the manifest or check report as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check(args: argparse.Namespace) -> int:
    from mobilecodec.export.npu_check import check_package
    from mobilecodec.export.qnn import DEFAULT_SOC, resolve_soc

    soc = resolve_soc(args.soc if args.soc is not None else DEFAULT_SOC)
    reports = check_package(args.check, compile=not args.no_compile, soc=soc)
    for r in reports:
        ops = ", ".join(f"{k} x{v}" for k, v in r.ops.items())
        status = "ok" if r.ok else "INCOMPATIBLE"
        comp = "" if r.compiled is None else (f", HTP compile {r.compile_seconds:.2f} s" if r.compiled else ", HTP compile FAILED")
        print(f"{r.name}: {status}{comp}\n  ops: {ops}")
        for issue in r.issues:
            print(f"  error: {issue}")
        if r.compile_error:
            print(f"  error: {r.compile_error}")
    bad = [r for r in reports if not r.ok]
    emit_json({"target": str(args.check), "soc_model": None if args.no_compile else soc.soc_model, "ok": not bad,
               "graphs": [r.to_dict() for r in reports]}, args.json)
    if bad:
        print(f"mobilecodec export: {len(bad)} of {len(reports)} graph(s) cannot run on the HTP: "
              + ", ".join(r.name for r in bad), file=sys.stderr)
        return 1
    if args.no_compile:  # only the static rules were checked: nothing says the compiler takes them
        print(f"all {len(reports)} graph(s) pass the static HTP rules (not compiled: --no-compile)")
    else:
        print(f"all {len(reports)} graph(s) run on the HTP (soc {soc.soc_model}, {soc.name})")
    return 0


def run(args: argparse.Namespace) -> int:
    from mobilecodec.errors import InputError

    if args.check:
        export_only = given_options(args, "size", "original_size", "output", "int8", "seed")
        if export_only:
            raise InputError(f"not used with --check (export options): {', '.join(export_only)}")
        if args.no_compile and args.soc is not None:  # the JSON recorded it as if checked for that SoC
            raise InputError("--soc names the SoC to compile for; --no-compile compiles nothing")
        return _check(args)
    check_only = given_options(args, "soc", "no_compile")
    if check_only:
        raise InputError(f"only used with --check: {', '.join(check_only)}")
    if args.checkpoint and args.seed is not None:
        raise InputError("--seed seeds the random weights of --config; a checkpoint has its own")
    if args.size is None or args.output is None:
        raise InputError("export needs --size HxW and -o PKG")
    from mobilecodec.export.onnx_export import check_original_size, check_size
    from mobilecodec.io import padded_size

    h, w = args.size
    given_original = args.original_size
    pw, ph = padded_size(w, h)
    if (ph, pw) != (h, w):
        if args.original_size is not None:
            raise InputError(f"--original-size goes with a padded --size (a multiple of 64); got --size {h}x{w}")
        check_original_size(h, w, ph, pw)
        print(f"note: graphs at {ph}x{pw} (padded to a multiple of 64); the manifest records {h}x{w}",
              file=sys.stderr)
        args.original_size, (h, w) = (h, w), (ph, pw)
    elif args.original_size is not None:
        check_original_size(*args.original_size, h, w)
    check_size(h, w)
    # the size the user typed: --original-size where given with a padded --size, else --size (review)
    portrait_note(*((given_original, "--original-size") if given_original else (args.size, "--size")))
    obj: dict = {}  # the checkpoint's dict (its beta goes into the package); none for a random --config model
    if args.config:
        import torch

        from mobilecodec.models.codec import VideoCodec
        from mobilecodec.models.configs import get_config

        cfg = get_config(args.config)
        torch.manual_seed(args.seed or 0)
        model = VideoCodec(cfg)
    else:
        from mobilecodec.checkpoint import load_checkpoint

        model, obj = load_checkpoint(args.checkpoint)
    qmodel = None
    if args.int8:
        from pathlib import Path

        from mobilecodec.export.aimet_qdq import load_ptq_for

        if not Path(args.int8).is_dir():
            raise InputError(f"--int8 {args.int8}: " + ("a file; give the folder that holds it (a `mobilecodec ptq` "
                                                          "or `qat` output)" if Path(args.int8).is_file() else
                                                          "no such folder (expected a `mobilecodec ptq` output)"))
        if not model.ready_for_coding:
            model.update()
        qmodel = load_ptq_for(args.int8, model)
    from mobilecodec.export.onnx_export import export_package

    from mobilecodec.quant.ptq import deployed_beta

    man = export_package(model, args.output, h, w, original_size=args.original_size,
                         checkpoint=args.checkpoint, progress=not args.no_progress, qmodel=qmodel, quantized_dir=args.int8,
                         beta=deployed_beta(qmodel, obj), meta=obj.get("meta"),
                         seed=(args.seed or 0) if args.config else None)
    total = sum(g["bytes"] for g in man["graphs"].values())
    n_float = len((man.get("quantization") or {}).get("float_graphs") or [])
    kinds = (f"{len(man['graphs'])} graphs ({len(man['graphs']) - n_float} int8 QDQ, {n_float} float)" if n_float
             else f"{len(man['graphs'])} {man['precision']} graphs")  # it said "13 int8-qdq" of 10 int8 and 3 float
    print(f"{kinds}, {total / 1e6:.2f} MB, at {h}x{w} -> {args.output} in {man['export_seconds']:.1f} s")
    for name, g in man["graphs"].items():
        ins = ", ".join(i["name"] for i in g["inputs"])
        outs = ", ".join(o["name"] for o in g["outputs"])
        q = g.get("quantization")
        tag = "" if not args.int8 else ("  [float]" if not q else f"  [int8, {'/'.join(map(str, q['activation_bits']))}-bit act]")
        print(f"  {name}: ({ins}) -> ({outs})" + ("" if g["used_by_codec"] else "  [profiling only]") + tag)
    if qmodel is not None and man["quantization"]["w8a16_layers"]:
        print("  16-bit activations: " + ", ".join(man["quantization"]["w8a16_layers"]))
    if qmodel is not None:
        from mobilecodec.models.subnetworks import is_receiver_stage

        rx8 = [n for n, g in man["graphs"].items() if g.get("quantization") and is_receiver_stage(n)
               and g["used_by_codec"] and max(g["quantization"]["activation_bits"]) <= 8]
        if rx8:
            print(f"note: receiver graphs at 8-bit activations ({', '.join(rx8)}): a stream decoded on another "
                  "backend than its encoder's (QNN HTP vs onnxruntime CPU) drifts along the intra period; "
                  "`mobilecodec ptq --w8a16 receiver` keeps the decodes within 0.05 dB (docs/results/complexity.md)",
                  file=sys.stderr)
    emit_json(man, args.json)
    return 0
