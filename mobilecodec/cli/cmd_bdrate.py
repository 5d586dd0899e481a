"""`mobilecodec bdrate`: Bjontegaard rate and quality deltas of one RD result JSON against another."""

from __future__ import annotations

import argparse
from typing import Any

from mobilecodec.cli.common import choice_list, emit_json
from mobilecodec.rdresults import QUALITY_METRICS as METRICS

HELP = "BD-rate (percent) and BD-PSNR of TEST vs ANCHOR RD result JSON files (PSNR-YUV, PSNR-RGB)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("anchor", metavar="ANCHOR.json", help="RD results of the reference codec")
    p.add_argument("test", metavar="TEST.json", help="RD results of the codec under test")
    p.add_argument("--metric", type=choice_list(METRICS), default=["psnr_yuv", "psnr_rgb"],
                   metavar="LIST", help=f"comma-separated, from {', '.join(METRICS)} "
                   "(default psnr_yuv,psnr_rgb)")
    p.add_argument("--method", choices=("pchip", "akima", "cubic"), default="pchip",
                   help="interpolation of the RD curves (default pchip)")
    p.add_argument("--payload", action="store_true",
                   help="rates of the coded frames only: x264 / x265 packets without the .mp4 container, our "
                        "payloads without the .mnvc header and frame records (default: whole files)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON ('-' = stdout)")


def _clean(x: float) -> float:
    """Round away float noise so identical curves print 0.0 rather than -0.0 or 1e-15."""
    x = round(x, 6)
    return 0.0 if x == 0 else x


def compute(anchor: dict[str, Any], test: dict[str, Any], metrics: list[str], method: str,
            names: tuple[str, str] = ("anchor", "test")) -> list[dict[str, Any]]:
    """BD-rate (%) and BD-quality (dB or MS-SSIM units) of `test` vs `anchor` per metric; each curve
    needs `rdresults.BD_MIN_POINTS` points (`check_bd_points`), as for `eval`. `names`: how errors
    name the two (their files: a curve's own name is its codec's, which both may share)."""
    from mobilecodec.metrics import bd_psnr, bd_rate
    from mobilecodec.metrics.bd import curve_overlap, overlap_note, rate_overlap
    from mobilecodec.rdresults import check_bd_points, check_same_matrix, quality_unit, rd_curve

    from mobilecodec.errors import InputError

    def attempt(fn, *a):
        # BD-rate needs overlapping quality, BD-quality overlapping rate: report each on its own.
        try:
            return _clean(fn(*a, method=method)), None
        except InputError as exc:
            return None, str(exc)

    check_bd_points(anchor, "anchor")
    check_bd_points(test, "test")
    rows, reasons = [], []
    for m in metrics:
        row: dict = {"metric": m}
        try:  # a curve this metric cannot use (e.g. a non-finite value) leaves the other metrics
            check_same_matrix(anchor, test, m)
            curves = []
            for name, res in zip(names, (anchor, test)):
                try:
                    curves.append(rd_curve(res, m))
                except InputError as exc:  # "x264: point 'crf27' has bpp 0" of two x264 files (metrics audit)
                    raise InputError(f"{name}: {exc}") from None
            (ra, da), (rt, dt) = curves
        except InputError as exc:
            rate = quality = None
            why_rate = why_quality = str(exc)
        else:
            rate, why_rate = attempt(bd_rate, ra, da, rt, dt)
            quality, why_quality = attempt(bd_psnr, ra, da, rt, dt)
            # how much of each curve the figures average over: flagged when little of either
            row["quality_overlap"] = curve_overlap(da, dt)
            if min(ra) > 0 and min(rt) > 0:  # else bd_psnr said why
                row["rate_overlap"] = rate_overlap(ra, rt)
            notes = []
            if rate is not None and row["quality_overlap"]["low"]:
                notes.append(f"BD-rate: {overlap_note(row['quality_overlap'], 'quality', quality_unit(m))}")
            if quality is not None and row.get("rate_overlap", {}).get("low"):
                notes.append(f"BD-quality: {overlap_note(row['rate_overlap'], 'log10 rate', '')}")
            row["notes"] = notes
        row.update({"bd_rate_percent": rate, "bd_quality": quality,
                    "bd_rate_error": why_rate, "bd_quality_error": why_quality})
        rows.append(row)
        reasons += [f"{m}: {r}" for r in dict.fromkeys((why_rate, why_quality)) if r]
    if all(r["bd_rate_percent"] is None and r["bd_quality"] is None for r in rows):
        raise InputError("; ".join(dict.fromkeys(reasons)))  # each metric's reason, not the first alone
    return rows


def run(args: argparse.Namespace) -> int:
    import sys

    from mobilecodec.errors import InputError

    from mobilecodec.rdresults import check_bd_points, check_same_clip, load_results, payload_rates, quality_unit

    anchor = load_results(args.anchor)
    test = load_results(args.test)
    if args.payload:
        try:
            anchor, test = payload_rates(anchor), payload_rates(test)
        except InputError as exc:
            raise InputError(f"--payload: {exc}") from None
    for name, res in (("anchor", anchor), ("test", test)):
        check_bd_points(res, f"{name} {getattr(args, name)}")

    note = check_same_clip(anchor, test["width"], test["height"], test["frames"], args.anchor, args.test,
                           source=str(test.get("source") or "") or None)
    rows = compute(anchor, test, args.metric, args.method, (f"anchor {args.anchor}", f"test {args.test}"))
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"anchor: {anchor['codec']} {anchor.get('preset', '')} ({args.anchor}, "
          f"{len(anchor['points'])} points)")
    print(f"test:   {test['codec']} {test.get('preset', '')} ({args.test}, "
          f"{len(test['points'])} points)")
    print(f"method: {args.method}; rates: {'coded frames only (--payload)' if args.payload else 'whole files'}; "
          f"negative BD-rate = test needs fewer bits")
    print(f"{'metric':<12} {'BD-rate (%)':>12} {'BD-quality':>11}")
    for r in rows:
        # MS-SSIM deltas are thousandths: five decimals keep three digits of them
        unit = quality_unit(r["metric"])
        places = 3 if unit else 5
        rate = "n/a" if r["bd_rate_percent"] is None else f"{r['bd_rate_percent']:.2f}"
        qual = "n/a" if r["bd_quality"] is None else f"{r['bd_quality']:.{places}f}{unit}"
        print(f"{r['metric']:<12} {rate:>12} {qual:>11}")
        for why in dict.fromkeys((r["bd_rate_error"], r["bd_quality_error"])):
            if why:
                print(f"  n/a: {why}")
        for n in r.get("notes", []):
            print(f"  note: {n}")
    def curve(res: dict) -> dict:
        return {"codec": res["codec"], "preset": res.get("preset"), "points": len(res["points"]),
                "frames": res["frames"]}

    emit_json({"anchor": args.anchor, "test": args.test, "method": args.method,
               "rates": "payload" if args.payload else "file", "anchor_curve": curve(anchor),
               "test_curve": curve(test), "notes": [note] if note else [], "results": rows}, args.json)
    return 0
