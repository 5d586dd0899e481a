"""`mobilecodec compile`: QNN HTP context binaries (EPContext ONNX + .bin) of a package for a SoC."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, emit_json

HELP = "compile a package's graphs to QNN HTP context binaries for a Snapdragon SoC"
OUTPUT = Output("folder", marker="manifest.json")  # replaced whole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", metavar="PKG", help="package folder written by `mobilecodec export`")
    p.add_argument("--soc", type=int, default=43, help="QNN soc_model number (default 43: Snapdragon 8 Gen 2)")
    p.add_argument("--htp-arch", type=int, default=None, help="HTP version (default: the SoC's, 73 for soc 43)")
    p.add_argument("-o", "--output", required=True, metavar="BIN", help="folder for the context binaries")
    p.add_argument("--calibration", metavar="VIDEO",
                   help="clip whose frames calibrate the stand-in int8 QDQ of float graphs (int8 packages from "
                   "`export --int8` use their aimet QDQ graphs as they are; default: random inputs)")
    p.add_argument("--frames", type=int, default=4, help="calibration frames from --calibration (default 4)")
    p.add_argument("--json", metavar="PATH", help="write the compile manifest as JSON ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.export.qnn import resolve_soc

    soc = resolve_soc(args.soc, args.htp_arch)
    from mobilecodec.export.compile import compile_package

    feeds = None
    if args.calibration is not None:
        from mobilecodec.runtime.parity import record_feeds

        feeds = record_feeds(args.package, args.calibration, args.frames)
    man = compile_package(args.package, args.output, soc, feeds=feeds, calibration=args.calibration, progress=True)
    total = sum(g["compile_seconds"] for g in man["graphs"].values())
    print(f"{len(man['graphs'])} context binaries for soc {soc.soc_model} ({soc.name}, HTP v{soc.htp_arch}) "
          f"-> {args.output} in {total:.1f} s")
    emit_json(man, args.json)
    return 0
