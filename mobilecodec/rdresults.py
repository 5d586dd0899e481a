"""The rate-distortion result JSON shared by `baseline`, `eval`, `check-int8` and `bdrate`.

Schema (docs/CONVENTIONS.md): {"codec", "source", "width", "height", "fps", "frames",
"points": [{"label", "bpp", "bits", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb",
"ms_ssim_rgb", "per_frame": [{"index", "type", "bits", "psnr_*", "ms_ssim_rgb"}], ...}]}.
Extra keys are allowed everywhere; these functions check only what readers rely on. "curves" (eval
of checkpoints and packages together): the names of the RD curves its points lie on (`curve_name`);
a result of several is refused for a BD-rate.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError, one_line

TOP_KEYS = ("codec", "source", "width", "height", "fps", "frames", "points")
POINT_METRICS = ("bpp", "bits", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb",
                 "ms_ssim_rgb")
FRAME_KEYS = ("index", "type", "bits", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb",
              "ms_ssim_rgb")
#: Metrics a BD computation can use (higher is better for all of them).
QUALITY_METRICS = ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb")


def quality_unit(metric: str) -> str:
    """The unit printed after a value of `metric`: ' dB' for the PSNRs, none for MS-SSIM."""
    return "" if metric == "ms_ssim_rgb" else " dB"

#: RD points per curve a reported BD-rate needs (`bdrate` and `eval`, through `check_bd_points`): the
#: four of VCEG-M33, whatever the interpolation could fit (`metrics.bd.MIN_POINTS`), so that a figure
#: spans enough of each curve to mean something.
BD_MIN_POINTS = 4


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _is_amount(v: Any) -> bool:
    """A finite non-negative number: what bits and bits per pixel must be."""
    return _is_number(v) and math.isfinite(v) and v >= 0


def _check_text(value: Any, key: str, where: str) -> None:
    """A field that is printed: a string of one line without control characters (a file name's
    undecodable bytes, kept as surrogates, are allowed: a real input may have them)."""
    if not isinstance(value, str) or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InputError(f"{where}: {key!r} must be one line of printable text, got {shown}")


def validate_results(obj: Any, where: str = "results", require_per_frame: bool = False
                     ) -> dict[str, Any]:
    """Return `obj` if it follows the RD result schema, else raise InputError naming the problem.

    Numbers must be real (no NaN); a point's PSNRs are means (capped: finite); a frame's may be +inf
    or, as JSON writes it, null (a lossless frame: read it through `metrics.psnr.frame_psnr`). bpp and
    bits must be finite and non-negative. `require_per_frame` also checks every point's per-frame list.
    """
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in TOP_KEYS if k not in obj]
    if missing and "results" in obj and obj.get("format") in ("mobilecodec-eval", "mobilecodec-check-int8"):
        # eval's or check-int8's --json: a report over RD results (any file with a "results" key was told so)
        raise InputError(f"{where}: a {obj.get('format', 'report')} summary, not an RD result; give the "
                         f"command's per-input file (eval: OUT/<input>_eval.json; check-int8: OUT/*_float.json "
                         f"and *_int8.json)")
    if missing and obj.get("format") == "mobilecodec-demo":  # said only "missing key(s) ..." (demo audit)
        held = [f for f in obj.get("files") or [] if isinstance(f, str) and f.endswith(".json")
                and f.startswith(("check_int8/", "baselines/")) and f != "check_int8/check_int8.json"]
        raise InputError(f"{where}: a demo report, not an RD result; give its RD files: "
                         + (", ".join(held) if held else "check_int8/<clip>_float.json and _int8.json, baselines/*.json"))
    if missing:
        raise InputError(f"{where}: missing key(s) {', '.join(missing)}")
    # what bdrate, eval and the plots print of a file: one printable line each, or the file could
    # add lines to the report or send terminal escapes (a CLI walk-through, session 46)
    for key in ("codec", "source", *(k for k in ("preset",) if obj.get(k) is not None)):
        _check_text(obj[key], key, where)
    for key in ("width", "height", "frames"):
        if not isinstance(obj[key], int) or isinstance(obj[key], bool) or obj[key] <= 0:
            raise InputError(f"{where}: {key!r} must be a positive integer, got {obj[key]!r}")
    if not _is_number(obj["fps"]) or not 0 < obj["fps"] < math.inf:
        raise InputError(f"{where}: 'fps' must be a positive number, got {obj['fps']!r}")
    curves = obj.get("curves")
    if curves is not None and not (isinstance(curves, list) and all(isinstance(c, str) for c in curves)):
        raise InputError(f"{where}: 'curves' must be a list of curve names, got {curves!r}")
    for c in curves or ():
        _check_text(c, "curves", where)
    points = obj["points"]
    if not isinstance(points, list) or not points:
        raise InputError(f"{where}: 'points' must be a non-empty list")
    for i, p in enumerate(points):
        pw = f"{where}: points[{i}]"
        if not isinstance(p, dict):
            raise InputError(f"{pw}: expected an object, got {type(p).__name__}")
        missing = [k for k in ("label",) + POINT_METRICS if k not in p]
        if missing:
            raise InputError(f"{pw}: missing key(s) {', '.join(missing)}")
        _check_text(p["label"], "label", pw)
        for key in POINT_METRICS:
            if not _is_number(p[key]):
                raise InputError(f"{pw}: {key!r} must be a number, got {p[key]!r}")
        for key in ("bpp", "bits", *(k for k in ("packet_bpp", "packet_bits") if k in p)):
            if not _is_amount(p[key]):
                raise InputError(f"{pw}: {key!r} must be finite and non-negative, got {p[key]!r}")
        _check_bpp_is_bits(obj, p, pw)
        # a BD-rate over MS-SSIM took 5.0 as it took 0.95 (metrics audit); a lossless frame's may round past 1
        if not 0 <= p["ms_ssim_rgb"] <= 1 + 1e-9:
            raise InputError(f"{pw}: 'ms_ssim_rgb' must lie in [0, 1], got {p['ms_ssim_rgb']!r}")
        if require_per_frame or "per_frame" in p:
            frames = p.get("per_frame")
            # a short list was read as the whole clip by the drift summary and the plots (metrics audit)
            if not isinstance(frames, list) or len(frames) != obj["frames"]:
                raise InputError(f"{pw}: 'per_frame' must be a list of {obj['frames']} frames")
            for j, f in enumerate(frames):
                if not isinstance(f, dict):
                    raise InputError(f"{pw}.per_frame[{j}]: expected an object")
                missing = [k for k in FRAME_KEYS if k not in f]
                if missing:
                    raise InputError(f"{pw}.per_frame[{j}]: missing key(s) {', '.join(missing)}")
                for key in ("bits", *(k for k in ("payload_bits",) if k in f)):
                    if not _is_amount(f[key]):
                        raise InputError(f"{pw}.per_frame[{j}]: {key!r} must be finite and non-negative, "
                                         f"got {f[key]!r}")
    return obj


def _check_bpp_is_bits(obj: dict[str, Any], point: dict[str, Any], where: str) -> None:
    """InputError unless a point's bpp is its bits over the clip's pixels (CONVENTIONS: bpp = file bits /
    (frames x W x H)): an edited bpp was taken for the BD-rate while its bits said otherwise."""
    pixels = obj["width"] * obj["height"] * obj["frames"]
    if not math.isclose(point["bpp"], point["bits"] / pixels, rel_tol=1e-6, abs_tol=1e-12):
        raise InputError(f"{where}: 'bpp' {point['bpp']!r} is not its 'bits' over {obj['frames']} frames of "
                         f"{obj['width']}x{obj['height']} ({point['bits'] / pixels:.6g})")


def load_results(path: str | os.PathLike, require_per_frame: bool = False) -> dict[str, Any]:
    """Read and validate an RD result JSON file (InputError if missing, not JSON or off-schema)."""
    from mobilecodec.fsutil import nonempty_path

    p = nonempty_path(path, "results JSON")
    if not p.exists():
        raise InputError(f"no such file: {p}")
    if not p.is_file():
        raise InputError(f"not a file: {p}")
    try:
        obj = json.loads(p.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) was "not valid JSON"
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a text JSON file")
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})")  # msg may
        # end in "at" ("Unterminated string starting at"): "at at line" was printed
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer of over 4,300 digits: they
        # were an internal error with a traceback (metrics audit)
        raise InputError(f"{p}: not JSON this tool reads ({one_line(exc, 120)})")  # one_line names the type
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}")
    return validate_results(obj, where=str(p), require_per_frame=require_per_frame)


def save_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Validate `results` and write them atomically as indented JSON."""
    from mobilecodec.fsutil import write_json_atomic

    validate_results(results, where=str(path))
    write_json_atomic(path, results)


