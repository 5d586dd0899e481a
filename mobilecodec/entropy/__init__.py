"""Entropy models and range coding for the codec's latents and hyper-latents.

Modules: `scale_table` (log-spaced Gaussian scales), `coder` (range coder over integer pmfs),
`gaussian` (GaussianConditional, latents), `factorized` (FactorizedPrior, hyper-latents),
`int_hyper` (exact-integer hyper-synthesis giving table indices). Only the numpy-level parts are
imported here; import the torch modules from their submodules.
"""

from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder, quantize_pmf
from mobilecodec.entropy.scale_table import ScaleTable, scale_from_index

__all__ = ["RangeDecoder", "RangeEncoder", "ScaleTable", "quantize_pmf", "scale_from_index"]
