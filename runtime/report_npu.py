"""Markdown and PNG parts of the profiler report for any graph (`mobilecodec.runtime.profile_any`) and for the
ESTIMATED NPU latency section; used by `mobilecodec.runtime.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilecodec.mdtable import md_table
from mobilecodec.runtime.npu_graph import unsized_note
from mobilecodec.runtime.onnx_complexity import SHAPES_MEASURED


def data_tensors_note(graph: dict[str, Any]) -> str | None:
    """What a graph's params leave out (`OnnxComplexity.data_tensors`), or None when nothing."""
    d = graph.get("data_tensors") or {}
    if not d.get("count"):
        return None
    return (f"{d['elements']:,} elements in {d['count']} constant tensors that only element-wise and data ops read "
            "are not in params (learned, like a position embedding or a layer scale, or fixed, like a folded "
            "attention mask: the graph cannot tell); largest: "
            + ", ".join(f"{x['name']} ({'x'.join(map(str, x['shape']))})" for x in d["largest"]))


def _t(head: list[str], rows: list[list[Any]], nd: int = 2) -> list[str]:
    return md_table(head, rows, nd=nd)


def graphs_md(report: dict[str, Any]) -> list[str]:
    """Complexity per graph, costliest layers, non-MAC work, DRAM traffic and the HTP op check."""
    h, w = report["size"]
    out = [f"## Complexity per graph (frame {h}x{w}; kMACs per frame pixel)", ""]
    out += _t(["graph", "params [M]", "GMACs", "kMACs/px", "element-wise /px", "resampling /px", "not counted"],
              [[n, g["params_M"], g["gmacs"], g["kmacs_per_px"], g["elementwise_per_px"], g["resampling_per_px"],
                ", ".join(f"{k} x{v}" for k, v in g["unknown_ops"].items()) or "-"]
               for n, g in report["graphs"].items()])
    out += [f"{n}: {SHAPES_MEASURED.format(n=g['shapes_measured'], on=g['shapes_measured_on'])}"
            for n, g in report["graphs"].items() if g.get("shapes_measured")]
    out.append("")
    for n, g in report["graphs"].items():
        if note := data_tensors_note(g):
            out += [f"{n}: {note}", ""]
        if "pytorch" in g:
            t = g["pytorch"]
            diff = t["params"] - g["params"]
            out += [f"PyTorch count of {n} (runtime.complexity.count_module): {t['params'] / 1e6:.3f} M params, "
                    f"{t['macs'] / 1e9:.4f} GMACs" + (f"; {diff:+,} params against the graph's" if diff else ""), ""]
        out += [f"### {n}: layers by MACs ({g['mac_layers']} MAC layers, top {len(g['layers'])})", ""]
        out += _t(["layer", "op", "MACs", "share", "params", "output"],
                  [[la["name"], la["op"], la["macs"], f"{100 * la['share']:.1f}%", la["params"],
                    "x".join(map(str, la["output_shape"] or []))] for la in g["layers"]])
        if g["elementwise"] or g["resampling"]:
            out += ["", "Element-wise (output elements): " + (", ".join(f"{k} {v:,}" for k, v in g["elementwise"].items())
                                                           or "-"),
                    "", "Resampling / warps (output elements): "
                    + (", ".join(f"{k} {v:,}" for k, v in g["resampling"].items()) or "-")]
        out.append("")
    b = report["buffer"]
    out += [f"## State buffer (HyTIP layout, from {b['from']}, {b['fps']:g} fps)", ""]
    if b["entries"]:
        out += _t(["state", "tensor", "shape", "dtype", "full-res maps", "bytes/frame"],
                  [[e["name"], e["tensor"], "x".join(map(str, e["shape"])), e["dtype"], round(e["full_res_maps"], 4),
                    e["bytes"]] for e in b["entries"]])
    out += ["", f"Total {b['full_res_maps']:.4f} full-resolution maps, {b['bytes_per_frame']} bytes per frame, "
                f"bandwidth (read + write) {b['bandwidth_mb_s']:.2f} MB/s", ""]
    out += ["## DRAM traffic per run (VTCM 8 MiB tiling rule, runtime/npu_graph.py)", ""]
    out += _t(["graph", "precision", "weights MB", "graph I/O MB", "spilled activations MB", "total MB"],
              [[n, d["precision"], d["weights_bytes"] / 1e6, d["graph_io_bytes"] / 1e6, d["activations_bytes"] / 1e6,
               d["total_bytes"] / 1e6]
               for n, d in report["dram"].items()])
    out += [f"- {n}{unsized_note(d)}" for n, d in report["dram"].items() if d.get("unsized_tensors")]
    out += ["", f"Per frame: {report['dram_bytes_per_frame'] / 1e6:.2f} MB; state buffer {b['bandwidth_mb_s']:.2f} MB/s "
                f"at {b['fps']:g} fps", "", "## QNN HTP op check (static)", ""]
    for n, c in report["htp_check"].items():
        out.append(f"- {n}: " + ("runs on the HTP" if c["ok"] else "; ".join(c["issues"][:10])))
    return out + [""]


