"""YUV4MPEG2 (.y4m) reading and header writing, 8-bit 4:2:0 only, one frame in memory at a time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from mobilecodec.errors import InputError
from mobilecodec.io.base import FileVideoReader, limit_frames, warn_interlaced, warn_pixel_aspect
from mobilecodec.io.frame import YUVFrame, check_rate, check_size, fps_to_fraction, frame_nbytes

MAGIC = b"YUV4MPEG2"
FRAME_HEADER = b"FRAME\n"
#: Chroma tags that all mean 8-bit 4:2:0 (they differ only in chroma siting, which we ignore).
CHROMA_420 = ("420", "420jpeg", "420paldv", "420mpeg2")
_MAX_HEADER = 4096


@dataclass
class Y4MHeader:
    """The parsed stream header; `nbytes` is its length including the newline."""

    width: int
    height: int
    rate: Fraction
    chroma: str
    nbytes: int


def parse_header(line: bytes, path: Path | str = "<y4m>", fps_given: bool = False) -> Y4MHeader:
    """Parse a 'YUV4MPEG2 W.. H.. F..' line; reject anything but 8-bit 4:2:0 in limited range
    (the C tag, or ffmpeg's XYSCSS extension where C is absent; XCOLORRANGE). `fps_given`: the
    caller overrides the rate, so an unusable F tag is not an error."""
    if not line.startswith(MAGIC) or not line.endswith(b"\n"):
        raise InputError(f"{path}: not a YUV4MPEG2 file (header must start with 'YUV4MPEG2 ' "
                         f"and end with a newline within {_MAX_HEADER} bytes)")
    if line.rstrip(b"\n").endswith(b"FRAME"):  # no newline after the header: the first frame's marker ran into its last tag
        raise InputError(f"{path}: the y4m header does not end with a newline before the first FRAME")
    width = height = None
    rate = Fraction(25)  # no F tag: the format defines no default; ffmpeg assumes 25
    chroma = None        # no C tag: ffmpeg's XYSCSS tag, else 4:2:0 jpeg (the spec's default)
    xyscss = None
    try:
        tokens = line[len(MAGIC):].decode("ascii").split()
    except UnicodeDecodeError:
        raise InputError(f"{path}: y4m header is not ASCII")
    seen: dict[str, str] = {}
    for token in tokens:
        tag, value = token[0], token[1:]
        if tag != "X" and tag in seen:  # X tags are extensions, several by design
            raise InputError(f"{path}: y4m header repeats its {tag} tag ({seen[tag]} and {token})")
        seen[tag] = token
        try:
            if tag == "W":
                width = int(value)
            elif tag == "H":
                height = int(value)
            elif tag == "F" and fps_given:  # the caller's rate replaces it: unused, so not judged
                pass
            elif tag == "F":
                num, den = (int(v) for v in value.split(":"))
                if (num, den) != (0, 0):  # 0:0 = unknown (ffmpeg then assumes 25, as for no F)
                    rate = Fraction(num, den)
            elif tag == "C":
                chroma = value
            elif tag == "I" and value in ("t", "b", "m"):
                warn_interlaced(path, f"y4m (I{value})")
            elif tag == "A" and value not in ("1:1", "0:0"):
                num, den = (int(v) for v in value.split(":"))  # a malformed tag is a bad field
                warn_pixel_aspect(path, num, den)
            elif tag == "X" and value.startswith("YSCSS="):
                xyscss = value[len("YSCSS="):]
            elif tag == "X" and value.upper() == "COLORRANGE=FULL":
                raise InputError(f"{path}: full-range y4m (XCOLORRANGE=FULL) is not supported; the codec "
                                 f"works in limited (video) range: convert it, e.g. ffmpeg -i IN -vf "
                                 f"scale=out_range=limited OUT.y4m")
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{path}: bad y4m header field {token!r}")
    tag = f"C{chroma}" if chroma is not None else f"XYSCSS={xyscss}" if xyscss is not None else "C420jpeg"
    if chroma is None:
        chroma = xyscss.lower() if xyscss is not None else "420jpeg"
    if width is None or height is None:
        raise InputError(f"{path}: y4m header lacks W (width) or H (height)")
    if not fps_given:
        if rate <= 0:
            raise InputError(f"{path}: y4m frame rate must be positive, got {rate}")
        check_rate(rate, str(path))
    if chroma not in CHROMA_420:
        raise InputError(f"{path}: unsupported y4m colour format {tag}; only 8-bit 4:2:0 "
                         f"(C420, C420jpeg, C420paldv, C420mpeg2) is supported")
    check_size(width, height, str(path))
    return Y4MHeader(width, height, rate, chroma, len(line))


def format_header(width: int, height: int, rate: Fraction) -> bytes:
    """Stream header we write: progressive, square pixels, 4:2:0 (C420jpeg, the usual default)."""
    return (f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} "
            f"Ip A1:1 C420jpeg\n").encode("ascii")


class Y4MReader(FileVideoReader):
    """Reads a .y4m file frame by frame with one `read` of a frame's size per frame."""

    def __init__(self, path: Path, fps: float | None = None, max_frames: int | None = None):
        self.path = Path(path)
        self.max_frames = max_frames
        self._file: BinaryIO = open(self.path, "rb")
        try:
            header = parse_header(self._file.readline(_MAX_HEADER), self.path, fps_given=fps is not None)
            self.width, self.height = header.width, header.height
            self.chroma = header.chroma
            self.rate = header.rate if fps is None else fps_to_fraction(fps)
            self.data_offset = header.nbytes
            self.frame_size = frame_nbytes(self.width, self.height)
            data_size = os.fstat(self._file.fileno()).st_size - header.nbytes
            if data_size <= 0:
                raise InputError(f"no frames in {self.path} (header only)")
            # Frame headers usually are exactly 'FRAME\n'; if the sizes do not add up (frame
            # parameters, or a truncated file) the count is unknown and iteration will tell.
            step = len(FRAME_HEADER) + self.frame_size
            total = data_size // step if data_size % step == 0 else None
            self.num_frames = limit_frames(total, max_frames)
        except BaseException:
            self._file.close()
            raise

    def _frames(self) -> Iterator[YUVFrame]:
        f = self._file
        f.seek(self.data_offset)
        index = 0
        while True:
            line = f.readline(_MAX_HEADER)
            if not line:
                return
            if not line.startswith(b"FRAME") or not line.endswith(b"\n"):
                raise InputError(f"{self.path}: frame {index} does not start with a FRAME header "
                                 f"(corrupt or truncated file)")
            yield self._frame_from(f.read(self.frame_size), index)
            index += 1

