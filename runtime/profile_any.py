"""Profile any model: an ONNX file or a Python factory returning an nn.Module and its example inputs.

Per graph: parameters, MACs, kMACs/px, a per-layer table sorted by cost, element-wise and
resampling work apart from MACs, the HTP op check, DRAM traffic under the VTCM tiling rule
(`mobilecodec.runtime.npu_graph`) and, with a device, the ESTIMATED Snapdragon HTP latency
(`mobilecodec.runtime.npu_estimate`). State buffers (HyTIP size and bandwidth) come from graph inputs and
outputs named `buffer_in.*` / `buffer_out.*`, or from the names given as `state`. A module's graph
inputs are named after the parameters of its `forward` and its outputs `output_0`, `output_1`, ...
(in the order `forward` returns them), so that `state` can name them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError, one_line
from mobilecodec.export.onnx_common import GraphIndex, node_attrs, value_shapes
from mobilecodec.runtime.tensor_types import elem_bits, stored_io_types, tensor_bytes

NORM_OPS = ("BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization")


def norm_tensors(proto: Any) -> list[tuple[str, int]]:
    """(initializer, elements) of the learned scale / shift of every normalisation node (running
    statistics excluded), and of the Mul / Add after an InstanceNormalization that a GroupNorm exports
    to; in a QDQ graph, through their Q/DQ nodes. Listed per tensor a node reads: exporters merge
    equal-valued initializers (freshly initialised BatchNorms) behind Identity nodes, each node still
    having parameters of its own, while one module applied several times (a shared LayerNorm) reads the
    same tensors from every node and is counted once."""
    from mobilecodec.export.qdq import copied_from

    sizes = {i.name: int(math.prod(i.dims)) for i in proto.graph.initializer}
    index = GraphIndex(proto.graph)
    producer = index.producer

    def source(t: str) -> tuple[str, str, int]:
        """(what tells one parameter from another, its initializer, elements): the initializer (a copy
        `quantize_graph` made of a shared one: the one it copies), or the first Identity output on the
        way, which is a merged duplicate's own name."""
        key = None
        while t not in sizes and t in producer and producer[t].op_type in (
                "Identity", "Unsqueeze", "Reshape", "DequantizeLinear", "QuantizeLinear"):
            if producer[t].op_type == "Identity" and key is None:
                key = t
            t = producer[t].input[0]
        return key or copied_from(t), t, sizes.get(t, 0)

    def affine_after(norm: Any) -> list[str]:
        """A GroupNorm exported at opset < 18: InstanceNormalization over the groups (constant scale
        and shift), Reshape back, then Mul and Add by the learned per-channel weight and bias
        (its 2C parameters were counted nowhere: 5,192 against PyTorch's 5,320 in the audit's case); in
        a QDQ graph with Q/DQ pairs between them."""
        out, found = norm.output[0], []

        def past(kinds: tuple[str, ...]) -> Any:
            nonlocal out
            while (nxt := index.only_consumer(out)) is not None and nxt.op_type in kinds:
                out = nxt.output[0]
            return nxt

        past(("Reshape", "QuantizeLinear", "DequantizeLinear"))
        for op in ("Mul", "Add"):
            nxt = past(("QuantizeLinear", "DequantizeLinear"))
            if nxt is None or nxt.op_type != op:
                break
            found.append(next((i for i in nxt.input if i != out), ""))
            out = nxt.output[0]
        return found

    read = [t for n in proto.graph.node if n.op_type in NORM_OPS for t in n.input[1:3] if t] + [
        t for n in proto.graph.node if n.op_type == "InstanceNormalization" for t in affine_after(n) if t]
    return list({key: (name, n) for key, name, n in map(source, read)}.values())


