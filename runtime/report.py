"""Profiler report files: profile.json, profile.md (tables) and PNG charts (matplotlib Agg,
imported lazily), written atomically into one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilecodec.mdtable import md_table


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """The profiler's tables: numbers with 2 decimals."""
    return md_table(head, rows, nd=2)


def complexity_md(report: dict[str, Any]) -> list[str]:
    """Table 6 layout: params [M] and kMACs/px per subnetwork (ONNX and PyTorch counts when both
    exist), element-wise / resampling / warp work in their own columns (elements per pixel)."""
    c, t = report["complexity"], report.get("complexity_pytorch")
    cols = report.get("complexity_columns", {})
    head = ["side", "subnetwork", "params [M]", "kMACs/px"]
    if t:
        head += ["kMACs/px (PyTorch)"]
    head += ["element-wise /px", "resampling /px", "warp (host) /px"]
    rows = []
    for side, rs in c["table6"].items():
        for row, v in rs.items():
            r = [side, row, v["params_M"], v["kmacs_per_px"]]
            if t:
                r.append(t["table6"][side][row]["kmacs_per_px"])
            x = cols.get(side, {}).get(row, {})
            r += [x.get("elementwise_per_px"), x.get("resampling_per_px"), x.get("warp_per_px")]
            rows.append(r)
    title = (f"## Complexity ({c['config']} at {c['height']}x{c['width']}, networks padded to "
             f"{c['padded'][0]}x{c['padded'][1]}; {c.get('counted_from', 'pytorch stages')})")
    out = [title, "", *_table(head, rows), ""]
    if "onnx_vs_pytorch" in report:
        agree = report["onnx_vs_pytorch"]
        out += ["### Per graph: ONNX count vs PyTorch count", ""]
        out += _table(["graph", "MACs (ONNX)", "MACs (PyTorch)", "params (ONNX)", "params (PyTorch)", "equal"],
                      [[n, v["onnx_macs"], v["pytorch_macs"], v["onnx_params"], v["pytorch_params"], v["equal"]]
                       for n, v in agree.items()])
        out.append("")
    return out


def buffer_md(report: dict[str, Any]) -> list[str]:
    b = report["buffer"]
    out = [f"## Buffer (HyTIP Table 7 layout, {b['fps']:g} fps)", ""]
    out += _table(["entry", "shape (C,H,W)", "dtype", "full-res maps", "bytes/frame"],
                  [[e["name"], "x".join(map(str, e["shape"])), e["dtype"], round(e["full_res_maps"], 4), e["bytes"]]
                   for e in b["entries"]])
    out += ["", f"Total: {b['full_res_maps']:.4f} full-resolution maps, {b['bytes_per_frame']} bytes per frame, "
                f"bandwidth (read + write) {b['bandwidth_mb_s']:.2f} MB/s", ""]
    return out


def latency_md(report: dict[str, Any]) -> list[str]:
    lat = report.get("latency")
    if not lat:
        return []
    threads = lat.get("threads") or f"default ({lat.get('torch_threads', '?')} for torch)"
    out = [f"## Latency on {lat['backend']} ({lat['warmup']} warm-up, {lat['runs']} runs, threads {threads}; "
           "this machine's CPU is shared, so numbers are indicative)", "",
           "### Per graph (alone, random inputs)", ""]
    out += _table(["graph", "median ms", "min ms", "max ms"],
                  [[n, v["median_ms"], v["min_ms"], v["max_ms"]] for n, v in lat["graphs"].items()])
    out.append("")
    for kind in ("encode", "decode"):
        for ftype in ("I", "P"):
            fr = lat["frames"].get(kind, {}).get(ftype)
            if not fr:
                continue
            out += [f"### {kind} {ftype}-frame: {fr['frame']['median_ms']:.2f} ms median "
                    f"(min {fr['frame']['min_ms']:.2f}, max {fr['frame']['max_ms']:.2f}), "
                    f"{fr['frames_per_s']:.2f} frames/s, "
                    f"host share {100 * fr['host_share']:.1f}%", ""]
            out += _table(["step", "median ms", "min ms", "max ms"],
                          [[k, v["median_ms"], v["min_ms"], v["max_ms"]] for k, v in fr["steps"].items()])
            out.append("")
    ops = report.get("ort_ops")
    if ops and "top_ops" in ops:
        out += [f"### onnxruntime per-op profile (all graphs, ms per run: mean of {ops['runs']} runs after "
                f"{ops['warmup']} warm-up{'' if ops['warmup'] == 1 else 's'}, under onnxruntime's profiler)", ""]
        out += _table(["op", "ms per run", "share"],
                      [[o["op"], o["ms_per_run"], f"{100 * o['share']:.1f}%"] for o in ops["top_ops"][:10]])
        out.append("")
    elif ops and "error" in ops:  # optional output, but not silently missing
        out += ["### onnxruntime per-op profile: failed", "", ops["error"], ""]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    src = report.get("source", {})
    from mobilecodec.runtime.report_npu import graphs_md, npu_md

    head = ["# mobilecodec profile", "", "Source: " + ", ".join(f"{k} {v}" for k, v in src.items()), ""]
    if report.get("kind") == "graphs":
        return "\n".join(head + graphs_md(report) + npu_md(report)) + "\n"
    return "\n".join(head + complexity_md(report) + buffer_md(report) + npu_md(report) + latency_md(report)) + "\n"


