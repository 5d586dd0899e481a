"""Quantization-aware training (Table 5, stage 4): fine-tune the aimet sims of a PTQ model with the
straight-through estimator over unrolled GOPs.

aimet-torch 2.42's QuantizeDequantize is differentiable: the rounding passes gradients straight
through to the input and the weights, and each quantizer's `min` / `max` are nn.Parameters that
receive gradients too (range learning). Loss as in stage 2 (`mobilecodec.train.losses.GopLoss`):
I-frame D + beta R, P-frames D + 2 beta R weighted tau^(t-1) with tau = 1.2, D = MSE of the packed
YUV420 tensor (Y:U:V 6:1:1), R = bits per luma pixel from the likelihoods.

Only the sims (the NPU stages) are trained: the entropy models and the float hyper-synthesis stay
frozen, because the exact-integer hyper-synthesis and the CDF tables used for coding were derived
from them by `update()`; training them would desynchronise coding from the trained model.

Output folder: the `save_quantized` layout (quantized.pt, encodings/, qat.json) plus
qat_state.pt (step, optimizer state, options) for --resume. Randomness of step s (data sample,
rate noise) is a function of (seed, s), so a resumed run repeats an uninterrupted one of the same
--steps on CPU (a resume to another --steps continues on the cosine schedule of the new total, and says so).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mobilecodec.errors import InputError
from mobilecodec.quant.ptq import QAT_STATE_FILE as STATE_FILE
from mobilecodec.train.stages import check_finite, json_plain

STATE_FORMAT = "mobilecodec-qat-state"
STATE_VERSION = 1
SUMMARY_FILE = "qat.json"


# float fields -> how an error names them: the CLI's option, or the field where qat has no option
_FLOAT_OPTIONS = {"lr": "--lr", "lr_min": "--lr-min", "beta": "--beta", "tau": "--tau",
                  "p_rate_factor": "p_rate_factor", "grad_clip": "grad_clip"}


@dataclass
class QATOptions:
    """Table 5 stage 4 defaults: batch 16, GOP 4, 256x256 crops, lr 5e-7 cosine-decayed to 1e-9,
    tau 1.2, P-frame rate weight 2 beta, 100k steps (use far fewer on a CPU)."""

    steps: int = 100_000
    gop: int = 4
    batch: int = 16
    crop: tuple[int, int] = (256, 256)  # (H, W), multiples of 64
    lr: float = 5e-7
    lr_min: float = 1e-9
    beta: float | None = None  # None: the float checkpoint's beta
    tau: float = 1.2
    p_rate_factor: float = 2.0
    range_learning: bool = True
    # Train on the rounded latents the codec codes (straight-through gradients, the model in eval
    # mode) instead of uniform noise: measured on tiny_b0.0064, the noise forward's rate is 3.3x the
    # coded rate (0.0957 vs 0.0292 bpp on fixed training GOPs, scripts/qat_probe.py), and 40 noise
    # steps lowered the noise objective while raising the rounded one.
    ste: bool = False
    grad_clip: float = 1.0
    checkpoint_every: int = 1000
    seed: int = 0
    max_frames: int | None = None

    def validate(self) -> None:
        """InputError naming the option (as the CLI spells it; the two fields it has no option for by
        their names) of a value QAT cannot use."""
        check_finite(self, _FLOAT_OPTIONS)
        for name in ("steps", "gop", "batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.gop < 2:  # an I-frame alone: the seven P-frame stages would keep their PTQ weights and encodings
            raise InputError(f"--gop must be >= 2 (an I-frame and a P-frame: QAT trains the P-frame stages on "
                             f"P-frames), got {self.gop}")
        h, w = self.crop
        if h <= 0 or w <= 0 or h % 64 or w % 64:
            raise InputError(f"--crop must be a positive multiple of 64 (the codec's padding), got {h}x{w} (HxW)")
        if not self.lr > 0 or not self.lr_min >= 0 or self.lr_min > self.lr:
            raise InputError(f"need --lr > 0 and 0 <= --lr-min <= --lr, got --lr {self.lr}, --lr-min {self.lr_min}")
        if self.beta is not None and not self.beta > 0:
            raise InputError(f"--beta must be positive, got {self.beta}")
        if not self.tau > 0:
            raise InputError(f"--tau must be positive, got {self.tau}")
        for name in ("p_rate_factor", "grad_clip"):
            if getattr(self, name) < 0:
                raise InputError(f"{_FLOAT_OPTIONS[name]} must be >= 0, got {getattr(self, name)}")
        self.crop = tuple(self.crop)

    def stage(self):
        """The loss settings as a `mobilecodec.train.stages.StageConfig` (stage 4, no flow losses)."""
        from mobilecodec.train.stages import StageConfig

        return StageConfig(stage=4, batch_size=self.batch, gop=self.gop, crop=tuple(self.crop), lr=self.lr,
                           steps=self.steps, p_rate_factor=self.p_rate_factor, tau=self.tau,
                           grad_clip=self.grad_clip)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "QATOptions":
        d = dict(d)
        d["crop"] = tuple(d["crop"])
        d.setdefault("ste", False)  # runs saved before the option
        return QATOptions(**d)


def cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    """Learning rate of 1-based `step` of `total`: cosine decay from lr (step 1) to lr_min (last step)."""
    if total <= 1:
        return lr
    t = min(max(step - 1, 0), total - 1) / (total - 1)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))


def quantizer_parameters(qmodel) -> list:
    """The encoding parameters (min/max of every aimet quantizer) that range learning trains."""
    return [p for s in qmodel.sims.values() for n, p in s.model.named_parameters() if "_quantizers." in n]


def weight_parameters(qmodel) -> list:
    """The weights and biases of the quantized stages."""
    return [p for s in qmodel.sims.values() for n, p in s.model.named_parameters() if "_quantizers." not in n]


def set_trainable(qmodel, range_learning: bool) -> list:
    """Freeze everything, then unfreeze the sims' weights (and their quantizer ranges when
    `range_learning`); returns the trainable parameters. Quantizer parameters aimet itself keeps
    fixed (e.g. the min of an unsigned ReLU output) stay fixed."""
    fixed = getattr(qmodel, "_qat_fixed_ranges", None)
    if fixed is None:  # remember aimet's own frozen encodings once
        fixed = {id(p) for p in quantizer_parameters(qmodel) if not p.requires_grad}
        qmodel.__dict__["_qat_fixed_ranges"] = fixed
    for p in qmodel.parameters():
        p.requires_grad_(False)
    for p in weight_parameters(qmodel):
        p.requires_grad_(True)
    if range_learning:
        for p in quantizer_parameters(qmodel):
            if id(p) not in fixed:
                p.requires_grad_(True)
    return [p for p in qmodel.parameters() if p.requires_grad]


def step_seeds(seed: int, step: int):
    """(numpy generator for the data sample, torch seed for the rate noise) of one step."""
    import numpy as np

    ss = np.random.SeedSequence([seed, step])
    return np.random.default_rng(ss), int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def float_beta(qmodel) -> float | None:
    """The beta the quantized model was last trained with: an earlier QAT's (its summary), else the one
    recorded in the float checkpoint it was made from (None if unknown)."""
    summary = getattr(qmodel, "summary", {}) or {}
    if summary.get("beta"):
        return float(summary["beta"])
    ckpt = getattr(qmodel, "float_checkpoint", None)
    if ckpt and Path(ckpt).is_file():
        from mobilecodec.checkpoint import read_checkpoint

        beta = read_checkpoint(ckpt).get("beta")
        return float(beta) if beta else None
    return None


def qat_step(qmodel, gop_loss, optimizer, params: list, frames, lr: float, grad_clip: float) -> tuple[float, Any]:
    """One optimisation step on frames (G, N, 6, h, w); returns (loss, per-frame stats)."""
    import torch

    from mobilecodec.quant.sim import quiet_aimet

    for group in optimizer.param_groups:
        group["lr"] = lr
    with quiet_aimet():
        loss, stats = gop_loss(frames)
    if not torch.isfinite(loss):
        raise InputError(f"QAT diverged (loss {float(loss)}); lower --lr or change --beta")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    return float(loss.detach()), stats


def read_state(out_dir: str | os.PathLike) -> dict:
    """qat_state.pt of a QAT output folder (validated)."""
    from mobilecodec.checkpoint import read_run_state

    return read_run_state(out_dir, STATE_FILE, STATE_FORMAT, STATE_VERSION, "QAT")


def save_qat(out_dir: str | os.PathLike, qmodel, optimizer, opts: QATOptions, step: int, summary: dict) -> Path:
    """Write the output folder atomically: the PTQ layout (loadable by `load_quantized`), qat.json
    and qat_state.pt."""
    from mobilecodec.quant.ptq import save_quantized

    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step,
             "optimizer": optimizer.state_dict(), "options": opts.to_dict(),
             "source": summary.get("source")}
    return save_quantized(out_dir, qmodel, checkpoint=getattr(qmodel, "float_checkpoint", None),
                          summary=summary, summary_name=SUMMARY_FILE, extra={STATE_FILE: state})


#: Options that define a QAT run: a resume takes them from the run and refuses other values.
RUN_DEFINING = ("gop", "batch", "crop", "lr", "lr_min", "beta", "tau", "p_rate_factor", "range_learning", "ste",
                "grad_clip", "seed", "max_frames")


def _check_run_options(saved: QATOptions, given: dict[str, Any]) -> None:
    """InputError naming the first run-defining option in `given` whose value differs from the run's."""
    for name in RUN_DEFINING:
        have = getattr(saved, name)
        if name in given and given[name] is not None and json_plain(given[name]) != json_plain(have):
            flag = f"--{name.replace('_', '-')}"
            shown = "x".join(map(str, have)) if name == "crop" else have
            if isinstance(have, bool):  # name the switch as typed: --no-range-learning, not --range-learning
                flag, shown = (flag if given[name] else f"--no-{flag[2:]}"), ("on" if have else "off")
            raise InputError(f"{flag} differs from the run being resumed ({shown}); "
                             f"resume with the same options or start a new run")


