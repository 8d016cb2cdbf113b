"""Build gold.training_pairs for a day from self-supervision, clicks and human labels.

What ``jobs/build_pairs.py`` runs: the Spark side of pair mining. Spark aggregates the logs; the
arithmetic on the aggregates (propensities, debiased click pairs, hard negatives) is the pure
:mod:`visearch.train.pairs`, called per query on the executors.

- self:  a deterministic sample of ok, public images as their own positives (two augmented views
         are made at training time);
- click: (query, clicked image) over the last ``train.click_window_days`` days, corrected for
         position bias with per-position propensities estimated from the logs (EM, position-based
         model), kept above impression/click/debiased-CTR thresholds; short clicks (dwell below
         ``train.min_dwell_ms``) do not count;
- human: ``<landing>/labels/labels.csv`` (query_image_id, positive_image_id, weight) when present.
Hard negatives: images shown high for a query and never clicked, attached to that query's pairs.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.storage import join, open_store
from visearch.core.timing import StageTimer
from visearch.train.pairs import PairStats, debiased_click_pairs, estimate_propensities, hard_negatives

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# Cells (query, image, position) used for the propensity estimate; a deterministic sample above this.
PROPENSITY_SAMPLE_CELLS = 2_000_000


def window_start(ds: str, days: int) -> str:
    """First day of the click window ending on ``ds`` (inclusive).

    Raises:
        ValueError: when ``days`` < 1.
    """
    if days < 1:
        raise ValueError(f"click window must be >= 1 day, got {days}")
    return (dt.date.fromisoformat(ds) - dt.timedelta(days=days - 1)).isoformat()


def click_cells(spark: SparkSession, settings: Settings, ds: str, usable: DataFrame) -> DataFrame:
    """Impressions and (long enough) clicks per (query, image, position) over the window."""
    from pyspark.sql import functions as F

    events = (
        T.read(spark, settings, T.SILVER_INTERACTIONS)
        .where((F.col("ds") >= window_start(ds, settings.train.click_window_days)) & (F.col("ds") <= ds))
        .where(F.col("known_images"))
    )
    ok_ids = usable.select("image_id")
    events = (
        events.join(ok_ids.withColumnRenamed("image_id", "query_image_id"), "query_image_id", "left_semi")
        .join(ok_ids, "image_id", "left_semi")
    )
    return events.groupBy("query_image_id", "image_id", "position").agg(
        F.sum(F.when(F.col("event_type") == "impression", 1).otherwise(0)).alias("impressions"),
        F.sum(
            F.when((F.col("event_type") == "click") & (F.col("dwell_ms") >= settings.train.min_dwell_ms), 1)
            .otherwise(0)
        ).alias("clicks"),
    )


def _to_stats(rows: list[Any]) -> list[PairStats]:
    # A click without a logged impression still proves the image was shown there.
    return [
        PairStats(r["query_image_id"], r["image_id"], int(r["position"]),
                  max(int(r["impressions"]), int(r["clicks"])), int(r["clicks"]))
        for r in rows
    ]


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None,
        timer: StageTimer | None = None) -> dict[str, Any]:
    """Build and write the day's training pairs and click-propensity estimate.

    Replaces the ``ds`` partitions of ``gold.training_pairs`` and ``gold.click_propensity`` and
    the day's ``labels`` rows of ``silver.quarantine``.

    Returns:
        ``{"ds", "pairs" (source -> count), "click_cells", "propensity" (position -> value),
        "queries_with_hard_negatives"}``.

    Raises:
        ValueError: when ``ds`` is not ``YYYY-MM-DD`` or ``train.click_window_days`` < 1.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark, to_spark_path

    check_ds(ds)
    spark = spark or get_spark(settings, "visearch-build-pairs")
    timer = timer or StageTimer("build_pairs")
    cfg = settings.train
    images = T.read(spark, settings, T.SILVER_IMAGES)
    usable = images.where((F.col("status") == "ok") & (~F.col("is_private"))).select("image_id")

    with timer.stage("self pairs"):
        self_pairs = (
            usable.withColumn("rank", F.sha1(F.concat(F.lit(f"{ds}/"), F.col("image_id"))))
            .orderBy("rank")
            .limit(cfg.self_pairs_per_day)
            .select(
                F.lit(ds).alias("ds"),
                F.col("image_id").alias("query_image_id"),
                F.col("image_id").alias("positive_image_id"),
                F.lit("self").alias("source"),
                F.lit(1.0).alias("weight"),
                F.array().cast("array<string>").alias("hard_negative_ids"),
            )
        )

    with timer.stage("click aggregation"):
        cells = click_cells(spark, settings, ds, usable).cache()
        n_cells = cells.count()

    propensity: dict[int, float] = {}
    click_rows: list[dict[str, Any]] = []
    negatives: dict[str, list[str]] = {}
    if n_cells:
        with timer.stage("propensity estimate"):
            sample = cells
            if n_cells > PROPENSITY_SAMPLE_CELLS:
                sample = cells.where(
                    F.abs(F.hash("query_image_id")) % n_cells < PROPENSITY_SAMPLE_CELLS
                )
            estimate = estimate_propensities(_to_stats(sample.collect()))
            propensity = estimate.propensity
            log.info("click propensity by position: %s (EM %d iterations, converged=%s)",
                     {p: round(v, 3) for p, v in propensity.items()}, estimate.iterations, estimate.converged)
            prop_df = spark.createDataFrame(
                [(ds, p, float(v), estimate.impressions[p], estimate.clicks[p]) for p, v in propensity.items()],
                T.GOLD_CLICK_PROPENSITY.schema,
            )
            T.replace_partition(spark, settings, T.GOLD_CLICK_PROPENSITY, prop_df, f"ds = '{ds}'")

        with timer.stage("click pairs"):
            # Per query, on the executors: the same pure functions, one query's cells at a time.
            prop = dict(propensity)
            min_imps, min_clicks, n_neg = cfg.min_impressions, cfg.min_clicks, cfg.hard_negatives

            def per_query(frame: pd.DataFrame) -> pd.DataFrame:
                stats = _to_stats(frame.to_dict("records"))
                pairs = debiased_click_pairs(stats, prop, min_impressions=min_imps, min_clicks=min_clicks)
                negs = hard_negatives(stats, per_query=n_neg)
                # Explicit dtypes: an empty frame would otherwise be float64 and fail Arrow's list conversion.
                return pd.DataFrame(
                    {
                        "query_image_id": pd.Series([p.query_image_id for p in pairs], dtype=object),
                        "positive_image_id": pd.Series([p.image_id for p in pairs], dtype=object),
                        "weight": pd.Series([p.weight for p in pairs], dtype="float64"),
                        "hard_negative_ids": pd.Series([negs.get(p.query_image_id, []) for p in pairs],
                                                       dtype=object),
                    }
                )

            click_pairs = (
                cells.groupBy("query_image_id")
                .applyInPandas(per_query, "query_image_id STRING, positive_image_id STRING, weight DOUBLE, "
                                          "hard_negative_ids ARRAY<STRING>")
                .select(F.lit(ds).alias("ds"), "query_image_id", "positive_image_id",
                        F.lit("click").alias("source"), "weight", "hard_negative_ids")
            )
            click_rows = [r.asDict() for r in click_pairs.collect()]
            negatives = {r["query_image_id"]: list(r["hard_negative_ids"]) for r in click_rows}
    cells.unpersist()

    with timer.stage("human labels"):
        human = None
        landing = open_store(settings.landing, settings.s3)
        if landing.exists("labels/labels.csv"):
            labels = (
                spark.read.option("header", True).csv(to_spark_path(join(settings.landing, "labels/labels.csv")))
                .select("query_image_id", "positive_image_id", F.col("weight").cast("double").alias("weight"))
            )
            ok = usable.select("image_id")
            human = (
                labels.join(ok.withColumnRenamed("image_id", "query_image_id"), "query_image_id", "left_semi")
                .join(ok.withColumnRenamed("image_id", "positive_image_id"), "positive_image_id", "left_semi")
                .where(F.col("weight").isNotNull() & (F.col("weight") > 0))
                .select(F.lit(ds).alias("ds"), "query_image_id", "positive_image_id",
                        F.lit("human").alias("source"), F.least(F.col("weight"), F.lit(1.0)).alias("weight"),
                        F.array().cast("array<string>").alias("hard_negative_ids"))
            )
            rejected = labels.join(human.select("query_image_id", "positive_image_id"),
                                   ["query_image_id", "positive_image_id"], "left_anti")
            quarantine = rejected.select(
                F.lit(ds).alias("ds"), F.lit("labels").alias("source"),
                F.concat_ws("/", "query_image_id", "positive_image_id").alias("record_id"),
                F.lit("unknown_or_unusable_image_or_bad_weight").alias("reason"),
                F.lit("").alias("detail"),
                F.to_json(F.struct("query_image_id", "positive_image_id", "weight")).alias("raw"),
            )
            T.replace_partition(spark, settings, T.SILVER_QUARANTINE, quarantine,
                                f"ds = '{ds}' AND source = 'labels'")

    with timer.stage("write"):
        parts = [self_pairs]
        if click_rows:
            parts.append(spark.createDataFrame(click_rows, T.GOLD_TRAINING_PAIRS.schema))
        if human is not None:
            parts.append(human)
        pairs_df = parts[0]
        for part in parts[1:]:
            pairs_df = pairs_df.unionByName(part)
        if negatives:
            # Self pairs of a query that has hard negatives get them too.
            neg_df = spark.createDataFrame(list(negatives.items()), "query_image_id STRING, negs ARRAY<STRING>")
            pairs_df = (
                pairs_df.join(neg_df, "query_image_id", "left")
                .withColumn("hard_negative_ids",
                            F.when(F.size("hard_negative_ids") > 0, F.col("hard_negative_ids"))
                            .otherwise(F.coalesce(F.col("negs"), F.array().cast("array<string>"))))
                .drop("negs")
            )
        pairs_df = pairs_df.dropDuplicates(["ds", "query_image_id", "positive_image_id", "source"])
        T.replace_partition(spark, settings, T.GOLD_TRAINING_PAIRS, pairs_df, f"ds = '{ds}'")
        written = T.read(spark, settings, T.GOLD_TRAINING_PAIRS).where(F.col("ds") == ds)
        counts = {r["source"]: int(r["count"]) for r in written.groupBy("source").count().collect()}
    return {
        "ds": ds,
        "pairs": counts,
        "click_cells": n_cells,
        "propensity": {str(k): round(v, 4) for k, v in propensity.items()},
        "queries_with_hard_negatives": len(negatives),
    }
