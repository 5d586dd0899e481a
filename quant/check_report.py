"""The int8 check's report: Markdown (`markdown`), the BD figures as Markdown or plain text
(`bd_lines`), and the files of OUT (`write_report`: JSON, Markdown, RD results, plots). Rendering
only: the numbers come from `mobilecodec.quant.check`."""

from __future__ import annotations

from pathlib import Path

from mobilecodec.mdtable import fmt, md_table



def _bd_psnr(cmp_: dict, m: str, unit: str) -> str:
    """BD-PSNR as printed (with a note where the rate ranges overlap too little), or why there is none
    (they do not overlap)."""
    v = cmp_["bd_psnr"].get(m)
    if v is None:
        return f"n/a ({cmp_.get('bd_psnr_error', {}).get(m, 'not computed')})"
    note = cmp_.get("bd_psnr_note", {}).get(m)
    return f"{v:+.4f}{unit}" + (f" ({note})" if note else "")


def fitted_note(fitted: dict[str, str]) -> str:
    """The one line saying an int8 point's figures on an input it was fitted on (`fitted_on_input`)
    are not held-out ones."""
    return (f"{fitted['int8']} was calibrated or trained on {fitted['input']}: its figures there are not "
            "held-out ones")


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = ["# int8 vs float check", "", f"**{report['verdict']}**", "",
             f"float: PyTorch; int8: {report.get('int8_backend', 'aimet simulation (PyTorch)')}", "",
             *(f"Note: {fitted_note(f)}." for f in report.get("fitted_on_input") or []),
             *([""] if report.get("fitted_on_input") else [])]
    for res in report["results"]:
        lines += [f"## {res['source']}", "", "| model | label | bpp | PSNR-YUV (dB) | PSNR-RGB (dB) | MS-SSIM-RGB |",
                  "|---|---|---|---|---|---|"]
        for kind in ("float", "int8"):
            for p in res[kind]["points"]:
                lines.append(f"| {kind} | {p['label']} | {p['bpp']:.5f} | {p['psnr_yuv']:.3f} | {p['psnr_rgb']:.3f} "
                             f"| {p['ms_ssim_rgb']:.4f} |")
        lines += ["", *bd_lines(res["comparison"], markdown_=True)]
        for a, b in zip(res["float"]["points"], res["int8"]["points"]):
            lines += ["", f"Per frame, {a['label']} (float) vs {b['label']} (int8):", "",
                      "| frame | type | bits float | bits int8 | PSNR-YUV float (dB) | PSNR-YUV int8 (dB) | d PSNR-YUV (dB) |",
                      "|---|---|---|---|---|---|---|"]
            for fa, fb in zip(a["per_frame"], b["per_frame"]):
                lines.append(f"| {fa['index']} | {fa['type']} | {fa['bits']} | {fb['bits']} | {fa['psnr_yuv']:.3f} "
                             f"| {fb['psnr_yuv']:.3f} | {fb['psnr_yuv'] - fa['psnr_yuv']:+.4f} |")
        lines.append("")
    sens = report.get("sensitivity") or {}
    if sens.get("rows"):
        lines += [f"## Stage sensitivity ({sens['pair']}, {sens['frames']} frames)", "", sens["method"], "",
                  f"float: PSNR-YUV {sens['float']['psnr_yuv']:.3f} dB, {sens['float']['bits']:.0f} bits; "
                  f"all stages int8: PSNR-YUV {sens['int8']['psnr_yuv']:.3f} dB, {sens['int8']['bits']:.0f} bits", "",
                  "| rank | stage int8 alone | d PSNR-YUV (dB) | d bits (%) |", "|---|---|---|---|"]
        for i, r in enumerate(sens["rows"], 1):
            lines.append(f"| {i} | {r['stage']} | {r['d_psnr_yuv']:+.4f} | {fmt(r['d_bits_pct'])} |")
    return "\n".join(lines) + "\n"


