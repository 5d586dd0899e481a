"""`mobilecodec check-int8` with real aimet sims and the real encoder/decoder on carphone: the
judging rule (each curve spans >= 1 dB, the curves share >= half of each one's quality range) on
hand-made numbers, INCONCLUSIVE (exit 3) for two flat curves from real encodes, the PASS/FAIL
verdict following --max-bdrate, the report's numbers against the stream files, bad input exits 2.

Two RD points per curve are needed for a BD-rate (pchip), and they must span >= 1 dB. Neighbouring
shipped `tiny` checkpoints are nearly flat on few frames (tiny_b0.0064 and tiny_b0.0128: 27.59 and
27.40 dB on the first 2 carphone frames, 0.19 dB apart), so they make the flat pair. The judgeable
pair puts a random-init `tiny` with its latents scaled down (0.079 bpp at 15.9 dB) below the
lowest-beta shipped checkpoint (0.152 bpp at 28.2 dB): a curve spanning ~12 dB. (The unscaled
random model, 0.176 bpp, no longer sits below the tiny-cpu recipe's checkpoints in rate.)"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mobilecodec.cli import main
from mobilecodec.errors import InputError

FRAMES, INTRA = 2, 2
OTHERS = ("psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim_rgb")


# the judging rule on hand-made numbers ------------------------------------------------------------

@pytest.mark.parametrize("fq, qq, judgeable, needle", [
    ([24.0, 25.5], [24.2, 25.6], True, None),  # spans 1.5 / 1.4 dB, share 1.3 dB = 87 % of 1.5
    ([24.0, 25.0], [24.0, 25.0], True, None),  # exactly 1 dB each, fully shared
    ([24.0, 26.0], [25.0, 27.0], True, None),  # share exactly half of each 2 dB range
    ([24.0, 26.0], [25.2, 27.2], False, "share 0.800 dB of quality, 40 %"),
    ([24.0, 26.0], [24.5, 28.0], False, "share 1.500 dB of quality, 43 %"),  # 75 % of float, 43 % of int8
    ([25.36, 25.62, 25.695, 25.725], [25.29, 25.57, 25.62, 25.66], False, "float curve spans only 0.365 dB"),
    ([24.0, 25.5], [24.9, 25.1], False, "int8 curve spans only 0.200 dB"),
    ([25.0], [25.1], False, "1 RD point(s) per curve"),
])
def test_judge_rule_on_hand_made_numbers(fq, qq, judgeable, needle):
    from mobilecodec.quant.check import judge_curves

    j = judge_curves(fq, qq)
    assert j["judgeable"] is judgeable
    if judgeable:
        assert j["reason"] is None
    else:
        assert needle in j["reason"]


def _res(points: list[tuple[float, float]]) -> dict:
    return {"points": [{"label": f"p{i}", "bpp": r, "bits": 0, "psnr_yuv": d, "per_frame": [],
                        **{k: 0.0 for k in OTHERS}}
                       for i, (r, d) in enumerate(points)]}


def test_compare_reports_bd_only_for_judgeable_curves():
    from mobilecodec.quant.check import CheckOptions, compare, judge_results

    # x264-like anchor over 7 dB; int8 at 80 % of the rate everywhere: BD-rate exactly -20 %
    anchor = [(1520.3, 38.71), (905.7, 36.42), (541.2, 34.05), (322.9, 31.66)]
    c = compare(_res(anchor), _res([(0.8 * r, d) for r, d in anchor]), ("psnr_yuv",))
    assert c["inconclusive"] == {} and c["bd_rate"]["psnr_yuv"] == pytest.approx(-20.0, abs=1e-9)
    assert [d["d_bpp_pct"] for d in c["point_deltas"]] == pytest.approx([-20.0] * 4)
    verdict = judge_results([{"source": "clip.y4m", "comparison": c}], CheckOptions(bd_metrics=("psnr_yuv",)))[0]
    assert verdict.startswith("PASS") and "points per curve" not in verdict
    # two points per curve (the demo's): judged, and the verdict says what `bdrate` would not report
    two = compare(_res(anchor[:2]), _res([(0.8 * r, d) for r, d in anchor[:2]]), ("psnr_yuv",))
    verdict = judge_results([{"source": "clip.y4m", "comparison": two}], CheckOptions(bd_metrics=("psnr_yuv",)))[0]
    assert verdict.startswith("PASS") and "on 2 points per curve, fewer than the 4 that bdrate" in verdict
    # four points of which --frontier drops a dominated one: the figure rests on three
    dominated = [*anchor[:3], (950.0, 36.0)]
    three = compare(_res(dominated), _res([(0.8 * r, d) for r, d in dominated]), ("psnr_yuv",), True)
    verdict = judge_results([{"source": "clip.y4m", "comparison": three}], CheckOptions(bd_metrics=("psnr_yuv",)))[0]
    assert three["bd_dropped"] and "on 3 points per curve" in verdict
    # flat curves (0.3 dB): the same -20 % in rate, but no BD figure, and the verdict says why
    flat = [(0.066, 25.36), (0.084, 25.62), (0.148, 25.66)]
    c = compare(_res(flat), _res([(0.8 * r, d - 0.01) for r, d in flat]), ("psnr_yuv",))
    assert c["bd_rate"] == {} and "float curve spans only 0.300 dB" in c["inconclusive"]["psnr_yuv"]
    assert [d["d_psnr_yuv"] for d in c["point_deltas"]] == pytest.approx([-0.01] * 3)
    verdict, passed, loss, bd, reasons = judge_results([{"source": "clip.y4m", "comparison": c}],
                                                        CheckOptions(bd_metrics=("psnr_yuv",)))
    assert passed is None and loss is None and bd == {} and verdict.startswith("INCONCLUSIVE")
    assert reasons == ["psnr_yuv: the float curve spans only 0.300 dB (< 1 dB); "
                       "the int8 curve spans only 0.300 dB (< 1 dB)"]


def test_large_losses_fail_instead_of_going_inconclusive():
    """int8 at 10x the rate for the same qualities: the rate ranges do not overlap, so there is no
    BD-PSNR, but the BD-rate is exactly +900 % on a straight curve and the check FAILs; and a metric
    that cannot be judged does not rescue another that already fails."""
    import math

    from mobilecodec.quant.check import CheckOptions, compare, judge_curves, judge_results

    line = [(r, 30.0 + 10.0 * math.log10(r)) for r in (0.02, 0.04, 0.08, 0.16)]
    c = compare(_res(line), _res([(10 * r, d) for r, d in line]), ("psnr_yuv",))
    assert c["inconclusive"] == {} and c["bd_rate"]["psnr_yuv"] == pytest.approx(900.0, rel=1e-9)
    assert c["bd_psnr"]["psnr_yuv"] is None and "psnr_yuv" in c["bd_psnr_error"]
    # at 5x the rate the log rates share 0.204 of 0.903 decades (23 %): a BD-PSNR (-6.99 dB) over that
    # sliver was printed bare (found by the quant audit); it now says so, as `bdrate` does
    from mobilecodec.quant.check_report import bd_lines

    c5 = compare(_res(line), _res([(5 * r, d) for r, d in line]), ("psnr_yuv",))
    assert c5["bd_psnr"]["psnr_yuv"] == pytest.approx(-10 * math.log10(5), rel=1e-6)
    assert c5["bd_psnr_note"]["psnr_yuv"] == ("the curves share 0.204 of log10 rate, 23 % of the anchor's range "
                                             "and 23 % of the test's: the figure averages over that alone")
    assert any("-6.9897 dB (the curves share 0.204 of log10 rate" in line_ for line_ in bd_lines(c5)), bd_lines(c5)
    assert "bd_psnr_note" not in compare(_res(line), _res([(1.25 * r, d) for r, d in line]), ("psnr_yuv",))
    verdict, passed, loss, _, _ = judge_results([{"source": "clip.y4m", "comparison": c}],
                                                CheckOptions(bd_metrics=("psnr_yuv",)))
    assert passed is False and loss == pytest.approx(900.0) and verdict.startswith("FAIL")
    # psnr_yuv judged at +25 %, psnr_rgb flat (not judgeable): FAIL, the unjudged metric listed
    fres, qres = _res(line), _res([(1.25 * r, d) for r, d in line])
    for res in (fres, qres):
        for p in res["points"]:
            p["psnr_rgb"] = 25.0 + 0.01 * p["psnr_yuv"]
    c = compare(fres, qres, ("psnr_yuv", "psnr_rgb"))
    assert set(c["inconclusive"]) == {"psnr_rgb"} and c["bd_rate"]["psnr_yuv"] == pytest.approx(25.0, rel=1e-9)
    verdict, passed, loss, _, reasons = judge_results([{"source": "clip.y4m", "comparison": c}],
                                                      CheckOptions(bd_metrics=("psnr_yuv", "psnr_rgb")))
    assert passed is False and verdict.startswith("FAIL") and "psnr_rgb" in verdict and reasons
    # a small loss stays inconclusive: the unjudged metric could be the worse one
    small = _res([(1.02 * r, d) for r, d in line])
    for p in small["points"]:
        p["psnr_rgb"] = 25.0 + 0.01 * p["psnr_yuv"]
    c = compare(fres, small, ("psnr_yuv", "psnr_rgb"))
    verdict, passed, _, _, _ = judge_results([{"source": "clip.y4m", "comparison": c}],
                                             CheckOptions(bd_metrics=("psnr_yuv", "psnr_rgb")))
    assert passed is None and verdict.startswith("INCONCLUSIVE")
    assert judge_curves([30.0, float("inf")], [30.5, 33.0])["reason"].startswith("a point has an infinite")


def test_a_collapsed_int8_point_is_named_where_no_bd_figure_can_be_judged():
    """int8 that lost 5 dB at its high-rate point made its own curve flat, and the check said
    INCONCLUSIVE, "the int8 curve spans only 0.439 dB", as if nothing were known (demo audit). A float
    point with at most its bits and more quality bounds the loss without any curve: 0.0404 / 0.0150 - 1
    = +169 % here. The verdict stays INCONCLUSIVE (issue #13's rule) and names that point. Float
    points that a flat float curve itself beats are netted out: noise gets no such line."""
    from mobilecodec.quant.check import CheckOptions, compare, judge_results

    fl = [(0.0150, 26.5), (0.0404, 27.6)]                       # the demo's two points
    q = [(0.0152, 22.2), (0.0404, 22.6)]                        # int8 4-5 dB down, its curve 0.4 dB flat
    c = compare(_res(fl), _res(q), ("psnr_yuv",))
    assert "the int8 curve spans only 0.400 dB" in c["inconclusive"]["psnr_yuv"]
    assert c["dominated"]["psnr_yuv"] == [
        {"int8": "p0", "float": "p0", "rate_loss_pct": pytest.approx(100 * (0.0152 / 0.0150 - 1)), "d_db": pytest.approx(-4.3)},
        {"int8": "p1", "float": "p0", "rate_loss_pct": pytest.approx(100 * (0.0404 / 0.0150 - 1)), "d_db": pytest.approx(-3.9)}]
    verdict, passed, loss, bd, reasons = judge_results([{"source": "clip.y4m", "comparison": c}],
                                                        CheckOptions(bd_metrics=("psnr_yuv",)))
    assert passed is None and loss is None and bd == {} and reasons and verdict.startswith("INCONCLUSIVE")
    assert verdict.endswith(". BUT int8 point p1 needs at least 169.3% more bits than float for its quality (float "
                            "point p0: 3.90 dB more psnr_yuv at no more bits), beyond the allowed 5%: int8 is damaged "
                            "there"), verdict
    # a flat float curve whose high-rate point its low-rate point beats: int8 a hair under each float
    # point is beaten by 0.35 / 0.30 - 1 = 17 %, as float itself is: nothing is int8's, INCONCLUSIVE
    flat = [(0.30, 23.05), (0.35, 23.00)]
    c = compare(_res(flat), _res([(r, d - 0.01) for r, d in flat]), ("psnr_yuv",))
    assert c["dominated"]["psnr_yuv"] == []
    assert "BUT" not in judge_results([{"source": "clip.y4m", "comparison": c}], CheckOptions(bd_metrics=("psnr_yuv",)))[0]


def test_quality_at_equal_rate_against_a_straight_float_curve():
    """pchip through points on a line (quality linear in log10 rate) is that line, so the figure has
    a hand value: int8 at 80 % of the rate and 0.01 dB lower sits -0.01 - 10 log10(0.8) dB above the float
    curve; an int8 point below the float curve's lowest rate gets none (no extrapolation)."""
    import math

    from mobilecodec.quant.check import compare
    from mobilecodec.quant.check_report import bd_lines

    line = [(r, 30.0 + 10.0 * math.log10(r)) for r in (0.02, 0.04, 0.08, 0.16)]
    c = compare(_res(line), _res([(0.8 * r, d - 0.01) for r, d in line]), ("psnr_yuv",))
    eq = c["equal_rate"]["psnr_yuv"]
    want = -0.01 - 10.0 * math.log10(0.8)  # +0.959 dB: the same quality for 20 % fewer bits
    assert eq["d_db"][0] is None and eq["d_db"][1:] == pytest.approx([want] * 3, abs=1e-9)
    assert eq["mean_db"] == pytest.approx(want, abs=1e-9) and eq["points"] == 3
    text = "\n".join(bd_lines(c))
    assert f"mean {want:+.4f} dB over 3 point(s)" in text and "outside the float rates" in text
    # a float curve that is not monotonic gets no figure, and says why
    bent = compare(_res([(0.02, 30.0), (0.04, 29.0)]), _res([(0.03, 29.5), (0.04, 29.0)]), ("psnr_yuv",))
    assert bent["equal_rate"]["psnr_yuv"]["mean_db"] is None and "not monotonic" in bent["equal_rate"]["psnr_yuv"]["error"]


def test_frontier_only_when_asked_and_dropped_points_listed():
    from mobilecodec.quant.check import compare
    from mobilecodec.quant.check_report import bd_lines

    anchor = [(322.9, 31.66), (541.2, 34.05), (905.7, 36.42), (1520.3, 38.71)]
    # int8 damages its third point: more bits for less quality than its second point
    bent = [(322.9, 31.60), (541.2, 34.00), (700.0, 33.90), (1520.3, 38.60)]
    strict = compare(_res(anchor), _res(bent), ("psnr_yuv",))
    assert strict["bd_rate"] == {} and "not monotonic" in strict["inconclusive"]["psnr_yuv"]
    pruned = compare(_res(anchor), _res(bent), ("psnr_yuv",), frontier=True)
    assert pruned["bd_dropped"] == {"psnr_yuv": {"int8": ["p2"]}} and "psnr_yuv" in pruned["bd_rate"]
    text = "\n".join(bd_lines(pruned))
    assert "dominated points left out: int8 p2" in text and "p2 -> p2: bpp -22.71 %, PSNR-YUV -2.5200 dB" in text


# real encodes -------------------------------------------------------------------------------------

def _shipped_tiny() -> dict[str, Path]:
    from mobilecodec.checkpoint import read_checkpoint, shipped_checkpoints

    return {n: p for n, p in shipped_checkpoints().items() if read_checkpoint(p)["config"].get("name") == "tiny"}


def _quantize(model, f, tmp: Path, carphone, w8a16: tuple[str, ...] = ()) -> Path:
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model, save_quantized

    gops = load_gops([carphone], 2, (64, 64), 2, seed=0)
    q = quantize_model(model, QuantConfig(w8a16=w8a16), gops, steps=1, batch=2, progress=False)
    return save_quantized(tmp / f"Q_{Path(f).stem}{'_w8a16' if w8a16 else ''}", q, checkpoint=f)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, carphone) -> tuple[list[Path], list[Path]]:
    """Judgeable: [random-init tiny (0.079 bpp, ~16 dB), the lowest-beta shipped tiny, the highest-rate
    point (tiny_b0.0008, the lowest until tiny_b0.0004 shipped, gave 0.152 bpp, ~28 dB on these frames)]."""
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from models_for_tests import random_tiny

    tmp = tmp_path_factory.mktemp("check")
    shipped = _shipped_tiny()
    assert shipped, "no shipped tiny checkpoint"
    best = min(shipped, key=lambda n: float(n.rsplit("_b", 1)[1]))
    floats = [save_checkpoint(tmp / "random_cheap.pt", random_tiny("cheap"), beta=1.0), shipped[best]]
    qdirs = [_quantize(load_checkpoint(f)[0], f, tmp, carphone) for f in floats]
    return floats, qdirs


