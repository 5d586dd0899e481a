"""The onnxruntime streaming codec on a real clip: streams are interchangeable with the PyTorch
path (both directions), with per-frame hash results and the drift between backends."""

from __future__ import annotations

import json

import pytest

from mobilecodec.errors import InputError

from cli_run import cli, cli_here


@pytest.fixture(scope="module")
def streams(tiny_package, tiny_checkpoint, carphone, tmp_path_factory):
    """carphone (5 frames, I P P P I) encoded by PyTorch and by the runtime."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import encode_video
    from mobilecodec.runtime.stream import encode_package

    d = tmp_path_factory.mktemp("streams")
    model, _ = load_checkpoint(tiny_checkpoint)
    pt = encode_video(model, carphone, d / "pt.mnvc", intra_period=4, max_frames=5, progress=False)
    rt = encode_package(tiny_package, carphone, d / "rt.mnvc", intra_period=4, max_frames=5, progress=False)
    return d / "pt.mnvc", d / "rt.mnvc", pt, rt


# Cross-backend bound. Two backends (PyTorch vs onnxruntime CPU) are not bit-exact in general: float
# summation order differs by kernel and CPU (AVX2 vs AVX-512, AMD vs Intel), and each decoder carries
# its own buffer, so a one-level rounding difference can propagate over a GOP. Measured on carphone,
# 5 frames (I P P P I) of the random-init tiny model: identical decodes on an AMD EPYC (2 cores, AVX2);
# issue #12 measured at most one uint8 level on a fraction of the samples on another CPU (a decode
# whose every sample is within one level of the other has PSNR >= 48.13 dB). 45 dB leaves margin for
# that while still failing on a real mismatch (a wrong latent or table gives < 30 dB).
CROSS_BACKEND_MIN_PSNR_DB = 45.0


def _spy_latents(engine, store: list) -> None:
    """Record every latent the engine's decoder source produces (per frame: name, array); behaviour
    is unchanged."""
    make = engine.latent_decoder

    def latent_decoder(payload, height, width, mode_map=None):
        src, frame = make(payload, height, width, mode_map), []
        store.append(frame)
        for name in ("iframe", "motion", "residual"):
            fn = getattr(src, name)

            def wrapped(*a, _fn=fn, _name=name):
                out = _fn(*a)
                frame.append((_name, out.detach().numpy().copy()))
                return out
            setattr(src, name, wrapped)
        return src

    engine.latent_decoder = latent_decoder


def _check_interchangeable(package, stream, encoder_hashes: list[str], encoded_by_runtime: bool) -> dict:
    """What the design guarantees between backends, asserted exactly: the decode on the backend that
    encoded the stream reproduces every encoder hash, and both backends parse the payloads into the
    very same latents (same entropy parameters from the integer hyper-synthesis, same symbols).
    What it does not guarantee (bit-exact reconstructions across backends) is bounded by PSNR."""
    import numpy as np

    from mobilecodec.codec.video import TorchEngine, decode_video
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package

    rt_engine = OnnxEngine(package)
    rt_lat: list = []
    pt_lat: list = []
    _spy_latents(rt_engine, rt_lat)
    s = decode_package(package, stream, None, drift=True, engine=rt_engine, progress=False)
    pt_engine = TorchEngine(rt_engine.model)
    _spy_latents(pt_engine, pt_lat)
    pt = decode_video(rt_engine.model, stream, None, verify=False, engine=pt_engine, progress=False)

    drift = s["drift"]
    assert s["frames"] == 5 and len(drift["per_frame"]) == 5
    assert [f["type"] for f in s["per_frame"]] == list("IPPPI")
    same_backend = [f["hash"] for f in (s if encoded_by_runtime else pt)["per_frame"]]
    assert same_backend == encoder_hashes  # exact: a decode reproduces its own backend's encode
    assert [r["runtime_hash_match"] for r in drift["per_frame"]] == [f["hash"] == h for f, h in
                                                                     zip(s["per_frame"], encoder_hashes)]
    assert [r["pytorch_hash_match"] for r in drift["per_frame"]] == [f["hash"] == h for f, h in
                                                                     zip(pt["per_frame"], encoder_hashes)]
    # identical payload parsing on both backends: latents equal bit for bit, frame by frame
    assert [[n for n, _ in f] for f in rt_lat] == [["iframe"], ["motion", "residual"], ["motion", "residual"],
                                                   ["motion", "residual"], ["iframe"]]
    assert [[n for n, _ in f] for f in pt_lat] == [[n for n, _ in f] for f in rt_lat]
    for a, b in zip(rt_lat, pt_lat):
        for (_, x), (_, y) in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    # reconstructions: bounded drift (see CROSS_BACKEND_MIN_PSNR_DB)
    for row in drift["per_frame"]:
        assert row["identical"] or row["psnr_min_db"] >= CROSS_BACKEND_MIN_PSNR_DB, row
    return s


def test_pytorch_stream_decodes_with_runtime(streams, tiny_package):
    pt_path, _, pt, _ = streams
    s = _check_interchangeable(tiny_package, pt_path, [f["hash"] for f in pt["per_frame"]], encoded_by_runtime=False)
    assert "onnxruntime CPU" in s["backend"]


def test_runtime_stream_decodes_with_pytorch(streams, tiny_package, tiny_checkpoint, tmp_path):
    """The reverse, and through the CLI: the PyTorch decoder reads the runtime's stream; its exit
    code says whether every frame reproduced the encoder's hash (0) or not (1, with --no-verify)."""
    _, rt_path, _, rt = streams
    s = _check_interchangeable(tiny_package, rt_path, [f["hash"] for f in rt["per_frame"]], encoded_by_runtime=True)
    p = cli("decode", rt_path, "--checkpoint", tiny_checkpoint, "--no-verify", "--no-progress",
            "--json", tmp_path / "d.json")
    dec = json.loads((tmp_path / "d.json").read_text())
    assert dec["frames"] == 5
    matches = [f["hash"] == r["hash"] for f, r in zip(dec["per_frame"], rt["per_frame"])]
    assert dec["hash_matches"] == sum(matches)
    assert p.returncode == (0 if all(matches) else 1), (p.returncode, p.stderr)
    assert f"{sum(matches)}/5 frame hashes match" in p.stdout
    # the PyTorch CLI decode and the drift report's PyTorch decode agree frame by frame
    assert [f["hash_match"] for f in dec["per_frame"]] == [r["pytorch_hash_match"] for r in s["drift"]["per_frame"]]