def resume_options(out_dir: str | os.PathLike, steps: int | None = None, checkpoint_every: int | None = None,
                   **given: Any) -> QATOptions:
    """The options that resume the QAT run in `out_dir` to `steps` (None: the run's own target): the
    run's own, with `checkpoint_every` where given (None: the run's); InputError where an option in
    `given` (None: not given) is another value than the run's."""
    state = read_state(out_dir)
    saved = QATOptions.from_dict(state["options"])
    _check_run_options(saved, given)
    done = int(state["step"])
    if steps and steps != saved.steps and steps > done:
        import warnings

        from mobilecodec.errors import InputWarning

        warnings.warn(InputWarning(
            f"--steps {steps} is not the run's {saved.steps}: from step {done + 1} the learning rate follows a cosine "
            f"schedule of {steps} steps ({cosine_lr(done + 1, steps, saved.lr, saved.lr_min):.3g} there instead of "
            f"{cosine_lr(done + 1, saved.steps, saved.lr, saved.lr_min):.3g}), so the run no longer repeats an "
            f"uninterrupted one"), stacklevel=2)
    return dataclasses.replace(saved, steps=steps or saved.steps,
                               checkpoint_every=checkpoint_every or saved.checkpoint_every)


def _same_as_run(given: Any, saved: Any, option: str) -> Any:
    """On resume: the run's `saved` input, InputError when `given` (None: not given) is another."""
    if saved is None:  # a run saved before the field was recorded
        if given is None:
            raise InputError(f"{option} required: the run being resumed does not record it")
        return given
    if given is not None:
        from mobilecodec.train.data import data_identity

        from mobilecodec.quant.ptq import quantized_file  # a folder and its quantized.pt are one source

        norm = (lambda v: [data_identity(x, strict=False) for x in v]) if isinstance(saved, list) else \
            (lambda v: str(quantized_file(Path(v).resolve())))
        if norm(given) != norm(saved):
            raise InputError(f"{option} differs from the run being resumed ({saved}); resume with the same "
                             f"input or start a new run")
    return saved


