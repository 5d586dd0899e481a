"""`mobilecodec train`: train a codec config at one beta, stage 1 or 2 of Table 5 (MobileNVC
appendix), on video files, Vimeo-90K septuplet folders and still images with synthetic motion; or
run a whole resumable recipe (`--recipe NAME`, see `mobilecodec.train.recipe`). Runs under
`torchrun --nproc_per_node N -m mobilecodec train ...` with DistributedDataParallel."""

from __future__ import annotations

import argparse
import os
import sys

from mobilecodec.cli.common import (Output, add_architecture_arguments, emit_json, given_options, parse_hw,
                                    parse_yuv_weights, positive_float, positive_int, seed_int, thread_count)

HELP = "train a codec (stage 1 or 2 of Table 5) on videos or Vimeo-90K septuplets"
OUTPUT = Output("folder")  # a run folder, continued when started again

# Options that define a run: on --resume they come from the run folder and may only be repeated
# unchanged. (name of the argparse dest, attribute of TrainOptions or its StageConfig)
_RUN_DEFINING = ("config", "stage", "beta", "data", "batch_size", "crop", "gop", "rollout", "rollout_random", "detach_iframe", "ref_grad_scale", "lr", "lr_final", "tau", "p_rate_factor", "yuv_weights", "flow_lambda",
                 "flow_teacher", "teacher_steps", "noisy_synthesis", "clip", "seed", "init", "reinit", "freeze", "motion_hint", "motion_search_radius", "buffering", "warp", "max_frames", "augment", "allow_held_out")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="registered config to train (default: --init's, else tiny)")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None,
                   help="Table 5 stage: 1 = training (GOP 4, 256x256, flow losses), 2 = fine-tuning "
                        "(GOP 7, 256x384, tau 1.2); required unless --resume or --recipe")
    p.add_argument("--beta", type=positive_float, default=None,
                   help="rate weight: loss = D + beta*R_I (I-frame), D + F*beta*R_P (P-frames, F = "
                        "--p-rate-factor, default 2); D = MSE of YUV in [0,1] (Y:U:V 6:1:1), R in bits per pixel; "
                        "required unless --resume or --recipe")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="run the whole training recipe NAME (tiny-cpu: I-frame, P-frame, rollout, one "
                        "fine-tuning per beta; tiny-smoke: the same at 1/1000 of the steps) in RUN, "
                        "continuing from its last checkpoint when started again")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="stop cleanly at a checkpoint after this many minutes (continue with --resume, a recipe "
                        "with the same command): of the training loop in a plain run (data loading and set-up "
                        "not counted), of wall time over all phases with --recipe")
    p.add_argument("--batch-scale", type=positive_int, default=None,
                   help="--recipe: multiply every phase's batch size (e.g. 4 with --device cuda; default 1)")
    p.add_argument("--until", default=None, metavar="PHASE", help="--recipe: stop after this phase")
    p.add_argument("--phase", default=None, metavar="PHASE",
                   help="--recipe: train only this phase (its init phase must be finished); the rate-point "
                        "phases (b<beta>) all start from the base model, so several processes can train them at once")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast of the networks, on CPUs with native bf16 (benchmarks/train_speed.py "
                        "measures it; RD effect not yet measured)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep weights and frames in NCHW (channels_last: x1.03-1.04 steps/s on a 2-core AMD "
                        "EPYC, docs/results/training.md)")
    p.add_argument("--data", nargs="+", default=None, metavar="PATH",
                   help="video files (.y4m/.mp4/...; sample names bikes, bigbuckbunny), Vimeo-90K "
                        "folders (sequences/xxxxx/yyyy/im1..7.png) and/or 'stills' (bundled still images "
                        "with synthetic motion); each PATH is sampled equally often (default: bikes "
                        "bigbuckbunny stills; carphone is held out for evaluation)")
    p.add_argument("--augment", action="store_true", default=None,
                   help="flip and 2x-downscale video and Vimeo-90K GOPs at random (recipes always do; stills have "
                        "their own synthetic motion)")
    p.add_argument("--allow-held-out", action="store_true", default=None,
                   help="allow training on the held-out evaluation clip (carphone); its RD results are "
                        "then no longer honest")
    p.add_argument("-o", "--output", required=True, metavar="RUN",
                   help="run folder (checkpoints, logs); with --recipe, the recipe folder")
    p.add_argument("--steps", type=positive_int, default=None, help="total steps (default: Table 5, 1M / 250k)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="GOPs per step per process (8 / 16)")
    p.add_argument("--crop", type=parse_hw, default=None, metavar="HxW",
                   help="random crop, multiples of 64 (default 256x256 / 256x384)")
    p.add_argument("--gop", type=positive_int, default=None, help="frames per training GOP (default 4 / 7)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (default 1e-4 / 5e-5)")
    p.add_argument("--lr-final", type=positive_float, default=None, metavar="LR",
                   help="decay the learning rate along a cosine from --lr at the first step to LR at the last "
                        "(default: constant --lr, as Table 5; a long run at a constant rate swings)")
    p.add_argument("--rollout", type=int, default=None, metavar="K",
                   help="error-propagation-aware training: run K P-frames without gradients before the "
                        "trained ones, so they learn from a drifted buffer (samples GOP + K frames; default 0). "
                        "The buffer they start from is detached at every depth, 0 included: the I-frame codec "
                        "learns from its own loss only, as with --detach-iframe")
    p.add_argument("--rollout-random", action="store_true", default=None,
                   help="with --rollout K: draw each step's rollout depth uniformly from 0..K, so the "
                        "P-frames learn from the buffer of every chain position up to K (the tiny-cpu "
                        "rollout phase uses K = 12)")
    p.add_argument("--detach-iframe", action="store_true", default=None,
                   help="the P-frame losses see the I-frame reconstruction detached, so the I-frame codec "
                        "learns from its own rate-distortion loss only (the tiny-cpu rate-point phases)")
    p.add_argument("--ref-grad-scale", type=float, default=None, metavar="F",
                   help="scale the gradient through the reference by F per frame (forward unchanged; "
                        "default 1). Full backprop through long GOPs explodes; F < 1 bounds it")
    p.add_argument("--tau", type=positive_float, default=None,
                   help="P-frame loss modulation: P-frame t weighted tau^(t-1) (default 1 / 1.2)")
    p.add_argument("--yuv-weights", type=parse_yuv_weights, default=None, metavar="Y,U,V",
                   help="plane weights of the MSE D (default 6,1,1, as PSNR-YUV weighs them); larger U and V "
                        "weights make the codec keep colour at some cost in luma (docs/results/rd.md: chroma "
                        "decays along the period on saturated moving content)")
    p.add_argument("--p-rate-factor", type=positive_float, default=None, metavar="F",
                   help="P-frame rate weight F*beta (default 2, Table 5); a lower F makes the residual "
                        "coder spend bits on detail the warp lost, instead of letting it drift away")
    p.add_argument("--flow-lambda", type=float, default=None,
                   help="weight of both auxiliary flow losses (predicted and decoded flow; default 0.1 / 0)")
    p.add_argument("--flow-teacher", type=float, default=None, metavar="LAMBDA",
                   help="weight of the L1 loss (luma pixels) pulling the decoded flow towards an integer "
                        "block-matching teacher; keeps the motion path from collapsing (default 0; the "
                        "tiny-cpu recipe's P-frame phase uses 2e-3)")
    p.add_argument("--teacher-steps", type=positive_int, default=None, metavar="N",
                   help="the --flow-teacher weight falls linearly to 0 after step N (default: constant; the "
                        "tiny-cpu P-frame phase uses 5000)")
    p.add_argument("--noisy-synthesis", nargs="+", choices=("i", "m", "r"), default=None, metavar="LATENT",
                   help="train these latents' synthesis (i, m, r) on y + uniform noise instead of the "
                        "straight-through rounded y (the tiny-cpu P-frame phase uses m r)")
    p.add_argument("--clip", type=float, default=None, help="gradient-norm clip (default 1.0; 0 = off)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="checkpoint every N steps (1000)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--seed", type=seed_int, default=None, help="seed of initialisation and data sampling (default 0)")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from this checkpoint (e.g. stage 1's final.pt)")
    p.add_argument("--reinit", nargs="+", default=None, metavar="NET",
                   help="with --init: re-initialise these networks (names or quoted shell-style patterns, e.g. "
                        "motion_predictor 'm_*') instead of taking them from the checkpoint")
    p.add_argument("--freeze", nargs="+", default=None, metavar="NET",
                   help="do not train these networks: names or quoted shell-style patterns (e.g. 'i_*': "
                        "i_analysis i_synthesis i_hyper_analysis i_hyper_synthesis i_z_prior, the I-frame codec)")
    p.add_argument("--motion-hint", choices=("none", "block_match"), default=None,
                   help="what the sender's motion analysis gets: the predicted flow (none) or block-matching "
                        "vectors minus it (block_match, the tiny and mobilenvc default)")
    p.add_argument("--motion-search-radius", type=positive_int, default=None, metavar="PX",
                   help="search range of the sender's block matching, luma pixels each way (default: the "
                        "config's, 32; beyond 8 it searches coarse to fine)")
    add_architecture_arguments(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: cuda if available")
    p.add_argument("--max-frames", type=positive_int, default=None,
                   help="use (and cache) at most N frames of each video")
    p.add_argument("--log-every", type=positive_int, default=None, help="log metrics every N steps (10)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="torch CPU threads per process (default: torch's; 1 is faster on a busy shared CPU)")
    p.add_argument("--data-workers", type=int, default=None, metavar="N",
                   help="processes that draw the next steps' batches ahead (default 0: in the training "
                        "loop; on a GPU the loop otherwise waits for the CPU); the batches are the same")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--json", metavar="PATH", help="write the run summary as JSON ('-' for stdout)")


def _stage_overrides(args: argparse.Namespace) -> dict:
    fl = args.flow_lambda
    return {"steps": args.steps, "batch_size": args.batch_size, "crop": args.crop, "gop": args.gop,
            "lr": args.lr, "lr_final": args.lr_final, "tau": args.tau, "p_rate_factor": args.p_rate_factor, "yuv_weights": args.yuv_weights,
            "flow_lambda_pred": fl, "flow_lambda_rec": fl, "grad_clip": args.clip,
            "rollout": args.rollout, "rollout_random": args.rollout_random, "detach_iframe": args.detach_iframe, "ref_grad_scale": args.ref_grad_scale, "flow_lambda_teacher": args.flow_teacher, "teacher_steps": args.teacher_steps,
            "noisy_synthesis": tuple(sorted(set(args.noisy_synthesis))) if args.noisy_synthesis else None}


def _refuse_options_that_change_nothing(args: argparse.Namespace, gop: int) -> None:
    """InputError for a new run's options that the loss would ignore (CONVENTIONS: an option that does
    not apply is an error; each ran silently before the training audit of session 39)."""
    from mobilecodec.errors import InputError

    p_latents = sorted({"m", "r"} & set(args.noisy_synthesis or ()))
    if gop == 1 and p_latents:
        raise InputError(f"--noisy-synthesis {' '.join(p_latents)}: P-frame latents; --gop 1 trains I-frames alone")
    if gop == 2 and args.tau is not None:
        raise InputError("--tau weights a GOP's P-frames by position; --gop 2 trains one")
    flows = given_options(args, "flow_lambda", "flow_teacher")
    if args.warp == "none" and flows:
        raise InputError(f"{', '.join(flows)} train the motion path; --warp none has none")
    if args.rollout and args.detach_iframe:
        raise InputError("--detach-iframe changes nothing with --rollout: the P-frames it trains start from a "
                         "detached buffer at every depth, 0 included")


def _check_resume_args(args: argparse.Namespace, saved) -> None:
    """On --resume, run-defining options may be repeated but not changed: each given value is
    compared with the value the run actually used (an option the run left at None with what that
    resolved to, a --data entry or --init path with the file it names)."""
    from mobilecodec.errors import InputError
    from mobilecodec.train.data import data_identity
    from mobilecodec.train.trainer import network_names

    st = saved.stage
    values = {"config": saved.config, "stage": st.stage, "beta": saved.beta, "data": saved.data,
              "batch_size": st.batch_size, "crop": st.crop, "gop": st.gop, "rollout": st.rollout,
              "rollout_random": st.rollout_random or None, "detach_iframe": st.detach_iframe or None, "ref_grad_scale": st.ref_grad_scale, "lr": st.lr, "lr_final": st.lr_final, "tau": st.tau,
              "p_rate_factor": st.p_rate_factor, "yuv_weights": tuple(st.yuv_weights),
              "flow_lambda": st.flow_lambda_pred, "flow_teacher": st.flow_lambda_teacher, "teacher_steps": st.teacher_steps,
              "noisy_synthesis": list(st.noisy_synthesis) or None, "clip": st.grad_clip, "seed": saved.seed, "init": saved.init,
              "reinit": list(saved.reinit) or None, "freeze": list(saved.freeze) or None, "motion_hint": saved.motion_hint,
              "motion_search_radius": saved.motion_search_radius,
              "buffering": saved.buffering, "warp": saved.warp, "max_frames": saved.max_frames,
              "augment": saved.augment, "allow_held_out": saved.allow_held_out}
    # None: the config's value (or the --init checkpoint's); the run's checkpoint records it
    from_config = ("motion_hint", "motion_search_radius", "buffering", "warp")
    cfg = None
    for name in _RUN_DEFINING:
        given = getattr(args, name)
        if given is None:
            continue
        if isinstance(given, tuple | list):
            given = list(given)
            have = list(values[name]) if values[name] is not None else None
        else:
            have = values[name]
        if have is None and name in from_config:
            if cfg is None:
                from mobilecodec.train.trainer import run_config

                cfg = run_config(args.output)
            have = cfg.warp.mode if name == "warp" else getattr(cfg, name)
        if name == "data":
            same = [data_identity(x) for x in given] == [data_identity(x, strict=False) for x in have]
        elif name == "init" and have is not None:
            same = _checkpoint_identity(given) == _checkpoint_identity(have)
        elif name == "noisy_synthesis":  # a set of latents: `r m` is `m r`
            same = set(given) == set(have or ())
        elif name in ("freeze", "reinit"):  # names or patterns: compared as the networks they name
            nets, verb = _run_networks(args.output, name)
            same = set(network_names(given, nets, verb)) == set(network_names(have or (), nets, verb))
        else:
            same = given == have
        if not same:
            raise InputError(f"--{name.replace('_', '-')} {given} differs from the run being resumed "
                             f"({have}); resume with the same options or start a new run")


def _run_networks(run: str, option: str) -> tuple[tuple[str, ...], str]:
    """(the networks of the resumed run's model that --freeze / --reinit may name, the option's verb)."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.train.trainer import run_config

    freeze = option == "freeze"
    nets = VideoCodec(run_config(run)).networks(VideoCodec.NETWORKS if freeze else VideoCodec.REINIT_NETWORKS)
    return nets, "freeze" if freeze else "re-initialise"


def _checkpoint_identity(name_or_path: str) -> str:
    """The file an --init value names (a path, or a shipped checkpoint's stem), resolved."""
    from mobilecodec.checkpoint import resolve_checkpoint

    p = resolve_checkpoint(name_or_path)
    return str(p.resolve()) if p.exists() else str(name_or_path)


def _refuse_json_among_run_files(args: argparse.Namespace) -> None:
    """A --json inside the run folder must be a .json file: none of the run's own files is one
    (checkpoints .pt, log.jsonl, rank*_weights.txt, tb/), and `--json RUN/final.pt` replaced the
    trained model (`--json RUN/trainer_state.pt`: the run could not resume)."""
    from pathlib import Path

    from mobilecodec.errors import InputError

    if args.json in (None, "-") or args.output is None:
        return
    path, run = Path(args.json).resolve(), Path(args.output).resolve()
    if run in path.parents and path.suffix.lower() != ".json":
        raise InputError(f"--json {args.json} is inside the run folder {args.output}, among its checkpoints and "
                         "logs; name a .json file")


def _init_config(init: str | None) -> str:
    """The config a run trains when --config is not given: --init's own, else tiny."""
    if not init:
        return "tiny"
    from mobilecodec.checkpoint import checkpoint_config, read_checkpoint, resolve_checkpoint

    return checkpoint_config(read_checkpoint(resolve_checkpoint(init)), f"--init {init}").name


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from mobilecodec.errors import InputError
    from mobilecodec.train.stages import get_stage
    from mobilecodec.train.trainer import (
        TrainOptions,
        dist_info,
        load_run_options,
        train,
    )

    _refuse_json_among_run_files(args)
    if args.recipe:
        return _run_recipe(args)
    recipe_only = given_options(args, "batch_scale", "until", "phase")
    if recipe_only:
        raise InputError(f"{', '.join(recipe_only)} only apply with --recipe NAME")
    from mobilecodec.train.recipe import refuse_recipe_folder

    refuse_recipe_folder(args.output)  # a plain run in a recipe's folder would mix with its phases
    if args.resume:
        from mobilecodec.fsutil import check_not_in_use

        check_not_in_use(args.output, "training run")
        opts = load_run_options(args.output)
        if args.teacher_steps is not None:  # the stage's own rule (a teacher to decay) before the resume check
            opts.stage.replace(teacher_steps=args.teacher_steps).validate()
        _check_resume_args(args, opts)
        if args.steps is not None:
            if opts.stage.lr_final is not None and args.steps != opts.stage.steps:  # the curve spans the steps
                raise InputError(f"--steps {args.steps}: {args.output}'s learning rate follows a cosine over its "
                                 f"{opts.stage.steps} steps, which another count would bend mid-run; resume with "
                                 f"--steps {opts.stage.steps}, or start a new run with --init {args.output}/final.pt")
            opts.stage = opts.stage.replace(steps=args.steps)
    else:
        missing = [f"--{n}" for n in ("stage", "beta") if getattr(args, n) is None]
        if missing:
            raise InputError(f"{', '.join(missing)} required (unless --resume or --recipe)")
        from mobilecodec.train.data import DEFAULT_TRAIN_DATA, recorded_data

        if args.augment and args.data and all(d == "stills" for d in args.data):
            raise InputError("--augment flips and downscales video and Vimeo-90K GOPs; stills have their own "
                             "synthetic motion and are not augmented")
        stage = get_stage(args.stage, **_stage_overrides(args))
        p_only = given_options(args, "rollout_random", "detach_iframe", "ref_grad_scale", "tau",
                               "p_rate_factor", "flow_lambda", "flow_teacher", "teacher_steps")
        p_only = (["--rollout"] if args.rollout else []) + p_only  # --rollout 0 asks for none
        if stage.gop == 1 and p_only:  # a GOP of one frame trains the I-frame codec alone
            raise InputError(f"{', '.join(p_only)} appl{'ies' if len(p_only) == 1 else 'y'} to P-frames; "
                             "--gop 1 trains I-frames alone")
        _refuse_options_that_change_nothing(args, stage.gop)
        opts = TrainOptions(run_dir=args.output, data=recorded_data(args.data or DEFAULT_TRAIN_DATA), beta=args.beta,
                            stage=stage, augment=bool(args.augment), allow_held_out=bool(args.allow_held_out),
                            config=args.config or _init_config(args.init), seed=0 if args.seed is None else args.seed,
                            init=os.path.abspath(args.init) if args.init and os.path.isfile(args.init) else args.init,
                            reinit=tuple(args.reinit or ()), freeze=tuple(args.freeze or ()),
                            motion_hint=args.motion_hint, motion_search_radius=args.motion_search_radius,
                            buffering=args.buffering,
                            warp=args.warp, max_frames=args.max_frames)
    changes = {"run_dir": args.output, "progress": not args.no_progress, "bf16": args.bf16,
               "channels_last": not args.no_channels_last,
               "stop_after_seconds": 60.0 * args.minutes if args.minutes else None}
    for name in ("checkpoint_every", "device", "log_every", "threads", "data_workers"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    opts = dataclasses.replace(opts, **changes)

    summary = train(opts, resume=args.resume)
    if dist_info().is_main:
        last = summary["last"]
        if summary["interrupted"]:
            print(f"stopped at step {summary['step']} after {summary['seconds'] / 60:.2f} min of training "
                  f"(--minutes {args.minutes:g}); continue with --resume", file=sys.stderr)
        rate = f", {summary['steps_per_s']:.2f} steps/s" if summary["steps_per_s"] else ""
        if summary.get("steps_per_s_after_first"):
            rate += f" ({summary['steps_per_s_after_first']:.2f} after the first step)"
        # the loss's rate prices noisy latents: several times the coded bits on P-frames (scripts/rate_gap.py)
        coded = (f"{last['coded_bpp']:.4f} bpp coded (rounded latents), " if last and "coded_bpp" in last
                 else "")
        extra = (f", last step: loss {last['loss']:.5f}, {coded}{last['bpp']:.4f} bpp as training prices it, "
                 f"{last['psnr']:.2f} dB") if last else ""
        print(f"{summary['checkpoint']}: {summary['config']} stage {summary['stage']} beta {summary['beta']}, "
              f"step {summary['step']} ({summary['steps_run']} this run{rate}){extra}")
        emit_json(summary, args.json)
    return 0


def _run_recipe(args: argparse.Namespace) -> int:
    """`--recipe NAME`: run what is left of the recipe; per-run options only."""
    from mobilecodec.errors import InputError
    from mobilecodec.train.recipe import get_recipe, run_recipe

    # --steps, --checkpoint-every and --log-every too: every phase takes them from the recipe
    clash = given_options(args, *(n for n in _RUN_DEFINING + ("resume", "steps", "checkpoint_every", "log_every")
                                  if n != "data"))
    if clash:
        raise InputError(f"{', '.join(clash)} cannot be combined with --recipe (the recipe defines them)")
    recipe = get_recipe(args.recipe)
    summary = run_recipe(recipe, args.output, data=args.data, device=args.device or "auto", threads=args.threads,
                         batch_scale=args.batch_scale or 1, minutes=args.minutes, until=args.until, only=args.phase,
                         progress=not args.no_progress, bf16=args.bf16, channels_last=not args.no_channels_last,
                         data_workers=args.data_workers or 0)
    for p in summary["phases"]:
        print(f"{p['phase']:>8}: {p['status']:<7} step {p['step']}/{p['steps']} (beta {p['beta']:g})")
    print(f"recipe {recipe.name} {_recipe_state(args, summary)}"
          f"; rate points ready: {', '.join(summary['results']) or 'none yet'}")
    emit_json(summary, args.json)
    return 0


def _recipe_state(args: argparse.Namespace, summary: dict) -> str:
    """'complete', or what to run to continue: the same command while the phases it covers are
    unfinished (stopped by --minutes), the command without --until/--phase once they are done
    (the same command again would do nothing more)."""
    if summary["complete"]:
        return "complete"
    last = summary["phases"][-1] if summary["phases"] else None
    if last and last["status"] == "done" and last["phase"] in (args.until, args.phase):
        scope = " ".join(f"--{n} {getattr(args, n)}" for n in ("until", "phase") if getattr(args, n))
        return (f"not complete: phase {last['phase']} is done; to continue, run the same command without "
                f"{scope}")
    return "not complete: run the same command again"
