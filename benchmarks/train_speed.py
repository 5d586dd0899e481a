"""Training speed on this CPU: steps/s of one recipe phase's training step under each option that
might pay (channels_last, bf16 autocast where the CPU has native bf16, torch.compile, 1 vs 2
threads) and the cost of data sampling, measured in one run with the variants interleaved so that
the shared machine's noise hits all of them alike.

    python benchmarks/train_speed.py --phase iframe --rounds 5 --steps 10 --json out.json
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from _common import emit, parser, run_main

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

    def step(frames):
        torch.set_num_threads(threads)
        if "channels_last" in name:
            frames = frames.contiguous(memory_format=torch.channels_last) if frames.dim() == 4 else \
                torch.stack([f.contiguous(memory_format=torch.channels_last) for f in frames])
        if "bf16" in name:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = fwd(frames)
        else:
            loss, _ = fwd(frames)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    return step


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--recipe", default="tiny-cpu")
    p.add_argument("--phase", default="iframe", help="recipe phase whose step is measured")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds per variant (default 5)")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per round (default 10)")
    p.add_argument("--variants", type=choice_list(VARIANTS), default=list(VARIANTS),
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default all)")
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

    names = list(dict.fromkeys(args.variants))  # each once
    skipped = {}
    for n in [n for n in names if "bf16" in n and not bf16_native()]:
        names.remove(n)
        skipped[n] = "this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
    steps, warm = {}, {}
    for n in names:
        steps[n] = _variant(n, phase, recipe, 2 if n == "threads2" else 1)
        t = time.perf_counter()
        for b in batches[:2]:  # warm-up (and compilation)
            steps[n](b)
        warm[n] = time.perf_counter() - t
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            t = time.perf_counter()
            for b in batches:
                steps[n](b)
            times[n].append((time.perf_counter() - t) / len(batches))
            print(f"round {r + 1}/{args.rounds} {n}: {1.0 / times[n][-1]:.2f} steps/s", file=sys.stderr)
    base = float(np.median(times["fp32"])) if "fp32" in times else None
    result = {"recipe": recipe.name, "phase": phase.name, "batch": st["batch_size"],
              "crop": list(st["crop"]), "gop": st["gop"] + st.get("rollout", 0),
              "torch_threads_default": default_threads, "cpu_bf16": bf16_native(),
              "data_sampling_s_per_step": sample_s, "data_sampling_spread": [min(sample_times), max(sample_times)],
              "skipped": skipped, "variants": {}}
    for n in names:
        med = float(np.median(times[n]))
        result["variants"][n] = {"s_per_step": med, "steps_per_s": 1.0 / med,
                                 "spread": [min(times[n]), max(times[n])], "warmup_s": warm[n],
                                 "speedup_vs_fp32": (base / med) if base else None}
    print(f"{recipe.name}/{phase.name}: batch {st['batch_size']}, crop {st['crop']}; data sampling "
          f"{1e3 * sample_s:.1f} ms/step (median of {len(sample_times)}, one thread)")
    for n, v in result["variants"].items():
        sp = f"  x{v['speedup_vs_fp32']:.2f} vs fp32" if v["speedup_vs_fp32"] else ""
        print(f"  {n:>14}: {v['steps_per_s']:6.2f} steps/s (median of {args.rounds} rounds){sp}; "
              f"warm-up {v['warmup_s']:.1f} s")
    for n, why in skipped.items():
        print(f"  {n:>14}: skipped ({why})")
    emit(result, args.json)


if __name__ == "__main__":
    run_main(main)
