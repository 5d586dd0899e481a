"""Post-training quantization (Table 5, stage 3): build the sims, calibrate them over real GOPs,
save encodings per stage and a quantized checkpoint that `load_quantized` rebuilds without
recalibrating.

Folder layout written by `save_quantized(Q, ...)`:
  Q/quantized.pt              {"format": "mobilecodec-quantized", "version": 1, "config", "quant_config",
                               "checkpoint" (path of the float checkpoint), "weights_hash",
                               "float_state" (non-sim state: entropy models, integer hyper-synthesis),
                               "stages" {name: sim.model.state_dict() (weights + encodings)},
                               "frozen_params" {name: ['module.param' whose encoding is frozen (AdaRound)]},
                               "summary"}
  Q/encodings/<stage>.encodings  aimet encodings (0.6.1, torch module names) for export and inspection
  Q/ptq.json                  the summary (calibration settings, PSNR float/int8)
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from mobilecodec.errors import CheckpointError, InputError
from mobilecodec.quant.config import QuantConfig

FORMAT = "mobilecodec-quantized"
VERSION = 1
QUANTIZED_FILE = "quantized.pt"
#: the training state a QAT run folder holds beside its quantized.pt (`quant.qat`): what `qat --resume` reads
QAT_STATE_FILE = "qat_state.pt"


@dataclass
class PTQOptions:
    """Calibration data settings (Table 5 stage 3: batch 2, GOP 3, 256x256 crops, 30 steps)."""

    steps: int = 30
    gop: int = 3
    batch: int = 2
    crop: tuple[int, int] = (256, 256)  # (H, W), multiples of 64
    seed: int = 0
    eval_gops: int = 4  # GOPs (after the calibration ones) used to report float vs int8 PSNR

    def __post_init__(self) -> None:
        for name in ("steps", "gop", "batch"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_calibration_gop(self.gop, "the calibration GOP")
        if self.eval_gops < 0:
            raise InputError(f"eval_gops must be >= 0, got {self.eval_gops}")
        self.crop = tuple(self.crop)


#: frames per calibration GOP at least: an I-frame alone never runs the P-frame stages (their
#: quantizers stay unset), and the motion predictor reads the previous P-frame's flow, which the
#: first P-frame after an I-frame has as zeros: at 2 its flow input was calibrated to a scale of 1e-7
#: and the int8 predictor clipped every real flow to about 0 (export audit, session 39)
MIN_CALIBRATION_GOP = 3


def check_calibration_gop(gop: int, name: str = "--gop") -> None:
    """InputError unless `gop` holds `MIN_CALIBRATION_GOP` frames: an I-frame and two P-frames."""
    if gop < MIN_CALIBRATION_GOP:
        raise InputError(f"{name} must be >= {MIN_CALIBRATION_GOP} (an I-frame and two P-frames: the second is the "
                         f"first whose motion predictor sees a real flow), got {gop}")


def quantize_model(model, qcfg: QuantConfig, gops=None, *, steps: int = 0, batch: int = 1, progress: bool = True):
    """Build the sims for `model` and, when `gops` is given, calibrate them; returns the QuantizedVideoCodec.

    With qcfg.adaround the weights are AdaRounded first on stage inputs captured from `gops` (the
    float codec, `batch` GOPs at a time) and their encodings frozen; `qmodel.adaround_report`
    then says per stage whether AdaRound ran, with how many iterations and seconds."""
    from mobilecodec.progress import progress_bar
    from mobilecodec.quant.calibrate import calibrate
    from mobilecodec.quant.qmodel import QuantizedVideoCodec
    from mobilecodec.quant.sim import build_sims, quantized_stage_names

    report = None
    if qcfg.adaround:
        from mobilecodec.quant.adaround import build_adaround_sims

        sims, report = build_adaround_sims(model, qcfg, gops, batch=batch, progress=progress)
    else:
        names = quantized_stage_names(model, qcfg)
        with progress_bar(total=len(names), desc="build sims", unit="stage", enabled=progress, leave=False) as bar:
            sims = build_sims(model, qcfg, progress=lambda n: bar.update(1))
    qmodel = QuantizedVideoCodec(model, sims, qcfg)
    if report is not None:
        qmodel.__dict__["adaround_report"] = report
    if gops is not None:
        calibrate(qmodel, gops, steps=steps, batch=batch, progress=progress)
    return qmodel


def run_ptq(model, clips: Sequence[str | os.PathLike], qcfg: QuantConfig | None = None,
            opts: PTQOptions | None = None, *, progress: bool = True, allow_held_out: bool = False):
    """PTQ of a float VideoCodec on real clips; returns (QuantizedVideoCodec, summary dict). The
    held-out clip (carphone) is refused unless `allow_held_out`, as by every command that fits
    something to data, and the summary records whether it was used (`calibrated_on_held_out`): as a
    library call it was neither refused nor recorded."""
    from mobilecodec.quant.calibrate import evaluate, load_split
    from mobilecodec.train.data import is_held_out, refuse_held_out

    held_out = [c for c in clips if is_held_out(c)]
    if held_out:
        refuse_held_out(held_out[0], "calibrate on training clips (e.g. bikes, bigbuckbunny) or pass allow_held_out",
                        allow=allow_held_out)
    qcfg = qcfg or QuantConfig()
    opts = opts or PTQOptions()
    if not model.ready_for_coding:
        raise CheckpointError("the float model has no entropy-coding tables (saved before model.update())")
    t0 = time.perf_counter()
    n_cal = opts.steps * opts.batch
    cal, held, distinct = load_split([str(c) for c in clips], opts.gop, opts.crop, n_cal, opts.eval_gops,
                                     seed=opts.seed)
    qmodel = quantize_model(model, qcfg, cal, steps=opts.steps, batch=opts.batch, progress=progress)
    metrics = evaluate(model, qmodel, held) if held is not None else {}
    from mobilecodec.quant.sim import activation_bitwidths

    w8a16 = {n: bw for s, sim in qmodel.sims.items()
             for n, bw in ((f"{s}.{k}", v) for k, v in activation_bitwidths(sim).items()) if max(bw) > 8}
    summary = {"config": model.cfg.name, "quantized_config": qmodel.cfg.name, "clips": [str(Path(c).resolve()) for c in clips],
               "options": asdict(opts), "quant_config": qcfg.to_dict(), "stages": list(qmodel.sims),
               "w8a16_layers": sorted(w8a16), "weights_hash": qmodel.weights_hash().hex(),
               "float_weights_hash": model.weights_hash().hex(), "calibration_gops_distinct": distinct,
               "calibrated_on_held_out": bool(held_out), **metrics,
               **({"adaround": dict(qmodel.adaround_report)} if getattr(qmodel, "adaround_report", None) else {}),
               "seconds": time.perf_counter() - t0}
    return qmodel, summary


def held_out_record(checkpoint_meta: dict | None, calibrated_on_held_out: bool) -> dict[str, bool]:
    """ptq.json's provenance: calibrated on the held-out clip, and the float weights' own record
    (train --allow-held-out); check-int8 and eval flag the held-out clip for either."""
    return {"calibrated_on_held_out": bool(calibrated_on_held_out),
            "trained_on_held_out": bool((checkpoint_meta or {}).get("trained_on_held_out"))}


def check_not_a_qat_run(out_dir: str | os.PathLike) -> None:
    """InputError where a PTQ would replace a QAT run folder (both hold a quantized.pt): `ptq -o` wiped
    one, its resume state with it, without a word (output audit)."""
    out = Path(out_dir)
    if (out / QAT_STATE_FILE).is_file():
        raise InputError(f"output folder {out} holds a QAT run ({QAT_STATE_FILE}: `qat --resume -o {out}` continues "
                         "it); ptq would replace it: name another -o")


def save_quantized(out_dir: str | os.PathLike, qmodel, *, checkpoint: str | os.PathLike | None = None,
                   summary: dict | None = None, summary_name: str = "ptq.json",
                   extra: dict[str, object] | None = None) -> Path:
    """Write Q/quantized.pt, Q/encodings/<stage>.encodings and Q/<summary_name> (the folder appears
    atomically). `extra` maps file names to objects torch.save writes into the same folder (the
    QAT optimizer state), so a checkpoint and its training state are replaced together."""
    from mobilecodec.checkpoint import save_torch_file
    from mobilecodec.fsutil import atomic_dir, write_json_atomic
    from mobilecodec.quant.sim import frozen_param_quantizers, stage_encodings

    out = Path(out_dir)
    if QAT_STATE_FILE not in (extra or {}):  # a PTQ result: never over a QAT run
        check_not_a_qat_run(out)
    obj = {"format": FORMAT, "version": VERSION, "config": qmodel.cfg.replace(name=qmodel.float_config_name).to_dict(),
           "quant_config": qmodel.qcfg.to_dict(),
           "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
           "float_state": qmodel.float_state(),
           "stages": {n: sim.model.state_dict() for n, sim in qmodel.sims.items()},
           "frozen_params": {n: frozen_param_quantizers(sim) for n, sim in qmodel.sims.items()},
           "weights_hash": qmodel.weights_hash().hex(), "summary": dict(summary or {})}
    with atomic_dir(out, marker=QUANTIZED_FILE) as tmp:
        save_torch_file(tmp / QUANTIZED_FILE, obj)
        for name, sim in qmodel.sims.items():
            write_json_atomic(tmp / "encodings" / f"{name}.encodings", stage_encodings(sim))
        if summary is not None:
            write_json_atomic(tmp / summary_name, summary)
        for name, value in (extra or {}).items():
            save_torch_file(tmp / name, value)
    qmodel.__dict__["summary"] = obj["summary"]  # as load_quantized gives it back
    return out


def quantized_file(path: str | os.PathLike) -> Path:
    """The quantized.pt that `path` names: the folder's, or the file itself."""
    p = Path(path)
    return p / QUANTIZED_FILE if p.is_dir() else p


