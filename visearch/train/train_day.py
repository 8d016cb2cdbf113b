"""Train a new embedding model version from a day's gold.training_pairs, through TorchDistributor.

For ``ds`` (``jobs/train.py`` is the command over :func:`run`):

1. Decide (:func:`visearch.train.cadence.decide`): a model version of this ds already exists → done,
   nothing changes (a rerun of the whole DAG for a day is a no-op); otherwise train on cadence
   days (the date's ordinal divisible by ``retrain_every``) and whenever no model exists yet.
2. Read the day's pairs of ``gold.training_pairs`` and the URIs of their images from
   ``silver.images`` (status ok), each at one Delta version, recorded in the model's config.
   Pairs are ids and URIs, so they are collected to the driver and shipped to the workers
   (inline, or as a Parquet file in the artifacts store for big sets: see visearch.train.distributed).
3. Train with ``TorchDistributor(train.num_processes, local_mode=True)``: gloo on CPU, nccl on
   GPU, DDP when more than one process, checkpoints under ``checkpoints/<ds>/`` in the artifacts
   store; a killed run resumes from its last checkpoint.
4. Save the weights, config (tables' versions, loss curve, images/s, pairs by source…) and the
   TorchScript export with :class:`visearch.train.registry.ModelRegistry`; then delete the day's
   checkpoints. CHAMPION is not touched: evaluate/promote decide that.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.storage import open_store
from visearch.core.timing import StageTimer
from visearch.train.cadence import decide
from visearch.train.distributed import (
    AssembledPairs,
    PairRow,
    assemble_records,
    checkpoint_root,
    make_spec,
    run_distributed,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

INPUT_TABLES = (T.GOLD_TRAINING_PAIRS, T.SILVER_IMAGES)


def _read_at(spark: SparkSession, settings: Settings, table: T.Table, version: int) -> DataFrame:
    """The table as of ``version``, so the data read is exactly the version recorded."""
    return spark.read.format("delta").option("versionAsOf", version).load(table.path(settings))


def read_pairs(spark: SparkSession, settings: Settings, ds: str, versions: dict[str, int]) -> AssembledPairs:
    """The day's pairs with image URIs of ok images, as training records.

    Raises:
        ValueError: when an input table does not exist yet.
    """
    from pyspark.sql import functions as F

    missing = [name for name, v in versions.items() if v < 0]
    if missing:
        raise ValueError(
            f"cannot train for {ds}: {missing} do not exist yet (run ingest_images and build_pairs)"
        )
    pairs = (
        _read_at(spark, settings, T.GOLD_TRAINING_PAIRS, versions[T.GOLD_TRAINING_PAIRS.name])
        .where(F.col("ds") == ds)
        .select("query_image_id", "positive_image_id", "source", "weight", "hard_negative_ids")
        .cache()
    )
    ids = pairs.select(
        F.explode(
            F.concat(
                F.array("query_image_id", "positive_image_id"),
                F.coalesce("hard_negative_ids", F.array().cast("array<string>")),
            )
        ).alias("image_id")
    ).distinct()
    images = (
        _read_at(spark, settings, T.SILVER_IMAGES, versions[T.SILVER_IMAGES.name])
        .where(F.col("status") == "ok")
        .select("image_id", "uri")
        .join(ids, "image_id", "left_semi")
    )
    uris = {r["image_id"]: r["uri"] for r in images.collect()}
    rows = [
        PairRow(
            r["query_image_id"],
            r["positive_image_id"],
            r["source"],
            float(r["weight"]),
            tuple(r["hard_negative_ids"] or ()),
        )
        for r in pairs.collect()
    ]
    pairs.unpersist()
    return assemble_records(rows, uris)


def run(
    settings: Settings,
    ds: str,
    *,
    spark: SparkSession | None = None,
    timer: StageTimer | None = None,
    retrain_every: int = 1,
) -> dict[str, Any]:
    """Train and register a model version for ``ds`` (or say why not).

    Returns:
        ``trained`` and ``reason``; when trained also ``model_version``, ``steps``, ``final_loss``,
        ``images_per_sec``, ``pairs`` (count per source), ``dropped_pairs``, ``resumed_from``,
        ``world_size`` and ``training_tables`` (Delta versions read).

    Raises:
        ValueError: for a bad ``ds`` or ``retrain_every``, missing input tables or no usable pair.
        RuntimeError: when training fails in a worker or the export does not match the model.
    """
    from visearch.train.model import build_model
    from visearch.train.registry import ModelRegistry

    check_ds(ds)
    timer = timer or StageTimer("train")
    store = open_store(settings.artifacts, settings.s3)
    registry = ModelRegistry(store)
    decision = decide(ds, retrain_every, registry.versions())
    if not decision.train:
        log.info(
            "not training for %s: %s%s",
            ds,
            decision.reason,
            f" ({decision.model_version})" if decision.model_version else "",
        )
        return {
            "ds": ds,
            "trained": False,
            "reason": decision.reason,
            "model_version": decision.model_version,
        }
    log.info("training for %s: %s", ds, decision.reason)

    from visearch.core.spark import get_spark

    spark = spark or get_spark(settings, "visearch-train")
    with timer.stage("read pairs"):
        versions = {t.name: T.version(spark, settings, t) for t in INPUT_TABLES}
        assembled = read_pairs(spark, settings, ds, versions)
        if not assembled.records:
            raise ValueError(
                f"no usable training pairs for {ds} ({assembled.dropped} dropped: images not ok)"
            )
        log.info(
            "%d pairs %s, %d dropped (images not ok), %d hard negatives dropped",
            len(assembled.records),
            assembled.by_source(),
            assembled.dropped,
            assembled.dropped_negatives,
        )

    with timer.stage("train"):
        spec = make_spec(settings, ds, assembled.records, store=store)
        output = run_distributed(spark, spec, settings.train.num_processes)

    with timer.stage("register"):
        model = build_model(dataclasses.replace(settings.model, init_weights=""))
        model.load_state_dict(output.state_dict, strict=True)
        summary = output.result
        config = {
            "ds": ds,
            "init_weights": settings.model.init_weights,
            "training_tables": versions,
            "steps": summary["steps_done"],
            "final_loss": summary["final_loss"],
            "losses": output.losses,
            "images_per_sec": summary["images_per_sec"],
            "train_seconds": summary["seconds"],
            "resumed_from": summary["resumed_from"],
            "seed": spec.train.seed,
            "train": dataclasses.asdict(spec.train),
            "augment": {"strength": spec.augment_strength, "blur": spec.augment_blur},
            "hard_negative_slots": spec.num_hard_negatives,
            "pairs_by_source": assembled.by_source(),
            "dropped_pairs": assembled.dropped,
            "world_size": output.world_size,
            "backend": output.backend,
            "device": output.device,
            "retrain_every": retrain_every,
        }
        version = registry.save(model, config=config)

    with timer.stage("clean checkpoints"):
        removed = store.delete_prefix(checkpoint_root(ds))
        log.info("deleted %d checkpoint objects under %s", removed, store.uri(checkpoint_root(ds)))

    return {
        "ds": ds,
        "trained": True,
        "reason": decision.reason,
        "model_version": version,
        "steps": summary["steps_done"],
        "final_loss": summary["final_loss"],
        "images_per_sec": summary["images_per_sec"],
        "resumed_from": summary["resumed_from"],
        "pairs": assembled.by_source(),
        "dropped_pairs": assembled.dropped,
        "world_size": output.world_size,
        "training_tables": versions,
    }
