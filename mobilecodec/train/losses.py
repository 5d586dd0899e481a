"""Rate-distortion loss of an unrolled GOP (Table 5): I-frame D + beta R, P-frames D + 2 beta R with
loss modulation tau and the stage-1 auxiliary flow losses. The whole GOP runs inside one module
(`GopLoss`) so that DistributedDataParallel sees a single forward per step and every parameter
is used (for GOPs of 2 frames or more). The graph is kept through the GOP (the buffer is not
detached), so gradients flow back through the temporal recursion.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mobilecodec.metrics.psnr import psnr_from_mse
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.warp import warp_frame
from mobilecodec.models.motion_search import block_match
from mobilecodec.train.motion_teacher import teacher_loss
from mobilecodec.train.stages import StageConfig

#: Column order of the per-frame statistics GopLoss returns.
STAT_COLUMNS = ("loss", "mse", "bpp", "flow_pred_mse", "flow_rec_mse", "flow_teacher_err")


def yuv_mse(x_hat: Tensor, x: Tensor, weights: tuple[float, float, float] = (6.0, 1.0, 1.0)) -> Tensor:
    """Per-sample MSE (N,) of packed YUV420 tensors (N, 6, H/2, W/2), planes weighted Y:U:V.

    The packed tensor holds 4 luma channels and one each of U and V, so its plain mean weighs
    the planes 4:1:1; the default 6:1:1 matches PSNR-YUV."""
    se = (x_hat - x).pow(2)
    wy, wu, wv = weights
    mse_y = se[:, :4].mean(dim=(1, 2, 3))
    mse_u = se[:, 4].mean(dim=(1, 2))
    mse_v = se[:, 5].mean(dim=(1, 2))
    return (wy * mse_y + wu * mse_u + wv * mse_v) / (wy + wu + wv)


def bits_per_pixel(likelihoods: dict[str, Tensor], luma_pixels: int) -> Tensor:
    """Per-sample rate (N,) in bits per luma pixel: -sum log2(p) over every latent / (H * W)."""
    total = None
    for lik in likelihoods.values():
        bits = -torch.log2(lik).flatten(1).sum(dim=1)
        total = bits if total is None else total + bits
    return total / luma_pixels


def scale_gradient(t: Tensor, factor: float) -> Tensor:
    """`t` in the forward pass (bit for bit: t - t.detach() is exactly 0), its gradient times `factor`."""
    if factor == 1.0:
        return t
    d = t.detach()
    return d + factor * (t - d)


def _damped(buf, prev: Tensor, factor: float):
    """The buffer and reconstruction handed to the next P-frame, their gradients scaled."""
    if factor == 1.0:
        return buf, prev
    return type(buf)({k: scale_gradient(buf[k], factor) for k in buf.names()}), scale_gradient(prev, factor)


class GopLoss(nn.Module):
    """Runs a VideoCodec over a GOP (I-frame then P-frames) and returns the training loss.

    forward(frames (G, N, 6, H/2, W/2)) -> (loss scalar, stats (G, len(STAT_COLUMNS)) detached,
    batch means per frame: frame loss, MSE (Y:U:V weighted), bpp, and the flow-loss MSEs (0 for
    the I-frame or when the flow losses are off). `rollout_depth` replaces the random rollout depth
    (`last_rollout_depth` holds the one used last)."""

    def __init__(self, model: VideoCodec, beta: float, stage: StageConfig) -> None:
        super().__init__()
        self.model = model
        self.beta = float(beta)
        self.stage = stage
        model.noisy_synthesis = tuple(stage.noisy_synthesis)
        self.step = 1  # the training step, set by the trainer (the motion teacher's weight decays with it)
        self.last_rollout_depth = 0  # the depth of the last forward (to run the same GOP again)

    def forward(self, frames: Tensor, rollout_depth: int | None = None) -> tuple[Tensor, Tensor]:
        st, m = self.stage, self.model
        g, _, _, h2, w2 = frames.shape
        luma_pixels = 4 * h2 * w2
        rows = []
        x = frames[0]
        out = m.forward_iframe(x)
        mse = yuv_mse(out["x_hat"], x, st.yuv_weights)
        rate = bits_per_pixel(out["likelihoods"], luma_pixels)
        frame_loss = (mse + self.beta * rate).mean()
        total = frame_loss
        zero = frame_loss.detach() * 0
        rows.append(torch.stack([frame_loss.detach(), mse.detach().mean(), rate.detach().mean(), zero, zero, zero]))
        buf, prev = out["buffer"], out["x_hat"]
        if st.detach_iframe:
            buf, prev = buf.detach(), prev.detach()
        buf, prev = _damped(buf, prev, st.ref_grad_scale)
        if st.rollout:  # EPA: drift the buffer without gradients, then train the next P-frames
            if rollout_depth is not None:  # a given depth (the same GOP again) instead of a drawn one
                depth = rollout_depth
            else:
                depth = int(torch.randint(0, st.rollout + 1, ())) if st.rollout_random else st.rollout
            self.last_rollout_depth = depth
            with torch.no_grad():
                for t in range(1, 1 + depth):
                    out = m.forward_pframe(frames[t], buf)
                    buf, prev = out["buffer"], out["x_hat"]
            buf, prev = buf.detach(), prev.detach()
            frames = torch.cat([frames[:1], frames[1 + depth:g - st.rollout + depth]])
            g = frames.shape[0]
        flow_losses = (st.flow_lambda_pred > 0 or st.flow_lambda_rec > 0) and m.cfg.uses_motion
        teacher_weight = st.teacher_weight(self.step)
        teach = teacher_weight > 0 and m.cfg.uses_motion
        for t in range(1, g):
            x = frames[t]
            out = m.forward_pframe(x, buf)
            mse = yuv_mse(out["x_hat"], x, st.yuv_weights)
            rate = bits_per_pixel(out["likelihoods"], luma_pixels)
            loss = mse + st.p_rate_factor * self.beta * rate
            fp = fr = ft = zero
            # the reference the decoder holds: the buffered frame, or the previous reconstruction
            # when the buffer has no frame
            ref = buf["frame"] if "frame" in buf else prev  # noqa: SIM401 (Buffer has no .get)
            if flow_losses:
                # Warp the reference with each flow; compare with x_t.
                fp = yuv_mse(warp_frame(ref, out["flow_pred"], m.cfg.warp), x, st.yuv_weights)
                fr = yuv_mse(warp_frame(ref, out["flow"], m.cfg.warp), x, st.yuv_weights)
                loss = loss + st.flow_lambda_pred * fp + st.flow_lambda_rec * fr
                fp, fr = fp.detach().mean(), fr.detach().mean()
            if teach:
                # the sender's motion search already matched these frames when the radii agree
                search = out["motion_search"] if st.teacher_radius == m.cfg.motion_search_radius else None
                target, confident = search or block_match(ref, x, m.cfg.warp.block_size, st.teacher_radius)
                ft = teacher_loss(out["flow"], target, confident)
                loss = loss + teacher_weight * ft
                ft = ft.detach().mean()
            frame_loss = loss.mean()
            total = total + st.tau ** (t - 1) * frame_loss
            rows.append(torch.stack([frame_loss.detach(), mse.detach().mean(), rate.detach().mean(), fp, fr, ft]))
            buf, prev = _damped(out["buffer"], out["x_hat"], st.ref_grad_scale)
        return total / g, torch.stack(rows)


def summarize(stats: Tensor) -> dict[str, float]:
    """Scalars for logs from GopLoss stats: mean bpp, PSNR (of the mean MSE, signal in [0, 1]), I and P bpp."""
    s = stats.detach().double().cpu()
    col = {name: s[:, i] for i, name in enumerate(STAT_COLUMNS)}
    out = {"bpp": float(col["bpp"].mean()), "mse": float(col["mse"].mean()),
           "psnr": psnr_from_mse(float(col["mse"].mean()), 1.0), "bpp_i": float(col["bpp"][0]),
           "psnr_i": psnr_from_mse(float(col["mse"][0]), 1.0)}
    if s.shape[0] > 1:
        out["bpp_p"] = float(col["bpp"][1:].mean())
        out["psnr_p"] = psnr_from_mse(float(col["mse"][1:].mean()), 1.0)
        out["flow_pred_mse"] = float(col["flow_pred_mse"][1:].mean())
        out["flow_rec_mse"] = float(col["flow_rec_mse"][1:].mean())
        out["flow_teacher_err"] = float(col["flow_teacher_err"][1:].mean())
    return out


@torch.no_grad()
def evaluate_gop(model: VideoCodec, frames: Tensor, beta: float, stage: StageConfig) -> dict[str, float]:
    """Deterministic loss on a fixed batch (eval mode: latents rounded, no noise); restores the
    model's train/eval mode. Returns {"loss", "bpp", "psnr", ...}."""
    was_training = model.training
    model.eval()
    try:
        loss, stats = GopLoss(model, beta, stage)(frames)
    finally:
        model.train(was_training)
    return {"loss": float(loss), **summarize(stats)}
