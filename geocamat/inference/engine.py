"""The streaming loop of one prediction run over one output grid.

For each column block of the plan, a pool of reader threads decodes large block-aligned row chunks ahead
of the device; tiles are cut on the device, passed through the head (bf16 + channels_last on CUDA), and
their per-pixel outputs are blended into an accumulator one band tall. When a band is done its rows are
final: a writer thread writes them (and records the unit in the manifest), and the overlap rows that the
next band still adds to (the *carry*) are kept. At the end the pieces are assembled into the outputs.

Across ranks (:mod:`geocamat.inference.ranks`), each rank streams its stretch of the plan, starting a stretch
that begins below the top of a block (or after a missing carry) with the band above it, computed only for its
carry; rank 0 waits for the others and assembles.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from geocamat.errors import InvalidRasterError
from geocamat.inference.assemble import FloatOutput, assemble
from geocamat.inference.blend import BLEND_MODES, SCATTER_MAX_TILE, accumulate, blend_mode, gather_tiles
from geocamat.inference.grid import OutputGrid
from geocamat.inference.heads import PixelHead
from geocamat.inference.manifest import PARTIAL, Manifest, done_units, manifest_name
from geocamat.inference.plan import Plan, UnitSizes, band_rows_for_work, tile_stride, unit_name, unit_size
from geocamat.inference.ranks import Ranks, Segment, split_units, wait_for_ranks
from geocamat.inference.report import run_report
from geocamat.inference.telemetry import HostTimes, StageClock, peak_rss_mib, progress_bar
from geocamat.inference.tta import tile_views
from geocamat.inference.writer import UnitWriter
from geocamat.outputs import partial_bands
from geocamat.outputs.geodesic import geodesic_rows
from geocamat.outputs.jsonfile import write_json

#: GDAL block cache (MiB) during a run, unless GDAL_CACHEMAX is set: GDAL's default (5% of RAM) would let
#: the cache of decoded input blocks grow with the scene.
GDAL_CACHE_MB = 128
#: Files a finished run leaves in the output folder (with the CamNet heads).
RESULT_FILES = ("landuse.tif", "landuse.qml", "confidence.tif", "confidence.qml", "cam.tif", "cam.qml",
                "probabilities.tif", "probabilities.qml", "landuse.gpkg", partial_bands.TIF, partial_bands.QML,
                "report.json")


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread for the block (per-tile copies and blending), the caller's count back after it, also
    when it raises (a notebook kept 1 thread after a failed map)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _region_fields(meta: dict) -> dict:
    """The columns every polygon of a region's landuse.gpkg carries: the region's value (merged layers keep it)."""
    region = meta.get("region") or {}
    return {"region": str(region["name"])} if region.get("name") is not None else {}


class Engine:
    """One prediction run over one output grid (one region).

    Args:
        head: what the model computes per tile (:class:`geocamat.inference.heads.PixelHead`).
        bundle: the land-use bundle (classes, normalisation statistics).
        stack: the input stack (:func:`geocamat.data.stack.open_stack`).
        index: the TorchGeo index of the stack in the output CRS.
        grid: the output grid.
        aoi: area of interest (a shapely geometry in the output CRS) or None.
        out_dir: output folder.
        dev: torch device.
        overlap: fraction of a tile shared with its neighbours.
        tta: test-time augmentation (:func:`geocamat.inference.tta.resolve`): ``none``, ``all`` (the head averages
            the 8 views of each tile: unit work and fingerprint) or ``spread`` (the engine sends each tile
            through one view, :func:`geocamat.inference.tta.tile_views`, and turns its outputs back).
        tile: tile (or window) side in px.
        batch_size: tiles per forward pass.
        workers: reader threads.
        write_probabilities: also write ``probabilities.tif``.
        vectorise: also write ``landuse.gpkg``.
        min_polygon_pixels: drop smaller polygons.
        resume: continue an interrupted run in ``out_dir``.
        progress: show a progress bar.
        on_unit: called with a dict after each finished unit (raising from it aborts the run).
        weights_hash: SHA-256 of the weights (fingerprint).
        require_all_bands: map pixels where some (not all) bands are nodata as nodata; by default they are
            classified with the missing bands filled with their mean, counted in the report and shown in
            ``partial_bands.tif`` (:mod:`geocamat.outputs.partial_bands`; written when there is such a pixel).
        units: unit sizes (default: the module constants of :mod:`geocamat.inference.plan`).
        blend: blending mode (default: :func:`geocamat.inference.blend.blend_mode` for the device).
        ranks: this process's rank among those sharing the run (default: the only one).
    """

    def __init__(self, head: PixelHead, bundle, stack, index, grid: OutputGrid, aoi, out_dir: Path, *, dev,
                 overlap: float, tta: str, tile: int, batch_size: int, workers: int, write_probabilities: bool,
                 vectorise: bool, min_polygon_pixels: int, resume: bool, progress: bool, on_unit,
                 weights_hash: str, require_all_bands: bool = False, units: UnitSizes | None = None,
                 blend: str | None = None, ranks: Ranks | None = None) -> None:
        from geocamat.outputs.overviews import overview_factors
        from geocamat.outputs.style import ClassStyle, class_dtype_nodata

        self.head, self.bundle, self.stack, self.index, self.grid, self.aoi = head, bundle, stack, index, grid, aoi
        self._bar, self._ticked = None, 0
        self.out_dir, self.dev, self.overlap, self.batch_size, self.tta = Path(out_dir), dev, overlap, batch_size, tta
        self.workers, self.write_probabilities, self.vectorise = workers, write_probabilities, vectorise
        self.min_polygon_pixels, self.resume = min_polygon_pixels, resume
        self.progress, self.on_unit, self.weights_hash = progress, on_unit, weights_hash
        self.require_all_bands = require_all_bands
        #: whether units keep a partial-bands mask piece (not with require_all_bands: those pixels are nodata)
        self.partial_pieces = not require_all_bands
        self.sizes = units or UnitSizes()
        self.ranks = ranks or Ranks()
        if blend is not None and blend not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {blend!r}: choose one of {', '.join(BLEND_MODES)}")
        self.style = ClassStyle.from_classes(bundle.classes)
        if head.outputs.get("probabilities") != len(self.style.ids):
            raise ValueError(f"the head gives {head.outputs.get('probabilities')} probabilities per pixel; the "
                             f"model has {len(self.style.ids)} classes")
        self.extras = head.extras()
        self.dtype, self.nodata = class_dtype_nodata(self.style.ids)
        stride = tile_stride(tile, overlap)
        self.blend = blend or blend_mode(dev.type, tile, stride)
        # units are multiples of the stride and, where that costs at most 2x their size, of the largest overview
        # factor, so that every unit computes its own part of each overview level
        needed = overview_factors(grid.width, grid.height)
        factor = needed[-1] if needed else 1
        block_cols = unit_size(self.sizes.block_cols, tile, stride, factor)
        target_rows = band_rows_for_work(self.sizes, grid.width, block_cols, stride, 8 if tta == "all" else 1)
        band_rows = unit_size(target_rows, tile, stride, factor)
        aligned = all(band_rows % f == 0 and block_cols % f == 0 for f in needed)
        #: overview levels computed per unit while streaming; [] when GDAL computes them at the end
        self.overview_factors = needed if aligned else []
        self.plan = Plan.over(grid, tile, stride, band_rows, block_cols)
        self.work = self.out_dir / PARTIAL
        self.result_files = tuple(dict.fromkeys((*RESULT_FILES, *(f"{name}.{ext}" for name in self.extras
                                                                     for ext in ("tif", "qml")))))
        if aoi is not None:
            import shapely

            shapely.prepare(aoi)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one."""
        g = self.grid
        files = [(str(p), os.path.getsize(p), int(os.path.getmtime(p))) for p in self.stack.sources]
        aoi = hashlib.sha256(self.aoi.wkb).hexdigest() if self.aoi is not None else None
        return {"images": files, "weights": self.weights_hash, "grid": [g.crs, list(g.transform)[:6],
                g.width, g.height], "tile": self.plan.tile, "stride": self.plan.stride,
                "band_rows": self.plan.band_rows, "block_cols": self.plan.block_cols,
                "probabilities": self.write_probabilities, "vectorise": self.vectorise, "aoi": aoi, "tta": self.tta,
                "overviews": self.overview_factors, "head": type(self.head).__name__, "outputs": self.head.outputs,
                "min_polygon_pixels": self.min_polygon_pixels,
                "require_all_bands": self.require_all_bands, "partial_bands_pieces": self.partial_pieces,
                "blend_weights": hashlib.sha256(np.asarray(self.head.weights(self.plan.tile, self.overlap),
                                                           np.float32).tobytes()).hexdigest()}

    def float_outputs(self) -> list[FloatOutput]:
        """The float GeoTIFFs and their bands in the float pieces: confidence, the head's extras,
        probabilities."""
        outputs = [FloatOutput("confidence", [1], ["max class probability"])]
        band = 2
        for name in self.extras:
            n = self.head.outputs[name]
            desc = self.head.descriptions.get(name) or ([name] if n == 1 else [f"{name} {c}" for c in range(n)])
            outputs.append(FloatOutput(name, list(range(band, band + n)), desc))
            band += n
        if self.write_probabilities:
            outputs.append(FloatOutput("probabilities", list(range(band, band + len(self.style.ids))),
                                       [f"p({n})" for n in self.style.names]))
        return outputs

    # -- main loop ---------------------------------------------------------------------------------------
    def run(self, meta: dict) -> dict:
        """Stream the plan, assemble the outputs, write the report; returns it."""
        from rasterio.env import get_gdal_config, set_gdal_config

        if "GDAL_CACHEMAX" in os.environ:
            return self._run(meta)
        old = get_gdal_config("GDAL_CACHEMAX")
        set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)
        try:
            return self._run(meta)
        finally:
            set_gdal_config("GDAL_CACHEMAX", old)

    def _run(self, meta: dict) -> dict:
        if self.resume and not self.work.exists() and (self.out_dir / "report.json").exists():
            return json.loads((self.out_dir / "report.json").read_text())  # finished earlier: nothing to resume
        import torch

        from geocamat.inference.reader import MosaicReader

        t_start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan = self.plan
        ranks = self.ranks
        manifest = Manifest(self.work, self.fingerprint(), plan.n_units, rank=ranks.rank)
        ranks.barrier()  # every rank has checked the output folder before rank 0 prepares it
        if ranks.main:
            manifest.open(self.resume, self.out_dir)
        ranks.barrier()
        if not ranks.main:
            manifest.open(self.resume, self.out_dir, clean=False)
        ranks.barrier()  # every manifest of this run is open (no stale "finished" left)
        self.manifest = manifest
        done_before = done_units(self.work, manifest.fingerprint)
        resumed = bool(done_before)
        self.head.to(self.dev)
        w1 = torch.from_numpy(np.asarray(self.head.weights(plan.tile, self.overlap), np.float32)).to(self.dev)
        self.w2 = w1[:, None] * w1[None, :]
        self.mean = torch.tensor(self.bundle.mean, dtype=torch.float32, device=self.dev).view(-1, 1, 1)
        self.std = torch.tensor(self.bundle.std, dtype=torch.float32, device=self.dev).view(-1, 1, 1)
        self.lut = torch.tensor(self.style.ids, dtype=torch.int64, device=self.dev)
        mine = [unit_name(s.block, i) for s in self.segments for i in range(s.start, s.stop)]
        total_tiles = sum(self._planned(name) for name in mine)
        done_tiles = sum(done_before[name]["tiles_planned"] for name in mine if name in done_before)
        desc = f"predict {self.out_dir.name}" + (f" [rank {ranks.rank}/{ranks.world}]" if ranks.world > 1 else "")
        bar = progress_bar(total=total_tiles, initial=done_tiles, unit="tile", desc=desc, file=sys.stderr,
                           disable=not self.progress, smoothing=0.1, dynamic_ncols=True)
        self._bar, self._ticked = bar, 0  # tiles said within the unit being run (a unit can take minutes)
        reader = MosaicReader(self.index, self.grid, self.stack.num_bands, workers=self.workers)
        writers = max(1, min(self.sizes.max_writers, (os.cpu_count() or 2) // 4))
        from geocamat.outputs.vector import Polygoniser

        # worker processes pay off when there are units to overlap with; a one-unit scene polygonises in-thread
        polygoniser = Polygoniser(writers) if self.vectorise and plan.n_units > 2 else None
        if polygoniser is not None:
            polygoniser.start()
        self.host = HostTimes()
        self.writer = UnitWriter(self.work / "units", manifest, self.host, writers=writers, nodata=self.nodata,
                                 overview_factors=self.overview_factors, vectorise=self.vectorise,
                                 max_class=max(self.style.ids), polygoniser=polygoniser,
                                 full_shape=(self.grid.height, self.grid.width),
                                 min_region_pixels=self.min_polygon_pixels, row_areas=geodesic_rows(self.grid))
        todo = self._todo(done_before)
        pending: deque[tuple[str, Future]] = deque()
        stream_start = time.perf_counter()
        self.t_model = 0.0
        self.clock = StageClock(self.dev.type == "cuda")
        # read buffers, each large enough for any column block, reused by every block (a pool per block shape
        # kept ~250 MB per extra shape alive; pinned allocations on CUDA cost ~1 ms per MB)
        self._buffer_pool: list[np.ndarray] = []
        widest = max(int(qs[-1] - qs[0]) + plan.tile for qs in (plan.block(j)[2] for j in range(plan.n_blocks)))
        self._buffer_elems = self.stack.num_bands * plan.band_rows * widest
        processed_now = 0
        try:
            try:
                for j, start, stop, warm in todo:
                    for name, future, stats in self._run_block(j, start, stop, reader, warm):
                        processed_now += stats["tiles_processed"]
                        pending.append((name, future))
                        bar.update(stats["tiles_planned"] - self._ticked)  # the rest of the unit (skipped tiles)
                        self._ticked = 0
                        self.host.timed("wait_write_s", self._drain, pending, keep=writers + 1)
                self.host.timed("wait_write_s", self._drain, pending, keep=0)
            finally:
                bar.close()
                reader.close()
                self.writer.close()  # writes in progress finish and are recorded: a resume starts after them
                if polygoniser is not None:
                    polygoniser.close()
        except BaseException as exc:
            if ranks.world > 1:  # the others stop waiting for this rank
                manifest.close(failed=f"{type(exc).__name__}: {exc}"[:500])
            raise
        stream_seconds = time.perf_counter() - stream_start
        peak_stream = peak_rss_mib()
        manifest.close(finished=True, stream={"stream_s": stream_seconds, "tiles_processed": processed_now,
                                              "model_s": self.t_model, "peak_rss_mib": peak_stream})
        if not ranks.main:  # rank 0 assembles
            return {"rank": ranks.rank, "world": ranks.world, "units": len(mine), "tiles_processed": processed_now,
                    "stream_s": stream_seconds, "out": str(self.out_dir)}
        per_rank = [{"rank": 0, **manifest.data["stream"]}]
        if ranks.world > 1:
            others = wait_for_ranks({r: self.work / manifest_name(r) for r in range(1, ranks.world)})
            per_rank += [{"rank": r, **data.get("stream", {})} for r, data in sorted(others.items())]
        done = done_units(self.work, manifest.fingerprint)
        missing = [unit_name(j, i) for j in range(plan.n_blocks) for i in range(plan.n_bands)
                   if unit_name(j, i) not in done]
        if missing:
            raise RuntimeError(f"units {missing[:5]} were not computed by any rank")
        done = {unit_name(j, i): done[unit_name(j, i)] for j in range(plan.n_blocks) for i in range(plan.n_bands)}
        if ranks.world > 1:  # throughput of the whole run: every rank's tiles over the time until the last finished
            processed_now = sum(r.get("tiles_processed", 0) for r in per_rank)
            stream_seconds = time.perf_counter() - stream_start
        t_assemble = time.perf_counter()
        partial_pixels = sum(u.get("partial_band_pixels", 0) for u in done.values())
        assembly = assemble(self.work, plan, style=self.style, dtype=self.dtype, nodata=self.nodata,
                            floats=self.float_outputs(), overview_factors=self.overview_factors,
                            vectorise=self.vectorise, min_polygon_pixels=self.min_polygon_pixels,
                            partial_bands=self.partial_pieces and partial_pixels > 0,
                            fields=_region_fields(meta))
        assemble_seconds = time.perf_counter() - t_assemble
        counts = assembly.counts
        if not sum(int(counts[c]) for c in self.style.ids if c < len(counts)):  # an empty map: no result
            shutil.rmtree(self.work, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only when empty, i.e. created by this run
            where = " within the region" if self.aoi is not None else ""
            sources = self.stack.sources
            names = ", ".join(str(p) for p in sources[:3]) + (", ..." if len(sources) > 3 else "")
            raise InvalidRasterError(f"no valid pixels in {names}{where}: every pixel is nodata, so there is "
                                     "nothing to map; check the nodata value (gdalinfo) or the region")
        timings = {"total_s": time.perf_counter() - t_start, "stream_s": stream_seconds, "model_s": self.t_model,
                   "read_s_all_threads": reader.seconds, "assemble_s": assemble_seconds,
                   "stream_stages": {**{f"{k}_s": v for k, v in self.clock.seconds.items()}, **self.host.seconds},
                   "assemble_stages": assembly.seconds}
        report = run_report(meta, plan, done, assembly, style=self.style, dtype=self.dtype,
                            nodata=self.nodata, runs=manifest.runs, resumed=resumed, processed_now=processed_now,
                            timings=timings, require_all_bands=self.require_all_bands,
                            memory={"peak_rss_mib_after_stream": peak_stream, "peak_rss_mib": peak_rss_mib()})
        if ranks.world > 1:
            report["ranks"] = {"world": ranks.world, "per_rank": per_rank}
        write_json(self.work / "report.json", report)
        # an earlier run's report goes first and this run's comes last: a set of results cut short by a kill carries
        # no report that would vouch for it (the manifest stays until every file is in place: --resume redoes it)
        (self.out_dir / "report.json").unlink(missing_ok=True)
        for name in self.result_files:  # rename everything into place at once
            src = self.work / name
            if src.exists():
                from geocamat.outputs.raster import move_raster

                move_raster(src, self.out_dir / name)
            else:  # an earlier run's result this run does not make goes, with GDAL's side-car
                for stale in (self.out_dir / name, self.out_dir / f"{name}.aux.xml"):
                    stale.unlink(missing_ok=True)
        for manifest in self.work.glob("manifest*.json"):  # done: a kill during the clean-up leaves no run to resume
            manifest.unlink()
        shutil.rmtree(self.work, ignore_errors=True)
        return report

    @property
    def segments(self) -> list[Segment]:
        """This rank's bands of each column block, balanced by planned tiles."""
        plan = self.plan
        weights = [[self._planned(unit_name(j, i)) for i in range(plan.n_bands)] for j in range(plan.n_blocks)]
        return split_units(weights, self.ranks.world)[self.ranks.rank]

    def _planned(self, name: str) -> int:
        """Tiles planned in unit ``name`` (those starting in its band and block)."""
        j, i = int(name[1:5]), int(name[6:])
        x0, x1, qs = self.plan.block(j)
        return len(self.plan.band(i)[2]) * int(((qs >= x0) & (qs < x1)).sum())

    def _todo(self, done: dict) -> list[tuple[int, int, int, bool]]:
        """Runs of this rank's unfinished bands: (block, start, stop, warm); ``warm``: compute band
        ``start - 1`` first, only for its carry (no unit above it was kept with its carry)."""
        runs = []
        for seg in self.segments:
            i = seg.start
            while i < seg.stop:
                if unit_name(seg.block, i) in done:
                    i += 1
                    continue
                start = i
                while i < seg.stop and unit_name(seg.block, i) not in done:
                    i += 1
                kept = start > 0 and self.writer.carry_path(unit_name(seg.block, start - 1)).exists()
                runs.append((seg.block, start, i, start > 0 and self.plan.halo > 0 and not kept))
        return runs

    def _drain(self, pending: deque, keep: int) -> None:
        """Report finished units (recorded by their writer) in order; wait until at most ``keep`` are pending."""
        while pending and (pending[0][1].done() or len(pending) > keep):
            name, future = pending.popleft()
            future.result()
            if self.on_unit is not None:
                self.on_unit({"unit": name, "done": len(self.manifest.done), "total": self.plan.n_units})

    def _run_block(self, j: int, start: int, stop: int, reader, warm: bool = False):
        """Compute bands ``start..stop`` of column block ``j``; yields (unit name, write future, stats) as each
        is handed to a writer. ``warm``: first compute band ``start - 1`` only for its carry (its tiles are
        counted in ``recomputed_at_seams`` of unit ``start``); else the carry of band ``start - 1`` is read
        from its file."""
        import torch

        plan = self.plan
        if start >= stop:
            return
        first = start - 1 if warm else start
        x0, x1, qs = plan.block(j)
        qs0 = int(qs[0])
        win = int(qs[-1] - qs0 + plan.tile)
        hb, halo = plan.band_rows, plan.halo
        c = self.stack.num_bands
        pin = self.dev.type == "cuda"
        chunks: dict[int, list[Future]] = {}
        buffers: dict[int, np.ndarray] = {}
        pool, owner = self._buffer_pool, {}
        needed_last = stop  # chunk index of the halo below the last band
        prefetch = self.sizes.prefetch

        def new_buffer() -> np.ndarray:
            if pool:
                flat = pool.pop()
            elif pin:
                flat = torch.empty(self._buffer_elems, dtype=torch.float32, pin_memory=True).numpy()
            else:
                flat = np.empty(self._buffer_elems, np.float32)
            view = flat[: c * hb * win].reshape(c, hb, win)  # contiguous
            owner[id(view)] = flat
            return view

        def release(view: np.ndarray) -> None:
            pool.append(owner.pop(id(view)))

        def skip_piece(r0: int, c0: int, r1: int, c1: int) -> bool:
            if r0 >= self.grid.height:
                return True
            return self.aoi is not None and not self.aoi.intersects(self.grid.box(r0, c0, r1, c1))

        def submit(k: int) -> None:
            if k in chunks or k > needed_last:
                return
            buf = new_buffer()
            buffers[k] = buf
            futures = reader.submit(buf, k * hb, qs0, skip=skip_piece)
            done = Future()
            done.set_result(None)
            chunks[k] = futures or [done]

        def take(k: int):
            for f in chunks.pop(k):
                f.result()
            buf = buffers[k]
            if pin:
                tensor = torch.from_numpy(buf).to(self.dev, non_blocking=True)
            else:
                tensor = torch.from_numpy(buf)
            return buf, tensor

        k = self.head.outputs["probabilities"] + sum(self.head.outputs[n] for n in self.extras)
        # buffers reused by every band of the block (no large allocation per band or batch)
        bufs = {"x": torch.empty((c, hb + halo, win), dtype=torch.float32, device=self.dev),
                "acc": torch.empty((k + 1, hb + halo, win), dtype=torch.float32, device=self.dev),
                "batch": torch.empty((self.batch_size, c, plan.tile, plan.tile), dtype=torch.float32, device=self.dev)
                if not pin else None}
        carry = None
        if start > 0 and halo and not warm:  # without overlap there is no carry
            carry = torch.from_numpy(np.load(self.writer.carry_path(unit_name(j, start - 1)))).to(self.dev)
        for k in range(first, min(first + prefetch + 2, needed_last + 1)):
            submit(k)
        cur_buf, cur = self.host.timed("wait_read_s", take, first)
        warm_tiles = 0
        for i in range(first, stop):
            for k in range(i + 1, i + prefetch + 2):
                submit(k)
            nxt_buf, nxt = self.host.timed("wait_read_s", take, i + 1) if i + 1 <= needed_last else (None, None)
            bufs["x"][:, :hb].copy_(cur)
            if halo:
                bufs["x"][:, hb:].copy_(nxt[:, :halo])
            result, carry, stats = self._band(i, bufs, carry, x0, x1, qs, finish=i >= start)
            if pin:  # the copy from the pinned buffer is over once the band's results reached the host
                torch.cuda.current_stream().synchronize()
            self.clock.collect()
            release(cur_buf)
            if i < start:  # warm-up band: only its carry is kept
                warm_tiles = stats["tiles_processed"]
                cur_buf, cur = nxt_buf, nxt
                continue
            stats["recomputed_at_seams"] += warm_tiles
            warm_tiles = 0
            name = unit_name(j, i)
            prev = unit_name(j, i - 1) if i > 0 and (i > start or not warm) else None
            future = self.writer.submit(name, result, carry, stats, prev)
            yield name, future, stats
            cur_buf, cur = nxt_buf, nxt
        if cur_buf is not None:  # the halo chunk below the last band
            release(cur_buf)

    def _forward(self, x, bi: np.ndarray, bj: np.ndarray, batch_buf, views=None):
        """The head's outputs of tiles (bi, bj) of canvas ``x``, stacked as (N, channels, T, T) float32; with
        ``views`` (one dihedral index per tile), each tile goes through its view and its outputs are turned back."""
        import torch

        from geocamat.camat.geometry import dihedral, dihedral_inverse

        t, s, dev = self.plan.tile, self.plan.stride, self.dev
        if dev.type == "cuda":  # gather on the device (the caching allocator makes this cheap)
            batch = gather_tiles(x, bi, bj, t, s)
            if views is not None:
                batch = dihedral(batch, views)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                out = self.head(batch)
        else:
            with one_thread():
                if t <= SCATTER_MAX_TILE:  # one indexed copy out of a strided view
                    batch = gather_tiles(x, bi, bj, t, s).contiguous()
                else:  # copy the tiles into a reused buffer (slice copies beat a gather for large tiles)
                    batch = batch_buf[: len(bi)]
                    for n, (r, q) in enumerate(zip(bi, bj, strict=True)):
                        batch[n].copy_(x[:, r * s:r * s + t, q * s:q * s + t])
                if views is not None:
                    batch = dihedral(batch, views)
            with torch.no_grad():
                out = self.head(batch)
        outputs = [out["probabilities"], *(out[name] for name in self.extras)]
        if views is not None:
            outputs = [dihedral_inverse(o, views) for o in outputs]
        return outputs

    def _band(self, i: int, bufs: dict, carry, x0: int, x1: int, qs: np.ndarray, finish: bool = True):
        """Run the tiles owned by band i (input in ``bufs["x"]``) through the head and finish its rows (with
        ``finish=False``, only its carry: the result is None)."""
        import shapely
        import torch

        plan = self.plan
        t, s, hb, halo = plan.tile, plan.stride, plan.band_rows, plan.halo
        y0, y1, ps = plan.band(i)
        qs0 = int(qs[0])
        k = len(self.style.ids)
        x, acc = bufs["x"], bufs["acc"]
        weight_channel = acc.shape[0] - 1
        missing = torch.isnan(x)
        some, every = missing.any(dim=0), missing.all(dim=0)
        partial = some & ~every  # pixels where some bands are nodata
        valid_px = ~some if self.require_all_bands else ~every
        del missing
        x.sub_(self.mean).div_(self.std).nan_to_num_(nan=0.0)  # normalised; invalid -> 0 (the band mean)
        acc.zero_()
        if carry is not None and halo:
            acc[:, :halo] = carry
        nr, nc = len(ps), len(qs)
        owned = (qs >= x0) & (qs < x1)
        stats = {"tiles_planned": int(nr * owned.sum()), "tiles_processed": 0, "skipped_outside_aoi": 0,
                 "skipped_no_data": 0, "recomputed_at_seams": 0, "partial_band_pixels": 0}
        if nr:
            # which tiles touch the AOI and have valid input
            v = valid_px[: (nr - 1) * s + t].to(torch.uint8)
            tile_ok = v.unfold(0, t, s).unfold(1, t, s).amax(dim=(-1, -2)).cpu().numpy()[:nr, :nc].astype(bool)
            if self.aoi is not None:
                rr, cc = np.meshgrid(ps, qs, indexing="ij")
                g = self.grid.transform
                boxes = shapely.box(g.c + g.a * cc, g.f + g.e * (rr + t), g.c + g.a * (cc + t), g.f + g.e * rr)
                in_aoi = shapely.intersects(self.aoi, boxes)
            else:
                in_aoi = np.ones((nr, nc), bool)
            run = in_aoi & tile_ok
            stats["skipped_outside_aoi"] = int((~in_aoi & owned[None]).sum())
            stats["skipped_no_data"] = int((in_aoi & ~tile_ok & owned[None]).sum())
            stats["tiles_processed"] = int((run & owned[None]).sum())
            stats["recomputed_at_seams"] = int((run & ~owned[None]).sum())
            ti, tj = np.nonzero(run)
            batches = range(0, len(ti), self.batch_size)
            if not finish:  # only the carry is wanted: the batches with a tile reaching into the carry rows (the
                # same batches as a full band, so that each tile's outputs and each sum are the same bits)
                reach = ps[ti] + t > y0 + hb
                batches = [b for b in batches if reach[b:b + self.batch_size].any()]
                stats["tiles_processed"] = sum(len(ti[b:b + self.batch_size]) for b in batches)
                stats["recomputed_at_seams"] = 0
            start = time.perf_counter()
            clock = self.clock
            # Per-tile work on the CPU runs on one thread: with several OpenMP threads on busy cores, threads
            # spinning at barriers make small ops up to 50x slower.
            for b in batches:
                bi, bj = ti[b:b + self.batch_size], tj[b:b + self.batch_size]
                t0 = clock.mark()
                views = None
                if self.tta == "spread":  # tile indices on the whole scene's grid: the same views in every unit,
                    lr, lc = self.grid.lattice  # rank and region
                    views = torch.from_numpy(tile_views((ps[bi] + lr) // s, (qs[bj] + lc) // s)).to(self.dev)
                outputs = self._forward(x, bi, bj, bufs["batch"], views)
                t1 = clock.mark()
                with one_thread():
                    values = torch.cat([o.float() for o in outputs], dim=1)
                    accumulate(acc, values, self.w2, bi, bj, t, s, self.blend)
                if finish and self._bar is not None:  # progress within the unit: its own tiles of the batch
                    mine = int(owned[bj].sum())
                    self._ticked += mine
                    self._bar.update(mine)
                clock.add("model", t0, t1)
                clock.add("blend", t1, clock.mark())
            self.t_model += time.perf_counter() - start
        if not finish:
            return None, acc[:, hb:hb + halo].clone() if halo else None, stats
        # finish rows [y0, y1) of columns [x0, x1) (on CUDA, the host waits here for the band's kernels)
        t_finish = time.perf_counter()
        rows, c0, c1 = y1 - y0, x0 - qs0, x1 - qs0
        a = acc[:, :rows, c0:c1]
        wsum = a[weight_channel]
        ok = (wsum > 0) & valid_px[:rows, c0:c1]
        partial = partial[:rows, c0:c1]
        if self.aoi is not None:
            inside = torch.from_numpy(self._aoi_mask(y0, x0, rows, x1 - x0)).to(self.dev)
            ok &= inside
            partial = partial & inside
        best, arg = a[:k].max(dim=0)
        ok &= torch.isfinite(best)  # a model's NaN output is no class (argmax would call it the first class)
        stats["partial_band_pixels"] = int(partial.sum())
        if self.partial_pieces:  # 1 = mapped from partly filled bands, 0 = every band valid, nodata off the map
            mask = torch.where(ok, partial.to(torch.uint8), partial_bands.NODATA).to(torch.uint8)
        inv = torch.where(ok, 1.0 / wsum.clamp_min(1e-30), torch.nan)  # NaN where there is no result
        cls = torch.where(ok, self.lut[arg], self.nodata)
        floats = [best * inv, *(a[c] * inv for c in range(k, weight_channel))]
        if self.write_probabilities:
            floats.extend(a[c] * inv for c in range(k))
        small_ids = torch.uint8 if self.dtype == "uint8" else torch.int32  # 1 byte per pixel to the host
        result = {"class": cls.to(small_ids).cpu().numpy().astype(self.dtype, copy=False)[None],
                  "float": torch.stack(floats).cpu().numpy(), "row_off": y0, "col_off": x0}
        if self.partial_pieces:
            result["partial"] = mask.cpu().numpy()[None]
        new_carry = acc[:, hb:hb + halo].clone() if halo else None
        self.host.add("finish_s", time.perf_counter() - t_finish)
        return result, new_carry, stats

    def _aoi_mask(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        from rasterio.features import geometry_mask

        box = self.grid.box(row0, col0, row0 + rows, col0 + cols)
        if self.aoi.contains(box):
            return np.ones((rows, cols), bool)
        return geometry_mask([self.aoi], out_shape=(rows, cols), transform=self.grid.window_transform(row0, col0),
                             invert=True)
