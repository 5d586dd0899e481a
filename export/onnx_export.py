"""Float ONNX graphs, one per network stage, with the HyTIP buffer as named graph I/O.

Each stage of `VideoCodec.stages()` becomes one static-shape graph. Thin wrapper modules only
rename, concatenate or drop outputs (zero-channel feature maps of explicit buffering); they never
change numerics. Warp, entropy coding, the exact-integer hyper-synthesis used for coding and the
uint8 rounding of the buffered frame run on the host (see `mobilecodec.export.manifest.call_order`).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import InputError
from mobilecodec.fsutil import file_sha256
from mobilecodec.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from mobilecodec.models.codec import VideoCodec

from mobilecodec.export.onnx_common import IR_VERSION, OPSET, constants_to_initializers, tensor_info  # noqa: F401
SIZE_MULTIPLE = 64


@dataclass
class GraphSpec:
    """One NPU graph before export: the module to trace, its example inputs and I/O names."""

    name: str
    module: Any  # nn.Module taking len(inputs) tensors, returning len(outputs) tensors
    example: tuple  # tuple of torch tensors
    inputs: list[str]
    outputs: list[str]
    role: str  # what the graph does, one line
    used_by_codec: bool = True  # False: exported for profiling only (hyper-synthesis)
    notes: dict[str, str] = field(default_factory=dict)  # per tensor: host post-processing


def check_size(height: int, width: int) -> None:
    """Export needs the padded frame size: both sides a positive multiple of 64."""
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise InputError(f"export size must be the padded frame size, a multiple of {SIZE_MULTIPLE} "
                         f"on both sides; got {height}x{width} (pad e.g. 144x176 to 192x192)")


def check_original_size(orig_height: int, orig_width: int, height: int, width: int) -> None:
    """The unpadded frame size a package records: even (YUV 4:2:0) and padding up to the graphs' size."""
    from mobilecodec.io import padded_size

    if orig_height <= 0 or orig_width <= 0 or orig_height % 2 or orig_width % 2:
        raise InputError(f"frame size must be even and positive (YUV 4:2:0 chroma); got {orig_height}x{orig_width}")
    pw, ph = padded_size(orig_width, orig_height)
    if (ph, pw) != (height, width):
        raise InputError(f"frame size {orig_height}x{orig_width} pads to {ph}x{pw}, not to the graphs' "
                         f"{height}x{width}")


