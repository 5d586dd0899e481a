"""One aimet QuantizationSimModel per network stage (aimet-torch 2.42, v2 quantizers).

Each stage goes through `aimet_torch.model_preparer.prepare_model` first, so functional ops
(cat, add, sub, hardtanh) become modules with their own quantizers, then through
`QuantizationSimModel(..., config_file="htp_v73")`: per-channel symmetric int8 weights for
Conv/ConvTranspose, asymmetric activations, Conv+ReLU fused (supergroups) as on the HTP.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import warnings
from collections import OrderedDict
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from mobilecodec.errors import InputError
from mobilecodec.models.subnetworks import is_receiver_stage
from mobilecodec.quant.config import QuantConfig

_AIMET_LOG_AREAS = ("Quant", "Utils", "Winnow", "ConnectedGraph", "CrossLayerEqualization", "BatchNormFolding",
                    "ModelPreparer", "LayerOutputs", "QuantAnalyzer", "MixedPrecision", "SeqMse")


@contextlib.contextmanager
def quiet_aimet() -> Iterator[None]:
    """Silence aimet's INFO logging and its deprecation/tracer warnings (they drown the progress bar)."""
    levels = {a: logging.getLogger(a).level for a in _AIMET_LOG_AREAS}
    for a in _AIMET_LOG_AREAS:
        logging.getLogger(a).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for a, lvl in levels.items():
            logging.getLogger(a).setLevel(lvl)


def quantized_stage_names(model, qcfg: QuantConfig) -> list[str]:
    """Stages that run on the NPU and get a sim (hyper-synthesis stays exact-integer on the host)."""
    return [n for n in model.stages() if n not in qcfg.skip]


def quant_scheme(name: str):
    from aimet_torch.common.defs import QuantScheme

    return {"tf": QuantScheme.post_training_tf, "tf_enhanced": QuantScheme.post_training_tf_enhanced}[name]


def prepare_stage(stage: nn.Module, dummy: tuple[torch.Tensor, ...], *, cle: bool = False) -> nn.Module:
    """aimet's prepare_model on a deep copy of `stage` (+ optional CLE): the float module a sim wraps."""
    import copy

    from aimet_torch.model_preparer import prepare_model

    with quiet_aimet():
        prepared = prepare_model(copy.deepcopy(stage).eval())
        if cle:
            from aimet_torch.cross_layer_equalization import equalize_model

            equalize_model(prepared, dummy_input=dummy)
    return prepared


def sim_from_prepared(prepared: nn.Module, dummy: tuple[torch.Tensor, ...], qcfg: QuantConfig):
    """QuantizationSimModel wrapping `prepared` in place (its weights become the sim's weights)."""
    from aimet_torch.quantsim import QuantizationSimModel

    with quiet_aimet():
        return QuantizationSimModel(prepared, dummy, quant_scheme=quant_scheme(qcfg.quant_scheme),
                                    default_output_bw=qcfg.act_bw, default_param_bw=qcfg.param_bw,
                                    config_file=qcfg.aimet_config, in_place=True)


def build_sim(stage: nn.Module, dummy: tuple[torch.Tensor, ...], qcfg: QuantConfig, *, cle: bool = False):
    """prepare_model + (optional CLE on the prepared copy) + QuantizationSimModel for one stage."""
    return sim_from_prepared(prepare_stage(stage, dummy, cle=cle), dummy, qcfg)


