"""Progress for logs: when output goes to a file or a pipe (batch jobs, CI, ``> run.log``), a line every so often
instead of a progress bar, whose carriage-return redraws pile up in the file as one line of thousands of updates.

:class:`LineProgress` stands in for a tqdm bar (``update``, ``n``, ``close``);
:class:`geocamat.tasks.epoch_lines.EpochLines` for Lightning's bar in training.
"""

from __future__ import annotations

import os
import sys
import time

#: seconds between two progress lines (``GEOCAMAT_PROGRESS_SECONDS`` changes it)
LINE_SECONDS = 30.0


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal (a progress bar can redraw itself there)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def line_seconds() -> float:
    """The interval between progress lines: ``GEOCAMAT_PROGRESS_SECONDS``, else :data:`LINE_SECONDS`."""
    try:
        return max(0.0, float(os.environ.get("GEOCAMAT_PROGRESS_SECONDS", LINE_SECONDS)))
    except ValueError:
        return LINE_SECONDS


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class LineProgress:
    """A progress bar's stand-in writing whole lines: ``desc: 120/800 tiles (15%), 4.1 tiles/s, ~2 min 46 s
    left``, at most every ``every`` seconds, and a last line when closed (work done within one interval prints
    nothing); nothing when ``quiet`` (it still counts, as a disabled tqdm bar does)."""

    def __init__(self, total: int | None = None, initial: int = 0, unit: str = "it", desc: str = "",
                 file=None, every: float | None = None, quiet: bool = False, **_ignored) -> None:
        self.total, self.n, self.unit, self.desc, self.quiet = total, int(initial), unit, desc, quiet
        self.file = file if file is not None else sys.stderr
        self.every = line_seconds() if every is None else every
        self._start_n = self.n
        self._t0 = self._last = time.monotonic()
        self._shown = self.n
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._write(now, done=bool(self.total) and self.n >= self.total)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            now = time.monotonic()
            if self.n != self._shown and (self._shown != self._start_n or now - self._t0 >= self.every):
                self._write(now, done=True)  # work shorter than one interval stays silent, as it started

    def _write(self, now: float, done: bool = False) -> None:
        self._last, self._shown = now, self.n
        if self.quiet:
            return
        elapsed = now - self._t0
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        units = self.unit + ("s" if self.unit and not self.unit.endswith("s") else "")
        text = f"{self.desc}: " if self.desc else ""
        if self.total:
            text += f"{self.n}/{self.total} {units} ({100 * self.n / self.total:.0f}%)"
        else:
            text += f"{self.n} {units}"
        text += f", {rate:.1f} {self.unit}/s" if rate >= 0.1 else f", {rate:.3f} {self.unit}/s"
        if done:
            text += f", {duration(elapsed)}"
        elif self.total and rate > 0 and self.n < self.total:
            text += f", ~{duration((self.total - self.n) / rate)} left"
        print(text, file=self.file, flush=True)
