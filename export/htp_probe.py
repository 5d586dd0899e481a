"""Which ONNX ops does the pinned onnxruntime-qnn put on the HTP? One small graph per op (a 3x3 conv,
then the op on its output), quantized to QDQ as `npu_check` does and compiled on the QNN HTP
backend with CPU fallback disabled: it compiles whole, or the EP leaves the op to the CPU, or it
takes the op and fails to finalize the graph (QNN_COMMON_ERROR_MEM_ALLOC: Reciprocal at each of three
sizes tried, a rank-6 element-wise op), so a graph holding one does not compile either.

`export.npu_check.HTP_OPS`, the static check's allow-list, is these results
(`python scripts/htp_op_support.py`); `tests/test_htp_ops.py` compiles every op again so that the
list and the installed QNN EP cannot part silently. A single-op graph is one attribute set and one
data type: a compile of the whole graph (`mobilecodec compile`, `npu_check.check_graph`) stays the proof."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: the conv's output every probe feeds its op: (N, C, H, W)
SHAPE = (1, 8, 16, 16)

#: ops applied to the conv's output alone, with the attributes they need
UNARY: dict[str, dict[str, Any]] = {op: {} for op in """
Abs Acos Acosh Asin Asinh Atan Atanh Ceil Cos Cosh Elu Erf Exp Floor HardSigmoid HardSwish LeakyRelu Log
Neg Reciprocal Relu Round Selu Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh Celu ThresholdedRelu
Identity Softmax LogSoftmax Hardmax LpNormalization GlobalAveragePool GlobalMaxPool GlobalLpPool Flatten
Shrink Dropout Gelu Mish
""".split()}
UNARY.update({"MaxPool": {"kernel_shape": [2, 2], "strides": [2, 2]},
              "AveragePool": {"kernel_shape": [2, 2], "strides": [2, 2]},
              "LpPool": {"kernel_shape": [2, 2], "strides": [2, 2]},
              "LRN": {"size": 3}, "DepthToSpace": {"blocksize": 2}, "SpaceToDepth": {"blocksize": 2},
              "Transpose": {"perm": [0, 2, 3, 1]}})
#: ops taking the conv's output and a (1, C, 1, 1) constant
BINARY = "Add Sub Mul Div Pow Max Min Mean Sum PRelu".split()
#: comparisons, their boolean output selecting between the conv's output and a constant (Where)
COMPARE = "Equal Greater GreaterOrEqual Less LessOrEqual".split()
#: reductions over the channels (axes given as an input)
REDUCE = "ReduceMax ReduceMin ReduceMean ReduceSum ReduceProd ReduceL1 ReduceL2 ReduceLogSumExp ReduceSumSquare".split()
#: the opset each probe is built at, where not OPSET (ops newer than it, or an input-form change:
#: every Reduce op takes its axes as an input from opset 18)
OPSET = 17
NEWER = {"Gelu": 20, "Mish": 18, "GroupNormalization": 21, **{op: 18 for op in REDUCE}}


def _helpers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    return onnx, TensorProto, helper, numpy_helper


class _Graph:
    """A graph under construction: x -> Conv -> c, then the probe's nodes; outputs named by `finish`."""

    def __init__(self, x_shape: tuple[int, ...] = SHAPE, conv: bool = True) -> None:
        _, TensorProto, helper, _ = _helpers()
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
        self.rng = np.random.default_rng(0)
        if conv:
            k = (3,) * (len(x_shape) - 2)
            self.const("w", self.rng.standard_normal((x_shape[1], x_shape[1], *k)).astype(np.float32) * 0.2)
            self.node("Conv", ["x", "w"], ["c"], pads=[1] * (2 * len(k)))

    def const(self, name: str, value: Any) -> str:
        self.inits.append(_helpers()[3].from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        self.nodes.append(_helpers()[2].make_node(op, inputs, outputs, **attrs))

    def finish(self, op: str, outputs: tuple[str, ...] = ("y",), shape: tuple[int, ...] | None = None) -> Any:
        """The checked model; `shape`: the outputs' shape where onnx cannot infer it (GroupNormalization)."""
        onnx, TensorProto, helper, _ = _helpers()
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(shape)) if shape else
                helper.make_empty_tensor_value_info(o) for o in outputs]
        g = helper.make_graph(self.nodes, f"probe_{op}", [self.x], outs, self.inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", NEWER.get(op, OPSET))], ir_version=9)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        known = {v.name: v for v in model.graph.value_info}
        for out in model.graph.output:
            if out.name in known:
                out.CopyFrom(known[out.name])
        onnx.checker.check_model(model)
        return model


def _recurrent(op: str) -> Any:
    """LSTM / GRU / RNN over 4 steps of 8 features (no conv: the input is a sequence)."""
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    g = _Graph((4, 1, 8), conv=False)
    r = g.rng
    g.const("W", (r.standard_normal((1, gates * 8, 8)) * 0.2).astype(np.float32))
    g.const("R", (r.standard_normal((1, gates * 8, 8)) * 0.2).astype(np.float32))
    g.const("B", np.zeros((1, 2 * gates * 8), np.float32))
    g.node(op, ["x", "W", "R", "B"], ["y"], hidden_size=8)
    return g.finish(op)


def _rank(rank: int, compute: bool = True, perm: list[int] | None = None, name: str = "") -> Callable[[], Any]:
    """The conv's output as a rank-`rank` tensor: Reshape, Transpose (`perm`; default: swap axes 1
    and 2), an element-wise op (Relu, unless not `compute`) and Reshape back. With the Relu only up to
    rank 5 compiles; the shuffle alone compiles at rank 6 (swin_t's window partition), not at rank 7,
    and not with a perm that moves the last axis."""
    def build() -> Any:
        g = _Graph()
        size = int(np.prod(SHAPE))  # 2 ** 11
        g.node("Reshape", ["c", g.const("s1", np.array([1] + [2] * (rank - 2) + [size // 2 ** (rank - 2)],
                                                        np.int64))], ["r"])
        g.node("Transpose", ["r"], ["t"], perm=perm or [0, 2, 1, *range(3, rank)])
        if compute:
            g.node("Relu", ["t"], ["t2"])
        g.node("Reshape", ["t2" if compute else "t", g.const("s2", np.array(SHAPE, np.int64))], ["y"])
        return g.finish(name or (f"rank{rank}" if compute else f"rank{rank}shuffle"))
    return build


def _special() -> dict[str, Callable[[], Any]]:
    """Builders of the ops that need inputs of their own."""
    n, c, h, w = SHAPE

    def one(op: str, extra: Callable[[_Graph], list[str]], outputs: tuple[str, ...] = ("y",),
            x_shape: tuple[int, ...] = SHAPE, shape: tuple[int, ...] | None = None, **attrs: Any) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph(x_shape)
            g.node(op, ["c", *extra(g)], list(outputs), **attrs)
            return g.finish(op, outputs, shape)
        return build

    f32 = np.float32
    out: dict[str, Callable[[], Any]] = {
        "Conv": one("Relu", lambda g: []),
        "Conv3d": one("Relu", lambda g: [], x_shape=(1, 8, 4, 16, 16)),
        "ConvTranspose": one("ConvTranspose", lambda g: [g.const("wt", (g.rng.standard_normal((c, c, 2, 2)) * 0.2).astype(f32))],
                             strides=[2, 2]),
        "Clip": one("Clip", lambda g: [g.const("lo", np.array(-1, f32)), g.const("hi", np.array(1, f32))]),
        "BatchNormalization": one("BatchNormalization", lambda g: [
            g.const("s", np.ones(c, f32)), g.const("b", np.zeros(c, f32)), g.const("m", np.zeros(c, f32)),
            g.const("v", np.ones(c, f32))]),
        "InstanceNormalization": one("InstanceNormalization", lambda g: [g.const("s", np.ones(c, f32)),
                                                                         g.const("b", np.zeros(c, f32))]),
        "LayerNormalization": one("LayerNormalization", lambda g: [g.const("s", np.ones(w, f32)),
                                                                   g.const("b", np.zeros(w, f32))], axis=-1),
        "GroupNormalization": one("GroupNormalization", lambda g: [g.const("s", np.ones(c, f32)),
                                                                   g.const("b", np.zeros(c, f32))], num_groups=2,
                                  shape=SHAPE),
        "MatMul": one("MatMul", lambda g: [g.const("m", (g.rng.standard_normal((w, w)) * 0.2).astype(f32))]),
        "Reshape": one("Reshape", lambda g: [g.const("shape", np.array([n, c, h * w], np.int64))]),
        "Squeeze": one("Squeeze", lambda g: [g.const("axes", np.array([0], np.int64))]),
        "Unsqueeze": one("Unsqueeze", lambda g: [g.const("axes", np.array([0], np.int64))]),
        "Concat": one("Concat", lambda g: ["c"], axis=1),
        "Split": one("Split", lambda g: [g.const("parts", np.array([4, 4], np.int64))], ("y", "y2"), axis=1),
        "Slice": one("Slice", lambda g: [g.const("st", np.array([2], np.int64)), g.const("en", np.array([10], np.int64)),
                                         g.const("ax", np.array([2], np.int64))]),
        "Pad": one("Pad", lambda g: [g.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]),
        "Tile": one("Tile", lambda g: [g.const("rep", np.array([1, 1, 2, 1], np.int64))]),
        "Expand": one("Expand", lambda g: [g.const("shape", np.array([2, c, h, w], np.int64))]),
        "Resize": one("Resize", lambda g: ["", g.const("scales", np.array([1, 1, 2, 2], f32))], mode="nearest"),
        "Gather": one("Gather", lambda g: [g.const("idx", np.array([0, 2, 4], np.int64))], axis=1),
        "GatherElements": one("GatherElements", lambda g: [g.const("idx", np.zeros(SHAPE, np.int64))], axis=1),
        "GatherND": one("GatherND", lambda g: [g.const("idx", np.array([[0, 1]], np.int64))]),
        "ScatterND": one("ScatterND", lambda g: [g.const("idx", np.array([[0, 1]], np.int64)),
                                                 g.const("upd", np.zeros((1, h, w), f32))]),
        "ScatterElements": one("ScatterElements", lambda g: [g.const("idx", np.zeros((1, 1, h, w), np.int64)),
                                                             g.const("upd", np.zeros((1, 1, h, w), f32))], axis=1),
        "CumSum": one("CumSum", lambda g: [g.const("axis", np.array(1, np.int64))]),
        "Trilu": one("Trilu", lambda g: []),
        "Einsum": one("Einsum", lambda g: [g.const("e", (g.rng.standard_normal((w, 4)) * 0.2).astype(f32))],
                      equation="nchw,wk->nchk"),
        "TopK": one("TopK", lambda g: [g.const("k", np.array([4], np.int64))], ("y", "yi"), axis=-1),
        "LSTM": lambda: _recurrent("LSTM"), "GRU": lambda: _recurrent("GRU"), "RNN": lambda: _recurrent("RNN"),
        "rank5": _rank(5), "rank6": _rank(6), "rank6shuffle": _rank(6, compute=False),
        "rank6shuffle_last": _rank(6, compute=False, perm=[0, 3, 5, 1, 2, 4], name="rank6shuffle_last"),
        "rank7shuffle": _rank(7, compute=False),
        "LayerNormalization_hw": one("LayerNormalization", lambda g: [g.const("s", np.ones((h, w), f32)),
                                                                      g.const("b", np.zeros((h, w), f32))], axis=2),
    }
    for op in REDUCE:
        out[op] = one(op, lambda g: [g.const("axes", np.array([1], np.int64))])

    def compared(op: str) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph()
            g.node(op, ["c", g.const("b", np.zeros((1, c, 1, 1), f32))], ["m"])
            g.node("Where", ["m", "c", "b"], ["y"])
            return g.finish(op)
        return build

    def logical(op: str) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph()
            g.node("Greater", ["c", g.const("b", np.zeros((1, c, 1, 1), f32))], ["m1"])
            g.node("Less", ["c", g.const("b2", np.ones((1, c, 1, 1), f32))], ["m2"])
            g.node(op, ["m1"] if op == "Not" else ["m1", "m2"], ["m"])
            g.node("Where", ["m", "c", "b"], ["y"])
            return g.finish(op)
        return build

    def arg(op: str) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph()
            g.node(op, ["c"], ["i"], axis=1)
            g.node("Cast", ["i"], ["y"], to=1)
            return g.finish(op)
        return build

    def cast() -> Any:
        g = _Graph()
        g.node("Cast", ["c"], ["i"], to=6)  # int32
        g.node("Cast", ["i"], ["y"], to=1)
        return g.finish("Cast")

    def gemm() -> Any:
        g = _Graph()
        g.node("Flatten", ["c"], ["f"])
        g.node("Gemm", ["f", g.const("gw", (g.rng.standard_normal((c * h * w, 10)) * 0.02).astype(f32))], ["y"])
        return g.finish("Gemm")

    for op in COMPARE:
        out[op] = compared(op)
    out["Where"] = compared("Greater")
    for op in ("And", "Or", "Xor", "Not"):
        out[op] = logical(op)
    out["ArgMax"], out["ArgMin"] = arg("ArgMax"), arg("ArgMin")
    out["Cast"], out["Gemm"] = cast, gemm
    return out


def builders() -> dict[str, Callable[[], Any]]:
    """Probe name -> a function building its graph (op names, plus Conv3d, LayerNormalization_hw and the
    rank probes)."""
    f32 = np.float32

    def unary(op: str, attrs: dict[str, Any]) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph()
            g.node(op, ["c"], ["y"], **attrs)
            return g.finish(op)
        return build

    def binary(op: str) -> Callable[[], Any]:
        def build() -> Any:
            g = _Graph()
            g.node(op, ["c", g.const("b", np.full((1, SHAPE[1], 1, 1), 0.5, f32))], ["y"])
            return g.finish(op)
        return build

    out = {op: unary(op, attrs) for op, attrs in UNARY.items()}
    out.update({op: binary(op) for op in BINARY})
    out.update(_special())
    return out


def compile_probe(model: Any, work: Path, soc: Any = None) -> str | None:
    """None when `model` (float) quantized to QDQ compiles whole on the HTP, else the QNN EP's reason."""
    import onnx

    from mobilecodec.errors import MobileCodecError, one_line
    from mobilecodec.export.qdq import quantize_graph, random_feeds
    from mobilecodec.export.qnn import htp_session

    f = work / "probe.onnx"
    onnx.save(model, str(f))
    try:
        quantize_graph(f, work / "probe.qdq.onnx", random_feeds(f))
        htp_session(work / "probe.qdq.onnx", soc, log_severity=4)  # a refusal is the answer, not an error to log
    except MobileCodecError as exc:
        text = one_line(exc, 300)
        if "assigned to the default CPU EP" in text:  # GetCapability: the EP left a node (the probe's op) to the CPU
            return f"the QNN EP does not take the op (left to the CPU EP): {text}"
        return f"the QNN EP took the op but could not finalize the graph: {text}"
    except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer raises its own types
        return f"the probe graph could not be quantized: {one_line(exc, 300)}"
    return None


def probe(names: list[str] | None = None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Probe name -> {"compiles": bool, "error": the QNN EP's reason or None, "static": the static
    check's issues of the same graph (`npu_check.static_issues`)}, for `names` (default: all)."""
    from mobilecodec.errors import InputError
    from mobilecodec.export.npu_check import static_issues
    from mobilecodec.progress import progress_bar

    table = builders()
    names = list(table) if names is None else names
    unknown = [n for n in names if n not in table]
    if unknown:
        raise InputError(f"no HTP probe {unknown[0]!r}; probes: {', '.join(table)}")
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mobilecodec-htp-probe-") as tmp, \
            progress_bar(total=len(names), desc="htp ops", unit="op", enabled=progress) as bar:
        for name in names:
            model = table[name]()
            error = compile_probe(model, Path(tmp))
            out[name] = {"compiles": error is None, "error": error,
                         "static": [f"{i.op}: {i.reason}" for i in static_issues(model, name)]}
            bar.update(1)
    return out
