"""A VideoCodec whose NPU stages are aimet sim models, so the training forwards and the coding
engine (`run_iframe` / `run_pframe`, `encode_video` / `decode_video`) run int8-simulated.

Entropy models, the exact-integer hyper-synthesis and the (float, training-only) hyper-synthesis
stages stay as in the float checkpoint: they run on the host.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from mobilecodec.models.codec import VideoCodec
from mobilecodec.quant.config import QuantConfig
from mobilecodec.tensors import state_digest

INT8_SUFFIX = "+int8"


class QuantizedVideoCodec(VideoCodec):
    """VideoCodec with `sims[name].model` in place of each quantized stage.

    The sims' modules are registered submodules, so `state_dict()` and hence `weights_hash()`
    cover the float weights *and* every quantizer's encoding: a stream made with these
    encodings names exactly this quantized model. `cfg.name` gets the suffix '+int8', so the
    stream header's config id tells a float decoder why it must refuse the stream."""

    def __init__(self, float_model: VideoCodec, sims: "OrderedDict[str, object]", qcfg: QuantConfig) -> None:
        super().__init__(float_model.cfg)
        for name, sim in sims.items():
            setattr(self, name, sim.model)
            if not getattr(sim.model, "_plain_output_hook", False):
                sim.model.register_forward_hook(_plain_outputs)
                sim.model._plain_output_hook = True
        prefixes = tuple(f"{n}." for n in sims)
        rest = {k: v for k, v in float_model.state_dict().items() if not k.startswith(prefixes)}
        missing, unexpected = self.load_state_dict(rest, strict=False)
        if unexpected or any(not k.startswith(prefixes) for k in missing):
            raise ValueError(f"float model does not match the quantized codec: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        self.__dict__["sims"] = sims  # plain attribute: the modules are already registered above
        self.__dict__["qcfg"] = qcfg
        self.float_config_name = float_model.cfg.name
        self.cfg = float_model.cfg.replace(name=float_model.cfg.name + INT8_SUFFIX)
        self.eval()

    def weights_hash(self) -> bytes:
        """16-byte digest of float weights, entropy tables and every quantizer's state (encoding
        min/max, qmin/qmax i.e. bitwidth, symmetry), so W8A8 and W8A16 variants differ too.
        (aimet keeps a dict `_extra_state` per quantizer, which VideoCodec.weights_hash cannot hash.)"""
        return state_digest(_flatten(self.state_dict()), salt=b"mobilecodec-int8-sim")

    def quantizer_state(self) -> "OrderedDict[str, dict]":
        """Per stage: aimet's quantizer_state_dict (encodings only, exact, no JSON round trip)."""
        return OrderedDict((n, sim.quantizer_state_dict()) for n, sim in self.sims.items())

    def float_state(self) -> dict:
        """State of everything that is not a sim (entropy models, integer hyper-synthesis, ...)."""
        prefixes = tuple(f"{n}." for n in self.sims)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(prefixes)}


def _flatten(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested state (tensors and dicts of tensors) -> flat name -> tensor."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        else:
            out[f"{prefix}{k}"] = torch.as_tensor(v)
    return out


def _plain(t):
    if isinstance(t, torch.Tensor) and type(t) is not torch.Tensor:
        return t.as_subclass(torch.Tensor)
    return t


def _plain_outputs(module, inputs, output):
    """aimet returns DequantizedTensor subclasses; hand plain tensors to the host code (warp,
    entropy coding), which is otherwise slowed down several-fold by __torch_function__ dispatch."""
    if isinstance(output, tuple):
        return tuple(_plain(t) for t in output)
    return _plain(output)
