"""visearch.evaluate.promote_day: every promotion branch, on hand-written ``gold.model_metrics`` rows.

Model versions are only their ``config.json`` (promotion never loads weights), so each branch is
reached on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from visearch.core import tables as T
from visearch.core.config import EvalSettings, Settings
from visearch.core.storage import open_store
from visearch.evaluate import evaluate_day, promote_day
from visearch.train.registry import ModelRegistry

pytestmark = pytest.mark.spark

DAY1, DAY2, DAY3 = "2026-01-01", "2026-01-02", "2026-01-03"


def fake_version(settings: Settings, ds: str, tag: str) -> str:
    """A registry version (only its config.json: the promote job never loads weights)."""
    version = f"v-{ds}-{tag}"
    open_store(settings.artifacts).put_text(f"models/{version}/config.json", json.dumps({"ds": ds}))
    return version


def test_evaluate_and_promote__no_model_for_the_day_is_a_no_op(spark: Any, settings: Settings) -> None:
    fake_version(settings, DAY1, "aaaaaaaa")  # another day's model is not this day's challenger
    assert evaluate_day.run(settings, DAY2, spark=spark) == {
        "ds": DAY2, "evaluated": False, "reason": f"no model version of {DAY2}"}
    result = promote_day.run(settings, DAY2, spark=spark)
    assert result["decided"] is False and result["champion"] is None
    assert not open_store(settings.artifacts).exists(f"models/v-{DAY1}-aaaaaaaa/promotion.json")


def write_metrics(spark: Any, settings: Settings, version: str, ds: str, ndcg: dict[str, float],
                  champion: str | None = None) -> None:
    """``gold.model_metrics`` rows of ``version``'s evaluation with the given nDCG@10 per embedder."""
    rows = [(version, "demo", "corpus", embedder, "ndcg", 10, value, ds,
             version if embedder == "model" else champion if embedder == "champion" else None)
            for embedder, value in ndcg.items()]
    rows.append((version, "demo", "judged", "model", "ndcg", 10, 0.99, ds, version))  # not the gate protocol
    df = spark.createDataFrame(rows, T.GOLD_MODEL_METRICS.schema)
    T.replace_partition(spark, settings, T.GOLD_MODEL_METRICS, df, f"model_version = '{version}'")


def record_of(settings: Settings, version: str) -> dict[str, Any]:
    text = open_store(settings.artifacts).get_text(f"models/{version}/promotion.json")
    data: dict[str, Any] = json.loads(text)
    return data


def test_promote__first_model_beating_both_baselines_becomes_champion(spark: Any, settings: Settings) -> None:
    version = fake_version(settings, DAY1, "aaaaaaaa")
    write_metrics(spark, settings, version, DAY1, {"model": 0.6, "random_init": 0.2, "color_histogram": 0.5})
    result = promote_day.run(settings, DAY1, spark=spark)
    assert result["promoted"] and result["champion"] == version and result["champion_version"] is None
    record = record_of(settings, version)
    assert record["challenger_ndcg10"] == 0.6 and record["champion_ndcg10"] is None
    assert record["baseline_ndcg10"] == {"random_init": 0.2, "color_histogram": 0.5}
    assert record["protocol"] == "corpus" and record["eval_set"] == "demo"
    assert "beats every baseline" in record["reason"]


def test_promote__first_model_below_a_baseline_is_refused(spark: Any, settings: Settings) -> None:
    version = fake_version(settings, DAY1, "aaaaaaaa")
    write_metrics(spark, settings, version, DAY1, {"model": 0.4, "random_init": 0.2, "color_histogram": 0.5})
    result = promote_day.run(settings, DAY1, spark=spark)
    assert not result["promoted"] and result["champion"] is None
    assert "color_histogram" in result["reason"]


