"""int8 PTQ with real aimet on the real carphone clip: calibration, int8 vs float, the int8 stream
round trip, W8A16 overrides and CLI input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mobilecodec.cli import main
from mobilecodec.errors import InputError

CROP = (64, 64)
STEPS, GOP, BATCH = 3, 3, 2
SKIPPED = {"i_hyper_synthesis", "m_hyper_synthesis", "r_hyper_synthesis"}


@pytest.fixture(scope="module")
def midgrey_checkpoint(tmp_path_factory) -> Path:
    """tiny, random weights (seed 0) with the output biases of both syntheses at mid-grey, so
    reconstructions sit inside [0, 1] instead of clamping to black (a float model whose int8
    error is visible)."""
    from mobilecodec.checkpoint import save_checkpoint
    from models_for_tests import random_tiny

    model = random_tiny("low")  # seed 0, I-frame output bias +0.5
    return save_checkpoint(tmp_path_factory.mktemp("qckpt") / "tiny_midgrey.pt", model)


@pytest.fixture(scope="module")
def ptq_dir(tmp_path_factory, midgrey_checkpoint, carphone) -> Path:
    out = tmp_path_factory.mktemp("ptq") / "Q"
    rc = main(["ptq", "--checkpoint", str(midgrey_checkpoint), "--data", str(carphone), "--allow-held-out", "-o", str(out),
               "--steps", str(STEPS), "--gop", str(GOP), "--batch", str(BATCH), "--crop", "64x64",
               "--eval-gops", "2", "--json", str(out.parent / "ptq.json"), "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def qmodel(ptq_dir):
    from mobilecodec.quant.ptq import load_quantized

    return load_quantized(ptq_dir)


def test_ptq_writes_encodings_per_stage(ptq_dir, midgrey_checkpoint):
    from mobilecodec.checkpoint import load_checkpoint

    model, _ = load_checkpoint(midgrey_checkpoint)
    expected = set(model.stages()) - SKIPPED
    files = {p.name.removesuffix(".encodings") for p in (ptq_dir / "encodings").glob("*.encodings")}
    assert files == expected
    assert (ptq_dir / "quantized.pt").is_file()
    enc = json.loads((ptq_dir / "encodings" / "i_analysis.encodings").read_text())
    # per-channel int8 weights: one encoding per output channel of the first conv
    w = enc["param_encodings"]["body.0.weight"]
    assert len(w) == model.i_analysis.body[0].weight.shape[0] == 32
    assert all(e["bitwidth"] == 8 and e["is_symmetric"] == "True" for e in w)
    summary = json.loads((ptq_dir.parent / "ptq.json").read_text())
    assert summary["quantized_config"] == "tiny+int8"
    assert summary["options"]["steps"] == STEPS
    assert summary["calibrated_on_held_out"] is True  # the fixture calibrates on carphone's file


def test_held_out_gops_stay_apart_when_the_clips_run_short(carphone, tmp_path):
    """A 10-frame clip holds five GOPs of 2: asked for 8 calibration and 2 held-out GOPs, the held-out
    two are read once and appear nowhere in the calibration set (which repeats the other three); a
    clip with no GOP left over for calibration is refused in one line."""
    from mobilecodec.io import VideoWriter, read_frames
    from mobilecodec.quant.calibrate import load_split

    short = tmp_path / "short.y4m"
    with VideoWriter(short, 176, 144, 30) as w:
        for f in read_frames(carphone, 10):
            w.write(f)
    cal, held, distinct = load_split([short], 2, CROP, 8, 2, seed=1)
    assert cal.shape[0] == 8 and held.shape[0] == 2 and distinct == 3
    assert not any(torch.equal(h, c) for h in held for c in cal)
    assert len({c.numpy().tobytes() for c in cal}) == 3
    with pytest.raises(InputError, match="hold 5 GOPs of 2 frames: too few to keep 5 apart"):
        load_split([short], 2, CROP, 8, 5)


def test_ptq_says_when_its_calibration_gops_repeat(bikes, tmp_path, capsys):
    """A 9-frame clip holds three GOPs of 3; one is kept for the report, so 30 steps x 2 GOPs calibrate
    on 2 GOPs over and over: ptq.json said so, its line claimed 60 GOPs (found by the quant audit)."""
    from mobilecodec.io import VideoWriter, crop_frame, read_frames

    short = tmp_path / "short.y4m"
    with VideoWriter(short, 176, 144, 30) as w:
        for f in read_frames(bikes, 9):
            w.write(crop_frame(f, 176, 144))
    assert main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", str(short), "-o",
                 str(tmp_path / "Q"), "--crop", "64x64", "--steps", "30", "--batch", "2", "--gop", "3",
                 "--eval-gops", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "30 steps x 2 GOPs of 3 (2 distinct: the clips hold no more GOPs of 3 frames, so they repeat)" in out, out
    assert "10 stages quantized (tiny+int8; W8A8, scheme tf), " in out, out  # and how (W8A16 and CLE said where on)
    assert json.loads((tmp_path / "Q" / "ptq.json").read_text())["calibration_gops_distinct"] == 2


def test_ptq_as_a_library_refuses_the_held_out_clip_and_records_it(carphone, bikes):
    """`run_ptq` took carphone without a word and recorded no provenance (the CLI refused it;
    found by the quant audit): refused unless allowed, and recorded either way."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.ptq import PTQOptions, run_ptq

    model, _ = load_checkpoint("tiny_b0.0064")
    opts = PTQOptions(steps=1, batch=1, gop=3, crop=(64, 64), eval_gops=0)
    with pytest.raises(InputError, match="carphone.y4m is the held-out evaluation clip"):
        run_ptq(model, [bikes, carphone], opts=opts, progress=False)
    _, summary = run_ptq(model, [carphone], opts=opts, progress=False, allow_held_out=True)
    assert summary["calibrated_on_held_out"] is True
    assert run_ptq(model, [bikes], opts=opts, progress=False)[1]["calibrated_on_held_out"] is False


