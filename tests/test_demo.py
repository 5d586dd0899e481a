"""`mobilecodec demo` end to end at a small budget (3 frames, 1 calibration step, two float/int8
pairs so that the int8 check reaches a verdict: PASS/FAIL, or INCONCLUSIVE for curves too flat to
judge), run as a real subprocess with HOME, the caches, TMPDIR and the working directory in a
scratch folder: the report's structure, its numbers against the files it points to (stream parsed
by hand, PSNR recomputed with numpy from the decoded .y4m files, the CPU and the QNN HTP decodes,
the side-by-side PNGs against an independent YUV->RGB conversion, the x264/x265 files), the
ESTIMATED NPU time, and that nothing is written outside the report folder and the cache."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FRAMES = 3
W, H = 176, 144
TABLE6_ROWS = ("I-frame AE", "Motion pred.", "Motion AE", "Residual AE", "Pframe total")
DTYPE_BYTES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "float16": 2, "float32": 4}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, carphone):
    """Run the demo once; returns (report folder, report.json, scratch root, stderr)."""
    root = tmp_path_factory.mktemp("demo")
    dirs = {k: root / k for k in ("home", "xdg", "cache", "tmpdir", "cwd", "out")}
    for d in dirs.values():
        d.mkdir()
    # seed the cache with the session's converted clip (the demo would convert it into the cache)
    (dirs["cache"] / "samples").mkdir()
    shutil.copyfile(carphone, dirs["cache"] / "samples" / "carphone.y4m")
    env = {**os.environ, "HOME": str(dirs["home"]), "XDG_CACHE_HOME": str(dirs["xdg"]),
           "MOBILECODEC_CACHE": str(dirs["cache"]), "TMPDIR": str(dirs["tmpdir"])}
    env.pop("MPLCONFIGDIR", None)
    out = dirs["out"] / "REPORT"
    cmd = [sys.executable, "-m", "mobilecodec", "demo", "-o", str(out), "--frames", str(FRAMES),
           "--intra-period", str(FRAMES), "--pairs", "2", "--ptq-steps", "1", "--ptq-eval-gops", "0",
           "--sensitivity-frames", "0", "--profile-runs", "1", "--json", str(dirs["cwd"] / "demo.json")]
    proc = subprocess.run(cmd, cwd=dirs["cwd"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return out, report, root, proc


def test_progress_lines_and_summary(demo):
    _, report, _, proc = demo
    for k in range(1, 10):
        assert f"[{k}/9] " in proc.stderr
    assert "export ONNX package" in proc.stderr and "compile for the QNN HTP" in proc.stderr
    # stderr is a pipe here, as in a log: progress comes as whole lines (none for stages under 30 s),
    # never as a bar redrawn with carriage returns
    assert "\r" not in proc.stderr
    assert "PSNR-YUV" in proc.stdout and "report.md" in proc.stdout


def test_writes_only_report_and_cache(demo):
    out, _, root, _ = demo
    outside = {f for f in _files(root)
               if not f.startswith(("out/REPORT/", "cache/")) and f != "cwd/demo.json"}
    assert outside == set()
    assert sorted(p.name for p in (root / "out").iterdir()) == ["REPORT"]  # no temp or .old folder left
    assert not (out / ".work").exists()
    # the --json copy is the report itself
    assert json.loads((root / "cwd" / "demo.json").read_text())["runtime"] == \
        json.loads((out / "report.json").read_text())["runtime"]


def test_listed_files_exist_and_paths_point_into_the_report(demo):
    out, report, _, _ = demo
    assert set(report["files"]) == _files(out)
    for name in ("report.md", "report.json", "rd.png", "per_frame_psnr.png", "per_frame_bits.png",
                 "profile/latency_breakdown.png", "package/manifest.json", "compiled/manifest.json",
                 "frames/frame000_I.png", f"frames/frame{FRAMES - 1:03d}_P.png", "baselines/x264_medium.json",
                 "baselines/x265_medium.json"):
        assert name in report["files"], name
    for f in report["plots"].values():
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for p in list(out.rglob("*.json")) + list(out.rglob("*.md")):
        assert ".part" not in p.read_text(), p  # no path into the temporary folder survives
    cman = json.loads((out / "compiled" / "manifest.json").read_text())
    # the package named relative to the compile folder (the report moves as one), and where it was
    assert Path(cman["package"]) == out / "package" and cman["package_relative"] == "../package"
    assert cman["soc"]["soc_model"] == 43 and cman["soc"]["htp_arch"] == 73
    man = json.loads((out / "package" / "manifest.json").read_text())
    assert man["precision"] == "int8-qdq" and man["padded_size"] == [192, 192] and man["original_size"] == [H, W]
    assert set(cman["graphs"]) == set(man["graphs"])
    assert (out / "ptq" / report["checkpoints"][0]["label"] / "quantized.pt").is_file()
    # PTQ calibrates on a training clip, never on the held-out demo clip
    assert report["ptq_calibration_clip"]["name"] == "bikes"
    for q in report["ptq"]:
        assert q["clips"] == [report["ptq_calibration_clip"]["path"]]
        assert json.loads((Path(q["folder"]) / "ptq.json").read_text())["clips"] == q["clips"]


def _parse_stream(data: bytes) -> tuple[dict, list[tuple[int, int]]]:
    """The .mnvc container read by hand (docstring of mobilecodec.bitstream.format): header fields
    and (frame type, record bytes) per frame."""
    assert data[:4] == b"MNVC"
    (id_len,) = struct.unpack_from("<H", data, 6)
    pos = 8 + id_len + 16
    w, h, fn, fd, frames, intra, _flags = struct.unpack_from("<IIIIIHI", data, pos)
    pos += 26 + 4  # fixed fields, CRC
    header = {"bytes": pos, "width": w, "height": h, "frames": frames, "intra": intra}
    records = []
    while pos < len(data):
        value = n = 0
        while True:  # record head: LEB128 of 2 * payload length + frame type
            byte = data[pos + n]
            value |= (byte & 0x7F) << (7 * n)
            n += 1
            if not byte & 0x80:
                break
        ftype, length = value & 1, value >> 1
        size = n + length + 4 + 2  # head, payload, frame hash, CRC-16
        records.append((ftype, size))
        pos += size
    assert pos == len(data)
    return header, records


def test_stream_numbers(demo):
    out, report, _, _ = demo
    rt = report["runtime"]
    stream = out / rt["stream"].split(str(out) + "/")[-1]
    assert stream.parent == out / "streams"
    data = stream.read_bytes()
    header, records = _parse_stream(data)
    assert (header["width"], header["height"], header["frames"], header["intra"]) == (W, H, FRAMES, FRAMES)
    assert [t for t, _ in records] == [0] + [1] * (FRAMES - 1)  # I then P
    point = rt["point"]
    assert point["file_bytes"] == rt["encode"]["file_bytes"] == len(data)
    assert point["bits"] == 8 * len(data)
    assert point["bpp"] == pytest.approx(8 * len(data) / (FRAMES * W * H), rel=1e-12)
    assert rt["encode"]["bpp"] == pytest.approx(8 * len(data) / (FRAMES * W * H), rel=1e-12)
    # per-frame bits are the frame records: they sum to the file minus the header
    assert [f["bits"] for f in point["per_frame"]] == [8 * s for _, s in records]
    assert sum(f["bits"] for f in point["per_frame"]) == 8 * (len(data) - header["bytes"])
    assert rt["header_bytes"] == header["bytes"]
    assert rt["decode"]["hash_matches"] == rt["decode"]["frames"] == FRAMES


def _y4m_frames(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frames of an 8-bit 4:2:0 .y4m, read with numpy only."""
    data = path.read_bytes()
    head_end = data.index(b"\n")
    fields = data[:head_end].split()
    w = int(next(f[1:] for f in fields if f.startswith(b"W")))
    h = int(next(f[1:] for f in fields if f.startswith(b"H")))
    pos, frames = head_end + 1, []
    while pos < len(data):
        pos = data.index(b"\n", pos) + 1  # FRAME line
        planes = []
        for pw, ph in ((w, h), (w // 2, h // 2), (w // 2, h // 2)):
            planes.append(np.frombuffer(data, np.uint8, pw * ph, pos).reshape(ph, pw))
            pos += pw * ph
        frames.append(tuple(planes))
    return frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_decoded_psnr_matches_report(demo, carphone):
    out, report, _, _ = demo
    rt = report["runtime"]
    src = _y4m_frames(Path(carphone))[:FRAMES]
    dec = _y4m_frames(out / "decoded" / Path(rt["decoded"]).name)
    assert len(dec) == FRAMES
    for f, s, d in zip(rt["point"]["per_frame"], src, dec):
        py, pu, pv = (_psnr(a, b) for a, b in zip(s, d))
        assert f["psnr_y"] == pytest.approx(py, abs=1e-6)
        assert (f["psnr_u"], f["psnr_v"]) == (pytest.approx(pu, abs=1e-6), pytest.approx(pv, abs=1e-6))
        assert f["psnr_yuv"] == pytest.approx((6 * py + pu + pv) / 8, abs=1e-6)  # 6:1:1 of plane PSNRs
    assert rt["point"]["psnr_y"] == pytest.approx(np.mean([f["psnr_y"] for f in rt["point"]["per_frame"]]))
    # the QNN HTP decode ran (a failure there fails the demo) and its numbers are its files'
    q = rt["qnn_decode"]
    assert q["frames"] == FRAMES and 0 <= q["hash_matches"] <= FRAMES
    qdec = _y4m_frames(out / "decoded" / Path(q["decoded"]).name)
    assert len(qdec) == FRAMES
    # the HTP decode is the CPU decode up to int8 levels here and there (it was held to nothing: a
    # garbage decode passed; tests audit): every plane of every frame close to the CPU's, as reported
    # (measured: 60.9 dB at worst, PSNR-YUV within 0.002 dB of the CPU decode's)
    planes = [min(_psnr(a, b) for a, b in zip(x, y)) for x, y in zip(dec, qdec)]
    assert min(planes) > 40 and q["max_psnr_diff_vs_cpu_db"] < 0.1
    finite = [p for p in planes if not math.isinf(p)]
    assert q["min_plane_psnr_vs_cpu_db"] == (pytest.approx(min(finite), abs=1e-6) if finite else None)
    same = sum(all(np.array_equal(a, b) for a, b in zip(x, y)) for x, y in zip(dec, qdec))
    assert q["frames_identical_to_cpu"] == same
    for f, s, d in zip(q["per_frame_psnr_yuv"], src, qdec):
        py, pu, pv = (_psnr(a, b) for a, b in zip(s, d))
        assert f == pytest.approx((6 * py + pu + pv) / 8, abs=1e-6)


def _check_buffer(buf: dict) -> None:
    for e in buf["entries"]:
        c, h, w = e["shape"]
        assert e["bytes"] == c * h * w * DTYPE_BYTES[e["dtype"]], e
    assert buf["bytes_per_frame"] == sum(e["bytes"] for e in buf["entries"])
    assert buf["bandwidth_mb_s"] == pytest.approx(2 * buf["bytes_per_frame"] * buf["fps"] / 1e6)


def test_profile_tables(demo):
    out, report, _, _ = demo
    md = (out / "report.md").read_text()
    prof, big = report["profile"], report["profile_big"]
    for rep in (prof, big):
        for side in ("Sender", "Receiver"):
            assert tuple(rep["complexity"]["table6"][side]) == TABLE6_ROWS
            for row in TABLE6_ROWS:
                assert f"| {side} | {row} |" in md
        _check_buffer(rep["buffer"])
    # the package buffer at 192x192: the decoded frame as 6 x 96 x 96 uint8 (Y packed 2x2, U, V)
    frame = next(e for e in prof["buffer"]["entries"] if e["name"] == "frame")
    assert frame["shape"] == [6, 96, 96] and frame["bytes"] == 6 * 96 * 96
    assert big["source"] == {"config": "mobilenvc", "size": [1080, 1920]}
    assert "largest deviation from Table 6" in big["table6_text"] and big["table6_text"] in md
    lat = prof["latency"]["frames"]
    assert set(lat) >= {"encode", "decode"} and set(lat["decode"]) == {"I", "P"}


def test_check_and_report_text(demo):
    out, report, _, proc = demo
    md = (out / "report.md").read_text()
    chk = report["check_int8"]
    res = chk["results"][0]
    # two pairs: the verdict is PASS or FAIL against the demo's 5 % limit where both curves span
    # >= 1 dB and share >= half of each one's quality range, INCONCLUSIVE otherwise (the shipped
    # checkpoints are nearly flat); the rule is checked here by hand on the reported points
    assert len(chk["pairs"]) == 2
    judgeable = True
    for m in ("psnr_yuv", "psnr_rgb"):
        f = [p[m] for p in res["float"]["points"]]
        q = [p[m] for p in res["int8"]["points"]]
        fs, qs = max(f) - min(f), max(q) - min(q)
        shared = min(max(f), max(q)) - max(min(f), min(q))
        judgeable &= fs >= 1.0 and qs >= 1.0 and shared >= 0.5 * max(fs, qs)
    if judgeable:
        assert set(chk["bd_rate"]) == {"psnr_yuv", "psnr_rgb"}
        loss = chk["bd_rate_loss"]
        assert loss == pytest.approx(max(chk["bd_rate"].values())) and chk["max_bdrate"] == 5.0
        assert chk["passed"] is (loss <= 5.0)
        assert chk["verdict"].startswith("PASS: " if chk["passed"] else "FAIL: ") and f"{loss:.3f}%" in chk["verdict"]
    else:
        assert chk["passed"] is None and chk["bd_rate"] == {} and chk["verdict"].startswith("INCONCLUSIVE: ")
    assert chk["verdict"] in md and chk["verdict"] in proc.stdout
    for j in range(2):
        f, q = res["float"]["points"][j], res["int8"]["points"][j]
        assert len(f["per_frame"]) == len(q["per_frame"]) == FRAMES
        d = res["comparison"]["point_deltas"][j]
        assert d["d_psnr_yuv"] == pytest.approx(q["psnr_yuv"] - f["psnr_yuv"])
        assert d["d_bpp_pct"] == pytest.approx(100 * (q["bpp"] / f["bpp"] - 1))
    t = report["timings"]
    assert set(t["stages_s"]) >= {"int8 PTQ (aimet)", "export ONNX package (int8 QDQ)", "compile for the QNN HTP",
                                  "encode + decode on onnxruntime", "int8 vs float check", "profile"}
    assert t["total_s"] >= sum(t["stages_s"].values())
    for s in t["stages_s"]:
        assert f"| {s} |" in md
    # the one stage without a figure in the table is the one the note under it names, by its row number
    untimed = re.findall(r"^\| (\d+) \| ([^|]+) \| - \|$", md, re.M)
    assert len(untimed) == 1
    number, name = untimed[0]
    assert f"Stage {number} ({name.strip()}: plots, this file) is timed on the console only" in md


def _rgb601(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """8-bit limited-range BT.601 YUV420 -> RGB uint8, chroma repeated 2x2 (numpy only, written
    from the BT.601 equations: R = Y' + 1.402 Cr, G = Y' - 0.344136 Cb - 0.714136 Cr, B = Y' + 1.772 Cb)."""
    yy = (y.astype(np.float64) - 16) * 255 / 219
    cb = (np.kron(u.astype(np.float64), np.ones((2, 2))) - 128) * 255 / 224
    cr = (np.kron(v.astype(np.float64), np.ones((2, 2))) - 128) * 255 / 224
    rgb = np.stack([yy + 1.402 * cr, yy - 0.344136 * cb - 0.714136 * cr, yy + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def test_side_by_side_pngs(demo, carphone):
    from PIL import Image

    out, report, _, _ = demo
    md = (out / "report.md").read_text()
    src = _y4m_frames(Path(carphone))[:FRAMES]
    dec = _y4m_frames(out / "decoded" / Path(report["runtime"]["decoded"]).name)
    shown = report["frames_png"]
    # the first I-frame and the last P-frame of the intra period (3 frames, intra period 3: frame 2)
    assert [(f["index"], f["type"]) for f in shown] == [(0, "I"), (FRAMES - 1, "P")]
    for f in shown:
        rel = f"frames/frame{f['index']:03d}_{f['type']}.png"
        img = Image.open(out / rel)
        s = f["scale"]
        assert s == 2  # 176 pixels wide: zoomed 2x by pixel repetition (up to 704 pixels)
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (2 * W * s, H * s)
        zoomed = np.asarray(img)
        px = zoomed[::s, ::s]
        assert np.array_equal(zoomed, px.repeat(s, axis=0).repeat(s, axis=1))
        left, right = px[:, :W].astype(int), px[:, W:].astype(int)
        # BT.601 constants rounded to 6 digits above: allow one code value of rounding difference
        assert np.abs(left - _rgb601(*src[f["index"]])).max() <= 1
        assert np.abs(right - _rgb601(*dec[f["index"]])).max() <= 1
        assert not np.array_equal(left, right)  # a lossy decode, not the source twice
        assert f"]({rel})" in md
        assert f["bits"] == report["runtime"]["point"]["per_frame"][f["index"]]["bits"]
    assert "Left: the source frame; right: the same frame decoded" in md
    assert f"Frame {FRAMES - 1} (last P-frame of the intra period)" in md  # the period is whole here


def test_rd_plot_holds_x264_and_x265(demo):
    out, report, _, _ = demo
    md = (out / "report.md").read_text()
    assert set(report["baselines"]) == {"x264", "x265"}
    for codec, b in report["baselines"].items():
        rd = json.loads((out / "baselines" / f"{codec}_medium.json").read_text())
        assert rd["frames"] == FRAMES and [p["crf"] for p in rd["points"]] == [33, 39, 45, 51]
        for p, q in zip(b["points"], rd["points"]):
            size = (out / "baselines" / p["file"]).stat().st_size  # the real .mp4
            assert p["bpp"] == q["bpp"] == pytest.approx(8 * size / (FRAMES * W * H), rel=1e-12)
            assert f"| {codec} medium | {p['label']} | {p['bpp']:.4f} |" in md
    assert "## RD against x264 and x265" in md and "![RD](rd.png)" in md
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what rd.png draws (write_report plots rd_curves(report)): ours, then both baselines' points (the
    # PNG's header alone could not tell a plot without them; demo audit)
    from mobilecodec.demo_report import rd_curves

    curves = rd_curves(report)
    assert [c["codec"] for c in curves[3:]] == ["x264 medium", "x265 medium"]
    assert [c["points"] for c in curves[3:]] == [report["baselines"][k]["points"] for k in ("x264", "x265")]
    # bdrate on the report itself names the RD files it holds (it said "missing key(s) codec, ...")
    from cli_run import assert_clean_error, cli_here

    assert_clean_error(cli_here("bdrate", out / "baselines" / "x264_medium.json", out / "report.json"),
                       "a demo report, not an RD result; give its RD files: baselines/x264_medium.json, "
                       "baselines/x265_medium.json, check_int8/carphone_float.json, check_int8/carphone_int8.json")


def test_npu_estimate_in_report(demo):
    out, report, _, proc = demo
    md = (out / "report.md").read_text()
    npu = report["npu_estimate"]
    assert list(npu["devices"]) == ["8gen2"]
    frames = npu["devices"]["8gen2"]["frames"]
    assert set(frames) == {"encode I", "encode P", "decode I", "decode P"}
    label = npu["label"]
    assert label.startswith("ESTIMATE (leave-one-out error") and label in md and label in proc.stdout
    assert "## ESTIMATED NPU time of the package (not measured)" in md
    for ft, f in frames.items():
        assert f["ms"] > 0 and f["frames_per_s"] == pytest.approx(1000.0 / f["ms"])
        assert f"{ft}: {f['ms']:.2f} ms -> {f['frames_per_s']:.0f} frames/s (estimate)" in proc.stdout
        assert f"| {ft} | {f['ms']:.3f} | {f['frames_per_s']:.3f} |" in md
    # the per-frame total is the sum of the graphs that frame type runs
    g = npu["devices"]["8gen2"]["graphs"]
    for f in frames.values():
        assert f["ms"] == pytest.approx(sum(g[n]["ms"] for n in f["graphs"]))
    assert "host steps MEASURED on this machine" in md


@pytest.mark.parametrize("args, needle", [
    (["--clip", "no_such_clip.y4m"], "no such clip"),
    (["--calib-clip", "no_such_clip.y4m"], "no such calibration clip"),
    (["--clip", "tests"], "--clip tests is a folder, not a video file"),  # said "no such clip" (demo audit)
    (["--calib-clip", "tests"], "--calib-clip tests is a folder, not a video file"),
    (["--calib-clip", "carphone"], "is the held-out evaluation clip"),
    (["--clip", "bikes", "--calib-clip", "carphone"], "is the held-out evaluation clip"),
    (["--clip", "bikes", "--calib-clip", "bikes"], "is the clip the demo evaluates"),
    (["--checkpoint", "no_such_checkpoint.pt"], "no such checkpoint"),
    (["--ptq-crop", "100x100"], "multiple"),
])
def test_bad_input_exits_2_and_writes_nothing(args, needle, tmp_path, capsys):
    from mobilecodec.cli import COMMANDS, main

    assert COMMANDS[0] == "demo"
    out = tmp_path / "R"
    assert main(["demo", "-o", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("mobilecodec demo: error:")
    assert list(tmp_path.iterdir()) == []


def test_a_clip_that_cannot_be_read_fails_before_any_stage(carphone, tmp_path):
    """A clip cut short inside its first frame failed only after PTQ, export and compile (minutes at
    the defaults; encode, eval and baseline refuse it at once): with progress on, no stage line may
    precede the one-line error."""
    from cli_run import assert_clean_error, cli_here

    data = carphone.read_bytes()
    cut = tmp_path / "cut.y4m"
    cut.write_bytes(data[:data.index(b"FRAME") + 5000])
    out = tmp_path / "R"
    assert_clean_error(cli_here("demo", "-o", str(out), "--clip", str(cut), "--frames", "2", "--ptq-steps", "1",
                                "--ptq-eval-gops", "0", "--sensitivity-frames", "0", "--profile-runs", "1",
                                "--no-baselines", "--no-qnn-decode", "--pairs", "1"), "truncated")
    assert not out.exists()


def test_a_clip_whose_rate_cannot_be_recorded_is_refused_first_in_one_line(carphone, tmp_path):
    """A 10-frame clip whose header claims 5000 fps: the rate error, naming the rewrite (the demo has no
    --fps), is all stderr holds; it came after a warning about the clip's length, which read its frames
    without the rate."""
    from cli_run import assert_clean_error, cli_here
    from videos_for_tests import y4m_claiming

    from mobilecodec.io import read_frames

    fast = y4m_claiming(tmp_path / "fast.y4m", read_frames(carphone, 10), "5000:1")
    out = tmp_path / "R"
    assert_clean_error(cli_here("demo", "-o", str(out), "--clip", str(fast), "--no-progress"), "5000/1",
                       "ffmpeg -r RATE -i")  # one line: no length warning before it
    assert not out.exists()


def test_calibration_defaults_to_a_training_clip_other_than_the_demo_clip():
    from mobilecodec.demo import default_calibration_clip
    from mobilecodec.train.data import DEFAULT_TRAIN_DATA

    assert default_calibration_clip("carphone") == "bikes"
    assert default_calibration_clip("bikes") == "bigbuckbunny"
    assert {default_calibration_clip(c) for c in ("carphone", "bikes", "my_clip.y4m")} <= set(DEFAULT_TRAIN_DATA)
    # bikes given by path: it calibrated on bikes, then refused "--calib-clip bikes is the clip the demo
    # evaluates", naming an option nobody gave
    from mobilecodec.io import sample_clip, sample_source

    assert default_calibration_clip(str(sample_clip("bikes"))) == "bigbuckbunny"
    assert default_calibration_clip(str(sample_source("bikes"))) == "bigbuckbunny"
    assert default_calibration_clip(str(sample_clip("carphone"))) == "bikes"


def test_a_skipped_stage_is_reported_as_skipped(carphone, tmp_path):
    """`--no-baselines`: stage 6 is said and tabled as skipped, no baselines/ folder is written and the
    report lists none (it listed a baselines/ folder and showed stage 6 at 0.0 s). The report folder's
    name has a non-ASCII letter and a quote: the paths in its JSON files pointed into the deleted
    temporary folder (JSON spells them escaped, the move rewrote them as text). A 2-frame clip with
    --frames 3 is coded whole and said so (it was silent). Its checkpoint records training on the
    held-out clip, whose frames the clip is: the demo said nothing of it (eval and check-int8 did)."""
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from mobilecodec.io import read_frames, write_video

    clip = tmp_path / "two.y4m"
    write_video(clip, read_frames(carphone, 2), 30000 / 1001)
    model, obj = load_checkpoint("tiny_b0.0032")
    held = save_checkpoint(tmp_path / "held.pt", model, beta=obj["beta"], meta={"trained_on_held_out": True})
    out = tmp_path / 'R é"q'
    proc = subprocess.run([sys.executable, "-m", "mobilecodec", "demo", "-o", str(out), "--clip", str(clip),
                           "--checkpoint", str(held), "--pairs", "1",
                           "--frames", "3", "--intra-period", "2", "--no-baselines", "--block-modes", "0",
                           "--no-qnn-decode", "--ptq-steps", "1", "--ptq-eval-gops", "0", "--sensitivity-frames", "0",
                           "--profile-runs", "1", "--no-ops"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "two.y4m has 2 frames, fewer than --frames 3: coding its 2" in proc.stderr
    assert "[6/9] x264/x265 baselines: skipped (--no-baselines)" in proc.stderr
    for p in list(out.rglob("*.json")) + list(out.rglob("*.md")):
        assert ".part" not in p.read_text(), p  # no path into the temporary folder survives
    report = json.loads((out / "report.json").read_text())
    assert Path(report["runtime"]["stream"]).is_file() and Path(report["runtime"]["stream"]).is_relative_to(out)
    md = (out / "report.md").read_text()
    assert "| 6 | x264/x265 baselines | skipped |" in md and "`baselines/`" not in md
    assert "1 RD point(s) per curve" in md and "demo: --pairs 2, with a shipped --checkpoint" in md  # a curve
    assert not (out / "baselines").exists()
    assert json.loads((out / "report.json").read_text())["timings"]["skipped"] == ["x264/x265 baselines"]
    note = f"held was calibrated or trained on {clip}: its figures there are not held-out ones"
    assert f"note: {note}" in proc.stderr and f"Note: {note}." in md
    assert report["check_int8"]["fitted_on_input"] == [{"int8": "held", "input": str(clip)}]


def test_a_checkpoint_without_beta_is_refused_before_ptq(tmp_path):
    """With block modes on (the default), a checkpoint that records no beta ran PTQ, export and compile
    (minutes) and failed at the int8 encode naming the deleted temporary package; it fails at its
    loading now, naming the checkpoint. Not a shipped checkpoint: --pairs 2 (the default) was dropped
    without a word, it is said now."""
    from cli_run import cli_here
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint

    model, _ = load_checkpoint("tiny_b0.0032")
    ckpt = save_checkpoint(tmp_path / "nobeta.pt", model)
    p = cli_here("demo", "--checkpoint", ckpt, "--frames", 2, "-o", tmp_path / "R")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and "[2/9]" not in p.stderr, p.stderr  # no PTQ began
    assert "not a shipped one" in lines[0] and "--pairs 1" in lines[0]
    assert f"checkpoint {ckpt} does not record the beta" in lines[-1] and "block modes need it" in lines[-1]
    assert lines[-1].endswith("(code without them: --block-modes 0)")  # the way out (walk-through audit)
    assert not (tmp_path / "R").exists()


def test_baselines_code_the_demos_intra_periods(carphone, tmp_path):
    """The demo's x264/x265 points kept one GOP when the demo coded several periods (--intra-period 2
    of 3 frames: ours IPI, x264's IPP; demo audit). They code its periods now; one period over all
    the frames stays the appendix command."""
    from mobilecodec.demo import DemoOptions, _baselines

    opts = DemoOptions(intra_period=2, baselines=("x264",), baseline_crfs=(45, 51), progress=False)
    res = _baselines(tmp_path / "a", carphone, 3, opts)
    assert [p["frame_types"] for p in res["x264"]["points"]] == ["IPI", "IPI"]
    res = _baselines(tmp_path / "b", carphone, 2, opts)
    assert [p["frame_types"] for p in res["x264"]["points"]] == ["IP", "IP"] and res["x264"]["json"].endswith(
        "x264_medium.json")


def test_a_demo_of_i_frames_alone_does_not_describe_block_modes(demo):
    """--intra-period 1 codes no P-frame, yet the report described P-frame block modes and labelled
    every curve "block modes 8x8" (demo audit). The same report with its frames all I-frames: neither."""
    import copy

    from mobilecodec.demo_report import markdown, rd_curves

    out, report = demo[0], demo[1]
    assert all(c["codec"].endswith("block modes 8x8)") for c in rd_curves(report)[:3])
    assert "P-frames with block modes (8x8)" in markdown(report, out)
    only_i = copy.deepcopy(report)
    for f in only_i["runtime"]["point"]["per_frame"]:
        f["type"] = "I"
    assert not any("block modes" in c["codec"] for c in rd_curves(only_i))
    md = markdown(only_i, out)
    assert "I-frames only: no P-frame was coded, so no block modes." in md and "P-frames with block modes" not in md


def test_a_quantized_checkpoint_is_refused_with_the_demos_own_advice(demo, tmp_path):
    """A ptq folder's quantized.pt as --checkpoint: a warning about --pairs, then advice to use --int8
    or --package, options the demo has not (demo audit). One line, the demo's advice."""
    from cli_run import assert_clean_error, cli_here

    out, report, _, _ = demo
    q = out / "ptq" / report["checkpoints"][0]["label"] / "quantized.pt"
    p = cli_here("demo", "--checkpoint", q, "-o", tmp_path / "R", "--no-progress")
    assert_clean_error(p, "is not a mobilecodec checkpoint but a mobilecodec-quantized file (the demo takes a float "
                          "checkpoint and quantizes it itself)")
    assert "--int8" not in p.stderr and not (tmp_path / "R").exists()