def _state_names(entry: str, io: dict[str, Any]) -> tuple[str, ...] | None:
    """One `--state` entry -> (NAME,) or (IN, OUT), or None when it names nothing in `io`. The split
    point of IN:OUT is the ':' whose two sides both name graph tensors, so that names holding ':'
    (torch's `onnx::Concat_1`) work on either side."""
    if entry in io:
        return (entry,)
    splits = [(entry[:i], entry[i + 1:]) for i, ch in enumerate(entry)
              if ch == ":" and entry[:i] in io and entry[i + 1:] in io]
    if len(splits) > 1:
        raise InputError(f"--state {entry} splits into IN:OUT in {len(splits)} ways: "
                         + ", ".join(f"{a} : {b}" for a, b in splits))
    return splits[0] if splits else None


def _layout_read_by(proto: Any, name: str) -> str | None:
    """'NCHW' or 'NHWC' where the graph says how it reads 4-D input `name` (through Q/DQ nodes): a
    Conv on it (ONNX convolutions are NCHW), or a Transpose (0, 3, 1, 2) to NCHW; None where nothing
    says."""
    index = GraphIndex(proto.graph)
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        for node in index.consumers.get(t, []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                todo.extend(node.output)
            elif node.op_type == "Transpose":
                perm = node_attrs(node).get("perm")
                if perm == [0, 3, 1, 2]:
                    return "NHWC"
            elif node.op_type in ("Conv", "ConvTranspose") and node.input[0] == t:  # ONNX convs read NCHW
                return "NCHW"
    return None


def _frame_pixels(inputs: dict[str, list[int] | None], size: tuple[int, int] | None, proto: Any = None
                  ) -> tuple[tuple[int, int], str]:
    """(H, W) of the frame kMACs/px divide by, and where it came from: `size`, else the largest 4-D
    input, in the layout the graph reads it in (`_layout_read_by`: a Conv on it is NCHW), else read
    as NHWC when its last dimension holds at most 4 channels and its second more (1x224x224x3: a
    TF-style image), else as NCHW."""
    if size is not None:
        return size, "--size"
    best, layout = None, "NCHW"
    for name, shape in inputs.items():
        if not shape or len(shape) != 4:
            continue
        known = _layout_read_by(proto, name) if proto is not None else None
        # a 1x64x32x4 NCHW input (a frame 4 wide) was read as NHWC, its kMACs/px 16x too low (profile audit)
        nhwc = known == "NHWC" if known else shape[3] <= 4 < shape[1]
        hw = (int(shape[1]), int(shape[2])) if nhwc else (int(shape[2]), int(shape[3]))
        if best is None or hw[0] * hw[1] > best[0] * best[1]:
            best, layout = hw, "NHWC" if nhwc else "NCHW"
    if best is None:
        raise InputError("cannot tell the frame size from the graph inputs (no 4-D input); pass --size HxW")
    if best[0] * best[1] <= 0:  # per-pixel figures would divide by 0
        raise InputError(f"the largest 4-D graph input is {best[0]}x{best[1]} pixels: give the graph a non-empty "
                         "static input, or pass --size HxW")
    return best, f"the largest 4-D input, read as {layout}"


def graph_complexity(counted: Any, proto: Any, pixels: int, top: int = 25) -> dict[str, Any]:
    """Params, MACs, kMACs/px, non-MAC work and the costliest layers of one counted ONNX graph."""
    norms = norm_tensors(proto)
    params = counted.params + sum(n for _, n in norms)
    norm_names = {name for name, _ in norms}
    data = {t: n for t, n in counted.data_tensors.items() if t not in norm_names}
    shapes = {i.name: list(i.dims) for i in proto.graph.initializer if i.name in data}
    layers = sorted((r for r in counted.nodes if r.kind == "mac"), key=lambda r: -r.macs)
    total = counted.macs or 1
    return {"params": params, "params_M": params / 1e6, "macs": counted.macs, "gmacs": counted.macs / 1e9,
            "kmacs_per_px": counted.macs / pixels / 1e3, "macs_by_op": counted.macs_by_op,
            "elementwise": counted.elementwise, "resampling": counted.resampling,
            "elementwise_per_px": counted.elementwise_total / pixels,
            "resampling_per_px": counted.resampling_total / pixels, "unknown_ops": counted.unknown_ops,
            "shapes_measured": counted.shapes_measured, "shapes_measured_on": counted.shapes_measured_on,
            "quant_nodes": counted.quant_nodes, "inputs": counted.inputs, "outputs": counted.outputs,
            "layers": [{"name": r.name, "op": r.op_type, "macs": r.macs, "share": r.macs / total,
                        "params": r.params, "output_shape": r.output_shape} for r in layers[:top]],
            "mac_layers": len(layers),
            "data_tensors": {"count": len(data), "elements": sum(data.values()),
                             "largest": [{"name": t, "shape": shapes[t], "elements": n} for t, n in list(data.items())[:5]]}}


def state_buffer(protos: dict[str, Any], frame: tuple[int, int], fps: float,
                 state: list[str] | None = None, precision: str | None = None) -> dict[str, Any]:
    """HyTIP buffer: one entry per state tensor kept between frames: `buffer_in.X`/`buffer_out.X`
    pairs, or the names in `state` (`NAME`: one graph input or output; `IN:OUT`: the input a frame
    reads and the output it writes for the next, counted once). Full-resolution maps = elements /
    (H x W) of `frame`; bytes at the type the tensor is stored at (`stored_io_types`), a float one at
    most at `precision`'s activation type (`npu_graph.ACTIVATION_TYPES`, as the DRAM traffic counts it:
    fp16 for float, uint8 for w8a8); bandwidth = (write + read) x bytes x fps."""
    import numpy as np
    import onnx

    from mobilecodec.export.onnx_common import tensor_info
    from mobilecodec.runtime.npu_graph import ACTIVATION_TYPES

    io: dict[str, Any] = {}
    for gname, proto in protos.items():
        for vi in list(proto.graph.input) + list(proto.graph.output):
            io.setdefault(vi.name, (gname, vi))
    if state:
        found = {s: _state_names(s, io) for s in state}
        missing = [s for s, names in found.items() if names is None]
        if missing:
            inits = {i.name for p in protos.values() for i in p.graph.initializer}
            ins = [vi.name for p in protos.values() for vi in p.graph.input if vi.name not in inits]
            outs = [vi.name for p in protos.values() for vi in p.graph.output]
            raise InputError(f"--state names not found among the graph inputs/outputs: {', '.join(missing)} "
                             f"(inputs: {', '.join(ins[:20])}; outputs: {', '.join(outs[:20])})")
        wanted = [found[s] for s in state]
        owner: dict[str, str] = {}
        for s, names in zip(state, wanted):  # one tensor in two entries was counted twice
            for n in names:
                if n in owner:
                    raise InputError(f"--state names {n} twice ({owner[n]!r} and {s!r}); give each state tensor once")
                owner[n] = s
    else:
        keys = sorted({n.split(".", 1)[1] for n in io if n.startswith(("buffer_in.", "buffer_out."))})
        wanted = [tuple(x for x in (f"buffer_in.{k}", f"buffer_out.{k}") if x in io) for k in keys]
    graph_in = {vi.name for p in protos.values() for vi in p.graph.input}  # with a default (an initializer) too
    graph_out = {vi.name for p in protos.values() for vi in p.graph.output}
    shapes: dict[str, list[int]] = {}  # declared or inferred (a symbolic input's shape is neither)
    stored: dict[str, int] = {}
    for proto in protos.values():
        stored.update(stored_io_types(proto))
        shapes.update({k: v for k, v in value_shapes(proto.graph).items() if v is not None and k in io})
    act = ACTIVATION_TYPES.get(precision or "")
    cap = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(act)) if act else None
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    entries = []
    for names in wanted:
        gname, vi = io[names[0]]
        tt = vi.type.tensor_type
        pair = f"{'--state' if state else 'state'} {':'.join(names)}"
        if len(names) == 2 and (names[0] not in graph_in or names[1] not in graph_out):
            raise InputError(f"{pair}: IN must be a graph input and OUT a graph output (the state a frame reads "
                             "and the one it writes for the next)")
        known = [shapes[n] for n in names if n in shapes]
        if not known:
            dims = "x".join(map(str, tensor_info(vi)["shape"])) if tt.HasField("shape") else "unknown rank"
            raise InputError(f"state tensor {names[0]!r} has no static shape ({dims}): give the graph static "
                             "input shapes")
        if len({math.prod(d) for d in known}) > 1:
            raise InputError(f"{pair}: the input is {'x'.join(map(str, known[0]))} and the output "
                             f"{'x'.join(map(str, known[1]))}; a frame writes the state it reads")
        dims = known[0]
        elems = int(math.prod(dims))
        key = names[0].split(".", 1)[1] if names[0].startswith(("buffer_in.", "buffer_out.")) else names[0]
        try:
            kinds = [stored.get(n, tt.elem_type) for n in names]
            if cap is not None and all(k in floats for k in kinds):  # float activations of the precision
                kinds.append(cap)
            elem_type = min(kinds, key=elem_bits)
            nbytes = tensor_bytes(elems, elem_type)
        except InputError as exc:
            raise InputError(f"state tensor {names[0]!r}: {exc}") from None
        entries.append({"name": key, "tensor": ":".join(names), "graph": gname,
                        "shape": dims[1:] if len(dims) == 4 else dims,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(elem_type).name,
                        "bytes": nbytes,
                        "full_res_maps": elems / (frame[0] * frame[1])})
    return _buffer_summary(entries, fps, "--state names" if state else "buffer_in.* / buffer_out.* graph I/O")


