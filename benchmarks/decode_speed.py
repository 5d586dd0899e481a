"""int8 onnxruntime vs PyTorch float, decoder and encoder, judged against this machine's conv
roofline measured in the same run.

Fair by construction: both sides decode the same stream (encoded once by PyTorch float); both run
with the same thread count (`mobilecodec.runtime.threads.set_threads`: torch, onnxruntime sessions, integer
hyper-synthesis kernels); sessions are warm (the I-frame and `--warmup` P-frames run before
timing); the int8 graphs are real aimet graphs (`mobilecodec ptq` + `mobilecodec export --int8`,
W8A8 and the W8A16-receiver preset), cached in `--workdir` so reruns skip them. Per side and
frame type: median and spread of the frame time and of each step (networks, integer
hyper-synthesis, warp, entropy coding, the encoder's motion search, glue = the rest of the
frame), the host share
(1 - median network time / median frame time), the network GMAC/s and its
fraction of the int8 conv roofline, and int8 fps / PyTorch fps against the ideal int8/fp32 ratio
(onnxruntime int8 conv GMAC/s over PyTorch fp32 conv GMAC/s). Weights are random (mobilenvc has
no trained checkpoint); the networks' speed does not depend on them, the entropy coding's
depends on the symbols: with these weights every latent sits at the smallest, certain scale, which
stream format 4 does not range-code, so the entropy step here is mostly the hyper-latents' (the
run prints the share; a trained tiny_b0.0064 I-frame latent has 82 % there).

"lockstep decode" (and "lockstep encode") judges the fps ratio on a shared machine: every side
decodes (encodes) the same P-frame in turn, then the int8 and the PyTorch roofline convolutions run
(best of 3 calls), round after round;
each round gives int8 fps / PyTorch fps from one machine state, and the report gives its median
over the rounds against the run's ideal (the roofline above), and, beside it, the median of each
round's ratio against an ideal from that round's conv calls (short calls after a long frame: they
read low or high with the machine, so that figure is a check, not the verdict). The per-kind rows
time each side alone, minutes apart; on a busy host the two PyTorch rates moved 2x between runs.

"pipelined decode" is the decoder as `mobilecodec decode` runs it (`codec.video.decode_video`):
the next frame's entropy decoding and integer hyper-synthesis (which depend only on its payload)
run on a worker thread while this frame's networks and warp run; its frame time is the period
between frame completions, so its host share is 1 - networks / period.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import CONV_SIZE, emit, parser, run_main

from mobilecodec.cli.common import choice_list, parse_hw, positive_int, thread_count, work_folder

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}
PRESETS = ("w8a8", "w8a16rx")  # int8 packages: W8A8, and W8A16 with the receiver at 16 bits
STEPS = ("networks", "hyper-synthesis", "warp", "entropy coding", "motion search", "glue")
KINDS = ("decode", "pipelined decode", "encode")


def _cli(*args: Any) -> None:
    """Run a `mobilecodec` command (the real CLI); exit with its message if it fails."""
    cmd = [sys.executable, "-m", "mobilecodec", *map(str, args)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr.strip()[-2000:]}")
    print(f"  {' '.join(map(str, args))}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


def prepare(workdir: Path, config: str, ptq_steps: int, presets: list[str], sizes: dict) -> dict:
    """Checkpoint, aimet PTQ per preset, int8 export per preset and size; cached in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / f"{config}.pt"
    if not ckpt.exists():
        _cli("init", "--config", config, "-o", ckpt)
    pkgs: dict = {}
    for preset in presets:
        q = workdir / f"ptq_{config}_{preset}_s{ptq_steps}"  # keyed by every input: a rerun never reuses another's
        if not (q / "ptq.json").exists():
            extra = ["--w8a16", "receiver"] if preset == "w8a16rx" else []
            _cli("ptq", "--checkpoint", ckpt, "--data", "bikes", "-o", q, "--steps", ptq_steps, "--batch", 1,
                 "--crop", "128x128", "--no-progress", *extra)
        for name, (oh, ow, ph, pw) in sizes.items():
            pkg = workdir / f"pkg_{config}_{preset}_s{ptq_steps}_{ph}x{pw}"
            if not (pkg / "manifest.json").exists():
                _cli("export", "--checkpoint", ckpt, "--size", f"{ph}x{pw}", "--original-size", f"{oh}x{ow}",
                     "--int8", q, "-o", pkg)
            pkgs[(preset, name)] = pkg
    return {"checkpoint": ckpt, "packages": pkgs}


