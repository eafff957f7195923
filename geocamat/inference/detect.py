"""Sliding-window detection over a whole image, with cross-tile merging so border objects are found once.

Windows of ``tile_size`` overlap by ``overlap`` (a fraction of the tile). Each window is read from the file, or
from the sheets of a mosaic (memory does not grow with the scene), normalised and passed to a detector function;
the work splits into planning the windows (:func:`image_windows`), detecting any subset of them
(:func:`detect_windows`: a rank's share, what a resumed run has left) and merging them all (:func:`merge_raw`).
Merging:

1. a detection touching an inner window edge (an edge that is not the image border) is *truncated*;
2. detections of the same class from different windows are the same object when they agree inside the
   windows' common area (see :func:`merge_tiles`); a group keeps its best complete box, or the union of
   its pieces when no window saw the whole object (objects larger than the overlap);
3. class-wise NMS at ``nms_iou`` removes the remaining duplicates;
4. near-duplicates that NMS at 0.5 lets through (IoU 0.4-0.5) are merged (``duplicate_iou``/``duplicate_merge``,
   :mod:`geocamat.inference.duplicates`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from geocamat.data.detection_images import image_info, read_image
from geocamat.data.image_mosaic import ImageMosaic
from geocamat.inference.duplicates import merge_duplicates
from geocamat.inference.plan import tile_stride
from geocamat.unionfind import connected_components

DetectFn = Callable[[Tensor], tuple[list[dict], Tensor | None]]


def window_offsets(length: int, tile: int, overlap: float) -> list[int]:
    """Window offsets along one axis: stride ``tile * (1 - overlap)``, the last window flush with the end."""
    if length <= tile:
        return [0]
    stride = tile_stride(tile, overlap)
    offs = list(range(0, length - tile + 1, stride))
    if offs[-1] + tile < length:
        offs.append(length - tile)
    return offs


def plan_windows(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int]]:
    """(col, row) of every window covering the image."""
    return [(c, r) for r in window_offsets(height, tile, overlap) for c in window_offsets(width, tile, overlap)]


@dataclass
class SceneDetections:
    """Detections of one image in its pixel grid (xyxy), after merging."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cam_evidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    windows: int = 0
    raw_detections: int = 0
    seconds: float = 0.0


