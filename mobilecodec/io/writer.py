"""`VideoWriter` for .y4m and raw .yuv: written to a temporary file, renamed on a clean close."""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterable

from mobilecodec.errors import InputError
from mobilecodec.fsutil import atomic_path, naming_full_disk
from mobilecodec.io.frame import YUVFrame, check_frame, check_size, fps_to_fraction, frame_to_bytes
from mobilecodec.io.y4m import FRAME_HEADER, format_header

WRITER_EXTENSIONS = (".y4m", ".yuv")


class _Aborted(Exception):
    """Thrown into the atomic_path block to make it discard the temporary file."""


class VideoWriter:
    """Writes yuv420p frames to `path` (.y4m or .yuv); the file appears only after `close()`.

    Use as a context manager: an exception inside the `with` block leaves no file behind (and an
    existing file at `path` untouched).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int,
                 fps: float | Fraction = 30.0):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in WRITER_EXTENSIONS:
            raise InputError(f"{self.path}: cannot write {self.path.suffix or '(no extension)'!r}; "
                             f"supported: {', '.join(WRITER_EXTENSIONS)}")
        check_size(width, height, str(self.path))
        self.width, self.height = int(width), int(height)
        self.rate = fps_to_fraction(fps)
        self.frames_written = 0
        self._y4m = ext == ".y4m"
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tmp = tmp
        self._file: BinaryIO | None = self._stack.enter_context(open(tmp, "wb"))
        if self._y4m:
            self._file.write(format_header(self.width, self.height, self.rate))

    @property
    def fps(self) -> float:
        return float(self.rate)

    def write(self, frame: YUVFrame) -> None:
        """Append one frame; it must have this writer's size."""
        if self._file is None:
            raise InputError(f"{self.path}: writer is already closed")
        check_frame(frame, self.width, self.height)
        with naming_full_disk(self.path, self._tmp):  # raised here, outside atomic_path's block
            if self._y4m:
                self._file.write(FRAME_HEADER)
            self._file.write(frame_to_bytes(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush and move the finished file to its final name."""
        if self._file is not None:
            self._file = None
            with naming_full_disk(self.path, self._tmp):  # the last buffered bytes
                self._stack.close()

    def abort(self) -> None:
        """Discard everything written; nothing appears at `path`."""
        if self._file is not None:
            self._file = None
            err = _Aborted()
            self._stack.__exit__(_Aborted, err, None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Iterable[YUVFrame],
                fps: float | Fraction = 30.0) -> int:
    """Write all `frames` (size taken from the first) to `path`; return the number written."""
    writer: VideoWriter | None = None
    try:
        for frame in frames:
            if writer is None:
                check_frame(frame)
                writer = VideoWriter(path, frame.width, frame.height, fps)
            writer.write(frame)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise InputError(f"{path}: no frames to write")
    writer.close()
    return writer.frames_written
