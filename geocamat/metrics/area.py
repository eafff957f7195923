"""Accuracy and area of a map from a reference sample, with their 95% confidence intervals: the stratified
estimators of Olofsson et al. (2014), "Good practices for estimating area and assessing accuracy of land change",
Remote Sensing of Environment 148, 42-57 (equations 2-12).

A map's pixel counts of each class say how much of each class the map shows, not how much there is: a class the
map over-predicts has its area over-stated. With a probability sample of reference points (simple random, or
stratified by map class), the confusion of the sample weighted by each map class's share of the area estimates
each class's true area, the overall, user's and producer's accuracies, and how uncertain each is.
"""

from __future__ import annotations

import math

import numpy as np

#: the normal quantile of a two-sided 95% interval
Z95 = 1.96
#: the variance taken for a map class with one reference point: p (1 - p) at its largest, an upper bound
ONE_POINT_VARIANCE = 0.25


def stratified_estimates(sample: np.ndarray, mapped_area: np.ndarray, names: list[str]) -> dict:
    """Area and accuracy estimates with 95% half-widths.

    Args:
        sample: (k, k) counts of reference points, rows the map class, columns the reference class.
        mapped_area: (k,) the map's area of each class (any unit; the estimates come in it).
        names: the k class names.

    Returns:
        ``overall_accuracy`` and ``overall_accuracy_ci``; per class ``mapped_area``, ``area`` and ``area_ci``
        (estimated area and 95% half-width), ``users``/``users_ci``, ``producers``/``producers_ci``; ``points``;
        ``notes`` (the map classes with fewer than 2 points, named).
        A map class with one point gets the largest variance a proportion can have; a map class without points
        adds nothing to the estimates (both noted). A half-width is None only where its estimate is.
    """
    n = np.asarray(sample, np.float64)
    area = np.asarray(mapped_area, np.float64)
    total = float(area.sum())
    per_row = n.sum(axis=1)
    weights = area / total if total > 0 else np.zeros_like(area)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(per_row[:, None] > 0, n / per_row[:, None], 0.0)  # n_ij / n_i.
        # n_ij/n_i. (1 - n_ij/n_i.) / (n_i. - 1); one point: the largest variance a proportion can have (1/4), an
        # upper bound where the formula has none; no point: no term (the stratum is not estimated, noted)
        row_var = np.where(per_row[:, None] > 1, share * (1 - share) / (per_row[:, None] - 1),
                           np.where(per_row[:, None] == 1, ONE_POINT_VARIANCE, 0.0))
    p = weights[:, None] * share  # estimated share of the area in map class i and reference class j
    sampled = per_row > 0
    unsampled = [names[i] for i in range(len(names)) if area[i] > 0 and not sampled[i]]
    thin = [names[i] for i in range(len(names)) if area[i] > 0 and per_row[i] == 1]
    active = area > 0  # a map class without area weighs nothing, sampled or not

    def ci(variance: float, scale: float = 1.0) -> float:
        return round(Z95 * math.sqrt(max(variance, 0.0)) * scale, 6)

    overall = float(np.trace(p))
    users = np.diag(share)
    overall_var = float(np.sum((weights**2 * np.diag(row_var))[active]))
    classes = {}
    for j, name in enumerate(names):
        ref_share = float(p[:, j].sum())  # the class's true share of the area
        area_var = float(np.sum((weights**2 * row_var[:, j])[active]))
        producers = float(p[j, j] / ref_share) if ref_share > 0 else None
        classes[name] = {
            "mapped_area": round(float(area[j]), 6), "area": round(ref_share * total, 6),
            "area_ci": ci(area_var, total),
            "users": round(float(users[j]), 6) if sampled[j] else None,
            "users_ci": ci(float(row_var[j, j])) if sampled[j] else None,
            "producers": None if producers is None else round(producers, 6),
            "producers_ci": None if producers is None else ci(_producers_variance(j, area, share, row_var, producers,
                                                                                  active)),
        }
    notes = []
    if unsampled:
        notes.append(f"no reference point falls in the map's {', '.join(unsampled)}: that area is not covered by "
                     "the sample, so the estimates miss its errors; add points there")
    if thin:
        notes.append(f"one reference point only in the map's {', '.join(thin)}: its variance is taken at its "
                     "largest (1/4), so the intervals are wider than the map may deserve; give each map class 50 or "
                     "more points (Olofsson et al. 2014)")
    return {"points": int(n.sum()), "overall_accuracy": round(overall, 6), "overall_accuracy_ci": ci(overall_var),
            "total_area": round(total, 6), "per_class": classes, "notes": notes}


def _producers_variance(j: int, area: np.ndarray, share: np.ndarray, row_var: np.ndarray,
                        producers: float, active: np.ndarray) -> float:
    """Equation 7 of Olofsson et al. (2014): the variance of class ``j``'s producer's accuracy, with the mapped
    areas in place of the pixel counts (the ratio is the same)."""
    estimated = float(np.sum(area * share[:, j]))  # N_.j: the class's estimated area (> 0: producers exists)
    own = area[j] ** 2 * (1 - producers) ** 2 * row_var[j, j]
    others = sum(area[i] ** 2 * row_var[i, j] for i in range(len(area)) if i != j and active[i])
    return float((own + producers**2 * others) / estimated**2)


def allocation_se(weights: np.ndarray, users: np.ndarray, points: np.ndarray, pixels: np.ndarray) -> float:
    """The standard error of the overall accuracy a stratified sample of ``points`` per class gives (Olofsson et
    al. 2014, eq. 5, with the finite-population correction: a class sampled whole adds none), from the classes'
    area shares ``weights``, expected user's accuracies ``users`` and ``pixels``."""
    u = np.clip(np.asarray(users, float), 0.0, 1.0)
    n, big_n = np.asarray(points, float), np.asarray(pixels, float)
    share = np.where(n > 1, (1.0 - n / np.maximum(big_n, 1.0)) / np.maximum(n - 1.0, 1.0), 0.0)
    return float(np.sqrt(np.sum(np.asarray(weights, float) ** 2 * u * (1.0 - u) * share)))


def sample_size(weights: np.ndarray, users: np.ndarray, target_se: float) -> int:
    """Points a stratified sample needs for the overall accuracy's standard error to be ``target_se`` (Olofsson et
    al. 2014, equation 13: ``n = (sum W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))``), from the map classes'
    area shares ``weights`` and the user's accuracies one expects of them ``users``."""
    spread = np.sqrt(np.clip(users, 0.0, 1.0) * (1.0 - np.clip(users, 0.0, 1.0)))
    n = (float(np.sum(np.asarray(weights) * spread)) / target_se) ** 2
    return max(1, math.ceil(n - 1e-9))  # 19.000000000000004 points are 19
