"""Will these graphs run on the Qualcomm HTP? A static check (op allow-list, static shapes, no
control flow, rank <= 5, no GridSample) naming graph, node and op, then proof by compiling a QDQ
version of each graph on onnxruntime-qnn's HTP backend with CPU fallback disabled."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError
from mobilecodec.export.onnx_common import node_attrs

# ONNX ops the pinned onnxruntime-qnn (2.7) compiles onto the HTP with CPU fallback off, each
# measured in a small W8A8 QDQ graph (`export.htp_probe`, `python scripts/htp_op_support.py`; checked
# again by tests/test_htp_ops.py), plus the Q/DQ and Constant plumbing. The list taken from the QNN
# EP's documentation rejected ops it compiles (HardSigmoid, Softplus, GlobalMaxPool, LSTM, GRU,
# ScatterND, ...; mobilenet_v3 got 9 false rejections) and allowed two it does not (Asin, ReduceProd).
# Measured and refused: Acos Acosh Asinh Atanh Celu Cosh Dropout Einsum Erf GlobalLpPool Hardmax
# Reciprocal ReduceL1 ReduceSumSquare RNN Shrink Sinh Softsign Trilu. LayerNormalization compiles with a
# uint8 scale, not an int8 one (`qdq.htp_type_overrides`). GridSample is left out on
# purpose: the design keeps warps off the NPU graphs (host / warping core).
HTP_OPS = frozenset("""
Abs Add And ArgMax ArgMin Atan AveragePool BatchNormalization Cast Ceil Clip Concat Constant Conv ConvTranspose
Cos CumSum DepthToSpace DequantizeLinear Div Elu Equal Exp Expand Flatten Floor GRU Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GroupNormalization HardSigmoid
HardSwish Identity InstanceNormalization LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax LpNormalization LpPool MatMul Max MaxPool Mean Min Mish Mul Neg Not Or PRelu Pad Pow
QuantizeLinear ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape Resize Round
ScatterElements ScatterND Selu Sigmoid Sign Sin Slice Softmax Softplus SpaceToDepth Split Sqrt Squeeze Sub
Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Where Xor
""".split())
#: why an op is refused, where there is more to say than that the EP does not take it (a way round it)
REFUSED_BECAUSE = {
    "Erf": "op not supported by the QNN HTP backend (a GELU exported below opset 20 is an Erf chain; at "
           "opset 20 it is one Gelu op, which compiles)",
    "Reciprocal": "the QNN EP takes it but the graph fails to finalize (QNN_COMMON_ERROR_MEM_ALLOC)",
}
FORBIDDEN = {
    "GridSample": "per-pixel gather warps stay off the NPU graphs (use the host block warp)",
    "If": "control flow cannot run on the HTP", "Loop": "control flow cannot run on the HTP",
    "Scan": "control flow cannot run on the HTP",
}
#: the highest tensor rank an element-wise op compiled at (`htp_probe`: rank 5 yes, 6 no)
MAX_RANK = 5
#: ops that may read and write a rank-6 tensor: a shuffle between Reshapes compiles at rank 6 when its
#: Transpose keeps the first and last axes (`htp_probe`'s rank6shuffle, with the Q/DQ pairs the recipe
#: puts on it; swin_t's window partition), not at rank 7 (rank7shuffle) nor moving the last axis
SHUFFLE_OPS = frozenset({"Reshape", "Transpose", "QuantizeLinear", "DequantizeLinear"})


@dataclass
class Issue:
    """One reason a graph cannot run on the HTP."""

    graph: str
    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        if self.node == "-":  # the graph's, not one node's
            return f"{self.graph}: {self.reason}"
        return f"{self.graph}: node {self.node!r} ({self.op}): {self.reason}"


@dataclass
class GraphReport:
    name: str
    ops: dict[str, int]
    issues: list[Issue] = field(default_factory=list)
    compiled: bool | None = None  # None: not tried
    compile_seconds: float | None = None
    compile_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.issues and self.compiled is not False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "ops": self.ops, "issues": [str(i) for i in self.issues],
                "compiled": self.compiled, "compile_seconds": self.compile_seconds,
                "compile_error": self.compile_error}


def _dims_static(vi: Any) -> tuple[bool, int]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return False, -1
    dims = t.shape.dim
    return all(d.HasField("dim_value") and d.dim_value > 0 for d in dims), len(dims)


def _only_shuffled(tensor: str, producers: dict[str, Any], consumers: dict[str, list[Any]]) -> bool:
    """Whether a node writes `tensor` and every node that writes or reads it is a SHUFFLE_OPS one."""
    nodes = [producers.get(tensor), *consumers.get(tensor, [])]
    return nodes[0] is not None and all(n.op_type in SHUFFLE_OPS for n in nodes)


def _layernorm_axis_issue(node: Any, shapes: dict[str, list[int] | None]) -> str | None:
    """Why a LayerNormalization cannot compile: QNN normalises along the last axis only (`htp_probe`'s
    LayerNormalization_hw, over H and W, does not compile)."""
    shape = shapes.get(node.input[0])
    axis = node_attrs(node).get("axis", -1)
    if shape is None or axis in (-1, len(shape) - 1):
        return None
    return (f"QNN's LayerNorm on the HTP normalises along the last axis only; this one normalises from axis {axis} "
            f"of a rank-{len(shape)} tensor")


def _high_rank_transpose_issue(node: Any, shapes: dict[str, list[int] | None]) -> str | None:
    """Why a Transpose of a tensor above MAX_RANK cannot compile: rank-6 shuffles that keep the first
    and the last axis in place compile (`htp_probe`'s rank6shuffle; a Swin's window partition), one that
    moves the last axis and a rank-7 one do not (rank6shuffle_last, rank7shuffle), nor did the reversal
    of a rank-6 tensor in the profile audit's reproduction: others are not measured, and refused."""
    shape = shapes.get(node.input[0])
    if shape is None or len(shape) <= MAX_RANK:
        return None
    perm = list(node_attrs(node).get("perm", list(range(len(shape)))[::-1]))
    if len(shape) == MAX_RANK + 1 and perm[0] == 0 and perm[-1] == len(shape) - 1:
        return None
    return (f"a rank-{len(shape)} Transpose (perm {perm}) compiles on the HTP only at rank {MAX_RANK + 1} with the "
            f"first and last axes in place")


