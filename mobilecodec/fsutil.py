"""Atomic file and folder writes: results appear complete under their final name or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

#: the errors of a write that ran out of room: the OSError of a write() names no file
_NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike, written: str | os.PathLike) -> Iterator[None]:
    """Give a full disk or a file size limit met in the block `path` as its file name, where it was
    `written` (the temporary file or folder that becomes `path`) that met it: a write() reports
    ENOSPC and EFBIG without a name, and the user saw 'error: No space left on device' alone. Work
    in the block that writes elsewhere (a temporary folder in /tmp) keeps its unnamed error."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:  # a write that ran out of room inside the temporary folder is named
            # where it was going ('File too large: .pkg.2173.2hrl_czy.part/checkpoint.pt': output audit)
            names = [_moved(f, written, path) for f in (exc.filename, exc.filename2)]
            if exc.errno not in (*_NO_ROOM, errno.EIO) or names == [exc.filename, exc.filename2]:
                raise
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), names[0], None, names[1]) from exc
        if not _ran_out_in(exc, Path(written)):
            raise
        raise _named(exc, path) from exc


def _moved(name: Any, written: str | os.PathLike, path: str | os.PathLike) -> Any:
    """A file name inside `written` (the temporary file or folder) as the same place inside `path`;
    any other name (or None, or a descriptor) as it is."""
    if not isinstance(name, (str, os.PathLike)):
        return name
    rel = os.path.relpath(os.path.abspath(name), os.path.abspath(written))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return name
    return str(path) if rel == os.curdir else str(Path(path) / rel)


