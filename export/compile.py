"""Compile a package to QNN HTP context binaries: each graph as QDQ int8, then an EPContext ONNX +
`_qnn.bin` per graph and a manifest. The QDQ graph is the package's own when it is an int8
package (aimet encodings, `export --int8`); float graphs get a stand-in calibration by
onnxruntime's static quantizer (labelled so in the manifest)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mobilecodec.export.formats import CONTEXT_FORMAT as FORMAT, MANIFEST
from mobilecodec.export.qnn import Soc
from mobilecodec.progress import progress_bar

RANDOM = "random uniform [0, 1) inputs"  # what the stand-in calibrates a graph on when nothing was recorded
STANDIN = ("stand-in calibration: onnxruntime quantize_static (min/max, uint8 activations, int8 per-channel "
           "weights), not aimet encodings")


def fill_feeds(package: str | Path, feeds: dict[str, list] | None = None) -> dict[str, list]:
    """`feeds` (graph -> recorded inputs, e.g. `mobilecodec.runtime.parity.record_feeds`) completed
    with random inputs for every float graph that has none."""
    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.export.qdq import random_feeds

    man = load_manifest(package)
    out = dict(feeds or {})
    for name, g in man["graphs"].items():
        if name not in out and not g.get("quantization"):
            out[name] = random_feeds(Path(package) / g["file"])
    return out


def compile_package(package: str | Path, out_dir: str | Path, soc: Soc, *, feeds: dict[str, list] | None = None,
                    calibration: str | None = None, frames: int | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Write `<graph>_ctx.onnx` + `<graph>_ctx_qnn.bin` for every graph and `manifest.json` (atomically).
    Float graphs are quantized by the stand-in on `feeds` (recorded inputs, described by `calibration`;
    random inputs where none are given; `frames`: how many frames of `calibration` they come from)."""
    import onnx

    from mobilecodec.fsutil import atomic_dir, file_sha256, write_json_atomic
    from mobilecodec.train.data import is_held_out

    from mobilecodec.export.manifest import load_manifest
    from mobilecodec.export.qdq import quantize_graph
    from mobilecodec.export.qnn import compile_context

    package = Path(package)
    man = load_manifest(package)
    recorded = set(feeds or {})
    feeds = fill_feeds(package, feeds)
    calib = str(calibration) if recorded and calibration else RANDOM
    calib_of = {n: calib if n in recorded else RANDOM for n in feeds}
    graphs: dict[str, Any] = {}
    sdk = None
    bar = progress_bar(total=len(man["graphs"]), desc="compile", unit="graph", leave=False) if progress else None
    with atomic_dir(out_dir, marker=MANIFEST, marker_format=FORMAT) as tmp:
        work = tmp / ".qdq"
        work.mkdir()
        for name, g in man["graphs"].items():
            if g.get("quantization"):
                qdq = package / g["file"]
                source = f"aimet QDQ graph of the package (opset {g['quantization']['opset']})"
            else:
                qdq = quantize_graph(package / g["file"], work / f"{name}.qdq.onnx", feeds[name])
                source = STANDIN + f" on {calib_of[name]}"
            t0 = time.perf_counter()
            files = compile_context(qdq, tmp / f"{name}_ctx.onnx", soc)
            seconds = time.perf_counter() - t0
            ctx = onnx.load(str(tmp / f"{name}_ctx.onnx"))
            for node in ctx.graph.node:
                for a in node.attribute:
                    if a.name == "ep_sdk_version":
                        sdk = a.s.decode()
            graphs[name] = {"context_model": f"{name}_ctx.onnx",
                            "files": [f.name for f in files], "bytes": sum(f.stat().st_size for f in files),
                            # checked where the folder is run (a binary of another compile was taken as is)
                            "sha256": {f.name: file_sha256(f) for f in files},
                            "compile_seconds": round(seconds, 3), "source": g["file"], "source_sha256": g["sha256"],
                            "inputs": g["inputs"], "outputs": g["outputs"], "used_by_codec": g["used_by_codec"],
                            "quantization": source}
            if bar is not None:
                bar.update(1)
        import shutil

        shutil.rmtree(work)
        # where the package was (this folder alone moved), and where it is from here (the pair moved
        # together; a key of its own, so that earlier versions still read "package" as a path)
        rel = os.path.relpath(package.resolve(), Path(out_dir).resolve())
        out = {"format": FORMAT, "version": 1, "package": str(package.resolve()), "package_relative": rel,
               "weights_hash": man["weights_hash"], "config_name": man["config_name"],
               "padded_size": man["padded_size"],
               "soc": {"soc_model": soc.soc_model, "name": soc.name, "htp_arch": soc.htp_arch},
               "qnn_sdk_version": sdk,
               "quantization": _quant_summary(man, graphs, calib),
               "calibration_frames": frames if recorded else None,
               # int8 fitted to the held-out clip, by the stand-in here or by the package's aimet folder,
               # or weights trained on it: its figures on that clip are not held-out ones
               "calibrated_on_held_out": (bool(recorded) and calibration is not None and is_held_out(calibration))
               or bool((man.get("quantization") or {}).get("calibrated_on_held_out")),
               "trained_on_held_out": bool(man.get("trained_on_held_out"))
               or bool((man.get("quantization") or {}).get("trained_on_held_out")),
               "graphs": graphs}
        write_json_atomic(tmp / MANIFEST, out)
    if bar is not None:
        bar.close()
    return out


def _quant_summary(man: dict[str, Any], graphs: dict[str, Any], calib: str) -> dict[str, Any]:
    """Where the int8 numbers of the context binaries come from: aimet (int8 package) and/or the stand-in."""
    standin = sorted(n for n, g in graphs.items() if g["quantization"].startswith("stand-in"))
    on_random = sorted(n for n in standin if graphs[n]["quantization"].endswith(RANDOM))
    aimet = sorted(n for n in graphs if n not in standin)
    q = man.get("quantization") or {}
    return {"source": "aimet" if not standin else ("stand-in calibration" if not aimet else "aimet + stand-in calibration"),
            "aimet_graphs": aimet, "standin_graphs": standin, "standin_on_random_inputs": on_random,
            "standin": STANDIN if standin else None, "calibration": calib if standin else None,
            "quantized_weights_hash": q.get("quantized_weights_hash"), "w8a16_layers": q.get("w8a16_layers", [])}
