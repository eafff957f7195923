"""The user's imagery as one band stack: paths, globs or folders -> rasters with every band -> TorchGeo.

Inputs may be multi-band files (one per scene or mosaic tile) or single-band files (one per band). Files
that share one grid and hold one band each are stacked into a VRT (band order = sorted file names),
so that "lsat7_2000_10.tif ... lsat7_2000_70.tif" becomes one 6-band scene. Several such groups (several
scenes) become several stacks, mosaicked by TorchGeo. Every band of a VRT stack is Float32 with NaN as
nodata, each source's own nodata honoured; for multi-band files the files' nodata is kept.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocamat.data.band_grids import BandGrid, finest, resampling_note, scenes_of_grids
from geocamat.data.crs import crs_label
from geocamat.data.fill_check import undeclared_fill_notes
from geocamat.data.footprints import SAME_GROUND_SHARE, touching_pairs
from geocamat.data.paths import RASTER_SUFFIXES, expand_paths
from geocamat.errors import InvalidRasterError


def resolve_inputs(patterns: Sequence[str | os.PathLike], suffixes: Sequence[str] = RASTER_SUFFIXES) -> list[Path]:
    """The rasters named by paths, globs and folders, absolute, in the order given (each glob or folder sorted),
    without repeats: one stack or mosaic, where the first given is on top.

    Raises:
        InputNotFoundError: if a pattern matches nothing.
    """
    return list(dict.fromkeys(p.resolve() for p in expand_paths(patterns, suffixes, "raster")))


@dataclass
class ImageStack:
    """The user's imagery, ready for TorchGeo.

    Attributes:
        paths: rasters holding every band each (multi-band files or VRT stacks), one per scene/tile.
        band_names: names of the bands, in order.
        nodata: nodata value per band of ``paths`` (NaN for VRT stacks, None if the files have none).
        crs: CRS (WKT) of the first raster; TorchGeo reprojects the others to it.
        res: pixel size (x, y) of the first raster.
        sources: the user's files.
        notes: what the user should be told about how the stack was made (one line each).
    """

    paths: list[Path]
    band_names: list[str]
    nodata: list[float | None]
    crs: str
    res: tuple[float, float]
    sources: list[Path]
    notes: list[str] = field(default_factory=list)

    @property
    def num_bands(self) -> int:
        return len(self.band_names)

    def dataset(self, crs=None, res: float | tuple[float, float] | None = None):
        """A TorchGeo RasterDataset over the stack (imported lazily: torchgeo costs seconds to import)."""
        from geocamat.data.torchgeo_datasets import stack_dataset

        return stack_dataset(self.paths, crs=crs, res=res)

    def valid_mask(self, image: np.ndarray | object) -> np.ndarray | object:
        """Pixels with at least one valid band: (C, H, W) -> (H, W) boolean (numpy or torch)."""
        valid = None
        for b, nodata in enumerate(self.nodata):
            band = image[b]
            ok = band == band  # not NaN
            if nodata is not None and not np.isnan(nodata):
                ok = ok & (band != nodata)
            valid = ok if valid is None else (valid | ok)
        return valid


def _grid_key(src) -> tuple:
    return (src.crs.to_wkt() if src.crs else None, tuple(round(v, 9) for v in src.transform)[:6], src.width,
            src.height)


def _grid_text(path: Path) -> str:
    """A raster's grid in words: CRS, size, pixel size and origin."""
    import rasterio

    with rasterio.open(path) as src:
        crs = crs_label(src.crs) or "no CRS"
        t = src.transform
        return (f"{crs}, {src.width} x {src.height} px of {abs(t.a):g} x {abs(t.e):g}, origin "
                f"({t.c:.10g}, {t.f:.10g})")


def mask_kind(src) -> tuple[bool, list[int]]:
    """(whether GDAL gives the file a per-dataset mask: an internal mask or an alpha band, 0-based alpha bands)."""
    from rasterio.enums import MaskFlags

    from geocamat.data.alpha import alpha_bands

    alpha = alpha_bands(src)  # a band tagged alpha that holds imagery (an RGBN Byte GeoTIFF's NIR) is not one
    masked = any(MaskFlags.per_dataset in flags and (MaskFlags.alpha not in flags or alpha)
                 for flags in src.mask_flag_enums)
    return masked, alpha


