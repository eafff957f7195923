"""The error funnel: OS, GDAL/rasterio and torch failures turned into one-line user errors.

Whatever a command raises passes through :func:`user_error` (the CLI group calls it), so a full disk, a
read-only folder, a truncated GeoTIFF or an out-of-memory error reads as one line that names the file and
the fix, exactly like a :class:`geocamat.errors.GeocamatError` raised on purpose. Failures that are not the
user's (bugs) are left to the caller: ``None`` is returned.

Nothing heavy is imported here: rasterio, pyogrio and torch exceptions are recognised by their class and
module names, so the funnel costs nothing when they were never loaded.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from geocamat.errors import (
    CorruptInputError,
    GeocamatError,
    InputNotFoundError,
    InvalidLabelsError,
    OutputLocationError,
    ResourceError,
)

#: The options that lower the memory of each command, for out-of-memory messages.
MEMORY_HINTS = {
    "predict": "lower --batch-size (e.g. 16) or --window, or use --device cpu",
    "evaluate": "lower --window or map with --device cpu",
    "train": "lower --batch-size (e.g. 16) or --tile-size, or --set max_tiles=N",
    None: "use smaller inputs or batches",
}

#: GDAL messages start with the file they concern: "scene.tif, band 1: IReadBlock failed ...".
_GDAL_FILE = re.compile(r"^\s*(?P<file>[^,:]+\.[A-Za-z0-9]{2,5})(?:,| :|:)")
_SPACE = re.compile(r"\s+")
#: "you tried to allocate 120000000000 bytes", "Tried to allocate 20.00 GiB", "Unable to allocate 40.0 GiB"
_ASKED = re.compile(r"(?:tried to|unable to) allocate ([\d.]+) ?(bytes|[kmgt]i?b)", re.IGNORECASE)
_UNITS = {"bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with whitespace runs (newlines too) collapsed, cut at ``limit`` characters (at a word's end)."""
    text = _SPACE.sub(" ", str(text)).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first (no repeats).

    The implicit context (an exception raised while handling another) is followed only from OS and GDAL
    errors, so that a bug in an ``except`` clause is not mistaken for the failure it was handling.
    """
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        follow_context = isinstance(exc, OSError) or is_gdal(exc)
        exc = exc.__cause__ or (exc.__context__ if follow_context and not exc.__suppress_context__ else None)
    return seen


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def is_gdal(exc: BaseException) -> bool:
    """Whether ``exc`` comes from GDAL through rasterio (RasterioIOError, CPLE_* errors)."""
    return _module(exc).startswith("rasterio") or type(exc).__name__.startswith("CPLE_")


def _is_gdal_io(exc: BaseException) -> bool:
    """A GDAL failure to open, read or write (not, e.g., rasterio's CRSError from a bad argument: a bug)."""
    name = type(exc).__name__
    return is_gdal(exc) and (name.startswith("CPLE_") or name in ("RasterioIOError", "DriverRegistrationError"))


def _gdal_message(chain: list[BaseException]) -> tuple[str, str | None]:
    """The most telling GDAL message of the chain and the file it names (if any)."""
    messages = []
    for e in chain:
        if not is_gdal(e):
            continue
        text = one_line(e.args[2] if len(e.args) == 3 and isinstance(e.args[2], str) else str(e))
        if text and "See previous exception" not in text:
            messages.append(text)
    for text in messages:
        match = _GDAL_FILE.match(text)
        if match:
            return text, match.group("file").strip()
    return (messages[0] if messages else one_line(str(chain[0]))), None


def _os_error(exc: OSError) -> GeocamatError | None:
    where = exc.filename or "the output location"
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return OutputLocationError(f"no space left on the disk holding {where}: free some space or choose another "
                                   "--out on a disk with room")
    if code == errno.EROFS:
        return OutputLocationError(f"{where} is on a read-only file system: choose an --out folder you can write")
    if code in (errno.EACCES, errno.EPERM):
        return OutputLocationError(f"permission denied: {where}: choose a folder you can write (or fix its "
                                   "permissions)")
    if code == errno.ENOENT and exc.filename:
        return InputNotFoundError(f"no such file or folder: {exc.filename}")
    return None


def _memory_error(exc: BaseException, command: str | None) -> GeocamatError | None:
    name = type(exc).__name__
    text = one_line(str(exc), 160)
    gpu = name == "OutOfMemoryError" or "CUDA out of memory" in text
    host = isinstance(exc, MemoryError) or "DefaultCPUAllocator: can't allocate memory" in text
    if not (gpu or host):
        return None
    what = "GPU memory" if gpu else "memory"
    asked = _ASKED.search(text)
    if asked:
        size = float(asked.group(1)) * _UNITS.get(asked.group(2).lower(), 1)
        detail = f"asked for {size / 2**30:.1f} GiB"
    else:
        detail = text.split(". ")[0] if text else name
    return ResourceError(f"out of {what} ({detail}): {MEMORY_HINTS.get(command, MEMORY_HINTS[None])}")


#: GDAL/OGR messages of a failed write (a full disk often reads like this, without saying so).
_WRITE_FAILURE = re.compile(r"Could not add feature|sqlite3_exec|Write error|WriteBlock failed|TIFFAppendToStrip|"
                            r"failed to write|Failed to write|Cannot write|No space", re.IGNORECASE)
#: Below this many free bytes a disk counts as full.
FULL_DISK_BYTES = 1 << 20


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the disk of ``path`` (or of its nearest existing parent); None if unknown."""
    import shutil

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _full_disk(out: str | None) -> GeocamatError | None:
    free = free_bytes(out) if out else None
    if free is None or free >= FULL_DISK_BYTES:
        return None
    return OutputLocationError(f"no space left on the disk holding {out} ({free // 1024} kB free): free some space "
                               "or choose another --out")


def user_error(exc: BaseException, command: str | None = None, out: str | None = None) -> GeocamatError | None:
    """The user-facing error that ``exc`` amounts to, or None when it is not the user's (a bug).

    Args:
        exc: anything a command raised.
        command: the CLI command that ran (``predict``, ``train``...), to name the option that lowers memory.
        out: the command's output folder, if any: a GDAL/OGR failure while its disk is full is a full disk.

    Returns:
        ``exc`` itself for a :class:`GeocamatError`; a new one (whose cause is ``exc``) for a full disk,
        a read-only or forbidden location, a missing file, a corrupt raster or vector file, or out of memory;
        None otherwise.
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, GeocamatError):
            return e
    found: GeocamatError | None = None
    for e in chain:  # OS errors first: a GDAL write failure is often a full disk underneath
        if isinstance(e, OSError) and not is_gdal(e) and (found := _os_error(e)) is not None:
            break
    library = any(is_gdal(e) or _module(e).startswith(("pyogrio", "fiona")) for e in chain)
    if found is None and library:
        found = _full_disk(out)
    if found is None and library:
        text = next((one_line(str(e)) for e in chain if _WRITE_FAILURE.search(str(e))), None)
        if text is not None:
            found = OutputLocationError(f"cannot write the results ({one_line(text, 160)}): check that the disk "
                                        f"holding {out or 'the output'} has room and is writable")
    if found is None and any(_is_gdal_io(e) for e in chain):
        text, path = _gdal_message(chain)
        if "No space left" in text:
            found = OutputLocationError(f"no space left on the disk holding {path or 'the output'}: free some "
                                        "space or choose another --out")
        elif path and not Path(path).exists() and "No such file" in text:
            found = InputNotFoundError(f"no such file: {path}")
        else:
            name = path or "an input raster"
            check = f"`geocamat info {path}`" if path else "`geocamat info FILE` on each input"
            found = CorruptInputError(f"cannot read {name}: GDAL says {text!r}; the file is truncated, corrupt or "
                                      f"not a raster: re-download or re-export it (check with {check})")
    if found is None:
        for e in chain:
            if _module(e).startswith(("pyogrio", "fiona")):
                found = InvalidLabelsError(f"cannot read a vector file: {one_line(str(e))}: check that it is a "
                                           "complete GeoPackage, shapefile or GeoJSON")
                break
    if found is None:
        for e in chain:
            if (found := _memory_error(e, command)) is not None:
                break
    if found is not None:
        found.__cause__ = exc
    return found
