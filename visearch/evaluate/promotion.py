"""Model promotion: does a newly evaluated model (the challenger) replace ``models/CHAMPION``?

Pure decision logic over offline metrics (flat names, as :func:`visearch.evaluate.metrics.flatten_metrics`
gives them), and :func:`reference_champion`, the incumbent a challenger is measured against.
:mod:`visearch.evaluate.promote_day` applies it to a day's model: it records the returned decision
with the registry and flips the pointer.

Rules, on nDCG@10 of the same evaluation set:

- With a champion: the challenger is promoted when its score is not worse than the champion's by
  more than ``tolerance`` (``challenger >= champion - tolerance``). The tolerance lets a model
  trained on fresher data replace one that scores a hair better on a fixed judged set; the
  baselines are recorded but do not gate (the champion already beat them).
- Without a champion (the first model): promoted only when it strictly beats *every* baseline
  (the random-weights network and the colour histogram), so a broken first model never serves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visearch.train.registry import ModelRegistry

log = logging.getLogger(__name__)

PROMOTION_METRIC = "ndcg@10"
_EPS = 1e-12


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of one promotion check, with the scores it was based on (JSON-able)."""

    promote: bool
    reason: str
    challenger_ndcg10: float
    champion_ndcg10: float | None
    baseline_ndcg10: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0
    metric: str = PROMOTION_METRIC

    def to_dict(self) -> dict[str, Any]:
        """The decision as a plain dict (for ``config.json``, logs and XCom)."""
        return asdict(self)


def _score(metrics: Mapping[str, float], who: str) -> float:
    """The promotion metric from a metrics dict.

    Raises:
        ValueError: when the metric is missing or not finite.
    """
    if PROMOTION_METRIC not in metrics:
        raise ValueError(f"{who} metrics lack {PROMOTION_METRIC!r}; have {sorted(metrics)[:10]}")
    value = float(metrics[PROMOTION_METRIC])
    if not math.isfinite(value):
        raise ValueError(f"{who} {PROMOTION_METRIC} is not finite: {value!r}")
    return value


def decide_promotion(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baselines: Mapping[str, Mapping[str, float]],
    tolerance: float,
) -> PromotionDecision:
    """Decide whether ``challenger`` replaces ``champion`` (see the module docstring for the rules).

    Args:
        challenger: metrics of the newly evaluated model, e.g. ``{"ndcg@10": 0.61, ...}``.
        champion: metrics of the current champion on the same evaluation set, or None when no
            model has been promoted yet.
        baselines: ``{baseline name: metrics}`` on the same evaluation set.
        tolerance: how much worse than the champion (absolute nDCG@10) is still accepted; >= 0.

    Raises:
        ValueError: for a negative or non-finite tolerance, a missing or non-finite nDCG@10, or no
            baselines when there is no champion.
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance!r}")
    ours = _score(challenger, "challenger")
    base = {name: _score(m, f"baseline {name!r}") for name, m in sorted(baselines.items())}
    shown = ", ".join(f"{n} {v:.4f}" for n, v in base.items()) or "none"
    if champion is None:
        if not base:
            raise ValueError("no champion and no baselines: the first model cannot be judged")
        beaten = [n for n, v in base.items() if ours > v]
        unbeaten = [n for n in base if n not in beaten]
        promote = not unbeaten
        reason = (
            f"first model: {PROMOTION_METRIC} {ours:.4f} beats every baseline ({shown})"
            if promote
            else f"first model: {PROMOTION_METRIC} {ours:.4f} does not beat {', '.join(unbeaten)} ({shown})"
        )
        decision = PromotionDecision(promote, reason, ours, None, base, tolerance)
    else:
        theirs = _score(champion, "champion")
        # A hair of slack so that "exactly at the tolerance" survives float rounding of the difference.
        promote = ours >= theirs - tolerance - _EPS
        relation = "not worse by more than" if promote else "worse by more than"
        reason = (
            f"challenger {PROMOTION_METRIC} {ours:.4f} vs champion {theirs:.4f}: difference "
            f"{ours - theirs:+.4f}, {relation} the tolerance {tolerance:.4f} (baselines: {shown})"
        )
        decision = PromotionDecision(promote, reason, ours, theirs, base, tolerance)
    log.info("promotion %s: %s", "accepted" if decision.promote else "refused", decision.reason)
    return decision


def reference_champion(registry: ModelRegistry, version: str) -> str | None:
    """The champion a challenger is compared with: the one its decision recorded, else the current one.

    Once promotion has decided for ``version``, the champion at decision time stays its reference
    (after a promotion the pointer names ``version`` itself), so re-running evaluation or promotion
    compares with the same model. ``None`` when there is no other champion.
    """
    record = registry.promotion_record(version)
    if record is not None:
        incumbent = record.get("champion_version")
        return str(incumbent) if incumbent else None
    current = registry.champion()
    return current if current and current != version else None