@pytest.fixture(scope="module")
def flat_pairs(tmp_path_factory, carphone) -> tuple[list[Path], list[Path]]:
    """Flat: tiny_b0.0064 and tiny_b0.0128 (0.19 dB apart on 2 carphone frames)."""
    from mobilecodec.checkpoint import load_checkpoint

    tmp = tmp_path_factory.mktemp("flat")
    shipped = _shipped_tiny()
    floats = [shipped["tiny_b0.0064"], shipped["tiny_b0.0128"]]
    return floats, [_quantize(load_checkpoint(f)[0], f, tmp, carphone) for f in floats]


def _check(carphone, floats, qdirs, *extra) -> int:
    return main(["check-int8", str(carphone), "--float", ",".join(map(str, floats)),
                 "--int8", ",".join(map(str, qdirs)), "--intra-period", str(INTRA), "--frames", str(FRAMES),
                 "--no-progress", *extra])


@pytest.fixture(scope="module")
def first_run(pairs, carphone, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "OUT"
    rc = _check(carphone, *pairs, "--max-bdrate", "1000", "--sensitivity-frames", "2", "-o", str(out))
    return rc, out, json.loads((out / "check_int8.json").read_text())


def test_verdict_follows_threshold(first_run, pairs, carphone, capsys):
    rc, _, report = first_run
    loss = report["bd_rate_loss"]
    assert math.isfinite(loss) and loss < 1000
    assert rc == 0 and report["passed"] is True
    assert loss == pytest.approx(max(report["bd_rate"]["psnr_yuv"], report["bd_rate"]["psnr_rgb"]))
    capsys.readouterr()
    # measured - 1 is below the measured loss whatever its sign: must fail with exit 1
    assert _check(carphone, *pairs, "--max-bdrate", str(loss - 1), "--sensitivity-frames", "0") == 1
    assert "verdict: FAIL" in capsys.readouterr().out


def test_report_files_and_numbers(first_run, carphone, pairs, tmp_path):
    from mobilecodec.codec.video import encode_video
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.io import open_video
    from mobilecodec.rdresults import load_results

    _, out, report = first_run
    for name in ("check_int8.md", "carphone_rd.png", "carphone_per_frame_psnr.png", "carphone_per_frame_bits.png",
                 "carphone_drift_psnr.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "carphone_rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "check_int8.md").read_text()
    assert "FAIL" not in md and "PASS" in md
    # every PSNR column says its unit (the RD and per-frame tables did not, the sensitivity table did)
    cells = [c.strip() for line in md.splitlines() if line.startswith("| ") for c in line.split("|")]
    assert "PSNR-YUV (dB)" in cells and "PSNR-YUV int8 (dB)" in cells
    assert not [c for c in cells if re.fullmatch(r"(d )?PSNR-(YUV|RGB)( float| int8)?", c)]
    res = report["results"][0]
    for kind in ("float", "int8"):
        rd = load_results(out / f"carphone_{kind}.json", require_per_frame=True)
        assert rd["frames"] == FRAMES and (rd["width"], rd["height"]) == (176, 144)
        assert len(rd["points"]) == 2
        for p in rd["points"]:
            assert p["bpp"] == pytest.approx(p["bits"] / (FRAMES * 176 * 144))
            assert sum(f["bits"] for f in p["per_frame"]) == p["bits"] - p["header_bits"]
            assert [f["type"] for f in p["per_frame"]] == ["I", "P"]
            assert p["hash_verified_frames"] == FRAMES
    # an independent encode of the first float point gives the same file size
    model, _ = load_checkpoint(pairs[0][0])
    encode_video(model, carphone, tmp_path / "f.mnvc", intra_period=INTRA, max_frames=FRAMES, progress=False)
    p0 = res["float"]["points"][0]
    assert p0["bits"] == 8 * (tmp_path / "f.mnvc").stat().st_size
    # PSNR-Y of frame 0 by hand from the decoded frames of that stream
    from mobilecodec.codec.video import decode_video

    decode_video(model, tmp_path / "f.mnvc", tmp_path / "f.y4m", progress=False)
    with open_video(carphone, max_frames=1) as a, open_video(tmp_path / "f.y4m") as b:
        ref, dec = next(iter(a)), next(iter(b))
    mse = np.mean((ref.y.astype(np.float64) - dec.y.astype(np.float64)) ** 2)
    assert p0["per_frame"][0]["psnr_y"] == pytest.approx(10 * np.log10(255.0 ** 2 / mse), abs=1e-6)
    # drift = int8 - float per frame; sensitivity lists every quantized stage
    d = res["comparison"]["drift"][0]
    q0 = res["int8"]["points"][0]
    assert d[1]["d_psnr_yuv"] == pytest.approx(q0["per_frame"][1]["psnr_yuv"] - p0["per_frame"][1]["psnr_yuv"])
    sens = report["sensitivity"]
    assert len(sens["rows"]) == 10 and sens["frames"] == 2
    assert [r["d_psnr_yuv"] for r in sens["rows"]] == sorted(r["d_psnr_yuv"] for r in sens["rows"])
    # each row measured its own stage quantized: one row per quantized stage, and not all equal to the
    # float model (measured here: 4 of 10 stages move PSNR-YUV by 4e-5 to 5e-4 dB on this barely
    # trained pair; a sensitivity that measured the float model for every row passed; tests audit)
    assert {r["stage"] for r in sens["rows"]} == {f"{s}_{n}" for s in "imr" for n in ("analysis", "hyper_analysis")} | {
        "i_synthesis", "motion_predictor", "m_synthesis", "r_synthesis"}
    assert any(r["d_psnr_yuv"] != 0 for r in sens["rows"])


def test_flat_curves_from_real_encodes_are_inconclusive(flat_pairs, carphone, tmp_path, capsys):
    from mobilecodec.cli import build_parser

    out = tmp_path / "R"
    rc = _check(carphone, *flat_pairs, "--sensitivity-frames", "0", "-o", str(out))
    captured = capsys.readouterr()
    report = json.loads((out / "check_int8.json").read_text())
    fp = report["results"][0]["float"]["points"]
    span = abs(fp[0]["psnr_yuv"] - fp[1]["psnr_yuv"])
    assert span < 1.0, f"premise: tiny_b0.0064 and tiny_b0.0128 are < 1 dB apart on {FRAMES} frames, got {span:.3f}"
    assert rc == 3 and report["passed"] is None and report["inconclusive"] is True
    assert report["bd_rate"] == {} and report["bd_rate_loss"] is None
    assert report["results"][0]["comparison"]["bd_rate"] == {}
    assert "verdict: INCONCLUSIVE" in captured.out and f"the float curve spans only {span:.3f} dB" in captured.out
    assert "PASS" not in captured.out and "FAIL" not in captured.out
    # the per-point deltas are printed beside the (missing) BD figures
    for a, b in zip(fp, report["results"][0]["int8"]["points"]):
        assert f"{a['label']} -> {b['label']}: bpp {100 * (b['bpp'] / a['bpp'] - 1):+.2f} %, " \
               f"PSNR-YUV {b['psnr_yuv'] - a['psnr_yuv']:+.4f} dB" in captured.out
    assert "INCONCLUSIVE" in (out / "check_int8.md").read_text()
    # exit 3 is documented in --help
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["check-int8"]
    assert "3  INCONCLUSIVE" in sub.format_help() and "1  FAIL" in sub.format_help()


def test_single_pair_is_inconclusive(pairs, carphone, tmp_path, capsys):
    """One pair: INCONCLUSIVE. On a 1-frame clip with --frames 2 it codes the one frame and says so
    (it was silent, its report saying frames 2)."""
    from mobilecodec.io import read_frames, write_video

    floats, qdirs = pairs
    clip = tmp_path / "one.y4m"
    write_video(clip, read_frames(carphone, 1), 30000 / 1001)
    rc = main(["check-int8", str(clip), "--float", str(floats[1]), "--int8", str(qdirs[1]),
               "--frames", "2", "--sensitivity-frames", "0", "--no-progress", "-o", str(tmp_path / "R")])
    assert rc == 3
    out, err = capsys.readouterr()
    assert "one.y4m has 1 frames, fewer than --frames 2: coding its 1" in err, err
    assert "INCONCLUSIVE" in out and "1 RD point(s) per curve" in out
    # no equal-rate figure could be computed: it said "outside the float rates" on the line above "not available"
    assert "outside the float rates" not in out and "at equal rate: psnr_yuv n/a" in out
    rep = json.loads((tmp_path / "R" / "check_int8.json").read_text())
    assert rep["passed"] is None and len(rep["results"][0]["comparison"]["point_deltas"]) == 1


def test_a_clip_named_check_keeps_its_int8_results_apart_from_the_report(pairs, carphone, tmp_path, capsys):
    """check.y4m's int8 RD result would be named check_int8.json, the report's own name: it is numbered
    instead, and every file is listed once."""
    floats, qdirs = pairs
    clip = tmp_path / "check.y4m"
    clip.symlink_to(carphone)
    out = tmp_path / "R"
    rc = main(["check-int8", str(clip), "--float", str(floats[1]), "--int8", str(qdirs[1]),
               "--frames", "1", "--sensitivity-frames", "0", "--no-progress", "-o", str(out)])
    assert rc == 3
    rep = json.loads((out / "check_int8.json").read_text())
    assert "verdict" in rep and len(rep["files"]) == len(set(rep["files"]))
    assert json.loads((out / "0_check_int8.json").read_text())["points"][0]["label"]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in rep["files"])
    from mobilecodec.quant.check_report import planned_files

    assert sorted(planned_files([clip])) == sorted(Path(f).name for f in rep["files"])  # what is checked first
    # a second check into the same folder, on carphone: the first one's files (0_check_*) go, so the
    # folder holds one report and what it lists (they stayed beside the new ones, listed nowhere)
    (out / "notes.txt").write_text("the user's")
    rc = main(["check-int8", str(carphone), "--float", str(floats[1]), "--int8", str(qdirs[1]),
               "--frames", "1", "--sensitivity-frames", "0", "--no-progress", "-o", str(out)])
    assert rc == 3
    # and again, the same folder spelt another way: the files it lists are the ones it just wrote
    rc = main(["check-int8", str(carphone), "--float", str(floats[1]), "--int8", str(qdirs[1]),
               "--frames", "1", "--sensitivity-frames", "0", "--no-progress", "-o", f"{out}/../{out.name}/"])
    assert rc == 3
    rep = json.loads((out / "check_int8.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([*(Path(f).name for f in rep["files"]), "notes.txt"])
    assert not any(p.name.startswith("0_check") for p in out.iterdir())


@pytest.mark.parametrize("case, needle", [pytest.param(*p, id=p[0]) for p in [
    ("count", "--float lists 2 checkpoints but --int8 lists 1 folders; they are paired by order"),
    ("input", "no such input video: "),
    ("int8", "noQ (expected quantized.pt from `mobilecodec ptq`)"),
    ("swapped", "made from another checkpoint"),
    ("json_in_report", "carphone_float.json is where -o writes; name a JSON file outside "),
    ("sensitivity", "--sensitivity-frames must be >= 0 (0 skips the per-stage ablation), got -1"),  # named no flag
    # found only when publishing, after the whole check (output audit, session 40)
    ("folder_in_place", "check_int8.md is a folder where this command writes a file"),
]])
def test_bad_inputs_exit_2(case, needle, pairs, carphone, tmp_path, capsys):
    floats, qdirs = pairs
    out = ["-o", str(tmp_path / "OUT")]
    if case == "json_in_report":  # it replaced the report's own carphone_float.json, which bdrate reads
        rc = _check(carphone, floats, qdirs, *out, "--json", str(tmp_path / "OUT" / "carphone_float.json"))
    elif case == "count":
        rc = _check(carphone, floats, qdirs[:1], *out)
    elif case == "sensitivity":
        rc = _check(carphone, floats, qdirs, *out, "--sensitivity-frames", "-1")
    elif case == "input":
        rc = _check(tmp_path / "missing.y4m", floats, qdirs, *out)
    elif case == "int8":
        rc = _check(carphone, floats, [qdirs[0], tmp_path / "noQ"], *out)
    elif case == "folder_in_place":
        (tmp_path / "OUT" / "check_int8.md").mkdir(parents=True)
        rc = _check(carphone, floats, qdirs, *out, "--sensitivity-frames", "0")
    else:  # each int8 folder paired with the other float checkpoint: a verdict on the wrong models
        rc = _check(carphone, floats, qdirs[::-1], *out)
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilecodec check-int8: error: ") and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    assert not (tmp_path / "OUT").exists() or [p.name for p in (tmp_path / "OUT").iterdir()] == ["check_int8.md"]


def test_int8_folders_of_one_name_get_labels_that_tell_them_apart(flat_pairs, tmp_path):
    """The evaluate_shipped layout (int8/<checkpoint>/w8a8 for every checkpoint): labels carry the
    parent folder, so the per-point lines and the frontier's dropped points name the checkpoint."""
    import shutil

    from mobilecodec.quant.check import load_pairs

    floats, qdirs = flat_pairs
    same = []
    for f, q in zip(floats, qdirs):
        dst = tmp_path / Path(f).stem / "w8a8"
        shutil.copytree(q, dst)
        same.append(str(dst))
    labels = [p.int8_label for p in load_pairs([str(f) for f in floats], same)]
    assert labels == ["tiny_b0.0064/w8a8", "tiny_b0.0128/w8a8"]
    assert [p.int8_label for p in load_pairs([str(f) for f in floats], [str(q) for q in qdirs])] == \
        [Path(q).name for q in qdirs]
    # float checkpoints of one file name (run_a/model.pt, run_b/model.pt) likewise
    models = []
    for f in floats:
        dst = tmp_path / f"run_{Path(f).stem}" / "model.pt"
        dst.parent.mkdir()
        shutil.copyfile(f, dst)
        models.append(str(dst))
    assert [p.float_label for p in load_pairs(models, same)] == ["run_tiny_b0.0064/model", "run_tiny_b0.0128/model"]
    assert [p.float_label for p in load_pairs([str(f) for f in floats], same)] == [Path(f).stem for f in floats]
    # one pair twice (or one checkpoint or folder in two pairs) made two alike points and labels
    with pytest.raises(InputError, match=r"--float .* is given twice; each pair is one RD point"):
        load_pairs([str(floats[0])] * 2, [str(qdirs[0])] * 2)
    with pytest.raises(InputError, match=r"--int8 .* is given twice"):
        load_pairs([str(f) for f in floats], [str(qdirs[0]), str(Path(qdirs[0]) / "quantized.pt")])


def test_onnxruntime_backend_judges_the_deployed_graphs(first_run, pairs, carphone, tmp_path, capsys):
    """`--backend onnxruntime` codes the int8 side with each folder's QDQ package on onnxruntime CPU
    (exported at carphone's padded 192x192): real streams that name the package's model, every frame
    hash-verified by the same engine, the float side unchanged, and the int8 points near the
    simulation's (same quantized model, one-level rounding differences: measured -1.1 % / +1.4 % of
    the bits and +0.000 / +0.081 dB on these 2 frames, AMD Zen 3; bounds 10 % and 0.5 dB)."""
    out = tmp_path / "ORT"
    rc = _check(carphone, *pairs, "--max-bdrate", "1000", "--sensitivity-frames", "0", "--backend", "onnxruntime",
                "-o", str(out))
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "check_int8.json").read_text())
    sim = first_run[2]
    assert report["int8_backend"].startswith("onnxruntime CPU") and "onnxruntime CPU" in printed
    assert sim["int8_backend"] == "aimet simulation (PyTorch)"
    assert "onnxruntime CPU" in (out / "check_int8.md").read_text()
    res, res_sim = report["results"][0], sim["results"][0]
    assert [p["bits"] for p in res["float"]["points"]] == [p["bits"] for p in res_sim["float"]["points"]]
    for q, s in zip(res["int8"]["points"], res_sim["int8"]["points"]):
        assert q["hash_verified_frames"] == FRAMES and q["backend"].startswith("onnxruntime CPU")
        assert abs(q["bits"] / s["bits"] - 1) < 0.10 and abs(q["psnr_yuv"] - s["psnr_yuv"]) < 0.5


