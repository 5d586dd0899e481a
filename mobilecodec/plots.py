"""Rate-distortion and per-frame plots of RD result dicts (matplotlib, Agg backend, lazy import)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mobilecodec.errors import InputError

METRIC_LABELS = {
    "psnr_y": "PSNR-Y (dB)", "psnr_u": "PSNR-U (dB)", "psnr_v": "PSNR-V (dB)",
    "psnr_yuv": "PSNR-YUV 6:1:1 (dB)", "psnr_rgb": "PSNR-RGB (dB)", "ms_ssim_rgb": "MS-SSIM-RGB",
    "bits": "bits", "bpp": "bpp",
}


def plain_text(text: Any) -> str:
    """`text` as matplotlib draws it literally: '$' escaped (it starts mathtext, and 'cost_$5_$x.y4m'
    raised a parse error after the whole eval had run), bytes a file name holds that are not UTF-8
    (surrogate escapes, which matplotlib refuses) replaced by U+FFFD, and a leading '_' kept visible
    (a legend leaves out labels that start with one: an input named '_x.y4m' lost its entry)."""
    out = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("$", r"\$")
    return "\u200b" + out if out.startswith("_") else out


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(results: dict[str, Any]) -> str:
    name = str(results.get("codec", "?"))
    if results.get("preset"):
        name += f" ({results['preset']})"
    return name


def _point_label(results: dict[str, Any], point: dict[str, Any]) -> str:
    """'<codec> <point>', without the codec when the point's label already starts with it."""
    codec, label = _label(results), str(point.get("label", ""))
    name = str(results.get("codec", "?"))
    return label if label == name or label.startswith(name + "_") else f"{codec} {label}".strip()


def _save(fig: Any, path: str | os.PathLike) -> None:
    """Save as PNG through a temporary file next to `path` (the format is fixed, not guessed)."""
    from mobilecodec.fsutil import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def rd_plot(results: list[dict[str, Any]], path: str | os.PathLike,
            metric: str | Sequence[str] = "psnr_yuv", title: str | None = None, logx: bool = False) -> Path:
    """Plot metric vs bpp, one curve per result and one subplot per metric; write a PNG to `path`.
    `logx`: bpp on a log axis (curves of very different rates on one plot)."""
    from mobilecodec.rdresults import rd_curve

    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not results or not metrics:
        raise InputError("rd_plot needs at least one result and one metric")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    try:
        labels = []
        names = [_label(res) for res in results]
        if len(set(names)) < len(names):  # e.g. an earlier eval as the anchor: tell the curves apart
            names = [f"{n} ({Path(str(res.get('source', ''))).name or k + 1})" if names.count(n) > 1 else n
                     for k, (n, res) in enumerate(zip(names, results))]
            if len(set(names)) < len(names):
                names = [f"{n} #{k + 1}" for k, n in enumerate(names)]
        for ax, m in zip(axes[0], metrics):
            for res, name in zip(results, names):
                rates, dists = rd_curve(res, m)
                ax.plot(rates, dists, marker="o", label=plain_text(name))
                for p in res["points"]:
                    labels.append(ax.annotate(plain_text(p.get("label", "")), (p["bpp"], p[m]), fontsize=7,
                                              textcoords="offset points", xytext=(4, -8)))
            if logx:
                from matplotlib.ticker import FormatStrFormatter

                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
                ax.tick_params(axis="x", which="minor", labelsize=7)
            if not logx:
                from matplotlib.ticker import MaxNLocator

                ax.xaxis.set_major_locator(MaxNLocator(5))  # bpp labels of 5 digits overprinted at 10 ticks
            ax.set_xlabel("bpp (log scale)" if logx else "bpp")
            ax.set_ylabel(METRIC_LABELS.get(m, m))
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best" if logx else "lower right", fontsize=8)
        if title:
            fig.suptitle(plain_text(title), fontsize=10)
        fig.tight_layout()
        drop_overlapping_labels(fig, labels)
        _save(fig, path)
    finally:
        plt.close(fig)
    return Path(path)


def drop_overlapping_labels(fig: Any, labels: list[Any]) -> list[Any]:
    """Remove each point label that would overprint one kept before it (e.g. a float and an int8
    point at nearly the same rate and quality); the table beside a plot still names every point.
    Returns the labels kept, in order."""
    fig.canvas.draw()  # positions as they will be saved (log axes, tight layout)
    renderer = fig.canvas.get_renderer()
    kept, boxes = [], []
    for label in labels:
        box = label.get_window_extent(renderer)
        if any(box.overlaps(b) for b in boxes):
            label.remove()
        else:
            kept.append(label)
            boxes.append(box)
    return kept


def per_frame_plot(results: list[dict[str, Any]], key: str, path: str | os.PathLike,
                   title: str | None = None) -> Path:
    """Plot per-frame `key` (e.g. 'bits', 'psnr_yuv') against frame index for every RD point."""
    fig = per_frame_figure(results, key, title)
    try:
        _save(fig, path)
    finally:
        pyplot().close(fig)
    return Path(path)


def per_frame_figure(results: list[dict[str, Any]], key: str, title: str | None = None) -> Any:
    """`per_frame_plot`'s figure, laid out (the caller closes it). Its legend lies below the axes: inside,
    five curves' entries covered the last frames of a period, where drift shows (demo audit)."""
    if not results:
        raise InputError("per_frame_plot needs at least one result")
    plt = pyplot()
    n_curves = sum(len(res["points"]) for res in results)
    rows = -(-n_curves // 2)
    fig, ax = plt.subplots(figsize=(8, 3.6 + 0.16 * rows))
    try:
        intra: set[int] = set()
        for res in results:
            for p in res["points"]:
                frames = p.get("per_frame")
                if not frames:
                    raise InputError(f"{_label(res)} point {p.get('label')!r} has no per-frame data")
                if key not in frames[0]:
                    raise InputError(f"per-frame data has no {key!r}")
                ax.plot([f["index"] for f in frames], [f[key] for f in frames], linewidth=1,
                        marker="." if len(frames) <= 32 else None, label=plain_text(_point_label(res, p)))  # 1 frame: a dot
                intra.update(f["index"] for f in frames if f.get("type") == "I")
        for index in sorted(intra):  # where each intra period starts, so its drift reads at a glance
            ax.axvline(index, color="0.6", linewidth=0.8, linestyle=":", zorder=0)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # frame numbers, not fractions
        ax.set_xlabel("frame")
        ax.set_ylabel(METRIC_LABELS.get(key, key))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        if title:
            ax.set_title(plain_text(title), fontsize=10)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig
