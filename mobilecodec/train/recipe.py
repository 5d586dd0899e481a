"""Training recipes: the whole schedule that produces shipped checkpoints, as one resumable command.

A recipe is a list of phases run in order, each an ordinary trainer run in its own sub-folder of
the recipe folder, started from the previous phase's final checkpoint:

    iframe   GOP 1: the I-frame codec alone (the P-frame networks get no gradient)
    pframe   GOP 4, Table 5 stage 1 with the auxiliary flow losses: the P-frame networks on top,
             freshly initialised (He init), on a frozen I-frame codec, with noisy latents and
             the block-matching motion teacher, without which the motion path collapsed to
             sending nothing (models/motion_search.py)
    rollout  stage 2: error-propagation-aware fine-tuning (rollout P-frames without gradients, tau > 1)
    b<beta>  one short stage-2 fine-tuning per extra rate point, from the rollout model

`mobilecodec train --recipe NAME -o DIR` runs what is left: finished phases are skipped, a phase with
a checkpoint resumes from it (randomness is a function of the step, so an interrupted and resumed
phase repeats an uninterrupted one), and `--minutes M` stops cleanly at a checkpoint after M
minutes, so a long schedule can be spread over many sessions. A phase folder trained with other
options than the recipe now defines, or on other --data, is refused, not silently continued.
`--device cuda --batch-scale K` runs the same phases with K times larger batches on a GPU.
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError
from mobilecodec.train.data import DEFAULT_TRAIN_DATA, data_identity, recorded_data
from mobilecodec.train.stages import json_plain


@dataclass(frozen=True)
class Phase:
    """One trainer run of a recipe: a Table 5 stage preset with overrides, at `beta` (None: the
    recipe's base beta), started from phase `init` (None: random initialisation)."""

    name: str
    stage: int
    overrides: dict[str, Any]
    init: str | None = None
    beta: float | None = None
    reinit: tuple[str, ...] = ()  # networks re-initialised after loading `init` (VideoCodec.reinit)
    freeze: tuple[str, ...] = ()  # networks this phase does not train


@dataclass(frozen=True)
class Recipe:
    """A named schedule: config, data, base beta and phases."""

    name: str
    config: str
    base_beta: float
    phases: tuple[Phase, ...]
    data: tuple[str, ...] = DEFAULT_TRAIN_DATA
    checkpoint_every: int = 1000
    # Search range of the sender's block matching in every phase (None: the config's). Pinned so
    # that a changed config default cannot change the hint under a half-trained recipe.
    motion_search_radius: int | None = None
    description: str = ""
    results: dict[float, str] = field(default_factory=dict)  # beta -> phase holding its final model

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise InputError(f"recipe {self.name!r} has no phase {name!r}")


#: The P-frame networks the pframe phase starts afresh: the iframe phase never trained them.
P_NETWORKS = ("motion_predictor", "m_analysis", "m_synthesis", "r_analysis", "r_synthesis")
#: The I-frame codec, frozen while the fresh P-frame networks learn on it: trained jointly from the
#: start, the P-frame losses' gradients through the reference frame degraded it (bikes I-frame
#: 39.9 -> 30.7 dB PSNR-YUV at 2.8x the bits after 2,000 steps).
I_NETWORKS = ("i_analysis", "i_synthesis", "i_hyper_analysis", "i_hyper_synthesis", "i_z_prior")


def _cpu_recipe(name: str, config: str, scale: float) -> Recipe:
    """The 2-core CPU schedule for `config`; `scale` multiplies every phase's steps."""
    base = 0.0032
    crop = (128, 128)  # iframe and pframe phases (the I-frame codec works at any size: bigbuckbunny
    # frame 0 coded whole or as 128x128 tiles, 0.104 / 0.098 bpp at 32.2 / 32.1 dB)
    big_crop = (256, 256)

    def n(steps: int) -> int:
        return max(2, int(steps * scale))

    phases = [
        Phase("iframe", 1, dict(gop=1, crop=crop, batch_size=8, lr=1e-3, lr_final=5e-5, steps=n(40_000))),
        Phase("pframe", 1, dict(gop=4, crop=crop, batch_size=4, lr=3e-4, lr_final=3e-5, steps=n(20_000),
                                flow_lambda_pred=0.1, flow_lambda_rec=0.1, flow_lambda_teacher=2e-3,
                                teacher_steps=n(5_000), noisy_synthesis=("m", "r")),
              init="iframe", reinit=P_NETWORKS, freeze=I_NETWORKS),
        # Random rollout depth 0..12: trained at one depth (the first pframe definition), the flow
        # recursion amplified beyond it (bikes, pframe step 12,000: mean |flow| 0.77 px at frame 1,
        # 3.7 px from frame 14, motion bits 8.8k -> 31k). After 600 such steps it stayed at 0.87-1.45 px
        # and 6.8k-11.3k bits in frames 3-29 (the note of 2026-11-29 has the commands).
        # Crops of 256x256 (Table 5's): trained on 128x128 crops only, the residual coder worked at
        # that size and failed on whole frames (bikes P-frame 1, residual latents: 1,208 bits coded
        # as 128x128 tiles, 57,649 bits as one 640x272 frame). 600 steps at 256x256 brought the
        # whole frame to 1,247 bits and bikes' P-frames from 47,505 to 6,476 bits (33.1 -> 33.9 dB).
        Phase("rollout", 2, dict(gop=3, rollout=12, rollout_random=True, crop=big_crop, batch_size=2, lr=1e-4,
                                 lr_final=1e-5, steps=n(5_000), tau=1.2),
              init="pframe", freeze=I_NETWORKS),
    ]
    results = {base: "rollout"}
    # 0.0004 and 0.0256 come last: they were added after the others had trained, and appending keeps
    # the phase order (and the status listing) of existing runs unchanged. 0.0512 likewise (session
    # 12): the seven points span 1.88 dB on carphone (issue #13 asks for 2), and the curve is
    # steepest at its low-rate end (b0.0128 -> b0.0256: -0.80 dB; b0.0008 -> b0.0004: +0.17 dB).
    for beta in (0.0008, 0.0016, 0.0064, 0.0128, 0.0004, 0.0256, 0.0512):
        tag = f"b{beta:g}"
        # The I-frame codec moves to the new beta on its own loss (detach_iframe), the P-frame
        # networks on theirs. (I-frame alone at beta 0.0128, lr 1e-4, 1,500 steps from iframe/final.pt:
        # bigbuckbunny frame 0 went from 0.112 to 0.069 bpp, 32.7 to 31.5 dB.)
        phases.append(Phase(tag, 2, dict(gop=3, rollout=12, rollout_random=True, detach_iframe=True, crop=big_crop,
                                         batch_size=2, lr=1e-4, lr_final=5e-6, steps=n(3_000), tau=1.2),
                            init="rollout", beta=beta))
        results[beta] = tag
    # Radius 6: the pframe phase was trained with it. Radius 32 predicts bikes and bigbuckbunny
    # 6-14 dB better (motion_search.py), but 600 rollout steps from pframe step 12,000 at 256x256
    # (radius 32, confident-only hint) coded bikes' P-frames at 9,999 bits / 34.89 dB, against
    # 6,476 bits / 33.94 dB with radius 6: the extra motion bits outweighed the residual saved.
    return Recipe(name=name, config=config, base_beta=base, phases=tuple(phases), results=results,
                  motion_search_radius=6,
                  description=f"{config}: I-frame codec, then P-frame networks, then stage-2 rollout "
                              f"fine-tuning, then one fine-tuning per extra beta ({len(results)} rate points)")


RECIPES = {
    "tiny-cpu": lambda: _cpu_recipe("tiny-cpu", "tiny", 1.0),
    # Same phases at 1/1000 of the steps: proves the whole schedule end to end in a minute.
    "tiny-smoke": lambda: dataclasses.replace(_cpu_recipe("tiny-smoke", "tiny", 1e-3), checkpoint_every=5),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]()


def phase_options(recipe: Recipe, phase: Phase, run_dir: Path, data: list[str] | None = None,
                  batch_scale: int = 1) -> Any:
    """The TrainOptions of one phase inside recipe folder `run_dir`."""
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.stages import get_stage
    from mobilecodec.train.trainer import TrainOptions

    over = dict(phase.overrides)
    over["batch_size"] = over["batch_size"] * batch_scale
    stage = get_stage(phase.stage, **over)
    init = str(run_dir / phase.init / "final.pt") if phase.init else None
    cfg = get_config(recipe.config)
    return TrainOptions(run_dir=str(run_dir / phase.name), data=recorded_data(data or recipe.data),
                        beta=phase.beta or recipe.base_beta, stage=stage, config=recipe.config,
                        init=init, reinit=phase.reinit, freeze=phase.freeze, motion_hint=cfg.motion_hint,
                        motion_search_radius=recipe.motion_search_radius or cfg.motion_search_radius,
                        checkpoint_every=recipe.checkpoint_every,
                        augment=True, keep_checkpoints=2)


def phase_status(opts: Any) -> tuple[str, int]:
    """('done' | 'partial' | 'new', step reached) of one phase's run folder."""
    from mobilecodec.train.trainer import STATE_FILE, read_state

    run = Path(opts.run_dir)
    if not (run / STATE_FILE).is_file():
        return "new", 0
    state = read_state(run)
    _check_same_phase(opts, state["options"], run)
    step = int(state["step"])
    done = step >= opts.stage.steps and (run / "final.pt").is_file()
    return ("done" if done else "partial"), step


#: Options that define what a phase trains; a folder saved with other values is another phase
#: (data too: a phase continued on other data than it started on would be neither's model).
_PHASE_DEFINING = ("config", "beta", "data", "reinit", "freeze")


def _check_same_phase(opts: Any, saved: dict[str, Any], run: Path) -> None:
    """Raise InputError when the phase folder `run` was trained with other options than `opts`."""
    from mobilecodec.train.stages import StageConfig

    stage = opts.stage.to_dict()
    saved_stage = StageConfig.from_dict(saved["stage"]).to_dict()  # fields added since: their defaults
    diffs = [k for k in stage if k != "batch_size" and json_plain(saved_stage[k]) != json_plain(stage[k])]
    diffs += [k for k in _PHASE_DEFINING
              if k != "data" and json_plain(saved.get(k, ())) != json_plain(getattr(opts, k))]
    if [data_identity(d, strict=False) for d in saved.get("data", ())] != \
            [data_identity(d, strict=False) for d in opts.data]:  # one source under any spelling
        diffs.append("data")
    if diffs == ["data"]:  # most often a continuation without the --data it started with
        raise InputError(f"{run} was trained on --data {' '.join(map(str, saved.get('data', ())))}, not "
                         f"{' '.join(map(str, opts.data))}: continue it with the same --data, or move it away "
                         "to train the phase again")
    if diffs:
        raise InputError(f"{run} was trained with other options than this recipe's phase ({', '.join(diffs)}); "
                         f"move it away to train the phase again")


def recipe_phases(folder: str | os.PathLike) -> list[str]:
    """The phase folders of a recipe run under `folder`: those named as a recipe's phases that hold a
    trainer state (a folder of a user's own runs is no recipe's)."""
    from mobilecodec.train.trainer import STATE_FILE

    p = Path(folder)
    names = {phase.name for name in RECIPES for phase in get_recipe(name).phases}
    return sorted(d.name for d in p.iterdir() if d.name in names and (d / STATE_FILE).is_file()) if p.is_dir() else []


def refuse_recipe_folder(run: str | os.PathLike) -> None:
    """InputError when `run` is a recipe's folder: a plain run in it would mix its checkpoints and
    logs with the phases' (and a resume of it found "nothing to resume")."""
    from mobilecodec.train.trainer import STATE_FILE

    phases = recipe_phases(run)
    if phases and not (Path(run) / STATE_FILE).is_file():
        raise InputError(f"{run} is a recipe's folder (phases {', '.join(phases)}); continue it with "
                         f"--recipe NAME, or choose another -o")


def run_recipe(recipe: Recipe, run_dir: str | os.PathLike, *, data: list[str] | None = None,
               device: str = "auto", threads: int | None = None, batch_scale: int = 1,
               minutes: float | None = None, stop_after_steps: int | None = None, until: str | None = None,
               only: str | None = None, progress: bool = True, bf16: bool = False, channels_last: bool = True,
               data_workers: int = 0) -> dict[str, Any]:
    """Run (or continue) `recipe` in `run_dir`; returns a summary with each phase's status.

    Stops early, at a checkpoint, after `minutes` of wall time or `stop_after_steps` steps (this
    invocation, all phases together), or after phase `until`. With `only`, trains that phase alone
    (its init phase must be finished): the rate-point phases all start from the same model, so
    separate processes can train them side by side."""
    import time

    from mobilecodec.train.trainer import STATE_FILE, train

    run_dir = Path(run_dir)
    if (run_dir / STATE_FILE).is_file() or (run_dir / "last.pt").is_file():
        raise InputError(f"{run_dir} holds a plain training run, not a recipe's phases; continue it with "
                         f"`train --resume -o {run_dir}`, or choose another -o")
    if until is not None and only is not None:  # an --until before --phase stopped first: nothing trained, exit 0
        raise InputError("--phase trains one phase, --until the phases up to one: give one of them")
    if until is not None:
        recipe.phase(until)
    if only is not None:
        recipe.phase(only)
    from mobilecodec.train.data import data_identity, refuse_held_out

    for entry in data or ():  # a mistyped --data or the held-out clip fails before the first phase starts
        data_identity(entry)   # (its folder was left, and the advice was --allow-held-out, which a recipe refuses)
        refuse_held_out(entry, "a recipe never trains on it: give other --data (e.g. "
                        f"{' '.join(DEFAULT_TRAIN_DATA)}, the default)")
    deadline = time.monotonic() + 60.0 * minutes if minutes else None
    steps_left = stop_after_steps
    report: list[dict[str, Any]] = []
    stopped = False
    for phase in recipe.phases:
        opts = phase_options(recipe, phase, run_dir, data, batch_scale)
        status, step = phase_status(opts)
        if status != "done" and not stopped and only in (None, phase.name):
            if phase.init and phase_status(phase_options(recipe, recipe.phase(phase.init), run_dir, data,
                                                         batch_scale))[0] != "done":
                raise InputError(f"phase {phase.name} needs phase {phase.init} finished first")
            seconds = None if deadline is None else max(1.0, deadline - time.monotonic())
            opts = dataclasses.replace(opts, device=device, threads=threads, progress=progress, bf16=bf16,
                                       channels_last=channels_last, data_workers=data_workers,
                                       stop_after_steps=steps_left, stop_after_seconds=seconds)
            if status == "partial":
                from mobilecodec.train.trainer import read_state

                was = read_state(Path(opts.run_dir))["options"]["stage"]["batch_size"]
                if was != opts.stage.batch_size:  # allowed (a CPU start continued on a GPU), but said
                    print(f"note: phase {phase.name} continues at batch {opts.stage.batch_size} (it ran at {was}, "
                          f"another --batch-scale): it will not end as one uninterrupted run would", file=sys.stderr)
            print(f"recipe {recipe.name}: phase {phase.name} ({'resuming at step ' + str(step) if step else 'new'}"
                  f" of {opts.stage.steps}, beta {opts.beta:g})", file=sys.stderr)
            summary = train(opts, resume=status == "partial")
            status, step = phase_status(opts)
            if steps_left is not None:
                steps_left -= summary["steps_run"]
            if status != "done":
                stopped = True
        if status == "done":  # also for a phase finished earlier: a fresh checkout has no results/
            _export_result(recipe, phase, run_dir)
        report.append({"phase": phase.name, "status": status, "step": step, "steps": opts.stage.steps,
                       "beta": opts.beta})
        if until == phase.name or only == phase.name:
            break
        if (steps_left is not None and steps_left <= 0) or (deadline is not None and time.monotonic() >= deadline):
            stopped = True
    return {"recipe": recipe.name, "run_dir": str(run_dir), "phases": report,
            "complete": len(report) == len(recipe.phases) and all(r["status"] == "done" for r in report),
            "results": {f"{b:g}": str(run_dir / "results" / f"{recipe.config}_b{b:g}.pt")
                        for b, p in recipe.results.items() if (run_dir / p / "final.pt").is_file()}}


def _export_result(recipe: Recipe, phase: Phase, run_dir: Path) -> None:
    """Copy a finished phase's final model to results/<config>_b<beta>.pt when it is a rate point."""
    from mobilecodec.fsutil import atomic_path

    for beta, name in recipe.results.items():
        if name == phase.name:
            target = run_dir / "results" / f"{recipe.config}_b{beta:g}.pt"
            final = run_dir / phase.name / "final.pt"
            if target.is_file() and filecmp.cmp(target, final, shallow=False):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(final, tmp)
