"""The compiled inference warp (models.warp_kernel) is bit-identical to the per-pixel torch
reference (warp._block_warp_reference) on real decoded frames and flows, on adversarial flows,
for every block/overlap layout, and however its rows are split over threads.

Bit identity is what the kernel's design gives where torch runs its vectorised x86-64 CPU kernels
(AVX2, AVX-512), whose lerp and addcmul fuse the multiply-add; torch's scalar kernels
(ATEN_CPU_CAPABILITY=default, a CPU without AVX2) round twice, and there the two agree within a
few float ulps (measured: at most 1.8e-7 on [0, 1] frames, no stored uint8 level changed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilecodec.models import warp_kernel
from mobilecodec.models.warp import (COMPILED_MIN_PIXELS, WarpConfig, _axis_tables, _block_warp_reference,
                                     block_warp, warp_frame)
from mobilecodec.models.yuv import pack_yuv, unpack_yuv
from models_for_tests import walk_shipped_pframes


FUSED = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def assert_same_warp(a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    """Bit-identical where torch's kernels fuse (FUSED); else within 4 ulps of the larger magnitude."""
    if FUSED:
        assert torch.equal(a, b), what
    else:
        tol = 4 * torch.finfo(a.dtype).eps * max(1.0, float(b.abs().max()))
        assert a.shape == b.shape and float((a - b).abs().max()) <= tol, what


def _compiled(x, flow, block, overlap, threads=1):
    return warp_kernel.block_warp_compiled(x, flow, block, overlap, _axis_tables, threads)


def _frame_warp(warp, ref, flow, cfg):
    y, uv = unpack_yuv(ref)
    o = cfg.effective_overlap
    return pack_yuv(warp(y, flow, cfg.block_size, o), warp(uv, flow * 0.5, cfg.block_size // 2, o // 2))


def _reference_warp_frame(ref, flow, cfg):
    return _frame_warp(_block_warp_reference, ref, flow, cfg)


@pytest.fixture(scope="module")
def decoded(carphone):
    """(stored frame, decoded flow) pairs of carphone P-frames through the shipped checkpoint."""
    from mobilecodec.codec.frame_coding import HyperpriorCoder, RateStats
    from mobilecodec.entropy.coder import RangeEncoder

    enc, stats = RangeEncoder(), RateStats()
    pairs = []
    model = walk_shipped_pframes(carphone, 4, lambda m, p, y: HyperpriorCoder(m, p).encode(y, enc, stats),
                                 on_warp=lambda frame, flow: pairs.append((frame, flow)))
    return model.cfg.warp, pairs


def test_real_frames_and_flows_bit_identical(decoded):
    cfg, pairs = decoded
    for frame, flow in pairs:
        assert torch.equal(frame, torch.round(frame * 255) / 255)  # the stored uint8 levels
        assert flow.abs().max() > 0.1  # real motion, fractional
        for c2 in (cfg, WarpConfig("block", 8, 4), WarpConfig("block_overlap", 8, 2)):
            assert_same_warp(_frame_warp(_compiled, frame, flow, c2), _reference_warp_frame(frame, flow, c2))


def _adversarial_flows(hb, wb, gen):
    h8, w8 = 8 * hb, 8 * wb
    base = torch.randn(1, 2, hb, wb, generator=gen)
    flows = {
        "large": base * 500,
        "negative": -torch.rand(1, 2, hb, wb, generator=gen) * 30,
        "half": torch.round(base * 6) + 0.5,
        "minus_half": torch.round(base * 6) - 0.5,
        "outside": torch.stack([torch.full((hb, wb), float(2 * w8)), torch.full((hb, wb), float(-2 * h8))])[None],
        "tiny": base * 1e-7,
        "below_zero": torch.full((1, 2, hb, wb), -1e-9),
        "many_fraction_bits": base * 3.3 + 1e-5,
        "integer": torch.round(base * 10),
        "sixteenths": torch.round(base * 160) / 16,
        "mixed": torch.where(torch.rand(1, 2, hb, wb, generator=gen) < 0.5, base * 1e3, base * 1e-3),
    }
    return flows


@pytest.mark.parametrize("block,overlap", [(8, 4), (4, 2), (8, 0), (4, 0), (2, 1), (8, 2), (6, 2)])
def test_adversarial_flows_bit_identical(block, overlap):
    gen = torch.Generator().manual_seed(block * 10 + overlap)
    hb, wb = 5, 7
    h, w = hb * block, wb * block
    x = torch.round(torch.rand(2, 3, h, w, generator=gen) * 255) / 255
    for name, flow in _adversarial_flows(hb, wb, gen).items():
        flow = flow.expand(2, 2, hb, wb).clone()
        flow[1] = flow[1].flip(-1) * 0.7  # a different flow for the second batch item
        assert_same_warp(_compiled(x, flow, block, overlap), _block_warp_reference(x, flow, block, overlap), name)


def test_float64_features_and_stored_frame_levels_bit_identical():
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 5, 32, 48, generator=gen, dtype=torch.float64)
    flow = torch.randn(1, 2, 8, 12, generator=gen) * 4
    out = _compiled(feat, flow, 4, 2)
    assert out.dtype == torch.float64
    assert_same_warp(out, _block_warp_reference(feat, flow, 4, 2))
    # the warped stored frame rounds to the same uint8 levels
    frame = torch.round(torch.rand(1, 6, 32, 48, generator=gen) * 255) / 255
    cfg = WarpConfig()
    a = (_frame_warp(_compiled, frame, flow, cfg) * 255).round().to(torch.uint8)
    b = (_reference_warp_frame(frame, flow, cfg) * 255).round().to(torch.uint8)
    assert np.array_equal(a.numpy(), b.numpy())


def test_autograd_path_keeps_gradients():
    """With gradients required the differentiable reference runs: the flow gets a gradient, and its
    values are the compiled kernel's (called directly: at 16x16 block_warp itself would not take it)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 16, 16, generator=gen)
    flow = (torch.randn(1, 2, 2, 2, generator=gen) * 2).requires_grad_()
    out = block_warp(x, flow, 8, 4)
    assert out.requires_grad
    out.sum().backward()
    assert flow.grad is not None and torch.isfinite(flow.grad).all() and flow.grad.abs().sum() > 0
    compiled = _compiled(x, flow.detach(), 8, 4)
    assert_same_warp(compiled, out.detach())


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_rows_split_over_threads_bit_identical(threads):
    """A 512x640 frame is large enough to be split over `threads` row bands and for warp_frame
    to take the compiled kernel: same result."""
    g = torch.Generator().manual_seed(3)
    frame = torch.round(torch.rand(1, 6, 256, 320, generator=g) * 255) / 255  # 512x640 luma
    flow = torch.round((torch.rand(1, 2, 64, 80, generator=g) * 24 - 12) * 256) / 256
    y, _ = unpack_yuv(frame)
    assert y.numel() >= threads * warp_kernel._MIN_SAMPLES_PER_THREAD  # really split
    assert_same_warp(_compiled(y, flow, 8, 4, threads), _block_warp_reference(y, flow, 8, 4))
    assert y.numel() // 4 >= COMPILED_MIN_PIXELS  # chroma too: warp_frame runs the kernel on both planes
    with torch.no_grad():
        assert_same_warp(warp_frame(frame, flow, WarpConfig()), _reference_warp_frame(frame, flow, WarpConfig()))
