"""Common shape of every video reader: metadata attributes, lazy iteration, context manager; and
of the readers of uncompressed files (`FileVideoReader`)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from mobilecodec.errors import InputError
from mobilecodec.io.frame import YUVFrame, frame_from_bytes


def warn_interlaced(path: str | Path, what: str) -> None:
    """One InputWarning: interlaced video (`what`: how the file says so) is coded as progressive frames."""
    import warnings

    from mobilecodec.errors import InputWarning

    warnings.warn(InputWarning(
        f"{path}: interlaced {what} is coded as progressive frames, both fields "
        f"together; deinterlace it first for a cleaner result, e.g. ffmpeg -i IN -vf bwdif OUT.y4m"))


def warn_pixel_aspect(path: str | Path, num: int, den: int) -> None:
    """One InputWarning: a non-square pixel aspect ratio is not kept (decodes are square-pixel)."""
    import warnings

    from mobilecodec.errors import InputWarning

    warnings.warn(InputWarning(f"{path}: pixel aspect ratio {num}:{den} is not kept; decoded .y4m files are "
                               f"written with square pixels (A1:1)"))


class VideoReader:
    """A video opened for reading; iterate it to get `YUVFrame`s one at a time.

    Attributes: `path`, `width`, `height`, `fps` (float), `rate` (the exact Fraction) and
    `num_frames` (None when the container does not say). Each `for` loop starts again from the
    first frame; run one loop at a time per reader.
    """

    path: Path
    width: int
    height: int
    rate: Fraction
    num_frames: int | None
    max_frames: int | None

    @property
    def fps(self) -> float:
        return float(self.rate)

    def __iter__(self) -> Iterator[YUVFrame]:
        count = 0
        for frame in self._frames():
            yield frame
            count += 1
            if self.max_frames is not None and count >= self.max_frames:
                return  # stop before reading or decoding anything more

    def _frames(self) -> Iterator[YUVFrame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file or container."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, {self.width}x{self.height}, "
                f"fps={self.fps:g}, frames={self.num_frames})")


class FileVideoReader(VideoReader):
    """A reader of uncompressed frames from an open file (.y4m, .yuv): one `read` of `frame_size`
    bytes per frame."""

    _file: BinaryIO
    frame_size: int

    def _frame_from(self, data: bytes, index: int) -> YUVFrame:
        """Frame `index` from the bytes read for it; InputError when the file ended inside it."""
        if len(data) != self.frame_size:
            raise InputError(f"{self.path}: frame {index} is truncated: {len(data)} of "
                             f"{self.frame_size} bytes")
        return frame_from_bytes(data, self.width, self.height)

    def tell(self) -> int:
        """Byte offset in the file where the next frame (in a .y4m its FRAME header) would be read."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def limit_frames(total: int | None, max_frames: int | None) -> int | None:
    """Number of frames a reader will yield given the file's count and the caller's cap."""
    if max_frames is None:
        return total
    if total is None:
        return None
    return min(total, max_frames)