def test_every_calibration_clip_is_calibrated_on_and_none_twice(tmp_path):
    """Three flat clips (Y 40, 120, 200) and 4 GOPs: the GOPs were read clip after clip, two from each
    of the first two, and the third clip was never used though ptq.json listed it. A clip given twice
    (another spelling of the same file) made the GOPs kept apart for evaluation calibration GOPs too."""
    import numpy as np

    from mobilecodec.io import VideoWriter, YUVFrame
    from mobilecodec.quant.calibrate import load_split

    clips = []
    for level, frames in ((40, 8), (120, 8), (200, 8), (60, 2)):
        clips.append(tmp_path / f"flat{level}.y4m")
        with VideoWriter(clips[-1], 64, 64, 30) as w:
            for _ in range(frames):
                w.write(YUVFrame(np.full((64, 64), level, np.uint8), *np.full((2, 32, 32), 128, np.uint8)))
    short = clips.pop()  # one GOP of 2: beside a long clip, the GOPs kept apart for evaluation were the long one's
    with pytest.raises(InputError, match=r"no calibration GOP comes from .*flat40.y4m: its GOPs of 2 frames"):
        load_split([short, clips[0]], 2, (64, 64), 2, 2)
    cal, held, distinct = load_split(clips, 2, (64, 64), 4, 0)
    levels = sorted(round(float(g[0, 0, 0, 0]) * 255) for g in cal)  # packed Y, first sample
    assert levels == [40, 40, 120, 200] and held is None and distinct == 4
    with pytest.raises(InputError, match="2 calibration GOPs cannot take one from each of the 3 clips"):
        load_split(clips, 2, (64, 64), 2, 2)
    with pytest.raises(InputError, match=r"flat40.y4m is given twice \(as .*flat40.y4m before\)"):
        load_split([clips[0], clips[1], tmp_path / "." / "flat40.y4m"], 2, (64, 64), 4, 2)


