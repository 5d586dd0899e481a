"""Whole-file streaming encode and decode on onnxruntime (`OnnxEngine`), and the cross-backend
drift report: the same stream decoded by onnxruntime and by PyTorch, frame by frame."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mobilecodec.runtime.engine import OnnxEngine


def encode_package(package: str | Path, input_path: str | Path, output: str | Path, *, ep: str = "cpu",
                   engine: OnnxEngine | None = None, block_modes: int = 0, **kw: Any) -> dict:
    """`encode_video` with the package's graphs on onnxruntime; the stream names the package's
    model (config id, weights hash) so the PyTorch path decodes it too. `block_modes`: the block
    size of the P-frame block modes (0: off), priced at the beta the package's checkpoint records."""
    from mobilecodec.codec.block_modes import BlockModeOptions
    from mobilecodec.codec.video import encode_video

    engine = engine or OnnxEngine(package, ep=ep)  # threads: runtime.threads.set_threads
    modes = None
    if block_modes:
        modes = BlockModeOptions.for_checkpoint(engine.checkpoint, block_modes, f"package {package}")
    summary = encode_video(engine.model, input_path, output, engine=engine, modes=modes, **kw)
    summary.update(engine.provenance())
    return summary


def int8_package_engine(model: Any, qmodel: Any, source: str | Path, workdir: str | Path, *, ep: str = "cpu",
                        quantized_dir: str | None = None) -> OnnxEngine:
    """The aimet int8 model `qmodel` of the float `model`, exported as a QDQ package at `source`'s
    padded frame size into WORKDIR/package and opened on onnxruntime: the graphs a user deploys,
    so `check-int8 --backend onnxruntime` judges them rather than their simulation."""
    from mobilecodec.export.onnx_export import export_package
    from mobilecodec.io import open_video, padded_size

    with open_video(source) as r:
        height, width = r.height, r.width
    pw, ph = padded_size(width, height)
    pkg = Path(workdir) / "package"
    export_package(model, pkg, ph, pw, original_size=(height, width), qmodel=qmodel, quantized_dir=quantized_dir)
    return OnnxEngine(pkg, ep=ep)


class _FrameSpool:
    """Decoded frames kept in an anonymous temporary file, read back by index: a drift check holds
    one decode's frames while the other runs, and in memory a long stream does not fit."""

    def __enter__(self) -> "_FrameSpool":
        self._file: Any = None  # opened by the first frame
        self._where: dict[int, tuple[int, tuple[tuple[int, ...], ...]]] = {}
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()

    def put(self, index: int, frame: Any) -> None:
        import tempfile

        import numpy as np

        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="mobilecodec-frames-")
        planes = [np.ascontiguousarray(p, dtype=np.uint8) for p in frame]
        self._file.seek(0, 2)
        self._where[index] = (self._file.tell(), tuple(p.shape for p in planes))
        for p in planes:
            self._file.write(p.tobytes())

    def get(self, index: int) -> Any:
        import numpy as np

        from mobilecodec.io import YUVFrame

        offset, shapes = self._where.pop(index)
        self._file.seek(offset)
        return YUVFrame(*(np.frombuffer(self._file.read(int(np.prod(s))), np.uint8).reshape(s) for s in shapes))


def _finite(v: float) -> float | None:
    return None if math.isinf(v) else round(v, 4)


def decode_package(package: str | Path, stream: str | Path, output: str | Path | None, *, ep: str = "cpu",
                   drift: bool = False, engine: OnnxEngine | None = None, progress: bool = True) -> dict:
    """Decode with the package's graphs on onnxruntime. Hash mismatches are reported, not fatal
    (backends may drift). With `drift`, also decode with PyTorch (the package's own weights) and
    report per frame whether each decode matches the encoder's hash and the PSNR of each plane
    between the two decodes (None when identical), and the lowest of them."""
    from mobilecodec.codec.video import decode_video
    from mobilecodec.metrics import psnr_yuv

    engine = engine or OnnxEngine(package, ep=ep)
    # the runtime's decode first: it refuses a stream the package cannot decode (another model or
    # frame size) before the PyTorch reference has decoded it all; its frames wait on disk, not in
    # memory (300 frames of 1080p are 0.9 GB)
    with _FrameSpool() as run_frames:
        summary = decode_video(engine.model, stream, output, progress=progress, verify=False, engine=engine,
                               on_frame=run_frames.put if drift else None)
        summary.update(engine.provenance())
        if not drift:
            return summary
        per_frame_psnr: dict[int, dict[str, float]] = {}

        def compare(i: int, frame: Any) -> None:
            per_frame_psnr[i] = psnr_yuv(frame, run_frames.get(i))

        ref = decode_video(engine.model, stream, None, progress=progress, verify=False, on_frame=compare)
    rows = []
    for f, r in zip(summary["per_frame"], ref["per_frame"]):
        p = per_frame_psnr[f["index"]]
        rows.append({"index": f["index"], "type": f["type"], "runtime_hash_match": f["hash_match"],
                     "pytorch_hash_match": r["hash_match"], "identical": f["hash"] == r["hash"],
                     **{f"psnr_{c}_db": _finite(p[c]) for c in "yuv"},
                     "psnr_min_db": _finite(min(p["y"], p["u"], p["v"]))})
    finite = [r["psnr_min_db"] for r in rows if r["psnr_min_db"] is not None]
    summary["drift"] = {
        "reference": "PyTorch float (the package's checkpoint)", "test": engine.label,
        "frames_identical": sum(r["identical"] for r in rows),
        "runtime_hash_matches": summary["hash_matches"], "pytorch_hash_matches": ref["hash_matches"],
        "min_psnr_db": min(finite) if finite else None, "per_frame": rows}
    return summary


def format_drift(drift: dict) -> str:
    """One line per frame: hash matches of both decodes and the PSNR between them."""
    lines = [f"drift: {drift['test']} vs {drift['reference']}",
             f"{'frame':>5s} {'type':>4s} {'runtime=enc':>11s} {'pytorch=enc':>11s} {'PSNR Y / U / V dB between decodes':>34s}"]
    for r in drift["per_frame"]:
        p = "identical" if r["identical"] else " / ".join(
            "=" if r[f"psnr_{c}_db"] is None else f"{r[f'psnr_{c}_db']:.2f}" for c in "yuv")
        lines.append(f"{r['index']:5d} {r['type']:>4s} {str(r['runtime_hash_match']):>11s} "
                     f"{str(r['pytorch_hash_match']):>11s} {p:>34s}")
    worst = drift["min_psnr_db"]
    lines.append(f"{drift['frames_identical']}/{len(drift['per_frame'])} frames bit-exact between backends"
                 + ("" if worst is None else f"; lowest plane PSNR between them {worst:.2f} dB"))
    return "\n".join(lines)
