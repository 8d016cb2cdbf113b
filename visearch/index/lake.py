"""The index's view of the lake: which vectors a build must hold, and what a build holds, in Spark.

Both the build (:mod:`visearch.index.build`) and publishing (:mod:`visearch.index.publish`) compare
an index with the tables through these functions:

- :func:`eligible_embeddings`: the rows an index of a model version must hold (``gold.embeddings``
  of that version, images ``ok`` and not private in ``silver.images``);
- :func:`live_rows_spark`: the rows a build holds (its shards' id maps minus its tombstones);
- :func:`sample_rows` and :func:`collect_vectors`: a deterministic sample of vectors on the driver
  (training samples, tuning and validation queries);
- :func:`exact_topk_spark`: brute-force top-k over every eligible vector, the oracle that nprobe
  tuning and publish validation measure recall against.

pyspark is imported lazily, so importing this module (and :mod:`visearch.index.publish` with it)
does not start or need Spark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from visearch.core import tables
from visearch.core.config import Settings
from visearch.core.spark import to_spark_path
from visearch.core.storage import ObjectStore
from visearch.index.manifest import IndexManifest, read_tombstones

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LIVE_ROWS_SCHEMA = "shard_key STRING, id LONG, image_id STRING, vhash LONG"


def eligible_embeddings(spark: SparkSession, settings: Settings, model_version: str) -> DataFrame:
    """The vectors an index of ``model_version`` must hold: (image_id, embedding, vhash).

    Only images whose ``silver.images`` status is ``ok`` and that are not private; ``vhash`` is
    Spark's xxhash64 of the vector, so a changed vector is told from an unchanged one cheaply.
    """
    from pyspark.sql import functions as F

    emb = (
        tables.read(spark, settings, tables.GOLD_EMBEDDINGS)
        .filter(F.col("model_version") == model_version)
        .select("image_id", "embedding")
    )
    ok = (
        tables.read(spark, settings, tables.SILVER_IMAGES)
        .filter((F.col("status") == "ok") & ~F.coalesce(F.col("is_private"), F.lit(False)))
        .select("image_id")
    )
    return emb.join(ok, "image_id", "left_semi").withColumn("vhash", F.xxhash64("embedding"))


def live_rows_spark(spark: SparkSession, store: ObjectStore, manifest: IndexManifest) -> DataFrame:
    """The build's live rows as a DataFrame: (shard_key, id, image_id, vhash), tombstones removed.

    Read straight from the shards' id maps in the store (``s3a://`` or ``file:``).

    Raises:
        ChecksumError: when the build's tombstone list does not match its checksum.
    """
    from pyspark.sql import functions as F

    paths = [to_spark_path(store.uri(s.ids_key)) for s in manifest.shards]
    if not paths:
        return spark.createDataFrame([], LIVE_ROWS_SCHEMA)
    pattern = r"(indexes/[^/]+/[^/]+/shard-[0-9]+)\.ids\.parquet$"
    rows = spark.read.parquet(*paths).withColumn(
        "shard_key", F.concat(F.regexp_extract(F.col("_metadata.file_path"), pattern, 1), F.lit(".faiss"))
    )
    tomb = read_tombstones(store, manifest)
    if tomb.num_rows:
        dead = spark.createDataFrame(tomb.select(["shard_key", "id"]).to_pandas())
        rows = rows.join(dead, ["shard_key", "id"], "left_anti")
    return rows.select("shard_key", "id", "image_id", "vhash")


def sample_rows(df: DataFrame, n: int, seed: str) -> DataFrame:
    """A deterministic sample of ``n`` rows: the smallest xxhash64(image_id, seed) (top-k, no shuffle)."""
    from pyspark.sql import functions as F

    return df.orderBy(F.xxhash64(F.col("image_id"), F.lit(seed)), F.col("image_id")).limit(n)


def collect_vectors(df: DataFrame, dim: int) -> tuple[list[str], np.ndarray]:
    """Collect (image_id, embedding) rows to the driver: ids and an (n, dim) float32 matrix.

    Raises:
        ValueError: when a vector's length is not ``dim``.
    """
    table = df.select("image_id", "embedding").toArrow()
    ids = [str(i) for i in table.column("image_id").to_pylist()]
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if flat.size != len(ids) * dim:
        raise ValueError(f"expected {len(ids)} vectors of dim {dim}, got {flat.size} values")
    return ids, np.ascontiguousarray(flat.reshape(len(ids), dim), dtype=np.float32)  # (n*dim,) -> (n, dim)


def exact_topk_spark(df: DataFrame, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k of ``queries`` (nq, d) over every (image_id, embedding) row of ``df``.

    Each Spark task keeps a running top-k per query over its partition; a window keeps the
    global top-k. Returns (nq, k) similarities and image ids (``""`` where fewer than k rows).
    Ties are broken by image_id, as the index merge breaks them by id.

    Raises:
        ValueError: for ``k`` < 1 or queries that are not a 2-D matrix.
    """
    import pyarrow as pa
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2:
        raise ValueError(f"queries must have shape (n, d), got {queries.shape}")
    nq, dim = queries.shape
    spark = df.sparkSession
    bq = spark.sparkContext.broadcast(queries)

    def topk(batches: Any) -> Any:
        q = bq.value
        best_s = np.full((nq, 0), -np.inf, np.float32)
        best_i = np.full((nq, 0), "", dtype=object)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            ids = np.array(batch.column("image_id").to_pylist(), dtype=object)
            flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
            vec = np.asarray(flat, dtype=np.float32).reshape(batch.num_rows, dim)  # (n*d,) -> (n, d)
            sims = q @ vec.T  # (nq, d) @ (d, n) -> (nq, n)
            cand_s = np.concatenate([best_s, sims], axis=1)
            cand_i = np.concatenate([best_i, np.broadcast_to(ids, sims.shape)], axis=1)
            keep = min(k, cand_s.shape[1])
            part = np.argpartition(-cand_s, keep - 1, axis=1)[:, :keep] if cand_s.shape[1] > keep \
                else np.broadcast_to(np.arange(cand_s.shape[1]), (nq, cand_s.shape[1]))
            best_s = np.take_along_axis(cand_s, part, axis=1)
            best_i = np.take_along_axis(cand_i, part, axis=1)
        rows_q = np.repeat(np.arange(nq), best_s.shape[1])
        yield pa.RecordBatch.from_arrays(
            [pa.array(rows_q, pa.int32()), pa.array(best_s.ravel(), pa.float32()),
             pa.array(best_i.ravel().tolist(), pa.string())],
            names=["q", "score", "image_id"],
        )

    partial = df.select("image_id", "embedding").mapInArrow(topk, "q INT, score FLOAT, image_id STRING")
    rank = Window.partitionBy("q").orderBy(F.col("score").desc(), F.col("image_id"))
    top = partial.withColumn("rank", F.row_number().over(rank)).filter(F.col("rank") <= k)
    scores = np.full((nq, k), -np.inf, np.float32)
    image_ids = np.full((nq, k), "", dtype=object)
    for row in top.collect():
        scores[row["q"], row["rank"] - 1] = row["score"]
        image_ids[row["q"], row["rank"] - 1] = row["image_id"]
    bq.unpersist()
    return scores, image_ids
