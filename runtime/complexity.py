"""Count parameters and MACs of a PyTorch module with one forward pass.

MACs are counted at the aten level (a TorchDispatchMode sees every convolution / mm / bmm / addmm,
whether it comes from nn.Conv2d, F.conv_transpose2d or torch.matmul), with the formulas of
DESIGN.md "Counting conventions":

- Conv:          output elements x (Cin / groups) x kernel volume
- ConvTranspose: input elements  x (Cout / groups) x kernel volume
- mm / bmm / addmm / baddbmm / mv: M x N x K (batch included); bias adds are not MACs.
- A fused recurrent layer (CPU LSTM's mkldnn_rnn_layer): steps x batch x (W_ih + W_hh elements).

Element-wise work (activations, adds, normalisation) and resampling / warps (pixel shuffle,
interpolation, grid_sample, pooling) are counted separately as output elements per aten op, never
mixed into MACs. Forward hooks on every submodule attribute the counts to qualified module names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import InputError
from mobilecodec.runtime.counts import WorkTotals, numel, text_table

if TYPE_CHECKING:  # torch is imported lazily so this module is cheap to import.
    import torch
    from torch import nn

__all__ = [
    "ModuleComplexity",
    "ModuleRecord",
    "count_module",
    "format_table",
    "kmacs_per_pixel",
]


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass
class ModuleRecord:
    """Counts attributed to one submodule (qualified name as in `named_modules()`).

    `macs` includes all submodules (inclusive); `self_macs` only the ops run directly in this
    module's own forward (functional matmuls, or the conv of a leaf nn.Conv2d). `params` counts the
    module's parameters recursively, shared ones once.
    """

    name: str
    type: str
    params: int
    macs: int = 0
    self_macs: int = 0
    elementwise: int = 0
    resampling: int = 0
    calls: int = 0
    output_shape: Any = None
    is_leaf: bool = True


@dataclass
class ModuleComplexity(WorkTotals):
    """Totals of one forward pass plus a per-module breakdown (in call order)."""

    params: int
    macs: int
    elementwise: dict[str, int] = field(default_factory=dict)
    resampling: dict[str, int] = field(default_factory=dict)
    uncounted_module_types: dict[str, int] = field(default_factory=dict)
    unrecognized_ops: dict[str, int] = field(default_factory=dict)
    modules: list[ModuleRecord] = field(default_factory=list)
    input_shapes: list[list[int]] = field(default_factory=list)

    def module(self, name: str) -> ModuleRecord:
        """The record of the submodule called `name` ('' is the root)."""
        for rec in self.modules:
            if rec.name == name:
                return rec
        raise KeyError(f"no module named {name!r} ran in the counted forward pass")


# --------------------------------------------------------------------------------------------
# aten op classification
# --------------------------------------------------------------------------------------------

_CONV_OPS = {"convolution", "_convolution"}
_MM_OPS = {"mm", "bmm", "matmul"}            # out elements x K, with K = a.shape[-1]
_ADDMM_OPS = {"addmm", "baddbmm", "addmv"}    # arg 0 is the bias
_MV_OPS = {"mv"}
_DOT_OPS = {"dot", "vdot"}
_SDPA_PREFIX = "_scaled_dot_product_"
# One layer and direction of a fused recurrent kernel (CPU LSTM): weight0 = W_ih (G*H, in),
# weight1 = W_hh (G*H, H), so steps x batch x (W_ih + W_hh elements), as the unfused GRU's mm calls.
_FUSED_RNN_OPS = {"mkldnn_rnn_layer"}

_RESAMPLING_PREFIXES = (
    "upsample_", "_upsample_", "grid_sampler", "pixel_shuffle", "pixel_unshuffle",
    "avg_pool", "max_pool", "adaptive_avg_pool", "adaptive_max_pool", "_adaptive_avg_pool",
    "affine_grid",
)
# Normalisation and softmax: counted as element-wise work on their output elements.
_NORM_OPS = {
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "native_layer_norm", "native_group_norm", "_softmax", "_log_softmax", "softmax",
    "log_softmax", "cudnn_batch_norm", "miopen_batch_norm",
    "hardswish", "prelu", "_prelu_kernel", "glu",  # activations torch does not tag pointwise
}
# Pure data movement / allocation: zero work, not reported.
_DATA_OPS = {
    "cat", "stack", "clone", "copy", "copy_", "_to_copy", "contiguous", "constant_pad_nd",
    "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "index", "index_select", "gather", "scatter",
    "index_put", "index_put_", "split", "split_with_sizes", "chunk", "unbind", "flip", "roll",
    "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk",
    "repeat", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
    "new_full", "fill", "fill_", "zero_", "rand", "randn", "rand_like", "randn_like", "randint",
    "arange", "linspace", "scalar_tensor", "lift_fresh", "lift_fresh_copy", "detach",
    "_local_scalar_dense", "item", "_assert_async", "sym_size", "sym_stride", "sym_numel",
    "set_", "resize_", "masked_select", "nonzero", "_unsafe_index", "tril", "triu",
    "im2col", "col2im", "unfold", "_reshape_alias", "_unsafe_view", "alias", "view_as_real",
    "view_as_complex",
    "equal", "is_nonzero", "_to_dense", "bernoulli_", "normal_", "uniform_", "native_dropout",
}


def _op_name(func: Any) -> str:
    """aten op name without namespace and overload, e.g. aten.relu_.default -> 'relu_'."""
    return func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)


def _first_tensor(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def _aten_macs(name: str, args: tuple, kwargs: dict, out: Any) -> int | None:
    """MACs of one aten call, or None when the op is not a MAC op."""
    if name in _CONV_OPS:
        x, w = args[0], args[1]
        transposed = bool(args[6]) if len(args) > 6 else bool(kwargs.get("transposed", False))
        # weight: (Cout, Cin/g, *k) for conv, (Cin, Cout/g, *k) for transposed conv.
        per_elem = numel(w.shape[1:])
        if transposed:
            return x.numel() * per_elem
        return _first_tensor(out).numel() * per_elem
    if name in _MM_OPS:
        return _first_tensor(out).numel() * int(args[0].shape[-1])
    if name in _ADDMM_OPS:
        return _first_tensor(out).numel() * int(args[1].shape[-1])
    if name in _MV_OPS:
        return _first_tensor(out).numel() * int(args[0].shape[-1])
    if name in _DOT_OPS:
        return args[0].numel()
    if name == "addbmm":
        b1, b2 = args[1], args[2]
        return numel(b1.shape) * int(b2.shape[-1])
    if name in _FUSED_RNN_OPS:
        x, w_ih, w_hh = args[0], args[1], args[2]
        return (x.numel() // int(x.shape[-1])) * (w_ih.numel() + w_hh.numel())
    if name.startswith(_SDPA_PREFIX) and "backward" not in name:
        q, k, v = args[0], args[1], args[2]
        # Q K^T: (..., L, E) x (..., E, S) and softmax(.) V: (..., L, S) x (..., S, Ev).
        batch_l = numel(q.shape[:-1])
        return batch_l * int(k.shape[-2]) * (int(q.shape[-1]) + int(v.shape[-1]))
    return None


def _classify(func: Any, name: str) -> str:
    """'resampling', 'elementwise', 'reduction', 'data' or 'unknown' for a non-MAC aten op."""
    import torch

    if name.startswith(_RESAMPLING_PREFIXES):
        return "resampling"
    if torch.Tag.pointwise in func.tags or name in _NORM_OPS or name.rstrip("_") in _NORM_OPS:  # hardswish_
        return "elementwise"
    if torch.Tag.reduction in func.tags:
        return "reduction"
    if getattr(func, "is_view", False) or name in _DATA_OPS or name.rstrip("_") in _DATA_OPS:
        return "data"
    return "unknown"


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def _make_counter_mode(state: "_State") -> Any:
    """Build the TorchDispatchMode (class created lazily so torch stays an optional import)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _CountingMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            state.record(func, args, kwargs, out)
            return out

    return _CountingMode()


