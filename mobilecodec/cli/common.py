"""Argument types and small helpers shared by the subcommands (standard library only)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence, TextIO

# where `emit_json(obj, "-")` writes: the real stdout; `main` sends a command's text to stderr then
JSON_STDOUT: list[TextIO] = []


@dataclass(frozen=True)
class Output:
    """What a command's `-o` names, checked by `main` before any work: a file, or a folder the
    command writes into, or (with `marker`, the file an earlier run leaves) one it replaces whole."""

    kind: str  # "file" or "folder"
    marker: str | None = None
    marker_format: str | None = None  # the "format" a JSON marker must name (export and compile share one name)
    dest: str = "output"
    #: the folder holds JSON files the command names itself (check-int8's report and RD results): a
    #: --json inside it could replace one, as it would go with a folder replaced whole
    json_outside: bool = False


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable or destructive output paths (`-o`, `--json`) with a one-line error before the
    command computes anything, instead of a traceback after it."""
    from mobilecodec.fsutil import check_output_dir, check_output_file

    from mobilecodec.errors import InputError

    spec: Output | None = getattr(args, "_output", None)
    out = getattr(args, spec.dest, None) if spec is not None else None
    for value, flag in ((out, "-o"), (getattr(args, "json", None), "--json")):
        if isinstance(value, str) and not value.strip():  # '' was the current folder: eval wrote its files there
            raise InputError(f"{flag} is empty: name a {'folder' if flag == '-o' and spec.kind == 'folder' else 'file'}")
    if out is not None:
        if spec.kind == "file":
            check_output_file(out)
            _refuse_an_input(args, out, f"-o {out}", skip=(spec.dest, "json"))
        else:
            check_output_dir(out, spec.marker, spec.marker_format)
            if spec.marker is not None:
                _refuse_inside_an_input(args, out, skip=(spec.dest, "json"))
    path = getattr(args, "json", None)
    if path not in (None, "-"):
        check_output_file(path)
        # a folder with a marker is replaced whole: a JSON inside it would go with it (or go first)
        if out is not None and _same_or_under(Path(path), Path(out),
                                              spec.kind == "folder" and (spec.marker is not None or spec.json_outside)):
            raise InputError(f"--json {path} is where -o writes; name a JSON file outside {out}")
        _refuse_an_input(args, path, f"--json {path}", skip=("json", spec.dest if spec is not None else "output"))


def _same_or_under(path: Path, out: Path, folder: bool) -> bool:
    """Whether `path` is `out`, or (with `folder`) lies inside it."""
    a, b = path.resolve(), out.resolve()
    return a == b or (folder and b in a.parents)


def _refuse_an_input(args: argparse.Namespace, path: str, what: str, skip: tuple[str, ...]) -> None:
    """Refuse an output file that is one of the files the command reads (an input video, stream,
    checkpoint or JSON) or a file inside a folder it reads (a package's manifest.json): writing it
    would destroy the input before or while it is read."""
    import os

    from mobilecodec.errors import InputError

    if os.path.isdir(path):
        return
    exists = os.path.isfile(path)
    for dest, value in vars(args).items():
        if dest in skip or dest.startswith("_"):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not isinstance(v, str):
                continue
            names = {v, *v.split(",")}  # comma lists (--checkpoint A,B), and a name holding a comma
            implied = {m for n in names if n for m in _read_through(n)}
            for name in names | implied:
                # what a name stands for may be made before it is read (a sample clip's cached .y4m)
                if name and (os.path.samefile(name, path) if exists and os.path.isfile(name)
                             else name in implied and os.path.realpath(name) == os.path.realpath(path)):
                    raise InputError(f"{what} is the file this command reads as {dest.replace('_', ' ')}; "
                                     f"name another output")
                if name and exists and os.path.isdir(name) and _same_or_under(Path(path), Path(name), True):
                    raise InputError(f"{what} is a file inside {name}, which this command reads as "
                                     f"{dest.replace('_', ' ')}; name another output")


