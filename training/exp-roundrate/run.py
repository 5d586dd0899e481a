"""Experiment (session 25): fine-tune tiny_b0.0064's P-frame networks with the rate measured as the
coder spends it, the likelihood of mean + round(y - mean) (straight-through) instead of y + U(-.5, .5),
the mean detached inside the rounding so that the hyper-synthesis' mean gets a distortion gradient
(in the shipped training, mean + r + (round(r) - r).detach() with r = y - mean has no derivative in
the mean). Why: `scripts/rate_gap.py` measures the noise likelihood charging 4-20x the bits the coder
spends on P-frames (docs/results/training.md, "The rate that training sees"). The run reported there
was made with an earlier spelling of the same patch (the hyperprior written out in full): the same
loss at step 1, weights 3e-8 apart after it (float summation order), which the rollouts amplify."""
import sys

import torch

from mobilecodec.entropy.gaussian import GaussianConditional
from mobilecodec.models.codec import VideoCodec

P_PREFIXES = ("m", "r")
_active = [False]  # inside the hyperprior of a P-frame latent, in training
_hyperprior, _quantize = VideoCodec.hyperprior, GaussianConditional.quantize


def hyperprior(self, prefix, y):
    _active[0] = self.training and prefix in P_PREFIXES
    try:
        return _hyperprior(self, prefix, y)
    finally:
        _active[0] = False


def quantize(y, mean, mode):
    if not _active[0] or mean is None:
        return _quantize(y, mean, mode)
    r = y - mean.detach()  # value mean + round(y - mean) for the rate and the synthesis alike
    return mean + r + (torch.round(r) - r).detach()


VideoCodec.hyperprior = hyperprior
GaussianConditional.quantize = staticmethod(quantize)

from mobilecodec.cli import main  # noqa: E402

sys.exit(main(["train", "--stage", "2", "--beta", "0.0064", "--init", "mobilecodec/checkpoints/tiny_b0.0064.pt",
               "--gop", "3", "--rollout", "30", "--rollout-random", "--crop", "128x128", "--batch-size", "2",
               "--lr", "5e-5", "--tau", "1.2", "--freeze", "i_analysis", "i_synthesis", "i_hyper_analysis",
               "i_hyper_synthesis", "i_z_prior", "--augment", "--threads", "1", "--steps", "6000",
               "--checkpoint-every", "250", "--no-progress", "-o", "training/exp-roundrate/b0.0064", *sys.argv[1:]]))