class TimedTorchEngine:
    """PyTorch float on the codec's own frame functions (`codec.frame_coding.run_iframe/run_pframe`), with
    the ONNX engine's step clock: forward hooks time each network stage, the warp is timed by
    wrapping the model's warp, entropy coding and the integer hyper-synthesis by the sources."""

    def __init__(self, model: Any) -> None:
        from mobilecodec.runtime.engine import StepClock

        self.model, self.clock = model, StepClock()
        starts: dict[str, float] = {}
        for name, mod in model.stages().items():
            mod.register_forward_pre_hook(lambda m, a, _n=name: starts.__setitem__(_n, time.perf_counter()))
            mod.register_forward_hook(lambda m, a, o, _n=name: self._add(_n, time.perf_counter() - starts[_n]))
        warp = model.warp

        def timed_warp(*a: Any) -> Any:
            with self.clock.step("host: warp"):
                return warp(*a)
        model.warp = timed_warp

    def _add(self, name: str, dt: float) -> None:
        self.clock.current[name] = self.clock.current.get(name, 0.0) + dt

    def latent_encoder(self, x: Any) -> Any:
        from mobilecodec.codec.frame_coding import LatentEncoder

        return LatentEncoder(self.model, x, clock=self.clock)

    def latent_decoder(self, payload: bytes, h: int, w: int) -> Any:
        from mobilecodec.codec.frame_coding import LatentDecoder

        return LatentDecoder(self.model, payload, h, w, clock=self.clock)

    def run_iframe(self, src: Any) -> Any:
        from mobilecodec.codec.frame_coding import run_iframe

        out = run_iframe(self.model, src)
        self.clock.end_frame()
        return out

    def run_pframe(self, buf: Any, src: Any) -> Any:
        from mobilecodec.codec.frame_coding import run_pframe

        out = run_pframe(self.model, buf, src)
        self.clock.end_frame()
        return out


@contextmanager
def _latent_tally():
    """Counts the latent symbols the Gaussian conditional codes while active, and those of them at
    a certain table (not range-coded since stream format 4): how representative the stream's
    entropy step is (random weights can put every latent at the smallest scale)."""
    import numpy as np

    from mobilecodec.entropy.gaussian import GaussianConditional

    tally = {"symbols": 0, "certain": 0}
    encode = GaussianConditional.encode

    def counting(self, enc, symbols, indices):
        idx = np.asarray(indices).reshape(-1)
        tally["symbols"] += idx.size
        tally["certain"] += int(self.coding_tables().certain[idx].sum())
        return encode(self, enc, symbols, indices)

    GaussianConditional.encode = counting
    try:
        yield tally
    finally:
        GaussianConditional.encode = encode


def _split(wall: float, rec: dict[str, float]) -> dict[str, float]:
    """One frame's wall time split into the report's steps (seconds)."""
    net = sum(v for k, v in rec.items() if not k.startswith("host"))
    s = {"networks": net, "hyper-synthesis": rec.get("host: integer hyper-synthesis", 0.0),
         "warp": rec.get("host: warp", 0.0), "entropy coding": rec.get("host: entropy coding", 0.0),
         "motion search": rec.get("host: motion search", 0.0)}  # the encoder's block matching
    s["glue"] = wall - sum(s.values())  # buffer update, conversions, Python between steps
    s["frame"] = wall
    return s


