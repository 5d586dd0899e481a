"""ONNX tensor types as a phone stores them: bits per element of any ONNX type, and the type a
graph's inputs and outputs are kept at (a QDQ graph's quantized type, not its float I/O)."""

from __future__ import annotations

from typing import Any

from mobilecodec.errors import InputError
from mobilecodec.export.onnx_common import GraphIndex


def elem_bits(elem_type: int) -> int:
    """Bits per element of an ONNX tensor type, from onnx's own numpy mapping (sub-byte types such as
    int4 / float4 / float6 / int2 from ml_dtypes, which onnx maps them to). Strings have no fixed size."""
    import onnx

    try:
        dt = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError):
        raise InputError(f"tensor type {elem_type} is not a known ONNX tensor type") from None
    if dt.kind == "O":
        raise InputError(f"{onnx.helper.tensor_dtype_to_string(elem_type)} has no fixed size in bytes")
    if dt.kind == "V":  # ml_dtypes: bfloat16, float8, and the packed 2-, 4- and 6-bit types
        import ml_dtypes

        for info in (ml_dtypes.finfo, ml_dtypes.iinfo):
            try:
                return int(info(dt).bits)
            except (TypeError, ValueError):
                pass
    return 8 * dt.itemsize


def tensor_bytes(elems: int, elem_type: int) -> int:
    """Bytes of `elems` elements of an ONNX tensor type, sub-byte types packed (as ONNX stores them)."""
    return -(-elems * elem_bits(elem_type) // 8)


def stored_io_types(proto: Any) -> dict[str, int]:
    """Graph input / output -> the ONNX type it is stored at: in a QDQ graph the quantized type (an
    output a DequantizeLinear writes; an input only QuantizeLinear nodes read, the widest of theirs:
    the graph I/O is float, what a phone keeps is not), else the declared one."""
    import onnx

    g = proto.graph
    ix = GraphIndex(g)
    producer, readers = ix.producer, ix.consumers
    consts = {i.name: i.data_type for i in g.initializer}
    consts.update({n.output[0]: a.t.data_type for n in g.node if n.op_type == "Constant"  # torch's zero points
                   for a in n.attribute if a.name == "value"})
    typed = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}

    def quantized_type(q: Any) -> int:  # of a QuantizeLinear's output / a DequantizeLinear's input
        if len(q.input) > 2 and q.input[2] in consts:
            return consts[q.input[2]]
        if q.op_type == "DequantizeLinear" and (consts.get(q.input[0]) or typed.get(q.input[0])):
            return consts.get(q.input[0]) or typed[q.input[0]]  # its input's own type
        attr = next((a.i for a in q.attribute if a.name == "output_dtype"), 0)
        return attr or onnx.TensorProto.UINT8  # ONNX's default without a zero point

    out = {}
    for vi in g.input:
        if vi.name in consts:  # an initializer listed as an input (older exporters)
            continue
        qs = readers.get(vi.name, [])
        out[vi.name] = max((quantized_type(q) for q in qs), key=elem_bits) \
            if qs and all(q.op_type == "QuantizeLinear" for q in qs) else vi.type.tensor_type.elem_type
    for vi in g.output:
        node = producer.get(vi.name)
        if node is not None and node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            out[vi.name] = quantized_type(q if q is not None and q.op_type == "QuantizeLinear" else node)
        else:
            out[vi.name] = vi.type.tensor_type.elem_type
    return out
