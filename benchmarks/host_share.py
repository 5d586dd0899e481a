"""Share of decode time spent outside the networks (entropy coding, integer hyper-synthesis,
warp, buffer update, glue) for a float package on onnxruntime CPU.

Roofline: the networks are float32 convolutions on onnxruntime, compute bound, so their GMAC/s
(the package graphs' MACs in a frame over the frame's median network time) is related to the conv
roofline of the same precision, backend and thread count measured in the same run (onnxruntime
float32, `_common.roofline`): the fraction says how much of what a plain 3x3 convolution reaches
the codec's graphs reach. The host steps, the other side of the share, are related to the copy
bandwidth per step by benchmarks/host_steps.py."""

from __future__ import annotations

import tempfile

from pathlib import Path

from _common import add_roofline_argument, add_runs_argument, conv_roof, emit, fraction, padded_hw, parser, \
    roofline, roofline_line, run_main

from mobilecodec.cli.common import positive_int, thread_count


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--config", default="mobilenvc")
    p.add_argument("--size", type=padded_hw, default=(256, 448), metavar="HxW",
                   help="padded HxW, multiples of 64 (default 256x448)")
    add_runs_argument(p, "timed P-frames (and I-frames)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first, at least 2")
    p.add_argument("--threads", type=thread_count, default=None, help="host threads (runtime.threads.set_threads)")
    add_roofline_argument(p)
    args = p.parse_args()
    if args.warmup < 2:
        p.error(f"--warmup must be >= 2 (medians of warm frames), got {args.warmup}")
    import torch

    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.export.onnx_export import export_package
    from mobilecodec.runtime import count_onnx
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.profiler import frame_latency
    from mobilecodec.runtime.threads import set_threads

    set_threads(args.threads)

    h, w = args.size
    torch.manual_seed(0)
    model = VideoCodec(get_config(args.config))
    model.update()
    with tempfile.TemporaryDirectory() as tmp:
        export_package(model, f"{tmp}/pkg", h, w)
        lat = frame_latency(OnnxEngine(f"{tmp}/pkg"), args.runs, args.warmup)
        pkg = Path(tmp) / "pkg"
        graph_macs = {g: count_onnx(pkg / spec["file"]).macs for g, spec in load_manifest(pkg)["graphs"].items()}
    from mobilecodec.runtime.threads import get_threads

    # the conv roofline at the engine's thread count (None: the libraries' defaults, as the engine's)
    roof = None if args.no_roofline else roofline(get_threads(), copy=False)
    roof_rate = conv_roof(roof, "float32")

    r = {"config": args.config, "size": [h, w], "runs": args.runs, "warmup": args.warmup, "threads": get_threads()}
    for ftype in ("I", "P"):
        fr = lat["decode"][ftype]
        host = {k: v["median_ms"] for k, v in fr["steps"].items() if k.startswith("host")}
        r[ftype] = {"frame_ms": fr["frame"]["median_ms"], "frame_min_ms": fr["frame"]["min_ms"],
                    "frame_max_ms": fr["frame"]["max_ms"], "network_ms": fr["network_ms_median"],
                    "host_share": fr["host_share"], "host_steps_ms": host}
        macs = sum(graph_macs.get(k, 0) for k in fr["steps"] if not k.startswith("host"))  # the graphs in a frame
        rate = macs / (fr["network_ms_median"] / 1e3) / 1e9
        r[ftype].update({"network_gmacs": macs / 1e9, "network_gmacs_per_s": rate,
                         "network_fraction_of_float32_roofline": fraction(rate, roof_rate)})
        print(f"decode {ftype}-frame {h}x{w} ({args.config}, float, onnxruntime CPU): "
              f"{fr['frame']['median_ms']:.1f} ms, networks {fr['network_ms_median']:.1f} ms, host share "
              f"{100 * fr['host_share']:.1f}% (" + ", ".join(f"{k[6:]} {v:.1f} ms" for k, v in host.items()) + ")")
    r["roofline"] = roof
    print(roofline_line(roof))
    if roof_rate:
        print("networks against the onnxruntime float32 conv roofline: " + ", ".join(
            f"{t}-frame {r[t]['network_gmacs_per_s']:.1f} GMAC/s = {r[t]['network_fraction_of_float32_roofline']:.2f}"
            for t in ("I", "P")))
    emit(r, args.json)


if __name__ == "__main__":
    run_main(main)
