"""export --int8: aimet QDQ graphs (per-channel int8 weights, uint8/uint16 activations), their HTP
check and compile, int8 parity on onnxruntime CPU against the aimet simulation and on the QNN HTP
(emulated) against the CPU, with streams cross-decoded; bad --int8 inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mobilecodec.cli import main

from cli_run import cli

QUANTIZED = {"i_analysis", "i_hyper_analysis", "i_synthesis", "motion_predictor", "m_analysis",
             "m_hyper_analysis", "m_synthesis", "r_analysis", "r_hyper_analysis", "r_synthesis"}
HYPER_SYNTHESIS = {"i_hyper_synthesis", "m_hyper_synthesis", "r_hyper_synthesis"}
GOP = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """tiny, random weights (seed 0), I-frame synthesis biased to mid-grey so reconstructions are
    not clamped to black (quantization errors stay visible)."""
    from mobilecodec.checkpoint import save_checkpoint
    from models_for_tests import random_tiny

    model = random_tiny("low")  # seed 0, I-frame output bias +0.5
    return save_checkpoint(tmp_path_factory.mktemp("i8ckpt") / "tiny_midgrey.pt", model)


@pytest.fixture(scope="module")
def ptq_dir(checkpoint, bikes, tmp_path_factory) -> Path:
    """A small PTQ: 2 steps of 2 bikes GOPs (3 frames, 64x64 crops); m_synthesis at W8A16. (It calibrated
    on carphone, the held-out clip, and its record said it had not: the export audit.)"""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model, save_quantized

    model, _ = load_checkpoint(checkpoint)
    gops = load_gops([bikes], 3, (64, 64), 4, seed=0)
    qmodel = quantize_model(model, QuantConfig(w8a16=("m_synthesis",)), gops, steps=2, batch=2, progress=False)
    summary = {"float_weights_hash": model.weights_hash().hex(), "clips": [str(bikes)]}
    return save_quantized(tmp_path_factory.mktemp("i8q") / "Q", qmodel, checkpoint=checkpoint, summary=summary)


@pytest.fixture(scope="module")
def package(checkpoint, ptq_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("i8pkg") / "pkg"
    assert main(["export", "--checkpoint", str(checkpoint), "--size", "192x192", "-o", str(out),
                 "--int8", str(ptq_dir)]) == 0
    return out


@pytest.fixture(scope="module")
def float_package(checkpoint, tmp_path_factory) -> Path:
    """The float export package of the same checkpoint at the same size."""
    out = tmp_path_factory.mktemp("float") / "pkg"
    assert main(["export", "--checkpoint", str(checkpoint), "--size", "192x192", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def int8_bins(package, tmp_path_factory) -> Path:
    """`package` compiled for the HTP (SoC 43)."""
    out = tmp_path_factory.mktemp("bins") / "bin"
    assert main(["compile", str(package), "--soc", "43", "-o", str(out)]) == 0
    return out


def _inits(proto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_qdq_graphs_int8_weights_16bit_activations(package, checkpoint, float_package):
    import onnx
    from onnx import helper

    from mobilecodec.checkpoint import load_checkpoint

    man = json.loads((package / "manifest.json").read_text())
    assert man["precision"] == "int8-qdq" and man["quantization"]["source"] == "aimet"
    assert set(man["quantization"]["float_graphs"]) == HYPER_SYNTHESIS
    assert man["quantization"]["graphs_16bit"] == ["m_synthesis"]
    assert man["quantization"]["w8a16_layers"] and all(n.startswith("m_synthesis.")
                                                     for n in man["quantization"]["w8a16_layers"])
    model, _ = load_checkpoint(checkpoint)
    float_params = dict(model.named_parameters())
    # the float package of the same checkpoint, for the op skeleton
    fman = json.loads((float_package / "manifest.json").read_text())
    for name in QUANTIZED:
        g = man["graphs"][name]
        proto = onnx.load(str(package / g["file"]))
        onnx.checker.check_model(proto)
        ops = [n.op_type for n in proto.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, name
        assert "GridSample" not in ops and not set(ops) & {"If", "Loop", "Scan"}
        for vi in list(proto.graph.input) + list(proto.graph.output):
            assert all(d.HasField("dim_value") and d.dim_value > 0 for d in vi.type.tensor_type.shape.dim)
        # same float skeleton as the onnxsim'd float graph (Q/DQ aside)
        skeleton = {k: v for k, v in g["ops"].items() if k not in ("QuantizeLinear", "DequantizeLinear")}
        assert skeleton == fman["graphs"][name]["ops"], name
        assert [i["name"] for i in g["inputs"]] == [i["name"] for i in fman["graphs"][name]["inputs"]]
        inits = _inits(proto)
        producers = {o: n for n in proto.graph.node for o in n.output}
        n_conv = 0
        for node in proto.graph.node:
            if node.op_type not in ("Conv", "ConvTranspose"):
                continue
            n_conv += 1
            dq = producers[node.input[1]]
            assert dq.op_type == "DequantizeLinear"
            q, scale = inits[dq.input[0]], inits[dq.input[1]]
            axis = {a.name: helper.get_attribute_value(a) for a in dq.attribute}["axis"]
            out_axis = 0 if node.op_type == "Conv" else 1
            assert q.dtype == np.int8 and axis == out_axis and scale.shape == (q.shape[out_axis],)
            assert not inits[dq.input[2]].any()  # symmetric: zero points 0
            # the int8 weight is the checkpoint's float weight rounded to its channel grid
            key = dq.input[0].removeprefix("stage.").removesuffix("_q")
            w = float_params[f"{name}.{key}"].detach().numpy()
            shape = [1] * 4
            shape[out_axis] = -1
            assert np.all(np.abs(q.astype(np.float64) * scale.reshape(shape) - w)
                          <= scale.reshape(shape) / 2 + 1e-6), (name, key)
        assert n_conv > 0
        bits = {np.dtype(inits[n.input[2]].dtype).itemsize * 8 for n in proto.graph.node
                if n.op_type == "QuantizeLinear"}
        if name == "m_synthesis":
            assert bits == {16} and proto.opset_import[0].version == 21
        else:
            assert bits == {8} and proto.opset_import[0].version == 17
        assert g["opset"] == proto.opset_import[0].version  # the manifest says each graph's own
        assert (package / g["quantization"]["encodings"]).is_file()
        # int8 weights, int32 biases (the biases were listed among the weights)
        assert g["quantization"]["weights"] == ["int8 per-channel symmetric"], g["quantization"]["weights"]
        assert all(b.startswith("int32") for b in g["quantization"]["biases"])
    assert man["opset"] == 21  # and the highest at the top
    assert (package / "encodings" / "aimet" / "m_synthesis.encodings").is_file()


def test_check_and_compile_use_aimet_graphs(package, int8_bins, tmp_path, capsys):
    assert main(["export", "--check", str(package)]) == 0
    assert "all 13 graph(s) run on the HTP" in capsys.readouterr().out
    out = int8_bins
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["quantization"]["aimet_graphs"]) == QUANTIZED
    assert set(man["quantization"]["standin_graphs"]) == HYPER_SYNTHESIS
    for name, g in man["graphs"].items():
        assert g["quantization"].startswith("stand-in calibration" if name in HYPER_SYNTHESIS else "aimet")
        assert all((out / f).is_file() for f in g["files"])
    # the coding graphs carry aimet's encodings: a calibration clip would calibrate nothing (it was
    # ignored, while the manifest said the binaries were calibrated on it)
    assert main(["compile", str(package), "-o", str(tmp_path / "bin2"), "--calibration", "bikes"]) == 2
    assert "aimet encodings" in capsys.readouterr().err
    assert not (tmp_path / "bin2").exists()


def test_cpu_qdq_matches_aimet_sim_over_gop(package, ptq_dir, carphone):
    from mobilecodec.runtime.parity import int8_sim_parity
    from mobilecodec.quant.ptq import load_quantized

    r = int8_sim_parity(package, load_quantized(ptq_dir), carphone, frames=GOP, intra_period=GOP)
    assert r["frames"] == GOP
    assert r["max_psnr_diff_db"] < 0.1, r["per_frame"]
    assert r["min_onnx_vs_sim_psnr"] > 50, r["per_frame"]  # a few one- or two-level flips at most


def test_htp_matches_cpu_and_streams_cross_decode(package, carphone):
    from mobilecodec.runtime.parity import htp_cross_parity

    r = htp_cross_parity(package, carphone, frames=GOP, intra_period=GOP)
    assert r["max_psnr_diff_db"] < 0.1, r
    assert min(r["htp_vs_cpu_psnr"]) > 40, r["htp_vs_cpu_psnr"]
    for key in ("cpu_stream_on_htp", "htp_stream_on_cpu"):
        assert r[key]["parses_identically"], key
        assert min(r[key]["drift_psnr_db"]) > 40, r[key]


def test_bad_int8_input_exit_2(checkpoint, ptq_dir, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [(["--checkpoint", str(checkpoint), "--int8", str(tmp_path / "missing")], "no such folder"),
             (["--checkpoint", str(checkpoint), "--int8", str(tmp_path / "empty")], "not a `mobilecodec ptq`"),
             (["--checkpoint", str(tiny_checkpoint), "--int8", str(ptq_dir)], "weights hash differs")]
    for argv, needle in cases:
        assert main(["export", *argv, "--size", "192x192", "-o", str(tmp_path / "p")]) == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "p").exists()
    # the ptq folder's own file given as the checkpoint: the error says where it goes
    assert main(["export", "--checkpoint", str(ptq_dir / "quantized.pt"), "--size", "192x192",
                 "-o", str(tmp_path / "p")]) == 2
    assert "--int8" in capsys.readouterr().err


def test_cli_encode_on_htp_decode_on_cpu(package, carphone, tmp_path, capsys):
    """The CLI's --ep qnn path: encode with the compiled context binaries on the QNN HTP (emulated),
    decode the stream with the QDQ package on onnxruntime CPU, and back."""
    import json as _json

    # a package and its compile folder moved together still pair up (the compile folder named its
    # package by an absolute path: moved, it pointed to where the package no longer was)
    import shutil

    from mobilecodec.runtime.engine import resolve_package

    shutil.copytree(package, tmp_path / "pair" / "pkg")
    assert main(["compile", str(tmp_path / "pair" / "pkg"), "--soc", "43", "-o", str(tmp_path / "pair" / "bin")]) == 0
    # a compile folder moved alone finds its package where it was
    shutil.copytree(tmp_path / "pair" / "bin", tmp_path / "alone" / "bin")
    assert resolve_package(tmp_path / "alone" / "bin", "qnn")[0] == (tmp_path / "pair" / "pkg").resolve()
    (tmp_path / "pair").rename(tmp_path / "moved")
    bins = tmp_path / "moved" / "bin"
    s_htp, s_cpu = tmp_path / "htp.mnvc", tmp_path / "cpu.mnvc"
    assert main(["encode", str(carphone), "-o", str(s_htp), "--package", str(bins), "--ep", "qnn", "--frames", "3",
                 "--intra-period", "3", "--no-progress", "--json", str(tmp_path / "e.json")]) == 0
    enc = _json.loads((tmp_path / "e.json").read_text())
    assert enc["frames"] == 3 and "QNN" in enc["backend"]
    # in a fresh process (the HTP libraries print a line to the C stdout when they load), `--json -`
    # still puts the JSON alone on stdout
    p = cli("encode", carphone, "-o", tmp_path / "j.mnvc", "--package", bins, "--ep", "qnn", "--frames", "1",
            "--no-progress", "--json", "-")
    assert p.returncode == 0, p.stderr
    assert _json.loads(p.stdout)["frames"] == 1
    # `eval --ep qnn` codes the point on the HTP too: the stream `encode --ep qnn` wrote, every frame
    # decoded hash-exact there
    assert main(["eval", str(carphone), "--package", str(bins), "--ep", "qnn", "--frames", "3", "--intra-period", "3",
                 "--no-progress", "-o", str(tmp_path / "ev")]) == 0
    point = _json.loads((tmp_path / "ev" / "carphone_eval.json").read_text())["points"][0]
    assert "QNN" in point["backend"] and point["hash_verified_frames"] == 3
    assert Path(point["stream"]).read_bytes() == s_htp.read_bytes()
    # another backend: hashes may differ (not bit-exact across backends), so --allow-drift
    assert main(["decode", str(s_htp), "--package", str(package), "--ep", "cpu", "-o", str(tmp_path / "d.y4m"),
                 "--allow-drift", "--no-progress", "--json", str(tmp_path / "d.json")]) == 0
    dec = _json.loads((tmp_path / "d.json").read_text())
    assert dec["frames"] == 3 and "CPU" in dec["backend"]
    assert (tmp_path / "d.y4m").stat().st_size > 3 * 176 * 144 * 3 // 2
    # the other direction: CPU-encoded stream decoded on the HTP
    assert main(["encode", str(carphone), "-o", str(s_cpu), "--package", str(package), "--frames", "2",
                 "--intra-period", "2", "--no-progress"]) == 0
    assert main(["decode", str(s_cpu), "--package", str(bins), "--ep", "qnn", "-o", str(tmp_path / "q.y4m"),
                 "--allow-drift", "--no-progress"]) == 0
    # each cross-backend decode is its stream's own-backend decode up to int8 levels here and there
    # (they were checked for running only; tests audit): every plane above 40 dB against it (measured
    # 50.5 and 56.4 dB at worst)
    from mobilecodec.io import read_frames
    from mobilecodec.metrics import psnr

    assert main(["decode", str(s_htp), "--package", str(bins), "--ep", "qnn", "-o", str(tmp_path / "h.y4m"),
                 "--no-progress"]) == 0  # hash-exact: the encoder's reconstruction
    assert main(["decode", str(s_cpu), "--package", str(package), "-o", str(tmp_path / "c.y4m"), "--no-progress"]) == 0
    for other, own in (("d.y4m", "h.y4m"), ("q.y4m", "c.y4m")):
        a, b = read_frames(tmp_path / other), read_frames(tmp_path / own)
        assert len(a) == len(b) > 0
        worst = min(psnr(p, q) for x, y in zip(a, b) for p, q in ((x.y, y.y), (x.u, y.u), (x.v, y.v)))
        assert worst > 40, (other, worst)


def test_packages_of_other_precisions_are_other_curves(float_package, int8_bins, carphone, tmp_path):
    """`eval --package BIN_W8A16,BIN_FLOAT --ep qnn` drew an aimet package's compile folder and a float
    package's (int8 by the compile's stand-in) as one RD curve: both were labelled "onnxruntime QNN HTP
    (emulation on x86)" (on the CPU, W8A8 and W8A16 packages were both "int8 (QDQ)")."""
    fbin = tmp_path / "fbin"
    assert main(["compile", str(float_package), "--soc", "43", "-o", str(fbin)]) == 0
    assert main(["eval", str(carphone), "--package", f"{int8_bins},{fbin}", "--ep", "qnn", "--frames", "1",
                 "--no-progress", "-o", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "carphone_eval.json").read_text())
    backends = {Path(p["package"]).resolve(): p["backend"] for p in res["points"]}  # points are sorted by bpp
    assert len(res["curves"]) == 2 and len(set(backends.values())) == 2, backends
    assert "W8A16 in m_synthesis" in backends[int8_bins.resolve()]
    assert "stand-in int8 of the float graphs" in backends[fbin.resolve()]


def test_qnn_says_nothing_a_user_cannot_use(package, tmp_path):
    """QNN's HTP libraries print "# LIBNATIVE: No alternate configuration present ..." as they load: it
    reached stderr on every compile, `--ep qnn` session and demo (walk-through audit, session 40). In a
    fresh process, where they load, the compile's stderr holds nothing, its stdout its one line."""
    p = cli("compile", package, "--soc", "43", "-o", tmp_path / "bin", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and p.stdout.startswith("13 context binaries for soc 43"), (p.stdout, p.stderr)


def test_native_output_is_filtered_line_by_line(tmp_path):
    """`native_stdout(drop=...)`: what C code prints to stdout goes to stderr less the dropped lines."""
    import subprocess
    import sys

    code = ("import ctypes; from mobilecodec.nativeio import native_stdout\n"
            "libc = ctypes.CDLL(None)\n"
            "with native_stdout('stderr', drop=('NOISE',)):\n"
            "    libc.puts(b'NOISE from a library'); libc.puts(b'a real message')\n"
            "print('python stdout')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "a real message\n" and p.stdout == "python stdout\n", (p.stdout, p.stderr)