def _stats(v: list[float]) -> dict[str, float]:
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "max_ms": 1e3 * max(v),
            "iqr_ms": 1e3 * (q[2] - q[0]), "n": len(v)}


def run_side(engine: Any, xs: list, payloads: list[bytes], h: int, w: int, warmup: int,
             graph_macs: dict[str, int]) -> dict:
    """Encode `xs` (I then P-frames) and decode `payloads` on `engine`; the first 1 + `warmup`
    frames of each are untimed. Per kind: P-frame step statistics, fps and network GMAC/s."""
    from concurrent.futures import ThreadPoolExecutor

    res: dict = {}
    with ThreadPoolExecutor(1) as pool:
        for kind in KINDS:
            res[kind] = _run_kind(engine, kind, pool, xs, payloads, h, w, warmup, graph_macs)
    return res


def _run_kind(engine: Any, kind: str, pool: Any, xs: list, payloads: list[bytes], h: int, w: int,
              warmup: int, graph_macs: dict[str, int]) -> dict:
    """One kind of `run_side` (decode, pipelined decode or encode): P-frame statistics."""

    def prefetched(k: int) -> Any:
        return engine.latent_decoder(payloads[k], h, w).prefetch(k == 0)

    buf, frames = None, []
    pending = pool.submit(prefetched, 0) if kind == "pipelined decode" else None
    t_prev = time.perf_counter()
    for k in range(len(payloads)):
        engine.clock.current = {}
        t0 = time.perf_counter()
        if kind == "decode":
            src = engine.latent_decoder(payloads[k], h, w)
        elif kind == "pipelined decode":  # as decode_video: the next frame's latents on a worker
            src = pending.result()
            pending = pool.submit(prefetched, k + 1) if k + 1 < len(payloads) else None
        else:
            src = engine.latent_encoder(xs[k])
        _, buf = engine.run_iframe(src) if buf is None else engine.run_pframe(buf, src)
        if kind != "encode":
            src.finish()
        t1 = time.perf_counter()
        # pipelined: the frame period (completion to completion), which includes waiting for
        # the worker when it is the slower side
        wall = t1 - (t_prev if kind == "pipelined decode" else t0)
        t_prev = t1
        if k > warmup:
            rec = engine.clock.frames[-1]
            frames.append((_split(wall, rec), sum(graph_macs.get(n, 0) for n in rec)))
    steps = {s: _stats([f[s] for f, _ in frames]) for s in (*STEPS, "frame")}
    net = statistics.median(f["networks"] for f, _ in frames)
    macs = frames[0][1]
    med = steps["frame"]["median_ms"] / 1e3
    return {"P": {"steps": steps, "fps": 1.0 / med, "network_gmacs": macs / 1e9,
                  "network_gmacs_per_s": macs / net / 1e9, "host_share": 1.0 - net / med}}