def test_each_int8_point_names_its_own_backend(pairs, carphone, tmp_path):
    """A W8A16 folder beside a W8A8 one on onnxruntime: the report named the last pair's precision
    (W8A8) for both; it names each point's now, as the points themselves record."""
    from mobilecodec.checkpoint import load_checkpoint

    floats, qdirs = pairs
    mixed = [_quantize(load_checkpoint(floats[0])[0], floats[0], tmp_path, carphone, ("receiver",)), qdirs[1]]
    out = tmp_path / "MIX"
    assert _check(carphone, floats, mixed, "--max-bdrate", "1000", "--sensitivity-frames", "0",
                  "--backend", "onnxruntime", "-o", str(out)) == 0
    report = json.loads((out / "check_int8.json").read_text())
    points = report["results"][0]["int8"]["points"]
    assert "W8A16" in points[0]["backend"] and "W8A16" not in points[1]["backend"]
    assert report["int8_backend"] == "; ".join(f"{p['label']}: {p['backend']}" for p in points)


def test_block_modes_code_both_sides_as_eval_does(flat_pairs, carphone, tmp_path, capsys):
    """`--block-modes 8` codes the float and the int8 side with P-frame block modes priced at each
    pair's beta: the float points are exactly `mobilecodec eval --block-modes 8`'s (same encoder,
    same streams), not the plain encoder's, and every int8 frame decodes hash-exact."""
    floats, qdirs = flat_pairs
    out = tmp_path / "OUT"
    rc = _check(carphone, floats, qdirs, "--sensitivity-frames", "0", "--block-modes", "8", "-o", str(out))
    assert rc == 3  # the flat pairs (0.19 dB apart) are inconclusive by the rule, block modes or not
    res = json.loads((out / "check_int8.json").read_text())["results"][0]
    assert len(res["float"]["points"]) == len(res["int8"]["points"]) == len(floats) == 2
    for args, name in ((["--block-modes", "8"], "EV8"), ([], "EV0")):
        assert main(["eval", str(carphone), "--checkpoint", ",".join(map(str, floats)), "--frames", str(FRAMES),
                     "--intra-period", str(INTRA), "-o", str(tmp_path / name), "--no-progress", *args]) == 0
    ev8, ev0 = ({p["checkpoint"]: p for p in json.loads((tmp_path / n / "carphone_eval.json").read_text())["points"]}
                for n in ("EV8", "EV0"))
    for fp, qp in zip(res["float"]["points"], res["int8"]["points"]):
        assert fp["block_modes"] == qp["block_modes"] == {"block": 8, "lam": 2 * fp["beta"]}
        ref = ev8[fp["checkpoint"]]
        assert (fp["bits"], fp["psnr_yuv"]) == (ref["bits"], ref["psnr_yuv"])
        assert fp["per_frame"][1]["bits"] != ev0[fp["checkpoint"]]["per_frame"][1]["bits"]  # the P-frame's map
        assert qp["hash_verified_frames"] == FRAMES


