"""The onnxruntime streaming codec on a real clip: streams are interchangeable with the PyTorch
path (both directions), with per-frame hash results and the drift between backends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobilecodec.errors import InputError

PY = [sys.executable, "-m", "mobilecodec"]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def streams(tiny_package, tiny_checkpoint, carphone, tmp_path_factory):
    """carphone (5 frames, I P P P I) encoded by PyTorch and by the runtime."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import encode_video
    from runtime.stream import encode_package

    d = tmp_path_factory.mktemp("streams")
    model, _ = load_checkpoint(tiny_checkpoint)
    pt = encode_video(model, carphone, d / "pt.mnvc", intra_period=4, max_frames=5, progress=False)
    rt = encode_package(tiny_package, carphone, d / "rt.mnvc", intra_period=4, max_frames=5, progress=False)
    return d / "pt.mnvc", d / "rt.mnvc", pt, rt


def _check_drift(summary: dict, encoder_hashes: list[str], encoded_by_runtime: bool) -> None:
    drift = summary["drift"]
    assert summary["frames"] == 5 and len(drift["per_frame"]) == 5
    assert [f["type"] for f in summary["per_frame"]] == list("IPPPI")
    for row, f, h in zip(drift["per_frame"], summary["per_frame"], encoder_hashes):
        assert row["runtime_hash_match"] == (f["hash"] == h)
        if encoded_by_runtime:
            assert row["runtime_hash_match"]
        else:
            assert row["pytorch_hash_match"]
        if not row["identical"]:
            assert row["psnr_min_db"] > 50.0, row
    assert drift["min_psnr_db"] is None or drift["min_psnr_db"] > 50.0


def test_pytorch_stream_decodes_with_runtime(streams, tiny_package):
    from runtime.stream import decode_package

    pt_path, _, pt, _ = streams
    s = decode_package(tiny_package, pt_path, None, drift=True, progress=False)
    assert "onnxruntime CPU" in s["backend"]
    _check_drift(s, [f["hash"] for f in pt["per_frame"]], encoded_by_runtime=False)


def test_runtime_stream_decodes_with_pytorch(streams, tiny_package, tiny_checkpoint, tmp_path):
    """The reverse, through the CLI: the PyTorch decoder reads the runtime's stream."""
    _, rt_path, _, rt = streams
    p = cli("decode", rt_path, "--checkpoint", tiny_checkpoint, "--no-verify", "--no-progress",
            "--json", tmp_path / "d.json")
    assert p.returncode in (0, 1), p.stderr  # 1 only if some frame hash differs (backend drift)
    dec = json.loads((tmp_path / "d.json").read_text())
    assert dec["frames"] == 5
    from runtime.stream import decode_package

    s = decode_package(tiny_package, rt_path, None, drift=True, progress=False)
    _check_drift(s, [f["hash"] for f in rt["per_frame"]], encoded_by_runtime=True)
    # the PyTorch CLI decode and the drift report's PyTorch decode agree frame by frame
    assert [f["hash_match"] for f in dec["per_frame"]] == [r["pytorch_hash_match"] for r in s["drift"]["per_frame"]]


def test_cli_package_round_trip_writes_video(tiny_package, carphone, tmp_path):
    enc = cli("encode", carphone, "-o", tmp_path / "a.mnvc", "--package", tiny_package, "--frames", 3,
              "--intra-period", 2, "--no-progress", "--json", tmp_path / "e.json")
    assert enc.returncode == 0, enc.stderr
    dec = cli("decode", tmp_path / "a.mnvc", "--package", tiny_package, "--drift", "-o", tmp_path / "d.y4m",
              "--no-progress", "--json", tmp_path / "d.json")
    assert dec.returncode == 0, dec.stderr
    assert "bit-exact between backends" in dec.stdout
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["frames"] == 3 and d["hash_matches"] == 3  # same backend that encoded it
    # 3 frames of 176x144 YUV420 plus y4m headers
    assert (tmp_path / "d.y4m").stat().st_size > 3 * 176 * 144 * 3 // 2


def test_padded_size_mismatch_is_a_clean_error(tiny_package, tmp_path):
    import numpy as np

    from mobilecodec.io import VideoWriter, YUVFrame

    clip = tmp_path / "small.y4m"
    w = VideoWriter(clip, 64, 64, 25)
    w.write(YUVFrame(np.full((64, 64), 90, np.uint8), np.full((32, 32), 128, np.uint8),
                     np.full((32, 32), 128, np.uint8)))
    w.close()
    p = cli("encode", clip, "-o", tmp_path / "s.mnvc", "--package", tiny_package, "--no-progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "pads to 64x64" in p.stderr and "192x192" in p.stderr
    assert not (tmp_path / "s.mnvc").exists()


def test_qnn_needs_int8_graphs(tiny_package):
    from runtime.engine import OnnxEngine

    with pytest.raises(InputError, match="float graphs"):
        OnnxEngine(tiny_package, ep="qnn")
    with pytest.raises(InputError, match="execution provider"):
        OnnxEngine(tiny_package, ep="gpu")