def run_lockstep(kind: str, engines: dict[str, Any], xs: list, payloads: list[bytes], h: int, w: int,
                 warmup: int, probe: dict[str, Any], ideal_run: float) -> dict:
    """Decode `payloads` (kind "decode") or encode `xs` ("encode") on every engine in lockstep
    (frame k on each, then the best of 3 calls of each `probe` conv, per round); the first 1 +
    `warmup` rounds are untimed. Per int8 side: fps / PyTorch fps per round (median, spread), its
    median over `ideal_run`, and the per-round ratios over the round's own ideal."""
    from mobilecodec.runtime.profiler import timed_runs

    bufs: dict[str, Any] = {k: None for k in engines}
    rounds: list[dict[str, float]] = []
    for k in range(len(payloads)):
        row: dict[str, float] = {}
        for label, eng in engines.items():
            t0 = time.perf_counter()
            src = eng.latent_decoder(payloads[k], h, w) if kind == "decode" else eng.latent_encoder(xs[k])
            _, bufs[label] = eng.run_iframe(src) if bufs[label] is None else eng.run_pframe(bufs[label], src)
            if kind == "decode":
                src.finish()
            row[label] = time.perf_counter() - t0
        for name in ("int8_qdq", "pytorch_float32"):  # best of 3, as the roofline takes the best round
            row[f"probe {name}"] = min(timed_runs(probe[name], 3))
        if k > warmup:
            rounds.append(row)
    ref = "pytorch float32"
    out: dict = {"rounds": len(rounds), "frame_ms": {k: _stats([r[k] for r in rounds]) for k in engines}}
    ideal = [r["probe pytorch_float32"] / r["probe int8_qdq"] for r in rounds]
    out["ideal"] = _spread(ideal)
    out["sides"] = {}
    for label in engines:
        if label != ref:
            ratio = [r[ref] / r[label] for r in rounds]
            out["sides"][label] = {"fps_over_pytorch": _spread(ratio),
                                   "fps_over_pytorch_vs_ideal": statistics.median(ratio) / ideal_run,
                                   "fps_over_pytorch_vs_round_ideal": _spread([a / b for a, b in zip(ratio, ideal)])}
    return out


