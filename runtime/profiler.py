"""The full profiler: complexity (Table 6 layout) counted from ONNX graphs and from PyTorch
modules, buffer (HyTIP Table 7 layout) with the stored dtypes, and latency of a package on
onnxruntime (per graph, per frame, host steps, onnxruntime's per-op profile)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mobilecodec.runtime.codec_profile import (DTYPE_BYTES, BufferReport, CodecComplexity, StageCount, table6_rows,
                                   warp_elements)


# Complexity ----------------------------------------------------------------------------------

def onnx_stage_counts(graph_files: dict[str, Path]) -> dict[str, StageCount]:
    """`count_onnx` of every graph (float or QDQ: same MACs) as per-stage counts."""
    from mobilecodec.runtime.onnx_complexity import count_onnx

    out = {}
    for name, path in graph_files.items():
        r = count_onnx(path)
        out[name] = StageCount(r.params, r.macs, r.elementwise_total, r.resampling_total)
    return out


def package_complexity(package: str | Path) -> tuple[CodecComplexity, CodecComplexity, dict[str, Any]]:
    """(counted from the ONNX graphs, counted from the PyTorch stages of the package's checkpoint,
    extras) at the package's original size; Table 6 rows use the manifest's sender/receiver flags."""
    from mobilecodec.export.manifest import load_package_model
    from mobilecodec.runtime.codec_profile import count_codec

    pkg = Path(package)
    man, model, _ = load_package_model(pkg)
    ph, pw = man["padded_size"]
    oh, ow = man["original_size"]
    stages = onnx_stage_counts({n: pkg / g["file"] for n, g in man["graphs"].items()})
    membership = {n: (bool(g["sender"]), bool(g["receiver"])) for n, g in man["graphs"].items()}
    rows = table6_rows(stages, oh * ow, membership)
    onnx_c = CodecComplexity(man["config_name"], oh, ow, (ph, pw), stages, rows, warp_elements(model, ph, pw))
    torch_c = count_codec(model, oh, ow)
    extras = {"membership": membership, "columns": table6_columns(stages, oh * ow, membership,
                                                                  onnx_c.warp_elements)}
    return onnx_c, torch_c, extras


def table6_columns(stages: dict[str, StageCount], pixels: int, membership: dict[str, tuple[bool, bool]] | None,
                   warp: int) -> dict[str, dict[str, dict[str, float]]]:
    """Element-wise and resampling work per Table 6 row (elements per luma pixel), and the host
    warp on the P-frame rows: the columns kept apart from MACs."""
    el = {n: StageCount(s.params, s.elementwise, 0, 0) for n, s in stages.items()}
    rs = {n: StageCount(s.params, s.resampling, 0, 0) for n, s in stages.items()}
    er, rr = table6_rows(el, pixels, membership), table6_rows(rs, pixels, membership)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for side in er:
        out[side] = {}
        for row in er[side]:
            out[side][row] = {"elementwise_per_px": er[side][row][1] * 1e3,
                              "resampling_per_px": rr[side][row][1] * 1e3,
                              "warp_per_px": warp / pixels if row == "Pframe total" else 0.0}
    return out


# Buffer --------------------------------------------------------------------------------------

def qdq_output_dtypes(path: str | Path) -> dict[str, str]:
    """Graph output -> dtype it is stored at: the QuantizeLinear type feeding the output's
    DequantizeLinear in a QDQ graph, else the output's own element type."""
    import onnx

    from mobilecodec.runtime.tensor_types import stored_io_types

    proto = onnx.load(str(path), load_external_data=False)
    types = stored_io_types(proto)
    return {vi.name: onnx.helper.tensor_dtype_to_np_dtype(types[vi.name]).name for vi in proto.graph.output}