def test_block_modes_price_a_qat_folder_at_its_own_beta(flat_pairs, carphone, tmp_path):
    """A QAT folder trained at another beta than its float checkpoint's is deployed with block modes
    priced at QAT's (`export --int8`); the check priced its int8 side at the float checkpoint's
    (found by the quant audit). Each side now gets its own."""
    floats, qdirs = flat_pairs  # tiny_b0.0064 first
    qat = tmp_path / "QAT"
    assert main(["qat", "--checkpoint", str(qdirs[0]), "--data", "bikes", "--max-frames", "8", "-o", str(qat),
                 "--gop", "2", "--batch", "1", "--crop", "64x64", "--steps", "1", "--beta", "0.0256",
                 "--no-progress"]) == 0
    out = tmp_path / "OUT"
    rc = _check(carphone, floats[:1], [qat], "--sensitivity-frames", "0", "--block-modes", "8", "-o", str(out))
    assert rc == 3  # one pair: no BD figure, both sides coded all the same
    report = json.loads((out / "check_int8.json").read_text())
    assert report["pairs"][0]["beta"] == 0.0064 and report["pairs"][0]["int8_beta"] == 0.0256
    fp, qp = (report["results"][0][k]["points"][0] for k in ("float", "int8"))
    assert fp["block_modes"] == {"block": 8, "lam": 2 * 0.0064} and qp["block_modes"] == {"block": 8, "lam": 2 * 0.0256}


