"""The `mobilecodec` command line as a user runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilecodec.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_every_subcommand():
    proc = _run("-m", "mobilecodec", "--help")
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout
    for name in ("baseline", "bdrate", "info"):
        assert name in proc.stdout


@pytest.mark.parametrize("command", ["baseline", "bdrate", "info"])
def test_subcommand_help(command):
    proc = _run("-m", "mobilecodec", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--json" in proc.stdout


def test_building_the_parser_does_not_import_heavy_libraries():
    heavy = ["torch", "matplotlib", "onnxruntime", "aimet_torch"]
    proc = _run("-c", "import sys; from mobilecodec.cli import build_parser; build_parser(); "
                      f"print(*[m in sys.modules for m in {heavy!r}])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"] * len(heavy)


def test_info_prints_versions():
    proc = _run("-m", "mobilecodec", "info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    from importlib.metadata import version

    for dist in ("numpy", "av", "onnx", "onnxruntime", "constriction"):
        line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == dist)
        assert version(dist) in line
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in out
    assert "ffmpeg version" in out
    assert "libx264" in out and "libx265" in out
    assert "carphone" in out


def test_info_json(tmp_path):
    proc = _run("-m", "mobilecodec", "info", "--json", str(tmp_path / "info.json"))
    assert proc.returncode == 0, proc.stderr
    import json

    info = json.loads((tmp_path / "info.json").read_text())
    assert info["ffmpeg"]["libx264"] is True and info["ffmpeg"]["libx265"] is True
    assert info["packages"]["numpy"] not in ("", "not installed")
    assert Path(info["samples"]["clips"]["carphone"]["source"]).is_file()
    # the names --checkpoint takes, each a real file of a few MB (issue #13)
    assert "tiny_b0.0032" in info["checkpoints"]
    for c in info["checkpoints"].values():
        assert Path(c["path"]).stat().st_size == c["bytes"] and 1e5 < c["bytes"] < 2e7


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    """Small broken inputs: junk bytes, empty clips, odd sizes and tiny frames."""
    d = tmp_path_factory.mktemp("bad")
    frame = 176 * 144 * 3 // 2
    (d / "two.yuv").write_bytes(bytes(range(256)) * (2 * frame // 256) + bytes(2 * frame % 256))
    (d / "junk.mp4").write_bytes(b"this is not an mp4 container" * 40)
    (d / "empty.yuv").write_bytes(b"")
    (d / "empty.y4m").write_bytes(b"YUV4MPEG2 W176 H144 F30:1 Ip A1:1 C420jpeg\n")
    (d / "odd.y4m").write_bytes(b"YUV4MPEG2 W175 H144 F30:1 Ip A1:1 C420jpeg\n"
                                + b"FRAME\n" + bytes(175 * 144 + 2 * 88 * 72))
    (d / "tiny.yuv").write_bytes(bytes(6) * 3)  # three 2x2 frames
    (d / "small.yuv").write_bytes(bytes(range(216)) * 3)  # three 12x12 frames
    return d


# (case id, arguments after 'baseline', text the error line must contain)
BAD_CASES = [
    ("missing-file", ["--codec", "x264", "{d}/nope.y4m"], "no such video file"),
    ("clip-name-typo", ["--codec", "x264", "carphon"], "no such video file: carphon (nor a sample clip: "),
    ("unreadable-container", ["--codec", "x264", "{d}/junk.mp4"], "junk.mp4"),
    ("odd-yuv-size", ["--codec", "x264", "{d}/two.yuv", "--size", "175x144"], "even"),
    ("odd-y4m-size", ["--codec", "x264", "{d}/odd.y4m"], "even"),
    ("yuv-without-size", ["--codec", "x264", "{d}/two.yuv"], "--size"),
    ("size-does-not-divide", ["--codec", "x264", "{d}/two.yuv", "--size", "176x100"],
     "not a multiple"),
    ("empty-yuv", ["--codec", "x264", "{d}/empty.yuv", "--size", "176x144"], "no frames"),
    ("empty-y4m", ["--codec", "x264", "{d}/empty.y4m"], "no frames"),
    ("crf-not-numbers", ["--codec", "x264", "--crf", "23,abc", "{d}/two.yuv", "--size", "176x144"],
     "abc"),
    ("unknown-codec", ["--codec", "x266", "{d}/two.yuv", "--size", "176x144"], "x266"),
    ("crf-too-high", ["--codec", "x264", "--crf", "23,52", "{d}/two.yuv", "--size", "176x144"],
     "0..51"),
    ("crf-negative", ["--codec", "x265", "--crf", "-3", "{d}/two.yuv", "--size", "176x144"],
     "0..51"),
    # x265 cannot encode 12x12 frames: ffmpeg fails and its last stderr line is reported.
    ("ffmpeg-fails", ["--codec", "x265", "--crf", "30", "{d}/small.yuv", "--size", "12x12"],
     "ffmpeg"),
    # MS-SSIM needs 11 pixels a side: refused before anything is encoded, saying why (the bare metric's
    # "ms_ssim: a 2x2 image is too small" read as an internal error; I/O audit)
    ("too-small-for-ms-ssim", ["--codec", "x264", "--crf", "30", "{d}/tiny.yuv", "--size", "2x2"],
     "tiny.yuv: 2x2 frames are too small to measure: RD points include MS-SSIM-RGB"),
]


@pytest.mark.parametrize("case,args,needle", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_baseline_bad_input_exits_2_and_writes_nothing(bad_inputs, tmp_path, case, args, needle):
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    argv = [a.format(d=bad_inputs) for a in args]
    proc = _run("-m", "mobilecodec", "baseline", *argv, "-o", str(out), "--no-progress",
                "--json", str(tmp_path / "r.json"), env={"TMPDIR": str(scratch)})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "r.json").exists()
    assert not any(scratch.iterdir())  # the temporary .yuv folder is removed on failure too


def test_outputs_that_would_destroy_an_input_are_refused(bad_inputs, tmp_path):
    """--json (or a file -o) naming a file the command reads, or where -o writes, is refused in one
    line before any work, and the file is left as it was."""
    src = tmp_path / "two.yuv"
    src.write_bytes((bad_inputs / "two.yuv").read_bytes())
    before = src.read_bytes()
    stream = tmp_path / "s.mnvc"
    cases = [
        (["encode", "--checkpoint", "tiny_b0.0032", str(src), "--size", "176x144", "-o", str(stream),
          "--json", str(src)], "reads as input"),
        (["encode", "--checkpoint", "tiny_b0.0032", str(src), "--size", "176x144", "-o", str(stream),
          "--json", str(stream)], "where -o writes"),
        (["eval", "--checkpoint", "tiny_b0.0032", str(src), "--size", "176x144", "-o", str(tmp_path / "ev"),
          "--json", str(tmp_path / "ev")], "where -o writes"),
        (["baseline", "--codec", "x264", str(src), "--size", "176x144", "-o", str(tmp_path / "b"),
          "--json", str(src)], "reads as input"),
    ]
    for args, needle in cases:
        proc = _run("-m", "mobilecodec", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, lines)
        assert src.read_bytes() == before
        assert not stream.exists() and not (tmp_path / "ev").exists() and not (tmp_path / "b").exists()
    # eval writes into its folder without replacing it: a summary beside its files is fine
    # (scripts/ablation.sh keeps OUT/report.json there to skip finished runs)
    proc = _run("-m", "mobilecodec", "eval", "--checkpoint", "tiny_b0.0032", str(src), "--size", "176x144",
                "--frames", "1", "--no-progress", "-o", str(tmp_path / "ev"), "--json", str(tmp_path / "ev" / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ev" / "r.json").is_file() and (tmp_path / "ev" / "two_eval.json").is_file()


def test_allocation_failures_are_told_apart_from_bugs():
    """torch's allocator refusing a size (as `profile --size` near the format's limit on a small machine
    did) is reported as 'out of memory' in one line; other RuntimeErrors stay internal errors."""
    import torch

    from mobilecodec.cli import _out_of_memory

    with pytest.raises(RuntimeError) as failed:
        torch.empty(2**62, dtype=torch.uint8)
    assert _out_of_memory(failed.value) and _out_of_memory(MemoryError())
    with pytest.raises(RuntimeError) as other:
        torch.zeros(2, 3) @ torch.zeros(2, 3)
    assert not _out_of_memory(other.value)


def test_block_modes_and_refine_zero_are_off_as_in_the_demo(tmp_path):
    """`--block-modes 0` (the demo's 'off') and `--refine 0` (once refused: 'expected a positive
    integer') are accepted by encode and code the stream it codes without the option."""
    from cli_run import cli_here

    for name, extra in (("off.mnvc", ["--block-modes", "0"]), ("zero.mnvc", ["--refine", "0"]), ("plain.mnvc", [])):
        p = cli_here("encode", "--checkpoint", "tiny_b0.0032", "carphone", "-o", tmp_path / name, "--frames", 2,
                     "--threads", 1, "--no-progress", *extra)
        assert p.returncode == 0, p.stderr
    plain = (tmp_path / "plain.mnvc").read_bytes()
    assert (tmp_path / "off.mnvc").read_bytes() == plain and (tmp_path / "zero.mnvc").read_bytes() == plain


def test_unknown_option_is_reported_by_its_command():
    proc = _run("-m", "mobilecodec", "info", "--no-such-option")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("mobilecodec info: error: unrecognized arguments: --no-such-option "
                                   "(see 'mobilecodec info --help')")


@pytest.mark.parametrize("command", ["init", "train", "ptq", "qat", "export"])
@pytest.mark.parametrize("seed", ["-1", "18446744073709551616"])
def test_a_seed_outside_what_numpy_and_torch_take_is_one_line(command, seed, tmp_path):
    """Seeds are 0..2^64-1 everywhere (torch.manual_seed overflowed on a larger one with a traceback,
    numpy's SeedSequence on a negative one)."""
    proc = _run("-m", "mobilecodec", command, "--seed", seed, "-o", str(tmp_path / "x"))
    assert proc.returncode == 2 and "a seed must be in 0..2^64-1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_a_frame_rate_may_be_given_as_a_ratio(tmp_path):
    """`--fps 30000/1001`, how ffmpeg and y4m headers write NTSC rates, was refused ("expected a
    number"): a raw .yuv is coded at exactly that rate now."""
    import argparse

    from cli_run import cli_here
    from mobilecodec.cli.common import frame_rate
    from mobilecodec.io import open_video, read_frames, samples

    assert frame_rate("30000/1001") == 30000 / 1001 and frame_rate("25") == 25.0
    for bad, needle in (("1/0", "30000/1001"), ("a/b", "30000/1001"), ("-30/1", "0.001..1000")):
        with pytest.raises(argparse.ArgumentTypeError, match=needle):
            frame_rate(bad)
    raw = tmp_path / "c.yuv"
    raw.write_bytes(b"".join(f.y.tobytes() + f.u.tobytes() + f.v.tobytes()
                             for f in read_frames(samples.sample_clip("carphone"), 2)))
    p = cli_here("encode", raw, "--size", "176x144", "--fps", "30000/1001", "--checkpoint", "tiny_b0.0064",
                 "-o", tmp_path / "c.mnvc", "--no-progress", "--json", tmp_path / "e.json")
    assert p.returncode == 0, p.stderr
    d = cli_here("decode", tmp_path / "c.mnvc", "--checkpoint", "tiny_b0.0064", "-o", tmp_path / "d.y4m",
                 "--no-progress")
    assert d.returncode == 0, d.stderr
    with open_video(tmp_path / "d.y4m") as r:
        assert (r.rate.numerator, r.rate.denominator) == (30000, 1001)


def test_comma_separated_argument_types():
    """The one `positive_ints` / `choice_list` of the CLI, the benchmarks and the scripts: blanks
    between commas skipped, an empty list or a bad item refused with the item named."""
    import argparse

    from mobilecodec.cli.common import choice_list, positive_ints

    assert positive_ints("32,6") == [32, 6] and positive_ints("1, 4,,8,") == [1, 4, 8]
    for bad, needle in (("1,0", "'0'"), ("x", "'x'"), ("", "comma-separated"), (",", "comma-separated")):
        with pytest.raises(argparse.ArgumentTypeError, match=needle):
            positive_ints(bad)
    metric = choice_list(("psnr_yuv", "psnr_rgb"))
    assert metric("psnr_yuv, psnr_rgb") == ["psnr_yuv", "psnr_rgb"] and metric("psnr_rgb,") == ["psnr_rgb"]
    for bad, needle in (("psnr_yuv,nope", "'nope' not known; choose from psnr_yuv, psnr_rgb"), ("", "no name given")):
        with pytest.raises(argparse.ArgumentTypeError, match=needle):
            metric(bad)
    proc = _run("-m", "mobilecodec", "bdrate", "a.json", "b.json", "--metric", "psnr_yuv,nope")
    assert proc.returncode == 2 and "argument --metric: 'nope' not known" in proc.stderr, proc.stderr
    proc = _run(str(ROOT / "scripts" / "drift_windows.py"), "x.json", "--windows", "1,0")
    assert proc.returncode == 2 and "argument --windows: expected a positive integer, got '0'" in proc.stderr


def test_one_line_account_of_a_foreign_exception():
    """`one_line`, what profile's --module errors and the out-of-memory line quote: the type and the
    message's first non-blank line, cut at the limit; the type alone for an empty message."""
    from mobilecodec.errors import one_line

    assert one_line(ValueError("\n  boom in forward  \nsecond line")) == "ValueError: boom in forward"
    assert one_line(RuntimeError()) == "RuntimeError" and one_line(KeyError("")) == "KeyError: ''"
    assert one_line(MemoryError("x" * 500), 200) == "MemoryError: " + "x" * 200
    assert len(one_line(RuntimeError("y" * 500))) == len("RuntimeError: ") + 300


def test_ptq_checks_each_calibration_clip_for_the_held_out_one_once(carphone, bikes, tmp_path, monkeypatch, capsys):
    """ptq's refusal and ptq.json's `calibrated_on_held_out` share one `is_held_out` per clip (it may
    decode a clip to compare content); the refusal's wording and --allow-held-out are unchanged.
    --eval-gops -1, refused right after the clip checks, stops each run before any work."""
    import mobilecodec.train.data as data
    from mobilecodec.cli import main

    calls: list[str] = []

    def counted(path):
        calls.append(str(path))
        return is_held(path)

    is_held = data.is_held_out
    monkeypatch.setattr(data, "is_held_out", counted)
    common = ["ptq", "--checkpoint", "tiny_b0.0064", "--eval-gops", "-1", "-o", str(tmp_path / "q")]
    assert main([*common, "--data", str(bikes), str(bikes)]) == 2
    assert calls == [str(bikes)] * 2 and "--eval-gops must be >= 0" in capsys.readouterr().err
    calls.clear()
    assert main([*common, "--data", str(bikes), str(carphone), str(bikes)]) == 2
    assert calls[:2] == [str(bikes), str(carphone)] and len(calls) <= 3  # the refusal may look once more
    assert (f"{carphone} is the held-out evaluation clip; calibrate on training clips (e.g. --data bikes "
            "bigbuckbunny) or pass --allow-held-out") in capsys.readouterr().err
    calls.clear()
    assert main([*common, "--allow-held-out", "--data", str(carphone), str(bikes)]) == 2
    assert calls == [str(carphone)] and "--eval-gops must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv,words", [
    (["profile", "--config", "tiny", "--size", "64x64", "--fps", "inf"], "finite"),  # wrote Infinity into JSON
    (["profile", "--config", "tiny", "--size", "64x64", "--fps", "1e308"], "0.001..1000"),
    (["encode", "carphone", "-o", "x.mnvc", "--fps", "1e308"], "0.001..1000"),  # printed a 309-digit rate
    (["encode", "carphone", "-o", "x.mnvc", "--threads", "2147483648"], "at most 1024"),  # a traceback
    (["train", "-o", "run", "--threads", "99999999999"], "at most 1024"),
    (["check-int8", "x", "--max-bdrate", "nan"], "finite"),  # every comparison with nan is false
    (["demo", "-o", "rep", "--baseline-crf", "33,33"], "distinct"),  # refused after PTQ, export and compile
    (["demo", "-o", "rep", "--baseline-crf", ","], "numbers"),  # became the default sweep
    (["bdrate", "a.json", "b.json", "--metric", ","], "no name given"),  # said "nothing not known"
    (["bdrate", "a.json", "b.json", "--metric", "psnr_yuv,psnr_rgb,psnr_yuv"], "'psnr_yuv' given twice"),  # two rows
    # a .y4m carries its size: a matching --size ran, ignored (codec audit); eval refused it already
    (["encode", "carphone", "--checkpoint", "tiny_b0.0064", "-o", "x.mnvc", "--size", "176x144"],
     "--size describes raw .yuv inputs; none is given"),
    (["baseline", "carphone", "--codec", "x264", "--crf", "51", "-o", "rep", "--size", "176x144"],
     "--size describes raw .yuv inputs"),
    (["decode", "DIR"], "is a folder"),  # said "no such file" of a folder that exists
    # an empty path was '.', "a folder, not a stream file" (a CLI walk-through, session 46)
    (["info", ""], "the stream file path is empty: name a file"),
    (["decode", ""], "the stream file path is empty: name a file"),
    (["bdrate", "", "b.json"], "the results JSON path is empty: name a file"),
    (["encode", "", "--checkpoint", "tiny_b0.0064", "-o", "x.mnvc"], "the input video path is empty: name a file"),
    (["eval", "", "--checkpoint", "tiny_b0.0064", "-o", "rep"], "the input video path is empty: name a file"),
    (["encode", "carphone", "-o", "x.mnvc", "--intra-period", "70000"], "at most 65535"),  # after the model loaded
    (["check-int8", "x", "--float", "a", "--float", "b", "--int8", "c"], "--float given twice"),  # judged b alone
    (["profile", "--config", "tiny", "--size", "64x64", "--size", "128x128"], "--size given twice"),  # last won
    (["eval", "carphone", "--checkpoint", "tiny_b0.0064", "-o", "rep", "--name", " "], "empty"),  # fell back to the default
    (["eval", "carphone", "--checkpoint", "tiny_b0.0064", "-o", "rep", "--name", "a\nb"], "one line"),  # went into tables and plots as given
    (["ptq", "--checkpoint", "tiny_b0.0064", "--data", "bikes", "--gop", "1", "-o", "run"], "--gop must be >= 3"),  # P-frame quantizers never set: export's traceback
    (["demo", "-o", "rep", "--ptq-gop", "2"], "--ptq-gop must be >= 3"),  # a motion predictor calibrated on 0 flow
    (["ptq", "--checkpoint", "tiny_b0.0064", "--data", "bikes", "--gop", "2", "-o", "run"], "--gop must be >= 3"),
    (["ptq", "--checkpoint", "tiny_b0.0064", "--data", "bikes", "bigbuckbunny", "--steps", "1", "--batch", "1", "-o",
      "run"], "cannot take one from each of the 2 --data clips"),  # calibrated on bikes alone, listed both
])
def test_values_no_command_can_use_are_refused_while_parsing(argv, words, tmp_path):
    from cli_run import assert_clean_error, cli_here

    (tmp_path / "DIR").mkdir()
    argv = [str(tmp_path / a) if a in ("x.mnvc", "run", "rep", "DIR") else a for a in argv]
    assert_clean_error(cli_here(*argv), words)
    assert list(tmp_path.iterdir()) == [tmp_path / "DIR"]