def npu_md(report: dict[str, Any]) -> list[str]:
    """The ESTIMATED NPU section with the estimator's leave-one-out error and the measured host steps."""
    npu = report.get("npu")
    if not npu:
        return []
    from mobilecodec.runtime.npu_estimate import DEVICES

    out = [f"## NPU latency: {npu['label']}", "",
           f"Target {npu['target_fps']:g} frames/s. Fitted on {npu['calibration']['fitted']} published "
           f"measurements (ai-hub-models perf.yaml, qnn_dlc); every time below is an ESTIMATE.", ""]
    for dev, d in npu["devices"].items():
        out += [f"### {DEVICES[dev]['soc']} (HTP {DEVICES[dev]['htp']}): ESTIMATE", ""]
        out += _t(["graph", "precision", "ESTIMATE ms", "bound", "DRAM MB", "overhead ms"],
                  [[n, g["precision"], g["ms"], g["bound"], g["dram"]["total_bytes"] / 1e6, g["overhead_ms"]]
                   for n, g in d["graphs"].items()], nd=3)
        out += [""]
        out += _t(["frame", "ESTIMATE ms", "frames/s", "GMAC/s needed", "DRAM GB/s needed", "meets target"],
                  [[ft, f["ms"], f["frames_per_s"], f["mac_per_s_needed"] / 1e9, f["dram_gb_s_needed"],
                    f["meets_target"]] for ft, f in d["frames"].items()], nd=3)
        out.append("")
    if npu.get("buffer_bandwidth_mb_s") is not None:
        out += [f"State buffer bandwidth beside the DRAM traffic: {npu['buffer_bandwidth_mb_s']:.2f} MB/s", ""]
    host = report.get("host_steps_measured")
    if host:
        out += ["### Host steps MEASURED on this machine (not estimated; median ms)", ""]
        out += _t(["frame", "step", "ms"], [[ft, k, v] for ft, s in host.items() for k, v in s.items()], nd=3)
        out.append("")
    return out


def write_graph_charts(report: dict[str, Any], out_dir: Path) -> list[str]:
    """MACs of the costliest layers of every graph (horizontal bars)."""
    from mobilecodec.fsutil import atomic_path
    from mobilecodec.plots import plain_text, pyplot

    plt = pyplot()

    rows = [(plain_text(f"{n}:{la['name']}"[-40:]), la["macs"] / 1e6) for n, g in report["graphs"].items()
            for la in g["layers"]]
    rows = sorted(rows, key=lambda r: -r[1])[:20][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    ax.barh([r[0] for r in rows], [r[1] for r in rows])
    ax.set_xlabel("MMACs")
    ax.set_title("Costliest layers")
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    with atomic_path(out_dir / "macs_per_layer.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return ["macs_per_layer.png"]
