"""Images whose values are unlike the training imagery's: another product or scaling (reflectance 0-1 given to a
model trained on digital numbers 0-10,000, 8-bit given to a 16-bit model) gives a confident, wrong map.

The stack is sampled in the windows of :func:`geocamat.data.fill_check.sample_windows` (the cost does not grow
with the scene) and each band's mean is compared with the training mean: images whose median band is off by a
factor of :data:`MAX_RATIO` or more are reported, and so is a single band off by that factor among bands that
match (one band delivered in another scaling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geocamat.data.fill_check import sample_files, sample_windows

#: the median band's ratio of means (images / training, both positive) beyond this factor either way is reported:
#: a scaling. (Not a shift in training standard deviations: a model trained on a few small polygons has tiny
#: standard deviations, and a whole scene would always look far off.)
MAX_RATIO = 4.0


def sampled_means(paths: Sequence) -> np.ndarray | None:
    """Per-band mean of the valid pixels sampled from the rasters (each holding every band); None if none valid."""
    import rasterio

    sums, counts = None, None
    for path in sample_files(paths):
        with rasterio.open(path) as src:
            for window in sample_windows(src.height, src.width):
                block = src.read(window=window, masked=True).astype("float64").filled(np.nan)
                block = block.reshape(block.shape[0], -1)
                valid = np.isfinite(block)
                s, n = np.where(valid, block, 0.0).sum(axis=1), valid.sum(axis=1)
                sums, counts = (s, n) if sums is None else (sums + s, counts + n)
    if sums is None or not (counts > 0).any():
        return None
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def scaling_notes(paths: Sequence, names: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> list[str]:
    """A warning line when the sampled images sit far from the training statistics, else nothing; it names a
    scale and offset that a file declares (geocamat reads the stored values, as GDAL gives them)."""
    lines = scaling_warning(sampled_means(paths), names, mean, std)
    declared = declared_scaling(paths)
    if lines and declared:
        lines[0] += (f"; {declared} (read as stored): if the model learned the scaled values, unscale the images "
                     "first (gdal_translate -unscale -ot Float32 in.tif out.tif)")
    return lines


def declared_scaling(paths: Sequence) -> str | None:
    """``X declares scale S and offset O`` for the first sampled file whose bands carry a scale or offset (Landsat
    Collection 2 digital numbers: 2.75e-05 and -0.2), else None."""
    import rasterio

    for path in sample_files(paths):
        with rasterio.open(path) as src:
            scales, offsets = src.scales, src.offsets
        if any(v != 1 for v in scales) or any(v != 0 for v in offsets):
            return f"{Path(str(path)).name} declares scale {scales[0]:g} and offset {offsets[0]:g}"
    return None


def scaling_warning(means: np.ndarray | None, names: Sequence[str], mean: Sequence[float],
                    std: Sequence[float]) -> list[str]:
    """A warning line when the images' per-band ``means`` sit a scaling away from the training ``mean``."""
    if means is None or len(means) != len(mean):
        return []
    train_mean, train_std = np.asarray(mean, float), np.maximum(np.asarray(std, float), 1e-12)
    positive = (means > 0) & (train_mean > 0)
    if not positive.any():
        return []
    factor = np.full(len(means), np.nan)
    factor[positive] = np.abs(np.log(means[positive] / train_mean[positive]))
    if float(np.nanmedian(factor)) <= np.log(MAX_RATIO):
        off = np.flatnonzero(factor > np.log(MAX_RATIO)).tolist()  # one band of another product among the rest
        if not off:
            return []
        said = ", ".join(f"{names[b]} (mean {means[b]:.4g} vs {train_mean[b]:.4g} in training)" for b in off[:3])
        which = "a band of the images is" if len(off) == 1 else f"{len(off)} bands of the images are"
        return [f"warning: {which} a scaling away from the training imagery's while the others match: {said}; "
                "another product or scaling for that band (or bands in another order)? the map may be wrong"]
    b = int(np.nanargmax(factor))
    return [f"warning: the images' values are unlike the training imagery's (band {names[b]}: mean {means[b]:.4g} vs "
            f"{train_mean[b]:.4g} +- {train_std[b]:.3g} in training): another product or scaling? the map may be "
            "wrong"]


#: share of the images' sampled pixels (median band) outside the training imagery's 1st-99th percentiles (2% on the
#: training imagery itself; 1-3% on it resampled, reprojected or cropped) from which images are reported: values
#: the model never saw (+50 DN of haze: 15%; x3: 96%; both under the 4x of :data:`MAX_RATIO`)
RANGE_SHARE = 0.1
#: one band this far outside while the others are not: bands in another order (swapped: 72%, reversed: 76%)
BAND_RANGE_SHARE = 0.5
#: values per band kept to find the training range
RANGE_SAMPLE = 200_000


def band_range(sample, mean: Sequence[float], std: Sequence[float], seed: int = 0) -> list[list[float]]:
    """The 1st and 99th percentiles of each band of the training statistics sample (normalised (N, C, T, T)), in
    the raw units: what :func:`range_notes` compares new imagery with (stored in the bundle)."""
    values = np.asarray(sample, dtype=np.float32).transpose(1, 0, 2, 3).reshape(len(mean), -1)
    if values.shape[1] > RANGE_SAMPLE:
        values = values[:, np.random.default_rng(seed).choice(values.shape[1], RANGE_SAMPLE, replace=False)]
    lo, hi = np.percentile(values, [1, 99], axis=1)
    m, s = np.asarray(mean, float), np.asarray(std, float)
    return [[round(float(a), 6), round(float(b), 6)] for a, b in zip(lo * s + m, hi * s + m, strict=True)]


def range_notes(paths: Sequence, names: Sequence[str], ranges: Sequence[Sequence[float]] | None) -> list[str]:
    """A warning when most sampled pixels of the median band lie outside the training range (:func:`band_range`)."""
    import rasterio

    if not ranges:
        return []
    outside, counted = np.zeros(len(ranges)), np.zeros(len(ranges))
    lo, hi = np.asarray(ranges, float).T
    for path in sample_files(paths):
        with rasterio.open(path) as src:
            if src.count != len(ranges):
                return []
            for window in sample_windows(src.height, src.width):
                block = src.read(window=window, masked=True).astype("float64").filled(np.nan)
                block = block.reshape(block.shape[0], -1)
                valid = np.isfinite(block)
                out = valid & ((block < lo[:, None]) | (block > hi[:, None]))
                outside += out.sum(axis=1)
                counted += valid.sum(axis=1)
    if not (counted > 0).all():
        return []
    share = outside / counted
    b = int(np.argmax(share))
    worst = f"band {names[b]}: {share[b]:.0%} outside {lo[b]:.4g}-{hi[b]:.4g}"
    if float(np.median(share)) >= RANGE_SHARE:
        return [f"warning: {float(np.median(share)):.0%} of the images' sampled pixels (median band) lie outside the "
                f"training imagery's 1st-99th percentiles (2% expected; {worst}): another calibration, haze or a "
                "scene unlike the training one? the map may be wrong"]
    if share[b] >= BAND_RANGE_SHARE:
        return [f"warning: one band's values lie outside its training range while the others match ({worst}, its "
                "1st-99th percentiles in training): bands in another order, or that band of another product? the "
                "map may be wrong"]
    return []
