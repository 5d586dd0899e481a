"""Buffer entries at their storage dtypes across ONNX graph boundaries (uint8 frame at 1/255, int16
flow at 1/256 px, float16 features: `models.buffer.STORAGE_DTYPES`): the host conversion
`as_dtype` and the graph rewrite `storage_io_model`, both exactly `snap_to_storage`'s float32
arithmetic, so a graph with storage-dtype I/O gives bit-identical results to host rounding."""

from __future__ import annotations

from typing import Any

import numpy as np

#: onnxruntime type string -> numpy dtype name
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(uint16)": "uint16",
              "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64"}
#: storage dtype -> (scale of one grid step, clip range) of a buffer entry stored as integers
INT_GRIDS = {"uint8": (255.0, 0.0, 255.0), "int16": (256.0, -32768.0, 32767.0)}


def as_dtype(name: str, arr: np.ndarray, dtype: str) -> np.ndarray:
    """`arr` as `dtype` (contiguous, no copy when it already is). Between float32 and a storage
    dtype of the buffer (uint8 frame at 1/255, int16 flow at 1/256, float16 features) this is the
    exact `snap_to_storage` arithmetic in float32: q = clip(rint(x * s)) and x = float32(q) / s."""
    arr = np.asarray(arr)
    if arr.dtype == np.dtype(dtype):
        return np.ascontiguousarray(arr)
    if arr.dtype.name in INT_GRIDS and dtype == "float32":
        return arr.astype(np.float32) / np.float32(INT_GRIDS[arr.dtype.name][0])
    if dtype in INT_GRIDS and arr.dtype == np.float32:
        s, lo, hi = INT_GRIDS[dtype]
        return np.clip(np.rint(arr * np.float32(s)), lo, hi).astype(dtype)
    return np.ascontiguousarray(arr, dtype=dtype)


def storage_io_model(proto: Any) -> bool:
    """Give an ONNX graph its buffer I/O at the storage dtypes (`models.buffer.STORAGE_DTYPES`),
    in place: a float `buffer_in.<name>` input becomes uint8 / int16 / float16 followed by
    Cast (and Div by the grid scale); a float `buffer_out.<name>` output goes through Mul by the
    scale, Round (half to even, as torch.round), Clip and Cast (or a Cast to float16). These are
    exactly `snap_to_storage`'s float32 operations, so results equal host rounding bit for bit.
    Returns whether anything changed."""
    from onnx import TensorProto, helper, numpy_helper

    from mobilecodec.models.buffer import STORAGE_DTYPES

    elem = {"uint8": TensorProto.UINT8, "int16": TensorProto.INT16, "float16": TensorProto.FLOAT16}
    g = proto.graph
    pre, post, inits = [], [], []

    def const(name: str, value: float) -> str:
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def rename(old: str, new: str) -> None:
        for node in g.node:
            for seq in (node.input, node.output):
                for i, v in enumerate(seq):
                    if v == old:
                        seq[i] = new
        for vi in g.value_info:
            if vi.name == old:
                vi.name = new

    def retyped(values: Any, prefix: str, skip: set[str]) -> Any:
        """(name, inner float name, storage dtype) of each float buffer value under `prefix`, now
        typed at its storage dtype, the graph inside reading / writing the inner name."""
        for v in values:
            dt = STORAGE_DTYPES.get(v.name.split(".", 1)[1]) if v.name.startswith(prefix) else None
            if dt is None or v.type.tensor_type.elem_type != TensorProto.FLOAT or v.name in skip:
                continue
            inner = f"{v.name}/float"
            rename(v.name, inner)
            v.type.tensor_type.elem_type = elem[dt]
            yield v.name, inner, dt

    inputs, outputs = {vi.name for vi in g.input}, {vo.name for vo in g.output}
    for n, inner, dt in retyped(g.input, "buffer_in.", outputs):
        if dt == "float16":
            pre.append(helper.make_node("Cast", [n], [inner], to=TensorProto.FLOAT))
        else:
            pre += [helper.make_node("Cast", [n], [f"{n}/cast"], to=TensorProto.FLOAT),
                    helper.make_node("Div", [f"{n}/cast", const(f"{n}/scale", INT_GRIDS[dt][0])], [inner])]
    for n, inner, dt in retyped(g.output, "buffer_out.", inputs):
        if dt == "float16":
            post.append(helper.make_node("Cast", [inner], [n], to=TensorProto.FLOAT16))
        else:
            s, lo, hi = INT_GRIDS[dt]
            post += [helper.make_node("Mul", [inner, const(f"{n}/scale", s)], [f"{n}/scaled"]),
                     helper.make_node("Round", [f"{n}/scaled"], [f"{n}/rounded"]),
                     helper.make_node("Clip", [f"{n}/rounded", const(f"{n}/lo", lo), const(f"{n}/hi", hi)],
                                      [f"{n}/clipped"]),
                     helper.make_node("Cast", [f"{n}/clipped"], [n], to=elem[dt])]
    if not pre and not post:
        return False
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    return True
