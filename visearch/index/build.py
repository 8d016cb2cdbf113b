"""Build a sharded Faiss index of one model version's embeddings (the Spark side of the build).

Full build: choose the index for the vector count and memory budget, train it once on a
deterministic sample on the driver, broadcast the trained empty index, and let Spark tasks add
their shard's vectors (sorted by Faiss id, so reruns give byte-identical shards) and upload
``shard-NNNNN.faiss`` + ``shard-NNNNN.ids.parquet``. The driver then tunes ``nprobe`` against exact
search on held-out queries and writes ``manifest.json`` last. ``CURRENT`` is not touched: that is
:func:`visearch.index.publish.run`'s job.

Incremental build (the nightly default when the live lineage has the same model version and the
quantizer still fits the collection): new or changed vectors go into one delta shard added with
the same trained quantizer; images deleted, made private or re-embedded since become tombstones
applied at query time. When tombstones or delta shards pass their thresholds, a compaction
rebuilds all shards with the same quantizer and no tombstones.

The steps of :func:`run`, each a timed stage: ``inputs`` (the eligible vectors and their
checks), ``diff`` (incremental and compaction: what changed since the parent build), ``train``
(full builds), ``shards`` (Spark tasks fill and upload the shards), ``tune`` (nprobe against
exact search). The job command is ``python -m jobs.build_index --ds 2026-01-01``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from visearch.core import faults, tables
from visearch.core.config import Settings
from visearch.core.spark import get_spark
from visearch.core.storage import ObjectStore, open_store, sha256_bytes
from visearch.core.timing import StageTimer
from visearch.index.faiss_index import (
    IndexPlan,
    ShardBuilder,
    TuneResult,
    choose_index,
    deserialize,
    recall_at_k,
    serialize,
    train_index,
    tune_nprobe,
    wants_rotation,
)
from visearch.index.lake import collect_vectors, eligible_embeddings, exact_topk_spark, live_rows_spark, sample_rows
from visearch.index.manifest import (
    CURRENT_FILE,
    IDS_METADATA_COLUMNS,
    TOMBSTONES_FILE,
    TRAINED_FILE,
    ChecksumError,
    IndexManifest,
    ShardEntry,
    build_prefix,
    current_build_id,
    git_sha,
    ids_key_for,
    index_prefix,
    open_build,
    read_manifest,
    read_tombstones,
    shard_key,
    write_ids_table,
    write_manifest,
    write_tombstones,
)
from visearch.index.publish import read_history
from visearch.index.shards import faiss_ids, probe_candidates, resolve_collisions, shards_of
from visearch.train.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

MODES = ("auto", "full", "incremental", "compact")
TUNE_QUERIES = 200
HOLDOUT_QUERIES = 200
K = 10
SHARD_META_SCHEMA = (
    "shard INT, key STRING, ids_key STRING, count LONG, bytes LONG, sha256 STRING, "
    "ids_sha256 STRING, ids_bytes LONG"
)


def lineage_parent(store: ObjectStore, name: str, ds: str) -> IndexManifest | None:
    """The published build an incremental build for ``ds`` extends: the live build when it was
    created before ``ds``, else the latest published build created before ``ds`` (so a rerun of
    ``ds`` after its own build went live extends the same parent and gives the same build)."""
    live = current_build_id(store, name)
    candidates = [live] if live else []
    candidates += [e["build_id"] for e in reversed(read_history(store, name))]
    for build_id in dict.fromkeys(candidates):
        try:
            manifest = read_manifest(store, name, build_id)
        except FileNotFoundError:
            continue
        if manifest.created_ds < ds:
            return manifest
    return None


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _assign_ids(spark: SparkSession, rows: DataFrame, taken: DataFrame | None) -> DataFrame:
    """Add a unique ``id`` column: salt-0 hash ids, collisions resolved deterministically.

    ``taken`` (column ``id``) holds ids that stay live in the parent build. Only the colliding
    rows (expected: none below ~10^8 images) travel to the driver for probing.
    """
    from pyspark.sql import functions as F

    rows = _with_hashes(rows, "fid0")
    dup = rows.groupBy("fid0").count().filter("count > 1").select("fid0")
    clashing = rows.join(dup, "fid0", "left_semi")
    if taken is not None:
        clashing = clashing.unionByName(rows.join(taken.withColumnRenamed("id", "fid0"), "fid0", "left_semi"))
    clash_rows = clashing.select("image_id", "fid0").distinct().collect()
    conflicts = {r["image_id"]: int(r["fid0"]) for r in clash_rows}
    if not conflicts:
        return rows.withColumnRenamed("fid0", "id")
    log.warning("%d images have colliding faiss ids; probing", len(conflicts))
    candidates = sorted({c for i in conflicts for c in probe_candidates(i)})
    cand_df = spark.createDataFrame([(c,) for c in candidates], "fid0 LONG")
    others = rows.filter(~F.col("image_id").isin(list(conflicts))).select("fid0")
    if taken is not None:
        others = others.unionByName(taken.select(F.col("id").alias("fid0")))
    occupied = {int(r["fid0"]) for r in cand_df.join(others, "fid0", "left_semi").collect()}
    resolved = resolve_collisions(conflicts, occupied)
    fix = spark.createDataFrame(list(resolved.items()), "image_id STRING, fixed LONG")
    return (rows.join(F.broadcast(fix), "image_id", "left")
            .withColumn("id", F.coalesce("fixed", "fid0")).drop("fixed", "fid0"))


def _write_shards(
    settings: Settings,
    rows: DataFrame,
    *,
    trained: bytes,
    name: str,
    build_id: str,
    num_partitions: int,
    dim: int,
    kind: str,
) -> list[ShardEntry]:
    """Spark tasks add each shard's rows (sorted by id) to a copy of the trained index and upload it.

    Raises:
        RuntimeError: when two tasks wrote the same shard.
    """
    spark = rows.sparkSession
    b_trained = spark.sparkContext.broadcast(trained)
    artifacts, s3 = settings.artifacts, settings.s3

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = open_store(artifacts, s3)
        state: dict[str, Any] = {}

        def finish() -> pa.RecordBatch:
            number = state["shard"]
            index = state["builder"].finish()
            key = shard_key(name, build_id, number)
            with tempfile.TemporaryDirectory(prefix="visearch-shard-") as tmp:
                import faiss

                path = Path(tmp) / "shard.faiss"
                faiss.write_index(index, str(path))
                sha = store.put_file(key, path)
                faults.point(faults.SHARD_UPLOADED_POINT, key)  # tests: killed with some shards uploaded
                ids_path = Path(tmp) / "shard.ids.parquet"
                extra = {c: [v for chunk in state[c] for v in chunk] for c in IDS_METADATA_COLUMNS}
                image_ids = list(itertools.chain.from_iterable(state["image_ids"]))
                write_ids_table(ids_path, np.concatenate(state["ids"]), image_ids,
                                np.concatenate(state["vhash"]), extra=extra)
                ids_sha = store.put_file(ids_key_for(key), ids_path)
                size, ids_size = path.stat().st_size, ids_path.stat().st_size
            return pa.RecordBatch.from_pylist([{
                "shard": number, "key": key, "ids_key": ids_key_for(key), "count": int(index.ntotal),
                "bytes": size, "sha256": sha, "ids_sha256": ids_sha, "ids_bytes": ids_size,
            }], schema=pa.schema([("shard", pa.int32()), ("key", pa.string()), ("ids_key", pa.string()),
                                  ("count", pa.int64()), ("bytes", pa.int64()), ("sha256", pa.string()),
                                  ("ids_sha256", pa.string()), ("ids_bytes", pa.int64())]))

        for batch in batches:
            if batch.num_rows == 0:
                continue
            shard_col = batch.column("shard").to_numpy()
            cuts = [0, *(np.flatnonzero(np.diff(shard_col)) + 1).tolist(), batch.num_rows]
            for start, end in itertools.pairwise(cuts):
                part = batch.slice(start, end - start)
                number = int(shard_col[start])
                if state.get("shard") != number:
                    if state:
                        yield finish()
                    state.clear()
                    state.update(shard=number, builder=ShardBuilder(b_trained.value), ids=[], image_ids=[],
                                 vhash=[], **{c: [] for c in IDS_METADATA_COLUMNS})
                flat = part.column("embedding").flatten().to_numpy(zero_copy_only=False)
                vectors = np.asarray(flat, dtype=np.float32).reshape(part.num_rows, dim)  # (n*d,) -> (n, d)
                ids = part.column("id").to_numpy().astype(np.int64)
                state["builder"].add(vectors, ids)
                state["ids"].append(ids)
                state["image_ids"].append(part.column("image_id").to_pylist())
                state["vhash"].append(part.column("vhash").to_numpy().astype(np.int64))
                for c in IDS_METADATA_COLUMNS:  # what the serving tier re-ranks with
                    state[c].append(part.column(c).to_pylist())
        if state:
            yield finish()

    # uri, sha256, phash of each image travel into the id map (the serving tier's re-rank metadata).
    images = tables.read(spark, settings, tables.SILVER_IMAGES).select("image_id", *IDS_METADATA_COLUMNS)
    rows = rows.join(images, "image_id", "left")
    ordered = (rows.select("shard", "id", "image_id", "vhash", "embedding", *IDS_METADATA_COLUMNS)
               .repartitionByRange(num_partitions, "shard").sortWithinPartitions("shard", "id"))
    meta = ordered.mapInArrow(write, SHARD_META_SCHEMA).collect()
    b_trained.unpersist()
    entries = [ShardEntry(key=r["key"], ids_key=r["ids_key"], count=int(r["count"]), bytes=int(r["bytes"]),
                          sha256=r["sha256"], ids_sha256=r["ids_sha256"], ids_bytes=int(r["ids_bytes"]),
                          kind=kind)
               for r in sorted(meta, key=lambda r: r["shard"])]
    numbers = [r["shard"] for r in meta]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"a shard was written by more than one task: {sorted(numbers)}")
    return entries


def _with_hashes(rows: DataFrame, column: str, num_shards: int = 0) -> DataFrame:
    """Add ``column``: the salt-0 Faiss id (``num_shards`` = 0) or the shard number of each image."""
    from pyspark.sql.types import IntegerType, LongType, StructField, StructType

    dtype = IntegerType() if num_shards else LongType()
    schema = StructType([*rows.schema.fields, StructField(column, dtype, False)])

    def add(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            ids = batch.column("image_id").to_pylist()
            values = shards_of(ids, num_shards) if num_shards else faiss_ids(ids)
            yield batch.append_column(column, pa.array(values, pa.int32() if num_shards else pa.int64()))

    return rows.mapInArrow(add, schema)


def _quantizer_reusable(parent: IndexManifest | None, model_version: str, dim: int,
                        plans: Sequence[IndexPlan]) -> str:
    """Why the parent's trained index cannot be reused ("" when it can).

    ``plans``: what a full build could choose now (with and without an OPQ rotation, which the
    training sample decides).
    """
    if parent is None:
        return "no published build to extend"
    if parent.model_version != model_version:
        return f"model version changed ({parent.model_version} -> {model_version})"
    if parent.dim != dim:
        return f"dimension changed ({parent.dim} -> {dim})"
    if parent.factory not in {p.factory for p in plans}:
        return f"index choice changed ({parent.factory} -> {' or '.join(sorted({p.factory for p in plans}))})"
    return ""


@dataclass(frozen=True)
class _Inputs:
    """The eligible vectors of the model version (persisted) and what the build checks them for."""

    eligible: DataFrame
    n: int
    dim: int
    content: int
    """XOR of xxhash64(image_id, vhash) over the rows: changes when any vector or image changes."""
    table_version: int


def _read_inputs(spark: SparkSession, settings: Settings, model_version: str) -> _Inputs:
    """Read and check the eligible embeddings of ``model_version``.

    Raises:
        ValueError: when there are none, an image id repeats, or the dimensions are mixed.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    eligible = eligible_embeddings(spark, settings, model_version).persist(StorageLevel.MEMORY_AND_DISK)
    stats = eligible.agg(
        F.count("*").alias("n"), F.countDistinct("image_id").alias("distinct"),
        F.min(F.size("embedding")).alias("dmin"), F.max(F.size("embedding")).alias("dmax"),
        F.bit_xor(F.xxhash64("image_id", "vhash")).alias("content"),
    ).first()
    assert stats is not None
    n = int(stats["n"])
    if n == 0:
        raise ValueError(f"no eligible embeddings for model version {model_version!r} (status ok, not private)")
    if stats["distinct"] != n:
        raise ValueError(f"gold.embeddings has {n - stats['distinct']} duplicate image ids for {model_version!r}")
    if stats["dmin"] != stats["dmax"]:
        raise ValueError(f"embeddings of {model_version!r} have mixed dimensions {stats['dmin']}..{stats['dmax']}")
    return _Inputs(eligible=eligible, n=n, dim=int(stats["dmin"]), content=int(stats["content"]),
                   table_version=tables.version(spark, settings, tables.GOLD_EMBEDDINGS))


