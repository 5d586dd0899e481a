"""Experiment (session 15): teach the P-frame networks a "nothing to add" state.

Session 14 found that on a still scene the residual decoder adds 0.7-1.4 levels RMS of noise per
P-frame even with the flow forced to zero, and the decoded flow wanders: the recurrence has no
stable fixed point. This fine-tune of tiny_b0.0064's P-frame networks (I-frame codec frozen, the
usual stage-2 rollout loss) adds, every step, one identity P-step: the buffer holds the source frame
itself (zero flow) and the frame to code is that same frame, so the ideal output is a copy at
almost no bits. Loss of that step: IDENTITY_WEIGHT x (YUV MSE + 2 beta x rate), added to the GOP loss.
Judged on the drift probes made from training stills (scripts/drift_probe.py), never on carphone.

  python training/exp-identity/run.py            # append --resume to continue
"""
import sys

import torch

from mobilecodec.train import losses

IDENTITY_WEIGHT = 1.0
_gop_forward = losses.GopLoss.forward


def forward(self, frames):
    total, stats = _gop_forward(self, frames)
    m, st = self.model, self.stage
    x = frames[1]
    n, _, h2, w2 = x.shape
    buf = m.initial_buffer(x, x.new_zeros(n, m.residual_feat_channels, h2, w2))
    out = m.forward_pframe(x, buf)
    mse = losses.yuv_mse(out["x_hat"], x, st.yuv_weights)
    rate = losses.bits_per_pixel(out["likelihoods"], 4 * h2 * w2)
    return total + IDENTITY_WEIGHT * (mse + st.p_rate_factor * self.beta * rate).mean(), stats


losses.GopLoss.forward = forward

from mobilecodec.cli import main  # noqa: E402

sys.exit(main(["train", "--stage", "2", "--beta", "0.0064", "--init", "mobilecodec/checkpoints/tiny_b0.0064.pt",
               "--gop", "3", "--rollout", "30", "--rollout-random", "--crop", "128x128", "--batch-size", "2",
               "--lr", "5e-5", "--tau", "1.2", "--freeze", "i_analysis", "i_synthesis", "i_hyper_analysis",
               "i_hyper_synthesis", "i_z_prior", "--augment", "--threads", "1", "--steps", "3000",
               "--checkpoint-every", "500", "--no-progress", "-o", "training/exp-identity/b0.0064", *sys.argv[1:]]))
