"""Which recursion carries the cross-backend drift (issue #12), frame by frame over one intra period.

One stream of carphone is encoded by a package on onnxruntime CPU and decoded twice: by
onnxruntime and in PyTorch (`--preset float`: the float model; `w8a16rx`/`w8a8`: the aimet
simulation of an int8 PTQ). PyTorch decodes it three ways: free-running; with the decoded flow
replaced every frame by the onnxruntime decode's; with the buffered frame replaced. `--htp` adds
the int8 stream of each backend decoded by the other, QNN HTP (emulated) against onnxruntime CPU.
Printed per frame: PSNR over all Y, U, V samples between the two decodes (`psnr_samples`;
inf = identical).

    python scripts/drift_sources.py --workdir out/drift_sources [--checkpoint C]
        [--preset float|w8a16rx|w8a8] [--htp] [--calib bikes] [--json r.json]

The PTQ (4 steps, calibrated on --calib: bikes by default, a training clip, so that the held-out
carphone decoded here stays unseen) and the export are cached in --workdir per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = "tiny_b0.0064"
MODES = ("free", "flow", "frame")


def prepare(workdir: Path, preset: str, checkpoint: str, calib: str) -> tuple[Path | None, Path]:
    """(PTQ folder, package) of `checkpoint`, made once per (checkpoint, preset, calib); preset
    "float": no PTQ folder, the float package."""
    import hashlib

    from mobilecodec.checkpoint import load_checkpoint, resolve_checkpoint
    from mobilecodec.cli import main
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model, save_quantized

    path = resolve_checkpoint(checkpoint)
    tag = hashlib.sha256(f"{Path(path).resolve()}:{Path(path).stat().st_mtime_ns}:{calib}".encode()).hexdigest()[:10]
    q, pkg = workdir / f"ptq_{preset}_{tag}", workdir / f"pkg_{preset}_{tag}"
    if preset == "float":
        if not (pkg / "manifest.json").is_file() and main(["export", "--checkpoint", str(path), "--size", "192x192",
                                                           "-o", str(pkg)]):
            sys.exit("export failed")
        return None, pkg
    if not (pkg / "manifest.json").is_file():
        model, _ = load_checkpoint(path)
        gops = load_gops([sample_clip(calib)], 3, (128, 128), 8, seed=0)
        cfg = QuantConfig(w8a16=("receiver",)) if preset == "w8a16rx" else QuantConfig()
        qmodel = quantize_model(model, cfg, gops, steps=4, batch=2, progress=False)
        save_quantized(q, qmodel, checkpoint=path,
                       summary={"float_weights_hash": model.weights_hash().hex()})
        if main(["export", "--checkpoint", str(path), "--size", "192x192", "-o", str(pkg), "--int8", str(q)]):
            sys.exit("export failed")
    return q, pkg


def run(q: Path | None, pkg: Path, frames: int, checkpoint: str) -> dict[str, list[float]]:
    """PSNR per frame over all samples (`psnr_samples`) between the PyTorch decode (the aimet
    simulation of PTQ folder `q`, or the float model when `q` is None), in each mode, and
    onnxruntime's."""
    import numpy as np
    import torch

    from mobilecodec.codec.frame_coding import LatentDecoder, iframe_steps, pframe_steps
    from mobilecodec.codec.networks import TorchNetworks
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.metrics import psnr_samples
    from mobilecodec.models.buffer import Buffer
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.parity import _frame, package_frames

    engine = OnnxEngine(pkg)
    h, w = engine.padded_size
    size = tuple(engine.manifest["original_size"])
    payloads, buf = [], None
    for k, x in enumerate(package_frames(sample_clip("carphone"), frames, h, w)):
        src = engine.latent_encoder(x)
        _, buf = engine.run_iframe(src) if k == 0 else engine.run_pframe(buf, src)
        payloads.append(src.payload())
    ref_frames, ref_bufs, buf = [], [], None
    for k, p in enumerate(payloads):
        src = engine.latent_decoder(p, h, w)
        out, buf = engine.run_iframe(src) if k == 0 else engine.run_pframe(buf, src)
        src.finish()
        ref_frames.append(_frame(out, size))
        ref_bufs.append({n: torch.as_tensor(np.asarray(buf[n])).clone() for n in buf.names()})
    if q is None:
        from mobilecodec.checkpoint import load_checkpoint

        qmodel = load_checkpoint(checkpoint)[0]
    else:
        qmodel = load_quantized(q)

    class Forced(TorchNetworks):
        """The simulation's sub-networks, with one buffer entry taken from the onnxruntime decode."""

        def __init__(self, mode: str) -> None:
            super().__init__(qmodel)
            self.mode, self.k = mode, 0

        def synthesize_motion(self, m_hat, flow_pred):
            flow, feat = super().synthesize_motion(m_hat, flow_pred)
            return (ref_bufs[self.k]["flow"].to(flow.dtype) if self.mode == "flow" else flow), feat

        def warp(self, buf, flow):
            if self.mode == "frame":
                buf = Buffer({**buf.tensors, "frame": ref_bufs[self.k - 1]["frame"].to(buf["frame"].dtype)})
            return super().warp(buf, flow)

    curves = {}
    for mode in MODES:
        nets, buf, curve = Forced(mode), None, []
        with torch.no_grad():
            for k, p in enumerate(payloads):
                nets.k = k
                src = LatentDecoder(qmodel, p, h, w)
                out, buf = iframe_steps(nets, src) if k == 0 else pframe_steps(nets, buf, src)
                src.finish()
                curve.append(psnr_samples(_frame(out, size), ref_frames[k]))
        curves[mode] = curve
    return curves


