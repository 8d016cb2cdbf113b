"""A day's embedding: the ok images of ``silver.images``, embedded with a model version, into ``gold.embeddings``.

Steps for ``ds`` (model: ``model_version``, resolved by the registry: ``None`` or ``CHAMPION`` mean
the champion):

1. Plan. The candidates are the ``status = 'ok'`` images of ``silver.images`` that have no row
   for this model version in ``gold.embeddings``, or whose row was embedded from other content
   (its ``sha256`` differs from the image's: the image was replaced). That is the day's uploads
   in the nightly run, and everything for a new champion (no rows for its version yet).
   ``full`` takes every ok image and replaces the version's partition. Rows of the version whose
   image is no longer ok (deleted, quarantined, gone from ``silver.images``) are to be removed.
2. Embed. Executors run :func:`visearch.embed.embedder.embed_arrow` (``mapInArrow``) over
   ``(image_id, uri, sha256)``: the model is loaded once per Python worker process, on the GPU
   Spark assigned to the task when there is one; decoding runs in threads, overlapped with
   inference (see :mod:`visearch.embed.embedder`).
3. Write. Incremental: one MERGE on ``(model_version, image_id)`` inserts new rows, rewrites
   re-embedded ones and deletes removed ones (and the stale row of a replaced image that now
   fails). Nothing to do means no write at all, so a rerun changes nothing. ``full``: the
   version's partition is replaced (``replaceWhere``).
4. Quarantine. An image that cannot be read or decoded, or whose bytes no longer match the
   sha256 that ingest validated, goes to ``silver.quarantine`` (source ``embed``, record
   ``image_id``, reason ``missing_file`` / ``unreadable`` / ``decode_error`` / ``content_changed``)
   and the job goes on. The day's ``embed`` rows are replaced, so reruns are idempotent. Such an
   image keeps its ``ok`` status in ``silver.images`` (ingest owns it) and is tried again on the
   next run.

Run by ``jobs/embed.py``; try:
python -m jobs.embed --ds 2026-01-01 [--model-version v-2026-01-01-1a2b3c4d] [--full]
"""

from __future__ import annotations

import logging
import math
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.storage import open_store
from visearch.core.timing import StageTimer
from visearch.train.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SOURCE = "embed"
IMAGES_PER_TASK = 2048


def task_count(n: int, parallelism: int, per_task: int) -> int:
    """Enough tasks to keep every core (or GPU) busy, about ``per_task`` images each (0 for none).

    Raises:
        ValueError: for a non-positive ``per_task`` or ``parallelism``.
    """
    if per_task < 1 or parallelism < 1:
        raise ValueError(f"per_task and parallelism must be positive, got {per_task}, {parallelism}")
    return 0 if n <= 0 else max(1, min(n, max(parallelism, math.ceil(n / per_task))))


def _cpu_threads(spark: SparkSession, tasks: int) -> int | None:
    """Torch threads per task: the local cores split between concurrent tasks; Spark's task cpus else."""
    from visearch.embed.embedder import cpu_threads_per_task, local_cores

    conf = spark.sparkContext.getConf()
    cores = local_cores(str(spark.sparkContext.master), os.cpu_count() or 1)
    if cores is not None:
        return cpu_threads_per_task(cores, max(1, tasks))
    task_cpus = conf.get("spark.task.cpus")
    return int(task_cpus) if task_cpus else None


def _ensure_sha256_column(spark: SparkSession, settings: Settings) -> None:
    """Add ``sha256`` to a ``gold.embeddings`` created before the column existed (additive)."""
    T.ensure(spark, settings, T.GOLD_EMBEDDINGS)
    if "sha256" not in T.read(spark, settings, T.GOLD_EMBEDDINGS).columns:
        path = T.GOLD_EMBEDDINGS.path(settings)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS (sha256 STRING)")
        log.info("added column sha256 to %s", path)