def bd_lines(cmp_: dict, markdown_: bool = False) -> list[str]:
    """The BD figures (or why there are none) per metric with the curves' spans, the dropped points,
    and the per-point deltas (bpp %, dB) beside them: Markdown tables or plain text."""
    rows = []
    for m, j in cmp_["judge"].items():
        spans = (f"{j['float_span_db']:.3f}", f"{j['int8_span_db']:.3f}",
                 f"{j['overlap_db']:.3f} ({100 * j['overlap_fraction']:.0f} %)") if "float_span_db" in j else ("-",) * 3
        if m in cmp_["bd_rate"]:
            rows.append([m, *spans, f"{cmp_['bd_rate'][m]:+.3f}", _bd_psnr(cmp_, m, "")])
        else:
            rows.append([m, *spans, f"inconclusive: {cmp_['inconclusive'].get(m)}", "-"])
    eq = cmp_.get("equal_rate") or {}
    eq_metrics = [m for m in ("psnr_yuv", "psnr_rgb") if m in eq]

    def at_rate(m: str, i: int, unit: str = "") -> str:
        v = eq[m]["d_db"][i]
        if v is None:  # not computed at all (a one-point float curve) is not "outside the rates"
            return "n/a" if eq[m]["error"] else "outside the float rates"
        return f"{v:+.4f}{unit}"

    deltas = [[d["float"], d["int8"], "-" if d["d_bpp_pct"] is None else f"{d['d_bpp_pct']:+.2f}",
               f"{d['d_psnr_yuv']:+.4f}", f"{d['d_psnr_rgb']:+.4f}", *(at_rate(m, i) for m in eq_metrics)]
              for i, d in enumerate(cmp_["point_deltas"])]
    eq_lines = [f"{m} against the float curve at equal rate: "
                + (f"not available ({eq[m]['error']})" if eq[m]["error"] else
                   "no int8 point lies within the float rates" if eq[m]["mean_db"] is None else
                   f"mean {eq[m]['mean_db']:+.4f} dB over {eq[m]['points']} point(s)")
                for m in eq_metrics]
    dropped = [f"{m}: BD over the RD frontier (--frontier); dominated points left out: "
               + "; ".join(f"{k} {', '.join(v)}" for k, v in kinds.items())
               for m, kinds in (cmp_.get("bd_dropped") or {}).items()]
    bd_head = ["metric", "float span (dB)", "int8 span (dB)", "shared (dB)", "BD-rate int8 vs float (%)",
               "BD-PSNR (dB)"]
    d_head = ["float", "int8", "d bpp (%)", "d PSNR-YUV (dB)", "d PSNR-RGB (dB)",
              *(f"{'PSNR-YUV' if m == 'psnr_yuv' else 'PSNR-RGB'} vs float curve at equal rate (dB)" for m in eq_metrics)]
    if markdown_:
        return [*md_table(bd_head, rows), "", *(x + "\n" for x in dropped),
                "Per RD point, int8 minus float (and int8 against the float curve interpolated at the int8 "
                "point's rate, pchip over log rate):", "", *md_table(d_head, deltas), "",
                *(x + "\n" for x in eq_lines)]
    lines = [f"int8 - float, {r[0]} -> {r[1]}: bpp {r[2]} %, PSNR-YUV {r[3]} dB, PSNR-RGB {r[4]} dB"
             + (", at equal rate: " + ", ".join(f"{m} {at_rate(m, i, ' dB')}" for m in eq_metrics) if eq_metrics else "")
             for i, r in enumerate(deltas)]
    lines += eq_lines
    for m, j in cmp_["judge"].items():
        head = (f"{m}: float spans {j['float_span_db']:.3f} dB, int8 {j['int8_span_db']:.3f} dB, shared "
                f"{j['overlap_db']:.3f} dB ({100 * j['overlap_fraction']:.0f} %): ") if "float_span_db" in j else f"{m}: "
        lines.append(head + (f"BD-rate {cmp_['bd_rate'][m]:+.3f} %, BD-PSNR {_bd_psnr(cmp_, m, ' dB')}"
                             if m in cmp_["bd_rate"] else f"inconclusive: {cmp_['inconclusive'].get(m)}"))
    return lines + dropped


