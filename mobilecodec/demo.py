"""`mobilecodec demo`: the whole pipeline on a shipped `tiny` checkpoint and a bundled clip, in one
call: int8 PTQ (aimet) -> int8 ONNX package -> QNN HTP context binaries -> encode/decode on the
onnxruntime int8 runtime (and the QNN HTP) -> int8 vs float check -> profile -> one report folder.

Every step calls the library API of that step (no subprocesses, no re-implementation), so the
demo is also an end-to-end check that the steps fit. The report folder appears atomically and
nothing is written outside it except the cache (`mobilecodec.fsutil.cache_dir()`): temporary
files of the steps go to a work folder inside the report's temporary folder, which is deleted
before the rename.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mobilecodec.errors import InputError
from mobilecodec.mdtable import fmt, md_table

FORMAT = "mobilecodec-demo"
VERSION = 1
STAGES = ("load checkpoints", "int8 PTQ (aimet)", "export ONNX package (int8 QDQ)", "compile for the QNN HTP",
          "encode + decode on onnxruntime", "int8 vs float check", "profile", "write report")
RANDOM_LABEL = "tiny_random_init"


@dataclass
class DemoOptions:
    """What the demo runs and its budgets (defaults: < 10 min on 2 CPU cores)."""

    clip: str = "carphone"
    frames: int = 32
    intra_period: int = 32
    checkpoint: str | None = None  # shipped name or file; default: the middle-beta shipped `tiny`
    pairs: int = 2  # float/int8 pairs for the check (BD-rate needs >= 2)
    ptq_steps: int = 10
    ptq_gop: int = 3
    ptq_batch: int = 2
    ptq_crop: tuple[int, int] = (128, 128)
    ptq_eval_gops: int = 2
    sensitivity_frames: int = 3
    soc: int = 43
    htp_arch: int = 73
    qnn_decode: bool = True
    profile_runs: int = 5
    profile_warmup: int = 1
    profile_ops: bool = True
    big_config: str = "mobilenvc"
    big_size: tuple[int, int] = (1080, 1920)  # (H, W) of the complexity / buffer tables of big_config
    fps: float = 30.0
    matrix: str = "bt601"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("frames", "intra_period", "pairs", "ptq_steps", "ptq_gop", "ptq_batch", "profile_runs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("ptq_eval_gops", "sensitivity_frames", "profile_warmup"):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.pairs > 2:
            raise InputError(f"pairs must be 1 or 2, got {self.pairs}")
        ch, cw = self.ptq_crop
        if ch <= 0 or cw <= 0 or ch % 64 or cw % 64:
            raise InputError(f"PTQ crop must be a positive multiple of 64 on both sides, got {ch}x{cw}")
        h, w = self.big_size
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise InputError(f"big size must be even and positive, got {h}x{w}")


# progress --------------------------------------------------------------------------------------

class StageLog:
    """'[k/N] stage ...' lines on stderr and the wall time of each stage."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        k = STAGES.index(name) + 1
        self.say(f"[{k}/{len(STAGES)}] {name} ...")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = dt
        self.say(f"[{k}/{len(STAGES)}] {name}: done in {dt:.1f} s")


@contextlib.contextmanager
def _tempdir_inside(work: Path) -> Iterator[None]:
    """Route `tempfile` (used by check-int8, the aimet QDQ export, ...) into `work` for the run."""
    work.mkdir(parents=True, exist_ok=True)
    old = tempfile.tempdir
    tempfile.tempdir = str(work)
    try:
        yield
    finally:
        tempfile.tempdir = old


# checkpoints -----------------------------------------------------------------------------------

@dataclass
class FloatPoint:
    """One float model of the demo: where it comes from and whether it is trained."""

    label: str
    path: Path
    model: Any = field(repr=False)
    beta: float | None
    trained: bool


def shipped_tiny() -> list[tuple[float, str, Path]]:
    """Shipped `tiny` checkpoints as (beta, name, path), sorted by beta."""
    from mobilecodec.checkpoint import read_checkpoint, shipped_checkpoints

    out = []
    for name, path in shipped_checkpoints().items():
        obj = read_checkpoint(path)
        if obj["config"].get("name") == "tiny":
            beta = obj.get("beta")
            out.append((float(beta) if beta is not None else math.inf, name, path))
    return sorted(out)


