"""Evaluate codec checkpoints the way a user meets them: the real encoder writes a .mnvc file, the
real decoder reads it back (hash-verified), and every decoded frame is measured against its source.

Shared by `mobilecodec eval` and the int8 check (`mobilecodec.quant.check`). Rates come from the stream: a
point's bpp is the whole file's bits / (frames x W x H); a frame's bits are its record's bytes x 8.
Point metrics are means of the per-frame values (as in `mobilecodec.baselines.runner`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mobilecodec.errors import CheckpointError, InputError, InputWarning
from mobilecodec.fsutil import check_output_dir, check_planned_outputs, listed_files, publishing, remove_superseded
from mobilecodec.metrics.frames import mean_metrics
from mobilecodec.rdresults import BD_MIN_POINTS, drift_summary, format_period_drift, quality_unit, split_curves

FORMAT = "mobilecodec-eval"
BD_METRICS = ("psnr_yuv", "psnr_rgb")
PLOT_METRICS = ("psnr_yuv", "psnr_rgb")  # the RD plot's subplots (an anchor is checked for them up front)
BD_METHOD = "pchip"


def code_point(model: Any, source: str | os.PathLike, sources: Sequence[Any], work: str | os.PathLike,
               label: str, *, intra_period: int = 32, frames: int | None = None, matrix: str = "bt601",
               progress: bool = False, extra: dict | None = None, save_decoded: str | os.PathLike | None = None,
               on_frame: Callable[[str, int], None] | None = None, refine: Any = None,
               engine: Any = None, modes: Any = None) -> tuple[dict, dict]:
    """Encode `source` with `model` into WORK/<label>.mnvc, decode it with hash verification and
    measure each decoded frame against `sources` (the source frames, in order).

    Returns (RD point, encode summary). `save_decoded` also writes the decoded video (.y4m/.yuv);
    `on_frame(phase, index)` is called after each encoded ("encode") and decoded ("decode") frame
    for progress bars;
    `refine` (a `codec.refine.RefineOptions`) turns on the encoder's latent refinement, `modes` (a
    `codec.block_modes.BlockModeOptions`) its P-frame block modes; `engine`
    runs the networks of both encode and decode (default: PyTorch; e.g. a
    `mobilecodec.runtime.engine.OnnxEngine`, whose own model then names the stream)."""
    from mobilecodec import metrics
    from mobilecodec.bitstream.format import StreamReader
    from mobilecodec.codec.video import decode_video, encode_video
    from mobilecodec.errors import BitstreamError

    stream = Path(work) / f"{label}.mnvc"
    if engine is not None:
        model = engine.model
    enc = encode_video(model, source, stream, intra_period=intra_period, max_frames=frames, progress=progress,
                       refine=refine, engine=engine, modes=modes,
                       on_frame=None if on_frame is None else (lambda i: on_frame("encode", i)))
    if enc["frames"] != len(sources):
        raise InputError(f"{source}: encoded {enc['frames']} frames but {len(sources)} source frames were read")
    measured: dict[int, dict] = {}

    def measure(i: int, dec: Any) -> None:
        measured[i] = metrics.frame_metrics(sources[i], dec, matrix)
        if on_frame is not None:
            on_frame("decode", i)

    dec = decode_video(model, stream, save_decoded, progress=progress, verify=True, on_frame=measure, engine=engine)
    if dec["hash_matches"] != enc["frames"] or dec["frames"] != enc["frames"]:
        raise BitstreamError(f"{label}: {dec['hash_matches']} of {enc['frames']} frames decoded hash-exact")
    with StreamReader(stream) as r:
        header_bytes = r.header.nbytes
    n, w, h = enc["frames"], enc["width"], enc["height"]
    per_frame = [{"index": i, "type": fi["type"], "bits": fi["bits"], "payload_bits": fi["payload_bits"],
                  **measured[i]} for i, fi in enumerate(enc["per_frame"])]
    file_bytes = stream.stat().st_size
    point = {"label": label, "bpp": metrics.bpp(8 * file_bytes, n, w, h), "bits": 8 * file_bytes,
             "file_bytes": file_bytes, "header_bits": 8 * header_bytes,
             **metrics.mean_metrics(per_frame),
             "intra_period": intra_period, "config": model.cfg.name,
             "weights_hash": model.weights_hash().hex(), "hash_verified_frames": dec["hash_matches"],
             **(extra or {}), "per_frame": per_frame}
    return point, enc


def rd_result(codec: str, source: str, enc: dict, points: list[dict], matrix: str | None = None) -> dict:
    """An RD result dict (docs/CONVENTIONS.md schema) from an encode summary and its points; `matrix`:
    the YUV->RGB matrix of its RGB metrics (`rdresults.check_same_matrix` compares it)."""
    out = {"codec": codec, "source": source, "width": enc["width"], "height": enc["height"], "fps": enc["fps"],
           "frames": enc["frames"], "points": points}
    return dict(out, matrix=matrix) if matrix else out


def frame_type_summary(point: dict) -> dict:
    """Mean bits per frame (`mean_bits`: a point's `bits` is its total), PSNR-YUV and PSNR-RGB of the
    I-frames and of the P-frames of one RD point, and whether P-frames cost fewer bits than I-frames
    at equal or better PSNR-YUV."""
    out: dict[str, Any] = {}
    for t in ("I", "P"):
        fr = [f for f in point["per_frame"] if f["type"] == t]
        out[t] = ({"frames": len(fr), "mean_bits": float(np.mean([f["bits"] for f in fr])),
                   **mean_metrics(fr, ("psnr_yuv", "psnr_rgb"))} if fr else {"frames": 0})
    if out["I"]["frames"] and out["P"]["frames"]:
        out["p_over_i_bits"] = out["P"]["mean_bits"] / out["I"]["mean_bits"] if out["I"]["mean_bits"] else None
        out["p_cheaper_at_equal_or_better_psnr"] = bool(out["P"]["mean_bits"] < out["I"]["mean_bits"]
                                                        and out["P"]["psnr_yuv"] >= out["I"]["psnr_yuv"])
    else:
        out["p_over_i_bits"] = None
        out["p_cheaper_at_equal_or_better_psnr"] = None
    return out


def bd_against(anchor: dict, test: dict, metrics_: Sequence[str] = BD_METRICS,
               min_points: int = BD_MIN_POINTS) -> dict:
    """BD-rate (%, pchip) of `test` against `anchor` per metric; {'error': why} when it cannot be
    computed (fewer than `min_points` points on a curve, by default the ones `bdrate` needs; curves
    not monotonic or not overlapping)."""
    from mobilecodec.metrics import bd_rate
    from mobilecodec.metrics.bd import curve_overlap
    from mobilecodec.rdresults import check_bd_points, check_same_matrix, rd_curve

    out: dict[str, Any] = {"anchor": anchor.get("codec"), "test": test.get("codec"), "method": BD_METHOD,
                           "bd_rate": {}, "error": None}
    for name, res in (("anchor", anchor), ("test", test)):
        try:
            check_bd_points(res, f"the {name} '{res.get('codec')}'", min_points)
        except InputError as exc:
            short = name == "test" and len(res.get("curves") or []) < 2  # too few points, not mixed curves
            what = "packages (--package)" if all(q.get("backend") for q in res["points"]) else "checkpoints"
            out["error"] = str(exc) + (f" (give {min_points} or more {what}, comma-separated)" if short else "")
            return out
    out["metric_errors"] = {}
    for m in metrics_:  # each metric on its own: one that cannot be judged leaves the others
        try:
            check_same_matrix(anchor, test, m)
            ra, da = rd_curve(anchor, m)
            rt, dt = rd_curve(test, m)
            out["bd_rate"][m] = bd_rate(ra, da, rt, dt, method=BD_METHOD)
            out.setdefault("quality_overlap", {})[m] = curve_overlap(da, dt)  # how much of each curve it covers
        except InputError as exc:
            out["metric_errors"][m] = str(exc)
    if not out["bd_rate"]:  # each reason with the metrics it holds for ("bd: ...; bd: ..." named none)
        by_reason: dict[str, list[str]] = {}
        for m, why in out["metric_errors"].items():
            by_reason.setdefault(why, []).append(m)
        out["error"] = "; ".join(f"{', '.join(ms)}: {why}" for why, ms in by_reason.items())
    return out


@dataclass
class EvalOptions:
    """How `evaluate` codes and measures."""

    intra_period: int = 32
    frames: int | None = None       # code only the first N frames of each input
    matrix: str = "bt601"           # YUV->RGB matrix of PSNR-RGB / MS-SSIM-RGB
    save_decoded: bool = False      # also keep OUT/streams/<stem>_<label>.y4m
    codec_name: str | None = None   # the results' "codec" (default: the checkpoints' config names)
    progress: bool = True
    refine_steps: int = 0           # sender-side latent refinement steps per latent (0: off; codec.refine)
    block_modes: int = 0            # block size of the sender's P-frame block modes (0: off; codec.block_modes)
    raw_size: tuple[int, int] | None = None  # (width, height) of raw .yuv inputs
    fps: float | None = None        # frame rate to record: a raw .yuv input's (default 30), or instead of a file's

    def validate(self) -> None:
        validate_coding(self.intra_period, self.frames, self.matrix, self.block_modes)
        if self.refine_steps < 0:
            raise InputError(f"--refine must be >= 0, got {self.refine_steps}")


def validate_coding(intra_period: int, frames: int | None, matrix: str, block_modes: int = 0) -> None:
    """The coding options `eval` and `check-int8` share: InputError naming the bad one."""
    from mobilecodec.codec.block_modes import BLOCK_SIZES

    if block_modes and block_modes not in BLOCK_SIZES:
        raise InputError(f"--block-modes must be one of {', '.join(map(str, BLOCK_SIZES))}, got {block_modes}")
    if intra_period < 1:
        raise InputError(f"--intra-period must be >= 1, got {intra_period}")
    if frames is not None and frames < 1:
        raise InputError(f"--frames must be >= 1, got {frames}")
    if matrix not in ("bt601", "bt709"):
        raise InputError(f"unknown colour matrix {matrix!r}; choose bt601 or bt709")


def checkpoint_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One unique label per checkpoint file or package folder: its file stem (a folder's whole
    name), or '<parents>_<stem>' with as many parent folders as it takes where stems repeat (e.g.
    several runs' final.pt, or exp-a/b0.0064/final.pt and exp-b/b0.0064/final.pt)."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise InputError(f"checkpoints and packages must be distinct, got {', '.join(map(str, paths))}")
    stems = [r.name if r.is_dir() else r.stem for r in resolved]
    labels = list(stems)
    for depth in range(1, max(len(r.parts) for r in resolved)):  # more parent folders where names repeat
        repeated = {x for x in labels if labels.count(x) > 1}
        if not repeated:
            break
        labels = [("_".join(r.parts[max(1 if r.anchor else 0, len(r.parts) - 1 - depth):-1]) + "_" + s)
                  if stems.count(s) > 1 else s for r, s in zip(resolved, stems)]  # never the root "/"
    return labels


@dataclass(frozen=True)
class Coder:
    """What codes one RD point: its source (checkpoint file or package folder), the model and
    checkpoint dict that name its streams, and the backend running the networks (None: PyTorch;
    e.g. a `mobilecodec.runtime.engine.OnnxEngine` of an export package)."""

    path: str
    model: Any
    checkpoint: dict
    engine: Any = None


def _load_models(checkpoints: Sequence[str]) -> list[Coder]:
    from mobilecodec.checkpoint import load_checkpoint, resolve_checkpoint

    models = []
    for c in checkpoints:
        model, obj = load_checkpoint(c)
        if not model.ready_for_coding:
            raise CheckpointError(f"checkpoint {c} has no entropy-coding tables (it was saved before "
                                  "model.update())")
        models.append(Coder(str(resolve_checkpoint(c)), model, obj))
    return models


def check_before_loading(inputs: Sequence[str | os.PathLike], opts: EvalOptions, checkpoints: bool,
                         packages: bool) -> list[Path]:
    """The checks of `evaluate` that need no model, as paths of the inputs: the CLI runs them before it
    opens the packages' sessions (a --refine with --package or a missing input was refused after 2-3 s
    of loading every graph)."""
    from mobilecodec.fsutil import check_input_file
    from mobilecodec.io import check_size_applies, resolve_video

    opts.validate()
    if not checkpoints and not packages:
        raise InputError("give at least one checkpoint (--checkpoint C[,C2,...]) or package (--package P[,P2,...])")
    if packages and opts.refine_steps:
        raise InputError("--refine runs on the PyTorch model; it cannot code a package's points")
    if not inputs:
        raise InputError("give at least one input video")
    resolved = [resolve_video(i) for i in inputs]  # every input's existence first, then what kind of file
    srcs = [check_input_file(r, "video file") for r in resolved]  # a pipe was "no such input video"
    check_size_applies(opts.raw_size, srcs)
    return srcs


def evaluate(checkpoints: Sequence[str], inputs: Sequence[str | os.PathLike], opts: EvalOptions,
             out_dir: str | os.PathLike, anchor: str | os.PathLike | None = None, engines: Sequence[Any] = (),
             kept: Sequence[tuple[str, str | os.PathLike | None]] = ()) -> dict:
    """Code every input with every checkpoint, write OUT/<stem>_eval.json (RD result, one point per
    checkpoint sorted by bpp), the streams under OUT/streams/, the RD and per-frame plots, and
    return the report (results, I/P summaries, BD-rates against `anchor` when given). `engines`:
    opened backends of export packages (`OnnxEngine`), one more RD point each, coded and decoded
    by their own graphs: what a deployment runs, measured the same way. `kept`: (what, path) of
    other files no output may replace (the command's --json)."""
    from mobilecodec.rdresults import load_results

    srcs = check_before_loading(inputs, opts, bool(checkpoints), bool(engines))
    stems = [s.stem for s in srcs]
    if len(set(stems)) < len(stems):  # every input numbered (a plain '1_clip' cannot meet a numbered 'clip')
        stems = [f"{k}_{s.stem}" for k, s in enumerate(srcs)]
    out = check_output_dir(out_dir)
    models = _load_models(checkpoints) + [Coder(str(e.source), e.model, e.checkpoint, e) for e in engines]
    labels = checkpoint_labels([c.path for c in models])
    names = [f"{stem}_{label}" for stem in stems for label in labels]
    if len(set(names)) < len(names):  # e.g. input c with checkpoint tiny_b1 and input c_tiny with b1
        raise InputError("inputs and checkpoints give two points the same output name "
                         f"({', '.join(sorted({n for n in names if names.count(n) > 1}))}); rename one")
    streams = [f"streams/{n}{ext}" for n in names for ext in (".mnvc", ".y4m")[:1 + opts.save_decoded]]
    check_planned_outputs(out, streams + [Path(p).name for stem in stems for p in output_paths(out, stem)],
                          folders=["streams"],
                          kept=[*(("the input video", s) for s in srcs), ("the anchor", anchor),
                                *(("a checkpoint this command reads", c.path) for c in models
                                  if c.engine is None and os.path.isfile(c.path)), *kept])
    anchor_res = load_results(anchor) if anchor is not None else None
    if anchor_res is not None:  # what the RD plot draws of it, checked before any coding
        from mobilecodec.rdresults import rd_curve

        for m in PLOT_METRICS:
            rd_curve(anchor_res, m)
    _warn_trained_on_held_out(models, srcs)
    codec = opts.codec_name or "/".join(dict.fromkeys(c.model.cfg.name for c in models))
    raw_dir = tempfile.TemporaryDirectory(prefix="mobilecodec-eval-raw-")
    try:
        return _evaluate(srcs, stems, out, anchor, anchor_res, models, labels, codec, opts, Path(raw_dir.name))
    finally:
        raw_dir.cleanup()


def _warn_trained_on_held_out(models: list[Coder], srcs: list[Path]) -> None:
    """A warning for the checkpoints and packages whose weights saw the held-out clip (`train
    --allow-held-out`, their record `trained_on_held_out`) or whose int8 encodings were calibrated on
    it (a package's manifest or compile folder), per input that is that clip: those figures are not
    held-out ones."""
    def record(c: Coder) -> dict:  # a package's int8 provenance: its manifest's, its compile folder's
        if c.engine is None:
            return {}
        q = getattr(c.engine, "manifest", {}).get("quantization") or {}
        ctx = getattr(c.engine, "context", None) or {}
        return {k: bool(q.get(k) or ctx.get(k)) for k in ("calibrated_on_held_out", "trained_on_held_out")}

    trained = [c.path for c in models if ((c.checkpoint or {}).get("meta") or {}).get("trained_on_held_out")
               or record(c).get("trained_on_held_out")]
    calibrated = [c.path for c in models if record(c).get("calibrated_on_held_out")]
    if not trained and not calibrated:
        return
    from mobilecodec.train.data import is_held_out

    for s in srcs:
        if is_held_out(s):
            for seen, what in ((trained, "trained on the held-out clip (--allow-held-out)"),
                               (calibrated, "int8, calibrated on the held-out clip (--allow-held-out)")):
                if seen:
                    warnings.warn(InputWarning(f"{', '.join(seen)} {what}: the figures on {s.name} are not "
                                               "held-out figures"))


def as_y4m(src: Path, work: Path, index: int, raw_size: tuple[int, int] | None = None, fps: float | None = None,
           frames: int | None = None) -> Path:
    """A raw .yuv input as a .y4m in `work` (of `raw_size` = (width, height), at `fps`), and a file
    given another rate (--fps) as a .y4m at that rate, so that the encoder and the measurement read
    it like any other file (eval and check-int8); other inputs as they are."""
    raw = src.suffix.lower() == ".yuv"
    if not raw and fps is None:
        return src
    from mobilecodec.io import open_video, write_video

    out = work / f"{index}_{src.stem}.y4m"  # two inputs may share a name: one file each
    with open_video(src, size=raw_size if raw else None, fps=fps, max_frames=frames) as reader:
        write_video(out, reader, reader.rate)
    return out


def _evaluate(srcs: list[Path], stems: list[str], out: Path, anchor: Any, anchor_res: dict | None, models: list,
              labels: list[str], codec: str, opts: EvalOptions, raw_work: Path) -> dict:
    from mobilecodec.codec.block_modes import BlockModeOptions
    from mobilecodec.codec.refine import RefineOptions
    from mobilecodec.io import padded_size, read_frames, warn_fewer_frames
    from mobilecodec.metrics.msssim import check_measurable
    from mobilecodec.progress import progress_bar
    from mobilecodec.rdresults import check_same_clip

    coded = [as_y4m(s, raw_work, k, opts.raw_size, opts.fps, opts.frames) for k, s in enumerate(srcs)]
    sources_by_input = [read_frames(s, opts.frames) for s in coded]
    anchor_notes = []
    for s, frames in zip(srcs, sources_by_input):
        if not frames:
            raise InputError(f"no frames in {s}")
        warn_fewer_frames(s, len(frames), opts.frames, "coding")  # coded whole; its JSON's "frames" says how many
        check_measurable(*frames[0].y.shape, s)  # frames MS-SSIM cannot measure: refused before coding, as baseline does
        h, w = frames[0].y.shape
        pw, ph = padded_size(w, h)
        for c in models:  # a package exported for another size: refused before any point is coded, not at its own
            if c.engine is not None:
                c.engine.check_padded_size(ph, pw, (h, w))
        if anchor_res is not None:  # before any coding, not after
            anchor_notes.append(check_same_clip(anchor_res, w, h, len(frames), str(anchor), str(s), source=str(s)))
    streams = out.resolve() / "streams"  # absolute in the JSON: it is read from other folders
    total = 2 * len(models) * sum(len(f) for f in sources_by_input)  # each frame encoded, then decoded
    bar = progress_bar(total=total, unit="frame", enabled=opts.progress, desc="eval (encode + decode)")
    results, names = [], []
    # streams wait in the staging folder until every point is coded and measured, then move in beside
    # their results; an interrupted or failed run leaves neither, and an earlier run's files stay
    def listed(res: dict) -> list[str]:  # the streams (and decodes) an earlier eval of an input listed
        return [f"streams/{Path(p['stream']).with_suffix(ext).name}" for p in res["points"] for ext in (".mnvc", ".y4m")]

    earlier = [f for stem in stems for f in listed_files(out / f"{stem}_eval.json", listed)]
    with bar, publishing(out) as stage:
        (stage / "streams").mkdir()
        for src, coded_src, stem, sources in zip(srcs, coded, stems, sources_by_input):
            points, enc = [], None
            for coder, label in zip(models, labels):
                path, model, obj = coder.path, coder.model, coder.checkpoint
                bar.set_postfix_str(f"{stem}: {label}")
                refine = RefineOptions.for_checkpoint(obj, opts.refine_steps, path) if opts.refine_steps else None
                modes = BlockModeOptions.for_checkpoint(obj, opts.block_modes, path) if opts.block_modes else None
                with tempfile.TemporaryDirectory(prefix="mobilecodec-eval-") as tmp:
                    # the decode straight into the staging folder: a full disk or file size limit met there
                    # names OUT/streams/..., not a temp file in /tmp (runtime audit), and it is not copied
                    dec_path = stage / "streams" / f"{stem}_{label}.y4m" if opts.save_decoded else None
                    point, enc = code_point(model, coded_src, sources, tmp, label, intra_period=opts.intra_period,
                                            frames=opts.frames, matrix=opts.matrix, save_decoded=dec_path,
                                            extra={"checkpoint": os.path.abspath(path), "beta": obj.get("beta"),
                                                   "warp": model.cfg.to_dict().get("warp"),
                                                   "buffering": model.cfg.to_dict().get("buffering"),
                                                   **({"refine": vars(refine)} if refine else {}),
                                                   **({"block_modes": vars(modes)} if modes else {}),
                                                   **(coder.engine.provenance()
                                                      if coder.engine is not None else {})},
                                            on_frame=lambda _phase, _i: bar.update(1), refine=refine, modes=modes,
                                            engine=coder.engine)
                    point["frame_types"] = frame_type_summary(point)
                    point["drift"] = drift_summary(point)
                    shutil.copyfile(Path(tmp) / f"{label}.mnvc", stage / "streams" / f"{stem}_{label}.mnvc")
                    names += [f"{stem}_{label}.mnvc"] + ([dec_path.name] if dec_path is not None else [])
                    point["stream"] = str(streams / f"{stem}_{label}.mnvc")
                points.append(point)
            points.sort(key=lambda p: p["bpp"])
            res = rd_result(codec, str(src), enc, points)
            res.update({"intra_period": opts.intra_period, "matrix": opts.matrix,
                        "aggregation": "point metrics are means of per-frame values; bpp = stream file bits / "
                                       "(frames*W*H); per-frame bits = frame record bytes * 8"})
            entry: dict[str, Any] = {"stem": stem, "result": res, "bd": None, "notes": []}
            curves = split_curves(res)  # checkpoints (PyTorch) and packages (their backend) side by side
            if len(curves) > 1:
                res["curves"] = [c["codec"] for c in curves]
                entry["curves"] = [{"codec": c["codec"], "labels": [q["label"] for q in c["points"]], "bd": None}
                                   for c in curves]
            if anchor_res is not None:
                note = anchor_notes[len(results)]
                if note:
                    entry["notes"].append(note)
                entry["bd"] = bd_against(anchor_res, res)
                for c, row in zip(curves, entry.get("curves", [])):
                    row["bd"] = bd_against(anchor_res, c)
            results.append(entry)
        for entry in results:
            write_outputs(stage, entry["stem"], entry["result"], anchor_res)
    own = re.compile(rf"streams/(?:{'|'.join(re.escape(s) for s in stems)})_[^/]+\.(?:mnvc|y4m)")  # what eval writes
    remove_superseded(out, earlier, [f"streams/{n}" for n in names],  # points a rerun no longer has
                      spare=[*srcs, anchor, *(c.path for c in models)], own=lambda f: own.fullmatch(f) is not None)
    files = [str(out / "streams" / n) for n in sorted(names)] + [p for e in results for p in output_paths(out, e["stem"])]
    report = {"format": FORMAT, "version": 1, "checkpoints": [os.path.abspath(c.path) for c in models], "labels": labels,
              "inputs": [str(s) for s in srcs], "anchor": str(anchor) if anchor is not None else None,
              "options": {"intra_period": opts.intra_period, "frames": opts.frames, "matrix": opts.matrix,
                          "refine_steps": opts.refine_steps, "block_modes": opts.block_modes},
              "results": results, "files": files}
    return report


def output_paths(out: Path, stem: str) -> list[str]:
    """The files `write_outputs` writes for one input."""
    return [str(out / f"{stem}_{name}") for name in ("rd.png", "per_frame_bits.png", "per_frame_psnr.png", "eval.json")]


def plotted_anchor(anchor: dict, res: dict) -> dict:
    """The anchor as the RD plot names it: "anchor: <codec>" (an earlier eval of our codec as the
    anchor drew two curves of one name; the plot adds the preset), with the matrix of its RGB
    metrics when it is not `res`'s (the plot overlays them; the BD-rate refuses to compare them)."""
    a, t = anchor.get("matrix"), res.get("matrix")
    return {**anchor, "codec": f"anchor: {anchor.get('codec', '?')}" + (f", RGB in {a}" if a and t and a != t else "")}


def write_outputs(out: Path, stem: str, res: dict, anchor: dict | None) -> list[str]:
    """OUT/<stem>_eval.json, <stem>_rd.png (with the anchor's curve), <stem>_per_frame_bits.png and
    <stem>_per_frame_psnr.png (`output_paths`); returns the paths written."""
    from mobilecodec.plots import per_frame_plot, rd_plot
    from mobilecodec.rdresults import save_results

    title = f"{Path(res['source']).name}, {res['frames']} frames, intra period {res['intra_period']}"
    paths = output_paths(out, stem)
    rd, bits, psnr, results = map(Path, paths)
    rd_plot(split_curves(res) + ([plotted_anchor(anchor, res)] if anchor else []), rd, metric=PLOT_METRICS,
            title=title)
    per_frame_plot([res], "bits", bits, title=f"bits per frame: {title}")
    per_frame_plot([res], "psnr_yuv", psnr, title=f"PSNR-YUV per frame: {title}")
    save_results(results, res)
    return paths


def format_report(report: dict) -> str:
    """The stdout tables: RD points, I- vs P-frame averages and BD-rates per input."""
    from mobilecodec.metrics.bd import overlap_note

    lines: list[str] = []
    for entry in report["results"]:
        res = entry["result"]
        lines += [f"{res['codec']}: {res['source']} ({res['width']}x{res['height']}, {res['frames']} frames, "
                  f"intra period {res['intra_period']})",
                  f"{'label':<28} {'beta':>8} {'bpp':>8} {'PSNR-Y':>8} {'PSNR-YUV':>9} {'PSNR-RGB':>9} "
                  f"{'MS-SSIM':>8}"]
        for p in res["points"]:
            beta = "-" if p.get("beta") is None else f"{p['beta']:g}"
            lines.append(f"{p['label']:<28} {beta:>8} {p['bpp']:8.4f} {p['psnr_y']:8.3f} {p['psnr_yuv']:9.3f} "
                         f"{p['psnr_rgb']:9.3f} {p['ms_ssim_rgb']:8.5f}")
        lines += ["I- vs P-frames (means per frame):",
                  f"{'label':<28} {'I bits':>9} {'I PSNR-YUV':>11} {'P bits':>9} {'P PSNR-YUV':>11} "
                  f"{'P/I bits':>9}  P cheaper at >= PSNR"]
        for p in res["points"]:
            ft = p["frame_types"]
            i, q = ft["I"], ft["P"]
            fmt = (lambda d, k, w, nd: f"{d[k]:{w}.{nd}f}" if d.get("frames") else f"{'-':>{w}}")
            ratio = "-" if ft["p_over_i_bits"] is None else f"{ft['p_over_i_bits']:.3f}"
            verdict = {True: "yes", False: "no", None: "- (needs I and P frames)"}[ft["p_cheaper_at_equal_or_better_psnr"]]
            lines.append(f"{p['label']:<28} {fmt(i, 'mean_bits', 9, 0)} {fmt(i, 'psnr_yuv', 11, 3)} "
                         f"{fmt(q, 'mean_bits', 9, 0)} {fmt(q, 'psnr_yuv', 11, 3)} {ratio:>9}  {verdict}")
        lines.append("P-frame drift (last P-frame of each intra period against its second) and colour:")
        for p in res["points"]:
            drift = format_period_drift(p.get("drift") or drift_summary(p))
            lines.append(f"{p['label']:<28} drift {drift}; PSNR-YUV - PSNR-RGB {p['psnr_yuv'] - p['psnr_rgb']:.2f} dB")
        for p in res["points"]:
            if p.get("package"):
                lines.append(f"{p['label']}: package {p['package']} on {p['backend']}")
        if entry.get("curves"):
            lines.append("RD curves (one per config and backend): " + "; ".join(
                f"{c['codec']}: {', '.join(c['labels'])}" for c in entry["curves"]))
        for note in entry["notes"]:
            lines.append(f"note: {note}")
        rows = [(f", curve {c['codec']}", c["bd"]) for c in entry["curves"]] if entry.get("curves") \
            else [("", entry.get("bd"))]
        for curve, bd in rows:
            if bd is None:
                continue
            if bd["error"]:
                lines.append(f"BD-rate vs {bd['anchor']}{curve}: not computed: {bd['error']}")
            else:
                vals = ", ".join(f"{m} {v:+.2f}%" for m, v in bd["bd_rate"].items())
                vals += "".join(f", {m} not computed: {why}" for m, why in bd.get("metric_errors", {}).items())
                lines.append(f"BD-rate vs {bd['anchor']}{curve} ({bd['method']}; negative = fewer bits): {vals}")
                for m, o in (bd.get("quality_overlap") or {}).items():
                    if o["low"]:
                        lines.append(f"note: {m}: {overlap_note(o, 'quality', quality_unit(m))}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"

