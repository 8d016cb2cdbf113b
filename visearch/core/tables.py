"""The Delta tables of the lake: names, locations, schemas and idempotent writes.

Every table lives at ``<lake>/<layer>/<name>`` (e.g. ``<lake>/silver/images``). Writers are
idempotent for their ``ds``: partition replacement (``replaceWhere``) or ``MERGE`` on the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from visearch.core import faults
from visearch.core.config import Settings
from visearch.core.spark import fit_to_input, tiny_sql_active, to_spark_path
from visearch.core.storage import join, open_store
from visearch.core.timing import FIXED_COSTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    """One Delta table: its dotted name, key columns, partition columns and DDL schema."""

    name: str
    keys: tuple[str, ...]
    schema: str
    partition_by: tuple[str, ...] = ()

    def path(self, settings: Settings) -> str:
        """Where the table lives, as a Spark path (``s3a://`` for S3 roots)."""
        layer, _, short = self.name.partition(".")
        return to_spark_path(join(settings.lake, layer, short))


BRONZE_IMAGES_RAW = Table(
    "bronze.images_raw",
    ("ds", "image_id"),
    "ds STRING, image_id STRING, source_uri STRING, owner_id STRING, upload_ts TIMESTAMP, "
    "tags ARRAY<STRING>, is_private BOOLEAN, action STRING, line_no INT, manifest_file STRING",
    ("ds",),
)
SILVER_IMAGES = Table(
    "silver.images",
    ("image_id",),
    "image_id STRING, uri STRING, owner_id STRING, upload_ts TIMESTAMP, tags ARRAY<STRING>, "
    "sha256 STRING, width INT, height INT, format STRING, phash STRING, is_private BOOLEAN, "
    "status STRING, updated_ds STRING",
)
SILVER_INTERACTIONS = Table(
    "silver.interactions",
    ("event_id",),
    "event_id STRING, user_id STRING, session_id STRING, query_image_id STRING, image_id STRING, "
    "position INT, event_type STRING, ts TIMESTAMP, dwell_ms BIGINT, known_images BOOLEAN, ds STRING",
    ("ds",),
)
SILVER_QUARANTINE = Table(
    "silver.quarantine",
    ("ds", "source", "record_id"),
    "ds STRING, source STRING, record_id STRING, reason STRING, detail STRING, raw STRING",
    ("ds",),
)
GOLD_TRAINING_PAIRS = Table(
    "gold.training_pairs",
    ("ds", "query_image_id", "positive_image_id", "source"),
    "ds STRING, query_image_id STRING, positive_image_id STRING, source STRING, weight DOUBLE, "
    "hard_negative_ids ARRAY<STRING>",
    ("ds",),
)
GOLD_EVAL_JUDGMENTS = Table(
    "gold.eval_judgments",
    ("set", "query_image_id", "candidate_image_id"),
    "set STRING, query_image_id STRING, candidate_image_id STRING, relevance INT",
)
GOLD_EMBEDDINGS = Table(
    "gold.embeddings",
    ("model_version", "image_id"),
    "model_version STRING, image_id STRING, embedding ARRAY<FLOAT>, ds STRING, sha256 STRING",
    ("model_version",),
)
GOLD_MODEL_METRICS = Table(
    "gold.model_metrics",
    ("model_version", "eval_set", "protocol", "embedder", "metric", "k"),
    "model_version STRING, eval_set STRING, protocol STRING, embedder STRING, metric STRING, k INT, "
    "value DOUBLE, ds STRING, embedder_version STRING",
)
GOLD_ONLINE_METRICS = Table(
    "gold.online_metrics",
    ("ds", "metric", "position"),
    "ds STRING, metric STRING, position INT, value DOUBLE",
    ("ds",),
)
GOLD_CLICK_PROPENSITY = Table(
    "gold.click_propensity",
    ("ds", "position"),
    "ds STRING, position INT, propensity DOUBLE, impressions BIGINT, clicks BIGINT",
    ("ds",),
)

ALL_TABLES = (
    BRONZE_IMAGES_RAW,
    SILVER_IMAGES,
    SILVER_INTERACTIONS,
    SILVER_QUARANTINE,
    GOLD_TRAINING_PAIRS,
    GOLD_EVAL_JUDGMENTS,
    GOLD_EMBEDDINGS,
    GOLD_MODEL_METRICS,
    GOLD_ONLINE_METRICS,
    GOLD_CLICK_PROPENSITY,
)


def exists(spark: SparkSession, settings: Settings, table: Table) -> bool:
    """Whether the Delta table has been created."""
    from delta.tables import DeltaTable

    with FIXED_COSTS.measure("delta_log"):
        return bool(DeltaTable.isDeltaTable(spark, table.path(settings)))


def ensure(spark: SparkSession, settings: Settings, table: Table) -> None:
    """Create the table empty with its schema when it does not exist yet."""
    if exists(spark, settings, table):
        return
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(table.path(settings))
    builder = builder.addColumns(spark.createDataFrame([], table.schema).schema)
    if table.partition_by:
        builder = builder.partitionedBy(*table.partition_by)
    builder.execute()
    log.info("created %s at %s", table.name, table.path(settings))


def read(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    """The table as a DataFrame; an empty one with the schema when it does not exist yet.

    Loading resolves the table's snapshot from its Delta log; that time counts as the job's
    ``delta_log`` fixed cost (:data:`visearch.core.timing.FIXED_COSTS`).
    """
    with FIXED_COSTS.measure("delta_log"):
        if not exists(spark, settings, table):
            return spark.createDataFrame([], table.schema)
        df = spark.read.format("delta").load(table.path(settings))
    if tiny_sql_active(spark):
        fit_to_input(spark, settings, table.name, size_bytes(settings, table))
    return df


def size_bytes(settings: Settings, table: Table) -> int | None:
    """The table's size on storage from its newest Delta checksum file (``_delta_log/<v>.crc``,
    ``tableSizeBytes``): one listing and one small read, no Spark job. None without one."""
    import json

    layer, _, short = table.name.partition(".")
    store = open_store(settings.lake, settings.s3)
    crcs = [k for k in store.list(f"{layer}/{short}/_delta_log/") if k.endswith(".crc") and k.count("/") == 3]
    if not crcs:
        return None
    try:
        return int(json.loads(store.get_text(max(crcs)))["tableSizeBytes"])
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def version(spark: SparkSession, settings: Settings, table: Table) -> int:
    """The table's current Delta version (-1 when it does not exist); recorded by consumers."""
    if not exists(spark, settings, table):
        return -1
    from delta.tables import DeltaTable

    with FIXED_COSTS.measure("delta_log"):
        row = DeltaTable.forPath(spark, table.path(settings)).history(1).select("version").first()
    return int(row[0]) if row else -1


def conform(df: DataFrame, table: Table) -> DataFrame:
    """Select and cast the DataFrame's columns to the table's schema, in order.

    Raises:
        ValueError: when a column of the schema is missing.
    """
    from pyspark.sql import functions as F

    spark = df.sparkSession
    target = spark.createDataFrame([], table.schema).schema
    missing = [f.name for f in target.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{table.name}: missing columns {missing}")
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in target.fields])


def replace_partition(
    spark: SparkSession, settings: Settings, table: Table, df: DataFrame, where: str
) -> None:
    """Overwrite exactly the rows matching ``where`` (e.g. ``ds = '2026-01-01'``) with ``df``.

    Idempotent: rerunning with the same input gives the same table contents.
    """
    ensure(spark, settings, table)
    (
        faults.spark_write_point(conform(df, table), table.name)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", where)
        .save(table.path(settings))
    )


def merge(
    spark: SparkSession,
    settings: Settings,
    table: Table,
    updates: DataFrame,
    *,
    delete_condition: str | None = None,
    update_condition: str | None = None,
) -> None:
    """MERGE ``updates`` into the table on its keys: update matched rows, insert new ones.

    ``delete_condition`` (over ``s.`` source columns) deletes matched rows instead of updating.
    ``update_condition`` limits which matched rows are rewritten (so a rerun changes nothing).
    """
    from delta.tables import DeltaTable

    ensure(spark, settings, table)
    target = DeltaTable.forPath(spark, table.path(settings))
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in table.keys)
    builder = target.alias("t").merge(conform(updates, table).alias("s"), on)
    if delete_condition:
        builder = builder.whenMatchedDelete(condition=delete_condition)
    builder = builder.whenMatchedUpdateAll(condition=update_condition)
    builder = builder.whenNotMatchedInsertAll()
    builder.execute()
