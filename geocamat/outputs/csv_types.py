"""Column types beside a CSV output (``NAME.csvt``, GDAL's convention): QGIS and GDAL otherwise read every column of
a CSV as text, so counts cannot be summed, sorted or styled by value, nor joined as numbers."""

from __future__ import annotations

from pathlib import Path


def csvt_path(csv_path: Path) -> Path:
    """``counts.csvt`` beside ``counts.csv``."""
    return Path(csv_path).with_suffix(".csvt")


def write_csvt(csv_path: Path, types: list[str]) -> Path:
    """Write the column types (``Integer``, ``Real``, ``String``) of ``csv_path`` beside it; returns the path."""
    path = csvt_path(csv_path)
    path.write_text(",".join(f'"{t}"' for t in types) + "\n", encoding="utf-8")
    return path


def types_of(frame) -> list[str]:
    """GDAL's column types of a pandas table: Integer, Real or String."""
    import pandas as pd

    return ["Integer" if pd.api.types.is_integer_dtype(d) else "Real" if pd.api.types.is_float_dtype(d)
            else "String" for d in frame.dtypes]
