"""Small in-place edits of ONNX graphs shared by the CPU-session rewrites (`polyphase`,
`narrow_conv`): read a node's attributes, replace nodes where they stood, drop what is dead."""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphIndex:
    """Lookups over one graph, built once before a rewrite: initializers by name, the node that
    produces each tensor, the nodes that read it, and the graph outputs."""

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

    def dq_of_init(self, name: str) -> tuple[Any, list[np.ndarray]] | None:
        """(DequantizeLinear node, its constant inputs as arrays) when tensor `name` is a
        DequantizeLinear of initializers only; else None."""
        from onnx import numpy_helper

        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or not all(i in self.inits for i in dq.input if i):
            return None
        return dq, [numpy_helper.to_array(self.inits[i]) for i in dq.input if i]


def attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as plain Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def splice(graph: Any, old: list[Any], new: list[Any], initializers: list[Any]) -> None:
    """Replace the nodes `old` by `new`, inserted where the first of `old` stood (so the graph stays
    topologically sorted when `new` only reads what `old` read), and add `initializers`."""
    at = min(list(graph.node).index(n) for n in old)
    for n in old:
        graph.node.remove(n)
    for i, n in enumerate(new):
        graph.node.insert(at + i, n)
    graph.initializer.extend(initializers)


def drop_dead(proto: Any) -> None:
    """Remove nodes none of whose outputs is used, then initializers nothing reads."""
    g = proto.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
