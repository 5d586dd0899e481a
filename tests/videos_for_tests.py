"""Video files the tests write byte by byte, where the package's writers would refuse or fix what is
being tested (a header rate out of range, a raw .yuv with no header)."""

from __future__ import annotations

from pathlib import Path


def _planes(frames) -> list[bytes]:
    return [f.y.tobytes() + f.u.tobytes() + f.v.tobytes() for f in frames]


def y4m_claiming(path: Path, frames, rate: str) -> Path:
    """A 4:2:0 y4m of `frames` whose header claims `rate` ("5000:1": what a broken muxer writes)."""
    head = f"YUV4MPEG2 W{frames[0].width} H{frames[0].height} F{rate} Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(head + b"".join(b"FRAME\n" + p for p in _planes(frames)))
    return path


def raw_yuv(path: Path, frames) -> Path:
    """`frames` as a headerless yuv420p file."""
    path.write_bytes(b"".join(_planes(frames)))
    return path
