"""Ingest a day's upload manifests: bronze.images_raw, validated images into silver.images.

What ``jobs/ingest_images.py`` runs. Steps for a day ``ds``:

1. Read every ``<landing>/manifests/ds=<ds>/*.jsonl`` (file name and line number kept; ``visearch
   land`` writes one ``uploads-<run>.jsonl`` per run, named in run order). No folder or no file
   means a day without uploads: legal, logged, and the day's rows are emptied.
2. Parse every line (:func:`visearch.ingest.validation.parse_upload`); a bad line goes to
   ``silver.quarantine`` (source ``images_manifest``, record ``line:<file>:<n>``) with its reason.
   A ``uri`` outside the allowed prefixes
   (:func:`visearch.ingest.landing.allowed_uri_prefixes`) is ``bad_value:uri`` and never read.
3. One image_id appearing on several lines: the last line wins (files in byte order of their
   names, then line order; a total order, so reruns agree); the others are quarantined as
   ``duplicate_image_id``.
4. ``bronze.images_raw``: the kept lines, the ds partition replaced.
5. Upserts: executors size, read (:func:`visearch.ingest.validation.validate_uri`) and validate each
   image; a storage error is this image's quarantine row, never the day's failure.
   Valid ones become ``status = 'ok'`` rows of ``silver.images``; rejected ones become
   ``status = 'quarantined'`` rows (so that an earlier good version stops being served) and go to
   the quarantine with source ``image``, record ``image_id``, and the reason.
6. Actions on existing images: ``delete`` sets ``status = 'deleted'`` (the row stays so that
   downstream can drop the embedding and tombstone the index entry), ``set_private`` /
   ``set_public`` set ``is_private``. An action on an image_id that ``silver.images`` does not hold
   is quarantined as ``unknown_image_id``.
7. One MERGE into ``silver.images`` on image_id. A row is rewritten only when something changed
   and the incoming ``updated_ds`` is not older than the stored one, so rerunning a day changes
   nothing and re-running an old day (a backfill) cannot undo a later day's delete.
8. The day's quarantine rows of both sources are replaced (``ds`` and ``source`` predicate).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import IngestSettings, S3Settings, Settings
from visearch.core.jobrun import check_ds
from visearch.core.timing import StageTimer
from visearch.ingest.landing import allowed_uri_prefixes
from visearch.ingest.lines import landing_files, read_lines
from visearch.ingest.validation import (
    DUPLICATE_IMAGE_ID,
    UNKNOWN_IMAGE_ID,
    Rejection,
    parse_upload,
    validate_uri,
)

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

log = logging.getLogger(__name__)

SOURCE_MANIFEST = "images_manifest"
SOURCE_IMAGE = "image"
RAW_MAX_CHARS = 4096  # quarantine keeps at most this much of a rejected line
IMAGES_PER_TASK = 256

PARSED_SCHEMA = (
    "file STRING, line_no INT, raw STRING, image_id STRING, action STRING, uri STRING, "
    "owner_id STRING, upload_ts TIMESTAMP, tags ARRAY<STRING>, is_private BOOLEAN, "
    "reason STRING, detail STRING"
)
VALIDATED_SCHEMA = (
    "image_id STRING, uri STRING, owner_id STRING, upload_ts TIMESTAMP, tags ARRAY<STRING>, "
    "is_private BOOLEAN, raw STRING, sha256 STRING, width INT, height INT, format STRING, "
    "phash STRING, reason STRING, detail STRING"
)
_SILVER_COLUMNS = ("image_id", "uri", "owner_id", "upload_ts", "tags", "sha256", "width", "height",
                   "format", "phash", "is_private", "status", "updated_ds")
# Rewrite a stored row only when the incoming one is not older and differs in some column.
UPDATE_CONDITION = (
    "(t.updated_ds IS NULL OR s.updated_ds >= t.updated_ds) AND NOT ("
    + " AND ".join(f"t.`{c}` <=> s.`{c}`" for c in _SILVER_COLUMNS if c not in ("image_id", "updated_ds"))
    + ")"
)


def parse_manifest_lines(rows: Iterable[Row], *,
                         allowed_uri_prefixes: Collection[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """Executor side: ``(file, line_no, line)`` rows to :data:`PARSED_SCHEMA` tuples."""
    for row in rows:
        record = parse_upload(row["line"], allowed_uri_prefixes)
        raw = row["line"][:RAW_MAX_CHARS]
        if isinstance(record, Rejection):
            yield (row["file"], row["line_no"], raw, None, None, None, None, None, None, None,
                   record.reason, record.detail)
        else:
            yield (row["file"], row["line_no"], raw, record.image_id, record.action, record.uri,
                   record.owner_id, record.upload_ts, list(record.tags), record.is_private, None, None)


def validate_upserts(rows: Iterable[Row], *, limits: IngestSettings,
                     s3: S3Settings | None) -> Iterator[tuple[Any, ...]]:
    """Executor side: read and validate each upserted image; :data:`VALIDATED_SCHEMA` tuples."""
    for row in rows:
        info = validate_uri(row["uri"], max_pixels=limits.max_pixels, allowed_formats=limits.allowed_formats,
                            max_bytes=limits.max_bytes, s3=s3)
        head = (row["image_id"], row["uri"], row["owner_id"], row["upload_ts"], row["tags"],
                row["is_private"], row["raw"])
        if isinstance(info, Rejection):
            yield (*head, None, None, None, None, None, info.reason, info.detail)
        else:
            yield (*head, info.sha256, info.width, info.height, info.format, info.phash, None, None)


def _task_count(spark: SparkSession, n: int, per_task: int) -> int:
    """Enough tasks to keep every core busy, about ``per_task`` images each."""
    parallelism = int(spark.sparkContext.defaultParallelism)
    return max(1, min(n, max(parallelism, math.ceil(n / per_task))))


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None, timer: StageTimer | None = None,
        images_per_task: int = IMAGES_PER_TASK) -> dict[str, Any]:
    """Ingest the upload manifests of ``ds`` (see the module docstring for the steps).

    Returns:
        Counts: ``manifest_files``, ``manifest_lines``, ``bronze_rows``, ``upserts``, ``ok``,
        ``deleted``, ``privacy_changes``, ``quarantined`` (reason -> count, both sources),
        ``quarantined_total``, ``silver_images_version``.

    Raises:
        ValueError: when ``ds`` is not ``YYYY-MM-DD`` or ``images_per_task`` is not positive.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark

    check_ds(ds)
    if images_per_task <= 0:
        raise ValueError(f"images_per_task must be positive, got {images_per_task}")
    spark = spark or get_spark(settings, "visearch-ingest-images")
    timer = timer or StageTimer("ingest_images")
    day = F.lit(ds)

    with timer.stage("read_manifests"):
        files = landing_files(settings, f"manifests/ds={ds}")
        if not files:
            log.warning("no upload manifest for ds=%s under %s/manifests/: a day without uploads",
                        ds, settings.landing)
        lines = read_lines(spark, files)
        prefixes = allowed_uri_prefixes(settings)
        log.info("manifest URIs allowed under %s", prefixes)
        parse = partial(parse_manifest_lines, allowed_uri_prefixes=tuple(prefixes))
        parsed = spark.createDataFrame(lines.rdd.mapPartitions(parse), PARSED_SCHEMA)
        parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        manifest_lines = parsed.count()

    with timer.stage("dedupe"):
        good = parsed.where(F.col("reason").isNull())
        last_first = Window.partitionBy("image_id").orderBy(F.col("file").desc(), F.col("line_no").desc())
        ranked = good.withColumn("rank", F.row_number().over(last_first)).withColumn(
            "kept_at", F.first(F.concat_ws(":", "file", "line_no")).over(last_first)
        )
        kept = ranked.where(F.col("rank") == 1).drop("rank", "kept_at").persist(StorageLevel.MEMORY_AND_DISK)
        duplicates = ranked.where(F.col("rank") > 1).select(
            "file", "line_no", "raw", F.lit(DUPLICATE_IMAGE_ID).alias("reason"),
            F.format_string("image_id %s appears again later (line %s); the last line wins",
                            "image_id", "kept_at").alias("detail"),
        )
        manifest_rejects = parsed.where(F.col("reason").isNotNull()).select(
            "file", "line_no", "raw", "reason", "detail"
        ).unionByName(duplicates)

    with timer.stage("bronze"):
        bronze = kept.select(
            day.alias("ds"), "image_id", F.col("uri").alias("source_uri"), "owner_id", "upload_ts", "tags",
            "is_private", "action", "line_no", F.col("file").alias("manifest_file"),
        )
        T.replace_partition(spark, settings, T.BRONZE_IMAGES_RAW, bronze, f"ds = '{ds}'")
        by_action = {r["action"]: int(r["n"])
                     for r in kept.groupBy("action").agg(F.count("*").alias("n")).collect()}
        bronze_rows = sum(by_action.values())

    with timer.stage("validate_images"):
        upserts = kept.where(F.col("action") == "upsert")
        n_upserts = by_action.get("upsert", 0)
        tasks = _task_count(spark, n_upserts, images_per_task)
        # Image URIs may point at S3 even when the landing root is local: always pass the S3 settings.
        validate = partial(validate_upserts, limits=settings.ingest, s3=settings.s3)
        validated = spark.createDataFrame(
            upserts.select("image_id", "uri", "owner_id", "upload_ts", "tags", "is_private", "raw")
            .repartition(tasks)
            .rdd.mapPartitions(validate),
            VALIDATED_SCHEMA,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        ok = validated.where(F.col("reason").isNull()).count()
        log.info("validated %d upserted images in %d tasks: %d ok", n_upserts, tasks, ok)

    with timer.stage("actions"):
        silver = T.read(spark, settings, T.SILVER_IMAGES)
        actions = kept.where(F.col("action") != "upsert").select(
            "image_id", F.col("action").alias("a_action"), F.col("is_private").alias("a_private"),
            "file", "line_no", "raw",
        )
        joined = actions.join(silver, "image_id", "left").persist(StorageLevel.MEMORY_AND_DISK)
        unknown = joined.where(F.col("status").isNull()).select(
            "file", "line_no", "raw", F.lit(UNKNOWN_IMAGE_ID).alias("reason"),
            F.format_string("%s of image_id %s, which silver.images does not hold",
                            "a_action", "image_id").alias("detail"),
        )
        known = joined.where(F.col("status").isNotNull())
        is_delete = F.col("a_action") == "delete"
        action_rows = known.select(
            "image_id", "uri", "owner_id", "upload_ts", "tags", "sha256", "width", "height", "format",
            "phash",
            F.when(is_delete, F.col("is_private")).otherwise(F.col("a_private")).alias("is_private"),
            F.when(is_delete, F.lit("deleted")).otherwise(F.col("status")).alias("status"),
            day.alias("updated_ds"),
        )
        applied = known.agg(F.count(F.when(is_delete, 1)).alias("deleted"),
                            F.count(F.when(~is_delete, 1)).alias("privacy")).first()
        deleted = int(applied["deleted"]) if applied else 0
        privacy_changes = int(applied["privacy"]) if applied else 0

    with timer.stage("merge_silver"):
        upsert_rows = validated.select(
            "image_id", "uri", "owner_id", "upload_ts", "tags", "sha256", "width", "height", "format",
            "phash", "is_private",
            F.when(F.col("reason").isNull(), F.lit("ok")).otherwise(F.lit("quarantined")).alias("status"),
            day.alias("updated_ds"),
        )
        T.merge(spark, settings, T.SILVER_IMAGES, upsert_rows.unionByName(action_rows),
                update_condition=UPDATE_CONDITION)

    with timer.stage("quarantine"):
        line_id = F.format_string("line:%s:%d", "file", "line_no")
        from_manifest = manifest_rejects.unionByName(unknown).select(
            day.alias("ds"), F.lit(SOURCE_MANIFEST).alias("source"), line_id.alias("record_id"),
            "reason", "detail", "raw",
        )
        from_images = validated.where(F.col("reason").isNotNull()).select(
            day.alias("ds"), F.lit(SOURCE_IMAGE).alias("source"), F.col("image_id").alias("record_id"),
            "reason", "detail", "raw",
        )
        quarantine = from_manifest.unionByName(from_images).persist(StorageLevel.MEMORY_AND_DISK)
        T.replace_partition(
            spark, settings, T.SILVER_QUARANTINE, quarantine,
            f"ds = '{ds}' AND source IN ('{SOURCE_MANIFEST}', '{SOURCE_IMAGE}')",
        )
        by_reason = {r["reason"]: int(r["n"]) for r in
                     quarantine.groupBy("reason").agg(F.count("*").alias("n")).collect()}

    for frame in (parsed, kept, validated, joined, quarantine):
        frame.unpersist()
    result = {
        "ds": ds,
        "manifest_files": len(files),
        "manifest_lines": manifest_lines,
        "bronze_rows": bronze_rows,
        "upserts": n_upserts,
        "ok": ok,
        "deleted": deleted,
        "privacy_changes": privacy_changes,
        "quarantined": dict(sorted(by_reason.items())),
        "quarantined_total": sum(by_reason.values()),
        "silver_images_version": T.version(spark, settings, T.SILVER_IMAGES),
    }
    log.info("ingest_images %s: %s", ds, result)
    return result