def test_drift_scripts_refuse_another_period_or_clip(carphone, tmp_path):
    """scripts/drift_probe.py summarize cut a report at its --period whatever the report was coded
    with (I-frames counted as P-frames, exit 0); scripts/drift_windows.py printed "-" everywhere for
    another period, and with a --content clip shorter than the report an IndexError."""
    import json

    per_frame = [{"index": i, "type": "I" if i % 4 == 0 else "P", "bits": 900 if i % 4 == 0 else 100 + i,
                  "psnr_yuv": 30.0 - 0.1 * (i % 4)} for i in range(9)]
    point = {"label": "a", "bpp": 0.1, "psnr_yuv": 29.9, "intra_period": 4, "per_frame": per_frame}
    report = tmp_path / "ev.json"
    report.write_text(json.dumps({"results": [{"result": {"frames": 9, "intra_period": 4, "points": [point]}}]}))
    probe = ROOT / "scripts" / "drift_probe.py"
    proc = _run(str(probe), "summarize", str(report), "--period", "8")
    assert proc.returncode != 0 and "coded with intra period 4, not --period 8" in proc.stderr, proc.stderr
    proc = _run(str(probe), "summarize", str(report))  # the report's own period
    assert proc.returncode == 0 and "drift mean -0.10 dB" in proc.stdout and "bits x1.01" in proc.stdout  # 103/102, 107/106
    lossless = tmp_path / "lossless.json"  # a lossless frame's PSNR is null in JSON (it has no Infinity): a TypeError
    lossless.write_text(json.dumps({"results": [{"result": {"frames": 9, "intra_period": 4, "points": [
        dict(point, per_frame=[dict(f, psnr_yuv=None) for f in per_frame])]}}]}))
    proc = _run(str(probe), "summarize", str(lossless))
    assert proc.returncode == 0 and "0.00 dB (worst " in proc.stdout and ": 100.00" in proc.stdout, proc.stderr
    intra = tmp_path / "intra.json"  # an all-intra report, the content's own curve: cut at the probe's period
    intra.write_text(json.dumps({"results": [{"result": {"frames": 9, "intra_period": 1, "points": [
        dict(point, intra_period=1)]}}]}))
    assert _run(str(probe), "summarize", str(intra), "--period", "4").returncode == 0
    proc = _run(str(probe), "summarize", str(intra))
    assert proc.returncode != 0 and "is all-intra: pass --period" in proc.stderr, proc.stderr
    # a report of two clips was summarised for the first alone (exit 0); one without points, or with
    # per-frame rows short of a period, ended in a traceback (scripts audit)
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"results": [{"result": {"frames": 9, "intra_period": 4, "points": [point]}}] * 2}))
    proc = _run(str(probe), "summarize", str(two))
    assert proc.returncode != 0 and "holds the results of 2 clips" in proc.stderr, proc.stderr
    for name, result in (("nopoints", {"frames": 9, "intra_period": 4}),
                         ("short", {"frames": 9, "intra_period": 4, "points": [dict(point, per_frame=per_frame[:3])]})):
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": [{"result": result}]}))
        proc = _run(str(probe), "summarize", str(tmp_path / f"{name}.json"))
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
    windows = ROOT / "scripts" / "drift_windows.py"
    proc = _run(str(windows), str(report), "--windows", "1")
    assert proc.returncode == 2 and "coded with intra period 4, not --period 32" in proc.stderr, proc.stderr
    proc = _run(str(windows), str(two), "--period", "4", "--windows", "1")  # its JSON kept one clip's row of two
    assert proc.returncode == 2 and "holds the point 'a' more than once" in proc.stderr, proc.stderr
    from mobilecodec.io import read_frames, write_video

    write_video(tmp_path / "two.y4m", read_frames(carphone, 2), 30000 / 1001)
    proc = _run(str(windows), str(report), "--period", "4", "--windows", "1", "--content", str(tmp_path / "two.y4m"))
    assert proc.returncode == 2 and "has 2 frames" in proc.stderr and "not the coded clip" in proc.stderr