def static_issues(proto: Any, graph: str) -> list[Issue]:
    """Reasons `proto` cannot run on the HTP, found without compiling (each names its node). Nodes
    and tensors onnxruntime folds to constants before partitioning (`onnx_common.compiler_constants`:
    the Shape -> Mod -> Pad chain of a shape-dependent padding) never reach the HTP and are not checked."""
    import onnx

    from mobilecodec.export.onnx_common import compiler_constants, infer_static_shapes, value_shapes

    measured: list[str] = []
    try:
        inferred, measured = infer_static_shapes(proto)
    except InputError:  # an un-inferable graph is reported via its declared I/O only
        inferred = proto
    g = inferred.graph
    shapes = value_shapes(g)
    static, folded = compiler_constants(g, shapes, measured)
    issues: list[Issue] = []
    consumers: dict[str, list[Any]] = {}
    producers: dict[str, Any] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
        for o in node.output:
            producers[o] = node
    for index, node in enumerate(g.node):
        name = node.name or f"#{index}"
        if node.op_type in FORBIDDEN:
            issues.append(Issue(graph, name, node.op_type, FORBIDDEN[node.op_type]))
        elif (node.domain not in ("", "ai.onnx") or node.op_type not in HTP_OPS) \
                and not (node.output and all(o in folded for o in node.output if o)):
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            issues.append(Issue(graph, name, op, REFUSED_BECAUSE.get(op, "op not supported by the QNN HTP backend")))
        if node.op_type == "LayerNormalization" and (why := _layernorm_axis_issue(node, shapes)):
            issues.append(Issue(graph, name, node.op_type, why))
        if node.op_type == "Transpose" and (why := _high_rank_transpose_issue(node, shapes)):
            issues.append(Issue(graph, name, node.op_type, why))
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute) \
                and node.op_type not in FORBIDDEN:
            issues.append(Issue(graph, name, node.op_type, "node holds a subgraph (control flow)"))
    seen: set[str] = set()
    for kind, vis in (("input", g.input), ("output", g.output), ("tensor", g.value_info)):
        for vi in vis:
            if vi.name in seen or vi.name in folded or (kind == "tensor" and vi.name not in producers
                                                           and vi.name not in consumers):
                continue  # a value_info no node writes or reads (a quantizer's leftover): not in the graph
            seen.add(vi.name)
            fixed, rank = _dims_static(vi)
            node = producers.get(vi.name) or (consumers.get(vi.name) or [None])[0]
            nname = (node.name or node.op_type) if node is not None else "-"
            op = node.op_type if node is not None else "-"
            if not fixed or vi.name not in static:  # a shape one run measured may follow the input's values
                issues.append(Issue(graph, nname, op, f"graph {kind} {vi.name!r} has a dynamic or unknown shape "
                                                      "(the HTP needs static shapes)"))
            elif rank > MAX_RANK and not (kind == "tensor" and rank == MAX_RANK + 1
                                          and _only_shuffled(vi.name, producers, consumers)):
                issues.append(Issue(graph, nname, op, f"{kind} {vi.name!r} has rank {rank} > {MAX_RANK}"))
    inits = {i.name for i in g.initializer}
    overridable = [vi.name for vi in g.input if vi.name in inits]
    if overridable:  # torch.onnx.export(keep_initializers_as_inputs=True)
        shown = ", ".join(repr(n) for n in overridable[:3]) + (", ..." if len(overridable) > 3 else "")
        issues.append(Issue(graph, "-", "-", f"{len(overridable)} weights are also graph inputs ({shown}): "
                            "onnxruntime takes them as inputs a caller may replace, not as constants; the HTP "
                            "takes some ops' weights so (a Conv's) and not others' (a BatchNormalization's; "
                            "torchvision's mobilenet_v3_small and efficientnet_b0 did not compile), and a deployed "
                            "graph holds them as constants: export without keep_initializers_as_inputs, or remove "
                            "them from graph.input"))
    return issues


