"""Issue #13's drift bar over windows of P-frames: per RD point of `mobilecodec eval` or `mobilecodec
baseline` JSON, the worst over the full intra periods of (bits of the last W P-frames of the period)
/ (bits of W P-frames from the second on) and of their PSNR-YUV drop. W = 1 is the bar as written
(frame 31 against frame 2 at period 32); wider windows ask the same question of the trend rather
than of two single frames, which follow the content frame by frame. With `--content VIDEO` (the
coded clip) it also fits log(bits) on the clip's frame-to-frame change and the position in the period
(`rdresults.drift_trend`): the bit growth along the period with the content held equal.

  python scripts/drift_windows.py ev/carphone_eval.json x264_ip32.json [--windows 1,4,8] [--content carphone] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, positive_int, positive_ints  # noqa: E402
from mobilecodec.errors import InputError  # noqa: E402
from mobilecodec.rdresults import drift_summary, drift_trend  # noqa: E402


def points(report: Any) -> Iterator[dict]:
    """Every RD point (a dict with `label` and `per_frame`) of an eval or baseline report."""
    if isinstance(report, dict):
        if "label" in report and "per_frame" in report:
            yield report
            return
        for v in report.values():
            yield from points(v)
    elif isinstance(report, list):
        for v in report:
            yield from points(v)


def load_report(path: str) -> tuple[Any, list[dict]]:
    """A report and its RD points; one-line errors for a missing file or JSON that holds none."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"no such report: {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path} as JSON: {e}")
    pts = list(points(report))
    if not pts:
        raise InputError(f"{path} is not a `mobilecodec eval --json` or `mobilecodec baseline --json` report "
                         "(no RD point with per-frame results)")
    labels = [str(p["label"]) for p in pts]
    twice = next((x for x in labels if labels.count(x) > 1), None)
    if twice is not None:  # a report of several clips: its rows overwrote each other, --content fitted one clip to all
        raise InputError(f"{path} holds the point {twice!r} more than once (a report of several clips?): give a "
                         "report of one clip")
    return report, pts


def main() -> int:
    from mobilecodec.cli.common import json_target

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="eval or baseline JSON files")
    p.add_argument("--period", type=positive_int, default=32,
                   help="intra period the reports were coded with (default 32)")
    p.add_argument("--windows", type=positive_ints, default=[1, 4, 8],
                   help="P-frames per window, comma-separated (default 1,4,8)")
    p.add_argument("--content", metavar="VIDEO", help="the coded clip (file or sample name): also fit the bits' "
                   "growth along the period with the frame-to-frame change held equal")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the table as JSON")
    a = p.parse_args()
    windows = a.windows
    if any(2 * w + 1 > a.period - 1 for w in windows):
        p.error(f"--windows must fit twice, after the first P-frame, in a period of {a.period}")
    reports = {path: load_report(path) for path in a.reports}  # all checked before any work
    out: dict = {"period": a.period, "windows": windows, "reports": {}}
    content = source_changes(a.content) if a.content else None
    for path, (_, pts) in reports.items():  # before any line of the table
        for pt in pts:
            coded = pt.get("intra_period")
            if coded is not None and coded != a.period:  # cut at another period, every window is "-" or wrong
                raise InputError(f"{path}: {pt['label']} was coded with intra period {coded}, not --period {a.period}")
            if content is not None and len(content) < len(pt["per_frame"]):
                raise InputError(f"--content {a.content} has {len(content)} frames, {path}'s {pt['label']} "
                                 f"{len(pt['per_frame'])}: it is not the coded clip")
    print(f"worst over the full periods of {a.period} frames: last W P-frames against W from the second on; "
          "bits ratio (bar: at most 1.5x) / PSNR-YUV drop (bar: at most 1 dB)")
    print(f"{'report':24s} {'point':20s} " + " ".join(f"{'W = ' + str(w):>17s}" for w in windows)
          + ("  bits growth with the content held equal (+- 1 SE; over the period: 2 SE range)" if a.content else ""))
    for path, (_, pts) in reports.items():
        rows = out["reports"][path] = {}
        for pt in pts:
            cells = []
            for w in windows:
                s = drift_summary({**pt, "intra_period": a.period}, window=w)
                d = None if s["worst_bits_ratio_full"] is None else {
                    "bits_ratio": s["worst_bits_ratio_full"], "psnr_drop_db": s["worst_psnr_yuv_drop_full"]}
                rows.setdefault(str(pt["label"]), {})[str(w)] = d
                cells.append("-" if d is None else f"{d['bits_ratio']:5.2f}x / {d['psnr_drop_db']:4.2f} dB")
            if content is not None:
                t = rows[str(pt["label"])]["trend"] = drift_trend(pt, content, a.period)
                cells.append("-" if t is None else f"{t['per_frame_pct']:+5.2f} +- {t['per_frame_se_pct']:4.2f} %/frame, "
                             f"x{t['over_period']:.2f} (x{t['over_period_2se'][0]:.2f}-{t['over_period_2se'][1]:.2f}) "
                             f"over the period, R2 {t['r2']:.2f}")
            print(f"{Path(path).name[:24]:24s} {str(pt['label'])[:20]:20s} " + " ".join(f"{c:>17s}" for c in cells))
    if a.json:
        emit_json(out, a.json)
    return 0


def source_changes(video: str) -> list[float]:
    """Per frame of the clip, the mean squared luma change from the frame before (0 for the first)."""
    import numpy as np

    from mobilecodec.io import read_frames, resolve_input

    try:
        ys = [f.y.astype(np.float64) for f in read_frames(resolve_input(video))]
    except FileNotFoundError:
        raise InputError(f"no such file: {video}")
    return [0.0] + [float(((b - a) ** 2).mean()) for a, b in zip(ys, ys[1:])]


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
