"""`mobilecodec compile`: QNN HTP context binaries (EPContext ONNX + .bin) of a package for a SoC."""

from __future__ import annotations

import argparse

from mobilecodec.cli.common import Output, emit_json, positive_int
from mobilecodec.export.formats import CONTEXT_FORMAT, MANIFEST

HELP = "compile a package's graphs to QNN HTP context binaries for a Snapdragon SoC"
OUTPUT = Output("folder", marker=MANIFEST, marker_format=CONTEXT_FORMAT)  # replaced whole, if compiled


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", metavar="PKG", help="package folder written by `mobilecodec export`")
    p.add_argument("--soc", type=int, default=43, help="QNN soc_model number (default 43: Snapdragon 8 Gen 2)")
    p.add_argument("--htp-arch", type=int, default=None, help="HTP version, a check only: it must be the SoC's own (73 for soc 43), which is the default; "
                        "pick the target with --soc")
    p.add_argument("-o", "--output", required=True, metavar="BIN", help="folder for the context binaries")
    p.add_argument("--calibration", metavar="VIDEO",
                   help="clip (file or sample name such as bikes) whose frames calibrate the stand-in int8 QDQ of "
                   "float graphs, cut about their centre where larger than the package (int8 packages from "
                   "`export --int8` use their aimet QDQ graphs as they are, and take no --calibration; default: "
                   "random inputs, which code poorly)")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="calibration frames from --calibration (default 4)")
    p.add_argument("--allow-held-out", action="store_true",
                   help="let --calibration name the held-out evaluation clip (carphone); int8 figures measured "
                        "on it with these binaries are then no longer held-out figures")
    p.add_argument("--json", metavar="PATH", help="write the compile manifest as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from mobilecodec.export.qnn import resolve_soc

    soc = resolve_soc(args.soc, args.htp_arch)
    from mobilecodec.export.compile import compile_package

    from mobilecodec.errors import InputError

    feeds, frames = None, None
    if args.calibration is None and (args.frames is not None or args.allow_held_out):
        raise InputError(f"{'--frames' if args.frames is not None else '--allow-held-out'} applies to "
                         "--calibration; give --calibration VIDEO too")
    from mobilecodec.export.manifest import load_manifest

    # the graphs the codec runs that carry no aimet encodings: what --calibration calibrates
    coding_float = [n for n, g in load_manifest(args.package)["graphs"].items()
                    if g["used_by_codec"] and not g.get("quantization")]
    if args.calibration is not None:
        from mobilecodec.io import resolve_input
        from mobilecodec.runtime.parity import record_feeds
        from mobilecodec.train.data import refuse_held_out

        if not coding_float:
            raise InputError(f"{args.package} is an int8 package: its coding graphs carry aimet encodings, which "
                             "compile uses as they are, so --calibration would calibrate nothing; drop it")
        if args.frames is not None and args.frames < 2:
            raise InputError("--frames 1 codes the I-frame alone: the P-frame graphs would be calibrated on random "
                             "inputs; give --frames 2 or more")
        args.calibration = str(resolve_input(args.calibration))
        refuse_held_out(args.calibration, "calibrate on a training clip (e.g. --calibration bikes) or pass "
                        "--allow-held-out", allow=args.allow_held_out)
        from mobilecodec.io import read_frames, warn_fewer_frames

        # what the clip holds, not what was asked: a 1-frame clip calibrated every P-frame graph on
        # random inputs as --frames 1 did, and the manifest recorded --frames
        frames = len(read_frames(args.calibration, args.frames or 4))
        if frames < 2:
            raise InputError(f"--calibration {args.calibration} has {frames} frame{'s' if frames != 1 else ''}: the "
                             "P-frame graphs would be calibrated on random inputs; give a clip of 2 frames or more")
        warn_fewer_frames(args.calibration, frames, args.frames, "calibrating on")
        feeds = record_feeds(args.package, args.calibration, frames)
    elif coding_float:  # it compiled without a word, and the binaries decoded carphone at 13-15 dB
        import warnings

        from mobilecodec.errors import InputWarning

        warnings.warn(InputWarning(f"{len(coding_float)} coding graphs of {args.package} are float: without "
                                   "--calibration their stand-in int8 is fitted to random inputs, not video, "
                                   "and codes poorly; give --calibration CLIP (a training clip such as bikes)"))
    man = compile_package(args.package, args.output, soc, feeds=feeds, calibration=args.calibration,
                          frames=frames if feeds else None, progress=not args.no_progress)
    total = sum(g["compile_seconds"] for g in man["graphs"].values())
    print(f"{len(man['graphs'])} context binaries for soc {soc.soc_model} ({soc.name}, HTP v{soc.htp_arch}) "
          f"-> {args.output} in {total:.1f} s")
    emit_json(man, args.json)
    return 0
