"""The int8 accuracy check: float and int8 codecs through the real encoder and decoder (actual
file bits, hash-verified decode), RD points, BD-rate of int8 against float, drift along the GOP,
and a per-stage sensitivity ablation.

BD-rate uses `mobilecodec.metrics.bd_rate` with pchip over several float checkpoints and their int8
folders (paired by order). A BD figure between two nearly flat curves measures noise (a 0.01 dB
wobble moves it by tens of %), so it is only computed where the curves can be judged
(`judge_curves`): each curve spans >= 1 dB of quality, and the quality range the two share covers
at least half of each curve's range. Otherwise the verdict is INCONCLUSIVE with the reason (the CLI
exits 3); a single pair (one RD point per curve) and a non-monotonic curve are inconclusive too.
Per-point differences (bpp %, dB) are always reported. Dominated points are only dropped with
`frontier=True` (`--frontier`), and every dropped point is listed. With several inputs, the BD-rate
is the mean over inputs; the verdict compares the worst of the BD-rates on PSNR-YUV and PSNR-RGB
with `max_bdrate`. The report's rendering and files: `mobilecodec.quant.check_report`.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.evaluate import rd_result
from mobilecodec.evaluate import code_point as _code_point
from mobilecodec.evaluate import validate_coding
from mobilecodec.io import read_frames, warn_fewer_frames
from mobilecodec.metrics.bd import curve_overlap
from mobilecodec.rdresults import BD_MIN_POINTS, QUALITY_METRICS, quality_unit

FORMAT = "mobilecodec-check-int8"
BD_METRICS = ("psnr_yuv", "psnr_rgb")
MIN_SPAN_DB = 1.0  # each curve's quality range, max - min over its points (dB)
MIN_OVERLAP = 0.5  # the shared quality range as a fraction of each curve's own range
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


@dataclass
class CheckOptions:
    """What `check_int8` codes and how it judges."""

    intra_period: int = 32
    frames: int | None = None  # code only the first N frames of each input
    max_bdrate: float = 5.0  # % BD-rate loss allowed (int8 vs float)
    matrix: str = "bt601"
    sensitivity_frames: int = 3  # frames (I + P) of the first input used by the per-stage ablation
    bd_metrics: tuple[str, ...] = BD_METRICS
    frontier: bool = False  # BD over each curve's RD frontier (dominated points dropped, listed)
    progress: bool = True
    block_modes: int = 0  # P-frame block modes on both sides (codec.block_modes; 0: off), as deployed
    raw_size: tuple[int, int] | None = None  # (width, height) of raw .yuv inputs
    fps: float | None = None  # frame rate to record: a raw .yuv input's (default 30), or instead of a file's

    def validate(self) -> None:
        validate_coding(self.intra_period, self.frames, self.matrix, self.block_modes)
        if not math.isfinite(self.max_bdrate):
            raise InputError(f"--max-bdrate must be a finite number, got {self.max_bdrate}")
        if self.sensitivity_frames < 0:
            raise InputError(f"--sensitivity-frames must be >= 0 (0 skips the per-stage ablation), got {self.sensitivity_frames}")


@dataclass
class ModelPair:
    """A float checkpoint and the int8 folder made from it (one RD point each)."""

    float_path: str
    int8_path: str
    float_model: Any = field(repr=False)
    int8_model: Any = field(repr=False)
    beta: float | None = None  # the float checkpoint's: prices the float point's block modes
    int8_beta: float | None = None  # the int8 point's (`ptq.deployed_beta`: QAT's, else the float's); None: `beta`
    label: str = ""  # the int8 point's name in reports; load_pairs makes it unique
    float_name: str = ""  # the float point's, likewise

    def __post_init__(self) -> None:
        if self.int8_beta is None:  # a PTQ folder (the demo's pairs) deploys the float checkpoint's beta
            self.int8_beta = self.beta

    @property
    def float_label(self) -> str:
        return self.float_name or Path(self.float_path).stem

    @property
    def int8_label(self) -> str:
        return self.label or _int8_folder(self.int8_path).name


def _int8_folder(path: str) -> Path:
    """The int8 model folder of a folder or of a file inside it."""
    return Path(path) if Path(path).is_dir() else Path(path).parent


def split_list(text: str | Sequence[str]) -> list[str]:
    """'a,b,c' (or a list of such strings) -> ['a', 'b', 'c'] without empty items."""
    parts = [text] if isinstance(text, str) else list(text)
    return [s.strip() for p in parts for s in p.split(",") if s.strip()]


def load_pairs(floats: Sequence[str], int8s: Sequence[str]) -> list[ModelPair]:
    """Load each float checkpoint and its int8 folder; InputError/CheckpointError on a mismatch."""
    from mobilecodec.checkpoint import load_checkpoint, resolve_checkpoint
    from mobilecodec.quant.ptq import check_quantized_from, deployed_beta, load_quantized

    if not floats or not int8s:
        raise InputError("give at least one float checkpoint (--float) and one int8 folder (--int8)")
    if len(floats) != len(int8s):
        raise InputError(f"--float lists {len(floats)} checkpoints but --int8 lists {len(int8s)} folders; "
                         "they are paired by order")
    for what, given, files in (("--float", floats, [resolve_checkpoint(f).resolve() for f in floats]),
                               ("--int8", int8s, [_int8_folder(q).resolve() for q in int8s])):
        twice = next((g for g, p in zip(given, files) if files.count(p) > 1), None)
        if twice is not None:  # one RD point twice: the curve's rates repeat and two labels are alike
            raise InputError(f"{what} {twice} is given twice; each pair is one RD point")
    pairs = []
    for f, q in zip(floats, int8s):
        model, obj = load_checkpoint(f)
        if not model.ready_for_coding:
            raise InputError(f"float checkpoint {f} has no entropy-coding tables (saved before update())")
        qmodel = load_quantized(q)
        check_quantized_from(qmodel, model, f"--int8 {q} (paired with --float {f})")
        pairs.append(ModelPair(str(resolve_checkpoint(f)), str(q), model, qmodel, obj.get("beta"),
                               deployed_beta(qmodel, obj)))  # as `export --int8` deploys it
    # int8/tiny_b0.0008/w8a8, int8/tiny_b0.0016/w8a8, ...: the folder name alone would give every
    # point the same label, so a dropped or failing point could not be told apart
    labels = _told_apart([_int8_folder(p.int8_path) for p in pairs], lambda f: f.name)
    names = _told_apart([Path(p.float_path) for p in pairs], lambda f: f.stem)  # run_a/model.pt, run_b/...
    for p, label, name in zip(pairs, labels, names):
        p.label, p.float_name = label, name
    return pairs


def _told_apart(paths: list[Path], name: Callable[[Path], str]) -> list[str]:
    """`name` of each path, or '<parent>/<name>' for all of them where two names are the same."""
    names = [name(p) for p in paths]
    return names if len(set(names)) == len(names) else [f"{p.parent.name}/{n}" for p, n in zip(paths, names)]


def code_point(model, source: str | Path, sources: list, work: Path, label: str, opts: CheckOptions,
               extra: dict | None = None, engine: Any = None, beta: float | None = None) -> tuple[dict, dict]:
    """Encode `source` with `model` (or `engine`) into a real .mnvc file, decode it (hash-verified)
    and measure every decoded frame against `sources`; see `mobilecodec.evaluate.code_point`.
    With `opts.block_modes` the P-frames carry block modes priced at `beta` (the pair's)."""
    modes = None
    if opts.block_modes:
        from mobilecodec.codec.block_modes import BlockModeOptions

        modes = BlockModeOptions.for_checkpoint({"beta": beta}, opts.block_modes, (extra or {}).get("checkpoint", label))
    return _code_point(model, source, sources, work, label, intra_period=opts.intra_period, frames=opts.frames,
                       matrix=opts.matrix, progress=opts.progress,
                       extra={**(extra or {}), **({"block_modes": vars(modes)} if modes else {})},
                       engine=engine, modes=modes)


#: what codes the int8 side when no `int8_engine` is given
SIM_BACKEND = "aimet simulation (PyTorch)"


def judge_curves(float_q: Sequence[float], int8_q: Sequence[float], min_span: float = MIN_SPAN_DB,
                 min_overlap: float = MIN_OVERLAP) -> dict[str, Any]:
    """Whether a BD figure between two RD curves (their quality values, dB) means anything: each
    curve spans >= `min_span`, and the shared quality range [max of the lows, min of the highs]
    covers >= `min_overlap` of EACH curve's range. `reason` says why not (None when judgeable)."""
    out: dict[str, Any] = {"min_span_db": min_span, "min_overlap": min_overlap}
    if len(float_q) < 2 or len(int8_q) < 2:
        n = min(len(float_q), len(int8_q))
        out.update(judgeable=False, reason=f"{n} RD point(s) per curve: a BD figure needs >= 2 per curve "
                   "(check-int8: give several float checkpoints and int8 folders, comma-separated; demo: "
                   "--pairs 2, with a shipped --checkpoint)")  # the demo has no option for the former
        return out
    if not all(math.isfinite(v) for v in (*float_q, *int8_q)):
        out.update(judgeable=False, reason="a point has an infinite or undefined quality (a lossless frame?): "
                   "no curve to integrate")
        return out
    flo, fhi, qlo, qhi = min(float_q), max(float_q), min(int8_q), max(int8_q)
    fspan, qspan = fhi - flo, qhi - qlo
    o = curve_overlap(float_q, int8_q)
    shared, frac = o["shared"], min(o["of_anchor"], o["of_test"])  # the share of the wider curve's range
    out.update(float_range=[flo, fhi], int8_range=[qlo, qhi], float_span_db=fspan, int8_span_db=qspan,
               overlap_db=shared, overlap_fraction=frac)
    reasons = [f"the {k} curve spans only {v:.3f} dB (< {min_span:g} dB)"
               for k, v in (("float", fspan), ("int8", qspan)) if not v >= min_span]
    if not reasons and not frac >= min_overlap:
        reasons.append(f"the curves share {shared:.3f} dB of quality, {100 * frac:.0f} % of the wider curve's "
                       f"range (< {100 * min_overlap:.0f} %)")
    out.update(judgeable=not reasons, reason="; ".join(reasons) or None)
    return out


def compare(float_res: dict, int8_res: dict, metrics_: Sequence[str], frontier: bool = False) -> dict:
    """BD-rate / BD-PSNR of int8 (test) against float (anchor) for each metric whose curves can be
    judged (`judge_curves`); per-point and per-frame differences always.

    With `frontier`, each curve is first reduced to its RD frontier (points that another point of
    the same curve beats on both rate and quality are dropped and listed in `bd_dropped`); it is off
    by default because dropping a point can hide int8 damage. A metric that cannot be judged (or
    whose curve is not monotonic) gets its reason in `inconclusive[metric]` and no BD figure."""
    from mobilecodec.metrics import bd_psnr, bd_rate
    from mobilecodec.metrics.bd import MIN_POINTS, overlap_note, quality_at_rate, rate_overlap, rd_frontier

    fp, qp = float_res["points"], int8_res["points"]
    out: dict[str, Any] = {"bd_method": "pchip", "bd_min_points": MIN_POINTS["pchip"], "bd_frontier": frontier,
                           "points_per_curve": min(len(fp), len(qp)),
                           "bd_rate": {}, "bd_psnr": {}, "bd_dropped": {}, "judge": {}, "inconclusive": {},
                           "bd_error": None}
    for m in metrics_:
        curves = []
        for kind, pts in (("float", fp), ("int8", qp)):
            keep = rd_frontier([p["bpp"] for p in pts], [p[m] for p in pts]) if frontier else range(len(pts))
            dropped = [pts[i]["label"] for i in range(len(pts)) if i not in keep]
            if dropped:
                out["bd_dropped"].setdefault(m, {})[kind] = dropped
            curves += [[pts[i]["bpp"] for i in keep], [pts[i][m] for i in keep]]
        out["points_per_curve"] = min(out["points_per_curve"], len(curves[0]), len(curves[2]))  # after --frontier
        judge = judge_curves(curves[1], curves[3])
        out["judge"][m] = judge
        if not judge["judgeable"]:
            out["inconclusive"][m] = judge["reason"]
            continue
        try:
            out["bd_rate"][m] = bd_rate(*curves, method="pchip")
        except InputError as exc:
            hint = "" if frontier else " (--frontier drops dominated points, and lists them)"
            out["inconclusive"][m] = f"{exc}{hint}"
            continue
        try:  # BD-PSNR integrates over the rate axis: it needs overlapping rates, BD-rate does not
            out["bd_psnr"][m] = bd_psnr(*curves, method="pchip")
        except InputError as exc:
            out["bd_psnr"][m] = None
            out.setdefault("bd_psnr_error", {})[m] = str(exc)
            continue
        rates = rate_overlap(curves[0], curves[2])
        if rates["low"]:  # as `bdrate` says it: a figure over a sliver of both curves describes neither
            out.setdefault("bd_psnr_note", {})[m] = overlap_note(rates, "log10 rate", "")
    if out["inconclusive"]:
        out["bd_error"] = "; ".join(f"{m}: {r}" for m, r in out["inconclusive"].items())
    # int8 points that a float point beats outright: at most the bits, at least the quality. Float
    # reaches that quality at that rate, so the int8 point needs at least that much more rate, net of
    # what its own float point needs over the same kind of point (a flat float curve beats itself
    # too): a bound that holds without a curve, where no BD figure can be judged
    out["dominated"] = {}
    for m in metrics_:
        def cheapest(q: float) -> dict | None:  # the float point of least rate with quality >= q
            return min((a for a in fp if a["bpp"] > 0 and a[m] >= q), key=lambda a: a["bpp"], default=None)

        rows = []
        for a0, b in zip(fp, qp):
            a = cheapest(b[m])
            if a is None or a["bpp"] > b["bpp"]:
                continue
            own = cheapest(a0[m])  # a0 itself qualifies when its bpp is above 0: own["bpp"] <= a0["bpp"]
            if own is None:
                continue
            net = (b["bpp"] / a["bpp"]) / (a0["bpp"] / own["bpp"]) - 1.0
            if net > 0:
                rows.append({"int8": b["label"], "float": a["label"], "rate_loss_pct": 100.0 * net,
                             "d_db": b[m] - a[m]})
        out["dominated"][m] = rows
    out["point_deltas"] = [{"float": a["label"], "int8": b["label"],
                            "d_bpp_pct": 100.0 * (b["bpp"] / a["bpp"] - 1.0) if a["bpp"] > 0 else None,
                            **{f"d_{m}": b[m] - a[m] for m in QUALITY_METRICS}} for a, b in zip(fp, qp)]
    # Quality against the float curve at the int8 point's own rate (pchip over log rate, no
    # extrapolation): one figure per point that folds in the rate change, and stays meaningful on
    # curves too flat for a BD-rate (a 0.01 dB wobble moves it by 0.01 dB, not by tens of %).
    out["equal_rate"] = {}
    for m in metrics_:
        try:
            ref = quality_at_rate([p["bpp"] for p in fp], [p[m] for p in fp], [p["bpp"] for p in qp])
        except InputError as exc:
            out["equal_rate"][m] = {"error": str(exc), "d_db": [None] * len(qp), "mean_db": None}
            continue
        d = [None if r is None else b[m] - r for b, r in zip(qp, ref)]
        known = [v for v in d if v is not None]
        out["equal_rate"][m] = {"error": None, "d_db": d, "mean_db": float(np.mean(known)) if known else None,
                                "points": len(known)}
    out["drift"] = [[{"index": fa["index"], "type": fa["type"], "d_bits": fb["bits"] - fa["bits"],
                      "d_psnr_yuv": fb["psnr_yuv"] - fa["psnr_yuv"], "d_psnr_rgb": fb["psnr_rgb"] - fa["psnr_rgb"]}
                     for fa, fb in zip(a["per_frame"], b["per_frame"])] for a, b in zip(fp, qp)]
    return out


def stage_sensitivity(pair: ModelPair, sources: list, opts: CheckOptions) -> dict:
    """Quantize one stage at a time (the others float) and measure PSNR-YUV and estimated bits
    (from the likelihoods) on the first `opts.sensitivity_frames` frames (one I-frame, then P).
    Rows sorted by PSNR loss, largest first."""
    import torch

    from mobilecodec import metrics
    from mobilecodec.io import crop_frame, pad_frame
    from mobilecodec.models.yuv import frame_to_tensor, tensor_to_frame
    from mobilecodec.quant.qmodel import QuantizedVideoCodec
    from mobilecodec.quant.sim import quiet_aimet

    frames = sources[:opts.sensitivity_frames]
    if not frames:
        return {"frames": 0, "rows": []}
    h, w = frames[0].y.shape
    xs = [frame_to_tensor(pad_frame(f)) for f in frames]

    @torch.no_grad()
    def measure(model) -> dict:
        model.eval()
        bits, psnrs, buf = 0.0, [], None
        with quiet_aimet():
            for t, x in enumerate(xs):
                out = model.forward_iframe(x) if t == 0 else model.forward_pframe(x, buf)
                buf = out["buffer"]
                bits += float(sum(-torch.log2(v).sum() for v in out["likelihoods"].values()))
                dec = crop_frame(tensor_to_frame(out["x_hat"].clamp(0, 1)), w, h)
                p = metrics.psnr_yuv(frames[t], dec)
                psnrs.append({"psnr_y": p["y"], "psnr_u": p["u"], "psnr_v": p["v"]})
        # the sequence mean as eval takes it (each plane capped at PSNR_CAP_DB), not a plain mean
        return {"psnr_yuv": metrics.mean_metrics(psnrs, ("psnr_yuv",))["psnr_yuv"], "bits": bits}

    from mobilecodec.progress import progress_bar

    qm = pair.int8_model
    rows = []
    # float, int8, then one run per stage over the frames: minutes at 1080p, so it shows progress
    with progress_bar(total=2 + len(qm.sims), desc="stage sensitivity", unit="run", enabled=opts.progress) as bar:
        base = measure(pair.float_model)
        bar.update(1)
        full = measure(pair.int8_model)
        bar.update(1)
        for name, sim in qm.sims.items():
            single = QuantizedVideoCodec(pair.float_model, {name: sim}, qm.qcfg)
            r = measure(single)
            rows.append({"stage": name, "psnr_yuv": r["psnr_yuv"], "bits": r["bits"],
                         "d_psnr_yuv": r["psnr_yuv"] - base["psnr_yuv"],
                         "d_bits_pct": 100.0 * (r["bits"] / base["bits"] - 1.0) if base["bits"] > 0 else None})
            bar.update(1)
    rows.sort(key=lambda r: (r["d_psnr_yuv"], -(r["d_bits_pct"] or 0.0)))
    method = ("one stage int8 (the aimet simulation), the others float; PSNR-YUV of the reconstructions "
              "and bits estimated from the likelihoods" + ("; without the P-frame block modes the RD points use"
                                                           if opts.block_modes else ""))
    return {"pair": pair.int8_label, "frames": len(frames), "method": method,
            "float": base, "int8": full, "rows": rows}


def check_inputs(inputs: Sequence[str | os.PathLike], opts: CheckOptions) -> list[Path]:
    """The inputs as paths, each refused in one line before any model loads (the CLI calls this
    before `load_pairs`): a missing file, --size with no .yuv, a .yuv of another size, a rate the
    streams cannot record (without --fps)."""
    from mobilecodec.io import check_size_applies, open_video, resolve_input

    srcs = [Path(resolve_input(i)) for i in inputs]
    for given, s in zip(inputs, srcs):
        if not s.is_file():
            raise InputError(f"no such input video: {given}")
    check_size_applies(opts.raw_size, srcs)
    for s in srcs:
        with open_video(s, size=opts.raw_size if s.suffix.lower() == ".yuv" else None, fps=opts.fps):
            pass
    return srcs


def check_int8(pairs: list[ModelPair], inputs: Sequence[str | os.PathLike], opts: CheckOptions,
               out_dir: str | os.PathLike | None = None,
               int8_engine: Callable[[ModelPair, Path, Path], Any] | None = None) -> dict:
    """Run the whole check; writes OUT/check_int8.json, check_int8.md, per-input RD JSONs and PNGs
    when `out_dir` is given. Returns the report (see the module docstring for the verdict).

    `int8_engine(pair, source, workdir)` makes the engine that codes a pair's int8 side on one input
    (e.g. its int8 package on onnxruntime: `mobilecodec.runtime.stream.int8_package_engine`, what
    is deployed); without it the int8 side is the aimet simulation. The float side is always PyTorch."""
    from mobilecodec.evaluate import as_y4m

    opts.validate()
    srcs = check_inputs(inputs, opts)
    from mobilecodec.fsutil import check_output_dir, check_planned_outputs

    out = check_output_dir(out_dir) if out_dir is not None else None
    if out is not None:
        from mobilecodec.quant.check_report import planned_files

        check_planned_outputs(out, planned_files(srcs), kept=[("the input video", s) for s in srcs])
    results, sensitivity, backends = [], None, {}
    with tempfile.TemporaryDirectory(prefix="mobilecodec-check-int8-") as tmp:
        # .yuv, --fps: a .y4m each, all before any coding (a bad second input was found after the first's)
        coded_srcs = [as_y4m(src, Path(tmp), k, opts.raw_size, opts.fps, opts.frames) for k, src in enumerate(srcs)]
        for k, (src, coded) in enumerate(zip(srcs, coded_srcs)):
            sources = read_frames(coded, opts.frames)
            warn_fewer_frames(src, len(sources), opts.frames, "coding")  # the results' "frames" say how many
            fpts, qpts, enc = [], [], None
            for j, pair in enumerate(pairs):
                fp, enc = code_point(pair.float_model, coded, sources, Path(tmp), f"{k}_{j}_float", opts,
                                     {"checkpoint": pair.float_path, "beta": pair.beta, "pair": j}, beta=pair.beta)
                engine = int8_engine(pair, coded, Path(tmp) / f"{k}_{j}_engine") if int8_engine else None
                backend = engine.label if engine is not None else SIM_BACKEND
                backends[pair.int8_label] = backend
                qp, _ = code_point(pair.int8_model, coded, sources, Path(tmp), f"{k}_{j}_int8", opts,
                                   {"checkpoint": pair.int8_path, "beta": pair.int8_beta, "pair": j,
                                    "backend": backend}, engine=engine, beta=pair.int8_beta)
                fp["label"], qp["label"] = pair.float_label, pair.int8_label
                fpts.append(fp)
                qpts.append(qp)
            fres = rd_result(pairs[0].float_model.cfg.name, str(src), enc, fpts, opts.matrix)
            qres = rd_result(pairs[0].int8_model.cfg.name, str(src), enc, qpts, opts.matrix)
            results.append({"source": str(src), "float": fres, "int8": qres,
                            "comparison": compare(fres, qres, opts.bd_metrics, opts.frontier)})
            if k == 0 and opts.sensitivity_frames:
                sensitivity = stage_sensitivity(pairs[0], sources, opts)
    verdict, passed, loss, bd_mean, reasons = judge_results(results, opts)
    # one backend for all points, or each point's (a W8A16 folder beside a W8A8 one): the last pair's
    # alone named the whole report
    backend = (next(iter(set(backends.values()))) if len(set(backends.values())) == 1
               else "; ".join(f"{label}: {b}" for label, b in backends.items()))
    report = {"format": FORMAT, "version": 1, "inputs": [str(s) for s in srcs], "int8_backend": backend,
              "fitted_on_input": fitted_on_inputs(pairs, srcs),
              "pairs": [{"float": p.float_path, "int8": p.int8_path, "beta": p.beta, "int8_beta": p.int8_beta}
                        for p in pairs],
              "options": {**asdict(opts), "bd_metrics": list(opts.bd_metrics)},
              "bd_rate": bd_mean, "bd_rate_loss": loss, "max_bdrate": opts.max_bdrate, "passed": passed,
              "inconclusive": passed is None, "inconclusive_reasons": reasons,
              "rule": {"min_span_db": MIN_SPAN_DB, "min_overlap": MIN_OVERLAP}, "verdict": verdict,
              "results": results, "sensitivity": sensitivity, "files": []}
    if out is not None:
        from mobilecodec.quant.check_report import write_report

        report["files"] = write_report(out, report)
    return report


def fitted_on_inputs(pairs: Sequence[ModelPair], srcs: Sequence[Path]) -> list[dict[str, str]]:
    """The (int8 folder, input) pairs where the folder was calibrated (PTQ) or trained (QAT) on the
    input it is judged on: its figures there are not held-out ones."""
    from mobilecodec.train.data import data_identity, is_held_out

    out = []
    for p in pairs:
        made = getattr(p.int8_model, "summary", {}) or {}
        used = {data_identity(c, strict=False) for k in ("clips", "calibration_clips", "data", "qat_data")
                for c in made.get(k) or []}
        # the folder's own record that it saw the held-out clip (under any name: a renamed copy)
        saw_held_out = bool(made.get("calibrated_on_held_out") or made.get("trained_on_held_out"))
        out += [{"int8": p.int8_label, "input": str(s)} for s in srcs
                if data_identity(s, strict=False) in used or (saw_held_out and is_held_out(s))]
    return out


def _dominated_note(results: list[dict], opts: CheckOptions, multi: bool) -> str:
    """'. BUT ...' naming the int8 point a float point beats by the most (`compare`'s `dominated`),
    when that certain loss is above `opts.max_bdrate`: an int8 curve made flat by a collapse read as
    merely too flat to judge (a 5 dB loss; the demo audit, session 39). The verdict stays
    INCONCLUSIVE, as issue #13 asks outside the judgeable curves; '' otherwise."""
    rows = [(d, m, r) for r in results for m in opts.bd_metrics for d in r["comparison"].get("dominated", {}).get(m, [])]
    if not rows:
        return ""
    d, m, r = max(rows, key=lambda t: t[0]["rate_loss_pct"])
    if not d["rate_loss_pct"] > opts.max_bdrate:
        return ""
    where = f" on {Path(r['source']).name}" if multi else ""
    unit = quality_unit(m)  # " dB", or none for MS-SSIM
    return (f". BUT int8 point {d['int8']}{where} needs at least {d['rate_loss_pct']:.1f}% more bits than float for "
            f"its quality (float point {d['float']}: {-d['d_db']:.{2 if unit else 4}f}{unit} more {m} at no more "
            f"bits), beyond the allowed {opts.max_bdrate:g}%: int8 is damaged there")


def judge_results(results: list[dict], opts: CheckOptions) -> tuple[str, bool | None, float | None, dict, list[str]]:
    """(verdict, passed, worst BD-rate loss, mean BD-rate per metric, inconclusive reasons) over the
    inputs' comparisons: PASS/FAIL of the worst mean BD-rate over the metrics against
    `opts.max_bdrate`. If a metric cannot be judged on some input: FAIL all the same when a metric
    judged on every input already has its mean above the limit (the worst can only be higher),
    else INCONCLUSIVE (passed None)."""
    multi = len(results) > 1
    reasons = [f"{Path(r['source']).name + ': ' if multi else ''}{m}: {why}"
               for r in results for m, why in r["comparison"]["inconclusive"].items()]
    judged = {m: float(np.mean([r["comparison"]["bd_rate"][m] for r in results])) for m in opts.bd_metrics
              if all(m in r["comparison"]["bd_rate"] for r in results)}
    if reasons and judged and max(judged.values()) > opts.max_bdrate:
        loss = max(judged.values())
        return (f"FAIL: int8 BD-rate loss {loss:.3f}% ({max(judged, key=judged.get)}) exceeds the allowed "
                f"{opts.max_bdrate:g}%; not judged: " + "; ".join(reasons), False, loss, judged, reasons)
    if reasons:
        return (f"INCONCLUSIVE: no BD-rate is reported where the curves cannot be judged (each must span >= "
                f"{MIN_SPAN_DB:g} dB and share >= {100 * MIN_OVERLAP:.0f} % of their quality range): "
                + "; ".join(reasons) + _dominated_note(results, opts, multi), None, None, {}, reasons)
    bd_mean = {m: float(np.mean([r["comparison"]["bd_rate"][m] for r in results])) for m in opts.bd_metrics}
    loss = max(bd_mean.values())
    worst = f"(worst of {', '.join(opts.bd_metrics)})"
    few = min(r["comparison"]["points_per_curve"] for r in results)
    if few < BD_MIN_POINTS:  # the demo's two checkpoints: a figure bdrate and eval would not report
        worst += (f"; on {few} points per curve, fewer than the {BD_MIN_POINTS} that bdrate and eval require: "
                  f"read it with the per-point deltas")
    if loss > opts.max_bdrate:
        return (f"FAIL: int8 BD-rate loss {loss:.3f}% exceeds the allowed {opts.max_bdrate:g}% {worst}", False, loss,
                bd_mean, [])
    return (f"PASS: int8 BD-rate loss {loss:.3f}% is within the allowed {opts.max_bdrate:g}% {worst}", True, loss,
            bd_mean, [])
