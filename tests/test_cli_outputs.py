"""Output paths from the CLI: refused before any work when they cannot be written or when writing
them would destroy something (a foreign folder, the source video); `--json -` gives stdout to the
JSON alone; a command killed with SIGTERM leaves no temporary file behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli_run import PY, assert_clean_error, cli_here


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_foreign_folder_is_never_replaced(tiny_checkpoint, tiny_package, tmp_path):
    """export / compile / ptq / demo replace their output folder whole; a non-empty folder that no
    earlier run of the command wrote (no manifest.json, quantized.pt, report.json) is refused, and a
    file in the output's place too, all before any work, leaving everything as it was."""
    victim = tmp_path / "thesis"
    (victim / "data").mkdir(parents=True)
    (victim / "thesis.tex").write_text("years of work")
    (victim / "data" / "runs.csv").write_text("1,2,3")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    before = _tree(tmp_path)
    runs = [("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o"),
            ("compile", tiny_package, "-o"),
            ("ptq", "--checkpoint", tiny_checkpoint, "--data", "bikes", "--steps", "1", "-o"),
            ("demo", "--frames", "2", "-o")]
    for args in runs:
        assert_clean_error(cli_here(*args, victim), "not empty", "manifest.json" if args[0] in ("export", "compile")
                           else "quantized.pt" if args[0] == "ptq" else "report.json")
        assert_clean_error(cli_here(*args, afile), "not a folder")
    assert _tree(tmp_path) == before
    assert (victim / "thesis.tex").read_text() == "years of work" and afile.read_text() == "keep me"
    # a package holds manifest.json too, but of export's kind: compiling it onto itself would replace it
    package_files = _tree(tiny_package)
    assert_clean_error(cli_here("compile", tiny_package, "-o", tiny_package), "of another kind")
    assert _tree(tiny_package) == package_files
    # a folder holding some other report.json was taken for a demo's and deleted whole (exit 0)
    (victim / "report.json").write_text('{"title": "my notes"}')
    assert_clean_error(cli_here("demo", "--frames", "2", "-o", victim), "report.json of another kind",
                       "not mobilecodec-demo")
    assert (victim / "thesis.tex").read_text() == "years of work"
    # an earlier package is replaced as before
    pkg = tmp_path / "pkg"
    for _ in range(2):
        p = cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", pkg)
        assert p.returncode == 0, p.stderr
    assert (pkg / "manifest.json").is_file()


def test_a_replaced_folder_keeps_what_no_run_wrote(tiny_checkpoint, tiny_package, tmp_path, monkeypatch):
    """A package or compile folder is replaced whole by the next run: a compile folder made inside its
    own package, or a user's file put into a package, was deleted by the next export without a word.
    `-o` inside a folder the command reads is refused before any work, and what the earlier run did
    not write moves into the new folder."""
    package_files = _tree(tiny_package)
    assert_clean_error(cli_here("compile", tiny_package, "-o", tiny_package / "bin"), "inside", str(tiny_package))
    assert _tree(tiny_package) == package_files
    pkg = tmp_path / "pkg"
    p = cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", pkg)
    assert p.returncode == 0, p.stderr
    (pkg / "notes.txt").write_text("the user's")
    (pkg / "runs").mkdir()
    (pkg / "runs" / "a.csv").write_text("1,2")
    p = cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "128x128", "-o", pkg)
    assert p.returncode == 0, p.stderr
    assert json.loads((pkg / "manifest.json").read_text())["padded_size"] == [128, 128]
    assert (pkg / "notes.txt").read_text() == "the user's" and (pkg / "runs" / "a.csv").read_text() == "1,2"
    # inside a folder the run writes too (the export audit: graphs/notes.txt went with the old package)
    (pkg / "graphs" / "notes.txt").write_text("mine")
    (pkg / "graphs" / "mine").mkdir()
    (pkg / "graphs" / "mine" / "b.txt").write_text("3")
    p = cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", pkg)
    assert p.returncode == 0, p.stderr
    assert (pkg / "graphs" / "notes.txt").read_text() == "mine" and (pkg / "graphs" / "mine" / "b.txt").read_text() == "3"
    assert (pkg / "notes.txt").read_text() == "the user's" and (pkg / "runs" / "a.csv").read_text() == "1,2"
    assert sorted(f"graphs/{f.name}" for f in (pkg / "graphs").glob("*.onnx")) == sorted(
        g["file"] for g in json.loads((pkg / "manifest.json").read_text())["graphs"].values())
    # a folder named like the command (or any option that is not an input) is no input of it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    p = cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", "export/pkg64")
    assert p.returncode == 0, p.stderr
    # the current folder is never replaced (it was set aside and left a stray folder behind)
    monkeypatch.chdir(pkg)
    before = _tree(tmp_path)
    assert_clean_error(cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", "."),
                       "current folder")
    assert _tree(tmp_path) == before


