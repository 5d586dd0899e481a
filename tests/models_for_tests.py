"""Models the tests build themselves (not shipped, not part of the package)."""

from __future__ import annotations


def random_tiny(variant: str = "low"):
    """A random-init `tiny` (seed 0) that codes: I-frame output bias at mid-grey so reconstructions
    are not black; the 'high' variant scales the analyses' latents by 16 (more bits, another RD
    point), 'cheap' by 1/4 (fewer bits: 0.079 bpp on carphone's first 2 frames against 0.089 at 1/2
    and 0.176 unscaled, below every shipped checkpoint). NOT a trained codec: a deterministic model
    whose RD point differs from the shipped ones."""
    import torch

    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    scale, bias = {"low": (1.0, 0.5), "high": (16.0, 0.45), "cheap": (0.25, 0.5)}[variant]
    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny"))
    with torch.no_grad():
        model.i_synthesis.out.bias[:6] += bias
        for stage in ("i_analysis", "m_analysis", "r_analysis"):
            getattr(model, stage).out.weight *= scale
            getattr(model, stage).out.bias *= scale
    model.update()
    return model
