from __future__ import annotations

import math

import numpy as np
import pytest

from visearch.train.pairs import (
    PairStats,
    debiased_click_pairs,
    estimate_propensities,
    hard_negatives,
    self_pair_sample,
)


def _simulate(eta: float, seed: int = 0, queries: int = 60, per_query: int = 10, sessions: int = 40) -> list[PairStats]:
    """PBM logs: each session shows a query's candidates in a random order (intervention harvesting)."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple[str, str, int], list[int]] = {}
    for q in range(queries):
        attract = rng.uniform(0.05, 0.9, per_query)
        for _ in range(sessions):
            order = rng.permutation(per_query)
            for pos0, d in enumerate(order):
                p = pos0 + 1
                clicked = rng.random() < (1.0 / p) ** eta * attract[d]
                cell = cells.setdefault((f"q{q}", f"d{q}-{d}", p), [0, 0])
                cell[0] += 1
                cell[1] += int(clicked)
    return [PairStats(q, d, p, n, c) for (q, d, p), (n, c) in sorted(cells.items())]


def _ctr_ratio(stats: list[PairStats]) -> dict[int, float]:
    """An independent estimator: CTR at p over CTR at 1. Exact in expectation here, because every
    session shows the candidates in a random order, so each position sees the same attractiveness."""
    shown: dict[int, int] = {}
    clicked: dict[int, int] = {}
    for s in stats:
        shown[s.position] = shown.get(s.position, 0) + s.impressions
        clicked[s.position] = clicked.get(s.position, 0) + s.clicks
    ctr = {p: clicked[p] / shown[p] for p in shown}
    return {p: ctr[p] / ctr[1] for p in ctr}


def test_propensity__recovers_planted_position_bias() -> None:
    stats = _simulate(eta=1.0, sessions=200)
    est = estimate_propensities(stats)
    assert est.converged and sorted(est.propensity) == list(range(1, 11))
    assert est.propensity[1] == 1.0  # normalised at the top position
    # Against the independent estimator on the same logs: within 2% at every position (seed 0: 1.2%).
    # Position p's value moved to p +/- 1 is >= 9% off (p/(p+1) at p = 10), a flat or unnormalised
    # curve far more.
    ratio = _ctr_ratio(stats)
    for p in range(2, 11):
        assert est.propensity[p] == pytest.approx(ratio[p], rel=0.02), (p, est.propensity[p], ratio[p])
    # Against the planted 1/p: within 5% (seed 0: 3.6%, the logs' own sampling noise).
    for p in range(2, 11):
        assert est.propensity[p] * p == pytest.approx(1.0, abs=0.05), (p, est.propensity[p])


def test_propensity__no_bias_gives_flat_curve() -> None:
    stats = _simulate(eta=0.0, seed=1)
    est = estimate_propensities(stats)
    ratio = _ctr_ratio(stats)
    assert max(abs(est.propensity[p] - ratio[p]) for p in ratio) < 0.03  # seed 1: 0.021
    assert max(abs(v - 1.0) for v in est.propensity.values()) < 0.06  # seed 1: 0.052


def test_propensity__rejects_empty_and_inconsistent_cells() -> None:
    with pytest.raises(ValueError, match="no impressions"):
        estimate_propensities([])
    with pytest.raises(ValueError, match="invalid"):
        estimate_propensities([PairStats("q", "d", 1, 1, 2)])


def test_debiased_pairs__hand_worked() -> None:
    # q1/a: 10 impressions at position 1 (propensity 1.0), 5 clicks -> 5 / 10 = 0.5.
    # q1/b: 10 impressions at position 4 (propensity 0.25), 1 click -> 1 / 2.5 = 0.4.
    # q1/c: 1 impression only -> below min_impressions.  q1/q1: the query itself -> dropped.
    stats = [
        PairStats("q1", "a", 1, 10, 5),
        PairStats("q1", "b", 4, 10, 1),
        PairStats("q1", "c", 2, 1, 1),
        PairStats("q1", "q1", 1, 10, 10),
    ]
    pairs = debiased_click_pairs(stats, {1: 1.0, 2: 0.5, 4: 0.25}, min_impressions=2, min_clicks=1)
    assert [(p.image_id, round(p.debiased_ctr, 6)) for p in pairs] == [("a", 0.5), ("b", 0.4)]
    assert pairs[1].expected_examinations == pytest.approx(2.5)
    assert all(0 < p.weight <= 1 for p in pairs)


def test_debiased_pairs__weight_is_clipped_and_threshold_applies() -> None:
    stats = [PairStats("q", "a", 8, 4, 3), PairStats("q", "b", 1, 100, 1)]
    pairs = debiased_click_pairs(stats, {1: 1.0, 8: 0.125}, min_impressions=2, min_clicks=1,
                                 min_debiased_ctr=0.05)
    # a: 3 / (4 * 0.125) = 6 -> weight clipped to 1.  b: 1 / 100 = 0.01 < 0.05 -> dropped.
    assert [(p.image_id, p.weight) for p in pairs] == [("a", 1.0)]
    assert math.isclose(pairs[0].debiased_ctr, 6.0)


def test_hard_negatives__shown_high_never_clicked() -> None:
    stats = [
        PairStats("q", "x", 1, 3, 0),   # shown at 1, never clicked -> hard negative
        PairStats("q", "y", 2, 2, 1),   # clicked -> not negative
        PairStats("q", "z", 3, 1, 0),   # only 1 high impression -> not enough
        PairStats("q", "z", 7, 5, 0),   # low positions don't count
        PairStats("q", "w", 2, 4, 0),   # hard negative, mean position 2
    ]
    assert hard_negatives(stats, max_position=3, min_impressions=2, per_query=5) == {"q": ["x", "w"]}
    assert hard_negatives(stats, per_query=1) == {"q": ["x"]}


def test_self_pair_sample__deterministic_per_day_and_sized() -> None:
    ids = [f"img{i}" for i in range(100)]
    a = self_pair_sample(ids, "2026-01-01", 10)
    assert a == self_pair_sample(list(reversed(ids)), "2026-01-01", 10)
    assert len(a) == 10 and set(a) <= set(ids)
    assert a != self_pair_sample(ids, "2026-01-02", 10)
    assert len(self_pair_sample(ids, "d", 1000)) == 100
    with pytest.raises(ValueError):
        self_pair_sample(ids, "d", -1)
