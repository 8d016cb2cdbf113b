"""Training-pair mining arithmetic: click propensities, debiased click scores, hard negatives.

Pure numpy/python, no Spark: :mod:`visearch.train.pair_table` aggregates the logs with Spark and calls
these functions on the aggregates.

Position bias follows the position-based model (PBM): a result at position ``p`` is examined
with probability ``theta[p]`` and clicked when examined with probability ``gamma[q, d]``
(its attractiveness for the query), so ``P(click) = theta[p] * gamma[q, d]``. When logged
rankings are noisy — the same (query, image) shown at several positions — EM recovers
``theta`` up to scale (Chuklin et al., "Click Models for Web Search", 2015; Wang et al.,
WSDM 2018). We report ``theta / theta[1]``: the propensity of each position relative to the top.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairStats:
    """Impressions and clicks of one (query, image, position) cell of the logs."""

    query_image_id: str
    image_id: str
    position: int
    impressions: int
    clicks: int


@dataclass(frozen=True)
class PropensityEstimate:
    """Examination propensity per position, relative to position 1 (so ``propensity[1] == 1``)."""

    propensity: dict[int, float]
    impressions: dict[int, int]
    clicks: dict[int, int]
    iterations: int
    converged: bool


def estimate_propensities(
    stats: Sequence[PairStats], *, max_iter: int = 500, tol: float = 1e-6, max_position: int | None = None
) -> PropensityEstimate:
    """Estimate per-position examination propensities with EM under the position-based model.

    Raises:
        ValueError: when there are no impressions, or a cell has more clicks than impressions
            or a position below 1.
    """
    cells = [s for s in stats if max_position is None or s.position <= max_position]
    if not cells or sum(s.impressions for s in cells) == 0:
        raise ValueError("no impressions to estimate click propensities from")
    for s in cells:
        if s.position < 1 or s.clicks < 0 or s.clicks > s.impressions:
            raise ValueError(f"invalid click statistics {s}")
    positions = sorted({s.position for s in cells})
    pos_index = {p: i for i, p in enumerate(positions)}
    pairs = sorted({(s.query_image_id, s.image_id) for s in cells})
    pair_index = {p: i for i, p in enumerate(pairs)}
    pi = np.array([pos_index[s.position] for s in cells])
    qi = np.array([pair_index[(s.query_image_id, s.image_id)] for s in cells])
    n = np.array([s.impressions for s in cells], dtype=np.float64)
    c = np.array([s.clicks for s in cells], dtype=np.float64)
    theta = np.full(len(positions), 0.5)
    gamma = np.full(len(pairs), 0.5)
    converged = False
    iteration = 0
    for step in range(1, max_iter + 1):
        iteration = step
        t, g = theta[pi], gamma[qi]
        no_click = np.maximum(1.0 - t * g, 1e-12)
        # E-step for the non-clicked impressions: examined but not attractive / attractive but not examined.
        p_exam = t * (1.0 - g) / no_click
        p_attr = (1.0 - t) * g / no_click
        exam = c + (n - c) * p_exam
        attr = c + (n - c) * p_attr
        new_theta = np.bincount(pi, exam, len(positions)) / np.maximum(np.bincount(pi, n, len(positions)), 1e-12)
        new_gamma = np.bincount(qi, attr, len(pairs)) / np.maximum(np.bincount(qi, n, len(pairs)), 1e-12)
        new_theta = np.clip(new_theta, 1e-6, 1.0)
        new_gamma = np.clip(new_gamma, 1e-6, 1.0)
        # PBM is identifiable only up to scale (theta * k, gamma / k): converge on theta / theta[0].
        delta = float(np.abs(new_theta / new_theta[0] - theta / theta[0]).max())
        theta, gamma = new_theta, new_gamma
        if delta < tol:
            converged = True
            break
    top = theta[0]
    impressions = {p: int(n[pi == i].sum()) for p, i in pos_index.items()}
    clicks = {p: int(c[pi == i].sum()) for p, i in pos_index.items()}
    return PropensityEstimate(
        propensity={p: float(theta[i] / top) for p, i in pos_index.items()},
        impressions=impressions,
        clicks=clicks,
        iterations=iteration,
        converged=converged,
    )


@dataclass(frozen=True)
class ClickPair:
    """A (query, clicked image) positive with its debiased score and weight."""

    query_image_id: str
    image_id: str
    impressions: int
    clicks: int
    expected_examinations: float
    debiased_ctr: float
    weight: float


def debiased_click_pairs(
    stats: Iterable[PairStats],
    propensity: dict[int, float],
    *,
    min_impressions: int,
    min_clicks: int,
    min_debiased_ctr: float = 0.05,
) -> list[ClickPair]:
    """Aggregate cells per (query, image), correct for position bias, keep pairs above thresholds.

    The debiased click-through rate divides clicks by the expected number of examinations
    ``sum(impressions_p * propensity[p])`` (inverse propensity weighting), so an image clicked
    at position 8 counts more than one clicked at position 1. The pair weight is the debiased
    CTR clipped to [0, 1]. Positions without an estimate use the lowest estimated propensity.
    """
    floor = min(propensity.values()) if propensity else 1.0
    agg: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for s in stats:
        if s.query_image_id == s.image_id:
            continue
        cell = agg[(s.query_image_id, s.image_id)]
        cell[0] += s.impressions
        cell[1] += s.clicks
        cell[2] += s.impressions * propensity.get(s.position, floor)
    out: list[ClickPair] = []
    for (query, image), (imps, clicks, exams) in sorted(agg.items()):
        if imps < min_impressions or clicks < min_clicks or exams <= 0:
            continue
        ctr = clicks / exams
        if ctr < min_debiased_ctr:
            continue
        out.append(ClickPair(query, image, int(imps), int(clicks), float(exams), float(ctr), float(min(ctr, 1.0))))
    return out


def hard_negatives(
    stats: Iterable[PairStats], *, max_position: int = 3, min_impressions: int = 2, per_query: int = 2
) -> dict[str, list[str]]:
    """Images shown high (position <= ``max_position``) for a query, at least ``min_impressions``
    times in all, and never clicked for it: the hardest negatives the logs offer.

    Returns per query up to ``per_query`` ids, best-shown first (mean position, then id).
    """
    shown: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for s in stats:
        cell = shown[(s.query_image_id, s.image_id)]
        cell[0] += s.impressions
        cell[1] += s.clicks
        if s.position <= max_position:
            cell[2] += s.impressions
            cell[3] += s.impressions * s.position
    by_query: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (query, image), (imps, clicks, high_imps, pos_sum) in shown.items():
        if clicks == 0 and high_imps >= min_impressions and image != query and imps > 0:
            by_query[query].append((pos_sum / high_imps, image))
    return {q: [img for _, img in sorted(items)[:per_query]] for q, items in sorted(by_query.items())}


def sample_rank(image_id: str, ds: str) -> str:
    """A deterministic pseudo-random sort key for sampling images on a day (no RNG state)."""
    return hashlib.sha1(f"{ds}/{image_id}".encode()).hexdigest()


def self_pair_sample(image_ids: Iterable[str], ds: str, n: int) -> list[str]:
    """The ``n`` images used as their own positives on ``ds`` (views are made at training time).

    Raises:
        ValueError: when ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"self-pair sample size must be >= 0, got {n}")
    return sorted(sorted(set(image_ids), key=lambda i: sample_rank(i, ds))[:n])