def package_buffer(manifest: dict[str, Any], fps: float, graph_files: dict[str, Path] | None = None) -> BufferReport:
    """HyTIP Table 7 buffer from the manifest's buffer layout. Each entry is stored at the smaller of
    its storage dtype (every backend rounds the carried buffer to it: uint8 frame, int16 flow, float16
    features, `models.buffer.STORAGE_DTYPES`) and the dtype its producing graph outputs it at (int8
    graphs: the QDQ type); either holds the carried value exactly."""
    from mobilecodec.models.buffer import STORAGE_DTYPES

    dtypes: dict[str, str] = {}
    for name, path in (graph_files or {}).items():
        if path.suffix == ".onnx" and "_ctx" not in path.stem:
            dtypes.update(qdq_output_dtypes(path))
    oh, ow = manifest["original_size"]
    entries, total, maps = [], 0, 0.0
    for e in manifest["buffer"]:
        kinds = [d for d in (STORAGE_DTYPES.get(e["name"]), dtypes.get(e["graph_output"])) if d in DTYPE_BYTES]
        dt = min(kinds, key=DTYPE_BYTES.__getitem__) if kinds else e.get("dtype", "float32")
        _, c, h, w = e["shape"]
        nbytes = c * h * w * DTYPE_BYTES[dt]  # uint16 where the graph writes 16-bit activations
        fm = c / (e["stride"] * e["stride"])
        entries.append({"name": e["name"], "shape": [c, h, w], "dtype": dt, "bytes": nbytes, "full_res_maps": fm})
        total += nbytes
        maps += fm
    return BufferReport(entries, maps, total, 2 * total * fps / 1e6, fps)


# Latency -------------------------------------------------------------------------------------

