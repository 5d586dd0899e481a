"""AdaRound (aimet `Adaround.apply_adaround`) of every quantized stage on inputs captured from the
float codec running real calibration GOPs, then sims whose weight encodings are frozen.

Flow per stage: prepare_model (+ CLE) -> AdaRound on that prepared module (aimet works on a copy
and returns it with adarounded weights and a param-encodings JSON) -> QuantizationSimModel over
the adarounded copy -> set_and_freeze_param_encodings, so the activation calibration that follows
keeps AdaRound's weight grid. Module names are those of the prepared stage in both steps.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from mobilecodec.errors import InputError
from mobilecodec.quant.config import QuantConfig


def capture_stage_inputs(model, gops: torch.Tensor, names: Sequence[str], limit: int, *,
                         batch: int = 1) -> OrderedDict[str, list[tuple[torch.Tensor, ...]]]:
    """Inputs of the named stages while the FLOAT codec runs `gops` (N, G, 6, h, w) `batch` GOPs at a
    time (I-frame, then P-frames with the buffer carried over): at most `limit` input tuples per stage."""
    from mobilecodec.quant.calibrate import run_gop

    if limit < 1:
        raise InputError(f"AdaRound needs at least one input batch per stage, got {limit}")
    stages = model.stages()
    caught: OrderedDict[str, list] = OrderedDict((n, []) for n in names)

    def hook(name):
        def pre(module, args, kwargs):
            if kwargs:
                raise InputError(f"stage {name} is called with keyword arguments; AdaRound cannot replay them")
            if len(caught[name]) < limit:
                caught[name].append(tuple(a.detach().clone() for a in args))
        return pre

    handles = [stages[n].register_forward_pre_hook(hook(n), with_kwargs=True) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, gops.shape[0], batch):
                if all(len(v) >= limit for v in caught.values()):
                    break
                run_gop(model, gops[i:i + batch])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return caught


def adaroundable_layers(module: nn.Module) -> list[str]:
    """Names of the layers aimet's AdaRound optimizes (Conv2d, ConvTranspose2d, Linear)."""
    from aimet_torch.adaround.adaround_weight import AdaroundSupportedModules

    return [n for n, m in module.named_modules() if isinstance(m, AdaroundSupportedModules)]


class AdaroundBuilder:
    """Builds one stage's sim with AdaRounded, frozen weight encodings (the `build` hook of
    `mobilecodec.quant.sim.build_sims`); `report` holds per stage whether AdaRound ran, iterations, seconds."""

    def __init__(self, qcfg: QuantConfig, inputs: dict[str, list[tuple[torch.Tensor, ...]]],
                 workdir: str, bar=None) -> None:
        self.qcfg = qcfg
        self.inputs = inputs
        self.workdir = workdir
        self.bar = bar
        self.report: OrderedDict[str, dict] = OrderedDict()

    def __call__(self, name: str, stage: nn.Module, dummy: tuple[torch.Tensor, ...], *, cle: bool = False):
        from mobilecodec.quant.sim import prepare_stage, quiet_aimet, sim_from_prepared

        prepared = prepare_stage(stage, dummy, cle=cle)
        t0 = time.perf_counter()
        entry = {"adaround": False, "iterations": 0, "batches": len(self.inputs.get(name, ())), "layers": 0,
                 "seconds": 0.0}
        layers = adaroundable_layers(prepared)
        sim = None
        if not layers:
            entry["note"] = "skipped: no Conv/ConvTranspose/Linear layer"
        elif not self.inputs.get(name):
            entry["note"] = "skipped: the calibration GOPs never ran this stage"
        else:
            try:
                rounded, encodings = self._adaround(name, prepared, dummy)
            except (RuntimeError, ValueError, AssertionError, TypeError, KeyError) as exc:
                entry["note"] = f"skipped: aimet AdaRound failed: {type(exc).__name__}: {str(exc)[:200]}"
            else:
                sim = sim_from_prepared(rounded, dummy, self.qcfg)
                with quiet_aimet():
                    sim.set_and_freeze_param_encodings(encodings)
                entry.update(adaround=True, iterations=self.qcfg.adaround_iters, layers=len(layers))
        if sim is None:  # nearest rounding, as without --adaround
            sim = sim_from_prepared(prepared, dummy, self.qcfg)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        self._done(name, entry)
        return sim

    def _done(self, name: str, entry: dict) -> None:
        self.report[name] = entry
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)

    def _adaround(self, name: str, prepared: nn.Module, dummy: tuple[torch.Tensor, ...]) -> tuple[nn.Module, str]:
        """aimet AdaRound of the prepared stage: (adarounded copy, path of its param encodings)."""
        from aimet_torch.adaround.adaround_weight import Adaround, AdaroundParameters

        from mobilecodec.quant.sim import quant_scheme, quiet_aimet

        data = self.inputs[name]
        params = AdaroundParameters(data, len(data), default_num_iterations=self.qcfg.adaround_iters,
                                    forward_fn=_call_with_tuple)
        # aimet draws its own per-layer progress bar on stderr; ours (created earlier) keeps its stream
        with quiet_aimet(), contextlib.redirect_stderr(io.StringIO()):
            rounded = Adaround.apply_adaround(prepared, dummy, params, path=self.workdir, filename_prefix=name,
                                              default_param_bw=self.qcfg.param_bw,
                                              default_quant_scheme=quant_scheme(self.qcfg.quant_scheme),
                                              default_config_file=self.qcfg.aimet_config)
        return rounded, os.path.join(self.workdir, f"{name}.encodings")


def _call_with_tuple(module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    return module(*inputs)


def build_adaround_sims(model, qcfg: QuantConfig, gops: torch.Tensor, *, batch: int = 1,
                        progress: bool = True) -> tuple[OrderedDict[str, object], OrderedDict[str, dict]]:
    """Sims for every quantized stage of the float `model` with AdaRounded weights (encodings frozen),
    AdaRound fed by stage inputs captured on `gops`; returns (sims, per-stage report)."""
    from mobilecodec.progress import progress_bar
    from mobilecodec.quant.sim import build_sims, quantized_stage_names

    if gops is None or len(gops) == 0:
        raise InputError("AdaRound needs calibration GOPs to capture each stage's inputs")
    names = quantized_stage_names(model, qcfg)
    inputs = capture_stage_inputs(model, gops, names, qcfg.adaround_batches, batch=max(1, batch))
    with tempfile.TemporaryDirectory(prefix="mobilecodec-adaround-") as tmp, \
            progress_bar(total=len(names), desc="adaround", unit="stage", enabled=progress, leave=False) as bar:
        builder = AdaroundBuilder(qcfg, inputs, tmp, bar)
        with torch.random.fork_rng():
            torch.manual_seed(0)  # aimet samples its optimization batches with torch.randperm
            sims = build_sims(model, qcfg, build=builder)
    return sims, builder.report
