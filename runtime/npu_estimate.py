"""ESTIMATED latency of an ONNX graph on a Snapdragon HTP: a small roofline-style model fitted on
published on-device measurements (`runtime/npu_calibration.json`, built by `mobilecodec.runtime.npu_calibrate`).

Model, per graph run on device d at precision p (layers from `mobilecodec.runtime.npu_graph`):

    t = t0_d + sum over layers of max(C_l / (P_d * r_p), B_l / BW_d)
    C_l = dense MACs + depthwise MACs / u_dw + grouped MACs / u_g + c_el * (element-wise, resampling and data elements)
    B_l = DRAM bytes of the layer under the VTCM tiling rule (weights, graph I/O, spilled activations)

Ten parameters, fitted by least squares on log(predicted / measured): per device the fp16 MAC
rate P_d, the DRAM bandwidth BW_d and the per-graph overhead t0_d; shared: the int8 speed-up r_8
(r_float = 1), the utilisations of depthwise convolutions (one input channel per group, u_dw) and
of wider grouped ones (u_g, at most 1) and the cost c_el of one element of non-MAC work in
MAC-equivalents. w8a16 is not fitted: it runs at the fp16 rate (r = 1) with 2-byte activations, as
the published w8a16 times (0.9-1.1x float for most models) say; its published measurements are
held out and reported as a check. The quality of the estimate is its leave-one-out error on the
table (refit without one measurement, predict it), printed next to every estimate; for a model
outside the table (any user's model) also the leave-one-model-out error (refit without all of a
model's measurements, predict them), and for w8a16 graphs the held-out w8a16 error instead. Models
of a kind the fitted ones do not cover (LayerNorm, attention: vit, convnext_tiny) are held out whole
(`npu_calibrate.HELD_OUT`); their errors label the estimate of a graph with such ops.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mobilecodec.errors import InputError
from mobilecodec.runtime.npu_graph import FREE_CLASSES, VTCM_BYTES, GraphLayers, layer_bytes, layers_from_dict

CALIBRATION = Path(__file__).with_name("npu_calibration.json")
DEVICES = {
    "8gen2": {"soc": "Snapdragon 8 Gen 2", "htp": "v73", "vtcm_bytes": VTCM_BYTES},
    "8gen3": {"soc": "Snapdragon 8 Gen 3", "htp": "v75", "vtcm_bytes": VTCM_BYTES},
}
PRECISIONS = ("float", "w8a8", "w8a16")
FITTED_PRECISIONS = ("float", "w8a8")
PARAM_NAMES = ("P_8gen2", "P_8gen3", "BW_8gen2", "BW_8gen3", "t0_8gen2", "t0_8gen3", "r8", "u_depthwise", "c_el",
               "u_grouped")
_X0 = np.log([2e12, 2.7e12, 40e9, 55e9, 2e-4, 1.5e-4, 3.0, 0.2, 4.0, 0.5])
#: w8a16's MAC rate against fp16's, by rule (not fitted): ai-hub-models' published w8a16 times are
#: 0.92-1.14x float on five of six convolutional models (densenet121: 1.78x), convnext_tiny's 0.82-0.85x
W8A16_RATE = 1.0
LABEL = "ESTIMATE"


def has_attention(gl: GraphLayers) -> bool:
    """Whether `gl` is of the kind no fitted model is and the held-out ones are: a LayerNormalization, or
    a MatMul of two computed tensors (attention's; a Linear's MatMul, applied once or many times, reads
    one, its weight being a constant). A softmax alone, a classifier's last layer, is not."""
    return any(la.op == "LayerNormalization" or (la.op == "MatMul" and len(la.inputs) >= 2) for la in gl.layers)


def _fitted(m: dict[str, Any]) -> bool:
    """Whether a calibration measurement is fitted: a fitted precision, and not a held-out model's."""
    return m["precision"] in FITTED_PRECISIONS and m.get("fit", True)


