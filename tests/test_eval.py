"""`mobilecodec eval` on carphone with two random `tiny` checkpoints through the real encoder and
decoder: the RD JSON follows the schema, bpp is the stream file's bits / pixels, per-frame PSNR
matches an independent numpy recomputation from the decoded .y4m; BD-rate against an anchor (four
shipped checkpoints, as `bdrate` needs) is printed, and bad input exits 2 with a one-line message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mobilecodec.bitstream import StreamReader
from mobilecodec.cli import main
from mobilecodec.rdresults import payload_rates

from cli_run import assert_clean_error, cli_here
from models_for_tests import code_latents

FRAMES, INTRA = 3, 2  # frame types I P I
W, H = 176, 144
# Two interleaved sets of four shipped checkpoints: on carphone's first 3 frames (intra period 2) each
# set's PSNR-YUV and PSNR-RGB rise with bpp, and the curves overlap (measured: 0.0548-0.1652 and
# 0.0708-0.1883 bpp at 26.05-28.34 and 26.97-28.33 dB PSNR-YUV)
ANCHOR_CKPTS = ("tiny_b0.0512", "tiny_b0.0128", "tiny_b0.0032", "tiny_b0.0008")
TEST_CKPTS = ("tiny_b0.0256", "tiny_b0.0064", "tiny_b0.0016", "tiny_b0.0004")


def read_y4m(path: Path, limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A minimal 4:2:0 .y4m parser (independent of mobilecodec.io): [(Y, U, V)] as uint8 arrays."""
    data = Path(path).read_bytes()
    end = data.index(b"\n")
    tags = data[:end].split()
    assert tags[0] == b"YUV4MPEG2"
    w = int(next(t[1:] for t in tags if t.startswith(b"W")))
    h = int(next(t[1:] for t in tags if t.startswith(b"H")))
    pos, frames = end + 1, []
    ny, nc = w * h, (w // 2) * (h // 2)
    while pos < len(data) and (limit is None or len(frames) < limit):
        assert data[pos:pos + 5] == b"FRAME"
        pos = data.index(b"\n", pos) + 1
        raw = np.frombuffer(data, np.uint8, ny + 2 * nc, pos)
        frames.append((raw[:ny].reshape(h, w), raw[ny:ny + nc].reshape(h // 2, w // 2),
                       raw[ny + nc:].reshape(h // 2, w // 2)))
        pos += ny + 2 * nc
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint, tmp_path_factory) -> list[Path]:
    """tiny seed 0 (conftest), and tiny seed 1 made by `mobilecodec init` then re-saved with beta
    0.0032 after `code_latents` with the scale indices raised by 24 instead of 16 (more bits) and
    its I-frame output bias moved nearer carphone's mean level (higher PSNR): two random models give
    two distinct RD points whose quality rises with rate (measured: 0.765 bpp / 7.06 dB vs 0.807 bpp /
    16.17 dB PSNR-YUV)."""
    import torch

    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint

    d = tmp_path_factory.mktemp("eval_ckpt")
    assert main(["init", "--config", "tiny", "--seed", "1", "-o", str(d / "init1.pt")]) == 0
    model, _ = load_checkpoint(d / "init1.pt")
    with torch.no_grad():
        model.i_synthesis.out.bias[:6] += 0.45
    code_latents(model, index_shift=24)
    model.update()
    return [tiny_checkpoint, save_checkpoint(d / "tiny_seed1.pt", model, beta=0.0032)]


def _eval(carphone, ckpts, out: Path, *extra: str) -> int:
    return main(["eval", str(carphone), "--checkpoint", ",".join(map(str, ckpts)), "--frames", str(FRAMES),
                 "--intra-period", str(INTRA), "-o", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def shipped_anchor(carphone, tmp_path_factory) -> Path:
    """OUT/carphone_eval.json of the four ANCHOR_CKPTS: a real RD curve of four points."""
    out = tmp_path_factory.mktemp("eval_anchor") / "OUT"
    assert _eval(carphone, ANCHOR_CKPTS, out, "--threads", "1") == 0
    return out / "carphone_eval.json"


@pytest.fixture(scope="module")
def run(checkpoints, carphone, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "OUT"
    report_path = out.parent / "report.json"
    rc = _eval(carphone, checkpoints, out, "--save-decoded", "--json", str(report_path))
    return rc, out, json.loads((out / "carphone_eval.json").read_text()), json.loads(report_path.read_text())


def test_json_structure(run, checkpoints):
    rc, out, res, report = run
    assert rc == 0
    for key, value in (("width", W), ("height", H), ("frames", FRAMES)):
        assert res[key] == value
    assert res["source"].endswith("carphone.y4m") and res["fps"] == pytest.approx(30000 / 1001)
    pts = res["points"]
    assert [p["label"] for p in pts] == ["tiny_seed0", "tiny_seed1"]  # sorted by bpp
    assert pts[0]["bpp"] < pts[1]["bpp"]
    by_label = {p["label"]: p for p in pts}
    assert by_label["tiny_seed1"]["beta"] == 0.0032 and by_label["tiny_seed0"]["beta"] is None
    for p in pts:
        for k in ("bpp", "bits", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb"):
            assert isinstance(p[k], (int, float)), k
        assert [f["type"] for f in p["per_frame"]] == ["I", "P", "I"]
        assert [f["index"] for f in p["per_frame"]] == [0, 1, 2]
        assert 0 < p["ms_ssim_rgb"] <= 1
        # point values are means of the per-frame values
        assert p["psnr_rgb"] == pytest.approx(np.mean([f["psnr_rgb"] for f in p["per_frame"]]))
        ft = p["frame_types"]
        assert ft["I"]["frames"] == 2 and ft["P"]["frames"] == 1
        # means per frame, named so beside the point's total "bits"
        assert ft["I"]["mean_bits"] == pytest.approx((p["per_frame"][0]["bits"] + p["per_frame"][2]["bits"]) / 2)
        assert ft["P"]["mean_bits"] == p["per_frame"][1]["bits"] and "bits" not in ft["I"]
        # intra period 2 leaves one P-frame per period: too short to judge drift
        assert p["drift"] == {"periods": [], "worst_bits_ratio": None, "worst_psnr_yuv_drop": None,
                              "worst_bits_ratio_full": None, "worst_psnr_yuv_drop_full": None}
    for name in ("carphone_rd.png", "carphone_per_frame_bits.png", "carphone_per_frame_psnr.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["results"][0]["result"] == res


def test_bits_match_stream_file(run):
    _, out, res, _ = run
    for p in res["points"]:
        stream = out / "streams" / f"carphone_{p['label']}.mnvc"
        size = stream.stat().st_size
        assert p["bits"] == 8 * size
        assert p["bpp"] == pytest.approx(8 * size / (FRAMES * W * H), rel=1e-12)
        # the stream is a header plus one record per frame; per-frame bits are the records' sizes
        assert sum(f["bits"] for f in p["per_frame"]) + p["header_bits"] == 8 * size
        # payload bits: the records read back from the file, 7 bytes each besides a short payload
        with StreamReader(stream) as r:
            payloads = [len(rec.payload) for rec in r]
        assert [f["payload_bits"] for f in p["per_frame"]] == [8 * n for n in payloads]
        assert [f["bits"] - f["payload_bits"] for f in p["per_frame"]] == [8 * (7 if n < 64 else 8 if n < 8192 else 9) for n in payloads]
    # payload_rates: the same points with bpp over the payloads only
    payload = payload_rates(res)
    for p, q in zip(res["points"], payload["points"]):
        assert q["bpp"] == pytest.approx(sum(f["payload_bits"] for f in p["per_frame"]) / (FRAMES * W * H))
        assert q["bpp"] < p["bpp"] and q["psnr_yuv"] == p["psnr_yuv"]


def test_per_frame_psnr_matches_decoded_file(run, carphone):
    _, out, res, _ = run
    src = read_y4m(carphone, FRAMES)
    for p in res["points"]:
        dec = read_y4m(out / "streams" / f"carphone_{p['label']}.y4m")
        assert len(dec) == FRAMES
        for f, (ys, us, vs), (yd, ud, vd) in zip(p["per_frame"], src, dec):
            py, pu, pv = psnr(ys, yd), psnr(us, ud), psnr(vs, vd)
            assert f["psnr_y"] == pytest.approx(py, abs=1e-9)
            assert f["psnr_u"] == pytest.approx(pu, abs=1e-9)
            assert f["psnr_v"] == pytest.approx(pv, abs=1e-9)
            assert f["psnr_yuv"] == pytest.approx((6 * py + pu + pv) / 8, abs=1e-9)
        assert p["psnr_y"] == pytest.approx(np.mean([psnr(s[0], d[0]) for s, d in zip(src, dec)]), abs=1e-9)


def test_bd_rate_against_anchor(shipped_anchor, carphone, tmp_path, capsys):
    """Anchor = four shipped checkpoints' points at twice the rate: the BD-rate of the same four is
    exactly -50% on any metric, provided the test curve rises with rate (checked here first, so the
    test says why it cannot)."""
    res = json.loads(shipped_anchor.read_text())
    for m in ("psnr_yuv", "psnr_rgb"):
        q = [p[m] for p in res["points"]]
        assert q == sorted(q) and len(set(q)) == 4, f"the shipped checkpoints' {m} does not rise with rate: {q}"
    anchor = {**res, "codec": "anchor", "points": [{**p, "bpp": 2 * p["bpp"], "bits": 2 * p["bits"],
                                                     "per_frame": []} for p in res["points"]]}
    for p in anchor["points"]:
        del p["per_frame"]
    path = tmp_path / "anchor.json"
    path.write_text(json.dumps(anchor))
    capsys.readouterr()
    extra = ("--threads", "1")
    rc = _eval(carphone, ANCHOR_CKPTS, tmp_path / "OUT", "--anchor", str(path), "--json", str(tmp_path / "r.json"),
               *extra)
    text = capsys.readouterr().out
    assert rc == 0
    assert "BD-rate vs anchor" in text and "psnr_yuv -50.00%" in text and "psnr_rgb -50.00%" in text
    bd = json.loads((tmp_path / "r.json").read_text())["results"][0]["bd"]
    assert bd["bd_rate"]["psnr_yuv"] == pytest.approx(-50.0, abs=1e-9)
    assert bd["bd_rate"]["psnr_rgb"] == pytest.approx(-50.0, abs=1e-9)
    # a metric the anchor cannot give (PSNR-YUV falling with rate) leaves the other's BD-rate
    flat = {**anchor, "points": [dict(p, psnr_yuv=v) for p, v in zip(anchor["points"], (30.0, 29.0, 28.0, 27.0))]}
    (tmp_path / "anchor_yuv.json").write_text(json.dumps(flat))
    rc = _eval(carphone, ANCHOR_CKPTS, tmp_path / "OUT2", "--anchor", str(tmp_path / "anchor_yuv.json"), *extra)
    text = capsys.readouterr().out
    assert rc == 0 and "psnr_rgb -50.00%" in text and "psnr_yuv not computed" in text, text
    # neither metric: each reason names its metric (it said "not computed: bd: ...; bd: ...": walk-through)
    both = {**flat, "points": [dict(p, psnr_rgb=v) for p, v in zip(flat["points"], (26.0, 25.0, 24.0, 23.0))]}
    (tmp_path / "anchor_both.json").write_text(json.dumps(both))
    assert _eval(carphone, ANCHOR_CKPTS, tmp_path / "OUT3", "--anchor", str(tmp_path / "anchor_both.json"), *extra) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("BD-rate vs anchor"))
    assert "not computed: psnr_yuv: bd: " in line and "; psnr_rgb: bd: " in line, line
    # one checkpoint: no BD-rate, and the output says why
    rc = _eval(carphone, ANCHOR_CKPTS[:1], tmp_path / "OUT1", "--anchor", str(path), *extra)
    text = capsys.readouterr().out
    assert rc == 0 and "not computed" in text and "at least 4 RD points" in text


def test_eval_and_bdrate_give_a_bd_rate_from_the_same_points(shipped_anchor, carphone, tmp_path, capsys):
    """One rule for both: against the same anchor, eval reports the BD-rate `bdrate` computes from
    eval's JSON where each curve has 4 points, and where the test curve has 2 it says it needs 4
    (it printed a number from 2 points that `bdrate` refuses) while `bdrate` refuses with exit 2."""
    extra = ("--threads", "1", "--anchor", str(shipped_anchor))
    for n, ckpts in ((4, TEST_CKPTS), (2, TEST_CKPTS[::2])):
        out = tmp_path / f"OUT{n}"
        capsys.readouterr()
        assert _eval(carphone, ckpts, out, "--json", str(tmp_path / f"r{n}.json"), *extra) == 0
        text = capsys.readouterr().out
        bd = json.loads((tmp_path / f"r{n}.json").read_text())["results"][0]["bd"]
        p = cli_here("bdrate", shipped_anchor, out / "carphone_eval.json", "--json", tmp_path / f"b{n}.json")
        bd_lines = [ln for ln in text.splitlines() if ln.startswith("BD-rate")]
        if n == 4:
            assert p.returncode == 0, p.stderr
            rows = {r["metric"]: r for r in json.loads((tmp_path / f"b{n}.json").read_text())["results"]}
            for m in ("psnr_yuv", "psnr_rgb"):
                assert bd["bd_rate"][m] == pytest.approx(rows[m]["bd_rate_percent"], abs=1e-5)
                assert f"{m} {bd['bd_rate'][m]:+.2f}%" in bd_lines[0], bd_lines
        else:
            assert_clean_error(p, "at least 4 RD points")
            assert bd["bd_rate"] == {} and "at least 4 RD points" in bd["error"] and "got 2" in bd["error"]
            assert len(bd_lines) == 1 and "not computed" in bd_lines[0] and "%" not in bd_lines[0], bd_lines
            assert "at least 4 RD points" in bd_lines[0] and "got 2" in bd_lines[0], bd_lines


def test_clip_shorter_than_frames_is_coded_whole_and_said_so(carphone, tmp_path, capsys):
    """--frames 5 on a 2-frame clip (carphone's first two) codes its 2 frames, as before, but says so
    in one line of stderr naming the clip, its 2 frames and the 5 asked (it was silent); the JSON
    records the 2 frames coded beside the 5 asked."""
    from mobilecodec.io import read_frames, write_video

    clip = tmp_path / "short.y4m"
    write_video(clip, read_frames(carphone, 2), 30000 / 1001)
    capsys.readouterr()
    rc = main(["eval", str(clip), "--checkpoint", "tiny_b0.0512", "--frames", "5", "--threads", "1",
               "-o", str(tmp_path / "OUT"), "--no-progress", "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0
    assert len(err) == 1 and err[0].startswith("mobilecodec eval: warning: "), err
    assert "short.y4m" in err[0] and "has 2 frames" in err[0] and "--frames 5" in err[0], err
    report = json.loads((tmp_path / "r.json").read_text())
    res = json.loads((tmp_path / "OUT" / "short_eval.json").read_text())
    assert report["options"]["frames"] == 5 and report["results"][0]["result"] == res
    assert res["frames"] == 2 and [len(p["per_frame"]) for p in res["points"]] == [2]
    # as many frames as asked, or no --frames: nothing to say
    for extra in (["--frames", "2"], []):
        rc = main(["eval", str(clip), "--checkpoint", "tiny_b0.0512", *extra, "--threads", "1",
                   "-o", str(tmp_path / f"OUT{len(extra)}"), "--no-progress"])
        assert rc == 0 and capsys.readouterr().err == ""


def test_a_folder_named_like_a_sample_clip_does_not_hide_it(tmp_path, monkeypatch, capsys):
    """`eval carphone -o carphone`, run twice: the first run's output folder `carphone` is not a video,
    so the second run's input `carphone` is still the sample clip (it was the folder: 'no such input
    video: carphone', exit 2)."""
    monkeypatch.chdir(tmp_path)
    for run_ in (1, 2):
        rc = main(["eval", "carphone", "--checkpoint", "tiny_b0.0512", "--frames", "1", "--threads", "1",
                   "-o", "carphone", "--no-progress", "--json", f"r{run_}.json"])
        assert rc == 0, (run_, capsys.readouterr().err)
        res = json.loads((tmp_path / f"r{run_}.json").read_text())["results"][0]["result"]
        assert Path(res["source"]).name == "carphone.y4m" and res["frames"] == 1
    assert (tmp_path / "carphone" / "carphone_eval.json").is_file()


def test_inputs_after_options_are_inputs(tmp_path, capsys):
    """`eval carphone --checkpoint C -o ev bikes`: the second clip after the options was refused
    ("unrecognized arguments: bikes"); both clips are evaluated, as in the order of the options."""
    rc = main(["eval", "carphone", "--checkpoint", "tiny_b0.0512", "--frames", "1", "--threads", "1",
               "-o", str(tmp_path / "ev"), "--no-progress", "bikes", "--json", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [Path(r["result"]["source"]).stem for r in results] == ["carphone", "bikes"]


@pytest.mark.parametrize("case", ["missing_input", "missing_checkpoint", "bad_anchor", "no_tables"])
def test_bad_input_exits_2(case, checkpoints, carphone, tmp_path, capsys):
    import torch

    from mobilecodec.checkpoint import save_checkpoint
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    ckpts, inp, extra, word = checkpoints, str(carphone), [], ""
    if case == "missing_input":
        inp, word = str(tmp_path / "nope.y4m"), "nope.y4m"
    elif case == "missing_checkpoint":
        ckpts, word = [checkpoints[0], tmp_path / "absent.pt"], "absent.pt"
    elif case == "bad_anchor":
        (tmp_path / "anchor.json").write_text("{not json")
        extra, word = ["--anchor", str(tmp_path / "anchor.json")], "anchor.json"
    else:
        torch.manual_seed(0)
        ckpts, word = [save_checkpoint(tmp_path / "raw.pt", VideoCodec(get_config("tiny")))], "entropy"
    capsys.readouterr()
    rc = main(["eval", inp, "--checkpoint", ",".join(map(str, ckpts)), "--frames", "1", "-o",
               str(tmp_path / "OUT"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("mobilecodec eval: error:") and word in err[0], err


def test_usage_error_exits_2(carphone, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(carphone), "--checkpoint", "x.pt", "-o", str(tmp_path), "--matrix", "srgb"])
    assert exc.value.code == 2


def test_drift_summary_hand_values():
    """Two intra periods, I P P P P and I P P P: the last P-frame against the second one."""
    from mobilecodec.rdresults import drift_summary

    def f(i, t, bits, q):
        return {"index": i, "type": t, "bits": bits, "psnr_yuv": q}

    point = {"intra_period": 5,
             "per_frame": [f(0, "I", 9000, 30.0), f(1, "P", 1000, 29.5), f(2, "P", 1200, 29.4),
                           f(3, "P", 1500, 29.0), f(4, "P", 1800, 28.9),
                           f(5, "I", 9000, 30.0), f(6, "P", 900, 29.0), f(7, "P", 1000, 29.0),
                           f(8, "P", 1100, 28.0)]}
    d = drift_summary(point)
    assert [(r["first_frame"], r["second_p"], r["last_p"]) for r in d["periods"]] == [(0, 2, 4), (5, 7, 8)]
    assert [r["bits_ratio"] for r in d["periods"]] == [1.5, 1.1]
    assert [r["psnr_yuv_drop"] for r in d["periods"]] == pytest.approx([0.5, 1.0])
    assert d["worst_bits_ratio"] == 1.5 and d["worst_psnr_yuv_drop"] == pytest.approx(1.0)
    # the second period is cut short (4 of 5 frames): the full-period worsts are the first's
    assert [r["full"] for r in d["periods"]] == [True, False]
    assert d["worst_bits_ratio_full"] == 1.5 and d["worst_psnr_yuv_drop_full"] == pytest.approx(0.5)
    # windows of 2 P-frames: the first period has 4 P-frames (< 2 x 2 + 1, skipped); a period of 5
    # P-frames compares the last two (1500 + 1800 bits) with the two from the second on (1200 + 1300)
    long = {"intra_period": 6, "per_frame": [f(0, "I", 9000, 30.0), f(1, "P", 1000, 29.5), f(2, "P", 1200, 29.4),
                                             f(3, "P", 1300, 29.2), f(4, "P", 1500, 29.0), f(5, "P", 1800, 28.8)]}
    w = drift_summary(long, window=2)
    assert [(r["second_p"], r["last_p"]) for r in w["periods"]] == [(2, 5)]
    assert w["worst_bits_ratio_full"] == pytest.approx(3300 / 2500)
    assert w["worst_psnr_yuv_drop_full"] == pytest.approx(((29.4 + 29.2) - (29.0 + 28.8)) / 2)
    assert drift_summary(point, window=2)["periods"] == []
    from mobilecodec.rdresults import format_period_drift

    # the full periods' figure first (the documented drift; the cut-short period's led the line)
    assert format_period_drift(d) == ("bits x1.50, PSNR-YUV -0.50 dB (the full period); bits x1.50, "
                                      "PSNR-YUV -1.00 dB with the cut-short last one")
    assert format_period_drift(w) == "bits x1.32, PSNR-YUV -0.40 dB (one period)"
    # fewer frames coded than its intra period (a short clip, or --frames): the period is cut short; it said
    # "by the clip" of --frames 4 on carphone
    cut = drift_summary({"intra_period": 8, "per_frame": long["per_frame"]})
    assert format_period_drift(cut).endswith(", no full intra period (the coded frames end inside it)")


def test_raw_yuv_input_codes_like_the_same_frames_in_y4m(tiny_checkpoint, carphone, tmp_path):
    """`eval X.yuv --size WxH --fps F`: the same bits and qualities as the same frames in a .y4m,
    and the report names the .yuv; --size without a raw input is refused."""
    from mobilecodec.io import read_frames
    from mobilecodec.io.frame import frame_to_bytes

    frames = read_frames(carphone, 2)
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(b"".join(frame_to_bytes(f) for f in frames))
    reports = {}
    for name, src, extra in (("raw", raw, ("--size", "176x144", "--fps", "29.97")), ("y4m", carphone, ())):
        p = cli_here("eval", src, "--checkpoint", tiny_checkpoint, "--frames", "2", "-o", tmp_path / name,
                     "--no-progress", "--json", tmp_path / f"{name}.json", *extra)
        assert p.returncode == 0, p.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())["results"][0]["result"]
    a, b = reports["raw"]["points"][0], reports["y4m"]["points"][0]
    assert a["bits"] == b["bits"] and a["psnr_yuv"] == b["psnr_yuv"] and a["hash_verified_frames"] == 2
    assert reports["raw"]["source"] == str(raw) and reports["raw"]["frames"] == 2
    assert_clean_error(cli_here("eval", carphone, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "x",
                                "--size", "176x144"), "raw .yuv")


def test_inputs_and_checkpoints_of_one_name_keep_their_own_results(tiny_checkpoint, carphone, tmp_path, capsys):
    """Two raw inputs both named clip.yuv (other frames) are coded each from its own frames (the
    first was reported with the second's numbers), numbered 0_clip and 1_clip; two runs' final.pt in
    same-named folders get labels with as many parent folders as it takes."""
    import shutil

    from mobilecodec.io import read_frames
    from mobilecodec.io.frame import frame_to_bytes

    frames = read_frames(carphone)
    for name, part in (("a", frames[0:2]), ("b", frames[60:62])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "clip.yuv").write_bytes(b"".join(frame_to_bytes(f) for f in part))
    size = ("--size", "176x144", "--fps", "30")
    both = cli_here("eval", tmp_path / "a" / "clip.yuv", tmp_path / "b" / "clip.yuv", "--checkpoint", tiny_checkpoint,
                    "-o", tmp_path / "ab", "--no-progress", "--json", tmp_path / "ab.json", *size)
    assert both.returncode == 0, both.stderr
    pair = {Path(r["result"]["source"]).parent.name: r["result"]["points"][0]
            for r in json.loads((tmp_path / "ab.json").read_text())["results"]}
    alone = cli_here("eval", tmp_path / "a" / "clip.yuv", "--checkpoint", tiny_checkpoint, "-o", tmp_path / "a1",
                     "--no-progress", "--json", tmp_path / "a1.json", *size)
    assert alone.returncode == 0, alone.stderr
    a = json.loads((tmp_path / "a1.json").read_text())["results"][0]["result"]["points"][0]
    assert pair["a"]["psnr_yuv"] == a["psnr_yuv"] and pair["a"]["bits"] == a["bits"]
    assert pair["a"]["psnr_yuv"] != pair["b"]["psnr_yuv"]
    assert sorted(p.name for p in (tmp_path / "ab").glob("*_eval.json")) == ["0_clip_eval.json", "1_clip_eval.json"]
    from mobilecodec.evaluate import checkpoint_labels

    runs = []
    for exp in ("x", "y"):
        (tmp_path / exp / "run").mkdir(parents=True)
        runs.append(tmp_path / exp / "run" / "final.pt")
        shutil.copyfile(tiny_checkpoint, runs[-1])
    assert checkpoint_labels(runs) == ["x_run_final", "y_run_final"]
    # a copy of a run under a folder that repeats the whole path of the first: the labels reached the
    # root "/" (a stream file name with a folder in it, "No such file or directory")
    deep = tmp_path / "copy" / tmp_path.relative_to(tmp_path.anchor) / "x" / "run" / "final.pt"
    deep.parent.mkdir(parents=True)
    shutil.copyfile(tiny_checkpoint, deep)
    labels = checkpoint_labels([runs[0], deep])
    assert len(set(labels)) == 2 and not any("/" in label for label in labels), labels
    # an input that is not a regular file is said to be one (a pipe was "no such input video")
    import os

    os.mkfifo(tmp_path / "pipe.y4m")
    assert main(["eval", str(tmp_path / "pipe.y4m"), "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "P")]) == 2
    assert "is not a regular file (a pipe or a device)" in capsys.readouterr().err


def test_package_points_code_the_package_encoders_stream(tiny_checkpoint, tiny_package, carphone, tmp_path, capsys,
                                                         monkeypatch):
    """`eval --package` codes a point with the package's graphs on onnxruntime: its stream is the
    one `encode --package` writes for the same frames, every frame decoded hash-exact, and it sits
    beside a checkpoint's PyTorch point in one report. Package and checkpoint given by relative
    paths are recorded absolute, as the streams are (a package was recorded as typed: runtime audit)."""
    import os

    out, args = tmp_path / "OUT", ["--frames", str(FRAMES), "--intra-period", str(INTRA), "--threads", "1",
                                   "--no-progress"]
    monkeypatch.chdir(tmp_path)
    rel_pkg, rel_ckpt = os.path.relpath(tiny_package), os.path.relpath(tiny_checkpoint)
    rc = main(["eval", str(carphone), "--package", rel_pkg, "--checkpoint", rel_ckpt, "-o", str(out), *args,
               "--json", str(tmp_path / "rep.json")])
    text = capsys.readouterr().out
    assert rc == 0
    assert json.loads((tmp_path / "rep.json").read_text())["checkpoints"] == [str(tiny_checkpoint), str(tiny_package)]
    points = {p["label"]: p for p in json.loads((out / "carphone_eval.json").read_text())["points"]}
    assert set(points) == {tiny_package.name, tiny_checkpoint.stem}
    pk, ck = points[tiny_package.name], points[tiny_checkpoint.stem]
    assert pk["backend"].startswith("onnxruntime CPU") and pk["package"] == str(tiny_package)
    assert pk["checkpoint"] == str(tiny_package) and ck["checkpoint"] == str(tiny_checkpoint)
    assert "backend" not in ck and "package" not in ck
    assert pk["hash_verified_frames"] == FRAMES
    assert f"{tiny_package.name}: package {tiny_package} on onnxruntime CPU" in text
    assert main(["encode", str(carphone), "--package", str(tiny_package), "-o", str(tmp_path / "enc.mnvc"),
                 *args]) == 0
    stream = out / "streams" / f"carphone_{tiny_package.name}.mnvc"
    assert stream.read_bytes() == (tmp_path / "enc.mnvc").read_bytes()
    assert pk["bits"] == 8 * stream.stat().st_size


@pytest.mark.parametrize("case", ["nothing", "missing_package", "refine", "wrong_size", "ep_without_package", "twice"])
def test_bad_package_input_exits_2(case, tiny_package, tiny_checkpoint, carphone, bikes, tmp_path, capsys,
                                   monkeypatch):
    import mobilecodec.evaluate as ev

    coded = []  # the points coded before the refusal: a package of another size was found at its own point,
    real = ev.code_point  # after every input and checkpoint before it (runtime audit, session 39)
    monkeypatch.setattr(ev, "code_point", lambda *a, **k: coded.append(a[1]) or real(*a, **k))
    inp, models, word = [str(carphone)], ["--package", str(tiny_package)], ""
    if case == "nothing":
        models, word = [], "--checkpoint"
    elif case == "ep_without_package":
        models, word = ["--checkpoint", str(tiny_checkpoint), "--ep", "qnn"], "--ep applies to --package"
    elif case == "missing_package":
        models, word = ["--package", str(tmp_path / "absent_pkg")], "absent_pkg"
    elif case == "refine":
        models, word = models + ["--refine", "5"], "--refine"
    elif case == "twice":  # it said "checkpoints must be distinct" of two packages (runtime audit)
        models, word = ["--package", f"{tiny_package},{tiny_package}"], "checkpoints and packages must be distinct"
    else:  # carphone fits the package, bikes does not; the checkpoint's points come first
        inp, word = [str(carphone), str(bikes)], "exported for 192x192"
        models = ["--checkpoint", str(tiny_checkpoint), *models]
    capsys.readouterr()
    rc = main(["eval", *inp, *models, "--frames", "1", "-o", str(tmp_path / "OUT"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("mobilecodec eval: error:") and word in err[0], err
    assert not (tmp_path / "OUT").exists()  # not even an empty streams/ folder
    assert coded == []


def test_drift_trend_recovers_a_known_position_effect():
    """Bits built exactly as exp(5 + 0.5 log(1 + change) + 0.02 position) over two full periods of 8
    and a cut-short third: the fit returns 0.02 per frame (2.02 %), 0.5 for the content, and leaves
    the I-frames, the first P-frames and the cut-short period out."""
    import math

    from mobilecodec.rdresults import drift_trend

    period, n = 8, 20
    content = [0.0] + [float((7 * i) % 11 + 1) for i in range(1, n)]
    per_frame = []
    for i in range(n):
        pos = i % period
        bits = 9000.0 if pos == 0 else math.exp(5 + 0.5 * math.log1p(content[i]) + 0.02 * pos)
        per_frame.append({"index": i, "type": "I" if pos == 0 else "P", "bits": bits})
    per_frame[1]["bits"] = per_frame[9]["bits"] = 1e6  # first P-frames: left out
    per_frame[17]["bits"] = per_frame[19]["bits"] = 1.0  # the cut-short period: left out
    t = drift_trend({"per_frame": per_frame}, content, period)
    assert t["frames"] == 12  # positions 2-7 of two periods
    assert t["per_frame_pct"] == pytest.approx(100 * (math.exp(0.02) - 1), abs=1e-9)
    assert t["content_elasticity"] == pytest.approx(0.5, abs=1e-9)
    assert t["over_period"] == pytest.approx(math.exp(0.02 * 5), abs=1e-9)
    assert t["r2"] == pytest.approx(1.0, abs=1e-12) and t["per_frame_se_pct"] < 1e-6
    assert drift_trend({"per_frame": per_frame[:9]}, content, period)["frames"] == 6  # one full period
    assert drift_trend({"per_frame": per_frame[:7]}, content, period) is None  # no full period
    # with noise, its SE is on the scale of the figure it qualifies (percent per frame: exp(b) x SE of b,
    # not 100 x SE of the log coefficient b, which understated it), from an OLS fit made here
    import numpy as np

    noisy = [dict(f, bits=f["bits"] * math.exp(0.3 * math.sin(3.1 * f["index"]))) for f in per_frame]
    rows = [f for f in noisy if f["type"] == "P" and 2 <= f["index"] % period and f["index"] < 16]
    x = np.array([[1.0, math.log1p(content[f["index"]]), f["index"] % period] for f in rows])
    y = np.log([f["bits"] for f in rows])
    b, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = y - x @ b
    se = math.sqrt((r @ r) / (len(rows) - 3) * np.linalg.inv(x.T @ x)[2, 2])
    t = drift_trend({"per_frame": noisy}, content, period)
    assert t["per_frame_se_pct"] == pytest.approx(100 * math.exp(b[2]) * se, rel=1e-9)
    assert t["over_period_2se"][1] == pytest.approx(math.exp((b[2] + 2 * se) * 5), rel=1e-9)


def test_interrupted_eval_leaves_nothing(carphone, tmp_path):
    """Ctrl-C after the first point's stream was coded (it waits in OUT/.staging-*/streams/ until every point
    is measured): nothing is left, no stream without its results (OUT did not exist before, nor after)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "OUT"
    proc = subprocess.Popen([sys.executable, "-m", "mobilecodec", "eval", str(carphone), "--checkpoint",
                             "tiny_b0.0032,tiny_b0.0064,tiny_b0.0128", "--frames", "16", "--threads", "1",
                             "--no-progress", "-o", str(out)], stderr=subprocess.PIPE, text=True,
                            # a shell without job control starts background jobs with SIGINT ignored,
                            # and Python keeps an ignored SIGINT: give the child the default back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list(out.glob(".staging-*/streams/*.mnvc")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "eval ended before a point was published"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not out.exists()


def test_a_failed_rerun_leaves_the_earlier_results(carphone, tmp_path, monkeypatch, capsys):
    """A second eval into the same folder that fails while writing its plots (a full disk, simulated
    by the plot writer raising ENOSPC) withdraws what it wrote and puts the first run's streams,
    plots and JSON back as they were, byte for byte, instead of leaving the folder without them."""
    import errno

    import mobilecodec.plots

    out = tmp_path / "OUT"
    assert main(["eval", str(carphone), "--checkpoint", "tiny_b0.0032", "--frames", "2", "-o", str(out),
                 "--no-progress"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("streams/carphone_tiny_b0.0032.mnvc") in before and Path("carphone_eval.json") in before

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mobilecodec.plots, "per_frame_plot", full_disk)  # after the RD plot is written
    capsys.readouterr()
    rc = main(["eval", str(carphone), "--checkpoint", "tiny_b0.0032", "--frames", "3", "-o", str(out),
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "No space left on device" in err[0], err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_checkpoints_and_a_package_are_two_curves(shipped_anchor, tiny_package, carphone, tmp_path, capsys):
    """Checkpoints coded by PyTorch and a package coded by its graphs on onnxruntime sit in one report
    but are not one RD curve: the plot draws each, the BD-rate against an anchor is computed per curve
    (the four checkpoints' is the one a run of them alone gives; the one-point package curve is too
    short for one), never over the points of both; `bdrate` refuses such a file as one curve."""
    mixed, alone = tmp_path / "MIX", tmp_path / "ALONE"
    assert _eval(carphone, TEST_CKPTS, mixed, "--package", str(tiny_package), "--anchor", str(shipped_anchor),
                 "--threads", "1", "--json", str(tmp_path / "m.json")) == 0
    text = capsys.readouterr().out
    assert _eval(carphone, TEST_CKPTS, alone, "--anchor", str(shipped_anchor), "--threads", "1",
                 "--json", str(tmp_path / "a.json")) == 0
    entry = json.loads((tmp_path / "m.json").read_text())["results"][0]
    want = json.loads((tmp_path / "a.json").read_text())["results"][0]["bd"]["bd_rate"]
    assert "2 RD curves" in entry["bd"]["error"]
    curves = {c["codec"]: c for c in entry["curves"]}
    assert len(curves) == 2 and sorted(len(c["labels"]) for c in curves.values()) == [1, 4]
    four = next(c for c in curves.values() if len(c["labels"]) == 4)
    one = next(c for c in curves.values() if len(c["labels"]) == 1)
    assert four["bd"]["bd_rate"] == pytest.approx(want, abs=1e-9) and set(four["labels"]) == set(TEST_CKPTS)
    assert one["labels"] == [tiny_package.name] and "at least 4 RD points" in one["bd"]["error"]
    assert "4 or more packages (--package)" in one["bd"]["error"]
    assert "checkpoints" not in entry["bd"]["error"]  # mixed curves: more checkpoints would not help
    assert "onnxruntime" in one["codec"] and "onnxruntime" not in four["codec"]
    assert f"BD-rate vs tiny, curve {four['codec']}" in text
    assert f"RD curves (one per config and backend): " in text and f"{one['codec']}: {tiny_package.name}" in text
    assert_clean_error(cli_here("bdrate", str(shipped_anchor), str(mixed / "carphone_eval.json")), "2 RD curves")



def test_outputs_that_would_replace_an_input_or_be_blocked_are_refused_before_coding(carphone, tmp_path):
    """Eval writes OUT/<input>_eval.json, plots and OUT/streams/: an --anchor of such a name inside
    OUT was silently replaced by the new result (exit 0), a --json of that name replaced the result
    with the summary report, and a folder or file in an output's place was found only when
    publishing, after the whole run. Each is refused in one line before any coding."""
    anchor = tmp_path / "OUT" / "carphone_eval.json"
    anchor.parent.mkdir()
    anchor.write_text("{}")  # not even read: the clash is found first
    base = ["eval", carphone, "--checkpoint", "tiny_b0.0064", "--frames", "1", "--threads", "1", "--no-progress"]
    assert_clean_error(cli_here(*base, "-o", anchor.parent, "--anchor", anchor), "is the anchor")
    assert anchor.read_text() == "{}"
    assert_clean_error(cli_here(*base, "-o", tmp_path / "J", "--json", tmp_path / "J" / "carphone_eval.json"),
                       "is the --json file")
    (tmp_path / "F" / "carphone_rd.png").mkdir(parents=True)
    assert_clean_error(cli_here(*base, "-o", tmp_path / "F"), "carphone_rd.png", "is a folder")
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "streams").write_text("mine")
    assert_clean_error(cli_here(*base, "-o", tmp_path / "S"), "streams", "is a file")
    assert sorted(p.name for p in (tmp_path / "F").iterdir()) == ["carphone_rd.png"]
    assert sorted(p.name for p in (tmp_path / "S").iterdir()) == ["streams"]
    assert not (tmp_path / "J").exists()


def test_frames_ms_ssim_cannot_measure_are_refused_before_coding(carphone, tmp_path, monkeypatch):
    """An 8x8 clip: MS-SSIM needs 11x11; eval refused it only after coding the first point (baseline
    before encoding). Now in one line before any coding: no stream is made."""
    from mobilecodec.io import YUVFrame, read_frames, write_video

    f = read_frames(carphone, 1)[0]
    clip = tmp_path / "tiny8.y4m"
    write_video(clip, [YUVFrame(f.y[:8, :8].copy(), f.u[:4, :4].copy(), f.v[:4, :4].copy())], 30)
    import mobilecodec.evaluate as ev

    called = []
    original = ev.code_point
    monkeypatch.setattr(ev, "code_point", lambda *a, **k: called.append(1) or original(*a, **k))
    assert_clean_error(cli_here("eval", clip, "--checkpoint", "tiny_b0.0512", "-o", tmp_path / "OUT", "--no-progress"),
                       "tiny8.y4m: 8x8 frames are too small to measure: RD points include MS-SSIM-RGB")
    assert called == [] and not (tmp_path / "OUT").exists()


def test_a_rerun_with_fewer_checkpoints_removes_their_streams(carphone, tmp_path):
    """A second eval into the same folder with fewer checkpoints, or without --save-decoded, left the
    first run's other streams and decodes in streams/ beside a JSON that no longer lists them."""
    out = tmp_path / "OUT"
    base = ["eval", str(carphone), "--frames", "1", "-o", str(out), "--no-progress"]
    assert main([*base, "--checkpoint", "tiny_b0.0032,tiny_b0.0128", "--save-decoded"]) == 0
    assert sorted(p.name for p in (out / "streams").iterdir()) == [
        "carphone_tiny_b0.0032.mnvc", "carphone_tiny_b0.0032.y4m", "carphone_tiny_b0.0128.mnvc",
        "carphone_tiny_b0.0128.y4m"]
    # a name eval does not write stays, even when the JSON in its place lists it (it was removed)
    (out / "streams" / "mine.mnvc").write_text("a user's file")
    report = json.loads((out / "carphone_eval.json").read_text())
    report["points"].append({"stream": str(out / "streams" / "mine.mnvc")})
    (out / "carphone_eval.json").write_text(json.dumps(report))
    assert main([*base, "--checkpoint", "tiny_b0.0032"]) == 0
    assert sorted(p.name for p in (out / "streams").iterdir()) == ["carphone_tiny_b0.0032.mnvc", "mine.mnvc"]
    assert [Path(p["stream"]).name for p in json.loads((out / "carphone_eval.json").read_text())["points"]] == [
        "carphone_tiny_b0.0032.mnvc"]


def test_a_points_stream_is_found_from_anywhere(carphone, tmp_path, monkeypatch):
    """`stream` in the result JSON was out/streams/... as -o was given: run with a relative -o, it
    named no file from any other folder (where `bdrate` or a notebook reads the JSON)."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(run)
    assert main(["eval", str(carphone), "--frames", "1", "--checkpoint", "tiny_b0.0032", "-o", "OUT",
                 "--no-progress"]) == 0
    monkeypatch.chdir(elsewhere)
    (point,) = json.loads((run / "OUT" / "carphone_eval.json").read_text())["points"]
    assert Path(point["stream"]).read_bytes() == (run / "OUT" / "streams" / "carphone_tiny_b0.0032.mnvc").read_bytes()
    # the report's list of files names them all as -o was given (the streams too)
    monkeypatch.chdir(run)
    assert main(["eval", str(carphone), "--frames", "1", "--checkpoint", "tiny_b0.0032", "-o", "OUT",
                 "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    files = json.loads((tmp_path / "r.json").read_text())["files"]
    assert "OUT/streams/carphone_tiny_b0.0032.mnvc" in files and all(f.startswith("OUT/") for f in files), files


def test_the_rd_plot_tells_the_anchor_from_the_test(carphone, tmp_path, monkeypatch):
    """An earlier eval of our codec as the anchor was drawn as a second curve of the same name (told
    apart only by '#1' / '#2'), and an anchor measured in another colour matrix overlaid its PSNR-RGB
    without a word."""
    import mobilecodec.plots as plots

    drawn = []
    real = plots.rd_plot
    monkeypatch.setattr(plots, "rd_plot", lambda results, *a, **k: drawn.append(results) or real(results, *a, **k))
    base = ["eval", str(carphone), "--frames", "1", "--checkpoint", "tiny_b0.0032", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "A")]) == 0
    assert main([*base, "-o", str(tmp_path / "B"), "--anchor", str(tmp_path / "A" / "carphone_eval.json"),
                 "--matrix", "bt709"]) == 0
    names = [r["codec"] for r in drawn[-1]]
    assert names == ["tiny", "anchor: tiny, RGB in bt601"], names
    assert (tmp_path / "B" / "carphone_rd.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("key", ["psnr_yuv", "bits"])
def test_the_per_frame_legend_covers_no_curve(run, key):
    """The legend lay inside the axes and, with the demo's five curves, covered the last frames of the
    period, where the drift is (demo audit): it lies below them, clear of every plotted point."""
    import matplotlib.pyplot as plt

    from mobilecodec.plots import per_frame_figure

    res = run[2]
    many = [dict(res, codec=f"{res['codec']} {k}") for k in range(3)]  # the demo's plot holds 3 results
    fig = per_frame_figure(many, key)
    try:
        fig.canvas.draw()  # positions as saved
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent(renderer)
        assert len(ax.get_legend().get_texts()) == 3 * len(res["points"])
        assert legend.y1 < ax.get_window_extent(renderer).y0  # below the axes
        assert legend.y1 < ax.xaxis.label.get_window_extent(renderer).y0  # and below "frame"
        assert legend.y0 >= 0  # inside the saved figure
    finally:
        plt.close(fig)


def test_fps_gives_a_file_another_rate_as_encode_does(carphone, tmp_path):
    """A .y4m whose header rate is out of range is told 'give the real rate with --fps'; eval then
    refused --fps ('describe raw .yuv inputs') where encode took it."""
    from cli_run import assert_clean_error, cli_here

    from mobilecodec.io import read_frames

    fast = tmp_path / "fast.y4m"
    with open(fast, "wb") as f:
        f.write(b"YUV4MPEG2 W176 H144 F5000:1 Ip A1:1 C420jpeg\n")
        for fr in read_frames(carphone, 2):
            f.write(b"FRAME\n" + fr.y.tobytes() + fr.u.tobytes() + fr.v.tobytes())
    base = ["eval", fast, "--checkpoint", "tiny_b0.0064", "--no-progress"]
    assert_clean_error(cli_here(*base, "-o", tmp_path / "A"), "give the real rate with --fps")
    assert cli_here(*base, "-o", tmp_path / "B", "--fps", "30000/1001").returncode == 0
    res = json.loads((tmp_path / "B" / "fast_eval.json").read_text())
    assert res["fps"] == pytest.approx(30000 / 1001) and res["frames"] == 2 and res["source"] == str(fast)
    assert_clean_error(cli_here(*base, "-o", tmp_path / "C", "--size", "176x144"), "--size describes raw .yuv inputs")