class _State:
    """Mutable accumulator shared by the dispatch mode and the module hooks."""

    def __init__(self, records: dict[str, ModuleRecord]) -> None:
        self.records = records
        self.stack: list[str] = []
        self.macs = 0
        self.elementwise: dict[str, int] = {}
        self.resampling: dict[str, int] = {}
        self.unrecognized: dict[str, int] = {}

    def _charge(self, attr: str, amount: int) -> None:
        for i, mod_name in enumerate(self.stack):
            rec = self.records[mod_name]
            setattr(rec, attr, getattr(rec, attr) + amount)
            if attr == "macs" and i == len(self.stack) - 1:
                rec.self_macs += amount

    def record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        name = _op_name(func)
        macs = _aten_macs(name, args, kwargs, out)
        if macs is not None:
            self.macs += macs
            self._charge("macs", macs)
            return
        kind = _classify(func, name)
        if kind == "data":
            return
        key = name.rstrip("_") or name
        if kind == "unknown":
            self.unrecognized[key] = self.unrecognized.get(key, 0) + 1
            return
        if kind == "reduction":
            first_in = _first_tensor(args)
            elems = first_in.numel() if first_in is not None else 0
            bucket, attr = self.elementwise, "elementwise"
        else:
            res = _first_tensor(out)
            elems = res.numel() if res is not None else 0
            bucket, attr = (self.resampling, "resampling") if kind == "resampling" else (
                self.elementwise, "elementwise")
        bucket[key] = bucket.get(key, 0) + elems
        self._charge(attr, elems)