def test_calibration_sets_input_range_from_real_frames(carphone, midgrey_checkpoint):
    """With `pin_frames=False` the i_analysis input quantizer (min/max scheme) spans exactly the
    calibration I-frames, and other data (the same frames at half contrast) gives other encodings;
    by default every frame quantizer holds [0, 1] at the frame's 1/255 steps whatever the data,
    while the deeper activations follow the data in both."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model
    from mobilecodec.quant.sim import all_frame_quantizers

    model, _ = load_checkpoint(midgrey_checkpoint)
    gops = load_gops([carphone], 2, CROP, 2, seed=5)
    data_max = float(gops[:, 0].max())  # the I-frames the quantizer saw
    assert data_max < 0.99
    for pin in (False, True):
        q1 = quantize_model(model, QuantConfig(pin_frames=pin), gops, steps=1, batch=2, progress=False)
        q2 = quantize_model(model, QuantConfig(pin_frames=pin), gops * 0.5, steps=1, batch=2, progress=False)
        iq1 = q1.sims["i_analysis"].model.get_submodule("body.0").input_quantizers[0]
        iq2 = q2.sims["i_analysis"].model.get_submodule("body.0").input_quantizers[0]
        assert float(iq1.get_min()) == pytest.approx(0.0, abs=1e-6)
        if pin:
            pinned = list(all_frame_quantizers(q2.sims, model.frame_io()).values())
            # i_analysis x, i_synthesis out, m_analysis x + ref, r_analysis x + pred, r_synthesis pred + out
            assert len(pinned) == 8 and iq2 in pinned
            for fq in pinned:
                assert float(fq.get_min()) == 0.0 and float(fq.get_max()) == 1.0
                assert float(fq.get_scale()) == pytest.approx(1 / 255, rel=1e-7) and int(fq.get_offset()) == 0
            levels = torch.arange(256, dtype=torch.float32) / 255  # a uint8 frame passes unchanged
            out = iq1(levels).as_subclass(torch.Tensor).detach()
            assert (out - levels).abs().max() < 1e-6  # code k for level k (half a step is 2e-3)
        else:
            assert float(iq1.get_max()) == pytest.approx(data_max, abs=1e-5)
            assert float(iq2.get_max()) == pytest.approx(data_max * 0.5, abs=1e-5)
        # deeper activations move with the data
        o1 = q1.sims["i_analysis"].model.out.output_quantizers[0]
        o2 = q2.sims["i_analysis"].model.out.output_quantizers[0]
        assert not torch.allclose(o1.get_max(), o2.get_max())


def test_int8_reconstruction_close_to_float(qmodel, midgrey_checkpoint, carphone):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.calibrate import evaluate, load_gops

    model, _ = load_checkpoint(midgrey_checkpoint)
    m = evaluate(model, qmodel, load_gops([carphone], GOP, CROP, 2, seed=11))
    assert 30.0 < m["int8_vs_float_psnr_yuv"] < 90.0  # differs, but by quantization noise only
    assert abs(m["int8_psnr_yuv"] - m["float_psnr_yuv"]) < 1.0


def test_int8_stream_round_trip_is_hash_exact(ptq_dir, qmodel, midgrey_checkpoint, carphone, tmp_path):
    from mobilecodec.bitstream.format import StreamReader
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video, encode_video
    from mobilecodec.errors import BitstreamError
    from mobilecodec.io import open_video
    from mobilecodec.quant.ptq import load_quantized

    stream, out = tmp_path / "q.mnvc", tmp_path / "q.y4m"
    enc = encode_video(qmodel, carphone, stream, intra_period=3, max_frames=4, progress=False)
    decoder = load_quantized(ptq_dir)  # a second, independently rebuilt int8 model
    dec = decode_video(decoder, stream, out, progress=False)
    assert dec["frames"] == 4 and dec["hash_matches"] == 4
    assert [f["hash"] for f in dec["per_frame"]] == [f["hash"] for f in enc["per_frame"]]
    with StreamReader(stream) as r:
        assert r.header.config_id == "tiny+int8"
        assert bytes(r.header.weights_hash) == qmodel.weights_hash()
    with open_video(out) as v:
        assert v.num_frames == 4 and (v.width, v.height) == (176, 144)
    float_model, _ = load_checkpoint(midgrey_checkpoint)
    assert float_model.weights_hash() != qmodel.weights_hash()
    fenc = encode_video(float_model, carphone, tmp_path / "f.mnvc", intra_period=3, max_frames=4, progress=False)
    assert [f["hash"] for f in fenc["per_frame"]] != [f["hash"] for f in enc["per_frame"]]
    with pytest.raises(BitstreamError, match="tiny\\+int8"):
        decode_video(float_model, stream, None, progress=False)


def test_w8a16_override_sets_16_bit_activations(carphone, midgrey_checkpoint, tmp_path):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig, load_layer_overrides
    from mobilecodec.quant.ptq import load_quantized, quantize_model, save_quantized
    from mobilecodec.quant.sim import activation_bitwidths

    spec = tmp_path / "w8a16.json"
    spec.write_text(json.dumps({"w8a16": ["m_synthesis.out", "motion_predictor"]}))
    model, _ = load_checkpoint(midgrey_checkpoint)
    qcfg = QuantConfig(w8a16=load_layer_overrides(spec))
    q = quantize_model(model, qcfg, load_gops([carphone], 2, CROP, 1), steps=1, batch=1, progress=False)
    save_quantized(tmp_path / "Q16", q)
    q = load_quantized(tmp_path / "Q16")
    ms = activation_bitwidths(q.sims["m_synthesis"])
    assert ms["out"] and set(ms["out"]) == {16}
    assert {b for n, bws in ms.items() if n != "out" for b in bws} == {8}
    assert {b for bws in activation_bitwidths(q.sims["motion_predictor"]).values() for b in bws} == {16}
    assert {b for bws in activation_bitwidths(q.sims["r_synthesis"]).values() for b in bws} == {8}
    # 16-bit grid: scale = (max - min) / 65535
    oq = q.sims["m_synthesis"].model.out.output_quantizers[0]
    assert float(oq.get_scale()) == pytest.approx(float(oq.get_max() - oq.get_min()) / 65535, rel=1e-4)
    enc = json.loads((tmp_path / "Q16" / "encodings" / "m_synthesis.encodings").read_text())
    assert enc["activation_encodings"]["out"]["output"]["0"]["bitwidth"] == 16


@pytest.mark.parametrize("layer, needle", [
    ("m_synthesis.nope", "W8A16 override 'm_synthesis.nope': no layer 'nope' in m_synthesis; layers: "),
    # a conv aimet fuses with its ReLU has no activation quantizer: the override set nothing to 16
    # bits and the folder said W8A16 while it was W8A8 (found by the quant audit)
    ("i_analysis.body.2", "W8A16 override 'i_analysis.body.2' selects no layer whose output is quantized; the "
                          "next layer in module order whose output is quantized is i_analysis.body.3"),
    # the first conv's one quantizer is the frame input's: 16 bits there, its output still 8 (review)
    ("i_analysis.body.0", "W8A16 override 'i_analysis.body.0' selects no layer whose output is quantized; the "
                          "next layer in module order whose output is quantized is i_analysis.body.1"),
])
def test_w8a16_override_that_quantizes_nothing_is_an_error(layer, needle, midgrey_checkpoint, carphone, tmp_path,
                                                            capsys):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps([layer]))
    rc = main(["ptq", "--checkpoint", str(midgrey_checkpoint), "--data", str(carphone), "--allow-held-out", "-o", str(tmp_path / "Q"),
               "--crop", "64x64", "--steps", "1", "--no-progress", "--w8a16", str(spec)])
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "Q").exists()


@pytest.mark.parametrize("case, needle", [pytest.param(*p, id=p[0]) for p in [
    ("checkpoint", "no such checkpoint: "),
    ("data", "no such calibration clip: "),
    ("held_out", "carphone.y4m is the held-out evaluation clip; calibrate on training clips"),
    ("crop", "crop size must be a positive multiple of 64 (the codec's padding), got 100x100"),
    ("w8a16_file", "w.json: cannot parse W8A16 overrides: "),
    ("w8a16_empty", "w.json: the W8A16 list is empty; name layers, or leave --w8a16 out for W8A8"),
    # session 40: a byte-order mark was "cannot parse", a file not in UTF-8 a UnicodeDecodeError traceback
    ("w8a16_bom", "w.json: the W8A16 list is empty; name layers, or leave --w8a16 out for W8A8"),
    ("w8a16_latin1", "w.json: cannot parse W8A16 overrides: 'utf-8' codec can't decode byte 0xe9"),
    # both said "no such calibration clip" of something that exists (found by the quant audit)
    ("data_folder", "is a folder: ptq calibrates on video files (.y4m/.mp4/... or a sample name such as bikes)"),
    ("data_stills", "no such calibration clip: stills (the still images are training data of `train` and `qat`; "
                    "ptq calibrates on video files)"),
]])
def test_bad_inputs_exit_2(case, needle, midgrey_checkpoint, carphone, tmp_path, capsys):
    args = {"checkpoint": str(midgrey_checkpoint), "data": str(carphone), "crop": "64x64"}
    extra = ["--allow-held-out"]
    if case == "checkpoint":
        args["checkpoint"] = str(tmp_path / "missing.pt")
    elif case == "data":
        args["data"] = str(tmp_path / "missing.y4m")
    elif case.startswith("data_"):
        (tmp_path / "clips").mkdir()
        args["data"] = str(tmp_path / "clips") if case == "data_folder" else "stills"
    elif case == "crop":
        args["crop"] = "100x100"
    elif case == "held_out":
        extra = []  # carphone without --allow-held-out
    else:  # an empty list made plain W8A8 without a word
        text = "{not json" if case == "w8a16_file" else '{"w8a16": []}' if case != "w8a16_latin1" else '["caf\u00e9"]'
        (tmp_path / "w.json").write_bytes(("\ufeff" if case == "w8a16_bom" else "").encode()
                                          + text.encode("latin-1" if case == "w8a16_latin1" else "utf-8"))
        extra += ["--w8a16", str(tmp_path / "w.json")]
    rc = main(["ptq", "--checkpoint", args["checkpoint"], "--data", args["data"], "-o", str(tmp_path / "Q"),
               "--crop", args["crop"], "--steps", "1", "--no-progress", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilecodec ptq: error: ") and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    if case == "held_out":
        assert "--allow-held-out" in err
    assert not (tmp_path / "Q").exists()


# --- QAT (Table 5, stage 4) ----------------------------------------------------------------

BETA = 0.0016


def _quantizer_values(q) -> dict[str, torch.Tensor]:
    from mobilecodec.quant.qat import quantizer_parameters  # noqa: F401 - same selection rule as below

    return {f"{s}.{n}": p.detach().clone() for s, sim in q.sims.items()
            for n, p in sim.model.named_parameters() if "_quantizers." in n}


def _weight_values(q) -> dict[str, torch.Tensor]:
    return {f"{s}.{n}": p.detach().clone() for s, sim in q.sims.items()
            for n, p in sim.model.named_parameters() if "_quantizers." not in n}


def test_qat_steps_lower_the_loss_on_a_fixed_batch(ptq_dir, carphone):
    """Three STE steps on one fixed GOP lower its (deterministic, eval-mode) loss; without range
    learning the PTQ encodings stay exactly as they were while the weights move."""
    from mobilecodec.train.losses import GopLoss, evaluate_gop
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.quant.qat import QATOptions, qat_step, set_trainable

    torch.manual_seed(0)
    q = load_quantized(ptq_dir)
    frames = load_gops([carphone], 2, CROP, 1, seed=3).transpose(0, 1).contiguous()  # (G, N, 6, h, w)
    stage = QATOptions(gop=2, batch=1, crop=CROP, lr=1e-3, beta=BETA).stage()
    enc0, w0 = _quantizer_values(q), _weight_values(q)
    before = evaluate_gop(q, frames, BETA, stage)["loss"]
    params = set_trainable(q, range_learning=False)
    opt = torch.optim.Adam(params, lr=1e-3)
    loss_fn = GopLoss(q, BETA, stage)
    q.train()
    for s in range(3):
        torch.manual_seed(s)
        qat_step(q, loss_fn, opt, params, frames, 1e-3, 1.0)
    after = evaluate_gop(q, frames, BETA, stage)["loss"]
    assert after < 0.97 * before
    enc1, w1 = _quantizer_values(q), _weight_values(q)
    assert all(torch.equal(enc0[k], enc1[k]) for k in enc0)
    assert sum(not torch.equal(w0[k], w1[k]) for k in w0) > len(w0) // 2
    # entropy models and the host hyper-synthesis are frozen (their integer tables stay valid)
    assert not any(p.requires_grad for n, p in q.named_parameters() if "hyper_synthesis" in n or "prior" in n)


def test_cosine_lr_schedule():
    from mobilecodec.quant.qat import cosine_lr

    assert cosine_lr(1, 5, 5e-7, 1e-9) == pytest.approx(5e-7)
    assert cosine_lr(5, 5, 5e-7, 1e-9) == pytest.approx(1e-9)
    assert cosine_lr(3, 5, 5e-7, 1e-9) == pytest.approx((5e-7 + 1e-9) / 2)  # cos(pi/2) = 0


def _qat(ptq_dir, out, *extra, gop: int = 2):
    """QAT trains: on bikes (8 frames), never on the held-out carphone."""
    return main(["qat", "--checkpoint", str(ptq_dir), "--data", "bikes", "--max-frames", "8", "-o", str(out), "--gop",
                 str(gop), "--batch", "1", "--crop", "64x64", "--lr", "1e-3", "--beta", str(BETA), "--no-progress", *extra])


def test_qat_refuses_a_gop_of_one_frame(ptq_dir, tmp_path, capsys):
    """GOP 1 trained the three I-frame stages alone, while qat.json counted the P-frame stages'
    parameters as trained (found by the quant audit)."""
    assert _qat(ptq_dir, tmp_path / "q", "--steps", "1", gop=1) == 2
    err = capsys.readouterr().err
    assert err == ("mobilecodec qat: error: --gop must be >= 2 (an I-frame and a P-frame: QAT trains the P-frame "
                   "stages on P-frames), got 1\n"), err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("option,value,words", [
    ("--lr-min", "2", "--lr-min"), ("--crop", "64x96", "--crop"),   # refused by the options' check, named
    ("--lr-min", "nan", "finite"), ("--beta", "inf", "finite"),     # refused while parsing
])
def test_qat_refuses_bad_values_naming_the_option(ptq_dir, tmp_path, capsys, option, value, words):
    """nan / inf trained until the loss diverged (--lr inf ended in a traceback), and the options' check
    named fields (lr_min) rather than options."""
    try:
        rc = _qat(ptq_dir, tmp_path / "q", "--steps", "1", option, value)
    except SystemExit as exc:  # argparse's refusal
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "q").exists()


def test_qat_checkpoint_loads_and_resumes(ptq_dir, midgrey_checkpoint, carphone, tmp_path, capsys):
    """1 step, then --resume to step 2, equals an uninterrupted 2-step run (weights and encodings);
    the output loads with load_quantized and codes a hash-exact stream. Its package prices block
    modes at QAT's beta (it took the float checkpoint's, here none)."""
    from mobilecodec.codec.video import decode_video, encode_video
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.quant.qat import STATE_FILE

    a, b = tmp_path / "A", tmp_path / "B"
    assert _qat(ptq_dir, a, "--steps", "1") == 0
    assert torch.load(a / STATE_FILE, weights_only=True)["step"] == 1
    # the folder's quantized.pt is the same source (it was "--checkpoint differs from the run being resumed")
    assert _qat(ptq_dir / "quantized.pt", a, "--steps", "2", "--resume", "--json", str(tmp_path / "r.json")) == 0
    # another total than the run's changes the learning rate from here on: said (found by the quant audit)
    assert ("warning: --steps 2 is not the run's 1: from step 2 the learning rate follows a cosine schedule of 2 "
            "steps (1e-09 there instead of 0.001)") in capsys.readouterr().err
    resumed = json.loads((tmp_path / "r.json").read_text())
    assert resumed["start_step"] == 1 and resumed["step"] == 2 and [h["step"] for h in resumed["history"]] == [1, 2]
    # what the PTQ folder says of its making stays said: calibrated on carphone, from which float weights
    ptq = json.loads((ptq_dir / "ptq.json").read_text())
    assert ptq["calibrated_on_held_out"] is True
    assert resumed["calibrated_on_held_out"] is True and resumed["trained_on_held_out"] is False
    assert resumed["float_weights_hash"] == ptq["float_weights_hash"]
    # the run's options, input and data are kept: repeating them is fine, another value is refused
    for changed in (("--lr", "2e-3"), ("--data", "bigbuckbunny"), ("--checkpoint", str(ptq_dir.parent)), ("--no-range-learning",)):
        argv = ["qat", "--checkpoint", str(ptq_dir), "--data", "bikes", "--max-frames", "8", "-o", str(a), "--gop", "2",
                "--batch", "1", "--crop", "64x64", "--lr", "1e-3", "--steps", "3", "--resume", "--no-progress"]
        i = argv.index(changed[0]) if changed[0] in argv else len(argv)
        argv[i:i + len(changed)] = changed
        capsys.readouterr()
        assert main(argv) == 2, changed
        err = capsys.readouterr().err  # refused for this reason, not another
        assert changed[0] in err and "differs from the run being resumed" in err, (changed, err)
    assert torch.load(a / STATE_FILE, weights_only=True)["step"] == 2
    # --resume without --steps continues to the run's own target (2, done): it trained towards the
    # default 100,000 steps instead
    capsys.readouterr()
    assert main(["qat", "-o", str(a), "--resume", "--no-progress"]) == 2
    assert "already at step 2" in capsys.readouterr().err
    assert torch.load(a / STATE_FILE, weights_only=True)["step"] == 2
    assert _qat(ptq_dir, b, "--steps", "2") == 0
    qa, qb, q0 = load_quantized(a), load_quantized(b), load_quantized(ptq_dir)
    assert qa.weights_hash() == qb.weights_hash() != q0.weights_hash()
    assert qa.weights_hash().hex() == json.loads((a / "qat.json").read_text())["weights_hash"]
    # range learning (default) moved some encodings away from the PTQ ones, never a frame's [0, 1]
    e0, ea = _quantizer_values(q0), _quantizer_values(qa)
    assert any(not torch.equal(e0[k], ea[k]) for k in e0)
    from mobilecodec.quant.sim import all_frame_quantizers

    for fq in all_frame_quantizers(qa.sims, qa.frame_io()).values():
        assert (float(fq.get_min()), float(fq.get_max())) == (0.0, 1.0)
    assert {p.name for p in (a / "encodings").glob("*.encodings")} == \
        {p.name for p in (ptq_dir / "encodings").glob("*.encodings")}
    enc = encode_video(qa, carphone, tmp_path / "s.mnvc", intra_period=2, max_frames=2, progress=False)
    dec = decode_video(load_quantized(a), tmp_path / "s.mnvc", None, progress=False)
    assert dec["hash_matches"] == enc["frames"] == 2
    from mobilecodec.checkpoint import read_checkpoint

    assert read_checkpoint(midgrey_checkpoint).get("beta") is None
    assert main(["export", "--checkpoint", str(midgrey_checkpoint), "--size", "64x64", "--int8", str(a), "-o",
                 str(tmp_path / "P"), "--no-progress"]) == 0
    assert read_checkpoint(tmp_path / "P" / "checkpoint.pt")["beta"] == BETA
    man = json.loads((tmp_path / "P" / "manifest.json").read_text())
    assert man["quantization"]["qat_beta"] == BETA and man["quantization"]["calibrated_on_held_out"] is True


def test_qat_ste_trains_on_the_coded_rate(ptq_dir, tmp_path):
    """`--ste` steps see the rounded latents the codec codes (the model in eval mode, straight-through
    gradients): the first step's logged rate and distortion are those of the PTQ model in eval mode
    on that step's batch, recomputed here; the uniform-noise step logs another rate."""
    from mobilecodec.quant.ptq import load_quantized
    from mobilecodec.quant.qat import QATOptions, step_seeds
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss, summarize

    noise, ste = tmp_path / "N", tmp_path / "S"
    assert _qat(ptq_dir, noise, "--steps", "1", "--json", str(tmp_path / "n.json")) == 0
    assert _qat(ptq_dir, ste, "--steps", "1", "--ste", "--json", str(tmp_path / "s.json")) == 0
    n, s = (json.loads((tmp_path / f).read_text()) for f in ("n.json", "s.json"))
    assert n["options"]["ste"] is False and s["options"]["ste"] is True
    opts = QATOptions(gop=2, batch=1, crop=(64, 64), beta=BETA)
    rng, torch_seed = step_seeds(0, 1)
    frames = TrainingData(["bikes"], opts.gop, opts.crop, max_frames=8).batch(rng, 1)
    qmodel = load_quantized(ptq_dir).eval()
    torch.manual_seed(torch_seed)
    with torch.no_grad():
        _, stats = GopLoss(qmodel, BETA, opts.stage())(frames)
    want = summarize(stats)
    assert s["history"][0]["bpp"] == pytest.approx(want["bpp"], rel=1e-5)
    assert s["history"][0]["psnr"] == pytest.approx(want["psnr"], abs=1e-4)
    assert n["history"][0]["bpp"] != pytest.approx(want["bpp"], rel=1e-3)
    # independently of the loss code: the rate the STE step logged is what the range coder writes
    # for that batch (whole bytes per frame: 8 bits of slack each). Measured: 0.2181 logged, 0.2188
    # coded (640 + 1,152 bits for the two 64x64 frames).
    from mobilecodec.codec.frame_coding import LatentEncoder, run_iframe, run_pframe

    coded, buf = 0, None
    for t in range(frames.shape[0]):
        src = LatentEncoder(qmodel, frames[t])
        _, buf = run_iframe(qmodel, src) if t == 0 else run_pframe(qmodel, buf, src)
        coded += 8 * len(src.payload())
    pixels = frames.shape[0] * 4 * frames.shape[-2] * frames.shape[-1]  # luma pixels of the GOP
    assert s["history"][0]["bpp"] == pytest.approx(coded / pixels, abs=8 * frames.shape[0] / pixels + 0.01 * coded / pixels)
    # every stage trains, the hyper-analyses too (their rounding passes gradients straight through)
    w0, w1 = _weight_values(load_quantized(ptq_dir)), _weight_values(load_quantized(ste))
    moved = {k.split(".")[0] for k in w0 if not torch.equal(w0[k], w1[k])}
    assert {"i_hyper_analysis", "i_analysis", "r_synthesis"} <= moved, sorted(moved)


