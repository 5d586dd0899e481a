"""The one progress bar of every long-running command: a live bar on a terminal; where stderr is a
file or a pipe (a `nohup` log, CI), a plain line at most every `LOG_INTERVAL_S` seconds and nothing
for work shorter than that, so that `tail`, `grep` and `less` read the log (not one line of carriage
returns) and a short command's stderr holds only its own messages."""

from __future__ import annotations

import functools
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class _LogLines:
    """A text stream for tqdm that writes a refresh as a line of its own, at most one per `interval_s`
    (tqdm refreshes at once on every postfix change) and none in the first `interval_s` (the 0 % line,
    a short run's last one); a long run's closing state (`final`) is written whatever the interval."""

    def __init__(self, stream: IO[str], interval_s: float) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.start = time.monotonic()
        self.next_at = self.start + interval_s
        self.final = False
        self.state: Any = None  # the bar's (count, postfix) as it displays, and as last written: a closing
        self.written: Any = None  # state a refresh already wrote is not written again (only its rate moved)

    def write(self, s: str) -> None:
        line = s.replace("\r", "").replace("\x1b[A", "").strip()  # a nested bar's cursor moves, too
        if not line:  # tqdm clears a finished bar with blanks: not logged
            return
        now = time.monotonic()
        if self.final and self.state is not None and self.state == self.written:
            return
        if now >= self.next_at or (self.final and now >= self.start + self.interval_s):
            self.stream.write(line + "\n")
            self.next_at, self.written = now + self.interval_s, self.state

    def flush(self) -> None:
        self.stream.flush()


@functools.lru_cache(maxsize=1)
def _log_bar_class() -> type:
    """tqdm whose `close` marks its last write final, so that a long run's closing state is logged."""
    from tqdm import tqdm

    class LogBar(tqdm):
        def display(self, msg: str | None = None, pos: int | None = None) -> Any:
            log = getattr(self, "_log_lines", None)
            if log is not None:
                log.state = (self.n, self.postfix)
            return super().display(msg, pos)

        def close(self) -> None:
            log = getattr(self, "_log_lines", None)
            if log is not None:
                log.final = True
            super().close()

    return LogBar


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = True, stream: IO[str] | None = None,
                 log_interval_s: float = LOG_INTERVAL_S, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (or `stream`) over `iterable` or up to `total`, off when `enabled` is false;
    where the stream is not a terminal, a line every `log_interval_s` (module docstring). Other keywords
    go to tqdm."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    if bool(getattr(stream, "isatty", lambda: False)()):
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=stream, **kwargs)
    log = _LogLines(stream, log_interval_s)
    # leave: a logged line is never erased, and a bar that would clear itself must still log its end
    kwargs.update(file=log, mininterval=log_interval_s, maxinterval=log_interval_s, dynamic_ncols=False,
                  ascii=True, leave=True)
    bar = _log_bar_class()(iterable, total=total, desc=desc, unit=unit, disable=not enabled, **kwargs)
    bar._log_lines = log
    return bar
