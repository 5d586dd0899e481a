"""One x264/x265 CRF sweep: source -> raw .yuv -> ffmpeg per CRF -> decode -> per-frame metrics.

Everything is measured against the same source frames the neural codec sees: PSNR Y/U/V/YUV
(6:1:1), PSNR-RGB and MS-SSIM-RGB per frame (point values are means of per-frame values), bits
per frame from the real packet sizes, and the point's bpp from the real size of the .mp4 file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mobilecodec.baselines import ffmpeg as ff
from mobilecodec.errors import InputError, ToolError


@dataclass
class BaselineConfig:
    """What to encode and how: codec, preset, CRF sweep, input video and output folder."""

    codec: str
    preset: str
    crfs: Sequence[float]
    input: Path
    out_dir: Path
    frames: int | None = None          # encode only the first N frames
    size: tuple[int, int] | None = None  # (width, height), needed for .yuv input
    fps: float | None = None           # overrides the file's rate (rate of a .yuv)
    matrix: str = "bt601"              # YUV->RGB matrix for PSNR-RGB / MS-SSIM-RGB
    progress: bool = True
    intra_period: int | None = None    # an I-frame every N frames only (None: the appendix command's GOPs)

    @property
    def stem(self) -> str:
        return f"{self.codec}_{self.preset}" + (f"_ip{self.intra_period}" if self.intra_period else "")


def check_config(cfg: BaselineConfig) -> None:
    """Raise InputError for a codec, preset, CRF, frame count or matrix we cannot use."""
    if cfg.codec not in ff.ENCODERS:
        raise InputError(f"unknown codec {cfg.codec!r}; choose from {', '.join(ff.ENCODERS)}")
    if cfg.preset not in ff.PRESETS:
        raise InputError(f"unknown preset {cfg.preset!r}; choose from {', '.join(ff.PRESETS)}")
    if not cfg.crfs:
        raise InputError("no CRF values given")
    for crf in cfg.crfs:
        if (problem := ff.crf_problem(crf)) is not None:
            raise InputError(f"{problem}, got {crf!r}")
    if len(set(float(c) for c in cfg.crfs)) != len(cfg.crfs):
        raise InputError(f"CRF values must be distinct, got {list(cfg.crfs)}")
    if cfg.frames is not None and cfg.frames < 1:
        raise InputError(f"--frames must be a positive integer, got {cfg.frames}")
    if cfg.matrix not in ("bt601", "bt709"):
        raise InputError(f"unknown colour matrix {cfg.matrix!r}; choose bt601 or bt709")
    if cfg.intra_period is not None and cfg.intra_period < 1:
        raise InputError(f"--intra-period must be a positive integer, got {cfg.intra_period}")


#: The name the recorded commands give their input, the source written as raw 8-bit 4:2:0 (`_write_source_yuv`).
SOURCE_YUV = "source.yuv"


def _write_source_yuv(cfg: BaselineConfig, path: Path) -> dict[str, Any]:
    """Read the input (at most cfg.frames frames) into a raw yuv420p file; return its metadata."""
    from mobilecodec.io import no_such_video, open_video, warn_fewer_frames

    if not cfg.input.exists():
        raise no_such_video(cfg.input)
    count = 0
    with open_video(cfg.input, size=cfg.size, fps=cfg.fps, max_frames=cfg.frames) as reader:
        width, height, rate = reader.width, reader.height, reader.rate
        if width % 2 or height % 2:
            raise InputError(f"{cfg.input}: width and height must be even for yuv420p, "
                             f"got {width}x{height}")
        with open(path, "wb") as f:
            for frame in reader:
                if frame.y.shape != (height, width):
                    raise InputError(f"{cfg.input}: frame {count} is {frame.y.shape[1]}x"
                                     f"{frame.y.shape[0]}, expected {width}x{height}")
                f.write(np.ascontiguousarray(frame.y).tobytes())
                f.write(np.ascontiguousarray(frame.u).tobytes())
                f.write(np.ascontiguousarray(frame.v).tobytes())
                count += 1
    if count == 0:
        raise InputError(f"no frames in {cfg.input} (empty clip)")
    warn_fewer_frames(cfg.input, count, cfg.frames, "encoding")  # the JSON's "frames" is what was coded
    return {"width": width, "height": height, "rate": rate, "frames": count}


def _source_frames(path: Path, width: int, height: int, frames: int):
    """The raw source as a read-only memory map; returns a function index -> YUVFrame."""
    from mobilecodec.io import YUVFrame

    ny, nc = width * height, (width // 2) * (height // 2)
    data = np.memmap(path, dtype=np.uint8, mode="r", shape=(frames, ny + 2 * nc))

    def get(i: int) -> Any:
        row = data[i]
        return YUVFrame(np.asarray(row[:ny]).reshape(height, width),
                        np.asarray(row[ny:ny + nc]).reshape(height // 2, width // 2),
                        np.asarray(row[ny + nc:]).reshape(height // 2, width // 2))

    return get


def _measure_point(cfg: BaselineConfig, crf: float, command: list[str], output: Path,
                   src: Callable[[int], Any], meta: dict[str, Any], tick: Callable[[], None]
                   ) -> dict[str, Any]:
    """Decode one encoded file and build its RD point (per-frame and mean metrics, bits, bpp)."""
    from mobilecodec import metrics

    width, height, frames = meta["width"], meta["height"], meta["frames"]
    per_frame: list[dict[str, Any]] = []
    for i, dec in enumerate(ff.decode_frames(output)):
        if i >= frames:
            raise ToolError(f"{output.name}: ffmpeg produced more frames than the {frames} "
                            f"source frames")
        if dec.y.shape != (height, width):
            raise ToolError(f"{output.name}: decoded frame {i} is {dec.y.shape[1]}x"
                            f"{dec.y.shape[0]}, expected {width}x{height}")
        m = metrics.frame_metrics(src(i), dec, cfg.matrix)
        per_frame.append({"index": i, "type": dec.pict_type, "bits": dec.packet_bytes * 8, **m})
        tick()
    if len(per_frame) != frames:
        raise ToolError(f"{output.name}: decoded {len(per_frame)} frames but the source has "
                        f"{frames}")
    file_bytes = os.path.getsize(output)
    packet_bits = sum(f["bits"] for f in per_frame)
    point: dict[str, Any] = {
        "label": f"crf{ff.format_crf(crf)}",
        "crf": crf,
        "preset": cfg.preset,
        "file": output.name,
        "file_bytes": file_bytes,
        "bits": file_bytes * 8,
        "bpp": metrics.bpp(file_bytes * 8, frames, width, height),
        "packet_bits": packet_bits,
        "packet_bpp": metrics.bpp(packet_bits, frames, width, height),
    }
    point.update(metrics.mean_metrics(per_frame))
    point["command"] = command
    point["command_line"] = ff.command_line(command)
    point["frame_types"] = "".join(f["type"][:1] for f in per_frame)
    point["per_frame"] = per_frame
    if cfg.intra_period:
        from mobilecodec.rdresults import drift_summary

        point["intra_period"] = cfg.intra_period
        point["drift"] = drift_summary(point)
    return point


def run_baseline(cfg: BaselineConfig, kept: Sequence[tuple[str, str | os.PathLike | None]] = ()) -> dict[str, Any]:
    """Encode the sweep, measure it, and write OUT/<codec>_<preset>.json, the .mp4 files and
    OUT/<codec>_<preset>_rd.png. Nothing lands in OUT unless the whole sweep succeeds; none of them
    may replace the input or `kept` ((what, path): the command's --json)."""
    from mobilecodec.fsutil import check_planned_outputs, listed_files, publishing, remove_superseded
    from mobilecodec.progress import progress_bar
    from mobilecodec.rdresults import save_results

    check_config(cfg)
    check_planned_outputs(cfg.out_dir, [f"{cfg.stem}_crf{ff.format_crf(c)}.mp4" for c in cfg.crfs]
                          + [f"{cfg.stem}_rd.png", f"{cfg.stem}.json"], kept=[("the input video", cfg.input), *kept])
    exe = ff.ffmpeg_exe()
    version = ff.ffmpeg_version(exe)
    work = Path(tempfile.mkdtemp(prefix="mobilecodec-baseline-"))
    try:
        src_yuv = work / SOURCE_YUV
        meta = _write_source_yuv(cfg, src_yuv)
        from mobilecodec.metrics import check_measurable

        check_measurable(meta["height"], meta["width"], cfg.input)  # frames MS-SSIM cannot measure: refused before encoding
        src = _source_frames(src_yuv, meta["width"], meta["height"], meta["frames"])
        points = []
        bar = progress_bar(total=len(cfg.crfs) * meta["frames"], unit="frame", enabled=cfg.progress,
                           desc=f"{cfg.stem}")
        t0 = time.perf_counter()
        try:
            for crf in cfg.crfs:
                out = work / f"{cfg.stem}_crf{ff.format_crf(crf)}.mp4"
                cmd = ff.build_command(exe, cfg.codec, cfg.preset, crf, meta["width"],
                                       meta["height"], meta["rate"], src_yuv, out, cfg.intra_period)
                bar.set_postfix_str(f"crf {ff.format_crf(crf)}: encoding")
                t_enc = time.perf_counter()
                ff.run_ffmpeg(cmd)
                enc_s = time.perf_counter() - t_enc
                bar.set_postfix_str(f"crf {ff.format_crf(crf)}: measuring")
                # recorded as run, but naming the published file and not the work folder's, which is
                # deleted (the JSON's commands named two files that no longer existed)
                shown = ff.build_command(exe, cfg.codec, cfg.preset, crf, meta["width"], meta["height"],
                                         meta["rate"], SOURCE_YUV, Path(cfg.out_dir).resolve() / out.name,
                                         cfg.intra_period)
                point = _measure_point(cfg, crf, shown, out, src, meta, lambda: bar.update(1))
                point["encode_seconds"] = round(enc_s, 3)
                points.append(point)
        finally:
            bar.close()
        encoder = ff.ENCODERS[cfg.codec][0]
        results: dict[str, Any] = {
            "codec": cfg.codec,
            "encoder": encoder,
            "source": str(cfg.input),
            "width": meta["width"],
            "height": meta["height"],
            "fps": float(meta["rate"]),
            "fps_exact": ff.format_rate(meta["rate"]),
            "frames": meta["frames"],
            "preset": cfg.preset,
            "crf": list(cfg.crfs),
            "matrix": cfg.matrix,
            "source_yuv": f"{SOURCE_YUV}, the commands' input: the {meta['frames']} frames of the source as raw "
                          "8-bit 4:2:0 (not kept)",
            **({"intra_period": cfg.intra_period} if cfg.intra_period else {}),
            "aggregation": "point metrics are means of per-frame values; bpp = file size bits "
                           "/ (frames*W*H); packet_bpp = sum of video packet bits without SEI messages / (frames*W*H)",
            "packet_bits_exclude": ["SEI"],  # encoder text: x264 writes it into its first packet (rdresults.payload_rates)
            "ffmpeg": exe,
            "ffmpeg_version": version,
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "points": points,
        }
        # Publish: everything is made in the work folder first, then copied into OUT all or nothing
        # (an earlier sweep's files of the same names stay if this one does not finish).
        from mobilecodec.plots import rd_plot
        from mobilecodec.rdresults import validate_results

        validate_results(results, where=cfg.stem, require_per_frame=True)
        rd_plot([results], path=work / f"{cfg.stem}_rd.png", metric=("psnr_yuv", "psnr_rgb"),
                title=f"{cfg.codec} preset {cfg.preset}: {Path(cfg.input).name}, "
                      f"{meta['frames']} frames")
        earlier = listed_files(Path(cfg.out_dir) / f"{cfg.stem}.json", lambda r: [p["file"] for p in r["points"]])
        written = [p["file"] for p in points] + [f"{cfg.stem}_rd.png"]
        with publishing(cfg.out_dir) as stage:
            for name in written:
                shutil.copyfile(work / name, stage / name)
            save_results(stage / f"{cfg.stem}.json", results)
        own = re.compile(rf"{re.escape(cfg.stem)}_crf[0-9][0-9.e+-]*\.mp4")  # the names this sweep writes
        remove_superseded(cfg.out_dir, earlier, written,  # an earlier sweep's CRFs this one has not
                          spare=[cfg.input, *(p for _, p in kept)], own=lambda f: own.fullmatch(f) is not None)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def format_table(results: dict[str, Any]) -> str:
    """The small stdout table: crf, bpp, PSNR-Y, PSNR-YUV, PSNR-RGB, MS-SSIM per point."""
    lines = [f"{results['codec']} preset {results.get('preset', '?')}: {results['source']} "
             f"({results['width']}x{results['height']}, {results['frames']} frames)",
             f"{'crf':>5} {'bpp':>8} {'PSNR-Y':>8} {'PSNR-YUV':>9} {'PSNR-RGB':>9} {'MS-SSIM':>8}"]
    for p in results["points"]:
        lines.append(f"{ff.format_crf(p['crf']):>5} {p['bpp']:8.4f} {p['psnr_y']:8.3f} "
                     f"{p['psnr_yuv']:9.3f} {p['psnr_rgb']:9.3f} {p['ms_ssim_rgb']:8.5f}")
    if any("drift" in p for p in results["points"]):
        from mobilecodec.rdresults import format_period_drift

        lines.append(f"P-frame drift (intra period {results.get('intra_period')}: last P-frame of each "
                     "period against its second):")
        lines += [f"{'crf' + ff.format_crf(p['crf']):<8} {format_period_drift(p['drift'])}"
                  for p in results["points"] if "drift" in p]
    return "\n".join(lines)
