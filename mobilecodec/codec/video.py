"""Video-level encode and decode with the PyTorch model (writes and reads .mnvc streams)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch

from mobilecodec.bitstream.format import (FrameType, StreamHeader, StreamReader,
                                          StreamWriter, frame_hash, record_overhead)
from mobilecodec.codec import block_modes
from mobilecodec.codec.block_modes import BlockModeOptions
from mobilecodec.codec.frame_coding import LatentDecoder, LatentEncoder, run_iframe, run_pframe
from mobilecodec.codec.refine import RefineOptions
from mobilecodec.errors import BitstreamError, InputError
from mobilecodec.io import VideoWriter, crop_frame, open_video, pad_frame, padded_size
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.yuv import frame_to_tensor, tensor_to_frame
from mobilecodec.progress import progress_bar


class TorchEngine:
    """The PyTorch backend behind `encode_video` / `decode_video`. Another backend (e.g.
    `mobilecodec.runtime.engine.OnnxEngine`) provides the same members and codes interchangeable streams."""

    def __init__(self, model: VideoCodec, refine: RefineOptions | None = None) -> None:
        self.model = model
        self.refine = refine  # sender-side latent refinement (codec.refine), None: off

    def check_padded_size(self, height: int, width: int, picture: tuple[int, int] | None = None) -> None:
        """PyTorch runs any padded size."""

    def latent_encoder(self, x: torch.Tensor, modes: BlockModeOptions | None = None,
                       picture: tuple[int, int] | None = None) -> LatentEncoder:
        """`modes`: the sender's block-mode search (None: off), chosen over `picture`, the frame's
        (height, width) before padding, where refinement measures too."""
        return LatentEncoder(self.model, x, refine=self.refine, modes=modes, picture=picture)

    def latent_decoder(self, payload: bytes, height: int, width: int,
                       mode_map: block_modes.ModeMap | None = None) -> LatentDecoder:
        return LatentDecoder(self.model, payload, height, width, mode_map=mode_map)

    def run_iframe(self, source):
        return run_iframe(self.model, source)

    def run_pframe(self, buf, source):
        if isinstance(source, LatentEncoder):
            source.buffer = buf  # motion refinement scores motion latents by the whole P-step
        return run_pframe(self.model, buf, source)


def _fps_fraction(fps: float) -> Fraction:
    from mobilecodec.io import fps_to_fraction

    return Fraction(fps_to_fraction(fps))


def encode_video(model: VideoCodec, input_path: str | Path, output: str | Path, *, intra_period: int = 32,
                 max_frames: int | None = None, size: tuple[int, int] | None = None, fps: float | None = None,
                 progress: bool = True, engine=None, refine: RefineOptions | None = None,
                 modes: BlockModeOptions | None = None, on_frame: Callable[[int], None] | None = None) -> dict:
    """Encode a video file into a .mnvc stream; returns a summary (per-frame bits, types, hashes, time).
    `engine`: the backend running the networks (default: `TorchEngine(model, refine)`); `refine`:
    sender-side latent refinement (PyTorch engine only; the decoder and the stream are unchanged);
    `modes`: P-frame block modes (`codec.block_modes`; every encoder and decoder runs them);
    `on_frame(index)` is called after each frame is written (a caller's progress bar)."""
    if intra_period < 1:
        raise InputError(f"intra period must be >= 1, got {intra_period}")
    if not model.ready_for_coding:
        raise InputError("the model has no entropy-coding tables; run model.update() before coding")
    if refine is not None and engine is not None:
        raise InputError("latent refinement runs on the PyTorch model; it cannot be combined with another engine")
    if modes is not None and not any(e.name == "frame" for e in model.layout):
        raise InputError(f"block modes need a buffered frame; config {model.cfg.name!r} buffers none")
    model.eval()
    engine = engine or TorchEngine(model, refine)
    t0 = time.perf_counter()
    frames_info = []
    with open_video(input_path, size=size, fps=fps, max_frames=max_frames) as reader:
        w, h = reader.width, reader.height
        pw, ph = padded_size(w, h)
        engine.check_padded_size(ph, pw, (h, w))
        rate = getattr(reader, "rate", None) or _fps_fraction(reader.fps)
        header = StreamHeader(config_id=model.cfg.stream_id(), weights_hash=model.weights_hash(), width=w, height=h,
                              fps_num=rate.numerator, fps_den=rate.denominator, intra_period=intra_period,
                              flags=block_modes.stream_flags(modes.block if modes is not None else 0))
        total = reader.num_frames if max_frames is None else min(max_frames, reader.num_frames or max_frames)
        buf = None
        with StreamWriter(output, header) as writer, \
                progress_bar(total=total, desc="encode", unit="frame", enabled=progress, leave=False) as bar:
            for i, frame in enumerate(reader):
                x = frame_to_tensor(pad_frame(frame))
                src = engine.latent_encoder(x, modes, (h, w))
                is_intra = i % intra_period == 0
                out, buf = engine.run_iframe(src) if is_intra else engine.run_pframe(buf, src)
                dec = crop_frame(tensor_to_frame(out), w, h)
                payload = src.payload()
                digest = frame_hash(dec.y, dec.u, dec.v)
                nbytes = writer.write(FrameType.I if is_intra else FrameType.P, payload, digest)
                frames_info.append({"index": i, "type": "I" if is_intra else "P", "bits": 8 * nbytes,
                                    "payload_bits": 8 * len(payload), "overhead_bits": 8 * record_overhead(len(payload)),
                                    "estimated_bits": src.stats.table_bits,
                                    "model_bits": src.stats.model_bits, "hash": digest.hex(),
                                    "parts": src.stats.per_part,
                                    **({"modes": dict(zip(block_modes.MODES, src.mode_counts))}
                                       if getattr(src, "mode_counts", None) else {}),
                                    **({"refined": {k: vars(v) for k, v in src.refined.items()}}
                                       if getattr(src, "refined", None) else {})})
                bar.update(1)
                bar.set_postfix(bits=8 * nbytes)
                if on_frame is not None:
                    on_frame(i)
            if not frames_info:
                raise InputError(f"no frames in {input_path}")
    file_bytes = writer.bytes_written  # not the output's size: a FIFO or /dev/stdout has none
    n = len(frames_info)
    est = sum(f["estimated_bits"] for f in frames_info)
    container_bytes = header.nbytes + sum(f["overhead_bits"] for f in frames_info) // 8
    return {
        "input": str(input_path), "output": str(output), "config": model.cfg.name,
        "config_id": header.config_id,  # what the stream's header names (decode's "config" and "config_id")
        "width": w, "height": h, "padded_width": pw, "padded_height": ph, "fps": float(rate),
        "frames": n, "intra_period": intra_period, "file_bytes": file_bytes,
        "bpp": 8 * file_bytes / (n * w * h),
        "estimated_bytes": est / 8 + container_bytes, "container_bytes": container_bytes,
        "model_estimated_bytes": sum(f["model_bits"] for f in frames_info) / 8 + container_bytes,
        "seconds": time.perf_counter() - t0, "per_frame": frames_info,
        **({"refine": vars(refine)} if refine is not None else {}),
        **({"block_modes": vars(modes)} if modes is not None else {}),
    }


def check_stream_model(header: StreamHeader, model: VideoCodec, checkpoint: str | None = None,
                       what: str = "checkpoint") -> None:
    """Refuse to decode a stream made by another model (it would decode to noise); `what` names the
    model's source in the message (a package decodes with the checkpoint it holds)."""
    if header.config_id != model.cfg.stream_id() or bytes(header.weights_hash) != model.weights_hash():
        where = f" ({checkpoint})" if checkpoint else ""
        sid = model.cfg.stream_id()
        why = (f" (a '~' id: its config differs from the registered '{model.cfg.name.split('+')[0]}' in what the "
               "receiver uses, e.g. its warp or buffering; streams written before this id existed carry the plain "
               "name)") if "~" in sid + header.config_id and bytes(header.weights_hash) == model.weights_hash() else ""
        raise BitstreamError(
            f"stream was encoded with model '{header.config_id}' weights {bytes(header.weights_hash).hex()[:16]}, "
            f"but the {what}{where} is '{sid}' weights {model.weights_hash().hex()[:16]}{why}")


def check_stream_structure(reader: StreamReader) -> None:
    """Parse every record and check what this codec's encoder always writes (the container alone
    allows more): no flags but the block-mode size (`codec.block_modes`), at least one frame, and frame types following
    the header's intra period (I-frames exactly at multiples of it; 0 = no fixed period, then only
    the first frame must be an I-frame). A header or record edited with a recomputed CRC is refused
    here, before any decoding."""
    hdr = reader.header
    block_modes.block_from_flags(hdr.flags)
    if hdr.frame_count == 0:
        raise BitstreamError("stream holds no frames")
    for i, rec in enumerate(reader):
        if hdr.intra_period:
            want = FrameType.I if i % hdr.intra_period == 0 else FrameType.P
        else:
            want = FrameType.I if i == 0 else rec.frame_type
        if rec.frame_type != want:
            raise BitstreamError(f"frame {i} is corrupt: it is coded as {rec.frame_type.name}, but the header's "
                                 f"intra period {hdr.intra_period} makes it {want.name}")


def decode_video(model: VideoCodec, stream: str | Path, output: str | Path | None, *, progress: bool = True,
                 verify: bool = True, checkpoint: str | None = None, engine=None, on_frame=None,
                 pipeline: bool = True) -> dict:
    """Decode a .mnvc stream to .y4m/.yuv (or only verify when output is None); checks each
    frame's hash against the encoder's. Returns a summary. `engine`: the backend running the
    networks (default: `TorchEngine(model)`); `on_frame(index, YUVFrame)` sees every decoded frame.
    `pipeline`: entropy-decode the next frame (and run its integer hyper-synthesis) on a second
    thread while this frame's networks run; the results are the same integers either way."""
    model.eval()
    engine = engine or TorchEngine(model)
    t0 = time.perf_counter()
    frames_info = []
    with StreamReader(stream) as reader:  # validate the whole container (lengths, CRCs) before any work
        check_stream_model(reader.header, model, checkpoint,
                           what=f"package {engine.source}" if getattr(engine, "source", None) and not checkpoint
                           else "checkpoint")
        check_stream_structure(reader)
    with StreamReader(stream) as reader:
        hdr = reader.header
        pw, ph = padded_size(hdr.width, hdr.height)
        engine.check_padded_size(ph, pw, (hdr.height, hdr.width))
        writer = VideoWriter(output, hdr.width, hdr.height, Fraction(hdr.fps_num, hdr.fps_den)) if output else None
        try:
            buf = None
            records = iter(reader)
            with progress_bar(total=hdr.frame_count, desc="decode", unit="frame", enabled=progress,
                              leave=False) as bar, ThreadPoolExecutor(1) as pool:
                block = block_modes.block_from_flags(hdr.flags)
                mode_map = block_modes.ModeMap(block, (ph, pw), (hdr.height, hdr.width)) if block else None

                def latents(rec):
                    src = engine.latent_decoder(rec.payload, ph, pw, mode_map)
                    return src.prefetch(rec.frame_type == FrameType.I) if pipeline else src

                rec = next(records, None)
                pending = pool.submit(latents, rec) if rec is not None and pipeline else None
                i = 0
                while rec is not None:
                    if rec.frame_type == FrameType.P and buf is None:
                        raise BitstreamError(f"frame {i} is a P-frame but no I-frame precedes it")
                    try:
                        src = pending.result() if pipeline else latents(rec)
                        nxt = next(records, None)
                        # the next frame's entropy decoding and integer hyper-synthesis depend only
                        # on its payload: run them while the networks run this frame
                        pending = pool.submit(latents, nxt) if nxt is not None and pipeline else None
                        if rec.frame_type == FrameType.I:
                            out, buf = engine.run_iframe(src)
                        else:
                            out, buf = engine.run_pframe(buf, src)
                        src.finish()
                    except (ValueError, IndexError, OverflowError) as exc:
                        raise BitstreamError(f"frame {i}: corrupt payload ({exc})") from None
                    except BitstreamError as exc:  # the entropy decoder's own checks: which frame
                        if str(exc).startswith("frame "):
                            raise
                        raise BitstreamError(f"frame {i}: {exc}") from None
                    dec = crop_frame(tensor_to_frame(out), hdr.width, hdr.height)
                    digest = frame_hash(dec.y, dec.u, dec.v)
                    match = digest == bytes(rec.frame_hash)
                    if verify and not match:
                        raise BitstreamError(f"frame {i}: decoded frame does not match the encoder's hash "
                                             "(a corrupt stream, or one encoded on another backend, CPU or "
                                             "thread count: decode with the encode's --threads on the same "
                                             "machine, and a stream of `encode --package` with `decode "
                                             "--package` and that package; --no-verify decodes anyway)")
                    if writer:
                        writer.write(dec)
                    if on_frame is not None:
                        on_frame(i, dec)
                    frames_info.append({"index": i, "type": rec.frame_type.name, "bits": 8 * rec.nbytes,
                                        "hash": digest.hex(), "hash_match": bool(match)})
                    bar.update(1)
                    rec, i = nxt, i + 1
            if writer:
                writer.close()
                writer = None
        finally:
            if writer is not None:
                writer.abort()
    return {"stream": str(stream), "output": str(output) if output else None, "config": hdr.config_id,
            "config_id": hdr.config_id,
            "width": hdr.width, "height": hdr.height, "fps": hdr.fps, "frames": len(frames_info),
            "hash_matches": sum(f["hash_match"] for f in frames_info), "seconds": time.perf_counter() - t0,
            "per_frame": frames_info}