def check_same_clip(anchor: dict[str, Any], width: int, height: int, frames: int, anchor_name: str,
                    test_name: str, source: str | None = None) -> str | None:
    """RD results compare only on the same clip: InputError for another frame size; for another
    frame count or another source file name (`source`, the test's; a renamed copy is the same clip,
    two clips may share a size), a note to print beside the figures."""
    if (anchor["width"], anchor["height"]) != (width, height):
        raise InputError(f"anchor {anchor_name} is {anchor['width']}x{anchor['height']} but {test_name} is "
                         f"{width}x{height}: not the same clip")
    notes = []
    if source is not None and anchor.get("source") and Path(str(anchor["source"])).stem != Path(source).stem:
        notes.append(f"anchor {anchor_name} was measured on {Path(str(anchor['source'])).name}, {test_name} on "
                     f"{Path(source).name}: a BD-rate compares two codecs on the same clip")
    if anchor["frames"] != frames:
        notes.append(f"anchor {anchor_name} has {anchor['frames']} frames, {test_name} {frames}")
    return "; ".join(notes) or None


def check_same_matrix(anchor: dict[str, Any], test: dict[str, Any], metric: str) -> None:
    """InputError when `metric` is an RGB one and the two results converted YUV to RGB with other
    matrices (`--matrix`): the same decodes differ by 3 % in PSNR-RGB BD-rate between bt601 and bt709."""
    a, t = anchor.get("matrix"), test.get("matrix")
    if metric.endswith("_rgb") and a and t and a != t:
        raise InputError(f"{metric} of the anchor is measured with {a}, of the test with {t} (--matrix): "
                         f"not comparable")


