"""Can a freshly initialised motion autoencoder learn to code motion? Trains only the motion
analysis, synthesis and hyperprior of a checkpoint on the block-matching teacher loss (plus
`--rate` x bits), on GOP pairs of the default training data, and prints the teacher error.

This is the experiment behind `CodecConfig.motion_hint`: with `--hint none` the analysis gets the
predicted flow (zero here) and must find motion itself; with `--hint block_match` it gets the
block-matching vectors. The teacher error of zero motion is what an analysis that learned
nothing scores.

    python scripts/motion_bootstrap.py --init training/tiny-cpu/iframe/final.pt --hint none --steps 1000
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    from mobilecodec.cli.common import (finite_float, json_target, positive_float,  # no torch yet
                                        positive_int, seed_int, thread_count)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="checkpoint whose I-frame codec makes the references")
    p.add_argument("--hint", choices=("none", "block_match"), required=True,
                   help="motion hint the motion analysis gets: none, or the block-matching search's vectors")
    p.add_argument("--steps", type=positive_int, default=1000, help="training steps (default 1000)")
    p.add_argument("--rate", type=finite_float, default=0.0064, help="weight of the motion bits per pixel (default 2 x 0.0032)")
    p.add_argument("--teacher", type=finite_float, default=2e-3, help="weight of the teacher loss (default 2e-3)")
    p.add_argument("--lr", type=positive_float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="GOPs per batch (default 4)")
    p.add_argument("--crop", type=positive_int, default=128, help="square crop side, a multiple of 64 (default 128)")
    p.add_argument("--seed", type=seed_int, default=0, help="data and initialisation seed (default 0)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the teacher error per 100 steps as JSON")
    args = p.parse_args(argv)
    if args.crop % 64:
        p.error(f"--crop must be a multiple of 64 (as training crops are), got {args.crop}")

    import numpy as np
    import torch

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.models.motion_search import block_match
    from mobilecodec.models.yuv import pack_yuv
    from mobilecodec.train.data import DEFAULT_TRAIN_DATA, TrainingData
    from mobilecodec.train.motion_teacher import teacher_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, _ = load_checkpoint(args.init)
    model.cfg = model.cfg.replace(motion_hint=args.hint)
    model.reinit(("motion_predictor", "m_analysis", "m_synthesis"))
    model.train()
    nets = ("m_analysis", "m_synthesis", "m_hyper_analysis", "m_hyper_synthesis", "m_z_prior")
    opt = torch.optim.Adam([q for n in nets for q in getattr(model, n).parameters()], lr=args.lr)
    data = TrainingData(list(DEFAULT_TRAIN_DATA), 2, (args.crop, args.crop), augment=True)
    rng = np.random.default_rng(args.seed)
    block, radius = model.cfg.warp.block_size, model.cfg.motion_search_radius
    hb = args.crop // block
    history, window, zero_window = [], [], []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        gops = [data.sample(rng) for _ in range(args.batch_size)]
        x = torch.stack([pack_yuv(torch.from_numpy(np.asarray(y)).float()[:, None] / 255,
                                  torch.from_numpy(np.asarray(uv)).float() / 255) for y, uv in gops], 1)
        with torch.no_grad():
            ref = model.forward_iframe(x[0])["buffer"]["frame"]
        flow_pred = torch.zeros(args.batch_size, 2, hb, hb)
        y = model.m_analysis(x[1], ref, model.motion_hint(x[1], ref, flow_pred))
        y_hat, lik = model.hyperprior("m", y)
        flow, _ = model.m_synthesis(y_hat, flow_pred)
        target, confident = block_match(ref, x[1], block, radius)
        err = teacher_loss(flow, target, confident).mean()
        bpp = sum(-torch.log2(v).sum() for v in lik.values()) / (args.batch_size * 4 * x.shape[-1] * x.shape[-2])
        loss = args.teacher * err + args.rate * bpp
        opt.zero_grad()
        loss.backward()
        opt.step()
        window.append(float(err.detach()))
        zero_window.append(float(teacher_loss(torch.zeros_like(flow), target, confident).mean()))
        if step % 100 == 0 or step == args.steps:
            row = {"step": step, "teacher_error_px": float(np.mean(window)),
                   "zero_motion_error_px": float(np.mean(zero_window)), "bpp": float(bpp.detach())}
            history.append(row)
            print(f"step {step:>5}: teacher error {row['teacher_error_px']:.2f} px (zero motion: "
                  f"{row['zero_motion_error_px']:.2f} px), motion {row['bpp']:.4f} bpp, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            window, zero_window = [], []
    if args.json:
        from mobilecodec.cli.common import emit_json

        emit_json({"options": vars(args), "history": history}, args.json)
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
