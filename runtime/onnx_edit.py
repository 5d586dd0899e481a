"""Small in-place edits of ONNX graphs shared by the CPU-session rewrites (`polyphase`,
`narrow_conv`): read a node's attributes, replace nodes where they stood, drop what is dead."""

from __future__ import annotations

from typing import Any

from mobilecodec.export.onnx_common import node_attrs as attrs  # noqa: F401 - the rewrites' name for it


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