def choose_checkpoints(checkpoint: str | None, pairs: int) -> list[tuple[str, Path]]:
    """(name, path) of the float checkpoints: the main one first (default: the middle beta of the
    shipped `tiny` ones), then its beta neighbour for the second RD point. Empty: none shipped."""
    from mobilecodec.checkpoint import resolve_checkpoint

    shipped = shipped_tiny()
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        if not path.is_file():
            names = ", ".join(n for _, n, _ in shipped) or "none"
            raise InputError(f"no such checkpoint: {checkpoint} (shipped tiny checkpoints: {names})")
        main = (Path(path).stem, path)
        idx = next((i for i, (_, n, p) in enumerate(shipped) if p.resolve() == Path(path).resolve()), None)
        if idx is None:  # not a shipped one: no known second RD point of the same model family
            return [main]
        others = [(shipped[j][1], shipped[j][2]) for j in (idx - 1, idx + 1) if 0 <= j < len(shipped)]
        return [main, *others[:pairs - 1]]
    if not shipped:
        return []
    mid = len(shipped) // 2
    chosen = [mid] + [j for j in (mid - 1, mid + 1) if 0 <= j < len(shipped)][:pairs - 1]
    return [(shipped[j][1], shipped[j][2]) for j in chosen]


def random_tiny(variant: str = "low"):
    """A random-init `tiny` (seed 0) that codes: I-frame output bias at mid-grey so reconstructions
    are not black; the 'high' variant scales the analyses' latents by 16 (more bits, another RD
    point). NOT a trained codec: for running the pipeline before trained checkpoints exist."""
    import torch

    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    scale, bias = {"low": (1.0, 0.5), "high": (16.0, 0.45)}[variant]
    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny"))
    with torch.no_grad():
        model.i_synthesis.out.bias[:6] += bias
        for stage in ("i_analysis", "m_analysis", "r_analysis"):
            getattr(model, stage).out.weight *= scale
            getattr(model, stage).out.bias *= scale
    model.update()
    return model


def load_points(opts: DemoOptions, out: Path) -> list[FloatPoint]:
    """The float models: shipped checkpoints, or (none shipped) clearly labelled random-init ones
    saved into OUT/checkpoints/."""
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from mobilecodec.errors import CheckpointError

    chosen = choose_checkpoints(opts.checkpoint, opts.pairs)
    points = []
    for name, path in chosen:
        model, obj = load_checkpoint(path)
        if not model.ready_for_coding:
            raise CheckpointError(f"checkpoint {path} has no entropy-coding tables (saved before model.update())")
        points.append(FloatPoint(name, Path(path), model, obj.get("beta"), trained=True))
    if points:
        return points
    for variant in ("low", "high")[:opts.pairs]:
        model = random_tiny(variant)
        label = f"{RANDOM_LABEL}_{variant}" if opts.pairs > 1 else RANDOM_LABEL
        path = save_checkpoint(out / "checkpoints" / f"{label}.pt", model,
                               meta={"random_init": True, "note": "untrained; demo fallback"})
        points.append(FloatPoint(label, path, model, None, trained=False))
    return points


# the run ---------------------------------------------------------------------------------------

def _frames(path: Path, count: int) -> list:
    from mobilecodec.io import open_video

    with open_video(path, max_frames=count) as reader:
        return list(reader)


def _rd_point(label: str, summary: dict, stream: Path, sources: list, decoded: list, matrix: str) -> dict:
    """RD point (CONVENTIONS schema) of one stream file and its decoded frames."""
    import numpy as np

    from mobilecodec import metrics
    from mobilecodec.baselines.runner import frame_metrics
    from quant.check import METRIC_KEYS

    per_frame = [{"index": f["index"], "type": f["type"], "bits": f["bits"], "payload_bits": f["payload_bits"],
                  **frame_metrics(s, d, matrix)} for f, s, d in zip(summary["per_frame"], sources, decoded)]
    file_bytes = stream.stat().st_size
    n, w, h = summary["frames"], summary["width"], summary["height"]
    return {"label": label, "bpp": metrics.bpp(8 * file_bytes, n, w, h), "bits": 8 * file_bytes,
            "file_bytes": file_bytes, **{k: float(np.mean([f[k] for f in per_frame])) for k in METRIC_KEYS},
            "intra_period": summary["intra_period"], "per_frame": per_frame}


