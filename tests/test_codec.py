"""The PyTorch codec on a real clip: bit-exact decoding for every warp and buffering mode, rate
estimate vs real file size, stage modules that aimet/export can trace, explicit buffer."""

from __future__ import annotations

import itertools

import pytest
import torch

from mobilecodec.bitstream.format import StreamReader
from mobilecodec.codec.video import decode_video, encode_video
from mobilecodec.io import open_video
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.configs import get_config
from mobilecodec.models.yuv import frame_to_tensor

from models_for_tests import code_latents


def _model(seed: int = 0, **overrides) -> VideoCodec:
    """A random `tiny` that range-codes its latents (`code_latents`)."""
    torch.manual_seed(seed)
    m = code_latents(VideoCodec(get_config("tiny", **overrides)))
    m.update()
    return m.eval()


@pytest.mark.parametrize("warp,buffering", list(itertools.product(
    ("block_overlap", "block", "dense", "none"), ("explicit", "implicit", "hybrid"))))
def test_decode_is_bit_exact_for_every_mode(carphone, tmp_path, warp, buffering):
    model = _model(warp_mode=warp, buffering=buffering)
    stream, out = tmp_path / "c.mnvc", tmp_path / "c.y4m"
    enc = encode_video(model, carphone, stream, intra_period=3, max_frames=4, progress=False)
    assert [f["type"] for f in enc["per_frame"]] == ["I", "P", "P", "I"]
    # a fresh model object from the same weights decodes (no state carried over from encoding)
    fresh = VideoCodec(model.cfg)
    fresh.load_state_dict(model.state_dict())
    dec = decode_video(fresh.eval(), stream, out, progress=False)
    assert dec["hash_matches"] == dec["frames"] == 4
    assert [f["hash"] for f in dec["per_frame"]] == [f["hash"] for f in enc["per_frame"]]
    with open_video(out) as r:
        frames = list(r)
    assert len(frames) == 4 and frames[0].y.shape == (144, 176)


@pytest.mark.parametrize("radius", [6, 32])
def test_file_size_matches_estimated_rate(carphone, tmp_path, radius):
    """The file is as large as the coder's tables estimate, at both motion search ranges, and the
    per-frame bits add up to it."""
    model = _model(motion_search_radius=radius)
    enc = encode_video(model, carphone, tmp_path / "c.mnvc", intra_period=32, max_frames=10, progress=False)
    real = enc["file_bytes"]
    assert abs(real / enc["estimated_bytes"] - 1) < 0.02, (real, enc["estimated_bytes"])
    with StreamReader(tmp_path / "c.mnvc") as r:
        header_bytes = r.header.nbytes
    assert sum(f["bits"] for f in enc["per_frame"]) == 8 * (real - header_bytes)


def test_float_likelihoods_predict_the_coded_bits(carphone, tmp_path):
    """A trained codec's float likelihoods (the training rate term) predict what its tables code
    (measured, tiny_b0.0064, carphone 10 frames: 976 bytes both). Random weights cannot show it:
    their latents overrun the tables' support, which clamps them (the float estimate of the
    `_model` codec was 72,114 bytes against 55,570 coded)."""
    from mobilecodec.checkpoint import load_checkpoint

    model, _ = load_checkpoint("tiny_b0.0064")
    enc = encode_video(model.eval(), carphone, tmp_path / "c.mnvc", intra_period=32, max_frames=10, progress=False)
    assert abs(enc["model_estimated_bytes"] / enc["estimated_bytes"] - 1) < 0.02, enc


def test_reconstruction_is_close_to_what_the_model_computes_in_float(carphone, tmp_path):
    """The decoded frame equals the training-time forward pass in eval mode up to the integer
    hyper-synthesis (entropy parameters) and the uint8 output, i.e. the decoder runs the real model
    (measured: mean |difference| 0.0007 of full scale, the random model against the source 0.41)."""
    from mobilecodec.io import pad_frame

    model = _model()
    with open_video(carphone, max_frames=1) as r:
        source = next(iter(r))
    x = frame_to_tensor(pad_frame(source))
    with torch.no_grad():
        ref = model.forward_iframe(x)["x_hat"]
    enc = encode_video(model, carphone, tmp_path / "c.mnvc", max_frames=1, progress=False)
    decoded = []
    summary = decode_video(model, tmp_path / "c.mnvc", None, progress=False, on_frame=lambda i, f: decoded.append(f))
    assert enc["frames"] == 1 and summary["hash_matches"] == 1 and len(decoded) == 1
    h, w = source.y.shape
    got = frame_to_tensor(pad_frame(decoded[0]))[..., : h // 2, : w // 2]  # the packed planes are half size
    # same synthesis, latents differ only where the float and integer means round differently
    assert torch.mean(torch.abs(got - ref[..., : h // 2, : w // 2])).item() < 0.005


def test_stages_trace_with_tensors_only():
    """aimet's QuantSim and the ONNX exporter trace each stage with torch.jit.trace."""
    model = VideoCodec(get_config("tiny", buffering="hybrid")).eval()
    for name, inputs in model.example_inputs(128, 192).items():
        stage = model.stages()[name]
        traced = torch.jit.trace(stage, inputs)
        a, b = traced(*inputs), stage(*inputs)
        a = a if isinstance(a, tuple) else (a,)
        b = b if isinstance(b, tuple) else (b,)
        for u, v in zip(a, b):
            assert isinstance(u, torch.Tensor) and torch.equal(u, v), name


def test_buffer_is_the_only_state(carphone):
    """A P-frame step is a pure function of (frame, buffer): same inputs, same outputs."""
    model = _model(buffering="hybrid")
    with open_video(carphone, max_frames=2) as r:
        from mobilecodec.io import pad_frame

        x0, x1 = (frame_to_tensor(pad_frame(f)) for f in r)
    with torch.no_grad():
        buf = model.forward_iframe(x0)["buffer"]
        a = model.forward_pframe(x1, buf)
        model.forward_pframe(x0, a["buffer"])  # unrelated step in between
        b = model.forward_pframe(x1, buf)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert a["buffer"].names() == ["frame", "flow", "motion_feat", "residual_feat"]
    for n in a["buffer"].names():
        assert torch.equal(a["buffer"][n], b["buffer"][n])


def test_training_forward_is_differentiable(carphone):
    model = VideoCodec(get_config("tiny")).train()
    with open_video(carphone, max_frames=2) as r:
        from mobilecodec.io import pad_frame

        x = torch.cat([frame_to_tensor(pad_frame(f)) for f in r])
    out_i = model.forward_iframe(x[:1])
    out_p = model.forward_pframe(x[1:], out_i["buffer"])
    bits = sum(-torch.log2(v).sum() for v in {**out_i["likelihoods"], **out_p["likelihoods"]}.values())
    loss = bits / x[0].numel() + torch.mean((out_p["x_hat"] - x[1:]) ** 2)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for n, g in grads.items() if "z_prior" not in n)
    assert grads["m_analysis.out.weight"].abs().sum() > 0  # rate of the motion latent reaches the encoder
    assert grads["motion_predictor.out.weight"].abs().sum() > 0  # the warp passes gradients to the flow