def _plots(out: Path, stem: str, float_res: dict, int8_res: dict, cmp_: dict) -> list[str]:
    from mobilecodec.plots import per_frame_plot, rd_plot

    names = input_files(stem)
    paths = [rd_plot([float_res, int8_res], out / names["rd"], metric=["psnr_yuv", "psnr_rgb", "ms_ssim_rgb"],
                     title=f"{stem}: float vs int8"),
             per_frame_plot([float_res, int8_res], "psnr_yuv", out / names["psnr"],
                            title=f"{stem}: PSNR-YUV per frame"),
             per_frame_plot([float_res, int8_res], "bits", out / names["bits"],
                            title=f"{stem}: bits per frame")]
    drift = {"codec": "int8 - float", "points": [
        {"label": d["int8"], "per_frame": frames} for d, frames in zip(cmp_["point_deltas"], cmp_["drift"])]}
    paths.append(per_frame_plot([drift], "d_psnr_yuv", out / names["drift"],
                                title=f"{stem}: PSNR-YUV int8 - float along the GOP (dB)"))
    return [str(p) for p in paths]


def input_files(stem: str) -> dict[str, str]:
    """The files the report writes for one input, by kind, after its stem (`report_stems`)."""
    return {"float": f"{stem}_float.json", "int8": f"{stem}_int8.json", "rd": f"{stem}_rd.png",
            "psnr": f"{stem}_per_frame_psnr.png", "bits": f"{stem}_per_frame_bits.png",
            "drift": f"{stem}_drift_psnr.png"}


def report_stems(sources: list[str | Path]) -> list[str]:
    """The stem of each input's files: its name's, numbered <k>_<stem> with several inputs or when it is
    `check` (check + _int8.json would be near the report's own name)."""
    stems = [Path(s).stem for s in sources]
    return [f"{k}_{s}" if len(stems) > 1 or s == "check" else s for k, s in enumerate(stems)]


def planned_files(sources: list[str | Path]) -> list[str]:
    """Every name `write_report` writes into OUT for these inputs: checked before the run (a folder in a
    file's place was found only when publishing, after the whole check: output audit)."""
    return [n for stem in report_stems(sources) for n in input_files(stem).values()] + ["check_int8.md",
                                                                                         "check_int8.json"]


def write_report(out: Path, report: dict) -> list[str]:
    """OUT/check_int8.json, check_int8.md, <stem>_float.json / <stem>_int8.json (RD results for
    `mobilecodec bdrate`; the stem numbered <k>_<stem> with several inputs or when it is `check`) and
    the PNG plots; returns the paths written."""
    from mobilecodec.fsutil import listed_files, publishing, remove_superseded, write_json_atomic
    from mobilecodec.rdresults import save_results

    # what an earlier report here listed goes once this one is written (by name: -o R then -o $PWD/R)
    earlier = listed_files(out / "check_int8.json", lambda r: [Path(f).name for f in r["files"]])
    with publishing(out) as stage:  # all of them or, on failure, none (an earlier run's files stay)
        names: list[str] = []
        for stem, res in zip(report_stems([r["source"] for r in report["results"]]), report["results"]):
            files = input_files(stem)
            for kind in ("float", "int8"):
                save_results(stage / files[kind], res[kind])
                names.append(files[kind])
            names += [Path(p).name for p in _plots(stage, stem, res["float"], res["int8"], res["comparison"])]
        (stage / "check_int8.md").write_text(markdown(report), encoding="utf-8")
        names += ["check_int8.md", "check_int8.json"]
        report["files"] = [str(out / n) for n in names]
        write_json_atomic(stage / "check_int8.json", report)
    suffixes = tuple(v.removeprefix("S") for v in input_files("S").values())  # what any input's files end in
    remove_superseded(out, earlier, names, spare=[*report.get("inputs", []),
                                                  *(p["float"] for p in report.get("pairs", []))],
                      own=lambda f: f.endswith(suffixes) or f in ("check_int8.md", "check_int8.json"))
    return report["files"]
