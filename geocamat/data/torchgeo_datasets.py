"""TorchGeo dataset classes over arbitrary user files (no subclassing needed by the user)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchgeo.datasets import RasterDataset


class StackDataset(RasterDataset):
    """Multi-band rasters (files or VRT stacks) given by path; every band returned as float32.

    The files stay in the order given (TorchGeo sorts them by name): where two overlap, a sample holds the first
    given's pixels, the other's only in its nodata, as the user's order says and not the files' names."""

    filename_glob = "*"
    is_image = True

    @property
    def files(self) -> list[str]:
        given = [self.paths] if isinstance(self.paths, str | Path) else list(self.paths)
        if all(Path(p).is_file() for p in given):
            return list(dict.fromkeys(str(p) for p in given))
        return super().files


class LabelRasterDataset(RasterDataset):
    """A single-band label raster aligned with the imagery; returned as ``mask`` (long)."""

    filename_glob = "*"
    is_image = False


def stack_dataset(paths: Sequence[Path], crs=None, res=None) -> StackDataset:
    """TorchGeo dataset over the given raster paths."""
    return StackDataset(paths=[str(p) for p in paths], crs=crs, res=res)