@dataclass(frozen=True)
class _Diff:
    """What changed between the parent build and the eligible vectors (incremental and compaction)."""

    kind: str
    """``incremental``, or ``compaction`` when the thresholds are passed."""
    live: DataFrame
    """The parent's live rows (persisted)."""
    delta: DataFrame
    """New and changed vectors: the delta shard's rows."""
    n_delta: int
    tombstones: pa.Table
    """The parent's tombstones plus the new ones."""
    new_tombstones: int
    taken: DataFrame | None
    """Ids that stay live in the parent (incremental only): new ids must avoid them."""


def _diff(spark: SparkSession, settings: Settings, store: ObjectStore, parent: IndexManifest,
          eligible: DataFrame, kind: str) -> _Diff:
    """Compare the parent's live rows with the eligible vectors; switch to compaction when tombstones
    or delta shards pass ``index.compact_tombstone_share`` / ``index.compact_delta_shards``."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    live = live_rows_spark(spark, store, parent).persist(StorageLevel.MEMORY_AND_DISK)
    e = eligible.select("image_id", F.col("vhash").alias("new_vhash"))
    changed = live.join(e, "image_id").filter(F.col("vhash") != F.col("new_vhash"))
    removed = live.join(e, "image_id", "left_anti")
    new_tombs = removed.select("shard_key", "id", "image_id").unionByName(
        changed.select("shard_key", "id", "image_id"))
    delta = eligible.join(live.select("image_id"), "image_id", "left_anti").unionByName(
        eligible.join(changed.select("image_id"), "image_id", "left_semi"))
    n_delta = delta.count()
    old_tombs = read_tombstones(store, parent)
    new_tomb_table = new_tombs.toArrow()
    tomb_table = pa.concat_tables([old_tombs, new_tomb_table.cast(old_tombs.schema)])
    stored = parent.stored_count + n_delta
    share = tomb_table.num_rows / stored if stored else 0.0
    deltas = parent.delta_shards + (1 if n_delta else 0)
    index = settings.index
    if kind == "incremental" and (share > index.compact_tombstone_share or deltas > index.compact_delta_shards):
        log.info("compacting: tombstone share %.3f (max %.3f), delta shards %d (max %d)", share,
                 index.compact_tombstone_share, deltas, index.compact_delta_shards)
        kind = "compaction"
    taken = None
    if kind == "incremental":
        dead = new_tombs.select("shard_key", "id")
        taken = live.join(dead, ["shard_key", "id"], "left_anti").select("id")
    log.info("%s: %d new/changed vectors, %d tombstones (%d new)", kind, n_delta, tomb_table.num_rows,
             new_tomb_table.num_rows)
    return _Diff(kind=kind, live=live, delta=delta, n_delta=n_delta, tombstones=tomb_table,
                 new_tombstones=new_tomb_table.num_rows, taken=taken)


def _train(store: ObjectStore, inputs: _Inputs, plan: IndexPlan, rotated: IndexPlan, *, rotation: str,
           ds: str, prefix: str) -> tuple[IndexPlan, bytes, str, str]:
    """Train the empty index on a deterministic sample and upload it.

    With ``rotation`` ``auto``, anisotropic samples switch to the ``rotated`` plan. Returns the
    plan trained, the serialized index, its key and sha256.
    """
    sample = sample_rows(inputs.eligible, plan.train_size, f"train-{ds}") if plan.train_size else None
    vectors = np.zeros((0, inputs.dim), np.float32) if sample is None else collect_vectors(sample, inputs.dim)[1]
    if rotation == "auto" and rotated.factory != plan.factory and wants_rotation(vectors):
        log.info("anisotropic vectors: %s instead of %s", rotated.factory, plan.factory)
        plan = rotated  # same lists and code bits, so the same training-sample size
    trained_bytes = serialize(train_index(plan, vectors))
    trained_key = f"{prefix}/{TRAINED_FILE}"
    return plan, trained_bytes, trained_key, store.put_bytes(trained_key, trained_bytes)


def _parent_trained(store: ObjectStore, parent: IndexManifest) -> bytes:
    """The parent's trained index, checked against its sha256 and deserialized once on the driver.

    Raises:
        ChecksumError: when the object does not match the parent's manifest.
    """
    trained_bytes = store.get_bytes(parent.trained_key)
    if sha256_bytes(trained_bytes) != parent.trained_sha256:
        raise ChecksumError(parent.trained_key, parent.trained_sha256, sha256_bytes(trained_bytes))
    deserialize(trained_bytes)  # fail here, not in every task, if it is unreadable
    return trained_bytes


def _tune(store: ObjectStore, settings: Settings, draft: IndexManifest, eligible: DataFrame,
          ds: str) -> tuple[TuneResult, float]:
    """Tune nprobe on half the sampled queries against exact search; measure recall on the rest.

    Raises:
        RuntimeError: when an exact neighbour is not live in the build.
    """
    dim = draft.dim
    queries_df = sample_rows(eligible, TUNE_QUERIES + HOLDOUT_QUERIES, f"queries-{ds}")
    _, queries = collect_vectors(queries_df, dim)
    _, exact = exact_topk_spark(eligible, queries, K)
    cut = max(1, len(queries) // 2) if len(queries) < TUNE_QUERIES + HOLDOUT_QUERIES else TUNE_QUERIES
    with open_build(store, draft, verify=True) as build:
        exact_ids = build.ids_of(list(exact.ravel())).reshape(exact.shape)
        exact_ids = np.where(exact == "", -1, exact_ids)
        if (exact_ids[exact != ""] < 0).any():
            raise RuntimeError("an exact neighbour is not live in the build")
        tuned = tune_nprobe(build, queries[:cut], exact_ids[:cut], settings.index.target_recall,
                            settings.index.latency_budget_ms, k=K)
        held_q, held_ids = (queries[cut:], exact_ids[cut:]) if cut < len(queries) \
            else (queries, exact_ids)
        _, found = build.search(held_q, K, nprobe=tuned.nprobe or None, ef_search=tuned.ef_search or None)
        recall = recall_at_k(found, held_ids, K)
    log.info("tuned nprobe=%d efSearch=%d; held-out recall@%d %.4f", tuned.nprobe, tuned.ef_search, K,
             recall)
    return tuned, recall


def run(
    settings: Settings,
    ds: str,
    *,
    spark: SparkSession | None = None,
    timer: StageTimer | None = None,
    mode: str = "auto",
    model_version: str | None = None,
) -> dict[str, Any]:
    """Build the index for ``ds``; return the build id, counts and URIs (``CURRENT`` untouched).

    ``model_version``: ``None`` or ``"CHAMPION"`` index the champion; else that version
    (resolved by :class:`~visearch.train.registry.ModelRegistry`).

    Raises:
        LookupError: when the champion is asked for and no model has been promoted yet.
        ValueError: for an unknown mode or model version, no eligible embeddings, vectors of
            mixed dimension, or an incremental/compact request that the live build cannot serve.
    """
    from pyspark.sql import functions as F

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    timer = timer or StageTimer("build_index")
    store = open_store(settings.artifacts, settings.s3)
    mv = ModelRegistry(store).resolve(model_version)
    spark = spark or get_spark(settings, "build_index")
    name = settings.index.name

    with timer.stage("inputs"):
        inputs = _read_inputs(spark, settings, mv)
    cached = [inputs.eligible]
    n, dim = inputs.n, inputs.dim

    budget = int(settings.index.memory_budget_mb * 1024 * 1024)
    rotation = settings.index.rotation
    plan = choose_index(n, dim, budget, rotate=rotation == "always")
    rotated = choose_index(n, dim, budget, rotate=True)
    parent = lineage_parent(store, name, ds)
    why_not = _quantizer_reusable(parent, mv, dim, [plan, rotated] if rotation == "auto" else [plan])
    if mode in ("incremental", "compact") and why_not:
        raise ValueError(f"cannot build {mode} for {ds}: {why_not}")
    kind = "full" if mode == "full" or why_not else ("compaction" if mode == "compact" else "incremental")
    log.info("build for %s: %d vectors dim %d, plan %s, %s%s", ds, n, dim, plan.factory, kind,
             f" ({why_not})" if why_not and mode == "auto" else "")

    diff: _Diff | None = None
    if kind != "full":
        assert parent is not None
        plan = IndexPlan.from_dict(parent.plan)
        with timer.stage("diff"):
            diff = _diff(spark, settings, store, parent, inputs.eligible, kind)
        cached.append(diff.live)
        kind = diff.kind

    fingerprint = _fingerprint({
        "ds": ds, "model_version": mv, "kind": kind, "factory": plan.factory, "n": n,
        "content": inputs.content, "shards": settings.index.shards,
        "parent": parent.build_id if parent and kind != "full" else None,
        "index_settings": asdict(settings.index),
    })
    build_id = f"b-{ds}-{fingerprint[:8]}"
    prefix = build_prefix(name, build_id)

    if kind == "full":
        with timer.stage("train"):
            plan, trained_bytes, trained_key, trained_sha = _train(store, inputs, plan, rotated, rotation=rotation,
                                                                   ds=ds, prefix=prefix)
    else:
        assert parent is not None
        trained_key, trained_sha = parent.trained_key, parent.trained_sha256
        trained_bytes = _parent_trained(store, parent)

    tomb_table: pa.Table | None = None
    with timer.stage("shards"):
        if kind == "incremental":
            assert parent is not None and diff is not None
            rows = _assign_ids(spark, diff.delta, diff.taken).withColumn("shard", F.lit(len(parent.shards)))
            new_entries = _write_shards(settings, rows, trained=trained_bytes, name=name, build_id=build_id,
                                        num_partitions=1, dim=dim, kind="delta") if diff.n_delta else []
            shards = (*parent.shards, *new_entries)
            tomb_table = diff.tombstones
        else:
            rows = _assign_ids(spark, inputs.eligible, None)
            rows = _with_hashes(rows, "shard", settings.index.shards)
            shards = tuple(_write_shards(settings, rows, trained=trained_bytes, name=name, build_id=build_id,
                                         num_partitions=settings.index.shards, dim=dim, kind="base"))

    tombstones_key = tombstones_sha = None
    tomb_count = 0
    if tomb_table is not None and tomb_table.num_rows:
        tombstones_key = f"{prefix}/{TOMBSTONES_FILE}"
        tombstones_sha = write_tombstones(store, tombstones_key, tomb_table)
        tomb_count = tomb_table.num_rows

    stored = sum(s.count for s in shards)
    draft = IndexManifest(
        build_id=build_id, index_name=name, build_kind=kind, model_version=mv, dim=dim,
        metric=plan.metric, factory=plan.factory, default_nprobe=plan.default_nprobe, default_ef_search=0,
        embeddings_table_version=inputs.table_version, created_ds=ds, git_sha=git_sha(), shards=shards,
        vector_count=stored - tomb_count, tombstone_count=tomb_count, validation_recall=0.0, validation_k=K,
        tune={}, plan=plan.to_dict(), trained_key=trained_key, trained_sha256=trained_sha,
        input_fingerprint=fingerprint, tombstones_key=tombstones_key, tombstones_sha256=tombstones_sha,
        parent_build_id=parent.build_id if parent and kind != "full" else None,
        settings=asdict(settings.index),
    )
    if draft.vector_count != n:
        raise RuntimeError(f"build {build_id} holds {draft.vector_count} live vectors, expected {n}")

    with timer.stage("tune"):
        tuned, recall = _tune(store, settings, draft, inputs.eligible, ds)

    manifest = draft.with_changes(
        default_nprobe=tuned.nprobe, default_ef_search=tuned.ef_search, validation_recall=recall,
        tune=tuned.to_dict(), created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        timings=dict(timer.seconds),
    )
    manifest_key = write_manifest(store, manifest)
    for frame in cached:
        frame.unpersist()
    log.info("wrote %s (%s build, %d shards, %d vectors); CURRENT at %s unchanged", store.uri(manifest_key),
             kind, len(shards), manifest.vector_count, store.uri(f"{index_prefix(name)}/{CURRENT_FILE}"))
    return {
        "build_id": build_id,
        "build_kind": kind,
        "model_version": mv,
        "factory": plan.factory,
        "vectors": manifest.vector_count,
        "shards": len(shards),
        "delta_shards": manifest.delta_shards,
        "tombstones": tomb_count,
        "nprobe": tuned.nprobe,
        "validation_recall": recall,
        "manifest_uri": store.uri(manifest_key),
        "build_uri": store.uri(prefix),
    }
