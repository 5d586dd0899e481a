"""The profiler: ONNX counts equal PyTorch counts per stage, FlopCounterMode agrees with our
counter on the codec's stages, buffer dtypes of int8 graphs, and the package report files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

PY = [sys.executable, "-m", "mobilecodec"]


def test_runtime_exposes_counters_lazily():
    """In a fresh interpreter: `import mobilecodec.runtime` loads neither counter module nor torch / onnx /
    onnxruntime; each counter's module is imported on first access to it, and only then."""
    code = """
import sys
HEAVY = ("torch", "onnx", "onnxruntime", "mobilecodec.runtime.complexity", "mobilecodec.runtime.onnx_complexity")
import mobilecodec.runtime as runtime
print(sorted(m for m in HEAVY if m in sys.modules))
f = runtime.count_module
print(sorted(m for m in HEAVY[3:] if m in sys.modules), f is sys.modules["mobilecodec.runtime.complexity"].count_module)
g = runtime.count_onnx
print(sorted(m for m in HEAVY[3:] if m in sys.modules), g is sys.modules["mobilecodec.runtime.onnx_complexity"].count_onnx)
try:
    runtime.nope
except AttributeError as exc:
    print("AttributeError", "nope" in str(exc))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "[]",
        "['mobilecodec.runtime.complexity'] True",
        "['mobilecodec.runtime.complexity', 'mobilecodec.runtime.onnx_complexity'] True",
        "AttributeError True",
    ]


@pytest.mark.parametrize("config", ["tiny", "mobilenvc"])
def test_stage_macs_match_flop_counter_mode(config):
    """torch's own FlopCounterMode (FLOPs / 2) on every stage at 128x128 equals count_module."""
    from torch.utils.flop_counter import FlopCounterMode

    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.runtime import count_module

    torch.manual_seed(0)
    model = VideoCodec(get_config(config)).eval()
    ex = model.example_inputs(128, 128)
    for name, mod in model.stages().items():
        with torch.no_grad():
            ours = count_module(mod, *ex[name]).macs
            fc = FlopCounterMode(display=False)
            with fc:
                mod(*ex[name])
        assert ours > 0 and 2 * ours == fc.get_total_flops(), name


def test_onnx_counts_equal_pytorch_counts_per_stage(tiny_package):
    from mobilecodec.models.subnetworks import SUBNETWORKS
    from mobilecodec.runtime.profiler import package_complexity

    onnx_c, torch_c, _ = package_complexity(tiny_package)
    assert set(onnx_c.stages) == set(torch_c.stages)
    for name in onnx_c.stages:
        assert onnx_c.stages[name].macs == torch_c.stages[name].macs, name
        assert onnx_c.stages[name].params == torch_c.stages[name].params, name
    assert onnx_c.rows == torch_c.rows
    # receiver I-frame AE = hyper-synthesis + synthesis, over the real 176x144 luma pixels
    st = onnx_c.stages
    want = (st["i_hyper_synthesis"].macs + st["i_synthesis"].macs) / (176 * 144) / 1e3
    assert onnx_c.rows["Receiver"]["I-frame AE"][1] == pytest.approx(want)
    assert "i_analysis" in SUBNETWORKS["I-frame AE"][0]


def test_int8_graph_buffer_dtype(tiny_package, tmp_path):
    """A float package carries the flow at its storage dtype (int16 at 1/256 px, what the engine binds
    between graphs), not at the graph's float32; a QDQ m_synthesis outputs it as uint8, half that."""
    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.export.qdq import quantize_graph, random_feeds
    from mobilecodec.runtime.profiler import package_buffer, qdq_output_dtypes

    src = tiny_package / "graphs" / "m_synthesis.onnx"
    qdq = quantize_graph(src, tmp_path / "m_synthesis.qdq.onnx", random_feeds(src, count=2))
    assert qdq_output_dtypes(src)["buffer_out.flow"] == "float32"
    assert qdq_output_dtypes(qdq)["buffer_out.flow"] == "uint8"
    man = load_manifest(tiny_package)
    f32 = package_buffer(man, 30.0, {})
    i8 = package_buffer(man, 30.0, {"m_synthesis": qdq})
    # tiny at 192x192: frame 6x96x96 uint8; flow 2 x 24 x 24 (8x8 blocks) int16 or uint8
    assert [e["dtype"] for e in f32.entries] == ["uint8", "int16"]
    assert f32.bytes_per_frame == 6 * 96 * 96 + 2 * 24 * 24 * 2
    assert i8.bytes_per_frame == 6 * 96 * 96 + 2 * 24 * 24
    assert i8.full_res_maps == pytest.approx(1.5 + 2 / 64)
    assert i8.bandwidth_mb_s == pytest.approx(2 * i8.bytes_per_frame * 30 / 1e6)