def write_charts(report: dict[str, Any], out_dir: Path) -> list[str]:
    """MACs per subnetwork (sender, receiver) and, with latency, the P-frame decode breakdown."""
    from mobilecodec.fsutil import atomic_path
    from mobilecodec.plots import plain_text, pyplot

    plt = pyplot()

    if report.get("kind") == "graphs":
        from mobilecodec.runtime.report_npu import write_graph_charts

        return write_graph_charts(report, out_dir)
    written = []
    t6 = report["complexity"]["table6"]
    rows = [r for r in t6["Sender"] if r != "Pframe total"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, side in enumerate(("Sender", "Receiver")):
        ax.barh([i + 0.4 * k for i in range(len(rows))], [t6[side].get(r, {}).get("kmacs_per_px", 0) for r in rows],
                height=0.4, label=side)
    ax.set_yticks([i + 0.2 for i in range(len(rows))], rows)
    ax.set_xlabel("kMACs per luma pixel")
    ax.legend()
    ax.set_title(plain_text(f"MACs per subnetwork ({report['complexity']['config']})"))
    fig.tight_layout()
    with atomic_path(out_dir / "macs_per_subnetwork.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append("macs_per_subnetwork.png")
    lat = report.get("latency")
    if lat:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels: list[str] = []
        colors: dict[str, str] = {}
        for k, (kind, ftype) in enumerate((("encode", "I"), ("encode", "P"), ("decode", "I"), ("decode", "P"))):
            fr = lat["frames"].get(kind, {}).get(ftype)
            if not fr:
                continue
            left = 0.0
            for step, v in fr["steps"].items():
                color = colors.setdefault(step, f"C{len(colors) % 10}")
                ax.barh(k, v["median_ms"], left=left, color=color, label=step if step not in labels else None)
                labels.append(step)
                left += v["median_ms"]
        ax.set_yticks(range(4), ["encode I", "encode P", "decode I", "decode P"])
        ax.set_xlabel("median ms per frame")
        ax.set_title(f"Latency breakdown ({lat['backend']})")
        ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        with atomic_path(out_dir / "latency_breakdown.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append("latency_breakdown.png")
    return written


#: every name `write_report` may write (the charts only where the report has their figures)
REPORT_FILES = ("profile.json", "profile.md", "macs_per_subnetwork.png", "latency_breakdown.png", "macs_per_layer.png")


def write_report(report: dict[str, Any], out_dir: str | Path) -> list[str]:
    """profile.json, profile.md and the PNG charts into `out_dir` (created); returns file names. An
    earlier report's chart this one does not draw is removed: a package's latency chart stayed beside
    the report of a config, which has none (output audit)."""
    from mobilecodec.fsutil import listed_files, publishing, remove_superseded, write_json_atomic

    earlier = listed_files(Path(out_dir) / "profile.json", lambda r: r["files"])
    with publishing(out_dir) as stage:  # all of them or, on failure, none (an earlier run's files stay)
        files = write_charts(report, stage)
        report["files"] = ["profile.json", "profile.md", *files]
        write_json_atomic(stage / "profile.json", report)
        (stage / "profile.md").write_text(to_markdown(report))
    remove_superseded(out_dir, earlier, report["files"], own=lambda f: f in REPORT_FILES)
    return report["files"]
