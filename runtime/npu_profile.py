"""ESTIMATED NPU time per frame type of this toolkit's codec (export package or registered config):
per graph and per encode/decode I/P frame, the frames/s it allows, the MAC/s and DRAM GB/s a
target frame rate needs, and compute- vs memory-bound per graph. Host steps are not estimated:
`profile PKG` lists the ones measured on this machine separately.

`estimate_package(package, ...)` is the entry point for other tools (e.g. the demo).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mobilecodec.progress import progress_bar
from mobilecodec.runtime.npu_estimate import DEVICES

FRAME_TYPES = (("encode", "I", "sender"), ("encode", "P", "sender"), ("decode", "I", "receiver"),
               ("decode", "P", "receiver"))


def frame_graphs(call_order: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """'encode I' / 'encode P' / 'decode I' / 'decode P' -> NPU graphs run for that frame (manifest call order)."""
    out = {}
    for kind, ftype, side in FRAME_TYPES:
        out[f"{kind} {ftype}"] = [s["graph"] for s in call_order.get(ftype, [])
                                  if s["run"] == "npu" and side in s["sides"]]
    return out


def _devices(device: str | list[str] | None) -> list[str]:
    if device in (None, "all"):
        return list(DEVICES)
    return [device] if isinstance(device, str) else list(device)


def estimate_layers(layers: dict[str, Any], call_order: dict[str, Any], *, device: str | list[str] | None,
                    precision: str | None, fps: float, pixels: int,
                    buffer_mb_s: float | None) -> dict[str, Any]:
    """`mobilecodec.runtime.profile_any.npu_graphs` with the codec's frame types."""
    from mobilecodec.runtime.profile_any import npu_graphs

    return npu_graphs(layers, _devices(device), precision, fps, frame_graphs(call_order), pixels, buffer_mb_s)


def estimate_package(package: str | Path, device: str | list[str] | None = None, precision: str | None = None,
                     fps: float = 30.0) -> dict[str, Any]:
    """ESTIMATED NPU time of an export package per graph and frame type on '8gen2' / '8gen3' (None or
    'all': both). Precision defaults to each graph's own (QDQ graphs int8, others float). A
    `mobilecodec compile` folder is estimated from its export package's graphs, at w8a8 where
    the compile quantized float graphs (its stand-in int8)."""
    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.runtime.engine import resolve_package
    from mobilecodec.runtime.npu_graph import extract_layers
    from mobilecodec.runtime.profiler import package_buffer

    pkg, _, context = resolve_package(package, "qnn")
    man = load_manifest(pkg)
    if context is not None and precision is None and not man.get("quantization"):
        precision = "w8a8"
    files = {n: pkg / g["file"] for n, g in man["graphs"].items()}
    layers = {n: extract_layers(p, n) for n, p in files.items()}
    oh, ow = man["original_size"]
    buf = package_buffer(man, fps, files)
    return estimate_layers(layers, man["call_order"], device=device, precision=precision, fps=fps,
                           pixels=oh * ow, buffer_mb_s=buf.bandwidth_mb_s)


def estimate_model(model: Any, height: int, width: int, device: str | list[str] | None = None,
                   precision: str | None = None, fps: float = 30.0, buffer_mb_s: float | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Same for a PyTorch `VideoCodec`: its NPU graphs are exported (float, padded size) to a
    temporary folder first."""
    from mobilecodec.export.manifest import call_order
    from mobilecodec.export.onnx_export import export_graph, graph_specs
    from mobilecodec.io import padded_size
    from mobilecodec.runtime.npu_graph import extract_layers
    from mobilecodec.runtime.threads import torch_threads

    with torch_threads(1):  # small exports: extra threads only contend
        pw, ph = padded_size(width, height)
        model.eval()
        specs = graph_specs(model, ph, pw)
        bar = (progress_bar(total=len(specs), desc="export graphs for the NPU estimate", unit="graph", leave=False)
               if progress else None)
        layers = {}
        with tempfile.TemporaryDirectory() as tmp:
            for spec in specs:
                path = Path(tmp) / f"{spec.name}.onnx"
                export_graph(spec, path, simplify=False)
                layers[spec.name] = extract_layers(path, spec.name)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    return estimate_layers(layers, call_order(model), device=device, precision=precision, fps=fps,
                           pixels=height * width, buffer_mb_s=buffer_mb_s)


def host_steps(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Host steps MEASURED on this machine by `profile PKG` (median ms), per frame type."""
    out: dict[str, dict[str, float]] = {}
    frames = (report.get("latency") or {}).get("frames", {})
    for kind, ftype, _ in FRAME_TYPES:
        fr = frames.get(kind, {}).get(ftype)
        if fr:
            out[f"{kind} {ftype}"] = {k: v["median_ms"] for k, v in fr["steps"].items() if k.startswith("host")}
    return out


def format_npu(npu: dict[str, Any], host: dict[str, dict[str, float]] | None = None,
               host_backend: str | None = None) -> str:
    """Plain-text tables of an `npu_graphs` section (every number labelled ESTIMATE)."""
    lines = [f"NPU latency {npu['label']}", f"target {npu['target_fps']:g} frames/s"]
    if npu.get("buffer_bandwidth_mb_s") is not None:
        kept = f", {npu['buffer_dtype']} flow/features" if npu.get("buffer_dtype") else ""
        lines.append(f"state buffer bandwidth (read + write{kept}): {npu['buffer_bandwidth_mb_s']:.1f} MB/s")
    for dev, d in npu["devices"].items():
        lines += ["", f"{DEVICES[dev]['soc']} (HTP {DEVICES[dev]['htp']}), ESTIMATE per graph:",
                  f"  {'graph':22s} {'prec':6s} {'ms':>9s} {'overhead':>9s} {'layers bound':>12s} {'DRAM MB':>9s} "
                  f"{'weights':>8s} {'I/O':>8s} {'spill':>8s}"]
        for n, g in d["graphs"].items():  # ms = the fixed per-graph overhead + the layers (bound by ...)
            dr = g["dram"]
            lines.append(f"  {n:22s} {g['precision']:6s} {g['ms']:9.3f} {g['overhead_ms']:9.3f} {g['bound']:>12s} "
                         f"{dr['total_bytes'] / 1e6:9.2f} {dr['weights_bytes'] / 1e6:8.2f} {dr['graph_io_bytes'] / 1e6:8.2f} "
                         f"{dr['activations_bytes'] / 1e6:8.2f}")
        lines += [f"  {'frame':22s} {'ms':>9s} {'frames/s':>9s} {'GMAC/s needed':>14s} {'DRAM GB/s needed':>17s}"]
        for ft, f in d["frames"].items():
            lines.append(f"  {ft:22s} {f['ms']:9.3f} {f['frames_per_s']:9.1f} {f['mac_per_s_needed'] / 1e9:14.1f} "
                         f"{f['dram_gb_s_needed']:17.3f}  (ESTIMATE)")
    if host:
        lines += ["", f"host steps MEASURED on this machine ({host_backend or 'this CPU'}), not estimated, median ms:"]
        for ft, steps in host.items():
            lines.append(f"  {ft:10s} " + ", ".join(f"{k.removeprefix('host: ')} {v:.2f}" for k, v in steps.items()))
    return "\n".join(lines)
