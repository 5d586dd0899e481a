"""Raw planar yuv420p (.yuv) reading: the size must be given, the frame rate defaults to 30."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

from mobilecodec.errors import InputError
from mobilecodec.io.base import FileVideoReader, limit_frames
from mobilecodec.io.frame import YUVFrame, check_size, fps_to_fraction, frame_nbytes

DEFAULT_FPS = 30.0


class RawYUVReader(FileVideoReader):
    """Reads headerless yuv420p frames back to back, one `read` of a frame's size per frame."""

    def __init__(self, path: Path, size: tuple[int, int] | None, fps: float | None = None,
                 max_frames: int | None = None):
        self.path = Path(path)
        if size is None:
            raise InputError(f"{self.path}: raw .yuv needs --size WIDTHxHEIGHT (encode, eval, baseline, check-int8); "
                             f"elsewhere convert it first: ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -i IN.yuv OUT.y4m")
        self.width, self.height = int(size[0]), int(size[1])
        check_size(self.width, self.height, str(self.path))
        self.rate = fps_to_fraction(DEFAULT_FPS if fps is None else fps)
        self.max_frames = max_frames
        self.data_offset = 0
        self.frame_size = frame_nbytes(self.width, self.height)
        self._file: BinaryIO = open(self.path, "rb")
        try:
            file_size = os.fstat(self._file.fileno()).st_size
            if file_size == 0:
                raise InputError(f"no frames in {self.path} (empty file)")
            if file_size % self.frame_size:
                raise InputError(
                    f"{self.path}: file size {file_size} bytes is not a multiple of the frame size "
                    f"{self.frame_size} bytes ({self.width}x{self.height} yuv420p); wrong --size?")
            self.num_frames = limit_frames(file_size // self.frame_size, max_frames)
        except BaseException:
            self._file.close()
            raise

    def _frames(self) -> Iterator[YUVFrame]:
        f = self._file
        f.seek(0)
        index = 0
        while True:
            data = f.read(self.frame_size)
            if not data:
                return
            yield self._frame_from(data, index)  # short only if the file shrank after opening
            index += 1