def _features(gl: GraphLayers, precision: str, vtcm: int) -> np.ndarray:
    """(layers, 5): dense MACs, depthwise MACs, grouped MACs, non-MAC elements, DRAM bytes. A grouped conv
    of unknown group width (a table built before session 43) counts as depthwise, as it was priced then."""
    rows = []
    for la in gl.layers:
        if la.cls in FREE_CLASSES or la.op == "Constant":
            continue
        dense = la.macs if la.cls == "dense" else 0
        depthwise = la.macs if la.grouped_kind == "depthwise" else 0
        grouped = la.macs if la.grouped_kind == "grouped" else 0
        elems = la.elements if la.cls in ("elementwise", "resampling", "data") else 0
        rows.append((dense, depthwise, grouped, elems, layer_bytes(la, precision, vtcm)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _unpack(theta: np.ndarray, device: str, precision: str) -> tuple[float, float, float, float, float, float, float]:
    v = np.exp(theta)
    i = 0 if device == "8gen2" else 1
    p, bw, t0, r8, udw, cel, ug = v[i], v[2 + i], v[4 + i], v[6], v[7], v[8], min(v[9], 1.0)
    rate = p * {"float": 1.0, "w8a8": r8, "w8a16": W8A16_RATE}[precision]
    return rate, bw, t0, udw, ug, cel, r8


def _layer_times(theta: np.ndarray, feats: np.ndarray, device: str, precision: str) -> tuple[np.ndarray, np.ndarray, float]:
    rate, bw, t0, udw, ug, cel, _ = _unpack(theta, device, precision)
    compute = (feats[:, 0] + feats[:, 1] / udw + feats[:, 2] / ug + cel * feats[:, 3]) / rate
    memory = feats[:, 4] / bw
    return compute, memory, t0


def _predict(theta: np.ndarray, feats: np.ndarray, device: str, precision: str) -> float:
    compute, memory, t0 = _layer_times(theta, feats, device, precision)
    return float(t0 + np.maximum(compute, memory).sum())


def _fit(rows: list[tuple[np.ndarray, str, str, float]]) -> np.ndarray:
    """Least squares on log(predicted / measured). The rows of one device and precision are priced in one
    `_layer_times` call over their stacked layers (per row, as `_predict` does, it was 5x slower: the
    cross-validation's 92 fits took 6 s of every `profile --device`)."""
    from scipy.optimize import least_squares

    by_kind: dict[tuple[str, str], list[int]] = {}
    for i, (f, d, p, _) in enumerate(rows):
        if not len(f):
            raise InputError("internal: a calibration graph without priced layers")
        by_kind.setdefault((d, p), []).append(i)
    stacks = [(d, p, np.concatenate([rows[i][0] for i in idx]),
               np.cumsum([0] + [len(rows[i][0]) for i in idx[:-1]]), np.asarray(idx))
              for (d, p), idx in by_kind.items()]
    measured = np.array([r[3] for r in rows])

    def resid(theta: np.ndarray) -> np.ndarray:
        pred = np.empty(len(rows))
        for d, p, feats, starts, idx in stacks:
            compute, memory, t0 = _layer_times(theta, feats, d, p)
            pred[idx] = t0 + np.add.reduceat(np.maximum(compute, memory), starts)
        return np.log(pred / measured)

    return least_squares(resid, _X0, method="trf", x_scale=1.0, max_nfev=4000).x


def _left_out(fitted: list[tuple], groups: Iterable) -> list[dict[str, Any]]:
    """Cross-validation on the fitted rows: per group (in sorted order; `groups` gives each row's),
    refit without the group's rows and predict them: each row's measured and predicted ms and error."""
    groups = list(groups)
    out = []
    for g in sorted(set(groups)):
        th = _fit([r[:4] for r, k in zip(fitted, groups) if k != g])
        for r in (r for r, k in zip(fitted, groups) if k == g):
            pred = _predict(th, r[0], r[1], r[2])
            out.append({"model": r[4]["model"], "device": r[1], "precision": r[2], "measured_ms": r[3] * 1e3,
                        "predicted_ms": pred * 1e3, "error": pred / r[3] - 1.0})
    return out


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    """The calibration table as read from its file, once per process (not to be modified)."""
    if not CALIBRATION.is_file():
        raise InputError(f"NPU calibration table missing: {CALIBRATION} (run python -m mobilecodec.runtime.npu_calibrate)")
    return json.loads(CALIBRATION.read_text())


@functools.lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    """Fitted parameters and the leave-one-out error of the estimator on the calibration table."""
    table = _table()
    graphs = {n: layers_from_dict(m["graph"]) for n, m in table["models"].items()}
    fitted, held = [], []
    for m in table["measurements"]:
        f = _features(graphs[m["model"]], m["precision"], DEVICES[m["device_key"]]["vtcm_bytes"])
        row = (f, m["device_key"], m["precision"], m["ms"] / 1e3, m)
        (fitted if _fitted(m) else held).append(row)
    theta = _fit([r[:4] for r in fitted])
    loo = _left_out(fitted, range(len(fitted)))  # leave one measurement out
    # leave one whole model out: what a model outside the table (a user's own) can expect
    lomo = _left_out(fitted, [r[4]["model"] for r in fitted])
    checks = [{"model": r[4]["model"], "device": r[1], "precision": r[2], "measured_ms": r[3] * 1e3,
               "predicted_ms": _predict(theta, r[0], r[1], r[2]) * 1e3} for r in held]
    for c in checks:
        c["error"] = c["predicted_ms"] / c["measured_ms"] - 1.0
    errs = [abs(x["error"]) for x in loo]
    model_errs = [abs(x["error"]) for x in lomo]
    fitted_models = {r[4]["model"] for r in fitted}
    grouped = sorted(n for n in fitted_models if graphs[n].has_grouped)
    kinds = {n: graphs[n].grouped_kinds for n in grouped}
    params = dict(zip(PARAM_NAMES, (float(v) for v in np.exp(theta))))
    params["u_grouped"] = min(params["u_grouped"], 1.0)  # as `_unpack` uses it
    return {"params": params, "theta": theta.tolist(),
            "fitted_precisions": {n: sorted({r[2] for r in fitted if r[4]["model"] == n}) for n in sorted(fitted_models)},
            "depthwise_models": [n for n in grouped if "depthwise" in kinds[n]],
            "wide_grouped_models": [n for n in grouped if "grouped" in kinds[n]],
            "grouped_models": grouped, "held_models": sorted(set(graphs) - fitted_models),
            "measurements": len(table["measurements"]), "fitted": len(fitted), "models": len(fitted_models),
            "loo": loo, "loo_median": statistics.median(errs), "loo_worst": max(errs),
            "lomo": lomo, "lomo_median": statistics.median(model_errs), "lomo_worst": max(model_errs),
            "held_out": checks,
            "source": sorted({(m["source_repo"], m["source_commit"]) for m in table["measurements"]})}


def calibration_model_of(gl: GraphLayers) -> str | None:
    """The calibration table's fitted model that `gl` is (the same MACs, to the unit, and the same input
    shapes), else None: its estimate is then fitted on that model's own published figures."""
    table = _table()
    fitted = {m["model"] for m in table["measurements"] if _fitted(m)}
    macs = sum(la.macs for la in gl.layers)
    shapes = sorted(map(tuple, (s for s in gl.inputs.values() if s)))
    for name, m in table["models"].items():
        if name in fitted and m["macs"] == macs \
                and sorted(map(tuple, (s for s in m["graph"]["inputs"].values() if s))) == shapes:
            return name
    return None


def error_label(precisions: Iterable[str] = (), unseen_model: bool = False, grouped: bool | Iterable[str] = False,
                rejected: dict[str, list[str]] | None = None, seen: Iterable[str] = (),
                attention: bool = False) -> str:
    """'ESTIMATE (leave-one-out error on N published measurements: median x %, worst y %)', plus the
    leave-one-model-out error for a model outside the table (`unseen_model`), when `precisions`
    holds w8a16 (never fitted) that precision's held-out errors, and for a model with grouped /
    depthwise convolutions (`grouped`: True, or the kinds, `GraphLayers.grouped_kinds`) the error of the
    table's models that inform their utilisation, each left out whole: an estimate is labelled with the error measured for its own case, not only the best one.
    `rejected` (graph -> the HTP check's issues): the estimate prices the graph as if the HTP ran it
    whole, the ops it does not take by their data movement. `seen`: the table's models among the graphs
    estimated (`calibration_model_of`). `attention` (a graph with LayerNorm or attention, which no
    fitted model has: `has_attention`): the held-out models' errors."""
    c = calibration()
    parts = [f"leave-one-out error on {c['fitted']} published measurements of {c['models']} models: "
             f"median {100 * c['loo_median']:.0f} %, worst {100 * c['loo_worst']:.0f} %"]
    seen = sorted(set(seen))
    wanted = set(precisions) or set(FITTED_PRECISIONS)
    # in-sample only where the table fits the model's own figures at every precision estimated (w8a16 is
    # never fitted; four of the table's models have no w8a8 figure)
    missing = {m: sorted(wanted - set(c["fitted_precisions"].get(m, ()))) for m in seen}
    inside = [m for m in seen if not missing[m]]
    partly = [m for m in seen if missing[m]]
    if inside:
        parts.append(f"{', '.join(inside)} {'is' if len(inside) == 1 else 'are'} among them: the estimate is fitted on "
                     f"{'its' if len(inside) == 1 else 'their'} own published figures (in-sample; the leave-one-out "
                     f"error is the out-of-sample one)")
    for m in partly:
        parts.append(f"{m} is among them, but not at {', '.join(missing[m])}")
    lomo = f"leave-one-model-out error: median {100 * c['lomo_median']:.0f} %, worst {100 * c['lomo_worst']:.0f} %"
    if unseen_model:
        parts.append(f"{'the other graphs are' if seen else 'this model is'} not among them; {lomo}")
    elif any(set(missing[m]) & set(FITTED_PRECISIONS) for m in partly):  # out of sample at a fitted precision
        parts.append(f"where its figures are not in the fit, {lomo}")
    if "w8a16" in set(precisions):
        held = [h for h in c["held_out"] if h["precision"] == "w8a16"]
        parts.append(f"w8a16 is not fitted (the fp16 rate by rule); error on its {len(held)} held-out "
                     f"published measurements of {len({h['model'] for h in held})} models: {_summary(held)}, "
                     f"not the figures above")
    if attention:  # at the estimate's precisions; w8a16's are in its own part above
        held = [h for h in c["held_out"] if h["model"] in c["held_models"]]
        wanted = wanted - {"w8a16"}
        here = [h for h in held if h["precision"] in wanted]
        text = "LayerNorm / attention graphs are not in the fit; "
        if here:
            text += f"its error on {len(here)} held-out published measurements of such models: {_errors(here)}"
        else:
            floats = [h for h in held if h["precision"] == "float"]
            text += (f"no such model's published figure at {'/'.join(sorted(wanted))} checks it" if wanted else
                     "such models' w8a16 figures are among the w8a16 ones") + f"; at float: {_errors(floats)}"
        parts.append(text)
    kinds = {"depthwise", "grouped"} if grouped is True else set(grouped or ())
    for kind, models, what in (("depthwise", c["depthwise_models"], "depthwise convolutions (one input channel per group)"),
                               ("grouped", c["wide_grouped_models"], "grouped convolutions of more channels per group")):
        if kind in kinds:
            rows = [r for r in c["lomo"] if r["model"] in models]
            parts.append(f"{what} are priced by a fitted utilisation that {len(models)} of the models inform; "
                         f"each of those left out whole: {_summary(rows)}")
    rejected = {n: issues for n, issues in (rejected or {}).items() if issues}
    if rejected:
        first = next(iter(rejected.values()))[0]
        parts.append(f"the HTP check finds {sum(map(len, rejected.values()))} issue(s) in {', '.join(rejected)} "
                     f"(first: {first}): estimated as if the HTP ran the graph whole, ops it does not take "
                     f"priced by their data movement")
    return f"{LABEL} ({'; '.join(parts)})"


def _errors(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{h['model']} {h['device']} {h['precision']} {100 * h['error']:+.0f} %" for h in rows)


def _summary(rows: list[dict[str, Any]]) -> str:
    """'median x %, worst y % (model device precision +z %)' of some rows' errors."""
    worst = max(rows, key=lambda h: abs(h["error"]))
    return (f"median {100 * statistics.median(abs(h['error']) for h in rows):.0f} %, worst "
            f"{100 * abs(worst['error']):.0f} % ({_errors([worst])})")


def estimate_graph(gl: GraphLayers, device: str, precision: str | None = None, top: int = 10) -> dict[str, Any]:
    """Estimated time of one run of `gl` on `device` ('8gen2' / '8gen3'), with its bound and DRAM bytes."""
    from mobilecodec.runtime.npu_graph import dram_bytes

    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    prec = precision or gl.precision
    if prec not in PRECISIONS:
        raise InputError(f"unknown precision {prec!r}; expected one of {', '.join(PRECISIONS)}")
    cal = calibration()
    theta = np.asarray(cal["theta"])
    vtcm = DEVICES[device]["vtcm_bytes"]
    feats = _features(gl, prec, vtcm)
    compute, memory, t0 = _layer_times(theta, feats, device, prec)
    per = np.maximum(compute, memory)
    mem_bound = float(per[memory > compute].sum())
    names = [la.name for la in gl.layers if la.cls not in FREE_CLASSES and la.op != "Constant"]
    order = np.argsort(-per)[:top]
    return {"label": LABEL, "device": device, "soc": DEVICES[device]["soc"], "htp": DEVICES[device]["htp"],
            "precision": prec, "ms": 1e3 * float(t0 + per.sum()), "overhead_ms": 1e3 * t0,
            "compute_ms": 1e3 * float(compute.sum()), "memory_ms": 1e3 * float(memory.sum()),
            "memory_bound_share": mem_bound / float(per.sum()) if per.sum() > 0 else 0.0,
            "bound": "memory" if mem_bound > 0.5 * float(per.sum()) else "compute",
            "dram": dram_bytes(gl, prec, vtcm),
            "top_layers": [{"name": names[i], "ms": 1e3 * float(per[i]),
                            "bound": "memory" if memory[i] > compute[i] else "compute"} for i in order],
            "loo_median": cal["loo_median"], "loo_worst": cal["loo_worst"]}


def predict_without(model: str, device: str, precision: str, whole_model: bool = False) -> tuple[float, float]:
    """(predicted ms, measured ms) of one calibration measurement from a fit that never saw it
    (`whole_model`: none of that model's measurements either)."""
    table = _table()
    graphs = {n: layers_from_dict(m["graph"]) for n, m in table["models"].items()}
    rows, target = [], None
    for m in table["measurements"]:
        f = _features(graphs[m["model"]], m["precision"], DEVICES[m["device_key"]]["vtcm_bytes"])
        row = (f, m["device_key"], m["precision"], m["ms"] / 1e3)
        if (m["model"], m["device_key"], m["precision"]) == (model, device, precision):
            target = row
        elif _fitted(m) and not (whole_model and m["model"] == model):
            rows.append(row)
    if target is None:
        raise InputError(f"no calibration measurement for {model} on {device} at {precision}")
    return _predict(_fit(rows), target[0], device, precision) * 1e3, target[3] * 1e3