@pytest.mark.parametrize(("challenger", "promoted"), [(0.595, True), (0.6, True), (0.7, True), (0.58, False)])
def test_promote__challenger_within_tolerance_of_the_same_run_champion(
        spark: Any, settings: Settings, challenger: float, promoted: bool) -> None:
    settings = settings.replace(eval=EvalSettings(promote_tolerance=0.01))
    champ = fake_version(settings, DAY1, "aaaaaaaa")
    registry = ModelRegistry(open_store(settings.artifacts))
    registry.set_champion(champ)
    new = fake_version(settings, DAY2, "bbbbbbbb")
    write_metrics(spark, settings, new, DAY2, {"model": challenger, "champion": 0.6, "random_init": 0.1,
                                               "color_histogram": 0.7}, champion=champ)
    result = promote_day.run(settings, DAY2, spark=spark)
    assert result["promoted"] is promoted  # baselines do not gate once there is a champion
    assert result["champion"] == (new if promoted else champ)
    record = record_of(settings, new)
    assert record["champion_version"] == champ and record["champion_metrics_from"] == "same_run"
    assert record["champion_ndcg10"] == 0.6 and record["challenger_ndcg10"] == challenger


def test_promote__falls_back_to_the_champions_own_evaluation(spark: Any, settings: Settings) -> None:
    champ = fake_version(settings, DAY1, "aaaaaaaa")
    write_metrics(spark, settings, champ, DAY1, {"model": 0.5, "random_init": 0.1, "color_histogram": 0.2})
    ModelRegistry(open_store(settings.artifacts)).set_champion(champ)
    new = fake_version(settings, DAY2, "bbbbbbbb")
    write_metrics(spark, settings, new, DAY2, {"model": 0.45, "random_init": 0.1, "color_histogram": 0.2})
    result = promote_day.run(settings, DAY2, spark=spark)
    assert not result["promoted"] and result["champion_ndcg10"] == 0.5
    assert record_of(settings, new)["champion_metrics_from"] == "own_evaluation"


def test_promote__rerun_keeps_the_decision_and_finishes_an_interrupted_flip(
        spark: Any, settings: Settings) -> None:
    registry = ModelRegistry(open_store(settings.artifacts))
    champ = fake_version(settings, DAY1, "aaaaaaaa")
    registry.set_champion(champ)
    new = fake_version(settings, DAY2, "bbbbbbbb")
    write_metrics(spark, settings, new, DAY2, {"model": 0.7, "champion": 0.6, "random_init": 0.1,
                                               "color_histogram": 0.2}, champion=champ)
    first = promote_day.run(settings, DAY2, spark=spark)
    assert first["promoted"] and registry.champion() == new and not first["reused"]
    # The challenger is the champion now; a rerun still reports the decision against the old one.
    second = promote_day.run(settings, DAY2, spark=spark)
    assert second["reused"] and second["promoted"] and second["champion_version"] == champ
    assert second["champion_ndcg10"] == 0.6 and registry.champion() == new
    # A crash after the record but before the pointer: the rerun finishes the flip.
    registry.set_champion(champ)
    assert promote_day.run(settings, DAY2, spark=spark)["champion"] == new
    # A pointer that moved on to a later model is not pulled back by a rerun of an older day.
    later = fake_version(settings, DAY3, "cccccccc")
    registry.set_champion(later)
    assert promote_day.run(settings, DAY2, spark=spark)["champion"] == later
    # --force decides again (the incumbent is now the later model, which has no metrics: loud).
    with pytest.raises(ValueError, match=f"champion {later} has no ndcg@10"):
        promote_day.run(settings, DAY2, spark=spark, force=True)


def test_promote__challenger_without_metrics_raises(spark: Any, settings: Settings) -> None:
    fake_version(settings, DAY1, "aaaaaaaa")
    with pytest.raises(ValueError, match=r"run jobs\.evaluate"):
        promote_day.run(settings, DAY1, spark=spark)
    assert not open_store(settings.artifacts).exists("models/v-2026-01-01-aaaaaaaa/promotion.json")