def test_a_script_whose_reader_went_away_ends_without_a_traceback(tmp_path):
    """`python scripts/drift_probe.py make x.y4m | head -1` printed a BrokenPipeError traceback: a
    script ends as a command does when its reader goes away, with 128 + SIGPIPE and nothing on
    stderr. The reader here is `true`, gone before the script's first line (python takes longer to
    start), so the pipe is closed at that line on every run; the half-made probe is not left."""
    probe, clip = ROOT / "scripts" / "drift_probe.py", tmp_path / "p.y4m"
    proc = subprocess.run(["bash", "-c", f"'{sys.executable}' '{probe}' make '{clip}' --size 64x64 --periods 2 "
                           "--period 4 | true; exit ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ("grad_probe.py", "tiny_b0.0064", "--gop", "2", "24", "--crop", "256x256"),
    ("motion_bootstrap.py", "--init", "tiny_b0.0064", "--steps", "100000"),
    ("drift_probe.py", "summarize", "nothing.json"),
])
def test_a_scripts_json_that_cannot_be_written_is_refused_before_its_work(args, tmp_path):
    """The scripts wrote --json after their work: `motion_bootstrap.py ... --json /proc/x.json` trained,
    then failed (scripts audit). Given more work than the timeout allows, they are refused while
    parsing, as the benchmarks are; an empty --json too."""
    for target, words in ((tmp_path, f"output {tmp_path} is a folder; name a file"), ("", "empty: name a file")):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *args[1:], "--json", str(target)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and f"argument --json: {words}" in proc.stderr, proc.stderr[-2000:]


