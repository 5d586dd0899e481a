"""AdaRound in `mobilecodec ptq` with real aimet, on the shipped tiny_b0.0064 checkpoint and real
bikes GOPs: rounding decisions change but stay within one step, the weight encodings are frozen
(also after save/load), held-out stage error is no worse than nearest rounding, the CLI records it."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from mobilecodec.cli import main

CROP = (64, 64)
GOP, BATCH, CAL_STEPS = 3, 2, 4  # 8 calibration GOPs -> 4 captured input batches per I-frame stage
ITERS, ADA_BATCHES = 64, 4
HELD = 4  # held-out GOPs for the stage error comparison


@pytest.fixture(scope="module")
def float_model():
    from mobilecodec.checkpoint import load_checkpoint

    model, _ = load_checkpoint("tiny_b0.0064")
    return model.eval()


@pytest.fixture(scope="module")
def gops(bikes):
    """Calibration and held-out GOPs of bikes, a training clip: the stage errors below are quoted in
    docs/results/int8.md and behind AdaRound staying opt-in, so they must not come from carphone."""
    from mobilecodec.quant.calibrate import load_gops

    return load_gops([bikes], GOP, CROP, CAL_STEPS * BATCH + HELD, seed=2)


@pytest.fixture(scope="module")
def ada_q(float_model, gops):
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model

    qcfg = QuantConfig(adaround=True, adaround_iters=ITERS, adaround_batches=ADA_BATCHES)
    return quantize_model(float_model, qcfg, gops[:CAL_STEPS * BATCH], steps=CAL_STEPS, batch=BATCH, progress=False)


@pytest.fixture(scope="module")
def plain_q(float_model, gops):
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model

    return quantize_model(float_model, QuantConfig(), gops[:CAL_STEPS * BATCH], steps=CAL_STEPS, batch=BATCH,
                          progress=False)


@pytest.fixture(scope="module")
def ada_dir(ada_q, tmp_path_factory):
    from mobilecodec.quant.ptq import save_quantized

    return save_quantized(tmp_path_factory.mktemp("ada") / "Q", ada_q)


def _weight_layers(sim):
    """(module name, quantized module) of every Conv/ConvTranspose/Linear with a weight quantizer."""
    from aimet_torch.nn import BaseQuantizationMixin

    return [(n, m) for n, m in sim.model.named_modules() if isinstance(m, BaseQuantizationMixin)
            and isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
            and m.param_quantizers["weight"] is not None]


def _scale(quantizer, weight):
    """Per-output-channel step, broadcast to the weight's shape."""
    return quantizer.get_scale().detach().expand_as(weight)


def test_adaround_changes_rounding_within_one_step(ada_q, plain_q, float_model):
    report = ada_q.adaround_report
    assert set(report) == set(ada_q.sims)
    assert all(e["adaround"] and e["iterations"] == ITERS and e["layers"] > 0 for e in report.values())
    stages = float_model.stages()
    flipped_layers, total_flipped = 0, 0
    for name, sim in ada_q.sims.items():
        for mod_name, m in _weight_layers(sim):
            w = stages[name].get_submodule(mod_name).weight.detach()  # float weight (no CLE)
            q = m.param_quantizers["weight"]
            s = _scale(q, w)
            # same grid as nearest-rounding PTQ: min/max of the float weights
            plain = plain_q.sims[name].model.get_submodule(mod_name).param_quantizers["weight"]
            assert torch.allclose(q.get_scale(), plain.get_scale(), rtol=1e-6, atol=0)
            with torch.no_grad():
                deq = q(m.weight).as_subclass(torch.Tensor)  # what the sim computes with
            ints = torch.round(deq / s)
            assert torch.allclose(ints * s, deq, rtol=0, atol=1e-6 * float(s.max()))  # on the int8 grid
            assert ints.min() >= -128 and ints.max() <= 127
            nearest = torch.clamp(torch.round(w / s), -128, 127)
            n = int((ints != nearest).sum())
            total_flipped += n
            flipped_layers += n > 0
            assert n < ints.numel() // 2  # a minority of decisions moves
            assert bool(((ints * s - w).abs() <= s * (1 + 1e-4) + 1e-9).all()), f"{name}.{mod_name}"
    assert flipped_layers >= 1 and total_flipped > 0


def _weight_scales(q) -> dict[str, torch.Tensor]:
    return {f"{s}.{n}": m.param_quantizers["weight"].get_scale().detach().clone()
            for s, sim in q.sims.items() for n, m in _weight_layers(sim)}