def plan(spark: SparkSession, settings: Settings, version: str, *, full: bool) -> tuple[DataFrame, DataFrame]:
    """``(candidates (image_id, uri, sha256), removals (image_id))`` for ``version``.

    Removals are the version's rows whose image is no longer ``ok`` in ``silver.images``.
    """
    from pyspark.sql import functions as F

    ok = (T.read(spark, settings, T.SILVER_IMAGES).where(F.col("status") == "ok")
          .select("image_id", "uri", "sha256"))
    existing = (T.read(spark, settings, T.GOLD_EMBEDDINGS).where(F.col("model_version") == version)
                .select("image_id", F.col("sha256").alias("embedded_sha256"), F.lit(True).alias("embedded")))
    removals = existing.join(ok, "image_id", "left_anti").select("image_id")
    if full:
        return ok, removals
    joined = ok.join(existing, "image_id", "left")
    stale = (F.col("embedded").isNull() | F.col("embedded_sha256").isNull()
             | ~F.col("embedded_sha256").eqNullSafe(F.col("sha256")))
    return joined.where(stale).select("image_id", "uri", "sha256"), removals


def _merge(spark: SparkSession, settings: Settings, version: str, rows: DataFrame,
           removals: DataFrame) -> None:
    """One MERGE: insert or rewrite ``rows``, delete ``removals``, for ``version`` only."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    upserts = T.conform(rows, T.GOLD_EMBEDDINGS).withColumn("_delete", F.lit(False))
    deletes = removals.select(
        F.lit(version).alias("model_version"), "image_id",
        F.lit(None).cast("array<float>").alias("embedding"),
        F.lit(None).cast("string").alias("ds"), F.lit(None).cast("string").alias("sha256"),
        F.lit(True).alias("_delete"),
    )
    columns = [c for c in upserts.columns if c != "_delete"]
    target = DeltaTable.forPath(spark, T.GOLD_EMBEDDINGS.path(settings))
    (
        target.alias("t")
        .merge(upserts.unionByName(deletes).alias("s"),
               f"t.model_version = '{version}' AND t.model_version = s.model_version "
               "AND t.image_id = s.image_id")
        .whenMatchedDelete(condition="s._delete")
        .whenMatchedUpdate(condition="NOT s._delete", set={c: f"s.`{c}`" for c in columns})
        .whenNotMatchedInsert(condition="NOT s._delete", values={c: f"s.`{c}`" for c in columns})
        .execute()
    )


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None, timer: StageTimer | None = None,
        model_version: str | None = None, full: bool = False,
        images_per_task: int = IMAGES_PER_TASK) -> dict[str, Any]:
    """Embed what ``ds`` needs into ``gold.embeddings`` (see the module docstring for the steps).

    Returns:
        ``ds``, ``model_version``, ``full``, ``candidates``, ``embedded``, ``failed``, ``deleted``,
        ``quarantined`` (reason -> count), ``images_per_sec`` (candidates over the embed stage's
        seconds, Spark overhead included), ``tasks``, ``devices``, ``gold_embeddings_version``.

    Raises:
        ValueError: for a bad ``ds`` or ``images_per_task``.
        NoChampionError: (a ValueError) when the champion is asked for and none is promoted.
        FileNotFoundError: when the model version does not exist.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark
    from visearch.embed.embedder import RESULT_SCHEMA, EmbedTask, embed_arrow

    check_ds(ds)
    if images_per_task < 1:
        raise ValueError(f"images_per_task must be positive, got {images_per_task}")
    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    version = registry.resolve(model_version)
    registry.config(version)  # a champion pointer is not checked by resolve: fail before any Spark work
    spark = spark or get_spark(settings, "visearch-embed")
    timer = timer or StageTimer("embed")
    log.info("embedding with model %s (%s) for ds=%s", version, "full" if full else "incremental", ds)

    with timer.stage("plan"):
        _ensure_sha256_column(spark, settings)
        candidates, removals = plan(spark, settings, version, full=full)
        candidates = candidates.persist(StorageLevel.MEMORY_AND_DISK)
        n_candidates = candidates.count()
        removals = removals.persist(StorageLevel.MEMORY_AND_DISK)
        n_removals = removals.count()

    with timer.stage("embed"):
        start = time.perf_counter()
        tasks = task_count(n_candidates, int(spark.sparkContext.defaultParallelism), images_per_task)
        task = EmbedTask(
            settings_json=settings.to_json(), model_version=version, batch_size=settings.embed.batch_size,
            decode_workers=settings.embed.decode_workers, use_gpu=settings.embed.use_gpu,
            amp=settings.embed.amp, cpu_threads=_cpu_threads(spark, tasks),
            cpu_optimize=settings.embed.cpu_optimize,
        )
        if tasks:
            results = (candidates.repartition(tasks)
                       .mapInArrow(partial(embed_arrow, task=task), RESULT_SCHEMA)
                       .persist(StorageLevel.MEMORY_AND_DISK))
        else:  # nothing to embed: no task, no model load
            results = spark.createDataFrame([], RESULT_SCHEMA)
        summary = results.groupBy("reason", "device").agg(F.count("*").alias("n")).collect()
        seconds = time.perf_counter() - start
        embedded = sum(int(r["n"]) for r in summary if r["reason"] is None)
        by_reason: dict[str, int] = {}
        for r in summary:
            if r["reason"] is not None:
                by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + int(r["n"])
        failed = sum(by_reason.values())
        devices = sorted({str(r["device"]) for r in summary})
        log.info("embedded %d of %d candidates in %d tasks on %s (%d failed) in %.1fs",
                 embedded, n_candidates, tasks, devices or "-", failed, seconds)

    with timer.stage("write"):
        rows = results.where(F.col("reason").isNull()).select(
            F.lit(version).alias("model_version"), "image_id", "embedding", F.lit(ds).alias("ds"), "sha256")
        failed_ids = results.where(F.col("reason").isNotNull()).select("image_id")
        existing = (T.read(spark, settings, T.GOLD_EMBEDDINGS)
                    .where(F.col("model_version") == version).select("image_id"))
        if full:
            # Rows that the replaced partition will not hold again: removed and failed images.
            deleted = existing.join(rows, "image_id", "left_anti").count()
            T.replace_partition(spark, settings, T.GOLD_EMBEDDINGS, rows, f"model_version = '{version}'")
        elif embedded or n_removals or failed:
            # A replaced image that now fails keeps no stale vector: remove its old row too.
            stale_failed = failed_ids.join(existing, "image_id", "left_semi")
            gone = removals.unionByName(stale_failed).distinct().persist(StorageLevel.MEMORY_AND_DISK)
            deleted = gone.count()
            if embedded or deleted:
                _merge(spark, settings, version, rows, gone)
            gone.unpersist()
        else:
            deleted = 0
            log.info("nothing to embed or remove for %s: gold.embeddings unchanged", version)

    with timer.stage("quarantine"):
        raw = F.to_json(F.struct("image_id", "sha256", F.lit(version).alias("model_version")))
        quarantine = results.where(F.col("reason").isNotNull()).select(
            F.lit(ds).alias("ds"), F.lit(SOURCE).alias("source"), F.col("image_id").alias("record_id"),
            "reason", "detail", raw.alias("raw"),
        )
        T.replace_partition(spark, settings, T.SILVER_QUARANTINE, quarantine,
                            f"ds = '{ds}' AND source = '{SOURCE}'")

    for frame in (candidates, removals, results):
        frame.unpersist()
    result = {
        "ds": ds,
        "model_version": version,
        "full": full,
        "candidates": n_candidates,
        "embedded": embedded,
        "failed": failed,
        "deleted": deleted,
        "quarantined": dict(sorted(by_reason.items())),
        "images_per_sec": round(n_candidates / seconds, 2) if n_candidates and seconds > 0 else 0.0,
        "tasks": tasks,
        "devices": devices,
        "gold_embeddings_version": T.version(spark, settings, T.GOLD_EMBEDDINGS),
    }
    log.info("embed %s: %s", ds, result)
    return result