def curve_name(point: dict[str, Any]) -> str:
    """The RD curve a point lies on: its config, and for a point an export package coded, the backend
    (eval codes checkpoints on PyTorch and packages on onnxruntime side by side)."""
    name = str(point.get("config") or "")
    return f"{name} on {point['backend']}" if point.get("backend") else name


def split_curves(results: dict[str, Any]) -> list[dict[str, Any]]:
    """`results` as one result per RD curve (`curve_name`), each named after its curve; itself when
    its points are one curve."""
    names = list(dict.fromkeys(curve_name(p) for p in results["points"]))
    if len(names) < 2:
        return [results]
    base = {k: v for k, v in results.items() if k != "curves"}
    return [dict(base, codec=n, points=[p for p in results["points"] if curve_name(p) == n]) for n in names]


def check_bd_points(results: dict[str, Any], name: str, min_points: int = BD_MIN_POINTS) -> None:
    """InputError naming `name` (e.g. 'anchor x264.json') unless `results` is one RD curve of
    `min_points` points: the one test of whether a result is fit for a BD-rate."""
    # a result edited or merged by hand may hold several configs without saying so (metrics audit); by
    # config alone: check-int8's int8 result of a W8A8 and a W8A16 folder is one curve of two backends
    curves = results.get("curves") or list(dict.fromkeys(str(p.get("config") or "") for p in results["points"]))
    if len(curves) > 1:
        raise InputError(f"{name}: holds points of {len(curves)} RD curves ({'; '.join(map(str, curves))}); "
                         "a BD-rate compares one curve with another")
    n = len(results["points"])
    if n < min_points:
        raise InputError(f"{name}: BD-rate needs at least {min_points} RD points per curve, got {n}")