def merge_tiles(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, truncated: np.ndarray,
                windows: np.ndarray, nms_iou: float = 0.5, match_iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Merge detections from overlapping windows (see the module docstring).

    Two detections A (from window WA) and B (from window WB) of the same class are the same object when
    they agree where both windows see: IoU(A clipped to WB, B clipped to WA) >= ``match_iou``. For one object
    O, A = O ∩ WA and B = O ∩ WB, so both sides equal O ∩ WA ∩ WB, whether A and B are whole or cut by a
    window edge; two different objects disagree there. A group of matched detections becomes the best
    complete (not truncated) box of the group, or the union of the pieces if every member is truncated.

    Args:
        boxes: (N, 4) xyxy in image pixels.
        scores: (N,).
        labels: (N,).
        truncated: (N,) whether the box touches an inner edge of its window.
        windows: (N, 4) xyxy extent of the window each detection came from, in image pixels.
        nms_iou: IoU of the final class-wise NMS (duplicates within one window).
        match_iou: see above.

    Returns:
        (kept boxes (K, 4), index of the detection whose score and class each kept box carries (K,)).
    """
    from geocamat.inference.overlaps import class_nms, overlapping_pairs

    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    boxes = boxes.astype(np.float64)
    windows = windows.astype(np.float64)
    # only overlapping detections can be one object: a grid search finds them, so a scene's merge costs its
    # detections and their neighbours, not their square
    bx, win = boxes.T.copy(), windows.T.copy()  # corners as rows: gathers of one corner are contiguous

    def agree(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        other = (labels[i] == labels[j]) & np.any(windows[i] != windows[j], axis=1)
        i, j = i[other], j[other]
        sides = []  # per axis: the extent of A in WB, of B in WA, and of their intersection
        for lo, hi in ((0, 2), (1, 3)):
            a_lo, a_hi = np.maximum(bx[lo, i], win[lo, j]), np.minimum(bx[hi, i], win[hi, j])
            b_lo, b_hi = np.maximum(bx[lo, j], win[lo, i]), np.minimum(bx[hi, j], win[hi, i])
            sides.append([np.clip(a_hi - a_lo, 0, None), np.clip(b_hi - b_lo, 0, None),
                          np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None)])
        (wa, wb, wi), (ha, hb, hi_) = sides
        ia, ib, ii = wa * ha, wb * hb, wi * hi_
        out = other.copy()
        out[other] = ii / np.maximum(ia + ib - ii, 1e-9) >= match_iou
        return out

    same = np.stack(overlapping_pairs(boxes, agree), axis=1)
    roots = connected_components(n, same)
    # groups in the order of their smallest index; in each, the best detection (first of equal scores) gives the
    # score and class, the best complete one the box, or the union of the pieces when every member is truncated
    by_score = np.lexsort((-scores, roots))
    starts = np.flatnonzero(np.r_[True, roots[by_score][1:] != roots[by_score][:-1]])
    idx = by_score[starts]
    by_whole = np.lexsort((-scores, truncated, roots))
    lead = by_whole[starts]
    mb = boxes[lead].copy()
    pieces = truncated[lead]
    if pieces.any():
        sorted_boxes = boxes[by_whole]
        union = np.hstack([np.minimum.reduceat(sorted_boxes[:, :2], starts),
                           np.maximum.reduceat(sorted_boxes[:, 2:], starts)])
        mb[pieces] = union[pieces]
    keep = class_nms(mb, scores[idx], labels[idx], nms_iou)
    return mb[keep].astype(np.float32), idx[keep]


def cam_evidence(cam: Tensor, boxes: Tensor) -> Tensor:
    """Share of a tile's positive CAM mass that lies inside each box.

    Args:
        cam: (H, W) CAM of the detection's class (raw).
        boxes: (M, 4) xyxy in tile pixels.

    Returns:
        (M,) values in [0, 1].
    """
    c = cam.clamp_min(0)
    total = float(c.sum())
    out = torch.zeros(len(boxes))
    if total <= 0:
        return out
    h, w = c.shape
    for k, b in enumerate(boxes.tolist()):
        x0, y0 = max(0, int(b[0])), max(0, int(b[1]))
        x1, y1 = min(w, int(np.ceil(b[2]))), min(h, int(np.ceil(b[3])))
        if x1 > x0 and y1 > y0:
            out[k] = float(c[y0:y1, x0:x1].sum()) / total
    return out


@dataclass
class RawDetections:
    """Detections of some windows of one image before the cross-window merge, in image pixels.

    ``order`` is each detection's window index in the image's window plan: the parts that ranks detect (every
    W-th batch of windows each), or that a resumed run kept, concatenated by :meth:`concat` give the arrays one
    process gives, in the same order, so the merge (and the objects) is the same.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    truncated: np.ndarray
    windows: np.ndarray
    evidence: np.ndarray
    order: np.ndarray

    FIELDS = ("boxes", "scores", "labels", "truncated", "windows", "evidence", "order")

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, bool),
                   np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: list[RawDetections]) -> RawDetections:
        """The parts as one, ordered by window (stable: a window's detections keep their order)."""
        parts = [p for p in parts if len(p.boxes)] or [cls.empty()]
        joined = {f: np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS}
        idx = np.argsort(joined["order"], kind="stable")
        return cls(**{f: v[idx] for f, v in joined.items()})

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The fields as arrays named ``prefix + field`` (for ``np.savez``)."""
        return {prefix + f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> RawDetections:
        return cls(**{f: np.asarray(arrays[prefix + f]) for f in cls.FIELDS})


def image_windows(path: str | ImageMosaic, tile_size: int, overlap: float, bands: int | None = None,
                  within: Callable[[int, int], bool] | None = None):
    """An image's (or a mosaic's) window plan: (its :class:`ImageInfo`, the (col, row) of each window, a function
    reading a (col, row, width, height) window as (pixels, validity)). A mosaic skips windows over its holes;
    ``within`` skips more (e.g. windows that miss an area of interest)."""
    if isinstance(path, ImageMosaic):
        info, mosaic = path.info, path
        windows = [(c, r) for c, r in plan_windows(info.width, info.height, tile_size, overlap)
                   if mosaic.covers(c, r, tile_size, tile_size)]

        def read(window):
            return mosaic.read(window, bands)
    else:
        info = image_info(path)
        windows = plan_windows(info.width, info.height, tile_size, overlap)

        def read(window):
            return read_image(path, window, bands)
    if within is not None:
        windows = [(c, r) for c, r in windows if within(c, r)]
    return info, windows, read


def detect_windows(read, info, windows: list[tuple[int, int]], detect_fn: DetectFn, *, tile_size: int,
                   mean: list[float], std: list[float], indices: list[int] | None = None, batch_size: int = 4,
                   score_threshold: float = 0.3, edge_margin: float = 2.0, device: str | torch.device = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> RawDetections:
    """Run the detector over the windows ``indices`` of a plan (all by default): detections in image pixels,
    each flagged truncated when it touches an inner window edge (within ``edge_margin`` px)."""
    indices = list(range(len(windows))) if indices is None else list(indices)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    parts: dict[str, list] = {f: [] for f in RawDetections.FIELDS}
    for b0 in range(0, len(indices), batch_size):
        chunk = indices[b0:b0 + batch_size]
        tiles = []
        for i in chunk:
            col, row = windows[i]
            data, valid = read((col, row, tile_size, tile_size))
            x = (torch.from_numpy(data) - m) / s
            x[:, ~torch.from_numpy(valid)] = 0
            tiles.append(x)
        batch = torch.stack(tiles).to(device)
        dets, cams = detect_fn(batch)
        for k, (i, d) in enumerate(zip(chunk, dets, strict=True)):
            col, row = windows[i]
            keep = d["scores"] >= score_threshold
            bx, sc, lb = d["boxes"][keep].float().cpu(), d["scores"][keep].float().cpu(), d["labels"][keep].cpu()
            if len(bx) == 0:
                continue
            ev = torch.zeros(len(bx))
            if cams is not None:
                for c in lb.unique().tolist():
                    sel = lb == c
                    ev[sel] = cam_evidence(cams[k, int(c)].float().cpu(), bx[sel])
            inner_l, inner_t = col > 0, row > 0
            inner_r, inner_b = col + tile_size < info.width, row + tile_size < info.height
            trunc = ((inner_l & (bx[:, 0] <= edge_margin)) | (inner_t & (bx[:, 1] <= edge_margin))
                     | (inner_r & (bx[:, 2] >= tile_size - edge_margin))
                     | (inner_b & (bx[:, 3] >= tile_size - edge_margin)))
            off = torch.tensor([col, row, col, row], dtype=torch.float32)
            parts["boxes"].append((bx + off).numpy())
            parts["scores"].append(sc.numpy())
            parts["labels"].append(lb.numpy().astype(np.int64))
            parts["truncated"].append(trunc.numpy())
            parts["windows"].append(np.tile(np.array([[col, row, col + tile_size, row + tile_size]], np.float32),
                                            (len(bx), 1)))
            parts["evidence"].append(ev.numpy())
            parts["order"].append(np.full(len(bx), i, np.int64))
        if progress is not None:
            progress(min(b0 + batch_size, len(indices)), len(indices))
    if not parts["boxes"]:
        return RawDetections.empty()
    return RawDetections(**{f: np.concatenate(v) for f, v in parts.items()})


#: a box keeps at least this share of its area inside the image once clipped to it, or it is dropped
MIN_SHARE_INSIDE = 0.25


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def merge_raw(raw: RawDetections, info, windows: int, *, nms_iou: float = 0.5, match_iou: float = 0.5,
              duplicate_iou: float = 0.4, duplicate_merge: str = "nms") -> SceneDetections:
    """The detections of every window of an image merged into objects (see the module docstring)."""
    out = SceneDetections(windows=windows)
    if len(raw.boxes):
        merged, idx = merge_tiles(raw.boxes, raw.scores, raw.labels, raw.truncated, raw.windows, nms_iou, match_iou)
        merged, lead = merge_duplicates(merged, raw.scores[idx], raw.labels[idx], duplicate_iou, duplicate_merge)
        idx = idx[lead]
        whole = _areas(merged)
        merged[:, [0, 2]] = merged[:, [0, 2]].clip(0, info.width)
        merged[:, [1, 3]] = merged[:, [1, 3]].clip(0, info.height)
        inside = _areas(merged) >= MIN_SHARE_INSIDE * whole  # mostly off the image: found in the padding around it
        merged, idx = merged[inside], idx[inside]  # (a 1 x 1 px image gave 201 boxes, all clipped to its pixel)
        out = SceneDetections(merged, raw.scores[idx].astype(np.float32), raw.labels[idx],
                              raw.evidence[idx].astype(np.float32), windows, len(raw.boxes))
    return out


def detect_image(
    path: str | ImageMosaic,
    detect_fn: DetectFn,
    *,
    tile_size: int,
    mean: list[float],
    std: list[float],
    overlap: float = 0.25,
    batch_size: int = 4,
    score_threshold: float = 0.3,
    nms_iou: float = 0.5,
    match_iou: float = 0.5,
    duplicate_iou: float = 0.4,
    duplicate_merge: str = "nms",
    edge_margin: float = 2.0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    bands: int | None = None,
    within: Callable[[int, int], bool] | None = None,
) -> SceneDetections:
    """Detect objects over a whole image with overlapping windows and cross-window merging.

    Args:
        path: image file (GeoTIFF or PNG/JPG), or a mosaic of images on one grid (windows that meet none of
            its images are skipped).
        detect_fn: normalised tiles (N, C, S, S) on ``device`` -> (per tile ``{"boxes", "scores", "labels"}``
            in tile pixels, optional (N, K, S, S) CAMs).
        tile_size: window side in pixels.
        mean: per-band mean for normalisation.
        std: per-band standard deviation.
        overlap: window overlap as a fraction of the tile.
        batch_size: windows per detector call.
        score_threshold: detections below are dropped before merging.
        nms_iou: IoU of the cross-window NMS.
        match_iou: see :func:`merge_tiles`.
        duplicate_iou: near-duplicates of one class with IoU >= this are merged after NMS
            (:func:`geocamat.inference.duplicates.merge_duplicates`).
        duplicate_merge: ``wbf``, ``nms`` or ``none``.
        edge_margin: a box within this many pixels of an inner window edge counts as truncated.
        device: where the tiles go.
        progress: called with (windows done, windows total).
        bands: read the image as this many bands (a grey image for a colour model); None: its own.
        within: which windows to run, by their (col, row) (e.g. those meeting an area of interest); None: all.

    Returns:
        The merged detections, in the image's pixel grid.
    """
    t0 = time.perf_counter()
    info, windows, read = image_windows(path, tile_size, overlap, bands, within)
    raw = detect_windows(read, info, windows, detect_fn, tile_size=tile_size, mean=mean, std=std,
                         batch_size=batch_size, score_threshold=score_threshold, edge_margin=edge_margin,
                         device=device, progress=progress)
    out = merge_raw(raw, info, len(windows), nms_iou=nms_iou, match_iou=match_iou, duplicate_iou=duplicate_iou,
                    duplicate_merge=duplicate_merge)
    out.seconds = time.perf_counter() - t0
    return out


def model_detect_fn(model: torch.nn.Module, with_cam: bool = True, amp: bool = False) -> DetectFn:
    """A :data:`DetectFn` for a :class:`geocamat.models.detectors.Detector` (eval mode, no gradients)."""

    def fn(batch: Tensor) -> tuple[list[dict], Tensor | None]:
        if amp and batch.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model.predict(batch, with_cam=with_cam)
        return model.predict(batch, with_cam=with_cam)

    return fn
