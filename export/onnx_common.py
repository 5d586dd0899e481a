"""ONNX settings and graph clean-up shared by the float export and the aimet QDQ export (one place,
so that neither exporter imports the other)."""

from __future__ import annotations

from typing import Any

OPSET = 17  # best covered by onnxruntime-qnn's QDQ tooling and HTP op builders
IR_VERSION = 8  # loads in every onnxruntime >= 1.14


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
