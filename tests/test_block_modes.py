"""P-frame block modes (`mobilecodec.codec.block_modes`): the map round-trips through the range
coder, the header flag names it, streams with maps decode hash-exact on the PyTorch path and
alike on the onnxruntime path, and on a still scene the modes hold the I-frame's quality where
the shipped codec's residual noise pulls it down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilecodec.codec import block_modes
from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder
from mobilecodec.errors import BitstreamError, InputError


@pytest.mark.parametrize("kind", ["random", "one_mode", "skewed"])
def test_mode_map_round_trips(kind):
    geom = block_modes.ModeMap(8, (192, 320), (180, 300))  # 24 x 40 blocks, 23 x 38 meet the picture
    assert geom.shape == (24, 40) and geom.visible == (23, 38)
    vh, vw = geom.visible
    rng = np.random.default_rng(3)
    if kind == "random":
        drawn = rng.integers(0, 3, (vh, vw))
    elif kind == "one_mode":
        drawn = np.full((vh, vw), 2)
    else:
        drawn = (rng.random((vh, vw)) < 0.03).astype(np.int64)
    modes = geom.outside()
    modes[:vh, :vw] = drawn
    enc = RangeEncoder()
    half = np.array([1 << 15, 1 << 15])
    enc.encode(np.array([1, 0]), half)  # something before the map, as the latents are
    bits = block_modes.encode(enc, modes, geom)
    dec = RangeDecoder(enc.get_bytes())
    assert dec.decode(2, half).tolist() == [1, 0]
    got = block_modes.decode(dec, geom)
    assert np.array_equal(got, modes)
    assert len(enc.get_bytes()) * 8 <= bits + 64 + 32  # the coder spends what the pmf says (+ flush)
    n = 23 * 38  # the visible blocks only
    if kind == "one_mode":
        # a constant map: the adaptive contexts learn it at once (measured 9.7 bits for the 874
        # blocks; one pmf per frame took 16 + 874 x log2(256/254) = 25.8)
        assert bits < 16
    elif kind == "random":
        # uniform noise leaves nothing to learn: near log2(3) per block (measured +3.6 %)
        assert 0.97 * n * np.log2(3) <= bits <= 1.06 * n * np.log2(3)


def test_blocks_outside_the_picture_are_neither_chosen_nor_coded():
    """Blocks wholly in the padding keep the codec's output (`full`) and cost nothing; a block the
    picture only partly covers is judged on its visible pixels alone."""
    geom = block_modes.ModeMap(32, (64, 64), (40, 24))  # 2 x 2 blocks of 32; the picture meets 2 x 1
    assert geom.visible == (2, 1)
    x = torch.zeros(1, 6, 32, 32)  # packed YUV420 of a 64 x 64 frame
    full, pred, copy = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
    full[..., :20, :12] = 0.5  # wrong on the picture...
    pred[..., 20:, :] = 1.0  # ...pred wrong only below the picture (rows 40-63 of luma), copy right everywhere
    copy[..., :, 12:] = 1.0  # ...and copy wrong only right of it
    cands = block_modes.candidates(full, pred, copy)
    modes = block_modes.choose(x, cands, block_modes.BlockModeOptions(block=32, lam=1e-6), geom)
    # visible blocks: pred is exact on the visible part of both (its error lies in the padding)
    assert modes[:, 0].tolist() == [1, 1] and modes[:, 1].tolist() == [0, 0]
    with pytest.raises(ValueError, match="outside the visible"):
        bad = modes.copy()
        bad[0, 1] = 2
        block_modes.encode(RangeEncoder(), bad, geom)
    with pytest.raises(InputError, match="does not fit"):
        block_modes.ModeMap(8, (64, 64), (80, 64))


def test_a_frame_of_one_block_can_pick_any_mode():
    """The first pass prices the modes by even frequencies (a third of the blocks each); with one block
    they rounded to 0, 0, 0, which priced pred and copy at 8 bits and full at 0.01: an 8x8 frame kept
    `full` where pred was better by 4 lambda (the coder codes that first mode at ~1.6 bits whatever it is)."""
    geom = block_modes.ModeMap(8, (64, 64), (8, 8))
    assert geom.visible == (1, 1)
    x = torch.zeros(1, 6, 32, 32)
    full = torch.full_like(x, 6 / 255)  # SSE 64 x (6/255)^2 = 0.0354 over the block, pred's 0
    cands = block_modes.candidates(full, torch.zeros_like(x), torch.full_like(x, 0.5))
    modes = block_modes.choose(x, cands, block_modes.BlockModeOptions(block=8, lam=0.01), geom)
    assert modes[0, 0] == 1  # pred


def test_pmf_hand_values():
    assert block_modes.quantized_pmf(np.array([10, 0, 0])).tolist() == [254, 1, 1]
    assert block_modes.quantized_pmf(np.array([1, 1, 2])).tolist() == [64, 64, 128]
    pmf = block_modes.quantized_pmf(np.array([7, 300, 12]))
    assert pmf.sum() == 256 and pmf.min() >= 1


def test_header_flags():
    assert [block_modes.stream_flags(b) for b in (0, 8, 16, 32)] == [0, 3, 4, 5]
    assert [block_modes.block_from_flags(f) for f in (0, 3, 4, 5)] == [0, 8, 16, 32]
    with pytest.raises(BitstreamError, match="newer encoder"):
        block_modes.block_from_flags(0x10)
    with pytest.raises(BitstreamError, match="block-mode size of 4"):
        block_modes.block_from_flags(2)
    with pytest.raises(InputError, match="block-mode size"):
        block_modes.BlockModeOptions(block=12, lam=0.01)


def _still_clip(path, frames: int = 12, size: int = 128):
    """A still photograph (scikit-image's astronaut) repeated: a camera on a still scene."""
    from PIL import Image

    from mobilecodec.io import VideoWriter, YUVFrame
    from mobilecodec.train.rgb import rgb_to_yuv420
    from mobilecodec.train.stills import find_stills

    img = next(p for p in find_stills() if p.stem == "astronaut")
    rgb = np.asarray(Image.open(img).convert("RGB"))[100:100 + size, 150:150 + size]
    y, u, v = rgb_to_yuv420(rgb)
    with VideoWriter(path, size, size, 25) as w:
        for _ in range(frames):
            w.write(YUVFrame(y, u, v))
    return path


def test_modes_hold_a_still_scene_and_decode_exactly(tmp_path):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video, encode_video
    from mobilecodec.io import read_frames
    from mobilecodec.metrics import psnr_yuv

    clip = _still_clip(tmp_path / "still.y4m")
    src = read_frames(clip)
    model, ck = load_checkpoint("tiny_b0.0064")
    psnr = {}
    for name, modes in (("plain", None), ("modes", block_modes.BlockModeOptions.for_checkpoint(ck, 16))):
        stream = tmp_path / f"{name}.mnvc"
        enc = encode_video(model, clip, stream, intra_period=12, progress=False, modes=modes)
        decoded = []
        for pipeline in (True, False):
            frames = []
            dec = decode_video(model, stream, None, progress=False, pipeline=pipeline,
                               on_frame=lambda i, f, out=frames: out.append(f))
            assert dec["hash_matches"] == 12
            decoded.append(frames)
        psnr[name] = [psnr_yuv(s, d)["yuv"] for s, d in zip(src, decoded[0], strict=True)]
        if modes is not None:  # nearly every block copies or predicts (measured: 89 % in P-frame 1, then 95-100 %)
            counts = [f["modes"] for f in enc["per_frame"][1:]]
            assert sum(m["copy"] + m["pred"] for m in counts) >= 0.9 * sum(sum(m.values()) for m in counts)
            # where no block keeps the residual, its latents are coded as their means: a few bits
            # (measured 6-7; plain P-frames spend 19-106 on them)
            dropped = [f["parts"]["r_y"] for f in enc["per_frame"][1:] if f["modes"]["full"] == 0]
            assert dropped and max(dropped) < 16, dropped
    plain, held = psnr["plain"], psnr["modes"]
    # Measured (AMD EPYC): plain 29.46 dB at P-frame 2, 28.08 at 11; with modes 29.93 and 29.95.
    assert held[11] >= held[2] - 0.3
    assert held[11] - plain[11] >= 0.4


@pytest.mark.parametrize("block", [8, 32])
def test_a_padded_clip_codes_the_picture_blocks_only(carphone, tmp_path, block):
    """carphone (176x144) pads to 192x192: 576 blocks of 8x8, of which the 22 x 18 = 396 that meet
    the picture are chosen and coded (32x32: 6 x 5 of 6 x 6, the last row partly); the stream
    decodes hash-exact, pipelined or not."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video, encode_video

    model, ck = load_checkpoint("tiny_b0.0512")
    stream = tmp_path / "m.mnvc"
    enc = encode_video(model, carphone, stream, intra_period=5, max_frames=5, progress=False,
                       modes=block_modes.BlockModeOptions.for_checkpoint(ck, block))
    assert [sum(f["modes"].values()) for f in enc["per_frame"][1:]] == [{8: 396, 32: 30}[block]] * 4
    for pipeline in (True, False):
        assert decode_video(model, stream, None, progress=False, pipeline=pipeline)["hash_matches"] == 5


def test_onnxruntime_decodes_a_stream_with_modes(tiny_package, carphone, tmp_path):
    """The runtime applies the map too and carries the selected frame in its buffer slot: its
    decode stays within the cross-backend bound of the PyTorch decode on every frame."""
    from mobilecodec.codec.video import encode_video
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package

    engine = OnnxEngine(tiny_package)
    stream = tmp_path / "m.mnvc"
    enc = encode_video(engine.model, carphone, stream, intra_period=6, max_frames=6, progress=False,
                       modes=block_modes.BlockModeOptions(block=8, lam=0.01))
    used = [f["modes"] for f in enc["per_frame"][1:]]
    assert sum(m["full"] for m in used) and sum(m["pred"] + m["copy"] for m in used)  # a real mix
    s = decode_package(tiny_package, stream, None, drift=True, engine=engine, progress=False)
    rows = s["drift"]["per_frame"]
    assert len(rows) == 6
    assert all(r["identical"] or r["psnr_min_db"] >= 45.0 for r in rows), rows
    # the buffer slot the next frame's graphs read holds the selected frame, not the graph's own
    from mobilecodec.runtime.storage_io import as_dtype

    slot = engine._slots[engine._cur]["frame"]
    assert np.array_equal(as_dtype("frame", slot, "float32"), engine._last_buf["frame"].numpy())


def test_the_package_encoder_runs_block_modes(carphone, tmp_path):
    """`encode --package --block-modes`: the onnxruntime sender runs the trial and the map on the
    package's own graphs (lambda from the beta its checkpoint records); the stream decodes
    hash-exact on a fresh engine, and the PyTorch path reads it too."""
    import json

    from mobilecodec.cli import main
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package

    pkg = tmp_path / "pkg"
    assert main(["export", "--checkpoint", "tiny_b0.0512", "--size", "144x176", "-o", str(pkg), "--no-progress"]) == 0
    stream, report = tmp_path / "m.mnvc", tmp_path / "m.json"
    assert main(["encode", "carphone", "--package", str(pkg), "--block-modes", "8", "--frames", "6",
                 "--intra-period", "6", "-o", str(stream), "--json", str(report), "--no-progress"]) == 0
    frames = json.loads(report.read_text())["per_frame"]
    used = [f["modes"] for f in frames[1:]]
    assert all(sum(m.values()) == 396 for m in used)  # carphone's 22 x 18 blocks of 8x8
    assert sum(m["full"] for m in used) and sum(m["pred"] + m["copy"] for m in used)  # a real mix
    assert all(f["parts"]["modes"] > 0 for f in frames[1:])
    s = decode_package(pkg, stream, None, drift=True, engine=OnnxEngine(pkg), progress=False)
    assert s["hash_matches"] == 6
    assert all(r["identical"] or r["psnr_min_db"] >= 45.0 for r in s["drift"]["per_frame"])


def test_modes_refused_where_they_cannot_apply(tiny_package, tmp_path, capsys):
    """A package whose checkpoint records no beta (here a random model's) cannot price the map's bits."""
    from mobilecodec.cli import main

    pkg = tiny_package
    assert main(["encode", "carphone", "--package", str(pkg), "--block-modes", "8",
                 "-o", str(tmp_path / "y.mnvc")]) == 2
    err = capsys.readouterr().err
    assert "does not record the beta it was trained with; block modes need it (code without them: --block-modes 0)" \
        in err and "Traceback" not in err
    assert not (tmp_path / "y.mnvc").exists()


def test_candidates_are_on_the_decoder_grid():
    g = torch.Generator().manual_seed(0)
    x_hat, pred, ref = (torch.rand(1, 6, 8, 8, generator=g) * 1.2 - 0.1 for _ in range(3))
    cands = block_modes.candidates(x_hat, pred, ref)
    assert torch.equal(cands, torch.round(cands * 255) / 255) and cands.min() >= 0 and cands.max() <= 1
    modes = np.array([[0, 1], [2, 0]])
    out = block_modes.apply(modes, cands, 8)  # 16x16 luma: 2x2 blocks of 8x8, 4x4 on the packed planes
    assert torch.equal(out[..., :4, :4], cands[0][..., :4, :4])
    assert torch.equal(out[..., :4, 4:], cands[1][..., :4, 4:])
    assert torch.equal(out[..., 4:, :4], cands[2][..., 4:, :4])


def test_refinement_and_modes_together_drop_unused_latents(tmp_path):
    """With the encoder's latent refinement on too, the residual's trial is of the refined latent:
    where no block keeps the residual its latents are still coded as their means (a few bits; before
    this path took the refinement it coded the refined latents whole), and the stream decodes exactly."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.refine import RefineOptions
    from mobilecodec.codec.video import decode_video, encode_video

    clip = _still_clip(tmp_path / "still.y4m", frames=6)
    model, ck = load_checkpoint("tiny_b0.0064")
    stream = tmp_path / "rm.mnvc"
    enc = encode_video(model, clip, stream, intra_period=6, progress=False,
                       refine=RefineOptions.for_checkpoint(ck, 5), modes=block_modes.BlockModeOptions.for_checkpoint(ck, 16))
    assert all("r" in f["refined"] for f in enc["per_frame"][1:])
    dropped = [f["parts"]["r_y"] for f in enc["per_frame"][1:] if f["modes"]["full"] == 0]
    assert dropped and max(dropped) < 16, dropped
    assert decode_video(model, stream, None, progress=False)["hash_matches"] == 6


def test_map_entropy_script_reproduces_the_coder_and_prices_a_quadtree(tmp_path):
    """scripts/mode_map_entropy.py: its adaptive coder with the shipped contexts costs the maps of a
    real encode (bikes, a training clip) what the range coder's models said they cost (the same walk,
    counts and pmfs); its 16x16 quadtree prices a 2x2 map of one mode at a fresh flag (1 bit, pmf
    32,768 / 65,536) plus a fresh mode (21,846 / 65,536 for `full`, which takes the rounding); the
    share of one-mode 2x2 groups counts the partial groups at the edges; carried counts make a repeated
    map cheaper, and restart at each intra period."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, str(scripts / "mode_map_entropy.py"), "tiny_b0.0512", "bikes", "--frames", "6",
                        "--intra-period", "6", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    b = got["bits_per_map"]
    assert got["maps"] == 5 and got["blocks_per_map"] == 34 * 80  # bikes 640x272 in 8x8 blocks
    assert b["coded"] > 100 and abs(b["adaptive_left_top"] - b["coded"]) < 1e-6 * b["coded"], b
    assert all(0 < b[k] < 2 * got["blocks_per_map"] for k in ("adaptive_left_top_carried", "quadtree_16x16")), b
    sys.path.insert(0, str(scripts))
    try:
        from mode_map_entropy import _one_mode_share, adaptive_bits, quadtree_bits
    finally:
        sys.path.remove(str(scripts))
    # carried counts: a map coded again after itself is cheaper than from scratch, and a new intra
    # period (every map a period of its own at period 2) starts from scratch
    same = [np.random.default_rng(1).integers(0, 3, (6, 7))] * 2
    ctx = lambda k, i, j, p: block_modes._contexts(k, i, j)  # noqa: E731
    fresh = adaptive_bits(same, ctx, 9, 32)
    assert adaptive_bits(same, ctx, 9, 32, carry=4) < fresh - 1  # measured: 85.1 against 88.3 bits per map
    assert adaptive_bits(same, ctx, 9, 2, carry=4) == fresh
    want = 1 + np.log2(65536 / 21846)
    assert abs(quadtree_bits([np.zeros((2, 2), np.int64)]) - want) < 1e-12
    # groups of a 3x3 map: [[0, 0], [0, 0]], [1, 1], [2, 1], [1]: three of four hold one mode
    assert _one_mode_share([np.array([[0, 0, 1], [0, 0, 1], [2, 1, 1]])]) == 0.75
