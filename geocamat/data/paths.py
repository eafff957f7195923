"""The user's paths, globs and folders expanded into files: one rule for every command."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from geocamat.data.vector_layers import parse_source, vector_file
from geocamat.errors import InputNotFoundError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


#: a GDAL dataset name rather than a path: a subdataset (``NETCDF:"f.nc":var``, ``HDF5:...``) or a virtual file
GDAL_NAME = re.compile(r"^([A-Z][A-Z0-9_]+:|/vsi[a-z0-9]+/)")


def _literal_folder(pattern: str) -> str:
    """``pattern`` with its longest leading folder that exists as written escaped, so that ``[`` ``]`` ``*`` ``?``
    in a folder's name are that name, and only the rest is a pattern."""
    parts = Path(pattern).parts
    for k in range(len(parts) - 1, 0, -1):
        folder = Path(*parts[:k])
        if folder.is_dir():
            return str(Path(glob.escape(str(folder)), *parts[k:]))
    return pattern


def expand_paths(patterns: str | os.PathLike | Sequence[str | os.PathLike], suffixes: Sequence[str] | None = None,
                 what: str = "raster") -> list[Path]:
    """Expand paths, globs and folders into existing files, in argument order (each sorted), without repeats.

    Args:
        patterns: one or several paths, globs (``**`` recursive) or folders.
        suffixes: the file endings taken from a folder (lower case); a path or glob is taken as given.
        what: what the files are, for the message (e.g. ``raster``, ``image``, ``labels``).

    Raises:
        InputNotFoundError: a pattern matches nothing.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    found: list[Path] = []
    for pattern in patterns:
        pattern = str(pattern)
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if suffixes is None or p.suffix.lower() in suffixes)
        elif path.is_file() or (parse_source(pattern).layer and vector_file(pattern).is_file()):
            matches = [path]  # a file, or a layer of one (FILE:LAYER)
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matches and glob.has_magic(pattern):  # a folder named like a pattern: 'scenes [2024]/*.tif'
                literal = _literal_folder(pattern)
                matches = sorted(Path(p) for p in glob.glob(literal, recursive=True) if Path(p).is_file())
        if not matches and GDAL_NAME.match(pattern):
            raise InputNotFoundError(f"{pattern!r} is a GDAL dataset name, which geocamat does not read: convert it to "
                                     f"a GeoTIFF first (gdal_translate '{pattern}' out.tif) and give that")
        if not matches and path.is_dir() and suffixes is not None:  # a folder of other files (JPEGs for a map)
            others = sorted({p.suffix.lower() or p.name for p in path.iterdir() if p.is_file()})
            if others:
                raise InputNotFoundError(f"no {what} in folder {pattern!r}: it holds {', '.join(others[:5])} files, "
                                         f"and {what}s are read from {', '.join(suffixes)} files")
        if not matches:
            raise InputNotFoundError(f"no {what} found at {pattern!r}: check the path or glob")
        bundles = [m for m in matches if m.suffix.lower() == ".geocamat"]
        if bundles and what != "model":  # read as an image it was "truncated or corrupt: re-download"
            raise InputNotFoundError(f"{bundles[0]} is a model bundle, not {'an' if what[0] in 'aeiou' else 'a'} "
                                     f"{what}: give it with --model (geocamat info --check MODEL IMAGE...)")
        found.extend(matches)
    return list(dict.fromkeys(found))
