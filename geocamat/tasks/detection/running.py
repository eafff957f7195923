"""Running a detector over the windows of an image: options resolved against the model, the device, a rank's
share of the windows, the raw detections kept in a window store, and their merge into objects."""

from __future__ import annotations

import time
from pathlib import Path

from geocamat.bundle import Bundle
from geocamat.errors import ConfigError
from geocamat.tasks.detection.config import PredictOptions
from geocamat.tasks.detection.inputs import normalisation_for, read_bands, unit_name


def detector_fn(model, opts: dict, with_cam: bool = True):
    """The model as a DetectFn, under test-time augmentation when ``opts["tta"]``."""
    from geocamat.inference.detect import model_detect_fn

    fn = model_detect_fn(model, with_cam=with_cam)
    if opts.get("tta"):
        from geocamat.inference.detect_tta import tta_detect_fn

        fn = tta_detect_fn(fn)
    return fn


def device_for(options: dict, ranks=None) -> str:
    """The device of this process: the one asked for, or with several ranks on a machine each rank's GPU."""
    from geocamat.devices import resolve_device

    dev = resolve_device(options.get("device") or "auto")
    if ranks is not None:
        from geocamat.inference.ranks import rank_device

        dev = rank_device(dev, options.get("device") or "auto", ranks)
    return str(dev)


def detect_raw(bundle, model, path, opts, device, score_threshold, progress: bool = False, what: str = "detect",
               within=None, ranks=None, store=None, unit: int = 0, done: set[int] | frozenset = frozenset()):
    """The windows of one image (or mosaic) that are this rank's (every one with no ``ranks``), detected but not
    merged: (info, windows planned, :class:`RawDetections` or None when they went to ``store``, seconds).

    With a :class:`geocamat.inference.detect_store.WindowStore`, each chunk of finished windows is saved there as
    unit ``unit``; the windows ``done`` (already there) are skipped. ``progress`` shows a bar of the windows on a
    terminal (a line every 30 s in logs and pipes)."""
    import sys

    from geocamat.inference.detect import detect_windows, image_windows
    from geocamat.inference.detect_store import CHUNK_BATCHES, chunks
    from geocamat.inference.telemetry import progress_bar

    t0 = time.perf_counter()
    mean, std = normalisation_for(bundle, path)
    info, windows, read = image_windows(path, bundle.tile_size, float(opts["overlap"]), read_bands(bundle), within)
    batch = int(opts["batch_size"])
    mine = list(range(len(windows))) if ranks is None else rank_share(len(windows), batch, ranks)
    mine = [i for i in mine if i not in done]
    bar = progress_bar(total=len(mine), unit="window", desc=f"{what} {unit_name(path)}", file=sys.stderr,
                       disable=None if progress else True, smoothing=0.1, dynamic_ncols=True, leave=False)
    run = dict(tile_size=bundle.tile_size, mean=mean, std=std, batch_size=batch, score_threshold=score_threshold,
               device=device)
    raw = None
    try:
        if store is None:
            raw = detect_windows(read, info, windows, detector_fn(model, opts), indices=mine,
                                 progress=lambda done, total: bar.update(done - bar.n), **run)
        else:
            for piece in chunks(mine, batch * CHUNK_BATCHES):  # whole batches: see rank_share
                start = bar.n
                found = detect_windows(read, info, windows, detector_fn(model, opts), indices=piece,
                                       progress=lambda done, total, start=start: bar.update(start + done - bar.n),
                                       **run)
                store.save(unit, piece, found)
    finally:
        bar.close()
    return info, len(windows), raw, time.perf_counter() - t0, len(mine)


def run_identity(bundle: Bundle, model_sha256: str | None, paths: list[str], opts: dict) -> dict:
    """What a detection run's windows depend on: a resumed run must have the same (the batch size and device may
    change; the objects are then the same up to float rounding)."""
    from geocamat.inference.landuse import weights_sha256

    files = []
    for p in paths:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return {"model": model_sha256 or weights_sha256(bundle), "images": files,
            "settings": {k: opts.get(k) for k in ("score_threshold", "overlap", "tta", "region", "bbox", "bbox_crs")}}


def rank_share(windows: int, batch_size: int, ranks) -> list[int]:
    """The windows of a rank: every W-th batch of the one-process plan, so that each batch holds the windows it
    holds in one process and the detector's numbers are the same to the bit (on one kind of device)."""
    return [i for i in range(windows) if (i // batch_size) % ranks.world == ranks.rank]


def merge_windows(raw, info, windows: int, opts: dict):
    """The raw detections of all of an image's windows merged into objects."""
    from geocamat.inference.detect import merge_raw

    return merge_raw(raw, info, windows, nms_iou=float(opts["nms_iou"]), match_iou=float(opts["match_iou"]),
                     duplicate_iou=float(opts["duplicate_iou"]), duplicate_merge=str(opts["duplicate_merge"]))


def detect_scene(bundle, model, path, opts, device, score_threshold, progress: bool = False, what: str = "detect",
                 within=None):
    """Detections of one whole image (sliding windows, merged), in this process."""
    info, windows, raw, seconds, _ = detect_raw(bundle, model, path, opts, device, score_threshold, progress, what,
                                                 within)
    det = merge_windows(raw, info, windows, opts)
    det.seconds = seconds
    return det


def resolve_options(bundle: Bundle, options: PredictOptions) -> dict:
    """The options as a dict, with the model's own settings where the user gave none."""
    from dataclasses import asdict

    opts = asdict(options)
    for key in ("score_threshold", "nms_iou", "overlap"):
        if opts[key] is None:
            opts[key] = bundle.extra[key]
    if not 0 <= float(opts["overlap"]) < 0.9:
        raise ConfigError(f"invalid overlap={opts['overlap']!r}: use a fraction of the tile in [0, 0.9)")
    from geocamat.inference.duplicates import METHODS

    if opts["duplicate_merge"] not in METHODS or not 0 < float(opts["duplicate_iou"]) <= 1:
        raise ConfigError(f"invalid duplicate_merge={opts['duplicate_merge']!r} / duplicate_iou="
                          f"{opts['duplicate_iou']!r}: use {', '.join(METHODS)} and an IoU in (0, 1]")
    return opts
