"""Promotion rules: challenger vs champion within tolerance; the first model must beat both baselines;
the reference champion of a challenger."""

from __future__ import annotations

import json
import math

import pytest

from visearch.core.config import Settings
from visearch.core.storage import open_store
from visearch.evaluate.promotion import PROMOTION_METRIC, PromotionDecision, decide_promotion, reference_champion
from visearch.train.registry import ModelRegistry

BASELINES = {"random_weights": {"ndcg@10": 0.25}, "color_histogram": {"ndcg@10": 0.40}}


def test_first_model__promoted_when_it_beats_both_baselines() -> None:
    decision = decide_promotion({"ndcg@10": 0.5, "map": 0.3}, None, BASELINES, 0.01)
    assert decision.promote is True
    assert decision.champion_ndcg10 is None
    assert decision.challenger_ndcg10 == 0.5
    assert decision.baseline_ndcg10 == {"color_histogram": 0.40, "random_weights": 0.25}
    assert "beats every baseline" in decision.reason


def test_first_model__refused_when_it_beats_only_one_baseline() -> None:
    decision = decide_promotion({"ndcg@10": 0.30}, None, BASELINES, 0.01)
    assert decision.promote is False
    assert "color_histogram" in decision.reason
    assert "random_weights" not in decision.reason.split("(")[0]


def test_first_model__a_tie_with_a_baseline_is_not_beating_it() -> None:
    assert decide_promotion({"ndcg@10": 0.40}, None, BASELINES, 0.5).promote is False


def test_first_model__tolerance_does_not_apply_to_baselines() -> None:
    assert decide_promotion({"ndcg@10": 0.39}, None, BASELINES, 0.05).promote is False


def test_first_model__without_baselines_raises() -> None:
    with pytest.raises(ValueError, match="no champion and no baselines"):
        decide_promotion({"ndcg@10": 0.9}, None, {}, 0.01)


def test_challenger__better_than_champion_is_promoted() -> None:
    decision = decide_promotion({"ndcg@10": 0.60}, {"ndcg@10": 0.55}, BASELINES, 0.0)
    assert decision.promote is True
    assert decision.champion_ndcg10 == 0.55
    assert "+0.0500" in decision.reason


def test_challenger__slightly_worse_within_tolerance_is_promoted() -> None:
    assert decide_promotion({"ndcg@10": 0.54}, {"ndcg@10": 0.55}, BASELINES, 0.02).promote is True


def test_challenger__exactly_at_the_tolerance_is_promoted() -> None:
    # 0.07 - 0.01 is 0.060000000000000005 in floating point; the boundary still counts as "not worse".
    assert 0.06 < 0.07 - 0.01
    assert decide_promotion({"ndcg@10": 0.06}, {"ndcg@10": 0.07}, BASELINES, 0.01).promote is True


def test_challenger__worse_by_more_than_tolerance_is_refused() -> None:
    decision = decide_promotion({"ndcg@10": 0.50}, {"ndcg@10": 0.55}, BASELINES, 0.01)
    assert decision.promote is False
    assert "worse by more than" in decision.reason
    assert decision.challenger_ndcg10 == 0.50 and decision.champion_ndcg10 == 0.55


def test_challenger__baselines_do_not_gate_when_a_champion_exists() -> None:
    # Both below the colour-histogram baseline; the rule is relative to the champion only.
    assert decide_promotion({"ndcg@10": 0.35}, {"ndcg@10": 0.355}, BASELINES, 0.01).promote is True


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "match"),
    [
        ({"map": 0.5}, None, 0.01, "challenger metrics lack 'ndcg@10'"),
        ({"ndcg@10": math.nan}, None, 0.01, "challenger ndcg@10 is not finite"),
        ({"ndcg@10": 0.5}, {"mrr": 1.0}, 0.01, "champion metrics lack"),
        ({"ndcg@10": 0.5}, {"ndcg@10": 0.5}, -0.1, "tolerance must be finite and >= 0"),
        ({"ndcg@10": 0.5}, {"ndcg@10": 0.5}, math.inf, "tolerance must be finite"),
    ],
)
def test_bad_inputs__raise(challenger: dict[str, float], champion: dict[str, float] | None,
                           tolerance: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decide_promotion(challenger, champion, BASELINES, tolerance)


def test_decision__is_frozen_and_json_able() -> None:
    decision = decide_promotion({"ndcg@10": 0.6}, {"ndcg@10": 0.5}, BASELINES, 0.01)
    assert isinstance(decision, PromotionDecision)
    with pytest.raises(AttributeError):
        decision.promote = False  # type: ignore[misc]
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["promote"] is True
    assert data["metric"] == PROMOTION_METRIC
    assert data["baseline_ndcg10"]["random_weights"] == 0.25


def test_reference_champion__prefers_the_recorded_decision(settings: Settings) -> None:
    registry = ModelRegistry(open_store(settings.artifacts))
    first, second = "v-2026-01-01-aaaaaaaa", "v-2026-01-02-bbbbbbbb"
    for version in (first, second):  # pointer logic only: a config.json makes a version complete
        registry.store.put_text(f"models/{version}/config.json", "{}")
    assert reference_champion(registry, second) is None  # no champion yet
    registry.set_champion(first)
    assert reference_champion(registry, second) == first
    assert reference_champion(registry, first) is None  # a champion is not its own reference
    registry.store.put_text(f"models/{second}/promotion.json", json.dumps({"champion_version": first}))
    registry.set_champion(second)
    assert reference_champion(registry, second) == first  # the decision's incumbent, not the pointer