def _stats(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) in ms of timed runs: with the few runs a shared CPU allows, a
    percentile would only be the maximum under another name."""
    return {"median_ms": 1e3 * statistics.median(values), "min_ms": 1e3 * min(values), "max_ms": 1e3 * max(values),
            "runs": len(values)}


def graph_latency(engine: Any, runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """Each graph alone on random [0, 1) inputs (buffer inputs at the engine's storage dtypes):
    warm-up, then `runs` timed runs."""
    out = {}
    for name, sess in engine.run_sessions.items():
        feeds = engine.random_feeds(name)
        out[name] = _stats(timed_runs(lambda: sess.run(None, feeds), runs, warmup))
    return out


def timed_runs(fn: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Seconds of each of `runs` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def profile_frames(height: int, width: int, count: int, clip: str = "carphone") -> list[Any]:
    """`count` packed frame tensors (1, 6, H/2, W/2) of a sample clip, resized to the padded size; a
    clip shorter than `count` starts again from its first frame (it repeated the first frame alone, a
    still scene for every P-frame after the clip's end)."""
    import torch.nn.functional as F

    from mobilecodec.io import sample_clip
    from mobilecodec.models.yuv import read_packed_frames

    frames = [F.interpolate(t, size=(height // 2, width // 2), mode="bilinear", align_corners=False)
              for t in read_packed_frames(sample_clip(clip), count)]
    return [frames[k % len(frames)] for k in range(count)]


def _timed_frame(engine: Any, fn: Any) -> tuple[float, dict[str, float], Any]:
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    return wall, engine.clock.frames[-1], result


def frame_latency(engine: Any, runs: int, warmup: int) -> dict[str, Any]:
    """Per-frame encode and decode time of I- and P-frames on real content (carphone resized to
    the package size), with the time of every graph and host step inside the frame; the rest of
    the frame's wall time is 'host: glue'."""
    h, w = engine.padded_size
    n = warmup + runs
    xs = profile_frames(h, w, n + 1)
    engine.clock.reset()
    result: dict[str, Any] = {}
    # encode: the I-frame `n` times (stateless), then a chain of `n` P-frames
    walls: dict[tuple[str, str], list[float]] = {}
    steps: dict[tuple[str, str], list[dict[str, float]]] = {}

    def record(kind: str, ftype: str, i: int, wall: float, rec: dict[str, float]) -> None:
        if i >= warmup:
            walls.setdefault((kind, ftype), []).append(wall)
            steps.setdefault((kind, ftype), []).append(rec)

    def encode_i(x: Any) -> tuple[Any, Any, bytes]:
        src = engine.latent_encoder(x)
        out, buf = engine.run_iframe(src)
        return out, buf, src.payload()

    def encode_p(buf: Any, x: Any) -> tuple[Any, Any, bytes]:
        src = engine.latent_encoder(x)
        out, nbuf = engine.run_pframe(buf, src)
        return out, nbuf, src.payload()

    for i in range(n):
        wall, rec, (_, ibuf, ipay) = _timed_frame(engine, lambda: encode_i(xs[0]))
        record("encode", "I", i, wall, rec)
    buf, ppays = ibuf, []
    for i in range(n):
        wall, rec, (_, buf, pay) = _timed_frame(engine, lambda: encode_p(buf, xs[i + 1]))
        record("encode", "P", i, wall, rec)
        ppays.append(pay)

    def decode(payload: bytes, buf: Any) -> tuple[Any, Any]:
        src = engine.latent_decoder(payload, h, w)
        res = engine.run_iframe(src) if buf is None else engine.run_pframe(buf, src)
        src.finish()
        return res

    for i in range(n):
        wall, rec, (_, dbuf) = _timed_frame(engine, lambda: decode(ipay, None))
        record("decode", "I", i, wall, rec)
    for i in range(n):
        wall, rec, (_, dbuf) = _timed_frame(engine, lambda: decode(ppays[i], dbuf))
        record("decode", "P", i, wall, rec)
    for (kind, ftype), ws in walls.items():
        recs = steps[(kind, ftype)]
        names = sorted({k for r in recs for k in r})
        per_step = {k: _stats([r.get(k, 0.0) for r in recs]) for k in names}
        glue = [wl - sum(r.values()) for wl, r in zip(ws, recs)]
        per_step["host: glue"] = _stats(glue)
        net = [sum(v for k, v in r.items() if not k.startswith("host")) for r in recs]
        result.setdefault(kind, {})[ftype] = {
            "frame": _stats(ws), "steps": per_step, "network_ms_median": 1e3 * statistics.median(net),
            # 1 - networks / frame from the two medians, as printed (decode_speed.py uses the same)
            "host_share": 1.0 - statistics.median(net) / statistics.median(ws),
            "frames_per_s": 1.0 / statistics.median(ws)}
    result["bytes"] = {"I": len(ipay), "P_mean": float(np.mean([len(p) for p in ppays]))}
    return result


def parse_ort_profile(trace: str | Path, skip_runs: int = 0) -> dict[str, float]:
    """onnxruntime's profiling JSON -> total kernel time (ms) per op type, leaving out the kernels
    of the first `skip_runs` runs (warm-up: first-run allocations and kernel selection)."""
    events = json.loads(Path(trace).read_text())
    run_starts = sorted(ev["ts"] for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    start = 0.0
    if skip_runs:  # kernels from the first kept run on; none if there was no run after the warm-up
        start = run_starts[skip_runs] if len(run_starts) > skip_runs else float("inf")
    out: dict[str, float] = {}
    for ev in events:
        if ev.get("ts", 0) < start:
            continue
        if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            out[op] = out.get(op, 0.0) + ev.get("dur", 0) / 1e3
    return out


def op_profile(package: str | Path, ep: str, graph_files: dict[str, Path] | None, workdir: Path,
               runs: int = 3, warmup: int = 2) -> dict[str, Any]:
    """Per-op kernel time from onnxruntime's profiler (SessionOptions.enable_profiling) over
    `runs` runs of every graph after `warmup` untimed ones; per graph and overall top ops (mean ms
    per run: the profiler sums kernel times, it has no per-run medians)."""
    from mobilecodec.runtime.engine import OnnxEngine

    engine = OnnxEngine(package, ep=ep, graph_files=graph_files, profile_dir=workdir)
    for name, sess in engine.run_sessions.items():
        feeds = engine.random_feeds(name)
        for _ in range(warmup + runs):
            sess.run(None, feeds)
    per_graph: dict[str, dict[str, float]] = {}
    total: dict[str, float] = {}
    for name, trace in engine.end_profiling().items():
        ops = {k: v / runs for k, v in parse_ort_profile(trace, skip_runs=warmup).items()}
        per_graph[name] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
        for k, v in ops.items():
            total[k] = total.get(k, 0.0) + v
        Path(trace).unlink(missing_ok=True)
    top = dict(sorted(total.items(), key=lambda kv: -kv[1]))
    all_ms = sum(top.values()) or 1.0
    return {"runs": runs, "warmup": warmup, "top_ops": [{"op": k, "ms_per_run": v, "share": v / all_ms} for k, v in top.items()],
            "per_graph": per_graph}


# Whole reports -------------------------------------------------------------------------------

def profile_package(package: str | Path, *, ep: str = "cpu", fps: float = 30.0, runs: int = 8, warmup: int = 2,
                    graph_files: dict[str, Path] | None = None, workdir: str | Path | None = None,
                    ops: bool = True, progress: bool = False) -> dict[str, Any]:
    """Complexity (ONNX and PyTorch), buffer and latency of a package on onnxruntime."""
    import tempfile

    from mobilecodec.runtime.engine import OnnxEngine

    engine = OnnxEngine(package, ep=ep, graph_files=graph_files)
    onnx_c, torch_c, extras = package_complexity(engine.package)
    agree = {n: {"onnx_macs": onnx_c.stages[n].macs, "pytorch_macs": torch_c.stages[n].macs,
                 "onnx_params": onnx_c.stages[n].params, "pytorch_params": torch_c.stages[n].params}
             for n in onnx_c.stages}
    for v in agree.values():
        v["equal"] = v["onnx_macs"] == v["pytorch_macs"] and v["onnx_params"] == v["pytorch_params"]
    buf = package_buffer(engine.manifest, fps, engine.files)
    report: dict[str, Any] = {
        "source": {"package": str(engine.package), "backend": engine.label, "ep": ep,
                   "precision": engine.precision, "config": engine.manifest["config_name"],
                   "padded_size": engine.manifest["padded_size"], "original_size": engine.manifest["original_size"]},
        "complexity": onnx_c.to_dict(), "complexity_pytorch": torch_c.to_dict(),
        "complexity_columns": extras["columns"], "onnx_vs_pytorch": agree, "buffer": buf.to_dict(),
    }
    report["complexity"]["counted_from"] = "onnx graphs (runtime.onnx_complexity.count_onnx)"
    report["complexity_pytorch"]["counted_from"] = "pytorch stages (runtime.complexity.count_module)"
    steps = [("per-graph latency", lambda: graph_latency(engine, runs, warmup)),
             ("per-frame latency", lambda: frame_latency(engine, runs, warmup))]
    import torch

    from mobilecodec.runtime.threads import get_threads

    # threads: the --threads setting (None: each library's default), and what torch's host steps use
    lat: dict[str, Any] = {"backend": engine.label, "runs": runs, "warmup": warmup, "threads": get_threads(),
                           "torch_threads": torch.get_num_threads()}
    for what, fn in steps:
        if progress:
            import sys

            print(f"profile: {what} ...", file=sys.stderr)
        lat["graphs" if what.startswith("per-graph") else "frames"] = fn()
    report["latency"] = lat
    if ops:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            try:
                report["ort_ops"] = op_profile(engine.package, ep, graph_files or _overrides(engine), Path(tmp),
                                               runs=runs, warmup=warmup)
            except Exception as exc:  # noqa: BLE001 - profiling is optional output
                from mobilecodec.errors import one_line

                report["ort_ops"] = {"error": one_line(exc)}
    return report


def _overrides(engine: Any) -> dict[str, Path] | None:
    base = {n: engine.package / g["file"] for n, g in engine.manifest["graphs"].items()}
    diff = {n: p for n, p in engine.files.items() if base.get(n) != p}
    return diff or None


def profile_model(model: Any, height: int, width: int, fps: float,
                  buffer_dtype: str) -> tuple[dict[str, Any], CodecComplexity, BufferReport]:
    """Complexity and buffer of a PyTorch model (config or checkpoint), no latency:
    (report dict, complexity, buffer)."""
    from mobilecodec.runtime.codec_profile import buffer_report, count_codec

    c = count_codec(model, height, width)
    b = buffer_report(model, height, width, fps, dtype=buffer_dtype)
    report = {"source": {"config": model.cfg.name, "size": [height, width]}, "complexity": c.to_dict(),
              "complexity_columns": table6_columns(c.stages, height * width, None, c.warp_elements),
              "buffer": b.to_dict()}
    return report, c, b
