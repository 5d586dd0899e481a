"""`mobilecodec baseline` / `bdrate` on real ffmpeg (x264, x265) and the first 10 frames of carphone.

Expected values are recomputed here independently: the source frames are parsed from the .y4m
by hand, the encoded files are decoded with PyAV directly and PSNR is computed with numpy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mobilecodec.rdresults import drift_summary

from cli_run import assert_clean_error, cli_here

FRAMES = 10
WIDTH, HEIGHT = 176, 144
CRFS = [23, 28, 33, 38]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    p = cli_here(*args)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, carphone):
    """Run both baselines once; also record the temporary folders they leave behind (none)."""
    out = tmp_path_factory.mktemp("baselines")
    scratch = tmp_path_factory.mktemp("scratch")
    old_tempdir = tempfile.tempdir
    tempfile.tempdir = str(scratch)  # the sweep's intermediate .yuv goes here
    runs = {}
    try:
        for codec in ("x264", "x265"):
            runs[codec] = _cli("baseline", "--codec", codec, "--preset", "medium",
                               "--crf", ",".join(map(str, CRFS)), "--frames", str(FRAMES),
                               str(carphone), "-o", str(out), "--no-progress")
    finally:
        tempfile.tempdir = old_tempdir
    return {"out": out, "runs": runs, "scratch_left": sorted(os.listdir(scratch)),
            "source": carphone}


def _results(sweep, codec: str) -> dict:
    return json.loads((sweep["out"] / f"{codec}_medium.json").read_text())


def _source_frames(path: Path, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Parse the first n frames of an 8-bit 4:2:0 .y4m by hand."""
    data = path.read_bytes()
    header_end = data.index(b"\n")
    header = data[:header_end].split()
    assert header[0] == b"YUV4MPEG2"
    w = int(next(t[1:] for t in header if t.startswith(b"W")))
    h = int(next(t[1:] for t in header if t.startswith(b"H")))
    pos, frames, ny, nc = header_end + 1, [], w * h, (w // 2) * (h // 2)
    for _ in range(n):
        nl = data.index(b"\n", pos)
        assert data[pos:nl].startswith(b"FRAME")
        pos = nl + 1
        buf = np.frombuffer(data, np.uint8, ny + 2 * nc, pos)
        frames.append((buf[:ny].reshape(h, w), buf[ny:ny + nc].reshape(h // 2, w // 2),
                       buf[ny + nc:].reshape(h // 2, w // 2)))
        pos += ny + 2 * nc
    return frames


def _decode(path: Path, raw: list | None = None) -> tuple[list, list[str], list[int]]:
    """Decode with PyAV directly: planes, picture types and packet sizes (decode order; `raw` gets
    the packets' bytes)."""
    import av

    planes, types, sizes = [], [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                sizes.append(packet.size)
                if raw is not None:
                    raw.append(bytes(packet))
            for frame in packet.decode():
                arr = frame.to_ndarray(format="yuv420p")
                h, w = frame.height, frame.width
                flat = arr[h:].reshape(-1)
                planes.append((arr[:h], flat[:h * w // 4].reshape(h // 2, w // 2),
                               flat[h * w // 4:].reshape(h // 2, w // 2)))
                types.append(av.video.frame.PictureType(int(frame.pict_type)).name)
    return planes, types, sizes


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_sweep_succeeds_and_cleans_up(sweep, codec):
    code, stdout, stderr = sweep["runs"][codec]
    assert code == 0, stderr
    assert sweep["scratch_left"] == []  # the temporary .yuv folder was removed
    rows = [ln.split() for ln in stdout.splitlines() if ln.split() and ln.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == CRFS
    names = sorted(os.listdir(sweep["out"]))
    for crf in CRFS:
        assert f"{codec}_medium_crf{crf}.mp4" in names
    assert not [n for n in names if n.startswith(".")]  # no temporaries left in OUT


@pytest.mark.parametrize("codec,encoder", [("x264", "libx264"), ("x265", "libx265")])
def test_json_structure_and_command(sweep, codec, encoder):
    res = _results(sweep, codec)
    for key in ("codec", "source", "width", "height", "fps", "frames", "points", "preset", "crf",
                "ffmpeg_version"):
        assert key in res
    assert (res["codec"], res["width"], res["height"], res["frames"]) == (codec, WIDTH, HEIGHT, FRAMES)
    assert res["fps"] == pytest.approx(30000 / 1001)
    assert res["ffmpeg_version"].startswith("ffmpeg version")
    assert [p["crf"] for p in res["points"]] == CRFS
    for p in res["points"]:
        for key in ("label", "bpp", "bits", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb",
                    "ms_ssim_rgb", "per_frame", "command", "packet_bits"):
            assert key in p
        cmd = p["command"]
        assert cmd[cmd.index("-c:v") + 1] == encoder
        assert cmd[cmd.index(f"-{codec}-params") + 1] == "bframes=0"
        assert cmd[cmd.index("-crf") + 1] == str(p["crf"])
        assert cmd[cmd.index("-preset") + 1] == "medium"
        assert cmd[cmd.index("-s:v") + 1] == "176x144"
        assert cmd[cmd.index("-r") + 1] == "30000/1001"
        assert cmd[cmd.index("-f") + 1] == "rawvideo" and "yuv420p" in cmd
        assert "bframes=0" in p["command_line"] and encoder in p["command_line"]
        # the files it names: the published one, not the deleted work folder's (review, session 40)
        assert cmd[-1] == str((sweep["out"] / p["file"]).resolve()) and Path(cmd[-1]).is_file()
        assert cmd[cmd.index("-i") + 1] == "source.yuv" and res["source_yuv"].startswith("source.yuv, ")
        assert len(p["per_frame"]) == FRAMES
        assert [f["index"] for f in p["per_frame"]] == list(range(FRAMES))
        assert 0 < p["ms_ssim_rgb"] <= 1


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_rate_and_quality_fall_with_crf(sweep, codec):
    pts = _results(sweep, codec)["points"]
    for key in ("bpp", "psnr_y", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb"):
        values = [p[key] for p in pts]
        assert all(a > b for a, b in zip(values, values[1:])), (key, values)


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_bpp_is_file_size_and_bits_are_packet_sizes(sweep, codec):
    for p in _results(sweep, codec)["points"]:
        path = sweep["out"] / p["file"]
        file_bits = os.path.getsize(path) * 8
        assert p["bits"] == file_bits
        assert p["bpp"] == pytest.approx(file_bits / (FRAMES * WIDTH * HEIGHT), rel=1e-12)
        raw: list[bytes] = []
        _, _, sizes = _decode(path, raw)
        bits = [f["bits"] for f in p["per_frame"]]
        # the packets less x264's settings string (an SEI in the first packet; x265 puts its own in the
        # .mp4 header): between the string and the string plus its SEI framing (length, NAL and SEI
        # headers, the 16-byte UUID)
        text = raw[0].find(b"x264 - core")
        assert (text >= 0) == (codec == "x264") and not any(b"x265 (build" in r for r in raw)
        settings = raw[0].index(b"\0", text) - text if text >= 0 else 0
        assert settings <= sizes[0] - bits[0] // 8 <= settings + 32 if codec == "x264" else bits[0] == 8 * sizes[0]
        assert bits[1:] == [8 * s for s in sizes[1:]]
        assert p["packet_bits"] == sum(bits) < file_bits  # container overhead is counted


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_per_frame_psnr_matches_independent_decode(sweep, codec):
    src = _source_frames(sweep["source"], FRAMES)
    for p in _results(sweep, codec)["points"]:
        decoded, _, _ = _decode(sweep["out"] / p["file"])
        assert len(decoded) == FRAMES
        for rec, ref, dec in zip(p["per_frame"], src, decoded):
            y, u, v = (_psnr(a, b) for a, b in zip(ref, dec))
            assert rec["psnr_y"] == pytest.approx(y, abs=1e-9)
            assert rec["psnr_u"] == pytest.approx(u, abs=1e-9)
            assert rec["psnr_v"] == pytest.approx(v, abs=1e-9)
            assert rec["psnr_yuv"] == pytest.approx((6 * y + u + v) / 8, abs=1e-9)
        mean_y = np.mean([r["psnr_y"] for r in p["per_frame"]])
        assert p["psnr_y"] == pytest.approx(mean_y, abs=1e-9)


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_stream_has_no_b_frames(sweep, codec):
    for p in _results(sweep, codec)["points"]:
        _, types, _ = _decode(sweep["out"] / p["file"])
        assert types[0] == "I"
        assert set(types) <= {"I", "P"}, types
        assert [f["type"] for f in p["per_frame"]] == types


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_rd_png_is_a_real_png(sweep, codec):
    import matplotlib.image

    path = sweep["out"] / f"{codec}_medium_rd.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 200


def test_plot_helpers_write_pngs(sweep, tmp_path):
    from mobilecodec.plots import per_frame_plot, rd_plot

    both = [_results(sweep, "x264"), _results(sweep, "x265")]
    rd = rd_plot(both, path=tmp_path / "rd.png", metric="psnr_yuv")
    frames = per_frame_plot(both, "bits", tmp_path / "bits.png")
    for path in (rd, frames):
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["bits.png", "rd.png"]  # no temporaries left


def test_per_frame_legend_names_each_point_once(sweep):
    from mobilecodec.plots import _point_label

    x264 = _results(sweep, "x264")
    assert _point_label(x264, x264["points"][0]).startswith("x264 (medium) ")
    ours = {"codec": "tiny", "points": [{"label": "tiny_b0.0032"}]}  # eval's checkpoint points
    assert _point_label(ours, ours["points"][0]) == "tiny_b0.0032"


def _bd_rows(stdout: str) -> dict[str, tuple[float, float]]:
    rows = {}
    for ln in stdout.splitlines():
        parts = ln.split()
        if parts and parts[0] in ("psnr_yuv", "psnr_rgb"):
            rows[parts[0]] = (float(parts[1]), float(parts[2]))
    return rows


def test_bdrate_x265_vs_x264_is_finite(sweep, tmp_path):
    out = sweep["out"]
    code, stdout, stderr = _cli("bdrate", str(out / "x264_medium.json"),
                                str(out / "x265_medium.json"), "--json", str(tmp_path / "bd.json"))
    assert code == 0, stderr
    rows = _bd_rows(stdout)
    assert set(rows) == {"psnr_yuv", "psnr_rgb"}
    assert all(math.isfinite(v) for pair in rows.values() for v in pair)
    saved = json.loads((tmp_path / "bd.json").read_text())
    assert saved["results"][0]["bd_rate_percent"] == pytest.approx(rows["psnr_yuv"][0], abs=0.006)
    # each --method's figure is the bjontegaard package's on the files' (bpp, PSNR-YUV) points (a
    # bdrate that used pchip whatever --method said passed: the figures were only checked finite)
    import bjontegaard

    curves = [sorted((p["bpp"], p["psnr_yuv"]) for p in _results(sweep, c)["points"]) for c in ("x264", "x265")]
    (ra, da), (rt, dt) = (list(zip(*c)) for c in curves)
    got = {}
    for method in ("pchip", "akima", "cubic"):
        code, _, stderr = _cli("bdrate", str(out / "x264_medium.json"), str(out / "x265_medium.json"),
                               "--method", method, "--json", str(tmp_path / f"bd_{method}.json"))
        assert code == 0, stderr
        got[method] = json.loads((tmp_path / f"bd_{method}.json").read_text())["results"][0]["bd_rate_percent"]
        want = bjontegaard.bd_rate(ra, da, rt, dt, method=method, require_matching_points=False, min_overlap=0)
        assert got[method] == pytest.approx(want, rel=1e-6, abs=1e-6), method
    assert len(set(got.values())) == 3, got  # the methods differ on these curves


def test_bdrate_flags_curves_that_barely_overlap(sweep, tmp_path):
    """A test curve that meets the anchor at one end (x265 ultrafast CRF 12-26, 36.7-45.9 dB, against
    x264 medium CRF 23-38, 29.8-37.9 dB, 10 frames; 1.2 dB shared) gave a confident "+66.8 %" averaged
    over 15 % of the anchor's range and 13 % of the test's (bjontegaard warns of it): the figure comes
    with a note and the JSON with each curve's share; curves that overlap well carry none."""
    hi = tmp_path / "x265_hi.json"
    code, _, err = _cli("baseline", "--codec", "x265", "--preset", "ultrafast", "--crf", "12,16,21,26", "--frames",
                        str(FRAMES), str(sweep["source"]), "-o", str(tmp_path / "hi"), "--json", str(hi),
                        "--no-progress")
    assert code == 0, err
    anchor = str(sweep["out"] / "x264_medium.json")
    code, stdout, err = _cli("bdrate", anchor, str(hi), "--metric", "psnr_yuv", "--json", str(tmp_path / "bd.json"))
    assert code == 0, err
    assert "note: BD-rate: the curves share" in stdout and "the figure averages over that alone" in stdout
    row = json.loads((tmp_path / "bd.json").read_text())["results"][0]
    o = row["quality_overlap"]
    assert row["bd_rate_percent"] is not None and o["low"] and 0 < o["shared"] and max(o["of_anchor"], o["of_test"]) < 0.5
    code, stdout, err = _cli("bdrate", anchor, str(sweep["out"] / "x265_medium.json"), "--json", str(tmp_path / "ok.json"))
    assert code == 0 and "note: BD-" not in stdout, stdout
    assert not any(r["notes"] for r in json.loads((tmp_path / "ok.json").read_text())["results"])


def test_bdrate_of_the_coded_frames_only(sweep, tmp_path):
    """`bdrate --payload` compares packet bits without the .mp4 container, which costs x265 more
    than x264 (its parameter sets): on these 10 frames x265 gains against x264, as the README's 120
    frames show (+3.05 % whole files, -5.15 % packets, x264's settings SEI left out)."""
    out = sweep["out"]
    args = ("bdrate", str(out / "x264_medium.json"), str(out / "x265_medium.json"))
    code, stdout, stderr = _cli(*args, "--payload", "--json", str(tmp_path / "p.json"))
    assert code == 0, stderr
    packets, files = _bd_rows(stdout), _bd_rows(_cli(*args)[1])
    extra = {c: sum(p["bits"] - p["packet_bits"] for p in _results(sweep, c)["points"]) for c in ("x264", "x265")}
    assert extra["x265"] > extra["x264"] > 0  # the containers: what --payload leaves out
    assert all(packets[m][0] < files[m][0] - 1 for m in ("psnr_yuv", "psnr_rgb")), (packets, files)
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["rates"] == "payload" and "coded frames only" in stdout
    # an x264 result from before packet bits left its settings SEI out: refused for payload rates
    old = json.loads((out / "x264_medium.json").read_text())
    del old["packet_bits_exclude"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    code, _, stderr = _cli("bdrate", str(tmp_path / "old.json"), str(out / "x265_medium.json"), "--payload")
    assert code == 2 and "counts its settings string" in stderr


def test_bdrate_refuses_rgb_metrics_of_another_matrix(sweep, tmp_path):
    """The same x264 encodes measured with --matrix bt709 against bt601: PSNR-YUV is 0 %, but the
    RGB metrics differ by the conversion alone (+3.2 % PSNR-RGB BD-rate on 120 frames, no warning):
    they are n/a with the reason, in bdrate and in eval's --anchor figures alike."""
    code, _, err = _cli("baseline", "--codec", "x264", "--preset", "medium", "--crf", ",".join(map(str, CRFS)),
                        "--frames", str(FRAMES), str(sweep["source"]), "-o", str(tmp_path / "b709"),
                        "--matrix", "bt709", "--no-progress")
    assert code == 0, err
    b709 = tmp_path / "b709" / "x264_medium.json"
    # --matrix reaches the metrics: per frame, PSNR-RGB is the bt709 conversion's of the decoded file,
    # PSNR-YUV that of the bt601 sweep (a baseline that measured bt601 whatever --matrix said passed)
    from mobilecodec.io.frame import YUVFrame
    from mobilecodec.metrics.color import psnr_rgb

    p601, p709 = _results(sweep, "x264")["points"][0], json.loads(b709.read_text())["points"][0]
    decoded, _, _ = _decode(b709.parent / p709["file"])
    for r601, r709, ref, dec in zip(p601["per_frame"], p709["per_frame"], _source_frames(sweep["source"], FRAMES),
                                    decoded, strict=True):
        assert r709["psnr_yuv"] == pytest.approx(r601["psnr_yuv"], abs=1e-9)
        assert r709["psnr_rgb"] == pytest.approx(psnr_rgb(YUVFrame(*ref), YUVFrame(*dec), "bt709"), abs=1e-9)
        assert abs(r709["psnr_rgb"] - r601["psnr_rgb"]) > 0.01
    code, stdout, err = _cli("bdrate", str(sweep["out"] / "x264_medium.json"), str(b709),
                             "--metric", "psnr_yuv,psnr_rgb,ms_ssim_rgb", "--json", str(tmp_path / "bd.json"))
    assert code == 0, err
    rows = {r["metric"]: r for r in json.loads((tmp_path / "bd.json").read_text())["results"]}
    assert rows["psnr_yuv"]["bd_rate_percent"] == 0.0
    for m in ("psnr_rgb", "ms_ssim_rgb"):
        assert rows[m]["bd_rate_percent"] is None and "bt601, of the test with bt709" in rows[m]["bd_rate_error"]
    from mobilecodec.evaluate import bd_against

    bd = bd_against(_results(sweep, "x264"), json.loads(b709.read_text()))
    assert "psnr_rgb" not in bd["bd_rate"] and "bt709" in bd["metric_errors"]["psnr_rgb"]


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
def test_bdrate_against_itself_is_zero(sweep, method):
    anchor = str(sweep["out"] / "x264_medium.json")
    code, stdout, stderr = _cli("bdrate", anchor, anchor, "--method", method)
    assert code == 0, stderr
    rows = _bd_rows(stdout)
    assert rows == {"psnr_yuv": (0.0, 0.0), "psnr_rgb": (0.0, 0.0)}
    assert "0.0" in stdout and "-0.0" not in stdout


def _bdrate_error(anchor: Path, test: Path, *extra: str) -> str:
    code, stdout, stderr = _cli("bdrate", str(anchor), str(test), *extra)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    return stderr


def test_bdrate_rejects_bad_files(sweep, tmp_path):
    good = sweep["out"] / "x264_medium.json"
    res = json.loads(good.read_text())

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    assert "not valid JSON" in _bdrate_error(good, bad_json)
    bad_json.write_text('{"codec": "x26')  # was "(Unterminated string starting at at line 1, column 11)"
    assert "not valid JSON (Unterminated string starting at: line 1, column 11)" in _bdrate_error(good, bad_json)

    assert "no such file" in _bdrate_error(tmp_path / "missing.json", good)

    # printed fields are one printable line: a preset with a newline added a line to bdrate's report,
    # a codec with an escape sequence reached the terminal, a number was printed as a codec (session 46)
    for key, value in (("preset", "medium\nFAKE LINE"), ("codec", "x264\x1b[31m"), ("codec", 123),
                       ("source", "a\nb")):
        (tmp_path / "text.json").write_text(json.dumps(dict(res, **{key: value})))
        assert f"'{key}' must be one line of printable text, got {value!r}" in _bdrate_error(good, tmp_path / "text.json")
    labelled = json.loads(json.dumps(res))
    labelled["points"][2]["label"] = "crf\r33"
    (tmp_path / "text.json").write_text(json.dumps(labelled))
    assert "points[2]: 'label' must be one line of printable text" in _bdrate_error(good, tmp_path / "text.json")

    no_key = tmp_path / "nokey.json"
    no_key.write_text(json.dumps({k: v for k, v in res.items() if k != "points"}))
    assert "points" in _bdrate_error(good, no_key)

    no_metric = tmp_path / "nometric.json"
    broken = json.loads(json.dumps(res))
    del broken["points"][1]["psnr_rgb"]
    no_metric.write_text(json.dumps(broken))
    assert "psnr_rgb" in _bdrate_error(good, no_metric)

    summary = tmp_path / "eval_summary.json"  # the shape of `eval --json`: RD results inside a report
    summary.write_text(json.dumps({"format": "mobilecodec-eval", "version": 1, "results": [{"result": res}]}))
    assert "OUT/<input>_eval.json" in _bdrate_error(good, summary)

    three = tmp_path / "three.json"
    three.write_text(json.dumps(dict(res, points=res["points"][:3])))
    assert "at least 4" in _bdrate_error(good, three)

    other = tmp_path / "other_clip.json"  # the same points claimed for a 1920x1080 clip
    other.write_text(json.dumps(_reclipped(res, width=1920, height=1080)))
    assert "not the same clip" in _bdrate_error(good, other)
    shorter = tmp_path / "shorter.json"  # a shorter run of the same clip: judged, with a note
    shorter.write_text(json.dumps(_reclipped(res, frames=res["frames"] - 2)))
    code, stdout, stderr = _cli("bdrate", str(good), str(shorter), "--json", str(tmp_path / "bd.json"))
    assert code == 0 and f"has {res['frames']} frames" in stderr, stderr
    saved = json.loads((tmp_path / "bd.json").read_text())  # the JSON says what the text says
    assert saved["notes"] == [stderr.strip().removeprefix("note: ")]
    assert saved["test_curve"] == {"codec": "x264", "preset": "medium", "points": 4, "frames": res["frames"] - 2}

    # fields only --payload or a two-curve result reads: a traceback each ("'>' not supported", "no len()")
    text = json.loads(json.dumps(res))
    text["points"][0]["packet_bpp"] = "abc"
    (tmp_path / "packet.json").write_text(json.dumps(text))
    assert "'packet_bpp' must be finite" in _bdrate_error(good, tmp_path / "packet.json", "--payload")
    for curves in (5, "ab"):  # "ab" said "holds points of 2 RD curves (a; b)"
        (tmp_path / "curves.json").write_text(json.dumps(dict(res, curves=curves)))
        assert "'curves' must be a list" in _bdrate_error(good, tmp_path / "curves.json")
    # found by the metrics audit (session 39): JSON nested too deep for the parser was a traceback; any
    # file with a "results" key was told to give eval's or check-int8's per-input file (bdrate's own
    # --json too); an fps of Infinity passed; a bad point named its codec, which both files share
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    err = _bdrate_error(good, tmp_path / "deep.json")  # the type was named twice ("RecursionError: RecursionError:")
    assert "deep.json: not JSON this tool reads (RecursionError: maximum recursion depth" in err, err
    (tmp_path / "bd_out.json").write_text(json.dumps({"anchor": str(good), "results": []}))
    err = _bdrate_error(good, tmp_path / "bd_out.json")
    assert "missing key(s) codec" in err and "_eval.json" not in err
    (tmp_path / "inf_fps.json").write_text(json.dumps(dict(res, fps=math.inf)))
    assert "'fps' must be a positive number, got inf" in _bdrate_error(good, tmp_path / "inf_fps.json")
    zero = json.loads(json.dumps(res))
    zero["points"][1]["bpp"] = zero["points"][1]["bits"] = 0
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    err = _bdrate_error(good, tmp_path / "zero.json")  # every metric's reason, each named (review)
    assert f"psnr_yuv: test {tmp_path / 'zero.json'}: x264: point" in err and "; psnr_rgb: test " in err
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + good.read_bytes())  # saved by a Windows editor: it
    assert _cli("bdrate", str(good), str(tmp_path / "bom.json"))[0] == 0  # was "not valid JSON" (session 40)


def _reclipped(res: dict, **top: int) -> dict:
    """`res` claimed for another frame size or count, each point's bits and frame list made to agree."""
    out = json.loads(json.dumps(dict(res, **top)))
    for p in out["points"]:
        p["bits"] = p["bpp"] * out["width"] * out["height"] * out["frames"]
        p["per_frame"] = p["per_frame"][:out["frames"]]
    return out


def test_bdrate_refuses_results_that_contradict_themselves(sweep, tmp_path):
    """Found by the metrics audit (session 39): each of these gave a BD-rate, over numbers the file itself
    contradicts or a curve it does not hold."""
    good = sweep["out"] / "x264_medium.json"
    res = json.loads(good.read_text())

    def refused(edit: Any, expected: str) -> None:
        broken = json.loads(json.dumps(res))
        edit(broken)
        (tmp_path / "t.json").write_text(json.dumps(broken))
        assert expected in _bdrate_error(good, tmp_path / "t.json")

    refused(lambda r: r["points"][0].update(bpp=5.0),  # the top-rate point: the curve stays monotonic
            f"'bpp' 5.0 is not its 'bits' over {FRAMES} frames of {WIDTH}x{HEIGHT}")
    refused(lambda r: r["points"][0].update(ms_ssim_rgb=1.5), "'ms_ssim_rgb' must lie in [0, 1], got 1.5")
    refused(lambda r: r["points"][0]["per_frame"][3].update(bits=math.nan),
            "points[0].per_frame[3]: 'bits' must be finite and non-negative, got nan")
    refused(lambda r: r["points"][0].update(per_frame=r["points"][0]["per_frame"][:3]),
            f"points[0]: 'per_frame' must be a list of {FRAMES} frames")
    refused(lambda r: [p.update(config="tiny" if i < 2 else "small") for i, p in enumerate(r["points"])],
            "holds points of 2 RD curves (tiny; small)")
    # one config coded by two backends, as check-int8's int8 result of a W8A8 and a W8A16 folder: one curve
    mixed = json.loads(json.dumps(res))
    for i, p in enumerate(mixed["points"]):
        p.update(config="tiny", backend=f"onnxruntime CPU (int8 QDQ, {'W8A8' if i < 2 else 'W8A16 receiver'})")
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    assert _cli("bdrate", str(good), str(tmp_path / "mixed.json"))[0] == 0  # refused by the review's catch


def _strict_json(text: str) -> Any:
    """JSON as jq and JSON.parse read it: no Infinity or NaN (Python's json writes and reads them)."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_lossless_frame_counts_as_100_db_in_the_mean(carphone, tmp_path):
    """CRF 0 is lossless: every frame's PSNR is inf (checked here on PyAV's decode), written as null
    (JSON has no Infinity: the file and `--json -` parse strictly), and the point's mean counts each
    at 100 dB, as x264 reports it, so the sweep is written and plotted; the lossy point's mean is the
    plain mean of its frames' PSNRs."""
    code, stdout, err = _cli("baseline", "--codec", "x264", "--crf", "0,30", "--frames", "2", str(carphone),
                             "-o", str(tmp_path), "--no-progress", "--json", "-")
    assert code == 0, err
    res = _strict_json((tmp_path / "x264_medium.json").read_text())
    assert _strict_json(stdout)["points"][0]["per_frame"] == res["points"][0]["per_frame"]
    src = _source_frames(carphone, 2)
    lossless, lossy = res["points"]
    planes, _, _ = _decode(tmp_path / lossless["file"])
    assert all(_psnr(a, b) == math.inf for s, d in zip(src, planes) for a, b in zip(s, d))
    assert [f[k] for f in lossless["per_frame"] for k in ("psnr_y", "psnr_yuv", "psnr_rgb")] == [None] * 6
    assert lossless["psnr_y"] == lossless["psnr_yuv"] == 100.0
    planes, _, _ = _decode(tmp_path / lossy["file"])
    want = np.mean([_psnr(s[0], d[0]) for s, d in zip(src, planes)])
    assert math.isfinite(want) and lossy["psnr_y"] == pytest.approx(want, abs=1e-9)
    assert (tmp_path / "x264_medium_rd.png").read_bytes().startswith(PNG_MAGIC)


def test_bdrate_reports_the_metrics_a_non_finite_point_leaves(sweep, tmp_path):
    """A result with an inf PSNR-YUV at one point (a lossless frame averaged plainly by another tool):
    PSNR-YUV is n/a with the reason, PSNR-RGB is still judged."""
    good = sweep["out"] / "x264_medium.json"
    res = json.loads(good.read_text())
    res["points"][0]["psnr_yuv"] = math.inf
    inf = tmp_path / "inf.json"
    inf.write_text(json.dumps(res))
    code, stdout, stderr = _cli("bdrate", str(good), str(inf))
    assert code == 0, stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in stdout.splitlines() if ln.startswith("psnr_")}
    assert rows["psnr_yuv"] == ["n/a", "n/a"] and "non-finite psnr_yuv (inf)" in stdout
    assert rows["psnr_rgb"] == ["0.00", "0.000", "dB"]


def test_intra_period_sweep_reports_the_drift_of_its_periods(carphone, tmp_path):
    """`--intra-period 4`: an I-frame every 4 frames and nowhere else, and each period's drift
    (last P-frame against the second) from the packets and frames as decoded here by PyAV."""
    code, out, err = _cli("baseline", "--codec", "x264", "--crf", "38", "--frames", str(FRAMES),
                          "--intra-period", "4", str(carphone), "-o", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert "P-frame drift (intra period 4" in out
    res = json.loads((tmp_path / "x264_medium_ip4.json").read_text())
    point = res["points"][0]
    assert res["intra_period"] == 4 and "keyint=4:min-keyint=4:scenecut=0" in point["command_line"]
    planes, types, sizes = _decode(tmp_path / point["file"])
    assert "".join(t[:1] for t in types) == "IPPPIPPPIP" == point["frame_types"]
    src = _source_frames(carphone, FRAMES)

    def psnr_yuv(i: int) -> float:  # the 6:1:1 weighting of per-plane PSNRs
        y, u, v = (_psnr(a, b) for a, b in zip(src[i], planes[i]))
        return (6 * y + u + v) / 8

    periods = point["drift"]["periods"]  # frames 8-9 hold one P-frame: no drift to measure there
    assert [(r["second_p"], r["last_p"], r["full"]) for r in periods] == [(2, 3, True), (6, 7, True)]
    for r in periods:
        assert r["bits_ratio"] == pytest.approx(sizes[r["last_p"]] / sizes[r["second_p"]])
        assert r["psnr_yuv_drop"] == pytest.approx(psnr_yuv(r["second_p"]) - psnr_yuv(r["last_p"]), abs=1e-9)


def test_rd_plot_drops_labels_that_overprint(sweep):
    """Two curves with the same points (x264's sweep twice, the second nudged by 0.1 % in rate):
    the second curve's labels would overprint the first's and are dropped; the first keeps all."""
    from mobilecodec.plots import drop_overlapping_labels, pyplot

    res = _results(sweep, "x264")
    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        labels = []
        for scale, tag in ((1.0, "a"), (1.001, "b")):
            for p in res["points"]:
                labels.append(ax.annotate(f"{tag}{p['label']}", (p["bpp"] * scale, p["psnr_yuv"]), fontsize=7,
                                          textcoords="offset points", xytext=(4, -8)))
        ax.set_xlim(0.5 * min(p["bpp"] for p in res["points"]), 2 * max(p["bpp"] for p in res["points"]))
        ax.set_ylim(min(p["psnr_yuv"] for p in res["points"]) - 1, max(p["psnr_yuv"] for p in res["points"]) + 1)
        kept = drop_overlapping_labels(fig, labels)
        texts = [t.get_text() for t in kept]
        assert texts == [f"a{p['label']}" for p in res["points"]]
        assert [t.get_text() for t in ax.texts] == texts  # the dropped ones are gone from the axes
    finally:
        plt.close(fig)


def test_a_failed_rerun_leaves_the_earlier_sweep(carphone, tmp_path, monkeypatch, capsys):
    """A second sweep into the same folder that fails while publishing (a full disk when its JSON is
    written, simulated by the writer raising ENOSPC) removes the .mp4 and plot it already copied in
    and puts the first sweep's files back byte for byte: no JSON left beside streams it does not describe."""
    import errno

    import mobilecodec.rdresults
    from mobilecodec.cli import main

    out = tmp_path / "b"
    args = ["baseline", "--codec", "x264", "--crf", "38", str(carphone), "-o", str(out), "--no-progress"]
    assert main([*args, "--frames", "4"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {Path("x264_medium_crf38.mp4"), Path("x264_medium.json"), Path("x264_medium_rd.png")} <= set(before)

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mobilecodec.rdresults, "save_results", full_disk)
    capsys.readouterr()
    rc = main([*args, "--frames", "6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "No space left on device" in err[0], err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_outputs_that_would_replace_an_input_are_refused_before_encoding(sweep, tmp_path):
    """The sweep writes OUT/<codec>_<preset>_crfN.mp4, .json and _rd.png: an input video of such a
    name inside OUT was replaced by the new encode (exit 0, its results citing it), a --json of
    the results' name replaced them with a copy of the report (the .mp4's name: JSON in an .mp4),
    and a folder in an output's place was found only after the whole sweep. Each is refused in one
    line before ffmpeg runs."""
    import shutil

    clip = tmp_path / "B" / "x264_ultrafast_crf23.mp4"
    clip.parent.mkdir()
    shutil.copyfile(sweep["out"] / "x264_medium_crf23.mp4", clip)
    before = clip.read_bytes()
    base = ("baseline", "--codec", "x264", "--preset", "ultrafast", "--crf", "23,28", "--no-progress")
    p = cli_here(*base, clip, "-o", clip.parent)
    assert_clean_error(p, "x264_ultrafast_crf23.mp4", "is the input video")
    assert clip.read_bytes() == before and os.listdir(clip.parent) == [clip.name]
    p = cli_here(*base, sweep["source"], "-o", tmp_path / "J", "--json", tmp_path / "J" / "x264_ultrafast_crf28.mp4")
    assert_clean_error(p, "is the --json file")
    (tmp_path / "F" / "x264_ultrafast.json").mkdir(parents=True)
    assert_clean_error(cli_here(*base, sweep["source"], "-o", tmp_path / "F"), "x264_ultrafast.json", "is a folder")
    assert not (tmp_path / "J").exists() and os.listdir(tmp_path / "F") == ["x264_ultrafast.json"]


def test_a_crf_is_the_number_ffmpeg_is_given():
    """`23,23.0000001` passed as distinct CRFs, both encoded with `-crf 23` into one file name, the
    second recorded as 23.0000001; `28.1234567` was encoded with `-crf 28.1235`. A CRF takes two
    decimals, which `format_crf` writes exactly."""
    from mobilecodec.baselines.ffmpeg import format_crf
    from mobilecodec.cli.common import parse_crf_list

    assert parse_crf_list("23,28.25,0.5") == [23, 28.25, 0.5]
    assert [format_crf(c) for c in (28.25, 50.75, 0.01)] == ["28.25", "50.75", "0.01"]
    for text in ("23,23.0000001", "28.1234567"):
        p = cli_here("baseline", "carphone", "--codec", "x264", "--crf", text, "-o", "unused")
        assert_clean_error(p, "at most 2 decimals")


def test_a_lossless_period_drifts_by_0_db(carphone, tmp_path):
    """CRF 0 with --intra-period 4: every frame is lossless (inf dB), so the drift's PSNR drop was
    inf - inf = NaN in the table and the JSON; frames count as the means count them (100 dB), so it is 0."""
    code, out, err = _cli("baseline", "--codec", "x264", "--preset", "ultrafast", "--crf", "0", "--frames", "8",
                          "--intra-period", "4", str(carphone), "-o", str(tmp_path), "--no-progress")
    assert code == 0, err
    point = _strict_json((tmp_path / "x264_ultrafast_ip4.json").read_text())["points"][0]
    drift = point["drift"]
    assert all(f["psnr_yuv"] is None for f in point["per_frame"])  # inf, as JSON writes it
    assert drift_summary(point) == drift  # read back: null counts as the means count inf
    assert [r["psnr_yuv_drop"] for r in drift["periods"]] == [0.0, 0.0] and drift["worst_psnr_yuv_drop"] == 0.0
    assert "nan" not in out.lower() and "PSNR-YUV +0.00 dB" in out


def test_a_clip_shorter_than_frames_is_encoded_whole_and_said_so(carphone, tmp_path):
    """--frames 5 on a 2-frame clip encodes its 2 frames, as eval does, and says so in one line (it
    was silent; the JSON's "frames" says 2)."""
    from mobilecodec.io import read_frames, write_video

    clip = tmp_path / "short.y4m"
    write_video(clip, read_frames(carphone, 2), 30000 / 1001)
    code, _, err = _cli("baseline", "--codec", "x264", "--preset", "ultrafast", "--crf", "30", "--frames", "5",
                        str(clip), "-o", str(tmp_path / "b"), "--no-progress")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "short.y4m has 2 frames, fewer than --frames 5" in lines[0], lines
    assert json.loads((tmp_path / "b" / "x264_ultrafast.json").read_text())["frames"] == 2


def test_bdrate_notes_curves_of_two_clips(sweep, tmp_path):
    """Curves of two clips of one size (carphone and a 176x144 crop of bikes; two 1080p clips) gave a
    BD-rate with no word that it compares the codecs on different content: the note names both clips, in the text and
    the JSON (a renamed copy is the same clip, so it is a note, not a refusal)."""
    from mobilecodec.io import crop_frame, read_frames, sample_clip, write_video

    bikes = tmp_path / "bikes_crop.y4m"
    write_video(bikes, [crop_frame(f, WIDTH, HEIGHT, 64, 232) for f in read_frames(sample_clip("bikes"), FRAMES)],
                30000 / 1001)
    code, _, err = _cli("baseline", "--codec", "x264", "--preset", "medium", "--crf", ",".join(map(str, CRFS)),
                        "--frames", str(FRAMES), str(bikes), "-o", str(tmp_path / "b"), "--no-progress")
    assert code == 0, err
    code, stdout, err = _cli("bdrate", str(sweep["out"] / "x264_medium.json"), str(tmp_path / "b" / "x264_medium.json"),
                             "--json", str(tmp_path / "bd.json"))
    assert code == 0, err
    assert f"on {sweep['source'].name}" in err and "on bikes_crop.y4m" in err, err
    assert "bikes_crop.y4m" in json.loads((tmp_path / "bd.json").read_text())["notes"][0]
    code, _, err = _cli("bdrate", str(sweep["out"] / "x264_medium.json"), str(sweep["out"] / "x265_medium.json"))
    assert code == 0 and "note:" not in err, err  # the same clip: no note


def test_a_rerun_with_fewer_crfs_removes_the_dropped_encodes(carphone, tmp_path):
    """A second sweep into the same folder with fewer CRFs left the first sweep's other .mp4 beside a
    JSON that no longer lists it; it goes now, and only it: another codec's files and a user's file stay."""
    from mobilecodec.cli import main

    out = tmp_path / "b"
    base = ["baseline", "--preset", "ultrafast", str(carphone), "-o", str(out), "--frames", "2", "--no-progress"]
    assert main([*base, "--codec", "x264", "--crf", "30,40"]) == 0
    assert main([*base, "--codec", "x265", "--crf", "40"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*base, "--codec", "x264", "--crf", "30"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt", "x264_ultrafast.json", "x264_ultrafast_crf30.mp4", "x264_ultrafast_rd.png",
        "x265_ultrafast.json", "x265_ultrafast_crf40.mp4", "x265_ultrafast_rd.png"]
    assert [p["file"] for p in json.loads((out / "x264_ultrafast.json").read_text())["points"]] == [
        "x264_ultrafast_crf30.mp4"]
    # never what the rerun reads: an earlier sweep's encode as its input stays (it was deleted, exit 0)
    assert main([*base, "--codec", "x264", "--crf", "30,40"]) == 0
    src = out / "x264_ultrafast_crf40.mp4"
    assert main(["baseline", "--preset", "ultrafast", str(src), "-o", str(out), "--frames", "2", "--no-progress",
                 "--codec", "x264", "--crf", "30"]) == 0
    assert src.is_file()
    # only names a sweep writes: a JSON in its place listing a user's file (any JSON of that name is
    # read as an earlier sweep's) removed that file, exit 0 (found by a walk-through of the CLI)
    (out / "x264_ultrafast.json").write_text(json.dumps({"points": [{"file": "notes.txt"}]}))
    assert main([*base, "--codec", "x264", "--crf", "30"]) == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_a_relative_name_with_a_colon_is_a_file_not_a_protocol(carphone, tmp_path, monkeypatch):
    """A camera's `12:30.mp4` given relative was refused as "cannot read video container (Protocol not
    found)": FFmpeg and PyAV took `12:` for a URL scheme. Read and coded as a file now, into an -o
    folder whose name has a colon too (ffmpeg itself works in a temporary folder)."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(carphone), "-frames:v", "2",
                    "-c:v", "libx264", "-qp", "0", str(tmp_path / "12:30.mp4")], check=True, timeout=120)
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli("baseline", "--codec", "x264", "--preset", "ultrafast", "--crf", "30", "12:30.mp4",
                        "-o", "run:1", "--no-progress")
    assert code == 0, err
    res = json.loads((tmp_path / "run:1" / "x264_ultrafast.json").read_text())
    assert res["frames"] == 2 and (tmp_path / "run:1" / Path(res["points"][0]["file"]).name).is_file()


def test_sei_units_are_found_in_length_prefixed_packets():
    """Hand-made packets: H.264 NAL type 6 and HEVC types 39 / 40 are SEI, counted with their length
    prefixes (1, 2 or 4 bytes, from avcC byte 4 / hvcC byte 21); a packet that does not parse counts none."""
    from mobilecodec.baselines.ffmpeg import _nal_length_size, _sei_bytes

    def units(size, *nals):
        return b"".join(len(n).to_bytes(size, "big") + n for n in nals)

    sei, idr = bytes([0x06]) + b"x264 settings", bytes([0x65]) + b"\x88" * 40
    for size in (1, 2, 4):
        assert _sei_bytes(units(size, sei, idr), "h264", size) == size + 14
        assert _sei_bytes(units(size, idr), "h264", size) == 0
    prefix, suffix, slice_ = bytes([39 << 1, 1]) + b"abc", bytes([40 << 1, 1]) + b"de", bytes([1 << 1, 1]) + b"\0" * 9
    assert _sei_bytes(units(4, prefix, slice_, suffix), "hevc", 4) == (4 + 5) + (4 + 4)
    assert _sei_bytes(units(4, sei, idr)[:-3], "h264", 4) == 0  # cut short: not a length-prefixed packet
    assert _nal_length_size("h264", bytes([1, 100, 0, 31, 0xFF])) == 4 and _nal_length_size("h264", bytes([1, 0, 0, 0, 0xFD])) == 2
    assert _nal_length_size("hevc", bytes([1] + [0] * 20 + [0x0F])) == 4
    assert _nal_length_size("h264", b"\0\0\0\1\x67") is None  # Annex B: start codes, no prefixes


def test_file_names_matplotlib_would_parse_are_plotted_literally(sweep, tmp_path):
    """A '$' in an input's name started mathtext in the RD plot's title (ParseSyntaxException), and a
    name holding bytes that are not UTF-8 made matplotlib raise (TypeError): both after every encode
    had run, as 'internal error' (I/O audit)."""
    import shutil

    for k, name in enumerate(("cost_$5_$x.y4m", os.fsdecode(b"bad\xff name.y4m"))):
        src = tmp_path / name
        shutil.copyfile(sweep["source"], src)
        code, _, err = _cli("baseline", "--codec", "x264", "--crf", "28,38", "--frames", "2", str(src),
                            "-o", str(tmp_path / f"o{k}"), "--no-progress")
        assert code == 0, err
        assert (tmp_path / f"o{k}" / "x264_medium_rd.png").stat().st_size > 0


def test_plot_labels_keep_every_name():
    """plain_text: a label that starts with '_' is left out of a matplotlib legend (an input named
    '_x.y4m' lost its curve's entry); '$' would start mathtext. Both appear as written."""
    from mobilecodec.plots import plain_text, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        for k, name in enumerate(("_x.y4m", "a$b$c", "plain")):
            ax.plot([0, 1], [k, k], label=plain_text(name))
        shown = [t.get_text() for t in ax.legend().get_texts()]
        fig.canvas.draw()  # mathtext would raise here
    finally:
        plt.close(fig)
    assert [t.replace("\u200b", "").replace("\\$", "$") for t in shown] == ["_x.y4m", "a$b$c", "plain"]


def test_an_encoder_that_refuses_the_clip_says_why(carphone, tmp_path):
    """x265 refuses a 12x12 picture; the error was ffmpeg's last line, "Nothing was written into output
    file" (metrics audit). The encoder's own line leads now."""
    from mobilecodec.io import crop_frame, read_frames, write_video

    tiny = tmp_path / "tiny.y4m"
    write_video(tiny, [crop_frame(f, 12, 12) for f in read_frames(carphone, 3)], 30)
    code, _, stderr = _cli("baseline", "--codec", "x265", "--crf", "30", str(tiny), "-o", str(tmp_path / "b"),
                           "--no-progress")
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "[libx265 @" in stderr and "Image size is too small (12x12)" in stderr, stderr
