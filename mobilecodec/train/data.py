"""Training data: video files and Vimeo-90K septuplet folders, sampled as random GOPs with random
crops (YUV420 uint8, turned into packed network tensors per batch).

Videos are decoded once into raw uint8 arrays in the cache folder and memory-mapped, so training
never re-decodes them. Caching is meant for training clips: a 1080p frame takes 3 MB, so a
10 s 1080p clip at 30 fps takes ~0.9 GB of cache (a warning is printed above 1 GiB; cap it with
`max_frames`). Septuplet PNGs (RGB) are read on demand and converted to YUV420 (BT.601, limited
range, chroma averaged over 2x2).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mobilecodec.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

CACHE_SUBDIR = "train_clips"
CACHE_WARN_BYTES = 1 << 30
BT601 = (0.299, 0.114)  # (Kr, Kb)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert uint8 RGB (H, W, 3) to BT.601 limited-range YUV420 planes (Y: HxW, U/V: H/2xW/2).

    Odd sizes are cropped to even; chroma is the mean of each 2x2 block (co-sited with the block
    centre), the inverse of the nearest-neighbour upsampling `mobilecodec.metrics.yuv_to_rgb` uses.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    if h == 0 or w == 0:
        raise InputError(f"image too small for YUV420: {rgb.shape[1]}x{rgb.shape[0]}")
    x = rgb[:h, :w].astype(np.float64) / 255.0
    kr, kb = BT601
    kg = 1.0 - kr - kb
    yn = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    cb = (x[..., 2] - yn) / (2.0 * (1.0 - kb))
    cr = (x[..., 0] - yn) / (2.0 * (1.0 - kr))

    def sub(p: np.ndarray) -> np.ndarray:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def u8(p: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(p), 0, 255).astype(np.uint8)

    return u8(16.0 + 219.0 * yn), u8(128.0 + 224.0 * sub(cb)), u8(128.0 + 224.0 * sub(cr))


@dataclass
class Clip:
    """A sequence of YUV420 frames as uint8 arrays: y (T, H, W), uv (T, 2, H/2, W/2)."""

    name: str
    y: np.ndarray
    uv: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.y.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in luma pixels."""
        return int(self.y.shape[1]), int(self.y.shape[2])


