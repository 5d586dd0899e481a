"""Training: data sampling (videos, Vimeo-90K septuplets), losses, the trainer (loss goes down,
exact resume), DistributedDataParallel with two CPU processes, and coding with a trained checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilecodec.cli import main
from mobilecodec.errors import InputError

TRAIN_ARGS = ["--config", "tiny", "--crop", "64x64", "--gop", "2", "--batch-size", "2", "--no-progress"]


def _train(run: Path, *extra: str) -> int:
    return main(["train", "--stage", "1", "--beta", "0.0032", "--data", "bikes", "--max-frames", "8", "-o", str(run),
                 *TRAIN_ARGS, *extra])


def _eval_batch():
    from mobilecodec.train.data import TrainingData

    return TrainingData(["bikes"], 2, (64, 64), max_frames=8).batch(np.random.default_rng(1234), 4)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, carphone) -> Path:
    """60 steps at a high learning rate on 8 frames of bikes (seeded)."""
    run = tmp_path_factory.mktemp("train") / "run"
    assert _train(run, "--steps", "60", "--lr", "1e-3", "--seed", "0", "--checkpoint-every", "20",
                  "--json", str(run.parent / "summary.json")) == 0
    return run


# --- data ----------------------------------------------------------------------------------

def test_rgb_to_yuv420_hand_values():
    from mobilecodec.train.data import rgb_to_yuv420

    rgb = np.zeros((2, 6, 3), dtype=np.uint8)
    rgb[:, 0:2] = 255  # white
    rgb[:, 2:4] = 0  # black
    rgb[:, 4:6] = (255, 0, 0)  # red
    y, u, v = rgb_to_yuv420(rgb)
    # BT.601 limited range: Y = 16 + 219 (.299 R + .587 G + .114 B); Cb = 128 + 224 (B - Y)/1.772;
    # Cr = 128 + 224 (R - Y)/1.402 (R, G, B, Y in [0, 1]). Red: Y = 81.48, Cb = 90.20, Cr = 240.
    assert y.tolist() == [[235, 235, 16, 16, 81, 81]] * 2
    assert u.tolist() == [[128, 128, 90]]
    assert v.tolist() == [[128, 128, 240]]
    # a 2x2 block of two colours: chroma is the block's mean (white 0, 0 and red -0.1687, 0.5 in Cb, Cr:
    # means -0.0844, 0.25 -> 128 + 224 x those = 109.1, 184); each block above is one colour, where the
    # top-left sample passed as well (tests audit)
    mixed = np.array([[[255, 255, 255], [255, 0, 0]], [[255, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    _, u, v = rgb_to_yuv420(mixed)
    assert (u.tolist(), v.tolist()) == ([[109]], [[184]])


def test_rgb_to_yuv420_inverts_yuv_to_rgb(carphone):
    """Round trip through the metrics package's independent YUV->RGB conversion."""
    from mobilecodec.io import open_video
    from mobilecodec.metrics.color import yuv_to_rgb8
    from mobilecodec.train.data import rgb_to_yuv420

    with open_video(carphone) as r:
        frame = next(iter(r))
    # yuv_to_rgb upsamples chroma by repetition, so averaging 2x2 blocks undoes it (up to RGB
    # rounding and clipping).
    y2, u2, v2 = rgb_to_yuv420(yuv_to_rgb8(frame))
    assert y2.shape == frame.y.shape and u2.shape == frame.u.shape
    assert np.abs(y2.astype(int) - frame.y.astype(int)).mean() < 1.0
    assert np.abs(u2.astype(int) - frame.u.astype(int)).mean() < 1.0
    assert np.abs(v2.astype(int) - frame.v.astype(int)).mean() < 1.0


def test_video_sampling_is_cached_and_seeded(carphone):
    from mobilecodec.fsutil import cache_dir
    from mobilecodec.io import open_video
    from mobilecodec.train.data import TrainingData

    data = TrainingData([str(carphone)], 3, (64, 128), allow_held_out=True)  # a small real clip; opt-in
    assert list((cache_dir() / "train_clips").glob("carphone-*/y.u8"))
    y, uv = data.sample(np.random.default_rng(5))
    assert y.shape == (3, 64, 128) and uv.shape == (3, 2, 32, 64) and y.dtype == np.uint8
    y2, _ = data.sample(np.random.default_rng(5))
    assert np.array_equal(y, y2)
    # The crop is a real window of consecutive frames of the clip (found by search).
    with open_video(carphone) as r:
        frames = [f.y for f in r]
    hits = [(t, i, j) for t in range(len(frames) - 2) for i in range(0, 144 - 64 + 1, 2)
            for j in range(0, 176 - 128 + 1, 2) if np.array_equal(frames[t][i:i + 64, j:j + 128], y[0])]
    assert hits, "sampled crop not found in the clip"
    t, i, j = hits[0]
    assert np.array_equal(frames[t + 2][i:i + 64, j:j + 128], y[2])
    batch = data.batch(np.random.default_rng(0), 2)
    assert tuple(batch.shape) == (3, 2, 6, 32, 64) and float(batch.min()) >= 0 and float(batch.max()) <= 1


def test_septuplet_folder(tmp_path, carphone):
    from PIL import Image

    from mobilecodec.io import open_video
    from mobilecodec.metrics.color import yuv_to_rgb8
    from mobilecodec.train.data import TrainingData

    with open_video(carphone, max_frames=7) as r:
        frames = list(r)
    for seq in ("00001/0001", "00001/0002"):
        d = tmp_path / "vimeo" / "sequences" / seq
        d.mkdir(parents=True)
        for k, f in enumerate(frames, start=1):
            Image.fromarray(yuv_to_rgb8(f)).save(d / f"im{k}.png")
    # carphone frames are the held-out clip, so the folder needs the opt-in (the refusal is tested
    # in test_train_data.py)
    data = TrainingData([str(tmp_path / "vimeo")], 7, (128, 128), allow_held_out=True)
    y, uv = data.sample(np.random.default_rng(0))
    assert y.shape == (7, 128, 128) and uv.shape == (7, 2, 64, 64)
    with pytest.raises(InputError, match="shorter than the GOP"):
        TrainingData([str(tmp_path / "vimeo")], 8, (64, 64), allow_held_out=True)


def test_an_unreadable_septuplet_list_is_named(tmp_path, capsys):
    """A sep_trainlist.txt that is not text (UTF-8) was an internal error with a traceback."""
    from PIL import Image

    d = tmp_path / "vimeo" / "sequences" / "00001" / "0001"
    d.mkdir(parents=True)
    for k in range(1, 8):
        Image.fromarray(np.full((64, 64, 3), 30 * k, np.uint8)).save(d / f"im{k}.png")
    (tmp_path / "vimeo" / "sep_trainlist.txt").write_bytes(b"\xff\xfe\x00garbage\n")
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", str(tmp_path / "vimeo"), "-o",
                 str(tmp_path / "r"), "--crop", "64x64", "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sep_trainlist.txt: cannot read the septuplet list" in err[0], err


