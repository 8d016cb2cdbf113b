"""Ingest a day's click log into silver.interactions (the ds partition replaced).

What ``jobs/ingest_interactions.py`` runs: the Spark side of the click log (the per-line
validation is :mod:`visearch.ingest.interactions`, pure Python). Steps for a day ``ds``:

1. Read ``<landing>/clicks/ds=<ds>/*.jsonl`` (file name and line number kept). No folder or no
   file means a day without traffic: legal, logged, and the day's partition is emptied.
2. Validate each line (:func:`visearch.ingest.interactions.parse_event`); bad lines go to
   ``silver.quarantine`` (source ``interactions``) with their reason.
3. Dedupe by event_id: the first occurrence (by ``ts``, then file and line) is kept, the others
   are quarantined as ``duplicate_event_id``. Events already ingested for one of the
   ``lookback_days`` days before ``ds`` (a log shipper delivering twice across midnight) are
   quarantined the same way: the earliest day keeps the event. Only earlier days are looked at,
   so rerunning a day gives the same result whatever later days hold.
4. Events about images ``silver.images`` does not hold are KEPT with ``known_images = false``.
   A click can land before the manifest of its image is ingested (the two logs travel separately),
   and a result may point at an image deleted since; the user did see it, so online metrics count
   it, while pair mining joins silver.images and drops what it cannot use. Their number is returned
   as ``unknown_image_events`` so a surge is visible. Deleted and quarantined images are known
   (they keep a row with their status). The flag reflects silver.images when the job runs, which
   is why the DAG runs ``ingest_images`` first.
5. Quarantine record ids are the event_id when the line has one, else ``line:<file>:<n>``; when
   an id occurs more than once in the day's quarantine, each gets ``@line:<file>:<n>`` appended
   so that ``(ds, source, record_id)`` stays a key.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.timing import StageTimer
from visearch.ingest.interactions import DUPLICATE_EVENT_ID, event_id_of, parse_event
from visearch.ingest.lines import landing_files, read_lines
from visearch.ingest.validation import Rejection

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

log = logging.getLogger(__name__)

SOURCE = "interactions"
RAW_MAX_CHARS = 4096
LOOKBACK_DAYS = 2

PARSED_SCHEMA = (
    "file STRING, line_no INT, raw STRING, event_id STRING, user_id STRING, session_id STRING, "
    "query_image_id STRING, image_id STRING, position INT, event_type STRING, ts TIMESTAMP, "
    "dwell_ms BIGINT, reason STRING, detail STRING"
)


def parse_event_lines(rows: Iterable[Row]) -> Iterator[tuple[Any, ...]]:
    """Executor side: ``(file, line_no, line)`` rows to :data:`PARSED_SCHEMA` tuples."""
    for row in rows:
        line = row["line"]
        event = parse_event(line)
        raw = line[:RAW_MAX_CHARS]
        if isinstance(event, Rejection):
            yield (row["file"], row["line_no"], raw, event_id_of(line), None, None, None, None, None, None,
                   None, None, event.reason, event.detail)
        else:
            yield (row["file"], row["line_no"], raw, event.event_id, event.user_id, event.session_id,
                   event.query_image_id, event.image_id, event.position, event.event_type, event.ts,
                   event.dwell_ms, None, None)


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None, timer: StageTimer | None = None,
        lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any]:
    """Ingest the click log of ``ds`` (see the module docstring for the steps and decisions).

    Returns:
        Counts: ``files``, ``lines``, ``events``, ``impressions``, ``clicks``,
        ``unknown_image_events``, ``duplicates``, ``quarantined`` (reason -> count),
        ``quarantined_total``.

    Raises:
        ValueError: when ``ds`` is not ``YYYY-MM-DD`` or ``lookback_days`` is negative.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark

    check_ds(ds)
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be >= 0, got {lookback_days}")
    spark = spark or get_spark(settings, "visearch-ingest-interactions")
    timer = timer or StageTimer("ingest_interactions")
    day = F.lit(ds)
    first_day = (dt.date.fromisoformat(ds) - dt.timedelta(days=lookback_days)).isoformat()

    with timer.stage("read_clicks"):
        files = landing_files(settings, f"clicks/ds={ds}")
        if not files:
            log.warning("no click log for ds=%s under %s/clicks/: a day without traffic",
                        ds, settings.landing)
        lines = read_lines(spark, files)
        parsed = spark.createDataFrame(lines.rdd.mapPartitions(parse_event_lines), PARSED_SCHEMA)
        parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        n_lines = parsed.count()

    with timer.stage("dedupe"):
        first_seen = Window.partitionBy("event_id").orderBy("ts", "file", "line_no")
        ranked = parsed.where(F.col("reason").isNull()).withColumn(
            "rank", F.row_number().over(first_seen)
        ).withColumn("kept_at", F.first(F.concat_ws(":", "file", "line_no")).over(first_seen))
        repeats = ranked.where(F.col("rank") > 1).withColumn("reason", F.lit(DUPLICATE_EVENT_ID)).withColumn(
            "detail", F.format_string("event_id %s already kept from line %s", "event_id", "kept_at")
        )
        prior = (
            T.read(spark, settings, T.SILVER_INTERACTIONS)
            .where((F.col("ds") >= first_day) & (F.col("ds") < ds))
            .groupBy("event_id").agg(F.min("ds").alias("prior_ds"))
        )
        firsts = ranked.where(F.col("rank") == 1).join(prior, "event_id", "left")
        seen_before = (
            firsts.where(F.col("prior_ds").isNotNull())
            .withColumn("reason", F.lit(DUPLICATE_EVENT_ID))
            .withColumn("detail", F.format_string("event_id %s already ingested for ds=%s",
                                                  "event_id", "prior_ds"))
        )
        events = firsts.where(F.col("prior_ds").isNull())

    with timer.stage("known_images"):
        ids = T.read(spark, settings, T.SILVER_IMAGES).select("image_id")
        query_known = ids.select(F.col("image_id").alias("query_image_id"), F.lit(True).alias("q_known"))
        result_known = ids.select("image_id", F.lit(True).alias("r_known"))
        flagged = (
            events.join(query_known, "query_image_id", "left")
            .join(result_known, "image_id", "left")
            .withColumn("known_images", F.coalesce(F.col("q_known") & F.col("r_known"), F.lit(False)))
            .withColumn("ds", day)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )

    with timer.stage("write_interactions"):
        T.replace_partition(spark, settings, T.SILVER_INTERACTIONS, flagged, f"ds = '{ds}'")
        stats = flagged.agg(
            F.count("*").alias("events"),
            F.count(F.when(F.col("event_type") == "impression", 1)).alias("impressions"),
            F.count(F.when(F.col("event_type") == "click", 1)).alias("clicks"),
            F.count(F.when(~F.col("known_images"), 1)).alias("unknown_image_events"),
        ).first()

    with timer.stage("quarantine"):
        columns = ("file", "line_no", "raw", "event_id", "reason", "detail")
        rejected = (
            parsed.where(F.col("reason").isNotNull()).select(*columns)
            .unionByName(repeats.select(*columns))
            .unionByName(seen_before.select(*columns))
        )
        base_id = F.coalesce(F.col("event_id"), F.format_string("line:%s:%d", "file", "line_no"))
        quarantine = (
            rejected.withColumn("base_id", base_id)
            .withColumn("copies", F.count("*").over(Window.partitionBy("base_id")))
            .select(
                day.alias("ds"), F.lit(SOURCE).alias("source"),
                F.when(F.col("copies") > 1,
                       F.format_string("%s@line:%s:%d", "base_id", "file", "line_no"))
                .otherwise(F.col("base_id")).alias("record_id"),
                "reason", "detail", "raw",
            )
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        T.replace_partition(spark, settings, T.SILVER_QUARANTINE, quarantine,
                            f"ds = '{ds}' AND source = '{SOURCE}'")
        by_reason = {r["reason"]: int(r["n"]) for r in
                     quarantine.groupBy("reason").agg(F.count("*").alias("n")).collect()}

    for frame in (parsed, flagged, quarantine):
        frame.unpersist()
    result = {
        "ds": ds,
        "files": len(files),
        "lines": n_lines,
        "events": int(stats["events"]) if stats else 0,
        "impressions": int(stats["impressions"]) if stats else 0,
        "clicks": int(stats["clicks"]) if stats else 0,
        "unknown_image_events": int(stats["unknown_image_events"]) if stats else 0,
        "duplicates": by_reason.get(DUPLICATE_EVENT_ID, 0),
        "quarantined": dict(sorted(by_reason.items())),
        "quarantined_total": sum(by_reason.values()),
    }
    log.info("ingest_interactions %s: %s", ds, result)
    return result