def test_profile_package_writes_consistent_report(tiny_package, tmp_path):
    out = tmp_path / "report"
    p = subprocess.run([*PY, "profile", str(tiny_package), "--runs", "2", "--warmup", "1", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "agree exactly on 13/13 graphs" in p.stdout
    r = json.loads((out / "profile.json").read_text())
    assert sorted(r["files"]) == sorted(["profile.json", "profile.md", "macs_per_subnetwork.png",
                                         "latency_breakdown.png"])
    for png in ("macs_per_subnetwork.png", "latency_breakdown.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(v["equal"] for v in r["onnx_vs_pytorch"].values())
    assert r["complexity"]["table6"] == r["complexity_pytorch"]["table6"]
    lat = r["latency"]
    assert set(lat["graphs"]) == {n for n, g in json.loads((tiny_package / "manifest.json").read_text())["graphs"].items()
                                  if g["used_by_codec"]}
    for kind in ("encode", "decode"):
        for ftype in ("I", "P"):
            fr = lat["frames"][kind][ftype]
            assert fr["frame"]["runs"] == 2 and fr["frame"]["median_ms"] > 0
            # the timed steps lie inside the frame and do not overlap: in every run the frame's wall
            # time minus their sum (the glue) is not negative, so no step is counted twice
            steps = fr["steps"]
            assert all(s["runs"] == 2 for s in steps.values())
            assert steps["host: glue"]["min_ms"] >= 0.0, steps
            assert all(0.0 <= s["median_ms"] <= fr["frame"]["max_ms"] for s in steps.values()), steps
            assert "host: entropy coding" in fr["steps"] and "host: glue" in fr["steps"]
            assert 0.0 <= fr["host_share"] <= 1.0
    assert "host: warp" in lat["frames"]["decode"]["P"]["steps"]
    assert "r_synthesis" in lat["frames"]["decode"]["P"]["steps"]
    assert "i_analysis" not in lat["frames"]["decode"]["I"]["steps"]  # the receiver runs no analysis
    ops = {o["op"] for o in r["ort_ops"]["top_ops"]}
    assert {"Conv", "ConvTranspose"} & ops
    md = (out / "profile.md").read_text()
    assert "## Complexity" in md and "## Buffer" in md and "## Latency" in md
    # the per-op profile runs as --runs / --warmup say (it ran 3 after 2 whatever they said) and says so
    assert (r["ort_ops"]["runs"], r["ort_ops"]["warmup"]) == (2, 1) and "mean of 2 runs after 1 warm-up," in md
    # a config's report into the same folder: the package's latency chart went unlisted beside it (output audit)
    (out / "mine.txt").write_text("a user's")
    p = subprocess.run([*PY, "profile", "--config", "tiny", "--size", "144x176", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    files = json.loads((out / "profile.json").read_text())["files"]
    assert "latency_breakdown.png" not in files and sorted(os.listdir(out)) == sorted([*files, "mine.txt"])


def test_profile_config_report_keeps_table6_keys(tmp_path):
    p = subprocess.run([*PY, "profile", "--config", "tiny", "--size", "144x176", "-o", str(tmp_path / "r"),
                        "--json", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "p.json").read_text())
    assert r["complexity"]["table6"]["Receiver"]["I-frame AE"]["kmacs_per_px"] > 0
    assert r["buffer"]["bytes_per_frame"] == 6 * 96 * 96 + 2 * 24 * 24  # int8 flow by default
    assert (tmp_path / "r" / "profile.md").is_file() and (tmp_path / "r" / "macs_per_subnetwork.png").is_file()


def test_profile_needs_one_source(tmp_path):
    p = subprocess.run([*PY, "profile"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "exactly one" in p.stderr


def test_a_failed_report_leaves_the_earlier_one(tmp_path, monkeypatch, capsys):
    """profile's files are published all or nothing: a rerun into the same folder that fails while
    writing its markdown (a full disk, simulated by the writer raising ENOSPC) leaves the first run's
    report as it was, byte for byte, and no half of its own; a new folder is not left behind."""
    import errno

    import mobilecodec.runtime.report
    from mobilecodec.cli import main

    out = tmp_path / "p"
    assert main(["profile", "--config", "tiny", "--size", "64x64", "-o", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"profile.json", "profile.md", "macs_per_subnetwork.png"}

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mobilecodec.runtime.report, "to_markdown", full_disk)
    capsys.readouterr()
    assert main(["profile", "--config", "tiny", "--size", "128x128", "-o", str(out), "--no-progress"]) != 0
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fresh = tmp_path / "fresh"
    assert main(["profile", "--config", "tiny", "--size", "64x64", "-o", str(fresh), "--no-progress"]) != 0
    assert not fresh.exists()


def test_report_files_that_would_replace_the_json_or_be_blocked_are_refused_first(tmp_path):
    """`profile -o R --json R/profile.md` replaced the markdown report with the JSON (exit 0), and a
    folder in a report file's place failed only when publishing, after the profiling: both are
    refused in one line before any work, and every name write_report writes is in REPORT_FILES."""
    from cli_run import assert_clean_error, cli_here
    from mobilecodec.runtime.report import REPORT_FILES

    base = ("profile", "--config", "tiny", "--size", "144x176")
    assert_clean_error(cli_here(*base, "-o", tmp_path / "r", "--json", tmp_path / "r" / "profile.md"),
                       "is the --json file")
    (tmp_path / "f" / "profile.json").mkdir(parents=True)
    assert_clean_error(cli_here(*base, "-o", tmp_path / "f"), "profile.json", "is a folder")
    assert not (tmp_path / "r").exists()
    assert cli_here(*base, "-o", tmp_path / "ok", "--json", tmp_path / "ok.json").returncode == 0
    assert set(json.loads((tmp_path / "ok.json").read_text())["files"]) <= set(REPORT_FILES)


def test_profile_frames_past_the_clip_start_again_from_its_first():
    """A profile of more frames than the clip holds (carphone: 120) repeated the first frame alone after
    the clip's end, a still scene for every later P-frame; it starts the clip again."""
    from mobilecodec.runtime.profiler import profile_frames

    xs = profile_frames(64, 64, 122)
    assert len(xs) == 122 and xs[0].shape == (1, 6, 32, 32)
    assert torch.equal(xs[120], xs[0]) and torch.equal(xs[121], xs[1]) and not torch.equal(xs[1], xs[0])
