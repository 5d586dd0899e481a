"""All-or-nothing publishing of several files (`fsutil.replacing_files`, `fsutil.publishing`): an
earlier run's files survive a failure at any step, including one of the renames themselves (injected
by making the n-th `os.replace` raise, as a full or vanishing disk would)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from mobilecodec import fsutil
from mobilecodec.errors import InputError


def _earlier(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"a.json": b"earlier a", "b.png": b"earlier b"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _contents(folder: Path) -> dict[str, bytes]:
    """Every entry: a file's bytes, None for a folder (a hidden one left behind shows here)."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


def _fail_on_replace(monkeypatch, n: int, exc: BaseException) -> None:
    """The n-th os.replace made through fsutil raises `exc` (1-based)."""
    calls, real = [0], os.replace

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        real(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", replace)


def test_success_replaces_and_adds_and_leaves_no_hidden_folder(tmp_path):
    _earlier(tmp_path)
    paths = [tmp_path / "a.json", tmp_path / "b.png", tmp_path / "c.mnvc"]
    with fsutil.replacing_files(paths, tmp_path):
        for p in paths:
            p.write_bytes(b"new " + p.name.encode())
    assert _contents(tmp_path) == {p.name: b"new " + p.name.encode() for p in paths}


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["full_disk", "ctrl_c"])
def test_failure_in_the_block_restores_the_earlier_files_and_removes_new_ones(tmp_path, exc):
    before = _earlier(tmp_path)
    paths = [tmp_path / "a.json", tmp_path / "b.png", tmp_path / "c.mnvc"]  # c: no earlier file
    with pytest.raises(type(exc)), fsutil.replacing_files(paths, tmp_path):
        paths[2].write_bytes(b"new c")
        paths[0].write_bytes(b"new a")
        raise exc
    assert _contents(tmp_path) == before


@pytest.mark.parametrize("n", [1, 2])
def test_failure_while_setting_aside_loses_nothing(tmp_path, monkeypatch, n):
    before = _earlier(tmp_path)
    _fail_on_replace(monkeypatch, n, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError), fsutil.replacing_files([tmp_path / "a.json", tmp_path / "b.png"], tmp_path):
        pytest.fail("the block must not run")
    assert _contents(tmp_path) == before


def test_a_cut_off_restore_keeps_the_earlier_files_in_the_hidden_folder(tmp_path, monkeypatch):
    """The put-back itself fails (the third rename: two set aside, then the first back): the files not
    yet back stay in .earlier-*, never deleted."""
    before = _earlier(tmp_path)
    _fail_on_replace(monkeypatch, 3, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError), fsutil.replacing_files([tmp_path / "a.json", tmp_path / "b.png"], tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")
    kept = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "paths.json"]
    assert sorted(kept) == sorted(before.values())  # each earlier file once, back or still aside


