"""The demo's report: side-by-side source/decode PNGs, the RD plot against x264 and x265, the
ESTIMATED NPU time, and report.md / report.json. Rendering only: `mobilecodec.demo` runs the steps
and hands their results (plain dicts) to `write_report`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mobilecodec.mdtable import fmt, md_table

FORMAT = "mobilecodec-demo"  # report.json's "format"
#: what an earlier demo report folder holds: only a folder holding one of FORMAT is replaced (a user's
#: folder with some other report.json was deleted whole)
REPORT_MARKER = "report.json"

#: The demo's steps, in order (run by `mobilecodec.demo`, listed by the report).
STAGES = ("load checkpoints", "int8 PTQ (aimet)", "export ONNX package (int8 QDQ)", "compile for the QNN HTP",
          "encode + decode on onnxruntime", "x264/x265 baselines", "int8 vs float check", "profile", "write report")

ZOOM_WIDTH = 704  # side-by-side PNGs of small clips are zoomed up to this width (176x144: 2x)

# side-by-side frames ------------------------------------------------------------------------------

def side_by_side(source: Any, decoded: Any, path: str | os.PathLike, matrix: str = "bt601",
                 scale: int = 1) -> Path:
    """One RGB PNG (2W x H, times `scale` by pixel repetition, 8-bit): the source frame on the left,
    the decoded frame on the right, both YUV420 -> RGB through `mobilecodec.metrics.yuv_to_rgb8`
    (the conversion PSNR-RGB uses)."""
    import numpy as np
    from PIL import Image

    from mobilecodec.errors import InputError
    from mobilecodec.fsutil import atomic_path
    from mobilecodec.metrics import yuv_to_rgb8

    if source.y.shape != decoded.y.shape:
        raise InputError(f"side_by_side: source is {source.y.shape[1]}x{source.y.shape[0]}, decoded "
                         f"{decoded.y.shape[1]}x{decoded.y.shape[0]}")
    rgb = np.concatenate([yuv_to_rgb8(source, matrix), yuv_to_rgb8(decoded, matrix)], axis=1)
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(tmp, format="PNG")
    return Path(path)


def shown_frames(per_frame: Sequence[dict], intra_period: int) -> list[int]:
    """Indices to show: the first I-frame and the last P-frame of its intra period (when coded)."""
    shown = [0]
    last = min(intra_period, len(per_frame)) - 1
    if last > 0 and per_frame[last]["type"] == "P":
        shown.append(last)
    return shown


def frame_pngs(out: Path, sources: Sequence[Any], decoded: Sequence[Any], per_frame: Sequence[dict],
               intra_period: int, matrix: str, what: str) -> list[dict[str, Any]]:
    """Write OUT/frame<NNN>_<type>.png (source | decoded) for `shown_frames`; returns one dict per
    PNG (file, index, type, bits and metrics of that decoded frame, `what` decoded it). Small
    frames are zoomed by the largest integer (pixel repetition) that keeps the PNG <= ZOOM_WIDTH wide."""
    rows = []
    for i in shown_frames(per_frame, intra_period):
        f = per_frame[i]
        scale = max(1, ZOOM_WIDTH // (2 * sources[i].y.shape[1]))
        path = side_by_side(sources[i], decoded[i], out / f"frame{i:03d}_{f['type']}.png", matrix, scale)
        rows.append({"file": str(path), "index": i, "type": f["type"], "bits": f["bits"], "psnr_yuv": f["psnr_yuv"],
                     "psnr_rgb": f["psnr_rgb"], "ms_ssim_rgb": f["ms_ssim_rgb"], "width": sources[i].y.shape[1],
                     "height": sources[i].y.shape[0], "scale": scale, "left": "source", "right": what,
                     "matrix": matrix, "period_complete": i == intra_period - 1})
    return rows


# NPU estimate -----------------------------------------------------------------------------------------

def npu_summary(npu: dict[str, Any], device: str = "8gen2") -> list[str]:
    """One line per frame type: ESTIMATED NPU ms and the frames/s it allows, labelled with the error."""
    from mobilecodec.runtime.npu_estimate import DEVICES

    d = npu["devices"][device]
    lines = [f"ESTIMATED NPU time on {DEVICES[device]['soc']} (HTP {DEVICES[device]['htp']}), networks only; "
             f"{npu['label']}:"]
    for ft, f in d["frames"].items():
        lines.append(f"  {ft}: {f['ms']:.2f} ms -> {f['frames_per_s']:.0f} frames/s (estimate)")
    return lines


# RD plot ------------------------------------------------------------------------------------------------

def _coded_p_frames(report: dict[str, Any]) -> bool:
    """Whether the runtime encode coded a P-frame (not with --intra-period 1)."""
    return any(f.get("type") == "P" for f in report["runtime"]["point"].get("per_frame", []))


def _block_modes_used(report: dict[str, Any]) -> int:
    """The runtime encode's block-mode size, 0 where it coded no P-frame (--intra-period 1): the
    report described P-frame block modes and labelled every curve with them (demo audit)."""
    return int(report["runtime"].get("block_modes") or 0) if _coded_p_frames(report) else 0


def rd_curves(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Our RD results (float and int8 sim curves, the int8 package point) and the baselines'."""
    chk = report["check_int8"]["results"][0]
    bm = _block_modes_used(report)
    modes = f", block modes {bm}x{bm}" if bm else ""
    curves = [dict(chk["float"], codec=f"{chk['float']['codec']} float (PyTorch{modes})"),
              dict(chk["int8"], codec=f"{chk['float']['codec']} int8 (aimet sim{modes})"),
              {"codec": f"int8 package (onnxruntime CPU{modes})", "points": [report["runtime"]["point"]]}]
    for b in report.get("baselines", {}).values():
        curves.append({"codec": f"{b['codec']} {b['preset']}", "points": b["points"]})
    return curves


