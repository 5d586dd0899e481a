"""Training-stage presets from Table 5 of the MobileNVC appendix (the float stages 1 and 2;
PTQ and QAT live in the quantization package).

Loss of one GOP of G frames (see `mobilecodec.train.losses`):
    L = (L_I + sum_{t=1..G-1} tau^(t-1) * L_P,t) / G
    L_I   = D_I + beta * R_I
    L_P,t = D_P,t + p_rate_factor * beta * R_P,t   (t counted after the `rollout` gradient-free P-frames)
            + flow_lambda_pred * D(warp(ref, f^P_t), x_t) + flow_lambda_rec * D(warp(ref, f_hat_t), x_t)
            + teacher_weight(step) * |f_hat_t - block_match(ref, x_t)|  (see `mobilecodec.train.motion_teacher`)
D is the MSE of the YUV420 frame in [0, 1] with Y:U:V weighted 6:1:1 (the PSNR-YUV convention the
evaluation uses), R is bits per luma pixel from the likelihoods. tau > 1 weights later P-frames
more (the t-th P-frame by tau^(t-1)), which counters error accumulation along the GOP.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mobilecodec.errors import InputError


def json_plain(v: Any) -> Any:
    """`v` as a JSON round trip gives it back (tuples as lists, nested), so that saved options compare
    equal with given ones."""
    return [json_plain(x) for x in v] if isinstance(v, list | tuple) else v


#: Float fields of StageConfig and the option that sets each (they must be finite).
_FLOAT_OPTIONS = {"lr": "--lr", "lr_final": "--lr-final", "p_rate_factor": "--p-rate-factor", "tau": "--tau",
                  "flow_lambda_pred": "--flow-lambda", "flow_lambda_rec": "--flow-lambda",
                  "flow_lambda_teacher": "--flow-teacher", "grad_clip": "--clip",
                  "ref_grad_scale": "--ref-grad-scale"}


def check_finite(options: Any, names: dict[str, str]) -> None:
    """InputError naming (as `names` maps a field to its option) the first float field of `options`
    that is nan or infinite; run before range checks, which nan passes."""
    for name, option in names.items():
        value = getattr(options, name)
        if value is not None and not math.isfinite(value):
            raise InputError(f"{option} must be a finite number, got {value}")


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one training stage (one column of Table 5)."""

    stage: int
    batch_size: int
    gop: int
    crop: tuple[int, int]  # (height, width) in luma pixels, multiples of 64
    lr: float
    steps: int
    p_rate_factor: float = 2.0  # P-frames use rate multiplier p_rate_factor * beta
    tau: float = 1.0  # P-frame loss modulation: the t-th P-frame is weighted tau^(t-1)
    flow_lambda_pred: float = 0.0  # auxiliary loss on the predicted flow f^P
    flow_lambda_rec: float = 0.0  # auxiliary loss on the reconstructed (decoded) flow f_hat
    # L1 loss (luma pixels) of the decoded flow towards a block-matching teacher; keeps the motion
    # path from collapsing to "send no motion" (motion_teacher.py says why)
    flow_lambda_teacher: float = 0.0
    teacher_radius: int = 6  # search range of the teacher, luma pixels each way
    # The teacher's weight falls linearly from flow_lambda_teacher at step 1 to 0 after this step
    # (1/teacher_steps of it at step teacher_steps, 0 from the next; None: constant). It only has to lift the motion path out of collapse; kept on, it makes the
    # codec send block-matching vectors where cheaper motion would do (measured: 75 motion bits
    # per 8x8 block of bikes at step 3,000 of a run with a constant teacher).
    teacher_steps: int | None = None
    # Latent prefixes ("i", "m", "r") whose synthesis trains on y + U(-.5, .5) instead of the
    # straight-through rounded y. Freshly initialised P-frame autoencoders need it: with rounding
    # their latents shrank into the dead zone within 200 steps and never carried information.
    noisy_synthesis: tuple[str, ...] = ()
    grad_clip: float = 1.0  # max global gradient norm (0 disables clipping)
    yuv_weights: tuple[float, float, float] = (6.0, 1.0, 1.0)  # Y:U:V weights of the MSE
    # Error-propagation-aware training (HyTIP Table A6 "EPA"): the first `rollout` P-frames of each
    # GOP run without gradients and add no loss, so the trained P-frames start from a buffer that
    # has drifted as it does deep inside a long intra period. The GOP sampled is gop + rollout.
    rollout: int = 0
    # Draw each step's rollout depth uniformly from 0..rollout (the global torch RNG, seeded per
    # step, so a resumed run draws the same depths). A fixed depth only shows the trained frames the
    # buffer of one chain position; the motion recursion (flow -> predictor -> flow) must stay stable
    # at every depth of a 32-frame intra period, not only at the one it trained on.
    rollout_random: bool = False
    # The P-frames see the I-frame's reconstruction and buffer detached, so the I-frame codec learns
    # from its own rate-distortion loss only. Lets a rate-point fine-tune move the I-frame to its
    # beta without the P-frame losses' gradients through the reference, which damaged it when
    # they did reach it (recipe.I_NETWORKS says by how much).
    detach_iframe: bool = False
    # Gradient through the temporal recursion scaled by this factor per frame (the forward pass is
    # unchanged). Full backprop through a long GOP explodes: on tiny_b0.0064 the gradient norm
    # grows from 0.01 (GOP 4) to 2-3 (12), 24-108 (16) and 4e4-1.4e5 (24) (docs/results/rd.md,
    # "Training through the whole intra period"); a factor below 1 bounds each frame's reach into the past.
    ref_grad_scale: float = 1.0
    # Cosine decay of the learning rate from `lr` (step 0) to `lr_final` (last step); None keeps
    # `lr` constant (Table 5). A function of the step only, so a resumed run follows the same curve.
    lr_final: float | None = None

    def teacher_weight(self, step: int) -> float:
        """Weight of the motion teacher's loss at step `step` (1-based)."""
        if self.teacher_steps is None:
            return self.flow_lambda_teacher
        return self.flow_lambda_teacher * max(0.0, 1.0 - (step - 1) / self.teacher_steps)

    def replace(self, **changes) -> StageConfig:
        """A copy with the given fields changed (None values are ignored), validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out

    def lr_at(self, step: int) -> float:
        """Learning rate of step `step` (1-based)."""
        if self.lr_final is None:
            return self.lr
        frac = min(max(step - 1, 0) / max(self.steps - 1, 1), 1.0)
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1.0 + math.cos(math.pi * frac))

    def validate(self) -> None:
        """Raise InputError for values training cannot use."""
        check_finite(self, _FLOAT_OPTIONS)  # first: nan passes every comparison, inf most
        h, w = self.crop
        if h <= 0 or w <= 0 or h % 64 or w % 64:
            raise InputError(f"crop must be a positive multiple of 64 in both dimensions (the codec pads "
                             f"frames to multiples of 64), got {h}x{w} (HxW)")
        if self.gop < 1:
            raise InputError(f"GOP length must be >= 1, got {self.gop}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.lr_final is not None and not 0 < self.lr_final <= self.lr:
            raise InputError(f"final learning rate (--lr-final) must be in (0, lr] (lr {self.lr:g}), got {self.lr_final:g}")
        if self.rollout < 0:
            raise InputError(f"rollout must be >= 0, got {self.rollout}")
        if self.rollout_random and not self.rollout:
            raise InputError("a random rollout depth needs rollout > 0 (the largest depth)")
        if not 0 <= self.ref_grad_scale <= 1:
            raise InputError(f"the reference gradient scale must be in [0, 1], got {self.ref_grad_scale}")
        if self.tau <= 0:
            raise InputError(f"P-frame loss modulation tau must be positive, got {self.tau}")
        if set(self.noisy_synthesis) - {"i", "m", "r"}:
            raise InputError(f"noisy_synthesis takes latent prefixes i, m, r; got {self.noisy_synthesis}")
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise InputError(f"teacher_steps must be >= 1, got {self.teacher_steps}")
        if self.teacher_radius < 1:
            raise InputError(f"teacher search radius must be >= 1, got {self.teacher_radius}")
        for name in ("flow_lambda_pred", "flow_lambda_rec", "flow_lambda_teacher", "grad_clip"):
            if getattr(self, name) < 0:
                raise InputError(f"{_FLOAT_OPTIONS[name]} must be >= 0, got {getattr(self, name)}")
        if self.teacher_steps is not None and not self.flow_lambda_teacher:
            raise InputError("--teacher-steps only applies with --flow-teacher LAMBDA above 0 (it decays the "
                             "motion teacher's weight)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> StageConfig:
        d = dict(d)
        d["crop"] = tuple(d["crop"])
        d["yuv_weights"] = tuple(d["yuv_weights"])
        d.setdefault("rollout", 0)
        d.setdefault("rollout_random", False)
        d.setdefault("detach_iframe", False)
        d.setdefault("ref_grad_scale", 1.0)
        d.setdefault("lr_final", None)
        d.setdefault("flow_lambda_teacher", 0.0)
        d.setdefault("teacher_radius", 6)
        d.setdefault("teacher_steps", None)
        d["noisy_synthesis"] = tuple(d.get("noisy_synthesis", ()))
        return StageConfig(**d)


#: Table 5, stage 1 (training) and stage 2 (fine-tuning).
STAGES: dict[int, StageConfig] = {
    1: StageConfig(stage=1, batch_size=8, gop=4, crop=(256, 256), lr=1e-4, steps=1_000_000, tau=1.0,
                   flow_lambda_pred=0.1, flow_lambda_rec=0.1),
    2: StageConfig(stage=2, batch_size=16, gop=7, crop=(256, 384), lr=5e-5, steps=250_000, tau=1.2,
                   flow_lambda_pred=0.0, flow_lambda_rec=0.0),
}


def get_stage(stage: int, **overrides) -> StageConfig:
    """The Table 5 preset of `stage` (1 or 2) with fields overridden (None = keep the preset)."""
    if stage not in STAGES:
        raise InputError(f"unknown training stage {stage!r}; stages: {', '.join(map(str, sorted(STAGES)))}")
    return STAGES[stage].replace(**overrides)
