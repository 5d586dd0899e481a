"""Per-layer cost of a static-shape ONNX graph for a phone NPU: MACs, op class, weights and the
activation tensors each layer reads and writes, plus DRAM traffic under a documented tiling rule.

Layers are the graph's nodes after two NPU-style simplifications:

- Aliases: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Cast and Quantize/DequantizeLinear
  move no data on the NPU (a QDQ pair is the tensor stored at its quantized type), so their output
  is the same tensor as their first input.
- Fusion: an activation / BatchNormalization whose input is the single-use output of a MAC node is
  fused into that node (the HTP applies it in the convolution's epilogue), so it costs nothing; so
  is the constant bias Add after a MatMul (a Linear on a 3-D input), whose bias becomes the
  MatMul layer's weight, as inside a Gemm.
- Folding: a node computed from constants alone (the Slice / Concat that torch's export puts in
  front of a GRU's weights) is folded by the compiler before the graph runs; it costs nothing.
  RNN / GRU / LSTM nodes are dense MAC layers whose W, R, B and P are weights.

Tiling rule (`dram_bytes`), HTP VTCM = 8 MiB on v73 and v75:

1. Weights are read from DRAM once per graph run (weight bytes x params of every MAC layer; a
   weight tensor several layers use, a shared conv or an unrolled recurrence, is read by the first).
   So are the data tensors (`OnnxComplexity.data_tensors`: a position embedding, a layer scale),
   by the first element-wise or data layer that reads them.
2. Graph inputs are read from DRAM by every layer that consumes them; graph outputs are written
   to DRAM once by the layer that produces them.
3. An intermediate activation tensor stays in VTCM when it fits in half of VTCM
   (bytes <= VTCM / 2: the other half holds the weight tile and the double-buffered input and
   output tiles of the running layer); then it costs no DRAM traffic. A larger tensor is tiled
   through DRAM: its producer writes it once and each consumer reads it once.

Element sizes follow the precision: float graphs run in fp16 on the HTP (2-byte activations and
weights), w8a8 uses 1-byte activations and weights, w8a16 2-byte activations and 1-byte weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.export.onnx_common import GraphIndex, node_attrs
from mobilecodec.runtime.counts import numel

if TYPE_CHECKING:
    import onnx

__all__ = ["ACTIVATION_TYPES", "FREE_CLASSES", "GraphLayers", "Layer", "PRECISION_BYTES", "VTCM_BYTES", "dram_bytes",
           "extract_layers", "graph_precision", "layers_from_dict", "unsized_note"]

VTCM_BYTES = 8 * 1024 * 1024
# precision -> the types its activations and its weights are kept at on the HTP
ACTIVATION_TYPES = {"float": "float16", "w8a8": "uint8", "w8a16": "uint16"}
WEIGHT_TYPES = {"float": "float16", "w8a8": "int8", "w8a16": "int8"}
# precision -> (activation bytes, weight bytes), from those types
PRECISION_BYTES = {p: (np.dtype(ACTIVATION_TYPES[p]).itemsize, np.dtype(WEIGHT_TYPES[p]).itemsize)
                   for p in ACTIVATION_TYPES}

ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "CastLike",
             "QuantizeLinear", "DequantizeLinear"}
FUSABLE_OPS = {"Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
               "BatchNormalization", "Gelu"}
# layer classes: dense (conv / gemm / matmul / recurrent), grouped (grouped or depthwise conv), elementwise,
# resampling, data (concat, pad, slice ... data movement), fused, alias, quant, folded (constants only)
CLASSES = ("dense", "grouped", "elementwise", "resampling", "data", "fused", "alias", "quant", "folded")
FREE_CLASSES = ("alias", "quant", "fused", "folded")  # layers that cost neither time nor DRAM traffic


@dataclass
class Layer:
    """One node as the NPU sees it. Tensor sizes are element counts (the precision sets bytes)."""

    name: str
    op: str
    cls: str
    macs: int = 0
    elements: int = 0           # output elements of element-wise / resampling / data work
    weights: int = 0            # weight + bias elements of a MAC layer; of another layer, the data tensors
                                # (`OnnxComplexity.data_tensors`) it is the first to read
    inputs: list[list[int]] = field(default_factory=list)  # [[elements, is_graph_input], ...]
    output: int = 0             # elements of the (first) output tensor
    output_is_graph: bool = False
    extra_outputs: list[list[int]] = field(default_factory=list)  # [[elements, is_graph_output], ...] of the others
    output_shape: list[int] | None = None
    group_width: int = 0        # of a grouped conv: input channels per group (1: depthwise); 0 otherwise

    @property
    def grouped_kind(self) -> str | None:
        """Of a grouped conv, the kind the estimator prices by its own utilisation: 'depthwise' (one input
        channel per group, or unknown) or 'grouped' (more); None for any other layer."""
        if self.cls != "grouped":
            return None
        return "grouped" if self.group_width > 1 else "depthwise"


@dataclass
class GraphLayers:
    """All layers of one graph plus its graph I/O (name -> shape) and the precision it implies."""

    name: str
    layers: list[Layer]
    inputs: dict[str, list[int] | None]
    outputs: dict[str, list[int] | None]
    precision: str  # 'float', 'w8a8' or 'w8a16' as implied by the graph (QDQ -> quantized)
    unsized: list[str] = field(default_factory=list)  # tensors a layer reads or writes of unknown shape (0 here)

    @property
    def macs(self) -> int:
        return sum(la.macs for la in self.layers)

    @property
    def has_grouped(self) -> bool:
        """Whether grouped / depthwise convolutions do any of its MACs (the estimator prices them apart)."""
        return bool(self.grouped_kinds)

    @property
    def grouped_kinds(self) -> set[str]:
        """The `Layer.grouped_kind`s of the grouped convolutions that do MACs here."""
        return {la.grouped_kind for la in self.layers if la.grouped_kind and la.macs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layers_from_dict(d: dict[str, Any]) -> GraphLayers:
    """Inverse of `GraphLayers.to_dict` (e.g. from the calibration table)."""
    return GraphLayers(d["name"], [Layer(**la) for la in d["layers"]], d["inputs"], d["outputs"],
                       d["precision"], d.get("unsized", []))


def _numel(shape: Any) -> int:
    """Elements of a tensor of `shape`; 0 when the shape is unknown."""
    return numel(shape) if shape is not None else 0


def graph_precision(proto: "onnx.ModelProto") -> str:
    """'w8a8' for a QDQ graph (16-bit quantized activations anywhere: 'w8a16'), else 'float'."""
    import onnx

    inits = {i.name: i for i in proto.graph.initializer}
    qnodes = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qnodes and not any(n.op_type in ("QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul")
                              for n in proto.graph.node):
        return "float"
    for n in qnodes:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            if inits[n.input[2]].data_type in (onnx.TensorProto.UINT16, onnx.TensorProto.INT16):
                return "w8a16"
    return "w8a8"


def extract_layers(model_or_path: "onnx.ModelProto | str | Path", name: str | None = None,
                   feeds: dict[str, Any] | None = None) -> GraphLayers:
    """Layers of a static-shape ONNX graph (float or QDQ), in graph order; see the module doc (`feeds`:
    as for `count_onnx`)."""
    from mobilecodec.export.onnx_common import compiler_constants, infer_static_shapes
    from mobilecodec.runtime.onnx_complexity import (
        _MAC_WEIGHT_INPUTS, RECURRENT_GATES, RECURRENT_WEIGHT_INPUTS, _Graph, _load, count_onnx)

    proto, measured = infer_static_shapes(_load(model_or_path), feeds)
    graph = proto.graph
    counted = count_onnx(proto)
    if len(counted.nodes) != len(graph.node):
        raise InputError("internal: node count mismatch between counter and layer extraction")
    g = _Graph(graph)
    init_names = {i.name for i in graph.initializer} | set(g.constants)
    graph_inputs = [vi.name for vi in graph.input if vi.name not in init_names]
    ix = GraphIndex(graph)
    producer, readers, graph_outputs = ix.producer, ix.consumers, ix.outputs
    alias: dict[str, str] = {}

    def root(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    _, const = compiler_constants(graph, g.shapes, measured)
    mac_outputs: set[str] = set()
    bias_of: dict[str, tuple[str, int]] = {}  # a fused bias Add's output -> (the MAC output, bias elements)
    classes: list[str] = []
    widths: list[int] = []  # `Layer.group_width` of each node
    for node in graph.node:
        op = node.op_type
        cls = "data"
        width = 0
        if op not in _MAC_WEIGHT_INPUTS and op not in RECURRENT_GATES and node.output \
                and all(o in const for o in node.output if o):
            cls = "folded"
        elif op in ALIAS_OPS and node.input and node.output:
            cls = "quant" if op in ("QuantizeLinear", "DequantizeLinear") else "alias"
            alias[node.output[0]] = root(node.input[0])
            if root(node.input[0]) in mac_outputs:
                mac_outputs.add(node.output[0])
        elif op in _MAC_WEIGHT_INPUTS:
            group = node_attrs(node).get("group", 1)
            cls = "grouped" if group > 1 else "dense"
            width = _group_width(node, group, g.shapes) if group > 1 else 0
            mac_outputs.add(node.output[0])
        elif op in RECURRENT_GATES:  # matrix products per time step; its outputs are not fusable
            cls = "dense"
        elif op in FUSABLE_OPS and node.input and root(node.input[0]) in mac_outputs \
                and _read_once(node.input[0], producer, readers, graph_outputs):
            cls = "fused"
            alias[node.output[0]] = root(node.input[0])
            mac_outputs.add(node.output[0])
        elif (bias := _bias_add(node, producer, readers, const | init_names, g.shapes, graph_outputs)) is not None:
            cls = "fused"  # a Linear on a 3-D input: MatMul + Add(bias), one layer on the HTP
            alias[node.output[0]] = bias[0]
            mac_outputs.add(node.output[0])
            bias_of[node.output[0]] = bias
        classes.append(cls)
        widths.append(width)
    out_roots = {root(vi.name) for vi in graph.output}
    layers: list[Layer] = []
    by_output: dict[str, Layer] = {}
    unsized: list[str] = []

    def elements(t: str) -> int:
        shape = g.shapes.get(t)
        if shape is None and t not in unsized:
            unsized.append(t)
        return _numel(shape)

    weights_read: set[str] = set()  # rule 1: a weight tensor is read once per run, by its first user
    for node, rec, cls, width in zip(graph.node, counted.nodes, classes, widths):
        if cls == "data" and rec.kind in ("elementwise", "resampling"):
            cls = rec.kind  # the counter's own op classes
        again = sum(n for t, n in rec.weight_tensors.items() if t in weights_read)
        weights_read.update(rec.weight_tensors)
        layer = Layer(name=rec.name, op=node.op_type, cls=cls, macs=rec.macs, weights=rec.params - again,
                      output_shape=rec.output_shape, group_width=width)
        if node.op_type == "Gather" and rec.params and rec.output_shape:  # an embedding: the rows it looks up
            layer.weights = min(rec.params, numel(rec.output_shape))
        if node.output and node.output[0] in bias_of:  # the bias is the MAC layer's weight (the counter
            mac, elems = bias_of[node.output[0]]       # gives it to the Add only right after the MatMul)
            by_output[mac].weights += elems
            layer.weights = 0
        if cls in FREE_CLASSES:
            layers.append(layer)
            continue
        if node.output:
            by_output[node.output[0]] = layer
        if node.op_type in RECURRENT_GATES:  # W, R, B, P: constants, often computed (Slice / Concat)
            weights = {k for k in RECURRENT_WEIGHT_INPUTS if k < len(node.input) and node.input[k] in const}
        else:
            weights = {k for k in _MAC_WEIGHT_INPUTS.get(node.op_type, ())
                       if k < len(node.input) and g.source(node.input[k]) is not None}
        seen: set[str] = set()
        for k, t in enumerate(node.input):
            if not t or k in weights:
                continue
            if t in init_names or g.source(t) is not None:
                src = g.source(t) or t  # a data tensor (a ViT's position embedding) is read from DRAM
                if src in counted.data_tensors and src not in weights_read:  # once per run, as weights
                    layer.weights += counted.data_tensors[src]
                    weights_read.add(src)
                continue  # other constants: shapes, scales, normalisation parameters
            r = root(t)
            if r in seen:
                continue
            seen.add(r)
            layer.inputs.append([elements(r), int(r in graph_inputs)])
        outs = [o for o in node.output if o]  # a Split's parts, a GRU's Y and Y_h: each is written
        out = outs[0] if outs else ""
        layer.output = elements(out) if out else 0
        layer.output_is_graph = out in out_roots
        layer.extra_outputs = [[elements(o), int(o in out_roots)] for o in outs[1:]]
        if cls in ("elementwise", "resampling", "data"):
            layer.elements = layer.output + sum(e for e, _ in layer.extra_outputs)
        layers.append(layer)
    return GraphLayers(name or graph.name or "graph", layers, dict(counted.inputs), dict(counted.outputs),
                       graph_precision(proto), unsized)


def _group_width(node: Any, group: int, shapes: dict[str, Any]) -> int:
    """Input channels per group of a conv of `group` groups (1: depthwise), from its weight's shape ((Cout,
    Cin/g, *k); ConvTranspose (Cin, Cout/g, *k)); 0 when the shape is unknown."""
    w = {"QLinearConv": 3}.get(node.op_type, 1)
    shape = shapes.get(node.input[w]) if len(node.input) > w else None
    if not shape or len(shape) < 2:
        return 0
    return int(shape[0]) // group if node.op_type == "ConvTranspose" else int(shape[1])


def _alias_chain(t: str, producer: dict[str, Any]) -> list[str]:
    """`t` and the tensors it is an alias of, back through Reshape, Q / DQ, ... (`ALIAS_OPS`) to the
    one a real node wrote (the last)."""
    chain = [t]
    while t in producer and producer[t].op_type in ALIAS_OPS and producer[t].input:
        t = producer[t].input[0]
        chain.append(t)
    return chain


def _read_once(t: str, producer: dict[str, Any], readers: dict[str, list[Any]], graph_outputs: set[str]) -> bool:
    """Whether `t` and every tensor it aliases (`_alias_chain`) has one reader and is no graph output:
    a Conv -> Q -> DQ whose Q output two DQs read feeds two layers, not one."""
    return all(len(readers.get(x, ())) == 1 and x not in graph_outputs for x in _alias_chain(t, producer))


def _bias_add(node: Any, producer: dict[str, Any], readers: dict[str, list[Any]], constants: set[str],
              shapes: dict[str, Any], graph_outputs: set[str]) -> tuple[str, int] | None:
    """(the output of the MatMul that `node` adds a constant bias to, the bias' elements), when `node`
    is an Add of one value per output feature to a MatMul of constant weights whose output nothing
    else reads (through Q / DQ and other aliases, graph outputs included): torch exports a Linear on
    a 3-D input so, and the HTP runs it as one layer with its bias, as a Gemm; else None."""
    if node.op_type != "Add" or len(node.input) != 2 or not node.output:
        return None
    for t, other in (node.input, node.input[::-1]):
        mac = _alias_chain(t, producer)[-1]
        mm = producer.get(mac)
        if mm is None or mm.op_type != "MatMul" or mm.input[1] not in constants or other not in constants:
            continue
        if not _read_once(t, producer, readers, graph_outputs):
            continue  # the product is read elsewhere too (or is a graph output): the Add is work of its own
        out_shape, bias_shape = shapes.get(mac), shapes.get(other)
        if out_shape and bias_shape is not None and _numel(bias_shape) == out_shape[-1] \
                and all(d == 1 for d in bias_shape[:-1]):
            return mac, out_shape[-1]
    return None


def unsized_note(dram: dict[str, Any]) -> str:
    """'; not counted: ...' naming the tensors of unknown shape a `dram_bytes` result left out ('' if none)."""
    names = dram.get("unsized_tensors") or []
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"; not counted: {len(names)} tensor(s) of unknown shape ({shown}): give the graph static shapes"


def _act_traffic(layer: Layer, act_bytes: int, vtcm: int) -> tuple[int, int]:
    """(graph I/O bytes, spilled activation bytes) one layer moves through DRAM (rules 2 and 3)."""
    io = spill = 0
    half = vtcm // 2
    for elems, is_input in layer.inputs:
        nbytes = elems * act_bytes
        if is_input:
            io += nbytes
        elif nbytes > half:
            spill += nbytes
    for elems, is_graph in [[layer.output, layer.output_is_graph], *layer.extra_outputs]:
        nbytes = elems * act_bytes
        if is_graph:
            io += nbytes
        elif nbytes > half:
            spill += nbytes
    return io, spill


def layer_bytes(layer: Layer, precision: str, vtcm: int = VTCM_BYTES) -> int:
    """DRAM bytes of one layer under the tiling rule: weights + graph I/O + spilled activations."""
    ab, wb = PRECISION_BYTES[precision]
    if layer.cls in FREE_CLASSES:
        return 0
    io, spill = _act_traffic(layer, ab, vtcm)
    return layer.weights * wb + io + spill


def dram_bytes(gl: GraphLayers, precision: str | None = None, vtcm: int = VTCM_BYTES) -> dict[str, Any]:
    """DRAM traffic of one run of the graph in bytes, split into weights, graph I/O and spilled
    activations; `unsized_tensors` names the tensors of unknown shape it could not count."""
    prec = precision or gl.precision
    if prec not in PRECISION_BYTES:
        raise InputError(f"unknown precision {prec!r}; expected one of {', '.join(PRECISION_BYTES)}")
    ab, wb = PRECISION_BYTES[prec]
    weights = io = spill = 0
    for la in gl.layers:
        if la.cls in FREE_CLASSES:
            continue
        weights += la.weights * wb
        a, b = _act_traffic(la, ab, vtcm)
        io, spill = io + a, spill + b
    return {"weights_bytes": weights, "graph_io_bytes": io, "activations_bytes": spill,
            "total_bytes": weights + io + spill, "vtcm_bytes": vtcm, "bytes_per_activation": ab,
            "bytes_per_weight": wb, "precision": prec,
            "unsized_tensors": list(gl.unsized)}