def unsupported_nodes(log: list[str]) -> str:
    """'; QNN: Unsupported nodes in QNN EP: ...' from onnxruntime's log lines of a compile, where they
    name them (the compile's exception says only that some node was left to the CPU), else ''."""
    said = [ln.split("] ", 1)[-1].replace("\x1b[m", "").strip() for ln in log if "Unsupported nodes" in ln]
    return f"; QNN: {said[0][:400]}" if said else ""


def check_graph(path: str | Path, name: str | None = None, *, compile: bool = True, soc: Any = None,
                workdir: str | Path | None = None, feeds: list | None = None) -> GraphReport:
    """Static check of one ONNX graph, then (if it passes and `compile`) a QDQ compile on the HTP."""
    from mobilecodec.export.onnx_common import load_onnx
    from mobilecodec.export.onnx_export import op_histogram

    path = Path(path)
    proto = load_onnx(path)
    name = name or path.stem
    rep = GraphReport(name, op_histogram(proto), static_issues(proto, name))
    if compile and not rep.issues:
        from mobilecodec.errors import ToolError

        from mobilecodec.export.qdq import quantize_graph, random_feeds
        from mobilecodec.export.qnn import htp_session
        from mobilecodec.nativeio import native_stderr_captured

        is_qdq = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            target = path
            if not is_qdq:
                target = quantize_graph(path, Path(tmp) / f"{name}.qdq.onnx", feeds or random_feeds(path))
            t0 = time.perf_counter()
            # onnxruntime's log stays out of a compile that succeeds (QNN's "Unsupported nodes" of a
            # layout pass printed beside an "ok": profile audit); a failure's names the nodes left over
            with native_stderr_captured() as log:
                try:
                    htp_session(target, soc)
                    rep.compiled = True
                except ToolError as exc:
                    rep.compiled, rep.compile_error = False, str(exc)
            rep.compile_seconds = round(time.perf_counter() - t0, 3)
            if not rep.compiled:
                rep.compile_error += unsupported_nodes(log)
    return rep


def check_package(target: str | Path, *, compile: bool = True, soc: Any = None) -> list[GraphReport]:
    """Check every graph of a package folder, or one .onnx file."""
    from mobilecodec.export.manifest import load_package_model

    target = Path(target)
    if target.is_file() and target.suffix == ".onnx":
        return [check_graph(target, compile=compile, soc=soc)]
    if not target.exists():
        raise InputError(f"no such package folder or ONNX file: {target}")
    man, _, _ = load_package_model(target)  # what encode and decode would refuse (graph I/O, config, weights)
    return [check_graph(target / g["file"], name, compile=compile, soc=soc) for name, g in man["graphs"].items()]


