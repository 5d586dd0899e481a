"""int8 QDQ graphs from aimet: each quantized stage's sim model is exported by aimet itself
(`aimet_torch.onnx.export`, int8 weight initializers + DequantizeLinear per output channel, int32
biases, uint8/uint16 activations exactly where the sim quantizes), then tidied for the QNN HTP.

Why aimet's exporter and not our own QDQ insertion into the onnxsim'd float graph: the sim knows
where each quantizer sits (Conv+ReLU supergroups, tied concat encodings, disabled quantizers), so
its trace puts every QuantizeLinear/DequantizeLinear where the PyTorch simulation rounds; mapping
module names onto simplified ONNX tensors by hand would re-derive that and break with onnxsim's
renames. onnxsim is not run on QDQ graphs: it would fold the weight DequantizeLinear back into
float constants. torch's exporter already folds constants, so the float skeleton of a QDQ graph
has the same ops as the onnxsim'd float graph (tests check this).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import InputError
from mobilecodec.export.onnx_common import GraphIndex, node_attrs

if TYPE_CHECKING:  # pragma: no cover
    from mobilecodec.export.onnx_export import GraphSpec

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
OPSET_8BIT = 17  # same as the float graphs
OPSET_16BIT = 21  # ONNX QuantizeLinear takes uint16 only from opset 21 (needs IR version 10)


def load_ptq_for(q_dir: str | Path, model: Any) -> Any:
    """`mobilecodec.quant.ptq.load_quantized(q_dir)`, checked against the float `model` being exported:
    same config, same host-side state (entropy tables, integer hyper-synthesis), same float
    weights hash when the PTQ summary recorded one. InputError on any mismatch or a bad folder."""
    from mobilecodec.errors import MobileCodecError
    from mobilecodec.quant.ptq import QUANTIZED_FILE, check_quantized_from, load_quantized

    q = Path(q_dir)
    if not (q / QUANTIZED_FILE).is_file():
        raise InputError(f"--int8 {q}: not a `mobilecodec ptq` output folder (no {QUANTIZED_FILE})")
    try:
        qmodel = load_quantized(q)
    except MobileCodecError as exc:
        raise InputError(f"--int8 {q}: {exc}") from None
    check_quantized_from(qmodel, model, f"--int8 {q}")
    return qmodel


def _export_with_aimet(spec: "GraphSpec", opset: int) -> Any:
    """Trace `spec.module` (holding an aimet sim model) to a QDQ ModelProto with aimet's exporter."""
    import onnx
    import torch

    import aimet_torch.onnx as aimet_onnx
    from mobilecodec.quant.sim import quiet_aimet

    with tempfile.TemporaryDirectory(prefix="mobilecodec-qdq-") as tmp:
        f = Path(tmp) / f"{spec.name}.onnx"
        with torch.no_grad(), quiet_aimet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aimet_onnx.export(spec.module.eval(), spec.example, str(f), input_names=spec.inputs,
                              output_names=spec.outputs, opset_version=opset, dynamo=False,
                              prequantize_constants=True, export_int32_bias=True)
        return onnx.load(str(f))


def _sim_bitwidths(module: Any) -> list[int]:
    from aimet_torch.nn import BaseQuantizationMixin

    bws = []
    for m in module.modules():
        if isinstance(m, BaseQuantizationMixin):
            bws += [q.bitwidth for q in list(m.input_quantizers) + list(m.output_quantizers) if q is not None]
    return bws


def remove_identities(proto: Any) -> int:
    """Drop Identity nodes (aimet duplicates shared QDQ inputs through them) whose output is not a
    graph output, rewiring their consumers. Returns how many were removed."""
    outputs = {o.name for o in proto.graph.output}
    keep, alias = [], {}
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return len(alias)