def _read_through(name: str) -> list[str]:
    """What a command reads through an input without its being named: the file a shipped checkpoint's
    or a sample clip's name stands for, the export package a compile
    folder was compiled from (as if named: its host tables and graphs), the manifest of the package
    whose manifest lists a graph file (`profile PKG/graphs/x.onnx` reads PKG/manifest.json). A
    manifest that says otherwise, or cannot be read, implies nothing (the command reports it)."""
    import json
    import os

    p = Path(name)
    try:
        if not p.exists():  # a name: the shipped checkpoint or the sample clip's cached .y4m it stands for
            from mobilecodec.checkpoint import shipped_checkpoints
            from mobilecodec.io.samples import SAMPLE_FILES, sample_cache_path

            shipped = shipped_checkpoints().get(name)
            return [str(shipped)] if shipped else [str(sample_cache_path(name))] if name in SAMPLE_FILES else []
        if os.path.isdir(p) and (p / "manifest.json").is_file():
            from mobilecodec.export.formats import CONTEXT_FORMAT

            ctx = json.loads((p / "manifest.json").read_text())
            if (isinstance(ctx, dict) and ctx.get("format") == CONTEXT_FORMAT and isinstance(ctx.get("package"), str)
                    and isinstance(ctx.get("package_relative") or "", str)):
                from mobilecodec.runtime.engine import compiled_package

                return [str(compiled_package(p, ctx))]
        elif p.suffix.lower() == ".onnx" and os.path.isfile(p):
            from mobilecodec.runtime.profile_any import package_of

            found = package_of(p)  # the package profile itself finds the graph in (its manifest lists it)
            if found is not None:
                return [str(found[0] / "manifest.json")]
    except (OSError, ValueError):
        return []
    return []


#: the options through which the commands that replace their -o folder whole read files or folders
#: (not their other strings: a subcommand's name or a config name may name a folder by chance)
INPUT_DESTS = frozenset({"checkpoint", "check", "int8", "package", "calibration", "data", "w8a16", "clip",
                         "calib_clip"})


def _refuse_inside_an_input(args: argparse.Namespace, out: str, skip: tuple[str, ...]) -> None:
    """Refuse an output folder (replaced whole) that holds a file or folder the command reads
    (replacing it would delete the input: `qat --checkpoint Q/quantized.pt -o Q`), or that lies
    inside a folder it reads (the run that rewrites that folder, an export of the package a compile
    folder sits in, would delete it)."""
    import os

    from mobilecodec.errors import InputError

    for dest, value in vars(args).items():
        if dest in skip or dest not in INPUT_DESTS:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(v, str) or not v or not os.path.exists(v):
                continue
            what = dest.replace("_", " ")
            if _same_or_under(Path(v), Path(out), True):
                raise InputError(f"-o {out} holds {v}, which this command reads as {what}, and would be replaced "
                                 f"whole; write to another folder")
            if os.path.isdir(v) and _same_or_under(Path(out), Path(v), True):
                raise InputError(f"-o {out} is inside {v}, which this command reads as {what} "
                                 f"(whatever rewrites {v} would delete it); name a folder outside it")


def parse_hw(text: str) -> tuple[int, int]:
    """Parse 'HxW' (e.g. '1080x1920') into (height, width)."""
    return _size_pair(text, "HEIGHTxWIDTH such as 1080x1920")


def portrait_note(size: tuple[int, int] | None, flag: str = "--size") -> None:
    """A stderr note where an HxW size is taller than wide: encode, eval and baseline read WxH, so a
    swapped 1920x1080 here profiled or exported a portrait frame without a word (walk-through audit)."""
    if size is not None and size[0] > size[1]:
        h, w = size
        print(f"note: {flag} {h}x{w} reads HEIGHTxWIDTH: a portrait frame {h} high and {w} wide (landscape: "
              f"{flag} {w}x{h})", file=sys.stderr)


def parse_wh(text: str) -> tuple[int, int]:
    """Parse 'WxH' (the raw-video convention, e.g. '176x144') into (width, height)."""
    return _size_pair(text, "WIDTHxHEIGHT such as 176x144")