def test_unwritable_outputs_are_refused_before_encoding(tiny_checkpoint, carphone, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    stream = tmp_path / "a.mnvc"
    base = ("encode", carphone, "--checkpoint", tiny_checkpoint, "--frames", "1", "--no-progress")
    assert_clean_error(cli_here(*base, "-o", afile / "a.mnvc"), "notes.txt is a file")
    assert_clean_error(cli_here(*base, "-o", tmp_path), "is a folder")
    # /proc takes no files whoever asks (root passes os.access there): refused before the encode
    assert_clean_error(cli_here(*base, "-o", "/proc/a.mnvc"),
                       "takes no new files" if os.geteuid() == 0 else "cannot write /proc/a.mnvc")
    assert_clean_error(cli_here(*base, "-o", stream, "--json", afile / "s.json"), "notes.txt is a file")
    # a swapped argument must not overwrite the source video
    src = tmp_path / "clip.y4m"
    src.write_bytes(carphone.read_bytes())
    assert_clean_error(cli_here("encode", src, "-o", src, "--checkpoint", tiny_checkpoint), "is the file this command reads as input")
    assert src.read_bytes() == carphone.read_bytes()
    assert _tree(tmp_path) == ["clip.y4m", "notes.txt"]  # no stream left by the refused runs
    assert_clean_error(cli_here("decode", stream, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "d.y4m"),
                       "no such stream file")


def _as_user(*argv) -> subprocess.CompletedProcess:
    """`argv` with the file mode bits applying, as for a user: root's override of them dropped (capsh)."""
    import shutil

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.skip("running as root without capsh: the mode bits cannot apply")
        prefix = ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", 'exec "$@"', "user"]
    return subprocess.run([*prefix, *map(str, argv)], capture_output=True, text=True, timeout=600)


def test_outputs_that_cannot_be_replaced_are_refused_before_any_work(tiny_checkpoint, tiny_package, carphone,
                                                                      tmp_path):
    """Found by the output audit (session 40): an existing output folder that is not writable passed
    the check (it looked at the parent alone), so baseline or check-int8 failed after their whole run
    naming a hidden staging folder; a package with a read-only folder was replaced, then the command
    failed (exit 2) leaving the earlier package hidden beside it; a read-only file was replaced."""
    import shutil

    keep = tmp_path / "keep.mnvc"
    keep.write_bytes(b"mine")
    keep.chmod(0o444)
    enc = (*PY, "encode", carphone, "--checkpoint", tiny_checkpoint, "--frames", "1", "--no-progress")
    assert_clean_error(_as_user(*enc, "-o", keep), f"output {keep} is read-only")
    assert keep.read_bytes() == b"mine"
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "carphone_eval.json").write_text("{}")
    (ev / "carphone_eval.json").chmod(0o444)  # one of the files eval writes there
    evaluate = (*PY, "eval", carphone, "--checkpoint", tiny_checkpoint, "--frames", "1", "--no-progress")
    assert_clean_error(_as_user(*evaluate, "-o", ev), "carphone_eval.json is read-only")
    ev.chmod(0o555)
    assert_clean_error(_as_user(*evaluate, "-o", ev), f"output folder {ev} is not writable")
    pkg = tmp_path / "pkg"
    shutil.copytree(tiny_package, pkg)
    before = {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file()}
    (pkg / "graphs").chmod(0o555)
    export = (*PY, "export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "--no-progress")
    assert_clean_error(_as_user(*export, "-o", pkg), f"its folder {pkg / 'graphs'} is not writable")
    pkg.chmod(0o555)
    assert_clean_error(_as_user(*export, "-o", pkg), f"output folder {pkg} is not writable")
    assert {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["ev", "keep.mnvc", "pkg"]  # nothing hidden left beside them
    for d in (ev, pkg, pkg / "graphs"):
        d.chmod(0o755)
    # a folder that is not ours is refused as such, not sent to chmod first (review)
    mine = tmp_path / "mine"
    (mine / "ro").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "ro").chmod(0o555)
    assert_clean_error(_as_user(*export, "-o", mine), "is not empty and holds no manifest.json")
    (mine / "ro").chmod(0o755)
    # an override file that cannot be read is said so (it became "cannot parse W8A16 overrides")
    w = tmp_path / "w.json"
    w.write_text('["r_synthesis"]')
    w.chmod(0o000)
    assert_clean_error(_as_user(*PY, "ptq", "--checkpoint", tiny_checkpoint, "--data", "bikes", "--w8a16", w,
                                "-o", tmp_path / "q"), f"Permission denied: {w}")


def test_an_earlier_folder_that_will_not_go_is_a_warning(tmp_path):
    """Once the new folder is in place, an earlier one that cannot be removed (made read-only while the
    run worked) is named in a warning; it was an error (exit 2) with the new folder already published."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "m").write_text("old")
    code = ("import sys; from pathlib import Path; from mobilecodec.fsutil import atomic_dir\n"
            "out = Path(sys.argv[1])\n"
            "with atomic_dir(out, marker='m') as tmp:\n"
            "    (tmp / 'm').write_text('new'); (out / 'sub' / 'f').write_text('x'); (out / 'sub').chmod(0o555)\n")
    p = _as_user(*PY[:1], "-c", code, out)
    assert p.returncode == 0, p.stderr
    old = [n for n in os.listdir(tmp_path) if n.endswith(".old")]
    assert len(old) == 1 and f"the earlier out could not be removed (Permission denied): it is at " \
        f"{tmp_path / old[0]}" in p.stderr, p.stderr
    assert (out / "m").read_text() == "new"
    (tmp_path / old[0] / "sub").chmod(0o755)


def test_json_to_stdout_is_clean_json(tiny_checkpoint, carphone, tmp_path):
    """With `--json -` the summary line goes to stderr, so stdout parses as one JSON document."""
    p = cli_here("encode", carphone, "-o", tmp_path / "a.mnvc", "--checkpoint", tiny_checkpoint, "--frames", "2",
                 "--no-progress", "--json", "-")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["frames"] == 2 and "a.mnvc: 2 frames" in p.stderr
    p = cli_here("decode", tmp_path / "a.mnvc", "--checkpoint", tiny_checkpoint, "--no-progress", "--json", "-")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["hash_matches"] == 2 and "2/2 frame hashes match" in p.stderr
    p = cli_here("init", "--config", "tiny", "--seed", "2", "-o", tmp_path / "i.pt", "--json", "-")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    from mobilecodec.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "i.pt")  # what the file holds, hashed again on load
    assert made["weights_hash"] == model.weights_hash().hex() and made["seed"] == 2
    assert made["parameters"] == sum(t.numel() for t in model.parameters()) and "i.pt: config tiny" in p.stderr
    p = cli_here("init", "--config", "tiny", "-o", tmp_path / "i.onnx")  # not what --checkpoint reads
    assert p.returncode == 2 and "must be a .pt checkpoint" in p.stderr and not (tmp_path / "i.onnx").exists()
    # init makes its own checkpoint again, but a trained one it replaced by random weights (walk-through audit)
    assert cli_here("init", "--config", "tiny", "--seed", "3", "-o", tmp_path / "i.pt").returncode == 0
    trained = tmp_path / "trained.pt"
    from mobilecodec.checkpoint import resolve_checkpoint

    trained.write_bytes(Path(resolve_checkpoint("tiny_b0.0032")).read_bytes())  # a shipped checkpoint's copy
    before = trained.read_bytes()
    assert_clean_error(cli_here("init", "-o", trained), "trained.pt exists and is not a checkpoint init made")
    assert trained.read_bytes() == before


def test_sigterm_removes_the_partial_stream(tmp_path):
    """SIGTERM in the middle of an encode: exit 143, one line, no .part file, no stream."""
    out = tmp_path / "bikes.mnvc"
    # once the temporary stream exists: frames are being coded
    rc, err = _terminated(["encode", "bikes", "-o", str(out), "--checkpoint", "tiny_b0.0064", "--no-progress"],
                          tmp_path, ".bikes.mnvc.*", settle=0.5)
    assert rc == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "mobilecodec encode: terminated"
    assert list(tmp_path.iterdir()) == []


def _terminated(argv: list[str], where, pattern: str, settle: float = 0.0, sig: int = signal.SIGTERM,
                sig_after_exit_skips: bool = False) -> tuple[int, str]:
    """Run `mobilecodec ARGV` and send it `sig` once `where.glob(pattern)` finds a path (then `settle`
    seconds more); its exit code and stderr."""
    proc = subprocess.Popen([*PY, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(where.glob(pattern)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        time.sleep(settle)
        if proc.poll() is not None and sig_after_exit_skips:
            pytest.skip("the process had exited before the signal: nothing to test on this machine")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_outputs_are_written_does_not_fail_the_run(tmp_path, sig):
    """After its last output the process still tears torch and onnxruntime down (0.1-3.6 s, 0.9 s for
    this profile on the session-41 Zen 4); a Ctrl-C or SIGTERM there ended a successful run with no
    word and exit -2 or -15 (output audit, session 40). The command is over: its exit code stands."""
    out = tmp_path / "p.json"
    rc, err = _terminated(["profile", "--config", "tiny", "--size", "64x64", "--json", str(out), "--no-progress"],
                          tmp_path, "p.json", settle=0.1, sig=sig, sig_after_exit_skips=True)
    assert rc == 0, err
    assert json.loads(out.read_text())["source"]["config"] == "tiny"


def test_sigterm_in_an_export_removes_the_folders_it_made(tmp_path):
    """An export stopped midway into -o n1/n2/pkg left n1/n2 behind, empty (export audit): the folders
    a run makes for its output go with the unfinished output."""
    out = tmp_path / "n1" / "n2" / "pkg"
    # once the unfinished package has a graph (a signal during the imports before it, nanobind's, aborted
    # the process instead: not this test's concern)
    rc, err = _terminated(["export", "--checkpoint", "tiny_b0.0032", "--size", "64x64", "-o", str(out), "--no-progress"],
                          tmp_path, "n1/n2/.pkg.*/graphs/*.onnx")
    assert rc == 128 + signal.SIGTERM, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,words", [
    (("profile", "--config", "tiny", "--size", "64x64", "-o"), ("not a folder",)),
    (("eval", "carphone", "--checkpoint", "tiny_b0.0064", "--frames", "1", "-o"), ("not a folder",)),
    (("baseline", "carphone", "--codec", "x264", "--frames", "1", "-o"), ("not a folder",)),
])
def test_report_folders_that_are_files_are_refused(args, words, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    assert_clean_error(cli_here(*args, afile), *words)
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("args,words", [
    (("eval", "carphone", "--checkpoint", "tiny_b0.0064", "--frames", "1", "-o", ""), ("-o is empty", "folder")),
    (("baseline", "carphone", "--codec", "x264", "--crf", "30", "--frames", "1", "-o", ""), ("-o is empty", "folder")),
    (("encode", "carphone", "--checkpoint", "tiny_b0.0064", "--frames", "1", "-o", ""), ("-o is empty", "file")),
    (("profile", "--config", "tiny", "--size", "64x64", "--json", " "), ("--json is empty", "file")),
])
def test_an_empty_output_path_is_refused(args, words, tmp_path, monkeypatch):
    """`-o ''` was the current folder: eval and baseline wrote their files there with exit 0, encode
    said "output . is a folder" (I/O audit)."""
    monkeypatch.chdir(tmp_path)
    assert_clean_error(cli_here(*args), *words)
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_before_creating_its_run_folder(tmp_path):
    """A bad config, init or recipe-only option fails with one line and leaves no run folder."""
    run = tmp_path / "run"
    base = ("train", "--stage", "1", "--beta", "0.01", "--steps", "1", "--no-progress", "-o", run)
    assert_clean_error(cli_here(*base, "--config", "nosuch"), "nosuch")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    assert_clean_error(cli_here(*base, "--init", fake), "fake.pt")
    for opt in (("--batch-scale", "4"), ("--until", "iframe"), ("--phase", "b0.0064")):
        assert_clean_error(cli_here(*base, *opt), opt[0], "--recipe")
    assert not run.exists()
    # refused once the run has its lock: the folders made for it stayed (output audit, session 40)
    deep = tmp_path / "a" / "b" / "run"
    assert_clean_error(cli_here(*base[:-1], deep, "--data", tmp_path / "nosuch.y4m"), "no such training video")
    assert not (tmp_path / "a").exists()


def test_options_that_would_be_ignored_are_refused(tiny_checkpoint, tiny_package, carphone, tmp_path):
    """An option that does not apply to the chosen path is an error, not silently dropped."""
    stream = tmp_path / "a.mnvc"
    p = cli_here("encode", carphone, "-o", stream, "--checkpoint", tiny_checkpoint, "--frames", "1", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert_clean_error(cli_here("encode", carphone, "-o", tmp_path / "b.mnvc", "--checkpoint", tiny_checkpoint,
                                "--ep", "qnn"), "--ep applies to --package")
    assert_clean_error(cli_here("decode", stream, "--checkpoint", tiny_checkpoint, "--ep", "cpu"),
                       "--ep applies to --package")
    for opt in (("--runs", "3"), ("--warmup", "0"), ("--no-ops",), ("--ep", "qnn")):
        assert_clean_error(cli_here("profile", "--config", "tiny", "--size", "64x64", *opt), opt[0],
                           "package folder")
    assert_clean_error(cli_here("compile", tiny_package, "-o", tmp_path / "bins", "--frames", "3"),
                       "--frames", "--calibration")
    assert_clean_error(cli_here("compile", tiny_package, "-o", tmp_path / "bins", "--allow-held-out"),
                       "--allow-held-out", "--calibration")
    # one frame is the I-frame alone: the P-frame graphs would be calibrated on random inputs
    assert_clean_error(cli_here("compile", tiny_package, "-o", tmp_path / "bins", "--calibration", "bikes",
                                "--frames", "1"), "--frames", "2")
    assert_clean_error(cli_here("export", "--check", tiny_package, "--size", "64x64"), "not used with --check", "--size")
    assert_clean_error(cli_here("export", "--config", "tiny", "--size", "64x64", "-o", tmp_path / "p", "--soc", "43"),
                       "only used with --check", "--soc")
    assert_clean_error(cli_here("export", "--checkpoint", tiny_checkpoint, "--size", "64x64", "-o", tmp_path / "p",
                                "--seed", "3"), "--seed")
    assert_clean_error(cli_here("profile", tiny_package, "--size", "64x64"), "a package has its size")
    assert_clean_error(cli_here("profile", "--config", "tiny", "--precision", "w8a8"), "--device")
    assert_clean_error(cli_here("demo", "--no-baselines", "--baseline-crf", "30,40", "-o", tmp_path / "d"),
                       "--no-baselines")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mnvc"]


def test_an_output_is_refused_in_a_package_read_through_another_input(tiny_package, tmp_path):
    """A compile folder reads the export package it was compiled from, and a package's graph file its
    manifest: `decode S --package COMPILED --ep qnn --json PKG/manifest.json` and `profile
    PKG/graphs/r_synthesis.onnx --json PKG/manifest.json` replaced that manifest (exit 0; the package
    no longer loaded), where naming PKG itself was refused. Refused alike, before any work."""
    import shutil

    from mobilecodec.export.formats import CONTEXT_FORMAT

    pkg = shutil.copytree(tiny_package, tmp_path / "pkg")
    before = (pkg / "manifest.json").read_bytes()
    compiled = tmp_path / "bins"
    compiled.mkdir()
    (compiled / "manifest.json").write_text(json.dumps({"format": CONTEXT_FORMAT, "version": 1, "package": str(pkg),
                                                        "package_relative": "../pkg", "graphs": {
                                                            "i_analysis": {"context_model": "i_analysis_ctx.onnx",
                                                                           "files": []}}}))
    p = cli_here("decode", tmp_path / "s.mnvc", "--package", compiled, "--ep", "qnn", "--json", pkg / "manifest.json")
    assert_clean_error(p, "manifest.json", "inside", "pkg")
    p = cli_here("profile", pkg / "graphs" / "r_synthesis.onnx", "--json", pkg / "manifest.json")
    assert_clean_error(p, "manifest.json", "is the file this command reads")
    assert (pkg / "manifest.json").read_bytes() == before


def test_what_an_input_implies_is_read_from_its_manifest_alone(tmp_path):
    """The read-through check follows a compile folder or a package's graph only where the manifest
    says so: a compile manifest of the wrong types was an internal error (it is the command's to
    report), and an .onnx under any folder holding some manifest.json refused a rerun's --json
    beside it, though nothing there is read."""
    import onnx
    from onnx import TensorProto, helper

    from mobilecodec.export.formats import CONTEXT_FORMAT

    ctx = tmp_path / "CTX"
    ctx.mkdir()
    (ctx / "manifest.json").write_text(json.dumps({"format": CONTEXT_FORMAT, "package": 5}))
    (tmp_path / "j.json").write_text("{}")
    p = cli_here("eval", "carphone", "--package", ctx, "-o", tmp_path / "E", "--json", tmp_path / "j.json")
    assert_clean_error(p, "QNN")  # the package loader's own refusal, not an internal error
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    (proj / "manifest.json").write_text(json.dumps({"name": "my web app"}))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), proj / "models" / "m.onnx")
    for _ in range(2):  # the second run finds the first's JSON
        p = cli_here("profile", proj / "models" / "m.onnx", "--json", proj / "m.json")
        assert p.returncode == 0, p.stderr


def test_an_output_is_refused_on_what_an_input_name_stands_for(tmp_path, monkeypatch):
    """`check-int8 carphone ... --json CACHE/samples/carphone.y4m` turned the cached clip into a 7 KB
    JSON file (exit 3) and `--json .../checkpoints/tiny_b0.0032.pt` was taken for `--float
    tiny_b0.0032`: the check compared the strings, not the files a sample clip's or a shipped
    checkpoint's name stands for. Refused before any work, the cached clip even before it is made."""
    from mobilecodec.checkpoint import shipped_checkpoints

    monkeypatch.setenv("MOBILECODEC_CACHE", str(tmp_path / "cache"))  # an empty cache: no clip made yet
    clip = tmp_path / "cache" / "samples" / "carphone.y4m"
    p = cli_here("check-int8", "carphone", "--float", "tiny_b0.0032", "--int8", tmp_path / "Q", "--json", clip)
    assert_clean_error(p, "--json", "carphone.y4m", "is the file this command reads as inputs")
    ckpt = shipped_checkpoints()["tiny_b0.0032"]
    before = ckpt.read_bytes()
    p = cli_here("encode", "carphone", "--checkpoint", "tiny_b0.0032", "-o", tmp_path / "s.mnvc", "--json", ckpt)
    assert_clean_error(p, "tiny_b0.0032.pt", "is the file this command reads as checkpoint")
    assert ckpt.read_bytes() == before and not (tmp_path / "cache" / "samples").exists()


def test_a_command_leaves_nothing_in_the_temp_folder(tmp_path):
    """Importing torch._dynamo (the profiler, aimet, torch.use_deterministic_algorithms) left an
    empty $TMPDIR/torchinductor_<user> folder after every profile, ptq, qat, check-int8 and train."""
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), MOBILECODEC_CACHE=str(cache), OMP_NUM_THREADS="1")
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    p = subprocess.run([*PY, "profile", "--config", "tiny", "--size", "64x64", "--json", str(tmp_path / "p.json")],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in tmp.iterdir()) == []


