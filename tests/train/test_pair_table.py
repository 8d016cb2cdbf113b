"""The build_pairs job (:mod:`visearch.train.pair_table`) on hand-built tables: every pair source,
the planted propensities recovered, bad labels quarantined, reruns identical.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.train.pair_table import run
from visearch.train.pairs import PairStats, estimate_propensities

pytestmark = pytest.mark.spark
DS = "2026-01-03"


def planted_impressions() -> list[tuple[str, str, int, bool, str]]:
    """(query, image, position, clicked, day) of the planted logs: 4 queries, each with 8
    candidates shown in a random order 60 times a day for two days; examination 1/p; candidate 0
    is very attractive, 7 never clicked."""
    rng = np.random.default_rng(0)
    out = []
    for q in range(4):
        attract = [0.9, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
        for day in ("2026-01-02", "2026-01-03"):
            for _session in range(60):
                order = rng.permutation(8)
                for pos0, c in enumerate(order):
                    p = pos0 + 1
                    clicked = bool(rng.random() < (1.0 / p) * attract[c])
                    out.append((f"img{q}", f"img{8 + q * 8 + c}", p, clicked, day))
    return out


def planted_stats() -> list[PairStats]:
    """The planted logs as the cells the job should aggregate (the extra events all drop out)."""
    cells: dict[tuple[str, str, int], list[int]] = {}
    for query, image, p, clicked, _day in planted_impressions():
        cell = cells.setdefault((query, image, p), [0, 0])
        cell[0] += 1
        cell[1] += int(clicked)
    return [PairStats(q, i, p, n, c) for (q, i, p), (n, c) in sorted(cells.items())]


def _seed_tables(spark: Any, settings: Settings) -> None:
    ts = dt.datetime(2026, 1, 3, 12, 0, 0)
    images = [(f"img{i}", f"file:///x/img{i}.jpg", "o", ts, [], f"{i:064x}", 32, 32, "JPEG", "0" * 16,
               i == 41, "deleted" if i == 40 else "ok", "2026-01-01") for i in range(42)]
    T.merge(spark, settings, T.SILVER_IMAGES, spark.createDataFrame(images, T.SILVER_IMAGES.schema))
    events = []
    n = 0
    for query, image, p, clicked, day in planted_impressions():
        n += 1
        events.append((f"e{n}", "u", "s", query, image, p, "impression", ts, 0, True, day))
        if clicked:
            n += 1
            events.append((f"e{n}", "u", "s", query, image, p, "click", ts, 5000, True, day))
    # A short click (dwell below the threshold) and events about the deleted/private images don't count.
    events.append(("short", "u", "s", "img0", "img15", 1, "click", ts, 10, True, DS))
    events.append(("del", "u", "s", "img0", "img40", 1, "click", ts, 9000, True, DS))
    events.append(("priv", "u", "s", "img41", "img9", 1, "click", ts, 9000, True, DS))
    df = spark.createDataFrame(events, T.SILVER_INTERACTIONS.schema)
    for day in ("2026-01-02", "2026-01-03"):
        T.replace_partition(spark, settings, T.SILVER_INTERACTIONS, df.where(df.ds == day), f"ds = '{day}'")


def _pairs(spark: Any, settings: Settings) -> list[tuple[Any, ...]]:
    rows = T.read(spark, settings, T.GOLD_TRAINING_PAIRS).where(f"ds = '{DS}'").collect()
    return sorted((r.query_image_id, r.positive_image_id, r.source, round(r.weight, 9),
                   tuple(r.hard_negative_ids)) for r in rows)


def test_build_pairs__sources_propensity_negatives_and_rerun(spark: Any, settings: Settings,
                                                             tmp_path: Path) -> None:

    _seed_tables(spark, settings)
    labels = Path(settings.landing[len("file://"):]) / "labels"
    labels.mkdir(parents=True)
    (labels / "labels.csv").write_text(
        "query_image_id,positive_image_id,weight\nimg1,img2,1.0\nimg1,nope,1.0\nimg3,img4,-1\n")
    settings = settings.replace(train=settings.train.__class__(self_pairs_per_day=10, min_impressions=5))
    result = run(settings, DS, spark=spark)

    assert result["pairs"]["self"] == 10
    assert result["pairs"]["human"] == 1
    assert result["pairs"]["click"] >= 8
    pairs = _pairs(spark, settings)
    clicks = [p for p in pairs if p[2] == "click"]
    # The most attractive candidate of every query became a click pair; the never-clicked one did not.
    for q in range(4):
        positives = {p[1] for p in clicks if p[0] == f"img{q}"}
        assert f"img{8 + q * 8}" in positives
        assert f"img{8 + q * 8 + 7}" not in positives
    # Deleted and private images are in no pair; the query itself never is its own click positive.
    assert not any("img40" in (p[0], p[1]) or "img41" in (p[0], p[1]) for p in pairs)
    # Hard negatives: the never-clicked candidate, shown high, appears as a negative.
    negs = {p[0]: p[4] for p in clicks}
    assert any(f"img{8 + q * 8 + 7}" in negs.get(f"img{q}", ()) for q in range(4))
    # The propensity table is the estimator on exactly the planted cells: per position 4 queries x
    # 8 candidates x 120 sessions / 8 positions = 480 impressions and the planted clicks (the short,
    # deleted-image and private-query clicks do not count). The estimator itself is checked against
    # the planted 1/p on larger logs in test_pairs.py; these 3,840 impressions are too few for that.
    expected = estimate_propensities(planted_stats())
    table = {r.position: r for r in T.read(spark, settings, T.GOLD_CLICK_PROPENSITY).where(f"ds = '{DS}'").collect()}
    assert sorted(table) == list(range(1, 9))
    assert {p: r.impressions for p, r in table.items()} == dict.fromkeys(range(1, 9), 480)
    assert {p: r.clicks for p, r in table.items()} == expected.clicks
    assert {p: r.propensity for p, r in table.items()} == pytest.approx(expected.propensity, rel=1e-6)
    assert {int(p): v for p, v in result["propensity"].items()} == pytest.approx(expected.propensity, abs=1e-4)
    # Bad labels are quarantined with a reason, not dropped silently.
    q = T.read(spark, settings, T.SILVER_QUARANTINE).where("source = 'labels'").collect()
    assert sorted(r.record_id for r in q) == ["img1/nope", "img3/img4"]

    before = _pairs(spark, settings)
    run(settings, DS, spark=spark)
    assert _pairs(spark, settings) == before