def run_qat(source: str | os.PathLike | None, data: Sequence[str | os.PathLike] | None, out_dir: str | os.PathLike,
            opts: QATOptions | None = None, *, resume: bool = False, progress: bool = True,
            allow_held_out: bool = False) -> dict:
    """QAT of the quantized model in folder `source` (from `mobilecodec ptq`) on clips `data`;
    writes `out_dir` every `checkpoint_every` steps and at the end. Returns the summary.
    With `resume`, continues the run in `out_dir` with its source, data and history; `opts` (from
    `resume_options`; None: the run's own) must hold the run's options but for `steps` and
    `checkpoint_every`, and a `source` or `data` given must be the run's.
    The held-out clip is refused in `data` unless `allow_held_out`, as in training; the summary says
    whether the model was calibrated or trained on it. The process holds `out_dir` while it runs
    (`fsutil.run_lock`): a second qat or --resume of it is refused (one resumed from a state and a
    model the running one had saved at different steps)."""
    from mobilecodec.fsutil import run_lock

    with run_lock(out_dir, "QAT run"):
        return _run_qat(source, data, out_dir, opts, resume=resume, progress=progress, allow_held_out=allow_held_out)


def _run_qat(source: str | os.PathLike | None, data: Sequence[str | os.PathLike] | None, out_dir: str | os.PathLike,
             opts: QATOptions | None, *, resume: bool, progress: bool, allow_held_out: bool) -> dict:
    import torch

    from mobilecodec.progress import progress_bar
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss, summarize
    from mobilecodec.train.trainer import training_postfix

    out = Path(out_dir)
    start_step, state, history = 0, None, []
    if resume:
        state = read_state(out)
        saved = QATOptions.from_dict(state["options"])
        if opts is None:
            opts = saved
        _check_run_options(saved, dataclasses.asdict(opts))
        opts = dataclasses.replace(opts)  # run_qat fills in beta: not the caller's object
        start_step = int(state["step"])
        qmodel = load_quantized(out)
        run = getattr(qmodel, "summary", {}) or {}
        source, data = _same_as_run(source, state.get("source"), "--checkpoint"), \
            _same_as_run(data, run.get("data"), "--data")
        allow_held_out = allow_held_out or bool(run.get("allow_held_out"))
        history = [h for h in run.get("history", []) if h["step"] <= start_step]
    else:
        opts = dataclasses.replace(opts or QATOptions())
        if source is None or not data:
            raise InputError("QAT needs a quantized folder and training data")
        if (out / STATE_FILE).exists():
            raise InputError(f"{out} already holds a QAT run; use --resume to continue it or choose another -o")
        qmodel = load_quantized(source)
    opts.validate()
    if start_step >= opts.steps:
        raise InputError(f"{out} is already at step {start_step}; ask for more --steps than that to continue")
    if opts.beta is None:
        opts.beta = float_beta(qmodel)
        if opts.beta is None:
            raise InputError("the float checkpoint records no beta (or is missing); give --beta")
    data_src = TrainingData([str(d) for d in data], opts.gop, opts.crop, max_frames=opts.max_frames,
                            allow_held_out=allow_held_out)
    params = set_trainable(qmodel, opts.range_learning)
    optimizer = torch.optim.Adam(params, lr=opts.lr)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    stage = opts.stage()
    gop_loss = GopLoss(qmodel, opts.beta, stage)
    qmodel.train(not opts.ste)
    from mobilecodec.train.data import data_identity, is_held_out

    made_from = getattr(qmodel, "summary", {}) or {}  # ptq.json, or qat.json of the run or of an earlier QAT
    # absolute paths: a relative one made a resume from another folder read whatever had that name there
    data_ids = [data_identity(d, strict=False) for d in data]
    base = {"source": str(Path(source).resolve()), "data": data_ids,
            # every clip a QAT in this folder's making trained on (a QAT of a QAT kept its own alone)
            "qat_data": sorted(set(made_from.get("qat_data") or []) | set(made_from.get("data") or []) | set(data_ids)),
            "options": opts.to_dict(),
            "beta": opts.beta, "float_checkpoint": getattr(qmodel, "float_checkpoint", None),
            "float_weights_hash": made_from.get("float_weights_hash"),
            "calibration_clips": made_from.get("clips") or made_from.get("calibration_clips"),
            "calibrated_on_held_out": bool(made_from.get("calibrated_on_held_out")),
            "trained_on_held_out": bool(made_from.get("trained_on_held_out")) or (allow_held_out and any(is_held_out(d) for d in data)),  # TrainingData refused it otherwise
            "allow_held_out": bool(allow_held_out),
            "trainable_parameters": int(sum(p.numel() for p in params)),
            "quantized_config": qmodel.cfg.name, "start_step": start_step}
    t0 = time.perf_counter()
    ema: dict[str, float] = {}
    last: dict[str, float] = {}
    step = start_step
    bar = progress_bar(total=opts.steps, initial=start_step, desc="qat", unit="step", enabled=progress)
    try:
        for step in range(start_step + 1, opts.steps + 1):
            rng, torch_seed = step_seeds(opts.seed, step)
            torch.manual_seed(torch_seed)
            frames = data_src.batch(rng, opts.batch)
            lr = cosine_lr(step, opts.steps, opts.lr, opts.lr_min)
            loss, stats = qat_step(qmodel, gop_loss, optimizer, params, frames, lr, opts.grad_clip)
            last = {"step": step, "loss": loss, "lr": lr, **summarize(stats)}
            history.append({k: last[k] for k in ("step", "loss", "bpp", "psnr", "lr")})
            for k in ("loss", "bpp", "psnr"):
                ema[k] = last[k] if k not in ema else 0.9 * ema[k] + 0.1 * last[k]
            bar.update(1)
            bar.set_postfix(training_postfix(ema, {}, noisy=not opts.ste))  # --ste: rounded latents
            if step % opts.checkpoint_every == 0 and step != opts.steps:
                qmodel.eval()
                save_qat(out, qmodel, optimizer, opts, step, {**base, "step": step, "last": last, "history": history})
                qmodel.train(not opts.ste)
    finally:
        bar.close()
    qmodel.eval()
    seconds = time.perf_counter() - t0
    summary = {**base, "step": step, "steps_run": step - start_step, "seconds": seconds, "last": last,
               "history": history, "weights_hash": qmodel.weights_hash().hex(), "output": str(out)}
    save_qat(out, qmodel, optimizer, opts, step, summary)
    return summary