def test_ptq_does_not_replace_a_qat_run(ptq_dir, midgrey_checkpoint, tmp_path, capsys):
    """`ptq -o` over a QAT run folder (both hold a quantized.pt) replaced it with exit 0 and its resume
    state was gone: `qat --resume` then said "nothing to resume" (output audit, session 40)."""
    from mobilecodec.quant.ptq import load_quantized, save_quantized
    from mobilecodec.quant.qat import STATE_FILE

    run = tmp_path / "QA"
    assert _qat(ptq_dir, run, "--steps", "1") == 0
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert main(["ptq", "--checkpoint", str(midgrey_checkpoint), "--data", "bikes", "-o", str(run), "--crop", "64x64",
                 "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"output folder {run} holds a QAT run ({STATE_FILE}" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(InputError, match="holds a QAT run"):  # the library call too
        save_quantized(run, load_quantized(ptq_dir), summary={})
    assert sorted(p.name for p in run.iterdir()) == before and STATE_FILE in before


def test_qat_resume_from_python_keeps_the_run_options(ptq_dir, tmp_path):
    """A library caller resumes with `resume_options` (the run's options, its --checkpoint-every kept,
    only the steps new), as the CLI does; options handed to run_qat that differ from the run's are
    refused (they used to be replaced by the run's silently, --checkpoint-every reset to 1000)."""
    from mobilecodec.quant.qat import QATOptions, read_state, resume_options, run_qat

    a = tmp_path / "A"
    assert _qat(ptq_dir, a, "--steps", "1", "--checkpoint-every", "5") == 0
    with pytest.raises(InputError, match="crop differs from the run being resumed"):
        run_qat(None, None, a, QATOptions(steps=2, gop=2, batch=1, lr=1e-3, max_frames=8), resume=True,
                progress=False)  # the default crop 256x256, not the run's 64x64
    with pytest.raises(InputError, match="lr differs"):
        resume_options(a, 2, lr=2e-3)
    opts = resume_options(a, 2, lr=1e-3)
    assert (opts.crop, opts.checkpoint_every, opts.steps, opts.lr) == ((64, 64), 5, 2, 1e-3)
    summary = run_qat(None, None, a, opts, resume=True, progress=False)
    assert (summary["start_step"], summary["step"]) == (1, 2)
    assert read_state(a)["options"]["checkpoint_every"] == 5


def test_qat_into_the_folder_of_its_own_input_file_is_refused(ptq_dir, tmp_path, capsys):
    """`--checkpoint Q/quantized.pt -o Q` replaced the PTQ folder it trained from (its ptq.json went);
    the folder spelling was refused, the file spelling was not."""
    import shutil

    own = tmp_path / "own"
    shutil.copytree(ptq_dir, own)
    before = {p.relative_to(own): p.read_bytes() for p in own.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _qat(own / "quantized.pt", own, "--steps", "1") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds" in err and "checkpoint" in err, err
    assert {p.relative_to(own): p.read_bytes() for p in own.rglob("*") if p.is_file()} == before


def test_qat_resumes_from_another_folder_on_the_data_it_started_with(ptq_dir, bikes, tmp_path, monkeypatch):
    """A run started with relative paths recorded them as typed: resumed from another folder it
    trained on whatever file had that name there, or failed. `--data stills`, which qat's own
    held-out message suggests, was refused."""
    import shutil

    a, b, run = tmp_path / "a", tmp_path / "b", tmp_path / "run"
    a.mkdir()
    b.mkdir()
    shutil.copy(bikes, a / "clip.y4m")
    monkeypatch.chdir(a)
    assert main(["qat", "--checkpoint", str(ptq_dir), "--data", "clip.y4m", "--max-frames", "8", "-o", str(run),
                 "--gop", "2", "--batch", "1", "--crop", "64x64", "--beta", str(BETA), "--steps", "1",
                 "--no-progress"]) == 0
    monkeypatch.chdir(b)
    assert main(["qat", "-o", str(run), "--resume", "--steps", "2", "--no-progress"]) == 0
    summary = json.loads((run / "qat.json").read_text())
    assert summary["step"] == 2 and summary["data"] == [str(a / "clip.y4m")]
    assert main(["qat", "--checkpoint", str(ptq_dir), "--data", "stills", "-o", str(tmp_path / "st"), "--gop", "2",
                 "--batch", "1", "--crop", "64x64", "--beta", str(BETA), "--steps", "1", "--no-progress"]) == 0
    assert json.loads((tmp_path / "st" / "qat.json").read_text())["data"] == ["stills"]
    # a QAT of that QAT on stills still counts clip.y4m as fitted on (its summary kept its own data alone:
    # check-int8 judged it on clip.y4m without a note)
    from mobilecodec.quant.check import ModelPair, fitted_on_inputs
    from mobilecodec.quant.ptq import load_quantized

    assert main(["qat", "--checkpoint", str(run), "--data", "stills", "-o", str(tmp_path / "grand"), "--gop", "2",
                 "--batch", "1", "--crop", "64x64", "--beta", str(BETA), "--steps", "1", "--no-progress"]) == 0
    grand = load_quantized(tmp_path / "grand")
    assert grand.summary["qat_data"] == sorted([str(a / "clip.y4m"), "stills"])
    pair = ModelPair("float.pt", str(tmp_path / "grand"), None, grand, BETA, label="grand")
    assert fitted_on_inputs([pair], [a / "clip.y4m", bikes]) == [{"int8": "grand", "input": str(a / "clip.y4m")}]


@pytest.mark.parametrize("case", ["no_beta", "resume_empty", "crop", "missing_q", "held_out", "held_out_allowed",
                                  "partial_q"])
def test_qat_bad_inputs_exit_2(case, ptq_dir, carphone, tmp_path, capsys):
    out = tmp_path / "Q2"
    if case == "no_beta":  # the mid-grey float checkpoint records no beta
        rc = main(["qat", "--checkpoint", str(ptq_dir), "--data", "bikes", "-o", str(out), "--steps", "1",
                   "--crop", "64x64", "--no-progress"])
    elif case == "resume_empty":
        rc = _qat(ptq_dir, out, "--steps", "1", "--resume")
    elif case == "crop":
        rc = main(["qat", "--checkpoint", str(ptq_dir), "--data", "bikes", "-o", str(out), "--steps", "1",
                   "--crop", "100x100", "--beta", "0.001", "--no-progress"])
    elif case.startswith("held_out"):  # refused as in training; the option the message names exists
        rc = main(["qat", "--checkpoint", str(ptq_dir), "--data", "carphone", "-o", str(out), "--steps", "1",
                   "--beta", "0.001", "--no-progress", "--crop", "64x64" if case == "held_out" else "100x100",
                   *(["--allow-held-out"] if case == "held_out_allowed" else [])])
    elif case == "partial_q":  # a quantized.pt without its float weights: an internal KeyError
        import shutil

        from mobilecodec.checkpoint import load_torch_file, save_torch_file

        shutil.copytree(ptq_dir, tmp_path / "part")
        obj = load_torch_file(tmp_path / "part" / "quantized.pt")
        del obj["float_state"]
        save_torch_file(tmp_path / "part" / "quantized.pt", obj)
        rc = _qat(tmp_path / "part", out, "--steps", "1")
    else:
        rc = _qat(tmp_path / "nope", out, "--steps", "1")
    assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err and len(err.strip().splitlines()) == 1
    assert {"no_beta": "beta", "resume_empty": "resume", "crop": "crop", "missing_q": "nope",
            "held_out": "--allow-held-out", "held_out_allowed": "crop", "partial_q": "lacks float_state"}[case] in err
    assert not out.exists()


def test_receiver_preset_puts_every_decoder_stage_at_16_bits(carphone, midgrey_checkpoint, tmp_path):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.quant.calibrate import load_gops
    from mobilecodec.quant.config import QuantConfig, load_layer_overrides
    from mobilecodec.quant.ptq import quantize_model
    from mobilecodec.quant.sim import activation_bitwidths

    assert load_layer_overrides("receiver") == ("receiver",)
    model, _ = load_checkpoint(midgrey_checkpoint)
    q = quantize_model(model, QuantConfig(w8a16=load_layer_overrides("receiver")), load_gops([carphone], 2, CROP, 1),
                       steps=1, batch=1, progress=False)
    bits = {s: {b for bws in activation_bitwidths(sim).values() for b in bws} for s, sim in q.sims.items()}
    decoder = {"i_synthesis", "motion_predictor", "m_synthesis", "r_synthesis"}  # what the receiver runs
    assert {s for s, b in bits.items() if b == {16}} == decoder
    assert all(b == {8} for s, b in bits.items() if s not in decoder)


def test_ptq_default_crop_fits_the_bundled_clip(tmp_path, capsys):
    """`ptq --data carphone --allow-held-out` with the default crop: 256x256 does not fit 176x144, so
    the crop is clamped to 128x128 and said on stderr; calibrating on the held-out clip is said too,
    and recorded (by name here, by path in the ptq_dir fixture)."""
    out = tmp_path / "q"
    assert main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", "carphone", "-o", str(out), "--steps", "1",
                 "--eval-gops", "0", "--allow-held-out", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "calibration crop 128x128" in err and "no longer held-out" in err
    assert (out / "ptq.json").is_file() and (out / "quantized.pt").is_file()
    assert json.loads((out / "ptq.json").read_text())["calibrated_on_held_out"] is True


def test_ptq_quantizes_a_conditional_residual_coder(carphone, tmp_path):
    """Hybrid buffering (HyTIP): the residual coder also reads the warped frame and features, as a
    third stage input. aimet must trace those stages (torch.fx cannot trace *args), the condition
    must reach the quantized graph, and the int8 codec must code hash-exact."""
    from mobilecodec.codec.video import decode_video, encode_video
    from mobilecodec.quant.calibrate import evaluate, load_gops
    from mobilecodec.quant.config import QuantConfig
    from mobilecodec.quant.ptq import quantize_model
    from models_for_tests import random_tiny

    model = random_tiny("low", buffering="hybrid")
    assert model.cfg.conditional and model.residual_feat_channels > 0
    q = quantize_model(model, QuantConfig(), load_gops([carphone], GOP, CROP, 2, seed=2), steps=2, batch=1,
                       progress=False)
    assert set(q.sims) == set(model.stages()) - SKIPPED
    torch.manual_seed(1)
    r_hat, pred, cond = (torch.rand_like(t) for t in model.example_inputs(64, 64)["r_synthesis"])
    with torch.no_grad():
        with_cond = q.sims["r_synthesis"].model(4 * r_hat - 2, pred, cond)[0]
        without = q.sims["r_synthesis"].model(4 * r_hat - 2, pred, torch.zeros_like(cond))[0]
    assert (with_cond != without).float().mean() > 0.1  # the condition reaches the int8 synthesis
    m = evaluate(model, q, load_gops([carphone], GOP, CROP, 1, seed=11))
    assert 30.0 < m["int8_vs_float_psnr_yuv"] < 90.0, m
    enc = encode_video(q, carphone, tmp_path / "h.mnvc", intra_period=3, max_frames=3, progress=False)
    dec = decode_video(q, tmp_path / "h.mnvc", None, progress=False)
    assert enc["frames"] == 3 and dec["hash_matches"] == 3


def test_ptq_refuses_a_json_that_is_not_an_aimet_config(tmp_path, capsys):
    """A JSON file that is not a quantsim config was accepted by name and failed inside aimet's
    QuantizationSimModel with a 323-line jsonschema traceback; aimet's own import now checks it first."""
    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    assert main(["ptq", "--checkpoint", "tiny_b0.0032", "--data", "bikes", "--aimet-config", str(bad),
                 "-o", str(tmp_path / "q"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an aimet quantsim config" in err and "'defaults'" in err, err
    assert not (tmp_path / "q").exists()


def test_a_running_qat_refuses_a_resume(ptq_dir, tmp_path, capsys):
    """`qat --resume` of a run that is still training read its state and its model at different
    steps in 4 of 13 tries (the running job replaces the folder at every save) and trained on a wrong
    model, both exiting 0: the running job holds the folder, so the resume is refused."""
    from cli_run import running

    from mobilecodec.quant.qat import STATE_FILE

    out = tmp_path / "Q"
    with running("qat", "--checkpoint", ptq_dir, "--data", "bikes", "--max-frames", "8", "-o", out, "--gop", "2",
                 "--batch", "1", "--crop", "64x64", "--lr", "1e-3", "--beta", BETA, "--steps", "100000",
                 "--checkpoint-every", "1", "--no-progress", until=out / STATE_FILE) as proc:
        capsys.readouterr()
        assert main(["qat", "-o", str(out), "--resume", "--steps", "3", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another" in err[0] and f"(pid {proc.pid})" in err[0], err
        # nor does a ptq replace the folder under it (it did, and exited 0; the QAT's next save replaced it back)
        assert main(["ptq", "--checkpoint", "tiny_b0.0064", "--data", "bikes", "--crop", "64x64", "--steps", "1",
                     "--gop", "3", "--batch", "1", "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another" in err[0] and f"(pid {proc.pid})" in err[0], err


def test_a_relative_aimet_config_is_recorded_by_its_full_path(tmp_path, monkeypatch):
    """`ptq --aimet-config my.json` recorded "my.json" as typed: from any other folder the PTQ folder
    no longer loaded ("aimet config 'my.json' is neither an alias ... nor a file")."""
    import shutil

    import aimet_torch.common.quantsim_config.quantsim_config as quantsim_config

    from mobilecodec.quant.ptq import load_quantized

    work = tmp_path / "wd"
    work.mkdir()
    shutil.copyfile(Path(quantsim_config.__file__).parent / quantsim_config._config_file_aliases["htp_v73"],
                    work / "my.json")
    monkeypatch.chdir(work)
    assert main(["ptq", "--checkpoint", "tiny_b0.0032", "--data", "bikes", "--aimet-config", "my.json", "--steps", "1",
                 "--batch", "1", "--gop", "3", "--crop", "64x64", "--eval-gops", "0", "-o", str(tmp_path / "Q"),
                 "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    assert json.loads((tmp_path / "Q" / "ptq.json").read_text())["quant_config"]["aimet_config"] == str(work / "my.json")
    assert load_quantized(tmp_path / "Q").qcfg.aimet_config == str(work / "my.json")