def _size_pair(text: str, expected: str) -> tuple[int, int]:
    """Two positive integers written 'AxB', in that order."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    from mobilecodec.io.frame import MAX_DIMENSION  # imported only when a size is given

    if max(a, b) > MAX_DIMENSION:
        raise argparse.ArgumentTypeError(f"each side must be at most {MAX_DIMENSION} (the stream format's "
                                         f"limit), got {text!r}")
    return a, b


def finite_float(text: str) -> float:
    """argparse type: a finite number (nan and inf pass most range checks and poison what follows)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def one_cold_run() -> dict[str, Any]:
    """How a command's own `seconds` were measured (its JSON `timing`): one cold run, the input's
    reading and the first call's setup included, at the thread setting of `--threads` (None: the
    libraries' defaults); warm speeds are what benchmarks/ measure."""
    from mobilecodec.runtime.threads import get_threads

    return {"runs": 1, "cold": True, "threads": get_threads(),
            "includes": "reading the input, first-call setup, writing the output"}


def display_name(text: str) -> str:
    """argparse type: a name shown in results and plots (an empty one fell back to the default silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name, got an empty one")
    if any(not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"a name must be printable text on one line, got {text!r}")
    return text


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    v = finite_float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def json_target(text: str) -> str:
    """argparse type of a script's or benchmark's --json: '-' or a file path that can be written,
    checked before the work (a folder or an unwritable path was refused only after minutes of it)."""
    from mobilecodec.errors import InputError
    from mobilecodec.fsutil import check_output_file

    if not text.strip():
        raise argparse.ArgumentTypeError("empty: name a file, or '-' for stdout")
    if text != "-":
        try:
            check_output_file(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def work_folder(text: str) -> str:
    """argparse type of a script's work or cache folder: an existing folder, or one that can be made
    (a file there raised FileExistsError after the script had loaded its models)."""
    from mobilecodec.errors import InputError
    from mobilecodec.fsutil import check_writable

    p = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: name a folder")
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    if not p.exists():
        try:
            check_writable(p)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_yuv_weights(text: str) -> tuple[float, float, float]:
    """argparse type: 'Y,U,V' into three positive plane weights (e.g. '6,1,1')."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three weights Y,U,V (e.g. 6,1,1), got {text!r}")
    return tuple(positive_float(p.strip()) for p in parts)  # type: ignore[return-value]


def parse_crf_list(text: str) -> list[float]:
    """argparse type: '23,28,33,38' into distinct numbers in CRF_MIN..CRF_MAX (ints stay ints); the
    x264 / x265 sweep of `baseline --crf` and `demo --baseline-crf`."""
    from mobilecodec.baselines.ffmpeg import crf_problem

    values: list[float] = []
    for item in text.split(","):
        item = item.strip()
        try:
            v = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"CRF values must be numbers, got {item!r} in {text!r}")
        if (problem := crf_problem(v)) is not None:
            raise argparse.ArgumentTypeError(f"{problem}, got {item!r}")
        values.append(int(v) if v.is_integer() else v)
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"CRF values must be distinct, got {text!r}")
    return values


def held_out_note(summary: dict[str, Any]) -> None:
    """ptq's and qat's stderr note when the int8 model was calibrated or (its float weights or the
    QAT) trained on the held-out clip: its figures there are no longer held-out ones."""
    held = [w for w, k in (("calibrated", "calibrated_on_held_out"), ("trained", "trained_on_held_out"))
            if summary.get(k)]
    if held:
        print(f"note: {' and '.join(held)} on the held-out evaluation clip (carphone): int8 figures measured on "
              "it are no longer held-out figures", file=sys.stderr)