def main() -> None:
    from mobilecodec.cli.common import json_target, positive_int, work_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=work_folder, default="out/drift_sources", help="cache of the PTQ and the package")
    ap.add_argument("--preset", choices=("float", "w8a16rx", "w8a8"), default="w8a16rx",
                    help="float: float ONNX on onnxruntime against PyTorch; w8a16rx/w8a8: int8 QDQ on onnxruntime "
                         "against the aimet simulation")
    ap.add_argument("--htp", action="store_true", help="int8 presets: also decode on the QNN HTP (emulated) "
                    "against onnxruntime CPU, each backend's stream on the other")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint file or shipped name")
    ap.add_argument("--calib", default="bikes", help="calibration clip (default bikes; never carphone)")
    ap.add_argument("--frames", type=positive_int, default=32, help="frames = one intra period (default 32)")
    ap.add_argument("--json", type=json_target, default=None, help="write the curves as JSON")
    args = ap.parse_args()
    from mobilecodec.errors import CheckpointError, InputError
    from mobilecodec.train.data import is_held_out

    from mobilecodec.checkpoint import resolve_checkpoint

    if args.htp and args.preset == "float":
        sys.exit("error: --htp compares int8 packages on the QNN HTP; use it with --preset w8a16rx or w8a8")
    if is_held_out(args.calib):
        sys.exit(f"error: --calib {args.calib} is the held-out evaluation clip; calibrate on a training clip")
    try:
        if not Path(resolve_checkpoint(args.checkpoint)).is_file():
            raise InputError(f"no such checkpoint: {args.checkpoint}")
    except (InputError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        q, pkg = prepare(workdir, args.preset, args.checkpoint, args.calib)
        curves = run(q, pkg, args.frames, args.checkpoint)
        if args.htp and q is not None:
            from mobilecodec.io.samples import sample_clip
            from mobilecodec.runtime.parity import htp_cross_parity

            cross = htp_cross_parity(pkg, sample_clip("carphone"), frames=args.frames, intra_period=args.frames)
            curves["htp_on_cpu"] = cross["htp_stream_on_cpu"]["drift_psnr_db"]
            curves["cpu_on_htp"] = cross["cpu_stream_on_htp"]["drift_psnr_db"]
    except (InputError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")
    for mode, curve in curves.items():
        print(f"{mode:10s} " + " ".join(f"{v:.1f}" for v in curve))
    if args.json:
        from mobilecodec.cli.common import emit_json

        emit_json({"preset": args.preset, "checkpoint": args.checkpoint, "calib": args.calib,  # inf -> null
                   "psnr_db": curves, "identical": "null: the two decodes are identical"}, args.json)


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
