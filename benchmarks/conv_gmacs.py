"""Convolution micro-benchmark (the machine's conv roofline): GMAC/s of a 3x3 convolution as int8
QDQ and float32 on onnxruntime CPU and as float32 in PyTorch eager, and the fraction of the int8
rate the mobilenvc decoder needs at 1080p and 30 fps. `conv_rates` is reused by decode_speed.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _common import CONV_SIZE, add_runs_argument, emit, interleaved_times, parser, run_main

from mobilecodec.cli.common import parse_hw, positive_int, thread_count

from mobilecodec.cpu import u8s8_exact


def _ort_session(path: Path, threads: int | None, exact_int8: bool = True):
    import onnxruntime as ort

    from mobilecodec.runtime.threads import session_options

    return ort.InferenceSession(str(path), session_options(threads, exact_int8=exact_int8),
                                providers=["CPUExecutionProvider"])


def conv_functions(channels: int = 64, size: tuple[int, int] = CONV_SIZE,
                   threads: int | None = None) -> tuple[dict, int]:
    """One call each of a `channels` -> `channels` 3x3 conv on a `size` feature map, as
    {"int8_qdq": onnxruntime int8 QDQ (export's quantizer, exact kernels), "float32": onnxruntime
    float32, "pytorch_float32": PyTorch eager, and, where u8 x s8 is not exact, "int8_default":
    onnxruntime's default int8 kernels}, with `threads` threads; and the MACs of one call."""
    import torch

    from mobilecodec.export.qdq import quantize_graph
    from mobilecodec.runtime import count_onnx

    h, w = size
    c = channels
    if threads:
        torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval().requires_grad_(False)  # no autograd in the timed calls
    x = torch.rand(1, c, h, w)
    with tempfile.TemporaryDirectory() as tmp:  # the sessions keep the graphs in memory
        f32 = Path(tmp) / "conv.onnx"
        torch.onnx.export(conv, (x,), str(f32), input_names=["x"], opset_version=17, dynamo=False)
        feeds = {"x": x.numpy()}
        qdq = quantize_graph(f32, Path(tmp) / "conv.qdq.onnx", [feeds])
        macs = count_onnx(qdq).macs
        assert macs == count_onnx(f32).macs == h * w * c * c * 9
        exact, fp32 = _ort_session(qdq, threads), _ort_session(f32, threads)
        fast = None if u8s8_exact() else _ort_session(qdq, threads, exact_int8=False)

    fns = {"int8_qdq": lambda: exact.run(None, feeds), "float32": lambda: fp32.run(None, feeds),
           "pytorch_float32": lambda: conv(x)}
    if fast is not None:  # what onnxruntime's default (saturating) u8 x s8 kernels would run at
        fns["int8_default"] = lambda: fast.run(None, feeds)
    return fns, macs


def conv_rates(channels: int = 64, size: tuple[int, int] = CONV_SIZE, runs: int = 10,
               threads: int | None = None, functions: tuple[dict, int] | None = None) -> dict:
    """GMAC/s of `conv_functions`' convolutions timed in `runs` interleaved rounds. The
    `*_gmacs_per_s` keys are the best round (a roofline is what the machine can reach),
    `*_median_gmacs_per_s` the median. `functions`: `conv_functions(channels, size, threads)`
    already built, for a caller that times them again."""
    import statistics

    import torch

    h, w = size
    c = channels
    fns, macs = functions or conv_functions(channels, size, threads)
    times = interleaved_times(fns, runs)
    best = {k: macs / min(t) / 1e9 for k, t in times.items()}
    median = {k: macs / statistics.median(t) / 1e9 for k, t in times.items()}
    default = None
    if "int8_default" in fns:
        ref, got = fns["int8_qdq"]()[0], fns["int8_default"]()[0]
        default = {"gmacs_per_s": best["int8_default"], "median_gmacs_per_s": median["int8_default"],
                   "max_abs_difference_of_output_range": float(np.abs(ref - got).max() / np.ptp(ref))}
    int8, fp32_rate, torch_fp32 = best["int8_qdq"], best["float32"], best["pytorch_float32"]
    return {"conv": f"{c}->{c} 3x3 on {h}x{w}", "macs": macs, "threads": threads, "torch_threads": torch.get_num_threads(),
            "rounds": runs,
            "int8_qdq_gmacs_per_s": int8, "float32_gmacs_per_s": fp32_rate, "pytorch_float32_gmacs_per_s": torch_fp32,
            "int8_qdq_median_gmacs_per_s": median["int8_qdq"], "float32_median_gmacs_per_s": median["float32"],
            "pytorch_float32_median_gmacs_per_s": median["pytorch_float32"],
            "int8_over_float32": int8 / fp32_rate, "int8_over_pytorch_float32": int8 / torch_fp32,
            "int8_default_kernels": default}


def default_kernels_line(r: dict) -> str:
    """What the int8 rate means on this CPU: exact, and what onnxruntime's default kernels would do."""
    d = r["int8_default_kernels"]
    if d is None:
        return "int8: onnxruntime's u8 x s8 kernels are exact on this CPU (VNNI)"
    return (f"int8: exact u8 x u8 kernels (session.x64quantprecision); onnxruntime's default u8 x s8 kernels "
            f"would run {d['gmacs_per_s']:.1f} GMAC/s but saturate without VNNI (here {d['max_abs_difference_of_output_range']:.1%} "
            f"of the output range off at worst): not used")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--channels", type=positive_int, default=64, help="input and output channels (default 64)")
    p.add_argument("--size", type=parse_hw, default=CONV_SIZE, metavar="HxW",
                   help=f"feature map HxW (default {CONV_SIZE[0]}x{CONV_SIZE[1]}: 1080p at 1/4, the other benchmarks' "
                        "roofline; at 136x240 a call is 2-4 ms and thread wake-ups dominate)")
    add_runs_argument(p, "interleaved timed rounds", default=10)
    p.add_argument("--threads", type=thread_count, default=2,
                   help="threads for every backend, the same on all (default 2)")
    args = p.parse_args()
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.runtime.codec_profile import count_codec

    h, w = args.size
    r = conv_rates(args.channels, (h, w), args.runs, args.threads)
    int8, fp32 = r["int8_qdq_gmacs_per_s"], r["float32_gmacs_per_s"]
    cx = count_codec(VideoCodec(get_config("mobilenvc")), 1080, 1920)
    dec_kmacs = cx.rows["Receiver"]["Pframe total"][1]
    need = dec_kmacs * 1e3 * 1080 * 1920 * 30 / 1e9
    r.update({"decoder_kmacs_per_px": dec_kmacs, "decoder_gmacs_per_s_at_1080p30": need,
              "decoder_fraction_of_int8_rate": need / int8, "decoder_fps_at_int8_rate": int8 / (need / 30)})
    print(f"{r['conv']}, best of {r['rounds']} interleaved rounds (median): int8 QDQ {int8:.2f} "
          f"({r['int8_qdq_median_gmacs_per_s']:.2f}) GMAC/s, float32 {fp32:.2f} ({r['float32_median_gmacs_per_s']:.2f}) "
          f"GMAC/s (int8/float {int8 / fp32:.2f}x), PyTorch float32 {r['pytorch_float32_gmacs_per_s']:.2f} "
          f"({r['pytorch_float32_median_gmacs_per_s']:.2f}) GMAC/s")
    print(default_kernels_line(r))
    print(f"mobilenvc P-frame decoder: {dec_kmacs:.2f} kMACs/px -> {need:.1f} GMAC/s at 1080p30 = "
          f"{need / int8:.1f}x this machine's int8 conv rate ({r['decoder_fps_at_int8_rate']:.2f} frames/s at best)")
    emit(r, args.json)


if __name__ == "__main__":
    run_main(main)
