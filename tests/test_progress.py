"""The progress bar every command shares: live on a terminal, whole lines at a bounded rate in a log
(the demo's end-to-end check, no carriage returns in its piped stderr, is in test_demo.py)."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import termios
import time

from mobilecodec.progress import progress_bar


def _drive(bar, n: int, pause_s: float) -> None:
    with bar:
        for i in range(n):
            time.sleep(pause_s)
            bar.update(1)
            bar.set_postfix(step=i)  # tqdm refreshes at once on a postfix change: the log must not


def test_log_gets_whole_lines_at_most_one_per_interval():
    log, interval = io.StringIO(), 0.2
    t0 = time.monotonic()
    _drive(progress_bar(total=20, desc="work", unit="step", stream=log, log_interval_s=interval), 20, 0.03)
    elapsed = time.monotonic() - t0
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text and text.endswith("\n")
    lines = text.splitlines()
    # the first line only after one interval, then at most one per interval, plus the closing state
    assert 1 <= len(lines) <= int(elapsed / interval) + 1, (elapsed, lines)
    assert all(ln.startswith("work:") for ln in lines)
    assert "20/20" in lines[-1] and "step=19" in lines[-1]


def test_a_last_step_that_came_after_an_interval_is_logged_once():
    """The demo's QNN decode (one frame a second, a 30 s interval) logged its 32/32 line twice: once as
    the update's refresh, once as the closing state (session 40)."""
    log = io.StringIO()
    bar = progress_bar(total=2, desc="decode", unit="frame", stream=log, log_interval_s=0.1)
    with bar:
        for _ in range(2):
            time.sleep(0.15)
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "2/2" in lines[-1] and sum("2/2" in ln for ln in lines) == 1, lines


def test_a_bar_that_clears_itself_on_a_terminal_logs_its_end():
    log, interval = io.StringIO(), 0.1
    _drive(progress_bar(total=10, desc="encode", stream=log, log_interval_s=interval, leave=False), 10, 0.04)
    lines = log.getvalue().splitlines()
    assert lines and "10/10" in lines[-1], lines  # the log is not left at the last periodic line


def test_work_shorter_than_the_interval_logs_nothing():
    log = io.StringIO()
    _drive(progress_bar(total=5, desc="short", stream=log, log_interval_s=60.0), 5, 0.0)
    for _ in progress_bar(range(5), desc="iterated", stream=log, log_interval_s=60.0):
        pass
    assert log.getvalue() == ""


def test_nested_bars_leave_no_cursor_moves_in_a_log():
    log = io.StringIO()
    with progress_bar(total=3, desc="outer", stream=log, log_interval_s=0.05) as outer:
        for _ in range(3):
            _drive(progress_bar(total=2, desc="inner", stream=log, log_interval_s=0.05, position=1, leave=False),
                   2, 0.04)
            outer.update(1)
    text = log.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert "outer" in text and "3/3" in text.splitlines()[-1]


def test_disabled_bar_writes_nothing():
    log = io.StringIO()
    _drive(progress_bar(total=4, stream=log, enabled=False, log_interval_s=0.0), 4, 0.01)
    assert log.getvalue() == ""


def test_terminal_keeps_the_live_bar():
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        with os.fdopen(slave, "w", closefd=True) as tty:
            assert tty.isatty()
            _drive(progress_bar(total=3, desc="live", stream=tty, mininterval=0), 3, 0.0)
            tty.flush()
            chunks = []
            while select.select([master], [], [], 0.5)[0]:
                data = os.read(master, 65536)
                if not data:
                    break
                chunks.append(data)
    finally:
        os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    # redrawn in place from the start: carriage returns that are not the terminal's own \r\n
    assert len(re.findall("\r(?!\n)", out)) >= 3 and "live" in out and "3/3" in out
