"""torchvision models as `mobilecodec profile --module` exports them, checked for the QNN HTP: the static
check's issues (`export.npu_check.static_issues`), then, where it finds none, the whole graph quantized
to W8A8 QDQ and compiled on the installed onnxruntime-qnn HTP backend with CPU fallback off.

  python scripts/htp_torchvision.py [--models mobilenet_v3_small,swin_t] [--json out.json]

The default models and sizes are docs/results/complexity.md's "Transformers and untrained models on the
HTP" table (weights=None; 64x64, swin_t and vit_b_16 at 224x224). Exit code 1 where a graph the check
passes does not compile (the check said "ok" of a graph the HTP refuses), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, run_script  # noqa: E402

#: model -> input size (square)
MODELS = {"mobilenet_v3_small": 64, "efficientnet_b0": 64, "convnext_tiny": 64, "swin_t": 224, "vit_b_16": 224}


def check_model(name: str, size: int, work: Path) -> dict[str, Any]:
    """One model's static issues (count and ops) and, where there are none, its HTP compile."""
    import onnx
    import torch
    import torchvision

    from mobilecodec.export.npu_check import check_graph
    from mobilecodec.runtime.profile_any import MODULE_OPSET, mha_fastpath_off, onnx_from_module

    path = work / f"{name}.onnx"
    with mha_fastpath_off():
        proto = onnx_from_module(getattr(torchvision.models, name)(weights=None).eval(),
                                  (torch.rand(1, 3, size, size),), work / f"{name}.export.onnx")
    onnx.save(proto, str(path))
    t0 = time.perf_counter()
    rep = check_graph(path, workdir=work)
    return {"model": name, "size": size, "opset": MODULE_OPSET, "issues": len(rep.issues),
            "issue_ops": sorted({i.op for i in rep.issues}), "compiled": rep.compiled,
            "compile_error": rep.compile_error, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    from mobilecodec.cli.common import choice_list, json_target
    from mobilecodec.progress import progress_bar

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=choice_list(list(MODELS)), default=list(MODELS), metavar="A,B",
                   help=f"torchvision models (default: {','.join(MODELS)})")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the rows as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mobilecodec-htp-tv-") as tmp:
        for name in progress_bar(args.models, desc="models", enabled=not args.no_progress):
            rows.append(check_model(name, MODELS[name], Path(tmp)))
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"{'model':20s} {'size':>5s} {'issues':>6s}  HTP compile (W8A8 QDQ, CPU fallback off)", file=out)
    for r in rows:
        verdict = ("not tried: " + ", ".join(r["issue_ops"]) if r["compiled"] is None else
                   f"compiles ({r['seconds']} s)" if r["compiled"] else "FAILS: " + (r["compile_error"] or "")[:160])
        print(f"{r['model']:20s} {r['size']:5d} {r['issues']:6d}  {verdict}", file=out)
    wrong = [r["model"] for r in rows if r["issues"] == 0 and r["compiled"] is False]
    emit_json({"opset": rows[0]["opset"] if rows else None, "rows": rows, "check_ok_but_fails": wrong}, args.json)
    return 1 if wrong else 0


if __name__ == "__main__":
    run_script(main)