def intra_period(text: str) -> int:
    """argparse type for our codec's --intra-period: 1..65535, what a stream header holds (a larger
    one failed after loading the model and opening the input, without the option's name)."""
    n = positive_int(text)
    from mobilecodec.bitstream.format import MAX_INTRA_PERIOD

    if n > MAX_INTRA_PERIOD:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_INTRA_PERIOD} (a stream header's field), got {text!r}")
    return n


def thread_count(text: str) -> int:
    """argparse type for --threads: 1..`runtime.threads.MAX_THREADS` (the libraries take a C int)."""
    from mobilecodec.runtime.threads import MAX_THREADS

    n = positive_int(text)
    if n > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {text!r}")
    return n


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """The `--threads` option shared by the commands that run the codec (`runtime.threads.set_threads`)."""
    p.add_argument("--threads", type=thread_count, default=None,
                   help="host threads for onnxruntime sessions, the integer hyper-synthesis and torch "
                        "(default: each library's own, usually all cores)")


def frame_rate(text: str) -> float:
    """argparse type for --fps: a number or a ratio as ffmpeg and y4m write it (30000/1001) within the
    readers' and the stream header's range (`io.frame.MIN_FPS`..`MAX_FPS`), refused at parse time with
    the value as typed."""
    from fractions import Fraction

    from mobilecodec.io.frame import MAX_FPS, MIN_FPS

    if "/" in text:
        try:
            v = float(Fraction(text.strip()))
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"expected a frame rate such as 25, 29.97 or 30000/1001, got {text!r}")
    else:
        v = positive_float(text)
    if not MIN_FPS <= v <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"expected a frame rate within {float(MIN_FPS):g}..{float(MAX_FPS):g} "
                                         f"fps, got {text!r}")
    return v


def seed_int(text: str) -> int:
    """A random seed: an integer in 0..2^64-1, what numpy's SeedSequence and torch.manual_seed take."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if not 0 <= v < 2 ** 64:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2^64-1, got {text}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0 commonly meaning off)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def positive_ints(text: str) -> list[int]:
    """argparse type: a comma-separated list of positive integers ('32,6'; blanks between commas
    are skipped), not empty."""
    values = [positive_int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected positive integers, comma-separated, got {text!r}")
    return values


def choice_list(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """argparse type: a comma-separated list of names, each one of `choices` (spaces around a name
    and blanks between commas are skipped), not empty."""
    known = tuple(choices)

    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in known]
        if not names:
            raise argparse.ArgumentTypeError(f"no name given in {text!r}; choose from {', '.join(known)} "
                                             "(comma-separated)")
        if bad:
            raise argparse.ArgumentTypeError(
                f"{', '.join(map(repr, bad))} not known; choose from {', '.join(known)} (comma-separated)")
        twice = sorted({v for v in names if names.count(v) > 1})
        if twice:  # `bdrate --metric psnr_yuv,psnr_yuv` printed its row twice (demo audit)
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, twice))} given twice in {text!r}")
        return names

    return parse


def add_refine_argument(p: argparse.ArgumentParser) -> None:
    """--refine STEPS: the encoder's latent refinement (`mobilecodec.codec.refine`), off by default."""
    p.add_argument("--refine", type=non_negative_int, default=None, metavar="STEPS",
                   help="refine each I-frame, motion and residual latent with STEPS (about 100) steps of stochastic "
                        "Gumbel annealing at the checkpoint's beta: a lower D + beta R, on whole clips fewer bits at a "
                        "higher PSNR (docs/results/rd.md), for a slower encode; the decoder and the stream format are "
                        "unchanged (0: off, as --block-modes 0; default: off)")


def add_block_modes_argument(p: argparse.ArgumentParser) -> None:
    """--block-modes B: the sender's P-frame block modes (`mobilecodec.codec.block_modes`), off by default."""
    p.add_argument("--block-modes", type=int, choices=(0, 8, 16, 32), default=None, metavar="B",
                   help="per BxB block of each P-frame the encoder picks the decoded frame, the prediction "
                        "alone or the reference's block (rate-distortion choice at the checkpoint's beta; "
                        "holds quality along the intra period); the stream carries the map (8, 16 or 32: 8 for "
                        "small frames, 32 from 720p up, where smaller maps cost more than they save; 0: off, "
                        "as in demo --block-modes 0; default: off)")