def test_weight_encodings_stay_frozen_through_calibration(ada_dir, plain_q, gops, tmp_path):
    """calibrate() recomputes every encoding it may; AdaRound's weight encodings must survive it, even
    when the weights themselves change (a loaded copy: the freeze is restored on load)."""
    from mobilecodec.quant.calibrate import calibrate
    from mobilecodec.quant.ptq import load_quantized, save_quantized

    q = load_quantized(ada_dir)
    before = _weight_scales(q)
    act_before = q.sims["i_analysis"].model.out.output_quantizers[0].get_max().clone()
    layer = q.sims["i_synthesis"].model.get_submodule("body.0")
    with torch.no_grad():
        layer.weight.mul_(2.0)
    other = gops[-2:] * 0.5  # one step of 2 GOPs the sims never saw, at half contrast
    calibrate(q, other, steps=1, batch=2, progress=False)
    after = _weight_scales(q)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # calibration did run: the I-frame latent's range follows the half-contrast frames (the frame
    # input itself holds [0, 1] whatever the data: quant.sim.pin_frame_encodings)
    act_after = q.sims["i_analysis"].model.out.output_quantizers[0].get_max()
    assert not torch.allclose(act_before, act_after, rtol=1e-3)

    # control: without AdaRound the same doubling of the weights doubles their scale on calibration
    save_quantized(tmp_path / "P", plain_q)
    p = load_quantized(tmp_path / "P")
    pl = p.sims["i_synthesis"].model.get_submodule("body.0")
    s0 = pl.param_quantizers["weight"].get_scale().detach().clone()
    with torch.no_grad():
        pl.weight.mul_(2.0)
    calibrate(p, other, steps=1, batch=2, progress=False)
    assert torch.allclose(pl.param_quantizers["weight"].get_scale(), 2 * s0, rtol=1e-5)


def _stage_mse(stage, sim, inputs) -> float:
    tot, n = 0.0, 0
    with torch.no_grad():
        for x in inputs:
            f, q = stage(*x), sim.model(*x)
            f, q = (f if isinstance(f, tuple) else (f,)), (q if isinstance(q, tuple) else (q,))
            for a, b in zip(f, q):
                tot += float(((a - b.as_subclass(torch.Tensor)).double() ** 2).sum())
                n += a.numel()
    return tot / n


def test_adaround_stage_error_not_worse_than_nearest(ada_q, plain_q, float_model, gops):
    """On held-out GOPs (stage inputs captured from the float codec), AdaRound's output MSE vs the
    float stages, relative to nearest rounding's, is lower on (geometric) average over the stages
    with activation quantizers removed: the error AdaRound optimizes. For the full W8A8 sims it
    promises nothing: it rounds each layer's weights against float activations. Measured with the
    full sims: geomean 0.94 on the first-generation tiny_b0.0064 (r_synthesis 1.50x), 1.09 on the
    tiny-cpu recipe's (stages 0.55x-2.03x, motion_predictor 2.03x, m_synthesis 1.58x), both on
    carphone GOPs; on bikes GOPs (session 37: a figure behind a choice must not come from the held-out
    clip) 1.368, stages 0.42x-2.24x (r_synthesis 2.24x, m_synthesis 2.18x, m_analysis 2.14x), with
    activation quantizers removed 0.874; the bounds below only say that no stage blows up."""
    from aimet_torch.utils import remove_activation_quantizers

    from mobilecodec.quant.adaround import capture_stage_inputs

    names = list(ada_q.sims)
    held = capture_stage_inputs(float_model, gops[-HELD:], names, 8, batch=2)
    stages = float_model.stages()
    ratios_full, ratios_w = {}, {}
    for n in names:
        assert held[n], n
        ratios_full[n] = _stage_mse(stages[n], ada_q.sims[n], held[n]) / _stage_mse(stages[n], plain_q.sims[n], held[n])
        with contextlib.ExitStack() as stack:
            for q in (ada_q, plain_q):
                stack.enter_context(remove_activation_quantizers(list(q.sims[n].model.modules())))
            ratios_w[n] = (_stage_mse(stages[n], ada_q.sims[n], held[n])
                           / _stage_mse(stages[n], plain_q.sims[n], held[n]))

    def geomean(d: dict) -> float:
        return math.exp(sum(math.log(r) for r in d.values()) / len(d))

    assert geomean(ratios_w) < 0.95, ratios_w  # measured 0.84, then 0.86 (carphone GOPs); 0.874 on bikes
    assert geomean(ratios_full) < 1.6, ratios_full  # measured 0.94, then 1.09 (carphone GOPs); 1.368 on bikes
    assert max(ratios_full.values()) < 3.0 and max(ratios_w.values()) < 3.0, (ratios_full, ratios_w)


