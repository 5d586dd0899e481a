"""Parity measurements of exported packages, run with the runtime's onnxruntime engine
(`mobilecodec.runtime.engine.OnnxEngine`, which mirrors `run_iframe` / `run_pframe` with the exported graphs
and the PyTorch path's host steps): float ONNX vs PyTorch over a GOP, int8 QDQ vs the aimet
simulation, and QNN HTP (emulated) vs onnxruntime CPU on QDQ graphs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mobilecodec.tensors import to_numpy


def package_engine(package: str | Path, soc: Any = None, ep: str = "cpu") -> Any:
    """The runtime's onnxruntime engine on `package` (CPU, or the QNN HTP for `ep="qnn"`)."""
    from mobilecodec.runtime.engine import OnnxEngine

    return OnnxEngine(package, ep=ep, soc=soc.soc_model if soc is not None else None)


def _latent_encoder(engine: Any, x: Any) -> Any:
    from mobilecodec.runtime.engine import OnnxLatentEncoder

    return OnnxLatentEncoder(engine, x)


def package_frames(video: str | Path, count: int, height: int, width: int, crop: bool = False) -> list[Any]:
    """The first `count` frames of `video` as packed tensors, padded to the package size; with `crop`,
    larger frames are cut to it about their centre first (calibration frames need not be the package's size)."""
    import torch.nn.functional as F

    from mobilecodec.errors import InputError
    from mobilecodec.io import crop_frame, pad_frame, read_frames as read_video
    from mobilecodec.models.yuv import frame_to_tensor

    out = []
    for f in read_video(video, count):
        if crop:  # about the picture's centre, at even offsets (4:2:0), before any padding
            fh, fw = f.y.shape
            top, left = (max(0, fh - height) // 2) & ~1, (max(0, fw - width) // 2) & ~1
            f = crop_frame(f, min(fw, width), min(fh, height), top, left)
        t = frame_to_tensor(pad_frame(f))
        h2, w2 = t.shape[2:]
        if h2 > height // 2 or w2 > width // 2:
            raise InputError(f"{video} frames (padded {2 * h2}x{2 * w2}) exceed the package size {height}x{width}")
        out.append(F.pad(t, (0, width // 2 - w2, 0, height // 2 - h2), mode="replicate"))
    if not out:
        raise InputError(f"{video} holds no frames")
    return out


def float_parity(package: str | Path, video: str | Path, frames: int = 8, intra_period: int = 8,
                 runner: Any = None, crop: bool = False) -> dict[str, Any]:
    """Encode `frames` frames with PyTorch and with the float ONNX graphs on onnxruntime CPU, each
    carrying its own buffer; per frame: max |difference| of reconstructions and buffers, their
    PSNR over the picture's samples, and whether the coded payloads are identical."""
    import torch

    from mobilecodec.codec.frame_coding import LatentEncoder, run_iframe, run_pframe
    from mobilecodec.metrics import psnr_samples

    runner = runner or package_engine(package)
    if runner.recorder is None:
        runner.recorder = {}
    model = runner.model
    h, w = runner.manifest["padded_size"]
    size = tuple(runner.manifest["original_size"])
    xs = package_frames(video, frames, h, w, crop=crop)
    per_frame = []
    tbuf = obuf = None
    for i, x in enumerate(xs):
        intra = i % intra_period == 0
        tsrc, osrc = LatentEncoder(model, x), _latent_encoder(runner, x)
        with torch.no_grad():
            t_out, tbuf = run_iframe(model, tsrc) if intra else run_pframe(model, tbuf, tsrc)
            o_out, obuf = runner.run_iframe(osrc) if intra else runner.run_pframe(obuf, osrc)
        per_frame.append({
            "index": i, "type": "I" if intra else "P",
            "recon_max_abs": float((t_out - o_out).abs().max()),
            "recon_psnr_db": psnr_samples(_frame(t_out, size), _frame(o_out, size)),  # inf: identical
            "recon_diff_samples": int((t_out != o_out).sum()), "samples": int(t_out.numel()),
            "buffer_max_abs": {n: float((tbuf[n] - obuf[n]).abs().max()) if tbuf[n].numel() else 0.0
                               for n in tbuf.names()},
            "same_payload": tsrc.payload() == osrc.payload(),
        })
    return {"frames": len(xs), "intra_period": intra_period, "stage_max_abs": stage_parity(runner),
            "recon_max_abs": max(f["recon_max_abs"] for f in per_frame),
            "recon_psnr_min_db": min(f["recon_psnr_db"] for f in per_frame),
            "recon_diff_fraction": sum(f["recon_diff_samples"] for f in per_frame) / sum(f["samples"] for f in per_frame),
            "all_payloads_equal": all(f["same_payload"] for f in per_frame), "per_frame": per_frame}


def record_feeds(package: str | Path, video: str | Path, frames: int = 4) -> dict[str, list]:
    """Per float graph of `package`: the inputs it receives while the package codes the first
    `frames` frames of `video` (calibration data for the stand-in quantizer), cut about their centre
    to the package's size where larger: one GOP (the P-frame graphs), and every frame coded as an
    I-frame too (the I-frame graphs: one GOP fed them its first frame alone)."""
    from mobilecodec.export.manifest import load_manifest

    graphs = load_manifest(package)["graphs"]
    if not any(g["used_by_codec"] and not g.get("quantization") for g in graphs.values()):
        return {}  # an int8 package: every coding graph has its aimet encodings
    runner = package_engine(package)
    runner.recorder = {}
    float_parity(package, video, frames, intra_period=frames, runner=runner, crop=True)
    feeds = runner.recorder
    if frames > 1:
        runner.recorder = {}
        float_parity(package, video, frames, intra_period=1, runner=runner, crop=True)
        feeds.update({n: f for n, f in runner.recorder.items() if n.startswith("i_")})
    return {n: f for n, f in feeds.items() if not graphs[n].get("quantization")}


def stage_parity(runner: Any) -> dict[str, float]:
    """Per graph: max |ONNX output - PyTorch stage output| over the inputs the runner recorded."""
    import torch

    from mobilecodec.export.onnx_export import graph_specs

    h, w = runner.manifest["padded_size"]
    specs = {s.name: s for s in graph_specs(runner.model, h, w)}
    out: dict[str, float] = {}
    for name, feeds in (runner.recorder or {}).items():
        spec, sess = specs[name], runner.sessions[name]
        worst = 0.0
        for f in feeds:
            with torch.no_grad():
                ref = spec.module(*(torch.from_numpy(f[i]) for i in spec.inputs))
            ref = ref if isinstance(ref, tuple) else (ref,)
            for a, b in zip(ref, sess.run(spec.outputs, f)):
                worst = max(worst, float(np.abs(a.numpy() - b).max()))
        out[name] = worst
    return out


def psnr_between(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR of `test` against `ref` with the peak taken as the dynamic range of `ref`."""
    from mobilecodec.metrics import psnr

    return psnr(ref, test, max_val=float(ref.max() - ref.min()) or 1.0)


def htp_parity(package: str | Path, video: str | Path, workdir: str | Path, frames: int = 4,
               intra_period: int = 4, soc: Any = None) -> dict[str, Any]:
    """QDQ graphs calibrated on real feeds (the float runner over `frames` frames); each graph run
    on the QNN HTP (emulated on x86) and on onnxruntime CPU with the same feeds; PSNR per output."""
    import onnxruntime as ort

    from mobilecodec.export.qdq import quantize_graph
    from mobilecodec.export.qnn import htp_session
    from mobilecodec.runtime.threads import session_options

    runner = package_engine(package)
    runner.recorder = {}
    float_parity(package, video, frames, intra_period, runner=runner)
    feeds = runner.recorder
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for name, fl in feeds.items():
        qdq = quantize_graph(runner.package / runner.manifest["graphs"][name]["file"], workdir / f"{name}.qdq.onnx", fl)
        cpu = ort.InferenceSession(str(qdq), session_options(), providers=["CPUExecutionProvider"])
        htp = htp_session(qdq, soc)
        outs = [o.name for o in cpu.get_outputs()]
        psnr: dict[str, float] = {o: math.inf for o in outs}
        for f in fl:
            for o, a, b in zip(outs, cpu.run(None, f), htp.run(None, f)):
                psnr[o] = min(psnr[o], psnr_between(a, b))
        result[name] = {"calibration_feeds": len(fl), "min_psnr_db": psnr}
    return result


class _Recorder:
    """Wraps a latent source and keeps every latent it hands out (to prove streams parse identically)."""

    def __init__(self, source: Any) -> None:
        self.source, self.latents = source, []

    def _keep(self, t: Any) -> Any:
        self.latents.append(to_numpy(t).copy())
        return t

    def iframe(self):
        return self._keep(self.source.iframe())

    def motion(self, reference, flow_pred):
        return self._keep(self.source.motion(reference, flow_pred))

    def residual(self, pred, cond):
        return self._keep(self.source.residual(pred, cond))


def _frame(t: Any, size: tuple[int, int]) -> Any:
    """Packed (1, 6, H/2, W/2) tensor -> uint8 YUVFrame cropped to the original (H, W)."""
    from mobilecodec.io import crop_frame
    from mobilecodec.models.yuv import tensor_to_frame

    return crop_frame(tensor_to_frame(t), size[1], size[0])


def _frame_hash(frame: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    for plane in frame:
        h.update(np.ascontiguousarray(plane).tobytes())
    return h.hexdigest()[:16]


def _code_gop(run_i: Callable, run_p: Callable, sources: list[Any], intra_period: int) -> list[Any]:
    """Run one side over a GOP (its own buffer carried along); returns the reconstructions."""
    import torch

    recs, buf = [], None
    for i, src in enumerate(sources):
        with torch.no_grad():
            out, buf = run_i(src) if i % intra_period == 0 else run_p(buf, src)
        recs.append(out)
    return recs


def int8_sim_parity(package: str | Path, qmodel: Any, video: str | Path, frames: int = 8,
                    intra_period: int = 8) -> dict[str, Any]:
    """int8 QDQ graphs on onnxruntime CPU against the aimet simulation (the PyTorch
    QuantizedVideoCodec), each encoding `frames` frames with its own buffer. Per frame: PSNR-YUV
    of each against the source, their difference, max |difference| of the reconstructions in
    8-bit levels, and whether the payloads are identical."""
    from mobilecodec.codec.frame_coding import LatentEncoder, run_iframe, run_pframe
    from mobilecodec.metrics import psnr_samples, psnr_yuv

    runner = package_engine(package)
    h, w = runner.manifest["padded_size"]
    size = tuple(runner.manifest["original_size"])
    xs = package_frames(video, frames, h, w)
    tsrc = [LatentEncoder(qmodel, x) for x in xs]
    osrc = [_latent_encoder(runner, x) for x in xs]
    trec = _code_gop(lambda s: run_iframe(qmodel, s), lambda b, s: run_pframe(qmodel, b, s), tsrc, intra_period)
    orec = _code_gop(runner.run_iframe, runner.run_pframe, osrc, intra_period)
    per_frame = []
    for i, (x, t, o) in enumerate(zip(xs, trec, orec)):
        src, ft, fo = _frame(x, size), _frame(t, size), _frame(o, size)
        pt, po = psnr_yuv(src, ft)["yuv"], psnr_yuv(src, fo)["yuv"]
        per_frame.append({"index": i, "type": "I" if i % intra_period == 0 else "P",
                          "psnr_sim": pt, "psnr_onnx": po, "psnr_diff_db": abs(pt - po),
                          "onnx_vs_sim_psnr": psnr_samples(ft, fo),
                          "max_abs_levels": int(max(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()
                                                    for a, b in zip(ft, fo))),
                          "same_payload": tsrc[i].payload() == osrc[i].payload()})
    return {"frames": len(xs), "intra_period": intra_period,
            "max_psnr_diff_db": max(f["psnr_diff_db"] for f in per_frame),
            "max_abs_levels": max(f["max_abs_levels"] for f in per_frame),
            "min_onnx_vs_sim_psnr": min(f["onnx_vs_sim_psnr"] for f in per_frame),
            "payloads_equal": sum(f["same_payload"] for f in per_frame), "per_frame": per_frame}


def htp_cross_parity(package: str | Path, video: str | Path, frames: int = 8, intra_period: int = 8,
                     soc: Any = None) -> dict[str, Any]:
    """int8 package on the QNN HTP (emulated on x86, CPU fallback disabled) against onnxruntime
    CPU: each encodes the GOP; each stream is then decoded by the other backend. Reports PSNR-YUV
    against the source per backend, whether every cross-decoded latent equals the encoded one (the
    stream parses identically), the drift of cross-decoded frames from the encoder's
    reconstruction (dB), the PSNR difference between the two decodes of the same stream and frame
    hashes. `max_psnr_diff_db` compares two different streams (each backend encodes its own), so
    encoder decisions weigh in; `<coder>_stream_on_<decoder>.max_psnr_diff_db` is the decoder parity."""
    from mobilecodec.codec.frame_coding import LatentDecoder
    from mobilecodec.metrics import psnr_samples, psnr_yuv

    runners = {"cpu": package_engine(package), "htp": package_engine(package, soc, ep="qnn")}
    man = runners["cpu"].manifest
    h, w = man["padded_size"]
    size = tuple(man["original_size"])
    xs = package_frames(video, frames, h, w)
    src = [_frame(x, size) for x in xs]
    enc: dict[str, Any] = {}
    for name, r in runners.items():
        sources = [_Recorder(_latent_encoder(r, x)) for x in xs]
        recs = _code_gop(r.run_iframe, r.run_pframe, sources, intra_period)
        enc[name] = {"frames": [_frame(t, size) for t in recs], "payloads": [s.source.payload() for s in sources],
                     "latents": [s.latents for s in sources]}
    out: dict[str, Any] = {"frames": len(xs), "intra_period": intra_period}
    for name in runners:
        out[f"psnr_{name}"] = [psnr_yuv(s, f)["yuv"] for s, f in zip(src, enc[name]["frames"])]
        out[f"hashes_{name}_encoder"] = [_frame_hash(f) for f in enc[name]["frames"]]
    out["psnr_diff_db"] = [abs(a - b) for a, b in zip(out["psnr_cpu"], out["psnr_htp"])]
    out["max_psnr_diff_db"] = max(out["psnr_diff_db"])
    out["htp_vs_cpu_psnr"] = [psnr_samples(a, b) for a, b in zip(enc["cpu"]["frames"], enc["htp"]["frames"])]
    out["payloads_equal"] = sum(a == b for a, b in zip(enc["cpu"]["payloads"], enc["htp"]["payloads"]))
    for coder, decoder in (("cpu", "htp"), ("htp", "cpu")):
        r = runners[decoder]
        decs = [_Recorder(LatentDecoder(r.model, p, h, w)) for p in enc[coder]["payloads"]]
        recs = _code_gop(r.run_iframe, r.run_pframe, decs, intra_period)
        for d in decs:
            d.source.finish()
        parsed = all(len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))
                     for a, b in zip(enc[coder]["latents"], [d.latents for d in decs]))
        frames_dec = [_frame(t, size) for t in recs]
        drift = [psnr_samples(a, b) for a, b in zip(enc[coder]["frames"], frames_dec)]
        psnr_dec = [psnr_yuv(s, f)["yuv"] for s, f in zip(src, frames_dec)]
        same_stream = [abs(a - b) for a, b in zip(psnr_dec, out[f"psnr_{coder}"])]
        out[f"{coder}_stream_on_{decoder}"] = {
            "parses_identically": parsed, "drift_psnr_db": drift, "psnr_vs_source": psnr_dec,
            # the same stream decoded by both backends: |PSNR(decoder) - PSNR(encoder's own reconstruction)|
            "psnr_diff_db": same_stream, "max_psnr_diff_db": max(same_stream),
            "hashes": [_frame_hash(f) for f in frames_dec],
            "hash_matches_encoder": sum(a == b for a, b in zip(out[f"hashes_{coder}_encoder"],
                                                               [_frame_hash(f) for f in frames_dec]))}
    return out


def decode_drift(package: str | Path, model: Any, video: str | Path, frames: int = 32,
                 intra_period: int = 32) -> dict[str, Any]:
    """One stream, two decoders: the package's graphs on onnxruntime CPU encode `frames` frames;
    the stream is decoded again by the same engine and by `model` in PyTorch (the float model, or
    the aimet simulation of an int8 package). Exact by design: both decoders parse the same latents
    and the onnxruntime decode reproduces its encoder's frame hashes. Not exact across backends
    (float summation order differs between libraries and CPUs): the PyTorch decode drifts from
    the onnxruntime one; per frame we report the PSNR between the two decodes over all their samples
    (the drift curve, `psnr_samples`) and each decode's PSNR-YUV against the source."""
    from mobilecodec.codec.frame_coding import LatentDecoder, run_iframe, run_pframe
    from mobilecodec.metrics import psnr_samples, psnr_yuv

    runner = package_engine(package)
    h, w = runner.manifest["padded_size"]
    size = tuple(runner.manifest["original_size"])
    xs = package_frames(video, frames, h, w)
    src = [_frame(x, size) for x in xs]
    enc = [_Recorder(_latent_encoder(runner, x)) for x in xs]
    enc_frames = [_frame(t, size) for t in _code_gop(runner.run_iframe, runner.run_pframe, enc, intra_period)]
    payloads = [e.source.payload() for e in enc]
    decoded = {}
    for name, m, run_i, run_p in (("onnx", runner.model, runner.run_iframe, runner.run_pframe),
                                  ("torch", model, lambda s: run_iframe(model, s),
                                   lambda b, s: run_pframe(model, b, s))):
        decs = [_Recorder(LatentDecoder(m, p, h, w)) for p in payloads]
        recs = _code_gop(run_i, run_p, decs, intra_period)
        for d in decs:
            d.source.finish()
        parsed = all(len(a.latents) == len(b.latents) and all(np.array_equal(u, v) for u, v in zip(a.latents, b.latents))
                     for a, b in zip(enc, decs))
        decoded[name] = {"frames": [_frame(t, size) for t in recs], "parses_identically": parsed}
    onnx_f, torch_f = decoded["onnx"]["frames"], decoded["torch"]["frames"]
    per_frame = []
    for i in range(len(xs)):
        levels = max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(onnx_f[i], torch_f[i]))
        differ = sum(int((a != b).sum()) for a, b in zip(onnx_f[i], torch_f[i]))
        per_frame.append({"index": i, "type": "I" if i % intra_period == 0 else "P",
                          "drift_psnr_db": psnr_samples(onnx_f[i], torch_f[i]),
                          "max_abs_levels": levels, "samples_differing": differ,
                          "psnr_onnx": psnr_yuv(src[i], onnx_f[i])["yuv"],
                          "psnr_torch": psnr_yuv(src[i], torch_f[i])["yuv"],
                          "onnx_hash_matches_encoder": _frame_hash(onnx_f[i]) == _frame_hash(enc_frames[i])})
    samples = sum(p.size for p in src[0])
    return {"frames": len(xs), "intra_period": intra_period,
            "parses_identically": all(d["parses_identically"] for d in decoded.values()),
            "onnx_hashes_match": sum(f["onnx_hash_matches_encoder"] for f in per_frame),
            "min_drift_psnr_db": min(f["drift_psnr_db"] for f in per_frame),
            "max_psnr_diff_db": max(abs(f["psnr_onnx"] - f["psnr_torch"]) for f in per_frame),
            "max_fraction_differing": max(f["samples_differing"] for f in per_frame) / samples,
            "per_frame": per_frame}
