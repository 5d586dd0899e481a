"""A drift probe from the training domain, for choosing between checkpoints without carphone.

`make` writes a clip of K intra periods, each one still image (the training stills, scikit-image
and matplotlib wheels) under a steady synthetic translation (`mobilecodec.train.stills`, zoom
off): the content keeps its statistics along each period, so a falling PSNR or growing bits along
the period is the codec's drift and not the content's (`--intra-period 1` on the same clip gives
the content's own curve). `summarize` reads `mobilecodec eval --json` of that clip
and prints, per checkpoint, the mean over the periods of the last P-frame's PSNR-YUV drop and bit
ratio against the second P-frame (the issue #13 drift measure), and the PSNR-YUV per P-frame.

  python scripts/drift_probe.py make out/probe.y4m --periods 4 --period 32 --size 192x192
  mobilecodec eval out/probe.y4m --checkpoint A,B --intra-period 32 -o ev --json ev.json
  python scripts/drift_probe.py summarize ev.json --period 32 [--json summary.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, parse_hw, positive_int  # noqa: E402
from mobilecodec.metrics.psnr import frame_psnr  # noqa: E402
from mobilecodec.train import stills  # noqa: E402


def make(out: Path, periods: int, period: int, size: tuple[int, int], seed: int, max_speed: float) -> None:
    from mobilecodec.io import VideoWriter, YUVFrame

    # Translation only: a zoom changes how much detail each pixel holds along the period, and the
    # PSNR with it, whatever the codec does.
    stills.MAX_ZOOM = 0.0
    stills.MAX_SPEED = max_speed
    src = stills.StillSource()
    rng = np.random.default_rng(seed)
    h, w = size
    with VideoWriter(out, w, h, 30) as writer:  # the file appears only when complete
        for k in range(periods):
            y, uv, motion = src.sample_with_motion(rng, period, size)
            print(f"period {k}: velocity {motion.velocity[0]:+.2f}, {motion.velocity[1]:+.2f} px/frame, "
                  f"zoom {motion.zoom:+.4f}/frame, scale {motion.scale:.2f}")
            for t in range(period):
                writer.write(YUVFrame(y[t], uv[t, 0], uv[t, 1]))
    print(f"wrote {out}: {periods * period} frames of {w}x{h}")


def load_report(report: Path) -> dict:
    """The result of a `mobilecodec eval --json` report of one clip; one-line errors for anything else
    (a report of several clips was summarised for its first alone, without a word)."""
    try:
        results = json.loads(report.read_text())["results"]
        res = results[0]["result"]
        if not isinstance(res["points"], list) or not isinstance(res["frames"], int):
            raise TypeError
    except FileNotFoundError:
        sys.exit(f"drift_probe: no such report: {report}")
    except IsADirectoryError:
        sys.exit(f"drift_probe: {report} is a folder, not a `mobilecodec eval --json` report")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        sys.exit(f"drift_probe: {report} is not a `mobilecodec eval --json` report")
    if len(results) > 1:
        sys.exit(f"drift_probe: {report} holds the results of {len(results)} clips; summarize a report of one "
                 f"(`mobilecodec eval PROBE ... --json`, one probe each)")
    return res


def summarize(report: Path, period: int | None, json_out: Path | None) -> dict:
    res = load_report(report)
    coded = res.get("intra_period")
    if period is None:
        if coded in (None, 1):  # an all-intra report (the content's own curve) is cut at the probe's period
            sys.exit(f"drift_probe: {report} " + ("does not record its intra period" if coded is None else
                     "is all-intra") + ": pass --period (the probe's period)")
        period = coded
    elif coded not in (None, 1) and period != coded:  # cut at another period, I-frames counted as P-frames
        sys.exit(f"drift_probe: {report} was coded with intra period {coded}, not --period {period}")
    if period < 4:
        sys.exit(f"drift_probe: the drift needs intra periods of at least 4 frames (the second P-frame and a later "
                 f"one), got {period}")
    if any(len(p.get("per_frame") or ()) < period for p in res["points"]) or res["frames"] < period:
        sys.exit(f"drift_probe: {report} has no per-frame results over a whole period of {period} frames")
    summary = {}
    for p in res["points"]:
        frames = p["per_frame"]
        drops, ratios, curves = [], [], []
        for start in range(0, len(frames) - period + 1, period):
            per = frames[start:start + period]
            second, last = per[2], per[-1]
            drops.append(frame_psnr(second) - frame_psnr(last))  # a lossless frame (null, inf) as the means count it
            ratios.append(last["bits"] / second["bits"])
            curves.append([frame_psnr(f) for f in per[1:]])
        mean_curve = np.mean(curves, axis=0)
        summary[p["label"]] = {"bpp": p["bpp"], "psnr_yuv": p["psnr_yuv"], "psnr_drop_mean": float(np.mean(drops)),
                               "psnr_drop_worst": float(np.max(drops)), "bits_ratio_mean": float(np.mean(ratios)),
                               "bits_ratio_worst": float(np.max(ratios)), "p_psnr_mean_curve": mean_curve.tolist()}
        marks = ", ".join(f"{i + 1}: {mean_curve[i]:.2f}" for i in (0, 7, 15, 23, period - 2) if i < len(mean_curve))
        print(f"{p['label']:<28} {p['bpp']:.4f} bpp {p['psnr_yuv']:.3f} dB | drift mean {-np.mean(drops):+.2f} dB "
              f"(worst {-np.max(drops):+.2f}), bits x{np.mean(ratios):.2f} (worst x{np.max(ratios):.2f}) | "
              f"P-frame PSNR-YUV {marks}")
    if json_out:
        emit_json(summary, json_out)
    return summary


def main() -> int:
    from mobilecodec.cli.common import json_target, seed_int

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the probe clip")
    m.add_argument("out", type=Path, help="clip to write (.y4m)")
    m.add_argument("--periods", type=positive_int, default=4, help="intra periods, one still each (default 4)")
    m.add_argument("--period", type=positive_int, default=32, help="frames per intra period (default 32)")
    m.add_argument("--size", type=parse_hw, default=(192, 192), metavar="HxW",
                   help="frame size, any even HxW (written as is; the codec pads it to multiples of 64 when "
                        "coding, e.g. 144x176 as carphone; default 192x192)")
    m.add_argument("--seed", type=seed_int, default=0, help="picks the stills and their motion (default 0)")
    m.add_argument("--max-speed", type=float, default=stills.MAX_SPEED, metavar="PX",
                   help=f"largest speed per axis, luma pixels per frame (default {stills.MAX_SPEED}; 0: a static scene)")
    s = sub.add_parser("summarize", help="drift per checkpoint from `mobilecodec eval --json`")
    s.add_argument("report", type=Path, help="`mobilecodec eval --json` report of the probe clip")
    s.add_argument("--period", type=positive_int, default=None,
                   help="the intra period the clip was coded with (default: the report's; another is refused)")
    s.add_argument("--json", type=json_target, help="also write the summary as JSON")
    a = ap.parse_args()
    if a.cmd == "make":
        if not 0 <= a.max_speed <= 32:  # nan and inf too (an OverflowError); faster runs off the stills
            sys.exit(f"drift_probe: --max-speed must be 0..32 luma pixels per frame, got {a.max_speed}")
        if a.size[0] % 2 or a.size[1] % 2:
            m.error(f"--size must be even (YUV 4:2:0), got {a.size[0]}x{a.size[1]}")
        make(a.out, a.periods, a.period, a.size, a.seed, a.max_speed)
    else:
        summarize(a.report, a.period, a.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
