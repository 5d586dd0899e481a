"""The `mobilecodec` command line: one subcommand per pipeline step.

Each subcommand lives in its own module `mobilecodec.cli.cmd_<name>` that defines
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. At top level those modules
import only the standard library and light modules of this package (no numpy, torch, aimet,
onnx or onnxruntime), so `mobilecodec --help` stays fast; the heavy ones are imported inside `run`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Sequence

from mobilecodec import __version__
from mobilecodec.errors import MobileCodecError, one_line

# Order is the order shown by --help: the demo first, then pipeline order, then tools.
COMMANDS: tuple[str, ...] = (
    "demo",
    "train",
    "ptq",
    "qat",
    "check-int8",
    "init",
    "encode",
    "decode",
    "eval",
    "profile",
    "export",
    "compile",
    "baseline",
    "bdrate",
    "info",
)


def _load(name: str):
    return importlib.import_module(f"mobilecodec.cli.cmd_{name.replace('-', '_')}")


class _StoreOnce(argparse._StoreAction):
    """argparse's 'store' refusing an option given twice: argparse keeps the last value silently, so
    `check-int8 --float A --float B` judged B alone and `--steps 100 ... --steps 10` trained 10."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string is not None:
            given = namespace.__dict__.setdefault("_given_once", {})
            if self.dest in given:
                first, flag = given[self.dest]
                shown = isinstance(values, (str, int, float))  # a converted --size pair would print as a tuple
                both = f" ({flag} {first} and {option_string} {values})" if shown else ""
                parser.error(f"{option_string} given twice{both}; give it once")
            given[self.dest] = (values, option_string)
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (plus a hint) and exit with code 2, and whose
    single-value options refuse to be given twice."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler that `main` installs, so that a killed command removes its
    temporary files (the atomic writers' `finally` blocks) as it does on Ctrl-C."""

    @classmethod
    def install(cls):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread may set handlers (e.g. main() called from a worker)

        def handler(signum, frame):
            raise cls()

        return (signal.signal(signal.SIGTERM, handler),)

    @staticmethod
    def restore(previous) -> None:
        import signal

        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = _Parser(
        prog="mobilecodec",
        description="Train, quantize, export, compile and profile a MobileNVC-style "
        "neural video codec for phone NPUs.",
    )
    parser.add_argument("--version", action="version", version=f"mobilecodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _command=name, _output=getattr(module, "OUTPUT", None), _parser=p)
    return parser


@contextlib.contextmanager
def _one_line_input_warnings(command: str):
    """Print each `InputWarning` as one 'mobilecodec CMD: warning: ...' line on stderr (once per
    message); other warnings as Python shows them."""
    import warnings

    from mobilecodec.errors import InputWarning

    seen: set[str] = set()
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, InputWarning):
                return shown(message, category, filename, lineno, file, line)
            if str(message) not in seen:
                seen.add(str(message))
                print(f"mobilecodec {command}: warning: {message}", file=sys.stderr)

        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = show
        yield


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's allocator failing (a RuntimeError naming the allocation) or onnxruntime's
    (its own exception type, "Failed to allocate memory")."""
    text = str(exc)
    return isinstance(exc, MemoryError) or any(s in text for s in (
        "can't allocate memory", "not enough memory", "Failed to allocate memory")) or "out of memory" in text.lower()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (`argv`, default sys.argv[1:]) and return its exit code; the console
    script and `python -m mobilecodec` reach it through `entry`."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a Ctrl-C in the first tenth of a second, while the command's modules load
        # and its arguments parse, was a 25-line traceback (output audit); later ones are the command's
        print("mobilecodec: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script and `python -m mobilecodec`: `main`, then exit with its code. Once the command
    is over, SIGINT and SIGTERM are ignored through the interpreter's teardown of torch and onnxruntime
    (0.1-3.6 s, every output complete): a Ctrl-C there ended a successful run with no word and exit
    status -2 or -15 (output audit, session 40). A handler that exits at once does not serve: Python
    puts the default ones back before that teardown. Only a teardown that hangs then needs SIGKILL."""
    import signal
    import threading

    code = main()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


def _main(argv: Sequence[str] | None) -> int:
    import os

    # onnxruntime otherwise writes telemetry files under ~/.cache and $TMPDIR on import.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # torch's OpenMP threads must sleep, not spin, between parallel regions (read when torch loads):
    # spinning threads on a busy or shared CPU turn each small host op into a wait for a time slice
    # (measured: block warp of a 768x1280 frame 2.3-5.9 s with 2 spinning threads, 0.17 s passive)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # importing torch._dynamo (aimet, torch.use_deterministic_algorithms, the profiler) makes an
    # empty $TMPDIR/torchinductor_<user> folder that nothing removes: keep it in our cache instead
    from mobilecodec.fsutil import cache_path

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_path() / "torchinductor"))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "_parser", None) is not None and not any(e.startswith("-") for e in extra):
        # inputs after options (`eval carphone -o ev bikes`): argparse takes a positional list in one
        # piece; parsed again intermixed, as the user meant (an unknown word is still refused there)
        words = list(sys.argv[1:] if argv is None else argv)
        command = args._command
        args, extra = args._parser.parse_intermixed_args(words[words.index(command) + 1:]), []
        args.command = command
    if extra:  # reported by the subcommand's parser, so the line names the command and its --help
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    import signal

    from mobilecodec.cli.common import JSON_STDOUT, check_outputs

    json_to_stdout = getattr(args, "json", None) == "-"
    if json_to_stdout:  # stdout carries the JSON alone; the command's text goes to stderr
        JSON_STDOUT.append(sys.stdout)
    stop = _Terminated.install()
    try:
        check_outputs(args)
        with contextlib.redirect_stdout(sys.stderr) if json_to_stdout else contextlib.nullcontext(), \
                _one_line_input_warnings(args._command):
            return int(args._run(args) or 0)
    except MobileCodecError as exc:
        msg = str(exc).strip().replace("\n", " ")
        print(f"mobilecodec {args._command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as a shell
        from mobilecodec.cli.common import stdout_gone  # reports it; another pipe's is an error to name

        if stdout_gone():
            return 141
        print(f"mobilecodec {args._command}: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written, a disk that fills up, ...
        from mobilecodec.fsutil import failed_path

        where = f": {path}" if (path := failed_path(exc)) else ""
        print(f"mobilecodec {args._command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except _Terminated:
        print(f"mobilecodec {args._command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"mobilecodec {args._command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: the traceback for the report, exit 2 ("an error"),
        if _out_of_memory(exc):  # not a bug: the work does not fit this machine
            print(f"mobilecodec {args._command}: error: out of memory ({one_line(exc, 200)}); a smaller "
                  f"--size or fewer frames may fit", file=sys.stderr)
            return 2
        import traceback      # never 1, which some commands use for a verdict (check-int8 FAIL, decode drift)

        traceback.print_exc()
        print(f"mobilecodec {args._command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        _Terminated.restore(stop)
        if json_to_stdout:
            JSON_STDOUT.pop()