def _shape_of(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, (tuple, list)):
        return [_shape_of(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _shape_of(v) for k, v in obj.items()}
    return None


def count_params(module: "nn.Module") -> int:
    """Number of parameter elements of `module`; a parameter shared by two layers counts once."""
    return sum(p.numel() for p in module.parameters())


def count_module(module: "nn.Module", *inputs: Any, **kw: Any) -> ModuleComplexity:
    """Run `module(*inputs, **kw)` once under torch.no_grad and count its params and MACs.

    The module is switched to eval mode for the pass (so BatchNorm statistics are not touched)
    and its previous train/eval flags are restored afterwards.
    """
    import torch
    from torch import nn

    if not isinstance(module, nn.Module):
        raise InputError(f"count_module needs a torch.nn.Module, got {type(module).__name__}")

    named = list(module.named_modules())  # shared submodules appear once, under their first name
    records = {
        name: ModuleRecord(
            name=name,
            type=type(mod).__name__,
            params=count_params(mod),
            is_leaf=next(iter(mod.children()), None) is None,
        )
        for name, mod in named
    }
    state = _State(records)
    order: list[str] = []
    handles = []

    def make_hooks(mod_name: str):  # noqa: ANN202
        def pre_hook(_mod, _args):  # noqa: ANN001, ANN202
            state.stack.append(mod_name)
            if records[mod_name].calls == 0:
                order.append(mod_name)
            records[mod_name].calls += 1

        def post_hook(_mod, _args, output):  # noqa: ANN001, ANN202
            if state.stack and state.stack[-1] == mod_name:
                state.stack.pop()
            records[mod_name].output_shape = _shape_of(output)

        return pre_hook, post_hook

    for name, mod in named:
        pre, post = make_hooks(name)
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))

    training = {mod: mod.training for _, mod in named}
    try:
        module.eval()
        with torch.no_grad(), _make_counter_mode(state):
            module(*inputs, **kw)
    finally:
        for h in handles:
            h.remove()
        for mod, flag in training.items():
            mod.training = flag

    uncounted: dict[str, int] = {}
    for name in order:
        rec = records[name]
        if rec.is_leaf and rec.macs == 0:
            uncounted[rec.type] = uncounted.get(rec.type, 0) + 1

    return ModuleComplexity(
        params=count_params(module),
        macs=state.macs,
        elementwise=dict(sorted(state.elementwise.items())),
        resampling=dict(sorted(state.resampling.items())),
        uncounted_module_types=uncounted,
        unrecognized_ops=dict(sorted(state.unrecognized.items())),
        modules=[records[name] for name in order],
        input_shapes=[_shape_of(x) for x in inputs],
    )


def kmacs_per_pixel(macs: int, height: int, width: int) -> float:
    """MACs per luma pixel of an H x W frame, in thousands (DESIGN.md: kMACs/px)."""
    if int(height) <= 0 or int(width) <= 0:
        raise InputError(f"frame size must be positive, got {height}x{width}")
    if macs < 0:
        raise InputError(f"MAC count must be non-negative, got {macs}")
    return macs / (int(height) * int(width)) / 1000.0


# --------------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def format_table(result: ModuleComplexity, max_depth: int | None = None,
                 leaves_only: bool = False, pixels: tuple[int, int] | None = None) -> str:
    """Plain-text per-module breakdown: name, type, params, MACs (inclusive), output shape.

    `max_depth` hides modules nested deeper than that many dots; `pixels=(H, W)` adds kMACs/px.
    """
    rows = []
    for rec in result.modules:
        depth = 0 if rec.name == "" else rec.name.count(".") + 1
        if max_depth is not None and depth > max_depth:
            continue
        if leaves_only and not rec.is_leaf:
            continue
        row = ["  " * depth + (rec.name or "(root)"), rec.type, _human(rec.params),
               _human(rec.macs)]
        if pixels is not None:
            row.append(f"{kmacs_per_pixel(rec.macs, *pixels):.3f}")
        row.append(str(rec.output_shape))
        rows.append(row)
    header = ["module", "type", "params", "MACs"] + (["kMACs/px"] if pixels else []) + ["output"]
    lines = text_table(header, rows)
    total = f"total: params {result.params:,}  MACs {result.macs:,}"
    if pixels is not None:
        kpx = kmacs_per_pixel(result.macs, *pixels)
        total += f"  ({kpx:.3f} kMACs/px at {pixels[0]}x{pixels[1]})"
    lines.append(total)
    if result.elementwise:
        lines.append("element-wise (output elements): " + ", ".join(
            f"{k} {_human(v)}" for k, v in result.elementwise.items()))
    if result.resampling:
        lines.append("resampling / warps (output elements): " + ", ".join(
            f"{k} {_human(v)}" for k, v in result.resampling.items()))
    if result.unrecognized_ops:
        lines.append("not counted (unrecognized aten ops): " + ", ".join(
            f"{k} x{v}" for k, v in result.unrecognized_ops.items()))
    return "\n".join(lines)
