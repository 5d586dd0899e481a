"""Decode frames/s of mobilenvc as int8 QDQ graphs on onnxruntime CPU vs the same model in
PyTorch float eager, at 720p and 1080p (random-init weights; int8 through export's stand-in
quantizer, onnxruntime quantize_static with random calibration, not aimet)."""

from __future__ import annotations

import tempfile
import time

from _common import emit, parser

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def _decode_fps(engine, payloads, h, w) -> float:
    buf, times = None, []
    for k, pay in enumerate(payloads):
        t0 = time.perf_counter()
        src = engine.decoder_source(pay, h, w)
        out, buf = engine.run_iframe(src) if buf is None else engine.run_pframe(buf, src)
        src.finish()
        if k:  # P-frames only
            times.append(time.perf_counter() - t0)
    return len(times) / sum(times)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sizes", default="720p,1080p")
    p.add_argument("--frames", type=int, default=3, help="1 I-frame then P-frames; P-frames are timed")
    args = p.parse_args()
    import torch

    from export.onnx_export import export_package
    from mobilecodec.codec.video import TorchEngine
    from mobilecodec.io import padded_size
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from runtime.engine import OnnxEngine
    from runtime.int8 import QUANTIZER_LABEL, qdq_graph_files
    from runtime.profiler import profile_frames

    torch.manual_seed(0)
    model = VideoCodec(get_config("mobilenvc")).eval()
    model.update()
    torch_engine = TorchEngine(model)
    res = {"model": "mobilenvc (random init)", "int8": QUANTIZER_LABEL, "results": {}}
    for name in args.sizes.split(","):
        h0, w0 = SIZES[name]
        pw, ph = padded_size(w0, h0)
        xs = profile_frames(ph, pw, args.frames)
        payloads, buf = [], None
        for k, x in enumerate(xs):  # the stream: encoded by PyTorch
            src = torch_engine.encoder_source(x)
            _, buf = torch_engine.run_iframe(src) if k == 0 else torch_engine.run_pframe(buf, src)
            payloads.append(src.payload())
        with tempfile.TemporaryDirectory() as tmp:
            export_package(model, f"{tmp}/pkg", ph, pw)
            files = qdq_graph_files(f"{tmp}/pkg", f"{tmp}/qdq", frames=1)
            ort_fps = _decode_fps(OnnxEngine(f"{tmp}/pkg", graph_files=files), payloads, ph, pw)
        torch_fps = _decode_fps(torch_engine, payloads, ph, pw)
        res["results"][name] = {"padded": [ph, pw], "p_frames": len(payloads) - 1, "ort_int8_fps": ort_fps,
                                "pytorch_float_fps": torch_fps, "speedup": ort_fps / torch_fps}
        print(f"{name} (padded {ph}x{pw}): P-frame decode onnxruntime CPU int8 QDQ {ort_fps:.3f} frames/s, "
              f"PyTorch float eager {torch_fps:.3f} frames/s -> {ort_fps / torch_fps:.2f}x")
    emit(res, args.json)


if __name__ == "__main__":
    main()