def _spread(v: list[float]) -> dict[str, float]:
    """Median and range of per-round ratios."""
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--config", default="mobilenvc")
    p.add_argument("--sizes", type=choice_list(SIZES), default=list(SIZES), help="comma list of 720p, 1080p")
    p.add_argument("--size", type=parse_hw, default=None, metavar="HxW",
                   help="one custom frame size instead of --sizes (e.g. 256x448 for a quick check)")
    p.add_argument("--threads", type=thread_count, default=2, help="threads for both sides (default 2)")
    p.add_argument("--presets", type=choice_list(PRESETS), default=list(PRESETS),
                   help="int8 packages, comma-separated: w8a8, w8a16rx (receiver at 16 bits) (default both)")
    p.add_argument("--frames", type=int, default=8, help="timed P-frames per side (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed P-frames after the I-frame (default 2)")
    p.add_argument("--workdir", type=work_folder, default="out/bench_decode_speed", help="cache of checkpoint, PTQ and packages")
    p.add_argument("--ptq-steps", type=positive_int, default=4)
    p.add_argument("--no-pytorch", action="store_true", help="skip the PyTorch float side")
    args = p.parse_args()
    if args.frames < 8 or args.warmup < 2:
        p.error("a fair run needs --frames >= 8 and --warmup >= 2")
    from mobilecodec.models.configs import get_config

    get_config(args.config)  # an unknown name: one line, before `init` fails in a subprocess (3 lines, exit 1)
    from mobilecodec.io import padded_size
    from mobilecodec.runtime.threads import set_threads

    set_threads(args.threads)
    if args.size:
        oh, ow = args.size
        if oh % 2 or ow % 2:  # refused by export after the init and the PTQ had run
            p.error(f"--size {oh}x{ow}: a 4:2:0 frame has an even height and width")
        sizes = {f"{oh}x{ow}": (oh, ow)}
    else:
        sizes = {n: SIZES[n] for n in args.sizes}
    sizes = {n: (oh, ow, *padded_size(ow, oh)[::-1]) for n, (oh, ow) in sizes.items()}
    presets = args.presets
    print("preparing int8 packages (cached in --workdir) ...", file=sys.stderr)
    prep = prepare(Path(args.workdir), args.config, args.ptq_steps, presets, sizes)

    import torch

    from conv_gmacs import conv_functions, conv_rates
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.runtime import count_onnx
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.profiler import profile_frames

    print("measuring the conv roofline ...", file=sys.stderr)
    # the benchmarks' roofline conv (_common.CONV_SIZE: 1080p at 1/4, long enough that thread wake-ups
    # do not dominate), built here rather than by _common.roofline: its functions are timed again in
    # the lockstep rounds
    probe, conv_macs = conv_functions(size=CONV_SIZE, threads=args.threads)
    roof = conv_rates(size=CONV_SIZE, threads=args.threads, functions=(probe, conv_macs))
    # the issue's ideal: the two peak rates (best rounds: what the machine can reach); the same from
    # the rounds' medians beside it, since the fps ratio it judges is a ratio of medians
    ideal = roof["int8_qdq_gmacs_per_s"] / roof["pytorch_float32_gmacs_per_s"]
    ideal_median = roof["int8_qdq_median_gmacs_per_s"] / roof["pytorch_float32_median_gmacs_per_s"]
    res: dict = {"config": args.config, "threads": args.threads, "timed_p_frames": args.frames,
                 "warmup_p_frames": args.warmup, "roofline": roof, "ideal_int8_over_pytorch": ideal,
                 "ideal_int8_over_pytorch_from_medians": ideal_median,
                 "int8": "aimet PTQ (mobilecodec ptq) exported as QDQ (mobilecodec export --int8)", "sizes": {}}
    model, _ = load_checkpoint(prep["checkpoint"])
    model.eval()
    torch_engine = TimedTorchEngine(model)
    n = 1 + args.warmup + args.frames
    for name, (oh, ow, ph, pw) in sizes.items():
        xs = profile_frames(ph, pw, n)
        payloads, buf = [], None  # the stream both sides decode: PyTorch float's
        with torch.no_grad(), _latent_tally() as tally:
            for k, x in enumerate(xs):
                src = torch_engine.latent_encoder(x)
                _, buf = torch_engine.run_iframe(src) if k == 0 else torch_engine.run_pframe(buf, src)
                payloads.append(src.payload())
        first = prep["packages"][(presets[0], name)]
        from mobilecodec.export.manifest import load_manifest

        man = load_manifest(first)
        macs = {g: count_onnx(first / spec["file"]).macs for g, spec in man["graphs"].items()}
        out: dict = {"padded": [ph, pw], "sides": {}, "stream_bytes": sum(map(len, payloads)),
                     "latent_symbols": tally["symbols"], "latent_symbols_certain": tally["certain"]}
        sides = [(f"onnxruntime int8 {pr}", lambda pr=pr: OnnxEngine(prep["packages"][(pr, name)], threads=args.threads))
                 for pr in presets]
        if not args.no_pytorch:
            sides.append(("pytorch float32", lambda: torch_engine))
        engines = {label: make() for label, make in sides}
        for label, eng in engines.items():
            print(f"{name}: {label} ...", file=sys.stderr)
            with torch.no_grad():
                out["sides"][label] = run_side(eng, xs, payloads, ph, pw, args.warmup, macs)
        if "pytorch float32" in engines:
            for kind in ("decode", "encode"):
                print(f"{name}: every side in lockstep, {kind} ...", file=sys.stderr)
                with torch.no_grad():
                    out[f"lockstep {kind}"] = run_lockstep(kind, engines, xs, payloads, ph, pw, args.warmup, probe,
                                                           ideal)
        for label, side in out["sides"].items():
            for kind in KINDS:
                r = side[kind]["P"]
                r["fraction_of_int8_roofline"] = r["network_gmacs_per_s"] / roof["int8_qdq_gmacs_per_s"]
                if label == "pytorch float32":  # its own bound: PyTorch's fp32 conv, not onnxruntime's int8
                    r["fraction_of_pytorch_float32_roofline"] = (r["network_gmacs_per_s"]
                                                                 / roof["pytorch_float32_gmacs_per_s"])
                if "pytorch float32" in out["sides"] and label != "pytorch float32":
                    ratio = r["fps"] / out["sides"]["pytorch float32"][kind]["P"]["fps"]
                    r["fps_over_pytorch"] = ratio
                    r["fps_over_pytorch_vs_ideal"] = ratio / ideal
        res["sizes"][name] = out
        _print(name, out, roof, ideal, ideal_median)
    emit(res, args.json)


