"""Training speed on this CPU: steps/s of one recipe phase's training step under each option that
might pay (channels_last, bf16 autocast where the CPU has native bf16, torch.compile, 1 vs 2
threads) and the cost of data sampling, measured in one run with the variants interleaved so that
the shared machine's noise hits all of them alike.

Roofline: a training step is convolutions forward and backward, compute bound, so each variant's
GMAC/s (the step's conv and matmul MACs, forward and backward, counted once by
torch.utils.flop_counter on an fp32 step, over the variant's median step time) is related to the
PyTorch float32 conv roofline at the variant's thread count (1, or 2 for threads2), measured in the
same run (`_common.roofline`). The bf16 variants are held to the float32 rate too (no bf16 conv
roofline is measured): above 1 would mean bf16 beats the float32 conv rate. The rest of a step
(Adam, the rate terms, data movement: no MACs counted) takes time too and lowers every fraction
alike.

    python benchmarks/train_speed.py --phase iframe --rounds 8 --steps 10 --json out.json
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from _common import MIN_RUNS, add_roofline_argument, conv_roof, emit, fraction, parser, roofline, roofline_line, \
    run_main

from mobilecodec.cli.common import choice_list, positive_int
from mobilecodec.cpu import bf16_native


#: the variants `_variant` builds (any other name would be measured as fp32 under that name)
VARIANTS = ("fp32", "channels_last", "bf16", "bf16+channels_last", "compile", "threads2")


def _variant(name: str, phase, recipe, threads: int):
    """(model, loss module, step function) for one variant."""
    import torch

    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.recipe import phase_options
    from mobilecodec.train.trainer import build_model

    opts = dataclasses.replace(phase_options(recipe, phase, Path("unused")), init=None)  # fresh weights
    torch.manual_seed(0)
    model = build_model(opts).train()
    if "channels_last" in name:
        model = model.to(memory_format=torch.channels_last)
    loss_mod = GopLoss(model, opts.beta, opts.stage)
    fwd = torch.compile(loss_mod) if name == "compile" else loss_mod
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(frames, depth: int | None = None):
        """One training step; `depth`: the rollout depth (the same for every variant)."""
        torch.set_num_threads(threads)
        if "channels_last" in name:
            frames = frames.contiguous(memory_format=torch.channels_last) if frames.dim() == 4 else \
                torch.stack([f.contiguous(memory_format=torch.channels_last) for f in frames])
        if "bf16" in name:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = fwd(frames, rollout_depth=depth)
        else:
            loss, _ = fwd(frames, rollout_depth=depth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    return step


def _warmup_steps(batches: list, depths: list[int | None], compiled: bool) -> list[tuple]:
    """The untimed steps before a variant's rounds: two (the first batch twice for --steps 1), and for
    torch.compile one more of each other rollout depth the rounds run: a new depth may recompile the
    graph, which the timed rounds then paid for (an audit found the rollout phase's 0-12 depths warmed
    two). Not measured: past torch's recompile limit a depth runs eager, in the warm-up as in the rounds."""
    pairs = list(zip(batches, depths))
    warm = (pairs * 2)[:2]
    if compiled:
        seen = {d for _, d in warm}
        for b, d in pairs:
            if d not in seen:
                warm.append((b, d))
                seen.add(d)
    return warm


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--recipe", default="tiny-cpu")
    p.add_argument("--phase", default="iframe", help="recipe phase whose step is measured")
    p.add_argument("--rounds", type=positive_int, default=MIN_RUNS,
                   help=f"interleaved rounds per variant (default {MIN_RUNS}): each gives one mean step time and the "
                        f"report is their median and min-max, which on a shared machine needs the benchmarks' "
                        f"minimum of {MIN_RUNS} timed runs (the old default 5 left the median to 2 rounds either "
                        f"side); cheap: a round of all 6 variants at --steps 10 is ~3 s of tiny-cpu iframe steps, and "
                        f"a default run ~1-2 min, most of it torch.compile's warm-up. Fewer are accepted for a quick "
                        f"check")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per round (default 10)")
    p.add_argument("--variants", type=choice_list(VARIANTS), default=list(VARIANTS),
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default all)")
    add_roofline_argument(p)
    args = p.parse_args()

    import torch

    from mobilecodec.runtime.threads import torch_threads
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.recipe import get_recipe

    default_threads = torch.get_num_threads()  # before any variant sets its own
    recipe = get_recipe(args.recipe)
    phase = recipe.phase(args.phase)
    st = phase.overrides
    data = TrainingData(None, st["gop"] + st.get("rollout", 0), st["crop"], augment=True)
    rng = np.random.default_rng(0)
    with torch_threads(1):  # the thread count of the 1-thread variants
        for _ in range(2):  # warm-up: the first batches map the cached clips
            data.batch(rng, st["batch_size"])
        batches, sample_times = [], []
        for _ in range(max(args.steps, 8)):
            t0 = time.perf_counter()
            batches.append(data.batch(rng, st["batch_size"]))
            sample_times.append(time.perf_counter() - t0)
    batches = batches[:args.steps]
    sample_s = float(np.median(sample_times))
    # a random rollout depth is drawn per step, and a step's time follows it: every variant gets the
    # same depths, batch by batch (each drew its own, and the ratios compared different work)
    depths: list[int | None] = ([int(d) for d in rng.integers(0, st["rollout"] + 1, size=len(batches))]
                                if st.get("rollout_random") else [st.get("rollout") or None] * len(batches))

    names = list(dict.fromkeys(args.variants))  # each once
    skipped = {}
    for n in [n for n in names if "bf16" in n and not bf16_native()]:
        names.remove(n)
        skipped[n] = "this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
    macs = _step_macs(phase, recipe, batches, depths)  # per step, forward and backward
    # the PyTorch float32 conv roofline at each variant's thread count (it sets torch's threads; the
    # steps set their own)
    roofs = {} if args.no_roofline else {t: roofline(t, copy=False) for t in
                                         sorted({2 if n == "threads2" else 1 for n in names})}
    steps, warm = {}, {}
    for n in names:
        steps[n] = _variant(n, phase, recipe, 2 if n == "threads2" else 1)
        t = time.perf_counter()
        for b, d in _warmup_steps(batches, depths, compiled=n == "compile"):
            steps[n](b, d)
        warm[n] = time.perf_counter() - t
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            t = time.perf_counter()
            for b, d in zip(batches, depths):
                steps[n](b, d)
            times[n].append((time.perf_counter() - t) / len(batches))
            print(f"round {r + 1}/{args.rounds} {n}: {1.0 / times[n][-1]:.2f} steps/s", file=sys.stderr)
    base = float(np.median(times["fp32"])) if "fp32" in times else None
    result = {"recipe": recipe.name, "phase": phase.name, "batch": st["batch_size"],
              "crop": list(st["crop"]), "gop": st["gop"] + st.get("rollout", 0),
              "torch_threads_default": default_threads, "cpu_bf16": bf16_native(),
              "data_sampling_s_per_step": sample_s, "data_sampling_spread": [min(sample_times), max(sample_times)],
              "rollout_depths": depths if st.get("rollout_random") else None,
              "skipped": skipped, "variants": {}, "macs_per_step": macs,
              "roofline": roofs.get(1), "roofline_2_threads": roofs.get(2)}
    for n in names:
        med = float(np.median(times[n]))
        result["variants"][n] = {"s_per_step": med, "steps_per_s": 1.0 / med,
                                 "spread": [min(times[n]), max(times[n])], "warmup_s": warm[n],
                                 "speedup_vs_fp32": (base / med) if base else None}
        threads = 2 if n == "threads2" else 1
        rate = macs / med / 1e9
        result["variants"][n].update({"threads": threads, "gmacs_per_s": rate,
                                      "fraction_of_pytorch_float32_roofline":
                                          fraction(rate, conv_roof(roofs.get(threads), "pytorch_float32"))})
    print(f"{recipe.name}/{phase.name}: batch {st['batch_size']}, crop {st['crop']}; data sampling "
          f"{1e3 * sample_s:.1f} ms/step (median of {len(sample_times)}, one thread)")
    for n, v in result["variants"].items():
        sp = f"  x{v['speedup_vs_fp32']:.2f} vs fp32" if v["speedup_vs_fp32"] else ""
        roof = (f"; {v['gmacs_per_s']:.1f} GMAC/s = {v['fraction_of_pytorch_float32_roofline']:.2f} of the "
                f"{v['threads']}-thread PyTorch float32 conv roofline"
                if v["fraction_of_pytorch_float32_roofline"] is not None else f"; {v['gmacs_per_s']:.1f} GMAC/s")
        print(f"  {n:>14}: {v['steps_per_s']:6.2f} steps/s (median of {args.rounds} rounds){sp}; "
              f"warm-up {v['warmup_s']:.1f} s{roof}")
    for n, why in skipped.items():
        print(f"  {n:>14}: skipped ({why})")
    print(f"a step: {macs / 1e9:.2f} GMAC of convolutions and matmuls, forward and backward (torch.utils.flop_counter"
          + (f"; the mean over the timed steps' rollout depths {depths}" if st.get("rollout_random") else "") + ")")
    for t, roof in roofs.items():
        print(roofline_line(roof))
    emit(result, args.json)


def _step_macs(phase, recipe, batches, depths) -> int:
    """Multiply-accumulates of one fp32 training step (forward and backward: convolutions and matrix
    products, as torch.utils.flop_counter counts them, FLOPs / 2), on a model of its own: the mean
    over the timed batches when their rollout depths differ, else the first batch's."""
    from torch.utils.flop_counter import FlopCounterMode

    step = _variant("fp32", phase, recipe, 1)
    distinct = len(set(depths)) > 1
    total = 0
    for b, d in (zip(batches, depths) if distinct else [(batches[0], depths[0])]):
        with FlopCounterMode(display=False) as counter:
            step(b, d)
        total += counter.get_total_flops() // 2
    return total // (len(batches) if distinct else 1)


if __name__ == "__main__":
    run_main(main)