def htp_check(protos: dict[str, Any]) -> dict[str, Any]:
    """Static QNN HTP op check of every graph (export.npu_check): ops and shapes the HTP rejects."""
    from mobilecodec.export.npu_check import static_issues

    out = {}
    for name, proto in protos.items():
        issues = static_issues(proto, name)
        out[name] = {"ok": not issues, "issues": [str(i) for i in issues]}
    return out


def npu_graphs(layers: dict[str, Any], devices: list[str], precision: str | None, fps: float,
               frames: dict[str, list[str]] | None = None, pixels: int | None = None,
               buffer_mb_s: float | None = None, htp: dict[str, Any] | None = None) -> dict[str, Any]:
    """ESTIMATED per-graph and per-frame NPU time on each device, the frames/s it allows, and the
    MAC/s and DRAM GB/s a frame rate of `fps` needs. `frames` maps a frame type to the graphs it
    runs (default: one frame = every graph once). The label gives the leave-one-model-out error
    beside the leave-one-out one where a graph is not a calibration model (else it says which it is), the held-out
    w8a16 error when a graph runs at w8a16, the held-out LayerNorm / attention models' errors where a
    graph has such ops, and what `htp` (`htp_check`) finds: the estimate prices the graph as if the HTP
    ran it whole."""
    from mobilecodec.runtime.npu_estimate import (calibration, calibration_model_of, error_label, estimate_graph,
                                                  has_attention)

    frames = frames or {"frame": list(layers)}
    cal = calibration()
    precisions = {precision or gl.precision for gl in layers.values()}
    grouped = set().union(*(gl.grouped_kinds for gl in layers.values()))
    # torchvision's mobilenet_v2 profiled as it is in the table was labelled "this model is not among them"
    seen = {n: m for n, gl in layers.items() if (m := calibration_model_of(gl)) is not None}
    label = error_label(precisions, unseen_model=len(seen) < len(layers), grouped=grouped,
                        rejected={n: c["issues"] for n, c in (htp or {}).items() if not c["ok"]}, seen=seen.values(),
                        attention=any(has_attention(gl) for gl in layers.values()))
    out: dict[str, Any] = {"label": label,
                           "loo_median": cal["loo_median"], "loo_worst": cal["loo_worst"],
                           "lomo_median": cal["lomo_median"], "lomo_worst": cal["lomo_worst"],
                           "calibration": {"measurements": cal["measurements"], "fitted": cal["fitted"],
                                           "models": cal["models"], "params": cal["params"],
                                           "held_out": cal["held_out"], "source": cal["source"]},
                           "target_fps": fps, "devices": {}}
    for dev in devices:
        graphs = {n: estimate_graph(gl, dev, precision) for n, gl in layers.items()}
        ftypes = {}
        for ft, names in frames.items():
            ms = sum(graphs[n]["ms"] for n in names)
            macs = sum(layers[n].macs for n in names)
            dram = sum(graphs[n]["dram"]["total_bytes"] for n in names)
            ftypes[ft] = {"graphs": names, "ms": ms, "frames_per_s": 1e3 / ms if ms > 0 else float("inf"),
                          "macs": macs, "dram_bytes": dram, "mac_per_s_needed": macs * fps,
                          "dram_gb_s_needed": dram * fps / 1e9,
                          "dram_weights_bytes": sum(graphs[n]["dram"]["weights_bytes"] for n in names),
                          "dram_graph_io_bytes": sum(graphs[n]["dram"]["graph_io_bytes"] for n in names),
                          "dram_activations_bytes": sum(graphs[n]["dram"]["activations_bytes"] for n in names),
                          "meets_target": ms <= 1e3 / fps}
            if pixels:
                ftypes[ft]["kmacs_per_px"] = macs / pixels / 1e3
        out["devices"][dev] = {"graphs": graphs, "frames": ftypes}
    if buffer_mb_s is not None:
        out["buffer_bandwidth_mb_s"] = buffer_mb_s
    return out