def _print(name: str, out: dict, roof: dict, ideal: float, ideal_median: float) -> None:
    from conv_gmacs import default_kernels_line

    print(f"\n{name} (padded {out['padded'][0]}x{out['padded'][1]}); conv roofline (best of {roof['rounds']} "
          f"interleaved rounds): onnxruntime int8 "
          f"{roof['int8_qdq_gmacs_per_s']:.1f}, fp32 {roof['float32_gmacs_per_s']:.1f}, PyTorch fp32 "
          f"{roof['pytorch_float32_gmacs_per_s']:.1f} GMAC/s -> ideal int8/PyTorch {ideal:.2f}x "
          f"(from the rounds' medians: {ideal_median:.2f}x)")
    print(default_kernels_line(roof))
    n, c = out["latent_symbols"], out["latent_symbols_certain"]
    print(f"stream: {out['stream_bytes']} bytes, {n} latent symbols, {100 * c / max(n, 1):.1f} % of them at the "
          f"certain smallest scale and not range-coded (a trained tiny_b0.0064 I-frame latent: 82 %, "
          f"benchmarks/entropy_speed.py)")
    for kind in KINDS:
        print(f"P-frame {kind}: median ms [min-max]" + (" (host steps of the next frame run on a worker thread "
              "and are not in this row's step columns; glue = frame period - networks - warp)"
              if kind == "pipelined decode" else ""))
        print(f"  {'side':28s} " + " ".join(f"{s:>20s}" for s in (*STEPS, "frame")) +
              f" {'host':>5s} {'fps':>6s} {'net GMAC/s':>10s} {'of int8 roof':>12s} {'vs PyT':>6s} {'of ideal':>8s}")
        for label, side in out["sides"].items():
            r = side[kind]["P"]
            cells = " ".join(f"{r['steps'][s]['median_ms']:7.1f} [{r['steps'][s]['min_ms']:5.1f}-"
                             f"{r['steps'][s]['max_ms']:5.1f}]" for s in (*STEPS, "frame"))
            extra = (f" {r['fps_over_pytorch']:6.2f} {r['fps_over_pytorch_vs_ideal']:8.2f}"
                     if "fps_over_pytorch" in r else
                     f" (networks at {r['fraction_of_pytorch_float32_roofline']:.2f} of the PyTorch fp32 roofline)"
                     if "fraction_of_pytorch_float32_roofline" in r else "")
            print(f"  {label:28s} {cells} {r['host_share']:5.0%} {r['fps']:6.2f} {r['network_gmacs_per_s']:10.1f} "
                  f"{r['fraction_of_int8_roofline']:12.2f}{extra}")
    for kind in ("decode", "encode"):
        lock = out.get(f"lockstep {kind}")
        if not lock:
            continue
        i = lock["ideal"]
        print(f"P-frame {kind} in lockstep ({lock['rounds']} rounds: each side {kind}s the frame, then each "
              f"roofline conv, best of 3 calls; the rounds' own ideal {i['median']:.2f}x [{i['min']:.2f}-{i['max']:.2f}])")
        for label, t in lock["frame_ms"].items():
            r = lock["sides"].get(label)
            q = r and r["fps_over_pytorch_vs_round_ideal"]
            extra = (f"; fps / PyTorch {r['fps_over_pytorch']['median']:.2f} [{r['fps_over_pytorch']['min']:.2f}-"
                     f"{r['fps_over_pytorch']['max']:.2f}] = {r['fps_over_pytorch_vs_ideal']:.2f} of the ideal "
                     f"{ideal:.2f}x (of the rounds' own: {q['median']:.2f} [{q['min']:.2f}-{q['max']:.2f}])") if r else ""
            print(f"  {label:28s} frame {t['median_ms']:7.1f} ms [{t['min_ms']:.1f}-{t['max_ms']:.1f}]{extra}")


if __name__ == "__main__":
    run_main(main)