def deployed_beta(qmodel: Any, checkpoint: dict) -> float | None:
    """The beta the int8 weights of `qmodel` were last trained with, which a package deploys (block
    modes are priced at it): QAT's (its summary), else the float `checkpoint`'s (read_checkpoint's dict)."""
    made = (getattr(qmodel, "summary", None) or {}) if qmodel is not None else {}
    return made.get("beta") or checkpoint.get("beta")


def load_quantized(path: str | os.PathLike):
    """Rebuild the QuantizedVideoCodec saved in folder `path` (or its quantized.pt): same sims,
    same weights and encodings, no recalibration. Its weights_hash() equals the saved one."""
    from mobilecodec.checkpoint import checkpoint_config, load_torch_file
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.quant.qmodel import QuantizedVideoCodec
    from mobilecodec.quant.sim import build_sims, freeze_param_quantizers, quiet_aimet

    p = Path(path)
    f = quantized_file(p)
    if not f.is_file():
        raise CheckpointError(f"no quantized checkpoint at {p} (expected {QUANTIZED_FILE} from `mobilecodec ptq`)")
    obj = load_torch_file(f, "quantized checkpoint ")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{f} is not a mobilecodec quantized checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{f} has quantized format version {obj.get('version')}; this build reads {VERSION}")
    lacking = [k for k, kind in (("config", dict), ("quant_config", dict), ("stages", dict), ("float_state", dict),
                                 ("weights_hash", str)) if not isinstance(obj.get(k), kind)]
    if lacking:  # indexed below: an internal KeyError
        raise CheckpointError(f"{f} lacks {', '.join(lacking)}: not a whole quantized checkpoint")
    cfg = checkpoint_config(obj, str(f))
    try:
        qcfg = QuantConfig.from_dict(obj["quant_config"])
    except (TypeError, KeyError, ValueError, InputError) as exc:
        raise CheckpointError(f"{f} records an invalid config: {exc}") from None
    model = VideoCodec(cfg)
    stage_keys = tuple(f"{n}." for n in obj["stages"])
    missing, unexpected = model.load_state_dict(obj["float_state"], strict=False)
    missing = [k for k in missing if not k.startswith(stage_keys)]
    if missing or unexpected:
        raise CheckpointError(f"{f} does not match config {cfg.name!r}: missing {missing[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")
    sims = build_sims(model, qcfg, cle=False)  # CLE already lives in the saved weights
    if set(sims) != set(obj["stages"]):
        raise CheckpointError(f"{f} has stages {sorted(obj['stages'])}, the config gives {sorted(sims)}")
    with quiet_aimet():
        for name, sim in sims.items():
            try:
                sim.model.load_state_dict(obj["stages"][name], strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{f}: stage {name} does not match its sim: {str(exc)[:300]}") from None
            try:  # AdaRound's weight encodings stay frozen (aimet keeps that flag outside the state dict)
                freeze_param_quantizers(sim, (obj.get("frozen_params") or {}).get(name, ()))
            except InputError as exc:
                raise CheckpointError(f"{f}: stage {name}: {exc}") from None
    qmodel = QuantizedVideoCodec(model, sims, qcfg)
    if qmodel.weights_hash().hex() != obj.get("weights_hash"):
        raise CheckpointError(f"{f}: rebuilt quantized model does not reproduce the saved weights hash")
    qmodel.__dict__["summary"] = obj.get("summary", {})
    qmodel.__dict__["float_checkpoint"] = obj.get("checkpoint")
    return qmodel


def check_quantized_from(qmodel, model, where: str) -> None:
    """Refuse an int8 model that was not quantized from the float `model`: another config, other
    host-side state (entropy tables, integer hyper-synthesis: QAT leaves them as PTQ found them),
    or, where the PTQ summary recorded one, another float weights hash. `where` starts each message."""
    import torch

    if qmodel.float_config_name != model.cfg.name or \
            qmodel.cfg.replace(name=model.cfg.name).to_dict() != model.cfg.to_dict():
        mine, theirs = model.cfg.to_dict(), qmodel.cfg.replace(name=model.cfg.name).to_dict()
        if qmodel.float_config_name != model.cfg.name:
            what = f"config {qmodel.float_config_name!r}, not {model.cfg.name!r}"
        else:
            keys = [k for k in mine if mine[k] != theirs.get(k)]
            what = f"config {model.cfg.name!r} with other settings ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"
        raise InputError(f"{where}: quantized from {what}: made from another checkpoint")
    summary = getattr(qmodel, "summary", {}) or {}
    want = summary.get("float_weights_hash")
    if want and want != model.weights_hash().hex():
        raise InputError(f"{where}: quantized from float weights {want[:16]}..., the checkpoint has "
                         f"{model.weights_hash().hex()[:16]}... (weights hash differs: made from another checkpoint)")
    mine = model.state_dict()
    for k, v in qmodel.float_state().items():
        if k in mine and (mine[k].shape != v.shape or not torch.equal(mine[k], v)):
            raise InputError(f"{where}: host-side weights differ from the checkpoint ({k}); "
                             "the int8 folder was made from another checkpoint (weights hash differs)")