def test_adarounded_checkpoint_round_trip(ada_q, ada_dir):
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.quant.sim import frozen_param_quantizers

    q = load_quantized(ada_dir)
    assert q.weights_hash() == ada_q.weights_hash()
    expected = {n: sorted(f"{m}.weight" for m, _ in _weight_layers(sim)) for n, sim in ada_q.sims.items()}
    assert {n: sorted(frozen_param_quantizers(sim)) for n, sim in q.sims.items()} == expected
    assert {n: sorted(frozen_param_quantizers(sim)) for n, sim in ada_q.sims.items()} == expected
    assert q.qcfg.adaround and q.qcfg.adaround_iters == ITERS and q.qcfg.adaround_batches == ADA_BATCHES


def test_cli_adaround_summary_and_int8_export(bikes, tmp_path):
    """`ptq --adaround` records AdaRound per stage in ptq.json; the folder exports as int8 QDQ whose
    weights are AdaRound's: each within one level of the float weight (floor or ceil), and not all
    nearest-rounded (measured: 89 of 819,684 weights moved off the nearest level in 9 of 10 stages after
    2 iterations; 0 without --adaround). Calibrated on bikes, a training clip."""
    import onnx
    from onnx import numpy_helper

    from mobilecodec.checkpoint import load_checkpoint

    out = tmp_path / "Q"
    rc = main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", str(bikes), "-o", str(out), "--crop", "64x64",
               "--steps", "1", "--batch", "1", "--gop", "3", "--eval-gops", "0", "--adaround",
               "--adaround-iters", "2", "--adaround-batches", "1", "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "ptq.json").read_text())
    assert summary["quant_config"]["adaround"] is True and summary["quant_config"]["adaround_iters"] == 2
    assert set(summary["adaround"]) == set(summary["stages"])
    for entry in summary["adaround"].values():
        assert entry["adaround"] is True and entry["iterations"] == 2 and entry["batches"] == 1
        assert entry["seconds"] >= 0
    pkg = tmp_path / "pkg"
    rc = main(["export", "--checkpoint", "tiny_b0.0064", "--int8", str(out), "--size", "64x64", "-o", str(pkg)])
    assert rc == 0
    man = json.loads((pkg / "manifest.json").read_text())
    quantized = {n for n, g in man["graphs"].items() if g.get("quantization")}
    assert set(summary["stages"]) <= quantized
    params = dict(load_checkpoint("tiny_b0.0064")[0].named_parameters())
    moved = 0
    for name in summary["stages"]:
        proto = onnx.load(str(pkg / man["graphs"][name]["file"]))
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        producers = {o: n for n in proto.graph.node for o in n.output}
        for node in (n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")):
            dq = producers[node.input[1]]
            q, scale = inits[dq.input[0]], inits[dq.input[1]]
            assert dq.op_type == "DequantizeLinear" and q.dtype == np.int8, (name, node.name)
            shape = [1] * 4
            shape[0 if node.op_type == "Conv" else 1] = -1
            levels = params[f"{name}.{dq.input[0].removeprefix('stage.').removesuffix('_q')}"].detach().numpy() \
                / scale.reshape(shape)
            assert np.all(np.abs(q - levels) < 1 + 1e-4), (name, node.name)  # floor or ceil
            moved += int((np.clip(np.round(levels), -128, 127) != q).sum())
    assert moved > 0


@pytest.mark.parametrize("flag", ["--adaround-iters", "--adaround-batches"])
def test_adaround_budget_must_be_positive(flag, carphone, tmp_path, capsys):
    rc = main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", str(carphone), "--allow-held-out", "-o", str(tmp_path / "Q"),
               "--crop", "64x64", "--steps", "1", "--no-progress", "--adaround", flag, "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert flag in err and ">= 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "Q").exists()
    # without --adaround the budget means nothing: refused, not silently ignored
    rc = main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", str(carphone), "--allow-held-out", "-o", str(tmp_path / "Q"),
               "--steps", "1", "--no-progress", flag, "5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{flag} applies with --adaround" in err and len(err.strip().splitlines()) == 1


def test_quant_config_rejects_bad_adaround_budget():
    from mobilecodec.errors import InputError
    from mobilecodec.quant.config import QuantConfig

    with pytest.raises(InputError, match="adaround_iters"):
        QuantConfig(adaround=True, adaround_iters=0)
    with pytest.raises(InputError, match="adaround_batches"):
        QuantConfig(adaround_batches=-3)
