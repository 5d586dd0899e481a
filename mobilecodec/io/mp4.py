"""Compressed video (.mp4/.mkv/.mov) through PyAV, decoded packet by packet and converted to yuv420p.

PyAV is imported only here, when such a file is opened.
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mobilecodec.errors import InputError, InputWarning
from mobilecodec.io.base import VideoReader, limit_frames, warn_interlaced
from mobilecodec.io.frame import YUVFrame, check_rate, check_size, fps_to_fraction

FALLBACK_FPS = 30.0
#: a gap between two frames' timestamps this far from 1/rate (relative) means a variable frame rate
VFR_TOLERANCE = 0.25
_RANGE_LIMITED, _RANGE_FULL = 1, 2  # FFmpeg's AVCOL_RANGE_MPEG / AVCOL_RANGE_JPEG
# FFmpeg's AVFieldOrder values of interlaced video (0: unknown, 1: progressive)
_INTERLACED = {2: "top field first", 3: "bottom field first", 4: "top coded first, bottom shown first",
               5: "bottom coded first, top shown first"}


def ffmpeg_path(path: str | os.PathLike) -> str:
    """`path` as FFmpeg (and PyAV) reads it as a file: a relative name with a colon before any slash
    (a camera's `12:30:05.mp4`) was taken for a URL protocol ("Protocol not found")."""
    s = os.fspath(path)
    return "./" + s if ":" in s.split("/", 1)[0] and not os.path.isabs(s) else s


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise InputError(f"reading compressed video needs PyAV (pip install av): {exc}")
    return av


def av_frame_to_yuv(frame: Any) -> YUVFrame:
    """Convert a decoded `av.VideoFrame` to a limited-range yuv420p YUVFrame, honouring each plane's
    line stride. Full-range (yuvj*, 'pc' range) and RGB sources are converted to limited range, as
    ffmpeg does for yuv420p; sources of unspecified range pass through unchanged."""
    # YUV: bicubic, FFmpeg's scaler default (with PyAV's bilinear, 4:2:2 chroma was up to 8 levels off
    # ffmpeg's; bicubic matches it). RGB: bilinear, which stays in range where bicubic overshot to 0-255.
    interpolation = None if frame.format.is_rgb else "BICUBIC"
    if getattr(frame, "color_range", 0) == _RANGE_FULL or frame.format.is_rgb:
        f = frame.reformat(format="yuv420p", dst_color_range=_RANGE_LIMITED, interpolation=interpolation)
    else:
        f = frame.reformat(format="yuv420p", interpolation=interpolation)
    planes = []
    for plane in f.planes:
        h, w, stride = plane.height, plane.width, plane.line_size
        buf = np.frombuffer(plane, dtype=np.uint8)
        planes.append(buf[:h * stride].reshape(h, stride)[:, :w].copy())
    return YUVFrame(*planes)


def _warn_if_converted(path: Path, ctx: Any) -> None:
    """One InputWarning when the stream's pixels are not 8-bit limited-range 4:2:0: they are converted
    (av_frame_to_yuv), so every quality figure is measured against the converted frames."""
    fmt = ctx.pix_fmt
    full = getattr(ctx, "color_range", 0) == _RANGE_FULL or str(fmt).startswith("yuvj")
    if fmt is None or (fmt == "yuv420p" and not full):  # unknown until decoded: nothing to say yet
        return
    what = fmt + (" full range" if full and fmt.startswith("yuv") and not fmt.startswith("yuvj") else "")
    warnings.warn(InputWarning(
        f"{path}: pixels are {what}; read as 8-bit limited-range 4:2:0 (as ffmpeg -vf scale=out_range=limited "
        f"-pix_fmt yuv420p converts them{'; chroma differs from ffmpeg at sharp edges' if fmt.startswith(('yuv444', 'gbr', 'rgb', 'bgr')) else ''}), "
        "so quality is measured against the converted frames"))


class AVReader(VideoReader):
    """Reads the first video stream of a container; each loop opens it afresh and decodes lazily."""

    def __init__(self, path: Path, fps: float | None = None, max_frames: int | None = None):
        self.path = Path(path)
        self.max_frames = max_frames
        av = _av()
        container = self._open(av)
        try:
            stream = self._stream(container)
            ctx = stream.codec_context
            self.width, self.height = int(ctx.width), int(ctx.height)
            if self.width <= 0 or self.height <= 0:
                raise InputError(f"{self.path}: video stream has no frame size")
            check_size(self.width, self.height, str(self.path))
            rate = stream.average_rate or stream.guessed_rate
            self._rate_given = fps is not None
            if fps is not None:
                self.rate = fps_to_fraction(fps)
            elif rate:
                self.rate = check_rate(Fraction(rate.numerator, rate.denominator), str(self.path))
            else:
                self.rate = fps_to_fraction(FALLBACK_FPS)
            self.codec = ctx.name
            self.num_frames = limit_frames(_shown_frames(stream, self.rate if not self._rate_given else None),
                                           max_frames)
            _warn_if_converted(self.path, ctx)
            # (a container's pixel aspect ratio is not warned of: the bundled carphone itself is 128:117)
            if getattr(ctx, "field_order", 0) in _INTERLACED:
                warn_interlaced(self.path, f"video ({_INTERLACED[ctx.field_order]})")
        finally:
            container.close()

    def _open(self, av: Any) -> Any:
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise InputError(f"no frames in {self.path} (empty file)")
        try:
            return av.open(ffmpeg_path(self.path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"{self.path}: cannot read video container ({why})")

    def _stream(self, container: Any) -> Any:
        """The video stream ffmpeg itself picks (its automatic selection: picture area, plus 5,000,000
        for the default track), cover art and stills aside; the first one was read whatever the file
        marked as its video."""
        av = _av()
        moving = [s for s in container.streams.video
                  if not s.disposition & (av.stream.Disposition.attached_pic | av.stream.Disposition.still_image)]
        streams = moving or list(container.streams.video)
        if not streams:
            raise InputError(f"{self.path}: no video stream in container")
        default = av.stream.Disposition.default
        return max(streams, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)
                   + 5_000_000 * bool(s.disposition & default))

    def _frames(self) -> Iterator[YUVFrame]:
        av = _av()
        container = self._open(av)
        try:
            stream = self._stream(container)
            stream.thread_type = "AUTO"
            count, first, last = 0, None, None
            uneven = (_UnevenTimestamps(self.path, self.rate, float(stream.time_base or 0))
                      if not self._rate_given else None)
            hidden = [0]  # samples an edit list leaves out (`ffmpeg -ss T -c copy` writes one): not shown
            decoded = _decode(container, stream, hidden)
            while True:
                try:
                    frame = next(decoded)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    raise InputError(f"{self.path}: cannot decode frame {count}: {exc}")
                if (frame.width, frame.height) != (self.width, self.height):
                    raise InputError(f"{self.path}: frame {count} is {frame.width}x{frame.height}, "
                                     f"the stream said {self.width}x{self.height}")
                if getattr(frame, "rotation", 0):
                    raise InputError(f"{self.path}: the video is to be shown rotated by {frame.rotation} degrees "
                                     f"(a phone recording?); rotate the pixels first, e.g. ffmpeg -i IN OUT.y4m")
                if uneven is not None:
                    uneven.see(count, frame.time)
                if frame.time is not None:
                    first = frame.time if first is None else first
                    last = frame.time
                yield av_frame_to_yuv(frame)
                count += 1
            if count == 0:
                raise InputError(f"no frames in {self.path} (nothing could be decoded)")
            short = self.max_frames is None or count < self.max_frames
            listed = int(stream.frames) - hidden[0]
            if listed > 0 and count < listed and short:
                raise InputError(f"{self.path}: only {count} of the {listed} frames the container lists could be "
                                 f"decoded (truncated or damaged file)")
            # Matroska lists no frame count and a fragmented MP4 its first fragment's, only the duration
            # of the whole: a cut file was coded silently from the frames left (9 of 20, exit 0; I/O audit)
            # (end times, not spans: a video that starts late, after its audio or with an offset, is whole)
            end, rate = _listed_end(container, stream), float(stream.average_rate or self.rate or 0)
            if (listed <= 0 or count > listed) and short and end and rate and last is not None and \
                    last + 1 / rate < end - 1.5 / rate:
                raise InputError(f"{self.path}: only {count} frames (to {last + 1 / rate:.2f} s) of the {end:.2f} s "
                                 "the container lists could be decoded (truncated or damaged file)")
        finally:
            container.close()


def _decode(container: Any, stream: Any, hidden: list[int]) -> Iterator[Any]:
    """The stream's frames, as `container.decode(stream)` yields them, counting in `hidden[0]` the
    packets the demuxer marks discarded (samples outside an edit list, which no frame shows)."""
    for packet in container.demux(stream):
        if packet.is_discard:
            hidden[0] += 1
        yield from packet.decode()


def _listed_end(container: Any, stream: Any) -> float | None:
    """When the video stream ends as the container lists it, in seconds from the file's time 0: the
    stream's start plus its duration, else Matroska's DURATION tag (an end time), else the container's
    end when the video is its only stream; None if none is listed."""
    if stream.duration and stream.time_base is not None:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION", "")
    parts = tag.split(":")
    if len(parts) == 3:
        try:
            return int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
        except ValueError:
            return None
    if container.duration and len(container.streams) == 1:
        return ((container.start_time or 0) + container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _shown_frames(stream: Any, rate: Fraction | None) -> int | None:
    """The frames the stream will show: the container's sample count, or None (unknown until decoded)
    when its duration at `rate` is over a frame shorter than those samples (an edit list hides some)."""
    listed = int(stream.frames) or None
    if listed is None or rate is None or not stream.duration or stream.time_base is None:
        return listed
    shown = float(stream.duration * stream.time_base * rate)
    return None if shown < listed - 1 else listed


class _UnevenTimestamps:
    """Warns once (InputWarning) when a frame follows the previous one after a gap far from 1/rate:
    a variable-frame-rate file (a phone or screen recording). Its frames are coded one after the
    other at the average rate, so the decoded video's timing is not the source's."""

    def __init__(self, path: Path, rate: Fraction, tick: float = 0.0) -> None:
        # `tick`: the container's timestamp unit (Matroska's 1 ms): a gap may be off by one of them
        # at a constant rate (360 fps stored in ms: 2.78 ms gaps read 2 or 3 ms)
        self.path, self.rate, self.tick, self.last, self.warned = path, rate, tick, None, False

    def see(self, index: int, time: float | None) -> None:
        if time is None or self.warned:
            return
        last, self.last = self.last, time
        if last is None:
            return
        expected = 1.0 / float(self.rate)
        if abs((time - last) - expected) > (VFR_TOLERANCE + min(self.tick / expected, 0.5)) * expected:
            self.warned = True
            warnings.warn(InputWarning(
                f"{self.path}: variable frame rate (frame {index} follows {1000 * (time - last):.0f} ms after "
                f"the previous one, {1000 * expected:.0f} ms at the average {float(self.rate):g} fps); frames are "
                f"coded one after another at that rate, so the timing is not kept: for true timing convert "
                f"to a constant rate first, e.g. ffmpeg -i IN -fps_mode cfr -r {float(self.rate):g} OUT.y4m"))
