"""Is the motion path of a checkpoint alive? Per P-frame of a clip: the estimated bits of the
motion and residual latents, the decoded flow's mean and largest magnitude, and how far the
decoded flow moved from the predicted one.

A dead motion path shows as 0 motion bits (the decoded flow is then a fixed function of the
predicted one, carrying no information); an unstable flow recursion shows as a mean flow that
grows frame after frame. Bits are the model's estimate
(-log2 of the likelihoods), not file bits; use `mobilecodec eval` for those.

    python scripts/motion_check.py CHECKPOINT [--clip bikes] [--frames 32] [--json out.json]
    python scripts/motion_check.py CHECKPOINT --clip bikes --frames 6 --search 6 16 32

--search R [R ...] instead measures the sender's motion search itself: per frame, PSNR-YUV of the
previous source frame warped (the checkpoint's warp) with `block_match` vectors of each radius, and
the search time. It says how much prediction a search range leaves on the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from mobilecodec.cli.common import positive_int, thread_count  # standard library only

    from mobilecodec.cli.common import json_target


    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint file or shipped checkpoint name")
    p.add_argument("--clip", default="bikes", help="sample clip name or video file (default bikes, a training clip)")
    p.add_argument("--frames", type=positive_int, default=32, help="frames from the start, one intra period (default 32)")
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the per-frame rows as JSON")
    p.add_argument("--search", type=int, nargs="+", metavar="R",
                   help="measure block matching at these radii instead (warped-frame PSNR-YUV, time)")
    args = p.parse_args(argv)
    if args.search and min(args.search) < 1:
        p.error("--search radii must be >= 1")

    import torch

    from mobilecodec.checkpoint import load_checkpoint, resolve_checkpoint
    from mobilecodec.errors import InputError
    from mobilecodec.io.samples import list_sample_clips, sample_clip
    from mobilecodec.models.yuv import read_packed_frames

    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(resolve_checkpoint(args.checkpoint))  # errors: one line (run_main)
    path = sample_clip(args.clip) if args.clip in list_sample_clips() else args.clip
    frames = read_packed_frames(path, args.frames)  # a missing clip: InputError, one line (run_main)
    if len(frames) < 2:
        raise InputError(f"{args.clip}: need at least 2 frames, got {len(frames)}")
    if not model.cfg.uses_motion:
        raise InputError(f"{args.checkpoint} has no motion path (warp 'none')")
    model.eval()
    if args.search:
        side = 2 * max(frames[0].shape[-2:])  # packed frames: half the luma size
        if max(args.search) > side:  # no block moves further; the search's memory grows with the radius
            raise InputError(f"--search {max(args.search)} is larger than the frame ({side} pixels); use at most {side}")
        rows = _search_table(model, frames, args.search)
        _write_json(args, rows)
        return 0
    rows = []
    print(f"{args.checkpoint} on {args.clip}, {len(frames)} frames (motion hint: {model.cfg.motion_hint})")
    print(f"{'frame':>5} {'motion bits':>11} {'residual bits':>13} {'|flow| mean':>11} {'|flow| max':>10} {'|decoded-predicted|':>19}")
    with torch.no_grad():
        buf = model.forward_iframe(frames[0])["buffer"]
        for t in range(1, len(frames)):
            out = model.forward_pframe(frames[t], buf)
            buf = out["buffer"]
            bits = {k: float(-torch.log2(v.clamp_min(1e-9)).sum()) for k, v in out["likelihoods"].items()}
            flow = out["flow"]
            row = {"frame": t, "motion_bits": bits.get("m_y", 0.0) + bits.get("m_z", 0.0),
                   "residual_bits": bits["r_y"] + bits["r_z"],
                   "flow_mean_abs": float(flow.abs().mean()), "flow_max_abs": float(flow.abs().max()),
                   "correction_mean_abs": float((flow - out["flow_pred"]).abs().mean())}
            rows.append(row)
            print(f"{t:>5} {row['motion_bits']:>11.0f} {row['residual_bits']:>13.0f} {row['flow_mean_abs']:>11.2f} "
                  f"{row['flow_max_abs']:>10.1f} {row['correction_mean_abs']:>19.3f}")
    _write_json(args, rows)
    return 0


def _search_table(model, frames, radii: list[int]) -> list[dict]:
    """Per frame t >= 1: PSNR-YUV of source frame t-1 warped with block_match vectors (each radius)
    against frame t, and the search time in ms."""
    import time

    import torch

    from mobilecodec.metrics import psnr_from_mse
    from mobilecodec.models.motion_search import block_match
    from mobilecodec.models.warp import warp_frame
    from mobilecodec.train.losses import yuv_mse

    block = model.cfg.warp.block_size
    for r in radii:  # untimed: the first call of each radius compiles the search kernel (0.5 s, not search time)
        block_match(frames[0], frames[min(1, len(frames) - 1)], block, r)
    print(f"{'frame':>5} {'zero motion':>11} " + " ".join(f"{'radius ' + str(r):>20}" for r in radii) + "   (dB, ms)")
    rows = []
    for t in range(1, len(frames)):
        ref, x = frames[t - 1], frames[t]
        row = {"frame": t, "zero_motion_db": psnr_from_mse(float(yuv_mse(ref, x)), 1.0)}
        for r in radii:
            t0 = time.perf_counter()
            vectors, _ = block_match(ref, x, block, r)
            ms = 1e3 * (time.perf_counter() - t0)
            with torch.no_grad():
                row[f"r{r}_db"] = psnr_from_mse(float(yuv_mse(warp_frame(ref, vectors, model.cfg.warp), x)), 1.0)
            row[f"r{r}_ms"] = ms
        rows.append(row)
        print(f"{t:>5} {row['zero_motion_db']:>11.2f} "
              + " ".join(f"{row[f'r{r}_db']:>12.2f} {row[f'r{r}_ms']:>7.0f}" for r in radii))
    return rows


def _write_json(args, rows: list[dict]) -> None:
    if args.json:
        from mobilecodec.cli.common import emit_json

        emit_json({"checkpoint": args.checkpoint, "clip": args.clip, "search": args.search, "frames": rows}, args.json)


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
