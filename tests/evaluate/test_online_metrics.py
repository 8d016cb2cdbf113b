"""The online_metrics job (:mod:`visearch.evaluate.online_metrics`) on a hand-built interactions table:
numbers checked by hand, reruns idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from jobs import online_metrics as job
from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.evaluate import online_metrics

pytestmark = pytest.mark.spark

DS = "2026-01-02"
OTHER_DS = "2026-01-01"


def _event(
    n: int, ds: str, position: int | None, kind: str, dwell: int = 0, known: bool = True
) -> tuple[Any, ...]:
    ts = dt.datetime.fromisoformat(f"{ds}T10:00:00") + dt.timedelta(seconds=n)
    return (f"{ds}-e{n}", "u1", "s1", "q1", f"img{n}", position, kind, ts, dwell, known, ds)


def _day_events() -> list[tuple[Any, ...]]:
    rows = []
    n = 0

    def add(position: int | None, kind: str, dwell: int = 0, known: bool = True) -> None:
        nonlocal n
        n += 1
        rows.append(_event(n, DS, position, kind, dwell, known))

    for _ in range(4):
        add(1, "impression")
    add(1, "click", 1000)
    add(1, "click", 3000)
    add(2, "impression")
    add(2, "impression")
    add(2, "impression", known=False)
    add(2, "click", 500)
    add(3, "impression")
    add(3, "impression")
    add(4, "click", 2000)  # a click whose impression was not logged
    return rows


def _write_interactions(spark: Any, settings: Settings, rows: list[tuple[Any, ...]], ds: str) -> None:
    df = spark.createDataFrame(rows, T.SILVER_INTERACTIONS.schema)
    T.replace_partition(spark, settings, T.SILVER_INTERACTIONS, df, f"ds = '{ds}'")


def _metrics(spark: Any, settings: Settings, ds: str) -> dict[tuple[str, int | None], float]:
    rows = T.read(spark, settings, T.GOLD_ONLINE_METRICS).where(f"ds = '{ds}'").collect()
    return {(r["metric"], r["position"]): r["value"] for r in rows}


def _all_rows(spark: Any, settings: Settings) -> list[tuple[Any, ...]]:
    rows = [tuple(r) for r in T.read(spark, settings, T.GOLD_ONLINE_METRICS).collect()]
    return sorted(rows, key=lambda r: (r[0], r[1], -1 if r[2] is None else r[2]))


def test_online_metrics__hand_counted_day(spark: Any, settings: Settings) -> None:
    _write_interactions(spark, settings, _day_events(), DS)
    # Another day with very different numbers must not leak in.
    other_day = [_event(i, OTHER_DS, 1, "click", 99_999) for i in range(5)]
    _write_interactions(spark, settings, other_day, OTHER_DS)

    result = online_metrics.run(settings, DS, spark=spark)

    got = _metrics(spark, settings, DS)
    expected = {
        # day: impressions 4 + 3 + 2 = 9; clicks 2 + 1 + 1 = 4; CTR 4/9
        ("impressions", None): 9.0,
        ("clicks", None): 4.0,
        ("ctr", None): 4 / 9,
        # mean dwell of clicks: (1000 + 3000 + 500 + 2000) / 4 = 1625
        ("mean_dwell_ms", None): 1625.0,
        ("unknown_image_events", None): 1.0,
        # position 1: 2/4; position 2: 1/3; position 3: 0/2; position 4: clicks but no impressions -> no CTR
        ("impressions", 1): 4.0, ("clicks", 1): 2.0, ("ctr", 1): 0.5,
        ("impressions", 2): 3.0, ("clicks", 2): 1.0, ("ctr", 2): 1 / 3,
        ("impressions", 3): 2.0, ("clicks", 3): 0.0, ("ctr", 3): 0.0,
        ("impressions", 4): 0.0, ("clicks", 4): 1.0,
    }
    assert got == pytest.approx(expected)
    assert result["impressions"] == 9 and result["clicks"] == 4
    assert result["ctr"] == pytest.approx(4 / 9)
    assert result["mean_dwell_ms"] == pytest.approx(1625.0)
    assert result["positions"] == 4
    assert result["rows"] == len(expected)


def test_online_metrics__rerun_gives_the_identical_table(spark: Any, settings: Settings) -> None:
    _write_interactions(spark, settings, _day_events(), DS)
    # A stale row for the day (to be replaced) and another day's row (to be kept).
    stale = spark.createDataFrame(
        [(DS, "ctr", None, 0.99), (OTHER_DS, "ctr", None, 0.123)], T.GOLD_ONLINE_METRICS.schema
    )
    T.merge(spark, settings, T.GOLD_ONLINE_METRICS, stale)

    online_metrics.run(settings, DS, spark=spark)
    first = _all_rows(spark, settings)
    online_metrics.run(settings, DS, spark=spark)
    second = _all_rows(spark, settings)

    assert first == second
    assert (OTHER_DS, "ctr", None, 0.123) in first
    assert _metrics(spark, settings, DS)[("ctr", None)] == pytest.approx(4 / 9)
    assert len(first) == 16 + 1  # the day's 16 rows and the other day's one


def test_online_metrics__day_without_events_writes_zero_counts_only(spark: Any, settings: Settings) -> None:
    _write_interactions(spark, settings, [_event(1, OTHER_DS, 1, "impression")], OTHER_DS)
    result = online_metrics.run(settings, DS, spark=spark)
    assert _metrics(spark, settings, DS) == {
        ("impressions", None): 0.0, ("clicks", None): 0.0, ("unknown_image_events", None): 0.0,
    }
    assert result["ctr"] is None and result["mean_dwell_ms"] is None


def test_online_metrics__bad_ds_raises(spark: Any, settings: Settings) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        online_metrics.run(settings, "2026-1-2' OR 1=1", spark=spark)


def test_online_metrics__main_prints_the_json_result(
    spark: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_interactions(spark, settings, _day_events(), DS)
    monkeypatch.setenv("VISEARCH_LANDING", settings.landing)
    monkeypatch.setenv("VISEARCH_LAKE", settings.lake)
    monkeypatch.setenv("VISEARCH_ARTIFACTS", settings.artifacts)
    monkeypatch.delenv("VISEARCH_CONFIG", raising=False)

    assert job.main(["--ds", DS]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["job"] == "online_metrics"
    assert result["clicks"] == 4 and result["impressions"] == 9
    assert "aggregate" in result["stage_seconds"]
