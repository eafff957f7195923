"""Timings, memory and progress of a prediction run (what report.json says about how the run went)."""

from __future__ import annotations

import threading
import time


class StageClock:
    """Seconds per stage of the streaming loop. On CUDA, stages are timed with events read at the band's
    synchronisation point, so timing adds no synchronisation of its own."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds: dict[str, float] = {}
        self._events: list = []

    def mark(self):
        """A point in time: ``perf_counter()`` on the CPU, a recorded CUDA event on the GPU."""
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, stage: str, start, end) -> None:
        """Add the time from mark ``start`` to mark ``end`` to ``stage``."""
        if self.cuda:
            self._events.append((stage, start, end))
        else:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + end - start

    def collect(self) -> None:
        """Read the CUDA events recorded so far (call after a synchronisation)."""
        for stage, start, end in self._events:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + start.elapsed_time(end) / 1000.0
        self._events.clear()


class HostTimes:
    """Wall seconds per host stage, added from any thread."""

    STAGES = ("wait_read_s", "finish_s", "wait_write_s", "write_s_all_threads", "sieve_s_all_threads",
              "polygonise_s_all_threads")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def timed(self, stage: str, fn, *args, **kwargs):
        """Call ``fn`` and add its wall time to ``stage``."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.add(stage, time.perf_counter() - start)


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far (Linux ``VmHWM``), in MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def progress_bar(**kwargs):
    """A tqdm bar (tiles/s, ETA) on stderr (``file``); a line every 30 s when that is not a terminal (a log file, a
    pipe: :class:`geocamat.progress_lines.LineProgress`), none with ``disable=True``; a silent stand-in if tqdm is
    not installed."""
    import sys

    from geocamat.progress_lines import LineProgress, is_terminal

    if not is_terminal(kwargs.get("file") or sys.stderr):
        return LineProgress(**kwargs, quiet=kwargs.get("disable") is True)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with lightning
        class _Silent:
            def update(self, n: int) -> None:
                pass

            def close(self) -> None:
                pass

        return _Silent()
    return tqdm(**kwargs)
