"""Share of decode time spent outside the networks (entropy coding, integer hyper-synthesis,
warp, buffer update, glue) for a float package on onnxruntime CPU."""

from __future__ import annotations

import tempfile

from _common import add_runs_argument, emit, padded_hw, parser, run_main

from mobilecodec.cli.common import positive_int


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--config", default="mobilenvc")
    p.add_argument("--size", type=padded_hw, default=(256, 448), metavar="HxW",
                   help="padded HxW, multiples of 64 (default 256x448)")
    add_runs_argument(p, "timed P-frames (and I-frames)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first, at least 2")
    p.add_argument("--threads", type=positive_int, default=None, help="host threads (runtime.threads.set_threads)")
    args = p.parse_args()
    if args.warmup < 2:
        p.error(f"--warmup must be >= 2 (medians of warm frames), got {args.warmup}")
    import torch

    from mobilecodec.export.onnx_export import export_package
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
    from mobilecodec.runtime.threads import get_threads

    r = {"config": args.config, "size": [h, w], "runs": args.runs, "warmup": args.warmup, "threads": get_threads()}
    for ftype in ("I", "P"):
        fr = lat["decode"][ftype]
        host = {k: v["median_ms"] for k, v in fr["steps"].items() if k.startswith("host")}
        r[ftype] = {"frame_ms": fr["frame"]["median_ms"], "frame_min_ms": fr["frame"]["min_ms"],
                    "frame_max_ms": fr["frame"]["max_ms"], "network_ms": fr["network_ms_median"],
                    "host_share": fr["host_share"], "host_steps_ms": host}
        print(f"decode {ftype}-frame {h}x{w} ({args.config}, float, onnxruntime CPU): "
              f"{fr['frame']['median_ms']:.1f} ms, networks {fr['network_ms_median']:.1f} ms, host share "
              f"{100 * fr['host_share']:.1f}% (" + ", ".join(f"{k[6:]} {v:.1f} ms" for k, v in host.items()) + ")")
    emit(r, args.json)


if __name__ == "__main__":
    run_main(main)