def _wrappers():
    """Wrapper classes, defined lazily so importing this module does not import torch."""
    import torch
    from torch import nn

    class Select(nn.Module):
        """Run a stage and keep some of its outputs (drops zero-channel buffer features)."""

        def __init__(self, stage: nn.Module, keep: tuple[int, ...] | None) -> None:
            super().__init__()
            self.stage, self.keep = stage, keep

        def forward(self, *args: torch.Tensor):
            out = self.stage(*args)
            if self.keep is None:
                return out
            outs = tuple(out[i] for i in self.keep)
            return outs if len(outs) > 1 else outs[0]

    class MotionState(nn.Module):
        """Motion predictor fed by the separate buffer tensors (flow, motion_feat), concatenated
        in the graph exactly as `VideoCodec.motion_state` does on the host."""

        def __init__(self, stage: nn.Module) -> None:
            super().__init__()
            self.stage = stage

        def forward(self, *parts: torch.Tensor) -> torch.Tensor:
            return self.stage(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    return Select, MotionState


def graph_specs(model: "VideoCodec", height: int, width: int) -> list[GraphSpec]:
    """The NPU graphs of `model` at a padded frame size, in stage order."""
    import torch

    check_size(height, width)
    Select, MotionState = _wrappers()
    stages = model.stages()
    ex = model.example_inputs(height, width)
    names = [e.name for e in model.layout]
    entries = {e.name: e for e in model.layout}
    frame_out = "buffer_out.frame" if "frame" in names else "x_hat"
    has_rfeat = "residual_feat" in names
    cond = ["warped"] if model.cfg.conditional else []
    frame_note = {frame_out: "host rounds to uint8 levels: round(x*255)/255 (decoded frame"
                  + (" and buffer.frame)" if frame_out == "buffer_out.frame" else ")")}
    keep_feat = (0, 1) if has_rfeat else (0,)
    feat_out = ["buffer_out.residual_feat"] if has_rfeat else []
    specs: list[GraphSpec] = []

    def add(name: str, module: Any, example: tuple, inputs: list[str], outputs: list[str], role: str,
            **kw: Any) -> None:
        if name in stages:
            specs.append(GraphSpec(name, module, example, inputs, outputs, role, **kw))

    for p, what in (("i", "I-frame"), ("m", "motion"), ("r", "residual")):
        lat = {"i": "y", "m": "m", "r": "r"}[p]
        if p == "i":
            add("i_analysis", Select(stages["i_analysis"], None), ex["i_analysis"], ["x"], ["y"],
                "I-frame analysis: frame -> latent")
        elif p == "m" and "motion_predictor" in stages:
            parts = [n for n in ("flow", "motion_feat") if n in names]
            example = tuple(torch.zeros(entries[n].shape(height, width)) for n in parts)
            add("motion_predictor", MotionState(stages["motion_predictor"]), example,
                [f"buffer_in.{n}" for n in parts], ["flow_pred"], "motion predictor: buffer -> predicted block flow")
            ref = "buffer_in.frame" if "frame" in names else "buffer_in.residual_feat"
            add("m_analysis", Select(stages["m_analysis"], None), ex["m_analysis"], ["x", ref, "flow_pred"], ["m"],
                "motion analysis: frame, reference, " + ("motion hint (call_order's motion_search: block match "
                                                         "minus predicted flow)" if model.cfg.motion_hint != "none"
                                                         else "predicted flow") + " -> motion latent")
        elif p == "r":
            if "r_predictor" in stages:
                add("r_predictor", Select(stages["r_predictor"], None), ex["r_predictor"], ["warped"], ["pred"],
                    "residual predictor: warped features -> frame prediction")
            add("r_analysis", Select(stages["r_analysis"], None), ex["r_analysis"], ["x", "pred", *cond], ["r"],
                "residual analysis: frame, prediction[, warped reference] -> residual latent")
        if f"{p}_hyper_analysis" not in stages:
            continue
        add(f"{p}_hyper_analysis", Select(stages[f"{p}_hyper_analysis"], None), ex[f"{p}_hyper_analysis"],
            [lat], ["z"], f"{what} hyper-analysis: latent -> hyper-latent")
        add(f"{p}_hyper_synthesis", Select(stages[f"{p}_hyper_synthesis"], None), ex[f"{p}_hyper_synthesis"],
            ["z_hat"], ["params"], f"{what} hyper-synthesis (float twin of the host integer version; "
            "exported for profiling, the codec's entropy parameters come from the host)", used_by_codec=False)
        if p == "i":
            add("i_synthesis", Select(stages["i_synthesis"], keep_feat), ex["i_synthesis"], ["y_hat"],
                [frame_out, *feat_out], "I-frame synthesis: latent -> reconstruction[, residual features]",
                notes=dict(frame_note))
        elif p == "m":
            flow_out = "buffer_out.flow" if "flow" in names else "flow"
            has_mfeat = "motion_feat" in names
            add("m_synthesis", Select(stages["m_synthesis"], (0, 1) if has_mfeat else (0,)), ex["m_synthesis"],
                ["m_hat", "flow_pred"], [flow_out] + (["buffer_out.motion_feat"] if has_mfeat else []),
                "motion synthesis: motion latent, predicted flow -> block flow[, motion features]")
        else:
            add("r_synthesis", Select(stages["r_synthesis"], keep_feat), ex["r_synthesis"], ["r_hat", "pred", *cond],
                [frame_out, *feat_out], "residual synthesis: latent, prediction[, warped] -> reconstruction",
                notes=dict(frame_note))
    order = list(stages)
    specs.sort(key=lambda s: order.index(s.name))
    return specs


def export_graph(spec: GraphSpec, path: str | Path, *, simplify: bool = True) -> Any:
    """Trace `spec` to ONNX (opset 17, static shapes), simplify with onnxsim, check, save.

    Returns the saved onnx.ModelProto."""
    import warnings

    import onnx
    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(spec.module.eval(), spec.example, buf, opset_version=OPSET, dynamo=False,
                          input_names=spec.inputs, output_names=spec.outputs, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
        if not ok:
            raise RuntimeError(f"onnxsim could not validate the simplified {spec.name} graph")
        proto = simplified
    constants_to_initializers(proto)
    proto.ir_version = IR_VERSION
    proto.graph.name = spec.name
    proto.producer_name = "mobilecodec"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def op_histogram(proto: Any) -> dict[str, int]:
    """How many nodes of each op type a graph holds (sorted by op name)."""
    hist: dict[str, int] = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        hist[key] = hist.get(key, 0) + 1
    return dict(sorted(hist.items()))


def export_package(model: "VideoCodec", out_dir: str | Path, height: int, width: int, *,
                   original_size: tuple[int, int] | None = None, checkpoint: str | None = None,
                   progress: bool = False, qmodel: Any = None, quantized_dir: str | None = None,
                   beta: float | None = None, meta: dict[str, Any] | None = None,
                   seed: int | None = None) -> dict[str, Any]:
    """Export every NPU graph of `model` into a package folder with `manifest.json` and a copy of
    the checkpoint (host side: entropy tables, integer hyper-synthesis), written atomically.

    With `qmodel` (a `quant.QuantizedVideoCodec` of `model`, see `mobilecodec.export.aimet_qdq.load_ptq_for`)
    the quantized stages become aimet QDQ int8 graphs and the package records their encodings
    under `encodings/`; stages left float by the quant config (hyper-synthesis) stay float.
    `beta`: the rate weight the model was trained with, kept in the package's checkpoint (the
    block-mode search of a package encoder prices bits with it). `meta`: the source checkpoint's
    record, kept in the package's copy (its `trained_on_held_out` among it, or'd with the int8
    folder's); `seed`: the initialisation seed of a model made from a config. Returns the manifest."""
    from mobilecodec.checkpoint import save_checkpoint
    from mobilecodec.fsutil import atomic_dir, write_json_atomic

    from mobilecodec.export.formats import MANIFEST, PACKAGE_FORMAT
    from mobilecodec.export.manifest import build_manifest

    check_size(height, width)
    if original_size is not None:
        check_original_size(*original_size, height, width)
    if not model.ready_for_coding:
        model.update()
    model.eval()
    specs = graph_specs(qmodel if qmodel is not None else model, height, width)
    sims = qmodel.sims if qmodel is not None else {}
    graphs: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    bar = progress_bar(total=len(specs), desc="export", unit="graph", leave=False) if progress else None
    with atomic_dir(out_dir, marker=MANIFEST, marker_format=PACKAGE_FORMAT) as tmp:
        (tmp / "graphs").mkdir()
        for spec in specs:
            rel = f"graphs/{spec.name}.onnx"
            quant = None
            if spec.name in sims:
                from mobilecodec.export.aimet_qdq import export_qdq_graph, graph_quantization, qdq_encodings

                proto = export_qdq_graph(spec, tmp / rel)
                quant = graph_quantization(proto, spec)
                quant["encodings"] = f"encodings/{spec.name}.json"
                (tmp / "encodings").mkdir(exist_ok=True)
                write_json_atomic(tmp / quant["encodings"], qdq_encodings(proto))
            else:
                proto = export_graph(spec, tmp / rel)
            graphs[spec.name] = {
                "file": rel, "sha256": file_sha256(tmp / rel), "bytes": (tmp / rel).stat().st_size,
                "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                "role": spec.role, "used_by_codec": spec.used_by_codec,
                "inputs": [tensor_info(v) for v in proto.graph.input],
                "outputs": [tensor_info(v) for v in proto.graph.output],
                "ops": op_histogram(proto), "host_postprocess": spec.notes,
            }
            if qmodel is not None:
                graphs[spec.name]["quantization"] = quant  # None: float graph (not quantized)
            if bar is not None:
                bar.update(1)
        made = (getattr(qmodel, "summary", None) or {}) if qmodel is not None else {}  # ptq.json / qat.json
        held = bool((meta or {}).get("trained_on_held_out")) or bool(made.get("trained_on_held_out"))
        save_checkpoint(tmp / "checkpoint.pt", model, beta=beta,
                        meta={**(meta or {}), "exported_from": checkpoint, "trained_on_held_out": held})
        manifest = build_manifest(model, graphs, height, width, original_size=original_size,
                                  checkpoint=checkpoint, export_seconds=time.perf_counter() - t0,
                                  trained_on_held_out=held, seed=seed)
        if qmodel is not None:
            from mobilecodec.export.manifest import int8_section

            manifest["precision"] = "int8-qdq"
            manifest["quantization"] = int8_section(qmodel, graphs, quantized_dir, tmp)
        write_json_atomic(tmp / MANIFEST, manifest)
    if bar is not None:
        bar.close()
    return manifest
