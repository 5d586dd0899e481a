"""QDQ int8 twins of a float package's graphs for the runtime, through export's stand-in
quantizer (onnxruntime quantize_static, min/max calibration): a quick int8 estimate for packages
exported without aimet encodings (`mobilecodec export --int8` gives the real ones)."""

from __future__ import annotations

from pathlib import Path

QUANTIZER_LABEL = "int8 QDQ via onnxruntime quantize_static (stand-in for aimet encodings)"


def qdq_graph_files(package: str | Path, out_dir: str | Path, *, calibration: str | Path | None = None,
                    frames: int = 2, used_only: bool = True) -> dict[str, Path]:
    """Write `<graph>.qdq.onnx` for the package's graphs into `out_dir`, calibrated on `frames`
    frames of `calibration` (a video; random inputs when None); returns graph -> QDQ file, to pass
    as `OnnxEngine(graph_files=...)`."""
    from mobilecodec.export.compile import fill_feeds
    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.export.qdq import quantize_graph
    from mobilecodec.runtime.parity import record_feeds

    pkg, out = Path(package), Path(out_dir)
    man = load_manifest(pkg)
    feeds = fill_feeds(pkg, record_feeds(pkg, calibration, frames) if calibration is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, g in man["graphs"].items():
        if used_only and not g["used_by_codec"]:
            continue
        files[name] = quantize_graph(pkg / g["file"], out / f"{name}.qdq.onnx", feeds[name])
    return files