def _named(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc` again, naming `path` (a write() names no file)."""
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def failed_path(exc: OSError) -> str | None:
    """The file an OSError is about, for its one-line message: a copy that fills the disk or meets
    the file size limit names its source first and the destination second (shutil), and the full
    disk is the destination's (eval named its temporary copy in /tmp, which had 69 GB free)."""
    if exc.errno in _NO_ROOM and exc.filename2:
        return str(exc.filename2)
    return None if exc.filename is None else str(exc.filename)


def _ran_out_in(exc: OSError, written: Path) -> bool:
    """Whether `exc` (ENOSPC or EFBIG) happened in `written`: its file system has (nearly) no room
    left, or a file in it reached the process's file size limit."""
    import resource

    if exc.errno == errno.ENOSPC:
        where = written if written.exists() else written.parent
        with contextlib.suppress(OSError):
            st = os.statvfs(where)
            return st.f_bavail * st.f_frsize < (1 << 20)
        return False
    if exc.errno == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        files = [written] if written.is_file() else list(written.rglob("*")) if written.is_dir() else []
        return limit != resource.RLIM_INFINITY and any(f.is_file() and f.stat().st_size >= limit for f in files)
    return False


# Hidden temporary names carry the writing process's id, so that the next write into the same place
# can tell what a killed run (SIGKILL, the OOM killer) left from what a running one is writing.


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's live process; no such pid
        return True
    return True


#: the random part tempfile puts in a name (8 characters of its alphabet)
_TEMP_PART = r"[a-z0-9_]{8}"


def _new_temp(folder: Path, prefix: str, suffix: str = "", is_dir: bool = False, clear: bool = True) -> Path:
    """A new hidden temporary file (or folder) in `folder`, named `prefix` + pid + '.' + tempfile's random
    part + `suffix`, the one naming `_dead_leftovers` recognises; with `clear`, first removes the files
    (folders) of that naming that a killed process left."""
    if clear:
        for left in _dead_leftovers(folder, prefix, suffix):
            if left.is_dir() == is_dir:
                _remove(left)
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.", suffix=suffix, dir=folder))
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(tmp)


def _dead_leftovers(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """Entries of `folder` named exactly as `_new_temp` names its temporary files and folders:
    `prefix` + pid + '.' + tempfile's random part + `suffix`, whose process is gone (so a user's
    `.x.2019-backup` never matches)."""
    import re

    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d{1,9})\." + _TEMP_PART + re.escape(suffix) + "$")
    out = []
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            out.append(entry)
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _restore_set_aside(folder: Path) -> None:
    """Put back the earlier files a killed `replacing_files` had set aside in `folder` (.earlier-<pid>-*)
    where nothing stands now; what cannot go back stays there, named in a warning."""
    import warnings

    from mobilecodec.errors import InputWarning

    for aside in _dead_leftovers(folder, ".earlier-"):
        try:
            paths = json.loads((aside / "paths.json").read_text())
        except (OSError, ValueError):
            paths = None
        kept = []
        for i, path in enumerate(paths or []):
            copy, target = aside / str(i), Path(path)
            if not (copy.exists() or copy.is_symlink()):
                continue
            if not target.is_absolute() or target.exists() or target.is_symlink() or not target.parent.is_dir():
                kept.append(target.name)  # a newer file stands there, or its folder is gone: not ours to decide
                continue
            try:
                os.replace(copy, target)
            except OSError:
                kept.append(target.name)
        if paths is not None and not kept:
            shutil.rmtree(aside, ignore_errors=True)
        else:
            warnings.warn(InputWarning(f"{aside} holds files a killed run set aside"
                                       + (f" ({', '.join(kept)}: newer ones stand in their place, or their "
                                          "folder is gone)" if kept else "")
                                       + "; move back what you need, then delete it"))


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a path that cannot be created: its nearest existing ancestor must be
    a writable folder (missing folders below it are created when the output is written)."""
    from mobilecodec.errors import InputError

    p = Path(path)
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {p}: folder {parent} is not writable")
    try:  # os.access trusts the mode bits: root passes them on /proc, /sys or a read-only mount
        import tempfile

        with tempfile.NamedTemporaryFile(dir=parent, prefix=".mobilecodec-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write {p}: folder {parent} takes no new files ({exc.strerror})") from None
    return p


def nonempty_path(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` as a Path, refusing an empty one: Path('') is '.', the current folder, which the
    checks after it then called "a folder, not a stream file" (`info ''`)."""
    from mobilecodec.errors import InputError

    if not os.fspath(path).strip():
        raise InputError(f"the {what} path is empty: name a file")
    return Path(path)


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Refuse an input that is missing, a folder, or not a regular file (a pipe or a device, which
    the readers cannot seek in): one message for each, naming `what` the file should be."""
    from mobilecodec.errors import InputError

    p = nonempty_path(path, what)
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a {what}")
    if not p.exists():
        raise InputError(f"no such {what}: {p}")
    if not p.is_file():
        raise InputError(f"{p} is not a regular file (a pipe or a device): save it to a file first")
    return p


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output file path that is a folder or cannot be created."""
    from mobilecodec.errors import InputError

    p = Path(path)
    if _written_in_place(p):  # /dev/stdout, a FIFO: no new file is made beside it (/dev is root's alone)
        if not os.access(p, os.W_OK):
            raise InputError(f"cannot write {p}: not writable")
        return p
    p = check_writable(path)
    if p.is_dir():
        raise InputError(f"output {p} is a folder; name a file")
    _refuse_read_only(p)
    return p


def _refuse_read_only(p: Path) -> None:
    """InputError for an existing file its owner made read-only: it was replaced (a rename needs only
    the folder writable) and came back writable, where `cp` or a shell's `>` refuse (output audit)."""
    from mobilecodec.errors import InputError

    if p.is_file() and not os.access(p, os.W_OK):
        raise InputError(f"output {p} is read-only; make it writable (chmod u+w) to replace it, or name another")


#: the list of entries a folder replaced whole (`atomic_dir` with a marker) was written with: an entry
#: not in it was put there since (a user's notes, a compile folder made inside a package), and the
#: next replacement keeps it
WRITTEN = ".mobilecodec-written.json"


def written_entries(folder: Path) -> list[str]:
    """Every file and folder under `folder` by its relative path ('graphs', 'graphs/i_analysis.onnx'):
    the `WRITTEN` list a folder replaced whole is written with."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def foreign_entries(folder: Path) -> list[str]:
    """The entries of a folder replaced whole that the run which wrote it did not write (by its
    `WRITTEN` list; none where it has no list, as a folder of an older version has not), by their
    relative paths: inside a folder the run wrote too (a user's notes in a package's graphs/ went with
    the old package: export audit, session 39). A folder the list names without any entry under it
    (a list of before session 39 named the top level alone) counts as written whole."""
    try:
        written = set(json.loads((folder / WRITTEN).read_text()))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError):
        written = set()
    out: list[str] = []

    def walk(sub: Path, prefix: str) -> None:
        for e in sorted(sub.iterdir(), key=lambda e: e.name):
            rel = prefix + e.name
            if rel == WRITTEN:
                continue
            if rel not in written:
                out.append(rel)
            elif e.is_dir() and not e.is_symlink() and any(w.startswith(rel + "/") for w in written):
                walk(e, rel + "/")

    walk(folder, "")
    return out


def check_output_dir(path: str | os.PathLike, marker: str | None = None, marker_format: str | None = None) -> Path:
    """Refuse an output folder path that is a file or cannot be created. With `marker` (the file an
    earlier run of the same command leaves, e.g. manifest.json) the folder is to be replaced, so a
    non-empty folder without it is refused: replacing it would delete someone else's files, and so
    are the current folder and one another process holds (`run_lock`). With
    `marker_format` the marker is JSON whose "format" must be that one: export and compile both
    leave a manifest.json, and neither may replace the other's folder."""
    from mobilecodec.errors import InputError

    p = check_writable(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"output {p} exists and is not a folder")
    if marker is not None and p.is_dir() and any(p.iterdir()) and not (p / marker).is_file():
        raise InputError(f"output folder {p} is not empty and holds no {marker} of an earlier run; "
                         f"replacing it would delete its files: name a new or empty folder")
    if marker is not None and p.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise InputError(f"output folder {p} holds the current folder, and is replaced whole; name another folder")
    if marker is not None:
        check_not_in_use(p)
    if marker_format is not None and p.is_dir() and (p / marker).is_file():
        try:
            found = json.loads((p / marker).read_text()).get("format") or "no format"
        except (OSError, ValueError, AttributeError):
            found = "unreadable"
        if found != marker_format:
            raise InputError(f"output folder {p} holds a {marker} of another kind ({found}, "
                             f"not {marker_format}); replacing it would delete its files: name a new or empty folder")
    # an existing folder is written into or replaced: the check above saw only its parent, and the run
    # failed after all its work, naming a hidden temporary folder (output audit); last, so that a folder
    # that is not ours is refused as such first, and only one this command made is walked
    if p.is_dir():  # replaced whole (marker): every folder in it is emptied
        inside = [q for q in p.rglob("*") if q.is_dir() and not q.is_symlink()] if marker is not None else []
        for d in [p, *inside]:
            if not os.access(d, os.W_OK | os.X_OK):
                raise InputError(f"output folder {p} is not writable" if d == p else
                                 f"output folder {p} cannot be replaced: its folder {d} is not writable")
    return p


def check_planned_outputs(out: str | os.PathLike, files: Iterable[str], folders: Iterable[str] = (),
                          kept: Iterable[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """Refuse, before any work, the names a command will write into the folder `out` (relative to
    it) where a folder stands in a file's place or a file in a folder's (found only when publishing,
    after the whole run), or that are one of the paths in `kept` ((what, path): the files the
    command reads, its --json), which the output would silently replace."""
    from mobilecodec.errors import InputError

    out = Path(out)
    for name in folders:
        if (out / name).exists() and not (out / name).is_dir():
            raise InputError(f"{out / name} is a file where this command writes a folder; move it or name another -o")
    others = [(what, Path(p)) for what, p in kept if p not in (None, "", "-")]
    for name in files:
        path = out / name
        if path.is_dir():
            raise InputError(f"{path} is a folder where this command writes a file; move it or name another -o")
        _refuse_read_only(path)
        for what, other in others:
            same = (os.path.samefile(path, other) if path.exists() and other.exists()
                    else path.resolve() == other.resolve())
            if same:
                raise InputError(f"{path}, which this command writes, is {what}; name another -o or move it")


def _written_in_place(p: Path) -> bool:
    """An existing device, pipe or terminal, or a path under /dev or /proc (/dev/stdout names whatever
    descriptor 1 is, a redirected file too): `atomic_path` appends to it, never renames onto it."""
    return p.exists() and (not p.is_file() and not p.is_dir() or str(p.absolute()).startswith(("/dev/", "/proc/")))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    `suffix` keeps the extension of the temporary file (ffmpeg picks its muxer from it).
    """
    given = check_output_file(path)
    if _written_in_place(given):
        # a device, pipe or terminal (/dev/null, a FIFO; /dev/stdout and /dev/fd/N, which name whatever
        # the descriptor is, a redirected file too) gets the finished bytes appended: a renamed file
        # would replace the node itself (as root, /dev/null), and opening it to write would empty
        # the file a redirection collects the command's text in
        with tempfile.TemporaryDirectory(prefix="mobilecodec-out-") as work:
            tmp_path = Path(work) / f"out{suffix or given.suffix}"
            with naming_full_disk(given, tmp_path):
                yield tmp_path
            if tmp_path.exists():
                try:
                    with open(tmp_path, "rb") as src, open(given, "ab") as dst:
                        shutil.copyfileobj(src, dst)
                except OSError as exc:  # a write to the device fails for the device (/dev/full: ENOSPC)
                    if exc.filename:
                        raise
                    raise _named(exc, given) from exc
        return
    final = Path(os.path.realpath(given))  # a symlink's target is written; the link stays
    made = missing_folders(final.parent)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(final.parent, f".{final.name}.", suffix or final.suffix + ".part")
    try:
        with naming_full_disk(given, tmp_path):
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give results normal permissions
            os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        remove_empty(made)  # the folders made for it, as a failed run found them: absent
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, what: str = "run") -> Iterator[None]:
    """Hold `folder` for one process (a training or QAT run writes into it for hours): a second process
    is refused in one line instead of interleaving its checkpoints and logs with the first's. The lock
    is an flock on the hidden file `.NAME.lock` next to the folder (the folder itself is replaced whole
    by some writers), released by the kernel if the process dies, and removed on the way out."""
    folder = Path(folder).resolve()
    made = missing_folders(folder)  # removed again where the run leaves them empty (output audit)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.with_name(f".{folder.name}.lock")
    try:
        fd = _take_lock(lock, f"{folder} is in use by another {what}")
    except BaseException:
        remove_empty(made)
        raise
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)
        remove_empty(made)


def check_not_in_use(folder: str | os.PathLike, what: str = "run") -> None:
    """InputError, as `run_lock` gives it, while another process holds `folder`: a --resume read the
    running run's missing state first and said "nothing to resume, start without --resume" (walk-through)."""
    if (holder := _lock_holder(Path(folder))) is not None:
        raise _in_use(f"{folder} is in use by another {what}", holder)


def _in_use(in_use: str, holder: str) -> Exception:
    """The one refusal of a folder another process holds (`run_lock`, `check_not_in_use`)."""
    from mobilecodec.errors import InputError

    return InputError(f"{in_use} (pid {holder}); wait for it to end or choose another -o")


def _lock_holder(folder: Path) -> str | None:
    """The pid of another process holding `folder`'s `run_lock` (a QAT writing into it), else None:
    a folder replaced whole must not be replaced under it (this process's own lock does not count)."""
    import fcntl

    lock = folder.resolve().with_name(f".{folder.resolve().name}.lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        return None if holder == str(os.getpid()) else holder or "?"
    except OSError:
        return None
    finally:
        os.close(fd)


def _take_lock(lock: Path, in_use: str) -> int | None:
    """An open descriptor of `lock` holding its flock, with this pid written in it; InputError (`in_use`
    and the holder's pid) while another process holds it; None where no lock can be taken (a folder we
    cannot write, whose first write then names the problem; a file system without flock, such as some
    network mounts): the run goes on unguarded, as before the lock existed."""
    import fcntl

    from mobilecodec.errors import InputError

    for _ in range(3):  # a holder may remove the file between our open and our lock: open again
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise _in_use(in_use, holder or "?") from None
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                lock.unlink()
            return None
        if lock.exists() and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)
    raise InputError(f"cannot lock {lock}: the file keeps changing")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str | None = None,
               marker_format: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds.
    `marker`, `marker_format`: see `check_output_dir` (a folder of another kind is refused); with a
    marker the folder gets its `WRITTEN` list, and entries the earlier run did not write (a user's
    notes, a compile folder made inside a package) move into the new folder, still not in its list,
    instead of going with the old one."""
    final = check_output_dir(path, marker, marker_format)
    made = missing_folders(final.parent)  # removed again if the run does not finish (export audit)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(final.parent, f".{final.name}.", ".part", is_dir=True)
    carried: list[str] = []
    old: Path | None = None
    try:
        with naming_full_disk(final, tmp):
            yield tmp
        if marker is not None:
            (tmp / WRITTEN).write_text(json.dumps(written_entries(tmp)))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if final.exists():  # set aside under a name of this process's own (two replacers shared one)
            if marker is not None:
                for name in foreign_entries(final):
                    if not (tmp / name).exists():  # a name the new run wrote too: the new one's
                        (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # one this run did not write
                        os.replace(final / name, tmp / name)
                        carried.append(name)
            old = _new_temp(final.parent, f".{final.name}.", ".old", is_dir=True)
            os.replace(final, old)
            os.replace(tmp, final)
            try:  # the new folder is in place: an earlier one that will not go is said, not an error
                shutil.rmtree(old)
            except OSError as exc:
                import warnings

                from mobilecodec.errors import InputWarning

                warnings.warn(InputWarning(f"the earlier {final.name} could not be removed ({exc.strerror or exc}): "
                                           f"it is at {old}"))
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            with _signals_held():  # a second Ctrl-C must not leave the unfinished folder behind
                home = final if final.exists() else old  # the earlier folder, where it is now
                for name in carried:  # never deleted with the unfinished new folder
                    with contextlib.suppress(OSError):
                        os.replace(tmp / name, home / name)
                shutil.rmtree(tmp)
                remove_empty(made)


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """`path` and its ancestors that do not exist yet, outermost first (what mkdir(parents=True) makes),
    so that an unfinished run can remove what it created."""
    path, missing = Path(path), []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (as `missing_folders` lists them) deepest first, those that are empty."""
    for d in reversed(folders):
        with contextlib.suppress(OSError):  # not empty: someone else's files, kept
            d.rmdir()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to their own handlers: a second
    Ctrl-C must not cut a restore short. (Python-level deferral: a signal mask would only hold them in
    this thread, while the kernel hands a process signal to any thread that does not block it.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in previous.items():
        if handler not in (signal.SIG_IGN, None):  # ignored stays ignored; None: not Python's to change
            signal.signal(sig, lambda num, _frame: caught.append(num))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler not in (signal.SIG_IGN, None):
                signal.signal(sig, handler)
        for sig in caught:
            signal.raise_signal(sig)


@contextlib.contextmanager
def replacing_files(paths: list[Path], work: str | os.PathLike) -> Iterator[None]:
    """Publish several files all or nothing: the existing files at `paths` wait in a hidden folder
    made in `work` (on their file system: they move by rename) while the block writes the new ones;
    if the block fails or is interrupted, whatever it wrote at `paths` is removed and the earlier
    files are put back. A path that holds a folder is refused before anything moves. Should the
    restore itself be cut off, the earlier files stay in the hidden folder (`.earlier-*` in `work`)."""
    from mobilecodec.errors import InputError

    for path in paths:
        if path.exists() and not path.is_file():
            raise InputError(f"cannot write {path}: it is a folder, not a file")
    aside = _new_temp(Path(work), ".earlier-", is_dir=True, clear=False)  # a killed run's: put back by `publishing`
    (aside / "paths.json").write_text(json.dumps([str(p.absolute()) for p in paths]))  # how a killed run's go back
    moved: list[tuple[Path, Path]] = []
    settled = False  # True once nothing in `aside` is needed any more

    def undo(written: bool) -> None:
        nonlocal settled
        with _signals_held():
            if written:  # every earlier file was set aside: what stands at the paths now is new
                for path in paths:
                    if path.is_file() or path.is_symlink():
                        with contextlib.suppress(OSError):
                            path.unlink()
            for copy, path in moved:
                if copy.exists():  # not when cut off between recording and moving it
                    os.replace(copy, path)
            settled = True

    try:
        try:
            for i, path in enumerate(paths):
                if path.is_file() or path.is_symlink():  # a link (even a dangling one) moves as itself
                    moved.append((aside / str(i), path))
                    os.replace(path, aside / str(i))
        except BaseException:
            undo(written=False)
            raise
        try:
            yield
        except BaseException:
            undo(written=True)
            raise
        settled = True
    finally:
        if settled:
            shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def publishing(out: str | os.PathLike) -> Iterator[Path]:
    """Write several files into the folder `out` (created) all or nothing: the block writes them into
    the staging folder it is given, inside `out` (subfolders too); when it ends, they move to the same
    places in `out` through `replacing_files`, and when it fails, none does, `out` keeps what it held,
    and the folders made for the purpose are removed again."""
    out = Path(out)
    made = missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    _restore_set_aside(out)
    stage = _new_temp(out, ".staging-", is_dir=True)
    try:
        yield stage
        staged = sorted(p.relative_to(stage) for p in stage.rglob("*") if not p.is_dir())
        for folder in sorted({out / rel.parent for rel in staged}):
            made += missing_folders(folder)
            folder.mkdir(parents=True, exist_ok=True)
        with replacing_files([out / rel for rel in staged], out):
            for rel in staged:
                os.replace(stage / rel, out / rel)
    except BaseException as exc:
        if isinstance(exc, OSError):  # the names a user knows, not the staging ones that are gone by now
            exc.filename, exc.filename2 = _moved(exc.filename, stage, out), _moved(exc.filename2, stage, out)
        with _signals_held():  # a second Ctrl-C must not leave the staging folder behind
            shutil.rmtree(stage, ignore_errors=True)
            remove_empty(made)
        raise
    shutil.rmtree(stage, ignore_errors=True)


def listed_files(results_json: str | os.PathLike, pick: Any) -> list[str]:
    """What an earlier run's JSON in an output folder listed as its files (`pick(obj)` -> names or
    paths); none when it is missing or unreadable."""
    try:
        return [str(f) for f in pick(json.loads(Path(results_json).read_text()))]
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return []


def remove_superseded(out: str | os.PathLike, earlier: Iterable[str], written: Iterable[str],
                      spare: Iterable[str | os.PathLike | None] = (), *, own: Callable[[str], bool]) -> None:
    """After a run into `out`: the files an earlier run there listed (`earlier`) that this one did
    not write again (`written`), removed, so that none of them is taken for this run's (a sweep
    rerun with fewer points). Both are names relative to `out`; only files inside it go, only names
    of the kind the command itself writes (`own(name)`: the earlier JSON may be anyone's, and one
    listing `notes.txt` removed it), never one of `spare` (what the run read: a rerun's input may be
    an earlier run's output), and a listed link goes as itself, not its target."""
    here = Path(out).resolve()
    earlier = [f for f in earlier if own(f)]

    def place(f: str) -> Path:  # the folder resolved, the name itself kept (a link is not followed)
        p = here / f
        return p.parent.resolve() / p.name

    keep = {place(f) for f in written}
    spared = {Path(p).resolve() for p in spare if p is not None and os.path.exists(p)}
    for f in {place(f) for f in earlier} - keep:
        if not f.is_relative_to(here) or f == here or not (f.is_file() or f.is_symlink()):
            continue
        if f.is_symlink() or f.resolve() not in spared:
            with contextlib.suppress(OSError):
                f.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def names_inside(relative: str) -> bool:
    """Whether a file name a manifest records stays inside its folder by its words alone: not absolute,
    no '..'. A symlink inside is the user's to make (`cp -rs` of a package): resolving it refused a
    package whose graphs it pointed at elsewhere, as lying outside the package."""
    p = Path(relative)
    return bool(relative) and not p.is_absolute() and ".." not in p.parts


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_finite(obj: Any) -> Any:
    """`obj` with every inf or NaN float replaced by None: JSON has no Infinity (Python writes one that
    jq and JSON.parse refuse). An infinite PSNR (identical planes) is thus written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_finite(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """`obj` as indented, strictly valid JSON text (non-finite floats as null: `json_finite`)."""
    return json.dumps(json_finite(obj), indent=2, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON (`json_text`) to `path` through a temporary file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_path() -> Path:
    """Where `cache_dir` is ($MOBILECODEC_CACHE or ~/.cache/mobilecodec), without creating it."""
    root = os.environ.get("MOBILECODEC_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mobilecodec"


def cache_dir() -> Path:
    """Folder for converted sample clips and other derived data ($MOBILECODEC_CACHE or ~/.cache)."""
    p = cache_path()
    p.mkdir(parents=True, exist_ok=True)
    return p