def run_demo(out_dir: str | os.PathLike, opts: DemoOptions | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write the report folder `out_dir` (atomically); returns report.json."""
    from mobilecodec.fsutil import atomic_dir, cache_dir
    from mobilecodec.io import resolve_input

    opts = opts or DemoOptions()
    opts.validate()
    final = Path(out_dir).resolve()
    if final.exists() and not final.is_dir():
        raise InputError(f"output {final} exists and is not a folder")
    clip = Path(resolve_input(opts.clip))
    if not clip.is_file():
        raise InputError(f"no such clip: {opts.clip} (a video file or a sample name such as carphone)")
    choose_checkpoints(opts.checkpoint, opts.pairs)  # a bad --checkpoint fails before any work
    # onnxruntime >= 1.2x on Linux starts 1DS telemetry at import, which writes a device id and an
    # event database under ~/.cache/Microsoft and a session file in $TMPDIR; keep it off
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # matplotlib keeps a font cache; keep it in our cache folder, not in ~/.config or ~/.cache
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    log = StageLog(opts.progress)
    t_start = time.perf_counter()
    with atomic_dir(final) as tmp:
        work = tmp / ".work"
        with _tempdir_inside(work):
            report = _pipeline(tmp, work, clip, opts, log)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        with log.stage("write report"):
            report["timings"] = {"stages_s": dict(log.seconds), "total_s": time.perf_counter() - t_start}
            _write(tmp, report, opts)
            relocate(tmp, final)
    report = _read_json(final / "report.json")
    log.say(f"report: {final / 'report.md'} ({report['timings']['total_s']:.0f} s)")
    return report


def _pipeline(out: Path, work: Path, clip: Path, opts: DemoOptions, log: StageLog) -> dict[str, Any]:
    from mobilecodec.io import open_video, padded_size

    with open_video(clip) as reader:
        width, height, total = reader.width, reader.height, reader.num_frames
    frames = min(opts.frames, total) if total else opts.frames
    pw, ph = padded_size(width, height)
    report: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "clip": {"name": opts.clip, "path": str(clip), "width": width, "height": height,
                 "padded_size": [ph, pw], "frames": frames, "intra_period": opts.intra_period}}

    with log.stage("load checkpoints"):
        points = load_points(opts, out)
        random_init = not points[0].trained
        report["checkpoints"] = [{"label": p.label, "path": str(p.path), "beta": p.beta, "trained": p.trained,
                                  "config": p.model.cfg.name, "weights_hash": p.model.weights_hash().hex()}
                                 for p in points]
        report["random_init"] = random_init
        if random_init:
            log.say("  no trained `tiny` checkpoint is shipped (mobilecodec/checkpoints/tiny_b*.pt): using a "
                    "RANDOM-INIT tiny model; numbers show the pipeline works, not codec quality")

    with log.stage("int8 PTQ (aimet)"):
        from quant.config import QuantConfig
        from quant.ptq import PTQOptions, run_ptq, save_quantized

        # receiver stages at 16-bit activations: at 8 bits the QNN HTP decode of the stream drifts
        # from the CPU encoder's reconstruction through the buffer (README, "int8")
        qcfg = QuantConfig(w8a16=("receiver",))
        popts = PTQOptions(steps=opts.ptq_steps, gop=opts.ptq_gop, batch=opts.ptq_batch, crop=opts.ptq_crop,
                           eval_gops=opts.ptq_eval_gops)
        qmodels, report["ptq"] = [], []
        for p in points:
            log.say(f"  PTQ of {p.label}: {popts.steps} steps x {popts.batch} GOPs of {popts.gop} frames, "
                    f"{popts.crop[0]}x{popts.crop[1]} crops of {clip.name}")
            qmodel, summary = run_ptq(p.model, [clip], qcfg, popts, progress=opts.progress)
            summary["checkpoint"] = str(p.path)
            qdir = save_quantized(out / "ptq" / p.label, qmodel, checkpoint=p.path, summary=summary)
            qmodels.append((qmodel, qdir))
            report["ptq"].append({"label": p.label, "folder": str(qdir), **summary})

    main, (qmain, qdir_main) = points[0], qmodels[0]
    pkg = out / "package"
    with log.stage("export ONNX package (int8 QDQ)"):
        from export.onnx_export import export_package

        man = export_package(main.model, pkg, ph, pw, original_size=(height, width), checkpoint=str(main.path),
                             progress=opts.progress, qmodel=qmain, quantized_dir=str(qdir_main))
        report["export"] = {"folder": str(pkg), "precision": man["precision"], "padded_size": man["padded_size"],
                            "original_size": man["original_size"], "export_seconds": man["export_seconds"],
                            "weights_hash": man["weights_hash"],
                            "quantized_weights_hash": man["quantization"]["quantized_weights_hash"],
                            "float_graphs": man["quantization"]["float_graphs"],
                            "graphs": {n: {"bytes": g["bytes"], "used_by_codec": g["used_by_codec"],
                                           "ops": g["ops"],
                                           "activation_bits": (g.get("quantization") or {}).get("activation_bits"),
                                           "opset": (g.get("quantization") or {}).get("opset")}
                                       for n, g in man["graphs"].items()}}

    compiled = out / "compiled"
    with log.stage("compile for the QNN HTP"):
        from export.compile import compile_package
        from export.qnn import resolve_soc

        soc = resolve_soc(opts.soc, opts.htp_arch)
        cman = compile_package(pkg, compiled, soc, progress=opts.progress)
        report["compile"] = {"folder": str(compiled), "soc": cman["soc"], "qnn_sdk_version": cman["qnn_sdk_version"],
                             "quantization": cman["quantization"]["source"],
                             "standin_graphs": cman["quantization"]["standin_graphs"],
                             "graphs": {n: {"bytes": g["bytes"], "compile_seconds": g["compile_seconds"],
                                            "used_by_codec": g["used_by_codec"]}
                                        for n, g in cman["graphs"].items()}}

    sources = _frames(clip, frames)
    with log.stage("encode + decode on onnxruntime"):
        report["runtime"] = _runtime(out, pkg, compiled, clip, sources, frames, opts, log)

    with log.stage("int8 vs float check"):
        from quant.check import CheckOptions, ModelPair, check_int8

        pairs = [ModelPair(str(p.path), str(qdir), p.model, q, p.beta) for p, (q, qdir) in zip(points, qmodels)]
        copts = CheckOptions(intra_period=opts.intra_period, frames=frames, max_bdrate=5.0, matrix=opts.matrix,
                             sensitivity_frames=min(opts.sensitivity_frames, frames), progress=opts.progress)
        report["check_int8"] = check_int8(pairs, [clip], copts, out / "check_int8")

    with log.stage("profile"):
        from mobilecodec.models.codec import VideoCodec
        from mobilecodec.models.configs import get_config
        from runtime.profiler import profile_model, profile_package
        from runtime.report import write_report

        prof = profile_package(pkg, ep="cpu", fps=opts.fps, runs=opts.profile_runs, warmup=opts.profile_warmup,
                               workdir=work, ops=opts.profile_ops, progress=opts.progress)
        prof["files"] = write_report(prof, out / "profile")
        report["profile"] = prof
        bh, bw = opts.big_size
        big, big_c, _ = profile_model(VideoCodec(get_config(opts.big_config)), bh, bw, opts.fps, "int8")
        from runtime.codec_profile import format_table6

        big["table6_text"] = format_table6(big_c)
        big["buffer_dtype"] = "int8 (flow and features; the decoded frame uint8)"
        report["profile_big"] = big
    return report


def _runtime(out: Path, pkg: Path, compiled: Path, clip: Path, sources: list, frames: int, opts: DemoOptions,
             log: StageLog) -> dict[str, Any]:
    """Encode on the onnxruntime int8 runtime (CPU EP), decode on it, and on the QNN HTP (emulated)."""
    from mobilecodec.metrics import psnr_yuv
    from runtime.engine import OnnxEngine
    from runtime.stream import decode_package, encode_package

    streams, decoded = out / "streams", out / "decoded"
    streams.mkdir()
    decoded.mkdir()
    stream = streams / f"{clip.stem}_int8_ort_cpu.mnvc"
    engine = OnnxEngine(pkg, ep="cpu")
    enc = encode_package(pkg, clip, stream, engine=engine, intra_period=opts.intra_period, max_frames=frames,
                         progress=opts.progress)
    cpu_y4m = decoded / f"{clip.stem}_int8_ort_cpu.y4m"
    dec = decode_package(pkg, stream, cpu_y4m, engine=engine, progress=opts.progress)
    cpu_frames = _frames(cpu_y4m, frames)
    point = _rd_point("int8 ORT CPU", enc, stream, sources, cpu_frames, opts.matrix)
    header_bytes = enc["file_bytes"] - sum(f["bits"] for f in enc["per_frame"]) // 8
    res: dict[str, Any] = {
        "stream": str(stream), "decoded": str(cpu_y4m), "backend": enc["backend"],
        "encode": {k: enc[k] for k in ("frames", "width", "height", "padded_width", "padded_height", "fps",
                                        "intra_period", "file_bytes", "bpp", "seconds", "estimated_bytes")},
        "header_bytes": header_bytes,
        "decode": {"backend": dec["backend"], "frames": dec["frames"], "hash_matches": dec["hash_matches"],
                   "seconds": dec["seconds"]},
        "point": point,
    }
    res["encode"]["frames_per_s"] = enc["frames"] / enc["seconds"]
    res["decode"]["frames_per_s"] = dec["frames"] / dec["seconds"]
    if opts.qnn_decode:
        qnn_y4m = decoded / f"{clip.stem}_int8_qnn_htp.y4m"
        # a failure here fails the demo (--no-qnn-decode skips this step on purpose)
        qdec = decode_package(compiled, stream, qnn_y4m, ep="qnn", progress=opts.progress)
        qnn_frames = _frames(qnn_y4m, frames)
        vs_cpu = [psnr_yuv(a, b) for a, b in zip(cpu_frames, qnn_frames)]
        finite = [min(p["y"], p["u"], p["v"]) for p in vs_cpu if not math.isinf(min(p["y"], p["u"], p["v"]))]
        qpoint = _rd_point("int8 QNN HTP decode", enc, stream, sources, qnn_frames, opts.matrix)
        res["qnn_decode"] = {
            "backend": qdec["backend"], "decoded": str(qnn_y4m), "frames": qdec["frames"],
            "hash_matches": qdec["hash_matches"], "seconds": qdec["seconds"],
            "frames_per_s": qdec["frames"] / qdec["seconds"],
            "frames_identical_to_cpu": sum(a == b for a, b in zip(
                [f["hash"] for f in dec["per_frame"]], [f["hash"] for f in qdec["per_frame"]])),
            "min_plane_psnr_vs_cpu_db": min(finite) if finite else None,
            "psnr_yuv": qpoint["psnr_yuv"], "psnr_rgb": qpoint["psnr_rgb"],
            "per_frame_psnr_yuv": [f["psnr_yuv"] for f in qpoint["per_frame"]],
            "max_psnr_diff_vs_cpu_db": max(abs(a["psnr_yuv"] - b["psnr_yuv"])
                                           for a, b in zip(qpoint["per_frame"], point["per_frame"]))}
    return res


# report ----------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    import json

    return json.loads(path.read_text())


def relocate(tmp: Path, final: Path) -> None:
    """Paths recorded while the report was being written point into the temporary folder: rewrite
    them (in every .json and .md of the report) to where the folder will be after the rename."""
    old, new = str(tmp), str(final)
    for p in tmp.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".md"):
            text = p.read_text(encoding="utf-8")
            if old in text:
                from mobilecodec.fsutil import atomic_path

                with atomic_path(p) as t:
                    t.write_text(text.replace(old, new), encoding="utf-8")


def _rel(out: Path, p: str | Path) -> str:
    try:
        return str(Path(p).relative_to(out))
    except ValueError:
        return str(p)


def _write(out: Path, report: dict[str, Any], opts: DemoOptions) -> None:
    """Plots, report.md and report.json into `out`."""
    from mobilecodec.fsutil import atomic_path, write_json_atomic
    from mobilecodec.plots import per_frame_plot, rd_plot

    chk = report["check_int8"]["results"][0]
    ort = {"codec": "int8 onnxruntime CPU (package)", "points": [report["runtime"]["point"]]}
    fres = dict(chk["float"], codec=f"{chk['float']['codec']} float (PyTorch)")
    qres = dict(chk["int8"], codec=f"{chk['int8']['codec']} (aimet sim, PyTorch)")
    curves = [fres, qres, ort]
    plots = {"rd": rd_plot(curves, out / "rd.png", metric=["psnr_yuv", "psnr_rgb"],
                           title=f"{report['clip']['name']}, {report['clip']['frames']} frames: float vs int8"),
             "per_frame_psnr": per_frame_plot(curves, "psnr_yuv", out / "per_frame_psnr.png",
                                              title="PSNR-YUV per frame"),
             "per_frame_bits": per_frame_plot(curves, "bits", out / "per_frame_bits.png", title="bits per frame")}
    report["plots"] = {k: _rel(out, v) for k, v in plots.items()}
    report["plots"]["latency_breakdown"] = "profile/latency_breakdown.png"
    report["plots"]["macs_per_subnetwork"] = "profile/macs_per_subnetwork.png"
    md = markdown(report, out)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    report["files"] = sorted(set(files) | {"report.json"})
    write_json_atomic(out / "report.json", report)


def _demote(lines: list[str]) -> list[str]:
    """Headings of an embedded sub-report one level down."""
    return [("#" + ln) if ln.startswith("#") else ln for ln in lines]


def markdown(report: dict[str, Any], out: Path) -> str:
    """report.md: what was done, every table, where the artifacts are, timings per stage."""
    from quant.check import markdown as check_md
    from runtime.report import buffer_md, complexity_md, latency_md

    clip, rt, t = report["clip"], report["runtime"], report["timings"]
    ck = report["checkpoints"]
    chk = report["check_int8"]
    L: list[str] = ["# mobilecodec demo report", ""]
    if report["random_init"]:
        L += ["> **RANDOM-INIT MODEL.** No trained `tiny` checkpoint is shipped yet "
              "(`mobilecodec/checkpoints/tiny_b*.pt`), so this run used a randomly initialised `tiny` codec "
              f"({', '.join(c['label'] for c in ck)}). The numbers prove that every step runs and that the "
              "steps agree with each other; they say nothing about compression quality.", ""]
    L += [f"Clip **{clip['name']}** ({clip['width']}x{clip['height']}, padded to {clip['padded_size'][0]}x"
          f"{clip['padded_size'][1]}), first {clip['frames']} frames, intra period {clip['intra_period']}. "
          f"Main checkpoint: `{ck[0]['label']}` (config {ck[0]['config']}, beta {fmt(ck[0]['beta'], 4)}"
          f"{'' if ck[0]['trained'] else ', untrained'}). Total time {t['total_s']:.1f} s.", ""]
    p = rt["point"]
    L += ["## Summary", "",
          f"- int8 package on onnxruntime CPU: **{p['bpp']:.4f} bpp, PSNR-YUV {p['psnr_yuv']:.2f} dB**, "
          f"PSNR-RGB {p['psnr_rgb']:.2f} dB, MS-SSIM-RGB {p['ms_ssim_rgb']:.4f}; decode reproduced "
          f"{rt['decode']['hash_matches']}/{rt['decode']['frames']} encoder frame hashes."]
    q = rt.get("qnn_decode") or {}
    if "hash_matches" in q:
        L.append(f"- Same stream decoded on the QNN HTP (soc {report['compile']['soc']['soc_model']}, emulated): "
                 f"{q['frames_identical_to_cpu']}/{q['frames']} frames bit-identical to the CPU decode, PSNR-YUV "
                 f"{q['psnr_yuv']:.2f} dB against the source; per frame within "
                 f"{q['max_psnr_diff_vs_cpu_db']:.3f} dB of the CPU decode.")
    L.append(f"- int8 vs float (aimet simulation through the real encoder/decoder): {chk['verdict']}")
    L.append("")
    L += ["## Stages and timings", "", *md_table(["#", "stage", "seconds"], [
        [i + 1, s, t["stages_s"].get(s)] for i, s in enumerate(STAGES)], 1),
        f"| | total | {t['total_s']:.1f} |", "",
        "Stage 8 (plots, this file) is timed on the console only: it runs while this file is written.", ""]
    L += ["## 1. Checkpoints", "", *md_table(["label", "trained", "beta", "config", "weights hash", "file"],
                                           [[c["label"], c["trained"], fmt(c["beta"], 4), c["config"],
                                             c["weights_hash"][:16], _rel(out, c["path"])] for c in ck]), ""]
    L += ["## 2. int8 PTQ (aimet QuantSim, htp_v73 config, receiver stages at 16-bit activations)", "",
          *md_table(["model", "steps x batch x GOP", "crop", "stages", "float PSNR-YUV", "int8 PSNR-YUV",
                   "int8 vs float PSNR", "seconds", "folder"],
                  [[r["label"], f"{r['options']['steps']} x {r['options']['batch']} x {r['options']['gop']}",
                    "x".join(map(str, r["options"]["crop"])), len(r["stages"]), r.get("float_psnr_yuv"),
                    r.get("int8_psnr_yuv"), r.get("int8_vs_float_psnr_yuv"), r["seconds"], _rel(out, r["folder"])]
                   for r in report["ptq"]], 2),
          "", f"PSNR columns: {report['options']['ptq_eval_gops']} held-out GOPs of the calibration clip "
          "(PyTorch forward, no entropy coding).", ""]
    ex = report["export"]
    L += [f"## 3. ONNX package ({ex['precision']}, {ex['padded_size'][0]}x{ex['padded_size'][1]}) -> "
          f"`{_rel(out, ex['folder'])}/`", "",
          *md_table(["graph", "int8", "activation bits", "opset", "bytes", "used by codec", "ops"],
                  [[n, g["activation_bits"] is not None, "/".join(map(str, g["activation_bits"] or [])) or "-",
                    g["opset"], g["bytes"], g["used_by_codec"], ", ".join(f"{k} x{v}" for k, v in g["ops"].items())]
                   for n, g in ex["graphs"].items()]), "",
          f"Export took {ex['export_seconds']:.1f} s. Float graphs (host-side twins, profiling only): "
          f"{', '.join(ex['float_graphs']) or 'none'}.", ""]
    cp = report["compile"]
    L += [f"## 4. QNN HTP context binaries (soc {cp['soc']['soc_model']} {cp['soc']['name']}, HTP v"
          f"{cp['soc']['htp_arch']}, QNN SDK {cp['qnn_sdk_version']}) -> `{_rel(out, cp['folder'])}/`", "",
          f"int8 numbers from: {cp['quantization']}"
          + (f" (stand-in calibration on random inputs for {', '.join(cp['standin_graphs'])}: float in the package, "
             "exported for profiling only; the codec runs hyper-synthesis in exact integers on the host)"
             if cp["standin_graphs"] else "") + ".", "",
          *md_table(["graph", "context bytes", "compile s"],
                  [[n, g["bytes"], g["compile_seconds"]] for n, g in cp["graphs"].items()], 2), ""]
    e, d = rt["encode"], rt["decode"]
    L += ["## 5. Encode and decode on the onnxruntime int8 runtime", "",
          *md_table(["step", "backend", "frames", "bytes", "bpp", "PSNR-YUV", "PSNR-RGB", "MS-SSIM-RGB",
                   "frames/s", "hashes = encoder"],
                  [["encode", rt["backend"], e["frames"], e["file_bytes"], e["bpp"], p["psnr_yuv"], p["psnr_rgb"],
                    p["ms_ssim_rgb"], e["frames_per_s"], "-"],
                   ["decode", d["backend"], d["frames"], "-", "-", p["psnr_yuv"], p["psnr_rgb"], p["ms_ssim_rgb"],
                    d["frames_per_s"], f"{d['hash_matches']}/{d['frames']}"]]
                  + ([["decode", q["backend"], q["frames"], "-", "-", q["psnr_yuv"], q["psnr_rgb"], "-",
                       q["frames_per_s"], f"{q['hash_matches']}/{q['frames']}"]] if "hash_matches" in q else []), 4),
          "", f"Stream `{_rel(out, rt['stream'])}`: {e['file_bytes']} bytes = {rt['header_bytes']} header + "
          f"frame records; bpp = 8 x {e['file_bytes']} / ({e['frames']} x {e['width']} x {e['height']}). "
          f"Decoded video: `{_rel(out, rt['decoded'])}`.", ""]
    if "hash_matches" in q:
        L += [f"QNN HTP decode (`{_rel(out, q['decoded'])}`): {q['frames_identical_to_cpu']}/{q['frames']} frames "
              "identical to the CPU decode"
              + (f", lowest plane PSNR between the two decodes {q['min_plane_psnr_vs_cpu_db']:.2f} dB"
                 if q["min_plane_psnr_vs_cpu_db"] is not None else "")
              + ". The HTP and onnxruntime CPU round int8 differently by up to one step; the entropy coding "
              "stays bit-exact, so the stream still decodes and only reconstructions drift within the GOP.", ""]
    fpts, qpts = chk["results"][0]["float"]["points"][0], chk["results"][0]["int8"]["points"][0]
    L += ["### Per frame (main checkpoint)", "",
          "float and int8 sim: PyTorch (int8 = aimet simulation) through the real encoder and decoder (step 6); "
          "int8 ORT / QNN: the package's graphs on onnxruntime (this step).", "",
          *md_table(["frame", "type", "bits float", "bits int8 sim", "bits int8 ORT", "PSNR-YUV float",
                   "PSNR-YUV int8 sim", "PSNR-YUV int8 ORT"]
                  + (["PSNR-YUV int8 QNN"] if "hash_matches" in q else []),
                  [[a["index"], a["type"], a["bits"], b["bits"], c["bits"], a["psnr_yuv"], b["psnr_yuv"], c["psnr_yuv"]]
                   + ([q["per_frame_psnr_yuv"][i]] if "hash_matches" in q else [])
                   for i, (a, b, c) in enumerate(zip(fpts["per_frame"], qpts["per_frame"], p["per_frame"]))], 3), ""]
    L += ["## 6. int8 vs float check", "",
          "Float and int8 (aimet simulation) codecs through the real encoder and decoder, hash-verified. "
          + ("" if len(ck) > 1 else "Only one float/int8 pair was run, so there is no BD-rate (pchip needs >= 2 "
             "RD points per curve); the per-point differences below are the comparison. ")
          + "Files: `check_int8/`.", "",
          *_demote(check_md(chk).splitlines()[1:]), ""]
    prof = report["profile"]
    L += [f"## 7. Profile of the package ({prof['source']['backend']})", "",
          *_demote(complexity_md(prof)), *_demote(buffer_md(prof)), *_demote(latency_md(prof)),
          "Latency breakdown: `profile/latency_breakdown.png`; MACs per subnetwork: "
          "`profile/macs_per_subnetwork.png`; all numbers: `profile/profile.json`.", ""]
    big = report["profile_big"]
    bh, bw = report["options"]["big_size"]
    L += [f"### `{big['source']['config']}` config at {bh}x{bw} (PyTorch count, buffer {big['buffer_dtype']})", "",
          "```", big["table6_text"], "```", "", *_demote(_demote(complexity_md(big))), *_demote(_demote(buffer_md(big)))]
    L += ["## Plots", "", "![RD](rd.png)", "", "![PSNR per frame](per_frame_psnr.png)", "",
          "![bits per frame](per_frame_bits.png)", "", "![latency](profile/latency_breakdown.png)", ""]
    L += ["## Artifacts", "",
          "- `package/`: int8 ONNX package (manifest.json, graphs/*.onnx, encodings/, checkpoint.pt)",
          "- `compiled/`: QNN HTP context binaries (*_ctx.onnx + *_qnn.bin, manifest.json)",
          "- `ptq/<model>/`: aimet quantized checkpoints and encodings",
          "- `streams/`: the .mnvc stream coded on onnxruntime; `decoded/`: its decodes (.y4m)",
          "- `check_int8/`: int8 vs float report (JSON, Markdown, RD JSONs, plots)",
          "- `profile/`: profile.json / profile.md / charts",
          "- `rd.png`, `per_frame_psnr.png`, `per_frame_bits.png`, `report.json`", ""]
    if report["random_init"]:
        L += ["Rerun `mobilecodec demo` once trained checkpoints are shipped to get real numbers.", ""]
    return "\n".join(L) + "\n"
