"""One checkpoint from two of the same config: the I-frame codec of one, the P-frame networks of
the other, to test how the I-frame's quality against the P-frames' shapes the drift of an intra
period (an encoder-side choice like x264's I/P quantizer offset; streams decode as usual).

  python scripts/mix_checkpoints.py --iframe tiny_b0.0256 --pframe tiny_b0.0064 mix.pt
  mobilecodec eval out/probe_t.y4m --checkpoint mix.pt --intra-period 32 -o ev --json mix.json
  python scripts/drift_probe.py summarize mix.json

Choose between mixes on a training-domain probe (`scripts/drift_probe.py make`), never on carphone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mix_checkpoints(iframe_model, pframe_model):
    """A copy of `pframe_model` whose I-frame networks (every `i_*` stage) are `iframe_model`'s;
    entropy tables and integer hyper-syntheses rebuilt (update())."""
    import copy

    from mobilecodec.errors import InputError

    a, b = iframe_model.cfg.to_dict(), pframe_model.cfg.to_dict()
    if a != b:  # two 'tiny' configs may differ in a field alone: name those
        fields = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        what = (f"{iframe_model.cfg.name!r}, {pframe_model.cfg.name!r}" if "name" in fields
                else f"{iframe_model.cfg.name!r} with other {', '.join(fields)}")
        raise InputError(f"the two checkpoints have different configs ({what}): nothing to mix")
    mixed = copy.deepcopy(pframe_model)
    state = mixed.state_dict()
    taken = {k: v for k, v in iframe_model.state_dict().items() if k.startswith("i_")}
    if not taken:
        raise InputError("the I-frame checkpoint has no i_* networks")
    state.update(taken)
    mixed.load_state_dict(state)
    mixed.update()
    return mixed.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iframe", required=True, help="checkpoint (shipped name or .pt) giving the I-frame codec")
    ap.add_argument("--pframe", required=True, help="checkpoint giving the P-frame networks (and the beta recorded)")
    ap.add_argument("out", type=Path, help="mixed checkpoint to write (.pt)")
    a = ap.parse_args()

    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint

    mi, obj_i = load_checkpoint(a.iframe)  # a missing one: CheckpointError, one line (run_main)
    mp, obj = load_checkpoint(a.pframe)
    mixed = mix_checkpoints(mi, mp)
    held = any((o.get("meta") or {}).get("trained_on_held_out") for o in (obj_i, obj))  # either's exposure stays
    save_checkpoint(a.out, mixed, beta=obj.get("beta"),
                    meta={"mixed": {"iframe": str(a.iframe), "pframe": str(a.pframe)}, "trained_on_held_out": held})
    print(f"wrote {a.out}: I-frame codec of {a.iframe}, P-frame networks of {a.pframe}")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