def load_factory(spec: str) -> tuple[Any, tuple]:
    """Call `package.module:factory` -> (nn.Module, tuple of example input tensors)."""
    from torch import nn

    if ":" not in spec:
        raise InputError(f"--module needs package.module:factory, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    import sys

    try:
        here = os.getcwd()
    except OSError as exc:  # the current folder was deleted
        raise InputError(f"cannot load {spec}: the current folder is gone ({exc.strerror})") from None
    # the installed `mobilecodec` script, unlike `python -m mobilecodec`, does not put the current
    # folder on the import path: `--module mymods:make` beside mymods.py was "No module named"; for
    # the import only, so later imports in the process are not resolved against it
    added = "" not in sys.path and here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except Exception as exc:  # the user's module: a missing name, a syntax error, an error at import
        raise InputError(f"cannot load {spec}: {one_line(exc)}") from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(here)
    if not callable(fn):
        raise InputError(f"{spec} is not callable (a factory returning (nn.Module, example inputs))")
    try:
        res = fn()
    except Exception as exc:  # the user's factory failed: say so in one line, not with our traceback
        raise InputError(f"calling {spec}() failed: {one_line(exc)}") from None
    if not (isinstance(res, tuple) and len(res) == 2 and isinstance(res[0], nn.Module)):
        raise InputError(f"{spec} must return (nn.Module, example inputs), got {type(res).__name__}")
    module, inputs = res
    import torch

    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, (tuple, list)):  # a dict became its key strings, then 'no 4-D example input'
        raise InputError(f"{spec}: the example inputs must be a tensor or a tuple of them (forward's positional "
                         f"arguments), got {type(inputs).__name__}")
    return module, tuple(inputs)


