"""Complexity (Table 6 layout) and buffer (HyTIP Table 7 layout) of a VideoCodec, counted from
its PyTorch stages. Stages run on the `meta` device: shapes only, so 1080p counts in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mobilecodec.runtime.reference import TABLE6_MOBILENVC, TABLE6_SIZE

DTYPE_BYTES = {"float32": 4, "float16": 2, "int16": 2, "uint16": 2, "int8": 1, "uint8": 1}
# NPU precision -> the type its buffered flow / features are kept at (its activations' size)
PRECISION_BUFFER_DTYPES = {"float": "float16", "w8a8": "int8", "w8a16": "int16"}


@dataclass
class StageCount:
    params: int
    macs: int
    elementwise: int
    resampling: int


@dataclass
class CodecComplexity:
    """Per-stage and per-subnetwork counts for one frame size (MACs over the real luma pixels)."""

    config: str
    height: int
    width: int
    padded: tuple[int, int]
    stages: dict[str, StageCount]
    rows: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # side -> row -> (M params, kMACs/px)
    warp_elements: int = 0  # output elements of the P-frame warp (reported apart from MACs)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "height": self.height, "width": self.width, "padded": list(self.padded),
                "stages": {k: vars(v) for k, v in self.stages.items()},
                "table6": {side: {row: {"params_M": p, "kmacs_per_px": k} for row, (p, k) in rows.items()}
                           for side, rows in self.rows.items()},
                "warp_output_elements": self.warp_elements, "table6_reference": table6_comparison(self)}


def count_codec(model, height: int, width: int) -> CodecComplexity:
    """Count every stage of `model` for an H x W frame (padded to a multiple of 64 as the codec
    does); kMACs/px divides by the real H x W."""
    import copy

    from mobilecodec.io import padded_size
    from mobilecodec.runtime.complexity import count_module

    pw, ph = padded_size(width, height)
    meta = copy.deepcopy(model).to("meta")
    ex = meta.example_inputs(ph, pw)
    stages = {}
    for name, mod in meta.stages().items():
        r = count_module(mod, *(t.to("meta") for t in ex[name]))
        stages[name] = StageCount(r.params, r.macs, r.elementwise_total, r.resampling_total)
    rows = table6_rows(stages, height * width)
    warp = warp_elements(model, ph, pw)
    return CodecComplexity(model.cfg.name, height, width, (ph, pw), stages, rows, warp)


def table6_rows(stages: dict[str, StageCount], pixels: int,
                membership: dict[str, tuple[bool, bool]] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """Sender and receiver rows of Table 6 (M params, kMACs per luma pixel) from per-stage counts
    (PyTorch modules or ONNX graphs alike); stages absent from `stages` are skipped. `membership`
    (stage -> (sender, receiver), e.g. from a package manifest) further restricts each side."""
    from mobilecodec.models.subnetworks import P_FRAME_SUBNETWORKS, SUBNETWORKS

    rows: dict[str, dict[str, tuple[float, float]]] = {"Sender": {}, "Receiver": {}}
    for side_i, side in enumerate(("Sender", "Receiver")):
        tp = tm = 0
        for sub, sides in SUBNETWORKS.items():
            names = [n for n in sides[side_i] if n in stages and (membership is None or membership[n][side_i])]
            if not names:
                continue
            p = sum(stages[n].params for n in names)
            m = sum(stages[n].macs for n in names)
            rows[side][sub] = (p / 1e6, m / pixels / 1e3)
            if sub in P_FRAME_SUBNETWORKS:
                tp, tm = tp + p, tm + m
        rows[side]["Pframe total"] = (tp / 1e6, tm / pixels / 1e3)
    return rows


def warp_elements(model, padded_h: int, padded_w: int) -> int:
    """Output elements of the host warp per P-frame (frame and residual features), apart from MACs."""
    if not model.cfg.uses_motion:
        return 0
    return (6 + model.residual_feat_channels) * (padded_h // 2) * (padded_w // 2)


TABLE6_TOLERANCE = 0.15  # what a reproduction of MobileNVC must come within, per entry


def table6_comparison(c: CodecComplexity, tolerance: float = TABLE6_TOLERANCE) -> dict[str, Any] | None:
    """At Table 6's frame size (1080x1920), each entry against MobileNVC's (the paper's appendix) and
    the largest relative difference; `within` judges it against `tolerance` for the mobilenvc
    config only: another config is another design, compared for reference (None elsewhere)."""
    if (c.height, c.width) != TABLE6_SIZE:
        return None
    rows: dict[str, dict[str, Any]] = {}
    worst = 0.0
    for side, ref_rows in TABLE6_MOBILENVC.items():
        for row, (rp, rk) in ref_rows.items():
            if row not in c.rows.get(side, {}):
                continue
            p, k = c.rows[side][row]
            dp, dk = p / rp - 1, k / rk - 1
            worst = max(worst, abs(dp), abs(dk))
            rows.setdefault(side, {})[row] = {"params_M": rp, "kmacs_per_px": rk, "params_diff": dp, "kmacs_diff": dk}
    judged = c.config.split("+")[0].split("~")[0] == "mobilenvc"
    return {"reference": "MobileNVC, appendix Table 6", "rows": rows, "largest_deviation": worst,
            "tolerance": tolerance, "within": worst <= tolerance if judged else None}


def format_table6(c: CodecComplexity) -> str:
    """The Table 6 layout: params [M] and kMACs/px per subnetwork, with the paper's MobileNVC
    column and the relative difference when the frame size is the table's (1080x1920)."""
    ref = table6_comparison(c)
    head = f"{'':9s} {'subnetwork':15s} {'params [M]':>10s} {'kMACs/px':>9s}"
    if ref:
        head += f" | {'Table 6 params':>14s} {'diff':>7s} {'Table 6 kMACs':>13s} {'diff':>7s}"
    lines = [f"Complexity of '{c.config}' at {c.height}x{c.width} YUV420 (networks padded to "
             f"{c.padded[0]}x{c.padded[1]}; kMACs per real luma pixel)", head, "-" * len(head)]
    for side, rows in c.rows.items():
        for row, (p, k) in rows.items():
            line = f"{side:9s} {row:15s} {p:10.2f} {k:9.2f}"
            r = ref["rows"].get(side, {}).get(row) if ref else None
            if r:
                line += (f" | {r['params_M']:14.2f} {r['params_diff']:+7.1%} {r['kmacs_per_px']:13.2f} "
                         f"{r['kmacs_diff']:+7.1%}")
            lines.append(line)
    if ref and ref["within"] is not None:
        verdict = "within" if ref["within"] else "NOT within"
        lines.append(f"largest deviation from Table 6: {ref['largest_deviation']:.1%} ({verdict} {ref['tolerance']:.0%})")
    elif ref:  # another config than MobileNVC: the table is a reference, not a bar
        lines.append(f"Table 6 columns: MobileNVC's, for reference ('{c.config}' is another design; largest "
                     f"difference {ref['largest_deviation']:.1%})")
    if c.warp_elements:
        lines.append(f"warp (host, not MACs): {c.warp_elements / (c.height * c.width):.2f} output elements per pixel "
                     "per P-frame, block-overlap blends up to 4 bilinear fetches per element")
    return "\n".join(lines)


@dataclass
class BufferReport:
    entries: list[dict[str, Any]]
    full_res_maps: float
    bytes_per_frame: int
    bandwidth_mb_s: float
    fps: float

    def to_dict(self) -> dict[str, Any]:
        return vars(self)


def buffer_report(model, height: int, width: int, fps: float, dtype: str = "float32",
                  frame_dtype: str = "uint8") -> BufferReport:
    """Buffer kept between frames (HyTIP Table 7 layout): entries, size in full-resolution maps,
    bytes per frame at the stored dtype, and bandwidth = (bytes read + bytes written) x fps."""
    from mobilecodec.io import padded_size

    pw, ph = padded_size(width, height)
    entries, total_bytes, maps = [], 0, 0.0
    for e in model.layout:
        _, c, h, w = e.shape(ph, pw)
        dt = frame_dtype if e.name == "frame" else dtype
        nbytes = c * h * w * DTYPE_BYTES[dt]
        entries.append({"name": e.name, "shape": [c, h, w], "dtype": dt, "bytes": nbytes,
                        "full_res_maps": e.full_res_maps})
        total_bytes += nbytes
        maps += e.full_res_maps
    # every buffered tensor is written once and read once per frame
    bandwidth = 2 * total_bytes * fps / 1e6
    return BufferReport(entries, maps, total_bytes, bandwidth, fps)


def format_buffer(b: BufferReport, config: str, height: int, width: int) -> str:
    lines = [f"Buffer of '{config}' at {height}x{width}, {b.fps:g} fps (HyTIP Table 7 layout)",
             f"{'entry':15s} {'shape (C,H,W)':>18s} {'dtype':>8s} {'maps':>7s} {'bytes/frame':>12s}"]
    for e in b.entries:
        shape = "x".join(str(s) for s in e["shape"])
        lines.append(f"{e['name']:15s} {shape:>18s} {e['dtype']:>8s} {e['full_res_maps']:7.3f} {e['bytes']:12d}")
    lines.append(f"{'total':15s} {'':>18s} {'':>8s} {b.full_res_maps:7.3f} {b.bytes_per_frame:12d}")
    lines.append(f"bandwidth (write + read every frame): {b.bandwidth_mb_s:.1f} MB/s")
    return "\n".join(lines)