SCRIPT_BAD_INPUTS = [  # (script and arguments, exit code, words of the one-line message); {d}: a folder, {f}: a file
    (("scripts/grad_probe.py", "tiny_b0.0064", "--seeds", "-1"), 2, "a seed must be in 0..2^64-1"),
    (("scripts/rate_gap.py", "tiny_b0.0064", "--seed", "-1"), 2, "a seed must be in 0..2^64-1"),
    (("scripts/grad_probe.py", "tiny_b0.0064", "--beta", "nan"), 2, "expected a finite number"),
    (("scripts/motion_check.py", "tiny_b0.0064", "--frames", "2", "--search", "100000"), 2, "larger than the frame"),
    (("benchmarks/entropy_throughput.py", "--symbols", "10000000000", "--no-roofline"), 2, "--symbols at most"),
    (("scripts/drift_sources.py", "--workdir", "{f}", "--preset", "float"), 2, "is a file, not a folder"),
    (("benchmarks/fuzz_streams.py", "--count", "2", "--save", "{f}/x"), 2, "is a file, not a folder"),
    (("benchmarks/decode_speed.py", "--size", "63x63", "--presets", "w8a8"), 2, "even height and width"),
    (("benchmarks/decode_speed.py", "--config", "nope", "--workdir", "{d}/w"), 2, "unknown config 'nope'"),
    (("scripts/drift_probe.py", "make", "{d}/p.y4m", "--max-speed", "nan"), 1, "--max-speed must be 0..32"),
    (("scripts/drift_probe.py", "summarize", "{d}"), 1, "is a folder, not a `mobilecodec eval --json` report"),
    (("scripts/drift_probe.py", "summarize", "{f}"), 1, "is not a `mobilecodec eval --json` report"),
    (("scripts/mode_map_entropy.py", "tiny_b0.0064", "{d}"), 2, "is a folder, not a video file"),
    (("scripts/drift_sources.py", "--frames", "0"), 2, "expected a positive integer"),
    (("scripts/motion_check.py", "tiny_b0.0064", "--threads", "100000"), 2, "expected at most 1024 threads"),
    (("benchmarks/conv_gmacs.py", "--threads", "100000"), 2, "expected at most 1024 threads"),
    (("scripts/latent_ceiling.py", "tiny_b0.0004", "bikes", "--fit", "carphone"), 2, "is the held-out evaluation clip"),
]