def write_vrt(sources: Sequence[tuple[Path, int, str]], out_path: Path, target: BandGrid | None = None,
              nodata: float | None = None) -> Path:
    """Write a VRT whose bands are (raster, 1-based band, description), on ``target``'s grid (default: the first
    raster's); a raster on another grid is resampled bilinearly onto it (see :mod:`geocamat.data.band_grids`).

    Every band is Float32 with NaN nodata; each source's own nodata value (or ``nodata`` when given, the user's
    override) is honoured (becomes NaN), and so are its internal mask and alpha band (GDAL's per-dataset mask:
    masked pixels become NaN).
    """
    import rasterio
    from rasterio.enums import MaskFlags

    if target is None:
        with rasterio.open(sources[0][0]) as first:
            target = BandGrid.of(first)
    a, b, c, d, e, f = target.transform
    gt = ", ".join(repr(v) for v in (c, a, b, f, d, e))
    bands = []
    for i, (path, band, description) in enumerate(sources, start=1):
        with rasterio.open(path) as src:
            declared = src.nodatavals[band - 1] if nodata is None else nodata
            gdal_mask, alpha = mask_kind(src)
            masked = MaskFlags.per_dataset in src.mask_flag_enums[band - 1] and gdal_mask
            grid = BandGrid.of(src)
            if alpha and not masked and band - 1 not in alpha:  # an alpha band GDAL does not take as the mask
                # (one that is not the extra sample of a Byte RGB: gdalwarp -dstalpha on UInt16 or Float32 data)
                path, band, masked = _alpha_masked(src, band, alpha[0], out_path.with_name(
                    f"{out_path.stem}.alpha{i}.vrt")), 1, True
        nodata_xml = f"<NODATA>{declared!r}</NODATA>" if declared is not None else ""
        if masked:
            nodata_xml += "<UseMaskBand>true</UseMaskBand>"
        if grid.transform == target.transform and (grid.width, grid.height) == (target.width, target.height):
            resampling, dst = "", (0, 0, target.width, target.height)
        else:
            resampling, dst = ' resampling="bilinear"', tuple(f"{v:.12g}" for v in grid.dst_rect(target))
        bands.append(
            f'  <VRTRasterBand dataType="Float32" band="{i}">\n'
            f"    <NoDataValue>nan</NoDataValue>\n"
            f"    <Description>{html.escape(description)}</Description>\n"
            f"    <ComplexSource{resampling}>\n"
            f'      <SourceFilename relativeToVRT="0">{html.escape(str(path))}</SourceFilename>\n'
            f"      <SourceBand>{band}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{grid.width}" ySize="{grid.height}"/>\n'
            f'      <DstRect xOff="{dst[0]}" yOff="{dst[1]}" xSize="{dst[2]}" ySize="{dst[3]}"/>\n'
            f"      {nodata_xml}\n"
            f"    </ComplexSource>\n"
            f"  </VRTRasterBand>\n"
        )
    xml = (f'<VRTDataset rasterXSize="{target.width}" rasterYSize="{target.height}">\n'
           f"  <SRS>{html.escape(target.crs)}</SRS>\n"
           f"  <GeoTransform>{gt}</GeoTransform>\n" + "".join(bands) + "</VRTDataset>\n")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(xml)
    return out_path