def rd_curve(results: dict[str, Any], metric: str, min_points: int = 1
             ) -> tuple[list[float], list[float]]:
    """(bpp, metric) of every point sorted by bpp; InputError if the metric is unknown or missing,
    a value is not finite, or there are fewer than `min_points` points."""
    if metric not in QUALITY_METRICS:
        raise InputError(f"unknown metric {metric!r}; choose from {', '.join(QUALITY_METRICS)}")
    where = results.get("codec", "results")
    pts = results["points"]
    if len(pts) < min_points:
        raise InputError(f"{where}: {metric} needs at least {min_points} RD points, got {len(pts)}")
    pairs = []
    for p in pts:
        if metric not in p:
            raise InputError(f"{where}: point {p.get('label')!r} has no {metric!r}")
        r, d = p["bpp"], p[metric]
        if not _is_number(d) or not math.isfinite(d):
            raise InputError(f"{where}: point {p.get('label')!r} has a non-finite {metric} ({d!r})")
        if not r > 0:
            raise InputError(f"{where}: point {p.get('label')!r} has bpp {r!r}; BD needs bpp > 0")
        pairs.append((float(r), float(d)))
    pairs.sort()
    return [r for r, _ in pairs], [d for _, d in pairs]


def payload_rates(result: dict) -> dict:
    """A copy of an RD result whose bpp counts the coded frames only: our entropy-coded payloads
    without the .mnvc header and records, or the x264 / x265 packets without the .mp4 container.
    The file-to-file BD-rate is the headline; this one says how much of it is the codec."""
    import copy

    out = copy.deepcopy(result)
    pixels = result["width"] * result["height"]
    if result.get("codec") == "x264" and "packet_bits_exclude" not in result and \
            any("packet_bpp" in p for p in result["points"]):
        raise InputError(f"the x264 result of {Path(str(result.get('source'))).name} counts its settings string (an "
                         "SEI message, 615 bytes at medium) in its packet bits, as baselines did before session 35; "
                         "run `mobilecodec baseline` again for payload rates")
    for p in out["points"]:
        if "packet_bpp" in p:
            p["bpp"] = p["packet_bpp"]
        elif p.get("per_frame") and all("payload_bits" in f for f in p["per_frame"]):
            p["bpp"] = sum(f["payload_bits"] for f in p["per_frame"]) / (pixels * len(p["per_frame"]))
        else:
            raise InputError(f"RD point {p.get('label')!r} has no payload or packet bits")
    return out


def drift_summary(point: dict, window: int = 1) -> dict:
    """P-frame drift inside each intra period of one RD point: the last P-frame's bits over the
    second P-frame's (the first P-frame still profits from a fresh I-frame reference) and its
    PSNR-YUV drop. Periods with fewer than 3 P-frames are skipped. A codec that does not drift
    keeps the ratio near 1 and the drop near 0 (issue #13's bar: at most 1.5x and 1 dB). A period
    is `full` when it holds the point's whole intra period (the clip's last one may be cut short:
    its last P-frame is not the period's); the `_full` worsts cover those alone. `window` W > 1
    compares the last W P-frames with W from the second on (bits summed, PSNR averaged; periods
    with fewer than 2W + 1 P-frames skipped): the trend rather than two single frames."""
    from mobilecodec.metrics.psnr import frame_psnr  # a lossless frame's inf PSNR counts as the means count it

    periods, cur = [], []
    for f in point["per_frame"]:
        if f["type"] == "I":
            if cur:
                periods.append(cur)
            cur = [f]
        else:
            cur.append(f)
    if cur:
        periods.append(cur)
    rows = []
    for per in periods:
        ps = [f for f in per if f["type"] == "P"]
        if len(ps) < 2 * window + 1:
            continue
        early, late = ps[1:1 + window], ps[-window:]
        early_bits, late_bits = sum(f["bits"] for f in early), sum(f["bits"] for f in late)
        rows.append({"first_frame": per[0]["index"], "second_p": early[0]["index"], "last_p": late[-1]["index"],
                     "bits_ratio": late_bits / early_bits if early_bits else None,
                     "psnr_yuv_drop": (sum(map(frame_psnr, early)) - sum(map(frame_psnr, late))) / window,
                     "full": len(per) == point.get("intra_period")})

    def worst(rs: list[dict]) -> tuple[float | None, float | None]:
        ratios = [r["bits_ratio"] for r in rs if r["bits_ratio"] is not None]
        return max(ratios) if ratios else None, max((r["psnr_yuv_drop"] for r in rs), default=None)

    (bits, drop), (bits_full, drop_full) = worst(rows), worst([r for r in rows if r["full"]])
    return {"periods": rows, "worst_bits_ratio": bits, "worst_psnr_yuv_drop": drop,
            "worst_bits_ratio_full": bits_full, "worst_psnr_yuv_drop_full": drop_full}