def given_options(args: argparse.Namespace, *dests: str) -> list[str]:
    """The options among `dests` that the user gave (value not None/False), as typed: for refusing
    options that do not apply to the chosen path instead of ignoring them."""
    # identity, not equality: a value of 0 (e.g. --warmup 0) was given too
    return [f"--{d.replace('_', '-')}" for d in dests if getattr(args, d) is not None and getattr(args, d) is not False]


def check_not_input(output: str, source: str, what: str) -> None:
    """Refuse an output folder that is the command's own input folder (it would be replaced)."""
    import os

    if os.path.exists(output) and os.path.exists(source) and os.path.samefile(output, source):
        from mobilecodec.errors import InputError

        raise InputError(f"-o {output} is the {what} this command reads; write to another folder")


def add_architecture_arguments(p: argparse.ArgumentParser) -> None:
    """--buffering / --warp: the config overrides of `init` and `train` (HyTIP buffering, warp mode)."""
    p.add_argument("--buffering", choices=("explicit", "implicit", "hybrid"), default=None,
                   help="what the recurrent buffer holds (HyTIP): explicit = the decoded frame and flow, "
                        "implicit = learned features, hybrid = both (default: the config's)")
    p.add_argument("--warp", choices=("block_overlap", "block", "dense", "none"), default=None,
                   help="motion compensation: block_overlap (one vector per block, blended across block edges), "
                        "block, dense (per-pixel flow, grid_sample) or none (default: the config's)")


def emit_json(obj: Any, path: str | os.PathLike | None) -> None:
    """Write `obj` as JSON to `path` ('-' for stdout), atomically for files."""
    if path is None:
        return
    if os.fspath(path) == "-":
        from mobilecodec.fsutil import json_text

        out = JSON_STDOUT[-1] if JSON_STDOUT else sys.stdout
        out.write(json_text(obj) + "\n")
        out.flush()
        return
    from mobilecodec.fsutil import write_json_atomic

    write_json_atomic(Path(path), obj)


def stdout_gone() -> bool:
    """Whether the BrokenPipeError being handled is stdout's: stdout is a pipe whose reader has gone
    (poll reports an error on its write end); a pipe of the command's own, a worker's, is another
    failure."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor (a captured stdout), or no poll here
        return False


def json_to_stdout(argv: Sequence[str]) -> bool:
    """Whether `argv` asks argparse for `--json -`, in any spelling it takes: `--json -`, `--json=-`
    and the abbreviations (`--js -`: its text went to stdout before the JSON, as a benchmark audit found)."""
    for k, a in enumerate(argv):
        if a == "--":
            break
        name, eq, value = a.partition("=")
        if len(name) > 2 and "--json".startswith(name):
            if value == "-" if eq else (k + 1 < len(argv) and argv[k + 1] == "-"):
                return True
    return False


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's or script's `main` and exit with its code; the project's own errors (bad
    input, a missing checkpoint or clip: `MobileCodecError`) end it as a command's do, with
    `<script>: error: <message>` on one line of stderr and exit code 2, instead of a traceback. With
    `--json -` its printed text goes to stderr and `emit_json(.., "-")` to stdout, alone."""
    import contextlib

    from mobilecodec.errors import MobileCodecError

    to_stdout = json_to_stdout(sys.argv[1:])
    if to_stdout:  # as a command's `--json -`: stdout carries the JSON alone, the script's text goes to stderr
        JSON_STDOUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
            code = main()
    except MobileCodecError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # the reader of stdout went away (`| head -1`): as a command, 128 + SIGPIPE,
        if not stdout_gone():  # another pipe (a worker's): not the reader leaving, a failure to report
            raise
        with contextlib.suppress(OSError):  # no traceback, and nothing more to flush into the closed pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    finally:
        if to_stdout:
            JSON_STDOUT.pop()
    sys.exit(code or 0)