def _cache_key(path: Path, max_frames: int | None) -> str:
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, max_frames])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_video(path: str | os.PathLike, max_frames: int | None = None) -> Clip:
    """Decode a video file once into the cache folder (raw uint8 Y and UV arrays) and return the
    clip memory-mapped. Sample names ('carphone', 'bikes') resolve to the sample clips."""
    from mobilecodec.fsutil import atomic_dir, cache_dir
    from mobilecodec.io import list_sample_clips, open_video, sample_clip

    p = Path(path)
    if not p.exists() and str(path) in list_sample_clips():
        p = sample_clip(str(path))
    if not p.exists():
        raise InputError(f"no such training video or folder: {path}")
    folder = cache_dir() / CACHE_SUBDIR / f"{p.stem}-{_cache_key(p, max_frames)}"
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        with open_video(p, max_frames=max_frames) as reader:
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
    y = np.memmap(folder / "y.u8", dtype=np.uint8, mode="r", shape=(t, h, w))
    uv = np.memmap(folder / "uv.u8", dtype=np.uint8, mode="r", shape=(t, 2, h // 2, w // 2))
    return Clip(str(path), y, uv)


def find_septuplets(root: str | os.PathLike) -> list[Path]:
    """Septuplet folders under a Vimeo-90K root (`sequences/xxxxx/yyyy/im1.png`), under its
    `sequences` folder, or a single septuplet folder. Uses `sep_trainlist.txt` when present."""
    root = Path(root)
    if (root / "im1.png").is_file():
        return [root]
    seq = root / "sequences" if (root / "sequences").is_dir() else root
    listing = root / "sep_trainlist.txt"
    if listing.is_file():
        dirs = [seq / line.strip() for line in listing.read_text().splitlines() if line.strip()]
        dirs = [d for d in dirs if (d / "im1.png").is_file()]
    else:
        dirs = sorted(p.parent for p in seq.glob("*/*/im1.png"))
    if not dirs:
        raise InputError(f"{root}: no Vimeo-90K septuplets found (expected sequences/xxxxx/yyyy/im1.png ... im7.png)")
    return dirs


class SeptupletSource:
    """Vimeo-90K septuplets: each folder holds im1.png..imK.png (RGB), read and converted on demand."""

    def __init__(self, root: str | os.PathLike) -> None:
        from PIL import Image

        self.name = str(root)
        self.dirs = find_septuplets(root)
        first = self.dirs[0]
        self.num_frames = len(self._frame_files(first))
        with Image.open(first / "im1.png") as im:
            w, h = im.size
        self.size = (h // 2 * 2, w // 2 * 2)

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
            with Image.open(f) as im:
                y, u, v = rgb_to_yuv420(np.asarray(im.convert("RGB")))
            if y.shape != self.size:
                raise InputError(f"{f}: size {y.shape[1]}x{y.shape[0]} differs from {self.size[1]}x{self.size[0]} "
                                 "of the other septuplets")
            ys.append(y)
            uvs.append(np.stack([u, v]))
        return np.stack(ys), np.stack(uvs)


class TrainingData:
    """Random GOPs with random crops from several sources (each --data PATH is one source, sampled
    with equal probability; within a source, clips / septuplets and GOP starts are uniform)."""

    def __init__(self, paths: Sequence[str], gop: int, crop: tuple[int, int], max_frames: int | None = None) -> None:
        if not paths:
            raise InputError("no training data given (--data PATH ...)")
        self.gop, self.crop = gop, tuple(crop)
        self.sources: list[Clip | SeptupletSource] = []
        for path in paths:
            if Path(path).is_dir():
                src: Clip | SeptupletSource = SeptupletSource(path)
            else:
                src = cached_video(path, max_frames=max_frames)
            self._check(src)
            self.sources.append(src)

    def _check(self, src: Clip | SeptupletSource) -> None:
        h, w = src.size
        ch, cw = self.crop
        if src.num_frames < self.gop:
            raise InputError(f"{src.name}: has {src.num_frames} frames, shorter than the GOP of {self.gop}")
        if ch > h or cw > w:
            raise InputError(f"{src.name}: frames are {w}x{h} (WxH), smaller than the crop {cw}x{ch}; "
                             f"use a smaller --crop (HxW, multiples of 64)")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random GOP crop: y (G, h, w) and uv (G, 2, h/2, w/2) uint8 (crop offsets are even,
        so chroma stays aligned with luma)."""
        src = self.sources[int(rng.integers(len(self.sources)))]
        g = self.gop
        start = int(rng.integers(src.num_frames - g + 1))
        if isinstance(src, SeptupletSource):
            y, uv = src.load(int(rng.integers(len(src.dirs))), start, g)
        else:
            y, uv = src.y[start:start + g], src.uv[start:start + g]
        h, w = src.size
        ch, cw = self.crop
        top = 2 * int(rng.integers((h - ch) // 2 + 1))
        left = 2 * int(rng.integers((w - cw) // 2 + 1))
        y = np.array(y[:, top:top + ch, left:left + cw])
        uv = np.array(uv[:, :, top // 2:(top + ch) // 2, left // 2:(left + cw) // 2])
        return y, uv

    def batch(self, rng: np.random.Generator, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """A batch of GOPs as packed tensors (G, N, 6, h/2, w/2) in [0, 1]."""
        samples = [self.sample(rng) for _ in range(batch_size)]
        return gops_to_tensor([s[0] for s in samples], [s[1] for s in samples], device)


def gops_to_tensor(ys: Sequence[np.ndarray], uvs: Sequence[np.ndarray], device=None) -> torch.Tensor:
    """Stack N GOPs (y (G,h,w), uv (G,2,h/2,w/2) uint8) into a packed tensor (G, N, 6, h/2, w/2)."""
    import torch

    from mobilecodec.models.yuv import pack_yuv

    y = torch.from_numpy(np.stack(ys, axis=1)).to(device=device, dtype=torch.float32) / 255.0  # (G,N,h,w)
    uv = torch.from_numpy(np.stack(uvs, axis=1)).to(device=device, dtype=torch.float32) / 255.0  # (G,N,2,..)
    g, n = y.shape[:2]
    packed = pack_yuv(y.reshape(g * n, 1, *y.shape[2:]), uv.reshape(g * n, 2, *uv.shape[3:]))
    return packed.reshape(g, n, *packed.shape[1:])