def check_aimet_config(name: str) -> str:
    """An aimet quantsim config alias (e.g. 'htp_v73') or a JSON file aimet accepts (its own import and
    schema check, run up front: inside QuantizationSimModel a bad file was a 300-line traceback), else
    InputError. Returns what a PTQ folder records: the alias, or the file's absolute path (a relative
    one stopped naming it from any other folder)."""
    from pathlib import Path

    from aimet_torch.common.quantsim_config.json_config_importer import JsonConfigImporter
    from aimet_torch.common.quantsim_config.quantsim_config import _config_file_aliases

    from mobilecodec.errors import one_line

    if name in _config_file_aliases:
        return name
    if not Path(name).is_file():
        raise InputError(f"aimet config {name!r} is neither an alias ({', '.join(sorted(_config_file_aliases))}) "
                         "nor a file")
    try:
        JsonConfigImporter.import_json_config_file(name)
    except Exception as exc:  # noqa: BLE001 - json, jsonschema and aimet's own errors
        raise InputError(f"{name} is not an aimet quantsim config: {one_line(exc)}") from None
    return str(Path(name).resolve())


def build_sims(model, qcfg: QuantConfig, *, cle: bool | None = None,
               progress: Callable[[str], None] | None = None,
               build: Callable[..., object] | None = None) -> "OrderedDict[str, object]":
    """A sim for every quantized stage of `model` (traced at qcfg.trace_size), W8A16 overrides applied.

    `build(name, stage, dummy, cle=...)` makes one stage's sim instead of `build_sim` (AdaRound uses it)."""
    h, w = qcfg.trace_size
    if h % 64 or w % 64:
        raise InputError(f"trace size must be a multiple of 64, got {h}x{w}")
    check_aimet_config(qcfg.aimet_config)
    examples = model.example_inputs(h, w)
    stages = model.stages()
    sims: OrderedDict[str, object] = OrderedDict()
    for name in quantized_stage_names(model, qcfg):
        use_cle = qcfg.cle if cle is None else cle
        if build is None:
            sims[name] = build_sim(stages[name], examples[name], qcfg, cle=use_cle)
        else:
            sims[name] = build(name, stages[name], examples[name], cle=use_cle)
        if progress:
            progress(name)
    apply_w8a16(sims, qcfg.w8a16)
    if qcfg.pin_frames:
        pin_frame_encodings(sims, model.frame_io())
    return sims


FRAME_RANGE = (0.0, 1.0)
_VALUE_PRESERVING = {torch.clamp, torch.Tensor.clamp, operator.getitem}  # between a frame's layer and the output


def frame_quantizers(sim, inputs: Sequence[str], output: bool) -> dict[str, object]:
    """The activation quantizers of one stage's sim that see a frame: the input quantizer of every
    layer that reads one of the graph inputs `inputs` (argument names), and with `output` the output
    quantizer of the layer whose result the stage returns first (through clamp / slicing only).
    Keyed 'input x -> body.0' / 'output <- module_add'. A named input the graph lacks, or that no
    quantizer reads, is an error: a renamed argument must not silently leave a frame calibrated."""
    g = sim.model
    found: dict[str, object] = {}
    missing = set(inputs) - {n.target for n in g.graph.nodes if n.op == "placeholder"}
    if missing:
        raise ValueError(f"{type(g).__name__} has no graph input named {', '.join(sorted(missing))}")
    for node in g.graph.nodes:
        if node.op != "placeholder" or node.target not in inputs:
            continue
        before = len(found)
        for user in node.users:
            qs = getattr(g.get_submodule(user.target), "input_quantizers", None) if user.op == "call_module" else None
            idx = user.all_input_nodes.index(node)
            if qs is not None and idx < len(qs) and qs[idx] is not None:
                found[f"input {node.target} -> {user.target}"] = qs[idx]
        if len(found) == before:
            raise ValueError(f"frame input {node.target!r} of {type(g).__name__} reaches no input quantizer")
    if output:
        node = next(n for n in g.graph.nodes if n.op == "output").args[0]
        node = node[0] if isinstance(node, (tuple, list)) else node
        while node.op == "call_function" and node.target in _VALUE_PRESERVING:
            node = node.args[0]
        q = g.get_submodule(node.target).output_quantizers[0] if node.op == "call_module" else None
        if q is None:
            raise ValueError(f"the frame output of {type(g).__name__} comes from {node.name}, which has no "
                             "output quantizer")
        found[f"output <- {node.target}"] = q
    return found