def test_cli_package_round_trip_writes_video(tiny_package, carphone, tmp_path):
    enc = cli_here("encode", carphone, "-o", tmp_path / "a.mnvc", "--package", tiny_package, "--frames", 3,
                   "--intra-period", 2, "--no-progress", "--json", tmp_path / "e.json")
    assert enc.returncode == 0, enc.stderr
    dec = cli("decode", tmp_path / "a.mnvc", "--package", tiny_package, "--drift", "-o", tmp_path / "d.y4m",
              "--no-progress", "--json", tmp_path / "d.json")
    assert dec.returncode == 0, dec.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["frames"] == 3 and d["hash_matches"] == 3  # same backend that encoded it
    # the drift summary line states the JSON's count of identical frames, and every frame is
    # identical or within the cross-backend bound
    drift = d["drift"]
    assert f"{drift['frames_identical']}/3 frames bit-exact between backends" in dec.stdout
    assert drift["frames_identical"] == sum(r["identical"] for r in drift["per_frame"])
    for r in drift["per_frame"]:
        assert r["identical"] or r["psnr_min_db"] >= CROSS_BACKEND_MIN_PSNR_DB, r
    # 3 frames of 176x144 YUV420 plus y4m headers
    assert (tmp_path / "d.y4m").stat().st_size > 3 * 176 * 144 * 3 // 2