def relocate(tmp: Path, final: Path) -> None:
    """Paths recorded while the report was being written point into the temporary folder: rewrite
    them (in every .json and .md of the report) to where the folder will be after the rename."""
    import json

    from mobilecodec.fsutil import atomic_path

    def spellings(path: Path) -> list[str]:  # as text, and as JSON strings hold it (é as \u00e9, " as \")
        return [str(path), json.dumps(str(path))[1:-1], json.dumps(str(path), ensure_ascii=False)[1:-1]]

    for p in tmp.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".md"):
            text = p.read_text(encoding="utf-8")
            pairs = zip(spellings(tmp), spellings(final)) if p.suffix == ".json" else [(str(tmp), str(final))]
            moved = text
            for old, new in pairs:
                moved = moved.replace(old, new)
            if moved != text:
                with atomic_path(p) as t:
                    t.write_text(moved, encoding="utf-8")


def _rel(out: Path, p: str | Path) -> str:
    try:
        return str(Path(p).relative_to(out))
    except ValueError:
        return str(p)


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Plots, report.md and report.json into `out`."""
    from mobilecodec.fsutil import WRITTEN, atomic_path, write_json_atomic
    from mobilecodec.plots import per_frame_plot, rd_plot

    curves = rd_curves(report)
    ours = curves[:3]
    base = "x264 and x265" if report.get("baselines") else "float vs int8"
    plots = {"rd": rd_plot(curves, out / "rd.png", metric=["psnr_yuv", "psnr_rgb"], logx=True,
                           title=f"{report['clip']['name']}, {report['clip']['frames']} frames: ours and {base}"),
             "per_frame_psnr": per_frame_plot(ours, "psnr_yuv", out / "per_frame_psnr.png",
                                              title="PSNR-YUV per frame"),
             "per_frame_bits": per_frame_plot(ours, "bits", out / "per_frame_bits.png", title="bits per frame")}
    report["plots"] = {k: _rel(out, v) for k, v in plots.items()}
    report["plots"]["latency_breakdown"] = "profile/latency_breakdown.png"
    report["plots"]["macs_per_subnetwork"] = "profile/macs_per_subnetwork.png"
    for f in report.get("frames_png", []):
        report["plots"][f"frame{f['index']:03d}_{f['type']}"] = _rel(out, f["file"])
    md = markdown(report, out)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    report["files"] = sorted(set(files) | {"report.json", WRITTEN})  # WRITTEN: the list `atomic_dir` adds
    write_json_atomic(out / "report.json", report)


def _demote(lines: list[str]) -> list[str]:
    """Headings of an embedded sub-report one level down."""
    return [("#" + ln) if ln.startswith("#") else ln for ln in lines]


def markdown(report: dict[str, Any], out: Path) -> str:
    """report.md: what was done, every table, where the artifacts are, timings per stage."""
    from mobilecodec.quant.check_report import markdown as check_md
    from mobilecodec.runtime.report import buffer_md, complexity_md, latency_md

    clip, rt, t = report["clip"], report["runtime"], report["timings"]
    ck = report["checkpoints"]
    chk = report["check_int8"]
    L: list[str] = ["# mobilecodec demo report", ""]
    L += [f"Clip **{clip['name']}** ({clip['width']}x{clip['height']}, padded to {clip['padded_size'][0]}x"
          f"{clip['padded_size'][1]}), first {clip['frames']} frames, intra period {clip['intra_period']}. "
          f"Main checkpoint: `{ck[0]['label']}` (config {ck[0]['config']}, beta {fmt(ck[0]['beta'], 4)}). "
          f"Total time {t['total_s']:.1f} s.", ""]
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
    if report.get("npu_estimate"):
        first, *rest = npu_summary(report["npu_estimate"], report["options"]["npu_device"])
        L += [f"- {first}", *(f"  - {r.strip()}" for r in rest)]
    L.append("")
    L += _frames_md(report, out) + _baselines_md(report) + _npu_md(report)
    L += ["## Stages and timings", "", *md_table(["#", "stage", "seconds"], [
        [i + 1, s, "skipped" if s in t.get("skipped", ()) else t["stages_s"].get(s)] for i, s in enumerate(STAGES)], 1),
        f"| | total | {t['total_s']:.1f} |", "",
        f"Stage {len(STAGES)} ({STAGES[-1]}: plots, this file) is timed on the console only: it runs while this "
        "file is written.", ""]
    L += ["## 1. Checkpoints", "", *md_table(["label", "beta", "config", "weights hash", "file"],
                                           [[c["label"], fmt(c["beta"], 4), c["config"],
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
    bm = _block_modes_used(report)
    if bm:
        modes = (f"P-frames with block modes ({bm}x{bm}): per block the encoder keeps the decoded residual, the "
                 "prediction alone or the reference's block, whichever costs least in SSE + 2 beta x bits; the "
                 "stream carries the map.")
    elif not _coded_p_frames(report):
        modes = "I-frames only: no P-frame was coded, so no block modes."
    else:
        modes = "P-frames without block modes (`--block-modes 0`)."
    L += ["## 5. Encode and decode on the onnxruntime int8 runtime", "", modes, "",
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
          "Float and int8 (aimet simulation) codecs through the real encoder and decoder, hash-verified"
          + (f", both with the package encode's block modes ({bm}x{bm}). " if bm else ". ")
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
          "```", big["table6_text"], "```", "", *_demote(_demote(complexity_md(big))),
          *_demote(_demote(buffer_md(big)))]
    L += ["## Plots", "", *([] if report.get("baselines") else ["![RD](rd.png)", ""]),
          "![PSNR per frame](per_frame_psnr.png)", "",
          "![bits per frame](per_frame_bits.png)", "", "![latency](profile/latency_breakdown.png)", ""]
    L += ["## Artifacts", "",
          "- `package/`: int8 ONNX package (manifest.json, graphs/*.onnx, encodings/, checkpoint.pt)",
          "- `compiled/`: QNN HTP context binaries (*_ctx.onnx + *_qnn.bin, manifest.json)",
          "- `ptq/<model>/`: aimet quantized checkpoints and encodings",
          "- `streams/`: the .mnvc stream coded on onnxruntime; `decoded/`: its decodes (.y4m)",
          "- `check_int8/`: int8 vs float report (JSON, Markdown, RD JSONs, plots)",
          "- `profile/`: profile.json / profile.md / charts",
          *(["- `baselines/`: x264 / x265 sweeps of the same frames (RD JSONs, .mp4 files, plots)"]
            if report.get("baselines") else []),
          "- `frames/`: source | decoded PNGs of the first I-frame and the last P-frame of the intra period",
          "- `rd.png`, `per_frame_psnr.png`, `per_frame_bits.png`, `report.json`", ""]
    return "\n".join(L) + "\n"


def _frames_md(report: dict[str, Any], out: Path) -> list[str]:
    rows = report.get("frames_png") or []
    if not rows:
        return []
    L = ["## Source and decode side by side", "",
         f"Left: the source frame; right: the same frame {rows[0]['right']}. Both converted to RGB "
         f"({rows[0]['matrix'].upper()}, the conversion of PSNR-RGB), "
         + ("1:1 pixels." if rows[0]["scale"] == 1 else "each pixel shown as {0}x{0}.".format(rows[0]["scale"])), ""]
    for r in rows:
        what = ("first I-frame" if r["type"] == "I" else "last P-frame of the intra period"
                if r.get("period_complete", True) else "last P-frame coded: the frames coded end the intra period "
                "early")  # --frames, or a clip that short ("--frames" was named when it was not given: audit)
        L += [f"Frame {r['index']} ({what}): {r['bits']} bits, PSNR-YUV {r['psnr_yuv']:.2f} dB, PSNR-RGB "
              f"{r['psnr_rgb']:.2f} dB, MS-SSIM-RGB {r['ms_ssim_rgb']:.4f}", "",
              f"![frame {r['index']}: source | decoded]({_rel(out, r['file'])})", ""]
    return L


def _baselines_md(report: dict[str, Any]) -> list[str]:
    base = report.get("baselines") or {}
    if not base:
        return []
    rows = [[f"{b['codec']} {b['preset']}", p["label"], p["bpp"], p["psnr_yuv"], p["psnr_rgb"], p["ms_ssim_rgb"]]
            for b in base.values() for p in b["points"]]
    ours = [["ours: " + c["codec"], p["label"], p["bpp"], p["psnr_yuv"], p["psnr_rgb"], p["ms_ssim_rgb"]]
            for c in rd_curves(report)[:3] for p in c["points"]]
    one = next(iter(base.values()))
    cmd = " ".join(Path(a).name if os.path.isabs(a) else a for a in one["points"][0]["command"])
    version = one["ffmpeg_version"].split(" Copyright")[0]
    return ["## RD against x264 and x265 (same frames, same metrics)", "", "![RD](rd.png)", "",
            *md_table(["codec", "point", "bpp", "PSNR-YUV", "PSNR-RGB", "MS-SSIM-RGB"], ours + rows, 4), "",
            f"Baselines: {version}, B-frames off (MobileNVC appendix A.1), e.g. `{cmd}`; "
            "bpp from the real .mp4 size. Files: `baselines/`.", ""]


def _npu_md(report: dict[str, Any]) -> list[str]:
    npu = report.get("npu_estimate")
    if not npu:
        return []
    d = npu["devices"][report["options"]["npu_device"]]["frames"]
    return ["## ESTIMATED NPU time of the package (not measured)", "",
            f"A roofline-style model fitted on published ai-hub-models measurements; {npu['label']}. "
            "Host steps (entropy coding, integer hyper-synthesis, warp) are not estimated: the ones measured on "
            "this machine are listed separately below.", "",
            *md_table(["frame", "NPU ms (ESTIMATE)", "frames/s it allows (ESTIMATE)", "meets target fps"],
                      [[ft, f["ms"], f["frames_per_s"], f["meets_target"]] for ft, f in d.items()], 3), "",
            "```", report["npu_estimate_text"], "```", ""]