def all_frame_quantizers(sims: "OrderedDict[str, object]",
                         frame_io: dict[str, tuple[tuple[str, ...], bool]]) -> dict[str, object]:
    """`frame_quantizers` of every quantized stage that `frame_io` (`VideoCodec.frame_io()`) names,
    keyed 'stage: input x -> body.0'."""
    return {f"{stage}: {k}": q for stage, (inputs, output) in frame_io.items() if stage in sims
            for k, q in frame_quantizers(sims[stage], inputs, output).items()}


def pin_frame_encodings(sims: "OrderedDict[str, object]", frame_io: dict[str, tuple[tuple[str, ...], bool]]) -> None:
    """Give every frame quantizer (`all_frame_quantizers`) the range FRAME_RANGE and freeze it
    (calibration and QAT range learning leave it): at 8 bits the codes are then the frame's own
    levels k/255 (at 16 bits 257 k), no pixel is clipped, and the host's uint8 frame passes through
    the input quantizer unchanged."""
    lo, hi = FRAME_RANGE
    for q in all_frame_quantizers(sims, frame_io).values():
        q.set_range(torch.full_like(q.min, lo), torch.full_like(q.max, hi))
        q.allow_overwrite(False)
        q.requires_grad_(False)


def frozen_param_quantizers(sim) -> list[str]:
    """'module.param' of every parameter quantizer whose encoding is frozen (AdaRound's weights):
    aimet keeps that flag outside the state dict, so save/load records it by name."""
    from aimet_torch.nn import BaseQuantizationMixin

    return [f"{n}.{p}" for n, m in sim.model.named_modules() if isinstance(m, BaseQuantizationMixin)
            for p, q in m.param_quantizers.items() if q is not None and not q.is_overwrite_allowed()]


def freeze_param_quantizers(sim, names: Sequence[str]) -> None:
    """Freeze the named parameter quantizers as aimet's set_and_freeze_param_encodings does:
    no recomputation by compute_encodings, no gradient for their ranges."""
    for full in names:
        module, _, param = full.rpartition(".")
        try:
            q = sim.model.get_submodule(module).param_quantizers[param]
        except (AttributeError, KeyError):
            raise InputError(f"no parameter quantizer {full!r} to freeze") from None
        if q is None:
            raise InputError(f"parameter quantizer {full!r} is disabled, cannot freeze it")
        q.requires_grad_(False)
        q.allow_overwrite(False)


def _activation_quantizers(qmodule) -> list:
    return [q for q in list(qmodule.input_quantizers) + list(qmodule.output_quantizers) if q is not None]


def layer_names(sims: "OrderedDict[str, object]") -> list[str]:
    """Every quantized layer as 'stage.module' (the names W8A16 overrides use)."""
    from aimet_torch.nn import BaseQuantizationMixin

    return [f"{s}.{n}" for s, sim in sims.items() for n, m in sim.model.named_modules()
            if isinstance(m, BaseQuantizationMixin) and _activation_quantizers(m)]


W8A16_PRESETS = {
    # Every quantized stage the decoder runs (synthesis, motion prediction): the stages that write
    # the recurrent buffer. At 8 bits, the QNN HTP and onnxruntime CPU differ by one quantization
    # step on ~10 % of their outputs, and through the buffer the difference compounds over an intra
    # period; at 16 bits the same stream decodes to within 0.02 dB on both (docs/results/int8.md).
    "receiver": lambda sims: [s for s in sims if is_receiver_stage(s)],
}


def expand_presets(sims: "OrderedDict[str, object]", names: Sequence[str]) -> list[str]:
    """W8A16 names with presets ('receiver') replaced by the stage names they stand for."""
    out: list[str] = []
    for n in names:
        for m in (W8A16_PRESETS[n](sims) if n in W8A16_PRESETS else [n]):
            if m not in out:
                out.append(m)
    return out


