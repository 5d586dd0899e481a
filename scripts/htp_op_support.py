"""Which ONNX ops the installed onnxruntime-qnn compiles onto the HTP, beside what the static HTP
check (`export.npu_check`, run by `profile`, `export --check` and `compile`) says of the same graph:
one small W8A8 QDQ graph per op (`export.htp_probe`), compiled with CPU fallback disabled.

  python scripts/htp_op_support.py [--ops HardSigmoid,LSTM,rank5] [--json out.json]

Exit code 1 where the static check and the compile disagree, 0 otherwise: after an onnxruntime-qnn upgrade, rerun it and update
`npu_check.HTP_OPS` / `MAX_RANK` from its table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilecodec.cli.common import emit_json, run_script  # noqa: E402


def main() -> int:
    from mobilecodec.export.htp_probe import builders, probe

    from mobilecodec.cli.common import json_target


    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=None, help="comma-separated probes (default: all; op names, Conv3d, rank5, rank6)")
    p.add_argument("--json", type=json_target, metavar="PATH", help="write the table as JSON ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    names = [n for n in args.ops.split(",") if n] if args.ops else list(builders())
    rows = probe(names, progress=not args.no_progress)
    disagree = []
    print(f"{'probe':24s} {'static check':14s} HTP compile (W8A8 QDQ, CPU fallback off)")
    for name, r in rows.items():
        allowed = not r["static"]
        agrees = allowed == r["compiles"]
        r["agrees"] = agrees
        if not agrees:
            disagree.append(name)
        print(f"{name:24s} {'allowed' if allowed else 'refused':14s} "
              f"{'compiles' if r['compiles'] else 'fails: ' + (r['error'] or '')[-80:]}"
              f"{'' if agrees else '   <- DISAGREE'}")
    print(f"{len(rows)} probes, {sum(r['compiles'] for r in rows.values())} compile; "
          f"{len(disagree)} disagree with the static check{': ' + ', '.join(disagree) if disagree else ''}")
    emit_json({"probes": rows, "disagree": disagree}, args.json)
    return 1 if disagree else 0


if __name__ == "__main__":
    run_script(main)