def test_block_modes_need_the_pairs_beta(tiny_checkpoint, carphone, tmp_path, capsys):
    from mobilecodec.checkpoint import load_checkpoint

    qdir = _quantize(load_checkpoint(tiny_checkpoint)[0], tiny_checkpoint, tmp_path, carphone)
    capsys.readouterr()
    rc = _check(carphone, [tiny_checkpoint], [qdir], "--sensitivity-frames", "0", "--block-modes", "8")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not record the beta" in err[0] and tiny_checkpoint.name in err[0], err


def test_an_int8_folder_judged_on_its_own_calibration_clip_is_flagged(carphone, tmp_path, capsys):
    """ptq calibrated on bikes: judged on bikes the report and stderr say its figures there are not
    held-out ones; judged on carphone, nothing is said."""
    q = tmp_path / "Q"
    assert main(["ptq", "--checkpoint", "tiny_b0.0512", "--data", "bikes", "--crop", "64x64", "--steps", "1",
                 "--batch", "1", "--gop", "3", "--eval-gops", "0", "-o", str(q), "--no-progress"]) == 0
    for clip, flagged in (("bikes", True), (str(carphone), False)):
        capsys.readouterr()
        rc = main(["check-int8", clip, "--float", "tiny_b0.0512", "--int8", str(q), "--frames", "2",
                   "--intra-period", "2", "--sensitivity-frames", "0", "--no-progress", "--json", str(tmp_path / "r.json")])
        assert rc == 3  # one pair: inconclusive by the rule, and a report all the same
        fitted = json.loads((tmp_path / "r.json").read_text())["fitted_on_input"]
        err = capsys.readouterr().err
        assert bool(fitted) == flagged and ("not held-out ones" in err) == flagged, (clip, fitted, err)
        if flagged:
            assert fitted[0]["int8"] == "Q" and Path(fitted[0]["input"]).stem == "bikes"
    # calibrated on a renamed copy of the held-out clip: its carphone figures are not held-out ones
    # either (the folder says so; its path was compared alone, and nothing was said)
    import shutil

    shutil.copy(carphone, tmp_path / "mycopy.y4m")
    assert main(["ptq", "--checkpoint", "tiny_b0.0512", "--data", str(tmp_path / "mycopy.y4m"), "--allow-held-out",
                 "--crop", "64x64", "--steps", "1", "--batch", "1", "--gop", "3", "--eval-gops", "0",
                 "-o", str(tmp_path / "QC"), "--no-progress"]) == 0
    capsys.readouterr()
    rc = main(["check-int8", str(carphone), "--float", "tiny_b0.0512", "--int8", str(tmp_path / "QC"), "--frames", "2",
               "--intra-period", "2", "--sensitivity-frames", "0", "--no-progress", "--json", str(tmp_path / "r.json")])
    assert rc == 3
    fitted = json.loads((tmp_path / "r.json").read_text())["fitted_on_input"]
    assert [f["int8"] for f in fitted] == ["QC"] and "not held-out ones" in capsys.readouterr().err


