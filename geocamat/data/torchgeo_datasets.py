"""TorchGeo dataset classes over arbitrary user files (no subclassing needed by the user)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchgeo.datasets import RasterDataset


class StackDataset(RasterDataset):
    """Multi-band rasters (files or VRT stacks) given by path; every band returned as float32."""

    filename_glob = "*"
    is_image = True


class LabelRasterDataset(RasterDataset):
    """A single-band label raster aligned with the imagery; returned as ``mask`` (long)."""

    filename_glob = "*"
    is_image = False


def stack_dataset(paths: Sequence[Path], crs=None, res=None) -> StackDataset:
    """TorchGeo dataset over the given raster paths."""
    return StackDataset(paths=[str(p) for p in paths], crs=crs, res=res)