def resolve_layers(sims: "OrderedDict[str, object]", names: Sequence[str]) -> dict[str, list]:
    """Name -> the quantized modules it selects (a stage, a module, a module's descendants, or a
    preset from W8A16_PRESETS)."""
    from aimet_torch.nn import BaseQuantizationMixin

    out: dict[str, list] = {}
    for full in expand_presets(sims, names):
        stage, _, path = full.partition(".")
        if stage not in sims:
            raise InputError(f"W8A16 override {full!r}: no quantized stage {stage!r}; "
                             f"stages: {', '.join(sims)}")
        root = sims[stage].model
        if path:
            try:
                root = root.get_submodule(path)
            except AttributeError:
                known = [n for n in layer_names(sims) if n.startswith(stage + ".")]
                raise InputError(f"W8A16 override {full!r}: no layer {path!r} in {stage}; "
                                 f"layers: {', '.join(known)}") from None
        mods = [m for m in root.modules() if isinstance(m, BaseQuantizationMixin) and _activation_quantizers(m)]
        if not any(_output_quantized(m) for m in mods):
            # a conv aimet fuses with the activation after it: its output is quantized there (and the
            # first conv's only quantizer is the frame input's: 16 bits there left its output at 8)
            raise InputError(f"W8A16 override {full!r} selects no layer whose output is quantized"
                             f"{_quantized_after(sims[stage].model, stage, path)}")
        out[full] = mods
    return out


def _output_quantized(qmodule) -> bool:
    return any(q is not None for q in qmodule.output_quantizers)


def _quantized_after(model, stage: str, path: str) -> str:
    """'; the next layer in module order whose output is quantized is NAME ...' for `path`; '' where
    there is none (module order is registration order: in the codec's Sequential bodies, data flow)."""
    from aimet_torch.nn import BaseQuantizationMixin

    names = [n for n, _ in model.named_modules()]
    if path not in names:
        return ""
    for n, m in list(model.named_modules())[names.index(path) + 1:]:
        if isinstance(m, BaseQuantizationMixin) and _output_quantized(m) and not n.startswith(path + "."):
            return (f"; the next layer in module order whose output is quantized is {stage}.{n} (aimet fuses a "
                    f"conv with the activation after it): name that one")
    return ""


def apply_w8a16(sims: "OrderedDict[str, object]", names: Sequence[str], bitwidth: int = 16) -> None:
    """Set the named layers' own activation quantizers (outputs, and inputs where aimet has one on
    the layer) to `bitwidth` bits. Must run before calibration: encodings are computed for the new grid."""
    for mods in resolve_layers(sims, names).values():
        for m in mods:
            for q in _activation_quantizers(m):
                q.bitwidth = bitwidth


def activation_bitwidths(sim) -> dict[str, list[int]]:
    """Module name -> bitwidths of its active input/output quantizers (for reports and tests)."""
    from aimet_torch.nn import BaseQuantizationMixin

    return {n: [q.bitwidth for q in _activation_quantizers(m)] for n, m in sim.model.named_modules()
            if isinstance(m, BaseQuantizationMixin) and _activation_quantizers(m)}


@contextlib.contextmanager
def computing_encodings(sims: "OrderedDict[str, object]") -> Iterator[None]:
    """All sims observe their inputs at once (aimet_torch.nn.compute_encodings on each sim.model).

    During calibration aimet's quantizers already quantize with the running batch statistics,
    so the recurrent buffer carries quantized values, as on the device."""
    from aimet_torch import nn as aimet_nn

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        for sim in sims.values():
            sim.model.eval()
            stack.enter_context(aimet_nn.compute_encodings(sim.model))
        yield


def stage_encodings(sim) -> dict:
    """aimet's per-module encodings of one sim (format 0.6.1, torch module names) as plain JSON data."""
    import json

    with torch.no_grad(), quiet_aimet():
        act, param = sim.get_activation_param_encodings()
    return json.loads(json.dumps({"activation_encodings": act, "param_encodings": param}))
