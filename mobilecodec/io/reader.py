"""`open_video`: pick the reader from the file extension and check the path and options first;
`read_frames`: the one loader of a clip's first frames into memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mobilecodec.errors import InputError
from mobilecodec.io.base import VideoReader
from mobilecodec.io.frame import YUVFrame

Y4M_EXTENSIONS = (".y4m",)
RAW_EXTENSIONS = (".yuv",)
CONTAINER_EXTENSIONS = (".mp4", ".mkv", ".mov")
SUPPORTED_EXTENSIONS = Y4M_EXTENSIONS + RAW_EXTENSIONS + CONTAINER_EXTENSIONS


#: the rate a reader reports where the caller reads frames alone (`rate_unused`)
UNUSED_RATE = 30


def open_video(path: str | os.PathLike, size: tuple[int, int] | None = None,
               fps: float | None = None, max_frames: int | None = None, *, rate_unused: bool = False) -> VideoReader:
    """Open a .y4m, .yuv (needs `size` = (width, height)) or .mp4/.mkv/.mov video for lazy reading.

    `fps` overrides the rate stored in the file (and is the rate of a raw .yuv, default 30);
    `max_frames` caps how many frames iteration yields. For a .y4m `size`, if given, must match.
    `rate_unused`: the caller reads frames alone (training, calibration, measurement), so the file's
    rate is neither judged nor its timing warned about (the reader reports UNUSED_RATE): only what
    records the rate may refuse a file for it.
    """
    if rate_unused and fps is None:
        fps = UNUSED_RATE
    from mobilecodec.fsutil import check_input_file

    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():  # /dev/stdin has no extension to complain of
        check_input_file(p)  # a pipe or a device: the readers seek; one message, as decode's and info's
    if p.is_dir():  # before the extension: a folder was "unsupported video extension '(none)'" (I/O audit)
        raise InputError(f"{p} is a folder, not a video file")
    if not p.exists():  # before the extension: a mistyped clip name was "unsupported extension '(none)'"
        raise InputError(f"no such video file: {p}")  # (the commands add the clip names: io.no_such_video)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{p}: unsupported video extension {p.suffix or '(none)'!r}; "
                         f"supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise InputError(f"max_frames must be a positive integer, got {max_frames!r}")
    if size is not None:
        if len(size) != 2:
            raise InputError(f"size must be (width, height), got {size!r}")
        size = (int(size[0]), int(size[1]))
    if fps is not None and not float(fps) > 0:
        raise InputError(f"frame rate must be positive, got {fps!r}")

    if ext in Y4M_EXTENSIONS:
        from mobilecodec.io.y4m import Y4MReader
        reader: VideoReader = Y4MReader(p, fps=fps, max_frames=max_frames)
    elif ext in RAW_EXTENSIONS:
        from mobilecodec.io.yuv import RawYUVReader
        reader = RawYUVReader(p, size, fps=fps, max_frames=max_frames)
    else:
        from mobilecodec.io.mp4 import AVReader
        reader = AVReader(p, fps=fps, max_frames=max_frames)
    if size is not None and size != (reader.width, reader.height):
        reader.close()
        raise InputError(f"{p}: the file is {reader.width}x{reader.height} but size "
                         f"{size[0]}x{size[1]} was given")
    return reader


def check_size_applies(size: tuple[int, int] | None, paths: Sequence[str | os.PathLike]) -> None:
    """InputError for a --size given where no input is raw .yuv: every other format carries its own
    size (encode and baseline took a matching one silently; CONVENTIONS: an option that does not
    apply is an error)."""
    if size is not None and not any(Path(p).suffix.lower() in RAW_EXTENSIONS for p in paths):
        raise InputError("--size describes raw .yuv inputs; none is given")


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> list[YUVFrame]:
    """The first `max_frames` frames (all when None) of a video file, as a list of YUVFrame (its rate
    is not read: `rate_unused`)."""
    with open_video(path, max_frames=max_frames, rate_unused=True) as reader:
        return list(reader)


def warn_fewer_frames(source: str | os.PathLike, count: int, asked: int | None, coded: str) -> None:
    """The one-line warning of eval, baseline and encode when a clip holds fewer frames than
    --frames asked: it is `coded` ("coding", "encoded") whole, and its results say how many."""
    if asked is not None and count < asked:
        import warnings

        from mobilecodec.errors import InputWarning

        warnings.warn(InputWarning(f"{source} has {count} frames, fewer than --frames {asked}: {coded} its {count}"))