def split_relu_groups(proto: Any) -> int:
    """Put a copy of the ReLU output's QuantizeLinear/DequantizeLinear in front of a ReLU whose
    input is not quantized (aimet's Conv+ReLU supergroup) when that encoding does not start at 0
    (a concat tied it to a signed tensor). The HTP fuses Conv+ReLU only into a [0, max] grid and
    otherwise rejects the float Conv output. Exact: 0 lies on the grid, so
    relu(q(c)) == q(relu(c)) element by element. Returns how many ReLUs were split."""
    from onnx import helper, numpy_helper

    ix = GraphIndex(proto.graph)
    inits, producers, consumers = ix.inits, ix.producer, ix.consumers
    new_nodes, count = [], 0
    for node in proto.graph.node:
        cons = consumers.get(node.output[0], []) if node.op_type == "Relu" else []
        src = producers.get(node.input[0]) if node.op_type == "Relu" else None
        if len(cons) == 1 and cons[0].op_type == "QuantizeLinear" and src is not None \
                and src.op_type != "DequantizeLinear" and len(cons[0].input) == 3 and cons[0].input[2] in inits:
            zp = numpy_helper.to_array(inits[cons[0].input[2]])
            if zp.ndim == 0 and int(zp) != 0 and zp.dtype.kind == "u":
                x = node.input[0]
                scale, zero = cons[0].input[1], cons[0].input[2]
                attrs = node_attrs(cons[0])
                new_nodes += [helper.make_node("QuantizeLinear", [x, scale, zero], [f"{x}_rq"], name=f"{x}_rq", **attrs),
                              helper.make_node("DequantizeLinear", [f"{x}_rq", scale, zero], [f"{x}_rqdq"],
                                               name=f"{x}_rqdq", **attrs)]
                node.input[0] = f"{x}_rqdq"
                count += 1
        new_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    return count


def qdq_encodings(proto: Any) -> dict[str, Any]:
    """The encodings a QDQ graph carries, read back from its initializers: per activation tensor
    (bits, dtype, scale, zero point) and per weight (dtype, axis, channels, scale range)."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    acts: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    for node in proto.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        x, scale, zero = (list(node.input) + [None] * 3)[:3]
        s = numpy_helper.to_array(inits[scale])
        z = numpy_helper.to_array(inits[zero]) if zero in inits else np.zeros((), np.uint8)
        axis = node_attrs(node).get("axis", 1)
        if node.op_type == "DequantizeLinear" and x in inits:
            q = numpy_helper.to_array(inits[x])
            weights[node.output[0]] = {
                "dtype": q.dtype.name, "axis": int(axis) if s.ndim else None, "channels": int(s.size),
                "shape": list(q.shape), "scale_min": float(s.min()), "scale_max": float(s.max()),
                "symmetric": bool(np.all(z == 0))}
        elif node.op_type == "QuantizeLinear":
            acts[x] = {"bits": int(z.dtype.itemsize * 8), "dtype": z.dtype.name, "scale": float(s),
                       "zero_point": int(z)}
    return {"activations": acts, "weights": weights}


def export_qdq_graph(spec: "GraphSpec", path: str | Path) -> Any:
    """Export one quantized stage (spec.module wraps its aimet sim model) as a QDQ ONNX graph:
    opset 17 when every activation is 8-bit, 21 when some are 16-bit. Returns the saved proto."""
    import onnx

    from mobilecodec.export.onnx_common import IR_VERSION, constants_to_initializers

    bits = _sim_bitwidths(spec.module)
    opset = OPSET_16BIT if bits and max(bits) > 8 else OPSET_8BIT
    proto = _export_with_aimet(spec, opset)
    constants_to_initializers(proto)
    remove_identities(proto)
    split_relu_groups(proto)
    del proto.metadata_props[:]
    proto.ir_version = IR_VERSION if opset <= 17 else 10
    proto.graph.name = spec.name
    proto.producer_name = "mobilecodec (aimet-torch QDQ)"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def graph_quantization(proto: Any, spec: "GraphSpec") -> dict[str, Any]:
    """Manifest entry of one QDQ graph: opset, activation bitwidths, 16-bit tensors and layers."""
    from mobilecodec.quant.sim import activation_bitwidths

    enc = qdq_encodings(proto)
    sim_model = spec.module.stage
    layers16 = sorted(n for n, bw in activation_bitwidths(_FakeSim(sim_model)).items() if max(bw) > 8)
    return {"source": "aimet", "opset": proto.opset_import[0].version,
            "activation_bits": sorted({a["bits"] for a in enc["activations"].values()}),
            # the quantized initializers by kind: int32 ones are biases (they were listed as weights)
            **{key: sorted({f"{w['dtype']} " + ("per-channel" if w["axis"] is not None else "per-tensor")
                            + (" symmetric" if w["symmetric"] else "") for w in enc["weights"].values()
                            if (w["dtype"] == "int32") == (key == "biases")}) for key in ("weights", "biases")},
            "tensors_16bit": sorted(n for n, a in enc["activations"].items() if a["bits"] > 8),
            "layers_16bit": layers16}


class _FakeSim:
    """Adapter so `mobilecodec.quant.sim.activation_bitwidths(sim)` can read a sim model directly."""

    def __init__(self, model: Any) -> None:
        self.model = model