def test_raw_yuv_and_a_file_given_another_rate_are_checked_as_eval_codes_them(flat_pairs, carphone, tmp_path):
    """check-int8 takes eval's --size and --fps: a raw .yuv (refused before: "raw .yuv needs --size
    ... (encode, eval, baseline)") and a .y4m whose header claims 5000 fps (told to "give the real
    rate with --fps", which check-int8 lacked) code the same frames into the same bits, at the rate
    given, and the report names the files given, not the working copies."""
    from mobilecodec.io import read_frames
    from videos_for_tests import raw_yuv, y4m_claiming

    frames = read_frames(carphone, FRAMES)
    raw, fast = raw_yuv(tmp_path / "clip.yuv", frames), y4m_claiming(tmp_path / "fast.y4m", frames, "5000:1")
    floats, qdirs = flat_pairs
    out = tmp_path / "R"
    rc = main(["check-int8", str(raw), str(fast), "--size", "176x144", "--fps", "25", "--float",
               ",".join(map(str, floats)), "--int8", ",".join(map(str, qdirs)), "--intra-period", str(INTRA),
               "--frames", str(FRAMES), "--sensitivity-frames", "0", "--no-progress", "-o", str(out)])
    assert rc in (0, 1, 3)
    rep = json.loads((out / "check_int8.json").read_text())
    assert [r["source"] for r in rep["results"]] == [str(raw), str(fast)]
    a, b = (r["float"] for r in rep["results"])
    assert a["fps"] == b["fps"] == 25
    assert [p["bits"] for p in a["points"]] == [p["bits"] for p in b["points"]]
    assert all(p["hash_verified_frames"] == FRAMES for r in rep["results"] for p in r["int8"]["points"])


@pytest.mark.parametrize("extra, needle", [
    (["FAST"], "give the real rate with --fps (encode, eval, baseline, check-int8)"),
    (["RAW", "--size", "160x144"], "wrong --size?"),
    (["FAST", "--size", "176x144"], "--size describes raw .yuv inputs; none is given"),
])
def test_inputs_check_int8_cannot_code_are_refused_before_the_models_load(extra, needle, carphone, tmp_path):
    """A rate it would have to record, a raw .yuv of another size, --size for no .yuv: one line, exit
    2, before any model or int8 folder is read (the int8 folder named here does not exist: a refusal
    that came after loading would name it instead)."""
    from cli_run import assert_clean_error, cli_here

    from mobilecodec.io import read_frames
    from videos_for_tests import raw_yuv, y4m_claiming

    frames = read_frames(carphone, 2)
    files = {"RAW": raw_yuv(tmp_path / "clip.yuv", frames),
             "FAST": y4m_claiming(tmp_path / "fast.y4m", frames, "5000:1")}
    args = [str(files.get(a, a)) for a in extra]
    assert_clean_error(cli_here("check-int8", *args, "--float", "tiny_b0.0064", "--int8", str(tmp_path / "none"),
                                "-o", str(tmp_path / "R")), needle)
