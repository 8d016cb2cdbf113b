"""Online metrics of a day from the click log: CTR, CTR by position, mean dwell time of clicks.

What ``jobs/online_metrics.py`` runs. Reads ``silver.interactions`` for ``ds`` and replaces the ``ds`` partition of
``gold.online_metrics`` (rerunning a day gives the same rows). One row per
``(ds, metric, position)``; ``position`` is NULL for whole-day figures:

=====================  ==========  ================================================
metric                 position    value
=====================  ==========  ================================================
impressions            NULL / p    impression events (of the day / at position p)
clicks                 NULL / p    click events
ctr                    NULL / p    clicks / impressions; no row when impressions = 0
mean_dwell_ms          NULL        mean ``dwell_ms`` of click events; no row without clicks
unknown_image_events   NULL        events whose query or result image is not in silver.images
=====================  ==========  ================================================

Every event of the day counts, including events about images the lake does not know
(``known_images = false``; e.g. a click logged before the image's manifest landed): the serving
tier showed those results to a user, so they are part of what users experienced. Their number is
reported as ``unknown_image_events`` so that a surge is visible. Position rows exist only for
positions with at least one event; events with a NULL position count in the day's totals only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.timing import StageTimer

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None,
        timer: StageTimer | None = None) -> dict[str, Any]:
    """Compute the day's online metrics into ``gold.online_metrics`` (replacing the ds partition).

    Returns:
        ``{"ds", "impressions", "clicks", "ctr", "mean_dwell_ms", "positions", "rows", "table"}``
        (``ctr`` and ``mean_dwell_ms`` are None when undefined).

    Raises:
        ValueError: when ``ds`` is not a ``YYYY-MM-DD`` date.
    """
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark

    check_ds(ds)
    spark = spark or get_spark(settings, "visearch-online-metrics")
    timer = timer or StageTimer("online_metrics")

    with timer.stage("aggregate"):
        events = T.read(spark, settings, T.SILVER_INTERACTIONS).where(F.col("ds") == ds)
        is_click = F.col("event_type") == "click"
        is_impression = F.col("event_type") == "impression"
        # One pass over the day: per-position sums (NULL position is its own group).
        per_position = events.groupBy("position").agg(
            F.sum(is_impression.cast("long")).alias("impressions"),
            F.sum(is_click.cast("long")).alias("clicks"),
            F.sum(F.when(is_click, F.col("dwell_ms"))).alias("dwell_sum"),
            F.count(F.when(is_click, F.col("dwell_ms"))).alias("dwell_n"),
            F.sum((~F.coalesce(F.col("known_images"), F.lit(False))).cast("long")).alias("unknown"),
        ).cache()
        # The day's totals from the small per-position table; a global aggregate always has one row.
        totals = per_position.agg(
            F.coalesce(F.sum("impressions"), F.lit(0)).alias("impressions"),
            F.coalesce(F.sum("clicks"), F.lit(0)).alias("clicks"),
            F.sum("dwell_sum").alias("dwell_sum"),
            F.coalesce(F.sum("dwell_n"), F.lit(0)).alias("dwell_n"),
            F.coalesce(F.sum("unknown"), F.lit(0)).alias("unknown"),
        ).withColumn("position", F.lit(None).cast("int"))

        def ctr(impressions: str, clicks: str) -> Column:
            return F.when(F.col(impressions) > 0, F.col(clicks).cast("double") / F.col(impressions))

        day_rows = (
            totals.withColumn("ctr", ctr("impressions", "clicks"))
            .withColumn("mean_dwell_ms",
                        F.when(F.col("dwell_n") > 0, F.col("dwell_sum").cast("double") / F.col("dwell_n")))
            .select(
                "position",
                F.expr(
                    "stack(5, 'impressions', cast(impressions AS DOUBLE), 'clicks', cast(clicks AS DOUBLE), "
                    "'ctr', ctr, 'mean_dwell_ms', mean_dwell_ms, "
                    "'unknown_image_events', cast(unknown AS DOUBLE)) AS (metric, value)"
                ),
            )
        )
        position_rows = per_position.where(F.col("position").isNotNull()).withColumn(
            "ctr", ctr("impressions", "clicks")
        ).select(
            "position",
            F.expr(
                "stack(3, 'impressions', cast(impressions AS DOUBLE), 'clicks', cast(clicks AS DOUBLE), "
                "'ctr', ctr) AS (metric, value)"
            ),
        )
        rows = (
            day_rows.unionByName(position_rows)
            .where(F.col("value").isNotNull())
            .withColumn("ds", F.lit(ds))
            .cache()
        )
        collected = rows.collect()

    with timer.stage("write"):
        T.replace_partition(spark, settings, T.GOLD_ONLINE_METRICS, rows, f"ds = '{ds}'")
    rows.unpersist()
    per_position.unpersist()

    day = {r["metric"]: r["value"] for r in collected if r["position"] is None}
    positions = sorted({int(r["position"]) for r in collected if r["position"] is not None})
    result = {
        "ds": ds,
        "impressions": int(day["impressions"]),
        "clicks": int(day["clicks"]),
        "ctr": day.get("ctr"),
        "mean_dwell_ms": day.get("mean_dwell_ms"),
        "unknown_image_events": int(day["unknown_image_events"]),
        "positions": len(positions),
        "rows": len(collected),
        "table": T.GOLD_ONLINE_METRICS.path(settings),
    }
    log.info("online metrics for %s: %s", ds, result)
    return result
