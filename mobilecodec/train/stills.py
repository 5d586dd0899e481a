"""Natural colour still images as training GOPs with synthetic motion.

The images ship inside installed wheels (scikit-image's `skimage/data`, matplotlib's
`mpl-data/sample_data`) and are found through `importlib.metadata`, like the sample clips. A GOP is
rendered from one image by a known camera motion: a sub-pixel translation per frame, a slow zoom
and a scale, sampled bilinearly in RGB and converted to YUV420 (BT.601). The motion is returned with
the frames, so tests can check that the GOP really moves as it was told to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.train.rgb import rgb_to_yuv420

#: (distribution, folder inside it) holding still images.
STILL_FOLDERS = (("scikit-image", "skimage/data"), ("matplotlib", "matplotlib/mpl-data/sample_data"))
STILL_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_SIDE = 256  # smaller images (icons, test patterns) are skipped
MAX_SPEED = 3.0  # luma pixels per frame, each axis
MAX_ZOOM = 0.02  # relative zoom per frame
# Share of GOPs with no motion at all (a fixed camera on a still scene, as in much of carphone's
# frame). 0 keeps the random stream of earlier runs: the extra draw is made only when it is > 0.
STATIC_SHARE = 0.0


def find_stills() -> list[Path]:
    """Every natural colour still image (RGB, not grey, not a flat graphic, both sides >= MIN_SIDE) in the installed wheels."""
    from importlib import metadata

    from PIL import Image

    found = []
    for dist_name, folder in STILL_FOLDERS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or ():
            posix = f.as_posix()
            if not posix.startswith(folder + "/") or not posix.lower().endswith(STILL_SUFFIXES):
                continue
            path = Path(dist.locate_file(f))
            try:
                with Image.open(path) as im:
                    if im.mode not in ("RGB", "RGBA", "P") or min(im.size) < MIN_SIDE:
                        continue
                    rgb = np.asarray(im.convert("RGB"))
            except OSError:
                continue
            if _is_colour(rgb) and _is_photo(rgb):
                found.append(path)
    return sorted(found)


def _is_colour(rgb: np.ndarray) -> bool:
    """True when the image is not (nearly) grey: mean chroma deviation above 4 levels."""
    x = rgb.astype(np.float32)
    return float(np.abs(x - x.mean(axis=2, keepdims=True)).mean()) > 4.0


def _half(img: np.ndarray) -> np.ndarray:
    """The image averaged over 2x2 blocks (odd edges cropped)."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))


def _is_photo(rgb: np.ndarray) -> bool:
    """True for photographs, False for flat graphics (logos): at least 10,000 distinct colours.
    Counted on a 2^24-entry table of 24-bit colours (np.unique over rows took 4 s on retina.jpg)."""
    c = rgb.reshape(-1, 3).astype(np.uint32)
    seen = np.zeros(1 << 24, dtype=bool)
    seen[(c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]] = True
    return int(np.count_nonzero(seen)) >= 10_000


@dataclass(frozen=True)
class Motion:
    """The synthetic camera motion of one GOP, in output luma pixels: frame t shows the content
    of frame 0 moved by -t * velocity (frame_t(p) = frame_0(p + t * velocity) for zoom 0), and
    magnified by (1 + zoom) ** t about the crop centre."""

    velocity: tuple[float, float]  # (dy, dx) per frame
    zoom: float
    scale: float  # output pixels per source pixel (< 1: the image is downscaled)
    flipped: bool


MIN_FIT = 0.25  # the smallest scale (output px per source px) a GOP's footprint may need


def _extent(gop: int, crop: tuple[int, int], vel: np.ndarray, zoom: float) -> np.ndarray:
    """Footprint (h, w) of a whole GOP in output pixels, for velocity `vel` (px/frame) and `zoom`."""
    return max(1.0, (1 + abs(zoom)) ** (gop - 1)) * np.array(crop, dtype=float) + (gop - 1) * np.abs(vel) + 4