@pytest.mark.parametrize("args,code,words", SCRIPT_BAD_INPUTS, ids=[" ".join(c[0][:2]) + f" {k}"
                                                                    for k, c in enumerate(SCRIPT_BAD_INPUTS)])
def test_scripts_refuse_bad_input_in_one_line(args, code, words, tmp_path):
    """Found by the scripts audit: a negative seed, a NaN loss weight, a search radius or a symbol
    count that exhausted memory, a work folder that is a file, an odd 4:2:0 size, a NaN speed, a
    report that is a folder or binary, each ended in a traceback (or a kill) or ran on regardless."""
    folder, afile = tmp_path / "d", tmp_path / "f.bin"
    folder.mkdir()
    afile.write_bytes(bytes(range(256)))
    argv = [a.format(d=folder, f=afile) for a in args[1:]]
    proc = subprocess.run([sys.executable, str(ROOT / args[0]), *argv], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert words in lines[-1] and not any(folder.iterdir()), proc.stderr[-2000:]


def test_stdout_gone_tells_stdouts_broken_pipe_from_anothers():
    """A BrokenPipeError ends a command or script with 141 only when stdout's reader went away (poll
    reports an error on stdout's write end); one from another pipe (a worker's) was swallowed as 141
    with no message (review). Here stdout's reader is alive, then closed, then stdout is a file."""
    code = ("import sys, time; from mobilecodec.cli.common import stdout_gone; time.sleep(float(sys.argv[1])); "
            "print(stdout_gone(), file=sys.stderr)")
    alive = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, timeout=120)
    assert alive.stderr.strip() == "False", alive.stderr
    proc = subprocess.Popen([sys.executable, "-c", code, "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the only reader, gone long before the child looks
    assert proc.communicate(timeout=120)[1].strip() == "True"
    with open(os.devnull, "w") as null:
        as_file = subprocess.run([sys.executable, "-c", code, "0"], stdout=null, stderr=subprocess.PIPE, text=True,
                                 timeout=120)
    assert as_file.stderr.strip() == "False"


def test_a_ctrl_c_while_the_command_starts_is_one_line(monkeypatch, capsys):
    """A Ctrl-C in the first tenth of a second, while the command's modules load and its arguments parse
    (before the command's own handler), was a 25-line KeyboardInterrupt traceback (output audit, session
    40). The interrupt is raised where the signal landed: in the parser's construction."""
    import mobilecodec.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["encode", "--help"]) == 130
    assert capsys.readouterr().err == "mobilecodec: interrupted\n"


def test_a_size_taller_than_wide_is_noted_where_sizes_read_height_first(tmp_path):
    """profile and export read --size HxW, encode, eval and baseline WxH: a swapped 1920x1080 profiled
    a portrait frame without a word (walk-through audit, session 40). Now a note says so; a landscape
    size gets none."""
    from cli_run import cli_here

    note = "note: --size 128x64 reads HEIGHTxWIDTH: a portrait frame 128 high and 64 wide (landscape: --size 64x128)"
    for command, out in (("profile", []), ("export", ["-o"])):
        for size, noted in (("128x64", True), ("64x128", False)):
            p = cli_here(command, "--config", "tiny", "--no-progress", "--size", size, *out,
                         *([tmp_path / size] if out else []))
            assert p.returncode == 0 and (note in p.stderr) == noted and ("portrait" in p.stderr) == noted, p.stderr
    # a padded --size with the --original-size typed: the note names what was typed (review)
    p = cli_here("export", "--config", "tiny", "--no-progress", "--size", "192x128", "--original-size", "190x128",
                 "-o", tmp_path / "orig")
    assert p.returncode == 0 and "note: --original-size 190x128 reads HEIGHTxWIDTH" in p.stderr, p.stderr


def test_eval_refuses_what_needs_no_model_before_it_opens_a_package(tmp_path):
    """eval opened every package's sessions (2-3 s of graph loading for tiny) before refusing a --refine
    with --package or a missing input (walk-through audit, session 39's list): those come first now,
    seen here with a package that was never made, which the loader would refuse."""
    from cli_run import assert_clean_error, cli_here

    nowhere = tmp_path / "no_package"
    base = ("eval", "--package", nowhere, "-o", tmp_path / "ev", "--no-progress")
    assert_clean_error(cli_here(*base, "carphone", "--refine", "2"), "--refine runs on the PyTorch model")
    assert_clean_error(cli_here(*base, tmp_path / "missing.y4m"), "missing.y4m")
    assert_clean_error(cli_here(*base, "carphone"), "no_package")  # the package's own check, once the rest holds
