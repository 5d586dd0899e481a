"""export/: ONNX graphs per stage, manifest, HTP compatibility check, QNN compile, float parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mobilecodec.cli import main

EXPECTED_GRAPHS = {"i_analysis", "i_hyper_analysis", "i_hyper_synthesis", "i_synthesis", "motion_predictor",
                   "m_analysis", "m_hyper_analysis", "m_hyper_synthesis", "m_synthesis", "r_analysis",
                   "r_hyper_analysis", "r_hyper_synthesis", "r_synthesis"}


@pytest.fixture(scope="module")
def package(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "pkg"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--size", "192x192", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def compiled(package, tmp_path_factory) -> tuple[Path, str]:
    """`package` compiled for SoC 43 (HTP v73), and what the compile said on stderr."""
    from cli_run import cli_here

    out = tmp_path_factory.mktemp("compile") / "bin"
    res = cli_here("compile", package, "--soc", "43", "--htp-arch", "73", "-o", out, check=True)
    return out, res.stderr


@pytest.fixture(scope="module")
def package64(tmp_path_factory) -> tuple[Path, Path]:
    """`tiny_b0.0032` exported at 64x64 and compiled for the default SoC (43): (package, compile folder)."""
    tmp = tmp_path_factory.mktemp("p64")
    pkg, cmp = tmp / "pkg", tmp / "soc43"
    assert main(["export", "--checkpoint", "tiny_b0.0032", "--size", "64x64", "-o", str(pkg), "--no-progress"]) == 0
    assert main(["compile", str(pkg), "-o", str(cmp), "--no-progress"]) == 0
    return pkg, cmp


def _hand_made(path: Path, op: str, inputs: list[tuple[str, list]], node_name: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node(op, [n for n, _ in inputs], ["y"], name=node_name)], path.stem, vis, [out])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_package_graphs_names_shapes_manifest(package):
    import onnx

    man = json.loads((package / "manifest.json").read_text())
    assert set(man["graphs"]) == EXPECTED_GRAPHS
    assert Path(man["checkpoint"]).is_absolute() and "init_seed" not in man  # a file by its absolute path
    assert man["padded_size"] == [192, 192] and man["config_name"] == "tiny"
    assert [b["name"] for b in man["buffer"]] == ["frame", "flow"]  # tiny: explicit buffering
    # hand-computed shapes: packed frame 6 x 96 x 96, block-8 flow 2 x 24 x 24, latent 48 x 12 x 12
    io = {n: ({i["name"]: i["shape"] for i in g["inputs"]}, {o["name"]: o["shape"] for o in g["outputs"]})
          for n, g in man["graphs"].items()}
    assert io["motion_predictor"] == ({"buffer_in.flow": [1, 2, 24, 24]}, {"flow_pred": [1, 2, 24, 24]})
    assert io["m_analysis"][0] == {"x": [1, 6, 96, 96], "buffer_in.frame": [1, 6, 96, 96], "flow_pred": [1, 2, 24, 24]}
    assert io["m_synthesis"][1] == {"buffer_out.flow": [1, 2, 24, 24]}
    assert io["i_synthesis"] == ({"y_hat": [1, 48, 12, 12]}, {"buffer_out.frame": [1, 6, 96, 96]})
    assert io["r_synthesis"][1] == {"buffer_out.frame": [1, 6, 96, 96]}
    assert io["i_hyper_analysis"][1] == {"z": [1, 24, 3, 3]}
    assert not man["graphs"]["i_hyper_synthesis"]["used_by_codec"]
    assert man["graphs"]["i_analysis"]["sender"] and not man["graphs"]["i_analysis"]["receiver"]
    assert man["graphs"]["r_synthesis"]["sender"] and man["graphs"]["r_synthesis"]["receiver"]
    sides = {s["graph"]: s["sides"] for s in man["call_order"]["I"] + man["call_order"]["P"] if s["run"] == "npu"}
    assert sides == {"i_analysis": "sender", "i_hyper_analysis": "sender", "i_synthesis": "sender+receiver",
                     "motion_predictor": "sender+receiver", "m_analysis": "sender", "m_hyper_analysis": "sender",
                     "m_synthesis": "sender+receiver", "r_analysis": "sender", "r_hyper_analysis": "sender",
                     "r_synthesis": "sender+receiver"}
    steps = [s.get("graph") or s["op"] for s in man["call_order"]["P"]]
    assert steps.index("m_synthesis") < steps.index("warp") < steps.index("r_analysis")
    # what a deployer reimplements: the sender's block matching feeds m_analysis (the steps went straight
    # from the predictor to m_analysis: an encoder following them sent 7.7x the bits), and each buffered
    # value is rounded to its storage as the runtime rounds it (every entry said float32 and no more)
    cfg = man["config"]
    assert cfg["motion_hint"] == "block_match"
    search = man["call_order"]["P"][steps.index("motion_search")]
    assert steps.index("motion_predictor") < steps.index("motion_search") < steps.index("m_analysis")
    assert search["sides"] == "sender" and f"radius {cfg['motion_search_radius']} luma px" in search["what"]
    # and the block modes the README's results decode with (no step said the frame is chosen per block)
    assert steps.index("r_synthesis") < steps.index("block_modes") < steps.index("buffer_update")
    import torch

    from mobilecodec.models.buffer import snap_to_storage

    values = torch.linspace(-200, 200, 100_003)
    for e in man["buffer"]:
        st, ours = e["storage"], snap_to_storage(e["name"], values)
        info = np.iinfo(st["dtype"]) if st["dtype"] != "float16" else None
        said = (values.numpy().astype(np.float16).astype(np.float32) if info is None else
                np.clip(np.round(values.numpy() * st["scale"]), info.min, info.max) / st["scale"])
        assert np.array_equal(ours.numpy(), said.astype(np.float32)), e["name"]
    update = man["call_order"]["P"][-1]["what"]
    assert "frame = round(frame*255)/255" in update and "flow = round(flow*256)/256 clamped to int16" in update
    assert "round(flow*256)/256" in man["call_order"]["P"][steps.index("warp")]["what"]  # this frame's, as stored
    for name, g in man["graphs"].items():
        proto = onnx.load(str(package / g["file"]))
        onnx.checker.check_model(proto)
        assert [i.name for i in proto.graph.input] == [i["name"] for i in g["inputs"]]
        assert [o.name for o in proto.graph.output] == [o["name"] for o in g["outputs"]]
        for vi in list(proto.graph.input) + list(proto.graph.output):
            assert all(d.HasField("dim_value") and d.dim_value > 0 for d in vi.type.tensor_type.shape.dim)
        ops = {n.op_type for n in proto.graph.node}
        assert "GridSample" not in ops and not ops & {"If", "Loop", "Scan"}
        hist = {}
        for n in proto.graph.node:
            hist[n.op_type] = hist.get(n.op_type, 0) + 1
        assert g["ops"] == dict(sorted(hist.items()))
    assert (package / "checkpoint.pt").is_file()


def test_float_parity_over_gop(package, carphone):
    from mobilecodec.runtime.parity import float_parity

    r = float_parity(package, carphone, frames=4, intra_period=4)
    # same inputs -> every graph matches its PyTorch stage
    assert r["stage_max_abs"] and max(r["stage_max_abs"].values()) < 1e-4, r["stage_max_abs"]
    # Free-running, each side with its own analyses and buffer: nothing makes their latents equal (a
    # value within float rounding of a quantization boundary may round apart on another CPU), so
    # bound the reconstructions' distance instead. Measured: identical on a 2-core AMD EPYC
    # (AVX-512); one latent forced apart in frame 0 or 1 leaves frame 3 at 50.7-54.5 dB (nine
    # trials, three each on i_, m_ and r_analysis, a forward hook adding 1 to one element of the
    # PyTorch side's output; two of them changed nothing).
    assert r["recon_psnr_min_db"] >= 45.0, r["per_frame"]


def test_check_passes_on_package(package, capsys):
    assert main(["export", "--check", str(package)]) == 0
    out = capsys.readouterr().out
    assert "i_analysis: ok" in out and "Conv x" in out


def test_check_fails_on_gridsample(tmp_path, capsys):
    g = _hand_made(tmp_path / "warp.onnx", "GridSample", [("x", [1, 3, 8, 8]), ("grid", [1, 8, 8, 2])], "my_warp")
    assert main(["export", "--check", str(g)]) == 1
    out = capsys.readouterr().out
    assert "my_warp" in out and "GridSample" in out and "INCOMPATIBLE" in out


def test_check_fails_on_dynamic_dim(tmp_path, capsys):
    g = _hand_made(tmp_path / "dyn.onnx", "Relu", [("x", ["batch", 3, 8, 8])], "relu_dyn")
    assert main(["export", "--check", str(g), "--no-compile"]) == 1
    out = capsys.readouterr().out
    assert "relu_dyn" in out and "dynamic" in out


def test_check_fails_on_unsupported_op_at_compile(tmp_path, capsys):
    # Erf is outside the allow-list; the static rule names it without compiling
    g = _hand_made(tmp_path / "erf.onnx", "Erf", [("x", [1, 3, 8, 8])], "erf_node")
    assert main(["export", "--check", str(g)]) == 1
    out = capsys.readouterr().out
    assert "erf_node" in out and "at opset 20 it is one Gelu op" in out  # what a GELU's author can do about it
    # an op the static rules pass and the HTP compile refuses (the test above never reached the compile;
    # export audit): LpNormalization over the batch axis
    import onnx
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    lp = helper.make_graph([helper.make_node("LpNormalization", ["x"], ["y"], axis=0, p=1, name="lp_node")], "lp",
                           [vi("x", TensorProto.FLOAT, [2, 8])], [vi("y", TensorProto.FLOAT, [2, 8])])
    onnx.save(helper.make_model(lp, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(tmp_path / "lp.onnx"))
    assert main(["export", "--check", str(tmp_path / "lp.onnx"), "--json", str(tmp_path / "lp.json")]) == 1
    g = json.loads((tmp_path / "lp.json").read_text())["graphs"][0]
    assert g["issues"] == [] and g["compiled"] is False and "QNN HTP could not compile" in g["compile_error"]
    assert "HTP compile FAILED" in capsys.readouterr().out


def test_compile_context_binaries_load_and_run(package, compiled):
    import onnxruntime as ort

    from mobilecodec.export.qnn import SOCS, htp_session

    out, err = compiled
    # a float package without --calibration: its int8 is fitted to random inputs, said now (it was silent,
    # and such binaries decoded carphone at 13-15 dB PSNR-Y)
    assert "are float: without --calibration their stand-in int8 is fitted to random inputs" in err
    man = json.loads((out / "manifest.json").read_text())
    assert man["soc"] == {"soc_model": 43, "name": SOCS[43].name, "htp_arch": 73}
    assert man["calibrated_on_held_out"] is False  # random inputs calibrate the stand-in
    assert set(man["graphs"]) == EXPECTED_GRAPHS
    g = man["graphs"]["i_synthesis"]
    assert any(f.endswith(".bin") for f in g["files"]) and all((out / f).is_file() for f in g["files"])
    import onnx

    ctx = onnx.load(str(out / g["context_model"]))
    assert [n.op_type for n in ctx.graph.node] == ["EPContext"]
    sess = htp_session(out / g["context_model"], SOCS[43])  # loads the binary, no recompile
    y = np.random.default_rng(0).normal(size=(1, 48, 12, 12)).astype(np.float32)
    (x_hat,) = sess.run(None, {"y_hat": y})
    assert x_hat.shape == (1, 6, 96, 96) and np.isfinite(x_hat).all()
    assert x_hat.min() >= -1e-3 and x_hat.max() <= 1 + 1e-2  # synthesis output is clamped to [0, 1]
    # the binary computes the package's graph (only the output's range was checked): against the float
    # graph on onnxruntime CPU, the stand-in int8 (fitted to other random inputs) keeps 58.9 dB and a
    # correlation of 0.998 (measured); a constant grey at the right mean would give about 35 dB
    graph = json.loads((package / "manifest.json").read_text())["graphs"]["i_synthesis"]["file"]
    (ref,) = ort.InferenceSession(str(package / graph), providers=["CPUExecutionProvider"]).run(None, {"y_hat": y})
    mse = float(np.mean((x_hat.astype(np.float64) - ref) ** 2))
    assert 10 * np.log10(1 / mse) > 50 and np.corrcoef(x_hat.ravel(), ref.ravel())[0, 1] > 0.95


def test_export_and_compile_never_replace_each_others_folders(package, compiled, tmp_path, capsys):
    """Both leave a manifest.json; each replaces only a folder of its own kind (copies of a real
    compile folder and of a real package here), refused in one line before any work."""
    import shutil

    bins, other = tmp_path / "bin", tmp_path / "pkg_copy"
    shutil.copytree(compiled[0], bins)
    shutil.copytree(package, other)
    before = {d: sorted(p.name for p in d.iterdir()) for d in (bins, other)}
    capsys.readouterr()
    assert main(["export", "--config", "tiny", "--size", "64x64", "-o", str(bins)]) == 2
    assert "of another kind (mobilecodec-qnn-context" in capsys.readouterr().err
    assert main(["compile", str(package), "--soc", "43", "-o", str(other)]) == 2
    assert "of another kind (mobilecodec-onnx-package" in capsys.readouterr().err
    assert {d: sorted(p.name for p in d.iterdir()) for d in (bins, other)} == before
    assert main(["compile", str(package), "--soc", "43", "-o", str(bins)]) == 0  # its own kind: replaced


def test_json_may_not_overwrite_a_file_of_the_package_read(package, capsys):
    manifest = package / "manifest.json"
    before = manifest.read_bytes()
    assert main(["export", "--check", str(package), "--no-compile", "--json", str(manifest)]) == 2
    assert "is a file inside" in capsys.readouterr().err and manifest.read_bytes() == before


def test_compile_records_a_held_out_calibration(package, tmp_path):
    """`compile --calibration carphone --allow-held-out`: the manifest says the stand-in int8 was
    fitted to the held-out clip (without a calibration it says not: the test above)."""
    out = tmp_path / "bin"
    assert main(["compile", str(package), "--calibration", "carphone", "--frames", "2", "--allow-held-out",
                 "-o", str(out)]) == 0
    ctx = json.loads((out / "manifest.json").read_text())
    assert ctx["calibrated_on_held_out"] is True and ctx["calibration_frames"] == 2  # --frames was recorded nowhere


def test_compile_calibrates_on_a_clip_larger_than_the_package(package, tmp_path):
    """bikes (640x272, padded 640x320) calibrates the 192x192 package: its frames are cut about their
    centre to the package's size (carphone, the one bundled clip that fits, is held out)."""
    out = tmp_path / "bin"
    assert main(["compile", str(package), "--calibration", "bikes", "--frames", "2", "-o", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["calibrated_on_held_out"] is False and "bikes" in man["quantization"]["calibration"]
    from mobilecodec.io import read_frames as read_video
    from mobilecodec.io.samples import resolve_input
    from mobilecodec.models.yuv import tensor_to_frame
    from mobilecodec.runtime.parity import package_frames

    cut = tensor_to_frame(package_frames(resolve_input("bikes"), 1, 192, 192, crop=True)[0])
    src = read_video(resolve_input("bikes"), 1)[0]  # 640x272: the centre 192x192 at row 40, column 224
    assert np.array_equal(cut.y, src.y[40:232, 224:416]) and np.array_equal(cut.u, src.u[20:116, 112:208])
    assert np.array_equal(cut.v, src.v[20:116, 112:208])


def test_calibration_feeds_every_frame_to_the_i_frame_graphs(package):
    """compile --calibration CLIP --frames N coded one GOP: the I-frame graphs were calibrated on its
    first frame alone while the manifest recorded N frames; they see all N now, the P-frame graphs N-1."""
    from mobilecodec.io.samples import resolve_input
    from mobilecodec.runtime.parity import record_feeds

    feeds = record_feeds(package, resolve_input("bikes"), 3)
    counts = {n: len(f) for n, f in feeds.items()}
    assert all(counts[n] == 3 for n in ("i_analysis", "i_hyper_analysis", "i_synthesis")), counts
    assert all(counts[n] == 2 for n in ("motion_predictor", "m_analysis", "r_analysis", "r_synthesis")), counts


@pytest.mark.parametrize("argv, needle", [
    (["export", "--config", "tiny", "--size", "144x176", "--original-size", "144x176", "-o", "{tmp}/p"],
     "goes with a padded --size"),
    (["export", "--config", "tiny", "--size", "192x192", "--original-size", "300x300", "-o", "{tmp}/p"],
     "pads to 320x320, not to the graphs' 192x192"),
    (["export", "--config", "tiny", "--size", "63x63", "-o", "{tmp}/p"], "must be even"),
    (["export", "--config", "tiny", "--size", "192x192", "--original-size", "143x176", "-o", "{tmp}/p"],
     "must be even"),
    (["export", "--checkpoint", "{tmp}/missing.pt", "--size", "192x192", "-o", "{tmp}/p"], "no such checkpoint"),
    (["compile", "{pkg}", "--soc", "9999", "-o", "{tmp}/b"], "unknown SoC"),
    (["compile", "{pkg}", "--soc", "43", "--htp-arch", "75", "-o", "{tmp}/b"], "HTP v73"),
    (["compile", "{tmp}/nope", "-o", "{tmp}/b"], "no such package"),
    (["compile", "{pkg}", "--calibration", "carphone", "-o", "{tmp}/b"], "held-out evaluation clip"),
    (["export", "--check", "{tmp}/nope"], "no such package"),
    (["export", "--check", "{pkg}", "--no-compile", "--soc", "57"], "--no-compile compiles nothing"),  # JSON: soc 57
    (["export", "--checkpoint", "{pkg}/checkpoint.pt", "--size", "192x192", "--int8", "{pkg}/checkpoint.pt",
      "-o", "{tmp}/p"], "a file; give the folder"),  # said "no such folder" of a file that exists
])
def test_bad_input_exit_2(argv, needle, tmp_path, package, capsys):
    argv = [a.format(tmp=tmp_path, pkg=package) for a in argv]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written temp folder


def test_export_accepts_the_real_frame_size(tmp_path, capsys):
    """--size 144x176 (carphone): graphs at the padded 192x192, the manifest records 144x176."""
    import json

    assert main(["export", "--config", "tiny", "--size", "144x176", "--seed", "7", "-o", str(tmp_path / "p")]) == 0
    assert "padded to a multiple of 64" in capsys.readouterr().err
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert man["padded_size"] == [192, 192] and man["original_size"] == [144, 176]
    assert man["init_seed"] == 7 and man["checkpoint"] is None  # the random weights' seed was nowhere


def test_a_package_exported_width_first_is_named_on_use(carphone, tmp_path, capsys):
    """export takes HEIGHTxWIDTH, encode WxH: a package exported with the video's WxH refuses the video
    and says which convention was likely swapped."""
    from mobilecodec.io import crop_frame, read_frames, write_video

    video = tmp_path / "wide.y4m"  # 128 wide, 64 tall
    write_video(video, [crop_frame(f, 128, 64) for f in read_frames(carphone, 2)], 30)
    assert main(["export", "--config", "tiny", "--size", "128x64", "-o", str(tmp_path / "p")]) == 0  # WxH by habit
    capsys.readouterr()
    assert main(["encode", str(video), "--package", str(tmp_path / "p"), "-o", str(tmp_path / "a.mnvc")]) == 2
    assert "was it given as WxH?" in capsys.readouterr().err


def _clip64(carphone: Path, path: Path, frames: int = 2) -> Path:
    """`frames` frames of carphone cut to 64x64 about (32, 48): a clip the 64x64 packages code unpadded."""
    from mobilecodec.io import VideoWriter, YUVFrame, read_frames

    with VideoWriter(path, 64, 64, 30) as w:
        for f in read_frames(carphone, frames):
            w.write(YUVFrame(f.y[32:96, 48:112], f.u[16:48, 24:56], f.v[16:48, 24:56]))
    return path


def test_a_compile_folder_of_a_re_exported_package_is_refused(carphone, tmp_path, capsys):
    """`export` may replace its own package; a compile folder made from it before then holds the old
    networks' context binaries. Run against the new host tables its stream would not decode (measured:
    frame 0's hash differs), so it is refused in one line, naming what changed. (Its own export: a
    copy of `package64` would fall back to the unchanged original, by design.)"""
    pkg, cmp = tmp_path / "pkg", tmp_path / "cmp"
    clip = _clip64(carphone, tmp_path / "c64.y4m")
    assert main(["export", "--checkpoint", "tiny_b0.0032", "--size", "64x64", "-o", str(pkg), "--no-progress"]) == 0
    assert main(["compile", str(pkg), "-o", str(cmp), "--no-progress"]) == 0
    assert main(["encode", "--package", str(cmp), "--ep", "qnn", str(clip), "-o", str(tmp_path / "a.mnvc"),
                 "--no-progress"]) == 0
    assert main(["export", "--checkpoint", "tiny_b0.0512", "--size", "64x64", "-o", str(pkg), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["encode", "--package", str(cmp), "--ep", "qnn", str(clip), "-o", str(tmp_path / "b.mnvc"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "compile it again" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.mnvc").exists()


def test_a_graph_file_that_is_not_the_manifests_is_refused(package, tmp_path, capsys):
    """A package whose graph file was replaced (here by the same graph of a 64x64 export: other
    shapes) is refused in one line by everything that loads it, instead of failing inside
    onnxruntime with a traceback."""
    import shutil

    small, mixed = tmp_path / "small", tmp_path / "mixed"
    assert main(["export", "--config", "tiny", "--size", "64x64", "-o", str(small), "--no-progress"]) == 0
    shutil.copytree(package, mixed)
    shutil.copyfile(small / "graphs" / "r_synthesis.onnx", mixed / "graphs" / "r_synthesis.onnx")
    capsys.readouterr()
    for argv in (["encode", "--package", str(mixed), "carphone", "--frames", "2", "-o", str(tmp_path / "m.mnvc")],
                 ["profile", str(mixed), "--runs", "1", "--warmup", "0"],
                 ["export", "--check", str(mixed), "--no-compile"]):
        assert main([*argv, "--no-progress"] if argv[0] != "export" else argv) == 2, argv
        err = capsys.readouterr().err
        assert "r_synthesis.onnx is not the graph its manifest describes" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_graph_file_changed_after_a_load_is_still_refused(package, tmp_path, monkeypatch):
    """load_manifest hashes each graph file once per process while it stays as it was (one command
    loads a manifest up to 4-6 times), and a file changed since the last load is hashed and refused
    again: here the same length of other bytes written in place, its mtime set to another value."""
    import os
    import shutil

    import mobilecodec.fsutil as fsutil
    from mobilecodec.errors import InputError
    from mobilecodec.export.manifest import load_manifest

    pkg = tmp_path / "pkg"
    shutil.copytree(package, pkg)
    hashed: list[str] = []
    file_sha256 = fsutil.file_sha256
    monkeypatch.setattr(fsutil, "file_sha256", lambda path: hashed.append(Path(path).name) or file_sha256(path))
    man = load_manifest(pkg)
    assert sorted(hashed) == sorted(Path(g["file"]).name for g in man["graphs"].values())
    assert load_manifest(pkg) == man and len(hashed) == len(man["graphs"])  # unchanged: not read again
    graph = pkg / man["graphs"]["r_synthesis"]["file"]
    st = graph.stat()
    data = graph.read_bytes()
    with open(graph, "r+b") as f:  # in place: same inode, same size
        f.write(bytes(b ^ 0xFF for b in data[:64]))
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert graph.stat().st_size == st.st_size and graph.stat().st_ino == st.st_ino
    for _ in range(2):
        with pytest.raises(InputError, match="r_synthesis.onnx is not the graph its manifest describes"):
            load_manifest(pkg)
    graph.write_bytes(data)  # put back: accepted again
    assert load_manifest(pkg) == man


def test_eval_names_the_compile_folders_it_codes(package64, carphone, tmp_path):
    """Two compile folders of one package for two SoCs are two RD points, each labelled by the folder
    given and recording its export package and SoC."""
    pkg, soc43 = package64
    soc57 = tmp_path / "soc57"
    clip = _clip64(carphone, tmp_path / "c64.y4m")
    assert main(["compile", str(pkg), "--soc", "57", "-o", str(soc57), "--no-progress"]) == 0
    assert main(["eval", "--package", f"{soc43},{soc57}", "--ep", "qnn", str(clip),
                 "-o", str(tmp_path / "ev"), "--no-progress"]) == 0
    res = json.loads((tmp_path / "ev" / "c64_eval.json").read_text())
    points = res["points"]
    assert [p["label"] for p in points] == ["soc43", "soc57"]
    assert [p["package"] for p in points] == [str(soc43), str(soc57)]
    assert all(p["export_package"] == str(pkg.resolve()) for p in points)
    assert [p["soc"]["soc_model"] for p in points] == [43, 57]


def test_profile_estimates_a_compile_folder_from_its_package(package64, tmp_path):
    """`profile CMP --ep qnn --device`: the NPU estimate of a compile folder reads its export package's
    graphs, at w8a8 where the compile quantized float graphs (it failed after the timings: 'not a
    mobilecodec export manifest')."""
    (pkg, cmp), out = package64, tmp_path / "p.json"
    assert main(["profile", str(cmp), "--ep", "qnn", "--runs", "1", "--warmup", "0", "--no-ops", "--device", "8gen2",
                 "--json", str(out), "--no-progress"]) == 0
    npu = json.loads(out.read_text())["npu"]["devices"]["8gen2"]
    graphs = npu["graphs"]
    for f in npu["frames"].values():  # byte counts say so in their names ("dram_weights" was bytes)
        parts = (f["dram_weights_bytes"], f["dram_graph_io_bytes"], f["dram_activations_bytes"])
        assert sum(parts) == f["dram_bytes"] > 0 and not {"dram_weights", "dram_graph_io", "dram_activations"} & set(f)
    assert set(graphs) == EXPECTED_GRAPHS and {g["precision"] for g in graphs.values()} == {"w8a8"}
    assert all(g["label"] == "ESTIMATE" for g in graphs.values())
    # each figure is its export package graph's, priced at w8a8 (the compile quantized float graphs)
    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.runtime.npu_estimate import estimate_graph
    from mobilecodec.runtime.npu_graph import extract_layers

    files = {n: pkg / g["file"] for n, g in load_manifest(pkg)["graphs"].items()}
    assert graphs["i_synthesis"]["ms"] > 0
    for name, g in graphs.items():
        want = estimate_graph(extract_layers(files[name], name), "8gen2", "w8a8")["ms"]
        assert g["ms"] == pytest.approx(want, rel=1e-9), name


def test_an_empty_onnx_file_is_refused(tmp_path, capsys):
    """onnx parses an empty file as an empty model: `export --check --no-compile` said "all 1 graph(s)
    pass the static HTP rules" (exit 0), with compiling a traceback, and profile counted 0 MACs."""
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for argv in (["export", "--check", str(empty), "--no-compile"], ["export", "--check", str(empty)],
                 ["profile", str(empty), "--size", "64x64"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not an ONNX model" in err, (argv, err)


def _edited(folder: Path, copy: Path, change) -> Path:
    """A copy of a package or compile folder whose manifest `change(copy, manifest)` edited."""
    import shutil

    shutil.copytree(folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    change(copy, man)
    (copy / "manifest.json").write_text(json.dumps(man))
    return copy


def test_check_refuses_an_edited_or_damaged_manifest(package, tmp_path):
    """`export --check` passed a manifest without i_analysis, a graph swapped for another with its hash
    edited to match, an edited padded_size and a graph file of another package; a manifest without
    hashes or graphs was an internal error (in compile too). Each is named in one line now."""
    import shutil

    from cli_run import assert_clean_error, cli_here

    def swap(pkg: Path, man: dict) -> None:
        shutil.copyfile(pkg / "graphs" / "r_synthesis.onnx", pkg / "graphs" / "i_synthesis.onnx")
        man["graphs"]["i_synthesis"]["sha256"] = man["graphs"]["r_synthesis"]["sha256"]

    cases = [
        ("dropped", lambda p, m: m["graphs"].pop("i_analysis"), "lists no graph for"),
        ("swapped", swap, "i_synthesis.onnx has inputs"),
        ("size", lambda p, m: m.__setitem__("padded_size", [64, 64]), "not what its padded_size 64x64 gives"),
        ("elsewhere", lambda p, m: m["graphs"]["i_synthesis"].__setitem__(
            "file", str(package / "graphs" / "i_synthesis.onnx")), "lies outside the package"),
        ("upward", lambda p, m: m["graphs"]["i_synthesis"].__setitem__(
            "file", f"../{package.name}/graphs/i_synthesis.onnx"), "lies outside the package"),
        ("nohash", lambda p, m: [g.pop("sha256") for g in m["graphs"].values()], "no sha256"),
        ("nographs", lambda p, m: m.__setitem__("graphs", []), "no graphs"),
        ("nouse", lambda p, m: m["graphs"]["i_analysis"].pop("used_by_codec"), "used_by_codec"),
        # encode and decode: internal errors (KeyError); compile: one after compiling all 13 graphs
        ("nohost", lambda p, m: m.pop("host_checkpoint"), "no host_checkpoint"),
        ("nohash2", lambda p, m: m.pop("weights_hash"), "no weights_hash"),
        ("noconfig", lambda p, m: m.pop("config_name"), "no config_name"),
        # passed the check; encode: a KeyError at the first P-frame (runtime audit, session 39)
        ("unused", lambda p, m: m["graphs"]["m_synthesis"].__setitem__("used_by_codec", False),
         "the codec runs m_synthesis, which the manifest says it does not use"),
        # a config the graphs were not exported from ran unnoticed (runtime audit)
        ("config", lambda p, m: m["config"]["warp"].__setitem__("block_size", 16), "the manifest's config is not"),
    ]
    for tag, change, words in cases:
        pkg = _edited(package, tmp_path / tag, change)
        assert_clean_error(cli_here("export", "--check", pkg, "--no-compile"), words)
    # what the check refuses, the runtime refuses before coding: a swapped graph and an edited size were
    # a KeyError traceback and onnxruntime's own multi-line error at the first encode (runtime audit)
    for tag in ("swapped", "size", "unused", "config"):
        words = next(w for t, _, w in cases if t == tag)
        assert_clean_error(cli_here("encode", "carphone", "--package", tmp_path / tag, "-o", tmp_path / f"{tag}.mnvc",
                                    "--frames", "3"), words)
        assert not (tmp_path / f"{tag}.mnvc").exists()
    # a package whose graphs folder is a link (`cp -rs`) names its graphs inside itself: it was refused as
    # lying outside the package, the links resolved (runtime audit)
    linked = tmp_path / "linked"
    shutil.copytree(package, linked, ignore=lambda d, names: ["graphs"] if Path(d) == package else [])
    (linked / "graphs").symlink_to(package / "graphs")
    assert cli_here("export", "--check", linked, "--no-compile").returncode == 0
    assert cli_here("encode", "carphone", "--package", linked, "-o", tmp_path / "l.mnvc", "--frames", "2").returncode == 0
    assert_clean_error(cli_here("compile", tmp_path / "nohash", "-o", tmp_path / "bins"), "no sha256")
    assert_clean_error(cli_here("compile", tmp_path / "noconfig", "-o", tmp_path / "bins"), "no config_name")
    assert_clean_error(cli_here("encode", "carphone", "--package", tmp_path / "nohost", "-o", tmp_path / "s.mnvc",
                                "--frames", "1"), "no host_checkpoint")


def test_a_compile_folder_on_the_cpu_names_the_package_it_was_compiled_from(compiled, package):
    """A compile folder with --ep cpu was told to "pass the float export package", though it may have
    been compiled from an int8 one (runtime audit): the line names the package it was compiled from."""
    import re

    from mobilecodec.errors import InputError
    from mobilecodec.runtime.engine import resolve_package

    with pytest.raises(InputError, match=rf"use --ep qnn \(or pass the export package it was compiled from, "
                                         rf"{re.escape(str(package))}, for --ep cpu\)"):
        resolve_package(compiled[0], "cpu")


def test_a_compile_folder_is_checked_where_it_runs(package, carphone, tmp_path, capsys):
    """Compile folders (found by audit): a 1-frame calibration clip calibrated every P-frame graph on
    random inputs and recorded --frames; a folder moved beside another package of its package's name
    was refused although its own was where it had been; an edited manifest was an internal error or
    ran the graph it no longer listed from the float package; a context binary of another compile was
    run as is; encode's JSON named the float package beside the QNN backend."""
    import shutil

    from cli_run import assert_clean_error, cli_here
    from mobilecodec.io import read_frames, write_video
    from mobilecodec.runtime.engine import resolve_package

    one, two = tmp_path / "one.y4m", tmp_path / "two.y4m"
    frames = read_frames(carphone, 2)
    write_video(one, frames[:1], 30000 / 1001)
    write_video(two, frames, 30000 / 1001)
    cal = ["--allow-held-out", "--no-progress"]  # carphone frames: the refusal is tested elsewhere
    assert_clean_error(cli_here("compile", package, "--calibration", one, *cal, "-o", tmp_path / "C1"),
                       "has 1 frame", "random inputs")
    capsys.readouterr()
    package = shutil.copytree(package, tmp_path / "a" / "pkg")  # the pair side by side in a/
    c = tmp_path / "a" / "C"
    assert main(["compile", str(package), "--calibration", str(two), "--frames", "4", *cal, "-o", str(c)]) == 0
    assert "two.y4m has 2 frames, fewer than --frames 4" in capsys.readouterr().err
    ctx = json.loads((c / "manifest.json").read_text())
    assert ctx["calibration_frames"] == 2  # none of the coding graphs on random inputs: the hyper-synthesis alone
    assert set(ctx["quantization"]["standin_on_random_inputs"]) == {"i_hyper_synthesis", "m_hyper_synthesis",
                                                                    "r_hyper_synthesis"}
    # moved alone beside another package named like its own (its own still where it was): its relative
    # name finds the other one, its absolute name its own
    (tmp_path / "b").mkdir()
    assert main(["export", "--config", "tiny", "--seed", "5", "--size", "192x192", "-o",
                 str(tmp_path / "b" / "pkg"), "--no-progress"]) == 0
    moved = shutil.copytree(c, tmp_path / "b" / "C")
    assert resolve_package(moved, "qnn")[0] == package.resolve()
    # a folder compiled for another SoC runs with that SoC's options (it was opened with the default's)
    from mobilecodec.runtime.engine import OnnxEngine

    assert main(["compile", str(package), "--soc", "57", "-o", str(tmp_path / "C57"), "--no-progress"]) == 0
    assert OnnxEngine(tmp_path / "C57", ep="qnn").soc_model == 57 and OnnxEngine(c, ep="qnn").soc_model == 43

    stream = tmp_path / "s.mnvc"
    assert main(["encode", str(carphone), "--package", str(c), "--ep", "qnn", "--frames", "2", "-o", str(stream),
                 "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    enc = json.loads((tmp_path / "e.json").read_text())
    assert (enc["package"], enc["export_package"], enc["soc"]["soc_model"]) == (str(c), str(package.resolve()), 43)
    for tag, change, words in [
        ("nopackage", lambda d, m: m.pop("package"), ["no package or no graphs"]),
        ("nographs", lambda d, m: m.pop("graphs"), ["no package or no graphs"]),
        ("soc", lambda d, m: m["soc"].__setitem__("soc_model", 9999), ["unknown SoC model 9999"]),
        ("nor", lambda d, m: m["graphs"].pop("r_synthesis"), ["lists no context binary for r_synthesis"]),
        ("v99", lambda d, m: m.__setitem__("version", 99), ["version 99"]),
        ("gone", lambda d, m: m.update(package=str(d / "nowhere"), package_relative="../nowhere"),
         ["was compiled from the export package at", "no package is there now"]),
        ("swapped", lambda d, m: shutil.copyfile(d / "i_synthesis_ctx.onnx", d / "r_synthesis_ctx.onnx"),
         ["r_synthesis_ctx.onnx (r_synthesis) is not the binary compiled"]),
    ]:
        edited = _edited(c, tmp_path / tag, change)
        assert_clean_error(cli_here("decode", stream, "--package", edited, "--ep", "qnn", "-o", tmp_path / f"{tag}.y4m"),
                           *words)
    # a package of another size: the export to make names the video's own size (it named the padded one)
    assert_clean_error(cli_here("encode", "bikes", "--package", package, "--frames", "1", "-o", tmp_path / "b.mnvc"),
                       "pads to 320x640", "mobilecodec export --size 272x640")
    assert_clean_error(cli_here("eval", carphone, "--checkpoint", "tiny_b0.0064", "--package", ",", "--ep", "qnn",
                                "-o", tmp_path / "E"), "--ep applies to --package")


@pytest.mark.parametrize("mode, want", [("block_overlap", "block_overlap warp (block 8, overlap 4) of buffer"),
                                        ("block", "block warp (block 8) of buffer"),
                                        ("dense", "dense warp (block 8) of buffer")])
def test_the_manifests_warp_step_names_only_the_overlap_it_uses(mode, want):
    """A dense or plain block warp's step said 'overlap 4', which only block_overlap blends with."""
    from mobilecodec.export.manifest import call_order
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    steps = call_order(VideoCodec(get_config("tiny", warp_mode=mode)))["P"]
    (warp,) = [s for s in steps if s.get("op") == "warp"]
    assert warp["what"].startswith(want), warp["what"]


def test_the_manifest_names_only_buffer_io_the_graphs_have(tmp_path):
    """Hybrid buffering: the host warp reads residual_feat, no graph does, yet the manifest named
    buffer_in.residual_feat as its graph input (export audit). Every name it gives is a graph's."""
    assert main(["init", "--config", "tiny", "--buffering", "hybrid", "-o", str(tmp_path / "h.pt")]) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "h.pt"), "--size", "64x64", "-o", str(tmp_path / "pkg"),
                 "--no-progress"]) == 0
    man = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    names = {key: {t["name"] for g in man["graphs"].values() for t in g[key]} for key in ("inputs", "outputs")}
    buf = {b["name"]: b for b in man["buffer"]}
    assert buf["residual_feat"]["graph_input"] is None and buf["residual_feat"]["graph_output"] in names["outputs"]
    for b in man["buffer"]:
        assert b["graph_input"] is None or b["graph_input"] in names["inputs"], b
        assert b["graph_output"] is None or b["graph_output"] in names["outputs"], b
