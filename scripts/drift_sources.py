"""Which recursion carries the int8 cross-backend drift (issue #12).

One stream is encoded by an int8 package on onnxruntime CPU and decoded twice: by onnxruntime and
by the aimet simulation (PyTorch). The simulation decodes it three ways: free-running; with the
decoded flow replaced every frame by the onnxruntime decode's; with the buffered frame replaced.
Printed per frame: PSNR-YUV between the simulation's and onnxruntime's decodes (inf = identical).

    python scripts/drift_sources.py --workdir out/drift_sources [--checkpoint C] [--preset w8a8]
        [--calib bikes] [--json r.json]

The PTQ (4 steps, calibrated on --calib: bikes by default, a training clip, so that the held-out
carphone decoded here stays unseen) and the export are cached in --workdir per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = "tiny_b0.0064"
MODES = ("free", "flow", "frame")


def prepare(workdir: Path, preset: str, checkpoint: str, calib: str) -> tuple[Path, Path]:
    """(PTQ folder, int8 package) of `checkpoint`, made once per (checkpoint, preset, calib)."""
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


def run(q: Path, pkg: Path, frames: int) -> dict[str, list[float]]:
    """PSNR-YUV per frame between the simulation's decode (each mode) and onnxruntime's."""
    import numpy as np
    import torch

    from mobilecodec.codec.frame_coding import LatentDecoder, iframe_steps, pframe_steps
    from mobilecodec.codec.networks import TorchNetworks
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.metrics import psnr_yuv
    from mobilecodec.models.buffer import Buffer
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.parity import _frame, read_frames

    engine = OnnxEngine(pkg)
    h, w = engine.padded_size
    size = tuple(engine.manifest["original_size"])
    payloads, buf = [], None
    for k, x in enumerate(read_frames(sample_clip("carphone"), frames, h, w)):
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
                curve.append(psnr_yuv(_frame(out, size), ref_frames[k])["yuv"])
        curves[mode] = curve
    return curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="out/drift_sources", help="cache of the PTQ and the package")
    ap.add_argument("--preset", choices=("w8a16rx", "w8a8"), default="w8a16rx")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint file or shipped name")
    ap.add_argument("--calib", default="bikes", help="calibration clip (default bikes; never carphone)")
    ap.add_argument("--frames", type=int, default=32, help="frames = one intra period (default 32)")
    ap.add_argument("--json", default=None, help="write the curves as JSON")
    args = ap.parse_args()
    from mobilecodec.errors import CheckpointError, InputError
    from mobilecodec.train.data import is_held_out

    from mobilecodec.checkpoint import resolve_checkpoint

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
        curves = run(*prepare(workdir, args.preset, args.checkpoint, args.calib), args.frames)
    except (InputError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")
    for mode, curve in curves.items():
        print(f"{mode:5s} " + " ".join(f"{v:.1f}" for v in curve))
    if args.json:
        from mobilecodec.fsutil import write_json_atomic

        write_json_atomic(args.json, {"preset": args.preset, "checkpoint": args.checkpoint, "calib": args.calib,
                                      "psnr_yuv_db": curves})


if __name__ == "__main__":
    main()
