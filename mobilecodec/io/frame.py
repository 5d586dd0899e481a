"""The YUV420 frame type shared by readers, writers, metrics and the codec, plus pad/crop.

The networks need sizes that are a multiple of their total down-sampling (64 by default), so
frames are padded by edge replication before coding and cropped back after decoding.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from mobilecodec.errors import InputError


class YUVFrame(NamedTuple):
    """One 8-bit YUV 4:2:0 frame: Y is HxW, U and V are H/2 x W/2 (uint8 numpy arrays)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def width(self) -> int:
        return int(self.y.shape[1])


#: the largest side any command reads or codes (the stream header stores it; 16K covers 8K video)
MAX_DIMENSION = 16384


def check_size(width: int, height: int, what: str = "video") -> None:
    """Raise InputError unless (width, height) is a positive, even yuv420p size of at most
    MAX_DIMENSION a side (a damaged header would otherwise ask for terabytes)."""
    if width <= 0 or height <= 0:
        raise InputError(f"{what}: size must be positive, got {width}x{height}")
    if max(width, height) > MAX_DIMENSION:
        raise InputError(f"{what}: size {width}x{height} is over {MAX_DIMENSION} pixels a side")
    if width % 2 or height % 2:
        raise InputError(f"{what}: width and height must be even for yuv420p, got {width}x{height}")


def frame_nbytes(width: int, height: int) -> int:
    """Bytes of one yuv420p frame (Y plane plus two quarter-size chroma planes)."""
    return width * height + 2 * (width // 2) * (height // 2)


def frame_from_bytes(data: bytes | bytearray | memoryview, width: int, height: int) -> YUVFrame:
    """Split one planar yuv420p frame buffer into a YUVFrame (copies, so the buffer may be reused)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ny, nc = width * height, (width // 2) * (height // 2)
    if buf.size != ny + 2 * nc:
        raise InputError(f"frame buffer has {buf.size} bytes, expected {ny + 2 * nc} for {width}x{height}")
    y = buf[:ny].reshape(height, width).copy()
    u = buf[ny:ny + nc].reshape(height // 2, width // 2).copy()
    v = buf[ny + nc:].reshape(height // 2, width // 2).copy()
    return YUVFrame(y, u, v)


def check_frame(frame: YUVFrame, width: int | None = None, height: int | None = None) -> None:
    """Raise InputError unless `frame` holds uint8 planes of consistent yuv420p shapes."""
    if len(frame) != 3:
        raise InputError(f"expected a YUVFrame (y, u, v), got {len(frame)} planes")
    y, u, v = frame
    for name, plane in (("y", y), ("u", u), ("v", v)):
        if not isinstance(plane, np.ndarray) or plane.dtype != np.uint8 or plane.ndim != 2:
            raise InputError(f"plane {name} must be a 2-D uint8 numpy array")
    h, w = y.shape
    check_size(w, h, "frame")
    if u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
        raise InputError(f"chroma planes must be {h // 2}x{w // 2} (HxW) for a {w}x{h} frame, "
                         f"got u {u.shape[0]}x{u.shape[1]}, v {v.shape[0]}x{v.shape[1]}")
    if width is not None and height is not None and (w, h) != (width, height):
        raise InputError(f"frame is {w}x{h}, expected {width}x{height}")


def frame_to_bytes(frame: YUVFrame) -> bytes:
    """Serialize a YUVFrame as planar yuv420p (Y, then U, then V)."""
    return b"".join(np.ascontiguousarray(p).tobytes() for p in frame)


def padded_size(width: int, height: int, multiple: int = 64) -> tuple[int, int]:
    """(width, height) rounded up to a multiple of `multiple`."""
    _check_multiple(multiple)
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def pad_frame(frame: YUVFrame, multiple: int = 64) -> YUVFrame:
    """Replicate the last row/column so Y is a multiple of `multiple` (chroma to half of that)."""
    pw, ph = padded_size(frame.width, frame.height, multiple)
    dy, dx = ph - frame.height, pw - frame.width
    if dx == 0 and dy == 0:
        return frame
    y = np.pad(frame.y, ((0, dy), (0, dx)), mode="edge")
    u = np.pad(frame.u, ((0, dy // 2), (0, dx // 2)), mode="edge")
    v = np.pad(frame.v, ((0, dy // 2), (0, dx // 2)), mode="edge")
    return YUVFrame(y, u, v)


def crop_frame(frame: YUVFrame, width: int, height: int, top: int = 0, left: int = 0) -> YUVFrame:
    """The `width` x `height` part of `frame` from (`top`, `left`), even offsets (4:2:0); the top-left
    part by default (undoes pad_frame)."""
    check_size(width, height, "crop")
    if top % 2 or left % 2 or top < 0 or left < 0:
        raise InputError(f"crop offsets must be even and non-negative, got ({top}, {left})")
    if left + width > frame.width or top + height > frame.height:
        raise InputError(f"cannot crop a {frame.width}x{frame.height} frame to {width}x{height} at ({top}, {left})")
    t, l = top // 2, left // 2
    return YUVFrame(np.ascontiguousarray(frame.y[top:top + height, left:left + width]),
                    np.ascontiguousarray(frame.u[t:t + height // 2, l:l + width // 2]),
                    np.ascontiguousarray(frame.v[t:t + height // 2, l:l + width // 2]))


def _check_multiple(multiple: int) -> None:
    if not isinstance(multiple, int) or multiple <= 0 or multiple % 2:
        raise InputError(f"padding multiple must be a positive even integer, got {multiple!r}")


_NTSC_BASES = (12, 15, 24, 30, 48, 60, 120, 240)  # 12, 15: the 1000/1001 low rates of 3GPP and web video
MIN_FPS, MAX_FPS = Fraction(1, 1000), Fraction(1000)  # what a video frame rate can sensibly be


def check_rate(rate: Fraction, where: str) -> Fraction:
    """A frame rate within MIN_FPS..MAX_FPS (a stream header stores it as two 32-bit integers)."""
    if not MIN_FPS <= rate <= MAX_FPS or rate.numerator >= 2 ** 32 or rate.denominator >= 2 ** 32:
        raise InputError(f"{where}: frame rate {rate.numerator}/{rate.denominator} is outside "
                         f"{MIN_FPS}..{MAX_FPS} fps; give the real rate with --fps (encode, eval, baseline, "
                         f"check-int8), or rewrite the file at it first: ffmpeg -r RATE -i IN -pix_fmt yuv420p OUT.y4m")
    return rate



def fps_to_fraction(fps: float | Fraction | int) -> Fraction:
    """Exact rational frame rate: NTSC rates map to n*1000/1001 (29.97 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not value > 0 or value != value or value == float("inf"):
            raise InputError(f"frame rate must be a positive number, got {fps!r}")
        rate = None
        for base in _NTSC_BASES:
            ntsc = Fraction(base * 1000, 1001)
            if abs(value - float(ntsc)) < 0.006:
                rate = ntsc
                break
        if rate is None:
            rate = Fraction(value).limit_denominator(1001)
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {fps!r}")
    return check_rate(rate, "--fps")