def test_a_checkpoint_that_cannot_be_written_whole_is_one_line(tmp_path):
    """torch.save reports a short write (a full disk; here a 1 MiB file size limit, RLIMIT_FSIZE)
    as a RuntimeError: `init` printed a 30-line traceback and 'internal error'."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    p = subprocess.run([*PY, "init", "--config", "tiny", "-o", str(tmp_path / "i.pt")], capture_output=True,
                       text=True, timeout=300, preexec_fn=limit)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("mobilecodec init: error: cannot write it whole (torch: ") and "is the disk full" \
        in p.stderr and p.stderr.endswith(f": {tmp_path / 'i.pt'}\n"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["export", "ptq"])
def test_a_file_a_limit_stopped_in_a_folder_is_named_where_it_goes(command, carphone, tmp_path):
    """A write stopped inside a folder made whole named the hidden temporary folder ('File too large:
    .pkg.2173.2hrl_czy.part/checkpoint.pt'): it names the file in -o (output audit, session 40)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    args = {"export": ["export", "--checkpoint", "tiny_b0.0016", "--size", "144x176"],
            "ptq": ["ptq", "--checkpoint", "tiny_b0.0016", "--data", str(carphone), "--allow-held-out", "--steps", "1",
                    "--gop", "3", "--batch", "1", "--crop", "64x64", "--eval-gops", "0"]}[command]  # a file in the cache
    out = tmp_path / "out"
    p = subprocess.run([*PY, *args, "--no-progress", "-o", str(out)], capture_output=True, text=True, timeout=300,
                       preexec_fn=limit, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip().splitlines()[-1]  # after export's note on the padding
    assert line.startswith(f"mobilecodec {command}: error: ") and ".part" not in p.stderr, p.stderr
    assert line.endswith(f": {out}/checkpoint.pt" if command == "export" else f": {out}/quantized.pt"), line
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_file_it_stopped(tmp_path):
    """A write() that meets a full disk or a file size limit raises an OSError without a file name:
    `decode` printed 'error: File too large' alone. Here a 40 KiB limit (RLIMIT_FSIZE) stops the
    decoded video of a 2-frame stream (76 KB) midway: the one line names the video, none is left."""
    import resource

    stream = tmp_path / "s.mnvc"
    p = cli_here("encode", "carphone", "--checkpoint", "tiny_b0.0064", "--frames", "2", "-o", stream)
    assert p.returncode == 0, p.stderr

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 << 10, 40 << 10))

    out = tmp_path / "out"
    p = subprocess.run([*PY, "decode", str(stream), "-o", str(out / "d.y4m")], capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"mobilecodec decode: error: File too large: {out / 'd.y4m'}\n", p.stderr
    assert not out.exists()


def test_eval_names_the_decoded_video_a_size_limit_stopped(carphone, tmp_path):
    """`eval --save-decoded` decoded into a temp folder and copied: a file size limit named
    /tmp/mobilecodec-eval-XXXX/tiny_b0.0064.y4m, which the user never asked for (runtime audit). The
    decode is staged in the output folder now: the line names OUT/streams/..., and nothing is left."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 << 10, 40 << 10))

    out = tmp_path / "ev"
    p = subprocess.run([*PY, "eval", str(carphone), "--checkpoint", "tiny_b0.0064", "--frames", "2", "--save-decoded",
                        "--no-progress", "-o", str(out)], capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"mobilecodec eval: error: File too large: {out / 'streams' / 'carphone_tiny_b0.0064.y4m'}\n"
    assert not out.exists()


def test_a_device_that_is_full_is_named(tmp_path):
    """An output that is a device (here a link to /dev/full, which refuses every write with ENOSPC)
    gets the finished bytes appended; that write failed with 'No space left on device' and no name
    (I/O audit). The link stays a link."""
    link = tmp_path / "s.mnvc"
    link.symlink_to("/dev/full")
    assert_clean_error(cli_here("encode", "carphone", "--checkpoint", "tiny_b0.0064", "--frames", "1", "-o", link),
                       f"No space left on device: {link}")
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["s.mnvc"]
