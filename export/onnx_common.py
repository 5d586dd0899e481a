"""ONNX settings, loading, static shapes and graph clean-up shared by the float export, the aimet QDQ
export, the HTP check and the profiler's counters (one place, so that neither imports the other)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobilecodec.errors import one_line

OPSET = 17  # best covered by onnxruntime-qnn's QDQ tooling and HTP op builders
IR_VERSION = 8  # loads in every onnxruntime >= 1.14


def load_onnx(path: "str | os.PathLike") -> Any:
    """The ModelProto in `path`; InputError for a missing file or one that holds no ONNX model (onnx
    parses an empty or foreign file whose bytes happen to decode into an empty model without error)."""
    import onnx

    from mobilecodec.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise InputError(f"cannot read ONNX file {path}: {one_line(exc)}") from None
    if not proto.opset_import or not proto.graph.node:
        raise InputError(f"{path} is not an ONNX model (no {'opset' if not proto.opset_import else 'graph nodes'})")
    return proto


def constants_to_initializers(proto: Any) -> None:
    """Turn Constant nodes (Clip bounds, Slice indices) into initializers and drop unused ones."""
    from onnx import numpy_helper

    keep = []
    for node in proto.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            proto.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    inits = [t for t in proto.graph.initializer if t.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(inits)


class GraphIndex:
    """Lookups over one graph, built once before a rewrite or a walk: initializers by name, the node
    that produces each tensor, the nodes that read it, and the graph outputs."""

    def __init__(self, graph: Any) -> None:
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str) -> Any:
        """The single node reading tensor `name` (None if several, none, or it is a graph output)."""
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in self.outputs else None

    def dq_of_init(self, name: str) -> tuple[Any, list[Any]] | None:
        """(DequantizeLinear node, its constant inputs as numpy arrays) when tensor `name` is a
        DequantizeLinear of initializers only; else None."""
        from onnx import numpy_helper

        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or not all(i in self.inits for i in dq.input if i):
            return None
        return dq, [numpy_helper.to_array(self.inits[i]) for i in dq.input if i]


# Static shapes and constants -----------------------------------------------------------------
# The profiler's counters (runtime/) and the HTP op check (export/npu_check) see a graph the same way:
# every tensor's static shape, and which tensors the compiler folds to constants before the graph runs.

#: ops whose output is the input's shape (or element count): constants once that shape is static
SHAPE_OPS = ("Shape", "Size")


def value_shapes(graph: Any) -> dict[str, list[int] | None]:
    """name -> static shape of every declared tensor (None when some dimension or the rank is unknown)."""
    shapes: dict[str, list[int] | None] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            shapes.setdefault(vi.name, None)
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if shapes.get(vi.name) is None:
            shapes[vi.name] = None if any(d is None for d in dims) else [int(d) for d in dims]
    for init in graph.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = [int(d) for d in attr.t.dims]
    return shapes


#: metadata key under which a model inferred here lists the tensors whose shapes a run measured, so
#: that inferring it again (the counter, the layer model and the HTP check of one profile) neither
#: runs it again nor takes those shapes for inferred ones
MEASURED_KEY = "mobilecodec.shapes_measured"
#: metadata key under which that run's failure is kept (onnxruntime's reason, one line): the error
#: that names an unshaped tensor says why, and inferring the model again does not retry the run
RUN_ERROR_KEY = "mobilecodec.shapes_run_error"


def infer_static_shapes(model: Any, feeds: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """The model (local functions inlined) with every tensor's static shape it can find, and the
    tensors whose shape was measured by running it (`_shapes_by_running`, on `feeds`, name -> array,
    else on zero-filled inputs) because neither ONNX's nor onnxruntime's symbolic inference followed
    them: shapes of that run, not a compiler's (`compiler_constants`); a model this returned keeps
    that list (`MEASURED_KEY`). Raises InputError when ONNX's inference fails outright."""
    import onnx
    import onnx.inliner
    import onnx.shape_inference

    from mobilecodec.errors import InputError

    if len(model.functions):
        model = onnx.inliner.inline_local_functions(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise InputError(f"ONNX shape inference failed: {one_line(exc)}") from None
    props = {p.key: p for p in inferred.metadata_props}
    before = json.loads(props[MEASURED_KEY].value) if MEASURED_KEY in props else []
    if not _unshaped(inferred.graph):
        return inferred, before
    # ONNX's inference does not follow a Slice or Pad whose bounds are computed from shapes (torch's
    # export of x.chunk, a window padding); onnxruntime's symbolic inference does, on static graphs
    inferred = _symbolic_shapes(inferred)
    missing = _unshaped(inferred.graph)
    retry = missing and RUN_ERROR_KEY not in props
    measured = before + (_shapes_by_running(inferred, missing, feeds) if retry else [])
    if measured != before:
        mark = next((p for p in inferred.metadata_props if p.key == MEASURED_KEY), None) or \
            inferred.metadata_props.add(key=MEASURED_KEY)
        mark.value = json.dumps(measured)
    return inferred, measured


def _symbolic_shapes(model: Any) -> Any:
    """`model` with onnxruntime's symbolic shape inference, where that completes (a partial result has
    fewer static shapes than ONNX's: `model` is kept). Its public `SymbolicShapeInference.infer_shapes`
    does the same steps but, where it cannot finish, first saves the half-inferred model into the
    working directory (`sym_shape_infer_temp.onnx` and the weights as a uuid-named .data file: 114 MB
    for swin_t, up to three times per profile)."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        ssi = SymbolicShapeInference(int_max=2**31 - 1, auto_merge=False, guess_output_rank=False, verbose=0)
        ssi._preprocess(model)
        complete = False
        while ssi.run_:
            complete = ssi._infer_impl()
        ssi._update_output_from_vi()
        return ssi.out_mp_ if complete else model
    except Exception:  # noqa: BLE001 - a graph it cannot follow (or another onnxruntime): measured instead
        return model


def _unshaped(graph: Any) -> list[str]:
    """Node outputs without a static shape, in graph order."""
    shapes = value_shapes(graph)
    return [o for n in graph.node for o in n.output if o and shapes.get(o) is None]


def _shapes_by_running(model: Any, missing: list[str], given: dict[str, Any] | None = None) -> list[str]:
    """Record in `model` the shapes of the `missing` tensors as one onnxruntime run of the graph
    produces them (torchvision's swin_t computes its window padding from shapes, which no inference
    follows), on the `given` inputs (a model's own example inputs: a detector's boxes depend on their
    values) or on zero-filled ones of the graph's static input shapes; the names recorded. Nothing is
    recorded when an input has no static shape or the run fails: the caller then names the tensor."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    shapes = value_shapes(model.graph)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if given is not None and vi.name in given:
            feeds[vi.name] = np.asarray(given[vi.name])
            continue
        shape, tt = shapes.get(vi.name), vi.type.tensor_type
        if shape is None or not tt.elem_type:
            return []
        feeds[vi.name] = np.zeros(shape, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
    # a tensor of known element type is fetched as its Shape (a few int64s), so the run frees it as a
    # plain run does; fetching the values held all of them at once (swin_t at 224: 1,409 tensors)
    types = {vi.name: vi.type for vi in list(model.graph.value_info) + list(model.graph.output)}
    elem = {t: types[t].tensor_type.elem_type for t in missing
            if t in types and types[t].HasField("tensor_type") and types[t].tensor_type.elem_type}
    taken = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input} | inits
    fetch = {}
    for t in missing:
        if t in elem:
            fetch[t] = f"{t}:shape"
            while fetch[t] in taken:  # a name the graph already uses
                fetch[t] += "_"
        elif not (t in types and types[t].WhichOneof("value") in ("sequence_type", "optional_type", "map_type")):
            fetch[t] = t  # element type unknown: the value, whose dtype says it
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.node.extend(onnx.helper.make_node("Shape", [t], [f]) for t, f in fetch.items() if f != t)
    probe.graph.output.extend(onnx.ValueInfoProto(name=f) for f in fetch.values())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # its failure is reported once, by the caller, not as a coloured log line
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        values = sess.run(list(fetch.values()), feeds)
    except Exception as exc:  # noqa: BLE001 - a graph onnxruntime cannot run: the caller names the tensor
        model.metadata_props.add(key=RUN_ERROR_KEY, value=ort_reason(exc))
        return []
    recorded = []
    value_info = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.output)}
    for (name, fetched), value in zip(fetch.items(), values):
        if not isinstance(value, np.ndarray):
            continue  # a sequence or optional value: no tensor shape
        if fetched == name:
            dtype, shape = onnx.helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
        else:
            dtype, shape = elem[name], value.tolist()
        vi = value_info.get(name)
        if vi is None:
            vi = model.graph.value_info.add()
            vi.name = name
        vi.type.tensor_type.elem_type = dtype
        vi.type.tensor_type.shape.Clear()
        for d in shape:
            vi.type.tensor_type.shape.dim.add().dim_value = int(d)
        recorded.append(name)
    return recorded


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's error as one line a user can read: without its '[ONNXRuntimeError] : 1 : FAIL : '
    prefix and the C++ source locations and signatures inside the message."""
    import re

    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    # "/onnxruntime_src/.../reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(...) " anywhere
    text = re.sub(r"\S+\.(?:cc|cpp|h):\d+ (?:[^()]*\([^()]*\)(?: const)? )?", "", text)
    return text[:400]


def constant_tensors(graph: Any) -> set[str]:
    """Tensors computed from initializers and Constant nodes alone (weights behind Slice / Concat /
    Unsqueeze / DequantizeLinear, as torch exports a GRU's): a recurrent node's parameters."""
    return compiler_constants(graph, {})[1]  # no static shapes: no Shape / Size folds


#: inputs that set an op's output shape by their values (the rest set it by their shapes)
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Pad": (1, 3), "Slice": (1, 2, 3, 4), "Resize": (1, 2, 3),
    "Upsample": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "TopK": (1,), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), "OneHot": (1,), "CenterCropPad": (1,),
    **{op: (1,) for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")}}
#: ops whose output shape follows their inputs' values whatever is constant
VALUE_SHAPED = frozenset({"NonZero", "Unique", "NonMaxSuppression", "Compress", "StringSplit", "If", "Loop", "Scan"})


def compiler_constants(graph: Any, shapes: dict[str, list[int] | None],
                       measured: list[str] | set[str] = ()) -> tuple[set[str], set[str]]:
    """(tensors of static shape, tensors folded to constants) as onnxruntime sees the graph before it
    hands it to an execution provider. Folded: computed from initializers, Constant nodes and the
    Shape / Size of statically shaped tensors (the Shape -> Mod -> Pad chain of a window padding).
    Static: shapes ONNX's or onnxruntime's inference gives, and the `measured` ones (from a run) whose
    node's shape-setting inputs (`SHAPE_INPUTS`) are folded and whose other inputs are static; a
    slice whose end comes from a ReduceMax of the input stays dynamic, whatever one run measured."""
    measured = set(measured)
    static = {n for n, s in shapes.items() if s is not None and n not in measured}
    const = {i.name for i in graph.initializer}
    for node in graph.node:  # ONNX graphs are topologically sorted
        ins = [t for t in node.input if t]
        outs = [t for t in node.output if t]
        if (ins and all(t in const for t in ins)) or (not ins and node.op_type == "Constant") or (
                node.op_type in SHAPE_OPS and ins and ins[0] in static):
            const.update(outs)
            static.update(o for o in outs if shapes.get(o) is not None)
        elif node.op_type not in VALUE_SHAPED:
            sets_shape = SHAPE_INPUTS.get(node.op_type, ())
            if all((t in const) if k in sets_shape else (t in static) for k, t in enumerate(node.input) if t):
                static.update(o for o in outs if o in measured and shapes.get(o) is not None)
    return static, const


def node_attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as plain Python values (ints, floats, lists, tensors as protos)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def tensor_info(vi: Any) -> dict[str, Any]:
    """Name, static shape and dtype of an ONNX ValueInfoProto (non-static dims kept as strings)."""
    import onnx

    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
    return {"name": vi.name, "shape": dims, "dtype": dtype}
