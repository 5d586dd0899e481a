"""Count parameters and MACs of a static-shape ONNX graph (float or QDQ int8).

Same conventions as `mobilecodec.runtime.complexity` (DESIGN.md "Counting conventions"):

- Conv:          output elements x (Cin / groups) x kernel volume   (weight is (Cout, Cin/g, *k))
- ConvTranspose: input elements  x (Cout / groups) x kernel volume  (weight is (Cin, Cout/g, *k))
- Gemm:          M x N x K honouring transA / transB; MatMul: broadcast batch x M x N x K.
- Einsum (two operands): the product of the sizes of every index, broadcast ellipsis dims included.
- RNN / GRU / LSTM: steps x batch x directions x gates x (input + hidden) x hidden (1, 3, 4 gates),
                 plus 3 x hidden for LSTM peepholes; W, R, B (P) are parameters where constant.
- Bias adds, QuantizeLinear and DequantizeLinear are never MACs; weights reached through
  DequantizeLinear (or QuantizeLinear of a float initializer) are resolved to their initializer,
  so a QDQ graph counts exactly the MACs and weight parameters of its float twin.

Element-wise ops and resampling / warp ops are counted as output elements per op type, in their
own dicts. Ops the counter does not know are listed, never silently priced at zero. Shapes come from
ONNX's shape inference, then onnxruntime's symbolic one, then (for the tensors neither follows) one
onnxruntime run, on given `feeds` (`profile --module`: the factory's example inputs) or on zero-filled
inputs, which the result counts in `shapes_measured` and names in `shapes_measured_on`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import InputError
from mobilecodec.export.onnx_common import (RUN_ERROR_KEY, GraphIndex, constant_tensors, infer_static_shapes, load_onnx,
                                             node_attrs, value_shapes)
from mobilecodec.runtime.counts import WorkTotals, numel, text_table

if TYPE_CHECKING:
    import onnx

__all__ = ["NodeRecord", "OnnxComplexity", "SHAPES_MEASURED", "count_onnx", "format_onnx_table"]

#: report line for a graph some of whose shapes were measured by running it (`infer_static_shapes`)
SHAPES_MEASURED = ("shapes of {n} tensors measured by one onnxruntime run on {on} (no shape inference follows "
                   "them); where shapes follow input values (NonZero, NMS), the counts are those of that run")


# Op tables ----------------------------------------------------------------------------------

# op type -> indices of inputs that are weights / biases (parameters when fed by initializers).
_MAC_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvInteger": (1,),
    "QLinearConv": (3, 8),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "MatMulInteger": (0, 1),
    "QLinearMatMul": (0, 3),
}
# ONNX recurrent op -> gates, each X.W + H.R per time step; inputs 1, 2, 3 and 7 (W, R, B, P) are its weights.
RECURRENT_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
RECURRENT_WEIGHT_INPUTS = (1, 2, 3, 7)
# the bias input of the MAC ops that take one (RNN / GRU / LSTM: B, input 3): left out of the DRAM
# read-once rule, since an exporter merges equal-valued biases (a fresh model's zeros) into one tensor
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "QLinearConv": 8, "LSTM": 3, "GRU": 3, "RNN": 3}
# op type -> (index of input A, index of input B) for matrix products.
_MATMUL_INPUTS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_CONV_WEIGHT_INDEX = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}

_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Relu", "LeakyRelu", "PRelu",
    "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Abs", "Neg", "Max",
    "Min", "Mean", "Sum", "Round", "Floor", "Ceil", "Sign", "Erf", "Gelu", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Where", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Mod", "BitShift",
    "IsNaN", "IsInf", "Cos", "Sin", "Tan", "Atan", "Softmax", "LogSoftmax", "Hardmax",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "LpNormalization", "MeanVarianceNormalization",
}
# Reductions: counted with the element-wise work, on their *input* elements.
_REDUCTIONS = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
}
_RESAMPLING = {
    "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "GridSample", "GatherElements",
    "AffineGrid", "AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
    "MaxUnpool", "RoiAlign", "Col2Im",
}
_QUANT = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_DATA = {
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Flatten",
    "Identity", "Shape", "Size", "Gather", "GatherND", "Constant", "ConstantOfShape", "Cast",
    "CastLike", "Pad", "Expand", "Tile", "Range", "ScatterND", "ScatterElements", "NonZero",
    "Dropout", "Trilu", "EyeLike", "Optional", "OptionalGetElement", "SequenceConstruct",
}
# Ops that read a constant operand as data: an initializer read only by them (through Q/DQ) is what a
# position embedding, a class token or a layer scale exports to (`data_tensors`).
_DATA_READERS = {"Add", "Sub", "Mul", "Div", "Concat", "Expand", "Tile", "Where", "Max", "Min"}
# Ops a weight may pass through between its initializer and the MAC op (first input followed).
_WEIGHT_PASS_THROUGH = {
    "DequantizeLinear", "QuantizeLinear", "Identity", "Cast", "CastLike", "Transpose",
    "Reshape", "Squeeze", "Unsqueeze", "Flatten",
}


# Result types -------------------------------------------------------------------------------


@dataclass
class NodeRecord:
    """Counts for one graph node. `kind`: mac, elementwise, resampling, quant, data, unknown."""

    name: str
    op_type: str
    kind: str
    macs: int = 0
    elements: int = 0
    params: int = 0
    output_shape: list[int] | None = None
    # the weight tensors behind `params` other than biases (tensor -> elements): one that several nodes
    # use (a shared conv, an unrolled recurrence) is one tensor in DRAM. Biases are left out: an
    # exporter merges equal-valued initializers (the zero biases of an untrained model), so a bias
    # shared by name need not be shared in the model
    weight_tensors: dict[str, int] = field(default_factory=dict)


@dataclass
class OnnxComplexity(WorkTotals):
    """Totals of one ONNX graph plus a per-node breakdown (graph order).

    `params` counts the elements of the initializers feeding weight / bias inputs of MAC ops
    (through Q/DQ nodes too) and PRelu slopes, each initializer once; `other_params` counts all other
    initializers (quantization scales and zero points, shape constants, unfused norm parameters).
    `data_tensors` names the initializers of two or more elements (float, or quantized behind a
    DequantizeLinear) among those that only element-wise and data ops read (a ViT's position embedding and class token, ConvNeXt's layer
    scales; also a folded attention mask or bias): learned or fixed, which the graph cannot tell, so
    they are listed beside `params` rather than counted in it.
    """

    macs: int
    params: int
    other_params: int
    shapes_measured: int = 0  # tensor shapes no inference followed, taken from one onnxruntime run
    shapes_measured_on: str = ""  # the inputs of that run: "the example inputs" or "zero-filled inputs"
    macs_by_op: dict[str, int] = field(default_factory=dict)
    data_tensors: dict[str, int] = field(default_factory=dict)
    elementwise: dict[str, int] = field(default_factory=dict)
    resampling: dict[str, int] = field(default_factory=dict)
    quant_nodes: dict[str, int] = field(default_factory=dict)
    unknown_ops: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    nodes: list[NodeRecord] = field(default_factory=list)

    def node(self, name: str) -> NodeRecord:
        """The record of the node called `name`."""
        for rec in self.nodes:
            if rec.name == name:
                return rec
        raise KeyError(f"no node named {name!r}")


# Loading and shapes -------------------------------------------------------------------------


def _load(model_or_path: "onnx.ModelProto | str | os.PathLike") -> "onnx.ModelProto":
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise InputError(
            f"count_onnx needs an onnx.ModelProto or a path, got {type(model_or_path).__name__}")
    return load_onnx(model_or_path)


def _node_label(node: "onnx.NodeProto", index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


class _Graph:
    """Shape and producer lookups with errors that name the node that needed them."""

    def __init__(self, graph: "onnx.GraphProto", run_error: str | None = None) -> None:
        self.run_error = run_error  # why no run measured the shapes inference left out (onnxruntime's words)
        self.shapes = value_shapes(graph)
        inits = {init.name for init in graph.initializer}
        # graph inputs with a dimension that is a name or unset (a dynamic batch): the likely cause of
        # a tensor without a static shape, so the error names them rather than the tensor alone
        self.dynamic_inputs = [
            f"{vi.name}: " + (' x '.join(str(d.dim_value) if d.HasField('dim_value') else (d.dim_param or '?')
                                         for d in vi.type.tensor_type.shape.dim)
                              if vi.type.tensor_type.HasField("shape") else "no shape")
            for vi in graph.input if vi.name not in inits and (not vi.type.tensor_type.HasField("shape") or any(
                not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim))]
        self.initializers = {init.name: numel(init.dims) for init in graph.initializer}
        self.initializer_protos = {init.name: init for init in graph.initializer}
        self.constants: dict[str, int] = {}
        self.producers: dict[str, Any] = {}
        for node in graph.node:
            for out in node.output:
                self.producers[out] = node
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numel(attr.t.dims)

    def shape(self, tensor: str, node: Any, label: str) -> list[int]:
        shape = self.shapes.get(tensor)
        if shape is None:
            why = f"onnxruntime could not run it: {self.run_error}" if self.run_error else \
                "which needs static input shapes and a graph onnxruntime runs"
            hint = ""
            if self.dynamic_inputs:  # the likely cause, named first: the internal tensor alone told the user nothing
                hint = (f"graph input {'; '.join(self.dynamic_inputs)} has a dynamic dimension (export with fixed "
                        "input sizes: no dynamic_axes, or onnxruntime.tools.make_dynamic_shape_fixed); ")
            raise InputError(
                f"{hint}node {label!r} ({node.op_type}): tensor {tensor!r} has no static shape after "
                f"shape inference (ONNX's and onnxruntime's) nor from a run of the graph ({why}): export "
                "with fixed input sizes")
        return shape

    def source(self, tensor: str) -> str | None:
        """Initializer (or Constant output) that `tensor` comes from through Q/DQ and reshapes."""
        seen = set()
        while tensor and tensor not in seen:
            seen.add(tensor)
            if tensor in self.initializers or tensor in self.constants:
                return tensor
            prod = self.producers.get(tensor)
            if prod is None or prod.op_type not in _WEIGHT_PASS_THROUGH or not prod.input:
                return None
            tensor = prod.input[0]
        return None

    def producer_skipping_qdq(self, tensor: str) -> Any:
        """Node producing `tensor`, looking through Quantize/DequantizeLinear pairs."""
        prod = self.producers.get(tensor)
        while prod is not None and prod.op_type in _QUANT and prod.input:
            prod = self.producers.get(prod.input[0])
        return prod

    def initializers_behind(self, tensors: Any) -> set[str]:
        """Initializers that `tensors` are computed from (a recurrent node's W behind Slice / Concat)."""
        found: set[str] = set()
        todo, seen = list(tensors), set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in self.initializers:
                found.add(t)
            elif (prod := self.producers.get(t)) is not None:
                todo.extend(i for i in prod.input if i)
        return found

    def table(self, tensor: str) -> str | None:
        """The initializer `tensor` comes from when it is a learned table (an embedding: rank 2 or more,
        floating point or 8/16-bit quantized), not a shape or index list."""
        import onnx

        src = self.source(tensor)
        init = self.initializer_protos.get(src or "")
        ints = (onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.BOOL)
        return src if init is not None and len(init.dims) >= 2 and init.data_type not in ints else None

    def sourcenumel(self, name: str) -> int:
        return self.initializers.get(name, self.constants.get(name, 0))


def _attr_int(node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


# MAC formulas -------------------------------------------------------------------------------


def _node_macs(node: Any, label: str, g: _Graph) -> int:
    op = node.op_type
    if op in _CONV_WEIGHT_INDEX:
        w = g.shape(node.input[_CONV_WEIGHT_INDEX[op]], node, label)
        out = g.shape(node.output[0], node, label)
        return numel(out) * numel(w[1:])
    if op == "ConvTranspose":
        x = g.shape(node.input[0], node, label)
        w = g.shape(node.input[1], node, label)
        return numel(x) * numel(w[1:])
    if op == "Gemm":
        a = g.shape(node.input[0], node, label)
        b = g.shape(node.input[1], node, label)
        if len(a) != 2 or len(b) != 2:
            raise InputError(f"node {label!r} (Gemm): inputs must be 2-D, got {a} and {b}")
        m, k = (a[1], a[0]) if _attr_int(node, "transA", 0) else (a[0], a[1])
        kb, n = (b[1], b[0]) if _attr_int(node, "transB", 0) else (b[0], b[1])
        if k != kb:
            raise InputError(f"node {label!r} (Gemm): inner dimensions differ ({k} vs {kb})")
        return m * n * k
    if op in _MATMUL_INPUTS:
        ia, ib = _MATMUL_INPUTS[op]
        a = list(g.shape(node.input[ia], node, label))
        b = list(g.shape(node.input[ib], node, label))
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        m, k = a[-2], a[-1]
        kb, n = b[-2], b[-1]
        if k != kb:
            raise InputError(f"node {label!r} ({op}): inner dimensions differ ({k} vs {kb})")
        try:
            batch = _broadcast(a[:-2], b[:-2])
        except ValueError as exc:
            raise InputError(f"node {label!r} ({op}): {exc}") from exc
        return numel(batch) * m * n * k
    raise AssertionError(op)


def _recurrent_macs(node: Any, label: str, shapes: dict[str, list[int] | None],
                    const: set[str]) -> tuple[int, dict[str, int]]:
    """(MACs, {parameter tensor: elements}) of one ONNX RNN / GRU / LSTM node. MACs: per time step,
    batch element and direction, gates x (input_size + hidden) x hidden (RNN 1 gate, GRU 3, LSTM 4;
    GRU's linear_before_reset moves R's bias, not the count), plus 3 x hidden for an LSTM's peepholes P
    when given (one multiply-add each into the i, o, f gates); the whole seq_length of X is counted
    (sequence_lens can only shorten it). Parameters: W, R, B (and P) at the spec's sizes where they are
    constants (not graph inputs)."""
    attrs = node_attrs(node)
    op = node.op_type
    x = shapes.get(node.input[0])
    if x is None or len(x) != 3:
        raise InputError(f"node {label!r} ({op}): input {node.input[0]!r} has no static 3-D shape after shape "
                         "inference; export the graph with fixed input shapes")
    seq, batch, inp = (x[1], x[0], x[2]) if attrs.get("layout", 0) == 1 else (x[0], x[1], x[2])
    r = shapes.get(node.input[2]) if len(node.input) > 2 else None
    hidden = int(attrs["hidden_size"]) if "hidden_size" in attrs else (r[-1] if r else None)
    if not hidden:
        raise InputError(f"node {label!r} ({op}): neither a hidden_size attribute nor a static shape of R")
    direction = attrs.get("direction", b"forward")
    dirs = 2 if (direction.decode() if isinstance(direction, bytes) else direction) == "bidirectional" else 1
    gates = RECURRENT_GATES[op]

    def given(i: int) -> str | None:
        return node.input[i] if len(node.input) > i and node.input[i] else None

    peep = given(7) if op == "LSTM" else None
    macs = seq * batch * dirs * (gates * (inp + hidden) * hidden + (3 * hidden if peep else 0))
    sizes = {1: gates * hidden * inp, 2: gates * hidden * hidden, 3: 2 * gates * hidden, 7: 3 * hidden}
    params = {t: dirs * n for i, n in sizes.items() if (t := given(i)) and t in const and (i != 7 or peep)}
    return macs, params


def _einsum_macs(node: Any, label: str, g: _Graph) -> int | None:
    """MACs of a two-operand Einsum (attention's q.k^T and a.v): the product of the sizes of every
    index it names, the ellipsis's broadcast dimensions included, as a batched matrix product counts;
    None (an op left uncounted and listed) for other operand counts."""
    eq = next((a.s.decode() for a in node.attribute if a.name == "equation"), "").replace(" ", "")
    terms = eq.split("->")[0].split(",")
    if len(terms) != 2 or len(node.input) != 2:
        return None
    sizes: dict[str, int] = {}
    ellipsis: list[list[int]] = []
    for term, tensor in zip(terms, node.input):
        shape = g.shape(tensor, node, label)
        named = term.replace("...", "")
        rest = len(shape) - len(named)
        if ("..." in term and rest < 0) or ("..." not in term and rest != 0):
            raise InputError(f"node {label!r} (Einsum): {term!r} does not fit the shape {shape}")
        head = term.split("...")[0] if "..." in term else term
        dims = list(shape)
        if "..." in term:
            ellipsis.append(dims[len(head):len(head) + rest])
            dims = dims[:len(head)] + dims[len(head) + rest:]
        for letter, n in zip(named, dims):
            if sizes.setdefault(letter, n) != n and 1 not in (n, sizes[letter]):
                raise InputError(f"node {label!r} (Einsum): index {letter!r} is {sizes[letter]} and {n}")
            sizes[letter] = max(sizes[letter], n)
    try:
        batch = numel(_broadcast(*ellipsis)) if len(ellipsis) == 2 else numel(ellipsis[0]) if ellipsis else 1
    except ValueError as exc:
        raise InputError(f"node {label!r} (Einsum): {exc}") from None
    return batch * numel(list(sizes.values()))


def _broadcast(a: list[int], b: list[int]) -> list[int]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise ValueError(f"batch dimensions {a} and {b} do not broadcast")
        out.append(max(da, db) if 1 in (da, db) else da)
    return out[::-1]


# Public API ---------------------------------------------------------------------------------


def _bias_params(node: Any, g: _Graph, weight_sources: set[str]) -> int:
    """Params of an Add that adds an initializer to a MAC op's output (e.g. Linear on 3-D): one value
    per output feature (the last dimension of a matrix product, the channels of a convolution); a
    larger tensor added there (a folded attention bias or mask, 1x24x49x49 after a Q.K^T MatMul) is
    no bias and is left to `data_tensors`."""
    if len(node.input) != 2:
        return 0
    for mac_side, other in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        prod = g.producer_skipping_qdq(mac_side)
        if prod is None or prod.op_type not in _MAC_WEIGHT_INPUTS:
            continue
        src = g.source(other)
        out = g.shapes.get(prod.output[0])
        if not out or len(out) < 2:
            features = None
        elif prod.op_type in _CONV_WEIGHT_INDEX or prod.op_type == "ConvTranspose":
            features = out[1]
        elif prod.op_type in _MATMUL_INPUTS and g.source(prod.input[0]) is not None \
                and g.source(prod.input[_MATMUL_INPUTS[prod.op_type][1]]) is None:
            features = out[-2]  # W @ x: the weight's rows are the output's features
        else:
            features = out[-1]
        if src is not None and (features is None or g.sourcenumel(src) == features):
            weight_sources.add(src)
            return g.sourcenumel(src)
    return 0


def count_onnx(model_or_path: "onnx.ModelProto | str | os.PathLike",
               feeds: dict[str, Any] | None = None) -> OnnxComplexity:
    """Count MACs, parameters, element-wise and resampling work of a static-shape ONNX graph; `feeds`
    (input name -> array) are the inputs of a shape-measuring run, where one is needed."""
    model, measured_names = infer_static_shapes(_load(model_or_path), feeds)
    measured = len(measured_names)
    graph = model.graph
    g = _Graph(graph, next((p.value for p in model.metadata_props if p.key == RUN_ERROR_KEY), None))

    result = OnnxComplexity(macs=0, params=0, other_params=0, shapes_measured=measured,
                            shapes_measured_on=("the example inputs" if feeds else "zero-filled inputs")
                            if measured else "")
    weight_sources: set[str] = set()
    recurrent_params: dict[str, int] = {}
    const: set[str] | None = None
    init_names = {init.name for init in graph.initializer}
    result.inputs = {vi.name: g.shapes.get(vi.name) for vi in graph.input
                     if vi.name not in init_names}
    result.outputs = {vi.name: g.shapes.get(vi.name) for vi in graph.output}

    for index, node in enumerate(graph.node):
        op = node.op_type
        label = _node_label(node, index)
        rec = NodeRecord(name=label, op_type=op, kind="unknown")
        if op in _MAC_WEIGHT_INPUTS:
            rec.kind = "mac"
            rec.macs = _node_macs(node, label, g)
            for i in _MAC_WEIGHT_INPUTS[op]:
                if i < len(node.input) and node.input[i]:
                    src = g.source(node.input[i])
                    if src is not None:
                        weight_sources.add(src)
                        rec.params += g.sourcenumel(src)
                        if i != _BIAS_INPUT.get(op):
                            rec.weight_tensors[src] = g.sourcenumel(src)
        elif op == "Einsum" and (einsum := _einsum_macs(node, label, g)) is not None:
            rec.kind, rec.macs = "mac", einsum
            for src in {g.source(t) for t in node.input if t} - {None}:  # a constant operand is a weight
                weight_sources.add(src)
                rec.params += g.sourcenumel(src)
                rec.weight_tensors[src] = g.sourcenumel(src)
        elif op in RECURRENT_GATES:
            if const is None:
                const = constant_tensors(graph)
            rec.kind = "mac"
            rec.macs, own = _recurrent_macs(node, label, g.shapes, const)
            rec.params = sum(own.values())
            bias = node.input[_BIAS_INPUT[op]] if len(node.input) > _BIAS_INPUT[op] else None
            rec.weight_tensors = {t: n for t, n in own.items() if t != bias}
            recurrent_params.update(own)  # a weight tensor shared by two nodes counts once
        elif op in _ELEMENTWISE or op in _REDUCTIONS:
            rec.kind = "elementwise"
            if op == "Add":  # a bias exported as MatMul/Conv + Add is still a parameter
                rec.params = _bias_params(node, g, weight_sources)
            elif op == "PRelu" and (slope := g.source(node.input[1])) is not None:  # learned slopes
                weight_sources.add(slope)
                rec.params = g.sourcenumel(slope)
            counted = node.input[0] if op in _REDUCTIONS else node.output[0]
            rec.elements = numel(g.shape(counted, node, label))
            result.elementwise[op] = result.elementwise.get(op, 0) + rec.elements
        elif op in _RESAMPLING:
            rec.kind = "resampling"
            rec.elements = numel(g.shape(node.output[0], node, label))
            result.resampling[op] = result.resampling.get(op, 0) + rec.elements
        elif op in _QUANT:
            rec.kind = "quant"
            result.quant_nodes[op] = result.quant_nodes.get(op, 0) + 1
        elif op in _DATA:
            rec.kind = "data"
            if op == "Gather" and (table := g.table(node.input[0])) is not None:  # an embedding lookup
                weight_sources.add(table)
                rec.params = g.sourcenumel(table)
        else:
            result.unknown_ops[op] = result.unknown_ops.get(op, 0) + 1
        if rec.kind == "mac":
            result.macs += rec.macs
            result.macs_by_op[op] = result.macs_by_op.get(op, 0) + rec.macs
        if node.output and node.output[0]:
            rec.output_shape = g.shapes.get(node.output[0])
        result.nodes.append(rec)

    result.params = sum(g.sourcenumel(s) for s in weight_sources) + sum(
        n for t, n in recurrent_params.items() if t not in weight_sources)
    weights = weight_sources | g.initializers_behind(recurrent_params)
    result.other_params = sum(n for name, n in g.initializers.items() if name not in weights)
    result.data_tensors = _data_tensors(graph, g, weights)
    return result


def _data_tensors(graph: Any, g: _Graph, weights: set[str]) -> dict[str, int]:
    """Initializers of two or more elements, not in `weights`, whose readers (through Q/DQ and
    reshapes) are all element-wise or data ops (`_DATA_READERS`), largest first: float ones, and
    quantized ones that a DequantizeLinear reads (an int8 export's position embedding); an integer
    read directly is shape arithmetic."""
    import onnx

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    consumers = GraphIndex(graph).consumers
    found = {}
    for name, init in g.initializer_protos.items():
        if name in weights or g.initializers[name] < 2:
            continue
        if init.data_type not in floats:
            direct = consumers.get(name, [])
            if not direct or not all(n.op_type == "DequantizeLinear" and n.input[0] == name for n in direct):
                continue
        todo, readers = [name], set()
        while todo:
            t = todo.pop()
            for node in consumers.get(t, []):
                if node.op_type in _WEIGHT_PASS_THROUGH and node.input[0] == t:
                    todo.extend(node.output)
                else:
                    readers.add(node.op_type)
        if readers and readers <= _DATA_READERS:
            found[name] = g.initializers[name]
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def format_onnx_table(result: OnnxComplexity, kinds: tuple[str, ...] = ("mac",)) -> str:
    """Plain-text per-node breakdown of the nodes whose kind is in `kinds`, then the totals."""
    rows = [[r.name, r.op_type, f"{r.params:,}", f"{r.macs:,}", f"{r.elements:,}",
             str(r.output_shape)] for r in result.nodes if r.kind in kinds]
    lines = text_table(["node", "op", "params", "MACs", "elements", "output"], rows)
    lines.append(f"total: params {result.params:,} (+{result.other_params:,} other)  "
                 f"MACs {result.macs:,}")
    if result.elementwise:
        lines.append("element-wise: " + ", ".join(f"{k} {v:,}" for k, v in
                                                  result.elementwise.items()))
    if result.resampling:
        lines.append("resampling / warps: " + ", ".join(f"{k} {v:,}" for k, v in
                                                        result.resampling.items()))
    if result.unknown_ops:
        lines.append("not counted (unknown ops): " + ", ".join(f"{k} x{v}" for k, v in
                                                               result.unknown_ops.items()))
    return "\n".join(lines)