def _alpha_masked(src, band: int, alpha: int, path: Path) -> Path:
    """A VRT of band ``band`` (1-based) of ``src`` whose mask is its alpha band ``alpha`` (0-based): a source
    GDAL then masks (``UseMaskBand``), for the alpha bands GDAL itself does not take as a mask."""
    import html

    a, b, c, d, e, f = tuple(src.transform)[:6]
    gt = ", ".join(repr(v) for v in (c, a, b, f, d, e))
    name = html.escape(str(src.name))
    xml = (f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">\n'
           f"  <GeoTransform>{gt}</GeoTransform>\n"
           f'  <VRTRasterBand dataType="Float64" band="1">\n'  # any data type's values, as they are
           f'    <SimpleSource><SourceFilename relativeToVRT="0">{name}</SourceFilename>'
           f"<SourceBand>{band}</SourceBand></SimpleSource>\n"
           f"  </VRTRasterBand>\n"
           f"  <MaskBand>\n"
           f'    <VRTRasterBand dataType="Byte">\n'
           f'      <ComplexSource><SourceFilename relativeToVRT="0">{name}</SourceFilename>'
           f"<SourceBand>{alpha + 1}</SourceBand><ScaleRatio>0</ScaleRatio><ScaleOffset>255</ScaleOffset>"
           f"<NODATA>0</NODATA></ComplexSource>\n"
           f"    </VRTRasterBand>\n"
           f"  </MaskBand>\n"
           "</VRTDataset>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xml)
    return path


class BandNotFoundError(InvalidRasterError):
    """A band selection names a band (or number) the images do not have."""


def band_indexes(names: Sequence[str], selection: Sequence[str | int]) -> list[int]:
    """0-based indexes of the selected bands, given by name or by 1-based number.

    Raises:
        BandNotFoundError: a name or number that the imagery does not have.
    """
    out = []
    for item in selection:
        if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            number = int(item)
            if not 1 <= number <= len(names):
                raise BandNotFoundError(f"band {number} does not exist: the images have bands 1-{len(names)}")
            out.append(number - 1)
        elif item in names:
            out.append(list(names).index(item))
        else:
            raise BandNotFoundError(f"band {item!r} not found: the images have {', '.join(names)}")
    return out


def select_bands(stack: ImageStack, selection: Sequence[str | int], workdir: Path) -> ImageStack:
    """The stack restricted to the selected bands (by name or 1-based number), in the selection's order."""
    idx = band_indexes(stack.band_names, selection)
    names = [stack.band_names[i] for i in idx]
    paths = [write_vrt([(p, i + 1, n) for i, n in zip(idx, names, strict=True)], workdir / f"bands_{k}.vrt")
             for k, p in enumerate(stack.paths)]
    return ImageStack(paths, names, [float("nan")] * len(idx), stack.crs, stack.res, stack.sources, stack.notes)


def match_bands(stack: ImageStack, wanted: Sequence[str], workdir: Path) -> ImageStack:
    """The stack's bands as a model trained on bands ``wanted`` needs them.

    When every wanted name is a band of the stack (once) and the order or the set differs, those bands are picked by
    name, in the model's order, with a note; when the names differ but the counts agree, the bands are used in
    their order, with a warning (file stems that name a date differ between scenes); otherwise the error.

    Raises:
        BundleError: the images have another number of bands and not every band the model wants by name.
    """
    from geocamat.errors import BundleError

    names, wanted = list(stack.band_names), list(wanted)
    if names == wanted:
        return stack
    if all(names.count(w) == 1 for w in wanted):
        picked = select_bands(stack, wanted, workdir)
        how = "reordered" if sorted(names) == sorted(wanted) else f"{len(wanted)} of the images' {len(names)} picked"
        picked.notes = [*stack.notes, f"note: bands {how} by name to the model's order ({', '.join(wanted)})"]
        return picked
    if len(names) != len(wanted):
        raise BundleError(f"the model expects {len(wanted)} bands ({', '.join(wanted)}) but the images have "
                          f"{len(names)} ({', '.join(names)}): give the same bands as in training, e.g. pick them in "
                          "the model's order with gdal_translate -b N -b N ... in.tif out.tif (or name the images' "
                          "bands as the model's: band descriptions)")
    stack.notes = [*stack.notes, f"warning: band names differ (images {', '.join(names)}; model {', '.join(wanted)}): "
                                 "they are used in this order; check that it is the training order"]
    return stack


def _scenes_of_band_files(groups: dict[tuple, list[Path]], grid_of: dict[tuple, BandGrid]
                          ) -> tuple[dict[tuple, list[Path]], dict[int, BandGrid], list[str]]:
    """Single-band files grouped by grid -> grouped by scene (:func:`band_grids.scenes_of_grids`): (the groups,
    the target grid of each merged group by its position, a note per merged group)."""
    keys = list(groups)
    grids = [grid_of[key] for key in keys]
    merged: dict[tuple, list[Path]] = {}
    targets: dict[int, BandGrid] = {}
    notes: list[str] = []
    for scene in scenes_of_grids(grids):
        members = sorted(p for k in scene for p in groups[keys[k]])
        if len(scene) > 1:
            target = grids[scene[finest([grids[k] for k in scene])]]
            targets[len(merged)] = target
            notes.append(resampling_note([(p, grids[k]) for k in scene for p in groups[keys[k]]], target))
        merged[keys[scene[0]]] = members
    return merged, targets, notes


def same_ground_notes(scenes: Sequence[Path], shown: Sequence[Path]) -> list[str]:
    """A warning when scenes of the mosaic cover the same ground: where both have data the map shows the first
    given, the others only fill its gaps (nodata), which is gap filling when meant and a lost date when not.
    ``shown``: a file of each scene, named in the message (band files' scenes are VRTs)."""
    import rasterio
    from rasterio.warp import transform_bounds

    if len(scenes) < 2:
        return []
    boxes, crs = [], None
    for path in scenes:
        with rasterio.open(path) as src:
            crs = crs or src.crs
            boxes.append(transform_bounds(src.crs, crs, *src.bounds) if src.crs != crs else tuple(src.bounds))
    pairs = [(i, j) for i, j, share in touching_pairs(np.array(boxes)) if share > SAME_GROUND_SHARE]
    if not pairs:
        return []
    i, j = pairs[0]
    a, b = Path(shown[i]), Path(shown[j])
    a, b = (a.name, b.name) if a.name != b.name else (f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}")
    more = f" (and {len(pairs) - 1} more pairs)" if len(pairs) > 1 else ""
    return [f"warning: {a} and {b} cover the same ground{more}: the map shows "
            f"the first given where both have data, the other only fills its nodata; to map each date, run each "
            f"on its own"]


def lossy_fill(src, masked: bool) -> bool:
    """Whether a raster's fill is a nodata value under lossy (JPEG) compression without a mask: its collar then
    holds values near, not at, the nodata value."""
    compression = src.compression.value.upper() if src.compression is not None else ""
    return "JPEG" in compression and src.nodata is not None and not masked


def _north_up(path: Path, folder: Path, notes: list[str], nodata: float | None = None) -> Path:
    """``path``, or a north-up VRT of it in ``folder`` when its geotransform is rotated (:mod:`.north_up`; ``nodata``:
    the user's fill value, else the file's), said in ``notes``."""
    import rasterio

    from geocamat.data.north_up import is_rotated, north_up_note, north_up_vrt

    try:
        with rasterio.open(path) as src:
            rotated = src.crs is not None and is_rotated(src.transform)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidRasterError(f"cannot read {path} as a raster: {exc}") from exc
    if not rotated:
        return path
    notes.append(north_up_note(path))
    return north_up_vrt(path, folder / f"{path.stem}.vrt", nodata)


def open_stack(patterns: Sequence[str | os.PathLike], workdir: Path,
               bands: Sequence[str | int] | None = None, nodata: float | None = None) -> ImageStack:
    """Resolve the user's imagery into an :class:`ImageStack`.

    Args:
        patterns: files, globs or folders.
        workdir: where VRT stacks are written (e.g. the run or output folder's ``.geocamat`` subfolder).
        bands: optional selection of bands, by name (file stem for band files, band description otherwise)
            or 1-based number; the stack then holds those bands in that order.
        nodata: the value of fill pixels in every file, replacing what the files declare (None: theirs; files
            that declare none and look filled with 0 get a warning in ``notes``).

    Raises:
        InputNotFoundError: nothing matches.
        InvalidRasterError: unreadable file, no CRS, or inconsistent band counts.
    """
    import rasterio

    given = resolve_inputs(patterns)
    notes: list[str] = []
    files = [_north_up(path, workdir / "north_up" / str(k), notes, nodata) for k, path in enumerate(given)]
    groups: dict[tuple, list[Path]] = {}
    counts: dict[Path, int] = {}
    descriptions: dict[Path, tuple] = {}
    nodatas: dict[Path, tuple] = {}
    masks: dict[Path, tuple[bool, list[int]]] = {}
    grids: dict[tuple, BandGrid] = {}
    for path in files:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    from geocamat.preflight import refuse_unrectified

                    refuse_unrectified(src, path)
                    raise InvalidRasterError(
                        f"{path} has no CRS: assign one (e.g. `gdal_edit.py -a_srs EPSG:32617 {path.name}`)")
                key = _grid_key(src)
                groups.setdefault(key, []).append(path)
                grids.setdefault(key, BandGrid.of(src))
                counts[path], descriptions[path], nodatas[path] = src.count, src.descriptions, src.nodatavals
                masks[path] = mask_kind(src)
                if lossy_fill(src, masks[path][0] or bool(masks[path][1])) and nodata is None:
                    notes.append(f"warning: {path.name} is JPEG-compressed with nodata {src.nodata:g} and no mask: "
                                 "the compression moves fill values near the data's edge, and those pixels are read "
                                 "as data; give it an internal mask (gdal_translate -co COMPRESS=JPEG -mask 1 ... "
                                 "with GDAL_TIFF_INTERNAL_MASK=YES) or a lossless copy")
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidRasterError(f"cannot read {path} as a raster: {exc}") from exc
    targets: dict[int, BandGrid] = {}
    if len(groups) > 1 and all(counts[m] == 1 for m in files):
        groups, targets, scene_notes = _scenes_of_band_files(groups, grids)
        notes += scene_notes
    stacks: list[Path] = []
    shown: list[Path] = []  # a file of each stack, for messages
    band_names: list[str] | None = None
    nodata_values: list[float | None] = []
    for i, members in enumerate(groups.values()):
        if len(members) > 1 and all(counts[m] == 1 for m in members):
            members = sorted(members)  # band order: the files' names, whatever order they were given in
            vrt = write_vrt([(m, 1, m.stem) for m in members], workdir / f"stack_{i}.vrt", targets.get(i), nodata)
            names, nd = [m.stem for m in members], [float("nan")] * len(members)
            stacks.append(vrt)
            shown.append(members[0])
        else:
            for m in members:
                shown.append(m)
                masked, alpha = masks[m]
                keep = [b for b in range(counts[m]) if b not in alpha]
                names = [descriptions[m][b] or f"band{b + 1}" for b in keep]
                if masked or alpha or nodata is not None:  # a VRT turns masked pixels / the user's fill into NaN
                    stacks.append(write_vrt([(m, b + 1, n) for b, n in zip(keep, names, strict=True)],
                                            workdir / f"masked_{len(stacks)}.vrt", nodata=nodata))
                    nd = [float("nan")] * len(keep)
                else:
                    stacks.append(m)
                    nd = list(nodatas[m])
                if band_names is not None and len(names) != len(band_names):
                    break
        if band_names is None:
            band_names, nodata_values = names, nd
        elif len(names) != len(band_names) and all(counts[m] == 1 for m in files):
            first, other = next(iter(groups.values()))[0], members[0]
            raise InvalidRasterError(
                f"band files on different grids: {other} is on {_grid_text(other)} but {first} is on "
                f"{_grid_text(first)}; single-band files of one stack must share one grid: resample it "
                f"(gdalwarp -tr/-te or -tap) onto the other's grid")
        elif len(names) != len(band_names):
            raise InvalidRasterError(
                f"inputs have different band counts ({len(band_names)} and {len(names)}): give one set of bands "
                "per scene, either multi-band files or one single-band file per band on the same grid")
    with rasterio.open(stacks[0]) as first:
        crs, res = first.crs.to_wkt(), first.res
    if nodata is None:
        notes += undeclared_fill_notes(given)
    notes += same_ground_notes(stacks, shown)
    stack = ImageStack(stacks, band_names or [], nodata_values, crs, res, given, notes)
    return select_bands(stack, bands, workdir) if bands else stack
