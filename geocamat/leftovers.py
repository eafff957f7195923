"""Leftovers of killed runs: temporary folders tagged with their process id, removed once it is gone.

A run that is killed (SIGKILL, a closed laptop, a lost node) cannot clean up after itself. Every temporary
folder geocamat makes therefore carries the PID of its run, and the next run removes those whose process
no longer exists, so leftovers never pile up.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def run_tempdir(prefix: str, parent: str | os.PathLike | None = None) -> Path:
    """A new temporary folder ``{prefix}{pid}-XXXX`` (in ``parent``, default the system's temporary folder),
    after removing the folders of that prefix left by processes that no longer exist."""
    parent = Path(parent or tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    if parent.is_dir():
        for entry in parent.iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_dir() and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