def _io_names(module: Any, inputs: tuple, outputs: Any) -> tuple[list[str] | None, list[str] | None]:
    """Graph input names after the parameters of `module.forward` (`*args` -> args_0, ...) and
    output names `output_0`, `output_1`, ... (None outputs dropped, as the exporter does); None (the
    exporter's own names) where inputs or outputs are not all tensors, whose flattening it decides."""
    import torch
    from torch.utils._pytree import tree_leaves

    in_names = None
    if all(isinstance(x, torch.Tensor) for x in inputs):
        try:
            params = list(inspect.signature(module.forward).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        var = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
        in_names = [positional[i] if i < len(positional) else f"{var or 'input'}_{i - len(positional)}"
                    for i in range(len(inputs))]
    leaves = [x for x in tree_leaves(outputs) if x is not None]
    out_names = ([f"output_{i}" for i in range(len(leaves))]
                 if leaves and all(isinstance(x, torch.Tensor) for x in leaves) else None)
    return in_names, out_names


#: the opset `profile --module` exports at: from 20 on, GELU is one Gelu op, which the HTP compiles (below, an
#: Erf chain it does not: torchvision's vit_b_16 and convnext_tiny compile whole at 20, not at 17)
MODULE_OPSET = 20


def onnx_from_module(module: Any, inputs: tuple, path: Path, input_names: list[str] | None = None,
                     output_names: list[str] | None = None) -> Any:
    """Export to `path` with BatchNorm kept as its own node (so its parameters stay visible), static
    shapes; the graph returned holds the weights as constants (initializers only, as a deployed one does)."""
    import warnings

    import onnx
    import torch

    from mobilecodec.nativeio import native_stdout

    # a failing TorchScript export prints the half-built graph to stdout natively ('ONNX graph being
    # constructed during exception', 13 lines for one torch.fft call; in the middle of `--json -`)
    # before the one-line error that says why
    with torch.no_grad(), warnings.catch_warnings(), native_stdout("null"):
        warnings.simplefilter("ignore")
        module.eval()
        # initializers kept as inputs: the exporter otherwise merges equal-valued ones (a fresh model's
        # zero biases) into one, and each parameter would no longer count
        torch.onnx.export(module, inputs, str(path), opset_version=MODULE_OPSET, dynamo=False,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=input_names, output_names=output_names, keep_initializers_as_inputs=True)
    # as graph inputs they are not constants to onnxruntime or the HTP (mobilenet_v3_small's compile fails)
    proto = onnx.load(str(path))
    inits = {i.name for i in proto.graph.initializer}
    kept = [vi for vi in proto.graph.input if vi.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    return proto


def profile_graphs(protos: dict[str, Any], *, size: tuple[int, int] | None = None, fps: float = 30.0,
                   state: list[str] | None = None, devices: list[str] | None = None,
                   precision: str | None = None, source: dict[str, Any] | None = None,
                   torch_counts: dict[str, Any] | None = None,
                   feeds: dict[str, dict[str, Any]] | None = None,
                   buffer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report for ONNX graphs given as protos (name -> onnx.ModelProto); `feeds` (graph name
    -> input name -> array) are the inputs of a run that measures shapes no inference follows;
    `buffer` replaces the state buffer read from the graphs (a package graph's, from its package)."""
    from mobilecodec.export.onnx_common import infer_static_shapes
    from mobilecodec.runtime.npu_graph import dram_bytes, extract_layers
    from mobilecodec.runtime.onnx_complexity import count_onnx

    feeds = feeds or {}
    # shapes once per graph: a shape no inference follows is measured by running the graph, which the
    # counter, the layer model and the HTP check would each do again on the raw graph
    protos = {n: infer_static_shapes(p, feeds.get(n))[0] for n, p in protos.items()}
    counted = {n: count_onnx(p, feeds.get(n)) for n, p in protos.items()}
    frame, frame_from = _frame_pixels(next(iter(counted.values())).inputs, size, next(iter(protos.values())))
    source = dict(source or {})
    source.setdefault("frame_size_from", frame_from)
    pixels = frame[0] * frame[1]
    layers = {n: extract_layers(p, n, feeds.get(n)) for n, p in protos.items()}
    graphs = {n: graph_complexity(counted[n], protos[n], pixels) for n in protos}
    if torch_counts:
        for n, t in torch_counts.items():
            graphs[n]["pytorch"] = t
    prec = precision or layers[next(iter(layers))].precision
    buf = buffer or state_buffer(protos, frame, fps, state, prec)
    dram = {n: dram_bytes(gl, precision) for n, gl in layers.items()}
    htp = htp_check(protos)
    report: dict[str, Any] = {
        "kind": "graphs", "source": dict(source, precision=prec, frame_size=list(frame)),
        "size": list(frame), "graphs": graphs, "buffer": buf, "dram": dram,
        "dram_bytes_per_frame": sum(d["total_bytes"] for d in dram.values()), "htp_check": htp,
        "totals": {"params": sum(g["params"] for g in graphs.values()),
                   "macs": sum(g["macs"] for g in graphs.values()),
                   "kmacs_per_px": sum(g["kmacs_per_px"] for g in graphs.values())}}
    if devices:
        report["npu"] = npu_graphs(layers, devices, precision, fps, None, pixels, buf["bandwidth_mb_s"], htp)
    return report


def profile_onnx(path: str | Path, **kw: Any) -> dict[str, Any]:
    """`profile_graphs` of one ONNX file."""
    from mobilecodec.runtime.onnx_complexity import _load

    p = Path(path)
    proto = _load(p)
    source: dict[str, Any] = {"onnx": str(p)}
    package = package_of(p)
    if package is not None and kw.get("size") is None:
        kw["size"], source["frame_size_from"] = tuple(int(v) for v in package[1]["original_size"]), "manifest"
    if package is not None:
        whole = _package_state(proto, p.stem, *package, kw.get("fps", 30.0))
        state = kw.get("state") or []
        def names(s: str, e: dict[str, Any]) -> bool:  # --state "frame", "buffer_out.frame" or "IN:OUT"
            return s == e["name"] or set(s.split(":")) <= set(e["tensor"].split(":"))

        picked = [e for e in whole["entries"] if any(names(s, e) for s in state)]
        if not state:
            kw["buffer"] = whole
        elif all(any(names(s, e) for e in picked) for s in state):
            # package buffer tensors named with --state: as the package stores them, not at the graph's
            # float I/O over the unpadded frame (2.18 maps of uint16 where the frame is 1.5 of uint8)
            kw["buffer"] = _buffer_summary(picked, kw.get("fps", 30.0),
                                           "the package's buffer layout (manifest), the --state entries")
    return profile_graphs({p.stem: proto}, source=source, **kw)


def package_of(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """(folder, manifest) of the export package whose manifest lists the graph file `path`: its
    graphs take the packed half-resolution YUV tensor, so their input is not the frame, and the
    package says how its buffer is stored. None elsewhere."""
    from mobilecodec.export.manifest import MANIFEST, load_manifest

    folder = path.resolve().parent.parent
    if not (folder / MANIFEST).is_file():
        return None
    try:
        man = load_manifest(folder)
    except InputError:  # not a package after all, or a changed one: the graph is profiled as any model
        return None
    if path.resolve() not in {(folder / g["file"]).resolve() for g in man["graphs"].values()}:
        return None
    return folder, man


def _package_state(proto: Any, graph: str, folder: Path, manifest: dict[str, Any], fps: float) -> dict[str, Any]:
    """The state buffer entries one graph of a package reads or writes, as `profile PKG/` gives them
    (`profiler.package_buffer`: the stored types, maps per padded grid), not at the graph's float I/O."""
    from mobilecodec.runtime.profiler import package_buffer

    files = {n: folder / g["file"] for n, g in manifest["graphs"].items()}
    whole = package_buffer(manifest, fps, files)
    io = {vi.name for vi in list(proto.graph.input) + list(proto.graph.output)}
    entries = []
    for e, m in zip(whole.entries, manifest["buffer"]):
        names = [t for t in (m["graph_input"], m["graph_output"]) if t in io]
        if names:
            entries.append({**e, "tensor": ":".join(names), "graph": graph})
    return _buffer_summary(entries, fps, "the package's buffer layout (manifest)")


def _buffer_summary(entries: list[dict[str, Any]], fps: float, source: str) -> dict[str, Any]:
    """A buffer report of `entries`: their maps, bytes per frame and bandwidth (each read and written once)."""
    total = sum(e["bytes"] for e in entries)
    return {"entries": entries, "full_res_maps": sum(e["full_res_maps"] for e in entries), "bytes_per_frame": total,
            "bandwidth_mb_s": 2 * total * fps / 1e6, "fps": fps, "from": source}


def profile_module(spec: str, **kw: Any) -> dict[str, Any]:
    """`profile_graphs` of a factory's module, exported to ONNX in a temporary folder; the PyTorch
    count (runtime.complexity.count_module) is reported beside the ONNX count."""
    import torch

    from mobilecodec.runtime.complexity import count_module
    from mobilecodec.runtime.threads import torch_threads

    with torch_threads(1), mha_fastpath_off():
        module, inputs = load_factory(spec)
        name = spec.split(":", 1)[1]
        if kw.get("size") is None and not any(isinstance(x, torch.Tensor) and x.dim() == 4 for x in inputs):
            raise InputError(f"cannot tell the frame size of {spec}: no 4-D example input (a video model's 5-D "
                             "clip or a detector's list of images is not one frame); pass --size HxW")
        seen: list[Any] = []  # the counted pass's outputs name the graph outputs: no forward of its own
        hook = module.register_forward_hook(lambda _m, _a, out: seen.append(out))
        try:  # the user's forward on the user's inputs: its errors are input errors, in one line
            tc = count_module(module, *inputs)
        except Exception as exc:
            raise InputError(f"running {spec} on its example inputs failed: {one_line(exc)}") from None
        finally:
            hook.remove()
        in_names, out_names = _io_names(module, inputs, seen[-1])  # the outermost call ends last
        with tempfile.TemporaryDirectory() as tmp:
            try:  # ops ONNX cannot express (torch.fft, ...), outputs it cannot carry
                proto = onnx_from_module(module, inputs, Path(tmp) / f"{name}.onnx", in_names, out_names)
            except Exception as exc:
                raise InputError(f"exporting {spec} to ONNX failed: {one_line(exc)}") from None
    # a shape no inference follows is measured on the factory's own inputs: a detector's proposals
    # depend on their values (zeros gave maskrcnn 894 proposals where its example gives 1000)
    feeds = _numpy_feeds(in_names, inputs)
    return profile_graphs({name: proto}, source={"module": spec, "onnx_opset": MODULE_OPSET}, torch_counts={
        name: {"params": tc.params, "macs": tc.macs, "elementwise": tc.elementwise_total,
               "resampling": tc.resampling_total, "not_counted": dict(tc.unrecognized_ops)}},
        feeds={name: feeds} if feeds else None, **kw)


def _numpy_feeds(names: list[str] | None, inputs: tuple) -> dict[str, Any] | None:
    """The example inputs as onnxruntime feeds (graph input name -> array); None (zero-filled inputs
    then) where the inputs are not named tensors or numpy has no such dtype (bfloat16)."""
    if not names:
        return None
    try:
        return {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)}
    except TypeError:  # "Got unsupported ScalarType BFloat16"
        return None


def mha_fastpath_off() -> contextlib.AbstractContextManager[None]:
    """nn.MultiheadAttention in eval mode under no_grad runs torch's fused kernel, which neither
    exports to ONNX nor shows its matrix products to the aten counter: the plain path meanwhile."""
    import torch

    from mobilecodec.runtime.threads import torch_setting

    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        return contextlib.nullcontext()
    return torch_setting(mha.get_fastpath_enabled, mha.set_fastpath_enabled, False)