def test_data_errors(carphone, tmp_path, capsys):
    from mobilecodec.train.data import TrainingData

    with pytest.raises(InputError, match="8 frames, shorter than the GOP of 9"):
        TrainingData(["bikes"], 9, (64, 64), max_frames=8)
    with pytest.raises(InputError, match="smaller than the crop"):
        TrainingData(["bikes"], 2, (320, 64), max_frames=8)
    with pytest.raises(InputError, match="no such training video"):
        TrainingData([str(tmp_path / "missing.y4m")], 2, (64, 64))
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "--max-frames", "8", "-o",
                 str(tmp_path / "r1"), "--crop", "320x64", "--steps", "1"]) == 2
    assert "smaller than the crop" in capsys.readouterr().err
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "-o", str(tmp_path / "r2"),
                 "--crop", "100x64", "--steps", "1"]) == 2
    assert "multiple of 64" in capsys.readouterr().err
    assert main(["train", "-o", str(tmp_path / "r3"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


# --- losses --------------------------------------------------------------------------------

def test_yuv_mse_and_bpp_hand_values():
    from mobilecodec.train.losses import bits_per_pixel, yuv_mse

    x = torch.zeros(1, 6, 2, 2)
    x_hat = x.clone()
    x_hat[:, :4] = 0.1  # Y error 0.1 everywhere -> mse_y = 0.01
    x_hat[:, 4] = 0.2  # U: 0.04
    # V: 0;  (6 * 0.01 + 0.04 + 0) / 8 = 0.0125
    assert float(yuv_mse(x_hat, x)[0]) == pytest.approx(0.0125)
    lik = {"a": torch.full((1, 3, 2, 2), 0.5), "b": torch.full((1, 1, 1, 1), 0.25)}
    # 12 symbols of 1 bit + 1 of 2 bits over a 4x4 luma frame: 14 / 16 bpp
    assert float(bits_per_pixel(lik, 16)[0]) == pytest.approx(14 / 16)


# --- trainer -------------------------------------------------------------------------------

def test_training_lowers_the_loss(trained_run):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.losses import evaluate_gop
    from mobilecodec.train.stages import get_stage

    frames = _eval_batch()
    stage = get_stage(1, gop=2, crop=(64, 64))
    torch.manual_seed(0)
    init = VideoCodec(get_config("tiny"))  # what the run started from (seed 0)
    trained, ckpt = load_checkpoint(trained_run / "final.pt")
    before = evaluate_gop(init, frames, 0.0032, stage)
    after = evaluate_gop(trained, frames, 0.0032, stage)
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["psnr"] > before["psnr"] + 3
    assert ckpt["beta"] == 0.0032 and ckpt["meta"]["step"] == 60 and ckpt["meta"]["stage"] == 1
    assert trained.ready_for_coding
    names = sorted(p.name for p in trained_run.iterdir())
    assert {"checkpoint_000020.pt", "checkpoint_000040.pt", "checkpoint_000060.pt", "last.pt", "final.pt",
            "trainer_state.pt",
            "log.jsonl", "tb"} <= set(names)
    assert list((trained_run / "tb").iterdir())
    summary = json.loads((trained_run.parent / "summary.json").read_text())
    assert summary["step"] == 60 and summary["steps_run"] == 60
    # rates are reported, never judged here (benchmarks measure speed); their definitions are: all 60
    # steps over the run's seconds, and 59 steps over what is left of them after the first step
    assert all(0 < summary[k] < math.inf for k in ("seconds", "steps_per_s", "steps_per_s_after_first"))
    assert summary["steps_per_s"] == pytest.approx(60 / summary["seconds"])
    # (`>=` of 59 / seconds held by construction; a first step's end never taken gave exactly that; tests audit)
    assert 0 < summary["first_step_seconds"] < summary["seconds"]
    assert summary["steps_per_s_after_first"] == pytest.approx(59 / (summary["seconds"] - summary["first_step_seconds"]))
    logged = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [10, 20, 30, 40, 50, 60]


def test_resume_matches_uninterrupted_run(tmp_path):
    """A run stopped at step 3 and resumed to 6 ends with the weights of a straight 6-step run, and
    both summaries report the hash of the final.pt they saved (the checkpoint's coding tables
    included: the training model has none, a resumed one stale ones)."""
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from mobilecodec.train.trainer import read_state

    args = ("--lr", "1e-3", "--seed", "3", "--checkpoint-every", "3")
    assert _train(tmp_path / "a", "--steps", "6", *args, "--json", str(tmp_path / "a.json")) == 0
    assert _train(tmp_path / "b", "--steps", "3", *args) == 0
    assert read_state(tmp_path / "b")["step"] == 3
    # Refuses to overwrite a run, and to resume with different run-defining options.
    assert _train(tmp_path / "b", "--steps", "6", *args) == 2
    assert main(["train", "-o", str(tmp_path / "b"), "--resume", "--beta", "0.5"]) == 2
    assert main(["train", "-o", str(tmp_path / "b"), "--resume", "--steps", "6", "--no-progress",
                 "--json", str(tmp_path / "b.json")]) == 0
    assert read_state(tmp_path / "b")["step"] == 6
    a, ca = load_checkpoint(tmp_path / "a" / "final.pt")
    b, cb = load_checkpoint(tmp_path / "b" / "final.pt")
    mid, _ = load_checkpoint(tmp_path / "b" / "checkpoint_000003.pt")
    assert ca["meta"]["step"] == cb["meta"]["step"] == 6
    assert a.weights_hash() == b.weights_hash()
    assert a.weights_hash() != mid.weights_hash()
    reported = [json.loads((tmp_path / f"{r}.json").read_text())["weights_hash"] for r in "ab"]
    assert reported == [a.weights_hash().hex()] * 2
    # resuming the finished run rewrote every file, final.pt in other bytes: torch named the zip
    # archive inside after the random temporary file; a checkpoint saved twice is now the same bytes
    def files() -> dict:  # bytes and inode: a rewrite (temporary file, then rename) makes a new inode
        return {p.name: (p.read_bytes(), p.stat().st_ino) for p in (tmp_path / "b").glob("*.pt")}

    before = files()
    assert main(["train", "-o", str(tmp_path / "b"), "--resume", "--steps", "6", "--no-progress"]) == 0
    assert files() == before
    for name in ("x.pt", "y.pt"):
        save_checkpoint(tmp_path / name, a, beta=0.0032, meta=ca["meta"])
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()


def _interrupted(run: Path, sig: int, after_step: int, *extra: str) -> subprocess.CompletedProcess:
    """`train` in a child process, sent `sig` once log.jsonl holds step `after_step` (logging every
    step): a Ctrl-C (SIGINT) or a kill (SIGKILL) mid-run."""
    import time

    cmd = [sys.executable, "-m", "mobilecodec", "train", "--stage", "1", "--beta", "0.0032", "--data", "bikes",
           "--max-frames", "8", "-o", str(run), *TRAIN_ARGS, "--steps", "1000", "--log-every", "1",
           "--threads", "1", *extra]
    import signal

    # a shell without job control starts background jobs with SIGINT ignored, and Python then keeps
    # ignoring it (CI in the background saw the child train all 1000 steps): restore the default
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = run / "log.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and any(f'"step": {after_step},' in line for line in log.read_text().splitlines()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tb_steps(run: Path) -> list[int]:
    """The steps of train/loss as TensorBoard reads the run's tb/ folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")]


def test_a_fresh_start_after_a_ctrl_c_begins_new_logs(tmp_path):
    """A run interrupted (Ctrl-C) before its first checkpoint leaves logs but nothing to resume; a new
    run in that folder starts log.jsonl and tb/ afresh instead of appending to the old steps."""
    import signal

    run = tmp_path / "run"
    done = _interrupted(run, signal.SIGINT, 3)
    assert done.returncode != 0 and not (run / "trainer_state.pt").exists()
    assert len((run / "log.jsonl").read_text().splitlines()) >= 3
    assert _train(run, "--steps", "2", "--log-every", "1") == 0
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert _tb_steps(run) == [1, 2]


def test_resume_takes_the_machine_settings_of_its_own_invocation():
    """A run started with --device cuda --data-workers 7 --threads 16 and resumed on a CPU machine
    without them asked for CUDA ("no CUDA device is available") and spawned 7 workers there; the run-
    defining options still come back as saved."""
    from mobilecodec.train.trainer import TrainOptions

    saved = TrainOptions(run_dir="r", data=["bikes"], beta=0.01, seed=5, device="cuda", data_workers=7,
                         threads=16, stop_after_steps=3).to_dict()
    back = TrainOptions.from_dict(saved)
    assert (back.device, back.data_workers, back.threads, back.stop_after_steps) == ("auto", 0, None, None)
    assert (back.data, back.beta, back.seed, back.stage.to_dict()) == (["bikes"], 0.01, 5, saved["stage"])


def test_resume_after_a_kill_drops_the_steps_it_repeats(tmp_path):
    """A run killed between checkpoints resumes from its last one: log.jsonl and TensorBoard hold
    each step once, the steps after the checkpoint as the resumed run logged them."""
    import signal

    from mobilecodec.train.trainer import read_state

    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        _interrupted(run, signal.SIGKILL, 5, "--checkpoint-every", "4")
        saved = read_state(run)["step"]
        logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
        # killed once step 5 was logged: checkpoint 4 (or a later one, when the kill came late on a
        # busy machine), and the steps logged after it to repeat
        assert saved % 4 == 0 and saved >= 4 and max(logged) >= saved, (saved, logged)
        if max(logged) > saved:
            break
        # the kill landed right after a checkpoint: nothing to repeat, nothing tested; kill again
    else:
        pytest.fail("three kills each landed right after a checkpoint: the resume's repeat was never tested")
    end = saved + 3
    assert main(["train", "-o", str(run), "--resume", "--steps", str(end), "--no-progress", "--threads", "1"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, end + 1))
    assert _tb_steps(run) == list(range(1, end + 1))


def test_a_running_run_refuses_a_second_process(tmp_path, capsys):
    """A second `train -o RUN`, fresh or --resume, while RUN trains: both were accepted and the folder
    ended a mix of the two runs (checkpoints of one, final.pt of the other; log steps twice)."""
    from cli_run import running

    from mobilecodec.train.trainer import STATE_FILE

    run = tmp_path / "run"
    with running("train", "--stage", "1", "--beta", "0.0032", "--data", "bikes", "--max-frames", "8", "-o", run,
                 *TRAIN_ARGS, "--steps", "1000", "--log-every", "1", "--checkpoint-every", "1", "--threads", "1",
                 until=run / STATE_FILE) as proc:
        capsys.readouterr()
        for extra in (["--resume"], ["--stage", "1", "--beta", "0.0064", "--data", "bikes", *TRAIN_ARGS]):
            assert main(["train", "-o", str(run), "--steps", "2000", "--no-progress", "--threads", "1", *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"is in use by another training run (pid {proc.pid})" in err[0], err
    # before its first checkpoint: a --resume said "nothing to resume (no trainer_state.pt); start
    # without --resume", and that start was then refused (walk-through audit, session 40)
    early = tmp_path / "early"
    with running("train", "--stage", "1", "--beta", "0.0032", "--data", "bikes", "--max-frames", "8", "-o", early,
                 *TRAIN_ARGS, "--steps", "1000", "--checkpoint-every", "1000", "--threads", "1",
                 until=tmp_path / ".early.lock") as proc:
        capsys.readouterr()
        assert main(["train", "-o", str(early), "--resume", "--no-progress", "--threads", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another training run (pid {proc.pid})" in err[0], err
        assert not (early / STATE_FILE).exists()  # it was the case above


def test_resume_skips_a_torn_last_log_line(tmp_path):
    """A log line cut short (a killed process, a full disk) is dropped on --resume, not a traceback."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "2", "--log-every", "1") == 0
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.01')
    assert main(["train", "-o", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_fresh_run_keeps_a_log_it_did_not_write(tmp_path, capsys):
    """A folder holding someone's own log.jsonl: a fresh run overwrote it with its log; it is refused
    now, while a run interrupted before its first checkpoint (a log, no state) is still replaced."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"my": "experiment notes"}\n')
    assert _train(run, "--steps", "1") == 2
    assert "log.jsonl is not a training log" in capsys.readouterr().err
    assert (run / "log.jsonl").read_text() == '{"my": "experiment notes"}\n'
    (run / "log.jsonl").write_text('{"step": 10, "loss": 0.5}\n{"step": 20, "lo')  # torn by a kill
    assert _train(run, "--steps", "1", "--log-every", "1") == 0
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1]


def test_resume_refuses_fewer_steps_than_the_run_has(tmp_path, capsys):
    """--resume --steps N below the run's step would train nothing and rewrite final.pt: refused."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "2") == 0
    final = (run / "final.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "-o", str(run), "--resume", "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is at step 2, past --steps 1" in err[0]
    assert (run / "final.pt").read_bytes() == final


def test_resume_compares_options_with_the_values_the_run_used(tmp_path, capsys, monkeypatch, bikes):
    """A run started without --motion-hint, --motion-search-radius, --buffering and --warp used the
    config's values (tiny: block_match, 32, explicit, block_overlap): repeating them on --resume is
    accepted, and so is --data naming the same file as the saved sample name; other values are
    refused in one line."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "1", "--threads", "1") == 0
    resume = ["train", "-o", str(run), "--resume", "--steps", "1", "--no-progress", "--threads", "1"]
    same = ["--motion-hint", "block_match", "--motion-search-radius", "32", "--buffering", "explicit",
            "--warp", "block_overlap", "--data", str(bikes)]
    assert main([*resume, *same]) == 0, capsys.readouterr().err
    monkeypatch.chdir(bikes.parent)  # a relative path to the clip the sample name resolves to
    assert main([*resume, "--data", f"./{bikes.name}"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    for option, value, have in (("--motion-hint", "none", "block_match"), ("--motion-search-radius", "16", "32"),
                                ("--buffering", "hybrid", "explicit"), ("--warp", "dense", "block_overlap"),
                                ("--data", "bigbuckbunny", "['bikes']")):
        assert main([*resume, option, value]) == 2, option
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{option} " in err[0] and f"differs from the run being resumed ({have})" in err[0]
    assert main([*resume, "--data", "./bikes"]) == 2  # names no file here, as for a new run
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such training video or folder: ./bikes" in err[0]


def test_a_resume_from_another_folder_reads_the_files_the_run_started_on(tmp_path, capsys, monkeypatch, bikes):
    """--data was recorded as typed: a resume from another folder, where clip.y4m is another clip,
    trained on that one without a word, and repeating --data clip.y4m there compared equal (training
    audit). The run records the file's absolute path; the other clip.y4m is refused as other data."""
    from mobilecodec.io import read_frames, resolve_input, write_video
    from mobilecodec.train.trainer import load_run_options

    for folder, clip in (("a", bikes), ("b", resolve_input("bigbuckbunny"))):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "clip.y4m", read_frames(clip, 8), 30)
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--stage", "1", "--beta", "0.0032", "--data", "clip.y4m", "-o", str(run), *TRAIN_ARGS,
                 "--steps", "1"]) == 0, capsys.readouterr().err
    assert load_run_options(run).data == [str(tmp_path / "a" / "clip.y4m")]
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    resume = ["train", "-o", str(run), "--resume", "--no-progress", "--threads", "1"]
    assert main([*resume, "--steps", "2", "--data", "clip.y4m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data " in err[0] and "differs from the run being resumed" in err[0], err
    (tmp_path / "a" / "clip.y4m").rename(tmp_path / "a" / "gone.y4m")  # the run reads its own file, not b's
    assert main([*resume, "--steps", "2"]) == 2
    assert str(tmp_path / "a" / "clip.y4m") in capsys.readouterr().err


def test_a_run_whose_first_save_was_cut_short_says_what_to_do(tmp_path, capsys):
    """save_run writes the checkpoints, then trainer_state.pt: a first save stopped between them left a
    folder that a fresh run sent to --resume and --resume sent back ("nothing to resume"; training
    audit). Both say what it is and what to do now, in one line."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "1", "--threads", "1") == 0
    (run / "trainer_state.pt").unlink()
    for argv in (["train", "--stage", "1", "--beta", "0.0032", "--data", "bikes", "-o", str(run), *TRAIN_ARGS],
                 ["train", "-o", str(run), "--resume", "--steps", "2", "--no-progress"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds checkpoints but no trainer_state.pt" in err[0], err
        assert f"--init {run / 'last.pt'}" in err[0]


def test_teacher_steps_without_a_flow_teacher_is_refused(tmp_path, capsys):
    """--teacher-steps decays the --flow-teacher weight; without one (not given, or 0, for a new run
    or in the run being resumed) it is refused in one line instead of being ignored."""
    for extra in ([], ["--flow-teacher", "0"]):
        assert _train(tmp_path / "r", "--steps", "1", "--teacher-steps", "5", *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--teacher-steps only applies with --flow-teacher" in err[0], err
        assert not (tmp_path / "r").exists()
    run = tmp_path / "plain"
    assert _train(run, "--steps", "1", "--threads", "1") == 0
    capsys.readouterr()
    assert main(["train", "-o", str(run), "--resume", "--steps", "1", "--teacher-steps", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--teacher-steps only applies with --flow-teacher" in err[0], err
    taught = tmp_path / "taught"
    assert _train(taught, "--steps", "1", "--threads", "1", "--flow-teacher", "0.002", "--teacher-steps", "5") == 0
    from mobilecodec.train.trainer import load_run_options

    assert load_run_options(taught).stage.teacher_steps == 5
    assert main(["train", "-o", str(taught), "--resume", "--steps", "1", "--teacher-steps", "5", "--no-progress",
                 "--threads", "1"]) == 0
    # the rule is the stage's own: a library caller's StageConfig is held to it too (it used to train on)
    from mobilecodec.train.stages import get_stage

    with pytest.raises(InputError, match="--teacher-steps only applies"):
        get_stage(2, teacher_steps=5).validate()
    with pytest.raises(InputError, match="--lr must be a finite number, got nan"):
        get_stage(2, lr=float("nan")).validate()


@pytest.mark.parametrize("option", [("--flow-lambda", "nan"), ("--clip", "nan"), ("--tau", "inf"),
                                    ("--motion-search-radius", "100"),
                                    ("--clip", "-1"), ("--flow-lambda", "-1")])  # named neither before
def test_bad_values_are_refused_before_anything_is_written(tmp_path, capsys, option):
    """A non-finite loss weight or gradient clip, a search radius beyond the 64x64 crop: one line,
    exit 2, no run folder (a seed out of range: tests/test_cli.py, refused by the parser)."""
    run = tmp_path / "run"
    try:
        rc = _train(run, "--steps", "1", *option)
    except SystemExit as exc:  # refused by the parser (inf: positive_float)
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mobilecodec train: error:") and option[0] in err[0], err
    assert not run.exists()


def test_json_among_the_run_files_is_refused(trained_run, tmp_path, capsys):
    """`train ... --json RUN/final.pt` replaced the trained model with the summary (exit 0), and
    `--resume --json RUN/trainer_state.pt` left a run that could not resume: a --json inside the run
    folder must be a .json file, refused before any work; RUN/summary.json is still fine."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "1", "--json", str(run / "final.pt")) == 2
    assert not run.exists()
    state = (trained_run / "trainer_state.pt").read_bytes()
    assert main(["train", "--resume", "-o", str(trained_run), "--steps", "60", "--no-progress",
                 "--json", str(trained_run / "trainer_state.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("inside the run folder" in e and "name a .json file" in e for e in err), err
    assert (trained_run / "trainer_state.pt").read_bytes() == state
    assert _train(run, "--steps", "1", "--json", str(run / "summary.json")) == 0
    assert json.loads((run / "summary.json").read_text())["step"] == 1


def test_p_frame_options_with_a_gop_of_one_are_refused(tmp_path, capsys):
    """--gop 1 trains I-frames alone: --rollout 3 still coded 3 gradient-free P-frames per step for
    nothing (2.8 steps/s against 16), and the P-frame loss options were ignored."""
    run = tmp_path / "run"
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "--crop", "64x64", "--gop", "1",
                 "--steps", "1", "--rollout", "3", "--tau", "1.2", "-o", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rollout, --tau apply to P-frames; --gop 1 trains I-frames alone" in err[0], err
    assert not run.exists()


@pytest.mark.parametrize("extra,words", [
    (["--gop", "1", "--noisy-synthesis", "i", "m", "r"], "--noisy-synthesis m r: P-frame latents; --gop 1"),
    (["--gop", "2", "--tau", "5"], "--tau weights a GOP's P-frames by position; --gop 2 trains one"),
    (["--warp", "none", "--flow-teacher", "0.01", "--flow-lambda", "0.5"],
     "--flow-lambda, --flow-teacher train the motion path; --warp none has none"),
    (["--rollout", "2", "--detach-iframe"], "--detach-iframe changes nothing with --rollout"),
    (["--batch-scale", "1"], "--batch-scale only apply with --recipe NAME"),
])
def test_options_the_loss_would_ignore_are_refused(tmp_path, capsys, extra, words):
    """Each ran with exit 0 and changed nothing (training audit): the m and r latents never run in a
    one-frame GOP, the one P-frame of a GOP of 2 is weighted tau^0, a model without motion has no flow
    to teach, --rollout detaches the buffer at every depth already, and --batch-scale 1 (its default
    value) went unnoticed without --recipe."""
    run = tmp_path / "run"
    assert main(["train", "--stage", "1", "--beta", "0.01", "--data", "bikes", "--crop", "64x64", "--steps", "1",
                 *extra, "-o", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not run.exists()


def test_trained_checkpoint_codes_bit_exactly(trained_run, carphone, tmp_path):
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video, encode_video

    model, _ = load_checkpoint(trained_run / "final.pt")
    enc = encode_video(model, carphone, tmp_path / "c.mnvc", intra_period=2, max_frames=3, progress=False)
    dec = decode_video(model, tmp_path / "c.mnvc", tmp_path / "c.y4m", progress=False)
    assert [f["type"] for f in enc["per_frame"]] == ["I", "P", "I"]
    assert [f["hash"] for f in enc["per_frame"]] == [f["hash"] for f in dec["per_frame"]]
    assert all(f["hash_match"] for f in dec["per_frame"])


def test_ddp_two_cpu_processes(tmp_path, carphone, capsys):
    """torchrun with 2 gloo processes: both ranks end with identical weights, changed by training.
    A resume in one process is refused (it halved the batch, changed the data streams and left the
    rank files naming weights final.pt no longer held, exit 0)."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mobilecodec", "train", "--stage", "1", "--beta", "0.0032", "--data", "bikes",
           "--max-frames", "8", "-o", str(run), "--steps", "3", "--lr", "1e-3", "--device", "cpu", *TRAIN_ARGS]
    cmd[cmd.index("--batch-size") + 1] = "1"
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    h0 = (run / "rank0_weights.txt").read_text().strip()
    h1 = (run / "rank1_weights.txt").read_text().strip()
    torch.manual_seed(0)
    init = VideoCodec(get_config("tiny")).weights_hash().hex()
    assert h0 == h1
    assert h0 != init
    assert h0 == load_checkpoint(run / "final.pt")[0].weights_hash().hex()  # the weights saved
    capsys.readouterr()
    assert main(["train", "--resume", "-o", str(run), "--steps", "5", "--no-progress", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on 2 processes and this resume runs 1" in err[0], err
    assert "torchrun --nproc_per_node 2" in err[0]
    assert h0 == load_checkpoint(run / "final.pt")[0].weights_hash().hex()


def test_rollout_trains_only_the_frames_after_the_gradient_free_ones(carphone):
    """--rollout K (error-propagation-aware training): the first K P-frames run without gradients
    and add no loss; the loss and stats cover the I-frame and the GOP's trained P-frames only,
    and the trained P-frames start from the drifted buffer (so their loss differs from a plain GOP)."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.stages import get_stage

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).eval()  # eval: rounding, no noise -> deterministic
    frames = TrainingData(["bikes"], gop=5, crop=(64, 64), max_frames=8).batch(np.random.default_rng(0), 1, "cpu")
    plain = GopLoss(model, 0.0032, get_stage(2, gop=3, crop=(64, 64), batch_size=1, steps=1))
    rolled = GopLoss(model, 0.0032, get_stage(2, gop=3, crop=(64, 64), batch_size=1, steps=1, rollout=2))
    loss_r, stats_r = rolled(frames)
    loss_p, stats_p = plain(torch.cat([frames[:1], frames[3:]]))  # same frames, no drifted buffer
    assert stats_r.shape[0] == 3 and stats_p.shape[0] == 3
    assert torch.equal(stats_r[0], stats_p[0])  # the I-frame is the same
    assert not torch.equal(stats_r[1:], stats_p[1:])  # P-frames saw the rolled-out buffer
    loss_r.backward()
    assert model.r_synthesis.out.weight.grad is not None and torch.isfinite(loss_r)


def test_p_rate_factor_weights_only_the_p_frame_rates(tmp_path):
    """--p-rate-factor F: a P-frame's loss is D + F*beta*R and the I-frame's D + beta*R, so two
    factors change each P-frame loss by (F1 - F2)*beta*R_P and leave the I-frame's alone; the
    option is stored with the run, and a resume may not change it."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.stages import get_stage
    from mobilecodec.train.trainer import load_run_options

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).eval()
    frames = TrainingData(["bikes"], gop=3, crop=(64, 64), max_frames=8).batch(np.random.default_rng(0), 1, "cpu")
    stage = get_stage(2, gop=3, crop=(64, 64), batch_size=1, steps=1, tau=1.0)
    beta = 0.0032
    with torch.no_grad():
        _, s2 = GopLoss(model, beta, stage)(frames)  # Table 5's default, F = 2
        _, s05 = GopLoss(model, beta, stage.replace(p_rate_factor=0.5))(frames)
    loss, mse, bpp = 0, 1, 2  # STAT_COLUMNS
    assert torch.equal(s2[0], s05[0])
    assert torch.equal(s2[1:, mse], s05[1:, mse]) and torch.equal(s2[1:, bpp], s05[1:, bpp])
    assert bool((s2[1:, bpp] > 0).all())
    torch.testing.assert_close(s2[1:, loss] - s05[1:, loss], 1.5 * beta * s2[1:, bpp], rtol=1e-4, atol=1e-9)

    run = tmp_path / "run"
    assert _train(run, "--steps", "1", "--p-rate-factor", "0.5") == 0
    assert load_run_options(run).stage.p_rate_factor == 0.5
    assert main(["train", "-o", str(run), "--resume", "--p-rate-factor", "1"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "--stage", "1", "--beta", "0.0032", "-o", str(tmp_path / "bad"), "--p-rate-factor", "0"])
    assert exc.value.code == 2


def test_random_rollout_depth_covers_every_chain_position(carphone):
    """--rollout K --rollout-random: each step rolls out a depth drawn from 0..K with the seeded
    torch RNG; the trained P-frames are then the next GOP-1 frames. Each drawn loss equals the
    fixed-depth loss of one depth, the same seed draws the same depth, and different seeds reach
    more than one depth."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.stages import get_stage

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).eval()
    frames = TrainingData(["bikes"], gop=4, crop=(64, 64), max_frames=8).batch(np.random.default_rng(0), 1, "cpu")
    stage = get_stage(2, gop=2, crop=(64, 64), batch_size=1, steps=1)
    with torch.no_grad():
        fixed = [float(GopLoss(model, 0.0032, stage.replace(rollout=d) if d else stage)(frames[:2 + d])[0])
                 for d in range(3)]
        assert len(set(fixed)) == 3  # the depths are distinguishable
        random_stage = stage.replace(rollout=2, rollout_random=True)
        depths = []
        for seed in range(8):
            torch.manual_seed(seed)
            loss = float(GopLoss(model, 0.0032, random_stage)(frames)[0])
            torch.manual_seed(seed)
            assert float(GopLoss(model, 0.0032, random_stage)(frames)[0]) == loss
            assert loss in fixed
            depths.append(fixed.index(loss))
    assert len(set(depths)) > 1, depths
    with pytest.raises(InputError, match="rollout > 0"):
        stage.replace(rollout_random=True)


def test_detach_iframe_keeps_p_frame_gradients_off_the_iframe_codec(carphone):
    """detach_iframe: the I-frame networks' gradient is that of the I-frame loss alone (a GOP of
    2 averages two frame losses, hence the factor 2); without it the P-frame loss reaches them."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.stages import get_stage

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).eval()
    frames = TrainingData(["bikes"], gop=2, crop=(64, 64), max_frames=4).batch(np.random.default_rng(0), 1, "cpu")
    stage = get_stage(2, gop=2, crop=(64, 64), batch_size=1, steps=1)

    def i_grad(st, f):
        model.zero_grad(set_to_none=True)
        GopLoss(model, 0.0032, st)(f)[0].backward()
        return next(model.i_analysis.parameters()).grad.clone()

    alone = i_grad(stage.replace(gop=1), frames[:1])
    detached = i_grad(stage.replace(detach_iframe=True), frames)
    joint = i_grad(stage, frames)
    assert torch.allclose(2 * detached, alone, rtol=1e-4, atol=1e-9)
    assert not torch.allclose(2 * joint, alone, rtol=1e-2, atol=1e-9)


def test_ref_grad_scale_keeps_the_forward_and_bounds_the_gradient():
    """ref_grad_scale: the loss is bit-identical; at 0 the P-frame losses no longer reach the
    I-frame codec (its gradient is the I-frame loss's alone, /G for the GOP mean); below 1 it
    tames the gradient of a 12-frame GOP of the shipped codec (measured 1.85-3 at scale 1,
    128x128; here 64x64)."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss
    from mobilecodec.train.stages import get_stage

    model, _ = load_checkpoint("tiny_b0.0064")
    model.train()
    frames = TrainingData(["bikes"], gop=12, crop=(64, 64), max_frames=16).batch(np.random.default_rng(0), 2, "cpu")
    stage = get_stage(2, gop=12, crop=(64, 64), batch_size=2, steps=1, tau=1.0)

    def run(st, f):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss = GopLoss(model, 0.0064, st)(f)[0]
        loss.backward()
        norm = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None) ** 0.5
        return loss.detach(), next(model.i_analysis.parameters()).grad.clone(), norm

    full_loss, _, full_norm = run(stage, frames)
    damped_loss, _, damped_norm = run(stage.replace(ref_grad_scale=0.35), frames)
    cut_loss, cut_i, _ = run(stage.replace(ref_grad_scale=0.0), frames)
    _, alone_i, _ = run(stage.replace(gop=1), frames[:1])
    assert torch.equal(full_loss, damped_loss) and torch.equal(full_loss, cut_loss)
    assert torch.allclose(12 * cut_i, alone_i, rtol=1e-4, atol=1e-9)
    assert damped_norm < full_norm / 10, (damped_norm, full_norm)
    with pytest.raises(InputError, match="reference gradient scale"):
        stage.replace(ref_grad_scale=1.5)


def test_freeze_and_reinit_from_an_init_checkpoint(trained_run, tmp_path, capsys):
    """--init with --reinit and --freeze: frozen networks end exactly as the init checkpoint had
    them, re-initialised ones start afresh (and train), the rest train; a bad name is one line, exit 2."""
    from mobilecodec.checkpoint import load_checkpoint

    init = trained_run / "final.pt"
    # shell-style patterns: the I-frame codec, and the residual coder's networks this model has (tiny
    # has no r_predictor; docs/results/*.md gave `--freeze i_*`, which was refused)
    frozen = ("i_analysis", "i_synthesis", "i_hyper_analysis", "i_hyper_synthesis", "i_z_prior",
              "r_analysis", "r_synthesis", "r_hyper_analysis", "r_hyper_synthesis", "r_z_prior")
    assert not hasattr(load_checkpoint(init)[0], "r_predictor")
    assert _train(tmp_path / "r", "--steps", "3", "--init", str(init), "--reinit", "m_analysis",
                  "--freeze", "i_*", "r_*", "--flow-teacher", "2e-3", "--noisy-synthesis", "m", "r") == 0
    before = load_checkpoint(init)[0].state_dict()
    after = load_checkpoint(tmp_path / "r" / "final.pt")[0].state_dict()

    def changed(prefix: str) -> bool:
        return any(not torch.equal(before[k], after[k]) for k in before
                   if k.startswith(prefix + ".") and before[k].dtype.is_floating_point)

    assert not any(changed(n) for n in frozen)
    assert changed("m_analysis") and changed("m_synthesis") and changed("m_hyper_analysis")
    # resumed with the networks named otherwise (the names themselves): the same run; other ones: refused
    resume = ["train", "-o", str(tmp_path / "r"), "--resume", "--steps", "4", "--no-progress",
              "--reinit", "m_analysis"]
    assert main([*resume, "--freeze", "r_*"]) == 2 and "--freeze" in capsys.readouterr().err
    assert main([*resume, "--freeze", *frozen]) == 0, capsys.readouterr().err
    capsys.readouterr()  # the noisy latents are a set: `r m` was refused as differing from the run's `m r`
    assert main([*resume, "--noisy-synthesis", "r", "m", "m"]) == 0, capsys.readouterr().err
    assert main([*resume, "--noisy-synthesis", "m"]) == 2 and "--noisy-synthesis" in capsys.readouterr().err
    assert _train(tmp_path / "bad", "--steps", "1", "--init", str(init), "--freeze", "i_nothing") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mobilecodec train: error: cannot freeze 'i_nothing'; networks: i_analysis")
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    # freezing all that the stage trains was a traceback after the run folder was made
    for gop, frozen, extra in (("1", "i_*", []), ("2", "*", [])):  # --gop 1 --rollout 1: refused before
        capsys.readouterr()
        assert main(["train", "--stage", "1", "--beta", "0.0032", "--data", "bikes", "--max-frames", "8", "--config",
                     "tiny", "--crop", "64x64", "--gop", gop, "--batch-size", "2", "--no-progress", "--steps", "1",
                     "--freeze", frozen, *extra, "-o", str(tmp_path / "none")]) == 2, (gop, frozen, extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nothing to train" in err[0] and "Traceback" not in err[0], err
        assert not (tmp_path / "none").exists()


def test_residual_conditioning_conversion_codes_the_same_stream(carphone, tmp_path):
    """scripts/add_residual_conditioning.py: the converted checkpoint conditions its residual coder
    on the warped frame with exactly zero weights on those inputs, so its residual stages compute
    what the original's do up to float summation order (wider convolutions may sum in another order
    on another CPU, so no byte equality is claimed for P-frames) and it codes the same I-frame and
    P-frames of nearly the same size; converting it again is refused with a one-line error. A source
    that saw the held-out clip passes the record on (the converted file said nothing, and `train --init`
    from it then neither)."""
    import torch

    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from mobilecodec.codec.video import encode_video
    from mobilecodec.models.yuv import read_packed_frames

    script = Path(__file__).resolve().parents[1] / "scripts" / "add_residual_conditioning.py"
    orig, obj = load_checkpoint("tiny_b0.0064")
    held = save_checkpoint(tmp_path / "held.pt", orig, beta=obj["beta"], meta={"trained_on_held_out": True})
    out = tmp_path / "cond.pt"
    proc = subprocess.run([sys.executable, str(script), str(held), str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cond, cobj = load_checkpoint(out)
    assert cobj["meta"]["trained_on_held_out"] is True and cobj["beta"] == obj["beta"]
    assert cond.cfg.conditional and not orig.cfg.conditional
    feats = orig.r_synthesis.out.weight.shape[1]
    assert cond.r_synthesis.out.weight.shape[1] == feats + 6
    assert not cond.r_synthesis.out.weight[:, feats:].any()
    assert not cond.r_analysis.body[0].weight[:, 6:].any()
    pred, x = read_packed_frames(carphone, 2)  # carphone frames 0 and 1, padded
    with torch.no_grad():
        lat = orig.r_analysis(x, pred)
        torch.testing.assert_close(cond.r_analysis(x, pred, pred), lat, rtol=1e-5, atol=1e-5)
        lat = torch.round(lat)
        for a, b in zip(cond.r_synthesis(lat, pred, pred), orig.r_synthesis(lat, pred)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    frames = []
    for name, model in (("orig", orig), ("cond", cond)):
        enc = encode_video(model, carphone, tmp_path / f"{name}.mnvc", intra_period=3, max_frames=3, progress=False)
        frames.append([(f["type"], f["bits"], f["hash"]) for f in enc["per_frame"]])
    assert [t for t, _, _ in frames[0]] == ["I", "P", "P"]
    assert frames[0][0] == frames[1][0]  # the I-frame networks are the same modules
    for (_, a, _), (_, b, _) in zip(frames[0][1:], frames[1][1:]):
        assert abs(a - b) <= 0.05 * a + 32, (frames[0], frames[1])
    again = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "twice.pt")], capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode != 0 and "already conditions" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and not (tmp_path / "twice.pt").exists()


def test_mixed_checkpoint_takes_iframe_codec_from_one_and_pframes_from_other(carphone, tmp_path):
    """scripts/mix_checkpoints.py: the mixed checkpoint codes the I-frame exactly as the I-frame
    checkpoint does (same record bits and hash) and holds the other's P-frame networks; two
    configs that differ are refused with a one-line error and nothing written."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import encode_video

    script = Path(__file__).resolve().parents[1] / "scripts" / "mix_checkpoints.py"
    out = tmp_path / "mix.pt"
    proc = subprocess.run([sys.executable, str(script), "--iframe", "tiny_b0.0256", "--pframe", "tiny_b0.0064",
                           str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mixed, obj = load_checkpoint(out)
    a, _ = load_checkpoint("tiny_b0.0256")
    b, obj_b = load_checkpoint("tiny_b0.0064")
    assert obj["beta"] == obj_b["beta"] and obj["meta"]["trained_on_held_out"] is False  # neither saw carphone
    assert torch.equal(mixed.r_synthesis.out.weight, b.r_synthesis.out.weight)
    assert torch.equal(next(mixed.i_analysis.parameters()), next(a.i_analysis.parameters()))
    assert not torch.equal(next(mixed.i_analysis.parameters()), next(b.i_analysis.parameters()))
    records = {}
    for name, model in (("a", a), ("b", b), ("mix", mixed)):
        enc = encode_video(model, carphone, tmp_path / f"{name}.mnvc", intra_period=3, max_frames=2, progress=False)
        records[name] = [(f["type"], f["bits"], f["hash"]) for f in enc["per_frame"]]
    assert records["mix"][0] == records["a"][0] != records["b"][0]  # the I-frame: a's codec
    assert records["mix"][1] not in (records["a"][1], records["b"][1])  # b's P-nets on a's I-frame
    other = tmp_path / "mobilenvc.pt"
    assert subprocess.run([sys.executable, "-m", "mobilecodec", "init", "--config", "mobilenvc", "-o", str(other)],
                          capture_output=True, text=True, timeout=300, check=False).returncode == 0
    bad = subprocess.run([sys.executable, str(script), "--iframe", str(other), "--pframe", "tiny_b0.0064",
                          str(tmp_path / "bad.pt")], capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode != 0 and "different configs" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad.pt").exists()
    sys.path.insert(0, str(script.parent))  # two 'tiny' configs apart in a field: it is named ('tiny', 'tiny' before)
    try:
        from add_residual_conditioning import add_residual_conditioning
        from mix_checkpoints import mix_checkpoints
    finally:
        sys.path.remove(str(script.parent))
    from mobilecodec.errors import InputError

    with pytest.raises(InputError, match="different configs \\('tiny' with other residual_conditioning\\)"):
        mix_checkpoints(a, add_residual_conditioning(b))


def test_rate_gap_prices_p_frames_three_ways(tmp_path):
    """scripts/rate_gap.py: the float likelihood of the rounded P-frame latents and the coder's
    integer tables, two independent computations, agree (within 25 % per frame, measured 0-13 %);
    training's noisy likelihood charges several times the coder's bits (measured 7-20x on these
    crops of the training clips: the floor docs/results/training.md reports)."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.io import crop_frame, read_frames, resolve_input, write_video
    from mobilecodec.models.yuv import frame_to_tensor

    script = Path(__file__).resolve().parents[1] / "scripts" / "rate_gap.py"
    sys.path.insert(0, str(script.parent))
    try:
        from rate_gap import rate_gap
    finally:
        sys.path.remove(str(script.parent))
    model, _ = load_checkpoint("tiny_b0.0064")
    for clip in ("bikes", "bigbuckbunny"):
        crops = [crop_frame(f, 128, 128, 64, 64) for f in read_frames(resolve_input(clip), 4)]
        rows = rate_gap(model, [frame_to_tensor(f) for f in crops])
        assert [r["frame"] for r in rows] == [1, 2, 3]
        for r in rows:
            train, rounded, coder = (sum(r[p][k] for p in ("m", "r")) for k in ("train", "round", "coder"))
            assert coder > 0 and 0.8 <= rounded / coder <= 1.25, (clip, r)
            assert train >= 4 * coder, (clip, r)
    clip = tmp_path / "bikes128.y4m"
    write_video(clip, crops[:2])
    out = tmp_path / "gap.json"
    proc = subprocess.run([sys.executable, str(script), "tiny_b0.0064", str(clip), "--frames", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 1 and set(saved["rows"][0]) == {"frame", "m", "r"}
    assert "train / coder" in proc.stdout
    bad = subprocess.run([sys.executable, str(script), "tiny_b0.0064", str(clip), "--frames", "1"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and "at least 2" in bad.stderr


def test_latent_ceiling_measures_what_rate_cannot_buy(tmp_path):
    """scripts/latent_ceiling.py: the full block KLT reconstructs a frame exactly (an orthonormal basis,
    by construction), and each doubling of its components adds quality (measured 5-6 dB a step on
    bigbuckbunny). Measured on these two bigbuckbunny crops with `tiny_b0.0004`: the coder's grid
    32.42 / 32.41 dB, twice as fine 32.81 / 32.80, four times 32.963 / 32.955, unquantized 32.944 /
    32.940 (a finer grid is not always below the unquantized latents), 13 of 48 channels live."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.io import crop_frame, read_frames, resolve_input, write_video

    script = Path(__file__).resolve().parents[1] / "scripts" / "latent_ceiling.py"
    sys.path.insert(0, str(script.parent))
    try:
        from latent_ceiling import BlockKLT, iframe_ceiling
    finally:
        sys.path.remove(str(script.parent))
    fit = read_frames(resolve_input("bikes"), 8)[::4]
    klt = BlockKLT(fit, 16)
    assert klt.psnr(fit[0], 16 * 16 * 3 // 2) == float("inf")
    other = read_frames(resolve_input("bigbuckbunny"), 1)[0]
    p24, p48, p96 = (klt.psnr(other, k) for k in (24, 48, 96))
    assert p24 + 1 < p48 < p96 - 1, (p24, p48, p96)
    model, _ = load_checkpoint("tiny_b0.0004")
    model.eval()
    crops = [crop_frame(f, 128, 128, 64, 64) for f in read_frames(resolve_input("bigbuckbunny"), 2)]
    for c in crops:
        r = iframe_ceiling(model, c)
        assert 0 < r["exact"] - r["round"] < 1.5 and r["round"] + 0.15 < r["half"] < r["quarter"] + 0.02, r
        assert abs(r["quarter"] - r["exact"]) < 0.1, r
        assert 1 <= sum(s > 0.1 for s in r["nonzero_share"]) <= 20 and len(r["nonzero_share"]) == 48
    clip, out = tmp_path / "bbb128.y4m", tmp_path / "ceiling.json"
    write_video(clip, crops)
    proc = subprocess.run([sys.executable, str(script), "tiny_b0.0004", str(clip), "--frames", "2", "--fit", "bikes",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads(out.read_text())["clips"][str(clip)]
    assert saved["channels"] == 48 and saved["klt"] > saved["exact"] and "live channels" in proc.stdout
    # the coder's grid is the codec's own: the same frames coded all-intra and decoded from the file
    # (one thread each, this machine; a float hyper-synthesis mean gave 0.0006 dB off on carphone)
    ev = tmp_path / "ev.json"
    proc = subprocess.run([sys.executable, "-m", "mobilecodec", "eval", str(clip), "--checkpoint", "tiny_b0.0004",
                           "--intra-period", "1", "--threads", "1", "--no-progress", "-o", str(tmp_path / "ev"),
                           "--json", str(ev)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    coded = json.loads(ev.read_text())["results"][0]["result"]["points"][0]["psnr_yuv"]
    assert abs(saved["round"] - coded) < 1e-6, (saved["round"], coded)


def test_log_holds_the_coded_rate_beside_the_training_one(tmp_path, capsys):
    """Logged steps carry coded_* scalars: the same batch and rollout run again in eval mode (rounded
    latents) with the weights the step's noisy figures describe (before its update, so a row describes
    one model), recomputed here; for a trained checkpoint the P-frames' coded rate lies below
    training's noisy estimate (measured 0.222 against 0.268 bpp on these crops)."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.losses import GopLoss, summarize
    from mobilecodec.train.stages import StageConfig
    from mobilecodec.train.trainer import step_rng

    run = tmp_path / "run"
    assert main(["train", "--config", "tiny", "--stage", "2", "--beta", "0.0064", "--init", "tiny_b0.0064",
                 "--data", "bikes", "--max-frames", "12", "--crop", "64x64", "--gop", "3", "--rollout", "2",
                 "--batch-size", "2", "--steps", "1", "--seed", "3", "--no-progress", "-o", str(run)]) == 0
    assert "bpp coded (rounded latents)" in capsys.readouterr().out
    logged = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    model, _ = load_checkpoint("tiny_b0.0064")  # step 1's weights: the --init checkpoint
    assert model.weights_hash() != load_checkpoint(run / "final.pt")[0].weights_hash()
    frames = TrainingData(["bikes"], 3 + 2, (64, 64), max_frames=12).batch(step_rng(3, 0, 1), 2)
    stage = StageConfig(stage=2, steps=1, batch_size=2, crop=(64, 64), gop=3, lr=1e-4, rollout=2)
    with torch.no_grad():
        _, stats = GopLoss(model.eval(), 0.0064, stage)(frames)
    want = summarize(stats)
    for k in ("bpp", "bpp_i", "bpp_p", "psnr", "psnr_p"):
        assert logged[f"coded_{k}"] == pytest.approx(want[k], rel=1e-5), k
    assert logged["coded_bpp_p"] < logged["bpp_p"]
    # independently of the loss code: the range coder's bytes for the same GOPs, whose P-frames after
    # the rollout (frames 1-2 drift the buffer, 3-4 are counted) are the ones logged. The float
    # likelihood of rounded latents is within 19 % of the coder's integer tables per part and frame
    # (rate_gap above); whole bytes add up to 8 bits a frame. Measured: 0.201 bpp logged, 0.1875 coded;
    # rounding the latents about 0 instead of their means gave 0.252 logged (+34 %).
    from mobilecodec.codec.frame_coding import LatentEncoder, run_iframe, run_pframe

    coded_p = p_frames = 0
    for n in range(frames.shape[1]):
        buf = None
        for t in range(frames.shape[0]):
            src = LatentEncoder(model, frames[t, n:n + 1])
            _, buf = run_iframe(model, src) if t == 0 else run_pframe(model, buf, src)
            if t > stage.rollout:
                coded_p, p_frames = coded_p + 8 * len(src.payload()), p_frames + 1
    pixels = p_frames * 4 * frames.shape[-2] * frames.shape[-1]  # luma pixels of the P-frames
    assert logged["coded_bpp_p"] == pytest.approx(coded_p / pixels, rel=0.15, abs=8 * p_frames / pixels)


def test_data_workers_draw_the_same_batches(tmp_path):
    """--data-workers only moves the GOP sampling into other processes: the run, resumed half-way
    with a different worker count, ends with the weights of a run without workers."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.train.data import TrainingData
    from mobilecodec.train.prefetch import BatchPrefetcher
    from mobilecodec.train.trainer import step_rng

    data = TrainingData(["bikes", "stills"], 2, (64, 64), max_frames=8)
    with BatchPrefetcher(data, partial(step_rng, 5, 0), 3, workers=2, last_step=6) as pf:
        for step in (1, 2, 4, 6):  # skipping steps, as a resumed run starts mid-way
            ys, uvs = pf.get(step)
            rng = step_rng(5, 0, step)
            want = [data.sample(rng) for _ in range(3)]
            assert all(np.array_equal(y, w[0]) for y, w in zip(ys, want, strict=True))
            assert all(np.array_equal(uv, w[1]) for uv, w in zip(uvs, want, strict=True))
        with pytest.raises(ValueError, match="steps must increase"):
            pf.get(3)
        # Ctrl-C reaches the whole process group: the workers leave it to the trainer (they died of it
        # holding the task queue's lock, and the trainer's pool.terminate() then hung in 4 of 6 runs)
        import signal

        assert pf.pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN
    args = ("--lr", "1e-3", "--seed", "4", "--checkpoint-every", "2")
    assert _train(tmp_path / "a", "--steps", "4", *args) == 0
    assert _train(tmp_path / "b", "--steps", "2", *args, "--data-workers", "2") == 0
    assert main(["train", "-o", str(tmp_path / "b"), "--resume", "--steps", "4", "--data-workers", "1",
                 "--no-progress"]) == 0
    a, _ = load_checkpoint(tmp_path / "a" / "final.pt")
    b, _ = load_checkpoint(tmp_path / "b" / "final.pt")
    assert a.weights_hash() == b.weights_hash()
    assert main(["train", "-o", str(tmp_path / "c"), "--stage", "1", "--beta", "0.01", "--data-workers", "-1"]) == 2


def test_progress_bar_names_the_noisy_rate_and_shows_the_coded_one():
    """The bar's bpp is labelled as training's noisy estimate, and the coded bpp of the last logged step
    stands beside it once there is one (before the first log there is none to show)."""
    from mobilecodec.train.trainer import training_postfix

    ema = {"loss": 0.0123456, "bpp": 0.2684, "psnr": 27.514}
    assert training_postfix(ema, {}) == {"loss": "0.01235", "noisy_bpp": "0.268", "psnr": "27.51"}
    fields = training_postfix(ema, {"coded_bpp": 0.2219, "bpp": 0.2684})
    assert list(fields) == ["loss", "noisy_bpp", "coded_bpp", "psnr"] and fields["coded_bpp"] == "0.222"
    assert "noisy_bpp" not in training_postfix(ema, {}, noisy=False)  # QAT --ste trains on rounded latents


def test_weights_that_saw_the_held_out_clip_say_so_down_the_pipeline(carphone, tmp_path, capsys):
    """`train --allow-held-out --data carphone` wrote checkpoints with no mark of it: eval, PTQ and
    check-int8 then reported carphone figures of such weights as held-out figures, without a word.
    Every checkpoint records `trained_on_held_out` (a run on bikes: false); a run --init from a
    marked one inherits it; eval warns on the held-out clip; ptq.json carries it, so that
    check-int8 lists the carphone figures as fitted on their input."""
    from mobilecodec.checkpoint import read_checkpoint

    assert main(["train", "--stage", "1", "--beta", "0.0032", "--data", str(carphone), "--allow-held-out",
                 "--max-frames", "4", "--steps", "1", "-o", str(tmp_path / "held"), *TRAIN_ARGS]) == 0
    assert _train(tmp_path / "clean", "--steps", "1") == 0
    assert _train(tmp_path / "child", "--steps", "1", "--init", str(tmp_path / "held" / "final.pt")) == 0
    marks = {r: read_checkpoint(tmp_path / r / "final.pt")["meta"]["trained_on_held_out"]
             for r in ("held", "clean", "child")}
    assert marks == {"held": True, "clean": False, "child": True}
    # a resume takes the run's own record: its --init may be gone since (a first version read it
    # again at every save, and failed after training the step)
    (tmp_path / "held" / "final.pt").rename(tmp_path / "moved.pt")
    resumed = subprocess.run([sys.executable, "-m", "mobilecodec", "train", "-o", str(tmp_path / "child"), "--resume",
                              "--steps", "2", "--no-progress", "--threads", "1"],
                             capture_output=True, text=True, timeout=300)  # a new process: nothing remembered
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(tmp_path / "child" / "final.pt")["meta"]["trained_on_held_out"] is True
    (tmp_path / "moved.pt").rename(tmp_path / "held" / "final.pt")
    capsys.readouterr()
    assert main(["eval", str(carphone), "--checkpoint", str(tmp_path / "child" / "final.pt"), "--frames", "1",
                 "-o", str(tmp_path / "ev"), "--no-progress"]) == 0
    assert "final.pt trained on the held-out clip" in capsys.readouterr().err
    assert main(["ptq", "--checkpoint", str(tmp_path / "child" / "final.pt"), "--data", "bikes", "--crop", "64x64",
                 "--steps", "1", "--batch", "1", "--gop", "3", "--eval-gops", "0", "-o", str(tmp_path / "Q"),
                 "--no-progress"]) == 0
    assert "trained on the held-out evaluation clip" in capsys.readouterr().err
    assert json.loads((tmp_path / "Q" / "ptq.json").read_text())["trained_on_held_out"] is True
    # ... and through export and compile, which dropped it: the package's checkpoint kept only
    # {"exported_from": ...}, its manifest said nothing, a compile folder said calibrated_on_held_out
    # false for int8 made on carphone, and eval of the package warned of nothing
    assert main(["export", "--checkpoint", str(tmp_path / "child" / "final.pt"), "--size", "144x176", "--int8",
                 str(tmp_path / "Q"), "-o", str(tmp_path / "P"), "--no-progress"]) == 0
    man = json.loads((tmp_path / "P" / "manifest.json").read_text())
    assert man["trained_on_held_out"] is True and man["quantization"]["trained_on_held_out"] is True
    assert read_checkpoint(tmp_path / "P" / "checkpoint.pt")["meta"]["trained_on_held_out"] is True
    assert main(["ptq", "--checkpoint", str(tmp_path / "clean" / "final.pt"), "--data", str(carphone),
                 "--allow-held-out", "--crop", "64x64", "--steps", "1", "--batch", "1", "--gop", "3", "--eval-gops",
                 "0", "-o", str(tmp_path / "QH"), "--no-progress"]) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "clean" / "final.pt"), "--size", "144x176", "--int8",
                 str(tmp_path / "QH"), "-o", str(tmp_path / "PH"), "--no-progress"]) == 0
    man = json.loads((tmp_path / "PH" / "manifest.json").read_text())
    assert man["trained_on_held_out"] is False and man["quantization"]["calibrated_on_held_out"] is True
    assert man["quantization"]["calibration_clips"] == [str(carphone.resolve())]
    assert main(["compile", str(tmp_path / "PH"), "-o", str(tmp_path / "CH"), "--no-progress"]) == 0
    ctx = json.loads((tmp_path / "CH" / "manifest.json").read_text())
    assert ctx["calibrated_on_held_out"] is True and ctx["trained_on_held_out"] is False
    capsys.readouterr()
    assert main(["eval", str(carphone), "--package", str(tmp_path / "PH"), "--frames", "1", "-o", str(tmp_path / "ev2"),
                 "--no-progress"]) == 0
    assert "PH int8, calibrated on the held-out clip" in capsys.readouterr().err


def test_init_of_another_config_trains_that_config(tmp_path, capsys):
    """train --init of a mobilenvc checkpoint without --config said "--config 'tiny' was given" (the
    default, never given); it trains the checkpoint's config, and a --config that differs is refused."""
    from mobilecodec.checkpoint import load_checkpoint

    init = tmp_path / "mnvc.pt"
    assert main(["init", "--config", "mobilenvc", "-o", str(init)]) == 0
    args = ["train", "--stage", "1", "--beta", "0.0032", "--init", str(init), "--data", "bikes", "--max-frames", "8",
            "--crop", "64x64", "--gop", "1", "--batch-size", "1", "--steps", "1", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "r" / "final.pt")[0].cfg.name == "mobilenvc"
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "t"), "--config", "tiny"]) == 2
    assert "is config 'mobilenvc', but --config 'tiny' was given" in capsys.readouterr().err


def test_yuv_weights_set_the_distortion_and_define_the_run(tmp_path, capsys):
    """`--yuv-weights Y,U,V` weighs the MSE's planes (default 6,1,1): one first step from the same seed
    logs another distortion under 1,4,4; the run records the weights, and a resume must keep them."""
    runs = {}
    for weights in ("6,1,1", "1,4,4"):
        run = tmp_path / weights.replace(",", "_")
        assert _train(run, "--steps", "1", "--threads", "1", "--yuv-weights", weights,
                      "--json", str(tmp_path / f"{run.name}.json")) == 0
        runs[weights] = json.loads((tmp_path / f"{run.name}.json").read_text())
    assert runs["1,4,4"]["options"]["stage"]["yuv_weights"] == [1.0, 4.0, 4.0]
    assert runs["6,1,1"]["last"]["mse"] != runs["1,4,4"]["last"]["mse"]
    capsys.readouterr()
    assert main(["train", "-o", str(tmp_path / "1_4_4"), "--resume", "--steps", "2", "--no-progress",
                 "--yuv-weights", "6,1,1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--yuv-weights [6.0, 1.0, 1.0] differs from the run being resumed" in err[0], err
    with pytest.raises(SystemExit) as bad:
        main(["train", "--stage", "1", "--beta", "0.01", "-o", str(tmp_path / "x"), "--yuv-weights", "6,1"])
    assert bad.value.code == 2 and "expected three weights Y,U,V" in capsys.readouterr().err


def test_drift_diagnose_measures_the_picture_not_the_padding():
    """scripts/drift_diagnose.py measured the padded frame: bikes 640x272 codes 640x320, and its 48 rows
    of repeated edge put the residual's gain over the prediction at 0.7-8.6 dB instead of 0.8-2.6 dB.
    Every tensor of the padded frame, at any of its resolutions, is cut to the rows and columns that
    cover the picture (rounded up)."""
    import torch

    script = Path(__file__).resolve().parents[1] / "scripts"
    sys.path.insert(0, str(script))
    try:
        from drift_diagnose import _picture
    finally:
        sys.path.remove(str(script))
    assert _picture(torch.zeros(1, 6, 160, 320), (272, 640), (320, 640)).shape == (1, 6, 136, 320)
    assert _picture(torch.zeros(1, 2, 80, 160), (272, 640), (320, 640)).shape == (1, 2, 68, 160)
    assert _picture(torch.zeros(1, 6, 160, 320), (270, 636), (320, 640)).shape == (1, 6, 135, 318)
    assert _picture(torch.zeros(1, 6, 96, 96), (192, 192), (192, 192)).shape == (1, 6, 96, 96)


def test_recursion_gain_repeats_itself(tmp_path):
    """scripts/recursion_gain.py drew the training-mode pass's quantization noise from torch's global
    generator, so its backward gain changed from run to run (0.651 / 0.645 at depth 0: a scripts
    audit); its --seed now fixes every draw."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "recursion_gain.py"
    outs = []
    for k in range(2):
        out = tmp_path / f"g{k}.json"
        r = subprocess.run([sys.executable, str(script), "tiny_b0.0064", "--depth", "0", "--horizon", "1",
                            "--batch-size", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(out.read_text())["results"])
    assert outs[0] == outs[1] and 0 < outs[0][0]["backward"] and outs[0][0]["forward"][0] > 0, outs
