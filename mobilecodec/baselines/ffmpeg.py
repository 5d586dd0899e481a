"""ffmpeg (x264 / x265) as in appendix A.1 of the MobileNVC paper, and PyAV decoding of its output.

The ffmpeg binary is the one shipped by imageio-ffmpeg, so results do not depend on the system.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from mobilecodec.errors import InputError, ToolError

if TYPE_CHECKING:
    import numpy as np

# Our codec name -> (ffmpeg encoder, name of its private-parameters option).
ENCODERS: dict[str, tuple[str, str]] = {
    "x264": ("libx264", "-x264-params"),
    "x265": ("libx265", "-x265-params"),
}
PRESETS: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                            "slow", "slower", "veryslow", "placebo")
CRF_MIN, CRF_MAX = 0, 51
#: the CRF's decimals kept: `format_crf` gives ffmpeg, the file names and the labels this exact value
CRF_DECIMALS = 2


def crf_problem(crf: float) -> str | None:
    """What makes `crf` unusable (not a finite number in CRF_MIN..CRF_MAX, more than CRF_DECIMALS
    decimals), or None: the one check of `baseline --crf`, `demo --baseline-crf` and `BaselineConfig`
    (each adds what it was given)."""
    import math

    if isinstance(crf, bool) or not isinstance(crf, (int, float)) or not math.isfinite(crf) \
            or not CRF_MIN <= crf <= CRF_MAX:
        return f"CRF must be a number in {CRF_MIN}..{CRF_MAX}"
    if round(crf, CRF_DECIMALS) != crf:  # what ffmpeg is given, names a file and is recorded: one number
        return f"CRF takes at most {CRF_DECIMALS} decimals"
    return None


def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's ffmpeg binary (ToolError if it is not available)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise ToolError(f"imageio-ffmpeg is not installed: {exc}")
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise ToolError(f"no ffmpeg binary found by imageio-ffmpeg: {exc}")


def _run_quick(args: list[str]) -> str:
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"cannot run {args[0]}: {exc}")
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(args)} failed: {_last_line(proc.stderr)}")
    return proc.stdout


def ffmpeg_version(exe: str | None = None) -> str:
    """First line of `ffmpeg -version`, e.g. 'ffmpeg version 7.0.2-static ...'."""
    out = _run_quick([exe or ffmpeg_exe(), "-hide_banner", "-version"])
    return out.splitlines()[0].strip() if out.strip() else ""


def ffmpeg_encoders(exe: str | None = None) -> set[str]:
    """Names of the video encoders the ffmpeg binary was built with (from `-encoders`)."""
    out = _run_quick([exe or ffmpeg_exe(), "-hide_banner", "-encoders"])
    names = set()
    for line in out.splitlines():
        m = re.match(r"^\s*V[A-Z.]{5}\s+(\S+)", line)
        if m:
            names.add(m.group(1))
    return names


def format_rate(rate: Fraction | float) -> str:
    """A frame rate as ffmpeg accepts it: '25' or '30000/1001'."""
    r = rate if isinstance(rate, Fraction) else Fraction(rate).limit_denominator(1001)
    return str(r.numerator) if r.denominator == 1 else f"{r.numerator}/{r.denominator}"


def format_crf(crf: float) -> str:
    """'23' for integral CRFs, '23.5' otherwise (used in commands and file names)."""
    return str(int(crf)) if float(crf).is_integer() else f"{crf:g}"


def build_command(exe: str, codec: str, preset: str, crf: float, width: int, height: int,
                  rate: Fraction | float, input_yuv: str | os.PathLike,
                  output: str | os.PathLike, intra_period: int | None = None) -> list[str]:
    """The appendix A.1 command line for one CRF point, plus only the unavoidable extras.

    Extras: `-hide_banner -nostdin -loglevel error` (quiet, never waits on stdin) and the input
    option `-framerate <fps>`: without it the rawvideo demuxer assumes 25 fps and the output
    `-r <fps>` then duplicates or drops frames whenever the clip is not 25 fps.
    `intra_period` (not the appendix's): an I-frame every N frames and nowhere else
    (`keyint=N:min-keyint=N:scenecut=0`), the GOP structure our codec is evaluated with.
    """
    if codec not in ENCODERS:
        raise InputError(f"unknown codec {codec!r}; choose from {', '.join(ENCODERS)}")
    encoder, params_opt = ENCODERS[codec]
    fps = format_rate(rate)
    return [
        str(exe), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-y", "-f", "rawvideo",
        "-pix_fmt", "yuv420p",
        "-s:v", f"{width}x{height}",
        "-framerate", fps,
        "-i", str(input_yuv),
        "-r", fps,
        "-c:v", encoder,
        "-preset", preset,
        "-crf", format_crf(crf),
        params_opt, "bframes=0" + (f":keyint={intra_period}:min-keyint={intra_period}:scenecut=0"
                                   if intra_period else ""),
        str(output),
    ]


def command_line(args: list[str]) -> str:
    """The argument list as one shell-quoted line (what a user would paste into a terminal)."""
    return shlex.join(args)


def _failure_line(text: str) -> str:
    """The line of ffmpeg's stderr that says why it failed: the encoder's own ('[libx265 @ ...] Image
    size is too small'), which the last line, 'Nothing was written into output file', hid (metrics
    audit); else the last line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    encoder = [ln for ln in lines if ln.startswith(("[libx264", "[libx265"))]
    return f"{encoder[-1]} ({lines[-1]})" if encoder and encoder[-1] != lines[-1] else lines[-1]


def run_ffmpeg(args: list[str]) -> None:
    """Run ffmpeg; ToolError carrying what ffmpeg's stderr says of the failure (`_failure_line`)."""
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as exc:
        raise ToolError(f"cannot run ffmpeg ({args[0]}): {exc}")
    if proc.returncode != 0:
        raise ToolError(f"ffmpeg exited with code {proc.returncode}: {_failure_line(proc.stderr)}")


@dataclass
class DecodedFrame:
    """One decoded frame of an encoded stream: planes, picture type and its packet's size."""

    y: "np.ndarray"
    u: "np.ndarray"
    v: "np.ndarray"
    pict_type: str
    packet_bytes: int


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ToolError(f"{path}: cannot read ffmpeg's output: {exc}")


#: NAL unit types of SEI messages: H.264 6; HEVC 39 (prefix) and 40 (suffix)
SEI_TYPES = {"h264": (lambda b: b & 0x1F, {6}), "hevc": (lambda b: (b >> 1) & 0x3F, {39, 40})}


def _nal_length_size(codec: str, extradata: bytes | None) -> int | None:
    """Bytes of each NAL unit's length prefix in the .mp4's packets (avcC / hvcC), None if not known."""
    if not extradata or extradata[0] != 1:
        return None
    at = {"h264": 4, "hevc": 21}.get(codec)
    return None if at is None or len(extradata) <= at else (extradata[at] & 3) + 1


def _sei_bytes(data: bytes, codec: str, length_size: int) -> int:
    """Bytes (length prefixes included) of the SEI NAL units in one length-prefixed packet; 0 if the
    packet does not parse as such."""
    nal_type, sei = SEI_TYPES[codec]
    pos, total = 0, 0
    while pos + length_size < len(data):
        n = int.from_bytes(data[pos:pos + length_size], "big")
        if n == 0 or pos + length_size + n > len(data):
            return 0
        if nal_type(data[pos + length_size]) in sei:
            total += length_size + n
        pos += length_size + n
    return total if pos == len(data) else 0


def packet_sizes(path: str | os.PathLike) -> list[int]:
    """Byte sizes of the video packets of `path`, in presentation (pts) order, without their SEI
    messages: encoder information, not the picture (x264 writes its settings string, 615 bytes at
    medium, into the first packet, x265 its own into the .mp4 header, which packets never count)."""
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        length_size = _nal_length_size(codec, stream.codec_context.extradata) if codec in SEI_TYPES else None
        sized = [(p.pts if p.pts is not None else p.dts,
                  p.size - (_sei_bytes(bytes(p), codec, length_size) if length_size else 0))
                 for p in container.demux(stream) if p.size]
    finally:
        container.close()
    sized.sort(key=lambda t: (t[0] is None, t[0]))
    return [size for _, size in sized]


def decode_frames(path: str | os.PathLike) -> Iterator[DecodedFrame]:
    """Decode every frame of `path` with PyAV, paired with its packet size (no B-frames, so the
    i-th frame in display order is the i-th packet in pts order)."""
    import av
    import numpy as np
    from av.video.frame import PictureType

    path = Path(path)
    sizes = packet_sizes(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            arr = frame.to_ndarray()
            h, w = frame.height, frame.width
            y = arr[:h]
            chroma = arr[h:].reshape(2, h // 2, w // 2)
            try:
                ptype = PictureType(int(frame.pict_type)).name
            except ValueError:
                ptype = str(frame.pict_type)
            yield DecodedFrame(y=np.ascontiguousarray(y), u=chroma[0].copy(), v=chroma[1].copy(),
                               pict_type=ptype, packet_bytes=sizes[i] if i < len(sizes) else 0)
    except av.error.FFmpegError as exc:
        raise ToolError(f"{path}: cannot decode ffmpeg's output: {exc}")
    finally:
        container.close()