class StillSource:
    """GOPs of synthetic motion over still images (loaded once, kept in memory as float32 RGB)."""

    def __init__(self, paths: list[Path] | None = None, name: str = "stills") -> None:
        from PIL import Image

        self.name = name
        self.paths = list(paths) if paths is not None else find_stills()
        if not self.paths:
            raise InputError("no still images found: install scikit-image (pip install 'mobilecodec[train]') "
                             "or drop 'stills' from --data")
        self.images = []
        for p in self.paths:
            with Image.open(p) as im:
                self.images.append(np.asarray(im.convert("RGB"), dtype=np.float32))
        self.halves = [_half(im) for im in self.images]
        self.size = (min(im.shape[0] for im in self.images), min(im.shape[1] for im in self.images))
        self.num_frames = 1 << 30  # any GOP length that `check` lets through

    def check(self, gop: int, crop: tuple[int, int]) -> None:
        """InputError, before any training, where the fastest motion `sample_with_motion` may draw
        would leave an image over a GOP of `gop` frames at `crop` (it failed at a random step)."""
        def fits(g: int) -> bool:
            extent = _extent(g, crop, np.full(2, MAX_SPEED), MAX_ZOOM)
            return all(min(im.shape[0] / extent[0], im.shape[1] / extent[1]) >= MIN_FIT for im in self.images)

        if not fits(gop):
            longest = next((g for g in range(gop - 1, 0, -1) if fits(g)), 0)
            raise InputError(f"stills: a GOP of {gop} frames at a {crop[1]}x{crop[0]} crop would move past the "
                             f"smallest image; at most {longest} frames at that crop (or a smaller --crop)")

    def __reduce__(self) -> tuple[Any, tuple]:
        """Pickles as its file names (data workers and DDP ranks load the images again), not as
        the float32 pixels (65 MB for the bundled stills)."""
        return StillSource, (self.paths, self.name)

    def sample(self, rng: np.random.Generator, gop: int, crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        y, uv, _ = self.sample_with_motion(rng, gop, crop)
        return y, uv

    def sample_with_motion(self, rng: np.random.Generator, gop: int,
                           crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, Motion]:
        """One GOP: y (G, h, w), uv (G, 2, h/2, w/2) uint8 and the motion that made it."""
        i = int(rng.integers(len(self.images)))
        ch, cw = crop
        vel = rng.uniform(-MAX_SPEED, MAX_SPEED, size=2)
        zoom = float(rng.uniform(-MAX_ZOOM, MAX_ZOOM))
        if STATIC_SHARE > 0 and rng.random() < STATIC_SHARE:
            vel, zoom = np.zeros(2), 0.0
        # Footprint of the whole GOP in output pixels; the scale (output px per source px) is drawn
        # in [0.5, 1] and lowered where the footprint would not fit the image.
        extent = _extent(gop, crop, vel, zoom)
        full = self.images[i]
        fit = float(min(full.shape[0] / extent[0], full.shape[1] / extent[1]))
        if fit < MIN_FIT:
            raise InputError(f"still image {self.paths[i]} is too small for a {cw}x{ch} crop")
        scale = min(float(rng.uniform(0.5, 1.0)), fit)
        # Below 0.75 sample the 2x2-averaged image instead (no aliasing from bilinear decimation).
        img, s_img = (self.halves[i], 2 * scale) if scale < 0.75 else (full, scale)
        ih, iw = img.shape[:2]
        half = extent / s_img / 2
        cy = float(rng.uniform(half[0], ih - half[0])) if ih > 2 * half[0] else ih / 2
        cx = float(rng.uniform(half[1], iw - half[1])) if iw > 2 * half[1] else iw / 2
        # the motion path is centred on the point drawn above
        cy -= (gop - 1) * vel[0] / s_img / 2
        cx -= (gop - 1) * vel[1] / s_img / 2
        frames = [self._render(img, t, (cy, cx), vel, zoom, s_img, crop) for t in range(gop)]
        flipped = bool(rng.integers(2))
        if flipped:
            frames = [f[:, ::-1] for f in frames]
            vel = np.array([vel[0], -vel[1]])
        ys, uvs = [], []
        for f in frames:
            y, u, v = rgb_to_yuv420(np.clip(np.rint(f), 0, 255).astype(np.uint8))
            ys.append(y)
            uvs.append(np.stack([u, v]))
        return np.stack(ys), np.stack(uvs), Motion((float(vel[0]), float(vel[1])), zoom, scale, flipped)

    @staticmethod
    def _render(img: np.ndarray, t: int, centre: tuple[float, float], vel: np.ndarray, zoom: float,
                scale: float, crop: tuple[int, int]) -> np.ndarray:
        """Frame t (h, w, 3) float: output pixel p samples the image at
        centre + (t * vel + (p - c_out) / (1 + zoom)^t) / scale, bilinearly. The map is
        axis-aligned, so the interpolation is separable: rows first, then columns."""
        ch, cw = crop
        mag = (1.0 + zoom) ** t
        sy = centre[0] + (t * vel[0] + (np.arange(ch) - (ch - 1) / 2) / mag) / scale
        sx = centre[1] + (t * vel[1] + (np.arange(cw) - (cw - 1) / 2) / mag) / scale
        rows = _lerp(img, sy, axis=0)
        return _lerp(rows, sx, axis=1)


def _lerp(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of `a` along `axis` at fractional positions (edges clamped)."""
    n = a.shape[axis]
    pos = np.clip(pos, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    f = (pos - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = -1
    f = f.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - f) + np.take(a, i0 + 1, axis=axis) * f
