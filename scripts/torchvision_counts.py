"""The PyTorch counter of `mobilecodec profile --module` against torchvision's published figures: per
classification model, our MACs and parameters (`runtime.complexity.count_module`, as profile runs it)
beside its weights' `meta["_ops"]` (GMACs: torchvision counts conv / mm / addmm / bmm, as we do) and
`meta["num_params"]`, at the weights' crop size, `weights=None`. On the meta device (default) nothing
is computed, so all of them take a few minutes; `--device cpu` runs real forwards.

  python scripts/torchvision_counts.py [--models resnet18,vit_b_16] [--device meta|cpu] [--json out.json]

Exit code 1 when a model differs beyond 0.5 % (or the 3-decimal rounding of `_ops`), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import choice_list, emit_json  # noqa: E402
from mobilecodec.errors import one_line  # noqa: E402
from mobilecodec.progress import progress_bar  # noqa: E402

# builder arguments the published weights were made with
BUILD_KW: dict[str, dict[str, Any]] = {"vit_h_14": {"image_size": 518},
                                       "googlenet": {"aux_logits": False, "init_weights": False},
                                       "inception_v3": {"init_weights": False}}
TOLERANCE = 0.005  # relative, or the rounding of `_ops` to 3 decimals where that is larger


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model(name: str, device: str) -> dict[str, Any]:
    """Our PyTorch-side MACs and parameters of one torchvision model beside its published figures."""
    import torch
    from torchvision.models import get_model, get_model_weights

    from mobilecodec.runtime.complexity import count_module
    from mobilecodec.runtime.profile_any import mha_fastpath_off
    from mobilecodec.runtime.threads import torch_threads

    weights = get_model_weights(name).DEFAULT
    size = int(weights.transforms().crop_size[0])
    rec: dict[str, Any] = {"model": name, "size": size, "published_gmacs": weights.meta["_ops"],
                           "published_params": weights.meta["num_params"]}
    try:
        with torch.device(device):
            model = get_model(name, weights=None, **BUILD_KW.get(name, {}))
    except Exception:  # noqa: BLE001 - a builder that computes at construction (regnet): build here, move
        model = get_model(name, weights=None, **BUILD_KW.get(name, {})).to(device)
    x = torch.empty(1, 3, size, size, device=device) if device == "meta" else torch.rand(1, 3, size, size)
    with torch_threads(1), mha_fastpath_off(), torch.no_grad():
        counted = count_module(model.eval(), x)
    rec.update(gmacs=counted.macs / 1e9, params=counted.params, not_counted=dict(counted.unrecognized_ops))
    rec["macs_error"] = rec["gmacs"] / rec["published_gmacs"] - 1
    rec["params_error"] = rec["params"] / rec["published_params"] - 1
    tol = max(TOLERANCE, 0.0005 / rec["published_gmacs"])
    rec["ok"] = abs(rec["macs_error"]) <= tol and rec["params"] == rec["published_params"]
    return rec


def main(argv: list[str] | None = None) -> int:
    from mobilecodec.cli.common import json_target

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    names = classification_models()
    ap.add_argument("--models", type=choice_list(names), default=names, metavar="A,B",
                    help="torchvision classification models (default: all)")
    ap.add_argument("--device", choices=("meta", "cpu"), default="meta",
                    help="meta: shapes only, fast (default); cpu: real forwards on random inputs")
    ap.add_argument("--json", type=json_target, metavar="PATH", help="write the rows as JSON ('-' for stdout)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name in progress_bar(args.models, desc="models", enabled=not args.no_progress):
        try:
            rows.append(check_model(name, args.device))
        except Exception as exc:  # noqa: BLE001 - a model that fails is a row, not the end of the run
            rows.append({"model": name, "error": one_line(exc), "ok": False})
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"{'model':22s} {'input':>5s} {'GMACs':>10s} {'published':>10s} {'error':>8s} {'params':>12s} "
          f"{'published':>12s}  ok", file=out)
    for r in rows:
        if "error" in r:
            print(f"{r['model']:22s} failed: {r['error']}", file=out)
            continue
        print(f"{r['model']:22s} {r['size']:5d} {r['gmacs']:10.4f} {r['published_gmacs']:10.3f} "
              f"{100 * r['macs_error']:+7.3f}% {r['params']:12,d} {r['published_params']:12,d}  "
              f"{'yes' if r['ok'] else 'NO'}", file=out)
    bad = [r["model"] for r in rows if not r["ok"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} models match" + (f"; differ: {', '.join(bad)}" if bad else ""),
          file=out)
    emit_json({"device": args.device, "tolerance": TOLERANCE, "rows": rows}, args.json)
    return 1 if bad else 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