def test_signals_wait_while_files_are_put_back(tmp_path, monkeypatch):
    """A SIGINT raised while the earlier files go back is held until they are all back, also with other
    threads running (the kernel may hand the signal to any of them: torch's pools, tqdm's monitor)."""
    import threading

    stop = threading.Event()
    others = [threading.Thread(target=stop.wait, daemon=True) for _ in range(4)]
    for t in others:
        t.start()
    before = _earlier(tmp_path)
    calls, real = [0], os.replace

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == 3:  # the first put-back: a second Ctrl-C arrives now
            os.kill(os.getpid(), signal.SIGINT)
        real(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", replace)
    # Python's own SIGINT handler: a shell without job control (CI under nohup) starts us with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), \
                fsutil.replacing_files([tmp_path / "a.json", tmp_path / "b.png"], tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device")
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()
    assert _contents(tmp_path) == before


def test_a_folder_at_a_path_is_refused_before_anything_moves(tmp_path):
    before = _earlier(tmp_path)
    (tmp_path / "c.png").mkdir()
    with pytest.raises(InputError, match="c.png: it is a folder"), \
            fsutil.replacing_files([tmp_path / "a.json", tmp_path / "c.png"], tmp_path):
        pytest.fail("the block must not run")
    assert _contents(tmp_path) == {**before, "c.png": None}


def test_publishing_removes_the_folders_it_made_on_failure(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(OSError), fsutil.publishing(out) as stage:
        (stage / "x.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with fsutil.publishing(out) as stage:
        (stage / "x.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["x.json"]


def test_publishing_names_the_final_file_in_an_error(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(OSError) as info, fsutil.publishing(out) as stage:
        raise OSError(errno.ENOSPC, "No space left on device", str(stage / "profile.md"))
    assert info.value.filename == str(out / "profile.md")


def test_a_copy_that_fills_the_disk_names_its_destination(tmp_path):
    """shutil.copyfile names a full disk's error by its source first and its destination second:
    eval and baseline, which copy their work from /tmp into the output folder's staging, printed
    the /tmp copy ('No space left on device: /tmp/mobilecodec-eval-.../tiny_b0.0064.y4m', 69 GB
    free there). The message names the destination, as the user knows it."""

    out = tmp_path / "ev"
    with pytest.raises(OSError) as info, fsutil.publishing(out) as stage:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/mobilecodec-eval-x/a.y4m", None,
                      str(stage / "streams" / "a.y4m"))  # as shutil._fastcopy_sendfile sets them
    assert fsutil.failed_path(info.value) == str(out / "streams" / "a.y4m")
    other = OSError(errno.EACCES, "Permission denied", "/src", None, "/dst")  # not about room: the first
    assert fsutil.failed_path(other) == "/src" and fsutil.failed_path(OSError(errno.EIO, "I/O")) is None


def test_publishing_moves_subfolders_and_removes_the_ones_it_made_on_failure(tmp_path):
    """eval stages OUT/streams/*.mnvc this way: the subfolder is made in OUT on success only."""
    out = tmp_path / "ev"
    with pytest.raises(OSError) as info, fsutil.publishing(out) as stage:
        (stage / "streams").mkdir()
        (stage / "streams" / "s.mnvc").write_bytes(b"new")
        (stage / "r.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device", str(stage / "streams" / "s.mnvc"))
    assert not out.exists() and info.value.filename == str(out / "streams" / "s.mnvc")
    with fsutil.publishing(out) as stage:
        (stage / "streams").mkdir()
        (stage / "streams" / "s.mnvc").write_bytes(b"new")
    assert (out / "streams" / "s.mnvc").read_bytes() == b"new" and sorted(p.name for p in out.iterdir()) == ["streams"]


_KILLED = r'''
import os, signal, sys
from pathlib import Path
from mobilecodec import fsutil

kind, out = sys.argv[1], Path(sys.argv[2])
if kind == "path":
    with fsutil.atomic_path(out / "r.json") as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
elif kind == "dir":
    with fsutil.atomic_dir(out / "pkg") as tmp:
        (tmp / "g.onnx").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
elif kind == "publish":
    with fsutil.publishing(out) as stage:
        (stage / "a.json").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
else:  # killed while replacing: the earlier files are set aside, the new ones not yet in place
    with fsutil.replacing_files([out / "a.json", out / "b.png"], out):
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("kind", ["path", "dir", "publish", "replace"])
def test_what_a_killed_run_left_is_cleared_by_the_next(tmp_path, kind):
    """SIGKILL (the OOM killer) ends a run inside a write: its hidden temporary files and folders stay
    behind. The next write into the same place removes them (they name their dead process), and earlier
    files a killed replace had set aside go back where nothing new stands, instead of staying hidden."""
    import subprocess
    import sys

    before = _earlier(tmp_path)
    script = tmp_path.parent / f"killed_{kind}.py"
    script.write_text(_KILLED)
    proc = subprocess.run([sys.executable, str(script), kind, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1, hidden  # what the kill left
    if kind == "path":
        with fsutil.atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("whole")
        assert (tmp_path / "r.json").read_text() == "whole"
    elif kind == "dir":
        with fsutil.atomic_dir(tmp_path / "pkg") as tmp:
            (tmp / "g.onnx").write_text("whole")
        assert (tmp_path / "pkg" / "g.onnx").read_text() == "whole"
    else:
        if kind == "replace":
            assert not (tmp_path / "a.json").exists()  # set aside, hidden
        with fsutil.publishing(tmp_path) as stage:
            (stage / "c.mnvc").write_bytes(b"new c")
        assert {k: v for k, v in _contents(tmp_path).items() if k != "c.mnvc"} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_leftover_cleanup_spares_look_alike_names_and_restores_relative_paths(tmp_path, monkeypatch):
    """Only names of this module's own making, of dead processes, are cleared: a user's hidden
    `.pkg.2019-backup/`, `.r.json.20240101120000.bak` (a number no pid reaches) and a live process's
    temporary file stay. Files a killed replace set aside under a relative path (`-o res`) go back
    into that folder from any working folder."""
    import subprocess
    import sys

    (tmp_path / ".pkg.2019-backup").mkdir()
    (tmp_path / ".pkg.2019-backup" / "model.onnx").write_text("keep")
    (tmp_path / ".r.json.20240101120000.bak").write_text("keep")
    live = tmp_path / f".r.json.{os.getppid()}.abcd1234.json.part"
    live.write_text("a live writer's")
    with fsutil.atomic_dir(tmp_path / "pkg") as tmp:
        (tmp / "g.onnx").write_text("g")
    with fsutil.atomic_path(tmp_path / "r.json") as tmp:
        tmp.write_text("r")
    assert (tmp_path / ".pkg.2019-backup" / "model.onnx").read_text() == "keep"
    assert (tmp_path / ".r.json.20240101120000.bak").read_text() == "keep" and live.exists()
    # a killed replace whose paths were relative to its own working folder
    work = tmp_path / "w"
    before = _earlier(work / "res")
    script = tmp_path / "kill_rel.py"
    script.write_text("import os, signal\nfrom pathlib import Path\nfrom mobilecodec import fsutil\n"
                      "with fsutil.replacing_files([Path('res/a.json'), Path('res/b.png')], 'res'):\n"
                      "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=work, capture_output=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    monkeypatch.chdir(tmp_path)  # another working folder: 'res/a.json' from here is not the file
    with fsutil.publishing(work / "res") as stage:
        (stage / "c.mnvc").write_bytes(b"c")
    assert {k: v for k, v in _contents(work / "res").items() if k != "c.mnvc"} == before
    assert not (tmp_path / "res").exists()


LOCK_HOLDER = """
import sys, time
from mobilecodec import fsutil
with fsutil.run_lock(sys.argv[1], "training run"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_run_lock_refuses_a_second_process_until_the_first_is_gone(tmp_path):
    """Two processes training into one folder interleaved their checkpoints and logs (both exit 0,
    the folder a mix): the second is refused naming the first's pid, and once the first is gone (even
    killed outright) the folder is free again; a clean exit leaves no lock file."""
    import subprocess
    import sys

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"run is in use by another training run \(pid {holder.pid}\)"):
            with fsutil.run_lock(run, "training run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with fsutil.run_lock(run):  # the kernel released the killed holder's lock
        assert (tmp_path / ".run.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".run.lock").exists()


def test_replacing_a_folder_sets_the_old_one_aside_under_its_own_name(tmp_path):
    """atomic_dir set the earlier folder aside as `.NAME.old`, shared by every process: a second
    replacer deleted the first one's (an error "No such file or directory: manifest.json"), and a
    user's own `.out.old` folder was deleted outright."""
    mine = tmp_path / ".out.old"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's")
    for text in ("one", "two"):
        with fsutil.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f.txt").write_text(text)
    assert (tmp_path / "out" / "f.txt").read_text() == "two" and (mine / "keep.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "out"]


@pytest.mark.parametrize("n", [2, 3])
def test_what_no_run_wrote_survives_a_failed_replacement(tmp_path, monkeypatch, n):
    """A folder replaced whole carries over what its earlier run did not write (a user's notes); when
    setting the earlier folder aside (n=2) or putting the new one in place (n=3) fails, the notes are
    not deleted with the unfinished new folder."""
    out = tmp_path / "out"
    with fsutil.atomic_dir(out, marker="m.json") as tmp:
        (tmp / "m.json").write_text("{}")
    (out / "notes.txt").write_text("the user's")
    _fail_on_replace(monkeypatch, n, OSError(errno.EIO, "Input/output error"))  # 1: the notes carried over
    with pytest.raises(OSError), fsutil.atomic_dir(out, marker="m.json") as tmp:
        (tmp / "m.json").write_text("{}")
    kept = [p for p in tmp_path.rglob("notes.txt")]
    assert len(kept) == 1 and kept[0].read_text() == "the user's", kept


def test_run_lock_without_flock_support_runs_unguarded(tmp_path, monkeypatch):
    """Some network mounts refuse flock (ENOLCK): the run goes on as before the lock existed, with no
    traceback and no lock file left (failure injection: the kernel call raises as it does there)."""
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = False
    with fsutil.run_lock(tmp_path / "run"):
        ran = True
    assert ran and list(tmp_path.iterdir()) == []


def test_an_output_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    """`--json latest.json` where latest.json links to results/run1.json: the rename replaced the link
    with a file and the target kept the old figures. Now the target is replaced (atomically) and
    the link stays; a link to /dev/null writes into the device (the rename made the link a file,
    and a plain /dev/null would have been replaced itself, as root)."""
    target = tmp_path / "results" / "run1.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    fsutil.write_json_atomic(link, {"new": 1})
    assert link.is_symlink() and target.read_text().strip() == '{\n  "new": 1\n}'
    null = tmp_path / "null.json"
    null.symlink_to(os.devnull)
    fsutil.write_json_atomic(null, {"x": 1})
    import stat

    assert null.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_an_output_onto_a_pipe_is_written_into_it(tmp_path):
    """A FIFO (`--json fifo` read by another program) is written in place: the rename replaced the
    pipe with a regular file, and its reader got nothing."""
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the writer opens it
    try:
        fsutil.write_json_atomic(fifo, {"x": 1})
        assert b'"x": 1' in os.read(reader, 4096)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_failed_write_removes_the_folders_it_made(tmp_path):
    """`decode S -o new/deep/x.y4m` that fails (a hash mismatch) left new/deep behind, empty; the
    folders made for the file go again, an existing one stays."""
    with pytest.raises(RuntimeError):
        with fsutil.atomic_path(tmp_path / "new" / "deep" / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("the run fails")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with fsutil.atomic_path(tmp_path / "x.json"):
            raise RuntimeError("the run fails")
    assert list(tmp_path.iterdir()) == []


def test_superseded_files_go_but_not_what_the_run_reads_nor_a_links_target(tmp_path):
    """`remove_superseded` after a rerun: a file the earlier run listed and this one did not write goes;
    one the run read (its input) stays; a listed link goes as itself, its target (here a file of the
    same folder that this run wrote) stays; nothing outside the folder is touched, nor a listed name
    the command does not write (`own`: the earlier JSON can be anyone's)."""
    out = tmp_path / "OUT"
    out.mkdir()
    for name in ("old.mp4", "input.mp4", "kept.mp4", "target.mp4", "notes.txt"):
        (out / name).write_text(name)
    (out / "link.mp4").symlink_to(out / "target.mp4")
    (tmp_path / "outside.mp4").write_text("x")
    fsutil.remove_superseded(out, ["old.mp4", "input.mp4", "link.mp4", "kept.mp4", "../outside.mp4", "notes.txt"],
                             ["kept.mp4", "target.mp4"], spare=[out / "input.mp4", None],
                             own=lambda name: name.endswith(".mp4"))
    assert sorted(p.name for p in out.iterdir()) == ["input.mp4", "kept.mp4", "notes.txt", "target.mp4"]
    assert (out / "target.mp4").read_text() == "target.mp4" and (tmp_path / "outside.mp4").is_file()


def test_a_second_ctrl_c_during_cleanup_still_removes_the_unfinished_folder(tmp_path, monkeypatch):
    """The first Ctrl-C ends the work; a second one that lands while the unfinished folder is being
    removed cut the removal short (export left `.pkg.NNN.part/graphs` beside its output). Here the
    second SIGINT is raised from inside the removal itself."""
    import shutil

    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path, *a, **k):
        signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C again
        return real_rmtree(path, *a, **k)

    with pytest.raises(KeyboardInterrupt):
        with fsutil.atomic_dir(tmp_path / "pkg") as tmp:
            (tmp / "graphs").mkdir()
            (tmp / "graphs" / "a.onnx").write_bytes(b"x" * 100)
            monkeypatch.setattr(shutil, "rmtree", interrupted_rmtree)
            raise KeyboardInterrupt  # the first Ctrl-C
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert list(tmp_path.iterdir()) == []


def test_a_copy_a_size_limit_stopped_in_a_folder_names_its_destination(tmp_path):
    """A copy inside a folder made whole that meets a file size limit: the error names where the copy was
    going, in the final folder (its source was named instead, mapped to a path that never exists: review)."""
    import resource
    import subprocess
    import sys

    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (2 << 20))
    code = ("import shutil, sys; from pathlib import Path\n"
            "from mobilecodec.fsutil import atomic_dir, failed_path\n"
            "try:\n"
            "    with atomic_dir(Path(sys.argv[2]), marker='m') as tmp:\n"
            "        (tmp / 'sub').mkdir(); shutil.copyfile(sys.argv[1], tmp / 'sub' / 'copy.bin')\n"
            "except OSError as exc:\n"
            "    print(failed_path(exc))\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "R"
    p = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True, timeout=120,
                       preexec_fn=limit)
    assert p.stdout.strip() == str(out / "sub" / "copy.bin"), (p.stdout, p.stderr)
    assert sorted(os.listdir(tmp_path)) == ["big.bin"]