def test_package_decode_exit_code_on_hash_mismatch(tiny_package, carphone, tmp_path):
    """`decode --package` exits 1 when a frame does not reproduce the encoder's hash (here: the hash
    stored for frame 1 is edited, CRC recomputed, so the mismatch does not depend on the CPU), and 0
    with --allow-drift, still reporting the count."""
    from mobilecodec.bitstream.format import StreamReader, StreamWriter

    enc = cli_here("encode", carphone, "-o", tmp_path / "a.mnvc", "--package", tiny_package, "--frames", 3,
                   "--intra-period", 3, "--no-progress")
    assert enc.returncode == 0, enc.stderr
    with StreamReader(tmp_path / "a.mnvc") as r:
        header, records = r.header, list(r)
    header.frame_count = 0
    with StreamWriter(tmp_path / "b.mnvc", header) as w:
        for i, rec in enumerate(records):
            w.write(rec.frame_type, rec.payload, bytes(4) if i == 1 else rec.frame_hash)
    ok = cli_here("decode", tmp_path / "a.mnvc", "--package", tiny_package, "--no-progress")
    assert ok.returncode == 0 and "3/3 frame hashes match" in ok.stdout, ok.stderr
    bad = cli("decode", tmp_path / "b.mnvc", "--package", tiny_package, "--no-progress", "-o", tmp_path / "b.y4m",
              "--json", tmp_path / "b.json")
    assert bad.returncode == 1, bad.stderr
    assert "2/3 frame hashes match" in bad.stdout
    # one line, named as every command's error (it had no "mobilecodec decode: error:"; I/O audit)
    assert bad.stderr.strip().splitlines()[-1].startswith("mobilecodec decode: error: 1 of 3 decoded frames (first: frame 1)")
    assert "--allow-drift" in bad.stderr
    assert [f["hash_match"] for f in json.loads((tmp_path / "b.json").read_text())["per_frame"]] == [True, False, True]
    allowed = cli_here("decode", tmp_path / "b.mnvc", "--package", tiny_package, "--no-progress", "--allow-drift")
    assert allowed.returncode == 0 and "2/3 frame hashes match" in allowed.stdout, allowed.stderr
    wrong = cli_here("decode", tmp_path / "a.mnvc", "--allow-drift", "--no-progress")
    assert wrong.returncode == 2 and "--allow-drift applies to --package" in wrong.stderr
    wrong = cli_here("decode", tmp_path / "b.mnvc", "--package", tiny_package, "--no-verify", "--no-progress")
    assert wrong.returncode == 2 and "--no-verify applies to PyTorch decodes" in wrong.stderr  # was ignored


def test_padded_size_mismatch_is_a_clean_error(tiny_package, tmp_path):
    import numpy as np

    from mobilecodec.io import VideoWriter, YUVFrame

    clip = tmp_path / "small.y4m"
    w = VideoWriter(clip, 64, 64, 25)
    w.write(YUVFrame(np.full((64, 64), 90, np.uint8), np.full((32, 32), 128, np.uint8),
                     np.full((32, 32), 128, np.uint8)))
    w.close()
    p = cli_here("encode", clip, "-o", tmp_path / "s.mnvc", "--package", tiny_package, "--no-progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "pads to 64x64" in p.stderr and "192x192" in p.stderr
    assert not (tmp_path / "s.mnvc").exists()


def test_a_drift_decode_refuses_another_size_before_the_reference_decodes(tiny_package, tmp_path, monkeypatch):
    """`decode --package P --drift` of a stream P cannot decode (another padded size) decoded it all
    with PyTorch first, and only then refused it: the runtime's decode, which checks, runs first."""
    import numpy as np

    import mobilecodec.codec.video as video
    from mobilecodec.io import VideoWriter, YUVFrame
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package

    clip, stream = tmp_path / "small.y4m", tmp_path / "s.mnvc"
    w = VideoWriter(clip, 64, 64, 25)
    for v in (90, 100):
        w.write(YUVFrame(np.full((64, 64), v, np.uint8), np.full((32, 32), 128, np.uint8),
                         np.full((32, 32), 128, np.uint8)))
    w.close()
    engine = OnnxEngine(tiny_package)
    video.encode_video(engine.model, clip, stream, progress=False)  # the package's own model, 64x64
    decoded, real = [], video.decode_video

    def spy(*a, **kw):
        decoded.append("runtime" if kw.get("engine") is not None else "pytorch")
        return real(*a, **kw)

    monkeypatch.setattr(video, "decode_video", spy)
    with pytest.raises(InputError, match="pads to 64x64"):
        decode_package(tiny_package, stream, None, drift=True, engine=engine, progress=False)
    assert decoded == ["runtime"]


def test_qnn_needs_int8_graphs(tiny_package):
    from mobilecodec.runtime.engine import OnnxEngine

    with pytest.raises(InputError, match="float graphs"):
        OnnxEngine(tiny_package, ep="qnn")
    with pytest.raises(InputError, match="execution provider"):
        OnnxEngine(tiny_package, ep="gpu")