def format_period_drift(d: dict) -> str:
    """One line of a `drift_summary`: the worst bits ratio and PSNR-YUV drop over the full periods
    (the documented drift, issue #13's frame pair) first, then with a cut-short last period beside
    it (whose last P-frame is not its period's; it led the line before)."""
    if d["worst_bits_ratio"] is None:
        return "-"
    n = len(d["periods"])
    n_full = sum(bool(r.get("full")) for r in d["periods"])
    every = (f"bits x{d['worst_bits_ratio']:.2f}, PSNR-YUV {0.0 - d['worst_psnr_yuv_drop']:+.2f} dB")
    if n_full == 0:  # its last P-frame is not the period's: not the bar's frame pair
        return every + (f" (worst of {n} periods)" if n > 1 else " (one period)") + \
            ", no full intra period (the coded frames end inside it)"  # --frames, or the clip (walk-through)
    if n_full == n or d.get("worst_bits_ratio_full") is None:
        return every + (f" (worst of {n} periods)" if n > 1 else " (one period)")
    return (f"bits x{d['worst_bits_ratio_full']:.2f}, PSNR-YUV {0.0 - d['worst_psnr_yuv_drop_full']:+.2f} dB "
            + (f"(worst of the {n_full} full periods)" if n_full > 1 else "(the full period)")
            + f"; {every} with the cut-short last one")


def drift_trend(point: dict, content: list[float], period: int) -> dict | None:
    """How P-frame bits grow with the position in the intra period once the content is accounted
    for: least squares of log(bits) on 1, log(1 + content change) and the position, over the
    P-frames from the second on of the full periods. `content[i]`: the source's mean squared luma
    change into frame i (from frame i - 1). A single frame pair (the drift bar) mixes the two;
    this separates them. None with fewer than four such frames."""
    import numpy as np

    frames = point["per_frame"]
    rows = [f for f in frames if f["type"] == "P" and f["index"] % period >= 2
            and f["index"] - f["index"] % period + period <= len(frames) and f["bits"] > 0]
    if len(rows) < 4:
        return None
    x = np.array([[1.0, math.log1p(content[f["index"]]), f["index"] % period] for f in rows])
    y = np.log([float(f["bits"]) for f in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = len(rows) - 3
    sigma2 = float(resid @ resid) / dof if dof > 0 else float("nan")
    se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(x.T @ x)))
    steps = period - 3  # from the second P-frame (position 2) to the last (period - 1)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    # the per-frame growth in percent, and its SE on that scale (delta method: d expm1(b) = exp(b) db)
    return {"frames": len(rows), "per_frame_pct": 100 * math.expm1(coef[2]),
            "per_frame_se_pct": 100 * math.exp(coef[2]) * float(se[2]),
            "over_period": math.exp(coef[2] * steps),
            "over_period_2se": [math.exp((coef[2] - 2 * se[2]) * steps), math.exp((coef[2] + 2 * se[2]) * steps)],
            "content_elasticity": float(coef[1]), "r2": 1 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0}
